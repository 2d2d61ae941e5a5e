//! The index cache: what `archman index` learned about each package file, keyed by its path
//! and its identity on disk (size, mtime, ctime, inode), so a re-run over an unchanged feed
//! reads no package contents.
//!
//! The file is a small length-prefixed text format: a header naming the feed, then segments of
//! records, each ending in a MAC. A re-index that learned little *appends* a segment (the
//! records of the packages it read, the paths that are gone) instead of rewriting megabytes;
//! later records override earlier ones, and the file is compacted into one segment once the
//! overridden records weigh as much as the live ones. A foreign cache (another feed, another
//! format version), a damaged first segment or a failed MAC is ignored — the caller warns and
//! re-reads the packages; a damaged later segment (an append cut short) is dropped with
//! everything after it. Dropping records is always safe: every entry is re-checked against the
//! file's identity before use, so a lost record only costs a re-read. The file is read as a
//! stream: each segment's records are parsed as they go by and applied only once the
//! segment's MAC holds, and only the stanzas are kept, not the file's text.
//!
//! # The cache is a trust boundary
//!
//! A cached entry holds a finished index stanza, which `archman index` signs without reading
//! the package again. Whoever can change the cache could therefore make archman sign a stanza
//! for bytes it never read: a `SHA256sum` of a file that is not there, or fields the package
//! does not have. Feed directories are often writable by others (an upload directory), so:
//!
//! - **Outside the feed.** The default place is `$XDG_CACHE_HOME/archman/<feed>/cache`
//!   (`~/.cache/...` when `XDG_CACHE_HOME` is unset), `<feed>` being the first 16 hex digits
//!   of the SHA-256 of the canonical feed path ([`default_path`]). An old `.archman-cache` in
//!   the feed is never read.
//! - **Authenticated.** Every segment ends in an HMAC-SHA256 over the previous segment's MAC
//!   (the first: over the MAC of the header, which names the format and the feed) and its own
//!   record bytes. Segments can therefore be neither changed, nor moved between caches, nor
//!   reordered; cutting trailing segments off only brings back an older authentic state,
//!   whose entries no longer match files changed since (their ctime moved on). A cache whose
//!   MAC fails is ignored as a whole ([`CacheError::Unauthentic`]).
//! - **Keyed by a per-host secret**, `$XDG_CACHE_HOME/archman/cache.key`: 32 random bytes,
//!   made on first use (0600, in a 0700 directory, created under a temporary name and
//!   hard-linked into place, so two first runs agree on one key). A key file that is a
//!   symlink, not a regular file, not owned by the user, or open to group or others (or in a
//!   directory others can write) is refused: the caller warns and runs without a cache.
//!
//!   Why not a key derived from the signing key: unsigned feeds need the cache as much; the
//!   signing key may be passphrase-protected, on another medium, or rotated, and every
//!   rotation would invalidate every cache; and a per-host key keeps the signing key's seed
//!   out of one more computation. Why in the cache directory rather than `$XDG_CONFIG_HOME`:
//!   it protects nothing but the caches next to it, losing it costs only one full re-read,
//!   and it stays out of configuration directories people keep in (public) dotfile
//!   repositories. Anyone who can write the user's cache directory can also run code as the
//!   user; that is outside what this protects against.
//! - **ctime in the file identity.** Rewriting a package in place keeps its inode, an equal
//!   size is easy, and `touch -r` puts the mtime back; the ctime is set by the kernel on every
//!   change and no user can set it. An entry is used only while size, mtime, ctime (seconds
//!   and nanoseconds) and inode are all as recorded. A change in the same coarse clock tick as
//!   the previous one (a few milliseconds) can keep even the ctime; then the cached stanza is
//!   still one archman built from bytes it read, and clients refuse the file whose hash no
//!   longer matches it.

use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io::{self, BufRead, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::spill::Spill;
use feeds::package::Container;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

const MAGIC: &str = "archman-cache 6";
/// Refuse to read a cache larger than this.
const MAX_CACHE: u64 = 1 << 30;
/// Bytes of the per-host cache key.
pub const KEY_LEN: usize = 32;

type HmacSha256 = Hmac<Sha256>;

/// [`CacheKey::streaming_mac`].
pub struct StreamingMac(HmacSha256);

impl StreamingMac {
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    pub fn finish(self) -> [u8; 32] {
        self.0.finalize().into_bytes().into()
    }
}

/// The file identity a cached entry is valid for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileKey {
    pub size: u64,
    pub mtime: i64,
    pub mtime_nsec: u32,
    /// The inode change time: set by the kernel on every change, and by no user.
    pub ctime: i64,
    pub ctime_nsec: u32,
    pub inode: u64,
}

impl fmt::Display for FileKey {
    /// The cache's text form: `size mtime mtime_nsec ctime ctime_nsec inode`, read back by
    /// [`FileKey::parse_fields`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {} {} {}",
            self.size, self.mtime, self.mtime_nsec, self.ctime, self.ctime_nsec, self.inode
        )
    }
}

impl FileKey {
    /// Reads the six fields written by `Display`; `None` if any is not a number.
    fn parse_fields([size, mtime, mnsec, ctime, cnsec, inode]: [&str; 6]) -> Option<FileKey> {
        Some(FileKey {
            size: size.parse().ok()?,
            mtime: mtime.parse().ok()?,
            mtime_nsec: mnsec.parse().ok()?,
            ctime: ctime.parse().ok()?,
            ctime_nsec: cnsec.parse().ok()?,
            inode: inode.parse().ok()?,
        })
    }

    /// The key of a file's `stat`.
    pub fn of_stat(st: &safe_fs::Stat) -> FileKey {
        FileKey::from_stat_fields(
            st.len,
            st.mtime,
            st.mtime_nsec,
            st.ctime,
            st.ctime_nsec,
            st.ino,
        )
    }

    /// The key of a file's metadata.
    pub fn of(meta: &fs::Metadata) -> FileKey {
        FileKey::from_stat_fields(
            meta.len(),
            meta.mtime(),
            meta.mtime_nsec(),
            meta.ctime(),
            meta.ctime_nsec(),
            meta.ino(),
        )
    }

    fn from_stat_fields(
        size: u64,
        mtime: i64,
        mtime_nsec: i64,
        ctime: i64,
        ctime_nsec: i64,
        inode: u64,
    ) -> FileKey {
        FileKey {
            size,
            mtime,
            // Nanoseconds: 0 to 999,999,999 (an impossible value only fails to match).
            mtime_nsec: u32::try_from(mtime_nsec).unwrap_or(u32::MAX),
            ctime,
            ctime_nsec: u32::try_from(ctime_nsec).unwrap_or(u32::MAX),
            inode,
        }
    }
}

/// What is remembered about one package file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<S = Stanza> {
    pub key: FileKey,
    pub sha256: [u8; 32],
    pub md5: Option<[u8; 16]>,
    /// The package's outer container (`archman index --profile openwrt` warns about an `ar`
    /// `.ipk` on every run, cached or not).
    pub container: Container,
    /// The package's index stanza, as published (without the blank line after it).
    pub stanza: S,
}

/// The text of a stanza: made by this run, or a part of the cache file it was loaded from,
/// read into chunks of about a megabyte that the entries whose stanzas they hold share (the
/// file is read as a stream, and only its stanzas are kept: a feed's are megabytes); or,
/// past the run's budget for stanza text in memory, kept in its [`Spill`].
#[derive(Clone)]
pub struct Stanza(StanzaText);

#[derive(Clone)]
enum StanzaText {
    Owned(String),
    /// `chunk[start..end]`.
    Shared(Arc<String>, usize, usize),
    /// `len` bytes at `at` in the spill.
    Stored(Arc<Spill>, u64, usize),
}

/// Where a stanza's text is ([`Stanza::location`]).
pub enum Location<'a> {
    Memory(&'a str),
    Stored(&'a Arc<Spill>, u64, usize),
}

impl Stanza {
    /// `text` kept in memory if `spill`'s budget allows, in the spill otherwise.
    pub fn keep(text: String, spill: &Arc<Spill>) -> io::Result<Stanza> {
        if spill.keep_in_memory(text.len()) {
            Ok(Stanza(StanzaText::Owned(text)))
        } else {
            let at = spill.put(text.as_bytes())?;
            Ok(Stanza(StanzaText::Stored(
                Arc::clone(spill),
                at,
                text.len(),
            )))
        }
    }

    pub fn len(&self) -> usize {
        match &self.0 {
            StanzaText::Owned(s) => s.len(),
            StanzaText::Shared(_, start, end) => end - start,
            StanzaText::Stored(_, _, len) => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn location(&self) -> Location<'_> {
        match &self.0 {
            StanzaText::Owned(s) => Location::Memory(s),
            StanzaText::Shared(file, start, end) => Location::Memory(&file[*start..*end]),
            StanzaText::Stored(spill, at, len) => Location::Stored(spill, *at, *len),
        }
    }

    /// The text in memory, or `None` when it is in the spill.
    pub fn in_memory(&self) -> Option<&str> {
        match self.location() {
            Location::Memory(s) => Some(s),
            Location::Stored(..) => None,
        }
    }

    /// The text: in memory, or read from the spill into `buf`.
    pub fn text<'a>(&'a self, buf: &'a mut Vec<u8>) -> io::Result<&'a str> {
        match self.location() {
            Location::Memory(s) => Ok(s),
            Location::Stored(spill, at, len) => {
                buf.resize(len, 0);
                spill.read_at(at, buf)?;
                std::str::from_utf8(buf).map_err(|_| io::Error::other("stored stanza is not text"))
            }
        }
    }
}

impl From<String> for Stanza {
    fn from(s: String) -> Stanza {
        Stanza(StanzaText::Owned(s))
    }
}

impl From<&str> for Stanza {
    fn from(s: &str) -> Stanza {
        Stanza(StanzaText::Owned(s.to_string()))
    }
}

impl PartialEq for Stanza {
    fn eq(&self, other: &Stanza) -> bool {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        match (self.text(&mut a), other.text(&mut b)) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for Stanza {}

impl fmt::Debug for Stanza {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = Vec::new();
        match self.text(&mut buf) {
            Ok(t) => fmt::Debug::fmt(t, f),
            Err(e) => write!(f, "<unreadable stanza: {e}>"),
        }
    }
}

/// A `Packages.sig` this program has already checked (or made): the signature file with
/// SHA-256 `sig_sha256` is a valid signature by key `fingerprint` over the `Packages` with
/// SHA-256 `packages_sha256`. Lets a republish keep the signature without hashing `Packages`
/// through SHA-512 again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedSig {
    pub packages_sha256: String,
    pub sig_sha256: String,
    pub fingerprint: String,
}

/// A published index file as it was on disk right after a run that found the feed consistent
/// with exactly the cache's entries. While every package and every published file still has
/// the recorded identity, the next run knows the feed is up to date without building,
/// hashing or comparing the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub name: String,
    pub key: FileKey,
    /// SHA-256 of the file (recorded for the uncompressed index files only).
    pub sha256: Option<String>,
}

/// Cached entries by path relative to the feed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Cache {
    pub entries: Entries,
    pub checked_sig: Option<CheckedSig>,
    /// The published files, valid only together with exactly these entries (a segment that
    /// changes entries without restating them clears them).
    pub published: Vec<Published>,
}

/// Cache entries by path: a list in path order. At 60,000 entries a hash table's buckets
/// took twice the memory, and a B-tree's many small nodes, freed one by one as the entries
/// are handed out, left the heap in holes (bench/README.md, "Memory").
#[derive(Debug, Default, Clone)]
pub struct Entries(Vec<(String, Option<Entry>)>);

impl Entries {
    fn find(&self, path: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(p, _)| p.as_str().cmp(path))
    }

    /// Adds or replaces the entry of `path`.
    pub fn insert(&mut self, path: String, entry: Entry) {
        match self.find(&path) {
            Ok(i) => self.0[i].1 = Some(entry),
            Err(i) => self.0.insert(i, (path, Some(entry))),
        }
    }

    /// Takes the entry of `path` out.
    pub fn remove(&mut self, path: &str) -> Option<Entry> {
        self.find(path).ok().and_then(|i| self.0[i].1.take())
    }

    pub fn get(&self, path: &str) -> Option<&Entry> {
        self.find(path).ok().and_then(|i| self.0[i].1.as_ref())
    }

    pub fn get_mut(&mut self, path: &str) -> Option<&mut Entry> {
        self.find(path).ok().and_then(|i| self.0[i].1.as_mut())
    }

    /// The entries in path order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Entry)> {
        self.0
            .iter()
            .filter_map(|(p, e)| e.as_ref().map(|e| (p.as_str(), e)))
    }

    pub fn len(&self) -> usize {
        self.iter().count()
    }

    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// The paths that have an entry, in order.
    pub fn into_paths(self) -> impl Iterator<Item = String> {
        self.0.into_iter().filter_map(|(p, e)| e.map(|_| p))
    }

    fn reserve(&mut self, n: usize) {
        self.0.reserve(n);
    }
}

impl PartialEq for Entries {
    fn eq(&self, other: &Entries) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for Entries {}

impl std::ops::Index<&str> for Entries {
    type Output = Entry;

    fn index(&self, path: &str) -> &Entry {
        self.get(path).expect("no entry for this path")
    }
}

/// The largest segment appended to a cache (bytes): beyond it the file is rewritten.
pub const MAX_SEGMENT: usize = 4 << 20;

/// A cache as loaded from disk, with what decides between appending to it and rewriting it.
#[derive(Debug, Default)]
pub struct Loaded {
    pub cache: Cache,
    /// Length of the file as read (0 when there was none).
    pub file_len: u64,
    /// A damaged later segment was dropped: the file must be rewritten, not appended to.
    pub damaged_tail: bool,
    /// The MAC of the last segment kept, which the MAC of an appended segment covers.
    chain: Option<[u8; 32]>,
}

impl Loaded {
    /// True when a segment of `extra` bytes may be appended to the file: it is intact, the
    /// segment is small ([`MAX_SEGMENT`], and at most a quarter of the `live` bytes of
    /// current records unless that is under 64 KiB), and the file would not then hold more
    /// overridden bytes than live ones. A segment is made in memory before it is appended;
    /// a rewrite is streamed: when most packages were read again (every ctime changed by a
    /// copy, a restore or a `touch`) the cache is rewritten, not doubled from a copy of it
    /// in memory (docs/on-disk-state.md §1.2).
    pub fn appendable(&self, extra: usize, live: usize) -> bool {
        self.intact()
            && extra <= (live / 4).clamp(64 * 1024, MAX_SEGMENT)
            && self.file_len + extra as u64 <= 2 * live as u64 + 64 * 1024
    }

    /// True when the file can be appended to at all (it exists and was read whole).
    pub fn intact(&self) -> bool {
        self.file_len > 0 && self.chain.is_some() && !self.damaged_tail
    }

    /// Bytes of a segment holding `records`, to append to this cache file with [`append`].
    pub fn segment<'a>(
        &self,
        key: &CacheKey,
        records: impl IntoIterator<Item = Record<'a>>,
    ) -> io::Result<Vec<u8>> {
        segment(key, &self.chain.unwrap_or_default(), records)
    }
}

/// One change to write in a segment.
pub enum Record<'a> {
    /// The entry for a path (new or replacing an older one).
    Put(&'a str, &'a Entry),
    /// A path that is no longer in the feed.
    Gone(&'a str),
    /// The checked signature record (or its absence).
    Sig(Option<&'a CheckedSig>),
    /// One published file; the `Published` records of a segment replace all earlier ones.
    Published(&'a Published),
}

/// The per-host secret that authenticates cache files (see the module documentation).
pub struct CacheKey([u8; KEY_LEN]);

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CacheKey(..)")
    }
}

/// Why the cache key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cache key {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cache key {}: {reason}", path.display())]
    Unsafe { path: PathBuf, reason: String },
}

impl CacheKey {
    /// A key from its bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> CacheKey {
        CacheKey(bytes)
    }

    /// HMAC-SHA256 of `data` under this key (for the records kept beside the cache).
    pub fn mac(&self, data: &[u8]) -> [u8; 32] {
        let mut m = self.hmac();
        m.update(data);
        m.finalize().into_bytes().into()
    }

    /// A MAC computed as the data goes by ([`CacheKey::mac`] of all that was fed).
    pub fn streaming_mac(&self) -> StreamingMac {
        StreamingMac(self.hmac())
    }

    fn hmac(&self) -> HmacSha256 {
        // HMAC takes keys of any length; only fixed-length MACs can refuse one.
        <HmacSha256 as Mac>::new_from_slice(&self.0).expect("HMAC accepts any key length")
    }

    /// The MAC that starts the chain: over the header bytes.
    fn header_mac(&self, header: &[u8]) -> [u8; 32] {
        let mut m = self.hmac();
        m.update(header);
        m.finalize().into_bytes().into()
    }

    /// Reads the key at `path`, making one (32 random bytes, mode 0600, in a directory made
    /// 0700) when there is none. A key file that others could have read or replaced is
    /// refused ([`KeyError::Unsafe`]).
    pub fn load_or_create(path: &Path) -> Result<CacheKey, KeyError> {
        match read_key(path) {
            Err(KeyError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                create_key(path)?;
                read_key(path)
            }
            other => other,
        }
    }
}

fn key_io(path: &Path) -> impl FnOnce(io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads and vets an existing key file.
fn read_key(path: &Path) -> Result<CacheKey, KeyError> {
    let unsafe_key = |reason: String| KeyError::Unsafe {
        path: path.to_path_buf(),
        reason,
    };
    let mut file = match fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(unsafe_key("is a symbolic link; not using it".into()));
        }
        Err(e) => return Err(key_io(path)(e)),
    };
    let meta = file.metadata().map_err(key_io(path))?;
    let me = euid();
    if !meta.file_type().is_file() {
        return Err(unsafe_key("is not a regular file; not using it".into()));
    }
    if meta.uid() != me {
        return Err(unsafe_key(format!(
            "is owned by uid {}, not by the user running archman (uid {me}); not using it",
            meta.uid()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(unsafe_key(format!(
            "other users can read or write it (mode {:04o}); not using it (chmod 600 {} makes it private)",
            meta.mode() & 0o7777,
            path.display()
        )));
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let dmeta = fs::metadata(dir).map_err(key_io(dir))?;
    if dmeta.uid() != me || dmeta.mode() & 0o022 != 0 {
        return Err(unsafe_key(format!(
            "its directory {} is owned by uid {} with mode {:04o}, so others could replace the key; not using it",
            dir.display(),
            dmeta.uid(),
            dmeta.mode() & 0o7777
        )));
    }
    let mut bytes = Vec::with_capacity(KEY_LEN + 1);
    Read::by_ref(&mut file)
        .take(KEY_LEN as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(key_io(path))?;
    let bytes: [u8; KEY_LEN] = bytes.try_into().map_err(|b: Vec<u8>| {
        unsafe_key(format!(
            "holds {}{} bytes, not {KEY_LEN}; delete it and a new key is made (every cache is then read again)",
            b.len(),
            if b.len() > KEY_LEN { " or more" } else { "" }
        ))
    })?;
    Ok(CacheKey(bytes))
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Makes a new key at `path`, unless another run makes one first (then that one is used).
fn create_key(path: &Path) -> Result<(), KeyError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(key_io(dir))?;
    let mut key = [0u8; KEY_LEN];
    let mut suffix = [0u8; 8];
    getrandom::fill(&mut key)
        .and_then(|()| getrandom::fill(&mut suffix))
        .map_err(|e| key_io(path)(io::Error::other(format!("no random bytes: {e}"))))?;
    let mut tmp_name = OsString::from(".");
    tmp_name.push(path.file_name().unwrap_or_default());
    tmp_name.push(format!(".tmp-{}", hex::encode(suffix)));
    let tmp = dir.join(tmp_name);
    let written = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.write_all(&key)?;
        f.sync_all()
    })();
    // A link, unlike a rename, never replaces a key another run has just made and used.
    let linked = written.and_then(|()| fs::hard_link(&tmp, path));
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(key_io(dir)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(key_io(path)(e)),
    }
}

/// The directory under which archman keeps caches: `$XDG_CACHE_HOME`, else `$HOME/.cache`
/// (each only when set to an absolute path, as the XDG base directory rules say).
pub fn cache_home() -> Option<PathBuf> {
    let absolute = |v: OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    std::env::var_os("XDG_CACHE_HOME")
        .and_then(absolute)
        .or_else(|| {
            std::env::var_os("HOME")
                .and_then(absolute)
                .map(|h| h.join(".cache"))
        })
}

/// The cache key's place under a cache home.
pub fn key_path(cache_home: &Path) -> PathBuf {
    cache_home.join("archman").join("cache.key")
}

/// The default cache file of the feed whose canonical path is `canonical_feed`.
pub fn default_path(cache_home: &Path, canonical_feed: &Path) -> PathBuf {
    let digest = Sha256::digest(canonical_feed.as_os_str().as_encoded_bytes());
    cache_home
        .join("archman")
        .join(&hex::encode(digest)[..16])
        .join("cache")
}

/// Makes the directory of a cache file (0700 where it creates one).
pub fn create_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir),
        _ => Ok(()),
    }
}

/// Bytes of a segment holding `records` that follows the segment (or header) whose MAC is
/// `chain`, MAC line included.
fn segment<'a>(
    key: &CacheKey,
    chain: &[u8; 32],
    records: impl IntoIterator<Item = Record<'a>>,
) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    write_segment(&mut out, key, chain, records)?;
    Ok(out)
}

/// Writes the segment [`segment`] makes to `w`, a piece at a time (a feed's whole cache is
/// never in memory twice); returns its MAC.
fn write_segment<'a>(
    w: &mut impl Write,
    key: &CacheKey,
    chain: &[u8; 32],
    records: impl IntoIterator<Item = Record<'a>>,
) -> io::Result<[u8; 32]> {
    const PIECE: usize = 64 * 1024;
    let mut mac = key.hmac();
    mac.update(chain);
    let mut out = Vec::with_capacity(PIECE + 4096);
    let mut buf = Vec::new();
    for r in records {
        encode_record(&mut out, r, &mut buf)?;
        if out.len() >= PIECE {
            mac.update(&out);
            w.write_all(&out)?;
            out.clear();
        }
    }
    mac.update(&out);
    let mac: [u8; 32] = mac.finalize().into_bytes().into();
    out.extend_from_slice(format!("END {}\n", hex::encode(mac)).as_bytes());
    w.write_all(&out)?;
    Ok(mac)
}

/// Appends one record's lines to `out` (`buf`: room to read a stanza from the spill).
fn encode_record(out: &mut Vec<u8>, r: Record<'_>, buf: &mut Vec<u8>) -> io::Result<()> {
    match r {
        Record::Put(path, e) => {
            out.extend_from_slice(
                format!(
                    "E {} {} {} {} {} {}\n",
                    path.len(),
                    e.key,
                    hex::encode(e.sha256),
                    e.md5.map_or_else(|| "-".to_string(), hex::encode),
                    match e.container {
                        Container::Ar => "ar",
                        Container::TarGz => "tgz",
                    },
                    e.stanza.len()
                )
                .as_bytes(),
            );
            out.extend_from_slice(path.as_bytes());
            out.push(b'\n');
            out.extend_from_slice(e.stanza.text(buf)?.as_bytes());
            out.push(b'\n');
        }
        Record::Gone(path) => {
            out.extend_from_slice(format!("D {}\n{path}\n", path.len()).as_bytes());
        }
        Record::Sig(None) => out.extend_from_slice(b"S -\n"),
        Record::Published(p) => {
            out.extend_from_slice(
                format!(
                    "P {} {} {}\n{}\n",
                    p.name.len(),
                    p.key,
                    p.sha256.as_deref().unwrap_or("-"),
                    p.name
                )
                .as_bytes(),
            );
        }
        Record::Sig(Some(s)) => out.extend_from_slice(
            format!(
                "S {} {} {}\n",
                s.packages_sha256, s.sig_sha256, s.fingerprint
            )
            .as_bytes(),
        ),
    }
    Ok(())
}

/// Writes a whole cache file for feed `feed_id` to `w`, authenticated with `key`: the
/// checked signature, then `entries` (which must come in path order, so that equal caches
/// are equal files), then the published files. What [`Cache::to_bytes`] makes, without the
/// cache in memory.
pub fn write_cache<'a>(
    w: &mut impl Write,
    feed_id: &str,
    key: &CacheKey,
    checked_sig: Option<&'a CheckedSig>,
    entries: impl IntoIterator<Item = (&'a str, &'a Entry)>,
    published: &'a [Published],
) -> io::Result<()> {
    let header = format!("{MAGIC}\n{}\n{feed_id}\n", feed_id.len()).into_bytes();
    let chain = key.header_mac(&header);
    w.write_all(&header)?;
    let sig = checked_sig.map(|s| Record::Sig(Some(s)));
    let puts = entries.into_iter().map(|(p, e)| Record::Put(p, e));
    let published = published.iter().map(Record::Published);
    write_segment(w, key, &chain, sig.into_iter().chain(puts).chain(published))?;
    Ok(())
}

/// Appends a segment made by [`Loaded::segment`] to the cache file at `path`, in one write.
/// Not synced: a segment cut short by a crash is dropped on the next load.
pub fn append(path: &Path, seg: &[u8]) -> io::Result<()> {
    let mut f = fs::OpenOptions::new()
        .append(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    f.write_all(seg)
}

/// Why a cache file was not used.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cache {}: not an archman cache for this feed ({reason}); ignoring it", path.display())]
    Foreign { path: PathBuf, reason: String },
    #[error("cache {}: corrupt ({reason}); ignoring it", path.display())]
    Corrupt { path: PathBuf, reason: String },
    /// A MAC does not match: the file was changed by someone without the key (or made with
    /// another key).
    #[error("cache {}: fails authentication; ignoring it and reading every package", path.display())]
    Unauthentic { path: PathBuf },
}

impl Cache {
    /// Loads the cache at `path` written for feed `feed_id` with `key`. A missing file is an
    /// empty cache; anything unreadable, foreign, corrupt or unauthentic is an error the
    /// caller reports and ignores.
    pub fn load(path: &Path, feed_id: &str, key: &CacheKey) -> Result<Loaded, CacheError> {
        Cache::load_into(path, feed_id, key, &Arc::new(Spill::new(usize::MAX, None)))
    }

    /// [`Cache::load`], the stanzas past `spill`'s budget kept in it.
    pub fn load_into(
        path: &Path,
        feed_id: &str,
        key: &CacheKey,
        spill: &Arc<Spill>,
    ) -> Result<Loaded, CacheError> {
        let io_err = |source| CacheError::Io {
            path: path.into(),
            source,
        };
        let mut file = match fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Loaded::default()),
            Err(e) => return Err(io_err(e)),
        };
        let corrupt = |reason: String| CacheError::Corrupt {
            path: path.into(),
            reason,
        };
        let meta = file.metadata().map_err(io_err)?;
        if !meta.file_type().is_file() {
            return Err(corrupt("not a regular file".into()));
        }
        if meta.len() > MAX_CACHE {
            return Err(corrupt(format!("larger than {MAX_CACHE} bytes")));
        }
        // Read as a stream: the records are parsed and authenticated as they go by, and
        // only the stanzas are kept (packed into shared chunks), not the file's text.
        let mut reader = Reader {
            input: io::BufReader::with_capacity(
                256 * 1024,
                Read::by_ref(&mut file).take(MAX_CACHE + 1),
            ),
            len: meta.len(),
            read: 0,
            mac: None,
            stanzas: Chunks {
                sealed: Vec::new(),
                current: Vec::new(),
                spill: Arc::clone(spill),
            },
        };
        let parsed = parse(&mut reader, feed_id, key);
        let file_len = reader.read;
        let (cache, chain, damaged_tail) = parsed.map_err(|e| match e {
            ParseError::Foreign(reason) => CacheError::Foreign {
                path: path.into(),
                reason,
            },
            ParseError::Corrupt(reason) => corrupt(reason),
            ParseError::Unauthentic => CacheError::Unauthentic { path: path.into() },
            ParseError::Io(e) => io_err(e),
        })?;
        Ok(Loaded {
            cache,
            file_len,
            damaged_tail,
            chain: Some(chain),
        })
    }

    /// The bytes of the cache file for feed `feed_id`, authenticated with `key` (entries in
    /// path order, so equal caches are equal files).
    pub fn to_bytes(&self, feed_id: &str, key: &CacheKey) -> Vec<u8> {
        let mut out = Vec::new();
        write_cache(
            &mut out,
            feed_id,
            key,
            self.checked_sig.as_ref(),
            self.entries.iter(),
            &self.published,
        )
        .expect("writing to memory does not fail");
        out
    }
}

enum ParseError {
    Foreign(String),
    Corrupt(String),
    Unauthentic,
    Io(io::Error),
}

/// Longest record line the format has (a header with its numbers and hashes).
const MAX_LINE: usize = 4096;
/// Stanzas are packed into chunks of about this size, each shared by the entries whose
/// stanzas it holds.
const CHUNK: usize = 1 << 20;

/// The stanzas of a cache as it is read: chunks of text, the last one still growing; a
/// chunk past the spill's budget is kept there.
struct Chunks {
    sealed: Vec<Chunk>,
    current: Vec<u8>,
    spill: Arc<Spill>,
}

enum Chunk {
    Memory(Arc<String>),
    /// At this offset in the spill.
    Stored(u64),
}

impl Chunks {
    /// Room for `len` more bytes in the current chunk (sealing it when full).
    fn reserve(&mut self, len: usize) -> Result<(), ParseError> {
        if !self.current.is_empty() && self.current.len() + len > CHUNK {
            self.seal()?;
        }
        if self.current.is_empty() {
            self.current.reserve_exact(len.max(CHUNK));
        }
        Ok(())
    }

    fn seal(&mut self) -> Result<(), ParseError> {
        let mut chunk = std::mem::take(&mut self.current);
        chunk.shrink_to_fit();
        let text = String::from_utf8(chunk).map_err(|_| ParseError::Corrupt("not text".into()))?;
        self.sealed.push(if self.spill.keep_in_memory(text.len()) {
            Chunk::Memory(Arc::new(text))
        } else {
            Chunk::Stored(self.spill.put(text.as_bytes()).map_err(ParseError::Io)?)
        });
        Ok(())
    }
}

/// Where a parsed stanza is: `(chunk, start, end)` in [`Chunks`].
type StanzaAt = (usize, usize, usize);

/// A bounds-checked reader of the cache file that feeds what it reads to the current
/// segment's MAC.
struct Reader<R> {
    input: R,
    /// The file's length: no record may claim more than what is left of it.
    len: u64,
    /// Bytes read so far.
    read: u64,
    /// The MAC of the segment being read (none while reading the header).
    mac: Option<HmacSha256>,
    stanzas: Chunks,
}

impl<R: io::BufRead> Reader<R> {
    fn consumed(&mut self, bytes: &[u8]) {
        self.read += bytes.len() as u64;
        if let Some(m) = &mut self.mac {
            m.update(bytes);
        }
    }

    /// The next line (without its newline), not fed to the MAC (the caller decides).
    fn line_bytes(&mut self) -> Result<Vec<u8>, ParseError> {
        let mut line = Vec::new();
        let n = Read::by_ref(&mut self.input)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(ParseError::Io)?;
        if n == 0 || line.last() != Some(&b'\n') {
            return Err(ParseError::Corrupt(if line.len() > MAX_LINE {
                "line too long".into()
            } else {
                "truncated".into()
            }));
        }
        self.read += n as u64;
        line.pop();
        Ok(line)
    }

    /// Feeds a line read by [`Reader::line_bytes`] (and its newline) to the MAC.
    fn mac_line(&mut self, line: &[u8]) {
        if let Some(m) = &mut self.mac {
            m.update(line);
            m.update(b"\n");
        }
    }

    fn line(&mut self) -> Result<String, ParseError> {
        let line = self.line_bytes()?;
        self.mac_line(&line);
        String::from_utf8(line).map_err(|_| ParseError::Corrupt("not text".into()))
    }

    /// Exactly `len` bytes followed by a newline.
    fn exact(&mut self, len: usize) -> Result<String, ParseError> {
        let mut buf = vec![0; len + 1];
        self.fill(&mut buf)?;
        buf.pop();
        String::from_utf8(buf).map_err(|_| ParseError::Corrupt("not text".into()))
    }

    /// Exactly `len` bytes followed by a newline, kept as a stanza.
    fn stanza(&mut self, len: usize) -> Result<StanzaAt, ParseError> {
        if len as u64 >= self.len.saturating_sub(self.read) {
            return Err(ParseError::Corrupt("record length out of bounds".into()));
        }
        self.stanzas.reserve(len + 1)?;
        let start = self.stanzas.current.len();
        let mut chunk = std::mem::take(&mut self.stanzas.current);
        chunk.resize(start + len + 1, 0);
        let filled = self.fill(&mut chunk[start..]);
        chunk.truncate(start + len);
        self.stanzas.current = chunk;
        filled?;
        Ok((self.stanzas.sealed.len(), start, start + len))
    }

    fn fill(&mut self, buf: &mut [u8]) -> Result<(), ParseError> {
        self.input.read_exact(buf).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => ParseError::Corrupt("truncated record".into()),
            _ => ParseError::Io(e),
        })?;
        if buf.last() != Some(&b'\n') {
            return Err(ParseError::Corrupt("truncated record".into()));
        }
        self.consumed(buf);
        Ok(())
    }

    /// Whether the file has been read to its end.
    fn at_end(&mut self) -> Result<bool, ParseError> {
        Ok(self.input.fill_buf().map_err(ParseError::Io)?.is_empty())
    }
}

/// One parsed record, applied only once its segment's MAC holds.
enum Op {
    Put(String, Entry<StanzaAt>),
    Gone(String),
    Sig(Option<CheckedSig>),
    Published(Published),
}

/// Parses the records of one segment, through its MAC line, and checks its MAC (that of the
/// segment or header before it being `chain`); returns its records and its MAC.
fn parse_segment<R: io::BufRead>(
    c: &mut Reader<R>,
    key: &CacheKey,
    chain: &[u8; 32],
) -> Result<(Vec<Op>, [u8; 32]), ParseError> {
    let corrupt = |r: &str| ParseError::Corrupt(r.to_string());
    let hexok = |s: &str, n| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    let mut mac = key.hmac();
    mac.update(chain);
    c.mac = Some(mac);
    let mut ops = Vec::new();
    loop {
        // The MAC line is not part of what it authenticates.
        let head = c.line_bytes()?;
        if let Some(mac) = head.strip_prefix(b"END ") {
            let mac = std::str::from_utf8(mac)
                .ok()
                .and_then(|m| hex::decode(m).ok())
                .filter(|m| m.len() == 32)
                .ok_or_else(|| corrupt("bad MAC line"))?;
            let computed = c.mac.take().expect("set above");
            computed
                .verify_slice(&mac)
                .map_err(|_| ParseError::Unauthentic)?;
            let mut chain = [0u8; 32];
            chain.copy_from_slice(&mac);
            return Ok((ops, chain));
        }
        c.mac_line(&head);
        let head = String::from_utf8(head).map_err(|_| corrupt("not text"))?;
        let f: Vec<&str> = head.split(' ').collect();
        let unum = |s: &str| s.parse::<u64>().map_err(|_| corrupt("bad number"));
        match f[..] {
            ["S", "-"] => ops.push(Op::Sig(None)),
            ["S", packages, sig, fp] => {
                if !hexok(packages, 64) || !hexok(sig, 64) || !hexok(fp, 16) {
                    return Err(corrupt("bad signature record"));
                }
                ops.push(Op::Sig(Some(CheckedSig {
                    packages_sha256: packages.to_string(),
                    sig_sha256: sig.to_string(),
                    fingerprint: fp.to_string(),
                })));
            }
            ["P", nlen, size, mtime, mnsec, ctime, cnsec, inode, sha] => {
                let nlen = unum(nlen)? as usize;
                if nlen > 255 || (sha != "-" && !hexok(sha, 64)) {
                    return Err(corrupt("bad published-file record"));
                }
                let key = FileKey::parse_fields([size, mtime, mnsec, ctime, cnsec, inode])
                    .ok_or_else(|| corrupt("bad number"))?;
                let sha256 = (sha != "-").then(|| sha.to_string());
                ops.push(Op::Published(Published {
                    name: c.exact(nlen)?,
                    key,
                    sha256,
                }));
            }
            ["D", plen] => {
                let plen = unum(plen)? as usize;
                if plen > 4096 {
                    return Err(corrupt("record length out of bounds"));
                }
                ops.push(Op::Gone(c.exact(plen)?));
            }
            [
                "E",
                plen,
                size,
                mtime,
                mnsec,
                ctime,
                cnsec,
                inode,
                sha,
                md5,
                container,
                clen,
            ] => {
                let plen = unum(plen)? as usize;
                let clen = unum(clen)?;
                if plen > 4096 || clen > MAX_CACHE {
                    return Err(corrupt("record length out of bounds"));
                }
                let key = FileKey::parse_fields([size, mtime, mnsec, ctime, cnsec, inode])
                    .ok_or_else(|| corrupt("bad number"))?;
                let mut sha256 = [0u8; 32];
                let mut md5_bytes = [0u8; 16];
                if hex::decode_to_slice(sha, &mut sha256).is_err()
                    || (md5 != "-" && hex::decode_to_slice(md5, &mut md5_bytes).is_err())
                {
                    return Err(corrupt("bad hash"));
                }
                let container = match container {
                    "ar" => Container::Ar,
                    "tgz" => Container::TarGz,
                    _ => return Err(corrupt("bad container")),
                };
                let md5 = (md5 != "-").then_some(md5_bytes);
                let path = c.exact(plen)?;
                let stanza = c.stanza(clen as usize)?;
                ops.push(Op::Put(
                    path,
                    Entry {
                        key,
                        sha256,
                        md5,
                        container,
                        stanza,
                    },
                ));
            }
            _ => return Err(corrupt("bad record header")),
        }
    }
}

/// The cache read by `c`, the MAC of its last segment kept, and whether a damaged later
/// segment was dropped. A segment whose MAC fails makes the whole file unauthentic: it was
/// written by someone without the key.
fn parse<R: io::BufRead>(
    c: &mut Reader<R>,
    feed_id: &str,
    key: &CacheKey,
) -> Result<(Cache, [u8; 32], bool), ParseError> {
    let corrupt = |r: &str| ParseError::Corrupt(r.to_string());
    let magic = c.line().map_err(|e| match e {
        ParseError::Io(e) => ParseError::Io(e),
        _ => ParseError::Foreign("unknown format".into()),
    })?;
    if magic != MAGIC {
        return Err(ParseError::Foreign("unknown format".into()));
    }
    let id_line = c.line()?;
    let id_len: usize = id_line.parse().map_err(|_| corrupt("bad header"))?;
    if id_len > 4096 || c.exact(id_len)? != feed_id {
        return Err(ParseError::Foreign("written for another feed".into()));
    }
    // The header's bytes as read.
    let header = format!("{MAGIC}\n{id_line}\n{feed_id}\n");
    let mut chain = key.header_mac(header.as_bytes());
    let mut segments = Vec::new();
    let mut damaged_tail = false;
    while !c.at_end()? {
        match parse_segment(c, key, &chain) {
            Ok((ops, mac)) => {
                segments.push(ops);
                chain = mac;
            }
            Err(e @ (ParseError::Unauthentic | ParseError::Io(_))) => return Err(e),
            // The first segment is the cache; a later one is an append that may be cut short.
            Err(e) if segments.is_empty() => return Err(e),
            Err(_) => {
                damaged_tail = true;
                break;
            }
        }
    }
    if segments.is_empty() {
        return Err(corrupt("truncated"));
    }
    // Stanzas of a segment cut short belong to no entry; the chunks hold them anyway.
    if !c.stanzas.current.is_empty() {
        c.stanzas.seal()?;
    }
    let chunks = std::mem::take(&mut c.stanzas.sealed);
    Ok((
        apply(segments.into_iter(), &chunks, &c.stanzas.spill),
        chain,
        damaged_tail,
    ))
}

/// The cache the records of consecutive segments make.
fn apply(segments: impl Iterator<Item = Vec<Op>>, chunks: &[Chunk], spill: &Arc<Spill>) -> Cache {
    let mut cache = Cache::default();
    for ops in segments {
        let changes_entries = ops.iter().any(|o| matches!(o, Op::Put(..) | Op::Gone(_)));
        let restates = ops.iter().any(|o| matches!(o, Op::Published(_)));
        if changes_entries || restates {
            cache.published.clear();
        }
        if cache.entries.0.is_empty() {
            cache.entries.reserve(ops.len());
        }
        for op in ops {
            match op {
                Op::Put(path, e) => {
                    let (chunk, start, end) = e.stanza;
                    let stanza = Stanza(match &chunks[chunk] {
                        Chunk::Memory(text) => StanzaText::Shared(Arc::clone(text), start, end),
                        Chunk::Stored(at) => {
                            StanzaText::Stored(Arc::clone(spill), at + start as u64, end - start)
                        }
                    });
                    cache.entries.insert(
                        path,
                        Entry {
                            key: e.key,
                            sha256: e.sha256,
                            md5: e.md5,
                            container: e.container,
                            stanza,
                        },
                    );
                }
                Op::Gone(path) => {
                    cache.entries.remove(&path);
                }
                Op::Sig(s) => cache.checked_sig = s,
                Op::Published(p) => cache.published.push(p),
            }
        }
    }
    cache
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> CacheKey {
        CacheKey::from_bytes([7; KEY_LEN])
    }

    fn file_key(n: i64) -> FileKey {
        FileKey {
            size: n as u64,
            mtime: 1_700_000_000 + n,
            mtime_nsec: 5,
            ctime: 1_700_000_100 + n,
            ctime_nsec: 6,
            inode: 42 + n as u64,
        }
    }

    #[test]
    fn a_stat_and_the_metadata_of_a_file_give_one_key() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("p.ipk"), b"package").unwrap();
        let dir = safe_fs::Dir::open(tmp.path()).unwrap();
        let st = dir.stat(std::ffi::OsStr::new("p.ipk")).unwrap().unwrap();
        let meta = std::fs::metadata(tmp.path().join("p.ipk")).unwrap();
        assert_eq!(FileKey::of_stat(&st), FileKey::of(&meta));
    }

    fn sample() -> Cache {
        let mut c = Cache::default();
        c.entries.insert(
            "pool/a_1_all.ipk".into(),
            Entry {
                key: file_key(10),
                sha256: [0xab; 32],
                md5: None,
                container: Container::TarGz,
                stanza: "Package: a\nVersion: 1\nArchitecture: all\n".into(),
            },
        );
        c.entries.insert(
            "b.ipk".into(),
            Entry {
                key: file_key(1),
                sha256: [0xcd; 32],
                md5: Some([0xef; 16]),
                container: Container::Ar,
                stanza: "Package: b\n".into(),
            },
        );
        c.published.push(Published {
            name: "Packages".into(),
            key: file_key(7),
            sha256: Some("67".repeat(32)),
        });
        c.checked_sig = Some(CheckedSig {
            packages_sha256: "01".repeat(32),
            sig_sha256: "23".repeat(32),
            fingerprint: "45".repeat(8),
        });
        c
    }

    #[test]
    fn round_trips_and_is_deterministic() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cache");
        let bytes = sample().to_bytes("/feed", &key());
        assert_eq!(bytes, sample().to_bytes("/feed", &key()));
        fs::write(&p, &bytes).unwrap();
        assert_eq!(Cache::load(&p, "/feed", &key()).unwrap().cache, sample());
        let absent = Cache::load(&dir.path().join("absent"), "/feed", &key()).unwrap();
        assert_eq!((absent.cache, absent.file_len), (Cache::default(), 0));
    }

    /// Small segments are appended; one that most of the packages would fill, or one past
    /// [`MAX_SEGMENT`], makes a rewrite (streamed) instead of a copy in memory.
    #[test]
    fn only_small_segments_are_appended() {
        const MB: usize = 1 << 20;
        let at = |file_len: usize| Loaded {
            file_len: file_len as u64,
            chain: Some([0; 32]),
            ..Loaded::default()
        };
        // A small feed: anything under 64 KiB, as long as the file stays compact.
        assert!(at(1000).appendable(10, 1000));
        assert!(at(1000).appendable(1500, 1000));
        assert!(!at(1000).appendable(65 * 1024, 1000));
        // A large one: a few changed packages are appended...
        assert!(at(40 * MB).appendable(3 * MB, 40 * MB));
        // ...but not every package read again (a `touch` of the tree), nor more than 4 MiB.
        assert!(!at(40 * MB).appendable(40 * MB, 40 * MB));
        assert!(!at(40 * MB).appendable(5 * MB, 40 * MB));
        assert!(!at(8 * MB).appendable(3 * MB, 8 * MB));
        assert!(at(8 * MB).appendable(2 * MB, 8 * MB));
        // A file already twice the live records is compacted.
        assert!(!at(80 * MB).appendable(MB, 40 * MB));
        // Nothing is appended to a file that was not read whole.
        assert!(!Loaded::default().appendable(10, 1000));
        let damaged = Loaded {
            damaged_tail: true,
            ..at(1000)
        };
        assert!(!damaged.appendable(10, 1000));
    }

    /// The stanzas are read into shared chunks of about a megabyte: many stanzas, and one
    /// larger than a chunk, come back as they were written.
    #[test]
    fn stanzas_spanning_many_chunks_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cache");
        let mut c = sample();
        for i in 0..40 {
            let size = if i == 7 {
                CHUNK + CHUNK / 2
            } else {
                70_000 + i
            };
            let stanza = format!("Package: p{i}\nDescription: {}", "x".repeat(size));
            c.entries.insert(
                format!("pool/p{i}.ipk"),
                Entry {
                    key: file_key(i as i64),
                    sha256: [i as u8; 32],
                    md5: None,
                    container: Container::TarGz,
                    stanza: stanza.into(),
                },
            );
        }
        fs::write(&p, c.to_bytes("/feed", &key())).unwrap();
        let loaded = Cache::load(&p, "/feed", &key()).unwrap();
        assert_eq!(loaded.cache, c);
        assert_eq!(loaded.file_len, fs::metadata(&p).unwrap().len());
    }

    /// A record that claims a stanza longer than what is left of the file (here a gigabyte
    /// less one byte) is refused as corrupt before anything is allocated for it, and the
    /// file is left as it was.
    #[test]
    fn a_record_claiming_more_than_the_file_holds_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cache");
        let header = format!("{MAGIC}\n5\n/feed\n");
        let record = format!(
            "E 5 {} {} - tgz {}\na.ipk\nPackage: a\n",
            file_key(1),
            "ab".repeat(32),
            MAX_CACHE - 1
        );
        let bytes = [header.as_bytes(), record.as_bytes()].concat();
        fs::write(&p, &bytes).unwrap();
        let e = Cache::load(&p, "/feed", &key()).unwrap_err();
        assert!(
            matches!(&e, CacheError::Corrupt { reason, .. } if reason == "record length out of bounds"),
            "{e}"
        );
        assert_eq!(fs::read(&p).unwrap(), bytes);
    }

    #[test]
    fn foreign_and_corrupt_caches_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cache");
        let bytes = sample().to_bytes("/feed", &key());
        fs::write(&p, &bytes).unwrap();
        assert!(matches!(
            Cache::load(&p, "/other", &key()),
            Err(CacheError::Foreign { .. })
        ));
        fs::write(&p, b"something else\n").unwrap();
        assert!(matches!(
            Cache::load(&p, "/feed", &key()),
            Err(CacheError::Foreign { .. })
        ));
        // Every truncation and every single-byte change is caught.
        for cut in 0..bytes.len() {
            fs::write(&p, &bytes[..cut]).unwrap();
            assert!(
                Cache::load(&p, "/feed", &key()).is_err() || cut == 0,
                "cut {cut}"
            );
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            fs::write(&p, &b).unwrap();
            assert!(Cache::load(&p, "/feed", &key()).is_err(), "flip at {i}");
        }
    }

    /// A cache written by anyone without the key: the record changed and its MAC recomputed
    /// with another key, or with a plain checksum as before. Neither is accepted.
    #[test]
    fn a_cache_made_without_the_key_fails_authentication() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cache");
        let mut forged = sample();
        forged.entries.get_mut("b.ipk").unwrap().sha256 = [0; 32];
        let other = CacheKey::from_bytes([8; KEY_LEN]);
        fs::write(&p, forged.to_bytes("/feed", &other)).unwrap();
        let e = Cache::load(&p, "/feed", &key()).unwrap_err();
        assert!(matches!(e, CacheError::Unauthentic { .. }), "{e}");
        assert_eq!(
            e.to_string(),
            format!(
                "cache {}: fails authentication; ignoring it and reading every package",
                p.display()
            )
        );
        // Its header and records are those of a genuine cache; only the MAC differs.
        let genuine = forged.to_bytes("/feed", &key());
        let forged_bytes = fs::read(&p).unwrap();
        assert_eq!(genuine.len(), forged_bytes.len());
        assert_ne!(genuine, forged_bytes);
        fs::write(&p, &genuine).unwrap();
        assert_eq!(Cache::load(&p, "/feed", &key()).unwrap().cache, forged);
    }

    #[test]
    fn segments_cannot_be_moved_between_caches_or_reordered() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cache");
        let base = sample().to_bytes("/feed", &key());
        fs::write(&p, &base).unwrap();
        let loaded = Cache::load(&p, "/feed", &key()).unwrap();
        let e = sample().entries["b.ipk"].clone();
        let one = loaded.segment(&key(), [Record::Put("x.ipk", &e)]).unwrap();
        append(&p, &one).unwrap();
        let loaded2 = Cache::load(&p, "/feed", &key()).unwrap();
        let two = loaded2.segment(&key(), [Record::Gone("x.ipk")]).unwrap();
        // In order: fine.
        fs::write(&p, [&base[..], &one, &two].concat()).unwrap();
        assert!(Cache::load(&p, "/feed", &key()).is_ok());
        // The second segment without the first, or the two swapped: refused.
        for bytes in [[&base[..], &two].concat(), [&base[..], &two, &one].concat()] {
            fs::write(&p, &bytes).unwrap();
            assert!(matches!(
                Cache::load(&p, "/feed", &key()),
                Err(CacheError::Unauthentic { .. })
            ));
        }
        // A segment of the cache of another feed (same key) after this header: refused.
        let other = sample().to_bytes("/other", &key());
        let other_header = format!("{MAGIC}\n6\n/other\n").len();
        let feed_header = format!("{MAGIC}\n5\n/feed\n").len();
        fs::write(&p, [&base[..feed_header], &other[other_header..]].concat()).unwrap();
        assert!(matches!(
            Cache::load(&p, "/feed", &key()),
            Err(CacheError::Unauthentic { .. })
        ));
    }

    #[test]
    fn appended_segments_override_and_a_cut_append_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cache");
        let base = sample().to_bytes("/feed", &key());
        fs::write(&p, &base).unwrap();
        let loaded = Cache::load(&p, "/feed", &key()).unwrap();
        let mut changed = sample().entries["b.ipk"].clone();
        changed.stanza = "Package: b\nVersion: 2\n".into();
        let seg = loaded
            .segment(
                &key(),
                [
                    Record::Put("b.ipk", &changed),
                    Record::Gone("pool/a_1_all.ipk"),
                    Record::Sig(None),
                ],
            )
            .unwrap();
        append(&p, &seg).unwrap();
        let loaded = Cache::load(&p, "/feed", &key()).unwrap();
        assert!(!loaded.damaged_tail);
        assert_eq!(loaded.file_len as usize, base.len() + seg.len());
        // Changing entries without restating the published files forgets them.
        let mut want = Cache::default();
        want.entries.insert("b.ipk".into(), changed);
        assert_eq!(loaded.cache, want);
        // Every cut inside the appended segment drops just that segment.
        let whole = fs::read(&p).unwrap();
        for cut in base.len() + 1..whole.len() {
            fs::write(&p, &whole[..cut]).unwrap();
            let l = Cache::load(&p, "/feed", &key()).unwrap();
            assert!(l.damaged_tail, "cut {cut}");
            assert_eq!(l.cache, sample(), "cut {cut}");
            assert!(!l.appendable(10, 1000));
        }
        // Every flip inside it either drops it (it no longer parses) or fails
        // authentication; it is never taken.
        for i in base.len()..whole.len() {
            let mut b = whole.clone();
            b[i] ^= 0x01;
            fs::write(&p, &b).unwrap();
            match Cache::load(&p, "/feed", &key()) {
                Ok(l) => assert!(l.damaged_tail && l.cache == sample(), "flip at {i}"),
                Err(e) => assert!(matches!(e, CacheError::Unauthentic { .. }), "{e}"),
            }
        }
    }

    #[test]
    fn the_key_is_made_private_once_and_an_exposed_key_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let home = tempfile::tempdir().unwrap();
        let path = key_path(home.path());
        let a = CacheKey::load_or_create(&path).unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
        assert_eq!(meta.len(), KEY_LEN as u64);
        assert_eq!(
            fs::metadata(path.parent().unwrap()).unwrap().mode() & 0o777,
            0o700
        );
        // The same key every time, and nothing else left in the directory.
        let b = CacheKey::load_or_create(&path).unwrap();
        assert_eq!(a.0, b.0);
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
        // Readable by others: refused, naming the file and the mode.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let e = CacheKey::load_or_create(&path).unwrap_err().to_string();
        assert!(e.contains(&path.display().to_string()), "{e}");
        assert!(e.contains("mode 0640"), "{e}");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        // A directory others can write: refused.
        let dir = path.parent().unwrap();
        fs::set_permissions(dir, fs::Permissions::from_mode(0o777)).unwrap();
        let e = CacheKey::load_or_create(&path).unwrap_err().to_string();
        assert!(e.contains("others could replace the key"), "{e}");
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).unwrap();
        // A symlink (even to a private key file): refused.
        let link = dir.join("link.key");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        let e = CacheKey::load_or_create(&link).unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
        // A short file: refused, not overwritten.
        fs::write(&path, b"short").unwrap();
        let e = CacheKey::load_or_create(&path).unwrap_err().to_string();
        assert!(e.contains("holds 5 bytes, not 32"), "{e}");
        assert_eq!(fs::read(&path).unwrap(), b"short");
    }

    #[test]
    fn concurrent_first_uses_agree_on_one_key() {
        let home = tempfile::tempdir().unwrap();
        let path = key_path(home.path());
        let keys: Vec<[u8; KEY_LEN]> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| s.spawn(|| CacheKey::load_or_create(&path).unwrap().0))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(keys.iter().all(|k| *k == keys[0]));
        assert_eq!(fs::read(&path).unwrap(), keys[0]);
    }

    #[test]
    fn default_paths_are_per_feed_and_outside_it() {
        let home = Path::new("/home/u/.cache");
        let a = default_path(home, Path::new("/srv/feed"));
        let b = default_path(home, Path::new("/srv/feed2"));
        assert_ne!(a, b);
        assert!(a.starts_with("/home/u/.cache/archman"));
        assert_eq!(a.file_name().unwrap(), "cache");
        assert_eq!(
            a.parent().unwrap().file_name().unwrap().len(),
            16,
            "{}",
            a.display()
        );
    }
}
