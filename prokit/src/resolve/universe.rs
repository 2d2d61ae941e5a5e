//! The packages resolution chooses from, parsed once into a compact form.
//!
//! Names that something defines — a package, a provide, an assumption — are interned: stored
//! once in an arena and numbered ([`NameId`]), so the search compares and hashes small
//! integers. A relation is a [`Dep`] of 12 bytes (name, operator, version number). A relation
//! naming something not (yet) defined keeps its name in a plain list, and all those are looked
//! up once when the last stanza is in: the names no stanza has (most alternatives of an
//! adversarial index) are never hashed into a big table. Each distinct version text is parsed
//! once, and all versions are ranked once (sorted in dpkg order), so that the search compares
//! two integers where it would compare two version strings (whose length an index chooses).
//! Of the stanza, the fields read after resolution are kept as they came ([`KEPT`]), in a
//! scratch file ([`super::kept`]): the plan hands them on, and explanations re-read the
//! relation fields from them (so they show a relation as dpkg would write it, arch
//! qualifiers included). Candidate and provider lists
//! are one array each ([`Lists`]), not a vector per name.
//!
//! What depends on every stanza — version ranks, relation names looked up, candidate lists in
//! preference order, the installed packages' relations by name — is made once ([`Sorted`]),
//! the first time a resolution needs it, and made again after a stanza or an assumption is
//! added. (Sorting candidate lists on insertion would cost O(n²) for n versions of one name.)

use super::ResolveError;
use super::kept::{KeptStanza, KeptTexts, Span};
use super::solver::Solver;
use super::{Plan, Request, RequestList, Step};
use crate::texts::Texts;
use feeds::control::Paragraph;
use feeds::relation::{Op, Relation, parse_relations};
use feeds::version::{Version, cmp_accepted};
use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::{Arc, OnceLock};

/// A package of the universe: its index in [`Universe::pkgs`].
pub(super) type PkgId = u32;
/// An interned package or virtual name.
pub(super) type NameId = u32;
/// An interned version text (of a package, a relation or a provide).
pub(super) type VerId = u32;

/// A name no package, provide or assumption carries (an unknown request, a missing
/// dependency): it matches nothing, and has no flags.
pub(super) const NO_NAME: NameId = NameId::MAX;

/// The bit of a [`Dep`]'s raw name that marks a relation name still to look up.
const PENDING: u32 = 1 << 31;

/// [`Universe::flags`] of a name: some available package has it.
pub(super) const AVAILABLE: u8 = 1;
/// Some available package provides it.
pub(super) const PROVIDED: u8 = 2;
/// An installed package has it.
pub(super) const INSTALLED: u8 = 4;
/// An installed package provides it.
pub(super) const INSTALLED_PROVIDED: u8 = 8;
/// It is assumed installed.
pub(super) const ASSUMED: u8 = 16;

/// FxHash's multiplier.
const SEED: u64 = 0x517c_c1b7_2722_0a95;

/// A fast hasher for the dense numbers (ids, counts) the search uses as keys. Strings from the
/// feeds never reach it: those go through [`Interner`], which hashes with a random key.
#[derive(Default, Clone, Copy)]
pub(super) struct IdHasher(u64);

impl IdHasher {
    fn add(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(SEED);
    }
}

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.add(u64::from(b));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
}

pub(super) type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;
pub(super) type IdSet<K> = HashSet<K, BuildHasherDefault<IdHasher>>;

/// Distinct strings, each stored once and numbered in the order first seen.
///
/// Found through an open-addressing table of ids (4 bytes a slot, at most half of the slots
/// taken) probed from the text's keyed hash, the texts compared in the arena: ~12 bytes a
/// string where a map from hashes to ids took ~40.
#[derive(Default)]
pub(super) struct Interner {
    texts: Texts,
    /// Per slot: 0 (empty) or an id plus one. A power of two long (or empty).
    slots: Vec<u32>,
    state: RandomState,
}

impl Interner {
    /// The slot of `text`: the one holding its id, or the empty one where it would go.
    fn slot(&self, text: &str) -> usize {
        let mask = self.slots.len() - 1;
        let mut at = self.state.hash_one(text) as usize & mask;
        loop {
            match self.slots[at] {
                0 => return at,
                id if self.texts.text(id - 1) == text => return at,
                _ => at = (at + 1) & mask,
            }
        }
    }

    /// The id of `text`, if it has one (a search through every text after
    /// [`Interner::drop_table`], until the next [`Interner::intern`]).
    pub(super) fn get(&self, text: &str) -> Option<u32> {
        if self.slots.is_empty() {
            return (0..self.texts.len() as u32).find(|&id| self.texts.text(id) == text);
        }
        self.slots[self.slot(text)].checked_sub(1)
    }

    /// Frees the table that finds a text's id, for an interner whose ids are only turned
    /// back into texts from now on (the versions and the pending relation names once the
    /// universe is read: at 10,000 packages, 200 KB); the next [`Interner::intern`] makes
    /// it again.
    pub(super) fn drop_table(&mut self) {
        self.slots = Vec::new();
    }

    /// The id of `text`, numbering it if it is new; None when no number is left.
    pub(super) fn intern(&mut self, text: &str) -> Option<u32> {
        if self.slots.is_empty() && self.texts.len() > 0 {
            self.grow();
        }
        if let Some(id) = self.get(text) {
            return Some(id);
        }
        // Numbers from PENDING on mark a relation name still to look up (`Dep`).
        if self.texts.len() >= PENDING as usize {
            return None;
        }
        if (self.texts.len() + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let at = self.slot(text);
        let id = self.texts.push(text)?;
        self.slots[at] = id + 1;
        Some(id)
    }

    /// Doubles the table (at least 64 slots, at least twice the texts) and puts every id
    /// back.
    fn grow(&mut self) {
        let len = (self.slots.len() * 2)
            .max((self.texts.len() + 1).next_power_of_two() * 2)
            .max(64);
        self.slots = vec![0; len];
        for id in 0..self.texts.len() as u32 {
            let at = self.slot(self.texts.text(id));
            self.slots[at] = id + 1;
        }
    }

    /// The text of `id` (empty for an id it never gave out).
    pub(super) fn text(&self, id: u32) -> &str {
        self.texts.text(id)
    }

    pub(super) fn len(&self) -> usize {
        self.texts.len()
    }
}

/// One relation: a name and an optional version constraint (`op` with version `version`).
///
/// The name is *raw*: the [`NameId`] when a package, provide or assumption had defined it
/// when the relation was read, else [`PENDING`] plus the number of the name among the
/// relation names still to look up (each distinct name once: a feed's packages name `libc`
/// thousands of times); [`Universe::dep_name`] resolves it. The names no stanza has (most
/// alternatives of an adversarial index) stay there, apart from the names something defines.
///
/// Eight bytes: the constraint's operator is in the top bits of its version's number
/// ([`VER_BITS`]), as a feed of 10,000 packages has ~35,000 relations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Dep {
    raw: u32,
    /// The version's number, and the operator's code above [`VER_BITS`] (0: none).
    op_version: u32,
}

/// The bits of a [`VerId`] in a [`Dep`]: more versions than this are refused (too many).
const VER_BITS: u32 = 29;
const VER_MASK: u32 = (1 << VER_BITS) - 1;
const OPS: [Op; 5] = [Op::Lt, Op::Le, Op::Eq, Op::Ge, Op::Gt];

impl Dep {
    fn new(raw: u32, constraint: Option<(Op, VerId)>) -> Dep {
        let op_version = match constraint {
            None => 0,
            Some((op, version)) => {
                let code = OPS.iter().position(|&o| o == op).expect("one of the five") as u32;
                ((code + 1) << VER_BITS) | (version & VER_MASK)
            }
        };
        Dep { raw, op_version }
    }

    /// Its constraint's operator, if it has one.
    pub(super) fn op(self) -> Option<Op> {
        match self.op_version >> VER_BITS {
            0 => None,
            code => Some(OPS[code as usize - 1]),
        }
    }

    /// Its constraint's version (meaningful only with [`Dep::op`]).
    pub(super) fn version(self) -> VerId {
        self.op_version & VER_MASK
    }

    /// Its name, given the looked-up pending names ([`Sorted::pending`]).
    pub(super) fn name(self, pending: &[NameId]) -> NameId {
        if self.raw & PENDING == 0 {
            self.raw
        } else {
            pending[(self.raw & !PENDING) as usize]
        }
    }
}

/// A relation ready to be checked against packages: its name, and its constraint with the
/// required version as a rank ([`Sorted::rank`]).
#[derive(Debug, Clone, Copy)]
pub(super) struct Want {
    pub(super) name: NameId,
    pub(super) op: Option<Op>,
    pub(super) rank: u32,
}

impl Want {
    /// Whether a version of rank `rank` meets the constraint (always, when there is none).
    pub(super) fn matches(&self, rank: u32) -> bool {
        self.op.is_none_or(|op| op.matches(rank.cmp(&self.rank)))
    }

    /// dpkg's rule: the same name, and a version meeting the constraint; without a version
    /// (an unversioned provide) only an unversioned relation is met.
    pub(super) fn satisfied_by(&self, name: NameId, rank: Option<u32>) -> bool {
        self.name == name
            && match rank {
                Some(rank) => self.matches(rank),
                None => self.op.is_none(),
            }
    }
}

/// A parsed package, available or installed. Kept small (a Debian-size universe holds tens
/// of thousands): 72 bytes, its lists in the universe's arrays ([`Lists`]), not a
/// vector each. Read it through a [`PkgRef`] ([`Universe::pkg`]), which has the lists.
pub(super) struct Pkg {
    pub(super) name: NameId,
    /// Its version (display it with [`Universe::pkg_version`], compare ranks).
    pub(super) ver: VerId,
    /// Its architecture, interned ([`Universe::arch`]); its priority is the architecture's
    /// ([`Universe::arch_prio`]).
    arch: u32,
    /// Index into [`Universe::feeds`]; its order is the feed's ([`Universe::feed_orders`]).
    pub(super) feed: u32,
    /// Where the stanza's fields the plan and the explanations read ([`KEPT`]) are in
    /// [`Universe::kept`] (read with [`Universe::kept_stanza`]).
    stanza: Span,
    /// The alternatives of every dependency group, one group after the other.
    alts: Slice,
    /// Per group: where its alternatives end in `alts`, and whether it is a Pre-Depends group
    /// ([`PRE_GROUP`]). Pre-Depends groups come first, then Depends, each in field order.
    groups: Slice,
    provides: Slice,
    /// Conflicts (flag false) and Breaks (flag true), in that order.
    conflicts: Slice,
    replaces: Slice,
    pub(super) installed: bool,
    pub(super) auto_installed: bool,
}

impl Pkg {
    /// Whether `other` has the same version (in dpkg's order: `1.0` is `0:1.0-0`) and arch,
    /// given the version ranks.
    pub(super) fn same_build(&self, other: &Pkg, rank: &[u32]) -> bool {
        rank[self.ver as usize] == rank[other.ver as usize] && self.arch == other.arch
    }
}

/// The bit of a [`PkgLists::groups`] entry that marks a Pre-Depends group; the other bits are
/// where the group's alternatives end among the package's.
const PRE_GROUP: u32 = 1 << 31;

/// Where a package's list is in one of the universe's arrays.
#[derive(Debug, Clone, Copy, Default)]
struct Slice {
    start: u32,
    len: u32,
}

impl Slice {
    fn of<T>(self, all: &[T]) -> &[T] {
        &all[self.start as usize..(self.start + self.len) as usize]
    }
}

/// The lists of every package, one array per kind ([`Pkg`] says where its own are).
#[derive(Default)]
struct PkgLists {
    alts: Vec<Dep>,
    /// Per group, its end; [`PRE_GROUP`] set for a Pre-Depends group. Four bytes, not a
    /// pair of eight: a feed has a group for nearly every alternative (34,637 of each in a
    /// bootstrap of 10,000 packages).
    groups: Vec<u32>,
    provides: Vec<(NameId, Option<VerId>)>,
    conflicts: Vec<(Dep, bool)>,
    replaces: Vec<Dep>,
}

/// Appends `items` to `all`; where they are (None past 2^32 entries).
fn append<T>(all: &mut Vec<T>, items: Vec<T>) -> Option<Slice> {
    let start = u32::try_from(all.len()).ok()?;
    let len = u32::try_from(items.len()).ok()?;
    start.checked_add(len)?;
    all.extend(items);
    Some(Slice { start, len })
}

/// A package with its lists.
#[derive(Clone, Copy)]
pub(super) struct PkgRef<'u> {
    pkg: &'u Pkg,
    lists: &'u PkgLists,
}

impl std::ops::Deref for PkgRef<'_> {
    type Target = Pkg;

    fn deref(&self) -> &Pkg {
        self.pkg
    }
}

impl<'u> PkgRef<'u> {
    pub(super) fn provides(self) -> &'u [(NameId, Option<VerId>)] {
        self.pkg.provides.of(&self.lists.provides)
    }

    pub(super) fn conflicts(self) -> &'u [(Dep, bool)] {
        self.pkg.conflicts.of(&self.lists.conflicts)
    }

    pub(super) fn replaces(self) -> &'u [Dep] {
        self.pkg.replaces.of(&self.lists.replaces)
    }

    fn groups(self) -> &'u [u32] {
        self.pkg.groups.of(&self.lists.groups)
    }

    pub(super) fn group_count(self) -> usize {
        self.pkg.groups.len as usize
    }

    /// The alternatives of dependency group `g`.
    pub(super) fn group(self, g: usize) -> &'u [Dep] {
        let groups = self.groups();
        let start = match g {
            0 => 0,
            _ => (groups[g - 1] & !PRE_GROUP) as usize,
        };
        &self.pkg.alts.of(&self.lists.alts)[start..(groups[g] & !PRE_GROUP) as usize]
    }

    pub(super) fn is_pre(self, g: usize) -> bool {
        self.groups()[g] & PRE_GROUP != 0
    }

    /// The field group `g` was read from, and its position among that field's groups.
    pub(super) fn group_origin(self, g: usize) -> (&'static str, usize) {
        let pre = self
            .groups()
            .iter()
            .take_while(|&&end| end & PRE_GROUP != 0)
            .count();
        if g < pre {
            ("Pre-Depends", g)
        } else {
            ("Depends", g - pre)
        }
    }

    /// Its own name, then the names it provides.
    pub(super) fn names(self) -> impl Iterator<Item = NameId> + 'u {
        std::iter::once(self.pkg.name).chain(self.provides().iter().map(|&(n, _)| n))
    }
}

/// What a resolution needs beyond the packages as read, made once per universe (after the
/// last stanza, the first time it is needed): version ranks, relation names looked up, the
/// candidate lists in preference order, the installed packages' relations by name.
#[derive(Default)]
pub(super) struct Sorted {
    /// The rank of each [`VerId`]: odd numbers in dpkg order, equal for equal versions
    /// (`1.0` and `0:1.0-0`), two apart otherwise so that a version from outside the universe
    /// ranks between its neighbours ([`Sorted::rank_of`]).
    pub(super) rank: Vec<u32>,
    /// Every [`VerId`] in dpkg order.
    ordered: Vec<VerId>,
    /// The name each pending relation name turned out to be, [`NO_NAME`] when nothing has it.
    pub(super) pending: Vec<NameId>,
    /// Every feed name and architecture, shared by the plan steps that name them (a plan of
    /// 10,000 steps would hold 20,000 copies of a handful of texts).
    feed_names: Vec<Arc<String>>,
    arch_names: Vec<Arc<String>>,
    /// Installed packages' Conflicts/Breaks by the name they hit: (declarer, conflict index).
    pub(super) installed_declared: IdMap<NameId, Vec<(PkgId, u32)>>,
    /// Installed packages' dependency groups by the names they mention: (package, group).
    pub(super) installed_rdeps: IdMap<NameId, Vec<(PkgId, u32)>>,
    /// Available candidates per name, best first.
    pub(super) by_name: Lists,
    /// Available providers per virtual name, by provider name then best first.
    pub(super) providers: Lists,
}

/// A list of packages per name, all in one array (a map of vectors would cost an allocation
/// and a table entry per name: most names have one package).
#[derive(Default)]
pub(super) struct Lists {
    /// Where the list of each [`NameId`] starts in `ids` (one more entry, the end).
    starts: Vec<u32>,
    ids: Vec<PkgId>,
}

impl Lists {
    /// The lists of `names` names, each package `id` in the lists of the names `names_of(id)`
    /// gives (in the order of the ids).
    fn build<I: Iterator<Item = NameId>>(
        names: usize,
        pkgs: impl Iterator<Item = PkgId> + Clone,
        names_of: impl Fn(PkgId) -> I,
    ) -> Lists {
        let mut starts = vec![0u32; names + 1];
        for id in pkgs.clone() {
            for n in names_of(id) {
                starts[n as usize + 1] += 1;
            }
        }
        for i in 1..starts.len() {
            starts[i] += starts[i - 1];
        }
        let mut fill = starts.clone();
        let mut ids = vec![0; starts[names] as usize];
        for id in pkgs {
            for n in names_of(id) {
                ids[fill[n as usize] as usize] = id;
                fill[n as usize] += 1;
            }
        }
        Lists { starts, ids }
    }

    /// The list of `name` (empty for a name it has none for, or [`NO_NAME`]).
    pub(super) fn get(&self, name: NameId) -> &[PkgId] {
        let i = name as usize;
        match (self.starts.get(i), self.starts.get(i + 1)) {
            (Some(&a), Some(&b)) => &self.ids[a as usize..b as usize],
            _ => &[],
        }
    }

    /// Sorts each list with `cmp`.
    fn sort_each(&mut self, cmp: impl Fn(PkgId, PkgId) -> Ordering) {
        for w in self.starts.windows(2) {
            self.ids[w[0] as usize..w[1] as usize].sort_unstable_by(|&a, &b| cmp(a, b));
        }
    }
}

impl Sorted {
    /// The rank of any version, in the universe or not (a pinned request's).
    pub(super) fn rank_of(&self, u: &Universe, version: &Version) -> u32 {
        let version = version.as_str();
        let cmp = |v: VerId| cmp_accepted(u.version(v), version);
        let at = self.ordered.partition_point(|&v| cmp(v) == Ordering::Less);
        match self.ordered.get(at) {
            Some(&v) if cmp(v) == Ordering::Equal => self.rank[v as usize],
            Some(&v) => self.rank[v as usize] - 1,
            None => self
                .ordered
                .last()
                .map_or(0, |&v| self.rank[v as usize] + 1),
        }
    }
}

/// The packages resolution chooses from: available (feeds), installed (status) and assumed.
#[derive(Default)]
pub struct Universe {
    arch_prios: HashMap<String, u32>,
    /// Names something defines: packages, provides, assumptions.
    pub(super) names: Interner,
    /// Relation names not defined when read, to be looked up in `names` once all are in.
    pending_names: Interner,
    /// Every version, as the text [`Version::parse`] accepted: compared as text
    /// ([`cmp_accepted`]), not held parsed (one more allocation per version).
    versions: Interner,
    feeds: Interner,
    /// Each feed's position in the config, by its number in `feeds` (lower: listed first).
    feed_orders: Vec<u32>,
    /// Architectures, interned ([`Pkg::arch`]).
    arches: Interner,
    pub(super) pkgs: Vec<Pkg>,
    pub(super) installed_by_name: IdMap<NameId, PkgId>,
    pub(super) installed_providers: IdMap<NameId, Vec<PkgId>>,
    /// The installed packages, in the order added.
    installed: Vec<PkgId>,
    /// What each name is to the universe (bits [`AVAILABLE`] … [`ASSUMED`]): one byte per
    /// name that spares the search its map lookups for names nothing has (most alternatives
    /// of an adversarial index).
    flags: Vec<u8>,
    /// Names seen only in stanzas of architectures not configured, with those architectures.
    pub(super) wrong_arch: HashMap<String, BTreeSet<String>>,
    pub(super) step_budget: Option<usize>,
    pub(super) work_budget: Option<u64>,
    sorted: OnceLock<Sorted>,
    /// The kept fields of every stanza ([`Pkg::stanza`]), shared with the plans' steps.
    kept: Arc<KeptTexts>,
    /// Every package's relations and provides.
    lists: PkgLists,
}

impl std::fmt::Debug for Universe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Universe")
            .field("packages", &self.pkgs.len())
            .field("names", &self.names.len())
            .field("installed", &self.installed_by_name.len())
            .field("step_budget", &self.step_budget)
            .field("work_budget", &self.work_budget)
            .finish()
    }
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

    /// The priority of architecture `arch` (0 when every architecture is accepted).
    fn arch_prio(&self, arch: &str) -> u32 {
        self.arch_prios.get(arch).copied().unwrap_or(0)
    }

    /// Sets how many candidate applications a resolution may try (default
    /// [`DEFAULT_STEP_BUDGET`](super::DEFAULT_STEP_BUDGET)).
    pub fn set_step_budget(&mut self, steps: usize) {
        self.step_budget = Some(steps);
    }

    /// Sets how many relation checks a resolution may make (default
    /// [`DEFAULT_WORK_BUDGET`](super::DEFAULT_WORK_BUDGET)).
    pub fn set_work_budget(&mut self, checks: u64) {
        self.work_budget = Some(checks);
    }

    /// Frees what only reading stanzas needed, once every stanza is in: the tables that
    /// find a version's or a pending relation name's number (later stanzas make them again).
    pub fn finish_reading(&mut self) {
        self.versions.drop_table();
        self.pending_names.drop_table();
    }

    /// Makes room for `stanzas` more packages at once (the package records are the
    /// universe's biggest array: grown by doubling, up to half of it would be unused).
    pub fn reserve(&mut self, stanzas: usize) {
        self.pkgs.reserve_exact(stanzas);
    }

    /// One stanza of a verified Packages index. `feed` names the feed, `feed_order` is its
    /// position in the config (lower = listed first). Stanzas whose Architecture is not in
    /// `arch_prios` (when `arch_prios` is non-empty) are ignored. Bad Version/relation fields:
    /// an error naming feed, package and field.
    pub fn add_available(
        &mut self,
        stanza: Paragraph,
        feed: &str,
        feed_order: usize,
    ) -> Result<(), ResolveError> {
        let origin = format!("feed {feed:?}");
        let name = package_name(&stanza, &origin)?;
        let arch = stanza.get("Architecture").unwrap_or("");
        if !self.arch_prios.is_empty() && !self.arch_prios.contains_key(arch) {
            let shown = if arch.is_empty() { "(none)" } else { arch };
            self.wrong_arch
                .entry(name)
                .or_default()
                .insert(shown.to_string());
            return Ok(());
        };
        let mut pkg = self.parse_pkg(stanza, &origin, &name, false)?;
        pkg.feed = self
            .feeds
            .intern(feed)
            .ok_or_else(|| too_many(&origin, &name))?;
        let order = u32::try_from(feed_order).unwrap_or(u32::MAX);
        let at = pkg.feed as usize;
        if self.feed_orders.len() <= at {
            self.feed_orders.resize(at + 1, u32::MAX);
        }
        self.feed_orders[at] = self.feed_orders[at].min(order);
        let id = self.next_id(&origin, &name)?;
        self.flag(pkg.name, AVAILABLE);
        self.pkgs.push(pkg);
        for virtual_name in provided_names(self.pkg(id)) {
            self.flag(virtual_name, PROVIDED);
        }
        Ok(())
    }

    /// One stanza of the installed status database (opkg status file). Entries whose state
    /// (third word of `Status`) is `not-installed` or `config-files` are skipped; a second
    /// entry for an installed name is ignored (the first wins).
    pub fn add_installed(&mut self, stanza: Paragraph) -> Result<(), ResolveError> {
        let origin = "installed status".to_string();
        let name = package_name(&stanza, &origin)?;
        if let Some(status) = stanza.get("Status") {
            let state = status.split_whitespace().nth(2).unwrap_or("");
            if matches!(state, "not-installed" | "config-files") {
                return Ok(());
            }
        }
        if self
            .names
            .get(&name)
            .is_some_and(|n| self.installed_by_name.contains_key(&n))
        {
            return Ok(());
        }
        let auto_installed = stanza
            .get("Auto-Installed")
            .is_some_and(|v| v.eq_ignore_ascii_case("yes"));
        let mut pkg = self.parse_pkg(stanza, &origin, &name, true)?;
        pkg.auto_installed = auto_installed;
        let id = self.next_id(&origin, &name)?;
        self.installed_by_name.insert(pkg.name, id);
        self.flag(pkg.name, INSTALLED);
        self.installed.push(id);
        self.pkgs.push(pkg);
        for virtual_name in provided_names(self.pkg(id)) {
            push_unique(&mut self.installed_providers, virtual_name, id);
            self.flag(virtual_name, INSTALLED_PROVIDED);
        }
        Ok(())
    }

    /// A name (package or virtual) treated as installed and satisfying any version constraint
    /// (what OpenWrt indexes leave out: libc, kernel). `--assume-installed`.
    pub fn assume_installed(&mut self, name: &str) {
        if let Some(id) = self.names.intern(name) {
            self.flag(id, ASSUMED);
        }
        // Pending relation names may be this one.
        self.sorted = OnceLock::new();
    }

    /// Installed packages that depend (Depends/Pre-Depends) on `name` or on something it
    /// provides, which would break if it were removed: a dependency group of theirs that the
    /// installed `name` satisfies and nothing else installed (or assumed) does. Direct
    /// dependents only, sorted. Empty when `name` is not installed.
    pub fn reverse_dependents(&self, name: &str) -> Vec<String> {
        let Some(&id) = self
            .names
            .get(name)
            .and_then(|n| self.installed_by_name.get(&n))
        else {
            return Vec::new();
        };
        let mut out = BTreeSet::new();
        for n in self.pkg(id).names() {
            for &(m, g) in self.sorted().installed_rdeps.get(&n).into_iter().flatten() {
                if m == id {
                    continue;
                }
                let group = self.pkg(m).group(g as usize);
                let broken = group.iter().any(|&d| self.satisfies(id, self.want(d)))
                    && !group
                        .iter()
                        .any(|&d| self.installed_satisfies_without(d, id));
                if broken {
                    out.insert(self.name(self.pkg(m).name).to_string());
                }
            }
        }
        out.into_iter().collect()
    }

    /// A step reinstalling the installed `name` from the first feed offering the same
    /// version for the same architecture (`install --force-reinstall`); `None` when no feed
    /// offers it.
    pub fn reinstall_step(&self, name: &str) -> Option<Step> {
        let n = self.names.get(name)?;
        let &inst = self.installed_by_name.get(&n)?;
        let ip = self.pkg(inst);
        let installed_version = self.pkg_version(inst);
        let (id, p) = self
            .sorted()
            .by_name
            .get(n)
            .iter()
            .map(|&id| (id, self.pkg(id)))
            .filter(|(id, p)| {
                !p.installed
                    && cmp_accepted(self.pkg_version(*id), installed_version) == Ordering::Equal
                    && p.arch == ip.arch
            })
            .min_by_key(|(_, p)| self.feed_orders[p.feed as usize])?;
        Some(Step::new(
            name,
            self.pkg_version(id),
            Some(installed_version),
            self.shared_arch(&p),
            self.shared_feed(&p),
            self.kept_stanza(id),
            ip.auto_installed,
        ))
    }

    /// Chooses what to install for `requests`; see the module documentation for the rules.
    pub fn resolve(&self, requests: &RequestList) -> Result<Plan, ResolveError> {
        self.resolve_counted(requests).0
    }

    /// [`Universe::resolve`], with the steps and relation checks it took.
    pub(super) fn resolve_counted(
        &self,
        requests: &RequestList,
    ) -> (Result<Plan, ResolveError>, Counts) {
        for request in requests.iter().map(Request::of) {
            if let Err(e) = request.check() {
                return (Err(e), Counts::default());
            }
        }
        let mut solver = Solver::new(self, requests);
        let result = solver.run().and_then(|()| {
            solver.release_search();
            solver.plan()
        });
        (result, solver.counts())
    }

    // --- for the solver and the explanations -----------------------------------------------

    /// The kept fields of package `id`'s stanza, as a plan step carries them.
    pub(super) fn kept_stanza(&self, id: PkgId) -> KeptStanza {
        KeptStanza::new(&self.kept, self.pkg(id).stanza)
    }

    /// The kept fields of package `id`'s stanza, read back; `None` when the scratch file
    /// cannot be read (an explanation then words a relation from its parsed form).
    pub(super) fn kept_paragraph(&self, id: PkgId) -> Option<Paragraph> {
        self.kept.paragraph(self.pkg(id).stanza).ok()
    }

    pub(super) fn pkg(&self, id: PkgId) -> PkgRef<'_> {
        PkgRef {
            pkg: &self.pkgs[id as usize],
            lists: &self.lists,
        }
    }

    pub(super) fn name(&self, id: NameId) -> &str {
        self.names.text(id)
    }

    /// The architecture of `pkg`, shared ([`Step::arch`]).
    pub(super) fn shared_arch(&self, pkg: &Pkg) -> Arc<String> {
        Arc::clone(&self.sorted().arch_names[pkg.arch as usize])
    }

    /// The feed of `pkg`, shared ([`Step::feed`]).
    pub(super) fn shared_feed(&self, pkg: &Pkg) -> Arc<String> {
        Arc::clone(&self.sorted().feed_names[pkg.feed as usize])
    }

    /// Version `id`, as written (trimmed); compare with [`cmp_accepted`] or by rank.
    pub(super) fn version(&self, id: VerId) -> &str {
        self.versions.text(id)
    }

    pub(super) fn want(&self, dep: Dep) -> Want {
        let sorted = self.sorted();
        Want {
            name: dep.name(&sorted.pending),
            op: dep.op(),
            rank: match dep.op() {
                Some(_) => sorted.rank[dep.version() as usize],
                None => 0,
            },
        }
    }

    /// The name of `dep` ([`NO_NAME`] when nothing has it).
    pub(super) fn dep_name(&self, dep: Dep) -> NameId {
        dep.name(&self.sorted().pending)
    }

    /// The name of `dep` as written.
    pub(super) fn dep_name_text(&self, dep: Dep) -> &str {
        if dep.raw & PENDING == 0 {
            self.names.text(dep.raw)
        } else {
            self.pending_names.text(dep.raw & !PENDING)
        }
    }

    /// The version of package `id`.
    pub(super) fn pkg_version(&self, id: PkgId) -> &str {
        self.version(self.pkg(id).ver)
    }

    /// The rank of a version of the universe ([`Sorted::rank`]).
    pub(super) fn rank(&self, version: VerId) -> u32 {
        self.sorted().rank[version as usize]
    }

    /// The candidate lists in preference order (sorted on first use).
    pub(super) fn sorted(&self) -> &Sorted {
        self.sorted.get_or_init(|| self.sort())
    }

    /// What `name` is to the universe: bits [`AVAILABLE`] to [`ASSUMED`] (none for
    /// [`NO_NAME`]).
    pub(super) fn flags(&self, name: NameId) -> u8 {
        self.flags.get(name as usize).copied().unwrap_or(0)
    }

    pub(super) fn is_assumed(&self, name: NameId) -> bool {
        self.flags(name) & ASSUMED != 0
    }

    /// Whether some installed package is called `name` or provides it: only such a name can
    /// go away during a resolution.
    pub(super) fn installed_holds(&self, name: NameId) -> bool {
        self.flags(name) & (INSTALLED | INSTALLED_PROVIDED) != 0
    }

    /// Whether anything in the feeds or the status file has, or provides, `name`.
    pub(super) fn exists(&self, name: NameId) -> bool {
        self.flags(name) & (AVAILABLE | PROVIDED | INSTALLED | INSTALLED_PROVIDED) != 0
    }

    fn flag(&mut self, name: NameId, bit: u8) {
        let i = name as usize;
        if self.flags.len() <= i {
            self.flags.resize(i + 1, 0);
        }
        self.flags[i] |= bit;
    }

    /// Whether package `id`, by its own name and version or by one of its provides, satisfies
    /// `want`.
    pub(super) fn satisfies(&self, id: PkgId, want: Want) -> bool {
        let p = self.pkg(id);
        want.satisfied_by(p.name, Some(self.rank(p.ver))) || self.provides_for(id, want)
    }

    pub(super) fn provides_for(&self, id: PkgId, want: Want) -> bool {
        self.pkg(id)
            .provides()
            .iter()
            .any(|&(name, version)| want.satisfied_by(name, version.map(|v| self.rank(v))))
    }

    pub(super) fn describe(&self, id: PkgId) -> String {
        let p = self.pkg(id);
        let version = self.version(p.ver);
        if p.installed {
            format!("installed {} {version}", self.name(p.name))
        } else {
            format!("{} {version}", self.name(p.name))
        }
    }

    fn installed_satisfies_without(&self, dep: Dep, excluded: PkgId) -> bool {
        let want = self.want(dep);
        if self.is_assumed(want.name) {
            return true;
        }
        let by_name = self
            .installed_by_name
            .get(&want.name)
            .is_some_and(|&i| i != excluded && self.satisfies(i, want));
        by_name
            || self
                .installed_providers
                .get(&want.name)
                .into_iter()
                .flatten()
                .any(|&i| i != excluded && self.provides_for(i, want))
    }

    fn sort(&self) -> Sorted {
        let n = u32::try_from(self.versions.len()).unwrap_or(u32::MAX);
        let mut ordered: Vec<VerId> = (0..n).collect();
        ordered.sort_unstable_by(|&a, &b| cmp_accepted(self.version(a), self.version(b)));
        let mut rank = vec![0; ordered.len()];
        let mut r = 1u32;
        for (i, &v) in ordered.iter().enumerate() {
            if i > 0
                && cmp_accepted(self.version(ordered[i - 1]), self.version(v)) != Ordering::Equal
            {
                r = r.saturating_add(2);
            }
            rank[v as usize] = r;
        }
        // Candidate order: newest version, higher arch priority, earlier feed, earlier stanza.
        let arch_prio: Vec<u32> = (0..self.arches.len())
            .map(|a| self.arch_prio(self.arches.text(a as u32)))
            .collect();
        let preference = |a: PkgId, b: PkgId| -> Ordering {
            let (x, y) = (self.pkg(a), self.pkg(b));
            rank[y.ver as usize]
                .cmp(&rank[x.ver as usize])
                .then(arch_prio[y.arch as usize].cmp(&arch_prio[x.arch as usize]))
                .then(self.feed_orders[x.feed as usize].cmp(&self.feed_orders[y.feed as usize]))
                .then(a.cmp(&b))
        };
        let n_pkgs = u32::try_from(self.pkgs.len()).unwrap_or(u32::MAX);
        let available = (0..n_pkgs).filter(|&id| !self.pkg(id).installed);
        let mut by_name = Lists::build(self.names.len(), available.clone(), |id| {
            std::iter::once(self.pkg(id).name)
        });
        by_name.sort_each(preference);
        let mut providers = Lists::build(self.names.len(), available, |id| {
            provided_names(self.pkg(id)).into_iter()
        });
        providers.sort_each(|a, b| {
            let (x, y) = (self.pkg(a).name, self.pkg(b).name);
            self.name(x)
                .cmp(self.name(y))
                .then_with(|| preference(a, b))
        });
        let pending: Vec<NameId> = (0..self.pending_names.len())
            .map(|i| {
                let text = self.pending_names.text(i as u32);
                self.names.get(text).unwrap_or(NO_NAME)
            })
            .collect();
        let mut installed_declared = IdMap::default();
        let mut installed_rdeps = IdMap::default();
        for &id in &self.installed {
            let p = self.pkg(id);
            for (index, (dep, _)) in p.conflicts().iter().enumerate() {
                let name = dep.name(&pending);
                if name != NO_NAME {
                    push_unique(&mut installed_declared, name, (id, index as u32));
                }
            }
            for g in 0..p.group_count() {
                for dep in p.group(g) {
                    let name = dep.name(&pending);
                    if name != NO_NAME {
                        push_unique(&mut installed_rdeps, name, (id, g as u32));
                    }
                }
            }
        }
        let shared = |texts: &Interner| -> Vec<Arc<String>> {
            (0..texts.len() as u32)
                .map(|i| Arc::new(texts.text(i).to_string()))
                .collect()
        };
        Sorted {
            rank,
            ordered,
            pending,
            feed_names: shared(&self.feeds),
            arch_names: shared(&self.arches),
            installed_declared,
            installed_rdeps,
            by_name,
            providers,
        }
    }

    fn next_id(&self, origin: &str, name: &str) -> Result<PkgId, ResolveError> {
        u32::try_from(self.pkgs.len())
            .ok()
            .filter(|&id| id < u32::MAX)
            .ok_or_else(|| too_many(origin, name))
    }

    fn dep(&mut self, rel: &Relation, bad: &dyn Fn() -> ResolveError) -> Result<Dep, ResolveError> {
        let raw = match self.names.get(rel.name()) {
            Some(id) => id,
            None => PENDING | self.pending_names.intern(rel.name()).ok_or_else(bad)?,
        };
        let constraint = match rel.constraint() {
            None => None,
            Some((op, version)) => Some((op, self.version_id(version).ok_or_else(bad)?)),
        };
        Ok(Dep::new(raw, constraint))
    }

    /// The number of `version`; None past [`VER_MASK`] versions (a [`Dep`] holds no more).
    fn version_id(&mut self, version: &Version) -> Option<VerId> {
        self.versions
            .intern(version.as_str())
            .filter(|&v| v <= VER_MASK)
    }

    /// Parses the fields resolution needs; arch priority, feed and flags are filled in by the
    /// caller.
    fn parse_pkg(
        &mut self,
        mut stanza: Paragraph,
        origin: &str,
        name: &str,
        installed: bool,
    ) -> Result<Pkg, ResolveError> {
        let bad = |field: &str, message: String| ResolveError::BadField {
            origin: origin.to_string(),
            package: name.to_string(),
            field: field.to_string(),
            message,
        };
        // New versions change the ranks, and a new package the candidate lists.
        self.sorted = OnceLock::new();
        let full = || too_many(origin, name);
        let version = match stanza.get("Version") {
            None | Some("") => return Err(bad("Version", "missing".into())),
            Some(text) => Version::parse(text).map_err(|e| bad("Version", e.to_string()))?,
        };
        let ver = self.version_id(&version).ok_or_else(full)?;
        let groups = |field: &str| {
            parse_relations(stanza.get(field).unwrap_or("")).map_err(|e| bad(field, e.to_string()))
        };
        let single = |field: &str| -> Result<Vec<Relation>, ResolveError> {
            let mut out = Vec::new();
            for group in groups(field)? {
                match group.relations() {
                    [rel] => out.push(rel.clone()),
                    _ => {
                        return Err(bad(
                            field,
                            format!("alternatives (`|`) are not allowed here, found {group}"),
                        ));
                    }
                }
            }
            Ok(out)
        };
        let mut alts = Vec::new();
        let mut group_ends = Vec::new();
        for (field, pre) in [("Pre-Depends", true), ("Depends", false)] {
            for group in groups(field)? {
                for rel in group.relations() {
                    alts.push(self.dep(rel, &full)?);
                }
                let end = u32::try_from(alts.len())
                    .ok()
                    .filter(|&end| end < PRE_GROUP)
                    .ok_or_else(full)?;
                group_ends.push(if pre { end | PRE_GROUP } else { end });
            }
        }
        let mut provides = Vec::new();
        for rel in single("Provides")? {
            let version = match rel.constraint() {
                None => None,
                Some((Op::Eq, v)) => Some(self.version_id(v).ok_or_else(full)?),
                Some(_) => {
                    return Err(bad(
                        "Provides",
                        format!("only `=` versions are allowed in Provides, found {rel}"),
                    ));
                }
            };
            provides.push((self.names.intern(rel.name()).ok_or_else(full)?, version));
        }
        let mut conflicts = Vec::new();
        for (field, breaks) in [("Conflicts", false), ("Breaks", true)] {
            for rel in single(field)? {
                conflicts.push((self.dep(&rel, &full)?, breaks));
            }
        }
        let mut replaces = Vec::new();
        for rel in single("Replaces")? {
            replaces.push(self.dep(&rel, &full)?);
        }
        let arch = self
            .arches
            .intern(stanza.get("Architecture").unwrap_or(""))
            .ok_or_else(full)?;
        // What is parsed above (name, version, architecture) and what only describes the
        // package is not kept: the rest is what the plan and the explanations read. Of the
        // two names of the package's SHA-256 (OpenWrt's `SHA256sum`, Debian's `SHA256`) the
        // one the download reads is kept.
        let sha_sum = stanza.contains("SHA256sum");
        stanza.retain(|field| {
            KEPT.iter().any(|k| k.eq_ignore_ascii_case(field))
                && !(sha_sum && field.eq_ignore_ascii_case("SHA256"))
        });
        let kept = self
            .kept
            .push(stanza.as_text())
            .map_err(|e| ResolveError::Scratch {
                reason: e.to_string(),
            })?;
        Ok(Pkg {
            name: self.names.intern(name).ok_or_else(full)?,
            ver,
            arch,
            feed: 0,
            stanza: kept,
            alts: append(&mut self.lists.alts, alts).ok_or_else(full)?,
            groups: append(&mut self.lists.groups, group_ends).ok_or_else(full)?,
            provides: append(&mut self.lists.provides, provides).ok_or_else(full)?,
            conflicts: append(&mut self.lists.conflicts, conflicts).ok_or_else(full)?,
            replaces: append(&mut self.lists.replaces, replaces).ok_or_else(full)?,
            installed,
            auto_installed: false,
        })
    }
}

/// The fields of a stanza the universe keeps ([`Step::stanza`]): the relations (the
/// explanations quote them as written, Recommends is read after resolution), where and what
/// to fetch (`SHA256` only without `SHA256sum`, which the download prefers), and the
/// developer signature. Name, version and architecture are kept parsed;
/// what only describes the package (Description, Maintainer, Section, …) is dropped: half of a
/// Debian-size index.
const KEPT: [&str; 13] = [
    "Pre-Depends",
    "Depends",
    "Recommends",
    "Provides",
    "Conflicts",
    "Breaks",
    "Replaces",
    "Filename",
    "Size",
    "SHA256sum",
    "SHA256",
    "Signature",
    "Signed-By",
];

/// Steps and relation checks one resolution took.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Counts {
    pub(super) steps: usize,
    pub(super) checks: u64,
}

fn too_many(origin: &str, name: &str) -> ResolveError {
    ResolveError::BadField {
        origin: origin.to_string(),
        package: name.to_string(),
        field: "Package".into(),
        message: "too many packages, names or versions for one resolution".into(),
    }
}

/// The virtual names `pkg` provides (not its own), each once.
fn provided_names(pkg: PkgRef<'_>) -> Vec<NameId> {
    let mut provided: Vec<NameId> = pkg
        .provides()
        .iter()
        .map(|&(n, _)| n)
        .filter(|&n| n != pkg.name)
        .collect();
    provided.sort_unstable();
    provided.dedup();
    provided
}

fn push_unique<T: PartialEq>(map: &mut IdMap<NameId, Vec<T>>, key: NameId, item: T) {
    let list = map.entry(key).or_default();
    if list.last() != Some(&item) {
        list.push(item);
    }
}

/// dpkg's rule: a letter or digit, then letters, digits, `+`, `-`, `.` or `_`.
pub(super) fn is_package_name(name: &str) -> bool {
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

/// The relations of one entry of a relation field as written in `stanza`: entry `index`
/// (empty entries skipped, as [`parse_relations`] does) of `field`, its alternatives from
/// `skip`, at most `take` of them, each in canonical form; and how many alternatives the
/// entry has. None when the field does not have that entry (it always does for a stanza the
/// universe accepted).
pub(super) fn relation_texts(
    stanza: &Paragraph,
    field: &str,
    index: usize,
    skip: usize,
    take: usize,
) -> Option<(Vec<String>, usize)> {
    let entry = stanza
        .get(field)?
        .split(',')
        .filter(|e| !e.trim().is_empty())
        .nth(index)?;
    let shown = entry
        .split('|')
        .skip(skip)
        .take(take)
        .map(|r| Relation::parse(r).map(|r| r.to_string()).ok())
        .collect::<Option<Vec<String>>>()?;
    Some((shown, entry.split('|').count()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relation_keeps_its_operator_and_version_in_eight_bytes() {
        assert_eq!(Dep::new(5, None).op(), None);
        for (i, op) in OPS.into_iter().enumerate() {
            for version in [0, 1, VER_MASK] {
                let dep = Dep::new(PENDING | i as u32, Some((op, version)));
                assert_eq!((dep.op(), dep.version()), (Some(op), version));
                assert_eq!(dep.raw, PENDING | i as u32);
            }
        }
        // Relations differing only in their constraint differ.
        assert_ne!(
            Dep::new(1, Some((Op::Lt, 3))),
            Dep::new(1, Some((Op::Le, 3)))
        );
        assert_ne!(Dep::new(1, None), Dep::new(1, Some((Op::Lt, 0))));
    }

    #[test]
    fn a_group_keeps_its_end_and_whether_it_is_pre_depends() {
        let mut u = Universe::new(&[]);
        let stanza = Paragraph::parse(
            "Package: p\nVersion: 1\nPre-Depends: a | b\nDepends: c, d (>= 2) | e\n",
        )
        .unwrap();
        u.add_available(stanza, "f", 0).unwrap();
        let p = u.pkg(0);
        assert_eq!(p.group_count(), 3);
        assert_eq!(
            (0..3)
                .map(|g| (p.group(g).len(), p.is_pre(g)))
                .collect::<Vec<_>>(),
            [(2, true), (1, false), (2, false)]
        );
        assert_eq!(p.group_origin(0), ("Pre-Depends", 0));
        assert_eq!(p.group_origin(2), ("Depends", 1));
        assert_eq!(p.group(2)[0].op(), Some(Op::Ge));
        assert_eq!(u.version(p.group(2)[0].version()), "2");
    }
}
