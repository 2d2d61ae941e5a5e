//! Debian/opkg package versions, `[epoch:]upstream[-revision]`: parsing (as dpkg's
//! `parseversion`, but lenient like opkg about a non-digit first character) and ordering
//! (exactly dpkg's `verrevcmp`).
//!
//! A [`Version`] keeps the text it was parsed from (surrounding whitespace trimmed), so
//! [`Display`](fmt::Display) round-trips it. Equality, ordering and hashing follow dpkg, so
//! `1.0`, `0:1.0` and `1.0-0` are all equal even though they print differently.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

/// Why a version string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid version {text:?}: {kind}")]
pub struct VersionError {
    /// The offending text, as given.
    pub text: String,
    /// What is wrong with it.
    pub kind: VersionErrorKind,
}

/// What is wrong with a version string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionErrorKind {
    #[error("version string is empty")]
    Empty,
    #[error("version string has embedded spaces")]
    EmbeddedSpace,
    #[error("epoch in version is empty")]
    EmptyEpoch,
    #[error("epoch in version is not a number")]
    EpochNotNumber,
    #[error("epoch in version is too big (more than 2147483647)")]
    EpochTooBig,
    #[error("nothing after colon in version number")]
    NothingAfterColon,
    #[error("version number is empty")]
    EmptyUpstream,
    #[error("revision number is empty")]
    EmptyRevision,
    #[error("invalid character {0:?} in version number")]
    BadUpstreamChar(char),
    #[error("invalid character {0:?} in revision number")]
    BadRevisionChar(char),
}

/// A parsed Debian/opkg version. Compare with `<`, `==`, `cmp` (dpkg order).
///
/// Held as the trimmed text with the places of its parts: one allocation per version (a
/// resolver or an index holds one for each of tens of thousands of packages).
#[derive(Debug, Clone)]
pub struct Version {
    text: Box<str>,
    epoch: u32,
    /// `text[upstream.0..upstream.1]` is the upstream part; the revision is what follows the
    /// `-` after it, if any.
    upstream: (usize, usize),
}

impl Version {
    /// Parses `[epoch:]upstream[-revision]` as dpkg does: surrounding whitespace is trimmed;
    /// the epoch is everything before the first `:` and must be digits no larger than
    /// `i32::MAX`; the revision is everything after the last `-`. Upstream may use
    /// `[A-Za-z0-9.+~:-]` and revision `[A-Za-z0-9.+~]`. Unlike strict dpkg, an upstream
    /// that does not start with a digit (`v8.15.0`) is accepted, as opkg does.
    pub fn parse(text: &str) -> Result<Version, VersionError> {
        let err = |kind| VersionError {
            text: text.to_string(),
            kind,
        };
        let trimmed = text.trim_matches(|c: char| c.is_ascii_whitespace());
        if trimmed.is_empty() {
            return Err(err(VersionErrorKind::Empty));
        }
        if trimmed.chars().any(|c| c.is_ascii_whitespace()) {
            return Err(err(VersionErrorKind::EmbeddedSpace));
        }
        let (epoch, rest) = match trimmed.split_once(':') {
            None => (0, trimmed),
            Some((epoch, rest)) => {
                let epoch = parse_epoch(epoch).map_err(err)?;
                if rest.is_empty() {
                    return Err(err(VersionErrorKind::NothingAfterColon));
                }
                (epoch, rest)
            }
        };
        let (upstream, revision) = match rest.rsplit_once('-') {
            None => (rest, ""),
            Some((_, "")) => return Err(err(VersionErrorKind::EmptyRevision)),
            Some(split) => split,
        };
        if upstream.is_empty() {
            return Err(err(VersionErrorKind::EmptyUpstream));
        }
        let allowed = |c: char, extra: &str| c.is_ascii_alphanumeric() || extra.contains(c);
        if let Some(c) = upstream.chars().find(|&c| !allowed(c, ".+~:-")) {
            return Err(err(VersionErrorKind::BadUpstreamChar(c)));
        }
        if let Some(c) = revision.chars().find(|&c| !allowed(c, ".+~")) {
            return Err(err(VersionErrorKind::BadRevisionChar(c)));
        }
        // `upstream` is a part of `rest`, itself the end of `trimmed`.
        let start = trimmed.len() - rest.len();
        Ok(Version {
            text: trimmed.into(),
            epoch,
            upstream: (start, start + upstream.len()),
        })
    }

    /// The epoch; 0 when none was written.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The upstream part (between the epoch and the last `-`).
    pub fn upstream(&self) -> &str {
        &self.text[self.upstream.0..self.upstream.1]
    }

    /// The revision (after the last `-`); empty when none was written.
    pub fn revision(&self) -> &str {
        self.text.get(self.upstream.1 + 1..).unwrap_or("")
    }

    /// The text this version was parsed from, trimmed.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// Digits only (dpkg also lets `strtol` take a sign; we do not), at most `i32::MAX`.
fn parse_epoch(epoch: &str) -> Result<u32, VersionErrorKind> {
    if epoch.is_empty() {
        return Err(VersionErrorKind::EmptyEpoch);
    }
    if !epoch.bytes().all(|b| b.is_ascii_digit()) {
        return Err(VersionErrorKind::EpochNotNumber);
    }
    let digits = epoch.trim_start_matches('0');
    if digits.is_empty() {
        return Ok(0);
    }
    match digits.parse::<u32>() {
        Ok(n) if n <= i32::MAX.unsigned_abs() => Ok(n),
        _ => Err(VersionErrorKind::EpochTooBig),
    }
}

/// Compares two texts [`Version::parse`] accepted (as [`Version::as_str`] gives them) in dpkg
/// order, as their [`Version`]s compare, without making them again: for tables that keep
/// many versions as text (a resolver's universe holds one per package). On texts `parse`
/// refuses the order is unspecified, but still total.
pub fn cmp_accepted(a: &str, b: &str) -> Ordering {
    let (ea, ua, ra) = parts_of_accepted(a);
    let (eb, ub, rb) = parts_of_accepted(b);
    ea.cmp(&eb)
        .then_with(|| verrevcmp(ua, ub))
        .then_with(|| verrevcmp(ra, rb))
}

/// The epoch, upstream and revision of a text [`Version::parse`] accepted, split as it splits
/// them (an epoch that is not a number, in a text it would refuse, counts as 0).
fn parts_of_accepted(text: &str) -> (u32, &str, &str) {
    let (epoch, rest) = match text.split_once(':') {
        None => (0, text),
        Some((epoch, rest)) => (parse_epoch(epoch).unwrap_or(0), rest),
    };
    let (upstream, revision) = rest.rsplit_once('-').unwrap_or((rest, ""));
    (epoch, upstream, revision)
}

/// Compares two version strings in dpkg order.
pub fn compare(a: &str, b: &str) -> Result<Ordering, VersionError> {
    Ok(Version::parse(a)?.cmp(&Version::parse(b)?))
}

impl FromStr for Version {
    type Err = VersionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Version::parse(s)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| verrevcmp(self.upstream(), other.upstream()))
            .then_with(|| verrevcmp(self.revision(), other.revision()))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

impl Hash for Version {
    /// Hashes the normalised segments, so versions dpkg calls equal hash alike.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.epoch.hash(state);
        for part in [self.upstream(), self.revision()] {
            let mut segments: Vec<_> = Segments(part).collect();
            while segments.last() == Some(&("", "")) {
                segments.pop();
            }
            segments.hash(state);
        }
    }
}

/// Splits a version part into (non-digit run, digit run without leading zeros) pairs, the
/// units `verrevcmp` compares. Either run may be empty.
struct Segments<'a>(&'a str);

impl<'a> Iterator for Segments<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let split = |s: &'a str, digits: bool| {
            let end = s
                .find(|c: char| c.is_ascii_digit() != digits)
                .unwrap_or(s.len());
            s.split_at(end)
        };
        let (text, rest) = split(self.0, false);
        let (number, rest) = split(rest, true);
        self.0 = rest;
        Some((text, number.trim_start_matches('0')))
    }
}

/// dpkg's `verrevcmp`: alternate non-digit runs (compared by [`order`], the end of a run
/// counting as 0) and digit runs (compared numerically, any length).
fn verrevcmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (Segments(a), Segments(b));
    loop {
        let (x, y) = match (a.next(), b.next()) {
            (None, None) => return Ordering::Equal,
            (x, y) => (x.unwrap_or(("", "")), y.unwrap_or(("", ""))),
        };
        let len = x.0.len().max(y.0.len());
        let text = (0..len)
            .map(|i| order(x.0.as_bytes().get(i)).cmp(&order(y.0.as_bytes().get(i))))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal);
        let number = x.1.len().cmp(&y.1.len()).then_with(|| x.1.cmp(y.1));
        match text.then(number) {
            Ordering::Equal => {}
            other => return other,
        }
    }
}

/// dpkg's `order`: `~` before the end of the run, the end before letters, letters before
/// everything else.
fn order(c: Option<&u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(&c) if c.is_ascii_digit() => 0,
        Some(&c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(&c) => i32::from(c) + 256,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    fn v(s: &str) -> Version {
        match Version::parse(s) {
            Ok(v) => v,
            Err(e) => panic!("{s:?} should parse: {e}"),
        }
    }

    fn kind(s: &str) -> VersionErrorKind {
        match Version::parse(s) {
            Ok(v) => panic!("{s:?} should fail, got {v:?}"),
            Err(e) => {
                assert_eq!(e.text, s);
                e.kind
            }
        }
    }

    #[test]
    fn parses_parts() {
        let x = v("  2:1.2-3:4-r5\n");
        assert_eq!(
            (x.epoch(), x.upstream(), x.revision()),
            (2, "1.2-3:4", "r5")
        );
        assert_eq!(x.to_string(), "2:1.2-3:4-r5");
        let y = v("1.0");
        assert_eq!((y.epoch(), y.upstream(), y.revision()), (0, "1.0", ""));
        assert_eq!(v("0002147483647:1").epoch(), i32::MAX as u32);
        assert_eq!(v("000:1").epoch(), 0);
    }

    #[test]
    fn parses_real_feed_versions() {
        for s in [
            "1.2.3-r4",
            "2024.03.18~abc-1",
            "5.4.188-1",
            "v8.15.0-1",
            "5.3.4-2024-06-25T13-20-6665bfaa-r1",
            "1.28.15-r2",
            "9999.0001",
            "5.10.138-1-789565457d2f287975d7d943ddbe4eeb",
        ] {
            assert_eq!(v(s).to_string(), s);
        }
        let x = v("5.3.4-2024-06-25T13-20-6665bfaa-r1");
        assert_eq!(x.upstream(), "5.3.4-2024-06-25T13-20-6665bfaa");
        assert_eq!(x.revision(), "r1");
    }

    #[test]
    fn rejects_bad_versions() {
        use VersionErrorKind::*;
        assert_eq!(kind(""), Empty);
        assert_eq!(kind(" \t\n"), Empty);
        assert_eq!(kind("1.0 2"), EmbeddedSpace);
        assert_eq!(kind(":1.0"), EmptyEpoch);
        assert_eq!(kind("a:1.0"), EpochNotNumber);
        assert_eq!(kind("-1:1.0"), EpochNotNumber);
        assert_eq!(kind("2147483648:1"), EpochTooBig);
        assert_eq!(kind("99999999999999999999999:1"), EpochTooBig);
        assert_eq!(kind("1:"), NothingAfterColon);
        assert_eq!(kind("1.0-"), EmptyRevision);
        assert_eq!(kind("-1"), EmptyUpstream);
        assert_eq!(kind("1:-1"), EmptyUpstream);
        assert_eq!(kind("1_0"), BadUpstreamChar('_'));
        assert_eq!(kind("1.0-r_1"), BadRevisionChar('_'));
        assert_eq!(kind("1.0-é"), BadRevisionChar('é'));
        let e = Version::parse("1:").err();
        assert_eq!(
            e.map(|e| e.to_string()).as_deref(),
            Some("invalid version \"1:\": nothing after colon in version number")
        );
    }

    #[test]
    fn orders_like_dpkg() {
        let ascending = [
            "~~",
            "~~a",
            "~",
            "0",
            "1.0~rc1",
            "1.0",
            "1.0a",
            "1.0+",
            "1.0.0",
            "1.0.1",
            "1.2.3-r4",
            "1.2.3-r10",
            "2.0",
            "10",
            "0001:0.1",
            "1:2.0",
        ];
        for (i, a) in ascending.iter().enumerate() {
            for (j, b) in ascending.iter().enumerate() {
                assert_eq!(v(a).cmp(&v(b)), i.cmp(&j), "{a} vs {b}");
            }
        }
        assert!(v("2024.03.18~abc-1") < v("2024.03.18-1"));
        assert!(v("1:0.1") > v("2.0"));
        assert!(v("1.0-1") > v("1.0"));
        assert!(v("1.0-~") < v("1.0"));
        assert!(v("a") > v("~"));
        assert!(v("1.0a") < v("1.0.0") && v("1.0a") > v("1.0"));
    }

    #[test]
    fn equal_forms_are_equal_and_hash_alike() {
        let same = [
            ["1.0", "0:1.0"],
            ["1.0", "1.0-0"],
            ["1.0-0", "1.0-00"],
            ["1.01", "1.1"],
            ["a", "a0"],
            ["1.0-r", "1.0-r000"],
        ];
        for [a, b] in same {
            assert_eq!(v(a), v(b), "{a} == {b}");
            let set: HashSet<Version> = [v(a), v(b)].into();
            assert_eq!(set.len(), 1, "{a} and {b} hash alike");
        }
        assert_ne!(v("1.0"), v("1.0.0"));
        assert_ne!(v("0a"), v("a"));
    }

    #[test]
    fn long_digit_runs_compare_numerically() {
        let big = "123456789012345678901234567890";
        assert!(v(&format!("{big}1")) > v(&format!("0000{big}")));
        assert!(v(&format!("1.{big}")) > v(&format!("1.{}", &big[1..])));
        assert_eq!(v(&format!("000{big}")), v(big));
    }

    #[test]
    fn compare_helper() {
        assert_eq!(compare("1.0", "1.1"), Ok(Ordering::Less));
        assert_eq!(compare("1.0", "1.0-0"), Ok(Ordering::Equal));
        assert_eq!(cmp_accepted("1.0", "0:1.0-0"), Ordering::Equal);
        assert_eq!(cmp_accepted("1:0.9", "2.0-r1"), Ordering::Greater);
        assert_eq!(cmp_accepted("1.0~rc1-1", "1.0-1"), Ordering::Less);
        assert!(compare("1.0", "x y").is_err());
        assert_eq!("1.0".parse::<Version>().map(|v| v.epoch()), Ok(0));
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in any::<String>()) {
            let _ = Version::parse(&s);
        }

        #[test]
        fn display_round_trips(s in "[0-9a-z.+~:_ -]{0,16}") {
            if let Ok(x) = Version::parse(&s) {
                prop_assert_eq!(Version::parse(&x.to_string()).ok(), Some(x));
            }
        }

        #[test]
        fn compare_is_a_total_order(
            a in "([0-9]:)?[0-9a~+.]{1,6}(-[0-9a~+.]{1,4})?",
            b in "([0-9]:)?[0-9a~+.]{1,6}(-[0-9a~+.]{1,4})?",
            c in "([0-9]:)?[0-9a~+.]{1,6}(-[0-9a~+.]{1,4})?",
        ) {
            let (a, b, c) = (v(&a), v(&b), v(&c));
            prop_assert_eq!(cmp_accepted(a.as_str(), b.as_str()), a.cmp(&b));
            prop_assert_eq!(cmp_accepted(b.as_str(), c.as_str()), b.cmp(&c));
            prop_assert_eq!(a.cmp(&b), b.cmp(&a).reverse());
            prop_assert_eq!(a.cmp(&a), Ordering::Equal);
            if a <= b && b <= c {
                prop_assert!(a <= c, "{} <= {} <= {}", a, b, c);
            }
            if a == b {
                prop_assert_eq!(a.cmp(&c), b.cmp(&c));
                let set: HashSet<&Version> = [&a, &b].into();
                prop_assert_eq!(set.len(), 1);
            }
        }
    }
}
