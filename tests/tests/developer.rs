//! Developer signatures across the real binaries (issue 11, docs/trust-model.md §9): a
//! keyring with scoped developer keys (`archman keyring add-key --role developer
//! --packages`), `archman sign-package` and `archman verify-package`, and signify-openbsd
//! verifying the detached signature with the developer's public key.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use e2e::{bin, have_tool, run};

fn archman(args: &[&str]) -> (bool, String, String) {
    run(Command::new(bin("archman")).args(args))
}

fn keygen(dir: &Path, name: &str) -> (String, String) {
    let (sec, public) = (
        dir.join(format!("{name}.sec")),
        dir.join(format!("{name}.pub")),
    );
    let (ok, _, err) = archman(&[
        "keygen",
        "-s",
        sec.to_str().unwrap(),
        "-p",
        public.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    (sec.display().to_string(), public.display().to_string())
}

/// Builds `<name>_1.0_all.ipk` in `out` with `archman build`.
fn package(dir: &Path, out: &Path, name: &str) -> PathBuf {
    let src = dir.join(format!("src-{name}"));
    fs::create_dir_all(src.join("CONTROL")).unwrap();
    fs::create_dir_all(src.join("usr/share").join(name)).unwrap();
    fs::write(
        src.join("CONTROL/control"),
        format!("Package: {name}\nVersion: 1.0\nArchitecture: all\nDescription: {name}\n"),
    )
    .unwrap();
    fs::write(src.join("usr/share").join(name).join("data"), name).unwrap();
    let (ok, stdout, err) = run(Command::new(bin("archman"))
        .arg("build")
        .arg(&src)
        .arg(out)
        .env("SOURCE_DATE_EPOCH", "1795315200"));
    assert!(ok, "{err}");
    PathBuf::from(stdout.trim())
}

#[test]
fn scoped_developer_keys_sign_and_verify_packages() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (root_sec, _) = keygen(t, "root");
    let (a_sec, a_pub) = keygen(t, "devA");
    let (b_sec, b_pub) = keygen(t, "devB");
    let ring = t.join("ring");
    let ring_s = ring.to_str().unwrap();
    let (ok, _, err) = archman(&[
        "keyring",
        "init",
        ring_s,
        "--name",
        "demo",
        "--root-key",
        &root_sec,
    ]);
    assert!(ok, "{err}");
    let (ok, _, err) = archman(&[
        "keyring",
        "add-key",
        ring_s,
        "--role",
        "developer",
        "--packages",
        "luci-app-*",
        &a_pub,
    ]);
    assert!(ok, "{err}");
    let (ok, _, err) = archman(&[
        "keyring",
        "add-key",
        ring_s,
        "--role",
        "developer",
        "--packages",
        "pbr",
        &b_pub,
    ]);
    assert!(ok, "{err}");
    let manifest = fs::read_to_string(ring.join("keyring")).unwrap_or_default();
    let listed = fs::read_dir(&ring)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect::<Vec<_>>();
    // Bad scopes and scopes on other roles are refused, naming what is wrong.
    let (ok, _, err) = archman(&[
        "keyring",
        "add-key",
        ring_s,
        "--role",
        "developer",
        "--packages",
        "luci-[a]",
        &a_pub,
    ]);
    assert!(
        !ok && err.contains("--packages \"luci-[a]\": glob \"luci-[a]\" holds '['"),
        "{err}"
    );
    let (ok, _, err) = archman(&[
        "keyring",
        "add-key",
        ring_s,
        "--role",
        "feed",
        "--packages",
        "x",
        &a_pub,
    ]);
    assert!(
        !ok && err.contains("only a developer key has a package scope"),
        "{err}"
    );
    let after = fs::read_to_string(ring.join("keyring")).unwrap_or_default();
    assert_eq!(
        after, manifest,
        "a refused add-key changed the keyring ({listed:?})"
    );

    let feed = t.join("feed");
    let app = package(t, &feed, "luci-app-x");
    let pbr = package(t, &feed, "pbr");
    let other = package(t, &feed, "dnsmasq");
    let (ok, out, err) = archman(&["sign-package", "-s", &a_sec, app.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(
        out.contains("luci-app-x 1.0 signed by developer key"),
        "{out}"
    );
    let (ok, _, err) = archman(&[
        "sign-package",
        "-s",
        &b_sec,
        pbr.to_str().unwrap(),
        other.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let sig = |p: &Path| PathBuf::from(format!("{}.sig", p.display()));
    assert!(sig(&app).exists() && sig(&pbr).exists() && sig(&other).exists());

    // The keyring decides: A may sign luci-app-*, B only pbr.
    let (ok, out, err) = archman(&[
        "verify-package",
        "--keyring",
        ring_s,
        app.to_str().unwrap(),
        pbr.to_str().unwrap(),
    ]);
    assert!(ok, "{out}{err}");
    assert_eq!(out.matches("OK: ").count(), 2, "{out}");
    let (ok, out, err) = archman(&[
        "verify-package",
        "--keyring",
        ring_s,
        app.to_str().unwrap(),
        other.to_str().unwrap(),
    ]);
    assert!(!ok, "{out}{err}");
    assert!(out.contains("OK: ") && out.contains("luci-app-x"), "{out}");
    assert!(
        err.contains("package dnsmasq: outside the scope of developer key")
            && err.contains("(it may sign pbr; keyring demo serial"),
        "{err}"
    );
    assert!(err.contains("1 of 2 package signatures failed"), "{err}");
    // A plain key says nothing of scopes.
    let (ok, _, err) = archman(&["verify-package", "-p", &b_pub, other.to_str().unwrap()]);
    assert!(ok, "{err}");

    // signify-openbsd verifies the same detached signature with the developer's key.
    if have_tool("signify-openbsd") {
        let (ok, _, err) = run(Command::new("signify-openbsd")
            .args(["-V", "-q", "-p", &a_pub, "-x"])
            .arg(sig(&app))
            .arg("-m")
            .arg(&app));
        assert!(ok, "signify -V: {err}");
    }

    // A signature over another file, a .sig that is not a signature, a tampered package.
    fs::copy(sig(&pbr), sig(&app)).unwrap();
    let (ok, _, err) = archman(&["verify-package", "-p", &b_pub, app.to_str().unwrap()]);
    assert!(!ok && err.contains("bad signature by key"), "{err}");
    // Through the keyring, B's signature on A's package is out of B's scope first.
    let (ok, _, err) = archman(&["verify-package", "--keyring", ring_s, app.to_str().unwrap()]);
    assert!(
        !ok && err.contains("package luci-app-x: outside the scope of developer key"),
        "{err}"
    );
    fs::write(sig(&app), "<html>captive portal</html>\n").unwrap();
    let (ok, _, err) = archman(&["verify-package", "-p", &a_pub, app.to_str().unwrap()]);
    assert!(
        !ok && err.contains(&format!("{}.sig", app.display())),
        "{err}"
    );
    let mut bytes = fs::read(&pbr).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 1;
    fs::write(&pbr, bytes).unwrap();
    let (ok, _, err) = archman(&["verify-package", "-p", &b_pub, pbr.to_str().unwrap()]);
    assert!(!ok, "a tampered package verified");
    assert!(err.contains("pbr"), "{err}");
}
