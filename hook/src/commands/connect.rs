//! `wirehook network connect NET CONTAINER` and `wirehook network
//! disconnect NET CONTAINER`: add a network to a running container wired
//! by wirehook (the network's driver on its namespace, as the next free
//! `ethN`), or take one away again.
//!
//! Both change the container's record, so poststop removes whatever it
//! has then, and tell the resolver, so names follow at once: the
//! container's name, its aliases and the `--alias`es given here on the
//! connected network, and the names of that network for the container.
//!
//! Locks: the setup lock shared (gc waits, as for a setup), then the
//! container's wiring lock, which its setup and its poststop take too: a
//! connect racing poststop either finishes first (and poststop tears the
//! new interface down with the rest) or finds no record. A connect that
//! fails undoes what it made through the setup journal; one killed
//! halfway leaves only what `wirehook gc` removes (a lease or a host veth
//! the container's record does not name).

use std::net::IpAddr;

use anyhow::{anyhow, bail, Result};
use wirehook_shared::annotations::{self, NetworkRequest, Request};
use wirehook_shared::error::fail_point;
use wirehook_shared::fsutil::Lock;
use wirehook_shared::netlink::Netlink;
use wirehook_shared::netns::{self, NetNs};
use wirehook_shared::network::NetworkDef;
use wirehook_shared::paths::Paths;
use wirehook_shared::store::{self, ContainerRecord, Mode, Records};

use crate::bundle::BundleNetns;
use crate::drivers::{self, Attachment, HostCx, SetupCx};
use crate::log;
use crate::undo::{Change, Undo};

/// The container named `key` (id, name or id prefix), read again under
/// its wiring lock, which is returned held.
fn lock_container(paths: &Paths, key: &str) -> Result<(ContainerRecord, Lock)> {
    let records = Records::new(paths);
    let not_wired = || {
        anyhow!("no container {key} is wired by wirehook (see `wirehook ps`): give the id or name of a running container")
    };
    let found = records.find(key)?.ok_or_else(not_wired)?;
    let lock = crate::finish::wiring_lock(paths, &found.id)?;
    // Its poststop may have run while we waited.
    let rec = records.get(&found.id)?.ok_or_else(not_wired)?;
    Ok((rec, lock))
}

/// Who the container is in messages.
fn shown(rec: &ContainerRecord) -> String {
    if rec.name == rec.id {
        rec.id.clone()
    } else {
        rec.name.clone()
    }
}

/// The running container's namespace, refusing containers wirehook
/// wired no network into and those whose process is gone.
fn running_netns(rec: &ContainerRecord, verb: &str) -> Result<NetNs> {
    if matches!(rec.mode, Mode::Host | Mode::None | Mode::Container) || rec.interfaces.is_empty() {
        let how = match rec.mode {
            Mode::Host => "shares the host's network namespace".to_string(),
            Mode::Container => format!(
                "shares the namespace of container {}",
                rec.shares_with.as_deref().unwrap_or("?")
            ),
            _ => format!("runs in {} mode", rec.mode),
        };
        bail!(
            "container {} {how}, which wirehook wires no network into, so it cannot {verb}: only containers started on a bridge, macvlan, ipvlan or overlay network can",
            shown(rec)
        );
    }
    let gone = || {
        anyhow!(
            "container {} is not running (its process {} is gone): `wirehook gc` removes what is left of it",
            shown(rec),
            rec.pid
        )
    };
    if !store::process_alive(rec.pid, rec.pid_start)
        || netns::inode_of_pid(rec.pid) != Some(rec.netns_inode)
    {
        return Err(gone());
    }
    let path = rec.netns_path.as_ref().ok_or_else(gone)?;
    let ns = NetNs::open(path).map_err(|_| gone())?;
    if ns.inode() != rec.netns_inode {
        return Err(gone());
    }
    Ok(ns)
}

/// The first `ethN` neither the record nor the container's namespace has.
fn next_ifname(rec: &ContainerRecord, ns: &NetNs) -> Result<String> {
    let links = Netlink::in_netns(ns)?.links()?;
    (0..1000)
        .map(|n| format!("eth{n}"))
        .find(|name| {
            !rec.interfaces.iter().any(|i| &i.ifname == name)
                && !links.iter().any(|l| &l.name == name)
        })
        .ok_or_else(|| anyhow!("container {} has no free ethN name left", shown(rec)))
}

/// Refuse `--ip`s outside `def`'s subnets, or two in one subnet.
fn check_ips(def: &NetworkDef, ips: &[IpAddr]) -> Result<()> {
    for (n, ip) in ips.iter().enumerate() {
        let Some(subnet) = def.subnets.iter().find(|s| s.subnet.contains(*ip)) else {
            bail!(
                "--ip {ip} is not in network {}'s subnets ({}): pick an address inside them",
                def.name,
                def.subnets
                    .iter()
                    .map(|s| s.subnet.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        };
        if let Some(other) = ips[..n].iter().find(|o| subnet.subnet.contains(**o)) {
            bail!(
                "--ip {other} and --ip {ip} are both in subnet {} of network {}: give one address per subnet",
                subnet.subnet,
                def.name
            );
        }
    }
    Ok(())
}

/// Errors of the shared code speak of annotations; here the flags were
/// given.
fn flag_words(e: wirehook_shared::Error) -> anyhow::Error {
    anyhow!("{}", e.to_string().replace("io.wirehook.ip ", "--ip "))
}

pub fn connect(
    paths: &Paths,
    network: &str,
    key: &str,
    ips: &[IpAddr],
    aliases: &[String],
) -> Result<()> {
    annotations::validate_network_name(network)?;
    let mut net_aliases: Vec<String> = Vec::new();
    for a in aliases {
        annotations::validate_alias("--alias", a)?;
        if !net_aliases.iter().any(|o| o.eq_ignore_ascii_case(a)) {
            net_aliases.push(a.clone());
        }
    }
    if net_aliases.len() > annotations::MAX_ALIASES {
        bail!(
            "{} --alias flags given: give at most {}",
            net_aliases.len(),
            annotations::MAX_ALIASES
        );
    }
    paths.check_state_dirs()?;
    // gc waits for this, as for a setup.
    let _in_flight = Lock::shared(&paths.setup_lock())?;
    let (rec, _wiring) = lock_container(paths, key)?;
    let ns = running_netns(&rec, &format!("connect to network {network}"))?;
    if let Some(i) = rec.interfaces.iter().find(|i| i.network == network) {
        bail!(
            "container {} is already on network {network} (as {}): disconnect it first to connect it again",
            shown(&rec),
            i.ifname
        );
    }
    let host_nl = Netlink::new()?;
    let def = crate::resolve::lookup(paths, &host_nl, network)?.ok_or_else(|| {
        let known = crate::resolve::known_names(paths).unwrap_or_default();
        anyhow!(
            "no network {network}: create it with `wirehook network create {network}`{}",
            if known.is_empty() {
                String::new()
            } else {
                format!(" or use one of: {}", known.join(", "))
            }
        )
    })?;
    let policy = wirehook_shared::hostconfig::Policy::load(paths)?;
    crate::policy::enforce_connect(paths, &policy, network, ips)?;
    check_ips(&def, ips)?;
    let ifname = next_ifname(&rec, &ns)?;
    let req = Request {
        network: NetworkRequest::Networks(vec![network.to_string()]),
        ips: ips.to_vec(),
        ..Default::default()
    };
    let mut undo = Undo::default();
    match wire(
        paths,
        &rec,
        &req,
        &def,
        &ns,
        &host_nl,
        ifname,
        net_aliases,
        &mut undo,
    ) {
        Ok(iface) => {
            let msg = format!(
                "connected {} to network {network} as {} ({})",
                shown(&rec),
                iface.ifname,
                iface
                    .addresses
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            log::info(&msg);
            println!("{msg}");
            Ok(())
        }
        Err(e) => {
            log::error(format!("connect to {network} failed: {e}; undoing"));
            undo.rollback(paths, &rec.id, Some(&host_nl));
            Err(flag_words(e))
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn wire(
    paths: &Paths,
    rec: &ContainerRecord,
    req: &Request,
    def: &NetworkDef,
    ns: &NetNs,
    host_nl: &Netlink,
    ifname: String,
    aliases: Vec<String>,
    undo: &mut Undo,
) -> wirehook_shared::Result<store::InterfaceRecord> {
    let bundle_netns = BundleNetns::Unknown;
    let mut cx = SetupCx::new(paths, &rec.id, req, ns, &bundle_netns, host_nl, undo)?;
    if matches!(
        def.driver,
        wirehook_shared::network::Driver::Macvlan | wirehook_shared::network::Driver::Ipvlan
    ) {
        crate::drivers::parent::check_request(def, req, 1)?;
    }
    // Never the first attachment: no default route, published ports, MAC
    // or MTU of the annotations; those stay with the container's eth0.
    let at = Attachment {
        network: def,
        index: rec.interfaces.len().max(1),
        ifname,
    };
    let mut iface = drivers::for_network(def.driver)?
        .setup(&mut cx, Some(&at))?
        .ok_or_else(|| wirehook_shared::Error::invalid("the driver attached no interface"))?;
    iface.aliases = aliases;
    iface.connected = true;
    let undo = cx.undo;
    let mut new = rec.clone();
    new.interfaces.push(iface.clone());
    let names = rec.wants_dns() || new.wants_dns();
    fail_point("connect-record")?;
    if names {
        // Undone after the old record is back: the resolver follows it.
        undo.push(Change::DnsRefresh(rec.id.clone()));
    }
    Records::new(paths).put(&new)?;
    undo.push(Change::RecordBefore(Box::new(rec.clone())));
    fail_point("connect-dns")?;
    if names {
        crate::dns::follow(paths, &rec.id)?;
    }
    Ok(iface)
}

pub fn disconnect(paths: &Paths, network: &str, key: &str) -> Result<()> {
    annotations::validate_network_name(network)?;
    paths.check_state_dirs()?;
    let _in_flight = Lock::shared(&paths.setup_lock())?;
    let (rec, _wiring) = lock_container(paths, key)?;
    running_netns(&rec, &format!("disconnect from network {network}"))?;
    let Some(iface) = rec.interfaces.iter().find(|i| i.network == network) else {
        bail!(
            "container {} is not on network {network} (it is on {})",
            shown(&rec),
            rec.interfaces
                .iter()
                .map(|i| i.network.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    if rec.interfaces.len() == 1 {
        bail!(
            "network {network} is the last network of container {}, and a container keeps at least one: connect it to another network first, or stop the container",
            shown(&rec)
        );
    }
    // The record and the resolver first, so the names on the network stop
    // at once (as in a teardown); then the interface, its flows and its
    // leases. Killed in between, what is left is an interface and leases
    // the record no longer names: `wirehook gc` releases those.
    let mut new = rec.clone();
    new.interfaces.retain(|i| i.network != network);
    Records::new(paths).put(&new)?;
    let mut problems = Vec::new();
    if rec.wants_dns() {
        if let Err(e) = crate::dns::follow(paths, &rec.id) {
            problems.push(format!("the resolver: {e}"));
        }
    }
    wirehook_shared::error::kill_point("disconnect-record");
    let host_nl = Netlink::new()?;
    let mut cx = HostCx {
        paths,
        host_nl: &host_nl,
        netns_alive: true,
        problems: Vec::new(),
        deferred: Vec::new(),
    };
    drivers::for_network(iface.driver)?.teardown(&mut cx, &rec, Some(iface));
    problems.extend(std::mem::take(&mut cx.problems));
    problems.extend(crate::finish::run(paths, &rec.id, cx.deferred));
    if !problems.is_empty() {
        bail!(
            "disconnected {} from network {network}, but {} step(s) failed ({}): `wirehook gc` removes what is left",
            shown(&rec),
            problems.len(),
            problems.join("; ")
        );
    }
    let msg = format!(
        "disconnected {} from network {network} ({} removed)",
        shown(&rec),
        iface.ifname
    );
    log::info(&msg);
    println!("{msg}");
    Ok(())
}
