//! The keyring across the real binaries, over HTTP on 127.0.0.1: the maintainer drives
//! `archman keyring`, publishes the keyring package in the feed, and a client root made by
//! `prokit bootstrap --keyring` follows it with `prokit keyring refresh` (docs/trust-model.md §5, §7).
//! Rule-by-rule refusals (forks, missing or tampered history steps, thresholds of every
//! kind, kill -9 at each step of apply) are proven in keyring-pkg's own tests; here each
//! story runs end to end.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Fixture, archman, prokit};
use e2e::{HttpServer, bin, have_tool, run};

struct Keys {
    dir: PathBuf,
}

impl Keys {
    fn new(dir: &Path, names: &[&str]) -> Keys {
        for n in names {
            let (ok, _, err) = archman(&[
                "keygen",
                "-s",
                dir.join(format!("{n}.sec")).to_str().unwrap(),
                "-p",
                dir.join(format!("{n}.pub")).to_str().unwrap(),
                "-c",
                n,
            ]);
            assert!(ok, "{err}");
        }
        Keys { dir: dir.into() }
    }
    fn sec(&self, n: &str) -> String {
        self.dir.join(format!("{n}.sec")).display().to_string()
    }
    fn public(&self, n: &str) -> String {
        self.dir.join(format!("{n}.pub")).display().to_string()
    }
    fn fp(&self, n: &str) -> String {
        feeds::usign::PublicKey::read_path(&self.dir.join(format!("{n}.pub")))
            .unwrap()
            .fingerprint()
            .to_string()
    }
}

/// A feed whose index is signed by a chosen key, and a keyring work dir published into it.
struct Story {
    f: Fixture,
    keys: Keys,
    ring: PathBuf,
    server: HttpServer,
    root: PathBuf,
}

impl Story {
    fn new(roots: &[&str], threshold: &str) -> Option<Story> {
        let f = Fixture::new();
        let keys = Keys::new(f.tmp.path(), &["root1", "root2", "root3", "feedA", "feedB"]);
        f.add("lib", "1.0", "", &[("usr/lib/lib.so", "lib")], None);
        let ring = f.tmp.path().join("ring");
        let mut args = vec![
            "keyring".to_string(),
            "init".into(),
            ring.display().to_string(),
            "--name".into(),
            "demo".into(),
            "--feed-key".into(),
            keys.public("feedA"),
            "--threshold".into(),
            threshold.into(),
        ];
        for r in roots {
            args.push("--root-key".into());
            args.push(keys.sec(r));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, out, err) = archman(&args);
        assert!(ok, "{out}{err}");
        let server = HttpServer::serve(&f.feed)?;
        let root = f.tmp.path().join("root");
        let s = Story {
            f,
            keys,
            ring,
            server,
            root,
        };
        s.publish("feedA");
        Some(s)
    }

    fn ring(&self) -> &str {
        self.ring.to_str().unwrap()
    }

    fn root(&self) -> &str {
        self.root.to_str().unwrap()
    }

    /// Builds the keyring package into the feed and indexes the feed with key `signer`.
    fn publish(&self, signer: &str) {
        let (ok, out, err) = archman(&[
            "keyring",
            "build",
            self.ring(),
            self.f.feed.to_str().unwrap(),
        ]);
        assert!(ok, "keyring build: {out}{err}");
        self.index(signer);
    }

    fn index(&self, signer: &str) {
        let sec = self.keys.sec(signer);
        self.f.index_by(Path::new(&sec), &["--refresh"]);
    }

    fn bootstrap(&self) {
        let pkg = self.f.feed.join("demo-keyring_1_all.ipk");
        let (ok, out, err) = prokit(
            None,
            &[
                "bootstrap",
                self.root(),
                "--feed",
                &format!("main={}", self.server.url("")),
                "--keyring",
                pkg.to_str().unwrap(),
                "--root-fingerprint",
                &self.keys.fp("root1"),
                "lib",
            ],
        );
        assert!(ok, "{out}{err}");
    }

    fn refresh(&self) -> (bool, String, String) {
        prokit(Some(self.root()), &["keyring", "refresh"])
    }

    fn has_key(&self, n: &str) -> bool {
        let fp = self.keys.fp(n);
        let dir = self.root.join("etc/opkg/keys");
        dir.join(&fp).exists() || dir.join(fp.trim_start_matches('0')).exists()
    }

    fn key_file(&self, n: &str) -> PathBuf {
        self.root.join("etc/opkg/keys").join(self.keys.fp(n))
    }

    fn trusted_state(&self) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        for dir in ["etc/opkg/keys", "var/lib/prokit/keyrings/demo"] {
            let Ok(rd) = fs::read_dir(self.root.join(dir)) else {
                continue;
            };
            for e in rd {
                let p = e.unwrap().path();
                if p.is_file() {
                    out.push((p.display().to_string(), fs::read(&p).unwrap()));
                }
            }
        }
        out.sort();
        out
    }
}

#[test]
fn rotation_add_key_switch_revoke_old_over_http() {
    let Some(s) = Story::new(&["root1"], "1") else {
        return;
    };
    s.bootstrap();
    assert!(s.has_key("feedA") && !s.has_key("feedB"));
    let conf = fs::read_to_string(s.root.join("etc/opkg.conf")).unwrap();
    assert!(conf.contains("option keyring demo"), "{conf}");
    // What opkg-lede's usign does with the root's keys directory.
    if have_tool("signify-openbsd") {
        let (ok, _, err) = run(Command::new("signify-openbsd")
            .args(["-V", "-q", "-p"])
            .arg(s.key_file("feedA"))
            .arg("-m")
            .arg(s.f.feed.join("Packages")));
        assert!(ok, "signify -V with the root's key file: {err}");
    }
    let (ok, out, err) = s.refresh();
    assert!(ok && out.contains("already at serial 1"), "{out}{err}");

    // Serial 2 adds feed key B, signed by the root; the feed is still signed by A.
    let (ok, out, err) = archman(&[
        "keyring",
        "add-key",
        s.ring(),
        "--role",
        "feed",
        &s.keys.public("feedB"),
    ]);
    assert!(ok && out.contains("serial 2"), "{out}{err}");
    let (ok, _, err) = archman(&["keyring", "sign", s.ring(), "-s", &s.keys.sec("root1")]);
    assert!(ok, "{err}");
    s.publish("feedA");
    let (ok, out, err) = s.refresh();
    assert!(ok && out.contains("updated to serial 2"), "{out}{err}");
    assert!(s.has_key("feedA") && s.has_key("feedB"));

    // The feed switches to B and still verifies.
    s.index("feedB");
    let (ok, out, err) = prokit(Some(s.root()), &["update"]);
    assert!(ok, "{out}{err}");

    // Serial 3 revokes A.
    let (ok, _, err) = archman(&["keyring", "revoke", s.ring(), &s.keys.fp("feedA")]);
    assert!(ok, "{err}");
    let (ok, _, err) = archman(&["keyring", "sign", s.ring(), "-s", &s.keys.sec("root1")]);
    assert!(ok, "{err}");
    s.publish("feedB");
    // Someone put A's key back by hand: the refresh removes it anyway.
    let (ok, out, err) = s.refresh();
    assert!(ok && out.contains("updated to serial 3"), "{out}{err}");
    assert!(!s.has_key("feedA"), "the revoked key's file is still there");
    fs::copy(s.keys.public("feedA"), s.key_file("feedA")).unwrap();
    let (ok, out, err) = s.refresh();
    assert!(ok && out.contains("already at serial 3"), "{out}{err}");
    assert!(
        !s.has_key("feedA"),
        "a planted revoked key survived a refresh"
    );

    // A feed signed by A is now refused, naming the key and why.
    let before = fs::read(s.root.join("var/opkg-lists/main")).unwrap();
    s.index("feedA");
    let (ok, _, err) = prokit(Some(s.root()), &["update"]);
    assert!(!ok);
    assert!(
        err.contains(&s.keys.fp("feedA")) && err.contains("revoked"),
        "{err}"
    );
    assert_eq!(
        fs::read(s.root.join("var/opkg-lists/main")).unwrap(),
        before
    );

    // Status lists the keys; a warning window past the expiry fails it (for monitoring).
    let (ok, out, err) = prokit(Some(s.root()), &["keyring", "status", "--warn-days", "30"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("serial 3") && out.contains("revoked"), "{out}");
    let (ok, _, err) = prokit(Some(s.root()), &["keyring", "status", "--warn-days", "400"]);
    assert!(!ok && err.contains("expires within 400 days"), "{err}");
}

#[test]
fn two_of_three_roots_one_signature_is_not_enough_and_duplicates_count_once() {
    let Some(s) = Story::new(&["root1", "root2", "root3"], "2") else {
        return;
    };
    s.bootstrap();
    let (ok, _, err) = archman(&[
        "keyring",
        "add-key",
        s.ring(),
        "--role",
        "feed",
        &s.keys.public("feedB"),
    ]);
    assert!(ok, "{err}");
    for _ in 0..2 {
        let (ok, _, err) = archman(&["keyring", "sign", s.ring(), "-s", &s.keys.sec("root1")]);
        assert!(ok, "{err}");
    }
    // The maintainer's build refuses a keyring below its own threshold, with the reason.
    let (ok, _, err) = archman(&["keyring", "build", s.ring(), s.f.feed.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("1 of the 2"), "{err}");
    // Even if such a keyring is published by hand, the client refuses it.
    let forged = s.f.feed.join("demo-keyring_2_all.ipk");
    let pkg = keyring_like_package(&s);
    fs::write(&forged, pkg).unwrap();
    s.index("feedA");
    let state = s.trusted_state();
    let (ok, _, err) = s.refresh();
    assert!(!ok, "a keyring signed once was accepted");
    assert!(err.contains("serial 2") && err.contains("2"), "{err}");
    assert_eq!(s.trusted_state(), state);
    // A second, distinct root signs: accepted.
    fs::remove_file(&forged).unwrap();
    let (ok, _, err) = archman(&["keyring", "sign", s.ring(), "-s", &s.keys.sec("root2")]);
    assert!(ok, "{err}");
    s.publish("feedA");
    let (ok, out, err) = s.refresh();
    assert!(ok && out.contains("updated to serial 2"), "{out}{err}");
    assert!(s.has_key("feedB"));
}

/// The keyring package of the work dir's current (under-signed) serial, assembled by hand
/// (`archman keyring build` refuses it), as a careless or malicious publisher could.
fn keyring_like_package(s: &Story) -> Vec<u8> {
    let wd = keyring_pkg::workdir::Workdir::open(&s.ring).unwrap();
    let serial = wd.current().serial();
    let mut b = feeds::build::PackageBuilder::new(format!(
        "Package: demo-keyring\nVersion: {serial}\nArchitecture: all\nMaintainer: x <x@example.org>\nDescription: keyring\n"
    ));
    b = b.file(
        "usr/share/keyrings/demo/keyring",
        0o644,
        wd.current().bytes().to_vec(),
    );
    b = b.file(
        "usr/share/keyrings/demo/keyring.sig",
        0o644,
        fs::read(s.ring.join("keyring.sig")).unwrap(),
    );
    for (serial, k) in wd.history() {
        b = b.file(
            &format!("usr/share/keyrings/demo/history/{serial}.keyring"),
            0o644,
            k.bytes().to_vec(),
        );
        b = b.file(
            &format!("usr/share/keyrings/demo/history/{serial}.sig"),
            0o644,
            fs::read(s.ring.join(format!("history/{serial}.sig"))).unwrap(),
        );
    }
    b.build().unwrap()
}

#[test]
fn rollback_to_an_older_keyring_package_is_refused() {
    let Some(s) = Story::new(&["root1"], "1") else {
        return;
    };
    s.bootstrap();
    let serial1 = s.f.tmp.path().join("serial1.ipk");
    fs::copy(s.f.feed.join("demo-keyring_1_all.ipk"), &serial1).unwrap();
    let (ok, _, err) = archman(&[
        "keyring",
        "add-key",
        s.ring(),
        "--role",
        "feed",
        &s.keys.public("feedB"),
    ]);
    assert!(ok, "{err}");
    let (ok, _, err) = archman(&["keyring", "sign", s.ring(), "-s", &s.keys.sec("root1")]);
    assert!(ok, "{err}");
    s.publish("feedA");
    let (ok, out, err) = s.refresh();
    assert!(ok && out.contains("updated to serial 2"), "{out}{err}");
    let state = s.trusted_state();
    // The mirror serves only the serial-1 package again.
    fs::remove_file(s.f.feed.join("demo-keyring_2_all.ipk")).unwrap();
    s.index("feedA");
    let (ok, _, err) = s.refresh();
    assert!(!ok);
    assert!(err.contains("rollback") || err.contains("older"), "{err}");
    assert_eq!(s.trusted_state(), state);
}

#[test]
fn refresh_without_network_fails_clearly_and_changes_nothing() {
    let Some(s) = Story::new(&["root1"], "1") else {
        return;
    };
    s.bootstrap();
    let state = s.trusted_state();
    let Story { server, .. } = &s;
    let url = server.url("");
    // Point the root at a port nobody listens on.
    let conf = fs::read_to_string(s.root.join("etc/opkg.conf")).unwrap();
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = dead.local_addr().unwrap().port();
    drop(dead);
    fs::write(
        s.root.join("etc/opkg.conf"),
        conf.replace(&url, &format!("http://127.0.0.1:{port}")),
    )
    .unwrap();
    let (ok, _, err) = s.refresh();
    assert!(!ok);
    assert!(err.contains("main") && err.contains("127.0.0.1"), "{err}");
    assert_eq!(s.trusted_state(), state);
}

#[test]
fn concurrent_refreshes_serialise_and_kill_9_leaves_a_complete_state() {
    let Some(s) = Story::new(&["root1"], "1") else {
        return;
    };
    s.bootstrap();
    let (ok, _, err) = archman(&[
        "keyring",
        "add-key",
        s.ring(),
        "--role",
        "feed",
        &s.keys.public("feedB"),
    ]);
    assert!(ok, "{err}");
    let (ok, _, err) = archman(&["keyring", "sign", s.ring(), "-s", &s.keys.sec("root1")]);
    assert!(ok, "{err}");
    s.publish("feedA");
    // Killed at various moments, the trusted state is serial 1 or serial 2, complete.
    for delay in [2u64, 8, 15, 30] {
        let mut child = Command::new(bin("prokit"))
            .args(["--root", s.root(), "keyring", "refresh"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay));
        let _ = child.kill();
        let _ = child.wait();
        let (ok, out, err) = prokit(Some(s.root()), &["keyring", "status", "--warn-days", "0"]);
        assert!(ok, "after a kill at {delay} ms: {out}{err}");
        assert!(
            out.contains("serial 1") || out.contains("serial 2"),
            "{out}"
        );
        assert!(s.has_key("feedA"));
    }
    // Two at once: both succeed, one updates and the other finds it done.
    let spawn = || {
        Command::new(bin("prokit"))
            .args(["--root", s.root(), "keyring", "refresh"])
            .output()
            .unwrap()
    };
    let (a, b) = std::thread::scope(|t| {
        let a = t.spawn(spawn);
        let b = t.spawn(spawn);
        (a.join().unwrap(), b.join().unwrap())
    });
    for o in [&a, &b] {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let outs = format!(
        "{}{}",
        String::from_utf8_lossy(&a.stdout),
        String::from_utf8_lossy(&b.stdout)
    );
    assert!(outs.contains("serial 2"), "{outs}");
    assert!(s.has_key("feedB"));
}

#[test]
fn a_client_at_serial_1_jumps_to_5_through_history_and_a_tampered_step_is_refused() {
    let Some(s) = Story::new(&["root1"], "1") else {
        return;
    };
    s.bootstrap();
    let changes: [&[&str]; 4] = [
        &[
            "add-key",
            s.ring(),
            "--role",
            "feed",
            &s.keys.public("feedB"),
        ],
        &[
            "add-key",
            s.ring(),
            "--role",
            "root",
            &s.keys.public("root2"),
        ],
        &["set-expires", s.ring(), "400d"],
        &["retire", s.ring(), &s.keys.fp("feedA")],
    ];
    for change in changes {
        let mut args = vec!["keyring"];
        args.extend_from_slice(change);
        let (ok, out, err) = archman(&args);
        assert!(ok, "{out}{err}");
        let (ok, _, err) = archman(&["keyring", "sign", s.ring(), "-s", &s.keys.sec("root1")]);
        assert!(ok, "{err}");
    }
    // Only serial 5 is published (the feed still signed by A, which the client trusts);
    // the client walks 2, 3, 4 from its history.
    let (ok, out, err) = archman(&["keyring", "build", s.ring(), s.f.feed.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("demo-keyring_5_all.ipk"), "{out}");
    s.index("feedA");
    let state = s.trusted_state();

    // First a package whose history step 3 was altered after signing: refused.
    let good = s.f.feed.join("demo-keyring_5_all.ipk");
    let saved = fs::read(&good).unwrap();
    let step3 = s.ring.join("history/3.keyring");
    let original = fs::read(&step3).unwrap();
    let text = String::from_utf8(original.clone()).unwrap();
    fs::write(
        &step3,
        text.replace("Root-Threshold: 1", "Root-Threshold: 2"),
    )
    .unwrap();
    let tampered = keyring_like_package(&s);
    fs::write(&step3, &original).unwrap();
    fs::write(&good, tampered).unwrap();
    s.index("feedA");
    let (ok, _, err) = s.refresh();
    assert!(!ok, "a tampered history step was accepted");
    assert!(err.contains("serial 3"), "{err}");
    assert_eq!(s.trusted_state(), state);

    // The real package: 1 -> 5 in one refresh.
    fs::write(&good, saved).unwrap();
    s.index("feedA");
    let (ok, out, err) = s.refresh();
    assert!(ok, "{out}{err}");
    assert!(out.contains("updated to serial 5 (from 1)"), "{out}");
    assert!(s.has_key("feedB") && !s.has_key("feedA"));
}

/// A keyring package assembled by hand: `current` (manifest, signatures) over `history`.
fn assemble(current: (&[u8], &[u8]), serial: u64, history: &[(u64, Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut b = feeds::build::PackageBuilder::new(format!(
        "Package: demo-keyring\nVersion: {serial}\nArchitecture: all\nMaintainer: x <x@example.org>\nDescription: keyring\n"
    ))
    .file("usr/share/keyrings/demo/keyring", 0o644, current.0.to_vec())
    .file("usr/share/keyrings/demo/keyring.sig", 0o644, current.1.to_vec());
    for (n, manifest, sigs) in history {
        b = b
            .file(
                &format!("usr/share/keyrings/demo/history/{n}.keyring"),
                0o644,
                manifest.clone(),
            )
            .file(
                &format!("usr/share/keyrings/demo/history/{n}.sig"),
                0o644,
                sigs.clone(),
            );
    }
    b.build().unwrap()
}

impl Story {
    /// The work dir's serials as (serial, manifest, signatures), oldest first, current last.
    fn serials(&self) -> Vec<(u64, Vec<u8>, Vec<u8>)> {
        let wd = keyring_pkg::workdir::Workdir::open(&self.ring).unwrap();
        let mut out: Vec<(u64, Vec<u8>, Vec<u8>)> = wd
            .history()
            .iter()
            .map(|(n, k)| (*n, k.bytes().to_vec(), k.signatures().to_bytes()))
            .collect();
        let c = wd.current();
        out.push((c.serial(), c.bytes().to_vec(), c.signatures().to_bytes()));
        out
    }

    /// Publishes a forged next serial: the work dir's current keyring edited by `edit`,
    /// signed by `signers`, over the real history. Returns the package path.
    fn forge(
        &self,
        edit: impl FnOnce(&mut keyring_pkg::manifest::Keyring),
        signers: &[&str],
        serial: u64,
        history: &[(u64, Vec<u8>, Vec<u8>)],
    ) -> PathBuf {
        let base = &history.last().unwrap().1;
        let mut k = keyring_pkg::manifest::Keyring::parse(base).unwrap();
        k.set_serial(serial);
        edit(&mut k);
        let bytes = k.to_bytes().unwrap();
        let mut sigs = keyring_pkg::signatures::SignatureSet::new();
        for who in signers {
            let sk =
                feeds::usign::SecretKey::read_path(Path::new(&self.keys.sec(who)), None).unwrap();
            sigs.insert(sk.sign(&bytes).unwrap()).unwrap();
        }
        let path = self.f.feed.join(format!("demo-keyring_{serial}_all.ipk"));
        fs::write(&path, assemble((&bytes, &sigs.to_bytes()), serial, history)).unwrap();
        self.index("feedA");
        path
    }

    /// Refresh must fail with `what` in its message and leave the trusted state as it was.
    fn refused(&self, what: &[&str]) {
        let state = self.trusted_state();
        let (ok, out, err) = self.refresh();
        assert!(!ok, "accepted: {out}");
        assert!(what.iter().any(|w| err.contains(w)), "{err}");
        assert_eq!(
            self.trusted_state(),
            state,
            "a refused refresh changed the state"
        );
    }
}

#[test]
fn forged_keyrings_signed_by_a_feed_key_expired_reactivating_or_forked_are_refused() {
    let Some(s) = Story::new(&["root1"], "1") else {
        return;
    };
    s.bootstrap();
    let feed_b = feeds::usign::PublicKey::read_path(Path::new(&s.keys.public("feedB"))).unwrap();
    let add_b = |k: &mut keyring_pkg::manifest::Keyring| {
        k.add_key(keyring_pkg::manifest::KeyEntry::new(
            &feed_b,
            keyring_pkg::manifest::Role::Feed,
        ))
        .unwrap();
    };
    let at_1 = s.serials();

    // Signed only by a feed key.
    let forged = s.forge(add_b, &["feedA"], 2, &at_1);
    s.refused(&["feed key", "root key", "signed by 0"]);
    fs::remove_file(forged).unwrap();

    // Correctly signed, but already expired.
    let forged = s.forge(
        |k| {
            add_b(k);
            k.set_date(common::now() - 7200);
            k.set_expires(common::now() - 60);
        },
        &["root1"],
        2,
        &at_1,
    );
    s.refused(&["expired"]);
    fs::remove_file(forged).unwrap();

    // The real serial 2 revokes A; the client follows.
    let fp_a = s.keys.fp("feedA");
    let (ok, _, err) = archman(&["keyring", "revoke", s.ring(), &fp_a]);
    assert!(ok, "{err}");
    let (ok, _, err) = archman(&["keyring", "sign", s.ring(), "-s", &s.keys.sec("root1")]);
    assert!(ok, "{err}");
    let (ok, out, err) = archman(&[
        "keyring",
        "add-key",
        s.ring(),
        "--role",
        "feed",
        &s.keys.public("feedB"),
    ]);
    assert!(ok, "{out}{err}");
    let (ok, _, err) = archman(&["keyring", "sign", s.ring(), "-s", &s.keys.sec("root1")]);
    assert!(ok, "{err}");
    // (serial 3 adds B, so the feed can be signed by B from here on)
    s.publish("feedA");
    let (ok, out, err) = s.refresh();
    assert!(ok && out.contains("updated to serial 3"), "{out}{err}");
    let at_3 = s.serials();

    // Serial 4 re-activates the revoked A, signed by the root: refused.
    let forged = s.forge(
        |k| {
            let a = k.key_mut(fp_a.parse().unwrap()).unwrap();
            a.status = keyring_pkg::manifest::Status::Active;
        },
        &["root1"],
        4,
        &at_3,
    );
    s.index("feedB");
    s.refused(&["revoked"]);
    fs::remove_file(forged).unwrap();

    // A different serial 3 (a fork of the history the client has): refused.
    let forked = s.forge(
        |k| k.set_expires(k.expires() + 86400),
        &["root1"],
        3,
        &at_3[..2],
    );
    s.index("feedB");
    s.refused(&["fork", "serial 3"]);
    fs::remove_file(forked).unwrap();
}
