//! The audit log (`audit-log`): `verify_from` and `read_from` over arbitrary bytes taken as a
//! log, then appends to it through `Log`, which writes the input to
//! `<tmp>/audit-log-fuzz-<pid>/audit.jsonl` (one fixed file per process, overwritten on every
//! run, left behind in the temporary directory when the fuzzer exits).
//!
//! Asserts:
//! - nothing panics, and `verify_from` and `read_from` agree on the number of lines;
//! - for a log that verifies: the lines `read_from` skips are exactly the torn lines of the
//!   report, every other line is a record, `last_hash` is the SHA-256 of the last line, and
//!   `human` of every record passes no control character through;
//! - appending to a log that verifies keeps it verifying, with one more record;
//! - a log that verifies and has no torn line, cut at any byte (a write cut short; the cut is
//!   chosen from the input's hash), is repaired by one append: it verifies again, and ends
//!   with the appended record.
//!
//! Seeds: `seed.sh` writes logs as `Log` writes them (built with python3's hashlib): intact,
//! with a torn line and its restart, and damaged.
#![no_main]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use audit_log::{Error, Log, human, read_from, verify, verify_from};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

fn log_path() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("audit-log-fuzz-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("create the fuzz directory");
        dir.join("audit.jsonl")
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `bytes` as the log, appends one record, and returns the verification after it.
fn append_to(bytes: &[u8]) -> Result<audit_log::Report, Error> {
    let path = log_path();
    fs::write(path, bytes).expect("write the fuzz log");
    let mut log = Log::open(path, "fuzz", "0").expect("open the fuzz log");
    let fields: BTreeMap<&str, &str> = [("name", "fuzz")].into();
    log.append("fuzz-appended", &fields).expect("append");
    // No fsync: the file is only read back.
    drop(log);
    let after = verify(path);
    if after.is_ok() {
        let listing = audit_log::read(path).expect("read after append");
        let last = listing.records.last().expect("a record after append");
        assert_eq!(last.event, "fuzz-appended");
        assert_eq!(
            last.fields.get("name").and_then(|v| v.as_str()),
            Some("fuzz")
        );
    }
    after
}

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.jsonl");
    let verified = verify_from(data, path);
    let listing = read_from(data, path);
    let (report, listing) = match (verified, listing) {
        (Ok(report), Ok(listing)) => (report, listing),
        // A line too long for the reader: verification fails there or before.
        (Err(e), Err(Error::LineTooLong { line, .. })) => {
            assert!(e.line().is_some_and(|l| l <= line), "{e}");
            return;
        }
        (Err(e), Ok(listing)) => {
            // A failure names a line of the log.
            let lines = (listing.records.len() + listing.skipped.len()) as u64;
            let line = e.line().expect("a verification failure names its line");
            assert!((1..=lines).contains(&line), "{e} (of {lines} lines)");
            return;
        }
        (v, l) => panic!("verify {v:?} but read {l:?}"),
    };
    assert_eq!(
        listing.records.len() + listing.skipped.len(),
        report.lines as usize
    );
    assert_eq!(listing.skipped, report.torn_lines);
    assert_eq!(listing.records.len() as u64, report.records);
    let last = data
        .strip_suffix(b"\n")
        .map(|d| d.rsplit(|&b| b == b'\n').next().unwrap_or(d));
    let want = last.map_or_else(|| "0".repeat(64), |l| hex(&Sha256::digest(l)));
    assert_eq!(report.last_hash, want);
    for r in &listing.records {
        let shown = human(r);
        assert!(
            !shown.chars().any(char::is_control),
            "control character in {shown:?}"
        );
    }

    let after = append_to(data).unwrap_or_else(|e| panic!("appending to a log that verifies: {e}"));
    assert_eq!(after.records, report.records + 1);

    if report.torn_lines.is_empty() && !data.is_empty() {
        let digest = Sha256::digest(data);
        let n = u64::from_le_bytes(digest[..8].try_into().unwrap_or_default());
        let cut = (n % data.len() as u64) as usize;
        append_to(&data[..cut])
            .unwrap_or_else(|e| panic!("appending after a cut at byte {cut}: {e}"));
    }
});
