//! A VM with Debian's stock kernel, for tests that need what the host kernel
//! lacks (ipvlan, 802.1Q, dummy on these machines).
//!
//! The VM is `qemu-system-x86_64 -accel tcg -cpu max` (no KVM: unreliable
//! here), booting the kernel of Debian's `linux-image-6.1.0-N-amd64` package
//! (downloaded into the cache by `tests/vm/fetch-kernel.sh`, unpacked, never
//! installed) with a busybox initramfs (`tests/vm/init`, made by
//! `tests/vm/build.sh`). The initramfs loads the virtio and 9p modules and
//! switches to **this host's root file system**, shared read-only over 9p,
//! with fresh tmpfs on `/run`, `/tmp`, `/var/tmp`, `/root`, cgroup2 on
//! `/sys/fs/cgroup`, and the host's `modprobe` pointed at the package's
//! modules (the kernel loads nft expressions and link kinds on demand). So
//! host binaries run unchanged inside it: test binaries, `wirehook`,
//! iproute2, nft, and the runtimes — runc, crun and podman work there with
//! the harness as it is (cgroup v2 only, so crun needs no wrapper). There
//! is no network device; traffic stays inside the VM.
//!
//! Commands reach the VM through a second, writable 9p share (a directory
//! under `/tmp` on the host): [`Vm::run`] writes `jobs/N/cmd` (a `sh`
//! script), the VM's init runs it and leaves `stdout`, `stderr` and `rc`
//! there. The boot takes about 10 s; code runs 5–10x slower than on the
//! host (TCG).
//!
//! ```no_run
//! use wirehook_tests::vm::{self, VmCommand};
//! use wirehook_tests::OutputExt;
//!
//! // Any command:
//! let vm = vm::Vm::boot();
//! vm.run(&VmCommand::sh("ip link add d0 type dummy")).expect_success("dummy in the VM");
//!
//! // A test binary of this workspace (built by cargo first), sharing one
//! // VM per test process:
//! let bins = vm::cargo_test_binaries(&["hook_bridge"]);
//! let cmd = bins.command("hook_bridge", &["--test-threads=2"]);
//! vm::with_shared(|vm| vm.run(&cmd)).expect_success("hook_bridge in the VM");
//!
//! // A test function of the running binary, `#[ignore]`d on the host and
//! // asserting `vm::in_vm()`, e.g. one that starts containers with runc:
//! let cmd = bins.this_test("in_vm_runc_ipvlan_containers");
//! vm::with_shared(|vm| vm.run(&cmd)).expect_success("runc in the VM");
//! ```
//!
//! [`cargo_test_binaries`] runs the binaries from a snapshot copy, so a
//! rebuild on the host while the VM runs (which caches the host's files)
//! cannot hand it a half-replaced binary.
//!
//! From a shell: `sudo tests/vm/run-in-vm.sh COMMAND ARGS...`.
//!
//! Nothing is skipped: [`Vm::boot`] panics, naming the missing piece and the
//! command that provides it, when qemu or the kernel package is missing.
//! qemu dies with the test process (`PR_SET_PDEATHSIG`), and a VM whose
//! command outlives its timeout is killed.
//!
//! Environment: `WIREHOOK_VM_CACHE` (default `/var/cache/wirehook-vm`) is
//! where the kernel package, its unpacked tree and the initramfs live;
//! `WIREHOOK_VM_ECHO=1` copies every command's output to the test's
//! stdout/stderr while it runs (use with `--nocapture`).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use crate::host::{require_root, BIN_ENV};

/// Where the kernel package, its unpacked tree and the initramfs are kept.
pub const CACHE_ENV: &str = "WIREHOOK_VM_CACHE";
/// Set to `1` to echo commands' output live.
pub const ECHO_ENV: &str = "WIREHOOK_VM_ECHO";
/// The cache directory when [`CACHE_ENV`] is not set.
pub const DEFAULT_CACHE: &str = "/var/cache/wirehook-vm";
/// How long a boot may take until the VM is ready for commands (TCG on a
/// loaded 2-core machine is slow; a boot normally takes about 10 s).
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(180);
/// Default deadline of a [`VmCommand`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// Set to `1` for every command run in the VM (see [`in_vm`]).
pub const IN_VM_ENV: &str = "WIREHOOK_TESTS_IN_VM";

/// Whether this process runs inside the test VM (a [`VmCommand`] started
/// it). Tests that only make sense there assert it; tests with tight
/// timing may allow for the VM's slowness (TCG: 5-10x slower than the
/// host, process start-up about 100 ms).
pub fn in_vm() -> bool {
    std::env::var(IN_VM_ENV).is_ok_and(|v| v == "1")
}

const QEMU: &str = "qemu-system-x86_64";

/// `tests/vm/` of this crate: the scripts.
pub fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("vm")
}

/// What the VM boots, from `tests/vm/build.sh --raw`.
#[derive(Debug, Clone)]
pub struct Image {
    /// `vmlinuz` of the unpacked package.
    pub kernel: PathBuf,
    /// The busybox initramfs.
    pub initrd: PathBuf,
    /// The unpacked package (`KROOT/lib/modules/KVER`).
    pub kroot: PathBuf,
    /// Kernel release, e.g. `6.1.0-56-amd64`.
    pub kver: String,
    /// Modules the VM loads before it takes commands.
    pub load: String,
}

/// Prepares (or finds cached) kernel and initramfs, once per process.
/// Panics, saying what is missing and how to get it, when qemu, the kernel
/// package, busybox-static or kmod is missing.
pub fn image() -> &'static Image {
    static IMAGE: OnceLock<Image> = OnceLock::new();
    IMAGE.get_or_init(|| {
        require_root();
        let have_qemu = Command::new(QEMU)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(
            have_qemu,
            "wirehook-tests VM: {QEMU} is missing: install it with \
             `apt-get install qemu-system-x86` (the VM tests run under Debian's stock \
             kernel in qemu; .ci/run installs it)"
        );
        let script = scripts_dir().join("build.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg("--raw")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "wirehook-tests VM: cannot run bash {}: {e}",
                    script.display()
                )
            });
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "wirehook-tests VM: preparing the kernel and initramfs failed ({}):\n{}",
            script.display(),
            stderr.trim_end()
        );
        let vars: HashMap<String, String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let get = |k: &str| {
            vars.get(k)
                .cloned()
                .unwrap_or_else(|| panic!("{} printed no {k}: {stderr}", script.display()))
        };
        Image {
            kernel: get("KERNEL").into(),
            initrd: get("INITRD").into(),
            kroot: get("KROOT").into(),
            kver: get("KVER"),
            load: get("LOAD"),
        }
    })
}

/// Guest size.
#[derive(Debug, Clone)]
pub struct VmConfig {
    /// Memory in MiB (default 2048).
    pub mem_mib: u32,
    /// vCPUs (default 2).
    pub cpus: u32,
}

impl Default for VmConfig {
    fn default() -> Self {
        VmConfig {
            mem_mib: 2048,
            cpus: 2,
        }
    }
}

/// A command to run in the VM: argv, environment, working directory,
/// stdin, deadline. Runs as root with the VM's `PATH`
/// (`/usr/local/sbin:...:/bin`), `HOME=/root`, stdin empty unless given.
#[derive(Debug, Clone)]
pub struct VmCommand {
    argv: Vec<String>,
    env: Vec<(String, String)>,
    cwd: PathBuf,
    stdin: Vec<u8>,
    timeout: Duration,
}

impl VmCommand {
    /// `program` with no arguments, in `/`, [`DEFAULT_TIMEOUT`], with
    /// `WIREHOOK_TESTS_IN_VM=1`; `RUST_BACKTRACE` and `WIREHOOK_TESTS_KEEP`
    /// are passed on when set.
    pub fn new(program: impl AsRef<OsStr>) -> VmCommand {
        let mut c = VmCommand {
            argv: vec![utf8(program.as_ref())],
            env: vec![(IN_VM_ENV.to_string(), "1".to_string())],
            cwd: PathBuf::from("/"),
            stdin: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
        };
        for k in ["RUST_BACKTRACE", crate::host::KEEP_ENV] {
            if let Ok(v) = std::env::var(k) {
                c.env.push((k.to_string(), v));
            }
        }
        c
    }

    /// `/bin/sh -c script`.
    pub fn sh(script: &str) -> VmCommand {
        VmCommand::new("/bin/sh").args(["-c", script])
    }

    /// Adds an argument.
    pub fn arg(mut self, a: impl AsRef<OsStr>) -> VmCommand {
        self.argv.push(utf8(a.as_ref()));
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> VmCommand
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.argv.extend(args.into_iter().map(|a| utf8(a.as_ref())));
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, k: &str, v: impl AsRef<OsStr>) -> VmCommand {
        self.env.push((k.to_string(), utf8(v.as_ref())));
        self
    }

    /// Working directory (a path of the host's root file system, which the
    /// VM sees read-only; not under `/tmp` or `/run`, which are the VM's own).
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> VmCommand {
        self.cwd = dir.as_ref().to_path_buf();
        self
    }

    /// Bytes for stdin.
    pub fn stdin(mut self, data: impl AsRef<[u8]>) -> VmCommand {
        self.stdin = data.as_ref().to_vec();
        self
    }

    /// Deadline, counted from the moment the VM starts the command. On
    /// expiry the whole VM is killed (a shared one is booted anew for the
    /// next command).
    pub fn timeout(mut self, t: Duration) -> VmCommand {
        self.timeout = t;
        self
    }

    /// `program arg ...` for messages.
    pub fn describe(&self) -> String {
        self.argv.join(" ")
    }

    /// The `sh` script the VM runs.
    fn script(&self) -> String {
        let mut s = String::new();
        for (k, v) in &self.env {
            assert!(
                !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "bad environment variable name {k:?}"
            );
            s.push_str(&format!("export {k}={}\n", sh_quote(v)));
        }
        s.push_str(&format!(
            "cd {} || exit 125\nexec",
            sh_quote(&utf8(self.cwd.as_os_str()))
        ));
        for a in &self.argv {
            s.push(' ');
            s.push_str(&sh_quote(a));
        }
        s.push('\n');
        s
    }
}

fn utf8(s: &OsStr) -> String {
    s.to_str()
        .unwrap_or_else(|| panic!("VM command arguments must be UTF-8: {s:?}"))
        .to_string()
}

/// Single-quotes `s` for `sh`.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A running VM. Dropping it kills qemu and removes the share directory.
pub struct Vm {
    share: PathBuf,
    pid: i32,
    exited: Arc<Mutex<Option<ExitStatus>>>,
    keeper: Option<thread::JoinHandle<()>>,
    next_job: AtomicU32,
    boot_time: Duration,
    kver: String,
}

static SHARE_SEQ: AtomicU32 = AtomicU32::new(0);
const SHARE_PREFIX: &str = "wirehook-vm-";

/// Removes share directories of test processes that are gone (their qemu
/// died with them).
fn remove_stale_shares(tmp: &Path) {
    let Ok(rd) = std::fs::read_dir(tmp) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(SHARE_PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        if pid != std::process::id() as i32 && !crate::sys::alive(pid) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

impl Vm {
    /// Boots a VM of the default size and waits until it takes commands.
    /// Panics with what is missing (qemu, the kernel package) and how to get
    /// it, or with the console log when the boot fails.
    pub fn boot() -> Vm {
        Vm::boot_with(&VmConfig::default())
    }

    /// [`boot`](Self::boot) with a given size.
    pub fn boot_with(cfg: &VmConfig) -> Vm {
        let img = image();
        let tmp = std::env::temp_dir();
        remove_stale_shares(&tmp);
        let share = tmp.join(format!(
            "{SHARE_PREFIX}{}-{}",
            std::process::id(),
            SHARE_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&share);
        std::fs::create_dir_all(share.join("jobs"))
            .unwrap_or_else(|e| panic!("create {}: {e}", share.display()));
        // The workspace (and a target directory outside it) again at their
        // own paths: the VM puts tmpfs on /tmp, /run, /var/tmp and /root,
        // which would hide a checkout there.
        let work = work_dirs();
        let mut config = format!(
            "WHVM_KROOT={}\nWHVM_LOAD={}\n",
            sh_quote(&utf8(img.kroot.as_os_str())),
            sh_quote(&img.load)
        );
        for (i, d) in work.iter().enumerate() {
            config.push_str(&format!(
                "WHVM_WORK{i}={}\n",
                sh_quote(&utf8(d.as_os_str()))
            ));
        }
        std::fs::write(share.join("config"), config)
            .unwrap_or_else(|e| panic!("write {}/config: {e}", share.display()));

        let mut cmd = Command::new(QEMU);
        cmd.args(["-accel", "tcg,thread=multi", "-cpu", "max"])
            .args([
                "-smp",
                &cfg.cpus.to_string(),
                "-m",
                &cfg.mem_mib.to_string(),
            ])
            .args([
                "-nodefaults",
                "-no-reboot",
                "-display",
                "none",
                "-nic",
                "none",
            ])
            .arg("-serial")
            .arg(format!("file:{}", share.join("console.log").display()))
            .arg("-kernel")
            .arg(&img.kernel)
            .arg("-initrd")
            .arg(&img.initrd)
            .args(["-append", "console=ttyS0 panic=-1 quiet mitigations=off"])
            .args([
                "-virtfs",
                "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
            ])
            .arg("-virtfs")
            .arg(format!(
                "local,path={},mount_tag=share,security_model=none,multidevs=remap",
                share.display()
            ))
            .stdin(Stdio::null());
        for (i, d) in work.iter().enumerate() {
            cmd.arg("-virtfs").arg(format!(
                "local,path={},mount_tag=work{i},security_model=none,readonly=on,multidevs=remap",
                d.display()
            ));
        }
        let log = |name: &str| {
            std::fs::File::create(share.join(name))
                .unwrap_or_else(|e| panic!("create {}/{name}: {e}", share.display()))
        };
        cmd.stdout(log("qemu.log")).stderr(log("qemu.err"));
        // qemu dies with this process: PR_SET_PDEATHSIG fires when the
        // thread that forked it ends, so a keeper thread forks it and lives
        // until qemu is gone.
        let parent = std::process::id() as i32;
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        let exited = Arc::new(Mutex::new(None));
        let (tx, rx) = std::sync::mpsc::channel();
        let ex = exited.clone();
        let started = Instant::now();
        let keeper = thread::Builder::new()
            .name("wirehook-vm-qemu".into())
            .spawn(move || match cmd.spawn() {
                Ok(mut child) => {
                    let _ = tx.send(Ok(child.id() as i32));
                    let st = child.wait().expect("wait for qemu");
                    *ex.lock().unwrap() = Some(st);
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            })
            .expect("spawn the qemu keeper thread");
        let pid = match rx.recv().expect("qemu keeper thread") {
            Ok(pid) => pid,
            Err(e) => panic!(
                "wirehook-tests VM: cannot start {QEMU}: {e} (apt-get install qemu-system-x86)"
            ),
        };
        let mut vm = Vm {
            share,
            pid,
            exited,
            keeper: Some(keeper),
            next_job: AtomicU32::new(1),
            boot_time: Duration::ZERO,
            kver: img.kver.clone(),
        };
        let deadline = started + BOOT_TIMEOUT;
        loop {
            if let Ok(s) = std::fs::read_to_string(vm.share.join("ready")) {
                if let Some(k) = s.split_whitespace().next() {
                    vm.kver = k.to_string();
                }
                break;
            }
            if !vm.is_running() || vm.share.join("fatal").exists() {
                panic!(
                    "wirehook-tests VM: the VM did not come up ({})\n{}",
                    vm.exit_text(),
                    vm.diagnostics()
                );
            }
            if Instant::now() >= deadline {
                vm.kill();
                panic!(
                    "wirehook-tests VM: not ready after {BOOT_TIMEOUT:?}, killed\n{}",
                    vm.diagnostics()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
        vm.boot_time = started.elapsed();
        vm
    }

    /// From starting qemu to the VM taking commands.
    pub fn boot_time(&self) -> Duration {
        self.boot_time
    }

    /// The VM kernel's release (`uname -r` inside).
    pub fn kernel_release(&self) -> &str {
        &self.kver
    }

    /// Whether qemu still runs.
    pub fn is_running(&self) -> bool {
        self.exited.lock().unwrap().is_none()
    }

    /// The VM's console so far (kernel messages, init's notes).
    pub fn console(&self) -> String {
        std::fs::read_to_string(self.share.join("console.log")).unwrap_or_default()
    }

    fn exit_text(&self) -> String {
        match *self.exited.lock().unwrap() {
            Some(st) => format!("qemu exited: {st}"),
            None => "qemu still running".into(),
        }
    }

    /// Console, qemu's own messages and the init's fatal note, for failures.
    fn diagnostics(&self) -> String {
        let read = |n: &str| std::fs::read_to_string(self.share.join(n)).unwrap_or_default();
        let console = self.console();
        let lines: Vec<&str> = console.lines().collect();
        let tail = lines[lines.len().saturating_sub(60)..].join("\n");
        format!(
            "--- VM console (last 60 lines) ---\n{tail}\n--- qemu stderr ---\n{}\n--- init fatal ---\n{}",
            read("qemu.err").trim_end(),
            read("fatal").trim_end()
        )
    }

    /// Kills qemu (SIGKILL) and waits for it.
    fn kill(&mut self) {
        if self.is_running() {
            // SAFETY: plain kill(2) of our own child, not reaped yet (the
            // keeper thread records the status once it reaped it).
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
            }
        }
        if let Some(k) = self.keeper.take() {
            let _ = k.join();
        }
    }

    /// Kills qemu (SIGKILL) and waits until the keeper thread reaped it, so
    /// [`is_running`](Self::is_running) is false afterwards.
    fn kill_and_wait(&self) {
        if self.is_running() {
            // SAFETY: see `kill`.
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.is_running() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Asks the VM to power off (after running commands finish) and waits up
    /// to `timeout`, then kills it.
    pub fn shutdown(mut self, timeout: Duration) {
        let _ = std::fs::write(self.share.join("poweroff"), "");
        let deadline = Instant::now() + timeout;
        while self.is_running() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(50));
        }
        self.kill();
    }

    /// Runs `cmd` in the VM and returns its exit status and output (as
    /// [`Output`], so [`OutputExt`](crate::OutputExt) works on it). Commands
    /// may run concurrently from several threads. When `cmd`'s deadline
    /// passes, the VM is killed and a failed `Output` ends with a
    /// `[wirehook-tests] timed out` line; when the VM dies, with its console.
    pub fn run(&self, cmd: &VmCommand) -> Output {
        let n = self.next_job.fetch_add(1, Ordering::Relaxed);
        let dir = self.share.join("jobs").join(n.to_string());
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let write = |name: &str, data: &[u8]| {
            std::fs::write(dir.join(name), data)
                .unwrap_or_else(|e| panic!("write {}/{name}: {e}", dir.display()))
        };
        write("cmd", cmd.script().as_bytes());
        write("stdin", &cmd.stdin);
        write("stdout", b"");
        write("stderr", b"");
        write("go", b"");
        let echo = std::env::var(ECHO_ENV).is_ok_and(|v| v == "1");
        let mut echo_out = Echo::new(dir.join("stdout"), false);
        let mut echo_err = Echo::new(dir.join("stderr"), true);
        let mut deadline: Option<Instant> = None;
        let queued = Instant::now();
        let note = loop {
            if dir.join("rc").exists() {
                break None;
            }
            if echo {
                echo_out.pump();
                echo_err.pump();
            }
            if !self.is_running() {
                break Some(format!(
                    "\n[wirehook-tests] the VM died while running {} ({})\n{}\n",
                    cmd.describe(),
                    self.exit_text(),
                    self.diagnostics()
                ));
            }
            // The deadline counts from the moment the VM picked the job up.
            if deadline.is_none() && dir.join("started").exists() {
                deadline = Some(Instant::now() + cmd.timeout);
            }
            let expired = match deadline {
                Some(d) => Instant::now() >= d,
                None => queued.elapsed() >= cmd.timeout + Duration::from_secs(60),
            };
            if expired {
                self.kill_and_wait();
                break Some(format!(
                    "\n[wirehook-tests] timed out after {:?}, killed the VM: {}\n",
                    cmd.timeout,
                    cmd.describe()
                ));
            }
            thread::sleep(Duration::from_millis(50));
        };
        if echo {
            echo_out.pump();
            echo_err.pump();
        }
        let stdout = std::fs::read(dir.join("stdout")).unwrap_or_default();
        let mut stderr = std::fs::read(dir.join("stderr")).unwrap_or_default();
        let status = match note {
            None => {
                let rc = std::fs::read_to_string(dir.join("rc")).unwrap_or_default();
                let code: i32 = rc.trim().parse().unwrap_or(125);
                ExitStatus::from_raw((code & 0xff) << 8)
            }
            Some(note) => {
                stderr.extend_from_slice(note.as_bytes());
                ExitStatus::from_raw(libc::SIGKILL)
            }
        };
        let _ = std::fs::remove_dir_all(&dir);
        Output {
            status,
            stdout,
            stderr,
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.share);
    }
}

/// Copies what a job appends to one of its output files to ours.
struct Echo {
    path: PathBuf,
    pos: u64,
    stderr: bool,
}

impl Echo {
    fn new(path: PathBuf, stderr: bool) -> Echo {
        Echo {
            path,
            pos: 0,
            stderr,
        }
    }

    fn pump(&mut self) {
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return;
        };
        if f.seek(SeekFrom::Start(self.pos)).is_err() {
            return;
        }
        let mut buf = Vec::new();
        if f.read_to_end(&mut buf).is_err() || buf.is_empty() {
            return;
        }
        self.pos += buf.len() as u64;
        let text = String::from_utf8_lossy(&buf);
        // print!/eprint! (not the raw fds) so libtest's capture sees it.
        if self.stderr {
            eprint!("{text}");
            let _ = std::io::stderr().flush();
        } else {
            print!("{text}");
            let _ = std::io::stdout().flush();
        }
    }
}

/// Runs `f` with this process's shared VM, booting it first if there is
/// none yet or the last one died (a timed-out command kills it). Calls are
/// serialised: one command at a time, so each gets the VM's full speed.
/// The VM lives until the process exits (qemu is killed with it).
pub fn with_shared<T>(f: impl FnOnce(&Vm) -> T) -> T {
    register_at_exit();
    let mut guard = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if guard.as_ref().is_some_and(|vm| !vm.is_running()) {
        *guard = None;
    }
    let vm = guard.get_or_insert_with(Vm::boot);
    f(vm)
}

static SHARED: Mutex<Option<Vm>> = Mutex::new(None);

/// Test binaries of this workspace and the `wirehook` binary, built for the
/// profile of the running test and copied to a snapshot directory (see
/// [`cargo_test_binaries`]).
#[derive(Debug, Clone)]
pub struct TestBinaries {
    /// The `wirehook` binary (snapshot).
    pub wirehook: PathBuf,
    /// The `wiretop` binary (snapshot), beside `wirehook`: tests find it
    /// as `TestHost::wirehook_bin().with_file_name("wiretop")`.
    pub wiretop: PathBuf,
    /// Integration test name (`hook_bridge`) → executable (snapshot).
    pub tests: HashMap<String, PathBuf>,
    /// The running test executable (snapshot).
    pub this: PathBuf,
}

impl TestBinaries {
    /// The executable of integration test `name`.
    pub fn test(&self, name: &str) -> &Path {
        self.tests
            .get(name)
            .unwrap_or_else(|| panic!("test binary {name} was not built: {:?}", self.tests))
    }

    /// A [`VmCommand`] that runs integration test `name` with `args` (libtest
    /// flags: `--test-threads=2`, `--ignored`, filters) the way `cargo test`
    /// would: working directory `tests/`, `WIREHOOK_BIN` set, 20 minutes.
    pub fn command(&self, name: &str, args: &[&str]) -> VmCommand {
        VmCommand::new(self.test(name))
            .args(args)
            .env(BIN_ENV, &self.wirehook)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .timeout(Duration::from_secs(1200))
    }

    /// A [`VmCommand`] that runs test function `name` of the *running* test
    /// binary inside the VM (`--exact NAME --include-ignored`): the way to
    /// keep a test that needs the VM kernel in the same file as the
    /// host-side test that starts it. The inner test is `#[ignore]`d (so the
    /// host run leaves it out) and asserts [`in_vm`].
    pub fn this_test(&self, name: &str) -> VmCommand {
        VmCommand::new(&self.this)
            .args(["--exact", name, "--include-ignored", "--test-threads=1"])
            .env(BIN_ENV, &self.wirehook)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .timeout(Duration::from_secs(900))
    }
}

const SNAPSHOT_PREFIX: &str = "bins-";

/// Directories to remove at exit (snapshots).
static AT_EXIT_DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Registers (once) the exit handler that drops the shared VM (kills and
/// reaps qemu, removes the share directory) and removes the snapshot
/// directories. libtest's main returns through exit(3); if the process is
/// killed instead, PR_SET_PDEATHSIG ends qemu, and the next run removes the
/// directories of processes that are gone.
fn register_at_exit() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        extern "C" fn at_exit() {
            if let Ok(mut g) = SHARED.try_lock() {
                g.take();
            }
            if let Ok(mut dirs) = AT_EXIT_DIRS.try_lock() {
                for d in dirs.drain(..) {
                    let _ = std::fs::remove_dir_all(d);
                }
            }
        }
        // SAFETY: registers a plain extern "C" fn.
        unsafe {
            libc::atexit(at_exit);
        }
    });
}

/// Copies `src` to `dir/name`.
fn snapshot(src: &Path, dir: &Path, name: &str) -> PathBuf {
    let dst = dir.join(name);
    std::fs::copy(src, &dst).unwrap_or_else(|e| {
        panic!(
            "copy {} to {}: {e} (disk full?)",
            src.display(),
            dst.display()
        )
    });
    dst
}

/// Builds (if needed) the integration tests `names` of the `wirehook-tests`
/// crate and the `wirehook` and `wiretop` binaries with cargo, for the profile of the running
/// test executable (cargo's `executable` field says where they are), and
/// copies them and the running executable to a snapshot directory,
/// `target/wirehook-vm/bins-PID/` (`wirehook`, `wiretop`, `deps/NAME-HASH`), removed
/// at exit. The VM runs the snapshot: it caches the host's files while it
/// runs, and a binary that cargo replaced under a running VM would be read
/// half old, half new there.
/// The workspace root, and the target directory of the running test when
/// it is outside the workspace (`CARGO_TARGET_DIR`): shared into the VM at
/// the same paths.
fn work_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace")
        .to_path_buf();
    let mut out = vec![root.clone()];
    let target = std::env::current_exe()
        .ok()
        .and_then(|e| Some(e.parent()?.parent()?.parent()?.to_path_buf()));
    if let Some(t) = target.filter(|t| !t.starts_with(&root)) {
        out.push(t);
    }
    out
}

pub fn cargo_test_binaries(names: &[&str]) -> TestBinaries {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe
        .parent()
        .expect("test executable in target/PROFILE/deps");
    let profile = deps.parent().expect("target/PROFILE");
    let profile_dir = profile
        .file_name()
        .and_then(OsStr::to_str)
        .unwrap_or("debug")
        .to_string();
    let profile_args: Vec<String> = match profile_dir.as_str() {
        "debug" => vec![],
        "release" => vec!["--release".into()],
        other => vec!["--profile".into(), other.into()],
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let run = |args: Vec<String>| -> Vec<serde_json::Value> {
        let mut c = Command::new(&cargo);
        c.args(&args)
            .args(&profile_args)
            .arg("--message-format=json-render-diagnostics")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdin(Stdio::null());
        let out = c
            .output()
            .unwrap_or_else(|e| panic!("cannot run cargo ({cargo:?}): {e}"));
        assert!(
            out.status.success(),
            "cargo {} failed:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    let executable = |msgs: &[serde_json::Value], name: &str, kind: &str| -> Option<PathBuf> {
        msgs.iter()
            .filter(|m| m["reason"] == "compiler-artifact")
            .filter(|m| m["target"]["name"] == name)
            .filter(|m| {
                m["target"]["kind"]
                    .as_array()
                    .is_some_and(|k| k.iter().any(|k| k == kind))
            })
            .find_map(|m| m["executable"].as_str().map(PathBuf::from))
    };
    let msgs = run(vec![
        "build".into(),
        "-p".into(),
        "wirehook".into(),
        "-p".into(),
        "wiretop".into(),
        "--bin".into(),
        "wirehook".into(),
        "--bin".into(),
        "wiretop".into(),
    ]);
    let wirehook = executable(&msgs, "wirehook", "bin")
        .unwrap_or_else(|| panic!("cargo build -p wirehook named no wirehook executable"));
    let wiretop = executable(&msgs, "wiretop", "bin")
        .unwrap_or_else(|| panic!("cargo build -p wiretop named no wiretop executable"));
    let mut built = Vec::new();
    if !names.is_empty() {
        let mut args: Vec<String> = vec![
            "test".into(),
            "--no-run".into(),
            "-p".into(),
            "wirehook-tests".into(),
        ];
        for n in names {
            args.push("--test".into());
            args.push(n.to_string());
        }
        let msgs = run(args);
        for n in names {
            let p = executable(&msgs, n, "test")
                .unwrap_or_else(|| panic!("cargo test --no-run named no executable for test {n}"));
            built.push((n.to_string(), p));
        }
    }

    // The snapshot, beside the profile directories.
    let base = profile
        .parent()
        .expect("target directory")
        .join("wirehook-vm");
    if let Ok(rd) = std::fs::read_dir(&base) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = name
                .strip_prefix(SNAPSHOT_PREFIX)
                .and_then(|p| p.parse::<i32>().ok());
            if pid.is_some_and(|p| p != std::process::id() as i32 && !crate::sys::alive(p)) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let dir = base.join(format!("{SNAPSHOT_PREFIX}{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("deps"))
        .unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    register_at_exit();
    AT_EXIT_DIRS.lock().unwrap().push(dir.clone());
    let file_name = |p: &Path| p.file_name().and_then(OsStr::to_str).unwrap().to_string();
    let tests = built
        .iter()
        .map(|(n, p)| (n.clone(), snapshot(p, &dir.join("deps"), &file_name(p))))
        .collect();
    TestBinaries {
        wirehook: snapshot(&wirehook, &dir, "wirehook"),
        wiretop: snapshot(&wiretop, &dir, "wiretop"),
        this: snapshot(&exe, &dir.join("deps"), &file_name(&exe)),
        tests,
    }
}
