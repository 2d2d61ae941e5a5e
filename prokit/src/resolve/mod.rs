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
//! The parts: `universe` (the packages, parsed once into a compact form), `solver` (the
//! search), `explain` (the error messages) and `order` (the plan and its install order).
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
//! a candidate all of whose options for a dependency are dead); (2) budgets, below. When no
//! solution exists, the error explains the failure with the longest dependency chain (the first
//! such one found, so the output is deterministic), e.g. `cannot install a: a 1.0 depends on b
//! (>= 2), but the feeds have only b 1.0`.
//!
//! Install order: the packages of the plan are ordered by strongly connected components of the
//! (Pre-)Depends graph, dependencies first. A cycle of plain `Depends` is broken
//! deterministically (inside a cycle, `Pre-Depends` are honoured and the package with the
//! fewest unmet dependencies, then the smallest name, goes first); a cycle made of `Pre-Depends`
//! alone is an error.
//!
//! # Bounds (threat 12)
//! The indexes are signed, but whoever signs them (or a compromised build host) controls their
//! shape: a few megabytes of `Depends` with tens of thousands of alternatives each, thousands of
//! versions of one name, long cycles. Everything here is bounded by the size of the index or
//! by a budget, never by a product of sizes:
//! - The universe is parsed once into a compact form, in time and memory linear in the index
//!   (about five times its size): defined names interned, each relation 12 bytes, each
//!   version parsed once and ranked, so that comparing two versions costs the same however
//!   long they are; the stanza is kept for the plan and for explanations. Candidate lists are
//!   sorted once per universe, not by insertion.
//! - The search counts its work: every alternative, candidate, provider, conflict and dependent
//!   it looks at is one *relation check*. After [`DEFAULT_WORK_BUDGET`] checks
//!   ([`Universe::set_work_budget`]) it gives up with [`ResolveError::TooMuchWork`], and after
//!   [`DEFAULT_STEP_BUDGET`] candidate applications ([`Universe::set_step_budget`]) with
//!   [`ResolveError::TooComplex`]; both report the closest failure seen. Indexes that conflicts
//!   and dependents point into (by name) make each check O(1): a step never rescans another
//!   package's relation lists.
//! - Explanations list at most [`MAX_LISTED`] alternatives, versions, providers or
//!   architectures, then "and N more"; a dependency chain or a Pre-Depends cycle longer than
//!   [`MAX_CHAIN`] keeps both ends.
//! - The install order takes O(E log V) for a plan with V packages and E dependency edges,
//!   however the cycles are shaped.
//!
//! # Why not `pubgrub`
//! PubGrub models a dependency as one version range of one package: it has no disjunctions
//! (`a | b`), no virtual packages, no notion of a package that is installed and should be
//! preferred, and no conflicts with packages outside the solution. Each would have to be encoded
//! as synthetic proxy packages, whose names would then appear in its derivation-tree
//! explanations, and removing an installed package on `Conflicts` + `Replaces` does not fit its
//! model at all. The feeds prokit serves are small (thousands of packages, rarely more than one
//! version each), so a clear backtracking resolver with the learning and budgets above is
//! enough and keeps the error messages in the user's terms.

mod explain;
mod kept;
mod order;
mod solver;
mod universe;

#[cfg(test)]
mod tests;

pub use kept::KeptStanza;
pub use universe::Universe;

use crate::texts::Texts;
use feeds::relation::Relation;
use feeds::version::Version;

/// How many candidate applications [`Universe::resolve`] tries before giving up with
/// [`ResolveError::TooComplex`]. Ordinary resolutions use one per package in the plan.
pub const DEFAULT_STEP_BUDGET: usize = 200_000;

/// How many relation checks (an alternative, candidate, provider, conflict or dependent looked
/// at) [`Universe::resolve`] makes before giving up with [`ResolveError::TooMuchWork`]: one to
/// two seconds on a busy machine (a check costs 5–30 ns). Ordinary resolutions take about ten
/// per package of the plan: 11,000 for a 1,250-package plan out of 10,000 stanzas.
pub const DEFAULT_WORK_BUDGET: u64 = 50_000_000;

/// Most alternatives, versions, providers or architectures spelled out in one list of an
/// error message; the rest are counted ("and 19995 more").
pub const MAX_LISTED: usize = 5;

/// Most links of a dependency chain (or packages of a Pre-Depends cycle) spelled out in an
/// error message; a longer one keeps its first and last `MAX_CHAIN / 2` and counts the rest.
pub const MAX_CHAIN: usize = 20;

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
        /// The links of the chain, request first (at most [`MAX_CHAIN`] and one "… more"
        /// link).
        chain: Vec<String>,
        /// Why the last link cannot be satisfied.
        reason: String,
    },
    /// The packages to install pre-depend on each other in a cycle: none can go first.
    #[error("Pre-Depends cycle, no install order exists: {}", cycle.join(" -> "))]
    PreDependsCycle {
        /// The packages of the cycle, `name version`, the first repeated at the end (a cycle
        /// longer than [`MAX_CHAIN`] has one "… N more" entry in the middle).
        cycle: Vec<String>,
    },
    /// The scratch file holding the stanzas' kept fields could not be written or read.
    #[error("the resolver's scratch file (in the temporary directory): {reason}")]
    Scratch {
        /// What failed.
        reason: String,
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
    /// The search used up its work budget: the relations it had to look at are too many.
    #[error(
        "dependency resolution gave up after {steps} steps and {checks} relation checks (the work budget): the feeds' relations are too large to resolve{}",
        closest.as_ref().map(|c| format!("; the closest it came: {c}")).unwrap_or_default()
    )]
    TooMuchWork {
        /// Steps (candidate applications) made.
        steps: usize,
        /// Relation checks made (the budget, or just past it).
        checks: u64,
        /// The deepest failure seen, if any, worded as an [`ResolveError::Unsatisfiable`]
        /// message.
        closest: Option<String>,
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
///
/// It is the text it was read from, borrowed (a command line's argument, `name` or
/// `name=version`): a bootstrap asks for thousands of packages, and a copy of each, or even
/// its two parts, would be held through the whole resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    text: &'a str,
}

impl<'a> Request<'a> {
    /// A request for the best candidate of `name` (a name with `=` is read as `name=version`).
    pub fn new(name: &'a str) -> Request<'a> {
        Request { text: name }
    }

    /// Reads the command-line form `name` or `name=version`, unchecked: the resolution
    /// checks it ([`Request::parse`] checks it now).
    pub fn of(text: &'a str) -> Request<'a> {
        Request { text }
    }

    /// Parses the command-line form `name` or `name=version`.
    pub fn parse(text: &'a str) -> Result<Request<'a>, ResolveError> {
        let request = Request::of(text);
        request.check()?;
        Ok(request)
    }

    /// Package name, or a virtual name some package provides.
    pub fn name(&self) -> &'a str {
        self.text
            .split_once('=')
            .map_or(self.text, |(name, _)| name)
    }

    /// `pkg=version`: this exact version (compared as dpkg does).
    pub fn version(&self) -> Option<&'a str> {
        self.text.split_once('=').map(|(_, version)| version)
    }

    /// `name` or `name=version`, as written on a command line.
    pub fn label(&self) -> String {
        self.text.to_string()
    }

    /// Checks the name and the pinned version; returns the relation the request stands for.
    fn check(&self) -> Result<Relation, ResolveError> {
        let bad = |message: String| ResolveError::BadRequest {
            request: self.label(),
            message,
        };
        let name = self.name();
        if !universe::is_package_name(name) {
            return Err(bad(format!(
                "{name:?} is not a package name (expected a letter or digit, then letters, digits, `+`, `-`, `.` or `_`)"
            )));
        }
        let text = match self.version() {
            Some(v) => {
                Version::parse(v).map_err(|e| bad(e.to_string()))?;
                format!("{name} (= {v})")
            }
            None => name.to_string(),
        };
        Relation::parse(&text).map_err(|e| bad(e.to_string()))
    }
}

/// The requests of a command line (`name` or `name=version` each), packed into one text.
///
/// A bootstrap names thousands of packages. As a `Vec<String>` each name is an allocation
/// of its own (a 24-byte `String` and at least a 32-byte chunk): 0.5 MB for 10,000 names,
/// held from the command line's parsing to the end of the install. Packed (`texts.rs`), they
/// are the text and 4 bytes a name. [`RequestList::get`] lends one as a [`Request`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestList {
    texts: Texts,
}

impl RequestList {
    /// Packs `names`, freeing each as it is copied.
    pub fn new(names: Vec<String>) -> RequestList {
        let bytes = names.iter().map(String::len).sum();
        let mut list = RequestList {
            texts: Texts::with_capacity(names.len(), bytes),
        };
        for name in names {
            list.push(&name);
        }
        list
    }

    /// Packs copies of `names`.
    pub fn of<S: AsRef<str>>(names: &[S]) -> RequestList {
        let mut list = RequestList::default();
        for name in names {
            list.push(name.as_ref());
        }
        list
    }

    /// Adds one request at the end.
    pub fn push(&mut self, text: &str) {
        self.texts
            .push(text)
            .expect("fewer than 2^32 requests, shorter than 4 GiB in all");
    }

    pub fn len(&self) -> usize {
        self.texts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Each request's text, in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> + Clone + '_ {
        self.texts.iter()
    }

    /// Request `i` (panics past the end, as a slice does).
    pub fn get(&self, i: usize) -> Request<'_> {
        let text = u32::try_from(i).ok().and_then(|i| self.texts.get(i));
        Request::of(text.expect("a request of the list"))
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

/// One package to install: 72 bytes and one allocation (its texts), as a plan of a
/// bootstrap holds thousands of them beside the universe they were resolved in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The name, the version, and the version it upgrades, one after the other.
    text: Box<str>,
    name_len: u32,
    version_len: u32,
    upgrade: bool,
    /// Architecture, as written in the index (shared by the steps of that architecture).
    pub arch: std::sync::Arc<String>,
    /// Name of the feed it comes from (shared by the steps of that feed).
    pub feed: std::sync::Arc<String>,
    /// The index stanza's fields needed after resolution: the relations, `Filename`, `Size`,
    /// `SHA256sum`/`SHA256`, `Signature` and `Signed-By` (not the name, version and
    /// architecture, which are the fields above, nor what only describes the package),
    /// shared with the universe it was resolved in.
    pub stanza: KeptStanza,
    /// True when pulled in as a dependency; false when requested. An upgraded installed
    /// package that was not requested keeps its `Auto-Installed` flag.
    pub auto: bool,
}

impl Step {
    /// Package `name` at `version`, replacing the installed `upgrade_from` if any.
    pub fn new(
        name: &str,
        version: &str,
        upgrade_from: Option<&str>,
        arch: std::sync::Arc<String>,
        feed: std::sync::Arc<String>,
        stanza: KeptStanza,
        auto: bool,
    ) -> Step {
        let len32 = |s: &str| u32::try_from(s.len()).expect("a name or version shorter than 4 GiB");
        Step {
            text: [name, version, upgrade_from.unwrap_or("")].concat().into(),
            name_len: len32(name),
            version_len: len32(version),
            upgrade: upgrade_from.is_some(),
            arch,
            feed,
            stanza,
            auto,
        }
    }

    /// Package name.
    pub fn name(&self) -> &str {
        &self.text[..self.name_len as usize]
    }

    /// Version, as written in the index.
    pub fn version(&self) -> &str {
        let start = self.name_len as usize;
        &self.text[start..start + self.version_len as usize]
    }

    /// The installed version this replaces, if any.
    pub fn upgrade_from(&self) -> Option<&str> {
        let start = (self.name_len + self.version_len) as usize;
        self.upgrade.then(|| &self.text[start..])
    }
}
