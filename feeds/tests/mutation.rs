//! Hostile variants of real packages: truncations, bit flips and huge declared sizes, in the
//! outer file and inside the containers' tar and ar headers. Reading them must end in an error
//! or a result — never a panic, a hang or a huge allocation.

use e2e as common;

use std::fs;
use std::io::{Read, Write};
use std::path::PathBuf;

use feeds::package::{DataTar, ReadOptions, read_package};

struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn read_all(bytes: &[u8]) {
    let mut visit = |tar: &mut DataTar<'_>| {
        tar.for_each_entry(|e| std::io::copy(e, &mut std::io::sink()).map(|_| ()))?;
        Ok(())
    };
    let _ = read_package(bytes, &ReadOptions::default(), Some(&mut visit));
}

/// A few small real packages of each container.
fn samples() -> Vec<(PathBuf, Vec<u8>)> {
    let Some(real) = common::real_dir() else {
        return vec![];
    };
    let picks = [
        "ipk/back-to+ipk/build/python-iso3166_0.8_all.ipk",
        "ipk/Netping+dksf708-x86_64-ipkg-packages/np-gpio-management_1.0.0-1_x86_64.ipk",
        "feeds/stangri+repo.openwrt.melmac.ca/3rd-party-dns_1.0.0-1_all.ipk",
        "feeds/stangri+repo.openwrt.melmac.ca/luci-app-wlanblinker_0.0.1-10_all.ipk",
    ];
    picks
        .iter()
        .map(|p| {
            let path = real.join(p);
            let bytes = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (path, bytes)
        })
        .collect()
}

#[test]
fn truncated_and_bit_flipped_real_packages_never_panic() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for (_, bytes) in samples() {
        for _ in 0..150 {
            let cut = rng.below(bytes.len());
            read_all(&bytes[..cut]);
        }
        for _ in 0..300 {
            let mut m = bytes.clone();
            for _ in 0..1 + rng.below(4) {
                // Bias towards the headers, where lengths and names live.
                let i = if rng.below(2) == 0 {
                    rng.below(512.min(m.len()))
                } else {
                    rng.below(m.len())
                };
                m[i] ^= 1 << rng.below(8);
            }
            read_all(&m);
        }
    }
}

fn gunzip(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(b)
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

/// Offsets of the 512-byte tar headers in an uncompressed tar.
fn tar_headers(tar: &[u8]) -> Vec<usize> {
    let mut at = 0;
    let mut out = Vec::new();
    while at + 512 <= tar.len() && tar[at] != 0 {
        out.push(at);
        let size = std::str::from_utf8(&tar[at + 124..at + 135])
            .ok()
            .and_then(|s| {
                u64::from_str_radix(s.trim_matches(|c: char| c == '\0' || c == ' '), 8).ok()
            })
            .unwrap_or(0) as usize;
        at += 512 + size.div_ceil(512) * 512;
    }
    out
}

#[test]
fn huge_declared_sizes_in_real_packages_are_refused() {
    let mut rng = XorShift(42);
    for (path, bytes) in samples() {
        if bytes.starts_with(b"!<arch>\n") {
            // Every ar member's size field set to 2 GB, or to garbage.
            let mut at = 8;
            while at + 60 <= bytes.len() {
                let size: usize = std::str::from_utf8(&bytes[at + 48..at + 58])
                    .unwrap()
                    .trim()
                    .parse()
                    .unwrap();
                for value in [
                    "2000000000",
                    "9999999999",
                    "-1        ",
                    "0x10      ",
                    "          ",
                ] {
                    let mut m = bytes.clone();
                    m[at + 48..at + 58].copy_from_slice(format!("{value:<10}").as_bytes());
                    let e = read_package(&m[..], &ReadOptions::default(), None);
                    assert!(
                        e.is_err(),
                        "{}: size {value} at {at} accepted",
                        path.display()
                    );
                }
                at += 60 + size + size % 2;
            }
        } else {
            // Inside the outer tar: each header's size field made huge, or its bytes flipped.
            let tar = gunzip(&bytes);
            let headers = tar_headers(&tar);
            assert!(headers.len() >= 3, "{}", path.display());
            for &h in &headers {
                for value in ["77777777777", "17777777777", "00000000000"] {
                    let mut m = tar.clone();
                    m[h + 124..h + 135].copy_from_slice(value.as_bytes());
                    read_all(&gzip(&m));
                }
                for _ in 0..50 {
                    let mut m = tar.clone();
                    let i = h + rng.below(512);
                    m[i] ^= 1 << rng.below(8);
                    read_all(&gzip(&m));
                }
            }
            for _ in 0..50 {
                let cut = rng.below(tar.len());
                assert!(
                    read_package(&gzip(&tar[..cut])[..], &ReadOptions::default(), None).is_err()
                        || cut >= headers.last().copied().unwrap_or(0) + 512,
                    "{}: tar cut at {cut} accepted",
                    path.display()
                );
            }
        }
    }
}
