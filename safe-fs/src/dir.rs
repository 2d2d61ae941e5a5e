//! [`Dir`]: an open directory, and every operation on a name in it through its descriptor
//! (`openat`, `renameat`, `unlinkat`, …), so that the directory cannot be swapped under us
//! between two steps. [`TempFile`]: a hidden temporary file in a directory, renamed into place
//! or removed.

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::atomic::{WriteOptions, temp_name_os};
use crate::error::{FsError, Result, is_errno};
use crate::read::read_fd;
use crate::sys;

/// How many fresh temporary names are tried before giving up (each is 64 random bits: a
/// collision means something is wrong, not bad luck).
const TEMP_ATTEMPTS: usize = 8;

/// An open directory. Every method takes a single name in it (no `/`, not `.` or `..`) and works
/// through the directory's descriptor; none follows a symlink at that name.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

/// What `stat(2)` says of a name ([`Dir::stat`]): the fields that tell whether a file is still
/// the one seen before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    /// Type and permission bits (`st_mode`).
    pub mode: u32,
    pub len: u64,
    pub dev: u64,
    pub ino: u64,
    pub mtime: i64,
    pub mtime_nsec: i64,
    pub ctime: i64,
    pub ctime_nsec: i64,
}

impl Stat {
    /// Whether it is a regular file.
    #[allow(clippy::unnecessary_cast)]
    pub fn is_file(&self) -> bool {
        sys::is_type(self.mode as sys::Mode, libc::S_IFREG)
    }
}

/// What a name in a directory is (the name itself: a symlink is not followed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file of `len` bytes.
    File {
        len: u64,
    },
    Dir,
    Symlink,
    /// A FIFO, socket or device.
    Other,
}

impl Dir {
    /// Opens the directory at `path`. The path is the caller's own (symlinks on the way are
    /// followed, as any path would be); to stay inside a root use [`Root`](crate::Root).
    pub fn open(path: &Path) -> Result<Dir> {
        let c = sys::cstring(path.as_os_str()).map_err(|e| FsError::new(path, "open", e))?;
        let fd = sys::open_at(
            None,
            &c,
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            0,
        )
        .map_err(|e| FsError::new(path, "open directory", e))?;
        Ok(Dir::from_fd(fd, path.to_path_buf()))
    }

    pub(crate) fn from_fd(fd: OwnedFd, path: PathBuf) -> Dir {
        Dir { fd, path }
    }

    /// The same directory, shown as `path` in messages.
    pub(crate) fn with_path(self, path: PathBuf) -> Dir {
        Dir { path, ..self }
    }

    /// The directory's path, for messages (for a directory opened inside a
    /// [`Root`](crate::Root): the root's path and the components as resolved).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A second handle on the same directory.
    pub fn try_clone(&self) -> Result<Dir> {
        let fd = self
            .fd
            .try_clone()
            .map_err(|e| FsError::new(&self.path, "duplicate descriptor of", e))?;
        Ok(Dir::from_fd(fd, self.path.clone()))
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The display path of `name` in this directory.
    pub(crate) fn child(&self, name: &OsStr) -> PathBuf {
        self.path.join(name)
    }

    /// `name` checked to be one component, as a C string.
    fn name(&self, name: &OsStr) -> Result<CString> {
        let bytes = name.as_bytes();
        let reason = if bytes.is_empty() {
            Some("empty file name")
        } else if bytes.contains(&b'/') {
            Some("a file name may not contain '/'")
        } else if bytes == b"." || bytes == b".." {
            Some("a file name may not be '.' or '..'")
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(FsError::other(
                self.child(name),
                "use",
                io::ErrorKind::InvalidInput,
                reason,
            ));
        }
        sys::cstring(name).map_err(|e| FsError::new(self.child(name), "use", e))
    }

    /// Reads at most `max` bytes of the regular file `name`; `Ok(None)` when it does not
    /// exist. A symlink at `name` is not followed (an error), nor is a FIFO or device read;
    /// a larger file is an error of kind `FileTooLarge` saying "larger than `max` bytes".
    pub fn read_file(&self, name: &str, max: u64) -> Result<Option<Vec<u8>>> {
        let name = OsStr::new(name);
        match self.open_read(name)? {
            Some(fd) => read_fd(fd, &self.child(name), max).map(Some),
            None => Ok(None),
        }
    }

    /// Opens the regular file `name` for reading, not through a symlink; `Ok(None)` when it
    /// does not exist.
    pub fn open_file(&self, name: &str) -> Result<Option<File>> {
        let name = OsStr::new(name);
        let Some(fd) = self.open_read(name)? else {
            return Ok(None);
        };
        let file = File::from(fd);
        check_regular(&file, &self.child(name))?;
        Ok(Some(file))
    }

    fn open_read(&self, name: &OsStr) -> Result<Option<OwnedFd>> {
        let c = self.name(name)?;
        match sys::open_at(Some(self.fd()), &c, sys::READ_FLAGS, 0) {
            Ok(fd) => Ok(Some(fd)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(open_error(Some(self.fd()), &c, self.child(name), e)),
        }
    }

    /// What `name` is, without following a symlink; `Ok(None)` when it does not exist.
    pub fn kind(&self, name: &str) -> Result<Option<EntryKind>> {
        let name = OsStr::new(name);
        let c = self.name(name)?;
        let (mode, len) = match sys::lstat_at(Some(self.fd()), &c) {
            Ok(st) => st,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(FsError::new(self.child(name), "stat", e)),
        };
        Ok(Some(if sys::is_type(mode, libc::S_IFREG) {
            EntryKind::File { len }
        } else if sys::is_type(mode, libc::S_IFDIR) {
            EntryKind::Dir
        } else if sys::is_type(mode, libc::S_IFLNK) {
            EntryKind::Symlink
        } else {
            EntryKind::Other
        }))
    }

    /// What `fstatat(2)` says of `name`, without following a symlink; `Ok(None)` when it does
    /// not exist. For the many files of a directory listed once: one lookup of one name each.
    pub fn stat(&self, name: &OsStr) -> Result<Option<Stat>> {
        let c = self.name(name)?;
        match sys::stat_at(Some(self.fd()), &c) {
            Ok(st) => Ok(Some(st)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(FsError::new(self.child(name), "stat", e)),
        }
    }

    /// Replaces `name` with `bytes` atomically (docs/crash-safety.md §1): a temporary file
    /// [`temp_name`](crate::temp_name) in this directory, created exclusively and not through
    /// a symlink, written, given `opts.mode` exactly, fsynced, renamed over `name`, then the
    /// directory fsynced (the fsyncs only with `opts.sync`). A symlink at `name` is replaced,
    /// not followed. On failure the temporary file is removed and `name` is unchanged.
    pub fn write_atomic(&self, name: &str, bytes: &[u8], opts: WriteOptions) -> Result<()> {
        self.write_atomic_os(OsStr::new(name), bytes, opts)
    }

    pub(crate) fn write_atomic_os(
        &self,
        name: &OsStr,
        bytes: &[u8],
        opts: WriteOptions,
    ) -> Result<()> {
        self.write_atomic_with_os(name, opts, |f| f.write_all(bytes))
    }

    /// [`Dir::write_atomic`] with the contents written by `write` (streaming).
    pub fn write_atomic_with(
        &self,
        name: &str,
        opts: WriteOptions,
        write: impl FnOnce(&mut File) -> io::Result<()>,
    ) -> Result<()> {
        self.write_atomic_with_os(OsStr::new(name), opts, write)
    }

    pub(crate) fn write_atomic_with_os(
        &self,
        name: &OsStr,
        opts: WriteOptions,
        write: impl FnOnce(&mut File) -> io::Result<()>,
    ) -> Result<()> {
        self.name(name)?;
        let mut tmp = self.temp_file_os(name, opts)?;
        write(tmp.file_mut()).map_err(|e| FsError::new(self.child(name), "write", e))?;
        tmp.persist_os(name)
    }

    /// Creates a temporary file for `name` in this directory ([`TempFile`]): hidden, named
    /// [`temp_name`](crate::temp_name)`(name)`, created exclusively, mode `opts.mode`.
    pub fn temp_file(&self, name: &str, opts: WriteOptions) -> Result<TempFile> {
        self.temp_file_os(OsStr::new(name), opts)
    }

    pub(crate) fn temp_file_os(&self, name: &OsStr, opts: WriteOptions) -> Result<TempFile> {
        let mut last = None;
        for _ in 0..TEMP_ATTEMPTS {
            let tmp = temp_name_os(name);
            let c = self.name(&tmp)?;
            match self.create(&c, &tmp, opts.mode) {
                Ok(file) => {
                    return Ok(TempFile {
                        dir: self.try_clone()?,
                        name: c,
                        path: self.child(&tmp),
                        file,
                        opts,
                        done: false,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            FsError::other(
                self.child(name),
                "create a temporary file for",
                io::ErrorKind::AlreadyExists,
                "no free temporary name",
            )
        }))
    }

    /// Creates `name` exclusively (not through a symlink) with exactly `mode`.
    fn create(&self, c: &CString, name: &OsStr, mode: u32) -> Result<File> {
        let fd = sys::open_at(Some(self.fd()), c, sys::CREATE_FLAGS, mode & 0o7777)
            .map_err(|e| FsError::new(self.child(name), "create", e))?;
        let file = File::from(fd);
        if let Err(e) = sys::fchmod(file.as_fd(), mode & 0o7777) {
            let _ = sys::unlink_at(self.fd(), c);
            return Err(FsError::new(self.child(name), "set the mode of", e));
        }
        Ok(file)
    }

    /// Creates `name`, which must not exist (not even as a symlink: an error of kind
    /// `AlreadyExists`), with `bytes` and exactly `opts.mode`; with `opts.sync` the file and
    /// the directory are fsynced. The file is written in place (a crash can leave it short);
    /// on an error it is removed.
    pub fn write_new(&self, name: &str, bytes: &[u8], opts: WriteOptions) -> Result<()> {
        self.write_new_os(OsStr::new(name), bytes, opts)
    }

    pub(crate) fn write_new_os(
        &self,
        name: &OsStr,
        bytes: &[u8],
        opts: WriteOptions,
    ) -> Result<()> {
        let c = self.name(name)?;
        let mut file = self.create(&c, name, opts.mode)?;
        let written = file
            .write_all(bytes)
            .and_then(|()| if opts.sync { file.sync_all() } else { Ok(()) });
        if let Err(e) = written {
            drop(file);
            let _ = sys::unlink_at(self.fd(), &c);
            return Err(FsError::new(self.child(name), "write", e));
        }
        if opts.sync {
            self.sync()?;
        }
        Ok(())
    }

    /// Removes the file or symlink `name` (a symlink itself, never its target); `Ok(false)`
    /// when it does not exist. Not fsynced: call [`Dir::sync`] when the removal must be
    /// durable.
    pub fn remove_file(&self, name: &str) -> Result<bool> {
        self.remove_file_os(OsStr::new(name))
    }

    pub(crate) fn remove_file_os(&self, name: &OsStr) -> Result<bool> {
        let c = self.name(name)?;
        match sys::unlink_at(self.fd(), &c) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(FsError::new(self.child(name), "remove", e)),
        }
    }

    /// Renames `from` to `to` within this directory (replacing `to` if it is a file or a
    /// symlink). Not fsynced: call [`Dir::sync`].
    pub fn rename(&self, from: &str, to: &str) -> Result<()> {
        let (from, to) = (OsStr::new(from), OsStr::new(to));
        let (cf, ct) = (self.name(from)?, self.name(to)?);
        sys::rename_at(self.fd(), &cf, &ct).map_err(|e| FsError::new(self.child(from), "rename", e))
    }

    /// Opens the subdirectory `name`, not through a symlink (a symlink or a file there is an
    /// error of kind `NotADirectory`); `Ok(None)` when it does not exist.
    pub fn open_subdir(&self, name: &str) -> Result<Option<Dir>> {
        let name = OsStr::new(name);
        let c = self.name(name)?;
        match sys::open_at(Some(self.fd()), &c, sys::DIR_FLAGS, 0) {
            Ok(fd) => Ok(Some(Dir::from_fd(fd, self.child(name)))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            // A symlink under O_NOFOLLOW | O_DIRECTORY: ELOOP or ENOTDIR, by system.
            Err(e)
                if (is_errno(&e, libc::ELOOP) || is_errno(&e, libc::ENOTDIR))
                    && sys::lstat_at(Some(self.fd()), &c)
                        .is_ok_and(|(mode, _)| sys::is_type(mode, libc::S_IFLNK)) =>
            {
                Err(FsError::other(
                    self.child(name),
                    "open directory",
                    io::ErrorKind::NotADirectory,
                    "it is a symbolic link, which is not followed here",
                ))
            }
            Err(e) => Err(FsError::new(self.child(name), "open directory", e)),
        }
    }

    /// Creates the subdirectory `name` (which must not exist: else an error of kind
    /// `AlreadyExists`) with exactly `mode`, and opens it. Not fsynced: call [`Dir::sync`].
    pub fn create_dir(&self, name: &str, mode: u32) -> Result<Dir> {
        let name = OsStr::new(name);
        let c = self.name(name)?;
        let path = self.child(name);
        sys::mkdir_at(self.fd(), &c, mode & 0o7777)
            .map_err(|e| FsError::new(&path, "create directory", e))?;
        let fd = sys::open_at(Some(self.fd()), &c, sys::DIR_FLAGS, 0)
            .map_err(|e| FsError::new(&path, "open directory", e))?;
        sys::fchmod(fd.as_fd(), mode & 0o7777)
            .map_err(|e| FsError::new(&path, "set the mode of", e))?;
        Ok(Dir::from_fd(fd, path))
    }

    /// Removes the directory `name` and everything in it, never following a symlink (a
    /// symlink inside is removed itself); `Ok(false)` when it does not exist. `name` itself
    /// must be a directory, not a symlink to one.
    pub fn remove_dir_all(&self, name: &str) -> Result<bool> {
        let Some(sub) = self.open_subdir(name)? else {
            return Ok(false);
        };
        sub.empty()?;
        drop(sub);
        let name = OsStr::new(name);
        let c = self.name(name)?;
        match sys::rmdir_at(self.fd(), &c) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(FsError::new(self.child(name), "remove", e)),
        }
    }

    /// Removes everything in this directory, never following a symlink.
    fn empty(&self) -> Result<()> {
        for name in self.entries()? {
            let c = self.name(&name)?;
            let (mode, _) = match sys::lstat_at(Some(self.fd()), &c) {
                Ok(st) => st,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(FsError::new(self.child(&name), "stat", e)),
            };
            if sys::is_type(mode, libc::S_IFDIR) {
                let fd = sys::open_at(Some(self.fd()), &c, sys::DIR_FLAGS, 0)
                    .map_err(|e| FsError::new(self.child(&name), "open directory", e))?;
                Dir::from_fd(fd, self.child(&name)).empty()?;
                sys::rmdir_at(self.fd(), &c)
                    .map_err(|e| FsError::new(self.child(&name), "remove", e))?;
            } else {
                match sys::unlink_at(self.fd(), &c) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(FsError::new(self.child(&name), "remove", e)),
                }
            }
        }
        Ok(())
    }

    /// The target of the symlink `name` (an error of kind `InvalidInput` when `name` is not a
    /// symlink).
    pub fn read_link(&self, name: &str) -> Result<PathBuf> {
        let name = OsStr::new(name);
        let c = self.name(name)?;
        sys::readlink_at(self.fd(), &c)
            .map(PathBuf::from)
            .map_err(|e| FsError::new(self.child(name), "read link", e))
    }

    /// Creates the symlink `name` pointing to `target` (which is not looked at). Not fsynced:
    /// call [`Dir::sync`].
    pub fn symlink(&self, target: &Path, name: &str) -> Result<()> {
        let name = OsStr::new(name);
        let c = self.name(name)?;
        let t = sys::cstring(target.as_os_str())
            .map_err(|e| FsError::new(self.child(name), "create link", e))?;
        sys::symlink_at(&t, self.fd(), &c)
            .map_err(|e| FsError::new(self.child(name), "create link", e))
    }

    /// Opens the regular file `name` for reading and writing, creating it with exactly `mode`
    /// when it does not exist; never through a symlink, and never a FIFO or device (for lock
    /// files).
    pub fn open_or_create(&self, name: &str, mode: u32) -> Result<File> {
        let name = OsStr::new(name);
        let c = self.name(name)?;
        let path = self.child(name);
        let create =
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        match sys::open_at(Some(self.fd()), &c, create, mode & 0o7777) {
            Ok(fd) => {
                sys::fchmod(fd.as_fd(), mode & 0o7777)
                    .map_err(|e| FsError::new(&path, "set the mode of", e))?;
                return Ok(File::from(fd));
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(FsError::new(&path, "create", e)),
        }
        let open = libc::O_RDWR | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK;
        let fd = sys::open_at(Some(self.fd()), &c, open, 0)
            .map_err(|e| open_error(Some(self.fd()), &c, path.clone(), e))?;
        let file = File::from(fd);
        check_regular(&file, &path)?;
        Ok(file)
    }

    /// Fsyncs the directory, so that creations, renames and removals in it are durable.
    pub fn sync(&self) -> Result<()> {
        sys::fsync(self.fd()).map_err(|e| FsError::new(&self.path, "sync", e))
    }

    /// The names in the directory (without `.` and `..`), sorted.
    pub fn entries(&self) -> Result<Vec<OsString>> {
        let mut names = sys::list(self.fd()).map_err(|e| FsError::new(&self.path, "list", e))?;
        names.sort();
        Ok(names)
    }
}

/// The error for a failed `openat` of `name` to read: a final symlink (`ELOOP` under
/// `O_NOFOLLOW`) is said to be one.
pub(crate) fn open_error(
    dir: Option<BorrowedFd<'_>>,
    c: &CString,
    path: PathBuf,
    e: io::Error,
) -> FsError {
    if is_errno(&e, libc::ELOOP)
        && sys::lstat_at(dir, c).is_ok_and(|(mode, _)| sys::is_type(mode, libc::S_IFLNK))
    {
        return FsError::other(
            path,
            "open",
            e.kind(),
            "it is a symbolic link, which is not followed here",
        );
    }
    FsError::new(path, "open", e)
}

/// Refuses anything but a regular file.
pub(crate) fn check_regular(file: &File, path: &Path) -> Result<u64> {
    let meta = file.metadata().map_err(|e| FsError::new(path, "stat", e))?;
    if !meta.is_file() {
        return Err(FsError::other(
            path,
            "read",
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(meta.len())
}

/// A temporary file in a directory, made by [`Dir::temp_file`] or [`TempFile::new_in`]: write
/// it through [`TempFile::file_mut`], then [`TempFile::persist`] it under its final name. If it
/// is dropped instead, it is removed.
#[derive(Debug)]
pub struct TempFile {
    dir: Dir,
    name: CString,
    path: PathBuf,
    file: File,
    opts: WriteOptions,
    done: bool,
}

impl TempFile {
    /// A temporary file for `name` in the directory `dir` (a path of the caller's own).
    pub fn new_in(dir: &Path, name: &str, opts: WriteOptions) -> Result<TempFile> {
        Dir::open(dir)?.temp_file(name, opts)
    }

    /// The temporary file's path (to read it back by path before persisting it).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open file, to write to.
    pub fn file_mut(&mut self) -> &mut File {
        &mut self.file
    }

    /// Renames the file onto `name` in its directory: first fsynced (with `opts.sync`), then
    /// renamed (a file or symlink at `name` is replaced, not followed), then the directory
    /// fsynced (with `opts.sync`). On failure the temporary file is removed.
    pub fn persist(self, name: &str) -> Result<()> {
        self.persist_os(OsStr::new(name))
    }

    pub(crate) fn persist_os(mut self, name: &OsStr) -> Result<()> {
        let target = self.dir.child(name);
        let c = self.dir.name(name)?;
        if self.opts.sync {
            self.file
                .sync_all()
                .map_err(|e| FsError::new(&target, "sync", e))?;
        }
        sys::rename_at(self.dir.fd(), &self.name, &c)
            .map_err(|e| FsError::new(&target, "rename into place", e))?;
        self.done = true;
        if self.opts.sync {
            self.dir.sync()?;
        }
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.done {
            let _ = sys::unlink_at(self.dir.fd(), &self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{PermissionsExt, symlink};

    fn dir() -> (tempfile::TempDir, Dir) {
        let t = tempfile::tempdir().unwrap();
        let d = Dir::open(t.path()).unwrap();
        (t, d)
    }

    #[test]
    fn names_with_slashes_or_dots_are_refused() {
        let (_t, d) = dir();
        for bad in ["", "a/b", "/etc/passwd", ".", ".."] {
            let err = d
                .write_atomic(bad, b"x", WriteOptions::default())
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad:?}: {err}");
            assert!(d.read_file(bad, 10).is_err(), "{bad:?}");
            assert!(d.remove_file(bad).is_err(), "{bad:?}");
        }
        assert!(d.entries().unwrap().is_empty());
    }

    #[test]
    fn write_atomic_replaces_a_final_symlink_instead_of_writing_through_it() {
        let (t, d) = dir();
        let outside = tempfile::tempdir().unwrap();
        let sentinel = outside.path().join("sentinel");
        fs::write(&sentinel, b"untouched").unwrap();
        symlink(&sentinel, t.path().join("f")).unwrap();
        d.write_atomic("f", b"new", WriteOptions::default())
            .unwrap();
        assert_eq!(fs::read(&sentinel).unwrap(), b"untouched");
        assert!(
            !fs::symlink_metadata(t.path().join("f"))
                .unwrap()
                .is_symlink()
        );
        assert_eq!(fs::read(t.path().join("f")).unwrap(), b"new");
    }

    #[test]
    fn read_file_and_open_file_do_not_follow_a_final_symlink() {
        let (t, d) = dir();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret"), b"secret").unwrap();
        symlink(outside.path().join("secret"), t.path().join("link")).unwrap();
        let err = d.read_file("link", 100).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert!(d.open_file("link").is_err());
        assert_eq!(d.kind("link").unwrap(), Some(EntryKind::Symlink));
    }

    #[test]
    fn write_new_refuses_an_existing_file_or_symlink_and_keeps_it() {
        let (t, d) = dir();
        let opts = WriteOptions {
            mode: 0o600,
            sync: true,
        };
        d.write_new("key", b"one", opts).unwrap();
        let mode = fs::metadata(t.path().join("key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let err = d.write_new("key", b"two", opts).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(t.path().join("key")).unwrap(), b"one");
        // A dangling symlink is not written through.
        let outside = tempfile::tempdir().unwrap();
        symlink(outside.path().join("planted"), t.path().join("dangling")).unwrap();
        let err = d.write_new("dangling", b"x", opts).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert!(!outside.path().join("planted").exists());
    }

    #[test]
    fn a_dropped_temp_file_is_removed_and_a_persisted_one_is_renamed() {
        let (t, d) = dir();
        let mut tmp = d.temp_file("out", WriteOptions::default()).unwrap();
        tmp.file_mut().write_all(b"partial").unwrap();
        assert!(tmp.path().exists());
        drop(tmp);
        assert!(d.entries().unwrap().is_empty());

        let mut tmp = d.temp_file("out", WriteOptions::default()).unwrap();
        tmp.file_mut().write_all(b"whole").unwrap();
        assert_eq!(fs::read(tmp.path()).unwrap(), b"whole");
        tmp.persist("final").unwrap();
        assert_eq!(d.entries().unwrap(), vec![OsString::from("final")]);
        assert_eq!(fs::read(t.path().join("final")).unwrap(), b"whole");
    }

    #[test]
    fn entries_are_sorted_and_can_be_listed_twice() {
        let (t, d) = dir();
        for n in ["b", "a", "c"] {
            fs::write(t.path().join(n), b"").unwrap();
        }
        fs::create_dir(t.path().join("d")).unwrap();
        let want: Vec<OsString> = ["a", "b", "c", "d"].map(OsString::from).into();
        assert_eq!(d.entries().unwrap(), want);
        // The listing shares the descriptor's position: a second listing must start over.
        assert_eq!(d.entries().unwrap(), want);
    }

    #[test]
    fn remove_dir_all_does_not_follow_symlinks_out() {
        let (t, d) = dir();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("sentinel"), b"keep").unwrap();
        fs::create_dir_all(t.path().join("tree/sub")).unwrap();
        fs::write(t.path().join("tree/sub/f"), b"").unwrap();
        symlink(outside.path(), t.path().join("tree/link-dir")).unwrap();
        symlink(
            outside.path().join("sentinel"),
            t.path().join("tree/sub/link-file"),
        )
        .unwrap();
        assert!(d.remove_dir_all("tree").unwrap());
        assert!(!d.remove_dir_all("tree").unwrap());
        assert!(d.entries().unwrap().is_empty());
        assert_eq!(fs::read(outside.path().join("sentinel")).unwrap(), b"keep");
        // A symlink to a directory is not a directory to empty.
        symlink(outside.path(), t.path().join("link")).unwrap();
        let err = d.remove_dir_all("link").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotADirectory);
        assert_eq!(fs::read(outside.path().join("sentinel")).unwrap(), b"keep");
    }

    #[test]
    fn subdirectories_links_and_lock_files() {
        let (t, d) = dir();
        let sub = d.create_dir("s", 0o700).unwrap();
        assert_eq!(sub.path(), t.path().join("s"));
        let mode = fs::metadata(t.path().join("s"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o700);
        assert_eq!(
            d.create_dir("s", 0o700).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        sub.write_atomic("f", b"x", WriteOptions::default())
            .unwrap();
        assert_eq!(fs::read(t.path().join("s/f")).unwrap(), b"x");
        assert!(d.open_subdir("none").unwrap().is_none());
        d.symlink(Path::new("s"), "l").unwrap();
        assert_eq!(d.read_link("l").unwrap(), Path::new("s"));
        assert_eq!(
            d.open_subdir("l").unwrap_err().kind(),
            io::ErrorKind::NotADirectory
        );
        assert_eq!(
            d.read_link("s").unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );

        let mut lock = d.open_or_create("lock", 0o640).unwrap();
        lock.write_all(b"1").unwrap();
        let mode = fs::metadata(t.path().join("lock"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o640);
        // A second open finds the same file, not a fresh one.
        let again = d.open_or_create("lock", 0o600).unwrap();
        assert_eq!(again.metadata().unwrap().len(), 1);
        // Never through a symlink.
        let outside = tempfile::tempdir().unwrap();
        symlink(outside.path().join("planted"), t.path().join("bad")).unwrap();
        assert!(d.open_or_create("bad", 0o644).is_err());
        assert!(!outside.path().join("planted").exists());
        assert!(d.open_or_create("s", 0o644).is_err());
    }

    #[test]
    fn stat_is_of_the_name_itself() {
        let (t, d) = dir();
        fs::write(t.path().join("f"), b"abcd").unwrap();
        symlink("f", t.path().join("s")).unwrap();
        let st = d.stat(OsStr::new("f")).unwrap().unwrap();
        let meta = fs::symlink_metadata(t.path().join("f")).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert!(st.is_file());
        assert_eq!(
            (st.len, st.dev, st.ino, st.mtime, st.mtime_nsec),
            (4, meta.dev(), meta.ino(), meta.mtime(), meta.mtime_nsec())
        );
        assert_eq!((st.ctime, st.ctime_nsec), (meta.ctime(), meta.ctime_nsec()));
        // A symlink is not followed.
        let link = d.stat(OsStr::new("s")).unwrap().unwrap();
        assert!(!link.is_file() && link.ino != st.ino);
        assert_eq!(d.stat(OsStr::new("none")).unwrap(), None);
        assert!(d.stat(OsStr::new("a/f")).is_err());
    }

    #[test]
    fn kind_remove_and_rename() {
        let (t, d) = dir();
        fs::write(t.path().join("f"), b"abc").unwrap();
        fs::create_dir(t.path().join("sub")).unwrap();
        assert_eq!(d.kind("f").unwrap(), Some(EntryKind::File { len: 3 }));
        assert_eq!(d.kind("sub").unwrap(), Some(EntryKind::Dir));
        assert_eq!(d.kind("none").unwrap(), None);
        d.rename("f", "g").unwrap();
        assert_eq!(d.kind("f").unwrap(), None);
        assert!(d.remove_file("g").unwrap());
        assert!(!d.remove_file("g").unwrap());
        let err = d.remove_file("sub").unwrap_err();
        assert!(
            err.to_string().starts_with(&format!(
                "{}: cannot remove: ",
                t.path().join("sub").display()
            )),
            "{err}"
        );
    }
}
