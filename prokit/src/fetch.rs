//! One bounded download: `file://` URLs (and plain absolute paths), `http://` and `https://`
//! (ureq with rustls), streamed into a sink and cut off as soon as more than the caller's
//! limit arrives.
//!
//! Owns: timeouts, retries with exponential backoff, proxies from the environment, the
//! User-Agent, and the extra CA file for private HTTPS servers.
//!
//! Decisions:
//! - **No decompression.** ureq is built without its `gzip`/`brotli` features and every
//!   request says `Accept-Encoding: identity`, so `Packages.gz` arrives as the raw bytes the
//!   signature and the `Release` hashes are about.
//! - **Retries never mix attempts.** An attempt is retried (after 250 ms, 500 ms, 1 s, …) only
//!   for connection errors, timeouts and HTTP 5xx/429, and only while it has not written a
//!   single byte to the sink. An attempt that fails after writing is reported as it is; the
//!   sink therefore only ever holds bytes of one response.
//! - **Proxies** follow curl's environment rules: `http_proxy` for `http://` URLs,
//!   `https_proxy`/`HTTPS_PROXY` for `https://`, `all_proxy`/`ALL_PROXY` for both, and
//!   `no_proxy`/`NO_PROXY` (comma-separated host names or domain suffixes, `*` for all) to
//!   bypass them; `localhost` and loopback addresses always bypass them (Go's rule).
//!   Upper-case `HTTP_PROXY` is ignored, as curl does (it can be set by a CGI request
//!   header). A proxy variable that does not parse is an error, not silently ignored. ureq
//!   tunnels every proxied request with `CONNECT`, `http://` ones too, so the proxy must allow
//!   `CONNECT` to the feed's port.
//! - **`ca_file`** replaces the built-in Mozilla roots with the certificates in that PEM file
//!   (like `curl --cacert`), for private CAs and tests.
//! - A redirect is followed (at most 5), the final response is what counts.
//! - **An overall deadline** (threat 8, "endless download", in time rather than bytes): the
//!   per-read timeout alone lets a server that sends one byte every few seconds hold a
//!   download for hours. So every HTTP attempt must keep up a minimum rate ([`MinRate`],
//!   default 10 KiB/s) after a grace period (default 30 s): at `t` seconds into the attempt at
//!   least `rate × (t − grace)` bytes must have arrived, checked as each read returns; and ureq
//!   enforces the deadline this implies for the whole file, `grace + max_bytes / rate`, even
//!   while a read is blocked (headers included). A transfer cut off this way is
//!   [`FetchError::TooSlow`] and is not retried. Local files have no deadline.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ureq::Agent;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

/// ureq's own resolver, except that a host given as an IP address (a feed on 127.0.0.1 or
/// `[::1]`, a mirror by address) is taken as it is. ureq's resolver runs each lookup that has a
/// timeout on a thread of its own, and every request looks its host up, even one sent on a
/// kept connection: a bootstrap of 300 packages started and ended 300 threads for nothing.
/// (ureq's resolver interface is one of its "unversioned" ones, which may change in a minor
/// release: Cargo.lock holds ureq at 3.5.1, and an update of it must build this again.)
#[derive(Debug, Default)]
struct LiteralResolver(ureq::unversioned::resolver::DefaultResolver);

impl ureq::unversioned::resolver::Resolver for LiteralResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        if let Some(addr) = literal_addr(uri)
            && config
                .ip_family()
                .keep_wanted(std::iter::once(addr))
                .next()
                .is_some()
        {
            let mut addrs = self.empty();
            addrs.push(addr);
            return Ok(addrs);
        }
        self.0.resolve(uri, config, timeout)
    }
}

/// The address of `uri`'s host when it is an IP address (`[...]` for IPv6), with its port or
/// its scheme's.
fn literal_addr(uri: &ureq::http::Uri) -> Option<std::net::SocketAddr> {
    let host = uri.host()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let ip: std::net::IpAddr = host.parse().ok()?;
    let port = match (uri.port_u16(), uri.scheme_str()) {
        (Some(p), _) => p,
        (None, Some("http")) => 80,
        (None, Some("https")) => 443,
        _ => return None,
    };
    Some(std::net::SocketAddr::new(ip, port))
}

/// The User-Agent sent with every HTTP request.
pub const USER_AGENT: &str = concat!("prokit/", env!("CARGO_PKG_VERSION"));

/// The delay before the first retry; each further retry doubles it.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// The most redirects followed for one request.
pub const MAX_REDIRECTS: u32 = 5;

/// The size of the chunks streamed from the source to the sink.
const CHUNK: usize = 64 * 1024;
/// A connection's buffer for what arrives: the largest response header ureq accepts (64 KiB).
const INPUT_BUFFER: usize = 64 * 1024;
/// A connection's buffer for the request: a GET's head (URL, credentials) only.
const OUTPUT_BUFFER: usize = 16 * 1024;

thread_local! {
    /// [`copy_capped`]'s chunk, kept by each download thread between its transfers: made and
    /// zeroed once per thread, not once per package.
    static COPY_BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The default [`MinRate::bytes_per_sec`]: 10 KiB/s.
pub const DEFAULT_MIN_RATE: u64 = 10 * 1024;

/// The default [`MinRate::grace`]: 30 s.
pub const DEFAULT_RATE_GRACE: Duration = Duration::from_secs(30);

/// The slowest HTTP transfer tolerated: after `grace`, at least `bytes_per_sec` on average
/// since the end of the grace period, and the whole file (at most `max_bytes`) within
/// `grace + max_bytes / bytes_per_sec`. `bytes_per_sec == 0` turns both off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinRate {
    /// Bytes per second owed after the grace period. Default [`DEFAULT_MIN_RATE`].
    pub bytes_per_sec: u64,
    /// How long an attempt may take before the rate is owed (connecting, a slow start).
    /// Default [`DEFAULT_RATE_GRACE`].
    pub grace: Duration,
}

impl Default for MinRate {
    fn default() -> Self {
        MinRate {
            bytes_per_sec: DEFAULT_MIN_RATE,
            grace: DEFAULT_RATE_GRACE,
        }
    }
}

impl MinRate {
    /// No minimum rate and no overall deadline (only the per-read timeout).
    pub const NONE: MinRate = MinRate {
        bytes_per_sec: 0,
        grace: Duration::ZERO,
    };

    /// From opkg.conf-style option values: `fetch_min_rate` in bytes per second (a `K`/`KiB`
    /// or `M`/`MiB` suffix multiplies by 1024 or 1024², `0` turns the floor off) and
    /// `fetch_grace` in seconds. An absent value keeps its default.
    pub fn from_options(
        min_rate: Option<&str>,
        grace: Option<&str>,
    ) -> Result<MinRate, FetchError> {
        let mut out = MinRate::default();
        if let Some(text) = min_rate {
            out.bytes_per_sec = parse_rate(text).ok_or_else(|| FetchError::BadOption {
                name: "fetch_min_rate".into(),
                value: text.into(),
                expected: "bytes per second, e.g. 10240 or 10K".into(),
            })?;
        }
        if let Some(text) = grace {
            let secs = text
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|&s| s <= MAX_GRACE_SECS);
            out.grace = Duration::from_secs(secs.ok_or_else(|| FetchError::BadOption {
                name: "fetch_grace".into(),
                value: text.into(),
                expected: format!("whole seconds, at most {MAX_GRACE_SECS}"),
            })?);
        }
        Ok(out)
    }

    /// The overall deadline of one attempt at a file of at most `max_bytes`, or None when
    /// there is none (no minimum rate, or too far away to matter).
    pub fn deadline(&self, max_bytes: u64) -> Option<Duration> {
        if self.bytes_per_sec == 0 {
            return None;
        }
        let secs = max_bytes.div_ceil(self.bytes_per_sec);
        // Beyond ten years the deadline protects nothing, and Instant arithmetic may overflow.
        if secs > 10 * 365 * 86_400 {
            return None;
        }
        Some(self.grace + Duration::from_secs(secs))
    }

    /// Whether `bytes` after `elapsed` is still fast enough.
    fn keeps_up(&self, bytes: u64, elapsed: Duration) -> bool {
        let Some(owed_for) = elapsed.checked_sub(self.grace) else {
            return true;
        };
        let owed = owed_for.as_secs_f64() * self.bytes_per_sec as f64;
        bytes as f64 >= owed
    }
}

impl FetchOptions {
    /// `option fetch_timeout SECONDS` (1 to 3600: the wait for a connection or for any
    /// data) and `option fetch_retries N` (0 to 10) over these options: a device on a slow
    /// line waits longer, a client with mirrors moves on sooner.
    pub fn with_config(
        mut self,
        timeout: Option<&str>,
        retries: Option<&str>,
    ) -> Result<FetchOptions, FetchError> {
        if let Some(text) = timeout {
            let secs = text
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|s| (1..=3600).contains(s));
            self.timeout = Duration::from_secs(secs.ok_or_else(|| FetchError::BadOption {
                name: "fetch_timeout".into(),
                value: text.into(),
                expected: "whole seconds, 1 to 3600".into(),
            })?);
        }
        if let Some(text) = retries {
            self.retries = text
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|n| *n <= 10)
                .ok_or_else(|| FetchError::BadOption {
                    name: "fetch_retries".into(),
                    value: text.into(),
                    expected: "a number, 0 to 10".into(),
                })?;
        }
        Ok(self)
    }
}

/// The longest `fetch_grace` accepted: one day.
const MAX_GRACE_SECS: u64 = 86_400;

fn parse_rate(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let factor = match unit.trim() {
        "" => 1,
        "K" | "k" | "KiB" => 1024,
        "M" | "MiB" => 1024 * 1024,
        _ => return None,
    };
    number.parse::<u64>().ok()?.checked_mul(factor)
}

/// `10 KiB/s`, `1 MiB/s` or `1500 bytes/s`.
fn format_rate(bytes_per_sec: u64) -> String {
    if bytes_per_sec >= 1 << 20 && bytes_per_sec.is_multiple_of(1 << 20) {
        format!("{} MiB/s", bytes_per_sec >> 20)
    } else if bytes_per_sec >= 1024 && bytes_per_sec.is_multiple_of(1024) {
        format!("{} KiB/s", bytes_per_sec >> 10)
    } else {
        format!("{bytes_per_sec} bytes/s")
    }
}

/// How downloads behave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchOptions {
    /// Bound on connecting and on each read (the wait for any data), not on the whole
    /// transfer. Default 30 s.
    pub timeout: Duration,
    /// How many times a failed attempt is retried (connection errors, timeouts, HTTP 5xx and
    /// 429 only), with exponential backoff from 250 ms. Default 3.
    pub retries: u32,
    /// A PEM file of CA certificates that replaces the built-in roots for `https://`.
    pub ca_file: Option<PathBuf>,
    /// What to send to which machine (docs/trust-model.md §13).
    pub credentials: crate::auth::Credentials,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            timeout: Duration::from_secs(30),
            retries: 3,
            ca_file: None,
            credentials: Default::default(),
        }
    }
}

/// Why a download failed. Every message names the URL.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The file does not exist (HTTP 404 or 410, or no such local file).
    #[error("{url}: not found")]
    NotFound { url: String },
    /// More than the allowed bytes arrived (or were announced); the transfer was stopped.
    #[error("{url}: more than {limit} bytes; download stopped at the limit")]
    TooLarge { url: String, limit: u64 },
    /// 401 or 403: the credentials were refused, or none were sent. Not retried.
    #[error("{url}: {status} {}: {}", status_text(*status), unauthorized_advice(machine.as_deref()))]
    Unauthorized {
        url: String,
        status: u16,
        /// The `machine` whose credentials were sent, when some were.
        machine: Option<String>,
    },
    /// A credential names this URL, but it is plain http to another machine.
    #[error(
        "{url}: not sending the credentials for {machine} over plain http to another machine (use https; http carries them only to a loopback address)"
    )]
    InsecureCredentials { url: String, machine: String },
    /// The server answered with an error status.
    #[error("{url}: HTTP status {status}{}", attempts_note(*attempts))]
    Http {
        url: String,
        status: u16,
        attempts: u32,
    },
    /// The transfer fell below the minimum rate, or ran past the overall deadline the rate
    /// implies for the file's size bound. Not retried.
    #[error(
        "{url}: too slow: {bytes} bytes in {:.1} s (below the minimum of {} after {} s): stalled or hostile server",
        elapsed.as_secs_f64(),
        format_rate(rate.bytes_per_sec),
        rate.grace.as_secs_f64()
    )]
    TooSlow {
        url: String,
        /// Bytes of the body received before the transfer was stopped.
        bytes: u64,
        /// Time since the attempt started.
        elapsed: Duration,
        rate: MinRate,
    },
    /// No data arrived within the timeout.
    #[error("{url}: timed out: no data for {} s{}", timeout.as_secs_f64(), attempts_note(*attempts))]
    Timeout {
        url: String,
        timeout: Duration,
        attempts: u32,
    },
    /// The network transfer failed (connection refused, TLS, protocol error, …).
    #[error("{url}: {reason}{}", attempts_note(*attempts))]
    Transport {
        url: String,
        reason: String,
        attempts: u32,
    },
    /// Reading a local file or writing to the sink failed.
    #[error("{url}: {reason}")]
    Io { url: String, reason: String },
    /// Not a `file://`, `http://` or `https://` URL nor an absolute path.
    #[error("{url}: unsupported URL (expected file://, http://, https:// or an absolute path)")]
    UnsupportedScheme { url: String },
    /// The CA file could not be read or holds no certificate.
    #[error("CA file {}: {reason}", path.display())]
    CaFile { path: PathBuf, reason: String },
    /// A fetch option (opkg.conf `option NAME VALUE`) does not parse.
    #[error("option {name} {value:?}: expected {expected}")]
    BadOption {
        name: String,
        value: String,
        expected: String,
    },
    /// A proxy environment variable does not hold a usable proxy URL.
    #[error("proxy from ${var}={value:?}: {reason}")]
    Proxy {
        var: String,
        value: String,
        reason: String,
    },
}

fn status_text(status: u16) -> &'static str {
    match status {
        401 => "Unauthorized",
        403 => "Forbidden",
        _ => "refused",
    }
}

fn unauthorized_advice(machine: Option<&str>) -> String {
    match machine {
        Some(m) => format!("the credentials for {m} were refused; roll them with prokit auth set"),
        None => "the server wants credentials and none are configured for this URL; add them with prokit auth set FEED".into(),
    }
}

fn attempts_note(attempts: u32) -> String {
    if attempts > 1 {
        format!(" (after {attempts} attempts)")
    } else {
        String::new()
    }
}

impl FetchError {
    /// Whether this is a "not found" (so the caller can treat an optional file as absent).
    pub fn is_not_found(&self) -> bool {
        matches!(self, FetchError::NotFound { .. })
    }
}

/// A `no_proxy` list: host names, domain suffixes, or `*`.
#[derive(Debug, Clone, Default)]
struct NoProxy {
    all: bool,
    entries: Vec<String>,
}

impl NoProxy {
    fn parse(text: &str) -> NoProxy {
        let mut out = NoProxy::default();
        for entry in text.split([',', ' ']).map(str::trim) {
            if entry.is_empty() {
                continue;
            }
            if entry == "*" {
                out.all = true;
                continue;
            }
            let entry = entry.trim_start_matches("*.").trim_start_matches('.');
            // Drop a port (`host:8080`), but not the colons of a bare IPv6 address.
            let entry = match entry.rsplit_once(':') {
                Some((host, port))
                    if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) =>
                {
                    host
                }
                _ => entry,
            };
            let entry = entry.trim_start_matches('[').trim_end_matches(']');
            out.entries.push(entry.to_ascii_lowercase());
        }
        out
    }

    fn matches(&self, host: &str) -> bool {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        // Loopback never goes through a proxy (Go's rule): a proxy cannot reach our 127.0.0.1.
        let loopback = host == "localhost"
            || host.ends_with(".localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if self.all || loopback {
            return true;
        }
        self.entries.iter().any(|e| {
            host == *e
                || (host.len() > e.len()
                    && host.ends_with(e.as_str())
                    && host.as_bytes()[host.len() - e.len() - 1] == b'.')
        })
    }
}

/// Downloads files; cheap to share between threads (`Send + Sync`).
pub struct Fetcher {
    direct: Agent,
    http_proxy: Option<Agent>,
    https_proxy: Option<Agent>,
    no_proxy: NoProxy,
    timeout: Duration,
    retries: u32,
    backoff: Duration,
    min_rate: MinRate,
    credentials: crate::auth::Credentials,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher")
            .field("http_proxy", &self.http_proxy.is_some())
            .field("https_proxy", &self.https_proxy.is_some())
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .field("min_rate", &self.min_rate)
            .finish()
    }
}

/// The first set, non-empty variable of `names` and its value.
fn env_var(names: &[&str]) -> Option<(String, String)> {
    names.iter().find_map(|name| match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => Some((name.to_string(), v.trim().to_string())),
        _ => None,
    })
}

impl Fetcher {
    /// A fetcher with these options, reading proxies from the environment.
    pub fn new(opts: &FetchOptions) -> Result<Fetcher, FetchError> {
        let http = env_var(&["http_proxy", "all_proxy", "ALL_PROXY"]);
        let https = env_var(&["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"]);
        let no_proxy = env_var(&["no_proxy", "NO_PROXY"])
            .map(|(_, v)| NoProxy::parse(&v))
            .unwrap_or_default();
        Fetcher::with_proxies(opts, http, https, no_proxy)
    }

    fn with_proxies(
        opts: &FetchOptions,
        http: Option<(String, String)>,
        https: Option<(String, String)>,
        no_proxy: NoProxy,
    ) -> Result<Fetcher, FetchError> {
        let tls = match &opts.ca_file {
            None => TlsConfig::builder().build(),
            Some(path) => TlsConfig::builder().root_certs(read_ca_file(path)?).build(),
        };
        let agent = |proxy: Option<&(String, String)>| -> Result<Agent, FetchError> {
            let proxy = match proxy {
                None => None,
                Some((var, value)) => {
                    Some(ureq::Proxy::new(value).map_err(|e| FetchError::Proxy {
                        var: var.clone(),
                        value: value.clone(),
                        reason: e.to_string(),
                    })?)
                }
            };
            let config = Agent::config_builder()
                .http_status_as_error(false)
                .proxy(proxy)
                .user_agent(USER_AGENT)
                .accept_encoding("identity")
                .max_redirects(MAX_REDIRECTS)
                // A credential never follows a redirect, not even to the same host
                // (docs/trust-model.md §13).
                .redirect_auth_headers(ureq::config::RedirectAuthHeaders::Never)
                .timeout_resolve(Some(opts.timeout))
                .timeout_connect(Some(opts.timeout))
                .timeout_per_read(Some(opts.timeout))
                .timeout_per_write(Some(opts.timeout))
                .tls_config(tls.clone())
                // ureq zero-fills both buffers of a connection whole (128 KiB each by
                // default), and each download worker keeps its connection: a GET's request
                // head fits in far less, and a response header is capped at 64 KiB anyway.
                .input_buffer_size(INPUT_BUFFER)
                .output_buffer_size(OUTPUT_BUFFER)
                .build();
            Ok(Agent::with_parts(
                config,
                ureq::unversioned::transport::DefaultConnector::default(),
                LiteralResolver::default(),
            ))
        };
        Ok(Fetcher {
            direct: agent(None)?,
            http_proxy: http.as_ref().map(|p| agent(Some(p))).transpose()?,
            https_proxy: https.as_ref().map(|p| agent(Some(p))).transpose()?,
            no_proxy,
            timeout: opts.timeout,
            retries: opts.retries,
            backoff: FIRST_BACKOFF,
            min_rate: MinRate::default(),
            credentials: opts.credentials.clone(),
        })
    }

    /// The same fetcher with another minimum rate for HTTP transfers (default
    /// [`MinRate::default`]: 10 KiB/s after 30 s).
    pub fn with_min_rate(mut self, min_rate: MinRate) -> Fetcher {
        self.min_rate = min_rate;
        self
    }

    /// Streams `url` into `sink`; fails with [`FetchError::TooLarge`] as soon as more than
    /// `max_bytes` arrive, never buffering more. Returns the bytes written. On error the sink
    /// may hold a prefix of the file (at most `max_bytes`, from a single attempt): callers
    /// write to a temporary file or buffer they discard.
    pub fn get(&self, url: &str, max_bytes: u64, sink: &mut dyn Write) -> Result<u64, FetchError> {
        match classify(url) {
            Scheme::File(path) => get_file(url, &path, max_bytes, sink),
            Scheme::Http { https } => self.get_http(url, https, max_bytes, sink),
            Scheme::Unsupported => Err(FetchError::UnsupportedScheme { url: url.into() }),
        }
    }

    /// Downloads `url` into memory, at most `max_bytes`.
    pub fn get_bytes(&self, url: &str, max_bytes: u64) -> Result<Vec<u8>, FetchError> {
        let mut out = Vec::new();
        self.get(url, max_bytes, &mut out)?;
        Ok(out)
    }

    fn agent_for(&self, url: &str, https: bool) -> &Agent {
        let proxy = if https {
            &self.https_proxy
        } else {
            &self.http_proxy
        };
        match proxy {
            Some(agent) => {
                let host = url
                    .parse::<ureq::http::Uri>()
                    .ok()
                    .and_then(|u| u.host().map(str::to_string))
                    .unwrap_or_default();
                if self.no_proxy.matches(&host) {
                    &self.direct
                } else {
                    agent
                }
            }
            None => &self.direct,
        }
    }

    fn get_http(
        &self,
        url: &str,
        https: bool,
        max_bytes: u64,
        sink: &mut dyn Write,
    ) -> Result<u64, FetchError> {
        let agent = self.agent_for(url, https);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            match self.attempt(agent, url, max_bytes, sink, attempt) {
                Ok(n) => return Ok(n),
                Err(Attempt::Final(e)) => return Err(e),
                Err(Attempt::Retry(e)) => {
                    if attempt > self.retries {
                        return Err(e);
                    }
                    let shift = (attempt - 1).min(16);
                    std::thread::sleep(self.backoff.saturating_mul(1 << shift));
                }
            }
        }
    }

    /// One request. Errors that happen before anything reached the sink may be retried.
    fn attempt(
        &self,
        agent: &Agent,
        url: &str,
        max_bytes: u64,
        sink: &mut dyn Write,
        attempt: u32,
    ) -> Result<u64, Attempt> {
        let start = Instant::now();
        let rate = self.min_rate;
        let too_slow = |bytes: u64| {
            Attempt::Final(FetchError::TooSlow {
                url: url.into(),
                bytes,
                elapsed: start.elapsed(),
                rate,
            })
        };
        let is_deadline =
            |e: &ureq::Error| matches!(e, ureq::Error::Timeout(ureq::Timeout::Global));
        let mut request = agent.get(url);
        // The credential for this URL, if any: only over https or to loopback, and never
        // along a redirect (the agent drops Authorization when it follows one).
        let machine = match self.credentials.lookup(url) {
            crate::auth::Lookup::None => None,
            crate::auth::Lookup::Insecure(e) => {
                return Err(Attempt::Final(FetchError::InsecureCredentials {
                    url: url.into(),
                    machine: e.machine.text.clone(),
                }));
            }
            crate::auth::Lookup::Send(e) => {
                request = request.header("Authorization", e.credential.header());
                Some(e.machine.text.clone())
            }
        };
        let response = match rate.deadline(max_bytes) {
            Some(deadline) => request
                .config()
                .timeout_global(Some(deadline))
                .build()
                .call(),
            None => request.call(),
        };
        let response = response.map_err(|e| {
            if is_deadline(&e) {
                too_slow(0)
            } else {
                self.transport_error(url, e, attempt)
            }
        })?;
        let status = response.status().as_u16();
        match status {
            200..=299 => {}
            404 | 410 => return Err(Attempt::Final(FetchError::NotFound { url: url.into() })),
            401 | 403 => {
                return Err(Attempt::Final(FetchError::Unauthorized {
                    url: url.into(),
                    status,
                    machine,
                }));
            }
            429 | 500..=599 => {
                return Err(Attempt::Retry(FetchError::Http {
                    url: url.into(),
                    status,
                    attempts: attempt,
                }));
            }
            _ => {
                return Err(Attempt::Final(FetchError::Http {
                    url: url.into(),
                    status,
                    attempts: attempt,
                }));
            }
        }
        let too_large = || FetchError::TooLarge {
            url: url.into(),
            limit: max_bytes,
        };
        // A larger Content-Length is not refused up front: reading up to the limit costs at
        // most `max_bytes` and gives callers the start of the file for their error message.
        let mut reader = response.into_body().into_reader();
        let mut keeps_up = |written: u64| rate.keeps_up(written, start.elapsed());
        match copy_capped(&mut reader, sink, max_bytes, &mut keeps_up) {
            Ok(n) => Ok(n),
            Err(Copy::TooLarge) => Err(Attempt::Final(too_large())),
            Err(Copy::TooSlow(written)) => Err(too_slow(written)),
            Err(Copy::Write(e)) => Err(Attempt::Final(write_error(url, e))),
            Err(Copy::Read(e, written)) => {
                let e = ureq::Error::from(e);
                if is_deadline(&e) {
                    return Err(too_slow(written));
                }
                let err = self.transport_error(url, e, attempt);
                // Only an attempt that left the sink untouched may be retried.
                Err(if written == 0 {
                    err
                } else {
                    Attempt::Final(err.into_inner())
                })
            }
        }
    }

    fn transport_error(&self, url: &str, e: ureq::Error, attempt: u32) -> Attempt {
        use ureq::Error as E;
        match e {
            E::Timeout(_) => Attempt::Retry(FetchError::Timeout {
                url: url.into(),
                timeout: self.timeout,
                attempts: attempt,
            }),
            E::Io(ref io) if io.kind() == io::ErrorKind::TimedOut => {
                Attempt::Retry(FetchError::Timeout {
                    url: url.into(),
                    timeout: self.timeout,
                    attempts: attempt,
                })
            }
            E::ConnectionFailed | E::HostNotFound | E::Io(_) => {
                Attempt::Retry(FetchError::Transport {
                    url: url.into(),
                    reason: describe(&e),
                    attempts: attempt,
                })
            }
            other => Attempt::Final(FetchError::Transport {
                url: url.into(),
                reason: describe(&other),
                attempts: attempt,
            }),
        }
    }
}

/// The outcome of a failed attempt: worth retrying or not.
enum Attempt {
    Retry(FetchError),
    Final(FetchError),
}

impl Attempt {
    fn into_inner(self) -> FetchError {
        match self {
            Attempt::Retry(e) | Attempt::Final(e) => e,
        }
    }
}

/// A ureq error with its causes, in words.
fn describe(e: &ureq::Error) -> String {
    use ureq::Error as E;
    let base = match e {
        E::ConnectionFailed => "connection failed".to_string(),
        E::HostNotFound => "host not found".to_string(),
        other => other.to_string(),
    };
    let mut out = base;
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// The certificates of a PEM file, as roots.
fn read_ca_file(path: &std::path::Path) -> Result<RootCerts, FetchError> {
    let err = |reason: String| FetchError::CaFile {
        path: path.into(),
        reason,
    };
    let file = File::open(path).map_err(|e| err(e.to_string()))?;
    let pem = feeds::limits::read_to_end_bounded(file, 16 << 20).map_err(|e| err(e.to_string()))?;
    let mut certs: Vec<Certificate<'static>> = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item.map_err(|e| err(format!("bad PEM: {e}")))? {
            PemItem::Certificate(c) => certs.push(c),
            _ => continue,
        }
    }
    if certs.is_empty() {
        return Err(err("no certificate in the file".into()));
    }
    Ok(RootCerts::new_with_certs(&certs))
}

/// What kind of URL this is.
enum Scheme {
    File(PathBuf),
    Http { https: bool },
    Unsupported,
}

fn classify(url: &str) -> Scheme {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if lower.starts_with("http://") {
        Scheme::Http { https: false }
    } else if lower.starts_with("https://") {
        Scheme::Http { https: true }
    } else if lower.starts_with("file:") {
        file_url_path(url).map_or(Scheme::Unsupported, Scheme::File)
    } else if url.starts_with('/') {
        Scheme::File(PathBuf::from(url))
    } else {
        Scheme::Unsupported
    }
}

/// The path of `file:///p`, `file://localhost/p` or `file:/p`, percent-decoded.
fn file_url_path(url: &str) -> Option<PathBuf> {
    let rest = &url[5..];
    let path = if let Some(after) = rest.strip_prefix("//") {
        // An authority: empty or localhost, then the absolute path.
        let slash = after.find('/')?;
        let host = &after[..slash];
        if !(host.is_empty() || host.eq_ignore_ascii_case("localhost")) {
            return None;
        }
        &after[slash..]
    } else {
        rest
    };
    if !path.starts_with('/') {
        return None;
    }
    let bytes = percent_decode(path)?;
    use std::os::unix::ffi::OsStringExt;
    Some(PathBuf::from(std::ffi::OsString::from_vec(bytes)))
}

fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    if out.contains(&0) {
        return None;
    }
    Some(out)
}

fn get_file(
    url: &str,
    path: &std::path::Path,
    max_bytes: u64,
    sink: &mut dyn Write,
) -> Result<u64, FetchError> {
    let io_err = |what: &str, e: io::Error| FetchError::Io {
        url: url.into(),
        reason: format!("{what}: {e}"),
    };
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(FetchError::NotFound { url: url.into() });
        }
        Err(e) => return Err(io_err("cannot open", e)),
    };
    let meta = file.metadata().map_err(|e| io_err("cannot stat", e))?;
    if !meta.is_file() {
        return Err(FetchError::Io {
            url: url.into(),
            reason: "not a regular file".into(),
        });
    }
    match copy_capped(&mut (&file), sink, max_bytes, &mut |_| true) {
        Ok(n) => Ok(n),
        Err(Copy::TooLarge | Copy::TooSlow(_)) => Err(FetchError::TooLarge {
            url: url.into(),
            limit: max_bytes,
        }),
        Err(Copy::Write(e)) => Err(write_error(url, e)),
        Err(Copy::Read(e, _)) => Err(io_err("read failed", e)),
    }
}

fn write_error(url: &str, e: io::Error) -> FetchError {
    FetchError::Io {
        url: url.into(),
        reason: format!("writing the download failed: {e}"),
    }
}

/// Why [`copy_capped`] stopped.
enum Copy {
    /// More than the limit arrived.
    TooLarge,
    /// The rate check failed after this many bytes were written.
    TooSlow(u64),
    /// Reading failed after this many bytes were written.
    Read(io::Error, u64),
    /// The sink failed.
    Write(io::Error),
}

/// Copies `reader` into `sink` in chunks, never reading more than one byte past `max` and
/// never writing more than `max` bytes (on [`Copy::TooLarge`] the sink holds the first `max`).
/// `keeps_up` is asked, with the bytes written so far, before each read (a transfer that has
/// ended is complete, however long it took).
fn copy_capped(
    reader: &mut dyn Read,
    sink: &mut dyn Write,
    max: u64,
    keeps_up: &mut dyn FnMut(u64) -> bool,
) -> Result<u64, Copy> {
    let mut buf = COPY_BUFFER.with(|b| std::mem::take(&mut *b.borrow_mut()));
    buf.resize(CHUNK, 0);
    let r = copy_capped_with(&mut buf, reader, sink, max, keeps_up);
    COPY_BUFFER.with(|b| *b.borrow_mut() = buf);
    r
}

fn copy_capped_with(
    buf: &mut [u8],
    reader: &mut dyn Read,
    sink: &mut dyn Write,
    max: u64,
    keeps_up: &mut dyn FnMut(u64) -> bool,
) -> Result<u64, Copy> {
    let mut written = 0u64;
    loop {
        if !keeps_up(written) {
            return Err(Copy::TooSlow(written));
        }
        let room = max.saturating_sub(written).saturating_add(1);
        let want = CHUNK.min(usize::try_from(room).unwrap_or(CHUNK));
        let n = match reader.read(&mut buf[..want]) {
            Ok(0) => return Ok(written),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Copy::Read(e, written)),
        };
        if written + n as u64 > max {
            // Hand over the part that fits (callers may show the start of the file), then stop.
            let fits = usize::try_from(max - written).unwrap_or(n).min(n);
            sink.write_all(&buf[..fits]).map_err(Copy::Write)?;
            return Err(Copy::TooLarge);
        }
        sink.write_all(&buf[..n]).map_err(Copy::Write)?;
        written += n as u64;
    }
}

/// Test support shared by the network-facing modules: a real HTTP server process (python3)
/// serving a directory, and a canned-response server for misbehaving peers.
#[cfg(test)]
pub(crate) mod test_server {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::path::Path;
    use std::process::{Child, Command, Stdio};
    use std::time::Duration;

    const SERVER_PY: &str = r#"
import http.server, os, ssl, sys, threading
root = sys.argv[1]
class H(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *a, **k):
        super().__init__(*a, directory=root, **k)
    def log_message(self, *a):
        pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
srv.daemon_threads = True
if len(sys.argv) > 3:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[2], sys.argv[3])
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
def watch():
    sys.stdin.read()
    os._exit(0)
threading.Thread(target=watch, daemon=True).start()
print(srv.server_address[1], flush=True)
srv.serve_forever()
"#;

    /// `python3`'s `http.server` serving a directory on 127.0.0.1 (a random port). It exits
    /// when dropped, and by itself when the test process dies (it watches its stdin).
    pub struct PyServer {
        child: Child,
        pub port: u16,
    }

    impl PyServer {
        /// Serves `dir` over HTTP.
        pub fn start(dir: &Path) -> PyServer {
            Self::spawn(dir, None)
        }

        /// Serves `dir` over HTTPS with this certificate chain and key (PEM files).
        pub fn start_tls(dir: &Path, cert: &Path, key: &Path) -> PyServer {
            Self::spawn(dir, Some((cert, key)))
        }

        fn spawn(dir: &Path, tls: Option<(&Path, &Path)>) -> PyServer {
            let mut cmd = Command::new("python3");
            cmd.arg("-c").arg(SERVER_PY).arg(dir);
            if let Some((cert, key)) = tls {
                cmd.arg(cert).arg(key);
            }
            let mut child = cmd
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("python3 is needed for the HTTP tests");
            let mut line = String::new();
            BufReader::new(child.stdout.take().expect("stdout"))
                .read_line(&mut line)
                .expect("read the port");
            let port = line.trim().parse().expect("python3 printed its port");
            PyServer { child, port }
        }

        /// The base URL (`http://127.0.0.1:<port>`).
        pub fn url(&self) -> String {
            format!("http://127.0.0.1:{}", self.port)
        }
    }

    impl Drop for PyServer {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// A server on 127.0.0.1 that answers up to `connections` connections with `handler`
    /// (given the connection number from 0, the request head, and the stream). Returns the
    /// base URL.
    pub fn canned<F>(connections: usize, handler: F) -> String
    where
        F: Fn(usize, &str, &mut TcpStream) + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            for i in 0..connections {
                let Ok((mut stream, _)) = listener.accept() else {
                    return;
                };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
                if let Some(head) = read_head(&mut stream) {
                    handler(i, &head, &mut stream);
                }
            }
        });
        format!("http://127.0.0.1:{port}")
    }

    /// Reads up to the blank line ending a request head; None when the client went away.
    pub fn read_head(stream: &mut TcpStream) -> Option<String> {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && head.len() < 65536 {
            match stream.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => return None,
            }
        }
        Some(String::from_utf8_lossy(&head).into_owned())
    }

    /// Writes a complete response with `Connection: close`.
    pub fn respond(stream: &mut TcpStream, status: &str, body: &[u8]) {
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(body);
        let _ = stream.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::test_server::{PyServer, canned, respond};
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    fn fetcher(timeout: Duration, retries: u32) -> Fetcher {
        let opts = FetchOptions {
            timeout,
            retries,
            ca_file: None,
            credentials: Default::default(),
        };
        // No proxy from the environment: these tests talk to 127.0.0.1 directly.
        let mut f = Fetcher::with_proxies(&opts, None, None, NoProxy::default()).unwrap();
        f.backoff = Duration::from_millis(20);
        f
    }

    #[test]
    fn fetcher_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Fetcher>();
    }

    #[test]
    fn file_urls_and_plain_paths_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a b.txt");
        std::fs::write(&path, b"hello").unwrap();
        let f = fetcher(Duration::from_secs(5), 0);
        let plain = path.to_str().unwrap();
        let url = format!("file://{}", plain.replace(' ', "%20"));
        assert_eq!(f.get_bytes(&url, 100).unwrap(), b"hello");
        assert_eq!(f.get_bytes(plain, 100).unwrap(), b"hello");
        let short = format!("file:{}", plain);
        assert_eq!(f.get_bytes(&short, 100).unwrap(), b"hello");
        let local = format!("file://localhost{}", plain);
        assert_eq!(f.get_bytes(&local, 100).unwrap(), b"hello");
        // exactly at the limit is fine, one byte less is not
        assert_eq!(f.get_bytes(plain, 5).unwrap(), b"hello");
        let e = f.get_bytes(plain, 4).unwrap_err();
        assert!(matches!(e, FetchError::TooLarge { limit: 4, .. }), "{e}");
        let missing = format!("file://{}/nope", dir.path().display());
        let e = f.get_bytes(&missing, 100).unwrap_err();
        assert!(e.is_not_found(), "{e}");
        assert!(e.to_string().contains("/nope: not found"), "{e}");
    }

    #[test]
    fn unsupported_schemes_are_refused() {
        let f = fetcher(Duration::from_secs(5), 0);
        for url in [
            "ftp://x/y",
            "relative/path",
            "file://otherhost/etc/passwd",
            "",
        ] {
            let e = f.get_bytes(url, 100).unwrap_err();
            assert!(
                matches!(e, FetchError::UnsupportedScheme { .. }),
                "{url}: {e}"
            );
        }
    }

    #[test]
    fn http_200_and_404_from_a_real_server() {
        let dir = tempfile::tempdir().unwrap();
        let body: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(dir.path().join("Packages.gz"), &body).unwrap();
        let server = PyServer::start(dir.path());
        let f = fetcher(Duration::from_secs(10), 0);
        let url = format!("{}/Packages.gz", server.url());
        // raw bytes, no decompression, even for a .gz name
        assert_eq!(f.get_bytes(&url, 1 << 20).unwrap(), body);
        let e = f
            .get_bytes(&format!("{}/missing", server.url()), 100)
            .unwrap_err();
        assert!(e.is_not_found(), "{e}");
        // over the limit: stopped there; the sink holds at most the limit
        let mut sink = Vec::new();
        let e = f.get(&url, 1000, &mut sink).unwrap_err();
        assert!(matches!(e, FetchError::TooLarge { limit: 1000, .. }), "{e}");
        assert_eq!(sink, body[..1000]);
    }

    #[test]
    fn a_long_url_and_large_response_headers_fit_the_connection_buffers() {
        // A request head of ~12 KiB (the output buffer is 16 KiB) and a response header of
        // ~48 KiB (the input buffer is 64 KiB, ureq's cap on a response header).
        let base = canned(1, move |_, _, s| {
            let big = "x".repeat(48 * 1024);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nX-Padding: {big}\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
            );
        });
        let f = fetcher(Duration::from_secs(10), 0);
        let url = format!("{base}/{}", "p".repeat(12 * 1024));
        assert_eq!(f.get_bytes(&url, 100).unwrap(), b"hello");
    }

    #[test]
    fn endless_body_stops_at_the_limit() {
        let sent = Arc::new(AtomicUsize::new(0));
        let sent2 = Arc::clone(&sent);
        let base = canned(1, move |_, _, s| {
            // No Content-Length: the body ends only when the connection closes.
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
            let chunk = vec![b'x'; 16384];
            // bounded so the thread stops by itself: 256 MiB
            for _ in 0..16384 {
                if s.write_all(&chunk).is_err() {
                    return;
                }
                sent2.fetch_add(chunk.len(), Ordering::SeqCst);
            }
        });
        let f = fetcher(Duration::from_secs(10), 0);
        let mut sink = Vec::new();
        let e = f
            .get(&format!("{base}/Packages"), 100_000, &mut sink)
            .unwrap_err();
        assert!(
            matches!(e, FetchError::TooLarge { limit: 100_000, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("more than 100000 bytes"), "{e}");
        assert!(sink.len() <= 100_000, "sink got {} bytes", sink.len());
        std::thread::sleep(Duration::from_millis(200));
        // The server was cut off long before its 256 MiB.
        assert!(sent.load(Ordering::SeqCst) < 64 << 20);
    }

    #[test]
    fn http_503_then_200_is_retried() {
        let base = canned(3, |i, _, s| {
            if i < 2 {
                respond(s, "503 Service Unavailable", b"busy");
            } else {
                respond(s, "200 OK", b"payload");
            }
        });
        let f = fetcher(Duration::from_secs(10), 3);
        let mut sink = Vec::new();
        assert_eq!(f.get(&format!("{base}/x"), 100, &mut sink).unwrap(), 7);
        // only the successful attempt reached the sink
        assert_eq!(sink, b"payload");
    }

    #[test]
    fn retries_are_bounded_and_reported() {
        let hits = Arc::new(AtomicUsize::new(0));
        let hits2 = Arc::clone(&hits);
        let base = canned(10, move |_, _, s| {
            hits2.fetch_add(1, Ordering::SeqCst);
            respond(s, "500 Internal Server Error", b"oops");
        });
        let f = fetcher(Duration::from_secs(10), 2);
        let e = f.get_bytes(&format!("{base}/x"), 100).unwrap_err();
        assert!(
            matches!(
                e,
                FetchError::Http {
                    status: 500,
                    attempts: 3,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("(after 3 attempts)"), "{e}");
        assert_eq!(hits.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn client_errors_are_not_retried() {
        let hits = Arc::new(AtomicUsize::new(0));
        let hits2 = Arc::clone(&hits);
        let base = canned(10, move |_, _, s| {
            hits2.fetch_add(1, Ordering::SeqCst);
            respond(s, "400 Bad Request", b"no");
        });
        let f = fetcher(Duration::from_secs(10), 3);
        let e = f.get_bytes(&format!("{base}/x"), 100).unwrap_err();
        assert!(matches!(e, FetchError::Http { status: 400, .. }), "{e}");
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_failure_after_writing_is_not_retried() {
        let base = canned(5, |_, _, s| {
            // promises 1000 bytes, sends 10, hangs up
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789");
        });
        let f = fetcher(Duration::from_secs(10), 3);
        let mut sink = Vec::new();
        let e = f.get(&format!("{base}/x"), 5000, &mut sink).unwrap_err();
        assert!(
            matches!(e, FetchError::Transport { attempts: 1, .. }),
            "{e}"
        );
        assert_eq!(sink, b"0123456789");
    }

    #[test]
    fn silent_server_times_out_with_a_clear_error() {
        let base = canned(1, |_, _, s| {
            // read until the client gives up, never answer
            let mut buf = [0u8; 64];
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
            }
        });
        let f = fetcher(Duration::from_millis(300), 0);
        let start = Instant::now();
        let e = f.get_bytes(&format!("{base}/x"), 100).unwrap_err();
        assert!(matches!(e, FetchError::Timeout { .. }), "{e}");
        assert!(
            e.to_string().contains("timed out: no data for 0.3 s"),
            "{e}"
        );
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    /// A fetcher with a small minimum rate, so that the deadline tests take about a second.
    fn slow_fetcher(per_read: Duration, bytes_per_sec: u64, grace: Duration) -> Fetcher {
        fetcher(per_read, 3).with_min_rate(MinRate {
            bytes_per_sec,
            grace,
        })
    }

    #[test]
    fn slow_loris_download_is_cut_off_by_the_overall_deadline() {
        // The server trickles one byte every 50 ms (for 10 s, then it hangs up), so no read
        // ever times out. Owed: 2000 bytes/s after 300 ms.
        let sent = Arc::new(AtomicUsize::new(0));
        let hits = Arc::new(AtomicUsize::new(0));
        let (sent2, hits2) = (Arc::clone(&sent), Arc::clone(&hits));
        let base = canned(5, move |_, _, s| {
            hits2.fetch_add(1, Ordering::SeqCst);
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n");
            for _ in 0..200 {
                if s.write_all(b"x").and_then(|()| s.flush()).is_err() {
                    return;
                }
                sent2.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let f = slow_fetcher(Duration::from_secs(20), 2000, Duration::from_millis(300));
        let start = Instant::now();
        let mut sink = Vec::new();
        let url = format!("{base}/Packages.gz");
        let e = f.get(&url, 1 << 20, &mut sink).unwrap_err();
        let took = start.elapsed();
        let FetchError::TooSlow { bytes, elapsed, .. } = e else {
            panic!("expected TooSlow, got {e}");
        };
        assert_eq!(bytes, sink.len() as u64);
        assert!(bytes < 200, "{bytes} bytes");
        assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
        // Cut off about one trickled byte after the grace period; generous for busy machines.
        assert!(took < Duration::from_secs(10), "took {took:?}");
        let message = e.to_string();
        let expected_start = format!("{url}: too slow: {bytes} bytes in ");
        assert!(message.starts_with(&expected_start), "{message}");
        assert!(
            message.ends_with(
                " s (below the minimum of 2000 bytes/s after 0.3 s): stalled or hostile server"
            ),
            "{message}"
        );
        // Not retried, and the server was hung up on.
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        std::thread::sleep(Duration::from_millis(300));
        let after = sent.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(300));
        assert!(sent.load(Ordering::SeqCst) <= after + 1, "still sending");
    }

    #[test]
    fn a_stalled_transfer_is_cut_off_at_the_deadline_even_while_a_read_waits() {
        // Headers trickled a byte at a time, then (second server) a body that stops after
        // 10 bytes. The per-read timeout (20 s) never fires; the deadline for a 1000-byte file
        // at 1000 bytes/s after 300 ms is 1.3 s.
        let trickled_head = canned(1, |_, _, s| {
            for b in b"HTTP/1.1 200 OK\r\nX-Padding: "
                .iter()
                .chain([b'y'; 500].iter())
            {
                if s.write_all(&[*b]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let stalled_body = canned(1, |_, _, s| {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789");
            let mut buf = [0u8; 64];
            // wait (at most 10 s, the canned server's read timeout) until the client hangs up
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
            }
        });
        let f = slow_fetcher(Duration::from_secs(20), 1000, Duration::from_millis(300));
        for (base, expected_bytes) in [(trickled_head, 0), (stalled_body, 10)] {
            let start = Instant::now();
            let e = f.get_bytes(&format!("{base}/x"), 1000).unwrap_err();
            let took = start.elapsed();
            assert!(
                matches!(e, FetchError::TooSlow { bytes, .. } if bytes == expected_bytes),
                "{e}"
            );
            assert!(took >= Duration::from_millis(1300), "{took:?}");
            assert!(took < Duration::from_secs(10), "took {took:?}");
        }
    }

    #[test]
    fn a_transfer_keeping_up_the_minimum_rate_completes() {
        // 20 chunks of 1000 bytes every 50 ms (about 20 KB/s) against a floor of 4000 bytes/s
        // after 200 ms; and a rate of 0 switches the floor and the deadline off.
        let base = canned(2, |_, _, s| {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 20000\r\n\r\n");
            for _ in 0..20 {
                if s.write_all(&[b'z'; 1000]).and_then(|()| s.flush()).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let f = slow_fetcher(Duration::from_secs(10), 4000, Duration::from_millis(200));
        assert_eq!(
            f.get_bytes(&format!("{base}/x"), 20_000).unwrap().len(),
            20_000
        );
        let f = fetcher(Duration::from_secs(10), 0).with_min_rate(MinRate::NONE);
        assert_eq!(
            f.get_bytes(&format!("{base}/x"), 20_000).unwrap().len(),
            20_000
        );
    }

    #[test]
    fn min_rate_options_and_deadlines() {
        let default = MinRate::default();
        assert_eq!(default.bytes_per_sec, 10 * 1024);
        assert_eq!(default.grace, Duration::from_secs(30));
        assert_eq!(MinRate::from_options(None, None).unwrap(), default);
        let r = MinRate::from_options(Some("20K"), Some("5")).unwrap();
        assert_eq!(r.bytes_per_sec, 20 * 1024);
        assert_eq!(r.grace, Duration::from_secs(5));
        assert_eq!(
            MinRate::from_options(Some(" 1MiB "), None)
                .unwrap()
                .bytes_per_sec,
            1 << 20
        );
        assert_eq!(
            MinRate::from_options(Some("1500"), None)
                .unwrap()
                .bytes_per_sec,
            1500
        );
        assert_eq!(
            MinRate::from_options(Some("0"), None).unwrap(),
            MinRate {
                grace: default.grace,
                ..MinRate::NONE
            }
        );
        for (rate, grace, name) in [
            (Some("fast"), None, "fetch_min_rate"),
            (Some("10 GB"), None, "fetch_min_rate"),
            (Some("-1"), None, "fetch_min_rate"),
            (None, Some("30s"), "fetch_grace"),
            (None, Some("99999999"), "fetch_grace"),
        ] {
            let e = MinRate::from_options(rate, grace).unwrap_err();
            assert!(
                matches!(&e, FetchError::BadOption { name: n, .. } if n == name),
                "{e}"
            );
            assert!(e.to_string().starts_with(&format!("option {name} ")), "{e}");
        }
        // The deadline: the grace period plus the size bound at the minimum rate.
        assert_eq!(default.deadline(4096), Some(Duration::from_secs(31)));
        assert_eq!(
            default.deadline(64 << 20),
            Some(Duration::from_secs(30 + 6554))
        );
        assert_eq!(default.deadline(u64::MAX), None);
        assert_eq!(MinRate::NONE.deadline(100), None);
        // The floor: nothing is owed during the grace period, then the rate since its end.
        assert!(default.keeps_up(0, Duration::from_secs(30)));
        assert!(default.keeps_up(10 * 1024 * 10, Duration::from_secs(40)));
        assert!(!default.keeps_up(10 * 1024 * 10 - 1, Duration::from_secs(40)));
        assert_eq!(format_rate(10 * 1024), "10 KiB/s");
        assert_eq!(format_rate(2 << 20), "2 MiB/s");
        assert_eq!(format_rate(1500), "1500 bytes/s");
    }

    #[test]
    fn refused_connection_is_a_transport_error() {
        // bind then drop: nothing listens on that port any more
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let f = fetcher(Duration::from_secs(5), 1);
        let e = f
            .get_bytes(&format!("http://127.0.0.1:{port}/x"), 100)
            .unwrap_err();
        assert!(
            matches!(e, FetchError::Transport { attempts: 2, .. }),
            "{e}"
        );
        assert!(
            e.to_string().contains(&format!("127.0.0.1:{port}/x")),
            "{e}"
        );
    }

    #[test]
    fn no_proxy_matching() {
        let np = NoProxy::parse("localhost, .example.com,10.0.0.1:8080 ,[::1]");
        assert!(np.matches("localhost"));
        assert!(np.matches("example.com"));
        assert!(np.matches("feeds.example.com"));
        assert!(!np.matches("badexample.com"));
        assert!(np.matches("10.0.0.1"));
        assert!(np.matches("[::1]"));
        assert!(!np.matches("192.0.2.1"));
        // loopback always bypasses the proxy
        assert!(NoProxy::default().matches("127.0.0.1"));
        assert!(NoProxy::default().matches("[::1]"));
        assert!(NoProxy::default().matches("localhost"));
        assert!(!NoProxy::default().matches("example.com"));
        assert!(NoProxy::parse("*").matches("anything"));
    }

    #[test]
    fn requests_go_through_the_proxy_unless_no_proxy() {
        // The "proxy" is a canned server on 127.0.0.1: it accepts the CONNECT tunnel, then
        // answers the request sent through it itself. The target host is never resolved here
        // (the proxy resolves it), so nothing leaves the machine.
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let proxy = canned(1, move |_, head, s| {
            let _ = tx.send(head.to_string());
            let _ = s.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
            if super::test_server::read_head(s).is_some() {
                respond(s, "200 OK", b"via proxy");
            }
        });
        let opts = FetchOptions::default();
        let http = Some(("http_proxy".to_string(), proxy.clone()));
        let f = Fetcher::with_proxies(&opts, http.clone(), None, NoProxy::default()).unwrap();
        let url = "http://feeds.example.invalid/f";
        assert_eq!(f.get_bytes(url, 100).unwrap(), b"via proxy");
        let head = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(
            head.starts_with("CONNECT feeds.example.invalid:80 "),
            "{head}"
        );
        // https has no proxy configured here: direct
        assert!(std::ptr::eq(
            f.agent_for("https://feeds.example.invalid/f", true),
            &f.direct
        ));
        // no_proxy and loopback go direct
        let f =
            Fetcher::with_proxies(&opts, http, None, NoProxy::parse(".example.invalid")).unwrap();
        assert!(std::ptr::eq(f.agent_for(url, false), &f.direct));
        assert!(std::ptr::eq(
            f.agent_for("http://other.test/f", false),
            f.http_proxy.as_ref().unwrap()
        ));
        assert!(std::ptr::eq(
            f.agent_for("http://127.0.0.1:8080/f", false),
            &f.direct
        ));
    }

    #[test]
    fn an_ip_address_host_is_taken_as_it_is_and_a_name_is_looked_up() {
        let addr = |u: &str| super::literal_addr(&u.parse().unwrap()).map(|a| a.to_string());
        assert_eq!(
            addr("http://127.0.0.1:8080/f").as_deref(),
            Some("127.0.0.1:8080")
        );
        assert_eq!(addr("http://[::1]/f").as_deref(), Some("[::1]:80"));
        assert_eq!(
            addr("https://192.0.2.7/f").as_deref(),
            Some("192.0.2.7:443")
        );
        assert_eq!(addr("http://localhost:8080/f"), None);
        assert_eq!(addr("http://feeds.example.org/f"), None);
    }

    #[test]
    fn user_agent_and_identity_encoding_are_sent() {
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = listener.accept() {
                let head = super::test_server::read_head(&mut s).unwrap_or_default();
                let _ = tx.send(head);
                respond(&mut s, "200 OK", b"ok");
            }
        });
        let f = fetcher(Duration::from_secs(5), 0);
        f.get_bytes(&format!("http://127.0.0.1:{port}/x"), 100)
            .unwrap();
        let head = rx
            .recv_timeout(Duration::from_secs(5))
            .unwrap()
            .to_lowercase();
        assert!(
            head.contains(&format!("user-agent: {}", USER_AGENT.to_lowercase())),
            "{head}"
        );
        assert!(head.contains("accept-encoding: identity"), "{head}");
    }

    #[test]
    fn bad_proxy_variable_is_an_error() {
        let opts = FetchOptions::default();
        let bad = Some(("https_proxy".to_string(), "http://[::1".to_string()));
        let e = Fetcher::with_proxies(&opts, None, bad, NoProxy::default()).unwrap_err();
        assert!(e.to_string().contains("$https_proxy"), "{e}");
    }

    #[test]
    fn https_with_a_private_ca() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (ca, leaf, leaf_key) = e2e::throwaway_ca(d);
        let www = d.join("www");
        std::fs::create_dir(&www).unwrap();
        std::fs::write(www.join("Packages"), b"Package: a\n").unwrap();
        let server = PyServer::start_tls(&www, &leaf, &leaf_key);
        let url = format!("https://127.0.0.1:{}/Packages", server.port);

        // Trusting the private CA: works.
        let opts = FetchOptions {
            timeout: Duration::from_secs(10),
            retries: 0,
            ca_file: Some(ca),
            credentials: Default::default(),
        };
        let f = Fetcher::with_proxies(&opts, None, None, NoProxy::default()).unwrap();
        assert_eq!(f.get_bytes(&url, 100).unwrap(), b"Package: a\n");

        // With the built-in roots only: the certificate is refused.
        let opts = FetchOptions {
            ca_file: None,
            ..opts
        };
        let f = Fetcher::with_proxies(&opts, None, None, NoProxy::default()).unwrap();
        let e = f.get_bytes(&url, 100).unwrap_err();
        assert!(
            matches!(e, FetchError::Transport { attempts: 1, .. }),
            "{e}"
        );
        assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");

        // A CA file without certificates is refused up front.
        let opts = FetchOptions {
            ca_file: Some(d.join("ext")),
            ..opts
        };
        let e = Fetcher::new(&opts).unwrap_err();
        assert!(matches!(e, FetchError::CaFile { .. }), "{e}");
    }

    fn with_credentials(text: &str) -> Fetcher {
        let opts = FetchOptions {
            timeout: Duration::from_secs(10),
            retries: 2,
            ca_file: None,
            credentials: crate::auth::Credentials::from_entries(
                crate::auth::parse(text, "auth.conf").unwrap(),
            ),
        };
        Fetcher::with_proxies(&opts, None, None, NoProxy::default()).unwrap()
    }

    /// The Authorization header of a request head, if any.
    fn authorization(head: &str) -> Option<String> {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("authorization")
                .then(|| v.trim().to_string())
        })
    }

    #[test]
    fn credentials_reach_their_machine_and_not_a_redirect_target() {
        use std::sync::{Arc, Mutex};
        let seen_other: Arc<Mutex<Vec<String>>> = Arc::default();
        let seen = seen_other.clone();
        let other = canned(1, move |_, head, stream| {
            seen.lock().unwrap().push(head.to_string());
            respond(stream, "200 OK", b"from the other host");
        });
        let seen_private: Arc<Mutex<Vec<String>>> = Arc::default();
        let seen = seen_private.clone();
        let target = format!("{other}/elsewhere");
        let private = canned(2, move |i, head, stream| {
            seen.lock().unwrap().push(head.to_string());
            if i == 0 {
                respond(stream, "200 OK", b"private");
            } else {
                let head = format!(
                    "HTTP/1.1 302 Found\r\nLocation: {target}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = std::io::Write::write_all(stream, head.as_bytes());
            }
        });
        let port = private.rsplit(':').next().unwrap();
        let f = with_credentials(&format!(
            "machine 127.0.0.1:{port}/feed token s3cret-token\n"
        ));
        assert_eq!(
            f.get_bytes(&format!("{private}/feed/Packages"), 100)
                .unwrap(),
            b"private"
        );
        assert_eq!(
            authorization(&seen_private.lock().unwrap()[0]).as_deref(),
            Some("Bearer s3cret-token")
        );
        // The redirect is followed, but the credential stays behind.
        assert_eq!(
            f.get_bytes(&format!("{private}/feed/moved"), 100).unwrap(),
            b"from the other host"
        );
        let other_heads = seen_other.lock().unwrap();
        assert_eq!(other_heads.len(), 1);
        assert_eq!(authorization(&other_heads[0]), None, "{}", other_heads[0]);
        // Another path on the same host gets nothing either.
        let url = canned(1, |_, head, stream| {
            let body = if authorization(head).is_some() {
                "leaked"
            } else {
                "none"
            };
            respond(stream, "200 OK", body.as_bytes());
        });
        let port = url.rsplit(':').next().unwrap();
        let f = with_credentials(&format!("machine 127.0.0.1:{port}/feed token t\n"));
        assert_eq!(
            f.get_bytes(&format!("{url}/other/Packages"), 100).unwrap(),
            b"none"
        );
    }

    #[test]
    fn a_refused_credential_is_one_clear_error_not_a_retry_storm() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        let url = canned(3, move |_, _, stream| {
            h.fetch_add(1, Ordering::SeqCst);
            respond(stream, "401 Unauthorized", b"no");
        });
        let port = url.rsplit(':').next().unwrap();
        let f = with_credentials(&format!(
            "machine 127.0.0.1:{port} login u password wrong-pass\n"
        ));
        let e = f.get_bytes(&format!("{url}/Packages.gz"), 100).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{url}/Packages.gz: 401 Unauthorized: the credentials for 127.0.0.1:{port} were refused; roll them with prokit auth set"
            )
        );
        assert!(!format!("{e} {e:?}").contains("wrong-pass"));
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(hits.load(Ordering::SeqCst), 1, "retried a 401");
        // Without credentials: says none are configured.
        let url = canned(1, |_, _, stream| respond(stream, "403 Forbidden", b""));
        let f = with_credentials("");
        let e = f.get_bytes(&format!("{url}/x"), 100).unwrap_err();
        assert!(
            e.to_string()
                .contains("403 Forbidden: the server wants credentials and none are configured"),
            "{e}"
        );
    }

    #[test]
    fn credentials_are_not_sent_over_plain_http_to_another_machine() {
        let f = with_credentials("machine example.invalid token t\n");
        let e = f
            .get_bytes("http://example.invalid/feed/Packages", 100)
            .unwrap_err();
        assert!(matches!(e, FetchError::InsecureCredentials { .. }), "{e}");
        assert!(
            e.to_string()
                .contains("not sending the credentials for example.invalid over plain http"),
            "{e}"
        );
    }
}
