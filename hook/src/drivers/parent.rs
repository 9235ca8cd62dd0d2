//! What macvlan and ipvlan networks share: the parent interface in the
//! host namespace (made when it is an 802.1Q name such as `eth0.100` that
//! does not exist yet, removed with the last network on it), the checks
//! that turn the kernel's terse refusals into one line an operator can act
//! on, and the per-container work both drivers do the same way.
//!
//! Per container: under the network's lock the parent is looked up (and
//! checked: present, up, Ethernet) and the addresses are leased; then one
//! netlink request makes the sub-interface directly inside the container's
//! namespace, named `eth0` (the parent is named by index in the host's
//! namespace, which the kernel resolves there); the MAC, addresses,
//! `arp_notify` (a gratuitous ARP when it comes up, so the segment's ARP
//! caches forget whoever had the address before) and routes are set from
//! inside. Nothing is made in the host namespace, so there is no firewall
//! work and nothing to publish: a macvlan/ipvlan container is a machine of
//! its own on the parent's segment.
//!
//! Teardown: when the container's namespace dies, the kernel deletes the
//! sub-interface with it; only when the namespace lives on (a sharer still
//! runs in it) is it deleted, by the finisher (after the runtime has its
//! answer), through the namespace's bind mount and before that is
//! unmounted. Leases are released by the finisher like a bridge
//! container's.
//!
//! 802.1Q parents: `network create` (or the first container, after a
//! reboot emptied `/run`) makes `BASE.ID` if it is missing and records that
//! in `run/realized/parents/BASE.ID.json`; `network rm` of the last
//! network naming that parent deletes it again, and only if wirehook made
//! it (an interface the operator made is never removed).

use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};
use wirehook_shared::annotations::{self, Request};
use wirehook_shared::error::{fail_point, Error, Result};
use wirehook_shared::fsutil::{self, Lock};
use wirehook_shared::netlink::{IpvlanSpec, Link, MacvlanSpec, Netlink};
use wirehook_shared::netns::NetNs;
use wirehook_shared::network::{
    vlan_parent, Driver as NetDriver, IpvlanMode, MacvlanMode, NetworkDef, Networks,
};
use wirehook_shared::paths::Paths;
use wirehook_shared::store::{ContainerRecord, InterfaceRecord, Records};

use super::{Attachment, HostCx, SetupCx};
use crate::finish::Deferred;
use crate::log;
use crate::undo::Change;

/// How long a setup waits for a teardown that is still finishing (its
/// namespace, and with it the old sub-interface, is being destroyed by
/// the kernel) before it calls a MAC, an address or a passthru parent
/// taken.
const FINISHING_WAIT: Duration = Duration::from_secs(3);

/// Which sub-interface, in which mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Macvlan(MacvlanMode),
    Ipvlan(IpvlanMode),
}

impl Kind {
    pub fn of(net: &NetworkDef) -> Result<Kind> {
        match net.driver {
            NetDriver::Macvlan => Ok(Kind::Macvlan(net.macvlan_mode()?)),
            NetDriver::Ipvlan => Ok(Kind::Ipvlan(net.ipvlan_mode()?)),
            other => Err(Error::invalid(format!(
                "network {} is a {other} network, not macvlan or ipvlan",
                net.name
            ))),
        }
    }

    pub fn driver(&self) -> &'static str {
        match self {
            Kind::Macvlan(_) => "macvlan",
            Kind::Ipvlan(_) => "ipvlan",
        }
    }

    /// Does the interface carry the parent's MAC rather than its own?
    fn parents_mac(&self) -> bool {
        matches!(self, Kind::Ipvlan(_) | Kind::Macvlan(MacvlanMode::Passthru))
    }

    /// Default route through the device itself (ipvlan l3/l3s) rather
    /// than via the gateway.
    fn routed(&self) -> bool {
        matches!(self, Kind::Ipvlan(m) if m.routed())
    }
}

// ---------------------------------------------------------------------------
// The parent interface

/// `run/realized/parents/NAME.json`: an 802.1Q interface wirehook made.
#[derive(Debug, Serialize, Deserialize)]
struct MadeVlan {
    base: String,
    vlan: u16,
    ifindex: u32,
    /// The network it was made for (for the log; any network on it keeps it).
    network: String,
}

fn made_marker(paths: &Paths, parent: &str) -> PathBuf {
    paths
        .realized_dir()
        .join("parents")
        .join(format!("{parent}.json"))
}

/// The lock serialising the making and removing of one parent interface
/// (several networks may share it).
fn parent_lock(paths: &Paths, parent: &str) -> Result<Lock> {
    Lock::exclusive(&paths.locks_dir().join(format!("parent-{parent}.lock")))
}

fn parent_name(net: &NetworkDef) -> Result<&str> {
    net.parent.as_deref().ok_or_else(|| {
        Error::invalid(format!(
            "network {} is a {} network without a parent: recreate it with --parent IFACE",
            net.name, net.driver
        ))
    })
}

/// Did wirehook make the interface `link` (per its marker)?
fn made_by_us(paths: &Paths, link: &Link) -> bool {
    fsutil::read_json::<MadeVlan>(&made_marker(paths, &link.name))
        .ok()
        .flatten()
        .is_some_and(|m| m.ifindex == link.index)
}

/// The parent of `net` in the host namespace, ready for sub-interfaces:
/// present (an 802.1Q `BASE.ID` is made if its base exists), up (unless
/// `allow_down`: `network create` only warns), Ethernet, and not enslaved
/// to a bridge or bond. Returns whether this call made it.
pub fn ensure_parent(
    paths: &Paths,
    nl: &Netlink,
    net: &NetworkDef,
    allow_down: bool,
) -> Result<(Link, bool)> {
    let name = parent_name(net)?;
    if let Some(link) = nl.link(name)? {
        return usable(paths, nl, net, link, allow_down).map(|l| (l, false));
    }
    let Some((base, id)) = vlan_parent(name) else {
        return Err(Error::NotFound(format!(
            "parent {name} of network {} does not exist in the host's network namespace: create it or fix the network (`ip link` lists the interfaces; `wirehook network rm {}` and create it again with another --parent)",
            net.name, net.name
        )));
    };
    let id = u16::try_from(id)
        .ok()
        .filter(|i| (1..=4094).contains(i))
        .ok_or_else(|| {
            Error::invalid(format!(
                "parent {name} of network {} names VLAN {id}: 802.1Q ids go from 1 to 4094",
                net.name
            ))
        })?;
    let _lock = parent_lock(paths, name)?;
    if let Some(link) = nl.link(name)? {
        // Made by someone else meanwhile.
        return usable(paths, nl, net, link, allow_down).map(|l| (l, false));
    }
    let base_link = nl.link(base)?.ok_or_else(|| {
        Error::NotFound(format!(
            "parent {name} of network {}: neither it nor {base}, the interface its VLAN {id} would sit on, exists in the host's network namespace (see `ip link`)",
            net.name
        ))
    })?;
    if !base_link.up {
        return Err(Error::invalid(format!(
            "parent {name} of network {}: {base}, the interface its VLAN {id} would sit on, is down: bring it up (`ip link set {base} up`)",
            net.name
        )));
    }
    let index = nl.create_vlan(name, base_link.index, id)?;
    if let Err(e) = fsutil::write_json(
        &made_marker(paths, name),
        &MadeVlan {
            base: base.to_string(),
            vlan: id,
            ifindex: index,
            network: net.name.clone(),
        },
    ) {
        let _ = nl.delete_link(name);
        return Err(e);
    }
    // Like a bridge port: the VLAN interface needs no IPv6 address of its own.
    nl.disable_ipv6_link_local(index)?;
    log::info(format!(
        "network {}: created 802.1Q interface {name} (VLAN {id} on {base})",
        net.name
    ));
    let link = nl
        .link(name)?
        .ok_or_else(|| Error::NotFound(format!("VLAN interface {name} vanished after creation")))?;
    usable(paths, nl, net, link, allow_down).map(|l| (l, true))
}

/// Masters whose ports the kernel lets no macvlan or ipvlan sit on (they
/// take every frame of the port for themselves).
const GREEDY_MASTERS: [&str; 4] = ["bridge", "bond", "team", "openvswitch"];

fn usable(
    paths: &Paths,
    nl: &Netlink,
    net: &NetworkDef,
    link: Link,
    allow_down: bool,
) -> Result<Link> {
    let name = &link.name;
    if !link.ether {
        return Err(Error::invalid(format!(
            "parent {name} of network {} is {}, not an Ethernet interface: {} needs an Ethernet parent (a NIC, a bond, a bridge, or a VLAN on one)",
            net.name,
            match link.kind.as_deref() {
                Some(k) => format!("a {k} device"),
                None if name == "lo" => "the loopback device".to_string(),
                None => "a non-Ethernet device".to_string(),
            },
            net.driver
        )));
    }
    if let Some(m) = link.master.and_then(|m| nl.link_by_index(m).ok().flatten()) {
        if GREEDY_MASTERS.contains(&m.kind.as_deref().unwrap_or("")) {
            return Err(enslaved(net, name, &m));
        }
    }
    if !link.up && !allow_down {
        if made_by_us(paths, &link) {
            nl.set_up(link.index)?;
            return Ok(Link { up: true, ..link });
        }
        return Err(Error::invalid(format!(
            "parent {name} of network {} is down: bring it up (`ip link set {name} up`) and start the container again",
            net.name
        )));
    }
    Ok(link)
}

/// "The parent is a port of bridge X": what the kernel's EBUSY means.
fn enslaved(net: &NetworkDef, parent: &str, master: &Link) -> Error {
    let driver = net.driver;
    Error::Conflict(format!(
        "parent {parent} of network {} is a port of {} {}, and the kernel lets no {driver} sit on an interface enslaved to one: make {} the parent (`wirehook network create --driver {driver} --parent {} ...`), or use a bridge network",
        net.name,
        master.kind.as_deref().unwrap_or("device"),
        master.name,
        master.name,
        master.name
    ))
}

/// At `network rm` of `net`: delete its 802.1Q parent if wirehook made it
/// and no other network in `others` names it. Returns the deleted name.
pub fn release_parent(
    paths: &Paths,
    nl: &Netlink,
    net: &NetworkDef,
    others: &[NetworkDef],
) -> Result<Option<String>> {
    let Some(name) = net.parent.as_deref() else {
        return Ok(None);
    };
    let marker = made_marker(paths, name);
    if !marker.exists() {
        return Ok(None);
    }
    let _lock = parent_lock(paths, name)?;
    if others
        .iter()
        .any(|o| o.name != net.name && o.parent.as_deref() == Some(name))
    {
        return Ok(None);
    }
    let Some(made) = fsutil::read_json::<MadeVlan>(&marker)? else {
        return Ok(None);
    };
    let mut deleted = None;
    if let Some(link) = nl.link(name)? {
        if link.index == made.ifindex && link.kind.as_deref() == Some("vlan") {
            nl.delete_link(name)?;
            deleted = Some(name.to_string());
        }
    }
    fsutil::remove_file(&marker)?;
    Ok(deleted)
}

/// Undo [`ensure_parent`]'s making of a VLAN (a `network create` that
/// failed after it).
pub fn forget_made_parent(paths: &Paths, nl: &Netlink, name: &str) {
    let _ = nl.delete_link(name);
    let _ = fsutil::remove_file(&made_marker(paths, name));
}

/// Is the parent present and up? For `network inspect` and `check`.
pub fn parent_state(nl: &Netlink, net: &NetworkDef) -> std::result::Result<Link, String> {
    let Some(name) = net.parent.as_deref() else {
        return Err("the network has no parent".into());
    };
    match nl.link(name) {
        Ok(Some(l)) if l.up => Ok(l),
        Ok(Some(_)) => Err(format!("parent {name} is down")),
        Ok(None) => Err(format!("parent {name} is missing")),
        Err(e) => Err(format!("cannot look up parent {name}: {e}")),
    }
}

/// Probe whether the kernel can make `kind` sub-interfaces at all, in a
/// throw-away network namespace of a short-lived thread (a veth pair as
/// the parent), so the host's interfaces are never touched. `None` when
/// the probe itself could not run.
pub fn kernel_supports(kind: &'static str) -> Option<std::result::Result<(), String>> {
    std::thread::spawn(move || -> Option<std::result::Result<(), String>> {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).ok()?;
        let nl = Netlink::new().ok()?;
        let ns = NetNs::current().ok()?;
        let spec = wirehook_shared::netlink::VethSpec {
            host_name: "probe0",
            master: None,
            mtu: 1500,
            peer_name: "probe1",
            peer_ns: &ns,
            peer_mac: None,
        };
        let parent = nl.create_veth(&spec).ok()?;
        let res = match kind {
            "ipvlan" => nl.create_ipvlan(&IpvlanSpec {
                name: "probe2",
                parent,
                mode: IpvlanMode::L2,
                netns: None,
                mtu: None,
            }),
            _ => nl.create_macvlan(&MacvlanSpec {
                name: "probe2",
                parent,
                mode: MacvlanMode::Bridge,
                netns: None,
                mac: None,
                mtu: None,
            }),
        };
        match res {
            Ok(()) => Some(Ok(())),
            Err(e @ Error::Invalid(_)) => Some(Err(e.to_string())),
            Err(_) => None,
        }
    })
    .join()
    .ok()
    .flatten()
}

// ---------------------------------------------------------------------------
// Request checks (before anything is made)

/// What a container may not ask of a macvlan/ipvlan network: published
/// ports (it has its own address on the segment; nothing goes through the
/// host), and a MAC where the interface carries the parent's.
pub fn check_request(net: &NetworkDef, req: &Request, index: usize) -> Result<()> {
    let kind = Kind::of(net)?;
    let parent = net.parent.as_deref().unwrap_or("its parent");
    if index == 0 && !req.ports.is_empty() {
        return Err(Error::invalid(format!(
            "io.wirehook.ports: network {} is a {} network, whose containers are reached at their own address on {parent}'s segment, not through the host, so there is nothing to publish: drop io.wirehook.ports (or list a bridge network first in io.wirehook.network)",
            net.name,
            kind.driver()
        )));
    }
    if index == 0 && req.mac.is_some() && kind.parents_mac() {
        let what = match kind {
            Kind::Ipvlan(_) => "an ipvlan network, whose interfaces share the MAC of",
            _ => "a passthru macvlan network, whose interface takes the MAC of",
        };
        return Err(Error::invalid(format!(
            "io.wirehook.mac: network {} is {what} {parent}: drop io.wirehook.mac, or use a macvlan network in bridge mode for a MAC of its own",
            net.name
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Setup

/// Leases of `net` held by containers other than `id`: (address, holder,
/// whether the holder still has a record).
fn other_holders(paths: &Paths, net: &str, id: &str) -> Vec<(String, String, bool)> {
    let records = Records::new(paths);
    std::fs::read_dir(paths.leases_dir(net))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with('.') {
                return None;
            }
            let holder = std::fs::read_to_string(e.path()).ok()?.trim().to_string();
            if holder.is_empty() || holder == id {
                return None;
            }
            let live = records.get(&holder).ok().flatten().is_some();
            Some((name, holder, live))
        })
        .collect()
}

/// A container's display name for messages.
fn shown(paths: &Paths, id: &str) -> String {
    match Records::new(paths).get(id).ok().flatten() {
        Some(r) if r.name != r.id => format!("{} ({})", r.name, r.id),
        _ => id.to_string(),
    }
}

/// A passthru network hands its parent to one container.
fn check_passthru_free(cx: &SetupCx<'_>, net: &NetworkDef, parent: &str) -> Result<()> {
    if let Some((_, holder, _)) = other_holders(cx.paths, &net.name, cx.id)
        .into_iter()
        .find(|(_, _, live)| *live)
    {
        return Err(Error::Conflict(format!(
            "network {} is a passthru macvlan network, which gives its parent {parent} to one container, and container {} has it: stop that one first, or use --mode bridge for several containers",
            net.name,
            shown(cx.paths, &holder)
        )));
    }
    Ok(())
}

/// The kernel's refusal to make the sub-interface, said so an operator
/// can act on it.
fn explain_create(
    cx: &SetupCx<'_>,
    net: &NetworkDef,
    kind: Kind,
    parent: &Link,
    ifname: &str,
    e: Error,
) -> Error {
    let p = &parent.name;
    let driver = kind.driver();
    match e.errno() {
        Some(libc::EBUSY) => {
            let master = parent
                .master
                .and_then(|m| cx.host_nl.link_by_index(m).ok().flatten());
            match master {
                Some(m) => enslaved(net, p, &m),
                None => Error::Conflict(format!(
                    "parent {p} of network {} is already taken by another kind of sub-interface (one parent carries macvlan or ipvlan interfaces, not both) or by another driver: give the {driver} network another parent",
                    net.name
                )),
            }
        }
        Some(libc::EINVAL) => match kind {
            Kind::Macvlan(MacvlanMode::Passthru) => Error::Conflict(format!(
                "parent {p} of passthru network {} already carries other macvlan interfaces, and passthru needs it to itself: stop the containers of the other macvlan networks on {p}, or use --mode bridge",
                net.name
            )),
            Kind::Macvlan(_) if passthru_on(cx.paths, net, p) => Error::Conflict(format!(
                "parent {p} of network {} is given to a container of a passthru macvlan network, which has it to itself: stop that container, or give this network another parent",
                net.name
            )),
            _ => Error::invalid(format!(
                "the kernel refused a {driver} interface on {p} for network {} ({}): check that {p} is an Ethernet interface and the MTU is not above {}",
                net.name,
                std::io::Error::from_raw_os_error(libc::EINVAL),
                parent.mtu
            )),
        },
        Some(libc::EEXIST) => Error::Conflict(format!(
            "the container already has an interface named {ifname}: pick another with io.wirehook.ifname"
        )),
        _ => e,
    }
}

/// Is a passthru macvlan network on `parent` (other than `net`) in use?
fn passthru_on(paths: &Paths, net: &NetworkDef, parent: &str) -> bool {
    Networks::new(paths)
        .list()
        .unwrap_or_default()
        .iter()
        .any(|o| {
            o.name != net.name
                && o.driver == NetDriver::Macvlan
                && o.parent.as_deref() == Some(parent)
                && o.mode.as_deref() == Some("passthru")
                && !other_holders(paths, &o.name, "").is_empty()
        })
}

/// Which live container has `mac` on a network with parent `parent`?
fn mac_holder(paths: &Paths, mac: &str, parent: &str, id: &str) -> Option<String> {
    let store = Networks::new(paths);
    Records::new(paths).list().into_iter().find_map(|r| {
        (r.id != id
            && r.interfaces.iter().any(|i| {
                i.mac == mac
                    && i.driver == NetDriver::Macvlan
                    && store
                        .get(&i.network)
                        .ok()
                        .flatten()
                        .is_some_and(|n| n.parent.as_deref() == Some(parent))
            }))
        .then(|| shown(paths, &r.id))
    })
}

/// Wire `at` (a macvlan or ipvlan network) into the container.
pub fn attach(
    cx: &mut SetupCx<'_>,
    at: &Attachment<'_>,
    kind: Kind,
) -> Result<Option<InterfaceRecord>> {
    let net = at.network;
    let first = at.index == 0;
    let driver = kind.driver();

    // Shared state, under the network's lock: the parent, the leases.
    let (parent, leases) = {
        fail_point("lock")?;
        let _lock = super::bridge::network_lock(cx.paths, &net.name)?;
        fail_point("realize")?;
        let (parent, _) = ensure_parent(cx.paths, cx.host_nl, net, false)?;
        if kind == Kind::Macvlan(MacvlanMode::Passthru) {
            check_passthru_free(cx, net, &parent.name)?;
        }
        fail_point("allocate")?;
        (parent, super::bridge::lease_addresses(cx, net)?)
    };
    log::phase("lease");

    // MTU: at most the parent's; by default the parent's.
    let mtu = cx.request.mtu.filter(|_| first).or(net.mtu);
    if let Some(m) = mtu.filter(|m| *m > parent.mtu) {
        let what = if cx.request.mtu.is_some() && first {
            format!("io.wirehook.mtu {m}")
        } else {
            format!("network {}'s MTU {m}", net.name)
        };
        return Err(Error::invalid(format!(
            "{what} is above the MTU of its parent {} ({}): a {driver} interface cannot be larger than its parent — give at most {}",
            parent.name, parent.mtu, parent.mtu
        )));
    }
    let mac = match kind {
        Kind::Macvlan(MacvlanMode::Passthru) | Kind::Ipvlan(_) => None,
        Kind::Macvlan(_) => Some(match (first, cx.request.mac) {
            (true, Some(m)) => m,
            _ => super::bridge::generated_mac(cx.id, &at.ifname),
        }),
    };

    if mac.is_some() && mac == parent.mac {
        return Err(Error::Conflict(format!(
            "MAC {} is the MAC of parent {} itself: pick another io.wirehook.mac",
            annotations::format_mac(&mac.unwrap_or_default()),
            parent.name
        )));
    }

    // The sub-interface, made straight inside the container.
    fail_point("link")?;
    let deadline = Instant::now() + FINISHING_WAIT;
    loop {
        let made = match kind {
            Kind::Macvlan(mode) => cx.host_nl.create_macvlan(&MacvlanSpec {
                name: &at.ifname,
                parent: parent.index,
                mode,
                netns: Some(cx.netns),
                mac,
                mtu,
            }),
            Kind::Ipvlan(mode) => cx.host_nl.create_ipvlan(&IpvlanSpec {
                name: &at.ifname,
                parent: parent.index,
                mode,
                netns: Some(cx.netns),
                mtu,
            }),
        };
        match made {
            Ok(()) => break,
            // A passthru parent still held by a container whose namespace
            // the kernel is destroying right now.
            Err(e)
                if e.errno() == Some(libc::EINVAL)
                    && kind == Kind::Macvlan(MacvlanMode::Passthru)
                    && Instant::now() < deadline
                    && other_holders(cx.paths, &net.name, cx.id).is_empty() =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(explain_create(cx, net, kind, &parent, &at.ifname, e)),
        }
    }
    let own = NetNs::open(Path::new(&format!(
        "/proc/self/fd/{}",
        cx.netns.as_fd().as_raw_fd()
    )))?;
    cx.undo.push(Change::ContainerLink {
        netns: own,
        name: at.ifname.clone(),
    });
    log::phase(if driver == "macvlan" {
        "macvlan"
    } else {
        "ipvlan"
    });

    // Addresses, then up (arp_notify announces them), then routes.
    fail_point("address")?;
    let addresses: Vec<IpNetwork> = leases.iter().map(|l| l.cidr()).collect();
    let gateways: Vec<IpAddr> = leases.iter().map(|l| l.subnet.gateway).collect();
    let want_routes = first && !net.internal;
    let has_v6 = net.has_v6();
    let ifname = at.ifname.clone();
    let paths = cx.paths;
    let id = cx.id;
    let nl = cx.container_nl()?;
    let link = nl
        .link(&ifname)?
        .ok_or_else(|| Error::NotFound(format!("{ifname} did not appear in the container")))?;
    // IPv4-only network: no IPv6 on the interface at all (as for bridge);
    // arp_notify announces the addresses when it comes up.
    let v4 = addresses.iter().any(|a| a.is_ipv4());
    nl.prepare_container_link(link.index, !has_v6, v4)?;
    for a in &addresses {
        add_address_when_free(nl, link.index, a, driver, &parent.name)?;
    }
    set_up_when_free(nl, link.index, paths, id, kind, &parent.name, link.mac)?;
    fail_point("route")?;
    let mut routed_gateways = Vec::new();
    if want_routes {
        if kind.routed() {
            nl.add_default_dev_route(link.index, false)?;
            if has_v6 {
                nl.add_default_dev_route(link.index, true)?;
            }
        } else {
            for gw in &gateways {
                nl.add_default_route(*gw, link.index)?;
            }
            routed_gateways = gateways.clone();
        }
    }
    log::phase("addr+route");

    log::info(format!(
        "{id}: {ifname} on network {} ({driver} {} on {}) ({})",
        net.name,
        match kind {
            Kind::Macvlan(m) => m.as_str(),
            Kind::Ipvlan(m) => m.as_str(),
        },
        parent.name,
        addresses
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    Ok(Some(InterfaceRecord {
        network: net.name.clone(),
        driver: net.driver,
        ifname,
        host_ifname: None,
        bridge: None,
        mac: link
            .mac
            .as_ref()
            .map(annotations::format_mac)
            .unwrap_or_default(),
        mtu: link.mtu,
        addresses,
        gateways: routed_gateways,
        ports: Vec::new(),
        dns: net.dns,
        internal: net.internal,
        aliases: Vec::new(),
        connected: false,
    }))
}

/// Add an address. ipvlan refuses one another ipvlan of the same parent
/// has (EADDRINUSE): that can be the previous holder whose namespace the
/// kernel is still destroying, so wait a moment before calling it taken.
fn add_address_when_free(
    nl: &Netlink,
    index: u32,
    a: &IpNetwork,
    driver: &str,
    parent: &str,
) -> Result<()> {
    let deadline = Instant::now() + FINISHING_WAIT;
    loop {
        match nl.add_address(index, a.ip(), a.prefix()) {
            Err(e) if e.errno() == Some(libc::EADDRINUSE) => {
                if Instant::now() > deadline {
                    return Err(Error::Conflict(format!(
                        "address {} is already used by another {driver} interface on {parent} (not one of wirehook's containers): pick another io.wirehook.ip or free it",
                        a.ip()
                    )));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

/// Set the interface up. A macvlan's MAC must be unique among its
/// parent's macvlans (EADDRINUSE): a live container holding it is named;
/// a restarted container's own previous interface (same id, same
/// generated MAC) may still be on its way out with its old namespace, so
/// that is waited for.
fn set_up_when_free(
    nl: &Netlink,
    index: u32,
    paths: &Paths,
    id: &str,
    kind: Kind,
    parent: &str,
    mac: Option<[u8; 6]>,
) -> Result<()> {
    let deadline = Instant::now() + FINISHING_WAIT;
    let mac = mac
        .as_ref()
        .map(annotations::format_mac)
        .unwrap_or_default();
    loop {
        match nl.set_up(index) {
            Err(e) if e.errno() == Some(libc::EADDRINUSE) && matches!(kind, Kind::Macvlan(_)) => {
                if let Some(holder) = mac_holder(paths, &mac, parent, id) {
                    return Err(Error::Conflict(format!(
                        "MAC {mac} is already used on {parent} by container {holder}: pick another io.wirehook.mac"
                    )));
                }
                if Instant::now() > deadline {
                    return Err(Error::Conflict(format!(
                        "MAC {mac} is already used by another interface on {parent} (or is {parent}'s own): pick another io.wirehook.mac"
                    )));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

// ---------------------------------------------------------------------------
// Teardown and check

/// The container's namespace from its record (the bind mount is still
/// there during teardown), if it is the recorded one.
fn open_recorded(rec: &ContainerRecord) -> Result<Option<NetNs>> {
    let Some(path) = &rec.netns_path else {
        return Ok(None);
    };
    let ns = NetNs::open(path)?;
    Ok((ns.inode() == rec.netns_inode).then_some(ns))
}

/// Remove what [`attach`] made: the sub-interface only when its namespace
/// outlives the container (else the kernel deletes it with the
/// namespace), the leases through the finisher.
pub fn detach(cx: &mut HostCx<'_>, rec: &ContainerRecord, iface: &InterfaceRecord) {
    if let (true, Some(path)) = (cx.netns_alive, &rec.netns_path) {
        // Deleting a sub-interface waits for the kernel (~20 ms): the
        // finisher does it after the runtime has its answer.
        cx.defer(Deferred::NsLink {
            netns: path.clone(),
            inode: rec.netns_inode,
            ifname: iface.ifname.clone(),
            kind: iface.driver.as_str().to_string(),
        });
    }
    let addrs: Vec<IpAddr> = iface.addresses.iter().map(|a| a.ip()).collect();
    // ipvlan l3s passes the host's netfilter: its flows are in the host's
    // conntrack table (macvlan, l2 and l3 traffic never is).
    let l3s = iface.driver == NetDriver::Ipvlan
        && Networks::new(cx.paths)
            .get(&iface.network)
            .ok()
            .flatten()
            .is_none_or(|n| n.mode.as_deref() == Some("l3s"));
    if l3s {
        cx.defer(Deferred::Conntrack(addrs.clone()));
    }
    for a in addrs {
        cx.defer(Deferred::Lease {
            network: iface.network.clone(),
            address: a,
        });
    }
}

/// Compare the record of a macvlan/ipvlan interface with the kernel.
pub fn check(cx: &HostCx<'_>, rec: &ContainerRecord, iface: &InterfaceRecord) -> Vec<String> {
    let mut out = Vec::new();
    let kind = iface.driver.as_str();
    match Networks::new(cx.paths).get(&iface.network) {
        Ok(Some(net)) => {
            if let Err(p) = parent_state(cx.host_nl, &net) {
                out.push(format!("network {}: {p}", net.name));
            }
        }
        Ok(None) => out.push(format!("network {} no longer exists", iface.network)),
        Err(e) => out.push(format!("cannot read network {}: {e}", iface.network)),
    }
    let inside = match open_recorded(rec) {
        Ok(Some(ns)) => Netlink::in_netns(&ns),
        Ok(None) => {
            out.push("the container's namespace is not the recorded one".into());
            return out;
        }
        Err(e) => Err(e),
    };
    let nl = match inside {
        Ok(nl) => nl,
        Err(e) => {
            out.push(format!("cannot enter the container's namespace: {e}"));
            return out;
        }
    };
    match nl.link(&iface.ifname) {
        Ok(Some(l)) => {
            if l.kind.as_deref() != Some(kind) {
                out.push(format!(
                    "{} is a {} device, not {kind}",
                    iface.ifname,
                    l.kind.as_deref().unwrap_or("plain")
                ));
            }
            if !l.up {
                out.push(format!("{} is down", iface.ifname));
            }
            let mac = l
                .mac
                .as_ref()
                .map(annotations::format_mac)
                .unwrap_or_default();
            if mac != iface.mac {
                out.push(format!("{} has MAC {mac}, not {}", iface.ifname, iface.mac));
            }
            out.extend(super::missing_addresses(&nl, l.index, iface));
        }
        Ok(None) => out.push(format!("{} is missing in the container", iface.ifname)),
        Err(e) => out.push(format!("cannot look up {}: {e}", iface.ifname)),
    }
    out
}
