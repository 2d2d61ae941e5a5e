//! The read-only questions opkg users ask, with opkg's names: `files`, `search`,
//! `whatdepends [-r]`, `whatprovides`, `depends`, `compare-versions`, `print-architecture`.
//! Answers come from the installed database (and, for `whatprovides` and `depends` of a
//! package not installed, from the verified feed indexes); nothing here changes the root.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use feeds::control::Paragraph;
use feeds::relation::{Op, parse_relations};
use feeds::version::Version;

use crate::status::{Db, FileKind, StatusError, is_installed};

/// `*` and `?` glob matching over a whole string (`feeds::glob`).
pub use feeds::glob::matches as glob_matches;

fn field<'a>(p: &'a Paragraph, name: &str) -> &'a str {
    p.get(name).unwrap_or("").trim()
}

/// The installed packages (a `deinstall`/`not-installed` entry is not one), by name.
pub fn installed(db: &Db) -> Result<BTreeMap<String, Paragraph>, StatusError> {
    let mut out = BTreeMap::new();
    for p in db.packages() {
        let p = p?;
        if is_installed(&p) {
            out.insert(field(&p, "Package").to_string(), p.into_owned());
        }
    }
    Ok(out)
}

/// The files (not directories) of installed package `name`, sorted.
pub fn files(db: &Db, name: &str) -> Result<Vec<String>, StatusError> {
    if db.installed(name)?.is_none() {
        return Err(StatusError::NotInstalled(name.to_string()));
    }
    Ok(db
        .files(name)?
        .into_iter()
        .filter(|r| r.kind != FileKind::Dir)
        .map(|r| r.path)
        .collect())
}

/// Which installed package owns each path matching `glob` (a glob on the whole path, or,
/// without a `/`, on the file name): (package, path), sorted.
pub fn search(db: &Db, glob: &str) -> Result<Vec<(String, String)>, StatusError> {
    let mut out = Vec::new();
    for name in installed(db)?.keys() {
        for path in files(db, name)? {
            let base = path.rsplit('/').next().unwrap_or(&path);
            let hit = if glob.contains('/') {
                glob_matches(glob, &path)
            } else {
                glob_matches(glob, base) || glob_matches(glob, &path)
            };
            if hit {
                out.push((name.clone(), path));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The names a package's `Depends` and `Pre-Depends` mention (each alternative).
pub(crate) fn dependency_names(p: &Paragraph) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for f in ["Depends", "Pre-Depends"] {
        if let Ok(rels) = parse_relations(field(p, f)) {
            for alt in rels {
                for r in alt.relations() {
                    out.insert(r.name().to_string());
                }
            }
        }
    }
    out
}

/// The names a package answers to: its own and what it `Provides`.
fn provided_names(p: &Paragraph) -> BTreeSet<String> {
    let mut out = BTreeSet::from([field(p, "Package").to_string()]);
    if let Ok(rels) = parse_relations(field(p, "Provides")) {
        for alt in rels {
            for r in alt.relations() {
                out.insert(r.name().to_string());
            }
        }
    }
    out
}

/// The installed packages that depend on `name` (or on something it provides); with
/// `recursive`, also those that depend on those, and so on. Sorted, without `name`.
pub fn whatdepends(db: &Db, name: &str, recursive: bool) -> Result<Vec<String>, StatusError> {
    let all = installed(db)?;
    let mut wanted: BTreeSet<String> = match all.get(name) {
        Some(p) => provided_names(p),
        None => BTreeSet::from([name.to_string()]),
    };
    let mut found: BTreeSet<String> = BTreeSet::new();
    loop {
        let new: Vec<String> = all
            .iter()
            .filter(|(n, p)| {
                n.as_str() != name
                    && !found.contains(n.as_str())
                    && !dependency_names(p).is_disjoint(&wanted)
            })
            .map(|(n, _)| n.clone())
            .collect();
        if new.is_empty() {
            break;
        }
        for n in new {
            if recursive && let Some(p) = all.get(&n) {
                wanted.extend(provided_names(p));
            }
            found.insert(n);
        }
        if !recursive {
            break;
        }
    }
    Ok(found.into_iter().collect())
}

/// The packages (installed, or offered by a feed) that are or provide `name`:
/// (package, version, where), sorted; `where` is `installed` or `feed NAME`.
pub fn whatprovides(
    db: &Db,
    available: &[(String, Paragraph)],
    name: &str,
) -> Result<Vec<(String, String, String)>, StatusError> {
    let mut out = BTreeSet::new();
    for (n, p) in installed(db)? {
        if provided_names(&p).contains(name) {
            out.insert((n, field(&p, "Version").to_string(), "installed".to_string()));
        }
    }
    for (feed, p) in available {
        if provided_names(p).contains(name) {
            out.insert((
                field(p, "Package").to_string(),
                field(p, "Version").to_string(),
                format!("feed {feed}"),
            ));
        }
    }
    Ok(out.into_iter().collect())
}

/// A package's `Depends` and `Pre-Depends`, one relation group (alternatives joined by `|`)
/// each, as written.
pub fn depends(p: &Paragraph) -> Vec<String> {
    let mut out = Vec::new();
    for f in ["Pre-Depends", "Depends"] {
        let text = field(p, f);
        if text.is_empty() {
            continue;
        }
        for part in text.split(',') {
            let part = part.split_whitespace().collect::<Vec<_>>().join(" ");
            if !part.is_empty() {
                out.push(part);
            }
        }
    }
    out
}

/// The installed packages that were pulled in as dependencies (`Auto-Installed: yes`) and
/// that nothing installed on request needs any more, directly or through other packages'
/// `Depends`/`Pre-Depends` (a name is met by a package of that name or one providing it).
/// Held packages are kept, and so is everything they need. Sorted.
pub fn orphans(db: &Db) -> Result<Vec<String>, StatusError> {
    let all = installed(db)?;
    let auto = |p: &Paragraph| field(p, "Auto-Installed") == "yes";
    let mut providers: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for (n, p) in &all {
        for name in provided_names(p) {
            providers.entry(name).or_default().push(n.as_str());
        }
    }
    let mut needed: BTreeSet<&str> = all
        .iter()
        .filter(|(_, p)| !auto(p) || crate::status::is_held(p))
        .map(|(n, _)| n.as_str())
        .collect();
    let mut queue: Vec<&str> = needed.iter().copied().collect();
    while let Some(n) = queue.pop() {
        let Some(p) = all.get(n) else { continue };
        for dep in dependency_names(p) {
            for &q in providers.get(&dep).map(Vec::as_slice).unwrap_or(&[]) {
                if needed.insert(q) {
                    queue.push(q);
                }
            }
        }
    }
    Ok(all
        .keys()
        .filter(|n| !needed.contains(n.as_str()))
        .cloned()
        .collect())
}

/// Why `compare-versions` could not answer.
#[derive(Debug, PartialEq, Eq)]
pub enum CompareError {
    BadVersion(String, String),
    BadOperator(String),
}

impl fmt::Display for CompareError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompareError::BadVersion(v, e) => write!(f, "{v:?} is not a version: {e}"),
            CompareError::BadOperator(op) => write!(
                f,
                "{op:?} is not an operator (one of <= >= << >> =; opkg also reads < and > as <= and >=)"
            ),
        }
    }
}

/// `compare-versions V1 OP V2` with opkg's operators: `<=`/`<` (less or equal), `>=`/`>`,
/// `<<`, `>>`, `=` (libopkg/pkg.c `pkg_version_satisfied`: `<` and `>` are the deprecated
/// spellings of `<=` and `>=`, as in dpkg).
pub fn compare_versions(v1: &str, op: &str, v2: &str) -> Result<bool, CompareError> {
    let parse = |v: &str| {
        Version::parse(v).map_err(|e| CompareError::BadVersion(v.to_string(), e.to_string()))
    };
    let (a, b) = (parse(v1)?, parse(v2)?);
    let op = Op::parse(op).ok_or_else(|| CompareError::BadOperator(op.to_string()))?;
    Ok(op.matches(a.cmp(&b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_versions_uses_opkgs_operators() {
        assert_eq!(compare_versions("1.0", "<<", "1.0-1"), Ok(true));
        assert_eq!(compare_versions("1.0", "<", "1.0"), Ok(true));
        assert_eq!(compare_versions("1.0", "<<", "1.0"), Ok(false));
        assert_eq!(compare_versions("2:0.1", ">>", "1:9.9"), Ok(true));
        assert_eq!(compare_versions("1.0~rc1", ">=", "1.0"), Ok(false));
        assert_eq!(compare_versions("1.0", "=", "1.0"), Ok(true));
        assert!(matches!(
            compare_versions("1.0", "!=", "1.0"),
            Err(CompareError::BadOperator(_))
        ));
    }

    #[test]
    fn depends_lists_each_group_as_written() {
        let p = Paragraph::parse(
            "Package: a\nVersion: 1\nPre-Depends: base\nDepends: libc,  libx (>= 2) | liby\n",
        )
        .unwrap();
        assert_eq!(depends(&p), ["base", "libc", "libx (>= 2) | liby"]);
    }
}
