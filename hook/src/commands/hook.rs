//! `wirehook hook STAGE`: what runtimes call. Setup at createRuntime or
//! prestart, teardown at poststop; at createContainer the container's
//! `/etc/resolv.conf` is pointed at the resolver ([`crate::resolv_mount`]);
//! nothing at the other stages.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use wirehook_shared::annotations::{self, NetworkRequest, NETWORK_KEY};
use wirehook_shared::error::fail_point;
use wirehook_shared::netlink::Netlink;
use wirehook_shared::netns::{self, NetNs};
use wirehook_shared::network::now;
use wirehook_shared::paths::Paths;
use wirehook_shared::store::{self, ContainerRecord, Mode, Records, RECORD_VERSION};

use crate::bundle::{self, BundleNetns};
use crate::drivers::{self, Attachment, HostCx, SetupCx};
use crate::log;
use crate::resolve;
use crate::state::State;
use crate::undo::{Change, Undo};

/// OCI hook stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "camelCase")]
pub enum Stage {
    Prestart,
    CreateRuntime,
    CreateContainer,
    StartContainer,
    Poststart,
    Poststop,
}

/// The stage a runtime is at, from the state's status, for callers that
/// give one hook entry for several stages (a hooks.d file lists one set of
/// args for createRuntime and poststop).
fn infer_stage(state: &State) -> Stage {
    match state.status.as_str() {
        "stopped" => Stage::Poststop,
        "running" => Stage::Poststart,
        _ if state.live_pid().is_some() => Stage::CreateRuntime,
        _ => Stage::Poststop,
    }
}

pub fn run(paths: &Paths, stage: Option<Stage>) -> Result<()> {
    let start = std::time::Instant::now();
    let state = match State::from_stdin() {
        Ok(s) => s,
        // Teardown never fails: a state it cannot use names nothing it made.
        Err(e) if stage == Some(Stage::Poststop) => {
            eprintln!("wirehook: warning: {e:#}: nothing to tear down");
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    log::init(paths, &state.id);
    log::phase("state");
    let stage = stage.unwrap_or_else(|| infer_stage(&state));
    let res = match stage {
        Stage::CreateRuntime | Stage::Prestart => setup(paths, &state),
        Stage::CreateContainer => crate::resolv_mount::run(paths, &state),
        Stage::Poststop => {
            teardown(paths, &state.id, Finish::Detached);
            Ok(())
        }
        other => {
            log::info(format!("stage {other:?}: nothing to do"));
            Ok(())
        }
    };
    if res.is_ok() && wirehook_shared::announce::sockets_kept() {
        hold_until_exit();
    }
    log::report_phases(start);
    res
}

/// Sockets whose close waits for an RCU grace period (10-20 ms on a busy
/// machine; the packet socket of the gratuitous ARP, the nf_tables
/// socket) are closed when this process exits, and the runtime would wait
/// for that. A child inherits them, holds the last references until we
/// are gone and pays the grace period instead, as the teardown's finisher
/// does (`finish::detach`). Called after setup, when the setup's locks and
/// the container's namespace are no longer held by any descriptor.
fn hold_until_exit() {
    use crate::finish::{detach_child, ExitPipe};
    use nix::unistd::{fork, ForkResult};
    let Some(pipe) = ExitPipe::new() else {
        return;
    };
    // SAFETY: the hook is single-threaded (current-thread runtimes), so the
    // child may run arbitrary code after fork.
    match unsafe { fork() } {
        Ok(ForkResult::Parent { .. }) => pipe.parent(),
        Ok(ForkResult::Child) => {
            detach_child();
            // Until the hook is gone: then this process's exit closes the
            // socket and pays the grace period.
            pipe.wait();
            // SAFETY: leave without running the parent's destructors.
            unsafe { libc::_exit(0) };
        }
        Err(_) => {}
    }
}

/// Annotations from the state, else from the bundle's config.json (some
/// callers pass only a few in the state).
fn annotations_of(state: &State) -> BTreeMap<String, String> {
    if state.annotations.contains_key(NETWORK_KEY) || state.bundle.as_os_str().is_empty() {
        return state.annotations.clone();
    }
    let from_config = std::fs::read(state.bundle.join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| {
            serde_json::from_value::<BTreeMap<String, String>>(v.get("annotations")?.clone()).ok()
        })
        .unwrap_or_default();
    let mut all = from_config;
    all.extend(state.annotations.clone());
    all
}

pub fn setup(paths: &Paths, state: &State) -> Result<()> {
    let ann = annotations_of(state);
    let Some(req) = annotations::parse(&ann)? else {
        return Ok(());
    };
    let pid = state.live_pid().context(
        "the runtime sent no pid: wirehook sets up at the createRuntime or prestart stage, list it there",
    )?;
    let netns = NetNs::of_pid(pid)?;
    let records = Records::new(paths);
    paths.check_state_dirs()?;
    // gc waits for this setup (and this setup for a running gc).
    let _in_flight = wirehook_shared::fsutil::Lock::shared(&paths.setup_lock())?;
    // A connect or disconnect of this id waits for the setup (and for
    // its rollback, should it fail).
    let _wiring = crate::finish::wiring_lock(paths, &state.id)?;
    log::phase("parse");
    if let Some(existing) = records.get(&state.id)? {
        if existing.netns_inode == netns.inode() {
            log::info("already wired (setup ran at an earlier stage): nothing to do");
            return Ok(());
        }
        let alive = match existing.mode {
            Mode::Host | Mode::Container => store::process_alive(existing.pid, existing.pid_start),
            _ => netns_in_use(paths, &existing),
        };
        if alive {
            return Err(anyhow::anyhow!(
                "container id {} is already wired for another namespace whose process (pid {}) still runs: stop that container first, or give this one another id",
                state.id,
                existing.pid
            ));
        }
        log::warn("a record for this id belongs to an older namespace: tearing that down first");
        teardown_record(paths, &existing, Finish::Inline);
    }
    // The previous run of this id may still be finishing its teardown.
    crate::finish::settle_previous_run(paths, &state.id, crate::finish::wait_budget())?;
    let caller = crate::caller::Caller::read();
    let mut name = annotations::container_name(&ann, &state.id);
    if name == state.id {
        if let Some(n) = caller
            .conmon_name
            .filter(|n| wirehook_shared::fsutil::is_safe_component(n, 128))
        {
            name = n;
        }
    }
    let bundle_netns = if state.bundle.as_os_str().is_empty() {
        BundleNetns::Unknown
    } else {
        bundle::read_netns(&state.bundle)
    };
    let host_nl = Netlink::new()?;
    // The operator's policy, before anything is made (a policy file that
    // cannot be read refuses every start: fail closed).
    let policy = wirehook_shared::hostconfig::Policy::load(paths)?;
    crate::policy::enforce(paths, &policy, &req, &host_nl)?;
    let pod = crate::policy::pod_of(&ann)?;
    log::phase("open");
    let mut undo = Undo::default();
    let who = Identity {
        name,
        pod,
        runtime_root: caller.runtime_root,
    };
    let result = wire(
        paths,
        state,
        pid,
        &req,
        who,
        &netns,
        &bundle_netns,
        &host_nl,
        &mut undo,
    );
    match result {
        Ok(rec) => {
            log::info(format!(
                "wired {} ({}) in {} mode: {}",
                rec.id,
                rec.name,
                rec.mode,
                rec.interfaces
                    .iter()
                    .map(|i| format!(
                        "{} {}",
                        i.ifname,
                        i.addresses
                            .iter()
                            .map(|a| a.to_string())
                            .collect::<Vec<_>>()
                            .join(",")
                    ))
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
            Ok(())
        }
        Err(e) => {
            log::error(format!("setup failed: {e}; undoing"));
            undo.rollback(paths, &state.id, Some(&host_nl));
            Err(e.into())
        }
    }
}

/// Who the container is, as the record keeps it.
struct Identity {
    /// Its name (annotation, else conmon's, else its id).
    name: String,
    /// Its pod, if any.
    pod: Option<String>,
    /// The runtime root that created it (see [`crate::caller`]).
    runtime_root: String,
}

#[allow(clippy::too_many_arguments)]
fn wire(
    paths: &Paths,
    state: &State,
    pid: i32,
    req: &annotations::Request,
    who: Identity,
    netns: &NetNs,
    bundle_netns: &BundleNetns,
    host_nl: &Netlink,
    undo: &mut Undo,
) -> wirehook_shared::Result<ContainerRecord> {
    let records = Records::new(paths);
    let name = who.name.as_str();
    let mut rec = ContainerRecord {
        version: RECORD_VERSION,
        id: state.id.clone(),
        name: name.to_string(),
        aliases: req.aliases.clone(),
        mode: Mode::None,
        netns_inode: netns.inode(),
        netns_path: None,
        shares_with: None,
        interfaces: Vec::new(),
        pid,
        pid_start: store::process_start(pid).unwrap_or(0),
        bundle: (!state.bundle.as_os_str().is_empty()).then(|| state.bundle.clone()),
        pod: who.pod,
        runtime_root: Some(who.runtime_root),
        created: now(),
    };
    fail_point("name")?;
    records.claim_name(name, &state.id)?;
    undo.push(Change::Name(name.to_string()));
    log::phase("name");

    // A `prepare` sent to the resolver, and whether one was tried.
    let mut prepared = None;
    let mut prepared_any = false;
    let mut cx = SetupCx::new(paths, &state.id, req, netns, bundle_netns, host_nl, undo)?;
    match &req.network {
        NetworkRequest::Host => {
            rec.mode = Mode::Host;
            drivers::for_mode(Mode::Host).setup(&mut cx, None)?;
        }
        NetworkRequest::None => {
            rec.mode = Mode::None;
            drivers::for_mode(Mode::None).setup(&mut cx, None)?;
        }
        NetworkRequest::Container(_) => {
            rec.mode = Mode::Container;
            drivers::for_mode(Mode::Container).setup(&mut cx, None)?;
            let NetworkRequest::Container(key) = &req.network else {
                unreachable!()
            };
            let owner = drivers::container::owner(&cx, key)?;
            if owner.runtime_root != rec.runtime_root {
                return Err(wirehook_shared::Error::invalid(format!(
                    "io.wirehook.network=container:{key}: {} was created by runtime root {}, this container by {}; a container may only join one of its own runtime root",
                    owner.name,
                    owner.runtime_root.as_deref().unwrap_or("(unknown)"),
                    rec.runtime_root.as_deref().unwrap_or("(unknown)"),
                )));
            }
            if owner.pod != rec.pod {
                return Err(wirehook_shared::Error::invalid(format!(
                    "io.wirehook.network=container:{key}: {} is in {}, this container in {}; a container may only join one of its own pod",
                    owner.name,
                    owner.pod.as_deref().map_or("no pod".to_string(), |p| format!("pod {p}")),
                    rec.pod.as_deref().map_or("no pod".to_string(), |p| format!("pod {p}")),
                )));
            }
            records.add_sharer(&owner.id, &state.id)?;
            cx.undo.push(Change::Sharer {
                owner: owner.id.clone(),
                sharer: state.id.clone(),
            });
            rec.shares_with = Some(owner.id);
        }
        NetworkRequest::Networks(names) => {
            if netns.inode() == cx.host_inode {
                return Err(wirehook_shared::Error::invalid(format!(
                    "io.wirehook.network={} needs the container in its own network namespace, but it runs in the host's: add {{\"type\": \"network\"}} to linux.namespaces in config.json (or run `wirehook prepare BUNDLE`)",
                    names.join(",")
                )));
            }
            let defs = resolve::networks(paths, host_nl, names, req)?;
            log::phase("networks");
            cx.container_nl()?.loopback_up()?;
            log::phase("lo");
            // The resolver binds the container's sockets (which needs
            // loopback up) while the links are made.
            if defs.iter().any(|d| d.dns) {
                cx.undo.push(Change::Dns(state.id.clone()));
                prepared_any = true;
                prepared = crate::dns::prepare(paths, &state.id, pid, rec.pid_start, netns.inode());
            }
            for (i, def) in defs.iter().enumerate() {
                let driver = drivers::for_network(def.driver)?;
                let ifname = match (i, &req.ifname) {
                    (0, Some(n)) => n.clone(),
                    _ => format!("eth{i}"),
                };
                let at = Attachment {
                    network: def,
                    index: i,
                    ifname,
                };
                if let Some(iface) = driver.setup(&mut cx, Some(&at))? {
                    rec.interfaces.push(iface);
                }
            }
            rec.mode = drivers::mode_of(defs[0].driver);
        }
    }
    let undo = cx.undo;

    // Keep the namespace reachable by path (what `prepare` points sharers at).
    log::phase("drivers");
    let netns_path =
        (!matches!(rec.mode, Mode::Host | Mode::Container)).then(|| paths.netns_file(&state.id));
    rec.netns_path = netns_path.clone();
    // The names, to a resolver already listening, while the record is
    // written: the answer is collected below.
    let ahead = if prepared.is_some() && rec.wants_dns() {
        crate::dns::attach_ahead(paths, &rec)
    } else {
        None
    };
    fail_point("bindmount")?;
    if let Some(path) = netns_path {
        // An earlier run's finisher may still be letting go of this path.
        let _lock = crate::finish::mount_lock(paths, &state.id)?;
        let _ = netns::unmount(&path);
        netns.bind_mount(&path)?;
        undo.push(Change::Mount(path));
    }
    log::phase("bindmount");
    fail_point("record")?;
    records.put(&rec)?;
    undo.push(Change::Record(state.id.clone()));
    log::phase("record");
    // Names: once the resolver answers, they resolve, before the
    // container's process runs. Answers to what was sent ahead come now;
    // without them (no resolver ran, or it refused), the attach reads the
    // record just written, starting a resolver if none runs.
    fail_point("dns")?;
    if let Some(Err(e)) = prepared.take().map(crate::dns::Pending::collect) {
        log::warn(format!("the resolver's prepare: {e}"));
    }
    if rec.wants_dns() {
        if !prepared_any {
            undo.push(Change::Dns(state.id.clone()));
        }
        match ahead.map(crate::dns::Pending::collect) {
            Some(Ok(())) => {}
            Some(Err(e)) => {
                log::warn(format!("the resolver's attach ahead of the record: {e}"));
                crate::dns::attach(paths, &state.id)?;
            }
            None => crate::dns::attach(paths, &state.id)?,
        }
    } else if prepared_any {
        // Prepared for a network with names none of whose drivers made an
        // interface: nothing to answer for.
        let _ = crate::dns::detach(paths, &state.id);
    }
    log::phase("dns");
    fail_point("done")?;
    Ok(rec)
}

/// How the slow tail of a teardown runs (see `finish`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// Here, before returning (gc, stale records).
    Inline,
    /// In a detached child, so the runtime is not kept waiting (poststop).
    Detached,
}

/// Teardown by container id; always succeeds, logs what it could not do.
pub fn teardown(paths: &Paths, id: &str, finish: Finish) -> Vec<String> {
    // The record is read under the wiring lock, so a connect or
    // disconnect running now finishes first and its interface is torn
    // down too.
    let lock = match crate::finish::wiring_lock(paths, id) {
        Ok(l) => Some(l),
        Err(e) => {
            log::warn(format!("poststop: cannot take the wiring lock: {e}"));
            None
        }
    };
    match Records::new(paths).get(id) {
        Ok(Some(rec)) => teardown_locked(paths, &rec, finish, lock),
        Ok(None) => {
            // A setup killed after it sent the resolver the names ahead of
            // the record leaves them there: nothing else to undo.
            if let Err(e) = crate::dns::detach(paths, id) {
                log::warn(format!("poststop: cannot remove names: {e}"));
            }
            log::info("poststop: no record, nothing to tear down");
            Vec::new()
        }
        Err(e) => {
            let msg = format!("poststop: cannot read the record: {e}");
            log::error(&msg);
            vec![msg]
        }
    }
}

/// Will the container's namespace outlive our bind mount? Only if a
/// process still lives in it: the container's own (a teardown while it
/// runs, e.g. `wirehook gc --force`) or a sharer's.
fn netns_in_use(paths: &Paths, rec: &ContainerRecord) -> bool {
    let in_ns = |pid: i32| netns::inode_of_pid(pid) == Some(rec.netns_inode);
    if rec.pid > 0 && store::process_alive(rec.pid, rec.pid_start) && in_ns(rec.pid) {
        return true;
    }
    let records = Records::new(paths);
    records.sharers(&rec.id).iter().any(|s| {
        records
            .get(s)
            .ok()
            .flatten()
            .is_some_and(|r| store::process_alive(r.pid, r.pid_start) && in_ns(r.pid))
    })
}

/// Remove everything the record says wirehook made.
pub fn teardown_record(paths: &Paths, rec: &ContainerRecord, finish: Finish) -> Vec<String> {
    teardown_locked(paths, rec, finish, None)
}

/// [`teardown_record`], letting go of the container's wiring lock (if
/// held) once the record is gone, before the slow tail: a detached
/// finisher must not keep it.
fn teardown_locked(
    paths: &Paths,
    rec: &ContainerRecord,
    finish: Finish,
    wiring: Option<wirehook_shared::fsutil::Lock>,
) -> Vec<String> {
    let host_nl = match Netlink::new() {
        Ok(nl) => nl,
        Err(e) => {
            let msg = format!(
                "cannot open netlink: {e}; leaving {} for `wirehook gc`",
                rec.id
            );
            log::error(&msg);
            return vec![msg];
        }
    };
    let mut cx = HostCx {
        paths,
        host_nl: &host_nl,
        netns_alive: !matches!(rec.mode, Mode::Host | Mode::Container) && netns_in_use(paths, rec),
        problems: Vec::new(),
        deferred: Vec::new(),
    };
    log::phase("open");
    // Names first: they stop resolving now, and the resolver lets go of
    // its sockets in the namespace (which would keep it alive).
    if rec.wants_dns() {
        if let Err(e) = crate::dns::detach(paths, &rec.id) {
            cx.problem(format!("cannot remove the names of {}: {e}", rec.id));
        }
        log::phase("dns");
    }
    if rec.interfaces.is_empty() {
        drivers::for_mode(rec.mode).teardown(&mut cx, rec, None);
    }
    for iface in rec.interfaces.iter().rev() {
        match drivers::for_network(iface.driver) {
            Ok(d) => d.teardown(&mut cx, rec, Some(iface)),
            Err(e) => cx.problem(format!("{}: {e}", rec.id)),
        }
    }
    log::phase("drivers");
    wirehook_shared::error::kill_point("teardown-drivers");
    let records = Records::new(paths);
    if let Some(p) = &rec.netns_path {
        cx.defer(crate::finish::Deferred::Unmount {
            id: rec.id.clone(),
            path: p.clone(),
            inode: rec.netns_inode,
        });
    }
    if let Some(owner) = &rec.shares_with {
        if let Err(e) = records.remove_sharer(owner, &rec.id) {
            cx.problem(format!("cannot forget sharing with {owner}: {e}"));
        }
    }
    if let Err(e) = records.release_name(&rec.name, &rec.id) {
        cx.problem(format!("cannot release name {}: {e}", rec.name));
    }
    log::phase("unmount");
    wirehook_shared::error::kill_point("teardown-unmount");
    if let Err(e) = records.remove(&rec.id) {
        cx.problem(format!("cannot remove the record: {e}"));
    }
    log::phase("record");
    wirehook_shared::error::kill_point("teardown-record");
    drop(wiring);
    let deferred = std::mem::take(&mut cx.deferred);
    let mut problems = cx.problems;
    match finish {
        Finish::Inline => problems.extend(crate::finish::run(paths, &rec.id, deferred)),
        Finish::Detached => {
            let links = rec
                .interfaces
                .iter()
                .filter_map(|i| i.host_ifname.clone())
                .collect();
            crate::finish::detach(paths, &rec.id, links, deferred)
        }
    }
    log::phase("finish");
    log::info(format!(
        "tore down {} ({} mode){}",
        rec.id,
        rec.mode,
        if problems.is_empty() {
            String::new()
        } else {
            format!(" with {} problem(s)", problems.len())
        }
    ));
    problems
}
