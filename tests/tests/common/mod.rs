//! Fixtures for the prokit scenarios: a signed feed built with archman from packages made by
//! `feeds::build`, the prokit binary, and readers of what it leaves in a root.

#![allow(dead_code)]
// A fixture that cannot be made says so on stderr (SKIPPED).
#![allow(clippy::print_stderr)]

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use e2e::{bin, run};
use feeds::build::PackageBuilder;
use feeds::control::ParagraphReader;

pub const EPOCH: &str = "1795315200";

/// A feed directory and the key that signs it.
pub struct Fixture {
    pub tmp: tempfile::TempDir,
    pub feed: PathBuf,
    pub sec: PathBuf,
    pub public: PathBuf,
    /// The Date of the next index: each index is a minute newer than the last (clients
    /// refuse a Release whose Date goes back, or repeats with other contents).
    next_date: std::sync::atomic::AtomicI64,
}

/// The current time, Unix seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

impl Fixture {
    pub fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let feed = tmp.path().join("feed");
        fs::create_dir(&feed).unwrap();
        Fixture::keyed(tmp, feed)
    }

    /// A fixture over an existing directory of packages (indexed in place).
    pub fn with_feed(dir: &Path) -> Fixture {
        Fixture::keyed(tempfile::tempdir().unwrap(), dir.to_path_buf())
    }

    fn keyed(tmp: tempfile::TempDir, feed: PathBuf) -> Fixture {
        let (sec, public) = (tmp.path().join("feed.sec"), tmp.path().join("feed.pub"));
        let (ok, _, err) = run(Command::new(bin("archman"))
            .arg("keygen")
            .arg("-s")
            .arg(&sec)
            .arg("-p")
            .arg(&public));
        assert!(ok, "{err}");
        Fixture {
            tmp,
            feed,
            sec,
            public,
            next_date: std::sync::atomic::AtomicI64::new(now() - 3600),
        }
    }

    /// The signing key's fingerprint (16 hex digits).
    pub fn fingerprint(&self) -> String {
        feeds::usign::PublicKey::read_path(&self.public)
            .unwrap()
            .fingerprint()
            .to_string()
    }

    /// Writes `<name>_<version>_all.ipk` with the given extra control fields, files and
    /// conffiles.
    pub fn add(
        &self,
        name: &str,
        version: &str,
        fields: &str,
        files: &[(&str, &str)],
        conffiles: Option<&str>,
    ) -> PathBuf {
        let control = format!(
            "Package: {name}\nVersion: {version}\n{fields}Architecture: all\nMaintainer: T <t@example.org>\nDescription: the {name} package\n"
        );
        let mut b = PackageBuilder::new(control).mtime(1_700_000_000);
        for (path, data) in files {
            b = b.file(path, 0o644, data.as_bytes().to_vec());
        }
        if let Some(c) = conffiles {
            b = b.control_file("conffiles", 0o644, c.as_bytes().to_vec());
        }
        self.write(&format!("{name}_{version}_all.ipk"), &b.build().unwrap())
    }

    /// Writes raw bytes as a package file in the feed.
    pub fn write(&self, file: &str, bytes: &[u8]) -> PathBuf {
        let p = self.feed.join(file);
        fs::write(&p, bytes).unwrap();
        p
    }

    /// `archman index --key … --valid-for 7d` over the feed, plus `extra` options, dated a
    /// minute after the previous index.
    pub fn index_with(&self, extra: &[&str]) {
        self.index_by(&self.sec, extra);
    }

    /// Like `index_with`, signed by the secret key `sec`.
    pub fn index_by(&self, sec: &Path, extra: &[&str]) {
        let date = self
            .next_date
            .fetch_add(60, std::sync::atomic::Ordering::SeqCst);
        let (ok, _, err) = run(Command::new(bin("archman"))
            .args(["index", "-q", "--valid-for", "7d", "--key"])
            .arg(sec)
            .args(extra)
            .arg(&self.feed)
            .env("SOURCE_DATE_EPOCH", date.to_string()));
        assert!(ok, "archman index: {err}");
    }

    pub fn index(&self) {
        self.index_with(&[]);
    }
}

/// Runs archman with `args`; returns (success, stdout, stderr).
pub fn archman(args: &[&str]) -> (bool, String, String) {
    run(Command::new(bin("archman")).args(args))
}

/// Runs prokit (with `--root ROOT` when given); returns (success, stdout, stderr).
pub fn prokit(root: Option<&str>, args: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new(bin("prokit"));
    if let Some(r) = root {
        cmd.arg("--root").arg(r);
    }
    cmd.args(args).env("SOURCE_DATE_EPOCH", EPOCH);
    run(&mut cmd)
}

/// The status stanza of `name` in a root's opkg database (empty when absent).
pub fn status_of(root: &Path, name: &str) -> String {
    let text = fs::read_to_string(root.join("usr/lib/opkg/status")).unwrap_or_default();
    text.split("\n\n")
        .find(|s| s.lines().any(|l| l == format!("Package: {name}")))
        .unwrap_or("")
        .to_string()
}

fn stanzas(packages: &Path) -> Vec<feeds::control::Paragraph> {
    let text = fs::read(packages).unwrap();
    ParagraphReader::new(&text[..])
        .map(|p| p.unwrap())
        .collect()
}

/// Every package name in a Packages file, sorted and deduplicated.
pub fn package_names(packages: &Path) -> Vec<String> {
    let set: BTreeSet<String> = stanzas(packages)
        .iter()
        .filter_map(|p| p.get("Package").map(|s| s.trim().to_string()))
        .collect();
    set.into_iter().collect()
}

/// The names the feed's Depends mention but neither carries nor provides.
pub fn missing_dependencies(packages: &Path) -> Vec<String> {
    let all = stanzas(packages);
    let mut have = BTreeSet::new();
    for p in &all {
        have.insert(p.get("Package").unwrap_or("").trim().to_string());
        for prov in feeds::relation::parse_relations(p.get("Provides").unwrap_or("")).unwrap() {
            for r in prov.relations() {
                have.insert(r.name().to_string());
            }
        }
    }
    let mut missing = BTreeSet::new();
    for p in &all {
        for field in ["Depends", "Pre-Depends"] {
            for alts in feeds::relation::parse_relations(p.get(field).unwrap_or("")).unwrap() {
                for r in alts.relations() {
                    if !have.contains(r.name()) {
                        missing.insert(r.name().to_string());
                    }
                }
            }
        }
    }
    missing.into_iter().collect()
}

/// A make-corpus feed of `n` packages in `format`, generated once under target/ and copied
/// fresh for each test; None (after a message) without the corpus generator outside CI.
pub fn corpus(n: usize, format: &str) -> Option<PathBuf> {
    let generator = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/make-corpus");
    if !generator.is_file() {
        if std::env::var_os("CI").is_some() {
            panic!("{} is missing, and CI must have it", generator.display());
        }
        eprintln!("SKIPPED: {} is absent (not under CI)", generator.display());
        return None;
    }
    let tmp = tempfile::tempdir().unwrap().keep();
    let dir = tmp.join(format!("corpus-{format}-{n}"));
    let (ok, _, err) = run(Command::new("python3")
        .arg(&generator)
        .arg("-q")
        .arg(&dir)
        .arg(n.to_string())
        .arg(format)
        .arg("1"));
    assert!(ok, "make-corpus: {err}");
    Some(dir)
}

/// Every file under `root` with its bytes (symlinks as their targets): what a command that
/// must change nothing is checked against.
pub fn snapshot(root: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    for e in walkdir::WalkDir::new(root).into_iter().flatten() {
        let key = e.path().display().to_string();
        if e.file_type().is_file() {
            out.insert(key, fs::read(e.path()).unwrap_or_default());
        } else if e.file_type().is_symlink() {
            let target = fs::read_link(e.path()).unwrap_or_default();
            out.insert(key, target.to_string_lossy().into_owned().into_bytes());
        }
    }
    out
}

/// `prokit bootstrap ROOT --feed main=<server> --pubkey <the fixture's key> ARGS…`, asserted
/// to succeed.
pub fn bootstrap(f: &Fixture, server: &e2e::HttpServer, root: &Path, args: &[&str]) {
    let url = format!("main={}", server.url(""));
    let mut all = vec![
        "bootstrap",
        root.to_str().unwrap(),
        "--feed",
        &url,
        "--pubkey",
        f.public.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    let (ok, out, err) = prokit(None, &all);
    assert!(ok, "bootstrap: {out}{err}");
}
