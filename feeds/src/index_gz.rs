//! `Packages.gz` built from independently compressed runs of stanzas, so that a re-index that
//! changed one package recompresses one run instead of the whole index (docs/formats.md §4.3).
//!
//! The file is one ordinary gzip member (RFC 1952): a 10-byte header (no name, mtime 0, OS 3),
//! then a raw deflate stream (RFC 1951) that is the concatenation of one part per run — each
//! compressed on its own and ended by a sync flush (an empty stored block), so that it ends on
//! a byte boundary, has no final bit and refers back to nothing before it — then an empty
//! final block, then the CRC-32 and length of the whole `Packages`. Any inflater reads it as
//! one stream; every part can be reused as it is wherever the same run of text appears.
//!
//! Runs are cut after a stanza whose first line hashes to 0 modulo [`RUN_SPREAD`] (about 64
//! stanzas a run), or when a run reaches [`MAX_RUN`] bytes: where the cuts fall depends only on
//! the stanzas near them, so adding or removing a package changes only the run it is in (and
//! at most the next one). The output depends only on the text: a full index and a re-index
//! that reuses parts produce the same bytes.

use std::ops::Range;

/// A run ends after about one stanza in this many.
pub const RUN_SPREAD: u64 = 64;
/// A run ends once it holds this many bytes (at the next stanza boundary).
pub const MAX_RUN: usize = 256 << 10;
/// The compression level of every part (gzip's default).
const LEVEL: u32 = 6;

/// The gzip header: magic, deflate, no flags, mtime 0, no extra flags, OS 3 (Unix), as
/// `gzip -n` writes it.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
/// An empty fixed-Huffman block with the final bit: the end of the deflate stream.
const FINAL_BLOCK: [u8; 2] = [0x03, 0x00];

/// Where `text` (a `Packages` file: stanzas separated by blank lines) is cut into runs: byte
/// ranges that cover it in order, each ending after a stanza's blank line (the last one at
/// the end of the text).
pub fn runs(text: &[u8]) -> Vec<Range<usize>> {
    // Each stanza with the blank line after it: from its start to after the next "\n\n"
    // (or to the end).
    let mut stanzas = Vec::new();
    let mut pos = 0;
    while pos < text.len() {
        let end = find_blank_line(text, pos).map_or(text.len(), |i| i + 2);
        stanzas.push(pos..end);
        pos = end;
    }
    cut(stanzas.iter().map(|r| (&text[r.clone()], r.len())))
        .into_iter()
        .map(|r| stanzas[r.start].start..stanzas[r.end - 1].end)
        .collect()
}

/// Where `stanzas` — a `Packages` kept as its stanzas, each written followed by one blank
/// line (`"\n"`) — are cut into runs: ranges of stanza indices, cut where [`runs`] cuts their
/// concatenation.
pub fn stanza_runs(stanzas: &[&[u8]]) -> Vec<Range<usize>> {
    cut(stanzas.iter().map(|s| (*s, s.len() + 1)))
}

/// Where runs end, over consecutive stanzas given as (text starting with its first line, bytes
/// it takes in the file): ranges of stanza indices. The one rule of the module documentation.
fn cut<'t>(stanzas: impl ExactSizeIterator<Item = (&'t [u8], usize)>) -> Vec<Range<usize>> {
    let n = stanzas.len();
    let mut out = Vec::new();
    let mut start = 0;
    let mut cutter = RunCutter::default();
    for (i, (s, len)) in stanzas.enumerate() {
        if cutter.ends_run(s, len, i + 1 == n) {
            out.push(start..i + 1);
            start = i + 1;
        }
    }
    out
}

/// The rule of [`stanza_runs`] applied one stanza at a time, for a `Packages` that is not
/// held in memory as a whole.
#[derive(Default)]
pub struct RunCutter {
    bytes: usize,
}

impl RunCutter {
    /// Whether the run ends after this stanza: `stanza` is its text (at least its first
    /// line), `len` the bytes it takes in the file, `last` whether it is the file's last.
    pub fn ends_run(&mut self, stanza: &[u8], len: usize, last: bool) -> bool {
        let first_line = memchr(b'\n', stanza).map_or(stanza, |e| &stanza[..e]);
        self.bytes += len;
        let ends = fnv1a(first_line).is_multiple_of(RUN_SPREAD) || self.bytes >= MAX_RUN || last;
        if ends {
            self.bytes = 0;
        }
        ends
    }
}

/// One run compressed on its own: raw deflate ending in a sync flush (not final).
pub fn deflate_run(run: &[u8]) -> Vec<u8> {
    let mut c = flate2::Compress::new(flate2::Compression::new(LEVEL), false);
    let mut out = Vec::with_capacity(run.len() / 3 + 64);
    let mut input = run;
    loop {
        if out.capacity() - out.len() < 1024 {
            out.reserve(out.capacity().max(4096));
        }
        let before = c.total_in();
        // Compressing into a Vec with room left cannot fail.
        let status = c
            .compress_vec(input, &mut out, flate2::FlushCompress::Sync)
            .unwrap_or(flate2::Status::StreamEnd);
        input = &input[(c.total_in() - before) as usize..];
        // Done when all input is taken and the flush completed (room was left over).
        if input.is_empty() && out.len() < out.capacity() || status == flate2::Status::StreamEnd {
            break;
        }
    }
    // Parts are kept (a feed's whole Packages.gz, in parts): not with a third of the run's
    // size reserved for each.
    out.shrink_to_fit();
    out
}

/// [`deflate_run`] of the run that is the concatenation of `pieces`. The run is put
/// together first (a run is at most [`MAX_RUN`] bytes and a stanza): the compressor's output
/// depends on how its input is handed to it, and a part must be the same bytes however the
/// text was held.
pub fn deflate_pieces(pieces: &[&[u8]]) -> Vec<u8> {
    deflate_run(&pieces.concat())
}

/// The gzip file of `text` from its runs' parts (in order; each from [`deflate_run`] over
/// the corresponding range of [`runs`]).
pub fn assemble<P: AsRef<[u8]>>(text: &[u8], parts: &[P]) -> Vec<u8> {
    assemble_parts(crc32fast::hash(text), text.len() as u64, parts)
}

/// The gzip file of a text of `len` bytes with CRC-32 `crc`, from its runs' parts.
pub fn assemble_parts<P: AsRef<[u8]>>(crc: u32, len: u64, parts: &[P]) -> Vec<u8> {
    let (head, tail) = frame(crc, len);
    let size: usize = parts.iter().map(|p| p.as_ref().len()).sum();
    let mut out = Vec::with_capacity(head.len() + size + tail.len());
    out.extend_from_slice(&head);
    for p in parts {
        out.extend_from_slice(p.as_ref());
    }
    out.extend_from_slice(&tail);
    out
}

/// What comes before and after the runs' parts in the gzip file of a text of `len` bytes
/// with CRC-32 `crc` ([`assemble_parts`] without joining them).
pub fn frame(crc: u32, len: u64) -> ([u8; 10], [u8; 10]) {
    let mut tail = [0u8; 10];
    tail[..2].copy_from_slice(&FINAL_BLOCK);
    tail[2..6].copy_from_slice(&crc.to_le_bytes());
    // ISIZE: the length modulo 2^32, as RFC 1952 says.
    tail[6..].copy_from_slice(&(len as u32).to_le_bytes());
    (HEADER, tail)
}

/// `Packages.gz` of `text`, every run compressed here (one core; callers with a cache of
/// parts use [`runs`], [`deflate_run`] and [`assemble`]).
pub fn gzip_index(text: &[u8]) -> Vec<u8> {
    let parts: Vec<Vec<u8>> = runs(text)
        .into_iter()
        .map(|r| deflate_run(&text[r]))
        .collect();
    assemble(text, &parts)
}

fn memchr(b: u8, s: &[u8]) -> Option<usize> {
    s.iter().position(|&c| c == b)
}

/// The index of the first "\n\n" at or after `from`.
fn find_blank_line(text: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(j) = memchr(b'\n', &text[i..]) {
        let at = i + j;
        if text.get(at + 1) == Some(&b'\n') {
            return Some(at);
        }
        i = at + 1;
    }
    None
}

/// FNV-1a, 64 bits: where runs are cut (not a security property: a cut placed by an
/// adversary only makes runs shorter or longer).
fn fnv1a(s: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in s {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn packages(n: usize, salt: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for i in 0..n {
            out.extend_from_slice(
                format!(
                    "Package: pkg-{i}\nVersion: 1.{i}{salt}\nArchitecture: all\nFilename: pkg-{i}.ipk\nSize: {}\nDescription: package number {i}\n\n",
                    i * 37
                )
                .as_bytes(),
            );
        }
        out
    }

    fn gunzip(gz: &[u8]) -> Vec<u8> {
        // A single-member decoder: the file must be one gzip member.
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(gz)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn runs_cover_the_text_at_stanza_boundaries() {
        for n in [0, 1, 2, 63, 64, 65, 500, 3000] {
            let text = packages(n, "");
            let r = runs(&text);
            let mut at = 0;
            for x in &r {
                assert_eq!(x.start, at);
                assert!(x.end > x.start);
                assert!(x.end == text.len() || text[..x.end].ends_with(b"\n\n"));
                at = x.end;
            }
            assert_eq!(at, text.len());
            if n >= 1000 {
                assert!(r.len() > n / 200 && r.len() < n / 16, "{} runs", r.len());
            }
        }
        // Text without a final blank line, and blank lines in a row, still cover everything.
        for text in [&b"Package: a\n\nPackage: b\n"[..], b"\n\n\n", b"x"] {
            let r = runs(text);
            assert_eq!(r.first().map(|x| x.start), Some(0));
            assert_eq!(r.last().map(|x| x.end), Some(text.len()));
        }
    }

    #[test]
    fn the_file_is_one_gzip_member_that_inflates_to_the_text() {
        for n in [0, 1, 100, 5000] {
            let text = packages(n, "");
            let gz = gzip_index(&text);
            assert_eq!(gunzip(&gz), text);
            assert_eq!(&gz[..10], &HEADER);
        }
    }

    #[test]
    fn a_change_recompresses_only_its_run_and_gives_the_same_bytes_as_a_full_compression() {
        let old = packages(5000, "");
        let mut new = old.clone();
        // Change one stanza in the middle.
        let at = new.len() / 2;
        let i = at
            + new[at..]
                .windows(9)
                .position(|w| w == b"Version: ")
                .unwrap()
            + 9;
        new.insert(i, b'9');
        let old_runs: std::collections::HashMap<&[u8], Vec<u8>> = runs(&old)
            .into_iter()
            .map(|r| (&old[r.clone()], deflate_run(&old[r])))
            .collect();
        let mut fresh = 0;
        let parts: Vec<Vec<u8>> = runs(&new)
            .into_iter()
            .map(|r| match old_runs.get(&new[r.clone()]) {
                Some(p) => p.clone(),
                None => {
                    fresh += 1;
                    deflate_run(&new[r])
                }
            })
            .collect();
        assert!((1..=2).contains(&fresh), "{fresh} runs recompressed");
        let gz = assemble(&new, &parts);
        assert_eq!(gz, gzip_index(&new));
        assert_eq!(gunzip(&gz), new);
    }

    #[test]
    fn stanza_runs_and_pieces_give_the_same_file_as_the_flat_text() {
        for n in [1, 64, 700, 5000] {
            let text = packages(n, "");
            // Stanzas as written: each without the blank line that follows it.
            let mut owned = Vec::new();
            let mut at = 0;
            while at < text.len() {
                let end = find_blank_line(&text, at).unwrap() + 1;
                owned.push(&text[at..end]);
                at = end + 1;
            }
            let flat = runs(&text);
            let by_stanza = stanza_runs(&owned);
            assert_eq!(flat.len(), by_stanza.len());
            let mut parts = Vec::new();
            for (f, r) in flat.iter().zip(&by_stanza) {
                let mut pieces: Vec<&[u8]> = Vec::new();
                for s in &owned[r.clone()] {
                    pieces.push(s);
                    pieces.push(b"\n");
                }
                assert_eq!(pieces.concat(), &text[f.clone()]);
                let p = deflate_pieces(&pieces);
                assert_eq!(p, deflate_run(&text[f.clone()]));
                parts.push(p);
            }
            assert_eq!(assemble(&text, &parts), gzip_index(&text));
        }
    }

    #[test]
    fn the_size_stays_close_to_one_stream() {
        let text = packages(20000, "");
        let one = crate::index::gzip(&text).len() as f64;
        let ours = gzip_index(&text).len() as f64;
        assert!(ours < one * 1.1, "{ours} vs {one}");
    }
}
