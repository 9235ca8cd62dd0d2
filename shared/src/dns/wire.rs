//! DNS messages on the wire (RFC 1035, EDNS(0) from RFC 6891): only what
//! the resolver needs. Reading: the header, the one question of a query
//! (names with compression pointers), the OPT record of the additional
//! section. Writing: a response that copies the question and adds A, AAAA
//! and PTR answers and an OPT record, truncated (TC) when it would not fit.
//!
//! Everything read here comes from untrusted containers or upstream
//! servers. Every read is bounds-checked and returns [`WireError`], never
//! panics: a name is at most 255 bytes, a compression pointer must land
//! strictly before the labels that led to it (so it cannot loop) and at
//! most 64 are followed, and record counts are bounded by the message's
//! length.

use std::net::{Ipv4Addr, Ipv6Addr};

pub const HEADER_LEN: usize = 12;
/// Longest name on the wire (RFC 1035 2.3.4), including length bytes.
pub const MAX_NAME_WIRE: usize = 255;
/// Longest label.
pub const MAX_LABEL: usize = 63;
/// A DNS message over UDP without EDNS.
pub const UDP_MIN: usize = 512;
/// The largest UDP response this resolver sends, whatever EDNS offers
/// (the DNS flag day 2020 value; no IP fragmentation).
pub const UDP_MAX: usize = 1232;
/// A DNS message over TCP (two-byte length prefix).
pub const TCP_MAX: usize = 65535;

pub const TYPE_A: u16 = 1;
pub const TYPE_PTR: u16 = 12;
pub const TYPE_AAAA: u16 = 28;
pub const TYPE_OPT: u16 = 41;
pub const TYPE_ANY: u16 = 255;
pub const CLASS_IN: u16 = 1;
pub const CLASS_ANY: u16 = 255;

/// Response codes used here.
pub mod rcode {
    pub const NOERROR: u8 = 0;
    pub const FORMERR: u8 = 1;
    pub const SERVFAIL: u8 = 2;
    pub const NXDOMAIN: u8 = 3;
    pub const NOTIMP: u8 = 4;
    pub const REFUSED: u8 = 5;
}

const FLAG_QR: u16 = 0x8000;
const FLAG_AA: u16 = 0x0400;
const FLAG_TC: u16 = 0x0200;
const FLAG_RD: u16 = 0x0100;
const FLAG_RA: u16 = 0x0080;
const FLAG_CD: u16 = 0x0010;
/// Compression pointers followed in one name, at most.
const MAX_JUMPS: usize = 64;

/// Why a message could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("message shorter than the 12-byte header")]
    Short,
    #[error("message ends inside {0}")]
    Truncated(&'static str),
    #[error("name longer than 255 bytes")]
    NameTooLong,
    #[error("bad compression pointer")]
    BadPointer,
    #[error("label type {0:#x} is not supported")]
    LabelType(u8),
    #[error("a query must carry exactly one question, not {0}")]
    QuestionCount(u16),
    #[error("not a query")]
    NotQuery,
}

pub type WireResult<T> = std::result::Result<T, WireError>;

fn u16_at(msg: &[u8], at: usize, what: &'static str) -> WireResult<u16> {
    match msg.get(at..at + 2) {
        Some(b) => Ok(u16::from_be_bytes([b[0], b[1]])),
        None => Err(WireError::Truncated(what)),
    }
}

/// The fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub id: u16,
    pub flags: u16,
    pub qdcount: u16,
    pub ancount: u16,
    pub nscount: u16,
    pub arcount: u16,
}

impl Header {
    pub fn parse(msg: &[u8]) -> WireResult<Header> {
        if msg.len() < HEADER_LEN {
            return Err(WireError::Short);
        }
        let f = |i: usize| u16::from_be_bytes([msg[i], msg[i + 1]]);
        Ok(Header {
            id: f(0),
            flags: f(2),
            qdcount: f(4),
            ancount: f(6),
            nscount: f(8),
            arcount: f(10),
        })
    }

    pub fn is_response(&self) -> bool {
        self.flags & FLAG_QR != 0
    }

    pub fn opcode(&self) -> u8 {
        ((self.flags >> 11) & 0xf) as u8
    }

    pub fn rcode(&self) -> u8 {
        (self.flags & 0xf) as u8
    }

    pub fn truncated(&self) -> bool {
        self.flags & FLAG_TC != 0
    }
}

/// The message's id (first two bytes), if it has a header.
pub fn message_id(msg: &[u8]) -> Option<u16> {
    (msg.len() >= HEADER_LEN).then(|| u16::from_be_bytes([msg[0], msg[1]]))
}

/// Overwrite the message's id (a forwarded query gets an id of ours).
pub fn set_message_id(msg: &mut [u8], id: u16) {
    if msg.len() >= 2 {
        msg[..2].copy_from_slice(&id.to_be_bytes());
    }
}

/// A name as read from a message: ASCII lowercased, labels joined by `.`,
/// without the final dot (the root is empty). `plain` says whether every
/// label is made of letters, digits, `-` and `_` only: only such names can
/// be a container's, anything else is never looked up locally.
#[derive(Clone)]
pub struct Name {
    buf: [u8; MAX_NAME_WIRE],
    len: usize,
    labels: usize,
    plain: bool,
}

impl Default for Name {
    fn default() -> Self {
        Name {
            buf: [0; MAX_NAME_WIRE],
            len: 0,
            labels: 0,
            plain: true,
        }
    }
}

impl std::fmt::Debug for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Name({:?})", String::from_utf8_lossy(self.as_bytes()))
    }
}

impl Name {
    /// Dotted, lowercased, no final dot.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    pub fn labels(&self) -> usize {
        self.labels
    }

    pub fn is_plain(&self) -> bool {
        self.plain
    }

    fn push_label(&mut self, label: &[u8]) -> WireResult<()> {
        let sep = usize::from(self.labels > 0);
        if self.len + sep + label.len() > MAX_NAME_WIRE - 2 {
            return Err(WireError::NameTooLong);
        }
        if sep == 1 {
            self.buf[self.len] = b'.';
            self.len += 1;
        }
        for &b in label {
            if !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                self.plain = false;
            }
            self.buf[self.len] = b.to_ascii_lowercase();
            self.len += 1;
        }
        self.labels += 1;
        Ok(())
    }
}

/// Read the name at `start`; returns the offset just after it in the
/// message (after the first pointer, if it jumped).
pub fn read_name(msg: &[u8], start: usize, out: &mut Name) -> WireResult<usize> {
    *out = Name::default();
    let mut pos = start;
    // Where the current run of labels began: a pointer must land strictly
    // before it, so every jump goes further back and none can loop.
    let mut run_start = start;
    let mut end = None;
    let mut jumps = 0;
    let mut wire_len = 0usize;
    loop {
        let len = *msg.get(pos).ok_or(WireError::Truncated("a name"))?;
        match len & 0xc0 {
            0x00 => {
                let len = usize::from(len);
                wire_len += len + 1;
                if wire_len > MAX_NAME_WIRE {
                    return Err(WireError::NameTooLong);
                }
                if len == 0 {
                    return Ok(end.unwrap_or(pos + 1));
                }
                let label = msg
                    .get(pos + 1..pos + 1 + len)
                    .ok_or(WireError::Truncated("a label"))?;
                out.push_label(label)?;
                pos += 1 + len;
            }
            0xc0 => {
                let lo = *msg.get(pos + 1).ok_or(WireError::Truncated("a pointer"))?;
                let target = usize::from(u16::from_be_bytes([len & 0x3f, lo]));
                if target >= run_start || jumps >= MAX_JUMPS {
                    return Err(WireError::BadPointer);
                }
                jumps += 1;
                end.get_or_insert(pos + 2);
                pos = target;
                run_start = target;
            }
            other => return Err(WireError::LabelType(other)),
        }
    }
}

/// Skip the name at `pos` without reading it.
fn skip_name(msg: &[u8], mut pos: usize) -> WireResult<usize> {
    let mut wire_len = 0usize;
    loop {
        let len = *msg.get(pos).ok_or(WireError::Truncated("a name"))?;
        match len & 0xc0 {
            0x00 if len == 0 => return Ok(pos + 1),
            0x00 => {
                wire_len += usize::from(len) + 1;
                if wire_len > MAX_NAME_WIRE {
                    return Err(WireError::NameTooLong);
                }
                pos += 1 + usize::from(len);
            }
            0xc0 => {
                if msg.len() < pos + 2 {
                    return Err(WireError::Truncated("a pointer"));
                }
                return Ok(pos + 2);
            }
            other => return Err(WireError::LabelType(other)),
        }
    }
}

/// The question of a query.
#[derive(Debug, Clone, Default)]
pub struct Question {
    pub name: Name,
    pub qtype: u16,
    pub qclass: u16,
    /// Offset just after the question in the message.
    pub end: usize,
}

/// EDNS(0) as the client offered it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edns {
    pub udp_size: u16,
    pub version: u8,
    pub dnssec_ok: bool,
}

/// A query, read.
#[derive(Debug, Clone)]
pub struct Query {
    pub header: Header,
    pub question: Question,
    pub edns: Option<Edns>,
}

impl Query {
    /// The largest response the client takes over UDP.
    pub fn udp_limit(&self) -> usize {
        match self.edns {
            Some(e) => usize::from(e.udp_size).clamp(UDP_MIN, UDP_MAX),
            None => UDP_MIN,
        }
    }
}

/// Read the first question (at offset 12).
pub fn read_question(msg: &[u8]) -> WireResult<Question> {
    let mut q = Question::default();
    let pos = read_name(msg, HEADER_LEN, &mut q.name)?;
    q.qtype = u16_at(msg, pos, "the question")?;
    q.qclass = u16_at(msg, pos + 2, "the question")?;
    q.end = pos + 4;
    Ok(q)
}

/// The raw bytes of the first question (name as written, type, class), to
/// match an upstream's answer against the query it answers.
pub fn question_bytes(msg: &[u8]) -> WireResult<&[u8]> {
    if msg.len() < HEADER_LEN {
        return Err(WireError::Short);
    }
    let end = skip_name(msg, HEADER_LEN)? + 4;
    msg.get(HEADER_LEN..end)
        .ok_or(WireError::Truncated("the question"))
}

/// Read a query: the header, exactly one question, and the OPT record if
/// the additional section holds one.
pub fn parse_query(msg: &[u8]) -> WireResult<Query> {
    let header = Header::parse(msg)?;
    if header.is_response() {
        return Err(WireError::NotQuery);
    }
    if header.qdcount != 1 {
        return Err(WireError::QuestionCount(header.qdcount));
    }
    let question = read_question(msg)?;
    let mut edns = None;
    if header.arcount > 0 {
        let mut pos = question.end;
        // Answer and authority records (none in a normal query) are skipped.
        let skip = usize::from(header.ancount) + usize::from(header.nscount);
        for _ in 0..skip {
            pos = skip_rr(msg, pos)?;
        }
        for _ in 0..header.arcount {
            let name_end = skip_name(msg, pos)?;
            let rtype = u16_at(msg, name_end, "a record")?;
            if rtype == TYPE_OPT {
                let class = u16_at(msg, name_end + 2, "a record")?;
                let ttl_hi = u16_at(msg, name_end + 4, "a record")?;
                let ttl_lo = u16_at(msg, name_end + 6, "a record")?;
                edns = Some(Edns {
                    udp_size: class,
                    version: (ttl_hi & 0xff) as u8,
                    dnssec_ok: ttl_lo & 0x8000 != 0,
                });
                break;
            }
            pos = skip_rr(msg, pos)?;
        }
    }
    Ok(Query {
        header,
        question,
        edns,
    })
}

fn skip_rr(msg: &[u8], pos: usize) -> WireResult<usize> {
    let p = skip_name(msg, pos)?;
    let rdlen = usize::from(u16_at(msg, p + 8, "a record")?);
    let end = p + 10 + rdlen;
    if end > msg.len() {
        return Err(WireError::Truncated("a record"));
    }
    Ok(end)
}

/// Append `name` (dotted, no final dot) in wire form, uncompressed. Labels
/// longer than 63 bytes or a name longer than 255 are cut (names put in
/// the table are checked before, so this never happens in practice).
pub fn write_name(out: &mut Vec<u8>, name: &str) {
    let start = out.len();
    for label in name.split('.').filter(|l| !l.is_empty()) {
        let label = &label.as_bytes()[..label.len().min(MAX_LABEL)];
        if out.len() - start + label.len() + 2 > MAX_NAME_WIRE {
            break;
        }
        out.push(label.len() as u8);
        out.extend_from_slice(label);
    }
    out.push(0);
}

/// A response being written into a buffer: the header and the query's
/// question first, then answers, then (when the query had one) an OPT
/// record. Answers that would take the message past `limit` are left out
/// and the TC bit is set, so the client asks again over TCP.
pub struct Response<'a> {
    out: &'a mut Vec<u8>,
    limit: usize,
    answers: u16,
    edns: bool,
    truncated: bool,
}

/// Size of the OPT record this resolver appends.
const OPT_LEN: usize = 11;

impl<'a> Response<'a> {
    /// Start the response to `query` (read from `msg`) with `rcode`.
    /// `authoritative` marks answers from the container table.
    pub fn start(
        out: &'a mut Vec<u8>,
        msg: &[u8],
        query: &Query,
        rcode: u8,
        authoritative: bool,
        limit: usize,
    ) -> Response<'a> {
        out.clear();
        let q = query.header.flags;
        let mut flags = FLAG_QR | (q & 0x7800) | (q & FLAG_RD) | (q & FLAG_CD) | FLAG_RA;
        if authoritative {
            flags |= FLAG_AA;
        }
        flags |= u16::from(rcode & 0xf);
        out.extend_from_slice(&query.header.id.to_be_bytes());
        out.extend_from_slice(&flags.to_be_bytes());
        out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
        // The question exactly as asked (the client compares it).
        out.extend_from_slice(&msg[HEADER_LEN..query.question.end]);
        Response {
            out,
            limit,
            answers: 0,
            edns: query.edns.is_some(),
            truncated: false,
        }
    }

    fn room(&self, extra: usize) -> bool {
        let opt = if self.edns { OPT_LEN } else { 0 };
        self.out.len() + extra + opt <= self.limit
    }

    fn record(&mut self, rtype: u16, ttl: u32, rdata: &[u8]) {
        if self.truncated || !self.room(12 + rdata.len()) || self.answers == u16::MAX {
            self.truncated = true;
            return;
        }
        // The owner is the question's name: a pointer to offset 12.
        self.out.extend_from_slice(&[0xc0, 0x0c]);
        self.out.extend_from_slice(&rtype.to_be_bytes());
        self.out.extend_from_slice(&CLASS_IN.to_be_bytes());
        self.out.extend_from_slice(&ttl.to_be_bytes());
        self.out
            .extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        self.out.extend_from_slice(rdata);
        self.answers += 1;
    }

    pub fn a(&mut self, ip: Ipv4Addr, ttl: u32) {
        self.record(TYPE_A, ttl, &ip.octets());
    }

    pub fn aaaa(&mut self, ip: Ipv6Addr, ttl: u32) {
        self.record(TYPE_AAAA, ttl, &ip.octets());
    }

    pub fn ptr(&mut self, name: &str, ttl: u32) {
        let mut rdata = Vec::with_capacity(name.len() + 2);
        write_name(&mut rdata, name);
        self.record(TYPE_PTR, ttl, &rdata);
    }

    /// Finish: counts, TC, OPT. A truncated response carries no answers.
    pub fn finish(self) {
        let Response {
            out,
            answers,
            edns,
            truncated,
            ..
        } = self;
        if truncated {
            // Drop the answers: a partial answer is worse than none.
            let mut pos = HEADER_LEN;
            if let Ok(end) = skip_name(out, pos) {
                pos = end + 4;
            }
            out.truncate(pos);
            out[2] |= (FLAG_TC >> 8) as u8;
        } else {
            out[6..8].copy_from_slice(&answers.to_be_bytes());
        }
        if edns {
            // Root name, OPT, our UDP size, rcode/version/flags 0, no options.
            out.push(0);
            out.extend_from_slice(&TYPE_OPT.to_be_bytes());
            out.extend_from_slice(&(UDP_MAX as u16).to_be_bytes());
            out.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
            out[10..12].copy_from_slice(&1u16.to_be_bytes());
        }
    }
}

/// A bare error response to a message whose question could not be read:
/// the header only (no question), with `rcode`. `None` for messages
/// without a header or that are responses themselves (never answer those).
pub fn error_without_question(out: &mut Vec<u8>, msg: &[u8], rcode: u8) -> Option<()> {
    let h = Header::parse(msg).ok()?;
    if h.is_response() {
        return None;
    }
    out.clear();
    let flags = FLAG_QR | (h.flags & 0x7800) | (h.flags & FLAG_RD) | FLAG_RA | u16::from(rcode);
    out.extend_from_slice(&h.id.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&[0; 8]);
    Some(())
}

/// Build a query (for `wirehook check`, tests and benchmarks).
pub fn build_query(out: &mut Vec<u8>, id: u16, name: &str, qtype: u16, edns: bool) {
    out.clear();
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&FLAG_RD.to_be_bytes());
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, u8::from(edns)]);
    write_name(out, name);
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    if edns {
        out.push(0);
        out.extend_from_slice(&TYPE_OPT.to_be_bytes());
        out.extend_from_slice(&(UDP_MAX as u16).to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    }
}

/// One answer record of a response, read back (for `check`, tests and
/// benchmarks: the resolver itself never reads answers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Ptr(String),
    Other(u16),
}

/// A response, read back: rcode, flags, answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub header: Header,
    pub answers: Vec<(Record, u32)>,
}

impl Reply {
    pub fn rcode(&self) -> u8 {
        self.header.rcode()
    }

    pub fn authoritative(&self) -> bool {
        self.header.flags & FLAG_AA != 0
    }
}

/// Read a response's answer section.
pub fn parse_reply(msg: &[u8]) -> WireResult<Reply> {
    let header = Header::parse(msg)?;
    let mut pos = HEADER_LEN;
    for _ in 0..header.qdcount {
        pos = skip_name(msg, pos)? + 4;
    }
    let mut answers = Vec::new();
    for _ in 0..header.ancount {
        let p = skip_name(msg, pos)?;
        let rtype = u16_at(msg, p, "a record")?;
        let ttl_hi = u16_at(msg, p + 4, "a record")?;
        let ttl_lo = u16_at(msg, p + 6, "a record")?;
        let rdlen = usize::from(u16_at(msg, p + 8, "a record")?);
        let rdata = msg
            .get(p + 10..p + 10 + rdlen)
            .ok_or(WireError::Truncated("a record"))?;
        let rec = match (rtype, rdlen) {
            (TYPE_A, 4) => Record::A(Ipv4Addr::new(rdata[0], rdata[1], rdata[2], rdata[3])),
            (TYPE_AAAA, 16) => {
                let mut o = [0u8; 16];
                o.copy_from_slice(rdata);
                Record::Aaaa(Ipv6Addr::from(o))
            }
            (TYPE_PTR, _) => {
                let mut n = Name::default();
                read_name(msg, p + 10, &mut n)?;
                Record::Ptr(String::from_utf8_lossy(n.as_bytes()).into_owned())
            }
            (t, _) => Record::Other(t),
        };
        answers.push((rec, (u32::from(ttl_hi) << 16) | u32::from(ttl_lo)));
        pos = p + 10 + rdlen;
    }
    Ok(Reply { header, answers })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16, edns: bool) -> Vec<u8> {
        let mut q = Vec::new();
        build_query(&mut q, 0x1234, name, qtype, edns);
        q
    }

    #[test]
    fn reads_a_query() {
        let msg = query("Web.Example", TYPE_A, false);
        let q = parse_query(&msg).unwrap();
        assert_eq!(q.header.id, 0x1234);
        assert_eq!(q.question.name.as_bytes(), b"web.example");
        assert_eq!(q.question.name.labels(), 2);
        assert!(q.question.name.is_plain());
        assert_eq!(q.question.qtype, TYPE_A);
        assert_eq!(q.question.end, msg.len());
        assert!(q.edns.is_none());
        assert_eq!(q.udp_limit(), 512);
    }

    #[test]
    fn reads_edns() {
        let msg = query("db", TYPE_AAAA, true);
        let q = parse_query(&msg).unwrap();
        let e = q.edns.unwrap();
        assert_eq!(e.udp_size, UDP_MAX as u16);
        assert_eq!(q.udp_limit(), UDP_MAX);
    }

    #[test]
    fn root_and_odd_names() {
        let msg = query("", TYPE_A, false);
        let q = parse_query(&msg).unwrap();
        assert_eq!(q.question.name.as_bytes(), b"");
        assert_eq!(q.question.name.labels(), 0);
        // A label with a dot inside is not plain.
        let mut m = query("x", TYPE_A, false);
        m.truncate(HEADER_LEN);
        m.extend_from_slice(&[3, b'a', b'.', b'b', 0, 0, 1, 0, 1]);
        let q = parse_query(&m).unwrap();
        assert!(!q.question.name.is_plain());
    }

    #[test]
    fn pointers_backwards_only() {
        // A name that points at itself.
        let mut m = query("x", TYPE_A, false);
        m.truncate(HEADER_LEN);
        m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        assert_eq!(parse_query(&m).unwrap_err(), WireError::BadPointer);
        // A forward pointer.
        m.truncate(HEADER_LEN);
        m.extend_from_slice(&[0xc0, 20, 0, 1, 0, 1, 0, 0, 0, 0, 1, b'a', 0]);
        assert_eq!(parse_query(&m).unwrap_err(), WireError::BadPointer);
    }

    #[test]
    fn pointer_into_an_earlier_name() {
        // "x" then a pointer back to the start of the same name: it is
        // behind the pointer but would loop, so it is refused.
        let mut m = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(&[1, b'x', 0xc0, 12]);
        assert_eq!(
            read_name(&m, 12, &mut Name::default()).unwrap_err(),
            WireError::BadPointer
        );
        // A proper one: "y" at 12, then "x" + pointer to 12 at 15.
        let mut m = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(&[1, b'y', 0, 1, b'x', 0xc0, 12]);
        let mut n = Name::default();
        assert_eq!(read_name(&m, 15, &mut n).unwrap(), 19);
        assert_eq!(n.as_bytes(), b"x.y");
    }

    #[test]
    fn long_names_refused() {
        let mut m = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for _ in 0..5 {
            m.push(63);
            m.extend_from_slice(&[b'a'; 63]);
        }
        m.extend_from_slice(&[0, 0, 1, 0, 1]);
        assert_eq!(parse_query(&m).unwrap_err(), WireError::NameTooLong);
    }

    #[test]
    fn writes_answers() {
        let msg = query("web", TYPE_A, true);
        let q = parse_query(&msg).unwrap();
        let mut out = Vec::new();
        let mut r = Response::start(&mut out, &msg, &q, rcode::NOERROR, true, q.udp_limit());
        r.a(Ipv4Addr::new(10, 0, 0, 2), 0);
        r.a(Ipv4Addr::new(10, 0, 0, 3), 0);
        r.finish();
        let reply = parse_reply(&out).unwrap();
        assert_eq!(reply.header.id, 0x1234);
        assert!(reply.header.is_response());
        assert!(reply.authoritative());
        assert_eq!(reply.rcode(), rcode::NOERROR);
        assert_eq!(
            reply.answers,
            vec![
                (Record::A(Ipv4Addr::new(10, 0, 0, 2)), 0),
                (Record::A(Ipv4Addr::new(10, 0, 0, 3)), 0)
            ]
        );
        assert_eq!(reply.header.arcount, 1, "OPT echoed");
    }

    #[test]
    fn ptr_answer() {
        let msg = query("2.0.0.10.in-addr.arpa", TYPE_PTR, false);
        let q = parse_query(&msg).unwrap();
        let mut out = Vec::new();
        let mut r = Response::start(&mut out, &msg, &q, rcode::NOERROR, true, 512);
        r.ptr("web.net1", 0);
        r.finish();
        let reply = parse_reply(&out).unwrap();
        assert_eq!(reply.answers, vec![(Record::Ptr("web.net1".into()), 0)]);
    }

    #[test]
    fn truncates_instead_of_overflowing() {
        let msg = query("many", TYPE_A, false);
        let q = parse_query(&msg).unwrap();
        let mut out = Vec::new();
        let mut r = Response::start(&mut out, &msg, &q, rcode::NOERROR, true, 512);
        for i in 0..100u8 {
            r.a(Ipv4Addr::new(10, 0, 1, i), 0);
        }
        r.finish();
        assert!(out.len() <= 512);
        let reply = parse_reply(&out).unwrap();
        assert!(reply.header.truncated());
        assert!(reply.answers.is_empty());
    }

    #[test]
    fn ids() {
        let mut msg = query("x", TYPE_A, false);
        assert_eq!(message_id(&msg), Some(0x1234));
        set_message_id(&mut msg, 7);
        assert_eq!(message_id(&msg), Some(7));
        assert_eq!(message_id(&[1]), None);
        assert_eq!(
            question_bytes(&msg).unwrap(),
            &msg[HEADER_LEN..],
            "the question, as written"
        );
    }

    #[test]
    fn error_for_garbage_with_a_header() {
        let mut out = Vec::new();
        let msg = [0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xff];
        assert!(parse_query(&msg).is_err());
        error_without_question(&mut out, &msg, rcode::FORMERR).unwrap();
        let h = Header::parse(&out).unwrap();
        assert_eq!(h.id, 0xabcd);
        assert_eq!(h.rcode(), rcode::FORMERR);
        assert_eq!(h.qdcount, 0);
        // Responses are never answered.
        let resp = [0, 0, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(error_without_question(&mut out, &resp, rcode::FORMERR).is_none());
    }
}
