//! `host`: the container shares the host's network namespace. Nothing is
//! wired; the hook only verifies that the runtime really left the
//! container in the host's namespace (it cannot move a process) and
//! records it.

use wirehook_shared::error::{Error, Result};
use wirehook_shared::store::{ContainerRecord, InterfaceRecord};

use super::{Attachment, Driver, HostCx, SetupCx};
use crate::bundle::BundleNetns;

pub struct Host;

impl Driver for Host {
    fn setup(
        &self,
        cx: &mut SetupCx<'_>,
        _at: Option<&Attachment<'_>>,
    ) -> Result<Option<InterfaceRecord>> {
        if cx.netns.inode() != cx.host_inode {
            let why = match cx.bundle_netns {
                BundleNetns::New => "the bundle asks for a new network namespace",
                BundleNetns::Path(_) => "the bundle joins another network namespace",
                BundleNetns::Host | BundleNetns::Unknown => {
                    "the container is not in the host's network namespace"
                }
            };
            return Err(Error::invalid(format!(
                "io.wirehook.network=host but {why}: run `wirehook prepare BUNDLE` to remove the network namespace from config.json (podman: use --network host)"
            )));
        }
        Ok(None)
    }

    fn check(
        &self,
        cx: &HostCx<'_>,
        rec: &ContainerRecord,
        _iface: Option<&InterfaceRecord>,
    ) -> Vec<String> {
        let _ = cx;
        match wirehook_shared::netns::NetNs::current() {
            Ok(ns) if ns.inode() == rec.netns_inode => Vec::new(),
            Ok(_) => {
                vec!["recorded as host mode but the recorded namespace is not this host's".into()]
            }
            Err(e) => vec![format!("cannot read the host namespace: {e}")],
        }
    }
}
