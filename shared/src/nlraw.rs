//! A raw netlink socket for the families wirehook speaks by hand:
//! nf_tables and conntrack (`firewall::nfnetlink`), WireGuard's generic
//! netlink family (`wireguard`) and sock_diag (`listeners`). Each of them
//! builds its own messages; what they share is here: opening the socket,
//! sending a datagram to the kernel, receiving one, and walking the
//! netlink messages a datagram holds.
//!
//! rtnetlink requests go through the rtnetlink crate (`netlink`), and
//! wiretop's reader through netlink-sys (`inspect::nlsock`): neither
//! needs this.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// Length of `struct nlmsghdr`.
pub const HDR_LEN: usize = 16;

/// A bound netlink socket of one protocol, in the network namespace of
/// the thread that opened it.
#[derive(Debug)]
pub struct RawSocket {
    fd: OwnedFd,
}

impl RawSocket {
    /// `socket(AF_NETLINK, SOCK_RAW, protocol)`, bound with a port id the
    /// kernel picks.
    pub fn open(protocol: libc::c_int) -> io::Result<RawSocket> {
        // SAFETY: plain socket(2) call; the fd is owned right away.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                protocol,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: raw is a fresh, valid descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let addr = kernel_addr();
        // SAFETY: addr is a valid sockaddr_nl of the given size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &addr as *const libc::sockaddr_nl as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(RawSocket { fd })
    }

    /// An integer socket option.
    pub fn set_int(
        &self,
        level: libc::c_int,
        name: libc::c_int,
        val: libc::c_int,
    ) -> io::Result<()> {
        self.set(level, name, &val)
    }

    /// A blocking receive gives up after `d` (WouldBlock): a confused
    /// kernel never hangs the caller.
    pub fn set_recv_timeout(&self, d: Duration) -> io::Result<()> {
        let tv = libc::timeval {
            tv_sec: d.as_secs() as libc::time_t,
            tv_usec: d.subsec_micros() as libc::suseconds_t,
        };
        self.set(libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv)
    }

    /// setsockopt(2) with a plain-data value.
    fn set<T>(&self, level: libc::c_int, name: libc::c_int, val: &T) -> io::Result<()> {
        // SAFETY: val points at a valid T of the given size.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                val as *const T as *const libc::c_void,
                std::mem::size_of::<T>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Send one datagram to the kernel, whole.
    pub fn send(&self, buf: &[u8]) -> io::Result<()> {
        let addr = kernel_addr();
        loop {
            // SAFETY: buf and addr are valid for the given lengths.
            let rc = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    buf.as_ptr() as *const libc::c_void,
                    buf.len(),
                    0,
                    &addr as *const libc::sockaddr_nl as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
                )
            };
            if rc >= 0 {
                if rc as usize != buf.len() {
                    return Err(io::Error::other("short netlink send"));
                }
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Receive one datagram into `buf`: its length, or `None` when
    /// nothing is queued and `block` is false. A blocking receive that
    /// times out is `WouldBlock`; a datagram larger than `buf` is an
    /// error, never a silently cut reply.
    pub fn recv(&self, buf: &mut [u8], block: bool) -> io::Result<Option<usize>> {
        let flags = if block { 0 } else { libc::MSG_DONTWAIT };
        loop {
            // SAFETY: buf is valid for writes of buf.len() bytes.
            let rc = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                    flags | libc::MSG_TRUNC,
                )
            };
            if rc >= 0 {
                let n = rc as usize;
                if n > buf.len() {
                    return Err(io::Error::other("netlink reply truncated"));
                }
                return Ok(Some(n));
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock if !block => return Ok(None),
                _ => return Err(e),
            }
        }
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// The kernel's address (port id 0), also the "pick one for me" bind address.
fn kernel_addr() -> libc::sockaddr_nl {
    // SAFETY: sockaddr_nl is plain data; zeroed is a valid value.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    addr
}

/// One netlink message of a received datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    pub kind: u16,
    pub flags: u16,
    pub seq: u32,
    /// What follows the header.
    pub body: &'a [u8],
}

impl Message<'_> {
    /// For an `NLMSG_ERROR` message: its code as a positive errno (0: an
    /// acknowledgement).
    pub fn errno(&self) -> Option<i32> {
        (self.kind == libc::NLMSG_ERROR as u16).then(|| {
            self.body.get(..4).map_or(libc::EIO, |b| {
                -i32::from_ne_bytes(b.try_into().expect("4 bytes"))
            })
        })
    }

    pub fn is_done(&self) -> bool {
        self.kind == libc::NLMSG_DONE as u16
    }
}

/// The messages of one datagram, in order. A message whose length does
/// not fit ends the walk with one `Err` (the rest cannot be framed).
pub fn messages(buf: &[u8]) -> Messages<'_> {
    Messages { rest: buf }
}

pub struct Messages<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Messages<'a> {
    type Item = io::Result<Message<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        let b = self.rest;
        if b.len() < HDR_LEN {
            return None;
        }
        let len = u32::from_ne_bytes(b[0..4].try_into().expect("4 bytes")) as usize;
        if len < HDR_LEN || len > b.len() {
            self.rest = &[];
            return Some(Err(io::Error::other("malformed netlink reply")));
        }
        let msg = Message {
            kind: u16::from_ne_bytes([b[4], b[5]]),
            flags: u16::from_ne_bytes([b[6], b[7]]),
            seq: u32::from_ne_bytes(b[8..12].try_into().expect("4 bytes")),
            body: &b[HDR_LEN..len],
        };
        // Messages are 4-byte aligned.
        self.rest = &b[((len + 3) & !3).min(b.len())..];
        Some(Ok(msg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(kind: u16, seq: u32, body: &[u8]) -> Vec<u8> {
        let len = HDR_LEN + body.len();
        let mut v = Vec::new();
        v.extend_from_slice(&(len as u32).to_ne_bytes());
        v.extend_from_slice(&kind.to_ne_bytes());
        v.extend_from_slice(&0u16.to_ne_bytes());
        v.extend_from_slice(&seq.to_ne_bytes());
        v.extend_from_slice(&0u32.to_ne_bytes());
        v.extend_from_slice(body);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v
    }

    #[test]
    fn walks_aligned_messages_and_reads_errors() {
        let mut buf = msg(100, 7, b"abc");
        buf.extend(msg(
            libc::NLMSG_ERROR as u16,
            8,
            &(-libc::ENOENT).to_ne_bytes(),
        ));
        buf.extend(msg(libc::NLMSG_DONE as u16, 9, &[0; 4]));
        let m: Vec<_> = messages(&buf).map(Result::unwrap).collect();
        assert_eq!(m.len(), 3);
        assert_eq!((m[0].kind, m[0].seq, m[0].body), (100, 7, &b"abc"[..]));
        assert_eq!(m[0].errno(), None);
        assert_eq!(m[1].errno(), Some(libc::ENOENT));
        assert!(m[2].is_done());
    }

    #[test]
    fn a_bad_length_ends_the_walk_with_one_error() {
        let mut buf = msg(100, 1, b"ok");
        let mut bad = msg(100, 2, b"xxxx");
        bad[0..4].copy_from_slice(&999u32.to_ne_bytes());
        buf.extend(bad);
        let m: Vec<_> = messages(&buf).collect();
        assert_eq!(m.len(), 2);
        assert!(m[0].is_ok() && m[1].is_err());
    }

    #[test]
    fn asks_the_kernel_and_reads_its_answer() {
        // sock_diag on this namespace: a dump request for TCP listeners is
        // answered with zero or more sockets and a DONE.
        let s = RawSocket::open(libc::NETLINK_SOCK_DIAG).expect("open");
        s.set_recv_timeout(Duration::from_secs(5)).unwrap();
        let mut req = vec![0u8; HDR_LEN + 56];
        let len = req.len() as u32;
        req[0..4].copy_from_slice(&len.to_ne_bytes());
        req[4..6].copy_from_slice(&20u16.to_ne_bytes()); // SOCK_DIAG_BY_FAMILY
        let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
        req[6..8].copy_from_slice(&flags.to_ne_bytes());
        req[16] = libc::AF_INET as u8;
        req[17] = libc::IPPROTO_TCP as u8;
        req[20..24].copy_from_slice(&(1u32 << 10).to_ne_bytes()); // TCP_LISTEN
        s.send(&req).unwrap();
        let mut buf = vec![0u8; 32 * 1024];
        let mut done = false;
        while !done {
            let n = s.recv(&mut buf, true).unwrap().unwrap();
            for m in messages(&buf[..n]) {
                let m = m.unwrap();
                assert_eq!(m.errno(), None, "sock_diag refused the dump");
                done |= m.is_done();
            }
        }
        assert_eq!(s.recv(&mut buf, false).unwrap(), None, "nothing left");
    }
}
