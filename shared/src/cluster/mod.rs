//! The cluster store: the small key-value store that hosts sharing overlay
//! networks agree through.
//!
//! What lives in it (the layout is the overlay code's; this module only
//! stores bytes under keys): each overlay network's definition (name, VNI,
//! overlay CIDR), created once; each host's claim on a subnet of that CIDR,
//! made with [`Store::create`] so that two hosts can never claim the same
//! subnet; and each host's record (underlay address, VXLAN MAC) with its
//! liveness, a key tied to a lease that the host's agent keeps alive.
//!
//! Two backends behind one trait, [`Store`]:
//!
//! - [`Etcd`]: a cluster's store, spoken to over etcd's v3 JSON gateway
//!   (plain HTTP/1.1, one round trip per call, so a short-lived hook pays
//!   for no more than it asks). Adds leases and watches for the agent.
//! - [`Local`]: files under `/etc/wirehook/cluster` for a host that is its
//!   own cluster, so overlay networks work on one machine with no etcd.
//!
//! [`open`] picks one from the host configuration: etcd when a store URL is
//! set, the local store otherwise.
//!
//! Keys are `/`-separated strings. Revisions follow etcd's meaning in both
//! backends: every change bumps the store's revision, and each key carries
//! the revision that created it and the one that last changed it.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::Result;

mod etcd;
mod local;
pub(crate) mod wire;

pub use etcd::{Etcd, Watch, WatchMsg, WatchStopper};
pub use local::Local;

/// One key and what the store knows about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    pub key: String,
    pub value: Vec<u8>,
    /// Revision of the change that created the key (0: it does not exist).
    pub create_revision: i64,
    /// Revision of the last change to the key.
    pub mod_revision: i64,
    /// The etcd lease the key is attached to, 0 for none (always 0 in the
    /// local store).
    pub lease: i64,
}

/// The answer to [`Store::range`].
#[derive(Debug, Clone)]
pub struct Listing {
    /// Sorted by key.
    pub kvs: Vec<Kv>,
    /// The store's revision when it was read: a watch from `revision + 1`
    /// misses no change made after this listing.
    pub revision: i64,
}

/// What happened to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// For `Delete`: the key, its value empty, `mod_revision` the revision
    /// of the deletion.
    pub kv: Kv,
}

/// A cluster store: etcd, or the local files of a one-host "cluster".
pub trait Store: Send + Sync {
    /// "etcd http://10.0.0.2:2379" / "local /etc/wirehook/cluster": for messages.
    fn describe(&self) -> String;
    /// Every key starting with `prefix`, and the store revision of that read.
    fn range(&self, prefix: &str) -> Result<Listing>;
    /// One key, `None` if it does not exist.
    fn get(&self, key: &str) -> Result<Option<Kv>>;
    /// One transaction: put all pairs if NONE of the keys exists
    /// (create_revision == 0), else put nothing and return Ok(false).
    /// The same key twice in `puts` is an error.
    fn create(&self, puts: &[(&str, &[u8])]) -> Result<bool>;
    /// Put (overwrite); `lease` attaches an etcd lease (local store: ignored).
    fn put(&self, key: &str, value: &[u8], lease: Option<i64>) -> Result<()>;
    /// Delete these keys in one transaction; missing keys are fine.
    fn delete(&self, keys: &[&str]) -> Result<()>;
    /// Delete every key under prefix; returns how many. An empty prefix is
    /// refused (it would wipe the whole store).
    fn delete_prefix(&self, prefix: &str) -> Result<u64>;
}

/// Where the store is: parsed from the host config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreConfig {
    /// `etcd://HOST:PORT[,HOST:PORT...]` (`etcds://` for TLS), or `None` for
    /// the local store.
    pub url: Option<String>,
    /// CA certificate (PEM) that signed etcd's server certificate; giving it
    /// (or a client certificate) switches to https.
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM) for etcd's client-certificate auth; needs `key`.
    pub cert: Option<PathBuf>,
    /// Private key (PEM) of `cert`.
    pub key: Option<PathBuf>,
    /// Time limit of one call, all endpoints included; default 3 s.
    pub timeout: Option<Duration>,
}

/// Default time limit of one call to the store.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);

/// The store this host uses: etcd when `cfg.url` is set, else the local
/// store under `paths.config_dir/cluster` (`/etc/wirehook/cluster`).
pub fn open(cfg: &StoreConfig, paths: &crate::paths::Paths) -> Result<Box<dyn Store>> {
    match cfg.url.as_deref() {
        Some(url) if !url.trim().is_empty() => {
            let mut etcd = Etcd::new(cfg)?;
            etcd.set_config_hint(format!(
                "check `store` in {}",
                paths.host_config_file().display()
            ));
            Ok(Box::new(etcd))
        }
        _ => Ok(Box::new(Local::new(local_dir(paths)))),
    }
}

/// Directory of the local store: `/etc/wirehook/cluster`.
pub fn local_dir(paths: &crate::paths::Paths) -> PathBuf {
    paths.config_dir.join("cluster")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::Paths;

    #[test]
    fn open_picks_the_backend() {
        let paths = Paths::under(std::path::Path::new("/nonexistent-root"));
        let local = open(&StoreConfig::default(), &paths).unwrap();
        assert_eq!(
            local.describe(),
            "local /nonexistent-root/etc/wirehook/cluster"
        );
        let cfg = StoreConfig {
            url: Some("etcd://10.0.0.2:2379,10.0.0.3".into()),
            ..Default::default()
        };
        let etcd = open(&cfg, &paths).unwrap();
        assert_eq!(
            etcd.describe(),
            "etcd http://10.0.0.2:2379,http://10.0.0.3:2379"
        );
        let bad = StoreConfig {
            url: Some("zookeeper://x".into()),
            ..Default::default()
        };
        assert!(open(&bad, &paths).is_err());
    }
}
