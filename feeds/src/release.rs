//! The feed `Release` file: apt's flat-repository form, with `Date`, `Valid-Until` and the
//! SHA-256 and size of each index file. It is what clients check for freshness and rollback.
//!
//! ```text
//! Origin: example
//! Label: example
//! Date: Sun, 22 Nov 2026 02:40:00 UTC
//! Valid-Until: Sun, 29 Nov 2026 02:40:00 UTC
//! Architectures: all x86_64
//! SHA256:
//!  <hex> <size> Packages
//! ```
//! Dates are RFC 2822 in UTC.

use crate::control::{ControlError, Paragraph};

/// What is wrong with a `Release` file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReleaseError {
    #[error("{0}")]
    Syntax(#[from] ControlError),
    #[error("missing {0} field")]
    MissingField(&'static str),
    #[error("bad date in {field}: {value:?} (expected e.g. \"Sun, 22 Nov 2026 02:40:00 UTC\")")]
    BadDate { field: &'static str, value: String },
    #[error("SHA256 line {line}: {reason}: {text:?}")]
    BadHashLine {
        line: usize,
        reason: &'static str,
        text: String,
    },
    #[error("SHA256 lists {0} twice")]
    DuplicateFile(String),
    #[error("Valid-Until is before Date")]
    ValidUntilBeforeDate,
}

/// A file listed in the `SHA256` field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHash {
    /// Lower-case hex SHA-256.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// Path relative to the feed.
    pub name: String,
}

/// The fields of a Debian archive's `dists/<suite>/Release` that a flat feed's lacks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Archive {
    pub suite: String,
    pub codename: Option<String>,
    pub components: Vec<String>,
    /// `Acquire-By-Hash: yes`: every index is also at `…/by-hash/SHA256/<hash>`.
    pub acquire_by_hash: bool,
    /// `No-Support-for-Architecture-all: Packages`: each `binary-<arch>/Packages` lists the
    /// `Architecture: all` packages too, so apt need not fetch `binary-all`.
    pub all_in_arch_indexes: bool,
}

/// A parsed `Release` file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Release {
    pub origin: Option<String>,
    pub label: Option<String>,
    /// Seconds since the epoch (UTC).
    pub date: i64,
    /// Seconds since the epoch (UTC).
    pub valid_until: Option<i64>,
    pub architectures: Vec<String>,
    pub sha256: Vec<FileHash>,
    /// The archive fields, in a Debian layout's Release (`Suite` present).
    pub archive: Option<Archive>,
}

impl Release {
    /// The entry for `name`, if listed.
    pub fn file(&self, name: &str) -> Option<&FileHash> {
        self.sha256.iter().find(|f| f.name == name)
    }

    /// The text of the file.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        if let Some(o) = &self.origin {
            out.push_str(&format!("Origin: {o}\n"));
        }
        if let Some(l) = &self.label {
            out.push_str(&format!("Label: {l}\n"));
        }
        if let Some(a) = &self.archive {
            out.push_str(&format!("Suite: {}\n", a.suite));
            if let Some(c) = &a.codename {
                out.push_str(&format!("Codename: {c}\n"));
            }
        }
        out.push_str(&format!("Date: {}\n", format_date(self.date)));
        if let Some(v) = self.valid_until {
            out.push_str(&format!("Valid-Until: {}\n", format_date(v)));
        }
        if self.archive.as_ref().is_some_and(|a| a.acquire_by_hash) {
            out.push_str("Acquire-By-Hash: yes\n");
        }
        if !self.architectures.is_empty() {
            out.push_str(&format!(
                "Architectures: {}\n",
                self.architectures.join(" ")
            ));
        }
        if let Some(a) = &self.archive {
            if a.all_in_arch_indexes {
                out.push_str("No-Support-for-Architecture-all: Packages\n");
            }
            out.push_str(&format!("Components: {}\n", a.components.join(" ")));
        }
        out.push_str("SHA256:\n");
        for f in &self.sha256 {
            out.push_str(&format!(" {} {} {}\n", f.sha256, f.size, f.name));
        }
        out
    }

    /// Parses a `Release` file. `Date` and `SHA256` are required.
    pub fn parse(text: &str) -> Result<Release, ReleaseError> {
        let p = Paragraph::parse(text)?;
        let date_field = |field: &'static str| -> Result<Option<i64>, ReleaseError> {
            p.get(field)
                .map(|v| {
                    parse_date(v).ok_or_else(|| ReleaseError::BadDate {
                        field,
                        value: v.to_string(),
                    })
                })
                .transpose()
        };
        let date = date_field("Date")?.ok_or(ReleaseError::MissingField("Date"))?;
        let valid_until = date_field("Valid-Until")?;
        if valid_until.is_some_and(|v| v < date) {
            return Err(ReleaseError::ValidUntilBeforeDate);
        }
        let hashes = p
            .get("SHA256")
            .ok_or(ReleaseError::MissingField("SHA256"))?;
        let mut sha256: Vec<FileHash> = Vec::new();
        for (i, line) in hashes.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let bad = |reason| ReleaseError::BadHashLine {
                line: i + 1,
                reason,
                text: line.to_string(),
            };
            let parts: Vec<&str> = line.split_whitespace().collect();
            let [hash, size, name] = parts[..] else {
                return Err(bad("expected `<sha256> <size> <name>`"));
            };
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad("not a SHA-256"));
            }
            let size = size.parse().map_err(|_| bad("size is not a number"))?;
            if sha256.iter().any(|f| f.name == name) {
                return Err(ReleaseError::DuplicateFile(name.to_string()));
            }
            sha256.push(FileHash {
                sha256: hash.to_ascii_lowercase(),
                size,
                name: name.to_string(),
            });
        }
        Ok(Release {
            origin: p.get("Origin").map(str::to_string),
            label: p.get("Label").map(str::to_string),
            date,
            valid_until,
            architectures: p
                .get("Architectures")
                .map(|a| a.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default(),
            sha256,
            archive: p.get("Suite").map(|suite| Archive {
                suite: suite.to_string(),
                codename: p.get("Codename").map(str::to_string),
                components: p
                    .get("Components")
                    .map(|c| c.split_whitespace().map(str::to_string).collect())
                    .unwrap_or_default(),
                acquire_by_hash: p.get("Acquire-By-Hash") == Some("yes"),
                all_in_arch_indexes: p.get("No-Support-for-Architecture-all") == Some("Packages"),
            }),
        })
    }
}

const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm). The
/// workspace's one calendar: Release dates here, audit-log's RFC 3339 times.
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date `(year, month, day)` of a day count since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

/// The days of month `m` (1..=12) of year `y` in the proleptic Gregorian calendar.
pub fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Formats seconds since the epoch as RFC 2822 UTC: `Sun, 22 Nov 2026 02:40:00 UTC`.
pub fn format_date(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} UTC",
        DAYS[days.rem_euclid(7) as usize],
        d,
        MONTHS[(m - 1) as usize],
        y,
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Parses an RFC 2822 date (`[Day, ]DD Mon YYYY HH:MM[:SS] ZONE`, zone `UTC`, `GMT`, `Z` or
/// `±hhmm`) into seconds since the epoch. `None` when it is not one.
pub fn parse_date(text: &str) -> Option<i64> {
    let text = text.trim();
    let text = match text.split_once(',') {
        Some((day, rest)) if DAYS.contains(&day.trim()) => rest,
        Some(_) => return None,
        None => text,
    };
    let parts: Vec<&str> = text.split_whitespace().collect();
    let [d, mon, y, time, zone] = parts[..] else {
        return None;
    };
    let num = |s: &str, max_len: usize| -> Option<i64> {
        (!s.is_empty() && s.len() <= max_len && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let d = num(d, 2)?;
    let m = MONTHS.iter().position(|x| *x == mon)? as i64 + 1;
    let y = num(y, 4)?;
    let hms: Vec<&str> = time.split(':').collect();
    let (h, mi, s) = match hms[..] {
        [h, mi] => (num(h, 2)?, num(mi, 2)?, 0),
        [h, mi, s] => (num(h, 2)?, num(mi, 2)?, num(s, 2)?),
        _ => return None,
    };
    if y < 1970 || d < 1 || d > days_in_month(y, m) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let offset = match zone {
        "UTC" | "GMT" | "Z" | "UT" => 0,
        z => {
            // `±hhmm`, read as bytes: the zone is any text, and a string index into it may
            // fall inside a multi-byte character.
            let (sign, digits) = match z.strip_prefix('+') {
                Some(digits) => (1, digits),
                None => (-1, z.strip_prefix('-')?),
            };
            let &[h1, h2, m1, m2] = digits.as_bytes() else {
                return None;
            };
            let digit = |b: u8| b.is_ascii_digit().then(|| i64::from(b - b'0'));
            let hh = digit(h1)? * 10 + digit(h2)?;
            let mm = digit(m1)? * 10 + digit(m2)?;
            if mm > 59 {
                return None;
            }
            sign * (hh * 3600 + mm * 60)
        }
    };
    let t = days_from_civil(y, m, d) * 86_400 + h * 3600 + mi * 60 + s - offset;
    // Only instants that `format_date` writes back in the same form: 1970 to 9999, UTC.
    (0..=MAX_DATE).contains(&t).then_some(t)
}

/// 9999-12-31 23:59:59 UTC, the last instant with a four-digit year.
const MAX_DATE: i64 = 253_402_300_799;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SHA: &str = "063d3536d4dcfa8589a3fc74c760b4a43ae91458783f26ffce1cfd92ad78f876";

    fn sample() -> Release {
        Release {
            archive: None,
            origin: Some("example".into()),
            label: Some("example".into()),
            date: 1_795_315_200, // Sun, 22 Nov 2026 02:40:00 UTC
            valid_until: Some(1_795_315_200 + 7 * 86_400),
            architectures: vec!["all".into(), "x86_64".into()],
            sha256: vec![
                FileHash {
                    sha256: SHA.into(),
                    size: 1234,
                    name: "Packages".into(),
                },
                FileHash {
                    sha256: SHA.into(),
                    size: 567,
                    name: "Packages.gz".into(),
                },
            ],
        }
    }

    #[test]
    fn writes_the_design_layout_and_parses_back() {
        let r = sample();
        let text = r.to_text();
        assert_eq!(
            text,
            format!(
                "Origin: example\nLabel: example\nDate: Sun, 22 Nov 2026 02:40:00 UTC\nValid-Until: Sun, 29 Nov 2026 02:40:00 UTC\nArchitectures: all x86_64\nSHA256:\n {SHA} 1234 Packages\n {SHA} 567 Packages.gz\n"
            )
        );
        assert_eq!(Release::parse(&text).unwrap(), r);
        assert_eq!(r.file("Packages.gz").unwrap().size, 567);
    }

    #[test]
    fn dates_match_gnu_date() {
        // Values from `date -u -d @N -R`.
        for (unix, text) in [
            (0, "Thu, 01 Jan 1970 00:00:00 UTC"),
            (951_782_400, "Tue, 29 Feb 2000 00:00:00 UTC"),
            (1_795_315_200, "Sun, 22 Nov 2026 02:40:00 UTC"),
            (4_102_444_799, "Thu, 31 Dec 2099 23:59:59 UTC"),
        ] {
            assert_eq!(format_date(unix), text);
            assert_eq!(parse_date(text), Some(unix));
        }
        assert_eq!(
            parse_date("22 Nov 2026 03:40:00 +0100"),
            Some(1_795_315_200)
        );
        assert_eq!(
            parse_date("Sun, 22 Nov 2026 02:40 GMT"),
            Some(1_795_315_200)
        );
        for bad in [
            "",
            "yesterday",
            "Sun, 31 Nov 2026 02:40:00 UTC",
            "Sun, 22 Nov 2026 24:40:00 UTC",
            "Sun, 22 Foo 2026 02:40:00 UTC",
            "Xyz, 22 Nov 2026 02:40:00 UTC",
            "Sun, 22 Nov 2026 02:40:00 CEST",
            "Sun, 29 Feb 2100 00:00:00 UTC",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_zone_that_is_not_ascii_is_refused_without_panicking() {
        // Issue 10: `&z[1..3]` cut the 5-byte zone "+0é0" inside the `é` and panicked, in
        // `archman check` and in keyring manifests before their signatures were checked.
        for zone in [
            "+0é0",
            "-0é0",
            "+é00",
            "-00é",
            "+€0",
            "+0€",
            "+00€",
            "+0ü",
            "+０１００",
        ] {
            let text = format!("Sun, 22 Nov 2026 02:40:00 {zone}");
            assert_eq!(parse_date(&text), None, "{text}");
            assert_eq!(parse_date(&format!("22 Nov 2026 02:40 {zone}")), None);
        }
        let release = sample().to_text().replace(
            "Date: Sun, 22 Nov 2026 02:40:00 UTC",
            "Date: 22 Nov 2026 02:40 +0é0",
        );
        assert_eq!(
            Release::parse(&release),
            Err(ReleaseError::BadDate {
                field: "Date",
                value: "22 Nov 2026 02:40 +0é0".into()
            })
        );
        // Zones that are `±hhmm` still work, and other five-character ones do not.
        assert_eq!(
            parse_date("Sun, 22 Nov 2026 02:40:00 -0000"),
            Some(1_795_315_200)
        );
        assert_eq!(
            parse_date("Sat, 21 Nov 2026 23:10:00 -0330"),
            Some(1_795_315_200)
        );
        for zone in [
            "+01", "+010", "+01000", "0100", "+01:0", "+0160", "++100", "+-100", "+1a00",
        ] {
            assert_eq!(
                parse_date(&format!("22 Nov 2026 02:40 {zone}")),
                None,
                "{zone}"
            );
        }
    }

    #[test]
    fn errors_name_the_problem() {
        let text = sample().to_text();
        let e = |t: &str| Release::parse(t).unwrap_err().to_string();
        assert_eq!(
            e(&text.replace("Date: Sun", "Date: Xun")),
            "bad date in Date: \"Xun, 22 Nov 2026 02:40:00 UTC\" (expected e.g. \"Sun, 22 Nov 2026 02:40:00 UTC\")"
        );
        assert_eq!(e("Origin: x\n"), "missing Date field");
        assert_eq!(
            e("Date: Sun, 22 Nov 2026 02:40:00 UTC\n"),
            "missing SHA256 field"
        );
        assert_eq!(
            e(&text.replace(" 1234 Packages", " 12x4 Packages")),
            format!("SHA256 line 1: size is not a number: \"{SHA} 12x4 Packages\"")
        );
        assert!(e(&text.replace(SHA, "abc")).contains("not a SHA-256"));
        assert_eq!(
            e(&text.replace("Packages.gz", "Packages")),
            "SHA256 lists Packages twice"
        );
        assert_eq!(
            e(&text.replace("Valid-Until: Sun, 29 Nov", "Valid-Until: Sun, 15 Nov")),
            "Valid-Until is before Date"
        );
    }

    /// Days since 1970-01-01, counted without `days_from_civil` (an oracle for the tests).
    fn days_since_epoch(y: i64, m: i64, d: i64) -> i64 {
        let leaps_before = |y: i64| (y - 1) / 4 - (y - 1) / 100 + (y - 1) / 400;
        let before_month: i64 = (1..m).map(|m| days_in_month(y, m)).sum();
        365 * (y - 1970) + leaps_before(y) - leaps_before(1970) + before_month + d - 1
    }

    /// A date in the forms RFC 2822 allows and `parse_date` reads, with the instant it names
    /// (which may be outside 1970..=9999 once the zone is applied).
    fn rfc2822_date() -> impl Strategy<Value = (String, i64)> {
        let zone = prop_oneof![
            prop_oneof![Just("UTC"), Just("GMT"), Just("UT"), Just("Z")]
                .prop_map(|z| (z.to_string(), 0)),
            (any::<bool>(), 0..=99i64, 0..=59i64).prop_map(|(east, hh, mm)| {
                let offset = hh * 3600 + mm * 60;
                let sign = if east { '+' } else { '-' };
                (
                    format!("{sign}{hh:02}{mm:02}"),
                    if east { offset } else { -offset },
                )
            }),
        ];
        let space = || "[ \t]{1,3}";
        (
            (1970..=9999i64, 1..=12i64, 1..=31i64),
            (0..=23i64, 0..=59i64, proptest::option::of(0..=60i64)),
            zone,
            (any::<bool>(), any::<bool>(), any::<bool>()),
            (
                space(),
                space(),
                space(),
                space(),
                "[ \t]{0,2}",
                "[ \t\n]{0,2}",
            ),
        )
            .prop_map(
                |((y, m, d), (h, mi, s), (zone, offset), (weekday, comma_space, pad), sp)| {
                    let d = d.min(days_in_month(y, m));
                    let days = days_since_epoch(y, m, d);
                    let mut text = sp.5.clone();
                    if weekday {
                        text.push_str(DAYS[days.rem_euclid(7) as usize]);
                        text.push(',');
                        text.push_str(if comma_space { &sp.0 } else { "" });
                    }
                    let day = if pad {
                        format!("{d:02}")
                    } else {
                        d.to_string()
                    };
                    let month = MONTHS[(m - 1) as usize];
                    let time = match s {
                        Some(s) => format!("{h:02}:{mi:02}:{s:02}"),
                        None => format!("{h:02}:{mi:02}"),
                    };
                    text.push_str(&format!(
                        "{day}{}{month}{}{y}{}{time}{}{zone}{}",
                        sp.1, sp.2, sp.3, sp.0, sp.4
                    ));
                    let t = days * 86_400 + h * 3600 + mi * 60 + s.unwrap_or(0) - offset;
                    (text, t)
                },
            )
    }

    proptest! {
        #[test]
        fn parse_date_never_panics(text in any::<String>()) {
            if let Some(t) = parse_date(&text) {
                prop_assert!((0..=MAX_DATE).contains(&t));
                prop_assert_eq!(parse_date(&format_date(t)), Some(t));
            }
        }

        #[test]
        fn parse_date_never_panics_on_near_dates(
            // mostly valid up to the zone, which the parser reads last
            date in "([A-Z][a-z]{2}, ?)?[0-2]?[0-9] (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [1-9][0-9]{3} [0-2][0-9]:[0-5][0-9](:[0-6][0-9])?",
            // digits and characters of one to four bytes in UTF-8
            zone in "[+-]?([0-9]|[\\x{80}-\\x{7ff}]|[\\x{800}-\\x{d7ff}]|[\\x{10000}-\\x{10ffff}]){0,4}",
        ) {
            let text = format!("{date} {zone}");
            if let Some(t) = parse_date(&text) {
                prop_assert_eq!(parse_date(&format_date(t)), Some(t));
            }
        }

        #[test]
        fn format_date_round_trips(t in 0..=MAX_DATE) {
            let text = format_date(t);
            prop_assert_eq!(parse_date(&text), Some(t), "{}", text);
            prop_assert_eq!(text.len(), "Sun, 22 Nov 2026 02:40:00 UTC".len());
        }

        #[test]
        fn format_date_of_any_instant_parses_back_only_in_range(t in any::<i64>()) {
            let text = format_date(t);
            let expected = (0..=MAX_DATE).contains(&t).then_some(t);
            prop_assert_eq!(parse_date(&text), expected, "{}", text);
        }

        #[test]
        fn parse_date_reads_rfc2822_variants((text, t) in rfc2822_date()) {
            let expected = (0..=MAX_DATE).contains(&t).then_some(t);
            prop_assert_eq!(parse_date(&text), expected, "{:?}", text);
        }

        #[test]
        fn parse_date_refuses_impossible_days(
            y in 1970..=9999i64,
            m in 1..=12i64,
            extra in 1..=4i64,
        ) {
            let d = days_in_month(y, m) + extra;
            let text = format!("{d} {} {y:04} 00:00 UTC", MONTHS[(m - 1) as usize]);
            prop_assert_eq!(parse_date(&text), None, "{}", text);
        }
    }
}

/// A `SOURCE_DATE_EPOCH` that is not a time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "SOURCE_DATE_EPOCH={value:?} is not a time: {reason} (expected a whole number of seconds since 1970-01-01 00:00:00 UTC, at most 253402300799, like 1700000000)"
)]
pub struct SourceDateEpochError {
    /// The value as set (lossily decoded when it is not UTF-8).
    pub value: String,
    pub reason: &'static str,
}

/// `SOURCE_DATE_EPOCH` from the environment (<https://reproducible-builds.org/specs/source-date-epoch/>):
/// `Ok(None)` when unset, the time when it is one, and an error naming the value otherwise.
/// The one reader of the variable for every tool here: a bad value is refused, never
/// ignored (ignoring it silently makes an output that is not reproducible). The rules are
/// GCC's: digits only (around them, white space is allowed), from 0 to 9999-12-31 23:59:59
/// UTC (the last instant [`format_date`] writes); empty is an error, not "unset".
pub fn source_date_epoch() -> Result<Option<i64>, SourceDateEpochError> {
    parse_source_date_epoch(std::env::var_os("SOURCE_DATE_EPOCH").as_deref())
}

/// [`source_date_epoch`] on a given value of the variable (`None`: unset).
pub fn parse_source_date_epoch(
    value: Option<&std::ffi::OsStr>,
) -> Result<Option<i64>, SourceDateEpochError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let err = |reason| SourceDateEpochError {
        value: value.to_string_lossy().into_owned(),
        reason,
    };
    let text = value
        .to_str()
        .ok_or_else(|| err("it is not valid UTF-8"))?
        .trim();
    if text.is_empty() {
        return Err(err("it is empty (unset it instead)"));
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err("it is not a whole number of seconds"));
    }
    match text.parse::<i64>() {
        Ok(t) if t <= 253_402_300_799 => Ok(Some(t)),
        _ => Err(err("it is after 9999-12-31 23:59:59 UTC")),
    }
}

/// The clock, in whole seconds since the epoch (0 for a clock set before 1970).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod source_date_epoch_tests {
    use super::*;
    use std::ffi::OsStr;

    fn parse(v: &str) -> Result<Option<i64>, SourceDateEpochError> {
        parse_source_date_epoch(Some(OsStr::new(v)))
    }

    #[test]
    fn good_values_and_unset() {
        assert_eq!(parse_source_date_epoch(None), Ok(None));
        assert_eq!(parse("0"), Ok(Some(0)));
        assert_eq!(parse("1795315200"), Ok(Some(1_795_315_200)));
        assert_eq!(parse(" 1795315200\n"), Ok(Some(1_795_315_200)));
        assert_eq!(parse("253402300799"), Ok(Some(253_402_300_799)));
        assert_eq!(
            format_date(parse("253402300799").unwrap().unwrap()),
            "Fri, 31 Dec 9999 23:59:59 UTC"
        );
    }

    #[test]
    fn bad_values_are_refused_naming_the_variable_the_value_and_the_reason() {
        for (value, reason) in [
            ("", "it is empty (unset it instead)"),
            ("  ", "it is empty (unset it instead)"),
            ("abc", "it is not a whole number of seconds"),
            ("-1", "it is not a whole number of seconds"),
            ("+5", "it is not a whole number of seconds"),
            ("1.5", "it is not a whole number of seconds"),
            ("17e8", "it is not a whole number of seconds"),
            ("0x10", "it is not a whole number of seconds"),
            ("١٢٣", "it is not a whole number of seconds"),
            ("253402300800", "it is after 9999-12-31 23:59:59 UTC"),
            (
                "99999999999999999999999",
                "it is after 9999-12-31 23:59:59 UTC",
            ),
        ] {
            let e = parse(value).unwrap_err();
            assert_eq!(e.reason, reason, "{value:?}");
            assert_eq!(e.value, value);
            assert!(
                e.to_string().starts_with(&format!(
                    "SOURCE_DATE_EPOCH={value:?} is not a time: {reason} ("
                )),
                "{e}"
            );
        }
        use std::os::unix::ffi::OsStrExt;
        let e = parse_source_date_epoch(Some(OsStr::from_bytes(b"17\xff"))).unwrap_err();
        assert_eq!(e.reason, "it is not valid UTF-8");
        assert_eq!(e.value, "17\u{fffd}");
    }

    #[test]
    fn the_clock_is_after_this_code_was_written() {
        assert!(unix_now() > 1_700_000_000);
    }
}
