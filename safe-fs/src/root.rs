//! [`Root`]: a directory tree that paths are confined to, resolved as a chroot would and
//! race-safe (docs/threats.md, threat 10).
//!
//! Resolution walks one component at a time: each directory is opened with
//! `openat(parent_fd, name, O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC)` from the descriptor of the
//! one before, starting at the root's descriptor. A symlink met on the way is read
//! (`readlinkat`) and its target resolved in the same way: an absolute target starts again at
//! the root, and `..` pops the directory last entered — never above the root, and never through
//! the file system's own `..`. Because every step is relative to a descriptor already held and
//! never follows a link, renaming a directory or swapping it for a symlink while we walk cannot
//! make us leave the root.
//!
//! One thing remains outside this layer's reach: a process that can write outside the root can
//! move a directory we already hold open out of the root; we then keep working in it. That
//! needs write access outside the root, which a package or a feed does not have.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::atomic::WriteOptions;
use crate::dir::{Dir, check_regular, open_error};
use crate::error::{FsError, Result, is_errno};
use crate::read::read_fd;
use crate::sys;

/// The most symbolic links followed while resolving one path (Linux's own limit).
pub const MAX_SYMLINK_HOPS: u32 = 40;

/// Why a configured path cannot be taken as a path inside the root.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    #[error("{path:?}: `..` climbs above the root")]
    Escapes { path: String },
    #[error("{path:?}: contains a NUL byte")]
    Nul { path: String },
}

/// A root directory, opened once. Every path below it is resolved as a chroot would: symlinks
/// are followed inside the root (an absolute target restarts at the root, `..` never climbs
/// above it), each directory opened from the previous one's descriptor with `O_NOFOLLOW`, so
/// that a concurrent rename or symlink swap cannot redirect it outside. At most
/// [`MAX_SYMLINK_HOPS`] symlinks are followed per path.
#[derive(Debug)]
pub struct Root {
    dir: Dir,
}

impl Root {
    /// Opens the root directory `path`. The path itself is the caller's (symlinks in it are
    /// followed); it is canonicalized, and paths in messages start with the canonical form.
    pub fn open(path: &Path) -> Result<Root> {
        let canonical =
            std::fs::canonicalize(path).map_err(|e| FsError::new(path, "open directory", e))?;
        Ok(Root {
            dir: Dir::open(&canonical)?,
        })
    }

    /// The root's canonical path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The root directory itself.
    pub fn dir(&self) -> &Dir {
        &self.dir
    }

    /// Checks a configured path lexically: absolute (`/var/opkg-lists`) or relative, both
    /// meaning inside the root; empty and `.` components are dropped; a `..` folds the
    /// component before it, and one that would climb above the root is an error. Returns the
    /// normalized root-relative path without a leading slash (`var/opkg-lists`; `""` for the
    /// root itself). Symlinks are not looked at: they are resolved when the path is used.
    pub fn confine(path: &str) -> std::result::Result<String, ConfineError> {
        if path.contains('\0') {
            return Err(ConfineError::Nul { path: path.into() });
        }
        let mut parts: Vec<&str> = Vec::new();
        for c in path.split('/') {
            match c {
                "" | "." => {}
                ".." => {
                    if parts.pop().is_none() {
                        return Err(ConfineError::Escapes { path: path.into() });
                    }
                }
                c => parts.push(c),
            }
        }
        Ok(parts.join("/"))
    }

    /// [`Root::confine`] of `rel`, split into components; the error names the path.
    fn components(&self, rel: &str) -> Result<Vec<OsString>> {
        let confined = Root::confine(rel).map_err(|e| {
            let reason = match e {
                ConfineError::Escapes { .. } => "`..` climbs above the root",
                ConfineError::Nul { .. } => "the path contains a NUL byte",
            };
            FsError::other(
                self.path().join(rel.trim_start_matches('/')),
                "resolve",
                io::ErrorKind::InvalidInput,
                reason,
            )
        })?;
        Ok(confined
            .split('/')
            .filter(|c| !c.is_empty())
            .map(OsString::from)
            .collect())
    }

    /// `rel` split into its parent's components and its final name; the root itself has no
    /// final name (an error: it is a directory).
    fn split(&self, rel: &str, op: &'static str) -> Result<(Vec<OsString>, OsString)> {
        let mut parts = self.components(rel)?;
        let name = parts.pop().ok_or_else(|| {
            FsError::other(
                self.path(),
                op,
                io::ErrorKind::IsADirectory,
                "the root is a directory",
            )
        })?;
        Ok((parts, name))
    }

    /// Opens the directory `rel` (see [`Root::confine`]) inside the root. With `create`,
    /// missing directories are created with mode 0755 (and their parent fsynced); without, a
    /// missing one is an error for which [`FsError::is_not_found`] holds. A component that is
    /// a file is an error of kind `NotADirectory`.
    pub fn open_dir(&self, rel: &str, create: bool) -> Result<Dir> {
        let parts = self.components(rel)?;
        let mut walk = Walk::new(self);
        walk.walk(parts, create)?;
        walk.into_dir()
    }

    /// [`Root::open_dir`], then the directory's path: the root's path and the components as
    /// resolved (no symlink in it at the time of the call), for code that still works by path.
    pub fn resolve_dir(&self, rel: &str, create: bool) -> Result<PathBuf> {
        Ok(self.open_dir(rel, create)?.path().to_path_buf())
    }

    /// Resolves the file `rel` and opens it to read; `Ok(None)` when it or a directory on the
    /// way does not exist. A final symlink is followed within the root like the directories.
    fn open_read(&self, rel: &str) -> Result<Option<(OwnedFd, PathBuf)>> {
        let (parts, mut name) = self.split(rel, "read")?;
        let mut walk = Walk::new(self);
        let mut pending = parts;
        loop {
            match walk.walk(pending, false) {
                Ok(()) => {}
                Err(e) if e.is_not_found() => return Ok(None),
                Err(e) => return Err(e),
            }
            if name == "." || name == ".." {
                return Err(FsError::other(
                    walk.path(),
                    "read",
                    io::ErrorKind::InvalidInput,
                    "not a regular file",
                ));
            }
            let path = walk.path_of(&name);
            let c = sys::cstring(&name).map_err(|e| FsError::new(&path, "open", e))?;
            let err = match sys::open_at(Some(walk.fd()), &c, sys::READ_FLAGS, 0) {
                Ok(fd) => return Ok(Some((fd, path))),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => e,
            };
            if !is_errno(&err, libc::ELOOP) {
                return Err(open_error(Some(walk.fd()), &c, path, err));
            }
            let target = match sys::readlink_at(walk.fd(), &c) {
                Ok(target) => target,
                // Not a symlink after all, or gone: the open's own error.
                Err(_) => return Err(open_error(Some(walk.fd()), &c, path, err)),
            };
            walk.hop(&path)?;
            let trailing_slash = target.as_bytes().ends_with(b"/");
            let mut parts = walk.restart(&target);
            name = match parts.pop() {
                Some(last) if !trailing_slash => last,
                // `link -> /` or `link -> dir/`: a directory.
                last => {
                    parts.extend(last);
                    OsString::from(".")
                }
            };
            pending = parts;
        }
    }

    /// Reads at most `max` bytes of the regular file `rel` inside the root; `Ok(None)` when it
    /// or a directory on the way does not exist. Symlinks, the final one included, are
    /// resolved within the root (a link to `/etc/shadow` reads `<root>/etc/shadow`). Anything
    /// but a regular file is refused; a larger file is an error of kind `FileTooLarge`.
    pub fn read_file(&self, rel: &str, max: u64) -> Result<Option<Vec<u8>>> {
        match self.open_read(rel)? {
            Some((fd, path)) => read_fd(fd, &path, max).map(Some),
            None => Ok(None),
        }
    }

    /// Opens the regular file `rel` inside the root for reading, resolved as by
    /// [`Root::read_file`]; `Ok(None)` when it does not exist.
    pub fn open_file(&self, rel: &str) -> Result<Option<File>> {
        let Some((fd, path)) = self.open_read(rel)? else {
            return Ok(None);
        };
        let file = File::from(fd);
        check_regular(&file, &path)?;
        Ok(Some(file))
    }

    /// Replaces the file `rel` inside the root atomically: its directory is opened with
    /// `create` ([`Root::open_dir`]), then [`Dir::write_atomic`]. A symlink at the final name
    /// is replaced, never written through.
    pub fn write_atomic(&self, rel: &str, bytes: &[u8], opts: WriteOptions) -> Result<()> {
        let (parts, name) = self.split(rel, "write")?;
        let dir = self.open_parts(parts, true)?;
        dir.write_atomic_os(&name, bytes, opts)
    }

    /// [`Root::write_atomic`] with the contents written by `write` (streaming).
    pub fn write_atomic_with(
        &self,
        rel: &str,
        opts: WriteOptions,
        write: impl FnOnce(&mut File) -> io::Result<()>,
    ) -> Result<()> {
        let (parts, name) = self.split(rel, "write")?;
        let dir = self.open_parts(parts, true)?;
        dir.write_atomic_with_os(&name, opts, write)
    }

    /// Removes the file `rel` inside the root; `Ok(false)` when it or its directory does not
    /// exist. A final symlink is removed itself, not followed. Not fsynced: for a durable
    /// removal open the directory ([`Root::open_dir`]) and use [`Dir::remove_file`] and
    /// [`Dir::sync`].
    pub fn remove_file(&self, rel: &str) -> Result<bool> {
        let (parts, name) = self.split(rel, "remove")?;
        let dir = match self.open_parts(parts, false) {
            Ok(dir) => dir,
            Err(e) if e.is_not_found() => return Ok(false),
            Err(e) => return Err(e),
        };
        dir.remove_file_os(&name)
    }

    fn open_parts(&self, parts: Vec<OsString>, create: bool) -> Result<Dir> {
        let mut walk = Walk::new(self);
        walk.walk(parts, create)?;
        walk.into_dir()
    }
}

/// One resolution in progress: the directories entered so far, from the root down.
struct Walk<'r> {
    root: &'r Root,
    stack: Vec<(OwnedFd, OsString)>,
    hops: u32,
}

impl<'r> Walk<'r> {
    fn new(root: &'r Root) -> Self {
        Walk {
            root,
            stack: Vec::new(),
            hops: 0,
        }
    }

    /// The directory entered last.
    fn fd(&self) -> BorrowedFd<'_> {
        self.stack
            .last()
            .map_or_else(|| self.root.dir.fd(), |(fd, _)| fd.as_fd())
    }

    /// The path of the directory entered last.
    fn path(&self) -> PathBuf {
        let mut path = self.root.path().to_path_buf();
        path.extend(self.stack.iter().map(|(_, name)| name));
        path
    }

    fn path_of(&self, name: &OsStr) -> PathBuf {
        self.path().join(name)
    }

    /// Counts one symlink followed (or one retry after a race); too many is `ELOOP`.
    fn hop(&mut self, at: &Path) -> Result<()> {
        self.hops += 1;
        if self.hops > MAX_SYMLINK_HOPS {
            return Err(FsError::new(
                at,
                "resolve",
                io::Error::from_raw_os_error(libc::ELOOP),
            ));
        }
        Ok(())
    }

    /// Takes a symlink's `target` as what to resolve next, from where the link is (relative)
    /// or from the root (absolute); returns its components.
    fn restart(&mut self, target: &OsStr) -> Vec<OsString> {
        if target.as_bytes().starts_with(b"/") {
            self.stack.clear();
        }
        target
            .as_bytes()
            .split(|&b| b == b'/')
            .filter(|c| !c.is_empty() && *c != b".")
            .map(|c| OsStr::from_bytes(c).to_os_string())
            .collect()
    }

    /// Enters each of `parts` in turn (following symlinks within the root).
    fn walk(&mut self, parts: Vec<OsString>, create: bool) -> Result<()> {
        let mut pending = parts;
        pending.reverse(); // a stack: the next component last
        while let Some(name) = pending.pop() {
            if name.is_empty() || name == "." {
                continue;
            }
            if name == ".." {
                self.stack.pop(); // at the root, `..` is the root
                continue;
            }
            let path = self.path_of(&name);
            let c = sys::cstring(&name).map_err(|e| FsError::new(&path, "open directory", e))?;
            let err = match sys::open_at(Some(self.fd()), &c, sys::DIR_FLAGS, 0) {
                Ok(fd) => {
                    self.stack.push((fd, name));
                    continue;
                }
                Err(e) => e,
            };
            if is_errno(&err, libc::ELOOP) || is_errno(&err, libc::ENOTDIR) {
                // A symlink (ELOOP under O_NOFOLLOW; some systems say ENOTDIR), or a file.
                match sys::readlink_at(self.fd(), &c) {
                    Ok(target) => {
                        self.hop(&path)?;
                        let parts = self.restart(&target);
                        pending.extend(parts.into_iter().rev());
                    }
                    Err(e) if is_errno(&e, libc::EINVAL) => {
                        return Err(FsError::new(
                            path,
                            "open directory",
                            io::Error::from_raw_os_error(libc::ENOTDIR),
                        ));
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        // Replaced meanwhile: look again.
                        self.hop(&path)?;
                        pending.push(name);
                    }
                    Err(e) => return Err(FsError::new(path, "read link", e)),
                }
            } else if err.kind() == io::ErrorKind::NotFound && create {
                match sys::mkdir_at(self.fd(), &c, 0o755) {
                    Ok(()) => {
                        sys::fsync(self.fd()).map_err(|e| FsError::new(self.path(), "sync", e))?;
                        // Set the mode exactly (the umask may have narrowed it) on the
                        // directory we made, if it is still there; else look again.
                        if let Ok(fd) = sys::open_at(Some(self.fd()), &c, sys::DIR_FLAGS, 0) {
                            sys::fchmod(fd.as_fd(), 0o755)
                                .map_err(|e| FsError::new(&path, "set the mode of", e))?;
                            self.stack.push((fd, name));
                            continue;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(FsError::new(path, "create directory", e)),
                }
                self.hop(&path)?;
                pending.push(name);
            } else {
                return Err(FsError::new(path, "open directory", err));
            }
        }
        Ok(())
    }

    /// The directory entered last, as a [`Dir`].
    fn into_dir(mut self) -> Result<Dir> {
        let path = self.path();
        match self.stack.pop() {
            Some((fd, _)) => Ok(Dir::from_fd(fd, path)),
            None => self.root.dir.try_clone(),
        }
    }
}

#[cfg(test)]
mod tests;
