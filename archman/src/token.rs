//! Access tokens for private feeds, and the web server lines that accept them
//! (docs/trust-model.md §13): `archman token new|roll|remove|list`.
//!
//! A token directory holds, for each client name, its current token, and the two files a web
//! server reads, regenerated from the tokens on every change:
//!
//! ```text
//! DIR/<name>.token        the token, one line (0600)
//! DIR/nginx-bearer.conf   `map $http_authorization $archman_token_ok { "Bearer <t>" 1; … }` (0600)
//! DIR/htpasswd            `<name>:$6$<salt>$<hash>` per token: SHA-512-crypt, for auth_basic (0644)
//! ```
//!
//! A token is 32 random bytes in unpadded base64url (43 characters, safe in a header, a
//! netrc word and an nginx string). Rolling replaces a name's token and rewrites both server
//! files without the old one: once the server reloads, the old token is refused.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use safe_fs::WriteOptions;

/// The nginx variable the bearer snippet sets: 1 for a known token, 0 otherwise.
pub const NGINX_VARIABLE: &str = "$archman_token_ok";
pub const BEARER_FILE: &str = "nginx-bearer.conf";
pub const HTPASSWD_FILE: &str = "htpasswd";
const TOKEN_SUFFIX: &str = ".token";

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token name {0:?}: use letters, digits, '.', '_', '-' (not first '.' or '-')")]
    BadName(String),
    #[error("{}: token {name} exists; roll it with `archman token roll --name {name}`", dir.display())]
    Exists { dir: PathBuf, name: String },
    #[error("{}: no token {name}", dir.display())]
    Unknown { dir: PathBuf, name: String },
    #[error("{}: {reason}", path.display())]
    BadFile { path: PathBuf, reason: String },
    #[error("no randomness from the operating system: {0}")]
    Random(String),
    #[error("SHA-crypt: {0}")]
    Crypt(String),
    #[error(transparent)]
    Fs(#[from] safe_fs::FsError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A token: `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// 32 random bytes, base64url without padding.
    pub fn generate() -> Result<Token, TokenError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| TokenError::Random(e.to_string()))?;
        Ok(Token(
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes),
        ))
    }

    /// The token itself (for its file, the bearer snippet and the htpasswd hash).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(***)")
    }
}

fn check_name(name: &str) -> Result<(), TokenError> {
    let ok = !name.is_empty()
        && !name.starts_with(['.', '-'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(TokenError::BadName(name.into()))
    }
}

/// The SHA-512-crypt (`$6$`) hash of `password` with a random 16-character salt, as glibc's
/// and libxcrypt's crypt(3) — which nginx's `auth_basic_user_file` calls — read it.
pub fn sha512_crypt(password: &str) -> Result<String, TokenError> {
    const ALPHABET: &[u8] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut raw = [0u8; 16];
    getrandom::fill(&mut raw).map_err(|e| TokenError::Random(e.to_string()))?;
    let salt: String = raw
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % 64] as char)
        .collect();
    sha512_crypt_with_salt(password, &salt)
}

/// [`sha512_crypt`] with a given salt (default 5000 rounds, so no `rounds=` field).
pub fn sha512_crypt_with_salt(password: &str, salt: &str) -> Result<String, TokenError> {
    let params = sha_crypt::Sha512Params::default();
    let hash = sha_crypt::sha512_crypt_b64(password.as_bytes(), salt.as_bytes(), &params)
        .map_err(|e| TokenError::Crypt(format!("{e:?}")))?;
    Ok(format!("$6${salt}${hash}"))
}

/// A token directory.
pub struct TokenDir {
    dir: PathBuf,
}

/// What a change wrote.
#[derive(Debug)]
pub struct Written {
    pub name: String,
    pub token: Token,
    pub token_file: PathBuf,
    pub bearer_file: PathBuf,
    pub htpasswd_file: PathBuf,
    /// The htpasswd line of this token.
    pub htpasswd_line: String,
}

impl TokenDir {
    /// Opens `dir`, creating it (0700) when missing.
    pub fn open(dir: &Path) -> Result<TokenDir, TokenError> {
        if !dir.exists() {
            fs::create_dir_all(dir).map_err(|source| TokenError::Io {
                path: dir.into(),
                source,
            })?;
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(|source| {
                TokenError::Io {
                    path: dir.into(),
                    source,
                }
            })?;
        }
        Ok(TokenDir { dir: dir.into() })
    }

    fn token_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}{TOKEN_SUFFIX}"))
    }

    /// Every name and its token, sorted by name.
    pub fn tokens(&self) -> Result<Vec<(String, Token)>, TokenError> {
        let mut out = Vec::new();
        let entries = fs::read_dir(&self.dir).map_err(|source| TokenError::Io {
            path: self.dir.clone(),
            source,
        })?;
        for e in entries.flatten() {
            let file = e.file_name().to_string_lossy().into_owned();
            let Some(name) = file.strip_suffix(TOKEN_SUFFIX) else {
                continue;
            };
            if check_name(name).is_err() {
                continue;
            }
            let path = e.path();
            let bytes = safe_fs::read_bounded(&path, 4096)?.unwrap_or_default();
            let text = String::from_utf8(bytes).unwrap_or_default();
            let token = text.trim();
            if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(TokenError::BadFile {
                    path,
                    reason: "not a token (one line of printable characters)".into(),
                });
            }
            out.push((name.to_string(), Token(token.to_string())));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// A new token for `name` (refused when it has one: roll it instead).
    pub fn new_token(&self, name: &str) -> Result<Written, TokenError> {
        check_name(name)?;
        if self.token_path(name).exists() {
            return Err(TokenError::Exists {
                dir: self.dir.clone(),
                name: name.into(),
            });
        }
        self.replace(name)
    }

    /// Replaces `name`'s token; the server files no longer accept the old one.
    pub fn roll(&self, name: &str) -> Result<Written, TokenError> {
        check_name(name)?;
        if !self.token_path(name).exists() {
            return Err(TokenError::Unknown {
                dir: self.dir.clone(),
                name: name.into(),
            });
        }
        self.replace(name)
    }

    /// Removes `name`'s token and rewrites the server files without it.
    pub fn remove(&self, name: &str) -> Result<(), TokenError> {
        check_name(name)?;
        let path = self.token_path(name);
        if !path.exists() {
            return Err(TokenError::Unknown {
                dir: self.dir.clone(),
                name: name.into(),
            });
        }
        let tokens: Vec<(String, Token)> = self
            .tokens()?
            .into_iter()
            .filter(|(n, _)| n != name)
            .collect();
        self.write_server_files(&tokens)?;
        safe_fs::remove_file_durably(&path, true)?;
        Ok(())
    }

    fn replace(&self, name: &str) -> Result<Written, TokenError> {
        let token = Token::generate()?;
        let mut tokens: Vec<(String, Token)> = self
            .tokens()?
            .into_iter()
            .filter(|(n, _)| n != name)
            .collect();
        tokens.push((name.to_string(), token.clone()));
        tokens.sort_by(|a, b| a.0.cmp(&b.0));
        // The token first, then the server files: a crash between leaves a token the server
        // does not know yet (the next change writes it), never a server accepting a token
        // nobody has.
        let token_file = self.token_path(name);
        safe_fs::write_atomic(
            &token_file,
            format!("{}\n", token.expose()).as_bytes(),
            WriteOptions::default().mode(0o600),
        )?;
        let htpasswd_line = self
            .write_server_files(&tokens)?
            .remove(name)
            .unwrap_or_default();
        Ok(Written {
            name: name.into(),
            token,
            token_file,
            bearer_file: self.dir.join(BEARER_FILE),
            htpasswd_file: self.dir.join(HTPASSWD_FILE),
            htpasswd_line,
        })
    }

    /// Rewrites both server files for `tokens`; returns each name's htpasswd line.
    fn write_server_files(
        &self,
        tokens: &[(String, Token)],
    ) -> Result<std::collections::BTreeMap<String, String>, TokenError> {
        // A key is `Bearer ` and 43 characters: past nginx's default map bucket of 64 bytes
        // on some builds (an http-level directive: drop it if the http block sets it too).
        let mut bearer = format!(
            "# archman token: the bearer tokens nginx accepts; include it in http {{}} and\n# refuse the rest in the feed's location: if ({NGINX_VARIABLE} = 0) {{ return 401; }}\nmap_hash_bucket_size 128;\nmap $http_authorization {NGINX_VARIABLE} {{\n    default 0;\n"
        );
        let mut htpasswd = String::new();
        let mut lines = std::collections::BTreeMap::new();
        for (name, token) in tokens {
            bearer.push_str(&format!("    \"Bearer {}\" 1;  # {name}\n", token.expose()));
            let line = format!("{name}:{}", sha512_crypt(token.expose())?);
            htpasswd.push_str(&line);
            htpasswd.push('\n');
            lines.insert(name.clone(), line);
        }
        bearer.push_str("}\n");
        safe_fs::write_atomic(
            &self.dir.join(BEARER_FILE),
            bearer.as_bytes(),
            WriteOptions::default().mode(0o600),
        )?;
        safe_fs::write_atomic(
            &self.dir.join(HTPASSWD_FILE),
            htpasswd.as_bytes(),
            WriteOptions::default().mode(0o644),
        )?;
        Ok(lines)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha512_crypt_matches_the_reference_vector() {
        // Ulrich Drepper's SHA-crypt specification, test vector 1 (5000 rounds implied).
        assert_eq!(
            sha512_crypt_with_salt("Hello world!", "saltstring").unwrap(),
            "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"
        );
    }

    #[test]
    fn tokens_roll_and_the_server_files_follow() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = TokenDir::open(&tmp.path().join("tokens")).unwrap();
        let a = dir.new_token("device-a").unwrap();
        assert_eq!(a.token.expose().len(), 43);
        assert!(format!("{a:?}").contains("Token(***)"));
        assert!(!format!("{a:?}").contains(a.token.expose()));
        assert!(matches!(
            dir.new_token("device-a"),
            Err(TokenError::Exists { .. })
        ));
        let b = dir.new_token("device-b").unwrap();
        let bearer = fs::read_to_string(&a.bearer_file).unwrap();
        assert!(bearer.contains(a.token.expose()) && bearer.contains(b.token.expose()));
        let rolled = dir.roll("device-a").unwrap();
        assert_ne!(rolled.token, a.token);
        let bearer = fs::read_to_string(&a.bearer_file).unwrap();
        assert!(
            !bearer.contains(a.token.expose()),
            "the old token is still accepted"
        );
        assert!(bearer.contains(rolled.token.expose()));
        let htpasswd = fs::read_to_string(&a.htpasswd_file).unwrap();
        assert_eq!(htpasswd.lines().count(), 2);
        assert!(htpasswd.starts_with("device-a:$6$"));
        dir.remove("device-b").unwrap();
        assert!(
            !fs::read_to_string(&a.bearer_file)
                .unwrap()
                .contains(b.token.expose())
        );
        assert!(matches!(
            dir.roll("device-b"),
            Err(TokenError::Unknown { .. })
        ));
        assert!(matches!(dir.new_token("../x"), Err(TokenError::BadName(_))));
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&rolled.token_file), 0o600);
        assert_eq!(mode(&rolled.bearer_file), 0o600);
    }
}
