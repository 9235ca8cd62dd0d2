//! `wirehook overlay reconcile|leave|forget`: this host's side of overlay
//! networks, by hand or from a timer. `wirehook agent` (in `agent`) does
//! the same continuously from an etcd watch.

use anyhow::{anyhow, bail, Result};
use clap::Subcommand;
use wirehook_shared::cluster::Store;
use wirehook_shared::hostconfig::HostConfig;
use wirehook_shared::netlink::Netlink;
use wirehook_shared::overlay::{self, ClusterView, Identity, LocalState};
use wirehook_shared::paths::Paths;
use wirehook_shared::store::Records;
use wirehook_shared::wireguard::KeyPair;

use crate::drivers::bridge::network_lock;
use crate::drivers::overlay as driver;
use crate::log;

#[derive(Subcommand)]
pub enum OverlayCmd {
    /// Bring this host's side of overlay networks in line with the store,
    /// once: claim a share, make bridge and VXLAN device, program every
    /// member host's route, neighbour and FDB entry, remove the rest
    #[command(
        after_help = "Without NETWORK: every overlay network this host has joined. Naming a network joins it."
    )]
    Reconcile {
        /// Overlay networks (default: those this host has joined)
        networks: Vec<String>,
    },
    /// Give this host's share of an overlay network back and remove its
    /// devices here (refused while containers here use it)
    Leave { network: String },
    /// Remove the share of a host that is gone for good, so its subnet can
    /// be claimed again (refused while that host's agent keeps it alive)
    Forget { network: String, host: String },
    /// Replace this host's WireGuard key pair (encrypted overlay networks)
    /// and publish the new public key; the other hosts' agents pick it up
    #[command(
        after_help = "The new private key replaces /etc/wirehook/wireguard.key (mode 0600); this host's WireGuard devices take the new key (keeping their peers), then every encrypted network this host has joined is reconciled at once, which writes the new public key to the store. Traffic to this host pauses until the other hosts have the new key: their agents apply it as soon as etcd tells them (hosts without an agent: `wirehook overlay reconcile` there)."
    )]
    RotateKey,
}

pub fn run(paths: &Paths, cmd: OverlayCmd) -> Result<()> {
    match cmd {
        OverlayCmd::Reconcile { networks } => reconcile_cmd(paths, networks),
        OverlayCmd::Leave { network } => leave(paths, &network),
        OverlayCmd::Forget { network, host } => forget(paths, &network, &host),
        OverlayCmd::RotateKey => rotate_key(paths),
    }
}

/// Names of the overlay networks this host has joined: a local state
/// file, or a claim in `views`.
pub fn joined(paths: &Paths, me: &str, views: &[&ClusterView]) -> Vec<String> {
    let mut out: Vec<String> = LocalState::list(paths)
        .into_iter()
        .map(|s| s.network)
        .collect();
    for v in views {
        if v.hosts.contains_key(me) && !out.contains(&v.name) {
            out.push(v.name.clone());
        }
    }
    out.sort();
    out
}

/// Containers of this host on network `net`.
pub fn local_users(paths: &Paths, net: &str) -> Vec<String> {
    Records::new(paths)
        .list()
        .into_iter()
        .filter(|r| r.interfaces.iter().any(|i| i.network == net))
        .map(|r| r.name)
        .collect()
}

/// One network's pass: realize it from `view` (entries compared with the
/// kernel's), or, when the network is gone from the store, remove this
/// host's side if no container uses it.
pub fn reconcile_one(
    paths: &Paths,
    nl: &Netlink,
    store: &dyn Store,
    view: &mut ClusterView,
    me: &Identity,
    liveness: bool,
) -> Result<()> {
    let _lock = network_lock(paths, &view.name)?;
    if view.def.is_none() {
        if LocalState::load(paths, &view.name)?.is_some() {
            let users = local_users(paths, &view.name);
            if users.is_empty() {
                driver::unrealize(paths, nl, &view.name)?;
                log::info(format!(
                    "overlay network {} is gone from {}: removed this host's side",
                    view.name,
                    store.describe()
                ));
            } else {
                log::warn(format!(
                    "overlay network {} is gone from {}, but containers here still use it ({}): kept this host's side",
                    view.name,
                    store.describe(),
                    users.join(", ")
                ));
            }
        }
        return Ok(());
    }
    driver::realize(paths, nl, store, view, me, liveness, true)?;
    Ok(())
}

fn reconcile_cmd(paths: &Paths, networks: Vec<String>) -> Result<()> {
    let st = driver::store(paths)?;
    let nl = Netlink::new()?;
    let me = driver::identity(&HostConfig::load(paths)?, &nl)?;
    let listing = st.range(&overlay::networks_prefix())?;
    let mut views = ClusterView::all_from_listing(&listing);
    let names = if networks.is_empty() {
        joined(paths, &me.host, &views.values().collect::<Vec<_>>())
    } else {
        networks
    };
    let mut failed = 0;
    for name in &names {
        let view = views.entry(name.clone()).or_insert_with(|| ClusterView {
            name: name.clone(),
            revision: listing.revision,
            ..Default::default()
        });
        if view.def.is_none() && LocalState::load(paths, name)?.is_none() {
            eprintln!(
                "wirehook: no overlay network {name} in {} (see `wirehook network ls`)",
                st.describe()
            );
            failed += 1;
            continue;
        }
        match reconcile_one(paths, &nl, st.as_ref(), view, &me, false) {
            Ok(()) => {
                let peers = view.peers(&me.host).len();
                println!("{name}: {peers} peer(s)");
            }
            Err(e) => {
                eprintln!("wirehook: overlay network {name}: {e}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!(
            "{failed} of {} network(s) could not be reconciled",
            names.len()
        );
    }
    Ok(())
}

fn rotate_key(paths: &Paths) -> Result<()> {
    let key = KeyPair::generate()?;
    {
        // Under the lock of no network: the key is the host's. Container
        // starts read it under their network's lock, so take them all.
        let st = driver::store(paths)?;
        let me = overlay::host_id(HostConfig::load(paths)?.host_id.as_deref())?;
        let listing = st.range(&overlay::networks_prefix())?;
        let views = ClusterView::all_from_listing(&listing);
        let names = joined(paths, &me, &views.values().collect::<Vec<_>>());
        let _locks = names
            .iter()
            .map(|n| network_lock(paths, n))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        key.save(paths, true)?;
        // This host's devices take the new key before the others learn
        // it (see `driver::rekey`); the reconcile below publishes it.
        let nl = Netlink::new()?;
        for n in &names {
            driver::rekey(paths, &nl, &key, n)?;
        }
    }
    log::info(format!(
        "rotated this host's WireGuard key: public key now {}",
        key.public_b64()
    ));
    println!("{}", key.public_b64());
    reconcile_cmd(paths, Vec::new())
}

fn leave(paths: &Paths, net: &str) -> Result<()> {
    let st = driver::store(paths)?;
    let nl = Netlink::new()?;
    let cfg = HostConfig::load(paths)?;
    let host = overlay::host_id(cfg.host_id.as_deref())?;
    let _lock = network_lock(paths, net)?;
    let users = local_users(paths, net);
    if !users.is_empty() {
        bail!(
            "containers on this host still use overlay network {net} ({}): stop them first",
            users.join(", ")
        );
    }
    let view = overlay::load_view(st.as_ref(), net)?;
    if view.def.is_none() && LocalState::load(paths, net)?.is_none() {
        bail!("no overlay network {net} (see `wirehook network ls`)");
    }
    if let Some(c) = view.hosts.get(&host) {
        overlay::release(st.as_ref(), net, c)?;
    }
    driver::unrealize(paths, &nl, net)?;
    let leases = paths.leases_dir(net);
    if leases.exists() {
        std::fs::remove_dir_all(&leases)
            .map_err(|e| anyhow!("remove {}: {e}", leases.display()))?;
    }
    log::info(format!("left overlay network {net}"));
    println!("{net}");
    Ok(())
}

fn forget(paths: &Paths, net: &str, host: &str) -> Result<()> {
    overlay::validate_host_id(host)?;
    let st = driver::store(paths)?;
    let view = overlay::load_view(st.as_ref(), net)?;
    let Some(c) = view.hosts.get(host) else {
        bail!(
            "host {host} holds no share of overlay network {net} (`wirehook network inspect {net}` lists them)"
        );
    };
    if c.liveness && view.alive.contains(host) {
        bail!(
            "host {host} is alive (its agent keeps it so): run `wirehook overlay leave {net}` on it instead"
        );
    }
    overlay::release(st.as_ref(), net, c)?;
    log::info(format!(
        "forgot host {host} on overlay network {net} (its share {} is free again)",
        c.subnet
    ));
    println!("{host}");
    Ok(())
}
