//! The bytes of a file to publish: owned; or — the `Packages` of the full profile — the
//! stanzas the run already holds, each written followed by a blank line, or that text written
//! out to the run's spill when its stanzas do not all fit in memory (crate::spill); or —
//! `Packages.gz` — pieces shared with what holds them for the next run (its compressed
//! parts). An index of megabytes is thus hashed, compressed, signed, compared and written
//! without being copied into one buffer (issue 16: index memory).

use std::fs::File;
use std::io::{self, Read, Write};
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::cache::{Location, Stanza};
use crate::spill::{self, Spill};

/// A file's contents (see the module documentation).
pub(crate) enum Body<'a> {
    Bytes(Vec<u8>),
    /// Stanzas, each ending in a newline; the file is every stanza followed by `"\n"`.
    Stanzas(Vec<&'a [u8]>),
    /// The file is these pieces one after the other.
    Shared(Vec<Piece>),
    /// The file is `len` bytes at `at` in the spill, made of stanzas cut into `runs` (byte
    /// ranges of the file) as `feeds::index_gz::stanza_runs` cuts them; `crc` is its CRC-32
    /// (for `Packages.gz`), taken as it was written out.
    Spilled {
        spill: Arc<Spill>,
        at: u64,
        len: u64,
        runs: Vec<Range<u64>>,
        crc: u32,
    },
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

/// Bytes read from the spill at a time when going through a spilled file.
const READ: usize = 256 << 10;

impl<'a> Body<'a> {
    /// `Packages` of `stanzas` (in their order): borrowed as they are when all are in memory,
    /// written out to `spill` otherwise, and its runs cut on the way.
    pub(crate) fn of_stanzas(stanzas: &[&'a Stanza], spill: &Arc<Spill>) -> io::Result<Body<'a>> {
        if let Some(text) = stanzas
            .iter()
            .map(|s| s.in_memory().map(str::as_bytes))
            .collect::<Option<Vec<&[u8]>>>()
        {
            return Ok(Body::Stanzas(text));
        }
        let mut reader = spill::Reader::new(spill);
        let mut cutter = feeds::index_gz::RunCutter::default();
        let mut crc = crc32fast::Hasher::new();
        let mut runs = Vec::new();
        let (mut at, mut run_start, mut len) = (None, 0, 0u64);
        for (i, s) in stanzas.iter().enumerate() {
            let text = match s.location() {
                Location::Memory(t) => t.as_bytes(),
                Location::Stored(_, from, n) => reader.get(from, n)?,
            };
            let here = spill.put(text)?;
            spill.put(b"\n")?;
            crc.update(text);
            crc.update(b"\n");
            at.get_or_insert(here);
            len += text.len() as u64 + 1;
            if cutter.ends_run(text, text.len() + 1, i + 1 == stanzas.len()) {
                runs.push(run_start..len);
                run_start = len;
            }
        }
        Ok(Body::Spilled {
            spill: Arc::clone(spill),
            at: at.unwrap_or(0),
            len,
            runs,
            crc: crc.finalize(),
        })
    }

    /// The file's length.
    pub(crate) fn len(&self) -> usize {
        match self {
            Body::Bytes(b) => b.len(),
            Body::Stanzas(s) => s.iter().map(|s| s.len() + 1).sum(),
            Body::Shared(p) => p.iter().map(|p| p.range.len()).sum(),
            Body::Spilled { len, .. } => *len as usize,
        }
    }

    /// The file as consecutive pieces; `None` for a file in the spill.
    pub(crate) fn pieces(&self) -> Option<Vec<&[u8]>> {
        match self {
            Body::Bytes(b) => Some(vec![b.as_slice()]),
            Body::Stanzas(s) => Some(s.iter().flat_map(|s| [*s, &b"\n"[..]]).collect()),
            Body::Shared(p) => Some(p.iter().map(Piece::as_slice).collect()),
            Body::Spilled { .. } => None,
        }
    }

    /// Whether the file is made of the run's stanzas (in memory or spilled).
    pub(crate) fn is_stanzas(&self) -> bool {
        matches!(self, Body::Stanzas(_) | Body::Spilled { .. })
    }

    /// The bytes of `range` of a spilled file, read into `buf`.
    pub(crate) fn read_spilled(&self, range: Range<u64>, buf: &mut Vec<u8>) -> io::Result<()> {
        let Body::Spilled { spill, at, len, .. } = self else {
            return Err(io::Error::other("not a spilled file"));
        };
        if range.end > *len || range.start > range.end {
            return Err(io::Error::other("range outside the file"));
        }
        buf.resize((range.end - range.start) as usize, 0);
        spill.read_at(at + range.start, buf)
    }

    pub(crate) fn sha256_hex(&self) -> io::Result<String> {
        let mut h = Sha256::new();
        self.each(|p| h.update(p))?;
        Ok(hex::encode(h.finalize()))
    }

    pub(crate) fn crc32(&self) -> io::Result<u32> {
        if let Body::Spilled { crc, .. } = self {
            return Ok(*crc);
        }
        let mut h = crc32fast::Hasher::new();
        self.each(|p| h.update(p))?;
        Ok(h.finalize())
    }

    /// Calls `f` with each piece of the file, in order.
    fn each(&self, mut f: impl FnMut(&[u8])) -> io::Result<()> {
        feeds::usign::Message::each_piece(self, &mut |p| {
            f(p);
            true
        })
    }

    /// Writes the file's bytes to `w`.
    pub(crate) fn write_to(&self, w: &mut dyn Write) -> io::Result<()> {
        match self {
            Body::Bytes(b) => w.write_all(b),
            _ => {
                let mut w = io::BufWriter::with_capacity(256 << 10, w);
                let mut failed = None;
                feeds::usign::Message::each_piece(self, &mut |p| match w.write_all(p) {
                    Ok(()) => true,
                    Err(e) => {
                        failed = Some(e);
                        false
                    }
                })?;
                failed.map_or(Ok(()), Err)?;
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
        let mut same = true;
        let read = feeds::usign::Message::each_piece(self, &mut |mut piece| {
            while !piece.is_empty() {
                let want = piece.len().min(buf.len());
                if f.read_exact(&mut buf[..want]).is_err() || buf[..want] != piece[..want] {
                    same = false;
                    return false;
                }
                piece = &piece[want..];
            }
            true
        });
        read.is_ok() && same && f.read(&mut buf[..1]).is_ok_and(|n| n == 0)
    }

    /// The owned bytes, if that is how they are held.
    pub(crate) fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Body::Bytes(b) => Some(b),
            _ => None,
        }
    }
}

/// The file's bytes in order, as often as they are needed (hashing, signing, writing).
impl feeds::usign::Message for Body<'_> {
    fn each_piece(&self, f: &mut dyn FnMut(&[u8]) -> bool) -> io::Result<()> {
        match self {
            Body::Spilled { spill, at, len, .. } => {
                let mut buf = vec![0u8; READ.min(*len as usize)];
                let mut done = 0u64;
                while done < *len {
                    let n = (*len - done).min(READ as u64) as usize;
                    spill.read_at(at + done, &mut buf[..n])?;
                    if !f(&buf[..n]) {
                        break;
                    }
                    done += n as u64;
                }
                Ok(())
            }
            Body::Bytes(b) => {
                f(b);
                Ok(())
            }
            Body::Stanzas(s) => {
                for s in s {
                    if !(f(s) && f(b"\n")) {
                        break;
                    }
                }
                Ok(())
            }
            Body::Shared(p) => {
                for p in p {
                    if !f(p.as_slice()) {
                        break;
                    }
                }
                Ok(())
            }
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
        // The same stanzas past a spill's budget: written out to it.
        let spill = Arc::new(Spill::new(11, None));
        let kept: Vec<Stanza> = ["Package: a\nVersion: 1\n", "Package: b\n"]
            .into_iter()
            .map(|t| Stanza::keep(t.to_string(), &spill).unwrap())
            .collect();
        assert!(kept[0].in_memory().is_none() && kept[1].in_memory().is_some());
        let spilled = Body::of_stanzas(&kept.iter().collect::<Vec<_>>(), &spill).unwrap();
        assert!(spilled.pieces().is_none() && spilled.is_stanzas());
        for body in [&s, &b, &shared, &spilled] {
            assert_eq!(body.len(), flat.len());
            let mut pieces = Vec::new();
            feeds::usign::Message::each_piece(body, &mut |p| {
                pieces.extend_from_slice(p);
                true
            })
            .unwrap();
            assert_eq!(pieces, flat);
            assert_eq!(
                body.sha256_hex().unwrap(),
                hex::encode(Sha256::digest(&flat))
            );
            assert_eq!(body.crc32().unwrap(), crc32fast::hash(&flat));
            let mut out = Vec::new();
            body.write_to(&mut out).unwrap();
            assert_eq!(out, flat);
        }
        let mut run = Vec::new();
        let Body::Spilled { runs, .. } = &spilled else {
            unreachable!()
        };
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0], 0..flat.len() as u64);
        spilled.read_spilled(5..9, &mut run).unwrap();
        assert_eq!(run, &flat[5..9]);
        assert!(
            spilled
                .read_spilled(5..flat.len() as u64 + 1, &mut run)
                .is_err()
        );
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("Packages");
        std::fs::write(&p, &flat).unwrap();
        for body in [&s, &b, &shared, &spilled] {
            assert!(body.equals_file(&p));
        }
        std::fs::write(&p, &flat[..flat.len() - 1]).unwrap();
        assert!(!s.equals_file(&p) && !spilled.equals_file(&p));
        let mut other = flat.clone();
        other[3] = b'X';
        std::fs::write(&p, &other).unwrap();
        assert!(!s.equals_file(&p) && !spilled.equals_file(&p));
    }
}
