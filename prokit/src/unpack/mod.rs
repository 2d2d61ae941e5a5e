//! Writing a package's contents under the root, safely (docs/threats.md §10, §15, §19, §26),
//! and the journaled transaction that makes a change to the root crash-safe (threat 16,
//! docs/crash-safety.md §5).
//!
//! The module has two halves: `entries.rs` — the checks on each entry of a package and its
//! staging, then what is settled once the whole package is read — and `journal.rs` — the
//! [`Transaction`], its recovery, and the dir-relative operations every change to the root
//! goes through.
//!
//! [`unpack`] streams the data tar of a package file once. Every entry is checked before
//! anything is written for it, and refused with an error naming the package and the entry:
//! - names that are not UTF-8 or hold control characters, that are absolute (after a leading
//!   `./`), or that have a `..` component;
//! - whatever its type (file, directory, symlink, hard link, node), a path inside the package
//!   manager's own state: the package database, the lists, the download cache, the lock
//!   files, prokit's state directory ([`Db::is_reserved`]; threat 19);
//! - any write whose path goes through a symlink — one this package installs earlier in the
//!   archive, one an earlier package installed, or one that was already in the root. prokit
//!   never follows a symlink while writing (opkg follows directory symlinks such as
//!   `/lib -> usr/lib`; tar-rs' `unpack_in` does not). A directory entry that lands on an
//!   existing symlink writes nothing, so a root whose `/var` is a link keeps it, but nothing
//!   is ever created below it;
//! - hard links, unless they point to a regular file staged earlier from the same archive;
//! - setuid/setgid bits, device nodes and FIFOs, unless [`UnpackOptions::allow_special`];
//! - a file where the root has a directory, a directory where it has a file, an entry that
//!   appears twice.
//!
//! Each file, symlink or node is written under a temporary name in its final directory
//! (`.prokit-<n>.new`); nothing is renamed into place until the whole package has been read
//! and checked, so a failure halfway leaves nothing visible (directories created for the
//! temporary files are removed again). Directories get the archive's mode (with `u+rwx`
//! kept, so an unprivileged run can go on writing into them); owners are the current user.
//!
//! When the package is read (its control member may come after the data), conffiles, trust
//! and file ownership are settled:
//! - a conffile already in the root whose content differs from the hash recorded at its
//!   previous install (or, when no package records it, from the new version) is kept, and the
//!   new version is written as `<file>-opkg`, as opkg does; it is reported. That `-opkg` path
//!   is a path of the package like any other (threat 26): it may not be reserved, a
//!   directory in the root, or another package's file (below);
//! - files that decide trust — `/etc/opkg.conf`, `/etc/opkg/*.conf` (`src` lines, `option
//!   check_signature`, ...), anything in `/etc/opkg/keys/`, and anything but a directory at
//!   `/etc` or `/etc/opkg` — are written only by the configured keyring package
//!   ([`UnpackOptions::trust_package`]) or with [`UnpackOptions::allow_trust_changes`];
//!   otherwise the package is refused, naming the entry and why (threat 19). Writing exactly
//!   what the root already holds there (same contents, same link target) changes nothing and
//!   is allowed; so is a kept conffile's `-opkg` copy, which nothing reads;
//! - a path owned by another installed package is an error naming both, unless the new
//!   package `Replaces` that one: then the path changes owner. Files in the root that no
//!   package owns are replaced (as dpkg does; opkg refuses them), except conffiles, above.
//!
//! The [`Transaction`] keeps a journal, `<db_dir>/prokit-journal`, appended (and flushed to
//! the kernel) before each step: `new` temporary files and created `dir`s while staging;
//! then the plan — `put` a temporary file onto its final path (`putnew` when that path did not
//! exist at staging), `del` a path, `rmdir`, `chmod`, the new `status`; then `commit`
//! (fsynced), after which each `put` first renames an existing final file to a backup
//! `.prokit-<n>.old` and each `del` renames its path to one (a path gone since staging gets a
//! hard link to the temporary file instead, the temporary name staying as the mark of a new
//! path), and each `putnew` renames its temporary onto the path with `RENAME_NOREPLACE`; then
//! `done` (fsynced) once maintainer scripts succeeded, after which backups and temporary names
//! are deleted and the new status file renamed into place. Recovery of a journal left by a killed run: without `done`
//! everything is undone (temporaries deleted, backups renamed back, new paths removed,
//! created directories removed): the old state; with `done` the remaining cleanup is
//! finished: the new state. Both are idempotent, so a recovery that is killed too is simply
//! run again.
//!
//! Every one of those operations — staging, commit, undo, cleanup, recovery — is made
//! relative to its directory's descriptor, reached by walking from the root's one component
//! at a time without following a symlink (`RootDirs` in `journal.rs`): the root itself
//! is hostile input, and a directory swapped for a symlink to the host after an install
//! makes the operation fail with an error naming it, never reach the host.

mod entries;
mod journal;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Seek};
use std::path::{Path, PathBuf};

use feeds::package::{Package, PackageFileError, ReadOptions, read_package_file};
use md5::Md5;
use sha2::{Digest, Sha256};

use crate::status::{Db, FileKind, FileRecord, StatusError};

pub(crate) use entries::{normalize_name, reserved_what, trust_reason};
pub use journal::Transaction;
pub(crate) use journal::{Parent, RootDirs, recover_journal};

/// A package to install: its file, or the same file already read whole by another thread
/// ([`Preread`]), so that the install only walks it.
#[derive(Debug, Clone, Copy)]
pub enum PackageFile<'a> {
    Path(&'a Path),
    Decoded {
        /// The file it was read from (named in messages).
        path: &'a Path,
        package: &'a Preread,
    },
}

/// A package file read whole ahead of its install: every byte hashed and every bound checked
/// as an install reads it, its data tar decompressed in memory, and the SHA-256 of each regular
/// file in it taken (what the install records of each file), so that the install thread only
/// walks the tar and writes the root. The install still compares the package's SHA-256 with the
/// index's, as for a file it reads itself.
#[derive(Debug)]
pub struct Preread {
    package: feeds::package::Decoded,
    /// Per data tar entry, in order: the SHA-256 of a regular file's contents.
    digests: Vec<Option<[u8; 32]>>,
}

impl Preread {
    /// Reads the package file at `path`; `None` when it cannot be read, is damaged, or its data
    /// tar is bigger than `max_data` (the install then reads the file itself, and says what is
    /// wrong with it).
    pub fn read(path: &Path, max_data: u64) -> Option<Preread> {
        // A regular file only, not through a symlink: the cache is inside the root. (Its
        // size is bounded by the package limits.)
        let file = safe_fs::open_bounded(path, u64::MAX).ok()??;
        Preread::decode(file, &ReadOptions::default(), max_data)
    }

    /// [`Preread::read`] of `file`, which a download wrote and hashed as it did (`sha256`,
    /// the index's): read from its start through that open file, its bytes are the ones
    /// hashed, and they are not hashed again (`download::download_each_open`).
    pub fn read_downloaded(
        mut file: std::fs::File,
        sha256: [u8; 32],
        max_data: u64,
    ) -> Option<Preread> {
        file.seek(io::SeekFrom::Start(0)).ok()?;
        let opts = ReadOptions {
            sha256_known: Some(sha256),
            ..ReadOptions::default()
        };
        Preread::decode(file, &opts, max_data)
    }

    fn decode(file: impl io::Read, opts: &ReadOptions, max_data: u64) -> Option<Preread> {
        let input = io::BufReader::with_capacity(cli_support::READ_BUFFER, file);
        let package = feeds::package::decode_package(input, opts, max_data)
            .ok()
            .flatten()?;
        let mut digests = Vec::new();
        package
            .visit_data(&mut |tar: &mut feeds::package::DataTar<'_>| {
                tar.for_each_entry(|e| -> io::Result<()> {
                    let digest = if e.header().entry_type().is_file() {
                        let mut h = Sha256::new();
                        io::copy(e, &mut h)?;
                        Some(h.finalize().into())
                    } else {
                        None
                    };
                    digests.push(digest);
                    Ok(())
                })
                .map(|_| ())
            })
            .ok()?;
        Some(Preread { package, digests })
    }

    /// The bytes of its decompressed data tar.
    pub fn data_len(&self) -> usize {
        self.package.data_len()
    }
}

impl<'a> PackageFile<'a> {
    /// The file, for messages.
    pub fn path(&self) -> &'a Path {
        match self {
            PackageFile::Path(p) | PackageFile::Decoded { path: p, .. } => p,
        }
    }

    /// Its size in bytes (0 when it cannot be read).
    pub fn size(&self) -> u64 {
        match self {
            PackageFile::Path(p) => std::fs::metadata(p).map_or(0, |m| m.len()),
            PackageFile::Decoded { package, .. } => package.package.package.size,
        }
    }
}

impl<'a> From<&'a Path> for PackageFile<'a> {
    fn from(p: &'a Path) -> Self {
        PackageFile::Path(p)
    }
}

impl<'a> From<&'a PathBuf> for PackageFile<'a> {
    fn from(p: &'a PathBuf) -> Self {
        PackageFile::Path(p)
    }
}

/// Options for [`unpack`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnpackOptions {
    /// Create setuid/setgid files, device nodes and FIFOs (refused otherwise).
    pub allow_special: bool,
    /// The package allowed to change which keys and feeds are trusted (`/etc/opkg/keys/*`,
    /// `/etc/opkg.conf`, `/etc/opkg/*.conf`): the configured keyring package
    /// (`<name>-keyring` for `option keyring <name>`). `None`: no package may.
    pub trust_package: Option<String>,
    /// Let any package change which keys and feeds are trusted (`--allow-trust-changes`).
    pub allow_trust_changes: bool,
    /// Paths other packages of the transaction ship no more ([`crate::install::InstallOptions::released`]).
    pub released: crate::install::Released,
    /// Take over files owned by other packages even without `Replaces` (`--force-overwrite`);
    /// the takeover is recorded as with `Replaces`.
    pub force_overwrite: bool,
}

/// Why a package could not be unpacked (or a transaction could not proceed).
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("{package}: entry {entry:?}: {reason}")]
    Entry {
        package: String,
        entry: String,
        reason: String,
    },
    #[error(
        "{package}: {path} is already owned by package {owner} ({package} does not declare Replaces: {owner})"
    )]
    Conflict {
        package: String,
        path: String,
        owner: String,
    },
    #[error("{package}: control: {reason}")]
    Control { package: String, reason: String },
    #[error(transparent)]
    Package(#[from] PackageFileError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Status(#[from] StatusError),
    #[error("{}: line {line}: {reason}", path.display())]
    Journal {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error(
        "{}: an interrupted operation is pending; recover it first (install::recover)",
        path.display()
    )]
    Pending { path: PathBuf },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> UnpackError + '_ {
    move |source| UnpackError::Io {
        path: path.to_path_buf(),
        source,
    }
}

// ---------------------------------------------------------------------------------------
// Failure injection (tests only): simulate a kill -9 at the n-th step.

#[cfg(test)]
thread_local! {
    static FAIL_AT: std::cell::Cell<Option<u64>> = const { std::cell::Cell::new(None) };
    static STEPS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    static KILLED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Arms the simulated kill at step `at` (counted from 0) on this thread; `None` disarms.
#[cfg(test)]
pub(crate) fn arm_kill(at: Option<u64>) {
    FAIL_AT.with(|f| f.set(at));
    STEPS.with(|s| s.set(0));
    KILLED.with(|k| k.set(false));
}

/// Whether a simulated kill is armed on this thread (steps then stay on it, in order).
fn kill_armed() -> bool {
    #[cfg(test)]
    {
        FAIL_AT.with(|f| f.get().is_some())
    }
    #[cfg(not(test))]
    {
        false
    }
}

/// A step at which a killed run could stop.
#[inline]
fn fail_point() -> io::Result<()> {
    #[cfg(test)]
    {
        let n = STEPS.with(|s| {
            let n = s.get();
            s.set(n + 1);
            n
        });
        if KILLED.with(|k| k.get()) || FAIL_AT.with(|f| f.get()) == Some(n) {
            KILLED.with(|k| k.set(true));
            return Err(io::Error::other("simulated kill"));
        }
    }
    Ok(())
}

/// Whether the simulated kill fired (then nothing may be cleaned up in-process).
pub(crate) fn killed() -> bool {
    #[cfg(test)]
    {
        KILLED.with(|k| k.get())
    }
    #[cfg(not(test))]
    {
        false
    }
}

// ---------------------------------------------------------------------------------------
// Unpacking.

/// One entry of the package as planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// Absolute in the root (`/usr/bin/x`): the path the package ships.
    pub path: String,
    /// File (hard links included), Symlink, Dir or Special.
    pub kind: FileKind,
    /// Permission bits (`0o7777` mask) as in the archive.
    pub mode: u32,
    /// SHA-256 of a regular file.
    pub sha256: Option<String>,
    /// A symlink's target.
    pub link_target: Option<String>,
    /// Where it goes: `path`, or `<path>-opkg` for a kept conffile.
    pub final_path: String,
    tmp: Option<String>,
    /// The entry's name as the archive gives it (for messages).
    entry: String,
}

impl Planned {
    /// The database record of this entry.
    pub fn record(&self) -> FileRecord {
        FileRecord {
            path: self.path.clone(),
            kind: self.kind,
            sha256: self.sha256.clone(),
            link_target: self.link_target.clone(),
            mode: Some(self.mode),
        }
    }
}

/// A package staged into the root (nothing visible yet: see [`Transaction::commit`]).
#[derive(Debug)]
pub struct Unpacked {
    /// The package (control paragraph, control members).
    pub package: Package,
    /// Every entry, in archive order; directories this package created implicitly included.
    pub entries: Vec<Planned>,
    /// Conffiles with the SHA-256 to record for them.
    pub conffiles: Vec<(String, String)>,
    /// Conffiles kept as modified (the new version went to `<path>-opkg`).
    pub kept_conffiles: Vec<String>,
    /// Paths taken over from other packages (by `Replaces`), by package.
    pub takeovers: BTreeMap<String, BTreeSet<String>>,
}

/// Streams the package at `pkg_file` into temporary files under the root, checks it (see
/// the module documentation) and plans the renames in `tx`. Nothing is visible until
/// `tx.commit()`; on error the caller rolls `tx` back.
pub fn unpack(
    db: &mut Db,
    tx: &mut Transaction,
    pkg: PackageFile<'_>,
    opts: &UnpackOptions,
) -> Result<Unpacked, UnpackError> {
    let pkg_file = pkg.path();
    db.owners()?;
    let label = pkg_file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| pkg_file.display().to_string());
    let db_ro: &Db = db;
    let mut stager = entries::Stager::new(db_ro, tx, opts, label.clone());
    if let PackageFile::Decoded { package, .. } = pkg {
        stager.shared = Some(package.package.data_tar().clone());
        stager.conffiles = Some(entries::conffile_paths(&package.package.package).collect());
    }
    let mut failure: Option<UnpackError> = None;
    let read = {
        let mut visit = |tar: &mut feeds::package::DataTar<'_>| {
            let mut k = 0;
            tar.for_each_entry(|e| {
                // The digest the reading ahead took of this entry, found by its place.
                let digest = match pkg {
                    PackageFile::Decoded { package, .. } => {
                        package.digests.get(k).copied().flatten()
                    }
                    PackageFile::Path(_) => None,
                };
                k += 1;
                match stager.entry(e, digest) {
                    Ok(()) => Ok(()),
                    Err(err) => {
                        failure = Some(err);
                        Err(io::Error::other("stopped"))
                    }
                }
            })
            .map(|_| ())
        };
        match pkg {
            PackageFile::Path(p) => read_package_file(p, &ReadOptions::default(), Some(&mut visit)),
            PackageFile::Decoded { path, package } => package
                .package
                .visit_data(&mut visit)
                .map(|()| package.package.package.clone())
                .map_err(|source| PackageFileError {
                    path: path.to_path_buf(),
                    source,
                }),
        }
    };
    let package = match read {
        Ok(p) => p,
        Err(e) => {
            return Err(match failure {
                Some(UnpackError::Entry { entry, reason, .. }) => UnpackError::Entry {
                    package: describe_package(pkg_file, &label),
                    entry,
                    reason,
                },
                Some(other) => other,
                None => UnpackError::Package(e),
            });
        }
    };
    let entries::Stager {
        entries, planned, ..
    } = stager;
    entries::settle(db, tx, opts, package, entries, planned)
}

/// `name version (file)` for error messages, read again from the file (only on failure).
fn describe_package(pkg_file: &Path, label: &str) -> String {
    match Package::open(pkg_file, &ReadOptions::default()) {
        Ok(p) => format!("package {} {} ({label})", p.name(), p.version()),
        Err(_) => label.to_string(),
    }
}

/// Whether the file at `path` (absolute in the root, reached without following a symlink)
/// differs from `recorded`, an MD5 (32 hex digits) or SHA-256 (64) as opkg records
/// conffiles. Anything but a regular file counts as modified; a missing one does not.
pub(crate) fn conffile_modified_at(
    dirs: &RootDirs,
    path: &str,
    recorded: &str,
) -> Result<bool, UnpackError> {
    match dirs.lstat(path)? {
        None => return Ok(false),
        Some(m) if !m.is_file() => return Ok(true),
        Some(_) => {}
    }
    let recorded = recorded.to_ascii_lowercase();
    let current = if recorded.len() <= 33 {
        dirs.digest::<Md5>(path)?
    } else {
        dirs.digest::<Sha256>(path)?
    };
    Ok(current.as_deref() != Some(recorded.as_str()))
}

#[cfg(test)]
mod conffile_tests {
    use super::*;
    use std::fs;

    #[test]
    fn conffile_modification_is_detected_with_md5_and_sha256() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("etc")).unwrap();
        fs::write(dir.path().join("etc/x"), b"hello\n").unwrap();
        let sha = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";
        let md5 = "b1946ac92492d2347c6235b4d2611184";
        let dirs = RootDirs::open(dir.path()).unwrap();
        assert!(!conffile_modified_at(&dirs, "/etc/x", sha).unwrap());
        assert!(!conffile_modified_at(&dirs, "/etc/x", md5).unwrap());
        fs::write(dir.path().join("etc/x"), b"changed\n").unwrap();
        assert!(conffile_modified_at(&dirs, "/etc/x", sha).unwrap());
        assert!(conffile_modified_at(&dirs, "/etc/x", md5).unwrap());
        assert!(!conffile_modified_at(&dirs, "/etc/missing", sha).unwrap());
    }
}

/// Fixtures shared by the tests of `unpack`, `install` and `verify`.
#[cfg(test)]
pub(crate) mod test_support {
    use std::collections::BTreeMap;
    use std::fs;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::path::{Path, PathBuf};

    use feeds::build::PackageBuilder;

    use crate::install::{InstallOptions, ScriptMode};
    use crate::status::{DEFAULT_DB_DIR, Db};

    /// A control file.
    pub fn control(name: &str, version: &str, extra: &str) -> String {
        format!(
            "Package: {name}\nVersion: {version}\nArchitecture: all\n{extra}Description: test package {name}\n"
        )
    }

    /// Writes a package built by `b` as `<dir>/<file>`.
    pub fn write_pkg(dir: &Path, file: &str, b: PackageBuilder) -> PathBuf {
        let path = dir.join(file);
        fs::write(&path, b.build().unwrap()).unwrap();
        path
    }

    /// Install options: scripts as given, no special files, a fixed time.
    pub fn opts(scripts: ScriptMode) -> InstallOptions {
        InstallOptions {
            scripts,
            installed_time: 1_700_000_000,
            ..InstallOptions::default()
        }
    }

    /// Opens the database of `root`.
    pub fn open(root: &Path) -> Db {
        Db::open(root, DEFAULT_DB_DIR).unwrap()
    }

    /// One raw data-tar entry, names written into the header bytes as given.
    pub enum Raw<'a> {
        File(&'a str, u32, &'a [u8]),
        Dir(&'a str, u32),
        Symlink(&'a str, &'a str),
        HardLink(&'a str, &'a str),
        Node(&'a str, tar::EntryType, u32),
    }

    fn raw_header(
        kind: tar::EntryType,
        name: &str,
        link: Option<&str>,
        mode: u32,
        size: u64,
    ) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        let old = h.as_old_mut();
        assert!(name.len() <= 100, "test names fit the header");
        old.name = [0; 100];
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = link {
            old.linkname = [0; 100];
            old.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
        h.set_cksum();
        h
    }

    fn tar_of(entries: &[(tar::Header, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (h, data) in entries {
            b.append(h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    /// An OpenWrt-style .ipk (gzipped tar of `./debian-binary`, `./data.tar.gz`,
    /// `./control.tar.gz`, data first) whose data tar holds exactly `entries`.
    pub fn raw_ipk(
        control: &str,
        control_files: &[(&str, u32, &[u8])],
        entries: &[Raw],
    ) -> Vec<u8> {
        use tar::EntryType as T;
        let mut data: Vec<(tar::Header, &[u8])> = Vec::new();
        for e in entries {
            data.push(match e {
                Raw::File(n, m, d) => (raw_header(T::Regular, n, None, *m, d.len() as u64), *d),
                Raw::Dir(n, m) => (raw_header(T::Directory, n, None, *m, 0), &[][..]),
                Raw::Symlink(n, t) => (raw_header(T::Symlink, n, Some(t), 0o777, 0), &[][..]),
                Raw::HardLink(n, t) => (raw_header(T::Link, n, Some(t), 0o644, 0), &[][..]),
                Raw::Node(n, k, m) => (raw_header(*k, n, None, *m, 0), &[][..]),
            });
        }
        let data_gz = feeds::index::gzip(&tar_of(&data));
        let mut ctl: Vec<(tar::Header, &[u8])> = vec![(
            raw_header(T::Regular, "./control", None, 0o644, control.len() as u64),
            control.as_bytes(),
        )];
        for (n, m, d) in control_files {
            let name = format!("./{n}");
            ctl.push((raw_header(T::Regular, &name, None, *m, d.len() as u64), *d));
        }
        let control_gz = feeds::index::gzip(&tar_of(&ctl));
        let outer = tar_of(&[
            (
                raw_header(T::Regular, "./debian-binary", None, 0o644, 4),
                b"2.0\n",
            ),
            (
                raw_header(
                    T::Regular,
                    "./data.tar.gz",
                    None,
                    0o644,
                    data_gz.len() as u64,
                ),
                &data_gz,
            ),
            (
                raw_header(
                    T::Regular,
                    "./control.tar.gz",
                    None,
                    0o644,
                    control_gz.len() as u64,
                ),
                &control_gz,
            ),
        ]);
        feeds::index::gzip(&outer)
    }

    /// Writes `raw_ipk(..)` to `<dir>/<file>`.
    pub fn write_raw(dir: &Path, file: &str, control: &str, entries: &[Raw]) -> PathBuf {
        let path = dir.join(file);
        fs::write(&path, raw_ipk(control, &[], entries)).unwrap();
        path
    }

    /// Everything under `dir` (lock files aside): path → kind, mode, contents or target.
    pub fn snapshot(dir: &Path) -> BTreeMap<String, String> {
        fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
            let Ok(rd) = fs::read_dir(dir) else { return };
            for e in rd {
                let e = e.unwrap();
                let p = e.path();
                let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
                if rel.ends_with("prokit.lock") || rel.ends_with("opkg.lock") {
                    continue;
                }
                let m = fs::symlink_metadata(&p).unwrap();
                let mode = m.permissions().mode() & 0o7777;
                let v = if m.file_type().is_symlink() {
                    format!("l {}", fs::read_link(&p).unwrap().display())
                } else if m.is_dir() {
                    walk(base, &p, out);
                    format!("d {mode:o}")
                } else if m.is_file() {
                    format!(
                        "f {mode:o} {}",
                        String::from_utf8_lossy(&fs::read(&p).unwrap())
                    )
                } else {
                    format!("s {mode:o} {}", m.rdev())
                };
                out.insert(rel, v);
            }
        }
        let mut out = BTreeMap::new();
        walk(dir, dir, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    use super::test_support::*;
    use crate::install::{self, InstallError, InstallOptions, ScriptMode};
    use feeds::build::PackageBuilder;

    /// A root inside a scratch directory, so that "outside the root" is observable.
    fn setup() -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        fs::create_dir(&root).unwrap();
        (tmp, root)
    }

    fn refused(err: InstallError) -> (String, String) {
        match err {
            InstallError::Unpack(UnpackError::Entry {
                package,
                entry,
                reason,
            }) => (format!("{package}: {entry}"), reason),
            other => panic!("expected a refused entry, got: {other}"),
        }
    }

    /// Installs `entries` as package `evil`; returns the refusal, checking that the root is
    /// unchanged and that nothing appeared next to it.
    fn attempt(tmp: &Path, root: &Path, entries: &[Raw], allow_special: bool) -> (String, String) {
        let mut o = opts(ScriptMode::Skip);
        o.allow_special = allow_special;
        attempt_with(tmp, root, entries, &o, &|_| {})
    }

    /// [`attempt`] with install options and the database prepared by `prepare`; a sentinel
    /// file beside the root (and everything else there) must be unchanged too.
    fn attempt_with(
        tmp: &Path,
        root: &Path,
        entries: &[Raw],
        o: &InstallOptions,
        prepare: &dyn Fn(&mut Db),
    ) -> (String, String) {
        let pkg = write_raw(
            tmp,
            "evil_1.0_all.ipk",
            &control("evil", "1.0", ""),
            entries,
        );
        let sentinel = tmp.join("sentinel");
        if !sentinel.exists() {
            fs::write(&sentinel, "host file").unwrap();
        }
        let mut db = open(root);
        prepare(&mut db);
        let before_root = snapshot(root);
        let before_all = snapshot(tmp);
        let err = install::install(&mut db, &pkg, false, o).unwrap_err();
        let text = err.to_string();
        assert_eq!(snapshot(root), before_root, "the root changed: {text}");
        assert_eq!(
            snapshot(tmp),
            before_all,
            "something was written outside the root: {text}"
        );
        assert_eq!(fs::read(&sentinel).unwrap(), b"host file");
        assert!(db.stanza("evil").is_none());
        assert!(!db.journal_path().exists());
        let (who, reason) = refused(err);
        assert!(who.contains("evil"), "the error names the package: {who}");
        (who, reason)
    }

    /// Every kind of entry at `name` (a file, a directory, a symlink, a hard link, a FIFO).
    fn every_kind(name: &str) -> Vec<Vec<Raw<'_>>> {
        vec![
            vec![Raw::File(name, 0o644, b"Package: x\n")],
            vec![Raw::Dir(name, 0o755)],
            vec![Raw::Symlink(name, "/tmp/forged")],
            vec![
                Raw::File("./usr/share/evil/src", 0o644, b"x"),
                Raw::HardLink(name, "./usr/share/evil/src"),
            ],
            vec![Raw::Node(name, tar::EntryType::Fifo, 0o644)],
        ]
    }

    #[test]
    fn threat_19_package_writing_the_status_file_is_refused() {
        let (tmp, root) = setup();
        let mut o = opts(ScriptMode::Skip);
        // Even with every other override: the package manager's state is never writable.
        o.allow_special = true;
        o.allow_trust_changes = true;
        for entries in every_kind("./usr/lib/opkg/status") {
            let (who, reason) = attempt_with(tmp.path(), &root, &entries, &o, &|_| {});
            assert!(who.contains("./usr/lib/opkg/status"), "{who}");
            assert_eq!(
                reason,
                "inside the package database (/usr/lib/opkg): a package may never write the package manager's state"
            );
        }
    }

    #[test]
    fn threat_19_package_writing_an_info_list_is_refused() {
        let (tmp, root) = setup();
        let mut o = opts(ScriptMode::Skip);
        o.allow_special = true;
        for name in [
            "./usr/lib/opkg/info/busybox.list",
            "usr/lib/opkg/info/evil.list",
            "./usr/lib/opkg/info",
            "./usr/lib/opkg/prokit-journal",
        ] {
            for entries in every_kind(name) {
                let (_, reason) = attempt_with(tmp.path(), &root, &entries, &o, &|_| {});
                assert!(
                    reason.starts_with("inside the package database (/usr/lib/opkg)"),
                    "{name}: {reason}"
                );
            }
        }
        // Through a database directory configured elsewhere (Yocto's /var/lib/opkg) too.
        let (tmp2, root2) = setup();
        fs::create_dir_all(root2.join("var/lib/opkg")).unwrap();
        let pkg = write_raw(
            tmp2.path(),
            "evil_1.0_all.ipk",
            &control("evil", "1.0", ""),
            &[Raw::File(
                "./var/lib/opkg/info/evil.list",
                0o644,
                b"/etc/shadow\n",
            )],
        );
        let mut db = Db::open(&root2, "var/lib/opkg").unwrap();
        let err = install::install(&mut db, &pkg, false, &opts(ScriptMode::Skip)).unwrap_err();
        assert!(
            err.to_string()
                .contains("inside the package database (/var/lib/opkg)"),
            "{err}"
        );
    }

    #[test]
    fn threat_19_package_writing_the_lists_dir_is_refused() {
        let (tmp, root) = setup();
        let reserve = |db: &mut Db| {
            db.reserve(&[
                "/var/opkg-lists",
                "var/lib/prokit",
                "var/cache/prokit",
                "var/lock",
            ]);
        };
        let mut o = opts(ScriptMode::Skip);
        o.allow_special = true;
        for name in [
            "./var/opkg-lists/main",
            "./var/opkg-lists/main.sig",
            "./var/lib/prokit/feeds/main/release",
            "./var/lib/prokit/keyrings/main",
            "./var/cache/prokit/busybox_1.0_all.ipk",
            "./var/lock/opkg.lock",
        ] {
            for entries in every_kind(name) {
                let (who, reason) = attempt_with(tmp.path(), &root, &entries, &o, &reserve);
                assert!(who.contains(name), "{who}");
                assert!(
                    reason.contains("inside the package manager's own state")
                        && reason.contains("a package may never write"),
                    "{name}: {reason}"
                );
            }
        }
    }

    /// The refusal of a trust change by package `evil`.
    fn assert_trust_refusal(reason: &str, keyring: &str) {
        assert!(
            reason.contains(&format!(
                "a package other than the configured keyring package ({keyring}) may not change which keys or feeds are trusted; pass --allow-trust-changes to allow it"
            )),
            "{reason}"
        );
    }

    #[test]
    fn threat_19_opkg_conf_check_signature_0_is_refused() {
        let (tmp, root) = setup();
        let mut o = opts(ScriptMode::Skip);
        o.trust_package = Some("main-keyring".into());
        let conf = b"src/gz evil http://evil.example/\noption check_signature 0\n";
        for (name, what) in [
            ("./etc/opkg.conf", "opkg's configuration"),
            ("./etc/opkg/customfeeds.conf", "an opkg configuration file"),
            ("./etc/opkg/zz-evil.conf", "an opkg configuration file"),
        ] {
            let (who, reason) = attempt_with(
                tmp.path(),
                &root,
                &[Raw::File(name, 0o644, conf)],
                &o,
                &|_| {},
            );
            assert!(who.contains(name), "{who}");
            assert!(reason.starts_with(what), "{reason}");
            assert_trust_refusal(&reason, "main-keyring");
        }
        // Over an existing configuration too, and as a symlink to a file of the package.
        fs::create_dir_all(root.join("etc/opkg")).unwrap();
        fs::write(root.join("etc/opkg.conf"), "src/gz main http://main/\n").unwrap();
        let (_, reason) = attempt_with(
            tmp.path(),
            &root,
            &[
                Raw::File("./usr/share/evil/opkg.conf", 0o644, conf),
                Raw::Symlink("./etc/opkg.conf", "/usr/share/evil/opkg.conf"),
            ],
            &o,
            &|_| {},
        );
        assert_trust_refusal(&reason, "main-keyring");
        // Without a configured keyring, no package may.
        let (_, reason) = attempt_with(
            tmp.path(),
            &root,
            &[Raw::File("./etc/opkg.conf", 0o644, conf)],
            &opts(ScriptMode::Skip),
            &|_| {},
        );
        assert_trust_refusal(&reason, "none is configured");
        assert_eq!(
            fs::read_to_string(root.join("etc/opkg.conf")).unwrap(),
            "src/gz main http://main/\n"
        );
    }

    #[test]
    fn threat_19_new_trusted_key_is_refused() {
        let (tmp, root) = setup();
        let mut o = opts(ScriptMode::Skip);
        o.trust_package = Some("main-keyring".into());
        let key = b"untrusted comment: evil\nRWQAAAAAAAAAAA==\n";
        for entries in [
            vec![Raw::File("./etc/opkg/keys/0123456789abcdef", 0o644, key)],
            vec![
                Raw::Dir("./etc/opkg/keys/", 0o755),
                Raw::File("./etc/opkg/keys/evil", 0o644, key),
            ],
            vec![Raw::Symlink("./etc/opkg/keys/0123456789abcdef", "/tmp/key")],
            // The key directory, or the directories above it, replaced by a link to one of
            // the package's own.
            vec![Raw::Symlink("./etc/opkg/keys", "/usr/share/evil/keys")],
            vec![Raw::Symlink("./etc/opkg", "/usr/share/evil/opkg")],
            vec![Raw::Symlink("./etc", "/usr/share/evil/etc")],
        ] {
            let (_, reason) = attempt_with(tmp.path(), &root, &entries, &o, &|_| {});
            assert_trust_refusal(&reason, "main-keyring");
        }
        // With a key directory already in the root.
        fs::create_dir_all(root.join("etc/opkg/keys")).unwrap();
        fs::write(root.join("etc/opkg/keys/1111111111111111"), "trusted").unwrap();
        let (who, reason) = attempt_with(
            tmp.path(),
            &root,
            &[Raw::File("./etc/opkg/keys/0123456789abcdef", 0o644, key)],
            &o,
            &|_| {},
        );
        assert!(who.contains("./etc/opkg/keys/0123456789abcdef"), "{who}");
        assert!(
            reason.starts_with("a trusted key (/etc/opkg/keys)"),
            "{reason}"
        );
        // A plain directory of the package there changes nothing about trust.
        let pkg = write_raw(
            tmp.path(),
            "dirs_1_all.ipk",
            &control("dirs", "1", ""),
            &[
                Raw::Dir("./etc/opkg/keys/", 0o755),
                Raw::Dir("./etc/opkg/", 0o755),
            ],
        );
        let mut db = open(&root);
        install::install(&mut db, &pkg, false, &o).unwrap();
    }

    #[test]
    fn threat_19_keyring_package_may_install_keys() {
        let (tmp, root) = setup();
        let mut o = opts(ScriptMode::Skip);
        o.trust_package = Some("main-keyring".into());
        let pkg = write_raw(
            tmp.path(),
            "main-keyring_1_all.ipk",
            &control("main-keyring", "1", ""),
            &[
                Raw::File("./etc/opkg/keys/0123456789abcdef", 0o644, b"key"),
                Raw::File(
                    "./etc/opkg/signed.conf",
                    0o644,
                    b"option signed_by main 0123456789abcdef\n",
                ),
            ],
        );
        let mut db = open(&root);
        install::install(&mut db, &pkg, false, &o).unwrap();
        assert_eq!(
            fs::read(root.join("etc/opkg/keys/0123456789abcdef")).unwrap(),
            b"key"
        );
        // Another package shipping exactly what is there changes nothing and is accepted
        // (a key or configuration a bootstrap wrote, shipped again by its package).
        let same = write_raw(
            tmp.path(),
            "same_1_all.ipk",
            &control("same", "1", "Replaces: main-keyring\n"),
            &[Raw::File("./etc/opkg/keys/0123456789abcdef", 0o644, b"key")],
        );
        install::install(&mut db, &same, false, &o).unwrap();
        drop(db);
        // But not other contents.
        let (_, reason) = attempt_with(
            tmp.path(),
            &root,
            &[Raw::File(
                "./etc/opkg/keys/0123456789abcdef",
                0o644,
                b"other key",
            )],
            &o,
            &|_| {},
        );
        assert_trust_refusal(&reason, "main-keyring");
    }

    #[test]
    fn threat_19_allow_trust_changes_allows_it() {
        let (tmp, root) = setup();
        let mut o = opts(ScriptMode::Skip);
        o.allow_trust_changes = true;
        let pkg = write_raw(
            tmp.path(),
            "opkg_1_all.ipk",
            &control("opkg", "1", ""),
            &[
                Raw::File("./etc/opkg.conf", 0o644, b"option check_signature\n"),
                Raw::File("./etc/opkg/customfeeds.conf", 0o644, b"# none\n"),
                Raw::File("./etc/opkg/keys/0123456789abcdef", 0o644, b"key"),
            ],
        );
        let mut db = open(&root);
        install::install(&mut db, &pkg, false, &o).unwrap();
        assert_eq!(
            fs::read(root.join("etc/opkg.conf")).unwrap(),
            b"option check_signature\n"
        );
    }

    #[test]
    fn trust_file_kept_as_a_modified_conffile_goes_to_its_opkg_copy_and_is_allowed() {
        // opkg's own package over a root whose opkg.conf was written first (by a bootstrap):
        // the configuration in force stays, and the `-opkg` copy is read by nothing.
        let (tmp, root) = setup();
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(root.join("etc/opkg.conf"), "src/gz main http://main/\n").unwrap();
        let pkg = tmp.path().join("opkg_1_all.ipk");
        fs::write(
            &pkg,
            raw_ipk(
                &control("opkg", "1", ""),
                &[("conffiles", 0o644, b"/etc/opkg.conf\n")],
                &[Raw::File(
                    "./etc/opkg.conf",
                    0o644,
                    b"option check_signature 0\n",
                )],
            ),
        )
        .unwrap();
        let mut db = open(&root);
        let r = install::install(&mut db, &pkg, false, &opts(ScriptMode::Skip)).unwrap();
        assert_eq!(r.kept_conffiles, vec!["/etc/opkg.conf".to_string()]);
        assert_eq!(
            fs::read_to_string(root.join("etc/opkg.conf")).unwrap(),
            "src/gz main http://main/\n"
        );
        assert!(root.join("etc/opkg.conf-opkg").exists());
    }

    #[test]
    fn threat_26_conffile_opkg_copy_on_another_packages_path_is_refused() {
        let (tmp, root) = setup();
        let outside = tmp.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("sentinel"), "host file").unwrap();
        // `victim` owns /etc/app.conf-opkg.
        let victim = write_raw(
            tmp.path(),
            "victim_1_all.ipk",
            &control("victim", "1", ""),
            &[Raw::File("./etc/app.conf-opkg", 0o644, b"victim's file")],
        );
        let mut db = open(&root);
        install::install(&mut db, &victim, false, &opts(ScriptMode::Skip)).unwrap();
        // A locally modified /etc/app.conf makes `evil`'s conffile go to `-opkg`.
        fs::write(root.join("etc/app.conf"), "local settings\n").unwrap();
        let evil = |extra: &str| {
            let pkg = tmp.path().join("evil_1_all.ipk");
            fs::write(
                &pkg,
                raw_ipk(
                    &control("evil", "1", extra),
                    &[("conffiles", 0o644, b"/etc/app.conf\n")],
                    &[Raw::File("./etc/app.conf", 0o644, b"evil's version")],
                ),
            )
            .unwrap();
            pkg
        };
        let pkg = evil("");
        let before = snapshot(tmp.path());
        let err = install::install(&mut db, &pkg, false, &opts(ScriptMode::Skip)).unwrap_err();
        assert!(
            matches!(&err, InstallError::Unpack(UnpackError::Conflict { package, owner, .. })
                if package == "evil" && owner == "victim"),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "evil: /etc/app.conf-opkg (the new version of its kept conffile /etc/app.conf) is already owned by package victim (evil does not declare Replaces: victim)"
        );
        assert_eq!(snapshot(tmp.path()), before);
        assert_eq!(
            fs::read(root.join("etc/app.conf-opkg")).unwrap(),
            b"victim's file"
        );
        assert!(db.stanza("evil").is_none());
        // The `-opkg` copy on a directory of the root is refused as well.
        drop(db);
        let (tmp2, root2) = setup();
        fs::create_dir_all(root2.join("etc/app.conf-opkg")).unwrap();
        fs::write(root2.join("etc/app.conf"), "local settings\n").unwrap();
        let mut db2 = open(&root2);
        let before2 = snapshot(tmp2.path());
        let err = install::install(&mut db2, &pkg, false, &opts(ScriptMode::Skip)).unwrap_err();
        assert!(
            err.to_string()
                .contains("/etc/app.conf-opkg is a directory in the root"),
            "{err}"
        );
        assert_eq!(snapshot(tmp2.path()), before2);
        // With `Replaces: victim` the path changes owner, as any other file would.
        let mut db = open(&root);
        let r = install::install(
            &mut db,
            &evil("Replaces: victim\n"),
            false,
            &opts(ScriptMode::Skip),
        )
        .unwrap();
        assert_eq!(r.kept_conffiles, vec!["/etc/app.conf".to_string()]);
        assert_eq!(
            fs::read(root.join("etc/app.conf-opkg")).unwrap(),
            b"evil's version"
        );
        assert!(
            db.files("victim")
                .unwrap()
                .iter()
                .all(|r| r.path != "/etc/app.conf-opkg")
        );
        assert_eq!(fs::read(outside.join("sentinel")).unwrap(), b"host file");
    }

    #[test]
    fn path_traversal_dotdot_is_refused() {
        let (tmp, root) = setup();
        for name in [
            "./../pwned",
            "./usr/../../pwned",
            "../../../../../../tmp/pwned-prokit",
        ] {
            let (who, reason) = attempt(
                tmp.path(),
                &root,
                &[Raw::Dir("./usr/", 0o755), Raw::File(name, 0o644, b"x")],
                false,
            );
            assert!(who.contains(name), "the error names the entry: {who}");
            assert!(reason.contains(".."), "{reason}");
        }
        assert!(!tmp.path().join("pwned").exists());
    }

    #[test]
    fn absolute_path_is_refused() {
        let (tmp, root) = setup();
        let outside = tmp.path().join("pwned");
        let name = outside.to_str().unwrap().to_string();
        for n in [name.as_str(), ".//etc/pwned-prokit"] {
            let (who, reason) = attempt(tmp.path(), &root, &[Raw::File(n, 0o644, b"x")], false);
            assert!(who.contains(n), "{who}");
            assert!(reason.contains("absolute"), "{reason}");
        }
        assert!(!outside.exists());
    }

    #[test]
    fn write_through_symlink_from_same_package_is_refused() {
        let (tmp, root) = setup();
        let outside = tmp.path().join("outside");
        fs::create_dir(&outside).unwrap();
        let abs = outside.to_str().unwrap().to_string();
        for target in [abs.as_str(), "../outside", "/", "../../"] {
            let (_, reason) = attempt(
                tmp.path(),
                &root,
                &[
                    Raw::Symlink("./evil", target),
                    Raw::File("./evil/pwned", 0o644, b"x"),
                ],
                false,
            );
            assert!(reason.contains("symlink /evil"), "{reason}");
            assert!(reason.contains("this same package"), "{reason}");
        }
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
    }

    #[test]
    fn write_through_symlink_from_earlier_package_is_refused() {
        let (tmp, root) = setup();
        let outside = tmp.path().join("outside");
        fs::create_dir(&outside).unwrap();
        let first = write_raw(
            tmp.path(),
            "linker_1_all.ipk",
            &control("linker", "1", ""),
            &[Raw::Symlink("./evil", outside.to_str().unwrap())],
        );
        {
            let mut db = open(&root);
            install::install(&mut db, &first, false, &opts(ScriptMode::Skip)).unwrap();
        }
        fs::remove_file(&first).unwrap();
        let (_, reason) = attempt(
            tmp.path(),
            &root,
            &[
                Raw::Dir("./evil/", 0o755),
                Raw::File("./evil/pwned", 0o644, b"x"),
            ],
            false,
        );
        assert!(reason.contains("symlink /evil"), "{reason}");
        assert!(reason.contains("installed by package linker"), "{reason}");
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
    }

    #[test]
    fn write_through_symlink_already_in_root_is_refused() {
        let (tmp, root) = setup();
        let outside = tmp.path().join("outside");
        fs::create_dir(&outside).unwrap();
        std::os::unix::fs::symlink("/", root.join("evil")).unwrap();
        std::os::unix::fs::symlink("../../", root.join("up")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("abs")).unwrap();
        for entries in [
            vec![Raw::File("./evil/tmp/pwned-prokit", 0o644, b"x")],
            vec![Raw::File("./up/pwned", 0o644, b"x")],
            vec![
                Raw::Dir("./abs/", 0o755),
                Raw::File("./abs/pwned", 0o644, b"x"),
            ],
        ] {
            let (_, reason) = attempt(tmp.path(), &root, &entries, false);
            assert!(reason.contains("owned by no package"), "{reason}");
        }
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
        assert!(!tmp.path().join("pwned").exists());
    }

    #[test]
    fn directory_symlink_inside_root_is_not_followed_either() {
        // `/lib -> usr/lib` stays inside the root, but prokit never writes through a symlink
        // (so ownership by path stays exact); the package must ship /usr/lib itself.
        let (tmp, root) = setup();
        fs::create_dir_all(root.join("usr/lib")).unwrap();
        std::os::unix::fs::symlink("usr/lib", root.join("lib")).unwrap();
        let (_, reason) = attempt(
            tmp.path(),
            &root,
            &[Raw::File("./lib/libx.so", 0o644, b"x")],
            false,
        );
        assert!(reason.contains("symlink /lib"), "{reason}");
        // A directory entry on the symlink alone writes nothing and is accepted.
        let ok = write_raw(
            tmp.path(),
            "ok_1_all.ipk",
            &control("ok", "1", ""),
            &[
                Raw::Dir("./lib/", 0o755),
                Raw::File("./usr/lib/libx.so", 0o644, b"x"),
            ],
        );
        let mut db = open(&root);
        install::install(&mut db, &ok, false, &opts(ScriptMode::Skip)).unwrap();
        assert_eq!(fs::read(root.join("usr/lib/libx.so")).unwrap(), b"x");
        assert!(
            fs::symlink_metadata(root.join("lib"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }

    #[test]
    fn hard_link_leaving_root_is_refused() {
        let (tmp, root) = setup();
        for (target, why) in [
            ("../../etc/passwd", "leaves the root"),
            ("/etc/passwd", "leaves the root"),
            ("./usr/bin/later", "not a file earlier in this package"),
        ] {
            let (_, reason) = attempt(
                tmp.path(),
                &root,
                &[
                    Raw::HardLink("./usr/bin/x", target),
                    Raw::File("./usr/bin/later", 0o644, b"x"),
                ],
                false,
            );
            assert!(reason.contains(why), "{target}: {reason}");
        }
        // A hard link to an earlier file of the same package is fine.
        let ok = write_raw(
            tmp.path(),
            "ok_1_all.ipk",
            &control("ok", "1", ""),
            &[
                Raw::File("./usr/bin/a", 0o755, b"binary"),
                Raw::HardLink("./usr/bin/b", "./usr/bin/a"),
            ],
        );
        let mut db = open(&root);
        install::install(&mut db, &ok, false, &opts(ScriptMode::Skip)).unwrap();
        assert_eq!(fs::read(root.join("usr/bin/b")).unwrap(), b"binary");
    }

    #[test]
    fn setuid_file_is_refused_unless_allowed() {
        let (tmp, root) = setup();
        for (entries, bits) in [
            (vec![Raw::File("./usr/bin/su", 0o4755, b"x")], "04755"),
            (vec![Raw::File("./usr/bin/sg", 0o2755, b"x")], "02755"),
            (vec![Raw::Dir("./var/mail/", 0o2775)], "02775"),
        ] {
            let (_, reason) = attempt(tmp.path(), &root, &entries, false);
            assert!(
                reason.contains("setuid/setgid") && reason.contains(bits),
                "{reason}"
            );
        }
        let pkg = write_raw(
            tmp.path(),
            "su_1_all.ipk",
            &control("su", "1", ""),
            &[Raw::File("./usr/bin/su", 0o4755, b"x")],
        );
        let mut db = open(&root);
        let mut o = opts(ScriptMode::Skip);
        o.allow_special = true;
        install::install(&mut db, &pkg, false, &o).unwrap();
        let mode = fs::metadata(root.join("usr/bin/su"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o4755);
    }

    #[test]
    fn device_node_and_fifo_are_refused_unless_allowed() {
        let (tmp, root) = setup();
        for (kind, what) in [
            (tar::EntryType::Char, "character device"),
            (tar::EntryType::Block, "block device"),
            (tar::EntryType::Fifo, "FIFO"),
        ] {
            let (_, reason) = attempt(
                tmp.path(),
                &root,
                &[Raw::Node("./dev/node", kind, 0o600)],
                false,
            );
            assert!(
                reason.contains(what) && reason.contains("--allow-special"),
                "{reason}"
            );
        }
        let pkg = write_raw(
            tmp.path(),
            "fifo_1_all.ipk",
            &control("fifo", "1", ""),
            &[Raw::Node("./run/fifo", tar::EntryType::Fifo, 0o600)],
        );
        let mut db = open(&root);
        let mut o = opts(ScriptMode::Skip);
        o.allow_special = true;
        install::install(&mut db, &pkg, false, &o).unwrap();
        use std::os::unix::fs::FileTypeExt;
        assert!(
            fs::symlink_metadata(root.join("run/fifo"))
                .unwrap()
                .file_type()
                .is_fifo()
        );
    }

    #[test]
    fn writing_into_the_package_database_is_refused() {
        let (tmp, root) = setup();
        for name in [
            "./usr/lib/opkg/status",
            "./usr/lib/opkg/info/x.list",
            "./usr/lib/opkg",
        ] {
            let (_, reason) = attempt(tmp.path(), &root, &[Raw::File(name, 0o644, b"x")], false);
            assert!(reason.contains("package database"), "{reason}");
        }
    }

    #[test]
    fn entry_appearing_twice_is_refused() {
        let (tmp, root) = setup();
        let (_, reason) = attempt(
            tmp.path(),
            &root,
            &[
                Raw::File("./etc/x", 0o644, b"1"),
                Raw::Symlink("./etc/x", "/etc/shadow"),
            ],
            false,
        );
        assert!(reason.contains("twice"), "{reason}");
    }

    #[test]
    fn failure_halfway_writes_nothing_visible() {
        let (tmp, root) = setup();
        let (who, reason) = attempt(
            tmp.path(),
            &root,
            &[
                Raw::Dir("./usr/", 0o755),
                Raw::File("./usr/share/deep/a", 0o644, b"a"),
                Raw::File("./usr/bin/b", 0o755, b"b"),
                Raw::Symlink("./usr/bin/c", "b"),
                Raw::File("./../late", 0o644, b"x"),
            ],
            false,
        );
        assert!(who.contains("./../late"), "{who}");
        assert!(reason.contains(".."), "{reason}");
        assert!(
            !root.join("usr/share").exists(),
            "directories made for staged files are gone"
        );
        assert!(!root.join("usr/bin").exists());
    }

    #[test]
    fn errors_name_the_package_even_when_data_comes_first() {
        let (tmp, root) = setup();
        let (who, _) = attempt(
            tmp.path(),
            &root,
            &[Raw::File("./../x", 0o644, b"x")],
            false,
        );
        assert!(who.contains("package evil 1.0"), "{who}");
    }

    #[test]
    fn good_package_from_builder_unpacks_with_modes() {
        let (tmp, root) = setup();
        let pkg = write_pkg(
            tmp.path(),
            "good_1_all.ipk",
            PackageBuilder::new(control("good", "1", ""))
                .dir("usr/bin", 0o755)
                .file("usr/bin/good", 0o755, "#!/bin/sh\n")
                .symlink("usr/bin/alias", "good")
                .dir("tmp", 0o1777),
        );
        let mut db = open(&root);
        let r = install::install(&mut db, &pkg, false, &opts(ScriptMode::Skip)).unwrap();
        assert_eq!(r.files, 2);
        let mode = |p: &str| {
            fs::symlink_metadata(root.join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777
        };
        assert_eq!(mode("usr/bin/good"), 0o755);
        assert_eq!(mode("tmp"), 0o1777);
        assert_eq!(
            fs::read_link(root.join("usr/bin/alias")).unwrap(),
            Path::new("good")
        );
    }

    #[test]
    fn names_are_normalized_and_escapes_refused() {
        assert_eq!(
            normalize_name(b"./usr/bin/x").unwrap().unwrap(),
            "/usr/bin/x"
        );
        assert_eq!(
            normalize_name(b"usr//bin/./x/").unwrap().unwrap(),
            "/usr/bin/x"
        );
        assert_eq!(normalize_name(b"./").unwrap(), None);
        assert_eq!(normalize_name(b".").unwrap(), None);
        assert!(
            normalize_name(b"./../etc/passwd")
                .unwrap_err()
                .contains("..")
        );
        assert!(normalize_name(b"usr/../../x").unwrap_err().contains(".."));
        assert!(
            normalize_name(b"/etc/passwd")
                .unwrap_err()
                .contains("absolute")
        );
        assert!(
            normalize_name(b".//etc/passwd")
                .unwrap_err()
                .contains("absolute")
        );
        assert!(normalize_name(b"a\nb").is_err());
        assert!(normalize_name(b"\xff").is_err());
    }
}
