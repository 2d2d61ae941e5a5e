//! `archman`'s usign-compatible key commands against the real `signify-openbsd`, and the
//! fingerprints they write: 16 hex digits, zero-padded, as usign prints them (`"%016"PRIx64`,
//! usign `main.c` lines 152 and 279 at commit c4c72b1).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use e2e::{bin, have_tool, run};

/// RFC 8032 section 7.1 TEST 1's key with fingerprint `0123456789abcdef` (a leading zero
/// nibble), as usign writes it (zero salt), and usign's signature of [`MSG`] with it.
const A_SEC: &str = "untrusted comment: private key 0123456789abcdef\n\
    RWRCSwAAAAAAAAAAAAAAAAAAAAAAAAAASulvySzYtIABI0VniavN751hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\n";
const A_PUB: &str = "untrusted comment: public key 0123456789abcdef\n\
    RWQBI0VniavN79damAGCsQq31Uv+08lkBzoO4XLz2qYjJa8CGmj3B1Ea\n";
const MSG: &str = "Package: hello\n";
const MSG_A_SIG: &str = "untrusted comment: signed by key 0123456789abcdef\n\
    RWQBI0VniavN73N/lRBQVVCOKUMrElX1zYu9nkMdVX12TeG4U9BlaijiMXMipvpGuuLIvjJRTVVf/cYsYBY1rbX0ToFbn7z0swY=\n";

#[test]
fn sign_fingerprint_and_index_write_a_leading_zero_as_usign_does() {
    let archman = bin("archman");
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    fs::write(p("a.sec"), A_SEC).unwrap();
    fs::write(p("a.pub"), A_PUB).unwrap();
    fs::write(p("msg"), MSG).unwrap();
    let (ok, out, err) = run(Command::new(&archman)
        .args(["sign", "-s"])
        .arg(p("a.sec"))
        .arg("-m")
        .arg(p("msg")));
    assert!(ok && out.is_empty(), "{out}{err}");
    assert_eq!(fs::read_to_string(p("msg.sig")).unwrap(), MSG_A_SIG);
    let (ok, out, err) = run(Command::new(&archman)
        .args(["verify", "-p"])
        .arg(p("a.pub"))
        .arg("-m")
        .arg(p("msg")));
    assert!(ok, "{err}");
    assert!(out.ends_with(" signed by key 0123456789abcdef\n"), "{out}");
    for flag in ["-s", "-p", "-x"] {
        let file = match flag {
            "-s" => "a.sec",
            "-p" => "a.pub",
            _ => "msg.sig",
        };
        let (ok, out, err) = run(Command::new(&archman)
            .args(["fingerprint", flag])
            .arg(p(file)));
        assert!(ok, "{err}");
        assert_eq!(out, "0123456789abcdef\n", "{flag}");
    }
    let (ok, out, err) = run(Command::new(&archman)
        .args(["usign", "-F", "-x"])
        .arg(p("msg.sig")));
    assert!(ok, "{err}");
    assert_eq!(out, "0123456789abcdef\n");

    // an index signed by that key: the same comment on Packages.sig and Release.sig
    let feed = p("feed");
    fs::create_dir(&feed).unwrap();
    let ipk = feeds::build::PackageBuilder::new(
        "Package: hello\nVersion: 1.0\nArchitecture: all\nMaintainer: T <t@example.org>\n\
         Description: hello\n",
    )
    .file("usr/share/hello", 0o644, b"hello\n".to_vec())
    .build()
    .unwrap();
    fs::write(feed.join("hello_1.0_all.ipk"), ipk).unwrap();
    let (ok, out, err) = run(Command::new(&archman)
        .args(["index", "--key"])
        .arg(p("a.sec"))
        .arg(&feed)
        .env("SOURCE_DATE_EPOCH", "1700000000"));
    assert!(ok, "{out}{err}");
    assert!(err.contains("signed by key 0123456789abcdef"), "{err}");
    for sig in ["Packages.sig", "Release.sig"] {
        let text = fs::read_to_string(feed.join(sig)).unwrap();
        assert!(
            text.starts_with("untrusted comment: signed by key 0123456789abcdef\n"),
            "{sig}: {text}"
        );
    }
}

#[test]
fn keygen_pads_a_leading_zero() {
    // One key in 16 has a fingerprint starting with a zero nibble; generate until one does
    // (400 tries miss with probability (15/16)^400, below 1e-11).
    let archman = bin("archman");
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let fp = (0..400)
        .find_map(|_| {
            let (ok, out, err) = run(Command::new(&archman)
                .args(["keygen", "--force", "-s"])
                .arg(p("k.sec"))
                .arg("-p")
                .arg(p("k.pub")));
            assert!(ok, "{err}");
            let fp = out.trim_end().to_owned();
            fp.starts_with('0').then_some(fp)
        })
        .expect("a fingerprint starting with 0");
    assert_eq!(fp.len(), 16, "{fp}");
    assert_eq!(
        fs::read_to_string(p("k.sec")).unwrap().lines().next(),
        Some(format!("untrusted comment: private key {fp}").as_str())
    );
    assert_eq!(
        fs::read_to_string(p("k.pub")).unwrap().lines().next(),
        Some(format!("untrusted comment: public key {fp}").as_str())
    );
    // archman keygen keeps its secret key private, unlike usign -G
    let mode = fs::metadata(p("k.sec")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let (ok, out, err) = run(Command::new(&archman)
        .args(["usign", "-F", "-p"])
        .arg(p("k.pub")));
    assert!(ok, "{err}");
    assert_eq!(out, format!("{fp}\n"));
}

#[test]
fn archman_keys_and_signatures_interoperate_with_signify() {
    if !have_tool("signify-openbsd") {
        return;
    }
    let archman = bin("archman");
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    fs::write(p("Packages"), "Package: hello\nVersion: 1\n").unwrap();

    // Our key, our signature: signify verifies it.
    let (ok, fp, err) = run(Command::new(&archman)
        .args(["keygen", "-s"])
        .arg(p("a.sec"))
        .arg("-p")
        .arg(p("a.pub")));
    assert!(ok, "{err}");
    assert_eq!(fp.trim().len(), 16);
    let (ok, _, err) = run(Command::new(&archman)
        .args(["sign", "-s"])
        .arg(p("a.sec"))
        .arg("-m")
        .arg(p("Packages")));
    assert!(ok, "{err}");
    let (ok, _, err) = run(Command::new("signify-openbsd")
        .args(["-V", "-q", "-p"])
        .arg(p("a.pub"))
        .arg("-m")
        .arg(p("Packages"))
        .arg("-x")
        .arg(p("Packages.sig")));
    assert!(ok, "signify refused our signature: {err}");
    let (ok, out, _) = run(Command::new(&archman)
        .args(["fingerprint", "-x"])
        .arg(p("Packages.sig")));
    assert!(ok);
    assert_eq!(out, fp);

    // signify's key and signature: we verify them, through a key directory too.
    let (ok, _, err) = run(Command::new("signify-openbsd")
        .args(["-G", "-n", "-p"])
        .arg(p("s.pub"))
        .arg("-s")
        .arg(p("s.sec")));
    assert!(ok, "{err}");
    let (ok, _, err) = run(Command::new("signify-openbsd")
        .args(["-S", "-s"])
        .arg(p("s.sec"))
        .arg("-m")
        .arg(p("Packages"))
        .arg("-x")
        .arg(p("s.sig")));
    assert!(ok, "{err}");
    let (ok, out, err) = run(Command::new(&archman)
        .args(["verify", "-m"])
        .arg(p("Packages"))
        .arg("-p")
        .arg(p("s.pub"))
        .arg("-x")
        .arg(p("s.sig")));
    assert!(ok, "{err}");
    assert!(out.starts_with("OK: "), "{out}");
    let (_, sfp, _) = run(Command::new(&archman)
        .args(["fingerprint", "-p"])
        .arg(p("s.pub")));
    fs::create_dir(p("keys")).unwrap();
    fs::copy(p("s.pub"), p("keys").join(sfp.trim())).unwrap();
    let (ok, out, err) = run(Command::new(&archman)
        .args(["verify", "-q", "-m"])
        .arg(p("Packages"))
        .arg("-P")
        .arg(p("keys"))
        .arg("-x")
        .arg(p("s.sig")));
    assert!(ok, "{err}");
    assert_eq!(out, "");

    // A tampered message: both tools refuse, we exit 1 naming the signature file.
    fs::write(p("Packages"), "Package: evil\nVersion: 1\n").unwrap();
    let (ok, _, _) = run(Command::new("signify-openbsd")
        .args(["-V", "-q", "-p"])
        .arg(p("a.pub"))
        .arg("-m")
        .arg(p("Packages"))
        .arg("-x")
        .arg(p("Packages.sig")));
    assert!(!ok);
    let out = Command::new(&archman)
        .args(["verify", "-m"])
        .arg(p("Packages"))
        .arg("-p")
        .arg(p("s.pub"))
        .arg("-x")
        .arg(p("s.sig"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!("error: {}: bad signature", p("s.sig").display())),
        "{err}"
    );

    // keygen refuses to overwrite a secret key.
    let out = Command::new(&archman)
        .args(["keygen", "-s"])
        .arg(p("a.sec"))
        .arg("-p")
        .arg(p("b.pub"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
}
