//! `container:<id or name>`: the container joins the namespace of another
//! running container that wirehook wired. The hook verifies the
//! namespaces match (by inode) and records the sharing; it never touches
//! the owner's wiring, on setup or on teardown.

use wirehook_shared::error::{Error, Result};
use wirehook_shared::store::{ContainerRecord, InterfaceRecord, Records};

use super::{Attachment, Driver, HostCx, SetupCx};

pub struct Shared;

/// The owner a `container:<key>` request names, as recorded.
pub fn owner(cx: &SetupCx<'_>, key: &str) -> Result<ContainerRecord> {
    let rec = Records::new(cx.paths).find(key)?.ok_or_else(|| {
        Error::NotFound(format!(
            "io.wirehook.network=container:{key}: no container {key} is wired by wirehook (see `wirehook ps`): start it first"
        ))
    })?;
    if rec.id == cx.id {
        return Err(Error::invalid(format!(
            "io.wirehook.network=container:{key} names the container itself"
        )));
    }
    Ok(rec)
}

impl Driver for Shared {
    fn setup(
        &self,
        cx: &mut SetupCx<'_>,
        _at: Option<&Attachment<'_>>,
    ) -> Result<Option<InterfaceRecord>> {
        let wirehook_shared::annotations::NetworkRequest::Container(key) = &cx.request.network
        else {
            return Err(Error::invalid(
                "container mode needs io.wirehook.network=container:<id or name>",
            ));
        };
        let owner = owner(cx, key)?;
        if owner.netns_inode != cx.netns.inode() {
            let path = owner
                .netns_path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| format!("/proc/{}/ns/net", owner.pid));
            return Err(Error::invalid(format!(
                "io.wirehook.network=container:{key} but the container is not in {}'s network namespace: run `wirehook prepare BUNDLE` (sets the network namespace path to {path}) or use podman's --network container:{key}",
                owner.name
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
        let Some(owner) = &rec.shares_with else {
            return vec!["no owner recorded".into()];
        };
        match Records::new(cx.paths).get(owner) {
            Ok(Some(o)) if o.netns_inode == rec.netns_inode => Vec::new(),
            Ok(Some(_)) => vec![format!("owner {owner} now has another namespace")],
            Ok(Option::None) => vec![format!(
                "owner {owner} is gone: this container has only loopback left"
            )],
            Err(e) => vec![format!("cannot read owner {owner}: {e}")],
        }
    }
}
