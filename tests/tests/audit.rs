//! The audit trail across the real binaries (issue 12, docs/on-disk-state.md §5): a session
//! over HTTP — bootstrap, a hostile feed response, a refused package, a keyring update, a
//! removal — leaves exactly the expected events in order; `prokit audit verify` passes, and
//! editing a byte of any line, deleting a line or swapping two lines makes it fail naming the
//! line; kill -9 at any point leaves a log that verifies or reports exactly its torn last
//! line, and the next run continues the chain; archman's `--audit-log`; secrets never reach a
//! log.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Fixture, archman, prokit};
use e2e::{HttpServer, bin, run};

const LOG: &str = "var/log/prokit/audit.jsonl";

fn events(log: &Path) -> Vec<String> {
    fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_like::Value = serde_like::parse(l);
            v.event
        })
        .collect()
}

/// Just enough JSON reading for the tests (the e2e crate has no serde): the `event` field.
mod serde_like {
    pub struct Value {
        pub event: String,
    }
    pub fn parse(line: &str) -> Value {
        let key = "\"event\":\"";
        let at = line
            .find(key)
            .unwrap_or_else(|| panic!("no event in {line}"))
            + key.len();
        let end = at + line[at..].find('"').unwrap();
        Value {
            event: line[at..end].to_string(),
        }
    }
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

fn fingerprint(public: &str) -> String {
    feeds::usign::PublicKey::read_path(Path::new(public))
        .unwrap()
        .fingerprint()
        .to_string()
}

/// `prokit audit verify FILE`: (exit code, stdout + stderr).
fn verify(file: &Path) -> (i32, String) {
    let out = Command::new(bin("prokit"))
        .args(["audit", "verify"])
        .arg(file)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn a_session_leaves_the_expected_events_in_order_and_any_edit_breaks_the_chain() {
    let f = Fixture::new();
    let t = f.tmp.path().to_path_buf();
    let (root_sec, root_pub) = keygen(&t, "root");
    let ring = t.join("ring");
    let ring_s = ring.to_str().unwrap().to_string();
    let feed_pub = f.public.to_str().unwrap().to_string();
    for args in [
        vec![
            "keyring",
            "init",
            &ring_s,
            "--name",
            "demo",
            "--root-key",
            &root_sec,
            "--feed-key",
            &feed_pub,
        ],
        vec!["keyring", "sign", &ring_s, "-s", &root_sec],
    ] {
        let (ok, _, err) = archman(&args);
        assert!(ok, "{args:?}: {err}");
    }
    let (ok, _, err) = archman(&["keyring", "build", &ring_s, f.feed.to_str().unwrap()]);
    assert!(ok, "{err}");
    f.add("libx", "1.0", "", &[("usr/lib/libx", "x")], None);
    f.add(
        "app",
        "1.0",
        "Depends: libx\n",
        &[("usr/bin/app", "app")],
        None,
    );
    f.add("victim", "1.0", "", &[("usr/bin/victim", "v")], None);
    f.index();
    let Some(server) = HttpServer::serve(&f.feed) else {
        return;
    };
    let root = t.join("root");
    let r = root.to_str().unwrap();
    let keyring_pkg = fs::read_dir(&f.feed)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("demo-keyring_"))
        .unwrap();
    let (ok, out, err) = prokit(
        None,
        &[
            "bootstrap",
            r,
            "--feed",
            &format!("main={}", server.url("")),
            "--keyring",
            keyring_pkg.to_str().unwrap(),
            "--root-fingerprint",
            &fingerprint(&root_pub),
            "app",
        ],
    );
    assert!(ok, "{out}{err}");

    // A hostile feed response: the signature replaced by a captive portal's page.
    let sig = fs::read(f.feed.join("Packages.sig")).unwrap();
    fs::write(f.feed.join("Packages.sig"), "<html>login</html>\n").unwrap();
    let (ok, _, _) = prokit(Some(r), &["update"]);
    assert!(!ok);
    fs::write(f.feed.join("Packages.sig"), sig).unwrap();

    // A refused package: its bytes changed after the index was signed.
    let victim = f.feed.join("victim_1.0_all.ipk");
    let original = fs::read(&victim).unwrap();
    let mut bytes = original.clone();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&victim, bytes).unwrap();
    let (ok, _, err) = prokit(Some(r), &["install", "victim"]);
    assert!(!ok);
    assert!(err.contains("SHA-256"), "{err}");
    fs::write(&victim, original).unwrap();

    // A keyring update: serial 2 adds a feed key.
    let (_, new_feed_pub) = keygen(&t, "feed2");
    for args in [
        vec![
            "keyring",
            "add-key",
            &ring_s,
            "--role",
            "feed",
            &new_feed_pub,
        ],
        vec!["keyring", "sign", &ring_s, "-s", &root_sec],
    ] {
        let (ok, _, err) = archman(&args);
        assert!(ok, "{args:?}: {err}");
    }
    let (ok, _, err) = archman(&["keyring", "build", &ring_s, f.feed.to_str().unwrap()]);
    assert!(ok, "{err}");
    f.index();
    let (ok, out, err) = prokit(Some(r), &["keyring", "refresh"]);
    assert!(ok, "{out}{err}");

    // A removal.
    let (ok, _, err) = prokit(Some(r), &["remove", "app"]);
    assert!(ok, "{err}");

    let log = root.join(LOG);
    assert_eq!(
        events(&log),
        [
            // bootstrap: the first trust, the feed, then each package verified, and the two
            // recorded installed when the group that carries them both commits
            // (docs/crash-safety.md §5.1).
            "keyring-updated",
            "feed-verified",
            "package-verified",
            "package-verified",
            "package-installed",
            "package-installed",
            // update with a forged signature.
            "feed-refused",
            // install victim: the download's SHA-256 does not match the signed index.
            "package-refused",
            // keyring refresh: it updates the feeds first.
            "feed-verified",
            "keyring-updated",
            "package-removed",
        ]
    );
    let text = fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    for (needle, line) in [
        ("\"first_trust\":true".to_string(), 0),
        (format!("\"key\":\"{}\"", f.fingerprint()), 1),
        ("\"name\":\"libx\"".to_string(), 2),
        (format!("\"feed_key\":\"{}\"", f.fingerprint()), 2),
        ("\"auto_installed\":true".to_string(), 4),
        ("\"name\":\"libx\"".to_string(), 4),
        ("not a usign signature".to_string(), 6),
        ("\"name\":\"victim\"".to_string(), 7),
        ("\"serial_from\":1".to_string(), 9),
        ("\"serial_to\":2".to_string(), 9),
        (format!("\"root_keys\":[\"{}\"]", fingerprint(&root_pub)), 9),
        ("\"reason\":\"requested\"".to_string(), 10),
    ] {
        assert!(
            lines[line].contains(&needle),
            "{needle} not in line {}: {}",
            line + 1,
            lines[line]
        );
    }
    // Every record names who and where.
    for l in &lines {
        for field in [
            "\"time\":\"",
            "\"user\":\"",
            "\"host\":\"",
            "\"pid\":",
            "\"tool\":\"prokit\"",
        ] {
            assert!(l.contains(field), "{field} not in {l}");
        }
    }

    let (ok, out, err) = prokit(Some(r), &["audit", "verify"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("11 records, chain verifies"), "{out}");
    let (ok, out, err) = prokit(Some(r), &["audit", "show", "--event", "package-*"]);
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 6, "{out}");
    assert!(out.lines().all(|l| l.contains("  package-")), "{out}");
    let (ok, out, _) = prokit(
        Some(r),
        &["--json", "audit", "show", "--since", "2000-01-01"],
    );
    assert!(ok);
    assert_eq!(out, text);

    // Tampering, on a copy: each byte edited, each line deleted, each pair swapped.
    let copy = t.join("copy.jsonl");
    let check = |content: String, line: usize, what: &str| {
        fs::write(&copy, content).unwrap();
        let (code, out) = verify(&copy);
        assert_eq!(code, 1, "{what}: {out}");
        assert!(
            out.contains(&format!("line {line}")),
            "{what}: expected line {line}: {out}"
        );
    };
    for i in 0..lines.len() {
        let mut edited: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        // A digit of the pid, a letter of the user name: bytes a forger would change.
        let at = edited[i].find("\"pid\":").unwrap() + 6;
        let mut b = edited[i].clone().into_bytes();
        b[at] = if b[at] == b'9' { b'1' } else { b[at] + 1 };
        edited[i] = String::from_utf8(b).unwrap();
        check(
            edited.join("\n") + "\n",
            i + 1,
            &format!("edit line {}", i + 1),
        );
        if i + 1 < lines.len() {
            let mut deleted: Vec<&str> = lines.clone();
            deleted.remove(i);
            check(
                deleted.join("\n") + "\n",
                i + 1,
                &format!("delete line {}", i + 1),
            );
            let mut swapped: Vec<&str> = lines.clone();
            swapped.swap(i, i + 1);
            check(
                swapped.join("\n") + "\n",
                i + 1,
                &format!("swap lines {} and {}", i + 1, i + 2),
            );
        }
    }
    drop(server);
}

#[test]
fn kill_9_leaves_a_log_that_verifies_or_names_its_torn_last_line_and_the_chain_goes_on() {
    let f = Fixture::new();
    let names: Vec<String> = (0..40).map(|i| format!("pkg{i:02}")).collect();
    for n in &names {
        let files: Vec<(String, String)> = (0..20)
            .map(|j| (format!("usr/share/{n}/f{j}"), format!("{n} {j}")))
            .collect();
        let refs: Vec<(&str, &str)> = files
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        f.add(n, "1.0", "", &refs, None);
    }
    f.index();
    let Some(server) = HttpServer::serve(&f.feed) else {
        return;
    };
    let root = f.tmp.path().join("root");
    let r = root.to_str().unwrap().to_string();
    let (ok, out, err) = prokit(
        None,
        &[
            "bootstrap",
            &r,
            "--feed",
            &format!("main={}", server.url("")),
            "--pubkey",
            f.public.to_str().unwrap(),
            "pkg00",
        ],
    );
    assert!(ok, "{out}{err}");
    let log = root.join(LOG);
    let mut delays = [3u64, 8, 15, 25, 40, 60, 90, 130].into_iter().cycle();
    let mut installed_all = false;
    for round in 0..16 {
        let mut cmd = Command::new(bin("prokit"));
        cmd.args(["--root", &r, "install"]).args(&names[1..]);
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let mut child = cmd.spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delays.next().unwrap()));
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        let (code, out) = verify(&log);
        assert!(
            code == 0
                || (code == 3 && out.contains("is torn (a write cut short): the chain up to line")),
            "round {round}: {out}"
        );
        if status.success() {
            installed_all = true;
            break;
        }
    }
    // Whatever happened, a run that completes continues the chain.
    let before = fs::read_to_string(&log).unwrap().lines().count();
    let (ok, out, err) = prokit(Some(&r), &["install", "pkg39"]);
    assert!(ok || installed_all, "{out}{err}");
    let (ok, out, err) = prokit(Some(&r), &["update"]);
    assert!(ok, "{out}{err}");
    let (code, out) = verify(&log);
    assert_eq!(code, 0, "{out}");
    assert!(fs::read_to_string(&log).unwrap().lines().count() > before);

    // A torn last line (a write cut short, as a crash leaves it) is named exactly, and the
    // next append starts a new segment that says so.
    let text = fs::read_to_string(&log).unwrap();
    let n = text.lines().count();
    let torn = &text[..text.len() - 30];
    fs::write(&log, torn).unwrap();
    let (code, out) = verify(&log);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains(&format!(
            "line {n} is torn (a write cut short): the chain up to line {} verifies",
            n - 1
        )),
        "{out}"
    );
    let (ok, out, err) = prokit(Some(&r), &["update"]);
    assert!(ok, "{out}{err}");
    let (code, out) = verify(&log);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("line {n} is torn")), "{out}");
    let after = fs::read_to_string(&log).unwrap();
    let restart = after.lines().nth(n).unwrap();
    assert!(
        restart.contains("\"event\":\"chain-restarted\""),
        "{restart}"
    );
    assert!(restart.contains(&format!("\"torn_line\":{n}")), "{restart}");
}

#[test]
fn archman_records_what_it_publishes_and_refuses_and_no_secret_reaches_a_log() {
    let f = Fixture::new();
    let t = f.tmp.path().to_path_buf();
    f.add("good", "1.0", "", &[("usr/share/good", "g")], None);
    // A protected key, its passphrase in a file: the passphrase must never reach the log.
    let passphrase = "correct-horse-SECRET-7391";
    let pass_file = t.join("pass");
    fs::write(&pass_file, format!("{passphrase}\n")).unwrap();
    let (sec, public) = (t.join("prot.sec"), t.join("prot.pub"));
    let (ok, _, err) = archman(&[
        "keygen",
        "--passphrase-file",
        pass_file.to_str().unwrap(),
        "-s",
        sec.to_str().unwrap(),
        "-p",
        public.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let log = t.join("archman-audit.jsonl");
    let index = |extra: &[&str], env_log: bool| {
        let mut cmd = Command::new(bin("archman"));
        if !env_log {
            cmd.arg("--audit-log").arg(&log);
        } else {
            cmd.env("ARCHMAN_AUDIT_LOG", &log);
        }
        cmd.args(["index", "-q", "--key"])
            .arg(&sec)
            .arg("--passphrase-file")
            .arg(&pass_file)
            .args(extra)
            .arg(&f.feed);
        run(&mut cmd)
    };
    let (ok, _, err) = index(&[], false);
    assert!(ok, "{err}");
    // A bad package refuses the run, then --skip-bad publishes without it.
    fs::write(f.feed.join("broken_1.0_all.ipk"), "not a package").unwrap();
    let (ok, _, _) = index(&[], true);
    assert!(!ok);
    let (_, _, err) = index(&["--skip-bad"], true);
    assert!(err.contains("broken_1.0_all.ipk"), "{err}");
    let text = fs::read_to_string(&log).unwrap();
    let evs = events(&log);
    assert_eq!(
        evs,
        [
            "feed-published",
            "package-refused",
            "feed-not-published",
            "package-refused",
            // broken left out, the rest as published: nothing to write.
            "feed-unchanged",
        ]
    );
    let first = text.lines().next().unwrap();
    let packages = fs::read(f.feed.join("Packages")).unwrap();
    let _ = packages;
    for needle in [
        "\"tool\":\"archman\"",
        "\"name\":\"Packages\"",
        "\"name\":\"Packages.sig\"",
        "\"name\":\"Release.sig\"",
        &format!(
            "\"key\":\"{}\"",
            feeds::usign::PublicKey::read_path(&public)
                .unwrap()
                .fingerprint()
        ),
        "\"packages\":1",
    ] {
        assert!(first.contains(needle), "{needle} not in {first}");
    }
    // The recorded SHA-256 of Packages is the published file's.
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(
            fs::read(f.feed.join("Packages")).unwrap(),
        ))
    };
    assert!(first.contains(&sha), "{text}");
    let (code, out) = verify(&log);
    assert_eq!(code, 0, "{out}");
    assert!(!text.contains(passphrase), "the passphrase reached the log");

    // prokit with credentials in a feed URL (what opkg-lede understands) and a token in its
    // query: the log never holds them.
    let Some(server) = HttpServer::serve(&f.feed) else {
        return;
    };
    let secret = "pa55-SECRET-word";
    let token = "tok-SECRET-42";
    let url = server
        .url("")
        .replacen("http://", &format!("http://user:{secret}@"), 1);
    let root = t.join("root");
    fs::create_dir_all(root.join("etc/opkg/keys")).unwrap();
    fs::copy(
        &public,
        root.join("etc/opkg/keys").join(
            feeds::usign::PublicKey::read_path(&public)
                .unwrap()
                .fingerprint()
                .to_string(),
        ),
    )
    .unwrap();
    fs::write(
        root.join("etc/opkg.conf"),
        format!(
            "src/gz main {url}\nsrc/gz other {}?token={token}\n",
            server.url("nowhere")
        ),
    )
    .unwrap();
    let (_, out, err) = prokit(Some(root.to_str().unwrap()), &["update"]);
    let plog = fs::read_to_string(root.join(LOG)).unwrap();
    assert!(plog.contains("\"event\":\"feed-"), "{plog}\n{out}{err}");
    for s in [secret, token, passphrase] {
        assert!(!plog.contains(s), "{s} reached the log:\n{plog}");
    }
    let (code, out) = verify(&root.join(LOG));
    assert_eq!(code, 0, "{out}");
    let _: PathBuf = root;
}

#[test]
fn concurrent_writers_share_one_chain() {
    // Four archman runs on four feeds (each its own feed lock) append to one log at once:
    // flock makes them take turns, and every record links to the one before.
    let t = tempfile::tempdir().unwrap();
    let log = t.path().join("shared-audit.jsonl");
    let feeds: Vec<Fixture> = (0..4)
        .map(|i| {
            let f = Fixture::new();
            for j in 0..30 {
                f.add(
                    &format!("p{i}-{j}"),
                    "1.0",
                    "",
                    &[("usr/share/x", "x")],
                    None,
                );
            }
            f
        })
        .collect();
    for round in 0..3 {
        let children: Vec<_> = feeds
            .iter()
            .map(|f| {
                Command::new(bin("archman"))
                    .arg("--audit-log")
                    .arg(&log)
                    .args(["index", "-q", "--refresh", "--key"])
                    .arg(&f.sec)
                    .arg(&f.feed)
                    .spawn()
                    .unwrap()
            })
            .collect();
        for mut c in children {
            assert!(c.wait().unwrap().success(), "round {round}");
        }
    }
    let (code, out) = verify(&log);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("12 records, chain verifies"), "{out}");
    assert!(events(&log).iter().all(|e| e == "feed-published"));
}
