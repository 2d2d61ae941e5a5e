//! deb822 control paragraphs, as found in `control` files, `Packages` indexes, `Release` files
//! and opkg's `status` database.
//!
//! A [`Paragraph`] keeps its fields in their original order and case, and keeps each value's
//! raw text (everything after the colon, continuation lines included), so writing a parsed
//! paragraph reproduces its input byte for byte — OpenWrt's indexes copy control files verbatim,
//! down to the two spaces after `Description:`. Lookups are case-insensitive.
//!
//! [`ParagraphReader`] streams paragraphs out of any [`BufRead`], bounding line length, field
//! count and paragraph size, and reports errors with their line number.

use std::io::BufRead;

/// Bounds on what a paragraph reader accepts (hostile input cannot make it allocate more).
#[derive(Debug, Clone, Copy)]
pub struct ControlLimits {
    /// Longest line, in bytes.
    pub max_line: usize,
    /// Most fields in one paragraph.
    pub max_fields: usize,
    /// Largest paragraph, in bytes.
    pub max_paragraph: usize,
}

impl Default for ControlLimits {
    fn default() -> Self {
        ControlLimits {
            max_line: 1 << 20,
            max_fields: 4096,
            max_paragraph: 4 << 20,
        }
    }
}

/// What is wrong with a piece of deb822 text, and on which line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {kind}")]
pub struct ControlError {
    /// 1-based line number in the input.
    pub line: usize,
    /// What is wrong there.
    pub kind: ControlErrorKind,
}

/// The kinds of deb822 syntax error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlErrorKind {
    #[error("line has no colon (expected `Field: value`)")]
    MissingColon,
    #[error("continuation line before any field")]
    ContinuationWithoutField,
    #[error("duplicate field `{0}`")]
    DuplicateField(String),
    #[error("invalid field name `{0}`")]
    BadFieldName(String),
    #[error("not valid UTF-8")]
    NotUtf8,
    #[error("line longer than {0} bytes")]
    LineTooLong(usize),
    #[error("more than {0} fields in one paragraph")]
    TooManyFields(usize),
    #[error("paragraph larger than {0} bytes")]
    ParagraphTooLarge(usize),
    #[error("expected one paragraph, found another")]
    MoreThanOneParagraph,
    #[error("no paragraph")]
    Empty,
    #[error("read error: {0}")]
    Io(String),
}

/// Errors from building a paragraph in code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error("invalid field name `{0}`")]
    BadName(String),
    #[error("field `{name}`: value has a line that would end the paragraph or start a field")]
    BadValue { name: String },
    #[error("field `{0}` is already present")]
    Duplicate(String),
    #[error("field `{0}` is not present")]
    Missing(String),
}

/// One field of a [`Paragraph`]: its name as written and its raw value (the text after the
/// colon, continuation lines joined with `\n`, without the final newline). A view into the
/// paragraph's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    name: &'a str,
    raw: &'a str,
}

impl<'a> Field<'a> {
    /// The field name, in its original case.
    pub fn name(self) -> &'a str {
        self.name
    }

    /// The exact text after the colon (a leading space included).
    pub fn raw(self) -> &'a str {
        self.raw
    }

    /// The value without the surrounding white space; continuation lines are kept as they are.
    pub fn value(self) -> &'a str {
        self.raw
            .trim_matches(|c: char| c == ' ' || c == '\t' || c == '\r' || c == '\n')
    }

    /// The first line of the value, trimmed (the synopsis of a `Description`).
    pub fn first_line(self) -> &'a str {
        self.raw.split('\n').next().unwrap_or("").trim()
    }
}

/// True for a valid deb822 field name: printable US-ASCII other than `:` and space, not
/// starting with `#` or `-`.
pub fn is_valid_field_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('#')
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b':')
}

/// An ordered deb822 paragraph, kept compact (an index holds tens of thousands): its text
/// exactly as [`Paragraph::write_to`] writes it, every field `Name:raw\n`, in one string, and
/// where each field's name, colon and end lie in it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Paragraph {
    text: String,
    /// Per field: where its name starts, where its colon is, where its final `\n` is.
    spans: Vec<[u32; 3]>,
}

impl Paragraph {
    /// An empty paragraph.
    pub fn new() -> Self {
        Self::default()
    }

    fn field_at(&self, i: usize) -> Field<'_> {
        let [start, colon, end] = self.spans[i].map(|x| x as usize);
        Field {
            name: &self.text[start..colon],
            raw: &self.text[colon + 1..end],
        }
    }

    /// The paragraph holding no more memory than its text and spans take: one grown a line
    /// at a time has up to twice that reserved, and an index keeps tens of thousands.
    fn finished(mut self) -> Paragraph {
        self.text.shrink_to_fit();
        self.spans.shrink_to_fit();
        self
    }

    /// Appends field `name` with raw value `raw` (checked by the caller).
    fn push_raw(&mut self, name: &str, raw: &str) {
        let start = self.text.len();
        self.text.push_str(name);
        let colon = self.text.len();
        self.text.push(':');
        self.text.push_str(raw);
        let end = self.text.len();
        self.text.push('\n');
        self.spans.push([start, colon, end].map(offset));
    }

    /// Appends a continuation line to the last field (the parser's).
    fn continue_last(&mut self, line: &str) -> bool {
        let Some(last) = self.spans.last_mut() else {
            return false;
        };
        self.text.pop();
        self.text.push('\n');
        self.text.push_str(line);
        last[2] = offset(self.text.len());
        self.text.push('\n');
        true
    }

    /// Replaces the text of field `i` (from its name to its final `\n`, both included) with
    /// `name:raw\n`, or removes it (`None`), moving the fields after it.
    fn splice(&mut self, i: usize, new: Option<(&str, &str)>) {
        let [start, _, end] = self.spans[i].map(|x| x as usize);
        let replacement = match new {
            Some((name, raw)) => format!("{name}:{raw}\n"),
            None => String::new(),
        };
        self.text.replace_range(start..end + 1, &replacement);
        self.shift_spans(i + 1, replacement.len() as i64 - (end + 1 - start) as i64);
        match new {
            Some((name, _)) => {
                let colon = start + name.len();
                let end = start + replacement.len() - 1;
                self.spans[i] = [start, colon, end].map(offset);
            }
            None => {
                self.spans.remove(i);
            }
        }
    }

    /// Moves the spans of fields `from..` by `delta` bytes (text inserted or removed before
    /// them).
    fn shift_spans(&mut self, from: usize, delta: i64) {
        for s in &mut self.spans[from..] {
            for x in s.iter_mut() {
                *x = offset((*x as i64 + delta) as usize);
            }
        }
    }

    /// Parses text holding exactly one paragraph (blank lines around it are allowed).
    pub fn parse(text: &str) -> Result<Paragraph, ControlError> {
        let mut reader = ParagraphReader::new(text.as_bytes());
        let first = match reader.next() {
            Some(p) => p?,
            None => {
                return Err(ControlError {
                    line: 1,
                    kind: ControlErrorKind::Empty,
                });
            }
        };
        match reader.next() {
            None => Ok(first),
            Some(Err(e)) => Err(e),
            Some(Ok(_)) => Err(ControlError {
                line: reader.paragraph_start_line(),
                kind: ControlErrorKind::MoreThanOneParagraph,
            }),
        }
    }

    /// Parses bytes holding exactly one paragraph.
    pub fn parse_bytes(bytes: &[u8]) -> Result<Paragraph, ControlError> {
        let text = std::str::from_utf8(bytes).map_err(|e| ControlError {
            line: 1 + bytes[..e.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count(),
            kind: ControlErrorKind::NotUtf8,
        })?;
        Self::parse(text)
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// True when there are no fields.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The fields in order.
    pub fn fields(&self) -> impl Iterator<Item = Field<'_>> {
        (0..self.spans.len()).map(|i| self.field_at(i))
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.spans.iter().position(|[start, colon, _]| {
            self.text[*start as usize..*colon as usize].eq_ignore_ascii_case(name)
        })
    }

    /// The field called `name` (any case).
    pub fn field(&self, name: &str) -> Option<Field<'_>> {
        self.position(name).map(|i| self.field_at(i))
    }

    /// The trimmed value of `name` (any case).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.field(name).map(Field::value)
    }

    /// True when the field is present.
    pub fn contains(&self, name: &str) -> bool {
        self.position(name).is_some()
    }

    /// The raw text of a field `name` with `value`, checked.
    fn make_raw(name: &str, value: &str) -> Result<String, FieldError> {
        if !is_valid_field_name(name) {
            return Err(FieldError::BadName(name.to_string()));
        }
        let mut lines = value.split('\n');
        let first = lines.next().unwrap_or("");
        let bad_first = first.contains('\r');
        let bad_rest = lines.any(|l| {
            !(l.starts_with(' ') || l.starts_with('\t')) || l.trim_matches([' ', '\t']).is_empty()
        });
        if bad_first || bad_rest {
            return Err(FieldError::BadValue {
                name: name.to_string(),
            });
        }
        Ok(if value.is_empty() || value.starts_with('\n') {
            value.to_string()
        } else {
            format!(" {value}")
        })
    }

    /// Sets `name` to `value`: replaces the value in place (keeping the field's position and
    /// its name's case) or appends the field. Continuation lines in `value` must start with a
    /// space or tab and must not be blank (use ` .` for an empty line).
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), FieldError> {
        let raw = Self::make_raw(name, value)?;
        match self.position(name) {
            Some(i) => {
                let kept = self.field_at(i).name.to_string();
                self.splice(i, Some((&kept, &raw)));
            }
            None => self.push_raw(name, &raw),
        }
        Ok(())
    }

    /// Inserts a new field just before the field `before` (or at the end when `before` is
    /// absent). Fails when `name` is already present.
    pub fn insert_before(
        &mut self,
        before: &str,
        name: &str,
        value: &str,
    ) -> Result<(), FieldError> {
        if self.contains(name) {
            return Err(FieldError::Duplicate(name.to_string()));
        }
        let raw = Self::make_raw(name, value)?;
        match self.position(before) {
            None => self.push_raw(name, &raw),
            Some(i) => {
                let at = self.spans[i][0] as usize;
                let ins = format!("{name}:{raw}\n");
                self.text.insert_str(at, &ins);
                self.shift_spans(i, ins.len() as i64);
                let span = [at, at + name.len(), at + ins.len() - 1].map(offset);
                self.spans.insert(i, span);
            }
        }
        Ok(())
    }

    /// Removes `name`, returning its value (trimmed, as [`Paragraph::get`] gives it).
    pub fn remove(&mut self, name: &str) -> Option<String> {
        let i = self.position(name)?;
        let value = self.field_at(i).value().to_string();
        self.splice(i, None);
        Some(value)
    }

    /// Keeps only the fields whose name `keep` accepts, in their order, and gives back the
    /// memory the others took: for a paragraph kept long without fields it will never need.
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        let kept: Vec<usize> = (0..self.spans.len())
            .filter(|&i| keep(self.field_at(i).name()))
            .collect();
        if kept.len() == self.spans.len() {
            return;
        }
        let size: usize = kept
            .iter()
            .map(|&i| (self.spans[i][2] - self.spans[i][0]) as usize + 1)
            .sum();
        let mut out = Paragraph {
            text: String::with_capacity(size),
            spans: Vec::with_capacity(kept.len()),
        };
        for i in kept {
            let f = self.field_at(i);
            out.push_raw(f.name(), f.raw());
        }
        *self = out;
    }

    /// Appends the paragraph's text (each field `Name:raw\n`, no blank line) to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.text.as_bytes());
    }

    /// The paragraph's text (no trailing blank line).
    pub fn to_text(&self) -> String {
        self.text.clone()
    }

    /// The paragraph's text, borrowed.
    pub fn as_text(&self) -> &str {
        &self.text
    }
}

/// An offset into a paragraph's text (paragraphs are limited far below 4 GiB:
/// [`ControlLimits::max_paragraph`]).
fn offset(x: usize) -> u32 {
    u32::try_from(x).expect("a paragraph's text is under 4 GiB")
}

impl std::fmt::Display for Paragraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_text())
    }
}

/// A streaming reader of paragraphs separated by blank lines.
///
/// Each item is one paragraph or the error that stopped the stream (the reader yields nothing
/// after an error). Blank lines are lines that are empty or hold only spaces and tabs.
pub struct ParagraphReader<R> {
    input: R,
    limits: ControlLimits,
    line_no: usize,
    start_line: usize,
    buf: Vec<u8>,
    failed: bool,
    trailing_blank_lines: usize,
    blank_run: usize,
    saw_final_newline: bool,
}

impl<R: BufRead> ParagraphReader<R> {
    /// The input, with whatever the reader has not taken from it.
    pub fn into_inner(self) -> R {
        self.input
    }

    /// A reader with the default [`ControlLimits`].
    pub fn new(input: R) -> Self {
        Self::with_limits(input, ControlLimits::default())
    }

    /// A reader with explicit limits.
    pub fn with_limits(input: R, limits: ControlLimits) -> Self {
        ParagraphReader {
            input,
            limits,
            line_no: 0,
            start_line: 0,
            buf: Vec::new(),
            failed: false,
            trailing_blank_lines: 0,
            blank_run: 0,
            saw_final_newline: true,
        }
    }

    /// Line number where the last paragraph returned (or being read) started.
    pub fn paragraph_start_line(&self) -> usize {
        self.start_line
    }

    /// After the reader is exhausted: the number of blank lines after the last paragraph.
    pub fn trailing_blank_lines(&self) -> usize {
        self.trailing_blank_lines
    }

    /// After the reader is exhausted: whether the input ended with a newline.
    pub fn ended_with_newline(&self) -> bool {
        self.saw_final_newline
    }

    fn err(&mut self, kind: ControlErrorKind) -> Option<Result<Paragraph, ControlError>> {
        self.failed = true;
        Some(Err(ControlError {
            line: self.line_no,
            kind,
        }))
    }

    /// Reads one line into `self.buf` (without its `\n`); Ok(false) at end of input.
    fn read_line(&mut self) -> Result<bool, ControlErrorKind> {
        self.buf.clear();
        let max = self.limits.max_line;
        loop {
            let chunk = match self.input.fill_buf() {
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ControlErrorKind::Io(e.to_string())),
            };
            if chunk.is_empty() {
                if self.buf.is_empty() {
                    return Ok(false);
                }
                self.saw_final_newline = false;
                self.line_no += 1;
                return Ok(true);
            }
            let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (chunk.len(), false),
            };
            let content = if done { take - 1 } else { take };
            if self.buf.len() + content > max {
                self.line_no += 1;
                return Err(ControlErrorKind::LineTooLong(max));
            }
            self.buf.extend_from_slice(&chunk[..content]);
            self.input.consume(take);
            if done {
                self.line_no += 1;
                self.saw_final_newline = true;
                return Ok(true);
            }
        }
    }
}

impl<R: BufRead> Iterator for ParagraphReader<R> {
    type Item = Result<Paragraph, ControlError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let mut para = Paragraph::new();
        let mut size = 0usize;
        loop {
            match self.read_line() {
                Ok(true) => {}
                Ok(false) => {
                    if para.is_empty() {
                        self.trailing_blank_lines = self.blank_run;
                        return None;
                    }
                    self.blank_run = 0;
                    return Some(Ok(para.finished()));
                }
                Err(kind) => return self.err(kind),
            }
            let line = match std::str::from_utf8(&self.buf) {
                Ok(l) => l,
                Err(_) => return self.err(ControlErrorKind::NotUtf8),
            };
            if line.bytes().all(|b| b == b' ' || b == b'\t') {
                if para.is_empty() {
                    self.blank_run += 1;
                    continue;
                }
                self.blank_run = 1;
                return Some(Ok(para.finished()));
            }
            if para.is_empty() {
                self.start_line = self.line_no;
            }
            size += line.len() + 1;
            if size > self.limits.max_paragraph {
                return self.err(ControlErrorKind::ParagraphTooLarge(
                    self.limits.max_paragraph,
                ));
            }
            if line.starts_with(' ') || line.starts_with('\t') {
                if !para.continue_last(line) {
                    return self.err(ControlErrorKind::ContinuationWithoutField);
                }
                continue;
            }
            let Some(colon) = line.find(':') else {
                return self.err(ControlErrorKind::MissingColon);
            };
            let name = &line[..colon];
            if !is_valid_field_name(name) {
                let name = name.to_string();
                return self.err(ControlErrorKind::BadFieldName(name));
            }
            if para.contains(name) {
                let name = name.to_string();
                return self.err(ControlErrorKind::DuplicateField(name));
            }
            if para.len() >= self.limits.max_fields {
                return self.err(ControlErrorKind::TooManyFields(self.limits.max_fields));
            }
            para.push_raw(name, &line[colon + 1..]);
        }
    }
}

/// Parses every paragraph of `text`.
pub fn parse_paragraphs(text: &str) -> Result<Vec<Paragraph>, ControlError> {
    ParagraphReader::new(text.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retain_keeps_the_chosen_fields_in_order_and_no_more_memory() {
        let mut p = Paragraph::parse(
            "Package: a\nDescription: short\n long\n .\nVersion: 1\nMaintainer: m\nDepends: b\n",
        )
        .unwrap();
        p.retain(|n| !matches!(n, "Description" | "Maintainer"));
        assert_eq!(p.as_text(), "Package: a\nVersion: 1\nDepends: b\n");
        assert_eq!(p.get("Depends"), Some("b"));
        assert_eq!(p.get("Description"), None);
        assert_eq!(p.text.capacity(), p.text.len());
        assert_eq!(
            p,
            Paragraph::parse("Package: a\nVersion: 1\nDepends: b\n").unwrap()
        );
        let before = p.clone();
        p.retain(|_| true);
        assert_eq!(p, before);
    }

    const SAMPLE: &str = "Package: foo\nVersion: 1.0-1\nDepends: libc, bar (>= 2)\nDescription:  Two spaces stay.\n A second line.\n .\n After a blank.\n";

    #[test]
    fn edits_keep_the_compact_text_and_its_spans_in_step() {
        let mut p = Paragraph::parse(
            "Package: a\nVersion: 1\nDescription: short\n long\n .\n more\nSize: 9\n",
        )
        .unwrap();
        p.set("version", "2.0-r1").unwrap();
        p.insert_before("Description", "SHA256", "abc").unwrap();
        p.insert_before("Package", "Zeroth", "z").unwrap();
        p.set("Description", "other\n text").unwrap();
        assert_eq!(p.remove("Size").as_deref(), Some("9"));
        p.set("Installed-Size", "4").unwrap();
        let text = p.to_text();
        assert_eq!(
            text,
            "Zeroth: z\nPackage: a\nVersion: 2.0-r1\nSHA256: abc\nDescription: other\n text\nInstalled-Size: 4\n"
        );
        // The spans say what a fresh parse of the same text says.
        assert_eq!(Paragraph::parse(&text).unwrap(), p);
        let names: Vec<&str> = p.fields().map(Field::name).collect();
        assert_eq!(
            names,
            [
                "Zeroth",
                "Package",
                "Version",
                "SHA256",
                "Description",
                "Installed-Size"
            ]
        );
        assert_eq!(p.field("description").unwrap().first_line(), "other");
        assert_eq!(p.remove("Zeroth").as_deref(), Some("z"));
        assert_eq!(p.get("Package"), Some("a"));
        assert_eq!(Paragraph::parse(&p.to_text()).unwrap(), p);
    }

    #[test]
    fn parses_fields_in_order_with_case_insensitive_lookup() {
        let p = Paragraph::parse(SAMPLE).unwrap();
        let names: Vec<_> = p.fields().map(Field::name).collect();
        assert_eq!(names, ["Package", "Version", "Depends", "Description"]);
        assert_eq!(p.get("package"), Some("foo"));
        assert_eq!(p.get("DEPENDS"), Some("libc, bar (>= 2)"));
        let d = p.field("description").unwrap();
        assert_eq!(d.first_line(), "Two spaces stay.");
        assert_eq!(
            d.value(),
            "Two spaces stay.\n A second line.\n .\n After a blank."
        );
        assert_eq!(
            d.raw(),
            "  Two spaces stay.\n A second line.\n .\n After a blank."
        );
    }

    #[test]
    fn writes_back_byte_for_byte() {
        let p = Paragraph::parse(SAMPLE).unwrap();
        assert_eq!(p.to_text(), SAMPLE);
        let odd = "Package:nospace\nEmpty:\nMulti:\n line one\n\tline two\nTrail: x  \n";
        assert_eq!(Paragraph::parse(odd).unwrap().to_text(), odd);
    }

    #[test]
    fn streams_many_paragraphs_and_counts_lines() {
        let text = "\n\nA: 1\n\nB: 2\nC: 3\n \t\nD: 4\n\n\n";
        let mut r = ParagraphReader::new(text.as_bytes());
        let a = r.next().unwrap().unwrap();
        assert_eq!(r.paragraph_start_line(), 3);
        assert_eq!(a.get("a"), Some("1"));
        let b = r.next().unwrap().unwrap();
        assert_eq!(r.paragraph_start_line(), 5);
        assert_eq!(b.len(), 2);
        let d = r.next().unwrap().unwrap();
        assert_eq!(d.get("D"), Some("4"));
        assert!(r.next().is_none());
        assert_eq!(r.trailing_blank_lines(), 2);
        assert!(r.ended_with_newline());
    }

    #[test]
    fn last_line_without_newline() {
        let mut r = ParagraphReader::new("A: 1\nB: 2".as_bytes());
        assert_eq!(r.next().unwrap().unwrap().get("B"), Some("2"));
        assert!(r.next().is_none());
        assert!(!r.ended_with_newline());
    }

    fn err_of(text: &str) -> ControlError {
        parse_paragraphs(text).unwrap_err()
    }

    #[test]
    fn errors_name_line_and_problem() {
        let e = err_of("A: 1\nB: 2\na: 3\n");
        assert_eq!(e.line, 3);
        assert_eq!(e.kind, ControlErrorKind::DuplicateField("a".into()));
        assert_eq!(e.to_string(), "line 3: duplicate field `a`");

        let e = err_of("A: 1\n\nno colon here\n");
        assert_eq!((e.line, e.kind), (3, ControlErrorKind::MissingColon));

        let e = err_of(" continued\n");
        assert_eq!(
            (e.line, e.kind),
            (1, ControlErrorKind::ContinuationWithoutField)
        );

        let e = err_of("A: 1\nbad name: 2\n");
        assert_eq!(e.kind, ControlErrorKind::BadFieldName("bad name".into()));
        let e = err_of("#comment: 1\n");
        assert!(matches!(e.kind, ControlErrorKind::BadFieldName(_)));

        let e = parse_paragraphs_bytes(b"A: 1\nB: \xff\n");
        assert_eq!((e.line, e.kind), (2, ControlErrorKind::NotUtf8));
    }

    fn parse_paragraphs_bytes(b: &[u8]) -> ControlError {
        ParagraphReader::new(b)
            .collect::<Result<Vec<_>, _>>()
            .unwrap_err()
    }

    #[test]
    fn limits_are_enforced() {
        let limits = ControlLimits {
            max_line: 16,
            max_fields: 2,
            max_paragraph: 40,
        };
        let read = |t: &str| {
            ParagraphReader::with_limits(t.as_bytes(), limits)
                .collect::<Result<Vec<_>, _>>()
                .unwrap_err()
                .kind
        };
        assert_eq!(
            read("A: 0123456789abcdef\n"),
            ControlErrorKind::LineTooLong(16)
        );
        assert_eq!(
            read("A: 1\nB: 2\nC: 3\n"),
            ControlErrorKind::TooManyFields(2)
        );
        assert_eq!(
            read("A: 1\n 2345678901\n 2345678901\n 2345678901\n"),
            ControlErrorKind::ParagraphTooLarge(40)
        );
    }

    #[test]
    fn exactly_one_paragraph() {
        assert!(Paragraph::parse("\n\nA: 1\n\n").is_ok());
        let e = Paragraph::parse("A: 1\n\nB: 2\n").unwrap_err();
        assert_eq!(
            (e.line, e.kind),
            (3, ControlErrorKind::MoreThanOneParagraph)
        );
        assert_eq!(
            Paragraph::parse("\n").unwrap_err().kind,
            ControlErrorKind::Empty
        );
    }

    #[test]
    fn editing_keeps_order_and_validates() {
        let mut p = Paragraph::parse(SAMPLE).unwrap();
        p.insert_before("Description", "Filename", "foo_1.0-1_all.ipk")
            .unwrap();
        p.insert_before("description", "Size", "123").unwrap();
        p.set("version", "2.0").unwrap();
        p.set("Section", "net").unwrap();
        assert_eq!(
            p.to_text(),
            "Package: foo\nVersion: 2.0\nDepends: libc, bar (>= 2)\nFilename: foo_1.0-1_all.ipk\nSize: 123\nDescription:  Two spaces stay.\n A second line.\n .\n After a blank.\nSection: net\n"
        );
        assert_eq!(
            p.insert_before("X", "size", "1"),
            Err(FieldError::Duplicate("size".into()))
        );
        assert!(matches!(
            p.set("Bad:Name", "x"),
            Err(FieldError::BadName(_))
        ));
        assert!(matches!(
            p.set("Multi", "a\nnot indented"),
            Err(FieldError::BadValue { .. })
        ));
        assert!(matches!(
            p.set("Multi", "a\n  "),
            Err(FieldError::BadValue { .. })
        ));
        p.set("Multi", "a\n b\n .\n c").unwrap();
        assert_eq!(p.remove("multi").unwrap(), "a\n b\n .\n c");
        assert!(p.remove("multi").is_none());
        // What was built parses back to the same paragraph.
        assert_eq!(Paragraph::parse(&p.to_text()).unwrap(), p);
    }

    #[test]
    fn ten_thousand_stanzas_stream() {
        let mut text = String::new();
        for i in 0..10_000 {
            text.push_str(&format!(
                "Package: pkg-{i}\nVersion: 1.{i}-r1\nDepends: libc, pkg-{}\nArchitecture: all\nFilename: pkg-{i}.ipk\nSize: {i}\nSHA256sum: {:064x}\nDescription:  A package\n with a second line.\n\n",
                i + 1,
                i
            ));
        }
        let all = parse_paragraphs(&text).unwrap();
        assert_eq!(all.len(), 10_000);
        let mut out = Vec::new();
        for p in &all {
            p.write_to(&mut out);
            out.push(b'\n');
        }
        assert_eq!(out, text.as_bytes());
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            for p in ParagraphReader::new(&bytes[..]).flatten() {
                let text = p.to_text();
                // Whatever parsed writes back to something that parses to the same fields.
                let again = Paragraph::parse(&text);
                proptest::prop_assert!(again.is_ok() || p.is_empty());
            }
        }

        #[test]
        fn round_trips_generated_paragraphs(
            fields in proptest::collection::vec(("[A-Z][a-z0-9-]{0,8}", "[ -~]{0,20}"), 1..8)
        ) {
            let mut text = String::new();
            let mut seen = std::collections::HashSet::new();
            for (n, v) in &fields {
                if seen.insert(n.to_ascii_lowercase()) {
                    text.push_str(&format!("{n}: {}\n", v.trim()));
                }
            }
            let p = Paragraph::parse(&text).unwrap();
            proptest::prop_assert_eq!(p.to_text(), text);
        }
    }
}
