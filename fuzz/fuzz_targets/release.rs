//! `Release` files: `Release::parse` over arbitrary text, and `parse_date` over each line.
//!
//! Asserts:
//! - a parsed `Release` writes back (`to_text`) to text that parses to an equal `Release`;
//! - a date `parse_date` accepts prints (`format_date`) as a date that parses to the same
//!   instant.
#![no_main]

use feeds::release::{Release, format_date, parse_date};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(release) = Release::parse(text) {
        let written = release.to_text();
        match Release::parse(&written) {
            Ok(again) => assert_eq!(
                again, release,
                "re-parsed Release differs; text {written:?}"
            ),
            Err(e) => panic!("written Release does not re-parse: {e}; text {written:?}"),
        }
    }
    for line in text.lines().take(16) {
        let value = line.split_once(':').map_or(
            line,
            |(name, v)| {
                if name.contains(' ') { line } else { v }
            },
        );
        if let Some(t) = parse_date(value) {
            let shown = format_date(t);
            assert_eq!(
                parse_date(&shown),
                Some(t),
                "date {value:?} = {t} prints as {shown:?}"
            );
        }
    }
});
