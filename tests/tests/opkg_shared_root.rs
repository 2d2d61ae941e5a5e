//! A root that prokit and opkg-lede both manage (issue: drop-in for real). opkg-lede is not
//! packaged, so what it does is stated here as facts from its source (openwrt/opkg-lede at
//! 38eccbb) and checked by hand with the real binary (README, "Interoperability"); the tests
//! build what opkg leaves in a root by code and run prokit against it, over real HTTP.
//!
//! Facts used:
//! - `opkg update` downloads `Packages.gz` for a `src/gz` feed and `Packages` for a `src`
//!   feed, storing the served bytes unchanged as `<lists_dir>/<feed>`
//!   (`libopkg/opkg_cmd.c` lines 139–144), and the served `Packages.sig` as
//!   `<lists_dir>/<feed>.sig` (lines 160–170); it reads a `src/gz` list back through gunzip
//!   (`libopkg/pkg_hash.c` line 85).
//! - opkg takes `<root>/var/lock/opkg.lock` with `creat()` first thing and fails with "Could
//!   not create lock file" when `var/lock` is missing (`libopkg/opkg_conf.c` lines 493–501).
//! - Upgrading or removing a package, opkg deletes every `<info_dir>/<pkg>.*`
//!   (`libopkg/opkg_remove.c` lines 448–457, called from `opkg_install.c` line 1480), so
//!   prokit's `<pkg>.sha256` record goes with it, and writes no record of its own.
//! - opkg records each conffile's SHA-256 in the status file's `Conffiles`
//!   (`libopkg/opkg_install.c` line 1126) and compares SHA-256 or MD5 by the recorded
//!   length (`libopkg/conffile.c` lines 53–57).

mod common;

use std::fs;
use std::path::Path;

use common::{Fixture, prokit, status_of};
use e2e::HttpServer;
use sha2::{Digest, Sha256};

fn bootstrap(f: &Fixture, server: &HttpServer, root: &Path, packages: &[&str]) {
    let feed = format!("main={}", server.url(""));
    let mut args = vec![
        "bootstrap",
        root.to_str().unwrap(),
        "--feed",
        &feed,
        "--pubkey",
        f.public.to_str().unwrap(),
    ];
    args.extend_from_slice(packages);
    let (ok, out, err) = prokit(None, &args);
    assert!(ok, "{out}{err}");
}

#[test]
fn lists_are_stored_exactly_as_opkg_update_stores_them() {
    let f = Fixture::new();
    f.add("a", "1.0", "", &[("usr/bin/a", "a")], None);
    f.index();
    let Some(server) = HttpServer::serve(&f.feed) else {
        return;
    };
    let root = f.tmp.path().join("root");
    bootstrap(&f, &server, &root, &["a"]);
    // src/gz: the served Packages.gz and Packages.sig, byte for byte.
    let lists = root.join("var/opkg-lists");
    assert_eq!(
        fs::read(lists.join("main")).unwrap(),
        fs::read(f.feed.join("Packages.gz")).unwrap()
    );
    assert_eq!(
        fs::read(lists.join("main.sig")).unwrap(),
        fs::read(f.feed.join("Packages.sig")).unwrap()
    );
    // prokit's own state is where opkg never looks.
    assert!(root.join("var/lib/prokit/feeds/main/Release").is_file());
    assert!(!lists.join("main.Release").exists());

    // src (plain): the served Packages.
    let conf = root.join("etc/opkg.conf");
    let text = fs::read_to_string(&conf).unwrap();
    fs::write(&conf, text.replace("src/gz main", "src main")).unwrap();
    let r = root.to_str().unwrap();
    let (ok, out, err) = prokit(Some(r), &["update"]);
    assert!(ok, "{out}{err}");
    assert_eq!(
        fs::read(lists.join("main")).unwrap(),
        fs::read(f.feed.join("Packages")).unwrap()
    );
    let (ok, out, err) = prokit(Some(r), &["list"]);
    assert!(ok && out.contains("a - 1.0"), "{out}{err}");
}

#[test]
fn prokit_installs_from_lists_that_opkg_update_wrote() {
    let f = Fixture::new();
    f.add("a", "1.0", "", &[("usr/bin/a", "a")], None);
    f.index();
    let Some(server) = HttpServer::serve(&f.feed) else {
        return;
    };
    // A root configured for opkg, where only `opkg update` has run: the lists as opkg stores
    // them, no prokit state at all.
    let root = f.tmp.path().join("root");
    let fp = f.fingerprint();
    fs::create_dir_all(root.join("etc/opkg/keys")).unwrap();
    fs::copy(&f.public, root.join("etc/opkg/keys").join(&fp)).unwrap();
    fs::write(
        root.join("etc/opkg.conf"),
        format!(
            "src/gz main {}\ndest root /\nlists_dir ext /var/opkg-lists\noption check_signature 1\n",
            server.url("")
        ),
    )
    .unwrap();
    let lists = root.join("var/opkg-lists");
    fs::create_dir_all(&lists).unwrap();
    fs::copy(f.feed.join("Packages.gz"), lists.join("main")).unwrap();
    fs::copy(f.feed.join("Packages.sig"), lists.join("main.sig")).unwrap();
    let r = root.to_str().unwrap();
    let (ok, out, err) = prokit(Some(r), &["install", "a"]);
    assert!(ok, "{out}{err}");
    assert_eq!(fs::read_to_string(root.join("usr/bin/a")).unwrap(), "a");

    // A list altered after opkg stored it is refused by its signature, whatever its form.
    let mut packages = fs::read(f.feed.join("Packages")).unwrap();
    packages.extend_from_slice(b"Package: evil\nVersion: 1\nArchitecture: all\n\n");
    fs::write(lists.join("main"), &packages).unwrap();
    let (ok, out, err) = prokit(Some(r), &["list"]);
    assert!(!ok, "{out}");
    assert!(err.contains("bad signature"), "{err}");
}

#[test]
fn a_list_opkg_replaced_with_an_older_signed_index_is_refused_until_prokit_update() {
    let f = Fixture::new();
    f.add("a", "1.0", "", &[("usr/bin/a", "a 1")], None);
    f.add("b", "1.0", "", &[("usr/bin/b", "b")], None);
    f.index();
    let old_gz = fs::read(f.feed.join("Packages.gz")).unwrap();
    let old_sig = fs::read(f.feed.join("Packages.sig")).unwrap();
    f.add("a", "2.0", "", &[("usr/bin/a", "a 2")], None);
    fs::remove_file(f.feed.join("a_1.0_all.ipk")).unwrap();
    f.index();
    let Some(server) = HttpServer::serve(&f.feed) else {
        return;
    };
    let root = f.tmp.path().join("root");
    bootstrap(&f, &server, &root, &["b"]);
    // opkg (which ignores Release) stores a replayed, validly signed older index.
    let lists = root.join("var/opkg-lists");
    fs::write(lists.join("main"), &old_gz).unwrap();
    fs::write(lists.join("main.sig"), &old_sig).unwrap();
    let r = root.to_str().unwrap();
    let (ok, out, err) = prokit(Some(r), &["install", "a"]);
    assert!(!ok, "{out}");
    assert!(
        err.contains("not the index of the last Release prokit accepted")
            && err.contains("run `prokit update`"),
        "{err}"
    );
    assert!(!root.join("usr/bin/a").exists());
    let (ok, out, err) = prokit(Some(r), &["update"]);
    assert!(ok, "{out}{err}");
    let (ok, out, err) = prokit(Some(r), &["install", "a"]);
    assert!(ok, "{out}{err}");
    assert_eq!(fs::read_to_string(root.join("usr/bin/a")).unwrap(), "a 2");
}

#[test]
fn bootstrap_makes_the_lock_directory_opkg_needs() {
    let f = Fixture::new();
    f.add("a", "1.0", "", &[("usr/bin/a", "a")], None);
    f.index();
    let Some(server) = HttpServer::serve(&f.feed) else {
        return;
    };
    let root = f.tmp.path().join("root");
    let tar = f.tmp.path().join("root.tar");
    let feed = format!("main={}", server.url(""));
    let (ok, out, err) = prokit(
        None,
        &[
            "bootstrap",
            root.to_str().unwrap(),
            "--feed",
            &feed,
            "--pubkey",
            f.public.to_str().unwrap(),
            "--tar",
            tar.to_str().unwrap(),
            "a",
        ],
    );
    assert!(ok, "{out}{err}");
    assert!(root.join("var/lock").is_dir());
    // The tarball has the directory, not the lock files in it.
    let mut names = Vec::new();
    let mut archive = tar::Archive::new(fs::File::open(&tar).unwrap());
    for e in archive.entries().unwrap() {
        names.push(e.unwrap().path().unwrap().to_string_lossy().into_owned());
    }
    let norm = |n: &str| n.trim_start_matches("./").trim_end_matches('/').to_string();
    assert!(names.iter().any(|n| norm(n) == "var/lock"), "{names:?}");
    assert!(
        !names.iter().any(|n| norm(n).starts_with("var/lock/")),
        "{names:?}"
    );
}

#[test]
fn bootstrap_refuses_a_lock_directory_that_leaves_the_root() {
    let f = Fixture::new();
    f.add("a", "1.0", "", &[("usr/bin/a", "a")], None);
    f.index();
    let Some(server) = HttpServer::serve(&f.feed) else {
        return;
    };
    let root = f.tmp.path().join("root");
    let outside = f.tmp.path().join("outside");
    fs::create_dir_all(root.join("var")).unwrap();
    fs::create_dir_all(&outside).unwrap();
    // `var/lock` is a symlink to an absolute host path: resolved as a chroot would, it means
    // `<root>/<outside>`, never the host directory.
    std::os::unix::fs::symlink(&outside, root.join("var/lock")).unwrap();
    bootstrap(&f, &server, &root, &["a"]);
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
}

/// What `opkg upgrade` leaves after replacing prokit's `a` 1.0 with 2.0 from the feed: the
/// new files, opkg's `.list`, a status stanza with the new version and the conffile's
/// SHA-256, and no prokit record (opkg deleted `info/a.*`).
fn opkg_upgrade(root: &Path, files: &[(&str, &str)], conffile: (&str, &str)) {
    let info = root.join("usr/lib/opkg/info");
    for e in fs::read_dir(&info).unwrap() {
        let p = e.unwrap().path();
        if p.file_name().unwrap().to_string_lossy().starts_with("a.") {
            fs::remove_file(p).unwrap();
        }
    }
    let mut list = String::new();
    for (path, data) in files.iter().chain([&conffile]) {
        let full = root.join(path);
        fs::create_dir_all(full.parent().unwrap()).unwrap();
        fs::write(&full, data).unwrap();
        list.push_str(&format!("/{path}\n"));
    }
    fs::write(info.join("a.list"), list).unwrap();
    fs::write(info.join("a.control"), "Package: a\nVersion: 2.0\n").unwrap();
    let status_path = root.join("usr/lib/opkg/status");
    let old = status_of(root, "a");
    let new = format!(
        "Package: a\nVersion: 2.0\nConffiles:\n /{} {}\nStatus: install user installed\nArchitecture: all\nInstalled-Time: 1795315200\n",
        conffile.0,
        hex::encode(Sha256::digest(conffile.1.as_bytes()))
    );
    let text = fs::read_to_string(&status_path).unwrap();
    fs::write(&status_path, text.replace(old.trim_end(), new.trim_end())).unwrap();
}

#[test]
fn verify_tells_the_truth_on_a_root_opkg_upgraded() {
    let f = Fixture::new();
    f.add(
        "a",
        "1.0",
        "",
        &[("usr/bin/a", "a 1"), ("etc/a.conf", "x=1\n")],
        Some("/etc/a.conf\n"),
    );
    f.index();
    let Some(server) = HttpServer::serve(&f.feed) else {
        return;
    };
    let root = f.tmp.path().join("root");
    bootstrap(&f, &server, &root, &["a"]);
    let r = root.to_str().unwrap();
    let (ok, out, err) = prokit(Some(r), &["verify"]);
    assert!(ok, "{out}{err}");

    // The feed moves to 2.0 and opkg upgrades the root.
    f.add(
        "a",
        "2.0",
        "",
        &[
            ("usr/bin/a", "a 2"),
            ("usr/share/a/data", "d2"),
            ("etc/a.conf", "x=1\n"),
        ],
        Some("/etc/a.conf\n"),
    );
    fs::remove_file(f.feed.join("a_1.0_all.ipk")).unwrap();
    f.index();
    opkg_upgrade(
        &root,
        &[("usr/bin/a", "a 2"), ("usr/share/a/data", "d2")],
        ("etc/a.conf", "x=1\n"),
    );
    // A tampered file is not "checked": prokit has no record for it, and says so (exit 3).
    fs::write(root.join("usr/bin/a"), "evil").unwrap();
    let (ok, out, err) = prokit(Some(r), &["verify"]);
    assert!(!ok, "{out}{err}");
    assert!(
        err.contains("2 files not verifiable: installed by another tool"),
        "{err}"
    );
    assert!(
        out.contains("1 files checked"),
        "conffile via status: {out}"
    );
    let (_, out, _) = prokit(Some(r), &["--json", "verify"]);
    assert!(out.contains("\"complete\":false"), "{out}");
    assert!(out.contains("\"ok\":true"), "{out}");

    // An edited conffile is seen against the status file's hash, as opkg sees it.
    fs::write(root.join("etc/a.conf"), "x=2\n").unwrap();
    let (_, out, _) = prokit(Some(r), &["verify"]);
    assert!(out.contains("conffile modified: /etc/a.conf (a)"), "{out}");

    // --from-feed: the installed version's package, through the verified index.
    let (ok, out, err) = prokit(Some(r), &["update"]);
    assert!(ok, "{out}{err}");
    let (ok, out, err) = prokit(Some(r), &["verify", "--from-feed"]);
    assert!(!ok, "{out}{err}");
    assert!(err.contains("recorded a 2.0 from feed main"), "{err}");
    assert!(out.contains("changed: /usr/bin/a (a)"), "{out}");
    assert!(!err.contains("not verifiable"), "{err}");
    // The records are kept: the next plain verify sees the change too, and once repaired,
    // everything verifies (exit 0).
    fs::write(root.join("usr/bin/a"), "a 2").unwrap();
    let (ok, out, err) = prokit(Some(r), &["verify"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("0 changed, 0 missing"), "{out}");
}
