//! The floor (`--floor`): what the machine itself needs for one container's
//! network, against which wirehook's time is judged.
//!
//! Per container, the floor is the sum of two timed parts:
//!
//! * **exec**: spawn-to-exit of a static no-op binary, measured exactly as
//!   every contender is (`timed`: the OCI state JSON written to its stdin,
//!   stdout and stderr drained). The binary is `int main(void) { return 0; }`
//!   built by the bench with `cc -static -O2` (glibc's static start-up, no
//!   dynamic loader), so this is what any hook process costs before it does
//!   anything;
//! * **requests**: the kernel requests the hook makes for that container,
//!   issued from this one warm process through the same library calls the
//!   hook uses (`wirehook_shared::netlink`, `firewall`, `netns`,
//!   `announce`), with the network's host side (bridge with the gateway
//!   address, forwarding, the nftables table and the network's chains; the
//!   LAN parent) made beforehand, untimed, as it is for every later
//!   container of a network. Bridge: open the container's namespace, one
//!   veth request (container end straight into the namespace, host end on
//!   the bridge), a netlink socket inside, loopback up, look `eth0` up,
//!   link settings (no IPv6, `arp_notify`), the address, up, the default
//!   route; on the host the neighbour entry refreshed, one gratuitous ARP
//!   out of the bridge (on a packet socket opened once: closing one costs
//!   a grace period, which a warm process does not pay, and wirehook since
//!   it leaves the close to a child), hairpin on the port, the nftables
//!   map element of
//!   the published port; the namespace bind-mounted. macvlan and ipvlan:
//!   the same with one sub-interface request instead of the veth and
//!   without the bridge's neighbour, ARP, hairpin and port. overlay (on the
//!   local store, no remote hosts): as bridge, on a bridge, without the
//!   published port and its hairpin.
//!
//! Teardown's floor: the exec, then what wirehook's teardown asks of the
//! kernel: the port's map element deleted (bridge), the conntrack entries
//! of the address flushed, the host end (bridge) or the sub-interface
//! (macvlan, ipvlan) deleted when the container's process still runs (else
//! the kernel removes it with the namespace), the bind mount released.
//! wirehook's poststop does most of this in a finisher after it returned
//! (hook/src/finish.rs), so the runtime does not wait for it; the floor
//! does it before it returns.
//!
//! Left out of the floor on purpose: host-side lookups of objects that
//! stay put (the bridge, the parent: a warm process knows their index),
//! and wirehook's own bookkeeping (leases, records, locks, the resolver's
//! names), which is the hook's own share.

use std::net::{IpAddr, Ipv4Addr};

use wirehook_shared::announce::Announcer;
use wirehook_shared::firewall::{self, NetworkRules, PortRule, Protocol};
use wirehook_shared::netlink::{IpvlanSpec, MacvlanSpec, Netlink, VethSpec};
use wirehook_shared::netns::{self, NetNs};
use wirehook_shared::network::{IpvlanMode, MacvlanMode};

use crate::*;

const FLOOR_BRIDGE: &str = "whfloor0";
const FLOOR_NET: &str = "floor";
const FLOOR_PREFIX: [u8; 2] = [10, 96];

/// The floor's warm state in its host namespace.
pub(crate) struct Floor {
    /// The static no-op binary.
    noop: PathBuf,
    /// A netlink socket in the host namespace, opened once.
    host_nl: Netlink,
    /// The bridge (bridge mode) or the LAN parent (macvlan, ipvlan).
    index: u32,
    /// A packet socket for the gratuitous ARPs (bridge, overlay), opened
    /// once: a warm process does not pay its close (a grace period).
    arp: Option<Announcer>,
    /// Per container (by index): exec and requests of setup and teardown.
    pub(crate) parts: Parts,
}

/// Timed parts of the floor, per container index.
#[derive(Default, Clone)]
pub(crate) struct Parts {
    pub(crate) setup_exec: Vec<Duration>,
    pub(crate) setup_requests: Vec<Duration>,
    pub(crate) teardown_exec: Vec<Duration>,
    pub(crate) teardown_requests: Vec<Duration>,
}

impl Parts {
    fn put(v: &mut Vec<Duration>, idx: usize, d: Duration) {
        if v.len() <= idx {
            v.resize(idx + 1, Duration::ZERO);
        }
        v[idx] = d;
    }
}

fn err(what: &str, e: impl std::fmt::Display) -> String {
    format!("floor: {what}: {e}")
}

/// Build the static no-op binary into `dir` (untimed, once per run).
pub(crate) fn build_noop(dir: &Path) -> Res<PathBuf> {
    let src = dir.join("noop.c");
    let bin = dir.join("noop");
    fs::write(&src, "int main(void) { return 0; }\n")
        .map_err(|e| format!("write {}: {e}", src.display()))?;
    let out = Command::new("cc")
        .args(["-static", "-O2", "-o"])
        .arg(&bin)
        .arg(&src)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            format!("--floor builds a static no-op binary with cc: {e} (apt-get install gcc)")
        })?;
    if !out.status.success() {
        return Err(format!(
            "--floor: `cc -static -O2 noop.c` failed (apt-get install gcc libc6-dev): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(bin)
}

impl Ctr {
    /// The floor's address for this container: its own pool, as wirehook's
    /// allocator or host-local would hand out (the LAN: its subnet).
    fn floor_ip(&self, mode: Mode) -> Ipv4Addr {
        let h = self.idx + 2;
        let [a, b] = match mode {
            Mode::Bridge | Mode::Overlay => FLOOR_PREFIX,
            Mode::Macvlan | Mode::Ipvlan => [10, 97],
        };
        Ipv4Addr::new(a, b, ((h >> 8) & 0xff) as u8, (h & 0xff) as u8)
    }

    fn floor_mac(&self) -> [u8; 6] {
        let i = self.idx as u32;
        let b = i.to_be_bytes();
        [0x02, 0xf1, b[0], b[1], b[2], b[3]]
    }

    fn floor_host_name(&self) -> String {
        format!("whf{:011x}", self.idx)
    }

    fn floor_port(&self, mode: Mode) -> PortRule {
        PortRule {
            protocol: Protocol::Tcp,
            host_ip: None,
            host_port: self.host_port() as u16,
            container_ip: IpAddr::V4(self.floor_ip(mode)),
            container_port: CONTAINER_PORT,
        }
    }
}

impl Contender {
    fn floor(&mut self) -> Res<&mut Floor> {
        self.floor
            .as_mut()
            .ok_or_else(|| "floor: not prepared".to_string())
    }

    /// Where the floor bind-mounts a container's namespace.
    pub(crate) fn floor_mount(&self, c: &Ctr) -> PathBuf {
        self.dir.join("mounts").join(c.id())
    }

    /// Untimed, in the host namespace: the network's host side, as the
    /// first container of a network leaves it, and the warm socket.
    pub(crate) fn floor_prepare_host(&mut self, noop: &Path) -> Res<()> {
        let host_nl = Netlink::new().map_err(|e| err("netlink socket", e))?;
        let index = match self.mode {
            Mode::Bridge | Mode::Overlay => {
                let index = host_nl
                    .ensure_bridge(FLOOR_BRIDGE, None)
                    .map_err(|e| err("bridge", e))?;
                let [a, b] = FLOOR_PREFIX;
                host_nl
                    .add_address(index, IpAddr::V4(Ipv4Addr::new(a, b, 0, 1)), 16)
                    .map_err(|e| err("gateway address", e))?;
                wirehook_shared::sysctl::enable_ip_forward(false)
                    .map_err(|e| err("ip_forward", e))?;
                wirehook_shared::sysctl::set_route_localnet(FLOOR_BRIDGE)
                    .map_err(|e| err("route_localnet", e))?;
                let subnet: ipnetwork::IpNetwork = format!("{a}.{b}.0.0/16")
                    .parse()
                    .map_err(|e| err("subnet", e))?;
                firewall::realize_network(&NetworkRules {
                    name: FLOOR_NET,
                    bridge: FLOOR_BRIDGE,
                    subnets: &[subnet],
                    internal: false,
                    tunnel: None,
                })
                .map_err(|e| err("firewall", e))?;
                index
            }
            Mode::Macvlan | Mode::Ipvlan => {
                host_nl
                    .link(LAN_PARENT)
                    .map_err(|e| err("parent", e))?
                    .ok_or_else(|| format!("floor: no {LAN_PARENT}"))?
                    .index
            }
        };
        let arp = match self.mode {
            Mode::Bridge | Mode::Overlay => {
                Some(Announcer::open().map_err(|e| err("packet socket", e))?)
            }
            Mode::Macvlan | Mode::Ipvlan => None,
        };
        self.floor = Some(Floor {
            noop: noop.to_path_buf(),
            host_nl,
            index,
            arp,
            parts: Parts::default(),
        });
        Ok(())
    }

    /// Timed: the exec of the no-op with this container's state on stdin.
    fn floor_exec(&mut self, c: &Ctr, status: &str) -> Res<Duration> {
        let noop = self.floor()?.noop.clone();
        let state = format!(
            r#"{{"ociVersion":"1.0.2","id":"{}","status":"{status}","pid":{},"bundle":"","annotations":{{}}}}"#,
            c.id(),
            c.pid
        );
        let mut cmd = self.cmd(&noop);
        Ok(timed(&mut cmd, "floor: static no-op", state.as_bytes())?.0)
    }

    /// Timed floor of one setup: exec + requests.
    pub(crate) fn floor_setup(&mut self, c: &Ctr) -> Res<Duration> {
        let exec = self.floor_exec(c, "creating")?;
        let mode = self.mode;
        let mount = self.floor_mount(c);
        if let Some(dir) = mount.parent() {
            fs::create_dir_all(dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        }
        let f = self.floor()?;
        let ip = c.floor_ip(mode);
        let mac = c.floor_mac();
        let t0 = Instant::now();
        let ns = NetNs::of_pid(c.pid as i32).map_err(|e| err("open namespace", e))?;
        let host_name = c.floor_host_name();
        let mut host_index = 0;
        match mode {
            Mode::Bridge | Mode::Overlay => {
                host_index = f
                    .host_nl
                    .create_veth(&VethSpec {
                        host_name: &host_name,
                        master: Some(f.index),
                        mtu: 1500,
                        peer_name: "eth0",
                        peer_ns: &ns,
                        peer_mac: Some(mac),
                    })
                    .map_err(|e| err("veth", e))?;
            }
            Mode::Macvlan => f
                .host_nl
                .create_macvlan(&MacvlanSpec {
                    name: "eth0",
                    parent: f.index,
                    mode: MacvlanMode::Bridge,
                    netns: Some(&ns),
                    mac: Some(mac),
                    mtu: None,
                })
                .map_err(|e| err("macvlan", e))?,
            Mode::Ipvlan => f
                .host_nl
                .create_ipvlan(&IpvlanSpec {
                    name: "eth0",
                    parent: f.index,
                    mode: IpvlanMode::L2,
                    netns: Some(&ns),
                    mtu: None,
                })
                .map_err(|e| err("ipvlan", e))?,
        }
        {
            let nl = Netlink::in_netns(&ns).map_err(|e| err("netlink in the container", e))?;
            nl.loopback_up().map_err(|e| err("lo up", e))?;
            let link = nl
                .link("eth0")
                .map_err(|e| err("eth0", e))?
                .ok_or("floor: eth0 did not appear in the container")?;
            nl.prepare_container_link(link.index, true, true)
                .map_err(|e| err("link settings", e))?;
            nl.add_address(link.index, IpAddr::V4(ip), 16)
                .map_err(|e| err("address", e))?;
            nl.set_up(link.index).map_err(|e| err("up", e))?;
            let gw = match mode {
                Mode::Bridge | Mode::Overlay => {
                    let [a, b] = FLOOR_PREFIX;
                    Ipv4Addr::new(a, b, 0, 1)
                }
                Mode::Macvlan | Mode::Ipvlan => LAN_GATEWAY.parse().map_err(|e| err("gw", e))?,
            };
            nl.add_default_route(IpAddr::V4(gw), link.index)
                .map_err(|e| err("default route", e))?;
        }
        if matches!(mode, Mode::Bridge | Mode::Overlay) {
            f.host_nl
                .refresh_neighbour(f.index, IpAddr::V4(ip), mac)
                .map_err(|e| err("neighbour", e))?;
            f.arp
                .as_ref()
                .ok_or("floor: no packet socket")?
                .send(f.index, mac, ip)
                .map_err(|e| err("gratuitous ARP", e))?;
        }
        if mode == Mode::Bridge {
            f.host_nl
                .set_bridge_port_hairpin(host_index)
                .map_err(|e| err("hairpin", e))?;
            firewall::add_ports(&[c.floor_port(mode)]).map_err(|e| err("port", e))?;
        }
        ns.bind_mount(&mount).map_err(|e| err("bind mount", e))?;
        let requests = t0.elapsed();
        Parts::put(&mut f.parts.setup_exec, c.idx, exec);
        Parts::put(&mut f.parts.setup_requests, c.idx, requests);
        Ok(exec + requests)
    }

    /// Timed floor of one teardown: exec + requests.
    pub(crate) fn floor_teardown(&mut self, c: &Ctr) -> Res<Duration> {
        let exec = self.floor_exec(c, "stopped")?;
        let (mode, stopped) = (self.mode, self.stopped);
        let mount = self.floor_mount(c);
        let f = self.floor()?;
        let ip = c.floor_ip(mode);
        let t0 = Instant::now();
        if mode == Mode::Bridge {
            firewall::remove_ports(&[c.floor_port(mode)]).map_err(|e| err("port", e))?;
        }
        firewall::flush_conntrack(&[IpAddr::V4(ip)]).map_err(|e| err("conntrack", e))?;
        if !stopped {
            match mode {
                Mode::Bridge | Mode::Overlay => {
                    f.host_nl
                        .delete_link(&c.floor_host_name())
                        .map_err(|e| err("delete veth", e))?;
                }
                Mode::Macvlan | Mode::Ipvlan => {
                    let ns = NetNs::open(&mount).map_err(|e| err("open namespace", e))?;
                    let nl = Netlink::in_netns(&ns).map_err(|e| err("netlink inside", e))?;
                    nl.delete_link("eth0")
                        .map_err(|e| err("delete sub-interface", e))?;
                }
            }
        }
        netns::unmount(&mount).map_err(|e| err("unmount", e))?;
        let requests = t0.elapsed();
        Parts::put(&mut f.parts.teardown_exec, c.idx, exec);
        Parts::put(&mut f.parts.teardown_requests, c.idx, requests);
        Ok(exec + requests)
    }
}
