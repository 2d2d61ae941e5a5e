//! Error messages: the failure the search came closest with, in the user's terms.
//!
//! Relations are shown as the stanza wrote them (re-read from it, in canonical form), and
//! every list is capped: at most [`MAX_LISTED`] alternatives, versions, providers or
//! architectures, then "and N more"; a chain longer than [`MAX_CHAIN`] links keeps its two
//! ends. An explanation therefore costs O(`MAX_LISTED`) per link however wide the relations
//! are (an index with 100,000 alternatives in one `Depends` once made a 1 MB error line).

use super::solver::{LinkKind, NO_LINK, RelAt, RelWhy, Solver, Why};
use super::universe::{Dep, PkgId, relation_texts};
use super::{MAX_CHAIN, MAX_LISTED, ResolveError, explain};
use std::collections::HashSet;

/// `items` joined with `sep`, then `{sep}and N more` when `total` is larger.
fn listed(items: &[String], total: usize, sep: &str) -> String {
    let mut out = items.join(sep);
    if total > items.len() {
        out.push_str(&format!("{sep}and {} more", total - items.len()));
    }
    out
}

impl Solver<'_> {
    /// The deepest failure seen as an [`ResolveError::Unsatisfiable`].
    pub(super) fn failure_error(&self) -> ResolveError {
        let Some(best) = &self.best else {
            return ResolveError::Unsatisfiable {
                request: self.requests.iter().collect::<Vec<_>>().join(" "),
                chain: Vec::new(),
                reason: "no combination of the available packages satisfies every request".into(),
            };
        };
        // The links below the root have depths 1..=depth; a long chain keeps both ends and
        // words only those.
        let depth = best.depth as usize;
        let (keep_head, keep_tail) = if depth > MAX_CHAIN {
            (MAX_CHAIN / 2, MAX_CHAIN - MAX_CHAIN / 2)
        } else {
            (depth, 0)
        };
        let mut head = Vec::new();
        let mut tail = Vec::new();
        let mut request = String::new();
        let mut at = best.chain;
        let mut d = depth + 1;
        while at != NO_LINK {
            let link = self.link(at);
            d -= 1;
            match link.kind {
                LinkKind::Request(i) => request = self.requests.get(i).label(),
                kind if d <= keep_head => head.push(self.link_text(kind)),
                kind if d > depth - keep_tail => tail.push(self.link_text(kind)),
                _ => {}
            }
            at = link.parent;
        }
        head.reverse();
        tail.reverse();
        let mut links = head;
        if depth > MAX_CHAIN {
            links.push(format!("… {} more …", depth - MAX_CHAIN));
        }
        links.extend(tail);
        ResolveError::Unsatisfiable {
            request,
            chain: links,
            reason: self.why_text(&best.why),
        }
    }

    /// The deepest failure seen, worded as an [`ResolveError::Unsatisfiable`] message.
    pub(super) fn closest(&self) -> Option<String> {
        self.best.as_ref()?;
        Some(match self.failure_error() {
            ResolveError::Unsatisfiable {
                request,
                chain,
                reason,
            } => format!("cannot install {request}: {}", explain(&chain, &reason)),
            other => other.to_string(),
        })
    }

    fn link_text(&self, kind: LinkKind) -> String {
        match kind {
            LinkKind::Request(i) => self.requests.get(i).label(),
            LinkKind::Dep { from, group } => {
                let verb = if self.pkg(from).is_pre(group as usize) {
                    "pre-depends"
                } else {
                    "depends"
                };
                format!(
                    "{} {verb} on {}",
                    self.u.describe(from),
                    self.group_text(from, group as usize)
                )
            }
            LinkKind::Conflict {
                declarer,
                index,
                target,
                victim,
                ..
            } => format!(
                "{} ({} must be upgraded or removed)",
                self.conflict_text(declarer, index, target),
                self.u.name(self.pkg(victim).name)
            ),
        }
    }

    /// Dependency group `group` of `from`: its first alternatives, then how many more.
    fn group_text(&self, from: PkgId, group: usize) -> String {
        let p = self.pkg(from);
        let deps = p.group(group);
        let (field, index) = p.group_origin(group);
        let stanza = self.u.kept_paragraph(from);
        let shown = stanza
            .as_ref()
            .and_then(|s| relation_texts(s, field, index, 0, MAX_LISTED))
            .map_or_else(
                || {
                    deps.iter()
                        .take(MAX_LISTED)
                        .map(|&d| self.dep_text(d))
                        .collect()
                },
                |(texts, _)| texts,
            );
        let mut out = shown.join(" | ");
        if deps.len() > shown.len() {
            out.push_str(&format!(" | … and {} more", deps.len() - shown.len()));
        }
        out
    }

    /// A relation without the stanza's wording (arch qualifiers and restrictions dropped).
    fn dep_text(&self, dep: Dep) -> String {
        let name = self.u.dep_name_text(dep);
        match dep.op() {
            Some(op) => format!("{name} ({op} {})", self.u.version(dep.version())),
            None => name.to_string(),
        }
    }

    /// The relation at `at`, as written.
    fn rel_text(&self, at: RelAt) -> String {
        match at {
            // Checked before the search began (the relations are not kept: a bootstrap makes
            // one for each of its thousands of requests).
            RelAt::Request(i) => self
                .requests
                .get(i)
                .check()
                .map_or_else(|_| self.requests.get(i).label(), |r| r.to_string()),
            RelAt::Alt { pkg, group, alt } => {
                let p = self.pkg(pkg);
                let (field, index) = p.group_origin(group as usize);
                self.u
                    .kept_paragraph(pkg)
                    .and_then(|s| relation_texts(&s, field, index, alt as usize, 1))
                    .and_then(|(mut texts, _)| texts.pop())
                    .unwrap_or_else(|| self.dep_text(p.group(group as usize)[alt as usize]))
            }
        }
    }

    /// The name the relation at `at` is about.
    fn rel_name(&self, at: RelAt) -> &str {
        match at {
            RelAt::Request(i) => self.requests.get(i).name(),
            RelAt::Alt { pkg, group, alt } => self
                .u
                .dep_name_text(self.pkg(pkg).group(group as usize)[alt as usize]),
        }
    }

    fn conflict_text(&self, declarer: PkgId, index: u32, target: PkgId) -> String {
        let d = self.pkg(declarer);
        let t = self.pkg(target);
        let (declarer_text, target_text) = (self.u.describe(declarer), self.u.describe(target));
        let Some(&(dep, breaks)) = d.conflicts().get(index as usize) else {
            return format!("{declarer_text} conflicts with {target_text}");
        };
        let verb = if breaks { "breaks" } else { "conflicts with" };
        if self.u.dep_name(dep) == t.name {
            return format!("{declarer_text} {verb} {target_text}");
        }
        let field = if breaks { "Breaks" } else { "Conflicts" };
        let position = d.conflicts()[..index as usize]
            .iter()
            .filter(|(_, b)| *b == breaks)
            .count();
        let rel = self
            .u
            .kept_paragraph(declarer)
            .and_then(|s| relation_texts(&s, field, position, 0, 1))
            .and_then(|(mut texts, _)| texts.pop())
            .unwrap_or_else(|| self.dep_text(dep));
        format!("{declarer_text} {verb} {rel}, which {target_text} provides")
    }

    fn why_text(&self, why: &Why) -> String {
        match why {
            Why::Conflict {
                declarer,
                index,
                target,
            } => self.conflict_text(*declarer, *index, *target),
            Why::Rels { shown, more } => match (shown.as_slice(), *more) {
                ([], 0) => "no candidate is left".to_string(),
                ([one], 0) => self.rel_why_text(one),
                (many, more) => {
                    let parts: Vec<String> = many.iter().map(|w| self.rel_why_text(w)).collect();
                    format!(
                        "no alternative can be used: {}",
                        listed(&parts, parts.len() + more, "; ")
                    )
                }
            },
        }
    }

    fn rel_why_text(&self, why: &RelWhy) -> String {
        let u = self.u;
        match *why {
            RelWhy::Missing(at) => {
                let name = self.rel_name(at);
                match u.wrong_arch.get(name) {
                    Some(arches) => {
                        let shown: Vec<String> = arches.iter().take(MAX_LISTED).cloned().collect();
                        format!(
                            "{name} is in the feeds only for architecture {}, which is not configured (opkg.conf `arch` lines)",
                            listed(&shown, arches.len(), ", ")
                        )
                    }
                    None => format!("{name} is not in any feed (not assumed installed either)"),
                }
            }
            RelWhy::NoMatch(at) => self.no_match_text(at),
            RelWhy::Held { rel, holder } => {
                let h = self.pkg(holder);
                if h.installed {
                    format!(
                        "installed {} {} is to stay as it is, which {} does not allow",
                        u.name(h.name),
                        u.pkg_version(holder),
                        self.rel_text(rel)
                    )
                } else {
                    format!(
                        "{} {} is chosen for this plan",
                        u.name(h.name),
                        u.pkg_version(holder)
                    )
                }
            }
            RelWhy::Removed { victim, by } => format!(
                "{} is being removed (replaced by {})",
                u.describe(victim),
                u.describe(by)
            ),
            RelWhy::Doomed { victim, by } => format!(
                "{} cannot stay next to {} (Conflicts/Breaks) and no other version of it fits",
                u.describe(victim),
                u.describe(by)
            ),
            RelWhy::Downgrade(older) => {
                let p = self.pkg(older);
                let name = u.name(p.name);
                let installed = u.installed_by_name.get(&p.name);
                let version = u.pkg_version(older);
                format!(
                    "{name} {} is installed and only the older {version} fits, which would be a \
                     downgrade (request {name}={version} to downgrade)",
                    installed.map_or_else(String::new, |&i| u.pkg_version(i).to_string()),
                )
            }
            RelWhy::Dead(at) => {
                let want = self.want(at);
                let fitting: Vec<PkgId> = self
                    .candidates(want.name)
                    .iter()
                    .chain(self.providers(want.name))
                    .copied()
                    .filter(|&id| u.satisfies(id, want))
                    .collect();
                let names: Vec<String> = fitting
                    .iter()
                    .take(MAX_LISTED)
                    .map(|&id| u.describe(id))
                    .collect();
                format!(
                    "no candidate for {} can be installed (each of {} fails)",
                    self.rel_text(at),
                    listed(&names, fitting.len(), ", ")
                )
            }
        }
    }

    fn no_match_text(&self, at: RelAt) -> String {
        let u = self.u;
        let want = self.want(at);
        let name = self.rel_name(at);
        let mut parts = Vec::new();
        let mut seen = HashSet::new();
        let mut versions: Vec<String> = Vec::new();
        for &id in self.candidates(want.name) {
            let v = u.pkg_version(id);
            if seen.insert(v) && versions.len() < MAX_LISTED {
                versions.push(v.to_string());
            }
        }
        if !seen.is_empty() {
            parts.push(format!(
                "the feeds have only {name} {}",
                listed(&versions, seen.len(), ", ")
            ));
        }
        if let Some(&id) = u.installed_by_name.get(&want.name) {
            parts.push(format!("{name} {} is installed", u.pkg_version(id)));
        }
        let installed = u.installed_providers.get(&want.name).into_iter().flatten();
        let providers: Vec<PkgId> = self
            .providers(want.name)
            .iter()
            .chain(installed)
            .copied()
            .collect();
        for &id in providers.iter().take(MAX_LISTED) {
            let p = self.pkg(id);
            for &(n, v) in p.provides().iter().filter(|(n, _)| *n == want.name) {
                let n = u.name(n);
                parts.push(match v {
                    None if want.op.is_some() => format!(
                        "{} provides {n} without a version, which never satisfies a versioned dependency",
                        u.describe(id)
                    ),
                    None => format!("{} provides {n}", u.describe(id)),
                    Some(v) => format!("{} provides {n} (= {})", u.describe(id), u.version(v)),
                });
            }
        }
        if providers.len() > MAX_LISTED {
            parts.push(format!(
                "and {} more packages provide {name}",
                providers.len() - MAX_LISTED
            ));
        }
        if parts.is_empty() {
            format!("nothing satisfies {}", self.rel_text(at))
        } else {
            parts.join("; ")
        }
    }
}
