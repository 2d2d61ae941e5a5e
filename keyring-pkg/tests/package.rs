//! The keyring package: build → read back → accept, reproducibility, the container opkg-lede
//! installs, bounded and path-checked reading, and the key files against real signify.

// A test says on stdout what it skipped.
#![allow(clippy::print_stdout)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::process::Command;

use common::*;
use feeds::build::PackageBuilder;
use feeds::package::{Container, DataTar, ReadOptions, read_package};
use feeds::usign::SecretKey;
use keyring_pkg::accept::{Refusal, accept_chain, accept_initial};
use keyring_pkg::package::{
    BuildError, ReadError, build_package, read_keyring_package, read_keyring_package_from,
};
use keyring_pkg::{Role, SignedKeyring, Status};

struct Fixture {
    root: SecretKey,
    a: SecretKey,
    b: SecretKey,
    chain: Vec<SignedKeyring>,
}

/// Serial 1 trusts feed key A; serial 2 adds B; serial 3 revokes A.
fn fixture() -> Fixture {
    let [root, a, b] = [key(), key(), key()];
    let k1 = keyring(1, &[&root], &[&a]);
    let k2 = next(&k1, |k| add(k, &b, Role::Feed));
    let k3 = next(&k2, |k| set_status(k, &a, Status::Revoked));
    let chain = vec![
        signed(&k1, &[&root]),
        signed(&k2, &[&root]),
        signed(&k3, &[&root]),
    ];
    Fixture { root, a, b, chain }
}

fn history(chain: &[SignedKeyring]) -> BTreeMap<u64, SignedKeyring> {
    chain.iter().map(|k| (k.serial(), k.clone())).collect()
}

fn data_entries(bytes: &[u8]) -> Vec<(String, u64, u32, u64, u64)> {
    let mut out = Vec::new();
    let mut visit = |tar: &mut DataTar<'_>| {
        tar.for_each_entry(|e| -> Result<(), std::io::Error> {
            let h = e.header();
            out.push((
                String::from_utf8_lossy(&e.path_bytes()).into_owned(),
                h.mtime()?,
                h.mode()?,
                h.uid()?,
                h.gid()?,
            ));
            Ok(())
        })
        .map(|_| ())
    };
    read_package(bytes, &ReadOptions::default(), Some(&mut visit)).unwrap();
    out
}

#[test]
fn package_is_built_read_back_and_accepted() {
    let f = fixture();
    let built = build_package(&f.chain[2], &history(&f.chain[..2]), 1_700_000_000, NOW).unwrap();
    assert_eq!(built.file_name, "example-keyring_3_all.ipk");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(&built.file_name);
    fs::write(&path, &built.bytes).unwrap();
    let pkg = read_keyring_package(&path).unwrap();
    assert_eq!(pkg.name, "example");
    assert_eq!(pkg.current, f.chain[2]);
    assert_eq!(pkg.history, history(&f.chain[..2]));
    // Only the active feed key B is installed for opkg.
    assert_eq!(
        pkg.key_files.keys().cloned().collect::<Vec<_>>(),
        names_of(&[&f.b])
    );
    // A client at serial 1 walks 2 and 3 from the package; a new client bootstraps on it.
    let v = accept_chain(&f.chain[0], pkg.candidates(), NOW).unwrap();
    assert_eq!(v.steps(), &[2, 3]);
    accept_initial(&pkg.current, Some(f.root.fingerprint()), NOW).unwrap();
}

#[test]
fn package_is_a_reproducible_gzipped_tar_ipk_with_sorted_root_owned_entries() {
    let f = fixture();
    let h = history(&f.chain[..2]);
    let one = build_package(&f.chain[2], &h, 1_700_000_000, NOW).unwrap();
    let two = build_package(&f.chain[2], &h, 1_700_000_000, NOW).unwrap();
    assert_eq!(one, two, "same inputs, same bytes");
    let other_time = build_package(&f.chain[2], &h, 1_700_000_001, NOW).unwrap();
    assert_ne!(one.bytes, other_time.bytes, "the mtime argument is used");
    assert_eq!(&one.bytes[..2], &[0x1f, 0x8b], "gzipped tar container");
    let pkg = read_package(&one.bytes[..], &ReadOptions::default(), None).unwrap();
    assert_eq!(pkg.container, Container::TarGz);
    assert_eq!(pkg.name(), "example-keyring");
    assert_eq!(pkg.version(), "3");
    assert_eq!(pkg.architecture(), "all");
    let entries = data_entries(&one.bytes);
    let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
    let b: Vec<String> = names_of(&[&f.b])
        .iter()
        .map(|n| format!("./etc/opkg/keys/{n}"))
        .collect();
    let mut expected = vec!["./", "./etc/", "./etc/opkg/", "./etc/opkg/keys/"];
    expected.extend(b.iter().map(String::as_str));
    expected.extend([
        "./usr/",
        "./usr/share/",
        "./usr/share/keyrings/",
        "./usr/share/keyrings/example/",
        "./usr/share/keyrings/example/history/",
        "./usr/share/keyrings/example/history/1.keyring",
        "./usr/share/keyrings/example/history/1.sig",
        "./usr/share/keyrings/example/history/2.keyring",
        "./usr/share/keyrings/example/history/2.sig",
        "./usr/share/keyrings/example/keyring",
        "./usr/share/keyrings/example/keyring.sig",
    ]);
    assert_eq!(names, expected);
    for (name, mtime, mode, uid, gid) in &entries {
        assert_eq!((*mtime, *uid, *gid), (1_700_000_000, 0, 0), "{name}");
        let want = if name.ends_with('/') { 0o755 } else { 0o644 };
        assert_eq!(mode & 0o7777, want, "{name}");
    }
}

#[test]
fn key_files_are_byte_identical_to_usign_public_key_files() {
    let f = fixture();
    // A feed key whose fingerprint starts with a zero nibble is installed once, under its
    // 16-digit name: the one usign -V -P looks up ("%016"PRIx64, usign main.c line 180 at
    // commit c4c72b1).
    let zero = SecretKey::from_seed([5; 32], "0b26f36ae0f4106d".parse().unwrap()).unwrap();
    let mut k = f.chain[0].keyring().clone();
    add(&mut k, &zero, Role::Feed);
    let s = signed(&k, &[&f.root]);
    let built = build_package(&s, &BTreeMap::new(), 0, NOW).unwrap();
    let pkg = read_keyring_package_from(&built.bytes[..]).unwrap();
    let mut want = names_of(&[&f.a]);
    want.push("0b26f36ae0f4106d".to_string());
    want.sort();
    assert_eq!(pkg.key_files.keys().cloned().collect::<Vec<_>>(), want);
    let mut files = Vec::new();
    let mut visit = |tar: &mut DataTar<'_>| {
        tar.for_each_entry(|e| -> Result<(), std::io::Error> {
            let path = e.path_bytes().into_owned();
            if path.ends_with(b"keys/b26f36ae0f4106d") || path.ends_with(b"keys/0b26f36ae0f4106d") {
                let mut body = Vec::new();
                e.read_to_end(&mut body)?;
                files.push(body);
            }
            Ok(())
        })
        .map(|_| ())
    };
    read_package(&built.bytes[..], &ReadOptions::default(), Some(&mut visit)).unwrap();
    // The file usign -G writes for this key: its comment pads the fingerprint too (main.c
    // line 152); line 2 is base64 of "Ed", the fingerprint and the public key of seed 05*32
    // (computed independently with Python's cryptography package).
    assert_eq!(
        files,
        [&b"untrusted comment: public key 0b26f36ae0f4106d\n\
            RWQLJvNq4PQQbW56HN0psLeP0Tr0xVmP7/TvKpcWbjym8uT7/M2AUFvx\n"[..]]
    );
}

#[test]
fn a_package_with_unpadded_key_copies_is_still_read() {
    // Packages built before keys were installed once carried a second copy of a key with a
    // leading zero nibble under its unpadded name; they remain readable.
    let f = fixture();
    let zero = SecretKey::from_seed([5; 32], "0b26f36ae0f4106d".parse().unwrap()).unwrap();
    let mut k = f.chain[0].keyring().clone();
    add(&mut k, &zero, Role::Feed);
    let s = signed(&k, &[&f.root]);
    let key = zero.public_key().to_file_bytes();
    let sig = s.signatures().to_bytes();
    let files: Vec<(&str, &[u8])> = vec![
        ("etc/opkg/keys/0b26f36ae0f4106d", &key),
        ("etc/opkg/keys/b26f36ae0f4106d", &key),
        ("usr/share/keyrings/example/keyring", s.bytes()),
        ("usr/share/keyrings/example/keyring.sig", &sig),
    ];
    let pkg = read_keyring_package_from(&crafted("example-keyring", "1", &files)[..]).unwrap();
    assert_eq!(
        pkg.key_files.keys().cloned().collect::<Vec<_>>(),
        ["0b26f36ae0f4106d", "b26f36ae0f4106d"]
    );
    // a name that is neither is refused, naming the one expected
    let files: Vec<(&str, &[u8])> = vec![
        ("etc/opkg/keys/26f36ae0f4106d", &key),
        ("usr/share/keyrings/example/keyring", s.bytes()),
        ("usr/share/keyrings/example/keyring.sig", &sig),
    ];
    let err = read_err(&crafted("example-keyring", "1", &files));
    assert!(
        err.to_string()
            .contains("holds key 0b26f36ae0f4106d, expected the file to be named 0b26f36ae0f4106d"),
        "{err}"
    );
}

#[test]
fn expired_and_retired_feed_keys_are_not_packaged() {
    let [root, a, b, c] = [key(), key(), key(), key()];
    let mut k = keyring(1, &[&root], &[&a, &b, &c]);
    k.key_mut(b.fingerprint()).unwrap().not_after = Some(NOW - 1);
    set_status(&mut k, &c, Status::Retired);
    let built = build_package(&signed(&k, &[&root]), &BTreeMap::new(), 0, NOW).unwrap();
    let pkg = read_keyring_package_from(&built.bytes[..]).unwrap();
    assert_eq!(
        pkg.key_files.keys().cloned().collect::<Vec<_>>(),
        names_of(&[&a])
    );
}

#[test]
fn build_refuses_a_keyring_failing_its_own_rules() {
    let f = fixture();
    let h = history(&f.chain[..2]);
    let unsigned = f.chain[2].clone().with_signatures(no_sigs());
    let err = build_package(&unsigned, &h, 0, NOW).unwrap_err();
    assert!(
        matches!(
            &err,
            BuildError::Refused {
                source: Refusal::PreviousThresholdNotMet { .. },
                ..
            }
        ),
        "{err}"
    );
    let err = build_package(&f.chain[2], &h, 0, NOW + 2 * YEAR).unwrap_err();
    assert!(err.to_string().contains("expired on"), "{err}");
}

#[test]
fn build_refuses_an_incomplete_or_unchained_history() {
    let f = fixture();
    let mut h = history(&f.chain[..2]);
    h.remove(&1);
    let err = build_package(&f.chain[2], &h, 0, NOW).unwrap_err();
    assert_eq!(
        err.to_string(),
        "refusing to build keyring example serial 3: history serial 1 is missing (history must hold every serial from 1 to 2)"
    );
    let mut h = history(&f.chain[..2]);
    let stranger = key();
    let bad2 = signed(f.chain[1].keyring(), &[&stranger]);
    h.insert(2, bad2);
    let err = build_package(&f.chain[2], &h, 0, NOW).unwrap_err();
    assert!(
        err.to_string().contains(
            "keyring example serial 2: signed by 0 of the 1 root keys required by serial 1"
        ),
        "{err}"
    );
    let h = history(&f.chain);
    let err = build_package(&f.chain[2], &h, 0, NOW).unwrap_err();
    assert!(
        matches!(err, BuildError::HistoryAhead { found: 3, .. }),
        "{err}"
    );
}

/// A package with `files` (path, bytes) under the control of `package`, version `version`.
fn crafted(package: &str, version: &str, files: &[(&str, &[u8])]) -> Vec<u8> {
    let control = format!("Package: {package}\nVersion: {version}\nArchitecture: all\n");
    let mut b = PackageBuilder::new(control);
    for (path, data) in files {
        b = b.file(path, 0o644, data.to_vec());
    }
    b.build().unwrap()
}

fn read_err(bytes: &[u8]) -> ReadError {
    read_keyring_package_from(bytes).unwrap_err()
}

#[test]
fn reading_refuses_unexpected_paths_links_and_mismatches() {
    let f = fixture();
    let one = &f.chain[0];
    let sig = one.signatures().to_bytes();
    let base = "usr/share/keyrings/example";
    let good = |extra: &[(&str, &[u8])]| {
        let mut files: Vec<(&str, &[u8])> = vec![
            ("usr/share/keyrings/example/keyring", one.bytes()),
            ("usr/share/keyrings/example/keyring.sig", &sig),
        ];
        files.extend_from_slice(extra);
        crafted("example-keyring", "1", &files)
    };
    read_keyring_package_from(&good(&[])[..]).unwrap();

    let err = read_err(&good(&[("etc/passwd", b"root::0:0")]));
    assert!(
        err.to_string()
            .starts_with("etc/passwd: not a file a keyring package holds"),
        "{err}"
    );
    let err = read_err(&good(&[(
        "usr/share/keyrings/example/history/01.keyring",
        b"",
    )]));
    assert!(matches!(err, ReadError::UnexpectedEntry { .. }), "{err}");

    let link = PackageBuilder::new("Package: example-keyring\nVersion: 1\nArchitecture: all\n")
        .file(&format!("{base}/keyring"), 0o644, one.bytes().to_vec())
        .file(&format!("{base}/keyring.sig"), 0o644, sig.clone())
        .symlink("etc/opkg/keys/abc", "/etc/shadow")
        .build()
        .unwrap();
    let err = read_err(&link);
    assert!(
        err.to_string().contains("not a regular file or directory"),
        "{err}"
    );

    let err = read_err(&crafted("example", "1", &[]));
    assert!(matches!(err, ReadError::NotAKeyringPackage { .. }), "{err}");
    let err = read_err(&crafted(
        "example-keyring",
        "2",
        &[
            ("usr/share/keyrings/example/keyring", one.bytes()),
            ("usr/share/keyrings/example/keyring.sig", &sig),
        ],
    ));
    assert!(matches!(err, ReadError::VersionMismatch { .. }), "{err}");
    let err = read_err(&crafted(
        "example-keyring",
        "1",
        &[("usr/share/keyrings/example/keyring", one.bytes())],
    ));
    assert_eq!(
        err.to_string(),
        "usr/share/keyrings/example/keyring.sig: missing"
    );
    let err = read_err(&crafted(
        "other-keyring",
        "1",
        &[
            ("usr/share/keyrings/other/keyring", one.bytes()),
            ("usr/share/keyrings/other/keyring.sig", &sig),
        ],
    ));
    assert!(matches!(err, ReadError::NameMismatch { .. }), "{err}");

    // History whose file name and content disagree on the serial.
    let two = &f.chain[1];
    let err = read_err(&crafted(
        "example-keyring",
        "2",
        &[
            ("usr/share/keyrings/example/keyring", two.bytes()),
            (
                "usr/share/keyrings/example/keyring.sig",
                &two.signatures().to_bytes(),
            ),
            ("usr/share/keyrings/example/history/1.keyring", two.bytes()),
            ("usr/share/keyrings/example/history/1.sig", &sig),
        ],
    ));
    assert!(
        matches!(err, ReadError::SerialMismatch { found: 2, .. }),
        "{err}"
    );

    // A key file that is not an active feed key of the keyring.
    let stranger = key().public_key();
    let name = stranger.fingerprint().to_string();
    let path = format!("etc/opkg/keys/{name}");
    let err = read_err(&good(&[(&path, &stranger.to_file_bytes())]));
    assert!(
        err.to_string()
            .contains("is not an active feed key of keyring example serial 1"),
        "{err}"
    );
}

#[test]
fn reading_refuses_duplicate_entries_and_too_much_history() {
    let f = fixture();
    let one = &f.chain[0];
    let sig = one.signatures().to_bytes();
    let dup = crafted(
        "example-keyring",
        "1",
        &[
            ("usr/share/keyrings/example/keyring", one.bytes()),
            ("usr/share/keyrings/example/keyring", one.bytes()),
            ("usr/share/keyrings/example/keyring.sig", &sig),
        ],
    );
    assert!(matches!(read_err(&dup), ReadError::DuplicateEntry { .. }));
    let names: Vec<String> = (1..=keyring_pkg::package::MAX_HISTORY + 1)
        .map(|s| format!("usr/share/keyrings/example/history/{s}.keyring"))
        .collect();
    let files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b""[..])).collect();
    let err = read_err(&crafted("example-keyring", "2000", &files));
    assert!(matches!(err, ReadError::HistoryTooLong), "{err}");
}

#[test]
fn reading_bounds_entry_sizes() {
    let big = vec![b'a'; keyring_pkg::manifest::MAX_MANIFEST_LEN + 1];
    let err = read_err(&crafted(
        "example-keyring",
        "1",
        &[("usr/share/keyrings/example/keyring", &big)],
    ));
    assert!(matches!(err, ReadError::EntryTooLarge { .. }), "{err}");
    let err = read_err(b"<html>not a package</html>");
    assert!(matches!(err, ReadError::Container(_)), "{err}");
}

#[test]
fn tampered_history_in_a_package_is_refused_at_acceptance() {
    let f = fixture();
    let mut h = history(&f.chain[..2]);
    let built = build_package(&f.chain[2], &h, 0, NOW).unwrap();
    read_keyring_package_from(&built.bytes[..]).unwrap();
    // Repack with serial 2 altered (signatures kept): the reader accepts the syntax, the chain
    // walk refuses it.
    let mut k2 = f.chain[1].keyring().clone();
    k2.key_mut(f.a.fingerprint()).unwrap().comment = Some("altered".into());
    h.insert(
        2,
        SignedKeyring::new(k2, f.chain[1].signatures().clone()).unwrap(),
    );
    let base = "usr/share/keyrings/example";
    let mut files: Vec<(String, Vec<u8>)> = vec![
        (format!("{base}/keyring"), f.chain[2].bytes().to_vec()),
        (
            format!("{base}/keyring.sig"),
            f.chain[2].signatures().to_bytes(),
        ),
    ];
    for (s, k) in &h {
        files.push((format!("{base}/history/{s}.keyring"), k.bytes().to_vec()));
        files.push((format!("{base}/history/{s}.sig"), k.signatures().to_bytes()));
    }
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(p, d)| (p.as_str(), d.as_slice()))
        .collect();
    let pkg = read_keyring_package_from(&crafted("example-keyring", "3", &refs)[..]).unwrap();
    let err = accept_chain(&f.chain[0], pkg.candidates(), NOW).unwrap_err();
    assert!(
        matches!(err, Refusal::PreviousThresholdNotMet { serial: 2, .. }),
        "{err}"
    );
}

fn valid_package() -> &'static [u8] {
    static BYTES: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BYTES.get_or_init(|| {
        let f = fixture();
        build_package(&f.chain[2], &history(&f.chain[..2]), 0, NOW)
            .unwrap()
            .bytes
    })
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config::with_cases(64))]
    #[test]
    fn reading_garbage_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..2000)) {
        let _ = read_keyring_package_from(&bytes[..]);
    }

    #[test]
    fn reading_a_corrupted_package_never_panics(at in 0usize..100_000, byte in proptest::num::u8::ANY) {
        let mut bytes = valid_package().to_vec();
        let at = at % bytes.len();
        bytes[at] = byte;
        let _ = read_keyring_package_from(&bytes[..]);
    }
}

fn signify_available() -> bool {
    Command::new("signify-openbsd").arg("-h").output().is_ok()
}

#[test]
fn signify_verifies_a_feed_signature_with_the_packaged_key_file() {
    if !signify_available() {
        if std::env::var_os("CI").is_some() {
            panic!("signify-openbsd is required when CI is set");
        }
        println!("skipped: signify-openbsd is not installed");
        return;
    }
    let f = fixture();
    let built = build_package(&f.chain[1], &history(&f.chain[..1]), 0, NOW).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Extract the key files exactly as they are in the package.
    let mut extracted = Vec::new();
    let mut visit = |tar: &mut DataTar<'_>| {
        tar.for_each_entry(|e| -> Result<(), std::io::Error> {
            let path = String::from_utf8_lossy(&e.path_bytes()).into_owned();
            if let Some(name) = path.strip_prefix("./etc/opkg/keys/")
                && !name.is_empty()
            {
                let mut body = Vec::new();
                e.read_to_end(&mut body)?;
                fs::write(d.join(name), &body)?;
                extracted.push(name.to_string());
            }
            Ok(())
        })
        .map(|_| ())
    };
    read_package(&built.bytes[..], &ReadOptions::default(), Some(&mut visit)).unwrap();
    extracted.sort();
    assert_eq!(extracted, names_of(&[&f.a, &f.b]));
    let msg = d.join("Packages");
    fs::write(&msg, b"Package: hello\nVersion: 1\n").unwrap();
    for (signer, other) in [(&f.a, &f.b), (&f.b, &f.a)] {
        let sig = d.join("Packages.sig");
        fs::write(
            &sig,
            signer
                .sign(&fs::read(&msg).unwrap())
                .unwrap()
                .to_file_bytes(),
        )
        .unwrap();
        let verify = |key: &SecretKey| {
            Command::new("signify-openbsd")
                .args(["-V", "-q", "-p"])
                .arg(d.join(name_of(key)))
                .arg("-m")
                .arg(&msg)
                .arg("-x")
                .arg(&sig)
                .output()
                .unwrap()
        };
        let ok = verify(signer);
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stderr)
        );
        // The other key must not verify it: the check is real.
        assert!(!verify(other).status.success());
    }
}
