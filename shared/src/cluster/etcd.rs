//! The etcd backend: etcd's v3 API through its JSON gateway over HTTP/1.1.
//!
//! Why the gateway and not gRPC: the hook is a short-lived process that
//! makes one or two calls per container start. A JSON POST over a plain TCP
//! connection costs one round trip and no HTTP/2 or protobuf machinery, so
//! the hook starts no faster or slower for linking it.
//!
//! Calls and time limits: one call is one POST. Endpoints are tried in
//! order, starting with the one that answered last; the next one is tried
//! when an endpoint cannot be connected to (about 1 s each at most) or, for
//! calls that change nothing, when it fails in any way short of answering.
//! The whole call, every endpoint included, ends within the configured
//! timeout (3 s by default): a hook never hangs on a dead cluster.
//!
//! Watches ([`Etcd::watch`]) are long-lived streams. They are read with no
//! time limit, but the connection has TCP keep-alive probes, so a watch
//! ends (with an error) when etcd dies, restarts or becomes unreachable, and
//! the caller re-lists and watches again.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv6Addr, Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;

use super::wire::{self, WatchLine};
use super::{Event, Kv, Listing, Store, StoreConfig, DEFAULT_TIMEOUT};
use crate::error::{Error, Result};

/// Time to connect to one endpoint before trying the next.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// etcd's client port when a URL names none.
pub const DEFAULT_PORT: u16 = 2379;

/// Largest answer read from etcd (a range over a big prefix).
const MAX_BODY: u64 = 256 << 20;

/// TCP keep-alive of watch connections: first probe after this much
/// silence, then every `KEEPALIVE_INTERVAL`, giving up after
/// `KEEPALIVE_PROBES` unanswered ones (a dead peer is noticed in ~25 s).
const KEEPALIVE_IDLE_SECS: i32 = 10;
const KEEPALIVE_INTERVAL_SECS: i32 = 5;
const KEEPALIVE_PROBES: i32 = 3;

/// What a message says to check when etcd cannot be reached, unless
/// [`Etcd::set_config_hint`] names the actual file.
const DEFAULT_HINT: &str = "check `store` in /etc/wirehook/config.json";

/// One etcd client endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Endpoint {
    https: bool,
    /// Host as written in a URL (IPv6 literals in brackets).
    host: String,
    port: u16,
    /// `http://host:port`.
    url: String,
}

impl Endpoint {
    fn new(https: bool, host: String, port: u16) -> Endpoint {
        let url = format!("{}://{host}:{port}", if https { "https" } else { "http" });
        Endpoint {
            https,
            host,
            port,
            url,
        }
    }

    /// The host without IPv6 brackets (for resolving and TLS names).
    fn bare_host(&self) -> &str {
        self.host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(&self.host)
    }
}

/// A client for one etcd cluster. Cheap to share between threads; calls
/// reuse pooled connections.
pub struct Etcd {
    endpoints: Vec<Endpoint>,
    urls: Vec<String>,
    agent: ureq::Agent,
    tls: Option<Arc<rustls::ClientConfig>>,
    timeout: Duration,
    /// Index of the endpoint that answered last: tried first next time.
    preferred: AtomicUsize,
    hint: String,
}

impl std::fmt::Debug for Etcd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Etcd")
            .field("endpoints", &self.urls)
            .field("tls", &self.tls.is_some())
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// How one call behaves.
struct Call {
    path: &'static str,
    /// Safe to send again to another endpoint after a failure mid-way
    /// (reads, keep-alives). Changes are only retried when the connection
    /// could not even be made.
    retry_any: bool,
}

const RANGE: Call = Call {
    path: "/v3/kv/range",
    retry_any: true,
};
const TXN: Call = Call {
    path: "/v3/kv/txn",
    retry_any: false,
};
const PUT: Call = Call {
    path: "/v3/kv/put",
    retry_any: false,
};
const DELETE_RANGE: Call = Call {
    path: "/v3/kv/deleterange",
    retry_any: false,
};
const COMPACTION: Call = Call {
    path: "/v3/kv/compaction",
    retry_any: false,
};
const LEASE_GRANT: Call = Call {
    path: "/v3/lease/grant",
    retry_any: false,
};
const LEASE_KEEPALIVE: Call = Call {
    path: "/v3/lease/keepalive",
    retry_any: true,
};
const LEASE_REVOKE: Call = Call {
    path: "/v3/lease/revoke",
    retry_any: true,
};
const WATCH_PATH: &str = "/v3/watch";

/// An answer with its HTTP status, from the endpoint at `endpoint`.
struct Answer {
    endpoint: usize,
    status: u16,
    body: Vec<u8>,
}

/// Parses the `url` of a [`StoreConfig`]: `etcd://HOST[:PORT][,HOST[:PORT]...]`
/// (`etcds://` or TLS files in the config for https; `http://` and
/// `https://` are accepted as well, also per endpoint).
fn parse_endpoints(url: &str, tls: bool) -> std::result::Result<Vec<Endpoint>, String> {
    fn scheme(s: &str) -> Option<(&str, &str)> {
        let (scheme, rest) = s.split_once("://")?;
        Some((scheme, rest))
    }
    fn https_of(scheme: &str) -> std::result::Result<bool, String> {
        match scheme {
            "etcd" | "http" => Ok(false),
            "etcds" | "https" => Ok(true),
            other => Err(format!("unknown scheme {other:?}")),
        }
    }
    let url = url.trim();
    let (first_scheme, rest) = scheme(url).ok_or("no scheme")?;
    let default_https = https_of(first_scheme)?;
    let mut out: Vec<Endpoint> = Vec::new();
    for part in rest.split(',') {
        let part = part.trim();
        let (https, hostport) = match scheme(part) {
            Some((s, r)) => (https_of(s)?, r),
            None => (default_https, part),
        };
        let hostport = hostport.strip_suffix('/').unwrap_or(hostport);
        if hostport.is_empty() {
            return Err("empty endpoint".into());
        }
        if hostport.contains(['/', '?', '#', '@']) {
            return Err(format!("{hostport:?}: only HOST:PORT, no path or user"));
        }
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (addr, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("{hostport:?}: unclosed '['"))?;
            addr.parse::<Ipv6Addr>()
                .map_err(|_| format!("{hostport:?}: not an IPv6 address"))?;
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| format!("{hostport:?}: expected :PORT after ']'"))?,
                ),
            };
            (format!("[{addr}]"), port)
        } else {
            let (host, port) = match hostport.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            };
            if port.is_some_and(|p| p.contains(':')) {
                return Err(format!(
                    "{hostport:?}: write IPv6 addresses in brackets, [ADDR]:PORT"
                ));
            }
            if host.is_empty()
                || !host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
            {
                return Err(format!("{hostport:?}: not a host name or address"));
            }
            (host.to_string(), port)
        };
        let port = match port {
            None => DEFAULT_PORT,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => n,
                _ => return Err(format!("{hostport:?}: bad port {p:?}")),
            },
        };
        let ep = Endpoint::new(https || tls, host, port);
        if !out.contains(&ep) {
            out.push(ep);
        }
    }
    Ok(out)
}

/// The TLS client setup for https endpoints: the CA from the config (or the
/// usual public roots), and a client certificate when one is configured.
fn tls_config(cfg: &StoreConfig) -> Result<Arc<rustls::ClientConfig>> {
    let bad = |what: &str, path: &Path, e: &dyn std::fmt::Display| {
        Error::invalid(format!("cluster store TLS: {what} {}: {e}", path.display()))
    };
    let mut roots = rustls::RootCertStore::empty();
    match &cfg.ca {
        Some(ca) => {
            let certs = CertificateDer::pem_file_iter(ca)
                .map_err(|e| bad("cannot read CA certificate", ca, &e))?;
            for cert in certs {
                let cert = cert.map_err(|e| bad("cannot read CA certificate", ca, &e))?;
                roots
                    .add(cert)
                    .map_err(|e| bad("unusable CA certificate", ca, &e))?;
            }
            if roots.is_empty() {
                return Err(bad("no certificate in", ca, &"expected PEM"));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::invalid(format!("cluster store TLS: {e}")))?
        .with_root_certificates(roots);
    let config = match (&cfg.cert, &cfg.key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .map_err(|e| bad("cannot read client certificate", cert, &e))?
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| bad("cannot read client certificate", cert, &e))?;
            if chain.is_empty() {
                return Err(bad("no certificate in", cert, &"expected PEM"));
            }
            let key_der = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| bad("cannot read client key", key, &e))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| bad("client certificate and key do not fit", cert, &e))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(Error::invalid(
                "cluster store TLS: a client certificate needs both `cert` and `key`",
            ))
        }
    };
    Ok(Arc::new(config))
}

/// "3 s", "1.5 s" (to a tenth of a second).
fn secs(d: Duration) -> String {
    format!("{} s", (d.as_secs_f64() * 10.0).round() / 10.0)
}

/// On https, a server that hangs up right after the handshake has most
/// likely refused the client certificate (TLS 1.3 reports that only after
/// the client has started to send): say so.
fn with_tls_hint(ep: &Endpoint, cause: String) -> String {
    let refused_cert = cause.contains("fatal alert") && cause.contains("Certificate");
    let hung_up = cause.starts_with("connection closed") || cause.starts_with("connection reset");
    if ep.https && (refused_cert || hung_up) {
        format!("{cause} during TLS: etcd may want a client certificate, check `cert` and `key`")
    } else {
        cause
    }
}

/// The cause of an I/O failure in words, `limit` being the time that ran out
/// if it was a timeout.
fn io_cause(e: &io::Error, limit: Duration) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
            format!("no answer within {}", secs(limit))
        }
        io::ErrorKind::ConnectionReset => "connection reset".into(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionAborted => {
            "connection closed by the server".into()
        }
        io::ErrorKind::UnexpectedEof => "connection closed before the answer was complete".into(),
        // ureq wraps some errors in its own words: keep the cause only.
        _ => {
            let mut text = e.to_string();
            for wrapper in ["Network Error: ", "Error encountered in the status line: "] {
                if let Some(rest) = text.strip_prefix(wrapper) {
                    text = rest.to_string();
                }
            }
            text
        }
    }
}

/// The cause of a failed ureq call in words.
fn transport_cause(t: &ureq::Transport, connect_limit: Duration, limit: Duration) -> String {
    let io = std::error::Error::source(t).and_then(|s| s.downcast_ref::<io::Error>());
    match (t.kind(), io) {
        (ureq::ErrorKind::Dns, Some(e)) => format!("cannot resolve the host name: {e}"),
        (ureq::ErrorKind::Dns, None) => "cannot resolve the host name".into(),
        (ureq::ErrorKind::ConnectionFailed, Some(e)) => io_cause(e, connect_limit),
        (_, Some(e)) => io_cause(e, limit),
        (_, None) => t.message().unwrap_or("request failed").to_string(),
    }
}

/// Sets TCP keep-alive probes on a long-lived connection (best effort).
fn set_keepalive(sock: &TcpStream) {
    let fd = sock.as_raw_fd();
    let set = |level: libc::c_int, name: libc::c_int, value: libc::c_int| {
        // SAFETY: setsockopt on a socket we own, with a c_int option value.
        unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                &value as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        }
    };
    set(libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1);
    set(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, KEEPALIVE_IDLE_SECS);
    set(
        libc::IPPROTO_TCP,
        libc::TCP_KEEPINTVL,
        KEEPALIVE_INTERVAL_SECS,
    );
    set(libc::IPPROTO_TCP, libc::TCP_KEEPCNT, KEEPALIVE_PROBES);
}

impl Etcd {
    /// A client for the cluster in `cfg.url` (`etcd://h:p,h2:p2` becomes
    /// `http://h:p`, `http://h2:p2`; https when the URL says `etcds://` or
    /// the config names a CA or a client certificate). Makes no connection.
    pub fn new(cfg: &StoreConfig) -> Result<Etcd> {
        let url = cfg
            .url
            .as_deref()
            .filter(|u| !u.trim().is_empty())
            .ok_or_else(|| Error::invalid("cluster store: no etcd URL configured"))?;
        let tls_files = cfg.ca.is_some() || cfg.cert.is_some() || cfg.key.is_some();
        let endpoints = parse_endpoints(url, tls_files).map_err(|why| {
            Error::invalid(format!(
                "store URL {url:?}: {why} (expected etcd://HOST:PORT[,HOST:PORT...], or etcds:// for TLS)"
            ))
        })?;
        let tls = if endpoints.iter().any(|e| e.https) {
            Some(tls_config(cfg)?)
        } else {
            None
        };
        let timeout = cfg.timeout.unwrap_or(DEFAULT_TIMEOUT);
        if timeout.is_zero() {
            return Err(Error::invalid("cluster store: timeout must be above 0"));
        }
        Ok(Etcd {
            urls: endpoints.iter().map(|e| e.url.clone()).collect(),
            agent: build_agent(tls.as_ref(), CONNECT_TIMEOUT.min(timeout)),
            endpoints,
            tls,
            timeout,
            preferred: AtomicUsize::new(0),
            hint: DEFAULT_HINT.to_string(),
        })
    }

    /// The endpoints, as URLs (`http://10.0.0.2:2379`), in the order given.
    pub fn endpoints(&self) -> &[String] {
        &self.urls
    }

    /// The time limit of one call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// What "cannot reach etcd" messages tell the operator to check
    /// (default: "check `store` in /etc/wirehook/config.json").
    pub fn set_config_hint(&mut self, hint: impl Into<String>) {
        self.hint = hint.into();
    }

    /// A new lease of `ttl_secs` (etcd may raise very short TTLs to its
    /// minimum); returns its id.
    pub fn lease_grant(&self, ttl_secs: i64) -> Result<i64> {
        let a = self.call(&LEASE_GRANT, &wire::lease_grant(ttl_secs))?;
        wire::decode_lease_grant(&a.body).map_err(|e| self.bad_answer(&a, &LEASE_GRANT, e))
    }

    /// Refresh a lease: `Ok(Some(ttl))` refreshed, `Ok(None)` the lease no
    /// longer exists (expired or revoked).
    pub fn lease_keepalive(&self, id: i64) -> Result<Option<i64>> {
        let a = self.call(&LEASE_KEEPALIVE, &wire::lease_id(id))?;
        wire::decode_keepalive(&a.body).map_err(|e| self.bad_answer(&a, &LEASE_KEEPALIVE, e))
    }

    /// Revoke a lease, deleting every key attached to it. A lease that no
    /// longer exists is fine.
    pub fn lease_revoke(&self, id: i64) -> Result<()> {
        let a = self.call_any(&LEASE_REVOKE, &wire::lease_id(id))?;
        if a.status == 404 {
            let v: Value = serde_json::from_slice(&a.body).unwrap_or(Value::Null);
            if wire::error_code(&v) == Some(5) {
                return Ok(());
            }
        }
        self.check(&a, &LEASE_REVOKE)?;
        Ok(())
    }

    /// Put `puts` (attached to `lease`) and delete `deletes`, in one
    /// transaction: one round trip for a batch of changes. Missing keys
    /// are fine; a key twice is refused.
    pub fn write(
        &self,
        puts: &[(&str, &[u8])],
        lease: Option<i64>,
        deletes: &[&str],
    ) -> Result<()> {
        if puts.is_empty() && deletes.is_empty() {
            return Ok(());
        }
        check_distinct(puts.iter().map(|(k, _)| *k).chain(deletes.iter().copied()))?;
        self.call(&TXN, &wire::write_txn(puts, lease, deletes))?;
        Ok(())
    }

    /// Compact the store's history up to `revision` (watches from older
    /// revisions get [`WatchMsg::Compacted`] afterwards).
    pub fn compact(&self, revision: i64) -> Result<()> {
        self.call(&COMPACTION, &wire::compaction(revision))?;
        Ok(())
    }

    /// Watch every key under `prefix` from `start_revision` (inclusive; 0
    /// or less: from now). Blocks in `next()` until events arrive.
    pub fn watch(&self, prefix: &str, start_revision: i64) -> Result<Watch> {
        let body = serde_json::to_vec(&wire::watch_create(prefix, start_revision))
            .expect("JSON of a watch request");
        let deadline = Instant::now() + self.timeout;
        let mut failures = Vec::new();
        for idx in self.order() {
            let ep = &self.endpoints[idx];
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                failures.push((idx, format!("not tried, {} used up", secs(self.timeout))));
                continue;
            }
            match self.open_watch(ep, &body, prefix, left) {
                Ok(w) => {
                    self.preferred.store(idx, Ordering::Relaxed);
                    return Ok(w);
                }
                Err(WatchOpen::Unreachable(cause)) => {
                    failures.push((idx, with_tls_hint(ep, cause)))
                }
                Err(WatchOpen::Refused(e)) => return Err(e),
            }
        }
        Err(self.unreachable(&failures))
    }

    /// Endpoint indexes in the order to try them: the last one that
    /// answered first, then the rest in configured order.
    fn order(&self) -> Vec<usize> {
        let n = self.endpoints.len();
        let first = self.preferred.load(Ordering::Relaxed) % n;
        std::iter::once(first)
            .chain((0..n).filter(|i| *i != first))
            .collect()
    }

    /// The "nobody answered" error.
    fn unreachable(&self, failures: &[(usize, String)]) -> Error {
        let msg = match failures {
            [(i, cause)] => format!(
                "cannot reach etcd at {}: {cause} ({})",
                self.urls[*i], self.hint
            ),
            _ => format!(
                "cannot reach etcd at any of {} ({})",
                failures
                    .iter()
                    .map(|(i, cause)| format!("{}: {cause}", self.urls[*i]))
                    .collect::<Vec<_>>()
                    .join("; "),
                self.hint
            ),
        };
        Error::Store(msg)
    }

    fn bad_answer(&self, a: &Answer, call: &Call, why: String) -> Error {
        Error::Store(format!(
            "etcd at {} gave an unusable answer to {}: {why}",
            self.urls[a.endpoint], call.path
        ))
    }

    /// Turn a non-2xx answer into an error.
    fn check(&self, a: &Answer, call: &Call) -> Result<()> {
        if (200..300).contains(&a.status) {
            return Ok(());
        }
        let mut msg = wire::error_text(&a.body);
        if a.status == 404 && !msg.contains("etcdserver") {
            msg.push_str(": is this etcd 3.4 or later?");
        }
        Err(Error::Store(format!(
            "etcd at {} refused {}: {msg} (HTTP {})",
            self.urls[a.endpoint], call.path, a.status
        )))
    }

    /// One call that must succeed (2xx).
    fn call(&self, call: &Call, body: &Value) -> Result<Answer> {
        let a = self.call_any(call, body)?;
        self.check(&a, call)?;
        Ok(a)
    }

    /// One call, whatever status it answers with. Fails over to the next
    /// endpoint as the module docs say; the whole call ends within the
    /// timeout.
    fn call_any(&self, call: &Call, body: &Value) -> Result<Answer> {
        let body = serde_json::to_vec(body).expect("JSON of a request");
        let deadline = Instant::now() + self.timeout;
        let mut failures = Vec::new();
        for idx in self.order() {
            let ep = &self.endpoints[idx];
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                failures.push((idx, format!("not tried, {} used up", secs(self.timeout))));
                continue;
            }
            // Near the end of the time, connecting must not outlast it.
            let connect_limit = CONNECT_TIMEOUT.min(self.timeout);
            let (agent, connect_limit) = if left < connect_limit {
                (build_agent(self.tls.as_ref(), left), left)
            } else {
                (self.agent.clone(), connect_limit)
            };
            let result = agent
                .post(&format!("{}{}", ep.url, call.path))
                .timeout(left)
                .set("Content-Type", "application/json")
                .send_bytes(&body);
            let (status, resp) = match result {
                Ok(resp) => (resp.status(), resp),
                Err(ureq::Error::Status(code, resp)) => (code, resp),
                Err(ureq::Error::Transport(t)) => {
                    let cause = with_tls_hint(ep, transport_cause(&t, connect_limit, left));
                    let not_sent = matches!(
                        t.kind(),
                        ureq::ErrorKind::ConnectionFailed | ureq::ErrorKind::Dns
                    );
                    if not_sent || call.retry_any {
                        failures.push((idx, cause));
                        continue;
                    }
                    return Err(self.lost(ep, call, &cause));
                }
            };
            let mut data = Vec::new();
            let read = resp.into_reader().take(MAX_BODY).read_to_end(&mut data);
            // The gateway ends error answers (and some streams) with HTTP
            // trailers, which ureq 2's chunk decoder takes for a broken
            // body, after having read the whole JSON document.
            if let Err(e) = read
                .map(drop)
                .or_else(|e| if holds_json(&data) { Ok(()) } else { Err(e) })
            {
                let cause = io_cause(&e, left);
                if call.retry_any {
                    failures.push((idx, cause));
                    continue;
                }
                return Err(self.lost(ep, call, &cause));
            }
            self.preferred.store(idx, Ordering::Relaxed);
            return Ok(Answer {
                endpoint: idx,
                status,
                body: data,
            });
        }
        Err(self.unreachable(&failures))
    }

    fn lost(&self, ep: &Endpoint, call: &Call, cause: &str) -> Error {
        Error::Store(format!(
            "lost etcd at {} during {}: {cause}; the change may or may not have been made ({})",
            ep.url, call.path, self.hint
        ))
    }

    /// Connect to one endpoint, send the watch request and wait for etcd to
    /// confirm it, all within `left`.
    fn open_watch(
        &self,
        ep: &Endpoint,
        body: &[u8],
        prefix: &str,
        left: Duration,
    ) -> std::result::Result<Watch, WatchOpen> {
        let started = Instant::now();
        let connect_limit = CONNECT_TIMEOUT.min(left);
        let addrs: Vec<SocketAddr> = (ep.bare_host(), ep.port)
            .to_socket_addrs()
            .map_err(|e| WatchOpen::Unreachable(format!("cannot resolve the host name: {e}")))?
            .collect();
        let mut sock = None;
        let mut last_err = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, connect_limit) {
                Ok(s) => {
                    sock = Some(s);
                    break;
                }
                Err(e) => last_err = Some(e),
            }
        }
        let sock = match (sock, last_err) {
            (Some(s), _) => s,
            (None, Some(e)) => return Err(WatchOpen::Unreachable(io_cause(&e, connect_limit))),
            (None, None) => {
                return Err(WatchOpen::Unreachable(
                    "the host name has no address".into(),
                ))
            }
        };
        let rest = left
            .saturating_sub(started.elapsed())
            .max(Duration::from_millis(1));
        let unreachable = |e: io::Error| WatchOpen::Unreachable(io_cause(&e, left));
        sock.set_nodelay(true).map_err(unreachable)?;
        sock.set_read_timeout(Some(rest)).map_err(unreachable)?;
        sock.set_write_timeout(Some(rest)).map_err(unreachable)?;
        set_keepalive(&sock);
        let stop_handle = sock.try_clone().map_err(unreachable)?;
        let mut conn = match &self.tls {
            Some(tls) if ep.https => {
                let name = ServerName::try_from(ep.bare_host().to_string()).map_err(|e| {
                    WatchOpen::Unreachable(format!("not a valid TLS server name: {e}"))
                })?;
                let client = rustls::ClientConnection::new(tls.clone(), name)
                    .map_err(|e| WatchOpen::Unreachable(format!("TLS: {e}")))?;
                Conn::Tls(Box::new(rustls::StreamOwned::new(client, sock)))
            }
            _ => Conn::Plain(sock),
        };
        let head = format!(
            "POST {WATCH_PATH} HTTP/1.1\r\nHost: {}:{}\r\nUser-Agent: wirehook\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            ep.host,
            ep.port,
            body.len()
        );
        let mut request = head.into_bytes();
        request.extend_from_slice(body);
        conn.write_all(&request)
            .and_then(|()| conn.flush())
            .map_err(unreachable)?;

        let mut reader = BufReader::new(conn);
        let (status, framing) = read_head(&mut reader).map_err(unreachable)?;
        let mut body = BufReader::new(Body {
            conn: reader,
            framing,
        });
        if status != 200 {
            let mut data = Vec::new();
            let _ = (&mut body).take(64 << 10).read_to_end(&mut data);
            return Err(WatchOpen::Refused(Error::Store(format!(
                "etcd at {} refused the watch on {prefix:?}: {} (HTTP {status})",
                ep.url,
                wire::error_text(&data)
            ))));
        }
        let mut watch = Watch {
            endpoint: ep.url.clone(),
            prefix: prefix.to_string(),
            reader: Some(body),
            pending: VecDeque::new(),
            stopper: WatchStopper {
                sock: Arc::new(stop_handle),
                stopped: Arc::new(AtomicBool::new(false)),
            },
        };
        // Wait for etcd to confirm the watch; anything else that comes first
        // is kept for next().
        loop {
            match watch.read_line() {
                Ok(Some(WatchLine::Created)) => break,
                Ok(Some(WatchLine::Error(msg))) | Ok(Some(WatchLine::Canceled(msg))) => {
                    return Err(WatchOpen::Refused(Error::Store(format!(
                        "etcd at {} refused the watch on {prefix:?}: {msg}",
                        ep.url
                    ))))
                }
                Ok(Some(line)) => {
                    let done = matches!(line, WatchLine::Msg(WatchMsg::Compacted { .. }));
                    watch.pending.push_back(line);
                    if done {
                        break;
                    }
                }
                Ok(None) => {
                    return Err(WatchOpen::Unreachable(
                        "connection closed before the watch was set up".into(),
                    ))
                }
                Err(e) => return Err(WatchOpen::Unreachable(e)),
            }
        }
        // From here on, wait for events as long as it takes; keep-alive
        // probes notice a dead peer.
        watch
            .stopper
            .sock
            .set_read_timeout(None)
            .map_err(unreachable)?;
        watch
            .stopper
            .sock
            .set_write_timeout(None)
            .map_err(unreachable)?;
        Ok(watch)
    }
}

/// Does `data` start with one complete JSON value (followed by nothing but
/// whitespace or further values)?
fn holds_json(data: &[u8]) -> bool {
    matches!(
        serde_json::Deserializer::from_slice(data)
            .into_iter::<Value>()
            .next(),
        Some(Ok(_))
    )
}

fn build_agent(tls: Option<&Arc<rustls::ClientConfig>>, connect: Duration) -> ureq::Agent {
    let mut b = ureq::AgentBuilder::new()
        .timeout_connect(connect)
        .redirects(0)
        .user_agent("wirehook");
    if let Some(tls) = tls {
        b = b.tls_config(tls.clone());
    }
    b.build()
}

enum WatchOpen {
    /// Try the next endpoint.
    Unreachable(String),
    /// etcd answered and said no: final.
    Refused(Error),
}

impl Store for Etcd {
    fn describe(&self) -> String {
        format!("etcd {}", self.urls.join(","))
    }

    fn range(&self, prefix: &str) -> Result<Listing> {
        let a = self.call(&RANGE, &wire::range_prefix(prefix))?;
        wire::decode_range(&a.body).map_err(|e| self.bad_answer(&a, &RANGE, e))
    }

    fn get(&self, key: &str) -> Result<Option<Kv>> {
        check_key(key)?;
        let a = self.call(&RANGE, &wire::range_key(key))?;
        let listing = wire::decode_range(&a.body).map_err(|e| self.bad_answer(&a, &RANGE, e))?;
        Ok(listing.kvs.into_iter().find(|kv| kv.key == key))
    }

    fn create(&self, puts: &[(&str, &[u8])]) -> Result<bool> {
        if puts.is_empty() {
            return Ok(true);
        }
        check_distinct(puts.iter().map(|(k, _)| *k))?;
        let a = self.call(&TXN, &wire::create_txn(puts))?;
        wire::decode_txn(&a.body).map_err(|e| self.bad_answer(&a, &TXN, e))
    }

    fn put(&self, key: &str, value: &[u8], lease: Option<i64>) -> Result<()> {
        check_key(key)?;
        self.call(&PUT, &wire::put(key, value, lease))?;
        Ok(())
    }

    fn delete(&self, keys: &[&str]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        for k in keys {
            check_key(k)?;
        }
        self.call(&TXN, &wire::delete_txn(keys))?;
        Ok(())
    }

    fn delete_prefix(&self, prefix: &str) -> Result<u64> {
        if prefix.is_empty() {
            return Err(Error::invalid(
                "cluster store: refusing to delete every key (empty prefix)",
            ));
        }
        let a = self.call(&DELETE_RANGE, &wire::delete_prefix(prefix))?;
        wire::decode_deleted(&a.body).map_err(|e| self.bad_answer(&a, &DELETE_RANGE, e))
    }
}

fn check_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::invalid("cluster store: empty key"));
    }
    Ok(())
}

/// The same key twice in one transaction is refused (etcd does too).
pub(super) fn check_distinct<'a>(keys: impl Iterator<Item = &'a str>) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for k in keys {
        check_key(k)?;
        if !seen.insert(k) {
            return Err(Error::invalid(format!(
                "cluster store: key {k:?} given twice in one transaction"
            )));
        }
    }
    Ok(())
}

// ------------------------------------------------------------------ watch

/// What a watch delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchMsg {
    /// Changes, in revision order. `revision`: every change under the
    /// prefix up to this revision has been delivered, so a new watch from
    /// `revision + 1` continues without gaps. `events` is empty for a
    /// progress notification (etcd's "nothing new up to `revision`").
    Events { events: Vec<Event>, revision: i64 },
    /// The revision asked for was compacted: re-list, then watch from
    /// Listing.revision+1. The watch is over.
    Compacted { compact_revision: i64 },
}

/// A running watch: an iterator over what etcd sends.
///
/// `next()` blocks until etcd sends something. It yields `Err` once when
/// the connection ends (etcd killed or restarted, network gone: noticed by
/// TCP keep-alive within about half a minute) or etcd cancels the watch,
/// and `None` from then on; also `None` after [`WatchMsg::Compacted`] and
/// after [`WatchStopper::stop`]. The caller then re-lists and watches again.
pub struct Watch {
    endpoint: String,
    prefix: String,
    reader: Option<BufReader<Body>>,
    pending: VecDeque<WatchLine>,
    stopper: WatchStopper,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("endpoint", &self.endpoint)
            .field("prefix", &self.prefix)
            .field("open", &self.reader.is_some())
            .finish()
    }
}

/// Ends a [`Watch`] from another thread: its blocked `next()` returns `None`.
#[derive(Debug, Clone)]
pub struct WatchStopper {
    sock: Arc<TcpStream>,
    stopped: Arc<AtomicBool>,
}

impl WatchStopper {
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        let _ = self.sock.shutdown(Shutdown::Both);
    }
}

impl Watch {
    /// The endpoint this watch is connected to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// A handle that ends this watch from another thread.
    pub fn stopper(&self) -> WatchStopper {
        self.stopper.clone()
    }

    /// Run this watch on a thread of its own (named `name`), sending each
    /// message through `on_msg` and, once it ends, one last `on_end` with
    /// the cause, unless the receiver is gone. The loops that apply
    /// changes (the agent's, the resolver's) take both from one channel.
    pub fn forward<M: Send + 'static>(
        self,
        name: &str,
        tx: std::sync::mpsc::Sender<M>,
        on_msg: impl Fn(WatchMsg) -> M + Send + 'static,
        on_end: impl Fn(String) -> M + Send + 'static,
    ) -> Result<()> {
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                for msg in self {
                    match msg {
                        Ok(m) => {
                            if tx.send(on_msg(m)).is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            let _ = tx.send(on_end(e.to_string()));
                            return;
                        }
                    }
                }
                let _ = tx.send(on_end("connection closed".into()));
            })
            .map(|_| ())
            .map_err(|e| Error::Store(format!("cannot start a thread for the watch: {e}")))
    }

    /// The next meaningful line of the stream; `Ok(None)` at its end.
    fn read_line(&mut self) -> std::result::Result<Option<WatchLine>, String> {
        let Some(reader) = self.reader.as_mut() else {
            return Ok(None);
        };
        loop {
            let mut line = Vec::new();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) => return Ok(None),
                Ok(_) if line.last() != Some(&b'\n') => {
                    return Err("connection closed in the middle of a message".into())
                }
                Ok(_) if line.iter().all(u8::is_ascii_whitespace) => continue,
                Ok(_) => return wire::decode_watch_line(&line).map(Some),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_cause(&e, Duration::ZERO)),
            }
        }
    }

    fn ended(&mut self, cause: &str) -> Option<Result<WatchMsg>> {
        self.reader = None;
        if self.stopper.stopped.load(Ordering::SeqCst) {
            return None;
        }
        Some(Err(Error::Store(format!(
            "the watch on {:?} at etcd {} ended: {cause}",
            self.prefix, self.endpoint
        ))))
    }
}

impl Iterator for Watch {
    type Item = Result<WatchMsg>;

    fn next(&mut self) -> Option<Result<WatchMsg>> {
        loop {
            let line = match self.pending.pop_front() {
                Some(line) => line,
                None => {
                    self.reader.as_ref()?;
                    match self.read_line() {
                        Ok(Some(line)) => line,
                        Ok(None) => return self.ended("etcd closed the connection"),
                        Err(cause) => return self.ended(&cause),
                    }
                }
            };
            match line {
                WatchLine::Created => continue,
                WatchLine::Msg(msg @ WatchMsg::Compacted { .. }) => {
                    self.reader = None;
                    self.pending.clear();
                    return Some(Ok(msg));
                }
                WatchLine::Msg(msg) => return Some(Ok(msg)),
                WatchLine::Canceled(reason) => {
                    return self.ended(&format!("etcd canceled it: {reason}"))
                }
                WatchLine::Error(msg) => return self.ended(&format!("etcd: {msg}")),
            }
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.stopper.sock.shutdown(Shutdown::Both);
    }
}

/// The watch connection, plain or TLS.
enum Conn {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

/// How the body of an HTTP/1.1 answer is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// `Transfer-Encoding: chunked`: bytes left in the current chunk, and
    /// whether the chunk's closing CRLF is still to be read.
    Chunked {
        left: u64,
        crlf: bool,
        done: bool,
    },
    Length(u64),
    /// Until the connection closes.
    Close,
}

/// Reads the status line and headers of an answer.
fn read_head<R: BufRead>(r: &mut R) -> io::Result<(u16, Framing)> {
    let bad = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    let mut parts = line.split_whitespace();
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        return Err(bad(format!("not an HTTP answer: {:?}", line.trim())));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(bad(format!("not an HTTP/1.x answer: {:?}", line.trim())));
    }
    let status: u16 = code
        .parse()
        .map_err(|_| bad(format!("bad status line {:?}", line.trim())))?;
    let mut framing = Framing::Close;
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let Some((name, value)) = l.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding")
            && value.to_ascii_lowercase().contains("chunked")
        {
            framing = Framing::Chunked {
                left: 0,
                crlf: false,
                done: false,
            };
        } else if name.eq_ignore_ascii_case("content-length")
            && !matches!(framing, Framing::Chunked { .. })
        {
            let n = value
                .parse()
                .map_err(|_| bad(format!("bad Content-Length {value:?}")))?;
            framing = Framing::Length(n);
        }
    }
    Ok((status, framing))
}

/// The body of an answer, de-chunked.
struct Body<R: BufRead = BufReader<Conn>> {
    conn: R,
    framing: Framing,
}

impl<R: BufRead> Read for Body<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        match &mut self.framing {
            Framing::Close => self.conn.read(buf),
            Framing::Length(left) => {
                if *left == 0 {
                    return Ok(0);
                }
                let want = buf.len().min(*left as usize);
                let n = self.conn.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                *left -= n as u64;
                Ok(n)
            }
            Framing::Chunked { left, crlf, done } => {
                if *done {
                    return Ok(0);
                }
                if *left == 0 {
                    let mut line = String::new();
                    if *crlf {
                        self.conn.read_line(&mut line)?;
                        *crlf = false;
                        line.clear();
                    }
                    if self.conn.read_line(&mut line)? == 0 {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                    let size = line.trim().split(';').next().unwrap_or("").trim();
                    let size = u64::from_str_radix(size, 16).map_err(|_| {
                        io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("bad chunk size {:?}", line.trim()),
                        )
                    })?;
                    if size == 0 {
                        *done = true;
                        return Ok(0);
                    }
                    *left = size;
                }
                let want = buf.len().min(*left as usize);
                let n = self.conn.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                *left -= n as u64;
                if *left == 0 {
                    *crlf = true;
                }
                Ok(n)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eps(url: &str) -> Vec<String> {
        parse_endpoints(url, false)
            .unwrap()
            .into_iter()
            .map(|e| e.url)
            .collect()
    }

    #[test]
    fn urls() {
        assert_eq!(
            eps("etcd://10.0.0.2:2379,10.0.0.3:2379"),
            ["http://10.0.0.2:2379", "http://10.0.0.3:2379"]
        );
        assert_eq!(eps("etcd://etcd-1.example"), ["http://etcd-1.example:2379"]);
        assert_eq!(eps(" etcd://a:1 , b:2/ "), ["http://a:1", "http://b:2"]);
        assert_eq!(eps("etcds://a:1,b"), ["https://a:1", "https://b:2379"]);
        assert_eq!(eps("http://a:1,https://b:2"), ["http://a:1", "https://b:2"]);
        assert_eq!(
            eps("etcd://[::1]:23,[fd00::2]"),
            ["http://[::1]:23", "http://[fd00::2]:2379"]
        );
        assert_eq!(eps("etcd://a:1,a:1"), ["http://a:1"], "duplicates dropped");
        // TLS files switch every endpoint to https.
        let tls: Vec<String> = parse_endpoints("etcd://a:1,http://b:2", true)
            .unwrap()
            .into_iter()
            .map(|e| e.url)
            .collect();
        assert_eq!(tls, ["https://a:1", "https://b:2"]);
        for bad in [
            "",
            "10.0.0.2:2379",
            "zk://a:1",
            "etcd://",
            "etcd://a:1,",
            "etcd://a:0",
            "etcd://a:65536",
            "etcd://a:x",
            "etcd://a:1/v3",
            "etcd://user@a:1",
            "etcd://::1",
            "etcd://[::1",
            "etcd://[nope]:1",
            "etcd://[::1]x",
            "etcd://a b:1",
        ] {
            assert!(parse_endpoints(bad, false).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn new_checks_the_config() {
        let cfg = |url: &str| StoreConfig {
            url: Some(url.into()),
            ..Default::default()
        };
        let e = Etcd::new(&cfg("etcd://10.0.0.2:2379,10.0.0.3:4001")).unwrap();
        assert_eq!(
            e.endpoints(),
            ["http://10.0.0.2:2379", "http://10.0.0.3:4001"]
        );
        assert_eq!(
            e.describe(),
            "etcd http://10.0.0.2:2379,http://10.0.0.3:4001"
        );
        assert_eq!(e.timeout(), DEFAULT_TIMEOUT);
        let err = Etcd::new(&cfg("etcd://a:1/x")).unwrap_err().to_string();
        assert!(
            err.contains("etcd://a:1/x") && err.contains("expected etcd://HOST:PORT"),
            "{err}"
        );
        assert!(Etcd::new(&StoreConfig::default()).is_err());
        // etcds:// without a CA uses the public roots.
        assert!(Etcd::new(&cfg("etcds://a:1")).unwrap().tls.is_some());
        // A CA file that is missing is named in the error.
        let err = Etcd::new(&StoreConfig {
            ca: Some("/nonexistent/ca.pem".into()),
            ..cfg("etcd://a:1")
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
        // Half a client certificate.
        let err = Etcd::new(&StoreConfig {
            cert: Some("/x.pem".into()),
            ..cfg("etcds://a:1")
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("both `cert` and `key`"), "{err}");
        assert!(Etcd::new(&StoreConfig {
            timeout: Some(Duration::ZERO),
            ..cfg("etcd://a:1")
        })
        .is_err());
    }

    #[test]
    fn local_checks_before_any_request() {
        // Nothing listens on 192.0.2.1 (TEST-NET-1), but these never get
        // that far.
        let e = Etcd::new(&StoreConfig {
            url: Some("etcd://192.0.2.1:2379".into()),
            ..Default::default()
        })
        .unwrap();
        assert!(e.create(&[]).unwrap());
        e.delete(&[]).unwrap();
        assert!(e.create(&[("/a", b"1"), ("/a", b"2")]).is_err());
        assert!(e.delete_prefix("").is_err());
        assert!(e.put("", b"x", None).is_err());
        assert!(e.get("").is_err());
    }

    #[test]
    fn http_heads_and_chunks() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
            Transfer-Encoding: chunked\r\n\r\n\
            5\r\n{\"a\":\r\n4;x=y\r\n1}\n\n\r\n0\r\n\r\n";
        let mut r = BufReader::new(&raw[..]);
        let (status, framing) = read_head(&mut r).unwrap();
        assert_eq!(status, 200);
        assert!(matches!(framing, Framing::Chunked { .. }));
        let mut body = String::new();
        Body { conn: r, framing }.read_to_string(&mut body).unwrap();
        assert_eq!(body, "{\"a\":1}\n\n");

        let raw = b"HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\nnopeEXTRA";
        let mut r = BufReader::new(&raw[..]);
        let (status, framing) = read_head(&mut r).unwrap();
        assert_eq!((status, framing), (404, Framing::Length(4)));
        let mut body = String::new();
        Body { conn: r, framing }.read_to_string(&mut body).unwrap();
        assert_eq!(body, "nope");

        // A chunked body cut off mid-chunk is an error, not a clean end.
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n12345";
        let mut r = BufReader::new(&raw[..]);
        let (_, framing) = read_head(&mut r).unwrap();
        let mut body = Vec::new();
        assert!(Body { conn: r, framing }.read_to_end(&mut body).is_err());

        assert!(read_head(&mut BufReader::new(&b"SSH-2.0-OpenSSH\r\n"[..])).is_err());
        assert!(read_head(&mut BufReader::new(&b"HTTP/1.1 200 OK\r\n"[..])).is_err());
    }

    #[test]
    fn whole_json_documents() {
        assert!(holds_json(br#"{"error":"x","code":5}"#));
        assert!(holds_json(b"{\"result\":{}}\n"));
        assert!(!holds_json(br#"{"error":"x","co"#));
        assert!(!holds_json(b""));
    }

    #[test]
    fn causes_in_words() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(io_cause(&refused, CONNECT_TIMEOUT), "connection refused");
        let slow = io::Error::from(io::ErrorKind::TimedOut);
        assert_eq!(
            io_cause(&slow, Duration::from_millis(1500)),
            "no answer within 1.5 s"
        );
        assert_eq!(secs(Duration::from_secs(3)), "3 s");
        assert_eq!(secs(Duration::from_millis(996)), "1 s");
        assert_eq!(secs(Duration::from_millis(1450)), "1.5 s");
    }
}
