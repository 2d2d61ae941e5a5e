//! Release dates across the real binaries, over HTTP on 127.0.0.1: prokit refuses a Release
//! whose Date is older than the last one it accepted, or equal to it with other contents
//! (`prokit/src/feed.rs`), so `archman index` dates each new Release strictly later than the
//! published one. Two publishes in the same second still reach a client; a SOURCE_DATE_EPOCH
//! that goes back in time is refused with the feed untouched, and forcing it through with
//! --allow-date-rollback shows why: prokit refuses the result.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Fixture, prokit};
use e2e::{HttpServer, bin, run};

/// A signed feed with one package, served, and a client root bootstrapped from it.
struct Scene {
    f: Fixture,
    /// Serves the feed for as long as the scene lives.
    _server: HttpServer,
    root: PathBuf,
}

impl Scene {
    fn new() -> Option<Scene> {
        let f = Fixture::new();
        f.add("base", "1.0", "", &[("usr/share/base", "base 1.0")], None);
        // Dated an hour ago (Fixture::index), so the clock is well past it.
        f.index();
        let server = HttpServer::serve(&f.feed)?;
        let root = f.tmp.path().join("root");
        let feed = format!("main={}", server.url(""));
        let (ok, out, err) = prokit(
            None,
            &[
                "bootstrap",
                root.to_str().unwrap(),
                "--feed",
                &feed,
                "--pubkey",
                f.public.to_str().unwrap(),
                "base",
            ],
        );
        assert!(ok, "{out}{err}");
        Some(Scene {
            f,
            _server: server,
            root,
        })
    }

    /// `archman index --key … --valid-for 7d [extra] FEED`, dated by SOURCE_DATE_EPOCH
    /// `epoch`, or by the clock (None); returns (success, stderr).
    fn index(&self, epoch: Option<i64>, extra: &[&str]) -> (bool, String) {
        let mut cmd = Command::new(bin("archman"));
        cmd.args(["index", "--valid-for", "7d", "--key"])
            .arg(&self.f.sec)
            .args(extra)
            .arg(&self.f.feed);
        match epoch {
            Some(e) => cmd.env("SOURCE_DATE_EPOCH", e.to_string()),
            None => cmd.env_remove("SOURCE_DATE_EPOCH"),
        };
        let (ok, _, err) = run(&mut cmd);
        (ok, err)
    }

    fn update(&self) -> (bool, String, String) {
        prokit(Some(self.root.to_str().unwrap()), &["update"])
    }

    fn list(&self) -> String {
        let (ok, out, err) = prokit(Some(self.root.to_str().unwrap()), &["list"]);
        assert!(ok, "{err}");
        out
    }

    fn release_date(&self) -> i64 {
        let text = fs::read_to_string(self.f.feed.join("Release")).unwrap();
        feeds::release::Release::parse(&text).unwrap().date
    }

    /// The stored index of the feed on the client.
    fn stored_index(&self) -> Vec<u8> {
        fs::read(self.root.join("var/opkg-lists/main")).unwrap()
    }
}

/// Every file in `dir` (hidden ones too) with its bytes.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, fs::read(&p).unwrap())
        })
        .collect();
    v.sort();
    v
}

/// Sleeps until just after the clock turns to a new second, so that what follows (a few
/// quick runs) most likely happens within one second.
fn start_of_a_second() {
    let into = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    std::thread::sleep(Duration::from_nanos(
        u64::from(1_000_000_000 - into) + 5_000_000,
    ));
}

#[test]
fn two_publishes_in_the_same_second_both_reach_a_client() {
    let Some(s) = Scene::new() else { return };
    // Runs that straddle a second boundary prove nothing about the same second; try again
    // (each attempt publishes new packages) until both publishes fall within one.
    for attempt in 0..5 {
        start_of_a_second();
        let first_pkg = format!("first{attempt}");
        let file = format!("usr/share/{first_pkg}");
        s.f.add(&first_pkg, "1.0", "", &[(&file, "1")], None);
        let (ok, err) = s.index(None, &[]);
        assert!(ok, "{err}");
        let first = s.release_date();
        // The client takes the first Release (and records its Date)...
        let (ok, out, err) = s.update();
        assert!(ok, "{out}{err}");
        assert!(out.contains("main: updated"), "{out}");
        assert!(s.list().contains(&format!("{first_pkg} - 1.0")));
        // ...then the package set changes and is published again.
        let second_pkg = format!("second{attempt}");
        let file = format!("usr/share/{second_pkg}");
        s.f.add(&second_pkg, "1.0", "", &[(&file, "2")], None);
        let (ok, index_err) = s.index(None, &[]);
        assert!(ok, "{index_err}");
        let second = s.release_date();
        // Whatever the clock did, the second Release is dated strictly later, and the client
        // that has the first accepts it and sees the new package.
        assert!(second > first, "{second} is not later than {first}");
        let (ok, out, err) = s.update();
        assert!(ok, "the client refused the second Release: {out}{err}");
        assert!(out.contains("main: updated"), "{out}");
        assert!(s.list().contains(&format!("{second_pkg} - 1.0")));
        if index_err.contains("Release Date moved to") {
            // Both in one second: archman said so and dated the second one a second later.
            assert!(
                index_err.contains("(1 s after the published Release's Date")
                    && index_err.contains("so clients accept it as newer"),
                "{index_err}"
            );
            assert_eq!(second, first + 1);
            return;
        }
    }
    panic!("in 5 attempts, the two publishes never fell within one second");
}

#[test]
fn a_source_date_epoch_back_in_time_is_refused_and_clients_show_why() {
    let Some(s) = Scene::new() else { return };
    let published = s.release_date();
    let stored = s.stored_index();
    s.f.add("late", "1.0", "", &[("usr/share/late", "late")], None);
    let before = files(&s.f.feed);

    // Older than the published Date: refused with the reason, nothing in the feed changed.
    let older = published - 600;
    let (ok, err) = s.index(Some(older), &[]);
    assert!(!ok, "{err}");
    assert!(
        err.starts_with(&format!(
            "error: {}: refusing to publish: the new Release's Date {} (SOURCE_DATE_EPOCH) is older than the published Release's Date {}",
            s.f.feed.join("Release").display(),
            feeds::release::format_date(older),
            feeds::release::format_date(published)
        )) && err.contains("would refuse the new one as a rollback")
            && err.contains("the feed was not changed")
            && err.contains("--allow-date-rollback"),
        "{err}"
    );
    assert!(
        files(&s.f.feed) == before,
        "the refused run changed the feed"
    );
    // Equal to the published Date, with other contents: refused too (a replay to clients).
    let (ok, err) = s.index(Some(published), &[]);
    assert!(!ok, "{err}");
    assert!(err.contains("as a replay"), "{err}");
    assert!(
        files(&s.f.feed) == before,
        "the refused run changed the feed"
    );
    // The client is none the wiser: the feed it has is still the feed.
    let (ok, out, err) = s.update();
    assert!(ok, "{out}{err}");
    assert!(out.contains("main: unchanged"), "{out}");

    // Forced through, the older Release is published, with a warning...
    let (ok, err) = s.index(Some(older), &["--allow-date-rollback"]);
    assert!(ok, "{err}");
    assert!(
        err.contains("not later than the published Release's Date")
            && err.contains("clients that have the published Release refuse this one"),
        "{err}"
    );
    assert_eq!(s.release_date(), older);
    // ...and the client refuses it as a rollback, keeping its last good index: which is why
    // archman refuses by default.
    let (ok, out, err) = s.update();
    assert!(!ok, "{out}");
    assert!(
        err.contains(&format!(
            "Date {} is older than the last accepted Date {}: rollback (replay of an older Release) refused",
            feeds::release::format_date(older),
            feeds::release::format_date(published)
        )),
        "{err}"
    );
    assert_eq!(s.stored_index(), stored);
    assert!(!s.list().contains("late"));

    // Re-dated later than what the client has (--refresh: the index itself is unchanged),
    // the same packages reach it.
    let (ok, err) = s.index(Some(published + 1), &["--refresh"]);
    assert!(ok && !err.contains("warning"), "{err}");
    let (ok, out, err) = s.update();
    assert!(ok, "{out}{err}");
    assert!(s.list().contains("late - 1.0"));
}
