//! The slow tail of a teardown, done after the runtime has its answer.
//!
//! Three parts of a teardown cost the kernel real time and change nothing
//! a new container could trip over: flushing conntrack entries (a walk of
//! the host-wide conntrack hash), deleting a veth whose namespace lives on
//! (an RCU grace period), and letting go of the nf_tables socket after a
//! delete (another grace period at close). `poststop` therefore removes the
//! published ports, the record, the name and the bind mount itself, then
//! hands these to a detached child and exits; the child flushes conntrack,
//! deletes the link, and only then releases the addresses, so no new
//! container gets an address while stale flows for it remain. `gc` and
//! failed setups run the same steps inline.

use std::net::IpAddr;

use wirehook_shared::netlink::Netlink;
use wirehook_shared::paths::Paths;
use wirehook_shared::{firewall, ipam};

use crate::log;

#[derive(Debug, Clone)]
pub enum Deferred {
    /// Conntrack entries of these addresses.
    Conntrack(Vec<IpAddr>),
    /// A host-side link whose namespace outlives the container.
    Link(String),
    /// An address lease (released last).
    Lease { network: String, address: IpAddr },
}

/// Run `items` now; returns what could not be done.
pub fn run(paths: &Paths, owner: &str, mut items: Vec<Deferred>) -> Vec<String> {
    // Leases last: an address is free only once its flows are gone.
    items.sort_by_key(|d| matches!(d, Deferred::Lease { .. }));
    let mut problems = Vec::new();
    let mut nl: Option<Netlink> = None;
    for d in items {
        let res = match &d {
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

/// Run `items` in a detached process and return at once. The process is
/// a grandchild (double fork), so it is never left as our zombie and
/// whoever reaps orphans (init or the runtime's subreaper) reaps it. If a
/// fork fails, the items run here.
pub fn detach(paths: &Paths, owner: &str, items: Vec<Deferred>) {
    use nix::sys::wait::waitpid;
    use nix::unistd::{fork, setsid, ForkResult};
    // The finisher outlives us: it holds the nf_tables socket until we are
    // gone, so the grace period its close costs is never ours. It learns we
    // are gone when the pipe's write end (ours) closes.
    let pipe = nix::unistd::pipe().ok();
    // SAFETY: the hook is single-threaded (a current-thread runtime), so the
    // children may run arbitrary code after fork.
    match unsafe { fork() } {
        Ok(ForkResult::Parent { child }) => {
            let _ = waitpid(child, None);
            if let Some((r, w)) = pipe {
                drop(r);
                // Closed by the kernel when this process exits.
                std::mem::forget(w);
            }
        }
        Ok(ForkResult::Child) => {
            let _ = setsid();
            match unsafe { fork() } {
                Ok(ForkResult::Child) => {
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
                    run(paths, owner, items);
                    if let Some((r, w)) = pipe {
                        drop(w);
                        let mut buf = [0u8; 1];
                        let _ = nix::unistd::read(&r, &mut buf);
                    }
                }
                Ok(ForkResult::Parent { .. }) => {}
                Err(_) => {
                    run(paths, owner, items);
                }
            }
            // SAFETY: leave without running the parent's destructors twice.
            unsafe { libc::_exit(0) };
        }
        Err(e) => {
            log::warn(format!(
                "cannot fork the teardown finisher ({e}): finishing inline"
            ));
            run(paths, owner, items);
        }
    }
}
