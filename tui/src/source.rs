//! Where snapshots come from: the one seam between the view and the host.

use std::path::PathBuf;

use wirehook_shared::inspect::model::Address;
use wirehook_shared::inspect::{
    ContainerInfo, Counters, Discovery, Link, NameSource, Namespace, NsName, PeerRef, Process,
    RateBase, Reader, Route, Snapshot, StateDirs, WireguardDevice,
};
use wirehook_shared::overlay::LocalState;
use wirehook_shared::paths::Paths;

/// Something that produces snapshots, one per call (raw counters; the
/// caller applies rates, see [`rated`]).
pub trait Source: Send {
    fn sample(&mut self) -> Snapshot;
}

/// Take a sample and apply rates against the previous one's counters,
/// which it replaces.
pub fn rated(source: &mut dyn Source, prev: &mut Option<RateBase>) -> Snapshot {
    let mut s = source.sample();
    match prev {
        Some(p) => s.apply_rates_from(p),
        None => s.finish(),
    }
    *prev = Some(s.rate_base());
    s
}

/// The real host: discovery plus netlink reading.
pub struct OsSource {
    discovery: Discovery,
    reader: Reader,
}

impl OsSource {
    pub fn new(root: Option<PathBuf>) -> OsSource {
        OsSource {
            discovery: Discovery::with_dirs(Paths::resolve(root.as_deref()), StateDirs::default()),
            reader: Reader::new(),
        }
    }

    pub fn reader_stats(&self) -> wirehook_shared::inspect::ReadStats {
        self.reader.stats
    }
}

impl Source for OsSource {
    fn sample(&mut self) -> Snapshot {
        let found = self.discovery.discover();
        let mut snap = self.reader.read_owned(found);
        snap.overlays = self.discovery.overlays();
        snap.wireguard = wireguard_devices(&snap.overlays, snap.taken_at as u64);
        snap
    }
}

/// The WireGuard device of each encrypted overlay network, read from the
/// kernel in this process's namespace (where wirehook made it): nothing
/// at all without encrypted networks, so a kernel without WireGuard is
/// never asked.
fn wireguard_devices(overlays: &[LocalState], now: u64) -> Vec<WireguardDevice> {
    overlays
        .iter()
        .filter(|st| !st.wireguard.is_empty())
        .map(|st| {
            let dev = wirehook_shared::wireguard::device_state(&st.wireguard);
            WireguardDevice::new(st, dev.as_ref().map_err(|e| e.to_string()), now)
        })
        .collect()
}

/// Fixed frames, handed out in order; the last one repeats.
pub struct FixedSource {
    frames: Vec<Snapshot>,
    next: usize,
}

impl FixedSource {
    pub fn new(frames: Vec<Snapshot>) -> FixedSource {
        FixedSource { frames, next: 0 }
    }
}

impl Source for FixedSource {
    fn sample(&mut self) -> Snapshot {
        let i = self.next.min(self.frames.len().saturating_sub(1));
        self.next += 1;
        self.frames.get(i).cloned().unwrap_or_default()
    }
}

/// The demo: a made-up host with containers in every mode, traffic that
/// changes from tick to tick, deterministic (`--demo`, and the tests).
pub struct DemoSource {
    tick: u64,
    interval: f64,
}

impl DemoSource {
    pub fn new(interval: f64) -> DemoSource {
        DemoSource { tick: 0, interval }
    }
}

impl Source for DemoSource {
    fn sample(&mut self) -> Snapshot {
        let s = demo_snapshot(self.tick, self.interval);
        self.tick += 1;
        s
    }
}

const HOST: u64 = 4026531840;

fn counters(tick: u64, rx_per_tick: u64, tx_per_tick: u64, base: u64) -> Counters {
    // A little wave so sparklines move.
    let wave = |t: u64| (t % 7) * 3 + (t % 3) * 5;
    let acc = |per: u64| {
        (0..=tick)
            .map(|t| per * (10 + wave(t + per % 5)) / 10)
            .sum::<u64>()
            + base
    };
    let rx = acc(rx_per_tick);
    let tx = acc(tx_per_tick);
    Counters {
        rx_bytes: rx,
        tx_bytes: tx,
        rx_packets: rx / 800,
        tx_packets: tx / 800,
        ..Default::default()
    }
}

#[allow(clippy::too_many_arguments)]
fn link(
    index: u32,
    name: &str,
    kind: &str,
    state: &str,
    master: Option<&str>,
    peer: Option<(u64, u32, &str)>,
    stats: Counters,
    mac: u8,
) -> Link {
    Link {
        index,
        name: name.into(),
        kind: kind.into(),
        state: state.into(),
        admin_up: state != "down",
        mtu: if kind == "loopback" {
            65536
        } else if kind == "vxlan" {
            1450
        } else {
            1500
        },
        mac: (kind != "loopback").then(|| format!("02:42:ac:11:00:{mac:02x}")),
        master: master.map(String::from),
        parent: None,
        parent_netns_inode: None,
        peer: peer.map(|(i, idx, n)| PeerRef {
            netns_inode: Some(i),
            ifindex: idx,
            ifname: Some(n.into()),
        }),
        stats,
        rate: None,
        link_index: None,
        link_netnsid: None,
    }
}

fn lo(tick: u64) -> Link {
    link(
        1,
        "lo",
        "loopback",
        "unknown",
        None,
        None,
        counters(tick, 20, 20, 0),
        0,
    )
}

fn ns(
    inode: u64,
    names: Vec<(NameSource, &str)>,
    container: Option<(&str, &str, &str)>,
    procs: &[(i32, &str)],
) -> Namespace {
    Namespace {
        inode,
        host: inode == HOST,
        names: names
            .into_iter()
            .map(|(source, n)| NsName {
                source,
                name: n.into(),
            })
            .collect(),
        container: container.map(|(id, name, mode)| ContainerInfo {
            id: id.into(),
            name: name.into(),
            mode: mode.into(),
            networks: if mode == "none" {
                vec![]
            } else {
                vec![if mode == "macvlan" {
                    "lan".into()
                } else {
                    "bridge".into()
                }]
            },
            sharers: vec![],
        }),
        processes: procs
            .iter()
            .map(|(p, c)| Process {
                pid: *p,
                comm: (*c).into(),
                cmd: demo_cmd(c),
            })
            .collect(),
        process_count: procs.len(),
        links: vec![],
        addresses: vec![],
        routes: vec![],
        error: None,
        totals: Default::default(),
    }
}

/// Command lines of the demo's processes.
fn demo_cmd(comm: &str) -> Option<String> {
    Some(
        match comm {
            "systemd" => "/sbin/init",
            "sshd" => "sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups",
            "containerd" => "/usr/bin/containerd",
            "nginx" => "nginx: master process nginx -g daemon off;",
            "postgres" => "postgres -D /var/lib/postgresql/data",
            "redis-server" => "redis-server *:6379",
            "cupsd" => "/usr/sbin/cupsd -f",
            "python3" => "python3 /app/batch.py --queue nightly",
            _ => return None,
        }
        .into(),
    )
}

fn addr(ifindex: u32, ifname: &str, a: &str) -> Address {
    Address {
        ifindex,
        ifname: ifname.into(),
        address: a.into(),
    }
}

fn route(d: &str, gw: Option<&str>, dev: &str) -> Route {
    Route {
        destination: d.into(),
        gateway: gw.map(String::from),
        dev: Some(dev.into()),
    }
}

/// The demo host at `tick` (taken_at = 1_700_000_000 + tick * interval).
/// A demo container: (inode, name, id, host veth, host index, rx/tick,
/// tx/tick, address, bridge).
type DemoCtr = (
    u64,
    &'static str,
    &'static str,
    &'static str,
    u32,
    u64,
    u64,
    &'static str,
    &'static str,
);

/// The demo's WireGuard public key of overlay peer `n` (made up).
fn demo_wg_key(n: u8) -> [u8; 32] {
    [n * 17; 32]
}

/// The demo host's overlay network on `vxlan42`, encrypted over `wg-mesh`:
/// two remote hosts.
fn demo_overlay() -> LocalState {
    use wirehook_shared::overlay::Peer;
    let peer = |host: &str, n: u8| Peer {
        host: host.into(),
        subnet: format!("10.200.{n}.0/24").parse().expect("valid"),
        underlay: std::net::Ipv4Addr::new(192, 0, 2, 10 + n),
        vtep_mac: format!("02:00:00:00:00:{n:02x}"),
        wg_key: Some(wirehook_shared::wireguard::encode_key(&demo_wg_key(n))),
    };
    LocalState {
        network: "mesh".into(),
        host: "node-1".into(),
        subnet: Some("10.200.1.0/24".parse().expect("valid")),
        bridge: "wo-mesh".into(),
        vxlan: "vxlan42".into(),
        vxlan_index: 7,
        vni: 42,
        wireguard: "wg-mesh".into(),
        store: "etcd http://192.0.2.1:2379".into(),
        peers: vec![peer("node-2", 2), peer("node-3", 3)],
        revision: 12,
        updated: 1_700_000_000,
    }
}

/// `wg-mesh` as the kernel would have it at `now`, tick `t`: node-2
/// handshook recently and carries traffic; node-3 never answered (its
/// handshake initiations go out unanswered: stale).
fn demo_wireguard(st: &LocalState, now: u64, t: u64) -> WireguardDevice {
    use wirehook_shared::wireguard::{DeviceState, PeerState};
    let dev = DeviceState {
        listen_port: 51862,
        public_key: Some(demo_wg_key(1)),
        peers: vec![
            PeerState {
                public_key: demo_wg_key(2),
                endpoint: Some("192.0.2.12:51862".parse().expect("valid")),
                allowed: vec![("10.200.2.254".parse().expect("valid"), 32)],
                last_handshake: now - 12 - t % 30,
                rx_bytes: 9_000 * (t + 1) + 3_000_000,
                tx_bytes: 12_000 * (t + 1) + 2_000_000,
            },
            PeerState {
                public_key: demo_wg_key(3),
                endpoint: Some("192.0.2.13:51862".parse().expect("valid")),
                allowed: vec![("10.200.3.254".parse().expect("valid"), 32)],
                last_handshake: 0,
                rx_bytes: 0,
                tx_bytes: 148 * (t / 5 + 1),
            },
        ],
    };
    WireguardDevice::new(st, Ok(&dev), now)
}

pub fn demo_snapshot(tick: u64, interval: f64) -> Snapshot {
    let t = tick;
    // (inode, name, id, host veth, host index, rx/tick, tx/tick, address, bridge)
    let ctrs: [DemoCtr; 4] = [
        (
            4026532301,
            "web-1",
            "a1b2c3d4e5f6",
            "whv3f2a1c0",
            10,
            180_000,
            2_400_000,
            "10.88.0.2/16",
            "wirehook0",
        ),
        (
            4026532305,
            "web-2",
            "b7c8d9e0f1a2",
            "whv81d0e2b4",
            11,
            150_000,
            1_900_000,
            "10.88.0.3/16",
            "wirehook0",
        ),
        (
            4026532309,
            "db",
            "c3d4e5f6a7b8",
            "whv5c7d9e11",
            12,
            900_000,
            120_000,
            "10.20.0.2/24",
            "wh-web",
        ),
        (
            4026532313,
            "cache",
            "d9e0f1a2b3c4",
            "whv0a9b8c7d",
            13,
            40_000,
            35_000,
            "10.20.0.3/24",
            "wh-web",
        ),
    ];
    let mut host = ns(
        HOST,
        vec![(NameSource::Host, "host")],
        None,
        &[
            (1, "systemd"),
            (2, "kthreadd"), // a kernel thread: no command line
            (412, "sshd"),
            (977, "containerd"),
        ],
    );
    host.process_count = 143;
    host.links = vec![
        lo(t),
        link(
            2,
            "eth0",
            "device",
            "up",
            None,
            None,
            counters(t, 3_300_000, 1_300_000, 9_000_000_000),
            0x02,
        ),
        link(
            5,
            "wirehook0",
            "bridge",
            "up",
            None,
            None,
            counters(t, 330_000, 4_300_000, 0),
            0x05,
        ),
        link(
            6,
            "wh-web",
            "bridge",
            "up",
            None,
            None,
            counters(t, 940_000, 155_000, 0),
            0x06,
        ),
        {
            let mut v = link(
                7,
                "vxlan42",
                "vxlan",
                "unknown",
                None,
                None,
                counters(t, 12_000, 9_000, 0),
                0x07,
            );
            v.parent = Some("eth0".into());
            v.mtu = 1390;
            v
        },
        {
            let mut w = link(
                8,
                "wg-mesh",
                "wireguard",
                "unknown",
                None,
                None,
                counters(t, 14_000, 11_000, 0),
                0x08,
            );
            w.mac = None;
            w.mtu = 1440;
            w
        },
    ];
    host.addresses = vec![
        addr(1, "lo", "127.0.0.1/8"),
        addr(2, "eth0", "192.0.2.10/24"),
        addr(5, "wirehook0", "10.88.0.1/16"),
        addr(6, "wh-web", "10.20.0.1/24"),
    ];
    host.routes = vec![
        route("default", Some("192.0.2.1"), "eth0"),
        route("10.88.0.0/16", None, "wirehook0"),
        route("10.20.0.0/24", None, "wh-web"),
    ];
    let mut out = vec![];
    for (i, (ino, name, id, hv, hidx, rx, tx, a, br)) in ctrs.iter().enumerate() {
        let c = counters(t, *rx, *tx, 0);
        let mirrored = Counters {
            rx_bytes: c.tx_bytes,
            tx_bytes: c.rx_bytes,
            rx_packets: c.tx_packets,
            tx_packets: c.rx_packets,
            ..Default::default()
        };
        host.links.push(link(
            *hidx,
            hv,
            "veth",
            "up",
            Some(br),
            Some((*ino, 2, "eth0")),
            mirrored,
            0x10 + i as u8,
        ));
        let mut n = ns(
            *ino,
            vec![(NameSource::Wirehook, name), (NameSource::Runc, id)],
            Some((id, name, "bridge")),
            &[(
                2000 + i as i32 * 10,
                if name.starts_with("web") {
                    "nginx"
                } else if *name == "db" {
                    "postgres"
                } else {
                    "redis-server"
                },
            )],
        );
        n.links = vec![
            lo(t),
            link(
                2,
                "eth0",
                "veth",
                "up",
                None,
                Some((HOST, *hidx, hv)),
                c,
                0x20 + i as u8,
            ),
        ];
        n.addresses = vec![addr(1, "lo", "127.0.0.1/8"), addr(2, "eth0", a)];
        let gw = if br == &"wirehook0" {
            "10.88.0.1"
        } else {
            "10.20.0.1"
        };
        n.routes = vec![route("default", Some(gw), "eth0")];
        if *name == "db" {
            n.links[1].stats.rx_dropped = 3;
        }
        out.push(n);
    }
    // A macvlan container whose parent is the host's eth0.
    let mut mv = ns(
        4026532317,
        vec![
            (NameSource::Wirehook, "lan-printer"),
            (NameSource::Crun, "e5f6a7b8c9d0"),
        ],
        Some(("e5f6a7b8c9d0", "lan-printer", "macvlan")),
        &[(2100, "cupsd")],
    );
    let mut m = link(
        2,
        "eth0",
        "macvlan",
        "up",
        None,
        None,
        counters(t, 8_000, 2_000, 0),
        0x30,
    );
    m.parent = Some("eth0".into());
    m.parent_netns_inode = Some(HOST);
    mv.links = vec![lo(t), m];
    mv.addresses = vec![addr(2, "eth0", "192.0.2.50/24")];
    mv.routes = vec![route("192.0.2.0/24", None, "eth0")];
    out.push(mv);
    // none mode: loopback only.
    let mut none = ns(
        4026532321,
        vec![(NameSource::Wirehook, "batch")],
        Some(("f1a2b3c4d5e6", "batch", "none")),
        &[(2200, "python3")],
    );
    none.links = vec![lo(t)];
    none.addresses = vec![addr(1, "lo", "127.0.0.1/8")];
    out.push(none);
    // An `ip netns` namespace with a veth whose other end is down.
    let mut blue = ns(4026532325, vec![(NameSource::Netns, "blue")], None, &[]);
    blue.links = vec![
        link(
            1,
            "lo",
            "loopback",
            "down",
            None,
            None,
            Counters::default(),
            0,
        ),
        link(
            3,
            "veth-b",
            "veth",
            "lowerlayerdown",
            None,
            None,
            Counters::default(),
            0x40,
        ),
    ];
    blue.links[1].peer = Some(PeerRef {
        netns_inode: None,
        ifindex: 9,
        ifname: None,
    });
    out.push(blue);
    // A namespace wiretop may not enter.
    let mut denied = ns(
        4026532329,
        vec![(NameSource::Mount, "/var/lib/other/ns")],
        None,
        &[],
    );
    denied.error =
        Some("may not enter it (EPERM): wiretop needs CAP_SYS_ADMIN, run it as root".into());
    out.push(denied);
    let mut all = vec![host];
    all.extend(out);
    let overlay = demo_overlay();
    let taken_at = 1_700_000_000.0 + tick as f64 * interval;
    let wg = demo_wireguard(&overlay, taken_at as u64, t);
    let mut s = Snapshot {
        taken_at,
        interval: None,
        namespaces: all,
        totals: Default::default(),
        overlays: vec![overlay],
        wireguard: vec![wg],
    };
    s.finish();
    s
}
