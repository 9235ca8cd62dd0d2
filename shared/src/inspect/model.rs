//! The snapshot model: what `wiretop` shows and `wiretop --json` prints.
//!
//! A [`Snapshot`] is one reading of every network namespace: raw counters
//! as the kernel reports them. [`Snapshot::apply_rates`] fills in the
//! per-second rates against an earlier snapshot, and [`Snapshot::finish`]
//! the per-namespace and host-wide totals, counting a veth pair whose two
//! ends it can see once.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

/// The counters of an earlier snapshot, which rates are taken against:
/// by (namespace inode, link index), with the link's name hashed (a link
/// re-created under the same index with another name starts afresh).
#[derive(Debug, Clone, Default)]
pub struct RateBase {
    taken_at: f64,
    links: HashMap<(u64, u32), (u64, Counters)>,
    /// WireGuard peers' (rx, tx) bytes by (device, public key).
    wireguard: HashMap<(String, String), (u64, u64)>,
}

fn name_hash(name: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    h.finish()
}

/// One reading of every network namespace on the host.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Seconds since the Unix epoch when the reading was taken.
    pub taken_at: f64,
    /// Seconds since the previous snapshot the rates were computed
    /// against (absent in the first one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<f64>,
    pub namespaces: Vec<Namespace>,
    /// Every link of every namespace summed, each veth pair once.
    #[serde(default)]
    pub totals: Totals,
    /// The overlay networks this host has joined, as wirehook last
    /// programmed them (`/run/wirehook/overlay`): which VXLAN device, this
    /// host's share, the remote hosts it reaches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overlays: Vec<crate::overlay::LocalState>,
    /// The WireGuard devices of the encrypted ones among them, as the
    /// kernel has them at this reading: each peer's handshake and bytes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wireguard: Vec<WireguardDevice>,
}

/// An encrypted overlay network's WireGuard device, as the kernel has it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WireguardDevice {
    /// The overlay network.
    pub network: String,
    /// The device (`wg-NET`).
    pub device: String,
    /// Why it could not be read (not there, no WireGuard in the kernel);
    /// then it has no peers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default)]
    pub listen_port: u16,
    #[serde(default)]
    pub peers: Vec<WireguardPeer>,
}

/// One peer of a [`WireguardDevice`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WireguardPeer {
    /// The remote host whose public key this is, from the network's
    /// peers (absent: a key wirehook did not program, or not any more).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Base64, as `wg` prints it.
    pub public_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Seconds since the epoch of the last handshake; 0: none yet.
    pub last_handshake: u64,
    /// Seconds from the last handshake to the reading (absent: none yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handshake_age: Option<u64>,
    /// Older than WireGuard's reject-after time (180 s), or none although
    /// traffic was sent to the peer.
    #[serde(default)]
    pub stale: bool,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    /// Bytes per second since the previous reading (absent in the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<PeerRate>,
}

/// Bytes per second to and from a WireGuard peer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PeerRate {
    pub rx_bytes: f64,
    pub tx_bytes: f64,
}

impl WireguardDevice {
    /// The device of overlay network `st` from the kernel's state (or why
    /// it could not be read), at `now` (seconds since the epoch): each
    /// peer named by the host the network's peers give its key.
    pub fn new(
        st: &crate::overlay::LocalState,
        dev: std::result::Result<&crate::wireguard::DeviceState, String>,
        now: u64,
    ) -> WireguardDevice {
        let mut out = WireguardDevice {
            network: st.network.clone(),
            device: st.wireguard.clone(),
            ..Default::default()
        };
        let dev = match dev {
            Ok(d) => d,
            Err(e) => {
                out.error = Some(e);
                return out;
            }
        };
        out.listen_port = dev.listen_port;
        for p in &dev.peers {
            let key = crate::wireguard::encode_key(&p.public_key);
            let host = st
                .peers
                .iter()
                .find(|h| h.wg_key.as_deref() == Some(key.as_str()))
                .map(|h| h.host.clone());
            out.peers.push(WireguardPeer {
                host,
                public_key: key,
                endpoint: p.endpoint.map(|e| e.to_string()),
                last_handshake: p.last_handshake,
                handshake_age: (p.last_handshake != 0)
                    .then(|| now.saturating_sub(p.last_handshake)),
                stale: crate::wireguard::handshake_stale(p.last_handshake, now, p.tx_bytes),
                rx_bytes: p.rx_bytes,
                tx_bytes: p.tx_bytes,
                rate: None,
            });
        }
        // In the order of the network's peers, unknown keys last.
        out.peers.sort_by_key(|p| {
            p.host
                .as_ref()
                .and_then(|h| st.peers.iter().position(|x| &x.host == h))
                .unwrap_or(usize::MAX)
        });
        out
    }
}

impl WireguardPeer {
    /// `handshake 12 s ago` / `no handshake yet`, as `wirehook ps` says it.
    pub fn handshake_text(&self) -> String {
        crate::wireguard::handshake_text(
            self.last_handshake,
            self.last_handshake + self.handshake_age.unwrap_or(0),
        )
    }
}

/// How a namespace got a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NameSource {
    /// The host's own namespace (that of pid 1).
    Host,
    /// A wirehook container record (`/run/wirehook/containers`).
    Wirehook,
    /// runc's state directory (`/run/runc/ID/state.json`).
    Runc,
    /// crun's state directory (`/run/crun/ID/status`).
    Crun,
    /// `ip netns` (`/run/netns/NAME`, also podman's `netns-*`).
    Netns,
    /// Some other nsfs bind mount (the mount point).
    Mount,
}

impl NameSource {
    pub fn as_str(&self) -> &'static str {
        match self {
            NameSource::Host => "host",
            NameSource::Wirehook => "wirehook",
            NameSource::Runc => "runc",
            NameSource::Crun => "crun",
            NameSource::Netns => "netns",
            NameSource::Mount => "mount",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NsName {
    pub source: NameSource,
    pub name: String,
}

/// The container wirehook wired into this namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    /// bridge, none, container, ... (wirehook's mode).
    pub mode: String,
    pub networks: Vec<String>,
    /// Containers that joined this one's namespace (`container:` mode).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sharers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    pub pid: i32,
    /// The kernel's short name (`/proc/PID/comm`).
    pub comm: String,
    /// The command line, arguments joined by spaces, cut at 200
    /// characters (absent for kernel threads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<String>,
}

/// Kernel counters of a link (IFLA_STATS64), or a sum of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
    pub rx_dropped: u64,
    pub tx_dropped: u64,
}

impl Counters {
    pub fn add(&mut self, o: &Counters) {
        self.rx_bytes += o.rx_bytes;
        self.tx_bytes += o.tx_bytes;
        self.rx_packets += o.rx_packets;
        self.tx_packets += o.tx_packets;
        self.rx_errors += o.rx_errors;
        self.tx_errors += o.tx_errors;
        self.rx_dropped += o.rx_dropped;
        self.tx_dropped += o.tx_dropped;
    }
}

/// Per-second rates between two readings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Rate {
    pub rx_bytes: f64,
    pub tx_bytes: f64,
    pub rx_packets: f64,
    pub tx_packets: f64,
}

impl Rate {
    /// Rate from `old` to `new` over `secs`. A counter that went backwards
    /// (the link was re-created under the same index) counts from zero.
    pub fn between(old: &Counters, new: &Counters, secs: f64) -> Rate {
        if secs <= 0.0 {
            return Rate::default();
        }
        let d = |a: u64, b: u64| {
            if b >= a {
                (b - a) as f64 / secs
            } else {
                b as f64 / secs
            }
        };
        Rate {
            rx_bytes: d(old.rx_bytes, new.rx_bytes),
            tx_bytes: d(old.tx_bytes, new.tx_bytes),
            rx_packets: d(old.rx_packets, new.rx_packets),
            tx_packets: d(old.tx_packets, new.tx_packets),
        }
    }

    pub fn add(&mut self, o: &Rate) {
        self.rx_bytes += o.rx_bytes;
        self.tx_bytes += o.tx_bytes;
        self.rx_packets += o.rx_packets;
        self.tx_packets += o.tx_packets;
    }

    /// Bytes per second both ways.
    pub fn total_bytes(&self) -> f64 {
        self.rx_bytes + self.tx_bytes
    }
}

/// Sum of counters and rates over a set of links.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    pub counters: Counters,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<Rate>,
}

/// The other end of a veth pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRef {
    /// Inode of the namespace the peer lives in; `None` when that
    /// namespace is not one wiretop can see.
    pub netns_inode: Option<u64>,
    /// The peer's interface index in its namespace.
    pub ifindex: u32,
    /// The peer's name, when its namespace was read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ifname: Option<String>,
}

/// One network interface.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// veth, bridge, macvlan, ipvlan, vxlan, loopback, device (no kind:
    /// a physical or virtio NIC), or the kernel's kind string.
    pub kind: String,
    /// Operational state: up, down, unknown, lowerlayerdown, ...
    pub state: String,
    /// Administratively up (IFF_UP).
    pub admin_up: bool,
    pub mtu: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Name of the bridge (or bond) this link is a port of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master: Option<String>,
    /// Lower device of a macvlan, ipvlan or vxlan, in the same namespace
    /// (or, with `parent_netns_inode`, in another one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_netns_inode: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<PeerRef>,
    pub stats: Counters,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<Rate>,
    /// Raw IFLA_LINK and IFLA_LINK_NETNSID, kept for peer resolution.
    #[serde(skip)]
    pub link_index: Option<u32>,
    #[serde(skip)]
    pub link_netnsid: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    pub ifindex: u32,
    pub ifname: String,
    /// Address with prefix length, e.g. `10.88.0.2/16`.
    pub address: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Destination with prefix length, `default` for 0/0 and ::/0.
    pub destination: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev: Option<String>,
}

/// One network namespace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Namespace {
    /// nsfs inode: the namespace's identity (`ls -iL /proc/PID/ns/net`).
    pub inode: u64,
    /// The host's namespace (that of pid 1, or of the kernel threads
    /// when pid 1's may not be read).
    pub host: bool,
    pub names: Vec<NsName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerInfo>,
    /// Up to [`MAX_PROCESSES`] processes living in it, lowest pid first.
    pub processes: Vec<Process>,
    /// How many processes live in it.
    pub process_count: usize,
    pub links: Vec<Link>,
    pub addresses: Vec<Address>,
    /// Routes of the main table.
    pub routes: Vec<Route>,
    /// Why the namespace could not be read (then links etc. are empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Sum of its links, a veth pair with both ends inside once.
    #[serde(default)]
    pub totals: Totals,
}

/// Processes listed per namespace at most.
pub const MAX_PROCESSES: usize = 16;

impl Namespace {
    /// The name to show: container name, else `ip netns` name, else a
    /// runtime's container id, else `host`, else the first process.
    pub fn display_name(&self) -> String {
        if let Some(c) = &self.container {
            return c.name.clone();
        }
        for src in [
            NameSource::Host,
            NameSource::Wirehook,
            NameSource::Netns,
            NameSource::Runc,
            NameSource::Crun,
            NameSource::Mount,
        ] {
            if let Some(n) = self.names.iter().find(|n| n.source == src) {
                return n.name.clone();
            }
        }
        if let Some(p) = self.processes.first() {
            return format!("{}[{}]", p.comm, p.pid);
        }
        format!("ns:{}", self.inode)
    }

    /// The mode column: wirehook's mode, else where the name came from.
    pub fn mode(&self) -> &str {
        if let Some(c) = &self.container {
            return &c.mode;
        }
        if self.host {
            return "host";
        }
        self.names
            .iter()
            .min_by_key(|n| n.source)
            .map(|n| n.source.as_str())
            .unwrap_or("process")
    }

    pub fn link(&self, index: u32) -> Option<&Link> {
        self.links.iter().find(|l| l.index == index)
    }
}

impl Snapshot {
    pub fn namespace(&self, inode: u64) -> Option<&Namespace> {
        self.namespaces.iter().find(|n| n.inode == inode)
    }

    /// Fill in link, namespace and host-wide rates against `prev`.
    /// Links new since `prev` get no rate yet.
    pub fn apply_rates(&mut self, prev: &Snapshot) {
        self.apply_rates_from(&prev.rate_base());
    }

    /// What a later snapshot's rates are taken against: this one's
    /// counters, without the rest (keeping that instead of a whole
    /// snapshot spares a copy of every name, address and route per tick).
    pub fn rate_base(&self) -> RateBase {
        let mut links = HashMap::with_capacity(self.namespaces.iter().map(|n| n.links.len()).sum());
        for ns in &self.namespaces {
            for l in &ns.links {
                links.insert((ns.inode, l.index), (name_hash(&l.name), l.stats));
            }
        }
        let wireguard = self
            .wireguard
            .iter()
            .flat_map(|d| {
                d.peers.iter().map(|p| {
                    (
                        (d.device.clone(), p.public_key.clone()),
                        (p.rx_bytes, p.tx_bytes),
                    )
                })
            })
            .collect();
        RateBase {
            taken_at: self.taken_at,
            links,
            wireguard,
        }
    }

    /// As [`Snapshot::apply_rates`], against a [`RateBase`].
    pub fn apply_rates_from(&mut self, base: &RateBase) {
        let secs = self.taken_at - base.taken_at;
        if secs <= 0.0 {
            self.finish();
            return;
        }
        self.interval = Some(secs);
        for ns in &mut self.namespaces {
            for l in &mut ns.links {
                l.rate = base
                    .links
                    .get(&(ns.inode, l.index))
                    .filter(|(h, _)| *h == name_hash(&l.name))
                    .map(|(_, o)| Rate::between(o, &l.stats, secs));
            }
        }
        for d in &mut self.wireguard {
            for p in &mut d.peers {
                p.rate = base
                    .wireguard
                    .get(&(d.device.clone(), p.public_key.clone()))
                    .map(|(rx, tx)| {
                        let old = Counters {
                            rx_bytes: *rx,
                            tx_bytes: *tx,
                            ..Default::default()
                        };
                        let new = Counters {
                            rx_bytes: p.rx_bytes,
                            tx_bytes: p.tx_bytes,
                            ..Default::default()
                        };
                        let r = Rate::between(&old, &new, secs);
                        PeerRate {
                            rx_bytes: r.rx_bytes,
                            tx_bytes: r.tx_bytes,
                        }
                    });
            }
        }
        self.finish();
    }

    /// Compute per-namespace and host-wide totals. Within a namespace a
    /// veth pair with both ends inside counts once; host-wide every veth
    /// pair counts once (the end with the lower (inode, index) is kept).
    pub fn finish(&mut self) {
        let mut host = Totals::default();
        let mut host_rate: Option<Rate> = None;
        let visible: HashSet<(u64, u32)> = self
            .namespaces
            .iter()
            .flat_map(|ns| ns.links.iter().map(move |l| (ns.inode, l.index)))
            .collect();
        for ns in &mut self.namespaces {
            let mut t = Totals::default();
            let mut rate: Option<Rate> = None;
            for l in &ns.links {
                let peer_key = l
                    .peer
                    .as_ref()
                    .and_then(|p| p.netns_inode.map(|i| (i, p.ifindex)));
                let dup_local = peer_key.is_some_and(|(i, idx)| i == ns.inode && idx < l.index);
                if !dup_local {
                    t.counters.add(&l.stats);
                    if let Some(r) = &l.rate {
                        rate.get_or_insert_with(Rate::default).add(r);
                    }
                }
                let dup_global =
                    peer_key.is_some_and(|k| k < (ns.inode, l.index) && visible.contains(&k));
                if !dup_global {
                    host.counters.add(&l.stats);
                    if let Some(r) = &l.rate {
                        host_rate.get_or_insert_with(Rate::default).add(r);
                    }
                }
            }
            t.rate = rate;
            ns.totals = t;
        }
        host.rate = host_rate;
        self.totals = host;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(index: u32, name: &str, peer: Option<(u64, u32)>, rx: u64, tx: u64) -> Link {
        Link {
            index,
            name: name.into(),
            kind: "veth".into(),
            state: "up".into(),
            admin_up: true,
            mtu: 1500,
            mac: None,
            master: None,
            parent: None,
            parent_netns_inode: None,
            peer: peer.map(|(i, idx)| PeerRef {
                netns_inode: Some(i),
                ifindex: idx,
                ifname: None,
            }),
            stats: Counters {
                rx_bytes: rx,
                tx_bytes: tx,
                ..Default::default()
            },
            rate: None,
            link_index: None,
            link_netnsid: None,
        }
    }

    fn ns(inode: u64, links: Vec<Link>) -> Namespace {
        Namespace {
            inode,
            host: false,
            names: vec![],
            container: None,
            processes: vec![],
            process_count: 0,
            links,
            addresses: vec![],
            routes: vec![],
            error: None,
            totals: Totals::default(),
        }
    }

    #[test]
    fn veth_pair_counts_once() {
        // Pair between namespaces 1 and 2, plus a pair inside namespace 3.
        let mut s = Snapshot {
            taken_at: 10.0,
            namespaces: vec![
                ns(1, vec![link(5, "a", Some((2, 7)), 100, 200)]),
                ns(2, vec![link(7, "b", Some((1, 5)), 200, 100)]),
                ns(
                    3,
                    vec![
                        link(2, "x", Some((3, 3)), 50, 60),
                        link(3, "y", Some((3, 2)), 60, 50),
                    ],
                ),
            ],
            ..Default::default()
        };
        s.finish();
        assert_eq!(s.namespaces[0].totals.counters.rx_bytes, 100);
        assert_eq!(s.namespaces[1].totals.counters.rx_bytes, 200);
        assert_eq!(s.namespaces[2].totals.counters.rx_bytes, 50);
        assert_eq!(s.totals.counters.rx_bytes, 150);
        assert_eq!(s.totals.counters.tx_bytes, 260);
    }

    #[test]
    fn rates_between_snapshots() {
        let prev = Snapshot {
            taken_at: 10.0,
            namespaces: vec![ns(1, vec![link(5, "a", None, 1000, 0)])],
            ..Default::default()
        };
        let mut cur = Snapshot {
            taken_at: 12.0,
            namespaces: vec![ns(
                1,
                vec![link(5, "a", None, 3000, 500), link(6, "new", None, 9, 9)],
            )],
            ..Default::default()
        };
        cur.apply_rates(&prev);
        let r = cur.namespaces[0].links[0].rate.unwrap();
        assert_eq!(r.rx_bytes, 1000.0);
        assert_eq!(r.tx_bytes, 250.0);
        assert!(cur.namespaces[0].links[1].rate.is_none());
        assert_eq!(cur.totals.rate.unwrap().rx_bytes, 1000.0);
        assert_eq!(cur.interval, Some(2.0));
    }

    #[test]
    fn counter_reset_counts_from_zero() {
        let a = Counters {
            rx_bytes: 500,
            ..Default::default()
        };
        let b = Counters {
            rx_bytes: 100,
            ..Default::default()
        };
        assert_eq!(Rate::between(&a, &b, 1.0).rx_bytes, 100.0);
    }
}
