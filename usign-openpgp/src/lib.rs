//! The OpenPGP form of a usign Ed25519 key, so that one feed key signs for opkg (usign) and for
//! apt (OpenPGP) alike: the certificate apt's `signed-by=` reads, the clear-signed `InRelease`
//! and the detached `Release.gpg`.
//!
//! The OpenPGP key is a v4 EdDSA ("EdDSALegacy", algorithm 22, curve Ed25519) primary key made
//! from the same 32-byte Ed25519 key as the usign key, with the fixed creation time
//! [`KEY_CREATION_TIME`]: an OpenPGP fingerprint hashes the creation time, so a fixed one makes
//! the fingerprint a function of the usign key alone. EdDSALegacy rather than RFC 9580's
//! Ed25519 (algorithm 27) because that is what GnuPG 2.2 (Debian 12's gpgv, which apt runs)
//! reads. Packets are made by rPGP (`pgp` crate); nothing here writes packet bytes by hand. The
//! format is described in `docs/formats.md` §6.
//!
//! Everything is deterministic: Ed25519 signatures are, and every signature time is given by
//! the caller, so the same key and inputs give the same bytes (reproducible keyring packages).

use ed25519_dalek::VerifyingKey;
use pgp::composed::{
    CleartextSignedMessage, Deserializable, DetachedSignature, SignedKeyDetails, SignedPublicKey,
};
use pgp::crypto::ed25519::{self, Mode};
use pgp::crypto::hash::HashAlgorithm;
use pgp::crypto::public_key::PublicKeyAlgorithm;
use pgp::packet::{
    self, KeyFlags, PacketTrait, PubKeyInner, SignatureConfig, SignatureType, Subpacket,
    SubpacketData, UserId,
};
use pgp::ser::Serialize;
use pgp::types::{
    EddsaLegacyPublicParams, KeyDetails, KeyVersion, PacketHeaderVersion, Password,
    PlainSecretParams, PublicParams, SecretParams, SignedUser, Timestamp,
};

/// The creation time of every OpenPGP key made here: 2000-01-01T00:00:00Z. It is part of the
/// OpenPGP fingerprint, so it never changes (changing it would give every feed key a new
/// OpenPGP fingerprint and break every apt `signed-by` keyring in the field).
pub const KEY_CREATION_TIME: u32 = 946_684_800;

/// The hash every signature made here uses (apt refuses SHA-1; Ed25519 wants ≥ 256 bits).
const HASH: HashAlgorithm = HashAlgorithm::Sha512;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the OpenPGP library refused the key or signature: {0}")]
    Pgp(#[from] pgp::errors::Error),
    #[error("not an Ed25519 public key: {0}")]
    BadPublicKey(String),
    #[error("not an OpenPGP certificate: {0}")]
    BadCertificate(String),
    #[error("the user ID {0:?} is not valid UTF-8 without line breaks")]
    BadUserId(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The user ID a feed key's certificate carries: `NAME feed key (usign FP)`, or
/// `feed key (usign FP)` without a name. The usign fingerprint (16 hex digits) ties the OpenPGP
/// key to the usign key an opkg user knows.
pub fn user_id(name: Option<&str>, usign_fingerprint: &str) -> String {
    match name {
        Some(name) if !name.trim().is_empty() => {
            format!("{} feed key (usign {usign_fingerprint})", name.trim())
        }
        _ => format!("feed key (usign {usign_fingerprint})"),
    }
}

/// The public primary key packet of an Ed25519 public key.
fn public_packet(public: &[u8; 32]) -> Result<packet::PublicKey> {
    let key = VerifyingKey::from_bytes(public).map_err(|e| Error::BadPublicKey(e.to_string()))?;
    let inner = PubKeyInner::new(
        KeyVersion::V4,
        PublicKeyAlgorithm::EdDSALegacy,
        Timestamp::from_secs(KEY_CREATION_TIME),
        None,
        PublicParams::EdDSALegacy(EddsaLegacyPublicParams::Ed25519 { key }),
    )?;
    Ok(packet::PublicKey::from_inner(inner)?)
}

/// The OpenPGP v4 fingerprint (40 upper-case hex digits, as gpg prints it) of the OpenPGP form
/// of an Ed25519 public key. Needs no secret: anyone holding the usign public key can compute
/// which OpenPGP key an `InRelease` must be signed by.
pub fn fingerprint_of_public(public: &[u8; 32]) -> Result<String> {
    Ok(hex_upper(public_packet(public)?.fingerprint().as_bytes()))
}

/// Checks a clear-signed message (InRelease) against the OpenPGP form of the Ed25519 public
/// key `public` (no certificate needed: the key packet alone verifies); returns the signed
/// text.
pub fn verify_clearsigned_by(public: &[u8; 32], armored: &str) -> Result<String> {
    let (message, _) = CleartextSignedMessage::from_string(armored)?;
    message.verify(&public_packet(public)?)?;
    Ok(signed_text(&message))
}

/// The text a clear signature covers, with LF line breaks (as apt extracts it): dash-escapes
/// undone, trailing blanks of each line removed, no final line break.
fn signed_text(message: &CleartextSignedMessage) -> String {
    message.signed_text().replace("\r\n", "\n")
}

/// Checks an armored detached signature (Release.gpg) over `data` against the OpenPGP form of
/// the Ed25519 public key `public`.
pub fn verify_detached_by(public: &[u8; 32], armored: &str, data: &[u8]) -> Result<()> {
    let (signature, _) = DetachedSignature::from_armor_single(armored.as_bytes())?;
    signature.verify(&public_packet(public)?, data)?;
    Ok(())
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// The signing half: an Ed25519 secret key in its OpenPGP form.
pub struct Signer {
    secret: packet::SecretKey,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// The OpenPGP form of the Ed25519 key with this 32-byte seed (the usign secret key's seed).
    pub fn from_seed(seed: &[u8; 32]) -> Result<Self> {
        let secret = ed25519::SecretKey::try_from_bytes(*seed, Mode::EdDSALegacy)?;
        let public: [u8; 32] = secret.verifying_key().to_bytes();
        let public = public_packet(&public)?;
        let params = SecretParams::Plain(PlainSecretParams::EdDSALegacy(
            pgp::crypto::eddsa_legacy::SecretKey::Ed25519(secret),
        ));
        Ok(Signer {
            secret: packet::SecretKey::new(public, params)?,
        })
    }

    /// 40 upper-case hex digits, as `gpg --with-colons` prints them.
    pub fn fingerprint(&self) -> String {
        hex_upper(self.secret.fingerprint().as_bytes())
    }

    /// The 16-hex-digit key ID (the fingerprint's last 8 bytes), as apt's NO_PUBKEY names it.
    pub fn key_id(&self) -> String {
        self.fingerprint()[24..].to_string()
    }

    /// The transferable public key: the primary key, one user ID and its positive self
    /// certification (sign + certify, no expiry), made at [`KEY_CREATION_TIME`].
    pub fn certificate(&self, user_id: &str) -> Result<Certificate> {
        if user_id.contains(['\n', '\r']) {
            return Err(Error::BadUserId(user_id.into()));
        }
        let uid = UserId::from_str(PacketHeaderVersion::New, user_id)?;
        let mut flags = KeyFlags::default();
        flags.set_certify(true);
        flags.set_sign(true);
        let mut config = SignatureConfig::v4(
            SignatureType::CertPositive,
            PublicKeyAlgorithm::EdDSALegacy,
            HASH,
        );
        config.hashed_subpackets = vec![
            Subpacket::regular(SubpacketData::SignatureCreationTime(Timestamp::from_secs(
                KEY_CREATION_TIME,
            )))?,
            Subpacket::regular(SubpacketData::IssuerFingerprint(self.secret.fingerprint()))?,
            Subpacket::regular(SubpacketData::KeyFlags(flags))?,
            Subpacket::regular(SubpacketData::PreferredHashAlgorithms(
                [HashAlgorithm::Sha512, HashAlgorithm::Sha256]
                    .into_iter()
                    .collect(),
            ))?,
        ];
        config.unhashed_subpackets = vec![Subpacket::regular(SubpacketData::IssuerKeyId(
            self.secret.legacy_key_id(),
        ))?];
        let public = self.secret.public_key().clone();
        let signature = config.sign_certification(
            &self.secret,
            &public,
            &Password::empty(),
            uid.tag(),
            &uid,
        )?;
        let key = SignedPublicKey::new(
            public,
            SignedKeyDetails::new(
                vec![],
                vec![],
                vec![SignedUser::new(uid, vec![signature])],
                vec![],
            ),
            vec![],
        );
        key.verify_bindings()?;
        Ok(Certificate { key })
    }

    fn signature_config(&self, typ: SignatureType, time: u32) -> Result<SignatureConfig> {
        let mut config = SignatureConfig::v4(typ, PublicKeyAlgorithm::EdDSALegacy, HASH);
        // A signature older than its key is refused by gpg: never sign before the key exists.
        let time = time.max(KEY_CREATION_TIME);
        config.hashed_subpackets = vec![
            Subpacket::regular(SubpacketData::SignatureCreationTime(Timestamp::from_secs(
                time,
            )))?,
            Subpacket::regular(SubpacketData::IssuerFingerprint(self.secret.fingerprint()))?,
        ];
        config.unhashed_subpackets = vec![Subpacket::regular(SubpacketData::IssuerKeyId(
            self.secret.legacy_key_id(),
        ))?];
        Ok(config)
    }

    /// `text` clear-signed (a text signature, `Hash: SHA512`): the `InRelease` form. `time` is
    /// the signature's creation time in seconds since the epoch (the Release `Date`).
    ///
    /// The line break that ends `text` is the one the cleartext framework puts before
    /// `-----BEGIN PGP SIGNATURE-----`, which is not signed (RFC 9580 §7.1): so the output
    /// reads as `gpg --clearsign` writes it and as Debian's InRelease files look, the text
    /// followed directly by the signature.
    pub fn clearsign(&self, text: &str, time: u32) -> Result<String> {
        let config = self.signature_config(SignatureType::Text, time)?;
        let text = text.strip_suffix('\n').unwrap_or(text);
        let message = CleartextSignedMessage::new(text, config, &self.secret, &Password::empty())?;
        let mut armored = message.to_armored_string(Default::default())?;
        if !armored.ends_with('\n') {
            armored.push('\n');
        }
        Ok(armored)
    }

    /// A detached binary signature over `data`, armored: the `Release.gpg` form.
    pub fn detached_armored(&self, data: &[u8], time: u32) -> Result<String> {
        let config = self.signature_config(SignatureType::Binary, time)?;
        let signature = config.sign(&self.secret, &Password::empty(), data)?;
        let mut armored = DetachedSignature::new(signature).to_armored_string(Default::default())?;
        if !armored.ends_with('\n') {
            armored.push('\n');
        }
        Ok(armored)
    }
}

/// A transferable public key (primary key, user ID, self-signature).
#[derive(Debug, Clone)]
pub struct Certificate {
    key: SignedPublicKey,
}

impl Certificate {
    /// Binary OpenPGP packets: the form `signed-by=` and `/usr/share/keyrings/*.gpg` hold.
    pub fn to_binary(&self) -> Result<Vec<u8>> {
        Ok(self.key.to_bytes()?)
    }

    /// ASCII armor (`-----BEGIN PGP PUBLIC KEY BLOCK-----`): the `.asc` form.
    pub fn to_armored(&self) -> Result<String> {
        Ok(self.key.to_armored_string(Default::default())?)
    }

    pub fn fingerprint(&self) -> String {
        hex_upper(self.key.primary_key.fingerprint().as_bytes())
    }

    /// The user IDs the certificate carries.
    pub fn user_ids(&self) -> Vec<String> {
        self.key
            .details
            .users
            .iter()
            .map(|u| String::from_utf8_lossy(u.id.id()).into_owned())
            .collect()
    }

    /// The Ed25519 public key inside, when the certificate is an EdDSA (Ed25519) key.
    pub fn ed25519_public(&self) -> Option<[u8; 32]> {
        match self.key.primary_key.public_params() {
            PublicParams::EdDSALegacy(EddsaLegacyPublicParams::Ed25519 { key }) => {
                Some(key.to_bytes())
            }
            PublicParams::Ed25519(p) => Some(p.key.to_bytes()),
            _ => None,
        }
    }

    /// Reads one certificate, binary or armored, and checks its self-signatures.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let key = if bytes.starts_with(b"-----BEGIN") {
            SignedPublicKey::from_armor_single(bytes)
                .map(|(k, _)| k)
                .map_err(|e| Error::BadCertificate(e.to_string()))?
        } else {
            SignedPublicKey::from_bytes(bytes).map_err(|e| Error::BadCertificate(e.to_string()))?
        };
        key.verify_bindings()
            .map_err(|e| Error::BadCertificate(format!("self-signature does not verify: {e}")))?;
        Ok(Certificate { key })
    }

    /// Checks a clear-signed message against this key; returns the signed text (LF line
    /// breaks, no final one).
    pub fn verify_clearsigned(&self, armored: &str) -> Result<String> {
        let (message, _) = CleartextSignedMessage::from_string(armored)?;
        message.verify(&self.key.primary_key)?;
        Ok(signed_text(&message))
    }

    /// Checks an armored detached signature over `data` against this key.
    pub fn verify_detached(&self, armored: &str, data: &[u8]) -> Result<()> {
        let (signature, _) = DetachedSignature::from_armor_single(armored.as_bytes())?;
        signature.verify(&self.key.primary_key, data)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: [u8; 32] = [7; 32];

    #[test]
    fn fingerprint_is_a_function_of_the_key_alone() {
        let a = Signer::from_seed(&SEED).unwrap();
        let b = Signer::from_seed(&SEED).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint().len(), 40);
        let cert = a
            .certificate("x feed key (usign 0011223344556677)")
            .unwrap();
        let public = cert.ed25519_public().unwrap();
        assert_eq!(fingerprint_of_public(&public).unwrap(), a.fingerprint());
        assert_eq!(cert.fingerprint(), a.fingerprint());
        assert_ne!(
            Signer::from_seed(&[8; 32]).unwrap().fingerprint(),
            a.fingerprint()
        );
    }

    #[test]
    fn certificates_and_signatures_are_reproducible() {
        let s = Signer::from_seed(&SEED).unwrap();
        let c1 = s
            .certificate("feed key (usign 1)")
            .unwrap()
            .to_binary()
            .unwrap();
        let c2 = s
            .certificate("feed key (usign 1)")
            .unwrap()
            .to_binary()
            .unwrap();
        assert_eq!(c1, c2);
        assert_eq!(
            s.clearsign("Origin: x\n", 1_700_000_000).unwrap(),
            s.clearsign("Origin: x\n", 1_700_000_000).unwrap()
        );
    }

    #[test]
    fn round_trip_and_tamper() {
        let s = Signer::from_seed(&SEED).unwrap();
        let cert = s
            .certificate(&user_id(Some("demo"), "0011223344556677"))
            .unwrap();
        let parsed = Certificate::parse(&cert.to_binary().unwrap()).unwrap();
        assert_eq!(
            parsed.user_ids(),
            ["demo feed key (usign 0011223344556677)"]
        );
        let armored = Certificate::parse(cert.to_armored().unwrap().as_bytes()).unwrap();
        assert_eq!(armored.fingerprint(), s.fingerprint());

        let text = "Origin: demo\nSuite: stable\nSHA256:\n abc 1 Packages\n";
        let signed = s.clearsign(text, 1_700_000_000).unwrap();
        assert!(signed.starts_with("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n"));
        assert!(signed.contains(text));
        assert_eq!(
            parsed.verify_clearsigned(&signed).unwrap(),
            text.strip_suffix('\n').unwrap()
        );
        let edited = signed.replace("Suite: stable", "Suite: evil!");
        assert!(parsed.verify_clearsigned(&edited).is_err());

        let detached = s.detached_armored(text.as_bytes(), 1_700_000_000).unwrap();
        assert!(detached.starts_with("-----BEGIN PGP SIGNATURE-----"));
        parsed.verify_detached(&detached, text.as_bytes()).unwrap();
        assert!(parsed.verify_detached(&detached, b"other").is_err());

        let public = parsed.ed25519_public().unwrap();
        assert_eq!(
            verify_clearsigned_by(&public, &signed).unwrap(),
            parsed.verify_clearsigned(&signed).unwrap()
        );
        verify_detached_by(&public, &detached, text.as_bytes()).unwrap();
        assert!(verify_clearsigned_by(&public, &edited).is_err());
        assert!(verify_detached_by(&public, &detached, b"other").is_err());
        assert!(verify_clearsigned_by(&[5; 32], &signed).is_err());

        let other = Signer::from_seed(&[9; 32]).unwrap();
        let other_cert = other.certificate("o").unwrap();
        assert!(other_cert.verify_clearsigned(&signed).is_err());
    }

    #[test]
    fn user_id_names_the_usign_key() {
        assert_eq!(user_id(None, "ab"), "feed key (usign ab)");
        assert_eq!(user_id(Some(" x "), "ab"), "x feed key (usign ab)");
        assert!(
            Signer::from_seed(&SEED)
                .unwrap()
                .certificate("a\nb")
                .is_err()
        );
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert!(matches!(
            Certificate::parse(b"not a key"),
            Err(Error::BadCertificate(_))
        ));
    }
}
