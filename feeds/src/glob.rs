//! `*` and `?` glob matching over whole strings: package-name scopes of developer keys
//! (`keyring-pkg`), and prokit's `search`, `list PATTERN`, `info GLOB`. `/` is an ordinary
//! character (fnmatch without FNM_PATHNAME, as opkg's `search`).

/// Whether `glob` matches all of `text`: linear in the lengths (the classic backtrack to the
/// last `*`).
pub fn matches(glob: &str, text: &str) -> bool {
    let (glob, name) = (glob.as_bytes(), text.as_bytes());
    let (mut g, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if g < glob.len() && (glob[g] == b'?' || glob[g] == name[n]) {
            g += 1;
            n += 1;
        } else if g < glob.len() && glob[g] == b'*' {
            star = Some((g, n));
            g += 1;
        } else if let Some((sg, sn)) = star {
            g = sg + 1;
            n = sn + 1;
            star = Some((sg, sn + 1));
        } else {
            return false;
        }
    }
    glob[g..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn whole_string_with_star_and_question_mark() {
        assert!(matches("luci-app-*", "luci-app-pbr"));
        assert!(!matches("luci-app-*", "xluci-app-pbr"));
        assert!(matches("*.conf", "/etc/x/y.conf"));
        assert!(matches("/usr/bin/?s", "/usr/bin/ls"));
        assert!(!matches("/usr/bin/?s", "/usr/bin/lss"));
        assert!(matches("*", ""));
        assert!(matches("a*b*c", "aXXbYYc"));
    }
}
