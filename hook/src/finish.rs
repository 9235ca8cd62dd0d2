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

/// Lock serialising a container id's namespace bind mount between a new
/// setup and an old teardown's finisher.
pub fn mount_lock(
    paths: &Paths,
    id: &str,
) -> wirehook_shared::Result<wirehook_shared::fsutil::Lock> {
    wirehook_shared::fsutil::Lock::exclusive(&paths.locks_dir().join(format!("ctr-{id}.lock")))
}

fn unmount_if_same(
    paths: &Paths,
    id: &str,
    path: &std::path::Path,
    inode: u64,
) -> wirehook_shared::Result<()> {
    let _lock = mount_lock(paths, id)?;
    if wirehook_shared::netns::inode_of_path(path) == Some(inode) {
        wirehook_shared::netns::unmount(path)?;
    }
    Ok(())
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

/// Finish what a dead finisher left (from its marker), then drop the marker.
pub fn finish_abandoned(paths: &Paths, m: &Marker) -> Vec<String> {
    let problems = run(paths, &m.owner, m.items.clone());
    let _ = fsutil::remove_file(&marker_path(paths, &m.owner));
    problems
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
    use nix::unistd::{fork, setsid, ForkResult};
    // The finisher outlives us: it holds the nf_tables socket until we are
    // gone, so the grace period its close costs is never ours. It learns we
    // are gone when the pipe's write end (ours) closes.
    let pipe = nix::unistd::pipe().ok();
    // SAFETY: the hook is single-threaded (a current-thread runtime), so the
    // child may run arbitrary code after fork.
    match unsafe { fork() } {
        Ok(ForkResult::Parent { .. }) => {
            // The child holds the lock (same open file) after we exit.
            std::mem::forget(lock);
            if let Some((r, w)) = pipe {
                drop(r);
                // Closed by the kernel when this process exits.
                std::mem::forget(w);
            }
        }
        Ok(ForkResult::Child) => {
            let _ = setsid();
            // Let the runtime's pipes reach EOF: it waits for them.
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
            // Tests stretch the finisher's life to check that gc leaves a
            // running one alone.
            if let Some(ms) = std::env::var("WIREHOOK_FINISH_DELAY_MS")
                .ok()
                .and_then(|v| v.parse().ok())
            {
                std::thread::sleep(std::time::Duration::from_millis(ms));
            }
            run(paths, owner, items);
            let _ = fsutil::remove_file(&marker);
            if let Some((r, w)) = pipe {
                drop(w);
                let mut buf = [0u8; 1];
                let _ = nix::unistd::read(&r, &mut buf);
            }
            drop(lock);
            // SAFETY: leave without running the parent's destructors.
            unsafe { libc::_exit(0) };
        }
        Err(e) => {
            log::warn(format!(
                "cannot fork the teardown finisher ({e}): finishing inline"
            ));
            // Tests stretch the finisher's life to check that gc leaves a
            // running one alone.
            if let Some(ms) = std::env::var("WIREHOOK_FINISH_DELAY_MS")
                .ok()
                .and_then(|v| v.parse().ok())
            {
                std::thread::sleep(std::time::Duration::from_millis(ms));
            }
            run(paths, owner, items);
            let _ = fsutil::remove_file(&marker);
        }
    }
}
