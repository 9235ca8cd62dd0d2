//! wiretop against real namespaces: dozens of namespaces with veths on a
//! bridge, checked against what the kernel reports (`ip -j -s link`), and
//! rates against a known amount of traffic; veth pairs between namespaces
//! (every end ifindex 2) and containers on a bridge, every peer checked.
//! Runs the real `wiretop` binary (`--once --json`, `--json --interval`).

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;
use support::wire;
use wirehook_shared::inspect::{Discovery, Namespace, Reader};
use wirehook_shared::paths::Paths;
use wirehook_tests::*;

const N: usize = 30;

fn wiretop_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps")
        .join("wiretop");
    assert!(
        bin.exists(),
        "wiretop is missing at {}: build it first: cargo build --workspace",
        bin.display()
    );
    bin
}

/// Named namespaces of this test, deleted on drop.
struct Netns(Vec<String>);

impl Drop for Netns {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

fn sh(script: &str) {
    let out = Command::new("sh")
        .args(["-ec", script])
        .output()
        .expect("sh");
    out.expect_success(script);
}

fn ip_json(ns: &str, args: &[&str]) -> Value {
    let out = Command::new("ip")
        .args(["-n", ns, "-j", "-s"])
        .args(args)
        .output()
        .expect("ip");
    serde_json::from_slice(&out.expect_success("ip -j").stdout).expect("ip json")
}

fn eth0_stats(ns: &str) -> Value {
    ip_json(ns, &["link", "show", "eth0"])[0].clone()
}

fn namespace<'a>(snap: &'a Value, netns_name: &str) -> Option<&'a Value> {
    snap["namespaces"].as_array().unwrap().iter().find(|n| {
        n["names"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["source"] == "netns" && x["name"] == netns_name)
    })
}

fn by_inode(snap: &Value, inode: u64) -> &Value {
    snap["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["inode"] == inode)
        .expect("namespace by inode")
}

fn link<'a>(ns: &'a Value, name: &str) -> &'a Value {
    ns["links"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == name)
        .unwrap_or_else(|| panic!("link {name} in {ns}"))
}

fn build(host: &TestHost) -> Netns {
    let h = host.name();
    let names: Vec<String> = (0..N).map(|i| format!("{h}-n{i}")).collect();
    let guard = Netns(names.clone());
    let hp = host.netns_path().display().to_string();
    sh(&format!(
        "nsenter --net={hp} sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
         ip -n {h} link add br0 type bridge
         ip -n {h} link set br0 up
         ip -n {h} addr add 10.77.0.1/24 dev br0"
    ));
    let mut script = String::new();
    for (i, n) in names.iter().enumerate() {
        script.push_str(&format!(
            "ip netns add {n}
             nsenter --net=/run/netns/{n} sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
             ip -n {h} link add hv{i} type veth peer name eth0 netns {n}
             ip -n {h} link set hv{i} master br0 up
             ip -n {n} link set lo up
             ip -n {n} link set eth0 up
             ip -n {n} addr add 10.77.0.{}/24 dev eth0\n",
            i + 2
        ));
    }
    sh(&script);
    guard
}

#[test]
fn snapshot_matches_kernel() {
    let host = TestHost::new("wtinsp");
    let nss = build(&host);
    // Counters only grow, and the kernel may still receive a stray frame
    // (an IGMP report flooded by the bridge) while the test runs: the
    // snapshot must lie between what the kernel showed before and after.
    let before: Vec<Value> = nss.0.iter().map(|n| eth0_stats(n)).collect();
    let out = Command::new(wiretop_bin())
        .args(["--once", "--json"])
        .output()
        .expect("run wiretop");
    let snap: Value =
        serde_json::from_slice(&out.expect_success("wiretop --once --json").stdout).expect("JSON");
    let hns = by_inode(&snap, host.netns_inode());
    assert!(hns["error"].is_null(), "{}", hns["error"]);
    let br = link(hns, "br0");
    assert_eq!(br["kind"], "bridge");
    assert!(hns["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["address"] == "10.77.0.1/24"));
    for (i, n) in nss.0.iter().enumerate() {
        let ns = namespace(&snap, n).unwrap_or_else(|| panic!("namespace {n} not in the snapshot"));
        assert!(ns["error"].is_null());
        let inode = ns["inode"].as_u64().unwrap();
        let eth0 = link(ns, "eth0");
        assert_eq!(eth0["kind"], "veth");
        assert_eq!(eth0["state"], "up");
        assert_eq!(
            eth0["peer"]["netns_inode"],
            host.netns_inode(),
            "{n}: eth0's peer is in the host"
        );
        assert_eq!(eth0["peer"]["ifname"], format!("hv{i}"));
        let hv = link(hns, &format!("hv{i}"));
        assert_eq!(hv["master"], "br0");
        assert_eq!(hv["peer"]["netns_inode"], inode);
        assert_eq!(hv["peer"]["ifname"], "eth0");
        assert_eq!(link(ns, "lo")["kind"], "loopback");
        assert!(ns["addresses"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["address"] == format!("10.77.0.{}/24", i + 2)));
        assert!(ns["routes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["destination"] == "10.77.0.0/24" && r["dev"] == "eth0"));
        let after = eth0_stats(n);
        for (dir, key) in [
            ("rx", "bytes"),
            ("tx", "bytes"),
            ("rx", "packets"),
            ("tx", "packets"),
            ("rx", "dropped"),
            ("tx", "errors"),
        ] {
            let seen = eth0["stats"][format!("{dir}_{key}")].as_u64().unwrap();
            let lo = before[i]["stats64"][dir][key].as_u64().unwrap();
            let hi = after["stats64"][dir][key].as_u64().unwrap();
            assert!(
                (lo..=hi).contains(&seen),
                "{n} {dir}_{key}: wiretop saw {seen}, the kernel showed {lo} before and {hi} after"
            );
        }
        let kl = &after;
        assert_eq!(eth0["mtu"], kl["mtu"]);
        assert_eq!(eth0["mac"], kl["address"]);
    }
}

#[test]
fn rates_follow_traffic_and_namespaces_come_and_go() {
    let host = TestHost::new("wtrate");
    let mut nss = build(&host);
    let (a, b) = (nss.0[0].clone(), nss.0[1].clone());
    let gone = nss.0[N - 1].clone();
    let mut child = Command::new(wiretop_bin())
        .args(["--json", "--interval", "0.4", "--count", "12"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn wiretop");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    // 20 echo requests of 972 bytes payload: 1014-byte frames on eth0.
    const COUNT: u64 = 20;
    const FRAME: u64 = 972 + 8 + 20 + 14;
    let ping = Command::new("ip")
        .args([
            "netns",
            "exec",
            &a,
            "ping",
            "-q",
            "-c",
            &COUNT.to_string(),
            "-i",
            "0.05",
            "-s",
            "972",
            "10.77.0.3",
        ])
        .output()
        .expect("ping");
    ping.expect_success("ping between two namespaces");
    sh(&format!("ip netns del {gone}"));
    nss.0.retain(|n| n != &gone);
    let fresh = format!("{}-fresh", host.name());
    sh(&format!("ip netns add {fresh}"));
    nss.0.push(fresh.clone());
    let rest: Vec<Value> = lines
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect();
    assert!(child.wait().unwrap().success(), "wiretop exits cleanly");
    assert_eq!(rest.len(), 11);
    let last = rest.last().unwrap();
    let tx = |s: &Value| {
        link(namespace(s, &a).unwrap(), "eth0")["stats"]["tx_bytes"]
            .as_u64()
            .unwrap()
    };
    let rx_b = |s: &Value| {
        link(namespace(s, &b).unwrap(), "eth0")["stats"]["rx_bytes"]
            .as_u64()
            .unwrap()
    };
    let sent = tx(last) - tx(&first);
    // Echo requests plus at most an ARP exchange.
    assert!(
        (COUNT * FRAME..=COUNT * FRAME + 200).contains(&sent),
        "a sent {sent} bytes, expected {}",
        COUNT * FRAME
    );
    let got = rx_b(last) - rx_b(&first);
    assert!(
        (COUNT * FRAME..=COUNT * FRAME + 200).contains(&got),
        "b got {got}"
    );
    // The rates integrate to the counters' change.
    let integral: f64 = rest
        .iter()
        .map(|s| {
            let l = link(namespace(s, &a).unwrap(), "eth0");
            l["rate"]["tx_bytes"].as_f64().unwrap() * s["interval"].as_f64().unwrap()
        })
        .sum();
    assert!(
        (integral - sent as f64).abs() < 1.0,
        "rates sum to {integral}, counters moved {sent}"
    );
    // Some sample saw the traffic at its rate: about FRAME*COUNT/1s.
    let peak = rest
        .iter()
        .map(|s| {
            link(namespace(s, &a).unwrap(), "eth0")["rate"]["tx_bytes"]
                .as_f64()
                .unwrap()
        })
        .fold(0.0, f64::max);
    assert!(peak > 5_000.0, "peak tx rate {peak}");
    // The host's end saw the same bytes, received.
    let hv = |s: &Value| {
        link(by_inode(s, host.netns_inode()), "hv0")["stats"]["rx_bytes"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(hv(last) - hv(&first), sent, "both ends of the veth agree");
    // Namespaces that went away or appeared: no errors, present or not.
    assert!(namespace(&first, &gone).is_some());
    assert!(
        namespace(last, &gone).is_none(),
        "a deleted namespace disappears"
    );
    let f = namespace(last, &fresh).expect("a new namespace shows up");
    assert!(f["error"].is_null());
    assert_eq!(link(f, "lo")["state"], "down");
    for s in &rest {
        for n in &nss.0 {
            if let Some(ns) = namespace(s, n) {
                assert!(ns["error"].is_null(), "{n}: {}", ns["error"]);
            }
        }
    }
}

/// A copy of the wiretop binary that any user may run, removed on drop
/// (the build tree may not be open to an unprivileged user).
struct BinCopy(PathBuf);

impl BinCopy {
    fn new(tag: &str) -> BinCopy {
        let dir = std::env::temp_dir().join(format!("{tag}-bin"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).expect("temp dir");
        let bin = dir.join("wiretop");
        std::fs::copy(wiretop_bin(), &bin).expect("copy wiretop");
        sh(&format!("chmod 0755 {} {}", dir.display(), bin.display()));
        BinCopy(dir)
    }
    fn bin(&self) -> PathBuf {
        self.0.join("wiretop")
    }
}

impl Drop for BinCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// wiretop without the privilege to enter other namespaces (as user
/// nobody, and as root with every capability dropped): a namespace it
/// may not enter is listed with that reason, its own namespace is still
/// read, and it exits 0.
#[test]
fn namespace_it_may_not_enter_is_listed_with_the_reason() {
    let host = TestHost::new("wtdeny");
    let locked = format!("{}-locked", host.name());
    let _guard = Netns(vec![locked.clone()]);
    let h = host.name();
    sh(&format!(
        "ip netns add {locked}
         ip -n {h} link add dv0 type veth peer name eth0 netns {locked}
         ip -n {locked} link set eth0 up"
    ));
    let copy = BinCopy::new(h);
    let own = std::fs::read_link("/proc/self/ns/net").unwrap();
    let own: u64 = own
        .to_str()
        .and_then(|s| s.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok())
        .expect("own namespace inode");
    let ways: [(&str, &[&str]); 2] = [
        (
            "user nobody",
            &["--reuid=65534", "--regid=65534", "--clear-groups"],
        ),
        (
            "root without capabilities",
            &["--inh-caps=-all", "--bounding-set=-all"],
        ),
    ];
    for (how, args) in ways {
        let out = Command::new("setpriv")
            .args(args)
            .arg("--")
            .arg(copy.bin())
            .args(["--once", "--json"])
            .output()
            .unwrap_or_else(|e| panic!("setpriv (util-linux) is needed: {e}"));
        let out = out.expect_success(&format!("wiretop --once --json as {how}"));
        let snap: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        let ns = namespace(&snap, &locked)
            .unwrap_or_else(|| panic!("as {how}: {locked} is not listed: {snap}"));
        let err = ns["error"]
            .as_str()
            .unwrap_or_else(|| panic!("as {how}: {locked} has no error, so it was entered: {ns}"));
        assert!(
            err.contains("may not enter") && err.contains("EPERM"),
            "as {how}: {err}"
        );
        assert_eq!(ns["links"].as_array().map(Vec::len), Some(0), "{ns}");
        // Its own namespace needs no privilege: read in full.
        let me = by_inode(&snap, own);
        assert!(
            me["error"].is_null(),
            "as {how}: own namespace: {}",
            me["error"]
        );
        assert!(
            me["links"]
                .as_array()
                .unwrap()
                .iter()
                .any(|l| l["kind"] == "loopback"),
            "as {how}: {me}"
        );
    }
    // As root with its capabilities, the same namespace is read.
    let out = Command::new(copy.bin())
        .args(["--once", "--json"])
        .output()
        .expect("wiretop");
    let snap: Value =
        serde_json::from_slice(&out.expect_success("wiretop as root").stdout).unwrap();
    let ns = namespace(&snap, &locked).expect("listed");
    assert!(ns["error"].is_null(), "{}", ns["error"]);
    assert_eq!(link(ns, "eth0")["peer"]["ifname"], "dv0");
}

fn by_inode_ref(snap: &wirehook_shared::inspect::Snapshot, inode: u64) -> &Namespace {
    snap.namespace(inode).expect("namespace by inode")
}

/// The inode of a namespace file, or of the test process's own namespace.
fn inode_of(path: &str) -> u64 {
    sys::ns_inode(Path::new(path)).unwrap_or_else(|| panic!("inode of {path}"))
}

/// `ip -j link show dev` inside namespace file `ns`.
fn ip_link(ns: &str, dev: &str) -> Value {
    let out = Command::new("nsenter")
        .arg(format!("--net={ns}"))
        .args(["ip", "-j", "link", "show", "dev", dev])
        .output()
        .expect("ip");
    serde_json::from_slice::<Value>(&out.expect_success("ip -j link").stdout).expect("ip json")[0]
        .clone()
}

/// Every veth end the test made: (namespace inode, name) -> the peer's
/// (namespace inode, name).
type Peers = Vec<((u64, String), (u64, String))>;

/// Assert that `snap` shows every peer in `want`, and exactly one host
/// namespace, `host`.
fn check_peers(snap: &Value, want: &Peers, host: u64, how: &str) {
    for ((ns, name), (pns, pname)) in want {
        let l = link(by_inode(snap, *ns), name);
        assert_eq!(l["kind"], "veth", "{how}: {name} in {ns}");
        assert_eq!(
            (&l["peer"]["netns_inode"], &l["peer"]["ifname"]),
            (&Value::from(*pns), &Value::from(pname.as_str())),
            "{how}: the peer of {name} in {ns} is {pname} in {pns}: {l}"
        );
    }
    let hosts: Vec<u64> = snap["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["host"] == true)
        .map(|n| n["inode"].as_u64().unwrap())
        .collect();
    assert_eq!(hosts, [host], "{how}: exactly one host namespace");
    assert_eq!(
        by_inode(snap, host)["names"][0],
        serde_json::json!({"source": "host", "name": "host"}),
        "{how}"
    );
}

/// 20 veth pairs between namespaces, both ends ifindex 2 (the shape
/// network emulators build, where only the namespace tells the ends
/// apart), plus three containers on wirehook's bridge in a test host:
/// wiretop pairs every end with its peer, namespace and name, whether it
/// runs in the machine's namespace or inside the test host (where the
/// containers' peers are in its own namespace), marks exactly one
/// namespace as the host, the machine's, in every sample, and asks the
/// kernel for nsids once per namespace, not per pair.
#[test]
fn veth_peers_between_namespaces_and_containers() {
    const PAIRS: usize = 20;
    let host = TestHost::new("wtpair");
    let h = host.name().to_string();
    let mut names = Vec::new();
    let mut script = String::new();
    for i in 0..PAIRS {
        let (a, b) = (format!("{h}-a{i}"), format!("{h}-b{i}"));
        script.push_str(&format!(
            "ip netns add {a}
             ip netns add {b}
             ip -n {h} link add to-b{i} netns {a} type veth peer name to-a{i} netns {b}\n"
        ));
        names.push(a);
        names.push(b);
    }
    let _pairs = Netns(names);
    sh(&script);
    let containers: Vec<Container> = (0..3).map(|i| host.container(&format!("c{i}"))).collect();
    for c in &containers {
        wire(&host, c, &[("io.wirehook.network", "bridge")]);
    }

    let mut want: Peers = Vec::new();
    for i in 0..PAIRS {
        let (a, b) = (
            format!("/run/netns/{h}-a{i}"),
            format!("/run/netns/{h}-b{i}"),
        );
        let (ea, eb) = (
            ip_link(&a, &format!("to-b{i}")),
            ip_link(&b, &format!("to-a{i}")),
        );
        assert_eq!(
            (&ea["ifindex"], &eb["ifindex"]),
            (&Value::from(2), &Value::from(2)),
            "both ends are ifindex 2, as in every namespace"
        );
        let (ia, ib) = (inode_of(&a), inode_of(&b));
        want.push(((ia, format!("to-b{i}")), (ib, format!("to-a{i}"))));
        want.push(((ib, format!("to-a{i}")), (ia, format!("to-b{i}"))));
    }
    let hp = host.netns_path().display().to_string();
    for c in &containers {
        // The container's eth0 names its host end by index.
        let eth0 = ip_link(&c.netns_path().display().to_string(), "eth0");
        let index = eth0["link_index"].as_u64().expect("link_index");
        let links = host.json(&["ip", "-j", "link", "show"]);
        let hv = links
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["ifindex"] == index)
            .expect("the host end")["ifname"]
            .as_str()
            .unwrap()
            .to_string();
        want.push((
            (c.netns_inode(), "eth0".into()),
            (host.netns_inode(), hv.clone()),
        ));
        want.push(((host.netns_inode(), hv), (c.netns_inode(), "eth0".into())));
    }
    // The machine's namespace: where this test runs, and pid 1.
    let machine = inode_of("/proc/self/ns/net");

    // From the machine's namespace: three samples, the host marked in each.
    let root = host.root().display().to_string();
    let out = Command::new(wiretop_bin())
        .args([
            "--json",
            "--interval",
            "0.2",
            "--count",
            "3",
            "--root",
            &root,
        ])
        .output()
        .expect("wiretop");
    let out = out.expect_success("wiretop --json");
    let samples: Vec<Value> = out
        .stdout_str()
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(samples.len(), 3);
    for (n, snap) in samples.iter().enumerate() {
        check_peers(snap, &want, machine, &format!("sample {n}"));
    }
    // wirehook's records name the containers (--root).
    for c in &containers {
        let ns = by_inode(&samples[0], c.netns_inode());
        assert_eq!(ns["container"]["mode"], "bridge", "{ns}");
    }

    // Inside the test host: the containers' peers are in wiretop's own
    // namespace, which the kernel names by an nsid of its own.
    let out = host
        .exec(&[wiretop_bin().to_str().unwrap(), "--once", "--json"])
        .expect_success("wiretop --once --json inside the test host");
    let snap: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    check_peers(&snap, &want, machine, &format!("inside {hp}"));

    // No request per pair: nsids are asked for once per namespace (a
    // second one to assign it, a third if another process assigned it
    // meanwhile), and not again on the next tick.
    let mut d = Discovery::new(Paths::under(host.root()));
    let mut r = Reader::new();
    let found = d.discover();
    let first = r.read(&found);
    check_peers(
        &serde_json::to_value(&first).unwrap(),
        &want,
        machine,
        "in process",
    );
    let st = r.stats;
    assert!(
        st.nsid_requests <= 3 * found.len(),
        "{st:?} for {} namespaces",
        found.len()
    );
    // A change shows in the next read: the reader hears every
    // namespace's notifications.
    let a0 = format!("{h}-a0");
    sh(&format!("ip -n {a0} addr add 10.99.0.1/24 dev to-b0"));
    // Other tests make namespaces meanwhile: only those are new.
    let found_again = d.discover();
    let new = found_again
        .iter()
        .filter(|f| !found.iter().any(|o| o.inode == f.inode))
        .count();
    let again = r.read(&found_again);
    check_peers(
        &serde_json::to_value(&again).unwrap(),
        &want,
        machine,
        "second read",
    );
    let ns = by_inode_ref(&again, inode_of(&format!("/run/netns/{a0}")));
    assert!(
        ns.addresses
            .iter()
            .any(|a| a.address == "10.99.0.1/24" && a.ifname == "to-b0"),
        "the new address in {a0}: {:?}",
        ns.addresses
    );
    assert!(
        r.stats.nsid_requests - st.nsid_requests <= 3 * new,
        "nsid requests for namespaces already open: {:?}, then {:?}",
        st,
        r.stats
    );
}
