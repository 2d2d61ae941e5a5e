//! [`FsError`]: an I/O error that names the path and the operation.

use std::io;
use std::path::{Path, PathBuf};

/// An I/O error with the path it concerns and what was being done.
///
/// Displayed as `"{path}: cannot {op}: {error}"`, for example
/// `/r/etc/opkg.conf: cannot read: Permission denied (os error 13)`. The underlying
/// [`io::Error`] is part of that message and is therefore **not** also returned by
/// [`std::error::Error::source`] (which is `None`): an error chain printer such as `anyhow`'s
/// `{:#}` would otherwise print it twice. [`FsError::io_error`] gives it to code that needs it.
#[derive(Debug, thiserror::Error)]
#[error("{}: cannot {op}: {error}", path.display())]
pub struct FsError {
    /// The file or directory concerned (as the caller named it, or as resolved inside a
    /// [`Root`](crate::Root)).
    pub path: PathBuf,
    /// What was being done, as a verb phrase: `"open"`, `"read"`, `"write"`, `"rename into
    /// place"`, …
    pub op: &'static str,
    /// The kind of the underlying error.
    pub kind: io::ErrorKind,
    error: io::Error,
}

impl FsError {
    /// An error about `path` while doing `op`.
    pub fn new(path: impl Into<PathBuf>, op: &'static str, e: io::Error) -> FsError {
        FsError {
            path: path.into(),
            op,
            kind: e.kind(),
            error: e,
        }
    }

    /// An error of `kind` with a message of our own (`"larger than 4096 bytes"`).
    pub(crate) fn other(
        path: impl Into<PathBuf>,
        op: &'static str,
        kind: io::ErrorKind,
        message: impl Into<String>,
    ) -> FsError {
        FsError::new(path, op, io::Error::new(kind, message.into()))
    }

    /// The kind of the underlying error.
    pub fn kind(&self) -> io::ErrorKind {
        self.kind
    }

    /// True when the path (or a directory on the way to it) does not exist.
    pub fn is_not_found(&self) -> bool {
        self.kind == io::ErrorKind::NotFound
    }

    /// The underlying error.
    pub fn io_error(&self) -> &io::Error {
        &self.error
    }

    /// The path concerned.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The underlying error itself, without the path and operation: for a caller whose own
    /// error already names the path. Keeps the kind, the message and any OS error code.
    pub fn into_io_error(self) -> io::Error {
        self.error
    }
}

/// Into an [`io::Error`] of the same kind whose message is the whole [`FsError`] message, for
/// code paths that still deal in `io::Error`.
impl From<FsError> for io::Error {
    fn from(e: FsError) -> io::Error {
        io::Error::new(e.kind, e.to_string())
    }
}

/// The result of this crate's operations.
pub type Result<T> = std::result::Result<T, FsError>;

/// The last OS error (`errno`).
pub(crate) fn errno() -> io::Error {
    io::Error::last_os_error()
}

/// Whether `e` is the OS error `code`.
pub(crate) fn is_errno(e: &io::Error, code: i32) -> bool {
    e.raw_os_error() == Some(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn display_names_path_operation_and_cause_once() {
        let e = FsError::new(
            "/r/etc/opkg.conf",
            "read",
            io::Error::from_raw_os_error(libc::EACCES),
        );
        assert_eq!(
            e.to_string(),
            "/r/etc/opkg.conf: cannot read: Permission denied (os error 13)"
        );
        assert!(e.source().is_none());
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        assert!(!e.is_not_found());
        assert_eq!(e.io_error().raw_os_error(), Some(libc::EACCES));
        let io = e.into_io_error();
        assert_eq!(io.raw_os_error(), Some(libc::EACCES));
        assert_eq!(io.to_string(), "Permission denied (os error 13)");
    }

    #[test]
    fn not_found_is_recognised_and_survives_conversion() {
        let e = FsError::new("/x", "open", io::Error::from_raw_os_error(libc::ENOENT));
        assert!(e.is_not_found());
        let io: io::Error = e.into();
        assert_eq!(io.kind(), io::ErrorKind::NotFound);
        assert!(io.to_string().starts_with("/x: cannot open: "), "{io}");
    }
}
