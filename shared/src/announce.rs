//! Gratuitous ARP on a host bridge, on behalf of a container.
//!
//! A container that comes back with an address an earlier container had
//! (a restart, a static `io.wirehook.ip`) has a new MAC, while its
//! neighbours' ARP caches may still hold the old one for up to 45 s. The
//! container's own announcement (arp_notify) leaves the moment its
//! interface comes up, which may be before its bridge port forwards (the
//! kernel enables the port asynchronously), so it can be lost. The hook
//! therefore announces the address itself: one broadcast ARP request for
//! the address, from the container's MAC, sent out of the bridge device in
//! the host namespace, which floods it to every port that forwards. Every
//! neighbour that caches the address takes the new MAC (a gratuitous ARP
//! overrides an existing entry).

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::error::{Error, Result};

const ETH_P_ARP: u16 = 0x0806;

/// The frame: Ethernet header and an ARP request whose sender and target
/// address are both `ip` (RFC 5227's announcement).
fn frame(mac: [u8; 6], ip: Ipv4Addr) -> [u8; 42] {
    let mut f = [0u8; 42];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    // Ethernet, IPv4, 6-byte and 4-byte addresses, request.
    f[14..22].copy_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 1]);
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&ip.octets());
    // Target hardware address: zero (as an announcement has it).
    f[38..42].copy_from_slice(&ip.octets());
    f
}

/// A packet socket for gratuitous ARPs, in the namespace it was opened in.
///
/// Closing a packet socket costs an RCU grace period (`packet_release`
/// waits in `synchronize_net`: 10-20 ms on a busy machine), more than the
/// rest of a bridge container's setup. A long-lived process keeps one open;
/// the hook keeps its own until it exits ([`Announcer::keep_until_exit`])
/// and leaves the last close to a child that outlives it.
pub struct Announcer {
    sock: OwnedFd,
}

static KEPT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Did this process keep a packet socket open until its exit?
pub fn sockets_kept() -> bool {
    KEPT.load(std::sync::atomic::Ordering::SeqCst)
}

impl Announcer {
    /// A packet socket in the calling thread's network namespace.
    pub fn open() -> Result<Announcer> {
        // SAFETY: plain socket call; the result is checked and owned at once.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(Error::invalid(format!(
                "cannot open a packet socket to announce addresses: {}",
                std::io::Error::last_os_error()
            )));
        }
        // SAFETY: fd is a fresh descriptor nobody else owns.
        let sock = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Announcer { sock })
    }

    /// Send one gratuitous ARP for `ip` at `mac` out of the link `ifindex`
    /// of the socket's namespace.
    pub fn send(&self, ifindex: u32, mac: [u8; 6], ip: Ipv4Addr) -> Result<()> {
        // SAFETY: sockaddr_ll is plain old data; zero is a valid start.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = ETH_P_ARP.to_be();
        addr.sll_ifindex = ifindex as i32;
        addr.sll_halen = 6;
        addr.sll_addr[..6].copy_from_slice(&[0xff; 6]);
        let f = frame(mac, ip);
        // SAFETY: the buffer and address outlive the call; sizes are theirs.
        let n = unsafe {
            libc::sendto(
                self.sock.as_raw_fd(),
                f.as_ptr().cast(),
                f.len(),
                0,
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if n < 0 {
            return Err(Error::invalid(format!(
                "cannot announce {ip} on link {ifindex}: {}",
                std::io::Error::last_os_error()
            )));
        }
        Ok(())
    }

    /// Leave the socket open until the process exits (see the type's doc;
    /// [`sockets_kept`] then says so).
    pub fn keep_until_exit(self) {
        KEPT.store(true, std::sync::atomic::Ordering::SeqCst);
        std::mem::forget(self.sock);
    }
}

/// Send one gratuitous ARP for `ip` at `mac` out of the link `ifindex` of
/// the calling thread's network namespace, on a socket of its own that is
/// closed afterwards (which waits for a grace period; see [`Announcer`]).
pub fn gratuitous_arp(ifindex: u32, mac: [u8; 6], ip: Ipv4Addr) -> Result<()> {
    Announcer::open()?.send(ifindex, mac, ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_announcement_names_the_address_twice() {
        let mac = [0x02, 1, 2, 3, 4, 5];
        let f = frame(mac, Ipv4Addr::new(10, 88, 7, 7));
        assert_eq!(&f[0..6], &[0xff; 6], "broadcast");
        assert_eq!(&f[6..12], &mac, "from the container's MAC");
        assert_eq!(&f[12..14], &[0x08, 0x06], "ARP");
        assert_eq!(&f[20..22], &[0, 1], "request");
        assert_eq!(&f[22..28], &mac);
        assert_eq!(&f[28..32], &[10, 88, 7, 7]);
        assert_eq!(&f[32..38], &[0; 6]);
        assert_eq!(&f[38..42], &[10, 88, 7, 7]);
    }
}
