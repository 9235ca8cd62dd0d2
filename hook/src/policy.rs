//! The operator's policy, applied to a container's request before anything
//! is made: what annotations may do beyond choosing a network
//! (`/etc/wirehook/policy.json`, see [`Policy`]), and the checks no policy
//! switches off: a published port never takes a host port a host socket
//! listens on, and its host address is one of the host's.
//!
//! Every refusal is one line that names the annotation and the setting.

use std::collections::BTreeMap;
use std::net::IpAddr;

use wirehook_shared::annotations::{NetworkRequest, Request};
use wirehook_shared::error::{Error, Result};
use wirehook_shared::hostconfig::Policy;
use wirehook_shared::listeners;
use wirehook_shared::netlink::Netlink;
use wirehook_shared::paths::Paths;
use wirehook_shared::ports::Protocol;

/// Annotations by which CRI runtimes name a container's pod (CRI-O,
/// containerd).
const POD_KEYS: [&str; 2] = [
    "io.kubernetes.cri-o.SandboxID",
    "io.kubernetes.cri.sandbox-id",
];

/// The pod a container belongs to, if its runtime names one. The runtime
/// sets these keys itself (over any the pod's author wrote), but the value
/// is still checked like an id before it is kept.
pub fn pod_of(annotations: &BTreeMap<String, String>) -> Result<Option<String>> {
    for key in POD_KEYS {
        if let Some(v) = annotations.get(key) {
            if !wirehook_shared::fsutil::is_safe_component(v, 128) {
                return Err(Error::invalid(format!(
                    "annotation {key} is not a valid sandbox id (1-128 of A-Z a-z 0-9 _ . -)"
                )));
            }
            return Ok(Some(v.clone()));
        }
    }
    Ok(None)
}

/// Refuse what `policy` does not allow in `req`, and published ports that
/// would take a host service's port or name an address the host does not
/// have.
pub fn enforce(paths: &Paths, policy: &Policy, req: &Request, host_nl: &Netlink) -> Result<()> {
    let file = paths.policy_file();
    let refuse = |what: String, setting: &str| {
        Error::invalid(format!(
            "{what}, which the policy does not allow ({setting} is false in {}): remove it, or ask the operator to set \"{setting}\": true",
            file.display()
        ))
    };
    match &req.network {
        NetworkRequest::Host if !policy.allow_host_mode => {
            return Err(refuse(
                "io.wirehook.network=host shares the host's network namespace".into(),
                "allow_host_mode",
            ))
        }
        NetworkRequest::Container(c) if !policy.allow_container_mode => {
            return Err(refuse(
                format!("io.wirehook.network=container:{c} joins another container's namespace"),
                "allow_container_mode",
            ))
        }
        NetworkRequest::Networks(names) => {
            if let Some(allowed) = &policy.networks {
                if let Some(n) = names.iter().find(|n| !allowed.contains(n)) {
                    return Err(Error::invalid(format!(
                        "io.wirehook.network names network {n}, which the policy does not let containers choose (\"networks\" in {}): use one of: {}",
                        file.display(),
                        allowed.join(", ")
                    )));
                }
            }
        }
        _ => {}
    }
    if !policy.allow_static_addresses {
        if !req.ips.is_empty() {
            return Err(refuse(
                "io.wirehook.ip asks for a static address".into(),
                "allow_static_addresses",
            ));
        }
        if req.mac.is_some() {
            return Err(refuse(
                "io.wirehook.mac asks for a static MAC".into(),
                "allow_static_addresses",
            ));
        }
    }
    if req.ports.is_empty() {
        return Ok(());
    }
    if !policy.allow_privileged_ports {
        if let Some(p) = req.ports.iter().find(|p| p.host_port < 1024) {
            return Err(refuse(
                format!(
                    "io.wirehook.ports publishes host port {}/{}, below 1024",
                    p.host_port,
                    p.protocol.as_str()
                ),
                "allow_privileged_ports",
            ));
        }
    }
    let mut host_addrs = HostAddrs {
        nl: host_nl,
        addrs: None,
    };
    check_host_addresses(req, &mut host_addrs)?;
    check_listeners(req)?;
    check_other_scope(paths, req, &mut host_addrs)
}

/// The host's addresses, read once when a check first needs them.
struct HostAddrs<'a> {
    nl: &'a Netlink,
    addrs: Option<Vec<IpAddr>>,
}

impl HostAddrs<'_> {
    fn get(&mut self) -> Result<&[IpAddr]> {
        if self.addrs.is_none() {
            let a = self.nl.addresses()?.into_iter().map(|(_, ip, _)| ip);
            self.addrs = Some(a.collect());
        }
        Ok(self.addrs.as_deref().unwrap_or_default())
    }
}

/// What the policy says about `wirehook network connect NET CTR [--ip
/// A]...`: the network must be one containers may choose, and static
/// addresses need `allow_static_addresses`, as at setup.
pub fn enforce_connect(
    paths: &Paths,
    policy: &Policy,
    network: &str,
    ips: &[IpAddr],
) -> Result<()> {
    let file = paths.policy_file();
    if let Some(allowed) = &policy.networks {
        if !allowed.iter().any(|n| n == network) {
            return Err(Error::invalid(format!(
                "network {network} is not one the policy lets containers choose (\"networks\" in {}): use one of: {}",
                file.display(),
                allowed.join(", ")
            )));
        }
    }
    if !ips.is_empty() && !policy.allow_static_addresses {
        return Err(Error::invalid(format!(
            "--ip asks for a static address, which the policy does not allow (allow_static_addresses is false in {}): drop --ip, or ask the operator to set \"allow_static_addresses\": true",
            file.display()
        )));
    }
    Ok(())
}

/// A host port another container publishes in the other scope is refused
/// too: on every address against on one of them, both ways (nftables keeps
/// the two in separate maps, so adding the element would not clash). Which
/// container holds it is found by its address. One lookup per host port
/// and host address, through one socket.
fn check_other_scope(paths: &Paths, req: &Request, host_addrs: &mut HostAddrs<'_>) -> Result<()> {
    use wirehook_shared::firewall::{self, PortRule};
    let unspecified = |v6: bool| -> IpAddr {
        if v6 {
            std::net::Ipv6Addr::UNSPECIFIED.into()
        } else {
            std::net::Ipv4Addr::UNSPECIFIED.into()
        }
    };
    let mut candidates = Vec::new();
    for p in &req.ports {
        for (host_port, _) in p.pairs() {
            let rule = |host_ip: Option<IpAddr>, v6: bool| PortRule {
                protocol: p.protocol,
                host_ip,
                host_port,
                container_ip: unspecified(v6),
                container_port: 0,
            };
            match p.host_ip.filter(|ip| !ip.is_unspecified()) {
                // One address: someone on every address of its family?
                Some(ip) => candidates.push((host_port, rule(None, ip.is_ipv6()))),
                // Every address: someone on one of the host's addresses?
                None => {
                    for a in host_addrs.get()? {
                        candidates.push((host_port, rule(Some(*a), a.is_ipv6())));
                    }
                }
            }
        }
    }
    let rules: Vec<PortRule> = candidates.iter().map(|(_, r)| r.clone()).collect();
    for ((host_port, r), found) in candidates.iter().zip(firewall::published_targets(&rules)) {
        let Some((ip, _)) = found else { continue };
        // A teardown still finishing lets go of it in a moment.
        if crate::finish::held_by_finishing_teardown(paths, ip) {
            continue;
        }
        let holder = wirehook_shared::store::Records::new(paths)
            .list()
            .into_iter()
            .find(|rec| rec.addresses().any(|a| a == ip))
            .map_or_else(
                || ip.to_string(),
                |rec| format!("container {} ({ip})", rec.name),
            );
        let scope = match r.host_ip {
            Some(a) => format!("on {a}"),
            None => "on every address".to_string(),
        };
        return Err(Error::Conflict(format!(
            "io.wirehook.ports publishes host port {host_port}/{}, which {holder} already publishes {scope}: pick another host port",
            r.protocol.as_str()
        )));
    }
    Ok(())
}

/// A host address in a port mapping must be one of the host's.
fn check_host_addresses(req: &Request, host_addrs: &mut HostAddrs<'_>) -> Result<()> {
    let wanted: Vec<IpAddr> = req
        .ports
        .iter()
        .filter_map(|p| p.host_ip)
        .filter(|ip| !ip.is_unspecified())
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let mine = host_addrs.get()?;
    match wanted.iter().find(|ip| !mine.contains(ip)) {
        Some(ip) => Err(Error::invalid(format!(
            "io.wirehook.ports publishes on {ip}, which is not an address of this host: use one of the host's addresses, or none for all of them"
        ))),
        None => Ok(()),
    }
}

/// At most this many host ports of one protocol are probed with a bind
/// before the listeners are dumped instead.
const PROBED_PORTS: usize = 8;

/// A published host port must not be one a host socket listens on.
fn check_listeners(req: &Request) -> Result<()> {
    for proto in Protocol::ALL {
        let mine: Vec<_> = req.ports.iter().filter(|p| p.protocol == proto).collect();
        if mine.is_empty() {
            continue;
        }
        // A few ports are probed one by one; a range is dumped at once.
        let count: usize = mine.iter().map(|p| p.pairs().count()).sum();
        if count <= PROBED_PORTS
            && mine.iter().all(|p| {
                p.pairs()
                    .all(|(host_port, _)| listeners::port_unused(proto, host_port))
            })
        {
            continue;
        }
        let socks = listeners::listeners(proto)?;
        for p in mine {
            for (host_port, _) in p.pairs() {
                if let Some(s) = socks
                    .iter()
                    .find(|s| s.overlaps(proto, p.host_ip, host_port))
                {
                    return Err(Error::Conflict(format!(
                        "io.wirehook.ports publishes host port {host_port}/{}, on which {} listens on the host: pick another host port",
                        proto.as_str(),
                        s.holder()
                    )));
                }
            }
        }
    }
    Ok(())
}
