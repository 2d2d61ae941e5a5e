//! `safe-fs` is the workspace's one filesystem layer: every crate that writes a file, fsyncs a
//! directory, reads a bounded file or resolves a path inside a root filesystem does it here,
//! and nowhere else (docs/crash-safety.md §1, docs/threats.md threat 10).
//!
//! - [`FsError`] ([`error`]): every failure names the path and what was being done —
//!   `"/r/etc/opkg.conf: cannot read: Permission denied (os error 13)"`.
//! - [`write_atomic`], [`write_atomic_with`], [`TempFile`] ([`atomic`], [`dir`]): replace a
//!   file atomically — a hidden temporary file ([`temp_name`]) in the same directory, created
//!   exclusively and never through a symlink, written, given its mode exactly, fsynced,
//!   renamed, the directory fsynced ([`WriteOptions`]); [`write_new`] for a file that must
//!   not exist yet; [`sync_dir`]; [`remove_file_durably`].
//! - [`read_bounded`] ([`read`]): at most N bytes of a regular file, never through a final
//!   symlink, never blocking on a FIFO.
//! - [`Root`] and [`Dir`] ([`root`], [`dir`]): a root directory opened once, and paths below it
//!   resolved as a chroot would — symlinks followed inside the root, `..` never above it —
//!   walking with `openat(O_NOFOLLOW)` from descriptor to descriptor so that a concurrent
//!   swap cannot redirect a read or a write outside. [`Root::confine`] checks a configured
//!   path lexically.
//! - [`Dir::open_append`] and [`lock_exclusive`] ([`append`]): an append-only file (a log),
//!   opened to append, never through a symlink, created with an exact mode; an exclusive
//!   `flock(2)` held while a record is written.
//!
//! - [`scratch_file`] ([`scratch`]): an unnamed temporary file for data a process would
//!   otherwise hold in memory, and [`FileAt`] to read or write it from a position.
//!
//! The crate never prints and never panics on I/O; it is Unix-only (it is built on the `*at`
//! system calls).

pub mod append;
pub mod atomic;
pub mod dir;
pub mod error;
pub mod read;
pub mod root;
pub mod scratch;
// The system calls themselves: the crate's only unsafe code.
#[allow(unsafe_code)]
mod sys;

pub use append::{FileLock, lock_exclusive};
pub use atomic::{
    WriteOptions, is_temp_name, random_hex, remove_file_durably, sync_dir, temp_name, write_atomic,
    write_atomic_with, write_new,
};
pub use dir::{Dir, EntryKind, Stat, TempFile};
pub use error::{FsError, Result};
pub use read::{Bounded, open_bounded, open_bounded_existing, read_bounded, same_contents};
pub use root::{ConfineError, MAX_SYMLINK_HOPS, Root};
pub use scratch::{FileAt, scratch_file};
