//! The slow tail of a teardown, done after the runtime has its answer.
//!
//! Four parts of a teardown cost the kernel real time: deleting nf_tables
//! elements (the kernel frees them after an RCU grace period, and any
//! nf_tables socket closed meanwhile waits for that under the table's
//! commit lock, stalling every other container's firewall change),
//! flushing conntrack entries (a walk of the host-wide conntrack hash),
//! deleting a veth whose namespace lives on (another grace period), and
//! closing the socket. `poststop` removes the record, the name and the bind
//! mount itself, hands the rest to a detached child and exits. The child
//! closes the published ports first, flushes conntrack, deletes the link,
//! and only then releases the addresses, so no new container gets an
//! address while stale flows for it remain. A new container that wants a
//! static address or a host port a finishing teardown still holds waits
//! for it (see the bridge driver). `gc` runs the same steps inline.

use std::net::IpAddr;
use std::path::PathBuf;

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};
use wirehook_shared::fsutil::{self, Lock};
use wirehook_shared::ports::PortMapping;

use wirehook_shared::netlink::Netlink;
use wirehook_shared::paths::Paths;
use wirehook_shared::{firewall, ipam};

use crate::log;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Deferred {
    /// Published-port map elements of these ports to these addresses
    /// (first: the ports close before anything else).
    Ports {
        ports: Vec<PortMapping>,
        addresses: Vec<IpNetwork>,
    },
    /// Conntrack entries of these addresses.
    Conntrack(Vec<IpAddr>),
    /// A host-side link whose namespace outlives the container.
    Link(String),
    /// A container's macvlan/ipvlan interface, in a namespace that outlives
    /// the container (a sharer runs in it): deleted there if the namespace
    /// at `netns` is still the recorded one and the link still of `kind`.
    NsLink {
        netns: std::path::PathBuf,
        inode: u64,
        ifname: String,
        kind: String,
    },
    /// The namespace bind mount, if it still holds the container's
    /// namespace (a restarted container with the same id may have its own
    /// there by now). Unmounting waits for an RCU grace period.
    Unmount {
        id: String,
        path: std::path::PathBuf,
        inode: u64,
    },
    /// An address lease (released last).
    Lease { network: String, address: IpAddr },
}

fn delete_ns_link(
    netns: &std::path::Path,
    inode: u64,
    ifname: &str,
    kind: &str,
) -> wirehook_shared::Result<()> {
    let ns = match wirehook_shared::netns::NetNs::open(netns) {
        Ok(ns) if ns.inode() == inode => ns,
        // Gone, or another container's by now: nothing of ours to delete.
        _ => return Ok(()),
    };
    let nl = Netlink::in_netns(&ns)?;
    match nl.link(ifname)? {
        Some(l) if l.kind.as_deref() == Some(kind) => nl.delete_link(ifname).map(|_| ()),
        _ => Ok(()),
    }
}

/// Run `items` now; returns what could not be done.
pub fn run(paths: &Paths, owner: &str, mut items: Vec<Deferred>) -> Vec<String> {
    // Ports first, leases last: an address is free only once its flows are gone.
    items.sort_by_key(|d| match d {
        // Before the unmount: the link is reached through the bind mount.
        Deferred::Ports { .. } | Deferred::NsLink { .. } => 0,
        Deferred::Lease { .. } => 2,
        _ => 1,
    });
    let mut problems = Vec::new();
    let mut nl: Option<Netlink> = None;
    for d in items {
        wirehook_shared::error::kill_point(match &d {
            Deferred::Ports { .. } => "finish-ports",
            Deferred::Conntrack(_) => "finish-conntrack",
            Deferred::Link(_) | Deferred::NsLink { .. } => "finish-link",
            Deferred::Unmount { .. } => "finish-unmount",
            Deferred::Lease { .. } => "finish-lease",
        });
        let res = match &d {
            Deferred::Ports { ports, addresses } => {
                firewall::remove_ports(&crate::drivers::bridge::port_rules(ports, addresses))
            }
            Deferred::Conntrack(addrs) => firewall::flush_conntrack(addrs).map(|_| ()),
            Deferred::Link(name) => {
                if nl.is_none() {
                    nl = Netlink::new().ok();
                }
                match &nl {
                    Some(nl) => nl.delete_link(name).map(|_| ()),
                    None => Err(wirehook_shared::Error::invalid("cannot open netlink")),
                }
            }
            Deferred::NsLink {
                netns,
                inode,
                ifname,
                kind,
            } => delete_ns_link(netns, *inode, ifname, kind),
            Deferred::Unmount { id, path, inode } => unmount_if_same(paths, id, path, *inode),
            Deferred::Lease { network, address } => {
                ipam::release_lease(paths, network, *address, owner).map(|_| ())
            }
        };
        if let Err(e) = res {
            let msg = format!("{owner}: could not finish {d:?}: {e}");
            log::warn(&msg);
            problems.push(msg);
        }
    }
    problems
}

/// How many lock files serialise namespace bind mounts (see [`mount_lock`]).
const MOUNT_LOCK_STRIPES: u64 = 32;

/// Lock serialising a container id's namespace bind mount between a new
/// setup, an old teardown's finisher and gc. Ids are striped over a fixed
/// set of lock files, made all at once the first time, so the number of
/// files under the run directory does not grow with every container ever
/// started, and no lock file is ever unlinked (which would let two holders
/// in at once). Unrelated ids that share a stripe wait for each other only
/// for the length of one mount or unmount.
pub fn mount_lock(paths: &Paths, id: &str) -> wirehook_shared::Result<Lock> {
    striped_lock(paths, "mount", id)
}

/// Lock serialising the changes to one container's wiring: its setup, its
/// poststop teardown, and `wirehook network connect`/`disconnect` on it
/// (so a connect racing poststop cannot add an interface after the
/// teardown read the record). Striped like [`mount_lock`], over other
/// files; always taken before a network's lock, never while the mount
/// lock is held.
pub fn wiring_lock(paths: &Paths, id: &str) -> wirehook_shared::Result<Lock> {
    striped_lock(paths, "wiring", id)
}

fn striped_lock(paths: &Paths, prefix: &str, id: &str) -> wirehook_shared::Result<Lock> {
    let dir = paths.locks_dir();
    let stripe = |n: u64| dir.join(format!("{prefix}-{n:02}.lock"));
    let mine = stripe(wirehook_shared::network::stable_hash(id.as_bytes()) % MOUNT_LOCK_STRIPES);
    if !mine.exists() {
        fsutil::ensure_dir(&dir)?;
        for n in 0..MOUNT_LOCK_STRIPES {
            let path = stripe(n);
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| wirehook_shared::Error::io("create lock", &path, e))?;
        }
    }
    Lock::exclusive(&mine)
}

fn unmount_if_same(
    paths: &Paths,
    id: &str,
    path: &std::path::Path,
    inode: u64,
) -> wirehook_shared::Result<()> {
    use wirehook_shared::netns;
    let _lock = mount_lock(paths, id)?;
    // Ours: unmount (the mount point goes with it). A bare mount point: the
    // mount vanished with the mount namespace it was made in (a runtime
    // that runs hooks in a private one), so only the file is left. Another
    // namespace mounted there: a new run of the same id, not ours.
    if netns::inode_of_path(path) == Some(inode) || !netns::is_namespace_mount(path) {
        netns::unmount(path)?;
    }
    Ok(())
}

/// How long a start waits for a finishing teardown to let go of what it
/// asks for (its id, an address, a host port): 5 s, well inside the 10 s
/// hook timeout of hooks.d, or `WIREHOOK_FINISH_WAIT_MS` (tests make it
/// long, to tell waiting from not waiting on a slow machine).
pub fn wait_budget() -> std::time::Duration {
    let ms = std::env::var("WIREHOOK_FINISH_WAIT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    std::time::Duration::from_millis(ms)
}

/// Make sure no teardown of container `id` is still finishing before a new
/// setup of the same id starts (a runtime restarting a container keeps its
/// id: `podman restart`). The finisher of the previous run closes that
/// run's published ports, flushes its flows and releases its leases, all
/// under the same owner id: left running, it would take them from the new
/// run. A running finisher is waited for (up to `budget`); one that died
/// is finished here, before anything of the new run exists.
pub fn settle_previous_run(
    paths: &Paths,
    id: &str,
    budget: std::time::Duration,
) -> wirehook_shared::Result<()> {
    let marker = marker_path(paths, id);
    let deadline = std::time::Instant::now() + budget;
    loop {
        if !marker.exists() {
            return Ok(());
        }
        if let Some(_lock) = Lock::try_exclusive(&marker)? {
            // Unlocked: its finisher died. Finish its job while holding the
            // lock (gc would otherwise do it later, over the new run).
            if let Ok(Some(m)) = fsutil::read_json::<Marker>(&marker) {
                log::warn(format!(
                    "{id}: the previous run's teardown did not finish; finishing it first"
                ));
                run(paths, &m.owner, m.items);
            }
            let _ = fsutil::remove_file(&marker);
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(wirehook_shared::Error::Conflict(format!(
                "the previous teardown of container {id} is still running after {} ms: start it again in a moment, or run `wirehook gc`",
                budget.as_millis()
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// What a running finisher is still doing, in `run/finishing/ID.json`,
/// locked (flock) for as long as it runs. `gc` leaves what it names alone
/// while the lock is held, and finishes the job itself if a finisher died.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Marker {
    pub owner: String,
    /// Host-side links of the container (they vanish with its namespace).
    pub links: Vec<String>,
    pub items: Vec<Deferred>,
}

fn marker_path(paths: &Paths, owner: &str) -> PathBuf {
    paths
        .run_dir
        .join("finishing")
        .join(format!("{owner}.json"))
}

/// Markers of finishers, each with whether its finisher still runs.
pub fn markers(paths: &Paths) -> Vec<(Marker, bool)> {
    let Ok(rd) = std::fs::read_dir(paths.run_dir.join("finishing")) else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| {
            let m: Marker = fsutil::read_json(&e.path()).ok()??;
            let running = !Lock::try_exclusive(&e.path()).is_ok_and(|l| l.is_some());
            Some((m, running))
        })
        .collect()
}

/// Finish what a dead finisher left (from its marker), then drop the
/// marker. Holds the marker's lock meanwhile, and does nothing if someone
/// else holds it or the marker is gone (a setup of the same id finished it
/// first: see [`settle_previous_run`]).
pub fn finish_abandoned(paths: &Paths, owner: &str) -> Vec<String> {
    let marker = marker_path(paths, owner);
    let Ok(Some(_lock)) = Lock::try_exclusive(&marker) else {
        return Vec::new();
    };
    let Ok(Some(m)) = fsutil::read_json::<Marker>(&marker) else {
        return Vec::new();
    };
    let problems = run(paths, &m.owner, m.items);
    let _ = fsutil::remove_file(&marker);
    problems
}

/// Tests stretch a finisher's life, to start the next run while it runs
/// (`WIREHOOK_FINISH_DELAY_MS=N`: N ms) or to check that gc leaves a
/// running one alone (`WIREHOOK_FINISH_HOLD=PATH`: while PATH exists, at
/// most ten minutes), before it does its work.
fn test_delay() {
    if let Some(ms) = std::env::var("WIREHOOK_FINISH_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    if let Some(hold) = std::env::var_os("WIREHOOK_FINISH_HOLD") {
        let end = std::time::Instant::now() + std::time::Duration::from_secs(600);
        while std::path::Path::new(&hold).exists() && std::time::Instant::now() < end {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}

/// The child of a fork that outlives the hook: its own session, and its
/// standard descriptors on /dev/null, so the runtime's pipes reach EOF
/// (the runtime waits for them).
pub fn detach_child() {
    let _ = nix::unistd::setsid();
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        use std::os::fd::AsRawFd;
        for fd in 0..3 {
            // SAFETY: dup2 onto the standard descriptors.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
}

/// A pipe that tells a forked child when the hook has exited: the parent
/// keeps the write end open until its exit ([`ExitPipe::parent`]), and
/// the child reads until EOF ([`ExitPipe::wait`]).
pub struct ExitPipe {
    r: std::os::fd::OwnedFd,
    w: std::os::fd::OwnedFd,
}

impl ExitPipe {
    pub fn new() -> Option<ExitPipe> {
        let (r, w) = nix::unistd::pipe().ok()?;
        Some(ExitPipe { r, w })
    }

    /// In the parent: the write end is closed by the kernel at exit.
    pub fn parent(self) {
        drop(self.r);
        std::mem::forget(self.w);
    }

    /// In the child: block until the parent has exited.
    pub fn wait(self) {
        drop(self.w);
        let mut buf = [0u8; 1];
        let _ = nix::unistd::read(&self.r, &mut buf);
    }
}

/// Run `items` in a detached child and return at once, without waiting
/// for it: when we exit, it is reparented to whoever reaps orphans (init
/// or the runtime's subreaper). If the fork fails, the items run here.
pub fn detach(paths: &Paths, owner: &str, links: Vec<String>, items: Vec<Deferred>) {
    // The marker is written and locked before the fork, so there is no
    // moment in which gc could take the items for leftovers.
    let marker = marker_path(paths, owner);
    let lock = fsutil::write_json(
        &marker,
        &Marker {
            owner: owner.to_string(),
            links,
            items: items.clone(),
        },
    )
    .and_then(|()| Lock::exclusive(&marker));
    if let Err(e) = &lock {
        log::warn(format!(
            "cannot write the finisher's marker ({e}); gc may race it"
        ));
    }
    use nix::unistd::{fork, ForkResult};
    // The finisher outlives us: it holds the nf_tables socket until we are
    // gone, so the grace period its close costs is never ours. It learns we
    // are gone when the pipe's write end (ours) closes.
    let pipe = ExitPipe::new();
    // SAFETY: the hook is single-threaded (a current-thread runtime), so the
    // child may run arbitrary code after fork.
    match unsafe { fork() } {
        Ok(ForkResult::Parent { .. }) => {
            // The child holds the lock (same open file) after we exit.
            std::mem::forget(lock);
            if let Some(p) = pipe {
                p.parent();
            }
        }
        Ok(ForkResult::Child) => {
            detach_child();
            test_delay();
            run(paths, owner, items);
            let _ = fsutil::remove_file(&marker);
            if let Some(p) = pipe {
                p.wait();
            }
            drop(lock);
            // SAFETY: leave without running the parent's destructors.
            unsafe { libc::_exit(0) };
        }
        Err(e) => {
            log::warn(format!(
                "cannot fork the teardown finisher ({e}): finishing inline"
            ));
            test_delay();
            run(paths, owner, items);
            let _ = fsutil::remove_file(&marker);
        }
    }
}

/// Is `ip` held by a container whose teardown is still finishing (its
/// lease remains, its record is gone)?
pub fn held_by_finishing_teardown(paths: &Paths, ip: IpAddr) -> bool {
    let Ok(nets) = std::fs::read_dir(paths.run_dir.join("leases")) else {
        return false;
    };
    nets.flatten().any(|n| {
        std::fs::read_to_string(n.path().join(ip.to_string())).is_ok_and(|holder| {
            let holder = holder.trim();
            !holder.is_empty()
                && wirehook_shared::store::Records::new(paths)
                    .get(holder)
                    .ok()
                    .flatten()
                    .is_none()
        })
    })
}
