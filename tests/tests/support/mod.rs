//! Helpers shared by the hook's integration tests: wire a bare container,
//! tear it down, and read back what the kernel and the run directory show.
#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;
use wirehook_tests::*;

/// Run setup for bare container `c` with `ann`; returns the output.
pub fn setup(host: &TestHost, c: &Container<'_>, ann: &[(&str, &str)]) -> Output {
    setup_env(host, c, ann, &[])
}

/// [`setup`] with extra environment variables for the hook (test knobs:
/// `WIREHOOK_FAIL_AT`, `WIREHOOK_FINISH_WAIT_MS`, ...).
pub fn setup_env(
    host: &TestHost,
    c: &Container<'_>,
    ann: &[(&str, &str)],
    env: &[(&str, &str)],
) -> Output {
    let bundle = c.bundle(NetNsEntry::Fresh);
    host.wirehook_env(
        &["hook", "createRuntime"],
        Some(&c.state_json(c.id(), "creating", ann, &bundle)),
        env,
    )
}

/// Setup of the container process `c` under the id `id` (a restart keeps
/// the id of the run before it, with a new process and namespace; a test
/// may also wire one process under many ids in turn).
pub fn setup_as(host: &TestHost, c: &Container<'_>, id: &str, ann: &[(&str, &str)]) -> Output {
    let bundle = c.bundle(NetNsEntry::Fresh);
    host.wirehook_hook("createRuntime", &c.state_json(id, "creating", ann, &bundle))
}

/// Write the operator's policy file of `host`.
pub fn write_policy(host: &TestHost, json: &str) {
    let etc = host.root().join("etc/wirehook");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(etc.join("policy.json"), json).unwrap();
}

/// `wirehook network create` of a macvlan network `name` on `parent`, on
/// the test LAN 203.0.113.0/24 (gateway .2, containers from .128/25).
pub fn create_lan_network(host: &TestHost, name: &str, parent: &str) {
    host.wirehook(
        &[
            "network",
            "create",
            "--driver",
            "macvlan",
            "--parent",
            parent,
            "--subnet",
            "203.0.113.0/24",
            "--gateway",
            "203.0.113.2",
            "--ip-range",
            "203.0.113.128/25",
            name,
        ],
        None,
    )
    .expect_success(&format!("network create {name}"));
}

/// Every file and directory under `dir`, recursively, sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(p.clone());
            }
            out.push(p);
        }
    }
    out.sort();
    out
}

/// Every step of a bridge container's setup that `WIREHOOK_FAIL_AT` and
/// `WIREHOOK_KILL_AT` can name, in order (the hook's and the bridge
/// driver's fail points).
pub const BRIDGE_SETUP_STEPS: [&str; 12] = [
    "name",
    "lock",
    "realize",
    "allocate",
    "veth",
    "address",
    "route",
    "ports",
    "bindmount",
    "record",
    "dns",
    "done",
];

/// Setup that must succeed.
pub fn wire(host: &TestHost, c: &Container<'_>, ann: &[(&str, &str)]) {
    setup(host, c, ann).expect_success(&format!("setup of {} with {ann:?}", c.id()));
}

/// Poststop as runc sends it (no pid); must exit 0.
pub fn unwire(host: &TestHost, id: &str) {
    let bundle = host.root().join("no-bundle");
    host.wirehook_hook("poststop", &oci_state(id, "stopped", None, &bundle, &[]))
        .expect_success(&format!("teardown of {id}"));
}

/// The first address of `ifname` in `addrs` (an `ip -j addr` listing) of the given family.
pub fn addr_of(addrs: &Value, ifname: &str, v6: bool) -> Option<(IpAddr, u8)> {
    addrs.as_array()?.iter().find(|l| l["ifname"] == ifname)?["addr_info"]
        .as_array()?
        .iter()
        .filter(|a| a["family"] == if v6 { "inet6" } else { "inet" })
        .filter(|a| a["scope"] == "global")
        .find_map(|a| {
            Some((
                a["local"].as_str()?.parse().ok()?,
                a["prefixlen"].as_u64()? as u8,
            ))
        })
}

pub fn ipv4_of(c: &Container<'_>) -> IpAddr {
    addr_of(&c.addrs_json(), "eth0", false)
        .expect("eth0 has an IPv4 address")
        .0
}

/// Does one ping from the container get an answer?
pub fn pings(c: &Container<'_>, to: &str) -> bool {
    let v6 = to.contains(':');
    let mut argv = vec!["ping", "-c1", "-W1"];
    if v6 {
        argv.push("-6");
    }
    argv.push(to);
    c.exec(&argv).status.success()
}

/// Names of the host's links whose name starts with `prefix`.
pub fn links_with_prefix(host: &TestHost, prefix: &str) -> Vec<String> {
    host.links_json()
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["ifname"].as_str().map(str::to_string))
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// Elements of an nftables map/set in the host's `inet wirehook` table.
pub fn nft_elements(host: &TestHost, set: &str) -> Vec<Value> {
    let out = host.exec(&["nft", "-j", "list", "set", "inet", "wirehook", set]);
    let out = if out.status.success() {
        out
    } else {
        host.exec(&["nft", "-j", "list", "map", "inet", "wirehook", set])
    };
    if !out.status.success() {
        return Vec::new();
    }
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o.get("set").or_else(|| o.get("map")))
        .flat_map(|s| s["elem"].as_array().cloned().unwrap_or_default())
        .collect()
}

/// Files below `dir`, recursively, relative, skipping lock/cursor/log bookkeeping.
pub fn state_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(base: &Path, d: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    walk(dir, dir, &mut out);
    out.retain(|f| {
        !(f.starts_with("locks/")
            || f.starts_with("realized/")
            || f.ends_with("wirehook.log")
            || f.contains("/.cursor-"))
    });
    out.sort();
    out
}

pub fn run_dir(host: &TestHost) -> PathBuf {
    host.root().join("run/wirehook")
}

/// Wait until `f` holds (the kernel removes a dead namespace's veths
/// asynchronously), at most `secs`.
pub fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if f() {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Nothing of wirehook's per-container state is left on the host: no
/// container veths, no records/leases/names/bind mounts, no port elements.
pub fn assert_clean(host: &TestHost) {
    // A dead container's veth pair goes with its namespace, which the
    // kernel destroys later, in one workqueue for the whole machine
    // (cleanup_net): with many namespaces dying at once on a loaded
    // machine that takes seconds (seen: over 5 s with both cores busy and
    // a VM running). A veth wirehook failed to delete stays forever.
    assert!(
        eventually(30, || links_with_prefix(host, "whv").is_empty()),
        "veths left: {:?}",
        links_with_prefix(host, "whv")
    );
    // Leases are released by teardown's finisher a moment after poststop returns.
    assert!(
        eventually(5, || state_files(&run_dir(host)).is_empty()),
        "state left in the run directory: {:?}",
        state_files(&run_dir(host))
    );
    let mounts = || -> Vec<String> {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter(|l| l.contains(&*host.root().to_string_lossy()) && l.contains("/netns/"))
            .map(str::to_string)
            .collect()
    };
    assert!(
        eventually(5, || mounts().is_empty()),
        "bind mounts left: {:?}",
        mounts()
    );
    for m in ["pub4_any", "pub4_ip", "pub6_any", "pub6_ip"] {
        let el = nft_elements(host, m);
        assert!(el.is_empty(), "elements left in {m}: {el:?}");
    }
}

pub fn tcp(netns: &Path, addr: SocketAddr, payload: &str) -> std::io::Result<String> {
    tcp_request(netns, addr, payload, Duration::from_secs(3))
}
