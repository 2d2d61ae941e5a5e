//! Attacks on what surrounds unpacking (docs/threats.md §17–§26), each mounted against the
//! real `prokit` binary over real HTTP on 127.0.0.1 with feeds made and signed by `archman`,
//! and each shown to fail with a clear message and nothing changed. Where a write, read or
//! delete outside the root is at stake, sentinel files outside the root prove nothing
//! happened to them.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Fixture, prokit};
use e2e::{HttpServer, bin, run};

/// A root configured by hand (no bootstrap), trusting the given public keys.
fn root_with(dir: &Path, conf: &str, keys: &[&Path]) -> PathBuf {
    let root = dir.join("root");
    fs::create_dir_all(root.join("etc/opkg/keys")).unwrap();
    for k in keys {
        let fp = feeds::usign::PublicKey::read_path(k)
            .unwrap()
            .fingerprint()
            .to_string();
        fs::copy(k, root.join("etc/opkg/keys").join(fp)).unwrap();
    }
    fs::write(root.join("etc/opkg.conf"), conf).unwrap();
    root
}

/// Replaces `from` by `to` in the feed's Packages, and signs and compresses it again with the
/// feed's own key (what a compromised or buggy indexer publishes); Release is removed.
fn rewrite_index(f: &Fixture, from: &str, to: &str) {
    let p = f.feed.join("Packages");
    let text = fs::read_to_string(&p).unwrap();
    assert!(text.contains(from), "{text}");
    fs::write(&p, text.replace(from, to)).unwrap();
    fs::write(
        f.feed.join("Packages.gz"),
        feeds::index::gzip(&fs::read(&p).unwrap()),
    )
    .unwrap();
    let (ok, _, err) = run(Command::new(bin("archman"))
        .args(["sign", "-s"])
        .arg(&f.sec)
        .arg("-m")
        .arg(&p));
    assert!(ok, "{err}");
    for n in ["Release", "Release.sig"] {
        let _ = fs::remove_file(f.feed.join(n));
    }
}

#[test]
fn threat_17_package_whose_control_differs_from_its_stanza_is_refused() {
    let f = Fixture::new();
    // The file says it is busybox; the signed index says it is `a`.
    f.add("busybox", "9.9", "", &[("bin/busybox", "evil")], None);
    fs::rename(
        f.feed.join("busybox_9.9_all.ipk"),
        f.feed.join("a_1.0_all.ipk"),
    )
    .unwrap();
    f.index();
    rewrite_index(
        &f,
        "Package: busybox\nVersion: 9.9",
        "Package: a\nVersion: 1.0",
    );
    let Some(server) = HttpServer::serve(&f.feed) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let root = root_with(
        tmp.path(),
        &format!("src/gz main {}\n", server.url("")),
        &[&f.public],
    );
    let r = root.to_str().unwrap();
    let (ok, out, err) = prokit(Some(r), &["update"]);
    assert!(ok, "{out}{err}");
    let (ok, out, err) = prokit(Some(r), &["install", "a"]);
    assert!(!ok, "{out}{err}");
    assert!(
        err.contains("refused: its control file says Package \"busybox\", but the verified index of feed \"main\" lists it as Package \"a\""),
        "{err}"
    );
    assert!(!root.join("bin/busybox").exists());
    let status = fs::read_to_string(root.join("usr/lib/opkg/status")).unwrap_or_default();
    assert!(!status.contains("busybox"), "{status}");
}

#[test]
fn threat_22_a_bad_stanza_in_one_feed_does_not_block_another() {
    let bad = Fixture::new();
    bad.add("x", "1.0", "", &[("usr/bin/x", "x")], None);
    bad.add("y", "1.0", "", &[("usr/bin/y", "y")], None);
    bad.index();
    // A validly signed index with a stanza no resolver can read.
    rewrite_index(
        &bad,
        "Package: y\nVersion: 1.0",
        "Package: y\nVersion: !!1.0",
    );
    let good = Fixture::new();
    good.add("g", "1.0", "", &[("usr/bin/g", "g")], None);
    good.index();
    let (Some(s1), Some(s2)) = (HttpServer::serve(&bad.feed), HttpServer::serve(&good.feed)) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let root = root_with(
        tmp.path(),
        &format!(
            "src/gz bad {}\nsrc/gz good {}\nsrc/gz never {}/nothing-here\n",
            s1.url(""),
            s2.url(""),
            s2.url("")
        ),
        &[&bad.public, &good.public],
    );
    let r = root.to_str().unwrap();
    // `never` fails to update (and keeps no index); the others update.
    let (ok, out, err) = prokit(Some(r), &["update"]);
    assert!(!ok, "{out}{err}");
    let (ok, out, err) = prokit(Some(r), &["install", "g", "x"]);
    assert!(ok, "{out}{err}");
    assert!(
        err.contains("warning: feed \"bad\": stanza at line ") && err.contains("(y) left out"),
        "{err}"
    );
    assert!(err.contains("warning: feed \"never\" left out"), "{err}");
    assert_eq!(fs::read_to_string(root.join("usr/bin/g")).unwrap(), "g");
    assert_eq!(fs::read_to_string(root.join("usr/bin/x")).unwrap(), "x");
    // The bad stanza's package is simply not available.
    let (ok, _, err) = prokit(Some(r), &["install", "y"]);
    assert!(!ok);
    assert!(err.contains("y"), "{err}");
}

/// Two feeds signed by one key, `a` and `b`, each published with its own Release identity.
struct TwoFeeds {
    a: Fixture,
    b_dir: tempfile::TempDir,
}

impl TwoFeeds {
    fn new() -> TwoFeeds {
        let a = Fixture::new();
        a.add("from-a", "1.0", "", &[("usr/bin/from-a", "a")], None);
        a.index_with(&["--origin", "feed-a"]);
        let b_dir = tempfile::tempdir().unwrap();
        let b = b_dir.path().join("feed");
        fs::create_dir(&b).unwrap();
        fs::copy(
            f_path(&a, "from-a_1.0_all.ipk"),
            b.join("from-a_1.0_all.ipk"),
        )
        .unwrap();
        let (ok, _, err) = run(Command::new(bin("archman"))
            .args(["index", "-q", "--origin", "feed-b", "--key"])
            .arg(&a.sec)
            .arg(&b)
            .env("SOURCE_DATE_EPOCH", (common::now() - 7200).to_string()));
        assert!(ok, "{err}");
        TwoFeeds { a, b_dir }
    }

    fn b(&self) -> PathBuf {
        self.b_dir.path().join("feed")
    }

    /// Serves feed a's index files in place of feed b's (a MITM on b's URL).
    fn serve_a_as_b(&self) {
        for n in [
            "Packages",
            "Packages.gz",
            "Packages.sig",
            "Release",
            "Release.sig",
        ] {
            fs::copy(self.a.feed.join(n), self.b().join(n)).unwrap();
        }
    }
}

fn f_path(f: &Fixture, name: &str) -> PathBuf {
    f.feed.join(name)
}

#[test]
fn threat_23_one_feeds_signed_index_served_as_anothers_is_refused() {
    let t = TwoFeeds::new();
    let Some(server) = HttpServer::serve(&t.b()) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let root = root_with(
        tmp.path(),
        &format!("src/gz b {}\n", server.url("")),
        &[&t.a.public],
    );
    let r = root.to_str().unwrap();
    let (ok, out, err) = prokit(Some(r), &["update"]);
    assert!(ok, "{out}{err}");
    let list = root.join("var/opkg-lists/b");
    let before = fs::read(&list).unwrap();
    // Feed a's index is newer and validly signed by the same key, but names feed a.
    t.serve_a_as_b();
    let (ok, out, err) = prokit(Some(r), &["update"]);
    assert!(!ok, "{out}{err}");
    assert!(
        err.contains("the Release says Origin \"feed-a\"")
            && err.contains("accepted Releases said Origin \"feed-b\""),
        "{err}"
    );
    assert_eq!(fs::read(&list).unwrap(), before);
}

#[test]
fn threat_23_a_key_pinned_to_one_feed_is_not_trusted_for_another() {
    // Feed b is pinned (apt's signed-by) to its own key; feed a's key is trusted only for a.
    let a = Fixture::new();
    a.add("from-a", "1.0", "", &[("usr/bin/from-a", "a")], None);
    a.index();
    let b = Fixture::new();
    b.add("from-b", "1.0", "", &[("usr/bin/from-b", "b")], None);
    b.index();
    let Some(server) = HttpServer::serve(&b.feed) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let root = root_with(
        tmp.path(),
        &format!(
            "src/gz b {}\noption signed_by b {}\n",
            server.url(""),
            b.fingerprint()
        ),
        &[&a.public, &b.public],
    );
    let r = root.to_str().unwrap();
    let (ok, out, err) = prokit(Some(r), &["update"]);
    assert!(ok, "{out}{err}");
    let before = fs::read(root.join("var/opkg-lists/b")).unwrap();
    // On first contact with a fresh state, a's index at b's URL (no Release identity yet).
    fs::remove_dir_all(root.join("var/lib/prokit")).unwrap();
    for n in ["Packages", "Packages.gz", "Packages.sig"] {
        fs::copy(a.feed.join(n), b.feed.join(n)).unwrap();
    }
    for n in ["Release", "Release.sig"] {
        let _ = fs::remove_file(b.feed.join(n));
    }
    let (ok, out, err) = prokit(Some(r), &["update"]);
    assert!(!ok, "{out}{err}");
    assert!(
        err.contains(&format!(
            "signed by key {}, which is not trusted for this feed (option signed_by b {})",
            a.fingerprint(),
            b.fingerprint()
        )),
        "{err}"
    );
    assert_eq!(fs::read(root.join("var/opkg-lists/b")).unwrap(), before);
}

/// A directory outside the root with a sentinel file, and a check that nothing in it changed.
struct Outside {
    dir: tempfile::TempDir,
}

impl Outside {
    fn new() -> Outside {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("sentinel"), "untouched").unwrap();
        Outside { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Asserts the directory holds exactly the sentinel, unchanged.
    fn assert_untouched(&self) {
        let names: Vec<String> = fs::read_dir(self.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["sentinel"],
            "something was written outside the root"
        );
        assert_eq!(
            fs::read_to_string(self.path().join("sentinel")).unwrap(),
            "untouched"
        );
    }
}

#[test]
fn threat_18_configuration_in_the_root_cannot_steer_paths_out_of_it() {
    let f = Fixture::new();
    f.add("a", "1.0", "", &[("usr/bin/a", "a")], None);
    f.index();
    let Some(server) = HttpServer::serve(&f.feed) else {
        return;
    };
    let outside = Outside::new();
    let tmp = tempfile::tempdir().unwrap();
    let root = root_with(
        tmp.path(),
        &format!("src/gz main {}\n", server.url("")),
        &[&f.public],
    );
    let r = root.to_str().unwrap();
    let out_rel = outside.path().strip_prefix("/").unwrap().to_str().unwrap();

    // 1. `..` climbing out: refused, naming the file and the line.
    let evil = root.join("etc/opkg/evil.conf");
    for line in [
        format!("lists_dir ext /{}{out_rel}", "../".repeat(12)),
        format!("option db_dir ../../../../../../../../{out_rel}"),
    ] {
        fs::write(&evil, format!("# packaged\n{line}\n")).unwrap();
        let (ok, out, err) = prokit(Some(r), &["update"]);
        assert!(!ok, "{out}{err}");
        assert!(
            err.contains("etc/opkg/evil.conf:2: ") && err.contains("climbs above the root"),
            "{err}"
        );
        let (ok, _, err) = prokit(Some(r), &["install", "a"]);
        assert!(!ok && err.contains("evil.conf:2"), "{err}");
        outside.assert_untouched();
    }

    // 2. An absolute host path is a path inside the root.
    fs::write(
        &evil,
        format!(
            "lists_dir ext {}\noption db_dir {}/db\n",
            outside.path().display(),
            outside.path().display()
        ),
    )
    .unwrap();
    let (ok, out, err) = prokit(Some(r), &["update"]);
    assert!(ok, "{out}{err}");
    let (ok, out, err) = prokit(Some(r), &["install", "a"]);
    assert!(ok, "{out}{err}");
    assert!(root.join(out_rel).join("main").is_file());
    assert!(root.join(out_rel).join("db/status").is_file());
    outside.assert_untouched();

    // 3. Symlinks in the root that point at the host resolve inside the root.
    fs::remove_file(&evil).unwrap();
    fs::remove_dir_all(root.join("var")).unwrap();
    fs::create_dir_all(root.join("usr/lib")).unwrap();
    let _ = fs::remove_dir_all(root.join("usr/lib/opkg"));
    std::os::unix::fs::symlink(outside.path(), root.join("var")).unwrap();
    std::os::unix::fs::symlink(outside.path(), root.join("usr/lib/opkg")).unwrap();
    let (ok, out, err) = prokit(Some(r), &["update"]);
    assert!(ok, "{out}{err}");
    let (ok, out, err) = prokit(Some(r), &["install", "a"]);
    assert!(ok, "{out}{err}");
    assert!(root.join(out_rel).join("opkg-lists/main").is_file());
    assert!(root.join(out_rel).join("status").is_file());
    outside.assert_untouched();
}

#[test]
fn threat_20_files_in_the_root_linked_to_host_files_are_never_read() {
    let f = Fixture::new();
    f.add("a", "1.0", "", &[("usr/bin/a", "a")], None);
    f.index();
    let Some(server) = HttpServer::serve(&f.feed) else {
        return;
    };
    let outside = Outside::new();
    let secret = outside.path().join("shadow");
    fs::write(&secret, "root:SECRET-MUST-NOT-LEAK:19000::::::\n").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let root = root_with(
        tmp.path(),
        &format!("src/gz main {}\n", server.url("")),
        &[&f.public],
    );
    let r = root.to_str().unwrap();
    // A config file, a key and the status file linked to the host file.
    std::os::unix::fs::symlink(&secret, root.join("etc/opkg/shadow.conf")).unwrap();
    std::os::unix::fs::symlink(&secret, root.join("etc/opkg/keys/shadow")).unwrap();
    fs::create_dir_all(root.join("usr/lib/opkg")).unwrap();
    std::os::unix::fs::symlink(&secret, root.join("usr/lib/opkg/status")).unwrap();
    for args in [&["update"][..], &["list", "--installed"], &["install", "a"]] {
        let (_, out, err) = prokit(Some(r), args);
        assert!(
            !out.contains("SECRET") && !err.contains("SECRET"),
            "{args:?}: {out}{err}"
        );
    }
    fs::remove_file(root.join("usr/lib/opkg/status")).unwrap();
    let (ok, out, err) = prokit(Some(r), &["install", "a"]);
    assert!(ok, "{out}{err}");
    let status = fs::read_to_string(root.join("usr/lib/opkg/status")).unwrap();
    assert!(!status.contains("SECRET"), "{status}");
    assert_eq!(
        fs::read_to_string(&secret).unwrap(),
        "root:SECRET-MUST-NOT-LEAK:19000::::::\n"
    );
}
