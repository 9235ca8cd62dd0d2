//! ipvlan networks: each container gets an ipvlan sub-interface of the
//! network's parent, named `eth0` and made directly inside its namespace.
//! Unlike macvlan, every ipvlan interface carries the parent's MAC (the
//! kernel tells containers apart by IP address), which is what a segment
//! that allows one MAC per port (many Wi-Fi access points, some cloud
//! networks, switches with port security) needs.
//!
//! Modes (docker's names and meanings): `l2` (default) — the interface
//! switches frames on the parent's segment; it gets an address from the
//! network's subnet and a default route via the network's gateway (a
//! router on that segment). `l3` — the parent routes for its ipvlans: no
//! ARP or broadcast leaves the container, its default route goes straight
//! out of `eth0` (`default dev eth0`, no gateway — docker does the same),
//! and other machines reach the container's subnet through a route via the
//! host's address on the parent. `l3s` — as l3, but the traffic passes the
//! host's netfilter (conntrack), so teardown flushes the container's flows
//! there.
//!
//! As with macvlan, the container cannot talk to the host through the
//! parent. A kernel without ipvlan support (no `CONFIG_IPVLAN`, module not
//! loadable) is refused with one line that says so.
//!
//! The work is shared with macvlan in [`super::parent`].

use wirehook_shared::error::{Error, Result};
use wirehook_shared::store::{ContainerRecord, InterfaceRecord};

use super::parent::{self, Kind};
use super::{Attachment, Driver, HostCx, SetupCx};

pub struct Ipvlan;

impl Driver for Ipvlan {
    fn setup(
        &self,
        cx: &mut SetupCx<'_>,
        at: Option<&Attachment<'_>>,
    ) -> Result<Option<InterfaceRecord>> {
        let at = at.ok_or_else(|| Error::invalid("ipvlan mode needs a network"))?;
        let kind = Kind::Ipvlan(at.network.ipvlan_mode()?);
        parent::attach(cx, at, kind)
    }

    fn teardown(
        &self,
        cx: &mut HostCx<'_>,
        rec: &ContainerRecord,
        iface: Option<&InterfaceRecord>,
    ) {
        if let Some(iface) = iface {
            parent::detach(cx, rec, iface);
        }
    }

    fn check(
        &self,
        cx: &HostCx<'_>,
        rec: &ContainerRecord,
        iface: Option<&InterfaceRecord>,
    ) -> Vec<String> {
        iface.map(|i| parent::check(cx, rec, i)).unwrap_or_default()
    }
}
