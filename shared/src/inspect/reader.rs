//! Reading namespaces over netlink: one NETLINK_ROUTE socket per namespace.
//!
//! A socket is opened on a short-lived thread of its own that enters the
//! namespace (setns), opens the socket and returns: the socket stays bound
//! to that namespace for its life, so the reading thread never leaves its
//! own. Each socket is subscribed to link, address and route changes
//! (RTNLGRP_LINK, IPV4/IPV6_IFADDR, IPV4/IPV6_ROUTE). Every tick the reader
//! drains those notifications; a namespace that saw one (or was never read)
//! gets its topology re-dumped (links with IFLA_STATS64, addresses, main
//! table routes), every other one only its counters (one RTM_GETSTATS dump
//! with the IFLA_STATS_LINK_64 filter). Sockets stay open across ticks and
//! are closed when their namespace is gone.
//!
//! veth peers are paired through IFLA_LINK (the peer's index) and
//! IFLA_LINK_NETNSID (the peer namespace's id as seen from this one): a
//! veth in another namespace with that index whose own IFLA_LINK points
//! back is the peer; when several namespaces qualify, the kernel is asked
//! which of them has that nsid (RTM_GETNSID with NETNSA_FD), once.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use netlink_packet_core::{
    NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkLayerType, LinkMessage, State,
};
use netlink_packet_route::nsid::{NsidAttribute, NsidMessage};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteType};
use netlink_packet_route::stats::{StatsAttribute, StatsFilterMask, StatsMessage};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket};

use super::discover::Found;
use super::model::{Address, Counters, Link, Namespace, PeerRef, Route, Snapshot};

const RTNLGRP_LINK: u32 = 1;
const RTNLGRP_IPV4_IFADDR: u32 = 5;
const RTNLGRP_IPV4_ROUTE: u32 = 7;
const RTNLGRP_IPV6_IFADDR: u32 = 9;
const RTNLGRP_IPV6_ROUTE: u32 = 11;
const RT_TABLE_MAIN: u32 = 254;
/// A namespace that could not be opened is tried again after this long.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// What one namespace's topology dump found.
#[derive(Debug, Clone, Default)]
struct Topology {
    links: Vec<Link>,
    addresses: Vec<Address>,
    routes: Vec<Route>,
}

struct Conn {
    sock: Socket,
    seq: u32,
    topo: Option<Topology>,
    /// A change notification arrived since the last topology dump.
    dirty: bool,
    /// nsid (as seen from this namespace) -> namespace inode, learnt.
    nsids: HashMap<i32, u64>,
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
}

/// Reads every namespace it is given; keeps one socket per namespace.
pub struct Reader {
    slots: HashMap<u64, Slot>,
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

/// Open a NETLINK_ROUTE socket inside the namespace at `path`, which must
/// have inode `inode`. Runs on the calling thread, which must be a
/// dedicated one: it is moved into the namespace and back.
fn open_in(path: &Path, inode: u64, back: &File) -> Result<Socket, String> {
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
    let sock = if back.metadata().map(|m| m.ino()).ok() == Some(inode) {
        // Our own namespace: no need to enter it (nor the privilege to).
        Socket::new(NETLINK_ROUTE)
    } else {
        nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
            if e == nix::errno::Errno::EPERM {
                "may not enter it (EPERM): wiretop needs CAP_SYS_ADMIN, run it as root".to_string()
            } else {
                format!("cannot enter namespace: {e}")
            }
        })?;
        let sock = Socket::new(NETLINK_ROUTE);
        nix::sched::setns(back.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("cannot return from namespace: {e}"))?;
        sock
    };
    let mut sock = sock.map_err(|e| format!("netlink socket: {e}"))?;
    sock.bind_auto().map_err(|e| format!("netlink bind: {e}"))?;
    for g in [
        RTNLGRP_LINK,
        RTNLGRP_IPV4_IFADDR,
        RTNLGRP_IPV4_ROUTE,
        RTNLGRP_IPV6_IFADDR,
        RTNLGRP_IPV6_ROUTE,
    ] {
        sock.add_membership(g)
            .map_err(|e| format!("netlink subscribe: {e}"))?;
    }
    let _ = sock.set_netlink_get_strict_chk(true);
    // A dump never blocks for long; this only guards against a lost reply.
    let tv = libc::timeval {
        tv_sec: 2,
        tv_usec: 0,
    };
    // SAFETY: valid fd and a properly sized timeval.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &tv as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
    }
    Ok(sock)
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

impl Conn {
    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1).max(1);
        self.seq
    }

    fn send(&mut self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<u32> {
        let seq = self.next_seq();
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = seq;
        let mut nl = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        nl.finalize();
        let mut out = vec![0u8; nl.buffer_len()];
        nl.serialize(&mut out);
        self.sock.send(&out, 0)?;
        Ok(seq)
    }

    /// Read replies to request `seq` until its Done (dump) or its first
    /// answer (`single`). Notifications that arrive in between mark the
    /// namespace dirty.
    fn collect(
        &mut self,
        buf: &mut [u8],
        seq: u32,
        single: bool,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        let mut out = Vec::new();
        loop {
            // SAFETY: buf is a valid writable buffer of buf.len() bytes.
            let n = unsafe {
                libc::recv(
                    self.sock.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                    0,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::ENOBUFS) {
                    self.dirty = true;
                    continue;
                }
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let mut off = 0usize;
            let n = n as usize;
            while off + 16 <= n {
                let len = match NetlinkBuffer::new_checked(&buf[off..n]) {
                    Ok(b) => b.length() as usize,
                    Err(_) => break,
                };
                if len < 16 || off + len > n {
                    break;
                }
                let raw = &buf[off..off + len];
                off += (len + 3) & !3;
                let Ok(msg) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(raw) else {
                    // Something we cannot parse: if it was a notification,
                    // re-reading the topology is the safe answer.
                    self.dirty = true;
                    continue;
                };
                if msg.header.sequence_number != seq {
                    self.dirty = true;
                    continue;
                }
                match msg.payload {
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::Error(e) => {
                        if e.code.is_none() {
                            return Ok(out);
                        }
                        return Err(e.to_io());
                    }
                    NetlinkPayload::InnerMessage(m) => {
                        out.push(m);
                        if single {
                            return Ok(out);
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    fn dump(
        &mut self,
        buf: &mut [u8],
        msg: RouteNetlinkMessage,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        let seq = self.send(msg, NLM_F_REQUEST | NLM_F_DUMP)?;
        self.collect(buf, seq, false)
    }

    /// Drain pending notifications without blocking; true if any came.
    fn drain(&mut self, buf: &mut [u8]) -> bool {
        let mut any = false;
        loop {
            // SAFETY: as in collect.
            let n = unsafe {
                libc::recv(
                    self.sock.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n > 0 {
                any = true;
                continue;
            }
            if n < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOBUFS) {
                any = true;
                continue;
            }
            return any;
        }
    }

    fn read_topology(&mut self, buf: &mut [u8]) -> io::Result<Topology> {
        self.dirty = false;
        let mut topo = Topology::default();
        let mut masters = Vec::new();
        for m in self.dump(buf, RouteNetlinkMessage::GetLink(LinkMessage::default()))? {
            if let RouteNetlinkMessage::NewLink(lm) = m {
                let (l, master) = link_from(&lm);
                masters.push(master);
                topo.links.push(l);
            }
        }
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
        for m in self.dump(
            buf,
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
        )? {
            if let RouteNetlinkMessage::NewAddress(am) = m {
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
                    topo.addresses.push(Address {
                        ifindex: am.header.index,
                        ifname: names.get(&am.header.index).cloned().unwrap_or_default(),
                        address: format!("{ip}/{}", am.header.prefix_len),
                    });
                }
            }
        }
        for m in self.dump(buf, RouteNetlinkMessage::GetRoute(RouteMessage::default()))? {
            if let RouteNetlinkMessage::NewRoute(rm) = m {
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
                    continue;
                }
                let destination = match dst {
                    Some(d) => format!("{d}/{}", rm.header.destination_prefix_length),
                    None => "default".into(),
                };
                topo.routes.push(Route {
                    destination,
                    gateway: gw,
                    dev: oif.and_then(|i| names.get(&i).cloned()),
                });
            }
        }
        Ok(topo)
    }

    /// Counters of every link; false if a link appeared that the topology
    /// does not know (then the topology is re-read).
    fn read_counters(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        let mut req = StatsMessage::default();
        req.header.filter_mask = StatsFilterMask::Link64;
        let msgs = self.dump(buf, RouteNetlinkMessage::GetStats(req))?;
        let Some(topo) = self.topo.as_mut() else {
            return Ok(false);
        };
        let mut seen = 0;
        for m in msgs {
            if let RouteNetlinkMessage::NewStats(sm) = m {
                let Some(l) = topo.links.iter_mut().find(|l| l.index == sm.header.ifindex) else {
                    return Ok(false);
                };
                seen += 1;
                for a in &sm.attributes {
                    if let StatsAttribute::Link64(s) = a {
                        l.stats = counters_from(s);
                    }
                }
            }
        }
        Ok(seen == topo.links.len())
    }

    /// The nsid this namespace gives the namespace at `path`, if any.
    fn nsid_of(&mut self, buf: &mut [u8], path: &Path) -> Option<i32> {
        let f = File::open(path).ok()?;
        let mut req = NsidMessage::default();
        req.attributes.push(NsidAttribute::Fd(f.as_raw_fd() as u32));
        let seq = self
            .send(RouteNetlinkMessage::GetNsId(req), NLM_F_REQUEST)
            .ok()?;
        let msgs = self.collect(buf, seq, true).ok()?;
        msgs.into_iter().find_map(|m| match m {
            RouteNetlinkMessage::NewNsId(n) => n.attributes.iter().find_map(|a| match a {
                NsidAttribute::Id(i) if *i >= 0 => Some(*i),
                _ => None,
            }),
            _ => None,
        })
    }

    /// Bring the namespace up to date: counters, or the topology after a
    /// change. `pending`: the socket may hold notifications (when the
    /// reader cannot tell, always true).
    fn update(&mut self, buf: &mut [u8], stats: &mut ReadStats, pending: bool) -> io::Result<()> {
        if pending && self.drain(buf) {
            self.dirty = true;
        }
        if self.topo.is_some() && !self.dirty {
            stats.counter_dumps += 1;
            if self.read_counters(buf)? {
                return Ok(());
            }
        }
        stats.topology_dumps += 1;
        let t = self.read_topology(buf)?;
        self.topo = Some(t);
        Ok(())
    }
}

/// Where a link is in a snapshot: (namespace inode, position of the
/// namespace, position of the link in it).
type LinkAt = (u64, usize, usize);

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
    fn watch(&mut self, sock: &Socket, inode: u64) {
        let Some(ep) = &self.epoll else { return };
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: inode,
        };
        // SAFETY: valid epoll and socket fds, a valid event.
        let r = unsafe {
            libc::epoll_ctl(
                ep.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                sock.as_raw_fd(),
                &mut ev,
            )
        };
        if r != 0 {
            self.epoll = None; // cannot tell any more: drain them all
        }
    }

    /// Inodes of the namespaces whose sockets hold something to read
    /// (notifications, or an error such as an overrun); `None` when
    /// unknown.
    fn ready(&mut self) -> Option<std::collections::HashSet<u64>> {
        let ep = self.epoll.as_ref()?;
        let mut out = std::collections::HashSet::new();
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

    pub fn new() -> Reader {
        raise_nofile();
        Reader {
            slots: HashMap::new(),
            epoll: new_epoll(),
            buf: vec![0u8; 256 * 1024],
            stats: ReadStats::default(),
        }
    }

    /// Open sockets for namespaces not open yet (and retry failed ones
    /// after a while), on a dedicated thread; forget vanished ones.
    fn open_new(&mut self, found: &[Found]) {
        let live: std::collections::HashSet<u64> = found.iter().map(|f| f.inode).collect();
        self.slots.retain(|ino, _| live.contains(ino));
        let todo: Vec<(u64, std::path::PathBuf)> = found
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
        // Entering a namespace costs the kernel an RCU grace period or so:
        // spread many over a few dedicated threads.
        let threads = todo.len().div_ceil(64).clamp(1, 16);
        let chunk = todo.len().div_ceil(threads);
        let opened: Vec<(u64, Result<Socket, String>)> = std::thread::scope(|s| {
            let handles: Vec<_> = todo
                .chunks(chunk)
                .map(|part| {
                    s.spawn(move || {
                        let back = match File::open("/proc/thread-self/ns/net") {
                            Ok(f) => f,
                            Err(e) => {
                                return part
                                    .iter()
                                    .map(|(i, _)| {
                                        (*i, Err(format!("cannot open own namespace: {e}")))
                                    })
                                    .collect::<Vec<_>>();
                            }
                        };
                        part.iter()
                            .map(|(ino, path)| (*ino, open_in(path, *ino, &back)))
                            .collect()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        });
        for (ino, r) in opened {
            let slot = match r {
                Ok(sock) => {
                    self.stats.sockets_opened += 1;
                    self.watch(&sock, ino);
                    Slot::Open(Box::new(Conn {
                        sock,
                        seq: 0,
                        topo: None,
                        dirty: true,
                        nsids: HashMap::new(),
                    }))
                }
                Err(error) => Slot::Failed {
                    error,
                    at: Instant::now(),
                },
            };
            self.slots.insert(ino, slot);
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
        let mut namespaces = Vec::with_capacity(found.len());
        let mut paths: HashMap<u64, std::path::PathBuf> = HashMap::with_capacity(found.len());
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
            paths.insert(f.inode, f.path);
            match self.slots.get_mut(&f.inode) {
                Some(Slot::Open(c)) => match c.update(
                    &mut self.buf,
                    &mut self.stats,
                    ready.as_ref().is_none_or(|r| r.contains(&f.inode)),
                ) {
                    Ok(()) => {
                        let t = c.topo.as_ref().expect("read");
                        ns.links = t.links.clone();
                        ns.addresses = t.addresses.clone();
                        ns.routes = t.routes.clone();
                    }
                    Err(e) => {
                        ns.error = Some(format!("netlink: {e}"));
                        c.topo = None;
                    }
                },
                Some(Slot::Failed { error, .. }) => ns.error = Some(error.clone()),
                None => ns.error = Some("not opened".into()),
            }
            namespaces.push(ns);
        }
        let mut snap = Snapshot {
            taken_at: now_secs(),
            interval: None,
            namespaces,
            totals: Default::default(),
            overlays: Vec::new(),
        };
        self.resolve_peers(&mut snap, &paths);
        snap
    }

    /// Fill in `peer` of every veth (and `parent_netns_inode` of links
    /// whose lower device lives in another namespace).
    fn resolve_peers(&mut self, snap: &mut Snapshot, paths: &HashMap<u64, std::path::PathBuf>) {
        // (index, IFLA_LINK) of veths that point into another namespace ->
        // where those links are.
        let mut by_pair: HashMap<(u32, u32), Vec<LinkAt>> = HashMap::new();
        for (ni, ns) in snap.namespaces.iter().enumerate() {
            for (li, l) in ns.links.iter().enumerate() {
                if l.kind == "veth" && l.link_netnsid.is_some() {
                    if let Some(j) = l.link_index {
                        by_pair
                            .entry((l.index, j))
                            .or_default()
                            .push((ns.inode, ni, li));
                    }
                }
            }
        }
        // Decide first (reading names anywhere), then write.
        let mut peers: Vec<(usize, usize, PeerRef)> = Vec::new();
        let mut parents: Vec<(usize, usize, Option<u64>)> = Vec::new();
        let nss = &snap.namespaces;
        for (ni, ns) in nss.iter().enumerate() {
            let inode = ns.inode;
            let mut conn = match self.slots.get_mut(&inode) {
                Some(Slot::Open(c)) => Some(c),
                _ => None,
            };
            for (li, l) in ns.links.iter().enumerate() {
                let Some(j) = l.link_index else { continue };
                match (l.kind.as_str(), l.link_netnsid) {
                    ("veth", None) => {
                        // Both ends here.
                        peers.push((
                            ni,
                            li,
                            PeerRef {
                                netns_inode: Some(inode),
                                ifindex: j,
                                ifname: ns.link(j).map(|p| p.name.clone()),
                            },
                        ));
                    }
                    ("veth", Some(nsid)) => {
                        let cands: Vec<LinkAt> = by_pair
                            .get(&(j, l.index))
                            .map(|v| v.iter().filter(|(i, _, _)| *i != inode).copied().collect())
                            .unwrap_or_default();
                        let known = conn.as_ref().and_then(|c| c.nsids.get(&nsid).copied());
                        let pick = if let Some(k) = known {
                            cands.iter().find(|(i, _, _)| *i == k).copied()
                        } else if cands.len() == 1 {
                            Some(cands[0])
                        } else if let Some(c) = conn.as_mut() {
                            let mut hit = None;
                            for &(ci, cn, cl) in &cands {
                                if let Some(p) = paths.get(&ci) {
                                    if c.nsid_of(&mut self.buf, p) == Some(nsid) {
                                        c.nsids.insert(nsid, ci);
                                        hit = Some((ci, cn, cl));
                                        break;
                                    }
                                }
                            }
                            hit
                        } else {
                            None
                        };
                        peers.push((
                            ni,
                            li,
                            match pick {
                                Some((ino, pn, pl)) => PeerRef {
                                    netns_inode: Some(ino),
                                    ifindex: j,
                                    ifname: Some(nss[pn].links[pl].name.clone()),
                                },
                                None => PeerRef {
                                    netns_inode: None,
                                    ifindex: j,
                                    ifname: None,
                                },
                            },
                        ));
                    }
                    (_, Some(nsid)) => {
                        parents.push((
                            ni,
                            li,
                            conn.as_ref().and_then(|c| c.nsids.get(&nsid).copied()),
                        ));
                    }
                    _ => {}
                }
            }
        }
        for (ni, li, p) in peers {
            snap.namespaces[ni].links[li].peer = Some(p);
        }
        for (ni, li, p) in parents {
            snap.namespaces[ni].links[li].parent_netns_inode = p;
        }
    }
}
