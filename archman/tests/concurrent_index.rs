//! Two `archman index` runs at once (cron and a person) on one feed: they take turns on the
//! feed's lock, so the feed is always complete and verifiable (issue 10).

// Tests say on stderr what they skipped or measured.
#![allow(clippy::print_stderr)]

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use feeds::build::PackageBuilder;

const ARCHMAN: &str = env!("CARGO_BIN_EXE_archman");
const ROUNDS: usize = 50;

fn pkg(name: &str, version: &str) -> Vec<u8> {
    PackageBuilder::new(format!(
        "Package: {name}\nVersion: {version}\nArchitecture: all\nDescription: the {name} package\n"
    ))
    .file(
        &format!("usr/share/{name}/data"),
        0o644,
        format!("{name}\n"),
    )
    .build()
    .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(o: Output, what: &str) {
    assert!(
        o.status.success(),
        "{what}: {}: {}{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );
}

#[test]
fn two_runs_at_once_always_leave_a_complete_verifiable_feed() {
    let started = std::time::Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let feed = tmp.path().join("feed");
    fs::create_dir(&feed).unwrap();
    for i in 0..5 {
        let name = format!("p{i}");
        fs::write(
            feed.join(format!("{name}_1.0-1_all.ipk")),
            pkg(&name, "1.0-1"),
        )
        .unwrap();
    }
    let (sec, public) = e2e::archman_keygen(Path::new(ARCHMAN), tmp.path());
    let signify = e2e::have_tool("signify-openbsd");
    let xdg = tmp.path().join("xdg-cache");
    // Dated by the clock, as cron and people run it: a run in the same second as the last
    // publish moves its Date on.
    let index = |extra: &[&str]| {
        Command::new(ARCHMAN)
            .args(["index", "-q", "--key"])
            .arg(&sec)
            .args(extra)
            .arg(&feed)
            .env("XDG_CACHE_HOME", &xdg)
            .env_remove("SOURCE_DATE_EPOCH")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let verify = |name: &str, dir: &Path| {
        ok(
            Command::new(ARCHMAN)
                .args(["verify", "-q", "-m"])
                .arg(dir.join(name))
                .arg("-p")
                .arg(&public)
                .output()
                .unwrap(),
            &format!("archman verify {name}"),
        );
        if signify {
            ok(
                Command::new("signify-openbsd")
                    .args(["-V", "-q", "-p"])
                    .arg(&public)
                    .arg("-m")
                    .arg(dir.join(name))
                    .output()
                    .unwrap(),
                &format!("signify -V {name}"),
            );
        }
    };
    for round in 0..ROUNDS {
        // A changed package, and a new one every few rounds: each round has work to publish.
        let changed = format!("p{}", round % 5);
        fs::write(
            feed.join(format!("{changed}_1.0-1_all.ipk")),
            pkg(&changed, &format!("2.{round}")),
        )
        .unwrap();
        if round % 7 == 0 {
            let name = format!("n{round}");
            fs::write(
                feed.join(format!("{name}_1.0-1_all.ipk")),
                pkg(&name, "1.0-1"),
            )
            .unwrap();
        }
        // The second one re-signs even when it finds the index current, so that both publish.
        let (a, b) = (index(&[]), index(&["--refresh"]));
        for (child, who) in [(a, "first"), (b, "second")] {
            ok(
                child.wait_with_output().unwrap(),
                &format!("round {round}: {who} run"),
            );
        }
        ok(
            Command::new(ARCHMAN)
                .args(["check", "-q", "-p"])
                .arg(&public)
                .arg(&feed)
                .output()
                .unwrap(),
            &format!("round {round}: archman check"),
        );
        verify("Packages", &feed);
        verify("Release", &feed);
        let packages = fs::read_to_string(feed.join("Packages")).unwrap();
        assert!(
            packages.contains(&format!("Version: 2.{round}\n")),
            "round {round}: the change is not published"
        );
        let leftovers: Vec<String> = fs::read_dir(&feed)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".archman-tmp") || n == ".archman-publish")
            .collect();
        assert!(leftovers.is_empty(), "round {round}: {leftovers:?}");
    }
    eprintln!(
        "{ROUNDS} rounds of two concurrent runs in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
