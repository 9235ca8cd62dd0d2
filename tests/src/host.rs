//! [`TestHost`]: a throw-away "machine" for one test — a named network
//! namespace in which the hook and the runtimes run, plus a private
//! `WIREHOOK_ROOT` directory on its own tmpfs.
//!
//! Dropping it (also while a panic unwinds) removes every trace: containers
//! of the runtimes that used its state directories, every process left in its
//! namespace or in the namespaces wirehook bind-mounted below its root, every
//! mount below its root, the namespace itself (and with it its bridges,
//! veths and nftables tables), and the directory.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;

use crate::cmd::{self, OutputExt, DEFAULT_TIMEOUT};
use crate::runtime::Runtime;
use crate::sys;

/// Parent of every test host's root directory.
pub const TESTS_DIR: &str = "/run/wirehook-tests";

/// Set `WIREHOOK_TESTS_KEEP=1` to leave a failed test's host behind for
/// inspection (its name and root are printed); nothing is cleaned then.
pub const KEEP_ENV: &str = "WIREHOOK_TESTS_KEEP";

/// The variable that moves wirehook's `/etc/wirehook` and `/run/wirehook`
/// under one directory (see `wirehook_shared::paths`).
pub const ROOT_ENV: &str = "WIREHOOK_ROOT";

/// Overrides where [`TestHost::wirehook`] finds the binary.
pub const BIN_ENV: &str = "WIREHOOK_BIN";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A fresh, unique name: `wh-<tag>-<pid>-<n>`, `tag` cut to letters and
/// digits (at most 8).
pub fn unique_name(tag: &str) -> String {
    let tag: String = tag
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(8)
        .collect::<String>()
        .to_ascii_lowercase();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("wh-{tag}-{}-{n}", std::process::id())
}

/// Panics unless we are root: every test here creates namespaces.
pub fn require_root() {
    if !nix::unistd::geteuid().is_root() {
        panic!(
            "wirehook-tests need root (network namespaces, mounts, runtimes): \
             run `sudo -E cargo test ...` or as root"
        );
    }
}

/// One test's host. See the [module docs](self).
pub struct TestHost {
    name: String,
    netns_path: PathBuf,
    root: PathBuf,
    inode: u64,
    /// Further named network namespaces (uplink peers) to delete on drop.
    extra_netns: Mutex<Vec<String>>,
    /// Pids of bare containers, killed on drop if still around.
    tracked_pids: Mutex<Vec<i32>>,
}

impl TestHost {
    /// Creates the namespace `wh-<tag>-<pid>-<n>` with `lo` up and the root
    /// directory `/run/wirehook-tests/<name>` (a tmpfs of its own).
    /// Panics with the failing command's output if anything goes wrong.
    pub fn new(tag: &str) -> TestHost {
        require_root();
        let name = unique_name(tag);
        let netns_path = PathBuf::from("/run/netns").join(&name);
        let root = Path::new(TESTS_DIR).join(&name);
        cmd::run(
            Command::new("ip").args(["netns", "add", &name]),
            None,
            DEFAULT_TIMEOUT,
        )
        .expect_success(&format!("ip netns add {name}"));
        // From here on, Drop cleans up whatever the rest leaves half-done.
        let host = TestHost {
            inode: sys::ns_inode(&netns_path).expect("inode of the new namespace"),
            name,
            netns_path,
            root,
            extra_netns: Mutex::new(Vec::new()),
            tracked_pids: Mutex::new(Vec::new()),
        };
        host.exec(&["ip", "link", "set", "lo", "up"])
            .expect_success("ip link set lo up in the test host");
        std::fs::create_dir_all(&host.root)
            .unwrap_or_else(|e| panic!("create {}: {e}", host.root.display()));
        nix::mount::mount(
            Some("wirehook-tests"),
            &host.root,
            Some("tmpfs"),
            nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
            Some("mode=0755,size=2g"),
        )
        .unwrap_or_else(|e| panic!("mount tmpfs on {}: {e}", host.root.display()));
        // Shared, so bind mounts that hooks make below it from another mount
        // namespace (crun's, see `runtime`) show up here too.
        nix::mount::mount(
            None::<&str>,
            &host.root,
            None::<&str>,
            nix::mount::MsFlags::MS_SHARED,
            None::<&str>,
        )
        .unwrap_or_else(|e| panic!("make {} a shared mount: {e}", host.root.display()));
        host
    }

    /// The namespace's name (`ip netns` name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/run/netns/<name>`.
    pub fn netns_path(&self) -> &Path {
        &self.netns_path
    }

    /// Inode of the host's network namespace (what `/proc/PID/ns/net` of a
    /// process in it resolves to).
    pub fn netns_inode(&self) -> u64 {
        self.inode
    }

    /// The `WIREHOOK_ROOT` of this host (tmpfs). Wirehook's trees are
    /// `root/etc/wirehook` and `root/run/wirehook`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// An id unique to this host and `tag` (`<name>-<tag>`), valid as an OCI
    /// container id. Runtimes' cgroup paths are derived from ids, which are
    /// machine-wide, so tests must never use fixed ids.
    pub fn unique_id(&self, tag: &str) -> String {
        let tag: String = tag
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!("{}-{tag}", self.name)
    }

    /// A [`Command`] that runs `argv` inside the host namespace
    /// (`nsenter --net=PATH -- argv...`), working directory `/`. For callers
    /// that need to spawn or set their own environment.
    pub fn command(&self, argv: &[&str]) -> Command {
        assert!(!argv.is_empty(), "empty argv");
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.netns_path.display()))
            .arg("--")
            .args(argv)
            .current_dir("/");
        c
    }

    /// Runs `argv` inside the host namespace (60 s deadline).
    pub fn exec(&self, argv: &[&str]) -> Output {
        cmd::run(&mut self.command(argv), None, DEFAULT_TIMEOUT)
    }

    /// `wiretop --once --json` inside the host namespace, on this host's
    /// root (the `wiretop` built beside `wirehook`): its snapshot.
    pub fn wiretop_json(&self) -> Value {
        let wiretop = Self::wirehook_bin().with_file_name("wiretop");
        let root = self.root().to_str().expect("UTF-8 root").to_string();
        let out = self.exec(&[
            wiretop.to_str().expect("UTF-8 path"),
            "--root",
            &root,
            "--once",
            "--json",
        ]);
        serde_json::from_slice(&out.expect_success("wiretop --once --json").stdout)
            .expect("wiretop prints JSON")
    }

    /// Runs `sh -c script` inside the host namespace.
    pub fn sh(&self, script: &str) -> Output {
        self.exec(&["sh", "-c", script])
    }

    /// Where the `wirehook` binary is: `$WIREHOOK_BIN`, else `wirehook` in
    /// the target directory of the running test (`target/<profile>/`, the
    /// parent of the test executable's `deps/`). Panics if it is missing.
    pub fn wirehook_bin() -> PathBuf {
        if let Some(p) = std::env::var_os(BIN_ENV).filter(|p| !p.is_empty()) {
            let p = PathBuf::from(p);
            assert!(p.exists(), "{BIN_ENV}={} does not exist", p.display());
            return p;
        }
        let exe = std::env::current_exe().expect("current_exe");
        let dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test executable lives in target/<profile>/deps");
        let bin = dir.join("wirehook");
        if !bin.exists() {
            panic!(
                "the wirehook binary is missing at {}: build it first: cargo build --workspace",
                bin.display()
            );
        }
        bin
    }

    /// Runs `wirehook args...` inside the host namespace with
    /// `WIREHOOK_ROOT=root()`, working directory `/`, `stdin` fed if given.
    pub fn wirehook(&self, args: &[&str], stdin: Option<&str>) -> Output {
        self.run_bin_as_hook(&Self::wirehook_bin(), args, stdin, &[])
    }

    /// Like [`wirehook`](Self::wirehook) with extra environment variables.
    pub fn wirehook_env(&self, args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Output {
        self.run_bin_as_hook(&Self::wirehook_bin(), args, stdin, env)
    }

    /// `wirehook hook STAGE` with the state document on stdin, as a runtime
    /// would call it.
    pub fn wirehook_hook(&self, stage: &str, state_json: &str) -> Output {
        self.wirehook(&["hook", stage], Some(state_json))
    }

    /// Runs any program the way [`wirehook`](Self::wirehook) runs wirehook.
    pub fn run_bin_as_hook(
        &self,
        bin: &Path,
        args: &[&str],
        stdin: Option<&str>,
        env: &[(&str, &str)],
    ) -> Output {
        let bin = bin.to_str().expect("utf-8 binary path");
        let mut argv = vec![bin];
        argv.extend_from_slice(args);
        let mut c = self.command(&argv);
        c.env(ROOT_ENV, &self.root);
        for (k, v) in env {
            c.env(k, v);
        }
        cmd::run(&mut c, stdin.map(str::as_bytes), DEFAULT_TIMEOUT)
    }

    /// Sets a sysctl inside the host namespace (`sysctl -qw KEY=VALUE`; only
    /// the `net.*` ones are per namespace).
    pub fn sysctl(&self, key: &str, value: &str) {
        self.exec(&["sysctl", "-qw", &format!("{key}={value}")])
            .expect_success(&format!("sysctl {key}={value}"));
    }

    /// `ip -j -d link show` in the host namespace, parsed.
    pub fn links_json(&self) -> Value {
        self.json(&["ip", "-j", "-d", "link", "show"])
    }

    /// The link called `ifname` from [`links_json`](Self::links_json).
    pub fn link(&self, ifname: &str) -> Option<Value> {
        find_link(&self.links_json(), ifname)
    }

    /// `ip -j addr show` in the host namespace, parsed.
    pub fn addrs_json(&self) -> Value {
        self.json(&["ip", "-j", "addr", "show"])
    }

    /// `ip -j route show table all` in the host namespace, parsed.
    pub fn routes_json(&self) -> Value {
        self.json(&["ip", "-j", "route", "show", "table", "all"])
    }

    /// `nft -j list ruleset` in the host namespace, parsed.
    pub fn nft_json(&self) -> Value {
        self.json(&["nft", "-j", "list", "ruleset"])
    }

    /// Runs `argv` in the host namespace, expects success and JSON on stdout.
    pub fn json(&self, argv: &[&str]) -> Value {
        let out = self.exec(argv).expect_success(&argv.join(" "));
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "`{}` printed no JSON: {e}\n{}",
                argv.join(" "),
                out.report()
            )
        })
    }

    /// Remembers a named namespace (deleted on drop if still there).
    pub(crate) fn track_netns(&self, name: &str) {
        self.extra_netns.lock().unwrap().push(name.to_string());
    }

    pub(crate) fn untrack_netns(&self, name: &str) {
        self.extra_netns.lock().unwrap().retain(|n| n != name);
    }

    /// Remembers a process to kill on drop.
    pub(crate) fn track_pid(&self, pid: i32) {
        self.tracked_pids.lock().unwrap().push(pid);
    }

    pub(crate) fn untrack_pid(&self, pid: i32) {
        self.tracked_pids.lock().unwrap().retain(|p| *p != pid);
    }

    /// Network namespaces that belong to this host: its own, the tracked
    /// peers', and every namespace bind-mounted below its root (wirehook's
    /// handles on container namespaces).
    fn owned_netns_inodes(&self) -> HashSet<u64> {
        let mut set = HashSet::new();
        set.insert(self.inode);
        for n in self.extra_netns.lock().unwrap().iter() {
            if let Some(i) = sys::ns_inode(&Path::new("/run/netns").join(n)) {
                set.insert(i);
            }
        }
        for m in sys::mounts_under(&self.root) {
            if m.fstype == "nsfs" {
                if let Some(i) = sys::ns_inode(&m.mount_point) {
                    set.insert(i);
                }
            }
        }
        set
    }

    fn cleanup(&mut self) {
        // 1. Containers of the runtimes, through the runtimes, inside the
        //    host namespace, so their poststop hooks still run here.
        for rt in Runtime::ALL {
            rt.delete_all(self);
        }
        // 2. Every process left in our namespaces or rooted in our tree.
        let tracked: Vec<i32> = self.tracked_pids.lock().unwrap().clone();
        for p in &tracked {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*p),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let inodes = self.owned_netns_inodes();
        sys::kill_all(&inodes, Some(&self.root), Duration::from_secs(10));
        // 3. Mounts below the root (wirehook's namespace bind mounts), then
        //    the root's tmpfs itself.
        sys::unmount_tree(&self.root);
        // 4. The namespaces: deleting them takes their links and tables along.
        let mut names: Vec<String> = self.extra_netns.lock().unwrap().drain(..).collect();
        names.push(self.name.clone());
        for n in names {
            if Path::new("/run/netns").join(&n).exists() {
                let out = cmd::run(
                    Command::new("ip").args(["netns", "del", &n]),
                    None,
                    DEFAULT_TIMEOUT,
                );
                if !out.status.success() {
                    eprintln!("wirehook-tests: ip netns del {n} failed\n{}", out.report());
                }
            }
        }
        // 5. The directory.
        if self.root.exists() {
            if let Err(e) = std::fs::remove_dir_all(&self.root) {
                eprintln!("wirehook-tests: remove {}: {e}", self.root.display());
            }
        }
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        if std::thread::panicking() && std::env::var_os(KEEP_ENV).is_some_and(|v| v == "1") {
            eprintln!(
                "wirehook-tests: {KEEP_ENV}=1: keeping test host {} (netns {}, root {})",
                self.name,
                self.netns_path.display(),
                self.root.display()
            );
            return;
        }
        self.cleanup();
    }
}

/// The entry named `ifname` in `ip -j link` output.
pub fn find_link(links: &Value, ifname: &str) -> Option<Value> {
    links
        .as_array()?
        .iter()
        .find(|l| l.get("ifname").and_then(Value::as_str) == Some(ifname))
        .cloned()
}
