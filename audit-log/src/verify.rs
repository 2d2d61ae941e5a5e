//! Checking a log: every record well formed and unaltered, every link of the chain intact,
//! torn writes accepted only where a `chain-restarted` record acknowledges them.

use std::io::{BufReader, Read};
use std::path::Path;

use serde_json::Value;

use crate::error::Error;
use crate::read::{Line, Lines, open_read};
use crate::record::{CHAIN_RESTARTED, Defect, body_hash, leading_prev, parse, sha256};

/// What [`verify`] found in a log that verifies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Lines in the file.
    pub lines: u64,
    /// Lines that are records.
    pub records: u64,
    /// Torn lines (writes cut short), each acknowledged by the `chain-restarted` record after
    /// it (or after the torn lines that follow it).
    pub torn_lines: Vec<u64>,
    /// The lines of the `chain-restarted` records.
    pub restarts: Vec<u64>,
    /// The SHA-256 of the last line (64 zeros for an empty log): the `prev` of the next
    /// record. Kept somewhere else, it makes the log's current end checkable too.
    pub last_hash: String,
}

impl Report {
    /// One sentence per torn line accepted, for the user.
    pub fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        let mut restarts = self.restarts.iter().peekable();
        for &torn in &self.torn_lines {
            while restarts.next_if(|&&r| r < torn).is_some() {}
            let at = restarts
                .peek()
                .map_or_else(String::new, |r| format!("; the chain restarts at line {r}"));
            notes.push(format!("line {torn} is torn (a write cut short){at}"));
        }
        notes
    }
}

/// Verifies the log at `path` (a regular file, not reached through a final symlink): each
/// line is a JSON object with every field ([`RESERVED_FIELDS`](crate::RESERVED_FIELDS)), its
/// `hash` is the SHA-256 of its bytes before `,"hash":`, and its `prev` the SHA-256 of the
/// line before (64 zeros on line 1). Lines that are not records are accepted only as torn
/// writes: a run of them followed by a `chain-restarted` record whose `torn_line` is the last
/// of the run (and whose `prev` is that line's SHA-256). Returns the first failure, naming its
/// line; a log whose end is torn fails with [`Error::TornLastLine`].
pub fn verify(path: &Path) -> Result<Report, Error> {
    verify_from(open_read(path)?, path)
}

/// [`verify`] of a log already open, or in memory (`path` is for messages).
pub fn verify_from(reader: impl Read, path: &Path) -> Result<Report, Error> {
    let mut lines = Lines::new(BufReader::new(reader), path);
    let mut report = Report {
        lines: 0,
        records: 0,
        torn_lines: Vec::new(),
        restarts: Vec::new(),
        last_hash: String::new(),
    };
    // The `prev` the next line must have.
    let mut expected = [0u8; 32];
    // Lines that are not records, since the last record: torn writes if a `chain-restarted`
    // record follows them.
    let mut broken: Vec<(u64, Defect)> = Vec::new();
    while let Some(Line {
        no: n,
        bytes: line,
        terminated,
    }) = lines.next_line()?
    {
        report.lines = n;
        let link_error = |found: &str| Error::BrokenLink {
            path: path.to_path_buf(),
            line: n,
            expected: hex::encode(expected),
            found: found.to_string(),
        };
        let obj = match parse(line) {
            Ok(obj) if terminated => obj,
            result => {
                // A line cut short still shows its `prev` once that much was written. (After
                // other lines that are not records, the first of them is the failure.)
                if let Some(found) = leading_prev(line)
                    && found != hex::encode(expected)
                {
                    return Err(match broken.first() {
                        Some(&(first, defect)) => defect_error(path, first, defect),
                        None => link_error(found),
                    });
                }
                if !terminated {
                    let first = broken.first().map_or(n, |&(l, _)| l);
                    return Err(Error::TornLastLine {
                        path: path.to_path_buf(),
                        line: first,
                    });
                }
                broken.push((n, result.err().unwrap_or(Defect::NotAnObject)));
                expected = sha256(line);
                continue;
            }
        };
        let string = |k: &str| obj.get(k).and_then(Value::as_str).unwrap_or_default();
        let restart = string("event") == CHAIN_RESTARTED;
        // Lines that are not records, and no restart after them: the first is the failure.
        if let Some(&(first, defect)) = broken.first()
            && !restart
        {
            return Err(defect_error(path, first, defect));
        }
        let prev = string("prev");
        if prev != hex::encode(expected) {
            return Err(link_error(prev));
        }
        match body_hash(line) {
            None => {
                return Err(Error::HashNotLast {
                    path: path.to_path_buf(),
                    line: n,
                });
            }
            Some(h) if hex::encode(h) != string("hash") => {
                return Err(Error::BadHash {
                    path: path.to_path_buf(),
                    line: n,
                    expected: hex::encode(h),
                    found: string("hash").to_string(),
                });
            }
            Some(_) => {}
        }
        if restart {
            let torn = obj.get("torn_line").and_then(Value::as_u64).unwrap_or(0);
            if torn + 1 != n {
                let reason = if n == 1 {
                    format!(
                        "a {CHAIN_RESTARTED} record names torn line {torn}, but no line precedes it"
                    )
                } else {
                    format!(
                        "a {CHAIN_RESTARTED} record names torn line {torn}, but the line before it is line {}",
                        n - 1
                    )
                };
                return Err(Error::BadRestart {
                    path: path.to_path_buf(),
                    line: n,
                    reason,
                });
            }
            report.restarts.push(n);
            report.torn_lines.extend(broken.drain(..).map(|(l, _)| l));
        }
        report.records += 1;
        expected = sha256(line);
    }
    if let Some(&(first, _)) = broken.first() {
        // Lines that are not records at the end: what a write cut short right after the
        // newline that ended an earlier torn line leaves. The next append repairs it.
        return Err(Error::TornLastLine {
            path: path.to_path_buf(),
            line: first,
        });
    }
    report.last_hash = hex::encode(expected);
    Ok(report)
}

/// The error for a line that is not a record.
fn defect_error(path: &Path, line: u64, defect: Defect) -> Error {
    let path = path.to_path_buf();
    match defect {
        Defect::NotAnObject => Error::NotAnObject { path, line },
        Defect::Missing(field) => Error::MissingField { path, line, field },
        Defect::Wrong { field, expected } => Error::BadField {
            path,
            line,
            field,
            expected,
        },
    }
}

#[cfg(test)]
mod tests;
