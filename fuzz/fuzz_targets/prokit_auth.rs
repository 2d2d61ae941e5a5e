//! prokit's credentials files (apt's auth.conf format plus `token`): `prokit::auth::parse`
//! over arbitrary UTF-8 text, and the URL helpers over the same bytes.
//!
//! Asserts, when the text parses: every entry's machine re-parses from its text; looking up
//! URLs built from each machine never panics, and a credential is offered over plain http only
//! to a loopback host; the `Debug` form of the parsed entries never contains a secret (each
//! password or token of at least 4 characters is searched for). Never a panic on any input,
//! for `split_userinfo`, `decode_userinfo` and `shown_url` either (an earlier
//! percent-decoding sliced inside a multi-byte character).
#![no_main]

use libfuzzer_sys::fuzz_target;
use prokit::auth::{Credential, Credentials, Lookup, Machine, UrlParts, parse};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (_, raw) = prokit::auth::split_userinfo(text);
    if let Some(raw) = raw {
        let _ = prokit::auth::decode_userinfo(&raw);
    }
    let _ = prokit::auth::shown_url(text);
    let _ = UrlParts::parse(text);
    let Ok(entries) = parse(text, "fuzz") else {
        return;
    };
    let shown = format!("{entries:?}");
    for e in &entries {
        assert!(Machine::parse(&e.machine.text).is_some());
        let secret = match &e.credential {
            Credential::Basic { password, .. } => password.expose(),
            Credential::Bearer { token } => token.expose(),
        };
        if secret.len() >= 4 {
            assert!(!shown.contains(secret), "a secret in Debug");
        }
    }
    let creds = Credentials::from_entries(entries.clone());
    for e in &entries {
        for scheme in ["http", "https"] {
            let url = format!(
                "{scheme}://{}/Packages.gz",
                e.machine
                    .text
                    .trim_start_matches("https://")
                    .trim_start_matches("http://")
            );
            if let Lookup::Send(_) = creds.lookup(&url) {
                let parts = UrlParts::parse(&url).expect("a URL that matched parses");
                assert!(parts.https || parts.is_loopback(), "{url}");
            }
        }
    }
});
