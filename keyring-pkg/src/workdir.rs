//! The maintainer's keyring directory, which `archman keyring` drives:
//!
//! ```text
//! DIR/keyring                  the current serial (possibly a draft)
//! DIR/keyring.sig              its signature blocks (empty for a draft nobody signed)
//! DIR/history/<serial>.keyring every earlier serial, as published
//! DIR/history/<serial>.sig
//! ```
//!
//! Each operation is a function of the directory; `now` (seconds since the epoch) dates the
//! changes. The serial is bumped once per change, not per signature:
//! - a change to a keyring that is complete — it carries enough signatures to be published
//!   (its own `Root-Threshold` and, from serial 2 on, the previous serial's) — archives
//!   `keyring` and `keyring.sig` into `history/` and starts serial + 1 with no signatures;
//! - a change to a draft (not complete: unsigned or partly signed, so it can never have been
//!   published) modifies it in place; signatures it had are dropped (they were over other
//!   bytes) and reported in [`Change::discarded_signatures`];
//! - [`sign`] only adds (or replaces) one signature block; it never bumps.
//!
//! Every change sets `Date` to `now` and keeps the keyring's lifetime (`Expires - Date`), so a
//! new serial is valid as long as the one before was; [`set_expires`] changes the lifetime.
//! Every file is written atomically (temporary file, fsync, rename). The manifest is written
//! before its signature file, so a crash between the two leaves a draft whose stale blocks do
//! not verify — never a signed keyring that was not meant to be.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use feeds::release::format_date;
use feeds::usign::{Fingerprint, PublicKey, SecretKey};
use safe_fs::{FsError, WriteOptions};

use crate::accept::{Refusal, check_self, check_step};
use crate::manifest::{KeyEntry, Keyring, MAX_MANIFEST_LEN, ManifestError, Role, Scope, Status};
use crate::package::{BuildError, MAX_HISTORY, write_package};
use crate::signatures::{
    MAX_SIGNATURE_FILE_LEN, ParseError, SignatureFileError, SignatureSet, SignedKeyring, Tally,
};

/// The manifest file in a keyring directory.
pub const MANIFEST_FILE: &str = "keyring";
/// The signature file in a keyring directory.
pub const SIGNATURE_FILE: &str = "keyring.sig";
/// The history directory in a keyring directory.
pub const HISTORY_DIR: &str = "history";

/// Why a keyring directory operation failed.
#[derive(Debug, thiserror::Error)]
pub enum WorkdirError {
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: {source}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: ParseError,
    },
    #[error("{}: already holds a keyring", dir.display())]
    AlreadyInitialized { dir: PathBuf },
    #[error("{}: no keyring (run init first)", dir.display())]
    NotInitialized { dir: PathBuf },
    #[error("init: at least one root key is needed")]
    NoRootKeys,
    #[error("the change would leave an invalid keyring: {0}")]
    Invalid(#[from] ManifestError),
    #[error("keyring {name} serial {serial} has no key {fingerprint}")]
    UnknownKey {
        name: String,
        serial: u64,
        fingerprint: Fingerprint,
    },
    #[error("key {fingerprint} is already listed ({role}, {status})")]
    AlreadyPresent {
        fingerprint: Fingerprint,
        role: Role,
        status: Status,
    },
    #[error("key {fingerprint} was revoked; a revoked key can never be listed again")]
    RevokedForever { fingerprint: Fingerprint },
    #[error("key {fingerprint} is already revoked")]
    AlreadyRevoked { fingerprint: Fingerprint },
    #[error("key {fingerprint} is already retired")]
    AlreadyRetired { fingerprint: Fingerprint },
    #[error("key {fingerprint} is revoked; revocation cannot be undone by retiring it")]
    RetireRevoked { fingerprint: Fingerprint },
    #[error("nothing to change: {what}")]
    Unchanged { what: String },
    #[error(
        "key {fingerprint} may not sign keyring {name} serial {serial}: it is not an active root key of this serial or the one before"
    )]
    NotASigner {
        name: String,
        serial: u64,
        fingerprint: Fingerprint,
    },
    #[error("secret key {fingerprint} does not match the public key listed under that fingerprint")]
    SignerKeyMismatch { fingerprint: Fingerprint },
    #[error("signing failed: {0}")]
    Sign(#[source] feeds::usign::Error),
    #[error(transparent)]
    Signatures(#[from] SignatureFileError),
    #[error(
        "{}: differs from the keyring serial {serial} being archived (the directory's history was altered)",
        path.display()
    )]
    HistoryFork { path: PathBuf, serial: u64 },
    #[error("{}: {reason}", path.display())]
    BadHistory { path: PathBuf, reason: String },
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("not the OpenPGP certificate of a feed key: {source}")]
    Certificate {
        #[source]
        source: crate::archive::CertificateError,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> WorkdirError + '_ {
    move |source| WorkdirError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A keyring directory, read.
#[derive(Clone, Debug)]
pub struct Workdir {
    dir: PathBuf,
    current: SignedKeyring,
    history: BTreeMap<u64, SignedKeyring>,
}

impl Workdir {
    /// Reads `dir` (bounded: manifest and signature sizes, [`MAX_HISTORY`] history serials).
    /// Files in `history/` that are not `<serial>.keyring` or `<serial>.sig` are ignored.
    pub fn open(dir: &Path) -> Result<Workdir, WorkdirError> {
        let manifest_path = dir.join(MANIFEST_FILE);
        let Some(manifest) = read(&manifest_path, MAX_MANIFEST_LEN)? else {
            return Err(WorkdirError::NotInitialized { dir: dir.into() });
        };
        let sig_path = dir.join(SIGNATURE_FILE);
        let sigs = read(&sig_path, MAX_SIGNATURE_FILE_LEN)?.unwrap_or_default();
        let current = parse(&manifest_path, &sig_path, &manifest, &sigs)?;
        let history = read_history(&dir.join(HISTORY_DIR), current.keyring())?;
        Ok(Workdir {
            dir: dir.into(),
            current,
            history,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The current serial (possibly a draft).
    pub fn current(&self) -> &SignedKeyring {
        &self.current
    }

    /// Every earlier serial, by serial.
    pub fn history(&self) -> &BTreeMap<u64, SignedKeyring> {
        &self.history
    }

    /// The serial before the current one.
    pub fn previous(&self) -> Option<&SignedKeyring> {
        self.history.get(&self.current.serial().checked_sub(1)?)
    }

    /// True when the current serial carries enough signatures to be published (its own
    /// threshold and the previous serial's; key expiry aside). A change to a complete keyring
    /// starts a new serial.
    pub fn is_complete(&self) -> bool {
        let own = self.current.tally(i64::MIN).is_met();
        let step = self
            .previous()
            .is_none_or(|p| self.current.tally_by(p.keyring(), i64::MIN).is_met());
        own && step
    }
}

fn read(path: &Path, max: usize) -> Result<Option<Vec<u8>>, WorkdirError> {
    Ok(safe_fs::read_bounded(path, max as u64)?)
}

fn parse(
    manifest_path: &Path,
    sig_path: &Path,
    manifest: &[u8],
    sigs: &[u8],
) -> Result<SignedKeyring, WorkdirError> {
    let keyring = Keyring::parse(manifest).map_err(|e| WorkdirError::Parse {
        path: manifest_path.into(),
        source: e.into(),
    })?;
    let sigs = SignatureSet::parse(sigs).map_err(|e| WorkdirError::Parse {
        path: sig_path.into(),
        source: e.into(),
    })?;
    Ok(SignedKeyring::new(keyring, sigs)?)
}

fn read_history(
    dir: &Path,
    current: &Keyring,
) -> Result<BTreeMap<u64, SignedKeyring>, WorkdirError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(io_err(dir)(e)),
    };
    let mut serials = BTreeSet::new();
    for (seen, entry) in entries.enumerate() {
        if seen > 4 * MAX_HISTORY + 1024 {
            return Err(WorkdirError::BadHistory {
                path: dir.into(),
                reason: "too many files".into(),
            });
        }
        let name = entry.map_err(io_err(dir))?.file_name();
        let Some(name) = name.to_str() else { continue };
        let stem = name
            .strip_suffix(".keyring")
            .or_else(|| name.strip_suffix(".sig"));
        if let Some(serial) = stem.and_then(canonical_serial) {
            serials.insert(serial);
        }
    }
    if serials.len() > MAX_HISTORY {
        return Err(WorkdirError::BadHistory {
            path: dir.into(),
            reason: format!("more than {MAX_HISTORY} serials"),
        });
    }
    let mut history = BTreeMap::new();
    for serial in serials {
        let manifest_path = dir.join(format!("{serial}.keyring"));
        let sig_path = dir.join(format!("{serial}.sig"));
        let missing = |path: &Path| WorkdirError::BadHistory {
            path: path.into(),
            reason: "missing".into(),
        };
        let manifest =
            read(&manifest_path, MAX_MANIFEST_LEN)?.ok_or_else(|| missing(&manifest_path))?;
        let sigs = read(&sig_path, MAX_SIGNATURE_FILE_LEN)?.ok_or_else(|| missing(&sig_path))?;
        let signed = parse(&manifest_path, &sig_path, &manifest, &sigs)?;
        let bad = |reason: String| WorkdirError::BadHistory {
            path: manifest_path.clone(),
            reason,
        };
        if signed.serial() != serial {
            return Err(bad(format!("holds serial {}", signed.serial())));
        }
        if signed.name() != current.name() {
            return Err(bad(format!(
                "holds keyring {:?}, not {:?}",
                signed.name(),
                current.name()
            )));
        }
        // A copy of the current serial is left when a change was interrupted after archiving;
        // anything else at or above the current serial means the history was altered.
        if serial >= current.serial() && (serial > current.serial() || signed.keyring() != current)
        {
            return Err(WorkdirError::HistoryFork {
                path: manifest_path,
                serial,
            });
        }
        if serial < current.serial() {
            history.insert(serial, signed);
        }
    }
    Ok(history)
}

fn canonical_serial(text: &str) -> Option<u64> {
    let ok = !text.is_empty() && !text.starts_with('0') && text.bytes().all(|b| b.is_ascii_digit());
    ok.then(|| text.parse().ok()).flatten()
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), WorkdirError> {
    Ok(safe_fs::write_atomic(path, bytes, WriteOptions::default())?)
}

/// What a change did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The serial now in `keyring` (a draft awaiting signatures).
    pub serial: u64,
    /// The complete serial archived into `history/` (a new serial was started).
    pub archived: Option<u64>,
    /// Signatures of the draft that were dropped because its bytes changed.
    pub discarded_signatures: Vec<Fingerprint>,
}

/// Applies `edit` to the current keyring under the serial bump rule, validates and writes.
fn change(
    dir: &Path,
    now: i64,
    edit: impl FnOnce(&mut Keyring) -> Result<(), WorkdirError>,
) -> Result<Change, WorkdirError> {
    let wd = Workdir::open(dir)?;
    let old = wd.current.keyring();
    let mut next = old.clone();
    let complete = wd.is_complete();
    if complete {
        next.set_serial(old.serial() + 1);
    }
    let lifetime = old.expires().saturating_sub(old.date());
    next.set_date(now);
    next.set_expires(now.saturating_add(lifetime));
    edit(&mut next).map_err(|e| match e {
        // Name the serial the maintainer sees, not the one being started.
        WorkdirError::UnknownKey {
            name, fingerprint, ..
        } => WorkdirError::UnknownKey {
            name,
            serial: old.serial(),
            fingerprint,
        },
        other => other,
    })?;
    let bytes = next.to_bytes()?;
    let mut discarded = Vec::new();
    let mut archived = None;
    if complete {
        let history = dir.join(HISTORY_DIR);
        fs::create_dir_all(&history).map_err(io_err(&history))?;
        let serial = old.serial();
        let manifest_path = history.join(format!("{serial}.keyring"));
        if let Some(existing) = read(&manifest_path, MAX_MANIFEST_LEN)?
            && existing != wd.current.bytes()
        {
            return Err(WorkdirError::HistoryFork {
                path: manifest_path,
                serial,
            });
        }
        write(
            &history.join(format!("{serial}.sig")),
            &wd.current.signatures().to_bytes(),
        )?;
        write(&manifest_path, wd.current.bytes())?;
        archived = Some(serial);
    } else {
        discarded = wd
            .current
            .tally(i64::MIN)
            .counted
            .into_iter()
            .chain(
                wd.previous()
                    .map(|p| wd.current.tally_by(p.keyring(), i64::MIN).counted)
                    .unwrap_or_default(),
            )
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
    }
    write(&dir.join(MANIFEST_FILE), &bytes)?;
    write(&dir.join(SIGNATURE_FILE), b"")?;
    Ok(Change {
        serial: next.serial(),
        archived,
        discarded_signatures: discarded,
    })
}

/// Creates keyring `name` serial 1 in `dir` (created if missing; an existing keyring is an
/// error): every key of `roots` as an active root key, every key of `feeds` as an active feed
/// key, `Root-Threshold: threshold`, `Expires` `lifetime` seconds after `now`, signed by every
/// root key.
pub fn init(
    dir: &Path,
    name: &str,
    roots: &[SecretKey],
    feeds: &[PublicKey],
    threshold: u32,
    lifetime: u64,
    now: i64,
) -> Result<SignedKeyring, WorkdirError> {
    let manifest_path = dir.join(MANIFEST_FILE);
    if fs::symlink_metadata(&manifest_path).is_ok() {
        return Err(WorkdirError::AlreadyInitialized { dir: dir.into() });
    }
    if roots.is_empty() {
        return Err(WorkdirError::NoRootKeys);
    }
    let lifetime = i64::try_from(lifetime).unwrap_or(i64::MAX);
    let mut keyring = Keyring::new(name, 1, now, now.saturating_add(lifetime), threshold)?;
    for root in roots {
        keyring.add_key(KeyEntry::new(&root.public_key(), Role::Root))?;
    }
    for feed in feeds {
        keyring.add_key(KeyEntry::new(feed, Role::Feed))?;
    }
    let bytes = keyring.to_bytes()?;
    let mut sigs = SignatureSet::new();
    for root in roots {
        sigs.insert(root.sign(&bytes).map_err(WorkdirError::Sign)?)?;
    }
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    write(&dir.join(SIGNATURE_FILE), &sigs.to_bytes())?;
    write(&manifest_path, &bytes)?;
    Ok(SignedKeyring::new(keyring, sigs)?)
}

/// Adds `key` as an active key with `role`. A key listed already, or ever revoked, is an
/// error.
pub fn add_key(dir: &Path, role: Role, key: &PublicKey, now: i64) -> Result<Change, WorkdirError> {
    add_key_entry(dir, KeyEntry::new(key, role), now)
}

/// Adds a key with its status, `Not-After` and comment as given.
pub fn add_key_entry(dir: &Path, entry: KeyEntry, now: i64) -> Result<Change, WorkdirError> {
    let fingerprint = entry.fingerprint();
    let wd = Workdir::open(dir)?;
    let ever_revoked = wd.history.values().chain([&wd.current]).any(|k| {
        k.keyring()
            .key(fingerprint)
            .is_some_and(|e| e.status == Status::Revoked)
    });
    if ever_revoked {
        return Err(WorkdirError::RevokedForever { fingerprint });
    }
    change(dir, now, |k| {
        if let Some(e) = k.key(fingerprint) {
            return Err(WorkdirError::AlreadyPresent {
                fingerprint,
                role: e.role,
                status: e.status,
            });
        }
        Ok(k.add_key(entry)?)
    })
}

fn existing(k: &Keyring, fingerprint: Fingerprint) -> Result<&KeyEntry, WorkdirError> {
    k.key(fingerprint).ok_or_else(|| WorkdirError::UnknownKey {
        name: k.name().into(),
        serial: k.serial(),
        fingerprint,
    })
}

fn set_status(k: &mut Keyring, fingerprint: Fingerprint, status: Status) {
    if let Some(e) = k.key_mut(fingerprint) {
        e.status = status;
    }
}

/// Marks a key retired (routine rotation). Unknown, retired or revoked keys are errors.
pub fn retire(dir: &Path, fingerprint: Fingerprint, now: i64) -> Result<Change, WorkdirError> {
    change(dir, now, |k| {
        match existing(k, fingerprint)?.status {
            Status::Retired => return Err(WorkdirError::AlreadyRetired { fingerprint }),
            Status::Revoked => return Err(WorkdirError::RetireRevoked { fingerprint }),
            Status::Active => {}
        }
        set_status(k, fingerprint, Status::Retired);
        Ok(())
    })
}

/// Marks a key revoked, for good. Unknown or already revoked keys are errors.
pub fn revoke(dir: &Path, fingerprint: Fingerprint, now: i64) -> Result<Change, WorkdirError> {
    change(dir, now, |k| {
        if existing(k, fingerprint)?.status == Status::Revoked {
            return Err(WorkdirError::AlreadyRevoked { fingerprint });
        }
        set_status(k, fingerprint, Status::Revoked);
        Ok(())
    })
}

/// Sets (or with `None` clears) a developer key's `Packages` scope: how the roots transfer a
/// package name from one developer to another (docs/trust-model.md §9). A key of another
/// role, or one already with that scope, is an error.
pub fn set_scope(
    dir: &Path,
    fingerprint: Fingerprint,
    scope: Option<Scope>,
    now: i64,
) -> Result<Change, WorkdirError> {
    change(dir, now, |k| {
        let e = existing(k, fingerprint)?;
        if e.role != Role::Developer {
            return Err(WorkdirError::Unchanged {
                what: format!(
                    "key {fingerprint} is a {} key; only developer keys have a package scope",
                    e.role
                ),
            });
        }
        if e.scope == scope {
            return Err(WorkdirError::Unchanged {
                what: format!("key {fingerprint} already has that scope"),
            });
        }
        if let Some(e) = k.key_mut(fingerprint) {
            e.scope = scope;
        }
        Ok(())
    })
}

/// Sets `Root-Threshold`.
pub fn set_threshold(dir: &Path, threshold: u32, now: i64) -> Result<Change, WorkdirError> {
    change(dir, now, |k| {
        if k.root_threshold() == threshold {
            return Err(WorkdirError::Unchanged {
                what: format!("Root-Threshold is already {threshold}"),
            });
        }
        k.set_root_threshold(threshold);
        Ok(())
    })
}

/// Sets the keyring's lifetime: `Expires` becomes `now + lifetime` (seconds).
pub fn set_expires(dir: &Path, lifetime: u64, now: i64) -> Result<Change, WorkdirError> {
    change(dir, now, |k| {
        k.set_expires(now.saturating_add(i64::try_from(lifetime).unwrap_or(i64::MAX)));
        Ok(())
    })
}

/// Sets or clears a key's `Not-After`.
pub fn set_key_expiry(
    dir: &Path,
    fingerprint: Fingerprint,
    not_after: Option<i64>,
    now: i64,
) -> Result<Change, WorkdirError> {
    change(dir, now, |k| {
        if existing(k, fingerprint)?.not_after == not_after {
            return Err(WorkdirError::Unchanged {
                what: format!("key {fingerprint} already has that Not-After"),
            });
        }
        if let Some(e) = k.key_mut(fingerprint) {
            e.not_after = not_after;
        }
        Ok(())
    })
}

/// What [`sign`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signed {
    pub serial: u64,
    pub fingerprint: Fingerprint,
    /// An earlier signature by the same key was replaced.
    pub replaced: bool,
    /// The signatures now counted by the keyring's own root keys.
    pub own: Tally,
    /// The signatures now counted by the previous serial's root keys (from serial 2 on).
    pub previous: Option<Tally>,
}

/// Adds `key`'s signature of the current manifest (replacing an earlier one by the same key).
/// The key must be an active root key of the current serial or of the one before (whose roots
/// must sign the step too). Never bumps the serial.
pub fn sign(dir: &Path, key: &SecretKey, now: i64) -> Result<Signed, WorkdirError> {
    let wd = Workdir::open(dir)?;
    let fingerprint = key.fingerprint();
    let current = wd.current.keyring();
    let mut listed = None;
    for k in [Some(current), wd.previous().map(SignedKeyring::keyring)]
        .into_iter()
        .flatten()
    {
        if let Some(e) = k.key(fingerprint)
            && e.role == Role::Root
            && e.status == Status::Active
        {
            listed = Some(e);
            break;
        }
    }
    let Some(entry) = listed else {
        return Err(WorkdirError::NotASigner {
            name: current.name().into(),
            serial: current.serial(),
            fingerprint,
        });
    };
    if entry.public_key.as_bytes() != key.public_key().as_bytes() {
        return Err(WorkdirError::SignerKeyMismatch { fingerprint });
    }
    let sig = key.sign(wd.current.bytes()).map_err(WorkdirError::Sign)?;
    let mut sigs = wd.current.signatures().clone();
    // Blocks that do not verify over these bytes are stale (from an interrupted change).
    sigs.retain(|s| {
        [Some(current), wd.previous().map(SignedKeyring::keyring)]
            .into_iter()
            .flatten()
            .filter_map(|k| k.key(s.fingerprint()))
            .any(|e| e.public_key.verify(wd.current.bytes(), s).is_ok())
    });
    let replaced = sigs.insert(sig)?;
    write(&dir.join(SIGNATURE_FILE), &sigs.to_bytes())?;
    let signed = wd.current.clone().with_signatures(sigs);
    Ok(Signed {
        serial: signed.serial(),
        fingerprint,
        replaced,
        own: signed.tally(now),
        previous: wd.previous().map(|p| signed.tally_by(p.keyring(), now)),
    })
}

/// Builds the keyring package of `dir` (current serial with full history) into `out_dir`;
/// refuses, with the reason, a keyring that does not meet its own rules or a history that does
/// not chain. Returns the package path.
pub fn build(dir: &Path, out_dir: &Path, mtime: u64, now: i64) -> Result<PathBuf, WorkdirError> {
    let wd = Workdir::open(dir)?;
    Ok(write_package(
        out_dir,
        &wd.current,
        &wd.history,
        mtime,
        now,
    )?)
}

/// The largest certificate file read from `openpgp/` (one key, one user ID: a few hundred
/// bytes).
const MAX_CERTIFICATE_LEN: usize = 64 * 1024;

/// What [`add_openpgp`] stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddedCertificate {
    /// The usign feed key it belongs to.
    pub fingerprint: Fingerprint,
    /// Its OpenPGP fingerprint.
    pub openpgp: String,
    pub path: PathBuf,
    /// The user IDs it carries.
    pub user_ids: Vec<String>,
}

/// Keeps `bytes`, the OpenPGP certificate of one of the keyring's feed keys, as
/// `openpgp/<fp>.gpg` (replacing an earlier one), for the archive keyring `.deb`. Refused,
/// with the reason, unless its self-signature verifies and its key is a feed key of the
/// current serial (`crate::archive::check_certificate`). The manifest is not changed.
pub fn add_openpgp(dir: &Path, bytes: &[u8]) -> Result<AddedCertificate, WorkdirError> {
    let wd = Workdir::open(dir)?;
    let (fingerprint, cert) = crate::archive::check_certificate(wd.current.keyring(), bytes)
        .map_err(|source| WorkdirError::Certificate { source })?;
    let certs = dir.join(crate::archive::OPENPGP_DIR);
    match fs::symlink_metadata(&certs) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(WorkdirError::Io {
                path: certs,
                source: io::Error::other("not a directory"),
            });
        }
        Err(_) => fs::create_dir(&certs).map_err(io_err(&certs))?,
    }
    let path = certs.join(crate::archive::certificate_file_name(fingerprint));
    let binary = cert.to_binary().map_err(|e| WorkdirError::Certificate {
        source: crate::archive::CertificateError::Unreadable(e.to_string()),
    })?;
    write(&path, &binary)?;
    Ok(AddedCertificate {
        fingerprint,
        openpgp: cert.fingerprint(),
        path,
        user_ids: cert.user_ids(),
    })
}

/// The certificates kept in `dir/openpgp/`, by the usign fingerprint their file is named
/// after (checked against the key when the package is built).
fn read_certificates(dir: &Path) -> Result<BTreeMap<Fingerprint, Vec<u8>>, WorkdirError> {
    let certs = dir.join(crate::archive::OPENPGP_DIR);
    let mut out = BTreeMap::new();
    let entries = match fs::read_dir(&certs) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io_err(&certs)(e)),
    };
    for e in entries {
        let e = e.map_err(io_err(&certs))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(fp) = name
            .strip_suffix(".gpg")
            .and_then(|f| f.parse::<Fingerprint>().ok())
        else {
            continue;
        };
        if let Some(bytes) = read(&e.path(), MAX_CERTIFICATE_LEN)? {
            out.insert(fp, bytes);
        }
    }
    Ok(out)
}

/// [`build`], and with `deb` the archive keyring `.deb` for apt too
/// (`crate::archive::build_archive_keyring_deb`), both into `out_dir`; returns their paths.
pub fn build_all(
    dir: &Path,
    out_dir: &Path,
    mtime: u64,
    now: i64,
    deb: bool,
) -> Result<Vec<PathBuf>, WorkdirError> {
    let wd = Workdir::open(dir)?;
    // Everything is built before anything is written: a refused .deb leaves no new .ipk.
    let ipk = crate::package::build_package(&wd.current, &wd.history, mtime, now)?;
    let mut built = vec![ipk];
    if deb {
        built.push(crate::archive::build_archive_keyring_deb(
            &wd.current,
            &read_certificates(dir)?,
            mtime,
            now,
        )?);
    }
    let mut paths = Vec::new();
    for b in built {
        let path = out_dir.join(&b.file_name);
        write(&path, &b.bytes)?;
        paths.push(path);
    }
    Ok(paths)
}

/// One key, for [`Summary`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeySummary {
    pub fingerprint: Fingerprint,
    pub role: Role,
    pub status: Status,
    /// A developer key's package scope.
    pub scope: Option<Scope>,
    pub not_after: Option<i64>,
    pub comment: Option<String>,
    /// The key has a signature block on the current manifest that verifies.
    pub signed: bool,
}

/// What `archman keyring show` prints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    pub name: String,
    pub serial: u64,
    pub date: i64,
    pub expires: i64,
    pub root_threshold: u32,
    pub keys: Vec<KeySummary>,
    /// Signatures counted by the keyring's own roots at `now`.
    pub own: Tally,
    /// Signatures counted by the previous serial's roots at `now` (from serial 2 on).
    pub previous: Option<Tally>,
    /// The serials in `history/`.
    pub history: Vec<u64>,
    /// Whether a package could be built now, or why not.
    pub publishable: Result<(), Refusal>,
    pub now: i64,
}

/// Summarises `dir` at `now`.
pub fn show(dir: &Path, now: i64) -> Result<Summary, WorkdirError> {
    let wd = Workdir::open(dir)?;
    let k = wd.current.keyring();
    let keys = k
        .keys()
        .map(|e| KeySummary {
            fingerprint: e.fingerprint(),
            role: e.role,
            status: e.status,
            scope: e.scope.clone(),
            not_after: e.not_after,
            comment: e.comment.clone(),
            signed: wd
                .current
                .signatures()
                .signatures()
                .iter()
                .any(|s| e.public_key.verify(wd.current.bytes(), s).is_ok()),
        })
        .collect();
    let publishable = match wd.previous() {
        Some(p) => check_step(p, &wd.current, now).and_then(|()| check_self(&wd.current, now)),
        None => check_self(&wd.current, now),
    };
    Ok(Summary {
        name: k.name().into(),
        serial: k.serial(),
        date: k.date(),
        expires: k.expires(),
        root_threshold: k.root_threshold(),
        keys,
        own: wd.current.tally(now),
        previous: wd.previous().map(|p| wd.current.tally_by(p.keyring(), now)),
        history: wd.history.keys().copied().collect(),
        publishable,
        now,
    })
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "keyring {} serial {}", self.name, self.serial)?;
        writeln!(f, "date: {}", format_date(self.date))?;
        let expired = if self.expires < self.now {
            " (expired)"
        } else {
            ""
        };
        writeln!(f, "expires: {}{expired}", format_date(self.expires))?;
        writeln!(f, "root threshold: {}", self.root_threshold)?;
        writeln!(f, "keys:")?;
        for k in &self.keys {
            write!(f, "  {} {} {}", k.fingerprint, k.role, k.status)?;
            match (&k.scope, k.role) {
                (Some(s), _) => write!(f, ", packages {s}")?,
                (None, Role::Developer) => write!(f, ", any package")?,
                _ => {}
            }
            if let Some(t) = k.not_after {
                let state = if t < self.now { "expired" } else { "until" };
                write!(f, ", {state} {}", format_date(t))?;
            }
            if k.signed {
                write!(f, ", signed")?;
            }
            if let Some(c) = &k.comment {
                write!(f, "  # {c}")?;
            }
            writeln!(f)?;
        }
        writeln!(
            f,
            "signatures: {} of {} required by serial {} ({})",
            self.own.counted.len(),
            self.own.threshold,
            self.serial,
            self.own.describe()
        )?;
        if let Some(p) = &self.previous {
            writeln!(
                f,
                "signatures: {} of {} required by serial {} ({})",
                p.counted.len(),
                p.threshold,
                p.serial,
                p.describe()
            )?;
        }
        if !self.history.is_empty() {
            let list: Vec<String> = self.history.iter().map(u64::to_string).collect();
            writeln!(f, "history: {}", list.join(" "))?;
        }
        match &self.publishable {
            Ok(()) => writeln!(f, "publishable: yes"),
            Err(why) => writeln!(f, "publishable: no: {why}"),
        }
    }
}
