//! The index cache: what `archman index` learned about each package file, keyed by its path,
//! size, mtime and inode, so a re-run over an unchanged feed reads no package contents.
//!
//! The file is a small length-prefixed text format ending in a CRC-32 of everything before it:
//! a truncated, corrupted or foreign cache (another feed, another format version) is detected
//! and ignored — the caller warns and re-reads the packages — never trusted.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

const MAGIC: &str = "archman-cache 3";
/// Refuse to read a cache larger than this.
const MAX_CACHE: u64 = 1 << 30;

/// The file identity a cached entry is valid for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileKey {
    pub size: u64,
    pub mtime: i64,
    pub mtime_nsec: i64,
    pub inode: u64,
}

impl FileKey {
    /// The key of a file's metadata.
    pub fn of(meta: &fs::Metadata) -> FileKey {
        use std::os::unix::fs::MetadataExt;
        FileKey {
            size: meta.len(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
            inode: meta.ino(),
        }
    }
}

/// What is remembered about one package file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: FileKey,
    pub sha256: String,
    pub md5: Option<String>,
    /// The package's index stanza, as published (without the blank line after it).
    pub stanza: String,
}

/// Cached entries by path relative to the feed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Cache {
    pub entries: HashMap<String, Entry>,
}

/// Why a cache file was not used.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: not an archman cache for this feed ({reason}); ignoring it", path.display())]
    Foreign { path: PathBuf, reason: String },
    #[error("{}: corrupt cache ({reason}); ignoring it", path.display())]
    Corrupt { path: PathBuf, reason: String },
}

impl Cache {
    /// Loads the cache at `path` written for feed `feed_id`. A missing file is an empty cache;
    /// anything unreadable, foreign or corrupt is an error the caller reports and ignores.
    pub fn load(path: &Path, feed_id: &str) -> Result<Cache, CacheError> {
        let meta = match fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Cache::default()),
            Err(source) => {
                return Err(CacheError::Io {
                    path: path.into(),
                    source,
                });
            }
        };
        let corrupt = |reason: String| CacheError::Corrupt {
            path: path.into(),
            reason,
        };
        if meta.len() > MAX_CACHE {
            return Err(corrupt(format!("larger than {MAX_CACHE} bytes")));
        }
        let bytes = fs::read(path).map_err(|source| CacheError::Io {
            path: path.into(),
            source,
        })?;
        parse(&bytes, feed_id).map_err(|e| match e {
            ParseError::Foreign(reason) => CacheError::Foreign {
                path: path.into(),
                reason,
            },
            ParseError::Corrupt(reason) => corrupt(reason),
        })
    }

    /// The bytes of the cache file for feed `feed_id` (entries in path order, so equal caches
    /// are equal files).
    pub fn to_bytes(&self, feed_id: &str) -> Vec<u8> {
        let mut out = format!("{MAGIC}\n{}\n{feed_id}\n", feed_id.len()).into_bytes();
        let mut paths: Vec<&String> = self.entries.keys().collect();
        paths.sort();
        for p in paths {
            let e = &self.entries[p];
            out.extend_from_slice(
                format!(
                    "E {} {} {} {} {} {} {} {}\n",
                    p.len(),
                    e.key.size,
                    e.key.mtime,
                    e.key.mtime_nsec,
                    e.key.inode,
                    e.sha256,
                    e.md5.as_deref().unwrap_or("-"),
                    e.stanza.len()
                )
                .as_bytes(),
            );
            out.extend_from_slice(p.as_bytes());
            out.push(b'\n');
            out.extend_from_slice(e.stanza.as_bytes());
            out.push(b'\n');
        }
        let sum = crc32(&out);
        out.extend_from_slice(format!("END {sum:08x}\n").as_bytes());
        out
    }
}

/// The checksum guarding the file against truncation and corruption (the cache is no trust
/// boundary: it lives in the feed, whose packages are trusted as they are anyway).
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = flate2::Crc::new();
    crc.update(bytes);
    crc.sum()
}

enum ParseError {
    Foreign(String),
    Corrupt(String),
}

/// A bounds-checked cursor over the cache bytes.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn line(&mut self) -> Result<&'a str, ParseError> {
        let rest = &self.bytes[self.at..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| ParseError::Corrupt("truncated".into()))?;
        self.at += end + 1;
        std::str::from_utf8(&rest[..end]).map_err(|_| ParseError::Corrupt("not text".into()))
    }

    /// Exactly `len` bytes followed by a newline.
    fn exact(&mut self, len: usize) -> Result<&'a str, ParseError> {
        let rest = &self.bytes[self.at..];
        if rest.len() < len + 1 || rest[len] != b'\n' {
            return Err(ParseError::Corrupt("truncated record".into()));
        }
        self.at += len + 1;
        std::str::from_utf8(&rest[..len]).map_err(|_| ParseError::Corrupt("not text".into()))
    }
}

fn parse(bytes: &[u8], feed_id: &str) -> Result<Cache, ParseError> {
    let corrupt = |r: &str| ParseError::Corrupt(r.to_string());
    let mut c = Cursor { bytes, at: 0 };
    if !bytes.starts_with(MAGIC.as_bytes()) || c.line()? != MAGIC {
        return Err(ParseError::Foreign("unknown format".into()));
    }
    let id_len: usize = c.line()?.parse().map_err(|_| corrupt("bad header"))?;
    if id_len > 4096 || c.exact(id_len)? != feed_id {
        return Err(ParseError::Foreign("written for another feed".into()));
    }
    // The checksum line comes last and covers everything before it.
    let body_end = bytes
        .strip_suffix(b"\n")
        .and_then(|b| b.iter().rposition(|&c| c == b'\n'))
        .map(|i| i + 1)
        .filter(|&e| e >= c.at)
        .ok_or_else(|| corrupt("truncated"))?;
    let trailer = std::str::from_utf8(&bytes[body_end..]).map_err(|_| corrupt("bad trailer"))?;
    let expected = format!("END {:08x}\n", crc32(&bytes[..body_end]));
    if trailer != expected {
        return Err(corrupt("checksum mismatch"));
    }
    let mut cache = Cache::default();
    while c.at < body_end {
        let head = c.line()?;
        let f: Vec<&str> = head.split(' ').collect();
        let ["E", plen, size, mtime, nsec, inode, sha, md5, clen] = f[..] else {
            return Err(corrupt("bad record header"));
        };
        let num = |s: &str| s.parse::<i64>().map_err(|_| corrupt("bad number"));
        let unum = |s: &str| s.parse::<u64>().map_err(|_| corrupt("bad number"));
        let plen = unum(plen)? as usize;
        let clen = unum(clen)? as usize;
        if plen > 4096 || clen > bytes.len() {
            return Err(corrupt("record length out of bounds"));
        }
        let key = FileKey {
            size: unum(size)?,
            mtime: num(mtime)?,
            mtime_nsec: num(nsec)?,
            inode: unum(inode)?,
        };
        let hexok = |s: &str, n| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
        if !hexok(sha, 64) || (md5 != "-" && !hexok(md5, 32)) {
            return Err(corrupt("bad hash"));
        }
        let path = c.exact(plen)?.to_string();
        let stanza = c.exact(clen)?.to_string();
        cache.entries.insert(
            path,
            Entry {
                key,
                sha256: sha.to_string(),
                md5: (md5 != "-").then(|| md5.to_string()),
                stanza,
            },
        );
    }
    Ok(cache)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Cache {
        let mut c = Cache::default();
        c.entries.insert(
            "pool/a_1_all.ipk".into(),
            Entry {
                key: FileKey {
                    size: 10,
                    mtime: 1_700_000_000,
                    mtime_nsec: 5,
                    inode: 42,
                },
                sha256: "ab".repeat(32),
                md5: None,
                stanza: "Package: a\nVersion: 1\nArchitecture: all\n".into(),
            },
        );
        c.entries.insert(
            "b.ipk".into(),
            Entry {
                key: FileKey {
                    size: 1,
                    mtime: 0,
                    mtime_nsec: 0,
                    inode: 1,
                },
                sha256: "cd".repeat(32),
                md5: Some("ef".repeat(16)),
                stanza: "Package: b\n".into(),
            },
        );
        c
    }

    #[test]
    fn round_trips_and_is_deterministic() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cache");
        let bytes = sample().to_bytes("/feed");
        assert_eq!(bytes, sample().to_bytes("/feed"));
        fs::write(&p, &bytes).unwrap();
        assert_eq!(Cache::load(&p, "/feed").unwrap(), sample());
        assert_eq!(
            Cache::load(&dir.path().join("absent"), "/feed").unwrap(),
            Cache::default()
        );
    }

    #[test]
    fn foreign_and_corrupt_caches_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cache");
        let bytes = sample().to_bytes("/feed");
        fs::write(&p, &bytes).unwrap();
        assert!(matches!(
            Cache::load(&p, "/other"),
            Err(CacheError::Foreign { .. })
        ));
        fs::write(&p, b"something else\n").unwrap();
        assert!(matches!(
            Cache::load(&p, "/feed"),
            Err(CacheError::Foreign { .. })
        ));
        // Every truncation and every single-byte change is caught.
        for cut in 0..bytes.len() {
            fs::write(&p, &bytes[..cut]).unwrap();
            assert!(Cache::load(&p, "/feed").is_err() || cut == 0, "cut {cut}");
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            fs::write(&p, &b).unwrap();
            assert!(Cache::load(&p, "/feed").is_err(), "flip at {i}");
        }
    }
}
