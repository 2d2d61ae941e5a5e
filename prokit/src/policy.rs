//! Install policy: `<root>/etc/prokit/policy.conf`, classes of packages an administrator
//! never wants installed, judged on the permission review of the verified package file
//! (`review.rs`) before anything is unpacked (docs/trust-model.md §10).
//!
//! One rule a line; `#` starts a comment; blank lines are ignored:
//!
//! ```text
//! deny setuid                      # no setuid or setgid file
//! deny devices                     # no device node or FIFO
//! deny scripts                     # no package carrying maintainer scripts...
//! allow scripts base-files luci-*  # ...except these (package-name globs)
//! allow keys 0123456789abcdef ...  # every key that vouches must be one of these
//! deny packages telnetd *-dev      # never these names
//! require developer-signature     # a verified developer signature on every package
//! ```
//!
//! `allow keys` lines add up; a package is allowed only if the feed key that signed its
//! index and, when it is developer-signed, its developer key are all listed. A rule the
//! parser does not know is an error naming the file and line: a typo must not silently
//! weaken a policy.

use keyring_pkg::manifest::Scope;
use safe_fs::Root;

use crate::review::Review;

/// Where the policy lives inside a root.
pub const POLICY_FILE: &str = "etc/prokit/policy.conf";
/// The most bytes a policy file may have.
const MAX_POLICY_BYTES: u64 = 1024 * 1024;

/// A policy file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error(transparent)]
    Fs(#[from] safe_fs::FsError),
    #[error("{file}:{line}: {reason}")]
    Syntax {
        file: String,
        line: usize,
        reason: String,
    },
}

/// Where a rule was written, to name it in refusals: `/etc/prokit/policy.conf:3 deny setuid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleAt {
    pub line: usize,
    pub text: String,
}

impl std::fmt::Display for RuleAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "/{POLICY_FILE}:{} \"{}\"", self.line, self.text)
    }
}

/// The parsed policy. The default (no file) allows everything.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    deny_setuid: Option<RuleAt>,
    deny_devices: Option<RuleAt>,
    deny_scripts: Option<RuleAt>,
    allow_scripts: Vec<(RuleAt, Scope)>,
    allow_keys: Vec<(RuleAt, Vec<String>)>,
    deny_packages: Vec<(RuleAt, Scope)>,
    require_developer: Option<RuleAt>,
}

/// One rule's verdict on one package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The rule, with its line.
    pub rule: RuleAt,
    pub package: String,
    pub version: String,
    /// Whether the rule let the package through.
    pub allowed: bool,
    /// Why, naming the file or key concerned.
    pub detail: String,
}

impl Policy {
    /// Reads the root's policy file; no file is the empty policy.
    pub fn load(root: &Root) -> Result<Policy, PolicyError> {
        match root.read_file(POLICY_FILE, MAX_POLICY_BYTES)? {
            None => Ok(Policy::default()),
            Some(bytes) => Policy::parse(
                &bytes,
                &format!("{}", root.path().join(POLICY_FILE).display()),
            ),
        }
    }

    /// Parses a policy; `file` names it in errors.
    pub fn parse(bytes: &[u8], file: &str) -> Result<Policy, PolicyError> {
        let text = std::str::from_utf8(bytes).map_err(|e| PolicyError::Syntax {
            file: file.into(),
            line: 1 + bytes[..e.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count(),
            reason: "not UTF-8".into(),
        })?;
        let mut p = Policy::default();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let content = raw.split('#').next().unwrap_or("").trim();
            if content.is_empty() {
                continue;
            }
            let err = |reason: String| PolicyError::Syntax {
                file: file.into(),
                line,
                reason,
            };
            let words: Vec<&str> = content.split_whitespace().collect();
            let at = RuleAt {
                line,
                text: words.join(" "),
            };
            let globs = |args: &[&str]| -> Result<Scope, PolicyError> {
                if args.is_empty() {
                    return Err(err(format!(
                        "{:?} needs at least one package-name glob",
                        at.text
                    )));
                }
                Scope::parse(&args.join(", ")).map_err(|r| err(format!("{:?}: {r}", at.text)))
            };
            match words.as_slice() {
                ["deny", "setuid"] => p.deny_setuid = Some(at),
                ["deny", "devices"] => p.deny_devices = Some(at),
                ["deny", "scripts"] => p.deny_scripts = Some(at),
                ["allow", "scripts", rest @ ..] => {
                    let s = globs(rest)?;
                    p.allow_scripts.push((at, s));
                }
                ["deny", "packages", rest @ ..] => {
                    let s = globs(rest)?;
                    p.deny_packages.push((at, s));
                }
                ["allow", "keys", rest @ ..] => {
                    if rest.is_empty() {
                        return Err(err(
                            "\"allow keys\" needs at least one key fingerprint".into()
                        ));
                    }
                    let mut fps = Vec::new();
                    for fp in rest {
                        let ok = fp.len() == 16 && fp.bytes().all(|b| b.is_ascii_hexdigit());
                        if !ok {
                            return Err(err(format!(
                                "{fp:?} is not a key fingerprint (16 hex digits, as `prokit keyring status` shows)"
                            )));
                        }
                        fps.push(fp.to_ascii_lowercase());
                    }
                    p.allow_keys.push((at, fps));
                }
                ["require", "developer-signature"] => p.require_developer = Some(at),
                _ => {
                    return Err(err(format!(
                        "unknown rule {content:?}: expected deny setuid|devices|scripts, allow scripts GLOB..., allow keys FP..., deny packages GLOB..., require developer-signature"
                    )));
                }
            }
        }
        if p.deny_scripts.is_none()
            && let Some((at, _)) = p.allow_scripts.first()
        {
            return Err(PolicyError::Syntax {
                file: file.into(),
                line: at.line,
                reason: "\"allow scripts\" without \"deny scripts\" allows nothing that is not already allowed".into(),
            });
        }
        Ok(p)
    }

    /// True when no rule is set.
    pub fn is_empty(&self) -> bool {
        self.deny_setuid.is_none()
            && self.deny_devices.is_none()
            && self.deny_scripts.is_none()
            && self.allow_keys.is_empty()
            && self.deny_packages.is_empty()
            && self.require_developer.is_none()
    }

    /// Every rule's verdict on `r`, in file order of the rule kinds; a package is refused
    /// when any decision is not allowed.
    pub fn judge(&self, r: &Review) -> Vec<Decision> {
        self.judge_with(r, None)
    }

    /// [`Policy::judge`], with `keyring_package` (the configured keyring's package) exempt
    /// from `require developer-signature`: the root signatures inside it vouch for it, as
    /// `option developer_signatures require` exempts it too (docs/trust-model.md §9).
    pub fn judge_with(&self, r: &Review, keyring_package: Option<&str>) -> Vec<Decision> {
        let mut out = Vec::new();
        let mut decide = |rule: &RuleAt, allowed: bool, detail: String| {
            out.push(Decision {
                rule: rule.clone(),
                package: r.name.clone(),
                version: r.version.clone(),
                allowed,
                detail,
            })
        };
        for (rule, scope) in &self.deny_packages {
            let hit = scope.covers(&r.name);
            decide(
                rule,
                !hit,
                if hit {
                    format!("{} matches {scope}", r.name)
                } else {
                    "name not listed".into()
                },
            );
        }
        if let Some(rule) = &self.deny_setuid {
            match r.setid.first() {
                Some(x) => decide(
                    rule,
                    false,
                    format!("{} is {} (mode {})", x.path, x.what, x.mode),
                ),
                None => decide(rule, true, "no setuid or setgid file".into()),
            }
        }
        if let Some(rule) = &self.deny_devices {
            match r.devices.first() {
                Some(x) => decide(rule, false, format!("{} is a {}", x.path, x.what)),
                None => decide(rule, true, "no device node or FIFO".into()),
            }
        }
        if let Some(rule) = &self.deny_scripts {
            if r.scripts.is_empty() && r.boot_scripts.is_empty() {
                decide(rule, true, "no maintainer scripts".into());
            } else if let Some((allow, scope)) =
                self.allow_scripts.iter().find(|(_, s)| s.covers(&r.name))
            {
                decide(
                    allow,
                    true,
                    format!("scripts allowed: {} matches {scope}", r.name),
                );
            } else {
                let names: Vec<&str> = r
                    .scripts
                    .iter()
                    .map(|s| s.name.as_str())
                    .chain(r.boot_scripts.iter().map(String::as_str))
                    .collect();
                decide(
                    rule,
                    false,
                    format!("carries maintainer scripts ({})", names.join(", ")),
                );
            }
        }
        if let Some(rule) = &self.require_developer {
            match &r.developer_key {
                Some(k) => decide(rule, true, format!("signed by developer key {k}")),
                None if keyring_package == Some(r.name.as_str()) => decide(
                    rule,
                    true,
                    "the configured keyring package: its root signatures vouch for it".into(),
                ),
                None => decide(rule, false, "no verified developer signature".into()),
            }
        }
        if let Some((rule, _)) = self.allow_keys.first() {
            let listed = |k: &str| {
                self.allow_keys
                    .iter()
                    .any(|(_, fps)| fps.iter().any(|f| f.eq_ignore_ascii_case(k)))
            };
            let mut vouching = Vec::new();
            match &r.feed_key {
                Some(k) => vouching.push(("feed key", k.as_str())),
                None => vouching.push(("feed key", "none (unsigned feed)")),
            }
            if let Some(k) = &r.developer_key {
                vouching.push(("developer key", k.as_str()));
            }
            match vouching.iter().find(|(_, k)| !listed(k)) {
                Some((what, k)) => decide(
                    rule,
                    false,
                    format!("vouched for by {what} {k}, which is not listed"),
                ),
                None => decide(
                    rule,
                    true,
                    format!(
                        "vouched for by {}",
                        vouching
                            .iter()
                            .map(|(w, k)| format!("{w} {k}"))
                            .collect::<Vec<_>>()
                            .join(" and ")
                    ),
                ),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::review::{Script, Special};

    fn review(name: &str) -> Review {
        Review {
            name: name.into(),
            version: "1".into(),
            architecture: "all".into(),
            feed: "main".into(),
            sha256: String::new(),
            feed_key: Some("aaaaaaaaaaaaaaaa".into()),
            developer_key: None,
            scripts: vec![],
            setid: vec![],
            devices: vec![],
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

    fn refused(p: &Policy, r: &Review) -> Vec<String> {
        p.judge(r)
            .into_iter()
            .filter(|d| !d.allowed)
            .map(|d| format!("{}: {}", d.rule.text, d.detail))
            .collect()
    }

    #[test]
    fn each_rule_refuses_its_class() {
        let p = Policy::parse(
            b"# site policy\ndeny setuid\ndeny devices\ndeny scripts\nallow scripts base-*\n\
              deny packages telnetd *-dev\nrequire developer-signature\n\
              allow keys aaaaaaaaaaaaaaaa\nallow keys BBBBBBBBBBBBBBBB  # the store's developer\n",
            "policy.conf",
        )
        .unwrap();
        let mut ok = review("app");
        ok.developer_key = Some("bbbbbbbbbbbbbbbb".into());
        assert!(refused(&p, &ok).is_empty(), "{:?}", refused(&p, &ok));

        let mut r = ok.clone();
        r.setid.push(Special {
            path: "/usr/bin/su".into(),
            what: "setuid".into(),
            mode: "4755".into(),
        });
        assert_eq!(
            refused(&p, &r),
            ["deny setuid: /usr/bin/su is setuid (mode 4755)"]
        );

        let mut r = ok.clone();
        r.devices.push(Special {
            path: "/dev/x".into(),
            what: "block device".into(),
            mode: "600".into(),
        });
        assert_eq!(refused(&p, &r), ["deny devices: /dev/x is a block device"]);

        let script = Script {
            name: "postinst".into(),
            size: 3,
            text: "x".into(),
        };
        let mut r = ok.clone();
        r.scripts.push(script.clone());
        assert_eq!(
            refused(&p, &r),
            ["deny scripts: carries maintainer scripts (postinst)"]
        );
        let mut r = ok.clone();
        r.name = "base-files".into();
        r.scripts.push(script);
        assert!(refused(&p, &r).is_empty());

        let mut r = ok.clone();
        r.name = "libfoo-dev".into();
        assert_eq!(
            refused(&p, &r),
            ["deny packages telnetd *-dev: libfoo-dev matches telnetd, *-dev"]
        );

        let mut r = ok.clone();
        r.developer_key = None;
        assert_eq!(
            refused(&p, &r),
            ["require developer-signature: no verified developer signature"]
        );

        let mut r = ok.clone();
        r.developer_key = Some("cccccccccccccccc".into());
        assert_eq!(
            refused(&p, &r),
            [
                "allow keys aaaaaaaaaaaaaaaa: vouched for by developer key cccccccccccccccc, which is not listed"
            ]
        );
        let mut r = ok;
        r.feed_key = Some("dddddddddddddddd".into());
        assert_eq!(refused(&p, &r).len(), 1);
    }

    #[test]
    fn bad_rules_name_the_line() {
        for (text, want) in [
            (
                "deny setuid\ndeny suid\n",
                "policy.conf:2: unknown rule \"deny suid\"",
            ),
            (
                "allow keys 1234\n",
                "policy.conf:1: \"1234\" is not a key fingerprint",
            ),
            (
                "deny packages\n",
                "policy.conf:1: \"deny packages\" needs at least one",
            ),
            (
                "deny packages Foo\n",
                "policy.conf:1: \"deny packages Foo\": glob \"Foo\" holds 'F'",
            ),
            (
                "allow scripts x\n",
                "policy.conf:1: \"allow scripts\" without \"deny scripts\"",
            ),
        ] {
            let e = Policy::parse(text.as_bytes(), "policy.conf")
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn a_policy_that_is_not_utf8_names_the_line() {
        let e = Policy::parse(b"deny setuid\n\xff\n", "policy.conf").unwrap_err();
        assert_eq!(e.to_string(), "policy.conf:2: not UTF-8");
    }

    #[test]
    fn no_rules_is_empty_and_judges_nothing() {
        let p = Policy::parse(b"# nothing\n\n", "p").unwrap();
        assert!(p.is_empty());
        assert!(p.judge(&review("x")).is_empty());
    }
}
