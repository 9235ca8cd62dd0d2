//! The setup journal: every change setup makes is recorded here before the
//! next step runs, so a failure at any step undoes exactly what was made,
//! newest first, and leaves nothing behind.

use std::net::IpAddr;
use std::path::PathBuf;

use wirehook_shared::firewall::{self, PortRule};
use wirehook_shared::netlink::Netlink;
use wirehook_shared::paths::Paths;
use wirehook_shared::{ipam, netns, store};

use crate::log;

#[derive(Debug)]
pub enum Change {
    /// A link in the host namespace (deleting a veth end removes the pair).
    HostLink(String),
    /// A link made inside the container's namespace (a macvlan or ipvlan
    /// sub-interface: nothing of it is left in the host's to delete).
    ContainerLink { netns: netns::NetNs, name: String },
    /// An address lease.
    Lease { network: String, address: IpAddr },
    /// Published-port map elements.
    Ports(Vec<PortRule>),
    /// A namespace bind mount.
    Mount(PathBuf),
    /// The container's record.
    Record(String),
    /// A claimed container name.
    Name(String),
    /// A note that this container joined `owner`'s namespace.
    Sharer { owner: String, sharer: String },
    /// The container's names in the resolver.
    Dns(String),
    /// The container's record as it was before a change (connect): put
    /// back.
    RecordBefore(Box<store::ContainerRecord>),
    /// The resolver serves the container from its record: told to follow
    /// it again (after [`Change::RecordBefore`] put the old one back).
    DnsRefresh(String),
}

#[derive(Debug, Default)]
pub struct Undo {
    changes: Vec<Change>,
}

impl Undo {
    pub fn push(&mut self, c: Change) {
        self.changes.push(c);
    }

    /// Undo everything, newest first. Failures are logged and do not stop
    /// the rest.
    pub fn rollback(self, paths: &Paths, owner: &str, host_nl: Option<&Netlink>) {
        for c in self.changes.into_iter().rev() {
            let res = match &c {
                Change::HostLink(name) => match host_nl {
                    Some(nl) => nl.delete_link(name).map(|_| ()),
                    None => Ok(()),
                },
                Change::ContainerLink { netns, name } => Netlink::in_netns(netns)
                    .and_then(|nl| nl.delete_link(name))
                    .map(|_| ()),
                Change::Lease { network, address } => {
                    ipam::release_lease(paths, network, *address, owner).map(|_| ())
                }
                Change::Ports(rules) => firewall::remove_ports(rules),
                Change::Mount(p) => netns::unmount(p),
                Change::Record(id) => store::Records::new(paths).remove(id).map(|_| ()),
                Change::Name(name) => store::Records::new(paths).release_name(name, owner),
                Change::Sharer { owner, sharer } => {
                    store::Records::new(paths).remove_sharer(owner, sharer)
                }
                Change::Dns(id) => crate::dns::detach(paths, id),
                Change::RecordBefore(rec) => store::Records::new(paths).put(rec),
                Change::DnsRefresh(id) => crate::dns::follow(paths, id),
            };
            match res {
                Ok(()) => log::info(format!("rollback: undid {c:?}")),
                Err(e) => log::error(format!("rollback: could not undo {c:?}: {e}")),
            }
        }
    }
}
