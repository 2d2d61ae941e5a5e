//! The compressed parts of the published `Packages.gz` (see `feeds::index_gz`), kept beside
//! the index cache so that a re-index recompresses only the runs of stanzas that changed
//! (docs/crash-safety.md §2.3, docs/threats.md §35).
//!
//! Each part is filed under the SHA-256 of the run of `Packages` text it inflates to. The
//! parts go into the signed `Release` (through the hash of `Packages.gz`) without being
//! inflated again, so the file is a trust boundary like the cache: it lives in the cache
//! directory, and it is authenticated with the cache's per-host key (an HMAC-SHA256 over the
//! format, the feed and every byte). A file that is missing, damaged, made for another feed or
//! whose MAC fails is ignored, and every run is compressed again: losing it costs time only.
//!
//! Format: `archman-gz-parts 1\n`, `feed <feed id>\n`, then per part its 32-byte key, its
//! length (u32, little-endian) and its bytes, then the 32-byte MAC. It is rewritten (temporary
//! file, rename, no fsync) whenever the set of parts changes.

use std::collections::HashMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::cache::CacheKey;
use crate::index::body::{Body, Piece};

const MAGIC: &[u8] = b"archman-gz-parts 1\n";
/// Refuse to read a parts file larger than this.
const MAX_LEN: u64 = 1 << 30;

/// The parts file of the cache file `cache`.
pub fn path_for(cache: &Path) -> PathBuf {
    let mut name = cache.file_name().unwrap_or_default().to_os_string();
    name.push(".gz-parts");
    cache.with_file_name(name)
}

/// Compressed runs by the SHA-256 of their text. Those loaded are pieces of the file as read
/// (not copied out of it); `Packages.gz` is made of the same pieces, shared.
#[derive(Debug, Default)]
pub struct Parts {
    parts: HashMap<[u8; 32], Piece>,
}

/// What [`Parts::gzip`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GzipStats {
    pub runs: usize,
    pub compressed: usize,
    /// Whether the parts differ from those given (some run compressed, or some part no
    /// longer used): then they are worth saving.
    pub changed: bool,
}

impl Parts {
    /// Reads the parts at `path`; `Err` (for a warning) when the file is there but cannot be
    /// used, an empty set when it is absent.
    pub fn load(path: &Path, feed_id: &str, key: &CacheKey) -> Result<Parts, String> {
        let file = match safe_fs::read_bounded(path, MAX_LEN) {
            Ok(Some(b)) => std::sync::Arc::new(b),
            Ok(None) => return Ok(Parts::default()),
            Err(e) => return Err(e.to_string()),
        };
        if file.len() < 32 {
            return Err("truncated".into());
        }
        let (body, mac) = file.split_at(file.len() - 32);
        if key.mac(body) != mac {
            return Err("its MAC does not verify (changed, or made with another key)".into());
        }
        let head = [MAGIC, format!("feed {feed_id}\n").as_bytes()].concat();
        let Some(mut rest) = body.strip_prefix(&head[..]) else {
            return Err("made for another feed or format".into());
        };
        let mut parts = HashMap::new();
        while !rest.is_empty() {
            if rest.len() < 36 {
                return Err("truncated".into());
            }
            let (k, tail) = rest.split_at(32);
            let (len, tail) = tail.split_at(4);
            let len = u32::from_le_bytes(len.try_into().unwrap_or_default()) as usize;
            if tail.len() < len {
                return Err("truncated".into());
            }
            let start = file.len() - 32 - tail.len();
            let part = Piece::of(&file, start..start + len).ok_or("truncated")?;
            parts.insert(k.try_into().unwrap_or_default(), part);
            rest = &tail[len..];
        }
        Ok(Parts { parts })
    }

    /// The parts kept beside the cache file `cache` ([`path_for`]), loaded only when a
    /// `Packages.gz` may be made (a run that finds the feed as recorded never holds them);
    /// with the reason, for a warning, when they are there but cannot be used.
    pub fn load_for(cache: &Path, feed_id: &str, key: &CacheKey) -> (Parts, Option<String>) {
        let path = path_for(cache);
        match Parts::load(&path, feed_id, key) {
            Ok(p) => (p, None),
            Err(e) => (
                Parts::default(),
                Some(format!(
                    "{}: {e}; compressing every run of Packages.gz again",
                    path.display()
                )),
            ),
        }
    }

    /// [`Parts::gzip_unless`], never cancelled.
    #[cfg(test)]
    pub(crate) fn gzip(self, text: &Body<'_>) -> io::Result<(Body<'static>, Parts, GzipStats)> {
        let go = AtomicBool::new(false);
        Ok(self.gzip_unless(text, &go)?.expect("not cancelled"))
    }

    /// `Packages.gz` of `text`: each run's part taken from here when its text is the same,
    /// compressed (in parallel) otherwise. Returns the file (made of the parts, shared), the
    /// parts it consists of (to [`Parts::write_to`] in place of these) and how many runs were
    /// compressed; `None` when `cancel` was set before it was done (it is begun before it is
    /// known to be needed).
    pub(crate) fn gzip_unless(
        mut self,
        text: &Body<'_>,
        cancel: &AtomicBool,
    ) -> io::Result<Option<(Body<'static>, Parts, GzipStats)>> {
        // Each run as the pieces of text it is made of (a text in pieces is cut as one).
        fn flat_runs(t: &[u8]) -> Vec<Vec<&[u8]>> {
            feeds::index_gz::runs(t)
                .into_iter()
                .map(|r| vec![&t[r]])
                .collect()
        }
        let joined: Vec<u8>;
        let runs: Vec<Vec<&[u8]>> = match text {
            Body::Bytes(t) => flat_runs(t),
            Body::Shared(_) => {
                joined = text.pieces().unwrap_or_default().concat();
                flat_runs(&joined)
            }
            Body::Stanzas(s) => feeds::index_gz::stanza_runs(s)
                .into_iter()
                .map(|r| s[r].iter().flat_map(|s| [*s, &b"\n"[..]]).collect())
                .collect(),
            // Cut as it was written out; each run read back by the worker compressing it.
            Body::Spilled { .. } => Vec::new(),
        };
        // A run's key (the SHA-256 of its text) and its part, unless `self` has it; nothing
        // once cancelled.
        let part = |pieces: &[&[u8]]| {
            if cancel.load(Ordering::Relaxed) {
                return ([0; 32], None);
            }
            let mut h = Sha256::new();
            for p in pieces {
                h.update(p);
            }
            let k: [u8; 32] = h.finalize().into();
            let fresh = (!self.parts.contains_key(&k))
                .then(|| Piece::whole(feeds::index_gz::deflate_pieces(pieces)));
            (k, fresh)
        };
        let made: Vec<([u8; 32], Option<Piece>)> = match text {
            Body::Spilled { runs, .. } => runs
                .par_iter()
                .map_init(Vec::new, |buf, r| {
                    if cancel.load(Ordering::Relaxed) {
                        return Ok(([0; 32], None));
                    }
                    text.read_spilled(r.clone(), buf)?;
                    Ok(part(&[buf.as_slice()]))
                })
                .collect::<io::Result<_>>()?,
            _ => runs.par_iter().map(|pieces| part(pieces)).collect(),
        };
        if cancel.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let mut stats = GzipStats {
            runs: made.len(),
            compressed: made.iter().filter(|(_, f)| f.is_some()).count(),
            changed: false,
        };
        let mut next = HashMap::with_capacity(made.len());
        let mut order = Vec::with_capacity(made.len());
        for (k, fresh) in made {
            // A run repeated in the text was taken out of `self` at its first place.
            if let Some(p) = fresh.or_else(|| self.parts.remove(&k)) {
                next.entry(k).or_insert(p);
            }
            order.push(k);
        }
        // What is left of `self` is parts no run of this text uses.
        stats.changed = stats.compressed > 0 || !self.parts.is_empty();
        let (head, tail) = feeds::index_gz::frame(text.crc32()?, text.len() as u64);
        let mut pieces = Vec::with_capacity(order.len() + 2);
        pieces.push(Piece::whole(head.to_vec()));
        pieces.extend(order.iter().map(|k| next[k].clone()));
        pieces.push(Piece::whole(tail.to_vec()));
        Ok(Some((Body::Shared(pieces), Parts { parts: next }, stats)))
    }

    /// The file's bytes (see the module documentation), parts in key order ([`Parts::write_to`]
    /// into memory; runs write the file as it is made).
    #[cfg(test)]
    pub fn to_bytes(&self, feed_id: &str, key: &CacheKey) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out, feed_id, key)
            .expect("writing to memory does not fail");
        out
    }

    /// Writes [`Parts::to_bytes`] to `w` as it is made (the parts are not copied).
    pub fn write_to(&self, w: &mut impl Write, feed_id: &str, key: &CacheKey) -> io::Result<()> {
        let mut mac = key.streaming_mac();
        let mut put = |bytes: &[u8]| {
            mac.update(bytes);
            w.write_all(bytes)
        };
        put(MAGIC)?;
        put(format!("feed {feed_id}\n").as_bytes())?;
        let mut keys: Vec<&[u8; 32]> = self.parts.keys().collect();
        keys.sort();
        for k in keys {
            let p = self.parts[k].as_slice();
            put(k)?;
            put(&(p.len() as u32).to_le_bytes())?;
            put(p)?;
        }
        w.write_all(&mac.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> CacheKey {
        CacheKey::from_bytes([7; 32])
    }

    fn text(n: usize, v: &str) -> Vec<u8> {
        (0..n)
            .map(|i| format!("Package: p{i}\nVersion: {v}\nFilename: p{i}.ipk\n\n"))
            .collect::<String>()
            .into_bytes()
    }

    #[test]
    fn parts_round_trip_and_are_reused() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("cache.gz-parts");
        let t = text(3000, "1");
        let (gz, parts, stats) = Parts::default().gzip(&Body::Bytes(t.clone())).unwrap();
        let gz = gz.pieces().unwrap().concat();
        assert_eq!(stats.compressed, stats.runs);
        assert_eq!(gz, feeds::index_gz::gzip_index(&t));
        std::fs::write(&path, parts.to_bytes("feed-a", &key())).unwrap();
        let loaded = Parts::load(&path, "feed-a", &key()).unwrap();
        let (gz2, again, stats2) = loaded.gzip(&Body::Bytes(t.clone())).unwrap();
        let gz2 = gz2.pieces().unwrap().concat();
        assert_eq!((gz2, stats2.compressed, stats2.changed), (gz, 0, false));
        // A shorter text leaves parts unused: the set changed.
        let (_, _, stats3) = again.gzip(&Body::Bytes(text(100, "1"))).unwrap();
        assert!(stats3.changed && stats3.runs < stats.runs, "{stats3:?}");
        // Another feed's, or another key's, parts are not used.
        assert!(Parts::load(&path, "feed-b", &key()).is_err());
        assert!(Parts::load(&path, "feed-a", &CacheKey::from_bytes([8; 32])).is_err());
    }

    #[test]
    fn a_cancelled_gzip_gives_nothing() {
        let stop = AtomicBool::new(true);
        let t = Body::Bytes(text(3000, "1"));
        assert!(Parts::default().gzip_unless(&t, &stop).unwrap().is_none());
        let go = AtomicBool::new(false);
        let (gz, _, _) = Parts::default().gzip_unless(&t, &go).unwrap().unwrap();
        assert_eq!(
            gz.pieces().unwrap().concat(),
            feeds::index_gz::gzip_index(&text(3000, "1"))
        );
    }

    #[test]
    fn a_forged_part_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("cache.gz-parts");
        let (_, parts, _) = Parts::default().gzip(&Body::Bytes(text(500, "1"))).unwrap();
        let mut bytes = parts.to_bytes("f", &key());
        // Flip a byte inside a part: the MAC no longer verifies, nothing of it is used.
        let at = MAGIC.len() + 10 + 40;
        bytes[at] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let err = Parts::load(&path, "f", &key()).unwrap_err();
        assert!(err.contains("MAC"), "{err}");
    }
}
