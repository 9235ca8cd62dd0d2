//! [`Container`]: a bare "container" for integration tests that call the hook
//! directly, without a runtime — one long-sleeping process in a fresh network
//! namespace (loopback down, as the kernel makes it), plus helpers to write
//! the OCI state document and a minimal bundle the hook can read.
//!
//! ```no_run
//! use wirehook_tests::{TestHost, NetNsEntry, OutputExt};
//! let host = TestHost::new("bridge");
//! let c = host.container("a");
//! let bundle = c.bundle(NetNsEntry::Fresh);
//! let state = c.state_json(c.id(), "creating", &[("io.wirehook.network", "bridge")], &bundle);
//! host.wirehook_hook("createRuntime", &state).expect_success("setup");
//! let links = c.links_json();
//! ```

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use crate::cmd::{self, OutputExt, DEFAULT_TIMEOUT};
use crate::host::TestHost;
use crate::sys;

/// What a bundle's `config.json` says about the network namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetNsEntry {
    /// `{"type": "network"}`: the runtime makes a fresh namespace.
    Fresh,
    /// `{"type": "network", "path": P}`: join an existing one.
    Path(PathBuf),
    /// No network entry at all: the container shares the host's namespace.
    Absent,
}

impl NetNsEntry {
    /// The `linux.namespaces` element, or `None` for [`NetNsEntry::Absent`].
    pub fn to_json(&self) -> Option<Value> {
        match self {
            NetNsEntry::Fresh => Some(json!({"type": "network"})),
            NetNsEntry::Path(p) => Some(json!({"type": "network", "path": p})),
            NetNsEntry::Absent => None,
        }
    }

    /// Reads the entry back from a `config.json` document.
    pub fn from_config(config: &Value) -> NetNsEntry {
        let ns = config
            .pointer("/linux/namespaces")
            .and_then(Value::as_array)
            .and_then(|a| {
                a.iter()
                    .find(|n| n.get("type").and_then(Value::as_str) == Some("network"))
            });
        match ns {
            None => NetNsEntry::Absent,
            Some(n) => match n.get("path").and_then(Value::as_str) {
                Some(p) if !p.is_empty() => NetNsEntry::Path(PathBuf::from(p)),
                _ => NetNsEntry::Fresh,
            },
        }
    }
}

/// Replaces (or removes) the network entry of `config`'s `linux.namespaces`.
pub fn set_netns_entry(config: &mut Value, entry: &NetNsEntry) {
    let linux = config
        .as_object_mut()
        .expect("config.json is an object")
        .entry("linux")
        .or_insert_with(|| json!({}));
    let list = linux
        .as_object_mut()
        .expect("linux is an object")
        .entry("namespaces")
        .or_insert_with(|| json!([]));
    let arr = list.as_array_mut().expect("namespaces is an array");
    arr.retain(|n| n.get("type").and_then(Value::as_str) != Some("network"));
    if let Some(e) = entry.to_json() {
        arr.push(e);
    }
}

/// Annotations as a JSON object.
pub fn annotations_json(annotations: &[(&str, &str)]) -> Value {
    let mut m = Map::new();
    for (k, v) in annotations {
        m.insert(k.to_string(), Value::String(v.to_string()));
    }
    Value::Object(m)
}

/// An OCI state document as runtimes pass it to hooks on stdin. `pid: None`
/// leaves the field out (runc at poststop); crun sends `Some(0)` there.
pub fn oci_state(
    id: &str,
    status: &str,
    pid: Option<i32>,
    bundle: &Path,
    annotations: &[(&str, &str)],
) -> String {
    let mut s = json!({
        "ociVersion": "1.0.2-dev",
        "id": id,
        "status": status,
        "bundle": bundle,
        "annotations": annotations_json(annotations),
    });
    if let Some(pid) = pid {
        s["pid"] = json!(pid);
    }
    s.to_string()
}

/// Writes `dir/config.json` (and an empty `dir/rootfs/`): a small but
/// complete runtime-spec document with process `sleep 3600`, namespaces pid,
/// ipc, uts, mount and the network entry `netns`, and `annotations`.
/// Returns `dir`.
pub fn write_minimal_bundle(
    dir: &Path,
    netns: &NetNsEntry,
    annotations: &[(&str, &str)],
) -> PathBuf {
    std::fs::create_dir_all(dir.join("rootfs"))
        .unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    let mut config = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": ["sleep", "3600"],
            "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
            "cwd": "/"
        },
        "root": {"path": "rootfs"},
        "hostname": "container",
        "annotations": annotations_json(annotations),
        "linux": {
            "namespaces": [
                {"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}
            ]
        }
    });
    set_netns_entry(&mut config, netns);
    let path = dir.join("config.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap())
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    dir.to_path_buf()
}

/// A bare container. See the [module docs](self). Killed on drop.
pub struct Container<'h> {
    host: &'h TestHost,
    id: String,
    child: Option<Child>,
    pid: i32,
    inode: u64,
}

impl TestHost {
    /// Starts `sleep 3600` in a fresh network namespace (spawned through the
    /// host namespace with `nsenter --net=HOST unshare --net`), and waits
    /// until it is there. Its id is [`unique_id(tag)`](TestHost::unique_id).
    pub fn container(&self, tag: &str) -> Container<'_> {
        let id = self.unique_id(tag);
        let mut c = self.command(&["unshare", "--net", "--", "sleep", "3600"]);
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd::spawn(&mut c);
        let pid = child.id() as i32;
        self.track_pid(pid);
        // nsenter and unshare exec in place: wait until the pid is `sleep`
        // in a namespace other than the host's.
        let deadline = Instant::now() + Duration::from_secs(10);
        let inode = loop {
            if let Ok(Some(st)) = child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                panic!(
                    "container {id}: `{}` exited: {st}: {err}",
                    cmd::describe(&c)
                );
            }
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let ino = sys::netns_inode_of_pid(pid);
            if comm.trim() == "sleep" {
                if let Some(ino) = ino.filter(|i| *i != self.netns_inode()) {
                    break ino;
                }
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("container {id}: process {pid} did not reach its own namespace in 10 s");
            }
            thread::sleep(Duration::from_millis(2));
        };
        drop(child.stderr.take());
        Container {
            host: self,
            id,
            child: Some(child),
            pid,
            inode,
        }
    }
}

impl<'h> Container<'h> {
    /// The container's id (unique; valid OCI id).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Host pid of the container's process.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// `/proc/PID/ns/net`.
    pub fn netns_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.pid))
    }

    /// Inode of the container's network namespace (taken at start).
    pub fn netns_inode(&self) -> u64 {
        self.inode
    }

    /// The host this container was started in.
    pub fn host(&self) -> &'h TestHost {
        self.host
    }

    /// Whether the process still runs.
    pub fn is_running(&self) -> bool {
        sys::alive(self.pid)
    }

    /// A [`Command`] running `argv` in the container's network namespace
    /// (`nsenter --net=/proc/PID/ns/net`); the file system is the host's, so
    /// every host tool (ip, ping, nft) is at hand.
    pub fn command(&self, argv: &[&str]) -> Command {
        assert!(!argv.is_empty(), "empty argv");
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.netns_path().display()))
            .arg("--")
            .args(argv)
            .current_dir("/");
        c
    }

    /// Runs `argv` in the container's network namespace.
    pub fn exec(&self, argv: &[&str]) -> Output {
        assert!(self.is_running(), "container {} is not running", self.id);
        cmd::run(&mut self.command(argv), None, DEFAULT_TIMEOUT)
    }

    /// Runs `sh -c script` in the container's network namespace.
    pub fn sh(&self, script: &str) -> Output {
        self.exec(&["sh", "-c", script])
    }

    /// `ip -j -d link show` in the container, parsed.
    pub fn links_json(&self) -> Value {
        self.json(&["ip", "-j", "-d", "link", "show"])
    }

    /// `ip -j addr show` in the container, parsed.
    pub fn addrs_json(&self) -> Value {
        self.json(&["ip", "-j", "addr", "show"])
    }

    /// `ip -j route show table all` in the container, parsed.
    pub fn routes_json(&self) -> Value {
        self.json(&["ip", "-j", "route", "show", "table", "all"])
    }

    fn json(&self, argv: &[&str]) -> Value {
        let out = self.exec(argv).expect_success(&argv.join(" "));
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("`{}` printed no JSON: {e}", argv.join(" ")))
    }

    /// The OCI state document with this container's pid.
    pub fn state_json(
        &self,
        id: &str,
        status: &str,
        annotations: &[(&str, &str)],
        bundle: &Path,
    ) -> String {
        oci_state(id, status, Some(self.pid), bundle, annotations)
    }

    /// Writes a minimal bundle for this container under
    /// `ROOT/bundles/<id>/` with the given network entry (no annotations in
    /// config.json: the hook gets them from the state) and returns its path.
    pub fn bundle(&self, netns: NetNsEntry) -> PathBuf {
        let dir = self.host.root().join("bundles").join(&self.id);
        write_minimal_bundle(&dir, &netns, &[])
    }

    /// Kills the process now (SIGKILL) and reaps it. Its namespace lives on
    /// while something else (a wirehook bind mount) holds it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            self.host.untrack_pid(self.pid);
        }
    }
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        self.kill();
    }
}
