//! [`Runtime`]: runc, crun and podman, run for real inside a [`TestHost`].
//!
//! Every runtime keeps its state under the test's root
//! (`ROOT/runtimes/<name>/`) and runs inside the host namespace through
//! `nsenter --net=/run/netns/HOST` (not `ip netns exec`, which remounts /sys
//! and hides the cgroup mounts runc needs). The exact invocations, which
//! work on Debian 12 with runc 1.1.5, crun 1.8.1 and podman 4.3.1 on a
//! hybrid cgroup machine:
//!
//! * runc: `runc --root ROOT/runtimes/runc run -d --bundle DIR ID` —
//!   `terminal: false` needs no console socket. Hooks come from config.json.
//! * crun: crun 1.8 refuses hybrid cgroups ("cgroups in hybrid mode not
//!   supported, drop all controllers from cgroupv2"), so every crun call runs
//!   in a mount namespace of its own without the cgroup2 mount:
//!   `unshare --mount --propagation unchanged -- sh -c 'mount --make-rprivate
//!   /sys/fs/cgroup; umount /sys/fs/cgroup/unified; exec "$@"' crun crun
//!   --root ROOT/runtimes/crun run -d --bundle DIR ID`. `--propagation
//!   unchanged` plus the test root being a *shared* mount lets bind mounts that
//!   a hook makes below the root (wirehook's namespace handles) appear in the
//!   test's mount namespace, as they would with crun run normally;
//!   `--make-rprivate` keeps the unmount from reaching the real host.
//! * podman: `CONTAINERS_CONF=ROOT/runtimes/podman/containers.conf
//!   CONTAINERS_STORAGE_CONF=.../storage.conf podman --root .../storage
//!   --runroot ROOT/pr --storage-driver vfs --cgroup-manager cgroupfs
//!   --events-backend file --tmpdir .../tmp --network-config-dir .../networks
//!   --runtime runc --hooks-dir .../hooks.d run -d --name ID --network none
//!   --ulimit nofile=1024:1024 --ulimit nproc=4096:4096 --annotation K=V
//!   --rootfs ROOTFS ARGS...`. All flags must come before `--rootfs`: its
//!   path is the first positional argument, and everything after it is the
//!   command. The containers.conf sets `lock_type = "file"` (the default shm
//!   lock segment is machine-wide, and a fresh podman "refresh" frees every
//!   lock in it — other tests' too) and `log_driver = "k8s-file"`; podman
//!   forwards `CONTAINERS_CONF` to conmon, so `podman container cleanup`
//!   (which runs poststop hooks when a container exits by itself) sees the
//!   same configuration. The `--network` flag follows the bundle's network
//!   entry: fresh → `none`, absent → `host`, a path → `ns:PATH`. Podman
//!   refuses a runroot longer than 50 characters, hence the short `ROOT/pr`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::Value;

use crate::bundle::{write_hooks_d, Bundle};
use crate::cmd::{self, OutputExt, DEFAULT_TIMEOUT};
use crate::container::NetNsEntry;
use crate::host::{TestHost, ROOT_ENV};

/// Deadline for starting a container (hooks included).
pub const START_TIMEOUT: Duration = Duration::from_secs(120);

/// The script crun runs under: a mount namespace without cgroup2.
pub const CRUN_HYBRID_WRAPPER: &str = "if mountpoint -q /sys/fs/cgroup/unified; then \
     mount --make-rprivate /sys/fs/cgroup && umount /sys/fs/cgroup/unified || exit 125; fi; \
     exec \"$@\"";

/// `PATH` given to hooks the harness installs.
pub const HOOK_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

static HOOK_FILE_SEQ: AtomicU32 = AtomicU32::new(0);

/// An OCI runtime. See the [module docs](self) for the invocations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Runtime {
    Runc,
    Crun,
    Podman,
}

impl Runtime {
    /// runc, crun, podman.
    pub const ALL: [Runtime; 3] = [Runtime::Runc, Runtime::Crun, Runtime::Podman];

    /// `runc`, `crun` or `podman`.
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Runc => "runc",
            Runtime::Crun => "crun",
            Runtime::Podman => "podman",
        }
    }

    /// This runtime's state directory in `host`: `ROOT/runtimes/<name>`.
    pub fn state_dir(self, host: &TestHost) -> PathBuf {
        host.root().join("runtimes").join(self.name())
    }

    /// Podman's hooks.d directory in `host` (`--hooks-dir`).
    pub fn podman_hooks_dir(host: &TestHost) -> PathBuf {
        Runtime::Podman.state_dir(host).join("hooks.d")
    }

    /// Podman's `--runroot`: `ROOT/pr`, short because podman refuses a
    /// runroot longer than 50 characters.
    pub fn podman_runroot(host: &TestHost) -> PathBuf {
        host.root().join("pr")
    }

    fn ensure_podman_config(host: &TestHost) {
        let sd = Runtime::Podman.state_dir(host);
        let conf = sd.join("containers.conf");
        if conf.exists() {
            return;
        }
        let runroot = Self::podman_runroot(host);
        assert!(
            runroot.as_os_str().len() <= 50,
            "podman runroot {} is longer than 50 characters: use a shorter host tag",
            runroot.display()
        );
        for d in ["storage", "tmp", "hooks.d", "networks"] {
            std::fs::create_dir_all(sd.join(d))
                .unwrap_or_else(|e| panic!("create {}: {e}", sd.join(d).display()));
        }
        std::fs::create_dir_all(&runroot).unwrap();
        let s = sd.display();
        let r = runroot.display();
        std::fs::write(
            sd.join("storage.conf"),
            format!(
                "[storage]\ndriver = \"vfs\"\ngraphroot = \"{s}/storage\"\nrunroot = \"{r}\"\n"
            ),
        )
        .unwrap();
        let tmp = sd.join("containers.conf.tmp");
        std::fs::write(
            &tmp,
            format!(
                "[containers]\nlog_driver = \"k8s-file\"\n\n\
                 [engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n\
                 events_logfile_path = \"{s}/events.log\"\nlock_type = \"file\"\n\
                 tmp_dir = \"{s}/tmp\"\nruntime = \"runc\"\nhooks_dir = [\"{s}/hooks.d\"]\n\n\
                 [network]\nnetwork_config_dir = \"{s}/networks\"\n"
            ),
        )
        .unwrap();
        std::fs::rename(&tmp, &conf).unwrap();
    }

    /// A [`Command`] running this runtime with `args` inside the host
    /// namespace, with its state under the host's root (working directory
    /// `/`).
    pub fn command(self, host: &TestHost, args: &[&str]) -> Command {
        let sd = self.state_dir(host);
        let sds = sd.to_str().expect("utf-8 root").to_string();
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", host.netns_path().display()))
            .arg("--")
            .current_dir("/");
        match self {
            Runtime::Runc => {
                c.args(["runc", "--root", &sds]);
            }
            Runtime::Crun => {
                c.args(["unshare", "--mount", "--propagation", "unchanged", "--"])
                    .args(["sh", "-c", CRUN_HYBRID_WRAPPER, "crun"])
                    .args(["crun", "--root", &sds]);
            }
            Runtime::Podman => {
                Self::ensure_podman_config(host);
                c.env("CONTAINERS_CONF", sd.join("containers.conf"))
                    .env("CONTAINERS_STORAGE_CONF", sd.join("storage.conf"))
                    .arg("podman")
                    .args(["--root", &format!("{sds}/storage")])
                    .arg("--runroot")
                    .arg(Self::podman_runroot(host))
                    .args(["--storage-driver", "vfs"])
                    .args(["--cgroup-manager", "cgroupfs"])
                    .args(["--events-backend", "file"])
                    .args(["--tmpdir", &format!("{sds}/tmp")])
                    .args(["--network-config-dir", &format!("{sds}/networks")])
                    .args(["--runtime", "runc"])
                    .args(["--hooks-dir", &format!("{sds}/hooks.d")]);
            }
        }
        c.args(args);
        c
    }

    /// Runs the runtime with `args` (60 s deadline).
    pub fn run(self, host: &TestHost, args: &[&str]) -> Output {
        cmd::run(&mut self.command(host, args), None, DEFAULT_TIMEOUT)
    }

    /// Starts the bundle as container `id` in the background and returns the
    /// runtime's output (the caller checks it: a failing createRuntime hook
    /// makes it fail). The runtime's stdout/stderr go to
    /// `ROOT/logs/<runtime>-<id>.{out,err}` (the container inherits them).
    /// For podman, `id` is the container's `--name`, and hooks come from
    /// [`podman_hooks_dir`](Self::podman_hooks_dir), not from config.json.
    pub fn run_detached(self, host: &TestHost, bundle: &Bundle, id: &str) -> Output {
        let log = host
            .root()
            .join("logs")
            .join(format!("{}-{id}", self.name()));
        let dir = bundle
            .dir()
            .to_str()
            .expect("utf-8 bundle path")
            .to_string();
        let mut c = match self {
            Runtime::Runc | Runtime::Crun => {
                self.command(host, &["run", "-d", "--bundle", &dir, id])
            }
            Runtime::Podman => {
                let network = match bundle.netns_entry() {
                    NetNsEntry::Fresh => "none".to_string(),
                    NetNsEntry::Absent => "host".to_string(),
                    NetNsEntry::Path(p) => format!("ns:{}", p.display()),
                };
                let mut args: Vec<String> = vec![
                    "run".into(),
                    "-d".into(),
                    "--name".into(),
                    id.into(),
                    "--network".into(),
                    network,
                    "--ulimit".into(),
                    "nofile=1024:1024".into(),
                    "--ulimit".into(),
                    "nproc=4096:4096".into(),
                ];
                for (k, v) in bundle.annotations() {
                    args.push("--annotation".into());
                    args.push(crate::runtime::podman_annotation(&k, &v));
                }
                args.push("--rootfs".into());
                args.push(bundle.rootfs().to_str().expect("utf-8").into());
                args.extend(bundle.args());
                let refs: Vec<&str> = args.iter().map(String::as_str).collect();
                self.command(host, &refs)
            }
        };
        cmd::run_to_files(&mut c, &log, START_TIMEOUT)
    }

    /// [`run_detached`](Self::run_detached), panicking unless it worked;
    /// returns a guard that deletes the container on drop.
    pub fn start<'h>(self, host: &'h TestHost, bundle: &Bundle, id: &str) -> RuntimeContainer<'h> {
        let out = self.run_detached(host, bundle, id);
        // Guard first, so a failed start is still cleaned up.
        let guard = RuntimeContainer {
            host,
            runtime: self,
            name: id.to_string(),
            deleted: false,
        };
        out.expect_success(&format!("{} run -d {id}", self.name()));
        guard
    }

    /// Runs `argv` inside running container `id` (`runc exec`, `podman exec`).
    pub fn exec(self, host: &TestHost, id: &str, argv: &[&str]) -> Output {
        let mut args = vec!["exec", id];
        args.extend_from_slice(argv);
        self.run(host, &args)
    }

    /// Kills container `id` (SIGKILL) and deletes it, which runs its
    /// poststop hooks (`runc delete -f`, `crun delete -f`,
    /// `podman rm -f -t 0`).
    pub fn kill_and_delete(self, host: &TestHost, id: &str) -> Output {
        match self {
            Runtime::Runc | Runtime::Crun => self.run(host, &["delete", "-f", id]),
            Runtime::Podman => self.run(host, &["rm", "-f", "-t", "0", id]),
        }
    }

    /// The runtime's state of `id` (`runc state`, or the first element of
    /// `podman inspect`), or `None` if it does not know the container.
    pub fn state(self, host: &TestHost, id: &str) -> Option<Value> {
        let out = match self {
            Runtime::Runc | Runtime::Crun => self.run(host, &["state", id]),
            Runtime::Podman => self.run(host, &["inspect", "--type", "container", id]),
        };
        if !out.status.success() {
            return None;
        }
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        match self {
            Runtime::Podman => v.as_array()?.first().cloned(),
            _ => Some(v),
        }
    }

    /// Host pid of the container's init process, if it runs.
    pub fn pid(self, host: &TestHost, id: &str) -> Option<i32> {
        let st = self.state(host, id)?;
        let pid = match self {
            Runtime::Podman => st.pointer("/State/Pid")?.as_i64()?,
            _ => st.get("pid")?.as_i64()?,
        };
        (pid > 0).then_some(pid as i32)
    }

    /// The id hooks see in the state: `id` itself for runc and crun,
    /// podman's 64-hex id for the podman container named `id`.
    pub fn container_id(self, host: &TestHost, id: &str) -> String {
        match self {
            Runtime::Podman => self
                .state(host, id)
                .and_then(|s| s.get("Id")?.as_str().map(String::from))
                .unwrap_or_else(|| panic!("podman does not know container {id}")),
            _ => id.to_string(),
        }
    }

    /// Installs a hook for `stage` the way this runtime takes hooks:
    /// [`Bundle::add_hook`] for runc and crun; for podman a hooks.d file
    /// (one per call and stage, applied to every container of this host that
    /// carries `io.wirehook.network`).
    #[allow(clippy::too_many_arguments)]
    pub fn add_hook(
        self,
        host: &TestHost,
        bundle: &Bundle,
        stage: &str,
        path: &Path,
        args: &[&str],
        env: &[&str],
        timeout: Option<u32>,
    ) {
        match self {
            Runtime::Runc | Runtime::Crun => bundle.add_hook(stage, path, args, env, timeout),
            Runtime::Podman => {
                Self::ensure_podman_config(host);
                let stem = path.file_name().and_then(|n| n.to_str()).unwrap_or("hook");
                let n = HOOK_FILE_SEQ.fetch_add(1, Ordering::Relaxed);
                write_hooks_d(
                    &Self::podman_hooks_dir(host),
                    &format!("{n:04}-{stem}-{stage}.json"),
                    path,
                    args,
                    env,
                    timeout,
                    &[stage],
                );
            }
        }
    }

    /// Installs wirehook itself (`wirehook hook createRuntime` and
    /// `wirehook hook poststop`, `WIREHOOK_ROOT` set to the host's root,
    /// 30 s timeout) for this runtime.
    pub fn add_wirehook_hooks(self, host: &TestHost, bundle: &Bundle) {
        let bin = TestHost::wirehook_bin();
        let root_env = format!("{ROOT_ENV}={}", host.root().display());
        for stage in ["createRuntime", "poststop"] {
            self.add_hook(
                host,
                bundle,
                stage,
                &bin,
                &["wirehook", "hook", stage],
                &[HOOK_PATH, &root_env],
                Some(30),
            );
        }
    }

    /// Deletes every container this runtime has under `host` (clean-up; never
    /// panics).
    pub(crate) fn delete_all(self, host: &TestHost) {
        let sd = self.state_dir(host);
        if !sd.exists() {
            return;
        }
        let run = |args: &[&str]| -> Option<Output> {
            match cmd::try_run(&mut self.command(host, args), None, DEFAULT_TIMEOUT) {
                Ok(o) => Some(o),
                Err(e) => {
                    eprintln!(
                        "wirehook-tests: cleanup: {} {}: {e}",
                        self.name(),
                        args.join(" ")
                    );
                    None
                }
            }
        };
        match self {
            Runtime::Runc | Runtime::Crun => {
                let Some(list) = run(&["list", "-q"]) else {
                    return;
                };
                for id in list.stdout_str().split_whitespace() {
                    if let Some(o) = run(&["delete", "-f", id]) {
                        if !o.status.success() {
                            eprintln!(
                                "wirehook-tests: cleanup: {} delete -f {id}\n{}",
                                self.name(),
                                o.report()
                            );
                        }
                    }
                }
            }
            Runtime::Podman => {
                if let Some(o) = run(&["rm", "-a", "-f", "-t", "0"]) {
                    if !o.status.success() {
                        eprintln!("wirehook-tests: cleanup: podman rm -af\n{}", o.report());
                    }
                }
            }
        }
    }
}

/// podman's `--annotation` value for `k=v`. podman reads the flag as a
/// comma-separated list (CSV), so a value with a comma (`aliases=db,mysql`)
/// must be quoted as one CSV field, the way a user writes
/// `--annotation '"io.wirehook.aliases=db,mysql"'`.
pub fn podman_annotation(k: &str, v: &str) -> String {
    let kv = format!("{k}={v}");
    if kv.contains(',') || kv.contains('"') {
        format!("\"{}\"", kv.replace('"', "\"\""))
    } else {
        kv
    }
}

/// A container started by [`Runtime::start`]; killed and deleted on drop
/// (running its poststop hooks).
pub struct RuntimeContainer<'h> {
    host: &'h TestHost,
    runtime: Runtime,
    name: String,
    deleted: bool,
}

impl<'h> RuntimeContainer<'h> {
    /// The id/name it was started with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The id the hooks see (podman's hex id for podman).
    pub fn id(&self) -> String {
        self.runtime.container_id(self.host, &self.name)
    }

    /// Its runtime.
    pub fn runtime(&self) -> Runtime {
        self.runtime
    }

    /// Host pid of its init process (panics if it is not running).
    pub fn pid(&self) -> i32 {
        self.runtime.pid(self.host, &self.name).unwrap_or_else(|| {
            panic!(
                "{} container {} is not running",
                self.runtime.name(),
                self.name
            )
        })
    }

    /// `/proc/PID/ns/net` of its init process.
    pub fn netns_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.pid()))
    }

    /// Runs `argv` inside the container (runtime exec).
    pub fn exec(&self, argv: &[&str]) -> Output {
        self.runtime.exec(self.host, &self.name, argv)
    }

    /// Runs `sh -c script` inside the container.
    pub fn sh(&self, script: &str) -> Output {
        self.exec(&["sh", "-c", script])
    }

    /// The runtime's state document.
    pub fn state(&self) -> Option<Value> {
        self.runtime.state(self.host, &self.name)
    }

    /// Kills and deletes it now; returns the runtime's output.
    pub fn stop(mut self) -> Output {
        self.deleted = true;
        self.runtime.kill_and_delete(self.host, &self.name)
    }
}

impl Drop for RuntimeContainer<'_> {
    fn drop(&mut self) {
        if self.deleted {
            return;
        }
        match cmd::try_run(
            &mut self.runtime.command(
                self.host,
                &match self.runtime {
                    Runtime::Podman => vec!["rm", "-f", "-t", "0", &self.name],
                    _ => vec!["delete", "-f", &self.name],
                },
            ),
            None,
            DEFAULT_TIMEOUT,
        ) {
            Ok(o) if !o.status.success() => eprintln!(
                "wirehook-tests: deleting {} container {}\n{}",
                self.runtime.name(),
                self.name,
                o.report()
            ),
            Ok(_) => {}
            Err(e) => eprintln!("wirehook-tests: deleting {}: {e}", self.name),
        }
    }
}
