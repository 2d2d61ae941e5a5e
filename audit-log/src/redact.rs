//! Keeping secrets out of the log: URLs without their credentials.

/// Words that make a query parameter's value a secret when its name is, or has, one of them
/// (`token`, `access_token`, `api-key`, `X-Amz-Signature`).
const SECRET_WORDS: [&str; 13] = [
    "token",
    "key",
    "apikey",
    "password",
    "passwd",
    "pass",
    "pwd",
    "sig",
    "signature",
    "auth",
    "secret",
    "credential",
    "credentials",
];

/// Parts that make a name secret wherever they appear in it (`authToken`, `clientsecret`).
const SECRET_PARTS: [&str; 5] = ["token", "secret", "password", "passwd", "signature"];

/// `url` fit for the log: without userinfo (`https://user:pass@host/` becomes
/// `https://host/`), and with the values of query (and fragment) parameters whose names look
/// like credentials replaced by `***` — names that are or contain a word among `token`,
/// `key`, `password`, `pass`, `sig`, `signature`, `auth`, `secret` (and a few spellings of
/// them), compared case-insensitively after percent-decoding. Everything else is kept as it
/// is. The authority ends at the first `/`, `\`, `?` or `#`, as an HTTP client parses it.
pub fn url_without_credentials(url: &str) -> String {
    let mut out = String::with_capacity(url.len());
    let mut rest = url;
    if let Some(i) = url.find("://") {
        let start = i + 3;
        let end = url[start..]
            .find(['/', '\\', '?', '#'])
            .map_or(url.len(), |j| start + j);
        out.push_str(&url[..start]);
        let authority = &url[start..end];
        out.push_str(
            authority
                .rfind('@')
                .map_or(authority, |at| &authority[at + 1..]),
        );
        rest = &url[end..];
    }
    let (before_fragment, fragment) = match rest.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (rest, None),
    };
    match before_fragment.split_once('?') {
        Some((path, query)) => {
            out.push_str(path);
            out.push('?');
            redact_params(&mut out, query);
        }
        None => out.push_str(before_fragment),
    }
    if let Some(fragment) = fragment {
        out.push('#');
        redact_params(&mut out, fragment);
    }
    out
}

/// `a=1&token=x` → `a=1&token=***`.
fn redact_params(out: &mut String, params: &str) {
    for (i, param) in params.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match param.split_once('=') {
            Some((name, _)) if is_secret_name(name) => {
                out.push_str(name);
                out.push_str("=***");
            }
            _ => out.push_str(param),
        }
    }
}

/// Whether a parameter named `name` (percent-encoded) carries a credential.
fn is_secret_name(name: &str) -> bool {
    let name = percent_decode(name).to_lowercase();
    SECRET_PARTS.iter().any(|p| name.contains(p))
        || name
            .split(|c: char| !c.is_alphanumeric())
            .any(|w| SECRET_WORDS.contains(&w))
}

/// `%xx` escapes and `+` decoded (bytes that are not UTF-8 replaced).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_removed() {
        for (url, want) in [
            (
                "https://user:pass@feed.example/ipk/all",
                "https://feed.example/ipk/all",
            ),
            ("http://token@feed.example", "http://feed.example"),
            (
                "https://a:b@c:d@feed.example:8443/x",
                "https://feed.example:8443/x",
            ),
            ("ftp://:@host/", "ftp://host/"),
            ("https://user:pw@host?x=1", "https://host?x=1"),
            // An `@` after the authority is not userinfo.
            ("https://host/path/a@b?c=d@e", "https://host/path/a@b?c=d@e"),
            ("https://host#frag@x", "https://host#frag@x"),
            ("file:///srv/ipk", "file:///srv/ipk"),
            ("/var/cache/x.ipk", "/var/cache/x.ipk"),
            ("", ""),
        ] {
            assert_eq!(url_without_credentials(url), want, "{url}");
        }
    }

    #[test]
    fn secret_parameters_lose_their_values() {
        for (url, want) in [
            (
                "https://h/p?token=abc&arch=all",
                "https://h/p?token=***&arch=all",
            ),
            (
                "https://h/p?Access_Token=abc&KEY=1&password=x&pass=y&sig=z&Signature=w&auth=v&secret=u",
                "https://h/p?Access_Token=***&KEY=***&password=***&pass=***&sig=***&Signature=***&auth=***&secret=***",
            ),
            (
                "https://s3.example/b/o?X-Amz-Credential=AK%2F1&X-Amz-Signature=ff&X-Amz-Expires=60",
                "https://s3.example/b/o?X-Amz-Credential=***&X-Amz-Signature=***&X-Amz-Expires=60",
            ),
            (
                "https://h/?api_key=1&apiKey=2&authToken=3&client_secret=4&%74oken=5",
                "https://h/?api_key=***&apiKey=***&authToken=***&client_secret=***&%74oken=***",
            ),
            // Names that only resemble one keep their values; so do bare names.
            (
                "https://h/?keyring=example&monkey=1&passage=2&token&version=1.0",
                "https://h/?keyring=example&monkey=1&passage=2&token&version=1.0",
            ),
            (
                "https://u:p@h/cb#access_token=xyz&state=1",
                "https://h/cb#access_token=***&state=1",
            ),
            ("https://h/?token=", "https://h/?token=***"),
            ("https://h/?a=b=c&sig=d=e", "https://h/?a=b=c&sig=***"),
        ] {
            assert_eq!(url_without_credentials(url), want, "{url}");
        }
    }

    #[test]
    fn percent_decoding_is_lenient() {
        assert_eq!(percent_decode("%74oken"), "token");
        assert_eq!(percent_decode("a+b%2"), "a b%2");
        assert_eq!(percent_decode("%zz%"), "%zz%");
        assert_eq!(percent_decode("%e2%82%ac"), "€");
    }
}
