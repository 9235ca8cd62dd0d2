//! Names across hosts: the resolver's side of overlay networks in a
//! cluster (an etcd store; with the local store every name is local).
//!
//! The resolver, not the hook, publishes names in the store, and not the
//! agent either:
//!
//! - it runs on every host that has containers with names, agent or not,
//!   and exactly while it has some;
//! - it already knows when a container is gone (poststop, or its pidfd
//!   when no poststop came), and rebuilds from the records after a crash:
//!   one code path takes a name out of the local table and out of the
//!   store;
//! - the hook's start keeps its single etcd round trip (the read of the
//!   network's keys): the put goes out after the resolver answered the
//!   hook, so the start waits for no more than before.
//!
//! The lease: this worker holds one of its own (`names_ttl` in the host
//! config, default 10 s), refreshed every third of it, and every key it
//! writes is on it. A host that dies (resolver killed, machine gone) takes
//! its names with it when the lease expires, whether or not an agent ran
//! there; a resolver that exits revokes it. A lost lease (the store away
//! longer than the TTL) gets a new one and every name written again. A new
//! resolver (after a crash) deletes keys of this host it did not write,
//! once it has attached every live container again (so a live one's name
//! never flaps).
//!
//! Keys: `names/NET/HOST/ID` ([`overlay::name_key`]), value a
//! [`NameRecord`]. The worker keeps what this host wants in the store
//! (`desired`) and writes what changed (`dirty`) in one transaction per
//! batch (a burst of starts costs one request), retrying with backoff
//! while the store is away. Other hosts' names come from one watch of
//! [`overlay::names_prefix`] from the revision of the last listing, put
//! in the resolver's table under the container `HOST/ID` (a `/` no local
//! container id has); a compacted revision or a dropped watch means a new
//! listing. DNS queries never wait on the store.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wirehook_shared::cluster::{Etcd, EventKind, Store, WatchMsg, WatchStopper};
use wirehook_shared::dns::table::{Endpoint, Table};
use wirehook_shared::hostconfig::HostConfig;
use wirehook_shared::overlay::{self, NameRecord};
use wirehook_shared::paths::Paths;
use wirehook_shared::Result;

use crate::log;

/// Default lease of a host's names, in seconds.
pub const DEFAULT_TTL: u64 = 10;
/// Shortest lease allowed.
const MIN_TTL: u64 = 2;
/// At most this many names and addresses are taken from another host's
/// record.
const MAX_NAMES: usize = 64;
const MAX_ADDRS: usize = 16;
/// Operations in one transaction, at most (etcd's default `--max-txn-ops`).
const TXN_OPS: usize = 128;
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

enum Msg {
    Put(String, Vec<u8>),
    Delete(String),
    /// The resolver attached every live container from the records: keys
    /// of this host it did not put since are left over.
    Restored,
    Stop,
    /// From the watch of generation `.0`.
    Watch(u64, WatchMsg),
    WatchEnded(u64, String),
}

/// The handle the resolver's loop holds.
pub struct Names {
    tx: Sender<Msg>,
    me: String,
    thread: Option<JoinHandle<()>>,
}

impl Names {
    /// Start the worker, if this host is in a cluster (an etcd store is
    /// configured); `None` otherwise. A configuration it cannot use is
    /// logged (the hook reports the same configuration's errors).
    pub fn start(paths: &Paths, table: Arc<RwLock<Table>>) -> Option<Names> {
        let cfg = match HostConfig::load(paths) {
            Ok(c) => c,
            Err(e) => {
                log::warn(format!("resolver: names across hosts off: {e}"));
                return None;
            }
        };
        if cfg.store.as_deref().is_none_or(|s| s.trim().is_empty()) {
            return None;
        }
        let started = (|| -> Result<(Etcd, String)> {
            let me = overlay::host_id(cfg.host_id.as_deref())?;
            let mut etcd = Etcd::new(&cfg.store_config())?;
            etcd.set_config_hint(format!(
                "check `store` in {}",
                paths.host_config_file().display()
            ));
            Ok((etcd, me))
        })();
        let (etcd, me) = match started {
            Ok(x) => x,
            Err(e) => {
                log::warn(format!("resolver: names across hosts off: {e}"));
                return None;
            }
        };
        let ttl = cfg.names_ttl.unwrap_or(DEFAULT_TTL).max(MIN_TTL);
        let (tx, rx) = mpsc::channel();
        let worker = Worker {
            etcd,
            me: me.clone(),
            ttl,
            table,
            tx: tx.clone(),
            lease: None,
            next_keepalive: Instant::now(),
            desired: BTreeMap::new(),
            dirty: BTreeSet::new(),
            remote: HashMap::new(),
            own: BTreeSet::new(),
            restored: false,
            active: false,
            generation: 0,
            watching: false,
            stopper: None,
            retry_at: None,
            backoff: BACKOFF_MIN,
        };
        let thread = std::thread::Builder::new()
            .name("dns-cluster".into())
            .spawn(move || worker.run(rx));
        match thread {
            Ok(t) => Some(Names {
                tx,
                me,
                thread: Some(t),
            }),
            Err(e) => {
                log::warn(format!("resolver: names across hosts off: {e}"));
                None
            }
        }
    }

    /// Publish container `id`'s endpoint on overlay network `net`.
    pub fn put(&self, net: &str, id: &str, rec: &NameRecord) {
        let value = serde_json::to_vec(rec).expect("JSON of a name record");
        let _ = self
            .tx
            .send(Msg::Put(overlay::name_key(net, &self.me, id), value));
    }

    /// Take it back.
    pub fn delete(&self, net: &str, id: &str) {
        let _ = self
            .tx
            .send(Msg::Delete(overlay::name_key(net, &self.me, id)));
    }

    /// Every live container is attached (the resolver's restore is done).
    pub fn restored(&self) {
        let _ = self.tx.send(Msg::Restored);
    }

    /// Revoke the lease (this host's names go from the store) and end.
    pub fn stop(mut self) {
        let _ = self.tx.send(Msg::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Worker {
    etcd: Etcd,
    me: String,
    ttl: u64,
    table: Arc<RwLock<Table>>,
    tx: Sender<Msg>,
    lease: Option<i64>,
    next_keepalive: Instant,
    /// This host's keys as they should be in the store.
    desired: BTreeMap<String, Vec<u8>>,
    /// Keys to write (or delete, when not in `desired`).
    dirty: BTreeSet<String>,
    /// Other hosts' keys in the table: key -> (container, network).
    remote: HashMap<String, (String, String)>,
    /// This host's keys in the store, as last listed and watched.
    own: BTreeSet<String>,
    /// [`Msg::Restored`] came: `own` keys not in `desired` are stale.
    restored: bool,
    /// An overlay name was put: from then on the lease and the watch are kept.
    active: bool,
    generation: u64,
    watching: bool,
    stopper: Option<WatchStopper>,
    /// While the store fails: when to try again.
    retry_at: Option<Instant>,
    backoff: Duration,
}

impl Worker {
    fn run(mut self, rx: Receiver<Msg>) {
        loop {
            let now = Instant::now();
            if self.retry_at.is_none_or(|t| now >= t) {
                match self.work() {
                    Ok(()) => {
                        self.retry_at = None;
                        self.backoff = BACKOFF_MIN;
                    }
                    Err(e) => {
                        log::warn(format!(
                            "resolver: names across hosts: {e} (again in {} ms)",
                            self.backoff.as_millis()
                        ));
                        self.retry_at = Some(now + self.backoff);
                        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                    }
                }
            }
            self.keepalive();
            let now = Instant::now();
            let mut wake = self.next_keepalive;
            if let Some(t) = self.retry_at {
                wake = wake.min(t);
            }
            let wait = wake
                .saturating_duration_since(now)
                .max(Duration::from_millis(1));
            let msg = match rx.recv_timeout(wait) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => Msg::Stop,
            };
            if !self.handle(msg) {
                return;
            }
            // Whatever else is queued (a burst of starts) goes out with it.
            while let Ok(msg) = rx.try_recv() {
                if !self.handle(msg) {
                    return;
                }
            }
        }
    }

    /// Apply one message; false: stopped.
    fn handle(&mut self, msg: Msg) -> bool {
        match msg {
            Msg::Put(key, value) => {
                if self.desired.get(&key) != Some(&value) {
                    self.desired.insert(key.clone(), value);
                    self.dirty.insert(key);
                }
            }
            Msg::Delete(key) => {
                self.desired.remove(&key);
                self.dirty.insert(key);
            }
            Msg::Restored => {
                self.restored = true;
                self.sweep();
            }
            Msg::Stop => {
                self.shutdown();
                return false;
            }
            Msg::Watch(g, _) | Msg::WatchEnded(g, _) if g != self.generation => {}
            Msg::Watch(_, WatchMsg::Events { events, .. }) => {
                for ev in events {
                    match ev.kind {
                        EventKind::Put => self.apply_put(&ev.kv.key, &ev.kv.value),
                        EventKind::Delete => self.apply_delete(&ev.kv.key),
                    }
                }
            }
            Msg::Watch(_, WatchMsg::Compacted { compact_revision }) => {
                log::info(format!(
                    "resolver: the store compacted past revision {compact_revision}: listing names again"
                ));
                self.watching = false;
            }
            Msg::WatchEnded(_, why) => {
                log::warn(format!(
                    "resolver: names watch ended ({why}): listing again"
                ));
                self.watching = false;
                self.retry_at = Some(Instant::now() + self.backoff);
                self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
            }
        }
        true
    }

    /// Lease, listing and watch, then the writes: whatever is missing.
    /// Nothing until the first overlay name: a host whose containers are
    /// all on other networks holds no lease and no watch.
    fn work(&mut self) -> Result<()> {
        self.active |= !self.desired.is_empty();
        if !self.active {
            return Ok(());
        }
        if self.lease.is_none() {
            let id = self.etcd.lease_grant(self.ttl as i64)?;
            self.lease = Some(id);
            self.next_keepalive = Instant::now() + self.keepalive_period();
            self.dirty.extend(self.desired.keys().cloned());
        }
        if !self.watching {
            self.relist()?;
        }
        // One transaction per batch of changes (etcd takes 128 operations
        // in one by default).
        while !self.dirty.is_empty() {
            let batch: Vec<String> = self.dirty.iter().take(TXN_OPS).cloned().collect();
            let puts: Vec<(&str, &[u8])> = batch
                .iter()
                .filter_map(|k| Some((k.as_str(), self.desired.get(k)?.as_slice())))
                .collect();
            let deletes: Vec<&str> = batch
                .iter()
                .filter(|k| !self.desired.contains_key(*k))
                .map(String::as_str)
                .collect();
            self.etcd.write(&puts, self.lease, &deletes)?;
            for k in &batch {
                self.dirty.remove(k);
            }
        }
        Ok(())
    }

    fn keepalive_period(&self) -> Duration {
        Duration::from_millis(self.ttl * 1000 / 3)
    }

    fn keepalive(&mut self) {
        let Some(lease) = self.lease else {
            self.next_keepalive = Instant::now() + BACKOFF_MAX;
            return;
        };
        if Instant::now() < self.next_keepalive {
            return;
        }
        match self.etcd.lease_keepalive(lease) {
            Ok(Some(_)) => self.next_keepalive = Instant::now() + self.keepalive_period(),
            Ok(None) => {
                log::warn(format!(
                    "resolver: lease {lease:x} of this host's names was lost (the store was away longer than {} s): writing them again",
                    self.ttl
                ));
                self.lease = None;
                self.retry_at = None;
            }
            Err(e) => {
                log::warn(format!("resolver: keepalive of the names' lease: {e}"));
                self.next_keepalive = Instant::now() + Duration::from_secs(1);
            }
        }
    }

    /// A full listing of every host's names, then a watch from there.
    fn relist(&mut self) -> Result<()> {
        if let Some(s) = self.stopper.take() {
            s.stop();
        }
        let listing = self.etcd.range(&overlay::names_prefix())?;
        let mut seen = HashSet::new();
        let mut own = BTreeSet::new();
        for kv in &listing.kvs {
            let Some((_, host, _)) = overlay::split_name_key(&kv.key) else {
                continue;
            };
            if host == self.me {
                own.insert(kv.key.clone());
                continue;
            }
            seen.insert(kv.key.clone());
            self.apply_put(&kv.key, &kv.value);
        }
        let gone: Vec<String> = self
            .remote
            .keys()
            .filter(|k| !seen.contains(*k))
            .cloned()
            .collect();
        for k in gone {
            self.apply_delete(&k);
        }
        self.own = own;
        self.sweep();
        self.generation += 1;
        let watch = self
            .etcd
            .watch(&overlay::names_prefix(), listing.revision + 1)?;
        self.stopper = Some(watch.stopper());
        let (tx, generation) = (self.tx.clone(), self.generation);
        watch.forward(
            "dns-watch",
            tx,
            move |m| Msg::Watch(generation, m),
            move |cause| Msg::WatchEnded(generation, cause),
        )?;
        self.watching = true;
        Ok(())
    }

    /// Keys of this host left by an earlier resolver (killed before its
    /// lease ran out) for containers that are gone: delete them, once
    /// every live container has been put again.
    fn sweep(&mut self) {
        if !self.restored {
            return;
        }
        for k in &self.own {
            if !self.desired.contains_key(k) {
                self.dirty.insert(k.clone());
            }
        }
    }

    /// Another host's endpoint, into the table (this host's own keys are
    /// served from the records).
    fn apply_put(&mut self, key: &str, value: &[u8]) {
        let Some((net, host, id)) = overlay::split_name_key(key) else {
            return;
        };
        if host == self.me {
            self.own.insert(key.to_string());
            return;
        }
        let Some(rec) = NameRecord::parse(value) else {
            log::warn(format!("resolver: {key} holds no name record: skipped"));
            self.apply_delete(key);
            return;
        };
        let container = format!("{host}/{id}");
        let ep = Endpoint::new(
            &container,
            net,
            rec.names.iter().take(MAX_NAMES),
            rec.addresses.iter().take(MAX_ADDRS).copied(),
        );
        self.table
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(ep);
        self.remote
            .insert(key.to_string(), (container, net.to_string()));
    }

    fn apply_delete(&mut self, key: &str) {
        self.own.remove(key);
        if let Some((container, net)) = self.remote.remove(key) {
            self.table
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&container, &net);
        }
    }

    fn shutdown(&mut self) {
        if let Some(s) = self.stopper.take() {
            s.stop();
        }
        if let Some(lease) = self.lease.take() {
            if let Err(e) = self.etcd.lease_revoke(lease) {
                log::warn(format!(
                    "resolver: revoking the names' lease: {e} (they go when it expires)"
                ));
            }
        }
    }
}
