//! The stanza fields kept past resolution ([`KEPT`](super::universe)), held in a scratch file
//! instead of in memory.
//!
//! A universe keeps, of every stanza, the fields the plan and the explanations read
//! (`Filename`, `SHA256sum`, the relations as written, …): ~300 bytes a package, which as
//! parsed paragraphs took 3.1 MB of a 10,000-package bootstrap's resolution and 18 MB of a
//! 60,000-stanza index's. Here their text goes to an unnamed temporary file
//! (`safe_fs::scratch_file`: it has no name another process could open, and disappears with
//! the process) through a 64 KiB buffer, and a package keeps where its text is: 12 bytes.
//! When no scratch file can be made or written, the texts stay in memory.
//! A plan step carries a [`KeptStanza`], read back (one positioned read and a parse) when
//! the install gets to it. The file holds only text prokit parsed from verified indexes and
//! the installed database: it is the same trust as memory (docs/on-disk-state.md §3.5,
//! "The status stanzas in memory").

use super::ResolveError;
use crate::scratch_log::ScratchLog;
pub(super) use crate::scratch_log::Span;
use feeds::control::Paragraph;
use std::io;
use std::sync::Arc;

/// The kept texts of a universe, appended one after the other.
#[derive(Default)]
pub(super) struct KeptTexts {
    log: ScratchLog,
}

impl KeptTexts {
    /// Appends `text`; where it is (an error only for a text of 4 GiB or more).
    pub(super) fn push(&self, text: &str) -> io::Result<Span> {
        self.log.push(text.as_bytes())
    }

    /// The text at `span`.
    fn read(&self, span: Span) -> io::Result<Vec<u8>> {
        self.log.read(span)
    }

    /// The paragraph at `span`.
    pub(super) fn paragraph(&self, span: Span) -> Result<Paragraph, ResolveError> {
        let scratch = |reason: String| ResolveError::Scratch { reason };
        let text = self.read(span).map_err(|e| scratch(e.to_string()))?;
        if text.is_empty() {
            return Ok(Paragraph::new());
        }
        Paragraph::parse_bytes(&text).map_err(|e| scratch(format!("a kept stanza read back: {e}")))
    }
}

/// The kept fields of a planned package's stanza (`Filename`, `Size`, `SHA256sum`, the
/// relations as written, `Signature`, `Signed-By`), read back from the universe's scratch
/// file by [`KeptStanza::read`]. Two are equal when their texts are.
#[derive(Clone)]
pub struct KeptStanza {
    texts: Arc<KeptTexts>,
    span: Span,
}

impl KeptStanza {
    pub(super) fn new(texts: &Arc<KeptTexts>, span: Span) -> KeptStanza {
        KeptStanza {
            texts: Arc::clone(texts),
            span,
        }
    }

    /// The fields, parsed.
    pub fn read(&self) -> Result<Paragraph, ResolveError> {
        self.texts.paragraph(self.span)
    }
}

impl std::fmt::Debug for KeptStanza {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.texts.read(self.span) {
            Ok(text) => write!(f, "KeptStanza({:?})", String::from_utf8_lossy(&text)),
            Err(e) => write!(f, "KeptStanza(unreadable: {e})"),
        }
    }
}

impl PartialEq for KeptStanza {
    fn eq(&self, other: &Self) -> bool {
        if Arc::ptr_eq(&self.texts, &other.texts) && self.span == other.span {
            return true;
        }
        match (self.texts.read(self.span), other.texts.read(other.span)) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for KeptStanza {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Texts read back as they went in, from the buffer and from the file, across many
    /// flushes.
    #[test]
    fn kept_texts_read_back_from_buffer_and_file() {
        read_back(Arc::new(KeptTexts::default()), true);
    }

    /// The same when no scratch file can be made: everything stays in the buffer.
    #[test]
    fn kept_texts_stay_in_memory_without_a_scratch_file() {
        let texts = KeptTexts {
            log: ScratchLog::in_memory(),
        };
        read_back(Arc::new(texts), false);
    }

    fn read_back(texts: Arc<KeptTexts>, to_file: bool) {
        let mut spans = Vec::new();
        for i in 0..3000 {
            let text = format!("Filename: p{i}.ipk\nSize: {}\n", i * 7);
            spans.push((texts.push(&text).unwrap(), text));
        }
        assert_eq!(texts.log.on_file(), to_file, "where the texts went");
        for (span, text) in &spans {
            let p = KeptStanza::new(&texts, *span).read().unwrap();
            assert_eq!(p.as_text(), text.as_str());
        }
        let empty = texts.push("").unwrap();
        assert!(KeptStanza::new(&texts, empty).read().unwrap().is_empty());
        assert_eq!(
            KeptStanza::new(&texts, spans[5].0),
            KeptStanza::new(&texts, spans[5].0)
        );
        assert_ne!(
            KeptStanza::new(&texts, spans[5].0),
            KeptStanza::new(&texts, spans[6].0)
        );
    }
}
