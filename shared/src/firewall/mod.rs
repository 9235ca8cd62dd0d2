//! wirehook's firewall: one nftables table, `inet wirehook`, that no other
//! tool touches and that touches no other table.
//!
//! Three levels of change, from rare to hot:
//!
//! - [`ensure_table`]: the table, its sets and maps and the four base
//!   chains (`prerouting`, `output`, `postrouting`, `forward`) whose rules
//!   are only lookups in those maps. Written with `nft -f -` when missing
//!   (see [`ruleset`]); when present, one netlink `GETSET` of the
//!   version marker set confirms it.
//! - [`realize_network`] / [`remove_network`]: per network, four regular
//!   chains (`nw-NAME-fwdout`, `-fwdin`, `-masq`, `-hairpin`) plus one
//!   element in each verdict map, keyed by the bridge, jumping to them.
//! - [`add_ports`] / [`remove_ports`] / [`flush_conntrack`]: per container,
//!   only map elements (published ports) and conntrack entries, through
//!   netlink directly ([`nfnetlink`], [`conntrack`]), no process forked.
//!   The cost does not depend on how many containers exist.
//!
//! Everything works in the calling thread's current network namespace.
//!
//! Netlink sockets are opened once per namespace and kept until the
//! process exits ([`nfnetlink::with_socket`]): closing a netfilter socket
//! after a deletion waits for an RCU grace period (12-20 ms here), so a
//! fresh socket per call would make [`remove_ports`] 500 times slower.
//! The wait then happens at process exit, unless it has elapsed by then:
//! callers should remove ports early in a teardown, not as its last step.

pub mod conntrack;
pub mod nfnetlink;
pub mod ruleset;

use std::collections::HashSet;
use std::net::IpAddr;

use ipnetwork::IpNetwork;

use crate::error::{Error, Result};
use nfnetlink::*;

pub use crate::ports::Protocol;

/// The nftables table wirehook owns (family `inet`).
pub const TABLE: &str = "wirehook";

/// What [`realize_network`] needs to know about a bridge network.
#[derive(Clone, Debug)]
pub struct NetworkRules<'a> {
    /// Network name; the chains are named `nw-NAME-...`.
    pub name: &'a str,
    /// The Linux bridge of the network.
    pub bridge: &'a str,
    /// Its subnets, v4 and/or v6.
    pub subnets: &'a [IpNetwork],
    /// Internal: no traffic leaves the bridge, no masquerade.
    pub internal: bool,
    /// An overlay network's VXLAN device: traffic to and from the other
    /// hosts' shares of the network, treated as the network's own.
    pub tunnel: Option<&'a str>,
}

/// One published port: host `host_ip:host_port` (every local address when
/// `host_ip` is `None` or unspecified) forwards to
/// `container_ip:container_port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortRule {
    pub protocol: Protocol,
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    pub container_ip: IpAddr,
    pub container_port: u16,
}

/// Create the table, sets, maps and base chains if they are not there
/// (or are from an older wirehook). Cheap when the table exists: one
/// netlink request.
pub fn ensure_table() -> Result<()> {
    if with_socket(table_is_current)? {
        return Ok(());
    }
    ruleset::run_nft(&ruleset::table_script(), "create table inet wirehook")
}

/// Does the table exist with this version's ruleset? The ruleset script
/// creates an (empty) marker set named after its version in the same
/// transaction as everything else, so its presence proves the rest.
fn table_is_current(sock: &mut Socket) -> Result<bool> {
    let mut msg = Msg::new(NFNL_SUBSYS_NFTABLES, NFT_MSG_GETSET, 0, NFPROTO_INET);
    msg.attr_str(NFTA_SET_TABLE, TABLE);
    msg.attr_str(NFTA_SET_NAME, ruleset::VERSION_MARKER);
    match sock.request(&msg, "look up table inet wirehook", |_| {})? {
        0 => Ok(true),
        libc::ENOENT => Ok(false),
        e => Err(Error::netlink(
            "look up table inet wirehook",
            std::io::Error::from_raw_os_error(e),
        )),
    }
}

/// Write the per-network chains and map elements of `n` (creating the
/// table first if needed). Idempotent: the chains are flushed and
/// rewritten in the same transaction.
pub fn realize_network(n: &NetworkRules) -> Result<()> {
    ruleset::validate_network_name(n.name)?;
    ruleset::validate_ifname(n.bridge)?;
    if let Some(t) = n.tunnel {
        ruleset::validate_ifname(t)?;
    }
    ensure_table()?;
    ruleset::run_nft(
        &ruleset::network_script(n),
        &format!("set up the firewall of network {}", n.name),
    )
}

/// Delete the chains and map elements of network `name` on `bridge`.
/// Idempotent: missing pieces (or a missing table) are fine.
pub fn remove_network(name: &str, bridge: &str) -> Result<()> {
    remove_network_devices(name, &[bridge])
}

/// [`remove_network`] for a network with more than one device (an
/// overlay's bridge and VXLAN device).
pub fn remove_network_devices(name: &str, devices: &[&str]) -> Result<()> {
    ruleset::validate_network_name(name)?;
    let mut msgs = Vec::new();
    for dev in devices {
        ruleset::validate_ifname(dev)?;
        let key = ifname_key(dev);
        for (set, _) in ruleset::VMAPS {
            msgs.push(setelem_msg(NFT_MSG_DELSETELEM, set, &key, None));
        }
        msgs.push(setelem_msg(NFT_MSG_DELSETELEM, "bridges", &key, None));
    }
    for suffix in ruleset::CHAIN_SUFFIXES {
        let mut m = Msg::new(NFNL_SUBSYS_NFTABLES, NFT_MSG_DELCHAIN, 0, NFPROTO_INET);
        m.attr_str(NFTA_CHAIN_TABLE, TABLE);
        m.attr_str(NFTA_CHAIN_NAME, &ruleset::chain_name(name, suffix));
        msgs.push(m);
    }
    with_socket(|sock| {
        apply_ignoring_missing(
            sock,
            msgs,
            &format!("remove the firewall of network {name}"),
        )
    })
}

/// The key of VNI `vni` in the `encrypted_vnis` set: the 24 bits as
/// they stand in a VXLAN header (network byte order).
fn vni_key(vni: u32) -> [u8; 3] {
    let b = vni.to_be_bytes();
    [b[1], b[2], b[3]]
}

/// Take VXLAN frames carrying `vni` only from WireGuard devices: a
/// plaintext frame with it from the underlay is dropped. Done before an
/// encrypted network's VXLAN device exists, so there is no moment in
/// which the underlay could inject into it. Idempotent.
pub fn guard_encrypted_vni(vni: u32) -> Result<()> {
    ensure_table()?;
    let msg = setelem_msg(NFT_MSG_NEWSETELEM, "encrypted_vnis", &vni_key(vni), None);
    with_socket(|sock| {
        let out = sock.batch(&[msg], "guard an encrypted VNI")?;
        if out.ok() {
            return Ok(());
        }
        Err(Error::Firewall(format!(
            "cannot add VNI {vni} to the encrypted_vnis set of table inet {TABLE}: {}",
            out.errors
                .iter()
                .chain(out.commit_error.iter())
                .map(|e| e.describe())
                .collect::<Vec<_>>()
                .join("; ")
        )))
    })
}

/// Undo [`guard_encrypted_vni`] (the network is gone from this host).
/// Idempotent: a missing element or table is fine.
pub fn release_encrypted_vni(vni: u32) -> Result<()> {
    let msg = setelem_msg(NFT_MSG_DELSETELEM, "encrypted_vnis", &vni_key(vni), None);
    with_socket(|sock| apply_ignoring_missing(sock, vec![msg], "release an encrypted VNI"))
}

/// Delete the whole table (uninstall, tests). Missing table is fine.
pub fn delete_table() -> Result<()> {
    let mut m = Msg::new(NFNL_SUBSYS_NFTABLES, NFT_MSG_DELTABLE, 0, NFPROTO_INET);
    m.attr_str(NFTA_TABLE_NAME, TABLE);
    with_socket(|sock| apply_ignoring_missing(sock, vec![m], "delete table inet wirehook"))
}

/// Publish ports: one map element per rule, all in one transaction (all
/// or nothing). Re-adding an element with the same target is fine; a
/// host port that already forwards elsewhere is refused.
pub fn add_ports(rules: &[PortRule]) -> Result<()> {
    let elems = encode_unique(rules)?;
    if elems.is_empty() {
        return Ok(());
    }
    let msgs: Vec<Msg> = elems
        .iter()
        .map(|e| setelem_msg(NFT_MSG_NEWSETELEM, e.set, &e.key, Some(&e.data)))
        .collect();
    with_socket(|sock| {
        let mut outcome = sock.batch(&msgs, "publish ports")?;
        if !outcome.ok()
            && outcome.errors.iter().any(|e| e.errno == libc::ENOENT)
            && !table_is_current(sock)?
        {
            // The table is gone (or older); make it and try once more.
            ruleset::run_nft(&ruleset::table_script(), "create table inet wirehook")?;
            outcome = sock.batch(&msgs, "publish ports")?;
        }
        if outcome.ok() {
            return Ok(());
        }
        if let Some(e) = &outcome.commit_error {
            return Err(Error::Firewall(format!(
                "publishing ports failed: {}",
                e.describe()
            )));
        }
        let e = &outcome.errors[0];
        let el = &elems[e.index];
        let what = describe_rule(el.rule);
        Err(match e.errno {
            libc::EEXIST | libc::EBUSY => Error::Firewall(format!(
                "{what}: the host port is already published to {} (another container holds it)",
                existing_target(sock, el).unwrap_or_else(|| "another address".into())
            )),
            _ => Error::Firewall(format!("{what}: {}", e.describe())),
        })
    })
}

/// Unpublish ports. Elements that are missing, or that now forward to a
/// different container address than the rule says, are left alone.
pub fn remove_ports(rules: &[PortRule]) -> Result<()> {
    let elems = encode_unique(rules)?;
    if elems.is_empty() {
        return Ok(());
    }
    with_socket(|sock| {
        // Look the elements up first (one datagram): only delete our own.
        let gets: Vec<Msg> = elems
            .iter()
            .map(|e| setelem_msg(NFT_MSG_GETSETELEM, e.set, &e.key, None))
            .collect();
        let mut found: Vec<Option<Vec<u8>>> = vec![None; elems.len()];
        let errnos = sock.requests_with(&gets, "look up published ports", |i, r| {
            found[i] = element_data(r);
        })?;
        let mut dels = Vec::new();
        for (i, e) in elems.iter().enumerate() {
            match errnos[i] {
                0 => {}
                libc::ENOENT => continue,
                errno => {
                    return Err(Error::Firewall(format!(
                        "{}: {}",
                        describe_rule(e.rule),
                        std::io::Error::from_raw_os_error(errno)
                    )))
                }
            }
            if found[i].as_deref() == Some(&e.data[..]) {
                dels.push(setelem_msg(NFT_MSG_DELSETELEM, e.set, &e.key, None));
            }
        }
        if dels.is_empty() {
            return Ok(());
        }
        apply_ignoring_missing(sock, dels, "unpublish ports")
    })
}

/// Delete the conntrack entries in which one of `addrs` appears (see
/// [`conntrack::flush`]); returns how many. Free when the namespace
/// tracks nothing; otherwise one ctnetlink dump, whose cost is set by the
/// kernel: ~15 ms with a near-empty table (it walks every bucket of the
/// host-wide hash), ~100 ms with 20000 entries.
pub fn flush_conntrack(addrs: &[IpAddr]) -> Result<usize> {
    conntrack::flush(addrs)
}

/// When another table's base chain on the forward hook drops by default
/// (docker's `ip filter FORWARD`), wirehook's accept is not enough: a
/// one-line message saying what the operator must add there.
pub fn forward_drop_warning() -> Option<String> {
    ruleset::forward_drop_warning()
}

/// Run `msgs` as one transaction; messages refused with ENOENT (element,
/// chain or table already gone) are dropped and the rest is retried.
fn apply_ignoring_missing(sock: &mut Socket, mut msgs: Vec<Msg>, op: &str) -> Result<()> {
    while !msgs.is_empty() {
        let outcome = sock.batch(&msgs, op)?;
        if outcome.ok() {
            return Ok(());
        }
        if let Some(e) = &outcome.commit_error {
            return Err(Error::Firewall(format!("{op}: {}", e.describe())));
        }
        if let Some(e) = outcome.errors.iter().find(|e| e.errno != libc::ENOENT) {
            return Err(Error::Firewall(format!("{op}: {}", e.describe())));
        }
        let missing: HashSet<usize> = outcome.errors.iter().map(|e| e.index).collect();
        msgs = msgs
            .into_iter()
            .enumerate()
            .filter(|(i, _)| !missing.contains(i))
            .map(|(_, m)| m)
            .collect();
    }
    Ok(())
}

/// One encoded map element.
struct Elem<'r> {
    rule: &'r PortRule,
    set: &'static str,
    key: Vec<u8>,
    data: Vec<u8>,
}

fn encode_unique(rules: &[PortRule]) -> Result<Vec<Elem<'_>>> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(rules.len());
    for r in rules {
        let e = encode(r)?;
        if seen.insert((e.set, e.key.clone())) {
            out.push(e);
        }
    }
    Ok(out)
}

/// Encode a rule as (map, key, data). Concatenated nftables values pad
/// every field to 4 bytes: `inet_proto` is 1 byte + 3 zero bytes,
/// `inet_service` a big-endian port + 2 zero bytes, addresses as in the
/// packet (4 or 16 bytes).
fn encode(r: &PortRule) -> Result<Elem<'_>> {
    let host_ip = r.host_ip.filter(|ip| !ip.is_unspecified());
    let proto = [r.protocol.ipproto(), 0, 0, 0];
    let port = |p: u16| {
        let b = p.to_be_bytes();
        [b[0], b[1], 0, 0]
    };
    let mut key = Vec::with_capacity(24);
    let mut data = Vec::with_capacity(20);
    let set = match (host_ip, r.container_ip) {
        (None, IpAddr::V4(_)) => "pub4_any",
        (None, IpAddr::V6(_)) => "pub6_any",
        (Some(IpAddr::V4(h)), IpAddr::V4(_)) => {
            key.extend_from_slice(&h.octets());
            "pub4_ip"
        }
        (Some(IpAddr::V6(h)), IpAddr::V6(_)) => {
            key.extend_from_slice(&h.octets());
            "pub6_ip"
        }
        (Some(h), c) => {
            return Err(Error::Invalid(format!(
                "published port {}: host address {h} and container address {c} are of different IP versions",
                r.host_port
            )))
        }
    };
    key.extend_from_slice(&proto);
    key.extend_from_slice(&port(r.host_port));
    match r.container_ip {
        IpAddr::V4(c) => data.extend_from_slice(&c.octets()),
        IpAddr::V6(c) => data.extend_from_slice(&c.octets()),
    }
    data.extend_from_slice(&port(r.container_port));
    Ok(Elem {
        rule: r,
        set,
        key,
        data,
    })
}

/// An `ifname` key: the name, NUL-padded to IFNAMSIZ.
fn ifname_key(name: &str) -> Vec<u8> {
    let mut k = name.as_bytes().to_vec();
    k.resize(16, 0);
    k
}

/// A set-element message with one element.
fn setelem_msg(ty: u16, set: &str, key: &[u8], data: Option<&[u8]>) -> Msg {
    let flags = if ty == NFT_MSG_NEWSETELEM {
        NLM_F_CREATE
    } else {
        0
    };
    let mut m = Msg::new(NFNL_SUBSYS_NFTABLES, ty, flags, NFPROTO_INET);
    m.attr_str(NFTA_SET_ELEM_LIST_TABLE, TABLE);
    m.attr_str(NFTA_SET_ELEM_LIST_SET, set);
    let list = m.nest_start(NFTA_SET_ELEM_LIST_ELEMENTS);
    let el = m.nest_start(NFTA_LIST_ELEM);
    let k = m.nest_start(NFTA_SET_ELEM_KEY);
    m.attr(NFTA_DATA_VALUE, key);
    m.nest_end(k);
    if let Some(d) = data {
        let dn = m.nest_start(NFTA_SET_ELEM_DATA);
        m.attr(NFTA_DATA_VALUE, d);
        m.nest_end(dn);
    }
    m.nest_end(el);
    m.nest_end(list);
    m
}

/// The data (map target) of the first element in a NEWSETELEM reply.
fn element_data(r: &Reply<'_>) -> Option<Vec<u8>> {
    let list = r.attrs().get(NFTA_SET_ELEM_LIST_ELEMENTS)?;
    let el = list.nested().get(NFTA_LIST_ELEM)?;
    let data = el.nested().get(NFTA_SET_ELEM_DATA)?;
    Some(data.nested().get(NFTA_DATA_VALUE)?.data.to_vec())
}

/// "10.77.0.2:8080"-style text of what an element currently maps to.
fn existing_target(sock: &mut Socket, el: &Elem<'_>) -> Option<String> {
    let (ip, port) = existing_target_addr(sock, el)?;
    Some(match ip {
        IpAddr::V4(_) => format!("{ip}:{port}"),
        IpAddr::V6(_) => format!("[{ip}]:{port}"),
    })
}

/// Where the host port of `rule` is published to right now, if it is.
pub fn published_target(rule: &PortRule) -> Option<(IpAddr, u16)> {
    let el = encode(rule).ok()?;
    with_socket(|sock| Ok(existing_target_addr(sock, &el)))
        .ok()
        .flatten()
}

/// Where each of `rules`' host ports is published already, if anywhere
/// (the element's target), looked up through one socket.
pub fn published_targets(rules: &[PortRule]) -> Vec<Option<(IpAddr, u16)>> {
    with_socket(|sock| {
        Ok(rules
            .iter()
            .map(|r| {
                encode(r)
                    .ok()
                    .and_then(|el| existing_target_addr(sock, &el))
            })
            .collect())
    })
    .unwrap_or_else(|_| vec![None; rules.len()])
}

/// Every published port in the table, read back as rules (for `gc`, which
/// removes those no container holds: a hook killed between publishing a
/// port and writing its record leaves one). Read with `nft -j`: gc is not
/// on any container's start.
pub fn published_ports() -> Result<Vec<PortRule>> {
    let mut out = Vec::new();
    for (map, keyed_by_ip) in [
        ("pub4_any", false),
        ("pub4_ip", true),
        ("pub6_any", false),
        ("pub6_ip", true),
    ] {
        out.extend(
            ruleset::map_elements(map)?
                .into_iter()
                .filter_map(|(key, data)| {
                    let (host_ip, rest) = if keyed_by_ip {
                        (Some(key.first()?.as_str()?.parse().ok()?), &key[1..])
                    } else {
                        (None, &key[..])
                    };
                    Some(PortRule {
                        protocol: rest.first()?.as_str()?.parse().ok()?,
                        host_ip,
                        host_port: u16::try_from(rest.get(1)?.as_u64()?).ok()?,
                        container_ip: data.first()?.as_str()?.parse().ok()?,
                        container_port: u16::try_from(data.get(1)?.as_u64()?).ok()?,
                    })
                }),
        );
    }
    Ok(out)
}

/// What is wrong with a published port's map element, if anything: it is
/// missing, or forwards to another address or port (for `wirehook check`).
pub fn port_problem(rule: &PortRule) -> Option<String> {
    let what = describe_rule(rule);
    let el = match encode(rule) {
        Ok(el) => el,
        Err(e) => return Some(format!("{what}: {e}")),
    };
    match with_socket(|sock| Ok(existing_target_addr(sock, &el))) {
        Ok(Some((ip, port))) if ip == rule.container_ip && port == rule.container_port => None,
        Ok(Some((ip, port))) => Some(format!(
            "{what}: the port's map element forwards to {ip}:{port} instead"
        )),
        Ok(None) => Some(format!("{what}: the port's map element is missing")),
        Err(e) => Some(format!("{what}: cannot read the port's map element: {e}")),
    }
}

fn existing_target_addr(sock: &mut Socket, el: &Elem<'_>) -> Option<(IpAddr, u16)> {
    let get = setelem_msg(NFT_MSG_GETSETELEM, el.set, &el.key, None);
    let mut data = None;
    let errnos = sock
        .requests_with(&[get], "look up published port", |_, r| {
            data = element_data(r)
        })
        .ok()?;
    if errnos.first() != Some(&0) {
        return None;
    }
    let d = data?;
    let (ip, port) = match d.len() {
        8 => (IpAddr::from(<[u8; 4]>::try_from(&d[0..4]).ok()?), &d[4..6]),
        20 => (
            IpAddr::from(<[u8; 16]>::try_from(&d[0..16]).ok()?),
            &d[16..18],
        ),
        _ => return None,
    };
    Some((ip, u16::from_be_bytes([port[0], port[1]])))
}

fn describe_rule(r: &PortRule) -> String {
    let host = match r.host_ip.filter(|ip| !ip.is_unspecified()) {
        Some(IpAddr::V6(ip)) => format!("[{ip}]:"),
        Some(ip) => format!("{ip}:"),
        None => String::new(),
    };
    let target = match r.container_ip {
        IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    format!(
        "publishing {host}{}/{} -> {target}:{}",
        r.host_port,
        r.protocol.as_str(),
        r.container_port
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(host_ip: Option<&str>, hp: u16, cip: &str, cp: u16) -> PortRule {
        PortRule {
            protocol: Protocol::Tcp,
            host_ip: host_ip.map(|s| s.parse().unwrap()),
            host_port: hp,
            container_ip: cip.parse().unwrap(),
            container_port: cp,
        }
    }

    #[test]
    fn encodes_v4_wildcard() {
        let r = rule(None, 18080, "10.77.0.2", 8080);
        let e = encode(&r).unwrap();
        assert_eq!(e.set, "pub4_any");
        assert_eq!(e.key, [6, 0, 0, 0, 0x46, 0xa0, 0, 0]);
        assert_eq!(e.data, [10, 77, 0, 2, 0x1f, 0x90, 0, 0]);
    }

    #[test]
    fn encodes_specific_and_v6() {
        let r = rule(Some("192.0.2.1"), 80, "10.77.0.2", 8080);
        let e = encode(&r).unwrap();
        assert_eq!(e.set, "pub4_ip");
        assert_eq!(e.key, [192, 0, 2, 1, 6, 0, 0, 0, 0, 80, 0, 0]);
        let r = rule(Some("0.0.0.0"), 80, "10.77.0.2", 8080);
        assert_eq!(encode(&r).unwrap().set, "pub4_any");
        let r = rule(Some("2001:db8::1"), 443, "fd00::2", 8443);
        let e = encode(&r).unwrap();
        assert_eq!(e.set, "pub6_ip");
        assert_eq!(e.key.len(), 24);
        assert_eq!(e.data.len(), 20);
        let r = rule(None, 443, "fd00::2", 8443);
        assert_eq!(encode(&r).unwrap().set, "pub6_any");
        assert!(matches!(
            encode(&rule(Some("192.0.2.1"), 1, "fd00::2", 1)),
            Err(Error::Invalid(_))
        ));
    }

    #[test]
    fn ifname_keys_are_padded() {
        assert_eq!(ifname_key("wh-a").len(), 16);
        assert_eq!(&ifname_key("wh-a")[..5], b"wh-a\0");
    }
}
