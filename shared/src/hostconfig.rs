//! Host-wide settings the operator writes by hand:
//! `/etc/wirehook/config.json` (defaults of this host) and
//! `/etc/wirehook/policy.json` (what annotations may do). Both optional.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::fsutil;
use crate::paths::Paths;

/// `/etc/wirehook/config.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// Subnet of the built-in `bridge` network (default: the first of
    /// 10.88.0.0/16, 10.87.0.0/16, ... that overlaps no host route).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge_subnet: Option<IpNetwork>,
    /// Gateway of the built-in network (default: first address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge_gateway: Option<IpAddr>,
    /// MTU of the built-in network (default: the kernel's, 1500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge_mtu: Option<u32>,
    /// The cluster store of overlay networks: `etcd://HOST:PORT[,HOST:PORT]...`
    /// (`etcds://` for TLS). Unset: overlay networks live in a local store
    /// and span this host only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    /// TLS files for the store: CA bundle, client certificate and key (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_ca: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_cert: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_key: Option<PathBuf>,
    /// This host's name in the cluster (default: from /etc/machine-id).
    /// Unique and stable: its subnet claims and VXLAN MACs derive from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_id: Option<String>,
    /// Interface other hosts reach this one through (default: the one of
    /// the default route).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub underlay_interface: Option<String>,
    /// Address on it that others send VXLAN to (default: its first IPv4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub underlay_address: Option<Ipv4Addr>,
    /// The `resolv.conf` whose nameservers the container resolver forwards
    /// to and whose search list containers get (default `/etc/resolv.conf`;
    /// e.g. `/run/systemd/resolve/resolv.conf` to skip systemd-resolved's
    /// stub, or a test's own file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolv_conf: Option<PathBuf>,
    /// Seconds the resolver's lease on this host's container names in the
    /// cluster store lives without a keepalive: how long the names of a
    /// host that died still resolve on the others (default 10, at least 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub names_ttl: Option<u64>,
}

impl HostConfig {
    pub fn load(paths: &Paths) -> Result<HostConfig> {
        Ok(fsutil::read_json(&paths.host_config_file())?.unwrap_or_default())
    }

    /// Where the cluster store is, as [`crate::cluster::open`] takes it.
    pub fn store_config(&self) -> crate::cluster::StoreConfig {
        crate::cluster::StoreConfig {
            url: self.store.clone(),
            ca: self.store_ca.clone(),
            cert: self.store_cert.clone(),
            key: self.store_key.clone(),
            timeout: None,
        }
    }
}

/// `/etc/wirehook/policy.json`: what annotations may do beyond choosing a
/// network. Annotations come from whoever may create a container (with
/// CRI-O: anyone who may create a pod), so the defaults deny what could
/// reach the host: privileged host ports, inline network definitions.
/// Host mode, `container:` and static addresses are allowed by default for
/// compatibility with docker and podman; each can be switched off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Allow `io.wirehook.driver`, `io.wirehook.subnet`, ... to define a
    /// network on first use (development machines, tests).
    #[serde(default)]
    pub allow_inline_networks: bool,
    /// Allow published host ports below 1024.
    #[serde(default)]
    pub allow_privileged_ports: bool,
    /// Allow `io.wirehook.network=host`.
    #[serde(default = "yes")]
    pub allow_host_mode: bool,
    /// Allow `io.wirehook.network=container:<x>` (always only within one
    /// pod when the runtime names pods).
    #[serde(default = "yes")]
    pub allow_container_mode: bool,
    /// Allow `io.wirehook.ip` and `io.wirehook.mac`.
    #[serde(default = "yes")]
    pub allow_static_addresses: bool,
    /// The networks annotations may name; absent: every network the
    /// operator created, and the built-in `bridge`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networks: Option<Vec<String>>,
}

fn yes() -> bool {
    true
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            allow_inline_networks: false,
            allow_privileged_ports: false,
            allow_host_mode: true,
            allow_container_mode: true,
            allow_static_addresses: true,
            networks: None,
        }
    }
}

impl Policy {
    pub fn load(paths: &Paths) -> Result<Policy> {
        Ok(fsutil::read_json(&paths.policy_file())?.unwrap_or_default())
    }
}
