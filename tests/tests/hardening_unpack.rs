//! Packages attacking the package manager itself (docs/threats.md §19, §26) and a root whose
//! directories were swapped for symlinks, mounted against the real `prokit` binary over real
//! HTTP on 127.0.0.1 with feeds made and signed by `archman`. Each refusal names the package,
//! the entry and the reason; sentinel files outside the root — and the package manager's own
//! state inside it — prove nothing changed.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use common::{Fixture, prokit, status_of};
use e2e::HttpServer;
use feeds::build::PackageBuilder;

/// A feed served over HTTP, a root configured by hand that trusts its key and has updated
/// from it, and a directory beside the root holding a sentinel file.
struct Scene {
    f: Fixture,
    _server: HttpServer,
    root: PathBuf,
    outside: PathBuf,
}

impl Scene {
    /// Serves the feed after `build` added packages to it.
    fn new(build: impl FnOnce(&Fixture)) -> Option<Scene> {
        let f = Fixture::new();
        build(&f);
        f.index();
        let server = HttpServer::serve(&f.feed)?;
        let root = f.tmp.path().join("root");
        fs::create_dir_all(root.join("etc/opkg/keys")).unwrap();
        fs::copy(&f.public, root.join("etc/opkg/keys").join(f.fingerprint())).unwrap();
        fs::write(
            root.join("etc/opkg.conf"),
            format!("src/gz main {}\n", server.url("")),
        )
        .unwrap();
        let outside = f.tmp.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("sentinel"), "host file").unwrap();
        let s = Scene {
            f,
            _server: server,
            root,
            outside,
        };
        let (ok, out, err) = prokit(Some(s.r()), &["update"]);
        assert!(ok, "{out}{err}");
        // The database exists before any attack (opening it creates it).
        let (ok, out, err) = prokit(Some(s.r()), &["list", "--installed"]);
        assert!(ok, "{out}{err}");
        Some(s)
    }

    fn r(&self) -> &str {
        self.root.to_str().unwrap()
    }

    fn install(&self, args: &[&str]) -> (bool, String, String) {
        let mut all = vec!["install"];
        all.extend_from_slice(args);
        prokit(Some(self.r()), &all)
    }

    /// Everything outside the root, and the root without the download cache and the audit
    /// log (which records the refusal).
    fn state(&self) -> BTreeMap<String, String> {
        let mut out = snapshot(&self.outside);
        for (k, v) in snapshot(&self.root) {
            if !k.starts_with("var/cache/") && k != "var/cache" && k != "var/log/prokit/audit.jsonl"
            {
                out.insert(format!("root/{k}"), v);
            }
        }
        out
    }

    /// Installs package `pkg`, which must be refused with an error holding every one of
    /// `needles`, changing nothing.
    fn refused(&self, pkg: &str, needles: &[&str]) {
        let before = self.state();
        let (ok, out, err) = self.install(&[pkg]);
        assert!(!ok, "{out}{err}");
        for n in needles {
            assert!(err.contains(n), "missing {n:?} in: {err}");
        }
        assert_eq!(self.state(), before, "{err}");
        assert_eq!(
            fs::read(self.outside.join("sentinel")).unwrap(),
            b"host file"
        );
        assert!(!status_of(&self.root, pkg).contains("Package"), "{err}");
    }
}

/// Everything under `dir` (lock files aside): path → kind, mode and contents or target.
fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
            if rel.ends_with(".lock") {
                continue;
            }
            let m = fs::symlink_metadata(&p).unwrap();
            use std::os::unix::fs::PermissionsExt;
            let v = if m.file_type().is_symlink() {
                format!("l {}", fs::read_link(&p).unwrap().display())
            } else if m.is_dir() {
                walk(base, &p, out);
                format!("d {:o}", m.permissions().mode() & 0o7777)
            } else {
                format!("f {}", String::from_utf8_lossy(&fs::read(&p).unwrap()))
            };
            out.insert(rel, v);
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Adds `<name>_1.0_all.ipk` holding the given files, plus the symlinks `links`.
fn add_with_links(f: &Fixture, name: &str, files: &[(&str, &str)], links: &[(&str, &str)]) {
    let control = format!(
        "Package: {name}\nVersion: 1.0\nArchitecture: all\nMaintainer: T <t@example.org>\nDescription: the {name} package\n"
    );
    let mut b = PackageBuilder::new(control).mtime(1_700_000_000);
    for (p, d) in files {
        b = b.file(p, 0o644, d.as_bytes().to_vec());
    }
    for (p, t) in links {
        b = b.symlink(p, t);
    }
    f.write(&format!("{name}_1.0_all.ipk"), &b.build().unwrap());
}

#[test]
fn threat_19_package_writing_the_status_file_is_refused() {
    let Some(s) = Scene::new(|f| {
        f.add("app", "1.0", "", &[("usr/bin/app", "app")], None);
        f.add(
            "evil",
            "1.0",
            "",
            &[
                ("usr/bin/evil", "x"),
                (
                    "usr/lib/opkg/status",
                    "Package: busybox\nVersion: 99\nStatus: install ok installed\n\n",
                ),
            ],
            None,
        );
        add_with_links(
            f,
            "evil-link",
            &[],
            &[("usr/lib/opkg/status", "/tmp/forged-status")],
        );
    }) else {
        return;
    };
    let (ok, out, err) = s.install(&["app"]);
    assert!(ok, "{out}{err}");
    for pkg in ["evil", "evil-link"] {
        s.refused(
            pkg,
            &[
                &format!("package {pkg} 1.0"),
                "entry \"./usr/lib/opkg/status\": inside the package database (/usr/lib/opkg): a package may never write the package manager's state",
            ],
        );
    }
    assert!(status_of(&s.root, "app").contains("Status: install user installed"));
}

#[test]
fn threat_19_package_writing_an_info_list_is_refused() {
    // A forged list for an installed package would make `remove` delete host files.
    let Some(s) = Scene::new(|f| {
        f.add("app", "1.0", "", &[("usr/bin/app", "app")], None);
        f.add(
            "evil",
            "1.0",
            "",
            &[(
                "usr/lib/opkg/info/app.list",
                "/etc/shadow\n/../../outside/sentinel\n",
            )],
            None,
        );
    }) else {
        return;
    };
    let (ok, out, err) = s.install(&["app"]);
    assert!(ok, "{out}{err}");
    s.refused(
        "evil",
        &["entry \"./usr/lib/opkg/info/app.list\": inside the package database (/usr/lib/opkg)"],
    );
    assert_eq!(
        fs::read_to_string(s.root.join("usr/lib/opkg/info/app.list")).unwrap(),
        "/usr/bin/app\n"
    );
}

#[test]
fn threat_19_package_writing_the_lists_dir_is_refused() {
    // Replacing the verified index (or prokit's feed state, or the download cache) would
    // let a later install trust an unsigned index.
    let Some(s) = Scene::new(|f| {
        f.add(
            "evil-lists",
            "1.0",
            "",
            &[(
                "var/opkg-lists/main",
                "Package: busybox\nVersion: 99\nFilename: evil.ipk\n",
            )],
            None,
        );
        f.add(
            "evil-state",
            "1.0",
            "",
            &[("var/lib/prokit/feeds/main/forged", "x")],
            None,
        );
        f.add(
            "evil-cache",
            "1.0",
            "",
            &[("var/cache/prokit/busybox_99_all.ipk", "x")],
            None,
        );
    }) else {
        return;
    };
    let index = fs::read(s.root.join("var/opkg-lists/main")).unwrap();
    for (pkg, entry) in [
        ("evil-lists", "./var/opkg-lists/main"),
        ("evil-state", "./var/lib/prokit/feeds/main/forged"),
        ("evil-cache", "./var/cache/prokit/busybox_99_all.ipk"),
    ] {
        s.refused(
            pkg,
            &[
                &format!("entry \"{entry}\": inside the package manager's own state"),
                "a package may never write the package manager's state",
            ],
        );
    }
    assert_eq!(fs::read(s.root.join("var/opkg-lists/main")).unwrap(), index);
}

#[test]
fn threat_19_opkg_conf_check_signature_0_is_refused() {
    let conf = "option check_signature 0\nsrc/gz evil http://127.0.0.1:9/\n";
    let Some(s) = Scene::new(|f| {
        f.add("evil", "1.0", "", &[("etc/opkg/zz-evil.conf", conf)], None);
        f.add("evil-main", "1.0", "", &[("etc/opkg.conf", conf)], None);
    }) else {
        return;
    };
    s.refused(
        "evil",
        &[
            "entry \"./etc/opkg/zz-evil.conf\": an opkg configuration file",
            "a package other than the configured keyring package (none is configured) may not change which keys or feeds are trusted; pass --allow-trust-changes to allow it",
        ],
    );
    s.refused(
        "evil-main",
        &[
            "entry \"./etc/opkg.conf\": opkg's configuration",
            "pass --allow-trust-changes to allow it",
        ],
    );
    // The configuration still demands signatures: an update still verifies.
    let (ok, out, err) = prokit(Some(s.r()), &["update"]);
    assert!(ok, "{out}{err}");
}

#[test]
fn threat_19_new_trusted_key_is_refused() {
    let Some(s) = Scene::new(|f| {
        f.add(
            "evil",
            "1.0",
            "",
            &[(
                "etc/opkg/keys/0123456789abcdef",
                "untrusted comment: evil\nRWQBI0VniavN7w==\n",
            )],
            None,
        );
        add_with_links(
            f,
            "evil-link",
            &[("usr/share/evil/key", "key")],
            &[("etc/opkg/keys/0123456789abcdef", "/usr/share/evil/key")],
        );
    }) else {
        return;
    };
    let keys = snapshot(&s.root.join("etc/opkg/keys"));
    s.refused(
        "evil",
        &[
            "entry \"./etc/opkg/keys/0123456789abcdef\": a trusted key (/etc/opkg/keys)",
            "may not change which keys or feeds are trusted",
        ],
    );
    s.refused(
        "evil-link",
        &["entry \"./etc/opkg/keys/0123456789abcdef\": a trusted key (/etc/opkg/keys)"],
    );
    assert_eq!(snapshot(&s.root.join("etc/opkg/keys")), keys);
}

#[test]
fn threat_19_allow_trust_changes_allows_it() {
    let Some(s) = Scene::new(|f| {
        f.add(
            "feeds-extra",
            "1.0",
            "",
            &[("etc/opkg/extra.conf", "# more feeds\n")],
            None,
        );
    }) else {
        return;
    };
    s.refused("feeds-extra", &["pass --allow-trust-changes to allow it"]);
    let (ok, out, err) = s.install(&["--allow-trust-changes", "feeds-extra"]);
    assert!(ok, "{out}{err}");
    assert_eq!(
        fs::read_to_string(s.root.join("etc/opkg/extra.conf")).unwrap(),
        "# more feeds\n"
    );
}

#[test]
fn threat_19_remove_with_forged_list_deletes_nothing_outside_the_root() {
    let Some(s) = Scene::new(|f| {
        f.add(
            "app",
            "1.0",
            "",
            &[("usr/lib/app/data", "data"), ("usr/bin/app", "app")],
            None,
        );
    }) else {
        return;
    };
    let (ok, out, err) = s.install(&["app"]);
    assert!(ok, "{out}{err}");
    fs::write(s.outside.join("data"), "host data").unwrap();
    let list = s.root.join("usr/lib/opkg/info/app.list");
    let good = fs::read_to_string(&list).unwrap();
    let outside_before = snapshot(&s.outside);

    // A line climbing out of the root: nothing outside is touched (the list is refused).
    fs::write(&list, format!("{good}/../../outside/sentinel\n")).unwrap();
    let (_, out, err) = prokit(Some(s.r()), &["remove", "app"]);
    assert_eq!(snapshot(&s.outside), outside_before, "{out}{err}");

    // A normal line whose directory was swapped for a link to the host: the file behind the
    // link stays, and the rest of the package goes.
    fs::write(&list, &good).unwrap();
    fs::rename(s.root.join("usr/lib/app"), s.root.join("usr/lib/app.moved")).unwrap();
    std::os::unix::fs::symlink(&s.outside, s.root.join("usr/lib/app")).unwrap();
    let (ok, out, err) = prokit(Some(s.r()), &["remove", "app"]);
    assert!(ok, "{out}{err}");
    assert_eq!(snapshot(&s.outside), outside_before, "{out}{err}");
    assert_eq!(fs::read(s.outside.join("data")).unwrap(), b"host data");
    assert!(!s.root.join("usr/bin/app").exists());
    assert!(!status_of(&s.root, "app").contains("Package"));
    let all = format!("{out}{err}");
    assert!(
        all.contains("/usr/lib/app/data") && all.contains("/usr/lib/app is a symbolic link"),
        "the removal says what it left and why: {all}"
    );
}

#[test]
fn threat_26_conffile_opkg_copy_on_another_packages_path_is_refused() {
    let Some(s) = Scene::new(|f| {
        f.add(
            "victim",
            "1.0",
            "",
            &[("etc/app.conf-opkg", "victim's file")],
            None,
        );
        f.add(
            "app",
            "1.0",
            "",
            &[("etc/app.conf", "packaged settings\n")],
            Some("/etc/app.conf\n"),
        );
    }) else {
        return;
    };
    let (ok, out, err) = s.install(&["victim"]);
    assert!(ok, "{out}{err}");
    // A locally written /etc/app.conf is kept, so app's version would go to `-opkg`.
    fs::write(s.root.join("etc/app.conf"), "local settings\n").unwrap();
    s.refused(
        "app",
        &["app: /etc/app.conf-opkg (the new version of its kept conffile /etc/app.conf) is already owned by package victim (app does not declare Replaces: victim)"],
    );
    assert_eq!(
        fs::read(s.root.join("etc/app.conf-opkg")).unwrap(),
        b"victim's file"
    );
    let (ok, out, err) = prokit(Some(s.r()), &["verify"]);
    assert!(ok, "{out}{err}");
}

#[test]
fn transaction_never_renames_through_a_symlinked_parent() {
    let Some(s) = Scene::new(|f| {
        f.add(
            "app",
            "1.0",
            "",
            &[("usr/lib/app/old", "old"), ("usr/bin/app", "app 1")],
            None,
        );
    }) else {
        return;
    };
    let (ok, out, err) = s.install(&["app"]);
    assert!(ok, "{out}{err}");
    fs::write(s.outside.join("old"), "host old").unwrap();
    let outside_before = snapshot(&s.outside);
    // /usr/lib/app swapped for a link to a host directory after the install.
    fs::rename(s.root.join("usr/lib/app"), s.root.join("usr/lib/app.moved")).unwrap();
    std::os::unix::fs::symlink(&s.outside, s.root.join("usr/lib/app")).unwrap();
    // Version 2 drops /usr/lib/app/old: the upgrade must not rename or delete it through
    // the link.
    s.f.add("app", "2.0", "", &[("usr/bin/app", "app 2")], None);
    s.f.index();
    let (ok, out, err) = prokit(Some(s.r()), &["update"]);
    assert!(ok, "{out}{err}");
    let (ok, out, err) = s.install(&["app"]);
    assert!(ok, "{out}{err}");
    assert_eq!(snapshot(&s.outside), outside_before, "{out}{err}");
    assert_eq!(fs::read(s.root.join("usr/bin/app")).unwrap(), b"app 2");
    let (ok, out, err) = prokit(Some(s.r()), &["remove", "app"]);
    assert!(ok, "{out}{err}");
    assert_eq!(snapshot(&s.outside), outside_before, "{out}{err}");
}

#[test]
fn threat_19_keyring_package_may_install_keys() {
    use e2e::{bin, run};
    use std::process::Command;
    let archman = |args: &[&str]| {
        let (ok, out, err) = run(Command::new(bin("archman")).args(args));
        assert!(ok, "archman {args:?}: {out}{err}");
    };
    let f = Fixture::new();
    let dir = f.tmp.path();
    let path = |n: &str| dir.join(n).display().to_string();
    for k in ["root1", "feedA"] {
        archman(&[
            "keygen",
            "-s",
            &path(&format!("{k}.sec")),
            "-p",
            &path(&format!("{k}.pub")),
        ]);
    }
    let ring = path("ring");
    archman(&[
        "keyring",
        "init",
        &ring,
        "--name",
        "demo",
        "--feed-key",
        &path("feedA.pub"),
        "--threshold",
        "1",
        "--root-key",
        &path("root1.sec"),
    ]);
    archman(&["keyring", "build", &ring, f.feed.to_str().unwrap()]);
    f.add("lib", "1.0", "", &[("usr/lib/lib.so", "lib")], None);
    f.add(
        "evil",
        "1.0",
        "",
        &[(
            "etc/opkg/keys/0123456789abcdef",
            "a key of the attacker's\n",
        )],
        None,
    );
    f.index_by(&dir.join("feedA.sec"), &[]);
    let Some(server) = HttpServer::serve(&f.feed) else {
        return;
    };
    let root = dir.join("root");
    let r = root.to_str().unwrap();
    let root_fp = feeds::usign::PublicKey::read_path(&dir.join("root1.pub"))
        .unwrap()
        .fingerprint()
        .to_string();
    let feed_fp = feeds::usign::PublicKey::read_path(&dir.join("feedA.pub"))
        .unwrap()
        .fingerprint()
        .to_string();
    let (ok, out, err) = prokit(
        None,
        &[
            "bootstrap",
            r,
            "--feed",
            &format!("main={}", server.url("")),
            "--keyring",
            f.feed.join("demo-keyring_1_all.ipk").to_str().unwrap(),
            "--root-fingerprint",
            &root_fp,
            "lib",
        ],
    );
    assert!(ok, "{out}{err}");
    // The feed key went missing; the configured keyring package puts it back.
    let key = root.join("etc/opkg/keys").join(&feed_fp);
    let key_bytes = fs::read(&key).unwrap();
    fs::remove_file(&key).unwrap();
    let (ok, out, err) = prokit(Some(r), &["install", "demo-keyring"]);
    assert!(ok, "{out}{err}");
    assert_eq!(fs::read(&key).unwrap(), key_bytes);
    // Any other package is refused, and the message names the keyring package.
    let keys = snapshot(&root.join("etc/opkg/keys"));
    let (ok, out, err) = prokit(Some(r), &["install", "evil"]);
    assert!(!ok, "{out}{err}");
    assert!(
        err.contains("entry \"./etc/opkg/keys/0123456789abcdef\": a trusted key (/etc/opkg/keys): a package other than the configured keyring package (demo-keyring) may not change which keys or feeds are trusted"),
        "{err}"
    );
    assert_eq!(snapshot(&root.join("etc/opkg/keys")), keys);
}
