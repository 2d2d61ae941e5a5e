//! Writing a package's contents under the root, safely (docs/threats.md §10, §15), and
//! the journaled transaction that makes a change to the root crash-safe (threat 16, docs/crash-safety.md §5).
//!
//! [`unpack`] streams the data tar of a package file once. Every entry is checked before
//! anything is written for it, and refused with an error naming the package and the entry:
//! - names that are not UTF-8 or hold control characters, that are absolute (after a leading
//!   `./`), or that have a `..` component;
//! - paths inside the package database or on its lock files;
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
//! When the package is read (its control member may come after the data), conffiles and
//! file ownership are settled:
//! - a conffile already in the root whose content differs from the hash recorded at its
//!   previous install (or, when no package records it, from the new version) is kept, and the
//!   new version is written as `<file>-opkg`, as opkg does; it is reported;
//! - a path owned by another installed package is an error naming both, unless the new
//!   package `Replaces` that one: then the path changes owner. Files in the root that no
//!   package owns are replaced (as dpkg does; opkg refuses them), except conffiles, above.
//!
//! The [`Transaction`] keeps a journal, `<db_dir>/prokit-journal`, appended (and flushed to
//! the kernel) before each step: `new` temporary files and created `dir`s while staging;
//! then the plan — `put` a temporary file onto its final path, `del` a path, `rmdir`,
//! `chmod`, the new `status`; then `commit` (fsynced), after which each `put` first renames an
//! existing final file to a backup `.prokit-<n>.old` and each `del` renames its path to one
//! (a path that did not exist gets a hard link to the temporary file instead, the temporary
//! name staying as the mark of a new path); then `done` (fsynced) once maintainer scripts
//! succeeded, after which backups and temporary names are deleted and the new status file
//! renamed into place. Recovery of a journal left by a killed run: without `done`
//! everything is undone (temporaries deleted, backups renamed back, new paths removed,
//! created directories removed): the old state; with `done` the remaining cleanup is
//! finished: the new state. Both are idempotent, so a recovery that is killed too is simply
//! run again.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use feeds::package::{DataEntry, Package, PackageFileError, ReadOptions, read_package_file};
use feeds::relation::parse_relations;
use feeds::version::Version;
use sha2::{Digest, Sha256};

use crate::status::{
    Db, FileKind, FileRecord, StatusError, conffile_modified, conffiles_of, fsync_dir, join_root,
    sha256_file, write_new_file,
};

/// Options for [`unpack`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnpackOptions {
    /// Create setuid/setgid files, device nodes and FIFOs (refused otherwise).
    pub allow_special: bool,
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
// The journal.

const JOURNAL_MAGIC: &str = "prokit-journal\t1";
const MAX_JOURNAL: u64 = 1 << 30;

/// What a journal says, in the order it was written.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Journal {
    /// What the operation was (`install foo_1.0_all.ipk`, `remove foo`).
    pub op: String,
    /// The package and version, once known.
    pub package: Option<(String, String)>,
    /// Temporary files created (absolute paths in the root).
    pub news: Vec<String>,
    /// Directories created, in creation order.
    pub dirs: Vec<String>,
    /// Modes to give created directories at the end.
    pub chmods: Vec<(String, u32)>,
    /// (index, temporary, final): rename temporary onto final, backing final up first.
    pub puts: Vec<(u64, String, String)>,
    /// (index, path): delete path (backed up at commit, deleted at the end).
    pub dels: Vec<(u64, String)>,
    /// Directories to remove at the end when empty.
    pub rmdirs: Vec<String>,
    /// The temporary file holding the new status file.
    pub status: Option<String>,
    pub committed: bool,
    pub done: bool,
}

impl Journal {
    fn describe(&self) -> String {
        match &self.package {
            Some((n, v)) => format!("{} ({n} {v})", self.op),
            None => self.op.clone(),
        }
    }
}

/// The backup name of the final path of step `idx`.
fn backup_of(idx: u64, final_path: &str) -> String {
    format!("{}/.prokit-{idx}.old", parent_of(final_path))
}

/// The parent of an absolute path in the root (`/usr/bin/x` → `/usr/bin`, `/x` → ``).
fn parent_of(path: &str) -> &str {
    match path.rfind('/') {
        Some(i) => &path[..i],
        None => "",
    }
}

/// A path recorded in a journal: absolute, normalized, no control characters.
fn valid_journal_path(p: &str) -> bool {
    p.starts_with('/')
        && p.len() > 1
        && !p.bytes().any(|b| b < 0x20 || b == 0x7f)
        && p[1..]
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

/// An operation on the root in progress: see the module documentation.
pub struct Transaction {
    root: PathBuf,
    path: PathBuf,
    db_dir: PathBuf,
    status_final: PathBuf,
    file: File,
    journal: Journal,
    next: u64,
    sync: bool,
    /// Plan records not yet written: they only matter once `commit` is, so they are written
    /// together with it.
    plan: String,
    /// Per `put`: the final path cannot exist (its directory was made by this transaction).
    fresh: Vec<bool>,
    /// Per `put`: commit backed an existing final path up.
    backed: Vec<bool>,
}

impl Transaction {
    /// Starts an operation described by `op`: creates the journal (failing with
    /// [`UnpackError::Pending`] when one exists).
    pub(crate) fn begin(db: &Db, op: &str) -> Result<Transaction, UnpackError> {
        let path = db.journal_path();
        let file = match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(UnpackError::Pending { path });
            }
            Err(e) => return Err(io_at(&path)(e)),
        };
        let op: String = op
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let mut tx = Transaction {
            root: db.root().to_path_buf(),
            path,
            db_dir: db.dir().to_path_buf(),
            status_final: db.status_path().to_path_buf(),
            file,
            journal: Journal {
                op: op.clone(),
                ..Journal::default()
            },
            next: 0,
            sync: db.fsync_enabled(),
            plan: String::new(),
            fresh: Vec::new(),
            backed: Vec::new(),
        };
        tx.append(JOURNAL_MAGIC)?;
        tx.append(&format!("op\t{op}"))?;
        Ok(tx)
    }

    /// The root.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    fn full(&self, path: &str) -> PathBuf {
        join_root(&self.root, path)
    }

    /// Appends one line to the journal (a point where a killed run may stop).
    fn append(&mut self, line: &str) -> Result<(), UnpackError> {
        fail_point().map_err(io_at(&self.path))?;
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
        self.file.write_all(&buf).map_err(io_at(&self.path))
    }

    /// Adds a plan record (written with `commit`).
    fn plan_line(&mut self, line: &str) {
        self.plan.push_str(line);
        self.plan.push('\n');
    }

    fn sync_journal(&mut self) -> Result<(), UnpackError> {
        if self.sync {
            self.file.sync_data().map_err(io_at(&self.path))?;
        }
        Ok(())
    }

    /// Records the package being operated on.
    pub(crate) fn set_package(&mut self, name: &str, version: &str) -> Result<(), UnpackError> {
        self.append(&format!("pkg\t{name}\t{version}"))?;
        self.journal.package = Some((name.to_string(), version.to_string()));
        Ok(())
    }

    /// Reserves a temporary name in directory `dir` (absolute in the root, `` for the root)
    /// and journals it; the caller creates the file.
    pub(crate) fn new_temp(&mut self, dir: &str) -> Result<String, UnpackError> {
        let n = self.next;
        self.next += 1;
        let tmp = format!("{dir}/.prokit-{n}.new");
        self.append(&format!("new\t{tmp}"))?;
        self.journal.news.push(tmp.clone());
        Ok(tmp)
    }

    /// Creates directory `path` (journaled first), mode 0755.
    pub(crate) fn mkdir(&mut self, path: &str) -> Result<(), UnpackError> {
        self.append(&format!("dir\t{path}"))?;
        self.journal.dirs.push(path.to_string());
        let full = self.full(path);
        fs::create_dir(&full).map_err(io_at(&full))?;
        fs::set_permissions(&full, fs::Permissions::from_mode(0o755)).map_err(io_at(&full))
    }

    /// Gives a directory this transaction created `mode` at the end.
    pub(crate) fn chmod_later(&mut self, path: &str, mode: u32) -> Result<(), UnpackError> {
        self.plan_line(&format!("chmod\t{path}\t{mode:o}"));
        self.journal.chmods.push((path.to_string(), mode));
        Ok(())
    }

    /// Plans renaming `tmp` onto `final_path` at commit. `fresh`: the final path cannot
    /// exist (it lies in a directory this transaction created), so it is not looked up.
    pub(crate) fn put(
        &mut self,
        tmp: &str,
        final_path: &str,
        fresh: bool,
    ) -> Result<(), UnpackError> {
        let n = self.next;
        self.next += 1;
        self.plan_line(&format!("put\t{n}\t{tmp}\t{final_path}"));
        self.fresh.push(fresh);
        self.journal
            .puts
            .push((n, tmp.to_string(), final_path.to_string()));
        Ok(())
    }

    /// Plans deleting `path` at commit (it is kept as a backup until the end).
    pub(crate) fn del(&mut self, path: &str) -> Result<(), UnpackError> {
        let n = self.next;
        self.next += 1;
        self.plan_line(&format!("del\t{n}\t{path}"));
        self.journal.dels.push((n, path.to_string()));
        Ok(())
    }

    /// Plans removing directory `path` at the end, when it is empty then.
    pub(crate) fn rmdir_later(&mut self, path: &str) -> Result<(), UnpackError> {
        self.plan_line(&format!("rmdir\t{path}"));
        self.journal.rmdirs.push(path.to_string());
        Ok(())
    }

    /// Writes `data` to a temporary file beside `final_path` and plans putting it there.
    pub(crate) fn put_bytes(
        &mut self,
        final_path: &str,
        data: &[u8],
        mode: u32,
    ) -> Result<(), UnpackError> {
        let tmp = self.new_temp(parent_of(final_path))?;
        let full = self.full(&tmp);
        write_new_file(&full, data, mode, false).map_err(io_at(&full))?;
        self.put(&tmp, final_path, false)
    }

    /// Writes the new status file to a temporary file (fsynced), renamed at the end.
    pub(crate) fn stage_status(&mut self, data: &[u8]) -> Result<(), UnpackError> {
        let dir = rel_path(&self.root, &self.db_dir).ok_or_else(|| UnpackError::Io {
            path: self.db_dir.clone(),
            source: io::Error::other("database directory is not inside the root"),
        })?;
        let tmp = self.new_temp(&dir)?;
        let full = self.full(&tmp);
        write_new_file(&full, data, 0o644, self.sync).map_err(io_at(&full))?;
        self.plan_line(&format!("status\t{tmp}"));
        self.journal.status = Some(tmp);
        Ok(())
    }

    /// Makes the planned changes visible: journals `commit` (fsynced), then for every `put`
    /// either backs the existing final path up and renames the temporary file onto it, or —
    /// when the final path is new — hard-links the temporary file there (the temporary name
    /// stays until the end and tells recovery that the path is new); every `del` path is
    /// renamed to its backup.
    pub(crate) fn commit(&mut self) -> Result<(), UnpackError> {
        let mut plan = std::mem::take(&mut self.plan);
        plan.push_str("commit");
        self.append(&plan)?;
        self.sync_journal()?;
        self.journal.committed = true;
        let puts = std::mem::take(&mut self.journal.puts);
        let result = self.commit_puts(&puts);
        self.journal.puts = puts;
        result?;
        for (idx, path) in self.journal.dels.clone() {
            let f = self.full(&path);
            fail_point().map_err(io_at(&f))?;
            if exists(&f) {
                let b = self.full(&backup_of(idx, &path));
                fs::rename(&f, &b).map_err(io_at(&f))?;
            }
        }
        Ok(())
    }

    fn commit_puts(&mut self, puts: &[(u64, String, String)]) -> Result<(), UnpackError> {
        for (i, (idx, tmp, final_path)) in puts.iter().enumerate() {
            let f = self.full(final_path);
            let t = self.full(tmp);
            fail_point().map_err(io_at(&f))?;
            let fresh = self.fresh.get(i).copied().unwrap_or(false);
            if !fresh && exists(&f) {
                self.backed.push(true);
                let b = self.full(&backup_of(*idx, final_path));
                fs::rename(&f, &b).map_err(io_at(&f))?;
                fail_point().map_err(io_at(&f))?;
                fs::rename(&t, &f).map_err(io_at(&f))?;
            } else {
                self.backed.push(false);
                fs::hard_link(&t, &f).map_err(io_at(&f))?;
            }
        }
        Ok(())
    }

    /// Whether `done` was journaled (from then on the operation is rolled forward).
    pub(crate) fn is_done(&self) -> bool {
        self.journal.done
    }

    /// Journals `done` (fsynced) and finishes: backups deleted, directory modes set, empty
    /// directories removed, the new status file renamed into place, the journal deleted.
    pub(crate) fn finish(&mut self) -> Result<(), UnpackError> {
        self.append("done")?;
        self.sync_journal()?;
        self.journal.done = true;
        finalize(
            &self.root,
            &self.journal,
            Some(&self.backed),
            &self.status_final,
            self.sync,
        )?;
        remove_journal(&self.path, &self.db_dir, self.sync)
    }

    /// Undoes whatever was done (see the module documentation); the root is as before.
    pub(crate) fn rollback(&mut self) -> Result<(), UnpackError> {
        undo(&self.root, &self.journal)?;
        remove_journal(&self.path, &self.db_dir, self.sync)
    }
}

fn rel_path(root: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?.to_str()?.trim_matches('/');
    if rel.is_empty() {
        Some(String::new())
    } else {
        Some(format!("/{rel}"))
    }
}

fn exists(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

fn remove_if_present(path: &Path) -> Result<(), UnpackError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_at(path)(e)),
    }
}

/// Checks that no parent of `path` is a symlink (a journal must never lead outside).
fn parents_are_real(root: &Path, path: &str) -> bool {
    let mut here = root.to_path_buf();
    let comps: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    for c in &comps[..comps.len().saturating_sub(1)] {
        here.push(c);
        match fs::symlink_metadata(&here) {
            Ok(m) if m.file_type().is_symlink() => return false,
            _ => {}
        }
    }
    true
}

/// Undoes a journal: without `commit` only temporaries and created directories go; after
/// it, backups are renamed back and paths that were new are removed. Idempotent, so a
/// recovery that is itself killed can be run again: for each `put`, a temporary file that
/// still exists means the final path was new (hard-linked: same inode) or not yet replaced;
/// a missing one means it was renamed over an existing path whose backup is restored (or
/// already was).
fn undo(root: &Path, j: &Journal) -> Result<(), UnpackError> {
    let full = |p: &str| join_root(root, p);
    if j.committed {
        for (idx, path) in j.dels.iter().rev() {
            let b = full(&backup_of(*idx, path));
            fail_point().map_err(io_at(&b))?;
            if exists(&b) {
                fs::rename(&b, full(path)).map_err(io_at(&b))?;
            }
        }
        for (idx, tmp, final_path) in j.puts.iter().rev() {
            let t = full(tmp);
            let b = full(&backup_of(*idx, final_path));
            let f = full(final_path);
            fail_point().map_err(io_at(&f))?;
            match fs::symlink_metadata(&t) {
                Ok(tm) => {
                    match fs::symlink_metadata(&f) {
                        Ok(fm) if fm.ino() == tm.ino() && fm.dev() == tm.dev() => {
                            remove_if_present(&f)?;
                        }
                        Ok(_) => {}
                        Err(_) => {
                            if exists(&b) {
                                fs::rename(&b, &f).map_err(io_at(&b))?;
                            }
                        }
                    }
                    fail_point().map_err(io_at(&t))?;
                    remove_if_present(&t)?;
                }
                Err(_) => {
                    if exists(&b) {
                        fs::rename(&b, &f).map_err(io_at(&b))?;
                    }
                }
            }
        }
    }
    for t in &j.news {
        fail_point().map_err(io_at(root))?;
        remove_if_present(&full(t))?;
    }
    for d in j.dirs.iter().rev() {
        let _ = fs::remove_dir(full(d));
    }
    Ok(())
}

/// Finishes a journal that reached `done`: deletes backups, sets modes, removes emptied
/// directories, renames the new status file into place.
/// `backed`, when known (in-process), says which `put`s made a backup, saving a lookup.
fn finalize(
    root: &Path,
    j: &Journal,
    backed: Option<&[bool]>,
    status_final: &Path,
    sync: bool,
) -> Result<(), UnpackError> {
    let full = |p: &str| join_root(root, p);
    for (i, (idx, tmp, final_path)) in j.puts.iter().enumerate() {
        fail_point().map_err(io_at(root))?;
        match backed.and_then(|b| b.get(i)) {
            Some(true) => remove_if_present(&full(&backup_of(*idx, final_path)))?,
            Some(false) => remove_if_present(&full(tmp))?,
            None => {
                remove_if_present(&full(&backup_of(*idx, final_path)))?;
                remove_if_present(&full(tmp))?;
            }
        }
    }
    for (idx, path) in &j.dels {
        fail_point().map_err(io_at(root))?;
        remove_if_present(&full(&backup_of(*idx, path)))?;
    }
    for (path, mode) in &j.chmods {
        let p = full(path);
        match fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => {
                fs::set_permissions(&p, fs::Permissions::from_mode(mode | 0o700))
                    .map_err(io_at(&p))?;
            }
            _ => {}
        }
    }
    let mut rmdirs = j.rmdirs.clone();
    rmdirs.sort_by_key(|d| std::cmp::Reverse(d.matches('/').count()));
    for d in rmdirs {
        let _ = fs::remove_dir(full(&d));
    }
    if let Some(tmp) = &j.status {
        fail_point().map_err(io_at(status_final))?;
        let t = full(tmp);
        if exists(&t) {
            fs::rename(&t, status_final).map_err(io_at(status_final))?;
            if sync && let Some(dir) = status_final.parent() {
                fsync_dir(dir).map_err(io_at(dir))?;
            }
        }
    }
    Ok(())
}

fn remove_journal(path: &Path, db_dir: &Path, sync: bool) -> Result<(), UnpackError> {
    fail_point().map_err(io_at(path))?;
    remove_if_present(path)?;
    if sync {
        fsync_dir(db_dir).map_err(io_at(db_dir))?;
    }
    Ok(())
}

/// Reads a journal; only complete lines count (a killed run may leave half a line).
fn read_journal(path: &Path) -> Result<Option<Journal>, UnpackError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_at(path)(e)),
    };
    let len = file.metadata().map_err(io_at(path))?.len();
    if len > MAX_JOURNAL {
        return Err(UnpackError::Journal {
            path: path.to_path_buf(),
            line: 0,
            reason: format!("larger than {MAX_JOURNAL} bytes"),
        });
    }
    let mut j = Journal::default();
    let mut reader = BufReader::new(file.take(MAX_JOURNAL));
    let mut buf = Vec::new();
    let mut line_no = 0;
    loop {
        buf.clear();
        let n = reader
            .by_ref()
            .take(1 << 20)
            .read_until(b'\n', &mut buf)
            .map_err(io_at(path))?;
        if n == 0 || buf.last() != Some(&b'\n') {
            break;
        }
        line_no += 1;
        let bad = |reason: &str| UnpackError::Journal {
            path: path.to_path_buf(),
            line: line_no,
            reason: reason.to_string(),
        };
        let text = std::str::from_utf8(&buf[..buf.len() - 1]).map_err(|_| bad("not UTF-8"))?;
        if line_no == 1 {
            if text != JOURNAL_MAGIC {
                return Err(bad("not a prokit journal (version 1)"));
            }
            continue;
        }
        let f: Vec<&str> = text.split('\t').collect();
        let p = |s: &str| -> Result<String, UnpackError> {
            if valid_journal_path(s) {
                Ok(s.to_string())
            } else {
                Err(bad(&format!("bad path {s:?}")))
            }
        };
        let idx = |s: &str| s.parse::<u64>().map_err(|_| bad("bad index"));
        match f.as_slice() {
            ["op", op] => j.op = op.to_string(),
            ["pkg", n, v] => j.package = Some((n.to_string(), v.to_string())),
            ["new", t] => j.news.push(p(t)?),
            ["dir", d] => j.dirs.push(p(d)?),
            ["chmod", d, m] => j.chmods.push((
                p(d)?,
                u32::from_str_radix(m, 8).map_err(|_| bad("bad mode"))? & 0o7777,
            )),
            ["put", i, t, fin] => j.puts.push((idx(i)?, p(t)?, p(fin)?)),
            ["del", i, d] => j.dels.push((idx(i)?, p(d)?)),
            ["rmdir", d] => j.rmdirs.push(p(d)?),
            ["status", t] => j.status = Some(p(t)?),
            ["commit"] => j.committed = true,
            ["done"] => j.done = true,
            _ => return Err(bad("unknown record")),
        }
    }
    Ok(Some(j))
}

/// Finishes or undoes an operation a killed run left half done; returns what it did.
pub(crate) fn recover_journal(db: &Db) -> Result<Option<String>, UnpackError> {
    let path = db.journal_path();
    let Some(j) = read_journal(&path)? else {
        return Ok(None);
    };
    let root = db.root();
    let all_paths = j
        .news
        .iter()
        .chain(&j.dirs)
        .chain(j.puts.iter().flat_map(|(_, t, f)| [t, f]))
        .chain(j.dels.iter().map(|(_, d)| d))
        .chain(&j.rmdirs);
    if let Some(bad) = all_paths.into_iter().find(|p| !parents_are_real(root, p)) {
        return Err(UnpackError::Journal {
            path,
            line: 0,
            reason: format!("{bad} lies below a symlink; refusing to touch it"),
        });
    }
    let what = j.describe();
    let msg = if j.done {
        finalize(root, &j, None, db.status_path(), db.fsync_enabled())?;
        format!("finished the interrupted {what}")
    } else {
        undo(root, &j)?;
        format!("undid the interrupted {what}")
    };
    let _ = fs::remove_dir_all(db.scripts_dir());
    remove_journal(&path, db.dir(), db.fsync_enabled())?;
    Ok(Some(msg))
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
    pkg_file: &Path,
    opts: &UnpackOptions,
) -> Result<Unpacked, UnpackError> {
    db.owners()?;
    let label = pkg_file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| pkg_file.display().to_string());
    let db_ro: &Db = db;
    let mut stager = Stager {
        db: db_ro,
        tx,
        opts,
        label: label.clone(),
        planned: HashMap::new(),
        entries: Vec::new(),
        verified: HashSet::new(),
        created: HashSet::new(),
        buf: vec![0u8; 256 * 1024],
    };
    let mut failure: Option<UnpackError> = None;
    let read = {
        let mut visit = |tar: &mut feeds::package::DataTar<'_>| {
            tar.for_each_entry(|e| match stager.entry(e) {
                Ok(()) => Ok(()),
                Err(err) => {
                    failure = Some(err);
                    Err(io::Error::other("stopped"))
                }
            })
            .map(|_| ())
        };
        read_package_file(pkg_file, &ReadOptions::default(), Some(&mut visit))
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
    let Stager {
        entries,
        planned,
        created,
        ..
    } = stager;
    settle(db, tx, package, entries, planned, created)
}

/// `name version (file)` for error messages, read again from the file (only on failure).
fn describe_package(pkg_file: &Path, label: &str) -> String {
    match Package::open(pkg_file, &ReadOptions::default()) {
        Ok(p) => format!("package {} {} ({label})", p.name(), p.version()),
        Err(_) => label.to_string(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Symlink,
    Special,
}

struct Stager<'a> {
    db: &'a Db,
    tx: &'a mut Transaction,
    opts: &'a UnpackOptions,
    label: String,
    /// Path → what this package puts there (index into `entries`).
    planned: HashMap<String, (Kind, usize)>,
    entries: Vec<Planned>,
    /// Paths known to be real directories in the root.
    verified: HashSet<String>,
    /// Directories this transaction created.
    created: HashSet<String>,
    buf: Vec<u8>,
}

/// Normalizes an archive name: `Ok(None)` for the root itself, else `/a/b`.
pub(crate) fn normalize_name(raw: &[u8]) -> Result<Option<String>, String> {
    let name = std::str::from_utf8(raw).map_err(|_| "name is not valid UTF-8".to_string())?;
    if name.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err("name holds control characters".into());
    }
    let mut rest = name;
    while let Some(r) = rest.strip_prefix("./") {
        rest = r;
    }
    if rest.starts_with('/') {
        return Err("absolute path (nothing may be written outside the root)".into());
    }
    let mut out = String::new();
    for c in rest.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err("`..` component (nothing may be written outside the root)".into()),
            c => {
                out.push('/');
                out.push_str(c);
            }
        }
    }
    Ok((!out.is_empty()).then_some(out))
}

impl Stager<'_> {
    fn refuse(&self, entry: &str, reason: String) -> UnpackError {
        UnpackError::Entry {
            package: self.label.clone(),
            entry: entry.to_string(),
            reason,
        }
    }

    fn owner_note(&self, path: &str) -> String {
        match self.db_owner(path) {
            Some(o) => format!("installed by package {o}"),
            None => "already in the root, owned by no package".into(),
        }
    }

    fn db_owner(&self, path: &str) -> Option<String> {
        self.db
            .owners_ref()
            .and_then(|o| o.files.get(path).cloned())
    }

    fn entry(&mut self, e: &mut DataEntry<'_, '_>) -> Result<(), UnpackError> {
        let raw = e.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let header = e.header();
        let etype = header.entry_type();
        let mode = header
            .mode()
            .map_err(|err| self.refuse(&shown, format!("bad mode: {err}")))?
            & 0o7777;
        let kind = match etype {
            tar::EntryType::Regular | tar::EntryType::Continuous => Kind::File,
            tar::EntryType::Directory => Kind::Dir,
            tar::EntryType::Symlink => Kind::Symlink,
            tar::EntryType::Link => Kind::File,
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => Kind::Special,
            tar::EntryType::XGlobalHeader => return Ok(()),
            other => {
                return Err(self.refuse(
                    &shown,
                    format!("unsupported entry type {:?}", other.as_byte() as char),
                ));
            }
        };
        let hard_link = etype == tar::EntryType::Link;
        let path = match normalize_name(&raw) {
            Ok(Some(p)) => p,
            Ok(None) if kind == Kind::Dir => return Ok(()),
            Ok(None) => return Err(self.refuse(&shown, "names the root itself".into())),
            Err(reason) => return Err(self.refuse(&shown, reason)),
        };
        let link = e.link_name_bytes().map(|l| l.into_owned());
        let mtime = header.mtime().unwrap_or(0);
        let dev = (
            header.device_major().ok().flatten().unwrap_or(0),
            header.device_minor().ok().flatten().unwrap_or(0),
        );
        if mode & 0o6000 != 0 && !self.opts.allow_special {
            return Err(self.refuse(
                &shown,
                format!(
                    "setuid/setgid bit (mode 0{mode:o}) refused; use --allow-special to allow it"
                ),
            ));
        }
        if kind == Kind::Special && !self.opts.allow_special {
            let what = match etype {
                tar::EntryType::Fifo => "FIFO",
                tar::EntryType::Char => "character device node",
                _ => "block device node",
            };
            return Err(self.refuse(
                &shown,
                format!("{what} refused; use --allow-special to allow it"),
            ));
        }
        if self.db.is_reserved(&path) {
            return Err(self.refuse(
                &shown,
                "lies in the package database or on its lock; packages may not write there".into(),
            ));
        }
        let base = &path[path.rfind('/').map_or(0, |i| i + 1)..];
        if base.starts_with(".prokit-") {
            return Err(self.refuse(&shown, "name reserved for prokit's temporary files".into()));
        }
        if let Some((prev, _)) = self.planned.get(&path) {
            if *prev == Kind::Dir && kind == Kind::Dir {
                return Ok(());
            }
            return Err(self.refuse(&shown, format!("{path} appears twice in the archive")));
        }
        self.prepare_parents(&path, &shown)?;
        let full = join_root(self.tx.root(), &path);
        // In a directory this transaction made, only this package's entries exist.
        let on_disk = if self.created.contains(parent_of(&path)) {
            None
        } else {
            match fs::symlink_metadata(&full) {
                Ok(m) => Some(m),
                Err(err) if err.kind() == io::ErrorKind::NotFound => None,
                Err(err) => return Err(io_at(&full)(err)),
            }
        };
        if kind == Kind::Dir {
            match on_disk {
                None => {
                    self.tx.mkdir(&path)?;
                    self.created.insert(path.clone());
                    self.tx.chmod_later(&path, mode)?;
                }
                Some(m) if m.is_dir() => {
                    if self.created.contains(&path) {
                        self.tx.chmod_later(&path, mode)?;
                    }
                }
                // A directory entry on an existing symlink writes nothing; anything below
                // it is refused by `prepare_parents`.
                Some(m) if m.file_type().is_symlink() => return Ok(()),
                Some(_) => {
                    return Err(self.refuse(
                        &shown,
                        format!("{path} exists in the root and is not a directory"),
                    ));
                }
            }
            self.verified.insert(path.clone());
            self.plan(&path, Kind::Dir, mode, None, None, None);
            return Ok(());
        }
        if on_disk.is_some_and(|m| m.is_dir()) {
            return Err(self.refuse(&shown, format!("{path} is a directory in the root")));
        }
        let tmp = self.tx.new_temp(parent_of(&path))?;
        let tfull = join_root(self.tx.root(), &tmp);
        match kind {
            Kind::File if hard_link => {
                let target = link.unwrap_or_default();
                let target = match normalize_name(&target) {
                    Ok(Some(t)) => t,
                    Ok(None) => {
                        return Err(self.refuse(&shown, "hard link to the root itself".into()));
                    }
                    Err(reason) => {
                        return Err(self.refuse(
                            &shown,
                            format!("hard link target leaves the root: {reason}"),
                        ));
                    }
                };
                let Some(&(Kind::File, i)) = self.planned.get(&target) else {
                    return Err(self.refuse(
                        &shown,
                        format!(
                            "hard link to {target}, which is not a file earlier in this package"
                        ),
                    ));
                };
                let (src_tmp, sha, tmode) = {
                    let t = &self.entries[i];
                    (t.tmp.clone(), t.sha256.clone(), t.mode)
                };
                let src = join_root(self.tx.root(), src_tmp.as_deref().unwrap_or(""));
                fs::hard_link(&src, &tfull).map_err(io_at(&tfull))?;
                self.plan(&path, Kind::File, tmode, sha, None, Some(tmp));
            }
            Kind::File => {
                let sha = self.write_file(e, &tfull, mode, mtime)?;
                self.plan(&path, Kind::File, mode, Some(sha), None, Some(tmp));
            }
            Kind::Symlink => {
                let target = link.unwrap_or_default();
                let target = match std::str::from_utf8(&target) {
                    Ok(t) if !t.is_empty() && !t.bytes().any(|b| b < 0x20 || b == 0x7f) => {
                        t.to_string()
                    }
                    _ => {
                        return Err(self.refuse(
                            &shown,
                            "symlink target is empty, not UTF-8 or holds control characters".into(),
                        ));
                    }
                };
                std::os::unix::fs::symlink(&target, &tfull).map_err(io_at(&tfull))?;
                self.plan(&path, Kind::Symlink, mode, None, Some(target), Some(tmp));
            }
            Kind::Special => {
                make_node(&tfull, etype, mode, dev)
                    .map_err(|err| self.refuse(&shown, format!("cannot create the node: {err}")))?;
                self.plan(&path, Kind::Special, mode, None, None, Some(tmp));
            }
            Kind::Dir => {}
        }
        Ok(())
    }

    fn plan(
        &mut self,
        path: &str,
        kind: Kind,
        mode: u32,
        sha256: Option<String>,
        link_target: Option<String>,
        tmp: Option<String>,
    ) {
        self.planned
            .insert(path.to_string(), (kind, self.entries.len()));
        self.entries.push(Planned {
            path: path.to_string(),
            kind: match kind {
                Kind::File => FileKind::File,
                Kind::Dir => FileKind::Dir,
                Kind::Symlink => FileKind::Symlink,
                Kind::Special => FileKind::Special,
            },
            mode,
            sha256,
            link_target,
            final_path: path.to_string(),
            tmp,
        });
    }

    /// Makes sure every parent of `path` is a real directory in the root (creating missing
    /// ones), refusing symlinks and files on the way.
    fn prepare_parents(&mut self, path: &str, shown: &str) -> Result<(), UnpackError> {
        let cuts: Vec<usize> = path.match_indices('/').skip(1).map(|(i, _)| i).collect();
        for i in cuts {
            let q = &path[..i];
            if self.verified.contains(q) {
                continue;
            }
            match self.planned.get(q) {
                Some((Kind::Symlink, _)) => {
                    return Err(self.refuse(
                        shown,
                        format!(
                            "write through the symlink {q}, installed earlier by this same package"
                        ),
                    ));
                }
                Some((Kind::File | Kind::Special, _)) => {
                    return Err(self.refuse(
                        shown,
                        format!("{q}, a parent directory, is a file of this package"),
                    ));
                }
                _ => {}
            }
            let full = join_root(self.tx.root(), q);
            match fs::symlink_metadata(&full) {
                Ok(m) if m.is_dir() => {
                    // Like a dpkg archive, the package counts its parents as its directories
                    // (removed with it when empty and unused).
                    if !self.planned.contains_key(q) {
                        self.plan(
                            q,
                            Kind::Dir,
                            m.permissions().mode() & 0o7777,
                            None,
                            None,
                            None,
                        );
                    }
                }
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(self.refuse(
                        shown,
                        format!(
                            "write through the symlink {q} ({}); prokit never writes through symlinks",
                            self.owner_note(q)
                        ),
                    ));
                }
                Ok(_) => {
                    return Err(self.refuse(
                        shown,
                        format!("{q}, a parent directory, is not a directory in the root"),
                    ));
                }
                Err(err) if err.kind() == io::ErrorKind::NotFound => {
                    self.tx.mkdir(q)?;
                    self.created.insert(q.to_string());
                    self.plan(q, Kind::Dir, 0o755, None, None, None);
                }
                Err(err) => return Err(io_at(&full)(err)),
            }
            self.verified.insert(q.to_string());
        }
        Ok(())
    }

    /// Streams a regular file's contents into a new temporary file; returns its SHA-256.
    fn write_file(
        &mut self,
        e: &mut DataEntry<'_, '_>,
        tfull: &Path,
        mode: u32,
        mtime: u64,
    ) -> Result<String, UnpackError> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(tfull)
            .map_err(io_at(tfull))?;
        let mut h = Sha256::new();
        loop {
            let n = match e.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => {
                    return Err(UnpackError::Entry {
                        package: self.label.clone(),
                        entry: String::from_utf8_lossy(&e.path_bytes()).into_owned(),
                        reason: format!("reading the archive: {err}"),
                    });
                }
            };
            h.update(&self.buf[..n]);
            f.write_all(&self.buf[..n]).map_err(io_at(tfull))?;
        }
        f.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(io_at(tfull))?;
        let _ = f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(mtime));
        Ok(hex::encode(h.finalize()))
    }
}

/// Creates a FIFO or device node (only with `allow_special`).
fn make_node(path: &Path, etype: tar::EntryType, mode: u32, dev: (u32, u32)) -> io::Result<()> {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::other("path holds a NUL byte"))?;
    let kind = match etype {
        tar::EntryType::Fifo => libc::S_IFIFO,
        tar::EntryType::Char => libc::S_IFCHR,
        _ => libc::S_IFBLK,
    };
    let devno = libc::makedev(dev.0, dev.1);
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    let r = unsafe { libc::mknod(c.as_ptr(), kind | (mode & 0o7777) as libc::mode_t, devno) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

/// After the whole package was read: conffiles, file ownership, the plan of renames.
fn settle(
    db: &Db,
    tx: &mut Transaction,
    package: Package,
    mut entries: Vec<Planned>,
    planned: HashMap<String, (Kind, usize)>,
    created: HashSet<String>,
) -> Result<Unpacked, UnpackError> {
    let name = package.name().to_string();
    let who = format!("package {name} {}", package.version());
    let root = tx.root().to_path_buf();
    tx.set_package(&name, package.version())?;
    // Conffiles.
    let mut conffiles = Vec::new();
    let mut kept = Vec::new();
    let mut seen = HashSet::new();
    for c in package.conffiles() {
        let Ok(Some(p)) = normalize_name(c.trim_start_matches('/').as_bytes()) else {
            continue;
        };
        if !c.starts_with('/') || !seen.insert(p.clone()) {
            continue;
        }
        let full = join_root(&root, &p);
        match planned.get(&p) {
            Some(&(Kind::File, i)) => {
                let new_hash = entries[i].sha256.clone().unwrap_or_default();
                let keep = match fs::symlink_metadata(&full) {
                    Err(e) if e.kind() == io::ErrorKind::NotFound => false,
                    Err(e) => return Err(io_at(&full)(e)),
                    Ok(m) if m.is_file() => {
                        let cur = sha256_file(&full).map_err(io_at(&full))?;
                        if cur == new_hash {
                            false
                        } else {
                            match recorded_conffile_hash(db, &p, &name) {
                                Some(rec) => {
                                    conffile_modified(&root, &p, &rec).map_err(io_at(&full))?
                                }
                                None => true,
                            }
                        }
                    }
                    Ok(_) => true,
                };
                if keep {
                    let alt = format!("{p}-opkg");
                    if planned.contains_key(&alt) {
                        return Err(UnpackError::Entry {
                            package: who,
                            entry: alt,
                            reason: "collides with where the new version of a kept conffile goes"
                                .into(),
                        });
                    }
                    entries[i].final_path = alt;
                    kept.push(p.clone());
                }
                conffiles.push((p, new_hash));
            }
            Some(_) => {}
            None => {
                // Listed but not shipped: opkg records the file's hash when it exists.
                if fs::symlink_metadata(&full).is_ok_and(|m| m.is_file()) {
                    conffiles.push((p, sha256_file(&full).map_err(io_at(&full))?));
                }
            }
        }
    }
    // Ownership.
    let replaces = parse_relations(package.control.get("Replaces").unwrap_or("")).map_err(|e| {
        UnpackError::Control {
            package: who.clone(),
            reason: format!("bad Replaces: {e}"),
        }
    })?;
    let owners = db.owners_ref();
    let mut takeovers: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for e in entries.iter().filter(|e| e.kind != FileKind::Dir) {
        let Some(owner) = owners.and_then(|o| o.files.get(&e.path)) else {
            continue;
        };
        if *owner == name {
            continue;
        }
        let owner_version = db
            .get(owner)
            .and_then(|p| p.get("Version"))
            .and_then(|v| Version::parse(v).ok());
        let replaced = replaces.iter().flat_map(|a| a.relations()).any(|r| {
            r.name() == owner
                && match &owner_version {
                    Some(v) => r.matches_constraint(v),
                    None => r.constraint().is_none(),
                }
        });
        if !replaced {
            return Err(UnpackError::Conflict {
                package: name.clone(),
                path: e.path.clone(),
                owner: owner.clone(),
            });
        }
        takeovers
            .entry(owner.clone())
            .or_default()
            .insert(e.path.clone());
    }
    for e in &entries {
        if let Some(tmp) = &e.tmp {
            let fresh = created.contains(parent_of(&e.final_path));
            tx.put(tmp, &e.final_path, fresh)?;
        }
    }
    Ok(Unpacked {
        package,
        entries,
        conffiles,
        kept_conffiles: kept,
        takeovers,
    })
}

/// The hash recorded for conffile `path`: by the installed version of `name`, else by the
/// package that owns the path, else by any package that lists it.
fn recorded_conffile_hash(db: &Db, path: &str, name: &str) -> Option<String> {
    let find = |pkg: &str| {
        db.get(pkg).and_then(|p| {
            conffiles_of(p)
                .into_iter()
                .find(|(c, _)| c == path)
                .map(|(_, h)| h)
        })
    };
    if let Some(h) = find(name) {
        return Some(h);
    }
    if let Some(owner) = db.owners_ref().and_then(|o| o.files.get(path))
        && let Some(h) = find(owner)
    {
        return Some(h);
    }
    db.packages().find_map(|p| {
        conffiles_of(p)
            .into_iter()
            .find(|(c, _)| c == path)
            .map(|(_, h)| h)
    })
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
            allow_special: false,
            installed_time: 1_700_000_000,
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

    use super::test_support::*;
    use crate::install::{self, InstallError, ScriptMode};
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
        let pkg = write_raw(
            tmp,
            "evil_1.0_all.ipk",
            &control("evil", "1.0", ""),
            entries,
        );
        let mut db = open(root);
        let before_root = snapshot(root);
        let before_tmp: Vec<String> = fs::read_dir(tmp)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let mut o = opts(ScriptMode::Skip);
        o.allow_special = allow_special;
        let err = install::install(&mut db, &pkg, false, &o).unwrap_err();
        let text = err.to_string();
        assert_eq!(snapshot(root), before_root, "the root changed: {text}");
        let mut after_tmp: Vec<String> = fs::read_dir(tmp)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        after_tmp.sort();
        let mut before_tmp = before_tmp;
        before_tmp.sort();
        assert_eq!(
            after_tmp, before_tmp,
            "something was written outside the root"
        );
        assert!(db.get("evil").is_none());
        assert!(!db.journal_path().exists());
        let (who, reason) = refused(err);
        assert!(who.contains("evil"), "the error names the package: {who}");
        (who, reason)
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

    #[test]
    fn journal_round_trips_and_ignores_a_torn_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j");
        fs::write(
            &p,
            "prokit-journal\t1\nop\tinstall x.ipk\npkg\tx\t1.0\nnew\t/usr/.prokit-0.new\n\
             dir\t/usr\nchmod\t/usr\t755\nput\t1\t/usr/.prokit-0.new\t/usr/x\ndel\t2\t/usr/y\n\
             rmdir\t/opt\nstatus\t/usr/lib/opkg/.prokit-3.new\ncommit\ndo",
        )
        .unwrap();
        let j = read_journal(&p).unwrap().unwrap();
        assert_eq!(j.package, Some(("x".into(), "1.0".into())));
        assert_eq!(
            j.puts,
            vec![(1, "/usr/.prokit-0.new".into(), "/usr/x".into())]
        );
        assert_eq!(j.dels, vec![(2, "/usr/y".into())]);
        assert_eq!(j.chmods, vec![("/usr".into(), 0o755)]);
        assert!(j.committed && !j.done, "a torn `done` does not count");
        fs::write(&p, "prokit-journal\t1\ndel\t2\t/../etc/passwd\n").unwrap();
        assert!(matches!(
            read_journal(&p),
            Err(UnpackError::Journal { line: 2, .. })
        ));
        fs::write(&p, "something else\n").unwrap();
        assert!(read_journal(&p).is_err());
    }
}
