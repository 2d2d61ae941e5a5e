//! Reading a log back: line by line (bounded), as [`Record`]s for display, and filtered.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use safe_fs::{Dir, FsError};

use crate::error::Error;
use crate::record::{MAX_LINE, Record, glob_match};
use crate::time::{TimeError, parse_since};

/// One line of a log.
#[derive(Debug)]
pub(crate) struct Line<'a> {
    /// From 1.
    pub(crate) no: u64,
    /// Without its newline.
    pub(crate) bytes: &'a [u8],
    /// Whether a newline ended it (only the last line of a file can lack one).
    pub(crate) terminated: bool,
}

/// Splits a file into lines of at most [`MAX_LINE`] bytes.
pub(crate) struct Lines<R> {
    reader: R,
    path: PathBuf,
    line_no: u64,
    buf: Vec<u8>,
}

impl<R: BufRead> Lines<R> {
    pub(crate) fn new(reader: R, path: &Path) -> Self {
        Lines {
            reader,
            path: path.to_path_buf(),
            line_no: 0,
            buf: Vec::new(),
        }
    }

    /// The next line; `None` at the end.
    pub(crate) fn next_line(&mut self) -> Result<Option<Line<'_>>, Error> {
        self.buf.clear();
        let limit = MAX_LINE as u64 + 1;
        (&mut self.reader)
            .take(limit)
            .read_until(b'\n', &mut self.buf)
            .map_err(|e| FsError::new(&self.path, "read", e))?;
        if self.buf.is_empty() {
            return Ok(None);
        }
        self.line_no += 1;
        let terminated = self.buf.last() == Some(&b'\n');
        if terminated {
            self.buf.pop();
        }
        if self.buf.len() > MAX_LINE {
            return Err(Error::LineTooLong {
                path: self.path.clone(),
                line: self.line_no,
                max: MAX_LINE,
            });
        }
        Ok(Some(Line {
            no: self.line_no,
            bytes: &self.buf,
            terminated,
        }))
    }
}

/// The directory of the log at `path` (`.` for a bare name) and its UTF-8 file name: how
/// both the writer and the readers open it.
pub(crate) fn dir_and_name(path: &Path) -> Result<(&Path, &str), FsError> {
    let invalid = |reason: &str| {
        FsError::new(
            path,
            "open",
            io::Error::new(io::ErrorKind::InvalidInput, reason.to_string()),
        )
    };
    let name = path
        .file_name()
        .ok_or_else(|| invalid("not a file name"))?
        .to_str()
        .ok_or_else(|| invalid("the file name is not UTF-8"))?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    Ok((parent, name))
}

/// Opens the log at `path` to read: a regular file, not through a final symlink.
pub(crate) fn open_read(path: &Path) -> Result<File, Error> {
    let (parent, name) = dir_and_name(path)?;
    Dir::open(parent)?
        .open_file(name)?
        .ok_or_else(|| FsError::new(path, "open", io::ErrorKind::NotFound.into()).into())
}

/// The records of a log, for display.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Listing {
    /// Every line that is a record, in order.
    pub records: Vec<Record>,
    /// The numbers of the lines that are not (a torn write, or damage: see
    /// [`verify`](crate::verify)).
    pub skipped: Vec<u64>,
}

/// The records of the log at `path` (a regular file, not reached through a final symlink).
/// The chain is not checked: [`verify`](crate::verify) does that. A line longer than
/// [`MAX_LINE`] is an error.
pub fn read(path: &Path) -> Result<Listing, Error> {
    read_from(open_read(path)?, path)
}

/// [`read`] of a log already open (`path` is for messages).
pub fn read_from(reader: impl Read, path: &Path) -> Result<Listing, Error> {
    let mut lines = Lines::new(BufReader::new(reader), path);
    let mut listing = Listing::default();
    while let Some(line) = lines.next_line()? {
        match Record::from_line(line.no, line.bytes) {
            Some(r) => listing.records.push(r),
            None => listing.skipped.push(line.no),
        }
    }
    Ok(listing)
}

/// Which records to show: those at or after a time, and those whose event matches a glob.
/// The default filter lets everything through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    since: Option<i64>,
    event: Option<String>,
}

impl Filter {
    /// Records at or after `text`: a date `YYYY-MM-DD` (from its midnight UTC) or an RFC 3339
    /// time. A record whose time does not parse is left out.
    pub fn since(self, text: &str) -> Result<Filter, TimeError> {
        Ok(self.since_unix(parse_since(text)?))
    }

    /// Records at or after `unix` (seconds since 1970-01-01 UTC).
    pub fn since_unix(self, unix: i64) -> Filter {
        Filter {
            since: Some(unix),
            ..self
        }
    }

    /// Records whose event matches the glob `pattern` ([`glob_match`]: `package-*`).
    pub fn event(self, pattern: &str) -> Filter {
        Filter {
            event: Some(pattern.to_string()),
            ..self
        }
    }

    /// Whether `r` passes.
    pub fn matches(&self, r: &Record) -> bool {
        self.since
            .is_none_or(|t| r.unix_time().is_some_and(|rt| rt >= t))
            && self
                .event
                .as_deref()
                .is_none_or(|p| glob_match(p, &r.event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Log;
    use serde_json::json;
    use std::fs;

    #[test]
    fn lines_are_split_bounded_and_numbered() {
        let data = b"a\n\nbc\nlast";
        let mut lines = Lines::new(&data[..], Path::new("log"));
        let mut got = Vec::new();
        while let Some(l) = lines.next_line().unwrap() {
            got.push((l.no, l.bytes.to_vec(), l.terminated));
        }
        assert_eq!(
            got,
            [
                (1, b"a".to_vec(), true),
                (2, b"".to_vec(), true),
                (3, b"bc".to_vec(), true),
                (4, b"last".to_vec(), false)
            ]
        );
        let mut long = vec![b'x'; MAX_LINE];
        long.push(b'\n');
        long.extend_from_slice(&vec![b'y'; MAX_LINE + 1]);
        let mut lines = Lines::new(&long[..], Path::new("log"));
        assert_eq!(lines.next_line().unwrap().unwrap().bytes.len(), MAX_LINE);
        let err = lines.next_line().unwrap_err();
        assert_eq!(err.line(), Some(2));
        assert_eq!(
            err.to_string(),
            format!("log: line 2 is longer than {MAX_LINE} bytes")
        );
    }

    #[test]
    fn read_lists_records_skips_other_lines_and_filters() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let mut log = Log::open(&path, "prokit", "0.1.0").unwrap();
        log.append_at(1_796_428_862, "package-installed", &json!({"name": "foo"}))
            .unwrap();
        log.append_at(1_796_515_262, "key-added", &json!({"fingerprint": "0123"}))
            .unwrap();
        log.append_at(1_796_601_662, "package-removed", &json!({"name": "foo"}))
            .unwrap();
        log.finish().unwrap();
        let mut bytes = fs::read(&path).unwrap();
        bytes.extend_from_slice(b"{\"torn");
        fs::write(&path, &bytes).unwrap();

        let listing = read(&path).unwrap();
        assert_eq!(listing.skipped, [4]);
        let events: Vec<_> = listing.records.iter().map(|r| r.event.as_str()).collect();
        assert_eq!(
            events,
            ["package-installed", "key-added", "package-removed"]
        );
        let first = &listing.records[0];
        assert_eq!(first.line_no, 1);
        assert_eq!(first.time, "2026-12-05T00:01:02Z");
        assert_eq!(first.tool, "prokit");
        assert_eq!(first.fields, *json!({"name": "foo"}).as_object().unwrap());
        assert_eq!(first.raw.as_bytes(), &bytes[..first.raw.len()]);

        let pick = |f: &Filter| -> Vec<u64> {
            listing
                .records
                .iter()
                .filter(|r| f.matches(r))
                .map(|r| r.line_no)
                .collect()
        };
        assert_eq!(pick(&Filter::default()), [1, 2, 3]);
        assert_eq!(pick(&Filter::default().event("package-*")), [1, 3]);
        assert_eq!(
            pick(&Filter::default().since("2026-12-06").unwrap()),
            [2, 3]
        );
        assert_eq!(
            pick(&Filter::default().since("2026-12-06T00:01:02Z").unwrap()),
            [2, 3]
        );
        assert_eq!(
            pick(&Filter::default().since("2026-12-06T00:01:03Z").unwrap()),
            [3]
        );
        assert_eq!(
            pick(
                &Filter::default()
                    .since("2026-12-06")
                    .unwrap()
                    .event("package-*")
            ),
            [3]
        );
        assert!(Filter::default().since("last week").is_err());
    }

    #[test]
    fn read_refuses_a_final_symlink_and_names_a_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = read(&dir.path().join("none")).unwrap_err();
        assert!(
            err.to_string().starts_with(&format!(
                "{}: cannot open",
                dir.path().join("none").display()
            )),
            "{err}"
        );
        fs::write(dir.path().join("real"), b"").unwrap();
        std::os::unix::fs::symlink(dir.path().join("real"), dir.path().join("link")).unwrap();
        let err = read(&dir.path().join("link")).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(read(&dir.path().join("real")).unwrap(), Listing::default());
    }
}
