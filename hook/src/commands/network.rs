//! `wirehook network create|ls|inspect|rm`, with docker's flags, and
//! `connect|disconnect` (in [`super::connect`]).

use std::collections::BTreeMap;
use std::net::IpAddr;

use anyhow::{anyhow, bail, Result};
use clap::{Args, Subcommand};
use ipnetwork::IpNetwork;
use serde_json::json;
use wirehook_shared::fsutil;
use wirehook_shared::netlink::Netlink;
use wirehook_shared::network::{
    build_definition, CreateOptions, Driver, NetworkDef, Networks, DEFAULT_NETWORK,
};
use wirehook_shared::paths::Paths;
use wirehook_shared::store::{ContainerRecord, Records};

use wirehook_shared::hostconfig::HostConfig;
use wirehook_shared::overlay::{self, LocalState};

use crate::drivers::overlay as overlay_driver;
use crate::drivers::{bridge, parent};
use crate::log;
use crate::resolve::host_routes;

#[derive(Subcommand)]
pub enum NetworkCmd {
    /// Define a network
    #[command(
        after_help = "Examples:\n  wirehook network create web\n  wirehook network create --subnet 10.20.0.0/24 --gateway 10.20.0.254 --ip-range 10.20.0.128/25 web\n  wirehook network create --internal --ipv6 backend\n  wirehook network create --driver macvlan --parent eth0 --subnet 192.168.1.0/24 --gateway 192.168.1.1 --ip-range 192.168.1.192/27 lan\n  wirehook network create --driver macvlan --parent eth0.100 --subnet 10.100.0.0/24 vlan100   (makes eth0.100 if missing)\n  wirehook network create --driver ipvlan --mode l3 --parent eth0 --subnet 10.77.0.0/24 routed\n\nmacvlan and ipvlan: --parent must exist in the host's network namespace (an 802.1Q name BASE.ID is made when BASE exists, and removed with the last network on it); --subnet is the subnet of the parent's segment and --gateway its router. Containers on them publish no ports and cannot reach the host through the parent."
    )]
    Create(Box<CreateArgs>),
    /// List networks
    #[command(alias = "list")]
    Ls {
        /// Print JSON
        #[arg(long)]
        json: bool,
        /// Print names only
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show networks as JSON, with the containers on them
    Inspect {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove networks (refused while containers use them)
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Add a network to a running container (the next free ethN)
    #[command(
        after_help = "CONTAINER is the id, name or a unique id prefix of a running container wired by wirehook (not one in host, none or container: mode). The new interface gets no default route and publishes no ports (those stay with the first); it is in the container's record, so stopping the container removes it. Names follow at once: the container resolves the network's names, and they resolve it by its name, its io.wirehook.aliases and the --alias names given here (on this network only).
Examples:
  wirehook network connect back web
  wirehook network connect --ip 10.89.3.10 --alias api back web"
    )]
    Connect {
        /// Static address in the network's subnet (one per subnet; repeatable)
        #[arg(long, value_name = "IP")]
        ip: Vec<IpAddr>,
        /// Another name of the container on this network only (repeatable)
        #[arg(long, value_name = "NAME")]
        alias: Vec<String>,
        /// Network name
        network: String,
        /// Container id or name
        container: String,
    },
    /// Take a network away from a running container (not its last)
    Disconnect {
        /// Network name
        network: String,
        /// Container id or name
        container: String,
    },
}

#[derive(Args)]
pub struct CreateArgs {
    /// Driver: bridge (default), macvlan, ipvlan, overlay
    #[arg(short, long, default_value = "bridge")]
    driver: String,
    /// Subnet in CIDR form; repeat for IPv4 + IPv6 (default: a free /24 from 10.89.0.0/16)
    #[arg(long, value_name = "CIDR")]
    subnet: Vec<IpNetwork>,
    /// Gateway of the subnet given in the same position (default: its first address)
    #[arg(long, value_name = "IP")]
    gateway: Vec<IpAddr>,
    /// Allocate container addresses only from this part of the subnet
    #[arg(long, value_name = "CIDR")]
    ip_range: Vec<IpNetwork>,
    /// Address the allocator must never hand out ([NAME=]IP); repeatable
    #[arg(long, value_name = "[NAME=]IP")]
    aux_address: Vec<String>,
    /// No outside access: no default route in containers (bridge: no masquerade; macvlan/ipvlan: the parent's segment only)
    #[arg(long)]
    internal: bool,
    /// Names: containers on the network resolve each other by name through
    /// the resolver at 127.0.0.11 (--dns=false turns it off)
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    dns: bool,
    /// MTU of the bridge and the container interfaces (macvlan/ipvlan: at most the parent's; default the parent's)
    #[arg(long)]
    mtu: Option<u32>,
    /// Add an IPv6 subnet (a unique-local /64 unless --subnet gives one)
    #[arg(long)]
    ipv6: bool,
    /// Name of the Linux bridge device (default: wh-NAME)
    #[arg(long, value_name = "IFNAME")]
    bridge: Option<String>,
    /// Parent interface of macvlan/ipvlan networks; BASE.ID (eth0.100) makes that 802.1Q interface when missing
    #[arg(long, value_name = "IFACE")]
    parent: Option<String>,
    /// Driver mode: macvlan bridge (default), private, vepa, passthru; ipvlan l2 (default), l3, l3s
    #[arg(long)]
    mode: Option<String>,
    /// VXLAN network id (overlay)
    #[arg(long)]
    vni: Option<u32>,
    /// Overlay: prefix length of each host's share of --subnet (default /24)
    #[arg(long, value_name = "LEN")]
    host_prefix: Option<u8>,
    /// Overlay: encrypt traffic between hosts with WireGuard (each host's
    /// private key stays on it; the kernel needs the wireguard module)
    #[arg(long)]
    encrypted: bool,
    /// Label KEY=VALUE; repeatable
    #[arg(long, value_name = "KEY=VALUE")]
    label: Vec<String>,
    /// Network name
    name: String,
}

pub fn run(paths: &Paths, cmd: NetworkCmd) -> Result<()> {
    match cmd {
        NetworkCmd::Create(a) => create(paths, *a),
        NetworkCmd::Ls { json, quiet } => ls(paths, json, quiet),
        NetworkCmd::Inspect { names } => inspect(paths, &names),
        NetworkCmd::Connect {
            ip,
            alias,
            network,
            container,
        } => crate::commands::connect::connect(paths, &network, &container, &ip, &alias),
        NetworkCmd::Disconnect { network, container } => {
            crate::commands::connect::disconnect(paths, &network, &container)
        }
        NetworkCmd::Rm { names } => {
            for n in &names {
                rm(paths, n)?;
                println!("{n}");
            }
            Ok(())
        }
    }
}

fn create(paths: &Paths, a: CreateArgs) -> Result<()> {
    if a.name == DEFAULT_NETWORK {
        bail!(
            "network {DEFAULT_NETWORK} is built in: pick another name (its subnet is set in {})",
            paths.host_config_file().display()
        );
    }
    let aux_addresses = a
        .aux_address
        .iter()
        .map(|s| {
            let ip = s.rsplit('=').next().unwrap_or(s);
            ip.parse::<IpAddr>()
                .map_err(|_| anyhow!("--aux-address {s:?}: expected [NAME=]IP"))
        })
        .collect::<Result<Vec<_>>>()?;
    let labels = a
        .label
        .iter()
        .map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| anyhow!("--label {l:?}: expected KEY=VALUE"))
        })
        .collect::<Result<BTreeMap<_, _>>>()?;
    let driver = Driver::parse(&a.driver)?;
    if a.encrypted && driver != Driver::Overlay {
        bail!("--encrypted is for overlay networks, not {driver}: add --driver overlay");
    }
    let encrypted = a.encrypted;
    let opts = CreateOptions {
        name: a.name.clone(),
        driver: Some(driver),
        subnets: a.subnet,
        gateways: a.gateway,
        ip_ranges: a.ip_range,
        aux_addresses,
        internal: a.internal,
        dns: Some(a.dns),
        mtu: a.mtu,
        ipv6: a.ipv6,
        parent: a.parent,
        mode: a.mode,
        vni: a.vni,
        host_prefix: a.host_prefix,
        bridge: a.bridge,
        labels,
    };
    let routes = Netlink::new()
        .map(|nl| host_routes(&nl))
        .unwrap_or_default();
    let store = Networks::new(paths);
    if driver == Driver::Overlay {
        return create_overlay(paths, &opts, encrypted, &store, &routes);
    }
    if !matches!(driver, Driver::Macvlan | Driver::Ipvlan) {
        let def = store.create(&opts, &routes)?;
        log::info(format!("created network {} ({})", def.name, summary(&def)));
        println!("{}", def.name);
        return Ok(());
    }
    // macvlan/ipvlan: validate first, then make sure the kernel and the
    // parent can carry the network (making an 802.1Q parent now, as
    // docker does), then store it.
    let draft = build_definition(&opts, &store.list()?, &routes)?;
    if store.get(&draft.name)?.is_some() {
        bail!(
            "network {} already exists: pick another name or remove it first (wirehook network rm {})",
            draft.name,
            draft.name
        );
    }
    if driver == Driver::Ipvlan {
        if let Some(Err(msg)) = parent::kernel_supports("ipvlan") {
            bail!("{msg}");
        }
    }
    let nl = Netlink::new()?;
    let (link, made) = parent::ensure_parent(paths, &nl, &draft, true)?;
    if !link.up {
        let msg = format!(
            "parent {} is down: containers on network {} cannot start until it is up (`ip link set {} up`)",
            link.name, draft.name, link.name
        );
        log::warn(&msg);
        eprintln!("wirehook: warning: {msg}");
    }
    let def = match store.create(&opts, &routes) {
        Ok(def) => def,
        Err(e) => {
            if made {
                parent::forget_made_parent(paths, &nl, &link.name);
            }
            return Err(e.into());
        }
    };
    log::info(format!(
        "created network {} ({} {} on {}{}; {})",
        def.name,
        def.driver,
        def.mode.as_deref().unwrap_or("-"),
        link.name,
        if made { ", made by wirehook" } else { "" },
        summary(&def)
    ));
    println!("{}", def.name);
    Ok(())
}

/// Overlay networks live in the cluster store (etcd, or the local one):
/// every host sees them. Their subnet must not overlap this host's
/// networks or routes, nor another overlay network.
fn create_overlay(
    paths: &Paths,
    opts: &CreateOptions,
    encrypted: bool,
    local: &Networks<'_>,
    routes: &[IpNetwork],
) -> Result<()> {
    wirehook_shared::annotations::validate_network_name(&opts.name)?;
    if local.get(&opts.name)?.is_some() {
        bail!(
            "network {} already exists on this host: pick another name",
            opts.name
        );
    }
    let st = overlay_driver::store(paths)?;
    let mut existing = local.list()?;
    existing.extend(overlay::list_networks(st.as_ref())?);
    if existing.iter().any(|d| d.name == opts.name) {
        bail!(
            "network {} already exists in {}: pick another name or remove it first (wirehook network rm {})",
            opts.name,
            st.describe(),
            opts.name
        );
    }
    let mut draft = build_definition(opts, &existing, routes)?;
    if encrypted {
        // Never a network that would have to fall back to plaintext here.
        wirehook_shared::wireguard::kernel_check()?;
        draft.encrypted = true;
    }
    let def = overlay::create_network(st.as_ref(), draft)?;
    log::info(format!(
        "created overlay network {} ({}, VNI {}, /{} a host{}) in {}",
        def.name,
        summary(&def),
        def.vni.unwrap_or(0),
        def.host_prefix.unwrap_or(24),
        if def.encrypted { ", encrypted" } else { "" },
        st.describe()
    ));
    println!("{}", def.name);
    Ok(())
}

fn summary(def: &NetworkDef) -> String {
    def.subnets
        .iter()
        .map(|s| s.subnet.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Every network, the built-in one included.
/// Local networks and the cluster store's overlay networks, by name. An
/// unreachable store is a warning here: the local ones still list.
fn all(paths: &Paths) -> Result<Vec<NetworkDef>> {
    let store = Networks::new(paths);
    if store.get(DEFAULT_NETWORK)?.is_none() {
        let nl = Netlink::new()?;
        store.get_or_builtin(DEFAULT_NETWORK, || host_routes(&nl))?;
    }
    let mut defs = store.list()?;
    match overlay_driver::store(paths).and_then(|st| overlay::list_networks(st.as_ref())) {
        Ok(o) => defs.extend(o),
        Err(e) => eprintln!("wirehook: warning: overlay networks not listed: {e}"),
    }
    defs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(defs)
}

/// A network by name: local, else overlay.
fn find(paths: &Paths, name: &str) -> Result<Option<NetworkDef>> {
    let store = Networks::new(paths);
    let local = if name == DEFAULT_NETWORK {
        let nl = Netlink::new()?;
        store.get_or_builtin(name, || host_routes(&nl))?
    } else {
        store.get(name)?
    };
    if local.is_some() {
        return Ok(local);
    }
    let st = overlay_driver::store(paths)?;
    Ok(overlay::load_view(st.as_ref(), name)?.def)
}

fn users<'r>(records: &'r [ContainerRecord], network: &str) -> Vec<&'r ContainerRecord> {
    records
        .iter()
        .filter(|r| r.interfaces.iter().any(|i| i.network == network))
        .collect()
}

fn ls(paths: &Paths, json: bool, quiet: bool) -> Result<()> {
    let defs = all(paths)?;
    let records = Records::new(paths).list();
    if quiet {
        for d in &defs {
            println!("{}", d.name);
        }
        return Ok(());
    }
    if json {
        let v: Vec<_> = defs
            .iter()
            .map(|d| inspect_json(paths, d, &records))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let rows: Vec<[String; 6]> = defs
        .iter()
        .map(|d| {
            [
                d.name.clone(),
                d.driver.to_string(),
                summary(d),
                d.subnets
                    .iter()
                    .map(|s| s.gateway.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
                d.bridge
                    .clone()
                    .or_else(|| d.parent.clone())
                    .unwrap_or_else(|| "-".into()),
                users(&records, &d.name).len().to_string(),
            ]
        })
        .collect();
    crate::commands::ps::print_table(
        &[
            "NAME",
            "DRIVER",
            "SUBNETS",
            "GATEWAYS",
            "DEVICE",
            "CONTAINERS",
        ],
        &rows,
    );
    Ok(())
}

fn inspect_json(paths: &Paths, d: &NetworkDef, records: &[ContainerRecord]) -> serde_json::Value {
    let mut v = serde_json::to_value(d).expect("serializable");
    let containers: Vec<_> = users(records, &d.name)
        .iter()
        .map(|r| {
            let iface = r.interfaces.iter().find(|i| i.network == d.name);
            json!({
                "id": r.id,
                "name": r.name,
                "aliases": r.aliases.iter().chain(iface.map(|i| i.aliases.iter()).into_iter().flatten()).collect::<Vec<_>>(),
                "dns_names": iface.filter(|i| i.dns).map(|i| r.dns_names_on(i)).unwrap_or_default(),
                "interface": iface.map(|i| i.ifname.clone()),
                "connected": iface.is_some_and(|i| i.connected),
                "mac": iface.map(|i| i.mac.clone()),
                "addresses": iface.map(|i| i.addresses.clone()).unwrap_or_default(),
            })
        })
        .collect();
    v["containers"] = json!(containers);
    v["realized"] = match d.driver {
        // Their host side is the parent: present and up?
        Driver::Macvlan | Driver::Ipvlan => {
            json!(Netlink::new().is_ok_and(|nl| parent::parent_state(&nl, d).is_ok()))
        }
        Driver::Overlay => json!(LocalState::load(paths, &d.name).ok().flatten().is_some()),
        _ => json!(paths
            .realized_dir()
            .join(format!("{}.json", d.name))
            .exists()),
    };
    if d.driver == Driver::Overlay {
        // Every host's share from the store, this host's entries as last
        // programmed.
        let hosts = overlay_driver::store(paths)
            .and_then(|st| overlay::load_view(st.as_ref(), &d.name))
            .map(|view| {
                view.hosts
                    .values()
                    .map(|c| {
                        json!({
                            "host": c.host,
                            "hostname": c.hostname,
                            "subnet": c.subnet,
                            "underlay": c.underlay,
                            "vtep_mac": c.vtep_mac,
                            "wg_key": c.wg_key,
                            "agent": c.liveness,
                            "member": view.is_member(&c.host),
                        })
                    })
                    .collect::<Vec<_>>()
            });
        v["hosts"] = match hosts {
            Ok(h) => json!(h),
            Err(e) => json!({ "error": e.to_string() }),
        };
        v["local"] = json!(LocalState::load(paths, &d.name).ok().flatten());
        if d.encrypted {
            v["wireguard"] = overlay_driver::wireguard_json(&d.name);
        }
    }
    v
}

fn inspect(paths: &Paths, names: &[String]) -> Result<()> {
    let records = Records::new(paths).list();
    let mut out = Vec::new();
    for n in names {
        let def =
            find(paths, n)?.ok_or_else(|| anyhow!("no network {n} (see `wirehook network ls`)"))?;
        out.push(inspect_json(paths, &def, &records));
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

fn rm(paths: &Paths, name: &str) -> Result<()> {
    let store = Networks::new(paths);
    let def = find(paths, name)?
        .ok_or_else(|| anyhow!("no network {name} (see `wirehook network ls`)"))?;
    if def.builtin {
        bail!("network {name} is built in and cannot be removed");
    }
    let _lock = bridge::network_lock(paths, name)?;
    let records = Records::new(paths).list();
    let using = users(&records, name);
    if !using.is_empty() {
        bail!(
            "network {name} is in use by {} container(s) ({}): stop them first",
            using.len(),
            using
                .iter()
                .map(|r| r.name.as_str())
                .take(5)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    match def.driver {
        Driver::Bridge => {
            let nl = Netlink::new()?;
            bridge::unrealize(paths, &nl, &def)?;
        }
        Driver::Macvlan | Driver::Ipvlan => {
            // An 802.1Q parent wirehook made goes with its last network.
            let nl = Netlink::new()?;
            if let Some(vlan) = parent::release_parent(paths, &nl, &def, &store.list()?)? {
                log::info(format!(
                    "network {name}: removed 802.1Q interface {vlan}, which wirehook made for it"
                ));
            }
        }
        Driver::Overlay => {
            // Cluster-wide: only once no other host holds a share.
            let st = overlay_driver::store(paths)?;
            let view = overlay::load_view(st.as_ref(), name)?;
            let me = overlay::host_id(HostConfig::load(paths)?.host_id.as_deref())?;
            let others: Vec<&str> = view
                .hosts
                .keys()
                .filter(|h| **h != me)
                .map(String::as_str)
                .collect();
            if !others.is_empty() {
                bail!(
                    "overlay network {name} still has shares on host(s) {}: run `wirehook overlay leave {name}` there (or `wirehook overlay forget {name} HOST` for hosts that are gone), then remove it",
                    others.join(", ")
                );
            }
            let nl = Netlink::new()?;
            overlay_driver::unrealize(paths, &nl, name)?;
            overlay::delete_network(st.as_ref(), &def)?;
        }
    }
    let leases = paths.leases_dir(name);
    if leases.exists() {
        std::fs::remove_dir_all(&leases)
            .map_err(|e| anyhow!("remove {}: {e}", leases.display()))?;
    }
    if def.driver != Driver::Overlay {
        store.remove(name)?;
    }
    let _ = fsutil::remove_file(&paths.locks_dir().join(format!("net-{name}.lock")));
    log::info(format!("removed network {name}"));
    Ok(())
}
