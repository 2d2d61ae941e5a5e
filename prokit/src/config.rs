//! The client configuration in opkg.conf syntax (docs/on-disk-state.md §3.1): `src/gz NAME URL`,
//! `src NAME URL`, `dest NAME PATH`, `lists_dir NAME PATH`, `arch ARCH PRIO`,
//! `option NAME [VALUE]`, `#` comments. opkg-lede reads `<root>/etc/opkg.conf` and then every
//! `<root>/etc/opkg/*.conf`; so does prokit. Options prokit adds (opkg ignores unknown ones):
//! `option keyring NAME`, `option require_release 1`, `option db_dir PATH` (Yocto keeps the
//! database in `/var/lib/opkg`), `option ca_file PATH`, `option signed_by FEED FP...` (only
//! these keys are trusted for that feed, like apt's `signed-by`), `option developer_signatures
//! off|check|require` (docs/trust-model.md §9). `option check_signature 0` turns
//! signature checking off explicitly; prokit checks signatures unless told not to.
//!
//! Every path in the configuration is a path inside the root: `lists_dir ext /var/opkg-lists`
//! with `--root R` means `R/var/opkg-lists`. The files inside the root are written by
//! packages, so they are hostile input (docs/threats.md §18, §20): a path value (`lists_dir`,
//! `option db_dir`, `option ca_file`) whose `..` would climb above the root is an error
//! naming the file and line, and is kept root-relative; the configuration files themselves
//! are read through [`safe_fs::Root`], so a symlink among them resolves inside the root, never
//! to a host file; and an error quotes at most a short, escaped excerpt of a bad line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use safe_fs::{FsError, Root};

/// Largest configuration file read.
const MAX_CONF: u64 = 1 << 20;

/// A feed line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub name: String,
    pub url: String,
    /// `src/gz`: fetch `Packages.gz`; `src`: fetch `Packages`.
    pub gz: bool,
    /// The userinfo of the URL as written (`https://user:pass@host/…`, which opkg-lede sends
    /// as basic auth), split out of `url` so that the URL can be shown, logged and stored
    /// without it (src/auth.rs).
    pub userinfo: Option<crate::auth::Secret>,
}

impl Source {
    /// The URL as written in opkg.conf, userinfo included (for writing the file back).
    pub fn url_as_written(&self) -> String {
        match &self.userinfo {
            None => self.url.clone(),
            Some(raw) => {
                let i = self.url.find("://").map_or(0, |i| i + 3);
                format!("{}{}@{}", &self.url[..i], raw.expose(), &self.url[i..])
            }
        }
    }
}

/// The parsed configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub sources: Vec<Source>,
    /// `dest NAME PATH` lines (prokit installs into the first, `root`, like opkg's default).
    pub dests: Vec<(String, String)>,
    /// Where the downloaded indexes live, inside the root (as written: `/var/opkg-lists`;
    /// checked not to climb above the root).
    pub lists_dir: String,
    /// `arch` lines: architecture and priority (higher wins).
    pub arch: Vec<(String, u32)>,
    /// `option` lines; a bare `option NAME` has the value `1`.
    pub options: BTreeMap<String, String>,
    /// `option signed_by FEED FP [FP...]`: the only keys trusted for that feed (apt's
    /// `signed-by`), as written (1 to 16 hex digits each).
    pub signed_by: BTreeMap<String, Vec<String>>,
    /// `option mirror FEED URL`: further URLs serving the same feed, tried in order after
    /// its own (opkg-lede ignores the option).
    pub mirrors: BTreeMap<String, Vec<String>>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            sources: Vec::new(),
            dests: Vec::new(),
            lists_dir: "/var/opkg-lists".into(),
            arch: Vec::new(),
            options: BTreeMap::new(),
            signed_by: BTreeMap::new(),
            mirrors: BTreeMap::new(),
        }
    }
}

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Io(#[from] FsError),
    #[error("{file}:{line}: {reason}")]
    Syntax {
        file: String,
        line: usize,
        reason: String,
    },
    #[error("{file}: larger than {MAX_CONF} bytes")]
    TooLarge { file: String },
}

/// The options whose values are paths inside the root.
pub const PATH_OPTIONS: [&str; 2] = ["db_dir", "ca_file"];

/// A short, escaped excerpt of a configuration line for an error message: never more than
/// 60 characters of it, so a file that is not a configuration at all (a symlink to a host
/// file, say) is not echoed.
pub fn excerpt(line: &str) -> String {
    let mut out: String = line
        .chars()
        .take(60)
        .collect::<String>()
        .escape_debug()
        .collect();
    if line.chars().count() > 60 {
        out.push('…');
    }
    format!("\"{out}\"")
}

/// True for a name usable as a feed name (it becomes a file name in the lists directory).
pub fn valid_feed_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-+".contains(&b))
}

impl Config {
    /// Parses one configuration file's text, adding to `self`; `file` names it in errors.
    pub fn parse_into(&mut self, text: &str, file: &str) -> Result<(), ConfigError> {
        for (i, raw) in text.lines().enumerate() {
            let err = |reason: String| ConfigError::Syntax {
                file: file.to_string(),
                line: i + 1,
                reason,
            };
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            match words[..] {
                [kind @ ("src" | "src/gz"), name, url] => {
                    if !valid_feed_name(name) {
                        return Err(err(format!(
                            "feed name {name:?} must be letters, digits, '.', '_', '-', '+'"
                        )));
                    }
                    if self.sources.iter().any(|s| s.name == name) {
                        return Err(err(format!("feed {name:?} is defined twice")));
                    }
                    if url.trim_end_matches('/').is_empty() {
                        return Err(err(format!("feed {name:?}: {url:?} is not a URL")));
                    }
                    let (url, userinfo) = crate::auth::split_userinfo(url.trim_end_matches('/'));
                    self.sources.push(Source {
                        name: name.to_string(),
                        url,
                        gz: kind == "src/gz",
                        userinfo,
                    });
                }
                ["dest", name, path] => {
                    confined("dest", path).map_err(err)?;
                    self.dests.push((name.into(), path.into()))
                }
                ["lists_dir", _name, path] => {
                    confined("lists_dir", path).map_err(err)?;
                    self.lists_dir = path.to_string()
                }
                ["arch", arch, prio] => {
                    let prio: u32 = prio.parse().map_err(|_| {
                        err(format!("arch {arch}: priority {prio:?} is not a number"))
                    })?;
                    match self.arch.iter_mut().find(|(a, _)| a == arch) {
                        Some(e) => e.1 = prio,
                        None => self.arch.push((arch.to_string(), prio)),
                    }
                }
                ["option", "signed_by", feed, ref fps @ ..] if !fps.is_empty() => {
                    let mut keys = Vec::new();
                    for fp in fps
                        .iter()
                        .flat_map(|f| f.split(','))
                        .filter(|f| !f.is_empty())
                    {
                        if fp.len() > 16 || !fp.bytes().all(|b| b.is_ascii_hexdigit()) {
                            return Err(err(format!(
                                "option signed_by {feed}: {fp:?} is not a key fingerprint (16 hex digits)"
                            )));
                        }
                        keys.push(fp.to_ascii_lowercase());
                    }
                    self.signed_by
                        .entry(feed.to_string())
                        .or_default()
                        .extend(keys);
                }
                ["option", "mirror", feed, url] => {
                    if !url.contains("://") {
                        return Err(err(format!(
                            "option mirror {feed}: {} is not a URL",
                            excerpt(url)
                        )));
                    }
                    self.mirrors
                        .entry(feed.to_string())
                        .or_default()
                        .push(url.trim_end_matches('/').to_string());
                }
                ["option", name] => {
                    self.options.insert(name.into(), "1".into());
                }
                ["option", name, value] => {
                    if PATH_OPTIONS.contains(&name) {
                        confined(&format!("option {name}"), value).map_err(err)?;
                    }
                    self.options.insert(name.into(), value.into());
                }
                _ => {
                    return Err(err(format!(
                        "cannot read {} (expected src, src/gz, dest, lists_dir, arch or option)",
                        excerpt(line)
                    )));
                }
            }
        }
        Ok(())
    }

    /// Parses one file's text.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        let mut c = Config::default();
        c.parse_into(text, file)?;
        Ok(c)
    }

    /// Loads `conf` when given (a file on the host, named by the user); else
    /// `<root>/etc/opkg.conf` (if present) and every `<root>/etc/opkg/*.conf` in name order, as
    /// opkg-lede does, read through the root (symlinks resolved inside it, bounded).
    pub fn load(root: &Path, conf: Option<&Path>) -> Result<Config, ConfigError> {
        let mut c = Config::default();
        if let Some(p) = conf {
            use std::io::Read;
            let mut text = Vec::new();
            std::fs::File::open(p)
                .and_then(|f| f.take(MAX_CONF + 1).read_to_end(&mut text))
                .map_err(|e| FsError::new(p, "read", e))?;
            if text.len() as u64 > MAX_CONF {
                return Err(ConfigError::TooLarge {
                    file: p.display().to_string(),
                });
            }
            c.parse_bytes_into(&text, &p.display().to_string())?;
            return Ok(c);
        }
        if !root.is_dir() {
            return Ok(c);
        }
        let root = Root::open(root)?;
        Config::load_in(&root, &mut c)?;
        Ok(c)
    }

    /// Reads `etc/opkg.conf` and `etc/opkg/*.conf` of `root` into `c`.
    pub fn load_in(root: &Root, c: &mut Config) -> Result<(), ConfigError> {
        let mut files = vec!["etc/opkg.conf".to_string()];
        match root.open_dir("etc/opkg", false) {
            Ok(dir) => {
                for name in dir.entries()? {
                    let Some(name) = name.to_str() else { continue };
                    if name.ends_with(".conf") && !name.starts_with('.') {
                        files.push(format!("etc/opkg/{name}"));
                    }
                }
            }
            Err(e) if e.is_not_found() || e.kind() == std::io::ErrorKind::NotADirectory => {}
            Err(e) => return Err(e.into()),
        }
        for rel in files {
            let shown = root.path().join(&rel).display().to_string();
            let text = match root.read_file(&rel, MAX_CONF) {
                Ok(Some(t)) => t,
                Ok(None) => continue,
                // `etc/opkg/x.conf` that is a directory (or another non-file) is skipped, as
                // opkg's glob + fopen would fail on it; anything else is an error.
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::IsADirectory | std::io::ErrorKind::InvalidInput
                    ) =>
                {
                    continue;
                }
                Err(e) if e.kind() == std::io::ErrorKind::FileTooLarge => {
                    return Err(ConfigError::TooLarge { file: shown });
                }
                Err(e) => return Err(e.into()),
            };
            c.parse_bytes_into(&text, &shown)?;
        }
        Ok(())
    }

    /// [`Config::parse_into`] of raw bytes: a file that is not UTF-8 is an error naming the
    /// line.
    fn parse_bytes_into(&mut self, bytes: &[u8], file: &str) -> Result<(), ConfigError> {
        match std::str::from_utf8(bytes) {
            Ok(text) => self.parse_into(text, file),
            Err(e) => {
                let line = bytes[..e.valid_up_to()]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count()
                    + 1;
                Err(ConfigError::Syntax {
                    file: file.to_string(),
                    line,
                    reason: "not UTF-8 text".into(),
                })
            }
        }
    }

    /// An option's value.
    pub fn option(&self, name: &str) -> Option<&str> {
        self.options.get(name).map(String::as_str)
    }

    /// True when an option is set to something other than `0`.
    pub fn flag(&self, name: &str) -> Option<bool> {
        self.option(name).map(|v| v != "0")
    }

    /// The directory of the installed database, relative to the root (normalized; checked
    /// when the file was read).
    pub fn db_dir(&self) -> String {
        let dir = self.option("db_dir").unwrap_or("/usr/lib/opkg");
        Root::confine(dir).unwrap_or_else(|_| "usr/lib/opkg".into())
    }

    /// The lists directory, relative to the root (normalized).
    pub fn lists_rel(&self) -> String {
        Root::confine(&self.lists_dir).unwrap_or_else(|_| "var/opkg-lists".into())
    }

    /// A configured path, placed under `root`, for display (resolve it with
    /// [`safe_fs::Root`] to use it).
    pub fn in_root(root: &Path, path: &str) -> PathBuf {
        root.join(Root::confine(path).unwrap_or_default())
    }

    /// The configuration as opkg.conf text (what `prokit bootstrap` writes into a new root).
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for s in &self.sources {
            let kind = if s.gz { "src/gz" } else { "src" };
            out.push_str(&format!("{kind} {} {}\n", s.name, s.url_as_written()));
        }
        for (name, path) in &self.dests {
            out.push_str(&format!("dest {name} {path}\n"));
        }
        out.push_str(&format!("lists_dir ext {}\n", self.lists_dir));
        for (arch, prio) in &self.arch {
            out.push_str(&format!("arch {arch} {prio}\n"));
        }
        for (name, value) in &self.options {
            out.push_str(&format!("option {name} {value}\n"));
        }
        for (feed, fps) in &self.signed_by {
            out.push_str(&format!("option signed_by {feed} {}\n", fps.join(" ")));
        }
        for (feed, urls) in &self.mirrors {
            for url in urls {
                out.push_str(&format!("option mirror {feed} {url}\n"));
            }
        }
        out
    }
}

/// Checks that a configured path stays inside the root.
fn confined(what: &str, path: &str) -> Result<String, String> {
    Root::confine(path).map_err(|_| {
        format!(
            "{what} {}: `..` climbs above the root; configured paths are inside the root",
            excerpt(path)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    const OPENWRT: &str = "\
src/gz openwrt_core https://downloads.openwrt.org/releases/23.05.3/targets/x86/64/packages
src/gz openwrt_base https://downloads.openwrt.org/releases/23.05.3/packages/x86_64/base/
dest root /
dest ram /tmp
lists_dir ext /var/opkg-lists
option overlay_root /overlay
option check_signature
# a comment
arch all 1
arch noarch 1
arch x86_64 10
";

    #[test]
    fn reads_openwrts_default_configuration() {
        let c = Config::parse(OPENWRT, "opkg.conf").unwrap();
        assert_eq!(c.sources.len(), 2);
        assert!(c.sources.iter().all(|s| s.gz));
        assert_eq!(
            c.sources[1].url,
            "https://downloads.openwrt.org/releases/23.05.3/packages/x86_64/base"
        );
        assert_eq!(c.lists_dir, "/var/opkg-lists");
        assert_eq!(c.arch[2], ("x86_64".to_string(), 10));
        assert_eq!(c.flag("check_signature"), Some(true));
        assert_eq!(c.option("overlay_root"), Some("/overlay"));
        assert_eq!(c.db_dir(), "usr/lib/opkg");
    }

    #[test]
    fn round_trips_through_text() {
        let c = Config::parse(OPENWRT, "opkg.conf").unwrap();
        assert_eq!(Config::parse(&c.to_text(), "again").unwrap(), c);
    }

    #[test]
    fn signed_by_pins_keys_per_feed_and_round_trips() {
        let c = Config::parse(
            "src/gz a http://a\noption signed_by a 0123456789ABCDEF,fedcba9876543210\noption signed_by a 1\n",
            "x.conf",
        )
        .unwrap();
        assert_eq!(
            c.signed_by["a"],
            ["0123456789abcdef", "fedcba9876543210", "1"]
        );
        assert_eq!(Config::parse(&c.to_text(), "again").unwrap(), c);
        let e = Config::parse("option signed_by a nothex\n", "x.conf").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("x.conf:1: option signed_by a: \"nothex\" is not a key fingerprint"),
            "{e}"
        );
    }

    #[test]
    fn threat_18_paths_that_climb_out_of_the_root_are_errors_naming_file_and_line() {
        for line in [
            "lists_dir ext /var/../../etc/profile.d",
            "lists_dir ext ../x",
            "option db_dir ../../var/lib",
            "option ca_file /../../etc/ssl/evil.pem",
            "dest root /../..",
        ] {
            let e = Config::parse(&format!("arch all 1\n{line}\n"), "evil.conf").unwrap_err();
            let msg = e.to_string();
            assert!(msg.starts_with("evil.conf:2: "), "{msg}");
            assert!(msg.contains("`..` climbs above the root"), "{msg}");
        }
        // Absolute paths are inside the root, and `..` that stays inside is folded.
        let c = Config::parse(
            "lists_dir ext /var/x/../opkg-lists\noption db_dir /opt/../var/lib/opkg\n",
            "ok.conf",
        )
        .unwrap();
        assert_eq!(c.lists_rel(), "var/opkg-lists");
        assert_eq!(c.db_dir(), "var/lib/opkg");
    }

    #[test]
    fn threat_20_a_config_symlinked_to_a_host_file_is_not_read_and_errors_are_excerpts() {
        let host = tempfile::tempdir().unwrap();
        let secret = host.path().join("shadow");
        fs::write(
            &secret,
            "root:SECRET-HASH-THAT-MUST-NOT-LEAK:19000:0:99999:7:::\n",
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("etc/opkg")).unwrap();
        // An absolute link resolves inside the root, where there is no such file: skipped.
        std::os::unix::fs::symlink(&secret, root.join("etc/opkg/evil.conf")).unwrap();
        let c = Config::load(root, None).unwrap();
        assert!(c.sources.is_empty());
        // The same link target made to exist inside the root is what is read.
        let inside = root.join(secret.strip_prefix("/").unwrap());
        fs::create_dir_all(inside.parent().unwrap()).unwrap();
        fs::write(&inside, "src/gz inside http://inside\n").unwrap();
        let c = Config::load(root, None).unwrap();
        assert_eq!(c.sources[0].name, "inside");
        // A relative link climbing out stops at the root.
        fs::remove_file(root.join("etc/opkg/evil.conf")).unwrap();
        let up = "../".repeat(40) + secret.strip_prefix("/").unwrap().to_str().unwrap();
        std::os::unix::fs::symlink(&up, root.join("etc/opkg/evil.conf")).unwrap();
        let c = Config::load(root, None).unwrap();
        assert_eq!(c.sources[0].name, "inside");
        // A long bad line is quoted as a short excerpt only.
        fs::write(
            root.join("etc/opkg/bad.conf"),
            format!("{}\n", "x".repeat(500)),
        )
        .unwrap();
        let e = Config::load(root, None).unwrap_err().to_string();
        assert!(e.contains("bad.conf:1: cannot read \""), "{e}");
        assert!(e.len() < 250, "{e}");
    }

    #[test]
    fn mirrors_and_url_credentials_parse_and_write_back() {
        let text = "src/gz a https://u:p%40ss@example.org/feed\noption mirror a https://m1.example.org/feed/\noption mirror a http://127.0.0.1:8080/feed\n";
        let c = Config::parse(text, "x.conf").unwrap();
        assert_eq!(c.sources[0].url, "https://example.org/feed");
        let (user, pass) = crate::auth::decode_userinfo(c.sources[0].userinfo.as_ref().unwrap());
        assert_eq!((user.as_str(), pass.expose()), ("u", "p@ss"));
        assert!(!format!("{c:?}").contains("p@ss"), "a secret in Debug");
        assert_eq!(
            c.mirrors["a"],
            ["https://m1.example.org/feed", "http://127.0.0.1:8080/feed"]
        );
        let again = Config::parse(&c.to_text(), "y.conf").unwrap();
        assert_eq!(again.mirrors, c.mirrors);
        assert_eq!(again.sources[0].url, c.sources[0].url);
        let e = Config::parse("option mirror a not-a-url\n", "x.conf").unwrap_err();
        assert!(
            e.to_string().starts_with("x.conf:1: option mirror a"),
            "{e}"
        );
    }

    #[test]
    fn a_url_with_odd_userinfo_round_trips() {
        // Found by the prokit_config fuzz target: userinfo with escapes and colons must be
        // written back exactly as read.
        let text = "src/gz base http://.edf\0z\0AAA::%:::AAA%%%%%%AA\0,\0@\0\0\n";
        let c = Config::parse(text, "x.conf").unwrap();
        let again = Config::parse(&c.to_text(), "y.conf").unwrap();
        assert_eq!(again, c);
        assert_eq!(again.to_text(), c.to_text());
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = Config::parse("arch all 1\nsrc/gz only-a-name\n", "x.conf").unwrap_err();
        assert_eq!(
            e.to_string(),
            "x.conf:2: cannot read \"src/gz only-a-name\" (expected src, src/gz, dest, lists_dir, arch or option)"
        );
        let e = Config::parse("arch x86_64 high\n", "x.conf").unwrap_err();
        assert!(e.to_string().contains("x.conf:1: arch x86_64"), "{e}");
        let e = Config::parse("src ../evil http://x\n", "x.conf").unwrap_err();
        assert!(e.to_string().contains("feed name"), "{e}");
        // Found by fuzzing: an all-slashes URL trimmed to nothing.
        let e = Config::parse("src a /\n", "x.conf").unwrap_err();
        assert!(e.to_string().contains("is not a URL"), "{e}");
        let e = Config::parse("src a http://x\nsrc a http://y\n", "x.conf").unwrap_err();
        assert!(e.to_string().contains("defined twice"), "{e}");
    }

    #[test]
    fn loads_opkg_conf_and_the_conf_d_files_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("etc/opkg")).unwrap();
        fs::write(
            root.join("etc/opkg.conf"),
            "src/gz a http://a\narch all 1\n",
        )
        .unwrap();
        fs::write(root.join("etc/opkg/customfeeds.conf"), "src b http://b\n").unwrap();
        fs::write(root.join("etc/opkg/arch.conf"), "arch all 5\n").unwrap();
        fs::write(root.join("etc/opkg/notes.txt"), "not a config\n").unwrap();
        let c = Config::load(root, None).unwrap();
        let names: Vec<&str> = c.sources.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(c.arch, [("all".to_string(), 5)]);
        assert_eq!(
            Config::in_root(root, "/var/opkg-lists"),
            root.join("var/opkg-lists")
        );
    }
}
