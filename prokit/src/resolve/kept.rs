//! The stanza fields kept past resolution ([`KEPT`](super::universe)), held in a scratch file
//! instead of in memory.
//!
//! A universe keeps, of every stanza, the fields the plan and the explanations read
//! (`Filename`, `SHA256sum`, the relations as written, …): ~300 bytes a package, which as
//! parsed paragraphs took 3.1 MB of a 10,000-package bootstrap's resolution and 18 MB of a
//! 60,000-stanza index's. Here their text goes to an unnamed temporary file
//! (`safe_fs::scratch_file`: it has no name another process could open, and disappears with
//! the process) through a 64 KiB buffer, and a package keeps where its text is: 16 bytes.
//! When no scratch file can be made or written, the texts stay in memory.
//! A plan step carries a [`KeptStanza`], read back (one positioned read and a parse) when
//! the install gets to it. The file holds only text prokit parsed from verified indexes and
//! the installed database: it is the same trust as memory (docs/on-disk-state.md §3.5,
//! "The status stanzas in memory").

use super::ResolveError;
use feeds::control::Paragraph;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

/// Bytes buffered before they are written to the file.
const BUFFER: usize = 64 << 10;

/// Where a kept text is: its offset in the [`KeptTexts`] and its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Span {
    off: u64,
    len: u32,
}

/// The kept texts of a universe, appended one after the other.
#[derive(Default)]
pub(super) struct KeptTexts {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// The scratch file, made when the buffer first fills.
    file: Option<File>,
    /// How many bytes the file holds; the buffer's come after them.
    flushed: u64,
    buf: Vec<u8>,
    /// A scratch file could not be made or written: everything stays in the buffer.
    in_memory: bool,
}

impl KeptTexts {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while the lock was held leaves texts that are whole or not referred to.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends `text`; where it is (an error only for a text of 4 GiB or more).
    pub(super) fn push(&self, text: &str) -> io::Result<Span> {
        let len = u32::try_from(text.len())
            .map_err(|_| io::Error::other("a stanza longer than 4 GiB"))?;
        let mut inner = self.inner();
        let off = inner.flushed + inner.buf.len() as u64;
        inner.buf.extend_from_slice(text.as_bytes());
        if inner.buf.len() >= BUFFER && !inner.in_memory && inner.flush().is_err() {
            // No scratch file can be made or written (a missing or full `$TMPDIR`): the
            // texts stay in the buffer, as correct, only in memory.
            inner.in_memory = true;
        }
        Ok(Span { off, len })
    }

    /// The text at `span`.
    fn read(&self, span: Span) -> io::Result<Vec<u8>> {
        let inner = self.inner();
        let mut out = vec![0; span.len as usize];
        if span.off >= inner.flushed {
            // A text is appended whole to the buffer, and the buffer written whole.
            let start = (span.off - inner.flushed) as usize;
            let part = inner
                .buf
                .get(start..start + out.len())
                .ok_or_else(|| io::Error::other("a kept stanza past the end of its file"))?;
            out.copy_from_slice(part);
        } else {
            let file = inner
                .file
                .as_ref()
                .ok_or_else(|| io::Error::other("the kept stanzas' scratch file is missing"))?;
            file.read_exact_at(&mut out, span.off)?;
        }
        Ok(out)
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

impl Inner {
    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        if self.file.is_none() {
            let file = safe_fs::scratch_file()?;
            self.file = Some(file);
        }
        if let Some(file) = &self.file {
            file.write_all_at(&self.buf, self.flushed)?;
        }
        self.flushed += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
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
        let texts = KeptTexts::default();
        texts.inner().in_memory = true;
        read_back(Arc::new(texts), false);
    }

    fn read_back(texts: Arc<KeptTexts>, to_file: bool) {
        let mut spans = Vec::new();
        for i in 0..3000 {
            let text = format!("Filename: p{i}.ipk\nSize: {}\n", i * 7);
            spans.push((texts.push(&text).unwrap(), text));
        }
        assert_eq!(
            texts.inner().file.is_some(),
            to_file,
            "where the texts went"
        );
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
