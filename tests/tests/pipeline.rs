//! The maintainer's pipeline across the real binaries: `archman build` each example package,
//! `archman keygen`, `archman index --key`, then `archman check` and `signify-openbsd` verify
//! it; tampering with a published package afterwards makes `archman check` fail.

use std::fs;
use std::path::Path;
use std::process::Command;

use e2e::{bin, have_tool, run};

#[test]
fn build_index_sign_check() {
    let archman = bin("archman");
    let tmp = tempfile::tempdir().unwrap();
    let feed = tmp.path().join("feed");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/packages");
    let mut built = 0;
    for e in fs::read_dir(&examples).unwrap() {
        let (ok, out, err) = run(Command::new(&archman)
            .arg("build")
            .arg(e.unwrap().path())
            .arg(&feed)
            .env("SOURCE_DATE_EPOCH", "1795315200"));
        assert!(ok, "{err}");
        assert!(out.trim().ends_with(".ipk"), "{out}");
        built += 1;
    }
    assert_eq!(built, 3);
    let (sec, public) = (tmp.path().join("k.sec"), tmp.path().join("k.pub"));
    let (ok, _, err) = run(Command::new(&archman)
        .arg("keygen")
        .arg("-s")
        .arg(&sec)
        .arg("-p")
        .arg(&public));
    assert!(ok, "{err}");
    let (ok, _, err) = run(Command::new(&archman)
        .args(["index", "-q", "--valid-for", "7d", "--key"])
        .arg(&sec)
        .arg(&feed));
    assert!(ok, "{err}");
    let (ok, out, err) = run(Command::new(&archman)
        .arg("check")
        .arg("-p")
        .arg(&public)
        .arg(&feed));
    assert!(ok, "{out}{err}");
    assert!(out.contains("OK: ") && out.contains("3 packages"), "{out}");
    if have_tool("signify-openbsd") {
        for m in ["Packages", "Release"] {
            let (ok, _, err) = run(Command::new("signify-openbsd")
                .args(["-V", "-q", "-p"])
                .arg(&public)
                .arg("-m")
                .arg(feed.join(m)));
            assert!(ok, "signify -V {m}: {err}");
        }
    }
    // A package altered after publishing is caught.
    let victim = feed.join("libgreet_0.9.4-r2_all.ipk");
    let mut bytes = fs::read(&victim).unwrap();
    let n = bytes.len();
    bytes[n - 20] ^= 1;
    fs::write(&victim, bytes).unwrap();
    let (ok, out, _) = run(Command::new(&archman)
        .arg("check")
        .arg("-p")
        .arg(&public)
        .arg(&feed));
    assert!(!ok);
    assert!(
        out.contains("libgreet_0.9.4-r2_all.ipk") && out.contains("FAILED"),
        "{out}"
    );
}
