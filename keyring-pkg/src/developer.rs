//! Developer signatures on package files: the second signing layer (docs/trust-model.md §9).
//!
//! A developer signs the bytes of a package file (`.ipk` of either container, or `.deb`) with
//! a usign/signify key; the signature is detached (`PKG.ipk.sig`, the usign file form) and
//! also published in the feed's index stanza. It counts when the keyring lists its key with
//! role `developer`, status active, unexpired, in an unexpired keyring, with a `Packages` scope
//! (if any) covering the package's name, and the signature verifies over exactly those bytes.
//! [`check`] decides, naming the package, the key and the reason when it does not.

use feeds::usign::{Fingerprint, Signature};

use crate::manifest::{Keyring, Role, Status};

/// Why a developer signature does not count.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeveloperError {
    #[error(
        "package {package}: developer key {fingerprint} is not in keyring {keyring} serial {serial}"
    )]
    UnknownKey {
        package: String,
        fingerprint: Fingerprint,
        keyring: String,
        serial: u64,
    },
    #[error(
        "package {package}: developer key {fingerprint} {status} in keyring {keyring} serial {serial}"
    )]
    NotActive {
        package: String,
        fingerprint: Fingerprint,
        status: Status,
        keyring: String,
        serial: u64,
    },
    #[error(
        "package {package}: key {fingerprint} is a {role} key, not a developer key, in keyring {keyring} serial {serial}"
    )]
    NotDeveloper {
        package: String,
        fingerprint: Fingerprint,
        role: Role,
        keyring: String,
        serial: u64,
    },
    #[error(
        "package {package}: developer key {fingerprint} expired on {on} (keyring {keyring} serial {serial})"
    )]
    Expired {
        package: String,
        fingerprint: Fingerprint,
        on: String,
        keyring: String,
        serial: u64,
    },
    #[error("package {package}: keyring {keyring} serial {serial} expired on {on}; refresh it")]
    KeyringExpired {
        package: String,
        keyring: String,
        serial: u64,
        on: String,
    },
    #[error(
        "package {package}: outside the scope of developer key {fingerprint} (it may sign {scope}; keyring {keyring} serial {serial})"
    )]
    OutOfScope {
        package: String,
        fingerprint: Fingerprint,
        scope: String,
        keyring: String,
        serial: u64,
    },
    #[error(
        "package {package}: bad signature by developer key {fingerprint}: the package file or its signature was altered"
    )]
    BadSignature {
        package: String,
        fingerprint: Fingerprint,
    },
}

/// Checks `signature` over the package file `bytes` of the package named `package` against
/// `keyring` at `now`; returns the developer key's fingerprint when it counts.
pub fn check(
    keyring: &Keyring,
    package: &str,
    bytes: &[u8],
    signature: &Signature,
    now: i64,
) -> Result<Fingerprint, DeveloperError> {
    let key = check_key(keyring, package, signature.fingerprint(), now)?;
    key.public_key
        .verify(bytes, signature)
        .map_err(|_| DeveloperError::BadSignature {
            package: package.to_string(),
            fingerprint: signature.fingerprint(),
        })?;
    Ok(signature.fingerprint())
}

/// The keyring's half of [`check`]: whether the key `fingerprint` may sign the package named
/// `package` at `now` (for a signature already verified over unchanged bytes).
pub fn check_key<'k>(
    keyring: &'k Keyring,
    package: &str,
    fingerprint: Fingerprint,
    now: i64,
) -> Result<&'k crate::manifest::KeyEntry, DeveloperError> {
    let (name, serial) = (keyring.name().to_string(), keyring.serial());
    let package = package.to_string();
    let Some(key) = keyring.key(fingerprint) else {
        return Err(DeveloperError::UnknownKey {
            package,
            fingerprint,
            keyring: name,
            serial,
        });
    };
    if key.status != Status::Active {
        return Err(DeveloperError::NotActive {
            package,
            fingerprint,
            status: key.status,
            keyring: name,
            serial,
        });
    }
    if key.role != Role::Developer {
        return Err(DeveloperError::NotDeveloper {
            package,
            fingerprint,
            role: key.role,
            keyring: name,
            serial,
        });
    }
    if key.is_expired(now) {
        return Err(DeveloperError::Expired {
            package,
            fingerprint,
            on: feeds::release::format_date(key.not_after.unwrap_or_default()),
            keyring: name,
            serial,
        });
    }
    if keyring.is_expired(now) {
        return Err(DeveloperError::KeyringExpired {
            package,
            keyring: name,
            serial,
            on: feeds::release::format_date(keyring.expires()),
        });
    }
    if let Some(scope) = &key.scope
        && !scope.covers(&package)
    {
        return Err(DeveloperError::OutOfScope {
            package,
            fingerprint,
            scope: scope.to_string(),
            keyring: name,
            serial,
        });
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{KeyEntry, Scope};
    use feeds::usign::SecretKey;

    const NOW: i64 = 1_800_000_000;

    fn key(seed: u8, fp: u64) -> SecretKey {
        SecretKey::from_seed([seed; 32], Fingerprint::new(fp.to_be_bytes())).unwrap()
    }

    fn scene() -> (Keyring, SecretKey, SecretKey, SecretKey) {
        let root = key(1, 0x1000_0000_0000_0001);
        let feed = key(2, 0x2000_0000_0000_0002);
        let dev = key(3, 0x3000_0000_0000_0003);
        let mut k = Keyring::new("demo", 7, NOW - 10, NOW + 100, 1).unwrap();
        k.add_key(KeyEntry::new(&root.public_key(), Role::Root))
            .unwrap();
        k.add_key(KeyEntry::new(&feed.public_key(), Role::Feed))
            .unwrap();
        let mut d = KeyEntry::new(&dev.public_key(), Role::Developer);
        d.scope = Some(Scope::parse("luci-app-*, pbr").unwrap());
        k.add_key(d).unwrap();
        (k, root, feed, dev)
    }

    #[test]
    fn a_signature_counts_only_by_an_active_developer_key_in_scope() {
        let (mut k, _root, feed, dev) = scene();
        let pkg = b"package bytes";
        let sig = dev.sign(pkg).unwrap();
        assert_eq!(
            check(&k, "luci-app-pbr", pkg, &sig, NOW),
            Ok(dev.fingerprint())
        );
        let err = |k: &Keyring, name: &str, bytes: &[u8], sig: &Signature, now| {
            check(k, name, bytes, sig, now).unwrap_err().to_string()
        };
        assert_eq!(
            err(&k, "luci-app-pbr", b"other bytes", &sig, NOW),
            "package luci-app-pbr: bad signature by developer key 3000000000000003: the package file or its signature was altered"
        );
        assert_eq!(
            err(&k, "dnsmasq", pkg, &dev.sign(pkg).unwrap(), NOW),
            "package dnsmasq: outside the scope of developer key 3000000000000003 (it may sign luci-app-*, pbr; keyring demo serial 7)"
        );
        assert_eq!(
            err(&k, "pbr", pkg, &feed.sign(pkg).unwrap(), NOW),
            "package pbr: key 2000000000000002 is a feed key, not a developer key, in keyring demo serial 7"
        );
        let stranger = key(9, 0x9000_0000_0000_0009);
        assert_eq!(
            err(&k, "pbr", pkg, &stranger.sign(pkg).unwrap(), NOW),
            "package pbr: developer key 9000000000000009 is not in keyring demo serial 7"
        );
        assert_eq!(
            err(&k, "pbr", pkg, &sig, NOW + 101),
            "package pbr: keyring demo serial 7 expired on Fri, 15 Jan 2027 08:01:40 UTC; refresh it"
        );
        k.key_mut(dev.fingerprint()).unwrap().not_after = Some(NOW - 1);
        assert!(
            err(&k, "pbr", pkg, &sig, NOW).contains("developer key 3000000000000003 expired on")
        );
        k.key_mut(dev.fingerprint()).unwrap().status = Status::Revoked;
        assert_eq!(
            err(&k, "pbr", pkg, &sig, NOW),
            "package pbr: developer key 3000000000000003 revoked in keyring demo serial 7"
        );
        k.key_mut(dev.fingerprint()).unwrap().status = Status::Retired;
        assert!(err(&k, "pbr", pkg, &sig, NOW).contains("retired in keyring demo serial 7"));
    }
}
