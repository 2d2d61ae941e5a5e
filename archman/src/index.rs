//! `archman index`: scan a feed tree, read every package once (in parallel, or not at all when
//! the cache knows it), and publish `Packages`, `Packages.gz`, `Release` and their signatures
//! atomically.
//!
//! Publishing writes every file to a temporary name in the feed directory, records the
//! pending renames in a journal, then renames (`Release.sig` last) and removes the journal. A
//! run killed mid-way leaves either the old feed, or a journal that the next run rolls forward
//! before doing anything else; a reader never sees a half-written file.
//!
//! One run at a time: every run holds an exclusive lock on `FEED/.archman-lock` ([`LOCK`])
//! from before it looks at the journal until its cache is written, and another on the cache
//! (`<cache>.lock`). A second run waits for the first (saying so after a second), or with
//! [`IndexOptions::wait`] off fails at once ([`IndexError::Locked`]). Temporary names carry a
//! per-run tag (`.archman-tmp.<pid>-<random>.<name>`), named in the journal, so even a run
//! that does not take the lock (an older archman) never renames or deletes the files of a run
//! in progress by name; leftovers are removed only under the lock.
//!
//! Every stanza published is one archman built from bytes it read in this feed: in this run,
//! or in an earlier run, remembered in the authenticated cache kept outside the feed (see
//! [`crate::cache`]). Nothing found in the feed directory besides the packages is taken on
//! trust: a published `Packages.gz` is reused only when it decompresses to exactly the new
//! `Packages`, and a published `Packages.sig` only when it verifies over it.
//!
//! Each new `Release` is dated strictly later than the one it replaces, because clients
//! (prokit) refuse a `Date` older than the last one they accepted, and an equal `Date` on
//! other contents, as a replay. A `Date` from the clock that is not past the published one
//! (two publishes in one second) is moved to one second after it, with a warning; a fixed
//! `Date` (`SOURCE_DATE_EPOCH`) is never moved: one that is not later is refused, as is a
//! clock more than [`MAX_DATE_AHEAD`] seconds behind the published `Date`, unless the caller
//! allows the rollback. [`next_release_date`] holds the rule.
//!
//! With `--profile openwrt`, every `ar` `.ipk` is reported on every run: OpenWrt's opkg
//! (opkg-lede) reads only the gzipped-tar container (see [`AR_IPK_WARNING`]).

pub(crate) mod body;
mod debian;
mod key;

use body::Body;
pub use debian::DebianLayout;

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use feeds::index as findex;
use feeds::package::{Container, ReadOptions, read_package};
use feeds::release::{FileHash, Release, format_date};
use feeds::usign::{SecretKey, Signature};
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::cache::{self, Cache, FileKey};
use crate::spill::Spill;
use key::PackedKey;

/// Which files the index consists of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// `Packages` with every field, sorted by (Package, Version, Architecture, Filename).
    Full,
    /// OpenWrt's build: `Packages.manifest` with every field in path order, `Packages` with
    /// the maintainer-only fields stripped and the usign padding rule; `kernel_*`/`libc_*`
    /// files skipped; only `*.ipk`.
    OpenWrt,
}

/// Whether and where the cache lives (see [`crate::cache`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheMode {
    /// A cache authenticated by the per-host key under `home` ([`cache::key_path`]), at
    /// `path`, or by default at [`cache::default_path`] under `home`. Without a `home` (see
    /// [`cache::cache_home`]), or when the key cannot be used, the run warns and reads every
    /// package.
    On {
        home: Option<PathBuf>,
        path: Option<PathBuf>,
    },
    /// No cache: read every package.
    Off,
}

/// Options of one index run.
#[derive(Debug, Clone)]
pub struct IndexOptions {
    pub key: Option<PathBuf>,
    /// Whether `InRelease` and `Release.gpg` (OpenPGP, for apt) are written beside
    /// `Release.sig` when signing (docs/formats.md §6).
    pub openpgp: OpenPgpMode,
    /// `--layout debian`: publish `dists/<suite>/…` instead of the flat index (None: flat).
    pub debian: Option<DebianLayout>,
    /// The passphrase of a protected `key` (`--passphrase-file`); an unprotected key ignores it.
    pub key_passphrase: Option<Vec<u8>>,
    pub profile: Profile,
    pub md5: bool,
    /// `Valid-Until` = `Date` + this many seconds.
    pub valid_for: Option<i64>,
    pub origin: Option<String>,
    pub jobs: Option<usize>,
    pub cache: CacheMode,
    pub skip_bad: bool,
    /// `Date` of the Release (seconds since the epoch), as requested; see [`DateSource`].
    pub date: i64,
    /// Where `date` comes from, which decides what happens when it is not later than the
    /// published Release's `Date`.
    pub date_source: DateSource,
    /// Publish even a Release whose `Date` is not later than the published one's (clients
    /// that have the published Release refuse it until a later one comes).
    pub allow_date_rollback: bool,
    /// Rewrite Release (new Date, Valid-Until) even when the index is unchanged.
    pub refresh: bool,
    /// When another run holds the feed (or cache) lock: wait for it (true), or fail at once
    /// with [`IndexError::Locked`].
    pub wait: bool,
    /// Developer signatures on the packages (`<file>.sig`): whether and against what they
    /// are checked.
    pub developer: DeveloperPolicy,
    /// Bytes of stanza text held in memory; the rest goes to a file without a name
    /// (crate::spill).
    pub stanza_memory: usize,
}

/// When `archman index --key` also signs for apt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OpenPgpMode {
    /// When the feed holds a `.deb` (apt reads it).
    #[default]
    Auto,
    /// Always (`--openpgp`).
    Always,
    /// Never (`--no-openpgp`).
    Never,
}

/// `archman index --developer-signatures`: what is done with developer signatures
/// (docs/trust-model.md §9).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DeveloperMode {
    /// Not looked at; no developer fields are published.
    #[default]
    Off,
    /// A package with `<file>.sig` must verify; one without is published unsigned.
    Check,
    /// Every package must carry a signature that verifies.
    Require,
}

/// Developer signatures and the keyring they are checked against.
#[derive(Debug, Clone, Default)]
pub struct DeveloperPolicy {
    pub mode: DeveloperMode,
    /// The keyring whose developer keys count (required unless `mode` is `Off`).
    pub keyring: Option<keyring_pkg::Keyring>,
    /// The time keys and the keyring are judged at (seconds since the epoch).
    pub now: i64,
}

/// Where the requested Release `Date` comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateSource {
    /// Fixed by the caller (`SOURCE_DATE_EPOCH`): used exactly, never moved.
    Fixed,
    /// The clock: moved past the published Release's `Date` when it is not later.
    Clock,
}

/// How far ahead of the clock a `Date` may be moved (seconds): half the clock skew prokit
/// tolerates (`prokit::feed::MAX_CLOCK_SKEW`, 600 s), leaving the rest for clients' clocks. A
/// published `Date` further ahead means a wrong clock here or where it was published.
pub const MAX_DATE_AHEAD: i64 = 300;

/// The `Date` a new Release gets, as decided by [`next_release_date`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextDate {
    /// The requested `Date`: later than the published Release's, or no Release is published,
    /// or the new Release is the published one byte for byte.
    AsRequested(i64),
    /// The clock is not past the published `Date`: moved to one second after it.
    Moved { date: i64, published: i64 },
    /// Not later than the published `Date`, and published anyway (the rollback was allowed).
    RolledBack { date: i64, published: i64 },
}

impl NextDate {
    /// The `Date` to write.
    pub fn date(self) -> i64 {
        match self {
            NextDate::AsRequested(d) => d,
            NextDate::Moved { date, .. } | NextDate::RolledBack { date, .. } => date,
        }
    }
}

/// Why a new Release would be refused by clients that have the published one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DateConflict {
    /// A fixed `Date` older than the published one.
    #[error(
        "the new Release's Date {} (SOURCE_DATE_EPOCH) is older than the published Release's Date {}: clients that have the published Release would refuse the new one as a rollback",
        format_date(*requested),
        format_date(*published)
    )]
    Older { requested: i64, published: i64 },
    /// A fixed `Date` equal to the published one, on a Release with other contents.
    #[error(
        "the new Release's Date {} (SOURCE_DATE_EPOCH) is the published Release's Date, but the contents differ: clients that have the published Release would refuse the new one as a replay",
        format_date(*date)
    )]
    SameDate { date: i64 },
    /// The clock is more than [`MAX_DATE_AHEAD`] seconds behind the published `Date`.
    #[error(
        "the published Release's Date {} is {} s ahead of this machine's clock ({}): a Release dated now would go back in time, which clients that have the published one refuse, and one dated after it would be more than {MAX_DATE_AHEAD} s in the future",
        format_date(*published),
        published.saturating_sub(*now),
        format_date(*now)
    )]
    ClockBehind { now: i64, published: i64 },
}

impl DateConflict {
    /// What the user can do about it.
    pub fn advice(&self) -> &'static str {
        match self {
            DateConflict::Older { .. } | DateConflict::SameDate { .. } => {
                "raise SOURCE_DATE_EPOCH past the published Date, or pass --allow-date-rollback to publish it anyway"
            }
            DateConflict::ClockBehind { .. } => {
                "check the clock, or pass --allow-date-rollback to publish it dated now anyway"
            }
        }
    }
}

/// The `Date` of a new Release that replaces one dated `published` (`None`: nothing
/// published, or nothing readable). `same_release` says the new Release, dated `requested`,
/// is byte for byte one that clients may already have (clients accept an equal `Date` only
/// for that). Clients refuse an older `Date`, and an equal one on other contents, so:
/// - a `requested` later than `published` (or `same_release` at an equal one) stands;
/// - from the clock, a `requested` not later is moved to `published + 1`, when that is at
///   most [`MAX_DATE_AHEAD`] seconds ahead of the clock;
/// - anything else is a [`DateConflict`], unless `allow_rollback` publishes it as requested.
pub fn next_release_date(
    requested: i64,
    source: DateSource,
    published: Option<i64>,
    same_release: bool,
    allow_rollback: bool,
) -> Result<NextDate, DateConflict> {
    let Some(published) = published else {
        return Ok(NextDate::AsRequested(requested));
    };
    if requested > published || (requested == published && same_release) {
        return Ok(NextDate::AsRequested(requested));
    }
    let moved = published.saturating_add(1);
    match source {
        DateSource::Clock if moved.saturating_sub(requested) <= MAX_DATE_AHEAD => {
            Ok(NextDate::Moved {
                date: moved,
                published,
            })
        }
        _ if allow_rollback => Ok(NextDate::RolledBack {
            date: requested,
            published,
        }),
        DateSource::Clock => Err(DateConflict::ClockBehind {
            now: requested,
            published,
        }),
        DateSource::Fixed if requested < published => Err(DateConflict::Older {
            requested,
            published,
        }),
        DateSource::Fixed => Err(DateConflict::SameDate { date: requested }),
    }
}

/// What [`index_feed`] says about an `ar` `.ipk` with `--profile openwrt`, after its path.
/// opkg-lede (OpenWrt's opkg) unpacks a package by piping the whole file through `gzip -d`
/// and reading a tar from it; it has no `ar` reader (`archman/tests/index.rs` cites its
/// source).
pub const AR_IPK_WARNING: &str = "an ar .ipk, which OpenWrt's opkg (opkg-lede) cannot install: it reads only gzipped-tar .ipk files, so installing this file fails with \"Malformed package file\", and installing it from this feed reports success but installs no files (prokit and dpkg-deb do read it); rebuild it with `archman build --format tgz`";

/// What a run reports as it goes; the CLI draws it.
pub trait Progress: Sync {
    /// The number of package files found.
    fn start(&self, _total: u64) {}
    /// One package file handled (`cached`: not read).
    fn file(&self, _path: &str, _cached: bool) {}
    /// Something worth telling the user that does not stop the run.
    fn warn(&self, _message: &str) {}
    /// What the run is doing, when it takes long for a reason other than work (waiting for
    /// another run's lock).
    fn note(&self, _message: &str) {}
    /// Reading is over; publishing starts.
    fn finish(&self) {}
}

/// A progress sink that reports nothing.
pub struct Silent;
impl Progress for Silent {}

/// A package file that could not be indexed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadFile {
    /// Path relative to the feed.
    pub path: String,
    pub reason: String,
}

/// The outcome of a run.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub packages: usize,
    /// Files whose contents were read.
    pub read: usize,
    /// Files taken from the cache.
    pub cached: usize,
    /// Files skipped as bad (only with `skip_bad`).
    pub bad: Vec<BadFile>,
    /// Files written (empty when the feed was already up to date).
    pub written: Vec<String>,
    pub fingerprint: Option<String>,
    /// The OpenPGP fingerprint of the key that signs InRelease/Release.gpg (when it does).
    pub openpgp_fingerprint: Option<String>,
    pub warnings: Vec<String>,
    /// The `Date` of the Release written (`None` when nothing was written).
    pub date: Option<i64>,
    /// Of the runs of stanzas `Packages.gz` was built from, how many were compressed (the
    /// others reused from the last run), and how many there were (`None`: not written).
    pub gz_runs: Option<(usize, usize)>,
}

/// Why nothing was published.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: not a directory", .0.display())]
    NotADir(PathBuf),
    #[error("{0}")]
    Key(#[from] feeds::usign::Error),
    #[error("{} bad package file(s); the feed was not changed:\n{}", .0.len(), list_bad(.0))]
    BadPackages(Vec<BadFile>),
    #[error("{a} and {b} are both {what}; the feed was not changed")]
    Duplicate { a: String, b: String, what: String },
    #[error("OpenPGP signature for apt (InRelease, Release.gpg): {0}")]
    OpenPgp(String),
    #[error("Debian archive layout: {0}")]
    Layout(String),
    #[error("cannot start {jobs} worker threads: {reason}")]
    Threads { jobs: usize, reason: String },
    #[error("{}: refusing to publish: {conflict}; the feed was not changed ({})", path.display(), conflict.advice())]
    Date {
        /// The feed's `Release`.
        path: PathBuf,
        conflict: DateConflict,
    },
    #[error("stanzas kept in a temporary file: {0}")]
    Spill(#[source] io::Error),
    /// Another run holds the lock, and waiting was not wanted.
    #[error("{}: another archman index holds this lock (on {what}); the feed was not changed", lock.display())]
    Locked { lock: PathBuf, what: String },
}

fn list_bad(bad: &[BadFile]) -> String {
    bad.iter()
        .map(|b| format!("  {}: {}", b.path, b.reason))
        .collect::<Vec<_>>()
        .join("\n")
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> IndexError + '_ {
    move |source| IndexError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The journal of a publish in progress.
pub const JOURNAL: &str = ".archman-publish";
/// The lock file of a feed: every run holds it exclusively. Never deleted (a lock file
/// deleted while another run waits on it would let a third run in beside that one).
pub const LOCK: &str = ".archman-lock";
const TMP_PREFIX: &str = ".archman-tmp.";
/// Where archman up to version 5 of the cache format kept it: inside the feed, where
/// anyone who can write the feed could forge it. Never read now.
const OLD_CACHE_NAME: &str = ".archman-cache";

/// One package file found by the walk.
struct Found {
    rel: String,
    path: PathBuf,
    key: FileKey,
}

/// What is known of a package after reading it or finding it in the cache.
#[derive(Clone)]
struct Known {
    entry: cache::Entry,
    /// The developer key whose signature was checked (developer signatures on).
    signed_by: Option<feeds::usign::Fingerprint>,
    /// Package, Version, Architecture and Filename (the path relative to the feed: see
    /// [`Known::rel`]), for sorting and duplicate checks.
    key: PackedKey,
    cached: bool,
    /// Place in the walk's order.
    order: u32,
}

impl Known {
    /// The path relative to the feed, kept once: as the sort key's `Filename`.
    fn rel(&self) -> &str {
        self.key.filename()
    }

    /// A copy made in this thread's heap, its stanza kept within `spill`'s budget or in the
    /// spill (see the collecting loop of [`index_feed`]).
    fn moved_here(self, spill: &Arc<Spill>) -> io::Result<Known> {
        let Known {
            entry,
            signed_by,
            key,
            cached,
            order,
        } = self;
        let mut buf = Vec::new();
        let text = entry.stanza.text(&mut buf)?.to_string();
        Ok(Known {
            entry: cache::Entry {
                stanza: cache::Stanza::keep(text, spill)?,
                ..entry
            },
            signed_by,
            // Copied with its batch's (see the collecting loop).
            key,
            cached,
            order,
        })
    }
}

fn wanted(name: &str, profile: Profile) -> bool {
    match profile {
        Profile::Full => [".ipk", ".opk", ".deb"].iter().any(|e| name.ends_with(e)),
        Profile::OpenWrt => {
            name.ends_with(".ipk") && {
                let stem = name.split('_').next().unwrap_or("");
                stem != "kernel" && stem != "libc"
            }
        }
    }
}

/// What the walk of a feed found.
#[derive(Default)]
struct Walked {
    /// (path relative to the feed, identity) of each package file (its path is the feed's
    /// joined with the first: not kept for each of tens of thousands of files).
    found: Vec<(String, io::Result<FileKey>)>,
    /// For each of `found` since the directory being listed began: whether its identity is
    /// still to take ([`Walked::take_identities`]).
    unstated: Vec<bool>,
    bad: Vec<BadFile>,
    /// Temporary files at the top of the feed: left by a run killed before its journal was
    /// complete (this run's own have not been made yet).
    leftovers: Vec<PathBuf>,
}

impl Walked {
    /// Takes the identities of the files just listed in `dir` (whose paths in `found` begin
    /// with `prefix` bytes), on all threads; the directory is closed after (a pool of
    /// thousands of directories never holds more than one open).
    fn take_identities(&mut self, dir: &safe_fs::Dir, prefix: usize) {
        let from = self.found.len() - self.unstated.len();
        self.found[from..]
            .par_iter_mut()
            .zip(self.unstated.par_iter())
            .with_min_len(64)
            .filter(|(_, unstated)| **unstated)
            .for_each(|((rel, key), _)| {
                let name = std::ffi::OsStr::new(&rel[prefix..]);
                *key = match dir.stat(name) {
                    Ok(Some(st)) => Ok(FileKey::of_stat(&st)),
                    Ok(None) => Err(io::Error::from_raw_os_error(libc::ENOENT)),
                    Err(e) => Err(e.into_io_error()),
                };
            });
        self.unstated.clear();
    }
}

/// Walks the feed: regular package files, and symlinks to package files inside the feed.
/// Directory symlinks are not followed, so loops cannot trap the walk. Each file's identity
/// is taken as it is listed, relative to the directory being listed (no path lookup from
/// the root for each of tens of thousands of files), on all threads once the directory is
/// listed; a symlink's is its target's.
fn walk(root: &Path, profile: Profile) -> Result<Walked, IndexError> {
    let canon_root = root.canonicalize().map_err(io_err(root))?;
    let mut walked = Walked::default();
    // Unsorted: the index is sorted afterwards. Directories still to list: (path, its path
    // relative to the feed with a trailing `/` as bytes, depth).
    let mut dirs = vec![(root.to_path_buf(), Vec::new(), 0usize)];
    while let Some((dir, prefix, depth)) = dirs.pop() {
        let unlisted = |e: io::Error| BadFile {
            path: String::from_utf8_lossy(prefix.strip_suffix(b"/").unwrap_or(&prefix))
                .into_owned(),
            reason: format!("cannot list the directory: {e}"),
        };
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if depth == 0 => return Err(io_err(root)(e)),
            Err(e) => {
                walked.bad.push(unlisted(e));
                continue;
            }
        };
        // Where its files' identities are taken (each by its entry as it is listed if the
        // directory cannot be opened again).
        let at = safe_fs::Dir::open(&dir).ok();
        for entry in entries {
            match entry {
                Ok(entry) => walk_entry(
                    &entry,
                    at.is_some(),
                    &prefix,
                    depth + 1,
                    profile,
                    &canon_root,
                    &mut walked,
                    &mut dirs,
                ),
                Err(e) => {
                    walked.bad.push(unlisted(e));
                    break;
                }
            }
        }
        match at {
            Some(at) => walked.take_identities(&at, prefix.len()),
            None => walked.unstated.clear(),
        }
    }
    Ok(walked)
}

/// One entry of the directory listed at `prefix` (see [`walk`]).
#[allow(clippy::too_many_arguments)]
fn walk_entry(
    entry: &fs::DirEntry,
    stat_later: bool,
    prefix: &[u8],
    depth: usize,
    profile: Profile,
    canon_root: &Path,
    walked: &mut Walked,
    dirs: &mut Vec<(PathBuf, Vec<u8>, usize)>,
) {
    let name = entry.file_name();
    let rel = || [prefix, name.as_bytes()].concat();
    let ft = match entry.file_type() {
        Ok(ft) => ft,
        Err(e) => {
            walked.bad.push(BadFile {
                path: String::from_utf8_lossy(&rel()).into_owned(),
                reason: e.to_string(),
            });
            return;
        }
    };
    if name.as_bytes().starts_with(TMP_PREFIX.as_bytes()) {
        if depth == 1 && !ft.is_dir() {
            walked.leftovers.push(entry.path());
        }
        return;
    }
    if ft.is_dir() {
        let mut prefix = rel();
        prefix.push(b'/');
        dirs.push((entry.path(), prefix, depth));
        return;
    }
    if !wanted(&name.to_string_lossy(), profile) {
        return;
    }
    // A `Filename` is text: a name that is not UTF-8 would be published mangled (U+FFFD in
    // place of its bytes), and every client would fail to fetch it.
    let rel = match String::from_utf8(rel()) {
        Ok(rel) => rel,
        Err(e) => {
            let rel = e.into_bytes();
            let shown = std::ffi::OsStr::from_bytes(&rel);
            walked.bad.push(BadFile {
                path: String::from_utf8_lossy(&rel).into_owned(),
                reason: format!(
                    "the file name {shown:?} is not valid UTF-8, so the index cannot name it in a Filename that clients can fetch; rename the file"
                ),
            });
            return;
        }
    };
    let key = if ft.is_symlink() {
        let path = entry.path();
        match path.canonicalize() {
            Ok(target) if !target.starts_with(canon_root) => {
                walked.bad.push(BadFile {
                    path: rel,
                    reason: format!("symlink points outside the feed, to {}", target.display()),
                });
                return;
            }
            Ok(target) if !target.is_file() => return,
            Ok(_) => fs::metadata(&path).map(|m| FileKey::of(&m)),
            Err(e) => {
                walked.bad.push(BadFile {
                    path: rel,
                    reason: format!("broken symlink or symlink loop: {e}"),
                });
                return;
            }
        }
    } else if ft.is_file() {
        if stat_later {
            // Taken by `Walked::take_identities`.
            walked.found.push((rel, Err(io::ErrorKind::Other.into())));
            walked.unstated.push(true);
            return;
        }
        entry.metadata().map(|m| FileKey::of(&m))
    } else {
        return;
    };
    walked.found.push((rel, key));
    walked.unstated.push(false);
}

/// The control fields that carry a developer signature in the index: never taken from a
/// package's own control file.
const DEVELOPER_FIELDS: [&str; 2] = ["Signed-By", "Signature"];

/// A package's developer signature: `<file>.sig`, parsed, and the base64 line the index
/// publishes in `Signature:`.
struct DeveloperSig {
    sig: Signature,
    line: String,
}

/// Reads `<file>.sig` next to the package, if there is one (a symlink or anything but a
/// small regular file is an error).
fn developer_signature(f: &Found) -> Result<Option<DeveloperSig>, BadFile> {
    let sig_path = crate::keys::default_sig_path(&f.path);
    let bad = |reason: String| BadFile {
        path: format!("{}.sig", f.rel),
        reason,
    };
    let Some(bytes) = safe_fs::read_bounded(&sig_path, 4096).map_err(|e| bad(e.to_string()))?
    else {
        return Ok(None);
    };
    let sig = Signature::parse(&bytes)
        .map_err(|e| bad(format!("not a developer signature: {}", e.root())))?;
    let text = String::from_utf8(sig.to_file_bytes()).unwrap_or_default();
    let line = text.lines().nth(1).unwrap_or_default().to_string();
    Ok(Some(DeveloperSig { sig, line }))
}

/// The value of `Signature:` in stanza text this program wrote, if any.
fn stanza_signature(stanza: &str) -> Option<&str> {
    // Looked up in every cached stanza of every run: one substring search, not a walk
    // over its lines.
    const FIELD: &str = "Signature: ";
    static FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\nSignature: "));
    let at = if stanza.starts_with(FIELD) {
        0
    } else {
        FINDER.find(stanza.as_bytes())? + 1
    };
    let value = &stanza[at + FIELD.len()..];
    let line = value.split('\n').next().unwrap_or_default();
    Some(line.strip_suffix('\r').unwrap_or(line))
}

/// A reader that feeds what passes through it to a signature check.
struct Verified<'v, R> {
    inner: R,
    verifier: Option<&'v mut feeds::usign::Verifier>,
}

impl<R: Read> Read for Verified<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(v) = self.verifier.as_deref_mut() {
            v.update(&buf[..n]);
        }
        Ok(n)
    }
}

/// Reads one package (or takes it from the cache) and builds its stanza.
fn know(
    f: Found,
    cached: Option<cache::Entry>,
    md5: bool,
    profile: Profile,
    dev: &DeveloperPolicy,
) -> Result<Known, BadFile> {
    // apt reads only `SHA256`; OpenWrt's layout has only `SHA256sum`.
    let apt = profile == Profile::Full;
    let bad = |reason: String| BadFile {
        path: f.rel.clone(),
        reason,
    };
    let devsig = match dev.mode {
        DeveloperMode::Off => None,
        _ => developer_signature(&f)?,
    };
    // Under `require` every package needs one, but the keyring's own package: the root
    // signatures inside it vouch for it (docs/trust-model.md §9).
    let unsigned = |name: &str| {
        let keyring_package = dev
            .keyring
            .as_ref()
            .is_some_and(|k| name == format!("{}-keyring", k.name()));
        if dev.mode == DeveloperMode::Require && devsig.is_none() && !keyring_package {
            Err(bad(format!(
                "no developer signature ({}.sig is missing) and --developer-signatures require",
                f.rel
            )))
        } else {
            Ok(())
        }
    };
    let keyring = match (&devsig, &dev.keyring) {
        (Some(_), Some(k)) => Some(k),
        (Some(_), None) => return Err(bad("no keyring to check developer signatures".into())),
        _ => None,
    };
    // A cached stanza is used for a signed package only when it carries this very signature
    // (it was verified over the bytes read then, and the file is unchanged); the key is
    // judged against today's keyring again. The OpenWrt layout does not publish the
    // signature, so a signed package is read again there.
    let same_signature = |stanza: &str| match &devsig {
        // A signature removed since: the cached stanza must not carry it on.
        None => stanza_signature(stanza).is_none(),
        Some(d) => profile == Profile::Full && stanza_signature(stanza) == Some(d.line.as_str()),
    };
    // A cached stanza that cannot be read back from the spill is as good as none.
    let mut buf = Vec::new();
    if let Some(e) = cached
        && e.key == f.key
        && (!md5 || e.md5.is_some())
        && let Ok(text) = e.stanza.text(&mut buf)
        && same_signature(text)
    {
        // The stanza was built and checked when the package was read; only the fields
        // that order the index are picked out again.
        let [package, version, arch] = sort_fields(text);
        unsigned(package)?;
        if let (Some(d), Some(k)) = (&devsig, keyring) {
            keyring_pkg::developer::check_key(k, package, d.sig.fingerprint(), dev.now)
                .map_err(|e| bad(e.to_string()))?;
        }
        let key = PackedKey::new(package, version, arch, &f.rel);
        return Ok(Known {
            entry: e,
            key,
            cached: true,
            signed_by: devsig.as_ref().map(|d| d.sig.fingerprint()),
            order: 0,
        });
    }
    let opts = ReadOptions {
        md5,
        ..Default::default()
    };
    // The identity recorded is that of the very file read, taken through its descriptor
    // before and after reading: a file replaced or changed meanwhile is not cached under an
    // identity that does not describe the bytes hashed. Non-blocking, so that a FIFO put in
    // place of the file since the walk cannot hang the run.
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&f.path)
        .map_err(|e| bad(feeds::package::PackageError::Io(e).to_string()))?;
    let identity = |file: &File| {
        file.metadata()
            .map_err(|e| bad(feeds::package::PackageError::Io(e).to_string()))
            .and_then(|m| {
                if m.is_file() {
                    Ok(FileKey::of(&m))
                } else {
                    Err(bad("not a regular file".into()))
                }
            })
    };
    let before = identity(&file)?;
    // The developer signature is over the whole file: checked on the bytes as they are read
    // and hashed, never holding the file whole (its key is looked up now; whether it may
    // sign this package is decided once the name is read).
    let mut verifier = match (&devsig, keyring) {
        (Some(d), Some(k)) => k
            .key(d.sig.fingerprint())
            .map(|e| e.public_key.verifier(&d.sig))
            .transpose()
            .map_err(|e| bad(e.to_string()))?,
        _ => None,
    };
    let reader = Verified {
        inner: BufReader::with_capacity(128 * 1024, &file),
        verifier: verifier.as_mut(),
    };
    let pkg = read_package(reader, &opts, None).map_err(|e| bad(e.to_string()))?;
    if let (Some(d), Some(k)) = (&devsig, keyring) {
        let fp = d.sig.fingerprint();
        keyring_pkg::developer::check_key(k, pkg.name(), fp, dev.now)
            .map_err(|e| bad(e.to_string()))?;
        verifier
            .map_or(Ok(()), feeds::usign::Verifier::finish)
            .map_err(|_| {
                bad(keyring_pkg::DeveloperError::BadSignature {
                    package: pkg.name().to_string(),
                    fingerprint: fp,
                }
                .to_string())
            })?;
    }
    if pkg.size != before.size || identity(&file)? != before {
        return Err(bad("the file changed while it was being read".into()));
    }
    unsigned(pkg.name())?;
    if let Some(field) = DEVELOPER_FIELDS.iter().find(|n| pkg.control.contains(n)) {
        return Err(bad(format!(
            "its control file has a {field} field, which only the index may carry (the developer signature)"
        )));
    }
    let mut stanza = findex::stanza_for(&pkg, &f.rel, findex::HashFields { md5, apt })
        .map_err(|e| bad(e.to_string()))?;
    if let Some(d) = &devsig
        && profile == Profile::Full
    {
        // After the hashes, before the description (docs/formats.md, developer fields).
        let fp = d.sig.fingerprint().to_string();
        stanza
            .insert_before("Description", "Signed-By", &fp)
            .and_then(|()| stanza.insert_before("Description", "Signature", &d.line))
            .map_err(|e| bad(e.to_string()))?;
    }
    let field = |name| stanza.get(name).unwrap_or("");
    Ok(Known {
        key: PackedKey::new(
            field("Package"),
            field("Version"),
            field("Architecture"),
            &f.rel,
        ),
        entry: cache::Entry {
            key: before,
            sha256: pkg.sha256,
            md5: pkg.md5,
            container: pkg.container,
            stanza: stanza.to_text().into(),
        },
        cached: false,
        signed_by: devsig.as_ref().map(|d| d.sig.fingerprint()),
        order: 0,
    })
}

/// Refuses two files that claim the same (Package, Version, Architecture). The list made
/// for it is gone when this returns (at 60,000 packages it is 4 MB the rest of the run does
/// not need).
fn check_duplicates(known: &[Known]) -> Result<(), IndexError> {
    let mut ids: Vec<([&str; 3], &str)> = known
        .iter()
        .map(|k| {
            let f = &k.key;
            ([f.package(), f.version(), f.architecture()], k.rel())
        })
        .collect();
    ids.sort_unstable();
    match ids.windows(2).find(|w| w[0].0 == w[1].0) {
        Some(w) => Err(IndexError::Duplicate {
            a: w[0].1.to_string(),
            b: w[1].1.to_string(),
            what: w[0].0.join(" "),
        }),
        None => Ok(()),
    }
}

/// Package, Version and Architecture of stanza text this program wrote, in one pass that
/// stops as soon as all three are seen (they lead the stanza; the description is not scanned).
fn sort_fields(stanza: &str) -> [&str; 3] {
    const NAMES: [&str; 3] = ["Package", "Version", "Architecture"];
    let mut out = [""; 3];
    let mut seen = 0;
    for line in stanza.split('\n') {
        if line.starts_with([' ', '\t']) {
            continue;
        }
        let Some((n, v)) = line.split_once(':') else {
            continue;
        };
        if let Some(i) = NAMES.iter().position(|x| n.eq_ignore_ascii_case(x))
            && out[i].is_empty()
        {
            out[i] = v.trim();
            seen += 1;
            if seen == 3 {
                break;
            }
        }
    }
    out
}

/// The OpenWrt `Packages` from `Packages.manifest`: `grep -vE
/// '^(Maintainer|LicenseFiles|Source|SourceName|Require|SourceDateEpoch)'`, then two newlines
/// of padding when `(64 + size) % 128` is 110 or 111 (old usign's SHA-512 bug).
pub fn openwrt_packages(manifest: &[u8]) -> Vec<u8> {
    const STRIP: [&[u8]; 6] = [
        b"Maintainer",
        b"LicenseFiles",
        b"Source",
        b"SourceName",
        b"Require",
        b"SourceDateEpoch",
    ];
    let mut out = Vec::with_capacity(manifest.len());
    for line in manifest.split_inclusive(|&b| b == b'\n') {
        if !STRIP.iter().any(|p| line.starts_with(p)) {
            out.extend_from_slice(line);
        }
    }
    if matches!((64 + out.len()) % 128, 110 | 111) {
        out.extend_from_slice(b"\n\n");
    }
    out
}

/// The files of a feed index, in publish order.
struct Outputs<'a> {
    files: Vec<(&'static str, Body<'a>)>,
    /// What the published `Packages.sig` is known to sign, for the cache.
    checked_sig: Option<cache::CheckedSig>,
    /// The Release over `files`, still to be dated, written and signed ([`Outputs::seal`]).
    release: Release,
    /// The compressed runs `Packages.gz` consists of, for the next run.
    parts: crate::gz_parts::Parts,
    gz_stats: crate::gz_parts::GzipStats,
}

impl Outputs<'_> {
    /// The Release text dated `date` (`Valid-Until` `valid_for` seconds later).
    fn release_text(&self, date: i64, valid_for: Option<i64>) -> Vec<u8> {
        Release {
            date,
            valid_until: valid_for.map(|v| date.saturating_add(v)),
            ..self.release.clone()
        }
        .to_text()
        .into_bytes()
    }

    /// Appends `Release` dated `date` and, with a key, `Release.sig`: the last files published.
    /// With an OpenPGP signer, `InRelease` (the Release clear-signed) and `Release.gpg`
    /// (detached, armored) come before `Release.sig`, all signed at the Release's Date.
    fn seal(
        &mut self,
        date: i64,
        valid_for: Option<i64>,
        key: Option<&SecretKey>,
        openpgp: Option<&usign_openpgp::Signer>,
    ) -> Result<(), IndexError> {
        let release = self.release_text(date, valid_for);
        let sig = key.map(|k| k.sign(&release)).transpose()?;
        let pgp = openpgp
            .map(|p| openpgp_signatures(p, &release, date))
            .transpose()
            .map_err(|e| IndexError::OpenPgp(e.to_string()))?;
        self.files.push(("Release", Body::Bytes(release)));
        if let Some((inrelease, detached)) = pgp {
            self.files
                .push(("Release.gpg", Body::Bytes(detached.into_bytes())));
            self.files
                .push(("InRelease", Body::Bytes(inrelease.into_bytes())));
        }
        if let Some(sig) = sig {
            self.files
                .push(("Release.sig", Body::Bytes(sig.to_file_bytes())));
        }
        Ok(())
    }
}

/// `InRelease` and `Release.gpg` over `release`, signed at its Date and checked against the
/// key's own certificate before they are published (as `Release.sig` is).
fn openpgp_signatures(
    signer: &usign_openpgp::Signer,
    release: &[u8],
    date: i64,
) -> Result<(String, String), usign_openpgp::Error> {
    let text = std::str::from_utf8(release).expect("a Release is UTF-8 text");
    let time = u32::try_from(date.max(0)).unwrap_or(u32::MAX);
    let inrelease = signer.clearsign(text, time)?;
    let detached = signer.detached_armored(release, time)?;
    let cert = signer.certificate("self-check")?;
    cert.verify_clearsigned(&inrelease)?;
    cert.verify_detached(&detached, release)?;
    Ok((inrelease, detached))
}

/// The published Release, as far as dating the next one goes.
struct Previous {
    date: i64,
    bytes: Vec<u8>,
    /// The published `Release.sig`, if it parses.
    sig: Option<feeds::usign::Signature>,
}

/// The Release published in `dir`: `None` when there is none, an error (the file and the
/// reason) when it cannot be read or parsed. The caller warns and treats the latter as none:
/// no client accepted that Release (they all parse it), so it constrains no Date, and
/// refusing to publish over it would leave the feed broken until someone removed it by hand.
fn previous_release(dir: &Path) -> Result<Option<Previous>, String> {
    let path = dir.join("Release");
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let release = std::str::from_utf8(&bytes)
        .map_err(|_| "not valid UTF-8".to_string())
        .and_then(|t| Release::parse(t).map_err(|e| e.to_string()))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let sig = feeds::usign::Signature::read_path(&dir.join("Release.sig")).ok();
    Ok(Some(Previous {
        date: release.date,
        bytes,
        sig,
    }))
}

impl Previous {
    /// True when `release` is, byte for byte, a Release clients may have accepted as the
    /// published one: the same bytes, or (the published `Release` damaged since) exactly the
    /// bytes the published `Release.sig` by `key` signs.
    fn same(&self, release: &[u8], key: Option<&SecretKey>) -> bool {
        self.bytes == release
            || key.zip(self.sig.as_ref()).is_some_and(|(k, sig)| {
                sig.fingerprint() == k.fingerprint() && k.public_key().verify(release, sig).is_ok()
            })
    }
}

/// The uncompressed index files: `Packages` and, for OpenWrt, `Packages.manifest`.
fn index_files<'k>(
    known: &'k [Known],
    profile: Profile,
    spill: &Arc<Spill>,
) -> Result<Vec<(&'static str, Body<'k>)>, IndexError> {
    let write = |order: &[&Known]| {
        let size: usize = order.iter().map(|k| k.entry.stanza.len() + 1).sum();
        let mut out = Vec::with_capacity(size);
        let mut buf = Vec::new();
        for k in order {
            let text = k.entry.stanza.text(&mut buf).map_err(IndexError::Spill)?;
            out.extend_from_slice(text.as_bytes());
            out.push(b'\n');
        }
        Ok::<_, IndexError>(out)
    };
    let mut order: Vec<&Known> = known.iter().collect();
    Ok(match profile {
        Profile::Full => {
            order.sort_by(|a, b| a.key.cmp(&b.key));
            let stanzas: Vec<&cache::Stanza> = order.iter().map(|k| &k.entry.stanza).collect();
            drop(order);
            let body = Body::of_stanzas(&stanzas, spill).map_err(IndexError::Spill)?;
            vec![("Packages", body)]
        }
        Profile::OpenWrt => {
            // `find . -name '*.ipk' | sort` under LC_ALL=C: byte order of the paths.
            order.sort_by(|a, b| a.rel().as_bytes().cmp(b.rel().as_bytes()));
            let mut manifest = write(&order)?;
            if order.is_empty() {
                manifest.push(b'\n');
            }
            let packages = openwrt_packages(&manifest);
            vec![
                ("Packages.manifest", Body::Bytes(manifest)),
                ("Packages", Body::Bytes(packages)),
            ]
        }
    })
}

fn file_hash(name: &str, data: &[u8]) -> FileHash {
    FileHash {
        sha256: hex::encode(Sha256::digest(data)),
        size: data.len() as u64,
        name: name.to_string(),
    }
}

fn body_hash(name: &str, body: &Body<'_>) -> Result<FileHash, IndexError> {
    Ok(FileHash {
        sha256: body.sha256_hex().map_err(IndexError::Spill)?,
        size: body.len() as u64,
        name: name.to_string(),
    })
}

/// The SHA-256 and size of a file on disk, streamed.
fn hash_file(path: &Path) -> Option<(String, u64)> {
    let mut f = File::open(path).ok()?;
    let mut h = Sha256::new();
    let n = io::copy(&mut f, &mut h).ok()?;
    Some((hex::encode(h.finalize()), n))
}

/// The Release the feed directory holds now, if its listed files are all there as listed and
/// the index files among them hold exactly the new `index` bytes (else the feed changes anyway
/// and nothing of the old one is reused).
fn published_release(
    dir: &Path,
    index: &[(&'static str, Body<'_>)],
    index_hashes: &[FileHash],
) -> Option<Release> {
    let old = Release::parse(&fs::read_to_string(dir.join("Release")).ok()?).ok()?;
    for f in &old.sha256 {
        match index.iter().position(|(n, _)| *n == f.name) {
            // Comparing bytes is cheaper than hashing the old file again.
            Some(i) => {
                if index_hashes[i] != *f || !index[i].1.equals_file(&dir.join(&f.name)) {
                    return None;
                }
            }
            None => {
                if hash_file(&dir.join(&f.name)) != Some((f.sha256.clone(), f.size)) {
                    return None;
                }
            }
        }
    }
    Some(old)
}

/// The files a published feed consists of, for a profile and whether it is signed.
fn feed_file_names(profile: Profile, signed: bool, openpgp: bool) -> Vec<&'static str> {
    let mut names = vec!["Packages", "Packages.gz", "Release"];
    if profile == Profile::OpenWrt {
        names.push("Packages.manifest");
    }
    if signed {
        names.extend(["Packages.sig", "Release.sig"]);
    }
    if openpgp {
        names.extend(["InRelease", "Release.gpg"]);
    }
    names.sort();
    names
}

/// The identity of each published file on disk, with the SHA-256 of the index files, or an
/// empty list when some file is missing.
fn record_published(
    dir: &Path,
    index_hashes: &[FileHash],
    profile: Profile,
    signed: bool,
    openpgp: bool,
) -> Vec<cache::Published> {
    let mut out = Vec::new();
    for name in feed_file_names(profile, signed, openpgp) {
        let Ok(meta) = fs::symlink_metadata(dir.join(name)) else {
            return Vec::new();
        };
        out.push(cache::Published {
            name: name.to_string(),
            key: FileKey::of(&meta),
            sha256: index_hashes
                .iter()
                .find(|h| h.name == name)
                .map(|h| h.sha256.clone()),
        });
    }
    out
}

/// When every file of the feed is on disk exactly as recorded, the hashes of the index files
/// as recorded (what [`unchanged`] compares with the Release).
fn published_as_recorded(
    dir: &Path,
    recorded: &[cache::Published],
    profile: Profile,
    signed: bool,
    openpgp: bool,
) -> Option<Vec<FileHash>> {
    let names = feed_file_names(profile, signed, openpgp);
    if !recorded
        .iter()
        .map(|p| p.name.as_str())
        .eq(names.iter().copied())
    {
        return None;
    }
    let mut hashes = Vec::new();
    for p in recorded {
        let meta = fs::symlink_metadata(dir.join(&p.name)).ok()?;
        if FileKey::of(&meta) != p.key {
            return None;
        }
        if matches!(p.name.as_str(), "Packages" | "Packages.manifest") {
            hashes.push(FileHash {
                sha256: p.sha256.clone()?,
                size: p.key.size,
                name: p.name.clone(),
            });
        }
    }
    Some(hashes)
}

/// What a re-index may take over from the last run.
struct Reuse {
    /// `Packages.sig`, checked before use.
    sig: Option<Vec<u8>>,
    /// What the cache says a `Packages.sig` was already checked against.
    checked: Option<cache::CheckedSig>,
}

/// The compressed parts kept beside a cache (crate::gz_parts).
#[derive(Clone, Copy)]
struct PartsFile<'p> {
    cache: &'p Path,
    feed_id: &'p str,
    key: &'p cache::CacheKey,
}

impl PartsFile<'_> {
    fn load(self) -> (crate::gz_parts::Parts, Option<String>) {
        crate::gz_parts::Parts::load_for(self.cache, self.feed_id, self.key)
    }
}

/// Sets each flag when dropped.
struct StopOnDrop<'a>(&'a [&'a AtomicBool]);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        for flag in self.0 {
            flag.store(true, Ordering::Relaxed);
        }
    }
}

/// `Packages.gz`, made from the parts of the last one where its runs are the same.
struct Gzipped {
    gz: Body<'static>,
    /// The parts it is made of.
    parts: crate::gz_parts::Parts,
    stats: crate::gz_parts::GzipStats,
    /// Why the parts of the last `Packages.gz` were not used, for a warning.
    unusable: Option<String>,
}

/// `Packages.gz` of `text`, with the parts kept at `parts` (crate::gz_parts); `None` when
/// `cancel` was set before it was done (it is begun before it is known to be needed).
fn gzip_with_parts(
    parts: Option<PartsFile<'_>>,
    text: &Body<'_>,
    cancel: &AtomicBool,
) -> Result<Option<Gzipped>, IndexError> {
    if cancel.load(Ordering::Relaxed) {
        return Ok(None);
    }
    let (old, unusable) = parts.map(PartsFile::load).unwrap_or_default();
    Ok(old
        .gzip_unless(text, cancel)
        .map_err(IndexError::Spill)?
        .map(|(gz, parts, stats)| Gzipped {
            gz,
            parts,
            stats,
            unusable,
        }))
}

/// How [`finish_outputs`] gets a new signature of `Packages`: `sign` (perhaps joining one
/// begun earlier), or, when the published one is reused, `cancel` set so that one begun
/// earlier stops. `gzipped` gives `Packages.gz` (joining the work begun earlier), and
/// `write_gz` writes it to its temporary as soon as it is made.
struct Fresh<'c, F, G, W> {
    sign: F,
    cancel: &'c AtomicBool,
    gzipped: G,
    write_gz: W,
}

/// What [`finish_outputs`] adds to the index files.
struct Finished {
    gz: Body<'static>,
    /// `Packages.gz`'s temporary, written and synced (`Fresh::write_gz`).
    gz_written: Written,
    packages_sig: Option<Vec<u8>>,
    checked_sig: Option<cache::CheckedSig>,
    release: Release,
    parts: crate::gz_parts::Parts,
    gz_stats: crate::gz_parts::GzipStats,
    /// Why the parts of the last `Packages.gz` were not used, for a warning.
    parts_unusable: Option<String>,
}

impl Finished {
    /// The outputs: `Packages.gz`, the index files, `Packages.sig`; the Release to seal.
    fn into_outputs<'a>(self, index: Vec<(&'static str, Body<'a>)>) -> Outputs<'a> {
        let mut files = Vec::with_capacity(index.len() + 6);
        files.push(("Packages.gz", self.gz));
        files.extend(index);
        if let Some(sig) = self.packages_sig {
            files.push(("Packages.sig", Body::Bytes(sig)));
        }
        Outputs {
            files,
            checked_sig: self.checked_sig,
            release: self.release,
            parts: self.parts,
            gz_stats: self.gz_stats,
        }
    }
}

/// Completes the outputs but for the dated Release: `Packages.gz` (only the runs of stanzas
/// that changed compressed again), `Packages.sig`, and the undated Release over all index
/// files.
#[allow(clippy::too_many_arguments)]
fn finish_outputs<F, G, W>(
    files: &[(&'static str, Body<'_>)],
    index_hashes: &[FileHash],
    reuse: Reuse,
    known: &[Known],
    opts: &IndexOptions,
    feed_name: &str,
    key: Option<&SecretKey>,
    fresh: Fresh<'_, F, G, W>,
) -> Result<Finished, IndexError>
where
    F: FnOnce(&Body<'_>, &SecretKey) -> Result<feeds::usign::Signature, feeds::usign::Error>,
    G: FnOnce() -> Result<Gzipped, IndexError>,
    W: FnOnce(&Body<'_>) -> Result<Written, IndexError>,
{
    let empty = Body::Bytes(Vec::new());
    let packages = files
        .iter()
        .find(|(n, _)| *n == "Packages")
        .map(|(_, d)| d)
        .unwrap_or(&empty);
    let packages_sha256 = index_hashes
        .iter()
        .find(|h| h.name == "Packages")
        .map(|h| h.sha256.clone())
        .unwrap_or_default();
    // Compressing and signing were begun on threads of their own; each is joined here in
    // turn (not on rayon's workers, which the compression needs, and which could take this
    // up while waiting, and block). The signature first: a published one that is reused
    // stops the signer begun early, which would otherwise compete with the compression.
    let packages_sig = (|| -> Result<Option<(Vec<u8>, cache::CheckedSig)>, IndexError> {
        let Some(k) = key else { return Ok(None) };
        let fingerprint = k.fingerprint().to_string();
        let record = |sig: &[u8]| cache::CheckedSig {
            packages_sha256: packages_sha256.clone(),
            sig_sha256: hex::encode(Sha256::digest(sig)),
            fingerprint: fingerprint.clone(),
        };
        // Ed25519 is deterministic: a published signature by this key that verifies over
        // these bytes is exactly what signing again would give, at a third of the cost —
        // and nothing at all when the cache records having checked exactly this pair.
        if let Some(sig) = reuse.sig {
            let rec = record(&sig);
            let valid = reuse.checked.as_ref() == Some(&rec)
                || packages.as_bytes().is_some_and(|bytes| {
                    feeds::usign::Signature::parse(&sig).is_ok_and(|s| {
                        s.fingerprint() == k.fingerprint()
                            && k.public_key().verify(bytes, &s).is_ok()
                    })
                });
            if valid {
                fresh.cancel.store(true, Ordering::Relaxed);
                return Ok(Some((sig, rec)));
            }
        }
        let sig = (fresh.sign)(packages, k)?.to_file_bytes();
        let rec = record(&sig);
        Ok(Some((sig, rec)))
    })();
    let compressed = (|| {
        let gzipped = (fresh.gzipped)()?;
        let written = (fresh.write_gz)(&gzipped.gz);
        let hash = body_hash("Packages.gz", &gzipped.gz);
        Ok::<_, IndexError>((gzipped, written, hash))
    })();
    let (gzipped, gz_written, gz_hash) = compressed?;
    let gz_written = gz_written?;
    let (packages_sig, checked_sig) = packages_sig?.unzip();
    let mut hashes: Vec<FileHash> = index_hashes.to_vec();
    hashes.push(gz_hash?);
    hashes.sort_by(|a, b| a.name.cmp(&b.name));
    let archs: BTreeSet<&str> = known.iter().map(|k| k.key.architecture()).collect();
    let origin = opts.origin.clone().unwrap_or_else(|| feed_name.to_string());
    let release = Release {
        archive: None,
        origin: Some(origin.clone()),
        label: Some(origin),
        date: 0,
        valid_until: None,
        architectures: archs.into_iter().map(str::to_string).collect(),
        sha256: hashes,
    };
    Ok(Finished {
        gz: gzipped.gz,
        gz_written,
        packages_sig,
        checked_sig,
        release,
        parts: gzipped.parts,
        gz_stats: gzipped.stats,
        parts_unusable: gzipped.unusable,
    })
}

/// The `Date` for the Release of `out`, against the Release published in `dir` (see
/// [`next_release_date`]); warns when it is moved or rolled back, or when the published
/// Release cannot be read.
fn settle_date(
    dir: &Path,
    out: &Outputs,
    opts: &IndexOptions,
    key: Option<&SecretKey>,
    progress: &dyn Progress,
    warnings: &mut Vec<String>,
) -> Result<i64, IndexError> {
    let mut warn = |w: String| {
        progress.warn(&w);
        warnings.push(w);
    };
    let previous = previous_release(dir).unwrap_or_else(|e| {
        warn(format!(
            "{e}; the published Release cannot be read, so the new one's Date is not checked against it"
        ));
        None
    });
    let same = previous.as_ref().is_some_and(|p| {
        p.date == opts.date && p.same(&out.release_text(opts.date, opts.valid_for), key)
    });
    let next = next_release_date(
        opts.date,
        opts.date_source,
        previous.as_ref().map(|p| p.date),
        same,
        opts.allow_date_rollback,
    )
    .map_err(|conflict| IndexError::Date {
        path: dir.join("Release"),
        conflict,
    })?;
    match next {
        NextDate::AsRequested(_) => {}
        NextDate::Moved { date, published } => warn(format!(
            "{}: Release Date moved to {} ({} s after the published Release's Date {}) so clients accept it as newer",
            dir.join("Release").display(),
            format_date(date),
            date - published,
            format_date(published)
        )),
        NextDate::RolledBack { date, published } => warn(format!(
            "{}: publishing a Release dated {}, not later than the published Release's Date {} (--allow-date-rollback): clients that have the published Release refuse this one until a later one is published",
            dir.join("Release").display(),
            format_date(date),
            format_date(published)
        )),
    }
    Ok(next.date())
}

/// How this run signs: the usign key, and whether apt's OpenPGP signatures are written.
#[derive(Clone, Copy)]
struct Signing<'a> {
    key: Option<&'a SecretKey>,
    openpgp: bool,
}

/// True when the published Release `old` already covers these index files with the same
/// settings, and (when signing) the signatures are by the same key.
fn unchanged(
    dir: &Path,
    old: &Release,
    index_hashes: &[FileHash],
    known: &[Known],
    opts: &IndexOptions,
    feed_name: &str,
    Signing { key, openpgp }: Signing<'_>,
) -> bool {
    let same_files = index_hashes.iter().all(|h| old.file(&h.name) == Some(h))
        && old.file("Packages.gz").is_some()
        && old.sha256.len() == index_hashes.len() + 1;
    let archs: BTreeSet<&str> = known.iter().map(|k| k.key.architecture()).collect();
    let origin = opts.origin.as_deref().unwrap_or(feed_name);
    let same_settings = old.architectures.iter().map(String::as_str).eq(archs)
        && old.origin.as_deref() == Some(origin)
        && old.valid_until.map(|v| v - old.date) == opts.valid_for;
    let same_signing = match key {
        None => !dir.join("Release.sig").exists() && !dir.join("Packages.sig").exists(),
        Some(k) => ["Packages.sig", "Release.sig"].iter().all(|s| {
            feeds::usign::Signature::read_path(&dir.join(s))
                .is_ok_and(|sig| sig.fingerprint() == k.fingerprint())
        }),
    };
    // apt's signatures are there exactly when they should be (a feed that gains its first
    // .deb gets them; --no-openpgp removes them).
    let same_openpgp = ["InRelease", "Release.gpg"]
        .iter()
        .all(|n| dir.join(n).exists() == openpgp);
    same_files && same_settings && same_signing && same_openpgp
}

/// The tag that makes this run's temporary names its own: `<pid>-<8 random hex>`.
fn run_tag() -> String {
    let mut r = [0u8; 4];
    // Without randomness the process id alone is still unique among running processes.
    let _ = getrandom::fill(&mut r);
    format!("{}-{}", std::process::id(), hex::encode(r))
}

fn valid_tag(tag: &str) -> bool {
    !tag.is_empty() && tag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// The temporary name of `name` for the run tagged `tag` (`None`: a journal written before
/// temporary names were tagged).
fn temp_name(tag: Option<&str>, name: &str) -> String {
    match tag {
        Some(tag) => format!("{TMP_PREFIX}{tag}.{name}"),
        None => format!("{TMP_PREFIX}{name}"),
    }
}

/// Writes `data` to this run's temporary file for `name` in `dir`, synced to disk when
/// `sync`; returns the temporary path.
fn write_temp(
    dir: &Path,
    tag: &str,
    name: &str,
    data: &[u8],
    sync: bool,
) -> Result<PathBuf, IndexError> {
    write_temp_with(dir, tag, name, sync, |f| f.write_all(data))
}

/// [`write_temp`] of a [`Body`].
fn write_temp_body(
    dir: &Path,
    tag: &str,
    name: &str,
    data: &Body<'_>,
    sync: bool,
) -> Result<PathBuf, IndexError> {
    write_temp_with(dir, tag, name, sync, |f| data.write_to(f))
}

/// This run's temporary file `name` in `dir`, created new (never through a symlink), filled
/// by `fill`, fsynced when asked; removed again when any of that fails.
fn write_temp_with(
    dir: &Path,
    tag: &str,
    name: &str,
    sync: bool,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> Result<PathBuf, IndexError> {
    let tmp = dir.join(temp_name(Some(tag), name));
    let written = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        fill(&mut f)?;
        if sync {
            f.sync_all()?;
        }
        Ok(())
    })();
    written.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_err(&tmp)(e)
    })?;
    Ok(tmp)
}

/// Replaces `dest` (in `dir`) with `data`: this run's temporary file, renamed over it; the
/// temporary is removed when the rename fails.
fn replace_via_temp(
    dir: &Path,
    tag: &str,
    dest: &Path,
    data: &[u8],
    sync: bool,
) -> Result<(), IndexError> {
    replace_via_temp_with(dir, tag, dest, sync, |f| f.write_all(data))
}

/// [`replace_via_temp`] with the temporary file filled by `fill`.
fn replace_via_temp_with(
    dir: &Path,
    tag: &str,
    dest: &Path,
    sync: bool,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> Result<(), IndexError> {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = write_temp_with(dir, tag, &name, sync, fill)?;
    fs::rename(&tmp, dest).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_err(&tmp)(e)
    })
}

fn sync_dir(dir: &Path) -> Result<(), IndexError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Opens (creating it if needed) the lock file `path` and locks it exclusively for as long as
/// the returned file is open. When another process holds it: with `wait`, waits, telling
/// `progress` after a second; without, fails with [`IndexError::Locked`]. `what` names what
/// the lock guards, for the messages.
fn lock(path: &Path, what: &str, wait: bool, progress: &dyn Progress) -> Result<File, IndexError> {
    // Not through a symlink (anyone who can write the feed could point it anywhere), and
    // not blocking on a FIFO put in its place. Read-only when another user of a shared feed
    // made it (flock needs no write access; NFS's emulation of it does, hence trying that
    // first).
    let open = |write: bool| {
        fs::OpenOptions::new()
            .read(true)
            .write(write)
            .create(write)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
    };
    let file = open(true)
        .or_else(|e| match e.kind() {
            io::ErrorKind::PermissionDenied => open(false),
            _ => Err(e),
        })
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => io::Error::other("a symbolic link, not a lock file"),
            _ => e,
        })
        .map_err(io_err(path))?;
    if !file.metadata().map_err(io_err(path))?.is_file() {
        return Err(io_err(path)(io::Error::other(
            "not a regular file, so it cannot be the lock file",
        )));
    }
    match file.try_lock() {
        Ok(()) => return Ok(file),
        Err(fs::TryLockError::WouldBlock) => {}
        Err(fs::TryLockError::Error(e)) => return Err(io_err(path)(e)),
    }
    if !wait {
        return Err(IndexError::Locked {
            lock: path.to_path_buf(),
            what: what.to_string(),
        });
    }
    let (done, waiting) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        s.spawn(move || {
            if waiting.recv_timeout(Duration::from_secs(1))
                == Err(std::sync::mpsc::RecvTimeoutError::Timeout)
            {
                progress.note(&format!(
                    "waiting for another archman index on {what} (lock {})",
                    path.display()
                ));
            }
        });
        let locked = file.lock();
        drop(done);
        locked
    })
    .map_err(io_err(path))?;
    Ok(file)
}

/// Finishes a publish that a killed run left half done: when the journal is complete, every
/// temporary file it names that still exists is renamed into place (roll forward); otherwise
/// the temporary files are removed and the old feed stays. Returns whether anything was done.
/// Only for a caller holding the feed's lock ([`LOCK`]): it removes every temporary file.
pub fn recover(dir: &Path) -> Result<bool, IndexError> {
    let mut acted = recover_journal(dir)?;
    // Leftover temporary files of a run killed before its journal was complete.
    for e in fs::read_dir(dir).map_err(io_err(dir))?.flatten() {
        if e.file_name().as_bytes().starts_with(TMP_PREFIX.as_bytes()) {
            acted = true;
            let _ = fs::remove_file(e.path());
        }
    }
    Ok(acted)
}

/// The first half of [`recover`]: finishes or drops the publish a journal describes. The
/// index run removes leftover temporaries itself, from its walk of the feed (one listing of
/// a large directory instead of two).
fn recover_journal(dir: &Path) -> Result<bool, IndexError> {
    let journal = dir.join(JOURNAL);
    let mut acted = false;
    if let Ok(text) = fs::read_to_string(&journal) {
        acted = true;
        let complete = text.ends_with("END\n");
        let lines: Vec<&str> = text.lines().filter(|l| *l != "END").collect();
        // `tmp <tag>` first; a journal without it names untagged temporaries.
        let (tag, names) = match lines.split_first() {
            Some((first, rest)) if first.starts_with("tmp ") => (Some(&first[4..]), rest),
            _ => (None, &lines[..]),
        };
        let valid =
            complete && tag.is_none_or(valid_tag) && names.iter().all(|n| journal_name_ok(n));
        if valid {
            let mut parents = BTreeSet::new();
            for name in names {
                let tmp = temp_path(dir, tag, name);
                if fs::symlink_metadata(&tmp).is_ok_and(|m| m.is_file()) {
                    fs::rename(&tmp, dir.join(name)).map_err(io_err(&tmp))?;
                    parents.insert(dir.join(name).parent().unwrap_or(dir).to_path_buf());
                }
            }
            for p in &parents {
                sync_dir(p)?;
            }
            sync_dir(dir)?;
        }
        fs::remove_file(&journal).map_err(io_err(&journal))?;
    }
    Ok(acted)
}

/// Publishes the outputs: temporaries, journal, renames in order, journal removed.
fn publish(
    dir: &Path,
    tag: &str,
    out: &Outputs<'_>,
    early: Written,
) -> Result<Vec<String>, IndexError> {
    publish_files(dir, tag, &out.files, early)?;
    // Signatures from an earlier signed run must not outlive an unsigned one.
    let names: Vec<String> = out.files.iter().map(|(n, _)| n.to_string()).collect();
    for stale in [
        "Packages.sig",
        "Release.sig",
        "Packages.manifest",
        "InRelease",
        "Release.gpg",
    ] {
        if !names.iter().any(|n| n == stale) {
            let _ = fs::remove_file(dir.join(stale));
        }
    }
    Ok(names)
}

/// The temporary file of `name` (a path relative to `dir`, perhaps in a subdirectory): in the
/// directory `name` is in, so the rename that publishes it stays in one directory.
fn temp_path(dir: &Path, tag: Option<&str>, name: &str) -> PathBuf {
    match name.rsplit_once('/') {
        Some((parent, base)) => dir.join(parent).join(temp_name(tag, base)),
        None => dir.join(temp_name(tag, name)),
    }
}

/// Whether a journal may name `name`: a path relative to the journal's directory, without
/// `.`/`..` or hidden components, whose last component is an index or Release file.
fn journal_name_ok(name: &str) -> bool {
    let parts: Vec<&str> = name.split('/').collect();
    parts.iter().all(|p| !p.is_empty() && !p.starts_with('.'))
        && parts.last().is_some_and(|base| {
            base.starts_with("Packages") || base.starts_with("Release") || *base == "InRelease"
        })
}

/// Publishes `files` (names relative to `dir`, in publish order) as one step that a crash
/// cannot leave half done: each written to a temporary beside its destination and synced, a
/// journal naming them all, the renames in order, the directories synced, the journal
/// removed. `temps` holds those written already (they are not written again). A run killed
/// after the journal is complete is rolled forward by [`recover`]; one killed before leaves
/// the old files, and temporaries that `recover` removes; one that fails before removes its
/// temporaries itself.
fn publish_files<N: AsRef<str> + Sync>(
    dir: &Path,
    tag: &str,
    files: &[(N, Body<'_>)],
    mut temps: Written,
) -> Result<(), IndexError> {
    // Each temporary on its own thread: their fsyncs wait on the disk together (the
    // filesystem commits them in one journal transaction), not one after another.
    let written: Vec<(&str, Result<PathBuf, IndexError>)> = std::thread::scope(|scope| {
        let written_early = &temps;
        let writers: Vec<_> = files
            .iter()
            .filter(|(name, _)| !written_early.has(name.as_ref()))
            .map(|(name, data)| {
                let name = name.as_ref();
                let writer = scope.spawn(move || {
                    let (parent, base) = match name.rsplit_once('/') {
                        Some((parent, base)) => (dir.join(parent), base),
                        None => (dir.to_path_buf(), name),
                    };
                    write_temp_body(&parent, tag, base, data, true)
                });
                (name, writer)
            })
            .collect();
        writers
            .into_iter()
            .map(|(name, w)| {
                (
                    name,
                    w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
                )
            })
            .collect()
    });
    // Every temporary of this run is `temps`'s until the journal names it: a failure before
    // then removes them all.
    let mut failed = None;
    for (name, tmp) in written {
        match tmp {
            Ok(tmp) => temps.0.push((name.to_string(), tmp)),
            Err(e) => {
                failed.get_or_insert(e);
            }
        }
    }
    if let Some(e) = failed {
        return Err(e);
    }
    let mut journal = format!("tmp {tag}\n");
    for (name, _) in files {
        journal.push_str(name.as_ref());
        journal.push('\n');
    }
    journal.push_str("END\n");
    let jtmp = write_temp(dir, tag, "journal", journal.as_bytes(), true)?;
    fs::rename(&jtmp, dir.join(JOURNAL)).map_err(io_err(&jtmp))?;
    // The journal names every temporary now: whatever happens next, they are the next run's
    // to roll forward, never to remove.
    temps.0.clear();
    sync_dir(dir)?;
    let mut parents = BTreeSet::new();
    for (name, _) in files {
        let name = name.as_ref();
        let tmp = temp_path(dir, Some(tag), name);
        fs::rename(&tmp, dir.join(name)).map_err(io_err(&tmp))?;
        parents.insert(dir.join(name).parent().unwrap_or(dir).to_path_buf());
    }
    for p in &parents {
        sync_dir(p)?;
    }
    sync_dir(dir)?;
    let j = dir.join(JOURNAL);
    fs::remove_file(&j).map_err(io_err(&j))?;
    Ok(())
}

/// Temporaries of this run: (name, temporary). Some are written before the publish, the rest
/// by [`publish_files`]. Removed when dropped before the publish's journal names them; from
/// then on they belong to the journal (a failed publish is rolled forward by the next run).
#[derive(Default)]
struct Written(Vec<(String, PathBuf)>);

impl Written {
    fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(n, _)| n == name)
    }
}

impl Drop for Written {
    fn drop(&mut self) {
        for (_, tmp) in self.0.drain(..) {
            let _ = fs::remove_file(tmp);
        }
    }
}

/// The cache of one run: where it is, its key, and the lock held on it.
struct CacheFile {
    path: PathBuf,
    key: cache::CacheKey,
    _lock: File,
}

/// The record of package signers: beside the cache file.
const SIGNERS_FILE: &str = "signers";

fn signers_path(cache: &Path) -> PathBuf {
    cache.parent().unwrap_or(Path::new(".")).join(SIGNERS_FILE)
}

/// The record of who signed each name last (crate::signers): kept beside the cache; rebuilt
/// from the published index when missing or unusable (trusted only when its Packages.sig
/// verifies with this run's key).
fn load_signers(
    dir: &Path,
    cache: Option<&CacheFile>,
    feed_id: &str,
    key: Option<&SecretKey>,
    warn: &mut dyn FnMut(String),
) -> crate::signers::Signers {
    use crate::signers::Signers;
    if let Some(c) = cache {
        let path = signers_path(&c.path);
        match Signers::load(&path, feed_id, &c.key) {
            Ok(Some(s)) => return s,
            Ok(None) => {}
            Err(e) => warn(format!(
                "{}: {e}; rebuilding the record of package signers from the published index",
                path.display()
            )),
        }
    }
    key.and_then(|k| Signers::from_published(dir, &k.public_key()))
        .unwrap_or_default()
}

/// Sets up the cache for the feed at `canon`: resolves its place, loads the key, locks it.
/// Whatever keeps it from being used is a warning (the run then reads every package);
/// only a lock that is held, without `wait`, is an error.
fn open_cache(
    canon: &Path,
    opts: &IndexOptions,
    progress: &dyn Progress,
    warn: &mut dyn FnMut(String),
) -> Result<Option<CacheFile>, IndexError> {
    let CacheMode::On { home, path } = &opts.cache else {
        return Ok(None);
    };
    let Some(home) = home else {
        warn("no cache: neither XDG_CACHE_HOME nor HOME is set to an absolute path, so there is no place for it (pass --cache PATH, or --no-cache to silence this); reading every package".into());
        return Ok(None);
    };
    let key = match cache::CacheKey::load_or_create(&cache::key_path(home)) {
        Ok(k) => k,
        Err(e) => {
            warn(format!(
                "{e}; running without the cache (reading every package)"
            ));
            return Ok(None);
        }
    };
    let path = path
        .clone()
        .unwrap_or_else(|| cache::default_path(home, canon));
    if let Err(e) = cache::create_parent(&path) {
        warn(format!(
            "cache {}: cannot make its directory: {e}; running without the cache (reading every package)",
            path.display()
        ));
        return Ok(None);
    }
    let mut lock_name = path.file_name().unwrap_or_default().to_os_string();
    lock_name.push(".lock");
    let lock_path = path.with_file_name(lock_name);
    let what = format!("the cache {}", path.display());
    let lock = match lock(&lock_path, &what, opts.wait, progress) {
        Ok(l) => l,
        Err(e @ IndexError::Locked { .. }) => return Err(e),
        Err(e) => {
            warn(format!(
                "{e}; running without the cache (reading every package)"
            ));
            return Ok(None);
        }
    };
    remove_cache_temporaries(&path);
    Ok(Some(CacheFile {
        path,
        key,
        _lock: lock,
    }))
}

/// Removes the temporary files (`.archman-tmp.<tag>.<name>`) that runs killed while
/// rewriting the cache at `path` left next to it. Only under the cache's lock.
fn remove_cache_temporaries(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let Ok(entries) = fs::read_dir(if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    }) else {
        return;
    };
    for e in entries.flatten() {
        let file_name = e.file_name();
        let ours = file_name
            .as_bytes()
            .strip_prefix(TMP_PREFIX.as_bytes())
            .and_then(|rest| {
                let dot = rest.iter().position(|&b| b == b'.')?;
                let tag = std::str::from_utf8(&rest[..dot]).ok()?;
                Some(valid_tag(tag) && &rest[dot + 1..] == name.as_bytes())
            });
        if ours == Some(true) {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// Indexes the feed at `dir` and publishes it. See the module documentation.
pub fn index_feed(
    dir: &Path,
    opts: &IndexOptions,
    progress: &dyn Progress,
) -> Result<Summary, IndexError> {
    if !dir.is_dir() {
        return Err(IndexError::NotADir(dir.to_path_buf()));
    }
    let key = opts
        .key
        .as_deref()
        .map(|k| SecretKey::read_path(k, opts.key_passphrase.as_deref()))
        .transpose()?;
    let mut summary = Summary {
        fingerprint: key.as_ref().map(|k| k.fingerprint().to_string()),
        ..Summary::default()
    };
    // Held until the run returns: recovery, reading, publishing and the cache update are
    // one run's alone.
    let _feed_lock = lock(
        &dir.join(LOCK),
        &dir.display().to_string(),
        opts.wait,
        progress,
    )?;
    let tag = run_tag();
    const RECOVERED: &str = "finished or cleaned up an interrupted earlier run";
    let mut recovered = recover_journal(dir)?;
    let canon = dir.canonicalize().map_err(io_err(dir))?;
    // Cached stanzas depend on the layout and the hash fields, so those key the cache too.
    // Stanzas of a run that checks developer signatures carry them: another cache.
    let feed_id = format!(
        "{} md5={} profile={:?}{}",
        canon.display(),
        u8::from(opts.md5),
        opts.profile,
        if opts.developer.mode == DeveloperMode::Off {
            ""
        } else {
            " developer-signatures"
        }
    );
    let mut warn = |w: String| {
        progress.warn(&w);
        summary.warnings.push(w);
    };
    let cache_file = open_cache(&canon, opts, progress, &mut warn)?;
    // The cache that archman kept in the feed up to format 5: never read (anyone who can
    // write the feed could have forged it), and left alone (it is the user's to delete; an
    // older archman may still be run on this feed). Said once: on the run that starts the
    // cache in its new place.
    let old_cache = dir.join(OLD_CACHE_NAME);
    if fs::symlink_metadata(&old_cache).is_ok()
        && cache_file
            .as_ref()
            .is_some_and(|c| fs::symlink_metadata(&c.path).is_err())
    {
        warn(format!(
            "{}: no longer used (archman now keeps its cache outside the feed, in {}); it may be deleted",
            old_cache.display(),
            cache_file
                .as_ref()
                .map_or(String::new(), |c| c.path.display().to_string())
        ));
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.jobs.unwrap_or(0))
        .build()
        .map_err(|e| IndexError::Threads {
            jobs: opts.jobs.unwrap_or(0),
            reason: e.to_string(),
        })?;
    // Stanza text past the budget goes to a file without a name, beside the cache (on the
    // disk of the user's cache, not in a temporary directory that may be memory).
    let spill = Arc::new(Spill::new(
        opts.stanza_memory,
        cache_file.as_ref().and_then(|c| c.path.parent()),
    ));
    // Loading the cache and listing the feed (and taking every file's identity) are
    // independent, and each takes tens of milliseconds on a large feed: side by side.
    let (loaded, walked) = pool.install(|| {
        rayon::join(
            || load_cache(cache_file.as_ref(), &feed_id, &spill),
            || walk(dir, opts.profile),
        )
    });
    let LoadedCache {
        cache: mut loaded,
        unusable: cache_unusable,
        warnings,
    } = loaded;
    // The compressed runs of the last Packages.gz (only with a usable cache: same key),
    // read only once the index is built (and not at all when nothing was read, nothing is
    // gone and the published files are as recorded).
    let gz_parts = cache_file
        .as_ref()
        .filter(|_| !cache_unusable)
        .map(|c| PartsFile {
            cache: &c.path,
            feed_id: &feed_id,
            key: &c.key,
        });
    for w in warnings {
        warn(w);
    }
    let Walked {
        found,
        mut bad,
        leftovers,
        ..
    } = walked?;
    for path in leftovers {
        recovered = true;
        let _ = fs::remove_file(path);
    }
    if recovered {
        warn(RECOVERED.to_string());
    }
    progress.start(found.len() as u64);
    // Hand each file its cache entry; entries left over are files that are gone.
    let mut cache = std::mem::take(&mut loaded.cache);
    let work: Vec<(String, io::Result<FileKey>, Option<cache::Entry>)> = found
        .into_iter()
        .map(|(rel, key)| {
            let e = cache.entries.remove(&rel);
            (rel, key, e)
        })
        .collect();
    // In path order. (Extended, not collected: collected, the list would be made in place
    // of the entries' and keep all their memory.)
    let mut gone: Vec<String> = Vec::new();
    gone.extend(cache.entries.into_paths());
    let old_checked_sig = cache.checked_sig;
    let old_published = cache.published;
    let mut checked_sig = old_checked_sig.clone();
    // The workers read; this thread keeps what they found, each result copied into its own
    // heap as it arrives. What a worker allocates for the long term sits between the
    // temporaries of its next packages, and its allocator cannot give those holes back: kept
    // there, the stanzas of a feed took twice their size (bench/README.md, "Memory").
    // Results arrive as workers finish them; `order` puts them back in the walk's order.
    let mut known: Vec<Known> = Vec::with_capacity(work.len());
    let mut spill_failed = None;
    const CHUNK: usize = 256;
    std::thread::scope(|scope| {
        type Batch = (usize, Vec<Result<Known, BadFile>>);
        let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(8);
        let pool = &pool;
        let progress = &progress;
        scope.spawn(move || {
            pool.install(|| {
                work.into_par_iter()
                    .chunks(CHUNK)
                    .enumerate()
                    .for_each_with(tx, |tx, (c, chunk)| {
                        let found = chunk
                            .into_iter()
                            .map(|(rel, key, e)| {
                                let r = match key {
                                    Ok(key) => {
                                        let path = dir.join(&rel);
                                        let f = Found { rel, path, key };
                                        know(f, e, opts.md5, opts.profile, &opts.developer)
                                    }
                                    Err(err) => Err(BadFile {
                                        path: rel,
                                        reason: err.to_string(),
                                    }),
                                };
                                match &r {
                                    Ok(k) => progress.file(k.rel(), k.cached),
                                    Err(b) => progress.file(&b.path, false),
                                }
                                r
                            })
                            .collect();
                        let _ = tx.send((c * CHUNK, found));
                    })
            })
        });
        for (start, found) in rx {
            let from = known.len();
            for (i, r) in found.into_iter().enumerate() {
                match r {
                    // A cached entry was loaded by this thread already; only what a worker
                    // read from a package moves (its stanza perhaps to the spill).
                    Ok(k) if k.cached => known.push(Known {
                        order: (start + i) as u32,
                        ..k
                    }),
                    Ok(k) => match k.moved_here(&spill) {
                        Ok(k) => known.push(Known {
                            order: (start + i) as u32,
                            ..k
                        }),
                        Err(e) => {
                            spill_failed.get_or_insert(e);
                        }
                    },
                    Err(b) => bad.push(b),
                }
            }
            // The batch's keys, copied into one text of this thread's.
            let batch = &mut known[from..];
            let keys = PackedKey::pack(batch.iter().map(|k| k.key.values()));
            for (k, key) in batch.iter_mut().zip(keys) {
                k.key = key;
            }
        }
    });
    if let Some(e) = spill_failed {
        return Err(IndexError::Spill(e));
    }
    known.sort_unstable_by_key(|k| k.order);
    // The workers' temporaries are gone; what comes next (the index, its compression and
    // signatures) need not be counted on top of the holes they left.
    cli_support::release_free_memory();
    progress.finish();
    // Key consistency: a name keeps its developer key until the roots transfer it.
    let mut signers = None;
    if let Some(keyring) = &opts.developer.keyring
        && opts.developer.mode != DeveloperMode::Off
    {
        let record = load_signers(dir, cache_file.as_ref(), &feed_id, key.as_ref(), &mut warn);
        // Filtered in place: a second list of every package was 12 MB at 60,000.
        known.retain(|k| {
            let name = k.key.package();
            match (k.signed_by, record.previous_for(name, k.key.version())) {
                (Some(new), Some(old))
                    if new != old
                        && !crate::signers::transferred(
                            keyring,
                            name,
                            old,
                            new,
                            opts.developer.now,
                        ) =>
                {
                    bad.push(BadFile {
                        path: k.rel().to_string(),
                        reason: format!(
                            "package {name} {} is signed by developer key {new}, but its published versions were signed by {old}; until the keyring transfers the name (lists {name} itself in {new}'s Packages, or takes it from {old}), only {old} may sign it",
                            k.key.version()
                        ),
                    });
                    false
                }
                _ => true,
            }
        });
        signers = Some(record);
    }
    bad.sort_by(|a, b| a.path.cmp(&b.path));
    if opts.profile == Profile::OpenWrt {
        let mut ar: Vec<&str> = known
            .iter()
            .filter(|k| k.entry.container == Container::Ar)
            .map(|k| k.rel())
            .collect();
        ar.sort_unstable();
        for rel in ar {
            let w = format!("{}: {AR_IPK_WARNING}", dir.join(rel).display());
            progress.warn(&w);
            summary.warnings.push(w);
        }
    }
    if !bad.is_empty() && !opts.skip_bad {
        return Err(IndexError::BadPackages(bad));
    }
    check_duplicates(&known)?;
    summary.packages = known.len();
    summary.cached = known.iter().filter(|k| k.cached).count();
    summary.read = known.len() - summary.cached;
    summary.bad = bad;

    let feed_name = canon
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "feed".into());
    let signed = key.is_some();
    // apt's OpenPGP signatures: with a key, on a feed with a .deb (or --openpgp).
    let openpgp = match (&key, opts.openpgp) {
        (None, _) | (_, OpenPgpMode::Never) => None,
        (Some(k), mode) => (mode == OpenPgpMode::Always
            || known.iter().any(|k| k.rel().ends_with(".deb")))
        .then(|| usign_openpgp::Signer::from_seed(&k.seed()))
        .transpose()
        .map_err(|e| IndexError::OpenPgp(e.to_string()))?,
    };
    let signing = Signing {
        key: key.as_ref(),
        openpgp: openpgp.is_some(),
    };
    summary.openpgp_fingerprint = openpgp.as_ref().map(usign_openpgp::Signer::fingerprint);
    let index_hashes = if let Some(layout) = &opts.debian {
        debian::publish(
            dir,
            layout,
            &known,
            opts,
            &feed_name,
            key.as_ref(),
            openpgp.as_ref(),
            &tag,
            progress,
            &mut summary,
        )?;
        Vec::new()
    } else {
        // Nothing read, nothing gone, and every published file as the last consistent run left
        // it: the feed is up to date unless the settings changed, which the small Release shows.
        let nothing_new =
            summary.read == 0 && gone.is_empty() && !cache_unusable && summary.bad.is_empty();
        if nothing_new
            && !opts.refresh
            && let Some(index_hashes) =
                published_as_recorded(dir, &old_published, opts.profile, signed, openpgp.is_some())
        {
            let old = fs::read_to_string(dir.join("Release"))
                .ok()
                .and_then(|t| Release::parse(&t).ok());
            if old.is_some_and(|old| {
                unchanged(dir, &old, &index_hashes, &known, opts, &feed_name, signing)
            }) {
                return Ok(summary);
            }
        }
        let index = index_files(&known, opts.profile, &spill)?;
        // Signing `Packages` (docs/formats.md §4.7) begins with its SHA-256, which the
        // comparison with the published feed and the Release need too: the signer hashes it
        // and hands the digest over, then goes on while the feed is compared, and is given up
        // if there is nothing to sign.
        let cancel = AtomicBool::new(false);
        // Packages.gz is begun at once too, beside the signer's first pass (on the pool, as
        // the listing was), and given up with it if there is nothing to publish.
        let (gz_cancel, no_packages) = (AtomicBool::new(false), Body::Bytes(Vec::new()));
        let packages = index
            .iter()
            .find(|(n, _)| *n == "Packages")
            .map_or(&no_packages, |(_, b)| b);
        let stanzas = packages.is_stanzas().then_some(packages);
        let decided = std::thread::scope(|scope| -> Result<_, IndexError> {
            // However the scope is left (up to date, an error, or done), what was begun is
            // told to stop before the scope waits for it.
            let _stop = StopOnDrop(&[&cancel, &gz_cancel]);
            let pool = &pool;
            let gz_job =
                scope.spawn(|| pool.install(|| gzip_with_parts(gz_parts, packages, &gz_cancel)));
            let (digest_tx, digest_rx) = std::sync::mpsc::sync_channel::<[u8; 32]>(1);
            let speculative = key.as_ref().zip(stanzas).map(|(k, pieces)| {
                let cancel = &cancel;
                scope.spawn(move || {
                    k.sign_pieces_via_sha256_unless(pieces, cancel, |d| {
                        let _ = digest_tx.send(*d);
                    })
                })
            });
            // None when the signer failed before hashing (it says why when joined).
            let signed_digest = speculative
                .is_some()
                .then(|| digest_rx.recv().ok())
                .flatten();
            let index_hashes: Vec<FileHash> = index
                .iter()
                .map(|(n, d)| match (*n, signed_digest) {
                    ("Packages", Some(sha256)) => Ok(FileHash {
                        sha256: hex::encode(sha256),
                        size: d.len() as u64,
                        name: n.to_string(),
                    }),
                    _ => body_hash(n, d),
                })
                .collect::<Result<_, _>>()?;
            let published = published_release(dir, &index, &index_hashes);
            let same_index = published
                .as_ref()
                .is_some_and(|old| index_hashes.iter().all(|h| old.file(&h.name) == Some(h)));
            let up_to_date = published.as_ref().is_some_and(|old| {
                unchanged(dir, old, &index_hashes, &known, opts, &feed_name, signing)
            });
            if !opts.refresh && up_to_date {
                return Ok((index_hashes, None));
            }
            // An unchanged Packages keeps its signature, checked before reuse.
            let reuse_sig = if same_index {
                fs::read(dir.join("Packages.sig")).ok()
            } else {
                None
            };
            let fresh = |pieces: &Body<'_>, k: &SecretKey| {
                let now = |pieces: &Body<'_>| {
                    k.sign_pieces_via_sha256_unless(pieces, &AtomicBool::new(false), |_| {})
                        .map(|s| s.expect("not cancelled"))
                };
                match speculative {
                    Some(h) => match h.join() {
                        Ok(Ok(Some(sig))) => Ok(sig),
                        Ok(Ok(None)) => now(pieces),
                        Ok(Err(e)) => Err(e),
                        Err(panic) => std::panic::resume_unwind(panic),
                    },
                    None => now(pieces),
                }
            };
            // The index files' own bytes are final: written to their temporaries and synced
            // while the signature and Packages.gz are made.
            let early = scope.spawn(|| -> Result<Written, IndexError> {
                let mut written = Written::default();
                for (name, body) in &index {
                    let tmp = write_temp_body(dir, &tag, name, body, true)?;
                    written.0.push((name.to_string(), tmp));
                }
                Ok(written)
            });
            let finished = finish_outputs(
                &index,
                &index_hashes,
                Reuse {
                    sig: reuse_sig,
                    checked: old_checked_sig.clone(),
                },
                &known,
                opts,
                &feed_name,
                key.as_ref(),
                Fresh {
                    sign: fresh,
                    cancel: &cancel,
                    // `gz_cancel` is set only as the scope is left, after this.
                    gzipped: move || match gz_job.join() {
                        Ok(done) => Ok(done?.expect("not cancelled")),
                        Err(panic) => std::panic::resume_unwind(panic),
                    },
                    write_gz: |gz: &Body<'_>| {
                        let tmp = write_temp_body(dir, &tag, "Packages.gz", gz, true)?;
                        Ok(Written(vec![("Packages.gz".to_string(), tmp)]))
                    },
                },
            );
            let early = early
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p));
            let (mut finished, mut early) = (finished?, early?);
            early.0.append(&mut finished.gz_written.0);
            Ok((index_hashes, Some((finished, early))))
        })?;
        let (index_hashes, finished) = decided;
        if let Some((mut finished, early)) = finished {
            if let Some(w) = finished.parts_unusable.take() {
                progress.warn(&w);
                summary.warnings.push(w);
            }
            let mut out = finished.into_outputs(index);
            let date = settle_date(
                dir,
                &out,
                opts,
                key.as_ref(),
                progress,
                &mut summary.warnings,
            )?;
            out.seal(date, opts.valid_for, key.as_ref(), openpgp.as_ref())?;
            // The compressed parts are saved beside the publish: each part is filed under
            // the hash of its text, so they are right for the next run whichever of the two
            // ends first, or fails.
            let (written, parts_saved) = std::thread::scope(|scope| {
                let parts_saved = cache_file
                    .as_ref()
                    .filter(|_| out.gz_stats.changed)
                    .map(|c| {
                        let (parts, tag, feed_id) = (&out.parts, &tag, &feed_id);
                        scope.spawn(move || {
                            let path = crate::gz_parts::path_for(&c.path);
                            let parent = path.parent().unwrap_or(Path::new("."));
                            replace_via_temp_with(parent, tag, &path, false, |f| {
                                let mut w = io::BufWriter::with_capacity(64 * 1024, f);
                                parts.write_to(&mut w, feed_id, &c.key)?;
                                w.flush()
                            })
                        })
                    });
                let written = publish(dir, &tag, &out, early);
                let parts_saved =
                    parts_saved.map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
                (written, parts_saved)
            });
            if let Some(Err(e)) = parts_saved {
                let w = format!("compressed parts of Packages.gz not kept: {e}");
                progress.warn(&w);
                summary.warnings.push(w);
            }
            summary.written = written?;
            summary.date = Some(date);
            summary.gz_runs = Some((out.gz_stats.compressed, out.gz_stats.runs));
            checked_sig = out.checked_sig;
        }
        index_hashes
    };
    if let (Some(mut record), Some(c)) = (signers, &cache_file) {
        record.publish_all(
            known
                .iter()
                .filter_map(|k| k.signed_by.map(|fp| (k.key.package(), k.key.version(), fp))),
        );
        let path = signers_path(&c.path);
        let bytes = record.to_bytes(&feed_id, &c.key);
        let parent = path.parent().unwrap_or(Path::new("."));
        if let Err(e) = replace_via_temp(parent, &tag, &path, &bytes, true) {
            let w = format!("record of package signers not updated: {e}");
            progress.warn(&w);
            summary.warnings.push(w);
        }
    }
    if let Some(CacheFile {
        path: p, key: ckey, ..
    }) = &cache_file
    {
        // The feed now matches the entries: remember how its files look on disk.
        let published =
            record_published(dir, &index_hashes, opts.profile, signed, openpgp.is_some());
        let sig_changed = checked_sig != old_checked_sig;
        let published_changed = published != old_published;
        let read = || known.iter().filter(|k| !k.cached);
        if read().next().is_some()
            || !gone.is_empty()
            || sig_changed
            || published_changed
            || cache_unusable
        {
            // A few changes are appended as a segment; a rewrite compacts the file.
            let record_len = |k: &Known| k.rel().len() + k.entry.stanza.len() + 160;
            let live: usize = known.iter().map(record_len).sum();
            // A segment is made (in memory) only when its entries alone would be appended.
            let entries_len: usize = read().map(record_len).sum();
            let seg = (!cache_unusable && loaded.appendable(entries_len, live)).then(|| {
                loaded.segment(
                    ckey,
                    read()
                        .map(|k| cache::Record::Put(k.rel(), &k.entry))
                        .chain(gone.iter().map(|g| cache::Record::Gone(g)))
                        .chain(sig_changed.then_some(cache::Record::Sig(checked_sig.as_ref())))
                        .chain(published.iter().map(cache::Record::Published)),
                )
            });
            // The feed is published by now: a cache that cannot be written only costs the next
            // run its reading, so it is a warning, not a failure of this run.
            let written = match seg {
                Some(Ok(seg)) if loaded.appendable(seg.len(), live) => {
                    cache::append(p, &seg).map_err(io_err(p))
                }
                _ => {
                    // Written as it is made, entries in path order.
                    let mut known = known;
                    known.sort_unstable_by(|a, b| a.rel().cmp(b.rel()));
                    let parent = p.parent().unwrap_or(Path::new("."));
                    // Not synced: a cache torn by a crash fails its MAC or does not parse,
                    // and is only ignored, so waiting for the disk here would buy nothing.
                    replace_via_temp_with(parent, &tag, p, false, |f| {
                        let mut w = io::BufWriter::with_capacity(64 * 1024, f);
                        cache::write_cache(
                            &mut w,
                            &feed_id,
                            ckey,
                            checked_sig.as_ref(),
                            known.iter().map(|k| (k.rel(), &k.entry)),
                            &published,
                        )?;
                        w.flush()
                    })
                }
            };
            if let Err(e) = written {
                let w =
                    format!("cache not updated: {e}; the next run reads again what this one read");
                progress.warn(&w);
                summary.warnings.push(w);
            }
        }
    }
    Ok(summary)
}

/// The cache, as [`load_cache`] found it.
struct LoadedCache {
    cache: cache::Loaded,
    /// The cache could not be used (foreign, corrupt, unauthentic, unreadable): it is
    /// rewritten whole.
    unusable: bool,
    /// Why a cache is ignored, to be said once the run is under way.
    warnings: Vec<String>,
}

/// Loads the cache of `cache_file` (none: an empty one). Nothing here fails the run: a
/// cache that cannot be used is a warning and a full read.
fn load_cache(cache_file: Option<&CacheFile>, feed_id: &str, spill: &Arc<Spill>) -> LoadedCache {
    let mut warnings = Vec::new();
    let Some(c) = cache_file else {
        return LoadedCache {
            cache: cache::Loaded::default(),
            unusable: false,
            warnings,
        };
    };
    let (cache, unusable) = match Cache::load_into(&c.path, feed_id, &c.key, spill) {
        Ok(l) => {
            if l.damaged_tail {
                warnings.push(format!(
                    "cache {}: ignoring its damaged end (an interrupted run?)",
                    c.path.display()
                ));
            }
            (l, false)
        }
        Err(e) => {
            warnings.push(e.to_string());
            (cache::Loaded::default(), true)
        }
    };
    LoadedCache {
        cache,
        unusable,
        warnings,
    }
}

/// Parses a size in bytes like `8M`, `512K`, `1G` or `4096` (binary multiples).
pub fn parse_size(text: &str) -> Result<usize, String> {
    let bad = || {
        format!(
            "{:?}: expected a number of bytes, with K, M or G after it",
            text.trim()
        )
    };
    let (digits, unit) = number_and_unit(text);
    let shift = match unit {
        "" | "B" => 0,
        "K" | "k" | "KiB" => 10,
        "M" | "MiB" => 20,
        "G" | "GiB" => 30,
        _ => return Err(bad()),
    };
    digits
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(bad)
}

/// `text` without surrounding blanks, cut where its leading digits end.
fn number_and_unit(text: &str) -> (&str, &str) {
    let text = text.trim();
    text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    )
}

/// Parses a duration like `90m`, `12h`, `7d`, `2w` or `3600s` into seconds.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let (num, unit) = number_and_unit(text);
    let text = text.trim();
    let n: i64 = num.parse().map_err(|_| {
        format!("bad duration {text:?}: expected a number and a unit, like 90m, 12h, 7d")
    })?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => {
            return Err(format!(
                "bad duration {text:?}: unit must be s, m, h, d or w"
            ));
        }
    };
    n.checked_mul(mult)
        .filter(|&s| s > 0)
        .ok_or_else(|| format!("bad duration {text:?}: out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A publish that fails after its journal is complete leaves every temporary the journal
    /// names, early ones included, for the next run to roll forward; one that fails before
    /// leaves none of this run's.
    #[test]
    fn temporaries_written_early_belong_to_the_journal_once_it_is_written() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let tag = "1-00000001";
        let early = |text: &[u8]| {
            let t = write_temp(dir, tag, "Packages", text, true).unwrap();
            Written(vec![("Packages".to_string(), t)])
        };
        let files = [
            ("Packages.gz", Body::Bytes(b"gz".to_vec())),
            ("Packages", Body::Bytes(Vec::new())),
            ("Release", Body::Bytes(b"release".to_vec())),
        ];
        // `Packages` cannot be replaced (a non-empty directory is there): the renames stop
        // after the journal.
        fs::create_dir(dir.join("Packages")).unwrap();
        fs::write(dir.join("Packages/x"), "x").unwrap();
        assert!(publish_files(dir, tag, &files, early(b"new index")).is_err());
        assert!(dir.join(JOURNAL).exists());
        assert!(dir.join(temp_name(Some(tag), "Packages")).exists());
        fs::remove_dir_all(dir.join("Packages")).unwrap();
        assert!(recover(dir).unwrap());
        assert_eq!(fs::read(dir.join("Packages")).unwrap(), b"new index");
        assert_eq!(fs::read(dir.join("Release")).unwrap(), b"release");
        // Dropped before any journal: the early temporary goes.
        let w = early(b"unpublished");
        let t = w.0[0].1.clone();
        drop(w);
        assert!(!t.exists());
    }

    /// Every package file of a deep tree and of a wide directory is found with the identity
    /// `stat` gives.
    #[test]
    fn the_walk_finds_every_package_with_its_identity() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let mut want = std::collections::BTreeMap::new();
        for i in 0..300 {
            let d = format!("pool/{}/p{i}", i % 7);
            fs::create_dir_all(root.join(&d)).unwrap();
            for j in 0..(i % 3) {
                let rel = format!("{d}/p{i}-{j}_1_all.ipk");
                fs::write(root.join(&rel), format!("{i} {j}")).unwrap();
                fs::write(root.join(format!("{rel}.sig")), "not a package").unwrap();
                want.insert(rel, ());
            }
        }
        std::os::unix::fs::symlink("p1-0_1_all.ipk", root.join("pool/1/p1/link_1_all.ipk"))
            .unwrap();
        want.insert("pool/1/p1/link_1_all.ipk".into(), ());
        // Many files in one directory: taken on all threads.
        for i in 0..500 {
            let rel = format!("flat-{i}_1_all.ipk");
            fs::write(root.join(&rel), "x").unwrap();
            want.insert(rel, ());
        }
        let walked = walk(root, Profile::Full).unwrap();
        assert!(walked.bad.is_empty());
        let found: std::collections::BTreeMap<_, _> = walked.found.into_iter().collect();
        assert_eq!(
            found.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>()
        );
        for (rel, key) in found {
            let meta = fs::metadata(root.join(&rel)).unwrap();
            assert_eq!(key.unwrap(), FileKey::of(&meta), "{rel}");
        }
    }

    /// A file gone between its listing and its `stat` is reported as gone, by its path; the
    /// others keep their identities.
    #[test]
    fn a_file_gone_since_the_listing_is_named_as_gone() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("here_1_all.ipk"), "x").unwrap();
        let dir = safe_fs::Dir::open(tmp.path()).unwrap();
        let mut walked = Walked::default();
        for rel in ["sub/here_1_all.ipk", "sub/gone_1_all.ipk"] {
            walked
                .found
                .push((rel.to_string(), Err(io::ErrorKind::Other.into())));
            walked.unstated.push(true);
        }
        walked.take_identities(&dir, "sub/".len());
        let meta = fs::metadata(tmp.path().join("here_1_all.ipk")).unwrap();
        assert_eq!(*walked.found[0].1.as_ref().unwrap(), FileKey::of(&meta));
        let err = walked.found[1].1.as_ref().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(
            err.to_string().contains("No such file or directory"),
            "{err}"
        );
        assert!(walked.unstated.is_empty());
    }

    #[test]
    fn sizes_parse_with_binary_units_and_bad_ones_are_named() {
        assert_eq!(parse_size("8M"), Ok(8 << 20));
        assert_eq!(parse_size(" 512K "), Ok(512 << 10));
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("3GiB"), Ok(3 << 30));
        for bad in ["", "M", "8X", "-1", "8 M", "99999999999999999999G"] {
            let e = parse_size(bad).unwrap_err();
            assert!(e.contains("expected a number of bytes"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn the_signature_field_is_found_only_at_the_start_of_a_line() {
        assert_eq!(
            stanza_signature("Signature: abc\nPackage: a\n"),
            Some("abc")
        );
        assert_eq!(
            stanza_signature("Package: a\nSignature: abc\r\nVersion: 1\n"),
            Some("abc")
        );
        assert_eq!(
            stanza_signature("Package: a\nSignature: last"),
            Some("last")
        );
        assert_eq!(stanza_signature("Package: a\nX-Signature: abc\n"), None);
        assert_eq!(stanza_signature("Package: a\n Signature: abc\n"), None);
        assert_eq!(stanza_signature("Package: a\n"), None);
        // The first of two, as a walk over the lines found it.
        assert_eq!(
            stanza_signature("Package: a\nSignature: one\nSignature: two\n"),
            Some("one")
        );
    }
}
