//! `feeds::usign` against the real world: signatures and keys from real opkg feeds and
//! OpenWrt's key set, and the `signify-openbsd` binary in both directions.
use e2e as common;

use std::fs;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use feeds::usign::{Error, Fingerprint, KeyDir, PublicKey, SecretKey, Signature, VerifyError};

/// `sig` with byte `at` of its decoded blob flipped, re-encoded with the same comment.
fn tampered(sig: &Signature, at: usize) -> Signature {
    let text = String::from_utf8(sig.to_file_bytes()).unwrap();
    let (comment, data) = text.split_once('\n').unwrap();
    let mut blob = BASE64.decode(data.trim_end()).unwrap();
    blob[at] ^= 0x01;
    Signature::parse(format!("{comment}\n{}\n", BASE64.encode(blob)).as_bytes()).unwrap()
}

/// Verifies a real feed signature, then shows that tampering with the message or the
/// signature fails.
fn check_real(message: &[u8], sig_path: &Path, key: &PublicKey, dir: &KeyDir) {
    let sig = Signature::read_path(sig_path).unwrap();
    key.verify(message, &sig).unwrap();
    assert_eq!(&dir.verify(message, &sig).unwrap(), key);

    for at in [0, message.len() / 2, message.len() - 1] {
        let mut bad = message.to_vec();
        bad[at] ^= 0x20;
        assert!(matches!(
            key.verify(&bad, &sig),
            Err(VerifyError::BadSignature(_))
        ));
    }
    let mut longer = message.to_vec();
    longer.push(b'\n');
    assert!(key.verify(&longer, &sig).is_err());
    for at in 10..74 {
        assert!(
            matches!(
                key.verify(message, &tampered(&sig, at)),
                Err(VerifyError::BadSignature(_))
            ),
            "signature byte {at} flipped still verifies"
        );
    }
    for at in 2..10 {
        assert!(matches!(
            key.verify(message, &tampered(&sig, at)),
            Err(VerifyError::FingerprintMismatch { .. })
        ));
    }
}

#[test]
fn real_feed_signatures_verify() {
    let Some(real) = common::real_dir() else {
        return;
    };
    let thirdparty = KeyDir::new(real.join("keys/thirdparty"));

    let feed = real.join("feeds/stangri+repo.openwrt.melmac.ca");
    let key = PublicKey::read_path(&real.join("keys/thirdparty/7ffc7517c4cc0c56")).unwrap();
    let message = fs::read(feed.join("Packages")).unwrap();
    check_real(&message, &feed.join("Packages.sig"), &key, &thirdparty);
    // a key directory without the key says so
    let sig = Signature::read_path(&feed.join("Packages.sig")).unwrap();
    let openwrt = KeyDir::new(real.join("keys/openwrt-usign"));
    assert!(matches!(
        openwrt.verify(&message, &sig),
        Err(VerifyError::NoKey { .. })
    ));

    let feed = real.join("feeds/up-n-atom+repo.openwrt.eleventwentytwo.com");
    let key = PublicKey::read_path(&feed.join("c54a05f852ed0b42")).unwrap();
    let message = fs::read(feed.join("Packages")).unwrap();
    check_real(
        &message,
        &feed.join("Packages.sig"),
        &key,
        &KeyDir::new(&feed),
    );

    let feed = real.join("feeds/ac7v4+unregulatoried");
    let key = PublicKey::read_path(&feed.join("unregulatory.pub")).unwrap();
    let mut message = Vec::new();
    flate2::read::GzDecoder::new(fs::File::open(feed.join("Packages.gz")).unwrap())
        .read_to_end(&mut message)
        .unwrap();
    assert_eq!(message, fs::read(feed.join("Packages.txt")).unwrap());
    // this key is not stored under its fingerprint: put it in a key directory that way
    let keys = tempfile::tempdir().unwrap();
    fs::copy(
        feed.join("unregulatory.pub"),
        keys.path().join(key.fingerprint().to_string()),
    )
    .unwrap();
    check_real(
        &message,
        &feed.join("Packages.sig"),
        &key,
        &KeyDir::new(keys.path()),
    );
    // signify's own comment style is read as-is
    let sig = Signature::read_path(&feed.join("Packages.sig")).unwrap();
    assert_eq!(sig.comment(), "verify with unregulatory.pub");
}

/// usign skips line 1 unread (`main.c` lines 118-128 at commit c4c72b1): a real feed's
/// signature and key verify whatever that line says, and a damaged line 2 still fails.
#[test]
fn real_files_with_another_line_1_still_verify() {
    let Some(real) = common::real_dir() else {
        return;
    };
    let feed = real.join("feeds/stangri+repo.openwrt.melmac.ca");
    let message = fs::read(feed.join("Packages")).unwrap();
    let sig = fs::read_to_string(feed.join("Packages.sig")).unwrap();
    let key = fs::read_to_string(real.join("keys/thirdparty/7ffc7517c4cc0c56")).unwrap();
    let rest = |file: &str| file.split_once('\n').unwrap().1.to_owned();
    for line1 in [
        "",
        "Untrusted comment: x",
        "<html>",
        "signed by key 7ffc7517c4cc0c56",
    ] {
        let sig = Signature::parse(format!("{line1}\n{}", rest(&sig)).as_bytes()).unwrap();
        let key = PublicKey::parse(format!("{line1}\n{}", rest(&key)).as_bytes()).unwrap();
        assert_eq!(sig.comment(), line1);
        key.verify(&message, &sig).unwrap();
    }
    // a signature byte changed (the first 'A' is past the 13 characters of "Ed" and the
    // fingerprint)
    assert!(rest(&sig).find('A').unwrap() > 13);
    let damaged = format!("x\n{}", rest(&sig).replacen('A', "B", 1));
    let damaged = Signature::parse(damaged.as_bytes()).unwrap();
    let key = PublicKey::read_path(&real.join("keys/thirdparty/7ffc7517c4cc0c56")).unwrap();
    assert!(matches!(
        key.verify(&message, &damaged),
        Err(VerifyError::BadSignature(_))
    ));
}

#[test]
fn real_keys_parse_and_match_their_names() {
    let Some(real) = common::real_dir() else {
        return;
    };
    let mut checked = 0;
    for dir in ["keys/openwrt-usign", "keys/thirdparty"] {
        let dir = real.join(dir);
        let mut named = 0;
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let key = PublicKey::read_path(&path)
                .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
            // byte-exact re-encoding
            assert_eq!(key.to_file_bytes(), fs::read(&path).unwrap());
            let name = path.file_name().unwrap().to_str().unwrap();
            if let Ok(fp) = name.parse::<Fingerprint>() {
                assert_eq!(key.fingerprint().to_string(), name, "{}", path.display());
                assert_eq!(fp, key.fingerprint());
                assert_eq!(KeyDir::new(&dir).find(fp).unwrap(), key);
                named += 1;
            }
            checked += 1;
        }
        assert!(named > 0, "no keys in {}", dir.display());
        assert_eq!(KeyDir::new(&dir).keys().unwrap().len(), named);
    }
    assert!(checked >= 20, "only {checked} keys");

    // every real feed signature parses
    for entry in fs::read_dir(real.join("feeds")).unwrap() {
        let sig = entry.unwrap().path().join("Packages.sig");
        if sig.exists() {
            Signature::read_path(&sig).unwrap_or_else(|err| panic!("{}: {err}", sig.display()));
        }
    }
}

fn signify(dir: &Path, args: &[&str]) -> Output {
    Command::new("signify-openbsd")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run signify-openbsd")
}

fn ok(output: Output) -> Output {
    assert!(
        output.status.success(),
        "signify-openbsd failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[test]
fn signify_verifies_our_signatures() {
    if !common::have_tool("signify-openbsd") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (secret, public) = SecretKey::generate(None).unwrap();
    secret.write_path(&dir.join("k.sec"), None, false).unwrap();
    public.write_path(&dir.join("k.pub")).unwrap();
    let message = b"Package: demo\nVersion: 1.0\n\n";
    fs::write(dir.join("msg"), message).unwrap();
    secret
        .sign(message)
        .unwrap()
        .write_path(&dir.join("msg.sig"))
        .unwrap();

    let out = ok(signify(
        dir,
        &["-V", "-p", "k.pub", "-m", "msg", "-x", "msg.sig"],
    ));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Signature Verified\n");
    let out = ok(signify(
        dir,
        &["-V", "-q", "-p", "k.pub", "-m", "msg", "-x", "msg.sig"],
    ));
    assert!(out.stdout.is_empty());

    // signify signs with our secret key file, and gets our (deterministic) signature
    ok(signify(
        dir,
        &["-S", "-s", "k.sec", "-m", "msg", "-x", "theirs.sig"],
    ));
    let theirs = Signature::read_path(&dir.join("theirs.sig")).unwrap();
    assert_eq!(theirs.as_bytes(), secret.sign(message).unwrap().as_bytes());

    // a tampered message fails
    fs::write(dir.join("msg"), b"Package: demo\nVersion: 1.1\n\n").unwrap();
    let out = signify(
        dir,
        &["-V", "-q", "-p", "k.pub", "-m", "msg", "-x", "msg.sig"],
    );
    assert!(!out.status.success());
    // and so does another key
    fs::write(dir.join("msg"), message).unwrap();
    let (_, other) = SecretKey::generate(None).unwrap();
    other.write_path(&dir.join("other.pub")).unwrap();
    let out = signify(
        dir,
        &["-V", "-q", "-p", "other.pub", "-m", "msg", "-x", "msg.sig"],
    );
    assert!(!out.status.success());
}

#[test]
fn we_read_signify_keys_and_signatures() {
    if !common::have_tool("signify-openbsd") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    ok(signify(dir, &["-G", "-n", "-p", "s.pub", "-s", "s.sec"]));
    let message = b"signed by signify\n";
    fs::write(dir.join("msg"), message).unwrap();
    ok(signify(
        dir,
        &["-S", "-s", "s.sec", "-m", "msg", "-x", "msg.sig"],
    ));

    let public = PublicKey::read_path(&dir.join("s.pub")).unwrap();
    let secret = SecretKey::read_path(&dir.join("s.sec"), None).unwrap();
    let sig = Signature::read_path(&dir.join("msg.sig")).unwrap();
    assert_eq!(public.comment(), "signify public key");
    assert_eq!(secret.comment(), "signify secret key");
    assert_eq!(sig.comment(), "verify with s.pub");
    assert_eq!(secret.public_key().as_bytes(), public.as_bytes());
    assert_eq!(secret.fingerprint(), public.fingerprint());
    public.verify(message, &sig).unwrap();
    assert!(public.verify(b"signed by signify?\n", &sig).is_err());

    // our signature with signify's secret key: identical, and signify verifies it
    let ours = secret.sign(message).unwrap();
    assert_eq!(ours.as_bytes(), sig.as_bytes());
    ours.write_path(&dir.join("ours.sig")).unwrap();
    ok(signify(
        dir,
        &["-V", "-q", "-p", "s.pub", "-m", "msg", "-x", "ours.sig"],
    ));
}

#[test]
fn encrypted_secret_key_is_a_typed_error() {
    let (secret, _) = SecretKey::generate(None).unwrap();
    let text = String::from_utf8(secret.to_file_bytes()).unwrap();
    let (comment, data) = text.split_once('\n').unwrap();
    let mut blob = BASE64.decode(data.trim_end()).unwrap();
    blob[4..8].copy_from_slice(&42u32.to_be_bytes());
    let file = format!("{comment}\n{}\n", BASE64.encode(blob));
    let err = SecretKey::parse(file.as_bytes(), None).unwrap_err();
    assert!(matches!(err, Error::Encrypted { rounds: 42 }));
    assert_eq!(
        err.to_string(),
        "secret key is passphrase-protected (kdfrounds 42)"
    );

    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("k.sec");
    fs::write(&path, &file).unwrap();
    let err = SecretKey::read_path(&path, None).unwrap_err();
    assert!(matches!(err.root(), Error::Encrypted { rounds: 42 }));
}

/// Runs `command` under `script` (a pseudo-terminal, which signify needs to read a
/// passphrase), typing `passphrase` at each of `prompts` "passphrase:" prompts.
fn with_tty(dir: &Path, command: &str, passphrase: &str, prompts: usize) {
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
    for prompt in 1..=prompts {
        while String::from_utf8_lossy(&seen)
            .matches("passphrase:")
            .count()
            < prompt
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
        stdin
            .write_all(format!("{passphrase}\n").as_bytes())
            .unwrap();
    }
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "`{command}` failed: {seen:?}");
            return;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("`{command}` did not finish");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn passphrase_protected_keys_interoperate() {
    if !common::have_tool("signify-openbsd") || !common::have_tool("script") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let message = b"protected\n";
    fs::write(dir.join("msg"), message).unwrap();

    // signify's protected key, read by us
    with_tty(
        dir,
        "signify-openbsd -G -p s.pub -s s.sec",
        "correct horse",
        2,
    );
    let path = dir.join("s.sec");
    let err = SecretKey::read_path(&path, None).unwrap_err();
    assert!(matches!(err.root(), Error::Encrypted { rounds: 42 }));
    let err = SecretKey::read_path(&path, Some(b"wrong horse")).unwrap_err();
    assert!(matches!(err.root(), Error::WrongPassphrase));
    let secret = SecretKey::read_path(&path, Some(b"correct horse")).unwrap();
    let public = PublicKey::read_path(&dir.join("s.pub")).unwrap();
    assert_eq!(secret.public_key().as_bytes(), public.as_bytes());
    secret
        .sign(message)
        .unwrap()
        .write_path(&dir.join("a.sig"))
        .unwrap();
    ok(signify(
        dir,
        &["-V", "-q", "-p", "s.pub", "-m", "msg", "-x", "a.sig"],
    ));

    // our protected key, used by signify
    let (ours, ours_pub) = SecretKey::generate(None).unwrap();
    ours.write_path(&dir.join("o.sec"), Some(b"battery staple"), false)
        .unwrap();
    ours_pub.write_path(&dir.join("o.pub")).unwrap();
    with_tty(
        dir,
        "signify-openbsd -S -s o.sec -m msg -x b.sig",
        "battery staple",
        1,
    );
    let sig = Signature::read_path(&dir.join("b.sig")).unwrap();
    ours_pub.verify(message, &sig).unwrap();
    assert_eq!(sig.as_bytes(), ours.sign(message).unwrap().as_bytes());
}
