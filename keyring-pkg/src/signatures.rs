//! `keyring.sig`: one or more usign signature blocks over the manifest bytes, and the count of
//! valid signatures by distinct root keys.
//!
//! Each block is exactly a usign/signify signature file (two lines: `untrusted comment: …` and
//! the base64 of `Ed` + fingerprint + Ed25519 signature); the file is the blocks concatenated,
//! so `signify -V -x` on a one-block file works, and `cat a.sig b.sig > keyring.sig` makes a
//! two-block file. Parsing is bounded ([`MAX_SIGNATURE_FILE_LEN`] bytes,
//! [`MAX_SIGNATURE_BLOCKS`] blocks). An empty file is an empty set (a draft nobody has signed).
//!
//! [`SignatureSet::tally`] counts who signed: only a block that verifies, by a key that the
//! keyring lists as an active, unexpired root key, counts, and each key counts once however
//! many blocks it has. Everything else is reported with the reason it did not count.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use feeds::release::format_date;
use feeds::usign::{Fingerprint, Signature};
use sha2::{Digest, Sha256};

use crate::manifest::{Keyring, ManifestError, Role, Status};

/// The most signature blocks one `keyring.sig` may hold.
pub const MAX_SIGNATURE_BLOCKS: usize = 64;
/// The largest `keyring.sig` accepted, in bytes (64 blocks with long comments fit).
pub const MAX_SIGNATURE_FILE_LEN: usize = 96 * 1024;

/// What is wrong with a `keyring.sig`.
#[derive(Debug, thiserror::Error)]
pub enum SignatureFileError {
    #[error("keyring.sig is {len} bytes, more than the {max} allowed")]
    TooLarge { len: usize, max: usize },
    #[error("keyring.sig: more than {max} signature blocks")]
    TooManyBlocks { max: usize },
    #[error("keyring.sig: block {block} (line {line}): {source}")]
    Block {
        block: usize,
        line: usize,
        #[source]
        source: feeds::usign::Error,
    },
    #[error(
        "keyring.sig: block {block} (line {line}) has a comment line but no signature line after it"
    )]
    Incomplete { block: usize, line: usize },
}

/// The signature blocks of a `keyring.sig`, in file order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SignatureSet {
    blocks: Vec<Signature>,
}

impl SignatureSet {
    /// No signatures.
    pub fn new() -> SignatureSet {
        SignatureSet::default()
    }

    /// Parses the concatenated blocks. Blank lines are not allowed between blocks.
    pub fn parse(bytes: &[u8]) -> Result<SignatureSet, SignatureFileError> {
        if bytes.len() > MAX_SIGNATURE_FILE_LEN {
            return Err(SignatureFileError::TooLarge {
                len: bytes.len(),
                max: MAX_SIGNATURE_FILE_LEN,
            });
        }
        let mut lines = bytes.split_inclusive(|&b| b == b'\n');
        let mut blocks = Vec::new();
        let mut line = 1;
        while let Some(comment) = lines.next() {
            let block = blocks.len() + 1;
            if block > MAX_SIGNATURE_BLOCKS {
                return Err(SignatureFileError::TooManyBlocks {
                    max: MAX_SIGNATURE_BLOCKS,
                });
            }
            let data = lines.next();
            let is_comment = comment.starts_with(feeds::usign::COMMENT_HEADER.as_bytes());
            if data.is_none() && is_comment {
                return Err(SignatureFileError::Incomplete { block, line });
            }
            let text = [comment, data.unwrap_or_default()].concat();
            let sig = Signature::parse(&text).map_err(|source| SignatureFileError::Block {
                block,
                line,
                source,
            })?;
            blocks.push(sig);
            line += 2;
        }
        Ok(SignatureSet { blocks })
    }

    /// The file: every block as usign writes it, in order.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.blocks.iter().flat_map(|s| s.to_file_bytes()).collect()
    }

    /// The blocks in order.
    pub fn signatures(&self) -> &[Signature] {
        &self.blocks
    }

    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// The distinct fingerprints that have a block (valid or not).
    pub fn fingerprints(&self) -> BTreeSet<Fingerprint> {
        self.blocks.iter().map(Signature::fingerprint).collect()
    }

    /// Adds a signature. A block by the same key is replaced (at the first such block's place;
    /// further blocks by that key are dropped), so one key never has two blocks. Returns
    /// whether a block was replaced.
    pub fn insert(&mut self, sig: Signature) -> Result<bool, SignatureFileError> {
        let fp = sig.fingerprint();
        match self.blocks.iter().position(|s| s.fingerprint() == fp) {
            Some(at) => {
                self.blocks[at] = sig;
                let mut seen = false;
                self.blocks.retain(|s| {
                    if s.fingerprint() != fp {
                        return true;
                    }
                    !std::mem::replace(&mut seen, true)
                });
                Ok(true)
            }
            None if self.blocks.len() >= MAX_SIGNATURE_BLOCKS => {
                Err(SignatureFileError::TooManyBlocks {
                    max: MAX_SIGNATURE_BLOCKS,
                })
            }
            None => {
                self.blocks.push(sig);
                Ok(false)
            }
        }
    }

    /// Removes every block by `fingerprint`; returns how many were removed.
    pub fn remove(&mut self, fingerprint: Fingerprint) -> usize {
        let before = self.blocks.len();
        self.blocks.retain(|s| s.fingerprint() != fingerprint);
        before - self.blocks.len()
    }

    /// Keeps only the blocks for which `keep` is true.
    pub fn retain(&mut self, keep: impl FnMut(&Signature) -> bool) {
        self.blocks.retain(keep);
    }

    /// Counts the valid signatures of `message` by distinct active root keys of `keyring` that
    /// have not expired at `now` (pass `i64::MIN` to ignore key expiry).
    pub fn tally(&self, keyring: &Keyring, message: &[u8], now: i64) -> Tally {
        let eligible: BTreeSet<Fingerprint> = keyring
            .usable_keys(Role::Root, now)
            .map(|k| k.fingerprint())
            .collect();
        let mut counted = BTreeSet::new();
        let mut not_counted = BTreeMap::new();
        for sig in &self.blocks {
            let fp = sig.fingerprint();
            if counted.contains(&fp) {
                continue;
            }
            let reason = match keyring.key(fp) {
                None => Some(NotCounted::UnknownKey),
                Some(k) if k.status == Status::Revoked => Some(NotCounted::Revoked),
                Some(k) if k.status == Status::Retired => Some(NotCounted::Retired),
                Some(k) if k.role != Role::Root => Some(NotCounted::NotRootKey(k.role)),
                Some(k) if k.is_expired(now) => Some(NotCounted::Expired {
                    on: k.not_after.unwrap_or_default(),
                }),
                Some(k) => match k.public_key.verify(message, sig) {
                    Ok(()) => None,
                    Err(_) => Some(NotCounted::BadSignature),
                },
            };
            match reason {
                None => {
                    not_counted.remove(&fp);
                    counted.insert(fp);
                }
                Some(reason) => {
                    not_counted.entry(fp).or_insert(reason);
                }
            }
        }
        Tally {
            name: keyring.name().to_string(),
            serial: keyring.serial(),
            threshold: keyring.root_threshold(),
            counted,
            eligible,
            not_counted,
        }
    }
}

/// Why a signature block did not count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotCounted {
    /// The keyring does not list the key.
    UnknownKey,
    /// A feed or developer key: only root keys sign keyrings.
    NotRootKey(Role),
    Retired,
    Revoked,
    /// The key's `Not-After` has passed.
    Expired {
        on: i64,
    },
    /// The block does not verify over the manifest bytes.
    BadSignature,
}

impl fmt::Display for NotCounted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotCounted::UnknownKey => f.write_str("unknown key"),
            NotCounted::NotRootKey(role) => write!(f, "a {role} key, not a root key"),
            NotCounted::Retired => f.write_str("retired"),
            NotCounted::Revoked => f.write_str("revoked"),
            NotCounted::Expired { on } => write!(f, "expired on {}", format_date(*on)),
            NotCounted::BadSignature => f.write_str("bad signature"),
        }
    }
}

/// Who signed a manifest, judged by one keyring's root keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tally {
    /// The keyring whose root keys judged.
    pub name: String,
    pub serial: u64,
    /// Its `Root-Threshold`.
    pub threshold: u32,
    /// The distinct eligible keys with a valid signature.
    pub counted: BTreeSet<Fingerprint>,
    /// The active, unexpired root keys (the keys that could count).
    pub eligible: BTreeSet<Fingerprint>,
    /// The keys with blocks that did not count, and why.
    pub not_counted: BTreeMap<Fingerprint, NotCounted>,
}

impl Tally {
    /// True when at least `threshold` distinct keys counted.
    pub fn is_met(&self) -> bool {
        self.counted.len() >= self.threshold as usize
    }

    /// `have 6b2d…, 9f01…; need 2 of: 6b2d…, 9f01…, c3aa…` (and what did not count).
    pub fn describe(&self) -> String {
        let list = |set: &BTreeSet<Fingerprint>| match set.is_empty() {
            true => "none".to_string(),
            false => set
                .iter()
                .map(Fingerprint::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        };
        let mut out = format!(
            "have {}; need {} of: {}",
            list(&self.counted),
            self.threshold,
            list(&self.eligible)
        );
        if !self.not_counted.is_empty() {
            let ignored: Vec<String> = self
                .not_counted
                .iter()
                .map(|(fp, why)| format!("{fp} ({why})"))
                .collect();
            out.push_str("; not counted: ");
            out.push_str(&ignored.join(", "));
        }
        out
    }
}

/// Reading a manifest and its signatures together failed.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Signatures(#[from] SignatureFileError),
}

/// A keyring manifest, its exact bytes and its signature blocks: the unit the acceptance
/// rules judge, packages carry and a root stores.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedKeyring {
    keyring: Keyring,
    bytes: Vec<u8>,
    signatures: SignatureSet,
}

impl SignedKeyring {
    /// Parses `keyring` and `keyring.sig` (see [`Keyring::parse`], [`SignatureSet::parse`]).
    pub fn parse(manifest: &[u8], signatures: &[u8]) -> Result<SignedKeyring, ParseError> {
        Ok(SignedKeyring {
            keyring: Keyring::parse(manifest)?,
            bytes: manifest.to_vec(),
            signatures: SignatureSet::parse(signatures)?,
        })
    }

    /// A keyring and signatures (the bytes are the canonical text).
    pub fn new(keyring: Keyring, signatures: SignatureSet) -> Result<SignedKeyring, ManifestError> {
        Ok(SignedKeyring {
            bytes: keyring.to_bytes()?,
            keyring,
            signatures,
        })
    }

    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// The manifest bytes the signatures are over.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn signatures(&self) -> &SignatureSet {
        &self.signatures
    }

    /// Replaces the signatures (the manifest is unchanged).
    pub fn with_signatures(self, signatures: SignatureSet) -> SignedKeyring {
        SignedKeyring { signatures, ..self }
    }

    pub fn name(&self) -> &str {
        self.keyring.name()
    }

    pub fn serial(&self) -> u64 {
        self.keyring.serial()
    }

    /// SHA-256 of the manifest bytes.
    pub fn sha256(&self) -> [u8; 32] {
        Sha256::digest(&self.bytes).into()
    }

    /// Who signed this manifest, judged by `judge`'s root keys at `now`.
    pub fn tally_by(&self, judge: &Keyring, now: i64) -> Tally {
        self.signatures.tally(judge, &self.bytes, now)
    }

    /// Who signed this manifest, judged by its own root keys at `now`.
    pub fn tally(&self, now: i64) -> Tally {
        self.tally_by(&self.keyring, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::KeyEntry;
    use feeds::usign::SecretKey;

    const NOW: i64 = 1_800_000_000;

    struct Fixture {
        roots: Vec<SecretKey>,
        feed: SecretKey,
        keyring: Keyring,
        bytes: Vec<u8>,
    }

    fn fixture() -> Fixture {
        let roots: Vec<SecretKey> = (0..3)
            .map(|_| SecretKey::generate(None).unwrap().0)
            .collect();
        let feed = SecretKey::generate(None).unwrap().0;
        let mut keyring = Keyring::new("example", 1, NOW - 10, NOW + 1000, 2).unwrap();
        for r in &roots {
            keyring
                .add_key(KeyEntry::new(&r.public_key(), Role::Root))
                .unwrap();
        }
        keyring
            .add_key(KeyEntry::new(&feed.public_key(), Role::Feed))
            .unwrap();
        let bytes = keyring.to_bytes().unwrap();
        Fixture {
            roots,
            feed,
            keyring,
            bytes,
        }
    }

    #[test]
    fn blocks_round_trip_and_concatenate_like_cat() {
        let f = fixture();
        let a = f.roots[0].sign(&f.bytes).unwrap();
        let b = f.roots[1].sign(&f.bytes).unwrap();
        let file = [a.to_file_bytes(), b.to_file_bytes()].concat();
        let set = SignatureSet::parse(&file).unwrap();
        assert_eq!(set.signatures(), &[a, b]);
        assert_eq!(set.to_bytes(), file);
        assert!(SignatureSet::parse(b"").unwrap().is_empty());
    }

    #[test]
    fn malformed_files_are_refused_with_block_and_line() {
        let f = fixture();
        let a = f.roots[0].sign(&f.bytes).unwrap().to_file_bytes();
        let mut broken = a.clone();
        broken.extend_from_slice(b"untrusted comment: x\n");
        let err = SignatureSet::parse(&broken).unwrap_err().to_string();
        assert_eq!(
            err,
            "keyring.sig: block 2 (line 3) has a comment line but no signature line after it"
        );
        let mut blank = a.clone();
        blank.extend_from_slice(b"\n");
        blank.extend_from_slice(&a);
        let err = SignatureSet::parse(&blank).unwrap_err().to_string();
        assert!(err.starts_with("keyring.sig: block 2 (line 3):"), "{err}");
        let html = b"<html><body>404</body></html>\n";
        assert!(SignatureSet::parse(html).is_err());
    }

    #[test]
    fn bounds_on_size_and_block_count() {
        let f = fixture();
        let block = f.roots[0].sign(&f.bytes).unwrap().to_file_bytes();
        let many = block.repeat(MAX_SIGNATURE_BLOCKS + 1);
        assert!(matches!(
            SignatureSet::parse(&many),
            Err(SignatureFileError::TooManyBlocks { .. })
        ));
        assert!(SignatureSet::parse(&block.repeat(MAX_SIGNATURE_BLOCKS)).is_ok());
        let huge = vec![b'a'; MAX_SIGNATURE_FILE_LEN + 1];
        assert!(matches!(
            SignatureSet::parse(&huge),
            Err(SignatureFileError::TooLarge { .. })
        ));
    }

    #[test]
    fn a_second_signature_by_the_same_key_replaces_the_first() {
        let f = fixture();
        let mut set = SignatureSet::new();
        assert!(!set.insert(f.roots[0].sign(&f.bytes).unwrap()).unwrap());
        assert!(!set.insert(f.roots[1].sign(&f.bytes).unwrap()).unwrap());
        let again = f.roots[0].sign(b"other bytes").unwrap();
        assert!(set.insert(again.clone()).unwrap());
        assert_eq!(set.len(), 2);
        assert_eq!(set.signatures()[0], again);
        // Duplicates read from a file collapse into one on insert.
        let dup = [
            f.roots[2].sign(&f.bytes).unwrap().to_file_bytes(),
            f.roots[2].sign(&f.bytes).unwrap().to_file_bytes(),
        ]
        .concat();
        let mut set = SignatureSet::parse(&dup).unwrap();
        assert_eq!(set.len(), 2);
        set.insert(f.roots[2].sign(&f.bytes).unwrap()).unwrap();
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn tally_counts_distinct_active_roots_only() {
        let f = fixture();
        let mut set = SignatureSet::new();
        set.blocks.push(f.roots[0].sign(&f.bytes).unwrap());
        set.blocks.push(f.roots[0].sign(&f.bytes).unwrap());
        let tally = set.tally(&f.keyring, &f.bytes, NOW);
        assert_eq!(tally.counted.len(), 1, "same key twice counts once");
        assert!(!tally.is_met());
        set.blocks.push(f.roots[1].sign(&f.bytes).unwrap());
        let tally = set.tally(&f.keyring, &f.bytes, NOW);
        assert!(tally.is_met());
        assert_eq!(tally.eligible.len(), 3);
    }

    #[test]
    fn tally_ignores_feed_unknown_retired_revoked_expired_and_bad_signatures() {
        let mut f = fixture();
        let stranger = SecretKey::generate(None).unwrap().0;
        let fps: Vec<Fingerprint> = f.roots.iter().map(SecretKey::fingerprint).collect();
        f.keyring.key_mut(fps[0]).unwrap().status = Status::Retired;
        f.keyring.key_mut(fps[1]).unwrap().status = Status::Revoked;
        f.keyring.key_mut(fps[2]).unwrap().not_after = Some(NOW - 1);
        let mut set = SignatureSet::new();
        for key in f.roots.iter().chain([&f.feed, &stranger]) {
            set.insert(key.sign(&f.bytes).unwrap()).unwrap();
        }
        let tally = set.tally(&f.keyring, &f.bytes, NOW);
        assert!(tally.counted.is_empty());
        assert_eq!(tally.not_counted[&fps[0]], NotCounted::Retired);
        assert_eq!(tally.not_counted[&fps[1]], NotCounted::Revoked);
        assert_eq!(
            tally.not_counted[&fps[2]],
            NotCounted::Expired { on: NOW - 1 }
        );
        assert_eq!(
            tally.not_counted[&f.feed.fingerprint()],
            NotCounted::NotRootKey(Role::Feed)
        );
        assert_eq!(
            tally.not_counted[&stranger.fingerprint()],
            NotCounted::UnknownKey
        );
        // The expired key counts when expiry is ignored.
        assert!(
            set.tally(&f.keyring, &f.bytes, i64::MIN)
                .counted
                .contains(&fps[2])
        );
        // A signature over other bytes is a bad signature.
        let mut set = SignatureSet::new();
        set.insert(f.roots[2].sign(b"not the manifest").unwrap())
            .unwrap();
        let tally = set.tally(&f.keyring, &f.bytes, i64::MIN);
        assert_eq!(tally.not_counted[&fps[2]], NotCounted::BadSignature);
        let text = tally.describe();
        assert!(text.starts_with("have none; need 2 of: "), "{text}");
        assert!(text.ends_with(&format!("not counted: {} (bad signature)", fps[2])));
    }

    #[test]
    fn a_valid_block_wins_over_a_bad_duplicate_in_either_order() {
        let f = fixture();
        let good = f.roots[0].sign(&f.bytes).unwrap();
        let bad = f.roots[0].sign(b"junk").unwrap();
        for blocks in [vec![bad.clone(), good.clone()], vec![good, bad]] {
            let set = SignatureSet { blocks };
            let tally = set.tally(&f.keyring, &f.bytes, NOW);
            assert_eq!(tally.counted.len(), 1);
            assert!(tally.not_counted.is_empty(), "{:?}", tally.not_counted);
        }
    }

    proptest::proptest! {
        #[test]
        fn parser_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let _ = SignatureSet::parse(&bytes);
        }
    }
}
