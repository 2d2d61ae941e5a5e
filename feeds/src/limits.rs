//! The bounds every reader in this crate enforces, and the readers that enforce them.
//!
//! Hostile input must not make a reader allocate without bound, run forever, or inflate a
//! small file into terabytes. Every length read from a file is checked against a [`Limits`]
//! value before it is acted on; every decompressor is wrapped in a [`Bounded`] reader that
//! caps both the absolute output and the ratio of output to input.

use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;

/// Bounds on reading packages and indexes. The defaults suit real feeds with room to spare;
/// callers may tighten or loosen them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest package file, in bytes.
    pub max_package_size: u64,
    /// Most members in a package's outer container (ar or tar).
    pub max_members: u64,
    /// Largest compressed control member (`control.tar.gz`), in bytes.
    pub max_control_member: u64,
    /// Largest uncompressed control tar, in bytes.
    pub max_control_tar: u64,
    /// Largest single file inside the control tar (the `control` file, a script), in bytes.
    pub max_control_file: u64,
    /// Most entries in the control tar.
    pub max_control_entries: u64,
    /// Most entries in the data tar.
    pub max_data_entries: u64,
    /// Largest uncompressed data tar, in bytes.
    pub max_data_tar: u64,
    /// Largest uncompressed index (`Packages`), in bytes.
    pub max_index: u64,
    /// Most output bytes per input byte a decompressor may produce...
    pub max_ratio: u64,
    /// ...once it has produced more than this many bytes (small streams compress well).
    pub ratio_grace: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_package_size: 8 << 30,
            max_members: 16,
            max_control_member: 16 << 20,
            max_control_tar: 32 << 20,
            max_control_file: 8 << 20,
            max_control_entries: 1024,
            max_data_entries: 1 << 20,
            max_data_tar: 32 << 30,
            max_index: 512 << 20,
            max_ratio: 1000,
            ratio_grace: 8 << 20,
        }
    }
}

/// Why a bounded read stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("more than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("expands more than {ratio}:1 (decompression bomb?)")]
    Ratio { ratio: u64 },
}

impl LimitError {
    /// Wraps the error as an `io::Error` so it can travel through `Read` implementations;
    /// [`LimitError::from_io`] gets it back.
    pub fn into_io(self) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, self)
    }

    /// The `LimitError` inside an `io::Error`, if that is what it carries.
    pub fn from_io(e: &io::Error) -> Option<LimitError> {
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<LimitError>())
            .cloned()
    }
}

/// A reader that counts the bytes read through it into a shared counter.
pub struct Counting<R> {
    inner: R,
    count: Rc<Cell<u64>>,
}

impl<R> Counting<R> {
    /// Wraps `inner`; returns the reader and a handle on its running count.
    pub fn new(inner: R) -> (Self, Rc<Cell<u64>>) {
        let count = Rc::new(Cell::new(0));
        (
            Counting {
                inner,
                count: Rc::clone(&count),
            },
            count,
        )
    }
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

/// Caps what a (decompressing) reader produces: at most `max` bytes in all, and, past
/// `grace` bytes, at most `ratio` output bytes per input byte counted by `input`.
pub struct Bounded<R> {
    inner: R,
    produced: u64,
    max: u64,
    ratio: Option<(Rc<Cell<u64>>, u64, u64)>,
}

impl<R: Read> Bounded<R> {
    /// A reader that yields at most `max` bytes; one more is an error.
    pub fn new(inner: R, max: u64) -> Self {
        Bounded {
            inner,
            produced: 0,
            max,
            ratio: None,
        }
    }

    /// Adds a ratio bound against the compressed bytes counted by `input`.
    pub fn with_ratio(mut self, input: Rc<Cell<u64>>, ratio: u64, grace: u64) -> Self {
        self.ratio = Some((input, ratio, grace));
        self
    }

    /// Bytes produced so far.
    pub fn produced(&self) -> u64 {
        self.produced
    }
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Ask for at most one byte past the cap, so reaching the cap exactly is not an error.
        let room = self.max.saturating_sub(self.produced).saturating_add(1);
        let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.produced += n as u64;
        if self.produced > self.max {
            return Err(LimitError::TooLarge { limit: self.max }.into_io());
        }
        if let Some((input, ratio, grace)) = &self.ratio
            && self.produced > *grace
            && self.produced / input.get().max(1) > *ratio
        {
            return Err(LimitError::Ratio { ratio: *ratio }.into_io());
        }
        Ok(n)
    }
}

/// Reads all of `r` into memory, failing past `max` bytes (never allocating more than that).
pub fn read_to_end_bounded<R: Read>(r: R, max: u64) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    Bounded::new(r, max).read_to_end(&mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_allows_exactly_max() {
        let data = [7u8; 100];
        assert_eq!(read_to_end_bounded(&data[..], 100).unwrap().len(), 100);
        let e = read_to_end_bounded(&data[..], 99).unwrap_err();
        assert_eq!(
            LimitError::from_io(&e),
            Some(LimitError::TooLarge { limit: 99 })
        );
    }

    #[test]
    fn ratio_bound_trips_after_grace() {
        let zeros = vec![0u8; 1 << 20];
        let compressed = {
            use std::io::Write;
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            e.write_all(&zeros).unwrap();
            e.finish().unwrap()
        };
        let (counting, count) = Counting::new(&compressed[..]);
        let dec = flate2::read::GzDecoder::new(counting);
        let mut b = Bounded::new(dec, u64::MAX).with_ratio(count, 100, 4096);
        let e = io::copy(&mut b, &mut io::sink()).unwrap_err();
        assert_eq!(
            LimitError::from_io(&e),
            Some(LimitError::Ratio { ratio: 100 })
        );

        // The same stream passes a generous ratio.
        let (counting, count) = Counting::new(&compressed[..]);
        let dec = flate2::read::GzDecoder::new(counting);
        let mut b = Bounded::new(dec, u64::MAX).with_ratio(count, 2000, 4096);
        assert_eq!(io::copy(&mut b, &mut io::sink()).unwrap(), 1 << 20);
    }
}
