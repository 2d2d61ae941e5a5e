//! Credentials for private feeds (docs/trust-model.md §13): `<root>/etc/prokit/auth.conf` and
//! `<root>/etc/prokit/auth.conf.d/*.conf` in apt's `auth.conf` format, plus a bearer-token
//! form, and the userinfo of a feed URL in opkg.conf.
//!
//! ```text
//! machine example.org/private login alice password s3cret
//! machine repo.example.com token 0123abcd...
//! ```
//!
//! As apt reads it, the file is a sequence of words: `machine` starts an entry, followed by
//! `login` and `password`, or by `token`; entries may span lines, `#` starts a comment line.
//! `HOST` may carry a port (`host:8443`) and a scheme (`https://host`, then only https
//! matches), and `/PATH` a path prefix matched at `/` boundaries. The most specific entry wins
//! (longest path; one naming a port over one that does not).
//!
//! Rules that keep a secret where it belongs:
//! - a file is read only when the caller owns it and no other user may read it (mode `& 077`
//!   zero), as ssh reads private keys; otherwise the run stops with the reason;
//! - a credential is sent only to the host (and path prefix) it names, only over https or
//!   plain http to a loopback address, and never along a redirect (`fetch` drops it);
//! - a secret is a [`Secret`], whose `Debug` prints `***`: it cannot reach a message, `--json`,
//!   the audit log or a panic by way of formatting.

use std::fmt;
use std::os::unix::fs::MetadataExt;

use base64::Engine as _;
use safe_fs::Root;

/// The main credentials file, inside the root.
pub const AUTH_CONF: &str = "etc/prokit/auth.conf";
/// The directory of further credentials files (`*.conf`), inside the root.
pub const AUTH_CONF_D: &str = "etc/prokit/auth.conf.d";
/// Largest credentials file read.
const MAX_AUTH_FILE: u64 = 256 * 1024;

/// A secret value: never shown (`Debug` prints `***`; there is no `Display`).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself: for the request header and the credentials file only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// What an entry sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    /// `login USER password SECRET`: `Authorization: Basic`.
    Basic { login: String, password: Secret },
    /// `token SECRET`: `Authorization: Bearer`.
    Bearer { token: Secret },
}

impl Credential {
    /// The `Authorization` header value.
    pub fn header(&self) -> String {
        match self {
            Credential::Basic { login, password } => format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{login}:{}", password.expose()))
            ),
            Credential::Bearer { token } => format!("Bearer {}", token.expose()),
        }
    }

    /// The entry as a user may see it: the login, never a secret.
    pub fn masked(&self) -> String {
        match self {
            Credential::Basic { login, .. } => format!("login {login} password ***"),
            Credential::Bearer { .. } => "token ***".into(),
        }
    }
}

/// Where a credential may be sent: `[scheme://]host[:port][/path]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Machine {
    /// As written in the file (what messages name).
    pub text: String,
    https_only: bool,
    host: String,
    port: Option<u16>,
    /// The path prefix, without a trailing `/` (empty: the whole host).
    path: String,
}

impl Machine {
    /// Parses a `machine` value; `None` when it has no host.
    pub fn parse(text: &str) -> Option<Machine> {
        let (https_only, rest) = match text.split_once("://") {
            Some(("https", rest)) => (true, rest),
            Some(("http", rest)) => (false, rest),
            Some(_) => return None,
            None => (false, text),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return None;
        }
        let (host, port) = split_port(authority)?;
        if host.is_empty() {
            return None;
        }
        Some(Machine {
            text: text.to_string(),
            https_only,
            host: host.to_ascii_lowercase(),
            port,
            path: path.to_string(),
        })
    }

    /// The machine a feed URL's credentials are for: its host, port and path.
    pub fn for_url(url: &str) -> Option<Machine> {
        let parts = UrlParts::parse(url)?;
        let mut text = parts.host.clone();
        if let Some(p) = parts.port {
            text.push_str(&format!(":{p}"));
        }
        text.push_str(parts.path.trim_end_matches('/'));
        Machine::parse(&text)
    }

    /// How specific a match is: path length, then a named port.
    fn specificity(&self) -> (usize, bool) {
        (self.path.len(), self.port.is_some())
    }

    fn matches(&self, url: &UrlParts) -> bool {
        if self.https_only && !url.https {
            return false;
        }
        if self.host != url.host {
            return false;
        }
        if let Some(p) = self.port
            && Some(p) != url.port
        {
            return false;
        }
        self.path.is_empty()
            || url.path == self.path
            || url
                .path
                .strip_prefix(&self.path)
                .is_some_and(|rest| rest.starts_with('/'))
    }
}

/// `host[:port]` (IPv6 in brackets): the host and the port.
fn split_port(authority: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let end = rest.find(']')?;
        let host = &authority[..end + 2];
        return match &rest[end + 1..] {
            "" => Some((host, None)),
            p => Some((host, Some(p.strip_prefix(':')?.parse().ok()?))),
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host, Some(port.parse().ok()?))),
        None => Some((authority, None)),
    }
}

/// What the credential rules need of a URL.
#[derive(Debug)]
pub struct UrlParts {
    pub https: bool,
    /// Lower-case host (IPv6 in brackets).
    pub host: String,
    /// The port when the URL names one.
    pub port: Option<u16>,
    /// The path, without query or fragment (`/` when empty).
    pub path: String,
}

impl UrlParts {
    /// `http://` and `https://` URLs only; userinfo is skipped.
    pub fn parse(url: &str) -> Option<UrlParts> {
        let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else {
            (false, url.strip_prefix("http://")?)
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..end];
        let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
        let (host, port) = split_port(authority)?;
        let path = rest[end..].split(['?', '#']).next().unwrap_or("");
        Some(UrlParts {
            https,
            host: host.to_ascii_lowercase(),
            port,
            path: if path.is_empty() {
                "/".into()
            } else {
                path.into()
            },
        })
    }

    /// Plain http may carry a credential only to this machine itself.
    pub fn is_loopback(&self) -> bool {
        let h = self.host.trim_start_matches('[').trim_end_matches(']');
        h == "localhost"
            || h.ends_with(".localhost")
            || h.parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

/// One entry: where it came from, where it may go, what it sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// `file:line` of its `machine` word.
    pub origin: String,
    pub machine: Machine,
    pub credential: Credential,
}

/// Why credentials could not be used. Never carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{file}:{line}: {reason}")]
    Syntax {
        file: String,
        line: usize,
        reason: String,
    },
    #[error(
        "refusing to read credentials from {file}: {reason} (as ssh refuses a private key others can read; fix with chmod 600 / chown)"
    )]
    Permissions { file: String, reason: String },
    #[error("{0}")]
    Fs(#[from] safe_fs::FsError),
    #[error("{file}: larger than {MAX_AUTH_FILE} bytes")]
    TooLarge { file: String },
}

/// Every credential a root holds, and the URL credentials of opkg.conf.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credentials {
    entries: Vec<Entry>,
}

/// The outcome of looking a URL up.
#[derive(Debug)]
pub enum Lookup<'a> {
    /// No entry names this URL.
    None,
    /// Send this entry's header.
    Send(&'a Entry),
    /// An entry names the URL but it is plain http to another machine: refused.
    Insecure(&'a Entry),
}

impl Credentials {
    pub fn from_entries(entries: Vec<Entry>) -> Credentials {
        Credentials { entries }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn push(&mut self, entry: Entry) {
        self.entries.push(entry);
    }

    /// The entry for `url`: the most specific match (the first of equals).
    pub fn lookup(&self, url: &str) -> Lookup<'_> {
        let Some(parts) = UrlParts::parse(url) else {
            return Lookup::None;
        };
        let mut best: Option<&Entry> = None;
        for e in self.entries.iter().filter(|e| e.machine.matches(&parts)) {
            if best.is_none_or(|b| e.machine.specificity() > b.machine.specificity()) {
                best = Some(e);
            }
        }
        match best {
            None => Lookup::None,
            Some(e) if parts.https || parts.is_loopback() => Lookup::Send(e),
            Some(e) => Lookup::Insecure(e),
        }
    }

    /// Reads `etc/prokit/auth.conf` and `etc/prokit/auth.conf.d/*.conf` (sorted) of `root`,
    /// each owned by the caller and readable by no one else.
    pub fn load(root: &Root) -> Result<Credentials, AuthError> {
        let mut files = vec![AUTH_CONF.to_string()];
        match root.open_dir(AUTH_CONF_D, false) {
            Ok(dir) => {
                let mut names: Vec<String> = dir
                    .entries()?
                    .into_iter()
                    .filter_map(|n| n.to_str().map(str::to_string))
                    .filter(|n| n.ends_with(".conf") && !n.starts_with('.'))
                    .collect();
                names.sort();
                files.extend(names.into_iter().map(|n| format!("{AUTH_CONF_D}/{n}")));
            }
            Err(e) if e.is_not_found() || e.kind() == std::io::ErrorKind::NotADirectory => {}
            Err(e) => return Err(e.into()),
        }
        let mut out = Credentials::default();
        let me = rustix::process::geteuid().as_raw();
        for rel in files {
            let shown = format!("/{rel}");
            let Some(file) = root.open_file(&rel)? else {
                continue;
            };
            let meta = file.metadata().map_err(|e| AuthError::Permissions {
                file: shown.clone(),
                reason: e.to_string(),
            })?;
            if !meta.is_file() {
                continue;
            }
            if meta.uid() != me {
                return Err(AuthError::Permissions {
                    file: shown,
                    reason: format!("it is owned by uid {}, not by you (uid {me})", meta.uid()),
                });
            }
            if meta.mode() & 0o077 != 0 {
                return Err(AuthError::Permissions {
                    file: shown,
                    reason: format!(
                        "mode {:04o} lets other users read or change it",
                        meta.mode() & 0o7777
                    ),
                });
            }
            if meta.len() > MAX_AUTH_FILE {
                return Err(AuthError::TooLarge { file: shown });
            }
            let mut bytes = Vec::new();
            use std::io::Read as _;
            file.take(MAX_AUTH_FILE + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| AuthError::Permissions {
                    file: shown.clone(),
                    reason: e.to_string(),
                })?;
            let text = String::from_utf8(bytes).map_err(|_| AuthError::Syntax {
                file: shown.clone(),
                line: 1,
                reason: "not UTF-8 text".into(),
            })?;
            out.entries.extend(parse(&text, &shown)?);
        }
        Ok(out)
    }
}

/// Parses one credentials file; errors name the file and line and never quote a secret.
pub fn parse(text: &str, file: &str) -> Result<Vec<Entry>, AuthError> {
    let err = |line: usize, reason: String| AuthError::Syntax {
        file: file.to_string(),
        line,
        reason,
    };
    let mut words: Vec<(usize, &str)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with('#') {
            continue;
        }
        words.extend(line.split_whitespace().map(|w| (i + 1, w)));
    }
    let mut out = Vec::new();
    let mut it = words.into_iter().peekable();
    while let Some((line, word)) = it.next() {
        if word != "machine" {
            return Err(err(
                line,
                format!(
                    "expected `machine HOST[/PATH]` to start an entry, found {}",
                    crate::config::excerpt(word)
                ),
            ));
        }
        let Some((_, host)) = it.next() else {
            return Err(err(line, "`machine` without a host".into()));
        };
        let machine = Machine::parse(host).ok_or_else(|| {
            err(
                line,
                format!(
                    "machine {}: expected [https://]HOST[:PORT][/PATH]",
                    crate::config::excerpt(host)
                ),
            )
        })?;
        let (mut login, mut password, mut token) = (None, None, None);
        while let Some(&(l, key)) = it.peek() {
            if key == "machine" {
                break;
            }
            it.next();
            let Some((_, value)) = it.next() else {
                return Err(err(l, format!("`{key}` without a value")));
            };
            match key {
                "login" => login = Some(value.to_string()),
                "password" => password = Some(Secret::new(value)),
                "token" => token = Some(Secret::new(value)),
                other => {
                    return Err(err(
                        l,
                        format!(
                            "unknown word {} in the entry for machine {} (expected login, password or token)",
                            crate::config::excerpt(other),
                            machine.text
                        ),
                    ));
                }
            }
        }
        let credential = match (login, password, token) {
            (Some(login), Some(password), None) => Credential::Basic { login, password },
            (None, None, Some(token)) => Credential::Bearer { token },
            (_, _, Some(_)) => {
                return Err(err(
                    line,
                    format!(
                        "machine {}: a token entry takes no login or password",
                        machine.text
                    ),
                ));
            }
            _ => {
                return Err(err(
                    line,
                    format!(
                        "machine {}: needs `login USER password SECRET` or `token SECRET`",
                        machine.text
                    ),
                ));
            }
        };
        out.push(Entry {
            origin: format!("{file}:{line}"),
            machine,
            credential,
        });
    }
    Ok(out)
}

/// A secret read from a file for `prokit auth set`: its first line, one trailing line break
/// removed; refused when empty, multi-line or holding blanks (the file format is words).
pub fn secret_from_file(bytes: &[u8], file: &str) -> Result<Secret, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| format!("{file}: not UTF-8 text"))?;
    let text = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(text);
    if text.is_empty() {
        return Err(format!("{file}: empty; a secret is needed"));
    }
    if text.contains(['\n', '\r']) {
        return Err(format!(
            "{file}: more than one line; the secret is one line"
        ));
    }
    if text.chars().any(char::is_whitespace) {
        return Err(format!(
            "{file}: the secret holds blanks, which auth.conf cannot carry"
        ));
    }
    Ok(Secret::new(text))
}

/// The text of one entry, as `prokit auth set` writes it.
pub fn entry_text(machine: &str, credential: &Credential) -> String {
    match credential {
        Credential::Basic { login, password } => {
            format!(
                "machine {machine} login {login} password {}\n",
                password.expose()
            )
        }
        Credential::Bearer { token } => format!("machine {machine} token {}\n", token.expose()),
    }
}

/// Splits the userinfo out of a feed URL: the URL without it, and the userinfo exactly as
/// written (`user:pass`, percent-escapes and all; [`decode_userinfo`] makes the credential
/// opkg-lede would send of it).
pub fn split_userinfo(url: &str) -> (String, Option<Secret>) {
    let Some(i) = url.find("://") else {
        return (url.to_string(), None);
    };
    let start = i + 3;
    let end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |j| start + j);
    let Some(at) = url[start..end].rfind('@') else {
        return (url.to_string(), None);
    };
    let userinfo = &url[start..start + at];
    let clean = format!("{}{}", &url[..start], &url[start + at + 1..]);
    (clean, Some(Secret::new(userinfo)))
}

/// The login and password of a URL's userinfo, percent-escapes decoded.
pub fn decode_userinfo(raw: &Secret) -> (String, Secret) {
    let raw = raw.expose();
    let (user, pass) = raw.split_once(':').unwrap_or((raw, ""));
    (percent_decode(user), Secret::new(percent_decode(pass)))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        if b[i] == b'%'
            && let Some(v) = hex
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `url` as shown to people: its userinfo replaced by `***`.
pub fn shown_url(url: &str) -> String {
    match split_userinfo(url) {
        (_, None) => url.to_string(),
        (clean, Some(_)) => {
            let i = clean.find("://").map_or(0, |i| i + 3);
            format!("{}***@{}", &clean[..i], &clean[i..])
        }
    }
}

/// The file `prokit auth set FEED` writes: `etc/prokit/auth.conf.d/<FEED>.conf`.
pub fn feed_file(feed: &str) -> String {
    format!("{AUTH_CONF_D}/{feed}.conf")
}

/// Writes the entry of feed `feed` (whose URL is `url`) atomically, mode 0600, replacing an
/// earlier one; returns the file (as shown) and the machine it names.
pub fn set(
    root: &Root,
    feed: &str,
    url: &str,
    credential: &Credential,
) -> Result<(String, String), AuthError> {
    let machine = Machine::for_url(url).ok_or_else(|| AuthError::Syntax {
        file: "opkg.conf".into(),
        line: 0,
        reason: format!("feed {feed}: {} is not an http(s) URL", shown_url(url)),
    })?;
    if let Credential::Basic { login, .. } = credential
        && (login.is_empty() || login.chars().any(char::is_whitespace))
    {
        return Err(AuthError::Syntax {
            file: "--login".into(),
            line: 0,
            reason: "the login must be one word".into(),
        });
    }
    let rel = feed_file(feed);
    let text = format!(
        "# prokit auth set {feed}: credentials for feed {feed} ({})\n{}",
        shown_url(url),
        entry_text(&machine.text, credential)
    );
    root.open_dir(AUTH_CONF_D, true)?;
    root.write_atomic(
        &rel,
        text.as_bytes(),
        safe_fs::WriteOptions::default().mode(0o600),
    )?;
    Ok((format!("/{rel}"), machine.text))
}

/// Removes feed `feed`'s file; `false` when there was none.
pub fn remove(root: &Root, feed: &str) -> Result<bool, AuthError> {
    Ok(root.remove_file(&feed_file(feed))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(text: &str) -> Credentials {
        Credentials {
            entries: parse(text, "auth.conf").unwrap(),
        }
    }

    fn header(c: &Credentials, url: &str) -> Option<String> {
        match c.lookup(url) {
            Lookup::Send(e) => Some(e.credential.header()),
            _ => None,
        }
    }

    #[test]
    fn apt_format_and_tokens_parse_across_lines() {
        let c = creds(
            "# comment\nmachine example.org/private\n  login alice\n  password s3cret\nmachine repo.example.com:8443 token abc\n",
        );
        assert_eq!(c.entries().len(), 2);
        assert_eq!(c.entries()[0].origin, "auth.conf:2");
        assert_eq!(
            header(&c, "https://example.org/private/Packages.gz").as_deref(),
            Some("Basic YWxpY2U6czNjcmV0")
        );
        assert_eq!(
            header(&c, "https://repo.example.com:8443/x").as_deref(),
            Some("Bearer abc")
        );
    }

    #[test]
    fn credentials_go_only_where_they_are_named() {
        let c = creds(
            "machine example.org/private token t1\nmachine example.org token t0\nmachine https://secure.example token t2\n",
        );
        // Path prefix at a / boundary, the most specific entry wins.
        assert_eq!(
            header(&c, "https://example.org/private/x").as_deref(),
            Some("Bearer t1")
        );
        assert_eq!(
            header(&c, "https://example.org/privateer/x").as_deref(),
            Some("Bearer t0")
        );
        assert_eq!(header(&c, "https://other.org/private/x"), None);
        assert_eq!(header(&c, "https://evil.example.org/x"), None);
        // An https-only machine never matches http.
        assert_eq!(header(&c, "http://secure.example/x"), None);
        // Plain http: only to loopback.
        assert!(matches!(
            c.lookup("http://example.org/private/x"),
            Lookup::Insecure(_)
        ));
        let l = creds("machine 127.0.0.1:8080 token t\n");
        assert_eq!(
            header(&l, "http://127.0.0.1:8080/feed").as_deref(),
            Some("Bearer t")
        );
        assert_eq!(header(&l, "http://127.0.0.1:9090/feed"), None);
    }

    #[test]
    fn malformed_entries_name_the_line_and_never_the_secret() {
        for (text, line, want) in [
            (
                "machine a.org login u\n",
                1,
                "needs `login USER password SECRET`",
            ),
            ("\n\nlogin u password topsecret\n", 3, "expected `machine"),
            ("machine a.org\ntoken\n", 2, "`token` without a value"),
            (
                "machine a.org token x login u\n",
                1,
                "a token entry takes no login",
            ),
            ("machine a.org passwd topsecret\n", 1, "unknown word"),
            ("machine user@a.org token x\n", 1, "expected [https://]HOST"),
        ] {
            let e = parse(text, "auth.conf").unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("auth.conf:{line}: ")),
                "{text:?}: {e}"
            );
            assert!(e.contains(want), "{text:?}: {e}");
            assert!(!e.contains("topsecret"), "{e}");
        }
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let c = creds("machine a.org login alice password topsecret\nmachine b.org token tok3n\n");
        let shown = format!("{c:?} {:?}", c.lookup("https://a.org/"));
        assert!(
            !shown.contains("topsecret") && !shown.contains("tok3n"),
            "{shown}"
        );
        assert!(shown.contains("alice"));
    }

    #[test]
    fn url_userinfo_is_split_out_and_masked() {
        let (clean, raw) = split_userinfo("https://al%40ice:p%3Ass@example.org:8443/feed/x");
        assert_eq!(clean, "https://example.org:8443/feed/x");
        let raw = raw.unwrap();
        assert_eq!(raw.expose(), "al%40ice:p%3Ass");
        let (user, pass) = decode_userinfo(&raw);
        assert_eq!((user.as_str(), pass.expose()), ("al@ice", "p:ss"));
        // A % before a multi-byte character is kept as it is (found by the prokit_config
        // fuzz target as a panic in an earlier version).
        let (user, _) = decode_userinfo(&Secret::new("%é%A:x"));
        assert_eq!(user, "%é%A");
        assert_eq!(
            shown_url("https://u:p@example.org/feed"),
            "https://***@example.org/feed"
        );
        assert_eq!(
            shown_url("https://example.org/a@b"),
            "https://example.org/a@b"
        );
        assert_eq!(
            Machine::for_url("https://example.org:8443/feed/")
                .unwrap()
                .text,
            "example.org:8443/feed"
        );
    }

    #[test]
    fn secret_files_are_one_line_trimmed_once() {
        assert_eq!(secret_from_file(b"abc\n", "f").unwrap().expose(), "abc");
        assert_eq!(secret_from_file(b"abc", "f").unwrap().expose(), "abc");
        assert!(secret_from_file(b"", "f").unwrap_err().contains("empty"));
        assert!(secret_from_file(b"\n", "f").unwrap_err().contains("empty"));
        assert!(secret_from_file(b"a\nb\n", "f").is_err());
        assert!(secret_from_file(b"a b\n", "f").is_err());
    }
}
