//! Bridge networks: a veth pair per container, the host end on the
//! network's Linux bridge (which holds the gateway address), the container
//! end named `eth0` with an address from the pool, a default route via the
//! gateway, masquerade and published ports through the firewall.
//!
//! The host side of a network (bridge, gateway address, forwarding,
//! per-network firewall rules) is made once, by the first container that
//! needs it, under the network's lock; a marker in `run/realized/` lets
//! later containers skip that after one link lookup. Per container there
//! is one veth request, a few address/route requests inside the container,
//! and, with published ports, one nftables element batch.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};
use wirehook_shared::error::{fail_point, Error, Result};
use wirehook_shared::firewall::{self, NetworkRules, PortRule};
use wirehook_shared::fsutil::{self, Lock};
use wirehook_shared::ipam::{Ipam, Lease};
use wirehook_shared::netlink::{Netlink, VethSpec};
use wirehook_shared::network::{stable_hash, NetworkDef};
use wirehook_shared::paths::Paths;
use wirehook_shared::ports::PortMapping;
use wirehook_shared::store::{ContainerRecord, InterfaceRecord};
use wirehook_shared::{annotations, sysctl};

use super::{Attachment, Driver, HostCx, SetupCx};
use crate::finish::Deferred;
use crate::log;
use crate::undo::Change;

pub struct Bridge;

/// What `run/realized/NETWORK.json` remembers about a network's host side.
#[derive(Debug, Serialize, Deserialize)]
struct Realized {
    bridge: String,
    ifindex: u32,
}

/// The lock file that serialises changes to one network's shared state.
pub fn network_lock(paths: &Paths, network: &str) -> Result<Lock> {
    Lock::exclusive(&paths.locks_dir().join(format!("net-{network}.lock")))
}

/// Make sure the host side of `net` exists; returns the bridge's index.
/// The caller holds the network lock.
pub fn realize(paths: &Paths, nl: &Netlink, net: &NetworkDef) -> Result<u32> {
    let bridge = net.bridge_name();
    let marker = paths.realized_dir().join(format!("{}.json", net.name));
    if let (Some(link), Some(m)) = (nl.link(bridge)?, fsutil::read_json::<Realized>(&marker)?) {
        if link.index == m.ifindex && link.up {
            return Ok(link.index);
        }
    }
    let index = nl.ensure_bridge(bridge, net.mtu)?;
    for s in &net.subnets {
        nl.add_address(index, s.gateway, s.subnet.prefix())?;
    }
    if !net.internal {
        if sysctl::enable_ip_forward(false)? {
            log::info("enabled net.ipv4.ip_forward (bridge networks route through the host)");
        }
        if net.has_v6() && sysctl::enable_ip_forward(true)? {
            log::info("enabled net.ipv6.conf.all.forwarding (IPv6 bridge network)");
        }
    }
    sysctl::set_route_localnet(bridge)?;
    firewall::ensure_table()?;
    let subnets = net.subnet_cidrs();
    firewall::realize_network(&NetworkRules {
        name: &net.name,
        bridge,
        subnets: &subnets,
        internal: net.internal,
        tunnel: None,
    })?;
    if let Some(w) = firewall::forward_drop_warning() {
        log::warn(&w);
        eprintln!("wirehook: warning: {w}");
    }
    fsutil::write_json(
        &marker,
        &Realized {
            bridge: bridge.to_string(),
            ifindex: index,
        },
    )?;
    log::info(format!(
        "network {}: bridge {bridge} (index {index}) and firewall rules in place",
        net.name
    ));
    Ok(index)
}

/// Forget a network's host side: bridge, firewall rules, marker.
pub fn unrealize(paths: &Paths, nl: &Netlink, net: &NetworkDef) -> Result<()> {
    let bridge = net.bridge_name();
    firewall::remove_network(&net.name, bridge)?;
    nl.delete_link(bridge)?;
    fsutil::remove_file(&paths.realized_dir().join(format!("{}.json", net.name)))?;
    Ok(())
}

/// Host-side veth name: stable per container and interface, 15 bytes.
pub fn host_ifname(id: &str, ifname: &str) -> String {
    let h = stable_hash(format!("{id}/{ifname}").as_bytes());
    format!("whv{:012x}", h & 0xffff_ffff_ffff)
}

/// A locally administered unicast MAC derived from the container id.
pub fn generated_mac(id: &str, ifname: &str) -> [u8; 6] {
    let h = stable_hash(format!("mac/{id}/{ifname}").as_bytes()).to_be_bytes();
    [0x02, h[0], h[1], h[2], h[3], h[4]]
}

/// The firewall elements of one interface's published ports.
pub fn port_rules(ports: &[PortMapping], addresses: &[IpNetwork]) -> Vec<PortRule> {
    let v4 = addresses.iter().find(|a| a.is_ipv4()).map(|a| a.ip());
    let v6 = addresses.iter().find(|a| a.is_ipv6()).map(|a| a.ip());
    let mut rules = Vec::new();
    for p in ports {
        let targets: Vec<IpAddr> = match p.host_ip {
            Some(IpAddr::V4(_)) => v4.into_iter().collect(),
            Some(IpAddr::V6(_)) => v6.into_iter().collect(),
            None => v4.into_iter().chain(v6).collect(),
        };
        for ip in targets {
            for (host_port, container_port) in p.pairs() {
                rules.push(PortRule {
                    protocol: p.protocol,
                    host_ip: p.host_ip,
                    host_port,
                    container_ip: ip,
                    container_port,
                });
            }
        }
    }
    rules
}

/// Take a static address. If its holder is a container whose teardown is
/// still finishing (its record is gone, its flows are being flushed), wait
/// for the release instead of failing: a container restarted with the same
/// address must not race its own previous teardown.
fn take_static_when_free(cx: &SetupCx<'_>, ipam: &Ipam<'_>, ip: IpAddr) -> Result<Lease> {
    let deadline = std::time::Instant::now() + crate::finish::wait_budget();
    loop {
        match ipam.take_static(ip, cx.id) {
            Err(Error::Conflict(msg)) => {
                // No holder any more: the finisher let go of it between our
                // try and this look, so try again at once.
                let finishing = ipam.holder(ip).is_none_or(|h| {
                    wirehook_shared::store::Records::new(cx.paths)
                        .get(&h)
                        .ok()
                        .flatten()
                        .is_none()
                });
                if !finishing || std::time::Instant::now() > deadline {
                    return Err(Error::Conflict(msg));
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            other => return other,
        }
    }
}

/// Publish ports. A host port still published for a container whose
/// teardown is finishing is waited for (a restarted container asks for
/// the same ports at once); any other holder is an error.
fn add_ports_when_free(cx: &SetupCx<'_>, rules: &[PortRule]) -> Result<()> {
    let deadline = std::time::Instant::now() + crate::finish::wait_budget();
    let mut released_retries = 0;
    loop {
        match firewall::add_ports(rules) {
            Err(e) => {
                let targets: Vec<_> = rules.iter().map(firewall::published_target).collect();
                // Every port free by now: its holder let go of it between our
                // try and this look (a finishing teardown closes its ports
                // first). Try again at once, a few times at most: a refusal
                // that is not a taken port would come back each time.
                if targets.iter().all(Option::is_none) && released_retries < 3 {
                    released_retries += 1;
                    continue;
                }
                let finishing = rules.iter().zip(&targets).any(|(r, t)| {
                    t.is_some_and(|(ip, _)| {
                        ip != r.container_ip
                            && crate::finish::held_by_finishing_teardown(cx.paths, ip)
                    })
                });
                if !finishing || std::time::Instant::now() > deadline {
                    return Err(e);
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            ok => return ok,
        }
    }
}

/// Addresses for this container on `net`: the requested static ones that
/// fall in its subnets, else one from each subnet's pool; each lease is
/// journalled. Every driver that takes addresses uses this.
pub(super) fn lease_addresses(cx: &mut SetupCx<'_>, net: &NetworkDef) -> Result<Vec<Lease>> {
    let ipam = Ipam::new(cx.paths, net);
    let mut leases = Vec::new();
    for subnet in &net.subnets {
        let wanted = cx
            .request
            .ips
            .iter()
            .find(|ip| subnet.subnet.contains(**ip));
        let lease = match wanted {
            Some(ip) => take_static_when_free(cx, &ipam, *ip)?,
            None => ipam.allocate(subnet, cx.id)?,
        };
        cx.undo.push(Change::Lease {
            network: net.name.clone(),
            address: lease.address,
        });
        leases.push(lease);
    }
    Ok(leases)
}

impl Driver for Bridge {
    fn setup(
        &self,
        cx: &mut SetupCx<'_>,
        at: Option<&Attachment<'_>>,
    ) -> Result<Option<InterfaceRecord>> {
        let at = at.ok_or_else(|| Error::invalid("bridge mode needs a network"))?;
        let net = at.network;

        // Shared state of the network, under its lock: host side, leases.
        let (bridge_index, leases) = {
            fail_point("lock")?;
            let _lock = network_lock(cx.paths, &net.name)?;
            fail_point("realize")?;
            let index = realize(cx.paths, cx.host_nl, net)?;
            fail_point("allocate")?;
            (index, lease_addresses(cx, net)?)
        };
        log::phase("lease");
        attach(cx, at, net, bridge_index, &leases).map(Some)
    }

    fn teardown(
        &self,
        cx: &mut HostCx<'_>,
        _rec: &ContainerRecord,
        iface: Option<&InterfaceRecord>,
    ) {
        let Some(iface) = iface else { return };
        detach(cx, iface);
    }

    fn check(
        &self,
        cx: &HostCx<'_>,
        rec: &ContainerRecord,
        iface: Option<&InterfaceRecord>,
    ) -> Vec<String> {
        let Some(iface) = iface else {
            return Vec::new();
        };
        check_attached(cx, rec, iface)
    }
}

/// The per-container part of a bridge attachment, once the network's host
/// side exists and `leases` are taken: the veth pair on bridge
/// `bridge_index`, addresses and routes inside, published ports. `net` is
/// the definition the container is wired with (an overlay network's is
/// this host's share of it).
pub(super) fn attach(
    cx: &mut SetupCx<'_>,
    at: &Attachment<'_>,
    net: &NetworkDef,
    bridge_index: u32,
    leases: &[Lease],
) -> Result<InterfaceRecord> {
    let first = at.index == 0;
    // The veth pair, container end straight into the container.
    fail_point("veth")?;
    let host_name = host_ifname(cx.id, &at.ifname);
    let mac = match (first, cx.request.mac) {
        (true, Some(m)) => m,
        _ => generated_mac(cx.id, &at.ifname),
    };
    let mtu = cx.request.mtu.filter(|_| first).or(net.mtu).unwrap_or(1500);
    let spec = VethSpec {
        host_name: &host_name,
        master: Some(bridge_index),
        mtu,
        peer_name: &at.ifname,
        peer_ns: cx.netns,
        peer_mac: Some(mac),
    };
    // The host-side name is this container id's alone. Taken, it is left
    // over from an earlier run of the id: removed by us, or by the kernel
    // along with that run's namespace, which it does in the background
    // and may finish between our try and our look. So: remove it if it
    // is there, and try again. A clash that stays is the container's own
    // interface name.
    let mut created = cx.host_nl.create_veth(&spec);
    for _ in 0..3 {
        if !matches!(&created, Err(e) if e.errno() == Some(libc::EEXIST)) {
            break;
        }
        if cx.host_nl.link(&host_name)?.is_some() {
            log::warn(format!("removing stale {host_name} left by an earlier run"));
            // Gone meanwhile is as good as removed.
            let _ = cx.host_nl.delete_link(&host_name);
        }
        created = cx.host_nl.create_veth(&spec);
    }
    let host_index = match created {
        Ok(i) => i,
        Err(e) if e.errno() == Some(libc::EEXIST) => {
            return Err(Error::Conflict(format!(
            "the container already has an interface named {}: pick another with io.wirehook.ifname",
            at.ifname
        )))
        }
        Err(e) => return Err(e),
    };
    cx.undo.push(Change::HostLink(host_name.clone()));
    log::phase("veth");

    // Addresses and routes inside the container.
    fail_point("address")?;
    let addresses: Vec<IpNetwork> = leases.iter().map(|l| l.cidr()).collect();
    let internal = net.internal;
    let gateways: Vec<IpAddr> = leases.iter().map(|l| l.subnet.gateway).collect();
    let want_routes = !internal && first;
    let has_v6 = net.has_v6();
    let ifname = at.ifname.clone();
    {
        let nl = cx.container_nl()?;
        let link = nl
            .link(&ifname)?
            .ok_or_else(|| Error::NotFound(format!("{ifname} did not appear in the container")))?;
        // IPv4-only network: no IPv6 on eth0 (as docker does). Addresses
        // before up, so the gratuitous ARP sent at up announces them.
        let v4 = addresses.iter().any(|a| a.is_ipv4());
        nl.prepare_container_link(link.index, !has_v6, v4)?;
        for a in &addresses {
            nl.add_address(link.index, a.ip(), a.prefix())?;
        }
        nl.set_up(link.index)?;
        fail_point("route")?;
        if want_routes {
            for gw in &gateways {
                nl.add_default_route(*gw, link.index)?;
            }
        }
    }

    // The host's own neighbour cache may still hold an earlier owner of
    // these addresses (a container restarted with the same address gets a
    // new MAC): point it at this one, or the host's traffic to the
    // container, published ports included, goes to a MAC that is gone
    // until the stale entry times out (15-45 s). The gratuitous ARP above
    // cannot be relied on for this: it may leave before the bridge port
    // forwards (the kernel enables the port asynchronously).
    // The other containers on the bridge are told by a gratuitous ARP sent
    // out of the bridge on the container's behalf (see `announce`).
    for a in &addresses {
        cx.host_nl.refresh_neighbour(bridge_index, a.ip(), mac)?;
        if let IpAddr::V4(ip) = a.ip() {
            // The socket stays open until the hook exits: its close waits
            // for a grace period, which a child pays (hook::hold_until_exit).
            let sent = wirehook_shared::announce::Announcer::open()
                .and_then(|s| s.send(bridge_index, mac, ip).map(|()| s));
            match sent {
                Ok(s) => s.keep_until_exit(),
                Err(e) => log::warn(format!("{}: {e}", cx.id)),
            }
        }
    }
    log::phase("addr+route");
    // Published ports: map elements only.
    fail_point("ports")?;
    let ports: Vec<PortMapping> = if first {
        cx.request.ports.clone()
    } else {
        Vec::new()
    };
    let rules = port_rules(&ports, &addresses);
    if !rules.is_empty() {
        // So the container reaches its own published ports via the host.
        cx.host_nl.set_bridge_port_hairpin(host_index)?;
        add_ports_when_free(cx, &rules)?;
        cx.undo.push(Change::Ports(rules));
    }
    log::phase("ports");

    log::info(format!(
        "{}: {} on network {} via {host_name} ({})",
        cx.id,
        ifname,
        net.name,
        addresses
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    Ok(InterfaceRecord {
        network: net.name.clone(),
        driver: net.driver,
        ifname,
        host_ifname: Some(host_name),
        bridge: Some(net.bridge_name().to_string()),
        mac: annotations::format_mac(&mac),
        mtu,
        addresses,
        gateways: if want_routes { gateways } else { Vec::new() },
        ports,
        dns: net.dns,
        internal: net.internal,
        aliases: Vec::new(),
        connected: false,
    })
}

/// Undo [`attach`] from the record: ports, flows, host end, leases, all
/// left to the finisher.
pub(super) fn detach(cx: &mut HostCx<'_>, iface: &InterfaceRecord) {
    let rules = port_rules(&iface.ports, &iface.addresses);
    if !rules.is_empty() {
        cx.defer(Deferred::Ports {
            ports: iface.ports.clone(),
            addresses: iface.addresses.clone(),
        });
    }
    let addrs: Vec<IpAddr> = iface.addresses.iter().map(|a| a.ip()).collect();
    cx.defer(Deferred::Conntrack(addrs.clone()));
    if let (true, Some(host)) = (cx.netns_alive, &iface.host_ifname) {
        cx.defer(Deferred::Link(host.clone()));
    }
    for a in addrs {
        cx.defer(Deferred::Lease {
            network: iface.network.clone(),
            address: a,
        });
    }
}

/// Compare an attachment's record with the kernel.
pub(super) fn check_attached(
    cx: &HostCx<'_>,
    rec: &ContainerRecord,
    iface: &InterfaceRecord,
) -> Vec<String> {
    let mut out = Vec::new();
    if let (Some(host), Some(bridge)) = (&iface.host_ifname, &iface.bridge) {
        let br = cx.host_nl.link(bridge).ok().flatten();
        match (cx.host_nl.link(host), br) {
            (Ok(Some(l)), Some(b)) if l.master == Some(b.index) => {}
            (Ok(Some(_)), Some(_)) => out.push(format!("{host} is not a port of bridge {bridge}")),
            (Ok(Some(_)), None) => out.push(format!("bridge {bridge} is missing")),
            (Ok(None), _) => out.push(format!("host end {host} is missing")),
            (Err(e), _) => out.push(format!("cannot look up {host}: {e}")),
        }
    }
    out.extend(
        port_rules(&iface.ports, &iface.addresses)
            .iter()
            .filter_map(firewall::port_problem),
    );
    let Some(path) = &rec.netns_path else {
        return out;
    };
    let inside = wirehook_shared::netns::NetNs::open(path).and_then(|ns| Netlink::in_netns(&ns));
    match inside {
        Err(e) => out.push(format!("cannot enter the container's namespace: {e}")),
        Ok(nl) => match nl.link(&iface.ifname) {
            Ok(Some(l)) => out.extend(super::missing_addresses(&nl, l.index, iface)),
            Ok(None) => out.push(format!("{} is missing in the container", iface.ifname)),
            Err(e) => out.push(format!("cannot look up {}: {e}", iface.ifname)),
        },
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_and_are_stable() {
        let n = host_ifname("0123456789abcdef", "eth0");
        assert_eq!(n.len(), 15);
        assert_eq!(n, host_ifname("0123456789abcdef", "eth0"));
        assert_ne!(n, host_ifname("0123456789abcdef", "eth1"));
        let m = generated_mac("x", "eth0");
        assert_eq!(m[0] & 1, 0, "unicast");
        assert_eq!(m[0] & 2, 2, "locally administered");
    }
}
