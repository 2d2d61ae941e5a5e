//! Support shared by the integration tests of `feeds`: where the real-world samples are, and
//! whether a peer tool is installed. Outside CI a missing sample folder or peer skips the test
//! with a visible message; under CI (`CI` set) it fails the test, so a green CI always means the
//! peer really ran.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// `../shared/real` beside the checkout, or `None` (after printing why) when it is absent
/// outside CI. Panics under CI when absent.
pub fn real_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/real");
    if dir.is_dir() {
        return Some(dir.canonicalize().expect("canonicalize shared/real"));
    }
    if std::env::var_os("CI").is_some() {
        panic!("{} is missing, and CI must have it", dir.display());
    }
    eprintln!("SKIPPED: {} is absent (not under CI)", dir.display());
    None
}

/// True when `tool` runs. Outside CI a missing tool prints a SKIPPED line and returns false;
/// under CI a missing tool fails the test.
pub fn have_tool(tool: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if found {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("peer tool `{tool}` is not installed, and CI must have it (see .ci/run)");
    }
    eprintln!("SKIPPED: peer tool `{tool}` is not installed (not under CI)");
    false
}
