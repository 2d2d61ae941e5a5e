//! `feeds::version` against the real dpkg, and `version`/`relation` against the real feeds
//! in `shared/real`.

// Tests say on stderr what they skipped or measured.
#![allow(clippy::print_stderr)]

use e2e as common;

use feeds::relation::{format_relations, parse_relations};
use feeds::version::{Version, compare};
use std::cmp::Ordering;
use std::process::Command;

/// Hand-picked pairs: `~`, letters against punctuation, leading zeros, epochs, revisions and
/// the shapes of real OpenWrt versions.
const TRICKY: &[(&str, &str)] = &[
    ("1.0", "1.0"),
    ("1.0", "0:1.0"),
    ("1.0", "1.0-0"),
    ("1.0-0", "1.0-00"),
    ("1.0", "1.0-1"),
    ("1.0~rc1", "1.0"),
    ("1.0~rc1", "1.0~rc2"),
    ("1.0~~", "1.0~"),
    ("1.0~~a", "1.0~~"),
    ("1.0~", "1.0"),
    ("1.0", "1.0a"),
    ("1.0a", "1.0+"),
    ("1.0+", "1.0.0"),
    ("1.0a", "1.0.0"),
    ("1.0", "1.0.0"),
    ("1.0.0", "1.0.1"),
    ("1:0.1", "2.0"),
    ("1:0.1", "1:0.1"),
    ("2:0", "10:0"),
    ("01", "1"),
    ("1.01", "1.1"),
    ("1.001", "1.0001"),
    ("1.10", "1.9"),
    ("1.0010", "1.9"),
    (
        "123456789012345678901234567890",
        "123456789012345678901234567891",
    ),
    ("99999999999999999999", "100000000000000000000"),
    ("1.2.3-r4", "1.2.3-r10"),
    ("1.2.3-r4", "1.2.3-r4"),
    ("1.2.3-r4", "1.2.3-4"),
    ("2024.03.18~abc-1", "2024.03.18-1"),
    ("2024.03.18~abc-1", "2024.03.18~abd-1"),
    ("5.4.188-1", "5.10.138-1"),
    (
        "5.3.4-2024-06-25T13-20-6665bfaa-r1",
        "5.3.4-2024-06-25T13-20-6665bfaa-r2",
    ),
    (
        "5.3.4-2024-06-25T13-20-6665bfaa-r1",
        "5.3.4-2024-06-26T13-20-6665bfaa-r1",
    ),
    ("5.10.138-1-789565457d2f287975d7d943ddbe4eeb", "5.10.138-1"),
    ("1.28.15-r2", "1.28.15-r1"),
    ("9999.0001", "9999.1"),
    ("9999.0001", "9999.0002"),
    ("20170717", "2017.07.17"),
    ("7.4p1-1", "7.4-1"),
    ("7.4p1-1", "7.4.1-1"),
    ("3.8153-4", "3.8153-4.1"),
    ("1.0-1", "1.0-1~bpo1"),
    ("1.0-1+b1", "1.0-1"),
    ("1.0-1.1", "1.0-1+b1"),
    ("1.0+dfsg", "1.0"),
    ("1.0+dfsg-1", "1.0-1"),
    ("1.0~dfsg-1", "1.0-1"),
    ("1.0A", "1.0a"),
    ("1.0Z", "1.0a"),
    ("1.0z", "1.0+"),
    ("1.0.", "1.0"),
    ("1.0..", "1.0."),
    ("1.0a0", "1.0a"),
    ("1.0-a0", "1.0-a"),
    ("0", "00"),
    ("0~", "0"),
    ("1:1.0-1", "1:1.0-1"),
    ("2147483647:1", "1:2"),
    ("1.0-1", "1.0-1.0"),
    ("1:1:2", "1:1.2"),
    ("1:1-2-3", "1:1-2.3"),
    ("1.0+~", "1.0+"),
    ("1.0~+", "1.0~"),
];

/// Marsaglia's xorshift64: deterministic and dependency-free.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const DIGITS: &[&str] = &["0", "1", "2", "9", "10", "01", "00", "123"];
const PIECES: &[&str] = &[
    ".", ".", "~", "~", "+", "a", "b", "z", "A", "rc", "~rc", "+b", ".0", "0", "1", "10", "~~",
];

fn random_part(rng: &mut XorShift, pieces: usize) -> String {
    let mut part = rng.pick(DIGITS).to_string();
    for _ in 0..rng.below(pieces + 1) {
        part.push_str(rng.pick(PIECES));
    }
    part
}

fn random_version(rng: &mut XorShift) -> String {
    let mut version = String::new();
    if rng.below(5) == 0 {
        version.push_str(rng.pick(&["0:", "1:", "2:", "10:", "01:"]));
    }
    version.push_str(&random_part(rng, 4));
    if rng.below(3) > 0 {
        if rng.below(6) == 0 {
            version.push('-');
            version.push_str(&random_part(rng, 1));
        }
        version.push('-');
        version.push_str(&random_part(rng, 2));
    }
    version
}

/// A version close to `v`, so that equal and nearly equal pairs are common.
fn nearby(rng: &mut XorShift, v: &str) -> String {
    match rng.below(7) {
        0 => format!("{v}{}", rng.pick(PIECES)),
        1 => format!("0:{v}").replacen("0:0:", "0:", 1),
        2 if !v.contains('-') => format!("{v}-0"),
        3 => v.replacen('0', "00", 1),
        4 => v.replacen('~', "", 1),
        5 => v.replacen('.', "+", 1),
        _ => random_version(rng),
    }
}

fn pairs() -> Vec<(String, String)> {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut pairs: Vec<_> = TRICKY
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    for _ in 0..300 {
        let a = random_version(&mut rng);
        let b = if rng.below(2) == 0 {
            nearby(&mut rng, &a)
        } else {
            random_version(&mut rng)
        };
        pairs.push((a, b));
    }
    pairs
}

/// Shell-quotes `s` for `sh -c`.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Runs `dpkg --compare-versions a op b` for each triple in one `sh` and returns, per triple,
/// `Some(true/false)`, or `None` when dpkg warned or failed (the version is not one it
/// accepts cleanly).
fn dpkg_checks(checks: &[(&str, &str, &str)]) -> Vec<Option<bool>> {
    let script: String = checks
        .iter()
        .map(|(a, op, b)| {
            format!(
                "o=$(dpkg --compare-versions {} {op} {} 2>&1); echo \"$? ${{#o}}\"\n",
                quote(a),
                quote(b)
            )
        })
        .collect();
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .output()
        .expect("run sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let results: Vec<_> = stdout
        .lines()
        .map(|line| match line.split_once(' ') {
            Some(("0", "0")) => Some(true),
            Some(("1", "0")) => Some(false),
            _ => None,
        })
        .collect();
    assert_eq!(results.len(), checks.len(), "dpkg batch output: {stdout}");
    results
}

fn op_name(ordering: Ordering) -> &'static str {
    match ordering {
        Ordering::Less => "lt",
        Ordering::Equal => "eq",
        Ordering::Greater => "gt",
    }
}

#[test]
fn ordering_matches_dpkg() {
    if !common::have_tool("dpkg") {
        return;
    }
    let pairs = pairs();
    // One dpkg call per pair: does dpkg agree with the ordering we computed? lt, eq and gt
    // exclude each other, so a "yes" means dpkg's ordering is ours. Pairs we cannot parse
    // are asked `lt`, only to learn whether dpkg accepts them.
    let ours: Vec<_> = pairs.iter().map(|(a, b)| compare(a, b).ok()).collect();
    let checks: Vec<_> = pairs
        .iter()
        .zip(&ours)
        .map(|((a, b), ours)| (a.as_str(), ours.map_or("lt", op_name), b.as_str()))
        .collect();
    let answers: Vec<_> = checks.chunks(100).flat_map(dpkg_checks).collect();

    let mut compared = 0;
    let mut failures = Vec::new();
    for ((a, b), (ours, answer)) in pairs.iter().zip(ours.iter().zip(answers)) {
        match (ours, answer) {
            (_, None) => {} // dpkg rejects or warns about one of them: not a valid pair
            (None, Some(_)) => failures.push(format!("we reject {a:?} or {b:?}, dpkg not")),
            (Some(_), Some(true)) => compared += 1,
            (Some(ours), Some(false)) => {
                let dpkg = [Ordering::Less, Ordering::Equal, Ordering::Greater]
                    .into_iter()
                    .find(|o| dpkg_checks(&[(a, op_name(*o), b)]) == [Some(true)]);
                failures.push(format!("{a:?} vs {b:?}: ours {ours:?}, dpkg {dpkg:?}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "disagreements:\n{}",
        failures.join("\n")
    );
    assert!(compared >= 200, "only {compared} valid pairs compared");
    eprintln!(
        "{compared} of {} pairs compared, all agree with dpkg",
        pairs.len()
    );
}

const RELATION_FIELDS: &[&str] = &[
    "Depends",
    "Pre-Depends",
    "Recommends",
    "Suggests",
    "Enhances",
    "Provides",
    "Conflicts",
    "Replaces",
    "Breaks",
];

#[test]
fn real_feeds_parse() {
    let Some(real) = common::real_dir() else {
        return;
    };
    let mut files: Vec<_> = std::fs::read_dir(real.join("feeds"))
        .expect("read shared/real/feeds")
        .map(|entry| entry.expect("feeds entry").path().join("Packages"))
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    let (mut versions, mut relations) = (0, 0);
    for path in &files {
        let text = std::fs::read_to_string(path).expect("read Packages");
        // (field, value) with continuation lines folded in.
        let mut fields: Vec<(String, String)> = Vec::new();
        for line in text.lines() {
            if line.starts_with([' ', '\t']) {
                if let Some((_, value)) = fields.last_mut() {
                    value.push('\n');
                    value.push_str(line);
                }
            } else if let Some((name, value)) = line.split_once(':') {
                fields.push((name.to_string(), value.trim_start().to_string()));
            }
        }
        for (name, value) in &fields {
            let at = path.display();
            if name == "Version" {
                let version = Version::parse(value)
                    .unwrap_or_else(|e| panic!("{at}: Version {value:?}: {e}"));
                assert_eq!(version.to_string(), value.trim());
                versions += 1;
            } else if RELATION_FIELDS.contains(&name.as_str()) {
                let parsed = parse_relations(value)
                    .unwrap_or_else(|e| panic!("{at}: {name} {value:?}: {e}"));
                let canonical = format_relations(&parsed);
                assert_eq!(
                    parse_relations(&canonical).ok(),
                    Some(parsed),
                    "{canonical}"
                );
                relations += 1;
            }
        }
    }
    assert!(versions > 0, "no Version fields in {files:?}");
    eprintln!(
        "{} files: {versions} versions and {relations} relation fields parse",
        files.len()
    );
}
