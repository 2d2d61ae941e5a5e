//! prokit's client configuration (opkg.conf syntax): `prokit::config::Config::parse` over
//! arbitrary UTF-8 text.
//!
//! Asserts, when the text parses:
//! - `to_text` re-parses (`Config::parse`) to an equal `Config`, and writing that again gives
//!   the same text (a fixed point);
//! - `option`/`flag`/`db_dir` answer without panicking and `flag` agrees with `option`.
//!
//! (This target found `src a /`, whose URL trimmed to nothing and did not round-trip; the
//! parser now refuses it.)
//!
//! Seeds: `seed.sh` writes a few opkg.conf files (OpenWrt's default, a Yocto-style one with
//! `option db_dir`, customfeeds with comments and blank lines).
#![no_main]

use libfuzzer_sys::fuzz_target;
use prokit::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(c) = Config::parse(text, "fuzz") else {
        return;
    };
    for (name, value) in &c.options {
        assert_eq!(c.option(name), Some(value.as_str()));
        assert_eq!(c.flag(name), Some(value != "0"));
    }
    let _ = c.db_dir();

    let written = c.to_text();
    match Config::parse(&written, "again") {
        Ok(again) => {
            assert_eq!(again, c, "re-parsed config differs; text {written:?}");
            assert_eq!(again.to_text(), written, "to_text is not a fixed point");
        }
        Err(e) => panic!("written config does not re-parse: {e}; text {written:?}"),
    }
});
