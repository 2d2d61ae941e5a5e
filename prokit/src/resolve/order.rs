//! The plan: what the search decided, in install order.
//!
//! The planned packages are ordered by strongly connected components of the (Pre-)Depends
//! graph, dependencies first (Tarjan). Inside a component (a dependency cycle) a package goes
//! next when all its Pre-Depends inside the component are installed, the one with the fewest
//! Depends still pending first, then the smallest name; counts are kept up to date as packages
//! go, so a component of V packages and E edges costs O(E log V). A component where no package
//! is ready is a Pre-Depends cycle: an error naming it.

use super::solver::{Decision, Solver};
use super::universe::{IdMap, PkgId};
use super::{MAX_CHAIN, Plan, ResolveError, Step};
use std::collections::BTreeSet;

/// Edges of the dependency graph between planned packages: (target, is Pre-Depends).
type Edges = Vec<Vec<(usize, bool)>>;

impl Solver<'_> {
    /// The decisions of a finished search, as a plan.
    pub(super) fn plan(&self) -> Result<Plan, ResolveError> {
        let u = self.u;
        let mut planned: Vec<(PkgId, bool)> = Vec::new();
        let mut removes = Vec::new();
        let mut already_installed = Vec::new();
        for (&name, decision) in &self.decisions {
            match *decision {
                Decision::Install { id, requested } => planned.push((id, requested)),
                Decision::Remove { .. } => removes.push(u.name(name).to_string()),
                Decision::Keep(_) => already_installed.push(u.name(name).to_string()),
                Decision::Doomed { .. } => {}
            }
        }
        planned.sort_by(|a, b| u.name(self.pkg(a.0).name).cmp(u.name(self.pkg(b.0).name)));
        removes.sort();
        already_installed.sort();
        let index: IdMap<PkgId, usize> = planned
            .iter()
            .enumerate()
            .map(|(i, &(id, _))| (id, i))
            .collect();
        // Edges: package -> the planned package meeting each of its dependency groups.
        let mut edges: Edges = vec![Vec::new(); planned.len()];
        for (i, &(id, _)) in planned.iter().enumerate() {
            let p = self.pkg(id);
            for group in 0..p.group_count() {
                for &dep in p.group(group) {
                    if u.is_assumed(u.dep_name(dep)) {
                        break;
                    }
                    if let Some(s) = self.present_satisfier(u.want(dep)) {
                        if let Some(&j) = index.get(&s)
                            && j != i
                        {
                            edges[i].push((j, p.is_pre(group)));
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
                let installed = u.installed_by_name.get(&p.name);
                Step {
                    name: u.name(p.name).to_string(),
                    version: u.pkg_version(id).to_string(),
                    arch: self.u.arch(p).to_string(),
                    feed: u.feed_name(p).to_string(),
                    stanza: p.stanza.clone(),
                    auto: !requested && installed.is_none_or(|&o| self.pkg(o).auto_installed),
                    upgrade_from: installed.map(|&o| u.pkg_version(o).to_string()),
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
    /// first, then the fewest pending Depends, then the name (the index in `planned`, which
    /// is sorted by name).
    fn install_order(
        &self,
        planned: &[(PkgId, bool)],
        edges: &Edges,
    ) -> Result<Vec<usize>, ResolveError> {
        let n = edges.len();
        let components = tarjan(edges);
        let mut component_of = vec![0; n];
        for (c, component) in components.iter().enumerate() {
            for &v in component {
                component_of[v] = c;
            }
        }
        // Per package, the edges inside its component still pending: [Depends, Pre-Depends];
        // and the reverse edges inside components, to update them.
        let mut pending = vec![[0usize; 2]; n];
        let mut reverse: Edges = vec![Vec::new(); n];
        for (v, out) in edges.iter().enumerate() {
            for &(w, pre) in out {
                if component_of[w] == component_of[v] {
                    pending[v][usize::from(pre)] += 1;
                    reverse[w].push((v, pre));
                }
            }
        }
        let mut done = vec![false; n];
        let mut order = Vec::with_capacity(n);
        for component in components {
            if let [only] = component[..] {
                order.push(only);
                done[only] = true;
                continue;
            }
            let mut ready: BTreeSet<(usize, usize)> = component
                .iter()
                .filter(|&&v| pending[v][1] == 0)
                .map(|&v| (pending[v][0], v))
                .collect();
            for _ in 0..component.len() {
                let Some((_, v)) = ready.pop_first() else {
                    let mut left: Vec<usize> =
                        component.iter().copied().filter(|&v| !done[v]).collect();
                    left.sort_unstable();
                    return Err(self.pre_depends_cycle(planned, edges, &left));
                };
                done[v] = true;
                order.push(v);
                for &(x, pre) in &reverse[v] {
                    if done[x] {
                        continue;
                    }
                    let [depends, pre_depends] = &mut pending[x];
                    if pre {
                        *pre_depends -= 1;
                        if *pre_depends == 0 {
                            ready.insert((*depends, x));
                        }
                    } else if *pre_depends == 0 {
                        ready.remove(&(*depends, x));
                        *depends -= 1;
                        ready.insert((*depends, x));
                    } else {
                        *depends -= 1;
                    }
                }
            }
        }
        Ok(order)
    }

    /// The cycle of Pre-Depends among `left` (sorted) found from its first package.
    fn pre_depends_cycle(
        &self,
        planned: &[(PkgId, bool)],
        edges: &Edges,
        left: &[usize],
    ) -> ResolveError {
        let mut in_left = vec![false; edges.len()];
        for &v in left {
            in_left[v] = true;
        }
        let mut path: Vec<usize> = left.iter().take(1).copied().collect();
        let mut position: IdMap<usize, usize> = path.iter().map(|&v| (v, 0)).collect();
        while let Some(&v) = path.last() {
            let next = edges[v]
                .iter()
                .find(|&&(w, pre)| pre && in_left[w])
                .map(|&(w, _)| w);
            let Some(w) = next else { break };
            if let Some(&start) = position.get(&w) {
                path.drain(..start);
                path.push(w);
                break;
            }
            position.insert(w, path.len());
            path.push(w);
        }
        let name = |i: usize| {
            let p = self.pkg(planned[i].0);
            format!(
                "{} {}",
                self.u.name(p.name),
                self.u.pkg_version(planned[i].0)
            )
        };
        let cycle = if path.len() > MAX_CHAIN {
            let head = MAX_CHAIN / 2;
            let tail = MAX_CHAIN - head;
            let mut out: Vec<String> = path[..head].iter().map(|&i| name(i)).collect();
            out.push(format!("… {} more …", path.len() - MAX_CHAIN));
            out.extend(path[path.len() - tail..].iter().map(|&i| name(i)));
            out
        } else {
            path.into_iter().map(name).collect()
        };
        ResolveError::PreDependsCycle { cycle }
    }
}

/// Tarjan's strongly connected components, iteratively; components come out dependencies
/// first (every edge points to the same or an earlier component).
fn tarjan(edges: &Edges) -> Vec<Vec<usize>> {
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
