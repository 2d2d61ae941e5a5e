//! The verifier against every kind of damage: edits, deletions, reorderings, insertions,
//! truncations, torn writes and forged restarts.

use super::*;
use crate::record::{ZERO_HASH, write_line, writer_fields};
use proptest::prelude::*;
use serde_json::{Map, json};
use std::path::Path;
use std::sync::OnceLock;

/// A log of `events` (name, fields), chained as [`crate::Log`] writes it.
fn build(events: &[(&str, Value)]) -> Vec<u8> {
    let writer = writer_fields("prokit", "0.1.0", "root", "box", 42);
    let mut out = Vec::new();
    let mut prev = [0; 32];
    for (i, (event, fields)) in events.iter().enumerate() {
        let time = crate::format_rfc3339(1_796_428_862 + i as i64);
        prev = write_line(
            &mut out,
            &prev,
            &time,
            &writer,
            event,
            fields.as_object().unwrap(),
        );
        out.push(b'\n');
    }
    out
}

fn sample(n: usize) -> Vec<u8> {
    let events: Vec<(&str, Value)> = (0..n)
        .map(|i| {
            (
                if i % 2 == 0 {
                    "package-installed"
                } else {
                    "key-added"
                },
                json!({"name": format!("pkg{i}"), "package_version": "1.0-r1", "n": i}),
            )
        })
        .collect();
    build(&events)
}

fn check(bytes: &[u8]) -> Result<Report, Error> {
    verify_from(bytes, Path::new("/var/log/audit.jsonl"))
}

/// The lines of `bytes`, each with its newline.
fn lines(bytes: &[u8]) -> Vec<Vec<u8>> {
    bytes
        .split_inclusive(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect()
}

/// A torn line `fragment` then the `chain-restarted` record and one more record, as an
/// append after the tear writes them, after `bytes`.
fn with_torn_line(bytes: &[u8], fragment: &[u8]) -> Vec<u8> {
    let writer = writer_fields("prokit", "0.1.0", "root", "box", 43);
    let mut out = bytes.to_vec();
    out.extend_from_slice(fragment);
    out.push(b'\n');
    let torn_line = lines(&out).len() as u64;
    let mut restart = Map::new();
    restart.insert(
        "reason".into(),
        format!("torn last line {torn_line}").into(),
    );
    restart.insert("torn_line".into(), torn_line.into());
    let time = "2026-12-06T00:00:00Z";
    let prev = write_line(
        &mut out,
        &sha256(fragment),
        time,
        &writer,
        CHAIN_RESTARTED,
        &restart,
    );
    out.push(b'\n');
    let fields = json!({"name": "after"});
    write_line(
        &mut out,
        &prev,
        time,
        &writer,
        "package-installed",
        fields.as_object().unwrap(),
    );
    out.push(b'\n');
    out
}

#[test]
fn an_intact_log_verifies_and_reports_its_end() {
    let bytes = sample(5);
    let report = check(&bytes).unwrap();
    let last = lines(&bytes).pop().unwrap();
    assert_eq!(
        report,
        Report {
            lines: 5,
            records: 5,
            torn_lines: vec![],
            restarts: vec![],
            last_hash: hex::encode(sha256(&last[..last.len() - 1])),
        }
    );
    let empty = check(b"").unwrap();
    assert_eq!((empty.lines, empty.records), (0, 0));
    assert_eq!(empty.last_hash, ZERO_HASH);
}

#[test]
fn an_edited_byte_is_found_on_its_line() {
    let bytes = sample(4);
    let ls = lines(&bytes);
    for (k, line) in ls.iter().enumerate() {
        let mut edited = ls.clone();
        // pkg<k> -> pkh<k>: still a valid record, but not the bytes that were hashed.
        let at = line.windows(3).position(|w| w == b"pkg").unwrap() + 2;
        edited[k][at] = b'h';
        let err = check(&edited.concat()).unwrap_err();
        assert!(matches!(err, Error::BadHash { .. }), "{err}");
        assert_eq!(err.line(), Some(k as u64 + 1), "{err}");
        assert!(
            err.to_string().starts_with(&format!(
                "/var/log/audit.jsonl: line {}: the line was altered: hash is ",
                k + 1
            )),
            "{err}"
        );
    }
}

#[test]
fn a_deleted_line_breaks_the_chain_at_its_place() {
    let bytes = sample(5);
    let ls = lines(&bytes);
    for k in 0..ls.len() - 1 {
        let mut cut = ls.clone();
        cut.remove(k);
        let err = check(&cut.concat()).unwrap_err();
        let Error::BrokenLink {
            line,
            ref expected,
            ref found,
            ..
        } = err
        else {
            panic!("{err}")
        };
        assert_eq!(line, k as u64 + 1);
        let want = if k == 0 {
            ZERO_HASH.to_string()
        } else {
            hex::encode(sha256(ls[k - 1].strip_suffix(b"\n").unwrap()))
        };
        assert_eq!(*expected, want);
        assert_eq!(
            *found,
            hex::encode(sha256(ls[k].strip_suffix(b"\n").unwrap()))
        );
    }
    let err = check(&ls[1..].concat()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "/var/log/audit.jsonl: line 1: broken chain: prev is {}, expected {ZERO_HASH} (a log starts from 64 zeros)",
            hex::encode(sha256(ls[0].strip_suffix(b"\n").unwrap()))
        )
    );
    // Dropping the last line leaves a shorter log that is whole: only the end remembered
    // elsewhere (`last_hash`) tells.
    let shorter = check(&ls[..4].concat()).unwrap();
    assert_ne!(shorter.last_hash, check(&bytes).unwrap().last_hash);
}

#[test]
fn swapped_or_inserted_lines_break_the_chain_where_they_are() {
    let bytes = sample(5);
    let ls = lines(&bytes);
    for k in 0..ls.len() - 1 {
        let mut swapped = ls.clone();
        swapped.swap(k, k + 1);
        let err = check(&swapped.concat()).unwrap_err();
        assert!(matches!(err, Error::BrokenLink { .. }), "{err}");
        assert_eq!(err.line(), Some(k as u64 + 1), "{err}");
    }
    // A line copied from elsewhere.
    let mut inserted = ls.clone();
    inserted.insert(3, ls[1].clone());
    let err = check(&inserted.concat()).unwrap_err();
    assert_eq!(err.line(), Some(4), "{err}");
    // A record of another log, whole and well formed.
    let other = sample(1);
    let mut inserted = ls.clone();
    inserted.insert(2, other);
    let err = check(&inserted.concat()).unwrap_err();
    assert!(matches!(err, Error::BrokenLink { line: 3, .. }), "{err}");
}

#[test]
fn a_truncated_line_is_reported_torn() {
    let bytes = sample(3);
    let ls = lines(&bytes);
    let mut start = 0;
    for (k, line) in ls.iter().enumerate() {
        for cut in 1..line.len() {
            let err = check(&bytes[..start + cut]).unwrap_err();
            assert!(
                matches!(err, Error::TornLastLine { line, .. } if line == k as u64 + 1),
                "cut {cut} of line {}: {err}",
                k + 1
            );
        }
        start += line.len();
    }
    let err = check(&bytes[..bytes.len() - 1]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "/var/log/audit.jsonl: line 3 is torn (a write cut short): the chain up to line 2 verifies"
    );
    let err = check(&bytes[..10]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "/var/log/audit.jsonl: line 1 is torn (a write cut short): there is no line before it"
    );
    // Cut short after a wrong `prev`: that is no tear.
    let mut forged = bytes[..ls[0].len()].to_vec();
    forged.extend_from_slice(&ls[2][..80]);
    let err = check(&forged).unwrap_err();
    assert!(matches!(err, Error::BrokenLink { line: 2, .. }), "{err}");
}

#[test]
fn a_torn_line_followed_by_its_restart_is_a_note() {
    let bytes = sample(2);
    let ls = lines(&bytes);
    for fragment in [&ls[1][..30], b"{", b"{\"prev\":\"00", b"garbage \xff"] {
        let log = with_torn_line(&ls[0], fragment);
        let report = check(&log).unwrap();
        assert_eq!(report.lines, 4);
        assert_eq!(report.records, 3);
        assert_eq!(report.torn_lines, [2]);
        assert_eq!(report.restarts, [3]);
        assert_eq!(
            report.notes(),
            ["line 2 is torn (a write cut short); the chain restarts at line 3"]
        );
    }
    // A torn first line.
    let report = check(&with_torn_line(b"", b"{\"pr")).unwrap();
    assert_eq!((report.torn_lines, report.restarts), (vec![1], vec![2]));
    // A whole record whose newline was lost is no torn line, but the restart is kept.
    let log = with_torn_line(&ls[0], ls[1].strip_suffix(b"\n").unwrap());
    let report = check(&log).unwrap();
    assert_eq!(
        (&report.torn_lines[..], &report.restarts[..]),
        (&[][..], &[3][..])
    );
    assert!(report.notes().is_empty());
}

#[test]
fn torn_lines_without_a_restart_are_not_accepted() {
    let bytes = sample(3);
    let ls = lines(&bytes);
    let mut log = ls[0].clone();
    log.extend_from_slice(b"{\"prev\"\n");
    log.extend_from_slice(&ls[1]);
    let err = check(&log).unwrap_err();
    assert_eq!(
        err.to_string(),
        "/var/log/audit.jsonl: line 2 is not a JSON object"
    );
    // At the end, such a line is what a repair cut short leaves: torn.
    let mut log = ls[0].clone();
    log.extend_from_slice(b"{\"prev\"\n");
    let err = check(&log).unwrap_err();
    assert!(matches!(err, Error::TornLastLine { line: 2, .. }), "{err}");
    // A record without a field, or with one of the wrong type.
    let text = String::from_utf8(ls[1].clone()).unwrap();
    for (from, to, want) in [
        (
            "\"host\"",
            "\"hast\"",
            "/var/log/audit.jsonl: line 2: missing field host",
        ),
        (
            "\"pid\":42",
            "\"pid\":\"42\"",
            "/var/log/audit.jsonl: line 2: field pid is not a whole number",
        ),
    ] {
        let log = [
            ls[0].clone(),
            text.replace(from, to).into_bytes(),
            ls[2].clone(),
        ]
        .concat();
        assert_eq!(check(&log).unwrap_err().to_string(), want);
    }
}

#[test]
fn a_restart_must_name_the_line_before_it() {
    let bytes = sample(1);
    let log = with_torn_line(&bytes, b"{\"torn");
    let text = String::from_utf8(log.clone()).unwrap();
    // Rewrite the restart to name another line, with its hash made to match.
    let ls = lines(&log);
    let restart = String::from_utf8(ls[2].clone()).unwrap();
    let forged = restart.replace("\"torn_line\":2", "\"torn_line\":1");
    let body = &forged[..forged.len() - 1 - crate::record::HASH_SUFFIX_LEN];
    let forged = format!(
        "{body},\"hash\":\"{}\"}}\n",
        hex::encode(sha256(body.as_bytes()))
    );
    let log = [ls[0].clone(), ls[1].clone(), forged.into_bytes()].concat();
    let err = check(&log).unwrap_err();
    assert_eq!(
        err.to_string(),
        "/var/log/audit.jsonl: line 3: a chain-restarted record names torn line 1, but the line before it is line 2"
    );
    assert!(text.contains("\"torn_line\":2"));
    // On line 1 no line precedes it.
    let writer = writer_fields("prokit", "0.1.0", "root", "box", 42);
    let mut first = Vec::new();
    let fields = json!({"reason": "torn last line 1", "torn_line": 1});
    write_line(
        &mut first,
        &[0; 32],
        "2026-12-05T00:01:02Z",
        &writer,
        CHAIN_RESTARTED,
        fields.as_object().unwrap(),
    );
    first.push(b'\n');
    let err = check(&first).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("names torn line 1, but no line precedes it"),
        "{err}"
    );
}

#[test]
fn a_line_not_ending_in_its_hash_field_is_refused() {
    let bytes = sample(1);
    let text = String::from_utf8(bytes).unwrap();
    let moved = text.replacen("{\"prev\"", "{\"hash\":\"x\",\"prev\"", 1);
    // The trailing hash field still decides (JSON's last duplicate wins), but the layout
    // is not the one written.
    assert!(check(moved.as_bytes()).is_err());
    let spaced = text.replace("\"}\n", "\" }\n");
    let err = check(spaced.as_bytes()).unwrap_err();
    assert!(matches!(err, Error::HashNotLast { line: 1, .. }), "{err}");
}

/// The log the property tests damage: 6 records.
fn clean() -> &'static [u8] {
    static LOG: OnceLock<Vec<u8>> = OnceLock::new();
    LOG.get_or_init(|| sample(6))
}

/// A log with a torn line (line 3) and its restart (line 4).
fn repaired() -> &'static [u8] {
    static LOG: OnceLock<Vec<u8>> = OnceLock::new();
    LOG.get_or_init(|| {
        let bytes = sample(2);
        let third = lines(&sample(3)).pop().unwrap();
        with_torn_line(&bytes, &third[..120])
    })
}

/// The 1-based line of byte `at` (a newline belongs to the line it ends).
fn line_of(bytes: &[u8], at: usize) -> u64 {
    bytes[..at].iter().filter(|&&b| b == b'\n').count() as u64 + 1
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_changed_byte_fails_verification_on_its_line(at in any::<prop::sample::Index>(), delta in 1u8..=255) {
        let mut bytes = clean().to_vec();
        let i = at.index(bytes.len());
        bytes[i] ^= delta;
        let err = check(&bytes).unwrap_err();
        prop_assert_eq!(err.line(), Some(line_of(&bytes, i)), "{}", err);
    }

    #[test]
    fn any_changed_byte_of_a_repaired_log_fails_verification(at in any::<prop::sample::Index>(), delta in 1u8..=255) {
        let mut bytes = repaired().to_vec();
        let i = at.index(bytes.len());
        bytes[i] ^= delta;
        let err = check(&bytes).unwrap_err();
        let line = line_of(repaired(), i);
        // Around the torn line the failure can show a line off: a change to the torn line (or
        // one that makes the line before it torn too) on the restart's `prev`, one or two
        // lines on (a newline put into the torn line makes two); a restart that no longer is
        // one on the torn line it leaves unacknowledged, one line before.
        let got = err.line().unwrap_or(0);
        prop_assert!((line - 1..=line + 2).contains(&got), "byte {} of line {}: {}", i, line, err);
        if !(2..=5).contains(&line) {
            prop_assert_eq!(got, line, "{}", err);
        }
    }

    #[test]
    fn verify_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = check(&bytes);
    }
}
