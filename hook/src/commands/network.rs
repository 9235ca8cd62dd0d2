//! `wirehook network create|ls|inspect|rm`, with docker's flags.

use std::collections::BTreeMap;
use std::net::IpAddr;

use anyhow::{anyhow, bail, Result};
use clap::{Args, Subcommand};
use ipnetwork::IpNetwork;
use serde_json::json;
use wirehook_shared::fsutil;
use wirehook_shared::netlink::Netlink;
use wirehook_shared::network::{CreateOptions, Driver, NetworkDef, Networks, DEFAULT_NETWORK};
use wirehook_shared::paths::Paths;
use wirehook_shared::store::{ContainerRecord, Records};

use crate::drivers::bridge;
use crate::log;
use crate::resolve::host_routes;

#[derive(Subcommand)]
pub enum NetworkCmd {
    /// Define a network
    #[command(
        after_help = "Examples:\n  wirehook network create web\n  wirehook network create --subnet 10.20.0.0/24 --gateway 10.20.0.254 --ip-range 10.20.0.128/25 web\n  wirehook network create --internal --ipv6 backend"
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
    /// No outside access: no masquerade, no default route in containers
    #[arg(long)]
    internal: bool,
    /// MTU of the bridge and the container interfaces
    #[arg(long)]
    mtu: Option<u32>,
    /// Add an IPv6 subnet (a unique-local /64 unless --subnet gives one)
    #[arg(long)]
    ipv6: bool,
    /// Name of the Linux bridge device (default: wh-NAME)
    #[arg(long, value_name = "IFNAME")]
    bridge: Option<String>,
    /// Parent interface (macvlan, ipvlan)
    #[arg(long, value_name = "IFACE")]
    parent: Option<String>,
    /// Driver mode (macvlan: bridge|private|vepa|passthru; ipvlan: l2|l3|l3s)
    #[arg(long)]
    mode: Option<String>,
    /// VXLAN network id (overlay)
    #[arg(long)]
    vni: Option<u32>,
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
    if driver != Driver::Bridge {
        bail!("--driver {driver}: this version of wirehook wires bridge networks only (macvlan, ipvlan and overlay are coming); use --driver bridge");
    }
    let opts = CreateOptions {
        name: a.name.clone(),
        driver: Some(driver),
        subnets: a.subnet,
        gateways: a.gateway,
        ip_ranges: a.ip_range,
        aux_addresses,
        internal: a.internal,
        mtu: a.mtu,
        ipv6: a.ipv6,
        parent: a.parent,
        mode: a.mode,
        vni: a.vni,
        bridge: a.bridge,
        labels,
    };
    let routes = Netlink::new()
        .map(|nl| host_routes(&nl))
        .unwrap_or_default();
    let def = Networks::new(paths).create(&opts, &routes)?;
    log::info(format!("created network {} ({})", def.name, summary(&def)));
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
fn all(paths: &Paths) -> Result<Vec<NetworkDef>> {
    let store = Networks::new(paths);
    if store.get(DEFAULT_NETWORK)?.is_none() {
        let nl = Netlink::new()?;
        store.get_or_builtin(DEFAULT_NETWORK, || host_routes(&nl))?;
    }
    Ok(store.list()?)
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
                "interface": iface.map(|i| i.ifname.clone()),
                "mac": iface.map(|i| i.mac.clone()),
                "addresses": iface.map(|i| i.addresses.clone()).unwrap_or_default(),
            })
        })
        .collect();
    v["containers"] = json!(containers);
    v["realized"] = json!(paths
        .realized_dir()
        .join(format!("{}.json", d.name))
        .exists());
    v
}

fn inspect(paths: &Paths, names: &[String]) -> Result<()> {
    let store = Networks::new(paths);
    let records = Records::new(paths).list();
    let mut out = Vec::new();
    for n in names {
        let def = if n == DEFAULT_NETWORK {
            let nl = Netlink::new()?;
            store.get_or_builtin(n, || host_routes(&nl))?
        } else {
            store.get(n)?
        };
        let def = def.ok_or_else(|| anyhow!("no network {n} (see `wirehook network ls`)"))?;
        out.push(inspect_json(paths, &def, &records));
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

fn rm(paths: &Paths, name: &str) -> Result<()> {
    let store = Networks::new(paths);
    let def = store
        .get(name)?
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
    if def.driver == Driver::Bridge {
        let nl = Netlink::new()?;
        bridge::unrealize(paths, &nl, &def)?;
    }
    let leases = paths.leases_dir(name);
    if leases.exists() {
        std::fs::remove_dir_all(&leases)
            .map_err(|e| anyhow!("remove {}: {e}", leases.display()))?;
    }
    store.remove(name)?;
    let _ = fsutil::remove_file(&paths.locks_dir().join(format!("net-{name}.lock")));
    log::info(format!("removed network {name}"));
    Ok(())
}
