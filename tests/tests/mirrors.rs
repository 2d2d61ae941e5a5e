//! Mirrors (issue 14, docs/trust-model.md §14): `option mirror FEED URL`. prokit updates from
//! the feed's URL and, when that fails for a reason of the server, from each mirror in turn;
//! a mirror down, one too slow, one serving an older signed Release are each skipped with a
//! warning naming why, the good one serves, and `update` says which (`--json` too). Packages
//! download from the mirrors, each checked against the verified index. With every URL down
//! the error says so and the last good index is kept.
//!
//! opkg-lede reads the same opkg.conf: a four-word `option mirror FEED URL` line is skipped
//! with "Ignoring config line with trailing garbage" (`libopkg/opkg_conf.c` lines 266–270 at
//! 38eccbb; three-word lines with an unknown name get "Unrecognized option", line 183), and
//! parsing goes on — so adding mirrors never breaks opkg on the same root.

mod common;

use std::fs;
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

use common::Fixture;
use e2e::{HttpServer, bin, run};

fn prokit(root: &Path, args: &[&str]) -> (bool, String, String) {
    run(Command::new(bin("prokit"))
        .arg("--root")
        .arg(root)
        .args(args))
}

/// A port nothing listens on (connection refused).
fn down_url() -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("http://127.0.0.1:{port}")
}

/// A server that accepts connections and never answers (a hung mirror).
fn slow_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    format!("http://127.0.0.1:{port}")
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn mirrors_down_slow_and_stale_are_skipped_and_the_good_one_serves() {
    let fx = Fixture::new();
    fx.add("hello", "1.0", "", &[("usr/share/hello/data", "1\n")], None);
    fx.index();
    // A mirror that stopped syncing: the feed as it was, validly signed but older.
    let stale_dir = fx.tmp.path().join("stale");
    copy_dir(&fx.feed, &stale_dir);
    fx.add("world", "1.0", "", &[("usr/share/world/data", "2\n")], None);
    fx.index();
    let (Some(good), Some(stale)) = (HttpServer::serve(&fx.feed), HttpServer::serve(&stale_dir))
    else {
        return;
    };
    let root = fx.tmp.path().join("root");
    fs::create_dir_all(root.join("etc/opkg/keys")).unwrap();
    fs::copy(
        &fx.public,
        root.join("etc/opkg/keys").join(fx.fingerprint()),
    )
    .unwrap();
    let conf = |primary: &str, mirrors: &[&str]| {
        let mut text = format!(
            "src/gz main {primary}\ndest root /\noption fetch_timeout 1\noption fetch_retries 0\n"
        );
        for m in mirrors {
            text.push_str(&format!("option mirror main {m}\n"));
        }
        fs::write(root.join("etc/opkg.conf"), text).unwrap();
    };

    // The client has seen the current feed.
    conf(&good.url(""), &[]);
    let (ok, out, err) = prokit(&root, &["update"]);
    assert!(ok, "{out}{err}");
    let stored = fs::read(root.join("var/opkg-lists/main")).unwrap();

    // Now its own URL is down; the mirrors: hung, stale, good.
    let (down, slow) = (down_url(), slow_url());
    let (good_url, stale_url) = (good.url(""), stale.url(""));
    conf(&down, &[&slow, &stale_url, &good_url]);
    let (ok, out, err) = prokit(&root, &["update"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains(&format!("from mirror {good_url}")), "{out}");
    assert!(
        err.contains(&format!("warning: feed main: {down} skipped: ")),
        "{err}"
    );
    assert!(
        err.contains(&format!("warning: feed main: {slow} skipped: ")),
        "{err}"
    );
    assert!(err.contains("timed out"), "{err}");
    assert!(
        err.contains(&format!("warning: feed main: {stale_url} skipped: "))
            && err.contains("older"),
        "{err}"
    );
    let (ok, out, err) = prokit(&root, &["--json", "update"]);
    assert!(ok, "{err}");
    let json: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(json[0]["served_by"], good_url.as_str(), "{out}");
    assert_eq!(json[0]["skipped"].as_array().unwrap().len(), 3, "{out}");

    // Packages come from the mirrors (the down ones fall over), each checked.
    let (ok, out, err) = prokit(&root, &["install", "hello", "world"]);
    assert!(ok, "{out}{err}");
    assert!(root.join("usr/share/world/data").is_file());

    // Every URL down: the error lists each, and the last good index stays.
    drop(good);
    drop(stale);
    let stored_now = fs::read(root.join("var/opkg-lists/main")).unwrap();
    conf(&down, &[&slow, &down_url()]);
    let (ok, out, err) = prokit(&root, &["update"]);
    assert!(!ok, "{out}");
    assert!(
        err.contains("error: feed main: every URL failed (3 tried):"),
        "{err}"
    );
    assert!(err.contains("their last good index is kept"), "{err}");
    assert_eq!(
        fs::read(root.join("var/opkg-lists/main")).unwrap(),
        stored_now
    );
    // (The stale mirror never replaced what the client had.)
    assert_eq!(stored, stored_now);
}
