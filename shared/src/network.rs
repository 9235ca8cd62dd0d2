//! Network definitions: what the operator created with `wirehook network
//! create` (or the built-in `bridge`), stored as
//! `/etc/wirehook/networks/NAME.json`.
//!
//! A definition says which driver wires containers into the network and
//! with which subnets; it does not say whether the host side exists yet
//! (the bridge is made by the first container that needs it).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fsutil;
use crate::paths::Paths;

/// Name of the network that exists out of the box.
pub const DEFAULT_NETWORK: &str = "bridge";
/// Bridge device of the built-in network.
pub const DEFAULT_BRIDGE: &str = "wirehook0";
/// Subnets tried, in order, for the built-in network: the first that does
/// not overlap a route of the host (or another wirehook network) wins.
pub const DEFAULT_BRIDGE_CANDIDATES: &[&str] = &[
    "10.88.0.0/16",
    "10.87.0.0/16",
    "10.86.0.0/16",
    "172.30.0.0/16",
    "172.29.0.0/16",
    "192.168.239.0/24",
];
/// Pool user-defined networks without `--subnet` take /24s from.
pub const AUTO_SUBNET_POOL: &str = "10.89.0.0/16";

/// Where overlay networks without `--subnet` get theirs: the first of the
/// 16 /16s from this one on (10.200.0.0/16 - 10.215.0.0/16) that overlaps
/// no other network or host route.
pub const OVERLAY_SUBNET_POOL: &str = "10.200.0.0/16";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    Bridge,
    Macvlan,
    Ipvlan,
    Overlay,
}

impl Driver {
    pub fn as_str(&self) -> &'static str {
        match self {
            Driver::Bridge => "bridge",
            Driver::Macvlan => "macvlan",
            Driver::Ipvlan => "ipvlan",
            Driver::Overlay => "overlay",
        }
    }

    pub fn parse(s: &str) -> Result<Driver> {
        match s {
            "bridge" => Ok(Driver::Bridge),
            "macvlan" => Ok(Driver::Macvlan),
            "ipvlan" => Ok(Driver::Ipvlan),
            "overlay" => Ok(Driver::Overlay),
            other => Err(Error::invalid(format!(
                "unknown driver {other:?}: use bridge, macvlan, ipvlan or overlay"
            ))),
        }
    }
}

impl std::fmt::Display for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a macvlan network's sub-interfaces share their parent (docker's
/// `-o macvlan_mode`): `bridge` (default) lets them reach each other
/// directly, `private` isolates them from each other, `vepa` sends
/// everything to the external switch (they reach each other only if it
/// hairpins), `passthru` gives the parent itself to one container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MacvlanMode {
    Bridge,
    Private,
    Vepa,
    Passthru,
}

impl MacvlanMode {
    pub const NAMES: &'static str = "bridge, private, vepa or passthru";

    pub fn as_str(&self) -> &'static str {
        match self {
            MacvlanMode::Bridge => "bridge",
            MacvlanMode::Private => "private",
            MacvlanMode::Vepa => "vepa",
            MacvlanMode::Passthru => "passthru",
        }
    }

    pub fn parse(s: &str) -> Option<MacvlanMode> {
        match s {
            "bridge" => Some(MacvlanMode::Bridge),
            "private" => Some(MacvlanMode::Private),
            "vepa" => Some(MacvlanMode::Vepa),
            "passthru" => Some(MacvlanMode::Passthru),
            _ => None,
        }
    }
}

/// How an ipvlan network's sub-interfaces work (docker's `-o
/// ipvlan_mode`): `l2` (default) switches frames on the parent's segment
/// (the gateway is a router on that segment); `l3` and `l3s` route: no
/// ARP or broadcast leaves the container, other machines reach its subnet
/// through a route via the host (`l3s` also passes the host's netfilter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpvlanMode {
    L2,
    L3,
    L3s,
}

impl IpvlanMode {
    pub const NAMES: &'static str = "l2, l3 or l3s";

    pub fn as_str(&self) -> &'static str {
        match self {
            IpvlanMode::L2 => "l2",
            IpvlanMode::L3 => "l3",
            IpvlanMode::L3s => "l3s",
        }
    }

    pub fn parse(s: &str) -> Option<IpvlanMode> {
        match s {
            "l2" => Some(IpvlanMode::L2),
            "l3" => Some(IpvlanMode::L3),
            "l3s" => Some(IpvlanMode::L3s),
            _ => None,
        }
    }

    /// Routed modes: containers get a default route through the device
    /// itself, not via a gateway.
    pub fn routed(&self) -> bool {
        !matches!(self, IpvlanMode::L2)
    }
}

/// The canonical mode of a `driver` network: the given one, validated, or
/// the driver's default; None for drivers without modes (refusing a mode
/// given to them).
pub fn canonical_mode(driver: Driver, mode: Option<&str>) -> Result<Option<String>> {
    let bad = |names: &str| {
        Error::invalid(format!(
            "--mode {:?} is not a {driver} mode: use {names}",
            mode.unwrap_or_default()
        ))
    };
    match driver {
        Driver::Macvlan => match mode {
            None => Ok(Some(MacvlanMode::Bridge.as_str().into())),
            Some(m) => MacvlanMode::parse(m)
                .map(|m| Some(m.as_str().into()))
                .ok_or_else(|| bad(MacvlanMode::NAMES)),
        },
        Driver::Ipvlan => match mode {
            None => Ok(Some(IpvlanMode::L2.as_str().into())),
            Some(m) => IpvlanMode::parse(m)
                .map(|m| Some(m.as_str().into()))
                .ok_or_else(|| bad(IpvlanMode::NAMES)),
        },
        _ => match mode {
            None => Ok(None),
            Some(m) => Err(Error::invalid(format!(
                "--mode {m} is for macvlan and ipvlan networks, not {driver}"
            ))),
        },
    }
}

/// An 802.1Q parent written `BASE.ID` (`eth0.100`): the base interface
/// and the VLAN id, if the name has that form (a numeric suffix after the
/// last dot). The id is not range-checked here (see [`check_parent`]).
pub fn vlan_parent(name: &str) -> Option<(&str, u32)> {
    let (base, id) = name.rsplit_once('.')?;
    if base.is_empty() || id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((base, id.parse().ok()?))
}

/// Validate a `--parent`: an interface name, and in the `BASE.ID` form a
/// VLAN id from 1 to 4094.
pub fn check_parent(name: &str) -> Result<()> {
    crate::annotations::validate_ifname(name)
        .map_err(|e| Error::invalid(format!("--parent: {e}")))?;
    if let Some((_, id)) = vlan_parent(name) {
        if !(1..=4094).contains(&id) {
            return Err(Error::invalid(format!(
                "--parent {name} names VLAN {id}, which 802.1Q does not allow: use a VLAN id from 1 to 4094"
            )));
        }
    }
    Ok(())
}

/// One subnet of a network, with its gateway and the part of it addresses
/// are allocated from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subnet {
    pub subnet: IpNetwork,
    pub gateway: IpAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<IpNetwork>,
}

impl Subnet {
    pub fn is_v6(&self) -> bool {
        self.subnet.is_ipv6()
    }

    /// The gateway as an interface address (gateway/prefix).
    pub fn gateway_cidr(&self) -> IpNetwork {
        IpNetwork::new(self.gateway, self.subnet.prefix()).expect("prefix from a valid subnet")
    }
}

/// A network definition as stored on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkDef {
    pub name: String,
    pub driver: Driver,
    #[serde(default)]
    pub subnets: Vec<Subnet>,
    /// Bridge device (bridge driver).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge: Option<String>,
    /// No route to the outside, no masquerade.
    #[serde(default)]
    pub internal: bool,
    /// Containers on it resolve each other by name (`--dns=false` turns
    /// that off; the resolver then neither answers their names nor gives
    /// them the others').
    #[serde(default = "dns_default", skip_serializing_if = "is_dns_default")]
    pub dns: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Addresses the allocator must never hand out (docker's --aux-address).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reserved: Vec<IpAddr>,
    /// Host interface (macvlan/ipvlan).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Driver mode (macvlan: bridge|private|vepa|passthru, ipvlan: l2|l3|l3s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// VXLAN network identifier (overlay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vni: Option<u32>,
    /// Prefix length of each host's share of an overlay subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_prefix: Option<u8>,
    /// Overlay traffic between hosts goes through WireGuard (`--encrypted`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub encrypted: bool,
    /// Free-form labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Created out of the box rather than by `network create`.
    #[serde(default)]
    pub builtin: bool,
    /// Seconds since the epoch.
    #[serde(default)]
    pub created: u64,
}

fn dns_default() -> bool {
    true
}

fn is_dns_default(b: &bool) -> bool {
    *b
}

impl NetworkDef {
    pub fn has_v6(&self) -> bool {
        self.subnets.iter().any(|s| s.is_v6())
    }

    /// The bridge device name; every bridge-driver network has one.
    pub fn bridge_name(&self) -> &str {
        self.bridge.as_deref().unwrap_or(DEFAULT_BRIDGE)
    }

    pub fn subnet_cidrs(&self) -> Vec<IpNetwork> {
        self.subnets.iter().map(|s| s.subnet).collect()
    }

    /// The macvlan mode of a macvlan network (bridge when unset).
    pub fn macvlan_mode(&self) -> Result<MacvlanMode> {
        let m = self.mode.as_deref().unwrap_or("bridge");
        MacvlanMode::parse(m).ok_or_else(|| {
            Error::invalid(format!(
                "network {} has macvlan mode {m:?}, which is not one: recreate it with --mode {}",
                self.name,
                MacvlanMode::NAMES
            ))
        })
    }

    /// The ipvlan mode of an ipvlan network (l2 when unset).
    pub fn ipvlan_mode(&self) -> Result<IpvlanMode> {
        let m = self.mode.as_deref().unwrap_or("l2");
        IpvlanMode::parse(m).ok_or_else(|| {
            Error::invalid(format!(
                "network {} has ipvlan mode {m:?}, which is not one: recreate it with --mode {}",
                self.name,
                IpvlanMode::NAMES
            ))
        })
    }
}

/// What `wirehook network create` was asked for, before defaults are filled in.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub name: String,
    pub driver: Option<Driver>,
    pub subnets: Vec<IpNetwork>,
    pub gateways: Vec<IpAddr>,
    pub ip_ranges: Vec<IpNetwork>,
    pub aux_addresses: Vec<IpAddr>,
    pub internal: bool,
    /// Names on this network (`None`: the default, on).
    pub dns: Option<bool>,
    pub mtu: Option<u32>,
    pub ipv6: bool,
    pub parent: Option<String>,
    pub mode: Option<String>,
    pub vni: Option<u32>,
    pub host_prefix: Option<u8>,
    pub bridge: Option<String>,
    pub labels: BTreeMap<String, String>,
}

/// A stable 64-bit FNV-1a hash; names derived from it never change across
/// versions.
pub fn stable_hash(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// Bridge device for a user network: `wh-NAME` when it fits the 15-byte
/// interface name limit, else `wh-` plus a hash of the name.
pub fn bridge_name_for(network: &str) -> String {
    if network.len() <= 12 {
        format!("wh-{network}")
    } else {
        format!(
            "wh-{:012x}",
            stable_hash(network.as_bytes()) & 0xffff_ffff_ffff
        )
    }
}

/// First usable host address of a subnet (the default gateway).
pub fn first_host(net: &IpNetwork) -> Result<IpAddr> {
    nth_host(net, 1).ok_or_else(|| {
        Error::invalid(format!(
            "subnet {net} is too small: use a prefix of /30 or shorter (/126 for IPv6)"
        ))
    })
}

/// Address `n` of a network counting the network address as 0; None
/// when out of range.
pub fn nth_host(net: &IpNetwork, n: u128) -> Option<IpAddr> {
    match net {
        IpNetwork::V4(v4) => {
            let size = 1u128 << (32 - v4.prefix());
            (n < size).then(|| IpAddr::V4(Ipv4Addr::from(u32::from(v4.network()) + n as u32)))
        }
        IpNetwork::V6(v6) => {
            let bits = 128 - u32::from(v6.prefix());
            let size_ok = bits == 128 || n < (1u128 << bits);
            size_ok.then(|| IpAddr::V6(Ipv6Addr::from(u128::from(v6.network()) + n)))
        }
    }
}

/// Do two networks share any address?
pub fn overlaps(a: &IpNetwork, b: &IpNetwork) -> bool {
    match (a, b) {
        (IpNetwork::V4(x), IpNetwork::V4(y)) => x.contains(y.network()) || y.contains(x.network()),
        (IpNetwork::V6(x), IpNetwork::V6(y)) => x.contains(y.network()) || y.contains(x.network()),
        _ => false,
    }
}

/// The network (masked) form of a CIDR the user typed, or an error if the
/// user gave a host address with a prefix ("10.1.2.3/24").
pub fn canonical(net: IpNetwork, what: &str) -> Result<IpNetwork> {
    let canon = IpNetwork::new(net.network(), net.prefix()).expect("valid prefix");
    if canon != net {
        return Err(Error::invalid(format!(
            "{what} {net} has host bits set: did you mean {canon}?"
        )));
    }
    Ok(canon)
}

/// Store of network definitions on disk.
pub struct Networks<'a> {
    paths: &'a Paths,
}

impl<'a> Networks<'a> {
    pub fn new(paths: &'a Paths) -> Self {
        Networks { paths }
    }

    /// The definition of `name`, or None. The built-in network is not
    /// created here (see [`Networks::get_or_builtin`]).
    pub fn get(&self, name: &str) -> Result<Option<NetworkDef>> {
        crate::annotations::validate_network_name(name)?;
        fsutil::read_json(&self.paths.network_file(name))
    }

    /// Like [`get`](Self::get), but materialises the built-in `bridge`
    /// network on first use, choosing a subnet that avoids `taken` (the
    /// host's routes).
    pub fn get_or_builtin(
        &self,
        name: &str,
        host_routes: impl FnOnce() -> Vec<IpNetwork>,
    ) -> Result<Option<NetworkDef>> {
        if let Some(def) = self.get(name)? {
            return Ok(Some(def));
        }
        if name != DEFAULT_NETWORK {
            return Ok(None);
        }
        let _lock = fsutil::Lock::exclusive(&self.paths.locks_dir().join("networks.lock"))?;
        if let Some(def) = self.get(name)? {
            return Ok(Some(def));
        }
        let def = self.builtin_definition(host_routes())?;
        fsutil::write_json_durable(&self.paths.network_file(name), &def)?;
        Ok(Some(def))
    }

    fn builtin_definition(&self, routes: Vec<IpNetwork>) -> Result<NetworkDef> {
        let host = crate::hostconfig::HostConfig::load(self.paths)?;
        let existing = self.subnets_in_use()?;
        let subnet = match host.bridge_subnet {
            Some(s) => s,
            None => DEFAULT_BRIDGE_CANDIDATES
                .iter()
                .map(|c| c.parse::<IpNetwork>().expect("valid candidate"))
                .find(|c| !routes.iter().chain(existing.iter()).any(|r| overlaps(c, r)))
                .ok_or_else(|| {
                    Error::Exhausted(format!(
                        "every candidate subnet for the built-in bridge network ({}) overlaps a host route; set \"bridge_subnet\" in {}",
                        DEFAULT_BRIDGE_CANDIDATES.join(", "),
                        self.paths.host_config_file().display()
                    ))
                })?,
        };
        let gateway = match host.bridge_gateway {
            Some(g) => g,
            None => first_host(&subnet)?,
        };
        Ok(NetworkDef {
            name: DEFAULT_NETWORK.into(),
            driver: Driver::Bridge,
            subnets: vec![Subnet {
                subnet,
                gateway,
                ip_range: None,
            }],
            bridge: Some(DEFAULT_BRIDGE.into()),
            internal: false,
            dns: true,
            mtu: host.bridge_mtu,
            reserved: Vec::new(),
            parent: None,
            mode: None,
            vni: None,
            host_prefix: None,
            encrypted: false,
            labels: BTreeMap::new(),
            builtin: true,
            created: now(),
        })
    }

    /// Every stored definition, sorted by name.
    pub fn list(&self) -> Result<Vec<NetworkDef>> {
        let dir = self.paths.networks_dir();
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("read directory", dir, e)),
        };
        let mut out = Vec::new();
        for entry in rd.flatten() {
            let p = entry.path();
            if p.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            if let Some(def) = fsutil::read_json::<NetworkDef>(&p)? {
                out.push(def);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn subnets_in_use(&self) -> Result<Vec<IpNetwork>> {
        Ok(self.list()?.iter().flat_map(|d| d.subnet_cidrs()).collect())
    }

    /// Validate `opts`, fill in defaults, store the definition.
    pub fn create(&self, opts: &CreateOptions, host_routes: &[IpNetwork]) -> Result<NetworkDef> {
        crate::annotations::validate_network_name(&opts.name)?;
        let _lock = fsutil::Lock::exclusive(&self.paths.locks_dir().join("networks.lock"))?;
        if self.get(&opts.name)?.is_some() {
            return Err(Error::Conflict(format!(
                "network {} already exists: pick another name or remove it first (wirehook network rm {})",
                opts.name, opts.name
            )));
        }
        let def = build_definition(opts, &self.list()?, host_routes)?;
        fsutil::write_json_durable(&self.paths.network_file(&def.name), &def)?;
        Ok(def)
    }

    /// Store a definition as given (inline definitions from annotations).
    pub fn store(&self, def: &NetworkDef) -> Result<()> {
        fsutil::write_json_durable(&self.paths.network_file(&def.name), def)
    }

    /// Remove the stored definition; false if it did not exist.
    pub fn remove(&self, name: &str) -> Result<bool> {
        crate::annotations::validate_network_name(name)?;
        fsutil::remove_file(&self.paths.network_file(name))
    }
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Turn create options into a full definition (pure: no I/O), checking
/// them against the networks that exist.
pub fn build_definition(
    opts: &CreateOptions,
    existing: &[NetworkDef],
    host_routes: &[IpNetwork],
) -> Result<NetworkDef> {
    let driver = opts.driver.unwrap_or(Driver::Bridge);
    if let Some(m) = opts.mtu {
        if !(68..=65535).contains(&m) {
            return Err(Error::invalid(format!(
                "--mtu {m} is out of range: use 68 to 65535"
            )));
        }
    }
    if opts.gateways.len() > opts.subnets.len() {
        return Err(Error::invalid(
            "more --gateway than --subnet flags: give one gateway per subnet, in the same order",
        ));
    }
    if opts.ip_ranges.len() > opts.subnets.len() {
        return Err(Error::invalid("more --ip-range than --subnet flags: give at most one range per subnet, in the same order"));
    }
    let taken: Vec<(String, IpNetwork)> = existing
        .iter()
        .flat_map(|d| d.subnets.iter().map(move |s| (d.name.clone(), s.subnet)))
        .collect();

    let mut subnets = Vec::new();
    for (i, raw) in opts.subnets.iter().enumerate() {
        let subnet = canonical(*raw, "--subnet")?;
        if let Some((other, s)) = taken.iter().find(|(_, s)| overlaps(s, &subnet)) {
            return Err(Error::Conflict(format!(
                "subnet {subnet} overlaps {s} of network {other}: pick a subnet that does not"
            )));
        }
        if let Some(prev) = subnets
            .iter()
            .find(|s: &&Subnet| overlaps(&s.subnet, &subnet))
        {
            return Err(Error::invalid(format!(
                "--subnet {subnet} overlaps --subnet {}",
                prev.subnet
            )));
        }
        let gateway = match opts.gateways.get(i) {
            Some(g) => {
                if !subnet.contains(*g)
                    || Some(*g) == nth_host(&subnet, 0)
                    || is_broadcast(&subnet, *g)
                {
                    return Err(Error::invalid(format!(
                        "--gateway {g} is not a usable address of --subnet {subnet}"
                    )));
                }
                *g
            }
            None => first_host(&subnet)?,
        };
        let ip_range = match opts.ip_ranges.get(i) {
            Some(r) => {
                let r = canonical(*r, "--ip-range")?;
                if !(subnet.contains(r.network()) && r.prefix() >= subnet.prefix()) {
                    return Err(Error::invalid(format!(
                        "--ip-range {r} is not inside --subnet {subnet}"
                    )));
                }
                Some(r)
            }
            None => None,
        };
        subnets.push(Subnet {
            subnet,
            gateway,
            ip_range,
        });
    }
    if driver == Driver::Overlay {
        if opts.ipv6 || subnets.iter().any(|s| s.is_v6()) {
            return Err(Error::invalid(
                "overlay networks are IPv4 only in this version: leave out --ipv6 and IPv6 subnets",
            ));
        }
        if subnets.len() > 1 {
            return Err(Error::invalid(
                "an overlay network has one --subnet (each host takes a share of it)",
            ));
        }
        if !opts.gateways.is_empty() || !opts.ip_ranges.is_empty() {
            return Err(Error::invalid(
                "--gateway and --ip-range are not for overlay networks: each host's share of --subnet has its own gateway (its first address)",
            ));
        }
        if opts.bridge.is_some() {
            return Err(Error::invalid(
                "--bridge is not for overlay networks: their bridges are named after the network",
            ));
        }
        if subnets.is_empty() {
            let pool: Ipv4Network = OVERLAY_SUBNET_POOL.parse().expect("valid pool");
            let occupied: Vec<IpNetwork> = taken
                .iter()
                .map(|(_, s)| *s)
                .chain(host_routes.iter().copied())
                .collect();
            let pick = (0..16u32)
                .map(|i| {
                    IpNetwork::V4(
                        Ipv4Network::new(Ipv4Addr::from(u32::from(pool.network()) + (i << 16)), 16)
                            .unwrap(),
                    )
                })
                .find(|c| !occupied.iter().any(|o| overlaps(o, c)))
                .ok_or_else(|| {
                    Error::Exhausted(
                        "no free /16 left in 10.200.0.0 - 10.215.255.255 for an overlay network: give --subnet".into(),
                    )
                })?;
            subnets.push(Subnet {
                subnet: pick,
                gateway: first_host(&pick)?,
                ip_range: None,
            });
        }
        let overlay = subnets[0].subnet;
        let host_prefix = opts
            .host_prefix
            .unwrap_or_else(|| default_host_prefix(overlay.prefix()));
        if host_prefix < overlay.prefix() + 1 || host_prefix > 29 {
            return Err(Error::invalid(format!(
                "--host-prefix {host_prefix} does not fit --subnet {overlay}: use {} to 29 (each host gets one /{host_prefix} of it)",
                overlay.prefix() + 1
            )));
        }
    } else if opts.host_prefix.is_some() {
        return Err(Error::invalid(format!(
            "--host-prefix is for overlay networks, not {driver}"
        )));
    }
    if let Some(v) = opts.vni {
        if !(1..=16_777_215).contains(&v) {
            return Err(Error::invalid(format!(
                "--vni {v} is out of range: use 1 to 16777215"
            )));
        }
    }
    if driver == Driver::Bridge {
        if !subnets.iter().any(|s| !s.is_v6()) {
            let pool: Ipv4Network = AUTO_SUBNET_POOL.parse().expect("valid pool");
            let occupied: Vec<IpNetwork> = taken
                .iter()
                .map(|(_, s)| *s)
                .chain(host_routes.iter().copied())
                .collect();
            let pick = (0..256u32)
                .map(|i| {
                    IpNetwork::V4(
                        Ipv4Network::new(Ipv4Addr::from(u32::from(pool.network()) + (i << 8)), 24)
                            .unwrap(),
                    )
                })
                .find(|c| {
                    !occupied.iter().any(|o| overlaps(o, c))
                        && !subnets.iter().any(|s| overlaps(&s.subnet, c))
                })
                .ok_or_else(|| {
                    Error::Exhausted(format!(
                        "no free /24 left in {AUTO_SUBNET_POOL}: give --subnet"
                    ))
                })?;
            subnets.insert(
                0,
                Subnet {
                    subnet: pick,
                    gateway: first_host(&pick)?,
                    ip_range: None,
                },
            );
        }
        if opts.ipv6 && !subnets.iter().any(|s| s.is_v6()) {
            // A unique-local /64 derived from the name, stable across recreation.
            let h = stable_hash(opts.name.as_bytes());
            let prefix = (0xfd00u128 << 112) | (u128::from(h & 0xff_ffff_ffff_ffff) << 64);
            let net = IpNetwork::V6(Ipv6Network::new(Ipv6Addr::from(prefix), 64).unwrap());
            subnets.push(Subnet {
                subnet: net,
                gateway: first_host(&net)?,
                ip_range: None,
            });
        }
    } else if subnets.is_empty() {
        return Err(Error::invalid(format!(
            "a {driver} network needs --subnet (the subnet of the segment {} is on)",
            opts.parent.as_deref().unwrap_or("the parent")
        )));
    }
    if !opts.ipv6 && subnets.iter().any(|s| s.is_v6()) && opts.subnets.iter().any(|s| s.is_ipv6()) {
        // An explicit v6 subnet implies --ipv6, as with podman.
    }
    for a in &opts.aux_addresses {
        if !subnets.iter().any(|s| s.subnet.contains(*a)) {
            return Err(Error::invalid(format!(
                "--aux-address {a} is in none of the network's subnets"
            )));
        }
    }
    let bridge = match driver {
        Driver::Bridge => Some(
            opts.bridge
                .clone()
                .unwrap_or_else(|| bridge_name_for(&opts.name)),
        ),
        _ => None,
    };
    if let Some(b) = &bridge {
        crate::annotations::validate_ifname(b)?;
        if let Some(other) = existing
            .iter()
            .find(|d| d.bridge.as_deref() == Some(b.as_str()))
        {
            return Err(Error::Conflict(format!(
                "bridge {b} is already used by network {}",
                other.name
            )));
        }
    }
    let mode = canonical_mode(driver, opts.mode.as_deref())?;
    match driver {
        Driver::Macvlan | Driver::Ipvlan => {
            let Some(parent) = &opts.parent else {
                return Err(Error::invalid(format!(
                    "a {driver} network needs --parent IFACE (the host interface on the segment its containers join)"
                )));
            };
            check_parent(parent)?;
            if opts.bridge.is_some() {
                return Err(Error::invalid(format!(
                    "--bridge is for bridge networks, not {driver}: a {driver} network hangs on --parent"
                )));
            }
            if opts.ipv6 && !subnets.iter().any(|s| s.is_v6()) {
                return Err(Error::invalid(format!(
                    "--ipv6 on a {driver} network needs an IPv6 --subnet: give the prefix of the segment {parent} is on"
                )));
            }
            // What the kernel would refuse once both have containers.
            let passthru =
                |d: Driver, m: Option<&str>| d == Driver::Macvlan && m == Some("passthru");
            for other in existing
                .iter()
                .filter(|o| o.parent.as_deref() == Some(parent.as_str()))
            {
                if matches!(other.driver, Driver::Macvlan | Driver::Ipvlan)
                    && other.driver != driver
                {
                    return Err(Error::Conflict(format!(
                        "parent {parent} already carries {} network {}, and one parent carries macvlan or ipvlan interfaces, not both: use another parent or --driver {}",
                        other.driver, other.name, other.driver
                    )));
                }
                if passthru(driver, mode.as_deref())
                    || passthru(other.driver, other.mode.as_deref())
                {
                    return Err(Error::Conflict(format!(
                        "parent {parent} already carries network {}, and a passthru macvlan network needs its parent to itself: use another parent, or --mode bridge for both",
                        other.name
                    )));
                }
            }
        }
        _ => {
            if opts.parent.is_some() {
                return Err(Error::invalid(format!(
                    "--parent is for macvlan and ipvlan networks, not {driver}"
                )));
            }
        }
    }
    if opts.vni.is_some() && driver != Driver::Overlay {
        return Err(Error::invalid(format!(
            "--vni is for overlay networks, not {driver}"
        )));
    }
    let overlay_prefix = subnets.first().map_or(16, |s| s.subnet.prefix());
    Ok(NetworkDef {
        name: opts.name.clone(),
        driver,
        subnets,
        bridge,
        internal: opts.internal,
        dns: opts.dns.unwrap_or(true),
        mtu: opts.mtu,
        reserved: opts.aux_addresses.clone(),
        parent: opts.parent.clone(),
        mode,
        vni: opts.vni,
        host_prefix: match driver {
            Driver::Overlay => Some(
                opts.host_prefix
                    .unwrap_or_else(|| default_host_prefix(overlay_prefix)),
            ),
            _ => None,
        },
        encrypted: false,
        labels: opts.labels.clone(),
        builtin: false,
        created: now(),
    })
}

/// Each host's share of an overlay subnet of prefix `overlay`: a /24
/// (254 containers a host), or 4 bits less than the whole when that is
/// smaller than a /20 (at least 16 hosts).
pub fn default_host_prefix(overlay: u8) -> u8 {
    24.max(overlay + 4).min(29)
}

/// Is `ip` the IPv4 broadcast address of `net`?
pub fn is_broadcast(net: &IpNetwork, ip: IpAddr) -> bool {
    match (net, ip) {
        (IpNetwork::V4(n), IpAddr::V4(a)) => n.prefix() < 31 && n.broadcast() == a,
        _ => false,
    }
}

/// Load a network definition file from an explicit path (tests, import).
pub fn load_file(path: &Path) -> Result<Option<NetworkDef>> {
    fsutil::read_json(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(name: &str) -> CreateOptions {
        CreateOptions {
            name: name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn auto_subnet_avoids_existing_and_routes() {
        let a = build_definition(&opts("a"), &[], &[]).unwrap();
        assert_eq!(a.subnets[0].subnet.to_string(), "10.89.0.0/24");
        assert_eq!(a.subnets[0].gateway.to_string(), "10.89.0.1");
        assert_eq!(a.bridge.as_deref(), Some("wh-a"));
        let routes = vec!["10.89.1.0/24".parse().unwrap()];
        let b = build_definition(&opts("b"), &[a], &routes).unwrap();
        assert_eq!(b.subnets[0].subnet.to_string(), "10.89.2.0/24");
    }

    #[test]
    fn overlapping_subnet_is_refused() {
        let mut o = opts("a");
        o.subnets = vec!["10.1.0.0/16".parse().unwrap()];
        let a = build_definition(&o, &[], &[]).unwrap();
        let mut o2 = opts("b");
        o2.subnets = vec!["10.1.2.0/24".parse().unwrap()];
        let err = build_definition(&o2, &[a], &[]).unwrap_err().to_string();
        assert!(err.contains("overlaps 10.1.0.0/16 of network a"), "{err}");
    }

    #[test]
    fn host_bits_and_bad_gateway() {
        let mut o = opts("a");
        o.subnets = vec!["10.1.2.3/24".parse().unwrap()];
        let err = build_definition(&o, &[], &[]).unwrap_err().to_string();
        assert!(err.contains("did you mean 10.1.2.0/24"), "{err}");
        o.subnets = vec!["10.1.2.0/24".parse().unwrap()];
        o.gateways = vec!["10.1.3.1".parse().unwrap()];
        let err = build_definition(&o, &[], &[]).unwrap_err().to_string();
        assert!(err.contains("not a usable address"), "{err}");
        o.gateways = vec!["10.1.2.255".parse().unwrap()];
        assert!(build_definition(&o, &[], &[]).is_err());
    }

    #[test]
    fn ipv6_gets_ula_when_asked() {
        let mut o = opts("six");
        o.ipv6 = true;
        let d = build_definition(&o, &[], &[]).unwrap();
        assert!(d.has_v6());
        let v6 = d.subnets.iter().find(|s| s.is_v6()).unwrap();
        assert_eq!(v6.subnet.prefix(), 64);
        assert!(v6.subnet.to_string().starts_with("fd"));
    }

    #[test]
    fn long_names_get_hashed_bridge() {
        let n = bridge_name_for("a-very-long-network-name");
        assert!(n.len() <= 15 && n.starts_with("wh-"), "{n}");
        assert_eq!(bridge_name_for("short"), "wh-short");
    }

    #[test]
    fn macvlan_and_ipvlan_definitions() {
        let mut o = opts("lan");
        o.driver = Some(Driver::Macvlan);
        let err = build_definition(&o, &[], &[]).unwrap_err().to_string();
        assert!(err.contains("needs --subnet"), "{err}");
        o.subnets = vec!["192.168.5.0/24".parse().unwrap()];
        let err = build_definition(&o, &[], &[]).unwrap_err().to_string();
        assert!(err.contains("needs --parent"), "{err}");
        o.parent = Some("eth0".into());
        let d = build_definition(&o, &[], &[]).unwrap();
        assert_eq!(d.mode.as_deref(), Some("bridge"), "default mode is stored");
        assert_eq!(d.macvlan_mode().unwrap(), MacvlanMode::Bridge);
        assert!(d.bridge.is_none());
        o.mode = Some("l3".into());
        let err = build_definition(&o, &[], &[]).unwrap_err().to_string();
        assert!(
            err.contains("not a macvlan mode: use bridge, private, vepa or passthru"),
            "{err}"
        );
        o.mode = Some("passthru".into());
        assert_eq!(
            build_definition(&o, &[], &[])
                .unwrap()
                .macvlan_mode()
                .unwrap(),
            MacvlanMode::Passthru
        );
        o.driver = Some(Driver::Ipvlan);
        let err = build_definition(&o, &[], &[]).unwrap_err().to_string();
        assert!(err.contains("use l2, l3 or l3s"), "{err}");
        o.mode = None;
        let d = build_definition(&o, &[], &[]).unwrap();
        assert_eq!(d.ipvlan_mode().unwrap(), IpvlanMode::L2);
        o.mode = Some("l3s".into());
        assert!(build_definition(&o, &[], &[])
            .unwrap()
            .ipvlan_mode()
            .unwrap()
            .routed());
        o.parent = Some("eth0.4095".into());
        let err = build_definition(&o, &[], &[]).unwrap_err().to_string();
        assert!(err.contains("1 to 4094"), "{err}");
        o.parent = Some("eth0.100".into());
        assert!(build_definition(&o, &[], &[]).is_ok());
        o.ipv6 = true;
        let err = build_definition(&o, &[], &[]).unwrap_err().to_string();
        assert!(err.contains("needs an IPv6 --subnet"), "{err}");
        let mut b = opts("br");
        b.mode = Some("bridge".into());
        let err = build_definition(&b, &[], &[]).unwrap_err().to_string();
        assert!(err.contains("for macvlan and ipvlan networks"), "{err}");
    }

    #[test]
    fn parents_shared_only_where_the_kernel_allows() {
        let mut m = opts("m");
        m.driver = Some(Driver::Macvlan);
        m.parent = Some("eth0".into());
        m.subnets = vec!["10.1.0.0/24".parse().unwrap()];
        let m = build_definition(&m, &[], &[]).unwrap();
        let mut o = opts("o");
        o.driver = Some(Driver::Macvlan);
        o.parent = Some("eth0".into());
        o.subnets = vec!["10.2.0.0/24".parse().unwrap()];
        assert!(
            build_definition(&o, std::slice::from_ref(&m), &[]).is_ok(),
            "two macvlan networks"
        );
        o.mode = Some("passthru".into());
        let err = build_definition(&o, std::slice::from_ref(&m), &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("passthru macvlan network needs its parent to itself"),
            "{err}"
        );
        o.mode = None;
        o.driver = Some(Driver::Ipvlan);
        let err = build_definition(&o, std::slice::from_ref(&m), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("not both"), "{err}");
        o.parent = Some("eth1".into());
        assert!(build_definition(&o, &[m], &[]).is_ok(), "another parent");
    }

    #[test]
    fn vlan_parents() {
        assert_eq!(vlan_parent("eth0.100"), Some(("eth0", 100)));
        assert_eq!(vlan_parent("bond0.2.7"), Some(("bond0.2", 7)));
        assert_eq!(vlan_parent("eth0"), None);
        assert_eq!(vlan_parent("br.lan"), None);
        assert_eq!(vlan_parent(".5"), None);
        assert!(check_parent("eth0.0").is_err());
        assert!(check_parent("a/b").is_err());
        assert!(check_parent("enp3s0f1.4094").is_ok());
    }

    #[test]
    fn nth_host_bounds() {
        let n: IpNetwork = "10.0.0.0/30".parse().unwrap();
        assert_eq!(nth_host(&n, 3).unwrap().to_string(), "10.0.0.3");
        assert!(nth_host(&n, 4).is_none());
        let n6: IpNetwork = "fd00::/126".parse().unwrap();
        assert_eq!(nth_host(&n6, 2).unwrap().to_string(), "fd00::2");
    }
}
