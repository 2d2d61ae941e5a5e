//! Appending: the chain across writers and processes, crash repair at every cut, the file's
//! placement and mode, refused events.

use super::*;
use crate::{Record, read, verify};
use serde_json::json;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};

const T: i64 = 1_796_428_862; // 2026-12-05T00:01:02Z

fn open(path: &Path) -> Log {
    Log::open(path, "prokit", "0.1.0").unwrap()
}

fn lines(path: &Path) -> Vec<Vec<u8>> {
    fs::read(path)
        .unwrap()
        .split(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect()
}

fn records(path: &Path) -> Vec<Record> {
    read(path).unwrap().records
}

#[test]
fn records_are_chained_and_the_file_placed_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("var/log/prokit/audit.jsonl");
    let mut log = open(&path);
    assert!(log.is_enabled());
    assert_eq!(log.path(), Some(path.as_path()));
    log.append_at(
        T,
        "package-installed",
        &json!({"name": "foo", "package_version": "1.0"}),
    )
    .unwrap();
    log.append_at(
        T + 1,
        "key-added",
        &json!({"fingerprint": "0123456789abcdef"}),
    )
    .unwrap();
    log.finish().unwrap();

    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&path), 0o640);
    assert_eq!(mode(&dir.path().join("var/log/prokit")), 0o755);
    assert_eq!(mode(&dir.path().join("var")), 0o755);

    let ls = lines(&path);
    assert_eq!(ls.len(), 3);
    assert!(ls[2].is_empty(), "the file ends in a newline");
    let rs = records(&path);
    assert_eq!(rs[0].time, "2026-12-05T00:01:02Z");
    assert_eq!(rs[1].time, "2026-12-05T00:01:03Z");
    assert_eq!(
        (rs[0].tool.as_str(), rs[0].version.as_str()),
        ("prokit", "0.1.0")
    );
    assert_eq!(rs[0].pid, u64::from(std::process::id()));
    assert!(!rs[0].user.is_empty() && !rs[0].host.is_empty());
    let prev = |l: &[u8]| {
        serde_json::from_slice::<Value>(l).unwrap()["prev"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(prev(&ls[0]), crate::ZERO_HASH);
    assert_eq!(prev(&ls[1]), hex::encode(sha256(&ls[0])));
    let report = verify(&path).unwrap();
    assert_eq!((report.lines, report.records), (2, 2));
    assert_eq!(report.last_hash, hex::encode(sha256(&ls[1])));
}

#[test]
fn writers_taking_turns_keep_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut a = open(&path);
    let mut b = open(&path);
    for i in 0..5 {
        a.append_at(T, "a", &json!({"i": i})).unwrap();
        b.append_at(T, "b", &json!({"i": i})).unwrap();
        b.append_at(T, "b", &json!({"i": i})).unwrap();
    }
    a.finish().unwrap();
    b.finish().unwrap();
    // A later command continues the chain.
    let mut c = open(&path);
    c.append_at(T, "c", &json!({})).unwrap();
    c.finish().unwrap();
    let report = verify(&path).unwrap();
    assert_eq!(report.records, 16);
    assert!(report.restarts.is_empty());
}

#[test]
fn concurrent_writers_keep_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let path = path.clone();
            std::thread::spawn(move || {
                let mut log = open(&path);
                for i in 0..250 {
                    log.append_at(T, "package-installed", &json!({"thread": t, "i": i}))
                        .unwrap();
                }
                log.finish().unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let report = verify(&path).unwrap();
    assert_eq!(report.records, 1000);
    // Each writer's records are in its own order.
    for t in 0..4 {
        let is: Vec<u64> = records(&path)
            .iter()
            .filter(|r| r.fields["thread"] == t)
            .map(|r| r.fields["i"].as_u64().unwrap())
            .collect();
        assert_eq!(is, (0..250).collect::<Vec<_>>());
    }
}

#[test]
fn a_lone_writer_does_not_read_the_file_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut log = open(&path);
    log.append_at(T, "one", &json!({})).unwrap();
    let first = lines(&path).remove(0);
    // Change the line behind the writer's back, keeping the size: a writer that read the
    // file again would chain to the changed bytes.
    let changed: Vec<u8> = String::from_utf8(first.clone())
        .unwrap()
        .replace("\"one\"", "\"two\"")
        .into_bytes();
    fs::write(&path, [changed.as_slice(), b"\n"].concat()).unwrap();
    log.append_at(T, "three", &json!({})).unwrap();
    let second = lines(&path).remove(1);
    let prev = serde_json::from_slice::<Value>(&second).unwrap()["prev"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(prev, hex::encode(sha256(&first)));
    // A size change makes it read again.
    fs::write(&path, b"").unwrap();
    log.append_at(T, "four", &json!({})).unwrap();
    assert_eq!(verify(&path).unwrap().records, 1);
}

/// Writes 3 records, then cuts the file at every byte of the last line; each time the next
/// append must repair the log, whose verification then notes the torn line.
#[test]
fn a_write_cut_anywhere_is_repaired_by_the_next_append() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut log = open(&path);
    for i in 0..3 {
        log.append_at(T, "package-installed", &json!({"i": i}))
            .unwrap();
    }
    log.finish().unwrap();
    let whole = fs::read(&path).unwrap();
    let third = whole[..whole.len() - 1]
        .iter()
        .rposition(|&b| b == b'\n')
        .unwrap()
        + 1;
    for cut in third + 1..whole.len() {
        let fragment = &whole[third..cut];
        fs::write(&path, &whole[..cut]).unwrap();
        let err = verify(&path).unwrap_err();
        assert!(matches!(err, Error::TornLastLine { line: 3, .. }), "{err}");

        let mut log = open(&path);
        log.append_at(T, "package-removed", &json!({"name": "foo"}))
            .unwrap();
        log.finish().unwrap();
        let report = verify(&path).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        assert_eq!(report.lines, 5);
        assert_eq!(report.restarts, [4]);
        // The whole third record without its newline is no torn line.
        let complete = cut == whole.len() - 1;
        assert_eq!(report.torn_lines, if complete { vec![] } else { vec![3] });
        let restart = &records(&path)[if complete { 3 } else { 2 }];
        assert_eq!(restart.event, CHAIN_RESTARTED);
        assert_eq!(restart.fields["reason"], "torn last line 3");
        assert_eq!(restart.fields["torn_line"], 3);
        let prev = serde_json::from_str::<Value>(&restart.raw).unwrap()["prev"].clone();
        assert_eq!(prev, hex::encode(sha256(fragment)));
    }
}

/// The repair itself cut at every byte (a second crash): the append after it repairs again.
#[test]
fn a_repair_cut_anywhere_is_repaired_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut log = open(&path);
    log.append_at(T, "package-installed", &json!({})).unwrap();
    log.finish().unwrap();
    let mut torn = fs::read(&path).unwrap();
    torn.extend_from_slice(b"{\"prev\":\"0");
    fs::write(&path, &torn).unwrap();
    let mut log = open(&path);
    log.append_at(T, "repairing", &json!({})).unwrap();
    let repaired = fs::read(&path).unwrap();
    assert_eq!(repaired[torn.len()], b'\n');
    for cut in torn.len() + 1..repaired.len() {
        fs::write(&path, &repaired[..cut]).unwrap();
        let mut log = open(&path);
        log.append_at(T, "after", &json!({})).unwrap();
        let report = verify(&path).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        assert_eq!(
            records(&path).last().unwrap().event,
            "after",
            "cut at {cut}"
        );
        assert!(report.torn_lines.contains(&2), "cut at {cut}: {report:?}");
    }
}

#[test]
fn a_last_line_that_is_no_record_is_restarted_from() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    fs::write(&path, b"not a record\n").unwrap();
    let mut log = open(&path);
    log.append_at(T, "package-installed", &json!({})).unwrap();
    let rs = records(&path);
    assert_eq!(rs[0].line_no, 2);
    assert_eq!(rs[0].fields["reason"], "last line 1 is not a record");
    assert_eq!(lines(&path).len(), 4, "no empty line was added");
    let report = verify(&path).unwrap();
    assert_eq!((report.torn_lines, report.restarts), (vec![1], vec![2]));
}

#[test]
fn ten_thousand_appends_verify() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut log = open(&path);
    for i in 0..10_000 {
        log.append_at(
            T + i,
            "package-installed",
            &json!({"name": format!("pkg{i}"), "package_version": "1.0-r1"}),
        )
        .unwrap();
    }
    log.finish().unwrap();
    let report = verify(&path).unwrap();
    assert_eq!((report.lines, report.records), (10_000, 10_000));
}

#[test]
fn the_log_is_never_reached_through_a_symlink_nor_outside_a_root() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("target"), b"keep").unwrap();
    symlink(
        outside.path().join("target"),
        dir.path().join("audit.jsonl"),
    )
    .unwrap();
    let err = Log::open(&dir.path().join("audit.jsonl"), "prokit", "0.1.0").unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");

    let root = safe_fs::Root::open(dir.path()).unwrap();
    // `var/log` leads to the root's `/outside-dir`, never to the real one.
    fs::create_dir(dir.path().join("var")).unwrap();
    symlink(outside.path(), dir.path().join("var/log")).unwrap();
    let mut log = Log::open_in_root(&root, "/var/log/audit.jsonl", "prokit", "0.1.0").unwrap();
    log.append("package-installed", &json!({})).unwrap();
    log.finish().unwrap();
    let inside = root.path().join(outside.path().strip_prefix("/").unwrap());
    assert_eq!(verify(&inside.join("audit.jsonl")).unwrap().records, 1);
    assert_eq!(
        fs::read_dir(outside.path()).unwrap().count(),
        1,
        "nothing was written outside the root"
    );
    let err = Log::open_in_root(&root, "audit.jsonl", "prokit", "0.1.0").unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");
    assert!(Log::open_in_root(&root, "../../x", "prokit", "0.1.0").is_err());
    assert!(Log::open_in_root(&root, "/", "prokit", "0.1.0").is_err());
    assert_eq!(fs::read(outside.path().join("target")).unwrap(), b"keep");
}

#[test]
fn events_that_cannot_be_recorded_are_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut log = open(&path);
    let msg = |r: Result<(), Error>| r.unwrap_err().to_string();
    let prefix = format!("{}: cannot record event ", path.display());
    assert_eq!(
        msg(log.append_at(T, "x", &json!({"prev": "0"}))),
        format!("{prefix}\"x\": the field name \"prev\" is reserved")
    );
    assert_eq!(
        msg(log.append_at(T, CHAIN_RESTARTED, &json!({}))),
        format!("{prefix}\"chain-restarted\": the event chain-restarted is the log's own")
    );
    assert_eq!(
        msg(log.append_at(T, "x", &json!([1, 2]))),
        format!("{prefix}\"x\": its fields are not a JSON object")
    );
    let big = "a".repeat(MAX_LINE);
    assert!(msg(log.append_at(T, "x", &json!({ "big": big }))).contains("more than the 1048576"));
    assert_eq!(fs::read(&path).unwrap(), b"");
    // A Serialize struct works as fields.
    #[derive(serde::Serialize)]
    struct Installed<'a> {
        name: &'a str,
    }
    log.append_at(T, "package-installed", &Installed { name: "foo" })
        .unwrap();
    assert_eq!(records(&path)[0].fields["name"], "foo");
}

#[test]
fn a_last_line_too_long_to_be_ours_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    for end in [&b"\n"[..], b""] {
        fs::write(&path, [&vec![b'x'; MAX_LINE + 1][..], end].concat()).unwrap();
        let err = open(&path).append_at(T, "x", &json!({})).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: the last line is longer than {MAX_LINE} bytes: not a line this log writes",
                path.display()
            )
        );
    }
    // Exactly as long as allowed is read.
    fs::write(&path, [&b"\n"[..], &vec![b'x'; MAX_LINE], b"\n"].concat()).unwrap();
    open(&path).append_at(T, "x", &json!({})).unwrap();
    let rs = records(&path);
    assert_eq!(rs[0].fields["torn_line"], 2);
}

#[test]
fn a_disabled_log_does_nothing() {
    let mut log = Log::disabled();
    assert!(!log.is_enabled());
    assert_eq!(log.path(), None);
    log.append("package-installed", &json!({})).unwrap();
    log.sync().unwrap();
    log.finish().unwrap();
}

#[test]
fn passwd_names_are_found_by_uid() {
    let passwd = "root:x:0:0:root:/root:/bin/sh\n\
                  # comment\n\
                  bad:x:notanumber:0::/:\n\
                  :x:7:0::/:\n\
                  daemon:x:1:1::/:/sbin/nologin\n\
                  alias:x:1:1::/:\n";
    assert_eq!(passwd_name(passwd, 0).as_deref(), Some("root"));
    assert_eq!(passwd_name(passwd, 1).as_deref(), Some("daemon"));
    assert_eq!(passwd_name(passwd, 7), None);
    assert_eq!(passwd_name(passwd, 1000), None);
}

#[test]
fn records_appended_together_are_chained_like_records_appended_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut log = open(&path);
    log.append_at(T, "first", &json!({"n": 0})).unwrap();
    let many: Vec<(String, Value)> = (1..=3)
        .map(|n| (format!("event-{n}"), json!({ "n": n })))
        .collect();
    log.append_many(&many).unwrap();
    // Another writer's append after them chains to the last of them.
    open(&path).append_at(T, "last", &json!({"n": 4})).unwrap();
    let got = records(&path);
    let events: Vec<&str> = got.iter().map(|r| r.event.as_str()).collect();
    assert_eq!(events, ["first", "event-1", "event-2", "event-3", "last"]);
    assert_eq!(verify(&path).unwrap().records, 5);
    // One bad record refuses them all; nothing is written.
    let before = fs::read(&path).unwrap();
    let bad = vec![
        ("fine".to_string(), json!({"n": 5})),
        ("x".to_string(), json!({"prev": "0"})),
    ];
    assert!(log.append_many(&bad).is_err());
    assert_eq!(fs::read(&path).unwrap(), before);
    log.append_many(&[]).unwrap();
    assert_eq!(fs::read(&path).unwrap(), before);
}
