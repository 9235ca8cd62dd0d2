//! Overlay networks across hosts: what lives in the cluster store and
//! which kernel entries each host derives from it.
//!
//! Keys (under [`ROOT`]):
//!
//! | key | value | written by |
//! |---|---|---|
//! | `overlay/NET/config` | the [`NetworkDef`] | `network create` (with `vni/N`, in one transaction) |
//! | `overlay/NET/hosts/HOST` | the host's [`HostClaim`]: its subnet, underlay address, VXLAN MAC | the host's first container or agent (with `subnets/NET/CIDR`, in one transaction) |
//! | `overlay/NET/alive/HOST` | empty, on the agent's lease | `wirehook agent` while it runs |
//! | `subnets/NET/A.B.C.D-LEN` | the claiming host | with its claim: two hosts never hold one subnet |
//! | `vni/N` | the network | with its config: two networks never share a VNI |
//! | `names/NET/HOST/ID` | a container's [`NameRecord`] on the network, on the resolver's lease | the host's resolver (`wirehook dns`) while the container runs |
//!
//! Everything a host needs for one network is under `overlay/NET/`: a
//! container start reads that prefix once (names live beside it, under
//! `names/NET/`, so that read does not grow with the cluster's containers) ([`ClusterView`]) and nothing
//! else. Per remote host the kernel gets one route, one neighbour and one
//! FDB entry ([`Peer`]); containers coming and going change nothing in
//! the store.
//!
//! Membership: a host is a peer while its claim exists and, if it runs
//! an agent ([`HostClaim::liveness`]), while its liveness key exists.
//! Claims outlive reboots (the host id is stable) and go only by the rule
//! README states: `wirehook overlay leave` on the host, or `wirehook
//! overlay forget` by an operator for a host that is gone.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use ipnetwork::{IpNetwork, Ipv4Network};
use serde::{Deserialize, Serialize};

use crate::cluster::{Event, EventKind, Listing, Store};
use crate::error::{Error, Result};
use crate::network::{stable_hash, Driver, NetworkDef, Subnet};
use crate::paths::Paths;

/// Every key wirehook writes starts with this.
pub const ROOT: &str = "/wirehook/v1/";

/// UDP port of the VXLAN devices (IANA's).
pub const VXLAN_PORT: u16 = 4789;

/// What VXLAN adds to every frame (outer Ethernet, IPv4, UDP, VXLAN).
pub const VXLAN_OVERHEAD: u32 = 50;

/// Prefix of all overlay network keys.
pub fn networks_prefix() -> String {
    format!("{ROOT}overlay/")
}

/// Prefix of one network's keys: what a container start reads.
pub fn net_prefix(net: &str) -> String {
    format!("{ROOT}overlay/{net}/")
}

pub fn config_key(net: &str) -> String {
    format!("{}config", net_prefix(net))
}

pub fn host_key(net: &str, host: &str) -> String {
    format!("{}hosts/{host}", net_prefix(net))
}

pub fn alive_key(net: &str, host: &str) -> String {
    format!("{}alive/{host}", net_prefix(net))
}

pub fn subnet_key(net: &str, subnet: &Ipv4Network) -> String {
    format!(
        "{ROOT}subnets/{net}/{}-{}",
        subnet.network(),
        subnet.prefix()
    )
}

pub fn subnets_prefix(net: &str) -> String {
    format!("{ROOT}subnets/{net}/")
}

/// Prefix of every overlay network's container names: what the resolvers
/// watch.
pub fn names_prefix() -> String {
    format!("{ROOT}names/")
}

/// Prefix of one network's container names.
pub fn names_net_prefix(net: &str) -> String {
    format!("{ROOT}names/{net}/")
}

/// Key of container `id` of host `host` on network `net`.
pub fn name_key(net: &str, host: &str, id: &str) -> String {
    format!("{ROOT}names/{net}/{host}/{id}")
}

/// `(network, host, container id)` of a key under [`names_prefix`].
pub fn split_name_key(key: &str) -> Option<(&str, &str, &str)> {
    let rest = key.strip_prefix(ROOT)?.strip_prefix("names/")?;
    let mut parts = rest.splitn(3, '/');
    let (net, host, id) = (parts.next()?, parts.next()?, parts.next()?);
    if net.is_empty() || host.is_empty() || id.is_empty() || id.contains('/') {
        return None;
    }
    Some((net, host, id))
}

/// Longest [`NameRecord`] value read from the store; larger ones are
/// skipped (another host's data is not trusted to be small).
pub const MAX_NAME_RECORD: usize = 8192;

/// One container's endpoint on an overlay network, as its host's resolver
/// publishes it for the other hosts' resolvers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameRecord {
    /// First the container's name (reverse lookups answer it), then its
    /// aliases and short id.
    pub names: Vec<String>,
    /// Its addresses on the network.
    pub addresses: Vec<IpAddr>,
}

impl NameRecord {
    /// Parse a value from the store; `None` if it is not one (or too big).
    pub fn parse(value: &[u8]) -> Option<NameRecord> {
        if value.len() > MAX_NAME_RECORD {
            return None;
        }
        serde_json::from_slice(value).ok()
    }
}

pub fn vni_key(vni: u32) -> String {
    format!("{ROOT}vni/{vni}")
}

/// The VNIs wirehook picks from when `--vni` is not given (docker's
/// overlay starts at 4096 too).
pub const AUTO_VNI_START: u32 = 4096;

/// One host's share of an overlay network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostClaim {
    pub host: String,
    /// For people: the host's name when it claimed.
    #[serde(default)]
    pub hostname: String,
    pub subnet: Ipv4Network,
    /// Where other hosts send this host's VXLAN traffic.
    pub underlay: Ipv4Addr,
    /// MAC of this host's VXLAN device (derived from host and VNI).
    pub vtep_mac: String,
    /// The host runs `wirehook agent`: it counts as a peer only while its
    /// liveness key exists.
    #[serde(default)]
    pub liveness: bool,
    /// Seconds since the epoch.
    #[serde(default)]
    pub since: u64,
    /// The host's WireGuard public key (base64), on encrypted networks.
    /// Its private key never leaves the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wg_key: Option<String>,
}

impl HostClaim {
    /// The address of the host's VXLAN device: the first of its subnet
    /// (the network address, unused by containers).
    pub fn vtep_ip(&self) -> Ipv4Addr {
        self.subnet.network()
    }

    /// The gateway containers of this host use: the bridge's address.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.subnet.network()) + 1)
    }
}

/// What one host programs for another: route, neighbour, FDB entry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Peer {
    pub host: String,
    pub subnet: Ipv4Network,
    pub underlay: Ipv4Addr,
    pub vtep_mac: String,
    /// Its WireGuard public key (encrypted networks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wg_key: Option<String>,
}

impl Peer {
    pub fn vtep_ip(&self) -> Ipv4Addr {
        self.subnet.network()
    }

    /// Its end of the WireGuard tunnel of an encrypted network.
    pub fn tunnel_ip(&self) -> Ipv4Addr {
        tunnel_ip(&self.subnet)
    }

    /// The peer's VXLAN MAC; an error naming the host if the store holds
    /// something else.
    pub fn mac(&self) -> Result<[u8; 6]> {
        crate::annotations::parse_mac(&self.vtep_mac).map_err(|_| {
            Error::Store(format!(
                "host {} has VXLAN MAC {:?}, which is not one",
                self.host, self.vtep_mac
            ))
        })
    }

    /// `HOST SUBNET via UNDERLAY`, as `ps` and wiretop list peers.
    pub fn describe(&self) -> String {
        format!("{} {} via {}", self.host, self.subnet, self.underlay)
    }
}

/// One network's state in the store, as a container start or the agent
/// sees it.
#[derive(Debug, Clone, Default)]
pub struct ClusterView {
    pub name: String,
    pub def: Option<NetworkDef>,
    pub hosts: BTreeMap<String, HostClaim>,
    pub alive: BTreeSet<String>,
    /// Store revision the view is at.
    pub revision: i64,
}

impl ClusterView {
    /// The view of network `name` from a listing of its prefix (or of
    /// every network's: keys of other networks are skipped).
    pub fn from_listing(name: &str, listing: &Listing) -> ClusterView {
        let mut v = ClusterView {
            name: name.to_string(),
            revision: listing.revision,
            ..Default::default()
        };
        for kv in &listing.kvs {
            v.put(&kv.key, &kv.value);
        }
        v
    }

    /// Every network in a listing of [`networks_prefix`], by name.
    pub fn all_from_listing(listing: &Listing) -> BTreeMap<String, ClusterView> {
        let mut out: BTreeMap<String, ClusterView> = BTreeMap::new();
        for kv in &listing.kvs {
            if let Some((net, _)) = split_key(&kv.key) {
                let v = out.entry(net.to_string()).or_insert_with(|| ClusterView {
                    name: net.to_string(),
                    ..Default::default()
                });
                v.put(&kv.key, &kv.value);
            }
        }
        for v in out.values_mut() {
            v.revision = listing.revision;
        }
        out
    }

    fn put(&mut self, key: &str, value: &[u8]) {
        let Some((net, rest)) = split_key(key) else {
            return;
        };
        if net != self.name {
            return;
        }
        match rest {
            Rest::Config => self.def = serde_json::from_slice(value).ok(),
            Rest::Host(h) => {
                if let Ok(c) = serde_json::from_slice::<HostClaim>(value) {
                    self.hosts.insert(h.to_string(), c);
                }
            }
            Rest::Alive(h) => {
                self.alive.insert(h.to_string());
            }
        }
    }

    fn remove(&mut self, key: &str) {
        let Some((net, rest)) = split_key(key) else {
            return;
        };
        if net != self.name {
            return;
        }
        match rest {
            Rest::Config => self.def = None,
            Rest::Host(h) => {
                self.hosts.remove(h);
            }
            Rest::Alive(h) => {
                self.alive.remove(h);
            }
        }
    }

    /// Apply one watch event.
    pub fn apply(&mut self, ev: &Event) {
        match ev.kind {
            EventKind::Put => self.put(&ev.kv.key, &ev.kv.value),
            EventKind::Delete => self.remove(&ev.kv.key),
        }
        self.revision = self.revision.max(ev.kv.mod_revision);
    }

    /// Is `host` a member now (see the module docs)?
    pub fn is_member(&self, host: &str) -> bool {
        self.hosts
            .get(host)
            .is_some_and(|c| !c.liveness || self.alive.contains(host))
    }

    /// The other hosts this one must reach, sorted.
    pub fn peers(&self, me: &str) -> Vec<Peer> {
        self.hosts
            .values()
            .filter(|c| c.host != me && self.is_member(&c.host))
            .map(|c| Peer {
                host: c.host.clone(),
                subnet: c.subnet,
                underlay: c.underlay,
                vtep_mac: c.vtep_mac.clone(),
                wg_key: c.wg_key.clone(),
            })
            .collect()
    }

    /// The network's definition; an error naming the store when missing.
    pub fn definition(&self, store: &dyn Store) -> Result<&NetworkDef> {
        self.def.as_ref().ok_or_else(|| {
            Error::NotFound(format!(
                "overlay network {} does not exist in {}: create it with `wirehook network create --driver overlay {}`",
                self.name,
                store.describe(),
                self.name
            ))
        })
    }
}

enum Rest<'a> {
    Config,
    Host(&'a str),
    Alive(&'a str),
}

/// `ROOT/overlay/NET/REST` -> (NET, REST).
fn split_key(key: &str) -> Option<(&str, Rest<'_>)> {
    let rest = key.strip_prefix(ROOT)?.strip_prefix("overlay/")?;
    let (net, rest) = rest.split_once('/')?;
    let r = match rest.split_once('/') {
        None if rest == "config" => Rest::Config,
        Some(("hosts", h)) if !h.is_empty() => Rest::Host(h),
        Some(("alive", h)) if !h.is_empty() => Rest::Alive(h),
        _ => return None,
    };
    Some((net, r))
}

/// The MAC of a host's VXLAN device for `vni`: stable across reboots, so
/// other hosts' entries stay right.
pub fn vtep_mac(host: &str, vni: u32) -> [u8; 6] {
    let h = stable_hash(format!("vtep/{host}/{vni}").as_bytes()).to_be_bytes();
    [0x02, h[0], h[1], h[2], h[3], h[4]]
}

/// The Linux bridge of an overlay network on every host.
pub fn bridge_name(net: &str) -> String {
    device_name("wo-", net)
}

/// The VXLAN device of an overlay network on every host.
pub fn vxlan_name(net: &str) -> String {
    device_name("vx-", net)
}

/// The WireGuard device of an encrypted overlay network on every host.
pub fn wireguard_name(net: &str) -> String {
    device_name("wg-", net)
}

/// A host's end of the WireGuard tunnels of an encrypted network: the
/// last usable address of its share (never given to a container). The
/// VXLAN traffic of the network runs between these addresses, which are
/// routed only through the WireGuard device.
pub fn tunnel_ip(share: &Ipv4Network) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(share.broadcast()) - 1)
}

/// UDP port of an encrypted network's WireGuard device, the same on
/// every host: 51820 (WireGuard's usual) plus the VNI modulo 10000, so
/// networks of one host listen apart.
pub fn wireguard_port(vni: u32) -> u16 {
    51820 + (vni % 10000) as u16
}

fn device_name(prefix: &str, net: &str) -> String {
    if net.len() <= 12 {
        format!("{prefix}{net}")
    } else {
        format!(
            "{prefix}{:012x}",
            stable_hash(net.as_bytes()) & 0xffff_ffff_ffff
        )
    }
}

/// This host as the cluster knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub host: String,
    pub hostname: String,
    pub underlay_if: String,
    pub underlay_index: u32,
    pub underlay_ip: Ipv4Addr,
    pub underlay_mtu: u32,
}

/// Host ids become key components: letters, digits, `-`, `_`, `.`, 1-64.
pub fn validate_host_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "host id {id:?} is not usable: 1-64 letters, digits, '-', '_', '.' (set \"host_id\" in the host config)"
        )))
    }
}

/// The host id: `host_id` from the config, else the first 16 characters
/// of /etc/machine-id.
pub fn host_id(configured: Option<&str>) -> Result<String> {
    if let Some(id) = configured {
        validate_host_id(id)?;
        return Ok(id.to_string());
    }
    let raw = std::fs::read_to_string("/etc/machine-id")
        .map_err(|e| Error::io("read", "/etc/machine-id", e))?;
    let id: String = raw.trim().chars().take(16).collect();
    validate_host_id(&id).map_err(|_| {
        Error::invalid(
            "/etc/machine-id is empty or malformed: set \"host_id\" in the host config (unique per host)",
        )
    })?;
    Ok(id)
}

/// The host-sized subnets of an overlay network, in order.
pub fn host_subnets(def: &NetworkDef) -> Result<impl Iterator<Item = Ipv4Network>> {
    let overlay = overlay_subnet(def)?;
    let host_prefix = def
        .host_prefix
        .unwrap_or_else(|| crate::network::default_host_prefix(overlay.prefix()));
    let count = 1u64 << (host_prefix - overlay.prefix());
    let base = u32::from(overlay.network());
    let step = 1u64 << (32 - host_prefix);
    Ok((0..count).map(move |i| {
        Ipv4Network::new(Ipv4Addr::from(base + (i * step) as u32), host_prefix)
            .expect("valid prefix")
    }))
}

/// The whole IPv4 subnet of an overlay network.
pub fn overlay_subnet(def: &NetworkDef) -> Result<Ipv4Network> {
    match def.subnets.first().map(|s| s.subnet) {
        Some(IpNetwork::V4(n)) => Ok(n),
        _ => Err(Error::invalid(format!(
            "overlay network {} has no IPv4 subnet",
            def.name
        ))),
    }
}

/// The definition a host wires its containers with: the network as given,
/// with the host's share as its only subnet and the bridge's address as
/// gateway.
pub fn local_definition(def: &NetworkDef, claim: &HostClaim, mtu: u32) -> NetworkDef {
    let subnet = IpNetwork::V4(claim.subnet);
    NetworkDef {
        subnets: vec![Subnet {
            subnet,
            gateway: IpAddr::V4(claim.gateway()),
            ip_range: None,
        }],
        bridge: Some(bridge_name(&def.name)),
        mtu: Some(def.mtu.map_or(mtu, |m| m.min(mtu))),
        reserved: if def.encrypted {
            let mut r = def.reserved.clone();
            r.push(IpAddr::V4(tunnel_ip(&claim.subnet)));
            r
        } else {
            def.reserved.clone()
        },
        ..def.clone()
    }
}

/// Store a new overlay network: its config and its VNI in one
/// transaction. Without `vni`, the first free one from
/// [`AUTO_VNI_START`].
pub fn create_network(store: &dyn Store, mut def: NetworkDef) -> Result<NetworkDef> {
    if def.driver != Driver::Overlay {
        return Err(Error::invalid("not an overlay network"));
    }
    // Config and VNI in one transaction: true if neither existed.
    let put = |d: &NetworkDef, vni: u32| {
        let body = serde_json::to_vec(d).expect("serializable");
        store.create(&[
            (&config_key(&d.name), &body),
            (&vni_key(vni), d.name.as_bytes()),
        ])
    };
    if let Some(vni) = def.vni {
        if put(&def, vni)? {
            return Ok(def);
        }
        return Err(create_conflict(store, &def, vni));
    }
    let used: BTreeSet<u32> = store
        .range(&format!("{ROOT}vni/"))?
        .kvs
        .iter()
        .filter_map(|kv| kv.key.rsplit('/').next()?.parse().ok())
        .collect();
    let mut vni = AUTO_VNI_START;
    for _ in 0..64 {
        while used.contains(&vni) {
            vni += 1;
        }
        def.vni = Some(vni);
        if put(&def, vni)? {
            return Ok(def);
        }
        if store.get(&config_key(&def.name))?.is_some() {
            return Err(exists(&def.name, store));
        }
        vni += 1; // taken meanwhile by another network
    }
    Err(Error::Exhausted(
        "could not find a free VNI after 64 tries: give --vni".into(),
    ))
}

fn exists(name: &str, store: &dyn Store) -> Error {
    Error::Conflict(format!(
        "overlay network {name} already exists in {}: pick another name or remove it first (wirehook network rm {name})",
        store.describe()
    ))
}

fn create_conflict(store: &dyn Store, def: &NetworkDef, vni: u32) -> Error {
    if matches!(store.get(&config_key(&def.name)), Ok(Some(_))) {
        return exists(&def.name, store);
    }
    let holder = store
        .get(&vni_key(vni))
        .ok()
        .flatten()
        .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
        .unwrap_or_else(|| "another network".into());
    Error::Conflict(format!(
        "VNI {vni} is already used by overlay network {holder}: pick another --vni or leave it out"
    ))
}

/// Every overlay network in the store.
pub fn list_networks(store: &dyn Store) -> Result<Vec<NetworkDef>> {
    let l = store.range(&networks_prefix())?;
    Ok(ClusterView::all_from_listing(&l)
        .into_values()
        .filter_map(|v| v.def)
        .collect())
}

/// One network's view: one read of its prefix.
pub fn load_view(store: &dyn Store, net: &str) -> Result<ClusterView> {
    Ok(ClusterView::from_listing(
        net,
        &store.range(&net_prefix(net))?,
    ))
}

/// Remove an overlay network and every key under it, cluster-wide.
pub fn delete_network(store: &dyn Store, def: &NetworkDef) -> Result<()> {
    store.delete_prefix(&net_prefix(&def.name))?;
    store.delete_prefix(&subnets_prefix(&def.name))?;
    store.delete_prefix(&names_net_prefix(&def.name))?;
    if let Some(vni) = def.vni {
        // Only if it is still ours.
        if let Some(kv) = store.get(&vni_key(vni))? {
            if kv.value == def.name.as_bytes() {
                store.delete(&[&vni_key(vni)])?;
            }
        }
    }
    Ok(())
}

/// This host's claim on `view`'s network: the existing one (its underlay
/// address refreshed if it changed), else a new one on the first free
/// host subnet, made with a transaction that fails if another host took
/// that subnet first. The caller holds the network's local lock, so this
/// host never races itself.
pub fn claim(
    store: &dyn Store,
    view: &mut ClusterView,
    me: &Identity,
    liveness: bool,
) -> Result<HostClaim> {
    let def = view.definition(store)?.clone();
    let vni = def.vni.unwrap_or(0);
    let mac = crate::annotations::format_mac(&vtep_mac(&me.host, vni));
    if let Some(c) = view.hosts.get(&me.host) {
        if c.underlay == me.underlay_ip && c.vtep_mac == mac && (c.liveness || !liveness) {
            return Ok(c.clone());
        }
        let mut c = c.clone();
        c.underlay = me.underlay_ip;
        c.vtep_mac = mac;
        c.liveness |= liveness;
        store.put(
            &host_key(&def.name, &me.host),
            &serde_json::to_vec(&c).expect("serializable"),
            None,
        )?;
        view.hosts.insert(me.host.clone(), c.clone());
        return Ok(c);
    }
    let taken: BTreeSet<Ipv4Network> = view.hosts.values().map(|c| c.subnet).collect();
    for subnet in host_subnets(&def)? {
        if taken.contains(&subnet) {
            continue;
        }
        let c = HostClaim {
            host: me.host.clone(),
            hostname: me.hostname.clone(),
            subnet,
            underlay: me.underlay_ip,
            vtep_mac: mac.clone(),
            liveness,
            since: crate::network::now(),
            wg_key: None,
        };
        let body = serde_json::to_vec(&c).expect("serializable");
        if store.create(&[
            (&subnet_key(&def.name, &subnet), me.host.as_bytes()),
            (&host_key(&def.name, &me.host), &body),
        ])? {
            view.hosts.insert(me.host.clone(), c.clone());
            return Ok(c);
        }
        // Lost a race for this subnet (or a claim of ours appeared):
        // look again.
        if let Some(kv) = store.get(&host_key(&def.name, &me.host))? {
            if let Ok(c) = serde_json::from_slice::<HostClaim>(&kv.value) {
                view.hosts.insert(me.host.clone(), c.clone());
                return Ok(c);
            }
        }
    }
    Err(Error::Exhausted(format!(
        "overlay network {} has no free /{} left in {} ({} hosts hold one): remove hosts that are gone with `wirehook overlay forget {} HOST`, or use a network with a larger --subnet",
        def.name,
        def.host_prefix.unwrap_or(24),
        overlay_subnet(&def)?,
        view.hosts.len(),
        def.name
    )))
}

/// Put this host's WireGuard public key into its claim on `view`'s
/// network, if the claim does not hold it yet (a new host, or a rotated
/// key).
pub fn publish_key(
    store: &dyn Store,
    view: &mut ClusterView,
    host: &str,
    public_b64: &str,
) -> Result<HostClaim> {
    let mut c = view.hosts.get(host).cloned().ok_or_else(|| {
        Error::NotFound(format!(
            "host {host} has no share of overlay network {} to publish its key in",
            view.name
        ))
    })?;
    if c.wg_key.as_deref() == Some(public_b64) {
        return Ok(c);
    }
    c.wg_key = Some(public_b64.to_string());
    store.put(
        &host_key(&view.name, host),
        &serde_json::to_vec(&c).expect("serializable"),
        None,
    )?;
    view.hosts.insert(host.to_string(), c.clone());
    Ok(c)
}

/// Remove `host`'s claim, subnet key and liveness key from `net`.
pub fn release(store: &dyn Store, net: &str, claim: &HostClaim) -> Result<()> {
    store.delete(&[
        &host_key(net, &claim.host),
        &alive_key(net, &claim.host),
        &subnet_key(net, &claim.subnet),
    ])
}

/// What a host last programmed for an overlay network, kept in
/// `run/wirehook/overlay/NET.json`: `ps`, `network inspect` and wiretop
/// show peers from it without asking the store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalState {
    pub network: String,
    pub host: String,
    pub subnet: Option<Ipv4Network>,
    pub bridge: String,
    pub vxlan: String,
    pub vxlan_index: u32,
    pub vni: u32,
    /// Encrypted network: its WireGuard device (else empty).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub wireguard: String,
    pub store: String,
    pub peers: Vec<Peer>,
    /// Store revision the peers are from.
    pub revision: i64,
    /// Seconds since the epoch.
    pub updated: u64,
}

impl LocalState {
    pub fn path(paths: &Paths, net: &str) -> std::path::PathBuf {
        paths.run_dir.join("overlay").join(format!("{net}.json"))
    }

    pub fn load(paths: &Paths, net: &str) -> Result<Option<LocalState>> {
        crate::fsutil::read_json(&Self::path(paths, net))
    }

    pub fn save(&self, paths: &Paths) -> Result<()> {
        crate::fsutil::write_json(&Self::path(paths, &self.network), self)
    }

    /// `NET VNI N, this host HOST SUBNET, K peer(s)`, as `ps` and wiretop
    /// head their peer lists.
    pub fn summary(&self) -> String {
        format!(
            "{} VNI {}, this host {} {}, {} peer(s){}",
            self.network,
            self.vni,
            self.host,
            self.subnet.map_or_else(|| "-".into(), |s| s.to_string()),
            self.peers.len(),
            if self.wireguard.is_empty() {
                String::new()
            } else {
                format!(", encrypted over {}", self.wireguard)
            }
        )
    }

    /// Every overlay network this host has wired.
    pub fn list(paths: &Paths) -> Vec<LocalState> {
        let dir = paths.run_dir.join("overlay");
        let mut out: Vec<LocalState> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| crate::fsutil::read_json(&e.path()).ok().flatten())
            .collect();
        out.sort_by(|a, b| a.network.cmp(&b.network));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Kv;

    #[test]
    fn name_keys_and_records() {
        let k = name_key("web", "h1", "abc");
        assert_eq!(k, "/wirehook/v1/names/web/h1/abc");
        assert_eq!(split_name_key(&k), Some(("web", "h1", "abc")));
        assert!(k.starts_with(&names_net_prefix("web")));
        assert!(k.starts_with(&names_prefix()));
        assert!(
            !k.starts_with(&net_prefix("web")),
            "outside the start's read"
        );
        for bad in [
            "/wirehook/v1/names/web/h1",
            "/wirehook/v1/names/web//abc",
            "/wirehook/v1/names/web/h1/a/b",
            "/wirehook/v1/overlay/web/h1/abc",
        ] {
            assert_eq!(split_name_key(bad), None, "{bad}");
        }
        let r = NameRecord {
            names: vec!["db".into(), "mysql".into()],
            addresses: vec!["10.0.1.2".parse().unwrap()],
        };
        let v = serde_json::to_vec(&r).unwrap();
        assert_eq!(NameRecord::parse(&v), Some(r));
        assert_eq!(NameRecord::parse(b"{"), None);
        let big = format!(
            "{{\"names\":[\"{}\"],\"addresses\":[]}}",
            "a".repeat(MAX_NAME_RECORD)
        );
        assert_eq!(NameRecord::parse(big.as_bytes()), None, "too big");
    }

    fn kv(key: &str, value: &str) -> Kv {
        Kv {
            key: key.into(),
            value: value.as_bytes().to_vec(),
            create_revision: 1,
            mod_revision: 1,
            lease: 0,
        }
    }

    fn claim_json(host: &str, subnet: &str, liveness: bool) -> String {
        serde_json::to_string(&HostClaim {
            host: host.into(),
            hostname: host.into(),
            subnet: subnet.parse().unwrap(),
            underlay: "192.0.2.1".parse().unwrap(),
            vtep_mac: "02:00:00:00:00:01".into(),
            liveness,
            since: 0,
            wg_key: None,
        })
        .unwrap()
    }

    #[test]
    fn view_peers_follow_claims_and_liveness() {
        let l = Listing {
            kvs: vec![
                kv(
                    &host_key("o", "a"),
                    &claim_json("a", "10.200.0.0/24", false),
                ),
                kv(&host_key("o", "b"), &claim_json("b", "10.200.1.0/24", true)),
                kv(&host_key("o", "c"), &claim_json("c", "10.200.2.0/24", true)),
                kv(&alive_key("o", "c"), ""),
                kv(
                    &host_key("other", "x"),
                    &claim_json("x", "10.9.0.0/24", false),
                ),
                kv("/wirehook/v1/overlay/o/unknown/x", "?"),
            ],
            revision: 7,
        };
        let mut v = ClusterView::from_listing("o", &l);
        assert_eq!(v.revision, 7);
        let peers: Vec<String> = v.peers("a").into_iter().map(|p| p.host).collect();
        assert_eq!(peers, ["c"], "b runs an agent but is not alive");
        v.apply(&Event {
            kind: EventKind::Put,
            kv: Kv {
                mod_revision: 9,
                ..kv(&alive_key("o", "b"), "")
            },
        });
        assert_eq!(v.peers("a").len(), 2);
        assert_eq!(v.revision, 9);
        v.apply(&Event {
            kind: EventKind::Delete,
            kv: kv(&host_key("o", "c"), ""),
        });
        let peers: Vec<String> = v.peers("a").into_iter().map(|p| p.host).collect();
        assert_eq!(peers, ["b"]);
        let all = ClusterView::all_from_listing(&l);
        assert_eq!(all.keys().collect::<Vec<_>>(), ["o", "other"]);
    }

    #[test]
    fn host_subnets_cover_the_overlay_in_order() {
        let def = NetworkDef {
            name: "o".into(),
            driver: Driver::Overlay,
            subnets: vec![Subnet {
                subnet: "10.200.0.0/22".parse().unwrap(),
                gateway: "10.200.0.1".parse().unwrap(),
                ip_range: None,
            }],
            bridge: None,
            internal: false,
            dns: true,
            mtu: None,
            reserved: vec![],
            parent: None,
            mode: None,
            vni: Some(1),
            host_prefix: Some(24),
            encrypted: false,
            labels: Default::default(),
            builtin: false,
            created: 0,
        };
        let s: Vec<String> = host_subnets(&def).unwrap().map(|n| n.to_string()).collect();
        assert_eq!(
            s,
            [
                "10.200.0.0/24",
                "10.200.1.0/24",
                "10.200.2.0/24",
                "10.200.3.0/24"
            ]
        );
    }

    #[test]
    fn names_and_macs_are_stable() {
        assert_eq!(bridge_name("web"), "wo-web");
        assert_eq!(vxlan_name("web"), "vx-web");
        assert_eq!(vxlan_name("a-very-long-network").len(), 15);
        assert_eq!(vtep_mac("h1", 42), vtep_mac("h1", 42));
        assert_ne!(vtep_mac("h1", 42), vtep_mac("h2", 42));
        assert_eq!(
            vtep_mac("h1", 42)[0] & 3,
            2,
            "unicast, locally administered"
        );
        assert!(validate_host_id("node-1.example").is_ok());
        assert!(validate_host_id("../x").is_err());
        assert!(validate_host_id("").is_err());
    }
}
