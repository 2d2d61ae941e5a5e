//! The keyring package `<name>-keyring_<serial>_all.ipk` (docs/formats.md §5.3): building it
//! reproducibly and reading it back.
//!
//! Contents (data tar, entries sorted, uid/gid 0, one mtime, in the gzipped-tar `.ipk`
//! container that opkg-lede installs):
//! - `etc/opkg/keys/<fp>`: one usign public key file per active feed key that has not expired
//!   at build time, byte for byte as `usign -G` writes it, named by its 16-digit zero-padded
//!   fingerprint, the name `usign -V -P` looks up (see [`key_file_name`]) — real opkg verifies
//!   the feed with them;
//! - `usr/share/keyrings/<name>/keyring` and `keyring.sig`: the current serial;
//! - `usr/share/keyrings/<name>/history/<serial>.keyring` and `.sig` for every earlier serial,
//!   so a client several serials behind can walk the chain.
//!
//! [`build_package`] refuses a keyring that does not pass [`check_self`] and a history that is
//! not complete from serial 1 or does not chain by [`check_step`]. [`read_keyring_package`]
//! bounds every entry and the number of history serials, accepts only the paths above, and
//! checks that the key files are active feed keys of the current keyring.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use feeds::build::PackageBuilder;
use feeds::limits::Limits;
use feeds::package::{
    Container, DataTar, PackageError as ContainerError, ReadOptions, read_package,
};
use feeds::usign::{Fingerprint, PublicKey};

use crate::accept::{Refusal, check_self, check_step};
use crate::manifest::{MAX_MANIFEST_LEN, Role};
use crate::signatures::{MAX_SIGNATURE_FILE_LEN, ParseError, SignedKeyring};

/// The most earlier serials a package may carry.
pub const MAX_HISTORY: usize = 1024;
/// The largest keyring package read, in bytes.
pub const MAX_PACKAGE_LEN: u64 = 64 << 20;
/// The largest usign key file in a package.
const MAX_KEY_FILE_LEN: usize = feeds::usign::MAX_FILE_LEN;

/// Why a keyring package was not built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("refusing to build keyring {name} serial {serial}: {source}")]
    Refused {
        name: String,
        serial: u64,
        #[source]
        source: Refusal,
    },
    #[error(
        "refusing to build keyring {name} serial {serial}: history serial {missing} is missing (history must hold every serial from 1 to {})",
        serial - 1
    )]
    HistoryIncomplete {
        name: String,
        serial: u64,
        missing: u64,
    },
    #[error(
        "refusing to build keyring {name} serial {serial}: history holds serial {found}, not older than the current serial"
    )]
    HistoryAhead {
        name: String,
        serial: u64,
        found: u64,
    },
    #[error(
        "refusing to build keyring {name} serial {serial}: more than {MAX_HISTORY} history serials"
    )]
    HistoryTooLong { name: String, serial: u64 },
    #[error(
        "refusing to build the archive keyring of {name} serial {serial}: feed key {fingerprint} has no OpenPGP certificate (archman key export --openpgp -s FEED_SEC -o CERT, then archman keyring add-openpgp DIR CERT)"
    )]
    NoCertificate {
        name: String,
        serial: u64,
        fingerprint: Fingerprint,
    },
    #[error("the OpenPGP certificate kept for feed key {fingerprint}: {source}")]
    BadCertificate {
        fingerprint: Fingerprint,
        #[source]
        source: crate::archive::CertificateError,
    },
    #[error(
        "refusing to build the archive keyring of {name} serial {serial}: it has no usable feed key"
    )]
    NoFeedKeys { name: String, serial: u64 },
    #[error("writing the package: {0}")]
    Write(#[source] io::Error),
    #[error(transparent)]
    Fs(#[from] safe_fs::FsError),
}

/// A built package: its file name and bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuiltPackage {
    /// `<name>-keyring_<serial>_all.ipk`.
    pub file_name: String,
    pub bytes: Vec<u8>,
}

/// The package name of keyring `name`: `<name>-keyring`.
pub fn package_name(name: &str) -> String {
    format!("{name}-keyring")
}

/// The file name a key is installed under in a usign key directory: its 16-digit zero-padded
/// fingerprint, the name usign's `-V -P DIR` looks up (`"%016"PRIx64`, usign `main.c` line 180
/// at commit c4c72b1) and `usign -G`'s comments name.
pub fn key_file_name(fingerprint: Fingerprint) -> String {
    fingerprint.to_string()
}

/// The file names a key may have in a keyring package that is read: [`key_file_name`], and for
/// a fingerprint with a leading zero nibble also the unpadded form, which packages built by
/// earlier versions carried as a second copy (usign before 2020 looked that name up).
pub fn key_file_names(fingerprint: Fingerprint) -> Vec<String> {
    let padded = key_file_name(fingerprint);
    let unpadded = fingerprint.unpadded();
    if padded == unpadded {
        vec![padded]
    } else {
        vec![padded, unpadded]
    }
}

/// Builds the package for `current` with `history` (every earlier serial, keyed by serial).
/// `mtime` is the time stamp of every entry (`SOURCE_DATE_EPOCH`); `now` judges signatures
/// and expiry. The output depends only on the arguments.
pub fn build_package(
    current: &SignedKeyring,
    history: &BTreeMap<u64, SignedKeyring>,
    mtime: u64,
    now: i64,
) -> Result<BuiltPackage, BuildError> {
    let name = current.name().to_string();
    let serial = current.serial();
    let refused = |source| BuildError::Refused {
        name: name.clone(),
        serial,
        source,
    };
    if history.len() > MAX_HISTORY {
        return Err(BuildError::HistoryTooLong {
            name: name.clone(),
            serial,
        });
    }
    if let Some((&found, _)) = history.range(serial..).next() {
        return Err(BuildError::HistoryAhead {
            name: name.clone(),
            serial,
            found,
        });
    }
    let mut chain: Vec<&SignedKeyring> = Vec::new();
    for s in 1..serial {
        let Some(k) = history.get(&s) else {
            return Err(BuildError::HistoryIncomplete {
                name: name.clone(),
                serial,
                missing: s,
            });
        };
        chain.push(k);
    }
    chain.push(current);
    // Serial 1 is trusted explicitly by whoever installs it; it must still carry its own
    // threshold of root signatures (key expiry aside: it is history).
    let first = chain[0];
    let tally = first.tally(i64::MIN);
    if !tally.is_met() {
        return Err(refused(Refusal::OwnThresholdNotMet {
            name: first.name().into(),
            serial: first.serial(),
            tally: Box::new(tally),
        }));
    }
    for pair in chain.windows(2) {
        check_step(pair[0], pair[1], now).map_err(refused)?;
    }
    check_self(current, now).map_err(refused)?;

    let control = format!(
        "Package: {pkg}\nVersion: {serial}\nArchitecture: all\nSection: base\nDescription: usign keys of feed keyring {name}, serial {serial}\n",
        pkg = package_name(&name)
    );
    let base = format!("usr/share/keyrings/{name}");
    let mut b = PackageBuilder::new(control)
        .container(Container::TarGz)
        .mtime(mtime);
    for dir in [
        "etc",
        "etc/opkg",
        "etc/opkg/keys",
        "usr",
        "usr/share",
        "usr/share/keyrings",
        &base,
    ] {
        b = b.dir(dir, 0o755);
    }
    for key in current.keyring().usable_keys(Role::Feed, now) {
        b = b.file(
            &format!("etc/opkg/keys/{}", key_file_name(key.fingerprint())),
            0o644,
            key.key_file_bytes(),
        );
    }
    b = b
        .file(&format!("{base}/keyring"), 0o644, current.bytes())
        .file(
            &format!("{base}/keyring.sig"),
            0o644,
            current.signatures().to_bytes(),
        );
    if !history.is_empty() {
        b = b.dir(&format!("{base}/history"), 0o755);
    }
    for (s, k) in history {
        b = b
            .file(&format!("{base}/history/{s}.keyring"), 0o644, k.bytes())
            .file(
                &format!("{base}/history/{s}.sig"),
                0o644,
                k.signatures().to_bytes(),
            );
    }
    let bytes = b.build().map_err(BuildError::Write)?;
    Ok(BuiltPackage {
        file_name: format!("{}_{serial}_all.ipk", package_name(&name)),
        bytes,
    })
}

/// Builds the package into `out_dir` (written atomically); returns its path.
pub fn write_package(
    out_dir: &Path,
    current: &SignedKeyring,
    history: &BTreeMap<u64, SignedKeyring>,
    mtime: u64,
    now: i64,
) -> Result<PathBuf, BuildError> {
    let built = build_package(current, history, mtime, now)?;
    let path = out_dir.join(&built.file_name);
    safe_fs::write_atomic(&path, &built.bytes, safe_fs::WriteOptions::default())?;
    Ok(path)
}

/// A keyring package read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyringPackage {
    /// The keyring name.
    pub name: String,
    /// The current serial.
    pub current: SignedKeyring,
    /// Every earlier serial the package carries.
    pub history: BTreeMap<u64, SignedKeyring>,
    /// The files of `etc/opkg/keys/`, by file name (see [`key_file_names`]).
    pub key_files: BTreeMap<String, PublicKey>,
}

impl KeyringPackage {
    /// The history and the current keyring, for [`crate::accept::accept_chain`].
    pub fn candidates(&self) -> impl Iterator<Item = &SignedKeyring> {
        self.history.values().chain([&self.current])
    }
}

/// Why a keyring package could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Container(#[from] ContainerError),
    #[error("package {package:?} is not a keyring package (expected <name>-keyring)")]
    NotAKeyringPackage { package: String },
    #[error("{path}: {reason}")]
    UnexpectedEntry { path: String, reason: String },
    #[error("{path}: present twice")]
    DuplicateEntry { path: String },
    #[error("{path}: more than {max} bytes")]
    EntryTooLarge { path: String, max: usize },
    #[error("more than {MAX_HISTORY} history serials")]
    HistoryTooLong,
    #[error("{path}: missing")]
    Missing { path: String },
    #[error("{path}: {source}")]
    Parse {
        path: String,
        #[source]
        source: ParseError,
    },
    #[error("{path}: holds serial {found}")]
    SerialMismatch { path: String, found: u64 },
    #[error("{path}: holds keyring {found:?}, not {expected:?}")]
    NameMismatch {
        path: String,
        found: String,
        expected: String,
    },
    #[error("{path}: history serial {serial} is not older than the current serial {current}")]
    HistoryAhead {
        path: String,
        serial: u64,
        current: u64,
    },
    #[error("control: Version {version:?} is not the keyring's serial {serial}")]
    VersionMismatch { version: String, serial: u64 },
    #[error("{path}: {reason}")]
    BadKeyFile { path: String, reason: String },
}

/// Reading the keyring package at `path` failed.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct ReadFileError {
    pub path: PathBuf,
    #[source]
    pub source: Box<ReadError>,
}

/// Reads the keyring package at `path`.
pub fn read_keyring_package(path: &Path) -> Result<KeyringPackage, ReadFileError> {
    let wrap = |source| ReadFileError {
        path: path.to_path_buf(),
        source: Box::new(source),
    };
    let file = std::fs::File::open(path).map_err(|e| wrap(ContainerError::Io(e).into()))?;
    read_keyring_package_from(io::BufReader::new(file)).map_err(wrap)
}

/// One file of the data tar we keep.
enum Slot {
    Manifest,
    Signatures,
    History(u64, bool),
    Key(String),
}

/// Reads a keyring package from `input` (one pass, bounded).
pub fn read_keyring_package_from<R: Read>(input: R) -> Result<KeyringPackage, ReadError> {
    let limits = Limits {
        max_package_size: MAX_PACKAGE_LEN,
        max_data_tar: MAX_PACKAGE_LEN,
        max_data_entries: MAX_ENTRIES as u64 + 1,
        ..Limits::default()
    };
    let opts = ReadOptions {
        md5: false,
        limits,
        ..Default::default()
    };
    let mut files: Vec<(String, Option<Vec<u8>>)> = Vec::new();
    let mut failure: Option<ReadError> = None;
    let mut visit = |tar: &mut DataTar<'_>| {
        tar.for_each_entry(|entry| -> Result<(), io::Error> {
            match collect_entry(entry, &mut files) {
                Ok(()) => Ok(()),
                Err(e) => {
                    let message = e.to_string();
                    failure.get_or_insert(e);
                    Err(io::Error::other(message))
                }
            }
        })
        .map(|_| ())
    };
    let result = read_package(input, &opts, Some(&mut visit));
    if let Some(e) = failure {
        return Err(e);
    }
    let package = result?;
    let pkg_name = package.name().to_string();
    let name = pkg_name
        .strip_suffix("-keyring")
        .filter(|n| crate::manifest::is_valid_name(n))
        .ok_or_else(|| ReadError::NotAKeyringPackage {
            package: pkg_name.clone(),
        })?
        .to_string();
    let base = format!("usr/share/keyrings/{name}");
    let mut slots: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut history_files: BTreeMap<u64, [Option<Vec<u8>>; 2]> = BTreeMap::new();
    let mut key_bytes: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let dirs = [
        "",
        "etc",
        "etc/opkg",
        "etc/opkg/keys",
        "usr",
        "usr/share",
        "usr/share/keyrings",
        &base,
        &format!("{base}/history"),
    ];
    for (path, data) in files {
        let Some(data) = data else {
            if !dirs.contains(&path.as_str()) {
                return Err(ReadError::UnexpectedEntry {
                    path,
                    reason: "not a directory a keyring package holds".into(),
                });
            }
            continue;
        };
        let slot = classify(&path, &base)?;
        match slot {
            None => {}
            Some(Slot::Manifest) => {
                slots.insert("keyring".into(), data);
            }
            Some(Slot::Signatures) => {
                slots.insert("keyring.sig".into(), data);
            }
            Some(Slot::History(serial, is_sig)) => {
                if !history_files.contains_key(&serial) && history_files.len() >= MAX_HISTORY {
                    return Err(ReadError::HistoryTooLong);
                }
                history_files.entry(serial).or_default()[is_sig as usize] = Some(data);
            }
            Some(Slot::Key(file)) => {
                key_bytes.insert(file, data);
            }
        }
    }
    let parse = |manifest_path: String,
                 sig_path: String,
                 manifest: Option<Vec<u8>>,
                 sigs: Option<Vec<u8>>| {
        let manifest = manifest.ok_or_else(|| ReadError::Missing {
            path: manifest_path.clone(),
        })?;
        let sigs = sigs.ok_or_else(|| ReadError::Missing { path: sig_path })?;
        let signed = SignedKeyring::parse(&manifest, &sigs).map_err(|source| ReadError::Parse {
            path: manifest_path.clone(),
            source,
        })?;
        if signed.name() != name {
            return Err(ReadError::NameMismatch {
                path: manifest_path,
                found: signed.name().into(),
                expected: name.clone(),
            });
        }
        Ok(signed)
    };
    let current = parse(
        format!("{base}/keyring"),
        format!("{base}/keyring.sig"),
        slots.remove("keyring"),
        slots.remove("keyring.sig"),
    )?;
    if package.version() != current.serial().to_string() {
        return Err(ReadError::VersionMismatch {
            version: package.version().into(),
            serial: current.serial(),
        });
    }
    let mut history = BTreeMap::new();
    for (serial, [manifest, sigs]) in history_files {
        let path = format!("{base}/history/{serial}");
        if serial >= current.serial() {
            return Err(ReadError::HistoryAhead {
                path: format!("{path}.keyring"),
                serial,
                current: current.serial(),
            });
        }
        let signed = parse(
            format!("{path}.keyring"),
            format!("{path}.sig"),
            manifest,
            sigs,
        )?;
        if signed.serial() != serial {
            return Err(ReadError::SerialMismatch {
                path: format!("{path}.keyring"),
                found: signed.serial(),
            });
        }
        history.insert(serial, signed);
    }
    let mut key_files = BTreeMap::new();
    for (file, data) in key_bytes {
        let path = format!("etc/opkg/keys/{file}");
        let bad = |reason: String| ReadError::BadKeyFile {
            path: path.clone(),
            reason,
        };
        let key = PublicKey::parse(&data).map_err(|e| bad(e.to_string()))?;
        if !key_file_names(key.fingerprint()).contains(&file) {
            return Err(bad(format!(
                "holds key {}, expected the file to be named {}",
                key.fingerprint(),
                key_file_name(key.fingerprint())
            )));
        }
        match current.keyring().key(key.fingerprint()) {
            Some(e)
                if e.role == Role::Feed
                    && e.status == crate::manifest::Status::Active
                    && e.public_key.as_bytes() == key.as_bytes() => {}
            _ => {
                return Err(bad(format!(
                    "key {} is not an active feed key of keyring {} serial {}",
                    key.fingerprint(),
                    name,
                    current.serial()
                )));
            }
        }
        key_files.insert(file, key);
    }
    Ok(KeyringPackage {
        name,
        current,
        history,
        key_files,
    })
}

/// The most key files a package may carry (two names per key at most).
const MAX_KEY_FILES: usize = 2 * crate::manifest::MAX_KEYS;
/// The most data tar entries read.
const MAX_ENTRIES: usize = 2 * MAX_HISTORY + MAX_KEY_FILES + 16;

/// Reads one data tar entry into `files`: directories are checked and skipped, regular files
/// are read (bounded); links and anything else are refused.
fn collect_entry<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    files: &mut Vec<(String, Option<Vec<u8>>)>,
) -> Result<(), ReadError> {
    let raw = entry.path_bytes().into_owned();
    let text = String::from_utf8(raw).map_err(|e| ReadError::UnexpectedEntry {
        path: String::from_utf8_lossy(e.as_bytes()).into_owned(),
        reason: "path is not UTF-8".into(),
    })?;
    let path = normalize(&text)?;
    let kind = entry.header().entry_type();
    if files.len() >= MAX_ENTRIES {
        return Err(ReadError::UnexpectedEntry {
            path,
            reason: format!("more than {MAX_ENTRIES} entries"),
        });
    }
    if kind.is_dir() {
        files.push((path, None));
        return Ok(());
    }
    if !kind.is_file() {
        return Err(ReadError::UnexpectedEntry {
            path,
            reason: "not a regular file or directory".into(),
        });
    }
    let max = if path.ends_with(".sig") {
        MAX_SIGNATURE_FILE_LEN
    } else if path.starts_with("etc/") {
        MAX_KEY_FILE_LEN
    } else {
        MAX_MANIFEST_LEN
    };
    if entry.size() > max as u64 {
        return Err(ReadError::EntryTooLarge { path, max });
    }
    if files.iter().any(|(p, _)| *p == path) {
        return Err(ReadError::DuplicateEntry { path });
    }
    let mut data = Vec::new();
    entry
        .take(max as u64 + 1)
        .read_to_end(&mut data)
        .map_err(|e| ReadError::UnexpectedEntry {
            path: path.clone(),
            reason: format!("read error: {e}"),
        })?;
    if data.len() > max {
        return Err(ReadError::EntryTooLarge { path, max });
    }
    files.push((path, Some(data)));
    Ok(())
}

/// `./etc/x` → `etc/x`; `./` → ``; refuses absolute paths, `..`, empty components.
fn normalize(text: &str) -> Result<String, ReadError> {
    let trimmed = text.strip_prefix("./").unwrap_or(text);
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    if trimmed.is_empty() || trimmed == "." {
        return Ok(String::new());
    }
    let bad = trimmed.starts_with('/')
        || trimmed
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..");
    if bad {
        return Err(ReadError::UnexpectedEntry {
            path: text.into(),
            reason: "path leaves the package root or is not normal".into(),
        });
    }
    Ok(trimmed.into())
}

/// Which slot a regular file's path fills; unexpected paths are errors.
fn classify(path: &str, base: &str) -> Result<Option<Slot>, ReadError> {
    let unexpected = || ReadError::UnexpectedEntry {
        path: path.into(),
        reason: format!(
            "not a file a keyring package holds (etc/opkg/keys/<fp>, {base}/keyring, {base}/keyring.sig, {base}/history/<serial>.keyring|.sig)"
        ),
    };
    if let Some(file) = path.strip_prefix("etc/opkg/keys/") {
        let ok = !file.is_empty()
            && file.len() <= 16
            && file.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        return if ok {
            Ok(Some(Slot::Key(file.into())))
        } else {
            Err(unexpected())
        };
    }
    let Some(rest) = path.strip_prefix(base).and_then(|r| r.strip_prefix('/')) else {
        return Err(unexpected());
    };
    match rest {
        "keyring" => return Ok(Some(Slot::Manifest)),
        "keyring.sig" => return Ok(Some(Slot::Signatures)),
        _ => {}
    }
    let Some(file) = rest.strip_prefix("history/") else {
        return Err(unexpected());
    };
    let (serial, is_sig) = if let Some(s) = file.strip_suffix(".keyring") {
        (s, false)
    } else if let Some(s) = file.strip_suffix(".sig") {
        (s, true)
    } else {
        return Err(unexpected());
    };
    let canonical = !serial.is_empty()
        && !serial.starts_with('0')
        && serial.bytes().all(|b| b.is_ascii_digit());
    match serial.parse::<u64>() {
        Ok(s) if canonical => Ok(Some(Slot::History(s, is_sig))),
        _ => Err(unexpected()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalized_and_traversal_refused() {
        assert_eq!(normalize("./etc/opkg/").unwrap(), "etc/opkg");
        assert_eq!(normalize("./").unwrap(), "");
        for bad in ["/etc/x", "./etc/../x", "etc//x", "./a/./b"] {
            assert!(normalize(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_keyring_paths_are_classified() {
        let base = "usr/share/keyrings/example";
        assert!(matches!(
            classify("etc/opkg/keys/b26f36ae0f4106d", base),
            Ok(Some(Slot::Key(_)))
        ));
        assert!(matches!(
            classify(&format!("{base}/history/12.sig"), base),
            Ok(Some(Slot::History(12, true)))
        ));
        for bad in [
            "etc/opkg/keys/XYZ".to_string(),
            "etc/opkg/keys/00112233445566778".into(),
            "etc/passwd".into(),
            format!("{base}/history/012.keyring"),
            format!("{base}/history/1.txt"),
            format!("{base}/other"),
            "usr/share/keyrings/other/keyring".into(),
        ] {
            assert!(classify(&bad, base).is_err(), "{bad}");
        }
    }
}
