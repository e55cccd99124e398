//! The network provider: the only code in alos that opens network connections.
//!
//! The kernel decides *whether* a fetch is allowed; this module makes sure that what
//! is decided is what is actually connected to.
//!
//! - The host is resolved here, once. Before each address is connected to, the
//!   caller's [`Guard`] is shown a [`Connect`]: the host as the URL names it, the
//!   port, and the exact IP address. The socket is then connected to that very
//!   address; the HTTP layer (hyper's bare HTTP/1.1 connection, not a pooled client)
//!   is handed the connected socket and never resolves or dials anything itself. The
//!   `Host` header and TLS SNI still carry the URL's name, so virtual hosting and
//!   certificate checks work as usual. A refused address is never connected to.
//! - A name with several addresses is tried in resolver order; a refused or
//!   unreachable address moves on to the next. If none could be used and any was
//!   refused, the error is the first refusal ([`NetError::Refused`]).
//! - Redirects (301, 302, 303, 307, 308 with a `Location`) are followed here, by hand,
//!   up to [`FetchRequest::max_redirects`]; every hop is resolved and guarded like the
//!   first request. A refused hop fails the whole fetch, naming the redirect target.
//!   `Authorization`, `Proxy-Authorization` and `Cookie` are dropped once a redirect
//!   leaves the origin (scheme, host, port) and are not restored afterwards.
//! - Everything is bounded: one deadline ([`FetchRequest::timeout`]) covers DNS,
//!   connect, TLS, every redirect hop and the body; response headers are limited in
//!   count and size; the body is cut at [`FetchRequest::max_body_bytes`] and the
//!   response says so with `truncated: true` (the bytes read so far are kept, and the
//!   connection is dropped without reading the rest).
//! - Only `http` and `https` URLs; credentials in URLs, `Host` and hop-by-hop request
//!   headers, header values with control characters, and `CONNECT` are refused
//!   before anything is resolved.
//!
//! The kernel's syscall futures run on a current-thread runtime, so [`fetch`]'s future
//! is not `Send` (the guard is a plain `&dyn Fn`); it needs a Tokio runtime with I/O
//! and time enabled.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use url::{Position, Url};

/// [`FetchRequest::get`]'s overall deadline.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// [`FetchRequest::get`]'s body cap.
pub const DEFAULT_MAX_BODY_BYTES: usize = 10 << 20;
/// [`FetchRequest::get`]'s redirect limit.
pub const DEFAULT_MAX_REDIRECTS: u32 = 10;
/// Longest URL accepted, in bytes (also applies to redirect targets).
pub const MAX_URL_BYTES: usize = 8192;
/// Most request headers a caller may send.
pub const MAX_REQUEST_HEADERS: usize = 100;
/// Most bytes of request header names and values a caller may send, in total.
pub const MAX_REQUEST_HEADER_BYTES: usize = 64 * 1024;
/// Most response headers accepted; more fails the fetch.
pub const MAX_RESPONSE_HEADERS: usize = 100;
/// Most bytes of response status line plus headers accepted; more fails the fetch.
pub const MAX_RESPONSE_HEADER_BYTES: usize = 64 * 1024;
/// Most addresses of one name tried (a resolver can return long lists).
const MAX_ADDRESSES: usize = 8;

/// The caller's say over each address about to be connected to. `Err(reason)` means
/// that address is not connected to (see the module docs for what happens next).
pub type Guard<'a> = &'a dyn Fn(&Connect) -> Result<(), String>;

/// One HTTP request. Build with [`FetchRequest::get`] and adjust the fields. Its
/// `Debug` shows header names only: values may be credentials (`Authorization`).
#[derive(Clone, PartialEq, Eq)]
pub struct FetchRequest {
    /// An absolute `http://` or `https://` URL, without credentials.
    pub url: String,
    /// An HTTP method token; the standard methods are accepted in any case.
    pub method: String,
    /// Request headers, sent in order (repeats allowed). `User-Agent` defaults to
    /// `alos/VERSION`; `Host`, `Content-Length` and hop-by-hop headers are refused.
    pub headers: Vec<(String, String)>,
    /// The request body, sent with a `Content-Length`.
    pub body: Option<Vec<u8>>,
    /// One deadline for everything: DNS, connect, TLS, all redirect hops, the body.
    pub timeout: Duration,
    /// Response body bytes kept; past this the body is cut and `truncated` is set.
    pub max_body_bytes: usize,
    /// Redirects followed; one more fails with [`NetError::TooManyRedirects`]
    /// (so 0 makes any redirect an error).
    pub max_redirects: u32,
}

impl fmt::Debug for FetchRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(name, _)| (name.as_str(), "[redacted]"))
            .collect();
        f.debug_struct("FetchRequest")
            .field("url", &self.url)
            .field("method", &self.method)
            .field("headers", &headers)
            .field("body", &self.body.as_ref().map(Vec::len))
            .field("timeout", &self.timeout)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_redirects", &self.max_redirects)
            .finish()
    }
}

impl FetchRequest {
    /// A `GET` of `url` with the default limits and no headers.
    pub fn get(url: impl Into<String>) -> FetchRequest {
        FetchRequest {
            url: url.into(),
            method: "GET".to_string(),
            headers: Vec::new(),
            body: None,
            timeout: DEFAULT_TIMEOUT,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_redirects: DEFAULT_MAX_REDIRECTS,
        }
    }
}

/// What is about to be connected to, shown to the [`Guard`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Connect {
    /// The URL's host, normalized as the capability syntax writes hosts: a lower-case
    /// DNS name (punycode for international names) without a trailing dot, a
    /// dotted-quad IPv4 address (also for an IPv4-mapped IPv6 literal), or a bracketed
    /// IPv6 address such as `[::1]`.
    pub host: String,
    /// The port (the scheme's default when the URL names none).
    pub port: u16,
    /// The address the socket will be connected to (IPv4-mapped IPv6 shown as IPv4).
    pub addr: IpAddr,
}

impl Connect {
    /// `host:port`, the resource of a `net` request for the name.
    pub fn host_resource(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// `addr:port` (IPv6 bracketed), the resource of a `net` request for the address.
    pub fn addr_resource(&self) -> String {
        SocketAddr::new(self.addr, self.port).to_string()
    }

    /// Whether the address is internal (see [`is_internal`]).
    pub fn is_internal(&self) -> bool {
        is_internal(self.addr)
    }
}

impl fmt::Display for Connect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let addr = self.addr_resource();
        let host = self.host_resource();
        if addr == host {
            f.write_str(&host)
        } else {
            write!(f, "{host} at address {}", self.addr)
        }
    }
}

/// A response, after redirects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchResponse {
    pub status: u16,
    /// Lower-case names, in the order received; values not valid UTF-8 are converted
    /// lossily.
    pub headers: Vec<(String, String)>,
    /// At most `max_body_bytes` bytes.
    pub body: Vec<u8>,
    /// The server sent more than `max_body_bytes`; `body` holds the first ones.
    pub truncated: bool,
    /// The URL that produced this response.
    pub final_url: String,
    /// Each URL redirected to, in order (the last one is `final_url`).
    pub redirects: Vec<String>,
}

impl FetchResponse {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// Why a fetch failed. Each message names the URL and what was being attempted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("invalid request to {url}: {reason}")]
    InvalidRequest { url: String, reason: String },
    #[error("refused to connect to {connect} for {url}{}: {reason}", via(.redirected_from))]
    Refused {
        /// The URL being fetched when refused: the redirect target for a redirect hop.
        url: String,
        connect: Connect,
        reason: String,
        /// The URL whose response redirected to `url`, for a redirect hop.
        redirected_from: Option<String>,
    },
    #[error("could not resolve host {host} for {url}: {reason}")]
    Dns {
        url: String,
        host: String,
        reason: String,
    },
    #[error("could not connect to {host}:{port} for {url}: {reason}")]
    Connect {
        url: String,
        host: String,
        port: u16,
        reason: String,
    },
    #[error("TLS handshake with {connect} for {url} failed: {reason}")]
    Tls {
        url: String,
        connect: Connect,
        reason: String,
    },
    #[error("fetching {url} timed out after {after:?} while {stage}")]
    Timeout {
        url: String,
        stage: String,
        after: Duration,
    },
    #[error("too many redirects fetching {url}: the limit is {limit}; chain: {}", .chain.join(" -> "))]
    TooManyRedirects {
        url: String,
        limit: u32,
        chain: Vec<String>,
    },
    #[error("invalid redirect from {from} to {location:?}: {reason}")]
    InvalidRedirect {
        from: String,
        location: String,
        reason: String,
    },
    #[error("HTTP exchange with {url} failed: {reason}")]
    Http { url: String, reason: String },
    #[error("invalid TLS root certificates: {0}")]
    TlsRoots(String),
}

fn via(redirected_from: &Option<String>) -> String {
    redirected_from
        .as_ref()
        .map(|from| format!(" (redirected from {from})"))
        .unwrap_or_default()
}

/// Whether `ip` is not a public unicast address: loopback (127/8, ::1), private
/// (10/8, 172.16/12, 192.168/16, fc00::/7), link-local (169.254/16, fe80::/10),
/// shared/CGNAT (100.64/10), "this network" and unspecified (0/8, ::), multicast
/// (224/4, ff00::/8), reserved and broadcast (240/4), IETF protocol assignments
/// (192.0.0/24), benchmarking (198.18/15), deprecated site-local (fec0::/10), and the
/// IPv6 forms that carry an IPv4 address (IPv4-mapped `::ffff:a.b.c.d`,
/// IPv4-compatible `::a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) when that IPv4
/// address is internal; the local-use NAT64 prefix `64:ff9b:1::/48` always is.
/// The kernel requires a capability naming such an address, whatever name led to it.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => is_internal_v6(v6),
    }
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    a == 0
        || a == 10
        || a == 127
        || (a == 100 && (64..128).contains(&b))
        || (a == 169 && b == 254)
        || (a == 172 && (16..32).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 192 && b == 168)
        || (a == 198 && (b == 18 || b == 19))
        || a >= 224
}

fn is_internal_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let embedded =
        |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if ip.is_unspecified() || ip.is_loopback() {
        return true;
    }
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_internal_v4(v4);
    }
    if s[..6] == [0; 6] {
        // IPv4-compatible (deprecated), ::a.b.c.d.
        return is_internal_v4(embedded(s[6], s[7]));
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_internal_v4(embedded(s[6], s[7]));
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1 {
        return true;
    }
    if s[0] == 0x2002 {
        return is_internal_v4(embedded(s[1], s[2]));
    }
    (s[0] & 0xfe00) == 0xfc00
        || (s[0] & 0xffc0) == 0xfe80
        || (s[0] & 0xffc0) == 0xfec0
        || (s[0] & 0xff00) == 0xff00
}

/// The certificate authorities trusted for `https`.
#[derive(Clone)]
pub struct Tls {
    config: Arc<rustls::ClientConfig>,
}

impl Tls {
    /// Mozilla's root program, as compiled into `webpki-roots` (the same everywhere,
    /// independent of the host's certificate store).
    pub fn webpki() -> Tls {
        static WEBPKI: OnceLock<Tls> = OnceLock::new();
        WEBPKI
            .get_or_init(|| {
                let roots = rustls::RootCertStore {
                    roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
                };
                Tls {
                    config: Arc::new(
                        client_config(roots).expect("ring supports the default TLS versions"),
                    ),
                }
            })
            .clone()
    }

    /// Only the given DER-encoded certificates as roots (a private CA, or a test's
    /// self-signed certificate).
    pub fn with_roots_der(roots: &[Vec<u8>]) -> Result<Tls, NetError> {
        let mut store = rustls::RootCertStore::empty();
        for der in roots {
            store
                .add(CertificateDer::from(der.clone()))
                .map_err(|e| NetError::TlsRoots(e.to_string()))?;
        }
        let config = client_config(store).map_err(|e| NetError::TlsRoots(e.to_string()))?;
        Ok(Tls {
            config: Arc::new(config),
        })
    }
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls").finish_non_exhaustive()
    }
}

fn client_config(roots: rustls::RootCertStore) -> Result<rustls::ClientConfig, rustls::Error> {
    // The provider is explicit so no process-wide default has to be installed.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // We only speak HTTP/1.1 on the connection we hand to hyper.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The network provider as the kernel uses it; [`HostNetwork`] is the real one.
pub trait Network: Send + Sync {
    fn fetch<'a>(
        &'a self,
        request: FetchRequest,
        guard: Guard<'a>,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<FetchResponse, NetError>> + 'a>>;
}

/// The host's network, trusting the web PKI roots.
pub struct HostNetwork;

impl Network for HostNetwork {
    fn fetch<'a>(
        &'a self,
        request: FetchRequest,
        guard: Guard<'a>,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<FetchResponse, NetError>> + 'a>> {
        Box::pin(fetch(request, guard))
    }
}

/// Fetches `request.url`, trusting [`Tls::webpki`] for `https`. See the module docs.
pub async fn fetch(request: FetchRequest, guard: Guard<'_>) -> Result<FetchResponse, NetError> {
    fetch_with(request, guard, &Tls::webpki()).await
}

/// [`fetch`] with the given certificate authorities.
pub async fn fetch_with(
    request: FetchRequest,
    guard: Guard<'_>,
    tls: &Tls,
) -> Result<FetchResponse, NetError> {
    let FetchRequest {
        url,
        method,
        headers,
        body,
        timeout,
        max_body_bytes,
        max_redirects,
    } = request;
    let target = Target::parse(&url)?;
    let shown = target.url.to_string();
    let method = parse_method(&method, &shown)?;
    let headers = parse_headers(&headers, &shown)?;
    let exchange = Exchange {
        tls,
        guard,
        max_body_bytes,
        max_redirects,
        progress: Progress {
            url: RefCell::new(shown),
            stage: RefCell::new("starting".to_string()),
        },
    };
    let run = exchange.run(target, method, headers, body.map(Bytes::from));
    match tokio::time::timeout(timeout, run).await {
        Ok(result) => result,
        Err(_) => Err(NetError::Timeout {
            url: exchange.progress.url.take(),
            stage: exchange.progress.stage.take(),
            after: timeout,
        }),
    }
}

/// A parsed, checked http(s) URL.
struct Target {
    url: Url,
    /// As in [`Connect::host`].
    host: String,
    /// What is resolved: a DNS name, or the literal address.
    dial: Dial,
    port: u16,
    https: bool,
}

enum Dial {
    Name(String),
    Ip(IpAddr),
}

impl Target {
    fn parse(text: &str) -> Result<Target, NetError> {
        let invalid = |reason: String| NetError::InvalidUrl {
            url: preview(text),
            reason,
        };
        if text.len() > MAX_URL_BYTES {
            return Err(invalid(format!(
                "{} bytes long; the limit is {MAX_URL_BYTES}",
                text.len()
            )));
        }
        let url = Url::parse(text).map_err(|e| invalid(e.to_string()))?;
        Target::from_url(url).map_err(invalid)
    }

    fn from_url(url: Url) -> Result<Target, String> {
        let https = match url.scheme() {
            "http" => false,
            "https" => true,
            other => {
                return Err(format!(
                    "only http and https URLs can be fetched, not {other}:"
                ))
            }
        };
        if url.as_str().len() > MAX_URL_BYTES {
            return Err(format!(
                "{} bytes long; the limit is {MAX_URL_BYTES}",
                url.as_str().len()
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("credentials in the URL (user:password@) are not accepted; send an Authorization header".into());
        }
        let port = url.port_or_known_default().ok_or("no port")?;
        if port == 0 {
            return Err("port 0 cannot be connected to".into());
        }
        let (host, dial) = match url.host() {
            Some(url::Host::Domain(name)) => {
                // `example.com.` is `example.com`; the capability syntax has no trailing dot.
                let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
                if let Some(problem) = domain_problem(&name) {
                    return Err(format!("host {name:?}: {problem}"));
                }
                (name.clone(), Dial::Name(name))
            }
            Some(url::Host::Ipv4(v4)) => (v4.to_string(), Dial::Ip(IpAddr::V4(v4))),
            Some(url::Host::Ipv6(v6)) => match v6.to_ipv4_mapped() {
                // Written as IPv6, connected to as IPv4: name it the way the capability syntax does.
                Some(v4) => (v4.to_string(), Dial::Ip(IpAddr::V4(v4))),
                None => (format!("[{v6}]"), Dial::Ip(IpAddr::V6(v6))),
            },
            None => return Err("no host".into()),
        };
        Ok(Target {
            url,
            host,
            dial,
            port,
            https,
        })
    }

    /// `Host` header value: the host and any non-default port, as the URL writes them.
    fn authority(&self) -> &str {
        &self.url[Position::BeforeHost..Position::AfterPort]
    }

    fn host_resource(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The request target in origin form: path and query, never the fragment.
    fn origin_form(&self) -> &str {
        &self.url[Position::BeforePath..Position::AfterQuery]
    }
}

/// The same rule as the capability parser's, so every host we connect to can be named
/// by a capability.
fn domain_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("empty host name");
    }
    if name.len() > 253 {
        return Some("a host name is at most 253 bytes");
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Some("empty label in host name");
        }
        if label.len() > 63 {
            return Some("a host name label is at most 63 bytes");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Some("only letters, digits, '-' and '_' are allowed in a host name");
        }
    }
    None
}

fn preview(text: &str) -> String {
    const MAX: usize = 200;
    if text.len() <= MAX {
        return text.to_string();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

fn parse_method(text: &str, url: &str) -> Result<Method, NetError> {
    const STANDARD: [&str; 7] = ["DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"];
    let invalid = |reason: String| NetError::InvalidRequest {
        url: url.to_string(),
        reason,
    };
    let normalized = match STANDARD.iter().find(|m| m.eq_ignore_ascii_case(text)) {
        Some(standard) => (*standard).to_string(),
        None => text.to_string(),
    };
    let method = Method::from_bytes(normalized.as_bytes())
        .map_err(|_| invalid(format!("invalid method {text:?}")))?;
    // CONNECT turns the connection into a tunnel to somewhere no guard has seen.
    if method == Method::CONNECT || method == Method::TRACE {
        return Err(invalid(format!("method {method} is not allowed")));
    }
    Ok(method)
}

/// Request headers the caller may not set: we set them, or they are about the
/// connection (which is ours), or they would let a request claim another host.
const RESERVED_HEADERS: [&str; 10] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-connection",
    "expect",
];

fn parse_headers(headers: &[(String, String)], url: &str) -> Result<HeaderMap, NetError> {
    let invalid = |reason: String| NetError::InvalidRequest {
        url: url.to_string(),
        reason,
    };
    if headers.len() > MAX_REQUEST_HEADERS {
        return Err(invalid(format!(
            "{} headers; the limit is {MAX_REQUEST_HEADERS}",
            headers.len()
        )));
    }
    let total: usize = headers
        .iter()
        .map(|(name, value)| name.len() + value.len())
        .sum();
    if total > MAX_REQUEST_HEADER_BYTES {
        return Err(invalid(format!(
            "{total} bytes of headers; the limit is {MAX_REQUEST_HEADER_BYTES}"
        )));
    }
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let header_name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| invalid(format!("invalid header name {:?}", preview(name))))?;
        if RESERVED_HEADERS.contains(&header_name.as_str()) {
            return Err(invalid(format!(
                "header {header_name} is set by alos, not by the caller"
            )));
        }
        // Rejects CR, LF and NUL, so no header can smuggle another.
        let header_value = HeaderValue::from_str(value).map_err(|_| {
            invalid(format!(
                "header {header_name} has a value with control characters"
            ))
        })?;
        map.append(header_name, header_value);
    }
    if !map.contains_key(header::USER_AGENT) {
        map.insert(
            header::USER_AGENT,
            HeaderValue::from_static(concat!("alos/", env!("CARGO_PKG_VERSION"))),
        );
    }
    Ok(map)
}

/// What the fetch is doing, for the timeout message.
struct Progress {
    url: RefCell<String>,
    stage: RefCell<String>,
}

impl Progress {
    fn at(&self, stage: String) {
        *self.stage.borrow_mut() = stage;
    }
}

struct Exchange<'a> {
    tls: &'a Tls,
    guard: Guard<'a>,
    max_body_bytes: usize,
    max_redirects: u32,
    progress: Progress,
}

enum Reply {
    Redirect {
        status: StatusCode,
        location: String,
    },
    Final(FetchResponse),
}

impl Exchange<'_> {
    async fn run(
        &self,
        mut target: Target,
        mut method: Method,
        mut headers: HeaderMap,
        mut body: Option<Bytes>,
    ) -> Result<FetchResponse, NetError> {
        let first_url = target.url.to_string();
        let mut redirects: Vec<String> = Vec::new();
        let mut redirected_from: Option<String> = None;
        loop {
            *self.progress.url.borrow_mut() = target.url.to_string();
            let (stream, connect) = self.connect(&target, redirected_from.as_deref()).await?;
            let reply = if target.https {
                let stream = self.tls_handshake(stream, &target, &connect).await?;
                self.send(stream, &target, &method, &headers, body.clone())
                    .await?
            } else {
                self.send(stream, &target, &method, &headers, body.clone())
                    .await?
            };
            let (status, location) = match reply {
                Reply::Final(mut response) => {
                    response.redirects = redirects;
                    return Ok(response);
                }
                Reply::Redirect { status, location } => (status, location),
            };
            let from = target.url.to_string();
            let invalid = |reason: String| NetError::InvalidRedirect {
                from: from.clone(),
                location: preview(&location),
                reason,
            };
            let next_url = target
                .url
                .join(&location)
                .map_err(|e| invalid(e.to_string()))?;
            let next = Target::from_url(next_url).map_err(invalid)?;
            if redirects.len() as u64 >= u64::from(self.max_redirects) {
                let mut chain = vec![first_url];
                chain.extend(redirects);
                chain.push(next.url.to_string());
                return Err(NetError::TooManyRedirects {
                    url: chain[0].clone(),
                    limit: self.max_redirects,
                    chain,
                });
            }
            // As browsers do (Fetch standard, "HTTP-redirect fetch").
            let to_get = (status == StatusCode::SEE_OTHER && method != Method::HEAD)
                || ((status == StatusCode::MOVED_PERMANENTLY || status == StatusCode::FOUND)
                    && method == Method::POST);
            if to_get {
                method = Method::GET;
                body = None;
                for name in [
                    header::CONTENT_TYPE,
                    header::CONTENT_ENCODING,
                    header::CONTENT_LANGUAGE,
                    header::CONTENT_LOCATION,
                ] {
                    headers.remove(name);
                }
            }
            if target.url.origin() != next.url.origin() {
                for name in [
                    header::AUTHORIZATION,
                    header::PROXY_AUTHORIZATION,
                    header::COOKIE,
                ] {
                    headers.remove(name);
                }
            }
            redirects.push(next.url.to_string());
            redirected_from = Some(from);
            target = next;
        }
    }

    /// Resolves (unless the URL holds an address), guards and connects, in that order,
    /// one address at a time.
    async fn connect(
        &self,
        target: &Target,
        redirected_from: Option<&str>,
    ) -> Result<(TcpStream, Connect), NetError> {
        let url = target.url.to_string();
        let addrs = match &target.dial {
            Dial::Ip(ip) => vec![ip.to_canonical()],
            Dial::Name(name) => {
                self.progress.at(format!("resolving {name}"));
                let found = tokio::net::lookup_host((name.as_str(), target.port))
                    .await
                    .map_err(|e| NetError::Dns {
                        url: url.clone(),
                        host: name.clone(),
                        reason: e.to_string(),
                    })?;
                let mut addrs: Vec<IpAddr> = Vec::new();
                for addr in found.map(|a| a.ip().to_canonical()) {
                    if !addrs.contains(&addr) && addrs.len() < MAX_ADDRESSES {
                        addrs.push(addr);
                    }
                }
                if addrs.is_empty() {
                    return Err(NetError::Dns {
                        url,
                        host: name.clone(),
                        reason: "the name has no addresses".into(),
                    });
                }
                addrs
            }
        };
        let mut refused: Option<(Connect, String)> = None;
        let mut failures: Vec<String> = Vec::new();
        for addr in addrs {
            let connect = Connect {
                host: target.host.clone(),
                port: target.port,
                addr,
            };
            if let Err(reason) = (self.guard)(&connect) {
                refused.get_or_insert((connect, reason));
                continue;
            }
            self.progress.at(format!("connecting to {connect}"));
            match TcpStream::connect(SocketAddr::new(addr, target.port)).await {
                Ok(stream) => {
                    // Small requests go out at once; Nagle only adds latency here.
                    let _ = stream.set_nodelay(true);
                    return Ok((stream, connect));
                }
                Err(e) => failures.push(format!("{}: {e}", connect.addr_resource())),
            }
        }
        if let Some((connect, reason)) = refused {
            return Err(NetError::Refused {
                url,
                connect,
                reason,
                redirected_from: redirected_from.map(str::to_string),
            });
        }
        Err(NetError::Connect {
            url,
            host: target.host.clone(),
            port: target.port,
            reason: failures.join("; "),
        })
    }

    async fn tls_handshake(
        &self,
        stream: TcpStream,
        target: &Target,
        connect: &Connect,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, NetError> {
        let failed = |reason: String| NetError::Tls {
            url: target.url.to_string(),
            connect: connect.clone(),
            reason,
        };
        // SNI and certificate check use the URL's host, not the address we dialled.
        let server_name = match &target.dial {
            Dial::Name(name) => {
                ServerName::try_from(name.clone()).map_err(|e| failed(e.to_string()))?
            }
            Dial::Ip(ip) => ServerName::IpAddress(ip.to_canonical().into()),
        };
        self.progress
            .at(format!("in the TLS handshake with {connect}"));
        tokio_rustls::TlsConnector::from(self.tls.config.clone())
            .connect(server_name, stream)
            .await
            .map_err(|e| failed(e.to_string()))
    }

    /// One request/response on `stream`; a redirect's body is not read.
    async fn send<S>(
        &self,
        stream: S,
        target: &Target,
        method: &Method,
        headers: &HeaderMap,
        body: Option<Bytes>,
    ) -> Result<Reply, NetError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let url = target.url.to_string();
        let http_error = |e: hyper::Error| NetError::Http {
            url: url.clone(),
            reason: describe_hyper_error(&e),
        };
        let mut request = hyper::Request::builder()
            .method(method.clone())
            .uri(target.origin_form())
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| NetError::InvalidRequest {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        let host =
            HeaderValue::from_str(target.authority()).map_err(|e| NetError::InvalidRequest {
                url: url.clone(),
                reason: format!("host: {e}"),
            })?;
        request.headers_mut().insert(header::HOST, host);
        for (name, value) in headers {
            request.headers_mut().append(name.clone(), value.clone());
        }

        let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
            .max_headers(MAX_RESPONSE_HEADERS)
            .max_header_size(MAX_RESPONSE_HEADER_BYTES)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(http_error)?;
        let work = async {
            self.progress.at(format!(
                "waiting for the response from {}",
                target.host_resource()
            ));
            let response = sender.send_request(request).await.map_err(http_error)?;
            let status = response.status();
            if is_redirect(status) {
                if let Some(location) = response.headers().get(header::LOCATION) {
                    let location = location.to_str().map_err(|_| NetError::InvalidRedirect {
                        from: url.clone(),
                        location: String::from_utf8_lossy(location.as_bytes()).into_owned(),
                        reason: "the Location header is not valid text".into(),
                    })?;
                    return Ok(Reply::Redirect {
                        status,
                        location: location.to_string(),
                    });
                }
            }
            let headers = response
                .headers()
                .iter()
                .map(|(name, value)| {
                    (
                        name.as_str().to_string(),
                        String::from_utf8_lossy(value.as_bytes()).into_owned(),
                    )
                })
                .collect();
            self.progress.at(format!(
                "reading the response body from {}",
                target.host_resource()
            ));
            let mut incoming = response.into_body();
            let mut body = Vec::new();
            let mut truncated = false;
            while let Some(frame) = incoming.frame().await {
                let Ok(data) = frame.map_err(http_error)?.into_data() else {
                    continue; // trailers
                };
                let room = self.max_body_bytes - body.len();
                if data.len() > room {
                    body.extend_from_slice(&data[..room]);
                    truncated = true;
                    break;
                }
                body.extend_from_slice(&data);
            }
            Ok(Reply::Final(FetchResponse {
                status: status.as_u16(),
                headers,
                body,
                truncated,
                final_url: url.clone(),
                redirects: Vec::new(),
            }))
        };
        drive(connection, work).await
    }
}

fn is_redirect(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

/// Runs hyper's connection future alongside the exchange, inside this future, so
/// the deadline (or the caller dropping the fetch) tears the socket down with it;
/// a spawned connection task would outlive both.
async fn drive<C, W>(connection: C, work: W) -> Result<Reply, NetError>
where
    C: Future<Output = hyper::Result<()>>,
    W: Future<Output = Result<Reply, NetError>>,
{
    let mut connection = pin!(connection);
    let mut work = pin!(work);
    let mut connection_done = false;
    loop {
        tokio::select! {
            result = &mut work => return result,
            // Its errors reach the exchange too, which reports them.
            _ = &mut connection, if !connection_done => connection_done = true,
        }
    }
}

fn describe_hyper_error(error: &hyper::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    // hyper reports both too many and too long headers as "message head is too large".
    if error.is_parse() && text.contains("too large") {
        text.push_str(&format!(
            " (the limits are {MAX_RESPONSE_HEADERS} response headers and {MAX_RESPONSE_HEADER_BYTES} bytes)"
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    use std::time::Instant;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    #[test]
    fn a_request_debug_print_shows_no_header_values() {
        let mut request = FetchRequest::get("http://127.0.0.1/");
        request.headers.push(("Authorization".into(), "Bearer sk-secret-1".into()));
        let shown = format!("{request:?}");
        assert!(shown.contains("Authorization") && !shown.contains("sk-secret-1"), "{shown}");
    }

    /// A request as the test server saw it.
    #[derive(Debug, Clone)]
    struct Seen {
        method: String,
        target: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Seen {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.as_str())
        }
    }

    enum Answer {
        /// Raw bytes written back, then the connection is closed.
        Raw(Vec<u8>),
        /// Headers and the start of a body, then nothing, forever.
        StallAfter(Vec<u8>),
        /// Read the request, never answer.
        Hang,
    }

    fn answer(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Answer {
        let mut out = format!(
            "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n",
            body.len()
        );
        for (name, value) in headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(body);
        Answer::Raw(bytes)
    }

    fn redirect(status: u16, location: &str) -> Answer {
        answer(status, &[("location", location)], b"")
    }

    struct Server {
        addr: SocketAddr,
        seen: Arc<Mutex<Vec<Seen>>>,
        connections: Arc<AtomicUsize>,
    }

    impl Server {
        fn port(&self) -> u16 {
            self.addr.port()
        }
        fn url(&self, path: &str) -> String {
            format!("http://127.0.0.1:{}{path}", self.port())
        }
        fn seen(&self) -> Vec<Seen> {
            self.seen.lock().unwrap().clone()
        }
    }

    /// A minimal HTTP/1.1 responder on 127.0.0.1:0: one request per connection.
    async fn serve(handler: impl Fn(&Seen) -> Answer + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let handler = Arc::new(handler);
        let (seen2, connections2) = (seen.clone(), connections.clone());
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                connections2.fetch_add(1, Ordering::SeqCst);
                let (seen, handler) = (seen2.clone(), handler.clone());
                tokio::spawn(async move {
                    let Some(request) = read_request(&mut stream).await else {
                        return;
                    };
                    seen.lock().unwrap().push(request.clone());
                    match handler(&request) {
                        Answer::Raw(bytes) => {
                            let _ = stream.write_all(&bytes).await;
                            let _ = stream.shutdown().await;
                        }
                        Answer::StallAfter(bytes) => {
                            let _ = stream.write_all(&bytes).await;
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                        }
                        Answer::Hang => tokio::time::sleep(Duration::from_secs(3600)).await,
                    }
                });
            }
        });
        Server {
            addr,
            seen,
            connections,
        }
    }

    async fn read_request<S: AsyncRead + Unpin>(stream: &mut S) -> Option<Seen> {
        let mut buf = Vec::new();
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
        let mut lines = head.split("\r\n");
        let mut request_line = lines.next().unwrap().split(' ');
        let method = request_line.next().unwrap().to_string();
        let target = request_line.next().unwrap().to_string();
        let headers: Vec<(String, String)> = lines
            .map(|line| {
                let (name, value) = line.split_once(':').unwrap();
                (name.trim().to_ascii_lowercase(), value.trim().to_string())
            })
            .collect();
        let length: usize = headers
            .iter()
            .find(|(name, _)| name == "content-length")
            .map(|(_, value)| value.parse().unwrap())
            .unwrap_or(0);
        let mut body = buf[head_end + 4..].to_vec();
        while body.len() < length {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
        Some(Seen {
            method,
            target,
            headers,
            body,
        })
    }

    fn allow_all(_: &Connect) -> Result<(), String> {
        Ok(())
    }

    /// A guard that records what it was shown and allows only the listed ports.
    struct Recorder {
        seen: RefCell<Vec<Connect>>,
        ports: Vec<u16>,
    }

    impl Recorder {
        fn allowing(ports: &[u16]) -> Recorder {
            Recorder {
                seen: RefCell::new(Vec::new()),
                ports: ports.to_vec(),
            }
        }
        fn check(&self, connect: &Connect) -> Result<(), String> {
            self.seen.borrow_mut().push(connect.clone());
            if self.ports.contains(&connect.port) {
                Ok(())
            } else {
                Err(format!("no capability net:{}", connect.host_resource()))
            }
        }
        fn seen(&self) -> Vec<Connect> {
            self.seen.borrow().clone()
        }
    }

    /// Asserts nobody connected to `listener` (a connect to loopback completes in the
    /// kernel's backlog before `connect()` returns, so a short wait suffices).
    async fn assert_no_connection(listener: &TcpListener) {
        let accepted = tokio::time::timeout(Duration::from_millis(100), listener.accept()).await;
        assert!(accepted.is_err(), "the refused server got a connection");
    }

    #[tokio::test]
    async fn get_sends_headers_and_returns_the_response() {
        let server =
            serve(|_| answer(201, &[("x-reply", "yes"), ("x-reply", "again")], b"hello")).await;
        let mut request = FetchRequest::get(server.url("/a/b?q=1&r=%20#frag"));
        request.headers.push(("X-Custom".into(), "value 1".into()));
        request.headers.push(("Accept".into(), "text/plain".into()));
        let response = fetch(request, &allow_all).await.unwrap();

        assert_eq!(response.status, 201);
        assert_eq!(response.body, b"hello");
        assert!(!response.truncated);
        assert_eq!(response.header("X-Reply"), Some("yes"));
        assert_eq!(
            response
                .headers
                .iter()
                .filter(|(name, _)| name == "x-reply")
                .count(),
            2
        );
        assert_eq!(response.final_url, server.url("/a/b?q=1&r=%20#frag"));
        assert!(response.redirects.is_empty());

        let seen = server.seen();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].method, "GET");
        assert_eq!(
            seen[0].target, "/a/b?q=1&r=%20",
            "the fragment is never sent"
        );
        assert_eq!(
            seen[0].header("host"),
            Some(format!("127.0.0.1:{}", server.port()).as_str())
        );
        assert_eq!(seen[0].header("x-custom"), Some("value 1"));
        assert_eq!(seen[0].header("accept"), Some("text/plain"));
        assert!(seen[0].header("user-agent").unwrap().starts_with("alos/"));
    }

    #[tokio::test]
    async fn post_sends_the_body() {
        let server = serve(|seen| answer(200, &[], &seen.body)).await;
        let mut request = FetchRequest::get(server.url("/submit"));
        request.method = "post".into();
        request
            .headers
            .push(("content-type".into(), "application/json".into()));
        request.body = Some(br#"{"a":1}"#.to_vec());
        let response = fetch(request, &allow_all).await.unwrap();

        assert_eq!(response.body, br#"{"a":1}"#);
        let seen = &server.seen()[0];
        assert_eq!(seen.method, "POST");
        assert_eq!(seen.header("content-length"), Some("7"));
        assert_eq!(seen.header("content-type"), Some("application/json"));
        assert_eq!(seen.body, br#"{"a":1}"#);
    }

    #[tokio::test]
    async fn the_guard_sees_the_address_actually_used() {
        let server =
            serve(|seen| answer(200, &[], seen.header("host").unwrap_or("").as_bytes())).await;
        let port = server.port();
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);

        let guard = Recorder::allowing(&[port]);
        fetch(
            FetchRequest::get(format!("http://127.0.0.1:{port}/")),
            &|c| guard.check(c),
        )
        .await
        .unwrap();
        assert_eq!(
            guard.seen(),
            vec![Connect {
                host: "127.0.0.1".into(),
                port,
                addr: loopback,
            }]
        );

        // A name: the guard sees the name as written (lower-cased) and the address
        // it resolved to; the Host header keeps the name.
        let guard = Recorder::allowing(&[port]);
        let response = fetch(
            FetchRequest::get(format!("http://LocalHost.:{port}/")),
            &|c| guard.check(c),
        )
        .await
        .unwrap();
        let seen = guard.seen();
        assert!(seen
            .iter()
            .all(|c| c.host == "localhost" && c.port == port && c.addr.is_loopback()));
        assert_eq!(
            seen.last().unwrap().addr,
            loopback,
            "connected via 127.0.0.1"
        );
        assert_eq!(
            seen.last().unwrap().host_resource(),
            format!("localhost:{port}")
        );
        assert_eq!(
            seen.last().unwrap().addr_resource(),
            format!("127.0.0.1:{port}")
        );
        assert!(seen.last().unwrap().is_internal());
        assert_eq!(response.body, format!("localhost.:{port}").as_bytes());

        // An IPv4-mapped IPv6 literal is named and connected to as the IPv4 address.
        let guard = Recorder::allowing(&[port]);
        fetch(
            FetchRequest::get(format!("http://[::ffff:127.0.0.1]:{port}/")),
            &|c| guard.check(c),
        )
        .await
        .unwrap();
        assert_eq!(guard.seen()[0].host, "127.0.0.1");
        assert_eq!(guard.seen()[0].addr, loopback);
    }

    #[tokio::test]
    async fn a_refused_connect_sends_nothing() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        for url in [
            format!("http://127.0.0.1:{port}/x"),
            format!("http://localhost:{port}/x"),
        ] {
            let guard = Recorder::allowing(&[]);
            let err = fetch(FetchRequest::get(url.clone()), &|c| guard.check(c))
                .await
                .unwrap_err();
            let NetError::Refused {
                url: refused_url,
                connect,
                reason,
                redirected_from,
            } = &err
            else {
                panic!("expected a refusal, got {err}");
            };
            assert_eq!(refused_url, &url);
            assert_eq!(connect.port, port);
            assert!(connect.addr.is_loopback());
            assert!(reason.starts_with("no capability net:"));
            assert_eq!(redirected_from, &None);
            let message = err.to_string();
            assert!(
                message.contains(&url) && message.contains("no capability"),
                "{message}"
            );
            assert_no_connection(&listener).await;
        }
    }

    /// The kernel's rule, as the issue states it: a name that resolves to an internal
    /// address needs a capability naming that address too.
    #[tokio::test]
    async fn a_name_resolving_to_loopback_needs_the_address_allowed() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let kernel = |held: Vec<String>| {
            move |c: &Connect| -> Result<(), String> {
                for resource in [c.host_resource()]
                    .into_iter()
                    .chain(c.is_internal().then(|| c.addr_resource()))
                {
                    if !held.contains(&resource) {
                        return Err(format!("no capability net:{resource}"));
                    }
                }
                Ok(())
            }
        };
        let name_only = kernel(vec![format!("localhost:{port}")]);
        let err = fetch(
            FetchRequest::get(format!("http://localhost:{port}/")),
            &name_only,
        )
        .await
        .unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("no capability net:127.0.0.1:{port}")),
            "{err}"
        );
        assert_no_connection(&listener).await;

        let both = kernel(vec![
            format!("localhost:{port}"),
            format!("127.0.0.1:{port}"),
        ]);
        let mut request = FetchRequest::get(format!("http://localhost:{port}/"));
        request.timeout = Duration::from_millis(200);
        let fetched = fetch(request, &both);
        let (result, accepted) = tokio::join!(fetched, listener.accept());
        assert!(accepted.is_ok(), "allowed, so it connected");
        assert!(
            matches!(result, Err(NetError::Timeout { .. })),
            "nobody answers here"
        );
    }

    #[tokio::test]
    async fn a_refused_redirect_fails_naming_the_target() {
        let denied = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let denied_port = denied.local_addr().unwrap().port();
        let target = format!("http://127.0.0.1:{denied_port}/inner");
        let target2 = target.clone();
        let server = serve(move |_| redirect(302, &target2)).await;
        let guard = Recorder::allowing(&[server.port()]);

        let err = fetch(FetchRequest::get(server.url("/start")), &|c| guard.check(c))
            .await
            .unwrap_err();
        match &err {
            NetError::Refused {
                url,
                connect,
                redirected_from,
                ..
            } => {
                assert_eq!(url, &target);
                assert_eq!(connect.port, denied_port);
                assert_eq!(
                    redirected_from.as_deref(),
                    Some(server.url("/start").as_str())
                );
            }
            other => panic!("expected a refusal, got {other}"),
        }
        assert!(err.to_string().contains(&target), "{err}");
        assert_eq!(guard.seen().len(), 2, "checked once per hop");
        assert_no_connection(&denied).await;
    }

    #[tokio::test]
    async fn redirect_chains_are_followed_up_to_the_limit() {
        // /0 -> /1 -> /2 -> /3 (200)
        let server = serve(|seen| {
            let n: u32 = seen.target[1..].parse().unwrap();
            if n < 3 {
                redirect(301, &format!("/{}", n + 1))
            } else {
                answer(200, &[], b"done")
            }
        })
        .await;
        let guard = Recorder::allowing(&[server.port()]);
        let mut request = FetchRequest::get(server.url("/0"));
        request.max_redirects = 3;
        let response = fetch(request.clone(), &|c| guard.check(c)).await.unwrap();
        assert_eq!(response.body, b"done");
        assert_eq!(response.final_url, server.url("/3"));
        assert_eq!(
            response.redirects,
            vec![server.url("/1"), server.url("/2"), server.url("/3")]
        );
        assert_eq!(guard.seen().len(), 4, "every hop is guarded");

        request.max_redirects = 2;
        let err = fetch(request, &allow_all).await.unwrap_err();
        match &err {
            NetError::TooManyRedirects { limit, chain, .. } => {
                assert_eq!(*limit, 2);
                assert_eq!(chain.len(), 4);
                assert_eq!(chain.last().unwrap(), &server.url("/3"));
            }
            other => panic!("expected too many redirects, got {other}"),
        }
        assert!(err.to_string().contains("limit is 2"), "{err}");
        let served = server.seen().len();
        assert_eq!(served, 4 + 3, "the hop past the limit is not requested");
        assert_eq!(
            server.connections.load(Ordering::SeqCst),
            served,
            "a fresh connection per request, none pooled"
        );
    }

    #[tokio::test]
    async fn cross_origin_redirects_drop_credentials() {
        let other = serve(|_| answer(200, &[], b"other")).await;
        let other_url = other.url("/landing");
        let server = serve(move |seen| match seen.target.as_str() {
            "/same" => redirect(307, "/cross"),
            "/cross" => redirect(307, &other_url),
            _ => answer(404, &[], b""),
        })
        .await;
        let mut request = FetchRequest::get(server.url("/same"));
        request.headers = vec![
            ("Authorization".into(), "Bearer secret".into()),
            ("Cookie".into(), "session=1".into()),
            ("Proxy-Authorization".into(), "Basic x".into()),
            ("X-Trace".into(), "t1".into()),
        ];
        let response = fetch(request, &allow_all).await.unwrap();
        assert_eq!(response.body, b"other");

        // Same origin: everything kept.
        for seen in server.seen() {
            assert_eq!(
                seen.header("authorization"),
                Some("Bearer secret"),
                "{seen:?}"
            );
            assert_eq!(seen.header("cookie"), Some("session=1"));
            assert_eq!(seen.header("x-trace"), Some("t1"));
        }
        // Another port is another origin: credentials dropped, the rest kept.
        let seen = &other.seen()[0];
        assert_eq!(seen.header("authorization"), None);
        assert_eq!(seen.header("cookie"), None);
        assert_eq!(seen.header("proxy-authorization"), None);
        assert_eq!(seen.header("x-trace"), Some("t1"));
        assert_eq!(
            seen.header("host"),
            Some(format!("127.0.0.1:{}", other.port()).as_str())
        );
    }

    #[tokio::test]
    async fn redirect_methods_follow_the_fetch_rules() {
        let server = serve(|seen| match seen.target.as_str() {
            "/see-other" => redirect(303, "/end"),
            "/temporary" => redirect(307, "/end"),
            _ => answer(
                200,
                &[],
                format!("{} {}", seen.method, seen.body.len()).as_bytes(),
            ),
        })
        .await;
        let post = |path: &str| {
            let mut request = FetchRequest::get(server.url(path));
            request.method = "POST".into();
            request
                .headers
                .push(("content-type".into(), "text/plain".into()));
            request.body = Some(b"payload".to_vec());
            request
        };
        let response = fetch(post("/see-other"), &allow_all).await.unwrap();
        assert_eq!(response.body, b"GET 0");
        assert_eq!(server.seen()[1].header("content-type"), None);

        let response = fetch(post("/temporary"), &allow_all).await.unwrap();
        assert_eq!(response.body, b"POST 7");
        assert_eq!(server.seen()[3].body, b"payload");
    }

    #[tokio::test]
    async fn bad_redirect_targets_are_errors() {
        let server = serve(|seen| match seen.target.as_str() {
            "/ftp" => redirect(302, "ftp://127.0.0.1/file"),
            "/creds" => redirect(302, "http://user:pw@127.0.0.1/"),
            _ => redirect(302, "http://[::1"),
        })
        .await;
        for (path, needle) in [
            ("/ftp", "ftp:"),
            ("/creds", "credentials"),
            ("/broken", "invalid"),
        ] {
            let err = fetch(FetchRequest::get(server.url(path)), &allow_all)
                .await
                .unwrap_err();
            assert!(matches!(err, NetError::InvalidRedirect { .. }), "{err}");
            assert!(err.to_string().contains(needle), "{err}");
        }
    }

    #[tokio::test]
    async fn the_body_is_capped() {
        let big = vec![b'x'; 10_000];
        let big2 = big.clone();
        let server = serve(move |seen| match seen.target.as_str() {
            "/chunked" => {
                let mut raw = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
                for _ in 0..10 {
                    raw.extend_from_slice(b"3e8\r\n");
                    raw.extend_from_slice(&[b'y'; 1000]);
                    raw.extend_from_slice(b"\r\n");
                }
                raw.extend_from_slice(b"0\r\n\r\n");
                Answer::Raw(raw)
            }
            _ => answer(200, &[], &big2),
        })
        .await;
        let mut request = FetchRequest::get(server.url("/"));
        request.max_body_bytes = 1000;
        let response = fetch(request.clone(), &allow_all).await.unwrap();
        assert!(response.truncated);
        assert_eq!(response.body, &big[..1000]);

        request.max_body_bytes = 10_000;
        let response = fetch(request.clone(), &allow_all).await.unwrap();
        assert!(!response.truncated, "exactly at the cap is complete");
        assert_eq!(response.body.len(), 10_000);

        request.url = server.url("/chunked");
        request.max_body_bytes = 2500;
        let response = fetch(request.clone(), &allow_all).await.unwrap();
        assert!(response.truncated);
        assert_eq!(response.body, vec![b'y'; 2500]);

        request.max_body_bytes = 0;
        let response = fetch(request, &allow_all).await.unwrap();
        assert!(response.truncated && response.body.is_empty());
    }

    #[tokio::test]
    async fn response_headers_are_bounded() {
        let server = serve(|seen| {
            let mut raw = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n".to_vec();
            match seen.target.as_str() {
                "/many" => (0..MAX_RESPONSE_HEADERS + 1)
                    .for_each(|i| raw.extend_from_slice(format!("x-{i}: v\r\n").as_bytes())),
                _ => raw.extend_from_slice(
                    format!("x-big: {}\r\n", "v".repeat(MAX_RESPONSE_HEADER_BYTES)).as_bytes(),
                ),
            }
            raw.extend_from_slice(b"\r\n");
            Answer::Raw(raw)
        })
        .await;
        for path in ["/many", "/big"] {
            let err = fetch(FetchRequest::get(server.url(path)), &allow_all)
                .await
                .unwrap_err();
            assert!(matches!(err, NetError::Http { .. }), "{err}");
            assert!(err.to_string().contains("too large"), "{err}");
        }
    }

    #[tokio::test]
    async fn a_hanging_server_times_out() {
        let server = serve(|seen| match seen.target.as_str() {
            "/hang" => Answer::Hang,
            _ => Answer::StallAfter(
                b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial".to_vec(),
            ),
        })
        .await;
        for (path, stage) in [
            ("/hang", "waiting for the response"),
            ("/stall", "reading the response body"),
        ] {
            let mut request = FetchRequest::get(server.url(path));
            request.timeout = Duration::from_millis(300);
            let started = Instant::now();
            let err = fetch(request, &allow_all).await.unwrap_err();
            assert!(started.elapsed() < Duration::from_secs(5));
            match &err {
                NetError::Timeout {
                    url,
                    stage: what,
                    after,
                } => {
                    assert_eq!(url, &server.url(path));
                    assert!(what.contains(stage), "{what}");
                    assert_eq!(*after, Duration::from_millis(300));
                }
                other => panic!("expected a timeout, got {other}"),
            }
        }
    }

    #[tokio::test]
    async fn bad_requests_fail_before_any_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let base = format!("http://127.0.0.1:{port}/");
        let calls = Cell::new(0);
        let guard = |_: &Connect| -> Result<(), String> {
            calls.set(calls.get() + 1);
            Ok(())
        };
        let with = |edit: &dyn Fn(&mut FetchRequest)| {
            let mut request = FetchRequest::get(base.clone());
            edit(&mut request);
            request
        };
        let cases: Vec<(FetchRequest, &str)> = vec![
            (
                with(&|r| r.url = "ftp://127.0.0.1/".into()),
                "only http and https",
            ),
            (
                with(&|r| r.url = "file:///etc/passwd".into()),
                "only http and https",
            ),
            (
                with(&|r| r.url = format!("http://user:pw@127.0.0.1:{port}/")),
                "credentials",
            ),
            (
                with(&|r| r.url = format!("http://user@127.0.0.1:{port}/")),
                "credentials",
            ),
            (with(&|r| r.url = "http://127.0.0.1:0/".into()), "port 0"),
            (with(&|r| r.url = "/relative".into()), "relative URL"),
            (
                with(&|r| r.url = "http://exa*mple.com/".into()),
                "only letters",
            ),
            (
                with(&|r| r.url = format!("http://127.0.0.1/{}", "a".repeat(MAX_URL_BYTES))),
                "limit",
            ),
            (with(&|r| r.method = "CONNECT".into()), "not allowed"),
            (with(&|r| r.method = "GE T".into()), "invalid method"),
            (
                with(&|r| r.headers = vec![("Host".into(), "internal".into())]),
                "set by alos",
            ),
            (
                with(&|r| r.headers = vec![("Transfer-Encoding".into(), "chunked".into())]),
                "set by alos",
            ),
            (
                with(&|r| r.headers = vec![("bad name".into(), "v".into())]),
                "invalid header name",
            ),
            (
                with(&|r| r.headers = vec![("x".into(), "a\r\nInjected: 1".into())]),
                "control characters",
            ),
            (
                with(&|r| {
                    r.headers = (0..=MAX_REQUEST_HEADERS)
                        .map(|i| (format!("x-{i}"), "v".into()))
                        .collect()
                }),
                "limit",
            ),
        ];
        for (request, needle) in cases {
            let err = fetch(request, &guard).await.unwrap_err();
            assert!(
                matches!(
                    err,
                    NetError::InvalidUrl { .. } | NetError::InvalidRequest { .. }
                ),
                "{err}"
            );
            assert!(err.to_string().contains(needle), "{needle}: {err}");
        }
        assert_eq!(calls.get(), 0);
        assert_no_connection(&listener).await;
    }

    #[tokio::test]
    async fn a_closed_port_is_a_connect_error() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let err = fetch(
            FetchRequest::get(format!("http://127.0.0.1:{port}/")),
            &allow_all,
        )
        .await
        .unwrap_err();
        assert!(matches!(err, NetError::Connect { .. }), "{err}");
        assert!(
            err.to_string().contains(&format!("127.0.0.1:{port}")),
            "{err}"
        );
    }

    #[test]
    fn internal_addresses() {
        let internal = [
            "127.0.0.1",
            "127.255.0.9",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "192.0.0.8",
            "198.18.0.1",
            "::",
            "::1",
            "fc00::1",
            "fdff::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "2002:c0a8:0101::1",
        ];
        let external = [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "172.15.255.255",
            "100.63.255.255",
            "100.128.0.0",
            "192.169.0.1",
            "169.253.0.1",
            "2606:4700:4700::1111",
            "2001:4860:4860::8888",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:0808:0808::1",
        ];
        for text in internal {
            assert!(is_internal(text.parse().unwrap()), "{text} is internal");
        }
        for text in external {
            assert!(
                !is_internal(text.parse().unwrap()),
                "{text} is not internal"
            );
        }
    }

    mod tls {
        use super::*;
        use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
        use tokio_rustls::TlsAcceptor;

        /// An https server on 127.0.0.1 with a self-signed certificate for `localhost`,
        /// recording the SNI each handshake carried.
        async fn serve_tls() -> (u16, Vec<u8>, Arc<Mutex<Vec<Option<String>>>>) {
            let certified =
                rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
            let cert_der = certified.cert.der().to_vec();
            let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
                certified.signing_key.serialize_der(),
            ));
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(vec![CertificateDer::from(cert_der.clone())], key)
                .unwrap();
            let acceptor = TlsAcceptor::from(Arc::new(config));
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let snis = Arc::new(Mutex::new(Vec::new()));
            let snis2 = snis.clone();
            tokio::spawn(async move {
                loop {
                    let (stream, _) = listener.accept().await.unwrap();
                    let (acceptor, snis) = (acceptor.clone(), snis2.clone());
                    tokio::spawn(async move {
                        let Ok(mut stream) = acceptor.accept(stream).await else {
                            return;
                        };
                        snis.lock()
                            .unwrap()
                            .push(stream.get_ref().1.server_name().map(str::to_string));
                        if let Some(seen) = read_request(&mut stream).await {
                            let body = format!("secure {}", seen.header("host").unwrap_or(""));
                            if let Answer::Raw(bytes) = answer(200, &[], body.as_bytes()) {
                                let _ = stream.write_all(&bytes).await;
                                let _ = stream.shutdown().await;
                            }
                        }
                    });
                }
            });
            (port, cert_der, snis)
        }

        #[tokio::test]
        async fn https_uses_the_url_name_for_sni_and_the_checked_address_for_the_socket() {
            let (port, cert, snis) = serve_tls().await;
            let tls = Tls::with_roots_der(&[cert]).unwrap();
            let guard = Recorder::allowing(&[port]);
            let response = fetch_with(
                FetchRequest::get(format!("https://localhost:{port}/")),
                &|c| guard.check(c),
                &tls,
            )
            .await
            .unwrap();
            assert_eq!(response.body, format!("secure localhost:{port}").as_bytes());
            assert_eq!(
                guard.seen().last().unwrap().addr,
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            );
            assert_eq!(
                snis.lock().unwrap().as_slice(),
                &[Some("localhost".to_string())]
            );
        }

        #[tokio::test]
        async fn certificate_problems_are_tls_errors() {
            let (port, cert, _) = serve_tls().await;
            // The certificate names localhost, not the address.
            let tls = Tls::with_roots_der(&[cert]).unwrap();
            let err = fetch_with(
                FetchRequest::get(format!("https://127.0.0.1:{port}/")),
                &allow_all,
                &tls,
            )
            .await
            .unwrap_err();
            assert!(matches!(err, NetError::Tls { .. }), "{err}");
            assert!(
                err.to_string().contains(&format!("127.0.0.1:{port}")),
                "{err}"
            );

            // A self-signed certificate is not trusted by the public roots.
            let err = fetch(
                FetchRequest::get(format!("https://localhost:{port}/")),
                &allow_all,
            )
            .await
            .unwrap_err();
            assert!(matches!(err, NetError::Tls { .. }), "{err}");
            assert!(err.to_string().contains("certificate"), "{err}");
        }

        #[test]
        fn bad_roots_are_rejected() {
            let err = Tls::with_roots_der(&[b"not a certificate".to_vec()]).unwrap_err();
            assert!(matches!(err, NetError::TlsRoots(_)), "{err}");
        }
    }
}
