//! The keyring manifest: the deb822 file `keyring` (docs/formats.md §5.1).
//!
//! ```text
//! Keyring: example
//! Serial: 3
//! Date: Sun, 22 Nov 2026 02:40:00 UTC
//! Expires: Mon, 22 Nov 2027 02:40:00 UTC
//! Root-Threshold: 1
//!
//! Fingerprint: 0123456789abcdef
//! Public-Key: RWQBI0VniavN79damAGCsQq31Uv+08lkBzoO4XLz2qYjJa8CGmj3B1Ea
//! Role: root
//! Status: active
//! Not-After: Sun, 22 Nov 2030 02:40:00 UTC
//! Comment: offline root, safe 1
//! ```
//!
//! The header stanza comes first; then one stanza per key, sorted by fingerprint. `Public-Key`
//! is the base64 of the 42-byte usign public key (`Ed` + fingerprint + key); the fingerprint
//! embedded in it must equal `Fingerprint`. `Not-After` and `Comment` are optional.
//!
//! Parsing is strict, because the bytes are what the root keys sign:
//! - unknown fields, roles and statuses, bad numbers, dates, base64 and fingerprints are errors
//!   that name the stanza (`header` or `key <fp>`) and the field;
//! - a fingerprint or a public key listed twice, a `Root-Threshold` of 0 or above the number of
//!   active root keys, `Expires` before `Date` are errors;
//! - finally the file must be in the canonical form [`Keyring::to_bytes`] writes (field order,
//!   keys sorted by fingerprint, dates as `Sun, 22 Nov 2026 02:40:00 UTC`, one blank line
//!   between stanzas, a final newline), so that a parsed keyring writes back byte for byte and
//!   one model has exactly one signed text;
//! - input is bounded: [`MAX_MANIFEST_LEN`] bytes, [`MAX_KEYS`] keys.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use feeds::control::{ControlError, ControlLimits, Paragraph, ParagraphReader};
use feeds::release::{format_date, parse_date};
use feeds::usign::{Fingerprint, PublicKey};

/// The largest manifest accepted, in bytes.
pub const MAX_MANIFEST_LEN: usize = 256 * 1024;
/// The most keys a keyring may list.
pub const MAX_KEYS: usize = 256;
/// The longest keyring name.
pub const MAX_NAME_LEN: usize = 64;
/// The longest key comment, in bytes.
pub const MAX_COMMENT_LEN: usize = 200;

const HEADER_FIELDS: [&str; 5] = ["Keyring", "Serial", "Date", "Expires", "Root-Threshold"];
const KEY_FIELDS: [&str; 7] = [
    "Fingerprint",
    "Public-Key",
    "Role",
    "Status",
    "Packages",
    "Not-After",
    "Comment",
];
/// The most globs a developer key's `Packages` scope may list.
pub const MAX_SCOPE_GLOBS: usize = 64;
/// The longest glob of a scope, in bytes.
pub const MAX_GLOB_LEN: usize = 100;
const DATE_EXPECTED: &str = "an RFC 2822 UTC date like \"Sun, 22 Nov 2026 02:40:00 UTC\"";

/// What a key may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Signs keyring manifests (kept offline).
    Root,
    /// Signs `Release` and `Packages` (kept on the build host).
    Feed,
    /// Signs package files, of the names in its scope (kept by a developer;
    /// docs/trust-model.md, developer signatures).
    Developer,
}

impl Role {
    /// The manifest spelling: `root` or `feed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Root => "root",
            Role::Feed => "feed",
            Role::Developer => "developer",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "root" => Ok(Role::Root),
            "feed" => Ok(Role::Feed),
            "developer" => Ok(Role::Developer),
            _ => Err(format!(
                "unknown role {s:?} (expected root, feed or developer)"
            )),
        }
    }
}

/// Where a key is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    /// In use.
    Active,
    /// No longer in use (a routine rotation); may be listed active again later.
    Retired,
    /// Never to be trusted again (compromised). Sticky: every later serial keeps it revoked.
    Revoked,
}

impl Status {
    /// The manifest spelling: `active`, `retired` or `revoked`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Retired => "retired",
            Status::Revoked => "revoked",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "active" => Ok(Status::Active),
            "retired" => Ok(Status::Retired),
            "revoked" => Ok(Status::Revoked),
            _ => Err(format!(
                "unknown status {s:?} (expected active, retired or revoked)"
            )),
        }
    }
}

/// The package names a developer key may sign: `Packages: luci-app-*, pbr` — globs where
/// `*` is any run of characters and `?` any one, over package-name characters
/// (`a-z 0-9 + - .`). A key without a scope may sign any name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Scope {
    globs: Vec<String>,
}

impl Scope {
    /// Parses `glob[, glob...]` (blanks around commas allowed; canonical form `a, b`).
    pub fn parse(text: &str) -> Result<Scope, String> {
        let globs: Vec<String> = text.split(',').map(|g| g.trim().to_string()).collect();
        if globs.len() > MAX_SCOPE_GLOBS {
            return Err(format!("more than {MAX_SCOPE_GLOBS} globs"));
        }
        for g in &globs {
            if g.is_empty() {
                return Err("an empty glob (two commas, or a comma at an end)".into());
            }
            if g.len() > MAX_GLOB_LEN {
                return Err(format!("glob {g:?} is longer than {MAX_GLOB_LEN} bytes"));
            }
            if let Some(c) = g
                .chars()
                .find(|&c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.*?".contains(c)))
            {
                return Err(format!(
                    "glob {g:?} holds {c:?}: only a-z, 0-9, `+`, `-`, `.` and the wildcards `*` and `?` are allowed"
                ));
            }
        }
        Ok(Scope { globs })
    }

    /// The globs, in order.
    pub fn globs(&self) -> &[String] {
        &self.globs
    }

    /// True when some glob matches the whole of `name`.
    pub fn covers(&self, name: &str) -> bool {
        self.globs
            .iter()
            .any(|g| glob_matches(g.as_bytes(), name.as_bytes()))
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.globs.join(", "))
    }
}

/// `*` and `?` glob matching over the whole name (`feeds::glob`).
fn glob_matches(glob: &[u8], name: &[u8]) -> bool {
    match (std::str::from_utf8(glob), std::str::from_utf8(name)) {
        (Ok(g), Ok(n)) => feeds::glob::matches(g, n),
        _ => false,
    }
}

/// Which stanza an error is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stanza {
    /// The first stanza.
    Header,
    /// A key stanza: its 1-based number among the keys and its `Fingerprint` text, if any.
    Key {
        number: usize,
        fingerprint: Option<String>,
    },
}

impl fmt::Display for Stanza {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stanza::Header => f.write_str("header"),
            Stanza::Key {
                fingerprint: Some(fp),
                ..
            } => write!(f, "key {fp}"),
            Stanza::Key { number, .. } => write!(f, "key stanza {number}"),
        }
    }
}

/// What is wrong with a manifest (or with a keyring about to be written).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("keyring is {len} bytes, more than the {max} allowed")]
    TooLarge { len: usize, max: usize },
    #[error("keyring: {0}")]
    Syntax(#[from] ControlError),
    #[error("keyring is empty (expected a header stanza starting with `Keyring:`)")]
    Empty,
    #[error("keyring: {stanza}: missing field {field}")]
    MissingField { stanza: Stanza, field: &'static str },
    #[error("keyring: {stanza}: field {field}: {value:?} is not {expected}")]
    BadField {
        stanza: Stanza,
        field: &'static str,
        value: String,
        expected: String,
    },
    #[error("keyring: {stanza}: unknown field {field} (expected one of: {expected})")]
    UnknownField {
        stanza: Stanza,
        field: String,
        expected: String,
    },
    #[error(
        "keyring: key {fingerprint}: Public-Key holds the key with fingerprint {embedded}, not {fingerprint}"
    )]
    FingerprintMismatch {
        fingerprint: Fingerprint,
        embedded: Fingerprint,
    },
    #[error("keyring: key {0} is listed twice")]
    DuplicateFingerprint(Fingerprint),
    #[error("keyring: keys {first} and {second} have the same public key (one key, two entries)")]
    DuplicateKey {
        first: Fingerprint,
        second: Fingerprint,
    },
    #[error("keyring: more than {max} keys")]
    TooManyKeys { max: usize },
    #[error(
        "keyring {name:?}: bad name: expected 1 to {MAX_NAME_LEN} of a-z, 0-9, `+`, `-`, `.`, starting with a letter or digit"
    )]
    BadName { name: String },
    #[error(
        "keyring {name} serial {serial}: Root-Threshold is 0 (at least one root signature must be required)"
    )]
    ThresholdZero { name: String, serial: u64 },
    #[error(
        "keyring {name} serial {serial}: Root-Threshold {threshold} is more than the {active_roots} active root keys"
    )]
    ThresholdAboveRoots {
        name: String,
        serial: u64,
        threshold: u32,
        active_roots: usize,
    },
    #[error("keyring {name}: serial 0 (serials start at 1)")]
    SerialZero { name: String },
    #[error("keyring {name} serial {serial}: Expires ({expires}) is before Date ({date})")]
    ExpiresBeforeDate {
        name: String,
        serial: u64,
        date: String,
        expires: String,
    },
    #[error("keyring: key {fingerprint}: comment {reason}")]
    BadComment {
        fingerprint: Fingerprint,
        reason: String,
    },
    #[error(
        "keyring: key {fingerprint}: a Packages scope is only for developer keys, this one is a {role} key"
    )]
    ScopeNotDeveloper {
        fingerprint: Fingerprint,
        role: Role,
    },
    #[error("keyring: entry stored under {listed} is key {actual}")]
    MisfiledKey {
        listed: Fingerprint,
        actual: Fingerprint,
    },
    #[error(
        "keyring: line {line} is not in canonical form: expected {expected:?}, found {found:?} (fields in the documented order, keys sorted by fingerprint, dates like \"Sun, 22 Nov 2026 02:40:00 UTC\", one blank line between stanzas, a final newline)"
    )]
    NotCanonical {
        line: usize,
        expected: String,
        found: String,
    },
}

/// One key of a keyring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyEntry {
    /// The usign public key (its comment is always usign's default, `public key <fp>`).
    pub public_key: PublicKey,
    pub role: Role,
    pub status: Status,
    /// For a developer key: the package names it may sign (`None`: any).
    pub scope: Option<Scope>,
    /// The key is not trusted after this time (seconds since the epoch).
    pub not_after: Option<i64>,
    /// Free text for people; never used for a decision. One line, no leading or trailing
    /// blanks, at most [`MAX_COMMENT_LEN`] bytes.
    pub comment: Option<String>,
}

impl KeyEntry {
    /// An active key with this role, no expiry and no comment. The key's file comment is reset
    /// to usign's default.
    pub fn new(public_key: &PublicKey, role: Role) -> KeyEntry {
        KeyEntry {
            public_key: canonical_public_key(public_key),
            role,
            status: Status::Active,
            scope: None,
            not_after: None,
            comment: None,
        }
    }

    /// True for a developer key usable at `now` whose scope covers the package `name`.
    pub fn may_sign_package(&self, name: &str, now: i64) -> bool {
        self.is_usable_as(Role::Developer, now)
            && self.scope.as_ref().is_none_or(|s| s.covers(name))
    }

    /// The key's fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        self.public_key.fingerprint()
    }

    /// True once `Not-After` is before `now`.
    pub fn is_expired(&self, now: i64) -> bool {
        self.not_after.is_some_and(|t| t < now)
    }

    /// True for an active, unexpired key of `role`: a root key whose signature counts, or a
    /// feed key to install.
    pub fn is_usable_as(&self, role: Role, now: i64) -> bool {
        self.role == role && self.status == Status::Active && !self.is_expired(now)
    }

    /// The usign public key file, as `usign -G` writes it (comment `public key <fp>`, the
    /// fingerprint in 16 digits), for `/etc/opkg/keys/<fp>`.
    pub fn key_file_bytes(&self) -> Vec<u8> {
        canonical_public_key(&self.public_key).to_file_bytes()
    }
}

/// The public key with usign's default comment.
pub(crate) fn canonical_public_key(key: &PublicKey) -> PublicKey {
    let blob = key_blob(key);
    public_key_from_blob(&blob).unwrap_or_else(|_| key.clone())
}

/// The 42-byte usign public key blob.
fn key_blob(key: &PublicKey) -> Vec<u8> {
    [&b"Ed"[..], key.fingerprint().as_bytes(), key.as_bytes()].concat()
}

fn public_key_from_blob(blob: &[u8]) -> Result<PublicKey, feeds::usign::Error> {
    // The only constructor feeds offers parses the file form; the comment is usign's default.
    let fp = blob
        .get(2..10)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(|b| Fingerprint::new(b).to_string())
        .unwrap_or_default();
    let file = format!(
        "untrusted comment: public key {fp}\n{}\n",
        BASE64.encode(blob)
    );
    PublicKey::parse(file.as_bytes())
}

/// A keyring manifest: the header and the keys (sorted by fingerprint).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keyring {
    name: String,
    serial: u64,
    date: i64,
    expires: i64,
    root_threshold: u32,
    keys: BTreeMap<Fingerprint, KeyEntry>,
}

/// True for a usable keyring name: 1 to [`MAX_NAME_LEN`] of `a-z 0-9 + - .`, starting with a
/// letter or digit (it becomes the package `<name>-keyring` and a directory name).
pub fn is_valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() <= MAX_NAME_LEN
        && matches!(bytes.next(), Some(b) if b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b))
}

impl Keyring {
    /// A keyring without keys (add root keys before writing it: the threshold needs them).
    pub fn new(
        name: &str,
        serial: u64,
        date: i64,
        expires: i64,
        root_threshold: u32,
    ) -> Result<Keyring, ManifestError> {
        if !is_valid_name(name) {
            return Err(ManifestError::BadName { name: name.into() });
        }
        Ok(Keyring {
            name: name.into(),
            serial,
            date,
            expires,
            root_threshold,
            keys: BTreeMap::new(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn serial(&self) -> u64 {
        self.serial
    }

    /// When this serial was made (seconds since the epoch).
    pub fn date(&self) -> i64 {
        self.date
    }

    /// After this time the keyring is expired (seconds since the epoch).
    pub fn expires(&self) -> i64 {
        self.expires
    }

    pub fn root_threshold(&self) -> u32 {
        self.root_threshold
    }

    /// True once `Expires` is before `now`.
    pub fn is_expired(&self, now: i64) -> bool {
        self.expires < now
    }

    /// The keys, sorted by fingerprint.
    pub fn keys(&self) -> impl Iterator<Item = &KeyEntry> {
        self.keys.values()
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no key is listed.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key with this fingerprint.
    pub fn key(&self, fingerprint: Fingerprint) -> Option<&KeyEntry> {
        self.keys.get(&fingerprint)
    }

    /// The key with this fingerprint, to change its status, expiry or comment.
    pub fn key_mut(&mut self, fingerprint: Fingerprint) -> Option<&mut KeyEntry> {
        self.keys.get_mut(&fingerprint)
    }

    /// The active, unexpired keys of `role`.
    pub fn usable_keys(&self, role: Role, now: i64) -> impl Iterator<Item = &KeyEntry> {
        self.keys().filter(move |k| k.is_usable_as(role, now))
    }

    /// The number of root keys with status active (expiry not considered).
    pub fn active_root_count(&self) -> usize {
        self.keys()
            .filter(|k| k.role == Role::Root && k.status == Status::Active)
            .count()
    }

    /// Adds a key. A fingerprint or a public key already listed is an error.
    pub fn add_key(&mut self, entry: KeyEntry) -> Result<(), ManifestError> {
        let fp = entry.fingerprint();
        if self.keys.contains_key(&fp) {
            return Err(ManifestError::DuplicateFingerprint(fp));
        }
        if let Some(other) = self
            .keys()
            .find(|k| k.public_key.as_bytes() == entry.public_key.as_bytes())
        {
            return Err(ManifestError::DuplicateKey {
                first: other.fingerprint(),
                second: fp,
            });
        }
        if self.keys.len() >= MAX_KEYS {
            return Err(ManifestError::TooManyKeys { max: MAX_KEYS });
        }
        let entry = KeyEntry {
            public_key: canonical_public_key(&entry.public_key),
            ..entry
        };
        self.keys.insert(fp, entry);
        Ok(())
    }

    /// Removes a key (for tests and tools; the acceptance rules refuse dropping a revoked one).
    pub fn remove_key(&mut self, fingerprint: Fingerprint) -> Option<KeyEntry> {
        self.keys.remove(&fingerprint)
    }

    pub fn set_serial(&mut self, serial: u64) {
        self.serial = serial;
    }

    pub fn set_date(&mut self, date: i64) {
        self.date = date;
    }

    pub fn set_expires(&mut self, expires: i64) {
        self.expires = expires;
    }

    pub fn set_root_threshold(&mut self, threshold: u32) {
        self.root_threshold = threshold;
    }

    /// Checks everything [`Keyring::parse`] checks beyond syntax: the name, serial ≥ 1,
    /// `Expires` not before `Date`, the threshold between 1 and the number of active root
    /// keys, no public key listed twice, comments writable.
    pub fn validate(&self) -> Result<(), ManifestError> {
        if !is_valid_name(&self.name) {
            return Err(ManifestError::BadName {
                name: self.name.clone(),
            });
        }
        if self.serial == 0 {
            return Err(ManifestError::SerialZero {
                name: self.name.clone(),
            });
        }
        if self.expires < self.date {
            return Err(ManifestError::ExpiresBeforeDate {
                name: self.name.clone(),
                serial: self.serial,
                date: format_date(self.date),
                expires: format_date(self.expires),
            });
        }
        if self.keys.len() > MAX_KEYS {
            return Err(ManifestError::TooManyKeys { max: MAX_KEYS });
        }
        let mut seen: BTreeMap<[u8; 32], Fingerprint> = BTreeMap::new();
        for (&listed, entry) in &self.keys {
            if entry.fingerprint() != listed {
                return Err(ManifestError::MisfiledKey {
                    listed,
                    actual: entry.fingerprint(),
                });
            }
            if let Some(&first) = seen.get(entry.public_key.as_bytes()) {
                return Err(ManifestError::DuplicateKey {
                    first,
                    second: listed,
                });
            }
            seen.insert(*entry.public_key.as_bytes(), listed);
            if let Some(comment) = &entry.comment
                && let Err(reason) = check_comment(comment)
            {
                return Err(ManifestError::BadComment {
                    fingerprint: listed,
                    reason,
                });
            }
            if entry.scope.is_some() && entry.role != Role::Developer {
                return Err(ManifestError::ScopeNotDeveloper {
                    fingerprint: listed,
                    role: entry.role,
                });
            }
        }
        if self.root_threshold == 0 {
            return Err(ManifestError::ThresholdZero {
                name: self.name.clone(),
                serial: self.serial,
            });
        }
        let active_roots = self.active_root_count();
        if self.root_threshold as usize > active_roots {
            return Err(ManifestError::ThresholdAboveRoots {
                name: self.name.clone(),
                serial: self.serial,
                threshold: self.root_threshold,
                active_roots,
            });
        }
        Ok(())
    }

    /// The canonical manifest text, after [`Keyring::validate`].
    pub fn to_bytes(&self) -> Result<Vec<u8>, ManifestError> {
        self.validate()?;
        Ok(self.render())
    }

    fn render(&self) -> Vec<u8> {
        let mut out = String::new();
        let mut line = |name: &str, value: &str| {
            out.push_str(name);
            out.push_str(": ");
            out.push_str(value);
            out.push('\n');
        };
        line("Keyring", &self.name);
        line("Serial", &self.serial.to_string());
        line("Date", &format_date(self.date));
        line("Expires", &format_date(self.expires));
        line("Root-Threshold", &self.root_threshold.to_string());
        for (fp, key) in &self.keys {
            out.push('\n');
            let mut line = |name: &str, value: &str| {
                out.push_str(name);
                out.push_str(": ");
                out.push_str(value);
                out.push('\n');
            };
            line("Fingerprint", &fp.to_string());
            line("Public-Key", &BASE64.encode(key_blob(&key.public_key)));
            line("Role", key.role.as_str());
            line("Status", key.status.as_str());
            if let Some(scope) = &key.scope {
                line("Packages", &scope.to_string());
            }
            if let Some(t) = key.not_after {
                line("Not-After", &format_date(t));
            }
            if let Some(c) = &key.comment {
                line("Comment", c);
            }
        }
        out.into_bytes()
    }

    /// Parses a manifest (see the module documentation for what is refused).
    pub fn parse(bytes: &[u8]) -> Result<Keyring, ManifestError> {
        if bytes.len() > MAX_MANIFEST_LEN {
            return Err(ManifestError::TooLarge {
                len: bytes.len(),
                max: MAX_MANIFEST_LEN,
            });
        }
        let limits = ControlLimits {
            max_line: 4096,
            max_fields: 16,
            max_paragraph: 16 * 1024,
        };
        let mut reader = ParagraphReader::with_limits(bytes, limits);
        let header = match reader.next() {
            None => return Err(ManifestError::Empty),
            Some(p) => p?,
        };
        let mut keyring = parse_header(&header)?;
        let mut number = 0;
        for para in reader {
            let para = para?;
            number += 1;
            if number > MAX_KEYS {
                return Err(ManifestError::TooManyKeys { max: MAX_KEYS });
            }
            let entry = parse_key(&para, number)?;
            keyring.add_key(entry)?;
        }
        keyring.validate()?;
        check_canonical(bytes, &keyring.render())?;
        Ok(keyring)
    }
}

fn check_comment(comment: &str) -> Result<(), String> {
    if comment.is_empty() {
        Err("is empty".into())
    } else if comment.len() > MAX_COMMENT_LEN {
        Err(format!(
            "is {} bytes, more than the {MAX_COMMENT_LEN} allowed",
            comment.len()
        ))
    } else if comment.chars().any(char::is_control) {
        Err("contains a control character (line break, tab, ...)".into())
    } else if comment.trim() != comment {
        Err("starts or ends with a blank".into())
    } else {
        Ok(())
    }
}

fn check_fields(para: &Paragraph, stanza: &Stanza, known: &[&str]) -> Result<(), ManifestError> {
    for field in para.fields() {
        if !known.iter().any(|k| k.eq_ignore_ascii_case(field.name())) {
            return Err(ManifestError::UnknownField {
                stanza: stanza.clone(),
                field: field.name().into(),
                expected: known.join(", "),
            });
        }
    }
    Ok(())
}

fn required<'a>(
    para: &'a Paragraph,
    stanza: &Stanza,
    field: &'static str,
) -> Result<&'a str, ManifestError> {
    para.get(field).ok_or_else(|| ManifestError::MissingField {
        stanza: stanza.clone(),
        field,
    })
}

fn bad(stanza: &Stanza, field: &'static str, value: &str, expected: &str) -> ManifestError {
    ManifestError::BadField {
        stanza: stanza.clone(),
        field,
        value: value.into(),
        expected: expected.into(),
    }
}

/// A decimal number without sign or leading zeros.
fn number<T: FromStr>(text: &str) -> Option<T> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    canonical.then(|| text.parse().ok()).flatten()
}

fn date(stanza: &Stanza, field: &'static str, text: &str) -> Result<i64, ManifestError> {
    parse_date(text).ok_or_else(|| bad(stanza, field, text, DATE_EXPECTED))
}

fn parse_header(para: &Paragraph) -> Result<Keyring, ManifestError> {
    let stanza = Stanza::Header;
    check_fields(para, &stanza, &HEADER_FIELDS)?;
    let name = required(para, &stanza, "Keyring")?;
    if !is_valid_name(name) {
        return Err(ManifestError::BadName { name: name.into() });
    }
    let serial_text = required(para, &stanza, "Serial")?;
    let serial = number::<u64>(serial_text).ok_or_else(|| {
        bad(
            &stanza,
            "Serial",
            serial_text,
            "a serial number (decimal, no leading zeros)",
        )
    })?;
    let date_value = date(&stanza, "Date", required(para, &stanza, "Date")?)?;
    let expires = date(&stanza, "Expires", required(para, &stanza, "Expires")?)?;
    let threshold_text = required(para, &stanza, "Root-Threshold")?;
    let threshold = number::<u32>(threshold_text).ok_or_else(|| {
        bad(
            &stanza,
            "Root-Threshold",
            threshold_text,
            "a number of root keys (decimal, no leading zeros)",
        )
    })?;
    Keyring::new(name, serial, date_value, expires, threshold)
}

fn parse_key(para: &Paragraph, number: usize) -> Result<KeyEntry, ManifestError> {
    let stanza = Stanza::Key {
        number,
        fingerprint: para.get("Fingerprint").map(str::to_string),
    };
    check_fields(para, &stanza, &KEY_FIELDS)?;
    let fp_text = required(para, &stanza, "Fingerprint")?;
    let canonical_fp = fp_text.len() == 16
        && fp_text
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let fingerprint = match fp_text.parse::<Fingerprint>() {
        Ok(fp) if canonical_fp => fp,
        _ => {
            return Err(bad(
                &stanza,
                "Fingerprint",
                fp_text,
                "16 lower-case hex digits",
            ));
        }
    };
    let key_text = required(para, &stanza, "Public-Key")?;
    let blob = BASE64.decode(key_text).map_err(|e| {
        bad(
            &stanza,
            "Public-Key",
            key_text,
            &format!("base64 of a 42-byte usign public key ({e})"),
        )
    })?;
    if blob.len() != 42 || !blob.starts_with(b"Ed") {
        return Err(bad(
            &stanza,
            "Public-Key",
            key_text,
            &format!(
                "base64 of a 42-byte usign public key starting with \"Ed\" (decoded {} bytes)",
                blob.len()
            ),
        ));
    }
    let public_key = public_key_from_blob(&blob).map_err(|e| {
        bad(
            &stanza,
            "Public-Key",
            key_text,
            &format!("a usign public key ({e})"),
        )
    })?;
    if public_key.fingerprint() != fingerprint {
        return Err(ManifestError::FingerprintMismatch {
            fingerprint,
            embedded: public_key.fingerprint(),
        });
    }
    let role_text = required(para, &stanza, "Role")?;
    let role = role_text
        .parse::<Role>()
        .map_err(|_| bad(&stanza, "Role", role_text, "root, feed or developer"))?;
    let status_text = required(para, &stanza, "Status")?;
    let status = status_text
        .parse::<Status>()
        .map_err(|_| bad(&stanza, "Status", status_text, "active, retired or revoked"))?;
    let scope = para
        .get("Packages")
        .map(|t| {
            Scope::parse(t).map_err(|reason| {
                bad(
                    &stanza,
                    "Packages",
                    t,
                    &format!("a list of package-name globs like \"luci-app-*, pbr\" ({reason})"),
                )
            })
        })
        .transpose()?;
    let not_after = para
        .get("Not-After")
        .map(|t| date(&stanza, "Not-After", t))
        .transpose()?;
    let comment = para.get("Comment").map(str::to_string);
    if let Some(c) = &comment
        && let Err(reason) = check_comment(c)
    {
        return Err(ManifestError::BadComment {
            fingerprint,
            reason,
        });
    }
    Ok(KeyEntry {
        public_key,
        role,
        status,
        scope,
        not_after,
        comment,
    })
}

/// The input must be exactly what we would write.
fn check_canonical(input: &[u8], canonical: &[u8]) -> Result<(), ManifestError> {
    if input == canonical {
        return Ok(());
    }
    let mut found = input.split_inclusive(|&b| b == b'\n');
    let mut expected = canonical.split_inclusive(|&b| b == b'\n');
    let mut line = 0;
    loop {
        line += 1;
        match (expected.next(), found.next()) {
            (Some(e), Some(f)) if e == f => continue,
            (e, f) => {
                let show = |l: Option<&[u8]>| match l {
                    None => "<end of file>".to_string(),
                    Some(l) => String::from_utf8_lossy(l).into_owned(),
                };
                return Err(ManifestError::NotCanonical {
                    line,
                    expected: show(e),
                    found: show(f),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use feeds::usign::SecretKey;

    const DATE: i64 = 1_795_000_000;
    const YEAR: i64 = 365 * 86_400;

    fn key(seed: u8, fp: u64) -> PublicKey {
        SecretKey::from_seed([seed; 32], Fingerprint::new(fp.to_be_bytes()))
            .unwrap()
            .public_key()
    }

    fn sample() -> Keyring {
        let mut k = Keyring::new("example", 3, DATE, DATE + YEAR, 1).unwrap();
        k.add_key(KeyEntry::new(&key(1, 0x9f01_0000_0000_0001), Role::Root))
            .unwrap();
        let mut feed = KeyEntry::new(&key(2, 0x0b26_f36a_e0f4_106d), Role::Feed);
        feed.not_after = Some(DATE + 2 * YEAR);
        feed.comment = Some("build host, 2026".into());
        k.add_key(feed).unwrap();
        let mut old = KeyEntry::new(&key(3, 0x6b2d_0000_0000_0003), Role::Feed);
        old.status = Status::Revoked;
        k.add_key(old).unwrap();
        k
    }

    fn text() -> String {
        String::from_utf8(sample().to_bytes().unwrap()).unwrap()
    }

    fn parse_err(text: &str) -> String {
        Keyring::parse(text.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn writes_keys_sorted_by_fingerprint_and_round_trips_byte_for_byte() {
        let bytes = sample().to_bytes().unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.starts_with(
            "Keyring: example\nSerial: 3\nDate: Wed, 18 Nov 2026 11:06:40 UTC\nExpires: Thu, 18 Nov 2027 11:06:40 UTC\nRoot-Threshold: 1\n\nFingerprint: 0b26f36ae0f4106d\n"
        ), "{text}");
        let fps: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("Fingerprint: "))
            .collect();
        assert_eq!(
            fps,
            ["0b26f36ae0f4106d", "6b2d000000000003", "9f01000000000001"]
        );
        assert!(
            text.contains("Not-After: Fri, 17 Nov 2028 11:06:40 UTC\nComment: build host, 2026\n")
        );
        let parsed = Keyring::parse(&bytes).unwrap();
        assert_eq!(parsed, sample());
        assert_eq!(parsed.to_bytes().unwrap(), bytes);
    }

    #[test]
    fn public_key_field_is_the_usign_public_key_blob() {
        let pk = key(1, 0x9f01_0000_0000_0001);
        let line2 = String::from_utf8(pk.to_file_bytes())
            .unwrap()
            .lines()
            .nth(1)
            .unwrap()
            .to_string();
        assert!(text().contains(&format!("Public-Key: {line2}\n")));
        // A key file with a custom comment is stored with usign's default comment.
        let custom = pk.clone().with_comment("my root").unwrap();
        let entry = KeyEntry::new(&custom, Role::Root);
        assert_eq!(entry.key_file_bytes(), pk.to_file_bytes());
        // usign pads the fingerprint in that comment ("%016"PRIx64, usign main.c line 152)
        let zeros = key(1, 0x00a1_0000_0000_0001).with_comment("other").unwrap();
        let file = KeyEntry::new(&zeros, Role::Feed).key_file_bytes();
        assert!(
            file.starts_with(b"untrusted comment: public key 00a1000000000001\n"),
            "{}",
            String::from_utf8_lossy(&file)
        );
    }

    #[test]
    fn unknown_role_and_status_are_refused_naming_the_key() {
        let t = text().replace("Role: root", "Role: admin");
        assert_eq!(
            parse_err(&t),
            "keyring: key 9f01000000000001: field Role: \"admin\" is not root, feed or developer"
        );
        let t = text().replace("Status: revoked", "Status: compromised");
        assert_eq!(
            parse_err(&t),
            "keyring: key 6b2d000000000003: field Status: \"compromised\" is not active, retired or revoked"
        );
    }

    fn with_developer(scope: Option<&str>) -> Keyring {
        let mut k = sample();
        let mut dev = KeyEntry::new(&key(4, 0xd000_0000_0000_0004), Role::Developer);
        dev.scope = scope.map(|s| Scope::parse(s).unwrap());
        k.add_key(dev).unwrap();
        k
    }

    #[test]
    fn developer_key_with_a_scope_round_trips_byte_for_byte() {
        let k = with_developer(Some("luci-app-*,  pbr"));
        let bytes = k.to_bytes().unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(
            text.contains("Fingerprint: d000000000000004\nPublic-Key: ")
                && text.contains("Role: developer\nStatus: active\nPackages: luci-app-*, pbr\n"),
            "{text}"
        );
        let back = Keyring::parse(&bytes).unwrap();
        assert_eq!(back, k);
        let dev = back
            .key(Fingerprint::new(0xd000_0000_0000_0004u64.to_be_bytes()))
            .unwrap();
        assert!(dev.may_sign_package("luci-app-pbr", DATE));
        assert!(dev.may_sign_package("pbr", DATE));
        assert!(!dev.may_sign_package("pbr-extra", DATE));
        assert!(!dev.may_sign_package("luci-app", DATE));
        // A developer key signs packages only: never usable as a feed or root key.
        assert!(!dev.is_usable_as(Role::Feed, DATE));
        // No scope: any name.
        let any = with_developer(None);
        let dev = any
            .key(Fingerprint::new(0xd000_0000_0000_0004u64.to_be_bytes()))
            .unwrap();
        assert!(dev.may_sign_package("anything", DATE));
        // A non-canonical separator is refused like any other non-canonical form.
        let t = text.replace("Packages: luci-app-*, pbr", "Packages: luci-app-*,pbr");
        assert!(
            parse_err(&t).contains("not in canonical form"),
            "{}",
            parse_err(&t)
        );
    }

    #[test]
    fn bad_scopes_are_refused_naming_the_key_and_why() {
        let text = String::from_utf8(with_developer(Some("pbr")).to_bytes().unwrap()).unwrap();
        for (scope, why) in [
            ("luci-app-[a-z]", "holds '['"),
            ("pbr,, x", "an empty glob"),
            ("Pbr", "holds 'P'"),
        ] {
            let t = text.replace("Packages: pbr", &format!("Packages: {scope}"));
            let err = parse_err(&t);
            assert!(
                err.starts_with("keyring: key d000000000000004: field Packages: ")
                    && err.contains(why),
                "{scope}: {err}"
            );
        }
        // A scope on a feed key.
        let t = text.replace(
            "Role: feed\nStatus: active\n",
            "Role: feed\nStatus: active\nPackages: x\n",
        );
        assert_eq!(
            parse_err(&t),
            "keyring: key 0b26f36ae0f4106d: a Packages scope is only for developer keys, this one is a feed key"
        );
    }

    #[test]
    fn globs_match_whole_names() {
        let s = Scope::parse("luci-*-de, a?c, *-dev, x*y*z, exact").unwrap();
        for yes in [
            "luci-app-de",
            "luci--de",
            "abc",
            "a-c",
            "foo-dev",
            "-dev",
            "xyz",
            "x1y2z",
            "exact",
        ] {
            assert!(s.covers(yes), "{yes}");
        }
        for no in [
            "luci-app-en",
            "ac",
            "abbc",
            "dev",
            "xy",
            "exact2",
            "an-exact",
            "",
        ] {
            assert!(!s.covers(no), "{no}");
        }
        assert!(Scope::parse("*").unwrap().covers(""));
    }

    #[test]
    fn duplicate_fingerprints_are_refused() {
        let t = text();
        let stanza_start = t.find("\nFingerprint: 9f01").unwrap();
        let dup = format!("{t}{}", &t[stanza_start..]);
        assert_eq!(
            parse_err(&dup),
            "keyring: key 9f01000000000001 is listed twice"
        );
    }

    #[test]
    fn one_public_key_under_two_fingerprints_is_refused() {
        let mut k = sample();
        let same_material = SecretKey::from_seed([1; 32], Fingerprint::new([0xaa; 8]))
            .unwrap()
            .public_key();
        let err = k
            .add_key(KeyEntry::new(&same_material, Role::Root))
            .unwrap_err();
        assert!(matches!(err, ManifestError::DuplicateKey { .. }), "{err}");
    }

    #[test]
    fn threshold_zero_or_above_active_roots_is_refused() {
        let t = text().replace("Root-Threshold: 1", "Root-Threshold: 0");
        assert_eq!(
            parse_err(&t),
            "keyring example serial 3: Root-Threshold is 0 (at least one root signature must be required)"
        );
        let t = text().replace("Root-Threshold: 1", "Root-Threshold: 2");
        assert_eq!(
            parse_err(&t),
            "keyring example serial 3: Root-Threshold 2 is more than the 1 active root keys"
        );
        // A retired root does not count as active.
        let t = text().replace("Role: root\nStatus: active", "Role: root\nStatus: retired");
        assert!(parse_err(&t).contains("Root-Threshold 1 is more than the 0 active root keys"));
    }

    #[test]
    fn bad_base64_and_wrong_embedded_fingerprint_are_refused() {
        let t = text();
        let start = t.find("Public-Key: ").unwrap() + 12;
        let mut broken = t.clone();
        broken.replace_range(start..start + 4, "!!!!");
        let err = parse_err(&broken);
        assert!(
            err.starts_with("keyring: key 0b26f36ae0f4106d: field Public-Key: \"!!!!")
                && err.contains("base64"),
            "{err}"
        );
        // Swap the Public-Key values of two stanzas: fingerprint and key disagree.
        let keys: Vec<&str> = t
            .lines()
            .filter_map(|l| l.strip_prefix("Public-Key: "))
            .collect();
        let swapped = t
            .replace(keys[0], "@@")
            .replace(keys[1], keys[0])
            .replace("@@", keys[1]);
        assert_eq!(
            parse_err(&swapped),
            "keyring: key 0b26f36ae0f4106d: Public-Key holds the key with fingerprint 6b2d000000000003, not 0b26f36ae0f4106d"
        );
        // A decodable blob of the wrong size.
        let short = t.replace(keys[0], "RWQL");
        assert!(parse_err(&short).contains("decoded 3 bytes"));
    }

    #[test]
    fn unknown_fields_missing_fields_and_bad_values_are_named() {
        let t = text().replace("Root-Threshold: 1\n", "Root-Threshold: 1\nOrigin: x\n");
        assert!(
            parse_err(&t).starts_with("keyring: header: unknown field Origin"),
            "{}",
            parse_err(&t)
        );
        let t = text().replace("Role: root\n", "");
        assert_eq!(
            parse_err(&t),
            "keyring: key 9f01000000000001: missing field Role"
        );
        let t = text().replace("Serial: 3", "Serial: 03");
        assert!(parse_err(&t).starts_with("keyring: header: field Serial: \"03\""));
        let t = text().replace("Serial: 3", "Serial: -3");
        assert!(parse_err(&t).starts_with("keyring: header: field Serial: \"-3\""));
        let t = text().replace(
            "Fingerprint: 9f01000000000001",
            "Fingerprint: 9F01000000000001",
        );
        assert!(parse_err(&t).contains("16 lower-case hex digits"));
        let t = text().replace("Expires: Thu, 18 Nov 2027", "Expires: Thu, 31 Nov 2027");
        assert!(parse_err(&t).starts_with("keyring: header: field Expires:"));
        assert_eq!(Keyring::parse(b"").unwrap_err(), ManifestError::Empty);
        let t = text().replace("Keyring: example", "Keyring: Bad/Name");
        assert!(parse_err(&t).contains("bad name"));
    }

    #[test]
    fn non_canonical_text_is_refused_with_the_line() {
        // Dates in another valid spelling.
        let t = text().replace(
            "Date: Wed, 18 Nov 2026 11:06:40 UTC",
            "Date: 18 Nov 2026 11:06:40 +0000",
        );
        let err = Keyring::parse(t.as_bytes()).unwrap_err();
        assert!(
            matches!(err, ManifestError::NotCanonical { line: 3, .. }),
            "{err}"
        );
        // Two blank lines between stanzas, a missing final newline, fields out of order.
        assert!(matches!(
            Keyring::parse(text().replacen("\n\n", "\n\n\n", 1).as_bytes()),
            Err(ManifestError::NotCanonical { line: 7, .. })
        ));
        assert!(matches!(
            Keyring::parse(text().trim_end().as_bytes()),
            Err(ManifestError::NotCanonical { .. })
        ));
        let t = text().replace("Role: root\nStatus: active", "Status: active\nRole: root");
        assert!(matches!(
            Keyring::parse(t.as_bytes()),
            Err(ManifestError::NotCanonical { .. })
        ));
    }

    #[test]
    fn expires_before_date_is_refused() {
        let mut k = sample();
        k.set_expires(DATE - 1);
        assert!(matches!(
            k.to_bytes(),
            Err(ManifestError::ExpiresBeforeDate { .. })
        ));
    }

    #[test]
    fn bounds_are_enforced() {
        let huge = vec![b'a'; MAX_MANIFEST_LEN + 1];
        assert!(matches!(
            Keyring::parse(&huge),
            Err(ManifestError::TooLarge { .. })
        ));
        let mut k = Keyring::new("many", 1, DATE, DATE + YEAR, 1).unwrap();
        for i in 0..MAX_KEYS as u64 {
            let (sk, _) = SecretKey::generate(None).unwrap();
            let _ = i;
            k.add_key(KeyEntry::new(&sk.public_key(), Role::Root))
                .unwrap();
        }
        let (sk, _) = SecretKey::generate(None).unwrap();
        assert!(matches!(
            k.add_key(KeyEntry::new(&sk.public_key(), Role::Feed)),
            Err(ManifestError::TooManyKeys { .. })
        ));
        // Parsing a text with one key too many stops at the bound.
        let bytes = k.to_bytes().unwrap();
        let mut text = String::from_utf8(bytes).unwrap();
        let first = text.find("\nFingerprint: ").unwrap();
        let extra = text[first..text[first + 1..].find("\n\n").unwrap() + first + 2].to_string();
        text.push_str(&extra);
        assert!(matches!(
            Keyring::parse(text.as_bytes()),
            Err(ManifestError::TooManyKeys { .. })
        ));
    }

    #[test]
    fn comments_must_be_one_clean_line() {
        for bad in [
            "",
            " x",
            "x ",
            "a\tb",
            "a\nb",
            &"c".repeat(MAX_COMMENT_LEN + 1),
        ] {
            let mut k = sample();
            let fp = k.keys().next().unwrap().fingerprint();
            k.key_mut(fp).unwrap().comment = Some(bad.to_string());
            assert!(
                matches!(k.to_bytes(), Err(ManifestError::BadComment { .. })),
                "{bad:?}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn parser_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let _ = Keyring::parse(&bytes);
        }

        #[test]
        fn parser_never_panics_on_edited_manifests(at in 0usize..1200, byte in proptest::num::u8::ANY) {
            let mut bytes = sample().to_bytes().unwrap();
            let at = at % bytes.len();
            bytes[at] = byte;
            if let Ok(k) = Keyring::parse(&bytes) {
                proptest::prop_assert_eq!(k.to_bytes().unwrap(), bytes);
            }
        }
    }
}
