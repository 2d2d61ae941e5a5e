//! prokit against feeds made by archman (and real OpenWrt feeds), always over real HTTP on
//! 127.0.0.1: bootstrap, update, install, upgrade, remove, verify, the reproducible root
//! tarball, and the real stangri / up-n-atom feeds served as they are.

mod common;

use std::fs;

use common::{Fixture, prokit, status_of};
use e2e::{HttpServer, real_dir};

#[test]
fn bootstrap_update_install_upgrade_remove_verify_over_http() {
    let f = Fixture::new();
    f.add(
        "base-files",
        "1.0",
        "",
        &[
            ("etc/config/system", "hostname x\n"),
            ("bin/hello", "#!/bin/sh\n"),
        ],
        Some("/etc/config/system\n"),
    );
    f.add(
        "libfoo",
        "1.0",
        "Provides: libfoo-abi\n",
        &[("usr/lib/libfoo.so.1", "v1")],
        None,
    );
    f.add(
        "app",
        "2.0",
        "Depends: libfoo (>= 1.0), base-files\n",
        &[("usr/bin/app", "app 2.0")],
        None,
    );
    f.index();
    let Some(server) = HttpServer::serve(&f.feed) else {
        return;
    };
    let root = f.tmp.path().join("root");
    let (ok, out, err) = prokit(
        None,
        &[
            "bootstrap",
            root.to_str().unwrap(),
            "--feed",
            &format!("main={}", server.url("")),
            "--pubkey",
            f.public.to_str().unwrap(),
            "app",
        ],
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains("Installed app 2.0"), "{out}");
    assert_eq!(
        fs::read_to_string(root.join("usr/bin/app")).unwrap(),
        "app 2.0"
    );
    assert!(root.join("usr/lib/libfoo.so.1").is_file());
    // The root can update itself later with the same trust.
    let conf = fs::read_to_string(root.join("etc/opkg.conf")).unwrap();
    assert!(
        conf.contains(&format!("src/gz main {}", server.url(""))),
        "{conf}"
    );
    assert!(root.join("etc/opkg/keys").join(f.fingerprint()).is_file());
    // opkg-lede's database: requested vs pulled in.
    let status = status_of(&root, "app");
    assert!(
        status.contains("Status: install user installed"),
        "{status}"
    );
    let status = status_of(&root, "libfoo");
    assert!(status.contains("Status: install ok installed"), "{status}");
    assert!(status.contains("Auto-Installed: yes"), "{status}");

    let r = root.to_str().unwrap();
    let (ok, out, err) = prokit(Some(r), &["list", "--installed"]);
    assert!(ok, "{err}");
    for p in ["app - 2.0", "libfoo - 1.0", "base-files - 1.0"] {
        assert!(out.contains(p), "{out}");
    }
    let (ok, out, err) = prokit(Some(r), &["verify"]);
    assert!(ok, "{out}{err}");

    // A changed file and a missing file fail verify; a modified conffile is only reported.
    fs::write(root.join("usr/bin/app"), "trojan").unwrap();
    fs::remove_file(root.join("bin/hello")).unwrap();
    fs::write(root.join("etc/config/system"), "hostname mine\n").unwrap();
    let (ok, out, _) = prokit(Some(r), &["verify"]);
    assert!(!ok, "{out}");
    assert!(out.contains("changed: /usr/bin/app"), "{out}");
    assert!(out.contains("missing: /bin/hello"), "{out}");
    assert!(
        out.contains("conffile modified: /etc/config/system"),
        "{out}"
    );
    fs::write(root.join("usr/bin/app"), "app 2.0").unwrap();
    fs::write(root.join("bin/hello"), "#!/bin/sh\n").unwrap();

    // A new libfoo is published: update, then upgrade it.
    f.add(
        "libfoo",
        "1.1",
        "Provides: libfoo-abi\n",
        &[("usr/lib/libfoo.so.1", "v1.1")],
        None,
    );
    f.add(
        "base-files",
        "1.1",
        "",
        &[
            ("etc/config/system", "hostname y\n"),
            ("bin/hello", "#!/bin/sh\n"),
        ],
        Some("/etc/config/system\n"),
    );
    f.index();
    let (ok, out, err) = prokit(Some(r), &["update"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("main: updated"), "{out}");
    let (ok, out, err) = prokit(Some(r), &["install", "libfoo", "base-files"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("Upgraded libfoo 1.0 -> 1.1"), "{out}");
    assert_eq!(
        fs::read_to_string(root.join("usr/lib/libfoo.so.1")).unwrap(),
        "v1.1"
    );
    // The modified conffile is kept; the new one is beside it.
    assert_eq!(
        fs::read_to_string(root.join("etc/config/system")).unwrap(),
        "hostname mine\n"
    );
    assert_eq!(
        fs::read_to_string(root.join("etc/config/system-opkg")).unwrap(),
        "hostname y\n"
    );

    // Removing a package others depend on is refused, and names them.
    let (ok, _, err) = prokit(Some(r), &["remove", "libfoo"]);
    assert!(!ok);
    assert!(err.contains("app"), "{err}");
    let (ok, out, err) = prokit(Some(r), &["remove", "app", "libfoo"]);
    assert!(ok, "{out}{err}");
    assert!(!root.join("usr/bin/app").exists());
    assert!(!root.join("usr/lib/libfoo.so.1").exists());
    let (ok, out, _) = prokit(Some(r), &["list", "--installed"]);
    assert!(
        ok && !out.contains("libfoo") && out.contains("base-files"),
        "{out}"
    );
    let (ok, out, err) = prokit(Some(r), &["verify"]);
    assert!(ok, "{out}{err}");
}

#[test]
fn unsatisfiable_request_fails_before_downloading_and_explains_the_chain() {
    let f = Fixture::new();
    f.add("b", "1.0", "", &[("usr/share/b", "b")], None);
    f.add(
        "a",
        "1.0",
        "Depends: b (>= 2)\n",
        &[("usr/share/a", "a")],
        None,
    );
    f.index();
    let Some(server) = HttpServer::serve(&f.feed) else {
        return;
    };
    let root = f.tmp.path().join("root");
    let (ok, out, err) = prokit(
        None,
        &[
            "bootstrap",
            root.to_str().unwrap(),
            "--feed",
            &format!("main={}", server.url("")),
            "--pubkey",
            f.public.to_str().unwrap(),
            "a",
        ],
    );
    assert!(!ok, "{out}");
    assert!(
        err.contains("a") && err.contains("b (>= 2)") && err.contains("1.0"),
        "{err}"
    );
    assert!(!root.join("usr/share/b").exists());
    let cache = root.join("var/cache/prokit");
    assert!(
        !cache.exists() || fs::read_dir(&cache).unwrap().next().is_none(),
        "something was downloaded"
    );
}

/// `bootstrap --noaction` (`--dry-run`) prints what it would install and makes nothing: not
/// the target, and no temporary directory is left behind. `--download-only` configures the
/// root and fills its cache, and installs nothing.
#[test]
fn bootstrap_noaction_makes_nothing_and_download_only_installs_nothing() {
    let f = Fixture::new();
    f.add("libfoo", "1.0", "", &[("usr/lib/libfoo.so.1", "v1")], None);
    f.add(
        "app",
        "2.0",
        "Depends: libfoo\n",
        &[("usr/bin/app", "app 2.0")],
        None,
    );
    f.index();
    let Some(server) = HttpServer::serve(&f.feed) else {
        return;
    };
    let root = f.tmp.path().join("root");
    let tmp = f.tmp.path().join("tmp");
    fs::create_dir(&tmp).unwrap();
    // `prokit bootstrap ROOT --feed … --pubkey KEY FLAG app`, its temporary files in `tmp`.
    let run = |key: &std::path::Path, flag: &str| {
        let feed = format!("main={}", server.url(""));
        let out = std::process::Command::new(e2e::bin("prokit"))
            .args(["bootstrap", root.to_str().unwrap(), "--feed", &feed])
            .arg("--pubkey")
            .arg(key)
            .args([flag, "app"])
            .env("TMPDIR", &tmp)
            .output()
            .unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.success(), text(&out.stdout), text(&out.stderr))
    };
    let left_in_tmp = || fs::read_dir(&tmp).unwrap().count();
    for flag in ["--noaction", "--dry-run"] {
        let (ok, out, err) = run(&f.public, flag);
        assert!(ok, "{out}{err}");
        assert!(out.contains("Would install app 2.0 (feed main"), "{out}");
        assert!(out.contains("Would install libfoo 1.0"), "{out}");
        assert!(out.contains("nothing was changed (--noaction)"), "{out}");
        assert!(!root.exists(), "{flag} made the target");
        assert_eq!(left_in_tmp(), 0, "{flag} left its scratch root");
    }
    // A feed that does not verify fails the plan, and still leaves nothing.
    let (ok, out, err) = run(&f.tmp.path().join("nonexistent.pub"), "--noaction");
    assert!(!ok, "{out}{err}");
    assert!(!root.exists());
    assert_eq!(left_in_tmp(), 0);

    let (ok, out, err) = run(&f.public, "--download-only");
    assert!(ok, "{out}{err}");
    assert!(
        err.contains("nothing was installed (--download-only)"),
        "{err}"
    );
    assert!(!root.join("usr/bin/app").exists());
    assert!(status_of(&root, "app").is_empty());
    let cached: Vec<String> = fs::read_dir(root.join("var/cache/prokit"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(cached.len(), 2, "{cached:?}");
    assert!(cached.iter().any(|n| n.contains("app_2.0")), "{cached:?}");
    // A later bootstrap of the same root installs from there.
    common::bootstrap(&f, &server, &root, &["app"]);
    assert_eq!(
        fs::read_to_string(root.join("usr/bin/app")).unwrap(),
        "app 2.0"
    );
}

#[test]
fn bootstrap_of_300_corpus_packages_is_reproducible() {
    let Some(corpus) = common::corpus(300, "ipk-tgz") else {
        return;
    };
    let f = Fixture::with_feed(&corpus);
    f.index();
    let Some(server) = HttpServer::serve(&f.feed) else {
        return;
    };
    let names = common::package_names(&f.feed.join("Packages"));
    assert_eq!(names.len(), 300);
    let mut tars = Vec::new();
    for i in 0..2 {
        let root = f.tmp.path().join(format!("root{i}"));
        let tar = f.tmp.path().join(format!("root{i}.tar"));
        let mut args = vec![
            "bootstrap".to_string(),
            root.to_str().unwrap().into(),
            "--feed".into(),
            format!("corpus={}", server.url("")),
            "--pubkey".into(),
            f.public.to_str().unwrap().into(),
            "--arch".into(),
            "all:1".into(),
            "--arch".into(),
            "x86_64:10".into(),
            "--assume-installed".into(),
            "libc".into(),
            "--tar".into(),
            tar.to_str().unwrap().into(),
            "-q".into(),
        ];
        args.extend(names.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, out, err) = prokit(None, &args);
        assert!(ok, "{out}{err}");
        let (ok, out, err) = prokit(Some(root.to_str().unwrap()), &["list", "--installed"]);
        assert!(ok, "{err}");
        assert_eq!(out.lines().count(), 300, "{out}");
        tars.push(fs::read(&tar).unwrap());
    }
    assert!(tars[0].len() > 1_000_000);
    assert!(tars[0] == tars[1], "two bootstraps gave different tarballs");
}

#[test]
fn real_stangri_feed_updates_with_its_key_and_every_package_installs() {
    let Some(real) = real_dir() else { return };
    let feed = real.join("feeds/stangri+repo.openwrt.melmac.ca");
    let key = real.join("keys/thirdparty/7ffc7517c4cc0c56");
    let Some(server) = HttpServer::serve(&feed) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    // What the feed depends on but does not carry (libc, luci, dnsmasq, …) is assumed.
    let assumed = common::missing_dependencies(&feed.join("Packages")).join(",");
    let names = common::package_names(&feed.join("Packages"));
    assert_eq!(names.len(), 31);
    // One package of the real feed ships a key into /etc/opkg/keys: it changes what the root
    // trusts, so it installs only with --allow-trust-changes (docs/threats.md §19).
    const SHIPS_A_KEY: &str = "luci-theme-glass";
    assert!(names.iter().any(|n| n == SHIPS_A_KEY));
    for name in &names {
        let root = tmp.path().join(name);
        let feed_arg = format!("stangri={}", server.url(""));
        let mut args = vec![
            "bootstrap",
            root.to_str().unwrap(),
            "--feed",
            &feed_arg,
            "--pubkey",
            key.to_str().unwrap(),
            "--assume-installed",
            &assumed,
            name,
        ];
        if name == SHIPS_A_KEY {
            let (ok, out, err) = prokit(None, &args);
            assert!(!ok, "{name}: {out}{err}");
            assert!(
                err.contains("entry \"./etc/opkg/keys/ef97c468af77cea1\"")
                    && err.contains("--allow-trust-changes"),
                "{err}"
            );
            let _ = std::fs::remove_dir_all(&root);
            args.push("--allow-trust-changes");
        }
        let (ok, out, err) = prokit(None, &args);
        assert!(ok, "{name}: {out}{err}");
        assert!(status_of(&root, name).contains("Status: install user installed"));
        let (ok, out, err) = prokit(Some(root.to_str().unwrap()), &["verify"]);
        assert!(ok, "{name}: {out}{err}");
    }
}

#[test]
fn real_stale_up_n_atom_feed_verifies_but_install_names_the_missing_file() {
    let Some(real) = real_dir() else { return };
    let feed = real.join("feeds/up-n-atom+repo.openwrt.eleventwentytwo.com");
    let Some(server) = HttpServer::serve(&feed) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let assumed = common::missing_dependencies(&feed.join("Packages")).join(",");
    let (ok, out, err) = prokit(
        None,
        &[
            "bootstrap",
            root.to_str().unwrap(),
            "--feed",
            &format!("eleventwentytwo={}", server.url("")),
            "--pubkey",
            feed.join("c54a05f852ed0b42").to_str().unwrap(),
            "--arch",
            "x86_64:10",
            "--assume-installed",
            &assumed,
            "kmod-bnx2x",
        ],
    );
    assert!(!ok, "{out}");
    // The index verified (its signature is good), but its Filename is stale.
    assert!(
        root.join("var/opkg-lists/eleventwentytwo").is_file(),
        "{err}"
    );
    assert!(
        err.contains("staging_dir/repo/") && (err.contains("404") || err.contains("not found")),
        "{err}"
    );
    assert!(!root.join("lib/modules").exists());
}

#[test]
fn offline_scripts_run_like_openwrts_image_build_and_a_failing_one_rolls_back() {
    let f = Fixture::new();
    let ok_pkg = feeds::build::PackageBuilder::new(
        "Package: greeter\nVersion: 1.0\nArchitecture: all\nMaintainer: T <t@example.org>\nDescription: greets\n",
    )
    .file("usr/bin/greeter", 0o755, b"#!/bin/sh\necho hi\n".to_vec())
    .control_file(
        "postinst",
        0o755,
        b"#!/bin/sh\n[ -n \"$IPKG_INSTROOT\" ] || exit 7\necho \"configured $1\" > \"$IPKG_INSTROOT/etc/greeter.done\"\n".to_vec(),
    )
    .build()
    .unwrap();
    f.write("greeter_1.0_all.ipk", &ok_pkg);
    let bad_pkg = feeds::build::PackageBuilder::new(
        "Package: broken\nVersion: 1.0\nArchitecture: all\nMaintainer: T <t@example.org>\nDescription: fails\n",
    )
    .file("usr/bin/broken", 0o755, b"#!/bin/sh\n".to_vec())
    .control_file(
        "postinst",
        0o755,
        b"#!/bin/sh\necho 'cannot configure broken' >&2\nexit 3\n".to_vec(),
    )
    .build()
    .unwrap();
    f.write("broken_1.0_all.ipk", &bad_pkg);
    f.index();
    let Some(server) = HttpServer::serve(&f.feed) else {
        return;
    };
    let root = f.tmp.path().join("root");
    let (ok, out, err) = prokit(
        None,
        &[
            "bootstrap",
            root.to_str().unwrap(),
            "--feed",
            &format!("main={}", server.url("")),
            "--pubkey",
            f.public.to_str().unwrap(),
            "--scripts",
            "offline",
            "greeter",
        ],
    );
    assert!(ok, "{out}{err}");
    assert_eq!(
        fs::read_to_string(root.join("etc/greeter.done")).unwrap(),
        "configured configure\n"
    );
    let r = root.to_str().unwrap();
    let (ok, _, err) = prokit(Some(r), &["install", "--scripts", "offline", "broken"]);
    assert!(!ok);
    assert!(
        err.contains("postinst") && err.contains("cannot configure broken"),
        "{err}"
    );
    assert!(!root.join("usr/bin/broken").exists());
    assert_eq!(status_of(&root, "broken"), "");
    // Skipped scripts are the default, and recorded.
    let (ok, _, err) = prokit(Some(r), &["install", "broken"]);
    assert!(ok, "{err}");
    assert!(root.join("usr/bin/broken").exists());
}

#[test]
fn bootstrap_works_as_an_unprivileged_user() {
    // Under CI the tests run as root: drop to nobody for this one with setpriv.
    let uid = std::process::Command::new("id").arg("-u").output().unwrap();
    let as_root = String::from_utf8_lossy(&uid.stdout).trim() == "0";
    if as_root && !e2e::have_tool("setpriv") {
        return;
    }
    let f = Fixture::new();
    f.add("lib", "1.0", "", &[("usr/lib/lib.so", "lib")], None);
    f.add(
        "app",
        "1.0",
        "Depends: lib\n",
        &[("usr/bin/app", "app")],
        None,
    );
    f.index();
    let Some(server) = HttpServer::serve(&f.feed) else {
        return;
    };
    let work = f.tmp.path().join("work");
    fs::create_dir(&work).unwrap();
    fs::copy(&f.public, work.join("feed.pub")).unwrap();
    let mut cmd = if as_root {
        let (ok, _, err) = e2e::run(
            std::process::Command::new("chown")
                .args(["-R", "65534:65534"])
                .arg(&work),
        );
        assert!(ok, "{err}");
        // The temporary directory's ancestors must be searchable by nobody.
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]);
        c.arg(e2e::bin("prokit"));
        c
    } else {
        std::process::Command::new(e2e::bin("prokit"))
    };
    let root = work.join("rootfs");
    cmd.arg("bootstrap")
        .arg(&root)
        .arg("--feed")
        .arg(format!("main={}", server.url("")))
        .arg("--pubkey")
        .arg(work.join("feed.pub"))
        .arg("--tar")
        .arg(work.join("rootfs.tar"))
        .arg("app")
        .env("SOURCE_DATE_EPOCH", common::EPOCH);
    let (ok, out, err) = e2e::run(&mut cmd);
    if !ok && err.contains("Permission denied") && as_root {
        // A temporary directory nobody may not enter (e.g. a 0700 TMPDIR): say so.
        panic!("nobody cannot use {}: {err}", work.display());
    }
    assert!(ok, "{out}{err}");
    assert!(root.join("usr/bin/app").is_file());
    let mut a = tar_names(&work.join("rootfs.tar"));
    a.sort();
    assert!(a.iter().any(|n| n == "usr/bin/app"), "{a:?}");
}

/// Entry names and owners of a tarball, checking every entry is owned by 0:0.
fn tar_names(path: &std::path::Path) -> Vec<String> {
    let (ok, out, err) = e2e::run(
        std::process::Command::new("tar")
            .arg("--numeric-owner")
            .arg("-tvf")
            .arg(path),
    );
    assert!(ok, "{err}");
    out.lines()
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(cols[1], "0/0", "{l}");
            cols[5]
                .trim_start_matches("./")
                .trim_end_matches('/')
                .to_string()
        })
        .collect()
}
