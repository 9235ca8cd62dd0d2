//! `wirehook-bench-dns`: wirehook's container resolver against
//! aardvark-dns 1.4 (Debian's, podman's resolver), side by side on one
//! machine, with the same records and the same upstream.
//!
//! Setup (in a test host namespace of the harness): `-n` bare containers
//! wired on the built-in bridge by the real hook, named `svc0`, `svc1`, ...
//! (wirehook's resolver then serves them at 127.0.0.11 inside each); the
//! same containers (id, address, name) written to an aardvark-dns config
//! for the bridge network, aardvark listening on the bridge's gateway
//! (port 53) in the host namespace, with the host's resolv.conf replaced
//! (private mount namespace) by one naming the test's own upstream on the
//! uplink peer (`*.example.test`). Container 0 asks both, from its own
//! namespace: wirehook at 127.0.0.11, aardvark at the gateway (its source
//! address is a container of aardvark's config).
//!
//! Measured per query mix (a container name; an unknown single label; a
//! forwarded name): queries per second with dnsperf (`-c 1 -q 64`, `--secs`
//! each, the two servers alternating), and p50/p99 latency at a fixed rate
//! (`dnsperf -Q RATE -v`, per-query latencies). Then resident memory of
//! both daemons, and how long a new container's name takes to resolve
//! after its setup: wirehook from the hook's start to the first answer;
//! aardvark from appending its line and SIGHUP (what netavark does) to the
//! first answer.
//!
//! Usage, as root, after `cargo build --release -p wirehook` and
//! `cargo build -p wirehook-tests --bin wirehook-bench-dns`:
//! `WIREHOOK_BIN=target/release/wirehook target/debug/wirehook-bench-dns [-n 1000] [--secs 10] [--rate 2000]`
//! (needs the Debian packages dnsperf and aardvark-dns).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wirehook_shared::dns::wire::TYPE_A;
use wirehook_tests::*;

const AARDVARK: &str = "/usr/lib/podman/aardvark-dns";

struct Opts {
    n: usize,
    secs: u32,
    rate: u32,
    hook: usize,
}

fn parse_args() -> Opts {
    let mut o = Opts {
        n: 1000,
        secs: 10,
        rate: 2000,
        hook: 40,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut num = || args.next().and_then(|v| v.parse().ok()).expect("a number");
        match a.as_str() {
            "-n" => o.n = num() as usize,
            "--secs" => o.secs = num(),
            "--rate" => o.rate = num(),
            "--hook" => o.hook = num() as usize,
            "-h" | "--help" => {
                println!("wirehook-bench-dns [-n CONTAINERS] [--secs S] [--rate QPS]");
                std::process::exit(0);
            }
            other => panic!("unknown argument {other}: see --help"),
        }
    }
    o
}

fn hex_id(i: usize) -> String {
    format!("{:064x}", 0xbe0c_0000_u64 + i as u64)
}

/// VmRSS (anonymous + file) of `pid`, as "total KiB (anon A, file F)".
fn rss(pid: i32) -> String {
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let get = |k: &str| -> u64 {
        st.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    };
    format!(
        "{} KiB (anonymous {} KiB, file {} KiB)",
        get("VmRSS:"),
        get("RssAnon:"),
        get("RssFile:")
    )
}

/// dnsperf in `netns` against `server`; returns its stdout.
fn dnsperf(netns: &Path, server: IpAddr, file: &Path, extra: &[&str]) -> String {
    let out = Command::new("nsenter")
        .arg(format!("--net={}", netns.display()))
        .args(["--", "dnsperf", "-s", &server.to_string(), "-d"])
        .arg(file)
        .args(extra)
        .stderr(Stdio::null())
        .output()
        .expect("run dnsperf (apt-get install dnsperf)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn qps(out: &str) -> f64 {
    out.lines()
        .find(|l| l.trim_start().starts_with("Queries per second:"))
        .and_then(|l| l.split(':').nth(1)?.trim().parse().ok())
        .unwrap_or(0.0)
}

fn lost(out: &str) -> String {
    out.lines()
        .find(|l| l.trim_start().starts_with("Queries lost:"))
        .map(|l| l.trim().to_string())
        .unwrap_or_default()
}

/// Per-query latencies (seconds) of `dnsperf -v` (lines `> RCODE name type latency`).
fn latencies(out: &str) -> Vec<f64> {
    let mut v: Vec<f64> = out
        .lines()
        .filter(|l| l.starts_with('>'))
        .filter_map(|l| l.split_whitespace().last()?.parse().ok())
        .collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v
}

fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() - 1) as f64 * p).round() as usize] * 1e6
}

/// `WIREHOOK_TIMING` phases of one setup: name -> microseconds.
fn phases(stderr: &str) -> std::collections::HashMap<String, u64> {
    stderr
        .split_whitespace()
        .filter_map(|w| {
            let (k, v) = w.split_once('=')?;
            Some((k.to_string(), v.strip_suffix("us")?.parse().ok()?))
        })
        .collect()
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

/// What names add to a container start: `k` setups on a `--dns=false`
/// network and `k` on one with names, interleaved, in-process time of
/// each (WIREHOOK_TIMING total; process start and exit are the same for
/// both) and the attach round trip alone. The resolver is started by the
/// first named setup, untimed.
fn start_cost(host: &TestHost, k: usize) {
    if k == 0 {
        return;
    }
    for (net, dns) in [("quiet", "false"), ("named", "true")] {
        let sub = if dns == "false" {
            "10.70.0.0/22"
        } else {
            "10.71.0.0/22"
        };
        host.wirehook(
            &[
                "network",
                "create",
                "--subnet",
                sub,
                &format!("--dns={dns}"),
                net,
            ],
            None,
        )
        .expect_success("network create");
    }
    let mut keep = Vec::new();
    let mut totals: std::collections::HashMap<&str, Vec<u64>> = Default::default();
    let mut attach = Vec::new();
    let mut first = 0;
    for i in 0..=k {
        for net in ["quiet", "named"] {
            let c = host.container(&format!("{net}{i}"));
            let bundle = c.bundle(NetNsEntry::Fresh);
            let name = format!("{net}{i}");
            let ann = [
                ("io.wirehook.network", net),
                ("io.wirehook.name", name.as_str()),
            ];
            let out = host
                .wirehook_env(
                    &["hook", "createRuntime"],
                    Some(&c.state_json(c.id(), "creating", &ann, &bundle)),
                    &[("WIREHOOK_TIMING", "1")],
                )
                .expect_success("setup");
            let p = phases(&out.stderr_str());
            if i == 0 {
                if net == "named" {
                    first = p.get("dns").copied().unwrap_or(0);
                }
            } else {
                totals.entry(net).or_default().push(p["total"]);
                if net == "named" {
                    attach.push(p.get("dns").copied().unwrap_or(0));
                }
            }
            keep.push(c);
        }
    }
    let q = median(totals.remove("quiet").unwrap_or_default());
    let n = median(totals.remove("named").unwrap_or_default());
    println!(
        "\ncontainer start, in-process median of {k} each (interleaved): --dns=false {q} µs, with names {n} µs (difference {} µs); the attach round trip alone: median {} µs; the first start, which starts the resolver: {first} µs",
        n as i64 - q as i64,
        median(attach)
    );
    for c in &keep {
        let bundle = host.root().join("none");
        host.wirehook_hook(
            "poststop",
            &oci_state(c.id(), "stopped", None, &bundle, &[]),
        )
        .expect_success("teardown");
    }
}

fn main() {
    let o = parse_args();
    let host = TestHost::new("dnsbench");
    let up = host.uplink();
    let upstream = TestUpstream::start(
        &up.peer_netns_path(),
        SocketAddr::new(IpAddr::V4(up.peer_addr()), 53),
        "example.test",
        Ipv4Addr::new(192, 0, 2, 77),
    );
    upstream.configure(&host, "corp.test");

    start_cost(&host, o.hook);

    eprintln!("wiring {} containers ...", o.n);
    let mut cs = Vec::new();
    let t = Instant::now();
    for i in 0..o.n {
        let c = host.container(&format!("c{i}"));
        let bundle = c.bundle(NetNsEntry::Fresh);
        let name = format!("svc{i}");
        let ann = [
            ("io.wirehook.network", "bridge"),
            ("io.wirehook.name", name.as_str()),
        ];
        host.wirehook_hook(
            "createRuntime",
            &c.state_json(c.id(), "creating", &ann, &bundle),
        )
        .expect_success("setup");
        cs.push(c);
    }
    eprintln!("  {:.1?}", t.elapsed());
    let addr = |c: &Container<'_>| -> Ipv4Addr {
        let a = c.addrs_json();
        a.as_array()
            .unwrap()
            .iter()
            .find(|l| l["ifname"] == "eth0")
            .and_then(|l| {
                l["addr_info"]
                    .as_array()?
                    .iter()
                    .find(|x| x["family"] == "inet")?["local"]
                    .as_str()?
                    .parse()
                    .ok()
            })
            .expect("eth0 address")
    };
    let ips: Vec<Ipv4Addr> = cs.iter().map(addr).collect();
    let def: serde_json::Value = serde_json::from_slice(
        &std::fs::read(host.root().join("etc/wirehook/networks/bridge.json")).unwrap(),
    )
    .unwrap();
    let gw: Ipv4Addr = def["subnets"][0]["gateway"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    // aardvark-dns: the same records, on the gateway, same upstream.
    let adir = host.root().join("aardvark");
    std::fs::create_dir_all(&adir).unwrap();
    let mut conf = format!("{gw}\n");
    for (i, ip) in ips.iter().enumerate() {
        conf.push_str(&format!("{} {ip}  svc{i}\n", hex_id(i)));
    }
    std::fs::write(adir.join("bridge"), &conf).unwrap();
    let rc = host.root().join("resolv.conf");
    let script = format!(
        "mount --bind {} /etc/resolv.conf && exec {AARDVARK} --config {} -p 53 run",
        rc.display(),
        adir.display()
    );
    let st = host
        .command(&[
            "unshare",
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
        ])
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("start aardvark-dns");
    assert!(st.success(), "aardvark-dns did not start");
    let apid: i32 = std::fs::read_to_string(adir.join("aardvark.pid"))
        .expect("aardvark.pid")
        .trim()
        .parse()
        .unwrap();
    let client = cs[0].netns_path();
    let gw_ip = IpAddr::V4(gw);
    let wh_ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 11));
    for (what, server) in [("aardvark", gw_ip), ("wirehook", wh_ip)] {
        let t = Instant::now();
        while dns_query(
            &client,
            SocketAddr::new(server, 53),
            "svc1",
            TYPE_A,
            Duration::from_millis(200),
        )
        .map(|a| a.addrs().is_empty())
        .unwrap_or(true)
        {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "{what} does not answer"
            );
        }
    }
    let whpid: i32 = std::fs::read_to_string(host.root().join("run/wirehook/dns.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    let qdir = host.root().join("queries");
    std::fs::create_dir_all(&qdir).unwrap();
    let mixes = [
        (
            "container name",
            "hit",
            (0..1000)
                .map(|i| format!("svc{} A", (i * 7919) % o.n))
                .collect::<Vec<_>>(),
        ),
        (
            "unknown single label",
            "nx",
            (0..1000).map(|i| format!("nosuch{i} A")).collect(),
        ),
        (
            "forwarded name",
            "fwd",
            (0..1000).map(|i| format!("h{i}.example.test A")).collect(),
        ),
    ];
    println!(
        "\n{} containers; {}-second dnsperf runs (-c 1 -q 64); latency at {} queries/s\n",
        o.n, o.secs, o.rate
    );
    println!("| query | server | queries/s | lost | p50 | p99 |");
    println!("|---|---|--:|---|--:|--:|");
    let secs = o.secs.to_string();
    let rate = o.rate.to_string();
    for (label, tag, lines) in &mixes {
        let file = qdir.join(tag);
        std::fs::write(&file, lines.join("\n") + "\n").unwrap();
        for (what, server) in [("aardvark-dns 1.4.0", gw_ip), ("wirehook", wh_ip)] {
            let out = dnsperf(
                &client,
                server,
                &file,
                &["-l", &secs, "-c", "1", "-q", "64"],
            );
            let q = qps(&out);
            let lat = dnsperf(&client, server, &file, &["-l", "3", "-Q", &rate, "-v"]);
            let l = latencies(&lat);
            println!(
                "| {label} | {what} | {q:.0} | {} | {:.0} µs | {:.0} µs |",
                lost(&out),
                pct(&l, 0.5),
                pct(&l, 0.99)
            );
        }
    }
    // Steady state: what the last runs left in flight has settled.
    std::thread::sleep(Duration::from_millis(2500));
    println!(
        "\nresident memory with {} names: wirehook dns {}, aardvark-dns {}",
        o.n,
        rss(whpid),
        rss(apid)
    );

    // A new name: how long from the start until it resolves.
    let newc = host.container("new");
    let bundle = newc.bundle(NetNsEntry::Fresh);
    let ann = [
        ("io.wirehook.network", "bridge"),
        ("io.wirehook.name", "fresh"),
    ];
    let t = Instant::now();
    host.wirehook_hook(
        "createRuntime",
        &newc.state_json(newc.id(), "creating", &ann, &bundle),
    )
    .expect_success("setup");
    let hook = t.elapsed();
    let first = dns_query(
        &client,
        SocketAddr::new(wh_ip, 53),
        "fresh",
        TYPE_A,
        Duration::from_secs(1),
    )
    .expect("answer");
    let wh_new = t.elapsed();
    assert!(
        !first.addrs().is_empty(),
        "fresh resolves as soon as the hook returned"
    );
    let new_ip = addr(&newc);
    let t = Instant::now();
    std::fs::write(
        adir.join("bridge"),
        format!("{conf}{} {new_ip}  fresh\n", hex_id(o.n + 1)),
    )
    .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(apid),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    while dns_query(
        &client,
        SocketAddr::new(gw_ip, 53),
        "fresh",
        TYPE_A,
        Duration::from_millis(100),
    )
    .map(|a| a.addrs().is_empty())
    .unwrap_or(true)
    {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "aardvark never learns fresh"
        );
    }
    let ak_new = t.elapsed();
    println!(
        "new name resolvable: wirehook {:.1} ms after the hook started (hook {:.1} ms; the name answers when it returns), aardvark {:.1} ms after SIGHUP",
        wh_new.as_secs_f64() * 1e3,
        hook.as_secs_f64() * 1e3,
        ak_new.as_secs_f64() * 1e3
    );
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(apid),
        nix::sys::signal::Signal::SIGKILL,
    );
    println!("upstream saw {} forwarded questions", upstream.seen());
}
