//! Applying an accepted keyring to a root filesystem, atomically, under a lock.
//!
//! Layout under `<root>`:
//!
//! ```text
//! var/lib/prokit/keyrings/.lock                 the lock file (flock)
//! var/lib/prokit/keyrings/<name>                -> .<name>_<serial>_<hex>   (a symlink)
//! var/lib/prokit/keyrings/.<name>_<serial>_<hex>/keyring, keyring.sig
//! etc/opkg/keys/<fp>                            one usign public key per trusted feed key
//! ```
//!
//! The trusted state of keyring `<name>` is read through `<name>/keyring` and
//! `<name>/keyring.sig`. [`apply`] writes the new state as a complete directory beside the old
//! one (files fsynced), then swaps it in by renaming a new symlink over `<name>`: at any moment
//! — a kill -9 included — `<name>` is the old complete state or the new one. Leftovers of an
//! interrupted run (staging directories, temporary links and files) are removed the next time
//! the lock is taken.
//!
//! `etc/opkg/keys/` is synced before the swap: keys the new keyring does not trust are removed
//! first, then its trusted feed keys are written. "Not trusted" covers every key the old or the
//! new keyring lists that is not an active, unexpired feed key of the new one (retired, revoked,
//! expired, root keys, keys dropped from the keyring); such files are removed whatever their
//! content and whoever put them there, under both the 16-digit name usign looks up and the
//! unpadded one usign used before 2020. A file under another name holding a revoked key is
//! removed too. Other files are left alone (an unpadded copy of a trusted key that an earlier
//! version wrote stays). Trusted keys are written under one name, the 16-digit
//! [`crate::package::key_file_name`]. A
//! crash after the sync and before the swap leaves the new keys with the old state; the next
//! refresh walks the chain again and completes the swap.
//!
//! Paths are resolved inside the root as a chroot would, with [`safe_fs::Root`] (an absolute or
//! `..` symlink in the root cannot lead outside it, nor can a concurrent swap), and everything
//! in the state and key directories is done through their descriptors, never through a
//! symlink: the lock file, the state directories and the key files are opened `O_NOFOLLOW`.
//!
//! [`lock`] takes an exclusive `flock` on the lock file; hold the [`KeyringLock`] across
//! [`load_trusted`] → accept → [`apply`] so that two refreshes serialise. [`apply`] also
//! refuses if the trusted state changed since the keyring was accepted.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use feeds::usign::{Fingerprint, PublicKey};
use safe_fs::{Dir, EntryKind, FsError, Root, WriteOptions};

use crate::accept::Verified;
use crate::manifest::{MAX_MANIFEST_LEN, Role, Status, is_valid_name};
use crate::package::{key_file_name, key_file_names};
use crate::signatures::{MAX_SIGNATURE_FILE_LEN, ParseError, SignedKeyring};
use crate::workdir::{MANIFEST_FILE, SIGNATURE_FILE};

/// Where trusted keyrings live, relative to the root.
pub const STATE_DIR: &str = "var/lib/prokit/keyrings";
/// opkg's key directory, relative to the root.
pub const KEYS_DIR: &str = "etc/opkg/keys";
/// The lock file's name in [`STATE_DIR`].
pub const LOCK_FILE: &str = ".lock";

/// Why applying or reading trusted state failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: trusted keyring state is unreadable: {source}", path.display())]
    State {
        path: PathBuf,
        #[source]
        source: ParseError,
    },
    #[error("{}: {reason}", path.display())]
    BadState { path: PathBuf, reason: String },
    #[error("keyring name {name:?} is not valid")]
    BadName { name: String },
    #[error(
        "keyring {name}: the trusted keyring changed since it was read (expected serial {}, found {}); run again",
        show(*expected), show(*found)
    )]
    StateChanged {
        name: String,
        expected: Option<u64>,
        found: Option<u64>,
    },
}

fn show(serial: Option<u64>) -> String {
    serial.map_or_else(|| "none".into(), |s| s.to_string())
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ApplyError + '_ {
    move |source| ApplyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Test-only failure injection: an error at a named step stands for a kill at that moment
/// (nothing after it runs, nothing is cleaned up).
#[cfg(test)]
mod failpoint {
    use std::cell::Cell;
    thread_local!(pub static AT: Cell<Option<&'static str>> = const { Cell::new(None) });
}

fn failpoint(_name: &'static str) -> io::Result<()> {
    #[cfg(test)]
    if failpoint::AT.with(|at| at.get()) == Some(_name) {
        return Err(io::Error::other(format!("failpoint {_name}")));
    }
    Ok(())
}

/// An exclusive lock on a root's keyring state; released on drop.
#[derive(Debug)]
pub struct KeyringLock {
    _file: File,
    root: PathBuf,
    /// The root, opened: every path below is resolved inside it.
    fs_root: Root,
    /// The state directory, [`STATE_DIR`] resolved in the root.
    state: Dir,
}

impl KeyringLock {
    /// The root this lock is for.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

/// Takes the lock of `root`'s keyring state (creating `var/lib/prokit/keyrings/`), waiting
/// for another holder to release it.
pub fn lock(root: &Path) -> Result<KeyringLock, ApplyError> {
    let lock = open_lock_file(root)?;
    lock._file.lock().map_err(io_err(&lock_path(&lock)))?;
    Ok(lock)
}

/// Takes the lock if it is free; `Ok(None)` when another process holds it.
pub fn try_lock(root: &Path) -> Result<Option<KeyringLock>, ApplyError> {
    let lock = open_lock_file(root)?;
    match lock._file.try_lock() {
        Ok(()) => Ok(Some(lock)),
        Err(fs::TryLockError::WouldBlock) => Ok(None),
        Err(fs::TryLockError::Error(e)) => Err(io_err(&lock_path(&lock))(e)),
    }
}

fn lock_path(lock: &KeyringLock) -> PathBuf {
    lock.state.path().join(LOCK_FILE)
}

/// Opens (creating) the lock file, not yet locked. The state directory is resolved inside the
/// root; the lock file is never opened through a symlink, nor if it is not a regular file.
fn open_lock_file(root: &Path) -> Result<KeyringLock, ApplyError> {
    let fs_root = Root::open(root)?;
    let state = fs_root.open_dir(STATE_DIR, true)?;
    let file = state.open_or_create(LOCK_FILE, 0o644)?;
    Ok(KeyringLock {
        _file: file,
        root: root.into(),
        fs_root,
        state,
    })
}

fn check_name(name: &str) -> Result<(), ApplyError> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(ApplyError::BadName { name: name.into() })
    }
}

/// The name, in the state directory, of the directory holding the state of keyring `name`
/// (the target of the link `<name>`, or `<name>` itself when it is a plain directory), or
/// `None` when there is no state.
fn state_target(state: &Dir, name: &str) -> Result<Option<String>, ApplyError> {
    let link = state.path().join(name);
    match state.kind(name)? {
        None => {
            // Between moving a plain state directory aside and linking the new state in.
            let aside = aside_name(name);
            Ok((state.kind(&aside)? == Some(EntryKind::Dir)).then_some(aside))
        }
        // A plain directory (made by hand or by another tool): read it as it is.
        Some(EntryKind::Dir) => Ok(Some(name.to_string())),
        Some(EntryKind::Symlink) => {
            let target = state.read_link(name)?;
            match target.to_str() {
                Some(t) if t.starts_with(&format!(".{name}_")) && !t.contains('/') => {
                    Ok(Some(t.to_string()))
                }
                _ => Err(ApplyError::BadState {
                    path: link,
                    reason: format!(
                        "points to {}, not a state directory beside it",
                        target.display()
                    ),
                }),
            }
        }
        Some(_) => Err(ApplyError::BadState {
            path: link,
            reason: "neither the state symlink nor a directory".into(),
        }),
    }
}

/// Reads the state directory `dir_name` of the state directory (not through a symlink).
fn read_state(state: &Dir, dir_name: &str) -> Result<SignedKeyring, ApplyError> {
    let missing = |path: PathBuf| ApplyError::BadState {
        path,
        reason: "missing".into(),
    };
    let dir = state
        .open_subdir(dir_name)?
        .ok_or_else(|| missing(state.path().join(dir_name)))?;
    let read = |file: &str, max: usize| -> Result<Vec<u8>, ApplyError> {
        dir.read_file(file, max as u64)?
            .ok_or_else(|| missing(dir.path().join(file)))
    };
    let manifest = read(MANIFEST_FILE, MAX_MANIFEST_LEN)?;
    let sigs = read(SIGNATURE_FILE, MAX_SIGNATURE_FILE_LEN)?;
    SignedKeyring::parse(&manifest, &sigs).map_err(|source| ApplyError::State {
        path: dir.path().join(MANIFEST_FILE),
        source,
    })
}

fn load_in(state: &Dir, name: &str) -> Result<Option<SignedKeyring>, ApplyError> {
    let mut attempts = 0;
    loop {
        let Some(dir) = state_target(state, name)? else {
            return Ok(None);
        };
        let signed = match read_state(state, &dir) {
            Ok(signed) => signed,
            // A reader without the lock may lose a race with an apply that swapped the state
            // and removed the old directory: read the new one.
            Err(_) if attempts < 3 && state_target(state, name)?.as_ref() != Some(&dir) => {
                attempts += 1;
                continue;
            }
            Err(e) => return Err(e),
        };
        if signed.name() != name {
            return Err(ApplyError::BadState {
                path: state.path().join(&dir).join(MANIFEST_FILE),
                reason: format!("holds keyring {:?}, not {name:?}", signed.name()),
            });
        }
        return Ok(Some(signed));
    }
}

/// The state directory of `root` for reading, or `None` when the root or the directory does
/// not exist.
fn open_state(root: &Path) -> Result<Option<Dir>, ApplyError> {
    let found = Root::open(root).and_then(|r| r.open_dir(STATE_DIR, false));
    match found {
        Ok(dir) => Ok(Some(dir)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The trusted keyring `name` of `root`, or `None` when none was installed. Needs no lock:
/// the state is swapped atomically.
pub fn load_trusted(root: &Path, name: &str) -> Result<Option<SignedKeyring>, ApplyError> {
    check_name(name)?;
    let Some(state) = open_state(root)? else {
        return Ok(None);
    };
    load_in(&state, name)
}

/// The names of the keyrings trusted in `root`, sorted.
pub fn trusted_names(root: &Path) -> Result<Vec<String>, ApplyError> {
    let Some(state) = open_state(root)? else {
        return Ok(Vec::new());
    };
    Ok(state
        .entries()?
        .into_iter()
        .filter_map(|name| name.into_string().ok())
        .filter(|name| is_valid_name(name))
        .collect())
}

/// Removes what an interrupted [`apply`] of `name` left in the state directory: staging
/// directories and temporary links not pointed to by `<name>`.
fn clean_state(state: &Dir, name: &str) -> Result<(), ApplyError> {
    let aside = aside_name(name);
    if state.kind(name)?.is_none() && state.kind(&aside)?.is_some() {
        // Interrupted while replacing a plain state directory: put it back.
        state.rename(&aside, name)?;
        state.sync()?;
    }
    let live = state_target(state, name)?;
    let prefix = format!(".{name}_");
    for entry in state.entries()? {
        let Some(text) = entry.to_str() else {
            continue;
        };
        if !text.starts_with(&prefix) || live.as_deref() == Some(text) {
            continue;
        }
        match state.kind(text)? {
            Some(EntryKind::Dir) => {
                state.remove_dir_all(text)?;
            }
            Some(_) => {
                state.remove_file(text)?;
            }
            None => {}
        }
    }
    Ok(())
}

/// What [`apply`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApplyReport {
    pub name: String,
    pub serial: u64,
    /// The serial trusted before (`None`: first keyring).
    pub previous: Option<u64>,
    /// The trusted state was replaced (false: already current; only the keys were synced).
    pub state_replaced: bool,
    /// Key files written (new or corrected).
    pub keys_written: Vec<Fingerprint>,
    /// Key files removed.
    pub keys_removed: Vec<PathBuf>,
}

/// Applies an accepted keyring to the root of `lock`: syncs `etc/opkg/keys/`, then swaps the
/// trusted state. When the keyring is the one already trusted, only the keys are synced (this
/// also removes keys that expired since, or that another tool put back). Refuses when the
/// trusted state is no longer the one `verified` was accepted from; a first keyring
/// ([`accept_initial`](crate::accept::accept_initial), an explicit user action) replaces
/// whatever is trusted.
pub fn apply(lock: &KeyringLock, verified: &Verified, now: i64) -> Result<ApplyReport, ApplyError> {
    let signed = verified.signed();
    let name = signed.name().to_string();
    check_name(&name)?;
    let state = &lock.state;
    clean_state(state, &name)?;
    let old = load_in(state, &name)?;
    if let Some((serial, hash)) = verified.base() {
        let found = old.as_ref().map(|o| (o.serial(), o.sha256()));
        if found != Some((serial, hash)) {
            return Err(ApplyError::StateChanged {
                name,
                expected: Some(serial),
                found: old.map(|o| o.serial()),
            });
        }
    }
    let replace = match &old {
        Some(o) => o.bytes() != signed.bytes() || o.signatures() != signed.signatures(),
        None => true,
    };
    let keys = lock.fs_root.open_dir(KEYS_DIR, true)?;
    let sync = sync_keys(&keys, old.as_ref(), signed, now)?;
    if replace {
        swap_state(state, signed)?;
    }
    Ok(ApplyReport {
        name,
        serial: signed.serial(),
        previous: old.map(|o| o.serial()),
        state_replaced: replace,
        keys_written: sync.0,
        keys_removed: sync.1,
    })
}

/// Where a plain state directory is moved while it is replaced by the state symlink.
fn aside_name(name: &str) -> String {
    format!(".{name}_old")
}

/// Writes `signed` into a new state directory and swaps it in.
fn swap_state(state: &Dir, signed: &SignedKeyring) -> Result<(), ApplyError> {
    let name = signed.name();
    let suffix = safe_fs::random_hex(8);
    let staged_name = format!(".{name}_{}_{suffix}", signed.serial());
    let staged = state.create_dir(&staged_name, 0o755)?;
    let opts = WriteOptions::default();
    staged.write_atomic(MANIFEST_FILE, signed.bytes(), opts)?;
    failpoint("staged-manifest").map_err(io_err(&staged.path().join(MANIFEST_FILE)))?;
    staged.write_atomic(SIGNATURE_FILE, &signed.signatures().to_bytes(), opts)?;
    staged.sync()?;
    failpoint("staged").map_err(io_err(staged.path()))?;
    let link_tmp = format!(".{name}_link_{suffix}");
    state.symlink(Path::new(&staged_name), &link_tmp)?;
    failpoint("linked").map_err(io_err(&state.path().join(&link_tmp)))?;
    if state.kind(name)? == Some(EntryKind::Dir) {
        // A plain directory cannot be replaced by rename; move it aside first (readers and
        // the next run's cleanup find it there if we are interrupted). It is removed as a
        // leftover by the cleanup below.
        let aside = aside_name(name);
        state.rename(name, &aside)?;
        failpoint("moved-aside").map_err(io_err(&state.path().join(&aside)))?;
    }
    state.rename(&link_tmp, name)?;
    state.sync()?;
    failpoint("swapped").map_err(io_err(&state.path().join(name)))?;
    clean_state(state, name)
}

/// Syncs the key directory; returns the fingerprints written and the paths removed.
fn sync_keys(
    keys: &Dir,
    old: Option<&SignedKeyring>,
    new: &SignedKeyring,
    now: i64,
) -> Result<(Vec<Fingerprint>, Vec<PathBuf>), ApplyError> {
    let keyring = new.keyring();
    let trusted: BTreeMap<Fingerprint, &PublicKey> = keyring
        .usable_keys(Role::Feed, now)
        .map(|k| (k.fingerprint(), &k.public_key))
        .collect();
    let mut untrusted: BTreeSet<Fingerprint> = keyring.keys().map(|k| k.fingerprint()).collect();
    if let Some(old) = old {
        untrusted.extend(old.keyring().keys().map(|k| k.fingerprint()));
    }
    untrusted.retain(|fp| !trusted.contains_key(fp));
    let revoked: BTreeSet<[u8; 32]> = keyring
        .keys()
        .chain(old.into_iter().flat_map(|o| o.keyring().keys()))
        .filter(|k| k.status == Status::Revoked)
        .map(|k| *k.public_key.as_bytes())
        .collect();
    let trusted_names: BTreeSet<String> =
        trusted.keys().flat_map(|fp| key_file_names(*fp)).collect();

    let mut removed = Vec::new();
    let mut remove = |name: &str| -> Result<(), ApplyError> {
        if keys.remove_file(name)? {
            removed.push(keys.path().join(name));
        }
        Ok(())
    };
    let untrusted_names: BTreeSet<String> = untrusted
        .iter()
        .flat_map(|fp| key_file_names(*fp))
        .filter(|n| !trusted_names.contains(n))
        .collect();
    for entry in keys.entries()? {
        let Some(file_name) = entry.to_str() else {
            continue;
        };
        let kind = match keys.kind(file_name)? {
            None | Some(EntryKind::Dir) => continue,
            Some(kind) => kind,
        };
        if untrusted_names.contains(file_name) || safe_fs::is_temp_name(file_name) {
            remove(file_name)?;
            continue;
        }
        let EntryKind::File { len } = kind else {
            continue;
        };
        if trusted_names.contains(file_name) {
            continue;
        }
        // Another name: remove it only if it holds a revoked key.
        let max = feeds::usign::MAX_FILE_LEN as u64;
        if len <= max
            && let Ok(Some(bytes)) = keys.read_file(file_name, max)
            && let Ok(key) = PublicKey::parse(&bytes)
            && revoked.contains(key.as_bytes())
        {
            remove(file_name)?;
        }
    }
    failpoint("keys-removed").map_err(io_err(keys.path()))?;
    let mut written = Vec::new();
    for (fp, key) in &trusted {
        let bytes = crate::manifest::canonical_public_key(key).to_file_bytes();
        let name = key_file_name(*fp);
        // A symlink is not read (an error here), so it is replaced by the file.
        let same = keys
            .read_file(&name, bytes.len() as u64)
            .ok()
            .flatten()
            .is_some_and(|b| b == bytes);
        if !same {
            keys.write_atomic(&name, &bytes, WriteOptions::default())?;
            written.push(*fp);
        }
    }
    Ok((written, removed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accept::{accept_chain, accept_initial};
    use crate::manifest::{KeyEntry, Keyring};
    use crate::signatures::SignatureSet;
    use feeds::usign::SecretKey;
    use std::os::unix::fs::symlink;

    const NOW: i64 = 1_800_000_000;
    /// The feed keys' fingerprints start with zero nibbles: their file names keep them.
    const A_NAME: &str = "0a0102030405060a";
    const B_NAME: &str = "000b02030405060b";

    struct Story {
        root: SecretKey,
        a: SecretKey,
        b: SecretKey,
        one: SignedKeyring,
        two: SignedKeyring,
    }

    fn sign(k: &Keyring, by: &SecretKey) -> SignedKeyring {
        let bytes = k.to_bytes().unwrap();
        let mut sigs = SignatureSet::new();
        sigs.insert(by.sign(&bytes).unwrap()).unwrap();
        SignedKeyring::new(k.clone(), sigs).unwrap()
    }

    fn story() -> Story {
        let root = SecretKey::generate(None).unwrap().0;
        let a = SecretKey::from_seed([0xa1; 32], A_NAME.parse().unwrap()).unwrap();
        let b = SecretKey::from_seed([0xb2; 32], B_NAME.parse().unwrap()).unwrap();
        let mut k = Keyring::new("example", 1, NOW - 100, NOW + 1000, 1).unwrap();
        k.add_key(KeyEntry::new(&root.public_key(), Role::Root))
            .unwrap();
        k.add_key(KeyEntry::new(&a.public_key(), Role::Feed))
            .unwrap();
        let one = sign(&k, &root);
        k.set_serial(2);
        k.key_mut(a.fingerprint()).unwrap().status = Status::Revoked;
        k.add_key(KeyEntry::new(&b.public_key(), Role::Feed))
            .unwrap();
        let two = sign(&k, &root);
        Story {
            root,
            a,
            b,
            one,
            two,
        }
    }

    fn key_names(root: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(root.join(KEYS_DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn state_entries(root: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(root.join(STATE_DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn install_one(root: &Path, s: &Story) {
        let lock = lock(root).unwrap();
        let v = accept_initial(&s.one, Some(s.root.fingerprint()), NOW).unwrap();
        apply(&lock, &v, NOW).unwrap();
    }

    /// A failure injected at `point` stands for a kill there: the trusted state must be serial 1
    /// or serial 2 complete, and a rerun must finish the job and leave no leftovers.
    fn interrupted_at(point: &'static str, expect_serial_after_crash: u64) {
        let s = story();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        install_one(root, &s);
        let lock = lock(root).unwrap();
        let v = accept_chain(&s.one, [&s.two], NOW).unwrap();
        failpoint::AT.with(|at| at.set(Some(point)));
        let err = apply(&lock, &v, NOW);
        failpoint::AT.with(|at| at.set(None));
        assert!(err.is_err(), "failpoint {point} did not fire");
        let state = load_trusted(root, "example").unwrap().unwrap();
        assert_eq!(state.serial(), expect_serial_after_crash, "after {point}");
        assert!(state.signatures().len() == 1);
        // Rerun (the refresh walks again from whatever is trusted).
        let v = accept_chain(&state, [&s.one, &s.two], NOW).unwrap();
        let report = apply(&lock, &v, NOW).unwrap();
        assert_eq!(report.serial, 2);
        assert_eq!(load_trusted(root, "example").unwrap().unwrap(), s.two);
        assert_eq!(key_names(root), [B_NAME]);
        let entries = state_entries(root);
        assert_eq!(entries.len(), 3, "leftovers after {point}: {entries:?}");
    }

    #[test]
    fn kill_after_staging_part_of_the_new_state_leaves_the_old_state() {
        interrupted_at("staged-manifest", 1);
        interrupted_at("staged", 1);
        interrupted_at("linked", 1);
    }

    #[test]
    fn kill_during_the_key_sync_leaves_the_old_state_and_a_rerun_completes() {
        interrupted_at("keys-removed", 1);
    }

    #[test]
    fn kill_after_the_swap_leaves_the_new_state() {
        interrupted_at("swapped", 2);
    }

    #[test]
    fn apply_installs_then_rotates_and_removes_the_revoked_key() {
        let s = story();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        install_one(root, &s);
        assert_eq!(key_names(root), [A_NAME]);
        assert_eq!(
            fs::read_to_string(root.join(KEYS_DIR).join(A_NAME)).unwrap(),
            String::from_utf8(s.a.public_key().to_file_bytes()).unwrap()
        );
        assert!(
            fs::read_to_string(root.join(KEYS_DIR).join(A_NAME))
                .unwrap()
                .starts_with("untrusted comment: public key 0a0102030405060a\n")
        );
        // an unpadded copy, as earlier versions and pre-2020 usign wrote it
        fs::copy(
            root.join(KEYS_DIR).join(A_NAME),
            root.join(KEYS_DIR).join("a0102030405060a"),
        )
        .unwrap();
        let link = fs::read_link(root.join(STATE_DIR).join("example")).unwrap();
        assert!(link.to_str().unwrap().starts_with(".example_1_"));
        let lock = lock(root).unwrap();
        let v = accept_chain(&s.one, [&s.two], NOW).unwrap();
        let report = apply(&lock, &v, NOW).unwrap();
        assert_eq!(report.previous, Some(1));
        assert!(report.state_replaced);
        assert_eq!(report.keys_written, vec![s.b.fingerprint()]);
        // the revoked key is gone under both names; the new one has one file
        assert_eq!(key_names(root), [B_NAME]);
        assert_eq!(report.keys_removed.len(), 2);
        assert_eq!(state_entries(root).len(), 3); // .lock, the link, one state dir
    }

    #[test]
    fn a_plain_state_directory_is_read_and_replaced() {
        let s = story();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let plain = root.join(STATE_DIR).join("example");
        fs::create_dir_all(&plain).unwrap();
        fs::write(plain.join(MANIFEST_FILE), s.one.bytes()).unwrap();
        fs::write(plain.join(SIGNATURE_FILE), s.one.signatures().to_bytes()).unwrap();
        let trusted = load_trusted(root, "example").unwrap().unwrap();
        assert_eq!(trusted, s.one);
        let lock = lock(root).unwrap();
        let v = accept_chain(&trusted, [&s.two], NOW).unwrap();
        apply(&lock, &v, NOW).unwrap();
        assert_eq!(load_trusted(root, "example").unwrap().unwrap(), s.two);
        assert_eq!(state_entries(root).len(), 3);
    }

    #[test]
    fn kill_while_replacing_a_plain_state_directory_keeps_the_old_state() {
        let s = story();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let plain = root.join(STATE_DIR).join("example");
        fs::create_dir_all(&plain).unwrap();
        fs::write(plain.join(MANIFEST_FILE), s.one.bytes()).unwrap();
        fs::write(plain.join(SIGNATURE_FILE), s.one.signatures().to_bytes()).unwrap();
        let lock = lock(root).unwrap();
        let v = accept_chain(&s.one, [&s.two], NOW).unwrap();
        failpoint::AT.with(|at| at.set(Some("moved-aside")));
        assert!(apply(&lock, &v, NOW).is_err());
        failpoint::AT.with(|at| at.set(None));
        assert_eq!(load_trusted(root, "example").unwrap().unwrap(), s.one);
        let v = accept_chain(&s.one, [&s.two], NOW).unwrap();
        apply(&lock, &v, NOW).unwrap();
        assert_eq!(load_trusted(root, "example").unwrap().unwrap(), s.two);
        assert_eq!(state_entries(root).len(), 3);
    }

    #[test]
    fn state_link_pointing_elsewhere_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join(STATE_DIR)).unwrap();
        symlink("/etc", root.join(STATE_DIR).join("example")).unwrap();
        let err = load_trusted(root, "example").unwrap_err();
        assert!(matches!(err, ApplyError::BadState { .. }), "{err}");
        assert!(matches!(
            load_trusted(root, "../x"),
            Err(ApplyError::BadName { .. })
        ));
    }

    /// A directory outside the root holding one file, `sentinel`.
    fn outside_with_sentinel() -> (tempfile::TempDir, PathBuf) {
        let outside = tempfile::tempdir().unwrap();
        let sentinel = outside.path().join("sentinel");
        fs::write(&sentinel, b"outside").unwrap();
        let canonical = fs::canonicalize(outside.path()).unwrap();
        (outside, canonical)
    }

    fn assert_only_sentinel(outside: &Path) {
        let names: Vec<_> = fs::read_dir(outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["sentinel"]);
        assert_eq!(fs::read(outside.join("sentinel")).unwrap(), b"outside");
    }

    #[test]
    fn keys_dir_symlinked_to_the_host_is_resolved_inside_the_root() {
        let s = story();
        let (_keep, outside) = outside_with_sentinel();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("etc/opkg")).unwrap();
        symlink(&outside, root.join(KEYS_DIR)).unwrap();
        install_one(root, &s);
        assert_only_sentinel(&outside);
        let inside = fs::canonicalize(root)
            .unwrap()
            .join(outside.strip_prefix("/").unwrap());
        assert!(inside.join(A_NAME).is_file());
    }

    #[test]
    fn a_key_file_symlinked_to_the_host_is_replaced_not_written_through() {
        let s = story();
        let (_keep, outside) = outside_with_sentinel();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join(KEYS_DIR)).unwrap();
        symlink(outside.join("sentinel"), root.join(KEYS_DIR).join(A_NAME)).unwrap();
        install_one(root, &s);
        assert_only_sentinel(&outside);
        let meta = fs::symlink_metadata(root.join(KEYS_DIR).join(A_NAME)).unwrap();
        assert!(meta.is_file());
    }

    #[test]
    fn a_lock_file_symlinked_to_the_host_is_refused() {
        let (_keep, outside) = outside_with_sentinel();
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join(STATE_DIR)).unwrap();
        symlink(
            outside.join("sentinel"),
            dir.path().join(STATE_DIR).join(LOCK_FILE),
        )
        .unwrap();
        let err = lock(dir.path()).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        symlink(
            outside.join("planted"),
            dir.path().join(STATE_DIR).join("x"),
        )
        .unwrap();
        fs::remove_file(dir.path().join(STATE_DIR).join(LOCK_FILE)).unwrap();
        fs::rename(
            dir.path().join(STATE_DIR).join("x"),
            dir.path().join(STATE_DIR).join(LOCK_FILE),
        )
        .unwrap();
        assert!(lock(dir.path()).is_err());
        assert_only_sentinel(&outside);
    }

    #[test]
    fn a_state_directory_that_is_a_symlink_to_the_host_is_not_read() {
        let s = story();
        let (_keep, outside) = outside_with_sentinel();
        // A complete, valid state directory outside the root…
        let elsewhere = tempfile::tempdir().unwrap();
        fs::write(elsewhere.path().join(MANIFEST_FILE), s.one.bytes()).unwrap();
        fs::write(
            elsewhere.path().join(SIGNATURE_FILE),
            s.one.signatures().to_bytes(),
        )
        .unwrap();
        // …reached through a link named like a staging directory.
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join(STATE_DIR);
        fs::create_dir_all(&state).unwrap();
        symlink(elsewhere.path(), state.join(".example_1_00")).unwrap();
        symlink(".example_1_00", state.join("example")).unwrap();
        let err = load_trusted(dir.path(), "example").unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_only_sentinel(&outside);
    }

    #[test]
    fn try_lock_reports_a_held_lock() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock(dir.path()).unwrap();
        assert!(try_lock(dir.path()).unwrap().is_none());
        drop(held);
        assert!(try_lock(dir.path()).unwrap().is_some());
    }
}
