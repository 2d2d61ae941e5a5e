//! Dates: `feeds::release::parse_date` over arbitrary text (invalid UTF-8 replaced by U+FFFD,
//! so every input reaches the parser), and `format_date` of the input's first 8 bytes.
//!
//! Asserts:
//! - an accepted date is an instant of 1970..=9999 (UTC) that prints (`format_date`) as a date
//!   that parses to the same instant;
//! - a date with a `Day, ` prefix or without one names the same instant;
//! - `format_date` of any `i64` prints a date that parses back exactly when it is in range.
#![no_main]

use feeds::release::{format_date, parse_date};
use libfuzzer_sys::fuzz_target;

/// 9999-12-31 23:59:59 UTC, the last instant `parse_date` accepts.
const MAX_DATE: i64 = 253_402_300_799;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Some(t) = parse_date(&text) {
        assert!(
            (0..=MAX_DATE).contains(&t),
            "{text:?} = {t} is out of range"
        );
        let shown = format_date(t);
        assert_eq!(
            parse_date(&shown),
            Some(t),
            "{text:?} = {t} prints as {shown:?}"
        );
        if let Some((_, rest)) = text.split_once(',') {
            assert_eq!(parse_date(rest), Some(t), "{text:?} without its day name");
        }
    }
    let mut bytes = [0u8; 8];
    let n = data.len().min(8);
    bytes[..n].copy_from_slice(&data[..n]);
    let t = i64::from_le_bytes(bytes);
    let shown = format_date(t);
    let expected = (0..=MAX_DATE).contains(&t).then_some(t);
    assert_eq!(parse_date(&shown), expected, "{t} prints as {shown:?}");
});
