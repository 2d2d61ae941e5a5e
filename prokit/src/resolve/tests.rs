//! The resolver's tests: the rules (one test each), explanations, randomised universes checked
//! against a brute-force search, and the bounds on adversarial indexes (work counted, not
//! timed).

use super::universe::Counts;
use super::*;
use feeds::control::Paragraph;
use feeds::relation::{Alternatives, parse_relations};
use std::collections::{HashMap, HashSet};

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
    if let Err(e) = u.add_available(index_stanza(text), feed, order) {
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
    if let Err(e) = u.add_installed(stanza(&text)) {
        panic!("{text:?} should be accepted: {e}");
    }
}

fn universe() -> Universe {
    Universe::new(&[])
}

fn requests(names: &[&str]) -> RequestList {
    for n in names {
        if let Err(e) = Request::parse(n) {
            panic!("{n}: {e}");
        }
    }
    RequestList::of(names)
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
        .map(|s| format!("{} {}", s.name(), s.version()))
        .collect()
}

fn position(plan: &Plan, name: &str) -> usize {
    match plan.steps.iter().position(|s| s.name() == name) {
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
    let expected = "cannot install a: a 1.0 depends on b (>= 2), but b 1.0 is chosen for this plan";
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
    assert_eq!(d.upgrade_from(), Some("1.1"));
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
    assert_eq!(p.steps[0].upgrade_from(), Some("1.0"));
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
    assert_eq!(&*p.steps[0].feed, "extra");
    assert_eq!(&*p.steps[1].feed, "base");
    assert_eq!(
        p.steps[1].stanza.read().unwrap().get("Filename"),
        Some("b.ipk")
    );
}

/// The universe keeps of a stanza only what the plan and the explanations read: a Debian
/// stanza's description, maintainer, sizes and its second SHA-256 field are not held for each
/// of tens of thousands of packages.
#[test]
fn a_step_carries_the_fields_read_after_resolution_and_no_others() {
    let sha = "ab".repeat(32);
    let mut u = universe();
    u.add_available(
        stanza(&format!(
            "Package: a\nVersion: 1.0\nDepends: b\nSource: a-src\nMaintainer: M <m@x>\n\
             Architecture: all\nInstalled-Size: 10\nFilename: a.deb\nSize: 9\n\
             SHA256sum: {sha}\nSHA256: {sha}\nSignature: sig\nSigned-By: key\n\
             Recommends: c\nDescription: the a\n more"
        )),
        "base",
        0,
    )
    .unwrap();
    u.add_available(
        stanza(&format!(
            "Package: b\nVersion: 1.0\nFilename: b.deb\nSize: 9\nSHA256: {sha}\nTag: x"
        )),
        "base",
        0,
    )
    .unwrap();
    let p = plan(&u, &["a"]);
    let fields = |i: usize| -> Vec<String> {
        p.steps[i]
            .stanza
            .read()
            .unwrap()
            .fields()
            .map(|f| f.name().to_string())
            .collect()
    };
    assert_eq!(steps(&p), ["b 1.0", "a 1.0"]);
    assert_eq!(
        fields(1),
        [
            "Depends",
            "Filename",
            "Size",
            "SHA256sum",
            "Signature",
            "Signed-By",
            "Recommends"
        ]
    );
    assert_eq!(
        p.steps[1].stanza.read().unwrap().get("SHA256sum"),
        Some(sha.as_str())
    );
    assert_eq!(
        (p.steps[1].arch.as_str(), p.steps[1].version()),
        ("all", "1.0")
    );
    // Without SHA256sum, SHA256 is what the download reads: it stays.
    assert_eq!(fields(0), ["Filename", "Size", "SHA256"]);
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
    assert_eq!(&*p.steps[0].arch, "mipsel");
    // A newer version beats a better architecture.
    assert_eq!(&*p.steps[1].arch, "mips");
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
    assert!(p.steps.iter().all(|s| s.auto == (s.name() != "a")));
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

/// The explanation links of a branch are undone when the search backtracks out of it, but for
/// the deepest failure's: found in the first alternative, it is still the one reported after
/// the second failed with links of its own made in the same places.
#[test]
fn deepest_failure_of_an_abandoned_branch_keeps_its_chain() {
    let mut u = universe();
    avail(&mut u, "Package: a\nVersion: 1.0\nDepends: c | b");
    avail(&mut u, "Package: c\nVersion: 1.0\nDepends: y");
    avail(&mut u, "Package: y\nVersion: 1.0\nDepends: w, z (>= 2)");
    avail(&mut u, "Package: w\nVersion: 1.0");
    avail(&mut u, "Package: b\nVersion: 1.0\nDepends: p, q, x");
    avail(&mut u, "Package: p\nVersion: 1.0");
    avail(&mut u, "Package: q\nVersion: 1.0");
    let message = failure(&u, &["a"]).to_string();
    assert_eq!(
        message,
        "cannot install a: a 1.0 depends on c | b, c 1.0 depends on y, y 1.0 depends on \
         z (>= 2), but z is not in any feed (not assumed installed either)"
    );
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
    assert_eq!(p.steps[0].upgrade_from(), Some("2.0"));
}

#[test]
fn requested_installed_package_is_upgraded() {
    let mut u = universe();
    installed(&mut u, "Package: a\nVersion: 1.0\nAuto-Installed: yes");
    avail(&mut u, "Package: a\nVersion: 1.1");
    let p = plan(&u, &["a"]);
    assert_eq!(steps(&p), ["a 1.1"]);
    assert_eq!(p.steps[0].upgrade_from(), Some("1.0"));
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
    assert_eq!(p.steps[0].upgrade_from(), Some("1.0"));
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
    assert_eq!(p.steps[1].upgrade_from(), Some("1.0"));
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
        let e = match u.add_available(stanza(text), "base", 0) {
            Ok(()) => panic!("{text:?} should be refused"),
            Err(e) => e,
        };
        let message = e.to_string();
        assert!(
            message.starts_with(&format!("feed \"base\": package \"a\": field {field}: ")),
            "{message}"
        );
    }
    let e = u.add_installed(stanza("Package: -a\nVersion: 1"));
    assert!(e.is_err_and(|e| {
        e.to_string()
            .starts_with("installed status: package \"-a\"")
    }));
    for bad in ["", "a=", "a=1 2", "-a", "a b"] {
        assert!(Request::parse(bad).is_err(), "{bad:?}");
    }
    let pinned = Request::parse("a=1.0-1").unwrap();
    assert_eq!((pinned.name(), pinned.version()), ("a", Some("1.0-1")));
    assert_eq!(
        (Request::of("b").name(), Request::of("b").version()),
        ("b", None)
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
                closest
                    .starts_with("cannot install a: a 1.0 depends on w, but w 1.0 conflicts with"),
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

/// An independent reading of a stanza, straight from the relation parser rather than through
/// the universe, to check plans against.
struct Oracle {
    name: String,
    version: Version,
    deps: Vec<Alternatives>,
    conflicts: Vec<Relation>,
    provides: Vec<(String, Option<Version>)>,
    replaces: Vec<Relation>,
}

impl Oracle {
    fn of(text: &str) -> Oracle {
        let p = stanza(text);
        let field = |f: &str| parse_relations(p.get(f).unwrap_or("")).unwrap();
        let flat = |f: &str| -> Vec<Relation> {
            field(f)
                .into_iter()
                .map(|g| g.relations()[0].clone())
                .collect()
        };
        let mut deps = field("Pre-Depends");
        deps.extend(field("Depends"));
        let mut conflicts = flat("Conflicts");
        conflicts.extend(flat("Breaks"));
        Oracle {
            name: p.get("Package").unwrap().to_string(),
            version: Version::parse(p.get("Version").unwrap()).unwrap(),
            deps,
            conflicts,
            provides: flat("Provides")
                .into_iter()
                .map(|r| (r.name().to_string(), r.constraint().map(|(_, v)| v.clone())))
                .collect(),
            replaces: flat("Replaces"),
        }
    }

    fn satisfies(&self, rel: &Relation) -> bool {
        rel.satisfied_by(&self.name, Some(&self.version))
            || self
                .provides
                .iter()
                .any(|(n, v)| rel.satisfied_by(n, v.as_ref()))
    }

    /// The stanza of `pool` a plan step stands for.
    fn find<'a>(pool: &'a [Oracle], step: &Step) -> Option<&'a Oracle> {
        pool.iter()
            .find(|o| o.name == step.name() && o.version.to_string() == step.version())
    }
}

fn met(world: &[&Oracle], group: &Alternatives) -> bool {
    group
        .relations()
        .iter()
        .any(|r| world.iter().any(|q| q.satisfies(r)))
}

/// Whether a set of packages is a consistent world that satisfies `requests`.
fn consistent(world: &[&Oracle], requests: &[String]) -> bool {
    let deps_met = world
        .iter()
        .all(|p| p.deps.iter().all(|group| met(world, group)));
    let no_conflict = world.iter().all(|p| {
        p.conflicts
            .iter()
            .all(|rel| !world.iter().any(|q| q.name != p.name && q.satisfies(rel)))
    });
    let requested = requests.iter().all(|r| match Relation::parse(r) {
        Ok(rel) => world.iter().any(|q| q.satisfies(&rel)),
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
        let mut by_name: Vec<Vec<Oracle>> = Vec::new();
        for n in 0..NAMES {
            let mut versions = Vec::new();
            for version in 1..=1 + rng.below(2) {
                let text = rng.stanza(&format!("n{n}"), version, NAMES);
                avail(&mut u, &text);
                versions.push(Oracle::of(&text));
                texts.push(text);
            }
            by_name.push(versions);
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
        let mut exists = false;
        let mut pick = vec![0usize; by_name.len()];
        'all: loop {
            let world: Vec<&Oracle> = pick
                .iter()
                .zip(&by_name)
                .filter(|(k, _)| **k > 0)
                .map(|(k, versions)| &versions[*k - 1])
                .collect();
            if consistent(&world, &wanted) {
                exists = true;
                break;
            }
            for (k, versions) in pick.iter_mut().zip(&by_name) {
                *k += 1;
                if *k <= versions.len() {
                    continue 'all;
                }
                *k = 0;
            }
            break;
        }
        let pool: Vec<Oracle> = by_name.into_iter().flatten().collect();
        let names: Vec<&str> = wanted.iter().map(String::as_str).collect();
        match u.resolve(&requests(&names)) {
            Ok(p) => {
                let world: Vec<&Oracle> = p
                    .steps
                    .iter()
                    .filter_map(|s| Oracle::find(&pool, s))
                    .collect();
                assert!(
                    exists && world.len() == p.steps.len() && consistent(&world, &wanted),
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
        let pool: Vec<Oracle> = texts.iter().map(|t| Oracle::of(t)).collect();
        let before_pool: Vec<Oracle> = installed_texts.iter().map(|t| Oracle::of(t)).collect();
        let before: Vec<&Oracle> = before_pool.iter().collect();
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
        let new: Vec<&Oracle> = p
            .steps
            .iter()
            .filter_map(|s| Oracle::find(&pool, s))
            .collect();
        assert_eq!(new.len(), p.steps.len(), "{}", context());
        let kept: Vec<&Oracle> = before
            .iter()
            .copied()
            .filter(|o| !p.removes.contains(&o.name) && !p.steps.iter().any(|s| s.name() == o.name))
            .collect();
        let world: Vec<&Oracle> = kept.iter().chain(&new).copied().collect();
        for id in &new {
            for group in &id.deps {
                assert!(
                    met(&world, group),
                    "{} lacks {group}: {}",
                    id.name,
                    context()
                );
            }
            for other in &world {
                for (a, b) in [(id, other), (other, id)] {
                    for rel in &a.conflicts {
                        let hit = a.name != b.name && b.satisfies(rel);
                        assert!(!hit, "{} vs {}: {}", a.name, b.name, context());
                    }
                }
            }
        }
        for id in &kept {
            for group in &id.deps {
                if met(&before, group) {
                    assert!(
                        met(&world, group),
                        "installed {} loses {group}: {}",
                        id.name,
                        context()
                    );
                }
            }
        }
        for name in &p.removes {
            let victim = before.iter().find(|o| o.name == *name).unwrap();
            let remover = new
                .iter()
                .any(|id| id.replaces.iter().any(|r| victim.satisfies(r)));
            assert!(remover, "{name} removed without a replacer: {}", context());
        }
        let requested = wanted.iter().all(|w| world.iter().any(|q| q.name == *w));
        assert!(requested, "request not met: {}", context());
    }
    assert!(planned > 100, "{planned} plans");
}

/// Checks that every planned package comes after a planned package meeting each of its
/// dependency groups (for acyclic plans).
fn assert_ordered(plan: &Plan) {
    let mut seen: HashMap<&str, &Step> = HashMap::new();
    let planned: HashSet<&str> = plan.steps.iter().map(|s| s.name()).collect();
    for step in &plan.steps {
        for field in ["Pre-Depends", "Depends"] {
            let groups = parse_relations(step.stanza.read().unwrap().get(field).unwrap_or(""));
            for group in groups.into_iter().flatten() {
                let names: Vec<&str> = group.relations().iter().map(|r| r.name()).collect();
                if names.iter().any(|n| planned.contains(n)) {
                    assert!(
                        names.iter().any(|n| seen.contains_key(n)),
                        "{} comes before its dependency {group}",
                        step.name()
                    );
                }
            }
        }
        seen.insert(step.name(), step);
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
    assert_eq!(first.steps.last().map(|s| s.name()), Some("lib1199"));
    assert!(first.steps.iter().all(|s| s.version() != "0.9"));
    assert_ordered(&first);
    assert_eq!(plan(&u, &["lib1199"]), first, "deterministic");
}

// --- bounds on adversarial indexes (threat 12): work is counted, never timed ----------------

/// Resolves, returning the result and the steps and relation checks it took.
fn counted(u: &Universe, names: &[&str]) -> (Result<Plan, ResolveError>, Counts) {
    u.resolve_counted(&requests(names))
}

/// `prefix0 | prefix1 | … | prefix{n-1}`.
fn alternatives(prefix: &str, n: usize) -> String {
    (0..n)
        .map(|i| format!("{prefix}{i}"))
        .collect::<Vec<_>>()
        .join(" | ")
}

#[test]
fn explanations_cap_long_alternative_lists() {
    let mut u = universe();
    avail(
        &mut u,
        &format!(
            "Package: a\nVersion: 1.0\nDepends: {}",
            alternatives("m", 20_000)
        ),
    );
    avail(&mut u, "Package: top\nVersion: 1\nDepends: a");
    let missing = |i: usize| format!("m{i} is not in any feed (not assumed installed either)");
    let expected = format!(
        "cannot install top: top 1 depends on a, a 1.0 depends on m0 | m1 | m2 | m3 | m4 | … and \
         19995 more, but no alternative can be used: {}; and 19995 more",
        (0..5).map(missing).collect::<Vec<_>>().join("; ")
    );
    assert_eq!(failure(&u, &["top"]).to_string(), expected);

    // Versions, providers and architectures are capped too.
    let mut u = Universe::new(&[("all".to_string(), 1)]);
    for v in 1..=100 {
        avail(&mut u, &format!("Package: b\nVersion: {v}"));
    }
    for p in 0..20 {
        avail(
            &mut u,
            &format!("Package: p{p:02}\nVersion: 1\nProvides: v"),
        );
    }
    for arch in 0..9 {
        avail(
            &mut u,
            &format!("Package: w\nVersion: 1\nArchitecture: arch{arch}"),
        );
    }
    avail(&mut u, "Package: a\nVersion: 1\nDepends: b (>> 100)");
    avail(&mut u, "Package: c\nVersion: 1\nDepends: v (>= 1)");
    assert_eq!(
        failure(&u, &["a"]).to_string(),
        "cannot install a: a 1 depends on b (>> 100), but the feeds have only b 100, 99, 98, 97, \
         96, and 95 more"
    );
    let unversioned = |p: usize| {
        format!(
            "p{p:02} 1 provides v without a version, which never satisfies a versioned dependency"
        )
    };
    assert_eq!(
        failure(&u, &["c"]).to_string(),
        format!(
            "cannot install c: c 1 depends on v (>= 1), but {}; and 15 more packages provide v",
            (0..5).map(unversioned).collect::<Vec<_>>().join("; ")
        )
    );
    assert_eq!(
        failure(&u, &["w"]).to_string(),
        "cannot install w: w is in the feeds only for architecture arch0, arch1, arch2, arch3, \
         arch4, and 4 more, which is not configured (opkg.conf `arch` lines)"
    );
}

#[test]
fn long_chains_keep_both_ends() {
    let mut u = universe();
    for i in 0..100 {
        avail(
            &mut u,
            &format!("Package: a{i}\nVersion: 1\nDepends: a{}", i + 1),
        );
    }
    avail(&mut u, "Package: a100\nVersion: 1\nDepends: missing");
    let ResolveError::Unsatisfiable { chain, reason, .. } = failure(&u, &["a0"]) else {
        panic!("expected Unsatisfiable");
    };
    // 101 links: the first 10, a count of those left out, the last 10.
    assert_eq!(chain.len(), MAX_CHAIN + 1);
    assert_eq!(chain[0], "a0 1 depends on a1");
    assert_eq!(chain[9], "a9 1 depends on a10");
    assert_eq!(chain[10], "… 81 more …");
    assert_eq!(chain[11], "a91 1 depends on a92");
    assert_eq!(chain[20], "a100 1 depends on missing");
    assert_eq!(
        reason,
        "missing is not in any feed (not assumed installed either)"
    );
}

#[test]
fn a_long_pre_depends_cycle_is_named_by_its_ends() {
    let mut u = universe();
    for i in 0..100 {
        avail(
            &mut u,
            &format!(
                "Package: a{i:03}\nVersion: 1\nPre-Depends: a{:03}",
                (i + 1) % 100
            ),
        );
    }
    let ResolveError::PreDependsCycle { cycle } = failure(&u, &["a000"]) else {
        panic!("expected a Pre-Depends cycle");
    };
    // a000 -> a001 -> … -> a099 -> a000: 101 entries, 20 shown.
    assert_eq!(cycle.len(), MAX_CHAIN + 1);
    assert_eq!(cycle[0], "a000 1");
    assert_eq!(cycle[9], "a009 1");
    assert_eq!(cycle[10], "… 81 more …");
    assert_eq!(cycle[11], "a091 1");
    assert_eq!(cycle[20], "a000 1");
}

#[test]
fn a_long_dependency_cycle_is_ordered_with_its_pre_depends_first() {
    // 2,000 packages in one Depends cycle; every 7th also pre-depends on the package 3 ahead.
    const N: usize = 2_000;
    let mut u = universe();
    for i in 0..N {
        let mut text = format!("Package: c{i:04}\nVersion: 1\nDepends: c{:04}", (i + 1) % N);
        if i % 7 == 0 {
            text.push_str(&format!("\nPre-Depends: c{:04}", (i + 3) % N));
        }
        avail(&mut u, &text);
    }
    let p = plan(&u, &["c0000"]);
    assert_eq!(p.steps.len(), N);
    for i in (0..N).step_by(7) {
        let target = format!("c{:04}", (i + 3) % N);
        assert!(
            position(&p, &target) < position(&p, &format!("c{i:04}")),
            "c{i:04} before its Pre-Depends {target}"
        );
    }
    assert_eq!(plan(&u, &["c0000"]), p, "deterministic");
}

#[test]
fn wide_alternatives_cost_work_linear_in_the_index() {
    // 20 packages whose Depends has 2,000 alternatives nothing provides and a last one that
    // exists; every group is looked at a bounded number of times.
    let mut u = universe();
    let top: Vec<String> = (0..20).map(|i| format!("p{i}")).collect();
    avail(
        &mut u,
        &format!("Package: top\nVersion: 1\nDepends: {}", top.join(", ")),
    );
    for i in 0..20 {
        avail(
            &mut u,
            &format!(
                "Package: p{i}\nVersion: 1\nDepends: {} | ok",
                alternatives(&format!("m{i}x"), 2_000)
            ),
        );
    }
    avail(&mut u, "Package: ok\nVersion: 1");
    let alternatives_in_index = 20 * 2_001;
    let (result, counts) = counted(&u, &["top"]);
    assert_eq!(result.map(|p| p.steps.len()), Ok(22));
    assert!(
        counts.checks <= 3 * alternatives_in_index,
        "{counts:?} for {alternatives_in_index} alternatives"
    );
}

#[test]
fn a_conflict_with_every_alternative_is_found_without_rescanning_it() {
    // w conflicts with each of the 3,000 alternatives of p: each try hits one conflict
    // through the index by name, instead of scanning w's 3,000 Conflicts (9 million checks).
    let mut u = universe();
    avail(&mut u, "Package: top\nVersion: 1\nDepends: p, w");
    avail(
        &mut u,
        &format!(
            "Package: p\nVersion: 1\nDepends: {}",
            alternatives("q", 3_000)
        ),
    );
    for j in 0..3_000 {
        avail(&mut u, &format!("Package: q{j}\nVersion: 1"));
    }
    let conflicts: Vec<String> = (0..3_000).map(|j| format!("q{j}")).collect();
    avail(
        &mut u,
        &format!(
            "Package: w\nVersion: 1\nConflicts: {}",
            conflicts.join(", ")
        ),
    );
    let (result, counts) = counted(&u, &["top"]);
    assert_eq!(
        result.unwrap_err().to_string(),
        "cannot install top: top 1 depends on p, p 1 depends on q0 | q1 | q2 | q3 | q4 | … and \
         2995 more, but w 1 conflicts with q0 1"
    );
    assert!(counts.checks <= 20 * 3_000, "{counts:?}");
}

/// An early choice (c: r0 | … | r{k-1}) whose every option but the last fails late, after
/// the `n` groups of `a` alternatives queued behind it were evaluated again: k × n × a checks
/// in all, from an index of about k + n × a relations.
fn reevaluation_universe(k: usize, n: usize, a: usize) -> Universe {
    let mut u = universe();
    let mut top = vec!["c".to_string()];
    top.extend((0..n).map(|i| format!("p{i}")));
    avail(
        &mut u,
        &format!("Package: top\nVersion: 1\nDepends: {}", top.join(", ")),
    );
    avail(
        &mut u,
        &format!("Package: c\nVersion: 1\nDepends: {}", alternatives("r", k)),
    );
    for j in 0..k {
        avail(&mut u, &format!("Package: r{j}\nVersion: 1\nDepends: y"));
    }
    let conflicts: Vec<String> = (0..k - 1).map(|j| format!("r{j}")).collect();
    avail(
        &mut u,
        &format!(
            "Package: y\nVersion: 1\nConflicts: {}",
            conflicts.join(", ")
        ),
    );
    for j in 0..a {
        avail(&mut u, &format!("Package: m{j}\nVersion: 1"));
    }
    let wide: Vec<String> = (0..a).map(|j| format!("m{j} (>= 2)")).collect();
    for i in 0..n {
        avail(
            &mut u,
            &format!(
                "Package: p{i}\nVersion: 1\nDepends: {} | ok",
                wide.join(" | ")
            ),
        );
    }
    avail(&mut u, "Package: ok\nVersion: 1");
    u
}

#[test]
fn re_evaluation_behind_an_early_choice_is_cut_off_by_the_work_budget() {
    let mut u = reevaluation_universe(200, 10, 200);
    // Within the default budget the search finds the one solution (r199)…
    let (result, counts) = counted(&u, &["top"]);
    let plan = result.unwrap();
    assert!(plan.steps.iter().any(|s| s.name() == "r199"));
    assert!(counts.checks > 200 * 10 * 200, "{counts:?}");
    assert!(counts.checks < DEFAULT_WORK_BUDGET, "{counts:?}");
    // …and with a budget smaller than what it needs, it gives up cleanly, right at the budget,
    // with the closest failure.
    u.set_work_budget(100_000);
    let (result, counts) = counted(&u, &["top"]);
    let e = result.unwrap_err();
    let ResolveError::TooMuchWork {
        steps,
        checks,
        closest,
    } = &e
    else {
        panic!("expected TooMuchWork, got {e}");
    };
    assert_eq!((*steps, *checks), (counts.steps, counts.checks));
    assert!((100_001..100_000 + 1_000).contains(checks), "{counts:?}");
    assert_eq!(
        closest.as_deref(),
        Some(
            "cannot install top: top 1 depends on c, c 1 depends on r0 | r1 | r2 | r3 | r4 | … \
             and 195 more, r0 1 depends on y, but y 1 conflicts with r0 1"
        )
    );
    let message = e.to_string();
    assert!(
        message.starts_with(&format!(
            "dependency resolution gave up after {steps} steps and {checks} relation checks \
             (the work budget): the feeds' relations are too large to resolve; the closest it \
             came: cannot install top: "
        )),
        "{message}"
    );
}

#[test]
fn the_work_budget_holds_without_any_failure_to_report() {
    // A plan too big for the budget: no failure was seen, so there is no "closest".
    let mut u = universe();
    let deps: Vec<String> = (0..500).map(|i| format!("d{i}")).collect();
    avail(
        &mut u,
        &format!("Package: top\nVersion: 1\nDepends: {}", deps.join(", ")),
    );
    for i in 0..500 {
        avail(&mut u, &format!("Package: d{i}\nVersion: 1"));
    }
    u.set_work_budget(1_000);
    let e = failure(&u, &["top"]);
    assert!(
        matches!(e, ResolveError::TooMuchWork { closest: None, .. }),
        "{e}"
    );
    assert!(
        e.to_string()
            .ends_with("(the work budget): the feeds' relations are too large to resolve"),
        "{e}"
    );
}

#[test]
fn many_versions_of_one_name_are_sorted_once() {
    let mut u = universe();
    // Added oldest first: insertion into a sorted list would move every earlier one.
    for v in 0..20_000 {
        avail(&mut u, &format!("Package: b\nVersion: 1.{v}"));
    }
    avail(&mut u, "Package: a\nVersion: 1\nDepends: b (<< 1.10000)");
    let (result, counts) = counted(&u, &["a"]);
    assert_eq!(steps(&result.unwrap()), ["b 1.9999", "a 1"]);
    assert!(counts.checks <= 3 * 20_000, "{counts:?}");
}

#[test]
fn ordinary_resolutions_stay_far_below_the_work_budget() {
    let mut u = universe();
    for i in 0..2000 {
        let mut text = format!("Package: lib{i}\nVersion: 1.{i}-1");
        let mut depends = Vec::new();
        if i > 0 {
            depends.push(format!("lib{} (>= 1.{})", i - 1, i - 1));
        }
        if i % 10 == 0 && i > 0 {
            depends.push(format!("nothere{i} | lib{}", i / 2));
        }
        if !depends.is_empty() {
            text.push_str(&format!("\nDepends: {}", depends.join(", ")));
        }
        avail(&mut u, &text);
    }
    let (result, counts) = counted(&u, &["lib1999"]);
    assert_eq!(result.unwrap().steps.len(), 2000);
    assert_eq!(counts.steps, 2000);
    // About five checks per package of the plan.
    assert!(counts.checks < 10 * 2000, "{counts:?}");
}

#[test]
fn stanzas_and_assumptions_added_after_a_resolution_count_for_the_next() {
    let mut u = universe();
    avail(&mut u, "Package: a\nVersion: 1\nDepends: b (>= 2), libc");
    assert!(
        failure(&u, &["a"])
            .to_string()
            .contains("b is not in any feed")
    );
    avail(&mut u, "Package: b\nVersion: 2");
    assert!(
        failure(&u, &["a"])
            .to_string()
            .contains("libc is not in any feed")
    );
    u.assume_installed("libc");
    assert_eq!(steps(&plan(&u, &["a"])), ["b 2", "a 1"]);
    avail(&mut u, "Package: b\nVersion: 3");
    assert_eq!(steps(&plan(&u, &["a"])), ["b 3", "a 1"]);
}

/// An interner whose table was dropped still finds every text (slowly) and, at its next
/// intern, makes the table again without numbering a known text twice.
#[test]
fn interner_without_its_table_keeps_every_id() {
    let mut i = universe::Interner::default();
    let texts: Vec<String> = (0..1000).map(|n| format!("name-{n}")).collect();
    for (n, t) in texts.iter().enumerate() {
        assert_eq!(i.intern(t), Some(n as u32));
    }
    i.drop_table();
    assert_eq!(i.get("name-999"), Some(999));
    assert_eq!(i.get("absent"), None);
    assert_eq!(i.intern("name-5"), Some(5));
    assert_eq!(i.intern("new"), Some(1000));
    for (n, t) in texts.iter().enumerate() {
        assert_eq!((i.get(t), i.text(n as u32)), (Some(n as u32), t.as_str()));
    }
    assert_eq!(i.len(), 1001);
}

/// Reading more stanzas after `finish_reading` numbers their versions and names as before.
#[test]
fn stanzas_read_after_finish_reading_resolve_alike() {
    let mut u = universe();
    let mut v = universe();
    for u in [&mut u, &mut v] {
        avail(u, "Package: base\nVersion: 1.0\n");
        avail(u, "Package: base\nVersion: 0.9\n");
    }
    u.finish_reading();
    for u in [&mut u, &mut v] {
        avail(
            u,
            "Package: late\nVersion: 2.0\nDepends: base (>= 1.0), gone\n",
        );
        avail(u, "Package: gone\nVersion: 1.0\nDepends: base (= 0.9)\n");
        avail(u, "Package: gone\nVersion: 0.5\n");
    }
    for names in [&["late"][..], &["late", "base=1.0"][..]] {
        assert_eq!(steps(&plan(&u, names)), steps(&plan(&v, names)));
    }
}

/// Packed requests give back each one as written, in order: empty ones, pinned ones and
/// non-ASCII text (checked later, by the resolution) included; no request is not one empty.
#[test]
fn request_list_gives_back_each_request_as_written() {
    let names = ["", "a", "b=1.0-r1", "", "ünïcode", "c=="];
    let list = RequestList::new(names.iter().map(|s| s.to_string()).collect());
    assert_eq!(list.len(), names.len());
    assert_eq!(list.iter().collect::<Vec<_>>(), names);
    assert_eq!(list, RequestList::of(&names));
    assert_eq!(list.get(2).name(), "b");
    assert_eq!(list.get(2).version(), Some("1.0-r1"));
    assert_eq!(list.get(5).version(), Some("="));
    assert_eq!(list.get(0).label(), "");
    assert!(RequestList::new(Vec::new()).is_empty());
    let one_empty = RequestList::new(vec![String::new()]);
    assert_eq!(one_empty.iter().collect::<Vec<_>>(), [""]);
    let mut grown = RequestList::of(&names[..2]);
    for n in &names[2..] {
        grown.push(n);
    }
    assert_eq!(grown, list);
}
