//! `wirehook-bench-overlay`: what an overlay container costs next to a
//! bridge container on the same host, with 0, 10 and 100 remote hosts in
//! the network.
//!
//! Per scenario (number of remote hosts R): a fresh cluster from the test
//! harness (an underlay namespace with etcd on it, one host namespace), an
//! overlay network created in etcd, R remote hosts registered in etcd as
//! real hosts register (a share and a host record each, made through the
//! library's claim), and a first overlay container started untimed, so the
//! host has joined and programmed R peers. Then `-n` containers of each
//! kind, interleaved (overlay #1, bridge #1, overlay #2, ...): `wirehook
//! hook createRuntime` and, in reverse order, `poststop`, each timed from
//! spawn to exit, the process entering the host namespace with setns(2)
//! before exec (no nsenter in the timing). Every setup is checked (eth0
//! with an address in the container) untimed. etcd's request counter is
//! read before and after the timed overlay setups: requests per container
//! start.
//!
//! No traffic is sent: remote hosts exist only as keys; their entries
//! point at addresses no packet goes to.
//!
//! Usage: `tests/bench/run.sh`-built binaries, as root:
//! `target/release/wirehook-bench-overlay [-n N] [--remote 0,10,100]`
//! (`WIREHOOK_BIN` names the wirehook binary; default: next to this one).

use std::io::Write;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wirehook_shared::cluster::{Etcd, StoreConfig};
use wirehook_shared::overlay::{self, Identity};
use wirehook_tests::cluster::Cluster;
use wirehook_tests::*;

struct Opts {
    n: usize,
    remote: Vec<usize>,
}

fn parse_args() -> Opts {
    let mut o = Opts {
        n: 50,
        remote: vec![0, 10, 100],
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "-n" => o.n = args.next().and_then(|v| v.parse().ok()).expect("-n N"),
            "--remote" => {
                o.remote = args
                    .next()
                    .expect("--remote LIST")
                    .split(',')
                    .map(|v| v.parse().expect("--remote: numbers"))
                    .collect()
            }
            "-h" | "--help" => {
                println!("wirehook-bench-overlay [-n CONTAINERS] [--remote 0,10,100]");
                std::process::exit(0);
            }
            other => panic!("unknown argument {other}: see --help"),
        }
    }
    o
}

/// Runs `wirehook hook STAGE` in `host`'s namespace (setns before exec),
/// state on stdin; returns the wall time. Panics on failure.
fn timed_hook(host: &TestHost, stage: &str, state: &str) -> Duration {
    let ns = std::fs::File::open(host.netns_path()).expect("open host netns");
    let fd = ns.as_raw_fd();
    let mut c = Command::new(TestHost::wirehook_bin());
    c.args(["hook", stage])
        .env("WIREHOOK_ROOT", host.root())
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: setns is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        c.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let t = Instant::now();
    let mut child = c.spawn().expect("spawn wirehook");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(state.as_bytes())
        .expect("state to stdin");
    let out = child.wait_with_output().expect("wait wirehook");
    let d = t.elapsed();
    assert!(
        out.status.success(),
        "wirehook hook {stage} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    d
}

/// Registers `count` remote hosts in network `net` as they would register
/// themselves (a claim each), from a thread inside `host`'s namespace.
fn register_remote_hosts(host: &TestHost, store_url: &str, net: &str, count: usize) {
    let path = host.netns_path().to_path_buf();
    let url = store_url.to_string();
    let net = net.to_string();
    std::thread::spawn(move || {
        let ns = wirehook_shared::netns::NetNs::open(&path).expect("open netns");
        let _in = ns.enter().expect("enter netns");
        let etcd = Etcd::new(&StoreConfig {
            url: Some(url),
            ..Default::default()
        })
        .expect("etcd client");
        let mut view = overlay::load_view(&etcd, &net).expect("view");
        for i in 0..count {
            let me = Identity {
                host: format!("remote{i}"),
                hostname: format!("remote{i}"),
                underlay_if: "eth0".into(),
                underlay_index: 0,
                underlay_ip: Ipv4Addr::new(198, 18, (i / 250) as u8, (i % 250) as u8 + 1),
                underlay_mtu: 1500,
            };
            overlay::claim(&etcd, &mut view, &me, false).expect("claim");
        }
    })
    .join()
    .expect("register remote hosts");
}

fn median(v: &mut [Duration]) -> f64 {
    v.sort();
    let m = v[v.len() / 2];
    m.as_secs_f64() * 1000.0
}

struct Row {
    remote: usize,
    bridge_setup: f64,
    overlay_setup: f64,
    bridge_teardown: f64,
    overlay_teardown: f64,
    requests_per_start: f64,
}

fn scenario(remote: usize, n: usize) -> Row {
    let cluster = Cluster::with_etcd("bov");
    let host = cluster.add_host();
    host.wirehook(
        &[
            "network",
            "create",
            "--driver",
            "overlay",
            "--subnet",
            "10.120.0.0/16",
            "ov",
        ],
        None,
    )
    .expect_success("create overlay network");
    register_remote_hosts(&host, &cluster.store_url(), "ov", remote);
    // Untimed: the host joins (R peers programmed), the bridge network
    // exists.
    let mut warm = Vec::new();
    for (tag, net) in [("wo", "ov"), ("wb", "bridge")] {
        let c = host.container(tag);
        let bundle = c.bundle(NetNsEntry::Fresh);
        let st = c.state_json(c.id(), "creating", &[("io.wirehook.network", net)], &bundle);
        host.wirehook_hook("createRuntime", &st)
            .expect_success("warm-up container");
        warm.push(c);
    }
    let fdb = host
        .exec(&["bridge", "fdb", "show", "dev", "vx-ov"])
        .stdout_str()
        .lines()
        .filter(|l| l.contains("dst"))
        .count();
    assert_eq!(fdb, remote, "the host programmed every remote host");

    let mut containers = Vec::new();
    for i in 0..n {
        containers.push((host.container(&format!("o{i}")), "ov"));
        containers.push((host.container(&format!("b{i}")), "bridge"));
    }
    let (mut os, mut bs, mut ot, mut bt) = (vec![], vec![], vec![], vec![]);
    let before = cluster.etcd_requests();
    let mut overlay_starts = 0u64;
    for (c, net) in &containers {
        let bundle = c.bundle(NetNsEntry::Fresh);
        let st = c.state_json(c.id(), "creating", &[("io.wirehook.network", net)], &bundle);
        let d = timed_hook(&host, "createRuntime", &st);
        assert!(
            c.exec(&["ip", "-4", "-o", "addr", "show", "eth0"])
                .stdout_str()
                .contains("inet "),
            "{} has an address",
            c.id()
        );
        if *net == "ov" {
            os.push(d);
            overlay_starts += 1;
        } else {
            bs.push(d);
        }
    }
    let requests = cluster.etcd_requests() - before;
    for (c, net) in containers.iter().rev() {
        let bundle = host.root().join("no-bundle");
        let st = oci_state(c.id(), "stopped", None, &bundle, &[]);
        let d = timed_hook(&host, "poststop", &st);
        if *net == "ov" {
            ot.push(d);
        } else {
            bt.push(d);
        }
    }
    Row {
        remote,
        bridge_setup: median(&mut bs),
        overlay_setup: median(&mut os),
        bridge_teardown: median(&mut bt),
        overlay_teardown: median(&mut ot),
        requests_per_start: requests as f64 / overlay_starts as f64,
    }
}

fn main() {
    let o = parse_args();
    if std::env::var_os("WIREHOOK_BIN").is_none() {
        let exe = std::env::current_exe().expect("current_exe");
        std::env::set_var("WIREHOOK_BIN", exe.with_file_name("wirehook"));
    }
    let mut rows = Vec::new();
    for &r in &o.remote {
        eprintln!(
            "scenario: {r} remote hosts, {} containers of each kind",
            o.n
        );
        rows.push(scenario(r, o.n));
    }
    println!("| remote hosts | bridge setup | overlay setup | ratio | bridge teardown | overlay teardown | ratio | etcd requests per overlay start |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {:.2} ms | {:.2} ms | {:.2}× | {:.2} ms | {:.2} ms | {:.2}× | {:.2} |",
            r.remote,
            r.bridge_setup,
            r.overlay_setup,
            r.overlay_setup / r.bridge_setup,
            r.bridge_teardown,
            r.overlay_teardown,
            r.overlay_teardown / r.bridge_teardown,
            r.requests_per_start
        );
    }
    let worst = rows
        .iter()
        .map(|r| r.overlay_setup / r.bridge_setup)
        .fold(0.0, f64::max);
    println!();
    println!(
        "goal: overlay start at most 2× a bridge start with 100 remote hosts, at most one etcd request: {}",
        if worst <= 2.0 && rows.iter().all(|r| r.requests_per_start <= 1.0) {
            "met"
        } else {
            "NOT met"
        }
    );
}
