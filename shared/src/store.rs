//! Container records: one JSON file per wired container under
//! `/run/wirehook/containers/ID.json`. A record holds everything teardown
//! needs (by poststop the pid and often the annotations are gone) and what
//! `wirehook ps` and `wiretop` show.

use std::net::IpAddr;
use std::path::PathBuf;

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fsutil;
use crate::paths::Paths;
use crate::ports::PortMapping;

/// Current record format.
pub const RECORD_VERSION: u32 = 1;
/// Longest container id accepted (OCI ids are usually 64 hex digits).
pub const MAX_ID_LEN: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Bridge,
    Host,
    None,
    Container,
    Macvlan,
    Ipvlan,
    Overlay,
}

impl Mode {
    pub fn as_str(&self) -> &'static str {
        match self {
            Mode::Bridge => "bridge",
            Mode::Host => "host",
            Mode::None => "none",
            Mode::Container => "container",
            Mode::Macvlan => "macvlan",
            Mode::Ipvlan => "ipvlan",
            Mode::Overlay => "overlay",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One interface wirehook made in a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceRecord {
    pub network: String,
    pub driver: crate::network::Driver,
    /// Name inside the container (eth0, ...).
    pub ifname: String,
    /// Host-side device (the veth's host end), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ifname: Option<String>,
    /// Bridge the host end hangs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge: Option<String>,
    pub mac: String,
    pub mtu: u32,
    pub addresses: Vec<IpNetwork>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<IpAddr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortMapping>,
    /// The network gives names (its `dns` flag at setup): the resolver
    /// answers this container's names on it, and it sees the others'.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub dns: bool,
    /// The network is `--internal`: no forwarding of outside names for it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub internal: bool,
    /// Names the container has on this network only (`wirehook network
    /// connect --alias`), besides its name and `io.wirehook.aliases`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Added to the running container by `wirehook network connect`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub connected: bool,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Everything wirehook made for one container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub version: u32,
    pub id: String,
    pub name: String,
    /// `io.wirehook.aliases`: more names other containers resolve it by.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    pub mode: Mode,
    /// Inode of the container's network namespace.
    pub netns_inode: u64,
    /// Bind mount keeping the namespace reachable (not for host/container modes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns_path: Option<PathBuf>,
    /// container:<owner> mode: the id of the container whose namespace is shared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shares_with: Option<String>,
    #[serde(default)]
    pub interfaces: Vec<InterfaceRecord>,
    /// Pid the runtime reported at setup.
    #[serde(default)]
    pub pid: i32,
    /// That process's start time (clock ticks since boot), so a reused pid
    /// is not mistaken for the container.
    #[serde(default)]
    pub pid_start: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<PathBuf>,
    /// The pod (CRI sandbox id) the runtime put the container in, if any:
    /// `container:<x>` joins only a container of the same pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// The runtime and root that created it (`runc:/run/runc`), so that
    /// `container:<x>` joins only a container of the same runtime root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_root: Option<String>,
    /// Seconds since the epoch.
    pub created: u64,
}

impl ContainerRecord {
    /// Every address of every interface, without prefix.
    pub fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.interfaces
            .iter()
            .flat_map(|i| i.addresses.iter().map(|a| a.ip()))
    }

    /// Does the resolver serve this container: is it on a network with
    /// names? (Host, none and container-shared modes have no interface.)
    pub fn wants_dns(&self) -> bool {
        self.interfaces.iter().any(|i| i.dns)
    }

    /// The names it resolves by, first the primary one: its name, its
    /// aliases, and the first 12 characters of a hex id (docker's short
    /// id). Not all need be valid DNS names (the table skips those).
    pub fn dns_names(&self) -> Vec<String> {
        let mut out = vec![self.name.clone()];
        out.extend(self.aliases.iter().cloned());
        if self.id.len() > 12 && self.id.bytes().all(|b| b.is_ascii_hexdigit()) {
            out.push(self.id[..12].to_string());
        }
        out
    }

    /// The names it resolves by on the network of `iface`: its
    /// [`dns_names`](Self::dns_names), then the aliases it has on that
    /// network only.
    pub fn dns_names_on(&self, iface: &InterfaceRecord) -> Vec<String> {
        let mut out = self.dns_names();
        out.extend(iface.aliases.iter().cloned());
        out
    }
}

/// Validate a container id before it becomes a file name.
pub fn validate_id(id: &str) -> Result<()> {
    if fsutil::is_safe_component(id, MAX_ID_LEN) {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "container id {id:?} is not a valid OCI id: use 1 to {MAX_ID_LEN} characters from [A-Za-z0-9_.-]"
        )))
    }
}

/// The record store.
pub struct Records<'a> {
    paths: &'a Paths,
}

impl<'a> Records<'a> {
    pub fn new(paths: &'a Paths) -> Self {
        Records { paths }
    }

    pub fn get(&self, id: &str) -> Result<Option<ContainerRecord>> {
        validate_id(id)?;
        fsutil::read_json(&self.paths.record_file(id))
    }

    pub fn put(&self, rec: &ContainerRecord) -> Result<()> {
        validate_id(&rec.id)?;
        fsutil::write_json(&self.paths.record_file(&rec.id), rec)
    }

    pub fn remove(&self, id: &str) -> Result<bool> {
        validate_id(id)?;
        fsutil::remove_file(&self.paths.record_file(id))
    }

    /// Every record, sorted by creation time then id. Unreadable records
    /// are reported through `on_error` and skipped.
    pub fn list_with(&self, mut on_error: impl FnMut(Error)) -> Vec<ContainerRecord> {
        let dir = self.paths.records_dir();
        let Ok(rd) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut out: Vec<ContainerRecord> = rd
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.ends_with(".json") && !n.starts_with('.'))
            })
            .filter_map(|e| match fsutil::read_json::<ContainerRecord>(&e.path()) {
                Ok(r) => r,
                Err(err) => {
                    on_error(err);
                    None
                }
            })
            .collect();
        out.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
        out
    }

    pub fn list(&self) -> Vec<ContainerRecord> {
        self.list_with(|_| {})
    }

    /// Reserve `name` for container `id`; Err(Conflict) names the holder.
    /// Holding it already is fine.
    pub fn claim_name(&self, name: &str, id: &str) -> Result<()> {
        if !fsutil::is_safe_component(name, MAX_ID_LEN) {
            return Err(Error::invalid(format!(
                "container name {name:?} cannot be used: names are 1 to {MAX_ID_LEN} characters from [A-Za-z0-9_.-]"
            )));
        }
        let dir = self.paths.names_dir();
        let path = dir.join(name);
        let create = || {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
        };
        let res = match create() {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fsutil::ensure_dir(&dir)?;
                create()
            }
            other => other,
        };
        match res {
            Ok(mut f) => {
                use std::io::Write;
                f.write_all(id.as_bytes())
                    .map_err(|e| Error::io("write", &path, e))
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let holder = std::fs::read_to_string(&path).unwrap_or_default();
                if holder == id {
                    return Ok(());
                }
                // A holder without a record is stale (crashed setup): take over.
                if !holder.is_empty() && self.get(&holder).ok().flatten().is_none() {
                    fsutil::write_atomic(&path, id.as_bytes())?;
                    return Ok(());
                }
                Err(Error::Conflict(format!(
                    "container name {name} is already used by container {holder}: pick another io.wirehook.name"
                )))
            }
            Err(e) => Err(Error::io("create", &path, e)),
        }
    }

    /// Give up `name` if `id` holds it.
    pub fn release_name(&self, name: &str, id: &str) -> Result<()> {
        if !fsutil::is_safe_component(name, MAX_ID_LEN) {
            return Ok(());
        }
        let path = self.paths.names_dir().join(name);
        if std::fs::read_to_string(&path).ok().as_deref() == Some(id) {
            fsutil::remove_file(&path)?;
        }
        Ok(())
    }

    /// Note that `sharer` joined `owner`'s namespace.
    pub fn add_sharer(&self, owner: &str, sharer: &str) -> Result<()> {
        validate_id(owner)?;
        validate_id(sharer)?;
        fsutil::write_atomic(&self.paths.sharers_dir(owner).join(sharer), b"")
    }

    pub fn remove_sharer(&self, owner: &str, sharer: &str) -> Result<()> {
        validate_id(owner)?;
        validate_id(sharer)?;
        let dir = self.paths.sharers_dir(owner);
        fsutil::remove_file(&dir.join(sharer))?;
        let _ = std::fs::remove_dir(dir);
        Ok(())
    }

    /// Containers that joined `owner`'s namespace.
    pub fn sharers(&self, owner: &str) -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(self.paths.sharers_dir(owner)) else {
            return Vec::new();
        };
        rd.flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .collect()
    }

    /// Find a container by id, name, or unique id prefix (at least 4 characters).
    pub fn find(&self, key: &str) -> Result<Option<ContainerRecord>> {
        if fsutil::is_safe_component(key, MAX_ID_LEN) {
            if let Some(r) = self.get(key)? {
                return Ok(Some(r));
            }
            if let Ok(id) = std::fs::read_to_string(self.paths.names_dir().join(key)) {
                if let Some(r) = self.get(id.trim())? {
                    return Ok(Some(r));
                }
            }
        }
        let all = self.list();
        if let Some(r) = all.iter().find(|r| r.name == key) {
            return Ok(Some(r.clone()));
        }
        if key.len() >= 4 {
            let matches: Vec<_> = all.iter().filter(|r| r.id.starts_with(key)).collect();
            match matches.len() {
                0 => {}
                1 => return Ok(Some(matches[0].clone())),
                n => {
                    return Err(Error::Conflict(format!(
                        "{key} matches {n} containers: give more of the id"
                    )))
                }
            }
        }
        Ok(None)
    }
}

/// Start time of a process (field 22 of /proc/PID/stat), if it exists.
pub fn process_start(pid: i32) -> Option<u64> {
    crate::procfs::stat(pid).map(|s| s.start)
}

/// Is the process recorded at setup still the one running under that pid?
pub fn process_alive(pid: i32, start: u64) -> bool {
    pid > 0 && process_start(pid).is_some_and(|s| start == 0 || s == start)
}
