//! usign / OpenBSD signify Ed25519 keys, signatures and key fingerprints: parsing and writing
//! the two-line files (`untrusted comment: …` + base64), key generation, signing, verification,
//! passphrase-protected (bcrypt_pbkdf) secret keys, and usign's key directories
//! (`/etc/opkg/keys/<fingerprint>`).
//!
//! The reference is usign's `main.c` (openwrt/usign, commit c4c72b1) and its `base64.c`.
//! Decisions where usign and signify differ or are loose:
//! - Line 1 is any text up to the first `\n`, as usign reads it: `get_file` skips it unseen
//!   (`main.c` lines 118-128), so a file whose line 1 is empty, or is not `untrusted
//!   comment: …`, is read. Only a NUL byte on line 1 is refused: usign's `strchr` would miss the
//!   line's end and skip line 2 as well. A file without a `\n` is refused (usign's "Premature
//!   end of file").
//! - The data after line 1 is decoded as usign's `b64_decode` does: ASCII whitespace is skipped
//!   anywhere (so CRLF line endings, a trailing blank line or a base64 line split in two are
//!   read); the rest must be canonical padded base64 of exactly the expected blob, starting
//!   `Ed`. usign reads only the first [`USIGN_READ_LEN`] bytes after line 1 (`main.c`
//!   line 130) and stops at a NUL byte; data past that is refused here — base64 that usign
//!   would cut short as well as junk it would never see. Files over [`MAX_FILE_LEN`] bytes are
//!   refused.
//! - The comment ([`Signature::comment`] etc.) is line 1 less its `untrusted comment: ` prefix
//!   (all of line 1 when it has none), untrusted display text never used for a decision. It is
//!   read so that it can be written back: invalid UTF-8 and a carriage return inside become
//!   U+FFFD, a final `\r` is dropped, and it is cut to [`MAX_COMMENT_LEN`] bytes. A comment we
//!   write must be non-empty and free of line breaks and NUL, or signify could not read it.
//! - Fingerprints are written as 16 lower-case hex digits, zero-padded, as usign prints them
//!   (`"%016"PRIx64`, `main.c` lines 152, 180 and 279): in the default comments and as key
//!   file names. A key directory is searched under that name and then, for keys stored by
//!   usign before 2020 (which printed no leading zeros), under [`Fingerprint::unpadded`].
//! - Encrypted secret keys may claim at most [`MAX_KDF_ROUNDS`] rounds (signify always uses
//!   42), so a hostile key file cannot stall us in the KDF.
//! - PEM (OpenSSL's forms, docs/formats.md §4.6): an Ed25519 private key is read and written
//!   as PKCS#8 v1 (`-----BEGIN PRIVATE KEY-----`, version 0, no attributes, no embedded public
//!   key: what `openssl genpkey -algorithm ed25519` writes), a public key is written as
//!   SubjectPublicKeyInfo (`-----BEGIN PUBLIC KEY-----`). Neither carries usign's key number
//!   nor a comment: the caller supplies the key number when reading
//!   ([`SecretKey::from_pkcs8_pem`]).

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_compact::{KeyPair, Seed};
use safe_fs::WriteOptions;
use sha2::{Digest, Sha512};

/// The prefix of line 1 of every file written (any line 1 is read).
pub const COMMENT_HEADER: &str = "untrusted comment: ";
/// The longest comment written (signify's `COMMENTMAXLEN` less its NUL); a longer one read
/// is cut to this length.
pub const MAX_COMMENT_LEN: usize = 1023;
/// The largest key or signature file accepted.
pub const MAX_FILE_LEN: usize = 4096;
/// How many bytes after line 1 usign reads and decodes (`main.c` line 130: `fread` of
/// `buflen - 1` bytes, `buflen` being 511); nothing but whitespace may follow them.
pub const USIGN_READ_LEN: usize = 510;
/// The bcrypt_pbkdf rounds signify uses when it encrypts a secret key.
pub const DEFAULT_KDF_ROUNDS: u32 = 42;
/// The most bcrypt_pbkdf rounds an encrypted secret key may ask for.
pub const MAX_KDF_ROUNDS: u32 = 1024;

const PKALG: [u8; 2] = *b"Ed";
const KDFALG: [u8; 2] = *b"BK";
const PUBLIC_LEN: usize = 42;
const SECRET_LEN: usize = 104;
const SIGNATURE_LEN: usize = 74;

/// Which kind of file an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    PublicKey,
    SecretKey,
    Signature,
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileKind::PublicKey => "public key",
            FileKind::SecretKey => "secret key",
            FileKind::Signature => "signature",
        })
    }
}

/// Reading, parsing, creating or writing a key or signature failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{kind}: file is {len} bytes, more than the {MAX_FILE_LEN} allowed")]
    TooLarge { kind: FileKind, len: u64 },
    #[error("{kind}: comment is {len} bytes, more than the {MAX_COMMENT_LEN} allowed")]
    CommentTooLong { kind: FileKind, len: usize },
    #[error("{kind}: comment {reason}")]
    BadComment {
        kind: FileKind,
        reason: &'static str,
    },
    #[error("{kind}: missing line 2 (the base64 data)")]
    MissingData { kind: FileKind },
    #[error("{kind}: bad base64 on line 2: {source}")]
    Base64 {
        kind: FileKind,
        source: base64::DecodeError,
    },
    #[error("{kind}: decoded length {actual}, expected {expected}")]
    Length {
        kind: FileKind,
        actual: usize,
        expected: usize,
    },
    #[error("{kind}: algorithm \"{found}\", expected \"Ed\"")]
    Algorithm { kind: FileKind, found: String },
    #[error("secret key: KDF algorithm \"{found}\", expected \"BK\"")]
    KdfAlgorithm { found: String },
    #[error("{kind}: unexpected data after line 2")]
    TrailingData { kind: FileKind },
    #[error("{kind}: data goes on past the {USIGN_READ_LEN} bytes after line 1 that usign reads")]
    BeyondUsignRead { kind: FileKind },
    #[error("secret key is passphrase-protected (kdfrounds {rounds})")]
    Encrypted { rounds: u32 },
    #[error("secret key: kdfrounds {rounds} is more than the {MAX_KDF_ROUNDS} allowed")]
    TooManyRounds { rounds: u32 },
    #[error("secret key: empty passphrase")]
    EmptyPassphrase,
    #[error("secret key: bcrypt_pbkdf failed: {0}")]
    Kdf(String),
    #[error("secret key: wrong passphrase (checksum mismatch)")]
    WrongPassphrase,
    #[error("secret key: checksum mismatch (corrupted key)")]
    Checksum,
    #[error("secret key: the seed is all zeros")]
    ZeroSeed,
    #[error("secret key: stored public key does not match the seed (corrupted key)")]
    PublicKeyMismatch,
    #[error("fingerprint {text:?}: expected 1 to 16 hex digits")]
    Fingerprint { text: String },
    #[error("reading the message to sign: {0}")]
    ReadMessage(io::Error),
    #[error("{kind} {}: {source}", path.display())]
    Io {
        kind: FileKind,
        path: PathBuf,
        source: io::Error,
    },
    /// Writing a key or signature file failed (the error names the path and the step).
    #[error("{kind} {error}")]
    Write {
        kind: FileKind,
        error: safe_fs::FsError,
    },
    #[error("{}: already exists; not overwriting a secret key without force", path.display())]
    Exists { path: PathBuf },
    #[error("{}: {source}", path.display())]
    InFile { path: PathBuf, source: Box<Error> },
    #[error("random number generator failed: {0}")]
    Random(getrandom::Error),
    #[error("signing failed: the new signature does not verify")]
    SelfCheck,
    /// A PEM file is not an Ed25519 private key in the PKCS#8 form read here.
    #[error(transparent)]
    Pem(#[from] PemError),
}

/// Why a PEM file is not an Ed25519 private key that [`SecretKey::from_pkcs8_pem`] reads. Each
/// message says what was found and what is expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PemError {
    #[error("not a PEM file: it is not text")]
    NotText,
    #[error("not a PEM file: no -----BEGIN ...----- line; {PEM_EXPECTED}")]
    NoBlock,
    #[error("{}", wrong_block(label))]
    WrongBlock { label: String },
    #[error("the -----BEGIN PRIVATE KEY----- block has no -----END PRIVATE KEY----- line")]
    Unterminated,
    #[error("bad base64 inside the -----BEGIN PRIVATE KEY----- block")]
    Base64,
    #[error("not an Ed25519 key: the PKCS#8 block holds {0}; {PEM_EXPECTED}")]
    NotEd25519(&'static str),
    #[error(
        "an Ed25519 key in a PKCS#8 form that is not read here (only version 0 without \
         attributes or an embedded public key, as OpenSSL writes it)"
    )]
    OtherForm,
    #[error("the Ed25519 seed is all zeros")]
    ZeroSeed,
}

/// What a private key PEM file must be, for error messages.
const PEM_EXPECTED: &str = "expected an Ed25519 private key in PKCS#8 PEM \
    (-----BEGIN PRIVATE KEY-----, as `openssl genpkey -algorithm ed25519` writes)";

fn wrong_block(label: &str) -> String {
    let what = match label {
        "PUBLIC KEY" => "a public key, but a private key is needed",
        "ENCRYPTED PRIVATE KEY" => {
            "an encrypted PKCS#8 key, which is not read: decrypt it first \
             (openssl pkey -in FILE -out PLAIN.pem asks for its passphrase)"
        }
        "OPENSSH PRIVATE KEY" => "an OpenSSH private key, which is not read",
        "RSA PRIVATE KEY" => "an RSA key",
        "EC PRIVATE KEY" => "an EC key",
        _ => "not a private key this reads",
    };
    format!("-----BEGIN {label}-----: {what}; {PEM_EXPECTED}")
}

impl Error {
    /// The error itself, or for [`Error::InFile`] the error inside (to match on
    /// [`Error::Encrypted`] after `read_path`).
    pub fn root(&self) -> &Error {
        match self {
            Error::InFile { source, .. } => source.root(),
            other => other,
        }
    }
}

/// A signature did not verify.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("signature is by key {signature}, but the public key is {key}")]
    FingerprintMismatch {
        key: Fingerprint,
        signature: Fingerprint,
    },
    #[error("bad signature by key {0}: the message or the signature was altered")]
    BadSignature(Fingerprint),
    #[error("no public key {fingerprint} in {}", dir.display())]
    NoKey {
        fingerprint: Fingerprint,
        dir: PathBuf,
    },
    #[error(transparent)]
    Key(#[from] Error),
}

/// The 8-byte key number tying a signature to its key, shown as 16 lower-case hex digits,
/// zero-padded, as usign prints it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint([u8; 8]);

impl Fingerprint {
    pub const fn new(bytes: [u8; 8]) -> Self {
        Fingerprint(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 8] {
        &self.0
    }

    /// Hex without leading zeros: how usign printed fingerprints before its commit f1f6502
    /// (2020), so the name of some keys in key directories made then. Never written by us.
    pub fn unpadded(&self) -> String {
        format!("{:x}", u64::from_be_bytes(self.0))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", u64::from_be_bytes(self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl FromStr for Fingerprint {
    type Err = Error;

    /// Accepts 1 to 16 hex digits, so both the padded form and the unpadded one of old usign.
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || Error::Fingerprint { text: s.into() };
        if s.is_empty() || s.len() > 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let value = u64::from_str_radix(s, 16).map_err(|_| bad())?;
        Ok(Fingerprint(value.to_be_bytes()))
    }
}

/// An Ed25519 public key as usign/signify store it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    fingerprint: Fingerprint,
    key: [u8; 32],
    comment: String,
}

impl PublicKey {
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        let (comment, blob) = parse_file::<PUBLIC_LEN>(FileKind::PublicKey, bytes)?;
        Ok(PublicKey {
            fingerprint: Fingerprint(field(&blob, 2)),
            key: field(&blob, 10),
            comment,
        })
    }

    pub fn read_path(path: &Path) -> Result<Self, Error> {
        read_path(FileKind::PublicKey, path, PublicKey::parse)
    }

    pub fn to_file_bytes(&self) -> Vec<u8> {
        let blob = [&PKALG[..], &self.fingerprint.0, &self.key].concat();
        encode_file(&self.comment, &blob)
    }

    /// Writes the file atomically (temporary file in the same directory, then rename).
    pub fn write_path(&self, path: &Path) -> Result<(), Error> {
        write_atomic(FileKind::PublicKey, path, &self.to_file_bytes(), 0o644)
    }

    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.key
    }

    /// The key as SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`), byte for byte what
    /// `openssl pkey -pubout` writes for it. The key number and comment are not in it.
    pub fn to_spki_pem(&self) -> String {
        ed25519_compact::PublicKey::new(self.key).to_pem()
    }

    pub fn comment(&self) -> &str {
        &self.comment
    }

    pub fn with_comment(mut self, comment: &str) -> Result<Self, Error> {
        check_comment(FileKind::PublicKey, comment)?;
        self.comment = comment.into();
        Ok(self)
    }

    /// Starts checking `signature` over a message given in parts ([`Verifier::update`]), so
    /// that a large file need not be held whole in memory.
    pub fn verifier(&self, signature: &Signature) -> Result<Verifier, VerifyError> {
        if signature.fingerprint != self.fingerprint {
            return Err(VerifyError::FingerprintMismatch {
                key: self.fingerprint,
                signature: signature.fingerprint,
            });
        }
        let state = crate::ed25519_verify::Verifying::new(&self.key, &signature.sig)
            .ok_or(VerifyError::BadSignature(self.fingerprint))?;
        Ok(Verifier {
            state,
            fingerprint: self.fingerprint,
        })
    }

    /// Checks that `signature` is this key's signature of `message`.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), VerifyError> {
        if signature.fingerprint != self.fingerprint {
            return Err(VerifyError::FingerprintMismatch {
                key: self.fingerprint,
                signature: signature.fingerprint,
            });
        }
        crate::ed25519_verify::verify(&self.key, &signature.sig, message)
            .then_some(())
            .ok_or(VerifyError::BadSignature(self.fingerprint))
    }
}

/// A signature check over a message given in parts ([`PublicKey::verifier`]).
pub struct Verifier {
    state: crate::ed25519_verify::Verifying,
    fingerprint: Fingerprint,
}

impl Verifier {
    /// Adds the next part of the message.
    pub fn update(&mut self, part: &[u8]) {
        self.state.absorb(part);
    }

    /// Whether the signature is valid for everything given.
    pub fn finish(self) -> Result<(), VerifyError> {
        self.state
            .verify()
            .then_some(())
            .ok_or(VerifyError::BadSignature(self.fingerprint))
    }
}

/// An Ed25519 secret key. Its `Debug` shows the fingerprint, public key and comment only.
#[derive(Clone)]
pub struct SecretKey {
    fingerprint: Fingerprint,
    keypair: KeyPair,
    salt: [u8; 16],
    comment: String,
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretKey")
            .field("fingerprint", &self.fingerprint)
            .field("public_key", &hex::encode(*self.keypair.pk))
            .field("comment", &self.comment)
            .finish_non_exhaustive()
    }
}

impl SecretKey {
    /// A new random key pair, as `usign -G` makes it. `comment` replaces the default comments
    /// (`private key <fp>`, `public key <fp>`) of both keys.
    pub fn generate(comment: Option<&str>) -> Result<(SecretKey, PublicKey), Error> {
        let mut secret = SecretKey::from_seed(random()?, Fingerprint(random()?))?;
        secret.salt = random()?;
        let public = secret.public_key();
        match comment {
            None => Ok((secret, public)),
            Some(comment) => Ok((secret.with_comment(comment)?, public.with_comment(comment)?)),
        }
    }

    /// The key pair of a given seed and fingerprint, with usign's zero salt and default
    /// comment: the same arguments give the same files.
    pub fn from_seed(seed: [u8; 32], fingerprint: Fingerprint) -> Result<SecretKey, Error> {
        let keypair = KeyPair::try_from_seed(Seed::new(seed)).map_err(|_| Error::ZeroSeed)?;
        Ok(SecretKey::from_keypair(keypair, fingerprint))
    }

    /// [`SecretKey::from_seed`] with the key number made from the Ed25519 public key by
    /// `key_number` (keys that come with no key number of their own: derived, or read from
    /// PEM).
    pub fn from_seed_with_key_number(
        seed: [u8; 32],
        key_number: impl FnOnce(&[u8; 32]) -> Fingerprint,
    ) -> Result<SecretKey, Error> {
        let keypair = KeyPair::try_from_seed(Seed::new(seed)).map_err(|_| Error::ZeroSeed)?;
        let fingerprint = key_number(&keypair.pk);
        Ok(SecretKey::from_keypair(keypair, fingerprint))
    }

    fn from_keypair(keypair: KeyPair, fingerprint: Fingerprint) -> SecretKey {
        SecretKey {
            fingerprint,
            keypair,
            salt: [0; 16],
            comment: format!("private key {fingerprint}"),
        }
    }

    /// Reads an Ed25519 private key in PKCS#8 PEM, as `openssl genpkey -algorithm ed25519`
    /// writes it (the first `-----BEGIN PRIVATE KEY-----` block; other blocks are ignored).
    /// PEM has no key number: `key_number` makes it from the public key. Errors say what the
    /// file holds instead ([`PemError`]).
    pub fn from_pkcs8_pem(
        pem: &[u8],
        key_number: impl FnOnce(&[u8; 32]) -> Fingerprint,
    ) -> Result<SecretKey, Error> {
        let text = std::str::from_utf8(pem).map_err(|_| PemError::NotText)?;
        let labels: Vec<&str> = text
            .lines()
            .filter_map(|line| {
                line.trim()
                    .strip_prefix("-----BEGIN ")?
                    .strip_suffix("-----")
            })
            .collect();
        if !labels.contains(&"PRIVATE KEY") {
            return Err(match labels.first() {
                None => PemError::NoBlock,
                Some(label) => PemError::WrongBlock {
                    label: (*label).into(),
                },
            }
            .into());
        }
        let keypair = KeyPair::from_pem(text).map_err(|err| match err {
            ed25519_compact::Error::InvalidSeed => PemError::ZeroSeed,
            _ => pkcs8_problem(text),
        })?;
        let seed: [u8; 32] = *keypair.sk.seed();
        SecretKey::from_seed_with_key_number(seed, key_number)
    }

    /// [`SecretKey::from_pkcs8_pem`] of the file at `path` (at most [`MAX_FILE_LEN`] bytes);
    /// errors name the path.
    pub fn read_pkcs8_pem_path(
        path: &Path,
        key_number: impl FnOnce(&[u8; 32]) -> Fingerprint,
    ) -> Result<SecretKey, Error> {
        read_path(FileKind::SecretKey, path, |bytes| {
            SecretKey::from_pkcs8_pem(bytes, key_number)
        })
    }

    /// The key as PKCS#8 v1 PEM, byte for byte what `openssl pkey` writes for it. It holds
    /// the secret seed: write it mode 0600. The key number and comment are not in it.
    pub fn to_pkcs8_pem(&self) -> String {
        self.keypair.sk.to_pem()
    }

    /// Parses a secret key file. A passphrase-protected key needs `passphrase` (else
    /// [`Error::Encrypted`]); an unprotected key ignores it.
    pub fn parse(bytes: &[u8], passphrase: Option<&[u8]>) -> Result<Self, Error> {
        let (comment, blob) = parse_file::<SECRET_LEN>(FileKind::SecretKey, bytes)?;
        let kdfalg: [u8; 2] = field(&blob, 2);
        if kdfalg != KDFALG {
            return Err(Error::KdfAlgorithm {
                found: kdfalg.escape_ascii().to_string(),
            });
        }
        let rounds = u32::from_be_bytes(field(&blob, 4));
        let salt: [u8; 16] = field(&blob, 8);
        let checksum: [u8; 8] = field(&blob, 24);
        let fingerprint = Fingerprint(field(&blob, 32));
        let mut secret: [u8; 64] = field(&blob, 40);
        if rounds != 0 {
            let passphrase = passphrase.ok_or(Error::Encrypted { rounds })?;
            xor(&mut secret, &kdf(passphrase, &salt, rounds)?);
        }
        if !same(&checksum_of(&secret), &checksum) {
            return Err(match rounds {
                0 => Error::Checksum,
                _ => Error::WrongPassphrase,
            });
        }
        let mut key = SecretKey::from_seed(field(&secret, 0), fingerprint)?;
        if *key.keypair.pk != field::<32>(&secret, 32) {
            return Err(Error::PublicKeyMismatch);
        }
        key.salt = salt;
        key.comment = comment;
        Ok(key)
    }

    pub fn read_path(path: &Path, passphrase: Option<&[u8]>) -> Result<Self, Error> {
        read_path(FileKind::SecretKey, path, |bytes| {
            SecretKey::parse(bytes, passphrase)
        })
    }

    /// The unprotected file (kdfrounds 0), as usign writes it.
    pub fn to_file_bytes(&self) -> Vec<u8> {
        self.encode(0, self.salt, None)
    }

    /// The file protected by `passphrase`, as signify writes it (42 rounds, fresh salt).
    pub fn to_encrypted_file_bytes(&self, passphrase: &[u8]) -> Result<Vec<u8>, Error> {
        self.encrypted_file_bytes(passphrase, DEFAULT_KDF_ROUNDS)
    }

    fn encrypted_file_bytes(&self, passphrase: &[u8], rounds: u32) -> Result<Vec<u8>, Error> {
        let salt = random()?;
        let xorkey = kdf(passphrase, &salt, rounds)?;
        Ok(self.encode(rounds, salt, Some(&xorkey)))
    }

    fn encode(&self, rounds: u32, salt: [u8; 16], xorkey: Option<&[u8; 64]>) -> Vec<u8> {
        let mut secret = *self.keypair.sk;
        let checksum = checksum_of(&secret);
        if let Some(xorkey) = xorkey {
            xor(&mut secret, xorkey);
        }
        let blob = [
            &PKALG[..],
            &KDFALG,
            &rounds.to_be_bytes(),
            &salt,
            &checksum,
            &self.fingerprint.0,
            &secret,
        ]
        .concat();
        encode_file(&self.comment, &blob)
    }

    /// Writes the key with mode 0600, protected by `passphrase` if given. Without `force` an
    /// existing file is an error ([`Error::Exists`]); with it the file is replaced atomically.
    pub fn write_path(
        &self,
        path: &Path,
        passphrase: Option<&[u8]>,
        force: bool,
    ) -> Result<(), Error> {
        let bytes = match passphrase {
            Some(passphrase) => self.to_encrypted_file_bytes(passphrase)?,
            None => self.to_file_bytes(),
        };
        if force {
            return write_atomic(FileKind::SecretKey, path, &bytes, 0o600);
        }
        safe_fs::write_new(path, &bytes, write_options(0o600)).map_err(|error| match error.kind() {
            io::ErrorKind::AlreadyExists => Error::Exists { path: path.into() },
            _ => Error::Write {
                kind: FileKind::SecretKey,
                error,
            },
        })
    }

    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// The 32-byte Ed25519 seed the key pair is made from: what the OpenPGP form of the key
    /// (`usign-openpgp`) is built from. Secret: never print or log it.
    pub fn seed(&self) -> [u8; 32] {
        *self.keypair.sk.seed()
    }

    pub fn comment(&self) -> &str {
        &self.comment
    }

    pub fn with_comment(mut self, comment: &str) -> Result<Self, Error> {
        check_comment(FileKind::SecretKey, comment)?;
        self.comment = comment.into();
        Ok(self)
    }

    /// The public half, with usign's default comment `public key <fp>`.
    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            fingerprint: self.fingerprint,
            key: *self.keypair.pk,
            comment: format!("public key {}", self.fingerprint),
        }
    }

    /// Signs `message` (deterministic Ed25519, like usign and signify) and checks the
    /// signature against the public key before returning it. Comment: `signed by key <fp>`.
    pub fn sign(&self, message: &[u8]) -> Result<Signature, Error> {
        self.sign_pieces(&[message])
    }

    /// [`SecretKey::sign`] of the message that is the concatenation of `pieces` (an index
    /// kept as its stanzas is signed without being copied into one buffer).
    pub fn sign_pieces(&self, pieces: &[&[u8]]) -> Result<Signature, Error> {
        let sig = crate::ed25519_sign::sign(&self.keypair.sk.seed(), &self.keypair.pk, pieces)
            .map_err(|_| Error::SelfCheck)?;
        Ok(self.signature(sig))
    }

    /// Signs `pieces` (any [`Message`]: slices, or a text read back in pieces) with the nonce
    /// derived from its SHA-256 (docs/formats.md §4.7): one SHA-256 pass and two SHA-512
    /// passes (challenge and check, side by side) instead of three SHA-512 passes. The
    /// SHA-256 goes to `digest` as soon as it is known. Any usign or signify verifies the
    /// signature; it is deterministic, but not the bytes [`SecretKey::sign_pieces`] gives.
    /// `Ok(None)` once `cancel` is set.
    pub fn sign_pieces_via_sha256_unless(
        &self,
        pieces: &(impl Message + ?Sized),
        cancel: &std::sync::atomic::AtomicBool,
        digest: impl FnOnce(&[u8; 32]),
    ) -> Result<Option<Signature>, Error> {
        let sig = crate::ed25519_sign::sign_via_sha256_unless(
            &self.keypair.sk.seed(),
            &self.keypair.pk,
            pieces,
            cancel,
            digest,
        )
        .map_err(|e| match e {
            crate::ed25519_sign::SignError::Read(e) => Error::ReadMessage(e),
            _ => Error::SelfCheck,
        })?;
        Ok(sig.map(|sig| self.signature(sig)))
    }

    fn signature(&self, sig: [u8; 64]) -> Signature {
        Signature {
            fingerprint: self.fingerprint,
            sig,
            comment: format!("signed by key {}", self.fingerprint),
        }
    }
}

/// A message to sign held in pieces (a large index is never copied into one buffer, and may
/// be kept outside memory), gone through once for each hashing pass signing makes.
pub trait Message: Sync {
    /// Calls `f` with the message's bytes, in order, in pieces, for as long as it returns
    /// true.
    fn each_piece(&self, f: &mut dyn FnMut(&[u8]) -> bool) -> io::Result<()>;
}

impl<T: AsRef<[u8]> + Sync> Message for [T] {
    fn each_piece(&self, f: &mut dyn FnMut(&[u8]) -> bool) -> io::Result<()> {
        for piece in self {
            if !f(piece.as_ref()) {
                break;
            }
        }
        Ok(())
    }
}

impl<T: AsRef<[u8]> + Sync, const N: usize> Message for [T; N] {
    fn each_piece(&self, f: &mut dyn FnMut(&[u8]) -> bool) -> io::Result<()> {
        self[..].each_piece(f)
    }
}

/// An Ed25519 signature of a message, tagged with the signing key's fingerprint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    fingerprint: Fingerprint,
    sig: [u8; 64],
    comment: String,
}

impl Signature {
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        let (comment, blob) = parse_file::<SIGNATURE_LEN>(FileKind::Signature, bytes)?;
        Ok(Signature {
            fingerprint: Fingerprint(field(&blob, 2)),
            sig: field(&blob, 10),
            comment,
        })
    }

    pub fn read_path(path: &Path) -> Result<Self, Error> {
        read_path(FileKind::Signature, path, Signature::parse)
    }

    pub fn to_file_bytes(&self) -> Vec<u8> {
        let blob = [&PKALG[..], &self.fingerprint.0, &self.sig].concat();
        encode_file(&self.comment, &blob)
    }

    /// Writes the file atomically (temporary file in the same directory, then rename).
    pub fn write_path(&self, path: &Path) -> Result<(), Error> {
        write_atomic(FileKind::Signature, path, &self.to_file_bytes(), 0o644)
    }

    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    pub fn as_bytes(&self) -> &[u8; 64] {
        &self.sig
    }

    pub fn comment(&self) -> &str {
        &self.comment
    }

    pub fn with_comment(mut self, comment: &str) -> Result<Self, Error> {
        check_comment(FileKind::Signature, comment)?;
        self.comment = comment.into();
        Ok(self)
    }
}

/// A usign key directory (`usign -P`, opkg's `/etc/opkg/keys`): one public key per file, named
/// by its 16-digit fingerprint (`0b26f36ae0f4106d`), as usign looks it up (`main.c` line 180);
/// a key stored by usign before 2020 under the unpadded name (`b26f36ae0f4106d`) is found too.
#[derive(Clone, Debug)]
pub struct KeyDir {
    path: PathBuf,
}

impl KeyDir {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        KeyDir { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The key named by `fingerprint`; only that file is read. Its own fingerprint must match.
    pub fn find(&self, fingerprint: Fingerprint) -> Result<PublicKey, VerifyError> {
        let padded = fingerprint.to_string();
        let unpadded = fingerprint.unpadded();
        // usign's name first; then the one usign used before 2020
        let names = if padded == unpadded {
            &[padded][..]
        } else {
            &[padded, unpadded][..]
        };
        for name in names {
            match PublicKey::read_path(&self.path.join(name)) {
                Ok(key) if key.fingerprint == fingerprint => return Ok(key),
                Ok(key) => {
                    return Err(VerifyError::FingerprintMismatch {
                        key: key.fingerprint,
                        signature: fingerprint,
                    });
                }
                Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
                Err(err) => return Err(err.into()),
            }
        }
        Err(VerifyError::NoKey {
            fingerprint,
            dir: self.path.clone(),
        })
    }

    /// Verifies `signature` of `message` with the key it names; returns that key.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<PublicKey, VerifyError> {
        let key = self.find(signature.fingerprint)?;
        key.verify(message, signature)?;
        Ok(key)
    }

    /// Every file in the directory that is a public key, sorted by path; other files (garbage,
    /// unreadable, subdirectories) are skipped.
    pub fn keys(&self) -> Result<Vec<(PathBuf, PublicKey)>, Error> {
        let io_err = |source| Error::Io {
            kind: FileKind::PublicKey,
            path: self.path.clone(),
            source,
        };
        let mut keys = Vec::new();
        for entry in fs::read_dir(&self.path).map_err(io_err)? {
            let path = entry.map_err(io_err)?.path();
            // only regular files: opening a FIFO would block
            if !fs::metadata(&path).is_ok_and(|meta| meta.is_file()) {
                continue;
            }
            if let Ok(key) = PublicKey::read_path(&path) {
                keys.push((path, key));
            }
        }
        keys.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(keys)
    }
}

/// Why the `PRIVATE KEY` block of `text` is not the PKCS#8 Ed25519 key that
/// `ed25519_compact` reads: the block unterminated or not base64, or the algorithm named by
/// the object identifier in its DER (RFC 8410 section 3, RFC 5480, RFC 8017).
fn pkcs8_problem(text: &str) -> PemError {
    const OIDS: [(&[u8], &str); 6] = [
        (&[0x06, 0x03, 0x2b, 0x65, 0x6e], "an X25519 key"),
        (&[0x06, 0x03, 0x2b, 0x65, 0x6f], "an X448 key"),
        (&[0x06, 0x03, 0x2b, 0x65, 0x71], "an Ed448 key"),
        (
            &[
                0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
            ],
            "an RSA key",
        ),
        (
            &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01],
            "an EC key",
        ),
        (&[0x06, 0x03, 0x2b, 0x65, 0x70], ""),
    ];
    let Some((_, after)) = text.split_once("-----BEGIN PRIVATE KEY-----") else {
        return PemError::NoBlock;
    };
    let Some((body, _)) = after.split_once("-----END PRIVATE KEY-----") else {
        return PemError::Unterminated;
    };
    let Ok(der) = BASE64.decode(without_spaces(body.as_bytes())) else {
        return PemError::Base64;
    };
    let has = |oid: &[u8]| der.windows(oid.len()).any(|w| w == oid);
    match OIDS.iter().find(|(oid, _)| has(oid)) {
        Some((_, "")) => PemError::OtherForm,
        Some((_, what)) => PemError::NotEd25519(what),
        None => PemError::NotEd25519("no key of a known type"),
    }
}

/// Splits a file into its comment and its decoded blob of exactly `N` bytes starting `Ed`,
/// reading what usign reads (see the module documentation).
fn parse_file<const N: usize>(kind: FileKind, bytes: &[u8]) -> Result<(String, [u8; N]), Error> {
    if bytes.len() > MAX_FILE_LEN {
        return Err(Error::TooLarge {
            kind,
            len: bytes.len() as u64,
        });
    }
    let (line1, rest) = split_line(bytes).ok_or(Error::MissingData { kind })?;
    if line1.contains(&0) {
        return Err(Error::BadComment {
            kind,
            reason: "contains a NUL byte",
        });
    }
    let comment = comment_of(line1);
    let data_len = rest
        .iter()
        .rposition(|&b| !is_space(b))
        .map_or(0, |last| last + 1);
    if data_len == 0 {
        return Err(Error::MissingData { kind });
    }
    let line2 = split_line(rest).map_or(rest, |(line, _)| line);
    let all = without_spaces(&rest[..data_len]);
    let first = without_spaces(line2);
    // a complete blob on line 2 and more after it: say that, not "bad base64"
    if first.len() < all.len() && BASE64.decode(&first).is_ok_and(|blob| blob.len() == N) {
        return Err(Error::TrailingData { kind });
    }
    if data_len > USIGN_READ_LEN {
        return Err(Error::BeyondUsignRead { kind });
    }
    let decoded = BASE64
        .decode(&all)
        .map_err(|source| Error::Base64 { kind, source })?;
    let blob: [u8; N] = decoded.as_slice().try_into().map_err(|_| Error::Length {
        kind,
        actual: decoded.len(),
        expected: N,
    })?;
    let alg: [u8; 2] = field(&blob, 0);
    if alg != PKALG {
        return Err(Error::Algorithm {
            kind,
            found: alg.escape_ascii().to_string(),
        });
    }
    Ok((comment, blob))
}

/// The comment of line 1 (without its `\n`), in a form [`encode_file`] writes back unchanged:
/// the `untrusted comment: ` prefix and a final `\r` dropped, invalid UTF-8 and any other
/// `\r` replaced by U+FFFD, cut to [`MAX_COMMENT_LEN`] bytes.
fn comment_of(line: &[u8]) -> String {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let text = line.strip_prefix(COMMENT_HEADER.as_bytes()).unwrap_or(line);
    let mut comment = String::from_utf8_lossy(text).replace('\r', "\u{fffd}");
    if comment.len() > MAX_COMMENT_LEN {
        let mut end = MAX_COMMENT_LEN;
        while !comment.is_char_boundary(end) {
            end -= 1;
        }
        comment.truncate(end);
    }
    comment
}

/// C's `isspace` in the C locale, the bytes usign's `b64_decode` skips.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

fn without_spaces(bytes: &[u8]) -> Vec<u8> {
    bytes.iter().copied().filter(|&b| !is_space(b)).collect()
}

/// The line before the first `\n` and the rest after it.
fn split_line(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = bytes.iter().position(|&b| b == b'\n')?;
    Some((&bytes[..end], &bytes[end + 1..]))
}

fn encode_file(comment: &str, blob: &[u8]) -> Vec<u8> {
    format!("{COMMENT_HEADER}{comment}\n{}\n", BASE64.encode(blob)).into_bytes()
}

fn check_comment(kind: FileKind, comment: &str) -> Result<(), Error> {
    let reason = if comment.is_empty() {
        "is empty"
    } else if comment.contains(['\n', '\r']) {
        "contains a line break"
    } else if comment.contains('\0') {
        "contains a NUL byte"
    } else if comment.len() > MAX_COMMENT_LEN {
        return Err(Error::CommentTooLong {
            kind,
            len: comment.len(),
        });
    } else {
        return Ok(());
    };
    Err(Error::BadComment { kind, reason })
}

/// The `M` bytes at `at` of a blob (callers pass constant ranges inside fixed-size blobs).
fn field<const M: usize>(blob: &[u8], at: usize) -> [u8; M] {
    let mut out = [0; M];
    out.copy_from_slice(&blob[at..at + M]);
    out
}

fn checksum_of(secret: &[u8; 64]) -> [u8; 8] {
    field(&Sha512::digest(secret), 0)
}

/// Constant-time equality, as signify compares the checksum.
fn same(a: &[u8; 8], b: &[u8; 8]) -> bool {
    a.iter().zip(b).fold(0, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn xor(secret: &mut [u8; 64], key: &[u8; 64]) {
    secret.iter_mut().zip(key).for_each(|(s, k)| *s ^= k);
}

fn kdf(passphrase: &[u8], salt: &[u8; 16], rounds: u32) -> Result<[u8; 64], Error> {
    if rounds > MAX_KDF_ROUNDS {
        return Err(Error::TooManyRounds { rounds });
    }
    if passphrase.is_empty() {
        return Err(Error::EmptyPassphrase);
    }
    let mut key = [0; 64];
    bcrypt_pbkdf::bcrypt_pbkdf(passphrase, salt, rounds, &mut key)
        .map_err(|err| Error::Kdf(err.to_string()))?;
    Ok(key)
}

fn random<const N: usize>() -> Result<[u8; N], Error> {
    let mut bytes = [0; N];
    getrandom::fill(&mut bytes).map_err(Error::Random)?;
    Ok(bytes)
}

/// Reads at most [`MAX_FILE_LEN`] + 1 bytes of `path` and parses them; errors name the path.
fn read_path<T>(
    kind: FileKind,
    path: &Path,
    parse: impl FnOnce(&[u8]) -> Result<T, Error>,
) -> Result<T, Error> {
    let io_err = |source| Error::Io {
        kind,
        path: path.into(),
        source,
    };
    let in_file = |err| Error::InFile {
        path: path.into(),
        source: Box::new(err),
    };
    // Opening a FIFO or a device would block or read without end: only regular files.
    if !fs::metadata(path).map_err(io_err)?.is_file() {
        return Err(io_err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        )));
    }
    let file = File::open(path).map_err(io_err)?;
    let len = file.metadata().map_err(io_err)?.len();
    if len > MAX_FILE_LEN as u64 {
        return Err(in_file(Error::TooLarge { kind, len }));
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_LEN as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err)?;
    parse(&bytes).map_err(in_file)
}

/// The options key and signature files are written with: `mode` exactly, fsynced.
fn write_options(mode: u32) -> WriteOptions {
    WriteOptions { mode, sync: true }
}

/// Replaces `path` with `bytes` atomically (docs/crash-safety.md §1).
fn write_atomic(kind: FileKind, path: &Path, bytes: &[u8], mode: u32) -> Result<(), Error> {
    safe_fs::write_atomic(path, bytes, write_options(mode))
        .map_err(|error| Error::Write { kind, error })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verifier_fed_in_parts_agrees_with_verify() {
        let (sk, pk) = SecretKey::generate(None).unwrap();
        let msg: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let sig = sk.sign(&msg).unwrap();
        let mut v = pk.verifier(&sig).unwrap();
        for part in msg.chunks(7_777) {
            v.update(part);
        }
        v.finish().unwrap();
        let mut v = pk.verifier(&sig).unwrap();
        v.update(&msg[..msg.len() - 1]);
        assert!(matches!(v.finish(), Err(VerifyError::BadSignature(_))));
        let (_, other) = SecretKey::generate(None).unwrap();
        assert!(matches!(
            other.verifier(&sig),
            Err(VerifyError::FingerprintMismatch { .. })
        ));
    }
    use std::os::unix::fs::PermissionsExt;

    const RFC_SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    const FP: Fingerprint = Fingerprint::new([0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef]);

    fn rfc_key() -> SecretKey {
        let seed = hex::decode(RFC_SEED).unwrap().try_into().unwrap();
        SecretKey::from_seed(seed, FP).unwrap()
    }

    /// A file of `kind`-like shape: the given comment line and base64 of `blob`.
    fn file(blob: &[u8]) -> Vec<u8> {
        encode_file("test", blob)
    }

    #[test]
    fn known_answer_rfc8032_test1() {
        // RFC 8032 section 7.1 TEST 1 key and its signature of the empty message; the
        // expected files were built independently (Python base64/hashlib). The comments pad
        // the fingerprint to 16 digits as usign does ("%016"PRIx64, main.c line 152).
        let key = rfc_key();
        assert_eq!(
            key.public_key().to_file_bytes(),
            b"untrusted comment: public key 0123456789abcdef\n\
              RWQBI0VniavN79damAGCsQq31Uv+08lkBzoO4XLz2qYjJa8CGmj3B1Ea\n"
        );
        assert_eq!(
            key.sign(b"").unwrap().to_file_bytes(),
            &b"untrusted comment: signed by key 0123456789abcdef\n\
               RWQBI0VniavN7+VWQwDDYKxykIbizIBugoqEh38euOXZdNhz4GUiSQFVX7iCFZCjO6zGHjlwHPm0a9Jb9fBZW74kZVFBQ456EAs=\n"[..]
        );
        assert_eq!(
            key.to_file_bytes(),
            &b"untrusted comment: private key 0123456789abcdef\n\
               RWRCSwAAAAAAAAAAAAAAAAAAAAAAAAAASulvySzYtIABI0VniavN751hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\n"[..]
        );
    }

    /// RFC 8032 TEST 1's key as `openssl pkey` writes it (checked with OpenSSL 3.0: `openssl
    /// pkey -in` this file prints it back unchanged, and `-pubout` prints [`RFC_SPKI_PEM`]).
    const RFC_PKCS8_PEM: &str = "-----BEGIN PRIVATE KEY-----\n\
        MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n\
        -----END PRIVATE KEY-----\n";
    const RFC_SPKI_PEM: &str = "-----BEGIN PUBLIC KEY-----\n\
        MCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\n\
        -----END PUBLIC KEY-----\n";

    #[test]
    fn pem_known_answer_and_round_trip() {
        let key = rfc_key();
        assert_eq!(key.to_pkcs8_pem(), RFC_PKCS8_PEM);
        assert_eq!(key.public_key().to_spki_pem(), RFC_SPKI_PEM);
        // the key number comes from the caller, given the public key
        let mut seen = None;
        let read = SecretKey::from_pkcs8_pem(RFC_PKCS8_PEM.as_bytes(), |pk| {
            seen = Some(*pk);
            FP
        })
        .unwrap();
        assert_eq!(seen.as_ref(), Some(key.public_key().as_bytes()));
        assert_eq!(read.to_file_bytes(), key.to_file_bytes());
        // other blocks around it, CRLF line ends and the base64 split differently are read
        let noisy = format!(
            "junk before\r\n{RFC_SPKI_PEM}{}",
            RFC_PKCS8_PEM.replace('\n', "\r\n").replace("Bw", "B\r\nw")
        );
        let read = SecretKey::from_pkcs8_pem(noisy.as_bytes(), |_| FP).unwrap();
        assert_eq!(read.public_key(), key.public_key());
        let numbered = SecretKey::from_seed_with_key_number(
            hex::decode(RFC_SEED).unwrap().try_into().unwrap(),
            |_| FP,
        )
        .unwrap();
        assert_eq!(numbered.to_file_bytes(), key.to_file_bytes());
    }

    #[test]
    fn pem_errors_say_what_the_file_holds() {
        let err = |pem: &[u8]| {
            SecretKey::from_pkcs8_pem(pem, |_| FP)
                .unwrap_err()
                .to_string()
        };
        let pem = |label: &str, body: &str| {
            format!("-----BEGIN {label}-----\n{body}\n-----END {label}-----\n")
        };
        assert_eq!(
            err(RFC_SPKI_PEM.as_bytes()),
            "-----BEGIN PUBLIC KEY-----: a public key, but a private key is needed; expected an \
             Ed25519 private key in PKCS#8 PEM (-----BEGIN PRIVATE KEY-----, as `openssl genpkey \
             -algorithm ed25519` writes)"
        );
        assert!(
            err(pem("ENCRYPTED PRIVATE KEY", "MIGb").as_bytes())
                .starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----: an encrypted PKCS#8 key")
        );
        assert!(
            err(pem("OPENSSH PRIVATE KEY", "b3Bl").as_bytes())
                .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----: an OpenSSH private key")
        );
        assert!(
            err(b"untrusted comment: a usign key\nRWRCSw==\n")
                .starts_with("not a PEM file: no -----BEGIN ...----- line; expected an Ed25519")
        );
        assert_eq!(err(b"\xff\xfe"), "not a PEM file: it is not text");
        assert_eq!(
            err(b"-----BEGIN PRIVATE KEY-----\nMC4CAQAw\n"),
            "the -----BEGIN PRIVATE KEY----- block has no -----END PRIVATE KEY----- line"
        );
        assert_eq!(
            err(pem("PRIVATE KEY", "MC4C!AQAw").as_bytes()),
            "bad base64 inside the -----BEGIN PRIVATE KEY----- block"
        );
        // `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256` and
        // `-algorithm x25519` (throwaway keys)
        let ec = pem(
            "PRIVATE KEY",
            "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgy68HfheMSxajh8Ld\n\
             Gh/nzk5U5++i32r77NqjP+voChehRANCAAQvCBp3007fgva4lZfNapsdLN5OQ468\n\
             vhH5izwMDWVUswPIgy/FdTX301XNCtu1zbxKedzUv8O+pDkiQVu8hPHk",
        );
        assert!(
            err(ec.as_bytes())
                .starts_with("not an Ed25519 key: the PKCS#8 block holds an EC key; expected")
        );
        let x25519 = pem(
            "PRIVATE KEY",
            "MC4CAQAwBQYDK2VuBCIEILj81jRsp8WLY7kWk3dqWornZLEWlFLnLJELvCrFrBd6",
        );
        assert!(err(x25519.as_bytes()).contains("holds an X25519 key"));
        assert!(
            err(pem("PRIVATE KEY", "AAAA").as_bytes()).contains("holds no key of a known type")
        );
        // RFC 5958 version 1 with the public key [1]: an Ed25519 form not read
        let v2 = pem(
            "PRIVATE KEY",
            "MFECAQEwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\
             gSEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
        );
        assert!(matches!(
            SecretKey::from_pkcs8_pem(v2.as_bytes(), |_| FP),
            Err(Error::Pem(PemError::OtherForm))
        ));
        let zero = pem(
            "PRIVATE KEY",
            "MC4CAQAwBQYDK2VwBCIEIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        );
        assert_eq!(err(zero.as_bytes()), "the Ed25519 seed is all zeros");
    }

    #[test]
    fn pem_files_on_disk_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        fs::write(&path, RFC_SPKI_PEM).unwrap();
        let err = SecretKey::read_pkcs8_pem_path(&path, |_| FP).unwrap_err();
        assert!(matches!(
            err.root(),
            Error::Pem(PemError::WrongBlock { .. })
        ));
        assert!(
            err.to_string()
                .starts_with(&format!("{}: -----BEGIN PUBLIC KEY-----: ", path.display())),
            "{err}"
        );
        fs::write(&path, RFC_PKCS8_PEM).unwrap();
        let key = SecretKey::read_pkcs8_pem_path(&path, |_| FP).unwrap();
        assert_eq!(key.public_key(), rfc_key().public_key());
    }

    #[test]
    fn fingerprint_forms() {
        assert_eq!(FP.to_string(), "0123456789abcdef");
        assert_eq!(FP.unpadded(), "123456789abcdef");
        assert_eq!("123456789ABCDEF".parse::<Fingerprint>().unwrap(), FP);
        assert_eq!("0123456789abcdef".parse::<Fingerprint>().unwrap(), FP);
        assert_eq!(
            "1".parse::<Fingerprint>().unwrap().as_bytes(),
            &[0, 0, 0, 0, 0, 0, 0, 1]
        );
        for bad in ["", "+1", "0123456789abcdef0", "xyz", " 1", "-1"] {
            assert!(bad.parse::<Fingerprint>().is_err(), "{bad:?}");
        }
        assert_eq!(format!("{FP:?}"), "Fingerprint(0123456789abcdef)");
    }

    #[test]
    fn round_trips() {
        let (secret, public) = SecretKey::generate(None).unwrap();
        let fp = secret.fingerprint();
        assert_eq!(public.fingerprint(), fp);
        assert_eq!(public.comment(), format!("public key {fp}"));
        assert_eq!(secret.comment(), format!("private key {fp}"));
        let bytes = public.to_file_bytes();
        assert_eq!(PublicKey::parse(&bytes).unwrap(), public);
        let again = SecretKey::parse(&secret.to_file_bytes(), None).unwrap();
        assert_eq!(again.to_file_bytes(), secret.to_file_bytes());
        let sig = again.sign(b"hello").unwrap();
        assert_eq!(sig.comment(), format!("signed by key {fp}"));
        assert_eq!(Signature::parse(&sig.to_file_bytes()).unwrap(), sig);
        public.verify(b"hello", &sig).unwrap();

        let (secret, public) = SecretKey::generate(Some("my key")).unwrap();
        assert_eq!((secret.comment(), public.comment()), ("my key", "my key"));
    }

    #[test]
    fn encrypted_keys() {
        let key = rfc_key();
        let bytes = key.encrypted_file_bytes(b"secret", 2).unwrap();
        assert!(matches!(
            SecretKey::parse(&bytes, None),
            Err(Error::Encrypted { rounds: 2 })
        ));
        assert!(matches!(
            SecretKey::parse(&bytes, Some(b"wrong")),
            Err(Error::WrongPassphrase)
        ));
        assert!(matches!(
            SecretKey::parse(&bytes, Some(b"")),
            Err(Error::EmptyPassphrase)
        ));
        let plain = SecretKey::parse(&bytes, Some(b"secret")).unwrap();
        assert_eq!(plain.public_key(), key.public_key());
        // an unprotected key ignores a passphrase
        SecretKey::parse(&key.to_file_bytes(), Some(b"x")).unwrap();
        assert_eq!(
            Error::Encrypted { rounds: 42 }.to_string(),
            "secret key is passphrase-protected (kdfrounds 42)"
        );
    }

    #[test]
    fn too_many_rounds() {
        let mut blob = secret_blob();
        blob[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            SecretKey::parse(&file(&blob), None),
            Err(Error::Encrypted { rounds: u32::MAX })
        ));
        assert!(matches!(
            SecretKey::parse(&file(&blob), Some(b"pw")),
            Err(Error::TooManyRounds { rounds: u32::MAX })
        ));
    }

    fn secret_blob() -> Vec<u8> {
        let bytes = rfc_key().to_file_bytes();
        let line2 = bytes.split(|&b| b == b'\n').nth(1).unwrap();
        BASE64.decode(line2).unwrap()
    }

    #[test]
    fn secret_key_corruption() {
        let mut blob = secret_blob();
        blob[24] ^= 1; // checksum
        assert!(matches!(
            SecretKey::parse(&file(&blob), None),
            Err(Error::Checksum)
        ));
        let mut blob = secret_blob();
        blob[50] ^= 1; // seed
        assert!(matches!(
            SecretKey::parse(&file(&blob), None),
            Err(Error::Checksum)
        ));
        // stored public half wrong but checksum fixed up
        let mut blob = secret_blob();
        blob[80] ^= 1;
        let secret: [u8; 64] = blob[40..104].try_into().unwrap();
        blob[24..32].copy_from_slice(&checksum_of(&secret));
        assert!(matches!(
            SecretKey::parse(&file(&blob), None),
            Err(Error::PublicKeyMismatch)
        ));
        // all-zero seed must be an error, not a panic
        let mut blob = secret_blob();
        blob[40..72].fill(0);
        let secret: [u8; 64] = blob[40..104].try_into().unwrap();
        blob[24..32].copy_from_slice(&checksum_of(&secret));
        assert!(matches!(
            SecretKey::parse(&file(&blob), None),
            Err(Error::ZeroSeed)
        ));
        let mut blob = secret_blob();
        blob[2..4].copy_from_slice(b"XY");
        let err = SecretKey::parse(&file(&blob), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "secret key: KDF algorithm \"XY\", expected \"BK\""
        );
    }

    #[test]
    fn decode_errors() {
        let sig = rfc_key().sign(b"m").unwrap().to_file_bytes();
        let text = String::from_utf8(sig.clone()).unwrap();
        let line2 = text.lines().nth(1).unwrap();
        let blob = BASE64.decode(line2).unwrap();

        let err = |bytes: &[u8]| Signature::parse(bytes).unwrap_err().to_string();
        assert_eq!(
            err(&file(&blob[..73])),
            "signature: decoded length 73, expected 74"
        );
        assert_eq!(
            err(&file(&[&blob[..], b"x"].concat())),
            "signature: decoded length 75, expected 74"
        );
        let mut wrong_alg = blob.clone();
        wrong_alg[0] = b'X';
        assert_eq!(
            err(&file(&wrong_alg)),
            "signature: algorithm \"Xd\", expected \"Ed\""
        );
        assert!(
            err(format!("untrusted comment: x\n{}!\n", line2).as_bytes())
                .starts_with("signature: bad base64 on line 2")
        );
        assert!(err(format!("x\n{}\n", &line2[1..]).as_bytes()).contains("base64"));
        // usign's "Premature end of file" (no line 1 end) and no data after line 1
        for bytes in [
            line2,
            "untrusted comment: x",
            "untrusted comment: x\n",
            "c\n \r\n\n",
        ] {
            assert_eq!(
                err(bytes.as_bytes()),
                "signature: missing line 2 (the base64 data)",
                "{bytes:?}"
            );
        }
        // usign's strchr stops at a NUL on line 1 and would read line 2 as more of line 1
        assert_eq!(
            err(format!("untrusted\0comment\n{line2}\n").as_bytes()),
            "signature: comment contains a NUL byte"
        );
        for trailing in ["x", "\nuntrusted comment: y\n", "RWQ=\n", "\0"] {
            let bytes = [&sig[..], trailing.as_bytes()].concat();
            assert_eq!(
                err(&bytes),
                "signature: unexpected data after line 2",
                "{trailing:?}"
            );
        }
        // base64 spread past the 510 bytes usign reads after line 1
        let spread = format!("c\n{}{}{}\n", &line2[..50], " ".repeat(411), &line2[50..]);
        assert_eq!(
            err(spread.as_bytes()),
            "signature: data goes on past the 510 bytes after line 1 that usign reads"
        );
        assert_eq!(
            err(&vec![b'a'; MAX_FILE_LEN + 1]),
            "signature: file is 4097 bytes, more than the 4096 allowed"
        );
        let pk = PublicKey::parse(b"untrusted comment: x\nRWQL\n").unwrap_err();
        assert_eq!(pk.to_string(), "public key: decoded length 3, expected 42");
    }

    #[test]
    fn lenient_where_harmless() {
        let sig = rfc_key().sign(b"m").unwrap();
        let text = String::from_utf8(sig.to_file_bytes()).unwrap();
        // no final newline, CRLF endings, empty comment, non-UTF-8 comment
        Signature::parse(text.trim_end().as_bytes()).unwrap();
        let crlf = Signature::parse(text.replace('\n', "\r\n").as_bytes()).unwrap();
        assert_eq!(crlf, sig);
        let line2 = text.lines().nth(1).unwrap();
        let empty = Signature::parse(format!("untrusted comment: \n{line2}\n").as_bytes());
        assert_eq!(empty.unwrap().comment(), "");
        let latin1 = [b"untrusted comment: \xe9\n", line2.as_bytes()].concat();
        assert_eq!(Signature::parse(&latin1).unwrap().comment(), "\u{fffd}");
    }

    #[test]
    fn any_line_1_is_read_as_usign_reads_it() {
        // usign skips line 1 unseen (main.c lines 118-128): the comment is all of it then
        let sig = rfc_key().sign(b"m").unwrap();
        let text = String::from_utf8(sig.to_file_bytes()).unwrap();
        let line2 = text.lines().nth(1).unwrap();
        for (line1, comment) in [
            ("", ""),
            ("Untrusted comment: x", "Untrusted comment: x"),
            ("untrusted comment:x", "untrusted comment:x"),
            ("<!DOCTYPE html>", "<!DOCTYPE html>"),
            (
                "untrusted comment: untrusted comment: ",
                "untrusted comment: ",
            ),
            ("\t", "\t"),
        ] {
            let parsed = Signature::parse(format!("{line1}\n{line2}\n").as_bytes())
                .unwrap_or_else(|e| panic!("{line1:?}: {e}"));
            assert_eq!(parsed.comment(), comment, "{line1:?}");
            assert_eq!(parsed.fingerprint(), FP);
            // written back with the header, and read back the same
            let bytes = parsed.to_file_bytes();
            assert!(bytes.starts_with(format!("untrusted comment: {comment}\n").as_bytes()));
            assert_eq!(Signature::parse(&bytes).unwrap(), parsed);
        }
        // a line 1 longer than any comment is read and its comment cut
        let long = format!("{}\n{line2}\n", "c".repeat(2000));
        assert_eq!(
            Signature::parse(long.as_bytes()).unwrap().comment().len(),
            1023
        );
        let wide = format!("untrusted comment: {}\n{line2}\n", "\u{e9}".repeat(600));
        let wide = Signature::parse(wide.as_bytes()).unwrap();
        assert_eq!(wide.comment(), "\u{e9}".repeat(511));
        let public = rfc_key().public_key().to_file_bytes();
        let key_line2 = &public[public.iter().position(|&b| b == b'\n').unwrap()..];
        let key = PublicKey::parse(&[b"any text at all", key_line2].concat()).unwrap();
        assert_eq!(key.comment(), "any text at all");
        let secret = rfc_key().to_file_bytes();
        let secret_line2 = &secret[secret.iter().position(|&b| b == b'\n').unwrap()..];
        let key = SecretKey::parse(&[b"", secret_line2].concat(), None).unwrap();
        assert_eq!((key.comment(), key.fingerprint()), ("", FP));
    }

    #[test]
    fn whitespace_in_the_data_is_skipped_as_usign_does() {
        // usign's b64_decode skips isspace() bytes anywhere
        let sig = rfc_key().sign(b"m").unwrap();
        let text = String::from_utf8(sig.to_file_bytes()).unwrap();
        let line2 = text.lines().nth(1).unwrap();
        for data in [
            format!("{line2}\n\n"),
            format!("{line2} \n"),
            format!(" \t{line2}\r\n\x0b\x0c\n"),
            format!("{}\n{}\n", &line2[..64], &line2[64..]),
            format!("{} =\n", &line2[..99]),
            // up to the 510 bytes usign reads after line 1
            format!("{}{}{}", &line2[..50], " ".repeat(410), &line2[50..]),
            format!("{line2}\n{}", " ".repeat(2000)),
        ] {
            let parsed = Signature::parse(format!("c\n{data}").as_bytes())
                .unwrap_or_else(|e| panic!("{data:?}: {e}"));
            assert_eq!(parsed.as_bytes(), sig.as_bytes(), "{data:?}");
        }
    }

    #[test]
    fn comments_we_write_are_checked() {
        let sig = rfc_key().sign(b"m").unwrap();
        for bad in ["", "a\nb", "a\rb", "a\0b"] {
            assert!(matches!(
                sig.clone().with_comment(bad),
                Err(Error::BadComment { .. })
            ));
        }
        assert!(matches!(
            sig.clone().with_comment(&"c".repeat(1024)),
            Err(Error::CommentTooLong { len: 1024, .. })
        ));
        let sig = sig.with_comment("verify with key.pub").unwrap();
        assert!(
            sig.to_file_bytes()
                .starts_with(b"untrusted comment: verify with key.pub\n")
        );
        assert!(SecretKey::generate(Some("")).is_err());
    }

    #[test]
    fn verify_failures() {
        let key = rfc_key();
        let public = key.public_key();
        let sig = key.sign(b"message").unwrap();
        public.verify(b"message", &sig).unwrap();
        assert!(matches!(
            public.verify(b"messagf", &sig),
            Err(VerifyError::BadSignature(fp)) if fp == FP
        ));
        for bit in [0, 7, 100, 511] {
            let mut bad = sig.clone();
            bad.sig[bit / 8] ^= 1 << (bit % 8);
            assert!(matches!(
                public.verify(b"message", &bad),
                Err(VerifyError::BadSignature(_))
            ));
        }
        let (other, _) = SecretKey::generate(None).unwrap();
        let err = public
            .verify(b"message", &other.sign(b"message").unwrap())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "signature is by key {}, but the public key is {FP}",
                other.fingerprint()
            )
        );
    }

    #[test]
    fn debug_hides_the_secret() {
        let key = rfc_key();
        let debug = format!("{key:?}");
        let secret = &hex::encode(*key.keypair.sk)[..64];
        assert!(!debug.contains(secret), "{debug}");
        assert!(!debug.contains(RFC_SEED));
        assert!(debug.contains("0123456789abcdef"));
    }

    #[test]
    fn a_planted_symlink_is_never_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        fs::write(&outside, b"victim").unwrap();
        let sec_path = dir.path().join("key.sec");
        std::os::unix::fs::symlink(&outside, &sec_path).unwrap();
        let (secret, public) = SecretKey::generate(None).unwrap();
        assert!(matches!(
            secret.write_path(&sec_path, None, false),
            Err(Error::Exists { .. })
        ));
        assert_eq!(fs::read(&outside).unwrap(), b"victim");
        // With force the link itself is replaced by the key file.
        secret.write_path(&sec_path, None, true).unwrap();
        assert_eq!(fs::read(&outside).unwrap(), b"victim");
        assert!(fs::symlink_metadata(&sec_path).unwrap().is_file());
        let pub_path = dir.path().join("key.pub");
        std::os::unix::fs::symlink(&outside, &pub_path).unwrap();
        public.write_path(&pub_path).unwrap();
        assert_eq!(fs::read(&outside).unwrap(), b"victim");
        assert_eq!(PublicKey::read_path(&pub_path).unwrap(), public);
    }

    #[test]
    fn a_failed_write_names_the_file_kind_path_and_step() {
        let dir = tempfile::tempdir().unwrap();
        let (_, public) = SecretKey::generate(None).unwrap();
        let missing = dir.path().join("none");
        let err = public.write_path(&missing.join("key.pub")).unwrap_err();
        assert!(matches!(err, Error::Write { .. }), "{err:?}");
        assert!(
            err.to_string().starts_with(&format!(
                "public key {}: cannot open directory: ",
                missing.display()
            )),
            "{err}"
        );
    }

    #[test]
    fn files_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let (secret, public) = SecretKey::generate(None).unwrap();
        let sec_path = dir.path().join("key.sec");
        secret.write_path(&sec_path, None, false).unwrap();
        let mode = fs::metadata(&sec_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(matches!(
            secret.write_path(&sec_path, None, false),
            Err(Error::Exists { .. })
        ));
        fs::set_permissions(&sec_path, fs::Permissions::from_mode(0o644)).unwrap();
        secret.write_path(&sec_path, None, true).unwrap();
        let mode = fs::metadata(&sec_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let read = SecretKey::read_path(&sec_path, None).unwrap();
        assert_eq!(read.to_file_bytes(), secret.to_file_bytes());

        let pub_path = dir.path().join("key.pub");
        public.write_path(&pub_path).unwrap();
        public.write_path(&pub_path).unwrap(); // atomic replace
        assert_eq!(PublicKey::read_path(&pub_path).unwrap(), public);
        let sig_path = dir.path().join("msg.sig");
        secret.sign(b"msg").unwrap().write_path(&sig_path).unwrap();
        let sig = Signature::read_path(&sig_path).unwrap();
        public.verify(b"msg", &sig).unwrap();
        // no temporary files left behind
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 3);

        let big = dir.path().join("big");
        fs::write(&big, vec![b'a'; 10_000]).unwrap();
        let err = PublicKey::read_path(&big).unwrap_err();
        assert!(matches!(
            err.root(),
            Error::TooLarge {
                len: 10_000,
                kind: FileKind::PublicKey
            }
        ));
        assert!(
            err.to_string()
                .ends_with("public key: file is 10000 bytes, more than the 4096 allowed")
        );
        let missing = PublicKey::read_path(&dir.path().join("nope")).unwrap_err();
        assert!(matches!(missing, Error::Io { .. }));
    }

    #[test]
    fn parsed_comments_write_back() {
        // Found by fuzzing: 400 invalid bytes decode to 1200 bytes of U+FFFD, and a second
        // carriage return survived the line split; neither may parse into something that
        // does not write back. usign reads both files, so they parse, their comments made
        // writable.
        let line2 = "RWQBI0VniavN79damAGCsQq31Uv+08lkBzoO4XLz2qYjJa8CGmj3B1Ea\n";
        let mut lossy = COMMENT_HEADER.as_bytes().to_vec();
        lossy.extend(std::iter::repeat_n(0xff, 400));
        lossy.push(b'\n');
        lossy.extend_from_slice(line2.as_bytes());
        let cr = format!("{COMMENT_HEADER}key\r\r\n{line2}");
        let ok = format!("{COMMENT_HEADER}key\r\n{line2}");
        for (file, comment) in [
            (&lossy[..], "\u{fffd}".repeat(341)),
            (cr.as_bytes(), "key\u{fffd}".into()),
            (ok.as_bytes(), "key".into()),
        ] {
            let key = PublicKey::parse(file).unwrap();
            assert_eq!(key.comment(), comment);
            let bytes = key.to_file_bytes();
            assert_eq!(PublicKey::parse(&bytes).unwrap(), key);
            assert_eq!(PublicKey::parse(&bytes).unwrap().to_file_bytes(), bytes);
        }
    }

    #[test]
    fn key_dir_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let keys = KeyDir::new(dir.path());
        // fingerprint with a leading zero nibble, stored by pre-2020 usign under the unpadded
        // name
        let fp = Fingerprint::new([0x0b, 0x26, 0xf3, 0x6a, 0xe0, 0xf4, 0x10, 0x6d]);
        let key = SecretKey::from_seed([7; 32], fp).unwrap();
        let sig = key.sign(b"feed").unwrap();
        assert!(matches!(
            keys.verify(b"feed", &sig),
            Err(VerifyError::NoKey { .. })
        ));
        fs::write(dir.path().join("garbage"), b"not a key").unwrap();
        fs::create_dir(dir.path().join("subdir")).unwrap();
        key.public_key()
            .write_path(&dir.path().join("b26f36ae0f4106d"))
            .unwrap();
        assert_eq!(keys.verify(b"feed", &sig).unwrap(), key.public_key());
        assert!(matches!(
            keys.verify(b"feee", &sig),
            Err(VerifyError::BadSignature(_))
        ));
        // usign's 16-digit name (main.c line 180) wins over the unpadded one
        let other = SecretKey::from_seed([8; 32], FP).unwrap().public_key();
        other.write_path(&dir.path().join(fp.unpadded())).unwrap();
        assert!(matches!(
            keys.verify(b"feed", &sig),
            Err(VerifyError::FingerprintMismatch { .. })
        ));
        key.public_key()
            .write_path(&dir.path().join("0b26f36ae0f4106d"))
            .unwrap();
        assert_eq!(keys.verify(b"feed", &sig).unwrap(), key.public_key());
        // a key under the wrong name is a mismatch, though the other name holds the right one
        key.public_key()
            .write_path(&dir.path().join(fp.unpadded()))
            .unwrap();
        other.write_path(&dir.path().join(fp.to_string())).unwrap();
        assert!(matches!(
            keys.verify(b"feed", &sig),
            Err(VerifyError::FingerprintMismatch { .. })
        ));
        // the needed file being garbage is an error
        fs::write(dir.path().join(fp.to_string()), b"junk").unwrap();
        assert!(matches!(
            keys.verify(b"feed", &sig),
            Err(VerifyError::Key(_))
        ));
        let listed = keys.keys().unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].1, key.public_key());
    }

    proptest::proptest! {
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = PublicKey::parse(&bytes);
            let _ = Signature::parse(&bytes);
            let _ = SecretKey::parse(&bytes, None);
            let _ = SecretKey::parse(&bytes, Some(b"pw"));
        }

        #[test]
        fn decoders_never_panic_on_near_valid(blob in proptest::collection::vec(proptest::num::u8::ANY, 40..110), edits in proptest::collection::vec((0usize..110, proptest::num::u8::ANY), 0..4)) {
            let mut blob = blob;
            blob[..2].copy_from_slice(b"Ed");
            if blob.len() > 8 {
                blob[2..4].copy_from_slice(b"BK");
                let rounds = blob[7] % 3;
                blob[4..8].copy_from_slice(&[0, 0, 0, rounds]);
            }
            for (at, value) in edits {
                if let Some(b) = blob.get_mut(at) { *b = value; }
            }
            let bytes = file(&blob);
            let _ = PublicKey::parse(&bytes);
            let _ = Signature::parse(&bytes);
            let _ = SecretKey::parse(&bytes, None);
            let _ = SecretKey::parse(&bytes, Some(b"pw"));
        }

        #[test]
        fn sign_verify_round_trip(seed in proptest::array::uniform32(1u8..), fp in proptest::array::uniform8(proptest::num::u8::ANY), msg in proptest::collection::vec(proptest::num::u8::ANY, 0..200), comment in "[ -~]{1,40}") {
            let key = SecretKey::from_seed(seed, Fingerprint::new(fp)).unwrap().with_comment(&comment).unwrap();
            let public = PublicKey::parse(&key.public_key().to_file_bytes()).unwrap();
            let again = SecretKey::parse(&key.to_file_bytes(), None).unwrap();
            proptest::prop_assert_eq!(again.comment(), comment.as_str());
            let sig = Signature::parse(&again.sign(&msg).unwrap().to_file_bytes()).unwrap();
            proptest::prop_assert!(public.verify(&msg, &sig).is_ok());
        }
    }
}
