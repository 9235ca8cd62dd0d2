//! The name table: which names resolve to which addresses on which
//! network.
//!
//! An [`Endpoint`] is one container on one network: its names (the
//! container's name, its aliases, its short id) and its addresses on that
//! network. Endpoints are keyed by (container id, network), so the same
//! container on two networks is two endpoints, and a source of records
//! other than this host's containers (an overlay network's endpoints on
//! other hosts, kept from an etcd watch) puts and removes its endpoints
//! through the same [`Table::insert`] and [`Table::remove`], keyed by
//! `HOST/ID` (no local container id has a `/`).
//!
//! Lookups are by the asking container's networks ([`NetId`]s), so a name
//! on a network the asker is not on never resolves (isolation), and a
//! container on two networks sees the names of both. Names are matched
//! case-insensitively (stored lowercased); `NAME.NETWORK` resolves `NAME`
//! on `NETWORK` only.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::wire::MAX_LABEL;

/// A network, interned: the table never forgets a network's number.
pub type NetId = u32;
type EpId = u32;

/// Longest name put in the table (dotted form; 253 is the DNS limit).
pub const MAX_NAME: usize = 253;

/// One container on one network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The container's id (a remote host's container id for remote
    /// endpoints).
    pub container: String,
    pub network: String,
    /// First the container's name (PTR answers use it), then aliases.
    /// Lowercased; only valid DNS names (see [`valid_name`]).
    pub names: Vec<String>,
    pub v4: Vec<Ipv4Addr>,
    pub v6: Vec<Ipv6Addr>,
}

impl Endpoint {
    /// An endpoint with `names` cleaned up: lowercased, invalid DNS names
    /// and repeats dropped (the first valid one stays first).
    pub fn new(
        container: &str,
        network: &str,
        names: impl IntoIterator<Item = impl AsRef<str>>,
        addrs: impl IntoIterator<Item = IpAddr>,
    ) -> Endpoint {
        let mut ns: Vec<String> = Vec::new();
        for n in names {
            let n = n.as_ref().to_ascii_lowercase();
            if valid_name(&n) && !ns.contains(&n) {
                ns.push(n);
            }
        }
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for a in addrs {
            match a {
                IpAddr::V4(a) if !v4.contains(&a) => v4.push(a),
                IpAddr::V6(a) if !v6.contains(&a) => v6.push(a),
                _ => {}
            }
        }
        Endpoint {
            container: container.to_string(),
            network: network.to_string(),
            names: ns,
            v4,
            v6,
        }
    }
}

/// Can `name` be looked up in DNS: dotted labels of 1 to 63 letters,
/// digits, `-` or `_`, at most 253 bytes? (A 64-character container id is
/// not: its label is too long.)
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= MAX_LABEL
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[derive(Debug, Default)]
struct Network {
    name: String,
    /// Lowercased name, for `NAME.NETWORK`.
    lower: Vec<u8>,
    /// Lowercased name -> endpoints that carry it on this network.
    by_name: HashMap<Box<[u8]>, Vec<EpId>>,
}

/// The table. See the [module docs](self).
#[derive(Debug, Default)]
pub struct Table {
    nets: Vec<Network>,
    net_ids: HashMap<String, NetId>,
    endpoints: Vec<Option<Endpoint>>,
    free: Vec<EpId>,
    by_key: HashMap<(String, String), EpId>,
    by_addr: HashMap<IpAddr, Vec<EpId>>,
}

/// The addresses a name resolves to for one asker.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Addresses {
    pub v4: Vec<Ipv4Addr>,
    pub v6: Vec<Ipv6Addr>,
}

impl Table {
    pub fn new() -> Table {
        Table::default()
    }

    /// The number of a network (made on first use).
    pub fn net_id(&mut self, network: &str) -> NetId {
        if let Some(id) = self.net_ids.get(network) {
            return *id;
        }
        let id = self.nets.len() as NetId;
        self.nets.push(Network {
            name: network.to_string(),
            lower: network.to_ascii_lowercase().into_bytes(),
            by_name: HashMap::new(),
        });
        self.net_ids.insert(network.to_string(), id);
        id
    }

    /// The network's name.
    pub fn net_name(&self, id: NetId) -> Option<&str> {
        self.nets.get(id as usize).map(|n| n.name.as_str())
    }

    /// Put an endpoint, replacing the one with the same container and
    /// network.
    pub fn insert(&mut self, ep: Endpoint) {
        self.remove(&ep.container, &ep.network);
        let net = self.net_id(&ep.network);
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                self.endpoints.push(None);
                (self.endpoints.len() - 1) as EpId
            }
        };
        let n = &mut self.nets[net as usize];
        for name in &ep.names {
            n.by_name
                .entry(name.as_bytes().into())
                .or_default()
                .push(id);
        }
        for a in ep
            .v4
            .iter()
            .map(|a| IpAddr::V4(*a))
            .chain(ep.v6.iter().map(|a| IpAddr::V6(*a)))
        {
            self.by_addr.entry(a).or_default().push(id);
        }
        self.by_key
            .insert((ep.container.clone(), ep.network.clone()), id);
        self.endpoints[id as usize] = Some(ep);
    }

    /// Remove the endpoint of `container` on `network`; false if there was none.
    pub fn remove(&mut self, container: &str, network: &str) -> bool {
        let Some(id) = self
            .by_key
            .remove(&(container.to_string(), network.to_string()))
        else {
            return false;
        };
        let Some(ep) = self.endpoints[id as usize].take() else {
            return false;
        };
        if let Some(net) = self.net_ids.get(&ep.network) {
            let n = &mut self.nets[*net as usize];
            for name in &ep.names {
                if let Some(list) = n.by_name.get_mut(name.as_bytes()) {
                    list.retain(|e| *e != id);
                    if list.is_empty() {
                        n.by_name.remove(name.as_bytes());
                    }
                }
            }
        }
        for a in ep
            .v4
            .iter()
            .map(|a| IpAddr::V4(*a))
            .chain(ep.v6.iter().map(|a| IpAddr::V6(*a)))
        {
            if let Some(list) = self.by_addr.get_mut(&a) {
                list.retain(|e| *e != id);
                if list.is_empty() {
                    self.by_addr.remove(&a);
                }
            }
        }
        self.free.push(id);
        true
    }

    /// Remove every endpoint of `container`; returns how many.
    pub fn remove_container(&mut self, container: &str) -> usize {
        let nets: Vec<String> = self
            .by_key
            .keys()
            .filter(|(c, _)| c == container)
            .map(|(_, n)| n.clone())
            .collect();
        nets.iter().filter(|n| self.remove(container, n)).count()
    }

    /// The endpoints of `container`.
    pub fn endpoints_of<'a>(&'a self, container: &'a str) -> impl Iterator<Item = &'a Endpoint> {
        self.endpoints
            .iter()
            .flatten()
            .filter(move |e| e.container == container)
    }

    /// How many endpoints the table holds.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    fn matches<'a>(&'a self, net: NetId, name: &[u8]) -> impl Iterator<Item = &'a Endpoint> {
        self.nets
            .get(net as usize)
            .and_then(|n| n.by_name.get(name))
            .into_iter()
            .flatten()
            .filter_map(|id| self.endpoints[*id as usize].as_ref())
    }

    /// Resolve `qname` (lowercased, dotted, no final dot) for an asker on
    /// `nets`: the name on any of them, else `NAME.NETWORK` for one of
    /// them. `None` when no endpoint carries the name (the name does not
    /// exist here); an empty [`Addresses`] is not possible for a found
    /// name unless its container has no address of either family.
    pub fn resolve(&self, nets: &[NetId], qname: &[u8]) -> Option<Addresses> {
        let mut found = false;
        let mut out = Addresses::default();
        let mut add = |ep: &Endpoint| {
            for a in &ep.v4 {
                if !out.v4.contains(a) {
                    out.v4.push(*a);
                }
            }
            for a in &ep.v6 {
                if !out.v6.contains(a) {
                    out.v6.push(*a);
                }
            }
        };
        for &net in nets {
            for ep in self.matches(net, qname) {
                found = true;
                add(ep);
            }
        }
        if !found {
            for &net in nets {
                let Some(n) = self.nets.get(net as usize) else {
                    continue;
                };
                let l = n.lower.len();
                if qname.len() > l + 1
                    && qname.ends_with(&n.lower)
                    && qname[qname.len() - l - 1] == b'.'
                {
                    for ep in self.matches(net, &qname[..qname.len() - l - 1]) {
                        found = true;
                        add(ep);
                    }
                }
            }
        }
        found.then_some(out)
    }

    /// The name for a reverse lookup of `ip` by an asker on `nets`:
    /// `NAME.NETWORK` of the endpoint holding `ip` on one of them.
    pub fn reverse(&self, nets: &[NetId], ip: IpAddr) -> Option<String> {
        let ids = self.by_addr.get(&ip)?;
        ids.iter()
            .filter_map(|id| self.endpoints[*id as usize].as_ref())
            .find(|ep| {
                self.net_ids
                    .get(&ep.network)
                    .is_some_and(|n| nets.contains(n))
                    && !ep.names.is_empty()
            })
            .map(|ep| format!("{}.{}", ep.names[0], ep.network.to_ascii_lowercase()))
    }
}

/// The address a reverse-lookup name asks about: `D.C.B.A.in-addr.arpa`
/// or the 32 nibbles of `….ip6.arpa` (lowercased, no final dot). `None`
/// for anything else, including partial names.
pub fn arpa_address(qname: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(qname).ok()?;
    if let Some(rest) = s.strip_suffix(".in-addr.arpa") {
        let parts: Vec<&str> = rest.split('.').collect();
        if parts.len() != 4 {
            return None;
        }
        let mut o = [0u8; 4];
        for (i, p) in parts.iter().rev().enumerate() {
            if p.is_empty() || p.len() > 3 || (p.len() > 1 && p.starts_with('0')) {
                return None;
            }
            o[i] = p.parse().ok()?;
        }
        return Some(IpAddr::V4(Ipv4Addr::from(o)));
    }
    if let Some(rest) = s.strip_suffix(".ip6.arpa") {
        let parts: Vec<&str> = rest.split('.').collect();
        if parts.len() != 32 {
            return None;
        }
        let mut v: u128 = 0;
        for p in parts.iter().rev() {
            if p.len() != 1 {
                return None;
            }
            v = (v << 4) | u128::from(u8::from_str_radix(p, 16).ok()?);
        }
        return Some(IpAddr::V6(Ipv6Addr::from(v)));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn table() -> (Table, NetId, NetId, NetId) {
        let mut t = Table::new();
        let front = t.net_id("front");
        let back = t.net_id("back");
        let other = t.net_id("other");
        t.insert(Endpoint::new(
            "c-web",
            "front",
            ["web"],
            [ip("10.1.0.2"), ip("fd00:1::2")],
        ));
        t.insert(Endpoint::new(
            "c-db",
            "back",
            ["DB", "mysql", "db"],
            [ip("10.2.0.3")],
        ));
        t.insert(Endpoint::new(
            "c-db",
            "front",
            ["db", "mysql"],
            [ip("10.1.0.3")],
        ));
        t.insert(Endpoint::new("c-x", "other", ["x"], [ip("10.3.0.2")]));
        (t, front, back, other)
    }

    #[test]
    fn names_and_aliases_on_the_askers_networks() {
        let (t, front, back, other) = table();
        let a = t.resolve(&[front], b"web").unwrap();
        assert_eq!(a.v4, vec![Ipv4Addr::new(10, 1, 0, 2)]);
        assert_eq!(a.v6, vec!["fd00:1::2".parse::<Ipv6Addr>().unwrap()]);
        assert_eq!(
            t.resolve(&[front], b"mysql").unwrap().v4,
            vec![Ipv4Addr::new(10, 1, 0, 3)]
        );
        // On both networks: both addresses, in the asker's network order.
        assert_eq!(
            t.resolve(&[back, front], b"db").unwrap().v4,
            vec![Ipv4Addr::new(10, 2, 0, 3), Ipv4Addr::new(10, 1, 0, 3)]
        );
        // Isolation.
        assert!(t.resolve(&[other], b"web").is_none());
        assert!(t.resolve(&[front], b"x").is_none());
        assert!(t.resolve(&[], b"web").is_none());
    }

    #[test]
    fn name_dot_network() {
        let (t, front, back, other) = table();
        assert_eq!(
            t.resolve(&[front, back], b"db.back").unwrap().v4,
            vec![Ipv4Addr::new(10, 2, 0, 3)]
        );
        assert_eq!(
            t.resolve(&[front, back], b"db.front").unwrap().v4,
            vec![Ipv4Addr::new(10, 1, 0, 3)]
        );
        assert!(t.resolve(&[front], b"db.back").is_none(), "not on back");
        assert!(t.resolve(&[other], b"web.front").is_none());
        assert!(t.resolve(&[front], b"front").is_none());
    }

    #[test]
    fn remove_and_replace() {
        let (mut t, front, back, _) = table();
        assert_eq!(t.len(), 4);
        assert_eq!(t.remove_container("c-db"), 2);
        assert!(t.resolve(&[front, back], b"db").is_none());
        assert!(t.resolve(&[front, back], b"mysql").is_none());
        assert!(t.reverse(&[front], ip("10.1.0.3")).is_none());
        assert_eq!(t.len(), 2);
        // Replacing keeps one endpoint per (container, network).
        t.insert(Endpoint::new("c-web", "front", ["web2"], [ip("10.1.0.9")]));
        assert!(t.resolve(&[front], b"web").is_none());
        assert_eq!(
            t.resolve(&[front], b"web2").unwrap().v4,
            vec![Ipv4Addr::new(10, 1, 0, 9)]
        );
        assert_eq!(t.len(), 2);
        // Freed slots are reused.
        t.insert(Endpoint::new("c-new", "front", ["new"], [ip("10.1.0.10")]));
        assert_eq!(t.endpoints.len(), 4);
    }

    #[test]
    fn shared_alias_resolves_to_all_holders() {
        let mut t = Table::new();
        let n = t.net_id("n");
        t.insert(Endpoint::new("a", "n", ["a", "pool"], [ip("10.0.0.2")]));
        t.insert(Endpoint::new("b", "n", ["b", "pool"], [ip("10.0.0.3")]));
        assert_eq!(t.resolve(&[n], b"pool").unwrap().v4.len(), 2);
        t.remove("a", "n");
        assert_eq!(
            t.resolve(&[n], b"pool").unwrap().v4,
            vec![Ipv4Addr::new(10, 0, 0, 3)]
        );
    }

    #[test]
    fn reverse_lookups_respect_isolation() {
        let (t, front, back, other) = table();
        assert_eq!(
            t.reverse(&[front], ip("10.1.0.2")).as_deref(),
            Some("web.front")
        );
        assert_eq!(
            t.reverse(&[back], ip("10.2.0.3")).as_deref(),
            Some("db.back")
        );
        assert_eq!(
            t.reverse(&[front], ip("fd00:1::2")).as_deref(),
            Some("web.front")
        );
        assert!(t.reverse(&[other], ip("10.1.0.2")).is_none());
    }

    #[test]
    fn names_are_cleaned() {
        let ep = Endpoint::new(
            "id",
            "n",
            ["Web", "web", "bad name", &"a".repeat(64), "ok.two", "-x"],
            [],
        );
        assert_eq!(ep.names, vec!["web", "ok.two", "-x"]);
        assert!(valid_name("a-b_c.d"));
        assert!(!valid_name("a..b"));
        assert!(!valid_name(""));
    }

    #[test]
    fn arpa_names() {
        assert_eq!(arpa_address(b"4.3.2.10.in-addr.arpa"), Some(ip("10.2.3.4")));
        assert_eq!(arpa_address(b"3.2.10.in-addr.arpa"), None);
        assert_eq!(arpa_address(b"04.3.2.10.in-addr.arpa"), None);
        assert_eq!(arpa_address(b"256.3.2.10.in-addr.arpa"), None);
        let v6 = format!("2.0.0.0{}.1.0.0.0.0.0.d.f.ip6.arpa", ".0".repeat(20));
        assert_eq!(arpa_address(v6.as_bytes()), Some(ip("fd00:1::2")));
        assert_eq!(arpa_address(b"example.com"), None);
    }
}
