//! The trust rules of docs/trust-model.md §4–6: when a keyring is good enough to publish,
//! when a client may move from its trusted keyring to a newer one, and which feed keys it
//! then trusts.
//!
//! - [`check_self`]: a keyring is unexpired and signed by at least its own `Root-Threshold`
//!   distinct active, unexpired root keys (checked before building or publishing).
//! - [`check_step`]: serial n → n+1 is signed by at least `Root-Threshold(n)` distinct active,
//!   unexpired root keys of serial n **and** `Root-Threshold(n+1)` of serial n+1; the name is
//!   unchanged; every key revoked in n is still listed, still revoked, in n+1 (revocation is
//!   sticky); and no fingerprint changes its public key.
//! - [`accept_chain`]: from the trusted serial n to the newest offered serial m, walks n+1 … m
//!   with [`check_step`], then requires serial m to be unexpired. A lower m is a rollback, an
//!   equal m with other bytes (or an offered copy of serial n that differs from the trusted
//!   one) is a fork, a gap is a missing step; all refused.
//! - [`accept_initial`]: the first keyring, installed explicitly, optionally checked against a
//!   root fingerprint the user confirmed.
//! - [`feed_key_state`], [`trusted_feed_keys`], [`distrusted_keys`]: the answer `prokit update`
//!   needs.
//!
//! Time: every rule takes `now` (seconds since the epoch). Root keys whose `Not-After` is before
//! `now` never count. The `Expires` of intermediate serials walked through is not checked:
//! they were superseded by the serial after them, and only the keyring that becomes trusted must
//! be current (as TUF does for its root chain), so a client offline for longer than one
//! keyring's lifetime can still catch up.
//!
//! Every refusal is a [`Refusal`] variant whose message names the keyring, the serial and what
//! was expected.

use std::collections::BTreeMap;
use std::fmt;

use feeds::release::format_date;
use feeds::usign::{Fingerprint, PublicKey};

use crate::manifest::{Keyring, Role, Status};
use crate::signatures::{SignedKeyring, Tally};

/// Why a keyring was not accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("keyring {name} serial {serial}: expired on {} (now {})", format_date(*expires), format_date(*now))]
    Expired {
        name: String,
        serial: u64,
        expires: i64,
        now: i64,
    },
    #[error(
        "keyring {name} serial {serial}: signed by {} of the {} root keys it requires itself ({})",
        tally.counted.len(), tally.threshold, tally.describe()
    )]
    OwnThresholdNotMet {
        name: String,
        serial: u64,
        tally: Box<Tally>,
    },
    #[error(
        "keyring {name} serial {serial}: signed by {} of the {} root keys required by serial {} ({})",
        tally.counted.len(), tally.threshold, tally.serial, tally.describe()
    )]
    PreviousThresholdNotMet {
        name: String,
        serial: u64,
        tally: Box<Tally>,
    },
    #[error("keyring {expected} serial {serial}: the offered keyring is named {found:?}")]
    NameChanged {
        expected: String,
        found: String,
        serial: u64,
    },
    #[error(
        "keyring {name}: serial {found} cannot follow serial {previous} (expected serial {})",
        previous.saturating_add(1)
    )]
    NotNextSerial {
        name: String,
        previous: u64,
        found: u64,
    },
    #[error(
        "keyring {name} serial {serial}: key {fingerprint}, revoked in serial {previous}, is {status} again (revocation is sticky)"
    )]
    RevokedKeyReinstated {
        name: String,
        serial: u64,
        previous: u64,
        fingerprint: Fingerprint,
        status: Status,
    },
    #[error(
        "keyring {name} serial {serial}: key {fingerprint}, revoked in serial {previous}, is no longer listed (revocations must stay listed)"
    )]
    RevokedKeyDropped {
        name: String,
        serial: u64,
        previous: u64,
        fingerprint: Fingerprint,
    },
    #[error(
        "keyring {name} serial {serial}: key {fingerprint} has a different public key than in serial {previous}"
    )]
    KeyMaterialChanged {
        name: String,
        serial: u64,
        previous: u64,
        fingerprint: Fingerprint,
    },
    #[error(
        "keyring {name}: offered serial {offered} is older than the trusted serial {trusted} (rollback refused)"
    )]
    Rollback {
        name: String,
        trusted: u64,
        offered: u64,
    },
    #[error(
        "keyring {name} serial {serial}: the offered keyring differs from the trusted serial {serial} (fork refused)"
    )]
    Fork { name: String, serial: u64 },
    #[error("keyring {name} serial {serial}: two different keyrings offered for the same serial")]
    ConflictingCandidates { name: String, serial: u64 },
    #[error(
        "keyring {name}: serial {missing} is missing: cannot walk from the trusted serial {trusted} to the offered serial {offered}"
    )]
    MissingStep {
        name: String,
        missing: u64,
        trusted: u64,
        offered: u64,
    },
    #[error("keyring {name}: no keyring offered")]
    NothingOffered { name: String },
    #[error("keyring {name} serial {serial}: the confirmed root key {fingerprint} {problem}")]
    RootNotConfirmed {
        name: String,
        serial: u64,
        fingerprint: Fingerprint,
        problem: RootProblem,
    },
}

/// Why a root fingerprint given at bootstrap does not vouch for a keyring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RootProblem {
    /// The keyring does not list it as an active, unexpired root key.
    NotAnActiveRoot,
    /// It is an active root key, but it did not (validly) sign the keyring.
    DidNotSign,
}

impl fmt::Display for RootProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RootProblem::NotAnActiveRoot => "is not one of its active, unexpired root keys",
            RootProblem::DidNotSign => "did not sign it",
        })
    }
}

fn expiry(k: &SignedKeyring, now: i64) -> Result<(), Refusal> {
    if k.keyring().is_expired(now) {
        return Err(Refusal::Expired {
            name: k.name().into(),
            serial: k.serial(),
            expires: k.keyring().expires(),
            now,
        });
    }
    Ok(())
}

fn own_threshold(k: &SignedKeyring, now: i64) -> Result<(), Refusal> {
    let tally = k.tally(now);
    if !tally.is_met() {
        return Err(Refusal::OwnThresholdNotMet {
            name: k.name().into(),
            serial: k.serial(),
            tally: Box::new(tally),
        });
    }
    Ok(())
}

/// A keyring meets its own rules: not expired, and signed by at least `Root-Threshold` of its
/// own distinct active, unexpired root keys. Used before building or publishing a keyring.
pub fn check_self(keyring: &SignedKeyring, now: i64) -> Result<(), Refusal> {
    expiry(keyring, now)?;
    own_threshold(keyring, now)
}

/// The rule for one step `old` (serial n) → `new` (serial n+1); see the module documentation.
/// Expiry of `new` is not part of the step (see [`accept_chain`]).
pub fn check_step(old: &SignedKeyring, new: &SignedKeyring, now: i64) -> Result<(), Refusal> {
    let name = old.name();
    if new.name() != name {
        return Err(Refusal::NameChanged {
            expected: name.into(),
            found: new.name().into(),
            serial: new.serial(),
        });
    }
    if old.serial().checked_add(1) != Some(new.serial()) {
        return Err(Refusal::NotNextSerial {
            name: name.into(),
            previous: old.serial(),
            found: new.serial(),
        });
    }
    let by_old = new.tally_by(old.keyring(), now);
    if !by_old.is_met() {
        return Err(Refusal::PreviousThresholdNotMet {
            name: name.into(),
            serial: new.serial(),
            tally: Box::new(by_old),
        });
    }
    own_threshold(new, now)?;
    for key in old.keyring().keys() {
        let fingerprint = key.fingerprint();
        let now_listed = new.keyring().key(fingerprint);
        if key.status == Status::Revoked {
            match now_listed {
                None => {
                    return Err(Refusal::RevokedKeyDropped {
                        name: name.into(),
                        serial: new.serial(),
                        previous: old.serial(),
                        fingerprint,
                    });
                }
                Some(k) if k.status != Status::Revoked => {
                    return Err(Refusal::RevokedKeyReinstated {
                        name: name.into(),
                        serial: new.serial(),
                        previous: old.serial(),
                        fingerprint,
                        status: k.status,
                    });
                }
                Some(_) => {}
            }
        }
        if let Some(k) = now_listed
            && k.public_key.as_bytes() != key.public_key.as_bytes()
        {
            return Err(Refusal::KeyMaterialChanged {
                name: name.into(),
                serial: new.serial(),
                previous: old.serial(),
                fingerprint,
            });
        }
    }
    Ok(())
}

/// A keyring that passed the rules, ready for [`crate::apply::apply`]. Only this module makes
/// one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    signed: SignedKeyring,
    base: Option<(u64, [u8; 32])>,
    steps: Vec<u64>,
}

impl Verified {
    /// The accepted keyring.
    pub fn signed(&self) -> &SignedKeyring {
        &self.signed
    }

    pub fn keyring(&self) -> &Keyring {
        self.signed.keyring()
    }

    pub fn into_signed(self) -> SignedKeyring {
        self.signed
    }

    /// The serial it was accepted from (`None` for a first keyring).
    pub fn from_serial(&self) -> Option<u64> {
        self.base.map(|(serial, _)| serial)
    }

    /// The serials walked, in order (empty when already current or for a first keyring).
    pub fn steps(&self) -> &[u64] {
        &self.steps
    }

    /// True when this replaces the trusted keyring (false: "already at serial N").
    pub fn is_update(&self) -> bool {
        self.base.is_none() || !self.steps.is_empty()
    }

    /// The serial and manifest hash of the trusted keyring this was accepted from.
    pub(crate) fn base(&self) -> Option<(u64, [u8; 32])> {
        self.base
    }
}

/// Accepts the newest of `candidates` (history steps and the latest, in any order) over the
/// trusted keyring `current`; see the module documentation for the rules.
///
/// An offered keyring with the trusted serial and the same manifest bytes (its signature file
/// may differ) means "already current": the result has no steps and still must be unexpired.
pub fn accept_chain<'a>(
    current: &SignedKeyring,
    candidates: impl IntoIterator<Item = &'a SignedKeyring>,
    now: i64,
) -> Result<Verified, Refusal> {
    let name = current.name();
    let trusted = current.serial();
    let mut by_serial: BTreeMap<u64, &SignedKeyring> = BTreeMap::new();
    for candidate in candidates {
        if candidate.name() != name {
            return Err(Refusal::NameChanged {
                expected: name.into(),
                found: candidate.name().into(),
                serial: candidate.serial(),
            });
        }
        if let Some(other) = by_serial.insert(candidate.serial(), candidate)
            && other.bytes() != candidate.bytes()
        {
            return Err(Refusal::ConflictingCandidates {
                name: name.into(),
                serial: candidate.serial(),
            });
        }
    }
    let Some((&offered, _)) = by_serial.last_key_value() else {
        return Err(Refusal::NothingOffered { name: name.into() });
    };
    if offered < trusted {
        return Err(Refusal::Rollback {
            name: name.into(),
            trusted,
            offered,
        });
    }
    if let Some(copy) = by_serial.get(&trusted)
        && copy.bytes() != current.bytes()
    {
        return Err(Refusal::Fork {
            name: name.into(),
            serial: trusted,
        });
    }
    let mut previous = current;
    let mut steps = Vec::new();
    for serial in trusted + 1..=offered {
        let Some(&next) = by_serial.get(&serial) else {
            return Err(Refusal::MissingStep {
                name: name.into(),
                missing: serial,
                trusted,
                offered,
            });
        };
        check_step(previous, next, now)?;
        steps.push(serial);
        previous = next;
    }
    expiry(previous, now)?;
    Ok(Verified {
        signed: previous.clone(),
        base: Some((trusted, current.sha256())),
        steps,
    })
}

/// Accepts a first keyring (explicit bootstrap of trust): it must pass [`check_self`], and when
/// the user confirmed a root fingerprint, that key must be one of its active, unexpired root
/// keys and must have validly signed it.
pub fn accept_initial(
    candidate: &SignedKeyring,
    confirmed_root: Option<Fingerprint>,
    now: i64,
) -> Result<Verified, Refusal> {
    check_self(candidate, now)?;
    if let Some(fingerprint) = confirmed_root {
        let problem = match candidate.keyring().key(fingerprint) {
            Some(k) if k.is_usable_as(Role::Root, now) => {
                (!candidate.tally(now).counted.contains(&fingerprint))
                    .then_some(RootProblem::DidNotSign)
            }
            _ => Some(RootProblem::NotAnActiveRoot),
        };
        if let Some(problem) = problem {
            return Err(Refusal::RootNotConfirmed {
                name: candidate.name().into(),
                serial: candidate.serial(),
                fingerprint,
                problem,
            });
        }
    }
    Ok(Verified {
        signed: candidate.clone(),
        base: None,
        steps: Vec::new(),
    })
}

/// Whether a feed signature by some key may be trusted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FeedKeyState<'a> {
    Trusted(&'a PublicKey),
    NotTrusted(Untrusted),
}

/// A key the keyring does not let sign feeds, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("key {fingerprint} is not trusted: {reason}")]
pub struct Untrusted {
    pub fingerprint: Fingerprint,
    pub reason: UntrustedReason,
}

/// Why a key may not sign feeds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UntrustedReason {
    Unknown {
        keyring: String,
        serial: u64,
    },
    Retired {
        keyring: String,
        serial: u64,
    },
    Revoked {
        keyring: String,
        serial: u64,
    },
    /// The key's `Not-After` has passed.
    Expired {
        keyring: String,
        serial: u64,
        on: i64,
    },
    /// A root or developer key: root keys sign keyrings, developer keys package files; only
    /// feed keys sign feeds.
    NotFeedKey {
        role: Role,
        keyring: String,
        serial: u64,
    },
    /// The whole keyring has expired: refresh it.
    KeyringExpired {
        keyring: String,
        serial: u64,
        on: i64,
    },
}

impl fmt::Display for UntrustedReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UntrustedReason::Unknown { keyring, serial } => {
                write!(f, "not in keyring {keyring} serial {serial}")
            }
            UntrustedReason::Retired { keyring, serial } => {
                write!(f, "retired in keyring {keyring} serial {serial}")
            }
            UntrustedReason::Revoked { keyring, serial } => {
                write!(f, "revoked in keyring {keyring} serial {serial}")
            }
            UntrustedReason::Expired {
                keyring,
                serial,
                on,
            } => write!(
                f,
                "expired on {} (keyring {keyring} serial {serial})",
                format_date(*on)
            ),
            UntrustedReason::NotFeedKey {
                role,
                keyring,
                serial,
            } => write!(
                f,
                "a {role} key, not a feed key, in keyring {keyring} serial {serial}"
            ),
            UntrustedReason::KeyringExpired {
                keyring,
                serial,
                on,
            } => write!(
                f,
                "keyring {keyring} serial {serial} expired on {}; refresh it",
                format_date(*on)
            ),
        }
    }
}

/// Whether `keyring` lets the key `fingerprint` sign feeds at `now`: listed, role feed, active,
/// unexpired, and the keyring itself unexpired.
pub fn feed_key_state(keyring: &Keyring, fingerprint: Fingerprint, now: i64) -> FeedKeyState<'_> {
    let k = keyring.name().to_string();
    let serial = keyring.serial();
    let reason = match keyring.key(fingerprint) {
        None => UntrustedReason::Unknown { keyring: k, serial },
        Some(e) if e.status == Status::Revoked => UntrustedReason::Revoked { keyring: k, serial },
        Some(e) if e.status == Status::Retired => UntrustedReason::Retired { keyring: k, serial },
        Some(e) if e.role != Role::Feed => UntrustedReason::NotFeedKey {
            role: e.role,
            keyring: k,
            serial,
        },
        Some(e) if e.is_expired(now) => UntrustedReason::Expired {
            keyring: k,
            serial,
            on: e.not_after.unwrap_or_default(),
        },
        Some(_) if keyring.is_expired(now) => UntrustedReason::KeyringExpired {
            keyring: k,
            serial,
            on: keyring.expires(),
        },
        Some(e) => return FeedKeyState::Trusted(&e.public_key),
    };
    FeedKeyState::NotTrusted(Untrusted {
        fingerprint,
        reason,
    })
}

/// The keys `keyring` lets sign feeds at `now` (empty once the keyring has expired).
pub fn trusted_feed_keys(keyring: &Keyring, now: i64) -> Vec<&PublicKey> {
    keyring
        .keys()
        .filter_map(|k| match feed_key_state(keyring, k.fingerprint(), now) {
            FeedKeyState::Trusted(key) => Some(key),
            FeedKeyState::NotTrusted(_) => None,
        })
        .collect()
}

/// Every key `keyring` lists that may not sign feeds at `now`, with the reason (for a client's
/// "never trust" list: revoked, retired, expired, root keys).
pub fn distrusted_keys(keyring: &Keyring, now: i64) -> Vec<Untrusted> {
    keyring
        .keys()
        .filter_map(|k| match feed_key_state(keyring, k.fingerprint(), now) {
            FeedKeyState::Trusted(_) => None,
            FeedKeyState::NotTrusted(u) => Some(u),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::KeyEntry;
    use crate::signatures::SignatureSet;
    use feeds::usign::SecretKey;

    const NOW: i64 = 1_800_000_000;

    fn signed(keyring: &Keyring, by: &[&SecretKey]) -> SignedKeyring {
        let bytes = keyring.to_bytes().unwrap();
        let mut sigs = SignatureSet::new();
        for k in by {
            sigs.insert(k.sign(&bytes).unwrap()).unwrap();
        }
        SignedKeyring::new(keyring.clone(), sigs).unwrap()
    }

    #[test]
    fn feed_key_state_names_each_reason() {
        let root = SecretKey::generate(None).unwrap().0;
        let keys: Vec<SecretKey> = (0..4)
            .map(|_| SecretKey::generate(None).unwrap().0)
            .collect();
        let mut k = Keyring::new("example", 3, NOW - 10, NOW + 100, 1).unwrap();
        k.add_key(KeyEntry::new(&root.public_key(), Role::Root))
            .unwrap();
        let developer = SecretKey::generate(None).unwrap().0;
        k.add_key(KeyEntry::new(&developer.public_key(), Role::Developer))
            .unwrap();
        for key in &keys {
            k.add_key(KeyEntry::new(&key.public_key(), Role::Feed))
                .unwrap();
        }
        k.key_mut(keys[1].fingerprint()).unwrap().status = Status::Retired;
        k.key_mut(keys[2].fingerprint()).unwrap().status = Status::Revoked;
        k.key_mut(keys[3].fingerprint()).unwrap().not_after = Some(NOW - 1);
        let reason = |fp| match feed_key_state(&k, fp, NOW) {
            FeedKeyState::Trusted(_) => "trusted".to_string(),
            FeedKeyState::NotTrusted(u) => u.reason.to_string(),
        };
        assert_eq!(reason(keys[0].fingerprint()), "trusted");
        assert_eq!(
            reason(keys[1].fingerprint()),
            "retired in keyring example serial 3"
        );
        assert_eq!(
            reason(keys[2].fingerprint()),
            "revoked in keyring example serial 3"
        );
        assert_eq!(
            reason(keys[3].fingerprint()),
            format!(
                "expired on {} (keyring example serial 3)",
                format_date(NOW - 1)
            )
        );
        assert_eq!(
            reason(root.fingerprint()),
            "a root key, not a feed key, in keyring example serial 3"
        );
        // An active developer key signs package files, never a feed.
        assert_eq!(
            reason(developer.fingerprint()),
            "a developer key, not a feed key, in keyring example serial 3"
        );
        let stranger = SecretKey::generate(None).unwrap().0.fingerprint();
        assert_eq!(reason(stranger), "not in keyring example serial 3");
        assert_eq!(trusted_feed_keys(&k, NOW), vec![&keys[0].public_key()]);
        // Retired, revoked, expired, root and developer: none may sign a feed.
        assert_eq!(distrusted_keys(&k, NOW).len(), 5);
        // After the keyring expires nothing is trusted.
        assert!(trusted_feed_keys(&k, NOW + 101).is_empty());
        let FeedKeyState::NotTrusted(u) = feed_key_state(&k, keys[0].fingerprint(), NOW + 101)
        else {
            panic!("trusted after keyring expiry")
        };
        assert!(matches!(u.reason, UntrustedReason::KeyringExpired { .. }));
        assert!(u.to_string().starts_with(&format!(
            "key {} is not trusted: keyring example serial 3 expired on",
            keys[0].fingerprint()
        )));
    }

    #[test]
    fn accept_initial_checks_the_confirmed_root() {
        let r1 = SecretKey::generate(None).unwrap().0;
        let r2 = SecretKey::generate(None).unwrap().0;
        let mut k = Keyring::new("example", 1, NOW - 10, NOW + 100, 1).unwrap();
        k.add_key(KeyEntry::new(&r1.public_key(), Role::Root))
            .unwrap();
        k.add_key(KeyEntry::new(&r2.public_key(), Role::Root))
            .unwrap();
        let s = signed(&k, &[&r1]);
        let v = accept_initial(&s, Some(r1.fingerprint()), NOW).unwrap();
        assert!(v.is_update());
        assert_eq!(v.from_serial(), None);
        let err = accept_initial(&s, Some(r2.fingerprint()), NOW).unwrap_err();
        assert!(matches!(
            err,
            Refusal::RootNotConfirmed {
                problem: RootProblem::DidNotSign,
                ..
            }
        ));
        let stranger = SecretKey::generate(None).unwrap().0.fingerprint();
        let err = accept_initial(&s, Some(stranger), NOW).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "keyring example serial 1: the confirmed root key {stranger} is not one of its active, unexpired root keys"
            )
        );
        assert!(matches!(
            accept_initial(&s, None, NOW + 101),
            Err(Refusal::Expired { .. })
        ));
    }

    #[test]
    fn refusal_messages_name_keyring_serial_and_keys() {
        let roots: Vec<SecretKey> = (0..3)
            .map(|_| SecretKey::generate(None).unwrap().0)
            .collect();
        let mut k = Keyring::new("example", 3, NOW - 10, NOW + 100, 2).unwrap();
        for r in &roots {
            k.add_key(KeyEntry::new(&r.public_key(), Role::Root))
                .unwrap();
        }
        let old = signed(&k, &[&roots[0], &roots[1]]);
        let mut next = k.clone();
        next.set_serial(4);
        let new = signed(&next, &[&roots[0]]);
        let err = check_step(&old, &new, NOW).unwrap_err();
        let mut fps: Vec<String> = roots.iter().map(|r| r.fingerprint().to_string()).collect();
        fps.sort();
        assert_eq!(
            err.to_string(),
            format!(
                "keyring example serial 4: signed by 1 of the 2 root keys required by serial 3 (have {}; need 2 of: {})",
                roots[0].fingerprint(),
                fps.join(", ")
            )
        );
    }
}
