//! DNS in tests: a query client that asks from inside any namespace
//! ([`dns_query`]), and [`TestUpstream`], a tiny authoritative server the
//! test runs in a namespace it made (never a real outside resolver), for
//! the resolver to forward to.
//!
//! Point wirehook's resolver at it with [`TestUpstream::configure`], which
//! writes the test host's `resolv.conf` and names it in
//! `ROOT/etc/wirehook/config.json` (`resolv_conf`).

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use wirehook_shared::dns::wire::{self, rcode, Record, Response};

use crate::host::TestHost;
use crate::sys::in_netns;

/// What a query got back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub rcode: u8,
    pub authoritative: bool,
    pub truncated: bool,
    pub records: Vec<Record>,
}

impl Answer {
    /// The A and AAAA records' addresses.
    pub fn addrs(&self) -> Vec<IpAddr> {
        self.records
            .iter()
            .filter_map(|r| match r {
                Record::A(a) => Some(IpAddr::V4(*a)),
                Record::Aaaa(a) => Some(IpAddr::V6(*a)),
                _ => None,
            })
            .collect()
    }

    pub fn is_nxdomain(&self) -> bool {
        self.rcode == rcode::NXDOMAIN
    }
}

/// Ask `server` (UDP) for `name`/`qtype` from inside the namespace at
/// `netns`. `Err` when nothing answers within `timeout` (or the port is
/// closed).
pub fn dns_query(
    netns: &Path,
    server: SocketAddr,
    name: &str,
    qtype: u16,
    timeout: Duration,
) -> std::io::Result<Answer> {
    let name = name.to_string();
    in_netns(netns, move || {
        let bind: SocketAddr = if server.is_ipv4() {
            "0.0.0.0:0".parse().unwrap()
        } else {
            "[::]:0".parse().unwrap()
        };
        let sock = UdpSocket::bind(bind)?;
        sock.set_read_timeout(Some(timeout))?;
        sock.connect(server)?;
        let id: u16 = rand_id();
        let mut q = Vec::new();
        wire::build_query(&mut q, id, &name, qtype, true);
        sock.send(&q)?;
        let mut buf = [0u8; 4096];
        loop {
            let n = sock.recv(&mut buf)?;
            if wire::message_id(&buf[..n]) == Some(id) {
                return parse(&buf[..n]);
            }
        }
    })
}

/// The same over TCP.
pub fn dns_query_tcp(
    netns: &Path,
    server: SocketAddr,
    name: &str,
    qtype: u16,
    timeout: Duration,
) -> std::io::Result<Answer> {
    let name = name.to_string();
    in_netns(netns, move || {
        let mut s = TcpStream::connect_timeout(&server, timeout)?;
        s.set_read_timeout(Some(timeout))?;
        let mut q = Vec::new();
        wire::build_query(&mut q, 4242, &name, qtype, false);
        let mut framed = (q.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&q);
        s.write_all(&framed)?;
        let mut len = [0u8; 2];
        s.read_exact(&mut len)?;
        let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
        s.read_exact(&mut msg)?;
        parse(&msg)
    })
}

fn parse(msg: &[u8]) -> std::io::Result<Answer> {
    let r = wire::parse_reply(msg).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(Answer {
        rcode: r.rcode(),
        authoritative: r.authoritative(),
        truncated: r.header.truncated(),
        records: r.answers.into_iter().map(|(r, _)| r).collect(),
    })
}

fn rand_id() -> u16 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (t.subsec_nanos() ^ std::process::id()) as u16
}

/// A DNS server in a test's namespace: every A question for a name under
/// `zone` is answered with `address`, everything else with NXDOMAIN; it
/// counts the questions it saw. Stops on drop.
pub struct TestUpstream {
    addr: SocketAddr,
    zone: String,
    stop: Arc<AtomicBool>,
    seen: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl TestUpstream {
    /// Serve on `bind` (UDP) inside the namespace at `netns`.
    pub fn start(netns: &Path, bind: SocketAddr, zone: &str, address: Ipv4Addr) -> TestUpstream {
        let sock = in_netns(netns, move || UdpSocket::bind(bind)).unwrap_or_else(|e| {
            panic!("test upstream: bind udp {bind} in {}: {e}", netns.display())
        });
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(AtomicUsize::new(0));
        let (s, n) = (stop.clone(), seen.clone());
        let zone_l = zone.to_ascii_lowercase();
        let thread = thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut out = Vec::new();
            let end = std::time::Instant::now() + Duration::from_secs(600);
            while !s.load(Ordering::Relaxed) && std::time::Instant::now() < end {
                let Ok((len, peer)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let Ok(q) = wire::parse_query(&buf[..len]) else {
                    continue;
                };
                n.fetch_add(1, Ordering::Relaxed);
                let name = String::from_utf8_lossy(q.question.name.as_bytes()).into_owned();
                let ours = name == zone_l || name.ends_with(&format!(".{zone_l}"));
                let code = if ours {
                    rcode::NOERROR
                } else {
                    rcode::NXDOMAIN
                };
                let mut r = Response::start(&mut out, &buf[..len], &q, code, true, q.udp_limit());
                if ours && q.question.qtype == wire::TYPE_A {
                    r.a(address, 60);
                }
                r.finish();
                let _ = sock.send_to(&out, peer);
            }
        });
        TestUpstream {
            addr,
            zone: zone.to_string(),
            stop,
            seen,
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn zone(&self) -> &str {
        &self.zone
    }

    /// Questions answered so far.
    pub fn seen(&self) -> usize {
        self.seen.load(Ordering::Relaxed)
    }

    /// Make `host`'s wirehook forward to this server: writes
    /// `ROOT/resolv.conf` (this server, search `search`) and names it as
    /// `resolv_conf` in `ROOT/etc/wirehook/config.json` (other settings
    /// there are kept).
    pub fn configure(&self, host: &TestHost, search: &str) {
        let rc = host.root().join("resolv.conf");
        std::fs::write(
            &rc,
            format!(
                "nameserver {}\nsearch {search}\noptions edns0\n",
                self.addr.ip()
            ),
        )
        .unwrap();
        let cfg_dir = host.root().join("etc/wirehook");
        std::fs::create_dir_all(&cfg_dir).unwrap();
        let cfg_file = cfg_dir.join("config.json");
        let mut cfg: serde_json::Value = std::fs::read(&cfg_file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_else(|| serde_json::json!({}));
        cfg["resolv_conf"] = serde_json::json!(rc);
        std::fs::write(&cfg_file, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
    }
}

impl Drop for TestUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
