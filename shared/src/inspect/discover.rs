//! Finding every network namespace on the host and naming it.
//!
//! Namespaces come from two places: the `/proc/PID/ns/net` link of every
//! process (deduplicated by inode) and nsfs bind mounts in
//! `/proc/self/mountinfo` (`ip netns`'s `/run/netns`, wirehook's
//! `/run/wirehook/netns`, podman's `netns-*`, any other). Names come from
//! wirehook's container records, runc's (`/run/runc/ID/state.json`) and
//! crun's (`/run/crun/ID/status`) state directories, the mount points, and
//! the processes inside (names and command lines through sysinfo, see
//! [`super::procs`]).
//!
//! [`Discovery`] keeps caches between calls: the process table (a command
//! line is read once per process), the parsed records and runtime states,
//! re-read only when their directory changed (records and states are
//! written by rename, which changes the directory's mtime), and the
//! mount table, re-read only when the kernel says it changed (poll on
//! `/proc/self/mountinfo`).

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::model::{ContainerInfo, NameSource, NsName, Process, MAX_PROCESSES};
use super::procs::ProcTable;
use crate::paths::Paths;
use crate::store::{ContainerRecord, Mode, Records};

/// One namespace found on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub inode: u64,
    /// A path that opens it: `/proc/PID/ns/net` or a bind mount.
    pub path: PathBuf,
    pub host: bool,
    pub names: Vec<NsName>,
    pub container: Option<ContainerInfo>,
    pub processes: Vec<Process>,
    pub process_count: usize,
}

/// Where runtimes keep their state; defaults are runc's and crun's.
#[derive(Debug, Clone)]
pub struct StateDirs {
    pub runc: Vec<PathBuf>,
    pub crun: Vec<PathBuf>,
}

impl Default for StateDirs {
    fn default() -> Self {
        StateDirs {
            runc: vec![PathBuf::from("/run/runc")],
            crun: vec![PathBuf::from("/run/crun")],
        }
    }
}

/// Namespace discovery with its caches. See the [module docs](self).
pub struct Discovery {
    paths: Paths,
    dirs: StateDirs,
    procs: ProcTable,
    mounts: MountWatch,
    records: DirCache<Vec<ContainerRecord>>,
    overlays: DirCache<Vec<crate::overlay::LocalState>>,
    runtime: HashMap<PathBuf, DirCache<Vec<(String, u64)>>>,
    /// The host's namespace, once known (see [`ProcTable::host_netns`]).
    host: Option<u64>,
}

struct DirCache<T> {
    mtime: Option<SystemTime>,
    value: T,
}

impl<T: Default> Default for DirCache<T> {
    fn default() -> Self {
        DirCache {
            mtime: None,
            value: T::default(),
        }
    }
}

fn dir_mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).ok()?.modified().ok()
}

/// Parse the target of a `/proc/PID/ns/net` link or a mountinfo root:
/// `net:[4026531840]`.
pub fn parse_ns_link(s: &str) -> Option<u64> {
    s.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

/// nsfs mounts of network namespaces in a mountinfo text: (inode, mount point).
pub fn parse_mountinfo(text: &str) -> Vec<(u64, PathBuf)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        if !right.starts_with("nsfs ") {
            continue;
        }
        let f: Vec<&str> = left.split(' ').collect();
        if f.len() < 5 {
            continue;
        }
        if let Some(ino) = parse_ns_link(f[3]) {
            out.push((ino, PathBuf::from(unescape_mount(f[4]))));
        }
    }
    out
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The pid of a runc `state.json` (`init_process_pid`) or a crun `status`
/// file (`pid`), and the namespace path runc recorded, if any.
pub fn parse_runtime_state(text: &str) -> Option<(i32, Option<PathBuf>)> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let pid = v
        .get("init_process_pid")
        .or_else(|| v.get("pid"))?
        .as_i64()? as i32;
    let path = v
        .get("namespace_paths")
        .and_then(|n| n.get("NEWNET"))
        .and_then(|p| p.as_str())
        .filter(|p| !p.is_empty())
        .map(PathBuf::from);
    Some((pid, path))
}

impl Discovery {
    pub fn new(paths: Paths) -> Discovery {
        Discovery::with_dirs(paths, StateDirs::default())
    }

    pub fn with_dirs(paths: Paths, dirs: StateDirs) -> Discovery {
        Discovery {
            paths,
            dirs,
            procs: ProcTable::new(),
            mounts: MountWatch::default(),
            records: DirCache::default(),
            overlays: DirCache::default(),
            runtime: HashMap::new(),
            host: None,
        }
    }

    fn refresh_records(&mut self) {
        let dir = self.paths.records_dir();
        let m = dir_mtime(&dir);
        if m.is_some() && m == self.records.mtime {
            return;
        }
        self.records.mtime = m;
        self.records.value = Records::new(&self.paths).list();
    }

    /// The overlay networks wirehook has joined on this host, re-read when
    /// their directory changed.
    pub fn overlays(&mut self) -> Vec<crate::overlay::LocalState> {
        let dir = self.paths.run_dir.join("overlay");
        let m = dir_mtime(&dir);
        if m.is_none() || m != self.overlays.mtime {
            self.overlays.mtime = m;
            self.overlays.value = crate::overlay::LocalState::list(&self.paths);
        }
        self.overlays.value.clone()
    }

    /// (container id, namespace inode) for every container in a runtime's
    /// state directory.
    fn runtime_containers(&mut self, root: &Path, file: &str) -> Vec<(String, u64)> {
        let m = dir_mtime(root);
        if let Some(c) = self.runtime.get(root) {
            if m.is_some() && c.mtime == m && !c.value.is_empty() {
                return c.value.clone();
            }
        }
        let mut out = Vec::new();
        if let Ok(rd) = std::fs::read_dir(root) {
            for e in rd.flatten() {
                let Some(id) = e.file_name().to_str().map(String::from) else {
                    continue;
                };
                let Ok(text) = std::fs::read_to_string(e.path().join(file)) else {
                    continue;
                };
                let Some((pid, path)) = parse_runtime_state(&text) else {
                    continue;
                };
                let ino = path
                    .as_deref()
                    .and_then(crate::netns::inode_of_path)
                    .or_else(|| self.procs.netns_of(pid));
                if let Some(ino) = ino {
                    out.push((id, ino));
                }
            }
        }
        out.sort();
        self.runtime.insert(
            root.to_path_buf(),
            DirCache {
                mtime: m,
                value: out.clone(),
            },
        );
        out
    }

    /// Every network namespace visible now, host first, then by inode.
    pub fn discover(&mut self) -> Vec<Found> {
        if self.host.is_none() {
            self.host = self.procs.host_netns();
        }
        let host_ino = self.host;
        self.procs.refresh();
        let mut pids: BTreeMap<u64, Vec<i32>> = BTreeMap::new();
        for pid in self.procs.pids() {
            if let Some(ino) = self.procs.netns_of(pid) {
                pids.entry(ino).or_default().push(pid);
            }
        }
        for ps in pids.values_mut() {
            ps.sort_unstable();
        }

        let mut found: BTreeMap<u64, Found> = BTreeMap::new();
        fn entry(
            found: &mut BTreeMap<u64, Found>,
            host_ino: Option<u64>,
            ino: u64,
            path: PathBuf,
        ) -> &mut Found {
            found.entry(ino).or_insert_with(|| Found {
                inode: ino,
                path,
                host: Some(ino) == host_ino,
                names: Vec::new(),
                container: None,
                processes: Vec::new(),
                process_count: 0,
            })
        }
        // Mounts first, so a mounted namespace is opened through its mount
        // (stable) rather than a pid that may exit.
        let wh_netns = self.paths.netns_dir();
        let mounts = self.mounts.current().to_vec();
        for (ino, mp) in mounts {
            let f = entry(&mut found, host_ino, ino, mp.clone());
            let base = mp
                .file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let name = if mp.parent() == Some(Path::new("/run/netns"))
                || mp.parent() == Some(Path::new("/var/run/netns"))
            {
                NsName {
                    source: NameSource::Netns,
                    name: base,
                }
            } else if mp.parent() == Some(wh_netns.as_path()) {
                continue; // named by the record below
            } else {
                NsName {
                    source: NameSource::Mount,
                    name: mp.display().to_string(),
                }
            };
            if !f.names.contains(&name) {
                f.names.push(name);
            }
        }
        for (ino, ps) in &pids {
            let f = entry(
                &mut found,
                host_ino,
                *ino,
                PathBuf::from(format!("/proc/{}/ns/net", ps[0])),
            );
            f.process_count = ps.len();
        }
        for (ino, ps) in &pids {
            let mut procs = Vec::new();
            for &pid in ps.iter().take(MAX_PROCESSES) {
                let info = self.procs.info(pid);
                procs.push(Process {
                    pid,
                    comm: info.as_ref().map(|i| i.name.clone()).unwrap_or_default(),
                    cmd: info.map(|i| i.cmd).filter(|c| !c.is_empty()),
                });
            }
            if let Some(f) = found.get_mut(ino) {
                f.processes = procs;
            }
        }
        if let Some(h) = host_ino.and_then(|i| found.get_mut(&i)) {
            h.names.insert(
                0,
                NsName {
                    source: NameSource::Host,
                    name: "host".into(),
                },
            );
        }

        self.refresh_records();
        for r in &self.records.value {
            let Some(f) = found.get_mut(&r.netns_inode) else {
                continue;
            };
            f.names.push(NsName {
                source: NameSource::Wirehook,
                name: r.name.clone(),
            });
            let info = ContainerInfo {
                id: r.id.clone(),
                name: r.name.clone(),
                mode: r.mode.as_str().to_string(),
                networks: r.interfaces.iter().map(|i| i.network.clone()).collect(),
                sharers: Vec::new(),
            };
            match &mut f.container {
                None => f.container = Some(info),
                Some(c) if r.mode == Mode::Container => c.sharers.push(r.name.clone()),
                Some(c) => {
                    // The owner (not a sharer) names the namespace.
                    let old = std::mem::replace(c, info);
                    if old.mode == "container" {
                        c.sharers.push(old.name);
                    }
                }
            }
        }
        for (dirs, file, source) in [
            (self.dirs.runc.clone(), "state.json", NameSource::Runc),
            (self.dirs.crun.clone(), "status", NameSource::Crun),
        ] {
            for d in dirs {
                for (id, ino) in self.runtime_containers(&d, file) {
                    if let Some(f) = found.get_mut(&ino) {
                        f.names.push(NsName { source, name: id });
                    }
                }
            }
        }
        let mut out: Vec<Found> = found.into_values().collect();
        for f in &mut out {
            f.names.sort();
            f.names.dedup();
        }
        out.sort_by_key(|f| (!f.host, f.inode));
        out
    }
}

/// The nsfs mounts of `/proc/self/mountinfo`, parsed again only after the
/// kernel signalled a change of the mount table (POLLPRI on the open
/// file): with a thousand `ip netns` mounts, producing and parsing the
/// table was a good part of an idle tick.
#[derive(Default)]
struct MountWatch {
    file: Option<std::fs::File>,
    mounts: Vec<(u64, PathBuf)>,
}

impl MountWatch {
    fn current(&mut self) -> &[(u64, PathBuf)] {
        use std::io::{Read, Seek};
        use std::os::fd::AsRawFd;
        let changed = match &self.file {
            None => true,
            Some(f) => {
                let mut p = libc::pollfd {
                    fd: f.as_raw_fd(),
                    events: libc::POLLPRI,
                    revents: 0,
                };
                // SAFETY: one valid pollfd, no waiting.
                let n = unsafe { libc::poll(&mut p, 1, 0) };
                n != 0 // a change (POLLPRI|POLLERR), or poll failed: re-read
            }
        };
        if changed {
            if self.file.is_none() {
                self.file = std::fs::File::open("/proc/self/mountinfo").ok();
            }
            let mut text = String::new();
            // poll reported the change once; the next one reports the
            // next change.
            let ok = self
                .file
                .as_mut()
                .is_some_and(|f| f.rewind().is_ok() && f.read_to_string(&mut text).is_ok());
            if ok {
                self.mounts = parse_mountinfo(&text);
            } else {
                self.file = None;
                self.mounts = std::fs::read_to_string("/proc/self/mountinfo")
                    .map(|t| parse_mountinfo(&t))
                    .unwrap_or_default();
            }
        }
        &self.mounts
    }
}

/// Inode of a namespace file, for callers that have a path.
pub fn inode_of(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.ino())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ns_links() {
        assert_eq!(parse_ns_link("net:[4026531840]"), Some(4026531840));
        assert_eq!(parse_ns_link("mnt:[4026531840]"), None);
        assert_eq!(parse_ns_link("net:[x]"), None);
    }

    #[test]
    fn mountinfo_nsfs() {
        let text = "\
22 1 0:21 / /proc rw,nosuid - proc proc rw
600 25 0:4 net:[4026532510] /run/netns/blue rw shared:5 - nsfs nsfs rw
601 25 0:4 net:[4026532611] /run/wirehook/netns/abc rw - nsfs nsfs rw
602 25 0:4 mnt:[4026532700] /run/x rw - nsfs nsfs rw
603 25 0:4 net:[4026532612] /tmp/with\\040space rw - nsfs nsfs rw
";
        let m = parse_mountinfo(text);
        assert_eq!(
            m,
            vec![
                (4026532510, PathBuf::from("/run/netns/blue")),
                (4026532611, PathBuf::from("/run/wirehook/netns/abc")),
                (4026532612, PathBuf::from("/tmp/with space")),
            ]
        );
    }

    #[test]
    fn runtime_states() {
        let runc = r#"{"id":"web","init_process_pid":4242,"namespace_paths":{"NEWNET":"/proc/4242/ns/net"},"config":{}}"#;
        assert_eq!(
            parse_runtime_state(runc),
            Some((4242, Some(PathBuf::from("/proc/4242/ns/net"))))
        );
        let crun = r#"{"pid":77,"process-start-time":123,"cgroup-path":"/x","rootfs":"/r","systemd-cgroup":false,"bundle":"/b","created":"2024","detached":true}"#;
        assert_eq!(parse_runtime_state(crun), Some((77, None)));
        assert_eq!(parse_runtime_state("{}"), None);
        assert_eq!(parse_runtime_state("not json"), None);
    }

    #[test]
    fn finds_own_namespace() {
        let mut d = Discovery::new(Paths::under(Path::new("/nonexistent-wiretop")));
        let all = d.discover();
        let me = std::fs::read_link("/proc/self/ns/net").unwrap();
        let ino = parse_ns_link(me.to_str().unwrap()).unwrap();
        let f = all
            .iter()
            .find(|f| f.inode == ino)
            .expect("own namespace found");
        assert!(f.process_count >= 1);
        assert!(f.processes.len() <= MAX_PROCESSES);
        // Deduplicated by inode.
        let mut inos: Vec<u64> = all.iter().map(|f| f.inode).collect();
        inos.dedup();
        assert_eq!(inos.len(), all.len());
        // The host's namespace, named so, first, in this call and the next.
        let host = ProcTable::new().host_netns().expect("host namespace");
        for all in [all, d.discover()] {
            let hosts: Vec<&Found> = all.iter().filter(|f| f.host).collect();
            assert_eq!(hosts.len(), 1, "one host namespace: {hosts:?}");
            assert_eq!(hosts[0].inode, host);
            assert_eq!(all[0].inode, host, "host first");
            assert_eq!(hosts[0].names[0].source, NameSource::Host);
        }
    }
}
