//! Host-wide settings the operator writes by hand:
//! `/etc/wirehook/config.json` (defaults of this host) and
//! `/etc/wirehook/policy.json` (what annotations may do). Both optional.

use std::net::IpAddr;

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
}

impl HostConfig {
    pub fn load(paths: &Paths) -> Result<HostConfig> {
        Ok(fsutil::read_json(&paths.host_config_file())?.unwrap_or_default())
    }
}

/// `/etc/wirehook/policy.json`: annotations come from whoever may create a
/// container, so by default they only choose among operator-defined
/// networks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Allow `io.wirehook.driver`, `io.wirehook.subnet`, ... to define a
    /// network on first use (development machines, tests).
    #[serde(default)]
    pub allow_inline_networks: bool,
}

impl Policy {
    pub fn load(paths: &Paths) -> Result<Policy> {
        Ok(fsutil::read_json(&paths.policy_file())?.unwrap_or_default())
    }
}
