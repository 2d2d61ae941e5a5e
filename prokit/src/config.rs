//! The client configuration in opkg.conf syntax (docs/on-disk-state.md §3.1): `src/gz NAME URL`,
//! `src NAME URL`, `dest NAME PATH`, `lists_dir NAME PATH`, `arch ARCH PRIO`,
//! `option NAME [VALUE]`, `#` comments. opkg-lede reads `<root>/etc/opkg.conf` and then every
//! `<root>/etc/opkg/*.conf`; so does prokit. Options prokit adds (opkg ignores unknown ones):
//! `option keyring NAME`, `option require_release 1`, `option db_dir PATH` (Yocto keeps the
//! database in `/var/lib/opkg`), `option ca_file PATH`, `option signed_by FEED FP...` (only
//! these keys are trusted for that feed, like apt's `signed-by`). `option check_signature 0` turns
//! signature checking off explicitly; prokit checks signatures unless told not to.
//!
//! Every path in the configuration is a path inside the root: `lists_dir ext /var/opkg-lists`
//! with `--root R` means `R/var/opkg-lists`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Largest configuration file read.
const MAX_CONF: u64 = 1 << 20;

/// A feed line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub name: String,
    pub url: String,
    /// `src/gz`: fetch `Packages.gz`; `src`: fetch `Packages`.
    pub gz: bool,
}

/// The parsed configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub sources: Vec<Source>,
    /// `dest NAME PATH` lines (prokit installs into the first, `root`, like opkg's default).
    pub dests: Vec<(String, String)>,
    /// Where the downloaded indexes live, inside the root.
    pub lists_dir: String,
    /// `arch` lines: architecture and priority (higher wins).
    pub arch: Vec<(String, u32)>,
    /// `option` lines; a bare `option NAME` has the value `1`.
    pub options: BTreeMap<String, String>,
    /// `option signed_by FEED FP [FP...]`: the only keys trusted for that feed (apt's
    /// `signed-by`), as written (1 to 16 hex digits each).
    pub signed_by: BTreeMap<String, Vec<String>>,
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
        }
    }
}

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}:{line}: {reason}")]
    Syntax {
        file: String,
        line: usize,
        reason: String,
    },
    #[error("{file}: larger than {MAX_CONF} bytes")]
    TooLarge { file: String },
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
                    self.sources.push(Source {
                        name: name.to_string(),
                        url: url.trim_end_matches('/').to_string(),
                        gz: kind == "src/gz",
                    });
                }
                ["dest", name, path] => self.dests.push((name.into(), path.into())),
                ["lists_dir", _name, path] => self.lists_dir = path.to_string(),
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
                ["option", name] => {
                    self.options.insert(name.into(), "1".into());
                }
                ["option", name, value] => {
                    self.options.insert(name.into(), value.into());
                }
                _ => {
                    return Err(err(format!(
                        "cannot read {line:?} (expected src, src/gz, dest, lists_dir, arch or option)"
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

    /// Loads `conf` when given; else `<root>/etc/opkg.conf` (if present) and every
    /// `<root>/etc/opkg/*.conf` in name order, as opkg-lede does.
    pub fn load(root: &Path, conf: Option<&Path>) -> Result<Config, ConfigError> {
        let mut c = Config::default();
        let mut files = Vec::new();
        match conf {
            Some(p) => files.push(p.to_path_buf()),
            None => {
                let main = root.join("etc/opkg.conf");
                if main.exists() {
                    files.push(main);
                }
                let dir = root.join("etc/opkg");
                if let Ok(rd) = fs::read_dir(&dir) {
                    let mut more: Vec<PathBuf> = rd
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| p.extension().is_some_and(|x| x == "conf") && p.is_file())
                        .collect();
                    more.sort();
                    files.extend(more);
                }
            }
        }
        for f in files {
            let io = |source| ConfigError::Io {
                path: f.clone(),
                source,
            };
            let meta = fs::metadata(&f).map_err(io)?;
            if meta.len() > MAX_CONF {
                return Err(ConfigError::TooLarge {
                    file: f.display().to_string(),
                });
            }
            let text = fs::read_to_string(&f).map_err(io)?;
            c.parse_into(&text, &f.display().to_string())?;
        }
        Ok(c)
    }

    /// An option's value.
    pub fn option(&self, name: &str) -> Option<&str> {
        self.options.get(name).map(String::as_str)
    }

    /// True when an option is set to something other than `0`.
    pub fn flag(&self, name: &str) -> Option<bool> {
        self.option(name).map(|v| v != "0")
    }

    /// The directory of the installed database, relative to the root.
    pub fn db_dir(&self) -> String {
        self.option("db_dir")
            .unwrap_or("/usr/lib/opkg")
            .trim_start_matches('/')
            .to_string()
    }

    /// A configured path, placed under `root`.
    pub fn in_root(root: &Path, path: &str) -> PathBuf {
        root.join(path.trim_start_matches('/'))
    }

    /// The configuration as opkg.conf text (what `prokit bootstrap` writes into a new root).
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for s in &self.sources {
            let kind = if s.gz { "src/gz" } else { "src" };
            out.push_str(&format!("{kind} {} {}\n", s.name, s.url));
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
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
