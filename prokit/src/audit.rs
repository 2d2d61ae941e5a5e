//! prokit's audit trail: where the log of a root is, and the one way prokit appends to it
//! (the format and its guarantees are the `audit-log` crate's; the events are listed in
//! docs/on-disk-state.md §5 and the README).
//!
//! The log is `<root>/var/log/prokit/audit.jsonl` unless `option audit_log PATH` names
//! another path inside the root (`off` disables it). It is resolved inside the root like every
//! configured path and opened on the first event, so commands that decide nothing (`list`,
//! `info`) never create it. Every record is written as the decision is made, but for an
//! install's, which are held and written a group of packages at a time ([`Audit::hold`]); the
//! command fsyncs the log once, at its end ([`Audit::sync`]), unless it bootstraps a fresh
//! root.

use std::sync::{Arc, Mutex};

use audit_log::Log;
use safe_fs::Root;
use serde_json::Value;

/// Records held at most ([`Audit::hold`]); then they are written (memory stays flat however
/// many packages an install has).
const HOLD_MAX: usize = 64;

/// The default log, inside the root.
pub const DEFAULT_AUDIT_LOG: &str = "var/log/prokit/audit.jsonl";

/// The audit log could not be used.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("option audit_log {path:?}: {reason}")]
    Option { path: String, reason: String },
    #[error("audit log: {0}")]
    Log(#[from] audit_log::Error),
}

enum State {
    /// Configured, not opened yet.
    Closed {
        root: Arc<Root>,
        rel: String,
    },
    Open(Log),
    Off,
}

/// A root's audit log, shared by the threads of one command.
pub struct Audit {
    state: Mutex<State>,
    /// Records held to be written together ([`Audit::hold`]), when holding.
    held: Mutex<Option<Vec<(String, Value)>>>,
    /// [`Audit::sync`] fsyncs (not for a root being bootstrapped: [`Audit::set_durable`]).
    durable: std::sync::atomic::AtomicBool,
}

/// Holding an audit log's records ([`Audit::hold`]); dropping it writes what it holds.
pub struct Held<'a> {
    audit: &'a Audit,
}

impl Held<'_> {
    /// Writes the records held so far (in one write), and goes on holding.
    pub fn flush(&self) -> Result<(), AuditError> {
        let records = match &mut *self.audit.held.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(v) if !v.is_empty() => std::mem::take(v),
            _ => return Ok(()),
        };
        self.audit.write(&records)
    }

    /// Writes what is held and stops holding: records are written one by one again.
    pub fn finish(self) -> Result<(), AuditError> {
        let r = self.flush();
        *self.audit.held.lock().unwrap_or_else(|p| p.into_inner()) = None;
        std::mem::forget(self);
        r
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        // An error is on its way out already; what is held is still written if it can be.
        let _ = self.flush();
        *self.audit.held.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

impl Audit {
    /// The log `option audit_log` names (`None`: the default; `off`: none).
    pub fn configured(root: Arc<Root>, option: Option<&str>) -> Result<Audit, AuditError> {
        let state = match option.map(str::trim) {
            Some("off") => State::Off,
            Some(path) => State::Closed {
                root,
                rel: option_path(path)?,
            },
            None => State::Closed {
                root,
                rel: DEFAULT_AUDIT_LOG.into(),
            },
        };
        Ok(Audit {
            state: Mutex::new(state),
            held: Mutex::new(None),
            durable: true.into(),
        })
    }

    /// A log that records nothing.
    pub fn off() -> Audit {
        Audit {
            state: Mutex::new(State::Off),
            held: Mutex::new(None),
            durable: true.into(),
        }
    }

    /// Appends one event (`fields` a JSON object; URLs already without credentials); while
    /// the log is held ([`Audit::hold`]), keeps it to be written with the others.
    pub fn record(&self, event: &str, fields: Value) -> Result<(), AuditError> {
        let full = {
            let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
            match &mut *held {
                Some(v) => {
                    v.push((event.to_string(), fields));
                    if v.len() < HOLD_MAX {
                        return Ok(());
                    }
                    std::mem::take(v)
                }
                None => return self.write(&[(event.to_string(), fields)]),
            }
        };
        self.write(&full)
    }

    /// Holds the records from now on, to write them together at [`Held::flush`] (an install
    /// flushes once a group of packages is committed: one append of a few hundred records
    /// instead of a few hundred appends, each a lock, a stat and a write).
    /// The log is opened now (a log that cannot be opened fails here, before anything held
    /// is decided).
    pub fn hold(&self) -> Result<Held<'_>, AuditError> {
        let off = matches!(*self.open()?, State::Off);
        if !off {
            self.held
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert_with(Vec::new);
        }
        Ok(Held { audit: self })
    }

    /// The state, the log opened if it was not yet.
    fn open(&self) -> Result<std::sync::MutexGuard<'_, State>, AuditError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let State::Closed { root, rel } = &*state {
            let log = Log::open_in_root(root, rel, "prokit", env!("CARGO_PKG_VERSION"))?;
            *state = State::Open(log);
        }
        Ok(state)
    }

    fn write(&self, records: &[(String, Value)]) -> Result<(), AuditError> {
        let mut state = self.open()?;
        match &mut *state {
            State::Open(log) => Ok(log.append_many(records)?),
            _ => Ok(()),
        }
    }

    /// Whether [`Audit::sync`] fsyncs: not while a fresh root is bootstrapped, which is redone
    /// after a power loss anyway (as its database is not fsynced either); every record is
    /// still written as it is now.
    pub fn set_durable(&self, durable: bool) {
        self.durable
            .store(durable, std::sync::atomic::Ordering::Relaxed);
    }

    /// Makes every record so far durable (one fsync; nothing when nothing was written).
    pub fn sync(&self) -> Result<(), AuditError> {
        if !self.durable.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(());
        }
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match &mut *state {
            State::Open(log) => Ok(log.sync()?),
            _ => Ok(()),
        }
    }
}

/// The root-relative path `option audit_log PATH` names, checked as every configured path
/// is (it may not climb out of the root).
pub fn option_path(path: &str) -> Result<String, AuditError> {
    let rel = Root::confine(path).map_err(|e| AuditError::Option {
        path: path.into(),
        reason: e.to_string(),
    })?;
    if rel.is_empty() || rel.ends_with('/') {
        return Err(AuditError::Option {
            path: path.into(),
            reason: "names a directory, not a file".into(),
        });
    }
    Ok(rel)
}

/// `"name version"` (how prokit's errors name a package) split for the log.
pub fn split_package(package: &str) -> (&str, &str) {
    package.split_once(' ').unwrap_or((package, ""))
}

/// Text for the log: credentials in any URL it contains replaced (`user:pass@` removed,
/// token-like query parameters masked).
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, word) in text.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        if word.contains("://") {
            // Keep what surrounds the URL (quotes, a trailing colon).
            let start = word.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(0);
            let end = word
                .rfind(|c: char| !matches!(c, ':' | ',' | ';' | ')' | '"' | '\''))
                .map_or(word.len(), |i| i + 1)
                .max(start);
            out.push_str(&word[..start]);
            out.push_str(&audit_log::url_without_credentials(&word[start..end]));
            out.push_str(&word[end..]);
        } else {
            out.push_str(word);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_removes_credentials_from_urls_in_text() {
        let t = redact(
            "feed \"x\": http://user:s3cret@127.0.0.1:8/Packages.gz: 401; see \"https://h/p?token=abc\"",
        );
        assert!(!t.contains("s3cret") && !t.contains("abc"), "{t}");
        assert!(
            t.starts_with("feed \"x\": http://127.0.0.1:8/Packages.gz: 401"),
            "{t}"
        );
    }

    #[test]
    fn held_records_are_written_together_at_each_flush_and_when_the_hold_ends() {
        let t = tempfile::tempdir().unwrap();
        let root = Arc::new(Root::open(t.path()).unwrap());
        let path = t.path().join(DEFAULT_AUDIT_LOG);
        let count = || {
            audit_log::verify(&path)
                .map(|r| r.records)
                .unwrap_or_default()
        };
        let a = Audit::configured(root.clone(), None).unwrap();
        let held = a.hold().unwrap();
        assert!(
            path.exists(),
            "the log is opened by hold, before anything is decided"
        );
        a.record("one", serde_json::json!({})).unwrap();
        a.record("two", serde_json::json!({})).unwrap();
        assert_eq!(count(), 0);
        held.flush().unwrap();
        assert_eq!(count(), 2);
        a.record("three", serde_json::json!({})).unwrap();
        // Dropped (an error on its way out): what it held is written.
        drop(held);
        assert_eq!(count(), 3);
        // Not held any more: written at once.
        a.record("four", serde_json::json!({})).unwrap();
        assert_eq!(count(), 4);
        let held = a.hold().unwrap();
        a.record("five", serde_json::json!({})).unwrap();
        held.finish().unwrap();
        assert_eq!(count(), 5);
        let events: Vec<String> = audit_log::read(&path)
            .unwrap()
            .records
            .into_iter()
            .map(|r| r.event)
            .collect();
        assert_eq!(events, ["one", "two", "three", "four", "five"]);
        // A log that cannot be opened fails the hold itself.
        std::fs::create_dir_all(t.path().join("bad")).unwrap();
        let bad = Audit::configured(root, Some("bad")).unwrap();
        assert!(bad.hold().is_err());
    }

    #[test]
    fn the_log_opens_on_the_first_event_inside_the_root_and_off_writes_nothing() {
        let t = tempfile::tempdir().unwrap();
        let root = Arc::new(Root::open(t.path()).unwrap());
        let a = Audit::configured(root.clone(), None).unwrap();
        assert!(!t.path().join(DEFAULT_AUDIT_LOG).exists());
        a.record("test-event", serde_json::json!({"name": "x"}))
            .unwrap();
        a.sync().unwrap();
        let report = audit_log::verify(&t.path().join(DEFAULT_AUDIT_LOG)).unwrap();
        assert_eq!(report.records, 1);

        let off = Audit::configured(root.clone(), Some("off")).unwrap();
        off.record("test-event", serde_json::json!({})).unwrap();
        assert!(
            Audit::configured(root, Some("../../etc/x"))
                .err()
                .unwrap()
                .to_string()
                .starts_with("option audit_log \"../../etc/x\"")
        );
    }
}
