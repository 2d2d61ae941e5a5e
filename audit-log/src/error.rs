//! [`Error`]: every way appending to, reading or verifying a log fails. Each message starts
//! with the log's path, then says what is wrong (and, for a verification failure, on which
//! line: the first bad one).

use std::path::PathBuf;

use safe_fs::FsError;

/// Why appending to, reading or verifying an audit log failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Opening, locking, reading, writing or syncing the file failed (the message names the
    /// path and the operation).
    #[error(transparent)]
    Fs(#[from] FsError),

    /// A line of more than [`MAX_LINE`](crate::MAX_LINE) bytes.
    #[error("{}: line {line} is longer than {max} bytes", path.display())]
    LineTooLong {
        path: PathBuf,
        line: u64,
        max: usize,
    },

    /// The last line of the log, read back before appending, is longer than
    /// [`MAX_LINE`](crate::MAX_LINE) bytes.
    #[error(
        "{}: the last line is longer than {max} bytes: not a line this log writes",
        path.display()
    )]
    LastLineTooLong { path: PathBuf, max: usize },

    /// A line that is not a JSON object (a torn write, unless a `chain-restarted` record
    /// follows it).
    #[error("{}: line {line} is not a JSON object", path.display())]
    NotAnObject { path: PathBuf, line: u64 },

    /// A record without one of the fields every record has.
    #[error("{}: line {line}: missing field {field}", path.display())]
    MissingField {
        path: PathBuf,
        line: u64,
        field: &'static str,
    },

    /// A record field of the wrong type or form.
    #[error("{}: line {line}: field {field} is not {expected}", path.display())]
    BadField {
        path: PathBuf,
        line: u64,
        field: &'static str,
        expected: &'static str,
    },

    /// `prev` is not the SHA-256 of the line before (64 zeros on line 1): a line was changed,
    /// removed, inserted or moved.
    #[error(
        "{}: line {line}: broken chain: prev is {found}, expected {expected} ({})",
        path.display(),
        if *line == 1 { "a log starts from 64 zeros".to_string() } else { format!("the SHA-256 of line {}", line - 1) }
    )]
    BrokenLink {
        path: PathBuf,
        line: u64,
        expected: String,
        found: String,
    },

    /// The record's own `hash` does not match its bytes: the line was altered.
    #[error(
        "{}: line {line}: the line was altered: hash is {found}, its bytes hash to {expected}",
        path.display()
    )]
    BadHash {
        path: PathBuf,
        line: u64,
        expected: String,
        found: String,
    },

    /// The record's `hash` field is not written last, as `,"hash":"<hex>"}`.
    #[error(
        "{}: line {line}: the line was altered: it does not end with its hash field",
        path.display()
    )]
    HashNotLast { path: PathBuf, line: u64 },

    /// A `chain-restarted` record that does not name the line just before it as the torn one.
    #[error("{}: line {line}: {reason}", path.display())]
    BadRestart {
        path: PathBuf,
        line: u64,
        reason: String,
    },

    /// The log ends in a torn line: a write cut short (by a crash or a kill), or bytes that
    /// are not a record. The next append repairs it; until then the log does not verify.
    #[error(
        "{}: line {line} is torn (a write cut short): {}",
        path.display(),
        if *line <= 1 { "there is no line before it".to_string() } else { format!("the chain up to line {} verifies", line - 1) }
    )]
    TornLastLine { path: PathBuf, line: u64 },

    /// An event that cannot be recorded: a reserved field name, fields that are not a JSON
    /// object, the reserved event `chain-restarted`, or a record longer than
    /// [`MAX_LINE`](crate::MAX_LINE).
    #[error("{}: cannot record event {event:?}: {reason}", path.display())]
    BadEvent {
        path: PathBuf,
        event: String,
        reason: String,
    },
}

impl Error {
    /// The 1-based line a verification or read error is about.
    pub fn line(&self) -> Option<u64> {
        match self {
            Error::LineTooLong { line, .. }
            | Error::NotAnObject { line, .. }
            | Error::MissingField { line, .. }
            | Error::BadField { line, .. }
            | Error::BrokenLink { line, .. }
            | Error::BadHash { line, .. }
            | Error::HashNotLast { line, .. }
            | Error::BadRestart { line, .. }
            | Error::TornLastLine { line, .. } => Some(*line),
            Error::Fs(_) | Error::LastLineTooLong { .. } | Error::BadEvent { .. } => None,
        }
    }
}
