//! Which host sockets accept traffic on a port: the check that keeps a
//! published port from stealing a port a host service listens on.
//!
//! Docker and podman bind (or reserve) a published host port, so one that
//! a host process uses fails the start. wirehook publishes ports as DNAT
//! map elements, which would silently take the port from the host service
//! (`ports=22:80` would send every other machine's ssh connections into
//! the container). So setup asks the kernel, by sock_diag (the interface
//! `ss` uses), for the listening TCP sockets and the bound, unconnected UDP
//! and SCTP sockets of the calling thread's network namespace: one dump
//! per address family and protocol, filtered by state in the kernel.
//! Who holds a socket is looked up only when there is one to report. A
//! dump walks the kernel's whole listening hash, so setup first asks
//! [`port_unused`], a bind that proves in microseconds that nothing
//! holds the port, and dumps only when that cannot tell.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::error::{Error, Result};
use crate::nlraw::{self, RawSocket};
use crate::ports::Protocol;

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const TCP_ESTABLISHED: u32 = 1;
const TCP_CLOSE: u32 = 7;
const TCP_LISTEN: u32 = 10;
/// Header (16) + inet_diag_req_v2 (56).
const REQUEST_LEN: usize = 72;
/// inet_diag_msg, the fixed part of each answer.
const MSG_LEN: usize = 72;

/// A socket that accepts traffic on a port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Listener {
    pub protocol: Protocol,
    /// The address it is bound to (unspecified: every address).
    pub address: IpAddr,
    pub port: u16,
    /// Socket inode (to find its process).
    pub inode: u32,
}

impl Listener {
    /// Does this socket take traffic for `port` published on `host_ip`
    /// (`None`: every host address)? A wildcard on either side overlaps
    /// (an IPv6 wildcard socket takes IPv4 too, unless it is v6-only,
    /// which sock_diag does not say: counted as overlapping).
    pub fn overlaps(&self, protocol: Protocol, host_ip: Option<IpAddr>, port: u16) -> bool {
        if self.protocol != protocol || self.port != port {
            return false;
        }
        match host_ip.filter(|ip| !ip.is_unspecified()) {
            None => true,
            Some(ip) => {
                self.address.is_unspecified()
                    || self.address == ip
                    || {
                        // An IPv4-mapped listener address is the IPv4 one.
                        matches!((self.address, ip), (IpAddr::V6(a), IpAddr::V4(b)) if a.to_ipv4_mapped() == Some(b))
                    }
            }
        }
    }

    /// `sshd (pid 812)`, or `a socket (inode N)` if no process is found.
    pub fn holder(&self) -> String {
        match owner_of_inode(self.inode) {
            Some((pid, comm)) => format!("{comm} (pid {pid})"),
            None => format!("a socket (inode {})", self.inode),
        }
    }
}

/// Does nothing of `protocol` hold `port` on any address of the calling
/// thread's namespace? Answered by binding a throwaway socket to the port
/// on each family's wildcard address, which costs microseconds where a
/// dump walks the kernel's whole listening hash (about 60 µs per family
/// on the test machines, for any number of sockets). `true` proves it: a
/// TCP bind with `SO_REUSEADDR` fails on any listener whose address
/// overlaps, a UDP bind without it on any socket bound to the port. A
/// refused bind proves nothing (a connection's ephemeral port, a socket
/// in TIME_WAIT): [`listeners`] then tells. SCTP is never probed.
pub fn port_unused(protocol: Protocol, port: u16) -> bool {
    use nix::errno::Errno;
    use nix::sys::socket::{
        bind, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn,
        SockaddrIn6,
    };
    use std::net::{SocketAddrV4, SocketAddrV6};
    use std::os::fd::AsRawFd;
    let ty = match protocol {
        Protocol::Tcp => SockType::Stream,
        Protocol::Udp => SockType::Datagram,
        Protocol::Sctp => return false,
    };
    for v6 in [false, true] {
        let family = if v6 {
            AddressFamily::Inet6
        } else {
            AddressFamily::Inet
        };
        let fd = match socket(family, ty, SockFlag::SOCK_CLOEXEC, None) {
            Ok(fd) => fd,
            // No IPv6 here: nothing can listen on it.
            Err(Errno::EAFNOSUPPORT) if v6 => continue,
            Err(_) => return false,
        };
        if protocol == Protocol::Tcp && setsockopt(&fd, sockopt::ReuseAddr, &true).is_err() {
            return false;
        }
        let bound = if v6 {
            // IPv6 only: the IPv4 probe covers the rest.
            setsockopt(&fd, sockopt::Ipv6V6Only, &true).is_ok()
                && bind(
                    fd.as_raw_fd(),
                    &SockaddrIn6::from(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, port, 0, 0)),
                )
                .is_ok()
        } else {
            bind(
                fd.as_raw_fd(),
                &SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)),
            )
            .is_ok()
        };
        if !bound {
            return false;
        }
    }
    true
}

/// Every socket of `protocol` in the calling thread's network namespace
/// that accepts traffic: TCP listeners, unconnected UDP and SCTP sockets.
pub fn listeners(protocol: Protocol) -> Result<Vec<Listener>> {
    let (proto, states) = match protocol {
        Protocol::Tcp => (libc::IPPROTO_TCP, 1 << TCP_LISTEN),
        Protocol::Udp => (libc::IPPROTO_UDP, 1 << TCP_CLOSE),
        // SCTP listeners show as LISTEN; one-to-many sockets as CLOSE or
        // ESTABLISHED.
        Protocol::Sctp => (
            libc::IPPROTO_SCTP,
            (1 << TCP_LISTEN) | (1 << TCP_CLOSE) | (1 << TCP_ESTABLISHED),
        ),
    };
    let sock = diag_socket()?;
    let mut out = HashSet::new();
    for family in [libc::AF_INET, libc::AF_INET6] {
        match dump(&sock, family as u8, proto as u8, states) {
            Ok(found) => out.extend(found.into_iter().map(|(address, port, inode)| Listener {
                protocol,
                address,
                port,
                inode,
            })),
            // No SCTP (module not loaded) or no IPv6: nothing listens there.
            Err(e)
                if e == libc::ENOENT || e == libc::EAFNOSUPPORT || e == libc::EPROTONOSUPPORT => {}
            Err(e) => {
                return Err(Error::invalid(format!(
                    "cannot list the host's {} sockets (sock_diag): {}",
                    protocol.as_str(),
                    std::io::Error::from_raw_os_error(e)
                )))
            }
        }
    }
    Ok(out.into_iter().collect())
}

fn diag_socket() -> Result<RawSocket> {
    let sock = RawSocket::open(libc::NETLINK_SOCK_DIAG)
        .map_err(|e| Error::invalid(format!("cannot open a sock_diag socket: {e}")))?;
    // A dump never takes long: a lost answer must not hang a start.
    let _ = sock.set_recv_timeout(std::time::Duration::from_secs(5));
    Ok(sock)
}

/// One dump: (address, port, inode) of each socket; Err(errno).
fn dump(
    sock: &RawSocket,
    family: u8,
    proto: u8,
    states: u32,
) -> std::result::Result<Vec<(IpAddr, u16, u32)>, i32> {
    let errno = |e: std::io::Error| e.raw_os_error().unwrap_or(libc::EIO);
    let mut req = [0u8; REQUEST_LEN];
    req[0..4].copy_from_slice(&(REQUEST_LEN as u32).to_ne_bytes());
    req[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
    req[6..8].copy_from_slice(&flags.to_ne_bytes());
    req[8..12].copy_from_slice(&1u32.to_ne_bytes());
    req[16] = family;
    req[17] = proto;
    req[20..24].copy_from_slice(&states.to_ne_bytes());
    sock.send(&req).map_err(errno)?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = sock.recv(&mut buf, true).map_err(errno)?.unwrap_or(0);
        for m in nlraw::messages(&buf[..n]) {
            let m = m.map_err(|_| libc::EBADMSG)?;
            if m.is_done() {
                return Ok(out);
            }
            if let Some(e) = m.errno() {
                return Err(if e == 0 { libc::EIO } else { e });
            }
            let body = m.body;
            if body.len() >= MSG_LEN {
                let port = u16::from_be_bytes([body[4], body[5]]);
                let src = &body[8..24];
                let address = if body[0] == libc::AF_INET as u8 {
                    IpAddr::V4(Ipv4Addr::new(src[0], src[1], src[2], src[3]))
                } else {
                    IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(src).unwrap()))
                };
                let inode = u32::from_ne_bytes(body[68..72].try_into().unwrap());
                out.push((address, port, inode));
            }
        }
    }
}

/// The process holding socket `inode`: (pid, command name). Walks
/// /proc/*/fd, so it is only for error messages.
fn owner_of_inode(inode: u32) -> Option<(i32, String)> {
    let target = format!("socket:[{inode}]");
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(e.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == target.as_str()) {
                let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
                return Some((pid, comm.trim().to_string()));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bind_probe_sees_every_kind_of_holder_and_frees_what_it_took() {
        // A TCP listener or a bound UDP socket on one address, of either
        // family.
        for addr in ["127.0.0.1:0", "[::1]:0"] {
            for protocol in [Protocol::Tcp, Protocol::Udp] {
                let (holder, port): (Box<dyn std::any::Any>, u16) = match protocol {
                    Protocol::Tcp => {
                        let l = std::net::TcpListener::bind(addr).unwrap();
                        let port = l.local_addr().unwrap().port();
                        (Box::new(l), port)
                    }
                    _ => {
                        let u = std::net::UdpSocket::bind(addr).unwrap();
                        let port = u.local_addr().unwrap().port();
                        (Box::new(u), port)
                    }
                };
                let what = format!("{} on {addr}", protocol.as_str());
                assert!(!port_unused(protocol, port), "{what}");
                drop(holder);
                assert!(port_unused(protocol, port), "{what}, closed");
                // The probe itself holds nothing afterwards.
                assert!(port_unused(protocol, port), "{what}, probed twice");
            }
        }
        // SCTP is always left to the dump.
        assert!(!port_unused(Protocol::Sctp, 9));
    }

    #[test]
    fn a_listener_in_this_namespace_is_found_with_its_holder() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let found = listeners(Protocol::Tcp).unwrap();
        let me = found
            .iter()
            .find(|s| s.port == port)
            .expect("our listener is listed");
        assert!(me.overlaps(Protocol::Tcp, None, port));
        assert!(me.overlaps(Protocol::Tcp, Some("127.0.0.1".parse().unwrap()), port));
        assert!(!me.overlaps(Protocol::Tcp, Some("127.0.0.2".parse().unwrap()), port));
        assert!(!me.overlaps(Protocol::Udp, None, port));
        assert!(
            me.holder().contains(&format!("pid {}", std::process::id())),
            "{}",
            me.holder()
        );

        let u = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        let uport = u.local_addr().unwrap().port();
        let found = listeners(Protocol::Udp).unwrap();
        assert!(found.iter().any(|s| s.port == uport
            && s.overlaps(Protocol::Udp, Some("10.1.2.3".parse().unwrap()), uport)));
    }
}
