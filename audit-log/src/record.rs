//! One record, one line: how a line is built (the field order is fixed, so the bytes are
//! deterministic), how it is parsed back, and how it is shown to a person.

use std::fmt::Write as _;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::time::parse_rfc3339;

/// The longest line (without its newline) a log holds: an append refuses a longer record, and
/// reading one back is an error.
pub const MAX_LINE: usize = 1 << 20;

/// The `prev` of a log's first record: 64 zeros.
pub const ZERO_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The event written by the log itself after a torn line.
pub const CHAIN_RESTARTED: &str = "chain-restarted";

/// The fields every record has, in the order they are written (`hash` is last, after the
/// event's own fields, which come between `event` and `hash`). An event's own fields may not
/// use these names.
pub const RESERVED_FIELDS: [&str; 9] = [
    "prev", "time", "tool", "version", "user", "host", "pid", "event", "hash",
];

/// What ends every line: `,"hash":"` + 64 hex digits + `"}`.
const HASH_KEY: &[u8] = b",\"hash\":\"";
pub(crate) const HASH_SUFFIX_LEN: usize = HASH_KEY.len() + 64 + 2;

/// The SHA-256 of `bytes`.
pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// `s` as a JSON string (quoted, escaped as JSON requires).
fn json_str(s: &str) -> String {
    Value::from(s).to_string()
}

/// Appends one line (without its newline) to `out`: `prev`, `time`, the writer's fixed part
/// (`"tool":…,"version":…,"user":…,"host":…,"pid":…`), `event`, the event's fields in key
/// order, and `hash`, the SHA-256 of everything before `,"hash":`. Returns the SHA-256 of the
/// whole line: the next line's `prev`.
pub(crate) fn write_line(
    out: &mut Vec<u8>,
    prev: &[u8; 32],
    time: &str,
    writer: &str,
    event: &str,
    fields: &Map<String, Value>,
) -> [u8; 32] {
    let start = out.len();
    out.extend_from_slice(b"{\"prev\":\"");
    out.extend_from_slice(hex::encode(prev).as_bytes());
    out.extend_from_slice(b"\",\"time\":");
    out.extend_from_slice(json_str(time).as_bytes());
    out.push(b',');
    out.extend_from_slice(writer.as_bytes());
    out.extend_from_slice(b",\"event\":");
    out.extend_from_slice(json_str(event).as_bytes());
    // serde_json's map is ordered by key: the fields come out sorted.
    for (k, v) in fields {
        out.push(b',');
        out.extend_from_slice(json_str(k).as_bytes());
        out.push(b':');
        // `Value`'s `Display` is its compact JSON.
        out.extend_from_slice(v.to_string().as_bytes());
    }
    let body = sha256(&out[start..]);
    out.extend_from_slice(HASH_KEY);
    out.extend_from_slice(hex::encode(body).as_bytes());
    out.extend_from_slice(b"\"}");
    sha256(&out[start..])
}

/// The fixed part of each record a writer appends: `"tool":…,"version":…,"user":…,
/// "host":…,"pid":…`.
pub(crate) fn writer_fields(tool: &str, version: &str, user: &str, host: &str, pid: u32) -> String {
    format!(
        "\"tool\":{},\"version\":{},\"user\":{},\"host\":{},\"pid\":{pid}",
        json_str(tool),
        json_str(version),
        json_str(user),
        json_str(host)
    )
}

/// Why a line is not a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Defect {
    NotAnObject,
    Missing(&'static str),
    Wrong {
        field: &'static str,
        expected: &'static str,
    },
}

const HEX64: &str = "64 lowercase hex digits";

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A line parsed as a record: a JSON object with every field of [`RESERVED_FIELDS`] of the
/// right type (and, for `chain-restarted`, `reason` and `torn_line`). The bytes are not
/// checked against `hash` here.
pub(crate) fn parse(line: &[u8]) -> Result<Map<String, Value>, Defect> {
    let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(line) else {
        return Err(Defect::NotAnObject);
    };
    let string = |field: &'static str| match obj.get(field) {
        None => Err(Defect::Missing(field)),
        Some(Value::String(s)) => Ok(s.as_str()),
        Some(_) => Err(Defect::Wrong {
            field,
            expected: "a string",
        }),
    };
    let number = |field: &'static str| match obj.get(field) {
        None => Err(Defect::Missing(field)),
        Some(v) => v.as_u64().ok_or(Defect::Wrong {
            field,
            expected: "a whole number",
        }),
    };
    for field in ["prev", "time", "tool", "version", "user", "host"] {
        let s = string(field)?;
        if field == "prev" && !is_hex64(s) {
            return Err(Defect::Wrong {
                field,
                expected: HEX64,
            });
        }
    }
    number("pid")?;
    let event = string("event")?;
    if !is_hex64(string("hash")?) {
        return Err(Defect::Wrong {
            field: "hash",
            expected: HEX64,
        });
    }
    if event == CHAIN_RESTARTED {
        string("reason")?;
        if number("torn_line")? == 0 {
            return Err(Defect::Wrong {
                field: "torn_line",
                expected: "a line number",
            });
        }
    }
    Ok(obj)
}

/// The `prev` at the very start of a line cut short, when enough of it was written:
/// `{"prev":"<64 hex>"`.
pub(crate) fn leading_prev(line: &[u8]) -> Option<&str> {
    let rest = line.strip_prefix(b"{\"prev\":\"")?;
    let hex = std::str::from_utf8(rest.get(..64)?).ok()?;
    (rest.get(64) == Some(&b'"') && is_hex64(hex)).then_some(hex)
}

/// The hash a record's bytes have (everything before its trailing `,"hash":"…"}`), or `None`
/// when the line does not end that way.
pub(crate) fn body_hash(line: &[u8]) -> Option<[u8; 32]> {
    let body_len = line.len().checked_sub(HASH_SUFFIX_LEN)?;
    let (body, suffix) = line.split_at(body_len);
    (suffix.starts_with(HASH_KEY) && suffix.ends_with(b"\"}")).then(|| sha256(body))
}

/// A record as read back for display.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Its line in the file, from 1.
    pub line_no: u64,
    /// RFC 3339 UTC, as written (`2026-12-05T00:01:02Z`).
    pub time: String,
    pub tool: String,
    pub version: String,
    pub user: String,
    pub host: String,
    pub pid: u64,
    /// The event's name (`package-installed`).
    pub event: String,
    /// The event's own fields (every field but those of [`RESERVED_FIELDS`]), by key.
    pub fields: Map<String, Value>,
    /// The line as it is in the file, without its newline.
    pub raw: String,
}

impl Record {
    /// The record on `line` (line number `line_no`), or `None` when it is not one.
    pub(crate) fn from_line(line_no: u64, line: &[u8]) -> Option<Record> {
        let mut obj = parse(line).ok()?;
        let raw = String::from_utf8(line.to_vec()).ok()?;
        let mut take = |k: &str| match obj.remove(k) {
            Some(Value::String(s)) => s,
            _ => String::new(),
        };
        let (time, tool, version, user, host, event) = (
            take("time"),
            take("tool"),
            take("version"),
            take("user"),
            take("host"),
            take("event"),
        );
        let pid = obj.remove("pid").and_then(|v| v.as_u64()).unwrap_or(0);
        for k in RESERVED_FIELDS {
            obj.remove(k);
        }
        Some(Record {
            line_no,
            time,
            tool,
            version,
            user,
            host,
            pid,
            event,
            fields: obj,
            raw,
        })
    }

    /// The record's time in seconds since 1970-01-01 UTC, if it is RFC 3339.
    pub fn unix_time(&self) -> Option<i64> {
        parse_rfc3339(&self.time)
    }
}

/// Characters that change how the rest of a terminal line looks without being shown: bidi
/// controls, zero-width characters, separators.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{00ad}' | '\u{061c}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}'
        | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

/// Whether `c` must be escaped on a terminal.
fn must_escape(c: char) -> bool {
    c.is_control() || is_invisible(c)
}

/// `s` quoted, with `"` and `\` escaped and control or invisible characters as `\u{…}`.
fn quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if must_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `s` as it is when that reads unambiguously, else [`quoted`].
fn word(out: &mut String, s: &str) {
    let plain = !s.is_empty()
        && !s
            .chars()
            .any(|c| c.is_whitespace() || must_escape(c) || matches!(c, '"' | '\\' | '='));
    if plain {
        out.push_str(s);
    } else {
        quoted(out, s);
    }
}

/// A field's value: a string as a [`word`], anything else as compact JSON with control or
/// invisible characters escaped.
fn value(out: &mut String, v: &Value) {
    match v {
        Value::String(s) => word(out, s),
        v => {
            let text = v.to_string();
            for c in text.chars() {
                if must_escape(c) {
                    let _ = write!(out, "\\u{{{:x}}}", c as u32);
                } else {
                    out.push(c);
                }
            }
        }
    }
}

/// One readable line for a record (for `prokit audit show`):
/// `2026-12-05 00:01:02Z  package-installed  name=foo version=1.0  by root@box (prokit 0.1.0, pid 42)`.
/// Strings with spaces, quotes or `=` are quoted; control characters and invisible ones
/// (bidi overrides, zero-width) are escaped, never passed to the terminal.
pub fn human(r: &Record) -> String {
    let mut out = String::new();
    match r.time.split_once('T') {
        Some((d, t)) if r.unix_time().is_some() => {
            out.push_str(d);
            out.push(' ');
            out.push_str(t);
        }
        _ => word(&mut out, &r.time),
    }
    out.push_str("  ");
    word(&mut out, &r.event);
    if !r.fields.is_empty() {
        out.push(' ');
        for (k, v) in &r.fields {
            out.push(' ');
            word(&mut out, k);
            out.push('=');
            value(&mut out, v);
        }
    }
    out.push_str("  by ");
    word(&mut out, &r.user);
    out.push('@');
    word(&mut out, &r.host);
    out.push_str(" (");
    word(&mut out, &r.tool);
    out.push(' ');
    word(&mut out, &r.version);
    let _ = write!(out, ", pid {})", r.pid);
    out
}

/// Whether `name` matches the glob `pattern`: `*` any run of characters, `?` any one, every
/// other character itself (`package-*` matches `package-installed`).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni) = (0, 0);
    // Where the last `*` was, and the name position it matched up to.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(&c) if c == '?' || c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn line(fields: Value) -> Vec<u8> {
        let Value::Object(fields) = fields else {
            panic!()
        };
        let writer = writer_fields("prokit", "0.1.0", "root", "box", 42);
        let mut out = Vec::new();
        write_line(
            &mut out,
            &[0; 32],
            "2026-12-05T00:01:02Z",
            &writer,
            "package-installed",
            &fields,
        );
        out
    }

    #[test]
    fn a_line_has_its_fields_in_the_documented_order() {
        let l = line(json!({"version_new": "1.0", "name": "foo", "a": [1, {"z": 1, "b": 2}]}));
        let text = String::from_utf8(l.clone()).unwrap();
        let body = &text[..text.len() - HASH_SUFFIX_LEN];
        assert_eq!(
            body,
            format!(
                "{{\"prev\":\"{ZERO_HASH}\",\"time\":\"2026-12-05T00:01:02Z\",\"tool\":\"prokit\",\
                 \"version\":\"0.1.0\",\"user\":\"root\",\"host\":\"box\",\"pid\":42,\
                 \"event\":\"package-installed\",\"a\":[1,{{\"b\":2,\"z\":1}}],\"name\":\"foo\",\
                 \"version_new\":\"1.0\""
            )
        );
        let hash = hex::encode(sha256(body.as_bytes()));
        assert_eq!(&text[body.len()..], format!(",\"hash\":\"{hash}\"}}"));
        assert_eq!(body_hash(&l), Some(sha256(body.as_bytes())));
        assert!(parse(&l).is_ok());
        assert_eq!(leading_prev(&l), Some(ZERO_HASH));
        assert_eq!(leading_prev(&l[..72]), None);
        assert_eq!(leading_prev(&l[..74]), Some(ZERO_HASH));
    }

    #[test]
    fn parse_names_the_missing_or_wrong_field() {
        let l = String::from_utf8(line(json!({}))).unwrap();
        assert_eq!(parse(b"[1]"), Err(Defect::NotAnObject));
        assert_eq!(parse(b"{\"prev\""), Err(Defect::NotAnObject));
        assert_eq!(parse(b"\xff"), Err(Defect::NotAnObject));
        assert_eq!(
            parse(l.replace("\"user\"", "\"usr\"").as_bytes()),
            Err(Defect::Missing("user"))
        );
        assert_eq!(
            parse(l.replace("\"pid\":42", "\"pid\":-1").as_bytes()),
            Err(Defect::Wrong {
                field: "pid",
                expected: "a whole number"
            })
        );
        assert_eq!(
            parse(
                l.replace(ZERO_HASH, &ZERO_HASH.to_uppercase().replace('0', "A"))
                    .as_bytes()
            ),
            Err(Defect::Wrong {
                field: "prev",
                expected: HEX64
            })
        );
        let restart = l.replace("package-installed", CHAIN_RESTARTED);
        assert_eq!(parse(restart.as_bytes()), Err(Defect::Missing("reason")));
    }

    fn record(fields: Value) -> Record {
        Record::from_line(7, &line(fields)).unwrap()
    }

    #[test]
    fn human_shows_one_line_with_the_fields_in_order() {
        let r = record(json!({"version_new": "1.0", "name": "foo"}));
        assert_eq!(r.line_no, 7);
        assert_eq!(r.event, "package-installed");
        assert_eq!(r.pid, 42);
        assert_eq!(
            human(&r),
            "2026-12-05 00:01:02Z  package-installed  name=foo version_new=1.0  by root@box (prokit 0.1.0, pid 42)"
        );
        let r = record(json!({}));
        assert_eq!(
            human(&r),
            "2026-12-05 00:01:02Z  package-installed  by root@box (prokit 0.1.0, pid 42)"
        );
    }

    #[test]
    fn human_quotes_and_escapes_what_a_terminal_would_misread() {
        let r = record(json!({
            "path": "a b",
            "esc": "\u{1b}[31mred",
            "bidi": "abc\u{202e}fed",
            "eq": "k=v",
            "empty": "",
            "n": 3,
            "list": ["x\u{7f}", null],
        }));
        assert_eq!(
            human(&r),
            "2026-12-05 00:01:02Z  package-installed  bidi=\"abc\\u{202e}fed\" empty=\"\" \
             eq=\"k=v\" esc=\"\\u{1b}[31mred\" list=[\"x\\u{7f}\",null] n=3 path=\"a b\"  \
             by root@box (prokit 0.1.0, pid 42)"
        );
        assert!(!human(&r).chars().any(must_escape));
    }

    #[test]
    fn glob_matches_stars_and_question_marks() {
        for (p, n) in [
            ("package-*", "package-installed"),
            ("package-*", "package-"),
            ("*", ""),
            ("*-removed", "package-removed"),
            ("p?ckage-*ed", "package-installed"),
            ("*a*b*", "xxaxxbxx"),
            ("key-added", "key-added"),
        ] {
            assert!(glob_match(p, n), "{p} {n}");
        }
        for (p, n) in [
            ("package-*", "packages"),
            ("package-?", "package-"),
            ("key-added", "key-added2"),
            ("*a*b", "xxaxxbx"),
            ("", "x"),
        ] {
            assert!(!glob_match(p, n), "{p} {n}");
        }
    }
}
