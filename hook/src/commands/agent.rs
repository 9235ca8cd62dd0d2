//! `wirehook agent`: keeps this host's overlay entries current and this
//! host alive in the cluster.
//!
//! One loop over one channel. Three threads feed it: the etcd watch of
//! every overlay key (from the revision of the last full listing), the
//! liveness lease's keepalive, and the signal handler. The loop applies
//! watch events to its views and reconciles the networks they touch; a
//! compacted revision or a dropped connection (etcd restarted) means a
//! fresh listing and a new watch; a lost lease means a new one and the
//! liveness keys written again; every `--resync` seconds every network is
//! compared with the kernel anyway. SIGTERM or SIGINT revoke the lease, so
//! the other hosts drop this one at once, and end the agent.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use nix::sys::signal::{SigSet, Signal};
use wirehook_shared::cluster::Store;
use wirehook_shared::cluster::{Etcd, WatchMsg};
use wirehook_shared::hostconfig::HostConfig;
use wirehook_shared::netlink::Netlink;
use wirehook_shared::overlay::{self, ClusterView, Identity};
use wirehook_shared::paths::Paths;

use super::overlay::{joined, reconcile_one};
use crate::log;

#[derive(Args)]
pub struct AgentArgs {
    /// Join this overlay network too (repeatable); the agent always serves
    /// the networks this host has joined
    #[arg(long = "network", value_name = "NAME")]
    networks: Vec<String>,
    /// Join every overlay network, including ones created later
    #[arg(long)]
    all: bool,
    /// Seconds the liveness lease lives without a keepalive: how long a
    /// dead host stays in the others' tables
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    ttl: i64,
    /// Seconds between full comparisons with the kernel
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    resync: u64,
}

enum Msg {
    /// From the watch of generation `.0`.
    Watch(u64, WatchMsg),
    WatchEnded(u64, String),
    LeaseLost,
    Stop(Signal),
}

struct Agent<'a> {
    paths: &'a Paths,
    etcd: Etcd,
    nl: Netlink,
    me: Identity,
    args: AgentArgs,
    lease: i64,
    views: BTreeMap<String, ClusterView>,
    /// Networks whose liveness key carries the current lease.
    alive_written: BTreeSet<String>,
}

pub fn run(paths: &Paths, args: AgentArgs) -> Result<()> {
    if args.ttl < 2 {
        bail!("--ttl {} is too short: use 2 seconds or more", args.ttl);
    }
    let cfg = HostConfig::load(paths)?;
    if cfg.store.is_none() {
        bail!(
            "wirehook agent keeps hosts of a cluster in step and needs one: set \"store\": \"etcd://HOST:PORT\" in {} (on one host, overlay networks need no agent)",
            paths.host_config_file().display()
        );
    }
    // Signals go to the handler thread only.
    let mut sigs = SigSet::empty();
    sigs.add(Signal::SIGTERM);
    sigs.add(Signal::SIGINT);
    sigs.thread_block().context("block signals")?;

    let etcd = Etcd::new(&cfg.store_config())?;
    let nl = Netlink::new()?;
    let me = crate::drivers::overlay::identity(&cfg, &nl)?;
    let (tx, rx) = mpsc::channel();
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            if let Ok(sig) = sigs.wait() {
                let _ = tx.send(Msg::Stop(sig));
            }
        });
    }
    let lease = grant_with_retry(&etcd, args.ttl, &rx)?;
    spawn_keepalive(&cfg, lease, args.ttl, tx.clone());
    log::info(format!(
        "agent for host {} ({} on {}) on {}, lease ttl {} s",
        me.host,
        me.underlay_ip,
        me.underlay_if,
        etcd.describe(),
        args.ttl
    ));
    let mut agent = Agent {
        paths,
        etcd,
        nl,
        me,
        args,
        lease,
        views: BTreeMap::new(),
        alive_written: BTreeSet::new(),
    };
    agent.run(tx, rx)
}

/// The first lease; the store may still be starting.
fn grant_with_retry(etcd: &Etcd, ttl: i64, rx: &Receiver<Msg>) -> Result<i64> {
    let mut delay = Duration::from_millis(200);
    loop {
        match etcd.lease_grant(ttl) {
            Ok(id) => return Ok(id),
            Err(e) => {
                log::warn(format!("agent: cannot get a lease yet: {e}"));
                if let Ok(Msg::Stop(_)) = rx.recv_timeout(delay) {
                    bail!("stopped before the store answered");
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Refresh the lease every third of its life; report when it is gone.
/// Follows [`KEEPALIVE_LEASE`], which the main loop replaces a lost lease in.
fn spawn_keepalive(cfg: &HostConfig, lease: i64, ttl: i64, tx: Sender<Msg>) {
    set_keepalive_lease(lease);
    let cfg = cfg.store_config();
    std::thread::spawn(move || {
        let Ok(etcd) = Etcd::new(&cfg) else { return };
        let period = Duration::from_millis((ttl as u64 * 1000) / 3);
        loop {
            std::thread::sleep(period);
            let lease = *KEEPALIVE_LEASE.lock().unwrap_or_else(|e| e.into_inner());
            match etcd.lease_keepalive(lease) {
                Ok(Some(_)) => {}
                Ok(None) => {
                    if tx.send(Msg::LeaseLost).is_err() {
                        return;
                    }
                }
                Err(e) => log::warn(format!("agent: keepalive failed: {e}")),
            }
        }
    });
}

/// The lease the keepalive thread refreshes.
static KEEPALIVE_LEASE: std::sync::Mutex<i64> = std::sync::Mutex::new(0);

fn set_keepalive_lease(lease: i64) {
    *KEEPALIVE_LEASE.lock().unwrap_or_else(|e| e.into_inner()) = lease;
}

impl Agent<'_> {
    fn run(&mut self, tx: Sender<Msg>, rx: Receiver<Msg>) -> Result<()> {
        let mut generation = 0u64;
        let mut backoff = Duration::from_millis(200);
        'relist: loop {
            let revision = match self.relist() {
                Ok(r) => {
                    backoff = Duration::from_millis(200);
                    r
                }
                Err(e) => {
                    log::warn(format!("agent: cannot list the store: {e}"));
                    if let Ok(Msg::Stop(sig)) = rx.recv_timeout(backoff) {
                        return self.stop(sig);
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue 'relist;
                }
            };
            generation += 1;
            self.spawn_watch(generation, revision + 1, tx.clone())?;
            let mut next_resync = Instant::now() + Duration::from_secs(self.args.resync);
            loop {
                let wait = next_resync.saturating_duration_since(Instant::now());
                match rx.recv_timeout(wait) {
                    Ok(Msg::Stop(sig)) => return self.stop(sig),
                    Ok(Msg::Watch(g, _) | Msg::WatchEnded(g, _)) if g != generation => {}
                    Ok(Msg::Watch(_, WatchMsg::Events { events, .. })) => {
                        let mut touched = BTreeSet::new();
                        for ev in &events {
                            let Some(net) = network_of(&ev.kv.key) else {
                                continue;
                            };
                            self.views
                                .entry(net.to_string())
                                .or_insert_with(|| ClusterView {
                                    name: net.to_string(),
                                    ..Default::default()
                                })
                                .apply(ev);
                            touched.insert(net.to_string());
                        }
                        let scope = self.scope();
                        for net in touched.iter().filter(|n| scope.contains(n)) {
                            self.serve(net);
                        }
                    }
                    Ok(Msg::Watch(_, WatchMsg::Compacted { compact_revision })) => {
                        log::info(format!(
                            "agent: the store compacted past revision {compact_revision}: listing again"
                        ));
                        continue 'relist;
                    }
                    Ok(Msg::WatchEnded(_, why)) => {
                        log::warn(format!("agent: watch ended ({why}): listing again"));
                        if let Ok(Msg::Stop(sig)) = rx.recv_timeout(backoff) {
                            return self.stop(sig);
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        continue 'relist;
                    }
                    Ok(Msg::LeaseLost) => self.renew_lease(),
                    Err(RecvTimeoutError::Timeout) => {
                        next_resync = Instant::now() + Duration::from_secs(self.args.resync);
                        self.serve_all();
                    }
                    Err(RecvTimeoutError::Disconnected) => bail!("agent channel closed"),
                }
            }
        }
    }

    /// A full listing: fresh views, every network in scope served.
    fn relist(&mut self) -> Result<i64> {
        let listing = self.etcd.range(&overlay::networks_prefix())?;
        self.views = ClusterView::all_from_listing(&listing);
        self.serve_all();
        Ok(listing.revision)
    }

    fn spawn_watch(&self, generation: u64, from: i64, tx: Sender<Msg>) -> Result<()> {
        let watch = self.etcd.watch(&overlay::networks_prefix(), from)?;
        watch.forward(
            "agent-watch",
            tx,
            move |m| Msg::Watch(generation, m),
            move |cause| Msg::WatchEnded(generation, cause),
        )?;
        Ok(())
    }

    /// The networks this agent serves: joined ones, `--network`, all with
    /// `--all`.
    fn scope(&self) -> Vec<String> {
        let views: Vec<&ClusterView> = self.views.values().collect();
        let mut out = joined(self.paths, &self.me.host, &views);
        for n in &self.args.networks {
            if !out.contains(n) {
                out.push(n.clone());
            }
        }
        if self.args.all {
            for v in self.views.values().filter(|v| v.def.is_some()) {
                if !out.contains(&v.name) {
                    out.push(v.name.clone());
                }
            }
        }
        out
    }

    /// [`serve`](Self::serve) every network in scope.
    fn serve_all(&mut self) {
        for net in self.scope() {
            self.serve(&net);
        }
    }

    /// Reconcile one network of [`scope`](Self::scope), and keep this
    /// host's liveness key on it. Failures are logged: the next event or
    /// resync tries again.
    fn serve(&mut self, net: &str) {
        let view = self
            .views
            .entry(net.to_string())
            .or_insert_with(|| ClusterView {
                name: net.to_string(),
                ..Default::default()
            });
        if view.def.is_none() {
            self.alive_written.remove(net);
        }
        if let Err(e) = reconcile_one(self.paths, &self.nl, &self.etcd, view, &self.me, true) {
            log::warn(format!("agent: overlay network {net}: {e}"));
            return;
        }
        if view.def.is_some() && !view.alive.contains(&self.me.host) {
            self.alive_written.remove(net);
        }
        if view.def.is_some() && !self.alive_written.contains(net) {
            match self.etcd.put(
                &overlay::alive_key(net, &self.me.host),
                b"",
                Some(self.lease),
            ) {
                Ok(()) => {
                    self.alive_written.insert(net.to_string());
                }
                Err(e) => log::warn(format!("agent: liveness of {net}: {e}")),
            }
        }
    }

    fn renew_lease(&mut self) {
        match self.etcd.lease_grant(self.args.ttl) {
            Ok(id) => {
                log::warn(format!(
                    "agent: lease {:x} was lost (the store was away longer than {} s): new lease {id:x}",
                    self.lease, self.args.ttl
                ));
                self.lease = id;
                set_keepalive_lease(id);
                self.alive_written.clear();
                self.serve_all();
            }
            Err(e) => log::warn(format!("agent: cannot renew the lease: {e}")),
        }
    }

    fn stop(&self, sig: Signal) -> Result<()> {
        log::info(format!(
            "agent: {sig}: revoking lease {:x}, other hosts drop this one now",
            self.lease
        ));
        if let Err(e) = self.etcd.lease_revoke(self.lease) {
            log::warn(format!("agent: revoking the lease failed: {e}"));
        }
        Ok(())
    }
}

/// The network an overlay key belongs to.
fn network_of(key: &str) -> Option<&str> {
    key.strip_prefix(&overlay::networks_prefix())?
        .split('/')
        .next()
        .filter(|n| !n.is_empty())
}
