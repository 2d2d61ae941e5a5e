//! `archman check`: verifies a published feed directory the way a demanding client would, and
//! reports every inconsistency as a [`Finding`] instead of stopping at the first.
//!
//! This module owns the feed-level rules, nothing below them: that the index files agree
//! (`Packages`, `Packages.gz`, `Packages.manifest`); that `Packages.sig` and `Release.sig`
//! verify with the trusted key or key directory; that `Release` lists the index files with
//! their sizes and SHA-256 and has not expired; that every stanza is complete and its file
//! lies inside the feed with the indexed `Size` and `SHA256sum`; that no stanza is listed twice
//! and no package file lies around unindexed; and that every `Depends`/`Pre-Depends` can be
//! satisfied inside the feed. An `.ipk` in the `ar` container is a warning: OpenWrt's opkg
//! (opkg-lede) cannot install it. Formats, signatures, versions and relations come from `feeds`;
//! this module only compares. It never prints: the binary prints the [`Report`].
//!
//! The analysis (`checks`, behind [`check_feed`]) produces a [`Report`]; rendering it, as text
//! (`Display`) or as JSON ([`Report::to_json`]), is the report's own business (`report`).

use std::io;
use std::path::{Path, PathBuf};

use feeds::limits::Limits;
use feeds::usign;

mod checks;
mod report;

pub use checks::check_feed;
pub use report::{Finding, FindingKind, Report, Severity};

/// Where the trusted public keys come from.
#[derive(Debug, Clone, Copy)]
pub enum Trust<'a> {
    /// One public key file (`-p`).
    Key(&'a Path),
    /// A directory of keys named by fingerprint (`-P`, usign and opkg semantics).
    Dir(&'a Path),
}

/// What to check against.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions<'a> {
    /// The key(s) the signatures must verify with; `None` leaves them unchecked (a warning).
    pub trust: Option<Trust<'a>>,
    /// Package names taken as installed (satisfying any version constraint): what the feed's
    /// packages need from outside it, such as the base system.
    pub assume_installed: Vec<String>,
    /// Bounds on reading index files.
    pub limits: Limits,
    /// "Now" in seconds since the epoch for `Valid-Until`; `None` means the system clock.
    pub now: Option<i64>,
}

/// The check could not even start.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("{}: {source}", path.display())]
    Dir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error("{}: no Packages or Packages.gz (not a feed?)", .0.display())]
    NoIndex(PathBuf),
    #[error("{}: key directory is not a directory", .0.display())]
    KeyDir(PathBuf),
    #[error(transparent)]
    Key(#[from] usign::Error),
}
