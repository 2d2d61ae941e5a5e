//! The query commands opkg users type (issue 15), on a root bootstrapped over HTTP: `files`,
//! `search`, `whatdepends [-r]`, `whatprovides`, `depends`, `compare-versions`,
//! `print-architecture`, and `list --installed` leaving out entries that are not installed.
//! Each answer is checked against the database prokit wrote (`usr/lib/opkg/info/*.list`,
//! `status`), and none changes a byte of the root.

mod common;

use std::fs;

use common::{Fixture, bootstrap, prokit, snapshot};
use e2e::HttpServer;

#[test]
fn queries_answer_from_the_database_and_change_nothing() {
    let f = Fixture::new();
    f.add("base", "1.0", "", &[("etc/base.conf", "b\n")], None);
    f.add(
        "libfoo",
        "1.0",
        "Depends: base\nProvides: libfoo-abi1\n",
        &[("usr/lib/libfoo.so.1", "lib")],
        None,
    );
    f.add(
        "app",
        "2.0",
        "Depends: libfoo-abi1, base | busybox\n",
        &[("usr/bin/app", "app"), ("usr/share/app/readme", "r")],
        None,
    );
    f.add(
        "nano",
        "7.2",
        "Provides: editor\n",
        &[("usr/bin/nano", "nano")],
        None,
    );
    f.add(
        "vim",
        "9.0",
        "Provides: editor\n",
        &[("usr/bin/vim", "v")],
        None,
    );
    // A newer vim for an architecture this machine does not take: `depends` must not show it.
    f.write(
        "vim_9.9_mips.ipk",
        &feeds::build::PackageBuilder::new(
            "Package: vim\nVersion: 9.9\nDepends: mips-only\nArchitecture: mips\nMaintainer: T <t@example.org>\nDescription: vim for mips\n",
        )
        .file("usr/bin/vim", 0o755, b"m".to_vec())
        .build()
        .unwrap(),
    );
    f.index();
    let Some(server) = HttpServer::serve(&f.feed) else {
        return;
    };
    let root = f.tmp.path().join("root");
    let r = root.to_str().unwrap();
    bootstrap(&f, &server, &root, &["--arch", "all:1", "app", "nano"]);
    // An entry opkg leaves after a removal: not installed, so not listed as installed.
    let status = root.join("usr/lib/opkg/status");
    let mut text = fs::read_to_string(&status).unwrap();
    text.push_str(
        "\nPackage: gone\nVersion: 1.0\nStatus: deinstall ok not-installed\nArchitecture: all\n",
    );
    fs::write(&status, text).unwrap();
    let before = snapshot(&root);
    let q = |args: &[&str]| prokit(Some(r), args);

    // files: exactly the non-directory lines of the package's .list.
    let (ok, out, err) = q(&["files", "app"]);
    assert!(ok, "{err}");
    let list = fs::read_to_string(root.join("usr/lib/opkg/info/app.list")).unwrap();
    let mut want: Vec<&str> = list
        .lines()
        .filter(|l| !l.ends_with('/') && root.join(l.trim_start_matches('/')).is_file())
        .collect();
    want.sort();
    let got: Vec<&str> = out.lines().skip(1).collect();
    assert_eq!(got, want, "{out}");
    let (ok, _, err) = q(&["files", "vim"]);
    assert!(!ok && err.contains("vim"), "{err}");

    // search: who owns a path.
    let (ok, out, _) = q(&["search", "/usr/bin/*"]);
    assert!(ok);
    assert_eq!(out, "app - /usr/bin/app\nnano - /usr/bin/nano\n");
    let (ok, out, _) = q(&["search", "libfoo.so.*"]);
    assert!(ok && out == "libfoo - /usr/lib/libfoo.so.1\n", "{out}");
    let (ok, _, _) = q(&["search", "/nowhere/*"]);
    assert!(!ok, "no match is exit 1");

    // whatdepends: direct (through what a package provides), then the whole chain.
    let (ok, out, _) = q(&["--json", "whatdepends", "libfoo"]);
    assert!(ok);
    assert_eq!(out.trim(), r#"["app"]"#);
    let (_, out, _) = q(&["--json", "whatdepends", "base"]);
    assert_eq!(
        out.trim(),
        r#"["app","libfoo"]"#,
        "app names base as an alternative"
    );
    let (_, out, _) = q(&["--json", "whatdepends", "-r", "base"]);
    assert_eq!(out.trim(), r#"["app","libfoo"]"#);

    // whatprovides: installed and offered.
    let (ok, out, _) = q(&["whatprovides", "editor"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("nano 7.2 (installed)") && out.contains("vim 9.0 (feed main)"),
        "{out}"
    );

    // depends: the installed stanza, or the newest offered.
    let (ok, out, _) = q(&["depends", "app"]);
    assert!(
        ok && out == "app depends on:\n\tlibfoo-abi1\n\tbase | busybox\n",
        "{out}"
    );
    // vim: the newest offered for an accepted architecture (9.0, all), not mips's 9.9.
    let (ok, out, _) = q(&["--json", "depends", "vim"]);
    assert!(ok && out.trim() == "[]", "{out}");

    // compare-versions: opkg's operators and exit codes.
    for (args, code) in [
        (["1.0", "<<", "1.0-1"], Some(0)),
        (["1.0", "<", "1.0"], Some(0)),
        (["2.0", "<=", "1.9"], Some(1)),
        (["1:0.1", ">>", "9.9"], Some(0)),
        (["1.0", "!=", "1.0"], Some(2)),
    ] {
        let o = std::process::Command::new(e2e::bin("prokit"))
            .arg("compare-versions")
            .args(args)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), code, "{args:?}");
    }

    // print-architecture: the arch lines, as opkg prints them.
    let (ok, out, _) = q(&["print-architecture"]);
    assert!(ok && out == "arch all 1\n", "{out}");

    // list --installed: installed packages only.
    let (ok, out, _) = q(&["list", "--installed"]);
    assert!(ok);
    assert!(!out.contains("gone"), "{out}");
    assert!(
        out.contains("app - 2.0") && out.contains("base - 1.0"),
        "{out}"
    );

    // Glob patterns on list and info, as opkg takes them.
    let (ok, out, _) = q(&["list", "--installed", "lib*"]);
    assert!(
        ok && out.starts_with("libfoo - 1.0") && out.lines().count() == 1,
        "{out}"
    );
    let (ok, out, _) = q(&["list", "?im"]);
    assert!(
        ok && out.starts_with("vim - 9.0") && out.lines().count() == 1,
        "{out}"
    );
    let (ok, out, _) = q(&["info", "na*"]);
    assert!(
        ok && out.contains("# installed\nPackage: nano")
            && out.contains("# feed main\nPackage: nano"),
        "{out}"
    );

    assert_eq!(snapshot(&root), before, "a query changed the root");
    drop(server);
}
