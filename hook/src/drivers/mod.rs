//! Mode drivers, side by side behind one small trait.
//!
//! Each network mode is a [`Driver`]: `setup` wires one attachment into a
//! container (recording every change in the [`Undo`] journal first),
//! `teardown` removes it again from the record alone, and `check` compares
//! the record with what the kernel shows. `host`, `none` and
//! `container:<x>` attach no network; `bridge`, `macvlan` and `ipvlan`
//! and `overlay` attach one network as one interface each.
//! macvlan and ipvlan share their parent handling and per-container work
//! in `parent`; overlay attaches containers as bridge does, to its
//! host's share of the network.

use wirehook_shared::annotations::Request;
use wirehook_shared::error::Result;
use wirehook_shared::netlink::Netlink;
use wirehook_shared::netns::NetNs;
use wirehook_shared::network::{Driver as NetDriver, NetworkDef};
use wirehook_shared::paths::Paths;
use wirehook_shared::store::{ContainerRecord, InterfaceRecord, Mode};

use crate::bundle::BundleNetns;
use crate::undo::Undo;

pub mod bridge;
pub mod container;
pub mod host;
pub mod ipvlan;
pub mod macvlan;
pub mod none;
pub mod overlay;
pub mod parent;

/// What setup works with: the container, its namespace, and sockets in
/// the host's and the container's namespace.
pub struct SetupCx<'a> {
    pub paths: &'a Paths,
    pub id: &'a str,
    pub request: &'a Request,
    pub netns: &'a NetNs,
    /// What the bundle's config.json asked for.
    pub bundle_netns: &'a BundleNetns,
    /// Inode of the namespace the hook runs in (the host's).
    pub host_inode: u64,
    pub host_nl: &'a Netlink,
    pub undo: &'a mut Undo,
    container_nl: Option<Netlink>,
}

impl<'a> SetupCx<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        paths: &'a Paths,
        id: &'a str,
        request: &'a Request,
        netns: &'a NetNs,
        bundle_netns: &'a BundleNetns,
        host_nl: &'a Netlink,
        undo: &'a mut Undo,
    ) -> Result<Self> {
        let host_inode = NetNs::current()?.inode();
        Ok(SetupCx {
            paths,
            id,
            request,
            netns,
            bundle_netns,
            host_inode,
            host_nl,
            undo,
            container_nl: None,
        })
    }

    /// A netlink socket inside the container's namespace, opened on first use.
    pub fn container_nl(&mut self) -> Result<&Netlink> {
        if self.container_nl.is_none() {
            self.container_nl = Some(self.host_nl.beside(self.netns)?);
        }
        Ok(self.container_nl.as_ref().expect("just set"))
    }
}

/// One network as one interface of the container.
pub struct Attachment<'a> {
    pub network: &'a NetworkDef,
    /// Position in `io.wirehook.network` (0 = first = eth0).
    pub index: usize,
    pub ifname: String,
}

/// What teardown and check work with.
pub struct HostCx<'a> {
    pub paths: &'a Paths,
    pub host_nl: &'a Netlink,
    /// Does the container's namespace still exist after teardown lets go of
    /// it? If not, the kernel removes its veths and we need not pay for it.
    pub netns_alive: bool,
    /// What could not be done, one line each.
    pub problems: Vec<String>,
    /// Slow steps left for after the runtime has its answer (see `finish`).
    pub deferred: Vec<crate::finish::Deferred>,
}

impl HostCx<'_> {
    pub fn defer(&mut self, d: crate::finish::Deferred) {
        self.deferred.push(d);
    }

    pub fn problem(&mut self, msg: String) {
        crate::log::warn(&msg);
        self.problems.push(msg);
    }
}

pub trait Driver: Sync {
    /// Wire `at` into the container. Modes without a network (host, none,
    /// container) get `None` and return no interface.
    fn setup(
        &self,
        cx: &mut SetupCx<'_>,
        at: Option<&Attachment<'_>>,
    ) -> Result<Option<InterfaceRecord>>;

    /// Remove what setup made, from the record alone. Never fails: what
    /// cannot be removed is reported through `cx.problem`. Modes that make
    /// nothing (host, none, container) have nothing to remove: the record,
    /// name and bind mount are the orchestrator's.
    fn teardown(
        &self,
        _cx: &mut HostCx<'_>,
        _rec: &ContainerRecord,
        _iface: Option<&InterfaceRecord>,
    ) {
    }

    /// Compare the record with the kernel; one line per difference.
    fn check(
        &self,
        cx: &HostCx<'_>,
        rec: &ContainerRecord,
        iface: Option<&InterfaceRecord>,
    ) -> Vec<String>;
}

/// One line per address of `iface` that link `index` lacks, as `nl` (in
/// the container) sees it.
pub fn missing_addresses(nl: &Netlink, index: u32, iface: &InterfaceRecord) -> Vec<String> {
    let have = nl.addresses().unwrap_or_default();
    iface
        .addresses
        .iter()
        .filter(|a| {
            !have
                .iter()
                .any(|(i, ip, p)| *i == index && *ip == a.ip() && *p == a.prefix())
        })
        .map(|a| format!("{} lacks address {a}", iface.ifname))
        .collect()
}

/// The driver of a mode without networks.
pub fn for_mode(mode: Mode) -> &'static dyn Driver {
    match mode {
        Mode::Host => &host::Host,
        Mode::None => &none::None,
        Mode::Container => &container::Shared,
        Mode::Macvlan => &macvlan::Macvlan,
        Mode::Ipvlan => &ipvlan::Ipvlan,
        Mode::Bridge => &bridge::Bridge,
        Mode::Overlay => &overlay::Overlay,
    }
}

/// The driver of a network.
pub fn for_network(driver: NetDriver) -> Result<&'static dyn Driver> {
    match driver {
        NetDriver::Bridge => Ok(&bridge::Bridge),
        NetDriver::Macvlan => Ok(&macvlan::Macvlan),
        NetDriver::Ipvlan => Ok(&ipvlan::Ipvlan),
        NetDriver::Overlay => Ok(&overlay::Overlay),
    }
}

/// The record mode of a network driver.
pub fn mode_of(driver: NetDriver) -> Mode {
    match driver {
        NetDriver::Bridge => Mode::Bridge,
        NetDriver::Macvlan => Mode::Macvlan,
        NetDriver::Ipvlan => Mode::Ipvlan,
        NetDriver::Overlay => Mode::Overlay,
    }
}
