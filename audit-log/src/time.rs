//! Times of records: RFC 3339 in UTC to the second (`2026-12-05T00:01:02Z`), and the times a
//! reader may filter by (`2026-12-05`, or RFC 3339 with any offset).

/// A time given to filter records by that is neither `YYYY-MM-DD` nor RFC 3339.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid time {text:?}: expected a date (2026-12-05) or an RFC 3339 time (2026-12-05T00:01:02Z)"
)]
pub struct TimeError {
    /// The text as given.
    pub text: String,
}

/// Now, in seconds since 1970-01-01 UTC (0 for a clock set before that).
pub(crate) use feeds::release::unix_now as now;
use feeds::release::{civil_from_days, days_from_civil, days_in_month};

/// `unix` (seconds since 1970-01-01 UTC) as RFC 3339 in UTC: `2026-12-05T00:01:02Z`. Times
/// outside the years 0000..=9999 are clamped to them.
pub fn format_rfc3339(unix: i64) -> String {
    // 0000-01-01T00:00:00Z ..= 9999-12-31T23:59:59Z
    let unix = unix.clamp(-62_167_219_200, 253_402_300_799);
    let (days, secs) = (unix.div_euclid(86_400), unix.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// `n` ASCII digits at the start of `s`, and the rest.
fn digits(s: &str, n: usize) -> Option<(i64, &str)> {
    let head = s.get(..n)?;
    if !head.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((head.parse().ok()?, &s[n..]))
}

/// `YYYY-MM-DD` at the start of `s`: its day number and the rest.
fn date(s: &str) -> Option<(i64, &str)> {
    let (y, s) = digits(s, 4)?;
    let (m, s) = digits(s.strip_prefix('-')?, 2)?;
    let (d, s) = digits(s.strip_prefix('-')?, 2)?;
    if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return None;
    }
    Some((days_from_civil(y, m, d), s))
}

/// An RFC 3339 time (`2026-12-05T00:01:02Z`, `2026-12-05t01:01:02.5+01:00`, a space for the
/// `T`) in seconds since 1970-01-01 UTC; fractions of a second are dropped. `None` for
/// anything else.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let (days, s) = date(s)?;
    let s = s.strip_prefix(['T', 't', ' '])?;
    let (h, s) = digits(s, 2)?;
    let (mi, s) = digits(s.strip_prefix(':')?, 2)?;
    let (sec, mut s) = digits(s.strip_prefix(':')?, 2)?;
    // 60: a leap second, counted as the next second's start.
    if h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    if let Some(frac) = s.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        s = &frac[n..];
    }
    let offset = match s {
        "Z" | "z" => 0,
        _ => {
            let sign = match s.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (oh, rest) = digits(&s[1..], 2)?;
            let (om, rest) = digits(rest.strip_prefix(':')?, 2)?;
            if !rest.is_empty() || oh > 23 || om > 59 {
                return None;
            }
            sign * (oh * 3600 + om * 60)
        }
    };
    Some(days * 86_400 + h * 3600 + mi * 60 + sec - offset)
}

/// A time to show records from: a date `YYYY-MM-DD` (its midnight UTC) or an RFC 3339 time,
/// in seconds since 1970-01-01 UTC.
pub fn parse_since(text: &str) -> Result<i64, TimeError> {
    let t = text.trim();
    let parsed = match date(t) {
        Some((days, "")) => Some(days * 86_400),
        _ => parse_rfc3339(t),
    };
    parsed.ok_or_else(|| TimeError { text: text.into() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(1_796_428_862), "2026-12-05T00:01:02Z");
        assert_eq!(format_rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59Z");
        assert_eq!(format_rfc3339(i64::MAX), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn parses_dates_and_rfc3339_with_offsets() {
        assert_eq!(parse_since("2026-12-05"), Ok(1_796_428_800));
        assert_eq!(parse_since("2026-12-05T00:01:02Z"), Ok(1_796_428_862));
        assert_eq!(parse_since(" 2026-12-05 00:01:02z "), Ok(1_796_428_862));
        assert_eq!(
            parse_since("2026-12-05T01:01:02.999+01:00"),
            Ok(1_796_428_862)
        );
        assert_eq!(parse_since("2026-12-04T23:31:02-00:30"), Ok(1_796_428_862));
        for bad in [
            "",
            "2026-12",
            "2026-13-01",
            "2026-02-29",
            "2026-12-05T24:00:00Z",
            "2026-12-05T00:01:02",
            "2026-12-05T00:01:02.Z",
            "2026-12-05T00:01:02+0100",
            "2026-12-05X",
            "yesterday",
            "２０２６-12-05",
        ] {
            let err = parse_since(bad).unwrap_err();
            assert_eq!(err.text, bad);
            assert!(err.to_string().starts_with("invalid time"), "{err}");
        }
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(t in -62_167_219_200i64..=253_402_300_799) {
            prop_assert_eq!(parse_rfc3339(&format_rfc3339(t)), Some(t));
        }
    }
}
