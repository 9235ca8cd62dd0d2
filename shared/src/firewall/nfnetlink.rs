//! Raw nfnetlink: a `NETLINK_NETFILTER` socket, a builder for netlink
//! messages and attributes, an attribute parser, nf_tables transactions
//! (`NFNL_MSG_BATCH_BEGIN` .. `NFNL_MSG_BATCH_END`) and plain request /
//! dump exchanges (used by ctnetlink).
//!
//! Nothing here knows about wirehook's ruleset: `mod.rs` encodes set
//! elements with it, `conntrack.rs` speaks ctnetlink through it. The
//! constants come from `linux/netlink.h`, `linux/netfilter/nfnetlink.h`,
//! `linux/netfilter/nf_tables.h` and `linux/netfilter/nfnetlink_conntrack.h`.
//!
//! How a transaction is confirmed: the kernel processes a netlink message
//! synchronously inside `sendmsg`, so when `sendmsg` returns every
//! acknowledgement of the batch is already queued on the socket. Each
//! message of the batch carries `NLM_F_ACK`, so each gets exactly one
//! answer (0 or -errno) keyed by its sequence number; a failure of the
//! commit itself is reported against the `BATCH_BEGIN` sequence number.
//! Any error means the kernel aborted the whole transaction.
//!
//! Why sockets are kept open ([`with_socket`]): when a `NETLINK_NETFILTER`
//! socket is closed, nf_tables' release notifier waits for its pending
//! destroy work, which after any deletion (set element, chain) includes an
//! RCU grace period — 12-20 ms measured on this kernel, against ~25 us
//! for the deletion itself. Keeping one socket per network namespace open
//! for the life of the process moves that wait to process exit, where it
//! overlaps whatever the caller does meanwhile (often it has elapsed).

use std::io;

use crate::error::{Error, Result};
use crate::nlraw::{self, RawSocket};

// linux/netlink.h
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_MULTI: u16 = 0x2;
pub const NLM_F_ACK: u16 = 0x4;
pub const NLM_F_DUMP: u16 = 0x300;
pub const NLM_F_CREATE: u16 = 0x400;
const NLM_F_CAPPED: u16 = 0x100;
const NLM_F_ACK_TLVS: u16 = 0x200;
const NLA_F_NESTED: u16 = 0x8000;
const NLA_TYPE_MASK: u16 = 0x3fff;
const NETLINK_CAP_ACK: libc::c_int = 10;
const NETLINK_EXT_ACK: libc::c_int = 11;
const NLMSGERR_ATTR_MSG: u16 = 1;
const NLMSG_HDRLEN: usize = 16;

// linux/netfilter/nfnetlink.h
pub const NFNL_SUBSYS_CTNETLINK: u16 = 1;
pub const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFGENMSG_LEN: usize = 4;

// linux/netfilter/nf_tables.h: message types
pub const NFT_MSG_GETTABLE: u16 = 1;
pub const NFT_MSG_DELTABLE: u16 = 2;
pub const NFT_MSG_DELCHAIN: u16 = 5;
pub const NFT_MSG_GETSET: u16 = 10;
pub const NFT_MSG_NEWSETELEM: u16 = 12;
pub const NFT_MSG_GETSETELEM: u16 = 13;
pub const NFT_MSG_DELSETELEM: u16 = 14;

// nf_tables.h: attributes
pub const NFTA_TABLE_NAME: u16 = 1;
pub const NFTA_SET_TABLE: u16 = 1;
pub const NFTA_SET_NAME: u16 = 2;
pub const NFTA_CHAIN_TABLE: u16 = 1;
pub const NFTA_CHAIN_NAME: u16 = 3;
pub const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
pub const NFTA_SET_ELEM_LIST_SET: u16 = 2;
pub const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
pub const NFTA_LIST_ELEM: u16 = 1;
pub const NFTA_SET_ELEM_KEY: u16 = 1;
pub const NFTA_SET_ELEM_DATA: u16 = 2;
pub const NFTA_DATA_VALUE: u16 = 1;

/// `NFPROTO_INET`: the family of `table inet ...`.
pub const NFPROTO_INET: u8 = 1;

/// One netlink message being built: header, `nfgenmsg`, attributes.
/// Attribute offsets are relative to the start of the message.
#[derive(Clone, Debug)]
pub struct Msg {
    buf: Vec<u8>,
}

impl Msg {
    /// A message of subsystem `subsys`, type `ty` within it, for `family`.
    pub fn new(subsys: u16, ty: u16, flags: u16, family: u8) -> Msg {
        Self::raw((subsys << 8) | ty, flags, family, 0)
    }

    fn raw(full_type: u16, flags: u16, family: u8, res_id: u16) -> Msg {
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // length, fixed in finish
        buf.extend_from_slice(&full_type.to_ne_bytes());
        buf.extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // seq, set when sent
        buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: kernel fills
        buf.push(family);
        buf.push(0); // NFNETLINK_V0
        buf.extend_from_slice(&res_id.to_be_bytes());
        Msg { buf }
    }

    /// An attribute with a raw payload (padded to 4 bytes).
    pub fn attr(&mut self, ty: u16, data: &[u8]) -> &mut Self {
        let len = 4 + data.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.pad();
        self
    }

    /// A NUL-terminated string attribute.
    pub fn attr_str(&mut self, ty: u16, s: &str) -> &mut Self {
        let mut data = Vec::with_capacity(s.len() + 1);
        data.extend_from_slice(s.as_bytes());
        data.push(0);
        self.attr(ty, &data)
    }

    /// Open a nested attribute; close it with [`Msg::nest_end`].
    pub fn nest_start(&mut self, ty: u16) -> usize {
        let at = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        at
    }

    pub fn nest_end(&mut self, at: usize) {
        let len = (self.buf.len() - at) as u16;
        self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    }

    /// Append an attribute exactly as the kernel sent it (header included).
    pub fn raw_attr(&mut self, bytes: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(bytes);
        self.pad();
        self
    }

    fn pad(&mut self) {
        while self.buf.len() & 3 != 0 {
            self.buf.push(0);
        }
    }

    fn flags(&self) -> u16 {
        u16::from_ne_bytes([self.buf[6], self.buf[7]])
    }

    fn add_flags(&mut self, flags: u16) {
        let f = self.flags() | flags;
        self.buf[6..8].copy_from_slice(&f.to_ne_bytes());
    }

    fn finish(&mut self, seq: u32) {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.len() <= NLMSG_HDRLEN + NFGENMSG_LEN
    }
}

/// A parsed netlink attribute: its type (flags masked off), payload, and
/// the whole attribute as received (header included, for echoing back).
#[derive(Clone, Copy, Debug)]
pub struct Attr<'a> {
    pub ty: u16,
    pub data: &'a [u8],
    pub raw: &'a [u8],
}

impl<'a> Attr<'a> {
    pub fn nested(&self) -> Attrs<'a> {
        Attrs(self.data)
    }
}

/// Iterator over the attributes in a byte slice; stops at malformed data.
#[derive(Clone, Copy, Debug)]
pub struct Attrs<'a>(pub &'a [u8]);

impl<'a> Attrs<'a> {
    pub fn get(self, ty: u16) -> Option<Attr<'a>> {
        let mut it = self;
        it.find(|a: &Attr<'a>| a.ty == ty)
    }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = Attr<'a>;
    fn next(&mut self) -> Option<Attr<'a>> {
        let b = self.0;
        if b.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let ty = u16::from_ne_bytes([b[2], b[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > b.len() {
            self.0 = &[];
            return None;
        }
        let aligned = (len + 3) & !3;
        self.0 = if aligned >= b.len() {
            &[]
        } else {
            &b[aligned..]
        };
        Some(Attr {
            ty,
            data: &b[4..len],
            raw: &b[..len],
        })
    }
}

/// A message received from the kernel.
#[derive(Debug)]
pub struct Reply<'a> {
    pub ty: u16,
    pub flags: u16,
    pub seq: u32,
    /// Everything after the netlink header.
    pub body: &'a [u8],
}

impl<'a> Reply<'a> {
    /// For netfilter messages: the `nfgenmsg` family.
    pub fn family(&self) -> u8 {
        self.body.first().copied().unwrap_or(0)
    }

    /// For netfilter messages: the attributes after `nfgenmsg`.
    pub fn attrs(&self) -> Attrs<'a> {
        Attrs(self.body.get(NFGENMSG_LEN..).unwrap_or(&[]))
    }

    /// For `NLMSG_ERROR`: (errno as a positive number or 0, sequence number
    /// of the request it answers, extended-ack message if any).
    fn error(&self) -> Option<(i32, u32, Option<String>)> {
        if self.ty != NLMSG_ERROR || self.body.len() < 4 + NLMSG_HDRLEN {
            return None;
        }
        let code = i32::from_ne_bytes(self.body[0..4].try_into().ok()?);
        let orig = &self.body[4..4 + NLMSG_HDRLEN];
        let orig_len = u32::from_ne_bytes(orig[0..4].try_into().ok()?) as usize;
        let orig_seq = u32::from_ne_bytes(orig[8..12].try_into().ok()?);
        let mut msg = None;
        if self.flags & NLM_F_ACK_TLVS != 0 {
            // With NETLINK_CAP_ACK only the header of the request is echoed
            // (the flag NLM_F_CAPPED says so); otherwise the whole request.
            let skip = if self.flags & NLM_F_CAPPED != 0 {
                NLMSG_HDRLEN
            } else {
                orig_len.max(NLMSG_HDRLEN)
            };
            let tlvs = self.body.get(4 + ((skip + 3) & !3)..).unwrap_or(&[]);
            msg = Attrs(tlvs).get(NLMSGERR_ATTR_MSG).map(|a| {
                String::from_utf8_lossy(a.data)
                    .trim_end_matches('\0')
                    .to_string()
            });
        }
        Some((-code, orig_seq, msg))
    }
}

fn parse_replies(buf: &[u8]) -> Vec<Reply<'_>> {
    nlraw::messages(buf)
        .map_while(|m| m.ok())
        .map(|m| Reply {
            ty: m.kind,
            flags: m.flags,
            seq: m.seq,
            body: m.body,
        })
        .collect()
}

/// The kernel's answer to one message of a transaction or request list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MsgError {
    /// Index of the message in the list that was sent.
    pub index: usize,
    /// Positive errno.
    pub errno: i32,
    /// Extended-ack text, when the kernel gave one.
    pub text: Option<String>,
}

impl MsgError {
    pub fn describe(&self) -> String {
        let base = io::Error::from_raw_os_error(self.errno).to_string();
        match &self.text {
            Some(t) if !t.is_empty() => format!("{base} ({t})"),
            _ => base,
        }
    }
}

/// Outcome of a transaction that the kernel received and answered.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    /// Messages the kernel refused (the transaction was then aborted).
    pub errors: Vec<MsgError>,
    /// The commit itself failed (reported against the batch header).
    pub commit_error: Option<MsgError>,
}

impl BatchOutcome {
    pub fn ok(&self) -> bool {
        self.errors.is_empty() && self.commit_error.is_none()
    }
}

/// A `NETLINK_NETFILTER` socket in the calling thread's network namespace.
pub struct Socket {
    sock: RawSocket,
    seq: u32,
    rcvbuf: usize,
    sndbuf: usize,
}

const RECV_BUF: usize = 64 * 1024;

/// Independent requests sent per datagram by [`Socket::requests_with`].
const REQUEST_CHUNK: usize = 512;

impl Socket {
    pub fn open() -> Result<Socket> {
        let sock = RawSocket::open(libc::NETLINK_NETFILTER)
            .map_err(|e| Error::sys("open NETLINK_NETFILTER socket", e))?;
        // Best effort: short error acks with the kernel's explanation.
        let _ = sock.set_int(libc::SOL_NETLINK, NETLINK_CAP_ACK, 1);
        let _ = sock.set_int(libc::SOL_NETLINK, NETLINK_EXT_ACK, 1);
        // A blocking read never waits forever on a confused kernel.
        let _ = sock.set_recv_timeout(std::time::Duration::from_secs(5));
        Ok(Socket {
            sock,
            seq: initial_seq(),
            rcvbuf: 0,
            sndbuf: 0,
        })
    }

    /// Make room for sending `len` bytes in one datagram (netlink refuses
    /// anything larger than the send buffer with EMSGSIZE).
    fn reserve_send(&mut self, len: usize) {
        let want = len + 64 * 1024;
        if want > self.sndbuf && want > 200 * 1024 {
            let v = want.min(i32::MAX as usize) as libc::c_int;
            if self
                .sock
                .set_int(libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, v)
                .is_err()
            {
                let _ = self.sock.set_int(libc::SOL_SOCKET, libc::SO_SNDBUF, v);
            }
            self.sndbuf = want;
        }
    }

    /// Make room for `n` acknowledgements queued at once (each is a small
    /// skb, but its accounted size is close to a kilobyte).
    fn reserve_acks(&mut self, n: usize) {
        let want = (n + 16) * 2048;
        if want > self.rcvbuf && want > 200 * 1024 {
            let v = want.min(i32::MAX as usize) as libc::c_int;
            if self
                .sock
                .set_int(libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, v)
                .is_err()
            {
                let _ = self.sock.set_int(libc::SOL_SOCKET, libc::SO_RCVBUF, v);
            }
            self.rcvbuf = want;
        }
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        if self.seq == 0 {
            self.seq = 1;
        }
        self.seq
    }

    fn send(&self, buf: &[u8], op: &str) -> Result<()> {
        self.sock
            .send(buf)
            .map_err(|e| Error::netlink(op.to_string(), e))
    }

    /// One datagram; `Ok(None)` when nothing is queued and `block` is false.
    fn recv(&self, buf: &mut [u8], block: bool, op: &str) -> Result<Option<usize>> {
        self.sock.recv(buf, block).map_err(|e| {
            if e.kind() == io::ErrorKind::WouldBlock {
                Error::netlink(
                    op.to_string(),
                    io::Error::other("no answer from the kernel within 5 s"),
                )
            } else {
                Error::netlink(op.to_string(), e)
            }
        })
    }

    /// Send `msgs` as one nf_tables transaction and collect the verdicts.
    /// `Err` only for transport trouble; refusals come back in the outcome.
    pub fn batch(&mut self, msgs: &[Msg], op: &str) -> Result<BatchOutcome> {
        self.reserve_acks(msgs.len());
        let total: usize =
            msgs.iter().map(Msg::len).sum::<usize>() + 2 * (NLMSG_HDRLEN + NFGENMSG_LEN);
        let mut out = Vec::with_capacity(total);
        let begin_seq = self.next_seq();
        let mut begin = Msg::raw(NFNL_MSG_BATCH_BEGIN, 0, 0, NFNL_SUBSYS_NFTABLES);
        begin.finish(begin_seq);
        out.extend_from_slice(&begin.buf);
        let first = self.seq.wrapping_add(1);
        for m in msgs {
            let seq = self.next_seq();
            let mut m = m.clone();
            m.add_flags(NLM_F_ACK);
            m.finish(seq);
            out.extend_from_slice(&m.buf);
        }
        let mut end = Msg::raw(NFNL_MSG_BATCH_END, 0, 0, NFNL_SUBSYS_NFTABLES);
        end.finish(self.next_seq());
        out.extend_from_slice(&end.buf);
        self.reserve_send(out.len());
        self.send(&out, op)?;

        let index_of = |seq: u32| -> Option<usize> {
            let i = seq.wrapping_sub(first) as usize;
            (i < msgs.len()).then_some(i)
        };
        let mut outcome = BatchOutcome::default();
        let mut answered = vec![false; msgs.len()];
        let mut pending = msgs.len();
        let mut buf = vec![0u8; RECV_BUF];
        // Everything is queued by now (see the module doc); read without
        // blocking, and block only if acknowledgements are still missing.
        loop {
            let block = pending > 0 && outcome.commit_error.is_none() && outcome.errors.is_empty();
            let Some(n) = self.recv(&mut buf, block, op)? else {
                break;
            };
            for r in parse_replies(&buf[..n]) {
                let Some((errno, seq, text)) = r.error() else {
                    continue;
                };
                if seq == begin_seq {
                    if errno != 0 {
                        outcome.commit_error = Some(MsgError {
                            index: usize::MAX,
                            errno,
                            text,
                        });
                    }
                } else if let Some(i) = index_of(seq) {
                    if !answered[i] {
                        answered[i] = true;
                        pending -= 1;
                    }
                    if errno != 0 {
                        outcome.errors.push(MsgError {
                            index: i,
                            errno,
                            text,
                        });
                    }
                }
            }
        }
        Ok(outcome)
    }

    /// Send independent requests (not a transaction; e.g. ctnetlink
    /// deletes or element lookups) in one datagram, each with `NLM_F_ACK`;
    /// hand every reply that is not an acknowledgement to `each` with the
    /// index of its request, and return the errno of each (0 = done).
    pub fn requests_with(
        &mut self,
        msgs: &[Msg],
        op: &str,
        mut each: impl FnMut(usize, &Reply<'_>),
    ) -> Result<Vec<i32>> {
        let mut result = Vec::with_capacity(msgs.len());
        // Chunks bound the replies queued at once (each request may get a
        // reply and an acknowledgement).
        for (c, chunk) in msgs.chunks(REQUEST_CHUNK).enumerate() {
            let base = c * REQUEST_CHUNK;
            result.extend(self.requests_chunk(chunk, op, |i, r| each(base + i, r))?);
        }
        Ok(result)
    }

    fn requests_chunk(
        &mut self,
        msgs: &[Msg],
        op: &str,
        mut each: impl FnMut(usize, &Reply<'_>),
    ) -> Result<Vec<i32>> {
        self.reserve_acks(2 * msgs.len());
        let mut out = Vec::new();
        let first = self.seq.wrapping_add(1);
        for m in msgs {
            let seq = self.next_seq();
            let mut m = m.clone();
            m.add_flags(NLM_F_ACK);
            m.finish(seq);
            out.extend_from_slice(&m.buf);
        }
        self.reserve_send(out.len());
        self.send(&out, op)?;
        let mut result = vec![None; msgs.len()];
        let mut pending = msgs.len();
        let mut buf = vec![0u8; RECV_BUF];
        while pending > 0 {
            let Some(n) = self.recv(&mut buf, true, op)? else {
                break;
            };
            for r in parse_replies(&buf[..n]) {
                let Some((errno, seq, _)) = r.error() else {
                    let i = r.seq.wrapping_sub(first) as usize;
                    if i < msgs.len() {
                        each(i, &r);
                    }
                    continue;
                };
                let i = seq.wrapping_sub(first) as usize;
                if i < msgs.len() && result[i].is_none() {
                    result[i] = Some(errno);
                    pending -= 1;
                }
            }
        }
        Ok(result.into_iter().map(|r| r.unwrap_or(0)).collect())
    }

    /// Send one request and hand every reply message to `each` until the
    /// kernel acknowledges it (or ends the dump). Returns the errno of
    /// the final acknowledgement (0 = success).
    pub fn request(
        &mut self,
        msg: &Msg,
        op: &str,
        mut each: impl FnMut(&Reply<'_>),
    ) -> Result<i32> {
        let seq = self.next_seq();
        let mut m = msg.clone();
        let is_dump = m.flags() & NLM_F_DUMP == NLM_F_DUMP;
        if !is_dump {
            m.add_flags(NLM_F_ACK);
        }
        m.finish(seq);
        self.send(&m.buf, op)?;
        let mut buf = vec![0u8; RECV_BUF];
        loop {
            let Some(n) = self.recv(&mut buf, true, op)? else {
                continue;
            };
            for r in parse_replies(&buf[..n]) {
                if r.seq != seq {
                    continue;
                }
                match r.ty {
                    NLMSG_DONE => {
                        let code = r
                            .body
                            .get(0..4)
                            .map(|b| i32::from_ne_bytes(b.try_into().unwrap()))
                            .unwrap_or(0);
                        return Ok(-code);
                    }
                    NLMSG_ERROR => {
                        if let Some((errno, _, _)) = r.error() {
                            return Ok(errno);
                        }
                    }
                    _ => {
                        each(&r);
                        if is_dump && r.flags & NLM_F_MULTI == 0 {
                            return Ok(0);
                        }
                    }
                }
            }
        }
    }
}

/// Run `f` with this process's socket for the calling thread's network
/// namespace, opening it on first use (see the module doc). Sockets stay
/// open until the process exits; at most [`MAX_CACHED`] namespaces are
/// remembered (each socket also keeps its namespace alive).
pub fn with_socket<T>(f: impl FnOnce(&mut Socket) -> Result<T>) -> Result<T> {
    use std::os::unix::fs::MetadataExt;
    static CACHE: std::sync::Mutex<Vec<(u64, Socket)>> = std::sync::Mutex::new(Vec::new());
    let ino = std::fs::metadata("/proc/thread-self/ns/net")
        .map_err(|e| Error::io("stat", "/proc/thread-self/ns/net", e))?
        .ino();
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    let pos = match cache.iter().position(|(i, _)| *i == ino) {
        Some(p) => p,
        None => {
            if cache.len() >= MAX_CACHED {
                cache.remove(0);
            }
            cache.push((ino, Socket::open()?));
            cache.len() - 1
        }
    };
    f(&mut cache[pos].1)
}

/// How many namespaces' sockets [`with_socket`] keeps.
pub const MAX_CACHED: usize = 8;

fn initial_seq() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (t.as_secs() as u32) ^ t.subsec_nanos()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_roundtrip() {
        let mut m = Msg::new(NFNL_SUBSYS_NFTABLES, NFT_MSG_NEWSETELEM, 0, NFPROTO_INET);
        m.attr_str(NFTA_SET_ELEM_LIST_TABLE, "wirehook");
        let n = m.nest_start(NFTA_SET_ELEM_LIST_ELEMENTS);
        m.attr(NFTA_DATA_VALUE, &[1, 2, 3]);
        m.nest_end(n);
        m.finish(7);
        let replies = parse_replies(&m.buf);
        assert_eq!(replies.len(), 1);
        let r = &replies[0];
        assert_eq!(r.seq, 7);
        assert_eq!(r.family(), NFPROTO_INET);
        let attrs: Vec<_> = r.attrs().collect();
        assert_eq!(attrs.len(), 2);
        assert_eq!(attrs[0].data, b"wirehook\0");
        let inner: Vec<_> = attrs[1].nested().collect();
        assert_eq!(inner.len(), 1);
        assert_eq!(inner[0].data, &[1, 2, 3]);
        assert_eq!(attrs[1].raw.len(), 4 + 8);
    }
}
