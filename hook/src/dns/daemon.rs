//! `wirehook dns`: the per-host resolver daemon.
//!
//! One process per run directory (it holds `locks/dns.lock` for its whole
//! life), started on demand by the hook (see [`super::ensure_running`]),
//! gone a second after its last container. It keeps, for every attached
//! container:
//!
//! - a UDP and a TCP socket bound to 127.0.0.11:53 *inside the container's
//!   network namespace* (docker's model): the event-loop thread enters the
//!   namespace through the record's bind mount, binds, and returns. The
//!   socket a query arrives on says which container asks, so no source
//!   address is ever looked up and overlapping subnets do not matter. The
//!   trade-off: the container cannot bind 0.0.0.0:53 itself (docker binds a
//!   random port and DNATs :53 to it, at the price of nftables rules and
//!   conntrack in every container, which a firewall flush inside the
//!   container breaks);
//! - a pidfd of its process: when it becomes readable the container is
//!   gone, and its names go with it (within the loop's next turn), whether
//!   or not a poststop ever comes.
//!
//! Queries are answered from the name table ([`wirehook_shared::dns`]);
//! everything else is relayed as bytes to the upstreams of the host's
//! `resolv.conf` from sockets in the daemon's own (the host's) namespace,
//! so a loopback upstream such as systemd-resolved's 127.0.0.53 works. The
//! relay rewrites the id to a random one of ours, checks that the answer's
//! question is the query's, tries the next upstream after 2 s or a
//! SERVFAIL/REFUSED, and answers SERVFAIL when none is left. TCP queries
//! are served on a thread per connection (at most 64), so a slow client
//! never stalls the loop.
//!
//! The daemon's state is rebuilt from the records at start: every live
//! container whose record wants names is attached again before the control
//! socket appears, so a client that can connect finds every name back.
//! The event loop runs on a thread of its own while the main thread only
//! waits: `/proc/PID/ns/net` (the main thread's namespace) then always
//! shows the host's, even while the loop is inside a container's, so `gc`
//! never takes the daemon for a process of a container.

use std::collections::HashMap;
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};
use wirehook_shared::dns::control::{self, Attached, Request, Response, Status};
use wirehook_shared::dns::resolvconf;
use wirehook_shared::dns::table::{Endpoint, Table};
use wirehook_shared::dns::wire::{self, rcode};
use wirehook_shared::dns::{self, Asker, Outcome, Transport, RESOLVER_ADDR};
use wirehook_shared::netns::NetNs;
use wirehook_shared::network::Driver as NetDriver;
use wirehook_shared::overlay::NameRecord;
use wirehook_shared::paths::Paths;
use wirehook_shared::store::{self, Records};

use crate::log;

/// How long an upstream gets before the next one is tried.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// How often in-flight queries are checked against their deadline.
const SCAN: Duration = Duration::from_millis(100);
/// Forwarded queries in flight, at most; more get SERVFAIL at once.
const MAX_PENDING: usize = 4096;
/// ... and from one container, so one cannot starve the others.
const MAX_PENDING_PER_CTR: usize = 256;
/// Concurrent TCP connections, at most; more are closed at once.
const MAX_TCP: usize = 64;
/// ... and from one container.
const MAX_TCP_PER_CTR: usize = 8;
/// Idle time on a TCP connection before it is closed.
const TCP_IDLE: Duration = Duration::from_secs(5);
/// How long the daemon stays with no container before it exits (so a
/// container restarted at once does not pay for a new daemon).
const LINGER: Duration = Duration::from_secs(1);
/// How often the host's resolv.conf is checked for changes.
const RESOLV_CHECK: Duration = Duration::from_secs(1);
/// Datagrams read from one socket per wake-up (fairness between containers).
const BATCH: usize = 64;

const K_UDP: u64 = 0;
const K_TCP: u64 = 1;
const K_PID: u64 = 2;
const K_CONTROL: u64 = 3;
const K_CONN: u64 = 4;
const K_UPSTREAM: u64 = 5;

fn token(kind: u64, key: u64) -> u64 {
    (key << 3) | kind
}

/// The daemon's entry point: `wirehook dns`.
pub fn run(paths: &Paths) -> Result<()> {
    let lock = take_lock(paths)?;
    raise_nofile();
    let paths = paths.clone();
    // The loop gets its own thread (see the module docs); this one waits.
    let loop_thread = std::thread::Builder::new()
        .name("dns-loop".into())
        .spawn(move || -> Result<()> {
            let mut d = Daemon::new(paths)?;
            d.restore_and_listen()?;
            d.run()
        })
        .context("start the resolver's thread")?;
    let res = match loop_thread.join() {
        Ok(r) => r,
        Err(_) => Err(anyhow::anyhow!("the resolver's loop panicked")),
    };
    drop(lock);
    res
}

/// `locks/dns.lock`, held for the daemon's life. An exiting daemon may
/// still hold it for a moment: wait up to 5 s.
fn take_lock(paths: &Paths) -> Result<File> {
    let path = control::lock_path(paths);
    wirehook_shared::fsutil::ensure_dir(&paths.locks_dir())?;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("open {}", path.display()))?;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(f);
        }
        if Instant::now() > deadline {
            bail!(
                "another resolver holds {} (see {})",
                path.display(),
                control::pid_path(paths).display()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Three descriptors per container (UDP, TCP, pidfd): lift the soft limit
/// of open files to the hard one.
fn raise_nofile() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain get/setrlimit on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

struct Epoll(OwnedFd);

impl Epoll {
    fn new() -> std::io::Result<Epoll> {
        // SAFETY: epoll_create1 returns a new descriptor or -1.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a descriptor we just got and own.
        Ok(Epoll(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn add(&self, fd: RawFd, token: u64) -> std::io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: valid descriptors and a valid event struct.
        if unsafe { libc::epoll_ctl(self.0.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    fn del(&self, fd: RawFd) {
        // SAFETY: as above; failure (not registered) is harmless.
        unsafe {
            libc::epoll_ctl(
                self.0.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd,
                std::ptr::null_mut(),
            )
        };
    }

    fn wait(&self, events: &mut [libc::epoll_event], timeout: Duration) -> usize {
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: the buffer is valid for events.len() entries.
        let n = unsafe {
            libc::epoll_wait(
                self.0.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as i32,
                ms,
            )
        };
        n.max(0) as usize
    }
}

/// `pidfd_open(2)`: a descriptor that becomes readable when `pid` exits.
fn pidfd_open(pid: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: a plain system call; the result is a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a descriptor we just got and own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// An attached container.
struct Ctr {
    id: String,
    inode: u64,
    udp: UdpSocket,
    tcp: TcpListener,
    pidfd: OwnedFd,
    asker: Asker,
    networks: Vec<String>,
    names: Vec<String>,
    /// Its forwarded queries in flight.
    inflight: usize,
    /// Its TCP connections being served.
    tcp_conns: Arc<AtomicUsize>,
    /// Overlay networks its names are published on in the cluster store.
    published: Vec<String>,
    /// When a `prepare` bound its sockets, until its `attach` (see
    /// [`control::PREPARE_TTL`]).
    prepared: Option<Instant>,
}

/// A control connection, until its request line is complete.
struct Conn {
    stream: UnixStream,
    buf: Vec<u8>,
}

struct Upstream {
    addr: SocketAddr,
    sock: UdpSocket,
}

/// A forwarded query.
struct Pending {
    ctr: u64,
    client: SocketAddr,
    orig_id: u16,
    /// The query as sent (our id in it): for the next upstream, and to
    /// check that an answer is to this question.
    query: Vec<u8>,
    upstream: usize,
    /// When the current upstream has had its time.
    deadline: Instant,
}

struct Daemon {
    paths: Paths,
    ep: Epoll,
    table: Arc<RwLock<Table>>,
    ctrs: HashMap<u64, Ctr>,
    by_id: HashMap<String, u64>,
    next_key: u64,
    control: Option<UnixListener>,
    control_inode: u64,
    conns: HashMap<u64, Conn>,
    ups: Vec<Upstream>,
    ups_addrs: Arc<Vec<SocketAddr>>,
    resolv_path: PathBuf,
    resolv_mtime: Option<SystemTime>,
    resolv_loaded: bool,
    resolv_checked: Instant,
    pending: HashMap<u16, Pending>,
    /// When in-flight queries are next checked for their deadline.
    next_scan: Instant,
    rng: u64,
    buf: Vec<u8>,
    ubuf: Vec<u8>,
    out: Vec<u8>,
    tcp_active: Arc<AtomicUsize>,
    idle_since: Option<Instant>,
    /// Containers came or went since memory was last given back.
    trim_due: bool,
    /// Names on overlay networks across hosts (a cluster store is set).
    names: Option<super::cluster::Names>,
}

fn lock_table(t: &RwLock<Table>) -> std::sync::RwLockReadGuard<'_, Table> {
    t.read().unwrap_or_else(|e| e.into_inner())
}

impl Daemon {
    fn new(paths: Paths) -> Result<Daemon> {
        let resolv_path = resolvconf::host_path(&paths);
        let mut seed = [0u8; 8];
        // SAFETY: getrandom into a local buffer.
        unsafe { libc::getrandom(seed.as_mut_ptr().cast(), seed.len(), 0) };
        let table = Arc::new(RwLock::new(Table::new()));
        let names = super::cluster::Names::start(&paths, table.clone());
        let mut d = Daemon {
            ep: Epoll::new().context("epoll_create")?,
            paths,
            table,
            ctrs: HashMap::new(),
            by_id: HashMap::new(),
            next_key: 1,
            control: None,
            control_inode: 0,
            conns: HashMap::new(),
            ups: Vec::new(),
            ups_addrs: Arc::new(Vec::new()),
            resolv_path,
            resolv_mtime: None,
            resolv_loaded: false,
            resolv_checked: Instant::now(),
            pending: HashMap::new(),
            next_scan: Instant::now(),
            rng: u64::from_ne_bytes(seed) | 1,
            buf: vec![0; 4096],
            ubuf: vec![0; 65535],
            out: Vec::with_capacity(4096),
            tcp_active: Arc::new(AtomicUsize::new(0)),
            idle_since: None,
            trim_due: false,
            names,
        };
        d.load_upstreams();
        Ok(d)
    }

    /// Attach every live container from the records, then open the control
    /// socket under its final name (atomically: clients that reach it find
    /// every name back).
    fn restore_and_listen(&mut self) -> Result<()> {
        let pid = std::process::id();
        let _ = std::fs::write(control::pid_path(&self.paths), format!("{pid}\n"));
        let tmp = self.paths.run_dir.join(format!(".dns.sock.{pid}"));
        let _ = std::fs::remove_file(&tmp);
        let listener =
            UnixListener::bind(&tmp).with_context(|| format!("bind {}", tmp.display()))?;
        let _ = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600));
        listener.set_nonblocking(true)?;
        self.ep
            .add(listener.as_raw_fd(), token(K_CONTROL, 0))
            .context("epoll_ctl")?;
        let mut attached = 0;
        for rec in Records::new(&self.paths).list() {
            if !rec.wants_dns() || !store::process_alive(rec.pid, rec.pid_start) {
                continue;
            }
            let id = rec.id.clone();
            match self.attach(&id, Some(rec)) {
                Ok(()) => attached += 1,
                Err(e) => log::warn(format!("cannot attach {id} again: {e}")),
            }
        }
        let sock = control::socket_path(&self.paths);
        std::fs::rename(&tmp, &sock)
            .with_context(|| format!("rename {} to {}", tmp.display(), sock.display()))?;
        self.control_inode = std::fs::metadata(&sock).map(|m| m.ino()).unwrap_or(0);
        self.control = Some(listener);
        if let Some(n) = &self.names {
            n.restored();
        }
        log::info(format!(
            "resolver {pid} ready: {attached} container(s), upstreams [{}] from {}",
            self.ups
                .iter()
                .map(|u| u.addr.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            self.resolv_path.display()
        ));
        Ok(())
    }

    fn run(&mut self) -> Result<()> {
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
        loop {
            let timeout = self.next_timeout();
            let n = self.ep.wait(&mut events, timeout);
            for ev in &events[..n] {
                let (kind, key) = (ev.u64 & 7, ev.u64 >> 3);
                match kind {
                    K_UDP => self.serve_udp(key),
                    K_TCP => self.accept_tcp(key),
                    K_PID => {
                        if let Some(c) = self.ctrs.get(&key) {
                            log::info(format!("{}: its process is gone: names removed", c.id));
                        }
                        self.detach_key(key);
                    }
                    K_CONTROL => self.accept_control(),
                    K_CONN => self.serve_conn(key),
                    K_UPSTREAM => self.serve_upstream(key as usize),
                    _ => {}
                }
            }
            let now = Instant::now();
            self.expire(now);
            if now.duration_since(self.resolv_checked) >= RESOLV_CHECK {
                self.resolv_checked = now;
                self.load_upstreams();
                self.drop_unattached(now);
                // A burst of forwarded queries leaves a big table behind.
                if self.pending.is_empty() && self.pending.capacity() > 1024 {
                    self.pending.shrink_to(1024);
                    self.trim_due = true;
                }
                if std::mem::take(&mut self.trim_due) {
                    // Parsing records leaves freed memory between the
                    // table's long-lived allocations: give it back.
                    #[cfg(target_env = "gnu")]
                    // SAFETY: malloc_trim only releases free memory.
                    unsafe {
                        libc::malloc_trim(0);
                    }
                }
            }
            // Control connections are no reason to stay: an operator's
            // or gc's status calls every few ms would keep a resolver with
            // no container forever. One that arrives as it goes gets EOF,
            // and a client that needs it starts another.
            if self.ctrs.is_empty() && self.pending.is_empty() {
                let since = *self.idle_since.get_or_insert(now);
                if now.duration_since(since) >= LINGER {
                    self.shutdown();
                    return Ok(());
                }
            } else {
                self.idle_since = None;
            }
        }
    }

    fn next_timeout(&self) -> Duration {
        let mut t = RESOLV_CHECK;
        if !self.pending.is_empty() {
            t = t.min(self.next_scan.saturating_duration_since(Instant::now()));
        }
        if let Some(since) = self.idle_since {
            t = t.min((since + LINGER).saturating_duration_since(Instant::now()));
        }
        // Round up so a deadline 0.3 ms away is not a busy loop.
        t.max(Duration::from_millis(1))
    }

    /// Remove the control socket (new clients then start a new daemon,
    /// which waits for our lock), close what is queued, and go.
    fn shutdown(&mut self) {
        let sock = control::socket_path(&self.paths);
        if std::fs::metadata(&sock).is_ok_and(|m| m.ino() == self.control_inode) {
            let _ = std::fs::remove_file(&sock);
        }
        if let Some(l) = self.control.take() {
            // Connections that raced the unlink get EOF and retry.
            while l.accept().is_ok() {}
        }
        let pid_file = control::pid_path(&self.paths);
        if std::fs::read_to_string(&pid_file)
            .is_ok_and(|p| p.trim() == std::process::id().to_string())
        {
            let _ = std::fs::remove_file(&pid_file);
        }
        if let Some(n) = self.names.take() {
            n.stop();
        }
        log::info("resolver exiting: no container left");
    }

    // --- containers ---------------------------------------------------

    /// Attach container `id` from its record (or refresh it: same
    /// namespace, names and networks from the record again).
    fn attach(&mut self, id: &str, given: Option<store::ContainerRecord>) -> Result<(), String> {
        let rec = match given {
            Some(rec) if rec.id == id => rec,
            Some(rec) => return Err(format!("a record of {} sent to attach {id}", rec.id)),
            None => Records::new(&self.paths)
                .get(id)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("no record of container {id}"))?,
        };
        if let Some(key) = self.known(id, rec.netns_inode) {
            if let Some(c) = self.ctrs.get_mut(&key) {
                c.prepared = None;
            }
            self.refresh(key, &rec);
            return Ok(());
        }
        if !rec.wants_dns() {
            return Ok(());
        }
        let ns = open_namespace(&rec)?;
        let key = self.listen_in(id, &ns, rec.pid, rec.pid_start, None)?;
        self.refresh(key, &rec);
        Ok(())
    }

    /// The key of container `id` if it is attached or prepared in the
    /// namespace `inode`; one of that id in another namespace is an
    /// earlier run of it, let go here.
    fn known(&mut self, id: &str, inode: u64) -> Option<u64> {
        let &key = self.by_id.get(id)?;
        if self.ctrs.get(&key).is_some_and(|c| c.inode == inode) {
            return Some(key);
        }
        self.detach_key(key);
        None
    }

    /// Bind container `id`'s sockets ahead of its record (see
    /// [`control`]): what [`Self::attach`] then finds in place.
    fn prepare(&mut self, id: &str, pid: i32, pid_start: u64, inode: u64) -> Result<(), String> {
        if self.known(id, inode).is_some() {
            return Ok(());
        }
        let ns = NetNs::of_pid(pid)
            .ok()
            .filter(|ns| ns.inode() == inode)
            .ok_or_else(|| format!("process {pid} of {id} is not in namespace {inode}"))?;
        self.listen_in(id, &ns, pid, pid_start, Some(Instant::now()))
            .map(|_| ())
    }

    /// Listen in `ns` for container `id` (process `pid`, started at
    /// `pid_start`), with no names yet; its key.
    fn listen_in(
        &mut self,
        id: &str,
        ns: &NetNs,
        pid: i32,
        pid_start: u64,
        prepared: Option<Instant>,
    ) -> Result<u64, String> {
        let pidfd =
            pidfd_open(pid).map_err(|e| format!("cannot watch process {pid} of {id}: {e}"))?;
        // The pid is the container's only if it started when the record says.
        if !store::process_alive(pid, pid_start) {
            return Err(format!("the process of container {id} is gone"));
        }
        let (udp, tcp) = bind_in(ns).map_err(|e| {
            format!("cannot listen on {RESOLVER_ADDR}:53 in container {id}'s namespace: {e}")
        })?;
        let key = self.next_key;
        self.next_key += 1;
        for (fd, kind) in [
            (udp.as_raw_fd(), K_UDP),
            (tcp.as_raw_fd(), K_TCP),
            (pidfd.as_raw_fd(), K_PID),
        ] {
            if let Err(e) = self.ep.add(fd, token(kind, key)) {
                for fd in [udp.as_raw_fd(), tcp.as_raw_fd(), pidfd.as_raw_fd()] {
                    self.ep.del(fd);
                }
                return Err(format!("epoll_ctl: {e}"));
            }
        }
        self.ctrs.insert(
            key,
            Ctr {
                id: id.to_string(),
                inode: ns.inode(),
                udp,
                tcp,
                pidfd,
                asker: Asker::default(),
                networks: Vec::new(),
                names: Vec::new(),
                inflight: 0,
                tcp_conns: Arc::new(AtomicUsize::new(0)),
                published: Vec::new(),
                prepared,
            },
        );
        self.by_id.insert(id.to_string(), key);
        self.trim_due = true;
        Ok(key)
    }

    /// Let go of prepared containers whose attach never came.
    fn drop_unattached(&mut self, now: Instant) {
        let stale: Vec<u64> = self
            .ctrs
            .iter()
            .filter(|(_, c)| {
                c.prepared
                    .is_some_and(|t| now.duration_since(t) >= control::PREPARE_TTL)
            })
            .map(|(k, _)| *k)
            .collect();
        for key in stale {
            if let Some(c) = self.ctrs.get(&key) {
                log::warn(format!("{}: prepared but never attached: let go", c.id));
            }
            self.detach_key(key);
        }
    }

    /// Put the record's names and networks in the table and the asker.
    fn refresh(&mut self, key: u64, rec: &store::ContainerRecord) {
        let mut table = self.table.write().unwrap_or_else(|e| e.into_inner());
        table.remove_container(&rec.id);
        let mut nets = Vec::new();
        let mut networks = Vec::new();
        let mut published = Vec::new();
        for iface in rec.interfaces.iter().filter(|i| i.dns) {
            let ep = Endpoint::new(
                &rec.id,
                &iface.network,
                rec.dns_names_on(iface),
                iface.addresses.iter().map(|a| a.ip()),
            );
            let net = table.net_id(&iface.network);
            if !nets.contains(&net) {
                nets.push(net);
                networks.push(iface.network.clone());
            }
            if let Some(n) = &self.names {
                if iface.driver == NetDriver::Overlay {
                    let record = NameRecord {
                        names: ep.names.clone(),
                        addresses: ep
                            .v4
                            .iter()
                            .map(|a| IpAddr::V4(*a))
                            .chain(ep.v6.iter().map(|a| IpAddr::V6(*a)))
                            .collect(),
                    };
                    n.put(&iface.network, &rec.id, &record);
                    published.push(iface.network.clone());
                }
            }
            table.insert(ep);
        }
        // Every name it has on any network (aliases may be per network).
        let mut shown: Vec<String> = Vec::new();
        for e in table.endpoints_of(&rec.id) {
            for n in &e.names {
                if !shown.contains(n) {
                    shown.push(n.clone());
                }
            }
        }
        drop(table);
        if let Some(c) = self.ctrs.get_mut(&key) {
            c.asker = Asker {
                networks: nets,
                forward: rec.interfaces.iter().any(|i| !i.internal),
            };
            c.networks = networks;
            c.names = shown;
            let before = std::mem::replace(&mut c.published, published);
            if let Some(n) = &self.names {
                for net in before.iter().filter(|n| !c.published.contains(n)) {
                    n.delete(net, &rec.id);
                }
            }
        }
    }

    fn detach_key(&mut self, key: u64) {
        let Some(c) = self.ctrs.remove(&key) else {
            return;
        };
        for fd in [c.udp.as_raw_fd(), c.tcp.as_raw_fd(), c.pidfd.as_raw_fd()] {
            self.ep.del(fd);
        }
        self.by_id.remove(&c.id);
        if let Some(n) = &self.names {
            for net in &c.published {
                n.delete(net, &c.id);
            }
        }
        self.trim_due = true;
        self.table
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove_container(&c.id);
        // Sockets and pidfd close here.
    }

    fn status(&self) -> Status {
        let mut containers: Vec<Attached> = self
            .ctrs
            .values()
            .filter(|c| c.prepared.is_none())
            .map(|c| Attached {
                id: c.id.clone(),
                netns_inode: c.inode,
                networks: c.networks.clone(),
                names: c.names.clone(),
                forward: c.asker.forward,
            })
            .collect();
        containers.sort_by(|a, b| a.id.cmp(&b.id));
        Status {
            pid: std::process::id(),
            upstreams: self.ups.iter().map(|u| u.addr.to_string()).collect(),
            resolv_conf: self.resolv_path.display().to_string(),
            containers,
        }
    }

    // --- control ------------------------------------------------------

    fn accept_control(&mut self) {
        let Some(l) = &self.control else { return };
        while let Ok((stream, _)) = l.accept() {
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            let key = self.next_key;
            self.next_key += 1;
            if self.ep.add(stream.as_raw_fd(), token(K_CONN, key)).is_ok() {
                self.conns.insert(
                    key,
                    Conn {
                        stream,
                        buf: Vec::new(),
                    },
                );
            }
        }
    }

    fn serve_conn(&mut self, key: u64) {
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        let mut chunk = [0u8; 1024];
        let line = loop {
            match conn.stream.read(&mut chunk) {
                Ok(0) => break None,
                Ok(n) => {
                    conn.buf.extend_from_slice(&chunk[..n]);
                    if let Some(end) = conn.buf.iter().position(|b| *b == b'\n') {
                        break Some(conn.buf[..end].to_vec());
                    }
                    if conn.buf.len() > control::MAX_REQUEST {
                        break None;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => break None,
            }
        };
        let Some(conn) = self.conns.remove(&key) else {
            return;
        };
        self.ep.del(conn.stream.as_raw_fd());
        let Some(line) = line else { return };
        let resp = match serde_json::from_slice::<Request>(&line) {
            Ok(Request::Attach { id, record }) => match store::validate_id(&id) {
                Err(e) => Response::error(e.to_string()),
                Ok(()) => match self.attach(&id, record.map(|r| *r)) {
                    Ok(()) => Response::ok(),
                    Err(e) => {
                        log::warn(format!("attach {id}: {e}"));
                        Response::error(e)
                    }
                },
            },
            Ok(Request::Prepare {
                id,
                pid,
                pid_start,
                netns_inode,
            }) => match store::validate_id(&id) {
                Err(e) => Response::error(e.to_string()),
                Ok(()) => match self.prepare(&id, pid, pid_start, netns_inode) {
                    Ok(()) => Response::ok(),
                    Err(e) => {
                        log::warn(format!("prepare {id}: {e}"));
                        Response::error(e)
                    }
                },
            },
            Ok(Request::Detach { id }) => {
                if let Some(&k) = self.by_id.get(&id) {
                    self.detach_key(k);
                }
                Response::ok()
            }
            Ok(Request::Status) => Response {
                ok: true,
                error: None,
                status: Some(self.status()),
            },
            Err(e) => Response::error(format!("bad request: {e}")),
        };
        let mut stream = conn.stream;
        let mut out = serde_json::to_vec(&resp).expect("serializable response");
        out.push(b'\n');
        // Small answers fit the socket's buffer; a long status may not.
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
        let _ = stream.write_all(&out);
    }

    // --- queries ------------------------------------------------------

    fn serve_udp(&mut self, key: u64) {
        for _ in 0..BATCH {
            let Some(c) = self.ctrs.get(&key) else { return };
            let (n, from) = match c.udp.recv_from(&mut self.buf) {
                Ok(x) => x,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            let outcome = {
                let table = lock_table(&self.table);
                dns::respond(
                    &table,
                    &c.asker,
                    &self.buf[..n],
                    Transport::Udp,
                    &mut self.out,
                )
            };
            match outcome {
                Outcome::Reply => {
                    let _ = c.udp.send_to(&self.out, from);
                }
                Outcome::Forward => self.forward(key, from, n),
                Outcome::Drop => {}
            }
        }
    }

    fn reply_error(&mut self, key: u64, to: SocketAddr, n: usize, code: u8) {
        if dns::error_reply(&self.buf[..n], code, &mut self.out) {
            if let Some(c) = self.ctrs.get(&key) {
                let _ = c.udp.send_to(&self.out, to);
            }
        }
    }

    fn fresh_id(&mut self) -> u16 {
        loop {
            // xorshift64*
            self.rng ^= self.rng >> 12;
            self.rng ^= self.rng << 25;
            self.rng ^= self.rng >> 27;
            let id = (self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 48) as u16;
            if !self.pending.contains_key(&id) {
                return id;
            }
        }
    }

    /// Relay the query in `buf[..n]` from container `key` upstream.
    fn forward(&mut self, key: u64, client: SocketAddr, n: usize) {
        let busy = !matches!(self.ctrs.get(&key), Some(c) if c.inflight < MAX_PENDING_PER_CTR);
        if self.ups.is_empty() || self.pending.len() >= MAX_PENDING || busy {
            self.reply_error(key, client, n, rcode::SERVFAIL);
            return;
        }
        let Some(orig_id) = wire::message_id(&self.buf[..n]) else {
            return;
        };
        let id = self.fresh_id();
        let mut query = self.buf[..n].to_vec();
        wire::set_message_id(&mut query, id);
        let p = Pending {
            ctr: key,
            client,
            orig_id,
            query,
            upstream: 0,
            deadline: Instant::now() + UPSTREAM_TIMEOUT,
        };
        self.pending.insert(id, p);
        if let Some(c) = self.ctrs.get_mut(&key) {
            c.inflight += 1;
        }
        self.send_upstream(id, 0);
    }

    /// Remove pending query `id` (answered or given up).
    fn take_pending(&mut self, id: u16) -> Option<Pending> {
        let p = self.pending.remove(&id)?;
        if let Some(c) = self.ctrs.get_mut(&p.ctr) {
            c.inflight = c.inflight.saturating_sub(1);
        }
        Some(p)
    }

    /// Send pending query `id` to upstream `idx` or later (skipping those
    /// that refuse at once); SERVFAIL when none is left.
    fn send_upstream(&mut self, id: u16, mut idx: usize) {
        while idx < self.ups.len() {
            let Some(p) = self.pending.get_mut(&id) else {
                return;
            };
            let u = &self.ups[idx];
            if u.sock.send_to(&p.query, u.addr).is_ok() {
                p.upstream = idx;
                p.deadline = Instant::now() + UPSTREAM_TIMEOUT;
                return;
            }
            idx += 1;
        }
        self.give_up(id);
    }

    fn give_up(&mut self, id: u16) {
        let Some(p) = self.take_pending(id) else {
            return;
        };
        let mut q = p.query;
        wire::set_message_id(&mut q, p.orig_id);
        if dns::error_reply(&q, rcode::SERVFAIL, &mut self.out) {
            if let Some(c) = self.ctrs.get(&p.ctr) {
                let _ = c.udp.send_to(&self.out, p.client);
            }
        }
    }

    /// Move queries whose upstream did not answer in time to the next one
    /// (or SERVFAIL). A scan of the in-flight table (at most
    /// [`MAX_PENDING`]) every [`SCAN`]: nothing is kept per answered query.
    fn expire(&mut self, now: Instant) {
        if self.pending.is_empty() || now < self.next_scan {
            return;
        }
        self.next_scan = now + SCAN;
        let late: Vec<(u16, usize)> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(id, p)| (*id, p.upstream + 1))
            .collect();
        for (id, next) in late {
            self.send_upstream(id, next);
        }
    }

    fn serve_upstream(&mut self, idx: usize) {
        for _ in 0..BATCH {
            let Some(u) = self.ups.get(idx) else { return };
            let n = match u.sock.recv_from(&mut self.ubuf) {
                // Only the upstream's own address is listened to.
                Ok((n, from)) if from == u.addr => n,
                Ok(_) => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            let msg = &mut self.ubuf[..n];
            let Some(id) = wire::message_id(msg) else {
                continue;
            };
            let Some(p) = self.pending.get(&id) else {
                continue;
            };
            let Ok(h) = wire::Header::parse(msg) else {
                continue;
            };
            let same_question = match (wire::question_bytes(msg), wire::question_bytes(&p.query)) {
                (Ok(a), Ok(b)) => a.eq_ignore_ascii_case(b),
                _ => false,
            };
            if p.upstream != idx || !h.is_response() || !same_question {
                continue;
            }
            if matches!(h.rcode(), rcode::SERVFAIL | rcode::REFUSED) && idx + 1 < self.ups.len() {
                self.send_upstream(id, idx + 1);
                continue;
            }
            let p = self.take_pending(id).expect("just seen");
            let msg = &mut self.ubuf[..n];
            wire::set_message_id(msg, p.orig_id);
            if let Some(c) = self.ctrs.get(&p.ctr) {
                let _ = c.udp.send_to(msg, p.client);
            }
        }
    }

    /// (Re)read the host's resolv.conf when it changed, and make one UDP
    /// socket per upstream (in the host's namespace, random port).
    fn load_upstreams(&mut self) {
        let mtime = std::fs::metadata(&self.resolv_path)
            .and_then(|m| m.modified())
            .ok();
        if self.resolv_loaded && mtime == self.resolv_mtime {
            return;
        }
        self.resolv_loaded = true;
        self.resolv_mtime = mtime;
        let addrs = resolvconf::read(&self.resolv_path).nameservers;
        if *self.ups_addrs == addrs && self.ups.len() == addrs.len() {
            return;
        }
        for u in self.ups.drain(..) {
            self.ep.del(u.sock.as_raw_fd());
        }
        for (i, addr) in addrs.iter().enumerate() {
            let bind: SocketAddr = if addr.is_ipv4() {
                "0.0.0.0:0".parse().expect("literal")
            } else {
                "[::]:0".parse().expect("literal")
            };
            // Not connected: an upstream without a route yet (the host's
            // network still coming up) is tried again at every query.
            let sock = match UdpSocket::bind(bind).and_then(|s| {
                s.set_nonblocking(true)?;
                Ok(s)
            }) {
                Ok(s) => s,
                Err(e) => {
                    log::warn(format!("upstream {addr}: {e}"));
                    continue;
                }
            };
            if self
                .ep
                .add(sock.as_raw_fd(), token(K_UPSTREAM, i as u64))
                .is_ok()
            {
                self.ups.push(Upstream { addr: *addr, sock });
            }
        }
        if *self.ups_addrs != addrs {
            log::info(format!(
                "upstreams from {}: [{}]",
                self.resolv_path.display(),
                addrs
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        self.ups_addrs = Arc::new(addrs);
    }

    // --- TCP ----------------------------------------------------------

    fn accept_tcp(&mut self, key: u64) {
        let Some(c) = self.ctrs.get(&key) else { return };
        while let Ok((stream, _)) = c.tcp.accept() {
            if self.tcp_active.load(Ordering::Relaxed) >= MAX_TCP
                || c.tcp_conns.load(Ordering::Relaxed) >= MAX_TCP_PER_CTR
            {
                continue;
            }
            let table = Arc::clone(&self.table);
            let asker = c.asker.clone();
            let ups = Arc::clone(&self.ups_addrs);
            let active = Arc::clone(&self.tcp_active);
            let mine = Arc::clone(&c.tcp_conns);
            active.fetch_add(1, Ordering::Relaxed);
            mine.fetch_add(1, Ordering::Relaxed);
            let (a2, m2) = (Arc::clone(&active), Arc::clone(&mine));
            let spawned = std::thread::Builder::new()
                .name("dns-tcp".into())
                .stack_size(256 * 1024)
                .spawn(move || {
                    serve_tcp(stream, &table, &asker, &ups);
                    a2.fetch_sub(1, Ordering::Relaxed);
                    m2.fetch_sub(1, Ordering::Relaxed);
                });
            if spawned.is_err() {
                active.fetch_sub(1, Ordering::Relaxed);
                mine.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

/// Bind UDP and TCP 127.0.0.11:53 inside `ns` (this thread enters it and
/// comes back).
fn bind_in(ns: &NetNs) -> std::io::Result<(UdpSocket, TcpListener)> {
    let _in = ns.enter().map_err(std::io::Error::other)?;
    let addr = SocketAddr::from((RESOLVER_ADDR, 53));
    let udp = UdpSocket::bind(addr)?;
    udp.set_nonblocking(true)?;
    let tcp = TcpListener::bind(addr)?;
    tcp.set_nonblocking(true)?;
    Ok((udp, tcp))
}

fn read_frame(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len).ok()?;
    let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut msg).ok()?;
    Some(msg)
}

fn write_frame(s: &mut TcpStream, msg: &[u8]) -> bool {
    let mut framed = Vec::with_capacity(msg.len() + 2);
    framed.extend_from_slice(&(msg.len().min(wire::TCP_MAX) as u16).to_be_bytes());
    framed.extend_from_slice(&msg[..msg.len().min(wire::TCP_MAX)]);
    s.write_all(&framed).is_ok()
}

/// One TCP connection from a container: queries until it goes quiet.
fn serve_tcp(mut s: TcpStream, table: &RwLock<Table>, asker: &Asker, ups: &[SocketAddr]) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(TCP_IDLE));
    let _ = s.set_write_timeout(Some(TCP_IDLE));
    let _ = s.set_nodelay(true);
    let mut out = Vec::new();
    for _ in 0..1000 {
        let Some(msg) = read_frame(&mut s) else {
            return;
        };
        let outcome = dns::respond(&lock_table(table), asker, &msg, Transport::Tcp, &mut out);
        let ok = match outcome {
            Outcome::Reply => write_frame(&mut s, &out),
            Outcome::Forward => match forward_tcp(&msg, ups) {
                Some(answer) => write_frame(&mut s, &answer),
                None => {
                    dns::error_reply(&msg, rcode::SERVFAIL, &mut out) && write_frame(&mut s, &out)
                }
            },
            Outcome::Drop => false,
        };
        if !ok {
            return;
        }
    }
}

/// Relay a TCP query to the first upstream that answers it over TCP.
fn forward_tcp(msg: &[u8], ups: &[SocketAddr]) -> Option<Vec<u8>> {
    for addr in ups {
        let Ok(mut s) = TcpStream::connect_timeout(addr, UPSTREAM_TIMEOUT) else {
            continue;
        };
        let _ = s.set_read_timeout(Some(UPSTREAM_TIMEOUT * 2));
        let _ = s.set_write_timeout(Some(UPSTREAM_TIMEOUT));
        if !write_frame(&mut s, msg) {
            continue;
        }
        match read_frame(&mut s) {
            Some(a) if wire::message_id(&a) == wire::message_id(msg) => {
                let rc = wire::Header::parse(&a).map(|h| h.rcode()).unwrap_or(0);
                if matches!(rc, rcode::SERVFAIL | rcode::REFUSED) {
                    continue;
                }
                return Some(a);
            }
            _ => continue,
        }
    }
    None
}

/// A container's namespace: through its bind mount, or, where that mount
/// is gone (a runtime that runs hooks in a private mount namespace takes
/// it along when the hook exits), through its recorded process, if that is
/// still the same process (start time) in the same namespace (inode).
fn open_namespace(rec: &wirehook_shared::store::ContainerRecord) -> Result<NetNs, String> {
    let id = &rec.id;
    let path = rec
        .netns_path
        .as_ref()
        .ok_or_else(|| format!("container {id} has no namespace of its own"))?;
    if let Ok(ns) = NetNs::open(path) {
        if ns.inode() == rec.netns_inode {
            return Ok(ns);
        }
    }
    if wirehook_shared::store::process_alive(rec.pid, rec.pid_start) {
        if let Ok(ns) = NetNs::of_pid(rec.pid) {
            if ns.inode() == rec.netns_inode {
                return Ok(ns);
            }
        }
    }
    Err(format!(
        "container {id}'s namespace is neither at {} nor held by its process {}",
        path.display(),
        rec.pid
    ))
}
