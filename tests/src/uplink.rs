//! [`Uplink`]: another machine on the test host's LAN, and small TCP/UDP
//! tools that run inside any namespace.
//!
//! `host.uplink()` creates a peer namespace joined to the host namespace by
//! a veth: `uplink0` with 198.51.100.1/24 on the host side, `eth0` with
//! 198.51.100.2/24 on the peer side (TEST-NET-2, a documentation range that
//! only ever exists inside our namespaces). The host's default route points at
//! the peer, so traffic "leaving" the host is seen there; the peer has no
//! default route (it is another machine on the LAN, not a router), so a
//! container address that is not masqueraded gets no answer from it.
//! [`Uplink::uplink_n`](TestHost::uplink_n) makes more, on other ranges, for
//! macvlan/ipvlan parents.
//!
//! [`EchoServer`] answers each TCP connection (or UDP datagram) with
//! `"<client ip>:<client port> <what it received>"` — so a test sees both the
//! reply and the source address after NAT. [`tcp_request`] and
//! [`udp_request`] are the matching clients, from any namespace.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::cmd::{self, OutputExt, DEFAULT_TIMEOUT};
use crate::host::TestHost;
use crate::sys::in_netns;

/// The documentation ranges uplinks use, by index.
const UPLINK_NETS: [[u8; 3]; 3] = [[198, 51, 100], [203, 0, 113], [192, 0, 2]];

/// The peer namespace and its veth. Deleted on drop.
pub struct Uplink<'h> {
    host: &'h TestHost,
    peer_name: String,
    host_if: String,
    host_addr: Ipv4Addr,
    peer_addr: Ipv4Addr,
}

impl TestHost {
    /// The standard uplink: `uplink0`, 198.51.100.1/24 here, peer
    /// 198.51.100.2/24, host default route via the peer.
    pub fn uplink(&self) -> Uplink<'_> {
        self.uplink_n(0)
    }

    /// Uplink number `n` (0..=2): host interface `uplink<n>`, subnets
    /// 198.51.100.0/24, 203.0.113.0/24, 192.0.2.0/24; host side `.1`, peer
    /// `.2`. Only uplink 0 carries the host's default route.
    pub fn uplink_n(&self, n: usize) -> Uplink<'_> {
        let net = *UPLINK_NETS
            .get(n)
            .unwrap_or_else(|| panic!("uplink_n({n}): only 0..=2 exist"));
        let peer_name = format!("{}-up{n}", self.name());
        let host_if = format!("uplink{n}");
        let host_addr = Ipv4Addr::new(net[0], net[1], net[2], 1);
        let peer_addr = Ipv4Addr::new(net[0], net[1], net[2], 2);
        let ip = |args: &[&str]| {
            cmd::run(Command::new("ip").args(args), None, DEFAULT_TIMEOUT)
                .expect_success(&format!("ip {}", args.join(" ")));
        };
        ip(&["netns", "add", &peer_name]);
        self.track_netns(&peer_name);
        let up = Uplink {
            host: self,
            peer_name: peer_name.clone(),
            host_if: host_if.clone(),
            host_addr,
            peer_addr,
        };
        let (h, p) = (format!("{host_addr}/24"), format!("{peer_addr}/24"));
        let hn = self.name();
        ip(&[
            "-n", hn, "link", "add", &host_if, "type", "veth", "peer", "name", "eth0", "netns",
            &peer_name,
        ]);
        ip(&["-n", hn, "addr", "add", &h, "dev", &host_if]);
        ip(&["-n", hn, "link", "set", &host_if, "up"]);
        ip(&["-n", &peer_name, "link", "set", "lo", "up"]);
        ip(&["-n", &peer_name, "addr", "add", &p, "dev", "eth0"]);
        ip(&["-n", &peer_name, "link", "set", "eth0", "up"]);
        if n == 0 {
            ip(&[
                "-n",
                hn,
                "route",
                "add",
                "default",
                "via",
                &peer_addr.to_string(),
            ]);
        }
        up
    }
}

impl<'h> Uplink<'h> {
    /// Name of the peer namespace (`<host>-up<n>`).
    pub fn peer_name(&self) -> &str {
        &self.peer_name
    }

    /// `/run/netns/<peer>`.
    pub fn peer_netns_path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.peer_name)
    }

    /// The host-side interface (`uplink<n>`), e.g. a macvlan parent.
    pub fn host_ifname(&self) -> &str {
        &self.host_if
    }

    /// The host's address on this LAN (`.1`).
    pub fn host_addr(&self) -> Ipv4Addr {
        self.host_addr
    }

    /// The peer's address (`.2`).
    pub fn peer_addr(&self) -> Ipv4Addr {
        self.peer_addr
    }

    /// The LAN's subnet, e.g. `198.51.100.0/24`.
    pub fn subnet(&self) -> String {
        let o = self.host_addr.octets();
        format!("{}.{}.{}.0/24", o[0], o[1], o[2])
    }

    /// Runs `argv` in the peer namespace.
    pub fn exec(&self, argv: &[&str]) -> Output {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.peer_netns_path().display()))
            .arg("--")
            .args(argv)
            .current_dir("/");
        cmd::run(&mut c, None, DEFAULT_TIMEOUT)
    }

    /// Runs `sh -c script` in the peer namespace.
    pub fn sh(&self, script: &str) -> Output {
        self.exec(&["sh", "-c", script])
    }

    /// A TCP [`EchoServer`] on `0.0.0.0:port` in the peer.
    pub fn echo_server(&self, port: u16) -> EchoServer {
        EchoServer::tcp(
            &self.peer_netns_path(),
            SocketAddr::from(([0, 0, 0, 0], port)),
        )
    }

    /// A UDP [`EchoServer`] on `0.0.0.0:port` in the peer.
    pub fn udp_echo_server(&self, port: u16) -> EchoServer {
        EchoServer::udp(
            &self.peer_netns_path(),
            SocketAddr::from(([0, 0, 0, 0], port)),
        )
    }

    /// A TCP request from the peer (another host's view) to `addr`.
    pub fn tcp_request(&self, addr: SocketAddr, payload: &str) -> std::io::Result<String> {
        tcp_request(
            &self.peer_netns_path(),
            addr,
            payload,
            Duration::from_secs(5),
        )
    }

    /// A UDP request from the peer to `addr`.
    pub fn udp_request(&self, addr: SocketAddr, payload: &str) -> std::io::Result<String> {
        udp_request(
            &self.peer_netns_path(),
            addr,
            payload,
            Duration::from_secs(5),
        )
    }
}

impl Drop for Uplink<'_> {
    fn drop(&mut self) {
        // Deleting the peer namespace takes the veth pair with it.
        let out = cmd::run(
            Command::new("ip").args(["netns", "del", &self.peer_name]),
            None,
            DEFAULT_TIMEOUT,
        );
        if !out.status.success() {
            eprintln!(
                "wirehook-tests: ip netns del {}\n{}",
                self.peer_name,
                out.report()
            );
        }
        self.host.untrack_netns(&self.peer_name);
    }
}

/// Upper bound on how long an [`EchoServer`] lives even if never dropped.
const SERVER_LIFETIME: Duration = Duration::from_secs(600);

/// A TCP or UDP echo server in some network namespace, served by a thread of
/// the test process. Replies `"<client ip>:<client port> <data>"`; for TCP,
/// data is what arrived up to the first newline or end of stream. Stops on
/// drop (or after ten minutes).
pub struct EchoServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    clients: Arc<Mutex<Vec<SocketAddr>>>,
    thread: Option<JoinHandle<()>>,
}

impl EchoServer {
    /// Listens on `bind` (TCP) inside the namespace at `netns`.
    pub fn tcp(netns: &Path, bind: SocketAddr) -> EchoServer {
        let listener = in_netns(netns, move || TcpListener::bind(bind))
            .unwrap_or_else(|e| panic!("echo server: bind tcp {bind} in {}: {e}", netns.display()));
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let clients = Arc::new(Mutex::new(Vec::new()));
        let (s, c) = (stop.clone(), clients.clone());
        let thread = thread::spawn(move || {
            let end = Instant::now() + SERVER_LIFETIME;
            while !s.load(Ordering::Relaxed) && Instant::now() < end {
                match listener.accept() {
                    Ok((stream, peer)) => {
                        c.lock().unwrap().push(peer);
                        thread::spawn(move || serve_tcp(stream, peer));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        EchoServer {
            addr,
            stop,
            clients,
            thread: Some(thread),
        }
    }

    /// Listens on `bind` (UDP) inside the namespace at `netns`.
    pub fn udp(netns: &Path, bind: SocketAddr) -> EchoServer {
        let sock = in_netns(netns, move || UdpSocket::bind(bind))
            .unwrap_or_else(|e| panic!("echo server: bind udp {bind} in {}: {e}", netns.display()));
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let clients = Arc::new(Mutex::new(Vec::new()));
        let (s, c) = (stop.clone(), clients.clone());
        let thread = thread::spawn(move || {
            let end = Instant::now() + SERVER_LIFETIME;
            let mut buf = [0u8; 65536];
            while !s.load(Ordering::Relaxed) && Instant::now() < end {
                if let Ok((n, peer)) = sock.recv_from(&mut buf) {
                    c.lock().unwrap().push(peer);
                    let reply = format!("{peer} {}", String::from_utf8_lossy(&buf[..n]));
                    let _ = sock.send_to(reply.as_bytes(), peer);
                }
            }
        });
        EchoServer {
            addr,
            stop,
            clients,
            thread: Some(thread),
        }
    }

    /// The bound address (port resolved if 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every client address seen so far, in order.
    pub fn clients(&self) -> Vec<SocketAddr> {
        self.clients.lock().unwrap().clone()
    }
}

fn serve_tcp(mut stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    while data.len() < 65536 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                data.extend_from_slice(&buf[..n]);
                if buf[..n].contains(&b'\n') {
                    break;
                }
            }
        }
    }
    let reply = format!("{peer} {}", String::from_utf8_lossy(&data));
    let _ = stream.write_all(reply.as_bytes());
    let _ = stream.shutdown(Shutdown::Both);
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Connects from inside `netns` to `addr`, sends `payload`, half-closes, and
/// returns everything the other side sent until it closed.
pub fn tcp_request(
    netns: &Path,
    addr: SocketAddr,
    payload: &str,
    timeout: Duration,
) -> std::io::Result<String> {
    let payload = payload.to_string();
    in_netns(netns, move || {
        let mut s = TcpStream::connect_timeout(&addr, timeout)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        s.write_all(payload.as_bytes())?;
        s.shutdown(Shutdown::Write)?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    })
}

/// Sends one datagram from inside `netns` to `addr` and returns the first
/// reply (error on timeout).
pub fn udp_request(
    netns: &Path,
    addr: SocketAddr,
    payload: &str,
    timeout: Duration,
) -> std::io::Result<String> {
    let payload = payload.to_string();
    in_netns(netns, move || {
        let bind: SocketAddr = if addr.is_ipv4() {
            SocketAddr::from(([0, 0, 0, 0], 0))
        } else {
            "[::]:0".parse().unwrap()
        };
        let s = UdpSocket::bind(bind)?;
        s.set_read_timeout(Some(timeout))?;
        s.send_to(payload.as_bytes(), addr)?;
        let mut buf = [0u8; 65536];
        let (n, _) = s.recv_from(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    })
}
