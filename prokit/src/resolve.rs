//! Dependency resolution: this module owns the choice of what to install, upgrade or remove
//! for a set of requests, given the verified feed indexes and the installed database. It is
//! pure logic: no I/O, no printing.
//!
//! # Model
//! A [`Universe`] holds the *available* packages (stanzas of verified `Packages` indexes, with
//! their feed and the feed's position in the configuration), the *installed* packages (stanzas
//! of opkg's `status` file) and the names assumed installed (`--assume-installed`).
//! [`Universe::resolve`] turns [`Request`]s into a [`Plan`]: the packages to install in an order
//! where each comes after everything it depends on, plus the installed packages removed
//! because a new package both Conflicts with and Replaces them.
//!
//! # Rules
//! - `Depends` and `Pre-Depends` with `<<`, `<=`, `=`, `>=`, `>>` (and the obsolete `<`, `>`,
//!   read as `<=`, `>=`) and alternatives `a | b`. A dependency already met by an installed
//!   package, a package chosen for this plan, or an assumed name is left alone (so an
//!   installed or already chosen alternative wins over the first alternative). Otherwise the
//!   alternatives are tried in order; for each, the package of that name (newest first), then
//!   the packages providing it (by provider name, newest first).
//! - `Provides`, including versioned `Provides: foo (= 1.2)`. An unversioned provide never
//!   satisfies a versioned dependency (dpkg's rule). Only `=` is allowed in `Provides`.
//! - `Conflicts` and `Breaks` are checked both ways between every new package and every
//!   package that will be present (installed or planned), with version constraints, through
//!   `Provides` too; a package never conflicts with another version of itself, so the Debian
//!   idiom `Provides: x, Conflicts: x` works. When a new package conflicts with an installed
//!   package that nothing else pins, the installed package is upgraded to a version without the
//!   conflict if the feeds have one, or removed if the new package also `Replaces` it
//!   (reported in [`Plan::removes`]); otherwise the conflict is an error.
//! - Candidate order for a name: newest version across all feeds (unless the request pins
//!   `pkg=version`), then higher architecture priority, then the feed listed first, then the
//!   stanza seen first.
//! - Architectures: with no `arch` lines every stanza is accepted. With `arch` lines only the
//!   listed architectures are, `all` included: as in opkg, `Architecture: all` packages are
//!   accepted only when `arch all PRIO` is listed (opkg's default configuration lists it), and
//!   a stanza without an `Architecture` field is accepted only when no `arch` lines are given.
//!   The status file is never filtered by architecture.
//! - An installed package that satisfies a dependency is kept; it is upgraded only when it was
//!   requested by name, when a dependency needs a version it does not have, or when a new
//!   package conflicts with or breaks it. Upgrading an installed package re-checks every
//!   installed and planned package depending on it; an installed dependent that would break is
//!   upgraded too when the feeds have a version that fits, otherwise that choice fails (and
//!   the search tries the next one). Nothing is downgraded unless a request pins an older
//!   version; an upgraded package that was not requested keeps its `Auto-Installed` flag.
//! - A request for an installed package upgrades it when the feeds have a newer version (and
//!   fails, explaining why, when that version cannot be installed, as opkg does); at the newest
//!   version it gives no step (it is listed in [`Plan::already_installed`]). A pinned request
//!   may downgrade.
//! - Status entries whose state is `not-installed` or `config-files` are not installed. An
//!   assumed name satisfies every dependency on it, whatever the version constraint, but takes
//!   no part in conflicts.
//!
//! # Search
//! A depth-first search over choice points (alternatives, candidate versions, providers, how to
//! get rid of a conflicting installed package), with an undo trail, processing obligations in
//! breadth-first order (all requests first). Two things keep it from going exponential on the
//! common failures: (1) a candidate with a dependency that nothing in any feed, installed or
//! assumed can meet, whatever else is chosen, is learnt *dead* for the rest of the search, and the
//! search jumps straight back to the choice that brought it in (the same goes, transitively, for
//! a candidate all of whose options for a dependency are dead); (2) a step budget
//! ([`DEFAULT_STEP_BUDGET`], [`Universe::set_step_budget`]) after which resolution fails with
//! [`ResolveError::TooComplex`] and the closest failure seen. When no solution exists, the error
//! explains the failure with the longest dependency chain (the first such one found, so the
//! output is deterministic), e.g. `cannot install a: a 1.0 depends on b (>= 2), but the feeds
//! have only b 1.0`.
//!
//! Install order: the packages of the plan are ordered by strongly connected components of the
//! (Pre-)Depends graph, dependencies first. A cycle of plain `Depends` is broken
//! deterministically (inside a cycle, `Pre-Depends` are honoured and the package with the
//! fewest unmet dependencies, then the smallest name, goes first); a cycle made of `Pre-Depends`
//! alone is an error.
//!
//! # Why not `pubgrub`
//! PubGrub models a dependency as one version range of one package: it has no disjunctions
//! (`a | b`), no virtual packages, no notion of a package that is installed and should be
//! preferred, and no conflicts with packages outside the solution. Each would have to be encoded
//! as synthetic proxy packages, whose names would then appear in its derivation-tree
//! explanations, and removing an installed package on `Conflicts` + `Replaces` does not fit its
//! model at all. The feeds prokit serves are small (thousands of packages, rarely more than one
//! version each), so a clear backtracking resolver with the learning and budget above is enough
//! and keeps the error messages in the user's terms.

use feeds::control::Paragraph;
use feeds::relation::{Alternatives, Op, Relation, parse_relations};
use feeds::version::Version;
use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::rc::Rc;

/// How many candidate applications [`Universe::resolve`] tries before giving up with
/// [`ResolveError::TooComplex`]. Ordinary resolutions use one per package in the plan.
pub const DEFAULT_STEP_BUDGET: usize = 200_000;

/// Most alternative reasons or provider names spelled out in one error message.
const MAX_LISTED: usize = 6;

/// Why a universe could not be built or a request could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// A stanza has a missing or malformed field. `origin` names the feed (`feed "base"`) or
    /// the installed database.
    #[error("{origin}: package {package:?}: field {field}: {message}")]
    BadField {
        /// `feed "NAME"` or `installed status`.
        origin: String,
        /// The package the stanza describes (empty when the name itself is missing).
        package: String,
        /// The offending field.
        field: String,
        /// What is wrong and what was expected.
        message: String,
    },
    /// A request is malformed (`pkg=version` with a bad name or version).
    #[error("invalid request {request:?}: {message}")]
    BadRequest {
        /// The request as given.
        request: String,
        /// What is wrong.
        message: String,
    },
    /// No plan satisfies the requests. `chain` is the dependency chain from the request to
    /// the failure (`a 1.0 depends on b (>= 2)`), `reason` the failure itself.
    #[error("cannot install {request}: {}", explain(chain, reason))]
    Unsatisfiable {
        /// The request the failure descends from (`a` or `a=1.0`).
        request: String,
        /// The links of the chain, request first.
        chain: Vec<String>,
        /// Why the last link cannot be satisfied.
        reason: String,
    },
    /// The packages to install pre-depend on each other in a cycle: none can go first.
    #[error("Pre-Depends cycle, no install order exists: {}", cycle.join(" -> "))]
    PreDependsCycle {
        /// The packages of the cycle, `name version`, the first repeated at the end.
        cycle: Vec<String>,
    },
    /// The search used up its step budget.
    #[error(
        "dependency resolution gave up after {steps} steps (the step budget); the closest it came: {closest}"
    )]
    TooComplex {
        /// Steps used.
        steps: usize,
        /// The deepest failure seen, worded as an [`ResolveError::Unsatisfiable`] message.
        closest: String,
    },
}

fn explain(chain: &[String], reason: &str) -> String {
    if chain.is_empty() {
        reason.to_string()
    } else {
        format!("{}, but {reason}", chain.join(", "))
    }
}

/// One thing to install: a package (or virtual) name, optionally pinned to an exact version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Package name, or a virtual name some package provides.
    pub name: String,
    /// `pkg=version`: this exact version (compared as dpkg does).
    pub version: Option<String>,
}

impl Request {
    /// A request for the best candidate of `name`.
    pub fn new(name: &str) -> Request {
        Request {
            name: name.to_string(),
            version: None,
        }
    }

    /// Parses the command-line form `name` or `name=version`.
    pub fn parse(text: &str) -> Result<Request, ResolveError> {
        let request = match text.split_once('=') {
            Some((name, version)) => Request {
                name: name.to_string(),
                version: Some(version.to_string()),
            },
            None => Request::new(text),
        };
        request.check()?;
        Ok(request)
    }

    /// `name` or `name=version`, as written on a command line.
    pub fn label(&self) -> String {
        match &self.version {
            Some(v) => format!("{}={v}", self.name),
            None => self.name.clone(),
        }
    }

    /// Checks the name and the pinned version; returns the relation the request stands for.
    fn check(&self) -> Result<Relation, ResolveError> {
        let bad = |message: String| ResolveError::BadRequest {
            request: self.label(),
            message,
        };
        if !is_package_name(&self.name) {
            return Err(bad(format!(
                "{:?} is not a package name (expected a letter or digit, then letters, digits, `+`, `-`, `.` or `_`)",
                self.name
            )));
        }
        let text = match &self.version {
            Some(v) => {
                Version::parse(v).map_err(|e| bad(e.to_string()))?;
                format!("{} (= {v})", self.name)
            }
            None => self.name.clone(),
        };
        Relation::parse(&text).map_err(|e| bad(e.to_string()))
    }
}

/// What to do, in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// Packages to install or upgrade, in install order: each after everything it depends or
    /// pre-depends on (cycles of plain Depends are broken deterministically).
    pub steps: Vec<Step>,
    /// Installed packages to remove (sorted): each is conflicted with and replaced by a
    /// package of `steps`. Remove them before installing their replacement.
    pub removes: Vec<String>,
    /// Requested packages already installed at the version the request chose (sorted): no
    /// step; the caller may mark them as installed by the user.
    pub already_installed: Vec<String>,
}

/// One package to install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Package name.
    pub name: String,
    /// Version, as written in the index.
    pub version: String,
    /// Architecture, as written in the index.
    pub arch: String,
    /// Name of the feed it comes from.
    pub feed: String,
    /// The index stanza (Filename, Size, SHA256sum, …).
    pub stanza: Paragraph,
    /// True when pulled in as a dependency; false when requested. An upgraded installed
    /// package that was not requested keeps its `Auto-Installed` flag.
    pub auto: bool,
    /// The installed version this replaces, if any.
    pub upgrade_from: Option<String>,
}

type PkgId = usize;

/// A parsed package, available or installed.
#[derive(Debug)]
struct Pkg {
    name: String,
    version: Version,
    arch: String,
    arch_prio: u32,
    feed: String,
    feed_order: usize,
    stanza: Paragraph,
    /// Pre-Depends groups (flag true) first, then Depends.
    deps: Vec<(Alternatives, bool)>,
    provides: Vec<(String, Option<Version>)>,
    /// Conflicts (flag false) and Breaks (flag true).
    conflicts: Vec<(Relation, bool)>,
    replaces: Vec<Relation>,
    installed: bool,
    auto_installed: bool,
}

impl Pkg {
    /// Whether this package, by its own name and version or by one of its provides, satisfies
    /// `rel`.
    fn satisfies(&self, rel: &Relation) -> bool {
        rel.satisfied_by(&self.name, Some(&self.version)) || self.provides_for(rel)
    }

    fn provides_for(&self, rel: &Relation) -> bool {
        self.provides
            .iter()
            .any(|(name, version)| rel.satisfied_by(name, version.as_ref()))
    }

    /// Its own name, then the names it provides.
    fn names(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.name.as_str()).chain(self.provides.iter().map(|(n, _)| n.as_str()))
    }

    fn describe(&self) -> String {
        if self.installed {
            format!("installed {} {}", self.name, self.version)
        } else {
            format!("{} {}", self.name, self.version)
        }
    }

    fn same_build(&self, other: &Pkg) -> bool {
        self.version == other.version && self.arch == other.arch
    }
}

/// The packages resolution chooses from: available (feeds), installed (status) and assumed.
#[derive(Debug, Default)]
pub struct Universe {
    arch_prios: HashMap<String, u32>,
    pkgs: Vec<Pkg>,
    /// Available candidates per name, best first.
    avail_by_name: HashMap<String, Vec<PkgId>>,
    /// Available providers per virtual name, by provider name then best first.
    avail_providers: HashMap<String, Vec<PkgId>>,
    installed_by_name: HashMap<String, PkgId>,
    installed_providers: HashMap<String, Vec<PkgId>>,
    /// Installed packages declaring Conflicts/Breaks on a name.
    installed_declared: HashMap<String, Vec<PkgId>>,
    /// Installed packages with a (Pre-)Depends group naming a name.
    installed_rdeps: HashMap<String, Vec<PkgId>>,
    assumed: HashSet<String>,
    /// Names seen only in stanzas of architectures not configured, with those architectures.
    wrong_arch: HashMap<String, BTreeSet<String>>,
    step_budget: Option<usize>,
}

impl Universe {
    /// Architecture priorities from opkg.conf `arch NAME PRIO` lines (higher wins). Empty =
    /// accept every arch.
    pub fn new(arch_prios: &[(String, u32)]) -> Universe {
        Universe {
            arch_prios: arch_prios.iter().cloned().collect(),
            ..Universe::default()
        }
    }

    /// Sets how many candidate applications a resolution may try (default
    /// [`DEFAULT_STEP_BUDGET`]).
    pub fn set_step_budget(&mut self, steps: usize) {
        self.step_budget = Some(steps);
    }

    /// One stanza of a verified Packages index. `feed` names the feed, `feed_order` is its
    /// position in the config (lower = listed first). Stanzas whose Architecture is not in
    /// `arch_prios` (when `arch_prios` is non-empty) are ignored. Bad Version/relation fields:
    /// an error naming feed, package and field.
    pub fn add_available(
        &mut self,
        stanza: &Paragraph,
        feed: &str,
        feed_order: usize,
    ) -> Result<(), ResolveError> {
        let origin = format!("feed {feed:?}");
        let name = package_name(stanza, &origin)?;
        let arch = stanza.get("Architecture").unwrap_or("").to_string();
        let arch_prio = if self.arch_prios.is_empty() {
            0
        } else if let Some(&prio) = self.arch_prios.get(&arch) {
            prio
        } else {
            let shown = if arch.is_empty() {
                "(none)".to_string()
            } else {
                arch
            };
            self.wrong_arch.entry(name).or_default().insert(shown);
            return Ok(());
        };
        let mut pkg = parse_pkg(stanza, &origin, name, false)?;
        pkg.arch = arch;
        pkg.arch_prio = arch_prio;
        pkg.feed = feed.to_string();
        pkg.feed_order = feed_order;
        let id = self.pkgs.len();
        let provided: BTreeSet<String> = pkg
            .provides
            .iter()
            .map(|(n, _)| n.clone())
            .filter(|n| *n != pkg.name)
            .collect();
        let name = pkg.name.clone();
        self.pkgs.push(pkg);
        let pkgs = &self.pkgs;
        let list = self.avail_by_name.entry(name).or_default();
        let at = list.partition_point(|&other| preference(pkgs, other, id).is_lt());
        list.insert(at, id);
        for virtual_name in provided {
            let list = self.avail_providers.entry(virtual_name).or_default();
            let at = list.partition_point(|&other| {
                pkgs[other]
                    .name
                    .cmp(&pkgs[id].name)
                    .then_with(|| preference(pkgs, other, id))
                    .is_lt()
            });
            list.insert(at, id);
        }
        Ok(())
    }

    /// One stanza of the installed status database (opkg status file). Entries whose state
    /// (third word of `Status`) is `not-installed` or `config-files` are skipped; a second
    /// entry for an installed name is ignored (the first wins).
    pub fn add_installed(&mut self, stanza: &Paragraph) -> Result<(), ResolveError> {
        let origin = "installed status".to_string();
        let name = package_name(stanza, &origin)?;
        if let Some(status) = stanza.get("Status") {
            let state = status.split_whitespace().nth(2).unwrap_or("");
            if matches!(state, "not-installed" | "config-files") {
                return Ok(());
            }
        }
        if self.installed_by_name.contains_key(&name) {
            return Ok(());
        }
        let mut pkg = parse_pkg(stanza, &origin, name, true)?;
        pkg.arch = stanza.get("Architecture").unwrap_or("").to_string();
        pkg.auto_installed = stanza
            .get("Auto-Installed")
            .is_some_and(|v| v.eq_ignore_ascii_case("yes"));
        let id = self.pkgs.len();
        self.installed_by_name.insert(pkg.name.clone(), id);
        let mut seen = HashSet::new();
        for (virtual_name, _) in &pkg.provides {
            if *virtual_name != pkg.name && seen.insert(virtual_name.as_str()) {
                push_unique(&mut self.installed_providers, virtual_name, id);
            }
        }
        for (rel, _) in &pkg.conflicts {
            push_unique(&mut self.installed_declared, rel.name(), id);
        }
        for (group, _) in &pkg.deps {
            for rel in group.relations() {
                push_unique(&mut self.installed_rdeps, rel.name(), id);
            }
        }
        self.pkgs.push(pkg);
        Ok(())
    }

    /// A name (package or virtual) treated as installed and satisfying any version constraint
    /// (what OpenWrt indexes leave out: libc, kernel). `--assume-installed`.
    pub fn assume_installed(&mut self, name: &str) {
        self.assumed.insert(name.to_string());
    }

    /// Installed packages that depend (Depends/Pre-Depends) on `name` or on something it
    /// provides, which would break if it were removed: a dependency group of theirs that the
    /// installed `name` satisfies and nothing else installed (or assumed) does. Direct
    /// dependents only, sorted. Empty when `name` is not installed.
    pub fn reverse_dependents(&self, name: &str) -> Vec<String> {
        let Some(&id) = self.installed_by_name.get(name) else {
            return Vec::new();
        };
        let target = &self.pkgs[id];
        let mut out = BTreeSet::new();
        for n in target.names() {
            for &m in self.installed_rdeps.get(n).into_iter().flatten() {
                if m == id {
                    continue;
                }
                let broken = self.pkgs[m].deps.iter().any(|(group, _)| {
                    let rels = group.relations();
                    rels.iter().any(|r| target.satisfies(r))
                        && !rels.iter().any(|r| self.installed_satisfies_without(r, id))
                });
                if broken {
                    out.insert(self.pkgs[m].name.clone());
                }
            }
        }
        out.into_iter().collect()
    }

    fn installed_satisfies_without(&self, rel: &Relation, excluded: PkgId) -> bool {
        if self.assumed.contains(rel.name()) {
            return true;
        }
        let by_name = self
            .installed_by_name
            .get(rel.name())
            .is_some_and(|&i| i != excluded && self.pkgs[i].satisfies(rel));
        by_name
            || self
                .installed_providers
                .get(rel.name())
                .into_iter()
                .flatten()
                .any(|&i| i != excluded && self.pkgs[i].provides_for(rel))
    }

    /// Chooses what to install for `requests`; see the module documentation for the rules.
    pub fn resolve(&self, requests: &[Request]) -> Result<Plan, ResolveError> {
        let mut rels = Vec::with_capacity(requests.len());
        for request in requests {
            rels.push(request.check()?);
        }
        let mut solver = Solver::new(self, requests, rels);
        solver.run()?;
        solver.plan()
    }
}

fn push_unique(map: &mut HashMap<String, Vec<PkgId>>, key: &str, id: PkgId) {
    let list = map.entry(key.to_string()).or_default();
    if list.last() != Some(&id) {
        list.push(id);
    }
}

/// Candidate order: newest version, higher arch priority, earlier feed, earlier stanza.
fn preference(pkgs: &[Pkg], a: PkgId, b: PkgId) -> Ordering {
    let (x, y) = (&pkgs[a], &pkgs[b]);
    y.version
        .cmp(&x.version)
        .then(y.arch_prio.cmp(&x.arch_prio))
        .then(x.feed_order.cmp(&y.feed_order))
        .then(a.cmp(&b))
}

/// dpkg's rule: a letter or digit, then letters, digits, `+`, `-`, `.` or `_`.
fn is_package_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-._".contains(c))
}

fn package_name(stanza: &Paragraph, origin: &str) -> Result<String, ResolveError> {
    let name = stanza.get("Package").unwrap_or("");
    let message = if name.is_empty() {
        "missing (every stanza needs a package name)".to_string()
    } else if !is_package_name(name) {
        "not a valid package name (expected a letter or digit, then letters, digits, `+`, `-`, `.` or `_`)".to_string()
    } else {
        return Ok(name.to_string());
    };
    Err(ResolveError::BadField {
        origin: origin.to_string(),
        package: name.to_string(),
        field: "Package".into(),
        message,
    })
}

/// Parses the fields resolution needs; arch, feed and flags are filled in by the caller.
fn parse_pkg(
    stanza: &Paragraph,
    origin: &str,
    name: String,
    installed: bool,
) -> Result<Pkg, ResolveError> {
    let bad = |field: &str, message: String| ResolveError::BadField {
        origin: origin.to_string(),
        package: name.clone(),
        field: field.to_string(),
        message,
    };
    let version = match stanza.get("Version") {
        None | Some("") => return Err(bad("Version", "missing".into())),
        Some(text) => Version::parse(text).map_err(|e| bad("Version", e.to_string()))?,
    };
    let groups = |name: &str| -> Result<Vec<Alternatives>, ResolveError> {
        parse_relations(stanza.get(name).unwrap_or("")).map_err(|e| bad(name, e.to_string()))
    };
    let single = |name: &str| -> Result<Vec<Relation>, ResolveError> {
        let mut out = Vec::new();
        for group in groups(name)? {
            match group.relations() {
                [rel] => out.push(rel.clone()),
                _ => {
                    return Err(bad(
                        name,
                        format!("alternatives (`|`) are not allowed here, found {group}"),
                    ));
                }
            }
        }
        Ok(out)
    };
    let mut deps = Vec::new();
    for (name, pre) in [("Pre-Depends", true), ("Depends", false)] {
        deps.extend(groups(name)?.into_iter().map(|g| (g, pre)));
    }
    let mut provides = Vec::new();
    for rel in single("Provides")? {
        let version = match rel.constraint() {
            None => None,
            Some((Op::Eq, v)) => Some(v.clone()),
            Some(_) => {
                return Err(bad(
                    "Provides",
                    format!("only `=` versions are allowed in Provides, found {rel}"),
                ));
            }
        };
        provides.push((rel.name().to_string(), version));
    }
    let mut conflicts: Vec<(Relation, bool)> = Vec::new();
    for (field, breaks) in [("Conflicts", false), ("Breaks", true)] {
        conflicts.extend(single(field)?.into_iter().map(|r| (r, breaks)));
    }
    let replaces = single("Replaces")?;
    Ok(Pkg {
        name,
        version,
        arch: String::new(),
        arch_prio: 0,
        feed: String::new(),
        feed_order: 0,
        stanza: stanza.clone(),
        deps,
        provides,
        conflicts,
        replaces,
        installed,
        auto_installed: false,
    })
}

// ---------------------------------------------------------------------------------------------
// The search.

/// What has been decided about a name in the current branch. Names without a decision are
/// as the status file says (installed or absent).
#[derive(Debug, Clone, Copy)]
enum Decision {
    /// The installed package stays (a request found it at the chosen version).
    Keep(PkgId),
    /// This available package will be installed (replacing any installed one).
    Install { id: PkgId, requested: bool },
    /// The installed package must go (it conflicts with `by`, a new one); a `Replace`
    /// obligation decides between upgrading and removing it.
    Doomed { by: PkgId },
    /// The installed package is removed: `by` conflicts with and replaces it.
    Remove { by: PkgId },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Opt {
    Keep(PkgId),
    Install { id: PkgId, requested: bool },
    Remove { victim: PkgId, by: PkgId },
}

/// A link of the explanation chain, shared by everything that descends from it.
#[derive(Debug)]
struct Link {
    kind: LinkKind,
    parent: Option<Rc<Link>>,
    depth: usize,
}

#[derive(Debug, Clone, Copy)]
enum LinkKind {
    /// The root: request number.
    Request(usize),
    /// `from` (pre-)depends on its group number `group`.
    Dep { from: PkgId, group: usize },
    /// `declarer`'s conflict number `index` hits `target`; `victim` (one of the two, the
    /// installed one) must be upgraded or removed.
    Conflict {
        declarer: PkgId,
        index: usize,
        target: PkgId,
        victim: PkgId,
    },
}

impl Drop for Link {
    /// Unlinks long chains iteratively (the default drop would recurse once per link).
    fn drop(&mut self) {
        let mut next = self.parent.take();
        while let Some(rc) = next {
            match Rc::try_unwrap(rc) {
                Ok(mut link) => next = link.parent.take(),
                Err(_) => break,
            }
        }
    }
}

type Chain = Rc<Link>;

fn extend(parent: &Chain, kind: LinkKind) -> Chain {
    Rc::new(Link {
        kind,
        parent: Some(parent.clone()),
        depth: parent.depth + 1,
    })
}

#[derive(Debug, Clone, Copy)]
enum ObKind {
    Request(usize),
    Dep {
        from: PkgId,
        group: usize,
    },
    /// `victim` (installed, doomed) must be upgraded, or removed in favour of `by` (which
    /// conflicts with and replaces it) when that is set.
    Replace {
        victim: PkgId,
        by: Option<PkgId>,
    },
}

#[derive(Debug)]
struct Obligation {
    kind: ObKind,
    chain: Chain,
}

/// Why one relation of a group could not be met.
#[derive(Debug, Clone)]
enum RelWhy {
    /// Nothing by that name or providing it anywhere.
    Missing(Relation),
    /// Packages exist, no version fits.
    NoMatch(Relation),
    /// The name is already decided for a package that does not fit.
    Held { rel: Relation, holder: PkgId },
    /// The installed package of that name is being removed.
    Removed { victim: PkgId, by: PkgId },
    /// The installed package of that name cannot stay next to `by` (Conflicts/Breaks), and
    /// no other version of it fits.
    Doomed { victim: PkgId, by: PkgId },
    /// Candidates fit but each has been found uninstallable.
    Dead(Relation),
    /// Only this candidate, older than the installed version, fits.
    Downgrade(PkgId),
}

#[derive(Debug, Clone)]
enum Why {
    Rels(Vec<RelWhy>),
    Conflict {
        declarer: PkgId,
        index: usize,
        target: PkgId,
    },
}

#[derive(Debug)]
struct Failure {
    chain: Chain,
    why: Why,
}

enum Eval {
    Done,
    Options { options: Vec<Opt>, fixed: bool },
    Fail { why: Why, fixed: bool },
}

struct Choice {
    ob: usize,
    options: Vec<Opt>,
    /// True when the options did not depend on earlier decisions (only on the universe and
    /// on dead candidates): if they all die, so does the obligation's owner.
    fixed: bool,
    next: usize,
    applied: Option<Opt>,
    trail_len: usize,
    queue_len: usize,
}

enum Undo<'u> {
    Decision(&'u str, Option<Decision>),
    Provider(&'u str),
    Declared(&'u str),
    Rdep(&'u str),
}

struct Solver<'u> {
    u: &'u Universe,
    requests: &'u [Request],
    request_rels: Vec<Relation>,
    decisions: HashMap<&'u str, Decision>,
    trail: Vec<Undo<'u>>,
    queue: Vec<Obligation>,
    head: usize,
    /// Planned packages by the virtual names they provide.
    sel_providers: HashMap<&'u str, Vec<PkgId>>,
    /// Planned packages by the names they conflict with or break.
    sel_declared: HashMap<&'u str, Vec<PkgId>>,
    /// Planned packages by the names their dependency groups mention.
    sel_rdeps: HashMap<&'u str, Vec<PkgId>>,
    choices: Vec<Choice>,
    /// Candidates that can never be installed (learnt; kept across backtracking).
    dead: HashSet<PkgId>,
    dead_changed: bool,
    best: Option<Failure>,
    steps: usize,
    budget: usize,
}

impl<'u> Solver<'u> {
    fn new(u: &'u Universe, requests: &'u [Request], request_rels: Vec<Relation>) -> Self {
        let queue = (0..requests.len())
            .map(|i| Obligation {
                kind: ObKind::Request(i),
                chain: Rc::new(Link {
                    kind: LinkKind::Request(i),
                    parent: None,
                    depth: 0,
                }),
            })
            .collect();
        Solver {
            u,
            requests,
            request_rels,
            decisions: HashMap::new(),
            trail: Vec::new(),
            queue,
            head: 0,
            sel_providers: HashMap::new(),
            sel_declared: HashMap::new(),
            sel_rdeps: HashMap::new(),
            choices: Vec::new(),
            dead: HashSet::new(),
            dead_changed: false,
            best: None,
            steps: 0,
            budget: u.step_budget.unwrap_or(DEFAULT_STEP_BUDGET),
        }
    }

    fn pkg(&self, id: PkgId) -> &'u Pkg {
        &self.u.pkgs[id]
    }

    // --- the world as the current branch sees it -------------------------------------------

    fn decision(&self, name: &str) -> Option<Decision> {
        self.decisions.get(name).copied()
    }

    /// The package of that name that will be present.
    fn present_by_name(&self, name: &str) -> Option<PkgId> {
        match self.decision(name) {
            Some(Decision::Keep(id) | Decision::Install { id, .. }) => Some(id),
            Some(Decision::Doomed { .. } | Decision::Remove { .. }) => None,
            None => self.u.installed_by_name.get(name).copied(),
        }
    }

    fn is_present(&self, id: PkgId) -> bool {
        self.present_by_name(&self.pkg(id).name) == Some(id)
    }

    /// Present packages (other than the one named `name`) providing `name`.
    fn present_providers(&self, name: &str) -> impl Iterator<Item = PkgId> + '_ {
        let installed = self.u.installed_providers.get(name).into_iter().flatten();
        let planned = self.sel_providers.get(name).into_iter().flatten();
        installed
            .copied()
            .filter(|&id| self.is_present(id))
            .chain(planned.copied())
    }

    fn present_satisfier(&self, rel: &Relation) -> Option<PkgId> {
        if let Some(id) = self.present_by_name(rel.name())
            && rel.satisfied_by(rel.name(), Some(&self.pkg(id).version))
        {
            return Some(id);
        }
        self.present_providers(rel.name())
            .find(|&id| self.pkg(id).provides_for(rel))
    }

    fn group_satisfied(&self, group: &Alternatives) -> bool {
        group
            .relations()
            .iter()
            .any(|r| self.u.assumed.contains(r.name()) || self.present_satisfier(r).is_some())
    }

    /// Whether `id` is an available build identical to the installed package of its name.
    fn same_as_installed(&self, id: PkgId) -> bool {
        let p = self.pkg(id);
        self.u
            .installed_by_name
            .get(&p.name)
            .is_some_and(|&i| self.pkg(i).same_build(p))
    }

    /// Whether installing `id` would be a fresh install or an upgrade (not a reinstall, not a
    /// downgrade: only a pinned request downgrades).
    fn new_or_newer(&self, id: PkgId) -> bool {
        let p = self.pkg(id);
        self.u
            .installed_by_name
            .get(&p.name)
            .is_none_or(|&i| p.version > self.pkg(i).version)
    }

    // --- evaluating obligations ------------------------------------------------------------

    fn evaluate(&self, ob: usize) -> Eval {
        match self.queue[ob].kind {
            ObKind::Request(i) => self.eval_request(i),
            ObKind::Dep { from, group } => self.eval_dep(from, group),
            ObKind::Replace { victim, by } => self.eval_replace(ob, victim, by),
        }
    }

    fn eval_request(&self, i: usize) -> Eval {
        let request = &self.requests[i];
        let rel = self.request_rels[i].clone();
        let name = request.name.as_str();
        if self.u.assumed.contains(name) {
            return Eval::Done;
        }
        let available = self.u.avail_by_name.get(name);
        let installed = self.u.installed_by_name.get(name).copied();
        if available.is_none() && installed.is_none() {
            // A virtual name: any provider will do.
            if self.present_satisfier(&rel).is_some() {
                return Eval::Done;
            }
            let mut options = Vec::new();
            let mut fixed = true;
            let why = self.options_for_rel(&rel, true, &mut options, &mut fixed);
            return finish(options, fixed, vec![why]);
        }
        let fits = |id: &PkgId| rel.matches_constraint(&self.pkg(*id).version);
        match self.decision(name) {
            Some(Decision::Keep(id) | Decision::Install { id, .. }) => {
                if fits(&id) {
                    Eval::Done
                } else {
                    let why = RelWhy::Held { rel, holder: id };
                    Eval::Fail {
                        why: Why::Rels(vec![why]),
                        fixed: false,
                    }
                }
            }
            Some(Decision::Remove { by }) => Eval::Fail {
                why: Why::Rels(vec![RelWhy::Removed {
                    victim: installed.unwrap_or(by),
                    by,
                }]),
                fixed: false,
            },
            Some(Decision::Doomed { .. }) => {
                let options: Vec<Opt> = available
                    .into_iter()
                    .flatten()
                    .filter(|&&id| fits(&id) && !self.same_as_installed(id))
                    .filter(|&&id| request.version.is_some() || self.new_or_newer(id))
                    .filter(|id| !self.dead.contains(id))
                    .map(|&id| Opt::Install {
                        id,
                        requested: true,
                    })
                    .collect();
                let why = self.rel_why(&rel, options.is_empty());
                finish(options, false, vec![why])
            }
            None => {
                let mut options = Vec::new();
                let candidates = available.into_iter().flatten().copied().filter(fits);
                match installed {
                    Some(inst) if request.version.is_none() => {
                        // Upgrade when the feeds have something newer; else keep.
                        let current = &self.pkg(inst).version;
                        options.extend(
                            candidates
                                .filter(|&id| self.pkg(id).version > *current)
                                .map(|id| Opt::Install {
                                    id,
                                    requested: true,
                                }),
                        );
                        if options.is_empty() {
                            options.push(Opt::Keep(inst));
                        }
                    }
                    Some(inst) if fits(&inst) => options.push(Opt::Keep(inst)),
                    _ => options.extend(candidates.map(|id| Opt::Install {
                        id,
                        requested: true,
                    })),
                }
                options.retain(|o| !matches!(o, Opt::Install { id, .. } if self.dead.contains(id)));
                let why = self.rel_why(&rel, options.is_empty());
                finish(options, true, vec![why])
            }
        }
    }

    fn eval_dep(&self, from: PkgId, group: usize) -> Eval {
        let p = self.pkg(from);
        if p.installed && !self.is_present(from) {
            return Eval::Done; // the dependent itself is being replaced or removed
        }
        let alternatives = &p.deps[group].0;
        if self.group_satisfied(alternatives) {
            return Eval::Done;
        }
        let mut options = Vec::new();
        let mut fixed = !p.installed;
        let mut whys = Vec::new();
        for rel in alternatives.relations() {
            whys.push(self.options_for_rel(rel, false, &mut options, &mut fixed));
        }
        if p.installed && self.decision(&p.name).is_none() {
            // An installed dependent whose dependency broke may be upgraded to a version
            // that fits the new world.
            for &id in self.u.avail_by_name.get(&p.name).into_iter().flatten() {
                if self.new_or_newer(id) && !self.dead.contains(&id) {
                    options.push(Opt::Install {
                        id,
                        requested: false,
                    });
                }
            }
        }
        let mut seen = HashSet::new();
        options.retain(|o| seen.insert(*o));
        finish(options, fixed, whys)
    }

    fn eval_replace(&self, ob: usize, victim: PkgId, by: Option<PkgId>) -> Eval {
        let name = self.pkg(victim).name.as_str();
        if !matches!(self.decision(name), Some(Decision::Doomed { .. })) {
            return Eval::Done;
        }
        let mut options: Vec<Opt> = by
            .map(|by| Opt::Remove { victim, by })
            .into_iter()
            .collect();
        for &id in self.u.avail_by_name.get(name).into_iter().flatten() {
            if self.new_or_newer(id) && !self.dead.contains(&id) {
                options.push(Opt::Install {
                    id,
                    requested: false,
                });
            }
        }
        if !options.is_empty() {
            return Eval::Options {
                options,
                fixed: false,
            };
        }
        let why = match self.queue[ob].chain.kind {
            LinkKind::Conflict {
                declarer,
                index,
                target,
                ..
            } => Why::Conflict {
                declarer,
                index,
                target,
            },
            _ => Why::Rels(Vec::new()),
        };
        Eval::Fail { why, fixed: false }
    }

    /// Adds the ways of installing something new that satisfies `rel`; returns why there
    /// may be none. Clears `fixed` when earlier decisions removed options.
    fn options_for_rel(
        &self,
        rel: &Relation,
        requested: bool,
        options: &mut Vec<Opt>,
        fixed: &mut bool,
    ) -> RelWhy {
        let before = options.len();
        let name = rel.name();
        let mut held = None;
        let mut removed = None;
        let mut doomed = None;
        match self.decision(name) {
            Some(Decision::Keep(id) | Decision::Install { id, .. }) => {
                *fixed = false;
                held = Some(id);
            }
            Some(Decision::Remove { by }) => {
                *fixed = false;
                if let Some(&victim) = self.u.installed_by_name.get(name) {
                    removed = Some((victim, by));
                }
            }
            d @ (Some(Decision::Doomed { .. }) | None) => {
                for &id in self.u.avail_by_name.get(name).into_iter().flatten() {
                    let fits = rel.satisfied_by(name, Some(&self.pkg(id).version));
                    if fits && !self.dead.contains(&id) && self.new_or_newer(id) {
                        options.push(Opt::Install { id, requested });
                    }
                }
                if let Some(Decision::Doomed { by }) = d {
                    *fixed = false;
                    let victim = self.u.installed_by_name.get(name);
                    if let Some(&victim) = victim.filter(|_| options.len() == before) {
                        doomed = Some((victim, by));
                    }
                }
            }
        }
        for &id in self.u.avail_providers.get(name).into_iter().flatten() {
            let p = self.pkg(id);
            if !p.provides_for(rel) || self.dead.contains(&id) {
                continue;
            }
            match self.decision(&p.name) {
                Some(Decision::Keep(_) | Decision::Install { .. } | Decision::Remove { .. }) => {
                    *fixed = false;
                }
                Some(Decision::Doomed { .. }) => {
                    *fixed = false;
                    if self.new_or_newer(id) {
                        options.push(Opt::Install { id, requested });
                    }
                }
                None => {
                    if self.new_or_newer(id) {
                        options.push(Opt::Install { id, requested });
                    }
                }
            }
        }
        // An installed provider that fits but is going away: an earlier decision.
        for &id in self.u.installed_providers.get(name).into_iter().flatten() {
            if self.pkg(id).provides_for(rel) && !self.is_present(id) {
                *fixed = false;
            }
        }
        if let Some(holder) = held {
            return RelWhy::Held {
                rel: rel.clone(),
                holder,
            };
        }
        if let Some((victim, by)) = removed {
            return RelWhy::Removed { victim, by };
        }
        if let Some((victim, by)) = doomed.filter(|_| options.len() == before) {
            return RelWhy::Doomed { victim, by };
        }
        self.rel_why(rel, options.len() == before)
    }

    /// Why nothing new satisfies `rel` (meaningful only when `none` is true).
    fn rel_why(&self, rel: &Relation, none: bool) -> RelWhy {
        let name = rel.name();
        if !none {
            return RelWhy::NoMatch(rel.clone());
        }
        let mut fitting = self
            .u
            .avail_by_name
            .get(name)
            .into_iter()
            .flatten()
            .chain(self.u.avail_providers.get(name).into_iter().flatten())
            .filter(|&&id| self.pkg(id).satisfies(rel));
        match fitting.clone().find(|&&id| self.new_or_newer(id)) {
            Some(_) => return RelWhy::Dead(rel.clone()),
            None => {
                if let Some(&older) = fitting.next() {
                    return RelWhy::Downgrade(older);
                }
            }
        }
        let exists = self.u.avail_by_name.contains_key(name)
            || self.u.avail_providers.contains_key(name)
            || self.u.installed_by_name.contains_key(name)
            || self.u.installed_providers.contains_key(name);
        if exists {
            RelWhy::NoMatch(rel.clone())
        } else {
            RelWhy::Missing(rel.clone())
        }
    }

    // --- applying options ------------------------------------------------------------------

    fn set_decision(&mut self, name: &'u str, decision: Decision) {
        let previous = self.decisions.insert(name, decision);
        self.trail.push(Undo::Decision(name, previous));
    }

    fn undo_to(&mut self, len: usize) {
        while self.trail.len() > len {
            let Some(undo) = self.trail.pop() else { break };
            match undo {
                Undo::Decision(name, Some(previous)) => {
                    self.decisions.insert(name, previous);
                }
                Undo::Decision(name, None) => {
                    self.decisions.remove(name);
                }
                Undo::Provider(name) => pop_from(&mut self.sel_providers, name),
                Undo::Declared(name) => pop_from(&mut self.sel_declared, name),
                Undo::Rdep(name) => pop_from(&mut self.sel_rdeps, name),
            }
        }
    }

    fn apply(&mut self, opt: Opt, chain: &Chain) -> Result<(), Why> {
        match opt {
            Opt::Keep(id) => {
                self.set_decision(&self.pkg(id).name, Decision::Keep(id));
                Ok(())
            }
            Opt::Remove { victim, by } => {
                self.set_decision(&self.pkg(victim).name, Decision::Remove { by });
                self.recheck(victim, chain);
                Ok(())
            }
            Opt::Install { id, requested } => self.install(id, requested, chain),
        }
    }

    fn install(&mut self, id: PkgId, requested: bool, chain: &Chain) -> Result<(), Why> {
        let x = self.pkg(id);
        let name = x.name.as_str();
        // Conflicts and Breaks, both ways, with everything that will be present.
        let mut hits: Vec<(PkgId, usize, PkgId)> = Vec::new(); // (declarer, index, target)
        for (index, (rel, _)) in x.conflicts.iter().enumerate() {
            let by_name = self.present_by_name(rel.name());
            for t in by_name
                .into_iter()
                .chain(self.present_providers(rel.name()))
            {
                if self.pkg(t).name != name && self.pkg(t).satisfies(rel) {
                    hits.push((id, index, t));
                }
            }
        }
        for n in x.names() {
            let installed = self.u.installed_declared.get(n).into_iter().flatten();
            let declarers = installed
                .copied()
                .filter(|&d| self.is_present(d))
                .chain(self.sel_declared.get(n).into_iter().flatten().copied());
            for d in declarers {
                let dp = self.pkg(d);
                if dp.name == name {
                    continue;
                }
                for (index, (rel, _)) in dp.conflicts.iter().enumerate() {
                    if rel.name() == n && x.satisfies(rel) {
                        hits.push((d, index, id));
                    }
                }
            }
        }
        let mut doomed: Vec<(PkgId, PkgId, usize, PkgId, bool)> = Vec::new();
        for (declarer, index, target) in hits {
            let other = if declarer == id { target } else { declarer };
            let op = self.pkg(other);
            let why = Why::Conflict {
                declarer,
                index,
                target,
            };
            if self.decision(&op.name).is_some() || !op.installed {
                return Err(why);
            }
            if doomed.iter().any(|d| d.0 == other) {
                continue;
            }
            let removable = x.replaces.iter().any(|r| op.satisfies(r));
            let upgradable = self
                .u
                .avail_by_name
                .get(&op.name)
                .into_iter()
                .flatten()
                .any(|&c| self.new_or_newer(c) && !self.dead.contains(&c));
            if !removable && !upgradable {
                return Err(why);
            }
            doomed.push((other, declarer, index, target, removable));
        }

        let previous = self.decision(name);
        self.set_decision(name, Decision::Install { id, requested });
        for (virtual_name, _) in &x.provides {
            if *virtual_name != x.name {
                let key = virtual_name.as_str();
                self.sel_providers.entry(key).or_default().push(id);
                self.trail.push(Undo::Provider(key));
            }
        }
        for (rel, _) in &x.conflicts {
            self.sel_declared.entry(rel.name()).or_default().push(id);
            self.trail.push(Undo::Declared(rel.name()));
        }
        for (group, _) in &x.deps {
            for rel in group.relations() {
                self.sel_rdeps.entry(rel.name()).or_default().push(id);
                self.trail.push(Undo::Rdep(rel.name()));
            }
        }
        for (victim, declarer, index, target, removable) in doomed {
            let by = removable.then_some(id);
            self.set_decision(&self.pkg(victim).name, Decision::Doomed { by: id });
            let link = extend(
                chain,
                LinkKind::Conflict {
                    declarer,
                    index,
                    target,
                    victim,
                },
            );
            self.queue.push(Obligation {
                kind: ObKind::Replace { victim, by },
                chain: link.clone(),
            });
            self.recheck(victim, &link);
        }
        if previous.is_none()
            && let Some(&old) = self.u.installed_by_name.get(name)
        {
            self.recheck(old, chain);
        }
        for group in 0..x.deps.len() {
            self.queue.push(Obligation {
                kind: ObKind::Dep { from: id, group },
                chain: extend(chain, LinkKind::Dep { from: id, group }),
            });
        }
        Ok(())
    }

    /// After the installed `gone` stopped being present: re-examines every present package
    /// with a dependency on one of its names, and queues those now unmet.
    fn recheck(&mut self, gone: PkgId, chain: &Chain) {
        let mut seen = HashSet::new();
        let mut queued = Vec::new();
        for n in self.pkg(gone).names() {
            let installed = self.u.installed_rdeps.get(n).into_iter().flatten().copied();
            let planned = self.sel_rdeps.get(n).into_iter().flatten().copied();
            for m in installed.chain(planned) {
                if !self.is_present(m) {
                    continue;
                }
                for (group, (alternatives, _)) in self.pkg(m).deps.iter().enumerate() {
                    let mentions = alternatives.relations().iter().any(|r| r.name() == n);
                    if mentions && seen.insert((m, group)) && !self.group_satisfied(alternatives) {
                        queued.push((m, group));
                    }
                }
            }
        }
        for (from, group) in queued {
            self.queue.push(Obligation {
                kind: ObKind::Dep { from, group },
                chain: extend(chain, LinkKind::Dep { from, group }),
            });
        }
    }

    // --- the search loop -------------------------------------------------------------------

    fn run(&mut self) -> Result<(), ResolveError> {
        while self.head < self.queue.len() {
            let ob = self.head;
            self.head += 1;
            match self.evaluate(ob) {
                Eval::Done => {}
                Eval::Fail { why, fixed } => {
                    let chain = self.queue[ob].chain.clone();
                    self.record(chain, why);
                    if fixed {
                        self.obligation_impossible(ob)?;
                    }
                    self.advance()?;
                }
                Eval::Options { options, fixed } => {
                    self.choices.push(Choice {
                        ob,
                        options,
                        fixed,
                        next: 0,
                        applied: None,
                        trail_len: self.trail.len(),
                        queue_len: self.queue.len(),
                    });
                    self.advance()?;
                }
            }
        }
        Ok(())
    }

    /// An obligation can never be met, whatever is decided: its owner is dead (or, for a
    /// request, there is no solution at all).
    fn obligation_impossible(&mut self, ob: usize) -> Result<(), ResolveError> {
        match self.queue[ob].kind {
            ObKind::Request(_) => Err(self.failure_error()),
            ObKind::Dep { from, .. } if !self.pkg(from).installed => {
                if self.dead.insert(from) {
                    self.dead_changed = true;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Tries the next option of the innermost choice that has one, backtracking (and jumping
    /// back over choices made under a dead candidate) as needed.
    fn advance(&mut self) -> Result<(), ResolveError> {
        loop {
            if self.dead_changed {
                self.dead_changed = false;
                let dead = &self.dead;
                let first_dead = self.choices.iter().position(
                    |c| matches!(c.applied, Some(Opt::Install { id, .. }) if dead.contains(&id)),
                );
                if let Some(at) = first_dead {
                    self.choices.truncate(at + 1);
                }
            }
            let Some(top) = self.choices.last_mut() else {
                return Err(self.failure_error());
            };
            let (ob, trail_len, queue_len) = (top.ob, top.trail_len, top.queue_len);
            if top.next == top.options.len() {
                let all_dead = top.fixed
                    && top
                        .options
                        .iter()
                        .all(|o| matches!(o, Opt::Install { id, .. } if self.dead.contains(id)));
                self.choices.pop();
                if all_dead {
                    self.obligation_impossible(ob)?;
                }
                continue;
            }
            let opt = top.options[top.next];
            top.next += 1;
            top.applied = Some(opt);
            self.undo_to(trail_len);
            self.queue.truncate(queue_len);
            self.head = ob + 1;
            if matches!(opt, Opt::Install { id, .. } if self.dead.contains(&id)) {
                continue;
            }
            self.steps += 1;
            if self.steps > self.budget {
                let closest = match self.failure_error() {
                    ResolveError::Unsatisfiable {
                        request,
                        chain,
                        reason,
                    } => format!("cannot install {request}: {}", explain(&chain, &reason)),
                    other => other.to_string(),
                };
                return Err(ResolveError::TooComplex {
                    steps: self.budget,
                    closest,
                });
            }
            let chain = self.queue[ob].chain.clone();
            match self.apply(opt, &chain) {
                Ok(()) => return Ok(()),
                Err(why) => self.record(chain, why),
            }
        }
    }

    fn record(&mut self, chain: Chain, why: Why) {
        if self
            .best
            .as_ref()
            .is_none_or(|b| chain.depth > b.chain.depth)
        {
            self.best = Some(Failure { chain, why });
        }
    }

    // --- explaining ------------------------------------------------------------------------

    fn failure_error(&self) -> ResolveError {
        let Some(best) = &self.best else {
            return ResolveError::Unsatisfiable {
                request: self
                    .requests
                    .iter()
                    .map(Request::label)
                    .collect::<Vec<_>>()
                    .join(" "),
                chain: Vec::new(),
                reason: "no combination of the available packages satisfies every request".into(),
            };
        };
        let mut links = Vec::new();
        let mut request = String::new();
        let mut at = Some(&best.chain);
        while let Some(link) = at {
            match link.kind {
                LinkKind::Request(i) => request = self.requests[i].label(),
                kind => links.push(self.link_text(kind)),
            }
            at = link.parent.as_ref();
        }
        links.reverse();
        ResolveError::Unsatisfiable {
            request,
            chain: links,
            reason: self.why_text(&best.why),
        }
    }

    fn link_text(&self, kind: LinkKind) -> String {
        match kind {
            LinkKind::Request(i) => self.requests[i].label(),
            LinkKind::Dep { from, group } => {
                let p = self.pkg(from);
                let (alternatives, pre) = &p.deps[group];
                let verb = if *pre { "pre-depends" } else { "depends" };
                format!("{} {verb} on {alternatives}", p.describe())
            }
            LinkKind::Conflict {
                declarer,
                index,
                target,
                victim,
            } => format!(
                "{} ({} must be upgraded or removed)",
                self.conflict_text(declarer, index, target),
                self.pkg(victim).name
            ),
        }
    }

    fn conflict_text(&self, declarer: PkgId, index: usize, target: PkgId) -> String {
        let d = self.pkg(declarer);
        let t = self.pkg(target);
        let Some((rel, breaks)) = d.conflicts.get(index) else {
            return format!("{} conflicts with {}", d.describe(), t.describe());
        };
        let verb = if *breaks { "breaks" } else { "conflicts with" };
        if rel.name() == t.name {
            format!("{} {verb} {}", d.describe(), t.describe())
        } else {
            format!(
                "{} {verb} {rel}, which {} provides",
                d.describe(),
                t.describe()
            )
        }
    }

    fn why_text(&self, why: &Why) -> String {
        match why {
            Why::Conflict {
                declarer,
                index,
                target,
            } => self.conflict_text(*declarer, *index, *target),
            Why::Rels(rels) => match rels.as_slice() {
                [] => "no candidate is left".to_string(),
                [one] => self.rel_why_text(one),
                many => {
                    let parts: Vec<String> = many
                        .iter()
                        .take(MAX_LISTED)
                        .map(|w| self.rel_why_text(w))
                        .collect();
                    format!("no alternative can be used: {}", parts.join("; "))
                }
            },
        }
    }

    fn rel_why_text(&self, why: &RelWhy) -> String {
        let u = self.u;
        match why {
            RelWhy::Missing(rel) => match u.wrong_arch.get(rel.name()) {
                Some(arches) => format!(
                    "{} is in the feeds only for architecture {}, which is not configured (opkg.conf `arch` lines)",
                    rel.name(),
                    arches.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
                None => format!(
                    "{} is not in any feed (not assumed installed either)",
                    rel.name()
                ),
            },
            RelWhy::NoMatch(rel) => self.no_match_text(rel),
            RelWhy::Held { rel, holder } => {
                let h = self.pkg(*holder);
                if h.installed {
                    format!(
                        "installed {} {} is to stay as it is, which {rel} does not allow",
                        h.name, h.version
                    )
                } else {
                    format!("{} {} is chosen for this plan", h.name, h.version)
                }
            }
            RelWhy::Removed { victim, by, .. } => format!(
                "{} is being removed (replaced by {})",
                self.pkg(*victim).describe(),
                self.pkg(*by).describe()
            ),
            RelWhy::Doomed { victim, by } => format!(
                "{} cannot stay next to {} (Conflicts/Breaks) and no other version of it fits",
                self.pkg(*victim).describe(),
                self.pkg(*by).describe()
            ),
            RelWhy::Downgrade(older) => {
                let p = self.pkg(*older);
                let installed = u.installed_by_name.get(&p.name).map(|&i| self.pkg(i));
                format!(
                    "{} {} is installed and only the older {} fits, which would be a downgrade \
                     (request {}={} to downgrade)",
                    p.name,
                    installed.map_or_else(String::new, |i| i.version.to_string()),
                    p.version,
                    p.name,
                    p.version
                )
            }
            RelWhy::Dead(rel) => {
                let mut names: Vec<String> = Vec::new();
                let all = u.avail_by_name.get(rel.name()).into_iter().flatten();
                let all = all.chain(u.avail_providers.get(rel.name()).into_iter().flatten());
                for &id in all {
                    let p = self.pkg(id);
                    if p.satisfies(rel) && names.len() < MAX_LISTED {
                        names.push(p.describe());
                    }
                }
                format!(
                    "no candidate for {rel} can be installed (each of {} fails)",
                    names.join(", ")
                )
            }
        }
    }

    fn no_match_text(&self, rel: &Relation) -> String {
        let u = self.u;
        let name = rel.name();
        let mut parts = Vec::new();
        let mut versions: Vec<String> = Vec::new();
        for &id in u.avail_by_name.get(name).into_iter().flatten() {
            let v = self.pkg(id).version.to_string();
            if !versions.contains(&v) {
                versions.push(v);
            }
        }
        if !versions.is_empty() {
            parts.push(format!(
                "the feeds have only {name} {}",
                versions.join(", ")
            ));
        }
        if let Some(&id) = u.installed_by_name.get(name) {
            parts.push(format!("{name} {} is installed", self.pkg(id).version));
        }
        let providers = u.avail_providers.get(name).into_iter().flatten();
        let providers = providers.chain(u.installed_providers.get(name).into_iter().flatten());
        for &id in providers.take(MAX_LISTED) {
            let p = self.pkg(id);
            for (n, v) in p.provides.iter().filter(|(n, _)| n == name) {
                parts.push(match v {
                    None if rel.constraint().is_some() => format!(
                        "{} provides {n} without a version, which never satisfies a versioned dependency",
                        p.describe()
                    ),
                    None => format!("{} provides {n}", p.describe()),
                    Some(v) => format!("{} provides {n} (= {v})", p.describe()),
                });
            }
        }
        if parts.is_empty() {
            format!("nothing satisfies {rel}")
        } else {
            parts.join("; ")
        }
    }

    // --- the plan --------------------------------------------------------------------------

    fn plan(&self) -> Result<Plan, ResolveError> {
        let mut planned: Vec<(PkgId, bool)> = Vec::new();
        let mut removes = Vec::new();
        let mut already_installed = Vec::new();
        for (name, decision) in &self.decisions {
            match *decision {
                Decision::Install { id, requested } => planned.push((id, requested)),
                Decision::Remove { .. } => removes.push(name.to_string()),
                Decision::Keep(_) => already_installed.push(name.to_string()),
                Decision::Doomed { .. } => {}
            }
        }
        planned.sort_by(|a, b| self.pkg(a.0).name.cmp(&self.pkg(b.0).name));
        removes.sort();
        already_installed.sort();
        let index: HashMap<PkgId, usize> = planned
            .iter()
            .enumerate()
            .map(|(i, &(id, _))| (id, i))
            .collect();
        // Edges: package -> the planned package meeting each of its dependency groups.
        let mut edges: Vec<Vec<(usize, bool)>> = vec![Vec::new(); planned.len()];
        for (i, &(id, _)) in planned.iter().enumerate() {
            for (group, pre) in &self.pkg(id).deps {
                for rel in group.relations() {
                    if self.u.assumed.contains(rel.name()) {
                        break;
                    }
                    if let Some(s) = self.present_satisfier(rel) {
                        if let Some(&j) = index.get(&s)
                            && j != i
                        {
                            edges[i].push((j, *pre));
                        }
                        break;
                    }
                }
            }
        }
        let order = self.install_order(&planned, &edges)?;
        let steps = order
            .into_iter()
            .map(|i| {
                let (id, requested) = planned[i];
                let p = self.pkg(id);
                let installed = self.u.installed_by_name.get(&p.name).map(|&o| self.pkg(o));
                Step {
                    name: p.name.clone(),
                    version: p.version.to_string(),
                    arch: p.arch.clone(),
                    feed: p.feed.clone(),
                    stanza: p.stanza.clone(),
                    auto: !requested && installed.is_none_or(|o| o.auto_installed),
                    upgrade_from: installed.map(|o| o.version.to_string()),
                }
            })
            .collect();
        Ok(Plan {
            steps,
            removes,
            already_installed,
        })
    }

    /// Strongly connected components, dependencies first; inside a component, Pre-Depends
    /// first, then the fewest unmet Depends, then the name.
    fn install_order(
        &self,
        planned: &[(PkgId, bool)],
        edges: &[Vec<(usize, bool)>],
    ) -> Result<Vec<usize>, ResolveError> {
        let mut order = Vec::with_capacity(planned.len());
        for component in tarjan(edges) {
            if component.len() == 1 {
                order.push(component[0]);
                continue;
            }
            let members: HashSet<usize> = component.iter().copied().collect();
            let mut done: HashSet<usize> = HashSet::new();
            let mut left: Vec<usize> = component.clone();
            left.sort();
            while !left.is_empty() {
                let pending = |v: usize, pre: bool| {
                    edges[v]
                        .iter()
                        .filter(|&&(w, p)| p == pre && members.contains(&w) && !done.contains(&w))
                        .count()
                };
                let ready = left
                    .iter()
                    .copied()
                    .filter(|&v| pending(v, true) == 0)
                    .min_by_key(|&v| (pending(v, false), v));
                let Some(v) = ready else {
                    return Err(self.pre_depends_cycle(planned, edges, &left));
                };
                done.insert(v);
                left.retain(|&w| w != v);
                order.push(v);
            }
        }
        Ok(order)
    }

    fn pre_depends_cycle(
        &self,
        planned: &[(PkgId, bool)],
        edges: &[Vec<(usize, bool)>],
        left: &[usize],
    ) -> ResolveError {
        let mut path: Vec<usize> = left.iter().take(1).copied().collect();
        while let Some(&v) = path.last() {
            let next = edges[v]
                .iter()
                .find(|&&(w, pre)| pre && left.contains(&w))
                .map(|&(w, _)| w);
            let Some(w) = next else { break };
            if let Some(start) = path.iter().position(|&x| x == w) {
                path.drain(..start);
                path.push(w);
                break;
            }
            path.push(w);
        }
        ResolveError::PreDependsCycle {
            cycle: path
                .into_iter()
                .map(|i| {
                    let p = self.pkg(planned[i].0);
                    format!("{} {}", p.name, p.version)
                })
                .collect(),
        }
    }
}

fn finish(options: Vec<Opt>, fixed: bool, whys: Vec<RelWhy>) -> Eval {
    if options.is_empty() {
        Eval::Fail {
            why: Why::Rels(whys),
            fixed,
        }
    } else {
        Eval::Options { options, fixed }
    }
}

fn pop_from(map: &mut HashMap<&str, Vec<PkgId>>, key: &str) {
    if let Some(list) = map.get_mut(key) {
        list.pop();
    }
}

/// Tarjan's strongly connected components, iteratively; components come out dependencies
/// first (every edge points to the same or an earlier component).
fn tarjan(edges: &[Vec<(usize, bool)>]) -> Vec<Vec<usize>> {
    const UNSEEN: usize = usize::MAX;
    let n = edges.len();
    let mut index = vec![UNSEEN; n];
    let mut low = vec![0; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut components = Vec::new();
    let mut next = 0;
    for root in 0..n {
        if index[root] != UNSEEN {
            continue;
        }
        let mut calls: Vec<(usize, usize)> = vec![(root, 0)];
        index[root] = next;
        low[root] = next;
        next += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(&(v, edge)) = calls.last() {
            if let Some(&(w, _)) = edges[v].get(edge) {
                if let Some(top) = calls.last_mut() {
                    top.1 += 1;
                }
                if index[w] == UNSEEN {
                    index[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    calls.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            calls.pop();
            if let Some(&(parent, _)) = calls.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == index[v] {
                let mut component = Vec::new();
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                components.push(component);
            }
        }
    }
    components
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stanza(text: &str) -> Paragraph {
        match Paragraph::parse(text) {
            Ok(p) => p,
            Err(e) => panic!("bad test stanza {text:?}: {e}"),
        }
    }

    /// Completes a test stanza with what an index stanza carries.
    fn index_stanza(text: &str) -> Paragraph {
        let mut text = text.trim().to_string();
        if !text.contains("Architecture:") {
            text.push_str("\nArchitecture: all");
        }
        let p = stanza(&text);
        let name = p.get("Package").unwrap_or("x").to_string();
        text.push_str(&format!(
            "\nFilename: {name}.ipk\nSize: 1\nSHA256sum: {}",
            "0".repeat(64)
        ));
        stanza(&text)
    }

    fn avail_in(u: &mut Universe, feed: &str, order: usize, text: &str) {
        if let Err(e) = u.add_available(&index_stanza(text), feed, order) {
            panic!("{text:?} should be accepted: {e}");
        }
    }

    fn avail(u: &mut Universe, text: &str) {
        avail_in(u, "base", 0, text);
    }

    fn installed(u: &mut Universe, text: &str) {
        let mut text = text.trim().to_string();
        if !text.contains("Status:") {
            text.push_str("\nStatus: install user installed");
        }
        if let Err(e) = u.add_installed(&stanza(&text)) {
            panic!("{text:?} should be accepted: {e}");
        }
    }

    fn universe() -> Universe {
        Universe::new(&[])
    }

    fn requests(names: &[&str]) -> Vec<Request> {
        names
            .iter()
            .map(|n| match Request::parse(n) {
                Ok(r) => r,
                Err(e) => panic!("{n}: {e}"),
            })
            .collect()
    }

    fn plan(u: &Universe, names: &[&str]) -> Plan {
        match u.resolve(&requests(names)) {
            Ok(p) => p,
            Err(e) => panic!("{names:?} should resolve: {e}"),
        }
    }

    fn failure(u: &Universe, names: &[&str]) -> ResolveError {
        match u.resolve(&requests(names)) {
            Ok(p) => panic!("{names:?} should fail, got {:?}", steps(&p)),
            Err(e) => e,
        }
    }

    fn steps(plan: &Plan) -> Vec<String> {
        plan.steps
            .iter()
            .map(|s| format!("{} {}", s.name, s.version))
            .collect()
    }

    fn position(plan: &Plan, name: &str) -> usize {
        match plan.steps.iter().position(|s| s.name == name) {
            Some(i) => i,
            None => panic!("{name} is not in the plan {:?}", steps(plan)),
        }
    }

    #[test]
    fn alternatives_are_tried_in_order() {
        let mut u = universe();
        avail(&mut u, "Package: a\nVersion: 1.0\nDepends: b | c");
        avail(&mut u, "Package: b\nVersion: 1.0");
        avail(&mut u, "Package: c\nVersion: 1.0");
        avail(
            &mut u,
            "Package: a2\nVersion: 1.0\nDepends: x | c (>= 1) | b",
        );
        avail(&mut u, "Package: x\nVersion: 1.0\nDepends: missing");
        assert_eq!(steps(&plan(&u, &["a"])), ["b 1.0", "a 1.0"]);
        // The first alternative cannot be installed: the next one is used.
        assert_eq!(steps(&plan(&u, &["a2"])), ["c 1.0", "a2 1.0"]);
    }

    #[test]
    fn every_version_operator_selects_the_newest_fitting_candidate() {
        let mut u = universe();
        for v in ["1.0", "2.0", "3.0"] {
            avail(&mut u, &format!("Package: b\nVersion: {v}"));
        }
        let cases = [
            ("<<", "1.0"),
            ("<=", "2.0"),
            ("<", "2.0"), // obsolete: means <=
            ("=", "2.0"),
            (">=", "3.0"),
            (">", "3.0"), // obsolete: means >=
            (">>", "3.0"),
        ];
        for (i, (op, chosen)) in cases.iter().enumerate() {
            avail(
                &mut u,
                &format!("Package: a{i}\nVersion: 1\nDepends: b ({op} 2.0)"),
            );
            let p = plan(&u, &[&format!("a{i}")]);
            assert_eq!(steps(&p)[0], format!("b {chosen}"), "b ({op} 2.0)");
        }
        avail(&mut u, "Package: none\nVersion: 1\nDepends: b (>> 3.0)");
        assert_eq!(
            failure(&u, &["none"]).to_string(),
            "cannot install none: none 1 depends on b (>> 3.0), but the feeds have only b 3.0, \
             2.0, 1.0"
        );
    }

    #[test]
    fn a_version_chosen_by_a_request_is_not_changed_by_a_dependency() {
        let mut u = universe();
        avail(&mut u, "Package: b\nVersion: 1.0");
        avail(&mut u, "Package: b\nVersion: 2.0");
        avail(&mut u, "Package: a\nVersion: 1.0\nDepends: b (>= 2)");
        let expected =
            "cannot install a: a 1.0 depends on b (>= 2), but b 1.0 is chosen for this plan";
        assert_eq!(failure(&u, &["b=1.0", "a"]).to_string(), expected);
        assert_eq!(failure(&u, &["a", "b=1.0"]).to_string(), expected);
        assert_eq!(steps(&plan(&u, &["a", "b"])), ["b 2.0", "a 1.0"]);
    }

    #[test]
    fn installed_or_already_chosen_alternative_is_preferred() {
        let mut u = universe();
        avail(&mut u, "Package: a\nVersion: 1.0\nDepends: b | c");
        avail(&mut u, "Package: b\nVersion: 1.0");
        avail(&mut u, "Package: c\nVersion: 1.0");
        // Chosen in this plan (requested first) beats the first alternative.
        assert_eq!(steps(&plan(&u, &["a", "c"])), ["c 1.0", "a 1.0"]);
        // Installed beats the first alternative.
        installed(&mut u, "Package: c\nVersion: 1.0");
        assert_eq!(steps(&plan(&u, &["a"])), ["a 1.0"]);
    }

    #[test]
    fn versioned_provides_satisfy_versioned_dependencies() {
        let mut u = universe();
        avail(&mut u, "Package: p\nVersion: 1.0\nProvides: v (= 2.0)");
        avail(&mut u, "Package: a\nVersion: 1.0\nDepends: v (>= 1.5)");
        avail(&mut u, "Package: too-new\nVersion: 1.0\nDepends: v (>= 3)");
        assert_eq!(steps(&plan(&u, &["a"])), ["p 1.0", "a 1.0"]);
        assert_eq!(
            failure(&u, &["too-new"]).to_string(),
            "cannot install too-new: too-new 1.0 depends on v (>= 3), but p 1.0 provides v (= 2.0)"
        );
    }

    #[test]
    fn unversioned_provide_never_satisfies_a_versioned_dependency() {
        let mut u = universe();
        avail(&mut u, "Package: p\nVersion: 5.0\nProvides: v");
        avail(&mut u, "Package: a\nVersion: 1.0\nDepends: v (>= 1)");
        avail(&mut u, "Package: b\nVersion: 1.0\nDepends: v");
        assert_eq!(steps(&plan(&u, &["b"])), ["p 5.0", "b 1.0"]);
        let message = failure(&u, &["a"]).to_string();
        assert_eq!(
            message,
            "cannot install a: a 1.0 depends on v (>= 1), but p 5.0 provides v without a version, \
             which never satisfies a versioned dependency"
        );
    }

    #[test]
    fn conflicts_with_installed_packages_are_refused_both_ways() {
        let mut u = universe();
        installed(&mut u, "Package: d\nVersion: 1.1");
        avail(&mut u, "Package: a\nVersion: 1.0\nDepends: c");
        avail(&mut u, "Package: c\nVersion: 2.0\nConflicts: d");
        assert_eq!(
            failure(&u, &["a"]).to_string(),
            "cannot install a: a 1.0 depends on c, but c 2.0 conflicts with installed d 1.1"
        );

        let mut u = universe();
        installed(&mut u, "Package: d\nVersion: 1.1\nConflicts: c (>= 2)");
        avail(&mut u, "Package: c\nVersion: 2.0");
        avail(&mut u, "Package: old\nVersion: 1.0\nConflicts: d (<< 1.0)");
        assert_eq!(
            failure(&u, &["c"]).to_string(),
            "cannot install c: installed d 1.1 conflicts with c 2.0"
        );
        // The version constraint of a conflict is honoured.
        assert_eq!(steps(&plan(&u, &["old"])), ["old 1.0"]);
    }

    #[test]
    fn conflicts_inside_the_plan_select_another_alternative() {
        let mut u = universe();
        avail(&mut u, "Package: a\nVersion: 1.0\nDepends: b | x, c");
        avail(&mut u, "Package: b\nVersion: 1.0\nConflicts: c");
        avail(&mut u, "Package: c\nVersion: 1.0");
        avail(&mut u, "Package: x\nVersion: 1.0");
        avail(&mut u, "Package: stuck\nVersion: 1.0\nDepends: b, c");
        let p = plan(&u, &["a"]);
        assert_eq!(steps(&p), ["x 1.0", "c 1.0", "a 1.0"]);
        assert_eq!(
            failure(&u, &["stuck"]).to_string(),
            "cannot install stuck: stuck 1.0 depends on c, but b 1.0 conflicts with c 1.0"
        );
    }

    #[test]
    fn breaks_upgrades_the_broken_installed_package_or_fails() {
        let mut u = universe();
        installed(&mut u, "Package: d\nVersion: 1.1\nAuto-Installed: yes");
        avail(&mut u, "Package: c\nVersion: 1.0\nBreaks: d (<< 2)");
        assert_eq!(
            failure(&u, &["c"]).to_string(),
            "cannot install c: c 1.0 breaks installed d 1.1"
        );
        avail(&mut u, "Package: d\nVersion: 2.0");
        let p = plan(&u, &["c"]);
        assert_eq!(steps(&p), ["c 1.0", "d 2.0"]);
        let d = &p.steps[position(&p, "d")];
        assert_eq!(d.upgrade_from.as_deref(), Some("1.1"));
        assert!(d.auto, "an auto-installed package stays auto when upgraded");
    }

    #[test]
    fn provides_and_conflicts_on_one_virtual_name_works() {
        let mut u = universe();
        avail(
            &mut u,
            "Package: x\nVersion: 1.0\nProvides: mta\nConflicts: mta\nReplaces: mta",
        );
        // A package never conflicts with itself.
        assert_eq!(steps(&plan(&u, &["x"])), ["x 1.0"]);

        installed(
            &mut u,
            "Package: y\nVersion: 1.0\nProvides: mta\nConflicts: mta",
        );
        installed(&mut u, "Package: m\nVersion: 1.0\nDepends: mta");
        // x conflicts with and replaces y: y is removed; m still has an mta.
        let p = plan(&u, &["x"]);
        assert_eq!(steps(&p), ["x 1.0"]);
        assert_eq!(p.removes, ["y"]);

        let mut u = universe();
        avail(
            &mut u,
            "Package: x\nVersion: 1.0\nProvides: mta\nConflicts: mta",
        );
        installed(
            &mut u,
            "Package: y\nVersion: 1.0\nProvides: mta\nConflicts: mta",
        );
        assert_eq!(
            failure(&u, &["x"]).to_string(),
            "cannot install x: x 1.0 conflicts with mta, which installed y 1.0 provides"
        );
    }

    #[test]
    fn planned_package_keeps_its_installed_dependency_from_being_removed() {
        let mut u = universe();
        installed(&mut u, "Package: y\nVersion: 1.0");
        avail(&mut u, "Package: a\nVersion: 1.0\nDepends: y");
        avail(
            &mut u,
            "Package: x\nVersion: 1.0\nConflicts: y\nReplaces: y",
        );
        assert_eq!(plan(&u, &["x"]).removes, ["y"]);
        assert_eq!(steps(&plan(&u, &["a"])), ["a 1.0"]);
        let message = failure(&u, &["a", "x"]).to_string();
        assert_eq!(
            message,
            "cannot install a: a 1.0 depends on y, but installed y 1.0 cannot stay next to \
             x 1.0 (Conflicts/Breaks) and no other version of it fits"
        );
        // Another version of y without the conflict is installed instead.
        avail(&mut u, "Package: y\nVersion: 2.0\nProvides: y-compat");
        avail(&mut u, "Package: x2\nVersion: 1.0\nConflicts: y (<< 2)");
        let p = plan(&u, &["a", "x2"]);
        assert_eq!(steps(&p), ["y 2.0", "a 1.0", "x2 1.0"]);
        assert_eq!(p.steps[0].upgrade_from.as_deref(), Some("1.0"));
        assert!(p.removes.is_empty());
    }

    #[test]
    fn pinned_version_is_installed_exactly() {
        let mut u = universe();
        avail(&mut u, "Package: a\nVersion: 1.0");
        avail(&mut u, "Package: a\nVersion: 2.0");
        assert_eq!(steps(&plan(&u, &["a"])), ["a 2.0"]);
        assert_eq!(steps(&plan(&u, &["a=1.0"])), ["a 1.0"]);
        assert_eq!(steps(&plan(&u, &["a=0:1.0-0"])), ["a 1.0"]);
        assert_eq!(
            failure(&u, &["a=3.0"]).to_string(),
            "cannot install a=3.0: the feeds have only a 2.0, 1.0"
        );
    }

    #[test]
    fn newest_version_across_feeds_then_earlier_feed() {
        let mut u = universe();
        avail_in(&mut u, "base", 0, "Package: a\nVersion: 1.0");
        avail_in(&mut u, "extra", 1, "Package: a\nVersion: 1.1");
        avail_in(&mut u, "extra", 1, "Package: b\nVersion: 1.0");
        avail_in(&mut u, "base", 0, "Package: b\nVersion: 1.0");
        let p = plan(&u, &["a", "b"]);
        assert_eq!(steps(&p), ["a 1.1", "b 1.0"]);
        assert_eq!(p.steps[0].feed, "extra");
        assert_eq!(p.steps[1].feed, "base");
        assert_eq!(p.steps[1].stanza.get("Filename"), Some("b.ipk"));
    }

    #[test]
    fn architecture_priority_breaks_ties_between_equal_versions() {
        let arches = [("all", 1), ("mips", 10), ("mipsel", 20)].map(|(a, p)| (a.to_string(), p));
        let mut u = Universe::new(&arches);
        avail(&mut u, "Package: a\nVersion: 1.0\nArchitecture: mips");
        avail(&mut u, "Package: a\nVersion: 1.0\nArchitecture: mipsel");
        avail(&mut u, "Package: a\nVersion: 9.0\nArchitecture: arm");
        avail(&mut u, "Package: b\nVersion: 1.0\nArchitecture: arm");
        avail(&mut u, "Package: c\nVersion: 1.1\nArchitecture: mips");
        avail(&mut u, "Package: c\nVersion: 1.0\nArchitecture: mipsel");
        let p = plan(&u, &["a", "c"]);
        assert_eq!(steps(&p), ["a 1.0", "c 1.1"]);
        assert_eq!(p.steps[0].arch, "mipsel");
        // A newer version beats a better architecture.
        assert_eq!(p.steps[1].arch, "mips");
        assert_eq!(
            failure(&u, &["b"]).to_string(),
            "cannot install b: b is in the feeds only for architecture arm, which is not \
             configured (opkg.conf `arch` lines)"
        );
    }

    #[test]
    fn architecture_all_needs_an_arch_all_line() {
        let mut u = Universe::new(&[("mips".to_string(), 10)]);
        avail(&mut u, "Package: p\nVersion: 1.0\nArchitecture: all");
        assert!(
            failure(&u, &["p"])
                .to_string()
                .contains("only for architecture all")
        );
        let mut u = Universe::new(&[("mips".to_string(), 10), ("all".to_string(), 1)]);
        avail(&mut u, "Package: p\nVersion: 1.0\nArchitecture: all");
        assert_eq!(steps(&plan(&u, &["p"])), ["p 1.0"]);
        let mut u = universe();
        avail(&mut u, "Package: p\nVersion: 1.0\nArchitecture: whatever");
        assert_eq!(steps(&plan(&u, &["p"])), ["p 1.0"]);
    }

    #[test]
    fn assume_installed_satisfies_any_constraint() {
        let mut u = universe();
        avail(
            &mut u,
            "Package: a\nVersion: 1.0\nDepends: libc (>= 99), kernel (= 5.10.138-1-789565457d2f)",
        );
        assert_eq!(
            failure(&u, &["a"]).to_string(),
            "cannot install a: a 1.0 depends on libc (>= 99), but libc is not in any feed \
             (not assumed installed either)"
        );
        u.assume_installed("libc");
        u.assume_installed("kernel");
        assert_eq!(steps(&plan(&u, &["a"])), ["a 1.0"]);
        assert!(plan(&u, &["libc"]).steps.is_empty());
    }

    #[test]
    fn pre_depends_and_depends_come_first() {
        let mut u = universe();
        avail(
            &mut u,
            "Package: a\nVersion: 1.0\nPre-Depends: b\nDepends: d",
        );
        avail(&mut u, "Package: b\nVersion: 1.0\nDepends: c");
        avail(&mut u, "Package: c\nVersion: 1.0");
        avail(&mut u, "Package: d\nVersion: 1.0\nPre-Depends: c");
        let p = plan(&u, &["a"]);
        assert_eq!(p.steps.len(), 4);
        assert!(position(&p, "c") < position(&p, "b"));
        assert!(position(&p, "b") < position(&p, "a"));
        assert!(position(&p, "c") < position(&p, "d"));
        assert!(position(&p, "d") < position(&p, "a"));
        assert!(p.steps.iter().all(|s| s.auto == (s.name != "a")));
    }

    #[test]
    fn dependency_cycle_is_broken_deterministically() {
        let mut u = universe();
        avail(&mut u, "Package: a\nVersion: 1.0\nDepends: b");
        avail(&mut u, "Package: b\nVersion: 1.0\nDepends: a");
        avail(&mut u, "Package: c\nVersion: 1.0\nDepends: a");
        let first = plan(&u, &["c"]);
        assert_eq!(steps(&first), ["a 1.0", "b 1.0", "c 1.0"]);
        for _ in 0..5 {
            assert_eq!(plan(&u, &["c"]), first);
        }
        // Inside a cycle, Pre-Depends are honoured.
        let mut u = universe();
        avail(&mut u, "Package: a\nVersion: 1.0\nPre-Depends: b");
        avail(&mut u, "Package: b\nVersion: 1.0\nDepends: a");
        assert_eq!(steps(&plan(&u, &["a"])), ["b 1.0", "a 1.0"]);
    }

    #[test]
    fn pre_depends_cycle_is_an_error() {
        let mut u = universe();
        avail(&mut u, "Package: a\nVersion: 1.0\nPre-Depends: b");
        avail(&mut u, "Package: b\nVersion: 1.0\nPre-Depends: a");
        match failure(&u, &["a"]) {
            ResolveError::PreDependsCycle { cycle } => {
                assert_eq!(cycle, ["a 1.0", "b 1.0", "a 1.0"]);
            }
            other => panic!("expected a Pre-Depends cycle, got {other}"),
        }
    }

    #[test]
    fn unsatisfiable_requests_explain_the_chain() {
        let mut u = universe();
        avail(&mut u, "Package: a\nVersion: 1.0\nDepends: b (>= 2)");
        avail(&mut u, "Package: b\nVersion: 1.0\nDepends: c");
        avail(&mut u, "Package: top\nVersion: 3\nDepends: b");
        let e = failure(&u, &["a"]);
        assert_eq!(
            e.to_string(),
            "cannot install a: a 1.0 depends on b (>= 2), but the feeds have only b 1.0"
        );
        assert_eq!(
            failure(&u, &["top"]).to_string(),
            "cannot install top: top 3 depends on b, b 1.0 depends on c, but c is not in any \
             feed (not assumed installed either)"
        );
        match failure(&u, &["top"]) {
            ResolveError::Unsatisfiable { request, chain, .. } => {
                assert_eq!(request, "top");
                assert_eq!(chain, ["top 3 depends on b", "b 1.0 depends on c"]);
            }
            other => panic!("unexpected {other}"),
        }
        assert_eq!(
            failure(&u, &["b", "zz"]).to_string(),
            "cannot install zz: zz is not in any feed (not assumed installed either)"
        );
    }

    #[test]
    fn deepest_failure_is_reported_when_every_alternative_fails() {
        let mut u = universe();
        avail(&mut u, "Package: a\nVersion: 1.0\nDepends: b | c");
        avail(&mut u, "Package: b\nVersion: 1.0\nDepends: x");
        avail(&mut u, "Package: c\nVersion: 1.0\nDepends: y");
        avail(&mut u, "Package: y\nVersion: 1.0\nDepends: z (>= 2)");
        let message = failure(&u, &["a"]).to_string();
        assert_eq!(
            message,
            "cannot install a: a 1.0 depends on b | c, c 1.0 depends on y, y 1.0 depends on \
             z (>= 2), but z is not in any feed (not assumed installed either)"
        );
        assert_eq!(failure(&u, &["a"]).to_string(), message, "deterministic");
    }

    #[test]
    fn dependencies_never_downgrade_an_installed_package() {
        let mut u = universe();
        installed(&mut u, "Package: b\nVersion: 2.0");
        avail(&mut u, "Package: b\nVersion: 1.0");
        avail(&mut u, "Package: a\nVersion: 1.0\nDepends: b (<< 2)");
        assert_eq!(
            failure(&u, &["a"]).to_string(),
            "cannot install a: a 1.0 depends on b (<< 2), but b 2.0 is installed and only the \
             older 1.0 fits, which would be a downgrade (request b=1.0 to downgrade)"
        );
        let p = plan(&u, &["b=1.0", "a"]);
        assert_eq!(steps(&p), ["b 1.0", "a 1.0"]);
        assert_eq!(p.steps[0].upgrade_from.as_deref(), Some("2.0"));
    }

    #[test]
    fn requested_installed_package_is_upgraded() {
        let mut u = universe();
        installed(&mut u, "Package: a\nVersion: 1.0\nAuto-Installed: yes");
        avail(&mut u, "Package: a\nVersion: 1.1");
        let p = plan(&u, &["a"]);
        assert_eq!(steps(&p), ["a 1.1"]);
        assert_eq!(p.steps[0].upgrade_from.as_deref(), Some("1.0"));
        assert!(!p.steps[0].auto, "requested");

        let mut u = universe();
        installed(&mut u, "Package: a\nVersion: 1.1");
        avail(&mut u, "Package: a\nVersion: 1.1");
        avail(&mut u, "Package: a\nVersion: 1.0");
        let p = plan(&u, &["a"]);
        assert!(p.steps.is_empty());
        assert_eq!(p.already_installed, ["a"]);
        // No downgrade unless pinned.
        assert_eq!(steps(&plan(&u, &["a=1.0"])), ["a 1.0"]);
    }

    #[test]
    fn installed_dependency_is_kept_unless_a_newer_one_is_needed() {
        let mut u = universe();
        installed(&mut u, "Package: b\nVersion: 1.0\nAuto-Installed: yes");
        avail(&mut u, "Package: b\nVersion: 2.0");
        avail(&mut u, "Package: a\nVersion: 1.0\nDepends: b");
        avail(&mut u, "Package: a2\nVersion: 1.0\nDepends: b (>= 2)");
        assert_eq!(steps(&plan(&u, &["a"])), ["a 1.0"]);
        let p = plan(&u, &["a2"]);
        assert_eq!(steps(&p), ["b 2.0", "a2 1.0"]);
        assert_eq!(p.steps[0].upgrade_from.as_deref(), Some("1.0"));
        assert!(p.steps[0].auto && !p.steps[1].auto);
    }

    #[test]
    fn upgrading_a_package_upgrades_or_protects_its_installed_dependents() {
        let mut u = universe();
        installed(&mut u, "Package: b\nVersion: 1.0");
        installed(&mut u, "Package: m\nVersion: 1.0\nDepends: b (= 1.0)");
        avail(&mut u, "Package: b\nVersion: 2.0");
        // m would break and no other m fits: the upgrade is refused, with the reason.
        assert_eq!(
            failure(&u, &["b"]).to_string(),
            "cannot install b: installed m 1.0 depends on b (= 1.0), but b 2.0 is chosen for \
             this plan"
        );
        // With a fitting m in the feeds, m is upgraded after b.
        avail(&mut u, "Package: m\nVersion: 2.0\nDepends: b (= 2.0)");
        let p = plan(&u, &["b"]);
        assert_eq!(steps(&p), ["b 2.0", "m 2.0"]);
        assert_eq!(p.steps[1].upgrade_from.as_deref(), Some("1.0"));
        assert!(!p.steps[1].auto, "m was installed by the user");
    }

    #[test]
    fn reverse_dependents_lists_what_would_break() {
        let mut u = universe();
        installed(&mut u, "Package: b\nVersion: 1.0\nProvides: v");
        installed(&mut u, "Package: x\nVersion: 1.0");
        installed(&mut u, "Package: a\nVersion: 1.0\nDepends: b");
        installed(&mut u, "Package: c\nVersion: 1.0\nDepends: b | x");
        installed(&mut u, "Package: d\nVersion: 1.0\nPre-Depends: v");
        installed(
            &mut u,
            "Package: e\nVersion: 1.0\nDepends: v (>= 1) | b (>= 1)",
        );
        installed(&mut u, "Package: f\nVersion: 1.0\nDepends: x");
        installed(&mut u, "Package: g\nVersion: 1.0\nDepends: libc, b | libc");
        u.assume_installed("libc");
        assert_eq!(u.reverse_dependents("b"), ["a", "d", "e"]);
        assert!(u.reverse_dependents("nothere").is_empty());
        assert_eq!(u.reverse_dependents("x"), ["f"]);
    }

    #[test]
    fn virtual_request_installs_a_provider() {
        let mut u = universe();
        avail(&mut u, "Package: zp\nVersion: 1.0\nProvides: v");
        avail(&mut u, "Package: ap\nVersion: 1.0\nProvides: v");
        let p = plan(&u, &["v"]);
        assert_eq!(steps(&p), ["ap 1.0"]);
        assert!(!p.steps[0].auto);
    }

    #[test]
    fn status_entries_that_are_not_installed_are_ignored() {
        let mut u = universe();
        installed(
            &mut u,
            "Package: a\nVersion: 1.0\nStatus: deinstall ok not-installed",
        );
        installed(
            &mut u,
            "Package: b\nVersion: 1.0\nStatus: install ok config-files",
        );
        avail(&mut u, "Package: a\nVersion: 1.0");
        avail(&mut u, "Package: n\nVersion: 1.0\nDepends: b");
        assert_eq!(steps(&plan(&u, &["a"])), ["a 1.0"]);
        assert!(
            failure(&u, &["n"])
                .to_string()
                .contains("b is not in any feed")
        );
        assert!(u.reverse_dependents("a").is_empty());
    }

    #[test]
    fn bad_fields_name_the_feed_the_package_and_the_field() {
        let mut u = universe();
        let cases = [
            ("Package: a\nVersion: 1.0\nDepends: b (>= 1:)", "Depends"),
            (
                "Package: a\nVersion: 1.0\nPre-Depends: b (=> 1)",
                "Pre-Depends",
            ),
            ("Package: a\nVersion: 1:", "Version"),
            ("Package: a\nArchitecture: all", "Version"),
            ("Package: a\nVersion: 1\nProvides: v (>= 1)", "Provides"),
            ("Package: a\nVersion: 1\nConflicts: x | y", "Conflicts"),
            ("Package: a\nVersion: 1\nBreaks: x (", "Breaks"),
        ];
        for (text, field) in cases {
            let e = match u.add_available(&stanza(text), "base", 0) {
                Ok(()) => panic!("{text:?} should be refused"),
                Err(e) => e,
            };
            let message = e.to_string();
            assert!(
                message.starts_with(&format!("feed \"base\": package \"a\": field {field}: ")),
                "{message}"
            );
        }
        let e = u.add_installed(&stanza("Package: -a\nVersion: 1"));
        assert!(e.is_err_and(|e| {
            e.to_string()
                .starts_with("installed status: package \"-a\"")
        }));
        for bad in ["", "a=", "a=1 2", "-a", "a b"] {
            assert!(Request::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            Request::parse("a=1.0-1"),
            Ok(Request {
                name: "a".into(),
                version: Some("1.0-1".into())
            })
        );
    }

    #[test]
    fn missing_dependency_under_many_alternatives_fails_without_exhaustive_search() {
        let mut u = universe();
        let mut depends: Vec<String> = (0..20).map(|i| format!("p{i} | q{i}")).collect();
        depends.push("missing".into());
        avail(
            &mut u,
            &format!("Package: a\nVersion: 1.0\nDepends: {}", depends.join(", ")),
        );
        for i in 0..20 {
            avail(&mut u, &format!("Package: p{i}\nVersion: 1.0"));
            avail(&mut u, &format!("Package: q{i}\nVersion: 1.0"));
        }
        u.set_step_budget(100);
        assert_eq!(
            failure(&u, &["a"]).to_string(),
            "cannot install a: a 1.0 depends on missing, but missing is not in any feed (not \
             assumed installed either)"
        );
    }

    #[test]
    fn step_budget_stops_a_hopeless_search_with_a_clear_error() {
        let mut u = universe();
        let mut depends: Vec<String> = (0..14).map(|i| format!("p{i} | q{i}")).collect();
        depends.push("w".into());
        avail(
            &mut u,
            &format!("Package: a\nVersion: 1.0\nDepends: {}", depends.join(", ")),
        );
        let mut conflicts = Vec::new();
        for i in 0..14 {
            avail(&mut u, &format!("Package: p{i}\nVersion: 1.0"));
            avail(&mut u, &format!("Package: q{i}\nVersion: 1.0"));
            conflicts.push(format!("p{i}, q{i}"));
        }
        avail(
            &mut u,
            &format!(
                "Package: w\nVersion: 1.0\nConflicts: {}",
                conflicts.join(", ")
            ),
        );
        u.set_step_budget(1000);
        match failure(&u, &["a"]) {
            ResolveError::TooComplex { steps, closest } => {
                assert_eq!(steps, 1000);
                assert!(
                    closest.starts_with(
                        "cannot install a: a 1.0 depends on w, but w 1.0 conflicts with"
                    ),
                    "{closest}"
                );
            }
            other => panic!("expected TooComplex, got {other}"),
        }
    }

    /// A small deterministic generator for the randomised tests.
    struct Lcg(u64);

    impl Lcg {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) % n
        }

        fn relation(&mut self, names: u64) -> String {
            let name = if self.below(4) == 0 {
                format!("v{}", self.below(2))
            } else {
                format!("n{}", self.below(names))
            };
            match self.below(5) {
                0 => format!("{name} (>= {})", 1 + self.below(2)),
                1 => format!("{name} (<< 2)"),
                _ => name,
            }
        }

        fn list(&mut self, names: u64, max: u64, alternatives: bool) -> Vec<String> {
            (0..self.below(max + 1))
                .map(|_| {
                    let n = if alternatives { 1 + self.below(2) } else { 1 };
                    (0..n)
                        .map(|_| self.relation(names))
                        .collect::<Vec<_>>()
                        .join(" | ")
                })
                .collect()
        }

        fn stanza(&mut self, name: &str, version: u64, names: u64) -> String {
            let mut text = format!("Package: {name}\nVersion: {version}");
            let depends = self.list(names, 3, true);
            if !depends.is_empty() {
                let field = if self.below(4) == 0 {
                    "Pre-Depends"
                } else {
                    "Depends"
                };
                text.push_str(&format!("\n{field}: {}", depends.join(", ")));
            }
            let conflicts = self.list(names, 2, false);
            if !conflicts.is_empty() {
                text.push_str(&format!("\nConflicts: {}", conflicts.join(", ")));
            }
            match self.below(4) {
                0 => text.push_str(&format!("\nProvides: v{}", self.below(2))),
                1 => text.push_str(&format!(
                    "\nProvides: v{} (= {})",
                    self.below(2),
                    1 + self.below(2)
                )),
                _ => {}
            }
            text
        }
    }

    /// Whether a set of packages is a consistent world that satisfies `requests`.
    fn consistent(u: &Universe, world: &[PkgId], requests: &[String]) -> bool {
        let present = |rel: &Relation| {
            u.assumed.contains(rel.name()) || world.iter().any(|&q| u.pkgs[q].satisfies(rel))
        };
        let deps_met = world.iter().all(|&p| {
            u.pkgs[p]
                .deps
                .iter()
                .all(|(group, _)| group.relations().iter().any(&present))
        });
        let no_conflict = world.iter().all(|&p| {
            u.pkgs[p].conflicts.iter().all(|(rel, _)| {
                !world
                    .iter()
                    .any(|&q| u.pkgs[q].name != u.pkgs[p].name && u.pkgs[q].satisfies(rel))
            })
        });
        let requested = requests.iter().all(|r| match Relation::parse(r) {
            Ok(rel) => present(&rel),
            Err(_) => false,
        });
        deps_met && no_conflict && requested
    }

    #[test]
    fn random_universes_resolve_exactly_when_a_solution_exists() {
        const NAMES: u64 = 6;
        let mut rng = Lcg(7);
        let mut solvable = 0;
        for round in 0..400 {
            let mut u = universe();
            let mut texts = Vec::new();
            for n in 0..NAMES {
                for version in 1..=1 + rng.below(2) {
                    let text = rng.stanza(&format!("n{n}"), version, NAMES);
                    avail(&mut u, &text);
                    texts.push(text);
                }
            }
            let wanted: Vec<String> = (0..1 + rng.below(2))
                .map(|_| {
                    if rng.below(5) == 0 {
                        format!("v{}", rng.below(2))
                    } else {
                        format!("n{}", rng.below(NAMES))
                    }
                })
                .collect();
            // Brute force: every choice of at most one version per name.
            let by_name: Vec<Vec<PkgId>> = (0..NAMES)
                .map(|n| {
                    u.avail_by_name
                        .get(&format!("n{n}"))
                        .cloned()
                        .unwrap_or_default()
                })
                .collect();
            let mut exists = false;
            let mut pick = vec![0usize; by_name.len()];
            'all: loop {
                let world: Vec<PkgId> = pick
                    .iter()
                    .zip(&by_name)
                    .filter(|(k, _)| **k > 0)
                    .map(|(k, ids)| ids[*k - 1])
                    .collect();
                if consistent(&u, &world, &wanted) {
                    exists = true;
                    break;
                }
                for (k, ids) in pick.iter_mut().zip(&by_name) {
                    *k += 1;
                    if *k <= ids.len() {
                        continue 'all;
                    }
                    *k = 0;
                }
                break;
            }
            let names: Vec<&str> = wanted.iter().map(String::as_str).collect();
            match u.resolve(&requests(&names)) {
                Ok(p) => {
                    let world: Vec<PkgId> = p
                        .steps
                        .iter()
                        .filter_map(|s| {
                            u.avail_by_name[&s.name]
                                .iter()
                                .copied()
                                .find(|&id| u.pkgs[id].version.to_string() == s.version)
                        })
                        .collect();
                    assert!(
                        exists && world.len() == p.steps.len() && consistent(&u, &world, &wanted),
                        "round {round}: inconsistent plan {:?} for {wanted:?} in\n{}",
                        steps(&p),
                        texts.join("\n\n")
                    );
                    solvable += 1;
                }
                Err(ResolveError::PreDependsCycle { .. }) => assert!(exists),
                Err(e) => assert!(
                    !exists,
                    "round {round}: {e}, but a solution exists for {wanted:?} in\n{}",
                    texts.join("\n\n")
                ),
            }
        }
        // The generator makes both kinds of case.
        assert!((50..350).contains(&solvable), "{solvable} solvable");
    }

    #[test]
    fn random_upgrades_leave_a_consistent_installed_world() {
        const NAMES: u64 = 6;
        let mut rng = Lcg(99);
        let mut planned = 0;
        for round in 0..400 {
            let mut u = universe();
            let mut texts = Vec::new();
            let mut installed_texts = Vec::new();
            for n in 0..NAMES {
                let mut versions = Vec::new();
                for version in 1..=1 + rng.below(2) {
                    let mut text = rng.stanza(&format!("n{n}"), version, NAMES);
                    if rng.below(4) == 0 {
                        text.push_str(&format!("\nReplaces: n{}", rng.below(NAMES)));
                    }
                    avail(&mut u, &text);
                    texts.push(text.clone());
                    versions.push(text);
                }
                match rng.below(3) {
                    0 => {
                        let k = rng.below(versions.len() as u64) as usize;
                        installed_texts.push(format!("{}\nAuto-Installed: yes", versions[k]));
                    }
                    1 => installed_texts.push(rng.stanza(&format!("n{n}"), 0, NAMES)),
                    _ => {}
                }
            }
            for text in &installed_texts {
                installed(&mut u, text);
            }
            let before: Vec<PkgId> = u.installed_by_name.values().copied().collect();
            let wanted = vec![format!("n{}", rng.below(NAMES))];
            let names: Vec<&str> = wanted.iter().map(String::as_str).collect();
            let context = || {
                format!(
                    "round {round}, {wanted:?}\nfeeds:\n{}\ninstalled:\n{}",
                    texts.join("\n\n"),
                    installed_texts.join("\n\n")
                )
            };
            let p = match u.resolve(&requests(&names)) {
                Ok(p) => p,
                Err(_) => continue,
            };
            planned += 1;
            let new: Vec<PkgId> = p
                .steps
                .iter()
                .filter_map(|s| {
                    u.avail_by_name[&s.name]
                        .iter()
                        .copied()
                        .find(|&id| u.pkgs[id].version.to_string() == s.version)
                })
                .collect();
            assert_eq!(new.len(), p.steps.len(), "{}", context());
            let kept: Vec<PkgId> = before
                .iter()
                .copied()
                .filter(|&i| {
                    let name = &u.pkgs[i].name;
                    !p.removes.contains(name) && !p.steps.iter().any(|s| s.name == *name)
                })
                .collect();
            let world: Vec<PkgId> = kept.iter().chain(&new).copied().collect();
            let met = |world: &[PkgId], group: &Alternatives| {
                group.relations().iter().any(|r| {
                    u.assumed.contains(r.name()) || world.iter().any(|&q| u.pkgs[q].satisfies(r))
                })
            };
            for &id in &new {
                for (group, _) in &u.pkgs[id].deps {
                    assert!(
                        met(&world, group),
                        "{} lacks {group}: {}",
                        u.pkgs[id].name,
                        context()
                    );
                }
                for &other in &world {
                    for (a, b) in [(id, other), (other, id)] {
                        for (rel, _) in &u.pkgs[a].conflicts {
                            let hit = u.pkgs[a].name != u.pkgs[b].name && u.pkgs[b].satisfies(rel);
                            assert!(
                                !hit,
                                "{} vs {}: {}",
                                u.pkgs[a].name,
                                u.pkgs[b].name,
                                context()
                            );
                        }
                    }
                }
            }
            for &id in &kept {
                for (group, _) in &u.pkgs[id].deps {
                    if met(&before, group) {
                        assert!(
                            met(&world, group),
                            "installed {} loses {group}: {}",
                            u.pkgs[id].name,
                            context()
                        );
                    }
                }
            }
            for name in &p.removes {
                let victim = u.installed_by_name[name];
                let remover = new.iter().any(|&id| {
                    u.pkgs[id]
                        .replaces
                        .iter()
                        .any(|r| u.pkgs[victim].satisfies(r))
                });
                assert!(remover, "{name} removed without a replacer: {}", context());
            }
            let requested = wanted
                .iter()
                .all(|w| world.iter().any(|&q| u.pkgs[q].name == *w));
            assert!(requested, "request not met: {}", context());
        }
        assert!(planned > 100, "{planned} plans");
    }

    /// Checks that every planned package comes after a planned package meeting each of its
    /// dependency groups (for acyclic plans).
    fn assert_ordered(plan: &Plan) {
        let mut seen: HashMap<&str, &Step> = HashMap::new();
        let planned: HashSet<&str> = plan.steps.iter().map(|s| s.name.as_str()).collect();
        for step in &plan.steps {
            for field in ["Pre-Depends", "Depends"] {
                let groups = parse_relations(step.stanza.get(field).unwrap_or(""));
                for group in groups.into_iter().flatten() {
                    let names: Vec<&str> = group.relations().iter().map(|r| r.name()).collect();
                    if names.iter().any(|n| planned.contains(n)) {
                        assert!(
                            names.iter().any(|n| seen.contains_key(n)),
                            "{} comes before its dependency {group}",
                            step.name
                        );
                    }
                }
            }
            seen.insert(&step.name, step);
        }
    }

    #[test]
    fn generated_universe_of_ten_thousand_stanzas() {
        let mut u = universe();
        let mut stanzas = 0;
        for i in 0..8000 {
            let mut text = format!("Package: lib{i}\nVersion: 1.{i}-1\nArchitecture: all");
            let mut depends = Vec::new();
            if i > 0 {
                depends.push(format!("lib{} (>= 1.{})", i - 1, i - 1));
            }
            if i % 10 == 0 && i > 0 {
                depends.push(format!("nothere{i} | lib{}", i / 2));
            }
            if i % 3 == 0 {
                depends.push(format!("virt{} (>= 1.0)", i % 50));
            }
            if !depends.is_empty() {
                text.push_str(&format!("\nDepends: {}", depends.join(", ")));
            }
            text.push_str(&format!("\nConflicts: old{i}"));
            avail_in(&mut u, "main", 0, &text);
            stanzas += 1;
        }
        for i in 0..1950 {
            avail_in(
                &mut u,
                "old",
                1,
                &format!("Package: lib{i}\nVersion: 0.9\nArchitecture: all"),
            );
            stanzas += 1;
        }
        for k in 0..50 {
            avail_in(
                &mut u,
                "main",
                0,
                &format!("Package: prov{k}\nVersion: 1\nProvides: virt{k} (= 1.{k})"),
            );
            stanzas += 1;
        }
        assert_eq!(stanzas, 10_000);
        u.assume_installed("libc");
        let first = plan(&u, &["lib1199"]);
        assert_eq!(first.steps.len(), 1250);
        assert_eq!(first.steps.last().map(|s| s.name.as_str()), Some("lib1199"));
        assert!(first.steps.iter().all(|s| s.version != "0.9"));
        assert_ordered(&first);
        assert_eq!(plan(&u, &["lib1199"]), first, "deterministic");
    }
}
