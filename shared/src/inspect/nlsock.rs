//! The reader's NETLINK_ROUTE socket: requests, their replies, and
//! network namespace ids.
//!
//! A socket belongs to the namespace it was opened in, whichever thread
//! uses it later. Requests are answered in order, each reply handed on as
//! it is parsed; anything else that arrives while a reply is read (a
//! change notification, a reply to an older request) is reported as a
//! stray, which tells the reader that the namespace changed.
//!
//! An nsid is the number a namespace gives another one (IFLA_LINK_NETNSID
//! names a veth peer's namespace by it). [`NlSock::nsid_for`] asks the
//! socket's namespace for the nsid of the namespace behind a file, and
//! has one assigned when there is none.

use std::collections::HashSet;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

use netlink_packet_core::{
    NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_ECHO,
    NLM_F_REQUEST,
};
use netlink_packet_route::nsid::{NsidAttribute, NsidMessage};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// One NETLINK_ROUTE socket and its request sequence.
pub(super) struct NlSock {
    sock: Socket,
    seq: u32,
    /// nsid requests sent, for [`super::ReadStats`].
    pub nsid_requests: usize,
}

impl NlSock {
    /// A socket in the calling thread's namespace, subscribed to the
    /// multicast groups in the bitmask `groups` (bit `g - 1` for group
    /// `g`) at bind: one bind instead of a setsockopt per group, each of
    /// which takes netlink's global table lock twice.
    pub fn open(groups: u32) -> io::Result<NlSock> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind(&SocketAddr::new(0, groups))?;
        let _ = sock.set_netlink_get_strict_chk(true);
        // A dump never blocks for long; this only guards against a lost reply.
        let tv = libc::timeval {
            tv_sec: 2,
            tv_usec: 0,
        };
        // SAFETY: valid fd and a properly sized timeval.
        unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &tv as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            );
        }
        Ok(NlSock {
            sock,
            seq: 0,
            nsid_requests: 0,
        })
    }

    pub fn raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    fn send(&mut self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<u32> {
        self.seq = self.seq.wrapping_add(1).max(1);
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = self.seq;
        let mut nl = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        nl.finalize();
        let mut out = vec![0u8; nl.buffer_len()];
        nl.serialize(&mut out);
        self.sock.send(&out, 0)?;
        Ok(self.seq)
    }

    /// Read the replies to request `seq`, handing each to `each` as it
    /// is parsed (a dump of a namespace with thousands of links is never
    /// held whole), until its Done (dump) or its first answer (`single`).
    /// True if something else arrived in between: a notification, an
    /// overrun (ENOBUFS), or a message that could not be parsed.
    fn collect(
        &mut self,
        buf: &mut [u8],
        seq: u32,
        single: bool,
        each: &mut dyn FnMut(RouteNetlinkMessage),
    ) -> io::Result<bool> {
        let mut stray = false;
        loop {
            // SAFETY: buf is a valid writable buffer of buf.len() bytes.
            let n = unsafe {
                libc::recv(
                    self.raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                    0,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::ENOBUFS) {
                    stray = true;
                    continue;
                }
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let mut off = 0usize;
            let n = n as usize;
            while off + 16 <= n {
                let len = match NetlinkBuffer::new_checked(&buf[off..n]) {
                    Ok(b) => b.length() as usize,
                    Err(_) => break,
                };
                if len < 16 || off + len > n {
                    break;
                }
                let raw = &buf[off..off + len];
                off += (len + 3) & !3;
                let Ok(msg) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(raw) else {
                    // Something we cannot parse: if it was a notification,
                    // re-reading the topology is the safe answer.
                    stray = true;
                    continue;
                };
                if msg.header.sequence_number != seq {
                    stray = true;
                    continue;
                }
                match msg.payload {
                    NetlinkPayload::Done(_) => return Ok(stray),
                    NetlinkPayload::Error(e) => {
                        if e.code.is_none() {
                            return Ok(stray);
                        }
                        return Err(e.to_io());
                    }
                    NetlinkPayload::InnerMessage(m) => {
                        each(m);
                        if single {
                            return Ok(stray);
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// A dump request; `each` gets every reply. True if something else
    /// arrived meanwhile (see [`NlSock::collect`]).
    pub fn dump(
        &mut self,
        buf: &mut [u8],
        msg: RouteNetlinkMessage,
        mut each: impl FnMut(RouteNetlinkMessage),
    ) -> io::Result<bool> {
        let seq = self.send(msg, NLM_F_REQUEST | NLM_F_DUMP)?;
        self.collect(buf, seq, false, &mut each)
    }

    /// Drain pending notifications without blocking; true if any came.
    pub fn drain(&mut self, buf: &mut [u8]) -> bool {
        let mut any = false;
        loop {
            // SAFETY: as in collect.
            let n = unsafe {
                libc::recv(
                    self.raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n > 0 {
                any = true;
                continue;
            }
            if n < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOBUFS) {
                any = true;
                continue;
            }
            return any;
        }
    }

    /// Make this a listener for every namespace the socket's namespace
    /// has an nsid for (NETLINK_LISTEN_ALL_NSID; needs CAP_NET_BROADCAST),
    /// with a receive buffer for a burst of their notifications.
    pub fn listen_all(&mut self) -> io::Result<()> {
        self.sock.set_listen_all_namespaces(true)?;
        let size: libc::c_int = 4 << 20;
        for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
            // SAFETY: valid fd and a properly sized int.
            let r = unsafe {
                libc::setsockopt(
                    self.raw_fd(),
                    libc::SOL_SOCKET,
                    opt,
                    &size as *const _ as *const libc::c_void,
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if r == 0 {
                break;
            }
        }
        Ok(())
    }

    /// Where the notifications waiting on a listener came from, without
    /// blocking: the nsid of each one's namespace, `None` for the
    /// socket's own. `Err` when some were lost (the buffer overran).
    pub fn sources(&mut self, buf: &mut [u8]) -> Result<HashSet<Option<i32>>, ()> {
        let mut out = HashSet::new();
        let mut lost = false;
        loop {
            let mut iov = libc::iovec {
                iov_base: buf.as_mut_ptr() as *mut libc::c_void,
                iov_len: buf.len(),
            };
            // Room for one int's control message, aligned.
            let mut control = [0u64; 8];
            // SAFETY: an all-zero msghdr is valid; its pointers are set below.
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
            msg.msg_controllen = std::mem::size_of_val(&control) as _;
            // SAFETY: msg points at live buffers of the sizes it gives.
            let n = unsafe { libc::recvmsg(self.raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
            if n < 0 {
                match io::Error::last_os_error().raw_os_error() {
                    Some(libc::ENOBUFS) => lost = true,
                    Some(libc::EINTR) => {}
                    _ => break, // EAGAIN: nothing more
                }
                continue;
            }
            let mut nsid = None;
            // SAFETY: walking the control messages recvmsg filled in.
            unsafe {
                let mut c = libc::CMSG_FIRSTHDR(&msg);
                while !c.is_null() {
                    if (*c).cmsg_level == libc::SOL_NETLINK
                        && (*c).cmsg_type == libc::NETLINK_LISTEN_ALL_NSID
                    {
                        nsid = Some(std::ptr::read_unaligned(
                            libc::CMSG_DATA(c) as *const libc::c_int
                        ));
                    }
                    c = libc::CMSG_NXTHDR(&msg, c);
                }
            }
            out.insert(nsid);
        }
        if lost {
            Err(())
        } else {
            Ok(out)
        }
    }

    /// Send an nsid request about the namespace `ns` and read its one
    /// answer: the nsid, `None` when the namespace has none here.
    fn nsid_request(
        &mut self,
        buf: &mut [u8],
        ns: BorrowedFd<'_>,
        assign: bool,
    ) -> io::Result<Option<i32>> {
        self.nsid_requests += 1;
        let mut req = NsidMessage::default();
        req.attributes
            .push(NsidAttribute::Fd(ns.as_raw_fd() as u32));
        let seq = if assign {
            // -1: any free id. NLM_F_ECHO has the kernel send the
            // assignment (its RTM_NEWNSID notification) back to us.
            req.attributes.push(NsidAttribute::Id(-1));
            self.send(
                RouteNetlinkMessage::NewNsId(req),
                NLM_F_REQUEST | NLM_F_ECHO,
            )?
        } else {
            self.send(RouteNetlinkMessage::GetNsId(req), NLM_F_REQUEST)?
        };
        let mut id = None;
        self.collect(buf, seq, true, &mut |m| {
            if let RouteNetlinkMessage::NewNsId(n) = m {
                id = n.attributes.iter().find_map(|a| match a {
                    NsidAttribute::Id(i) if *i >= 0 => Some(*i),
                    _ => None,
                });
            }
        })?;
        Ok(id)
    }

    /// The nsid this socket's namespace gives the namespace `ns`; one is
    /// assigned if it has none (RTM_NEWNSID, which needs CAP_NET_ADMIN
    /// here). One request, two the first time, three when another
    /// process assigned one in between.
    pub fn nsid_for(&mut self, buf: &mut [u8], ns: BorrowedFd<'_>) -> io::Result<Option<i32>> {
        if let Some(id) = self.nsid_request(buf, ns, false)? {
            return Ok(Some(id));
        }
        match self.nsid_request(buf, ns, true) {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => self.nsid_request(buf, ns, false),
            r => r,
        }
    }
}
