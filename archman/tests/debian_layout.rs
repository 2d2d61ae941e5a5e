//! `archman index --layout debian` through the real binary: the dists/ tree and its Release,
//! the by-hash copies and how many are kept, unchanged reruns, kill -9 at any moment, and
//! hostile trees (a symlinked dists/, bad suite names), the audit record, and `archman check`
//! verifying InRelease/Release.gpg. apt itself reads the result in tests/tests/apt.rs.

// Tests say on stderr what they measured.
#![allow(clippy::print_stderr)]

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use feeds::build::PackageBuilder;
use feeds::package::Container;
use feeds::release::Release;
use sha2::{Digest, Sha256};

const ARCHMAN: &str = env!("CARGO_BIN_EXE_archman");
const EPOCH: i64 = 1795315200;

fn archman_at(args: &[&str], dir: &Path, epoch: Option<i64>) -> Output {
    let mut cmd = Command::new(ARCHMAN);
    cmd.args(args)
        .arg(dir)
        .env("XDG_CACHE_HOME", dir.parent().unwrap().join("xdg-cache"));
    match epoch {
        Some(e) => cmd.env("SOURCE_DATE_EPOCH", e.to_string()),
        None => cmd.env_remove("SOURCE_DATE_EPOCH"),
    };
    cmd.output().unwrap()
}

fn archman(args: &[&str], dir: &Path) -> Output {
    archman_at(args, dir, Some(EPOCH))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn deb(dir: &Path, name: &str, version: &str, arch: &str) {
    let pool = dir.join("pool/main");
    fs::create_dir_all(&pool).unwrap();
    let bytes = PackageBuilder::new(format!(
        "Package: {name}\nVersion: {version}\nArchitecture: {arch}\nMaintainer: T <t@example.org>\nDescription: {name}\n"
    ))
    .container(Container::Ar)
    .file(&format!("usr/share/{name}/data"), 0o644, format!("{name} {version}\n"))
    .build()
    .unwrap();
    fs::write(pool.join(format!("{name}_{version}_{arch}.deb")), bytes).unwrap();
}

fn keygen(dir: &Path) -> (String, feeds::usign::PublicKey) {
    let (sec, public) = e2e::archman_keygen(Path::new(ARCHMAN), dir);
    (
        sec.to_str().unwrap().to_string(),
        feeds::usign::PublicKey::read_path(&public).unwrap(),
    )
}

fn sha(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn release(suite_dir: &Path) -> Release {
    Release::parse(&fs::read_to_string(suite_dir.join("Release")).unwrap()).unwrap()
}

/// What apt would check: the Release signed (usign and OpenPGP, InRelease carrying the same
/// text), every file it lists present as listed, and its by-hash copy present too.
fn consistent(suite_dir: &Path, public: &feeds::usign::PublicKey) -> Result<(), String> {
    let bytes = fs::read(suite_dir.join("Release")).map_err(|e| e.to_string())?;
    let sig = feeds::usign::Signature::read_path(&suite_dir.join("Release.sig"))
        .map_err(|e| e.to_string())?;
    public.verify(&bytes, &sig).map_err(|e| e.to_string())?;
    let inrelease = fs::read_to_string(suite_dir.join("InRelease")).map_err(|e| e.to_string())?;
    let text = String::from_utf8(bytes.clone()).unwrap();
    if !inrelease.contains(&text) {
        return Err("InRelease does not carry the Release".into());
    }
    let r = Release::parse(&text).map_err(|e| e.to_string())?;
    for f in &r.sha256 {
        let data = fs::read(suite_dir.join(&f.name)).map_err(|e| format!("{}: {e}", f.name))?;
        if sha(&data) != f.sha256 {
            return Err(format!("{} does not match Release", f.name));
        }
        let (dir, _) = f.name.rsplit_once('/').unwrap();
        let copy = suite_dir.join(dir).join("by-hash/SHA256").join(&f.sha256);
        if fs::read(&copy).map(|d| sha(&d)).ok().as_deref() != Some(f.sha256.as_str()) {
            return Err(format!("{}: by-hash copy missing", f.name));
        }
    }
    Ok(())
}

fn index_debian(feed: &Path, key: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "index",
        "-q",
        "--layout",
        "debian",
        "--suite",
        "stable",
        "--codename",
        "demo",
        "--key",
        key,
    ];
    args.extend_from_slice(extra);
    archman(&args, feed)
}

#[test]
fn publishes_dists_with_per_arch_indexes_and_the_release_apt_expects() {
    let tmp = tempfile::tempdir().unwrap();
    let feed = tmp.path().join("archive");
    deb(&feed, "hello", "1.0", "all");
    deb(&feed, "tool", "1.0", "amd64");
    deb(&feed, "armtool", "1.0", "arm64");
    let (key, public) = keygen(tmp.path());
    let o = index_debian(&feed, &key, &["--valid-for", "7d"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let suite = feed.join("dists/stable");
    consistent(&suite, &public).unwrap();
    let r = release(&suite);
    let a = r.archive.as_ref().unwrap();
    assert_eq!(a.suite, "stable");
    assert_eq!(a.codename.as_deref(), Some("demo"));
    assert_eq!(a.components, ["main"]);
    assert!(a.acquire_by_hash && a.all_in_arch_indexes);
    assert_eq!(r.architectures, ["all", "amd64", "arm64"]);
    assert_eq!(r.valid_until, Some(r.date + 7 * 86400));
    let names: BTreeSet<&str> = r.sha256.iter().map(|f| f.name.as_str()).collect();
    for arch in ["all", "amd64", "arm64"] {
        for f in ["Packages", "Packages.gz", "Packages.xz"] {
            assert!(names.contains(format!("main/binary-{arch}/{f}").as_str()));
        }
    }
    let text = fs::read_to_string(suite.join("Release")).unwrap();
    for field in [
        "Origin: archive\n",
        "Label: archive\n",
        "Suite: stable\n",
        "Codename: demo\n",
        "Acquire-By-Hash: yes\n",
        "Components: main\n",
        "No-Support-for-Architecture-all: Packages\n",
    ] {
        assert!(text.contains(field), "{field:?} missing:\n{text}");
    }
    // Each arch index holds its packages and the arch-all ones; binary-all the latter only.
    let packages = |arch: &str| {
        fs::read_to_string(suite.join(format!("main/binary-{arch}/Packages"))).unwrap()
    };
    let names_in = |arch: &str| -> Vec<String> {
        packages(arch)
            .lines()
            .filter_map(|l| l.strip_prefix("Package: ").map(str::to_string))
            .collect()
    };
    assert_eq!(names_in("amd64"), ["hello", "tool"]);
    assert_eq!(names_in("arm64"), ["armtool", "hello"]);
    assert_eq!(names_in("all"), ["hello"]);
    assert!(packages("amd64").contains("Filename: pool/main/tool_1.0_amd64.deb\n"));
    // The compressed forms decompress to exactly Packages (checked by the real tools).
    for (tool, f) in [("gzip", "Packages.gz"), ("xz", "Packages.xz")] {
        let out = Command::new(tool)
            .args(["-dc"])
            .arg(suite.join("main/binary-amd64").join(f))
            .output()
            .unwrap();
        assert!(out.status.success(), "{tool}");
        assert_eq!(String::from_utf8(out.stdout).unwrap(), packages("amd64"));
    }
    // The flat index is not written in this layout.
    assert!(!feed.join("Packages").exists());

    // A rerun with nothing new changes nothing.
    let before = fs::read(suite.join("InRelease")).unwrap();
    let o = archman_at(
        &[
            "index",
            "-q",
            "--layout",
            "debian",
            "--suite",
            "stable",
            "--codename",
            "demo",
            "--valid-for",
            "7d",
            "--key",
            &key,
        ],
        &feed,
        Some(EPOCH + 100),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(fs::read(suite.join("InRelease")).unwrap(), before);
    // --arch restricts what is published, and says what was left out.
    let o = archman_at(
        &[
            "index",
            "--layout",
            "debian",
            "--suite",
            "stable",
            "--codename",
            "demo",
            "--key",
            &key,
            "--arch",
            "amd64",
        ],
        &feed,
        Some(EPOCH + 200),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("architecture arm64 are not published"),
        "{}",
        stderr(&o)
    );
    assert_eq!(release(&suite).architectures, ["all", "amd64"]);
}

#[test]
fn by_hash_keeps_the_copies_of_the_last_n_releases() {
    let tmp = tempfile::tempdir().unwrap();
    let feed = tmp.path().join("archive");
    deb(&feed, "hello", "1.0", "amd64");
    let (key, public) = keygen(tmp.path());
    let copies = |feed: &Path| -> BTreeSet<String> {
        fs::read_dir(feed.join("dists/stable/main/binary-amd64/by-hash/SHA256"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    let mut generations: Vec<BTreeSet<String>> = Vec::new();
    for round in 0..5i64 {
        deb(&feed, &format!("extra{round}"), "1.0", "amd64");
        let o = archman_at(
            &[
                "index",
                "-q",
                "--layout",
                "debian",
                "--suite",
                "stable",
                "--key",
                &key,
                "--by-hash-keep",
                "3",
            ],
            &feed,
            Some(EPOCH + round * 60),
        );
        assert!(o.status.success(), "{}", stderr(&o));
        consistent(&feed.join("dists/stable"), &public).unwrap();
        let r = release(&feed.join("dists/stable"));
        generations.push(
            r.sha256
                .iter()
                .filter(|f| f.name.starts_with("main/binary-amd64/"))
                .map(|f| f.sha256.clone())
                .collect(),
        );
        let have = copies(&feed);
        // The copies of this Release and the two before it are all there...
        for g in generations.iter().rev().take(3) {
            assert!(g.is_subset(&have), "round {round}: a kept copy is missing");
        }
        // ...and nothing older.
        let kept: BTreeSet<String> = generations
            .iter()
            .rev()
            .take(3)
            .flatten()
            .cloned()
            .collect();
        assert_eq!(have, kept, "round {round}");
    }
}

#[test]
fn kill_9_at_any_moment_leaves_a_consistent_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let feed = tmp.path().join("archive");
    for i in 0..80 {
        deb(
            &feed,
            &format!("pkg{i:03}"),
            "1.0",
            if i % 2 == 0 { "all" } else { "amd64" },
        );
    }
    let (key, public) = keygen(tmp.path());
    let suite = feed.join("dists/stable");
    let args: Vec<&str> = vec![
        "index",
        "-q",
        "--no-cache",
        "--layout",
        "debian",
        "--suite",
        "stable",
        "--key",
        &key,
    ];
    let run = |_: &[&str]| args.clone();
    let o = archman_at(&run(&[]), &feed, None);
    assert!(o.status.success(), "{}", stderr(&o));
    consistent(&suite, &public).unwrap();
    let mut killed_mid_publish = 0;
    for round in 0..30u64 {
        deb(&feed, "pkg000", &format!("1.{round}"), "all");
        let mut child = Command::new(ARCHMAN)
            .args(run(&[]))
            .arg(&feed)
            .env_remove("SOURCE_DATE_EPOCH")
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_micros(round * 2000));
        let _ = child.kill();
        let _ = child.wait();
        if suite.join(archman::index::JOURNAL).exists() {
            killed_mid_publish += 1;
        } else {
            consistent(&suite, &public).unwrap_or_else(|e| panic!("round {round}: {e}"));
        }
        let o = archman_at(&run(&[]), &feed, None);
        assert!(o.status.success(), "{}", stderr(&o));
        consistent(&suite, &public).unwrap_or_else(|e| panic!("round {round} after rerun: {e}"));
        for dir in [suite.clone(), suite.join("main/binary-amd64")] {
            assert!(fs::read_dir(&dir).unwrap().all(|e| {
                !e.unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with(".archman-tmp")
            }));
        }
    }
    eprintln!("{killed_mid_publish} of 30 kills landed inside a publish");
}

#[test]
fn symlinked_dists_escape_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let feed = tmp.path().join("archive");
    deb(&feed, "hello", "1.0", "all");
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("sentinel"), "untouched").unwrap();
    std::os::unix::fs::symlink(&outside, feed.join("dists")).unwrap();
    let (key, _) = keygen(tmp.path());
    let o = index_debian(&feed, &key, &[]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("dists: not a directory (a symlink"),
        "{}",
        stderr(&o)
    );
    let left: Vec<_> = fs::read_dir(&outside).unwrap().collect();
    assert_eq!(left.len(), 1, "something was written outside the archive");
    assert_eq!(
        fs::read_to_string(outside.join("sentinel")).unwrap(),
        "untouched"
    );
}

#[test]
fn bad_layout_arguments_are_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let feed = tmp.path().join("archive");
    deb(&feed, "hello", "1.0", "all");
    for (args, message) in [
        (&["--suite", "../evil"][..], "--suite \"../evil\""),
        (
            &["--suite", "stable", "--component", "a/b"][..],
            "--component \"a/b\"",
        ),
        (&["--suite", "stable", "--arch", "all"][..], "--arch all"),
        (
            &["--suite", "stable", "--by-hash-keep", "0"][..],
            "--by-hash-keep 0",
        ),
    ] {
        let mut a = vec!["index", "--layout", "debian"];
        a.extend_from_slice(args);
        let o = archman(&a, &feed);
        assert!(!o.status.success(), "{args:?}");
        assert!(stderr(&o).contains(message), "{args:?}: {}", stderr(&o));
        assert!(!feed.join("dists").exists());
    }
    let o = archman(&["index", "--layout", "debian"], &feed);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--suite"), "{}", stderr(&o));
}

#[test]
fn the_audit_log_records_every_file_of_the_archive_with_both_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let feed = tmp.path().join("archive");
    deb(&feed, "hello", "1.0", "amd64");
    let (key, _) = keygen(tmp.path());
    let log = tmp.path().join("audit.jsonl");
    let o = archman(
        &[
            "--audit-log",
            log.to_str().unwrap(),
            "index",
            "-q",
            "--layout",
            "debian",
            "--suite",
            "stable",
            "--codename",
            "demo",
            "--key",
            &key,
        ],
        &feed,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(feed.join("dists/demo/Release").is_file(), "codename link");
    let text = fs::read_to_string(&log).unwrap();
    let record: serde_json::Value =
        serde_json::from_str(text.lines().find(|l| l.contains("feed-published")).unwrap()).unwrap();
    let files: Vec<&str> = record["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    for f in [
        "dists/stable/InRelease",
        "dists/stable/Release.gpg",
        "dists/stable/Release",
        "dists/stable/main/binary-amd64/Packages.xz",
    ] {
        assert!(files.contains(&f), "{f} not recorded: {files:?}");
    }
    assert_eq!(
        record["openpgp_key"].as_str().map(str::len),
        Some(40),
        "{record}"
    );
}

#[test]
fn archman_check_verifies_inrelease_and_release_gpg() {
    let tmp = tempfile::tempdir().unwrap();
    let feed = tmp.path().join("feed");
    fs::create_dir_all(&feed).unwrap();
    deb(&feed, "hello", "1.0", "all");
    let (key, _) = keygen(tmp.path());
    let public = tmp.path().join("k.pub");
    let public = public.to_str().unwrap();
    let o = archman(&["index", "-q", "--key", &key], &feed);
    assert!(o.status.success(), "{}", stderr(&o));
    let check = |feed: &Path| {
        let o = Command::new(ARCHMAN)
            .args(["check", "-p", public])
            .arg(feed)
            .output()
            .unwrap();
        (
            o.status.success(),
            format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o)),
        )
    };
    let (ok, out) = check(&feed);
    assert!(ok, "{out}");
    assert!(
        out.contains("InRelease by key") && out.contains("Release.gpg by key"),
        "{out}"
    );
    // A stale InRelease: validly signed, over an earlier Release.
    let old = fs::read(feed.join("InRelease")).unwrap();
    deb(&feed, "other", "1.0", "all");
    let o = archman_at(&["index", "-q", "--key", &key], &feed, Some(EPOCH + 60));
    assert!(o.status.success(), "{}", stderr(&o));
    fs::write(feed.join("InRelease"), &old).unwrap();
    let (ok, out) = check(&feed);
    assert!(
        !ok && out.contains("the text it carries is not Release"),
        "{out}"
    );
    // An edited one, and a Release.gpg over other bytes.
    let text = String::from_utf8(old)
        .unwrap()
        .replace("Origin: feed", "Origin: evil");
    fs::write(feed.join("InRelease"), text).unwrap();
    fs::write(
        feed.join("Release.gpg"),
        fs::read_to_string(feed.join("Release.gpg"))
            .unwrap()
            .replace('A', "B"),
    )
    .unwrap();
    let (ok, out) = check(&feed);
    assert!(!ok, "{out}");
    assert!(
        out.contains("InRelease: not an OpenPGP signature of Release"),
        "{out}"
    );
    assert!(out.contains("Release.gpg: "), "{out}");
}
