//! The bytes of a file to publish: owned; or — the `Packages` of the full profile — the
//! stanzas the run already holds, each written followed by a blank line; or — `Packages.gz`
//! — pieces shared with what holds them for the next run (its compressed parts). An index of
//! megabytes is thus hashed, compressed, signed, compared and written without being copied
//! into one buffer (issue 16: index memory).

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};

/// A file's contents (see the module documentation).
pub(crate) enum Body<'a> {
    Bytes(Vec<u8>),
    /// Stanzas, each ending in a newline; the file is every stanza followed by `"\n"`.
    Stanzas(Vec<&'a [u8]>),
    /// The file is these pieces one after the other.
    Shared(Vec<Piece>),
}

/// Bytes shared with whatever else holds them: `buf[range]`.
#[derive(Clone, Debug)]
pub(crate) struct Piece {
    buf: Arc<Vec<u8>>,
    range: std::ops::Range<usize>,
}

impl Piece {
    /// `buf[range]`; `None` when the range is not inside `buf`.
    pub(crate) fn of(buf: &Arc<Vec<u8>>, range: std::ops::Range<usize>) -> Option<Piece> {
        buf.get(range.clone()).map(|_| Piece {
            buf: Arc::clone(buf),
            range,
        })
    }

    /// All of `bytes`.
    pub(crate) fn whole(bytes: Vec<u8>) -> Piece {
        let range = 0..bytes.len();
        Piece {
            buf: Arc::new(bytes),
            range,
        }
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.buf[self.range.clone()]
    }
}

impl<'a> Body<'a> {
    /// The file's length.
    pub(crate) fn len(&self) -> usize {
        match self {
            Body::Bytes(b) => b.len(),
            Body::Stanzas(s) => s.iter().map(|s| s.len() + 1).sum(),
            Body::Shared(p) => p.iter().map(|p| p.range.len()).sum(),
        }
    }

    /// The file as consecutive pieces.
    pub(crate) fn pieces(&self) -> Vec<&[u8]> {
        match self {
            Body::Bytes(b) => vec![b.as_slice()],
            Body::Stanzas(_) => self.stanza_pieces().unwrap_or_default(),
            Body::Shared(p) => p.iter().map(Piece::as_slice).collect(),
        }
    }

    /// The pieces of a file kept as stanzas, borrowed from where the stanzas are (not from
    /// this value); `None` for owned bytes.
    pub(crate) fn stanza_pieces(&self) -> Option<Vec<&'a [u8]>> {
        match self {
            Body::Bytes(_) | Body::Shared(_) => None,
            Body::Stanzas(s) => Some(s.iter().flat_map(|s| [*s, &b"\n"[..]]).collect()),
        }
    }

    /// Calls `f` with each piece of the file, in order.
    fn for_each_piece(&self, mut f: impl FnMut(&[u8])) {
        match self {
            Body::Bytes(b) => f(b),
            Body::Stanzas(s) => {
                for s in s {
                    f(s);
                    f(b"\n");
                }
            }
            Body::Shared(p) => p.iter().for_each(|p| f(p.as_slice())),
        }
    }

    pub(crate) fn sha256_hex(&self) -> String {
        let mut h = Sha256::new();
        self.for_each_piece(|p| h.update(p));
        hex::encode(h.finalize())
    }

    pub(crate) fn crc32(&self) -> u32 {
        let mut h = crc32fast::Hasher::new();
        self.for_each_piece(|p| h.update(p));
        h.finalize()
    }

    /// Writes the file's bytes to `w`.
    pub(crate) fn write_to(&self, w: &mut dyn Write) -> io::Result<()> {
        match self {
            Body::Bytes(b) => w.write_all(b),
            Body::Stanzas(s) => {
                let mut w = io::BufWriter::with_capacity(256 << 10, w);
                for s in s {
                    w.write_all(s)?;
                    w.write_all(b"\n")?;
                }
                w.flush()
            }
            Body::Shared(p) => {
                let mut w = io::BufWriter::with_capacity(256 << 10, w);
                p.iter().try_for_each(|p| w.write_all(p.as_slice()))?;
                w.flush()
            }
        }
    }

    /// Whether the file at `path` holds exactly these bytes (read in pieces).
    pub(crate) fn equals_file(&self, path: &Path) -> bool {
        let Ok(mut f) = File::open(path) else {
            return false;
        };
        if f.metadata().map(|m| m.len()).ok() != Some(self.len() as u64) {
            return false;
        }
        let mut buf = vec![0u8; 64 << 10];
        for piece in self.pieces() {
            let mut piece = piece;
            while !piece.is_empty() {
                let want = piece.len().min(buf.len());
                if f.read_exact(&mut buf[..want]).is_err() || buf[..want] != piece[..want] {
                    return false;
                }
                piece = &piece[want..];
            }
        }
        f.read(&mut buf[..1]).is_ok_and(|n| n == 0)
    }

    /// The owned bytes, if that is how they are held.
    pub(crate) fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Body::Bytes(b) => Some(b),
            Body::Stanzas(_) | Body::Shared(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stanzas_and_bytes_agree() {
        let stanzas: Vec<&[u8]> = vec![b"Package: a\nVersion: 1\n", b"Package: b\n"];
        let flat = b"Package: a\nVersion: 1\n\nPackage: b\n\n".to_vec();
        let s = Body::Stanzas(stanzas);
        let b = Body::Bytes(flat.clone());
        let all = Arc::new(flat.clone());
        let shared = Body::Shared(vec![
            Piece::of(&all, 0..5).unwrap(),
            Piece::whole(Vec::new()),
            Piece::of(&all, 5..flat.len()).unwrap(),
        ]);
        assert!(Piece::of(&all, 0..flat.len() + 1).is_none());
        for body in [&s, &b, &shared] {
            assert_eq!(body.len(), flat.len());
            assert_eq!(body.pieces().concat(), flat);
            assert_eq!(body.sha256_hex(), hex::encode(Sha256::digest(&flat)));
            assert_eq!(body.crc32(), crc32fast::hash(&flat));
            let mut out = Vec::new();
            body.write_to(&mut out).unwrap();
            assert_eq!(out, flat);
        }
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("Packages");
        std::fs::write(&p, &flat).unwrap();
        assert!(s.equals_file(&p) && b.equals_file(&p) && shared.equals_file(&p));
        std::fs::write(&p, &flat[..flat.len() - 1]).unwrap();
        assert!(!s.equals_file(&p));
        let mut other = flat.clone();
        other[3] = b'X';
        std::fs::write(&p, &other).unwrap();
        assert!(!s.equals_file(&p));
    }
}
