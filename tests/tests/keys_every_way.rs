//! Keys made every way a pipeline needs (issue 12, docs/formats.md §4.6), through the real
//! `archman` binary and checked against the real peers: keys derived from a CI secret
//! (`keygen --seed-env/--seed-file`), imported from and exported to OpenSSL's PEM (`keygen
//! --import-pem`, `key export --pem`, `sign --pem`) with `openssl` verifying and making the
//! raw Ed25519 signatures, and passphrase-protected secret keys (`--passphrase-file`,
//! `--ask`) that `signify-openbsd` reads and writes. And the secret is never shown.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use e2e::{bin, have_tool, run};

/// Runs archman in `dir` with `args` and the environment variables `env`; returns
/// (success, stdout, stderr).
fn archman_env(dir: &Path, args: &[&str], env: &[(&str, &[u8])]) -> (bool, String, String) {
    use std::os::unix::ffi::OsStrExt;
    let mut cmd = Command::new(bin("archman"));
    cmd.current_dir(dir).args(args);
    for (name, value) in env {
        cmd.env(name, std::ffi::OsStr::from_bytes(value));
    }
    run(&mut cmd)
}

fn archman(dir: &Path, args: &[&str]) -> (bool, String, String) {
    archman_env(dir, args, &[])
}

/// Runs a peer tool in `dir`; returns (success, stdout, stderr).
fn peer(dir: &Path, tool: &str, args: &[&str]) -> (bool, String, String) {
    run(Command::new(tool).current_dir(dir).args(args))
}

/// The 64 raw signature bytes of the usign signature file `sig`, taken apart by hand: its
/// line 2 is base64 of "Ed", the 8-byte key number and the signature.
fn raw_signature(dir: &Path, sig: &str) -> Vec<u8> {
    let text = fs::read_to_string(dir.join(sig)).unwrap();
    let blob = base64_decode(dir, text.lines().nth(1).unwrap());
    assert_eq!(blob.len(), 74, "{sig}");
    assert_eq!(&blob[..2], b"Ed");
    blob[10..].to_vec()
}

/// The 8-byte key number of the usign public key file `public` (blob bytes 2..10).
fn key_number(dir: &Path, public: &str) -> Vec<u8> {
    let text = fs::read_to_string(dir.join(public)).unwrap();
    let blob = base64_decode(dir, text.lines().nth(1).unwrap());
    assert_eq!(blob.len(), 42, "{public}");
    blob[2..10].to_vec()
}

/// Writes the usign signature file `sig` for a raw Ed25519 signature by the key numbered
/// `number`.
fn write_usign_sig(dir: &Path, sig: &str, number: &[u8], raw: &[u8]) {
    assert_eq!(raw.len(), 64);
    let blob = [&b"Ed"[..], number, raw].concat();
    let line2 = base64_encode(dir, &blob);
    fs::write(
        dir.join(sig),
        format!("untrusted comment: by openssl\n{line2}\n"),
    )
    .unwrap();
}

/// base64 with coreutils, so the file layout is checked independently of archman's code.
fn base64_decode(dir: &Path, text: &str) -> Vec<u8> {
    fs::write(dir.join(".b64"), text).unwrap();
    let out = Command::new("base64")
        .args(["-d", ".b64"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    out.stdout
}

fn base64_encode(dir: &Path, bytes: &[u8]) -> String {
    fs::write(dir.join(".bin"), bytes).unwrap();
    let out = Command::new("base64")
        .args(["-w0", ".bin"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

const SEED_A: &[u8] = b"ci-secret-A: 0123456789abcdef0123456789abcdef";
const SEED_B: &[u8] = b"ci-secret-B: 0123456789abcdef0123456789abcdef";

#[test]
fn a_secret_always_makes_the_same_key_and_another_secret_another_key() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let keygen = |sec: &str, public: &str, seed: &[u8]| {
        let (ok, out, err) = archman_env(
            d,
            &[
                "keygen",
                "--seed-env",
                "CI_KEY_SEED",
                "-s",
                sec,
                "-p",
                public,
            ],
            &[("CI_KEY_SEED", seed)],
        );
        assert!(ok, "{err}");
        assert!(err.is_empty(), "{err}");
        out.trim_end().to_string()
    };
    let fp = keygen("a1.sec", "a1.pub", SEED_A);
    assert_eq!(fp.len(), 16, "{fp}");
    assert_eq!(keygen("a2.sec", "a2.pub", SEED_A), fp);
    for (one, two) in [("a1.sec", "a2.sec"), ("a1.pub", "a2.pub")] {
        assert_eq!(
            fs::read(d.join(one)).unwrap(),
            fs::read(d.join(two)).unwrap(),
            "{one} and {two} differ"
        );
    }
    assert_ne!(keygen("b.sec", "b.pub", SEED_B), fp);
    assert_ne!(
        key_number(d, "a1.pub"),
        key_number(d, "b.pub"),
        "another secret, another key number"
    );

    // --seed-file: the file's bytes exactly; a trailing newline makes another key
    fs::write(d.join("seed"), SEED_A).unwrap();
    let (ok, out, err) = archman(
        d,
        &[
            "keygen",
            "--seed-file",
            "seed",
            "-s",
            "f.sec",
            "-p",
            "f.pub",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(out.trim_end(), fp);
    assert_eq!(
        fs::read(d.join("f.pub")).unwrap(),
        fs::read(d.join("a1.pub")).unwrap()
    );
    fs::write(d.join("seed-nl"), [SEED_A, b"\n"].concat()).unwrap();
    let (ok, out, err) = archman(
        d,
        &[
            "keygen",
            "--seed-file",
            "seed-nl",
            "-s",
            "n.sec",
            "-p",
            "n.pub",
        ],
    );
    assert!(ok, "{err}");
    assert_ne!(out.trim_end(), fp);

    // a key made in one run signs, and the other run's public key verifies
    fs::write(d.join("Packages"), "Package: hello\n").unwrap();
    let (ok, _, err) = archman(d, &["sign", "-s", "a1.sec", "-m", "Packages"]);
    assert!(ok, "{err}");
    let (ok, out, err) = archman(d, &["verify", "-p", "a2.pub", "-m", "Packages"]);
    assert!(ok, "{err}");
    assert_eq!(out, format!("OK: Packages signed by key {fp}\n"));
    let (ok, _, err) = archman(d, &["verify", "-p", "b.pub", "-m", "Packages"]);
    assert!(!ok && err.contains("signature is by key"), "{err}");

    // the known answer of archman/src/keygen.rs, through the binary
    let (ok, out, err) = archman_env(
        d,
        &[
            "keygen",
            "--seed-env",
            "KAT",
            "-s",
            "kat.sec",
            "-p",
            "kat.pub",
        ],
        &[("KAT", b"archman keygen known-answer test secret, v1 ok")],
    );
    assert!(ok, "{err}");
    assert_eq!(out, "fb16f51bc8dbf5ad\n");
    assert_eq!(
        fs::read_to_string(d.join("kat.pub")).unwrap(),
        "untrusted comment: public key fb16f51bc8dbf5ad\n\
         RWT7FvUbyNv1rU2MSGJXV07bDW++0AByLBpqS5ja32IN4R+TmNqUCMXf\n"
    );
}

#[test]
fn short_missing_and_conflicting_secrets_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (ok, out, err) = archman_env(
        d,
        &[
            "keygen",
            "--seed-env",
            "CI_KEY_SEED",
            "-s",
            "k.sec",
            "-p",
            "k.pub",
        ],
        &[("CI_KEY_SEED", b"twelve bytes")],
    );
    assert!(!ok && out.is_empty());
    assert_eq!(
        err,
        "error: --seed-env CI_KEY_SEED: secret is 12 bytes; at least 32 needed\n"
    );
    fs::write(d.join("seed"), [b's'; 31]).unwrap();
    let (ok, _, err) = archman(
        d,
        &[
            "keygen",
            "--seed-file",
            "seed",
            "-s",
            "k.sec",
            "-p",
            "k.pub",
        ],
    );
    assert!(!ok);
    assert_eq!(
        err,
        "error: --seed-file seed: secret is 31 bytes; at least 32 needed\n"
    );
    let (ok, _, err) = archman_env(
        d,
        &[
            "keygen",
            "--seed-env",
            "ARCHMAN_UNSET_SEED",
            "-s",
            "k.sec",
            "-p",
            "k.pub",
        ],
        &[],
    );
    assert!(!ok);
    assert_eq!(
        err,
        "error: --seed-env ARCHMAN_UNSET_SEED: the environment variable is not set\n"
    );
    let (ok, _, err) = archman(
        d,
        &[
            "keygen",
            "--seed-file",
            "none",
            "-s",
            "k.sec",
            "-p",
            "k.pub",
        ],
    );
    assert!(!ok && err.starts_with("error: none: No such file"), "{err}");
    assert!(!d.join("k.sec").exists() && !d.join("k.pub").exists());
    // one source at a time: a usage error (exit status 2)
    let out = Command::new(bin("archman"))
        .current_dir(d)
        .args(["keygen", "--seed-file", "seed", "--import-pem", "k.pem"])
        .args(["-s", "k.sec", "-p", "k.pub"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used with"));
}

#[test]
fn the_secret_appears_in_no_output_and_no_file() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let canary = "CANARY-7f3a9c-do-not-leak-0123456789abcdef";
    let forms = [
        canary.to_string(),
        hex::encode(canary),
        hex::encode_upper(canary),
        base64_encode(d, canary.as_bytes()),
        // a form cut short, as an error message might quote it
        canary[..16].to_string(),
    ];
    fs::remove_file(d.join(".bin")).unwrap();
    let mut outputs = Vec::new();
    for args in [
        &["keygen", "--seed-env", "SEED", "-s", "k.sec", "-p", "k.pub"][..],
        // again: refused, the files exist
        &["keygen", "--seed-env", "SEED", "-s", "k.sec", "-p", "k.pub"],
        &[
            "keygen",
            "--seed-env",
            "SEED",
            "-s",
            "k.sec",
            "-p",
            "k.pub",
            "--force",
        ],
        &[
            "keygen",
            "--seed-env",
            "SEED",
            "-s",
            "p.sec",
            "-p",
            "p.pub",
            "--passphrase-file",
            "none",
        ],
        &[
            "keygen",
            "--seed-env",
            "SEED",
            "-s",
            "k.sec",
            "-p",
            "k.pub",
            "-c",
            "bad\u{1}comment\nx",
        ],
        &["fingerprint", "-s", "k.sec"],
        &["key", "export", "--pem", "-s", "k.sec", "-o", "k.pem"],
        &["key", "export", "--pem", "-p", "k.pub", "-o", "k.pub.pem"],
    ] {
        let (_, out, err) = archman_env(d, args, &[("SEED", canary.as_bytes())]);
        outputs.push(format!("{args:?}\n{out}{err}"));
    }
    // and when the secret is refused as too short
    let (ok, out, err) = archman_env(
        d,
        &["keygen", "--seed-env", "SEED", "-s", "s.sec", "-p", "s.pub"],
        &[("SEED", &canary.as_bytes()[..20])],
    );
    assert!(!ok);
    outputs.push(format!("{out}{err}"));
    for output in &outputs {
        for form in &forms {
            assert!(!output.contains(form.as_str()), "{form} in {output}");
        }
    }
    let mut files = 0;
    for entry in fs::read_dir(d).unwrap() {
        let path = entry.unwrap().path();
        let bytes = fs::read(&path).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for form in &forms {
            assert!(
                !text.contains(form.as_str()),
                "{form} in {}",
                path.display()
            );
        }
        files += 1;
    }
    // k.sec, k.pub, k.pem, k.pub.pem were written and checked
    assert_eq!(files, 4, "{outputs:?}");
}

#[test]
fn openssl_ed25519_keys_make_usign_keys_and_signatures_both_ways() {
    if !have_tool("openssl") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let message = "Package: hello\nVersion: 1.0\n";
    fs::write(d.join("Packages"), message).unwrap();
    let (ok, _, err) = peer(
        d,
        "openssl",
        &["genpkey", "-algorithm", "ed25519", "-out", "k.pem"],
    );
    assert!(ok, "{err}");
    let (ok, _, err) = peer(
        d,
        "openssl",
        &["pkey", "-in", "k.pem", "-pubout", "-out", "pub.pem"],
    );
    assert!(ok, "{err}");

    // openssl's key as a usign key pair; the same PEM always gets the same key number
    let (ok, fp, err) = archman(
        d,
        &[
            "keygen",
            "--import-pem",
            "k.pem",
            "-s",
            "k.sec",
            "-p",
            "k.pub",
        ],
    );
    assert!(ok, "{err}");
    let (ok, again, err) = archman(
        d,
        &[
            "keygen",
            "--import-pem",
            "k.pem",
            "-s",
            "k2.sec",
            "-p",
            "k2.pub",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(fp, again);
    assert_eq!(
        fs::read(d.join("k.sec")).unwrap(),
        fs::read(d.join("k2.sec")).unwrap()
    );

    // archman signs with the usign key: openssl verifies the raw Ed25519 signature
    let (ok, _, err) = archman(d, &["sign", "-s", "k.sec", "-m", "Packages"]);
    assert!(ok, "{err}");
    let raw = raw_signature(d, "Packages.sig");
    fs::write(d.join("sig.raw"), &raw).unwrap();
    let verify = |file: &str| {
        peer(
            d,
            "openssl",
            &[
                "pkeyutl", "-verify", "-pubin", "-inkey", "pub.pem", "-rawin", "-in", file,
                "-sigfile", "sig.raw",
            ],
        )
    };
    let (ok, out, err) = verify("Packages");
    assert!(ok, "openssl refused archman's signature: {out}{err}");
    assert!(out.contains("Signature Verified Successfully"), "{out}");
    fs::write(d.join("tampered"), format!("{message}x")).unwrap();
    let (ok, _, _) = verify("tampered");
    assert!(!ok, "openssl accepted a signature over another message");

    // sign --pem: the same signature file, key number included, as with the usign key
    let (ok, _, err) = archman(
        d,
        &["sign", "--pem", "k.pem", "-m", "Packages", "-x", "pem.sig"],
    );
    assert!(ok, "{err}");
    assert_eq!(
        fs::read(d.join("pem.sig")).unwrap(),
        fs::read(d.join("Packages.sig")).unwrap()
    );
    let (ok, out, err) = archman(
        d,
        &["verify", "-p", "k.pub", "-m", "Packages", "-x", "pem.sig"],
    );
    assert!(ok, "{err}");
    assert_eq!(out, format!("OK: Packages signed by key {}", fp));

    // openssl signs: wrapped as a usign signature with the key's number, archman verifies it
    let (ok, _, err) = peer(
        d,
        "openssl",
        &[
            "pkeyutl",
            "-sign",
            "-inkey",
            "k.pem",
            "-rawin",
            "-in",
            "Packages",
            "-out",
            "openssl.raw",
        ],
    );
    assert!(ok, "{err}");
    let openssl_raw = fs::read(d.join("openssl.raw")).unwrap();
    assert_eq!(
        openssl_raw, raw,
        "Ed25519 is deterministic: the same signature"
    );
    write_usign_sig(d, "openssl.sig", &key_number(d, "k.pub"), &openssl_raw);
    let (ok, _, err) = archman(
        d,
        &[
            "verify",
            "-q",
            "-p",
            "k.pub",
            "-m",
            "Packages",
            "-x",
            "openssl.sig",
        ],
    );
    assert!(ok, "archman refused openssl's signature: {err}");
    let (ok, _, err) = archman(
        d,
        &[
            "verify",
            "-q",
            "-p",
            "k.pub",
            "-m",
            "tampered",
            "-x",
            "openssl.sig",
        ],
    );
    assert!(!ok && err.contains("bad signature"), "{err}");

    // and signify-openbsd takes the imported key's signature as its own
    if have_tool("signify-openbsd") {
        let (ok, _, err) = peer(
            d,
            "signify-openbsd",
            &[
                "-V",
                "-q",
                "-p",
                "k.pub",
                "-m",
                "Packages",
                "-x",
                "openssl.sig",
            ],
        );
        assert!(ok, "{err}");
    }
}

#[test]
fn exported_pem_keys_are_read_by_openssl() {
    if !have_tool("openssl") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    fs::write(d.join("Packages"), "Package: hello\n").unwrap();
    // a random usign key: exported, with a note that PEM does not keep its key number
    let (ok, fp, err) = archman(d, &["keygen", "-s", "a.sec", "-p", "a.pub"]);
    assert!(ok, "{err}");
    let fp = fp.trim_end();
    let (ok, out, err) = archman(d, &["key", "export", "--pem", "-s", "a.sec", "-o", "a.pem"]);
    assert!(ok, "{err}");
    assert!(out.is_empty());
    assert!(
        err.starts_with("note: PEM has no key number: read back")
            && err.contains(&format!("not {fp}")),
        "{err}"
    );
    let mode = fs::metadata(d.join("a.pem")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(
        fs::read_to_string(d.join("a.pem"))
            .unwrap()
            .starts_with("-----BEGIN PRIVATE KEY-----\n")
    );
    let (ok, _, err) = archman(
        d,
        &["key", "export", "--pem", "-p", "a.pub", "-o", "a.pub.pem"],
    );
    assert!(ok, "{err}");
    // openssl reads the private key and finds the public key archman exported
    let (ok, from_openssl, err) = peer(d, "openssl", &["pkey", "-in", "a.pem", "-pubout"]);
    assert!(ok, "{err}");
    assert_eq!(
        from_openssl,
        fs::read_to_string(d.join("a.pub.pem")).unwrap()
    );
    // ... and the private key archman exported is what openssl writes for it
    let (ok, rewritten, err) = peer(d, "openssl", &["pkey", "-in", "a.pem"]);
    assert!(ok, "{err}");
    assert_eq!(rewritten, fs::read_to_string(d.join("a.pem")).unwrap());

    // openssl signs with the exported key; the usign public key verifies it
    let (ok, _, err) = peer(
        d,
        "openssl",
        &[
            "pkeyutl", "-sign", "-inkey", "a.pem", "-rawin", "-in", "Packages", "-out", "sig.raw",
        ],
    );
    assert!(ok, "{err}");
    write_usign_sig(
        d,
        "Packages.sig",
        &key_number(d, "a.pub"),
        &fs::read(d.join("sig.raw")).unwrap(),
    );
    let (ok, out, err) = archman(d, &["verify", "-p", "a.pub", "-m", "Packages"]);
    assert!(ok, "{err}");
    assert_eq!(out, format!("OK: Packages signed by key {fp}\n"));

    // an existing private key file is replaced only with --force
    let (ok, _, err) = archman(d, &["key", "export", "--pem", "-s", "a.sec", "-o", "a.pem"]);
    assert!(!ok);
    assert_eq!(
        err,
        "error: a.pem: already exists; not overwriting a private key without --force\n"
    );
    let (ok, _, err) = archman(
        d,
        &[
            "key", "export", "--pem", "-s", "a.sec", "-o", "a.pem", "--force",
        ],
    );
    assert!(ok, "{err}");

    // a derived key keeps its key number through PEM: no note, the same files back
    let (ok, dfp, err) = archman_env(
        d,
        &["keygen", "--seed-env", "S", "-s", "d.sec", "-p", "d.pub"],
        &[("S", SEED_A)],
    );
    assert!(ok, "{err}");
    let (ok, _, err) = archman(d, &["key", "export", "--pem", "-s", "d.sec", "-o", "d.pem"]);
    assert!(ok && err.is_empty(), "{err}");
    let (ok, back, err) = archman(
        d,
        &[
            "keygen",
            "--import-pem",
            "d.pem",
            "-s",
            "e.sec",
            "-p",
            "e.pub",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(back, dfp);
    assert_eq!(
        fs::read(d.join("e.sec")).unwrap(),
        fs::read(d.join("d.sec")).unwrap()
    );
}

#[test]
fn bad_pem_files_are_refused_naming_the_file_and_the_problem() {
    if !have_tool("openssl") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    fs::write(d.join("Packages"), "Package: hello\n").unwrap();
    let make = |args: &[&str]| {
        let (ok, _, err) = peer(d, "openssl", args);
        assert!(ok, "{err}");
    };
    make(&["genpkey", "-algorithm", "ed25519", "-out", "k.pem"]);
    make(&["pkey", "-in", "k.pem", "-pubout", "-out", "pub.pem"]);
    make(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        "ec.pem",
    ]);
    make(&[
        "genpkey",
        "-algorithm",
        "ed25519",
        "-aes256",
        "-pass",
        "pass:x",
        "-out",
        "enc.pem",
    ]);
    fs::write(d.join("junk.pem"), "not a key at all\n").unwrap();
    for (file, problem) in [
        (
            "pub.pem",
            "pub.pem: -----BEGIN PUBLIC KEY-----: a public key, but a private key is needed",
        ),
        (
            "ec.pem",
            "ec.pem: not an Ed25519 key: the PKCS#8 block holds an EC key",
        ),
        (
            "enc.pem",
            "enc.pem: -----BEGIN ENCRYPTED PRIVATE KEY-----: an encrypted PKCS#8 key",
        ),
        (
            "junk.pem",
            "junk.pem: not a PEM file: no -----BEGIN ...----- line",
        ),
        // as for a missing usign key (`archman sign -s missing.sec`)
        ("none.pem", "secret key none.pem: No such file or directory"),
    ] {
        let (ok, out, err) = archman(
            d,
            &["keygen", "--import-pem", file, "-s", "k.sec", "-p", "k.pub"],
        );
        assert!(!ok && out.is_empty(), "{file}");
        assert!(
            err.starts_with(&format!("error: {problem}")),
            "{file}: {err}"
        );
        assert!(
            !d.join("k.sec").exists() && !d.join("k.pub").exists(),
            "{file}"
        );
        let (ok, _, err) = archman(d, &["sign", "--pem", file, "-m", "Packages"]);
        assert!(!ok, "{file}");
        assert!(
            err.starts_with(&format!("error: {problem}")),
            "{file}: {err}"
        );
        assert!(!d.join("Packages.sig").exists(), "{file}");
    }
}

/// Runs `command` (a shell line) under `script`, on a pseudo-terminal as signify needs to
/// read a passphrase, typing `answers` one at each "passphrase:" prompt; returns whether it
/// succeeded and what it showed on the terminal.
fn with_tty(dir: &Path, command: &str, answers: &[&str]) -> (bool, String) {
    let mut child = Command::new("script")
        .args(["-q", "-e", "-c", command, "/dev/null"])
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run script");
    let mut stdout = child.stdout.take().unwrap();
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0; 256];
        while let Ok(n @ 1..) = stdout.read(&mut buf) {
            if send.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    let mut stdin = child.stdin.take().unwrap();
    for (i, answer) in answers.iter().enumerate() {
        while String::from_utf8_lossy(&seen)
            .matches("passphrase:")
            .count()
            <= i
        {
            let left = deadline.saturating_duration_since(Instant::now());
            match receive.recv_timeout(left) {
                Ok(chunk) => seen.extend(chunk),
                Err(_) => {
                    let _ = child.kill();
                    panic!(
                        "no passphrase prompt from `{command}`; saw {:?}",
                        String::from_utf8_lossy(&seen)
                    );
                }
            }
        }
        stdin.write_all(format!("{answer}\n").as_bytes()).unwrap();
    }
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            while let Ok(chunk) = receive.recv_timeout(Duration::from_millis(200)) {
                seen.extend(chunk);
            }
            return (
                status.success(),
                String::from_utf8_lossy(&seen).into_owned(),
            );
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("`{command}` did not finish");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn quoted(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

#[test]
fn passphrase_protected_keys_are_written_and_read_as_signify_does() {
    if !have_tool("signify-openbsd") || !have_tool("script") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    fs::write(d.join("Packages"), "Package: hello\n").unwrap();
    // one line: its newline is not part of the passphrase
    fs::write(d.join("pass"), "correct horse\n").unwrap();
    fs::write(d.join("wrong"), "wrong horse\n").unwrap();

    // archman's protected key (made from a secret: protection does not change the key)
    let (ok, fp, err) = archman_env(
        d,
        &[
            "keygen",
            "--seed-env",
            "S",
            "--passphrase-file",
            "pass",
            "-s",
            "p.sec",
            "-p",
            "p.pub",
        ],
        &[("S", SEED_A)],
    );
    assert!(ok, "{err}");
    let (ok, plain_fp, err) = archman_env(
        d,
        &[
            "keygen",
            "--seed-env",
            "S",
            "-s",
            "plain.sec",
            "-p",
            "plain.pub",
        ],
        &[("S", SEED_A)],
    );
    assert!(ok, "{err}");
    assert_eq!(fp, plain_fp);
    assert_ne!(
        fs::read(d.join("p.sec")).unwrap(),
        fs::read(d.join("plain.sec")).unwrap()
    );
    let (ok, _, err) = archman(d, &["sign", "-s", "p.sec", "-m", "Packages"]);
    assert!(!ok);
    assert_eq!(
        err,
        "error: p.sec: secret key is passphrase-protected; give --passphrase-file FILE\n"
    );
    let (ok, _, err) = archman(
        d,
        &[
            "sign",
            "-s",
            "p.sec",
            "--passphrase-file",
            "wrong",
            "-m",
            "Packages",
        ],
    );
    assert!(
        !ok && err.starts_with("error: p.sec: ") && err.contains("wrong passphrase"),
        "{err}"
    );
    assert!(!d.join("Packages.sig").exists());
    let (ok, _, err) = archman(
        d,
        &[
            "sign",
            "-s",
            "p.sec",
            "--passphrase-file",
            "pass",
            "-m",
            "Packages",
        ],
    );
    assert!(ok, "{err}");
    let (ok, _, err) = peer(
        d,
        "signify-openbsd",
        &["-V", "-q", "-p", "p.pub", "-m", "Packages"],
    );
    assert!(
        ok,
        "signify refused the signature by archman's protected key: {err}"
    );
    // signify reads archman's protected key with the passphrase typed on its terminal
    let (ok, seen) = with_tty(
        d,
        "signify-openbsd -S -s p.sec -m Packages -x signify.sig",
        &["correct horse"],
    );
    assert!(ok, "signify could not use archman's protected key: {seen}");
    let (ok, _, err) = archman(
        d,
        &[
            "verify",
            "-q",
            "-p",
            "p.pub",
            "-m",
            "Packages",
            "-x",
            "signify.sig",
        ],
    );
    assert!(ok, "{err}");
    let (ok, seen) = with_tty(
        d,
        "signify-openbsd -S -s p.sec -m Packages -x never.sig",
        &["wrong horse"],
    );
    assert!(!ok && seen.contains("incorrect passphrase"), "{seen}");

    // signify's protected key, read by archman with --passphrase-file
    let (ok, seen) = with_tty(
        d,
        "signify-openbsd -G -p s.pub -s s.sec",
        &["correct horse", "correct horse"],
    );
    assert!(ok, "{seen}");
    let (ok, _, err) = archman(d, &["sign", "-s", "s.sec", "-m", "Packages", "-x", "s.sig"]);
    assert!(!ok);
    assert_eq!(
        err,
        "error: s.sec: secret key is passphrase-protected; give --passphrase-file FILE\n"
    );
    let (ok, _, err) = archman(
        d,
        &[
            "sign",
            "-s",
            "s.sec",
            "--passphrase-file",
            "pass",
            "-m",
            "Packages",
            "-x",
            "s.sig",
        ],
    );
    assert!(ok, "{err}");
    let (ok, _, err) = peer(
        d,
        "signify-openbsd",
        &["-V", "-q", "-p", "s.pub", "-m", "Packages", "-x", "s.sig"],
    );
    assert!(ok, "{err}");

    // sign-package and key export take --passphrase-file too
    let src = d.join("src");
    fs::create_dir_all(src.join("CONTROL")).unwrap();
    fs::write(
        src.join("CONTROL/control"),
        "Package: hello\nVersion: 1.0\nArchitecture: all\nDescription: hello\n",
    )
    .unwrap();
    let (ok, pkg, err) = run(Command::new(bin("archman"))
        .current_dir(d)
        .args(["build", "src", "."])
        .env("SOURCE_DATE_EPOCH", "1795315200"));
    assert!(ok, "{err}");
    let pkg = pkg.trim_end();
    let (ok, _, err) = archman(d, &["sign-package", "-s", "s.sec", pkg]);
    assert!(
        !ok && err.contains("passphrase-protected; give --passphrase-file"),
        "{err}"
    );
    let (ok, _, err) = archman(
        d,
        &[
            "sign-package",
            "-s",
            "s.sec",
            "--passphrase-file",
            "pass",
            pkg,
        ],
    );
    assert!(ok, "{err}");
    let (ok, _, err) = archman(d, &["verify-package", "-q", "-p", "s.pub", pkg]);
    assert!(ok, "{err}");
    let (ok, _, err) = archman(d, &["key", "export", "--pem", "-s", "p.sec", "-o", "p.pem"]);
    assert!(!ok && err.contains("passphrase-protected"), "{err}");
    let (ok, _, err) = archman(
        d,
        &[
            "key",
            "export",
            "--pem",
            "-s",
            "p.sec",
            "--passphrase-file",
            "pass",
            "-o",
            "p.pem",
        ],
    );
    assert!(ok && err.is_empty(), "{err}");
    let (ok, back, err) = archman(
        d,
        &[
            "keygen",
            "--import-pem",
            "p.pem",
            "-s",
            "q.sec",
            "-p",
            "q.pub",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(back, fp);
    assert_eq!(
        fs::read(d.join("q.sec")).unwrap(),
        fs::read(d.join("plain.sec")).unwrap()
    );
}

#[test]
fn ask_reads_the_passphrase_twice_on_the_terminal_only() {
    if !have_tool("signify-openbsd") || !have_tool("script") || !have_tool("setsid") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let archman_bin = quoted(&bin("archman"));
    fs::write(d.join("Packages"), "Package: hello\n").unwrap();
    let (ok, seen) = with_tty(
        d,
        &format!("{archman_bin} keygen --ask -s a.sec -p a.pub"),
        &["battery staple", "battery staple"],
    );
    assert!(ok, "{seen}");
    assert!(seen.contains("confirm passphrase:"), "{seen}");
    assert!(
        !seen.contains("battery"),
        "the passphrase was echoed: {seen}"
    );
    fs::write(d.join("pass"), "battery staple").unwrap();
    let (ok, _, err) = archman(d, &["sign", "-s", "a.sec", "-m", "Packages"]);
    assert!(!ok && err.contains("passphrase-protected"), "{err}");
    let (ok, _, err) = archman(
        d,
        &[
            "sign",
            "-s",
            "a.sec",
            "--passphrase-file",
            "pass",
            "-m",
            "Packages",
        ],
    );
    assert!(ok, "{err}");
    let (ok, _, err) = peer(
        d,
        "signify-openbsd",
        &["-V", "-q", "-p", "a.pub", "-m", "Packages"],
    );
    assert!(ok, "{err}");

    // two different answers: nothing written
    let (ok, seen) = with_tty(
        d,
        &format!("{archman_bin} keygen --ask -s b.sec -p b.pub"),
        &["battery staple", "battery stable"],
    );
    assert!(!ok);
    assert!(
        seen.contains("--ask: the passphrases differ; no key was written"),
        "{seen}"
    );
    assert!(!d.join("b.sec").exists() && !d.join("b.pub").exists());

    // no terminal at all (a new session has none): an error, not a hang
    let (ok, _, err) = run(Command::new("setsid")
        .args(["-w"])
        .arg(bin("archman"))
        .args(["keygen", "--ask", "-s", "c.sec", "-p", "c.pub"])
        .current_dir(d)
        .stdin(Stdio::null()));
    assert!(!ok);
    assert!(
        err.starts_with("error: --ask: no terminal to ask on (/dev/tty: "),
        "{err}"
    );
    assert!(!d.join("c.sec").exists());
}
