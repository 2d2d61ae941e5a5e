//! `audit-log` owns the workspace's audit trail (issue 12): the file format of the log, the
//! one way to append to it, to check it and to read it back. Every security decision a tool
//! makes (a package installed, a key trusted, a signature check turned off) is one JSON
//! record on one line of an append-only file, and each record carries the SHA-256 of the line
//! before it, so the file is a hash chain: changing, removing, inserting or reordering a line
//! breaks it where it was done. The format is in docs/on-disk-state.md §5.
//!
//! ```text
//! {"prev":"<64 hex>","time":"2026-12-05T00:01:02Z","tool":"prokit","version":"0.1.0","user":"root","host":"box","pid":4242,"event":"package-installed","name":"foo","package_version":"1.0-r1","hash":"<64 hex>"}
//! ```
//!
//! - Fields, always in this order: `prev` (the SHA-256 of the previous line's bytes, without
//!   its newline; 64 zeros on the first line), `time` (RFC 3339 UTC), `tool`, `version`,
//!   `user` (the process's user), `host`, `pid`, `event`, the event's own fields sorted by
//!   name, and `hash`: the SHA-256 of the line's bytes before `,"hash":`. `prev` comes first
//!   so that even a line cut short shows its link; `hash` seals the line itself, so that the
//!   last line — which no later `prev` covers — cannot be altered unnoticed either.
//! - [`Log`]: [`Log::open`] / [`Log::open_in_root`] (created 0640, parents 0755, never
//!   through a final symlink — and inside a root, never out of it), [`Log::append`] (one
//!   `write(2)` with `O_APPEND` under an exclusive `flock(2)`; the end of the file is read
//!   again only when another writer appended since), [`Log::finish`] (the one fsync of a
//!   command). [`Log::disabled`] records nothing.
//! - Crash safety: a line cut short (a kill, a crash) is found by the next append, which ends
//!   it with a newline and writes a `chain-restarted` record (`reason`, `torn_line`, `prev`
//!   = the SHA-256 of the torn line) before its own, all in the same write.
//! - [`verify`] / [`verify_from`]: the chain checked line by line; the first failure names
//!   its line ([`Error::line`]). [`read`] / [`read_from`], [`Filter`], [`human`]: records for
//!   display. [`url_without_credentials`]: URLs fit for the log.
//!
//! The crate never prints.

mod error;
mod log;
mod read;
mod record;
mod redact;
mod time;
mod verify;

pub use error::Error;
pub use log::{LOG_MODE, Log};
pub use read::{Filter, Listing, read, read_from};
pub use record::{
    CHAIN_RESTARTED, MAX_LINE, RESERVED_FIELDS, Record, ZERO_HASH, glob_match, human,
};
pub use redact::url_without_credentials;
pub use time::{TimeError, format_rfc3339, parse_rfc3339, parse_since};
pub use verify::{Report, verify, verify_from};
