//! `archman`'s usign-compatible key commands against the real `signify-openbsd`.

use std::fs;
use std::process::Command;

use e2e::{bin, have_tool, run};

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
