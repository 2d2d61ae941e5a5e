//! Denial of service by the shape of a signed index (docs/threats.md §12, issue 10 class 9):
//! relation fields made so that dependency resolution does a product of sizes worth of work,
//! or writes an explanation as long as the index. Each test serves a hand-written `Packages`
//! (signed with a key the root trusts) over HTTP to the real `prokit bootstrap`, and checks
//! that it fails cleanly — before any download, with a short error that says why — within a
//! wall-clock bound that is generous for a debug build on two busy cores: the resolver these
//! tests guard against printed a 200 KB error line (the first two) and took minutes on them.

mod common;

use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Fixture, prokit};
use e2e::{HttpServer, bin, run};

/// A feed serving `packages` as `Packages.gz`, signed by the fixture's key.
fn signed_feed(packages: &str) -> Option<(Fixture, HttpServer)> {
    let f = Fixture::new();
    let plain = f.feed.join("Packages");
    fs::write(&plain, packages).unwrap();
    let (ok, _, err) = run(Command::new("gzip").args(["-n", "-k", "-6"]).arg(&plain));
    assert!(ok, "gzip: {err}");
    let (ok, _, err) = run(Command::new(bin("archman"))
        .arg("sign")
        .arg("-s")
        .arg(&f.sec)
        .arg("-m")
        .arg(&plain));
    assert!(ok, "archman sign: {err}");
    let server = HttpServer::serve(&f.feed)?;
    Some((f, server))
}

/// `prokit bootstrap` of `pkgs`; (success, stderr, wall time).
fn bootstrap(f: &Fixture, server: &HttpServer, pkgs: &[&str]) -> (bool, String, Duration) {
    let root = f.tmp.path().join("root");
    let feed = format!("main={}", server.url(""));
    let mut args = vec![
        "bootstrap",
        root.to_str().unwrap(),
        "--feed",
        &feed,
        "--pubkey",
        f.public.to_str().unwrap(),
    ];
    args.extend_from_slice(pkgs);
    let start = Instant::now();
    let (ok, _, err) = prokit(None, &args);
    (ok, err, start.elapsed())
}

fn stanza(out: &mut String, name: &str, fields: &str) {
    out.push_str(&format!(
        "Package: {name}\nVersion: 1\nArchitecture: all\n{fields}\n"
    ));
}

/// `prefix0 | prefix1 | … | prefix{n-1}`.
fn alternatives(prefix: &str, n: usize) -> String {
    (0..n)
        .map(|i| format!("{prefix}{i}"))
        .collect::<Vec<_>>()
        .join(" | ")
}

#[test]
fn wide_alternatives_fail_fast_with_a_short_explanation() {
    // 10 packages, each depending on 20,000 alternatives nothing provides (2 MB of Depends).
    // The old resolver printed every alternative of the failing group (a 200 KB error line).
    let mut packages = String::new();
    let top: Vec<String> = (0..10).map(|i| format!("p{i}")).collect();
    stanza(
        &mut packages,
        "top",
        &format!("Depends: {}\n", top.join(", ")),
    );
    for i in 0..10 {
        let depends = alternatives(&format!("m{i}x"), 20_000);
        stanza(
            &mut packages,
            &format!("p{i}"),
            &format!("Depends: {depends}\n"),
        );
    }
    let Some((f, server)) = signed_feed(&packages) else {
        return;
    };
    let (ok, err, took) = bootstrap(&f, &server, &["top"]);
    assert!(!ok);
    assert!(
        err.contains(
            "cannot install top: top 1 depends on p0, p0 1 depends on m0x0 | m0x1 | m0x2 | m0x3 | \
             m0x4 | … and 19995 more, but no alternative can be used: m0x0 is not in any feed"
        ),
        "{err}"
    );
    assert!(err.len() < 2_000, "{} bytes of error", err.len());
    assert!(took < Duration::from_secs(30), "took {took:?}");
}

#[test]
fn a_conflict_with_every_alternative_fails_fast() {
    // p depends on q0 | … | q19999; w, installed first, conflicts with every q. The old
    // resolver scanned w's 20,000 Conflicts for each q it tried: 400 million comparisons.
    let mut packages = String::new();
    stanza(&mut packages, "top", "Depends: p, w\n");
    stanza(
        &mut packages,
        "p",
        &format!("Depends: {}\n", alternatives("q", 20_000)),
    );
    for j in 0..20_000 {
        stanza(&mut packages, &format!("q{j}"), "");
    }
    let conflicts: Vec<String> = (0..20_000).map(|j| format!("q{j}")).collect();
    stanza(
        &mut packages,
        "w",
        &format!("Conflicts: {}\n", conflicts.join(", ")),
    );
    let Some((f, server)) = signed_feed(&packages) else {
        return;
    };
    let (ok, err, took) = bootstrap(&f, &server, &["top"]);
    assert!(!ok);
    assert!(
        err.contains(
            "cannot install top: top 1 depends on p, p 1 depends on q0 | q1 | q2 | q3 | q4 | … \
             and 19995 more, but w 1 conflicts with q0 1"
        ),
        "{err}"
    );
    assert!(took < Duration::from_secs(30), "took {took:?}");
}

#[test]
fn re_evaluating_wide_groups_behind_a_failing_choice_gives_up_at_the_work_budget() {
    // c: r0 | … | r499, where every r but the last fails late (y conflicts with it), after the
    // 20 groups of 20,000 alternatives queued behind c were evaluated again: 500 × 20 × 20,000
    // = 200 million relation checks for a 4 MB index. prokit gives up at its work budget.
    let mut packages = String::new();
    let mut top = vec!["c".to_string()];
    top.extend((0..20).map(|i| format!("p{i}")));
    stanza(
        &mut packages,
        "top",
        &format!("Depends: {}\n", top.join(", ")),
    );
    stanza(
        &mut packages,
        "c",
        &format!("Depends: {}\n", alternatives("r", 500)),
    );
    for j in 0..500 {
        stanza(&mut packages, &format!("r{j}"), "Depends: y\n");
    }
    let conflicts: Vec<String> = (0..499).map(|j| format!("r{j}")).collect();
    stanza(
        &mut packages,
        "y",
        &format!("Conflicts: {}\n", conflicts.join(", ")),
    );
    for i in 0..20 {
        let depends = alternatives(&format!("m{i}x"), 20_000);
        stanza(
            &mut packages,
            &format!("p{i}"),
            &format!("Depends: {depends} | ok\n"),
        );
    }
    stanza(&mut packages, "ok", "");
    let Some((f, server)) = signed_feed(&packages) else {
        return;
    };
    let (ok, err, took) = bootstrap(&f, &server, &["top"]);
    assert!(!ok);
    assert!(
        err.contains("relation checks (the work budget): the feeds' relations are too large to resolve; the closest it came: cannot install top: top 1 depends on c, c 1 depends on r0 | r1 | r2 | r3 | r4 | … and 495 more, r0 1 depends on y, but y 1 conflicts with r0 1"),
        "{err}"
    );
    assert!(err.len() < 2_000, "{} bytes of error", err.len());
    assert!(took < Duration::from_secs(60), "took {took:?}");
}
