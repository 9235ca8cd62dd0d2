//! Container names over DNS: the parts of wirehook's per-host resolver
//! that are pure data and logic (the daemon that serves them is
//! `wirehook dns`, in the hook crate).
//!
//! - [`wire`]: the DNS message codec — only what the resolver needs,
//!   bounded and panic-free on any input;
//! - [`table`]: the name table (container × network → names, addresses),
//!   with isolation by the asker's networks;
//! - [`respond`] (here): one query in, one decision out — an answer from
//!   the table, or "forward it upstream", or nothing;
//! - [`resolvconf`]: reading the host's `resolv.conf` (upstreams, search
//!   list) and writing the containers' one;
//! - [`control`]: the daemon's control protocol (attach, detach, status)
//!   and where its files live.
//!
//! What a container gets: its names (`io.wirehook.name` or the runtime's
//! name, `io.wirehook.aliases`, the short id of a hex id) and
//! `NAME.NETWORK` answered with A/AAAA records, reverse (PTR) lookups of
//! container addresses, all with TTL 0 so a stopped container's name is
//! gone at once; only names on networks the asking container is on. A
//! name that exists without an address of the asked type gets an empty
//! NOERROR answer. Single-label names that are not a container's get
//! NXDOMAIN here (the upstreams would only search them in their own
//! domains; with `ndots:0` the stub tries the search list itself). Every
//! other name is forwarded, unless all of the asker's networks are
//! `--internal`: then the answer is REFUSED (the client gives up at once
//! instead of caching an NXDOMAIN for a name that exists outside).

pub mod control;
pub mod resolvconf;
pub mod table;
pub mod wire;

use table::{arpa_address, NetId, Table};
use wire::{rcode, Query, Response};

/// TTL of every local answer: none, so a stopped container's name stops
/// resolving at once (aardvark-dns 1.13 uses 0 too).
pub const TTL: u32 = 0;

/// The resolver's own zone: `NAME.wirehook.internal` (and
/// `NAME.NETWORK.wirehook.internal`) is `NAME`, and nothing under it is
/// ever forwarded. Containers get it first in their search list, so stub
/// resolvers that always append a search domain to single labels (busybox
/// `nslookup`) find container names too (podman's `dns.podman` serves the
/// same purpose). `.internal` is reserved for private use (ICANN, 2024).
pub const DOMAIN: &str = "wirehook.internal";

/// The address the resolver listens on inside every container (docker's).
pub const RESOLVER_ADDR: std::net::Ipv4Addr = std::net::Ipv4Addr::new(127, 0, 0, 11);

/// Who asks: the networks of the container whose socket the query came
/// in on, and whether it may reach the outside (then unknown names are
/// forwarded).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Asker {
    pub networks: Vec<NetId>,
    pub forward: bool,
}

/// The transport a query came over: it bounds the answer's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// What to do with a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The answer is in the output buffer: send it.
    Reply,
    /// Not a local name and the asker may reach the outside: relay the
    /// query as it came to an upstream.
    Forward,
    /// Not worth an answer (a response, or no header at all).
    Drop,
}

/// Answer one query from `msg` for `asker` into `out`.
pub fn respond(
    table: &Table,
    asker: &Asker,
    msg: &[u8],
    transport: Transport,
    out: &mut Vec<u8>,
) -> Outcome {
    let query = match wire::parse_query(msg) {
        Ok(q) => q,
        Err(_) => {
            return match wire::error_without_question(out, msg, rcode::FORMERR) {
                Some(()) => Outcome::Reply,
                None => Outcome::Drop,
            }
        }
    };
    let limit = match transport {
        Transport::Udp => query.udp_limit(),
        Transport::Tcp => wire::TCP_MAX,
    };
    if query.header.opcode() != 0 {
        Response::start(out, msg, &query, rcode::NOTIMP, false, limit).finish();
        return Outcome::Reply;
    }
    if query.edns.is_some_and(|e| e.version > 0) {
        // BADVERS needs the extended rcode; FORMERR is what old servers say.
        Response::start(out, msg, &query, rcode::FORMERR, false, limit).finish();
        return Outcome::Reply;
    }
    if let Some(outcome) = local(table, asker, msg, &query, limit, out) {
        return outcome;
    }
    not_local(asker, msg, &query, limit, out)
}

/// The answer from the table, if the name is one of ours.
fn local(
    table: &Table,
    asker: &Asker,
    msg: &[u8],
    query: &Query,
    limit: usize,
    out: &mut Vec<u8>,
) -> Option<Outcome> {
    let q = &query.question;
    if !(q.qclass == wire::CLASS_IN || q.qclass == wire::CLASS_ANY) || !q.name.is_plain() {
        return None;
    }
    let mut name = q.name.as_bytes();
    let ours = strip_domain(name);
    if let Some(inner) = ours {
        name = inner;
    }
    if q.qtype == wire::TYPE_PTR && ours.is_none() {
        let ip = arpa_address(name)?;
        let target = table.reverse(&asker.networks, ip)?;
        let mut r = Response::start(out, msg, query, rcode::NOERROR, true, limit);
        r.ptr(&target, TTL);
        r.finish();
        return Some(Outcome::Reply);
    }
    let Some(addrs) = table.resolve(&asker.networks, name) else {
        // Our zone: authoritative, never forwarded.
        ours?;
        let code = if name.is_empty() {
            rcode::NOERROR
        } else {
            rcode::NXDOMAIN
        };
        Response::start(out, msg, query, code, true, limit).finish();
        return Some(Outcome::Reply);
    };
    let mut r = Response::start(out, msg, query, rcode::NOERROR, true, limit);
    // Any other type of a name that exists: an empty NOERROR answer.
    if matches!(q.qtype, wire::TYPE_A | wire::TYPE_ANY) {
        for a in &addrs.v4 {
            r.a(*a, TTL);
        }
    }
    if matches!(q.qtype, wire::TYPE_AAAA | wire::TYPE_ANY) {
        for a in &addrs.v6 {
            r.aaaa(*a, TTL);
        }
    }
    r.finish();
    Some(Outcome::Reply)
}

/// `NAME` of `NAME.wirehook.internal` (empty for the zone itself).
fn strip_domain(name: &[u8]) -> Option<&[u8]> {
    let d = DOMAIN.as_bytes();
    if name == d {
        return Some(&[]);
    }
    let n = name.len().checked_sub(d.len() + 1)?;
    (name.ends_with(d) && name[n] == b'.').then(|| &name[..n])
}

fn not_local(asker: &Asker, msg: &[u8], query: &Query, limit: usize, out: &mut Vec<u8>) -> Outcome {
    let q = &query.question;
    if q.name.labels() == 1 && q.name.is_plain() && q.qtype != wire::TYPE_PTR {
        Response::start(out, msg, query, rcode::NXDOMAIN, true, limit).finish();
        return Outcome::Reply;
    }
    if !asker.forward {
        Response::start(out, msg, query, rcode::REFUSED, false, limit).finish();
        return Outcome::Reply;
    }
    Outcome::Forward
}

/// A complete answer with `rcode` and no records, for a query the daemon
/// cannot serve after all (no upstream, too many in flight).
pub fn error_reply(msg: &[u8], code: u8, out: &mut Vec<u8>) -> bool {
    match wire::parse_query(msg) {
        Ok(q) => {
            Response::start(out, msg, &q, code, false, q.udp_limit()).finish();
            true
        }
        Err(_) => wire::error_without_question(out, msg, code).is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::table::Endpoint;
    use super::wire::{build_query, parse_reply, rcode, Record, TYPE_A, TYPE_AAAA, TYPE_PTR};
    use super::*;
    use std::net::Ipv4Addr;

    fn setup() -> (Table, Asker, Asker, Asker) {
        let mut t = Table::new();
        let n1 = t.net_id("n1");
        let n2 = t.net_id("n2");
        let int = t.net_id("int");
        t.insert(Endpoint::new(
            "a",
            "n1",
            ["web", "www"],
            ["10.1.0.2".parse().unwrap()],
        ));
        t.insert(Endpoint::new(
            "b",
            "n2",
            ["db"],
            ["10.2.0.2".parse().unwrap()],
        ));
        t.insert(Endpoint::new(
            "c",
            "int",
            ["secret"],
            ["10.9.0.2".parse().unwrap()],
        ));
        let on1 = Asker {
            networks: vec![n1],
            forward: true,
        };
        let on12 = Asker {
            networks: vec![n1, n2],
            forward: true,
        };
        let internal = Asker {
            networks: vec![int],
            forward: false,
        };
        (t, on1, on12, internal)
    }

    fn ask(t: &Table, a: &Asker, name: &str, qtype: u16) -> (Outcome, Vec<u8>) {
        let mut q = Vec::new();
        build_query(&mut q, 77, name, qtype, false);
        let mut out = Vec::new();
        let o = respond(t, a, &q, Transport::Udp, &mut out);
        (o, out)
    }

    #[test]
    fn answers() {
        let (t, on1, on12, internal) = setup();
        let (o, out) = ask(&t, &on1, "WWW", TYPE_A);
        assert_eq!(o, Outcome::Reply);
        let r = parse_reply(&out).unwrap();
        assert_eq!(r.header.id, 77);
        assert_eq!(r.answers, vec![(Record::A(Ipv4Addr::new(10, 1, 0, 2)), 0)]);
        // Exists, but no AAAA: NOERROR, empty.
        let r = parse_reply(&ask(&t, &on1, "web", TYPE_AAAA).1).unwrap();
        assert_eq!(r.rcode(), rcode::NOERROR);
        assert!(r.answers.is_empty());
        // Another network's name: NXDOMAIN, not forwarded.
        let r = parse_reply(&ask(&t, &on1, "db", TYPE_A).1).unwrap();
        assert_eq!(r.rcode(), rcode::NXDOMAIN);
        // On both networks.
        let r = parse_reply(&ask(&t, &on12, "db", TYPE_A).1).unwrap();
        assert_eq!(r.answers.len(), 1);
        let r = parse_reply(&ask(&t, &on12, "db.n2", TYPE_A).1).unwrap();
        assert_eq!(r.answers.len(), 1);
        // Internal: own names work, the rest is refused.
        let r = parse_reply(&ask(&t, &internal, "secret", TYPE_A).1).unwrap();
        assert_eq!(r.answers.len(), 1);
        let r = parse_reply(&ask(&t, &internal, "example.com", TYPE_A).1).unwrap();
        assert_eq!(r.rcode(), rcode::REFUSED);
    }

    #[test]
    fn our_zone() {
        let (t, on1, _, internal) = setup();
        let r = parse_reply(&ask(&t, &on1, "www.wirehook.internal", TYPE_A).1).unwrap();
        assert_eq!(r.answers, vec![(Record::A(Ipv4Addr::new(10, 1, 0, 2)), 0)]);
        let r = parse_reply(&ask(&t, &on1, "web.n1.Wirehook.Internal", TYPE_A).1).unwrap();
        assert_eq!(r.answers.len(), 1);
        // Never forwarded, also for names that are not containers'.
        for name in ["db.wirehook.internal", "a.b.c.wirehook.internal"] {
            let (o, out) = ask(&t, &on1, name, TYPE_A);
            assert_eq!(o, Outcome::Reply, "{name}");
            assert_eq!(
                parse_reply(&out).unwrap().rcode(),
                rcode::NXDOMAIN,
                "{name}"
            );
        }
        let r = parse_reply(&ask(&t, &internal, "wirehook.internal", TYPE_A).1).unwrap();
        assert_eq!(r.rcode(), rcode::NOERROR);
        assert_eq!(
            ask(&t, &on1, "xwirehook.internal", TYPE_A).0,
            Outcome::Forward
        );
    }

    #[test]
    fn forwards_the_rest() {
        let (t, on1, ..) = setup();
        assert_eq!(ask(&t, &on1, "example.com", TYPE_A).0, Outcome::Forward);
        assert_eq!(ask(&t, &on1, "db.n2", TYPE_A).0, Outcome::Forward);
        // Reverse lookups of addresses that are not containers'.
        assert_eq!(
            ask(&t, &on1, "1.1.168.192.in-addr.arpa", TYPE_PTR).0,
            Outcome::Forward
        );
    }

    #[test]
    fn reverse() {
        let (t, on1, ..) = setup();
        let r = parse_reply(&ask(&t, &on1, "2.0.1.10.in-addr.arpa", TYPE_PTR).1).unwrap();
        assert_eq!(r.answers, vec![(Record::Ptr("web.n1".into()), 0)]);
    }

    #[test]
    fn malformed() {
        let (t, on1, ..) = setup();
        let mut out = Vec::new();
        assert_eq!(
            respond(&t, &on1, &[1, 2, 3], Transport::Udp, &mut out),
            Outcome::Drop
        );
        let bad = [0, 9, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 5, b'a'];
        assert_eq!(
            respond(&t, &on1, &bad, Transport::Udp, &mut out),
            Outcome::Reply
        );
        assert_eq!(parse_reply(&out).unwrap().rcode(), rcode::FORMERR);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]

        /// Untrusted bytes never panic any reader, and every answer fits
        /// the transport's limit.
        #[test]
        fn random_bytes_never_panic(msg in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let (t, on1, ..) = setup();
            let mut out = Vec::new();
            let o = respond(&t, &on1, &msg, Transport::Udp, &mut out);
            if o == Outcome::Reply {
                proptest::prop_assert!(out.len() <= wire::UDP_MAX);
                proptest::prop_assert!(wire::Header::parse(&out).unwrap().is_response());
            }
            let _ = wire::parse_reply(&msg);
            let _ = wire::question_bytes(&msg);
            let _ = error_reply(&msg, rcode::SERVFAIL, &mut out);
        }

        /// Valid queries with bytes flipped: the interesting cases (names,
        /// pointers, counts) are reached far more often than from noise.
        #[test]
        fn mutated_queries_never_panic(
            name in "[a-z0-9]{1,10}(\\.[a-z0-9]{1,10}){0,3}",
            qtype in proptest::sample::select(vec![TYPE_A, TYPE_AAAA, TYPE_PTR, 255u16, 16]),
            edns in proptest::prelude::any::<bool>(),
            flips in proptest::collection::vec((proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>()), 0..6),
            cut in proptest::prelude::any::<usize>(),
        ) {
            let (t, on1, ..) = setup();
            let mut q = Vec::new();
            build_query(&mut q, 1, &name, qtype, edns);
            for (at, b) in flips {
                let i = at % q.len();
                q[i] = b;
            }
            q.truncate(cut % (q.len() + 1));
            let mut out = Vec::new();
            for tr in [Transport::Udp, Transport::Tcp] {
                let _ = respond(&t, &on1, &q, tr, &mut out);
            }
            let _ = wire::parse_reply(&q);
        }
    }

    #[test]
    fn error_replies() {
        let mut q = Vec::new();
        build_query(&mut q, 5, "example.com", TYPE_A, true);
        let mut out = Vec::new();
        assert!(error_reply(&q, rcode::SERVFAIL, &mut out));
        let r = parse_reply(&out).unwrap();
        assert_eq!(r.rcode(), rcode::SERVFAIL);
        assert_eq!(r.header.id, 5);
    }
}
