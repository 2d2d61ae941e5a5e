//! The journaled [`Transaction`] and its recovery (docs/crash-safety.md §5; the record format
//! is in the documentation of [`crate::unpack`]), and [`RootDirs`], through which every
//! change to the root is made.
//!
//! [`RootDirs`] holds the root open and reaches a path's directory by walking from the root's
//! descriptor one component at a time with `openat(O_NOFOLLOW | O_DIRECTORY)`; the operation
//! itself is then `renameat`, `unlinkat`, `linkat`, `mkdirat`, `symlinkat`, `mknodat` or an
//! `openat(O_NOFOLLOW)` of one name in that directory. A symlink (or a file) where a directory
//! should be is an error naming it, never followed, so a root whose `/usr/lib` was swapped for
//! a link to `/host/lib` after an install cannot make a later commit, undo, cleanup or
//! recovery rename, delete or create anything in `/host/lib`. Backups and temporary names
//! always live in the directory of their final path (see [`backup_of`]), so no operation
//! crosses directories except a hard link inside one package, whose two directories are each
//! reached the same way.

use std::cell::RefCell;
use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rayon::prelude::*;
use sha2::Digest;

use super::{UnpackError, fail_point, io_at};
use crate::status::{Db, join_root};

// ---------------------------------------------------------------------------------------
// Dir-relative operations on the root.

/// What `fstatat(AT_SYMLINK_NOFOLLOW)` says of a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stat {
    /// `st_mode` (type and permission bits).
    pub mode: u32,
    pub ino: u64,
    pub dev: u64,
}

impl Stat {
    // `mode_t` is not `u32` on every Unix.
    #[allow(clippy::unnecessary_cast)]
    fn is(self, kind: libc::mode_t) -> bool {
        self.mode & libc::S_IFMT as u32 == kind as u32
    }

    pub fn is_dir(self) -> bool {
        self.is(libc::S_IFDIR)
    }

    pub fn is_file(self) -> bool {
        self.is(libc::S_IFREG)
    }

    pub fn is_symlink(self) -> bool {
        self.is(libc::S_IFLNK)
    }

    /// The permission bits.
    pub fn perm(self) -> u32 {
        self.mode & 0o7777
    }
}

/// What lies on the way to a path's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Parent {
    /// Every parent is a real directory.
    Real,
    /// A parent does not exist (so neither does the path).
    Missing,
    /// `at` (absolute in the root) is a symlink or not a directory: nothing below it is
    /// reached through it.
    Blocked { at: String, symlink: bool },
}

/// Why walking to a directory stopped.
struct WalkError {
    /// The component that failed, absolute in the root.
    at: String,
    source: io::Error,
}

impl WalkError {
    /// A symlink or a non-directory on the way (as opposed to a missing one or an I/O error).
    fn blocked(&self) -> bool {
        matches!(
            self.source.raw_os_error(),
            Some(libc::ELOOP | libc::ENOTDIR)
        )
    }
}

/// Flags to open a directory met on the way: never through a symlink.
const DIR_FLAGS: libc::c_int =
    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;

/// Runs a system call again while it fails with `EINTR`; `-1` is failure.
fn cvt<T: PartialEq + From<i8>>(mut f: impl FnMut() -> T) -> io::Result<T> {
    loop {
        let r = f();
        if r != T::from(-1) {
            return Ok(r);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn cstr(s: &[u8]) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in a path"))
}

fn open_at(dir: RawFd, name: &CString, flags: libc::c_int, mode: u32) -> io::Result<OwnedFd> {
    // SAFETY: `name` is NUL-terminated and `dir` an open descriptor; the mode is passed as the
    // variadic `unsigned int` openat expects.
    let fd = cvt(|| unsafe { libc::openat(dir, name.as_ptr(), flags, mode as libc::c_uint) })?;
    // SAFETY: openat returned a new descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn fchmod(fd: RawFd, mode: u32) -> io::Result<()> {
    // SAFETY: an open descriptor.
    cvt(|| unsafe { libc::fchmod(fd, mode as libc::mode_t) })?;
    Ok(())
}

/// `fstatat(AT_SYMLINK_NOFOLLOW)` of `name` in `dir`; `None` when it does not exist.
fn stat_at(dir: RawFd, name: &CString) -> io::Result<Option<Stat>> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `st` is valid for one `stat`, `name` NUL-terminated, `dir` open.
    let r = cvt(|| unsafe {
        libc::fstatat(
            dir,
            name.as_ptr(),
            st.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    });
    match r {
        Ok(_) => {
            // SAFETY: fstatat succeeded.
            let st = unsafe { st.assume_init() };
            // `mode_t`, `ino_t` and `dev_t` differ across Unixes.
            #[allow(clippy::unnecessary_cast)]
            let stat = Stat {
                mode: st.st_mode as u32,
                ino: st.st_ino as u64,
                dev: st.st_dev as u64,
            };
            Ok(Some(stat))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// `renameat` of `from` in `from_dir` to `to` in `to_dir`.
fn rename_at(from_dir: RawFd, from: &CString, to_dir: RawFd, to: &CString) -> io::Result<()> {
    // SAFETY: open descriptors, NUL-terminated names.
    cvt(|| unsafe { libc::renameat(from_dir, from.as_ptr(), to_dir, to.as_ptr()) }).map(|_| ())
}

/// `renameat2(RENAME_NOREPLACE)` of `from` in `from_dir` to `to` in `to_dir`: fails with
/// `EEXIST` rather than replace anything. `Ok(false)` when the file system cannot rename
/// that way (`EINVAL`), so the caller hard-links instead.
fn rename_noreplace(
    from_dir: RawFd,
    from: &CString,
    to_dir: RawFd,
    to: &CString,
) -> io::Result<bool> {
    // SAFETY: open descriptors, NUL-terminated names.
    match cvt(|| unsafe {
        libc::renameat2(
            from_dir,
            from.as_ptr(),
            to_dir,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    }) {
        Ok(_) => Ok(true),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// `linkat` of `from` in `from_dir` as `to` in `to_dir` (flags 0: a symlink `from` is
/// linked itself, not followed).
fn link_at(from_dir: RawFd, from: &CString, to_dir: RawFd, to: &CString) -> io::Result<()> {
    // SAFETY: open descriptors, NUL-terminated names.
    cvt(|| unsafe { libc::linkat(from_dir, from.as_ptr(), to_dir, to.as_ptr(), 0) }).map(|_| ())
}

/// `unlinkat` of `name` in `dir`; false when it did not exist.
fn unlink_at(dir: RawFd, name: &CString) -> io::Result<bool> {
    // SAFETY: open descriptor, NUL-terminated name.
    match cvt(|| unsafe { libc::unlinkat(dir, name.as_ptr(), 0) }) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// A temporary file of a transaction, journaled and with its directory open, created on the
/// thread pool ([`Writes`]) while the install goes on staging; [`Transaction::flush_writes`]
/// waits for it. Creating files is most of the time an install takes (the file system's inode
/// allocation): this way they are created on every core, beside the staging, instead of one
/// after another on the install's thread (docs/crash-safety.md §5: the journal names each one
/// before it can exist, so recovery treats a pending one like any other).
struct PendingWrite {
    dir: Arc<OwnedFd>,
    name: CString,
    full: PathBuf,
    data: Bytes,
    mode: u32,
    mtime: Option<u64>,
    sync: bool,
}

impl PendingWrite {
    /// Creates the file (`O_CREAT|O_EXCL|O_NOFOLLOW`), writes it, gives it exactly its mode
    /// (and mtime), fsyncs it when asked.
    fn write(&self) -> Result<(), UnpackError> {
        self.write_with(|mut f| f.write_all(self.data.as_slice()))
    }

    /// [`PendingWrite::write`], the contents written by `contents` (now, on this thread).
    fn write_with(
        &self,
        contents: impl FnOnce(&File) -> io::Result<()>,
    ) -> Result<(), UnpackError> {
        let flags =
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        let fd =
            open_at(self.dir.as_raw_fd(), &self.name, flags, 0o600).map_err(io_at(&self.full))?;
        let f = File::from(fd);
        contents(&f).map_err(io_at(&self.full))?;
        fchmod(f.as_raw_fd(), self.mode).map_err(io_at(&self.full))?;
        if let Some(t) = self.mtime {
            let _ = f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(t));
        }
        if self.sync {
            f.sync_all().map_err(io_at(&self.full))?;
        }
        Ok(())
    }
}

/// Pending writes being made on the thread pool while the transaction goes on staging:
/// [`Writes::wait`] waits for all of them and returns the first error (by queue order).
/// Dropping it waits too, so that no temporary file is created after its transaction ended.
#[derive(Default)]
struct Writes {
    state: Arc<(std::sync::Mutex<WritesState>, std::sync::Condvar)>,
    /// Writes queued since the last wait (their order, for the error returned).
    queued: usize,
    /// Queued and not yet started ([`Writes::start`]): their journal records may not be in
    /// the journal file yet.
    unstarted: Vec<(usize, PendingWrite)>,
    unstarted_bytes: usize,
}

#[derive(Default)]
struct WritesState {
    outstanding: usize,
    /// The error of the first failed write, by queue order.
    error: Option<(usize, UnpackError)>,
}

impl Writes {
    /// Queues `w`; true when enough are queued to be started together ([`Writes::start`]).
    fn queue(&mut self, w: PendingWrite) -> bool {
        let n = self.queued;
        self.queued += 1;
        self.unstarted_bytes += w.data.range.len();
        self.unstarted.push((n, w));
        self.unstarted.len() >= START_FILES || self.unstarted_bytes >= START_BYTES
    }

    /// Starts the queued writes on the pool, one job for them all (in order). Their journal
    /// records must be in the journal file already ([`Transaction::start_writes`]).
    fn start(&mut self) {
        if self.unstarted.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.unstarted);
        self.unstarted_bytes = 0;
        lock(&self.state.0).outstanding += batch.len();
        let state = Arc::clone(&self.state);
        let job = move || {
            for (n, w) in batch {
                let result = w.write();
                // Its bytes are let go of before the wait can end.
                drop(w);
                let (m, done) = &*state;
                let mut g = lock(m);
                if let Err(e) = result
                    && g.error.as_ref().is_none_or(|(k, _)| n < *k)
                {
                    g.error = Some((n, e));
                }
                g.outstanding -= 1;
                if g.outstanding == 0 {
                    done.notify_all();
                }
            }
        };
        // rayon's pool rather than threads blocking on a queue: its idle threads spin a
        // while before they sleep, so the next job is taken at once; with ten thousand small
        // packages, waking a sleeping thread for each file made the install 10 % slower.
        rayon::spawn(job);
    }

    /// Waits for the started writes (never starts any: see [`Transaction::flush_writes`]).
    fn wait(&mut self) -> Result<(), UnpackError> {
        let (m, done) = &*self.state;
        let mut g = lock(m);
        while g.outstanding > 0 {
            g = done.wait(g).unwrap_or_else(|p| p.into_inner());
        }
        self.queued = 0;
        g.error.take().map_or(Ok(()), |(_, e)| Err(e))
    }
}

impl Drop for Writes {
    /// Writes never started are dropped: their records may not be in the journal, so they
    /// must not exist (an error or a kill ended the transaction before they started).
    fn drop(&mut self) {
        self.unstarted.clear();
        let _ = self.wait();
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A file's contents waiting to be written: bytes of its own, or a file's range of a package's
/// data tar read ahead (`unpack::Preread`), shared with the package's other files rather than
/// copied.
pub(crate) struct Bytes {
    buf: Arc<Vec<u8>>,
    range: std::ops::Range<usize>,
    /// Part of a buffer other files share: it stays in memory, whole, until the last of them
    /// is written.
    shared: bool,
}

impl Bytes {
    /// `range` of `buf`; `None` when it lies outside it.
    pub(crate) fn shared(buf: &Arc<Vec<u8>>, range: std::ops::Range<usize>) -> Option<Bytes> {
        buf.get(range.clone())?;
        Some(Bytes {
            buf: Arc::clone(buf),
            range,
            shared: true,
        })
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.buf[self.range.clone()]
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(data: Vec<u8>) -> Bytes {
        Bytes {
            range: 0..data.len(),
            buf: Arc::new(data),
            shared: false,
        }
    }
}

/// What commit did for one `put`, so the end deletes only what is left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PutDone {
    /// The old final file was renamed to its backup and the temporary onto the path.
    Backed,
    /// The temporary was hard-linked at a new path (its name stays until the end).
    Linked,
    /// The temporary was renamed onto a new path (`putnew`): nothing is left.
    Renamed,
}

/// Paths from which commit and cleanup use the thread pool (fewer are not worth it).
const PARALLEL_AT: usize = 128;

/// Pending writes held back at most (files, bytes) before they are flushed anyway.
const MAX_PENDING_FILES: usize = 256;
/// Queued files are started together, a job on the pool, by this many (or bytes) at most:
/// one journal write and one job for several files, not one of each per file.
const START_FILES: usize = 8;
const START_BYTES: usize = 256 << 10;
const MAX_PENDING_BYTES: usize = 8 << 20;

/// `path` (absolute in the root: `/usr/bin/x`) split into its directory (`/usr/bin`, `` for
/// the root) and its name; `None` when it is not a normalized absolute path.
fn split(path: &str) -> Option<(&str, &str)> {
    if !valid_journal_path(path) {
        return None;
    }
    let i = path.rfind('/')?;
    Some((&path[..i], &path[i + 1..]))
}

/// The root, held open; every operation on a path below it goes through its parent
/// directory's descriptor, reached from the root's without following a symlink (see the
/// module documentation). Paths are absolute in the root and normalized (`/usr/bin/x`).
pub(crate) struct RootDirs {
    root: PathBuf,
    fd: Arc<OwnedFd>,
    /// Directories already reached, by path (a walk starts from the deepest of them on its
    /// way): an install goes back and forth between a few directories (`/usr/bin`, `info/`,
    /// `/etc/config`), and walking from the root each time was most of its `openat`s.
    /// Forgotten when prokit renames or removes one, and wholly after a maintainer script ran
    /// ([`RootDirs::forget_all`]); at most [`DIR_CACHE_MAX`] are kept.
    cache: RefCell<std::collections::HashMap<String, Arc<OwnedFd>>>,
}

/// Directory descriptors [`RootDirs`] keeps open at most (then it starts again).
const DIR_CACHE_MAX: usize = 256;

impl std::fmt::Debug for RootDirs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RootDirs")
            .field("root", &self.root)
            .finish()
    }
}

impl RootDirs {
    /// Opens the root directory `root` (the caller's path: the database's canonical root).
    pub(crate) fn open(root: &Path) -> Result<RootDirs, UnpackError> {
        let c = cstr(root.as_os_str().as_bytes()).map_err(io_at(root))?;
        let fd = open_at(
            libc::AT_FDCWD,
            &c,
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            0,
        )
        .map_err(io_at(root))?;
        Ok(RootDirs {
            root: root.to_path_buf(),
            fd: Arc::new(fd),
            cache: RefCell::default(),
        })
    }

    /// The root's path.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// The path on disk of `path`, for messages.
    pub(crate) fn full(&self, path: &str) -> PathBuf {
        join_root(&self.root, path)
    }

    fn bad_path(&self, path: &str) -> UnpackError {
        UnpackError::Io {
            path: self.full(path),
            source: io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a normalized absolute path inside the root",
            ),
        }
    }

    /// Opens directory `dir` (`` for the root), walking from the root without following a
    /// symlink.
    fn walk(&self, dir: &str) -> Result<Arc<OwnedFd>, WalkError> {
        if dir.is_empty() {
            return Ok(self.fd.clone());
        }
        let mut cache = self.cache.borrow_mut();
        if let Some(fd) = cache.get(dir) {
            return Ok(fd.clone());
        }
        // The deepest directory on the way already reached.
        let (mut cur, mut at) = (self.fd.clone(), 0usize);
        let mut end = dir.len();
        while let Some(i) = dir[..end].rfind('/').filter(|&i| i > 0) {
            if let Some(fd) = cache.get(&dir[..i]) {
                (cur, at) = (fd.clone(), i);
                break;
            }
            end = i;
        }
        if cache.len() + dir[at..].matches('/').count() > DIR_CACHE_MAX {
            cache.clear();
        }
        while at < dir.len() {
            let from = at + 1;
            let end = dir[from..].find('/').map_or(dir.len(), |i| from + i);
            let fail = |source: io::Error| WalkError {
                at: dir[..end].to_string(),
                source,
            };
            let c = cstr(&dir.as_bytes()[from..end]).map_err(fail)?;
            cur = Arc::new(open_at(cur.as_raw_fd(), &c, DIR_FLAGS, 0).map_err(fail)?);
            cache.insert(dir[..end].to_string(), cur.clone());
            at = end;
        }
        Ok(cur)
    }

    fn walk_error(&self, e: WalkError) -> UnpackError {
        let source = if e.blocked() {
            let symlink = self.lstat_quiet(&e.at).is_some_and(|s| s.is_symlink());
            io::Error::new(
                io::ErrorKind::NotADirectory,
                if symlink {
                    "a symbolic link where a directory should be: prokit never follows a symlink while changing the root"
                } else {
                    "not a directory"
                },
            )
        } else {
            e.source
        };
        UnpackError::Io {
            path: self.full(&e.at),
            source,
        }
    }

    /// Forgets the directories reached at `path` and below it (renamed or removed).
    fn forget(&self, path: &str) {
        self.cache.borrow_mut().retain(|k, _| {
            !(k.starts_with(path) && matches!(k.as_bytes().get(path.len()), None | Some(b'/')))
        });
    }

    /// Forgets every directory reached: what ran meanwhile (a maintainer script) may have
    /// moved or replaced any of them, so the next walks start from the root again.
    pub(crate) fn forget_all(&self) {
        self.cache.borrow_mut().clear();
    }

    /// The directory of `path` and its name; a missing directory is `Ok(None)`.
    fn parent(&self, path: &str) -> Result<Option<(Arc<OwnedFd>, CString)>, UnpackError> {
        let (dir, name) = split(path).ok_or_else(|| self.bad_path(path))?;
        let c = cstr(name.as_bytes()).map_err(io_at(&self.full(path)))?;
        match self.walk(dir) {
            Ok(fd) => Ok(Some((fd, c))),
            Err(e) if e.source.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.walk_error(e)),
        }
    }

    /// The directory of `path` and its name; a missing directory is an error.
    fn parent_required(&self, path: &str) -> Result<(Arc<OwnedFd>, CString), UnpackError> {
        let (dir, name) = split(path).ok_or_else(|| self.bad_path(path))?;
        let c = cstr(name.as_bytes()).map_err(io_at(&self.full(path)))?;
        let fd = self.walk(dir).map_err(|e| self.walk_error(e))?;
        Ok((fd, c))
    }

    /// What is on the way to `path`.
    pub(crate) fn check_parent(&self, path: &str) -> Result<Parent, UnpackError> {
        let (dir, _) = split(path).ok_or_else(|| self.bad_path(path))?;
        match self.walk(dir) {
            Ok(_) => Ok(Parent::Real),
            Err(e) if e.source.kind() == io::ErrorKind::NotFound => Ok(Parent::Missing),
            Err(e) if e.blocked() => {
                let symlink = self.lstat_quiet(&e.at).is_some_and(|s| s.is_symlink());
                Ok(Parent::Blocked { at: e.at, symlink })
            }
            Err(e) => Err(self.walk_error(e)),
        }
    }

    fn lstat_quiet(&self, path: &str) -> Option<Stat> {
        self.lstat(path).ok().flatten()
    }

    /// What `path` is, not following a final symlink; `None` when it (or its directory)
    /// does not exist.
    pub(crate) fn lstat(&self, path: &str) -> Result<Option<Stat>, UnpackError> {
        let Some((dir, c)) = self.parent(path)? else {
            return Ok(None);
        };
        stat_at(dir.as_raw_fd(), &c).map_err(io_at(&self.full(path)))
    }

    /// Whether `path` exists (as anything, a dangling symlink included).
    pub(crate) fn exists(&self, path: &str) -> Result<bool, UnpackError> {
        Ok(self.lstat(path)?.is_some())
    }

    /// Renames `from` to `to` (each reached through its own directory).
    pub(crate) fn rename(&self, from: &str, to: &str) -> Result<(), UnpackError> {
        let (fd_from, c_from) = self.parent_required(from)?;
        let (fd_to, c_to) = self.parent_required(to)?;
        rename_at(fd_from.as_raw_fd(), &c_from, fd_to.as_raw_fd(), &c_to)
            .map_err(io_at(&self.full(from)))?;
        self.forget(from);
        self.forget(to);
        Ok(())
    }

    /// Renames `from` to `to`, which must not exist (`RENAME_NOREPLACE`); `Ok(false)`, doing
    /// nothing, when the file system cannot rename that way.
    pub(crate) fn rename_new(&self, from: &str, to: &str) -> Result<bool, UnpackError> {
        let (fd_from, c_from) = self.parent_required(from)?;
        let (fd_to, c_to) = self.parent_required(to)?;
        rename_noreplace(fd_from.as_raw_fd(), &c_from, fd_to.as_raw_fd(), &c_to)
            .map_err(io_at(&self.full(to)))
    }

    /// Hard-links `from` (a file) as `to`.
    pub(crate) fn hard_link(&self, from: &str, to: &str) -> Result<(), UnpackError> {
        let (fd_from, c_from) = self.parent_required(from)?;
        let (fd_to, c_to) = self.parent_required(to)?;
        link_at(fd_from.as_raw_fd(), &c_from, fd_to.as_raw_fd(), &c_to)
            .map_err(io_at(&self.full(to)))
    }

    /// The last component of `path`, for a call relative to its directory.
    fn base_name(&self, path: &str) -> Result<CString, UnpackError> {
        let (_, name) = split(path).ok_or_else(|| self.bad_path(path))?;
        cstr(name.as_bytes()).map_err(io_at(&self.full(path)))
    }

    /// Removes the file, symlink or node `path` (a symlink itself, never its target);
    /// `Ok(false)` when it or its directory does not exist.
    pub(crate) fn remove(&self, path: &str) -> Result<bool, UnpackError> {
        let Some((dir, c)) = self.parent(path)? else {
            return Ok(false);
        };
        unlink_at(dir.as_raw_fd(), &c).map_err(io_at(&self.full(path)))
    }

    /// Removes the directory `path` when it is empty (errors are the caller's to ignore).
    pub(crate) fn rmdir(&self, path: &str) -> Result<(), UnpackError> {
        let (dir, c) = self.parent_required(path)?;
        self.forget(path);
        // SAFETY: open descriptor, NUL-terminated name.
        cvt(|| unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), libc::AT_REMOVEDIR) })
            .map_err(io_at(&self.full(path)))?;
        Ok(())
    }

    /// Creates the directory `path` with exactly `mode`.
    pub(crate) fn mkdir(&self, path: &str, mode: u32) -> Result<(), UnpackError> {
        let (dir, c) = self.parent_required(path)?;
        let full = self.full(path);
        // SAFETY: open descriptor, NUL-terminated name.
        cvt(|| unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), 0o700) })
            .map_err(io_at(&full))?;
        let fd = open_at(dir.as_raw_fd(), &c, DIR_FLAGS, 0).map_err(io_at(&full))?;
        fchmod(fd.as_raw_fd(), mode).map_err(io_at(&full))?;
        // Files go into it next.
        let mut cache = self.cache.borrow_mut();
        if cache.len() >= DIR_CACHE_MAX {
            cache.clear();
        }
        cache.insert(path.to_string(), Arc::new(fd));
        Ok(())
    }

    /// Gives the directory `path` exactly `mode`; `Ok(false)` when it is not a directory
    /// (or is a symlink to one).
    pub(crate) fn chmod_dir(&self, path: &str, mode: u32) -> Result<bool, UnpackError> {
        let Some((dir, c)) = self.parent(path)? else {
            return Ok(false);
        };
        let full = self.full(path);
        let fd = match open_at(dir.as_raw_fd(), &c, DIR_FLAGS, 0) {
            Ok(fd) => fd,
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) =>
            {
                return Ok(false);
            }
            Err(e) => return Err(io_at(&full)(e)),
        };
        fchmod(fd.as_raw_fd(), mode).map_err(io_at(&full))?;
        Ok(true)
    }

    /// Creates the regular file `path`, which must not exist (not even as a symlink), mode
    /// `0600` until the caller sets the final one.
    pub(crate) fn create(&self, path: &str) -> Result<File, UnpackError> {
        let (dir, c) = self.parent_required(path)?;
        let flags =
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        let fd = open_at(dir.as_raw_fd(), &c, flags, 0o600).map_err(io_at(&self.full(path)))?;
        Ok(File::from(fd))
    }

    /// The file `path` as a [`PendingWrite`], its directory reached now (so a symlink on the
    /// way fails here, in order) and the file created later, on any thread.
    fn pending_write(
        &self,
        path: &str,
        data: Bytes,
        mode: u32,
        mtime: Option<u64>,
        sync: bool,
    ) -> Result<PendingWrite, UnpackError> {
        let full = self.full(path);
        let (dir, name) = self.parent_required(path)?;
        Ok(PendingWrite {
            dir,
            name,
            full,
            data,
            mode,
            mtime,
            sync,
        })
    }

    /// Opens the regular file `path` to read, not through a symlink; `None` when it does not
    /// exist or is not a regular file.
    pub(crate) fn open_file(&self, path: &str) -> Result<Option<File>, UnpackError> {
        let Some((dir, c)) = self.parent(path)? else {
            return Ok(None);
        };
        let flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK;
        let full = self.full(path);
        let f = match open_at(dir.as_raw_fd(), &c, flags, 0) {
            Ok(fd) => File::from(fd),
            Err(e)
                if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ELOOP) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(io_at(&full)(e)),
        };
        let m = f.metadata().map_err(io_at(&full))?;
        Ok(m.is_file().then_some(f))
    }

    /// The lower-case hex digest of the regular file `path` (`None`: not a regular file).
    pub(crate) fn digest<D: Digest>(&self, path: &str) -> Result<Option<String>, UnpackError> {
        let Some(mut f) = self.open_file(path)? else {
            return Ok(None);
        };
        let mut d = D::new();
        let mut buf = vec![0u8; 128 * 1024];
        loop {
            let n = match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_at(&self.full(path))(e)),
            };
            d.update(&buf[..n]);
        }
        Ok(Some(hex::encode(d.finalize())))
    }

    /// Creates the symlink `path` → `target`.
    pub(crate) fn symlink(&self, target: &str, path: &str) -> Result<(), UnpackError> {
        let (dir, c) = self.parent_required(path)?;
        let full = self.full(path);
        let t = cstr(target.as_bytes()).map_err(io_at(&full))?;
        // SAFETY: open descriptor, NUL-terminated strings.
        cvt(|| unsafe { libc::symlinkat(t.as_ptr(), dir.as_raw_fd(), c.as_ptr()) })
            .map_err(io_at(&full))?;
        Ok(())
    }

    /// The target of the symlink `path`; `None` when it is not a symlink.
    pub(crate) fn read_link(&self, path: &str) -> Result<Option<Vec<u8>>, UnpackError> {
        let Some((dir, c)) = self.parent(path)? else {
            return Ok(None);
        };
        let mut buf = vec![0u8; 4096];
        // SAFETY: `buf` is valid for `buf.len()` bytes.
        let n = match cvt(|| unsafe {
            libc::readlinkat(
                dir.as_raw_fd(),
                c.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        }) {
            Ok(n) => n,
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(libc::EINVAL) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(io_at(&self.full(path))(e)),
        };
        buf.truncate(usize::try_from(n).unwrap_or(0));
        Ok(Some(buf))
    }

    /// Creates the FIFO or device node `path` (`kind`: `S_IFIFO`, `S_IFCHR`, `S_IFBLK`) with
    /// exactly `mode`.
    pub(crate) fn mknod(
        &self,
        path: &str,
        kind: libc::mode_t,
        mode: u32,
        dev: libc::dev_t,
    ) -> io::Result<()> {
        let (dir, c) = self
            .parent_required(path)
            .map_err(|e| io::Error::other(e.to_string()))?;
        // SAFETY: open descriptor, NUL-terminated name.
        cvt(|| unsafe {
            libc::mknodat(
                dir.as_raw_fd(),
                c.as_ptr(),
                kind | (mode & 0o7777) as libc::mode_t,
                dev,
            )
        })?;
        // The node was just made in a directory held open; the umask is undone by name (a
        // FIFO or device cannot be opened just to fchmod it).
        // SAFETY: open descriptor, NUL-terminated name.
        cvt(|| unsafe {
            libc::fchmodat(
                dir.as_raw_fd(),
                c.as_ptr(),
                (mode & 0o7777) as libc::mode_t,
                0,
            )
        })?;
        Ok(())
    }

    /// fsyncs the directory `dir`.
    pub(crate) fn sync_dir(&self, dir: &str) -> Result<(), UnpackError> {
        let fd = self.walk(dir).map_err(|e| self.walk_error(e))?;
        // SAFETY: an open descriptor.
        cvt(|| unsafe { libc::fsync(fd.as_raw_fd()) }).map_err(io_at(&self.full(dir)))?;
        Ok(())
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
    /// The packages and versions, once known (several when installs are committed together).
    pub packages: Vec<(String, String)>,
    /// Temporary files created (absolute paths in the root).
    pub news: Vec<String>,
    /// Directories created, in creation order.
    pub dirs: Vec<String>,
    /// Modes to give created directories at the end.
    pub chmods: Vec<(String, u32)>,
    /// (index, temporary, final): rename temporary onto final, backing final up first.
    pub puts: Vec<(u64, String, String)>,
    /// Per `put`: journaled as `putnew`, a final path that did not exist when the package was
    /// staged. Commit renames the temporary onto it refusing to replace anything, so once the
    /// temporary name is gone whatever is at the final path is this transaction's.
    pub absent: Vec<bool>,
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
        const SHOWN: usize = 5;
        let mut names: Vec<String> = self
            .packages
            .iter()
            .take(SHOWN)
            .map(|(n, v)| format!("{n} {v}"))
            .collect();
        if self.packages.len() > SHOWN {
            names.push(format!("{} more", self.packages.len() - SHOWN));
        }
        if names.is_empty() {
            self.op.clone()
        } else {
            format!("{} ({})", self.op, names.join(", "))
        }
    }
}

/// The backup name of the final path of step `idx`: in the final path's own directory, so
/// that backing up and restoring are renames within one directory.
pub(crate) fn backup_of(idx: u64, final_path: &str) -> String {
    format!("{}/.prokit-{idx}.old", parent_of(final_path))
}

/// The parent of an absolute path in the root (`/usr/bin/x` → `/usr/bin`, `/x` → ``).
pub(crate) fn parent_of(path: &str) -> &str {
    match path.rfind('/') {
        Some(i) => &path[..i],
        None => "",
    }
}

/// A path recorded in a journal: absolute, normalized, no control characters.
pub(crate) fn valid_journal_path(p: &str) -> bool {
    p.starts_with('/')
        && p.len() > 1
        && !p.bytes().any(|b| b < 0x20 || b == 0x7f)
        && p[1..]
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

/// A point in a transaction's plan ([`Transaction::mark`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mark {
    packages: usize,
    news: usize,
    made: usize,
    dirs: usize,
    chmods: usize,
    puts: usize,
    dels: usize,
    rmdirs: usize,
    plan: usize,
}

/// An operation on the root in progress: see the documentation of [`crate::unpack`].
pub struct Transaction {
    dirs: RootDirs,
    path: PathBuf,
    /// The status file, absolute in the root (as the database resolved it).
    status_final: String,
    file: File,
    journal: Journal,
    next: u64,
    sync: bool,
    /// Plan records not yet written: they only matter once `commit` is, so they are written
    /// together with it.
    plan: String,
    /// Per `put`: what commit did (what the end deletes follows from it).
    done_puts: Vec<PutDone>,
    /// Temporary files journaled but not yet created (see [`PendingWrite`]).
    pending: Writes,
    pending_bytes: usize,
    /// The shared buffer (its address) whose size `pending_bytes` counted last.
    pending_shared: usize,
    /// The directories this transaction created (and has not undone): nothing of the root is
    /// in them but what the transaction staged, so no path in one needs looking up.
    created: std::collections::HashSet<String>,
    /// Directories of the root looked up (or created) by this transaction, and their
    /// permissions then: a package's parent directories are looked up once per transaction,
    /// not once per package. Forgotten on undo.
    known_dirs: std::collections::HashMap<String, u32>,
    /// Files are made at their final paths in directories this transaction created
    /// ([`Transaction::make_later`]; [`Db::set_direct_new_dirs`]).
    direct: bool,
    /// The files made at their final paths, in order (journaled `new` like temporaries).
    made: Vec<String>,
    made_set: std::collections::HashSet<String>,
    /// Journal records appended and not yet written to the journal file: written before
    /// anything they describe is done ([`Transaction::write_journal`]).
    unwritten: Vec<u8>,
    /// The journal was emptied: the transaction ended.
    emptied: bool,
    /// Empty the journal at the end rather than delete it.
    reuse: bool,
}

impl Transaction {
    /// Starts an operation described by `op`: creates the journal, or takes the empty one a
    /// finished transaction of this process left (failing with [`UnpackError::Pending`]
    /// when one that is not empty exists).
    pub(crate) fn begin(db: &mut Db, op: &str) -> Result<Transaction, UnpackError> {
        let dirs = RootDirs::open(db.root())?;
        let status_final =
            rel_path(db.root(), db.status_path()).ok_or_else(|| UnpackError::Io {
                path: db.status_path().to_path_buf(),
                source: io::Error::other("the status file is not inside the root"),
            })?;
        let path = db.journal_path();
        let file = match db.take_spare_journal() {
            Some(f) => f,
            None => open_new_journal(&path)?,
        };
        let op: String = op
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let mut tx = Transaction {
            dirs,
            path,
            status_final,
            file,
            journal: Journal {
                op: op.clone(),
                ..Journal::default()
            },
            next: 0,
            sync: db.fsync_enabled(),
            plan: String::new(),
            done_puts: Vec::new(),
            pending: Writes::default(),
            pending_bytes: 0,
            pending_shared: 0,
            emptied: false,
            unwritten: Vec::new(),
            created: Default::default(),
            known_dirs: Default::default(),
            direct: db.direct_new_dirs(),
            made: Vec::new(),
            made_set: Default::default(),
            reuse: db.reuses_journal(),
        };
        tx.append(JOURNAL_MAGIC)?;
        tx.append(&format!("op\t{op}"))?;
        Ok(tx)
    }

    /// The root, for dir-relative operations on it.
    pub(crate) fn dirs(&self) -> &RootDirs {
        &self.dirs
    }

    /// Appends one line to the journal (a point where a killed run may stop). It reaches the
    /// journal file with the next [`Transaction::write_journal`], which comes before anything
    /// it describes is done.
    fn append(&mut self, line: &str) -> Result<(), UnpackError> {
        fail_point().map_err(io_at(&self.path))?;
        self.unwritten.extend_from_slice(line.as_bytes());
        self.unwritten.push(b'\n');
        Ok(())
    }

    /// Writes the records appended since the last call to the journal file (one write):
    /// called before every change to the root they describe — creating a directory or a
    /// file, starting queued writes, committing, undoing.
    pub(crate) fn write_journal(&mut self) -> Result<(), UnpackError> {
        if self.unwritten.is_empty() {
            return Ok(());
        }
        fail_point().map_err(io_at(&self.path))?;
        self.file
            .write_all(&self.unwritten)
            .map_err(io_at(&self.path))?;
        self.unwritten.clear();
        Ok(())
    }

    /// The root, to change it: the journal records written first. (Reading goes through
    /// [`Transaction::dirs`].)
    pub(crate) fn dirs_to_change(&mut self) -> Result<&RootDirs, UnpackError> {
        self.write_journal()?;
        Ok(&self.dirs)
    }

    /// Starts the writes queued so far on the pool, their journal records written first.
    pub(crate) fn start_writes(&mut self) -> Result<(), UnpackError> {
        if self.pending.unstarted.is_empty() {
            return Ok(());
        }
        self.write_journal()?;
        self.pending.start();
        Ok(())
    }

    /// Adds a plan record (written with `commit`).
    fn plan_line(&mut self, line: &str) {
        self.plan.push_str(line);
        self.plan.push('\n');
    }

    fn sync_journal(&mut self) -> Result<(), UnpackError> {
        self.write_journal()?;
        if self.sync {
            self.file.sync_data().map_err(io_at(&self.path))?;
        }
        Ok(())
    }

    /// Records the package being operated on.
    pub(crate) fn set_package(&mut self, name: &str, version: &str) -> Result<(), UnpackError> {
        self.append(&format!("pkg\t{name}\t{version}"))?;
        self.journal
            .packages
            .push((name.to_string(), version.to_string()));
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

    /// Whether a new file at `path` may be made at its final path rather than under a
    /// temporary name renamed at commit: in direct mode, when its directory was created by
    /// this transaction (so nothing of the old root is there) and no file of this
    /// transaction was made there already.
    pub(crate) fn may_make(&self, path: &str) -> bool {
        self.direct && self.created(parent_of(path)) && !self.made_set.contains(path)
    }

    /// Whether this transaction made a file at `path` ([`Transaction::make_later`]).
    pub(crate) fn made(&self, path: &str) -> bool {
        self.made_set.contains(path)
    }

    /// Makes the new file `path` at its final path, holding
    /// `data` with `mode` and `mtime`, by the next [`Transaction::flush_writes`] at the
    /// latest. It is journaled `new` first, as a temporary file is: until the transaction
    /// is done, undo and recovery remove it (and then its directory); once done, it stays
    /// (docs/crash-safety.md §5, "Files made in place"). The caller knows that nothing is at
    /// `path` and nothing but this transaction makes a file there: its directory is new
    /// ([`Transaction::may_make`]), or it is the info file of a package being installed in
    /// a fresh database ([`crate::status::Db::fresh_info`]).
    pub(crate) fn make_later(
        &mut self,
        path: &str,
        data: impl Into<Bytes>,
        mode: u32,
        mtime: Option<u64>,
    ) -> Result<(), UnpackError> {
        debug_assert!(!self.made(path));
        self.append(&format!("new\t{path}"))?;
        self.journal.news.push(path.to_string());
        self.made.push(path.to_string());
        self.made_set.insert(path.to_string());
        let w = self
            .dirs
            .pending_write(path, data.into(), mode, mtime, false)?;
        self.queue(w)
    }

    /// Creates directory `path` (journaled first), mode 0755.
    pub(crate) fn mkdir(&mut self, path: &str) -> Result<(), UnpackError> {
        self.append(&format!("dir\t{path}"))?;
        self.journal.dirs.push(path.to_string());
        self.write_journal()?;
        self.dirs.mkdir(path, 0o755)?;
        self.created.insert(path.to_string());
        self.known_dirs.insert(path.to_string(), 0o755);
        Ok(())
    }

    /// Whether this transaction created the directory `path`.
    pub(crate) fn created(&self, path: &str) -> bool {
        self.created.contains(path)
    }

    /// The permissions `path` had when this transaction found it a directory (or made it).
    pub(crate) fn known_dir(&self, path: &str) -> Option<u32> {
        self.known_dirs.get(path).copied()
    }

    /// Notes that `path` is a directory with permissions `perm` (see [`Transaction::known_dir`]).
    pub(crate) fn know_dir(&mut self, path: &str, perm: u32) {
        self.known_dirs.insert(path.to_string(), perm);
    }

    /// Gives a directory this transaction created `mode` at the end.
    pub(crate) fn chmod_later(&mut self, path: &str, mode: u32) -> Result<(), UnpackError> {
        self.plan_line(&format!("chmod\t{path}\t{mode:o}"));
        self.journal.chmods.push((path.to_string(), mode));
        Ok(())
    }

    /// Plans renaming `tmp` onto `final_path` at commit. A final path in a directory this
    /// transaction created is not looked up: nothing of the root is there.
    ///
    /// A final path that does not exist now is journaled `putnew`: commit renames the
    /// temporary onto it with `RENAME_NOREPLACE` (one call, and nothing left to delete at the
    /// end) instead of hard-linking it there and deleting the temporary name at the end. If
    /// something appeared there meanwhile, the commit fails and is undone.
    pub(crate) fn put(&mut self, tmp: &str, final_path: &str) -> Result<(), UnpackError> {
        // A file this transaction made there may not be written yet: it is not absent.
        let absent = !self.made(final_path)
            && (self.created(parent_of(final_path)) || !self.dirs.exists(final_path)?);
        let n = self.next;
        self.next += 1;
        let record = if absent { "putnew" } else { "put" };
        self.plan_line(&format!("{record}\t{n}\t{tmp}\t{final_path}"));
        self.journal.absent.push(absent);
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
        self.write_later(&tmp, data.to_vec(), mode, None)?;
        self.put(&tmp, final_path)
    }

    /// Creates the temporary file `tmp` (already journaled by [`Transaction::new_temp`])
    /// holding `data` with exactly `mode` (and `mtime`) by the next
    /// [`Transaction::flush_writes`] at the latest; [`Transaction::commit`] flushes first.
    pub(crate) fn write_later(
        &mut self,
        tmp: &str,
        data: impl Into<Bytes>,
        mode: u32,
        mtime: Option<u64>,
    ) -> Result<(), UnpackError> {
        let w = self
            .dirs
            .pending_write(tmp, data.into(), mode, mtime, false)?;
        self.queue(w)
    }

    fn queue(&mut self, w: PendingWrite) -> Result<(), UnpackError> {
        // A shared buffer is held whole: counted once, when its first file is queued (a
        // package's files are queued one after another).
        if !w.data.shared {
            self.pending_bytes += w.data.range.len();
        } else if self.pending_shared != Arc::as_ptr(&w.data.buf) as usize {
            self.pending_shared = Arc::as_ptr(&w.data.buf) as usize;
            self.pending_bytes += w.data.buf.len();
        }
        if self.pending.queue(w) {
            self.start_writes()?;
        }
        if self.pending.queued >= MAX_PENDING_FILES || self.pending_bytes >= MAX_PENDING_BYTES {
            self.flush_writes()?;
        }
        Ok(())
    }

    /// Waits until every file [`Transaction::write_later`] queued was created (they are
    /// created on the thread pool a few at a time as they are queued,
    /// [`Transaction::start_writes`]); the first error (by queue order) is returned once all
    /// are done.
    pub(crate) fn flush_writes(&mut self) -> Result<(), UnpackError> {
        self.pending_bytes = 0;
        self.pending_shared = 0;
        let started = self.start_writes();
        let waited = self.pending.wait();
        started.and(waited)
    }

    /// Writes the new status file to a temporary file beside it (fsynced), renamed at the
    /// end; `write` streams its text (a root's whole status is never built in memory).
    pub(crate) fn stage_status(
        &mut self,
        write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> Result<(), UnpackError> {
        let dir = parent_of(&self.status_final).to_string();
        let tmp = self.new_temp(&dir)?;
        self.write_journal()?;
        self.dirs
            .pending_write(&tmp, Vec::new().into(), 0o644, None, self.sync)?
            .write_with(|mut f| write(&mut f))?;
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
        self.flush_writes()?;
        let mut plan = std::mem::take(&mut self.plan);
        plan.push_str("commit");
        self.append(&plan)?;
        self.sync_journal()?;
        self.journal.committed = true;
        let puts = std::mem::take(&mut self.journal.puts);
        let result = self.commit_puts(&puts);
        self.journal.puts = puts;
        result?;
        for (idx, path) in &self.journal.dels {
            fail_point().map_err(io_at(&self.dirs.full(path)))?;
            if self.dirs.exists(path)? {
                self.dirs.rename(path, &backup_of(*idx, path))?;
            }
        }
        Ok(())
    }

    fn commit_puts(&mut self, puts: &[(u64, String, String)]) -> Result<(), UnpackError> {
        if puts.len() >= PARALLEL_AT && !super::kill_armed() && self.commit_puts_parallel(puts)? {
            return Ok(());
        }
        for (i, (idx, tmp, final_path)) in puts.iter().enumerate() {
            fail_point().map_err(io_at(&self.dirs.full(final_path)))?;
            let absent = self.journal.absent.get(i).copied().unwrap_or(false);
            if absent {
                let done = if self.dirs.rename_new(tmp, final_path)? {
                    PutDone::Renamed
                } else {
                    self.dirs.hard_link(tmp, final_path)?;
                    PutDone::Linked
                };
                self.done_puts.push(done);
            } else if self.dirs.exists(final_path)? {
                self.done_puts.push(PutDone::Backed);
                self.dirs.rename(final_path, &backup_of(*idx, final_path))?;
                fail_point().map_err(io_at(&self.dirs.full(final_path)))?;
                self.dirs.rename(tmp, final_path)?;
            } else {
                self.done_puts.push(PutDone::Linked);
                self.dirs.hard_link(tmp, final_path)?;
            }
        }
        Ok(())
    }

    /// Where the plan stands now, for [`Transaction::undo_to`]: several packages share one
    /// transaction when their installs are committed together (`install::Batch`).
    pub(crate) fn mark(&self) -> Mark {
        Mark {
            packages: self.journal.packages.len(),
            news: self.journal.news.len(),
            made: self.made.len(),
            dirs: self.journal.dirs.len(),
            chmods: self.journal.chmods.len(),
            puts: self.journal.puts.len(),
            dels: self.journal.dels.len(),
            rmdirs: self.journal.rmdirs.len(),
            plan: self.plan.len(),
        }
    }

    /// Forgets everything planned since `mark` (before `commit`, nothing of it is visible):
    /// its temporary files and the directories it created are removed, its plan records
    /// dropped. The journal keeps the `pkg`, `new` and `dir` records already written, which
    /// name what no longer exists; recovery passes over them (removing a missing temporary
    /// file or a directory that is not empty does nothing).
    pub(crate) fn undo_to(&mut self, mark: &Mark) -> Result<(), UnpackError> {
        debug_assert!(!self.journal.committed);
        self.flush_writes()?;
        for t in self.journal.news.drain(mark.news..).collect::<Vec<_>>() {
            fail_point().map_err(io_at(&self.dirs.full(&t)))?;
            self.dirs.remove(&t)?;
        }
        for d in self
            .journal
            .dirs
            .drain(mark.dirs..)
            .rev()
            .collect::<Vec<_>>()
        {
            let _ = self.dirs.rmdir(&d);
            self.created.remove(&d);
        }
        self.known_dirs.clear();
        for m in self.made.drain(mark.made..) {
            self.made_set.remove(&m);
        }
        self.journal.packages.truncate(mark.packages);
        self.journal.chmods.truncate(mark.chmods);
        self.journal.puts.truncate(mark.puts);
        self.journal.absent.truncate(mark.puts);
        self.journal.dels.truncate(mark.dels);
        self.journal.rmdirs.truncate(mark.rmdirs);
        self.plan.truncate(mark.plan);
        Ok(())
    }

    /// The paths planned since `mark`: final paths of `put`s and `del`s, files made in place,
    /// and directories to remove when empty.
    pub(crate) fn planned_since(&self, mark: &Mark) -> (Vec<&str>, Vec<&str>) {
        let files = self.journal.puts[mark.puts..]
            .iter()
            .map(|(_, _, f)| f.as_str())
            .chain(
                self.journal.dels[mark.dels..]
                    .iter()
                    .map(|(_, p)| p.as_str()),
            )
            .chain(self.made[mark.made..].iter().map(String::as_str))
            .collect();
        let rmdirs = self.journal.rmdirs[mark.rmdirs..]
            .iter()
            .map(String::as_str)
            .collect();
        (files, rmdirs)
    }

    /// [`Transaction::commit_puts`] by the thread pool: each put's own steps in order
    /// (backup, then rename; or the hard link), different puts at once. Each put is undone
    /// or finished on its own (see [`undo`]: whether its temporary file still exists says
    /// how far it got), so their order among themselves does not matter to recovery. False
    /// (nothing done) when a put's directory cannot be reached here: the caller goes one by
    /// one, which says why.
    fn commit_puts_parallel(
        &mut self,
        puts: &[(u64, String, String)],
    ) -> Result<bool, UnpackError> {
        struct Job<'a> {
            dir: std::sync::Arc<OwnedFd>,
            tmp: CString,
            name: CString,
            backup: CString,
            absent: bool,
            final_path: &'a str,
        }
        let mut jobs = Vec::with_capacity(puts.len());
        for (i, (idx, tmp, final_path)) in puts.iter().enumerate() {
            let dir = parent_of(final_path);
            if parent_of(tmp) != dir {
                return Ok(false);
            }
            let Some((fd, name)) = self.dirs.parent(final_path)? else {
                return Ok(false);
            };
            let tmp = self.dirs.base_name(tmp)?;
            let backup = self.dirs.base_name(&backup_of(*idx, final_path))?;
            jobs.push(Job {
                dir: fd,
                tmp,
                name,
                backup,
                absent: self.journal.absent.get(i).copied().unwrap_or(false),
                final_path,
            });
        }
        let root = self.dirs.root();
        // A directory's renames are made by one thread, one after the other: each takes the
        // directory's lock, and threads sharing one spin on it (most of a bootstrap's
        // renames are into the database's `info/`). Threads take whole directories.
        let mut by_dir: std::collections::HashMap<usize, Vec<usize>> = Default::default();
        for (i, j) in jobs.iter().enumerate() {
            by_dir
                .entry(Arc::as_ptr(&j.dir) as usize)
                .or_default()
                .push(i);
        }
        let mut groups: Vec<Vec<usize>> = by_dir.into_values().collect();
        // The biggest first, so that the others fill in beside it.
        groups.sort_by_key(|g| std::cmp::Reverse(g.len()));
        let rename = |j: &Job<'_>| {
            let d = j.dir.as_raw_fd();
            let step = || -> io::Result<PutDone> {
                if j.absent && rename_noreplace(d, &j.tmp, d, &j.name)? {
                    return Ok(PutDone::Renamed);
                }
                // The backup rename itself says whether the final path exists (one
                // call instead of a lookup and a rename).
                let backed = !j.absent
                    && match rename_at(d, &j.name, d, &j.backup) {
                        Ok(()) => true,
                        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
                        Err(e) => return Err(e),
                    };
                if backed {
                    rename_at(d, &j.tmp, d, &j.name)?;
                    Ok(PutDone::Backed)
                } else {
                    link_at(d, &j.tmp, d, &j.name)?;
                    Ok(PutDone::Linked)
                }
            };
            step().map_err(io_at(&join_root(root, j.final_path)))
        };
        let done: Vec<Vec<(usize, Result<PutDone, UnpackError>)>> = groups
            .par_iter()
            .map(|g| g.iter().map(|&i| (i, rename(&jobs[i]))).collect())
            .collect();
        let mut results: Vec<Option<Result<PutDone, UnpackError>>> =
            std::iter::repeat_with(|| None).take(jobs.len()).collect();
        for (i, r) in done.into_iter().flatten() {
            results[i] = Some(r);
        }
        for r in results.into_iter().flatten() {
            self.done_puts.push(r?);
        }
        Ok(true)
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
            &self.dirs,
            &self.journal,
            Some(&self.done_puts),
            &self.status_final,
            self.sync,
        )?;
        self.end_journal()
    }

    /// Undoes whatever was done (see the module documentation); the root is as before.
    pub(crate) fn rollback(&mut self) -> Result<(), UnpackError> {
        // What was queued is made before it is undone (its error does not matter now).
        let _ = self.flush_writes();
        undo(&self.dirs, &self.journal)?;
        self.end_journal()
    }

    /// Ends the journal: deletes it, or — when the database keeps it between transactions
    /// ([`Db::set_reuse_journal`]) — empties it (an empty journal holds nothing to recover),
    /// so that the next transaction of this process writes the same file: installing many
    /// packages does not create and delete a file per package (on ext4 without a journal,
    /// each inode freed in the last minute slows every later file creation in its group).
    /// [`Transaction::into_spare`] hands it back; `Db` deletes it when dropped.
    fn end_journal(&mut self) -> Result<(), UnpackError> {
        self.unwritten.clear();
        if !self.reuse {
            return remove_journal(&self.path, self.sync);
        }
        fail_point().map_err(io_at(&self.path))?;
        self.file.set_len(0).map_err(io_at(&self.path))?;
        self.file
            .seek(io::SeekFrom::Start(0))
            .map_err(io_at(&self.path))?;
        if self.sync {
            // Durably empty before a next transaction writes over it from the start.
            self.file.sync_all().map_err(io_at(&self.path))?;
        }
        self.emptied = true;
        Ok(())
    }

    /// The journal file, when the transaction ended (finished or rolled back) and left it
    /// empty, for the next transaction of this process ([`Db::keep_spare_journal`]).
    pub(crate) fn into_spare(self) -> Option<File> {
        self.emptied.then_some(self.file)
    }
}

/// Creates the journal at `path`; an empty one left there (a run killed after it emptied
/// its journal) is taken over, any other is [`UnpackError::Pending`].
fn open_new_journal(path: &Path) -> Result<File, UnpackError> {
    let open = |create: bool| {
        let mut o = OpenOptions::new();
        o.write(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
        if create {
            o.create_new(true);
        }
        o.open(path)
    };
    match open(true) {
        Ok(f) => Ok(f),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let f = open(false).map_err(io_at(path))?;
            let m = f.metadata().map_err(io_at(path))?;
            if m.is_file() && m.len() == 0 {
                Ok(f)
            } else {
                Err(UnpackError::Pending {
                    path: path.to_path_buf(),
                })
            }
        }
        Err(e) => Err(io_at(path)(e)),
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

/// Undoes a journal: without `commit` only temporaries and created directories go; after
/// it, backups are renamed back and paths that were new are removed. Idempotent, so a
/// recovery that is itself killed can be run again: for each `put`, a temporary file that
/// still exists means the final path was new (hard-linked: same inode) or not yet replaced;
/// a missing one means it was renamed over an existing path whose backup is restored (or
/// already was).
fn undo(dirs: &RootDirs, j: &Journal) -> Result<(), UnpackError> {
    if j.committed {
        for (idx, path) in j.dels.iter().rev() {
            let b = backup_of(*idx, path);
            fail_point().map_err(io_at(&dirs.full(&b)))?;
            if dirs.exists(&b)? {
                dirs.rename(&b, path)?;
            }
        }
        for (i, (idx, tmp, final_path)) in j.puts.iter().enumerate().rev() {
            let b = backup_of(*idx, final_path);
            fail_point().map_err(io_at(&dirs.full(final_path)))?;
            let absent = j.absent.get(i).copied().unwrap_or(false);
            match dirs.lstat(tmp)? {
                // Renamed onto a path that did not exist (`putnew`): it is this
                // transaction's file.
                None if absent => {
                    dirs.remove(final_path)?;
                }
                Some(tm) => {
                    match dirs.lstat(final_path)? {
                        Some(fm) if fm.ino == tm.ino && fm.dev == tm.dev => {
                            dirs.remove(final_path)?;
                        }
                        Some(_) => {}
                        None => {
                            if dirs.exists(&b)? {
                                dirs.rename(&b, final_path)?;
                            }
                        }
                    }
                    fail_point().map_err(io_at(&dirs.full(tmp)))?;
                    dirs.remove(tmp)?;
                }
                None => {
                    if dirs.exists(&b)? {
                        dirs.rename(&b, final_path)?;
                    }
                }
            }
        }
    }
    for t in &j.news {
        fail_point().map_err(io_at(dirs.root()))?;
        dirs.remove(t)?;
    }
    for d in j.dirs.iter().rev() {
        let _ = dirs.rmdir(d);
    }
    Ok(())
}

/// Finishes a journal that reached `done`: deletes backups, sets modes, removes emptied
/// directories, renames the new status file into place.
/// `done_puts`, when known (in-process), says what each `put` did, saving lookups.
fn finalize(
    dirs: &RootDirs,
    j: &Journal,
    done_puts: Option<&[PutDone]>,
    status_final: &str,
    sync: bool,
) -> Result<(), UnpackError> {
    // What goes: backups (the old files) and the temporary names of new paths.
    let mut gone: Vec<String> = Vec::with_capacity(j.puts.len() + j.dels.len());
    for (i, (idx, tmp, final_path)) in j.puts.iter().enumerate() {
        match done_puts.and_then(|b| b.get(i)) {
            Some(PutDone::Backed) => gone.push(backup_of(*idx, final_path)),
            Some(PutDone::Linked) => gone.push(tmp.clone()),
            Some(PutDone::Renamed) => {}
            None => {
                gone.push(backup_of(*idx, final_path));
                gone.push(tmp.clone());
            }
        }
    }
    gone.extend(j.dels.iter().map(|(idx, path)| backup_of(*idx, path)));
    remove_all(dirs, &gone)?;
    for (path, mode) in &j.chmods {
        dirs.chmod_dir(path, mode | 0o700)?;
    }
    let mut rmdirs = j.rmdirs.clone();
    rmdirs.sort_by_key(|d| std::cmp::Reverse(d.matches('/').count()));
    for d in rmdirs {
        let _ = dirs.rmdir(&d);
    }
    if let Some(tmp) = &j.status {
        fail_point().map_err(io_at(&dirs.full(status_final)))?;
        if dirs.exists(tmp)? {
            dirs.rename(tmp, status_final)?;
            if sync {
                dirs.sync_dir(parent_of(status_final))?;
            }
        }
    }
    Ok(())
}

/// Removes every path of `paths` (missing ones are fine; the first error, in order, is
/// returned). Deleting a file can wait on the device — a file system mounted with `discard`
/// trims the freed blocks there and then — so a large set is removed by several threads,
/// each path's directory reached as [`RootDirs`] reaches it (here, in order), the unlinks in
/// parallel.
fn remove_all(dirs: &RootDirs, paths: &[String]) -> Result<(), UnpackError> {
    if paths.len() < PARALLEL_AT || super::kill_armed() {
        return paths.iter().try_for_each(|p| {
            fail_point().map_err(io_at(dirs.root()))?;
            dirs.remove(p).map(|_| ())
        });
    }
    let mut jobs = Vec::with_capacity(paths.len());
    for p in paths {
        if let Some((fd, name)) = dirs.parent(p)? {
            jobs.push((fd, name, p));
        }
    }
    let root = dirs.root();
    // Threads of their own rather than the pool's: each unlink mostly waits on the device,
    // so more of them than cores help.
    const THREADS: usize = 4;
    let chunk = jobs.len().div_ceil(THREADS);
    let results: Vec<Result<(), UnpackError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|(fd, name, p)| {
                            unlink_at(fd.as_raw_fd(), name)
                                .map(|_| ())
                                .map_err(io_at(&join_root(root, p)))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    results.into_iter().collect()
}

fn remove_journal(path: &Path, sync: bool) -> Result<(), UnpackError> {
    fail_point().map_err(io_at(path))?;
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_at(path)(e)),
    }
    if sync && let Some(db_dir) = path.parent() {
        crate::status::fsync_dir(db_dir).map_err(io_at(db_dir))?;
    }
    Ok(())
}

/// Reads a journal; only complete lines count (a killed run may leave half a line).
pub(crate) fn read_journal(path: &Path) -> Result<Option<Journal>, UnpackError> {
    // Never through a symlink: the root is hostile input (docs/threats.md §18).
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_at(path)(e)),
    };
    let meta = file.metadata().map_err(io_at(path))?;
    let len = meta.len();
    if len == 0 && meta.is_file() {
        // Emptied by a transaction that ended: nothing pending.
        return Ok(None);
    }
    if !meta.is_file() {
        return Err(UnpackError::Journal {
            path: path.to_path_buf(),
            line: 0,
            reason: "not a regular file".into(),
        });
    }
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
            ["pkg", n, v] => j.packages.push((n.to_string(), v.to_string())),
            ["new", t] => j.news.push(p(t)?),
            ["dir", d] => j.dirs.push(p(d)?),
            ["chmod", d, m] => j.chmods.push((
                p(d)?,
                u32::from_str_radix(m, 8).map_err(|_| bad("bad mode"))? & 0o7777,
            )),
            [record @ ("put" | "putnew"), i, t, fin] => {
                j.puts.push((idx(i)?, p(t)?, p(fin)?));
                j.absent.push(*record == "putnew");
            }
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
///
/// Before touching anything, every path of the journal is checked to lie below real
/// directories: one below a symlink (planted since, or a directory swapped for one) refuses
/// the whole recovery, naming it, rather than leaving a half-recovered root; the operations
/// themselves never go through a symlink either way.
pub(crate) fn recover_journal(db: &Db) -> Result<Option<String>, UnpackError> {
    let path = db.journal_path();
    let Some(j) = read_journal(&path)? else {
        // An empty journal holds nothing; one this process does not keep for its next
        // transaction was left by a run killed before its first record or after it
        // emptied it: deleted, so the root is exactly as before.
        if !db.holds_spare_journal() {
            remove_journal(&path, db.fsync_enabled())?;
        }
        return Ok(None);
    };
    let dirs = RootDirs::open(db.root())?;
    let status_final = rel_path(db.root(), db.status_path()).ok_or_else(|| UnpackError::Io {
        path: db.status_path().to_path_buf(),
        source: io::Error::other("the status file is not inside the root"),
    })?;
    let all_paths = j
        .news
        .iter()
        .chain(&j.dirs)
        .chain(j.puts.iter().flat_map(|(_, t, f)| [t, f]))
        .chain(j.dels.iter().map(|(_, d)| d))
        .chain(&j.rmdirs)
        .chain(&j.status);
    for p in all_paths {
        if let Parent::Blocked { at, symlink } = dirs.check_parent(p)? {
            return Err(UnpackError::Journal {
                path,
                line: 0,
                reason: format!(
                    "{p} lies below {at}, which is {}: refusing to touch it; restore the directory (or delete the journal to abandon the interrupted operation)",
                    if symlink {
                        "a symbolic link"
                    } else {
                        "not a directory"
                    }
                ),
            });
        }
    }
    let what = j.describe();
    let msg = if j.done {
        finalize(&dirs, &j, None, &status_final, db.fsync_enabled())?;
        format!("finished the interrupted {what}")
    } else {
        undo(&dirs, &j)?;
        format!("undid the interrupted {what}")
    };
    let _ = std::fs::remove_dir_all(db.scripts_dir());
    remove_journal(&path, db.fsync_enabled())?;
    Ok(Some(msg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn journal_round_trips_and_ignores_a_torn_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j");
        fs::write(
            &p,
            "prokit-journal\t1\nop\tinstall x.ipk\npkg\tx\t1.0\nnew\t/usr/.prokit-0.new\n\
             dir\t/usr\nchmod\t/usr\t755\nput\t1\t/usr/.prokit-0.new\t/usr/x\ndel\t2\t/usr/y\n\
             putnew\t4\t/usr/.prokit-5.new\t/usr/z\n\
             rmdir\t/opt\nstatus\t/usr/lib/opkg/.prokit-3.new\ncommit\ndo",
        )
        .unwrap();
        let j = read_journal(&p).unwrap().unwrap();
        assert_eq!(j.packages, vec![("x".into(), "1.0".into())]);
        assert_eq!(
            j.puts,
            vec![
                (1, "/usr/.prokit-0.new".into(), "/usr/x".into()),
                (4, "/usr/.prokit-5.new".into(), "/usr/z".into())
            ]
        );
        assert_eq!(j.absent, vec![false, true]);
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

    /// A scratch directory holding `root/` and `outside/` (with a sentinel file).
    fn scene() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let outside = tmp.path().join("outside");
        fs::create_dir_all(root.join("usr/lib")).unwrap();
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("sentinel"), "host file").unwrap();
        (tmp, root, outside)
    }

    #[test]
    fn digest_reads_a_file_whole_whatever_its_size_and_never_through_a_symlink() {
        use sha2::{Digest as _, Sha256};
        let (_tmp, root, outside) = scene();
        let dirs = RootDirs::open(&root).unwrap();
        // Empty, one byte, one past the read buffer (128 KiB), several buffers.
        for len in [0, 1, 128 * 1024 + 1, 3 * 128 * 1024 + 17] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            fs::write(root.join("usr/lib/f"), &bytes).unwrap();
            assert_eq!(
                dirs.digest::<Sha256>("/usr/lib/f").unwrap(),
                Some(hex::encode(Sha256::digest(&bytes))),
                "{len} bytes"
            );
        }
        std::os::unix::fs::symlink(outside.join("sentinel"), root.join("usr/lib/l")).unwrap();
        assert_eq!(dirs.digest::<Sha256>("/usr/lib/l").unwrap(), None);
        fs::create_dir(root.join("usr/lib/d")).unwrap();
        assert_eq!(dirs.digest::<Sha256>("/usr/lib/d").unwrap(), None);
        assert_eq!(dirs.digest::<Sha256>("/usr/lib/missing").unwrap(), None);
        assert_eq!(fs::read(outside.join("sentinel")).unwrap(), b"host file");
    }

    #[test]
    fn transaction_never_renames_through_a_symlinked_parent() {
        let (_tmp, root, outside) = scene();
        fs::write(root.join("usr/lib/x"), "root file").unwrap();
        let dirs = RootDirs::open(&root).unwrap();
        assert_eq!(dirs.check_parent("/usr/lib/x").unwrap(), Parent::Real);
        assert!(dirs.exists("/usr/lib/x").unwrap());
        // The directory is swapped for a link to a host directory.
        fs::rename(root.join("usr/lib"), root.join("usr/lib.real")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("usr/lib")).unwrap();
        let dirs = RootDirs::open(&root).unwrap();
        assert_eq!(
            dirs.check_parent("/usr/lib/sentinel").unwrap(),
            Parent::Blocked {
                at: "/usr/lib".into(),
                symlink: true
            }
        );
        let refusals = [
            dirs.rename("/usr/lib/sentinel", "/usr/lib/.prokit-0.old"),
            dirs.remove("/usr/lib/sentinel").map(|_| ()),
            dirs.hard_link("/usr/lib/sentinel", "/usr/lib/copy"),
            dirs.rmdir("/usr/lib/anything"),
            dirs.mkdir("/usr/lib/new", 0o755),
            dirs.create("/usr/lib/new-file").map(|_| ()),
            dirs.symlink("/etc/shadow", "/usr/lib/link"),
            dirs.pending_write(
                "/usr/lib/sentinel2",
                b"x".to_vec().into(),
                0o644,
                None,
                false,
            )
            .map(|_| ()),
            dirs.lstat("/usr/lib/sentinel").map(|_| ()),
            dirs.chmod_dir("/usr/lib/sub", 0o777).map(|_| ()),
        ];
        for r in refusals {
            let err = r.unwrap_err().to_string();
            assert!(
                err.starts_with(&format!(
                    "{}: a symbolic link",
                    root.join("usr/lib").display()
                )),
                "{err}"
            );
        }
        assert!(
            dirs.mknod("/usr/lib/fifo", libc::S_IFIFO, 0o600, 0)
                .is_err()
        );
        assert_eq!(
            dirs.open_file("/usr/lib/sentinel")
                .ok()
                .flatten()
                .map(|_| ()),
            None
        );
        let names: Vec<_> = fs::read_dir(&outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("sentinel")]);
        assert_eq!(fs::read(outside.join("sentinel")).unwrap(), b"host file");
        // A file where a directory should be is refused the same way.
        fs::write(root.join("usr/file"), "").unwrap();
        let err = dirs.remove("/usr/file/x").unwrap_err().to_string();
        assert!(err.contains("not a directory"), "{err}");
    }

    /// A transaction in `root` (database in `usr/lib/opkg`) that puts `new` at
    /// `/usr/lib/new` and `replaced` over the existing `/usr/lib/old`, committed.
    fn committed_puts(root: &Path) -> crate::status::Db {
        let mut db = crate::status::Db::open(root, crate::status::DEFAULT_DB_DIR).unwrap();
        db.set_fsync(false);
        fs::write(root.join("usr/lib/old"), "old").unwrap();
        let mut tx = Transaction::begin(&mut db, "install x").unwrap();
        for (data, path) in [("new", "/usr/lib/new"), ("replaced", "/usr/lib/old")] {
            let t = tx.new_temp("/usr/lib").unwrap();
            tx.write_later(&t, data.as_bytes().to_vec(), 0o644, None)
                .unwrap();
            tx.put(&t, path).unwrap();
        }
        assert_eq!(tx.journal.absent, vec![true, false]);
        tx.commit().unwrap();
        // Killed here: the journal stays.
        db
    }

    #[test]
    fn a_new_path_is_renamed_into_place_and_removed_again_by_recovery() {
        let (_tmp, root, _outside) = scene();
        let db = committed_puts(&root);
        assert_eq!(fs::read(root.join("usr/lib/new")).unwrap(), b"new");
        assert_eq!(fs::read(root.join("usr/lib/old")).unwrap(), b"replaced");
        let text = fs::read_to_string(db.journal_path()).unwrap();
        assert!(text.contains("putnew\t"), "{text}");
        // Renamed, not linked: no temporary name is left for the new path, only the backup.
        let names = |root: &Path| {
            let mut n: Vec<String> = fs::read_dir(root.join("usr/lib"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n != "opkg")
                .collect();
            n.sort();
            n
        };
        assert_eq!(names(&root), [".prokit-3.old", "new", "old"]);
        // Recovery (without `done`) undoes both, and again when run twice.
        for _ in 0..2 {
            let j = read_journal(&db.journal_path()).unwrap().unwrap();
            let dirs = RootDirs::open(&root).unwrap();
            undo(&dirs, &j).unwrap();
            assert_eq!(names(&root), ["old"]);
            assert_eq!(fs::read(root.join("usr/lib/old")).unwrap(), b"old");
        }
    }

    #[test]
    fn a_path_that_appears_between_staging_and_commit_is_not_replaced() {
        let (_tmp, root, _outside) = scene();
        let mut db = crate::status::Db::open(&root, crate::status::DEFAULT_DB_DIR).unwrap();
        db.set_fsync(false);
        let mut tx = Transaction::begin(&mut db, "install x").unwrap();
        let t = tx.new_temp("/usr/lib").unwrap();
        tx.write_later(&t, b"package".to_vec(), 0o644, None)
            .unwrap();
        tx.put(&t, "/usr/lib/racy").unwrap();
        fs::write(root.join("usr/lib/racy"), "someone else's").unwrap();
        let err = tx.commit().unwrap_err().to_string();
        assert!(
            err.contains("usr/lib/racy") && err.contains("exists"),
            "{err}"
        );
        tx.rollback().unwrap();
        assert_eq!(
            fs::read(root.join("usr/lib/racy")).unwrap(),
            b"someone else's"
        );
        assert!(
            !root
                .join("usr/lib")
                .join(t.rsplit('/').next().unwrap())
                .exists()
        );
    }

    #[test]
    fn queued_writes_are_made_in_the_background_and_the_first_failure_is_reported() {
        let (_tmp, root, _outside) = scene();
        let mut db = crate::status::Db::open(&root, crate::status::DEFAULT_DB_DIR).unwrap();
        db.set_fsync(false);
        let mut tx = Transaction::begin(&mut db, "install x").unwrap();
        // Files cut from one shared buffer, as a package read ahead gives them.
        let buf = Arc::new(b"onetwothree".to_vec());
        assert!(Bytes::shared(&buf, 5..12).is_none(), "past the end");
        let mut temps = Vec::new();
        for (i, range) in [0..3, 3..6, 6..11].into_iter().enumerate() {
            let t = tx.new_temp("/usr/lib").unwrap();
            let data = Bytes::shared(&buf, range).unwrap();
            tx.write_later(&t, data, 0o640, Some(1_000_000 + i as u64))
                .unwrap();
            temps.push(t);
        }
        tx.flush_writes().unwrap();
        for (t, want) in temps.iter().zip(["one", "two", "three"]) {
            let p = root.join(t.trim_start_matches('/'));
            assert_eq!(fs::read_to_string(&p).unwrap(), want);
            let m = fs::symlink_metadata(&p).unwrap();
            assert_eq!(
                std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777,
                0o640
            );
        }
        // The buffer is let go of once written.
        assert_eq!(Arc::strong_count(&buf), 1);
        // Two writes that cannot be made (their names taken): the earlier one's error is
        // the one returned, after all of them were tried.
        let (a, b, c) = (
            tx.new_temp("/usr/lib").unwrap(),
            tx.new_temp("/usr/lib").unwrap(),
            tx.new_temp("/usr/lib").unwrap(),
        );
        fs::write(root.join(a.trim_start_matches('/')), "taken").unwrap();
        fs::write(root.join(c.trim_start_matches('/')), "taken").unwrap();
        for t in [&a, &b, &c] {
            tx.write_later(t, b"x".to_vec(), 0o644, None).unwrap();
        }
        let err = tx.flush_writes().unwrap_err().to_string();
        assert!(err.contains(a.rsplit('/').next().unwrap()), "{err}");
        assert_eq!(
            fs::read(root.join(b.trim_start_matches('/'))).unwrap(),
            b"x"
        );
        // Queued and not waited for: the rollback waits, then removes every temporary.
        let d = tx.new_temp("/usr/lib").unwrap();
        tx.write_later(&d, vec![7u8; 1 << 20], 0o644, None).unwrap();
        tx.rollback().unwrap();
        for t in temps.iter().chain([&b, &d]) {
            assert!(!root.join(t.trim_start_matches('/')).exists(), "{t}");
        }
    }

    #[test]
    fn in_direct_mode_files_are_made_in_place_in_new_directories_and_undone_by_recovery() {
        let (_tmp, root, _outside) = scene();
        let mut db = crate::status::Db::open(&root, crate::status::DEFAULT_DB_DIR).unwrap();
        db.set_fsync(false);
        // Off unless asked for.
        let mut tx = Transaction::begin(&mut db, "install x").unwrap();
        tx.mkdir("/opt").unwrap();
        assert!(!tx.may_make("/opt/f"));
        tx.rollback().unwrap();
        assert!(!root.join("opt").exists());
        db.set_direct_new_dirs(true);
        let mut tx = Transaction::begin(&mut db, "install x").unwrap();
        assert!(
            !tx.may_make("/usr/lib/f"),
            "a directory the transaction did not make"
        );
        tx.mkdir("/opt").unwrap();
        assert!(tx.may_make("/opt/f"));
        tx.make_later("/opt/f", b"made".to_vec(), 0o640, Some(1_000_000))
            .unwrap();
        assert!(!tx.may_make("/opt/f") && tx.made("/opt/f"), "made already");
        // A put there later in the transaction is not taken for a new path.
        let t = tx.new_temp("/opt").unwrap();
        tx.write_later(&t, b"other".to_vec(), 0o644, None).unwrap();
        tx.put(&t, "/opt/f").unwrap();
        assert_eq!(tx.journal.absent, vec![false]);
        tx.flush_writes().unwrap();
        assert_eq!(fs::read(root.join("opt/f")).unwrap(), b"made");
        let text = fs::read_to_string(db.journal_path()).unwrap();
        assert!(text.contains("new\t/opt/f\n"), "{text}");
        // Killed here, before commit: recovery removes the file, then its directory.
        drop(tx);
        assert!(recover_journal(&db).unwrap().is_some());
        assert!(!root.join("opt").exists());
        // Committed and done: the file stays where it was made, and nothing else is left.
        let mut tx = Transaction::begin(&mut db, "install x").unwrap();
        tx.mkdir("/opt").unwrap();
        tx.make_later("/opt/f", b"made".to_vec(), 0o640, None)
            .unwrap();
        tx.commit().unwrap();
        tx.finish().unwrap();
        let names: Vec<_> = fs::read_dir(root.join("opt"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("f")]);
        assert_eq!(fs::read(root.join("opt/f")).unwrap(), b"made");
    }

    #[test]
    fn recovery_refuses_a_journal_whose_directory_became_a_symlink() {
        let (tmp, root, outside) = scene();
        let mut db = crate::status::Db::open(&root, crate::status::DEFAULT_DB_DIR).unwrap();
        db.set_fsync(false);
        {
            let mut tx = Transaction::begin(&mut db, "install evil").unwrap();
            let t = tx.new_temp("/usr/lib").unwrap();
            tx.write_later(&t, b"new".to_vec(), 0o644, None).unwrap();
            tx.put(&t, "/usr/lib/sentinel").unwrap();
            tx.commit().unwrap();
            // Killed here: the journal stays.
        }
        // The directory is swapped for a link to the host before recovery.
        fs::rename(root.join("usr/lib"), tmp.path().join("moved")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("usr/lib")).unwrap();
        // The database moved with it; a fresh one opens (through the link, inside the root
        // as resolved) — recovery must still touch nothing outside.
        drop(db);
        fs::create_dir_all(root.join("usr/lib2/opkg")).unwrap();
        let db = crate::status::Db::open(&root, "usr/lib2/opkg").unwrap();
        let journal = tmp.path().join("moved/opkg/prokit-journal");
        fs::copy(&journal, db.journal_path()).unwrap();
        let err = recover_journal(&db).unwrap_err().to_string();
        assert!(
            err.contains("lies below /usr/lib, which is a symbolic link: refusing to touch it"),
            "{err}"
        );
        assert_eq!(fs::read(outside.join("sentinel")).unwrap(), b"host file");
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 1);
    }
}
