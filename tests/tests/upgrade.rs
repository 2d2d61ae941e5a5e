//! `prokit upgrade`, `list-upgradable` and holds (issue 15), over HTTP: an upgrade that pulls a
//! new dependency and keeps who asked for what, a held package left alone (and refused to
//! `install` without `--force-hold`), and the status fields opkg-lede reads.
//!
//! opkg-lede's side of the format: `opkg flag hold PKG` sets the package's flags to exactly
//! `hold` (`pkg->state_flag = pkg_state_flag_from_str(flags)`, `libopkg/opkg_cmd.c` line 949)
//! and writes `Status: install hold installed` (`libopkg/pkg.c` `pkg_state_flag_to_str` and line
//! 878); `opkg upgrade` skips a package whose flags include `hold` ("Not upgrading package …
//! which is marked hold", `libopkg/opkg_upgrade.c` line 32); all at 38eccbb. Requested packages
//! carry `user` ("install user installed"), which opkg's autoremove reads.

mod common;

use std::fs;

use common::{Fixture, prokit, status_of};
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
    let (ok, out, err) = prokit(
        None,
        &[
            "bootstrap",
            r,
            "--feed",
            &format!("main={}", server.url("")),
            "--pubkey",
            f.public.to_str().unwrap(),
            "app",
            "tool",
        ],
    );
    assert!(ok, "{out}{err}");
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
