//! Helpers for end-to-end tests that install wirehook the way a user does
//! and start real containers with runc, crun and podman.
//!
//! * runc / crun: [`prepare`] runs `wirehook --root ROOT prepare BUNDLE`,
//!   which adds the createRuntime + poststop hooks to `config.json` (with
//!   `--root ROOT` in their args) and fits the network namespace entry to
//!   the mode (removed for `host`, the owner's bind mount for
//!   `container:X`).
//! * podman: [`install_shipped_hooks_d`] copies the repository's
//!   `hooks.d/*.json` into the test host's `--hooks-dir`, changing
//!   only `hook.path` (the built binary) and adding `--root ROOT` to its
//!   args. [`E2eContainer::launch`] passes `--network` the way a podman user
//!   would: `host` for `io.wirehook.network=host`, `container:X` for
//!   `container:X`, `none` (a fresh namespace for wirehook to wire)
//!   otherwise.
//! * [`leftovers`] / [`assert_nothing_left`]: what of wirehook is still on
//!   the host after every container is gone.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::bundle::{Bundle, NETWORK_ANNOTATION};
use crate::cmd::{self, OutputExt, DEFAULT_TIMEOUT};
use crate::host::TestHost;
use crate::runtime::{Runtime, START_TIMEOUT};
use crate::sys;

/// The repository's shipped hooks.d file for setup and teardown.
pub fn shipped_hooks_d_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../hooks.d/wirehook.json")
}

/// Every shipped hooks.d file (`wirehook.json`, and `wirehook-resolv.json`
/// for the createContainer stage), sorted.
pub fn shipped_hooks_d_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../hooks.d");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
}

/// Writes a copy of every shipped hooks.d file into podman's hooks
/// directory of `host` ([`Runtime::podman_hooks_dir`]): `hook.path` is the
/// built binary and `--root ROOT` follows argv\[0\]; everything else
/// (stages, env, timeout, `when`) as shipped. Idempotent. Returns the
/// written `wirehook.json`.
pub fn install_shipped_hooks_d(host: &TestHost) -> Value {
    let mut main = None;
    for src in shipped_hooks_d_files() {
        let doc = install_hooks_d_file(host, &src);
        if src == shipped_hooks_d_path() {
            main = Some(doc);
        }
    }
    main.expect("hooks.d/wirehook.json is shipped")
}

fn install_hooks_d_file(host: &TestHost, src: &Path) -> Value {
    let text = std::fs::read(src).unwrap_or_else(|e| panic!("read {}: {e}", src.display()));
    let mut doc: Value = serde_json::from_slice(&text)
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", src.display()));
    let bin = TestHost::wirehook_bin();
    doc["hook"]["path"] = Value::String(bin.to_str().expect("utf-8 binary path").into());
    let args = doc["hook"]["args"]
        .as_array_mut()
        .unwrap_or_else(|| panic!("{}: hook.args is not a list", src.display()));
    assert!(
        !args.is_empty(),
        "{}: hook.args must start with argv[0]",
        src.display()
    );
    let root = host.root().to_str().expect("utf-8 root").to_string();
    args.insert(1, Value::String("--root".into()));
    args.insert(2, Value::String(root));
    let dir = Runtime::podman_hooks_dir(host);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    let dst = dir.join(src.file_name().expect("a file name"));
    std::fs::write(&dst, serde_json::to_vec_pretty(&doc).unwrap())
        .unwrap_or_else(|e| panic!("write {}: {e}", dst.display()));
    doc
}

/// `wirehook --root ROOT prepare BUNDLE` (must succeed), then checks that
/// config.json calls the built binary at createRuntime and poststop exactly
/// once each, with `--root ROOT` in the args. Returns prepare's output.
pub fn prepare(host: &TestHost, bundle: &Bundle) -> Output {
    let root = host.root().to_str().expect("utf-8 root");
    let dir = bundle.dir().to_str().expect("utf-8 bundle");
    let out = host
        .wirehook(&["--root", root, "prepare", dir], None)
        .expect_success(&format!("wirehook --root {root} prepare {dir}"));
    let cfg = bundle.config();
    let bin = TestHost::wirehook_bin();
    for stage in ["createRuntime", "poststop"] {
        let ours: Vec<&Value> = cfg["hooks"][stage]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|h| h["path"] == bin.to_str().unwrap())
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(
            ours.len(),
            1,
            "prepare should add exactly one {stage} hook running {}; hooks: {}",
            bin.display(),
            cfg["hooks"]
        );
        let args: Vec<&str> = ours[0]["args"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        assert!(
            args.windows(2).any(|w| w == ["--root", root]),
            "prepare --root {root} should put `--root {root}` into the {stage} hook's args \
             (the runtime passes the hook no environment); args: {args:?}"
        );
    }
    out
}

/// The `--network` podman gets for a container whose bundle asks for
/// `io.wirehook.network=value`: what a podman user passes.
pub fn podman_network_for(value: &str) -> String {
    if value == "host" {
        "host".into()
    } else if value.starts_with("container:") {
        value.into()
    } else {
        "none".into()
    }
}

/// A container of a real runtime, killed and deleted (poststop hooks run)
/// on drop.
pub struct E2eContainer<'h> {
    host: &'h TestHost,
    rt: Runtime,
    name: String,
    deleted: bool,
}

impl<'h> E2eContainer<'h> {
    /// Starts `bundle` as `name` in the background with `rt` and returns the
    /// runtime's output with a guard (which deletes the container on drop,
    /// quietly if the runtime does not know it). runc and crun take the
    /// hooks and namespaces from config.json; podman gets `--network`
    /// from [`podman_network_for`] and its hooks from the hooks directory.
    pub fn launch(
        rt: Runtime,
        host: &'h TestHost,
        bundle: &Bundle,
        name: &str,
    ) -> (Output, E2eContainer<'h>) {
        let out = match rt {
            Runtime::Runc | Runtime::Crun => rt.run_detached(host, bundle, name),
            Runtime::Podman => {
                let ann = bundle.annotations();
                let value = ann
                    .iter()
                    .find(|(k, _)| k == NETWORK_ANNOTATION)
                    .map(|(_, v)| v.as_str())
                    .unwrap_or("");
                let mut args: Vec<String> = [
                    "run",
                    "-d",
                    "--name",
                    name,
                    "--network",
                    &podman_network_for(value),
                    "--ulimit",
                    "nofile=1024:1024",
                    "--ulimit",
                    "nproc=4096:4096",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect();
                for (k, v) in ann {
                    args.push("--annotation".into());
                    args.push(crate::runtime::podman_annotation(&k, &v));
                }
                args.push("--rootfs".into());
                args.push(bundle.rootfs().to_str().expect("utf-8").into());
                args.extend(bundle.args());
                let refs: Vec<&str> = args.iter().map(String::as_str).collect();
                let log = host.root().join("logs").join(format!("podman-{name}"));
                cmd::run_to_files(&mut rt.command(host, &refs), &log, START_TIMEOUT)
            }
        };
        (
            out,
            E2eContainer {
                host,
                rt,
                name: name.to_string(),
                deleted: false,
            },
        )
    }

    /// [`launch`](Self::launch) that must succeed.
    pub fn start(rt: Runtime, host: &'h TestHost, bundle: &Bundle, name: &str) -> E2eContainer<'h> {
        let (out, c) = Self::launch(rt, host, bundle, name);
        out.expect_success(&format!("{} starting {name}", rt.name()));
        c
    }

    /// The name it was started with (runc/crun: the id).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The id hooks see (podman: its 64-hex id).
    pub fn id(&self) -> String {
        self.rt.container_id(self.host, &self.name)
    }

    pub fn runtime(&self) -> Runtime {
        self.rt
    }

    /// Host pid of its init process; panics if it does not run.
    pub fn pid(&self) -> i32 {
        self.rt.pid(self.host, &self.name).unwrap_or_else(|| {
            panic!(
                "{} container {} should be running, but the runtime reports no pid",
                self.rt.name(),
                self.name
            )
        })
    }

    /// `/proc/PID/ns/net` of its init process.
    pub fn netns_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.pid()))
    }

    /// Inode of its network namespace.
    pub fn netns_inode(&self) -> u64 {
        sys::ns_inode(&self.netns_path()).expect("network namespace inode of a running container")
    }

    /// Runs `argv` inside the container (runtime exec).
    pub fn exec(&self, argv: &[&str]) -> Output {
        self.rt.exec(self.host, &self.name, argv)
    }

    /// What the kernel shows in its network namespace: `argv` (a JSON
    /// printing command such as `ip -j addr`) run by the host's tools
    /// through `nsenter --net=/proc/PID/ns/net`, parsed.
    pub fn kernel_json(&self, argv: &[&str]) -> Value {
        ns_json(&self.netns_path(), argv)
    }

    /// Names of the links in its namespace (kernel view).
    pub fn link_names(&self) -> Vec<String> {
        link_names(&self.kernel_json(&["ip", "-j", "link", "show"]))
    }

    /// The global IPv4 address of `ifname` (kernel view).
    pub fn ipv4(&self, ifname: &str) -> Option<Ipv4Addr> {
        ipv4_of(&self.kernel_json(&["ip", "-j", "addr", "show"]), ifname)
    }

    /// Kills and deletes it now; returns the runtime's output.
    pub fn stop(mut self) -> Output {
        self.deleted = true;
        self.rt.kill_and_delete(self.host, &self.name)
    }
}

impl Drop for E2eContainer<'_> {
    fn drop(&mut self) {
        if self.deleted {
            return;
        }
        let out = self.rt.kill_and_delete(self.host, &self.name);
        if !out.status.success() && self.rt.state(self.host, &self.name).is_some() {
            eprintln!(
                "wirehook-tests: deleting {} container {}\n{}",
                self.rt.name(),
                self.name,
                out.report()
            );
        }
    }
}

/// Runs `argv` in the network namespace at `netns` (`nsenter --net=`),
/// expects success and JSON on stdout.
pub fn ns_json(netns: &Path, argv: &[&str]) -> Value {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net={}", netns.display()))
        .arg("--")
        .args(argv);
    let out = cmd::run(&mut c, None, DEFAULT_TIMEOUT).expect_success(&format!(
        "{} in {}",
        argv.join(" "),
        netns.display()
    ));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "`{}` printed no JSON: {e}\n{}",
            argv.join(" "),
            out.report()
        )
    })
}

/// `ifname`s of an `ip -j link` listing, in order.
pub fn link_names(links: &Value) -> Vec<String> {
    links
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|l| l["ifname"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The first global IPv4 address of `ifname` in an `ip -j addr` listing.
pub fn ipv4_of(addrs: &Value, ifname: &str) -> Option<Ipv4Addr> {
    addrs.as_array()?.iter().find(|l| l["ifname"] == ifname)?["addr_info"]
        .as_array()?
        .iter()
        .filter(|a| a["family"] == "inet" && a["scope"] == "global")
        .find_map(|a| a["local"].as_str()?.parse().ok())
}

/// Polls `f` every 50 ms until it returns true or `timeout` passed;
/// returns its last answer.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Links of the host namespace whose names start with `whv` (wirehook's
/// host-side veth ends).
pub fn host_veths(host: &TestHost) -> Vec<String> {
    link_names(&host.links_json())
        .into_iter()
        .filter(|n| n.starts_with("whv"))
        .collect()
}

/// Elements of map `map` of the host's `inet wirehook` table (empty when
/// the table does not exist; a table without that map is reported as an
/// error string).
pub fn nft_map_elements(host: &TestHost, map: &str) -> Result<Vec<Value>, String> {
    let tables = host
        .exec(&["nft", "list", "tables"])
        .expect_success("nft list tables");
    if !tables
        .stdout_str()
        .lines()
        .any(|l| l.trim() == "table inet wirehook")
    {
        return Ok(Vec::new());
    }
    let out = host.exec(&["nft", "-j", "list", "map", "inet", "wirehook", map]);
    if !out.status.success() {
        return Err(format!(
            "table inet wirehook exists but `nft -j list map inet wirehook {map}` failed:\n{}",
            out.report()
        ));
    }
    let v: Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("nft printed no JSON: {e}"))?;
    Ok(v["nftables"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|o| o.get("map"))
                .flat_map(|m| m["elem"].as_array().cloned().unwrap_or_default())
                .collect()
        })
        .unwrap_or_default())
}

fn files_below(dir: &Path, out: &mut Vec<PathBuf>, keep: &dyn Fn(&Path) -> bool) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        // symlink_metadata: a bind-mounted namespace file is a file here.
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => files_below(&p, out, keep),
            Ok(_) if keep(&p) => out.push(p),
            _ => {}
        }
    }
}

/// Everything of wirehook's per-container state still on `host`, one
/// description each: `whv*` veths, elements of `pub4_any`, files in
/// `run/wirehook/{containers,names,netns,sharers}` and non-dot files in
/// `run/wirehook/leases/*/`, nsfs mounts below the root.
pub fn leftovers(host: &TestHost) -> Vec<String> {
    let mut left = Vec::new();
    for v in host_veths(host) {
        left.push(format!("veth {v} in the host namespace"));
    }
    match nft_map_elements(host, "pub4_any") {
        Ok(el) => {
            for e in el {
                left.push(format!("element of map inet wirehook pub4_any: {e}"));
            }
        }
        Err(e) => left.push(e),
    }
    let run = host.root().join("run/wirehook");
    let mut files = Vec::new();
    for d in ["containers", "names", "netns", "sharers"] {
        files_below(&run.join(d), &mut files, &|_| true);
    }
    files_below(&run.join("leases"), &mut files, &|p| {
        !p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'))
    });
    for f in files {
        left.push(format!("file {}", f.display()));
    }
    for m in sys::mounts_under(host.root()) {
        if m.fstype == "nsfs" {
            left.push(format!("nsfs mount {}", m.mount_point.display()));
        }
    }
    left
}

/// Waits up to 5 s (the kernel removes a dead namespace's veths
/// asynchronously; podman's poststop may come from its cleanup process a
/// moment after `podman rm` returned) until [`leftovers`] is empty, else
/// panics listing what is left. `after` says what happened before.
#[track_caller]
pub fn assert_nothing_left(host: &TestHost, after: &str) {
    let mut left = Vec::new();
    let clean = eventually(Duration::from_secs(5), || {
        left = leftovers(host);
        left.is_empty()
    });
    if !clean {
        let log = std::fs::read_to_string(host.root().join("run/wirehook/wirehook.log"))
            .unwrap_or_default();
        let tail: Vec<&str> = log
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        panic!(
            "expected nothing of wirehook left after {after}, but found:\n  {}\n\
             wirehook.log (last lines):\n{}",
            left.join("\n  "),
            tail.join("\n")
        );
    }
}

/// Containers `rt` still knows in `host` (runc/crun `list -q`, podman
/// `ps -a`).
pub fn runtime_containers(rt: Runtime, host: &TestHost) -> Vec<String> {
    if !rt.state_dir(host).exists() {
        return Vec::new();
    }
    let out = match rt {
        Runtime::Runc | Runtime::Crun => rt.run(host, &["list", "-q"]),
        Runtime::Podman => rt.run(host, &["ps", "-a", "--format", "{{.Names}}"]),
    };
    out.expect_success(&format!("{} list", rt.name()))
        .stdout_str()
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// An HTTP/1.0 GET of `/` from inside `netns` to `addr`, retried for up
/// to `timeout` (the server may still be starting); the whole response.
pub fn http_get(
    netns: &Path,
    addr: std::net::SocketAddr,
    timeout: Duration,
) -> Result<String, String> {
    let end = Instant::now() + timeout;
    loop {
        let r = crate::uplink::tcp_request(
            netns,
            addr,
            "GET / HTTP/1.0\r\n\r\n",
            Duration::from_secs(2),
        );
        match r {
            Ok(body) if !body.is_empty() => return Ok(body),
            other => {
                if Instant::now() >= end {
                    return Err(format!(
                        "GET http://{addr}/ from {}: {other:?}",
                        netns.display()
                    ));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
