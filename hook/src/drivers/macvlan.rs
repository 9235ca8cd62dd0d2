//! macvlan networks: each container gets a macvlan sub-interface of the
//! network's parent, with a MAC of its own (generated from the container
//! id, or `io.wirehook.mac`), named `eth0` and made directly inside its
//! namespace, an address from the network's subnet (the segment the
//! parent is on) and a default route via the network's gateway (a router
//! on that segment). To the segment the container is one more machine.
//!
//! Modes (docker's names and meanings): `bridge` (default) — containers on
//! one parent reach each other directly; `private` — they do not;
//! `vepa` — every frame goes out to the external switch, so they reach
//! each other only if it sends frames back out of the port they came in
//! on (a "hairpin" or reflective relay); `passthru` — the parent itself is
//! handed to one container (which takes the parent's MAC), a second
//! container is refused.
//!
//! Like every macvlan, the container cannot talk to the host through the
//! parent: the kernel delivers frames between a parent and its macvlans
//! neither way (see README: a macvlan interface on the host, or a second,
//! bridge network).
//!
//! The work is shared with ipvlan in [`super::parent`].

use wirehook_shared::error::{Error, Result};
use wirehook_shared::store::{ContainerRecord, InterfaceRecord};

use super::parent::{self, Kind};
use super::{Attachment, Driver, HostCx, SetupCx};

pub struct Macvlan;

impl Driver for Macvlan {
    fn setup(
        &self,
        cx: &mut SetupCx<'_>,
        at: Option<&Attachment<'_>>,
    ) -> Result<Option<InterfaceRecord>> {
        let at = at.ok_or_else(|| Error::invalid("macvlan mode needs a network"))?;
        let kind = Kind::Macvlan(at.network.macvlan_mode()?);
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
