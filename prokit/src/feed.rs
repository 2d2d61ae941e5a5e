//! Updating a feed and verifying it before anything is stored (docs/threats.md §2–9
//! and §14): `Packages`/`Packages.gz` + `Packages.sig`, and `Release` + `Release.sig` when the
//! feed has them.
//!
//! Owns the per-feed files on disk:
//! - `<lists_dir>/<name>`: the verified index exactly as it was downloaded, and
//!   `<lists_dir>/<name>.sig`, its usign signature. This is opkg-lede's layout, shared with it:
//!   `opkg update` stores the served `Packages.gz` bytes for a `src/gz` feed and the plain
//!   `Packages` for a `src` feed under the feed's name, and the served `Packages.sig` beside it
//!   (opkg-lede 38eccbb, `libopkg/opkg_cmd.c` `opkg_update_cmd`, lines 139–144 and 160–170),
//!   and reads the list back through gunzip for `src/gz` (`libopkg/pkg_hash.c` line 85). So
//!   either tool can read what the other wrote; [`FeedStore::load`] accepts either form,
//!   telling them apart by the gzip magic;
//! - `<state_dir>/<name>/Release`, `Release.sig`: the last accepted Release (opkg ignores
//!   this directory);
//! - `<state_dir>/<name>/state`: a deb822 paragraph with what rollback protection needs:
//!   ```text
//!   Feed: base
//!   Has-Release: yes
//!   Last-Date: 1795056000
//!   Release-SHA256: <hex of the accepted Release>
//!   ```
//!
//! Rules:
//! - Everything is fetched and checked first; only then are the files replaced, each written to
//!   a temporary name, fsync'd and renamed. On any failure the stored copy is untouched.
//! - The signature is over the uncompressed `Packages` (usign/opkg-lede's rule). With
//!   `require_signature` (the default) a missing `Packages.sig` is refused, and `Release.sig`
//!   must verify whenever a `Release` is served. Without it, signatures are neither fetched nor
//!   checked (opkg's `check_signature 0`), but a `Release` is still checked for hashes, dates and
//!   expiry.
//! - A key listed in [`Trust::distrusted`] is refused with its reason even if it is also among
//!   the trusted keys.
//! - `Release` must list the file that was fetched (`Packages.gz` or `Packages`) with its size
//!   and SHA-256; for a `.gz` feed the uncompressed `Packages` is checked too when listed.
//! - `Date` must not go back against the last accepted one; an equal `Date` is accepted only
//!   for the very same `Release` bytes (nothing changed). `Date` more than
//!   [`MAX_CLOCK_SKEW`] seconds in the future, or `Valid-Until` in the past, is refused.
//! - A feed once seen with a `Release` must keep having one (recorded in the state);
//!   `require_release` makes it mandatory from the start.
//! - A corrupt state file is an error, never silently reset (that would reopen rollback).
//! - Crash safety: the state (with the new `Date`) is written before the lists, so a crash
//!   never leaves rollback protection behind the stored index; a crash between writing
//!   `<name>.sig` and `<name>` leaves a pair that [`FeedStore::load`] refuses (the signature no
//!   longer matches) until the next update repairs it.
//! - Lists written by another tool: `opkg update` checks the signature but knows nothing of
//!   `Release`, so it would accept an older, validly signed index (a replay). When prokit has
//!   accepted a `Release` for a feed, [`FeedStore::load`] therefore also requires the stored
//!   list to be the one that `Release` describes, and otherwise asks for `prokit update`.
//!   A feed without a `Release` (OpenWrt's) is trusted on its signature alone, as opkg does.

use std::io;
use std::path::{Path, PathBuf};

use feeds::control::{Paragraph, ParagraphReader};
use feeds::index::{IndexError, PackagesFile};
use feeds::limits::Limits;
use feeds::release::{Release, format_date};
use feeds::usign::{Fingerprint, PublicKey, Signature};
use safe_fs::{Root, WriteOptions};
use sha2::{Digest, Sha256};

use crate::fetch::{FetchError, Fetcher};

/// How far in the future a `Release` `Date` may be (clock skew), in seconds.
pub const MAX_CLOCK_SKEW: i64 = 600;

/// The largest state file read.
const MAX_STATE: u64 = 64 << 10;

/// A configured feed (`src/gz NAME URL` or `src NAME URL`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedSource {
    /// The feed's name: the file name of its list in `lists_dir`.
    pub name: String,
    /// The base URL; `Packages`, `Packages.sig`, … are fetched from beneath it.
    pub url: String,
    /// `src/gz`: fetch `Packages.gz`; `src`: fetch `Packages`.
    pub gz: bool,
}

/// Which keys may sign feeds, and how strict to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trust {
    /// The trusted feed keys.
    pub keys: Vec<PublicKey>,
    /// Fingerprints (16 hex digits; the unpadded form of pre-2020 usign is accepted too) never to trust,
    /// with the reason shown ("revoked in keyring example serial 3", "retired",
    /// "expired on …"). They win over `keys`.
    pub distrusted: Vec<(String, String)>,
    /// Refuse feeds without a valid `Packages.sig` (and `Release.sig`). Default true.
    pub require_signature: bool,
    /// Refuse feeds without a `Release`. Default false (OpenWrt feeds have none).
    pub require_release: bool,
    /// Set when `keys` was narrowed for one feed (`option signed_by FEED FP…`): the text shown
    /// when another trusted key signed it.
    pub scope: Option<String>,
}

impl Default for Trust {
    fn default() -> Self {
        Trust {
            keys: Vec::new(),
            distrusted: Vec::new(),
            require_signature: true,
            require_release: false,
            scope: None,
        }
    }
}

/// Fixed bounds on what an update downloads (threats 8 and 9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedLimits {
    /// Largest `Packages.gz` downloaded. Default 64 MiB.
    pub max_packages_gz: u64,
    /// Largest `Packages`, downloaded or decompressed. Default 256 MiB (OpenWrt's largest
    /// feeds are about 10 MB; a 10 000-package index is 8 MB).
    pub max_packages: u64,
    /// Most bytes of `Packages` per byte of `Packages.gz`, past `ratio_grace`. Default 200
    /// (real indexes compress 4–20×; deflate's ceiling is about 1032×).
    pub max_ratio: u64,
    /// Output below which the ratio is not checked. Default 8 MiB.
    pub ratio_grace: u64,
    /// Largest `Release`. Default 1 MiB.
    pub max_release: u64,
    /// Largest `Packages.sig` / `Release.sig`. Default 4 KiB (usign's own bound).
    pub max_signature: u64,
}

impl Default for FeedLimits {
    fn default() -> Self {
        let feeds = Limits::default();
        FeedLimits {
            max_packages_gz: 64 << 20,
            max_packages: 256 << 20,
            max_ratio: 200,
            ratio_grace: feeds.ratio_grace,
            max_release: 1 << 20,
            max_signature: feeds::usign::MAX_FILE_LEN as u64,
        }
    }
}

/// The text of an index on its way to the parser: each byte fed to the signature check (when
/// signatures are checked) and, when asked, counted and hashed (SHA-256, for `Release`); the
/// first read error (damaged gzip, decompression bomb) kept to be reported as such rather
/// than as a line the parser could not read.
struct Checked<'c, R> {
    inner: R,
    check: Option<&'c mut SignatureCheck>,
    digest: Option<(Sha256, u64)>,
    error: Option<IndexError>,
}

impl<'c, R> Checked<'c, R> {
    fn new(inner: R, check: Option<&'c mut SignatureCheck>) -> Self {
        Checked {
            inner,
            check,
            digest: None,
            error: None,
        }
    }
}

impl<R: io::Read> io::Read for Checked<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                if let Some(c) = self.check.as_deref_mut() {
                    c.update(&buf[..n]);
                }
                if let Some((sha, len)) = &mut self.digest {
                    sha.update(&buf[..n]);
                    *len += n as u64;
                }
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                let err = io::Error::new(e.kind(), e.to_string());
                self.error.get_or_insert(feeds::index::gunzip_error(&e));
                Err(err)
            }
        }
    }
}

/// An index as fetched or as stored, with what decompressing it needs: its text is read
/// through [`StoredList::reader`] ([`FeedStore::update`], [`FeedStore::open_list`]).
struct StoredList {
    feed: String,
    file: String,
    bytes: Vec<u8>,
    /// The bytes, moved out of memory by [`StoredList::move_to_scratch`].
    scratch: Option<std::fs::File>,
    gz: bool,
    limits: Limits,
}

/// The text of a [`StoredList`] on its way to the parser.
type ListReader<'a> = io::BufReader<Checked<'a, Box<dyn io::Read + 'a>>>;

impl StoredList {
    /// The list's text, decompressed when it is gzip'd, through `check` when given.
    fn reader<'a>(&'a self, check: Option<&'a mut SignatureCheck>) -> ListReader<'a> {
        let raw: Box<dyn io::Read + 'a> = match &self.scratch {
            Some(file) => Box::new(io::BufReader::with_capacity(
                32 << 10,
                safe_fs::FileAt::new(file, 0),
            )),
            None => Box::new(&self.bytes[..]),
        };
        let text: Box<dyn io::Read + 'a> = if self.gz {
            Box::new(feeds::index::gunzip_reader(raw, &self.limits))
        } else {
            raw
        };
        io::BufReader::with_capacity(64 << 10, Checked::new(text, check))
    }

    /// Moves the bytes (checked: they do not change) to a scratch file of this process, for
    /// a pass that builds much while it reads: a list of 10,000 packages is 1.7 MB gzip'd,
    /// held beside the universe made from it. When no scratch file can be had, they stay.
    fn move_to_scratch(&mut self) {
        use std::os::unix::fs::FileExt;
        let Ok(file) = safe_fs::scratch_file() else {
            return;
        };
        if file.write_all_at(&self.bytes, 0).is_ok() {
            self.scratch = Some(file);
            self.bytes = Vec::new();
        }
    }

    /// Ends a checked pass: what the parser did not take still goes through the check, and a
    /// damaged stream (gzip, decompression bomb) is reported. The size and SHA-256 of the
    /// text when the reader was asked for them.
    fn drain(&self, mut rest: ListReader<'_>) -> Result<Option<(Sha256, u64)>, FeedError> {
        let _ = io::copy(&mut rest, &mut io::sink());
        let checked = rest.into_inner();
        match checked.error {
            Some(e) => Err(self.bad_index(gunzip_reason(e))),
            None => Ok(checked.digest),
        }
    }

    fn bad_index(&self, reason: String) -> FeedError {
        FeedError::BadIndex {
            feed: self.feed.clone(),
            file: self.file.clone(),
            reason,
        }
    }
}

/// Parses every stanza `reader` gives, keeping none: how many there were, and the error that
/// stopped the reader, if one did.
fn count_stanzas<R: io::BufRead>(
    reader: &mut ParagraphReader<R>,
) -> (usize, Option<feeds::control::ControlError>) {
    let mut stanzas = 0;
    for p in reader.by_ref() {
        match p {
            Ok(_) => stanzas += 1,
            Err(e) => return (stanzas, Some(e)),
        }
    }
    (stanzas, None)
}

/// What an update found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateReport {
    /// Stanzas in the new index.
    pub packages: usize,
    /// The key that signed `Packages` (16 hex digits), when signatures are checked.
    pub fingerprint: Option<String>,
    /// The `Date` of the accepted `Release`, when the feed has one.
    pub release_date: Option<i64>,
    /// Nothing changed since the last update (the stored files were left as they were).
    pub unchanged: bool,
    /// The index fetched (`…/Packages.gz` or `…/Packages`), as configured.
    pub index_url: String,
    /// The SHA-256 of the uncompressed `Packages` whose signature was verified.
    pub sha256: String,
}

/// Why an update or a load failed. Every message names the feed and the file (URL or path),
/// and for key problems the fingerprint.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// Downloading a file failed (not found, too large, network).
    #[error("feed {feed:?}: {source}")]
    Fetch {
        feed: String,
        #[source]
        source: FetchError,
    },
    /// A required signature is missing.
    #[error(
        "feed {feed:?}: {file}: missing: the feed is unsigned or its signature was stripped, and signatures are required"
    )]
    Unsigned { feed: String, file: String },
    /// The signature file is not a usign signature (an HTML error page, …).
    #[error("feed {feed:?}: {file}: not a usign signature (starts with {start}): {reason}")]
    NotASignature {
        feed: String,
        file: String,
        start: String,
        reason: String,
    },
    /// Signed by a key that is not among the trusted keys.
    #[error("feed {feed:?}: {file}: signed by key {fingerprint}, which is not trusted{}", scope.as_deref().map(|s| format!(" for this feed ({s})")).unwrap_or_default())]
    UntrustedKey {
        feed: String,
        file: String,
        fingerprint: Fingerprint,
        /// Why the key is not trusted here though it may be elsewhere (`signed_by`).
        scope: Option<String>,
    },
    /// The feed's `Release` names another feed than the one first accepted here.
    #[error(
        "feed {feed:?}: {file}: the Release says {now}, but this feed's accepted Releases said {was}: another feed's index served in its place? refused (if the feed really was renamed, remove {} deliberately)",
        state.display()
    )]
    IdentityChanged {
        feed: String,
        file: String,
        was: String,
        now: String,
        state: PathBuf,
    },
    /// Signed by a key that is explicitly distrusted (revoked, retired, expired).
    #[error("feed {feed:?}: {file}: signed by key {fingerprint}, which is not trusted: {reason}")]
    DistrustedKey {
        feed: String,
        file: String,
        fingerprint: Fingerprint,
        reason: String,
    },
    /// The signature does not verify: the file or the signature was altered.
    #[error(
        "feed {feed:?}: {file}: bad signature by key {fingerprint}: the file or its signature was altered"
    )]
    BadSignature {
        feed: String,
        file: String,
        fingerprint: Fingerprint,
    },
    /// The index cannot be decompressed or parsed, or is too large once decompressed.
    #[error("feed {feed:?}: {file}: {reason}")]
    BadIndex {
        feed: String,
        file: String,
        reason: String,
    },
    /// The `Release` file cannot be read.
    #[error("feed {feed:?}: {file}: {reason}")]
    BadRelease {
        feed: String,
        file: String,
        reason: String,
    },
    /// A fetched file does not match what `Release` says about it.
    #[error("feed {feed:?}: {file}: {detail}: tampered or mixed-up files?")]
    ReleaseMismatch {
        feed: String,
        file: String,
        detail: String,
    },
    /// `Date` went back (threat 5).
    #[error(
        "feed {feed:?}: {file}: Date {date} is older than the last accepted Date {last}: rollback (replay of an older Release) refused"
    )]
    Rollback {
        feed: String,
        file: String,
        date: String,
        last: String,
    },
    /// Same `Date` as the last accepted `Release`, but different bytes.
    #[error(
        "feed {feed:?}: {file}: Date {date} equals the last accepted Date but the Release differs: replayed or re-signed feed refused"
    )]
    SameDate {
        feed: String,
        file: String,
        date: String,
    },
    /// `Date` too far in the future (threat 7).
    #[error(
        "feed {feed:?}: {file}: Date {date} is in the future (now {now}, more than {MAX_CLOCK_SKEW} s of clock skew)"
    )]
    FutureDate {
        feed: String,
        file: String,
        date: String,
        now: String,
    },
    /// `Valid-Until` has passed (threat 6).
    #[error(
        "feed {feed:?}: {file}: expired on {valid_until} (Valid-Until; now {now}): stale or frozen feed"
    )]
    Expired {
        feed: String,
        file: String,
        valid_until: String,
        now: String,
    },
    /// No `Release`, but one is required.
    #[error("feed {feed:?}: {file}: missing, but {why}")]
    ReleaseMissing {
        feed: String,
        file: String,
        why: String,
    },
    /// The state file is unreadable or corrupt.
    #[error("feed {feed:?}: state file {}: {reason}", path.display())]
    State {
        feed: String,
        path: PathBuf,
        reason: String,
    },
    /// Reading or writing a stored file failed.
    #[error("feed {feed:?}: {}: {reason}", path.display())]
    Io {
        feed: String,
        path: PathBuf,
        reason: String,
    },
    /// A file in a key directory is not a usign public key, or the directory is unreadable.
    #[error("{}: {reason}", path.display())]
    KeyFile { path: PathBuf, reason: String },
    /// The stored list is not the one the last accepted `Release` describes.
    #[error(
        "feed {feed:?}: {file}: not the index of the last Release prokit accepted ({detail}): replaced by another tool (opkg update?) or altered; run `prokit update` to fetch and check the feed again"
    )]
    ListReplaced {
        feed: String,
        file: String,
        detail: String,
    },
    /// The feed name cannot be used as a file name.
    #[error("feed {name:?}: bad feed name: {reason}")]
    BadName { name: String, reason: &'static str },
}

impl Trust {
    /// Every usign public key file in the directory `rel` of `root` (`etc/opkg/keys`), read
    /// through the root (a symlink resolves inside it, never to a host file). Subdirectories
    /// and names starting with `.` are skipped; any other file that is not a public key is an
    /// error naming it.
    pub fn from_key_dir(root: &Root, rel: &str) -> Result<Trust, FeedError> {
        let err = |path: &Path, reason: String| FeedError::KeyFile {
            path: path.into(),
            reason,
        };
        let dir = root.open_dir(rel, false).map_err(|e| {
            err(
                &e.path.clone(),
                format!("cannot {}: {}", e.op, e.io_error()),
            )
        })?;
        let mut keys = Vec::new();
        for name in dir.entries().map_err(|e| err(dir.path(), e.to_string()))? {
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') {
                continue;
            }
            let path = dir.path().join(name);
            let bytes = match root.read_file(&format!("{rel}/{name}"), 4096) {
                Ok(Some(b)) => b,
                Ok(None) => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::IsADirectory | io::ErrorKind::InvalidInput
                    ) =>
                {
                    continue;
                }
                Err(e) => {
                    return Err(err(&path, format!("cannot {}: {}", e.op, e.io_error())));
                }
            };
            let key = PublicKey::parse(&bytes)
                .map_err(|e| err(&path, format!("not a usign public key: {}", e.root())))?;
            keys.push(key);
        }
        Ok(Trust {
            keys,
            ..Trust::default()
        })
    }

    /// Checks `sig_bytes` as a usign signature of `message` by a trusted, not distrusted key;
    /// returns its fingerprint. `feed` and `file` (a URL or path) go into the error message.
    pub fn verify(
        &self,
        feed: &str,
        file: &str,
        message: &[u8],
        sig_bytes: &[u8],
    ) -> Result<Fingerprint, FeedError> {
        let mut check = self.verifier(feed, file, sig_bytes)?;
        check.update(message);
        check.finish()
    }

    /// [`Trust::verify`] of a message given in parts: the signature parsed and its key found
    /// trusted and not distrusted now, the message fed to the check as it goes by.
    pub fn verifier(
        &self,
        feed: &str,
        file: &str,
        sig_bytes: &[u8],
    ) -> Result<SignatureCheck, FeedError> {
        let sig = Signature::parse(sig_bytes).map_err(|e| FeedError::NotASignature {
            feed: feed.into(),
            file: file.into(),
            start: preview(sig_bytes),
            reason: e.root().to_string(),
        })?;
        let fingerprint = sig.fingerprint();
        if let Some((_, reason)) = self
            .distrusted
            .iter()
            .find(|(fp, _)| same_fingerprint(fp, fingerprint))
        {
            return Err(FeedError::DistrustedKey {
                feed: feed.into(),
                file: file.into(),
                fingerprint,
                reason: reason.clone(),
            });
        }
        let key = self
            .keys
            .iter()
            .find(|k| k.fingerprint() == fingerprint)
            .ok_or_else(|| FeedError::UntrustedKey {
                feed: feed.into(),
                file: file.into(),
                fingerprint,
                scope: self.scope.clone(),
            })?;
        let bad = || FeedError::BadSignature {
            feed: feed.into(),
            file: file.into(),
            fingerprint,
        };
        let verifier = key.verifier(&sig).map_err(|_| bad())?;
        Ok(SignatureCheck {
            verifier,
            bad: bad(),
            fingerprint,
        })
    }
}

/// A signature check under way ([`Trust::verifier`]).
pub struct SignatureCheck {
    verifier: feeds::usign::Verifier,
    /// The error if it fails.
    bad: FeedError,
    fingerprint: Fingerprint,
}

impl SignatureCheck {
    pub fn update(&mut self, part: &[u8]) {
        self.verifier.update(part);
    }

    /// The signing key's fingerprint when the signature holds for everything given.
    pub fn finish(self) -> Result<Fingerprint, FeedError> {
        self.verifier.finish().map_err(|_| self.bad)?;
        Ok(self.fingerprint)
    }
}

/// Why an index could not be decompressed, for a [`FeedError::BadIndex`].
fn gunzip_reason(e: IndexError) -> String {
    match e {
        IndexError::TooLarge(n) => {
            format!("decompresses to more than {n} bytes (decompression bomb?)")
        }
        other => other.to_string(),
    }
}

fn same_fingerprint(text: &str, fp: Fingerprint) -> bool {
    match text.trim().parse::<Fingerprint>() {
        Ok(parsed) => parsed == fp,
        Err(_) => text.trim().eq_ignore_ascii_case(&fp.to_string()),
    }
}

/// The start of a file for an error message: its first line, at most 40 characters, quoted.
fn preview(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "\"\" (empty file)".into();
    }
    let line = bytes.split(|&b| b == b'\n').next().unwrap_or(bytes);
    let text = String::from_utf8_lossy(line);
    let mut out: String = text.chars().take(40).collect();
    let cut = out.len() < text.len() || line.len() < bytes.len();
    out = out.trim_end_matches('\r').escape_debug().to_string();
    if cut {
        out.push('…');
    }
    format!("\"{out}\"")
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// What the state file records about a feed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct State {
    /// `Some` once a Release was accepted: its Date and the SHA-256 of its bytes.
    release: Option<(i64, String)>,
    /// The identity (`Origin`, `Label`) of the accepted Releases, pinned at the first one
    /// (docs/threats.md §23). `None` in a state written before identities were kept.
    identity: Option<Identity>,
}

/// What a `Release` says it is: its `Origin` and `Label`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Identity {
    origin: Option<String>,
    label: Option<String>,
}

impl Identity {
    fn of(release: &Release) -> Identity {
        Identity {
            origin: release.origin.clone(),
            label: release.label.clone(),
        }
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |v: &Option<String>| {
            v.as_deref()
                .map_or("(none)".to_string(), |v| format!("{v:?}"))
        };
        write!(
            f,
            "Origin {}, Label {}",
            show(&self.origin),
            show(&self.label)
        )
    }
}

impl State {
    fn to_text(&self, feed: &str) -> String {
        let mut out = match &self.release {
            None => format!("Feed: {feed}\nHas-Release: no\n"),
            Some((date, sha)) => format!(
                "Feed: {feed}\nHas-Release: yes\nLast-Date: {date}\nRelease-SHA256: {sha}\n"
            ),
        };
        if let Some(id) = &self.identity {
            out.push_str("Identity: pinned\n");
            if let Some(o) = &id.origin {
                out.push_str(&format!("Origin: {o}\n"));
            }
            if let Some(l) = &id.label {
                out.push_str(&format!("Label: {l}\n"));
            }
        }
        out
    }

    fn parse(text: &str, feed: &str) -> Result<State, String> {
        let p = Paragraph::parse(text).map_err(|e| e.to_string())?;
        match p.get("Feed") {
            Some(name) if name == feed => {}
            Some(name) => return Err(format!("it is the state of feed {name:?}")),
            None => return Err("missing Feed field".into()),
        }
        match p.get("Has-Release") {
            Some("no") => {
                if p.contains("Last-Date") || p.contains("Release-SHA256") {
                    return Err("Has-Release: no, but a Last-Date or Release-SHA256".into());
                }
                Ok(State {
                    release: None,
                    identity: None,
                })
            }
            Some("yes") => {
                let date = p
                    .get("Last-Date")
                    .ok_or("Has-Release: yes without Last-Date")?;
                let date: i64 = date
                    .parse()
                    .map_err(|_| format!("bad Last-Date {date:?} (expected seconds since 1970)"))?;
                let sha = p
                    .get("Release-SHA256")
                    .ok_or("Has-Release: yes without Release-SHA256")?;
                if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(format!("bad Release-SHA256 {sha:?}"));
                }
                let identity = match p.get("Identity") {
                    None => None,
                    Some("pinned") => Some(Identity {
                        origin: p.get("Origin").map(str::to_string),
                        label: p.get("Label").map(str::to_string),
                    }),
                    Some(other) => return Err(format!("bad Identity {other:?} (expected pinned)")),
                };
                Ok(State {
                    release: Some((date, sha.to_ascii_lowercase())),
                    identity,
                })
            }
            Some(other) => Err(format!("bad Has-Release {other:?} (expected yes or no)")),
            None => Err("missing Has-Release field".into()),
        }
    }
}

/// The stored, verified feed indexes and their state. Every file is reached through the
/// root ([`safe_fs::Root`]): directories are walked component by component with
/// `O_NOFOLLOW`, symlinks resolved inside the root as a chroot would, so neither the
/// configuration nor a symlink planted in the root can send a read or a write outside it
/// (docs/threats.md §18).
#[derive(Debug, Clone)]
pub struct FeedStore {
    root: std::sync::Arc<Root>,
    /// The lists directory and prokit's state directory, relative to the root.
    lists: String,
    state: String,
    limits: FeedLimits,
}

/// A verified `Release` ready to be stored.
struct AcceptedRelease {
    bytes: Vec<u8>,
    sig: Option<Vec<u8>>,
    date: i64,
    sha256: String,
    identity: Identity,
}

impl FeedStore {
    /// `lists`: where opkg-lede keeps lists (`<lists>/<name>` = the index as served,
    /// `Packages.gz` or `Packages`, `<lists>/<name>.sig`); `state`: prokit's per-feed state
    /// (`<state>/<name>/Release`, `Release.sig`, `state`); both relative to `root` (a `..`
    /// climbing above it is an error). Created when first written.
    pub fn new(
        root: std::sync::Arc<Root>,
        lists: &str,
        state: &str,
    ) -> Result<FeedStore, FeedError> {
        let confine = |p: &str| {
            Root::confine(p).map_err(|e| FeedError::KeyFile {
                path: root.path().join(p.trim_start_matches('/')),
                reason: e.to_string(),
            })
        };
        Ok(FeedStore {
            lists: confine(lists)?,
            state: confine(state)?,
            root,
            limits: FeedLimits::default(),
        })
    }

    /// The same store with other download bounds.
    pub fn with_limits(mut self, limits: FeedLimits) -> FeedStore {
        self.limits = limits;
        self
    }

    fn rel(dir: &str, name: &str) -> String {
        if dir.is_empty() {
            name.to_string()
        } else {
            format!("{dir}/{name}")
        }
    }

    /// Where the verified index of `feed_name` is kept, as served (gzip'd for `src/gz`): for
    /// messages; the file is only ever reached through the root.
    pub fn list_path(&self, feed_name: &str) -> PathBuf {
        self.root.path().join(Self::rel(&self.lists, feed_name))
    }

    fn list_rel(&self, feed_name: &str) -> String {
        Self::rel(&self.lists, feed_name)
    }

    fn sig_rel(&self, feed_name: &str) -> String {
        Self::rel(&self.lists, &format!("{feed_name}.sig"))
    }

    fn state_rel(&self, feed_name: &str, file: &str) -> String {
        Self::rel(&self.state, &format!("{feed_name}/{file}"))
    }

    fn state_path(&self, feed_name: &str) -> PathBuf {
        self.root.path().join(self.state_rel(feed_name, "state"))
    }

    /// The file `rel` inside the root, at most `max` bytes; `None` when absent.
    fn read(&self, rel: &str, max: u64) -> Result<Option<Vec<u8>>, String> {
        self.root.read_file(rel, max).map_err(|e| {
            if e.kind() == io::ErrorKind::FileTooLarge {
                format!("larger than {max} bytes")
            } else {
                format!("cannot {}: {}", e.op, e.io_error())
            }
        })
    }

    /// Replaces the file `rel` inside the root atomically (fsynced).
    fn write(&self, feed: &str, rel: &str, bytes: &[u8]) -> Result<(), FeedError> {
        self.root
            .write_atomic(rel, bytes, WriteOptions::default())
            .map_err(|e| FeedError::Io {
                feed: feed.into(),
                path: e.path.clone(),
                reason: format!("cannot {}: {}", e.op, e.io_error()),
            })
    }

    /// Removes the file `rel` inside the root, if present.
    fn remove(&self, feed: &str, rel: &str) -> Result<(), FeedError> {
        self.root
            .remove_file(rel)
            .map(|_| ())
            .map_err(|e| FeedError::Io {
                feed: feed.into(),
                path: e.path.clone(),
                reason: format!("cannot {}: {}", e.op, e.io_error()),
            })
    }

    fn read_state(&self, feed: &str) -> Result<State, FeedError> {
        let path = self.state_path(feed);
        let bytes = match self.read(&self.state_rel(feed, "state"), MAX_STATE) {
            Ok(Some(b)) => b,
            Ok(None) => return Ok(State::default()),
            Err(reason) => {
                return Err(FeedError::State {
                    feed: feed.into(),
                    path,
                    reason,
                });
            }
        };
        let text = std::str::from_utf8(&bytes).map_err(|_| FeedError::State {
            feed: feed.into(),
            path: path.clone(),
            reason: "not UTF-8".into(),
        })?;
        State::parse(text, feed).map_err(|reason| FeedError::State {
            feed: feed.into(),
            path,
            reason: format!("corrupt ({reason}); not resetting it, as that would allow a rollback: fix or remove it deliberately"),
        })
    }

    /// Fetches, verifies, and only then replaces the stored copy (atomically, fsync'd). On any
    /// failure the previously stored index stays as it was. `now` is the current time in
    /// seconds since 1970 (for `Date` and `Valid-Until`).
    pub fn update(
        &self,
        feed: &FeedSource,
        trust: &Trust,
        fetcher: &Fetcher,
        now: i64,
    ) -> Result<UpdateReport, FeedError> {
        let name = feed.name.as_str();
        check_name(name)?;
        let state = self.read_state(name)?;
        let lim = &self.limits;
        let base = feed.url.trim_end_matches('/');
        let url_of = |file: &str| format!("{base}/{file}");
        let fetch_err = |source| FeedError::Fetch {
            feed: name.into(),
            source,
        };
        let optional = |url: &str, max: u64| -> Result<Option<Vec<u8>>, FeedError> {
            match fetcher.get_bytes(url, max) {
                Ok(b) => Ok(Some(b)),
                Err(e) if e.is_not_found() => Ok(None),
                Err(e) => Err(fetch_err(e)),
            }
        };

        // 1. The index, bounded, and decompressed with caps (threats 8, 9).
        let index_name = if feed.gz { "Packages.gz" } else { "Packages" };
        let index_url = url_of(index_name);
        let max = if feed.gz {
            lim.max_packages_gz
        } else {
            lim.max_packages
        };
        let raw = fetcher.get_bytes(&index_url, max).map_err(fetch_err)?;
        if feed.gz {
            self.check_gzip(name, &index_url, &raw)?;
        }

        // 2. Its signature, over the uncompressed Packages (threats 2, 3, 4, 14).
        let sig_url = url_of("Packages.sig");
        let (packages_sig, mut check) = if trust.require_signature {
            let sig = fetch_signature(fetcher, name, &sig_url, lim.max_signature)?;
            let sig = sig.ok_or_else(|| FeedError::Unsigned {
                feed: name.into(),
                file: sig_url.clone(),
            })?;
            let check = trust.verifier(name, &sig_url, &sig)?;
            (Some(sig), Some(check))
        } else {
            (None, None)
        };

        // One pass over the uncompressed index, never whole in memory (a Debian-size one is
        // tens of megabytes): decompressed within the caps (threats 8, 9), through the
        // signature check, counted and hashed for Release, and every stanza parsed (counted,
        // not kept: the list is stored as it came). A damaged stream is reported first, then
        // a bad signature, then a stanza that does not parse.
        let fetched = StoredList {
            feed: name.into(),
            file: index_url.clone(),
            bytes: raw,
            scratch: None,
            gz: feed.gz,
            limits: self.gunzip_limits(),
        };
        let mut text = fetched.reader(check.as_mut());
        text.get_mut().digest = Some((Sha256::new(), 0));
        let mut reader = ParagraphReader::new(text);
        let (stanzas, unparsed) = count_stanzas(&mut reader);
        let (sha, len) = fetched
            .drain(reader.into_inner())?
            .expect("asked for above");
        let packages_sha = hex::encode(sha.finalize());
        let fingerprint = check.map(SignatureCheck::finish).transpose()?;
        if let Some(e) = unparsed {
            return Err(fetched.bad_index(IndexError::from(e).to_string()));
        }
        let raw = fetched.bytes;

        // 3. Release (threats 2, 3, 5, 6, 7).
        let release_url = url_of("Release");
        let release = match optional(&release_url, lim.max_release)? {
            None => {
                if let Some((date, _)) = &state.release {
                    return Err(FeedError::ReleaseMissing {
                        feed: name.into(),
                        file: release_url,
                        why: format!(
                            "the feed had one before (last accepted Date {}): stripped?",
                            format_date(*date)
                        ),
                    });
                }
                if trust.require_release {
                    return Err(FeedError::ReleaseMissing {
                        feed: name.into(),
                        file: release_url,
                        why: "a Release is required (require_release)".into(),
                    });
                }
                None
            }
            Some(bytes) => Some(self.check_release(
                name,
                base,
                bytes,
                trust,
                fetcher,
                &state,
                now,
                (index_name, &raw),
                feed.gz.then_some((len, packages_sha.as_str())),
            )?),
        };

        // 4. Store: state first, then the lists (see the module docs).
        let new_state = State {
            release: release.as_ref().map(|r| (r.date, r.sha256.clone())),
            identity: release.as_ref().map(|r| r.identity.clone()),
        };
        let (list_rel, sig_rel) = (self.list_rel(name), self.sig_rel(name));
        // The stored list is compared a block at a time: read whole, it would be a second
        // copy of the index in memory beside `raw`.
        let unchanged = new_state == state
            && self
                .root
                .open_file(&list_rel)
                .ok()
                .flatten()
                .is_some_and(|mut f| safe_fs::same_contents(&mut f, &raw).unwrap_or(false))
            && self.read(&sig_rel, lim.max_signature).ok().flatten() == packages_sig;
        if !unchanged {
            if let Some(r) = &release {
                self.write(name, &self.state_rel(name, "Release"), &r.bytes)?;
                let p = self.state_rel(name, "Release.sig");
                match &r.sig {
                    Some(sig) => self.write(name, &p, sig)?,
                    None => self.remove(name, &p)?,
                }
            }
            let p = self.state_rel(name, "state");
            self.write(name, &p, new_state.to_text(name).as_bytes())?;
            match &packages_sig {
                Some(sig) => self.write(name, &sig_rel, sig)?,
                None => self.remove(name, &sig_rel)?,
            }
            self.write(name, &list_rel, &raw)?;
        }
        Ok(UpdateReport {
            packages: stanzas,
            fingerprint: fingerprint.map(|f| f.to_string()),
            release_date: release.map(|r| r.date),
            unchanged,
            sha256: packages_sha,
            index_url,
        })
    }

    /// Verifies a fetched `Release` against its signature, the fetched index, the clock and
    /// the state.
    #[allow(clippy::too_many_arguments)]
    fn check_release(
        &self,
        feed: &str,
        base: &str,
        bytes: Vec<u8>,
        trust: &Trust,
        fetcher: &Fetcher,
        state: &State,
        now: i64,
        (index_name, raw): (&str, &[u8]),
        uncompressed: Option<(u64, &str)>,
    ) -> Result<AcceptedRelease, FeedError> {
        let file = format!("{base}/Release");
        let sig = if trust.require_signature {
            let sig_url = format!("{base}/Release.sig");
            let sig = fetch_signature(fetcher, feed, &sig_url, self.limits.max_signature)?
                .ok_or_else(|| FeedError::Unsigned {
                    feed: feed.into(),
                    file: sig_url.clone(),
                })?;
            trust.verify(feed, &sig_url, &bytes, &sig)?;
            Some(sig)
        } else {
            None
        };
        let bad = |reason: String| FeedError::BadRelease {
            feed: feed.into(),
            file: file.clone(),
            reason,
        };
        let text = std::str::from_utf8(&bytes).map_err(|_| bad("not UTF-8 text".into()))?;
        let release = Release::parse(text).map_err(|e| bad(e.to_string()))?;

        // The fetched index must be listed, and match; the uncompressed one too when listed.
        let check = |name: &str,
                     (size, sha): (u64, &str),
                     required: bool|
         -> Result<(), FeedError> {
            let url = format!("{base}/{name}");
            let Some(entry) = release.file(name) else {
                return if required {
                    Err(FeedError::ReleaseMismatch {
                        feed: feed.into(),
                        file: url,
                        detail: format!("not listed in Release ({file})"),
                    })
                } else {
                    Ok(())
                };
            };
            if entry.size != size || entry.sha256 != sha {
                return Err(FeedError::ReleaseMismatch {
                    feed: feed.into(),
                    file: url,
                    detail: format!(
                        "size {size} and SHA-256 {sha}, but Release says size {} and SHA-256 {}",
                        entry.size, entry.sha256
                    ),
                });
            }
            Ok(())
        };
        check(index_name, (raw.len() as u64, &sha256_hex(raw)), true)?;
        if let Some(packages) = uncompressed {
            check("Packages", packages, false)?;
        }

        if release.date > now.saturating_add(MAX_CLOCK_SKEW) {
            return Err(FeedError::FutureDate {
                feed: feed.into(),
                file,
                date: format_date(release.date),
                now: format_date(now),
            });
        }
        if let Some(valid_until) = release.valid_until.filter(|&v| v < now) {
            return Err(FeedError::Expired {
                feed: feed.into(),
                file,
                valid_until: format_date(valid_until),
                now: format_date(now),
            });
        }
        let sha256 = sha256_hex(&bytes);
        if let Some((last, last_sha)) = &state.release {
            if release.date < *last {
                return Err(FeedError::Rollback {
                    feed: feed.into(),
                    file,
                    date: format_date(release.date),
                    last: format_date(*last),
                });
            }
            if release.date == *last && sha256 != *last_sha {
                return Err(FeedError::SameDate {
                    feed: feed.into(),
                    file,
                    date: format_date(release.date),
                });
            }
        }
        let identity = Identity::of(&release);
        if state.release.is_some()
            && let Some(pinned) = &state.identity
            && *pinned != identity
        {
            return Err(FeedError::IdentityChanged {
                feed: feed.into(),
                file,
                was: pinned.to_string(),
                now: identity.to_string(),
                state: self.state_path(feed),
            });
        }
        Ok(AcceptedRelease {
            bytes,
            sig,
            date: release.date,
            sha256,
            identity,
        })
    }

    /// The stored, verified index of a feed, or `None` if it was never updated. The list may
    /// be gzip'd (`src/gz`, as opkg-lede stores it) or plain. With `require_signature`,
    /// `<name>.sig` is verified again against `trust` (so a key distrusted since the update is
    /// no longer accepted). When a `Release` was accepted for the feed, the list must be the
    /// one it describes (see the module docs).
    pub fn load(&self, feed_name: &str, trust: &Trust) -> Result<Option<PackagesFile>, FeedError> {
        Ok(self.load_signed(feed_name, trust)?.map(|(index, _)| index))
    }

    /// [`FeedStore::load`], with the key that signed the index (`None` when signatures are
    /// not checked).
    ///
    /// The index is decompressed as it is parsed and every byte of it goes through the
    /// signature check on the way, so a Debian-size index is never in memory twice (as text
    /// and as stanzas); nothing parsed is returned unless the signature holds for all of it.
    /// The errors come in the order of the checks: the list against the `Release`, the
    /// signature file and its key, the decompression, the signature over the index, and
    /// last the index's own syntax.
    pub fn load_signed(
        &self,
        feed_name: &str,
        trust: &Trust,
    ) -> Result<Option<(PackagesFile, Option<Fingerprint>)>, FeedError> {
        let Some((stored, mut check)) = self.open_list(feed_name, trust)? else {
            return Ok(None);
        };
        let (index, rest) = PackagesFile::read_from(stored.reader(check.as_mut()));
        stored.drain(rest)?;
        let signer = check.map(SignatureCheck::finish).transpose()?;
        let index = index.map_err(|e| stored.bad_index(e.to_string()))?;
        Ok(Some((index, signer)))
    }

    /// The stored, verified index of a feed handed over one stanza at a time, in file order,
    /// so that neither its text nor all its stanzas are ever whole in memory: what a
    /// universe of tens of thousands of packages is built from. `None` if the feed was never
    /// updated; else how many stanzas were handed over and the key that signed the index.
    /// `each` gets each stanza with how many the index has.
    ///
    /// Nothing is handed over before all of the index has been checked: a first pass
    /// decompresses it through the signature check and parses every stanza (keeping none),
    /// with the errors of [`FeedStore::load_signed`] in the same order; the second pass
    /// parses the same bytes, held in memory since they were read (and compressed when the
    /// list is: a tenth of the text), again and hands the stanzas over.
    pub fn for_each_stanza(
        &self,
        feed_name: &str,
        trust: &Trust,
        each: &mut dyn FnMut(Paragraph, usize),
    ) -> Result<Option<(usize, Option<Fingerprint>)>, FeedError> {
        let Some((mut stored, mut check)) = self.open_list(feed_name, trust)? else {
            return Ok(None);
        };
        let mut reader = ParagraphReader::new(stored.reader(check.as_mut()));
        let (stanzas, unparsed) = count_stanzas(&mut reader);
        stored.drain(reader.into_inner())?;
        let signer = check.map(SignatureCheck::finish).transpose()?;
        if let Some(e) = unparsed {
            return Err(stored.bad_index(IndexError::from(e).to_string()));
        }
        // The second pass builds what `each` makes of the stanzas: the checked bytes wait in
        // a file of this process meanwhile (docs/on-disk-state.md §3.5).
        stored.move_to_scratch();
        let mut count = 0;
        for p in ParagraphReader::new(stored.reader(None)) {
            // The bytes parsed above: they cannot fail now, but if they did, nothing more is
            // handed over.
            let p = p.map_err(|e| stored.bad_index(IndexError::from(e).to_string()))?;
            each(p, stanzas);
            count += 1;
        }
        Ok(Some((count, signer)))
    }

    /// A feed's stored list, checked against its accepted `Release`, with the check of its
    /// signature ready (when signatures are checked); `None` when the feed was never updated.
    fn open_list(
        &self,
        feed_name: &str,
        trust: &Trust,
    ) -> Result<Option<(StoredList, Option<SignatureCheck>)>, FeedError> {
        check_name(feed_name)?;
        let path = self.list_path(feed_name);
        let io = |path: &Path, reason: String| FeedError::Io {
            feed: feed_name.into(),
            path: path.into(),
            reason,
        };
        let Some(bytes) = self
            .read(&self.list_rel(feed_name), self.limits.max_packages)
            .map_err(|r| io(&path, r))?
        else {
            return Ok(None);
        };
        let file = path.display().to_string();
        let gz = bytes.starts_with(&GZIP_MAGIC);
        let state = self.read_state(feed_name)?;
        if let Some((_, release_sha)) = &state.release {
            self.check_list_against_release(feed_name, &file, &bytes, gz, release_sha)?;
        }
        let check = if trust.require_signature {
            let sig_path = self.root.path().join(self.sig_rel(feed_name));
            let sig = self
                .read(&self.sig_rel(feed_name), self.limits.max_signature)
                .map_err(|r| io(&sig_path, r))?
                .ok_or_else(|| FeedError::Unsigned {
                    feed: feed_name.into(),
                    file: sig_path.display().to_string(),
                })?;
            Some(trust.verifier(feed_name, &file, &sig)?)
        } else {
            None
        };
        let stored = StoredList {
            feed: feed_name.into(),
            file,
            bytes,
            scratch: None,
            gz,
            limits: self.gunzip_limits(),
        };
        Ok(Some((stored, check)))
    }

    /// Refuses a gzip'd index that is not gzip at all (a captive portal's login page), naming
    /// it by its start.
    fn check_gzip(&self, feed: &str, file: &str, gz: &[u8]) -> Result<(), FeedError> {
        if !gz.starts_with(&GZIP_MAGIC) {
            return Err(FeedError::BadIndex {
                feed: feed.into(),
                file: file.into(),
                reason: format!(
                    "not gzip data (starts with {}): an error or login page served in its place?",
                    preview(gz)
                ),
            });
        }
        Ok(())
    }

    /// The bounds an index is decompressed within (threats 8, 9).
    fn gunzip_limits(&self) -> Limits {
        let lim = &self.limits;
        Limits {
            max_index: lim.max_packages,
            max_ratio: lim.max_ratio,
            ratio_grace: lim.ratio_grace,
            ..Limits::default()
        }
    }

    /// The stored list must be what the stored, last accepted `Release` lists for it
    /// (`Packages.gz` for a gzip'd list, `Packages` for a plain one).
    fn check_list_against_release(
        &self,
        feed: &str,
        file: &str,
        list: &[u8],
        gz: bool,
        release_sha: &str,
    ) -> Result<(), FeedError> {
        let release_rel = self.state_rel(feed, "Release");
        let release_path = self.root.path().join(&release_rel);
        let state_err = |reason: String| FeedError::State {
            feed: feed.into(),
            path: release_path.clone(),
            reason,
        };
        let bytes = self
            .read(&release_rel, self.limits.max_release)
            .map_err(&state_err)?
            .ok_or_else(|| {
                state_err("missing, but the state records an accepted Release".into())
            })?;
        if sha256_hex(&bytes) != release_sha {
            return Err(state_err(
                "does not match the Release-SHA256 in the state file: altered".into(),
            ));
        }
        let release = std::str::from_utf8(&bytes)
            .map_err(|_| "not UTF-8 text".to_string())
            .and_then(|t| Release::parse(t).map_err(|e| e.to_string()))
            .map_err(state_err)?;
        let name = if gz { "Packages.gz" } else { "Packages" };
        let detail = match release.file(name) {
            None => format!("that Release does not list {name}"),
            Some(entry) => {
                let sha = sha256_hex(list);
                if entry.size == list.len() as u64 && entry.sha256 == sha {
                    return Ok(());
                }
                format!(
                    "{name} of size {} and SHA-256 {sha}, but the Release dated {} lists size {} and SHA-256 {}",
                    list.len(),
                    format_date(release.date),
                    entry.size,
                    entry.sha256
                )
            }
        };
        Err(FeedError::ListReplaced {
            feed: feed.into(),
            file: file.into(),
            detail,
        })
    }
}

/// The first two bytes of every gzip stream.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Fetches a signature file: `None` when it does not exist. One too large for a signature
/// is reported as "not a usign signature", showing its start, like other garbage served in
/// its place (an HTML error page).
fn fetch_signature(
    fetcher: &Fetcher,
    feed: &str,
    url: &str,
    max: u64,
) -> Result<Option<Vec<u8>>, FeedError> {
    let mut buf = Vec::new();
    match fetcher.get(url, max, &mut buf) {
        Ok(_) => Ok(Some(buf)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(FetchError::TooLarge { limit, .. }) => Err(FeedError::NotASignature {
            feed: feed.into(),
            file: url.into(),
            start: preview(&buf),
            reason: format!("more than {limit} bytes, larger than any signature"),
        }),
        Err(source) => Err(FeedError::Fetch {
            feed: feed.into(),
            source,
        }),
    }
}

/// Refuses a feed name that cannot be a file name in `lists_dir`.
fn check_name(name: &str) -> Result<(), FeedError> {
    let reason = if name.is_empty() {
        "empty"
    } else if name.len() > 200 {
        "longer than 200 bytes"
    } else if name.contains(['/', '\0']) || name.chars().any(char::is_control) {
        "contains a slash or a control character"
    } else if name.starts_with('.') {
        "starts with a dot"
    } else if name.ends_with(".sig") {
        "ends with .sig (the name of another feed's signature)"
    } else {
        return Ok(());
    };
    Err(FeedError::BadName {
        name: name.into(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    /// A list's second pass reads from a scratch file what the first read from memory: the
    /// same text, gzip'd or not.
    #[test]
    fn a_list_moved_to_scratch_reads_back_the_same_text() {
        use std::io::Read;
        let text = b"Package: a\nVersion: 1\n\nPackage: b\nVersion: 2\n".repeat(5000);
        for gz in [false, true] {
            let bytes = if gz {
                feeds::index::gzip(&text)
            } else {
                text.clone()
            };
            let mut list = super::StoredList {
                feed: "f".into(),
                file: "lists/f".into(),
                bytes,
                scratch: None,
                gz,
                limits: super::Limits::default(),
            };
            let read = |l: &super::StoredList| {
                let mut out = Vec::new();
                l.reader(None).read_to_end(&mut out).unwrap();
                out
            };
            assert_eq!(read(&list), text);
            list.move_to_scratch();
            assert!(list.scratch.is_some() && list.bytes.is_empty());
            assert_eq!(read(&list), text, "gz: {gz}");
        }
    }

    use super::*;
    use std::fs;
    use std::io::Write;

    fn store_in(root: &Path, lists: &str, state: &str) -> FeedStore {
        FeedStore::new(std::sync::Arc::new(Root::open(root).unwrap()), lists, state).unwrap()
    }
    use crate::fetch::FetchOptions;
    use crate::fetch::test_server::{PyServer, canned};
    use feeds::release::FileHash;
    use feeds::usign::SecretKey;
    use std::collections::BTreeMap;
    use std::time::Duration;

    const NOW: i64 = 1_800_000_000;
    const DAY: i64 = 86_400;

    fn fetcher() -> Fetcher {
        Fetcher::new(&FetchOptions {
            timeout: Duration::from_secs(10),
            retries: 0,
            ca_file: None,
            credentials: Default::default(),
        })
        .unwrap()
    }

    fn key() -> (SecretKey, PublicKey) {
        SecretKey::generate(None).unwrap()
    }

    /// A Packages file with `n` packages at version `v`.
    fn packages(n: usize, v: &str) -> Vec<u8> {
        let stanzas: Vec<Paragraph> = (0..n)
            .map(|i| {
                let control = Paragraph::parse(&format!(
                    "Package: pkg{i}\nVersion: {v}\nArchitecture: all\nDescription: test {i}\n"
                ))
                .unwrap();
                feeds::index::build_stanza(
                    &control,
                    &format!("pkg{i}_{v}_all.ipk"),
                    100 + i as u64,
                    &sha256_hex(format!("{i}{v}").as_bytes()),
                    None,
                    false,
                )
                .unwrap()
            })
            .collect();
        feeds::index::write_packages(&stanzas)
    }

    /// What a published feed directory holds.
    struct Published {
        packages: Vec<u8>,
        gz: Vec<u8>,
        sig: Vec<u8>,
        release: Option<Vec<u8>>,
        release_sig: Option<Vec<u8>>,
    }

    /// Builds the files of a feed signed by `sk`; a Release dated `date` (valid 7 days) when
    /// given.
    fn publish(dir: &Path, sk: &SecretKey, packages: &[u8], date: Option<i64>) -> Published {
        let gz = feeds::index::gzip(packages);
        let sig = sk.sign(packages).unwrap().to_file_bytes();
        let (release, release_sig) = match date {
            Some(date) => {
                let r = Release {
                    archive: None,
                    origin: Some("test".into()),
                    label: Some("test".into()),
                    date,
                    valid_until: Some(date + 7 * DAY),
                    architectures: vec!["all".into()],
                    sha256: vec![
                        FileHash {
                            sha256: sha256_hex(packages),
                            size: packages.len() as u64,
                            name: "Packages".into(),
                        },
                        FileHash {
                            sha256: sha256_hex(&gz),
                            size: gz.len() as u64,
                            name: "Packages.gz".into(),
                        },
                    ],
                };
                let text = r.to_text().into_bytes();
                let rsig = sk.sign(&text).unwrap().to_file_bytes();
                (Some(text), Some(rsig))
            }
            None => (None, None),
        };
        let p = Published {
            packages: packages.to_vec(),
            gz,
            sig,
            release,
            release_sig,
        };
        p.write(dir);
        p
    }

    impl Published {
        fn write(&self, dir: &Path) {
            fs::write(dir.join("Packages"), &self.packages).unwrap();
            fs::write(dir.join("Packages.gz"), &self.gz).unwrap();
            fs::write(dir.join("Packages.sig"), &self.sig).unwrap();
            for (name, data) in [
                ("Release", &self.release),
                ("Release.sig", &self.release_sig),
            ] {
                match data {
                    Some(d) => fs::write(dir.join(name), d).unwrap(),
                    None => {
                        let _ = fs::remove_file(dir.join(name));
                    }
                }
            }
        }
    }

    /// A served feed directory, a store, and the trust in one key.
    struct Fixture {
        www: tempfile::TempDir,
        local: tempfile::TempDir,
        server: PyServer,
        sk: SecretKey,
        trust: Trust,
        store: FeedStore,
        fetcher: Fetcher,
    }

    impl Fixture {
        fn new() -> Fixture {
            let www = tempfile::tempdir().unwrap();
            let local = tempfile::tempdir().unwrap();
            let server = PyServer::start(www.path());
            let (sk, pk) = key();
            let store = store_in(local.path(), "lists", "state");
            Fixture {
                www,
                local,
                server,
                sk,
                trust: Trust {
                    keys: vec![pk],
                    ..Trust::default()
                },
                store,
                fetcher: fetcher(),
            }
        }

        fn source(&self, gz: bool) -> FeedSource {
            FeedSource {
                name: "base".into(),
                url: format!("{}/", self.server.url()),
                gz,
            }
        }

        fn dir(&self) -> &Path {
            self.www.path()
        }

        fn publish(&self, packages: &[u8], date: Option<i64>) -> Published {
            publish(self.dir(), &self.sk, packages, date)
        }

        fn update(&self, gz: bool, now: i64) -> Result<UpdateReport, FeedError> {
            self.store
                .update(&self.source(gz), &self.trust, &self.fetcher, now)
        }

        /// Every stored file and its bytes.
        fn snapshot(&self) -> BTreeMap<PathBuf, Vec<u8>> {
            let mut out = BTreeMap::new();
            let mut stack = vec![self.local.path().to_path_buf()];
            while let Some(dir) = stack.pop() {
                for e in fs::read_dir(&dir).unwrap() {
                    let p = e.unwrap().path();
                    if p.is_dir() {
                        stack.push(p);
                    } else {
                        out.insert(p.clone(), fs::read(&p).unwrap());
                    }
                }
            }
            out
        }

        fn loaded_versions(&self) -> Vec<String> {
            let index = self.store.load("base", &self.trust).unwrap().unwrap();
            index
                .stanzas
                .iter()
                .map(|s| s.get("Version").unwrap().to_string())
                .collect()
        }

        /// Runs a failing update and checks nothing stored changed; returns the message.
        fn refused(&self, gz: bool, now: i64) -> (FeedError, String) {
            let before = self.snapshot();
            let e = self.update(gz, now).unwrap_err();
            assert_eq!(before, self.snapshot(), "stored state changed after: {e}");
            let msg = e.to_string();
            assert!(msg.starts_with("feed \"base\": "), "{msg}");
            (e, msg)
        }
    }

    #[test]
    fn update_then_load_plain_and_gz() {
        for gz in [false, true] {
            let fx = Fixture::new();
            let p = fx.publish(&packages(3, "1.0"), None);
            let r = fx.update(gz, NOW).unwrap();
            assert_eq!(r.packages, 3);
            assert_eq!(r.fingerprint, Some(fx.sk.fingerprint().to_string()));
            assert_eq!(r.release_date, None);
            assert!(!r.unchanged);
            // opkg-lede's layout: the index exactly as served (opkg_cmd.c lines 139-144:
            // `Packages.gz` for src/gz, `Packages` for src) and the served signature beside it
            let served = if gz { &p.gz } else { &p.packages };
            assert_eq!(&fs::read(fx.store.list_path("base")).unwrap(), served);
            assert_eq!(
                fs::read(fx.local.path().join("lists/base.sig")).unwrap(),
                p.sig
            );
            assert_eq!(fx.loaded_versions(), ["1.0", "1.0", "1.0"]);
            // again: unchanged
            let r = fx.update(gz, NOW).unwrap();
            assert!(r.unchanged);
            // a newer feed replaces it
            fx.publish(&packages(2, "2.0"), None);
            let r = fx.update(gz, NOW).unwrap();
            assert!(!r.unchanged);
            assert_eq!(fx.loaded_versions(), ["2.0", "2.0"]);
        }
    }

    /// A stored list is decompressed as it is parsed and checked: a list changed after the
    /// update is a bad signature even when it does not parse (the signature is judged over
    /// all of it first), one that decompresses past the bound is named as such, and a
    /// signed list that does not parse is a bad index. Handed over a stanza at a time
    /// (`for_each_stanza`, what a universe is built from), the errors are the same and no
    /// stanza of a refused list is handed over, not even those before the damage.
    #[test]
    fn a_stored_list_changed_since_the_update_is_refused_as_it_streams() {
        let mut fx = Fixture::new();
        fx.publish(&packages(2, "1.0"), None);
        fx.update(true, NOW).unwrap();
        let list = fx.store.list_path("base");
        let load = |fx: &Fixture| {
            let whole = fx.store.load("base", &fx.trust).unwrap_err().to_string();
            let mut handed = 0;
            let each = fx
                .store
                .for_each_stanza("base", &fx.trust, &mut |_, _| handed += 1)
                .unwrap_err()
                .to_string();
            assert_eq!(each, whole);
            assert_eq!(handed, 0, "stanzas of a refused list were handed over");
            whole
        };
        fs::write(&list, feeds::index::gzip(b"Package: a\nnot a field line\n")).unwrap();
        let msg = load(&fx);
        assert!(msg.contains("signature") && !msg.contains("line"), "{msg}");
        fs::write(&list, feeds::index::gzip(&packages(2, "6.6"))).unwrap();
        let msg = load(&fx);
        assert!(msg.contains("signature"), "{msg}");
        fx.store = fx.store.clone().with_limits(FeedLimits {
            max_packages: 1 << 20,
            ..FeedLimits::default()
        });
        fs::write(&list, feeds::index::gzip(&vec![b'\n'; 2 << 20])).unwrap();
        assert!(
            load(&fx).contains("decompresses to more than 1048576 bytes"),
            "{}",
            load(&fx)
        );
        // Signed, but not an index: the signature holds, the syntax does not.
        let text = b"Package: a\nVersion: 1\n\nPackage: b\nnot a field line\n".to_vec();
        fs::write(&list, feeds::index::gzip(&text)).unwrap();
        fs::write(
            fx.local.path().join("lists/base.sig"),
            fx.sk.sign(&text).unwrap().to_file_bytes(),
        )
        .unwrap();
        let msg = load(&fx);
        assert!(
            !msg.contains("signature") && msg.contains("line 5"),
            "{msg}"
        );
        // And a signed, well-formed list loads.
        let text = packages(3, "7.0");
        fs::write(&list, feeds::index::gzip(&text)).unwrap();
        fs::write(
            fx.local.path().join("lists/base.sig"),
            fx.sk.sign(&text).unwrap().to_file_bytes(),
        )
        .unwrap();
        assert_eq!(fx.loaded_versions(), ["7.0", "7.0", "7.0"]);
        let mut handed = Vec::new();
        let (count, signer) = fx
            .store
            .for_each_stanza("base", &fx.trust, &mut |p, total| {
                handed.push((p.get("Version").unwrap().to_string(), total))
            })
            .unwrap()
            .unwrap();
        assert_eq!(count, 3);
        assert_eq!(signer, Some(fx.sk.public_key().fingerprint()));
        assert_eq!(handed, vec![("7.0".to_string(), 3); 3]);
    }

    #[test]
    fn a_login_page_served_as_packages_gz_is_named_by_its_start() {
        let fx = Fixture::new();
        fx.publish(&packages(1, "1.0"), None);
        fs::write(fx.dir().join("Packages.gz"), "<html><body>Please log in").unwrap();
        let (_, msg) = fx.refused(true, NOW);
        assert!(
            msg.contains("Packages.gz: not gzip data (starts with \"<html><body>Please log in\")"),
            "{msg}"
        );
    }

    #[test]
    fn lists_written_by_opkg_load_in_either_form() {
        // What `opkg update` leaves for a src/gz feed: the served Packages.gz and Packages.sig
        // (opkg_cmd.c lines 139-144, 160-170), no prokit state at all.
        for stored_gz in [true, false] {
            let fx = Fixture::new();
            let p = fx.publish(&packages(2, "1.0"), None);
            let lists = fx.local.path().join("lists");
            fs::create_dir_all(&lists).unwrap();
            let list = if stored_gz { &p.gz } else { &p.packages };
            fs::write(lists.join("base"), list).unwrap();
            fs::write(lists.join("base.sig"), &p.sig).unwrap();
            assert_eq!(fx.loaded_versions(), ["1.0", "1.0"]);
            // altered: the signature no longer verifies, whichever form
            let mut bad = p.packages.clone();
            bad.extend_from_slice(b"Package: evil\nVersion: 1\n\n");
            let bad = if stored_gz {
                feeds::index::gzip(&bad)
            } else {
                bad
            };
            fs::write(lists.join("base"), bad).unwrap();
            let e = fx.store.load("base", &fx.trust).unwrap_err();
            assert!(matches!(e, FeedError::BadSignature { .. }), "{e}");
        }
    }

    #[test]
    fn list_replaced_after_an_accepted_release_is_refused_until_update() {
        let fx = Fixture::new();
        let old = fx.publish(&packages(1, "1.0"), Some(NOW - 2 * DAY));
        let lists = fx.local.path().join("lists");
        fx.publish(&packages(1, "2.0"), Some(NOW - DAY));
        fx.update(true, NOW).unwrap();
        assert_eq!(fx.loaded_versions(), ["2.0"]);
        // Another tool (opkg, which ignores Release) stores the older, validly signed index:
        // a replay that prokit's Release check would have refused.
        fs::write(lists.join("base"), &old.gz).unwrap();
        fs::write(lists.join("base.sig"), &old.sig).unwrap();
        let e = fx.store.load("base", &fx.trust).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, FeedError::ListReplaced { .. }), "{msg}");
        assert!(msg.contains("run `prokit update`"), "{msg}");
        assert!(msg.contains("Packages.gz of size"), "{msg}");
        // prokit update repairs it.
        fx.update(true, NOW).unwrap();
        assert_eq!(fx.loaded_versions(), ["2.0"]);
    }

    #[test]
    fn release_identity_is_pinned_at_first_accept() {
        let fx = Fixture::new();
        let publish_as = |origin: &str, date: i64| {
            let p = fx.publish(&packages(1, "1.0"), Some(date));
            let mut r =
                Release::parse(std::str::from_utf8(&p.release.clone().unwrap()).unwrap()).unwrap();
            r.origin = Some(origin.into());
            r.label = Some(origin.into());
            let bytes = r.to_text().into_bytes();
            fs::write(fx.dir().join("Release"), &bytes).unwrap();
            fs::write(
                fx.dir().join("Release.sig"),
                fx.sk.sign(&bytes).unwrap().to_file_bytes(),
            )
            .unwrap();
        };
        publish_as("base", NOW - 2 * DAY);
        fx.update(true, NOW).unwrap();
        let state = fs::read_to_string(fx.local.path().join("state/base/state")).unwrap();
        assert!(
            state.contains("Identity: pinned\nOrigin: base\nLabel: base\n"),
            "{state}"
        );
        // A newer, validly signed Release of another feed: refused, nothing stored changes.
        publish_as("packages", NOW - DAY);
        let (e, msg) = fx.refused(true, NOW);
        assert!(matches!(e, FeedError::IdentityChanged { .. }), "{msg}");
        assert!(
            msg.contains("the Release says Origin \"packages\", Label \"packages\", but this feed's accepted Releases said Origin \"base\", Label \"base\""),
            "{msg}"
        );
        // The same feed, later: accepted.
        publish_as("base", NOW - DAY + 60);
        fx.update(true, NOW).unwrap();
    }

    #[test]
    fn a_state_without_an_identity_pins_the_next_one() {
        let text = "Feed: base\nHas-Release: yes\nLast-Date: 5\nRelease-SHA256: ".to_string()
            + &"a".repeat(64)
            + "\n";
        let s = State::parse(&text, "base").unwrap();
        assert_eq!(s.identity, None);
        let pinned = State {
            identity: Some(Identity {
                origin: Some("o".into()),
                label: None,
            }),
            ..s
        };
        assert_eq!(
            State::parse(&pinned.to_text("base"), "base").unwrap(),
            pinned
        );
    }

    #[test]
    fn update_with_release_records_the_date() {
        let fx = Fixture::new();
        fx.publish(&packages(1, "1.0"), Some(NOW - DAY));
        let r = fx.update(true, NOW).unwrap();
        assert_eq!(r.release_date, Some(NOW - DAY));
        let state = fs::read_to_string(fx.local.path().join("state/base/state")).unwrap();
        assert!(state.contains("Has-Release: yes\n"), "{state}");
        assert!(
            state.contains(&format!("Last-Date: {}\n", NOW - DAY)),
            "{state}"
        );
        assert!(fx.local.path().join("state/base/Release.sig").is_file());
        // the same Release again is fine and unchanged
        assert!(fx.update(true, NOW).unwrap().unchanged);
        // a newer one is accepted
        fx.publish(&packages(1, "2.0"), Some(NOW));
        let r = fx.update(true, NOW).unwrap();
        assert_eq!(r.release_date, Some(NOW));
        assert_eq!(fx.loaded_versions(), ["2.0"]);
    }

    #[test]
    fn update_over_file_url() {
        let fx = Fixture::new();
        fx.publish(&packages(2, "1.0"), Some(NOW));
        let src = FeedSource {
            name: "local".into(),
            url: format!("file://{}", fx.dir().display()),
            gz: true,
        };
        let r = fx.store.update(&src, &fx.trust, &fx.fetcher, NOW).unwrap();
        assert_eq!(r.packages, 2);
        assert_eq!(
            fx.store
                .load("local", &fx.trust)
                .unwrap()
                .unwrap()
                .stanzas
                .len(),
            2
        );
    }

    #[test]
    fn load_of_a_feed_never_updated_is_none() {
        let fx = Fixture::new();
        assert!(fx.store.load("base", &fx.trust).unwrap().is_none());
    }

    #[test]
    fn threat2_tampered_packages_refused() {
        let fx = Fixture::new();
        fx.publish(&packages(2, "1.0"), None);
        fx.update(false, NOW).unwrap();
        let p = fx.publish(&packages(2, "2.0"), None);
        let mut evil = p.packages.clone();
        evil.extend_from_slice(b"Package: evil\nVersion: 1\nArchitecture: all\nFilename: evil.ipk\nSize: 1\nSHA256sum: 00\n\n");
        fs::write(fx.dir().join("Packages"), &evil).unwrap();
        let (e, msg) = fx.refused(false, NOW);
        assert!(matches!(e, FeedError::BadSignature { .. }), "{msg}");
        assert!(msg.contains("/Packages.sig: bad signature by key"), "{msg}");
        assert!(msg.contains(&fx.sk.fingerprint().to_string()), "{msg}");
        assert_eq!(fx.loaded_versions(), ["1.0", "1.0"]);
    }

    #[test]
    fn threat2_tampered_packages_gz_refused() {
        let fx = Fixture::new();
        fx.publish(&packages(2, "1.0"), None);
        fx.update(true, NOW).unwrap();
        fx.publish(&packages(2, "2.0"), None);
        fs::write(
            fx.dir().join("Packages.gz"),
            feeds::index::gzip(&packages(3, "6.6")),
        )
        .unwrap();
        let (e, msg) = fx.refused(true, NOW);
        assert!(matches!(e, FeedError::BadSignature { .. }), "{msg}");
        // not even gzip
        fs::write(fx.dir().join("Packages.gz"), b"garbage").unwrap();
        let (e, msg) = fx.refused(true, NOW);
        assert!(matches!(e, FeedError::BadIndex { .. }), "{msg}");
        assert!(
            msg.contains("/Packages.gz: not gzip data (starts with \"garbage\")"),
            "{msg}"
        );
        assert_eq!(fx.loaded_versions(), ["1.0", "1.0"]);
    }

    #[test]
    fn threat2_index_not_matching_release_refused() {
        // Mix and match: an older, validly signed Packages.gz + sig beside the current Release.
        let fx = Fixture::new();
        let old = fx.publish(&packages(2, "1.0"), Some(NOW - 2 * DAY));
        fx.update(true, NOW - 2 * DAY).unwrap();
        fx.publish(&packages(2, "2.0"), Some(NOW));
        fs::write(fx.dir().join("Packages.gz"), &old.gz).unwrap();
        fs::write(fx.dir().join("Packages.sig"), &old.sig).unwrap();
        let (e, msg) = fx.refused(true, NOW);
        assert!(matches!(e, FeedError::ReleaseMismatch { .. }), "{msg}");
        assert!(msg.contains("/Packages.gz: size"), "{msg}");
        assert!(msg.contains("but Release says"), "{msg}");
        // the uncompressed one is checked for a plain feed
        fs::write(fx.dir().join("Packages"), &old.packages).unwrap();
        let (e, msg) = fx.refused(false, NOW);
        assert!(matches!(e, FeedError::ReleaseMismatch { .. }), "{msg}");
        assert!(msg.contains("/Packages: size"), "{msg}");
    }

    #[test]
    fn release_not_listing_the_index_refused() {
        let fx = Fixture::new();
        let p = fx.publish(&packages(1, "1.0"), None);
        let r = Release {
            date: NOW,
            sha256: vec![FileHash {
                sha256: sha256_hex(&p.packages),
                size: p.packages.len() as u64,
                name: "Packages".into(),
            }],
            ..Release::default()
        };
        let text = r.to_text().into_bytes();
        fs::write(fx.dir().join("Release"), &text).unwrap();
        fs::write(
            fx.dir().join("Release.sig"),
            fx.sk.sign(&text).unwrap().to_file_bytes(),
        )
        .unwrap();
        let (e, msg) = fx.refused(true, NOW);
        assert!(matches!(e, FeedError::ReleaseMismatch { .. }), "{msg}");
        assert!(msg.contains("/Packages.gz: not listed in Release"), "{msg}");
        // the plain feed is listed: accepted
        fx.update(false, NOW).unwrap();
    }

    #[test]
    fn threat3_missing_signature_refused() {
        let fx = Fixture::new();
        fx.publish(&packages(1, "1.0"), None);
        fx.update(true, NOW).unwrap();
        fx.publish(&packages(1, "2.0"), None);
        fs::remove_file(fx.dir().join("Packages.sig")).unwrap();
        let (e, msg) = fx.refused(true, NOW);
        assert!(matches!(e, FeedError::Unsigned { .. }), "{msg}");
        assert!(
            msg.contains("/Packages.sig: missing: the feed is unsigned"),
            "{msg}"
        );
        assert_eq!(fx.loaded_versions(), ["1.0"]);
    }

    #[test]
    fn unsigned_feed_accepted_when_signatures_are_not_required() {
        let mut fx = Fixture::new();
        fx.publish(&packages(1, "1.0"), None);
        fs::remove_file(fx.dir().join("Packages.sig")).unwrap();
        fx.trust.require_signature = false;
        let r = fx.update(true, NOW).unwrap();
        assert_eq!(r.fingerprint, None);
        assert!(!fx.local.path().join("lists/base.sig").exists());
        assert_eq!(fx.loaded_versions(), ["1.0"]);
    }

    #[test]
    fn threat3_stripped_release_refused() {
        let fx = Fixture::new();
        fx.publish(&packages(1, "1.0"), Some(NOW - DAY));
        fx.update(true, NOW).unwrap();
        // the attacker serves a validly signed index but drops Release (and its freshness)
        fx.publish(&packages(1, "2.0"), None);
        let (e, msg) = fx.refused(true, NOW);
        assert!(matches!(e, FeedError::ReleaseMissing { .. }), "{msg}");
        assert!(
            msg.contains("/Release: missing, but the feed had one before"),
            "{msg}"
        );
    }

    #[test]
    fn threat3_stripped_release_signature_refused() {
        let fx = Fixture::new();
        fx.publish(&packages(1, "1.0"), Some(NOW));
        fs::remove_file(fx.dir().join("Release.sig")).unwrap();
        let (e, msg) = fx.refused(true, NOW);
        assert!(matches!(e, FeedError::Unsigned { .. }), "{msg}");
        assert!(msg.contains("/Release.sig: missing"), "{msg}");
    }

    #[test]
    fn require_release_refuses_a_feed_without_one() {
        let mut fx = Fixture::new();
        fx.trust.require_release = true;
        fx.publish(&packages(1, "1.0"), None);
        let (e, msg) = fx.refused(true, NOW);
        assert!(matches!(e, FeedError::ReleaseMissing { .. }), "{msg}");
        assert!(msg.contains("require_release"), "{msg}");
        fx.publish(&packages(1, "1.0"), Some(NOW));
        fx.update(true, NOW).unwrap();
    }

    #[test]
    fn threat4_unknown_key_refused() {
        let fx = Fixture::new();
        fx.publish(&packages(1, "1.0"), None);
        fx.update(true, NOW).unwrap();
        let (other, _) = key();
        publish(fx.dir(), &other, &packages(1, "2.0"), None);
        let (e, msg) = fx.refused(true, NOW);
        assert!(matches!(e, FeedError::UntrustedKey { .. }), "{msg}");
        assert!(
            msg.contains(&format!(
                "/Packages.sig: signed by key {}, which is not trusted",
                other.fingerprint()
            )),
            "{msg}"
        );
        assert_eq!(fx.loaded_versions(), ["1.0"]);
    }

    #[test]
    fn threat4_release_signed_by_unknown_key_refused() {
        let fx = Fixture::new();
        fx.publish(&packages(1, "1.0"), Some(NOW));
        let (other, _) = key();
        let release = fs::read(fx.dir().join("Release")).unwrap();
        fs::write(
            fx.dir().join("Release.sig"),
            other.sign(&release).unwrap().to_file_bytes(),
        )
        .unwrap();
        let (e, msg) = fx.refused(true, NOW);
        assert!(matches!(e, FeedError::UntrustedKey { .. }), "{msg}");
        assert!(msg.contains("/Release.sig: signed by key"), "{msg}");
    }

    #[test]
    fn threat4_revoked_key_refused_with_reason() {
        let mut fx = Fixture::new();
        fx.publish(&packages(1, "1.0"), None);
        fx.update(true, NOW).unwrap();
        let fp = fx.sk.fingerprint();
        // distrusted wins over trusted; usign's unpadded spelling matches too
        fx.trust.distrusted = vec![(fp.unpadded(), "revoked in keyring example serial 3".into())];
        fx.publish(&packages(1, "2.0"), None);
        let (e, msg) = fx.refused(true, NOW);
        assert!(matches!(e, FeedError::DistrustedKey { .. }), "{msg}");
        assert!(
            msg.contains(&format!(
                "signed by key {fp}, which is not trusted: revoked in keyring example serial 3"
            )),
            "{msg}"
        );
        // and the stored index, signed by that key, no longer loads
        let e = fx.store.load("base", &fx.trust).unwrap_err();
        assert!(matches!(e, FeedError::DistrustedKey { .. }), "{e}");
    }

    #[test]
    fn threat5_replayed_older_release_refused() {
        let fx = Fixture::new();
        let old = fx.publish(&packages(1, "1.0"), Some(NOW - 3 * DAY));
        fx.publish(&packages(1, "2.0"), Some(NOW - DAY));
        fx.update(true, NOW).unwrap();
        // replay the complete, validly signed older feed (still within Valid-Until)
        old.write(fx.dir());
        let (e, msg) = fx.refused(true, NOW);
        assert!(matches!(e, FeedError::Rollback { .. }), "{msg}");
        assert!(
            msg.contains(&format!(
                "Date {} is older than the last accepted Date {}",
                format_date(NOW - 3 * DAY),
                format_date(NOW - DAY)
            )),
            "{msg}"
        );
        assert_eq!(fx.loaded_versions(), ["2.0"]);
    }

    #[test]
    fn threat5_same_date_with_other_content_refused() {
        let fx = Fixture::new();
        fx.publish(&packages(1, "1.0"), Some(NOW - DAY));
        fx.update(true, NOW).unwrap();
        fx.publish(&packages(1, "1.1"), Some(NOW - DAY));
        let (e, msg) = fx.refused(true, NOW);
        assert!(matches!(e, FeedError::SameDate { .. }), "{msg}");
    }

    #[test]
    fn threat6_expired_release_refused() {
        let fx = Fixture::new();
        fx.publish(&packages(1, "1.0"), Some(NOW - 8 * DAY));
        let (e, msg) = fx.refused(true, NOW);
        assert!(matches!(e, FeedError::Expired { .. }), "{msg}");
        assert!(
            msg.contains(&format!("/Release: expired on {}", format_date(NOW - DAY))),
            "{msg}"
        );
        // the same feed was fine while valid
        fx.update(true, NOW - 2 * DAY).unwrap();
    }

    #[test]
    fn threat7_future_date_refused() {
        let fx = Fixture::new();
        fx.publish(&packages(1, "1.0"), Some(NOW + MAX_CLOCK_SKEW + 1));
        let (e, msg) = fx.refused(true, NOW);
        assert!(matches!(e, FeedError::FutureDate { .. }), "{msg}");
        assert!(msg.contains("is in the future"), "{msg}");
        // within the allowed skew: accepted
        fx.publish(&packages(1, "1.0"), Some(NOW + MAX_CLOCK_SKEW));
        fx.update(true, NOW).unwrap();
    }

    #[test]
    fn threat8_endless_packages_stops_at_the_cap() {
        let local = tempfile::tempdir().unwrap();
        let limits = FeedLimits {
            max_packages: 1 << 20,
            ..FeedLimits::default()
        };
        let store = store_in(local.path(), "l", "s").with_limits(limits);
        let base = canned(1, |_, _, s| {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
            let chunk = vec![b'P'; 65536];
            for _ in 0..4096 {
                if s.write_all(&chunk).is_err() {
                    return;
                }
            }
        });
        let src = FeedSource {
            name: "base".into(),
            url: base,
            gz: false,
        };
        let (_, pk) = key();
        let trust = Trust {
            keys: vec![pk],
            ..Trust::default()
        };
        let e = store.update(&src, &trust, &fetcher(), NOW).unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(e, FeedError::Fetch { source: FetchError::TooLarge { limit, .. }, .. } if limit == 1 << 20),
            "{msg}"
        );
        assert!(msg.contains("/Packages: more than 1048576 bytes"), "{msg}");
        assert!(!local.path().join("l").exists());
    }

    #[test]
    fn threat9_decompression_bomb_refused() {
        let mut fx = Fixture::new();
        fx.publish(&packages(1, "1.0"), None);
        fx.update(true, NOW).unwrap();
        // absolute cap
        fx.store = fx.store.clone().with_limits(FeedLimits {
            max_packages: 1 << 20,
            ..FeedLimits::default()
        });
        fs::write(
            fx.dir().join("Packages.gz"),
            feeds::index::gzip(&vec![b'\n'; 2 << 20]),
        )
        .unwrap();
        let (e, msg) = fx.refused(true, NOW);
        assert!(matches!(e, FeedError::BadIndex { .. }), "{msg}");
        assert!(
            msg.contains("decompresses to more than 1048576 bytes"),
            "{msg}"
        );
        // ratio cap
        fx.store = fx.store.clone().with_limits(FeedLimits {
            max_ratio: 100,
            ratio_grace: 1 << 20,
            ..FeedLimits::default()
        });
        let (e, msg) = fx.refused(true, NOW);
        assert!(matches!(e, FeedError::BadIndex { .. }), "{msg}");
        assert!(msg.contains("decompression bomb"), "{msg}");
        assert_eq!(fx.loaded_versions(), ["1.0"]);
    }

    #[test]
    fn threat14_html_served_as_signature_keeps_last_good_index() {
        let fx = Fixture::new();
        fx.publish(&packages(1, "1.0"), None);
        fx.update(true, NOW).unwrap();
        fx.publish(&packages(1, "2.0"), None);
        let html = "<!DOCTYPE html>\n<html><body>503 Service Unavailable</body></html>\n";
        fs::write(fx.dir().join("Packages.sig"), html).unwrap();
        let (e, msg) = fx.refused(true, NOW);
        assert!(matches!(e, FeedError::NotASignature { .. }), "{msg}");
        assert!(
            msg.contains("/Packages.sig: not a usign signature (starts with \"<!DOCTYPE html>…\")"),
            "{msg}"
        );
        // a big page is reported the same way
        fs::write(fx.dir().join("Packages.sig"), html.repeat(200)).unwrap();
        let (e, msg) = fx.refused(true, NOW);
        assert!(matches!(e, FeedError::NotASignature { .. }), "{msg}");
        assert_eq!(fx.loaded_versions(), ["1.0"]);
    }

    #[test]
    fn corrupt_state_file_is_an_error() {
        let fx = Fixture::new();
        fx.publish(&packages(1, "1.0"), Some(NOW));
        fx.update(true, NOW).unwrap();
        let state = fx.local.path().join("state/base/state");
        for garbage in [
            "Feed: base\nHas-Release: yes\nLast-Date: soon\n",
            "",
            "\u{0}\u{1}",
        ] {
            fs::write(&state, garbage).unwrap();
            let (e, msg) = fx.refused(true, NOW);
            assert!(matches!(e, FeedError::State { .. }), "{msg}");
            assert!(msg.contains("state/base/state"), "{msg}");
        }
    }

    #[test]
    fn state_roundtrip() {
        let s = State {
            release: Some((NOW, "ab".repeat(32))),
            identity: Some(Identity::default()),
        };
        assert_eq!(State::parse(&s.to_text("x"), "x").unwrap(), s);
        assert_eq!(
            State::parse(&State::default().to_text("x"), "x").unwrap(),
            State::default()
        );
        assert!(State::parse(&s.to_text("x"), "y").is_err());
    }

    #[test]
    fn bad_feed_names_refused() {
        let fx = Fixture::new();
        for name in ["", "../x", "a/b", ".hidden", "base.sig"] {
            let src = FeedSource {
                name: name.into(),
                url: fx.server.url(),
                gz: true,
            };
            let e = fx
                .store
                .update(&src, &fx.trust, &fx.fetcher, NOW)
                .unwrap_err();
            assert!(matches!(e, FeedError::BadName { .. }), "{name}: {e}");
        }
    }

    #[test]
    fn trust_from_key_dir() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("etc/opkg/keys");
        fs::create_dir_all(&dir).unwrap();
        let r = Root::open(root.path()).unwrap();
        let (a, pa) = key();
        let (_, pb) = key();
        pa.write_path(&dir.join(a.fingerprint().to_string()))
            .unwrap();
        pb.write_path(&dir.join("other-name")).unwrap();
        fs::create_dir(dir.join("subdir")).unwrap();
        fs::write(dir.join(".tmp-file"), "junk").unwrap();
        let t = Trust::from_key_dir(&r, "etc/opkg/keys").unwrap();
        assert_eq!(t.keys.len(), 2);
        assert!(t.keys.contains(&pa) && t.keys.contains(&pb));
        assert!(t.require_signature && !t.require_release);

        fs::write(dir.join("garbage"), "<html>").unwrap();
        let e = Trust::from_key_dir(&r, "etc/opkg/keys").unwrap_err();
        assert!(
            e.to_string().contains("/garbage: not a usign public key"),
            "{e}"
        );

        let e = Trust::from_key_dir(&r, "missing").unwrap_err();
        assert!(e.to_string().contains("/missing: cannot"), "{e}");
    }

    #[test]
    fn threat_20_a_key_symlinked_to_a_host_file_is_read_inside_the_root_only() {
        let host = tempfile::tempdir().unwrap();
        let (_, hostkey) = key();
        hostkey.write_path(&host.path().join("k")).unwrap();
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("etc/opkg/keys");
        fs::create_dir_all(&dir).unwrap();
        // An absolute link into the host: resolved inside the root, where nothing is.
        std::os::unix::fs::symlink(host.path().join("k"), dir.join("planted")).unwrap();
        // A relative link climbing out: stops at the root.
        let up = "../".repeat(30)
            + host
                .path()
                .join("k")
                .strip_prefix("/")
                .unwrap()
                .to_str()
                .unwrap();
        std::os::unix::fs::symlink(&up, dir.join("planted2")).unwrap();
        let t = Trust::from_key_dir(&Root::open(root.path()).unwrap(), "etc/opkg/keys").unwrap();
        assert!(t.keys.is_empty(), "a host key was trusted: {:?}", t.keys);
    }

    #[test]
    #[allow(clippy::print_stderr)] // SKIPPED without the samples
    fn real_openwrt_feed_verifies_with_its_key() {
        let real = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/real");
        let feed = real.join("feeds/stangri+repo.openwrt.melmac.ca");
        let key_file = real.join("keys/thirdparty/7ffc7517c4cc0c56");
        if !feed.is_dir() || !key_file.is_file() {
            assert!(
                std::env::var_os("CI").is_none(),
                "{} missing under CI",
                feed.display()
            );
            eprintln!("SKIPPED: {} is absent", feed.display());
            return;
        }
        let server = PyServer::start(&feed);
        let local = tempfile::tempdir().unwrap();
        let store = store_in(local.path(), "lists", "state");
        let trust = Trust {
            keys: vec![PublicKey::read_path(&key_file).unwrap()],
            ..Trust::default()
        };
        let src = FeedSource {
            name: "stangri".into(),
            url: server.url(),
            gz: true,
        };
        let r = store.update(&src, &trust, &fetcher(), NOW).unwrap();
        assert_eq!(r.fingerprint.as_deref(), Some("7ffc7517c4cc0c56"));
        assert!(r.packages > 0);
        let index = store.load("stangri", &trust).unwrap().unwrap();
        assert_eq!(index.stanzas.len(), r.packages);
        // and with a different key it is refused, naming the real key
        let (_, other) = key();
        let trust = Trust {
            keys: vec![other],
            ..Trust::default()
        };
        let e = store.update(&src, &trust, &fetcher(), NOW).unwrap_err();
        assert!(
            e.to_string()
                .contains("signed by key 7ffc7517c4cc0c56, which is not trusted"),
            "{e}"
        );
    }
}
