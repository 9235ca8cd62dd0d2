//! Reading namespaces over netlink: one NETLINK_ROUTE socket per namespace.
//!
//! A socket is opened on a short-lived thread of its own that enters the
//! namespace (setns), opens the socket and returns: the socket stays bound
//! to that namespace for its life, so the reading thread never leaves its
//! own. Link, address and route changes (RTNLGRP_LINK, IPV4/IPV6_IFADDR,
//! IPV4/IPV6_ROUTE) of every namespace are heard by one listener socket in
//! the reader's namespace (NETLINK_LISTEN_ALL_NSID, which tells each
//! notification's namespace by its nsid); without the privilege for it,
//! each namespace's socket subscribes itself. Every tick the reader
//! drains those notifications; a namespace that saw one (or was never read)
//! gets its topology re-dumped (links with IFLA_STATS64, addresses, main
//! table routes), every other one only its counters (one RTM_GETSTATS dump
//! with the IFLA_STATS_LINK_64 filter). Sockets stay open across ticks and
//! are closed when their namespace is gone.
//!
//! veth peers are paired in one frame of reference, the reader's own
//! namespace. Each namespace's links are dumped through one socket there
//! (the home socket) with IFLA_TARGET_NETNSID, and the kernel then gives
//! every IFLA_LINK_NETNSID relative to the requesting socket's namespace:
//! the nsid the reader's namespace has for the peer's namespace. The
//! reader learns the nsid of every namespace when it opens its socket (one
//! RTM_GETNSID with the namespace's file, an RTM_NEWNSID the first time),
//! so pairing a veth is a lookup of (nsid -> namespace, IFLA_LINK -> link):
//! no request per pair. See [`Frame`].

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkLayerType, LinkMessage, State,
};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteType};
use netlink_packet_route::stats::{StatsAttribute, StatsFilterMask, StatsMessage};
use netlink_packet_route::RouteNetlinkMessage;

use super::discover::Found;
use super::model::{Address, Counters, Link, Namespace, PeerRef, Route, Snapshot};
use super::nlsock::NlSock;

const RTNLGRP_LINK: u32 = 1;
const RTNLGRP_IPV4_IFADDR: u32 = 5;
const RTNLGRP_IPV4_ROUTE: u32 = 7;
const RTNLGRP_IPV6_IFADDR: u32 = 9;
const RTNLGRP_IPV6_ROUTE: u32 = 11;
/// The change notifications every namespace's socket gets, as a bind
/// mask: bit `g - 1` for group `g`.
const GROUPS: u32 = group(RTNLGRP_LINK)
    | group(RTNLGRP_IPV4_IFADDR)
    | group(RTNLGRP_IPV4_ROUTE)
    | group(RTNLGRP_IPV6_IFADDR)
    | group(RTNLGRP_IPV6_ROUTE);

const fn group(g: u32) -> u32 {
    1 << (g - 1)
}
const RT_TABLE_MAIN: u32 = 254;
/// A namespace that could not be opened is tried again after this long.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// What one namespace's topology dump found.
#[derive(Debug, Clone, Default)]
struct Topology {
    links: Vec<Link>,
    addresses: Vec<Address>,
    routes: Vec<Route>,
    /// The links' `link_netnsid` are nsids of the reader's namespace (see
    /// [`Frame`]); otherwise of the namespace itself, which the reader
    /// cannot tell apart.
    framed: bool,
}

struct Conn {
    nl: NlSock,
    topo: Option<Topology>,
    /// A change notification arrived since the last topology dump.
    dirty: bool,
    /// The socket was opened in the reader's own namespace (without
    /// entering it): its dumps are framed as they are.
    in_home: bool,
    /// The socket is subscribed to the namespace's change notifications
    /// (else the reader's listener hears them).
    subscribed: bool,
    /// The topology was read when the socket was opened, this tick.
    fresh: bool,
}

enum Slot {
    Open(Box<Conn>),
    Failed { error: String, at: Instant },
}

/// Counts of what the reader did, for benchmarks and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadStats {
    pub sockets_opened: usize,
    pub topology_dumps: usize,
    pub counter_dumps: usize,
    /// RTM_GETNSID and RTM_NEWNSID requests: at most three per namespace
    /// opened, whatever the number of veth pairs.
    pub nsid_requests: usize,
}

impl ReadStats {
    fn add(&mut self, o: &ReadStats) {
        self.sockets_opened += o.sockets_opened;
        self.topology_dumps += o.topology_dumps;
        self.counter_dumps += o.counter_dumps;
        self.nsid_requests += o.nsid_requests;
    }
}

/// The reader's namespace as the frame of reference for veth peers: the
/// nsid it has for each namespace read, both ways.
///
/// Having the kernel assign nsids in the reader's namespace (the host's,
/// usually) is what `ip` does too (`ip netns set`, and every `ip link`
/// dump assigns one to a peer's namespace that has none); the kernel
/// assigns them itself when it reports a veth peer in another namespace
/// in a dump, so the per-namespace dumps did it all along, in the other
/// direction. An nsid is a small number private to the namespace that
/// holds it, shown by `ip netns list-id`, and freed when the namespace it
/// names is gone; it grants nothing. The reader's own namespace gets one
/// too (a veth whose peer is there is reported with it).
#[derive(Default)]
struct Frame {
    inode: HashMap<i32, u64>,
    nsid: HashMap<u64, i32>,
}

impl Frame {
    fn insert(&mut self, inode: u64, nsid: i32) {
        if let Some(old) = self.nsid.insert(inode, nsid) {
            self.inode.remove(&old);
        }
        self.inode.insert(nsid, inode);
    }

    fn retain(&mut self, live: &HashSet<u64>) {
        self.nsid.retain(|i, _| live.contains(i));
        self.inode.retain(|_, i| live.contains(i));
    }
}

/// Reads every namespace it is given; keeps one socket per namespace.
pub struct Reader {
    slots: HashMap<u64, Slot>,
    /// The socket in the reader's own namespace every namespace's links
    /// are dumped through; opened at the first read, on the reading thread.
    home: Option<NlSock>,
    /// The inode of the reader's namespace.
    home_inode: Option<u64>,
    frame: Frame,
    /// One socket in the reader's namespace that hears the change
    /// notifications of every namespace it has an nsid for
    /// (NETLINK_LISTEN_ALL_NSID), instead of a subscription per
    /// namespace: subscribing a socket (and closing it) makes the kernel
    /// walk every subscribed socket of the machine, so a thousand
    /// subscriptions cost quadratic time, and so does every notification
    /// anywhere. `None` without the privilege (CAP_NET_BROADCAST), or
    /// before the first read.
    listener: Option<NlSock>,
    listener_tried: bool,
    /// Every open socket, keyed by its namespace's inode: one epoll_wait
    /// tells which sockets hold change notifications, instead of a recv
    /// on each of a thousand sockets per tick.
    epoll: Option<std::os::fd::OwnedFd>,
    buf: Vec<u8>,
    pub stats: ReadStats,
}

impl Default for Reader {
    fn default() -> Self {
        Reader::new()
    }
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Open the namespace file at `path`, which must have inode `inode`.
fn open_ns(path: &Path, inode: u64) -> Result<File, String> {
    let ns = File::open(path).map_err(|e| {
        if e.kind() == io::ErrorKind::PermissionDenied {
            format!(
                "may not open {} (EACCES): run wiretop as root",
                path.display()
            )
        } else {
            format!("cannot open {}: {e}", path.display())
        }
    })?;
    let ino = ns.metadata().map(|m| m.ino()).unwrap_or(0);
    if ino != inode {
        return Err("namespace vanished".into());
    }
    Ok(ns)
}

/// Open a socket inside the namespace `ns`, subscribed to `groups`;
/// `back` is the calling thread's own namespace, `in_home` whether `ns` is
/// it. Runs on the calling thread, which must be a dedicated one: it is
/// moved into the namespace and back.
fn socket_in(ns: &File, in_home: bool, back: &File, groups: u32) -> Result<NlSock, String> {
    let sock = if in_home {
        // Our own namespace: no need to enter it (nor the privilege to).
        NlSock::open(groups)
    } else {
        nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
            if e == nix::errno::Errno::EPERM {
                "may not enter it (EPERM): wiretop needs CAP_SYS_ADMIN, run it as root".to_string()
            } else {
                format!("cannot enter namespace: {e}")
            }
        })?;
        let sock = NlSock::open(groups);
        nix::sched::setns(back.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("cannot return from namespace: {e}"))?;
        sock
    };
    sock.map_err(|e| format!("netlink socket: {e}"))
}

/// What opening one namespace gave.
struct Opened {
    inode: u64,
    /// Its nsid in the reader's namespace, if it could be learnt.
    nsid: Option<i32>,
    conn: Result<Conn, String>,
}

/// Open the namespaces in `todo` on the calling thread, a dedicated one
/// started in the reader's namespace. Per namespace: its file, its nsid
/// (through a home socket of this thread's), its socket (entering it),
/// and its first topology read, so that a cold start reads on every
/// opening thread at once. With `listened` (the reader's listener hears
/// every namespace it has an nsid for), a socket subscribes to change
/// notifications only when its namespace has none.
fn open_all(todo: &[(u64, PathBuf)], listened: bool) -> (Vec<Opened>, ReadStats) {
    let mut stats = ReadStats::default();
    let back = match File::open("/proc/thread-self/ns/net") {
        Ok(f) => f,
        Err(e) => {
            let out = todo
                .iter()
                .map(|(inode, _)| Opened {
                    inode: *inode,
                    nsid: None,
                    conn: Err(format!("cannot open own namespace: {e}")),
                })
                .collect();
            return (out, stats);
        }
    };
    let back_ino = back.metadata().map(|m| m.ino()).unwrap_or(0);
    let mut home = NlSock::open(0).ok();
    let mut buf = vec![0u8; 64 * 1024];
    let out = todo
        .iter()
        .map(|(inode, path)| {
            let ns = match open_ns(path, *inode) {
                Ok(ns) => ns,
                Err(e) => {
                    return Opened {
                        inode: *inode,
                        nsid: None,
                        conn: Err(e),
                    }
                }
            };
            let nsid = home
                .as_mut()
                .and_then(|h| h.nsid_for(&mut buf, ns.as_fd()).ok().flatten());
            let in_home = back_ino == *inode;
            let heard = listened && (in_home || nsid.is_some());
            let groups = if heard { 0 } else { GROUPS };
            let conn = socket_in(&ns, in_home, &back, groups).map(|nl| {
                stats.sockets_opened += 1;
                let mut c = Conn {
                    nl,
                    topo: None,
                    dirty: true,
                    in_home,
                    subscribed: !heard,
                    fresh: false,
                };
                // A failure here is met again, and reported, at the
                // reader's next update.
                let _ = c.update(&mut buf, &mut stats, false, false, home.as_mut().zip(nsid));
                c.fresh = c.topo.is_some();
                c
            });
            Opened {
                inode: *inode,
                nsid,
                conn,
            }
        })
        .collect();
    stats.nsid_requests = home.map_or(0, |h| h.nsid_requests);
    (out, stats)
}

/// Raise the open-file limit to its hard maximum: a socket per namespace.
fn raise_nofile() {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) == 0 && rl.rlim_cur < rl.rlim_max {
            rl.rlim_cur = rl.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &rl);
        }
    }
}

fn mac_string(b: &[u8]) -> Option<String> {
    if b.len() != 6 {
        return None;
    }
    Some(
        b.iter()
            .map(|x| format!("{x:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
    )
}

fn state_str(s: &State) -> String {
    match s {
        State::Up => "up".into(),
        State::Down => "down".into(),
        State::Unknown => "unknown".into(),
        State::LowerLayerDown => "lowerlayerdown".into(),
        State::NotPresent => "notpresent".into(),
        State::Testing => "testing".into(),
        State::Dormant => "dormant".into(),
        other => format!("{other:?}").to_lowercase(),
    }
}

fn counters_from(s: &netlink_packet_route::link::Stats64) -> Counters {
    Counters {
        rx_bytes: s.rx_bytes,
        tx_bytes: s.tx_bytes,
        rx_packets: s.rx_packets,
        tx_packets: s.tx_packets,
        rx_errors: s.rx_errors,
        tx_errors: s.tx_errors,
        rx_dropped: s.rx_dropped,
        tx_dropped: s.tx_dropped,
    }
}

fn link_from(msg: &LinkMessage) -> (Link, Option<u32>) {
    let mut l = Link {
        index: msg.header.index,
        name: String::new(),
        kind: if msg.header.link_layer_type == LinkLayerType::Loopback {
            "loopback".into()
        } else {
            "device".into()
        },
        state: "unknown".into(),
        admin_up: msg.header.flags.contains(LinkFlags::Up),
        mtu: 0,
        mac: None,
        master: None,
        parent: None,
        parent_netns_inode: None,
        peer: None,
        stats: Counters::default(),
        rate: None,
        link_index: None,
        link_netnsid: None,
    };
    let mut master = None;
    for a in &msg.attributes {
        match a {
            LinkAttribute::IfName(n) => l.name = n.clone(),
            LinkAttribute::Mtu(m) => l.mtu = *m,
            LinkAttribute::Address(b) => l.mac = mac_string(b),
            LinkAttribute::OperState(s) => l.state = state_str(s),
            LinkAttribute::Controller(m) => master = Some(*m),
            LinkAttribute::Link(i) => l.link_index = Some(*i),
            LinkAttribute::LinkNetNsId(n) => l.link_netnsid = Some(*n),
            LinkAttribute::Stats64(s) => l.stats = counters_from(s),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let LinkInfo::Kind(k) = i {
                        l.kind = match k {
                            InfoKind::Veth => "veth".into(),
                            InfoKind::Bridge => "bridge".into(),
                            InfoKind::MacVlan => "macvlan".into(),
                            InfoKind::IpVlan => "ipvlan".into(),
                            InfoKind::Vxlan => "vxlan".into(),
                            other => other.to_string(),
                        };
                    }
                }
            }
            _ => {}
        }
    }
    (l, master)
}

fn route_addr(a: &RouteAddress) -> Option<String> {
    match a {
        RouteAddress::Inet(v) => Some(v.to_string()),
        RouteAddress::Inet6(v) => Some(v.to_string()),
        _ => None,
    }
}

/// Where a namespace's links are dumped from: the home socket, naming
/// the namespace by its nsid there.
type Via<'a> = Option<(&'a mut NlSock, i32)>;

impl Conn {
    /// Dump the links, through the home socket when `via` is given (and
    /// it may: IFLA_TARGET_NETNSID needs CAP_NET_ADMIN over the
    /// namespace), else through the namespace's own socket; `each` gets
    /// every reply. True if their `link_netnsid`s are framed.
    fn dump_links(
        &mut self,
        buf: &mut [u8],
        via: Via,
        mut each: impl FnMut(RouteNetlinkMessage),
    ) -> io::Result<bool> {
        if let (Some((home, nsid)), false) = (via, self.in_home) {
            let mut req = LinkMessage::default();
            req.attributes.push(LinkAttribute::IfNetnsId(nsid));
            // Replies only: the home socket has no subscriptions, the
            // namespace's changes still come to its own socket. A refusal
            // comes before any link.
            match home.dump(buf, RouteNetlinkMessage::GetLink(req), &mut each) {
                Ok(_) => return Ok(true),
                Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM)) => {}
                Err(e) => return Err(e),
            }
        }
        self.dump(
            buf,
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            each,
        )?;
        Ok(self.in_home)
    }

    /// A dump through the namespace's own socket; notifications that
    /// arrive meanwhile mark it dirty.
    fn dump(
        &mut self,
        buf: &mut [u8],
        msg: RouteNetlinkMessage,
        each: impl FnMut(RouteNetlinkMessage),
    ) -> io::Result<()> {
        self.dirty |= self.nl.dump(buf, msg, each)?;
        Ok(())
    }

    fn read_topology(&mut self, buf: &mut [u8], via: Via) -> io::Result<Topology> {
        self.dirty = false;
        let mut topo = Topology::default();
        let mut masters = Vec::new();
        topo.framed = self.dump_links(buf, via, |m| {
            if let RouteNetlinkMessage::NewLink(lm) = m {
                let (l, master) = link_from(&lm);
                masters.push(master);
                topo.links.push(l);
            }
        })?;
        let names: HashMap<u32, String> = topo
            .links
            .iter()
            .map(|l| (l.index, l.name.clone()))
            .collect();
        for (l, m) in topo.links.iter_mut().zip(masters) {
            l.master = m.and_then(|m| names.get(&m).cloned());
            if matches!(
                l.kind.as_str(),
                "macvlan" | "ipvlan" | "vxlan" | "macvtap" | "vlan"
            ) && l.link_netnsid.is_none()
            {
                l.parent = l.link_index.and_then(|i| names.get(&i).cloned());
            }
        }
        topo.links.sort_by_key(|l| l.index);
        let addresses = &mut topo.addresses;
        self.dump(
            buf,
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            |m| {
                let RouteNetlinkMessage::NewAddress(am) = m else {
                    return;
                };
                let mut addr = None;
                let mut local = None;
                for a in &am.attributes {
                    match a {
                        AddressAttribute::Address(ip) => addr = Some(*ip),
                        AddressAttribute::Local(ip) => local = Some(*ip),
                        _ => {}
                    }
                }
                if let Some(ip) = local.or(addr) {
                    addresses.push(Address {
                        ifindex: am.header.index,
                        ifname: names.get(&am.header.index).cloned().unwrap_or_default(),
                        address: format!("{ip}/{}", am.header.prefix_len),
                    });
                }
            },
        )?;
        let routes = &mut topo.routes;
        self.dump(
            buf,
            RouteNetlinkMessage::GetRoute(RouteMessage::default()),
            |m| {
                let RouteNetlinkMessage::NewRoute(rm) = m else {
                    return;
                };
                let mut table = rm.header.table as u32;
                let mut dst = None;
                let mut gw = None;
                let mut oif = None;
                for a in &rm.attributes {
                    match a {
                        RouteAttribute::Table(t) => table = *t,
                        RouteAttribute::Destination(d) => dst = route_addr(d),
                        RouteAttribute::Gateway(g) => gw = route_addr(g),
                        RouteAttribute::Oif(i) => oif = Some(*i),
                        _ => {}
                    }
                }
                if table != RT_TABLE_MAIN || rm.header.kind != RouteType::Unicast {
                    return;
                }
                let destination = match dst {
                    Some(d) => format!("{d}/{}", rm.header.destination_prefix_length),
                    None => "default".into(),
                };
                routes.push(Route {
                    destination,
                    gateway: gw,
                    dev: oif.and_then(|i| names.get(&i).cloned()),
                });
            },
        )?;
        Ok(topo)
    }

    /// Counters of every link; false if a link appeared that the topology
    /// does not know (then the topology is re-read).
    fn read_counters(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        let Some(topo) = self.topo.as_mut() else {
            return Ok(false);
        };
        let mut req = StatsMessage::default();
        req.header.filter_mask = StatsFilterMask::Link64;
        let mut seen = 0;
        let mut unknown = false;
        self.dirty |= self.nl.dump(buf, RouteNetlinkMessage::GetStats(req), |m| {
            let RouteNetlinkMessage::NewStats(sm) = m else {
                return;
            };
            // Links are sorted by index.
            let Ok(i) = topo
                .links
                .binary_search_by_key(&sm.header.ifindex, |l| l.index)
            else {
                unknown = true;
                return;
            };
            seen += 1;
            for a in &sm.attributes {
                if let StatsAttribute::Link64(s) = a {
                    topo.links[i].stats = counters_from(s);
                }
            }
        })?;
        Ok(!unknown && seen == topo.links.len())
    }

    /// Bring the namespace up to date: counters, or the topology after a
    /// change. `pending`: the socket may hold notifications (when the
    /// reader cannot tell, always true).
    fn update(
        &mut self,
        buf: &mut [u8],
        stats: &mut ReadStats,
        pending: bool,
        changed: bool,
        via: Via,
    ) -> io::Result<()> {
        if (pending && self.nl.drain(buf)) || changed {
            self.dirty = true;
        }
        if std::mem::take(&mut self.fresh) && self.topo.is_some() && !self.dirty {
            return Ok(());
        }
        if self.topo.is_some() && !self.dirty {
            stats.counter_dumps += 1;
            if self.read_counters(buf)? {
                return Ok(());
            }
        }
        stats.topology_dumps += 1;
        let t = self.read_topology(buf, via)?;
        self.topo = Some(t);
        Ok(())
    }
}

fn new_epoll() -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain epoll_create1; the fd is owned from here on.
    let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    // SAFETY: a fresh fd nothing else owns.
    (fd >= 0).then(|| unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

impl Reader {
    /// Add a socket to the epoll set (a closed socket leaves it by
    /// itself). Without epoll every socket is drained every tick.
    fn watch(&mut self, sock: &NlSock, inode: u64) {
        let Some(ep) = &self.epoll else { return };
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: inode,
        };
        // SAFETY: valid epoll and socket fds, a valid event.
        let r =
            unsafe { libc::epoll_ctl(ep.as_raw_fd(), libc::EPOLL_CTL_ADD, sock.raw_fd(), &mut ev) };
        if r != 0 {
            self.epoll = None; // cannot tell any more: drain them all
        }
    }

    /// Inodes of the namespaces whose sockets hold something to read
    /// (notifications, or an error such as an overrun); `None` when
    /// unknown.
    fn ready(&mut self) -> Option<HashSet<u64>> {
        let ep = self.epoll.as_ref()?;
        let mut out = HashSet::new();
        let mut evs =
            vec![libc::epoll_event { events: 0, u64: 0 }; self.slots.len().clamp(1, 4096)];
        loop {
            // SAFETY: evs is a valid buffer of evs.len() events.
            let n =
                unsafe { libc::epoll_wait(ep.as_raw_fd(), evs.as_mut_ptr(), evs.len() as i32, 0) };
            if n < 0 {
                if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return None;
            }
            out.extend(evs[..n as usize].iter().map(|e| e.u64));
            // Level-triggered: a full buffer may leave more behind, and
            // asking again returns the same ones first; take them all.
            if (n as usize) < evs.len() {
                return Some(out);
            }
            evs.resize(evs.len() * 2, libc::epoll_event { events: 0, u64: 0 });
            if evs.len() > 1 << 20 {
                return None;
            }
        }
    }

    /// Inodes of the namespaces the listener heard a change notification
    /// from since the last call; `None` when some were lost (all may
    /// have changed).
    fn heard(&mut self) -> Option<HashSet<u64>> {
        let Some(l) = self.listener.as_mut() else {
            return Some(HashSet::new());
        };
        let sources = l.sources(&mut self.buf).ok()?;
        Some(
            sources
                .into_iter()
                .filter_map(|nsid| match nsid {
                    Some(id) => self.frame.inode.get(&id).copied(),
                    None => self.home_inode,
                })
                .collect(),
        )
    }

    pub fn new() -> Reader {
        raise_nofile();
        Reader {
            slots: HashMap::new(),
            home: None,
            home_inode: None,
            frame: Frame::default(),
            listener: None,
            listener_tried: false,
            epoll: new_epoll(),
            buf: vec![0u8; 256 * 1024],
            stats: ReadStats::default(),
        }
    }

    /// Open sockets for namespaces not open yet (and retry failed ones
    /// after a while), on a dedicated thread, and learn their nsids;
    /// forget vanished ones.
    fn open_new(&mut self, found: &[Found]) {
        let live: HashSet<u64> = found.iter().map(|f| f.inode).collect();
        self.slots.retain(|ino, _| live.contains(ino));
        self.frame.retain(&live);
        let todo: Vec<(u64, PathBuf)> = found
            .iter()
            .filter(|f| match self.slots.get(&f.inode) {
                None => true,
                Some(Slot::Failed { at, .. }) => at.elapsed() >= RETRY_AFTER,
                Some(Slot::Open(_)) => false,
            })
            .map(|f| (f.inode, f.path.clone()))
            .collect();
        if todo.is_empty() {
            return;
        }
        if self.home.is_none() {
            self.home = NlSock::open(0).ok();
            self.home_inode = std::fs::metadata("/proc/thread-self/ns/net")
                .ok()
                .map(|m| m.ino());
        }
        if !self.listener_tried {
            self.listener_tried = true;
            self.listener = NlSock::open(GROUPS)
                .and_then(|mut l| l.listen_all().map(|()| l))
                .ok();
        }
        let listened = self.listener.is_some() && self.home_inode.is_some();
        // Entering a namespace costs the kernel an RCU grace period or so:
        // spread many over a few dedicated threads.
        let threads = todo.len().div_ceil(64).clamp(1, 16);
        let chunk = todo.len().div_ceil(threads);
        let opened: Vec<(Vec<Opened>, ReadStats)> = std::thread::scope(|s| {
            let handles: Vec<_> = todo
                .chunks(chunk)
                .map(|part| s.spawn(move || open_all(part, listened)))
                .collect();
            handles.into_iter().filter_map(|h| h.join().ok()).collect()
        });
        for (part, stats) in opened {
            self.stats.add(&stats);
            for o in part {
                if let Some(nsid) = o.nsid {
                    self.frame.insert(o.inode, nsid);
                }
                let slot = match o.conn {
                    Ok(conn) => {
                        if conn.subscribed {
                            self.watch(&conn.nl, o.inode);
                        }
                        Slot::Open(Box::new(conn))
                    }
                    Err(error) => Slot::Failed {
                        error,
                        at: Instant::now(),
                    },
                };
                self.slots.insert(o.inode, slot);
            }
        }
    }

    /// Read every namespace in `found` and build a snapshot (without
    /// rates: see [`Snapshot::apply_rates`]).
    pub fn read(&mut self, found: &[Found]) -> Snapshot {
        let mut s = self.read_owned(found.to_vec());
        s.finish();
        s
    }

    /// As [`Reader::read`], taking the discovery's result (its names and
    /// processes move into the snapshot instead of being copied), and
    /// leaving the totals to [`Snapshot::apply_rates_from`] or
    /// [`Snapshot::finish`], whichever the caller does next.
    pub fn read_owned(&mut self, found: Vec<Found>) -> Snapshot {
        self.open_new(&found);
        let ready = self.ready();
        let heard = self.heard();
        let mut namespaces = Vec::with_capacity(found.len());
        let mut framed = Vec::with_capacity(found.len());
        for f in found {
            let mut ns = Namespace {
                inode: f.inode,
                host: f.host,
                names: f.names,
                container: f.container,
                processes: f.processes,
                process_count: f.process_count,
                links: Vec::new(),
                addresses: Vec::new(),
                routes: Vec::new(),
                error: None,
                totals: Default::default(),
            };
            let mut is_framed = false;
            match self.slots.get_mut(&f.inode) {
                Some(Slot::Open(c)) => {
                    let via = match (self.home.as_mut(), self.frame.nsid.get(&f.inode)) {
                        (Some(h), Some(id)) => Some((h, *id)),
                        _ => None,
                    };
                    let pending = ready.as_ref().is_none_or(|r| r.contains(&f.inode));
                    let changed = heard.as_ref().is_none_or(|h| h.contains(&f.inode));
                    match c.update(&mut self.buf, &mut self.stats, pending, changed, via) {
                        Ok(()) => {
                            let t = c.topo.as_ref().expect("read");
                            ns.links = t.links.clone();
                            ns.addresses = t.addresses.clone();
                            ns.routes = t.routes.clone();
                            is_framed = t.framed;
                        }
                        Err(e) => {
                            ns.error = Some(format!("netlink: {e}"));
                            c.topo = None;
                        }
                    }
                }
                Some(Slot::Failed { error, .. }) => ns.error = Some(error.clone()),
                None => ns.error = Some("not opened".into()),
            }
            namespaces.push(ns);
            framed.push(is_framed);
        }
        let mut snap = Snapshot {
            taken_at: now_secs(),
            interval: None,
            namespaces,
            totals: Default::default(),
            overlays: Vec::new(),
            wireguard: Vec::new(),
        };
        resolve_peers(&mut snap, &framed, &self.frame);
        snap
    }
}

/// Fill in `peer` of every veth, and `parent_netns_inode` and `parent` of
/// links whose lower device lives in another namespace. `framed[i]`: the
/// links of namespace `i` name other namespaces by their nsid in the
/// reader's namespace, which `frame` maps to inodes (otherwise such peers
/// stay unknown). Hash lookups only: linear in the links.
fn resolve_peers(snap: &mut Snapshot, framed: &[bool], frame: &Frame) {
    // (namespace inode, ifindex) -> (position of the namespace, of the link).
    let at: HashMap<(u64, u32), (usize, usize)> = snap
        .namespaces
        .iter()
        .enumerate()
        .flat_map(|(ni, ns)| {
            ns.links
                .iter()
                .enumerate()
                .map(move |(li, l)| ((ns.inode, l.index), (ni, li)))
        })
        .collect();
    // Decide first (reading names anywhere), then write.
    let mut peers: Vec<(usize, usize, PeerRef)> = Vec::new();
    let mut parents: Vec<(usize, usize, Option<u64>, Option<String>)> = Vec::new();
    let nss = &snap.namespaces;
    for (ni, ns) in nss.iter().enumerate() {
        for (li, l) in ns.links.iter().enumerate() {
            let Some(j) = l.link_index else { continue };
            // The namespace IFLA_LINK points into.
            let there = match l.link_netnsid {
                None => Some(ns.inode),
                Some(id) if framed[ni] => frame.inode.get(&id).copied(),
                Some(_) => None,
            };
            let name = there
                .and_then(|p| at.get(&(p, j)))
                .map(|&(pn, pl)| nss[pn].links[pl].name.clone());
            if l.kind == "veth" {
                let peer = PeerRef {
                    netns_inode: there,
                    ifindex: j,
                    ifname: name,
                };
                peers.push((ni, li, peer));
            } else if l.link_netnsid.is_some() {
                parents.push((ni, li, there, name));
            }
        }
    }
    for (ni, li, p) in peers {
        snap.namespaces[ni].links[li].peer = Some(p);
    }
    for (ni, li, p, name) in parents {
        let l = &mut snap.namespaces[ni].links[li];
        l.parent_netns_inode = p;
        l.parent = name;
    }
}
