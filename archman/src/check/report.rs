//! What a check found, and its two renderings: text (`Display`, one line per finding and a
//! summary) and JSON ([`Report::to_json`], one object on one line).

use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;

use feeds::usign::Fingerprint;
use serde::Serialize;

/// How bad a finding is: errors fail the check, warnings do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    /// The stable lower-case name (`error`, `warning`), as in the text and the JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a finding is about. `Display` gives the stable kebab-case name used in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FindingKind {
    /// An index file cannot be read, is too large, or is not valid gzip.
    IndexUnreadable,
    /// An index file does not parse.
    IndexSyntax,
    /// `Packages.gz` does not gunzip to `Packages`.
    IndexMismatch,
    /// `Packages.manifest` lists another set of packages than `Packages`.
    ManifestMismatch,
    /// No key was given, so no signature was checked (a warning).
    SignatureUnchecked,
    /// A key was given but the signature file is absent.
    SignatureMissing,
    /// A signature file is garbage, by an unknown key, or does not verify.
    SignatureInvalid,
    /// `Release` is unreadable or does not parse, or `Release.sig` has no `Release`.
    ReleaseInvalid,
    /// A file listed in `Release` is missing or has another size or SHA-256.
    ReleaseMismatch,
    /// An index file present in the feed is not listed in `Release`.
    ReleaseUnlisted,
    /// `Valid-Until` is in the past.
    ReleaseExpired,
    /// A stanza lacks a required field or has a malformed one.
    BadStanza,
    /// A `Filename` (or a `Release` entry) leaves the feed, directly or through a symlink.
    FilenameOutside,
    /// Two stanzas for the same (Package, Version, Architecture).
    DuplicateStanza,
    /// A stanza's file does not exist.
    FileMissing,
    /// A stanza's file has another size than its `Size`.
    SizeMismatch,
    /// A stanza's file has another SHA-256 than its `SHA256sum`.
    HashMismatch,
    /// A file cannot be read, or is not a regular file.
    FileUnreadable,
    /// A package file in the feed that no stanza names.
    NotInIndex,
    /// A relation field does not parse.
    BadRelation,
    /// A `Depends`/`Pre-Depends` entry nothing in the feed satisfies.
    UnsatisfiedDependency,
    /// An `.ipk` in the `ar` container, which OpenWrt's opkg cannot install (a warning).
    ArIpk,
}

impl FindingKind {
    /// The stable kebab-case name.
    pub fn as_str(self) -> &'static str {
        use FindingKind::*;
        match self {
            IndexUnreadable => "index-unreadable",
            IndexSyntax => "index-syntax",
            IndexMismatch => "index-mismatch",
            ManifestMismatch => "manifest-mismatch",
            SignatureUnchecked => "signature-unchecked",
            SignatureMissing => "signature-missing",
            SignatureInvalid => "signature-invalid",
            ReleaseInvalid => "release-invalid",
            ReleaseMismatch => "release-mismatch",
            ReleaseUnlisted => "release-unlisted",
            ReleaseExpired => "release-expired",
            BadStanza => "bad-stanza",
            FilenameOutside => "filename-outside",
            DuplicateStanza => "duplicate-stanza",
            FileMissing => "file-missing",
            SizeMismatch => "size-mismatch",
            HashMismatch => "hash-mismatch",
            FileUnreadable => "file-unreadable",
            NotInIndex => "not-in-index",
            BadRelation => "bad-relation",
            UnsatisfiedDependency => "unsatisfied-dependency",
            ArIpk => "ar-ipk",
        }
    }
}

impl fmt::Display for FindingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One thing wrong with the feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    pub kind: FindingKind,
    /// The feed-relative file the finding is about (`Packages.sig`, a `Filename`), if one.
    pub file: Option<String>,
    /// The package the finding is about, if one.
    pub package: Option<String>,
    /// The whole story: the file and, where relevant, the package, field and the expected
    /// and actual values.
    pub message: String,
}

/// The result of checking a feed.
#[derive(Debug, Clone)]
pub struct Report {
    /// The feed directory, as given.
    pub dir: PathBuf,
    /// Everything found, in check order (index, signatures, Release, stanzas, strays,
    /// dependencies).
    pub findings: Vec<Finding>,
    /// Stanzas in the index.
    pub packages: usize,
    /// Package files opened and hashed.
    pub files_checked: usize,
    /// Signature files that verified, with the key that made each.
    pub signatures_verified: Vec<(String, Fingerprint)>,
}

impl Report {
    /// True when no finding is an error (warnings allowed).
    pub fn ok(&self) -> bool {
        self.errors() == 0
    }

    /// Number of error findings.
    pub fn errors(&self) -> usize {
        self.count(Severity::Error)
    }

    /// Number of warning findings.
    pub fn warnings(&self) -> usize {
        self.count(Severity::Warning)
    }

    fn count(&self, severity: Severity) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == severity)
            .count()
    }

    /// The report as one JSON object on one line (for `--json`): `feed`, `ok`, `packages`,
    /// `files_checked`, `errors`, `warnings`, `signatures_verified` (`file`, `key`) and
    /// `findings` (`severity`, `kind`, `file`, `package`, `message`), in that order.
    pub fn to_json(&self) -> String {
        let json = JsonReport {
            feed: self.dir.to_string_lossy(),
            ok: self.ok(),
            packages: self.packages,
            files_checked: self.files_checked,
            errors: self.errors(),
            warnings: self.warnings(),
            signatures_verified: self
                .signatures_verified
                .iter()
                .map(|(file, key)| JsonSignature {
                    file,
                    key: key.to_string(),
                })
                .collect(),
            findings: self
                .findings
                .iter()
                .map(|f| JsonFinding {
                    severity: f.severity.as_str(),
                    kind: f.kind.as_str(),
                    file: f.file.as_deref(),
                    package: f.package.as_deref(),
                    message: &f.message,
                })
                .collect(),
        };
        // Strings, numbers and booleans only: serialising them cannot fail.
        serde_json::to_string(&json).expect("a check report serialises to JSON")
    }
}

/// [`Report::to_json`]'s object; the field order is the key order.
#[derive(Serialize)]
struct JsonReport<'r> {
    feed: Cow<'r, str>,
    ok: bool,
    packages: usize,
    files_checked: usize,
    errors: usize,
    warnings: usize,
    signatures_verified: Vec<JsonSignature<'r>>,
    findings: Vec<JsonFinding<'r>>,
}

#[derive(Serialize)]
struct JsonSignature<'r> {
    file: &'r str,
    key: String,
}

#[derive(Serialize)]
struct JsonFinding<'r> {
    severity: &'static str,
    kind: &'static str,
    file: Option<&'r str>,
    package: Option<&'r str>,
    message: &'r str,
}

impl fmt::Display for Report {
    /// One line per finding, then a summary line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for finding in &self.findings {
            writeln!(f, "{}: {}", finding.severity, finding.message)?;
        }
        let signatures = if self.signatures_verified.is_empty() {
            "signatures NOT verified".to_string()
        } else {
            let list: Vec<String> = self
                .signatures_verified
                .iter()
                .map(|(file, fp)| format!("{file} by key {fp}"))
                .collect();
            format!("signatures verified: {}", list.join(", "))
        };
        writeln!(
            f,
            "{}: {}: {}, {} checked, {}; {}, {}",
            if self.ok() { "OK" } else { "FAILED" },
            self.dir.display(),
            plural(self.packages, "package"),
            plural(self.files_checked, "package file"),
            signatures,
            plural(self.errors(), "error"),
            plural(self.warnings(), "warning")
        )
    }
}

/// `1 error`, `2 errors`.
fn plural(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        Report {
            dir: PathBuf::from("fe\"ed"),
            findings: vec![
                Finding {
                    severity: Severity::Error,
                    kind: FindingKind::NotInIndex,
                    file: Some("we\"ird\tname.ipk".to_string()),
                    package: None,
                    message: "a \"b\" \\ c\n\t\u{1}é".to_string(),
                },
                Finding {
                    severity: Severity::Warning,
                    kind: FindingKind::ArIpk,
                    file: Some("a.ipk".to_string()),
                    package: Some("a".to_string()),
                    message: "an ar .ipk".to_string(),
                },
            ],
            packages: 2,
            files_checked: 1,
            signatures_verified: vec![(
                "Packages.sig".to_string(),
                "53715f35adf4b2d5".parse().unwrap(),
            )],
        }
    }

    #[test]
    fn json_has_every_key_in_order_on_one_line_with_strings_escaped() {
        assert_eq!(
            report().to_json(),
            concat!(
                r#"{"feed":"fe\"ed","ok":false,"packages":2,"files_checked":1,"errors":1,"warnings":1,"#,
                r#""signatures_verified":[{"file":"Packages.sig","key":"53715f35adf4b2d5"}],"#,
                r#""findings":[{"severity":"error","kind":"not-in-index","file":"we\"ird\tname.ipk","#,
                r#""package":null,"message":"a \"b\" \\ c\n\t\u0001é"},"#,
                r#"{"severity":"warning","kind":"ar-ipk","file":"a.ipk","package":"a","#,
                r#""message":"an ar .ipk"}]}"#
            )
        );
    }

    #[test]
    fn json_reads_back_as_the_report() {
        let r = report();
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["feed"], "fe\"ed");
        assert_eq!(v["findings"][0]["message"], r.findings[0].message.as_str());
        assert_eq!(v["findings"][0]["file"], "we\"ird\tname.ipk");
        assert_eq!(v["findings"][1]["package"], "a");
        let empty = Report {
            findings: Vec::new(),
            signatures_verified: Vec::new(),
            ..r
        };
        assert!(
            empty
                .to_json()
                .ends_with(r#""ok":true,"packages":2,"files_checked":1,"errors":0,"warnings":0,"signatures_verified":[],"findings":[]}"#)
        );
    }

    #[test]
    fn text_is_one_line_per_finding_and_a_summary() {
        assert_eq!(
            report().to_string(),
            "error: a \"b\" \\ c\n\t\u{1}é\nwarning: an ar .ipk\n\
             FAILED: fe\"ed: 2 packages, 1 package file checked, signatures verified: \
             Packages.sig by key 53715f35adf4b2d5; 1 error, 1 warning\n"
        );
    }
}
