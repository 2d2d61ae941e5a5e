//! Helpers shared by the scenario tests: fresh keys, keyrings built and signed in memory, and a
//! snapshot of a directory tree to prove that a refusal changed nothing.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use feeds::usign::{Fingerprint, SecretKey};
use keyring_pkg::accept::{Refusal, Verified, accept_chain, accept_initial};
use keyring_pkg::apply::{ApplyError, ApplyReport, apply, load_trusted, lock};
use keyring_pkg::{KeyEntry, Keyring, Role, SignatureSet, SignedKeyring, Status};

/// "Now" in every test: Fri, 15 Jan 2027.
pub const NOW: i64 = 1_800_000_000;
pub const DAY: i64 = 86_400;
pub const YEAR: i64 = 365 * DAY;

pub fn key() -> SecretKey {
    SecretKey::generate(None).unwrap().0
}

pub fn keys(n: usize) -> Vec<SecretKey> {
    (0..n).map(|_| key()).collect()
}

/// Keyring `example` serial 1 with these roots and feed keys, valid for a year.
pub fn keyring(threshold: u32, roots: &[&SecretKey], feeds: &[&SecretKey]) -> Keyring {
    let mut k = Keyring::new("example", 1, NOW - DAY, NOW + YEAR, threshold).unwrap();
    for r in roots {
        k.add_key(KeyEntry::new(&r.public_key(), Role::Root))
            .unwrap();
    }
    for f in feeds {
        k.add_key(KeyEntry::new(&f.public_key(), Role::Feed))
            .unwrap();
    }
    k
}

/// `k` with its signature blocks by `by` (in that order, duplicates kept).
pub fn signed(k: &Keyring, by: &[&SecretKey]) -> SignedKeyring {
    let bytes = k.to_bytes().unwrap();
    let mut blocks = Vec::new();
    for key in by {
        blocks.extend(key.sign(&bytes).unwrap().to_file_bytes());
    }
    SignedKeyring::parse(&bytes, &blocks).unwrap()
}

/// The next serial of `k`, a day later, changed by `edit`.
pub fn next(k: &Keyring, edit: impl FnOnce(&mut Keyring)) -> Keyring {
    let mut n = k.clone();
    n.set_serial(k.serial() + 1);
    n.set_date(k.date() + 1);
    edit(&mut n);
    n
}

pub fn set_status(k: &mut Keyring, key: &SecretKey, status: Status) {
    k.key_mut(key.fingerprint()).unwrap().status = status;
}

pub fn add(k: &mut Keyring, key: &SecretKey, role: Role) {
    k.add_key(KeyEntry::new(&key.public_key(), role)).unwrap();
}

/// Every file, directory and link under `dir`, with contents, for before/after comparisons.
pub fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for e in entries {
            let e = e.unwrap();
            let path = e.path();
            let rel = path.strip_prefix(base).unwrap().display().to_string();
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.file_type().is_symlink() {
                out.insert(
                    rel,
                    format!("-> {}", fs::read_link(&path).unwrap().display()),
                );
            } else if meta.is_dir() {
                out.insert(rel.clone(), "dir".into());
                walk(base, &path, out);
            } else {
                out.insert(
                    rel,
                    String::from_utf8_lossy(&fs::read(&path).unwrap()).into_owned(),
                );
            }
        }
    }
    walk(dir, dir, &mut out);
    out
}

/// What a refresh returned.
#[derive(Debug)]
pub enum RefreshError {
    Refused(Refusal),
    Apply(ApplyError),
}

/// What `prokit keyring refresh` does with the library: lock, read the trusted keyring, accept
/// the offered chain, apply.
pub fn refresh<'a>(
    root: &Path,
    offered: impl IntoIterator<Item = &'a SignedKeyring>,
    now: i64,
) -> Result<ApplyReport, RefreshError> {
    let guard = lock(root).map_err(RefreshError::Apply)?;
    let current = load_trusted(root, "example")
        .map_err(RefreshError::Apply)?
        .expect("a trusted keyring");
    let verified: Verified = accept_chain(&current, offered, now).map_err(RefreshError::Refused)?;
    apply(&guard, &verified, now).map_err(RefreshError::Apply)
}

/// What `prokit keyring init --root-fingerprint` does.
pub fn bootstrap(root: &Path, first: &SignedKeyring, root_fp: Fingerprint) -> ApplyReport {
    let guard = lock(root).unwrap();
    let verified = accept_initial(first, Some(root_fp), NOW).unwrap();
    apply(&guard, &verified, NOW).unwrap()
}

/// The file names in `<root>/etc/opkg/keys`, sorted.
pub fn key_files(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = match fs::read_dir(root.join("etc/opkg/keys")) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

/// usign's file name for a key: the fingerprint in 16 digits (`"%016"PRIx64`).
pub fn name_of(key: &SecretKey) -> String {
    key.fingerprint().to_string()
}

/// The file names the keys are installed under, one each, sorted (see `key_file_name`).
pub fn names_of(keys: &[&SecretKey]) -> Vec<String> {
    let mut names: Vec<String> = keys
        .iter()
        .map(|k| keyring_pkg::package::key_file_name(k.fingerprint()))
        .collect();
    names.sort();
    names
}

pub fn no_sigs() -> SignatureSet {
    SignatureSet::new()
}
