//! A small synchronous face over rtnetlink: the link, address and route
//! operations wirehook needs, each one request/ack.
//!
//! Containers' interfaces are made in one request each, directly inside
//! the container's namespace (`IFLA_NET_NS_FD`): the veth pair of a
//! bridge network ([`Netlink::create_veth`]), the macvlan or ipvlan
//! sub-interface of a parent ([`Netlink::create_macvlan`],
//! [`Netlink::create_ipvlan`]); 802.1Q parents (`eth0.100`) are made in the
//! host namespace with [`Netlink::create_vlan`]. A kernel without the
//! driver answers "Unknown device type" (EOPNOTSUPP); those calls turn
//! that into one line naming the kernel option and what to do instead.
//!
//! A [`Netlink`] is bound to the namespace it was opened in. Open one in the
//! host namespace with [`Netlink::new`] and one inside a container's
//! namespace with [`Netlink::in_netns`] (the socket is created inside and
//! stays bound there after the thread returns), or with
//! [`Netlink::beside`] to share the first one's runtime. rtnetlink is
//! async; each handle drives a current-thread tokio runtime, which costs
//! microseconds to build (tens, with its epoll and eventfd: the hook builds
//! one per run).

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;

use futures::TryStreamExt;
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, IpVlanMode, LinkAttribute, LinkFlags, LinkInfo, LinkLayerType,
    LinkMessage, MacVlanMode,
};
use rtnetlink::{
    LinkBridge, LinkIpVlan, LinkMacVlan, LinkMessageBuilder, LinkUnspec, LinkVlan,
    RouteMessageBuilder,
};

use crate::error::{Error, Result};
use crate::netns::NetNs;
use crate::network::{IpvlanMode, MacvlanMode};

/// What wirehook needs to know about an existing link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub kind: Option<String>,
    pub mtu: u32,
    pub mac: Option<[u8; 6]>,
    pub up: bool,
    pub master: Option<u32>,
    /// The link this one sits on (`IFLA_LINK`: a VLAN's or macvlan's
    /// parent, a veth's peer), as an index in the link's own namespace or
    /// its peer's.
    pub parent: Option<u32>,
    /// An Ethernet device (what macvlan, ipvlan and 802.1Q need as parent;
    /// loopback, tunnels and WireGuard are not).
    pub ether: bool,
}

/// A macvlan sub-interface of `parent` (see [`Netlink::create_macvlan`]).
#[derive(Debug, Clone)]
pub struct MacvlanSpec<'a> {
    pub name: &'a str,
    /// Index of the parent in the namespace of the socket making it.
    pub parent: u32,
    pub mode: MacvlanMode,
    /// Made directly inside this namespace; else where the socket is.
    pub netns: Option<&'a NetNs>,
    /// Own MAC; else the kernel picks a random one (passthru takes the
    /// parent's whatever is given).
    pub mac: Option<[u8; 6]>,
    /// MTU, at most the parent's; else the parent's.
    pub mtu: Option<u32>,
}

/// An ipvlan sub-interface of `parent` (see [`Netlink::create_ipvlan`]).
/// It always has the parent's MAC.
#[derive(Debug, Clone)]
pub struct IpvlanSpec<'a> {
    pub name: &'a str,
    pub parent: u32,
    pub mode: IpvlanMode,
    pub netns: Option<&'a NetNs>,
    pub mtu: Option<u32>,
}

/// Everything the veth of a container needs: host end and container end
/// are made in one request, the container end directly inside the
/// container's namespace. Both ends are created down: the host end is
/// brought up here without an IPv6 link-local address, the container end
/// from inside the container (see [`Netlink::create_veth`]).
#[derive(Debug, Clone)]
pub struct VethSpec<'a> {
    pub host_name: &'a str,
    pub master: Option<u32>,
    pub mtu: u32,
    pub peer_name: &'a str,
    pub peer_ns: &'a NetNs,
    pub peer_mac: Option<[u8; 6]>,
}

/// The VXLAN device of an overlay network (see [`Netlink::ensure_vxlan`]).
#[derive(Debug, Clone)]
pub struct VxlanSpec<'a> {
    pub name: &'a str,
    pub vni: u32,
    /// This host's underlay address and interface (the tunnel's source;
    /// interface 0: none).
    pub local: std::net::Ipv4Addr,
    pub underlay: u32,
    /// UDP port (4789, IANA's).
    pub port: u16,
    pub mtu: u32,
    /// Fixed, derived from host and VNI: other hosts' entries name it.
    pub mac: [u8; 6],
}

fn neighbour_address(ip: IpAddr) -> netlink_packet_route::neighbour::NeighbourAddress {
    use netlink_packet_route::neighbour::NeighbourAddress;
    match ip {
        IpAddr::V4(v) => NeighbourAddress::Inet(v),
        IpAddr::V6(v) => NeighbourAddress::Inet6(v),
    }
}

fn fmt_mac(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub struct Netlink {
    rt: std::sync::Arc<tokio::runtime::Runtime>,
    handle: rtnetlink::Handle,
}

fn nl_err(op: impl Into<String>, e: rtnetlink::Error) -> Error {
    let source = match e {
        rtnetlink::Error::NetlinkError(m) => m.to_io(),
        other => std::io::Error::other(other.to_string()),
    };
    Error::netlink(op, source)
}

fn is_errno(e: &rtnetlink::Error, errno: i32) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code().abs() == errno)
}

impl Netlink {
    /// A socket in the calling thread's current namespace.
    pub fn new() -> Result<Netlink> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(|e| Error::sys("start netlink runtime", e))?;
        Netlink::on(std::sync::Arc::new(rt))
    }

    /// A socket in the current namespace, driven by `rt`.
    fn on(rt: std::sync::Arc<tokio::runtime::Runtime>) -> Result<Netlink> {
        let (conn, handle, _) = {
            let _ctx = rt.enter();
            rtnetlink::new_connection().map_err(|e| Error::sys("open netlink socket", e))?
        };
        rt.spawn(conn);
        Ok(Netlink { rt, handle })
    }

    /// A socket inside `ns`; the calling thread returns to its namespace.
    pub fn in_netns(ns: &NetNs) -> Result<Netlink> {
        let _guard = ns.enter()?;
        Netlink::new()
    }

    /// A socket inside `ns` on this handle's runtime (one runtime for
    /// both sides of a setup).
    pub fn beside(&self, ns: &NetNs) -> Result<Netlink> {
        let _guard = ns.enter()?;
        Netlink::on(self.rt.clone())
    }

    fn block<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// Look a link up by name.
    pub fn link(&self, name: &str) -> Result<Option<Link>> {
        let req = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match self.block(async {
            futures::pin_mut!(req);
            req.try_next().await
        }) {
            Ok(Some(msg)) => Ok(Some(link_from_message(&msg))),
            Ok(None) => Ok(None),
            Err(e) if is_errno(&e, libc::ENODEV) => Ok(None),
            Err(e) => Err(nl_err(format!("look up link {name}"), e)),
        }
    }

    /// Look a link up by index.
    pub fn link_by_index(&self, index: u32) -> Result<Option<Link>> {
        let req = self.handle.link().get().match_index(index).execute();
        match self.block(async {
            futures::pin_mut!(req);
            req.try_next().await
        }) {
            Ok(Some(msg)) => Ok(Some(link_from_message(&msg))),
            Ok(None) => Ok(None),
            Err(e) if is_errno(&e, libc::ENODEV) => Ok(None),
            Err(e) => Err(nl_err(format!("look up link {index}"), e)),
        }
    }

    /// Every link in this namespace.
    pub fn links(&self) -> Result<Vec<Link>> {
        let req = self.handle.link().get().execute();
        let msgs: Vec<LinkMessage> = self
            .block(req.try_collect())
            .map_err(|e| nl_err("list links", e))?;
        Ok(msgs.iter().map(link_from_message).collect())
    }

    /// Create a bridge (up) unless one of that name exists; returns its index.
    pub fn ensure_bridge(&self, name: &str, mtu: Option<u32>) -> Result<u32> {
        if let Some(l) = self.link(name)? {
            if l.kind.as_deref() != Some("bridge") {
                return Err(Error::Conflict(format!(
                    "interface {name} exists and is a {} device, not a bridge; remove it or pick another bridge name",
                    l.kind.as_deref().unwrap_or("plain")
                )));
            }
            if !l.up {
                self.set_up(l.index)?;
            }
            return Ok(l.index);
        }
        // An explicit MAC and MTU: the bridge then never rescans all its
        // ports for the lowest MAC or MTU when one is added (the kernel
        // skips that for values set by the user), so adding the 1000th
        // container costs what the 10th did; and its MAC never changes
        // as containers come and go.
        let h = crate::network::stable_hash(format!("bridge/{name}").as_bytes()).to_be_bytes();
        let mac = vec![0x02, h[0], h[1], h[2], h[3], h[4]];
        let b = LinkBridge::new(name)
            .up()
            .mtu(mtu.unwrap_or(1500))
            .address(mac);
        match self.block(self.handle.link().add(b.build()).execute()) {
            Ok(()) => {}
            Err(e) if is_errno(&e, libc::EEXIST) => {}
            Err(e) => return Err(nl_err(format!("create bridge {name}"), e)),
        }
        self.link(name)?
            .map(|l| l.index)
            .ok_or_else(|| Error::NotFound(format!("bridge {name} vanished after creation")))
    }

    /// Create a veth pair per `spec`; returns the host end's index.
    pub fn create_veth(&self, spec: &VethSpec<'_>) -> Result<u32> {
        let mut peer = LinkMessageBuilder::<LinkUnspec>::new()
            .name(spec.peer_name.to_string())
            .mtu(spec.mtu)
            .setns_by_fd(spec.peer_ns.as_fd().as_raw_fd());
        // The peer cannot be created up: the kernel opens it before the
        // pair is linked and refuses (ENOTCONN). The caller sets it up
        // from inside the container.
        if let Some(mac) = spec.peer_mac {
            peer = peer.address(mac.to_vec());
        }
        let mut host = LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(InfoKind::Veth)
            .name(spec.host_name.to_string())
            .mtu(spec.mtu)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())));
        if let Some(m) = spec.master {
            host = host.controller(m);
        }
        self.block(self.handle.link().add(host.build()).execute())
            .map_err(|e| {
                nl_err(
                    format!("create veth {} <-> {}", spec.host_name, spec.peer_name),
                    e,
                )
            })?;
        let index = self.link(spec.host_name)?.map(|l| l.index).ok_or_else(|| {
            Error::NotFound(format!("veth {} vanished after creation", spec.host_name))
        })?;
        // A bridge port needs no IPv6 address of its own.
        self.disable_ipv6_link_local(index)?;
        self.set_up(index)?;
        Ok(index)
    }

    /// Create a macvlan sub-interface per `spec`, down (the caller
    /// addresses it and sets it up from inside its namespace: the kernel
    /// checks the MAC against the parent's other macvlans only then, and
    /// answers EADDRINUSE if one has it). Errors keep the kernel's errno:
    /// EBUSY (the parent is enslaved to a bridge or bond, or an ipvlan
    /// parent), EINVAL (not an Ethernet parent, MTU above the parent's, or
    /// a passthru conflict), EEXIST (the name is taken there). A kernel
    /// without macvlan gets a message that says so.
    pub fn create_macvlan(&self, spec: &MacvlanSpec<'_>) -> Result<()> {
        let mode = match spec.mode {
            MacvlanMode::Bridge => MacVlanMode::Bridge,
            MacvlanMode::Private => MacVlanMode::Private,
            MacvlanMode::Vepa => MacVlanMode::Vepa,
            MacvlanMode::Passthru => MacVlanMode::Passthrough,
        };
        let mut b = LinkMacVlan::new(spec.name, spec.parent, mode);
        if let Some(mac) = spec.mac {
            b = b.address(mac.to_vec());
        }
        if let Some(mtu) = spec.mtu {
            b = b.mtu(mtu);
        }
        if let Some(ns) = spec.netns {
            b = b.setns_by_fd(ns.as_fd().as_raw_fd());
        }
        self.add_link(
            b.build(),
            "macvlan",
            "CONFIG_MACVLAN",
            "use a bridge network, or load the macvlan module",
            || format!("create macvlan {} on link {}", spec.name, spec.parent),
        )
    }

    /// Create an ipvlan sub-interface per `spec`, down. Errors as for
    /// [`create_macvlan`](Self::create_macvlan) (EBUSY: the parent is
    /// enslaved, or already a macvlan parent); a kernel without ipvlan gets
    /// "this kernel has no ipvlan support (CONFIG_IPVLAN) — ...".
    pub fn create_ipvlan(&self, spec: &IpvlanSpec<'_>) -> Result<()> {
        let mode = match spec.mode {
            IpvlanMode::L2 => IpVlanMode::L2,
            IpvlanMode::L3 => IpVlanMode::L3,
            IpvlanMode::L3s => IpVlanMode::L3S,
        };
        let mut b = LinkIpVlan::new(spec.name, spec.parent, mode);
        if let Some(mtu) = spec.mtu {
            b = b.mtu(mtu);
        }
        if let Some(ns) = spec.netns {
            b = b.setns_by_fd(ns.as_fd().as_raw_fd());
        }
        self.add_link(
            b.build(),
            "ipvlan",
            "CONFIG_IPVLAN",
            "use macvlan or bridge, or load the ipvlan module",
            || format!("create ipvlan {} on link {}", spec.name, spec.parent),
        )
    }

    /// Create the 802.1Q sub-interface `name` for VLAN `id` on `parent`,
    /// up; returns its index. A kernel without 802.1Q gets "this kernel
    /// has no 802.1Q VLAN support (CONFIG_VLAN_8021Q) — ...".
    pub fn create_vlan(&self, name: &str, parent: u32, id: u16) -> Result<u32> {
        let msg = LinkVlan::new(name, parent, id).up().build();
        self.add_link(
            msg,
            "802.1Q VLAN",
            "CONFIG_VLAN_8021Q",
            "load the 8021q module, or give an existing interface as --parent",
            || format!("create VLAN {id} interface {name} on link {parent}"),
        )?;
        self.link(name)?.map(|l| l.index).ok_or_else(|| {
            Error::NotFound(format!("VLAN interface {name} vanished after creation"))
        })
    }

    /// One RTM_NEWLINK; "Unknown device type" becomes a message naming
    /// the missing kernel support.
    fn add_link(
        &self,
        msg: LinkMessage,
        what: &str,
        config: &str,
        instead: &str,
        op: impl FnOnce() -> String,
    ) -> Result<()> {
        match self.block(self.handle.link().add(msg).execute()) {
            Ok(()) => Ok(()),
            Err(e) if is_errno(&e, libc::EOPNOTSUPP) => Err(Error::Invalid(format!(
                "this kernel has no {what} support ({config}) — {instead}"
            ))),
            Err(e) => Err(nl_err(op(), e)),
        }
    }

    /// Let a bridge port send frames back where they came from (a
    /// container reaching its own published port through the host).
    pub fn set_bridge_port_hairpin(&self, index: u32) -> Result<()> {
        use netlink_packet_route::link::{InfoBridgePort, InfoPortData, InfoPortKind};
        let msg = LinkUnspec::new_with_index(index)
            .set_port_kind(InfoPortKind::Bridge)
            .set_port_data(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(
                true,
            )]))
            .build();
        self.block(self.handle.link().change(msg).execute())
            .map_err(|e| nl_err(format!("set hairpin mode on link {index}"), e))
    }

    /// Prepare a container's interface while it is down, in one request.
    ///
    /// `no_ipv6`: no IPv6 link-local address (addr_gen_mode none), so it
    /// never generates one: no duplicate address detection, router
    /// solicitation or MLD traffic, which on a bridge is flooded to every
    /// port and makes each new container cost more than the last.
    ///
    /// `announce`: arp_notify, so the kernel announces the interface's
    /// IPv4 addresses (gratuitous ARP) when it comes up: a container
    /// restarted with an address its predecessor had, but a new MAC, is not
    /// left unreachable behind its neighbours' stale caches. (IPv6's
    /// ndisc_notify is a sysctl only, not settable by netlink.)
    pub fn prepare_container_link(&self, index: u32, no_ipv6: bool, announce: bool) -> Result<()> {
        use netlink_packet_route::link::{
            AfSpecInet, AfSpecInet6, AfSpecUnspec, In6AddrGenMode, InetDevConf,
        };
        let mut spec = Vec::new();
        if announce {
            // Only the non-zero fields of a request are sent.
            let mut conf = InetDevConf::default();
            conf.arp_notify = 1;
            spec.push(AfSpecUnspec::Inet(vec![AfSpecInet::DevConfRequest(conf)]));
        }
        if no_ipv6 {
            spec.push(AfSpecUnspec::Inet6(vec![AfSpecInet6::AddrGenMode(
                In6AddrGenMode::None,
            )]));
        }
        if spec.is_empty() {
            return Ok(());
        }
        let msg = LinkUnspec::new_with_index(index)
            .append_extra_attribute(LinkAttribute::AfSpecUnspec(spec))
            .build();
        match self.block(self.handle.link().set(msg).execute()) {
            Ok(()) => Ok(()),
            // IPv6 disabled or absent in this namespace: nothing to generate
            // anyway; the rest still applies.
            Err(e) if no_ipv6 && is_errno(&e, libc::EAFNOSUPPORT) => {
                self.prepare_container_link(index, false, announce)
            }
            Err(e) => Err(nl_err(format!("prepare link {index}"), e)),
        }
    }

    /// Give a link no IPv6 link-local address (see
    /// [`Netlink::prepare_container_link`]).
    pub fn disable_ipv6_link_local(&self, index: u32) -> Result<()> {
        self.prepare_container_link(index, true, false)
    }

    /// Set a link up.
    pub fn set_up(&self, index: u32) -> Result<()> {
        let msg = LinkUnspec::new_with_index(index).up().build();
        self.block(self.handle.link().set(msg).execute())
            .map_err(|e| nl_err(format!("set link {index} up"), e))
    }

    /// Set the loopback device up (a fresh namespace has it down).
    pub fn loopback_up(&self) -> Result<()> {
        let lo = self
            .link("lo")?
            .ok_or_else(|| Error::NotFound("no loopback device in namespace".into()))?;
        if lo.up {
            return Ok(());
        }
        self.set_up(lo.index)
    }

    /// Delete a link by name; `Ok(false)` if it did not exist.
    pub fn delete_link(&self, name: &str) -> Result<bool> {
        let Some(l) = self.link(name)? else {
            return Ok(false);
        };
        match self.block(self.handle.link().del(l.index).execute()) {
            Ok(()) => Ok(true),
            Err(e) if is_errno(&e, libc::ENODEV) => Ok(false),
            Err(e) => Err(nl_err(format!("delete link {name}"), e)),
        }
    }

    /// Add an address; an identical existing address is fine. IPv6
    /// addresses skip duplicate address detection (the allocator already
    /// guarantees uniqueness), so they work at once instead of ~2 s later.
    pub fn add_address(&self, index: u32, addr: IpAddr, prefix: u8) -> Result<()> {
        let mut req = self.handle.address().add(index, addr, prefix);
        if addr.is_ipv6() {
            use netlink_packet_route::address::{
                AddressAttribute, AddressFlags, AddressHeaderFlags,
            };
            let msg = req.message_mut();
            msg.header.flags |= AddressHeaderFlags::Nodad;
            msg.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        match self.block(req.execute()) {
            Ok(()) => Ok(()),
            Err(e) if is_errno(&e, libc::EEXIST) => Ok(()),
            Err(e) => Err(nl_err(
                format!("add address {addr}/{prefix} to link {index}"),
                e,
            )),
        }
    }

    /// Add a default route via `gateway` out of link `index`.
    pub fn add_default_route(&self, gateway: IpAddr, index: u32) -> Result<()> {
        let msg = match gateway {
            IpAddr::V4(gw) => RouteMessageBuilder::<std::net::Ipv4Addr>::new()
                .gateway(gw)
                .output_interface(index)
                .build(),
            IpAddr::V6(gw) => RouteMessageBuilder::<std::net::Ipv6Addr>::new()
                .gateway(gw)
                .output_interface(index)
                .build(),
        };
        match self.block(self.handle.route().add(msg).execute()) {
            Ok(()) => Ok(()),
            Err(e) if is_errno(&e, libc::EEXIST) => Ok(()),
            Err(e) => Err(nl_err(format!("add default route via {gateway}"), e)),
        }
    }

    /// Add a default route straight out of link `index`, without a
    /// gateway (`default dev eth0`): what an ipvlan l3/l3s container needs,
    /// as its parent routes for it.
    pub fn add_default_dev_route(&self, index: u32, v6: bool) -> Result<()> {
        use netlink_packet_route::route::RouteScope;
        let msg = if v6 {
            RouteMessageBuilder::<std::net::Ipv6Addr>::new()
                .output_interface(index)
                .scope(RouteScope::Link)
                .build()
        } else {
            RouteMessageBuilder::<std::net::Ipv4Addr>::new()
                .output_interface(index)
                .scope(RouteScope::Link)
                .build()
        };
        match self.block(self.handle.route().add(msg).execute()) {
            Ok(()) => Ok(()),
            Err(e) if is_errno(&e, libc::EEXIST) => Ok(()),
            Err(e) => Err(nl_err(format!("add default route out of link {index}"), e)),
        }
    }

    /// The routes of this namespace's main table as (destination, prefix, gateway, oif).
    pub fn routes(&self, v6: bool) -> Result<Vec<Route>> {
        let msg = if v6 {
            RouteMessageBuilder::<std::net::Ipv6Addr>::new().build()
        } else {
            RouteMessageBuilder::<std::net::Ipv4Addr>::new().build()
        };
        let req = self.handle.route().get(msg).execute();
        let msgs: Vec<_> = self
            .block(req.try_collect())
            .map_err(|e| nl_err("list routes", e))?;
        use netlink_packet_route::route::{RouteAddress, RouteAttribute};
        let ip = |a: &RouteAddress| match a {
            RouteAddress::Inet(v) => Some(IpAddr::V4(*v)),
            RouteAddress::Inet6(v) => Some(IpAddr::V6(*v)),
            _ => None,
        };
        Ok(msgs
            .iter()
            .map(|m| {
                let mut r = Route {
                    destination: None,
                    prefix: m.header.destination_prefix_length,
                    gateway: None,
                    oif: None,
                    table: u32::from(m.header.table),
                };
                for a in &m.attributes {
                    match a {
                        RouteAttribute::Destination(d) => r.destination = ip(d),
                        RouteAttribute::Gateway(g) => r.gateway = ip(g),
                        RouteAttribute::Oif(i) => r.oif = Some(*i),
                        RouteAttribute::Table(t) => r.table = *t,
                        _ => {}
                    }
                }
                r
            })
            .collect())
    }

    /// Create the VXLAN device of an overlay network per `spec` (up,
    /// learning off: every remote entry is programmed by wirehook), or
    /// accept an existing one with the same VNI; returns its index.
    pub fn ensure_vxlan(&self, spec: &VxlanSpec<'_>) -> Result<u32> {
        if let Some(l) = self.link(spec.name)? {
            if l.kind.as_deref() != Some("vxlan") {
                return Err(Error::Conflict(format!(
                    "interface {} exists and is a {} device, not VXLAN; remove it or rename the overlay network",
                    spec.name,
                    l.kind.as_deref().unwrap_or("plain")
                )));
            }
            if !l.up {
                self.set_up(l.index)?;
            }
            return Ok(l.index);
        }
        let mut b = rtnetlink::LinkVxlan::new(spec.name, spec.vni);
        if spec.underlay != 0 {
            b = b.dev(spec.underlay);
        }
        let msg = b
            .local(spec.local)
            .port(spec.port)
            .learning(false)
            .mtu(spec.mtu)
            .address(spec.mac.to_vec())
            .build();
        match self.block(self.handle.link().add(msg).execute()) {
            Ok(()) => {}
            Err(e) if is_errno(&e, libc::EEXIST) => {
                return Err(Error::Conflict(format!(
                    "cannot create VXLAN device {}: VNI {} on UDP port {} is taken by another device of this host (`ip -d link show type vxlan`)",
                    spec.name, spec.vni, spec.port
                )))
            }
            Err(e) if is_errno(&e, libc::EOPNOTSUPP) => {
                return Err(Error::NotFound(
                    "this kernel has no VXLAN support (CONFIG_VXLAN): overlay networks need it; load the vxlan module or use a bridge network".into(),
                ))
            }
            Err(e) => return Err(nl_err(format!("create VXLAN device {}", spec.name), e)),
        }
        let l = self.link(spec.name)?.ok_or_else(|| {
            Error::NotFound(format!(
                "VXLAN device {} vanished after creation",
                spec.name
            ))
        })?;
        // No IPv6 link-local: the device carries IPv4 between hosts only.
        self.disable_ipv6_link_local(l.index)?;
        self.set_up(l.index)?;
        Ok(l.index)
    }

    /// `ip route replace DEST/PREFIX via GW dev INDEX onlink`: the route to
    /// another host's overlay subnet through its VXLAN address.
    pub fn replace_onlink_route(
        &self,
        dest: std::net::Ipv4Addr,
        prefix: u8,
        via: std::net::Ipv4Addr,
        index: u32,
    ) -> Result<()> {
        let msg = RouteMessageBuilder::<std::net::Ipv4Addr>::new()
            .destination_prefix(dest, prefix)
            .gateway(via)
            .output_interface(index)
            .onlink()
            .build();
        self.block(self.handle.route().add(msg).replace().execute())
            .map_err(|e| nl_err(format!("add route {dest}/{prefix} via {via} onlink"), e))
    }

    /// `ip route replace DEST/PREFIX dev INDEX scope link`: a destination
    /// reached directly over a point-to-point link (a WireGuard peer's
    /// tunnel address).
    pub fn replace_link_route(
        &self,
        dest: std::net::Ipv4Addr,
        prefix: u8,
        index: u32,
    ) -> Result<()> {
        use netlink_packet_route::route::RouteScope;
        let msg = RouteMessageBuilder::<std::net::Ipv4Addr>::new()
            .destination_prefix(dest, prefix)
            .output_interface(index)
            .scope(RouteScope::Link)
            .build();
        self.block(self.handle.route().add(msg).replace().execute())
            .map_err(|e| nl_err(format!("add route {dest}/{prefix} dev {index}"), e))
    }

    /// Make the WireGuard device `name` (MTU `mtu`, no IPv6 link-local,
    /// down: it is brought up once keyed), or accept an existing one;
    /// returns its index. A kernel without WireGuard gets one line naming
    /// the `wireguard` module.
    pub fn ensure_wireguard(&self, name: &str, mtu: u32) -> Result<u32> {
        if let Some(l) = self.link(name)? {
            if l.kind.as_deref() != Some("wireguard") {
                return Err(Error::Conflict(format!(
                    "interface {name} exists and is a {} device, not WireGuard; remove it or rename the overlay network",
                    l.kind.as_deref().unwrap_or("plain")
                )));
            }
            return Ok(l.index);
        }
        let msg = rtnetlink::LinkWireguard::new(name).mtu(mtu).build();
        match self.block(self.handle.link().add(msg).execute()) {
            Ok(()) => {}
            Err(e) if is_errno(&e, libc::EOPNOTSUPP) => {
                return Err(Error::NotFound(crate::wireguard::missing_module_message()))
            }
            Err(e) => return Err(nl_err(format!("create WireGuard device {name}"), e)),
        }
        let l = self.link(name)?.ok_or_else(|| {
            Error::NotFound(format!("WireGuard device {name} vanished after creation"))
        })?;
        self.disable_ipv6_link_local(l.index)?;
        Ok(l.index)
    }

    /// Delete the route to `dest/prefix` out of link `index`; a missing
    /// route is fine.
    pub fn delete_route(&self, dest: std::net::Ipv4Addr, prefix: u8, index: u32) -> Result<()> {
        let msg = RouteMessageBuilder::<std::net::Ipv4Addr>::new()
            .destination_prefix(dest, prefix)
            .output_interface(index)
            .build();
        match self.block(self.handle.route().del(msg).execute()) {
            Ok(()) => Ok(()),
            Err(e) if is_errno(&e, libc::ESRCH) || is_errno(&e, libc::ENOENT) => Ok(()),
            Err(e) => Err(nl_err(format!("delete route {dest}/{prefix}"), e)),
        }
    }

    /// A permanent neighbour entry `ip` -> `mac` on link `index` (replacing
    /// whatever was there).
    pub fn replace_neighbour(&self, index: u32, ip: IpAddr, mac: [u8; 6]) -> Result<()> {
        self.set_neighbour(index, ip, mac, false)
    }

    /// Point the neighbour entry of `ip` on link `index` at `mac`,
    /// replacing whatever was cached, as a stale entry (used at once,
    /// confirmed by the kernel later): a new owner of an address takes it
    /// over without waiting out the old owner's reachable time.
    pub fn refresh_neighbour(&self, index: u32, ip: IpAddr, mac: [u8; 6]) -> Result<()> {
        self.set_neighbour(index, ip, mac, true)
    }

    fn set_neighbour(&self, index: u32, ip: IpAddr, mac: [u8; 6], stale: bool) -> Result<()> {
        use netlink_packet_route::neighbour::NeighbourState;
        let req = self
            .handle
            .neighbours()
            .add(index, ip)
            .link_layer_address(&mac)
            .state(if stale {
                NeighbourState::Stale
            } else {
                NeighbourState::Permanent
            })
            .replace();
        self.block(req.execute())
            .map_err(|e| nl_err(format!("set neighbour {ip} on link {index}"), e))
    }

    /// Delete the neighbour entry of `ip` on link `index`; missing is fine.
    pub fn delete_neighbour(&self, index: u32, ip: IpAddr) -> Result<()> {
        use netlink_packet_route::neighbour::NeighbourAttribute;
        use netlink_packet_route::AddressFamily;
        let mut msg = netlink_packet_route::neighbour::NeighbourMessage::default();
        msg.header.ifindex = index;
        msg.header.family = if ip.is_ipv4() {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        };
        msg.attributes
            .push(NeighbourAttribute::Destination(neighbour_address(ip)));
        match self.block(self.handle.neighbours().del(msg).execute()) {
            Ok(()) => Ok(()),
            Err(e) if is_errno(&e, libc::ENOENT) || is_errno(&e, libc::ESRCH) => Ok(()),
            Err(e) => Err(nl_err(format!("delete neighbour {ip} on link {index}"), e)),
        }
    }

    /// A permanent forwarding entry of a VXLAN device (`bridge fdb replace
    /// MAC dev INDEX dst DST self permanent`): frames to `mac` go to the
    /// host at `dst`.
    pub fn replace_fdb(&self, index: u32, mac: [u8; 6], dst: IpAddr) -> Result<()> {
        use netlink_packet_route::neighbour::{NeighbourFlags, NeighbourState};
        let req = self
            .handle
            .neighbours()
            .add_bridge(index, &mac)
            .destination(dst)
            .flags(NeighbourFlags::Own)
            .state(NeighbourState::Permanent)
            .replace();
        self.block(req.execute()).map_err(|e| {
            nl_err(
                format!("add fdb entry {} on link {index}", fmt_mac(&mac)),
                e,
            )
        })
    }

    /// Delete the forwarding entry of `mac` (to `dst`) on link `index`;
    /// missing is fine.
    pub fn delete_fdb(&self, index: u32, mac: [u8; 6], dst: IpAddr) -> Result<()> {
        use netlink_packet_route::neighbour::{
            NeighbourAttribute, NeighbourFlags, NeighbourMessage,
        };
        use netlink_packet_route::AddressFamily;
        let mut msg = NeighbourMessage::default();
        msg.header.family = AddressFamily::Bridge;
        msg.header.ifindex = index;
        msg.header.flags = NeighbourFlags::Own;
        msg.attributes
            .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
        msg.attributes
            .push(NeighbourAttribute::Destination(neighbour_address(dst)));
        match self.block(self.handle.neighbours().del(msg).execute()) {
            Ok(()) => Ok(()),
            Err(e) if is_errno(&e, libc::ENOENT) || is_errno(&e, libc::ESRCH) => Ok(()),
            Err(e) => Err(nl_err(
                format!("delete fdb entry {} on link {index}", fmt_mac(&mac)),
                e,
            )),
        }
    }

    /// The IPv4 neighbour entries of link `index`: (ip, mac).
    pub fn neighbours(&self, index: u32) -> Result<Vec<(IpAddr, [u8; 6])>> {
        Ok(self
            .neighbour_entries(None, index, "list neighbours")?
            .into_iter()
            .filter(|(ip, _)| ip.is_ipv4())
            .collect())
    }

    /// The forwarding entries of VXLAN device `index` that name a remote
    /// host: (mac, destination).
    pub fn fdb(&self, index: u32) -> Result<Vec<([u8; 6], IpAddr)>> {
        use netlink_packet_route::AddressFamily;
        Ok(self
            .neighbour_entries(Some(AddressFamily::Bridge), index, "list fdb entries")?
            .into_iter()
            .map(|(ip, mac)| (mac, ip))
            .collect())
    }

    /// The entries of one neighbour table (`family`; None: IP neighbours)
    /// on link `index` that have both an address and a MAC.
    fn neighbour_entries(
        &self,
        family: Option<netlink_packet_route::AddressFamily>,
        index: u32,
        op: &str,
    ) -> Result<Vec<(IpAddr, [u8; 6])>> {
        use netlink_packet_route::neighbour::{NeighbourAddress, NeighbourAttribute};
        let mut req = self.handle.neighbours().get();
        if let Some(f) = family {
            req = req.set_address_family(f);
        }
        let msgs: Vec<_> = self
            .block(req.execute().try_collect())
            .map_err(|e| nl_err(op, e))?;
        Ok(msgs
            .iter()
            .filter(|m| m.header.ifindex == index)
            .filter_map(|m| {
                let mut ip = None;
                let mut mac = None;
                for a in &m.attributes {
                    match a {
                        NeighbourAttribute::Destination(NeighbourAddress::Inet(v)) => {
                            ip = Some(IpAddr::V4(*v))
                        }
                        NeighbourAttribute::Destination(NeighbourAddress::Inet6(v)) => {
                            ip = Some(IpAddr::V6(*v))
                        }
                        // Bridge-family messages carry the address untyped.
                        NeighbourAttribute::Destination(NeighbourAddress::Other(b)) => {
                            ip = match b.len() {
                                4 => Some(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))),
                                16 => <[u8; 16]>::try_from(b.as_slice())
                                    .ok()
                                    .map(|a| IpAddr::V6(a.into())),
                                _ => None,
                            }
                        }
                        NeighbourAttribute::LinkLayerAddress(l) if l.len() == 6 => {
                            let mut m = [0u8; 6];
                            m.copy_from_slice(l);
                            mac = Some(m);
                        }
                        _ => {}
                    }
                }
                Some((ip?, mac?))
            })
            .collect())
    }

    /// The addresses of this namespace as (link index, address, prefix).
    pub fn addresses(&self) -> Result<Vec<(u32, IpAddr, u8)>> {
        let req = self.handle.address().get().execute();
        let msgs: Vec<_> = self
            .block(req.try_collect())
            .map_err(|e| nl_err("list addresses", e))?;
        use netlink_packet_route::address::AddressAttribute;
        Ok(msgs
            .iter()
            .filter_map(|m| {
                m.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Address(ip) => {
                        Some((m.header.index, *ip, m.header.prefix_len))
                    }
                    _ => None,
                })
            })
            .collect())
    }
}

/// A route as wirehook reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub destination: Option<IpAddr>,
    pub prefix: u8,
    pub gateway: Option<IpAddr>,
    pub oif: Option<u32>,
    pub table: u32,
}

fn link_from_message(msg: &LinkMessage) -> Link {
    let mut link = Link {
        index: msg.header.index,
        name: String::new(),
        kind: None,
        mtu: 0,
        mac: None,
        up: msg.header.flags.contains(LinkFlags::Up),
        master: None,
        parent: None,
        ether: msg.header.link_layer_type == LinkLayerType::Ether,
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => link.name = n.clone(),
            LinkAttribute::Mtu(m) => link.mtu = *m,
            LinkAttribute::Controller(m) => link.master = Some(*m),
            LinkAttribute::Link(p) => link.parent = Some(*p),
            LinkAttribute::Address(a) if a.len() == 6 => {
                let mut mac = [0u8; 6];
                mac.copy_from_slice(a);
                link.mac = Some(mac);
            }
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let LinkInfo::Kind(k) = i {
                        link.kind = Some(k.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    link
}
