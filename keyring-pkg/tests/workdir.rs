//! The maintainer's keyring directory: init, changes, the serial bump rule, signing, build.

mod common;

use std::fs;

use common::*;
use keyring_pkg::Role;
use keyring_pkg::accept::{Refusal, check_self};
use keyring_pkg::package::BuildError;
use keyring_pkg::workdir::{self, Workdir, WorkdirError};

fn files(dir: &std::path::Path) -> Vec<String> {
    let mut out: Vec<String> = snapshot(dir).into_keys().collect();
    out.sort();
    out
}

#[test]
fn init_writes_serial_1_signed_by_every_root() {
    let dir = tempfile::tempdir().unwrap();
    let [r1, r2, feed] = [key(), key(), key()];
    let signed = workdir::init(
        dir.path(),
        "example",
        &[r1.clone(), r2.clone()],
        &[feed.public_key()],
        2,
        YEAR as u64,
        NOW,
    )
    .unwrap();
    assert_eq!(signed.serial(), 1);
    assert_eq!(signed.keyring().expires(), NOW + YEAR);
    check_self(&signed, NOW).unwrap();
    assert_eq!(files(dir.path()), ["keyring", "keyring.sig"]);
    let wd = Workdir::open(dir.path()).unwrap();
    assert_eq!(wd.current(), &signed);
    assert!(wd.is_complete());
    // No second init over it.
    let err = workdir::init(dir.path(), "example", &[r1], &[], 1, 1, NOW).unwrap_err();
    assert!(
        matches!(err, WorkdirError::AlreadyInitialized { .. }),
        "{err}"
    );
}

#[test]
fn init_refuses_a_threshold_above_the_roots_and_no_roots() {
    let dir = tempfile::tempdir().unwrap();
    let err = workdir::init(dir.path(), "example", &[key()], &[], 2, 1000, NOW).unwrap_err();
    assert!(
        err.to_string()
            .contains("Root-Threshold 2 is more than the 1 active root keys"),
        "{err}"
    );
    let err = workdir::init(dir.path(), "example", &[], &[], 1, 1000, NOW).unwrap_err();
    assert!(matches!(err, WorkdirError::NoRootKeys));
    assert!(!dir.path().join("keyring").exists());
}

#[test]
fn a_change_after_signing_archives_and_bumps_once_then_edits_the_draft_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let [root, a, b, c] = [key(), key(), key(), key()];
    workdir::init(
        d,
        "example",
        std::slice::from_ref(&root),
        &[a.public_key()],
        1,
        YEAR as u64,
        NOW,
    )
    .unwrap();
    let serial1 = fs::read(d.join("keyring")).unwrap();
    let sig1 = fs::read(d.join("keyring.sig")).unwrap();

    let change = workdir::add_key(d, Role::Feed, &b.public_key(), NOW + DAY).unwrap();
    assert_eq!(change.serial, 2);
    assert_eq!(change.archived, Some(1));
    assert_eq!(fs::read(d.join("history/1.keyring")).unwrap(), serial1);
    assert_eq!(fs::read(d.join("history/1.sig")).unwrap(), sig1);
    assert!(fs::read(d.join("keyring.sig")).unwrap().is_empty());

    // A second change before anyone signs: same serial, edited in place.
    let change = workdir::add_key(d, Role::Feed, &c.public_key(), NOW + 2 * DAY).unwrap();
    assert_eq!(change.serial, 2);
    assert_eq!(change.archived, None);
    let change = workdir::retire(d, a.fingerprint(), NOW + 2 * DAY).unwrap();
    assert_eq!(change.serial, 2);
    let wd = Workdir::open(d).unwrap();
    let k = wd.current().keyring();
    assert_eq!(k.date(), NOW + 2 * DAY);
    assert_eq!(k.expires(), NOW + 2 * DAY + YEAR, "the lifetime is kept");
    assert_eq!(wd.history().keys().copied().collect::<Vec<_>>(), [1]);

    // Signing never bumps; the next change after it does.
    let s = workdir::sign(d, &root, NOW + 3 * DAY).unwrap();
    assert_eq!(s.serial, 2);
    assert!(s.own.is_met());
    assert!(s.previous.as_ref().unwrap().is_met());
    assert_eq!(Workdir::open(d).unwrap().current().serial(), 2);
    let change = workdir::revoke(d, a.fingerprint(), NOW + 4 * DAY).unwrap();
    assert_eq!((change.serial, change.archived), (3, Some(2)));
    assert_eq!(
        files(d),
        [
            "history",
            "history/1.keyring",
            "history/1.sig",
            "history/2.keyring",
            "history/2.sig",
            "keyring",
            "keyring.sig"
        ]
    );
}

#[test]
fn signing_twice_with_one_key_replaces_its_signature() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let [r1, r2] = [key(), key()];
    workdir::init(
        d,
        "example",
        std::slice::from_ref(&r1),
        &[],
        1,
        YEAR as u64,
        NOW,
    )
    .unwrap();
    workdir::add_key(d, Role::Root, &r2.public_key(), NOW).unwrap();
    let first = workdir::sign(d, &r1, NOW).unwrap();
    assert!(!first.replaced);
    let again = workdir::sign(d, &r1, NOW).unwrap();
    assert!(again.replaced);
    let wd = Workdir::open(d).unwrap();
    assert_eq!(wd.current().signatures().len(), 1);
    workdir::sign(d, &r2, NOW).unwrap();
    assert_eq!(Workdir::open(d).unwrap().current().signatures().len(), 2);
}

#[test]
fn a_partly_signed_draft_is_edited_in_place_and_its_signatures_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let [r1, r2, feed] = [key(), key(), key()];
    workdir::init(
        d,
        "example",
        &[r1.clone(), r2.clone()],
        &[],
        2,
        YEAR as u64,
        NOW,
    )
    .unwrap();
    workdir::add_key(d, Role::Feed, &feed.public_key(), NOW).unwrap();
    workdir::sign(d, &r1, NOW).unwrap(); // 1 of 2: not publishable, so still a draft
    let change = workdir::set_expires(d, 2 * YEAR as u64, NOW + DAY).unwrap();
    assert_eq!(change.serial, 2);
    assert_eq!(change.archived, None);
    assert_eq!(change.discarded_signatures, vec![r1.fingerprint()]);
    assert!(Workdir::open(d).unwrap().current().signatures().is_empty());
}

#[test]
fn revoke_of_an_unknown_fingerprint_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let root = key();
    workdir::init(d, "example", &[root], &[], 1, YEAR as u64, NOW).unwrap();
    let before = snapshot(d);
    let stranger = key().fingerprint();
    let err = workdir::revoke(d, stranger, NOW).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("keyring example serial 1 has no key {stranger}")
    );
    assert_eq!(snapshot(d), before, "a refused change writes nothing");
}

#[test]
fn re_adding_a_revoked_key_is_an_error_even_after_it_left_the_keyring() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let [root, a] = [key(), key()];
    workdir::init(
        d,
        "example",
        std::slice::from_ref(&root),
        &[a.public_key()],
        1,
        YEAR as u64,
        NOW,
    )
    .unwrap();
    workdir::revoke(d, a.fingerprint(), NOW).unwrap();
    let err = workdir::add_key(d, Role::Feed, &a.public_key(), NOW).unwrap_err();
    assert!(matches!(err, WorkdirError::RevokedForever { .. }), "{err}");
    let err = workdir::revoke(d, a.fingerprint(), NOW).unwrap_err();
    assert!(matches!(err, WorkdirError::AlreadyRevoked { .. }), "{err}");
    let err = workdir::retire(d, a.fingerprint(), NOW).unwrap_err();
    assert!(matches!(err, WorkdirError::RetireRevoked { .. }), "{err}");
    let err = workdir::add_key(d, Role::Feed, &root.public_key(), NOW).unwrap_err();
    assert!(matches!(err, WorkdirError::AlreadyPresent { .. }), "{err}");
}

#[test]
fn retiring_a_root_below_the_threshold_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let [r1, r2] = [key(), key()];
    workdir::init(d, "example", &[r1.clone(), r2], &[], 2, YEAR as u64, NOW).unwrap();
    let before = snapshot(d);
    let err = workdir::retire(d, r1.fingerprint(), NOW).unwrap_err();
    assert!(
        err.to_string()
            .contains("Root-Threshold 2 is more than the 1 active root keys"),
        "{err}"
    );
    assert_eq!(snapshot(d), before);
    // Lower the threshold first, in the same draft, then retire.
    workdir::set_threshold(d, 1, NOW).unwrap();
    let change = workdir::retire(d, r1.fingerprint(), NOW).unwrap();
    assert_eq!(change.serial, 2);
    let err = workdir::set_threshold(d, 1, NOW).unwrap_err();
    assert!(matches!(err, WorkdirError::Unchanged { .. }), "{err}");
}

#[test]
fn only_active_roots_of_this_or_the_previous_serial_may_sign() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let [r1, r2, feed] = [key(), key(), key()];
    workdir::init(
        d,
        "example",
        std::slice::from_ref(&r1),
        &[feed.public_key()],
        1,
        YEAR as u64,
        NOW,
    )
    .unwrap();
    let err = workdir::sign(d, &feed, NOW).unwrap_err();
    assert!(matches!(err, WorkdirError::NotASigner { .. }), "{err}");
    // Hand the keyring over from r1 to r2: r1 leaves in serial 2 but must sign the step.
    workdir::add_key(d, Role::Root, &r2.public_key(), NOW).unwrap();
    workdir::retire(d, r1.fingerprint(), NOW).unwrap();
    workdir::sign(d, &r1, NOW).unwrap();
    let s = workdir::sign(d, &r2, NOW).unwrap();
    assert!(s.own.is_met() && s.previous.unwrap().is_met());
    let impostor = feeds::usign::SecretKey::from_seed([7; 32], r2.fingerprint()).unwrap();
    let err = workdir::sign(d, &impostor, NOW).unwrap_err();
    assert!(
        matches!(err, WorkdirError::SignerKeyMismatch { .. }),
        "{err}"
    );
}

#[test]
fn build_refuses_a_keyring_below_its_own_threshold_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let d = dir.path();
    let [r1, r2] = [key(), key()];
    workdir::init(
        d,
        "example",
        std::slice::from_ref(&r1),
        &[],
        1,
        YEAR as u64,
        NOW,
    )
    .unwrap();
    workdir::add_key(d, Role::Root, &r2.public_key(), NOW).unwrap();
    workdir::set_threshold(d, 2, NOW).unwrap();
    workdir::sign(d, &r1, NOW).unwrap();
    let err = workdir::build(d, out.path(), 0, NOW).unwrap_err();
    let WorkdirError::Build(BuildError::Refused { source, .. }) = &err else {
        panic!("{err}")
    };
    assert!(matches!(source, Refusal::OwnThresholdNotMet { .. }));
    assert!(
        err.to_string().starts_with(
            "refusing to build keyring example serial 2: keyring example serial 2: signed by 1 of the 2 root keys it requires itself"
        ),
        "{err}"
    );
    assert_eq!(fs::read_dir(out.path()).unwrap().count(), 0);
    workdir::sign(d, &r2, NOW).unwrap();
    let path = workdir::build(d, out.path(), 0, NOW).unwrap();
    assert_eq!(path.file_name().unwrap(), "example-keyring_2_all.ipk");
}

#[test]
fn build_refuses_an_altered_history() {
    let dir = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let d = dir.path();
    let [root, a, evil] = [key(), key(), key()];
    workdir::init(
        d,
        "example",
        std::slice::from_ref(&root),
        &[a.public_key()],
        1,
        YEAR as u64,
        NOW,
    )
    .unwrap();
    workdir::add_key(d, Role::Feed, &key().public_key(), NOW).unwrap();
    workdir::sign(d, &root, NOW).unwrap();
    // Someone swaps the archived serial 1 for one signed by another key.
    let mut k1 = keyring(1, &[&evil], &[&a]);
    k1.set_date(NOW);
    let forged = signed(&k1, &[&evil]);
    fs::write(d.join("history/1.keyring"), forged.bytes()).unwrap();
    fs::write(d.join("history/1.sig"), forged.signatures().to_bytes()).unwrap();
    let err = workdir::build(d, out.path(), 0, NOW).unwrap_err();
    assert!(
        matches!(
            &err,
            WorkdirError::Build(BuildError::Refused {
                source: Refusal::PreviousThresholdNotMet { .. },
                ..
            })
        ),
        "{err}"
    );
    // A missing history file is named.
    fs::remove_file(d.join("history/1.sig")).unwrap();
    let err = workdir::build(d, out.path(), 0, NOW).unwrap_err();
    assert!(err.to_string().contains("history/1.sig: missing"), "{err}");
}

#[test]
fn show_summarises_keys_signatures_and_publishability() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let [r1, r2, feed] = [key(), key(), key()];
    workdir::init(
        d,
        "example",
        &[r1.clone(), r2.clone()],
        &[feed.public_key()],
        2,
        YEAR as u64,
        NOW,
    )
    .unwrap();
    let s = workdir::show(d, NOW).unwrap();
    assert_eq!(s.serial, 1);
    assert!(s.publishable.is_ok());
    assert_eq!(s.keys.iter().filter(|k| k.signed).count(), 2);
    let text = s.to_string();
    assert!(text.starts_with("keyring example serial 1\n"), "{text}");
    assert!(text.contains("publishable: yes"), "{text}");
    workdir::retire(d, feed.fingerprint(), NOW).unwrap();
    workdir::sign(d, &r1, NOW).unwrap();
    let s = workdir::show(d, NOW).unwrap();
    assert_eq!(s.history, vec![1]);
    let text = s.to_string();
    assert!(
        text.contains("publishable: no: keyring example serial 2: signed by 1 of the 2 root keys required by serial 1"),
        "{text}"
    );
    assert!(
        text.contains(&format!("{} feed retired", feed.fingerprint())),
        "{text}"
    );
}

#[test]
fn a_change_interrupted_between_manifest_and_signatures_leaves_a_draft() {
    // Simulate the crash: the new manifest is written, keyring.sig still holds the blocks of
    // the previous serial. Those blocks do not verify, so the directory is a draft; the next
    // signature drops them.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let [r1, r2, b] = [key(), key(), key()];
    workdir::init(
        d,
        "example",
        &[r1.clone(), r2.clone()],
        &[],
        1,
        YEAR as u64,
        NOW,
    )
    .unwrap();
    let old_sig = fs::read(d.join("keyring.sig")).unwrap();
    workdir::add_key(d, Role::Feed, &b.public_key(), NOW).unwrap();
    fs::write(d.join("keyring.sig"), &old_sig).unwrap();
    let wd = Workdir::open(d).unwrap();
    assert_eq!(wd.current().serial(), 2);
    assert_eq!(wd.current().signatures().len(), 2);
    assert!(!wd.is_complete());
    let s = workdir::sign(d, &r1, NOW).unwrap();
    assert_eq!(s.own.counted.len(), 1);
    let wd = Workdir::open(d).unwrap();
    assert_eq!(
        wd.current().signatures().len(),
        1,
        "r2's stale block dropped"
    );
}

#[test]
fn a_change_interrupted_after_archiving_is_redone_cleanly() {
    // The crash left history/1.* (a copy of the current serial 1) and the old keyring.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let [root, b] = [key(), key()];
    workdir::init(
        d,
        "example",
        std::slice::from_ref(&root),
        &[],
        1,
        YEAR as u64,
        NOW,
    )
    .unwrap();
    fs::create_dir(d.join("history")).unwrap();
    fs::copy(d.join("keyring"), d.join("history/1.keyring")).unwrap();
    fs::copy(d.join("keyring.sig"), d.join("history/1.sig")).unwrap();
    assert_eq!(Workdir::open(d).unwrap().current().serial(), 1);
    let change = workdir::add_key(d, Role::Feed, &b.public_key(), NOW).unwrap();
    assert_eq!((change.serial, change.archived), (2, Some(1)));
    // A history entry that differs from the current serial is an altered history.
    let mut other = keyring(1, &[&root], &[&b]);
    other.set_date(NOW);
    fs::write(d.join("history/2.keyring"), other.to_bytes().unwrap()).unwrap();
    fs::write(d.join("history/2.sig"), b"").unwrap();
    let err = Workdir::open(d).unwrap_err();
    assert!(
        err.to_string()
            .contains("history/2.keyring: holds serial 1"),
        "{err}"
    );
}
