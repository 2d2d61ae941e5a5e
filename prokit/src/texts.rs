//! Strings in one arena, numbered in the order pushed: the text once, and 4 bytes a string.
//!
//! What holds thousands of short strings for a whole run holds them so (the resolver's
//! interned names and versions, a command line's requests, the ownership map's package
//! names): a `String` each would be an allocation each (24 bytes and a chunk of at least 32),
//! scattered among what the run frees.
//!
//! [`ScratchTexts`] is the same with the text in a scratch file (4 bytes a string in memory),
//! for strings read back rarely.

use std::borrow::Cow;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Strings one after the other in one `String`, numbered from 0.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Texts {
    arena: String,
    /// Where each string starts in `arena`.
    starts: Vec<u32>,
}

impl Texts {
    /// Room for `count` strings of `bytes` bytes in all.
    pub(crate) fn with_capacity(count: usize, bytes: usize) -> Texts {
        Texts {
            arena: String::with_capacity(bytes),
            starts: Vec::with_capacity(count),
        }
    }

    /// Stores `text`; its number, or None when 2^32 strings are held or the arena would pass
    /// 4 GiB.
    pub(crate) fn push(&mut self, text: &str) -> Option<u32> {
        let id = u32::try_from(self.starts.len()).ok()?;
        let start = u32::try_from(self.arena.len()).ok()?;
        u32::try_from(self.arena.len() + text.len()).ok()?;
        self.starts.push(start);
        self.arena.push_str(text);
        Some(id)
    }

    /// The string numbered `id`, if there is one.
    pub(crate) fn get(&self, id: u32) -> Option<&str> {
        let i = id as usize;
        let start = *self.starts.get(i)? as usize;
        let end = self
            .starts
            .get(i + 1)
            .map_or(self.arena.len(), |&e| e as usize);
        Some(&self.arena[start..end])
    }

    /// The string numbered `id` (empty for a number it never gave out).
    pub(crate) fn text(&self, id: u32) -> &str {
        self.get(id).unwrap_or_default()
    }

    pub(crate) fn len(&self) -> usize {
        self.starts.len()
    }

    /// Every string, in the order pushed.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &str> + Clone + '_ {
        (0..self.starts.len()).map(|i| self.text(i as u32))
    }
}

/// Strings numbered in the order pushed, their text in an unnamed scratch file
/// (`safe_fs::scratch_file`) past the last [`SCRATCH_TAIL`] bytes, which stay in memory until
/// they fill up: memory holds 4 bytes a string, and reading one back from the file is one
/// positioned read. With no scratch file (a missing or read-only `$TMPDIR`) the text stays in
/// memory: as correct, only bigger. The file holds only what was pushed: the same trust as
/// memory.
#[derive(Debug, Default)]
pub(crate) struct ScratchTexts {
    /// The text written out, and how many bytes of it.
    file: Option<File>,
    written: u32,
    /// The text after `written`.
    tail: String,
    /// Where each string starts, counted over the file's text and the tail's.
    starts: Vec<u32>,
    /// No scratch file could be made: everything stays in `tail`.
    memory: bool,
}

/// Bytes of text kept in memory before they are written out.
pub(crate) const SCRATCH_TAIL: usize = 16 * 1024;

impl ScratchTexts {
    /// Stores `text`; its number. None when 2^32 strings are held or the text would pass
    /// 4 GiB; an error when the scratch file cannot be written (nothing is stored then).
    pub(crate) fn push(&mut self, text: &str) -> io::Result<Option<u32>> {
        let Ok(id) = u32::try_from(self.starts.len()) else {
            return Ok(None);
        };
        let end = self.written as usize + self.tail.len();
        let (Ok(start), Ok(_)) = (u32::try_from(end), u32::try_from(end + text.len())) else {
            return Ok(None);
        };
        if !self.memory && self.tail.len() + text.len() > SCRATCH_TAIL {
            self.write_tail()?;
        }
        self.starts.push(start);
        self.tail.push_str(text);
        Ok(Some(id))
    }

    /// Moves the tail to the scratch file (made on first use).
    fn write_tail(&mut self) -> io::Result<()> {
        if self.file.is_none() {
            match safe_fs::scratch_file() {
                Ok(f) => self.file = Some(f),
                Err(_) => {
                    self.memory = true;
                    return Ok(());
                }
            }
        }
        let file = self.file.as_ref().expect("made above");
        file.write_all_at(self.tail.as_bytes(), u64::from(self.written))?;
        self.written += u32::try_from(self.tail.len()).expect("checked by push");
        self.tail.clear();
        Ok(())
    }

    /// The string numbered `id`, if there is one.
    pub(crate) fn get(&self, id: u32) -> io::Result<Option<Cow<'_, str>>> {
        let i = id as usize;
        let Some(&start) = self.starts.get(i) else {
            return Ok(None);
        };
        let total = self.written as usize + self.tail.len();
        let end = self.starts.get(i + 1).map_or(total, |&e| e as usize);
        let start = start as usize;
        let written = self.written as usize;
        if start >= written {
            return Ok(Some(Cow::Borrowed(
                &self.tail[start - written..end - written],
            )));
        }
        let file = self
            .file
            .as_ref()
            .ok_or_else(|| io::Error::other("the scratch file of names is missing"))?;
        let mut bytes = vec![0u8; end - start];
        file.read_exact_at(&mut bytes, start as u64)?;
        String::from_utf8(bytes)
            .map(|t| Some(Cow::Owned(t)))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.starts.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_read_back_by_number_empty_ones_included() {
        let mut t = Texts::default();
        let words = ["", "a", "bc", "", "ünï"];
        for (i, w) in words.iter().enumerate() {
            assert_eq!(t.push(w), Some(i as u32));
        }
        assert_eq!(t.len(), words.len());
        assert_eq!(t.iter().collect::<Vec<_>>(), words);
        assert_eq!(t.get(2), Some("bc"));
        assert_eq!(t.get(5), None);
        assert_eq!(t.text(5), "");
    }

    #[test]
    fn scratch_texts_read_back_from_memory_and_from_the_file() {
        let words: Vec<String> = (0..3000)
            .map(|i| format!("package-{i}-{}", "x".repeat(i % 40)))
            .collect();
        for memory in [false, true] {
            let mut t = ScratchTexts {
                memory,
                ..ScratchTexts::default()
            };
            assert_eq!(t.get(0).unwrap(), None);
            for (i, w) in words.iter().enumerate() {
                assert_eq!(t.push(w).unwrap(), Some(i as u32));
                // The newest is read from memory, the oldest (once written out) from the file.
                assert_eq!(t.get(i as u32).unwrap().as_deref(), Some(w.as_str()));
                assert_eq!(t.get(0).unwrap().as_deref(), Some(words[0].as_str()));
            }
            assert_eq!(t.len(), words.len());
            for (i, w) in words.iter().enumerate() {
                assert_eq!(t.get(i as u32).unwrap().as_deref(), Some(w.as_str()), "{i}");
            }
            assert_eq!(t.get(words.len() as u32).unwrap(), None);
            // Memory holds the tail only, unless there is no file.
            if memory {
                assert!(t.file.is_none());
            } else {
                assert!(t.tail.len() <= SCRATCH_TAIL);
                assert!(matches!(t.get(0).unwrap(), Some(Cow::Owned(_))));
            }
        }
        // Empty strings, at the start, between and at the end.
        let mut t = ScratchTexts::default();
        for w in ["", "a", "", "bc", ""] {
            t.push(w).unwrap();
        }
        let got: Vec<_> = (0..5)
            .map(|i| t.get(i).unwrap().unwrap().into_owned())
            .collect();
        assert_eq!(got, ["", "a", "", "bc", ""]);
    }
}
