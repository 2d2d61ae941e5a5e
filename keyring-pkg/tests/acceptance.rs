//! The acceptance rules of docs/trust-model.md §5, one test per rule or attack.

mod common;

use common::*;
use keyring_pkg::accept::{Refusal, accept_chain, check_self, check_step};
use keyring_pkg::signatures::NotCounted;
use keyring_pkg::{Role, SignedKeyring, Status};

#[test]
fn next_serial_signed_by_the_root_is_accepted() {
    let [root, a, b] = [key(), key(), key()];
    let k1 = keyring(1, &[&root], &[&a]);
    let k2 = next(&k1, |k| add(k, &b, Role::Feed));
    let one = signed(&k1, &[&root]);
    let two = signed(&k2, &[&root]);
    let v = accept_chain(&one, [&two], NOW).unwrap();
    assert_eq!(v.steps(), &[2]);
    assert_eq!(v.from_serial(), Some(1));
    assert!(v.is_update());
    assert_eq!(v.signed(), &two);
}

#[test]
fn rollback_to_lower_serial_is_refused() {
    let root = key();
    let k1 = keyring(1, &[&root], &[]);
    let k2 = next(&k1, |_| {});
    let k3 = next(&k2, |_| {});
    let (one, two, three) = (
        signed(&k1, &[&root]),
        signed(&k2, &[&root]),
        signed(&k3, &[&root]),
    );
    let err = accept_chain(&three, [&one, &two], NOW).unwrap_err();
    assert_eq!(
        err,
        Refusal::Rollback {
            name: "example".into(),
            trusted: 3,
            offered: 2
        }
    );
    assert_eq!(
        err.to_string(),
        "keyring example: offered serial 2 is older than the trusted serial 3 (rollback refused)"
    );
}

#[test]
fn fork_at_equal_serial_is_refused() {
    let [root, a, evil] = [key(), key(), key()];
    let k1 = keyring(1, &[&root], &[]);
    let k2 = next(&k1, |k| add(k, &a, Role::Feed));
    let k2_other = next(&k1, |k| add(k, &evil, Role::Feed));
    let two = signed(&k2, &[&root]);
    let two_other = signed(&k2_other, &[&root]);
    let err = accept_chain(&two, [&two_other], NOW).unwrap_err();
    assert_eq!(
        err.to_string(),
        "keyring example serial 2: the offered keyring differs from the trusted serial 2 (fork refused)"
    );
    assert!(matches!(err, Refusal::Fork { serial: 2, .. }));
}

#[test]
fn fork_in_the_offered_history_at_the_trusted_serial_is_refused() {
    let [root, a, evil] = [key(), key(), key()];
    let k1 = keyring(1, &[&root], &[]);
    let k2 = next(&k1, |k| add(k, &a, Role::Feed));
    let k2_other = next(&k1, |k| add(k, &evil, Role::Feed));
    let k3 = next(&k2_other, |_| {});
    let (two, two_other, three) = (
        signed(&k2, &[&root]),
        signed(&k2_other, &[&root]),
        signed(&k3, &[&root]),
    );
    // The package's history says serial 2 was something else: that branch is not ours.
    let err = accept_chain(&two, [&two_other, &three], NOW).unwrap_err();
    assert!(matches!(err, Refusal::Fork { serial: 2, .. }), "{err}");
}

#[test]
fn same_serial_and_bytes_is_already_current_even_with_other_signatures() {
    let [r1, r2] = [key(), key()];
    let k1 = keyring(1, &[&r1, &r2], &[]);
    let trusted = signed(&k1, &[&r1]);
    let offered = signed(&k1, &[&r1, &r2]);
    let v = accept_chain(&trusted, [&offered], NOW).unwrap();
    assert!(!v.is_update());
    assert!(v.steps().is_empty());
    assert_eq!(v.signed().serial(), 1);
}

#[test]
fn already_current_but_expired_keyring_is_refused() {
    let root = key();
    let k1 = keyring(1, &[&root], &[]);
    let one = signed(&k1, &[&root]);
    let later = NOW + 2 * YEAR;
    let err = accept_chain(&one, [&one], later).unwrap_err();
    assert!(matches!(err, Refusal::Expired { serial: 1, .. }), "{err}");
}

#[test]
fn conflicting_candidates_for_one_serial_are_refused() {
    let [root, a, b] = [key(), key(), key()];
    let k1 = keyring(1, &[&root], &[]);
    let x = signed(&next(&k1, |k| add(k, &a, Role::Feed)), &[&root]);
    let y = signed(&next(&k1, |k| add(k, &b, Role::Feed)), &[&root]);
    let one = signed(&k1, &[&root]);
    let err = accept_chain(&one, [&x, &y], NOW).unwrap_err();
    assert!(
        matches!(err, Refusal::ConflictingCandidates { serial: 2, .. }),
        "{err}"
    );
}

/// Serials 1..=5 of one keyring, each changing something, all signed by `root`.
fn five(root: &feeds::usign::SecretKey) -> Vec<SignedKeyring> {
    let feeds = keys(4);
    let mut k = keyring(1, &[root], &[&feeds[0]]);
    let mut out = vec![signed(&k, &[root])];
    for (i, f) in feeds.iter().enumerate().skip(1) {
        let prev = feeds[i - 1].fingerprint();
        k = next(&k, |k| {
            k.add_key(keyring_pkg::KeyEntry::new(&f.public_key(), Role::Feed))
                .unwrap();
            k.key_mut(prev).unwrap().status = Status::Retired;
        });
        out.push(signed(&k, &[root]));
    }
    k = next(&k, |_| {});
    out.push(signed(&k, &[root]));
    out
}

#[test]
fn jump_from_serial_1_to_5_walks_the_history() {
    let root = key();
    let chain = five(&root);
    // Offered in any order, with the trusted serial among them.
    let offered = [&chain[4], &chain[2], &chain[0], &chain[3], &chain[1]];
    let v = accept_chain(&chain[0], offered, NOW).unwrap();
    assert_eq!(v.steps(), &[2, 3, 4, 5]);
    assert_eq!(v.signed(), &chain[4]);
}

#[test]
fn missing_history_step_is_refused_naming_the_serial() {
    let root = key();
    let chain = five(&root);
    let err = accept_chain(&chain[0], [&chain[1], &chain[3], &chain[4]], NOW).unwrap_err();
    assert_eq!(
        err.to_string(),
        "keyring example: serial 3 is missing: cannot walk from the trusted serial 1 to the offered serial 5"
    );
}

#[test]
fn tampered_history_step_is_refused() {
    let root = key();
    let chain = five(&root);
    // Serial 3 altered after signing (a key's comment), signatures kept.
    let mut k3 = chain[2].keyring().clone();
    let fp = k3.keys().next().unwrap().fingerprint();
    k3.key_mut(fp).unwrap().comment = Some("swapped".into());
    let tampered = SignedKeyring::new(k3, chain[2].signatures().clone()).unwrap();
    let err =
        accept_chain(&chain[0], [&chain[1], &tampered, &chain[3], &chain[4]], NOW).unwrap_err();
    let Refusal::PreviousThresholdNotMet { serial, tally, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(*serial, 3);
    assert_eq!(
        tally.not_counted.get(&root.fingerprint()),
        Some(&NotCounted::BadSignature)
    );
}

#[test]
fn two_of_three_with_one_signature_is_refused() {
    let roots = keys(3);
    let r: Vec<&_> = roots.iter().collect();
    let k1 = keyring(2, &r, &[]);
    let k2 = next(&k1, |_| {});
    let one = signed(&k1, &[r[0], r[1]]);
    let err = accept_chain(&one, [&signed(&k2, &[r[0]])], NOW).unwrap_err();
    let mut all: Vec<String> = roots.iter().map(|k| k.fingerprint().to_string()).collect();
    all.sort();
    assert_eq!(
        err.to_string(),
        format!(
            "keyring example serial 2: signed by 1 of the 2 root keys required by serial 1 (have {}; need 2 of: {})",
            r[0].fingerprint(),
            all.join(", ")
        )
    );
}

#[test]
fn two_of_three_with_two_distinct_signatures_is_accepted() {
    let roots = keys(3);
    let r: Vec<&_> = roots.iter().collect();
    let k1 = keyring(2, &r, &[]);
    let k2 = next(&k1, |_| {});
    let one = signed(&k1, &[r[0], r[1]]);
    accept_chain(&one, [&signed(&k2, &[r[1], r[2]])], NOW).unwrap();
}

#[test]
fn two_of_three_signed_twice_by_the_same_key_counts_once() {
    let roots = keys(3);
    let r: Vec<&_> = roots.iter().collect();
    let k1 = keyring(2, &r, &[]);
    let k2 = next(&k1, |_| {});
    let one = signed(&k1, &[r[0], r[1]]);
    let twice = signed(&k2, &[r[2], r[2]]);
    assert_eq!(twice.signatures().len(), 2);
    let err = accept_chain(&one, [&twice], NOW).unwrap_err();
    assert!(
        matches!(&err, Refusal::PreviousThresholdNotMet { tally, .. } if tally.counted.len() == 1),
        "{err}"
    );
}

#[test]
fn replacing_two_of_three_roots_in_one_step_needs_old_and_new_thresholds() {
    let roots = keys(5);
    let r: Vec<&_> = roots.iter().collect();
    let k1 = keyring(2, &[r[0], r[1], r[2]], &[]);
    let one = signed(&k1, &[r[0], r[1]]);
    // Serial 2: roots 1 and 2 replaced by 3 and 4 (0 stays), still 2 of 3.
    let k2 = next(&k1, |k| {
        set_status(k, r[1], Status::Retired);
        set_status(k, r[2], Status::Retired);
        add(k, r[3], Role::Root);
        add(k, r[4], Role::Root);
    });
    // Only the new roots: the old keyring's threshold is not met.
    let err = accept_chain(&one, [&signed(&k2, &[r[3], r[4]])], NOW).unwrap_err();
    assert!(
        matches!(&err, Refusal::PreviousThresholdNotMet { tally, .. } if tally.serial == 1),
        "{err}"
    );
    // Only the old roots: the new keyring counts just root 0 (1 and 2 are retired there).
    let err = accept_chain(&one, [&signed(&k2, &[r[0], r[1], r[2]])], NOW).unwrap_err();
    assert!(
        matches!(&err, Refusal::OwnThresholdNotMet { tally, .. } if tally.counted.len() == 1),
        "{err}"
    );
    assert!(err.to_string().contains("it requires itself"), "{err}");
    // Old 1 + 2 and new 3 + 4: both thresholds met by disjoint sets of keys.
    accept_chain(&one, [&signed(&k2, &[r[1], r[2], r[3], r[4]])], NOW).unwrap();
    // Old 1 + 2 and new 3 alone: the new threshold is not.
    let err = accept_chain(&one, [&signed(&k2, &[r[1], r[2], r[3]])], NOW).unwrap_err();
    assert!(matches!(err, Refusal::OwnThresholdNotMet { .. }), "{err}");
    // Root 0 is in both: with root 1 (old) and root 4 (new) each threshold is met.
    accept_chain(&one, [&signed(&k2, &[r[0], r[1], r[4]])], NOW).unwrap();
}

#[test]
fn raising_the_threshold_needs_the_new_threshold_of_signatures() {
    let [r1, r2] = [key(), key()];
    let k1 = keyring(1, &[&r1, &r2], &[]);
    let k2 = next(&k1, |k| k.set_root_threshold(2));
    let one = signed(&k1, &[&r1]);
    let err = accept_chain(&one, [&signed(&k2, &[&r1])], NOW).unwrap_err();
    assert!(matches!(err, Refusal::OwnThresholdNotMet { .. }), "{err}");
    accept_chain(&one, [&signed(&k2, &[&r1, &r2])], NOW).unwrap();
}

#[test]
fn reactivating_a_revoked_key_is_refused() {
    let [root, a] = [key(), key()];
    let k1 = keyring(1, &[&root], &[&a]);
    let k2 = next(&k1, |k| set_status(k, &a, Status::Revoked));
    let k3 = next(&k2, |k| set_status(k, &a, Status::Active));
    let two = signed(&k2, &[&root]);
    let err = accept_chain(&two, [&signed(&k3, &[&root])], NOW).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "keyring example serial 3: key {}, revoked in serial 2, is active again (revocation is sticky)",
            a.fingerprint()
        )
    );
    let k3 = next(&k2, |k| set_status(k, &a, Status::Retired));
    let err = accept_chain(&two, [&signed(&k3, &[&root])], NOW).unwrap_err();
    assert!(
        matches!(
            err,
            Refusal::RevokedKeyReinstated {
                status: Status::Retired,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn dropping_a_revocation_is_refused() {
    let [root, a] = [key(), key()];
    let k1 = keyring(1, &[&root], &[&a]);
    let k2 = next(&k1, |k| set_status(k, &a, Status::Revoked));
    let k3 = next(&k2, |k| {
        k.remove_key(a.fingerprint());
    });
    let err = accept_chain(&signed(&k2, &[&root]), [&signed(&k3, &[&root])], NOW).unwrap_err();
    assert!(matches!(err, Refusal::RevokedKeyDropped { .. }), "{err}");
    // A retired key may be dropped.
    let k2 = next(&k1, |k| set_status(k, &a, Status::Retired));
    let k3 = next(&k2, |k| {
        k.remove_key(a.fingerprint());
    });
    accept_chain(&signed(&k2, &[&root]), [&signed(&k3, &[&root])], NOW).unwrap();
}

#[test]
fn keyring_signed_only_by_a_feed_key_is_refused() {
    let [root, feed, evil] = [key(), key(), key()];
    let k1 = keyring(1, &[&root], &[&feed]);
    let k2 = next(&k1, |k| add(k, &evil, Role::Feed));
    let err = accept_chain(&signed(&k1, &[&root]), [&signed(&k2, &[&feed])], NOW).unwrap_err();
    let Refusal::PreviousThresholdNotMet { tally, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(
        tally.not_counted.get(&feed.fingerprint()),
        Some(&NotCounted::NotRootKey(Role::Feed))
    );
    assert!(
        err.to_string().contains("(a feed key, not a root key)"),
        "{err}"
    );
}

#[test]
fn feed_key_promoted_to_root_by_itself_is_refused() {
    // The new keyring makes the feed key a root and is signed by it alone: the old roots did
    // not sign, so the step fails whatever the new keyring claims.
    let [root, feed] = [key(), key()];
    let k1 = keyring(1, &[&root], &[&feed]);
    let k2 = next(&k1, |k| {
        k.key_mut(feed.fingerprint()).unwrap().role = Role::Root
    });
    let err = accept_chain(&signed(&k1, &[&root]), [&signed(&k2, &[&feed])], NOW).unwrap_err();
    assert!(
        matches!(err, Refusal::PreviousThresholdNotMet { .. }),
        "{err}"
    );
}

#[test]
fn keyring_signed_by_a_revoked_root_is_refused() {
    let [r1, r2] = [key(), key()];
    let k1 = keyring(1, &[&r1, &r2], &[]);
    let k2 = next(&k1, |k| set_status(k, &r1, Status::Revoked));
    let two = signed(&k2, &[&r1, &r2]);
    accept_chain(&signed(&k1, &[&r1]), [&two], NOW).unwrap();
    // Whoever holds the revoked r1 now signs a serial 3 adding their own feed key.
    let evil = key();
    let k3 = next(&k2, |k| add(k, &evil, Role::Feed));
    let err = accept_chain(&two, [&signed(&k3, &[&r1])], NOW).unwrap_err();
    let Refusal::PreviousThresholdNotMet { tally, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(
        tally.not_counted.get(&r1.fingerprint()),
        Some(&NotCounted::Revoked)
    );
}

#[test]
fn keyring_signed_by_an_unknown_key_is_refused() {
    let [root, stranger] = [key(), key()];
    let k1 = keyring(1, &[&root], &[]);
    let k2 = next(&k1, |_| {});
    let err = accept_chain(&signed(&k1, &[&root]), [&signed(&k2, &[&stranger])], NOW).unwrap_err();
    assert!(err.to_string().contains("(unknown key)"), "{err}");
}

#[test]
fn keyring_signed_by_an_expired_root_is_refused() {
    let [r1, r2] = [key(), key()];
    let mut k1 = keyring(1, &[&r1, &r2], &[]);
    k1.key_mut(r1.fingerprint()).unwrap().not_after = Some(NOW - DAY);
    let k2 = next(&k1, |_| {});
    let err = accept_chain(&signed(&k1, &[&r2]), [&signed(&k2, &[&r1])], NOW).unwrap_err();
    assert!(err.to_string().contains("expired on"), "{err}");
    accept_chain(&signed(&k1, &[&r2]), [&signed(&k2, &[&r2])], NOW).unwrap();
}

#[test]
fn expired_keyring_is_refused() {
    let root = key();
    let k1 = keyring(1, &[&root], &[]);
    let k2 = next(&k1, |k| k.set_expires(NOW - 1));
    let err = accept_chain(&signed(&k1, &[&root]), [&signed(&k2, &[&root])], NOW).unwrap_err();
    assert!(
        matches!(err, Refusal::Expired { serial: 2, expires, now, .. } if expires == NOW - 1 && now == NOW),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("keyring example serial 2: expired on")
    );
}

#[test]
fn expired_intermediate_serial_does_not_block_the_walk() {
    // Serial 2 expired while the client was offline; serial 3 is current. The walk goes on:
    // only the keyring that becomes trusted must be unexpired.
    let root = key();
    let k1 = keyring(1, &[&root], &[]);
    let k2 = next(&k1, |k| {
        k.set_date(NOW - 30 * DAY);
        k.set_expires(NOW - DAY);
    });
    let k3 = next(&k2, |k| k.set_expires(NOW + YEAR));
    let v = accept_chain(
        &signed(&k1, &[&root]),
        [&signed(&k2, &[&root]), &signed(&k3, &[&root])],
        NOW,
    )
    .unwrap();
    assert_eq!(v.steps(), &[2, 3]);
}

#[test]
fn renamed_keyring_is_refused() {
    let root = key();
    let k1 = keyring(1, &[&root], &[]);
    let mut other = keyring_pkg::Keyring::new("other", 2, NOW, NOW + YEAR, 1).unwrap();
    add(&mut other, &root, Role::Root);
    let err = accept_chain(&signed(&k1, &[&root]), [&signed(&other, &[&root])], NOW).unwrap_err();
    assert!(matches!(err, Refusal::NameChanged { .. }), "{err}");
}

#[test]
fn changing_the_public_key_behind_a_fingerprint_is_refused() {
    let [root, a] = [key(), key()];
    let k1 = keyring(1, &[&root], &[&a]);
    let impostor = feeds::usign::SecretKey::from_seed([9; 32], a.fingerprint()).unwrap();
    let k2 = next(&k1, |k| {
        k.remove_key(a.fingerprint());
        add(k, &impostor, Role::Feed);
    });
    let err = accept_chain(&signed(&k1, &[&root]), [&signed(&k2, &[&root])], NOW).unwrap_err();
    assert!(matches!(err, Refusal::KeyMaterialChanged { .. }), "{err}");
}

#[test]
fn check_step_refuses_a_serial_gap() {
    let root = key();
    let k1 = keyring(1, &[&root], &[]);
    let k3 = next(&k1, |k| k.set_serial(3));
    let err = check_step(&signed(&k1, &[&root]), &signed(&k3, &[&root]), NOW).unwrap_err();
    assert_eq!(
        err.to_string(),
        "keyring example: serial 3 cannot follow serial 1 (expected serial 2)"
    );
}

#[test]
fn nothing_offered_is_refused() {
    let root = key();
    let one = signed(&keyring(1, &[&root], &[]), &[&root]);
    let err = accept_chain(&one, [], NOW).unwrap_err();
    assert!(matches!(err, Refusal::NothingOffered { .. }));
}

#[test]
fn check_self_needs_its_own_threshold_and_no_expiry() {
    let [r1, r2, feed] = [key(), key(), key()];
    let k = keyring(2, &[&r1, &r2], &[&feed]);
    check_self(&signed(&k, &[&r1, &r2]), NOW).unwrap();
    let err = check_self(&signed(&k, &[&r1, &feed]), NOW).unwrap_err();
    assert!(matches!(err, Refusal::OwnThresholdNotMet { .. }), "{err}");
    let err = check_self(&signed(&k, &[&r1, &r2]), NOW + 2 * YEAR).unwrap_err();
    assert!(matches!(err, Refusal::Expired { .. }), "{err}");
    let err = check_self(&SignedKeyring::new(k, no_sigs()).unwrap(), NOW).unwrap_err();
    assert!(err.to_string().contains("have none"), "{err}");
}
