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
//! `--floor` adds the machine's floor: the exec of a static no-op binary plus
//! the kernel requests the hook makes, issued from this warm process through
//! `wirehook_shared` (floor.rs); and an overlay mode (local store).
//!
//! The code is split by contender (wirehook.rs, cni.rs, netavark.rs,
//! floor.rs) and by what it does (opts.rs, host.rs, contender.rs, verify.rs,
//! phase.rs, report.rs). std and libc (for `setns`, `unshare`, `prctl`,
//! `mount`, signals); `wirehook_shared` for the floor's kernel requests.

mod cni;
mod contender;
mod floor;
mod host;
mod netavark;
mod opts;
mod phase;
mod report;
mod util;
mod verify;
mod wirehook;

use contender::*;
use floor::*;
use host::*;
use opts::*;
use phase::*;
use report::*;
use util::*;
use verify::*;

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
/// overlay: the host's own address on the LAN (its underlay), outside
/// the pools the others draw from (they start at .0.2 and stay below
/// .255.0), and the overlay network.
const LAN_HOST: &str = "10.97.255.254";
const WH_OVERLAY_NET: &str = "benchov";
const OVERLAY_SUBNET: &str = "10.94.0.0/16";
const WH_LAN_NET: &str = "benchlan";
/// wirehook-nodns: its bridge network, made with `--dns=false`.
const WH_NODNS_NET: &str = "benchquiet";
const NODNS_SUBNET: &str = "10.95.0.0/16";
const NS_PREFIX: &str = "wh-bench-";
const GOAL_SETUP_MS: f64 = 3.0;
const GOAL_TEARDOWN_MS: f64 = 5.0;
const GOAL_SPEEDUP: f64 = 10.0;
const GOAL_SCALE_RATIO: f64 = 1.2;
/// wirehook within this factor of the floor (issue 11).
const GOAL_FLOOR_RATIO: f64 = 1.3;
/// What names may add to a container start (issue 9).
const GOAL_NAMES_MS: f64 = 0.5;

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
            if !o.floor() {
                m.retain(|m| *m != Mode::Overlay);
            }
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
    if needs(Kind::Wirehook) || needs(Kind::WirehookNoDns) {
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
            Mode::Overlay => &[],
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
        .any(|&(m, k)| m == Mode::Bridge && matches!(k, Kind::Cni | Kind::Netavark))
    {
        // portmap and ipMasq (plugins 1.1) and netavark 1.4 program the
        // firewall through the iptables command.
        sh("iptables", &["--version"]).map_err(|e| {
            format!(
                "the CNI plugins and netavark 1.4 need iptables: apt-get install iptables ({e})"
            )
        })?;
    }
    if o.floor() && sh("sh", &["-c", "command -v cc"]).is_err() {
        return Err(
            "--floor builds a static no-op binary with cc, which is missing: apt-get install gcc"
                .into(),
        );
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
