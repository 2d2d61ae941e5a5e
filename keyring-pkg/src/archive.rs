//! The archive keyring for apt: `<name>-archive-keyring_<serial>_all.deb`, installing
//! `/usr/share/keyrings/<name>-archive-keyring.gpg` with the OpenPGP certificate of every
//! usable feed key of the serial (retired, revoked and expired keys left out), as Debian's own
//! archive keyring packages ship theirs (docs/formats.md §5.4).
//!
//! An OpenPGP certificate must be self-signed, so it is made by the feed key's holder
//! (`archman key export --openpgp -s FEED_SEC`) and stored in the keyring directory under
//! `openpgp/<usign fingerprint>.gpg` ([`check_certificate`] on the way in and again at build).
//! It is trusted because its key *is* the usign feed key the roots signed into the manifest,
//! with the fixed creation time `usign-openpgp` gives every key: the self-signature proves the
//! holder made it, the manifest proves the key is the feed's.

use std::collections::BTreeMap;

use feeds::build::PackageBuilder;
use feeds::package::Container;
use feeds::usign::Fingerprint;
use usign_openpgp::Certificate;

use crate::accept::check_self;
use crate::manifest::{KeyEntry, Keyring, Role};
use crate::package::{BuildError, BuiltPackage};
use crate::signatures::SignedKeyring;

/// The directory of a keyring directory that holds the feed keys' certificates.
pub const OPENPGP_DIR: &str = "openpgp";

/// The package name: `<name>-archive-keyring`.
pub fn package_name(name: &str) -> String {
    format!("{name}-archive-keyring")
}

/// Where the package installs the keyring apt's `signed-by=` names.
pub fn keyring_path(name: &str) -> String {
    format!("usr/share/keyrings/{name}-archive-keyring.gpg")
}

/// The file a feed key's certificate is kept in, under [`OPENPGP_DIR`].
pub fn certificate_file_name(fingerprint: Fingerprint) -> String {
    format!("{fingerprint}.gpg")
}

/// Why a certificate is not the OpenPGP form of a feed key of the keyring.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    #[error("{0}")]
    Unreadable(String),
    #[error("its key is not an Ed25519 key")]
    NotEd25519,
    #[error(
        "its key is no feed key of keyring {name} (not the OpenPGP form of any usign key listed as feed)"
    )]
    NotAFeedKey { name: String },
    #[error(
        "its fingerprint {found} is not {expected}, the one archman gives usign key {usign} (a key made with another creation time)"
    )]
    OtherFingerprint {
        usign: Fingerprint,
        expected: String,
        found: String,
    },
}

/// Checks that `bytes` is a self-signed certificate of one of `keyring`'s feed keys (any
/// status); returns that key's usign fingerprint and the certificate.
pub fn check_certificate(
    keyring: &Keyring,
    bytes: &[u8],
) -> Result<(Fingerprint, Certificate), CertificateError> {
    let cert =
        Certificate::parse(bytes).map_err(|e| CertificateError::Unreadable(e.to_string()))?;
    let public = cert.ed25519_public().ok_or(CertificateError::NotEd25519)?;
    let entry: &KeyEntry = keyring
        .keys()
        .find(|k| k.role == Role::Feed && k.public_key.as_bytes() == &public)
        .ok_or_else(|| CertificateError::NotAFeedKey {
            name: keyring.name().to_string(),
        })?;
    let usign = entry.public_key.fingerprint();
    let expected = usign_openpgp::fingerprint_of_public(&public)
        .map_err(|e| CertificateError::Unreadable(e.to_string()))?;
    if cert.fingerprint() != expected {
        return Err(CertificateError::OtherFingerprint {
            usign,
            expected,
            found: cert.fingerprint(),
        });
    }
    Ok((usign, cert))
}

/// Builds the archive keyring `.deb` of `current` from the certificates kept for its feed
/// keys (`certs`, by usign fingerprint). Refuses a keyring that does not pass [`check_self`],
/// a usable feed key without a certificate, and a certificate that is not its key's. `mtime`
/// stamps every entry; the output depends only on the arguments.
pub fn build_archive_keyring_deb(
    current: &SignedKeyring,
    certs: &BTreeMap<Fingerprint, Vec<u8>>,
    mtime: u64,
    now: i64,
) -> Result<BuiltPackage, BuildError> {
    let name = current.name().to_string();
    let serial = current.serial();
    check_self(current, now).map_err(|source| BuildError::Refused {
        name: name.clone(),
        serial,
        source,
    })?;
    let mut keyring = Vec::new();
    let mut fingerprints = Vec::new();
    for key in current.keyring().usable_keys(Role::Feed, now) {
        let fp = key.fingerprint();
        let bytes = certs.get(&fp).ok_or_else(|| BuildError::NoCertificate {
            name: name.clone(),
            serial,
            fingerprint: fp,
        })?;
        let (owner, cert) = check_certificate(current.keyring(), bytes).map_err(|source| {
            BuildError::BadCertificate {
                fingerprint: fp,
                source,
            }
        })?;
        if owner != fp {
            return Err(BuildError::BadCertificate {
                fingerprint: fp,
                source: CertificateError::NotAFeedKey { name: name.clone() },
            });
        }
        // Re-serialised: exactly the packets checked, nothing that came along in the file.
        let binary = cert.to_binary().map_err(|e| BuildError::BadCertificate {
            fingerprint: fp,
            source: CertificateError::Unreadable(e.to_string()),
        })?;
        keyring.extend_from_slice(&binary);
        fingerprints.push(cert.fingerprint());
    }
    if fingerprints.is_empty() {
        return Err(BuildError::NoFeedKeys { name, serial });
    }
    let pkg = package_name(&name);
    let path = keyring_path(&name);
    let control = format!(
        "Package: {pkg}\nVersion: {serial}\nArchitecture: all\nMulti-Arch: foreign\nSection: misc\nPriority: optional\nMaintainer: {name} keyring <root@localhost>\nDescription: OpenPGP keys of archive {name} for apt, keyring serial {serial}\n The keyring for apt's signed-by=, /{path},\n with the OpenPGP form of every active feed key of keyring {name}\n serial {serial}:\n {fps}\n",
        fps = fingerprints.join("\n "),
    );
    let package = PackageBuilder::new(control)
        .container(Container::Ar)
        .mtime(mtime)
        .dir("usr", 0o755)
        .dir("usr/share", 0o755)
        .dir("usr/share/keyrings", 0o755)
        .file(&path, 0o644, keyring)
        .build()
        .map_err(BuildError::Write)?;
    Ok(BuiltPackage {
        file_name: format!("{pkg}_{serial}_all.deb"),
        bytes: package,
    })
}
