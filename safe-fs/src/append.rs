//! Append-only files, such as logs: [`Dir::open_append`] opens one to append to — never
//! through a symlink, never a FIFO or device, created with an exact mode when missing — and
//! [`lock_exclusive`] holds an exclusive `flock(2)` on it while a record is appended, so that
//! writers in several processes take turns.
//!
//! The lock is `std::fs::File::lock`, which is `flock(LOCK_EX)` on Linux and the BSDs: it
//! belongs to the open file description, so two opens of the file (in one process or in two)
//! exclude each other, and it is released when the description is closed (a killed writer
//! never leaves it held).

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::dir::{Dir, check_regular, open_error};
use crate::error::{FsError, Result};
use crate::sys;

/// How many times an open that races with a removal or a creation is tried again.
const OPEN_ATTEMPTS: usize = 8;

impl Dir {
    /// Opens the regular file `name` to read and to append (`O_RDWR | O_APPEND`): every
    /// `write` goes to the end of the file, whoever else appends. A missing file is created
    /// with exactly `mode` (whatever the umask). Never through a symlink at `name` (an error
    /// saying so), and never a FIFO or device. Returns the file and whether this call created
    /// it — then the directory needs a [`Dir::sync`] for the new name to survive a crash.
    pub fn open_append(&self, name: &str, mode: u32) -> Result<(File, bool)> {
        let path = self.child(OsStr::new(name));
        check_name(name)
            .map_err(|reason| FsError::other(&path, "open", io::ErrorKind::InvalidInput, reason))?;
        let c = sys::cstring(OsStr::new(name)).map_err(|e| FsError::new(&path, "open", e))?;
        let base = libc::O_RDWR | libc::O_APPEND | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        let mut last = None;
        for _ in 0..OPEN_ATTEMPTS {
            match sys::open_at(
                Some(self.fd()),
                &c,
                base | libc::O_CREAT | libc::O_EXCL,
                mode & 0o7777,
            ) {
                Ok(fd) => {
                    if let Err(e) = sys::fchmod(fd.as_fd(), mode & 0o7777) {
                        let _ = sys::unlink_at(self.fd(), &c);
                        return Err(FsError::new(&path, "set the mode of", e));
                    }
                    return Ok((File::from(fd), true));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(FsError::new(&path, "create", e)),
            }
            // It exists: open it as it is (O_NONBLOCK so that a FIFO is refused, not waited
            // on; the flag changes nothing for a regular file).
            match sys::open_at(Some(self.fd()), &c, base | libc::O_NONBLOCK, 0) {
                Ok(fd) => {
                    let file = File::from(fd);
                    check_regular(&file, &path)?;
                    // A second name for the file may be outside the directory (a hard link
                    // to a host file, made in a root someone else controls): never append
                    // through one.
                    let links = std::os::unix::fs::MetadataExt::nlink(
                        &file
                            .metadata()
                            .map_err(|e| FsError::new(&path, "stat", e))?,
                    );
                    if links != 1 {
                        return Err(FsError::other(
                            &path,
                            "open",
                            io::ErrorKind::InvalidInput,
                            "the file has other hard links (it may be another file's): refusing to append to it",
                        ));
                    }
                    return Ok((file, false));
                }
                // Removed between the two opens: create it after all.
                Err(e) if e.kind() == io::ErrorKind::NotFound => last = Some(e),
                Err(e) => return Err(open_error(Some(self.fd()), &c, path, e)),
            }
        }
        Err(FsError::new(
            path,
            "open",
            last.unwrap_or_else(|| io::Error::from(io::ErrorKind::NotFound)),
        ))
    }
}

/// Why `name` is not a single file name in a directory, if it is not.
fn check_name(name: &str) -> std::result::Result<(), &'static str> {
    let bytes = OsStr::new(name).as_bytes();
    if bytes.is_empty() {
        Err("empty file name")
    } else if bytes.contains(&b'/') {
        Err("a file name may not contain '/'")
    } else if bytes == b"." || bytes == b".." {
        Err("a file name may not be '.' or '..'")
    } else {
        Ok(())
    }
}

/// An exclusive `flock(2)` on a file, held until this guard is dropped (or the file closed).
#[derive(Debug)]
#[must_use = "the lock is released when the guard is dropped"]
pub struct FileLock<'f> {
    file: &'f File,
}

/// Takes an exclusive `flock(2)` on `file` (shown as `path` in errors), waiting for whoever
/// holds it. Each open of a file is a separate holder: a second open in the same process waits
/// like another process would.
pub fn lock_exclusive<'f>(file: &'f File, path: &Path) -> Result<FileLock<'f>> {
    loop {
        match file.lock() {
            Ok(()) => return Ok(FileLock { file }),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(FsError::new(path, "lock", e)),
        }
    }
}

impl Drop for FileLock<'_> {
    fn drop(&mut self) {
        // Failing to unlock leaves the lock to be released when the file is closed.
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn a_hard_linked_file_is_never_appended_to() {
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("host-file");
        fs::write(&outside, "host\n").unwrap();
        fs::create_dir(t.path().join("root")).unwrap();
        fs::hard_link(&outside, t.path().join("root/log")).unwrap();
        let d = Dir::open(&t.path().join("root")).unwrap();
        let e = d.open_append("log", 0o640).unwrap_err().to_string();
        assert!(e.contains("other hard links"), "{e}");
        assert_eq!(fs::read_to_string(&outside).unwrap(), "host\n");
    }
    use std::io::Write;
    use std::os::unix::fs::{PermissionsExt, symlink};
    use std::sync::mpsc;
    use std::time::Duration;

    fn dir() -> (tempfile::TempDir, Dir) {
        let t = tempfile::tempdir().unwrap();
        let d = Dir::open(t.path()).unwrap();
        (t, d)
    }

    #[test]
    fn open_append_creates_with_the_exact_mode_then_appends() {
        let (t, d) = dir();
        let (mut f, created) = d.open_append("log", 0o640).unwrap();
        assert!(created);
        f.write_all(b"one\n").unwrap();
        let mode = fs::metadata(t.path().join("log"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o640);
        let (mut g, created) = d.open_append("log", 0o600).unwrap();
        assert!(!created);
        // Both handles append at the end, whatever each has written.
        g.write_all(b"two\n").unwrap();
        f.write_all(b"three\n").unwrap();
        assert_eq!(
            fs::read(t.path().join("log")).unwrap(),
            b"one\ntwo\nthree\n"
        );
        // The mode of an existing file is left alone.
        let mode = fs::metadata(t.path().join("log"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o640);
    }

    #[test]
    #[allow(unsafe_code)] // mkfifo(3)
    fn open_append_refuses_symlinks_directories_fifos_and_bad_names() {
        let (t, d) = dir();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("target"), b"keep").unwrap();
        symlink(outside.path().join("target"), t.path().join("link")).unwrap();
        let err = d.open_append("link", 0o640).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(fs::read(outside.path().join("target")).unwrap(), b"keep");
        // A dangling symlink is not created through either.
        symlink(outside.path().join("planted"), t.path().join("dangling")).unwrap();
        assert!(d.open_append("dangling", 0o640).is_err());
        assert!(!outside.path().join("planted").exists());

        fs::create_dir(t.path().join("sub")).unwrap();
        assert!(d.open_append("sub", 0o640).is_err());

        let fifo = std::ffi::CString::new(t.path().join("fifo").as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let err = d.open_append("fifo", 0o640).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");

        for bad in ["", "a/b", ".", ".."] {
            let err = d.open_append(bad, 0o640).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
    }

    #[test]
    fn lock_exclusive_excludes_a_second_open_until_dropped() {
        let (t, d) = dir();
        let (first, _) = d.open_append("log", 0o640).unwrap();
        let (second, _) = d.open_append("log", 0o640).unwrap();
        let path = t.path().join("log");
        let guard = lock_exclusive(&first, &path).unwrap();
        let (tx, rx) = mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let _g = lock_exclusive(&second, &path).unwrap();
            tx.send(()).unwrap();
        });
        // The second open waits while the first holds the lock...
        assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
        drop(guard);
        // ...and gets it once the guard is dropped.
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
        waiter.join().unwrap();
        // Released again: the first can take it once more.
        drop(lock_exclusive(&first, &t.path().join("log")).unwrap());
    }
}
