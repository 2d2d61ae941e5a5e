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

/// The dependency graph between planned packages: each package's edges (target, is
/// Pre-Depends) in one array, a bound per package in another (a vector per package would be
/// an allocation each, for a plan of tens of thousands).
struct Edges {
    /// Where package `v`'s edges end in `to` (they start where `v - 1`'s end).
    ends: Vec<u32>,
    /// Target `w` and the Pre-Depends flag, as `w << 1 | pre`.
    to: Vec<u32>,
}

fn decode(e: u32) -> (usize, bool) {
    ((e >> 1) as usize, e & 1 == 1)
}

impl Edges {
    fn with_capacity(n: usize) -> Edges {
        Edges {
            ends: Vec::with_capacity(n),
            to: Vec::new(),
        }
    }

    /// Adds an edge of the package being added (the one after the last finished).
    fn push(&mut self, w: usize, pre: bool) {
        let w = u32::try_from(w).expect("fewer than 2^31 planned packages");
        self.to.push(w << 1 | u32::from(pre));
    }

    /// Finishes the package being added.
    fn finish(&mut self) {
        self.ends
            .push(u32::try_from(self.to.len()).expect("fewer than 2^32 edges"));
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    fn of(&self, v: usize) -> &[u32] {
        let start = if v == 0 { 0 } else { self.ends[v - 1] as usize };
        &self.to[start..self.ends[v] as usize]
    }

    fn out(&self, v: usize) -> impl Iterator<Item = (usize, bool)> + '_ {
        self.of(v).iter().map(|&e| decode(e))
    }

    /// Edge number `k` of package `v`.
    fn edge(&self, v: usize, k: usize) -> Option<(usize, bool)> {
        self.of(v).get(k).map(|&e| decode(e))
    }

    /// The edges `v -> w` for which `keep(v, w)`, reversed; each package's in source order.
    fn reversed(&self, keep: impl Fn(usize, usize) -> bool) -> Edges {
        let n = self.len();
        let mut ends = vec![0u32; n];
        for v in 0..n {
            for (w, _) in self.out(v).filter(|&(w, _)| keep(v, w)) {
                ends[w] += 1;
            }
        }
        let mut total = 0;
        for end in &mut ends {
            total += *end;
            *end = total;
        }
        // Each package's edges are placed from its end backwards, the last source first;
        // `fill` ends as each one's start.
        let mut to = vec![0u32; total as usize];
        let mut fill = ends.clone();
        for v in (0..n).rev() {
            for (w, pre) in self.out(v).filter(|&(w, _)| keep(v, w)) {
                fill[w] -= 1;
                to[fill[w] as usize] = (v as u32) << 1 | u32::from(pre);
            }
        }
        Edges { ends, to }
    }
}

impl Solver<'_> {
    /// The decisions of a finished search, as a plan.
    pub(super) fn plan(&self) -> Result<Plan, ResolveError> {
        let u = self.u;
        let mut planned: Vec<(PkgId, bool)> = Vec::new();
        let mut removes = Vec::new();
        let mut already_installed = Vec::new();
        for (name, decision) in self.decisions.iter() {
            match decision {
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
        let mut edges = Edges::with_capacity(planned.len());
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
                            edges.push(j, p.is_pre(group));
                        }
                        break;
                    }
                }
            }
            edges.finish();
        }
        drop(index);
        let order = self.install_order(&planned, &edges)?;
        let steps = order
            .into_iter()
            .map(|i| {
                let (id, requested) = planned[i];
                let p = self.pkg(id);
                let installed = u.installed_by_name.get(&p.name);
                Step::new(
                    u.name(p.name),
                    u.pkg_version(id),
                    installed.map(|&o| u.pkg_version(o)),
                    u.shared_arch(&p),
                    u.shared_feed(&p),
                    u.kept_stanza(id),
                    !requested && installed.is_none_or(|&o| self.pkg(o).auto_installed),
                )
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
        let (members, component_ends) = tarjan(edges);
        let components = component_ends.iter().scan(0usize, |start, &end| {
            let c = &members[*start..end as usize];
            *start = end as usize;
            Some(c)
        });
        let mut component_of = vec![0u32; n];
        for (c, component) in components.clone().enumerate() {
            for &v in component {
                component_of[v as usize] = c as u32;
            }
        }
        // Per package, the edges inside its component still pending: [Depends, Pre-Depends];
        // and the reverse edges inside components, to update them.
        let mut pending = vec![[0u32; 2]; n];
        for v in 0..n {
            for (w, pre) in edges.out(v) {
                if component_of[w] == component_of[v] {
                    pending[v][usize::from(pre)] += 1;
                }
            }
        }
        let reverse = edges.reversed(|v, w| component_of[v] == component_of[w]);
        let mut done = vec![false; n];
        let mut order = Vec::with_capacity(n);
        for component in components {
            if let [only] = component[..] {
                order.push(only as usize);
                done[only as usize] = true;
                continue;
            }
            let component: Vec<usize> = component.iter().map(|&v| v as usize).collect();
            let mut ready: BTreeSet<(u32, usize)> = component
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
                for (x, pre) in reverse.out(v) {
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
            let next = edges
                .out(v)
                .find(|&(w, pre)| pre && in_left[w])
                .map(|(w, _)| w);
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
/// first (every edge points to the same or an earlier component): their members one after
/// the other, and where each component's members end.
fn tarjan(edges: &Edges) -> (Vec<u32>, Vec<u32>) {
    const UNSEEN: usize = usize::MAX;
    let n = edges.len();
    let mut index = vec![UNSEEN; n];
    let mut low = vec![0; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut members = Vec::with_capacity(n);
    let mut ends = Vec::new();
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
            if let Some((w, _)) = edges.edge(v, edge) {
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
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    members.push(w as u32);
                    if w == v {
                        break;
                    }
                }
                ends.push(members.len() as u32);
            }
        }
    }
    (members, ends)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(out: &[&[(usize, bool)]]) -> Edges {
        let mut e = Edges::with_capacity(out.len());
        for edges in out {
            for &(w, pre) in *edges {
                e.push(w, pre);
            }
            e.finish();
        }
        e
    }

    #[test]
    fn the_reversed_graph_has_every_edge_backwards_in_source_order() {
        let g = graph(&[
            &[(1, false), (2, true)],
            &[(2, false)],
            &[],
            &[(2, true), (0, false)],
        ]);
        let r = g.reversed(|_, _| true);
        let all = |e: &Edges| -> Vec<Vec<(usize, bool)>> {
            (0..e.len()).map(|v| e.out(v).collect()).collect()
        };
        assert_eq!(
            all(&r),
            vec![
                vec![(3, false)],
                vec![(0, false)],
                vec![(0, true), (1, false), (3, true)],
                vec![],
            ]
        );
        // Back again: the same edges, each package's in target order.
        let mut back = all(&g);
        back.iter_mut().for_each(|out| out.sort_unstable());
        assert_eq!(all(&r.reversed(|_, _| true)), back);
        // Only the edges kept.
        let into_2 = g.reversed(|_, w| w == 2);
        assert_eq!(
            all(&into_2),
            vec![
                vec![],
                vec![],
                vec![(0, true), (1, false), (3, true)],
                vec![]
            ]
        );
        assert_eq!(g.edge(3, 1), Some((0, false)));
        assert_eq!(g.edge(2, 0), None);
    }

    #[test]
    fn components_come_out_dependencies_first() {
        // 0 -> 1 -> 2 -> 1 (a cycle of 1 and 2), 3 -> 0.
        let g = graph(&[&[(1, false)], &[(2, false)], &[(1, true)], &[(0, false)]]);
        let (members, ends) = tarjan(&g);
        let mut start = 0;
        let comps: Vec<Vec<u32>> = ends
            .iter()
            .map(|&end| {
                let mut c = members[start..end as usize].to_vec();
                c.sort_unstable();
                start = end as usize;
                c
            })
            .collect();
        assert_eq!(comps, vec![vec![1, 2], vec![0], vec![3]]);
    }
}
