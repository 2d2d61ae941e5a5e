//! Keys made every way a pipeline needs (docs/formats.md §4.6): derived from a CI secret
//! (`archman keygen --seed-env VAR | --seed-file FILE`), read from OpenSSL's PKCS#8 PEM
//! (`--import-pem`, `archman sign --pem`), and the passphrase files that protect secret keys.
//!
//! **Derivation.** HKDF-SHA-256 (RFC 5869) with the fixed salt [`SALT`]:
//! - the 32-byte Ed25519 seed is `HKDF(salt = SALT, ikm = secret, info = SEED_INFO, L = 32)`;
//! - the usign key number of every key archman derives or reads from PEM is the first 8 bytes
//!   of `HKDF(salt = SALT, ikm = Ed25519 public key, info = KEY_NUMBER_INFO, L = 8)`.
//!
//! The key number is made from the public key rather than from the secret, so that one key
//! has one number whichever way it comes: derived from a secret, exported with `archman key
//! export --pem` and imported again, or used directly by `archman sign --pem`. The info
//! strings end in a version: a change to the derivation gets a new string, never a silent
//! change of the keys that existing secrets make.
//!
//! HKDF is written here over the `hmac` crate (already used for the index cache) rather than
//! taken from the `hkdf` crate: it is a dozen lines, checked against RFC 5869's own test
//! vectors below, and adds no dependency.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use feeds::usign::{self, Fingerprint, SecretKey};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The HKDF salt of every derivation.
pub const SALT: &[u8] = b"archman usign key derivation v1";
/// The HKDF info string of the Ed25519 seed derived from a secret.
pub const SEED_INFO: &[u8] = b"archman keygen seed v1";
/// The HKDF info string of the key number derived from a public key.
pub const KEY_NUMBER_INFO: &[u8] = b"archman key number v1";
/// The shortest secret a key is derived from, in bytes.
pub const MIN_SECRET_LEN: usize = 32;
/// The longest seed file read, in bytes.
pub const MAX_SECRET_FILE_LEN: u64 = 64 * 1024;
/// The longest passphrase file read, in bytes (signify reads at most 1023 bytes).
pub const MAX_PASSPHRASE_FILE_LEN: u64 = 1024;

/// Where a secret came from; shown as the option that named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretOrigin {
    /// `--seed-env VAR`.
    Env(String),
    /// `--seed-file FILE`.
    File(PathBuf),
}

impl fmt::Display for SecretOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretOrigin::Env(var) => write!(f, "--seed-env {var}"),
            SecretOrigin::File(path) => write!(f, "--seed-file {}", path.display()),
        }
    }
}

/// Making or reading a key failed. No message contains a secret or a passphrase.
#[derive(Debug, thiserror::Error)]
pub enum KeygenError {
    #[error("{origin}: secret is {len} bytes; at least {MIN_SECRET_LEN} needed")]
    SecretTooShort { origin: SecretOrigin, len: usize },
    #[error("{origin}: the environment variable is not set")]
    EnvUnset { origin: SecretOrigin },
    #[error("{origin}: larger than {MAX_SECRET_FILE_LEN} bytes")]
    SecretFileTooLarge { origin: SecretOrigin },
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: passphrase file {problem}", path.display())]
    BadPassphraseFile {
        path: PathBuf,
        problem: &'static str,
    },
    #[error(transparent)]
    Usign(#[from] usign::Error),
}

/// A secret a key is derived from: the bytes exactly as given. `Debug` does not show them.
pub struct Secret {
    bytes: Vec<u8>,
    origin: SecretOrigin,
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secret")
            .field("origin", &self.origin)
            .field("len", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

impl Secret {
    /// The secret `bytes` from `origin`; refused when shorter than [`MIN_SECRET_LEN`].
    pub fn new(bytes: Vec<u8>, origin: SecretOrigin) -> Result<Secret, KeygenError> {
        if bytes.len() < MIN_SECRET_LEN {
            return Err(KeygenError::SecretTooShort {
                origin,
                len: bytes.len(),
            });
        }
        Ok(Secret { bytes, origin })
    }

    /// The value of the environment variable `var`, its bytes exactly.
    pub fn from_env(var: &str) -> Result<Secret, KeygenError> {
        use std::os::unix::ffi::OsStringExt;
        let origin = SecretOrigin::Env(var.into());
        match std::env::var_os(var) {
            Some(value) => Secret::new(value.into_vec(), origin),
            None => Err(KeygenError::EnvUnset { origin }),
        }
    }

    /// The bytes of the file at `path`, exactly: a trailing newline is part of the secret.
    /// Any readable file is read (a pipe such as `<(vault read …)` too), up to
    /// [`MAX_SECRET_FILE_LEN`] bytes.
    pub fn from_file(path: &Path) -> Result<Secret, KeygenError> {
        let origin = SecretOrigin::File(path.into());
        let bytes =
            read_capped(path, MAX_SECRET_FILE_LEN)?.ok_or(KeygenError::SecretFileTooLarge {
                origin: origin.clone(),
            })?;
        Secret::new(bytes, origin)
    }

    /// Where the secret came from.
    pub fn origin(&self) -> &SecretOrigin {
        &self.origin
    }

    /// The key pair this secret derives (see the module documentation): the same secret
    /// always gives the same key, key number and files.
    pub fn derive_key(&self) -> Result<SecretKey, KeygenError> {
        let mut seed = [0; 32];
        hkdf_sha256(SALT, &self.bytes, SEED_INFO, &mut seed);
        Ok(SecretKey::from_seed_with_key_number(seed, key_number)?)
    }
}

/// The usign key number archman gives a key that has none of its own (derived, or read from
/// PEM): the first 8 bytes of HKDF-SHA-256 of its Ed25519 public key (module documentation).
pub fn key_number(public_key: &[u8; 32]) -> Fingerprint {
    let mut number = [0; 8];
    hkdf_sha256(SALT, public_key, KEY_NUMBER_INFO, &mut number);
    Fingerprint::new(number)
}

/// Reads an Ed25519 private key in PKCS#8 PEM (`openssl genpkey -algorithm ed25519`) as a
/// usign secret key numbered by [`key_number`]; errors name the file and what it holds.
pub fn read_pem(path: &Path) -> Result<SecretKey, KeygenError> {
    Ok(SecretKey::read_pkcs8_pem_path(path, key_number)?)
}

/// The passphrase in the file at `path`: its first line, as signify reads a passphrase, so
/// the trailing newline (`\n` or `\r\n`) is not part of it. A file that is empty, or has a
/// second line, is refused.
pub fn read_passphrase_file(path: &Path) -> Result<Vec<u8>, KeygenError> {
    let bad = |problem| KeygenError::BadPassphraseFile {
        path: path.into(),
        problem,
    };
    let mut bytes = read_capped(path, MAX_PASSPHRASE_FILE_LEN)?
        .ok_or_else(|| bad("is too large (more than 1024 bytes)"))?;
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
    if bytes.contains(&b'\n') || bytes.contains(&b'\r') {
        return Err(bad("has more than one line (the passphrase is one line)"));
    }
    if bytes.is_empty() {
        return Err(bad("is empty"));
    }
    Ok(bytes)
}

/// At most `max` bytes of the file at `path`; `None` when it has more.
fn read_capped(path: &Path, max: u64) -> Result<Option<Vec<u8>>, KeygenError> {
    let read_err = |source| KeygenError::Read {
        path: path.into(),
        source,
    };
    let mut bytes = Vec::new();
    File::open(path)
        .map_err(read_err)?
        .take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    Ok((bytes.len() as u64 <= max).then_some(bytes))
}

/// HKDF-SHA-256 (RFC 5869 section 2): extract `PRK = HMAC(salt, ikm)`, then expand
/// `T(i) = HMAC(PRK, T(i-1) | info | i)` into `okm`. `okm` is at most 255 × 32 bytes.
pub fn hkdf_sha256(salt: &[u8], ikm: &[u8], info: &[u8], okm: &mut [u8]) {
    assert!(
        okm.len() <= 255 * 32,
        "HKDF-SHA-256 output is at most 8160 bytes"
    );
    let hmac = |key: &[u8]| Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    let mut extract = hmac(salt);
    extract.update(ikm);
    let prk = extract.finalize().into_bytes();
    let mut previous: Vec<u8> = Vec::new();
    for (i, chunk) in okm.chunks_mut(32).enumerate() {
        let mut expand = hmac(&prk);
        expand.update(&previous);
        expand.update(info);
        expand.update(&[i as u8 + 1]);
        let block = expand.finalize().into_bytes();
        chunk.copy_from_slice(&block[..chunk.len()]);
        previous = block.to_vec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn hkdf_hex(salt: &str, ikm: &str, info: &str, len: usize) -> String {
        let mut okm = vec![0; len];
        hkdf_sha256(
            &hex::decode(salt).unwrap(),
            &hex::decode(ikm).unwrap(),
            &hex::decode(info).unwrap(),
            &mut okm,
        );
        hex::encode(okm)
    }

    #[test]
    fn hkdf_matches_rfc5869_test_vectors() {
        // RFC 5869 appendix A.1, A.2 and A.3 (the SHA-256 cases)
        assert_eq!(
            hkdf_hex(
                "000102030405060708090a0b0c",
                "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b",
                "f0f1f2f3f4f5f6f7f8f9",
                42
            ),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf\
             34007208d5b887185865"
        );
        let seq = |from: u8, to: u8| hex::encode((from..=to).collect::<Vec<u8>>());
        assert_eq!(
            hkdf_hex(&seq(0x60, 0xaf), &seq(0x00, 0x4f), &seq(0xb0, 0xff), 82),
            "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c\
             59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71\
             cc30c58179ec3e87c14c01d5c1f3434f1d87"
        );
        assert_eq!(
            hkdf_hex("", "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b", "", 42),
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d\
             9d201395faa4b61a96c8"
        );
    }

    /// The known-answer secret: 46 bytes.
    const KAT_SECRET: &[u8] = b"archman keygen known-answer test secret, v1 ok";

    #[test]
    fn derived_key_known_answer() {
        // Computed independently with OpenSSL 3.0:
        //   openssl kdf -keylen 32 -kdfopt digest:SHA256 -kdfopt key:<KAT_SECRET>
        //     -kdfopt salt:<SALT> -kdfopt info:<SEED_INFO> HKDF          -> the seed
        //   the seed as PKCS#8 DER, openssl pkey -pubout                 -> the public key
        //   openssl kdf -keylen 8 ... -kdfopt hexkey:<public key>
        //     -kdfopt info:<KEY_NUMBER_INFO> HKDF                         -> the key number
        let secret = Secret::new(KAT_SECRET.to_vec(), SecretOrigin::Env("KAT".into())).unwrap();
        let key = secret.derive_key().unwrap();
        let mut seed = [0; 32];
        hkdf_sha256(SALT, KAT_SECRET, SEED_INFO, &mut seed);
        assert_eq!(hex::encode(seed), KAT_SEED);
        assert_eq!(key.fingerprint().to_string(), KAT_KEY_NUMBER);
        assert_eq!(
            String::from_utf8(key.public_key().to_file_bytes()).unwrap(),
            format!("untrusted comment: public key {KAT_KEY_NUMBER}\n{KAT_PUBLIC_LINE}\n")
        );
        assert_eq!(hex::encode(key.public_key().as_bytes()), KAT_PUBLIC_KEY);
        // the whole secret key file is reproducible too (zero salt, default comment)
        assert_eq!(
            secret.derive_key().unwrap().to_file_bytes(),
            key.to_file_bytes()
        );
    }

    const KAT_SEED: &str = "7a76f99202174b0ed20f66e39d0e2c3581435849c7dff296924ef0eedce5e690";
    const KAT_PUBLIC_KEY: &str = "4d8c486257574edb0d6fbed000722c1a6a4b98dadf620de11f9398da9408c5df";
    const KAT_KEY_NUMBER: &str = "fb16f51bc8dbf5ad";
    /// base64 of "Ed", the key number and the public key (built with xxd and base64).
    const KAT_PUBLIC_LINE: &str = "RWT7FvUbyNv1rU2MSGJXV07bDW++0AByLBpqS5ja32IN4R+TmNqUCMXf";

    #[test]
    fn one_key_one_number_whichever_way_it_comes() {
        let secret = Secret::new(vec![7; 32], SecretOrigin::Env("S".into())).unwrap();
        let key = secret.derive_key().unwrap();
        assert_eq!(key.fingerprint(), key_number(key.public_key().as_bytes()));
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("k.pem");
        fs::write(&pem, key.to_pkcs8_pem()).unwrap();
        assert_eq!(read_pem(&pem).unwrap().to_file_bytes(), key.to_file_bytes());
        // one byte more is another key and another number
        let other = Secret::new(vec![7; 33], SecretOrigin::Env("S".into()))
            .unwrap()
            .derive_key()
            .unwrap();
        assert_ne!(other.public_key().as_bytes(), key.public_key().as_bytes());
        assert_ne!(other.fingerprint(), key.fingerprint());
    }

    #[test]
    fn short_secrets_are_refused_naming_their_origin() {
        let err = Secret::new(vec![1; 12], SecretOrigin::Env("CI_KEY_SEED".into())).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--seed-env CI_KEY_SEED: secret is 12 bytes; at least 32 needed"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seed");
        fs::write(&path, [b'x'; 31]).unwrap();
        let err = Secret::from_file(&path).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "--seed-file {}: secret is 31 bytes; at least 32 needed",
                path.display()
            )
        );
        // the file's bytes exactly: 31 bytes and a newline are 32
        fs::write(&path, [&[b'x'; 31][..], b"\n"].concat()).unwrap();
        let with_newline = Secret::from_file(&path).unwrap();
        assert_eq!(with_newline.bytes.len(), 32);
        fs::write(&path, vec![b'x'; MAX_SECRET_FILE_LEN as usize + 1]).unwrap();
        assert!(matches!(
            Secret::from_file(&path),
            Err(KeygenError::SecretFileTooLarge { .. })
        ));
        let missing = Secret::from_file(&dir.path().join("none")).unwrap_err();
        assert!(matches!(missing, KeygenError::Read { .. }), "{missing}");
        let unset = Secret::from_env("ARCHMAN_TEST_SURELY_UNSET_VARIABLE").unwrap_err();
        assert_eq!(
            unset.to_string(),
            "--seed-env ARCHMAN_TEST_SURELY_UNSET_VARIABLE: the environment variable is not set"
        );
    }

    #[test]
    fn debug_hides_the_secret() {
        let secret = Secret::new(
            b"CANARY-0123456789-0123456789-0123456789".to_vec(),
            SecretOrigin::Env("V".into()),
        )
        .unwrap();
        let debug = format!("{secret:?}");
        assert!(!debug.contains("CANARY"), "{debug}");
        assert!(debug.contains("len: 39"), "{debug}");
    }

    #[test]
    fn passphrase_files_are_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pass");
        for (content, expected) in [
            (&b"correct horse\n"[..], &b"correct horse"[..]),
            (b"correct horse\r\n", b"correct horse"),
            (b"correct horse", b"correct horse"),
            (b" spaces kept \n", b" spaces kept "),
        ] {
            fs::write(&path, content).unwrap();
            assert_eq!(read_passphrase_file(&path).unwrap(), expected);
        }
        for (content, problem) in [
            (&b""[..], "is empty"),
            (b"\n", "is empty"),
            (b"one\ntwo\n", "has more than one line"),
            (b"one\n\n", "has more than one line"),
            (b"one\rtwo", "has more than one line"),
        ] {
            fs::write(&path, content).unwrap();
            let err = read_passphrase_file(&path).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("{}: passphrase file {problem}", path.display())),
                "{content:?}: {err}"
            );
        }
        fs::write(&path, vec![b'p'; 1025]).unwrap();
        assert!(
            read_passphrase_file(&path)
                .unwrap_err()
                .to_string()
                .contains("too large")
        );
    }
}
