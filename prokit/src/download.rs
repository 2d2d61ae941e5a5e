//! Fetching packages into the package cache, in parallel, each capped at its indexed `Size`
//! and SHA-256-checked while it streams (docs/threats.md §1, §8, §11).
//!
//! Owns: joining a feed URL with a `Filename` from a verified index (refusing names that leave
//! the feed), the parallel download loop, and the cache rule: a cached file is reused only
//! after it was re-hashed and matched, and a download lands under its final name only once
//! its size and hash matched (written to a temporary name beside it, then renamed).
//!
//! Cache files are not fsync'd: after a crash a cache file is either absent or complete (the
//! rename is the last step), and every cached file is re-verified before reuse anyway.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use sha2::{Digest, Sha256};
use std::os::unix::fs::OpenOptionsExt;

use crate::fetch::{FetchError, Fetcher};

/// Why a download failed. Messages name the URL (or path) and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// A `Filename` that would leave the feed (threat 11).
    #[error("Filename {filename:?} leaves the feed: {reason}")]
    BadFilename {
        filename: String,
        reason: &'static str,
    },
    /// The index gives a SHA-256 that is not 64 hex digits.
    #[error("{url}: the index gives a bad SHA-256 {sha256:?} (expected 64 hex digits)")]
    BadItem { url: String, sha256: String },
    /// The server does not have the file.
    #[error(
        "{url}: missing on the server (not found): the index lists a file the feed does not have (stale index?)"
    )]
    NotFound { url: String },
    /// More bytes arrived than the index's `Size`; the download was stopped there.
    #[error(
        "{url}: more than the {expected} bytes the index gives as its Size; stopped: tampered or stale index?"
    )]
    TooLarge { url: String, expected: u64 },
    /// Fewer bytes arrived than the index's `Size`.
    #[error("{url}: {actual} bytes, but the index gives Size {expected}: tampered or stale index?")]
    Size {
        url: String,
        expected: u64,
        actual: u64,
    },
    /// The bytes do not hash to the index's SHA-256.
    #[error("{url}: SHA-256 is {actual}, but the index gives {expected}: tampered or stale index?")]
    Hash {
        url: String,
        expected: String,
        actual: String,
    },
    /// The transfer failed (network, HTTP status, timeout).
    #[error("{0}")]
    Fetch(FetchError),
    /// Reading the cache or writing the download failed.
    #[error("{}: {reason}", path.display())]
    Io { path: PathBuf, reason: String },
    /// What to download could not be read back from the plan (crate::planned).
    #[error("{0}")]
    Plan(String),
}

/// Joins a feed base URL and a `Filename` from a verified index; refuses a `Filename` that
/// leaves the feed (absolute, `..` components, a scheme, backslashes, control characters,
/// empty) — threat 11. For URLs, every byte of the name other than `A-Z a-z 0-9 - . _ ~ /` is
/// percent-encoded, so `%2e%2e`, `?` or `#` in a name stay literal; for a plain-path base the
/// name is appended as it is.
pub fn package_url(base: &str, filename: &str) -> Result<String, DownloadError> {
    let bad = |reason| DownloadError::BadFilename {
        filename: filename.into(),
        reason,
    };
    if filename.is_empty() {
        return Err(bad("empty"));
    }
    if filename.starts_with('/') {
        return Err(bad("absolute path"));
    }
    if filename.contains('\\') {
        return Err(bad("contains a backslash"));
    }
    if filename.chars().any(char::is_control) {
        return Err(bad("contains a control character"));
    }
    if filename.split('/').any(|c| c == "..") {
        return Err(bad("has a `..` component"));
    }
    if filename.contains("://") || starts_with_scheme(filename) {
        return Err(bad("has a URL scheme"));
    }
    let base = base.trim_end_matches('/');
    if base.starts_with('/') {
        return Ok(format!("{base}/{filename}"));
    }
    let mut out = String::with_capacity(base.len() + 1 + filename.len() * 3);
    out.push_str(base);
    out.push('/');
    for &b in filename.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(out)
}

/// `scheme:` at the start (RFC 3986: a letter, then letters, digits, `+ - .`), not followed
/// by a digit: `http:x`, `file:/etc` are schemes; `foo-1:2.0_all.ipk` (an epoch) is not.
fn starts_with_scheme(name: &str) -> bool {
    let Some((scheme, rest)) = name.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && !rest.starts_with(|c: char| c.is_ascii_digit())
}

/// One package to fetch into the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadItem {
    /// Where to fetch it (see [`package_url`]).
    pub url: String,
    /// Further URLs of the same file (the feed's mirrors), tried in order when `url` fails
    /// for a reason of the server; whichever serves it, its size and SHA-256 are checked.
    pub mirrors: Vec<String>,
    /// The `Size` from the verified index: the download is capped at it.
    pub size: u64,
    /// The SHA-256 (hex) from the verified index.
    pub sha256: String,
    /// Its place in the package cache.
    pub dest: PathBuf,
}

/// What to download for the package file `filename` of a verified index, whose size and
/// SHA-256 (64 hex digits) the index gives, from a feed at `bases` (its URL, then its
/// mirrors; at least one), into the cache directory `cache`. The URLs are rotated by the
/// package's hash, so that downloads spread over the mirrors (each falls over to the next;
/// the hash is checked whichever serves it). The cache name starts with the hash, so two
/// packages of one file name never share it.
pub fn item_for(
    filename: &str,
    size: u64,
    sha256: &str,
    bases: &[String],
    cache: &Path,
) -> Result<DownloadItem, DownloadError> {
    let filename = filename.trim();
    let bad_hash = || DownloadError::BadItem {
        url: filename.to_string(),
        sha256: sha256.to_string(),
    };
    // The hash names the cache file and picks the first mirror: its first 16 digits at least.
    if !sha256
        .get(..16)
        .is_some_and(|p| p.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(bad_hash());
    }
    let mut urls = bases
        .iter()
        .map(|b| package_url(b, filename))
        .collect::<Result<Vec<_>, _>>()?;
    if urls.is_empty() {
        return Err(DownloadError::BadFilename {
            filename: filename.into(),
            reason: "no feed URL to fetch it from",
        });
    }
    let start = first_base(sha256, urls.len());
    urls.rotate_left(start);
    let url = urls.remove(0);
    Ok(DownloadItem {
        url,
        mirrors: urls,
        size,
        sha256: sha256.to_string(),
        dest: cache_path(cache, sha256, filename),
    })
}

/// Which of `n` base URLs a package whose SHA-256 is `sha256` (hex) is fetched from first.
pub(crate) fn first_base(sha256: &str, n: usize) -> usize {
    let first = sha256
        .get(..2)
        .and_then(|h| usize::from_str_radix(h, 16).ok());
    first.unwrap_or(0) % n.max(1)
}

/// The cache path of package file `filename` whose SHA-256 is `sha256` (hex): the hash's
/// first 16 digits, `-`, the file's own name.
pub(crate) fn cache_path(cache: &Path, sha256: &str, filename: &str) -> PathBuf {
    let base = filename.trim().rsplit('/').next().unwrap_or("package.ipk");
    let prefix = sha256.get(..16).unwrap_or(sha256);
    let mut name = std::ffi::OsString::with_capacity(prefix.len() + 1 + base.len());
    name.push(prefix);
    name.push("-");
    name.push(base);
    cache.join(name)
}

/// [`download_each`] over a list of items.
pub fn download_all(
    fetcher: &Fetcher,
    items: &[DownloadItem],
    workers: usize,
    progress: &(dyn Fn(usize, &DownloadItem, bool) + Sync),
) -> Result<(), DownloadError> {
    download_each(
        fetcher,
        items.len(),
        &|i| Ok(items[i].clone()),
        workers,
        progress,
    )
}

/// Downloads items `0..count`, each made by `item` when it is needed (a plan of thousands
/// of packages keeps compact records, not every URL and cache path: [`crate::planned`]),
/// with at most `workers` in parallel (std threads). An existing `dest`
/// is re-hashed and reused only if its size and SHA-256 match (else it is replaced). Each
/// download is capped at the item's size (one byte more is an error), hashed while it streams
/// to a temporary file beside `dest`, and renamed into place only when size and hash match.
/// `progress` is called once per item that finished well, with its index in `items` and `true`
/// when it came from the cache.
///
/// After the first failure no new download starts; the running ones finish, and the error of
/// the failed item that comes first in `items` is returned. Temporary files are always removed.
pub fn download_each(
    fetcher: &Fetcher,
    count: usize,
    item: &(dyn Fn(usize) -> Result<DownloadItem, DownloadError> + Sync),
    workers: usize,
    progress: &(dyn Fn(usize, &DownloadItem, bool) + Sync),
) -> Result<(), DownloadError> {
    download_each_open(fetcher, count, item, workers, &|i, item, cached, _| {
        progress(i, item, cached)
    })
}

/// What [`download_each_open`] calls per item: its index, the item, whether the cache had it,
/// and the file written when it was downloaded now.
pub type OpenProgress<'a> = dyn Fn(usize, &DownloadItem, bool, Option<File>) + Sync + 'a;

/// [`download_each`], `progress` also given — for an item downloaded now, not taken from the
/// cache — the file it was written to, open for reading: its bytes are those the download
/// hashed as it wrote them (the file is created anew, writable only by its owner, and read
/// through the same open file, whatever is renamed over its name meanwhile).
pub fn download_each_open(
    fetcher: &Fetcher,
    count: usize,
    item: &(dyn Fn(usize) -> Result<DownloadItem, DownloadError> + Sync),
    workers: usize,
    progress: &OpenProgress<'_>,
) -> Result<(), DownloadError> {
    for i in 0..count {
        let item = item(i)?;
        if item.sha256.len() != 64 || !item.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(DownloadError::BadItem {
                url: item.url,
                sha256: item.sha256,
            });
        }
    }
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let errors: Mutex<Vec<(usize, DownloadError)>> = Mutex::new(Vec::new());
    let workers = workers.clamp(1, count.max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                while !failed.load(Ordering::SeqCst) {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= count {
                        break;
                    }
                    match item(i)
                        .and_then(|item| download_one(fetcher, &item).map(|got| (item, got)))
                    {
                        Ok((item, Some(file))) => progress(i, &item, false, Some(file)),
                        Ok((item, None)) => progress(i, &item, true, None),
                        Err(e) => {
                            failed.store(true, Ordering::SeqCst);
                            errors
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .push((i, e));
                        }
                    }
                }
            });
        }
    });
    let errors = errors.into_inner().unwrap_or_else(|p| p.into_inner());
    match errors.into_iter().min_by_key(|(i, _)| *i) {
        Some((_, e)) => Err(e),
        None => Ok(()),
    }
}

/// Writes through to a file, hashing and counting.
struct HashingWriter {
    file: File,
    hasher: Sha256,
    written: u64,
}

impl Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

static PART_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Fetches one item into the cache: `Ok(None)` when the cached copy was good, else the file
/// written, open for reading ([`download_each_open`]).
fn download_one(fetcher: &Fetcher, item: &DownloadItem) -> Result<Option<File>, DownloadError> {
    let expected = item.sha256.to_ascii_lowercase();
    if cached_copy_matches(item, &expected)? {
        return Ok(None);
    }
    let mut first = None;
    for url in std::iter::once(&item.url).chain(&item.mirrors) {
        match download_from(fetcher, item, url, &expected) {
            Ok(file) => return Ok(Some(file)),
            // This machine's own trouble: another mirror would not help.
            Err(e @ DownloadError::Io { .. }) => return Err(e),
            Err(e) => {
                first.get_or_insert(e);
            }
        }
    }
    Err(first.expect("at least one URL"))
}

/// One attempt at `item` from `url`: streamed to a temporary file, checked, renamed; the file
/// is returned open for reading.
fn download_from(
    fetcher: &Fetcher,
    item: &DownloadItem,
    url: &str,
    expected: &str,
) -> Result<File, DownloadError> {
    let io_err = |path: &Path, what: &str, e: io::Error| DownloadError::Io {
        path: path.into(),
        reason: format!("{what}: {e}"),
    };
    let dir = match item.dest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = item
        .dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let part = dir.join(format!(
        ".{name}.part-{}-{}",
        PID.get_or_init(std::process::id),
        PART_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    // Writable by its owner only, whatever the umask ([`download_each_open`]).
    let create = || {
        fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&part)
    };
    // The directory is made when it is missing (once, not for every package).
    let file = match create() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dir).map_err(|e| io_err(dir, "cannot create the directory", e))?;
            create()
        }
        r => r,
    }
    .map_err(|e| io_err(&part, "cannot create", e))?;
    let mut sink = HashingWriter {
        file,
        hasher: Sha256::new(),
        written: 0,
    };
    let result = (|| {
        let url = url.to_string();
        match fetcher.get(&url, item.size, &mut sink) {
            Ok(_) => {}
            Err(FetchError::NotFound { .. }) => return Err(DownloadError::NotFound { url }),
            Err(FetchError::TooLarge { .. }) => {
                return Err(DownloadError::TooLarge {
                    url,
                    expected: item.size,
                });
            }
            Err(e) => return Err(DownloadError::Fetch(e)),
        }
        if sink.written != item.size {
            return Err(DownloadError::Size {
                url,
                expected: item.size,
                actual: sink.written,
            });
        }
        let actual = hex::encode(sink.hasher.clone().finalize());
        if actual != expected {
            return Err(DownloadError::Hash {
                url,
                expected: expected.to_string(),
                actual,
            });
        }
        sink.flush().map_err(|e| io_err(&part, "cannot write", e))?;
        fs::rename(&part, &item.dest).map_err(|e| io_err(&item.dest, "cannot rename into", e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&part);
    }
    result.map(|()| sink.file)
}

/// Whether `dest` already holds exactly the item (size, then SHA-256 of at most `size` bytes).
fn cached_copy_matches(item: &DownloadItem, expected: &str) -> Result<bool, DownloadError> {
    // The cache is inside the root: what is at `dest` is read only if it is a regular file,
    // never through a symlink (which could lead out of the root) nor from a FIFO (which
    // would never end), and not past the item's size. Anything else is downloaded again and
    // renamed over it.
    let mut reader = match safe_fs::open_bounded(&item.dest, item.size) {
        Ok(Some(r)) => r,
        Ok(None) | Err(_) => return Ok(false),
    };
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::FileTooLarge => return Ok(false),
            Err(e) => {
                return Err(DownloadError::Io {
                    path: item.dest.clone(),
                    reason: format!("cannot read the cached file: {e}"),
                });
            }
        };
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok(total == item.size && hex::encode(hasher.finalize()) == expected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fetch::FetchOptions;
    use crate::fetch::test_server::{PyServer, canned};
    use feeds::build::PackageBuilder;
    use std::time::Duration;

    fn fetcher() -> Fetcher {
        Fetcher::new(&FetchOptions {
            timeout: Duration::from_secs(10),
            retries: 0,
            ca_file: None,
            credentials: Default::default(),
        })
        .unwrap()
    }

    fn sha(data: &[u8]) -> String {
        hex::encode(Sha256::digest(data))
    }

    /// Real .ipk files of different sizes.
    fn ipk(i: usize) -> Vec<u8> {
        PackageBuilder::new(format!(
            "Package: p{i}\nVersion: 1.0-{i}\nArchitecture: all\nDescription: test\n"
        ))
        .file(
            &format!("usr/share/p{i}/data"),
            0o644,
            vec![i as u8; 1000 * i + 7],
        )
        .build()
        .unwrap()
    }

    struct Feed {
        www: tempfile::TempDir,
        cache: tempfile::TempDir,
        server: PyServer,
        files: Vec<(String, Vec<u8>)>,
    }

    fn feed(n: usize) -> Feed {
        let www = tempfile::tempdir().unwrap();
        fs::create_dir(www.path().join("pool")).unwrap();
        let files: Vec<(String, Vec<u8>)> = (0..n)
            .map(|i| {
                let name = format!("pool/p{i}_1.0-{i}_all.ipk");
                let data = ipk(i);
                fs::write(www.path().join(&name), &data).unwrap();
                (name, data)
            })
            .collect();
        let server = PyServer::start(www.path());
        Feed {
            www,
            cache: tempfile::tempdir().unwrap(),
            server,
            files,
        }
    }

    impl Feed {
        fn items(&self, base: &str) -> Vec<DownloadItem> {
            self.files
                .iter()
                .map(|(name, data)| DownloadItem {
                    url: package_url(base, name).unwrap(),
                    mirrors: Vec::new(),
                    size: data.len() as u64,
                    sha256: sha(data),
                    dest: self.cache.path().join(name.rsplit('/').next().unwrap()),
                })
                .collect()
        }

        /// Names in the cache directory (temporary files included).
        fn cache_names(&self) -> Vec<String> {
            let mut v: Vec<String> = fs::read_dir(self.cache.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        }
    }

    fn run(
        items: &[DownloadItem],
        workers: usize,
    ) -> (Result<(), DownloadError>, Vec<(String, bool)>) {
        let seen = Mutex::new(Vec::new());
        let r = download_all(&fetcher(), items, workers, &|_, item, reused| {
            seen.lock().unwrap().push((item.url.clone(), reused));
        });
        let mut seen = seen.into_inner().unwrap();
        seen.sort();
        (r, seen)
    }

    #[test]
    fn package_url_joins_and_encodes() {
        assert_eq!(
            package_url("http://h/feed/", "pool/a_1.0_all.ipk").unwrap(),
            "http://h/feed/pool/a_1.0_all.ipk"
        );
        assert_eq!(
            package_url("https://h/feed", "libc++_1:2.0+x_all.ipk").unwrap(),
            "https://h/feed/libc%2B%2B_1%3A2.0%2Bx_all.ipk"
        );
        // percent signs stay literal: no `%2e%2e` sneaks through as `..`
        assert_eq!(
            package_url("http://h/f", "%2e%2e/x?y#z").unwrap(),
            "http://h/f/%252e%252e/x%3Fy%23z"
        );
        assert_eq!(
            package_url("/srv/feed/", "a b.ipk").unwrap(),
            "/srv/feed/a b.ipk"
        );
        // an epoch is not a scheme
        assert!(package_url("http://h", "foo-1:2.0_all.ipk").is_ok());
    }

    #[test]
    fn threat11_filename_leaving_the_feed_refused() {
        for name in [
            "",
            "/etc/passwd",
            "../secret.ipk",
            "pool/../../x.ipk",
            "pool/..",
            "http://evil.example/x.ipk",
            "file:/etc/passwd",
            "javascript:alert",
            "pool\\..\\x.ipk",
            "a\nb.ipk",
        ] {
            let e = package_url("http://h/feed", name).unwrap_err();
            assert!(
                matches!(e, DownloadError::BadFilename { .. }),
                "{name:?}: {e}"
            );
            assert!(e.to_string().contains("leaves the feed"), "{e}");
        }
    }

    #[test]
    fn downloads_in_parallel_then_reuses_the_cache() {
        let f = feed(6);
        let items = f.items(&f.server.url());
        let (r, seen) = run(&items, 3);
        r.unwrap();
        assert_eq!(seen.len(), 6);
        assert!(seen.iter().all(|(_, reused)| !reused));
        for (item, (_, data)) in items.iter().zip(&f.files) {
            assert_eq!(&fs::read(&item.dest).unwrap(), data);
        }
        // no temporary files left
        assert_eq!(f.cache_names().len(), 6, "{:?}", f.cache_names());

        // Second run: everything from the cache, even with the server gone.
        drop(f.server);
        let (r, seen) = run(&items, 3);
        r.unwrap();
        assert!(seen.iter().all(|(_, reused)| *reused), "{seen:?}");
    }

    #[test]
    fn a_bad_cached_copy_is_replaced() {
        let f = feed(2);
        let items = f.items(&f.server.url());
        // same size, other bytes; and a truncated one
        let mut wrong = f.files[0].1.clone();
        wrong[10] ^= 0xff;
        fs::write(&items[0].dest, &wrong).unwrap();
        fs::write(&items[1].dest, b"short").unwrap();
        let (r, seen) = run(&items, 2);
        r.unwrap();
        assert!(seen.iter().all(|(_, reused)| !reused), "{seen:?}");
        assert_eq!(fs::read(&items[0].dest).unwrap(), f.files[0].1);
        assert_eq!(fs::read(&items[1].dest).unwrap(), f.files[1].1);
    }

    #[test]
    fn threat18_a_cached_copy_is_never_read_through_a_symlink_or_from_a_fifo() {
        // The cache is inside the root, which may be hostile: a symlink at a package's cache
        // path to a file outside the root holding exactly the package's bytes is not read
        // (nothing outside the root is opened through the root), and a FIFO there does not
        // hang the download. Both are downloaded again and replaced by regular files.
        let f = feed(2);
        let items = f.items(&f.server.url());
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("copy.ipk");
        fs::write(&target, &f.files[0].1).unwrap();
        std::os::unix::fs::symlink(&target, &items[0].dest).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(&items[1].dest)
            .status()
            .unwrap();
        assert!(made.success());
        let (r, seen) = run(&items, 2);
        r.unwrap();
        assert!(seen.iter().all(|(_, reused)| !reused), "{seen:?}");
        for (item, (_, data)) in items.iter().zip(&f.files) {
            let m = fs::symlink_metadata(&item.dest).unwrap();
            assert!(m.is_file(), "{}", item.dest.display());
            assert_eq!(&fs::read(&item.dest).unwrap(), data);
        }
        // The file outside is as it was.
        assert_eq!(fs::read(&target).unwrap(), f.files[0].1);
    }

    #[test]
    fn a_download_hands_over_the_file_it_wrote_and_a_cached_copy_none() {
        use std::io::{Read, Seek};
        let f = feed(3);
        let items = f.items(&f.server.url());
        let got = Mutex::new(Vec::new());
        let run_open = || {
            download_each_open(
                &fetcher(),
                items.len(),
                &|i| Ok(items[i].clone()),
                2,
                &|i, _, cached, file| {
                    got.lock().unwrap().push((i, cached, file));
                },
            )
            .unwrap();
            let mut v = std::mem::take(&mut *got.lock().unwrap());
            v.sort_by_key(|(i, _, _)| *i);
            v
        };
        for (i, cached, file) in run_open() {
            assert!(!cached);
            let mut file = file.expect("the file written");
            // Read back from its start, through the same open file, even with another file
            // renamed over its name meanwhile: the bytes the download hashed. (Writing into
            // the file itself takes its owner: this process.)
            let other = f.cache.path().join("other");
            fs::write(&other, b"something else").unwrap();
            fs::rename(&other, &items[i].dest).unwrap();
            file.seek(io::SeekFrom::Start(0)).unwrap();
            let mut back = Vec::new();
            file.read_to_end(&mut back).unwrap();
            assert_eq!(back, f.files[i].1);
            fs::write(&items[i].dest, &f.files[i].1).unwrap();
        }
        // From the cache: no file handed over (it is read from its path and hashed again).
        for (_, cached, file) in run_open() {
            assert!(cached && file.is_none());
        }
    }

    #[test]
    fn a_missing_cache_directory_is_made() {
        let f = feed(2);
        let mut items = f.items(&f.server.url());
        for item in &mut items {
            let name = item.dest.file_name().unwrap().to_owned();
            item.dest = f.cache.path().join("not/yet").join(name);
        }
        let (r, seen) = run(&items, 2);
        r.unwrap();
        assert_eq!(seen.len(), 2);
        for (item, (_, data)) in items.iter().zip(&f.files) {
            assert_eq!(&fs::read(&item.dest).unwrap(), data);
        }
    }

    #[test]
    fn downloads_over_file_urls() {
        let f = feed(2);
        let base = format!("file://{}", f.www.path().display());
        let (r, seen) = run(&f.items(&base), 2);
        r.unwrap();
        assert_eq!(seen.len(), 2);
    }

    #[test]
    fn threat1_tampered_package_refused() {
        let f = feed(3);
        let items = f.items(&f.server.url());
        // same size, one byte changed on the server
        let (name, data) = &f.files[1];
        let mut evil = data.clone();
        evil[data.len() / 2] ^= 1;
        fs::write(f.www.path().join(name), &evil).unwrap();
        let (r, _) = run(&items[1..2], 1);
        let e = r.unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, DownloadError::Hash { .. }), "{msg}");
        assert!(msg.contains(&items[1].url), "{msg}");
        assert!(
            msg.contains(&format!(
                "SHA-256 is {}, but the index gives {}",
                sha(&evil),
                items[1].sha256
            )),
            "{msg}"
        );
        assert!(msg.contains("tampered or stale index?"), "{msg}");
        assert!(!items[1].dest.exists());
        assert!(f.cache_names().is_empty(), "{:?}", f.cache_names());
    }

    #[test]
    fn threat8_package_larger_than_its_size_is_cut_off() {
        let f = feed(1);
        let items = f.items(&f.server.url());
        let (name, data) = &f.files[0];
        let mut longer = data.clone();
        longer.push(0);
        fs::write(f.www.path().join(name), &longer).unwrap();
        let (r, _) = run(&items, 1);
        let e = r.unwrap_err();
        assert!(
            matches!(e, DownloadError::TooLarge { expected, .. } if expected == data.len() as u64),
            "{e}"
        );
        assert!(f.cache_names().is_empty());

        // an endless body is stopped at the size too
        let base = canned(1, |_, _, s| {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
            let chunk = vec![0u8; 65536];
            for _ in 0..4096 {
                if s.write_all(&chunk).is_err() {
                    return;
                }
            }
        });
        let item = DownloadItem {
            url: package_url(&base, "endless.ipk").unwrap(),
            mirrors: Vec::new(),
            size: 100_000,
            sha256: "00".repeat(32),
            dest: f.cache.path().join("endless.ipk"),
        };
        let (r, _) = run(std::slice::from_ref(&item), 1);
        let e = r.unwrap_err();
        assert!(
            matches!(
                e,
                DownloadError::TooLarge {
                    expected: 100_000,
                    ..
                }
            ),
            "{e}"
        );
        assert!(
            e.to_string()
                .contains("more than the 100000 bytes the index gives"),
            "{e}"
        );
        assert!(f.cache_names().is_empty());
    }

    #[test]
    fn shorter_package_refused() {
        let f = feed(1);
        let items = f.items(&f.server.url());
        let (name, data) = &f.files[0];
        fs::write(f.www.path().join(name), &data[..data.len() - 1]).unwrap();
        let (r, _) = run(&items, 1);
        let e = r.unwrap_err();
        assert!(
            e.to_string().contains(&format!(
                "{} bytes, but the index gives Size {}",
                data.len() - 1,
                data.len()
            )),
            "{e}"
        );
    }

    #[test]
    fn missing_package_says_so_and_the_rest_finish() {
        let f = feed(4);
        let items = f.items(&f.server.url());
        fs::remove_file(f.www.path().join(&f.files[0].0)).unwrap();
        fs::remove_file(f.www.path().join(&f.files[2].0)).unwrap();
        let (r, seen) = run(&items, 1);
        let e = r.unwrap_err();
        assert!(matches!(e, DownloadError::NotFound { .. }), "{e}");
        // the first failing item in order is the one reported
        assert!(
            e.to_string()
                .starts_with(&format!("{}: missing on the server", items[0].url)),
            "{e}"
        );
        // with one worker, nothing starts after the first failure
        assert!(seen.is_empty(), "{seen:?}");
        assert!(f.cache_names().is_empty());

        // with more workers the running ones finish and are kept
        let (r, seen) = run(&items, 4);
        assert!(matches!(r.unwrap_err(), DownloadError::NotFound { url } if url == items[0].url));
        for (url, _) in &seen {
            let item = items.iter().find(|i| &i.url == url).unwrap();
            assert!(item.dest.is_file());
        }
        assert!(
            f.cache_names().iter().all(|n| !n.starts_with('.')),
            "{:?}",
            f.cache_names()
        );
    }

    #[test]
    fn bad_index_hash_refused_before_downloading() {
        let f = feed(1);
        let mut items = f.items(&f.server.url());
        items[0].sha256 = "xyz".into();
        let (r, seen) = run(&items, 1);
        assert!(matches!(r.unwrap_err(), DownloadError::BadItem { .. }));
        assert!(seen.is_empty());
    }

    #[test]
    fn a_package_falls_over_to_a_mirror_and_is_checked_whichever_serves_it() {
        let f = feed(1);
        let (name, data) = f.files[0].clone();
        // The first mirror serves other bytes under the name, the second is the real one;
        // the package's own URL is down.
        let other = tempfile::tempdir().unwrap();
        fs::create_dir_all(other.path().join("pool")).unwrap();
        fs::write(other.path().join(&name), b"an evil package!").unwrap();
        let evil = PyServer::start(other.path());
        let down = format!("http://127.0.0.1:{}", {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        });
        let mut items = f.items(&down);
        items[0].mirrors = vec![
            package_url(&evil.url(), &name).unwrap(),
            package_url(&f.server.url(), &name).unwrap(),
        ];
        let (r, _) = run(&items, 1);
        r.unwrap();
        assert_eq!(fs::read(&items[0].dest).unwrap(), data);
        // Every URL failing: the first URL's error.
        fs::remove_file(&items[0].dest).unwrap();
        items[0].mirrors.pop();
        let (r, _) = run(&items, 1);
        let e = r.unwrap_err().to_string();
        assert!(e.contains(&down), "{e}");
    }
}
