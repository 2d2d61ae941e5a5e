//! `--scripts run`: a device upgrading itself, with the root as `/`. A throwaway root cannot
//! be mounted as the test machine's `/`, so each prokit command runs chrooted into it inside
//! a user namespace (`unshare --user --map-root-user chroot ROOT /usr/bin/prokit ...`): to
//! prokit and to the maintainer scripts the root *is* `/`, and a script's absolute path
//! (`/etc/...`) lands in the throwaway root. The root carries prokit, `/bin/sh` and the
//! libraries `ldd` names; the feed is served over HTTP on 127.0.0.1 (the network namespace
//! is shared). Where user namespaces are not allowed the test is skipped with a message.
//!
//! opkg-lede's behaviour this follows (libopkg, commit 38eccbb): `pkg_run_script` sets
//! `PKG_ROOT` and `PKG_UPGRADE` and leaves `IPKG_INSTROOT` unset (pkg.c line 1355ff.); a
//! failing preinst aborts the install (opkg_install.c, `preinst_configure`: "Aborting
//! installation"); a failing postinst leaves the package `unpacked` (opkg_cmd.c line 423,
//! `opkg_configure_packages` sets `SS_INSTALLED` only when `opkg_configure` succeeds); a
//! failing prerm refuses the removal and a failing postrm does not undo it (opkg_remove.c
//! lines 301 and 320).

// A test that cannot run here says so on stderr (SKIPPED).
#![allow(clippy::print_stderr)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{EPOCH, Fixture, bootstrap, prokit, snapshot, status_of};
use e2e::{HttpServer, bin, run};
use feeds::build::PackageBuilder;

/// A script that logs how it was called to an absolute path, and fails when the file
/// `/etc/<pkg>.fail-<script>` exists.
fn logging_script(pkg: &str, version: &str, script: &str) -> Vec<u8> {
    format!(
        "#!/bin/sh\necho \"{pkg}-{version} {script} $* instroot=${{IPKG_INSTROOT-unset}} pkgroot=$PKG_ROOT up=$PKG_UPGRADE self=${{0##*/}}\" >> /var/log/scripts.log\n\
         if [ -e /etc/{pkg}.fail-{script} ]; then echo \"{pkg} {script}: cannot go on\" >&2; exit 9; fi\n"
    )
    .into_bytes()
}

fn package(name: &str, version: &str, file: &str) -> Vec<u8> {
    let mut b = PackageBuilder::new(format!(
        "Package: {name}\nVersion: {version}\nArchitecture: all\nMaintainer: T <t@example.org>\nDescription: {name}\n"
    ))
    .mtime(1_700_000_000)
    .file(file, 0o755, format!("#!/bin/sh\necho {name} {version}\n").into_bytes());
    for s in ["preinst", "postinst", "prerm", "postrm"] {
        b = b.control_file(s, 0o755, logging_script(name, version, s));
    }
    b.build().unwrap()
}

/// Copies `file` (following symlinks) and every library `ldd` lists for it into `root` at
/// the same absolute paths, `file` itself to `as_path`.
fn copy_with_libraries(root: &Path, file: &Path, as_path: &str) {
    let put = |from: &Path, to: &str| {
        let dest = root.join(to.trim_start_matches('/'));
        fs::create_dir_all(dest.parent().unwrap()).unwrap();
        fs::copy(from, &dest).unwrap();
    };
    put(&fs::canonicalize(file).unwrap(), as_path);
    let out = Command::new("ldd").arg(file).output().unwrap();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux... (0x...)"
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            put(&fs::canonicalize(p).unwrap(), p);
        }
    }
}

/// Runs `prokit ARGS` chrooted into `root` in a user namespace: `--root /` by default.
fn live_prokit(root: &Path, args: &[&str]) -> (bool, String, String) {
    run(Command::new("unshare")
        .args(["--user", "--map-root-user", "chroot"])
        .arg(root)
        .arg("/usr/bin/prokit")
        .args(args)
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .env_remove("IPKG_INSTROOT"))
}

fn user_namespaces_work(root: &Path) -> bool {
    if !e2e::have_tool("unshare") || !e2e::have_tool("ldd") {
        return false;
    }
    let (ok, _, err) = run(Command::new("unshare")
        .args(["--user", "--map-root-user", "chroot"])
        .arg(root)
        .args(["/bin/sh", "-c", "exit 0"]));
    if !ok {
        eprintln!(
            "SKIPPED: cannot chroot in a user namespace here (unshare --user --map-root-user chroot): {err}"
        );
    }
    ok
}

fn log(root: &Path) -> Vec<String> {
    fs::read_to_string(root.join("var/log/scripts.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn scripts_run_on_a_live_root_as_opkg_runs_them() {
    let f = Fixture::new();
    f.write("base_1.0_all.ipk", &package("base", "1.0", "usr/bin/base"));
    f.write(
        "greeter_1.0_all.ipk",
        &package("greeter", "1.0", "usr/bin/greeter"),
    );
    f.index();
    let Some(server) = HttpServer::serve(&f.feed) else {
        return;
    };
    let root: PathBuf = f.tmp.path().join("root");
    // An image built for another root: scripts skipped there by default, as today.
    bootstrap(&f, &server, &root, &["base"]);
    assert!(status_of(&root, "base").contains("Prokit-Scripts: skipped"));
    for d in ["tmp", "dev", "var/log"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    // Rust opens /dev/null for the scripts' stdin; an empty file reads the same.
    fs::write(root.join("dev/null"), "").unwrap();
    copy_with_libraries(&root, Path::new("/bin/sh"), "/bin/sh");
    copy_with_libraries(&root, &bin("prokit"), "/usr/bin/prokit");
    if !user_namespaces_work(&root) {
        return;
    }
    // A sentinel beside the root: nothing outside it changes.
    let outside = f.tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("sentinel"), "untouched").unwrap();
    let outside_before = snapshot(&outside);
    let host_etc = |p: &str| Path::new("/etc").join(p).exists();

    // `--root /` runs scripts by default: no --scripts given.
    let (ok, out, err) = live_prokit(&root, &["install", "greeter"]);
    assert!(ok, "{out}{err}");
    assert_eq!(
        log(&root),
        [
            "greeter-1.0 preinst install instroot=unset pkgroot=/ up=0 self=greeter.preinst",
            "greeter-1.0 postinst configure instroot=unset pkgroot=/ up=0 self=greeter.postinst",
        ]
    );
    let st = status_of(&root, "greeter");
    assert!(st.contains("Status: install user installed"), "{st}");
    assert!(!st.contains("Prokit-Scripts"), "{st}");

    // An upgrade runs the old and new scripts in opkg/dpkg order.
    f.write(
        "greeter_2.0_all.ipk",
        &package("greeter", "2.0", "usr/bin/greeter"),
    );
    f.index();
    fs::remove_file(root.join("var/log/scripts.log")).unwrap();
    let (ok, out, err) = live_prokit(&root, &["update"]);
    assert!(ok, "{out}{err}");
    let (ok, out, err) = live_prokit(&root, &["upgrade"]);
    assert!(ok, "{out}{err}");
    assert_eq!(
        log(&root),
        [
            "greeter-1.0 prerm upgrade 2.0 instroot=unset pkgroot=/ up=1 self=greeter.prerm",
            "greeter-2.0 preinst upgrade 1.0 instroot=unset pkgroot=/ up=1 self=greeter.preinst",
            "greeter-1.0 postrm upgrade 2.0 instroot=unset pkgroot=/ up=1 self=greeter.postrm",
            "greeter-2.0 postinst configure instroot=unset pkgroot=/ up=1 self=greeter.postinst",
        ]
    );

    // A failing preinst aborts: nothing of the root changes but the script's own log line.
    f.write(
        "greeter_3.0_all.ipk",
        &package("greeter", "3.0", "usr/bin/greeter"),
    );
    f.index();
    let (ok, out, err) = live_prokit(&root, &["update"]);
    assert!(ok, "{out}{err}");
    fs::write(root.join("etc/greeter.fail-preinst"), "").unwrap();
    fs::remove_file(root.join("var/log/scripts.log")).unwrap();
    let before = snapshot(&root.join("usr"));
    let (ok, _, err) = live_prokit(&root, &["upgrade"]);
    assert!(!ok);
    assert!(
        err.contains("preinst upgrade 2.0 failed (exit status 9)")
            && err.contains("the operation was rolled back")
            && err.contains("greeter preinst: cannot go on"),
        "{err}"
    );
    assert_eq!(snapshot(&root.join("usr")), before);
    assert!(status_of(&root, "greeter").contains("Version: 2.0"));
    fs::remove_file(root.join("etc/greeter.fail-preinst")).unwrap();

    // A failing postinst leaves the new version unpacked, said with the script's output;
    // `prokit configure` finishes it once the cause is gone.
    fs::write(root.join("etc/greeter.fail-postinst"), "").unwrap();
    let (ok, _, err) = live_prokit(&root, &["upgrade"]);
    assert!(!ok);
    assert!(
        err.contains("postinst configure failed (exit status 9)")
            && err.contains("greeter 3.0 is unpacked but not configured")
            && err.contains("prokit configure greeter")
            && err.contains("greeter postinst: cannot go on"),
        "{err}"
    );
    let st = status_of(&root, "greeter");
    assert!(
        st.contains("Version: 3.0") && st.contains("Status: install user unpacked"),
        "{st}"
    );
    assert_eq!(
        fs::read_to_string(root.join("usr/bin/greeter")).unwrap(),
        "#!/bin/sh\necho greeter 3.0\n"
    );
    // Unpacked counts as installed, as opkg counts it.
    let (ok, out, _) = live_prokit(&root, &["list", "--installed"]);
    assert!(ok && out.contains("greeter - 3.0"), "{out}");
    let (ok, _, err) = live_prokit(&root, &["configure"]);
    assert!(!ok && err.contains("still unpacked"), "{err}");
    fs::remove_file(root.join("etc/greeter.fail-postinst")).unwrap();
    let (ok, out, err) = live_prokit(&root, &["configure"]);
    assert!(ok && out.contains("Configuring greeter."), "{out}{err}");
    assert!(status_of(&root, "greeter").contains("Status: install user installed"));
    let (ok, out, _) = live_prokit(&root, &["configure"]);
    assert!(ok && out.is_empty(), "{out}");

    // A failing prerm refuses the removal; a failing postrm is reported after it.
    fs::write(root.join("etc/greeter.fail-prerm"), "").unwrap();
    let (ok, _, err) = live_prokit(&root, &["remove", "greeter"]);
    assert!(!ok && err.contains("prerm remove failed"), "{err}");
    assert!(root.join("usr/bin/greeter").exists());
    fs::remove_file(root.join("etc/greeter.fail-prerm")).unwrap();
    fs::write(root.join("etc/greeter.fail-postrm"), "").unwrap();
    fs::remove_file(root.join("var/log/scripts.log")).unwrap();
    let (ok, _, err) = live_prokit(&root, &["remove", "greeter"]);
    assert!(
        !ok && err.contains("postrm remove failed") && err.contains("greeter 3.0 was removed"),
        "{err}"
    );
    assert!(!root.join("usr/bin/greeter").exists());
    assert_eq!(status_of(&root, "greeter"), "");
    assert_eq!(
        log(&root),
        [
            "greeter-3.0 prerm remove instroot=unset pkgroot=/ up=0 self=greeter.prerm",
            "greeter-3.0 postrm remove instroot=unset pkgroot=/ up=0 self=greeter.postrm",
        ]
    );

    // --scripts skip on the live root is still honoured and recorded.
    let (ok, out, err) = live_prokit(&root, &["install", "--scripts", "skip", "greeter"]);
    assert!(ok, "{out}{err}");
    assert!(status_of(&root, "greeter").contains("Prokit-Scripts: skipped"));

    // From outside, `--scripts run` against another root is refused: its scripts' absolute
    // paths would be this machine's.
    let r = root.to_str().unwrap();
    let (ok, _, err) = prokit(Some(r), &["remove", "--scripts", "run", "greeter"]);
    assert!(
        !ok && err.contains("--scripts run") && err.contains("--root /"),
        "{err}"
    );
    assert!(root.join("usr/bin/greeter").exists());

    // Every absolute path the scripts wrote is inside the root.
    assert_eq!(snapshot(&outside), outside_before);
    assert!(!host_etc("greeter.fail-postrm") && !Path::new("/var/log/scripts.log").exists());
}
