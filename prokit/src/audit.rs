//! prokit's audit trail: where the log of a root is, and the one way prokit appends to it
//! (the format and its guarantees are the `audit-log` crate's; the events are listed in
//! docs/on-disk-state.md §5 and the README).
//!
//! The log is `<root>/var/log/prokit/audit.jsonl` unless `option audit_log PATH` names
//! another path inside the root (`off` disables it). It is resolved inside the root like every
//! configured path and opened on the first event, so commands that decide nothing (`list`,
//! `info`) never create it. Every record is written as the decision is made; the command
//! fsyncs the log once, at its end ([`Audit::sync`]).

use std::sync::{Arc, Mutex};

use audit_log::Log;
use safe_fs::Root;
use serde_json::Value;

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
        })
    }

    /// A log that records nothing.
    pub fn off() -> Audit {
        Audit {
            state: Mutex::new(State::Off),
        }
    }

    /// Appends one event (`fields` a JSON object; URLs already without credentials).
    pub fn record(&self, event: &str, fields: Value) -> Result<(), AuditError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let State::Closed { root, rel } = &*state {
            let log = Log::open_in_root(root, rel, "prokit", env!("CARGO_PKG_VERSION"))?;
            *state = State::Open(log);
        }
        match &mut *state {
            State::Open(log) => Ok(log.append(event, &fields)?),
            _ => Ok(()),
        }
    }

    /// Makes every record so far durable (one fsync; nothing when nothing was written).
    pub fn sync(&self) -> Result<(), AuditError> {
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
