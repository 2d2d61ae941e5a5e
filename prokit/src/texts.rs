//! Strings in one arena, numbered in the order pushed: the text once, and 4 bytes a string.
//!
//! What holds thousands of short strings for a whole run holds them so (the resolver's
//! interned names and versions, a command line's requests, the ownership map's package
//! names): a `String` each would be an allocation each (24 bytes and a chunk of at least 32),
//! scattered among what the run frees.

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
}
