//! `archman usign …` through the real binary: usign's flags, output streams and exit codes,
//! known answers in usign's exact file layout, real usign- and signify-made files from
//! `../shared/real`, and the `signify-openbsd` binary in both directions.
//!
//! No real `usign` binary is used: Debian does not package it (`apt-cache policy usign` finds
//! no candidate), so the byte-level expectations come from usign's `main.c` and from files
//! that real usign made.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use archman::usign_compat::USAGE;
use feeds::usign::{Fingerprint, SecretKey};

/// Runs `archman usign <args>` in `dir` with `stdin`.
fn usign_in(dir: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_archman"))
        .arg("usign")
        .args(args)
        .current_dir(dir)
        .env_remove("POSIXLY_CORRECT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run archman");
    let mut input = child.stdin.take().unwrap();
    // a command that does not read stdin may exit first: ignore a broken pipe
    let _ = input.write_all(stdin);
    drop(input);
    child.wait_with_output().expect("wait for archman")
}

fn usign(dir: &Path, args: &[&str]) -> Output {
    usign_in(dir, args, b"")
}

/// (exit status, stdout, stderr)
fn result(output: &Output) -> (i32, String, String) {
    (
        output.status.code().expect("exit status"),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn ok(output: Output) -> Output {
    assert!(output.status.success(), "failed: {:?}", result(&output));
    output
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn first_line(path: &Path) -> String {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_owned()
}

fn second_line(path: &Path) -> String {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_owned()
}

fn signify(dir: &Path, args: &[&str]) -> Output {
    Command::new("signify-openbsd")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run signify-openbsd")
}

/// RFC 8032 section 7.1 TEST 1's key with a fingerprint that has a leading zero nibble.
fn rfc_key(dir: &Path) -> Fingerprint {
    let seed: [u8; 32] = [
        0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec, 0x2c,
        0xc4, 0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae,
        0x7f, 0x60,
    ];
    let fp = Fingerprint::new([0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef]);
    let key = SecretKey::from_seed(seed, fp).unwrap();
    key.write_path(&dir.join("rfc.sec"), None, false).unwrap();
    key.public_key().write_path(&dir.join("rfc.pub")).unwrap();
    fp
}

#[test]
fn generate_sign_verify_fingerprint_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let out = ok(usign(dir, &["-G", "-s", "k.sec", "-p", "k.pub"]));
    assert!(out.stdout.is_empty() && out.stderr.is_empty());
    let mode = fs::metadata(dir.join("k.sec"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // -F prints usign's %PRIx64 (no leading zeros), the same from all three files
    let fp = stdout(&ok(usign(dir, &["-F", "-p", "k.pub"])));
    let fp = fp.strip_suffix('\n').unwrap().to_owned();
    assert!(fp.len() <= 16 && !fp.starts_with('0'), "{fp}");
    assert!(
        fp.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    assert_eq!(
        stdout(&ok(usign(dir, &["-F", "-sk.sec"]))),
        format!("{fp}\n")
    );
    assert_eq!(
        first_line(&dir.join("k.sec")),
        format!("untrusted comment: private key {fp}")
    );
    assert_eq!(
        first_line(&dir.join("k.pub")),
        format!("untrusted comment: public key {fp}")
    );

    fs::write(dir.join("Packages"), b"Package: hello\nVersion: 1.0\n\n").unwrap();
    let out = ok(usign(dir, &["-S", "-m", "Packages", "-s", "k.sec"]));
    assert!(out.stdout.is_empty() && out.stderr.is_empty());
    assert_eq!(
        first_line(&dir.join("Packages.sig")),
        format!("untrusted comment: signed by key {fp}")
    );
    assert_eq!(
        stdout(&ok(usign(dir, &["-F", "-x", "Packages.sig"]))),
        format!("{fp}\n")
    );
    // -F of -m reads <message>.sig
    assert_eq!(
        stdout(&ok(usign(dir, &["-F", "-m", "Packages"]))),
        format!("{fp}\n")
    );

    // -V: "OK" on stderr, nothing on stdout; clustered and attached forms too
    for args in [
        &["-V", "-m", "Packages", "-p", "k.pub"][..],
        &["-V", "-mPackages", "-pk.pub", "-xPackages.sig"],
        &["-Vp", "k.pub", "-m", "Packages"],
    ] {
        assert_eq!(
            result(&usign(dir, args)),
            (0, String::new(), "OK\n".into()),
            "{args:?}"
        );
    }
}

#[test]
fn quiet_verify_prints_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    ok(usign(dir, &["-G", "-s", "k.sec", "-p", "k.pub"]));
    fs::write(dir.join("msg"), b"hello\n").unwrap();
    ok(usign(dir, &["-S", "-m", "msg", "-s", "k.sec"]));
    for args in [
        &["-V", "-q", "-m", "msg", "-p", "k.pub"][..],
        &["-qV", "-mmsg", "-pk.pub"],
    ] {
        assert_eq!(result(&usign(dir, args)), (0, String::new(), String::new()));
    }
}

#[test]
fn tampered_message_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    ok(usign(dir, &["-G", "-s", "k.sec", "-p", "k.pub"]));
    fs::write(dir.join("msg"), b"Package: a\n").unwrap();
    ok(usign(dir, &["-S", "-m", "msg", "-s", "k.sec"]));
    fs::write(dir.join("msg"), b"Package: b\n").unwrap();
    assert_eq!(
        result(&usign(dir, &["-V", "-m", "msg", "-p", "k.pub"])),
        (1, String::new(), "verification failed\n".into())
    );
    assert_eq!(
        result(&usign(dir, &["-V", "-q", "-m", "msg", "-p", "k.pub"])),
        (1, String::new(), String::new())
    );
    // another key fails the same way
    fs::write(dir.join("msg"), b"Package: a\n").unwrap();
    ok(usign(dir, &["-G", "-s", "o.sec", "-p", "o.pub"]));
    assert_eq!(
        result(&usign(dir, &["-V", "-m", "msg", "-p", "o.pub"])),
        (1, String::new(), "verification failed\n".into())
    );
    // a damaged signature file does not decode
    let sig = fs::read_to_string(dir.join("msg.sig")).unwrap();
    fs::write(dir.join("msg.sig"), sig.replacen('\n', "\n!", 1)).unwrap();
    assert_eq!(
        result(&usign(dir, &["-V", "-q", "-m", "msg", "-p", "k.pub"])),
        (1, String::new(), "Failed to decode signature\n".into())
    );
}

#[test]
fn key_directory_lookup() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let fp = rfc_key(dir);
    fs::create_dir(dir.join("keys")).unwrap();
    fs::write(dir.join("msg"), b"feed\n").unwrap();
    ok(usign(dir, &["-S", "-m", "msg", "-s", "rfc.sec"]));

    // no key: usign's message names <dir>/<unpadded fingerprint>; -q silences it
    assert_eq!(
        result(&usign(dir, &["-V", "-m", "msg", "-P", "keys"])),
        (
            1,
            String::new(),
            "Cannot open file 'keys/123456789abcdef' for reading\n".into()
        )
    );
    assert_eq!(
        result(&usign(dir, &["-V", "-q", "-m", "msg", "-P", "keys"])),
        (1, String::new(), String::new())
    );
    // usign's name
    fs::copy(dir.join("rfc.pub"), dir.join("keys/123456789abcdef")).unwrap();
    assert_eq!(
        result(&usign(dir, &["-V", "-m", "msg", "-P", "keys"])),
        (0, String::new(), "OK\n".into())
    );
    // the zero-padded name, as OpenWrt's keyring names such keys
    fs::rename(
        dir.join("keys/123456789abcdef"),
        dir.join("keys").join(fp.to_string()),
    )
    .unwrap();
    assert_eq!(
        result(&usign(dir, &["-qV", "-m", "msg", "-P", "keys"])),
        (0, String::new(), String::new())
    );
    // -p wins over -P
    ok(usign(dir, &["-G", "-s", "o.sec", "-p", "o.pub"]));
    assert_eq!(
        usign(dir, &["-V", "-q", "-m", "msg", "-P", "keys", "-p", "o.pub"])
            .status
            .code(),
        Some(1)
    );
}

#[test]
fn usage_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let usage = || (1, String::new(), USAGE.to_owned());
    assert_eq!(result(&usign(dir, &[])), usage());
    assert_eq!(result(&usign(dir, &["-V", "-S"])), usage());
    assert_eq!(result(&usign(dir, &["-V", "-m", "msg"])), usage());
    assert_eq!(result(&usign(dir, &["-G", "-s", "k.sec"])), usage());
    assert_eq!(
        result(&usign(dir, &["-z"])),
        (
            1,
            String::new(),
            format!("usign: invalid option -- 'z'\n{USAGE}")
        )
    );
    assert_eq!(
        result(&usign(dir, &["-V", "-p", "k.pub", "-m"])),
        (
            1,
            String::new(),
            format!("usign: option requires an argument -- 'm'\n{USAGE}")
        )
    );
    assert_eq!(
        result(&usign(dir, &["-F"])),
        (
            1,
            String::new(),
            format!("Need one secret/public key or signature\n{USAGE}")
        )
    );
    assert!(USAGE.starts_with("Usage: usign <command> <options>\n"));
    // nothing was created
    assert_eq!(fs::read_dir(dir).unwrap().count(), 0);
}

#[test]
fn usign_error_messages() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let say = |text: &str| (1, String::new(), format!("{text}\n"));
    assert_eq!(
        result(&usign(dir, &["-V", "-m", "msg", "-p", "k.pub"])),
        say("Cannot open file 'msg' for reading")
    );
    assert_eq!(
        result(&usign(dir, &["-V", "-q", "-m", "msg", "-p", "k.pub"])),
        (1, String::new(), String::new())
    );
    assert_eq!(
        result(&usign(dir, &["-S", "-m", "msg", "-s", "k.sec"])),
        say("Cannot open file 'k.sec' for reading")
    );
    assert_eq!(
        result(&usign(dir, &["-F", "-p", "k.pub"])),
        say("Cannot open file 'k.pub' for reading")
    );
    ok(usign(dir, &["-G", "-s", "k.sec", "-p", "k.pub"]));
    assert_eq!(
        result(&usign(dir, &["-S", "-m", "msg", "-s", "k.sec"])),
        say("Cannot open message file: No such file or directory")
    );
    fs::write(dir.join("msg"), b"m").unwrap();
    assert_eq!(
        result(&usign(dir, &["-S", "-m", "msg", "-s", "k.pub"])),
        say("Failed to decode secret key")
    );
    ok(usign(dir, &["-S", "-m", "msg", "-s", "k.sec"]));
    assert_eq!(
        result(&usign(dir, &["-V", "-m", "msg", "-p", "k.sec"])),
        say("Failed to decode public key")
    );
    fs::write(dir.join("short"), b"untrusted comment: no newline").unwrap();
    assert_eq!(
        result(&usign(dir, &["-V", "-q", "-m", "msg", "-p", "short"])),
        say("Premature end of file")
    );
    // -F of a file that does not decode: silent failure
    assert_eq!(
        result(&usign(dir, &["-F", "-p", "k.sec"])),
        (1, String::new(), String::new())
    );
    assert_eq!(
        result(&usign(
            dir,
            &["-S", "-m", "msg", "-s", "k.sec", "-x", "no/such/dir.sig"]
        )),
        say("Cannot open file 'no/such/dir.sig' for writing")
    );
    assert_eq!(
        result(&usign(dir, &["-V", "-m", "-", "-p", "k.pub"])),
        say("Need signature file when reading message from stdin")
    );
}

#[test]
fn stdin_and_stdout_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    ok(usign(dir, &["-G", "-s", "k.sec", "-p", "k.pub"]));
    fs::write(dir.join("msg"), b"to stdout\n").unwrap();
    let sig = ok(usign(dir, &["-S", "-m", "msg", "-s", "k.sec", "-x", "-"])).stdout;
    assert!(sig.starts_with(b"untrusted comment: signed by key "));
    assert!(!dir.join("msg.sig").exists());
    fs::write(dir.join("out.sig"), &sig).unwrap();
    let verify = ["-V", "-m", "-", "-x", "out.sig", "-p", "k.pub"];
    assert_eq!(
        result(&usign_in(dir, &verify, b"to stdout\n")),
        (0, String::new(), "OK\n".into())
    );
    assert_eq!(
        usign_in(dir, &verify, b"to stdout?\n").status.code(),
        Some(1)
    );
    // usign maps the message of -S by name: `-` is a file called "-"
    fs::write(dir.join("-"), b"dash\n").unwrap();
    ok(usign_in(
        dir,
        &["-S", "-m", "-", "-s", "k.sec", "-x", "dash.sig"],
        b"stdin\n",
    ));
    let verify = ["-V", "-q", "-m", "-", "-x", "dash.sig", "-p", "k.pub"];
    assert_eq!(usign_in(dir, &verify, b"dash\n").status.code(), Some(0));
    assert_eq!(usign_in(dir, &verify, b"stdin\n").status.code(), Some(1));
}

#[test]
fn secret_keys_are_never_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    ok(usign(dir, &["-G", "-s", "k.sec", "-p", "k.pub"]));
    let secret = fs::read(dir.join("k.sec")).unwrap();
    let public = fs::read(dir.join("k.pub")).unwrap();

    // an existing -s: refused, and nothing is written (usign would truncate it)
    assert_eq!(
        result(&usign(dir, &["-G", "-s", "k.sec", "-p", "new.pub"])),
        (
            1,
            String::new(),
            "Refusing to overwrite the existing secret key file 'k.sec'\n".into()
        )
    );
    assert!(!dir.join("new.pub").exists());
    // -p or -x naming a secret key file: refused
    assert_eq!(
        result(&usign(dir, &["-G", "-s", "new.sec", "-p", "k.sec"])),
        (
            1,
            String::new(),
            "Refusing to write the public key over the secret key file 'k.sec'\n".into()
        )
    );
    assert!(!dir.join("new.sec").exists());
    assert_eq!(
        usign(dir, &["-G", "-s", "same", "-p", "same"])
            .status
            .code(),
        Some(1)
    );
    assert!(!dir.join("same").exists());
    fs::write(dir.join("msg"), b"m").unwrap();
    assert_eq!(
        result(&usign(
            dir,
            &["-S", "-m", "msg", "-s", "k.sec", "-x", "k.sec"]
        )),
        (
            1,
            String::new(),
            "Refusing to write the signature over the secret key file 'k.sec'\n".into()
        )
    );
    assert_eq!(fs::read(dir.join("k.sec")).unwrap(), secret);

    // an existing public key alone is replaced, as usign does
    ok(usign(dir, &["-G", "-s", "k2.sec", "-p", "k.pub"]));
    assert_ne!(fs::read(dir.join("k.pub")).unwrap(), public);
    let fp = stdout(&ok(usign(dir, &["-F", "-s", "k2.sec"])));
    assert_eq!(stdout(&ok(usign(dir, &["-F", "-p", "k.pub"]))), fp);
}

#[test]
fn comments() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    ok(usign(
        dir,
        &["-G", "-c", "feed key", "-s", "k.sec", "-p", "k.pub"],
    ));
    assert_eq!(
        first_line(&dir.join("k.sec")),
        "untrusted comment: feed key"
    );
    assert_eq!(
        first_line(&dir.join("k.pub")),
        "untrusted comment: feed key"
    );
    fs::write(dir.join("msg"), b"m").unwrap();
    // usign applies -c to signatures too
    ok(usign(
        dir,
        &["-S", "-m", "msg", "-s", "k.sec", "-cverify with k.pub"],
    ));
    assert_eq!(
        first_line(&dir.join("msg.sig")),
        "untrusted comment: verify with k.pub"
    );
    ok(usign(dir, &["-V", "-q", "-m", "msg", "-p", "k.pub"]));
    // an empty comment is written as usign writes it
    ok(usign(dir, &["-S", "-m", "msg", "-s", "k.sec", "-c", ""]));
    assert_eq!(first_line(&dir.join("msg.sig")), "untrusted comment: ");
    ok(usign(dir, &["-V", "-q", "-m", "msg", "-p", "k.pub"]));
    // a line break would make the file unreadable
    assert_eq!(
        result(&usign(
            dir,
            &["-S", "-m", "msg", "-s", "k.sec", "-c", "a\nb"]
        )),
        (
            1,
            String::new(),
            "Comment must not contain a line break\n".into()
        )
    );
}

/// usign's exact layout for a known key: `%PRIx64` fingerprints in the comment and from -F.
#[test]
fn known_answer_in_usign_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    rfc_key(dir);
    // RFC 8032 TEST 1: the signature of the empty message
    fs::write(dir.join("empty"), b"").unwrap();
    ok(usign(dir, &["-S", "-m", "empty", "-s", "rfc.sec"]));
    assert_eq!(
        fs::read_to_string(dir.join("empty.sig")).unwrap(),
        "untrusted comment: signed by key 123456789abcdef\n\
         RWQBI0VniavN7+VWQwDDYKxykIbizIBugoqEh38euOXZdNhz4GUiSQFVX7iCFZCjO6zGHjlwHPm0a9Jb9fBZW74kZVFBQ456EAs=\n"
    );
    for args in [
        &["-F", "-s", "rfc.sec"][..],
        &["-F", "-p", "rfc.pub"],
        &["-F", "-x", "empty.sig"],
    ] {
        assert_eq!(
            result(&usign(dir, args)),
            (0, "123456789abcdef\n".into(), String::new()),
            "{args:?}"
        );
    }
    assert_eq!(
        result(&usign(dir, &["-V", "-m", "empty", "-p", "rfc.pub"])),
        (0, String::new(), "OK\n".into())
    );
}

/// Files made by real usign and real signify, from `../shared/real`.
#[test]
fn real_usign_and_signify_files() {
    let Some(real) = e2e::real_dir() else {
        return;
    };
    let feed = real.join("feeds/stangri+repo.openwrt.melmac.ca");
    let keys = real.join("keys/thirdparty");
    let (feed_s, keys_s) = (feed.to_str().unwrap(), keys.to_str().unwrap());
    let packages = format!("{feed_s}/Packages");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // opkg's call: usign -V -q -m Packages -P /etc/opkg/keys (-x defaults to Packages.sig)
    assert_eq!(
        result(&usign(dir, &["-V", "-m", &packages, "-P", keys_s])),
        (0, String::new(), "OK\n".into())
    );
    assert_eq!(
        result(&usign(dir, &["-F", "-m", &packages])),
        (0, "7ffc7517c4cc0c56\n".into(), String::new())
    );
    let mut tampered = fs::read(&packages).unwrap();
    tampered.push(b'\n');
    fs::write(dir.join("Packages"), tampered).unwrap();
    let sig = format!("{feed_s}/Packages.sig");
    assert_eq!(
        result(&usign(
            dir,
            &["-V", "-m", "Packages", "-x", &sig, "-P", keys_s]
        )),
        (1, String::new(), "verification failed\n".into())
    );

    // OpenWrt's key 0b26f36ae0f4106d: usign prints it without the leading zero
    let key = real.join("keys/openwrt-usign/0b26f36ae0f4106d");
    assert_eq!(
        stdout(&ok(usign(dir, &["-F", "-p", key.to_str().unwrap()]))),
        "b26f36ae0f4106d\n"
    );

    // a feed signed by signify (comment "verify with unregulatory.pub")
    let feed = real.join("feeds/ac7v4+unregulatoried");
    let (message, sig, key) = (
        format!("{}/Packages.txt", feed.display()),
        format!("{}/Packages.sig", feed.display()),
        format!("{}/unregulatory.pub", feed.display()),
    );
    assert_eq!(
        result(&usign(dir, &["-V", "-m", &message, "-x", &sig, "-p", &key])),
        (0, String::new(), "OK\n".into())
    );
}

#[test]
fn signify_interop() {
    if !e2e::have_tool("signify-openbsd") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let message = b"Package: hello\nVersion: 1.0\n\n";
    fs::write(dir.join("msg"), message).unwrap();

    // signify verifies `archman usign -S`
    ok(usign(dir, &["-G", "-s", "k.sec", "-p", "k.pub"]));
    ok(usign(dir, &["-S", "-m", "msg", "-s", "k.sec"]));
    let out = ok(signify(
        dir,
        &["-V", "-p", "k.pub", "-m", "msg", "-x", "msg.sig"],
    ));
    assert_eq!(stdout(&out), "Signature Verified\n");
    // signify signs with our key and gets our (deterministic) signature
    ok(signify(
        dir,
        &["-S", "-s", "k.sec", "-m", "msg", "-x", "theirs.sig"],
    ));
    assert_eq!(
        second_line(&dir.join("theirs.sig")),
        second_line(&dir.join("msg.sig"))
    );

    // `archman usign -V` verifies signify's signature with signify's key
    ok(signify(dir, &["-G", "-n", "-p", "s.pub", "-s", "s.sec"]));
    ok(signify(
        dir,
        &["-S", "-s", "s.sec", "-m", "msg", "-x", "s.sig"],
    ));
    assert_eq!(
        result(&usign(
            dir,
            &["-V", "-m", "msg", "-x", "s.sig", "-p", "s.pub"]
        )),
        (0, String::new(), "OK\n".into())
    );
    // and signs with signify's secret key, byte for byte as signify does
    ok(usign(
        dir,
        &["-S", "-m", "msg", "-s", "s.sec", "-x", "ours.sig"],
    ));
    assert_eq!(
        second_line(&dir.join("ours.sig")),
        second_line(&dir.join("s.sig"))
    );
    let fp = stdout(&ok(usign(dir, &["-F", "-p", "s.pub"])));
    assert_eq!(stdout(&ok(usign(dir, &["-F", "-x", "s.sig"]))), fp);
    assert_eq!(
        first_line(&dir.join("ours.sig")),
        format!("untrusted comment: signed by key {}", fp.trim_end())
    );
    // a key directory named the usign way holds signify's key too
    fs::create_dir(dir.join("keys")).unwrap();
    fs::copy(dir.join("s.pub"), dir.join("keys").join(fp.trim_end())).unwrap();
    ok(usign(
        dir,
        &["-V", "-q", "-m", "msg", "-x", "s.sig", "-P", "keys"],
    ));
    // a changed message fails for both tools
    fs::write(dir.join("msg"), b"Package: hello\nVersion: 1.1\n\n").unwrap();
    assert_eq!(
        result(&usign(
            dir,
            &["-V", "-m", "msg", "-x", "s.sig", "-p", "s.pub"]
        )),
        (1, String::new(), "verification failed\n".into())
    );
    assert!(
        !signify(
            dir,
            &["-V", "-q", "-p", "k.pub", "-m", "msg", "-x", "msg.sig"]
        )
        .status
        .success()
    );
}
