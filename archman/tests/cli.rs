//! The `archman` binary's behaviour shared by its commands: a closed standard output, and
//! one reading of `SOURCE_DATE_EPOCH`.

// Tests say on stderr what they skipped or measured.
#![allow(clippy::print_stderr)]

use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use feeds::build::PackageBuilder;

const ARCHMAN: &str = env!("CARGO_BIN_EXE_archman");

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A signed feed of one package in `dir`/feed, and its public key.
fn signed_feed(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let feed = dir.join("feed");
    fs::create_dir(&feed).unwrap();
    let ipk =
        PackageBuilder::new("Package: a\nVersion: 1\nArchitecture: all\nDescription: a package\n")
            .build()
            .unwrap();
    fs::write(feed.join("a_1_all.ipk"), ipk).unwrap();
    let (sec, public) = e2e::archman_keygen(Path::new(ARCHMAN), dir);
    let o = Command::new(ARCHMAN)
        .args(["index", "-q", "--no-cache", "--key"])
        .arg(&sec)
        .arg(&feed)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    (feed, public)
}

/// `archman ARGS` with a standard output whose reader is gone before it starts (a pipe into
/// `head -c0`, deterministically): every write fails with EPIPE.
fn with_closed_stdout(args: &[&std::ffi::OsStr]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    Command::new(ARCHMAN)
        .args(args)
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn a_closed_stdout_ends_quietly_with_status_0() {
    let tmp = tempfile::tempdir().unwrap();
    let (feed, public) = signed_feed(tmp.path());
    let os = |s: &str| std::ffi::OsString::from(s);
    let (feed, public) = (feed.into_os_string(), public.into_os_string());
    let packages = Path::new(&feed).join("Packages").into_os_string();
    let cases: Vec<Vec<std::ffi::OsString>> = vec![
        vec![os("check"), os("-p"), public.clone(), feed.clone()],
        vec![os("check"), os("--json"), feed.clone()],
        vec![os("fingerprint"), os("-p"), public.clone()],
        vec![os("verify"), os("-m"), packages, os("-p"), public.clone()],
        vec![os("usign"), os("-F"), os("-p"), public.clone()],
        // Last: unsigned, it takes the signatures away.
        vec![os("index"), os("--json"), os("--no-cache"), feed.clone()],
    ];
    for args in cases {
        let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        let o = with_closed_stdout(&args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        assert_eq!(stderr(&o), "", "{args:?}");
    }
}

#[test]
fn another_stdout_failure_is_an_error_naming_standard_output() {
    if !Path::new("/dev/full").exists() {
        eprintln!("SKIPPED: no /dev/full");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (_, public) = signed_feed(tmp.path());
    let o = Command::new(ARCHMAN)
        .arg("fingerprint")
        .arg("-p")
        .arg(&public)
        .stdout(fs::File::create("/dev/full").unwrap())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).starts_with("error: standard output: No space left on device"),
        "{}",
        stderr(&o)
    );
}

/// Every command that reads `SOURCE_DATE_EPOCH` refuses a bad value the same way, naming the
/// variable and the value, before doing anything (`keyring build` used to ignore it).
#[test]
fn a_bad_source_date_epoch_is_refused_by_every_command_that_reads_it() {
    let tmp = tempfile::tempdir().unwrap();
    let feed = tmp.path().join("feed");
    fs::create_dir(&feed).unwrap();
    let pkg_dir = tmp.path().join("pkg");
    fs::create_dir_all(pkg_dir.join("CONTROL")).unwrap();
    fs::write(
        pkg_dir.join("CONTROL/control"),
        "Package: a\nVersion: 1\nArchitecture: all\nDescription: a\n",
    )
    .unwrap();
    let keyring = tmp.path().join("keyring");
    let out = tmp.path().join("out");
    let p = |p: &Path| p.to_str().unwrap().to_string();
    let commands: Vec<Vec<String>> = vec![
        vec!["index".into(), "--no-cache".into(), p(&feed)],
        vec!["build".into(), p(&pkg_dir), p(&out)],
        vec!["keyring".into(), "build".into(), p(&keyring), p(&out)],
    ];
    for value in ["17x", "-5", "", "253402300800"] {
        for args in &commands {
            let o = Command::new(ARCHMAN)
                .args(args)
                .env("SOURCE_DATE_EPOCH", value)
                .output()
                .unwrap();
            assert_eq!(
                o.status.code(),
                Some(1),
                "{args:?} {value:?}: {}",
                stderr(&o)
            );
            assert!(
                stderr(&o).starts_with(&format!(
                    "error: SOURCE_DATE_EPOCH={value:?} is not a time: "
                )),
                "{args:?}: {}",
                stderr(&o)
            );
        }
        assert!(!feed.join("Release").exists());
        assert!(!out.exists());
    }
    // A good value is used: the package's entries carry it.
    let o = Command::new(ARCHMAN)
        .args(["build"])
        .arg(&pkg_dir)
        .arg(&out)
        .env("SOURCE_DATE_EPOCH", " 1700000000\n")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let ipk = fs::read(out.join("a_1_all.ipk")).unwrap();
    let gz = flate_tar_mtimes(&ipk);
    assert!(
        !gz.is_empty() && gz.iter().all(|m| *m == 1_700_000_000),
        "{gz:?}"
    );
}

/// The mtimes of the outer tar's entries of a gzipped-tar .ipk.
fn flate_tar_mtimes(ipk: &[u8]) -> Vec<u64> {
    let plain = feeds::index::gunzip(ipk, &Default::default()).unwrap();
    // ustar headers: 512-byte blocks, mtime as octal at offset 136, size at 124.
    let mut out = Vec::new();
    let mut at = 0;
    while at + 512 <= plain.len() && plain[at] != 0 {
        let h = &plain[at..at + 512];
        let octal = |f: &[u8]| {
            let s = std::str::from_utf8(f).unwrap();
            u64::from_str_radix(s.trim_matches(|c: char| c == '\0' || c == ' '), 8).unwrap()
        };
        out.push(octal(&h[136..148]));
        let size = octal(&h[124..136]) as usize;
        at += 512 + size.div_ceil(512) * 512;
    }
    out
}
