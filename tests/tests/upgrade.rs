//! `prokit upgrade`, `list-upgradable` and holds (issue 15), over HTTP: an upgrade that pulls a
//! new dependency and keeps who asked for what, a held package left alone (and refused to
//! `install` without `--force-hold`), and the status fields opkg-lede reads.
//!
//! opkg-lede's side of the format: `opkg flag hold PKG` sets the package's flags to exactly
//! `hold` (`pkg->state_flag = pkg_state_flag_from_str(flags)`, `libopkg/opkg_cmd.c` line 949)
//! and writes `Status: install hold installed` (`libopkg/pkg.c` `pkg_state_flag_to_str` and line
//! 878); `opkg upgrade` skips a package whose flags include `hold` ("Not upgrading package …
//! which is marked hold", `libopkg/opkg_upgrade.c` line 32); all at 38eccbb. Requested packages
//! carry `user` ("install user installed"), and dependencies `Auto-Installed: yes`, the field
//! opkg-lede reads and writes (`libopkg/pkg.c` lines 681–683) and its autoremove follows
//! (`libopkg/opkg_remove.c` line 199).

mod common;

use std::fs;

use common::{Fixture, bootstrap, prokit, snapshot, status_of};
use e2e::HttpServer;

#[test]
fn upgrade_pulls_new_dependencies_respects_holds_and_keeps_auto_flags() {
    let f = Fixture::new();
    f.add("base", "1.0", "", &[("etc/base", "1.0\n")], None);
    f.add(
        "app",
        "1.0",
        "Depends: base\n",
        &[("usr/bin/app", "app 1.0")],
        None,
    );
    f.add("tool", "1.0", "", &[("usr/bin/tool", "tool 1.0")], None);
    f.index();
    let Some(server) = HttpServer::serve(&f.feed) else {
        return;
    };
    let root = f.tmp.path().join("root");
    let r = root.to_str().unwrap();
    bootstrap(&f, &server, &root, &["app", "tool"]);
    assert!(status_of(&root, "base").contains("Status: install ok installed"));

    // New versions: app 2.0 needs a new package; base and tool move on too.
    f.add("base", "1.1", "", &[("etc/base", "1.1\n")], None);
    f.add(
        "app",
        "2.0",
        "Depends: base (>= 1.1), newdep\n",
        &[("usr/bin/app", "app 2.0")],
        None,
    );
    f.add("newdep", "1.0", "", &[("usr/lib/newdep", "n")], None);
    f.add("tool", "2.0", "", &[("usr/bin/tool", "tool 2.0")], None);
    f.index();
    let (ok, out, err) = prokit(Some(r), &["update"]);
    assert!(ok, "{out}{err}");
    let (ok, out, _) = prokit(Some(r), &["list-upgradable"]);
    assert!(ok);
    assert_eq!(
        out, "app - 1.0 - 2.0\nbase - 1.0 - 1.1\ntool - 1.0 - 2.0\n",
        "{out}"
    );

    // Hold tool, as opkg stores it.
    let (ok, out, err) = prokit(Some(r), &["flag", "hold", "tool"]);
    assert!(ok, "{err}");
    assert_eq!(out, "Setting flags for package tool to hold.\n");
    assert!(
        status_of(&root, "tool").contains("Status: install hold installed"),
        "{}",
        status_of(&root, "tool")
    );
    let (_, out, _) = prokit(Some(r), &["--json", "list-upgradable"]);
    let json: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(json[2]["name"], "tool");
    assert_eq!(json[2]["held"], true);
    let (ok, _, err) = prokit(Some(r), &["flag", "hold", "nothere"]);
    assert!(
        !ok && err.contains("package nothere is not installed"),
        "{err}"
    );
    let (ok, _, err) = prokit(Some(r), &["flag", "frobnicate", "tool"]);
    assert!(
        !ok && err.contains("expected hold, user, ok or noprune"),
        "{err}"
    );

    // The upgrade: app and base move, newdep comes in as a dependency, tool stays.
    let (ok, out, err) = prokit(Some(r), &["upgrade"]);
    assert!(ok, "{out}{err}");
    assert!(err.contains("Not upgrading tool 1.0 to 2.0: held"), "{err}");
    assert_eq!(
        fs::read_to_string(root.join("usr/bin/app")).unwrap(),
        "app 2.0"
    );
    assert_eq!(fs::read_to_string(root.join("etc/base")).unwrap(), "1.1\n");
    assert_eq!(
        fs::read_to_string(root.join("usr/bin/tool")).unwrap(),
        "tool 1.0"
    );
    let status = |n: &str| status_of(&root, n);
    assert!(
        status("app").contains("Status: install user installed"),
        "{}",
        status("app")
    );
    assert!(
        status("base").contains("Status: install ok installed"),
        "{}",
        status("base")
    );
    assert!(
        status("newdep").contains("Status: install ok installed"),
        "{}",
        status("newdep")
    );
    assert!(status("tool").contains("Version: 1.0"));
    let (_, out, _) = prokit(Some(r), &["list-upgradable"]);
    assert_eq!(out, "tool - 1.0 - 2.0 [held]\n");

    // install of a held package is refused, nothing changed; --force-hold changes it and it
    // stays held.
    let (ok, _, err) = prokit(Some(r), &["install", "tool"]);
    assert!(!ok, "{err}");
    assert!(
        err.contains("package tool is held (prokit flag hold): not changed"),
        "{err}"
    );
    assert_eq!(
        fs::read_to_string(root.join("usr/bin/tool")).unwrap(),
        "tool 1.0"
    );
    let (ok, _, err) = prokit(Some(r), &["upgrade", "tool"]);
    assert!(!ok && err.contains("package tool is held"), "{err}");
    let (ok, out, err) = prokit(Some(r), &["install", "--force-hold", "tool"]);
    assert!(ok, "{out}{err}");
    assert_eq!(
        fs::read_to_string(root.join("usr/bin/tool")).unwrap(),
        "tool 2.0"
    );
    assert!(
        status("tool").contains("Status: install hold installed"),
        "{}",
        status("tool")
    );
    let (ok, out, _) = prokit(Some(r), &["upgrade"]);
    assert!(ok && out.contains("Nothing to upgrade"), "{out}");
    // flag ok releases it.
    let (ok, _, _) = prokit(Some(r), &["flag", "ok", "tool"]);
    assert!(ok);
    assert!(status("tool").contains("Status: install ok installed"));
    drop(server);
}

#[test]
fn noaction_changes_nothing_download_only_fills_the_cache_and_download_fetches_verified() {
    let f = Fixture::new();
    f.add("base", "1.0", "", &[("etc/base", "1.0\n")], None);
    f.add(
        "app",
        "1.0",
        "Depends: base\n",
        &[("usr/bin/app", "app 1.0")],
        None,
    );
    f.index();
    let Some(server) = HttpServer::serve(&f.feed) else {
        return;
    };
    let root = f.tmp.path().join("root");
    let r = root.to_str().unwrap();
    bootstrap(&f, &server, &root, &["app"]);
    f.add(
        "app",
        "2.0",
        "Depends: base, extra\n",
        &[("usr/bin/app", "app 2.0")],
        None,
    );
    f.add("extra", "1.0", "", &[("usr/share/extra", "e")], None);
    f.index();
    let (ok, _, err) = prokit(Some(r), &["update"]);
    assert!(ok, "{err}");
    let before = snapshot(&root);

    // --noaction / --dry-run: the plan, and not a byte of the root changed.
    let (ok, out, err) = prokit(Some(r), &["upgrade", "--noaction"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("Would upgrade app 1.0 -> 2.0 (feed main, "),
        "{out}"
    );
    assert!(
        out.contains("Would install extra 1.0 (feed main, ") && out.contains("dependency)"),
        "{out}"
    );
    assert!(out.contains("2 package(s) to download"), "{out}");
    let (ok, out, _) = prokit(Some(r), &["--json", "install", "--dry-run", "app"]);
    assert!(ok, "{out}");
    let plan: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(plan["steps"].as_array().unwrap().len(), 2, "{out}");
    let (ok, out, _) = prokit(Some(r), &["remove", "--noaction", "app"]);
    assert!(ok && out.contains("Would remove app 1.0 ("), "{out}");
    let (ok, _, err) = prokit(Some(r), &["remove", "--noaction", "base"]);
    assert!(
        !ok && err.contains("app"),
        "dependents are still checked: {err}"
    );
    assert_eq!(snapshot(&root), before, "--noaction changed the root");

    // --download-only: the cache filled and kept, nothing else changed.
    let cache = f.tmp.path().join("cache");
    let (ok, out, err) = prokit(
        Some(r),
        &[
            "--cache-dir",
            cache.to_str().unwrap(),
            "upgrade",
            "--download-only",
        ],
    );
    assert!(ok, "{out}{err}");
    assert_eq!(snapshot(&root), before, "--download-only changed the root");
    let cached: Vec<String> = fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(cached.len(), 2, "{cached:?}");
    assert!(
        cached.iter().any(|n| n.ends_with("app_2.0_all.ipk")),
        "{cached:?}"
    );

    // download: the file itself, verified, into the current directory.
    let here = f.tmp.path().join("here");
    fs::create_dir(&here).unwrap();
    let o = std::process::Command::new(e2e::bin("prokit"))
        .arg("--root")
        .arg(&root)
        .args(["download", "app", "base=1.0"])
        .current_dir(&here)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        fs::read(here.join("app_2.0_all.ipk")).unwrap(),
        fs::read(f.feed.join("app_2.0_all.ipk")).unwrap()
    );
    assert!(here.join("base_1.0_all.ipk").is_file());
    assert_eq!(snapshot(&root), before);
    // The real upgrade afterwards uses what is there.
    let (ok, out, err) = prokit(Some(r), &["upgrade"]);
    assert!(ok, "{out}{err}");
    assert_eq!(
        fs::read_to_string(root.join("usr/bin/app")).unwrap(),
        "app 2.0"
    );
    drop(server);
}

#[test]
fn autoremove_removes_exactly_the_orphaned_auto_installed_packages() {
    let f = Fixture::new();
    f.add("libshared", "1.0", "", &[("usr/lib/libshared", "s")], None);
    f.add(
        "libone",
        "1.0",
        "Depends: libshared\n",
        &[("usr/lib/libone", "1")],
        None,
    );
    f.add("libkept", "1.0", "", &[("usr/lib/libkept", "k")], None);
    f.add(
        "app",
        "1.0",
        "Depends: libone\n",
        &[("usr/bin/app", "a")],
        None,
    );
    f.add(
        "other",
        "1.0",
        "Depends: libkept\n",
        &[("usr/bin/other", "o")],
        None,
    );
    f.add("held-dep", "1.0", "", &[("usr/lib/held", "h")], None);
    f.add(
        "user",
        "1.0",
        "Depends: held-dep\n",
        &[("usr/bin/user", "u")],
        None,
    );
    f.index();
    let Some(server) = HttpServer::serve(&f.feed) else {
        return;
    };
    let root = f.tmp.path().join("root");
    let r = root.to_str().unwrap();
    bootstrap(&f, &server, &root, &["app", "other", "user"]);
    assert!(status_of(&root, "libone").contains("Auto-Installed: yes"));
    let (ok, out, _) = prokit(Some(r), &["autoremove", "--noaction"]);
    assert!(
        ok && out == "Nothing was changed (--noaction).\n",
        "nothing orphaned yet: {out}"
    );
    // app and user go: libone and libshared are orphans; held-dep is held, so it stays.
    let (ok, _, err) = prokit(Some(r), &["flag", "hold", "held-dep"]);
    assert!(ok, "{err}");
    let (ok, out, err) = prokit(Some(r), &["remove", "app", "user"]);
    assert!(ok, "{out}{err}");
    let before = snapshot(&root);
    let (ok, out, _) = prokit(Some(r), &["--json", "autoremove", "--noaction"]);
    assert!(ok);
    assert_eq!(out.trim(), r#"["libone","libshared"]"#);
    assert_eq!(snapshot(&root), before);
    let (ok, out, err) = prokit(Some(r), &["autoremove"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("Removed libone (no longer needed)"), "{out}");
    assert!(!root.join("usr/lib/libone").exists() && !root.join("usr/lib/libshared").exists());
    for kept in ["usr/lib/libkept", "usr/bin/other", "usr/lib/held"] {
        assert!(root.join(kept).is_file(), "{kept} was removed");
    }
    // remove --autoremove: other goes, and libkept with it.
    let (ok, out, err) = prokit(Some(r), &["remove", "--autoremove", "other"]);
    assert!(ok, "{out}{err}");
    assert!(!root.join("usr/lib/libkept").exists(), "{out}");
    assert!(root.join("usr/lib/held").is_file());
    drop(server);
}

#[test]
fn a_file_moving_from_the_old_version_of_a_to_a_new_b_is_taken_over_without_replaces() {
    let f = Fixture::new();
    f.add(
        "a",
        "1.0",
        "",
        &[("usr/bin/a", "a 1"), ("usr/share/moved", "from a\n")],
        None,
    );
    f.add("c", "1.0", "", &[("usr/share/moved", "from c\n")], None);
    f.index();
    let Some(server) = HttpServer::serve(&f.feed) else {
        return;
    };
    let root = f.tmp.path().join("root");
    let r = root.to_str().unwrap();
    bootstrap(&f, &server, &root, &["a"]);
    // Any other overlap stays refused: c is no part of an upgrade of a.
    let (ok, _, err) = prokit(Some(r), &["install", "c"]);
    assert!(!ok, "{err}");
    assert!(
        err.contains(
            "/usr/share/moved is already owned by package a (c does not declare Replaces: a)"
        ),
        "{err}"
    );
    // a 2.0 moves the file to a new package b, which does not declare Replaces.
    f.add("a", "2.0", "Depends: b\n", &[("usr/bin/a", "a 2")], None);
    f.add("b", "1.0", "", &[("usr/share/moved", "from b\n")], None);
    f.index();
    let (ok, _, err) = prokit(Some(r), &["update"]);
    assert!(ok, "{err}");
    let (ok, out, err) = prokit(Some(r), &["upgrade"]);
    assert!(ok, "{out}{err}");
    assert_eq!(
        fs::read_to_string(root.join("usr/share/moved")).unwrap(),
        "from b\n"
    );
    assert_eq!(fs::read_to_string(root.join("usr/bin/a")).unwrap(), "a 2");
    let (ok, out, _) = prokit(Some(r), &["search", "/usr/share/moved"]);
    assert!(ok && out == "b - /usr/share/moved\n", "{out}");
    let (ok, out, _) = prokit(Some(r), &["verify"]);
    assert!(ok, "{out}");
    // --force-overwrite takes a file over anyway, and records the new owner.
    let (ok, _, err) = prokit(Some(r), &["install", "c"]);
    assert!(!ok && err.contains("already owned by package b"), "{err}");
    let (ok, out, err) = prokit(Some(r), &["install", "--force-overwrite", "c"]);
    assert!(ok, "{out}{err}");
    assert_eq!(
        fs::read_to_string(root.join("usr/share/moved")).unwrap(),
        "from c\n"
    );
    let (_, out, _) = prokit(Some(r), &["search", "/usr/share/moved"]);
    assert_eq!(out, "c - /usr/share/moved\n");
    drop(server);
}

#[test]
fn recommends_are_installed_unless_refused_removed_or_impossible() {
    let f = Fixture::new();
    f.add(
        "app",
        "1.0",
        "Recommends: extra, nice | other, ghost\n",
        &[("usr/bin/app", "a")],
        None,
    );
    f.add("extra", "1.0", "", &[("usr/share/extra", "e")], None);
    f.add("nice", "1.0", "", &[("usr/share/nice", "n")], None);
    f.add("other", "1.0", "", &[("usr/share/other", "o")], None);
    f.add("base", "1.0", "", &[("etc/base", "b")], None);
    f.index();
    let Some(server) = HttpServer::serve(&f.feed) else {
        return;
    };
    // By default, as opkg: the first alternative of each group, as a dependency; one that
    // cannot be installed (ghost is in no feed) is left out with a note.
    let root = f.tmp.path().join("root");
    bootstrap(&f, &server, &root, &["base"]);
    let r = root.to_str().unwrap();
    let (ok, out, err) = prokit(Some(r), &["install", "app"]);
    assert!(ok, "{out}{err}");
    assert!(err.contains("recommended package ghost left out"), "{err}");
    assert!(root.join("usr/share/extra").is_file() && root.join("usr/share/nice").is_file());
    assert!(!root.join("usr/share/other").exists());
    assert!(status_of(&root, "extra").contains("Auto-Installed: yes"));
    assert!(status_of(&root, "app").contains("Status: install user installed"));

    // --no-install-recommends: app alone.
    let bare = f.tmp.path().join("bare");
    bootstrap(&f, &server, &bare, &["base"]);
    let (ok, out, err) = prokit(
        Some(bare.to_str().unwrap()),
        &["install", "--no-install-recommends", "app"],
    );
    assert!(ok, "{out}{err}");
    assert!(!bare.join("usr/share/extra").exists() && !bare.join("usr/share/nice").exists());

    // A recommended package the user removed (opkg leaves `Status: deinstall …`) stays out.
    let third = f.tmp.path().join("third");
    bootstrap(&f, &server, &third, &["base"]);
    let status = third.join("usr/lib/opkg/status");
    let mut text = fs::read_to_string(&status).unwrap_or_default();
    text.push_str(
        "Package: extra\nVersion: 1.0\nStatus: deinstall ok not-installed\nArchitecture: all\n\n",
    );
    fs::create_dir_all(status.parent().unwrap()).unwrap();
    fs::write(&status, text).unwrap();
    let (ok, out, err) = prokit(Some(third.to_str().unwrap()), &["install", "app"]);
    assert!(ok, "{out}{err}");
    assert!(
        !third.join("usr/share/extra").exists(),
        "a removed recommendation came back"
    );
    assert!(third.join("usr/share/nice").is_file());
    drop(server);
}

#[test]
fn force_reinstall_rewrites_an_installed_package_from_the_verified_feed() {
    let f = Fixture::new();
    f.add(
        "app",
        "1.0",
        "",
        &[("usr/bin/app", "app 1.0"), ("etc/app.conf", "x=1\n")],
        Some("/etc/app.conf\n"),
    );
    f.add("flag", "1.0", "", &[("usr/bin/flag", "flag")], None);
    f.index();
    let Some(server) = HttpServer::serve(&f.feed) else {
        return;
    };
    let root = f.tmp.path().join("root");
    let r = root.to_str().unwrap();
    bootstrap(&f, &server, &root, &["app"]);
    // Damage: a binary deleted, another overwritten, the conffile edited by its user.
    fs::write(root.join("usr/bin/app"), "tampered").unwrap();
    fs::write(root.join("etc/app.conf"), "x=mine\n").unwrap();
    let (ok, _, _) = prokit(Some(r), &["verify"]);
    assert!(!ok, "verify sees the tampered file");
    // A plain install of what is installed changes nothing.
    let (ok, out, err) = prokit(Some(r), &["install", "app"]);
    assert!(ok, "{out}{err}");
    assert_eq!(
        fs::read_to_string(root.join("usr/bin/app")).unwrap(),
        "tampered"
    );
    // --force-reinstall writes it again from the verified package; the user's conffile stays.
    let (ok, out, err) = prokit(Some(r), &["install", "--force-reinstall", "app"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("Reinstalled app 1.0"), "{out}");
    assert_eq!(
        fs::read_to_string(root.join("usr/bin/app")).unwrap(),
        "app 1.0"
    );
    assert_eq!(
        fs::read_to_string(root.join("etc/app.conf")).unwrap(),
        "x=mine\n"
    );
    assert_eq!(
        fs::read_to_string(root.join("etc/app.conf-opkg")).unwrap(),
        "x=1\n"
    );
    let (ok, out, err) = prokit(Some(r), &["verify"]);
    assert!(ok, "{out}{err}");
    let st = status_of(&root, "app");
    assert!(
        st.contains("Version: 1.0") && st.contains("Status: install user installed"),
        "{st}"
    );
    // Only what is named is reinstalled; a version no feed offers any more is refused,
    // naming it, with nothing changed.
    f.add("app", "2.0", "", &[("usr/bin/app", "app 2.0")], None);
    fs::remove_file(f.feed.join("app_1.0_all.ipk")).unwrap();
    f.index();
    let (ok, out, err) = prokit(Some(r), &["update"]);
    assert!(ok, "{out}{err}");
    let before = snapshot(&root);
    let (ok, _, err) = prokit(Some(r), &["install", "--force-reinstall", "app=1.0"]);
    assert!(
        !ok && err
            .contains("cannot reinstall app: no verified feed offers its installed version 1.0"),
        "{err}"
    );
    assert_eq!(snapshot(&root), before);
}
