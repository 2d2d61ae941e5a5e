//! The search: obligations (requests, dependency groups, installed packages that must go)
//! processed breadth-first, a stack of choice points, an undo trail, dead-candidate learning,
//! and the step and work budgets (see the module documentation).
//!
//! Work accounting: [`Solver::tick`] is called for every alternative, candidate, provider,
//! provide entry, conflict and dependent looked at. Loops stop as soon as the budget is spent,
//! and [`Solver::run`] turns that into [`ResolveError::TooMuchWork`] after the evaluation or
//! application that spent it, so no search runs longer than the budget plus one step.

use super::universe::{AVAILABLE, Counts, INSTALLED, INSTALLED_PROVIDED, NO_NAME, PROVIDED};
use super::universe::{Dep, IdMap, IdSet, NameId, PkgId, PkgRef, Sorted, Universe, Want};
use super::{DEFAULT_STEP_BUDGET, DEFAULT_WORK_BUDGET, MAX_LISTED, RequestList, ResolveError};
use feeds::relation::Op;
use feeds::version::Version;
use std::cell::Cell;

/// What has been decided about a name in the current branch. Names without a decision are
/// as the status file says (installed or absent).
#[derive(Debug, Clone, Copy)]
pub(super) enum Decision {
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

impl Decision {
    /// As a [`Decisions`] word: never 0.
    fn word(self) -> u64 {
        let (kind, id, requested) = match self {
            Decision::Keep(id) => (1, id, false),
            Decision::Install { id, requested } => (2, id, requested),
            Decision::Doomed { by } => (3, by, false),
            Decision::Remove { by } => (4, by, false),
        };
        u64::from(id) | (kind << 32) | (u64::from(requested) << 35)
    }

    fn from_word(word: u64) -> Option<Decision> {
        let id = word as u32;
        Some(match (word >> 32) & 7 {
            1 => Decision::Keep(id),
            2 => Decision::Install {
                id,
                requested: (word >> 35) & 1 == 1,
            },
            3 => Decision::Doomed { by: id },
            4 => Decision::Remove { by: id },
            _ => return None,
        })
    }
}

/// The decisions of the current branch by name: a word per name of the universe, 0 for none
/// (a bootstrap decides nearly every name: at 10,000 packages a map took 213 KB, its table
/// grown to 16,384 buckets; this takes 82 KB, and zeroed pages of names never decided are
/// not touched at all).
pub(super) struct Decisions(Vec<u64>);

impl Decisions {
    fn new(names: usize) -> Decisions {
        Decisions(vec![0; names])
    }

    fn get(&self, name: NameId) -> Option<Decision> {
        self.0
            .get(name as usize)
            .and_then(|&word| Decision::from_word(word))
    }

    /// Sets the decision of `name` (a name of the universe); the one it replaces.
    fn insert(&mut self, name: NameId, decision: Decision) -> Option<Decision> {
        let slot = &mut self.0[name as usize];
        let previous = Decision::from_word(*slot);
        *slot = decision.word();
        previous
    }

    fn remove(&mut self, name: NameId) {
        if let Some(slot) = self.0.get_mut(name as usize) {
            *slot = 0;
        }
    }

    /// Every decision, by name in number order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (NameId, Decision)> + '_ {
        (0u32..)
            .zip(&self.0)
            .filter_map(|(name, &word)| Some((name, Decision::from_word(word)?)))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Opt {
    Keep(PkgId),
    Install { id: PkgId, requested: bool },
    Remove { victim: PkgId, by: PkgId },
}

/// A link of the explanation chain, shared by everything that descends from it, as
/// [`Solver::link`] gives it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Link {
    pub(super) kind: LinkKind,
    /// The link it descends from ([`NO_LINK`] for a request's).
    pub(super) parent: Chain,
}

/// A link as [`Solver::links`] keeps it: 12 bytes in an arena (a reference-counted link
/// would be an allocation each, and a large install makes one per dependency: 50,000 for a
/// bootstrap of 10,000 packages). `a` and the low 30 bits of `tag_b` are a request's number,
/// a dependency's package and group, or a conflict's entry in [`Solver::conflict_links`]
/// (conflicts are few, and take four numbers); the kind is in the top two bits of `tag_b`.
/// A link's depth is not kept: only a failure asks for it, and counts it ([`Solver::depth`]).
#[derive(Debug)]
struct PackedLink {
    a: u32,
    tag_b: u32,
    parent: Chain,
}

const LINK_B: u32 = (1 << 30) - 1;
const LINK_REQUEST: u32 = 0;
const LINK_DEP: u32 = 1 << 30;
const LINK_CONFLICT: u32 = 2 << 30;

/// The parent of a root link.
pub(super) const NO_LINK: Chain = Chain::MAX;

#[derive(Debug, Clone, Copy)]
pub(super) enum LinkKind {
    /// The root: request number.
    Request(usize),
    /// `from` (pre-)depends on its group number `group`.
    Dep { from: PkgId, group: u32 },
    /// `declarer`'s conflict number `index` hits `target`; `victim` (one of the two, the
    /// installed one) must be upgraded, or removed in favour of `by` (which conflicts with
    /// and replaces it) unless that is [`NO_PKG`].
    Conflict {
        declarer: PkgId,
        index: u32,
        target: PkgId,
        victim: PkgId,
        by: PkgId,
    },
}

/// The last link of a chain: its index in [`Solver::links`].
pub(super) type Chain = u32;

/// What an obligation is. The queue holds an obligation as its link ([`Solver::queue`]): a
/// request's, a dependency group's, or a conflict's, whose [`LinkKind`] says as much.
#[derive(Debug, Clone, Copy)]
enum ObKind {
    Request(u32),
    Dep {
        from: PkgId,
        group: u32,
    },
    /// `victim` (installed, doomed) must be upgraded, or removed in favour of `by` (which
    /// conflicts with and replaces it) unless that is [`NO_PKG`].
    Replace {
        victim: PkgId,
        by: PkgId,
    },
}

/// No package (an [`ObKind::Replace`] without a package to remove the victim for).
const NO_PKG: PkgId = PkgId::MAX;

/// Where a relation comes from: request number `i`, or alternative `alt` of dependency group
/// `group` of `pkg`.
#[derive(Debug, Clone, Copy)]
pub(super) enum RelAt {
    Request(usize),
    Alt { pkg: PkgId, group: u32, alt: u32 },
}

/// Why one relation of a group could not be met.
#[derive(Debug, Clone, Copy)]
pub(super) enum RelWhy {
    /// Nothing by that name or providing it anywhere.
    Missing(RelAt),
    /// Packages exist, no version fits.
    NoMatch(RelAt),
    /// The name is already decided for a package that does not fit.
    Held { rel: RelAt, holder: PkgId },
    /// The installed package of that name is being removed.
    Removed { victim: PkgId, by: PkgId },
    /// The installed package of that name cannot stay next to `by` (Conflicts/Breaks), and
    /// no other version of it fits.
    Doomed { victim: PkgId, by: PkgId },
    /// Candidates fit but each has been found uninstallable.
    Dead(RelAt),
    /// Only this candidate, older than the installed version, fits.
    Downgrade(PkgId),
}

#[derive(Debug, Clone)]
pub(super) enum Why {
    /// Why the relations failed: the first [`MAX_LISTED`] of them, and how many more did.
    Rels { shown: Vec<RelWhy>, more: usize },
    Conflict {
        declarer: PkgId,
        index: u32,
        target: PkgId,
    },
}

#[derive(Debug)]
pub(super) struct Failure {
    pub(super) chain: Chain,
    /// How many links the chain has below its request's ([`Solver::depth`]).
    pub(super) depth: u32,
    pub(super) why: Why,
}

enum Eval {
    Done,
    Options { options: Vec<Opt>, fixed: bool },
    Fail { why: Why, fixed: bool },
}

/// A choice point: 24 bytes, its options in [`Solver::options`] (a vector each would be an
/// allocation per choice, and a large install makes one choice per package). The option
/// applied is the one before `next` ([`Choice::applied`]).
struct Choice {
    ob: u32,
    /// Where its options start in [`Solver::options`]; they end where the next choice's
    /// start (the last choice's at the end).
    options_start: u32,
    /// The next option to try, counted from `options_start`, and [`FIXED`].
    next_fixed: u32,
    trail_len: u32,
    queue_len: u32,
    /// Every link made after this choice was applied hangs off an obligation queued after it.
    links_len: u32,
}

/// The bit of [`Choice::next_fixed`] set when the options did not depend on earlier
/// decisions (only on the universe and on dead candidates): if they all die, so does the
/// obligation's owner.
const FIXED: u32 = 1 << 31;

impl Choice {
    /// The next option to try, counted from `options_start`.
    fn next(&self) -> u32 {
        self.next_fixed & !FIXED
    }

    fn fixed(&self) -> bool {
        self.next_fixed & FIXED != 0
    }

    /// The option applied last (`options`: [`Solver::options`]), if any yet.
    fn applied(&self, options: &[Opt]) -> Option<Opt> {
        let next = self.next().checked_sub(1)?;
        options.get((self.options_start + next) as usize).copied()
    }
}

/// A length kept in a [`Choice`] (the budgets keep the search far below 2^32 of anything).
fn len32(n: usize) -> u32 {
    u32::try_from(n).expect("fewer than 2^32 search entries")
}

enum Undo {
    Decision(NameId, Option<Decision>),
    Provider(NameId),
    Declared(NameId),
    Rdep(NameId),
}

pub(super) struct Solver<'u> {
    pub(super) u: &'u Universe,
    sorted: &'u Sorted,
    pub(super) requests: &'u RequestList,
    pub(super) decisions: Decisions,
    trail: Vec<Undo>,
    /// The links of every chain (undone with the obligations on backtracking, but for those
    /// of the deepest failure, [`Solver::best`]).
    links: Vec<PackedLink>,
    /// The conflicts of [`LinkKind::Conflict`] links, with their link, in link order:
    /// (link, declarer, index, target, victim, by).
    conflict_links: Vec<(Chain, [u32; 5])>,
    /// The obligations, each as its link (the last of its chain): 4 bytes each where the
    /// obligation and its link would repeat the same package and group.
    queue: Vec<Chain>,
    head: usize,
    /// Planned packages by the virtual names they provide.
    sel_providers: IdMap<NameId, Vec<PkgId>>,
    /// Planned packages' Conflicts/Breaks by the name they hit: (declarer, conflict index).
    sel_declared: IdMap<NameId, Vec<(PkgId, u32)>>,
    /// Planned packages' dependency groups by the names they mention, for names an installed
    /// package holds (only those can go away): (package, group).
    sel_rdeps: IdMap<NameId, Vec<(PkgId, u32)>>,
    choices: Vec<Choice>,
    /// The options of every choice on the stack, one after the other.
    options: Vec<Opt>,
    /// Candidates that can never be installed (learnt; kept across backtracking).
    dead: IdSet<PkgId>,
    dead_changed: bool,
    pub(super) best: Option<Failure>,
    steps: usize,
    budget: usize,
    work: Cell<u64>,
    work_budget: u64,
}

impl<'u> Solver<'u> {
    pub(super) fn new(u: &'u Universe, requests: &'u RequestList) -> Self {
        let links = (0..requests.len())
            .map(|i| PackedLink {
                a: u32::try_from(i).expect("fewer than 2^32 requests"),
                tag_b: LINK_REQUEST,
                parent: NO_LINK,
            })
            .collect();
        let queue = (0..requests.len())
            .map(|i| Chain::try_from(i).expect("fewer than 2^32 requests"))
            .collect();
        let sorted = u.sorted();
        Solver {
            u,
            sorted,
            requests,
            decisions: Decisions::new(u.names.len()),
            trail: Vec::new(),
            links,
            conflict_links: Vec::new(),
            queue,
            head: 0,
            sel_providers: IdMap::default(),
            sel_declared: IdMap::default(),
            sel_rdeps: IdMap::default(),
            choices: Vec::new(),
            options: Vec::new(),
            dead: IdSet::default(),
            dead_changed: false,
            best: None,
            steps: 0,
            budget: u.step_budget.unwrap_or(DEFAULT_STEP_BUDGET),
            work: Cell::new(0),
            work_budget: u.work_budget.unwrap_or(DEFAULT_WORK_BUDGET),
        }
    }

    /// Frees what only the search needed (its links, obligations, choices, undo trail, the
    /// planned packages' conflicts and dependencies by name, the learnt dead candidates) once
    /// it has succeeded: the plan reads the decisions and the providers, and is made while
    /// the universe is still held, so this is the resolution's peak (a bootstrap of 10,000
    /// packages: ~5 MB).
    pub(super) fn release_search(&mut self) {
        self.links = Vec::new();
        self.conflict_links = Vec::new();
        self.queue = Vec::new();
        self.choices = Vec::new();
        self.options = Vec::new();
        self.trail = Vec::new();
        self.sel_declared = Default::default();
        self.sel_rdeps = Default::default();
        self.dead = Default::default();
    }

    pub(super) fn counts(&self) -> Counts {
        Counts {
            steps: self.steps,
            checks: self.work.get(),
        }
    }

    // --- work accounting -------------------------------------------------------------------

    /// Counts `n` relation checks; false once the budget is spent.
    fn tick(&self, n: usize) -> bool {
        let work = self.work.get().saturating_add(n as u64);
        self.work.set(work);
        work <= self.work_budget
    }

    fn exhausted(&self) -> bool {
        self.work.get() > self.work_budget
    }

    fn check_work(&self) -> Result<(), ResolveError> {
        if self.exhausted() {
            Err(ResolveError::TooMuchWork {
                steps: self.steps,
                checks: self.work.get(),
                closest: self.closest(),
            })
        } else {
            Ok(())
        }
    }

    // --- the world as the current branch sees it -------------------------------------------

    pub(super) fn pkg(&self, id: PkgId) -> PkgRef<'u> {
        self.u.pkg(id)
    }

    /// Whether `name` has any of the `bits` ([`Universe::flags`]).
    fn has(&self, name: NameId, bits: u8) -> bool {
        self.u.flags(name) & bits != 0
    }

    pub(super) fn candidates(&self, name: NameId) -> &'u [PkgId] {
        if !self.has(name, AVAILABLE) {
            return &[];
        }
        self.sorted.by_name.get(name)
    }

    pub(super) fn providers(&self, name: NameId) -> &'u [PkgId] {
        if !self.has(name, PROVIDED) {
            return &[];
        }
        self.sorted.providers.get(name)
    }

    fn installed(&self, name: NameId) -> Option<PkgId> {
        if !self.has(name, INSTALLED) {
            return None;
        }
        self.u.installed_by_name.get(&name).copied()
    }

    fn installed_providers(&self, name: NameId) -> &'u [PkgId] {
        if !self.has(name, INSTALLED_PROVIDED) {
            return &[];
        }
        self.u
            .installed_providers
            .get(&name)
            .map_or(&[], Vec::as_slice)
    }

    /// The relation request `i` stands for (`name`, or `name (= version)`), made when asked
    /// for rather than kept (a bootstrap makes thousands of requests): a request was checked
    /// before the search began ([`Request::check`](super::Request)).
    fn request_want(&self, i: usize) -> Want {
        let request = self.requests.get(i);
        let version = request.version().and_then(|v| Version::parse(v).ok());
        Want {
            name: self.u.names.get(request.name()).unwrap_or(NO_NAME),
            op: version.as_ref().map(|_| Op::Eq),
            rank: version.map_or(0, |v| self.sorted.rank_of(self.u, &v)),
        }
    }

    /// The relation at `at`, ready to be checked.
    pub(super) fn want(&self, at: RelAt) -> Want {
        match at {
            RelAt::Request(i) => self.request_want(i),
            RelAt::Alt { pkg, group, alt } => self
                .u
                .want(self.pkg(pkg).group(group as usize)[alt as usize]),
        }
    }

    /// The name of `dep` ([`NO_NAME`] when nothing has it).
    fn dep_name(&self, dep: Dep) -> NameId {
        dep.name(&self.sorted.pending)
    }

    /// The rank of package `id`'s version.
    fn rank(&self, id: PkgId) -> u32 {
        self.sorted.rank[self.pkg(id).ver as usize]
    }

    fn satisfies(&self, id: PkgId, want: Want) -> bool {
        self.tick(1 + self.pkg(id).provides().len());
        self.u.satisfies(id, want)
    }

    fn provides_for(&self, id: PkgId, want: Want) -> bool {
        self.tick(self.pkg(id).provides().len());
        self.u.provides_for(id, want)
    }

    fn decision(&self, name: NameId) -> Option<Decision> {
        // Only names of packages (available or installed) are ever decided.
        if !self.has(name, AVAILABLE | INSTALLED) {
            return None;
        }
        self.decisions.get(name)
    }

    /// The package of that name that will be present.
    pub(super) fn present_by_name(&self, name: NameId) -> Option<PkgId> {
        match self.decision(name) {
            Some(Decision::Keep(id) | Decision::Install { id, .. }) => Some(id),
            Some(Decision::Doomed { .. } | Decision::Remove { .. }) => None,
            None => self.installed(name),
        }
    }

    fn is_present(&self, id: PkgId) -> bool {
        self.present_by_name(self.pkg(id).name) == Some(id)
    }

    /// Present packages (other than the one named `name`) providing `name`.
    fn present_providers(&self, name: NameId) -> impl Iterator<Item = PkgId> + '_ {
        let installed = self.installed_providers(name).iter();
        let planned = if self.has(name, PROVIDED) {
            self.sel_providers.get(&name).map_or(&[][..], Vec::as_slice)
        } else {
            &[]
        };
        installed
            .copied()
            .filter(|&id| self.tick(1) && self.is_present(id))
            .chain(planned.iter().copied())
    }

    pub(super) fn present_satisfier(&self, want: Want) -> Option<PkgId> {
        if let Some(id) = self.present_by_name(want.name)
            && want.matches(self.rank(id))
        {
            return Some(id);
        }
        self.present_providers(want.name)
            .find(|&id| self.provides_for(id, want))
    }

    fn group_satisfied(&self, from: PkgId, group: usize) -> bool {
        for &dep in self.pkg(from).group(group) {
            if !self.tick(1) {
                return false;
            }
            let name = self.dep_name(dep);
            if self.u.flags(name) == 0 {
                continue; // nothing has that name
            }
            if self.u.is_assumed(name) || self.present_satisfier(self.u.want(dep)).is_some() {
                return true;
            }
        }
        false
    }

    /// Whether the first alternative of `group` is an assumed name, or met by a package this
    /// branch decided to install or keep (looked at alone: a group of thousands of
    /// alternatives is not searched twice).
    fn met_by_plan(&self, group: &[Dep]) -> bool {
        let Some(&dep) = group.first() else {
            return false;
        };
        self.tick(1);
        let name = self.dep_name(dep);
        if self.u.flags(name) == 0 {
            return false;
        }
        if self.u.is_assumed(name) {
            return true;
        }
        let want = self.u.want(dep);
        if let Some(Decision::Install { id, .. } | Decision::Keep(id)) = self.decision(name)
            && want.matches(self.rank(id))
        {
            return true;
        }
        self.has(name, PROVIDED)
            && self
                .sel_providers
                .get(&name)
                .is_some_and(|ids| ids.iter().any(|&id| self.provides_for(id, want)))
    }

    /// Whether `id` is an available build identical to the installed package of its name.
    fn same_as_installed(&self, id: PkgId) -> bool {
        let p = self.pkg(id);
        self.installed(p.name)
            .is_some_and(|i| self.pkg(i).same_build(&p, &self.sorted.rank))
    }

    /// Whether installing `id` would be a fresh install or an upgrade (not a reinstall, not a
    /// downgrade: only a pinned request downgrades).
    fn new_or_newer(&self, id: PkgId) -> bool {
        let p = self.pkg(id);
        self.installed(p.name)
            .is_none_or(|i| self.rank(id) > self.rank(i))
    }

    fn is_dead(&self, id: PkgId) -> bool {
        !self.dead.is_empty() && self.dead.contains(&id)
    }

    // --- evaluating obligations ------------------------------------------------------------

    fn evaluate(&self, ob: usize) -> Eval {
        match self.ob_kind(ob) {
            ObKind::Request(i) => self.eval_request(i as usize),
            ObKind::Dep { from, group } => self.eval_dep(from, group),
            ObKind::Replace { victim, by } => {
                self.eval_replace(ob, victim, (by != NO_PKG).then_some(by))
            }
        }
    }

    fn eval_request(&self, i: usize) -> Eval {
        let request = self.requests.get(i);
        let at = RelAt::Request(i);
        let want = self.want(at);
        let name = want.name;
        if self.u.is_assumed(name) {
            return Eval::Done;
        }
        let available = self.candidates(name);
        let installed = self.installed(name);
        if available.is_empty() && installed.is_none() {
            // A virtual name: any provider will do.
            if self.present_satisfier(want).is_some() {
                return Eval::Done;
            }
            let mut options = Vec::new();
            let mut fixed = true;
            let why = self.options_for_rel(at, true, &mut options, &mut fixed, true);
            return finish(options, fixed, why.into_iter().collect(), 0);
        }
        let fits = |id: PkgId| self.tick(1) && want.matches(self.rank(id));
        match self.decision(name) {
            Some(Decision::Keep(id) | Decision::Install { id, .. }) => {
                if fits(id) {
                    Eval::Done
                } else {
                    let why = RelWhy::Held {
                        rel: at,
                        holder: id,
                    };
                    Eval::Fail {
                        why: Why::Rels {
                            shown: vec![why],
                            more: 0,
                        },
                        fixed: false,
                    }
                }
            }
            Some(Decision::Remove { by }) => Eval::Fail {
                why: Why::Rels {
                    shown: vec![RelWhy::Removed {
                        victim: installed.unwrap_or(by),
                        by,
                    }],
                    more: 0,
                },
                fixed: false,
            },
            Some(Decision::Doomed { .. }) => {
                let options: Vec<Opt> = available
                    .iter()
                    .copied()
                    .filter(|&id| fits(id) && !self.same_as_installed(id))
                    .filter(|&id| request.version().is_some() || self.new_or_newer(id))
                    .filter(|id| !self.is_dead(*id))
                    .map(|id| Opt::Install {
                        id,
                        requested: true,
                    })
                    .collect();
                let why = self.rel_why(at, options.is_empty());
                finish(options, false, vec![why], 0)
            }
            None => {
                let mut options = Vec::new();
                let candidates = available.iter().copied().filter(|&id| fits(id));
                match installed {
                    Some(inst) if request.version().is_none() => {
                        // Upgrade when the feeds have something newer; else keep.
                        let current = self.rank(inst);
                        options.extend(candidates.filter(|&id| self.rank(id) > current).map(
                            |id| Opt::Install {
                                id,
                                requested: true,
                            },
                        ));
                        if options.is_empty() {
                            options.push(Opt::Keep(inst));
                        }
                    }
                    Some(inst) if fits(inst) => options.push(Opt::Keep(inst)),
                    _ => options.extend(candidates.map(|id| Opt::Install {
                        id,
                        requested: true,
                    })),
                }
                options.retain(|o| !matches!(o, Opt::Install { id, .. } if self.dead.contains(id)));
                let why = self.rel_why(at, options.is_empty());
                finish(options, true, vec![why], 0)
            }
        }
    }

    fn eval_dep(&self, from: PkgId, group: u32) -> Eval {
        let p = self.pkg(from);
        if p.installed && !self.is_present(from) {
            return Eval::Done; // the dependent itself is being replaced or removed
        }
        if self.group_satisfied(from, group as usize) {
            return Eval::Done;
        }
        let mut options = Vec::new();
        let mut fixed = !p.installed;
        let mut shown = Vec::new();
        let alternatives = p.group(group as usize).len();
        for alt in 0..alternatives {
            if self.exhausted() {
                break;
            }
            let at = RelAt::Alt {
                pkg: from,
                group,
                alt: alt as u32,
            };
            let explain = shown.len() < MAX_LISTED;
            if let Some(why) = self.options_for_rel(at, false, &mut options, &mut fixed, explain) {
                shown.push(why);
            }
        }
        if p.installed && self.decision(p.name).is_none() {
            // An installed dependent whose dependency broke may be upgraded to a version
            // that fits the new world.
            for &id in self.candidates(p.name) {
                if self.tick(1) && self.new_or_newer(id) && !self.is_dead(id) {
                    options.push(Opt::Install {
                        id,
                        requested: false,
                    });
                }
            }
        }
        self.tick(options.len());
        let mut seen = IdSet::default();
        options.retain(|o| seen.insert(*o));
        let more = alternatives - shown.len();
        finish(options, fixed, shown, more)
    }

    fn eval_replace(&self, ob: usize, victim: PkgId, by: Option<PkgId>) -> Eval {
        let name = self.pkg(victim).name;
        if !matches!(self.decision(name), Some(Decision::Doomed { .. })) {
            return Eval::Done;
        }
        let mut options: Vec<Opt> = by
            .map(|by| Opt::Remove { victim, by })
            .into_iter()
            .collect();
        for &id in self.candidates(name) {
            if self.tick(1) && self.new_or_newer(id) && !self.is_dead(id) {
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
        let why = match self.link(self.queue[ob]).kind {
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
            _ => Why::Rels {
                shown: Vec::new(),
                more: 0,
            },
        };
        Eval::Fail { why, fixed: false }
    }

    /// Adds the ways of installing something new that satisfies the relation at `at`; when
    /// `explain`, returns why there may be none. Clears `fixed` when earlier decisions removed
    /// options.
    fn options_for_rel(
        &self,
        at: RelAt,
        requested: bool,
        options: &mut Vec<Opt>,
        fixed: &mut bool,
        explain: bool,
    ) -> Option<RelWhy> {
        let want = self.want(at);
        let before = options.len();
        let name = want.name;
        self.tick(1);
        if self.u.flags(name) == 0 {
            // Nothing has that name: no decision, candidate or provider.
            return explain.then_some(RelWhy::Missing(at));
        }
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
                if let Some(&victim) = self.u.installed_by_name.get(&name) {
                    removed = Some((victim, by));
                }
            }
            d @ (Some(Decision::Doomed { .. }) | None) => {
                for &id in self.candidates(name) {
                    if !self.tick(1) {
                        break;
                    }
                    let fits = want.matches(self.rank(id));
                    if fits && !self.is_dead(id) && self.new_or_newer(id) {
                        options.push(Opt::Install { id, requested });
                    }
                }
                if let Some(Decision::Doomed { by }) = d {
                    *fixed = false;
                    let victim = self.u.installed_by_name.get(&name);
                    if let Some(&victim) = victim.filter(|_| options.len() == before) {
                        doomed = Some((victim, by));
                    }
                }
            }
        }
        for &id in self.providers(name) {
            if !self.tick(1) {
                break;
            }
            if !self.provides_for(id, want) || self.is_dead(id) {
                continue;
            }
            match self.decision(self.pkg(id).name) {
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
        for &id in self.installed_providers(name) {
            if !self.tick(1) {
                break;
            }
            if self.provides_for(id, want) && !self.is_present(id) {
                *fixed = false;
            }
        }
        if !explain {
            return None;
        }
        if let Some(holder) = held {
            return Some(RelWhy::Held { rel: at, holder });
        }
        if let Some((victim, by)) = removed {
            return Some(RelWhy::Removed { victim, by });
        }
        if let Some((victim, by)) = doomed.filter(|_| options.len() == before) {
            return Some(RelWhy::Doomed { victim, by });
        }
        Some(self.rel_why(at, options.len() == before))
    }

    /// Why nothing new satisfies the relation at `at` (meaningful only when `none` is true).
    fn rel_why(&self, at: RelAt, none: bool) -> RelWhy {
        if !none {
            return RelWhy::NoMatch(at);
        }
        let want = self.want(at);
        let name = want.name;
        let mut fitting = self
            .candidates(name)
            .iter()
            .chain(self.providers(name))
            .copied()
            .filter(|&id| self.satisfies(id, want));
        match fitting.clone().find(|&id| self.new_or_newer(id)) {
            Some(_) => return RelWhy::Dead(at),
            None => {
                if let Some(older) = fitting.next() {
                    return RelWhy::Downgrade(older);
                }
            }
        }
        if self.u.exists(name) {
            RelWhy::NoMatch(at)
        } else {
            RelWhy::Missing(at)
        }
    }

    // --- applying options ------------------------------------------------------------------

    fn set_decision(&mut self, name: NameId, decision: Decision) {
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

    fn apply(&mut self, opt: Opt, chain: Chain) -> Result<(), Why> {
        match opt {
            Opt::Keep(id) => {
                self.set_decision(self.pkg(id).name, Decision::Keep(id));
                Ok(())
            }
            Opt::Remove { victim, by } => {
                self.set_decision(self.pkg(victim).name, Decision::Remove { by });
                self.recheck(victim, chain);
                Ok(())
            }
            Opt::Install { id, requested } => self.install(id, requested, chain),
        }
    }

    fn install(&mut self, id: PkgId, requested: bool, chain: Chain) -> Result<(), Why> {
        let x = self.pkg(id);
        let name = x.name;
        // Its names are looked up below, and its provides indexed.
        self.tick(2 * x.provides().len());
        // Conflicts and Breaks, both ways, with everything that will be present.
        let mut hits: Vec<(PkgId, u32, PkgId)> = Vec::new(); // (declarer, index, target)
        for (index, &(dep, _)) in x.conflicts().iter().enumerate() {
            if !self.tick(1) {
                break;
            }
            let want = self.u.want(dep);
            let by_name = self.present_by_name(want.name);
            for t in by_name.into_iter().chain(self.present_providers(want.name)) {
                if self.pkg(t).name != name && self.satisfies(t, want) {
                    hits.push((id, index as u32, t));
                }
            }
        }
        for n in x.names() {
            let installed = self.sorted.installed_declared.get(&n).into_iter().flatten();
            let declarers = installed
                .copied()
                .filter(|&(d, _)| self.is_present(d))
                .chain(self.sel_declared.get(&n).into_iter().flatten().copied());
            for (d, index) in declarers {
                if !self.tick(1) {
                    break;
                }
                let dp = self.pkg(d);
                if dp.name == name {
                    continue;
                }
                let (dep, _) = dp.conflicts()[index as usize];
                if self.satisfies(id, self.u.want(dep)) {
                    hits.push((d, index, id));
                }
            }
        }
        let mut doomed: Vec<(PkgId, PkgId, u32, PkgId, bool)> = Vec::new();
        for (declarer, index, target) in hits {
            let other = if declarer == id { target } else { declarer };
            let op = self.pkg(other);
            let why = Why::Conflict {
                declarer,
                index,
                target,
            };
            if self.decision(op.name).is_some() || !op.installed {
                return Err(why);
            }
            if doomed.iter().any(|d| d.0 == other) {
                continue;
            }
            let removable = x
                .replaces()
                .iter()
                .any(|&r| self.satisfies(other, self.u.want(r)));
            let upgradable = self
                .candidates(op.name)
                .iter()
                .any(|&c| self.tick(1) && self.new_or_newer(c) && !self.is_dead(c));
            if !removable && !upgradable {
                return Err(why);
            }
            doomed.push((other, declarer, index, target, removable));
        }

        let previous = self.decision(name);
        self.set_decision(name, Decision::Install { id, requested });
        for &(virtual_name, _) in x.provides() {
            if virtual_name != x.name {
                self.sel_providers.entry(virtual_name).or_default().push(id);
                self.trail.push(Undo::Provider(virtual_name));
            }
        }
        for (index, &(dep, _)) in x.conflicts().iter().enumerate() {
            let name = self.dep_name(dep);
            if name == NO_NAME {
                continue; // nothing can be hit
            }
            self.sel_declared
                .entry(name)
                .or_default()
                .push((id, index as u32));
            self.trail.push(Undo::Declared(name));
        }
        for group in 0..x.group_count() {
            let entry = (id, group as u32);
            for &dep in x.group(group) {
                if !self.tick(1) {
                    break;
                }
                let name = self.dep_name(dep);
                if !self.u.installed_holds(name) {
                    continue;
                }
                let list = self.sel_rdeps.entry(name).or_default();
                if list.last() != Some(&entry) {
                    list.push(entry);
                    self.trail.push(Undo::Rdep(name));
                }
            }
        }
        for (victim, declarer, index, target, removable) in doomed {
            self.set_decision(self.pkg(victim).name, Decision::Doomed { by: id });
            let link = self.extend(
                chain,
                LinkKind::Conflict {
                    declarer,
                    index,
                    target,
                    victim,
                    by: if removable { id } else { NO_PKG },
                },
            );
            self.queue.push(link);
            self.recheck(victim, link);
        }
        if previous.is_none()
            && let Some(&old) = self.u.installed_by_name.get(&name)
        {
            self.recheck(old, chain);
        }
        for group in 0..x.group_count() {
            // A group that a planned package (or an assumed name) meets now stays met on
            // this branch: the package was decided before this install, and undoing that
            // undoes this install too. Not queued, it costs no obligation and no link: in a
            // large install most groups are met by packages planned before. (A group an
            // installed package meets is queued as before: that package may yet have to go.)
            if self.met_by_plan(x.group(group)) {
                continue;
            }
            let group = group as u32;
            let chain = self.extend(chain, LinkKind::Dep { from: id, group });
            self.queue.push(chain);
        }
        Ok(())
    }

    /// After the installed `gone` stopped being present: re-examines every present package
    /// with a dependency on one of its names, and queues those now unmet.
    fn recheck(&mut self, gone: PkgId, chain: Chain) {
        let mut seen = IdSet::default();
        let mut queued = Vec::new();
        self.tick(self.pkg(gone).provides().len());
        for n in self.pkg(gone).names() {
            let installed = self.sorted.installed_rdeps.get(&n).into_iter().flatten();
            let planned = self.sel_rdeps.get(&n).into_iter().flatten();
            for &(m, group) in installed.chain(planned) {
                if !self.tick(1) {
                    break;
                }
                if !self.is_present(m) {
                    continue;
                }
                if seen.insert((m, group)) && !self.group_satisfied(m, group as usize) {
                    queued.push((m, group));
                }
            }
        }
        for (from, group) in queued {
            let chain = self.extend(chain, LinkKind::Dep { from, group });
            self.queue.push(chain);
        }
    }

    /// A new link below `parent`.
    fn extend(&mut self, parent: Chain, kind: LinkKind) -> Chain {
        let at = Chain::try_from(self.links.len()).expect("fewer than 2^32 links");
        let (a, b, tag) = match kind {
            LinkKind::Request(i) => (
                u32::try_from(i).expect("fewer than 2^32 requests"),
                0,
                LINK_REQUEST,
            ),
            LinkKind::Dep { from, group } => {
                assert!(
                    group <= LINK_B,
                    "fewer than 2^30 dependency groups in a package"
                );
                (from, group, LINK_DEP)
            }
            LinkKind::Conflict {
                declarer,
                index,
                target,
                victim,
                by,
            } => {
                let entry =
                    u32::try_from(self.conflict_links.len()).expect("fewer than 2^32 links");
                self.conflict_links
                    .push((at, [declarer, index, target, victim, by]));
                (entry, 0, LINK_CONFLICT)
            }
        };
        self.links.push(PackedLink {
            a,
            tag_b: tag | b,
            parent,
        });
        at
    }

    /// How many links `chain` has below its request's: a walk up the chain, counted as work
    /// (a failure asks; links do not keep their depth).
    pub(super) fn depth(&self, chain: Chain) -> u32 {
        let mut depth = 0;
        let mut at = self.links[chain as usize].parent;
        while at != NO_LINK {
            depth += 1;
            at = self.links[at as usize].parent;
        }
        self.tick(depth as usize);
        depth
    }

    pub(super) fn link(&self, chain: Chain) -> Link {
        let l = &self.links[chain as usize];
        let kind = match l.tag_b & !LINK_B {
            LINK_REQUEST => LinkKind::Request(l.a as usize),
            LINK_DEP => LinkKind::Dep {
                from: l.a,
                group: l.tag_b & LINK_B,
            },
            _ => {
                let [declarer, index, target, victim, by] = self.conflict_links[l.a as usize].1;
                LinkKind::Conflict {
                    declarer,
                    index,
                    target,
                    victim,
                    by,
                }
            }
        };
        Link {
            kind,
            parent: l.parent,
        }
    }

    /// What obligation `ob` is, from its link.
    fn ob_kind(&self, ob: usize) -> ObKind {
        match self.link(self.queue[ob]).kind {
            LinkKind::Request(i) => ObKind::Request(len32(i)),
            LinkKind::Dep { from, group } => ObKind::Dep { from, group },
            LinkKind::Conflict { victim, by, .. } => ObKind::Replace { victim, by },
        }
    }

    /// Keeps the first `len` links (and the conflicts of those).
    fn truncate_links(&mut self, len: usize) {
        self.links.truncate(len);
        let keep = self
            .conflict_links
            .partition_point(|&(link, _)| (link as usize) < len);
        self.conflict_links.truncate(keep);
    }

    // --- the search loop -------------------------------------------------------------------

    pub(super) fn run(&mut self) -> Result<(), ResolveError> {
        while self.head < self.queue.len() {
            let ob = self.head;
            self.head += 1;
            let eval = self.evaluate(ob);
            self.check_work()?;
            match eval {
                Eval::Done => {}
                Eval::Fail { why, fixed } => {
                    let chain = self.queue[ob];
                    self.record(chain, why);
                    if fixed {
                        self.obligation_impossible(ob)?;
                    }
                    self.advance()?;
                }
                Eval::Options { options, fixed } => {
                    // At most 2^31 options (the bit above is FIXED).
                    assert!(options.len() < FIXED as usize, "fewer than 2^31 options");
                    self.choices.push(Choice {
                        ob: len32(ob),
                        options_start: len32(self.options.len()),
                        next_fixed: if fixed { FIXED } else { 0 },
                        trail_len: len32(self.trail.len()),
                        queue_len: len32(self.queue.len()),
                        links_len: len32(self.links.len()),
                    });
                    self.options.extend_from_slice(&options);
                    self.advance()?;
                }
            }
        }
        Ok(())
    }

    /// An obligation can never be met, whatever is decided: its owner is dead (or, for a
    /// request, there is no solution at all).
    fn obligation_impossible(&mut self, ob: usize) -> Result<(), ResolveError> {
        match self.ob_kind(ob) {
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
                self.tick(self.choices.len());
                let (dead, options) = (&self.dead, &self.options[..]);
                let first_dead = self.choices.iter().position(|c| {
                    matches!(c.applied(options), Some(Opt::Install { id, .. }) if dead.contains(&id))
                });
                if let Some(at) = first_dead
                    && let Some(after) = self.choices.get(at + 1)
                {
                    self.options.truncate(after.options_start as usize);
                    self.choices.truncate(at + 1);
                }
            }
            self.check_work()?;
            let Some(top) = self.choices.last_mut() else {
                return Err(self.failure_error());
            };
            let (ob, trail_len, queue_len, links_len) = (
                top.ob as usize,
                top.trail_len as usize,
                top.queue_len as usize,
                top.links_len as usize,
            );
            let options = &self.options[top.options_start as usize..];
            if top.next() as usize == options.len() {
                let all_dead = top.fixed()
                    && options
                        .iter()
                        .all(|o| matches!(o, Opt::Install { id, .. } if self.dead.contains(id)));
                let count = options.len();
                self.options.truncate(top.options_start as usize);
                self.choices.pop();
                self.tick(count);
                if all_dead {
                    self.obligation_impossible(ob)?;
                }
                continue;
            }
            let opt = options[top.next() as usize];
            top.next_fixed += 1;
            self.undo_to(trail_len);
            self.queue.truncate(queue_len);
            // A chain's links come before its last one (parents are made first): keeping up to
            // the deepest failure's keeps all of its chain.
            let kept = self.best.as_ref().map_or(0, |b| b.chain as usize + 1);
            self.truncate_links(links_len.max(kept));
            self.head = ob + 1;
            if matches!(opt, Opt::Install { id, .. } if self.is_dead(id)) {
                continue;
            }
            self.steps += 1;
            if self.steps > self.budget {
                return Err(ResolveError::TooComplex {
                    steps: self.budget,
                    closest: self.closest().unwrap_or_else(|| {
                        "no failure (the plan is larger than the budget)".to_string()
                    }),
                });
            }
            let chain = self.queue[ob];
            let applied = self.apply(opt, chain);
            self.check_work()?;
            match applied {
                Ok(()) => return Ok(()),
                Err(why) => self.record(chain, why),
            }
        }
    }

    fn record(&mut self, chain: Chain, why: Why) {
        let depth = self.depth(chain);
        if self.best.as_ref().is_none_or(|b| depth > b.depth) {
            self.best = Some(Failure { chain, depth, why });
        }
    }
}

fn finish(options: Vec<Opt>, fixed: bool, shown: Vec<RelWhy>, more: usize) -> Eval {
    if options.is_empty() {
        Eval::Fail {
            why: Why::Rels { shown, more },
            fixed,
        }
    } else {
        Eval::Options { options, fixed }
    }
}

fn pop_from<T>(map: &mut IdMap<NameId, Vec<T>>, key: NameId) {
    if let Some(list) = map.get_mut(&key) {
        list.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The search's per-dependency records stay as small as documented: a bootstrap of
    /// 10,000 packages makes up to ~50,000 links and obligations and ~10,000 choices.
    #[test]
    fn decisions_are_kept_one_word_a_name() {
        let all = [
            Decision::Keep(0),
            Decision::Keep(u32::MAX),
            Decision::Install {
                id: 7,
                requested: true,
            },
            Decision::Install {
                id: u32::MAX,
                requested: false,
            },
            Decision::Doomed { by: 3 },
            Decision::Remove { by: u32::MAX },
        ];
        let mut decisions = Decisions::new(all.len() + 1);
        for (name, &d) in (0u32..).zip(&all) {
            assert_ne!(d.word(), 0);
            assert_eq!(decisions.insert(name, d).map(|_| ()), None);
        }
        let shown = |d: Option<Decision>| format!("{d:?}");
        for (name, &d) in (0u32..).zip(&all) {
            assert_eq!(shown(decisions.get(name)), shown(Some(d)));
        }
        // A name without a decision, and one past the table, have none.
        assert!(decisions.get(all.len() as u32).is_none());
        assert!(decisions.get(u32::MAX).is_none());
        // Replacing returns the old one; removing leaves none; the rest stay, in name order.
        let old = decisions.insert(1, Decision::Remove { by: 2 });
        assert_eq!(shown(old), shown(Some(Decision::Keep(u32::MAX))));
        decisions.remove(0);
        assert!(decisions.get(0).is_none());
        let names: Vec<NameId> = decisions.iter().map(|(n, _)| n).collect();
        assert_eq!(names, [1, 2, 3, 4, 5]);
    }

    #[test]
    fn search_records_stay_small() {
        assert_eq!(std::mem::size_of::<PackedLink>(), 12);
        assert_eq!(std::mem::size_of::<Choice>(), 24);
        assert_eq!(std::mem::size_of::<super::super::universe::Dep>(), 8);
        // And a package of the universe, its lists in the universe's arrays.
        #[cfg(target_pointer_width = "64")]
        assert_eq!(std::mem::size_of::<super::super::universe::Pkg>(), 72);
        // And a step of the plan made beside the universe.
        #[cfg(target_pointer_width = "64")]
        assert_eq!(std::mem::size_of::<super::super::Step>(), 72);
    }
}
