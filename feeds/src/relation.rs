//! Relation fields (`Depends`, `Pre-Depends`, `Recommends`, `Suggests`, `Provides`,
//! `Conflicts`, `Replaces`, `Breaks`): parsing `a (>= 1.0) | b:any [amd64 !i386] <!nocheck>, c`
//! into [`Alternatives`] of [`Relation`]s, checking them against a package, and writing them
//! back in canonical form.
//!
//! Syntax is dpkg's: `name[:arch] [(op version)] [[arch ...]] [<profile ...>]...`, with any
//! whitespace (including the newlines of folded fields) between the parts. Empty entries
//! between commas (`a,,b,`) are tolerated, as opkg does; an empty alternative (`a | | b`) is
//! not. Output is canonical: one space around parts, `, ` and ` | ` separators, and the
//! obsolete operators `<` and `>` written as `<=` and `>=`, which is what they mean.

use crate::version::{Version, VersionError};
use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// Why a relation field was rejected. Every variant names the relation (or, for an empty
/// alternative, the `|` group) it was found in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelationError {
    #[error("empty alternative in {relation:?}")]
    EmptyAlternative { relation: String },
    #[error("missing package name in {relation:?}")]
    MissingName { relation: String },
    #[error("invalid package name {name:?} in {relation:?}")]
    BadName { relation: String, name: String },
    #[error("invalid architecture {arch:?} in {relation:?}")]
    BadArch { relation: String, arch: String },
    #[error("empty architecture list in {relation:?}")]
    EmptyArchList { relation: String },
    #[error("invalid build profile {profile:?} in {relation:?}")]
    BadProfile { relation: String, profile: String },
    #[error("empty restriction list in {relation:?}")]
    EmptyProfileList { relation: String },
    #[error("{open:?} is never closed in {relation:?}")]
    Unclosed { relation: String, open: char },
    #[error("missing operator before the version in {relation:?}")]
    MissingOperator { relation: String },
    #[error("unknown operator {op:?} in {relation:?}")]
    UnknownOperator { relation: String, op: String },
    #[error("missing version after the operator in {relation:?}")]
    MissingVersion { relation: String },
    #[error("bad version in {relation:?}: {}", source.kind)]
    BadVersion {
        relation: String,
        #[source]
        source: VersionError,
    },
    #[error("unexpected {text:?} in {relation:?}")]
    Unexpected { relation: String, text: String },
}

impl RelationError {
    /// The relation text the error was found in.
    pub fn relation(&self) -> &str {
        use RelationError::*;
        match self {
            EmptyAlternative { relation }
            | MissingName { relation }
            | BadName { relation, .. }
            | BadArch { relation, .. }
            | EmptyArchList { relation }
            | BadProfile { relation, .. }
            | EmptyProfileList { relation }
            | Unclosed { relation, .. }
            | MissingOperator { relation }
            | UnknownOperator { relation, .. }
            | MissingVersion { relation }
            | BadVersion { relation, .. }
            | Unexpected { relation, .. } => relation,
        }
    }
}

/// A version operator. The obsolete `<` and `>` parse as [`Op::Le`] and [`Op::Ge`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `<<`
    Lt,
    /// `<=` (or obsolete `<`)
    Le,
    /// `=`
    Eq,
    /// `>=` (or obsolete `>`)
    Ge,
    /// `>>`
    Gt,
}

impl Op {
    /// Parses dpkg's operators: `<<`, `<=`, `=`, `>=`, `>>` and the obsolete `<`, `>`.
    pub fn parse(op: &str) -> Option<Op> {
        match op {
            "<<" => Some(Op::Lt),
            "<=" | "<" => Some(Op::Le),
            "=" => Some(Op::Eq),
            ">=" | ">" => Some(Op::Ge),
            ">>" => Some(Op::Gt),
            _ => None,
        }
    }

    /// The canonical spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Lt => "<<",
            Op::Le => "<=",
            Op::Eq => "=",
            Op::Ge => ">=",
            Op::Gt => ">>",
        }
    }

    /// Whether `candidate.cmp(required)` satisfies `candidate OP required`.
    pub fn matches(self, ordering: Ordering) -> bool {
        match self {
            Op::Lt => ordering.is_lt(),
            Op::Le => ordering.is_le(),
            Op::Eq => ordering.is_eq(),
            Op::Ge => ordering.is_ge(),
            Op::Gt => ordering.is_gt(),
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One relation: `name[:arch] [(op version)] [[arch ...]] [<profile ...>]...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    name: String,
    arch_qualifier: Option<String>,
    constraint: Option<(Op, Version)>,
    arch_list: Vec<String>,
    profiles: Vec<Vec<String>>,
}

impl Relation {
    /// Parses a single relation (no `,` or `|`).
    pub fn parse(text: &str) -> Result<Relation, RelationError> {
        let relation = text.trim();
        let owned = || relation.to_string();
        let is_end = |c: char| c.is_whitespace() || "([<".contains(c);
        let (name, mut rest) = relation.split_at(relation.find(is_end).unwrap_or(relation.len()));
        let (name, arch_qualifier) = match name.split_once(':') {
            Some((name, arch)) => (name, Some(arch)),
            None => (name, None),
        };
        if name.is_empty() {
            return Err(RelationError::MissingName { relation: owned() });
        }
        if !is_package_name(name) {
            return Err(RelationError::BadName {
                relation: owned(),
                name: name.to_string(),
            });
        }

        if let Some(arch) = arch_qualifier.filter(|arch| !is_arch(arch)) {
            return Err(RelationError::BadArch {
                relation: owned(),
                arch: arch.to_string(),
            });
        }

        let mut constraint = None;
        if let Some(inner) = take_group(&mut rest, '(', ')', relation)? {
            let inner = inner.trim_start();
            let split = inner.find(|c| !"<>=".contains(c)).unwrap_or(inner.len());
            let (op, version) = inner.split_at(split);
            let op = match Op::parse(op) {
                Some(op) => op,
                None if op.is_empty() => {
                    return Err(RelationError::MissingOperator { relation: owned() });
                }
                None => {
                    return Err(RelationError::UnknownOperator {
                        relation: owned(),
                        op: op.to_string(),
                    });
                }
            };
            if version.trim().is_empty() {
                return Err(RelationError::MissingVersion { relation: owned() });
            }
            let version =
                Version::parse(version.trim()).map_err(|source| RelationError::BadVersion {
                    relation: owned(),
                    source,
                })?;
            constraint = Some((op, version));
        }

        let mut arch_list = Vec::new();
        if let Some(inner) = take_group(&mut rest, '[', ']', relation)? {
            for arch in inner.split_whitespace() {
                if !is_arch(arch.strip_prefix('!').unwrap_or(arch)) {
                    return Err(RelationError::BadArch {
                        relation: owned(),
                        arch: arch.to_string(),
                    });
                }
                arch_list.push(arch.to_string());
            }
            if arch_list.is_empty() {
                return Err(RelationError::EmptyArchList { relation: owned() });
            }
        }

        let mut profiles = Vec::new();
        while let Some(inner) = take_group(&mut rest, '<', '>', relation)? {
            let mut list = Vec::new();
            for profile in inner.split_whitespace() {
                if !is_profile(profile.strip_prefix('!').unwrap_or(profile)) {
                    return Err(RelationError::BadProfile {
                        relation: owned(),
                        profile: profile.to_string(),
                    });
                }
                list.push(profile.to_string());
            }
            if list.is_empty() {
                return Err(RelationError::EmptyProfileList { relation: owned() });
            }
            profiles.push(list);
        }

        let rest = rest.trim();
        if !rest.is_empty() {
            return Err(RelationError::Unexpected {
                relation: owned(),
                text: rest.to_string(),
            });
        }
        Ok(Relation {
            name: name.to_string(),
            arch_qualifier: arch_qualifier.map(str::to_string),
            constraint,
            arch_list,
            profiles,
        })
    }

    /// The package name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The `:arch` qualifier (`any`, `native`, `amd64`), if any.
    pub fn arch_qualifier(&self) -> Option<&str> {
        self.arch_qualifier.as_deref()
    }

    /// The version constraint, if any.
    pub fn constraint(&self) -> Option<(Op, &Version)> {
        self.constraint.as_ref().map(|(op, v)| (*op, v))
    }

    /// The `[amd64 !i386]` restriction as written, `!` included; empty when absent.
    pub fn arch_list(&self) -> &[String] {
        &self.arch_list
    }

    /// The `<!nocheck> <stage1 cross>` restriction lists as written; empty when absent.
    pub fn profiles(&self) -> &[Vec<String>] {
        &self.profiles
    }

    /// Whether `version` meets the version constraint (always, when there is none).
    pub fn matches_constraint(&self, version: &Version) -> bool {
        self.constraint
            .as_ref()
            .is_none_or(|(op, required)| op.matches(version.cmp(required)))
    }

    /// Whether a package (or a `Provides` entry) called `name` with `version` satisfies this
    /// relation. A versioned relation is never satisfied without a version, so an unversioned
    /// `Provides` satisfies only unversioned relations, as in dpkg. The arch qualifier and the
    /// arch and profile restrictions are not evaluated here: that is the caller's business.
    pub fn satisfied_by(&self, name: &str, version: Option<&Version>) -> bool {
        self.name == name
            && match version {
                Some(version) => self.matches_constraint(version),
                None => self.constraint.is_none(),
            }
    }
}

/// If `rest` (after leading whitespace) opens with `open`, takes the text up to `close` and
/// leaves `rest` after it.
fn take_group<'a>(
    rest: &mut &'a str,
    open: char,
    close: char,
    relation: &str,
) -> Result<Option<&'a str>, RelationError> {
    let Some(after) = rest.trim_start().strip_prefix(open) else {
        return Ok(None);
    };
    let Some((inner, after)) = after.split_once(close) else {
        let relation = relation.to_string();
        return Err(RelationError::Unclosed { relation, open });
    };
    *rest = after;
    Ok(Some(inner))
}

/// dpkg's rule: a letter or digit, then letters, digits, `+`, `-`, `.` or `_`.
fn is_package_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-._".contains(c))
}

fn is_arch(arch: &str) -> bool {
    !arch.is_empty() && arch.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

fn is_profile(profile: &str) -> bool {
    !profile.is_empty()
        && profile
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
}

impl FromStr for Relation {
    type Err = RelationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Relation::parse(s)
    }
}

impl fmt::Display for Relation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(arch) = &self.arch_qualifier {
            write!(f, ":{arch}")?;
        }
        if let Some((op, version)) = &self.constraint {
            write!(f, " ({op} {version})")?;
        }
        if !self.arch_list.is_empty() {
            write!(f, " [{}]", self.arch_list.join(" "))?;
        }
        for list in &self.profiles {
            write!(f, " <{}>", list.join(" "))?;
        }
        Ok(())
    }
}

/// An `a | b | c` group: satisfied when any of its relations is. Never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alternatives(Vec<Relation>);

impl Alternatives {
    /// Parses one `|`-separated group (no `,`).
    pub fn parse(text: &str) -> Result<Alternatives, RelationError> {
        let mut relations = Vec::new();
        for relation in text.split('|') {
            if relation.trim().is_empty() {
                let relation = text.trim().to_string();
                return Err(RelationError::EmptyAlternative { relation });
            }
            relations.push(Relation::parse(relation)?);
        }
        Ok(Alternatives(relations))
    }

    /// The relations of the group, in order; at least one.
    pub fn relations(&self) -> &[Relation] {
        &self.0
    }

    /// Whether any relation of the group is satisfied by `name` at `version`.
    pub fn satisfied_by(&self, name: &str, version: Option<&Version>) -> bool {
        self.0.iter().any(|r| r.satisfied_by(name, version))
    }
}

impl FromStr for Alternatives {
    type Err = RelationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Alternatives::parse(s)
    }
}

impl fmt::Display for Alternatives {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, relation) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" | ")?;
            }
            write!(f, "{relation}")?;
        }
        Ok(())
    }
}

/// Parses a whole relation field: `,`-separated groups of `|`-separated relations. Empty
/// entries (`a,,b,`) are skipped; an empty field gives an empty list.
pub fn parse_relations(field: &str) -> Result<Vec<Alternatives>, RelationError> {
    field
        .split(',')
        .filter(|entry| !entry.trim().is_empty())
        .map(Alternatives::parse)
        .collect()
}

/// Writes a relation field in canonical form: `a (>= 1.0) | b, c`.
pub fn format_relations(field: &[Alternatives]) -> String {
    field
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rel(s: &str) -> Relation {
        match Relation::parse(s) {
            Ok(r) => r,
            Err(e) => panic!("{s:?} should parse: {e}"),
        }
    }

    fn ver(s: &str) -> Version {
        match Version::parse(s) {
            Ok(v) => v,
            Err(e) => panic!("{s:?} should parse: {e}"),
        }
    }

    fn field(s: &str) -> Vec<Alternatives> {
        match parse_relations(s) {
            Ok(f) => f,
            Err(e) => panic!("{s:?} should parse: {e}"),
        }
    }

    fn err(s: &str) -> RelationError {
        match parse_relations(s) {
            Ok(f) => panic!("{s:?} should fail, got {f:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn parses_every_operator() {
        for (text, op) in [
            ("<<", Op::Lt),
            ("<=", Op::Le),
            ("<", Op::Le),
            ("=", Op::Eq),
            (">=", Op::Ge),
            (">", Op::Ge),
            (">>", Op::Gt),
        ] {
            let r = rel(&format!("foo ({text} 1.0)"));
            assert_eq!(r.constraint(), Some((op, &ver("1.0"))), "{text}");
            assert_eq!(r.to_string(), format!("foo ({} 1.0)", op.as_str()));
        }
    }

    #[test]
    fn whitespace_is_flexible() {
        for s in [
            "a(>=1)",
            "a (>=1)",
            "a ( >= 1 )",
            "a\n (>=\t1)",
            " a(>= 1 ) ",
        ] {
            assert_eq!(rel(s).to_string(), "a (>= 1)", "{s:?}");
        }
        let f = field("libc,\n zlib (>= 1.2) |\n  zlib-ng ,");
        assert_eq!(format_relations(&f), "libc, zlib (>= 1.2) | zlib-ng");
    }

    #[test]
    fn parses_qualifiers_and_restrictions() {
        let r = rel("python3:any (>= 3.9) [amd64 !i386] <!nocheck> <stage1 cross>");
        assert_eq!(r.name(), "python3");
        assert_eq!(r.arch_qualifier(), Some("any"));
        assert_eq!(r.arch_list(), ["amd64", "!i386"]);
        assert_eq!(r.profiles(), [vec!["!nocheck"], vec!["stage1", "cross"]]);
        assert_eq!(
            r.to_string(),
            "python3:any (>= 3.9) [amd64 !i386] <!nocheck> <stage1 cross>"
        );
        let r = rel("gcc:native[linux-any]<!cross>");
        assert_eq!(r.to_string(), "gcc:native [linux-any] <!cross>");
        assert_eq!(r.constraint(), None);
    }

    #[test]
    fn parses_real_feed_fields() {
        let f = field("kernel (=5.10.138-1-789565457d2f287975d7d943ddbe4eeb), boost-date_time");
        assert_eq!(f.len(), 2);
        let kernel = &f[0].relations()[0];
        assert_eq!(kernel.name(), "kernel");
        let Some((op, v)) = kernel.constraint() else {
            panic!("kernel relation lost its constraint")
        };
        assert_eq!(
            (op, v.revision()),
            (Op::Eq, "789565457d2f287975d7d943ddbe4eeb")
        );
        assert_eq!(f[1].relations()[0].name(), "boost-date_time");
        assert!(field("").is_empty());
        assert!(field(" , ,").is_empty());
        assert_eq!(field("a,,b").len(), 2);
    }

    #[test]
    fn alternatives_and_display() {
        let f = field("a (>= 1.0) | b:any, c");
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].relations().len(), 2);
        assert_eq!(f[0].to_string(), "a (>= 1.0) | b:any");
        assert_eq!(format_relations(&f), "a (>= 1.0) | b:any, c");
        assert_eq!(
            "x|y".parse::<Alternatives>().map(|a| a.to_string()),
            Ok("x | y".into())
        );
    }

    #[test]
    fn reports_errors_with_context() {
        let cases = [
            ("a | | b", "empty alternative in \"a | | b\""),
            ("a, |b", "empty alternative in \"|b\""),
            ("(>= 1)", "missing package name in \"(>= 1)\""),
            ("-foo", "invalid package name \"-foo\" in \"-foo\""),
            ("fo)o", "invalid package name \"fo)o\" in \"fo)o\""),
            ("foo:", "invalid architecture \"\" in \"foo:\""),
            (
                "foo [amd64 !]",
                "invalid architecture \"!\" in \"foo [amd64 !]\"",
            ),
            ("foo []", "empty architecture list in \"foo []\""),
            ("foo <>", "empty restriction list in \"foo <>\""),
            (
                "foo <no/check>",
                "invalid build profile \"no/check\" in \"foo <no/check>\"",
            ),
            ("foo (>= 1", "'(' is never closed in \"foo (>= 1\""),
            ("foo [amd64", "'[' is never closed in \"foo [amd64\""),
            (
                "foo (1.0)",
                "missing operator before the version in \"foo (1.0)\"",
            ),
            ("foo (=> 1)", "unknown operator \"=>\" in \"foo (=> 1)\""),
            ("foo (<> 1)", "unknown operator \"<>\" in \"foo (<> 1)\""),
            (
                "foo (>= )",
                "missing version after the operator in \"foo (>= )\"",
            ),
            (
                "foo (>= 1:)",
                "bad version in \"foo (>= 1:)\": nothing after colon in version number",
            ),
            (
                "foo (>= 1 2)",
                "bad version in \"foo (>= 1 2)\": version string has embedded spaces",
            ),
            ("foo bar", "unexpected \"bar\" in \"foo bar\""),
            ("foo (>= 1))", "unexpected \")\" in \"foo (>= 1))\""),
            (
                "foo [i386] (>= 1)",
                "unexpected \"(>= 1)\" in \"foo [i386] (>= 1)\"",
            ),
        ];
        for (input, message) in cases {
            assert_eq!(err(input).to_string(), message, "{input:?}");
        }
        assert_eq!(err("x, foo (=> 1)").relation(), "foo (=> 1)");
        let source = std::error::Error::source(&err("foo (>= 1:)")).map(ToString::to_string);
        assert!(source.is_some_and(|s| s.contains("\"1:\"")));
    }

    #[test]
    fn satisfaction() {
        let r = rel("foo (>= 1.0)");
        assert!(r.satisfied_by("foo", Some(&ver("1.0"))));
        assert!(r.satisfied_by("foo", Some(&ver("1:0.1"))));
        assert!(!r.satisfied_by("foo", Some(&ver("1.0~rc1"))));
        assert!(!r.satisfied_by("foo", None));
        assert!(!r.satisfied_by("bar", Some(&ver("2.0"))));
        let plain = rel("foo");
        assert!(plain.satisfied_by("foo", None));
        assert!(plain.satisfied_by("foo", Some(&ver("0"))));
        assert!(plain.matches_constraint(&ver("0")));

        let v = ver("1.0");
        let cases = [
            ("<< 1.0", false),
            ("<< 1.0-1", true),
            ("<= 1.0-0", true),
            ("< 1.0", true),
            ("= 0:1.0", true),
            ("= 1.0.0", false),
            (">= 1.0~", true),
            ("> 1.0", true),
            (">> 1.0", false),
            (">> 1.0~", true),
        ];
        for (constraint, expected) in cases {
            let r = rel(&format!("foo ({constraint})"));
            assert_eq!(r.matches_constraint(&v), expected, "1.0 {constraint}");
        }

        let group = &field("foo (>= 2) | bar")[0];
        assert!(group.satisfied_by("bar", None));
        assert!(group.satisfied_by("foo", Some(&ver("2"))));
        assert!(!group.satisfied_by("foo", Some(&ver("1"))));
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in any::<String>()) {
            let _ = parse_relations(&s);
        }

        #[test]
        fn canonical_form_round_trips(s in "[a-z0-9 ,|():<>=!.~+\\[\\]-]{0,24}") {
            if let Ok(f) = parse_relations(&s) {
                let text = format_relations(&f);
                prop_assert_eq!(parse_relations(&text).ok(), Some(f), "{:?}", text);
            }
        }
    }
}
