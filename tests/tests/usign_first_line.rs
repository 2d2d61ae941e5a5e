//! `prokit update` accepts every `Packages.sig` and `Release.sig` that usign accepts, over real
//! HTTP: usign skips line 1 of a signature file unread (`get_file`, usign `main.c` lines 118-128
//! at commit c4c72b1), so opkg verifies a feed whatever that line says, even when it is empty
//! or not `untrusted comment: …`; and usign's base64 decoder skips whitespace. What usign
//! refuses stays refused, with prokit's messages: an HTML page served in the signature's place
//! (its line 2 is no signature), a signature by a key not trusted.
//!
//! The feed key is RFC 8032 section 7.1 TEST 1's with fingerprint `0123456789abcdef`, a
//! leading zero nibble: prokit names it with all 16 digits, as usign does.

use std::fs;
use std::path::Path;
use std::process::Command;

use e2e::{HttpServer, bin, run};
use feeds::build::PackageBuilder;

const FEED_SEC: &str = "untrusted comment: private key 0123456789abcdef\n\
    RWRCSwAAAAAAAAAAAAAAAAAAAAAAAAAASulvySzYtIABI0VniavN751hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\n";
const FEED_PUB: &str = "untrusted comment: public key 0123456789abcdef\n\
    RWQBI0VniavN79damAGCsQq31Uv+08lkBzoO4XLz2qYjJa8CGmj3B1Ea\n";

fn prokit(args: &[&str]) -> (bool, String, String) {
    run(Command::new(bin("prokit")).args(args))
}

/// A package, a feed indexed and signed by the feed key, served on 127.0.0.1.
fn feed(dir: &Path) -> Option<HttpServer> {
    let feed = dir.join("feed");
    fs::create_dir(&feed).unwrap();
    fs::write(dir.join("feed.sec"), FEED_SEC).unwrap();
    fs::write(dir.join("feed.pub"), FEED_PUB).unwrap();
    let ipk = PackageBuilder::new(
        "Package: hello\nVersion: 1.0\nArchitecture: all\nMaintainer: T <t@example.org>\n\
         Description: hello\n",
    )
    .mtime(1_700_000_000)
    .file("usr/share/hello", 0o644, b"hello\n".to_vec())
    .build()
    .unwrap();
    fs::write(feed.join("hello_1.0_all.ipk"), ipk).unwrap();
    let an_hour_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 3600;
    let (ok, _, err) = run(Command::new(bin("archman"))
        .args(["index", "-q", "--valid-for", "7d", "--key"])
        .arg(dir.join("feed.sec"))
        .arg(&feed)
        .env("SOURCE_DATE_EPOCH", an_hour_ago.to_string()));
    assert!(ok, "archman index: {err}");
    HttpServer::serve(&feed)
}

/// How a variant rewrites the base64 line of a signature file.
type Rewrite = fn(&str) -> String;

/// `sig` (a signature file as archman wrote it) with line 1 replaced by `line1` and its base64
/// rewritten by `data`.
fn odd(sig: &str, line1: &str, data: impl Fn(&str) -> String) -> String {
    let base64 = sig.lines().nth(1).unwrap();
    format!("{line1}\n{}", data(base64))
}

#[test]
fn signatures_with_any_first_line_verify_and_bad_ones_do_not() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let Some(server) = feed(dir) else { return };
    let feed = dir.join("feed");
    let root = dir.join("root");
    let root_s = root.to_str().unwrap();
    let packages_sig = fs::read_to_string(feed.join("Packages.sig")).unwrap();
    let release_sig = fs::read_to_string(feed.join("Release.sig")).unwrap();
    // archman signs with usign's comment, the fingerprint in 16 digits
    assert!(
        packages_sig.starts_with("untrusted comment: signed by key 0123456789abcdef\n"),
        "{packages_sig}"
    );

    let (ok, out, err) = prokit(&[
        "bootstrap",
        root_s,
        "--feed",
        &format!("main={}", server.url("")),
        "--pubkey",
        dir.join("feed.pub").to_str().unwrap(),
        "hello",
    ]);
    assert!(ok, "{out}{err}");
    assert!(root.join("usr/share/hello").is_file());

    let variants: [(&str, Rewrite); 6] = [
        ("", |b| format!("{b}\n")),
        ("Untrusted comment: not the usual header", |b| {
            format!("{b}\n")
        }),
        ("signed by the release team", |b| format!("{b}\r\n")),
        ("<html>", |b| format!("{b}\n\n")),
        ("untrusted comment:", |b| {
            format!("{}\n{}\n", &b[..40], &b[40..])
        }),
        ("untrusted comment: ", |b| format!("  {b}")),
    ];
    for (line1, data) in variants {
        let served_packages_sig = odd(&packages_sig, line1, data);
        fs::write(feed.join("Packages.sig"), &served_packages_sig).unwrap();
        fs::write(feed.join("Release.sig"), odd(&release_sig, line1, data)).unwrap();
        let (ok, out, err) = prokit(&["--root", root_s, "update"]);
        assert!(ok, "line 1 {line1:?}: {out}{err}");
        assert!(out.contains("signed by 0123456789abcdef"), "{out}");
        // the signature checked is the one served, and it is kept as served
        assert_eq!(
            fs::read_to_string(root.join("var/opkg-lists/main.sig")).unwrap(),
            served_packages_sig,
            "line 1 {line1:?}"
        );
        let (ok, out, err) = prokit(&["--root", root_s, "list"]);
        assert!(ok && out.contains("hello - 1.0"), "{out}{err}");
    }

    // usign refuses these too. An HTML page: its line 2 is not a signature.
    fs::write(feed.join("Release.sig"), &release_sig).unwrap();
    fs::write(
        feed.join("Packages.sig"),
        "<!DOCTYPE html>\n<html><body>Captive portal: please log in</body></html>\n",
    )
    .unwrap();
    let (ok, _, err) = prokit(&["--root", root_s, "update"]);
    assert!(!ok);
    assert!(
        err.contains("/Packages.sig: not a usign signature (starts with \"<!DOCTYPE html>…\")"),
        "{err}"
    );
    // An odd line 1 over a signature by a key not trusted.
    let other = feeds::usign::SecretKey::from_seed(
        [9; 32],
        feeds::usign::Fingerprint::new([0, 0, 0, 0, 0, 0, 0x12, 0x34]),
    )
    .unwrap();
    let foreign = other
        .sign(&fs::read(feed.join("Packages")).unwrap())
        .unwrap()
        .to_file_bytes();
    let foreign = String::from_utf8(foreign).unwrap();
    fs::write(
        feed.join("Packages.sig"),
        odd(&foreign, "", |b| format!("{b}\n")),
    )
    .unwrap();
    let (ok, _, err) = prokit(&["--root", root_s, "update"]);
    assert!(!ok);
    assert!(
        err.contains("/Packages.sig: signed by key 0000000000001234, which is not trusted"),
        "{err}"
    );
    // A signature with trailing text after it.
    fs::write(feed.join("Packages.sig"), format!("{packages_sig}junk\n")).unwrap();
    let (ok, _, err) = prokit(&["--root", root_s, "update"]);
    assert!(!ok);
    assert!(err.contains("unexpected data after line 2"), "{err}");
}
