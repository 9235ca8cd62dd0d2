//! `wirehook-bench`: what one container's network costs, side by side.
//!
//! The hook sits on every container start and stop, so its cost is the
//! product's speed (DESIGN.md, "Performance"). This program measures, in one
//! run, the wall-clock time a container runtime waits for one container's
//! network to be set up and torn down, per network mode (`--modes`):
//!
//! * **bridge**: address, default route, masquerade, one published port
//!   (DNAT), by
//!   * **wirehook**: `wirehook hook createRuntime` / `wirehook hook poststop`
//!     with the OCI state JSON on stdin (annotations
//!     `io.wirehook.network=bridge`, `io.wirehook.ports=HOSTPORT:80`), state
//!     moved with `WIREHOOK_ROOT` to a private tmpfs;
//!   * **CNI**: the reference plugins as a runtime chains them: `bridge`
//!     (`isGateway`, `ipMasq`, IPAM `host-local`) then `portmap` with
//!     `runtimeConfig.portMappings` and bridge's result as `prevResult`; DEL
//!     in reverse order with the cached result as `prevResult`. The chained
//!     time is the sum of the plugin runs;
//!   * **netavark**: `netavark --config DIR --rootless false
//!     setup|teardown /proc/PID/ns/net` with podman's network-options JSON
//!     on stdin (a bridge network `podman-bench`, a static address as
//!     podman's IPAM hands out, one port mapping); netavark 1.4 programs the
//!     firewall through `iptables`.
//! * **macvlan** (mode bridge) and **ipvlan** (mode l2): a sub-interface of
//!   the host's `lan0` (one end of a veth pair; the other end is the LAN's
//!   router, the network's gateway, in a namespace of its own) made inside
//!   the container as `eth0`, an address from the LAN's subnet, a default
//!   route via the gateway, by
//!   * **wirehook**: a network made untimed beforehand with `wirehook
//!     network create --driver macvlan|ipvlan --parent lan0 ...`, containers
//!     annotated `io.wirehook.network=benchlan`;
//!   * **CNI**: the `macvlan` or `ipvlan` plugin (`master` `lan0`, IPAM
//!     `host-local`, default route), DEL with the cached result as
//!     `prevResult`.
//!
//! How:
//!
//! * Every contender works in its own fresh "host" network namespace
//!   (`ip netns add wh-bench-KIND-MODE-PID`); the bench enters it with
//!   `setns(2)` on its own thread before spawning the plugin (as `nsenter
//!   --net` would, without timing nsenter) and returns to the root namespace
//!   afterwards. So every bridge, veth, sysctl and firewall rule lives in a
//!   namespace the bench deletes at the end; nothing touches the root
//!   namespace, and the only packets sent (the containers' own gratuitous
//!   ARPs and the like) stay on veths between the bench's namespaces.
//! * A "container" is `sleep 3600` that unshared its own network namespace
//!   (`/proc/PID/ns/net`), with `PR_SET_PDEATHSIG` so it dies with the
//!   bench. All containers and OCI bundles exist before any timing starts.
//! * Only the invocation is timed: spawn to exit, wall clock, stdin written
//!   and stdout/stderr drained as a runtime does. Every invocation must exit
//!   0 (else the bench stops with the program's stderr), and after each setup
//!   the container must have an `eth0` of the mode's link kind and a default
//!   route via it, after each teardown no `eth0` (checked untimed), and for
//!   bridge the host namespace's ruleset must mention the published port.
//! * Contenders of one mode are interleaved container by container
//!   (wirehook #1, CNI #1, netavark #1, wirehook #2, ...) so background load
//!   on the machine hits them alike; the modes run one after another. The
//!   first `--warmup` containers of each are set up first and torn down
//!   last, untimed: the measured containers are neither the first nor the
//!   last on their network (steady state, bridge and base rules exist).
//!   Teardown runs in reverse setup order.
//! * Scale run: `--scale S` containers on one bridge, one after another, for
//!   wirehook alone (or `--scale-with`), in another fresh host namespace;
//!   median setup over containers 1..=K ("~10th") and S-K+1..=S ("~1000th"),
//!   K = `--window` (20), and their ratio; teardown in reverse order, so the
//!   last window's teardowns run while ~S containers are on the bridge.
//!
//! Output: a markdown report on stdout; `--json FILE` also writes every
//! sample as JSON. Run it through `tests/bench/run.sh`, which builds release
//! first; `--help` lists the flags. Needs root. ipvlan needs a kernel with
//! `CONFIG_IPVLAN`; where the host's has none, run the bench in the VM of
//! `tests/vm` (see README.md here).
//!
//! Only std and libc (for `setns`, `unshare`, `prctl`, `mount`, signals).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

type Res<T> = Result<T, String>;

const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const BASE_PORT: usize = 20000;
const CONTAINER_PORT: u16 = 80;
const CNI_BRIDGE: &str = "cni-bench0";
const CNI_SUBNET: &str = "10.99.0.0/16";
const NV_BRIDGE: &str = "podman-bench0";
const NV_NET: &str = "podman-bench";
const NV_NET_PREFIX: [u8; 2] = [10, 98];
/// macvlan/ipvlan: the parent in each contender's host namespace, the
/// LAN's subnet and its router (the veth peer, in the LAN namespace), and
/// wirehook's network name.
const LAN_PARENT: &str = "lan0";
const LAN_SUBNET: &str = "10.97.0.0/16";
const LAN_PREFIX_LEN: u8 = 16;
const LAN_GATEWAY: &str = "10.97.0.1";
const WH_LAN_NET: &str = "benchlan";
const NS_PREFIX: &str = "wh-bench-";
const GOAL_SETUP_MS: f64 = 3.0;
const GOAL_TEARDOWN_MS: f64 = 5.0;
const GOAL_SPEEDUP: f64 = 10.0;
const GOAL_SCALE_RATIO: f64 = 1.2;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_sig: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn install_signal_handlers() {
    let handler: extern "C" fn(libc::c_int) = on_signal;
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic.
        unsafe {
            libc::signal(sig, handler as libc::sighandler_t);
        }
    }
}

fn check_stop() -> Res<()> {
    if STOP.load(Ordering::SeqCst) {
        Err("interrupted".into())
    } else {
        Ok(())
    }
}

// ---------------------------------------------------------------- options

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Wirehook,
    Cni,
    Netavark,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::Wirehook, Kind::Cni, Kind::Netavark];

    fn key(self) -> &'static str {
        match self {
            Kind::Wirehook => "wirehook",
            Kind::Cni => "cni",
            Kind::Netavark => "netavark",
        }
    }

    /// netavark is driven in bridge mode only.
    fn runs(self, mode: Mode) -> bool {
        self != Kind::Netavark || mode == Mode::Bridge
    }

    fn parse_list(s: &str) -> Res<Vec<Kind>> {
        parse_keys(s, &Kind::ALL, Kind::key, "contender")
    }
}

/// A comma list of names out of `all` (by `key`), each once, in `all`'s
/// order so tables always read the same way.
fn parse_keys<T: Copy + PartialEq>(
    s: &str,
    all: &[T],
    key: fn(T) -> &'static str,
    what: &str,
) -> Res<Vec<T>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let v = all
            .iter()
            .copied()
            .find(|&a| key(a) == part)
            .ok_or_else(|| {
                let names: Vec<&str> = all.iter().map(|&a| key(a)).collect();
                format!("unknown {what} {part:?} (choose from {})", names.join(", "))
            })?;
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out.sort_by_key(|v| all.iter().position(|a| a == v));
    Ok(out)
}

/// The network mode a container is wired into.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Bridge,
    Macvlan,
    Ipvlan,
}

impl Mode {
    const ALL: [Mode; 3] = [Mode::Bridge, Mode::Macvlan, Mode::Ipvlan];

    fn key(self) -> &'static str {
        match self {
            Mode::Bridge => "bridge",
            Mode::Macvlan => "macvlan",
            Mode::Ipvlan => "ipvlan",
        }
    }

    /// The driver mode both sides are given, as `ip -d link` prints it.
    fn sub_mode(self) -> &'static str {
        match self {
            Mode::Bridge => "",
            Mode::Macvlan => "bridge",
            Mode::Ipvlan => "l2",
        }
    }

    /// The kind of the container's `eth0` after setup.
    fn link_kind(self) -> &'static str {
        match self {
            Mode::Bridge => "veth",
            Mode::Macvlan => "macvlan",
            Mode::Ipvlan => "ipvlan",
        }
    }

    fn parse_list(s: &str) -> Res<Vec<Mode>> {
        parse_keys(s, &Mode::ALL, Mode::key, "mode")
    }
}

struct Opts {
    n: usize,
    warmup: usize,
    scale: usize,
    window: usize,
    only: Vec<Kind>,
    /// `None`: bridge and macvlan, and ipvlan when the kernel has it.
    modes: Option<Vec<Mode>>,
    scale_with: Vec<Kind>,
    wirehook: PathBuf,
    cni_path: PathBuf,
    netavark: PathBuf,
    json: Option<String>,
    check: bool,
    /// Each container's process exits before its teardown.
    stopped: bool,
}

const USAGE: &str = "\
wirehook-bench: per-container network setup/teardown, wirehook vs CNI vs netavark,
in bridge, macvlan and ipvlan mode

USAGE: wirehook-bench [OPTIONS]        (as root; see tests/bench/README.md)

OPTIONS:
  -n N                 measured containers per contender (default 100)
  --warmup W           untimed containers set up first, torn down last (default 2)
  --scale S            containers on one bridge in the scale run (default 1000; 0 = skip)
  --window K           containers per window of the scale run (default 20)
  --only LIST          contenders of the side-by-side run: wirehook,cni,netavark (default all;
                       netavark runs in bridge mode only)
  --modes LIST         network modes of the side-by-side run: bridge,macvlan,ipvlan (default
                       bridge,macvlan, plus ipvlan when this kernel can make ipvlan links)
  --scale-with LIST    contenders of the scale run (default wirehook)
  --wirehook PATH      wirehook binary (default: `wirehook` beside this binary,
                       i.e. target/release/wirehook)
  --cni-path DIR       CNI plugin directory (default /usr/lib/cni)
  --netavark PATH      netavark binary (default /usr/lib/podman/netavark)
  --json FILE          also write all samples as JSON to FILE ('-' = stdout; the
                       markdown report then goes to stderr)
  --stopped            the container's process exits before its teardown, as at a real
                       poststop or CNI DEL; CNI and netavark reach the namespace through
                       a bind mount the bench holds, as podman does (default: the process
                       still runs, so the namespace is alive and in use at teardown)
  --check              exit 1 when wirehook misses a goal
  -h, --help           this text
";

fn parse_args() -> Res<Opts> {
    let default_wirehook = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("wirehook")))
        .unwrap_or_else(|| PathBuf::from("target/release/wirehook"));
    let mut o = Opts {
        n: 100,
        warmup: 2,
        scale: 1000,
        window: 20,
        only: Kind::ALL.to_vec(),
        modes: None,
        scale_with: vec![Kind::Wirehook],
        wirehook: default_wirehook,
        cni_path: PathBuf::from("/usr/lib/cni"),
        netavark: PathBuf::from("/usr/lib/podman/netavark"),
        json: None,
        check: false,
        stopped: false,
    };
    let mut scale_with_given = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        let mut val = |name: &str| -> Res<String> {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        let num = |name: &str, v: String| -> Res<usize> {
            v.parse::<usize>()
                .map_err(|_| format!("{name}: not a number: {v:?}"))
        };
        match flag.as_str() {
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            "-n" => o.n = num("-n", val("-n")?)?,
            "--warmup" => o.warmup = num("--warmup", val("--warmup")?)?,
            "--scale" => o.scale = num("--scale", val("--scale")?)?,
            "--window" => o.window = num("--window", val("--window")?)?,
            "--only" => o.only = Kind::parse_list(&val("--only")?)?,
            "--modes" => o.modes = Some(Mode::parse_list(&val("--modes")?)?),
            "--scale-with" => {
                o.scale_with = Kind::parse_list(&val("--scale-with")?)?;
                scale_with_given = true;
            }
            "--wirehook" => o.wirehook = PathBuf::from(val("--wirehook")?),
            "--cni-path" => o.cni_path = PathBuf::from(val("--cni-path")?),
            "--netavark" => o.netavark = PathBuf::from(val("--netavark")?),
            "--json" => o.json = Some(val("--json")?),
            "--check" => o.check = true,
            "--stopped" => o.stopped = true,
            other => return Err(format!("unknown argument {other:?}\n\n{USAGE}")),
        }
    }
    if o.n == 0 {
        return Err("-n must be at least 1".into());
    }
    if o.only.is_empty() {
        return Err("--only names no contender".into());
    }
    if let Some(modes) = &o.modes {
        if modes.is_empty() {
            return Err("--modes names no mode".into());
        }
        for m in modes {
            if !o.only.iter().any(|k| k.runs(*m)) {
                return Err(format!(
                    "--modes {}: none of the --only contenders runs in that mode (netavark: bridge only)",
                    m.key()
                ));
            }
        }
    }
    if o.scale > 0 && o.window == 0 {
        return Err("--window must be at least 1".into());
    }
    if o.scale > 0 && o.scale < o.window {
        return Err(format!(
            "--scale {} is smaller than --window {}",
            o.scale, o.window
        ));
    }
    if o.warmup + o.n.max(o.scale) > 60000 {
        return Err("too many containers (host ports run out)".into());
    }
    // The scale run measures wirehook unless told otherwise; leaving wirehook
    // out with --only also leaves it out of the scale run.
    if !scale_with_given && !o.only.contains(&Kind::Wirehook) {
        o.scale_with.clear();
    }
    Ok(o)
}

// ------------------------------------------------------- small utilities

fn last_os_error(what: &str) -> String {
    format!("{what}: {}", io::Error::last_os_error())
}

/// Run an untimed helper command (ip, nft, ...) and return its stdout.
fn sh(prog: &str, args: &[&str]) -> Res<String> {
    let out = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{prog}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`{prog} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_string()
}

fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn enter_netns(fd: RawFd) -> Res<()> {
    // SAFETY: plain syscall on a descriptor the caller keeps open.
    if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } != 0 {
        return Err(last_os_error("setns"));
    }
    Ok(())
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Mount points at or below `dir`, deepest first.
fn mounts_below(dir: &Path) -> Vec<PathBuf> {
    let prefix = dir.to_string_lossy().into_owned();
    let mut v: Vec<PathBuf> = fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(unescape_mountinfo))
        .filter(|m| m == &prefix || m.starts_with(&format!("{prefix}/")))
        .map(PathBuf::from)
        .collect();
    v.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    v.dedup();
    v
}

fn unescape_mountinfo(s: &str) -> String {
    // mountinfo escapes space, tab, newline and backslash as \ooo.
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            if let Some(v) = std::str::from_utf8(&b[i + 1..i + 4])
                .ok()
                .and_then(|o| u8::from_str_radix(o, 8).ok())
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn bind_mount(src: &Path, target: &Path) -> Res<()> {
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_encoded_bytes())
            .map_err(|_| format!("{} has a NUL byte", p.display()))
    };
    let (s, t) = (c(src)?, c(target)?);
    // SAFETY: valid C strings; a bind mount takes no type or data.
    let rc = unsafe {
        libc::mount(
            s.as_ptr(),
            t.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(last_os_error(&format!(
            "bind mount {} on {}",
            src.display(),
            target.display()
        )));
    }
    Ok(())
}

fn detach_mount(p: &Path) {
    if let Ok(c) = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()) {
        // SAFETY: valid C string.
        unsafe {
            libc::umount2(c.as_ptr(), libc::MNT_DETACH);
        }
    }
}

/// Make `cmd` start in a network namespace of its own and die with the
/// bench.
fn in_new_netns(cmd: &mut Command) {
    // SAFETY: only async-signal-safe syscalls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            if libc::unshare(libc::CLONE_NEWNET) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Can this kernel make ipvlan links? Tried on a veth pair in a throw-away
/// namespace.
fn kernel_has_ipvlan() -> bool {
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        "ip link add whp0 type veth peer name whp1 && ip link add link whp0 name whp2 type ipvlan mode l2",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    in_new_netns(&mut cmd);
    cmd.status().is_ok_and(|s| s.success())
}

// ------------------------------------------------------------ the bench

/// Owns everything the bench creates and removes it on drop (normal end,
/// error, panic, or Ctrl-C, which is turned into an error).
struct Bench {
    pid: u32,
    base: PathBuf,
    base_mounted: bool,
    root_ns: File,
    netns: Vec<String>,
    containers: Vec<Child>,
}

struct HostNs {
    name: String,
    fd: File,
}

impl Bench {
    fn new() -> Res<Bench> {
        let pid = std::process::id();
        let root_ns = File::open("/proc/thread-self/ns/net")
            .map_err(|e| format!("open /proc/thread-self/ns/net: {e}"))?;
        let base = PathBuf::from(format!("/run/{NS_PREFIX}{pid}"));
        fs::create_dir_all(&base).map_err(|e| format!("mkdir {}: {e}", base.display()))?;
        let mut b = Bench {
            pid,
            base,
            base_mounted: false,
            root_ns,
            netns: Vec::new(),
            containers: Vec::new(),
        };
        // A private tmpfs for all state (IPAM, netavark config, bundles,
        // WIREHOOK_ROOT): every contender writes to memory, as on /run.
        let target = std::ffi::CString::new(b.base.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: valid C strings.
        let rc = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                c"mode=0755".as_ptr().cast(),
            )
        };
        if rc != 0 {
            return Err(last_os_error(&format!(
                "mount tmpfs on {}",
                b.base.display()
            )));
        }
        b.base_mounted = true;
        Ok(b)
    }

    /// A fresh "host" network namespace with loopback up.
    fn host_ns(&mut self, tag: &str) -> Res<HostNs> {
        let name = format!("{NS_PREFIX}{tag}-{}", self.pid);
        sh("ip", &["netns", "add", &name])?;
        self.netns.push(name.clone());
        sh("ip", &["-n", &name, "link", "set", "lo", "up"])?;
        let fd = File::open(format!("/run/netns/{name}"))
            .map_err(|e| format!("open /run/netns/{name}: {e}"))?;
        Ok(HostNs { name, fd })
    }

    /// The LAN of a macvlan/ipvlan contender: `lan0` in `host`, up, the
    /// parent of the containers' interfaces; its veth peer `eth0` in a LAN
    /// namespace of its own (`wh-bench-TAG-lan-PID`), holding the gateway
    /// address: the segment's router, as another machine.
    fn lan(&mut self, host: &HostNs, tag: &str) -> Res<()> {
        let lan = self.host_ns(&format!("{tag}-lan"))?;
        let gw = format!("{LAN_GATEWAY}/{LAN_PREFIX_LEN}");
        let h = host.name.as_str();
        let l = lan.name.as_str();
        sh(
            "ip",
            &[
                "-n", h, "link", "add", LAN_PARENT, "type", "veth", "peer", "name", "eth0",
                "netns", l,
            ],
        )?;
        sh("ip", &["-n", h, "link", "set", LAN_PARENT, "up"])?;
        sh("ip", &["-n", l, "addr", "add", &gw, "dev", "eth0"])?;
        sh("ip", &["-n", l, "link", "set", "eth0", "up"])?;
        Ok(())
    }

    /// A container: `sleep 3600` in a network namespace of its own.
    fn container(&mut self) -> Res<u32> {
        let mut cmd = Command::new("sleep");
        cmd.arg("3600")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        in_new_netns(&mut cmd);
        let child = cmd
            .spawn()
            .map_err(|e| format!("spawn container (sleep in a new netns): {e}"))?;
        let pid = child.id();
        self.containers.push(child);
        Ok(pid)
    }

    /// Kill container `pid` and reap it: what is left of it is its network
    /// namespace, if something holds that.
    fn stop_container(&mut self, pid: u32) -> Res<()> {
        let i = self
            .containers
            .iter()
            .position(|c| c.id() == pid)
            .ok_or_else(|| format!("no container with pid {pid}"))?;
        let mut c = self.containers.swap_remove(i);
        let _ = c.kill();
        c.wait()
            .map_err(|e| format!("wait for container {pid}: {e}"))?;
        Ok(())
    }

    /// Run `f` with this thread in `ns`; always come back to the root
    /// namespace.
    fn in_ns<T>(&self, ns: RawFd, f: impl FnOnce() -> Res<T>) -> Res<T> {
        enter_netns(ns)?;
        let r = f();
        enter_netns(self.root_ns.as_raw_fd()).map_err(|e| format!("back to root netns: {e}"))?;
        r
    }

    fn kill_containers(&mut self) {
        for c in &mut self.containers {
            let _ = c.kill();
        }
        for mut c in self.containers.drain(..) {
            let _ = c.wait();
        }
    }

    fn delete_netns(&mut self) {
        for name in self.netns.drain(..) {
            if let Err(e) = sh("ip", &["netns", "del", &name]) {
                eprintln!("wirehook-bench: cleanup: {e}");
            }
        }
    }

    /// End of a phase: containers gone, host namespaces gone. Leftover
    /// bind mounts of container namespaces below the tmpfs are released in
    /// `cleanup`.
    fn end_phase(&mut self) {
        self.kill_containers();
        self.delete_netns();
    }

    fn cleanup(&mut self) {
        let _ = enter_netns(self.root_ns.as_raw_fd());
        self.end_phase();
        if self.base_mounted {
            for m in mounts_below(&self.base) {
                detach_mount(&m);
            }
            self.base_mounted = false;
        }
        let _ = fs::remove_dir(&self.base);
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// Remove what a bench killed with SIGKILL left: `wh-bench-*-PID` network
/// namespaces and `/run/wh-bench-PID` mounts whose PID is gone.
fn remove_stale() {
    let dead = |s: &str| -> bool {
        s.rsplit('-')
            .next()
            .and_then(|p| p.parse::<u32>().ok())
            .is_some_and(|p| !pid_alive(p))
    };
    if let Ok(rd) = fs::read_dir("/run/netns") {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(NS_PREFIX) && dead(&name) {
                eprintln!("wirehook-bench: removing stale network namespace {name}");
                let _ = sh("ip", &["netns", "del", &name]);
            }
        }
    }
    if let Ok(rd) = fs::read_dir("/run") {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(NS_PREFIX) && dead(&name) {
                let p = e.path();
                eprintln!("wirehook-bench: removing stale {}", p.display());
                for m in mounts_below(&p) {
                    detach_mount(&m);
                }
                let _ = fs::remove_dir_all(&p);
            }
        }
    }
}

// -------------------------------------------------------- timed invocation

/// Spawn, feed stdin, drain stdout/stderr, wait: the wall-clock time a
/// runtime waits for a hook or plugin. Non-zero exit is an error carrying the
/// program's stderr.
fn timed(cmd: &mut Command, what: &str, input: &[u8]) -> Res<(Duration, Vec<u8>)> {
    check_stop()?;
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let t0 = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("{what}: cannot start {:?}: {e}", cmd.get_program()))?;
    if let Some(mut stdin) = child.stdin.take() {
        if let Err(e) = stdin.write_all(input) {
            if e.kind() != io::ErrorKind::BrokenPipe {
                return Err(format!("{what}: writing stdin: {e}"));
            }
        }
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{what}: wait: {e}"))?;
    let dt = t0.elapsed();
    if !out.status.success() {
        check_stop()?;
        return Err(format!(
            "{what} failed ({}).\n  command: {:?} {:?}\n  stdin: {}\n  stdout: {}\n  stderr: {}",
            out.status,
            cmd.get_program(),
            cmd.get_args().collect::<Vec<_>>(),
            String::from_utf8_lossy(input),
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok((dt, out.stdout))
}

// ------------------------------------------------------------ contenders

#[derive(Clone, Copy)]
struct Ctr {
    idx: usize,
    pid: u32,
}

impl Ctr {
    fn netns(&self) -> String {
        format!("/proc/{}/ns/net", self.pid)
    }
    fn host_port(&self) -> usize {
        BASE_PORT + self.idx
    }
    fn id(&self) -> String {
        format!("bench-{}", self.idx)
    }
}

struct Contender {
    kind: Kind,
    mode: Mode,
    host: HostNs,
    dir: PathBuf,
    wirehook: PathBuf,
    cni_path: PathBuf,
    netavark: PathBuf,
    /// `--stopped`: the container's process is gone at teardown.
    stopped: bool,
    /// CNI: the cached chain result per container (prevResult for DEL).
    cni_results: HashMap<usize, String>,
    /// This contender's containers, by index.
    ctrs: Vec<Ctr>,
}

impl Contender {
    fn new(kind: Kind, mode: Mode, host: HostNs, dir: PathBuf, o: &Opts) -> Res<Contender> {
        fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        if kind == Kind::Wirehook {
            // WIREHOOK_ROOT: an empty directory on the bench's tmpfs.
            let root = dir.join("root");
            fs::create_dir_all(&root).map_err(|e| format!("mkdir {}: {e}", root.display()))?;
        }
        Ok(Contender {
            kind,
            mode,
            host,
            dir,
            wirehook: o.wirehook.clone(),
            cni_path: o.cni_path.clone(),
            netavark: o.netavark.clone(),
            stopped: o.stopped,
            cni_results: HashMap::new(),
            ctrs: Vec::new(),
        })
    }

    /// Untimed, in the host namespace: what an operator does once before
    /// any container (wirehook's macvlan/ipvlan network on `lan0`).
    fn define_network(&self) -> Res<()> {
        if self.kind != Kind::Wirehook || self.mode == Mode::Bridge {
            return Ok(());
        }
        let mut cmd = self.cmd(&self.wirehook);
        cmd.args(["network", "create", "--driver", self.mode.key()])
            .args(["--mode", self.mode.sub_mode(), "--parent", LAN_PARENT])
            .args(["--subnet", LAN_SUBNET, "--gateway", LAN_GATEWAY, WH_LAN_NET])
            .env("WIREHOOK_ROOT", self.wirehook_root());
        timed(&mut cmd, "wirehook network create", b"")?;
        Ok(())
    }

    /// With `--stopped`, CNI and netavark get the container's namespace
    /// through a bind mount the bench holds (`DIR/netns/ID`), as podman
    /// does; wirehook, like runc, is given only the pid at setup.
    fn holds_ns(&self) -> bool {
        self.stopped && self.kind != Kind::Wirehook
    }

    /// The namespace path a plugin is given.
    fn ns_path(&self, c: &Ctr) -> PathBuf {
        if self.holds_ns() {
            self.dir.join("netns").join(c.id())
        } else {
            PathBuf::from(c.netns())
        }
    }

    /// Untimed per-container preparation (files a runtime has before it
    /// calls the hook, the namespace bind mount podman makes).
    fn prepare(&self, c: &Ctr) -> Res<()> {
        if self.holds_ns() {
            let held = self.ns_path(c);
            let dir = self.dir.join("netns");
            fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
            File::create(&held).map_err(|e| format!("create {}: {e}", held.display()))?;
            bind_mount(Path::new(&c.netns()), &held)?;
        }
        if self.kind == Kind::Wirehook {
            let b = self.bundle(c);
            fs::create_dir_all(b.join("rootfs"))
                .map_err(|e| format!("mkdir {}: {e}", b.display()))?;
            let config = r#"{"ociVersion":"1.0.2","process":{"terminal":false,"user":{"uid":0,"gid":0},"args":["sleep","3600"],"env":["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],"cwd":"/"},"root":{"path":"rootfs"},"hostname":"bench","linux":{"namespaces":[{"type":"pid"},{"type":"network"},{"type":"ipc"},{"type":"uts"},{"type":"mount"}]}}"#;
            fs::write(b.join("config.json"), config)
                .map_err(|e| format!("write {}/config.json: {e}", b.display()))?;
        }
        Ok(())
    }

    fn bundle(&self, c: &Ctr) -> PathBuf {
        self.dir.join("bundles").join(c.id())
    }

    fn wirehook_root(&self) -> PathBuf {
        self.dir.join("root")
    }

    fn cmd(&self, prog: &Path) -> Command {
        let mut cmd = Command::new(prog);
        cmd.env_clear().env("PATH", PATH);
        cmd
    }

    fn cni_cmd(&self, plugin: &str, op: &str, c: &Ctr) -> Command {
        let mut cmd = self.cmd(&self.cni_path.join(plugin));
        cmd.env("CNI_COMMAND", op)
            .env("CNI_CONTAINERID", c.id())
            .env("CNI_NETNS", self.ns_path(c))
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", &self.cni_path);
        cmd
    }

    /// A plugin's configuration with host-local IPAM (leases on the
    /// bench's tmpfs) and a default route; `plugin` is the plugin's own
    /// fields, `range` the host-local range.
    fn cni_conf(&self, plugin: &str, range: &str, prev: Option<&str>) -> String {
        let data_dir = json_str(&self.dir.join("ipam").to_string_lossy());
        let mut s = format!(
            r#"{{"cniVersion":"1.0.0","name":"benchnet",{plugin},"ipam":{{"type":"host-local","ranges":[[{range}]],"routes":[{{"dst":"0.0.0.0/0"}}],"dataDir":{data_dir}}}"#
        );
        if let Some(p) = prev {
            let _ = write!(s, r#","prevResult":{p}"#);
        }
        s.push('}');
        s
    }

    fn cni_bridge_conf(&self, prev: Option<&str>) -> String {
        self.cni_conf(
            &format!(r#""type":"bridge","bridge":"{CNI_BRIDGE}","isGateway":true,"ipMasq":true"#),
            &format!(r#"{{"subnet":"{CNI_SUBNET}"}}"#),
            prev,
        )
    }

    /// The `macvlan` or `ipvlan` plugin on `lan0`, the LAN's router as
    /// gateway.
    fn cni_lan_conf(&self, prev: Option<&str>) -> String {
        let (plugin, mode) = (self.mode.key(), self.mode.sub_mode());
        self.cni_conf(
            &format!(r#""type":"{plugin}","master":"{LAN_PARENT}","mode":"{mode}""#),
            &format!(r#"{{"subnet":"{LAN_SUBNET}","gateway":"{LAN_GATEWAY}"}}"#),
            prev,
        )
    }

    fn cni_portmap_conf(&self, c: &Ctr, prev: &str) -> String {
        format!(
            r#"{{"cniVersion":"1.0.0","name":"benchnet","type":"portmap","capabilities":{{"portMappings":true}},"snat":true,"runtimeConfig":{{"portMappings":[{{"hostPort":{},"containerPort":{CONTAINER_PORT},"protocol":"tcp"}}]}},"prevResult":{prev}}}"#,
            c.host_port()
        )
    }

    fn netavark_opts(&self, c: &Ctr) -> String {
        let host = c.idx + 2; // .0.0 is the network, .0.1 the gateway
        let ip = format!(
            "{}.{}.{}.{}",
            NV_NET_PREFIX[0],
            NV_NET_PREFIX[1],
            (host >> 8) & 0xff,
            host & 0xff
        );
        let [a, b] = NV_NET_PREFIX;
        format!(
            r#"{{"container_id":"{:064x}","container_name":"{}","port_mappings":[{{"host_ip":"","container_port":{CONTAINER_PORT},"host_port":{},"range":1,"protocol":"tcp"}}],"networks":{{"{NV_NET}":{{"static_ips":["{ip}"],"aliases":[],"interface_name":"eth0"}}}},"network_info":{{"{NV_NET}":{{"name":"{NV_NET}","id":"{}","driver":"bridge","network_interface":"{NV_BRIDGE}","created":"2024-01-01T00:00:00Z","subnets":[{{"subnet":"{a}.{b}.0.0/16","gateway":"{a}.{b}.0.1"}}],"ipv6_enabled":false,"internal":false,"dns_enabled":false,"ipam_options":{{"driver":"host-local"}}}}}}}}"#,
            0xbe0c_0000_0000_u64 + c.idx as u64,
            c.id(),
            c.host_port(),
            "b".repeat(64)
        )
    }

    fn netavark_cmd(&self, op: &str, c: &Ctr) -> Command {
        let mut cmd = self.cmd(&self.netavark);
        cmd.arg("--config")
            .arg(self.dir.join("netavark"))
            .args(["--rootless", "false", op])
            .arg(self.ns_path(c));
        cmd
    }

    /// Timed setup of one container (runs in the host namespace).
    fn setup(&mut self, c: &Ctr) -> Res<Duration> {
        match self.kind {
            Kind::Wirehook => {
                let annotations = match self.mode {
                    Mode::Bridge => format!(
                        r#""io.wirehook.network":"bridge","io.wirehook.ports":"{}:{CONTAINER_PORT}""#,
                        c.host_port()
                    ),
                    Mode::Macvlan | Mode::Ipvlan => {
                        format!(r#""io.wirehook.network":"{WH_LAN_NET}""#)
                    }
                };
                let state = format!(
                    r#"{{"ociVersion":"1.0.2","id":"{}","status":"creating","pid":{},"bundle":{},"annotations":{{{annotations}}}}}"#,
                    c.id(),
                    c.pid,
                    json_str(&self.bundle(c).to_string_lossy()),
                );
                let mut cmd = self.cmd(&self.wirehook);
                cmd.args(["hook", "createRuntime"])
                    .env("WIREHOOK_ROOT", self.wirehook_root());
                Ok(timed(&mut cmd, "wirehook hook createRuntime", state.as_bytes())?.0)
            }
            Kind::Cni if self.mode != Mode::Bridge => {
                let plugin = self.mode.key();
                let conf = self.cni_lan_conf(None);
                let (t, r) = timed(
                    &mut self.cni_cmd(plugin, "ADD", c),
                    &format!("CNI {plugin} ADD"),
                    conf.as_bytes(),
                )?;
                let r =
                    String::from_utf8(r).map_err(|_| format!("{plugin} result is not UTF-8"))?;
                self.cni_results.insert(c.idx, r.trim().to_string());
                Ok(t)
            }
            Kind::Cni => {
                let conf = self.cni_bridge_conf(None);
                let (t1, r1) = timed(
                    &mut self.cni_cmd("bridge", "ADD", c),
                    "CNI bridge ADD",
                    conf.as_bytes(),
                )?;
                let r1 = String::from_utf8(r1).map_err(|_| "bridge result is not UTF-8")?;
                let conf = self.cni_portmap_conf(c, r1.trim());
                let (t2, r2) = timed(
                    &mut self.cni_cmd("portmap", "ADD", c),
                    "CNI portmap ADD",
                    conf.as_bytes(),
                )?;
                let r2 = String::from_utf8(r2).map_err(|_| "portmap result is not UTF-8")?;
                self.cni_results.insert(c.idx, r2.trim().to_string());
                Ok(t1 + t2)
            }
            Kind::Netavark => {
                let opts = self.netavark_opts(c);
                let mut cmd = self.netavark_cmd("setup", c);
                Ok(timed(&mut cmd, "netavark setup", opts.as_bytes())?.0)
            }
        }
    }

    /// CNI: the result ADD returned for `c`, which DEL gets as `prevResult`.
    fn cached_result(&mut self, c: &Ctr) -> Res<String> {
        self.cni_results
            .remove(&c.idx)
            .ok_or_else(|| format!("no cached CNI result for {}", c.id()))
    }

    /// Timed teardown of one container (runs in the host namespace).
    fn teardown(&mut self, c: &Ctr) -> Res<Duration> {
        match self.kind {
            Kind::Wirehook => {
                let state = format!(
                    r#"{{"ociVersion":"1.0.2","id":"{}","status":"stopped","bundle":{},"annotations":{{}}}}"#,
                    c.id(),
                    json_str(&self.bundle(c).to_string_lossy())
                );
                let mut cmd = self.cmd(&self.wirehook);
                cmd.args(["hook", "poststop"])
                    .env("WIREHOOK_ROOT", self.wirehook_root());
                Ok(timed(&mut cmd, "wirehook hook poststop", state.as_bytes())?.0)
            }
            Kind::Cni if self.mode != Mode::Bridge => {
                let prev = self.cached_result(c)?;
                let plugin = self.mode.key();
                let conf = self.cni_lan_conf(Some(&prev));
                let (t, _) = timed(
                    &mut self.cni_cmd(plugin, "DEL", c),
                    &format!("CNI {plugin} DEL"),
                    conf.as_bytes(),
                )?;
                Ok(t)
            }
            Kind::Cni => {
                let prev = self.cached_result(c)?;
                let conf = self.cni_portmap_conf(c, &prev);
                let (t1, _) = timed(
                    &mut self.cni_cmd("portmap", "DEL", c),
                    "CNI portmap DEL",
                    conf.as_bytes(),
                )?;
                let conf = self.cni_bridge_conf(Some(&prev));
                let (t2, _) = timed(
                    &mut self.cni_cmd("bridge", "DEL", c),
                    "CNI bridge DEL",
                    conf.as_bytes(),
                )?;
                Ok(t1 + t2)
            }
            Kind::Netavark => {
                let opts = self.netavark_opts(c);
                let mut cmd = self.netavark_cmd("teardown", c);
                Ok(timed(&mut cmd, "netavark teardown", opts.as_bytes())?.0)
            }
        }
    }
}

/// Untimed: after setup the container's eth0 is of the mode's link kind
/// (and driver mode), and it has a default route via eth0.
fn verify_wired(bench: &Bench, kind: Kind, mode: Mode, c: &Ctr) -> Res<()> {
    let ns = File::open(c.netns()).map_err(|e| format!("open {}: {e}", c.netns()))?;
    let link = bench.in_ns(ns.as_raw_fd(), || {
        sh("ip", &["-o", "-d", "link", "show", "dev", "eth0"])
    })?;
    let words: Vec<&str> = link.split_whitespace().collect();
    let has_kind = words.contains(&mode.link_kind());
    let has_mode = mode.sub_mode().is_empty()
        || words
            .windows(2)
            .any(|w| w[0] == "mode" && w[1] == mode.sub_mode());
    if !(has_kind && has_mode) {
        return Err(format!(
            "{} {} setup of {} exited 0 but the container's eth0 is not a {} {}: {}",
            kind.key(),
            mode.key(),
            c.id(),
            mode.link_kind(),
            mode.sub_mode(),
            link.trim()
        ));
    }
    let routes = fs::read_to_string(format!("/proc/{}/net/route", c.pid))
        .map_err(|e| format!("read /proc/{}/net/route: {e}", c.pid))?;
    let ok = routes.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 2 && f[0] == "eth0" && f[1] == "00000000"
    });
    if !ok {
        return Err(format!(
            "{} setup of {} exited 0 but the container (pid {}) has no default route via eth0",
            kind.key(),
            c.id(),
            c.pid
        ));
    }
    Ok(())
}

/// Untimed: after teardown the container has no eth0. wirehook's poststop
/// hands the veth deletion to a detached finisher (see hook/src/finish.rs),
/// so for it eth0 may linger a moment: wait up to 3 s.
///
/// With `--stopped` the process is gone: for CNI and netavark the bench
/// looks through its bind mount and then releases it (as podman does after
/// DEL); wirehook must have released its own bind mount (within 3 s: the
/// finisher unmounts it), which nothing else holds, so the namespace and
/// its sub-interface or veth die with it.
fn verify_unwired(bench: &Bench, c: &Contender, ctr: &Ctr) -> Res<()> {
    // Polls of 10 ms: wirehook's finisher runs after poststop returned.
    let patience = if c.kind == Kind::Wirehook { 300 } else { 0 };
    let has_eth0 = |dev: Res<String>| -> Res<bool> {
        Ok(dev?.lines().any(|l| l.trim_start().starts_with("eth0:")))
    };
    let what = format!("{} {} teardown of {}", c.kind.key(), c.mode.key(), ctr.id());
    if !c.stopped {
        let dev = format!("/proc/{}/net/dev", ctr.pid);
        let gone = eventually(patience, || {
            has_eth0(fs::read_to_string(&dev).map_err(|e| format!("read {dev}: {e}"))).map(|h| !h)
        })?;
        if !gone {
            return Err(format!(
                "{what} exited 0 but the container (pid {}) still has eth0",
                ctr.pid
            ));
        }
    } else if c.holds_ns() {
        let held = c.ns_path(ctr);
        let ns = File::open(&held).map_err(|e| format!("open {}: {e}", held.display()))?;
        let still = bench.in_ns(ns.as_raw_fd(), || {
            has_eth0(
                fs::read_to_string("/proc/thread-self/net/dev")
                    .map_err(|e| format!("read /proc/thread-self/net/dev: {e}")),
            )
        })?;
        drop(ns);
        detach_mount(&held);
        if still {
            return Err(format!(
                "{what} exited 0 but its namespace ({}) still has eth0",
                held.display()
            ));
        }
    } else {
        let mount = c.wirehook_root().join("run/wirehook/netns").join(ctr.id());
        let released = eventually(patience, || Ok(mounts_below(&mount).is_empty()))?;
        if !released {
            return Err(format!(
                "{what} exited 0 but {} still holds the namespace",
                mount.display()
            ));
        }
    }
    Ok(())
}

/// Poll `done` every 10 ms, at most `patience` times more after the first.
fn eventually(patience: usize, mut done: impl FnMut() -> Res<bool>) -> Res<bool> {
    for _ in 0..patience {
        if done()? {
            return Ok(true);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    done()
}

/// Untimed, in the host namespace: its ruleset mentions the published port.
fn verify_port(kind: Kind, c: &Ctr) -> Res<()> {
    let rules = sh("nft", &["list", "ruleset"])?;
    let port = c.host_port().to_string();
    let found = rules
        .split(|ch: char| !ch.is_ascii_digit())
        .any(|tok| tok == port);
    if !found {
        return Err(format!(
            "{}: host port {port} of {} appears nowhere in the host namespace's nftables ruleset",
            kind.key(),
            c.id()
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------- phases

struct Samples {
    kind: Kind,
    mode: Mode,
    /// Indexed by container index (0-based, setup order).
    setup: Vec<Duration>,
    teardown: Vec<Duration>,
}

/// Progress on stderr in tenths.
fn progress(what: &str, done: usize, total: usize) {
    if done == total || done * 10 / total != (done - 1) * 10 / total {
        eprintln!("wirehook-bench:   {what} {done}/{total}");
    }
}

/// Set up `total` containers per contender (interleaved) in `mode`, then
/// tear them down in reverse order. Every contender in its own fresh host
/// namespace `wh-bench-KIND-TAG-PID` (TAG: the mode, or `scale`).
fn run_phase(
    bench: &mut Bench,
    o: &Opts,
    mode: Mode,
    kinds: &[Kind],
    tag: &str,
    total: usize,
) -> Res<Vec<Samples>> {
    let mut contenders = Vec::new();
    for &k in kinds {
        let host_tag = format!("{}-{tag}", k.key());
        let host = bench.host_ns(&host_tag)?;
        if mode != Mode::Bridge {
            bench.lan(&host, &host_tag)?;
        }
        let dir = bench.base.join(&host.name);
        let c = Contender::new(k, mode, host, dir, o)?;
        bench.in_ns(c.host.fd.as_raw_fd(), || c.define_network())?;
        contenders.push(c);
    }
    eprintln!(
        "wirehook-bench: phase {tag}: creating {} containers for {}",
        total * contenders.len(),
        kinds.iter().map(|k| k.key()).collect::<Vec<_>>().join(", ")
    );
    for c in contenders.iter_mut() {
        for idx in 0..total {
            check_stop()?;
            let pid = bench.container()?;
            let ctr = Ctr { idx, pid };
            c.prepare(&ctr)?;
            c.ctrs.push(ctr);
        }
    }
    let mut samples: Vec<Samples> = kinds
        .iter()
        .map(|&kind| Samples {
            kind,
            mode,
            setup: vec![Duration::ZERO; total],
            teardown: vec![Duration::ZERO; total],
        })
        .collect();
    for idx in 0..total {
        for (c, smp) in contenders.iter_mut().zip(samples.iter_mut()) {
            let ctr = c.ctrs[idx];
            let t = bench.in_ns(c.host.fd.as_raw_fd(), || c.setup(&ctr))?;
            verify_wired(bench, c.kind, mode, &ctr)?;
            smp.setup[idx] = t;
        }
        progress("set up", idx + 1, total);
    }
    if mode == Mode::Bridge {
        for c in &contenders {
            let ctr = c.ctrs[total - 1];
            bench.in_ns(c.host.fd.as_raw_fd(), || verify_port(c.kind, &ctr))?;
        }
    }
    for idx in (0..total).rev() {
        for (c, smp) in contenders.iter_mut().zip(samples.iter_mut()) {
            let ctr = c.ctrs[idx];
            if c.stopped {
                bench.stop_container(ctr.pid)?;
            }
            let t = bench.in_ns(c.host.fd.as_raw_fd(), || c.teardown(&ctr))?;
            verify_unwired(bench, c, &ctr)?;
            smp.teardown[idx] = t;
        }
        progress("torn down", total - idx, total);
    }
    drop(contenders);
    bench.end_phase();
    Ok(samples)
}

// ------------------------------------------------------------ statistics

#[derive(Clone, Copy)]
struct Stats {
    median: f64,
    p90: f64,
    min: f64,
    max: f64,
}

fn stats(v: &[Duration]) -> Stats {
    let mut x: Vec<f64> = v.iter().map(|d| ms(*d)).collect();
    x.sort_by(|a, b| a.total_cmp(b));
    let n = x.len();
    if n == 0 {
        return Stats {
            median: f64::NAN,
            p90: f64::NAN,
            min: f64::NAN,
            max: f64::NAN,
        };
    }
    let median = if n % 2 == 1 {
        x[n / 2]
    } else {
        (x[n / 2 - 1] + x[n / 2]) / 2.0
    };
    let p90 = x[((n as f64 * 0.9).ceil() as usize).clamp(1, n) - 1];
    Stats {
        median,
        p90,
        min: x[0],
        max: x[n - 1],
    }
}

fn fmt_ms(v: f64) -> String {
    if v.is_nan() {
        "n/a".into()
    } else if v < 10.0 {
        format!("{v:.2} ms")
    } else {
        format!("{v:.1} ms")
    }
}

fn fmt_ratio(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.1}×")
    } else {
        "n/a".into()
    }
}

// ---------------------------------------------------------------- report

struct Meta {
    date: String,
    kernel: String,
    /// Set when the bench runs in the VM of tests/vm (qemu TCG).
    vm: bool,
    cpus: usize,
    loadavg: String,
    wirehook: String,
    /// ` VERSION` of Debian's containernetworking-plugins, or empty.
    cni_version: String,
    netavark: String,
    iptables: String,
}

impl Meta {
    /// A contender's name in the tables: program, version, what it runs.
    fn label(&self, mode: Mode, kind: Kind) -> String {
        match (kind, mode) {
            (Kind::Wirehook, _) => self.wirehook.clone(),
            (Kind::Cni, Mode::Bridge) => {
                format!("CNI bridge+host-local+portmap{}", self.cni_version)
            }
            (Kind::Cni, _) => format!("CNI {}+host-local{}", mode.key(), self.cni_version),
            (Kind::Netavark, _) => format!("{} (iptables)", self.netavark),
        }
    }
}

fn gather_meta(o: &Opts) -> Meta {
    let version = |prog: &Path, fallback: &str| -> String {
        Command::new(prog)
            .arg("--version")
            .output()
            .ok()
            .filter(|x| x.status.success())
            .map(|x| first_line(&String::from_utf8_lossy(&x.stdout)))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| fallback.into())
    };
    let cni_version = sh(
        "dpkg-query",
        &["-W", "-f", "${Version}", "containernetworking-plugins"],
    )
    .ok()
    .filter(|s| !s.trim().is_empty())
    .map(|v| format!(" {}", v.trim()))
    .unwrap_or_default();
    Meta {
        date: sh("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"])
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
        kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
        vm: std::env::var_os("WIREHOOK_TESTS_IN_VM").is_some_and(|v| v == "1"),
        cpus: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        loadavg: fs::read_to_string("/proc/loadavg")
            .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default(),
        wirehook: version(&o.wirehook, "wirehook"),
        cni_version,
        netavark: version(&o.netavark, "netavark"),
        iptables: sh("iptables", &["--version"])
            .map(|s| first_line(&s))
            .unwrap_or_else(|_| "iptables not found".into()),
    }
}

struct Report<'a> {
    o: &'a Opts,
    meta: Meta,
    modes: Vec<Mode>,
    /// What was left out and why, said above the table.
    notes: Vec<String>,
    side: Vec<Samples>,
    scale: Vec<Samples>,
}

impl Report<'_> {
    fn measured<'s>(&self, s: &'s Samples) -> (&'s [Duration], &'s [Duration]) {
        let w = self.o.warmup;
        (&s.setup[w..], &s.teardown[w..])
    }

    /// wirehook's setup and teardown medians in `mode`.
    fn wirehook_medians(&self, mode: Mode) -> Option<(f64, f64)> {
        self.side
            .iter()
            .find(|s| s.kind == Kind::Wirehook && s.mode == mode)
            .map(|s| {
                let (a, b) = self.measured(s);
                (stats(a).median, stats(b).median)
            })
    }

    /// A contender's setup and teardown medians divided by wirehook's in
    /// the same mode (NaN without wirehook).
    fn ratios(&self, s: &Samples) -> (f64, f64) {
        let (a, b) = self.measured(s);
        match self.wirehook_medians(s.mode) {
            Some((wa, wb)) => (stats(a).median / wa, stats(b).median / wb),
            None => (f64::NAN, f64::NAN),
        }
    }

    fn windows(&self, s: &Samples) -> [(Stats, Stats); 2] {
        let k = self.o.window;
        let n = s.setup.len();
        [
            (stats(&s.setup[..k]), stats(&s.teardown[..k])),
            (stats(&s.setup[n - k..]), stats(&s.teardown[n - k..])),
        ]
    }

    /// Markdown report and whether wirehook met every goal it was measured on.
    fn markdown(&self) -> (String, bool) {
        let o = self.o;
        let m = &self.meta;
        let mut out = String::new();
        let mut met = true;
        let _ = writeln!(out, "### Per-container network setup and teardown\n");
        let modes: Vec<&str> = self.modes.iter().map(|m| m.key()).collect();
        let _ = writeln!(
            out,
            "{} containers per contender (plus {} untimed warm-up ones), modes {}; each contender in \
             its own host network namespace, invocations of one mode interleaved. Kernel {}{}, {} CPUs, \
             load {} at start, {}; {}.\n",
            o.n,
            o.warmup,
            modes.join(", "),
            m.kernel,
            if m.vm {
                " (the VM of tests/vm: qemu TCG, absolute times tens of times the host's)"
            } else {
                ""
            },
            m.cpus,
            m.loadavg,
            m.iptables,
            m.date
        );
        for mode in &self.modes {
            let what = match mode {
                Mode::Bridge => "a bridge network, one published TCP port".to_string(),
                Mode::Macvlan | Mode::Ipvlan => format!(
                    "a sub-interface of `{LAN_PARENT}` (a veth to the LAN's router), {} mode {}, an address from {LAN_SUBNET}, default route via the router",
                    mode.key(),
                    mode.sub_mode()
                ),
            };
            let _ = writeln!(out, "- {}: {what}", mode.key());
        }
        let _ = writeln!(
            out,
            "- teardown: {}",
            if o.stopped {
                "the container's process has exited (`--stopped`), as at a runtime's poststop or \
                 CNI DEL; CNI and netavark get its namespace through a bind mount the bench holds, \
                 as podman does"
            } else {
                "the container's process still runs in its namespace"
            }
        );
        let _ = writeln!(out);
        for n in &self.notes {
            let _ = writeln!(out, "> {n}\n");
        }
        if !o.only.contains(&Kind::Wirehook) {
            let _ = writeln!(
                out,
                "> **wirehook was not measured** (`--only {}`): ratios are n/a.\n",
                o.only.iter().map(|k| k.key()).collect::<Vec<_>>().join(",")
            );
        }
        let _ = writeln!(
            out,
            "| mode | contender | setup median | setup p90 | setup min | teardown median | teardown p90 | teardown min | setup ÷ wirehook | teardown ÷ wirehook |"
        );
        let _ = writeln!(out, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|");
        for s in &self.side {
            let (a, b) = self.measured(s);
            let (sa, sb) = (stats(a), stats(b));
            let (ra, rb) = self.ratios(s);
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                s.mode.key(),
                m.label(s.mode, s.kind),
                fmt_ms(sa.median),
                fmt_ms(sa.p90),
                fmt_ms(sa.min),
                fmt_ms(sb.median),
                fmt_ms(sb.p90),
                fmt_ms(sb.min),
                fmt_ratio(ra),
                fmt_ratio(rb)
            );
        }
        let mark = |ok: bool| if ok { "met" } else { "**missed**" };
        let mut goals = String::new();
        for &mode in &self.modes {
            let Some((wa, wb)) = self.wirehook_medians(mode) else {
                continue;
            };
            // The absolute goals are DESIGN.md's, for bridge containers on
            // the host; under emulation they say nothing.
            if mode == Mode::Bridge && !m.vm {
                let ok = wa <= GOAL_SETUP_MS;
                met &= ok;
                let _ = writeln!(
                    goals,
                    "- bridge: setup median ≤ {GOAL_SETUP_MS} ms: {} — {}",
                    fmt_ms(wa),
                    mark(ok)
                );
                let ok = wb <= GOAL_TEARDOWN_MS;
                met &= ok;
                let _ = writeln!(
                    goals,
                    "- bridge: teardown median ≤ {GOAL_TEARDOWN_MS} ms: {} — {}",
                    fmt_ms(wb),
                    mark(ok)
                );
            }
            for s in self
                .side
                .iter()
                .filter(|s| s.mode == mode && s.kind != Kind::Wirehook)
            {
                let (ra, rb) = self.ratios(s);
                let ok = ra >= GOAL_SPEEDUP && rb >= GOAL_SPEEDUP;
                met &= ok;
                let _ = writeln!(
                    goals,
                    "- {}: ≥ {GOAL_SPEEDUP}× faster than {}: setup {}, teardown {} — {}",
                    mode.key(),
                    m.label(mode, s.kind),
                    fmt_ratio(ra),
                    fmt_ratio(rb),
                    mark(ok)
                );
            }
        }
        if !goals.is_empty() {
            let _ = write!(out, "\nGoals (wirehook):\n\n{goals}");
        }
        for s in &self.scale {
            let n = s.setup.len();
            let k = o.window;
            let [(f_up, f_down), (l_up, l_down)] = self.windows(s);
            let _ = writeln!(
                out,
                "\n### {} with {n} containers on one bridge\n",
                m.label(s.mode, s.kind)
            );
            let _ = writeln!(
                out,
                "Set up one after another, torn down in reverse order (so containers {}–{n} are \
                 torn down while ~{n} are on the bridge).\n",
                n - k + 1
            );
            let _ = writeln!(
                out,
                "| containers | setup median | setup p90 | teardown median | teardown p90 |"
            );
            let _ = writeln!(out, "|---|--:|--:|--:|--:|");
            let _ = writeln!(
                out,
                "| 1–{k} (~10th) | {} | {} | {} | {} |",
                fmt_ms(f_up.median),
                fmt_ms(f_up.p90),
                fmt_ms(f_down.median),
                fmt_ms(f_down.p90)
            );
            let _ = writeln!(
                out,
                "| {}–{n} (~{n}th) | {} | {} | {} | {} |",
                n - k + 1,
                fmt_ms(l_up.median),
                fmt_ms(l_up.p90),
                fmt_ms(l_down.median),
                fmt_ms(l_down.p90)
            );
            let (all_up, all_down) = (stats(&s.setup), stats(&s.teardown));
            let _ = writeln!(
                out,
                "| all {n} | {} | {} | {} | {} |",
                fmt_ms(all_up.median),
                fmt_ms(all_up.p90),
                fmt_ms(all_down.median),
                fmt_ms(all_down.p90)
            );
            let (r_up, r_down) = (l_up.median / f_up.median, l_down.median / f_down.median);
            let _ = writeln!(
                out,
                "| ratio ~{n}th ÷ ~10th | {r_up:.2} | | {r_down:.2} | |"
            );
            if s.kind == Kind::Wirehook {
                let ok = r_up <= GOAL_SCALE_RATIO && r_down <= GOAL_SCALE_RATIO;
                met &= ok;
                let _ = writeln!(
                    out,
                    "\nGoal: the ~{n}th container costs ≤ {GOAL_SCALE_RATIO}× the ~10th: setup {r_up:.2}, teardown {r_down:.2} — {}",
                    if ok { "met" } else { "**missed**" }
                );
            }
        }
        (out, met)
    }

    fn json(&self) -> String {
        let o = self.o;
        let m = &self.meta;
        let arr = |v: &[Duration]| -> String {
            let parts: Vec<String> = v.iter().map(|d| format!("{:.4}", ms(*d))).collect();
            format!("[{}]", parts.join(","))
        };
        let st = |s: Stats| -> String {
            format!(
                r#"{{"median":{:.4},"p90":{:.4},"min":{:.4},"max":{:.4}}}"#,
                s.median, s.p90, s.min, s.max
            )
        };
        let mut out = String::new();
        let _ = write!(
            out,
            r#"{{"meta":{{"date":{},"kernel":{},"vm":{},"cpus":{},"loadavg":{},"iptables":{},"modes":[{}],"stopped":{},"n":{},"warmup":{},"scale":{},"window":{}}},"contenders":["#,
            json_str(&m.date),
            json_str(&m.kernel),
            m.vm,
            m.cpus,
            json_str(&m.loadavg),
            json_str(&m.iptables),
            self.modes
                .iter()
                .map(|m| json_str(m.key()))
                .collect::<Vec<_>>()
                .join(","),
            o.stopped,
            o.n,
            o.warmup,
            o.scale,
            o.window
        );
        let ratio = |x: f64| {
            if x.is_finite() {
                format!("{x:.3}")
            } else {
                "null".into()
            }
        };
        for (i, s) in self.side.iter().enumerate() {
            let (a, b) = self.measured(s);
            let (sa, sb) = (stats(a), stats(b));
            let (ra, rb) = self.ratios(s);
            let (ra, rb) = (ratio(ra), ratio(rb));
            if i > 0 {
                out.push(',');
            }
            let _ = write!(
                out,
                r#"{{"name":{},"mode":{},"label":{},"setup_ms":{},"teardown_ms":{},"setup_vs_wirehook":{ra},"teardown_vs_wirehook":{rb},"setup_samples_ms":{},"teardown_samples_ms":{}}}"#,
                json_str(s.kind.key()),
                json_str(s.mode.key()),
                json_str(&m.label(s.mode, s.kind)),
                st(sa),
                st(sb),
                arr(a),
                arr(b)
            );
        }
        out.push_str(r#"],"scale":["#);
        for (i, s) in self.scale.iter().enumerate() {
            let [(f_up, f_down), (l_up, l_down)] = self.windows(s);
            if i > 0 {
                out.push(',');
            }
            let _ = write!(
                out,
                r#"{{"name":{},"containers":{},"setup_first_window_ms":{},"setup_last_window_ms":{},"setup_ratio":{:.4},"teardown_first_window_ms":{},"teardown_last_window_ms":{},"teardown_ratio":{:.4},"setup_samples_ms":{},"teardown_samples_ms":{}}}"#,
                json_str(s.kind.key()),
                s.setup.len(),
                st(f_up),
                st(l_up),
                l_up.median / f_up.median,
                st(f_down),
                st(l_down),
                l_down.median / f_down.median,
                arr(&s.setup),
                arr(&s.teardown)
            );
        }
        out.push_str("]}\n");
        out
    }
}

// ------------------------------------------------------------------ main

/// The modes of the side-by-side run: `--modes`, or bridge and macvlan,
/// and ipvlan when the kernel has it (otherwise a note why not), each only
/// if one of the `--only` contenders runs in it.
fn resolve_modes(o: &Opts) -> Res<(Vec<Mode>, Vec<String>)> {
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let no_ipvlan = format!(
        "this kernel ({}) cannot make ipvlan links (no CONFIG_IPVLAN, or the module is missing): \
         run the bench in the VM of tests/vm, whose Debian kernel has ipvlan (see tests/bench/README.md)",
        kernel.trim()
    );
    let mut notes = Vec::new();
    let modes = match &o.modes {
        Some(m) => {
            if m.contains(&Mode::Ipvlan) && !kernel_has_ipvlan() {
                return Err(format!("--modes ipvlan: {no_ipvlan}"));
            }
            m.clone()
        }
        None => {
            let mut m = Mode::ALL.to_vec();
            m.retain(|m| o.only.iter().any(|k| k.runs(*m)));
            if m.contains(&Mode::Ipvlan) && !kernel_has_ipvlan() {
                m.retain(|m| *m != Mode::Ipvlan);
                notes.push(format!("ipvlan was not measured: {no_ipvlan}."));
            }
            m
        }
    };
    Ok((modes, notes))
}

fn preflight(o: &Opts, modes: &[Mode]) -> Res<()> {
    // SAFETY: trivial syscall.
    if unsafe { libc::geteuid() } != 0 {
        return Err("must run as root (network namespaces, mounts)".into());
    }
    let exe = |p: &Path, what: &str, hint: &str| -> Res<()> {
        match fs::metadata(p) {
            Ok(md) if md.is_file() => Ok(()),
            _ => Err(format!("{what} not found at {}: {hint}", p.display())),
        }
    };
    // (mode, contender) pairs that will run; the scale run is bridge.
    let mut runs: Vec<(Mode, Kind)> = modes
        .iter()
        .flat_map(|&m| {
            o.only
                .iter()
                .filter(move |k| k.runs(m))
                .map(move |&k| (m, k))
        })
        .collect();
    if o.scale > 0 {
        runs.extend(o.scale_with.iter().map(|&k| (Mode::Bridge, k)));
    }
    let needs = |k: Kind| runs.iter().any(|r| r.1 == k);
    if needs(Kind::Wirehook) {
        exe(
            &o.wirehook,
            "wirehook binary",
            "build it (cargo build --release --workspace, or tests/bench/run.sh) or pass \
             --wirehook PATH; to measure only the peers pass --only cni,netavark",
        )?;
    }
    for &(mode, _) in runs.iter().filter(|r| r.1 == Kind::Cni) {
        let plugins: &[&str] = match mode {
            Mode::Bridge => &["bridge", "host-local", "portmap"],
            Mode::Macvlan => &["macvlan", "host-local"],
            Mode::Ipvlan => &["ipvlan", "host-local"],
        };
        for p in plugins {
            exe(
                &o.cni_path.join(p),
                &format!("CNI plugin {p}"),
                "apt-get install containernetworking-plugins, or pass --cni-path DIR",
            )?;
        }
    }
    if needs(Kind::Netavark) {
        exe(
            &o.netavark,
            "netavark",
            "apt-get install netavark, or pass --netavark PATH",
        )?;
    }
    if runs
        .iter()
        .any(|&(m, k)| m == Mode::Bridge && k != Kind::Wirehook)
    {
        // portmap and ipMasq (plugins 1.1) and netavark 1.4 program the
        // firewall through the iptables command.
        sh("iptables", &["--version"]).map_err(|e| {
            format!(
                "the CNI plugins and netavark 1.4 need iptables: apt-get install iptables ({e})"
            )
        })?;
    }
    for tool in ["ip", "nft", "sleep"] {
        if sh("sh", &["-c", &format!("command -v {tool}")]).is_err() {
            return Err(format!(
                "{tool} not found (apt-get install iproute2 nftables coreutils)"
            ));
        }
    }
    Ok(())
}

fn run(o: &Opts) -> Res<bool> {
    let (modes, notes) = resolve_modes(o)?;
    preflight(o, &modes)?;
    if !o.only.contains(&Kind::Wirehook) {
        eprintln!();
        eprintln!("######################################################################");
        eprintln!(
            "##  wirehook-bench: wirehook is NOT measured (--only {}).",
            o.only.iter().map(|k| k.key()).collect::<Vec<_>>().join(",")
        );
        eprintln!("##  The table below has no wirehook row and no ratios.");
        eprintln!("######################################################################");
        eprintln!();
    }
    for n in &notes {
        eprintln!("wirehook-bench: NOTE: {n}");
    }
    install_signal_handlers();
    remove_stale();
    let meta = gather_meta(o);
    let mut bench = Bench::new()?;
    let mut side = Vec::new();
    for &mode in &modes {
        let kinds: Vec<Kind> = o.only.iter().copied().filter(|k| k.runs(mode)).collect();
        side.extend(run_phase(
            &mut bench,
            o,
            mode,
            &kinds,
            mode.key(),
            o.warmup + o.n,
        )?);
    }
    let scale = if o.scale > 0 && !o.scale_with.is_empty() {
        run_phase(&mut bench, o, Mode::Bridge, &o.scale_with, "scale", o.scale)?
    } else {
        Vec::new()
    };
    drop(bench);
    let report = Report {
        o,
        meta,
        modes,
        notes,
        side,
        scale,
    };
    let (md, met) = report.markdown();
    match o.json.as_deref() {
        Some("-") => {
            eprint!("{md}");
            print!("{}", report.json());
        }
        Some(path) => {
            print!("{md}");
            fs::write(path, report.json()).map_err(|e| format!("write {path}: {e}"))?;
            eprintln!("wirehook-bench: samples written to {path}");
        }
        None => print!("{md}"),
    }
    Ok(met)
}

fn main() {
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("wirehook-bench: {e}");
            std::process::exit(2);
        }
    };
    match run(&o) {
        Ok(met) => {
            if o.check && !met {
                eprintln!("wirehook-bench: wirehook missed a goal (--check)");
                std::process::exit(1);
            }
        }
        Err(e) => {
            eprintln!("wirehook-bench: {e}");
            std::process::exit(1);
        }
    }
}
