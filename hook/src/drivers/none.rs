//! `none`: the container keeps its own namespace with loopback only, up.

use wirehook_shared::error::{Error, Result};
use wirehook_shared::store::{ContainerRecord, InterfaceRecord};

use super::{Attachment, Driver, HostCx, SetupCx};

pub struct None;

impl Driver for None {
    fn setup(
        &self,
        cx: &mut SetupCx<'_>,
        _at: Option<&Attachment<'_>>,
    ) -> Result<Option<InterfaceRecord>> {
        if cx.netns.inode() == cx.host_inode {
            return Err(Error::invalid(
                "io.wirehook.network=none but the container runs in the host's network namespace: add {\"type\": \"network\"} to linux.namespaces in config.json (podman: --network none)",
            ));
        }
        cx.container_nl()?.loopback_up()?;
        Ok(Option::None)
    }

    fn check(
        &self,
        _cx: &HostCx<'_>,
        rec: &ContainerRecord,
        _iface: Option<&InterfaceRecord>,
    ) -> Vec<String> {
        match &rec.netns_path {
            Some(p) if wirehook_shared::netns::inode_of_path(p) == Some(rec.netns_inode) => {
                Vec::new()
            }
            Some(p) => vec![format!(
                "namespace bind mount {} is gone or changed",
                p.display()
            )],
            Option::None => Vec::new(),
        }
    }
}
