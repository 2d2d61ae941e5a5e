//! Thin wrappers around the `*at` system calls this crate is built on. Each returns an
//! [`io::Error`] from `errno`; the callers attach the path.

use std::ffi::{CStr, CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use crate::error::errno;

/// Flags for opening a directory met while walking: never through a symlink.
pub(crate) const DIR_FLAGS: libc::c_int =
    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;

/// Flags for opening a file to read: never through a final symlink, and without blocking on a
/// FIFO (it is refused after `fstat`; the flag changes nothing for regular files).
pub(crate) const READ_FLAGS: libc::c_int =
    libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK;

/// Flags for creating a new file to write: it must not exist (not even as a symlink).
pub(crate) const CREATE_FLAGS: libc::c_int =
    libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;

/// `name` as a C string; a NUL byte is an `InvalidInput` error.
pub(crate) fn cstring(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "the name contains a NUL byte"))
}

fn raw(dir: Option<BorrowedFd<'_>>) -> RawFd {
    dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd())
}

/// Runs `f` again while it fails with `EINTR`.
fn retry<T: PartialEq + From<i8>>(mut f: impl FnMut() -> T) -> io::Result<T> {
    loop {
        let r = f();
        if r != T::from(-1) {
            return Ok(r);
        }
        let e = errno();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// `openat(dir, name, flags, mode)`; `dir` `None` is the current directory.
pub(crate) fn open_at(
    dir: Option<BorrowedFd<'_>>,
    name: &CStr,
    flags: libc::c_int,
    mode: u32,
) -> io::Result<OwnedFd> {
    // SAFETY: `name` is a valid NUL-terminated string and `dir` an open descriptor (or
    // AT_FDCWD); the mode is passed as the variadic `unsigned int` openat expects.
    let fd =
        retry(|| unsafe { libc::openat(raw(dir), name.as_ptr(), flags, mode as libc::c_uint) })?;
    // SAFETY: openat returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `mkdirat(dir, name, mode)` (the umask applies; callers set the mode afterwards).
pub(crate) fn mkdir_at(dir: BorrowedFd<'_>, name: &CStr, mode: u32) -> io::Result<()> {
    // SAFETY: valid descriptor and NUL-terminated name.
    retry(|| unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode as libc::mode_t) })?;
    Ok(())
}

/// `renameat(dir, from, dir, to)`: within one directory.
pub(crate) fn rename_at(dir: BorrowedFd<'_>, from: &CStr, to: &CStr) -> io::Result<()> {
    // SAFETY: valid descriptor and NUL-terminated names.
    retry(|| unsafe {
        libc::renameat(dir.as_raw_fd(), from.as_ptr(), dir.as_raw_fd(), to.as_ptr())
    })?;
    Ok(())
}

/// `unlinkat(dir, name, 0)`: removes a file or a symlink (never what it points to).
pub(crate) fn unlink_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    // SAFETY: valid descriptor and NUL-terminated name.
    retry(|| unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) })?;
    Ok(())
}

/// `unlinkat(dir, name, AT_REMOVEDIR)`: removes an empty directory.
pub(crate) fn rmdir_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    // SAFETY: valid descriptor and NUL-terminated name.
    retry(|| unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), libc::AT_REMOVEDIR) })?;
    Ok(())
}

/// `symlinkat(target, dir, name)`.
pub(crate) fn symlink_at(target: &CStr, dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    // SAFETY: valid descriptor and NUL-terminated strings.
    retry(|| unsafe { libc::symlinkat(target.as_ptr(), dir.as_raw_fd(), name.as_ptr()) })?;
    Ok(())
}

/// `readlinkat(dir, name)`: the target of a symlink (`EINVAL` when `name` is not one).
pub(crate) fn readlink_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<OsString> {
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: `buf` is valid for `buf.len()` bytes; readlinkat writes at most that many.
        let n = retry(|| unsafe {
            libc::readlinkat(
                dir.as_raw_fd(),
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        })?;
        let n = usize::try_from(n).map_err(|_| io::Error::other("readlinkat: bad length"))?;
        if n < buf.len() {
            buf.truncate(n);
            return Ok(OsString::from_vec(buf));
        }
        // Possibly cut short: try again with more room.
        let len = buf.len() * 2;
        buf.resize(len, 0);
    }
}

/// The type bits of a `stat`'s mode.
pub(crate) type Mode = libc::mode_t;

/// What `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)` says about `name`: its mode and size.
pub(crate) fn lstat_at(dir: Option<BorrowedFd<'_>>, name: &CStr) -> io::Result<(Mode, u64)> {
    fstatat(dir, name).map(|st| (st.st_mode, u64::try_from(st.st_size).unwrap_or(0)))
}

/// What `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)` says about `name`, in the fields of
/// [`crate::Stat`] (whose widths are the same on every system; `stat`'s are not).
#[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
pub(crate) fn stat_at(dir: Option<BorrowedFd<'_>>, name: &CStr) -> io::Result<crate::Stat> {
    let st = fstatat(dir, name)?;
    Ok(crate::Stat {
        mode: st.st_mode as u32,
        len: u64::try_from(st.st_size).unwrap_or(0),
        dev: st.st_dev as u64,
        ino: st.st_ino as u64,
        mtime: st.st_mtime as i64,
        mtime_nsec: st.st_mtime_nsec as i64,
        ctime: st.st_ctime as i64,
        ctime_nsec: st.st_ctime_nsec as i64,
    })
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`.
fn fstatat(dir: Option<BorrowedFd<'_>>, name: &CStr) -> io::Result<libc::stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `st` is valid for writing one `stat`; fstatat fills it on success.
    retry(|| unsafe {
        libc::fstatat(
            raw(dir),
            name.as_ptr(),
            st.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    // SAFETY: fstatat succeeded, so `st` is initialised.
    Ok(unsafe { st.assume_init() })
}

/// Whether a `stat` mode is of type `kind` (`S_IFREG`, `S_IFDIR`, `S_IFLNK`).
pub(crate) fn is_type(mode: Mode, kind: Mode) -> bool {
    mode & libc::S_IFMT == kind
}

/// `fchmod(fd, mode)`: the mode exactly, whatever the umask.
pub(crate) fn fchmod(fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
    // SAFETY: valid descriptor.
    retry(|| unsafe { libc::fchmod(fd.as_raw_fd(), mode as libc::mode_t) })?;
    Ok(())
}

/// `fsync(fd)`.
pub(crate) fn fsync(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: valid descriptor.
    retry(|| unsafe { libc::fsync(fd.as_raw_fd()) })?;
    Ok(())
}

/// The names in the directory `fd` (without `.` and `..`), in no particular order.
pub(crate) fn list(fd: BorrowedFd<'_>) -> io::Result<Vec<OsString>> {
    // fdopendir takes the descriptor over: give it a duplicate. The duplicate shares the
    // read position with `fd`, hence the rewinddir below.
    let dup = fd.try_clone_to_owned()?.into_raw_fd();
    // SAFETY: `dup` is an open directory descriptor we own; on success the DIR owns it.
    let dirp = unsafe { libc::fdopendir(dup) };
    if dirp.is_null() {
        let e = errno();
        // SAFETY: fdopendir failed, so `dup` is still ours to close.
        unsafe { libc::close(dup) };
        return Err(e);
    }
    struct Closer(*mut libc::DIR);
    impl Drop for Closer {
        fn drop(&mut self) {
            // SAFETY: the DIR came from fdopendir and is closed once, here.
            unsafe { libc::closedir(self.0) };
        }
    }
    let dirp = Closer(dirp);
    // SAFETY: `dirp.0` is an open DIR.
    unsafe { libc::rewinddir(dirp.0) };
    let mut names = Vec::new();
    loop {
        clear_errno();
        // SAFETY: `dirp.0` is an open DIR; the returned entry is valid until the next call.
        let entry = unsafe { libc::readdir(dirp.0) };
        if entry.is_null() {
            let e = errno();
            return match e.raw_os_error() {
                Some(0) | None => Ok(names),
                Some(_) => Err(e),
            };
        }
        // SAFETY: `d_name` of a returned entry is a NUL-terminated string.
        let name = unsafe { CStr::from_ptr((*entry).d_name.as_ptr()) }.to_bytes();
        if name != b"." && name != b".." {
            names.push(OsString::from_vec(name.to_vec()));
        }
    }
}

/// Sets `errno` to 0, so that a null `readdir` can be told apart from an error.
fn clear_errno() {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    // SAFETY: __errno_location returns this thread's errno.
    unsafe {
        *libc::__errno_location() = 0;
    }
    #[cfg(any(target_os = "macos", target_os = "ios", target_os = "freebsd"))]
    // SAFETY: __error returns this thread's errno.
    unsafe {
        *libc::__error() = 0;
    }
}
