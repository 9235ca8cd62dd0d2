//! From the names in `io.wirehook.network` to network definitions: the
//! operator's networks, the built-in `bridge`, and (where the policy
//! allows) networks defined inline by annotations.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use wirehook_shared::annotations::Request;
use wirehook_shared::error::{Error, Result};
use wirehook_shared::hostconfig::Policy;
use wirehook_shared::netlink::Netlink;
use wirehook_shared::network::{CreateOptions, Driver, NetworkDef, Networks};
use wirehook_shared::paths::Paths;

/// The host's IPv4 routes, so the built-in network avoids them.
pub fn host_routes(nl: &Netlink) -> Vec<IpNetwork> {
    nl.routes(false)
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.prefix > 0 && r.table == 254)
        .filter_map(|r| IpNetwork::new(r.destination?, r.prefix).ok())
        .collect()
}

/// Load every requested network, defining inline ones if allowed, and
/// check the static addresses fit them.
pub fn networks(
    paths: &Paths,
    nl: &Netlink,
    names: &[String],
    req: &Request,
) -> Result<Vec<NetworkDef>> {
    let store = Networks::new(paths);
    if !req.inline.is_empty() {
        if names.len() != 1 {
            return Err(Error::invalid(
                "inline network annotations (io.wirehook.driver, io.wirehook.subnet, ...) need exactly one network in io.wirehook.network",
            ));
        }
        let policy = Policy::load(paths)?;
        if !policy.allow_inline_networks {
            let key = req.inline.keys().next().expect("non-empty");
            return Err(Error::invalid(format!(
                "io.wirehook.{key} defines a network inline, which {} does not allow: create the network with `wirehook network create` and name it in io.wirehook.network, or set \"allow_inline_networks\": true",
                paths.policy_file().display()
            )));
        }
    }
    let mut defs = Vec::with_capacity(names.len());
    for name in names {
        let local = match store.get_or_builtin(name, || host_routes(nl))? {
            Some(def) => Some(def),
            // Not a local network: an overlay network in the cluster store?
            None if req.inline.is_empty() => crate::drivers::overlay::lookup(paths, name)?,
            None => None,
        };
        let def = match local {
            Some(def) => {
                if !req.inline.is_empty() {
                    check_inline_matches(&def, req)?;
                }
                def
            }
            None if !req.inline.is_empty() => define_inline(paths, nl, name, req)?,
            None => {
                let known = known_names(paths)?;
                return Err(Error::NotFound(format!(
                    "io.wirehook.network names network {name}, which does not exist: create it with `wirehook network create {name}`{}",
                    if known.is_empty() { String::new() } else { format!(" or use one of: {}", known.join(", ")) }
                )));
            }
        };
        defs.push(def);
    }
    for (i, def) in defs.iter().enumerate() {
        if matches!(def.driver, Driver::Macvlan | Driver::Ipvlan) {
            crate::drivers::parent::check_request(def, req, i)?;
        }
    }
    for ip in &req.ips {
        if !defs
            .iter()
            .any(|d| d.subnets.iter().any(|s| s.subnet.contains(*ip)))
        {
            return Err(Error::invalid(format!(
                "io.wirehook.ip {ip} is in none of the subnets of {}: pick an address inside them",
                defs.iter()
                    .map(|d| format!(
                        "{} ({})",
                        d.name,
                        d.subnets
                            .iter()
                            .map(|s| s.subnet.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    Ok(defs)
}

/// A defined network by name: the operator's, the built-in `bridge`, or
/// an overlay network in the cluster store.
pub fn lookup(paths: &Paths, nl: &Netlink, name: &str) -> Result<Option<NetworkDef>> {
    match Networks::new(paths).get_or_builtin(name, || host_routes(nl))? {
        Some(def) => Ok(Some(def)),
        None => crate::drivers::overlay::lookup(paths, name),
    }
}

/// The names of the defined local networks, for messages.
pub fn known_names(paths: &Paths) -> Result<Vec<String>> {
    Ok(Networks::new(paths)
        .list()?
        .into_iter()
        .map(|d| d.name)
        .collect())
}

fn inline_options(name: &str, req: &Request) -> Result<CreateOptions> {
    let get = |k: &str| req.inline.get(k).map(String::as_str);
    let parse_net = |k: &str| -> Result<Vec<IpNetwork>> {
        get(k)
            .map(|v| {
                v.split(',')
                    .map(|s| {
                        s.trim()
                            .parse::<IpNetwork>()
                            .map_err(|e| Error::invalid(format!("io.wirehook.{k} {s:?}: {e}")))
                    })
                    .collect()
            })
            .unwrap_or(Ok(Vec::new()))
    };
    let gateways: Vec<IpAddr> = match get("gateway") {
        Some(v) => v
            .split(',')
            .map(|s| {
                s.trim().parse().map_err(|_| {
                    Error::invalid(format!("io.wirehook.gateway {s:?} is not an IP address"))
                })
            })
            .collect::<Result<_>>()?,
        None => Vec::new(),
    };
    Ok(CreateOptions {
        name: name.to_string(),
        driver: get("driver").map(Driver::parse).transpose()?,
        subnets: parse_net("subnet")?,
        gateways,
        ip_ranges: parse_net("ip-range")?,
        internal: get("internal") == Some("true"),
        ipv6: get("ipv6") == Some("true"),
        parent: get("parent").map(str::to_string),
        mode: get("mode").map(str::to_string),
        vni: get("vni").and_then(|v| v.parse().ok()),
        ..Default::default()
    })
}

fn define_inline(paths: &Paths, nl: &Netlink, name: &str, req: &Request) -> Result<NetworkDef> {
    let opts = inline_options(name, req)?;
    if let Some(d) = opts.driver.filter(|d| *d == Driver::Overlay) {
        return Err(Error::invalid(format!(
            "io.wirehook.driver={d}: overlay networks span hosts and are not defined inline: create it with `wirehook network create --driver overlay {name}`"
        )));
    }
    let store = Networks::new(paths);
    let routes = host_routes(nl);
    match store.create(&opts, &routes) {
        Ok(def) => Ok(def),
        // Another container defined it at the same moment: compare with that.
        Err(Error::Conflict(_)) if store.get(name)?.is_some() => {
            let def = store.get(name)?.expect("just seen");
            check_inline_matches(&def, req)?;
            Ok(def)
        }
        Err(e) => Err(e),
    }
}

/// A later container's inline options must agree with the definition.
fn check_inline_matches(def: &NetworkDef, req: &Request) -> Result<()> {
    let opts = inline_options(&def.name, req)?;
    let mismatch = |key: &str, want: String, have: String| {
        Err(Error::Conflict(format!(
            "io.wirehook.{key}={want} contradicts network {}, which has {key} {have}: drop the annotation or use another network name",
            def.name
        )))
    };
    if let Some(d) = opts.driver {
        if d != def.driver {
            return mismatch("driver", d.to_string(), def.driver.to_string());
        }
    }
    for s in &opts.subnets {
        if !def.subnets.iter().any(|x| x.subnet == *s) {
            return mismatch(
                "subnet",
                s.to_string(),
                def.subnet_cidrs()
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            );
        }
    }
    for g in &opts.gateways {
        if !def.subnets.iter().any(|x| x.gateway == *g) {
            return mismatch(
                "gateway",
                g.to_string(),
                def.subnets
                    .iter()
                    .map(|s| s.gateway.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            );
        }
    }
    if req.inline.contains_key("internal") && opts.internal != def.internal {
        return mismatch(
            "internal",
            opts.internal.to_string(),
            def.internal.to_string(),
        );
    }
    if let Some(p) = &opts.parent {
        if def.parent.as_ref() != Some(p) {
            return mismatch(
                "parent",
                p.clone(),
                def.parent.clone().unwrap_or_else(|| "none".into()),
            );
        }
    }
    if let Some(m) = &opts.mode {
        if def.mode.as_ref() != Some(m) {
            return mismatch(
                "mode",
                m.clone(),
                def.mode.clone().unwrap_or_else(|| "default".into()),
            );
        }
    }
    if let Some(v) = opts.vni {
        if def.vni != Some(v) {
            return mismatch(
                "vni",
                v.to_string(),
                def.vni
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "none".into()),
            );
        }
    }
    Ok(())
}
