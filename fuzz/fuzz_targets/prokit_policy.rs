//! prokit's install policy (`etc/prokit/policy.conf`): `prokit::policy::Policy::parse` over
//! arbitrary bytes.
//!
//! Asserts, when the bytes parse:
//! - judging a package that requests every permission gives one decision per rule kind at
//!   most, each naming a line of the file, and no decision at all exactly when the policy is
//!   empty;
//! - a package that requests nothing, vouched by no developer, is refused only by rules that
//!   name it (`deny packages`, `require developer-signature`, `allow keys`).
//!
//! Errors must name a line of the input (`policy.conf:N:`).
//!
//! Seeds: `seed.sh` writes a policy with every rule, and a few broken ones.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prokit::policy::Policy;
use prokit::review::{Review, Script, Special};

fn review(name: &str, everything: bool) -> Review {
    let special = |what: &str| Special {
        path: "/usr/bin/x".into(),
        what: what.into(),
        mode: "4755".into(),
    };
    Review {
        name: name.into(),
        version: "1".into(),
        architecture: "all".into(),
        feed: "f".into(),
        sha256: String::new(),
        feed_key: Some("0123456789abcdef".into()),
        developer_key: everything.then(|| "fedcba9876543210".into()),
        scripts: if everything {
            vec![Script {
                name: "postinst".into(),
                size: 1,
                text: "x".into(),
            }]
        } else {
            vec![]
        },
        setid: if everything {
            vec![special("setuid")]
        } else {
            vec![]
        },
        devices: if everything {
            vec![special("fifo")]
        } else {
            vec![]
        },
        outside: vec![],
        conffiles: vec![],
        takes_over: vec![],
        services: vec![],
        users: vec![],
        boot_scripts: vec![],
        trust_changes: vec![],
        files: 1,
        installed_size: 1,
    }
}

fuzz_target!(|data: &[u8]| {
    let lines = data.iter().filter(|&&b| b == b'\n').count() + 1;
    let p = match Policy::parse(data, "policy.conf") {
        Ok(p) => p,
        Err(e) => {
            let text = e.to_string();
            let n: usize = text
                .strip_prefix("policy.conf:")
                .and_then(|rest| rest.split(':').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("error names no line: {text}"));
            assert!(n >= 1 && n <= lines, "line {n} of {lines}: {text}");
            return;
        }
    };
    let all = p.judge(&review("pkg-all", true));
    assert_eq!(all.is_empty(), p.is_empty());
    assert!(
        all.len()
            <= 6 + all
                .iter()
                .filter(|d| d.rule.text.starts_with("deny packages"))
                .count()
    );
    for d in &all {
        assert!(d.rule.line >= 1 && d.rule.line <= lines, "{d:?}");
    }
    for d in p.judge(&review("plain", false)) {
        if !d.allowed {
            let t = &d.rule.text;
            assert!(
                t.starts_with("deny packages")
                    || t.starts_with("require developer-signature")
                    || t.starts_with("allow keys"),
                "a plain package refused by {t}"
            );
        }
    }
});
