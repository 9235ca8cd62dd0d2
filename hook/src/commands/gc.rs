//! `wirehook gc`: finish what a poststop could not (a runtime that crashed
//! or was killed before poststop). A container is gone when no process is
//! left in its namespace (wirehook's own bind mount may still hold the
//! namespace) — or, for host and container modes, when its recorded
//! process is gone. Also removes leftovers that no record owns: leases
//! (also those of a running container whose record does not name them: a
//! `network connect` killed halfway), names, bind mounts and host-side
//! veths. Finally the resolver: started
//! again if it is gone while containers with names run, and told about any
//! it misses or serves on other networks than their records name.

use std::collections::HashSet;

use anyhow::Result;
use wirehook_shared::netlink::Netlink;
use wirehook_shared::netns;
use wirehook_shared::paths::Paths;
use wirehook_shared::store::{self, Mode, Records};

use crate::commands::hook::{teardown_record, Finish};
use crate::log;

pub fn run(paths: &Paths, dry_run: bool) -> Result<()> {
    // No setup runs meanwhile: what a starting container holds before its
    // record is written is not a leftover.
    paths.check_state_dirs()?;
    let _no_setups = wirehook_shared::fsutil::Lock::exclusive(&paths.setup_lock())?;
    let records = Records::new(paths);
    let by_ns = netns::processes_by_netns();
    let verb = if dry_run { "would remove" } else { "removed" };
    let mut live_ids = HashSet::new();
    let mut removed = 0;
    for rec in records.list() {
        let alive = match rec.mode {
            Mode::Host | Mode::Container => store::process_alive(rec.pid, rec.pid_start),
            _ => by_ns.contains_key(&rec.netns_inode),
        };
        if alive {
            live_ids.insert(rec.id.clone());
            continue;
        }
        removed += 1;
        println!(
            "{verb} {} ({}, {} mode): no process left",
            rec.id, rec.name, rec.mode
        );
        if !dry_run {
            for p in teardown_record(paths, &rec, Finish::Inline) {
                println!("  problem: {p}");
            }
        }
    }

    // Teardowns whose finisher still runs are not leftovers; finish those
    // whose finisher died.
    let mut finishing_owners = HashSet::new();
    let mut finishing_links = HashSet::new();
    let mut finishing_ports = HashSet::new();
    for (m, running) in crate::finish::markers(paths) {
        if running {
            finishing_owners.insert(m.owner.clone());
            finishing_links.extend(m.links.iter().cloned());
            for item in &m.items {
                if let crate::finish::Deferred::Ports { addresses, .. } = item {
                    finishing_ports.extend(addresses.iter().map(|a| a.ip()));
                }
            }
            continue;
        }
        println!("{verb} the rest of {}'s interrupted teardown", m.owner);
        if !dry_run {
            for p in crate::finish::finish_abandoned(paths, &m.owner) {
                println!("  problem: {p}");
            }
        }
    }

    // Leftovers no record owns.
    let leases_root = paths.run_dir.join("leases");
    for net in std::fs::read_dir(&leases_root)
        .into_iter()
        .flatten()
        .flatten()
    {
        for lease in std::fs::read_dir(net.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = lease.file_name().to_string_lossy().to_string();
            if name.starts_with('.') {
                continue;
            }
            let owner = std::fs::read_to_string(lease.path())
                .unwrap_or_default()
                .trim()
                .to_string();
            if finishing_owners.contains(&owner) {
                continue;
            }
            let network = net.file_name().to_string_lossy().to_string();
            let why = match records.get(&owner).ok().flatten() {
                None if !live_ids.contains(&owner) => "has no record",
                // A connect killed after it took the address, before its
                // record named it (or a disconnect before it let go).
                Some(r)
                    if live_ids.contains(&owner)
                        && !r.interfaces.iter().any(|i| {
                            i.network == network
                                && i.addresses.iter().any(|a| a.ip().to_string() == name)
                        }) =>
                {
                    "does not hold it in its record"
                }
                _ => continue,
            };
            println!("{verb} lease {name} on {network} (owner {owner} {why})");
            if !dry_run {
                let _ = std::fs::remove_file(lease.path());
            }
        }
    }
    for m in std::fs::read_dir(paths.netns_dir())
        .into_iter()
        .flatten()
        .flatten()
    {
        let id = m.file_name().to_string_lossy().to_string();
        if records.get(&id).ok().flatten().is_none() && !finishing_owners.contains(&id) {
            println!("{verb} namespace bind mount {}", m.path().display());
            if !dry_run {
                let _ = netns::unmount(&m.path());
            }
        }
    }
    for n in std::fs::read_dir(paths.names_dir())
        .into_iter()
        .flatten()
        .flatten()
    {
        let id = std::fs::read_to_string(n.path()).unwrap_or_default();
        if records.get(id.trim()).ok().flatten().is_none() && !dry_run {
            let _ = std::fs::remove_file(n.path());
        }
    }
    // Sharing notes of sharers that have no record (a sharer's setup
    // killed after it noted itself with its owner).
    for owner in std::fs::read_dir(paths.run_dir.join("sharers"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let owner = owner.file_name().to_string_lossy().to_string();
        for sharer in records.sharers(&owner) {
            if records.get(&sharer).ok().flatten().is_none() && !dry_run {
                let _ = records.remove_sharer(&owner, &sharer);
            }
        }
    }
    // Per-container lock files of older versions (mount locks are striped
    // over a fixed set now, so nothing takes these any more).
    for l in std::fs::read_dir(paths.locks_dir())
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = l.file_name().to_string_lossy().to_string();
        if let Some(id) = name
            .strip_prefix("ctr-")
            .and_then(|n| n.strip_suffix(".lock"))
        {
            if records.get(id).ok().flatten().is_none() && !dry_run {
                let _ = std::fs::remove_file(l.path());
            }
        }
    }
    // Sources of createContainer's resolv.conf mounts: unlinked right after
    // the mount, so one a minute old was left by a hook that was killed.
    for f in std::fs::read_dir(paths.run_dir.join("resolv"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let old = f
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > std::time::Duration::from_secs(60));
        if old && !dry_run {
            let _ = std::fs::remove_file(f.path());
        }
    }
    // Published ports that forward to an address no container holds (a
    // setup killed after publishing them, before its record was written):
    // left alone, they would reach the next container given the address.
    let held: HashSet<std::net::IpAddr> = records
        .list()
        .iter()
        .flat_map(|r| r.addresses().collect::<Vec<_>>())
        .chain(finishing_ports)
        .collect();
    for rule in wirehook_shared::firewall::published_ports().unwrap_or_default() {
        if !held.contains(&rule.container_ip) {
            println!(
                "{verb} published port {}/{} -> {}:{} (no container holds the address)",
                rule.host_port,
                rule.protocol.as_str(),
                rule.container_ip,
                rule.container_port
            );
            if !dry_run {
                let _ = wirehook_shared::firewall::remove_ports(std::slice::from_ref(&rule));
            }
        }
    }
    // Host ends of veths that no record names (made by a setup that was killed).
    if let Ok(nl) = Netlink::new() {
        let known: HashSet<String> = records
            .list()
            .iter()
            .flat_map(|r| r.interfaces.iter().filter_map(|i| i.host_ifname.clone()))
            .collect();
        for link in nl.links().unwrap_or_default() {
            if link.name.starts_with("whv")
                && link.kind.as_deref() == Some("veth")
                && !known.contains(&link.name)
                && !finishing_links.contains(&link.name)
            {
                println!("{verb} stray veth {}", link.name);
                if !dry_run {
                    let _ = nl.delete_link(&link.name);
                }
            }
        }
    }
    names(paths, &live_ids, dry_run);
    log::info(format!("gc: {removed} container(s) {verb}"));
    Ok(())
}

/// Every live container with names is attached to a running resolver:
/// start it if it is gone (it attaches them all from the records), attach
/// those it misses; and the resolver answers for no container without a
/// record (a setup killed after it sent the names ahead of its record).
fn names(paths: &Paths, live: &HashSet<String>, dry_run: bool) {
    let records = Records::new(paths).list();
    let running = crate::dns::status(paths, false).ok().flatten();
    if let Some(st) = &running {
        for c in &st.containers {
            if records.iter().any(|r| r.id == c.id && r.wants_dns()) {
                continue;
            }
            if dry_run {
                println!("would remove the names of {} (no record)", c.id);
                continue;
            }
            match crate::dns::detach(paths, &c.id) {
                Ok(()) => println!("removed the names of {} (no record)", c.id),
                Err(e) => println!("  problem: {}: {e}", c.id),
            }
        }
    }
    let want: Vec<_> = records
        .into_iter()
        .filter(|r| live.contains(&r.id) && r.wants_dns())
        .collect();
    if want.is_empty() {
        return;
    }
    if dry_run {
        match running {
            None => println!("would start the resolver for {} container(s)", want.len()),
            Some(st) => {
                for r in &want {
                    if !st.containers.iter().any(|c| c.id == r.id) {
                        println!("would attach {} ({}) to the resolver", r.id, r.name);
                    }
                }
            }
        }
        return;
    }
    if running.is_none() {
        match crate::dns::ensure_running(paths) {
            Ok(()) => println!("started the resolver for {} container(s)", want.len()),
            Err(e) => {
                println!("  problem: {e}");
                return;
            }
        }
    }
    // Attached containers and the networks the resolver serves them on.
    let attached: std::collections::HashMap<String, Vec<String>> =
        match crate::dns::status(paths, true) {
            Ok(Some(st)) => st
                .containers
                .into_iter()
                .map(|c| (c.id, c.networks))
                .collect(),
            Ok(None) => Default::default(),
            Err(e) => {
                println!("  problem: {e}");
                return;
            }
        };
    for r in &want {
        let update = match attached.get(&r.id) {
            None => false,
            // A `network connect` killed after its record, before it told
            // the resolver: it serves the container on other networks.
            Some(nets) if *nets != dns_networks(r) => true,
            Some(_) => continue,
        };
        match crate::dns::attach(paths, &r.id) {
            Ok(()) if update => println!(
                "updated the networks of {} ({}) in the resolver",
                r.id, r.name
            ),
            Ok(()) => println!("attached {} ({}) to the resolver", r.id, r.name),
            Err(e) => println!("  problem: {} ({}): {e}", r.id, r.name),
        }
    }
}

/// The networks with names a record puts the container on, in the
/// resolver's order (first appearance).
fn dns_networks(r: &store::ContainerRecord) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for i in r.interfaces.iter().filter(|i| i.dns) {
        if !out.contains(&i.network) {
            out.push(i.network.clone());
        }
    }
    out
}
