//! Bounded reads of regular files, never through a final symlink.

use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::path::Path;

use crate::dir::{check_regular, open_error};
use crate::error::{FsError, Result};
use crate::sys;

/// Reads at most `max` bytes of the regular file at `path`; `Ok(None)` when it does not exist.
///
/// A final symlink is not followed (an error saying so), and anything but a regular file is
/// refused without blocking (a FIFO is opened non-blocking, then refused). A file larger than
/// `max` is an error of kind `FileTooLarge`: "`<path>`: cannot read: larger than `max`
/// bytes". The directories on the way are the caller's own path (followed like any path); to
/// stay inside a root use [`Root::read_file`](crate::Root::read_file).
pub fn read_bounded(path: &Path, max: u64) -> Result<Option<Vec<u8>>> {
    open_for_reading(path)?
        .map(|fd| read_fd(fd, path, max))
        .transpose()
}

/// `path` opened for reading without following a final symlink and without blocking;
/// `Ok(None)` when it does not exist.
fn open_for_reading(path: &Path) -> Result<Option<OwnedFd>> {
    let c = sys::cstring(path.as_os_str()).map_err(|e| FsError::new(path, "open", e))?;
    match sys::open_at(None, &c, sys::READ_FLAGS, 0) {
        Ok(fd) => Ok(Some(fd)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(open_error(None, &c, path.to_path_buf(), e)),
    }
}

/// Opens the regular file at `path` to be read as a stream, with what [`read_bounded`]
/// checks (no final symlink, nothing but a regular file, no blocking) and a reader that fails
/// with `FileTooLarge` past `max` bytes; `Ok(None)` when it does not exist. For a file too
/// large to hold whole (a feed's `Packages`).
pub fn open_bounded(path: &Path, max: u64) -> Result<Option<Bounded>> {
    open_for_reading(path)?
        .map(|fd| {
            let file = std::fs::File::from(fd);
            check_regular(&file, path)?;
            Ok(Bounded {
                file,
                left: max,
                max,
            })
        })
        .transpose()
}

/// [`open_bounded`] of a file that must be there: its absence is an error of kind `NotFound`
/// ("`<path>`: cannot open: No such file or directory"), as any other failure to open it.
pub fn open_bounded_existing(path: &Path, max: u64) -> Result<Bounded> {
    open_bounded(path, max)?
        .ok_or_else(|| FsError::new(path, "open", io::Error::from_raw_os_error(libc::ENOENT)))
}

/// A file opened by [`open_bounded`]: reads fail once more than its bound was read.
pub struct Bounded {
    file: std::fs::File,
    left: u64,
    max: u64,
}

impl Bounded {
    /// The file opened (for its metadata: a caller may refuse a file already larger than the
    /// bound before reading any of it).
    pub fn file(&self) -> &std::fs::File {
        &self.file
    }
}

impl Read for Bounded {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // One byte past the bound is asked for, to notice a file larger than it.
        let want = buf
            .len()
            .min(usize::try_from(self.left.saturating_add(1)).unwrap_or(usize::MAX));
        let n = self.file.read(&mut buf[..want])?;
        if n as u64 > self.left {
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                format!("larger than {} bytes", self.max),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Whether `file`, read from where it is, holds exactly `bytes`: its length is compared
/// first, then its contents a block at a time, so a file of megabytes (a feed's stored index)
/// is never whole in memory beside the bytes it is compared with.
pub fn same_contents(file: &mut std::fs::File, bytes: &[u8]) -> io::Result<bool> {
    if file.metadata()?.len() != bytes.len() as u64 {
        return Ok(false);
    }
    let mut block = vec![0u8; 64 * 1024];
    let mut rest = bytes;
    loop {
        let n = match file.read(&mut block) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(rest.is_empty());
        }
        if n > rest.len() || block[..n] != rest[..n] {
            return Ok(false);
        }
        rest = &rest[n..];
    }
}

/// Reads the file `fd` (shown as `path`), which must be a regular file of at most `max`
/// bytes.
pub(crate) fn read_fd(fd: OwnedFd, path: &Path, max: u64) -> Result<Vec<u8>> {
    let file = std::fs::File::from(fd);
    let len = check_regular(&file, path)?;
    let too_large = || {
        FsError::other(
            path,
            "read",
            io::ErrorKind::FileTooLarge,
            format!("larger than {max} bytes"),
        )
    };
    if len > max {
        return Err(too_large());
    }
    // The file may grow after the fstat: read one byte more than allowed to notice.
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| FsError::new(path, "read", e))?;
    if bytes.len() as u64 > max {
        return Err(too_large());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    #[test]
    fn same_contents_compares_length_then_every_block() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let bytes: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let open = || std::fs::File::open(&path).unwrap();
        assert!(same_contents(&mut open(), &bytes).unwrap());
        assert!(!same_contents(&mut open(), &bytes[..bytes.len() - 1]).unwrap());
        let mut other = bytes.clone();
        // A difference in the last block, past the first 64 KiB read.
        other[199_999] ^= 1;
        assert!(!same_contents(&mut open(), &other).unwrap());
        std::fs::write(&path, b"").unwrap();
        assert!(same_contents(&mut open(), b"").unwrap());
    }

    use super::*;
    use std::ffi::CString;
    use std::fs;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::symlink;

    #[test]
    fn read_bounded_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, b"12345").unwrap();
        assert_eq!(read_bounded(&path, 5).unwrap().unwrap(), b"12345");
        assert_eq!(read_bounded(&path, u64::MAX).unwrap().unwrap(), b"12345");
        let err = read_bounded(&path, 4).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::FileTooLarge);
        assert_eq!(
            err.to_string(),
            format!("{}: cannot read: larger than 4 bytes", path.display())
        );
        fs::write(&path, b"").unwrap();
        assert_eq!(read_bounded(&path, 0).unwrap().unwrap(), b"");
        assert!(read_bounded(&dir.path().join("none"), 4).unwrap().is_none());
    }

    #[test]
    #[allow(unsafe_code)] // mkfifo(3)
    fn read_bounded_refuses_directories_and_fifos_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_bounded(dir.path(), 4).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        let fifo = dir.path().join("fifo");
        let c = CString::new(fifo.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // With no writer, a blocking open would hang this test.
        let err = read_bounded(&fifo, 4).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }

    #[test]
    fn open_bounded_streams_within_its_bound() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, b"12345").unwrap();
        let mut out = Vec::new();
        open_bounded(&path, 5)
            .unwrap()
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, b"12345");
        let err = open_bounded(&path, 4)
            .unwrap()
            .unwrap()
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::FileTooLarge);
        assert!(open_bounded(&dir.path().join("none"), 4).unwrap().is_none());
        let absent = open_bounded_existing(&dir.path().join("none"), 4)
            .err()
            .expect("absent is an error");
        assert!(absent.is_not_found());
        assert!(
            absent
                .to_string()
                .contains("none: cannot open: No such file"),
            "{absent}"
        );
        assert!(open_bounded_existing(&path, 5).is_ok());
        let link = dir.path().join("link");
        symlink(&path, &link).unwrap();
        assert!(open_bounded(&link, 100).is_err());
        assert!(open_bounded(dir.path(), 100).is_err());
    }

    #[test]
    fn final_symlink_to_host_file_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let secret = outside.path().join("secret");
        fs::write(&secret, b"host secret").unwrap();
        let link = dir.path().join("link");
        symlink(&secret, &link).unwrap();
        let err = read_bounded(&link, 100).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        // A dangling link is not "absent" either: it is refused the same way.
        let dangling = dir.path().join("dangling");
        symlink(outside.path().join("none"), &dangling).unwrap();
        assert!(read_bounded(&dangling, 100).is_err());
    }

    #[test]
    fn a_file_below_a_file_is_an_error_not_absent() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("f"), b"").unwrap();
        let err = read_bounded(&dir.path().join("f/x"), 4).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotADirectory);
    }
}
