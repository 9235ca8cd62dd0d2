//! Real-kernel tests of `wirehook_shared::firewall` and `sysctl`.
//!
//! Every test makes its own network namespaces (`wh-fw-PID-N`), works in
//! them from a thread that entered them, asserts on what the kernel shows
//! (`nft -j list table inet wirehook`, `conntrack -L`, real TCP traffic)
//! and deletes them again even when it panics. Needs root, `ip`, `nft`,
//! `nsenter` and `conntrack`; a missing tool fails the test.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnetwork::IpNetwork;
use serde_json::Value;
use wirehook_shared::firewall::{self, NetworkRules, PortRule};
use wirehook_shared::netns::NetNs;
use wirehook_shared::ports::Protocol;
use wirehook_shared::{sysctl, Error};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A network namespace made for one test; deleted on drop.
struct TestNs {
    name: String,
}

impl TestNs {
    fn new() -> TestNs {
        let name = format!(
            "wh-fw-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        run(&["ip", "netns", "add", &name]);
        let ns = TestNs { name };
        ns.cmd(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    fn path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.name))
    }

    /// Run `f` on a thread inside this namespace; panics propagate.
    fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = self.path();
        std::thread::scope(|s| {
            s.spawn(move || {
                let ns = NetNs::open(&path).expect("open test namespace");
                let _guard = ns.enter().expect("enter test namespace");
                f()
            })
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
        })
    }

    /// Run a command inside the namespace; it must succeed. Returns stdout.
    fn cmd(&self, args: &[&str]) -> String {
        let mut full = vec![
            "nsenter".to_string(),
            format!("--net={}", self.path().display()),
            "--".into(),
        ];
        full.extend(args.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = full.iter().map(String::as_str).collect();
        run(&refs)
    }

    /// `nft -j list table inet wirehook` inside the namespace.
    fn table(&self) -> Value {
        let out = self.cmd(&["nft", "-j", "list", "table", "inet", "wirehook"]);
        serde_json::from_str(&out).expect("nft JSON")
    }

    /// Does the namespace have the table?
    fn has_table(&self) -> bool {
        let out = self.cmd(&["nft", "-j", "list", "tables"]);
        let v: Value = serde_json::from_str(&out).unwrap();
        items(&v).iter().any(|i| {
            i.get("table")
                .is_some_and(|t| t["name"] == "wirehook" && t["family"] == "inet")
        })
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}

fn run(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e} (is it installed?)", args[0]));
    assert!(
        out.status.success(),
        "{:?} failed: {}{}",
        args,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn items(v: &Value) -> Vec<Value> {
    v["nftables"].as_array().cloned().unwrap_or_default()
}

fn chain_names(v: &Value) -> Vec<String> {
    items(v)
        .iter()
        .filter_map(|i| i.get("chain"))
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

fn rules_in(v: &Value, chain: &str) -> Vec<Value> {
    items(v)
        .iter()
        .filter_map(|i| i.get("rule"))
        .filter(|r| r["chain"] == chain)
        .cloned()
        .collect()
}

/// Elements of a set or map (empty when it has none).
fn elements(v: &Value, set: &str) -> Vec<Value> {
    for i in items(v) {
        let s = i.get("set").or_else(|| i.get("map"));
        if let Some(s) = s.filter(|s| s["name"] == set) {
            return s
                .get("elem")
                .and_then(|e| e.as_array())
                .cloned()
                .unwrap_or_default();
        }
    }
    panic!("no set {set} in {v}");
}

fn port_elements(v: &Value) -> usize {
    ["pub4_any", "pub4_ip", "pub6_any", "pub6_ip"]
        .iter()
        .map(|s| elements(v, s).len())
        .sum()
}

fn net(s: &str) -> IpNetwork {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn tcp(host_port: u16, container: &str, container_port: u16) -> PortRule {
    PortRule {
        protocol: Protocol::Tcp,
        host_ip: None,
        host_port,
        container_ip: ip(container),
        container_port,
    }
}

#[test]
fn table_is_created_once_with_its_maps_and_base_chains() {
    let ns = TestNs::new();
    assert!(!ns.has_table());
    ns.run(|| {
        firewall::ensure_table().unwrap();
        firewall::ensure_table().unwrap();
    });
    let t = ns.table();
    let mut chains = chain_names(&t);
    chains.sort();
    assert_eq!(
        chains,
        ["forward", "input", "output", "postrouting", "prerouting"]
    );
    for (chain, n) in [
        ("input", 2),
        ("prerouting", 4),
        ("output", 4),
        ("postrouting", 2),
        ("forward", 5),
    ] {
        assert_eq!(rules_in(&t, chain).len(), n, "rules in {chain}: {t}");
    }
    for set in [
        "ruleset_v2",
        "encrypted_vnis",
        "bridges",
        "pub4_any",
        "pub4_ip",
        "pub6_any",
        "pub6_ip",
        "fwd_from_bridge",
        "fwd_to_bridge",
        "nat_from_bridge",
        "nat_to_bridge",
    ] {
        assert!(elements(&t, set).is_empty());
    }
    // The forward chain must not drop anything by itself.
    let fwd = items(&t)
        .into_iter()
        .filter_map(|i| i.get("chain").cloned())
        .find(|c| c["name"] == "forward")
        .unwrap();
    assert_eq!(fwd["policy"], "accept");

    // Rewriting an existing table (as after an upgrade) keeps elements.
    ns.run(|| {
        firewall::add_ports(&[tcp(18080, "10.77.0.2", 8080)]).unwrap();
    });
    ns.cmd(&["nft", "delete", "set", "inet", "wirehook", "ruleset_v2"]);
    ns.cmd(&["nft", "flush", "chain", "inet", "wirehook", "prerouting"]);
    ns.run(|| firewall::ensure_table().unwrap());
    let t = ns.table();
    assert_eq!(elements(&t, "pub4_any").len(), 1);
    assert_eq!(rules_in(&t, "prerouting").len(), 4);
    assert!(items(&t)
        .iter()
        .any(|i| i.get("set").is_some_and(|s| s["name"] == "ruleset_v2")));

    // A bare table made by hand is filled in.
    let ns = TestNs::new();
    ns.cmd(&["nft", "add", "table", "inet", "wirehook"]);
    ns.run(|| firewall::ensure_table().unwrap());
    assert_eq!(rules_in(&ns.table(), "forward").len(), 5);
}

#[test]
fn realizing_a_network_twice_leaves_one_copy() {
    let ns = TestNs::new();
    let subnets = [net("10.77.0.0/24"), net("fd00:77::/64")];
    let rules = NetworkRules {
        name: "front",
        bridge: "wh-front",
        subnets: &subnets,
        internal: false,
        tunnel: None,
    };
    ns.run(|| firewall::realize_network(&rules).unwrap());
    let first = ns.table();
    ns.run(|| firewall::realize_network(&rules).unwrap());
    let t = ns.table();
    let mut chains: Vec<String> = chain_names(&t)
        .into_iter()
        .filter(|c| c.starts_with("nw-"))
        .collect();
    chains.sort();
    assert_eq!(
        chains,
        [
            "nw-front-fwdin",
            "nw-front-fwdout",
            "nw-front-hairpin",
            "nw-front-masq"
        ]
    );
    for c in &chains {
        assert_eq!(
            rules_in(&t, c).len(),
            rules_in(&first, c).len(),
            "{c} after the second realize"
        );
        assert!(!rules_in(&t, c).is_empty());
    }
    // v4 and v6 masquerade, hairpin for 127/8 and both subnets.
    assert_eq!(rules_in(&t, "nw-front-masq").len(), 2);
    assert_eq!(rules_in(&t, "nw-front-hairpin").len(), 3);
    assert_eq!(rules_in(&t, "prerouting").len(), 4);
    assert_eq!(elements(&t, "bridges"), [Value::from("wh-front")]);
    for map in [
        "fwd_from_bridge",
        "fwd_to_bridge",
        "nat_from_bridge",
        "nat_to_bridge",
    ] {
        let e = elements(&t, map);
        assert_eq!(e.len(), 1, "{map}: {e:?}");
        assert_eq!(e[0][0], "wh-front");
    }
    let listing = ns.cmd(&["nft", "list", "map", "inet", "wirehook", "fwd_from_bridge"]);
    assert!(
        listing.contains("\"wh-front\" : jump nw-front-fwdout"),
        "{listing}"
    );

    // Turning it into an internal network rewrites the chains in place.
    let internal = NetworkRules {
        internal: true,
        tunnel: None,
        ..rules
    };
    ns.run(|| firewall::realize_network(&internal).unwrap());
    let t = ns.table();
    assert!(rules_in(&t, "nw-front-masq").is_empty());
    let text = ns.cmd(&[
        "nft",
        "list",
        "chain",
        "inet",
        "wirehook",
        "nw-front-fwdout",
    ]);
    assert!(text.contains("drop"), "{text}");
    assert!(!text.contains("ct status dnat"), "{text}");
    let text = ns.cmd(&["nft", "list", "chain", "inet", "wirehook", "nw-front-fwdin"]);
    assert!(text.contains("iifname != \"wh-front\" drop"), "{text}");
}

#[test]
fn invalid_names_are_refused_before_nft_runs() {
    let ns = TestNs::new();
    let subnets = [net("10.77.0.0/24")];
    ns.run(|| {
        let bad = NetworkRules {
            name: "a b; flush ruleset",
            bridge: "wh-x",
            subnets: &subnets,
            internal: false,
            tunnel: None,
        };
        assert!(matches!(
            firewall::realize_network(&bad),
            Err(Error::Invalid(_))
        ));
        let bad = NetworkRules {
            name: "ok",
            bridge: "wh-\"x",
            subnets: &subnets,
            internal: false,
            tunnel: None,
        };
        assert!(matches!(
            firewall::realize_network(&bad),
            Err(Error::Invalid(_))
        ));
    });
    assert!(!ns.has_table());
}

#[test]
fn removing_a_network_deletes_its_chains_and_elements_only() {
    let ns = TestNs::new();
    let a = [net("10.77.0.0/24")];
    let b = [net("10.78.0.0/24")];
    ns.run(|| {
        firewall::realize_network(&NetworkRules {
            name: "a",
            bridge: "wh-a",
            subnets: &a,
            internal: false,
            tunnel: None,
        })
        .unwrap();
        firewall::realize_network(&NetworkRules {
            name: "b",
            bridge: "wh-b",
            subnets: &b,
            internal: true,
            tunnel: None,
        })
        .unwrap();
        firewall::remove_network("a", "wh-a").unwrap();
    });
    let t = ns.table();
    let nw: Vec<String> = chain_names(&t)
        .into_iter()
        .filter(|c| c.starts_with("nw-"))
        .collect();
    assert_eq!(nw.len(), 4, "{nw:?}");
    assert!(nw.iter().all(|c| c.starts_with("nw-b-")), "{nw:?}");
    assert_eq!(elements(&t, "bridges"), [Value::from("wh-b")]);
    for map in [
        "fwd_from_bridge",
        "fwd_to_bridge",
        "nat_from_bridge",
        "nat_to_bridge",
    ] {
        assert_eq!(elements(&t, map).len(), 1, "{map}");
    }
    ns.run(|| {
        // Again: nothing left to remove, still fine.
        firewall::remove_network("a", "wh-a").unwrap();
        firewall::remove_network("b", "wh-b").unwrap();
        firewall::remove_network("b", "wh-b").unwrap();
    });
    let t = ns.table();
    assert!(chain_names(&t).iter().all(|c| !c.starts_with("nw-")));
    assert!(elements(&t, "bridges").is_empty());
    // Without a table at all.
    ns.run(|| {
        firewall::delete_table().unwrap();
        firewall::delete_table().unwrap();
        firewall::remove_network("a", "wh-a").unwrap();
    });
    assert!(!ns.has_table());
}

#[test]
fn ports_are_added_and_removed_as_elements() {
    let ns = TestNs::new();
    let rules = vec![
        tcp(18080, "10.77.0.2", 8080),
        PortRule {
            protocol: Protocol::Udp,
            host_ip: Some(ip("10.99.0.1")),
            host_port: 5353,
            container_ip: ip("10.77.0.2"),
            container_port: 53,
        },
        PortRule {
            protocol: Protocol::Sctp,
            host_ip: None,
            host_port: 9999,
            container_ip: ip("fd00:77::2"),
            container_port: 9,
        },
    ];
    ns.run(|| {
        firewall::ensure_table().unwrap();
        firewall::add_ports(&rules).unwrap();
    });
    let t = ns.table();
    assert_eq!(port_elements(&t), 3);
    assert_eq!(elements(&t, "pub4_any").len(), 1);
    assert_eq!(elements(&t, "pub4_ip").len(), 1);
    assert_eq!(elements(&t, "pub6_any").len(), 1);
    // What nft shows is what was meant (checks the byte encoding).
    let text = ns.cmd(&["nft", "list", "table", "inet", "wirehook"]);
    assert!(text.contains("tcp . 18080 : 10.77.0.2 . 8080"), "{text}");
    assert!(
        text.contains("10.99.0.1 . udp . 5353 : 10.77.0.2 . 53"),
        "{text}"
    );
    assert!(text.contains("sctp . 9999 : fd00:77::2 . 9"), "{text}");

    ns.run(|| {
        // Idempotent re-add.
        firewall::add_ports(&rules).unwrap();
        firewall::add_ports(&rules[..1]).unwrap();
    });
    assert_eq!(port_elements(&ns.table()), 3);

    ns.run(|| firewall::remove_ports(&rules[1..2]).unwrap());
    let t = ns.table();
    assert_eq!(port_elements(&t), 2);
    assert!(elements(&t, "pub4_ip").is_empty());

    ns.run(|| {
        // Already gone: fine, alone or mixed with present ones.
        firewall::remove_ports(&rules[1..2]).unwrap();
        firewall::remove_ports(&rules).unwrap();
    });
    assert_eq!(port_elements(&ns.table()), 0);
    ns.run(|| firewall::remove_ports(&rules).unwrap());
}

#[test]
fn a_taken_host_port_is_refused_and_nothing_of_the_batch_stays() {
    let ns = TestNs::new();
    ns.run(|| {
        firewall::ensure_table().unwrap();
        firewall::add_ports(&[tcp(18080, "10.77.0.2", 8080)]).unwrap();
        let err = firewall::add_ports(&[tcp(18081, "10.77.0.3", 80), tcp(18080, "10.77.0.3", 80)])
            .unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::Firewall(_)), "{err:?}");
        assert!(
            msg.contains("18080") && msg.contains("10.77.0.2:8080"),
            "{msg}"
        );
        // Someone else's element is not removed by a stale rule.
        firewall::remove_ports(&[tcp(18080, "10.77.0.3", 80)]).unwrap();
    });
    let t = ns.table();
    let e = elements(&t, "pub4_any");
    assert_eq!(e.len(), 1, "{e:?}");
    let text = ns.cmd(&["nft", "list", "map", "inet", "wirehook", "pub4_any"]);
    assert!(text.contains("tcp . 18080 : 10.77.0.2 . 8080"), "{text}");
    assert!(!text.contains("18081"), "{text}");
}

#[test]
fn mixed_ip_versions_in_a_port_rule_are_invalid() {
    let ns = TestNs::new();
    ns.run(|| {
        let r = PortRule {
            protocol: Protocol::Tcp,
            host_ip: Some(ip("10.99.0.1")),
            host_port: 80,
            container_ip: ip("fd00::2"),
            container_port: 80,
        };
        assert!(matches!(firewall::add_ports(&[r]), Err(Error::Invalid(_))));
    });
}

#[test]
fn add_ports_creates_a_missing_table_and_remove_ports_tolerates_none() {
    let ns = TestNs::new();
    ns.run(|| firewall::remove_ports(&[tcp(1, "10.0.0.1", 1)]).unwrap());
    assert!(!ns.has_table());
    ns.run(|| firewall::add_ports(&[tcp(18080, "10.77.0.2", 8080)]).unwrap());
    assert_eq!(port_elements(&ns.table()), 1);
    assert_eq!(rules_in(&ns.table(), "prerouting").len(), 4);
}

fn conntrack_list(ns: &TestNs) -> String {
    let v4 = ns.cmd(&["conntrack", "-L", "-f", "ipv4"]);
    let v6 = ns.cmd(&["conntrack", "-L", "-f", "ipv6"]);
    v4 + &v6
}

#[test]
fn conntrack_entries_of_addresses_are_flushed() {
    let ns = TestNs::new();
    ns.run(|| firewall::ensure_table().unwrap()); // loads nf_conntrack/nat
    let insert = |args: &str| {
        let mut a = vec!["conntrack", "-I"];
        a.extend(args.split_whitespace());
        a.extend(["-t", "300", "-u", "SEEN_REPLY"]);
        ns.cmd(&a);
    };
    // A DNAT'd flow: original to the host, reply from the container.
    insert("-p tcp -s 10.99.0.2 -d 10.99.0.1 --sport 40000 --dport 18080 -r 10.77.0.2 -q 10.99.0.2 --reply-port-src 8080 --reply-port-dst 40000 --state ESTABLISHED");
    // A direct flow to the container.
    insert("-p udp -s 10.99.0.2 -d 10.77.0.2 --sport 40001 --dport 53 -r 10.77.0.2 -q 10.99.0.2 --reply-port-src 53 --reply-port-dst 40001");
    // The container's own outgoing, masqueraded flow.
    insert("-p tcp -s 10.77.0.2 -d 10.99.0.2 --sport 40002 --dport 80 -r 10.99.0.2 -q 10.99.0.1 --reply-port-src 80 --reply-port-dst 40002 --state ESTABLISHED");
    // IPv6.
    insert("-p tcp -s fd00:99::2 -d fd00:77::2 --sport 40003 --dport 80 -r fd00:77::2 -q fd00:99::2 --reply-port-src 80 --reply-port-dst 40003 --state ESTABLISHED");
    // Unrelated flows that must stay.
    insert("-p tcp -s 10.99.0.2 -d 10.77.0.20 --sport 40004 --dport 80 -r 10.77.0.20 -q 10.99.0.2 --reply-port-src 80 --reply-port-dst 40004 --state ESTABLISHED");
    insert("-p tcp -s fd00:99::2 -d fd00:77::20 --sport 40005 --dport 80 -r fd00:77::20 -q fd00:99::2 --reply-port-src 80 --reply-port-dst 40005 --state ESTABLISHED");
    let before = conntrack_list(&ns);
    assert_eq!(before.lines().count(), 6, "{before}");

    let n = ns.run(|| firewall::flush_conntrack(&[ip("10.77.0.2"), ip("fd00:77::2")]).unwrap());
    assert_eq!(n, 4);
    let after = conntrack_list(&ns);
    assert_eq!(after.lines().count(), 2, "{after}");
    assert!(
        !after.contains("10.77.0.2 ") && !after.contains("fd00:77::2 "),
        "{after}"
    );
    assert!(
        after.contains("10.77.0.20") && after.contains("fd00:77::20"),
        "{after}"
    );
    // Nothing left: zero, no error; no addresses: zero.
    assert_eq!(
        ns.run(|| firewall::flush_conntrack(&[ip("10.77.0.2")]).unwrap()),
        0
    );
    assert_eq!(ns.run(|| firewall::flush_conntrack(&[]).unwrap()), 0);
}

#[test]
fn forward_drop_policy_of_another_table_is_reported() {
    let ns = TestNs::new();
    ns.run(|| {
        firewall::ensure_table().unwrap();
        assert_eq!(firewall::forward_drop_warning(), None);
    });
    // What docker does (through iptables-nft).
    ns.cmd(&["nft", "add", "table", "ip", "filter"]);
    ns.cmd(&[
        "nft",
        "add",
        "chain",
        "ip",
        "filter",
        "FORWARD",
        "{ type filter hook forward priority 0; policy drop; }",
    ]);
    ns.cmd(&["nft", "add", "chain", "ip", "filter", "DOCKER-USER"]);
    let msg = ns.run(firewall::forward_drop_warning).expect("a warning");
    assert!(!msg.contains('\n'));
    assert!(msg.contains("ip filter FORWARD"), "{msg}");
    assert!(
        msg.contains("iptables -I DOCKER-USER -i wh-+ -j ACCEPT"),
        "{msg}"
    );
    // An accept policy is fine.
    ns.cmd(&["nft", "delete", "table", "ip", "filter"]);
    ns.cmd(&["nft", "add", "table", "inet", "other"]);
    ns.cmd(&[
        "nft",
        "add",
        "chain",
        "inet",
        "other",
        "fwd_other",
        "{ type filter hook forward priority 0; policy accept; }",
    ]);
    assert_eq!(ns.run(firewall::forward_drop_warning), None);

    // Docker on iptables-legacy, invisible to nft.
    let ns = TestNs::new();
    ns.cmd(&["iptables-legacy", "-N", "DOCKER-USER"]);
    ns.cmd(&["iptables-legacy", "-P", "FORWARD", "DROP"]);
    let msg = ns.run(firewall::forward_drop_warning).expect("a warning");
    assert!(msg.contains("(iptables-legacy)"), "{msg}");
    assert!(
        msg.contains("iptables-legacy -I DOCKER-USER -o wh-+ -j ACCEPT"),
        "{msg}"
    );
}

#[test]
fn sysctls_are_per_namespace() {
    let root_forward = sysctl::read("net.ipv4.ip_forward").unwrap();
    let ns = TestNs::new();
    ns.cmd(&["ip", "link", "add", "wh-s", "type", "bridge"]);
    ns.run(|| {
        // New namespaces copy IPv4 settings from the host's; start from 0.
        sysctl::write("net.ipv4.ip_forward", "0").unwrap();
        assert_eq!(sysctl::read("net.ipv4.ip_forward").unwrap(), "0");
        assert!(sysctl::enable_ip_forward(true).unwrap());
        assert!(!sysctl::enable_ip_forward(true).unwrap());
        assert_eq!(sysctl::read("net.ipv4.ip_forward").unwrap(), "1");
        assert_eq!(sysctl::read("net.ipv6.conf.all.forwarding").unwrap(), "1");
        assert_eq!(
            sysctl::read("net/ipv4/conf/wh-s/route_localnet").unwrap(),
            "0"
        );
        sysctl::set_route_localnet("wh-s").unwrap();
        sysctl::set_route_localnet("wh-s").unwrap();
        assert_eq!(
            sysctl::read("net/ipv4/conf/wh-s/route_localnet").unwrap(),
            "1"
        );
        sysctl::write("net.ipv4.conf.wh-s.route_localnet", "0").unwrap();
        assert_eq!(
            sysctl::read("net.ipv4.conf.wh-s.route_localnet").unwrap(),
            "0"
        );
        assert!(sysctl::set_route_localnet("missing0").is_err());
    });
    assert_eq!(
        ns.cmd(&["cat", "/proc/sys/net/ipv4/ip_forward"]).trim(),
        "1"
    );
    assert_eq!(sysctl::read("net.ipv4.ip_forward").unwrap(), root_forward);
}

/// A TCP server in a namespace that answers every connection with the
/// peer address it sees, until dropped.
struct Echo {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Echo {
    fn start(ns: &TestNs, addr: &str) -> Echo {
        let path = ns.path();
        let addr: SocketAddr = addr.parse().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            let ns = NetNs::open(&path).unwrap();
            let _g = ns.enter().unwrap();
            let listener = TcpListener::bind(addr).unwrap();
            listener.set_nonblocking(true).unwrap();
            tx.send(()).unwrap();
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut s, peer)) => {
                        let _ = s.set_nonblocking(false);
                        let _ = s.write_all(format!("peer={}", peer.ip()).as_bytes());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(5))
            .expect("server started");
        Echo {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Connect from inside `ns` and return what the server said.
fn ask(ns: &TestNs, addr: &str) -> std::io::Result<String> {
    let addr: SocketAddr = addr.parse().unwrap();
    ns.run(|| {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    })
}

/// Put a veth into `container` with `addr`, its peer `host_if` into the
/// host namespace (enslaved to `bridge` if given), default route via `gw`.
fn plug(
    host: &TestNs,
    host_if: &str,
    bridge: Option<&str>,
    container: &TestNs,
    addr: &str,
    gw: &str,
) {
    host.cmd(&[
        "ip",
        "link",
        "add",
        host_if,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        &container.name,
    ]);
    if let Some(br) = bridge {
        host.cmd(&["ip", "link", "set", host_if, "master", br]);
    }
    host.cmd(&["ip", "link", "set", host_if, "up"]);
    container.cmd(&["ip", "addr", "add", addr, "dev", "eth0"]);
    container.cmd(&["ip", "link", "set", "eth0", "up"]);
    container.cmd(&["ip", "route", "add", "default", "via", gw]);
}

#[test]
fn published_port_carries_real_traffic() {
    // host: the test "host"; c1, c2 on bridge network a (10.77.0.0/24),
    // c3 on network b (10.78.0.0/24), peer outside (10.99.0.0/24).
    let host = TestNs::new();
    let (c1, c2, c3, peer) = (TestNs::new(), TestNs::new(), TestNs::new(), TestNs::new());
    for (br, gw) in [("wh-ta", "10.77.0.1/24"), ("wh-tb", "10.78.0.1/24")] {
        host.cmd(&["ip", "link", "add", br, "type", "bridge"]);
        host.cmd(&["ip", "addr", "add", gw, "dev", br]);
        host.cmd(&["ip", "link", "set", br, "up"]);
    }
    plug(
        &host,
        "veth-c1",
        Some("wh-ta"),
        &c1,
        "10.77.0.2/24",
        "10.77.0.1",
    );
    plug(
        &host,
        "veth-c2",
        Some("wh-ta"),
        &c2,
        "10.77.0.3/24",
        "10.77.0.1",
    );
    plug(
        &host,
        "veth-c3",
        Some("wh-tb"),
        &c3,
        "10.78.0.2/24",
        "10.78.0.1",
    );
    plug(&host, "uplink", None, &peer, "10.99.0.2/24", "10.99.0.1");
    host.cmd(&["ip", "addr", "add", "10.99.0.1/24", "dev", "uplink"]);

    let a = [net("10.77.0.0/24")];
    let b = [net("10.78.0.0/24")];
    let port = tcp(18080, "10.77.0.2", 8080);
    host.run(|| {
        firewall::ensure_table().unwrap();
        firewall::realize_network(&NetworkRules {
            name: "ta",
            bridge: "wh-ta",
            subnets: &a,
            internal: false,
            tunnel: None,
        })
        .unwrap();
        firewall::realize_network(&NetworkRules {
            name: "tb",
            bridge: "wh-tb",
            subnets: &b,
            internal: false,
            tunnel: None,
        })
        .unwrap();
        sysctl::enable_ip_forward(false).unwrap();
        sysctl::set_route_localnet("wh-ta").unwrap();
        firewall::add_ports(std::slice::from_ref(&port)).unwrap();
    });
    let _server = Echo::start(&c1, "10.77.0.2:8080");
    let _outside = Echo::start(&peer, "10.99.0.2:9090");

    // From outside through the host's address: DNAT, no SNAT.
    assert_eq!(ask(&peer, "10.99.0.1:18080").unwrap(), "peer=10.99.0.2");
    // From the host itself, to its own address and to 127.0.0.1.
    assert_eq!(ask(&host, "10.99.0.1:18080").unwrap(), "peer=10.99.0.1");
    assert_eq!(ask(&host, "127.0.0.1:18080").unwrap(), "peer=10.77.0.1");
    // Hairpin: a neighbour on the same bridge through the host address.
    assert_eq!(ask(&c2, "10.99.0.1:18080").unwrap(), "peer=10.77.0.1");
    // Another network: only through the published port.
    assert_eq!(ask(&c3, "10.99.0.1:18080").unwrap(), "peer=10.77.0.1");
    let direct = ask(&c3, "10.77.0.2:8080");
    assert!(
        direct.is_err(),
        "network tb reached network ta directly: {direct:?}"
    );
    // Outgoing traffic is masqueraded behind the uplink address.
    assert_eq!(ask(&c1, "10.99.0.2:9090").unwrap(), "peer=10.99.0.1");

    // Teardown: the container's flows go, the port closes.
    let flows = conntrack_list(&host);
    assert!(flows.contains("10.77.0.2"), "{flows}");
    let n = host.run(|| firewall::flush_conntrack(&[ip("10.77.0.2")]).unwrap());
    assert!(n >= 5, "deleted {n}");
    let flows = conntrack_list(&host);
    assert!(!flows.contains("10.77.0.2 "), "{flows}");
    host.run(|| firewall::remove_ports(&[port]).unwrap());
    let after = ask(&peer, "10.99.0.1:18080");
    assert!(after.is_err(), "port still published: {after:?}");
    host.run(|| {
        firewall::remove_network("ta", "wh-ta").unwrap();
        firewall::remove_network("tb", "wh-tb").unwrap();
    });
    // Without the network chains, outgoing flows are no longer masqueraded.
    assert_eq!(ask(&c1, "10.99.0.2:9090").unwrap(), "peer=10.77.0.2");
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Small by default (a smoke run in the suite); `WIREHOOK_BENCH=1` for the
/// full figures: `WIREHOOK_BENCH=1 cargo test -p wirehook-shared --release
/// --test firewall bench -- --nocapture`.
fn full_bench() -> bool {
    std::env::var_os("WIREHOOK_BENCH").is_some_and(|v| v == "1")
}

#[test]
fn bench_add_remove_ports() {
    let ns = TestNs::new();
    ns.run(|| {
        firewall::ensure_table().unwrap();
        let rounds = if full_bench() { 1000 } else { 20 };
        let report = |label: &str, base: u16| {
            let (mut add, mut del) = (Vec::new(), Vec::new());
            for i in 0..rounds {
                let r = [tcp(base + i, "10.77.3.2", 80)];
                let t = Instant::now();
                firewall::add_ports(&r).unwrap();
                add.push(t.elapsed());
                let t = Instant::now();
                firewall::remove_ports(&r).unwrap();
                del.push(t.elapsed());
            }
            println!("{label}: add_ports median {:?}, remove_ports median {:?} ({rounds} rounds, 1 port each)", median(add), median(del));
        };
        report("empty maps", 20000);
        // Cost must not grow with the number of published ports.
        let many: Vec<PortRule> = (0..5000).map(|i| tcp(30000 + i, "10.77.1.2", 80)).collect();
        let t = Instant::now();
        firewall::add_ports(&many).unwrap();
        println!("one batch of 5000 ports: {:?}", t.elapsed());
        report("5000 ports present", 20000);
        let three: Vec<PortRule> = (0..3).map(|i| tcp(40000 + i, "10.77.3.3", 80)).collect();
        let (mut add, mut del) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let t = Instant::now();
            firewall::add_ports(&three).unwrap();
            add.push(t.elapsed());
            let t = Instant::now();
            firewall::remove_ports(&three).unwrap();
            del.push(t.elapsed());
        }
        println!("3 ports per call: add_ports median {:?}, remove_ports median {:?}", median(add), median(del));
        let t = Instant::now();
        firewall::remove_ports(&many).unwrap();
        println!("remove 5000 ports in one call: {:?}", t.elapsed());
    });
    assert_eq!(port_elements(&ns.table()), 0);
}

#[test]
fn bench_flush_conntrack() {
    let ns = TestNs::new();
    ns.run(|| {
        firewall::ensure_table().unwrap();
        let t = Instant::now();
        firewall::flush_conntrack(&[ip("10.77.0.2")]).unwrap();
        println!(
            "flush_conntrack, namespace without entries: {:?}",
            t.elapsed()
        );
    });
    let sizes: &[usize] = if full_bench() { &[1000, 20000] } else { &[100] };
    for (round, &others) in sizes.iter().enumerate() {
        // `others` unrelated entries plus 10 of the container's.
        let mut lines = String::new();
        for i in 0..others + 10 {
            let src = if i < others {
                format!("10.{}.{}.{}", 10 + round, i / 250, i % 250 + 1)
            } else {
                "10.99.0.2".into()
            };
            let dst = if i < others { "10.2.0.1" } else { "10.77.0.2" };
            let port = 1000 + i % 60000;
            lines.push_str(&format!(
                "-I -p tcp -s {src} -d {dst} --sport {port} --dport 80 -r {dst} -q {src} --reply-port-src 80 --reply-port-dst {port} --state ESTABLISHED -u SEEN_REPLY -t 600\n"
            ));
        }
        let file = std::env::temp_dir().join(format!("wh-fw-ct-{}.txt", std::process::id()));
        std::fs::write(&file, lines).unwrap();
        let loaded = Command::new("nsenter")
            .arg(format!("--net={}", ns.path().display()))
            .args(["--", "conntrack", "-R"])
            .arg(&file)
            .output();
        let _ = std::fs::remove_file(&file);
        assert!(loaded.unwrap().status.success(), "conntrack -R failed");
        let t = Instant::now();
        let n = ns.run(|| firewall::flush_conntrack(&[ip("10.77.0.2")]).unwrap());
        println!(
            "flush_conntrack with {others} other entries: {:?} ({n} deleted)",
            t.elapsed()
        );
        assert_eq!(n, 10);
        let t = Instant::now();
        ns.run(|| firewall::flush_conntrack(&[ip("10.77.0.2")]).unwrap());
        println!("  again, nothing to delete: {:?}", t.elapsed());
    }
}

/// `rx_packets` of `dev` in `ns`.
fn rx_packets(ns: &TestNs, dev: &str) -> u64 {
    let out = ns.cmd(&["ip", "-j", "-s", "link", "show", dev]);
    let v: Value = serde_json::from_str(&out).unwrap();
    v[0]["stats64"]["rx"]["packets"]
        .as_u64()
        .expect("rx packets")
}

/// Does `dev`'s `rx_packets` reach `n` within 5 s (a loaded machine may
/// deliver late)?
fn rx_reaches(ns: &TestNs, dev: &str, n: u64) -> bool {
    let t = Instant::now();
    loop {
        if rx_packets(ns, dev) >= n {
            return true;
        }
        if t.elapsed() > Duration::from_secs(5) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A VXLAN packet's UDP payload: flags (VNI valid), `vni`, and an inner
/// broadcast Ethernet frame (60 bytes).
fn vxlan_payload(vni: u32) -> Vec<u8> {
    let mut p = vec![0x08, 0, 0, 0];
    p.extend_from_slice(&(vni << 8).to_be_bytes());
    let mut frame = vec![0xff; 6];
    frame.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01, 0x88, 0xb5]);
    frame.resize(60, 0x5a);
    p.extend_from_slice(&frame);
    p
}

/// Send `n` UDP datagrams of `payload` to `to` from inside `ns`.
fn send_udp(ns: &TestNs, to: &str, payload: &[u8], n: usize) {
    let to: SocketAddr = to.parse().unwrap();
    ns.run(|| {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        for _ in 0..n {
            // A drop shows up as EPERM on some kernels: not an error here.
            let _ = s.send_to(payload, to);
        }
    });
}

/// Count the datagrams `ns` gets on UDP `port` while `f` runs (then waits
/// up to 1 s for stragglers).
fn udp_received(ns: &TestNs, port: u16, f: impl FnOnce()) -> usize {
    let sock = ns.run(|| std::net::UdpSocket::bind(("0.0.0.0", port)).unwrap());
    sock.set_read_timeout(Some(Duration::from_millis(1000)))
        .unwrap();
    f();
    let mut buf = [0u8; 2048];
    let mut n = 0;
    while sock.recv_from(&mut buf).is_ok() {
        n += 1;
    }
    n
}

/// VXLAN trusts the VNI a frame carries. A container may not send to any
/// VXLAN port (its own host's, by input, or another host's, forwarded and
/// masqueraded), and a VNI guarded as encrypted is taken from WireGuard
/// devices only: the same plaintext frame from the underlay reaches a
/// plain VNI and not a guarded one. Real packets, counted by the kernel.
#[test]
fn vxlan_from_containers_and_plaintext_on_encrypted_vnis_are_dropped() {
    let host = TestNs::new();
    let (c, peer) = (TestNs::new(), TestNs::new());
    host.cmd(&["ip", "link", "add", "wh-tv", "type", "bridge"]);
    host.cmd(&["ip", "addr", "add", "10.79.0.1/24", "dev", "wh-tv"]);
    host.cmd(&["ip", "link", "set", "wh-tv", "up"]);
    plug(
        &host,
        "veth-cv",
        Some("wh-tv"),
        &c,
        "10.79.0.2/24",
        "10.79.0.1",
    );
    plug(&host, "uplink", None, &peer, "192.0.2.2/24", "192.0.2.1");
    host.cmd(&["ip", "addr", "add", "192.0.2.1/24", "dev", "uplink"]);
    host.cmd(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    for (dev, vni) in [("vx-enc", "77"), ("vx-plain", "78")] {
        host.cmd(&[
            "ip",
            "link",
            "add",
            dev,
            "type",
            "vxlan",
            "id",
            vni,
            "local",
            "192.0.2.1",
            "dstport",
            "4789",
            "nolearning",
        ]);
        host.cmd(&["ip", "link", "set", dev, "up"]);
    }
    let subnet = [net("10.79.0.0/24")];
    host.run(|| {
        firewall::realize_network(&NetworkRules {
            name: "tv",
            bridge: "wh-tv",
            subnets: &subnet,
            internal: false,
            tunnel: None,
        })
        .unwrap();
    });

    // From the underlay, before any guard: both VNIs take the frame.
    for (dev, vni) in [("vx-enc", 77), ("vx-plain", 78)] {
        let before = rx_packets(&host, dev);
        send_udp(&peer, "192.0.2.1:4789", &vxlan_payload(vni), 5);
        assert!(
            rx_reaches(&host, dev, before + 5),
            "{dev}: plaintext VXLAN arrives before the guard (so the check can fail)"
        );
    }
    // VNI 77 guarded: its plaintext frames are dropped, VNI 78's are not.
    host.run(|| firewall::guard_encrypted_vni(77).unwrap());
    host.run(|| firewall::guard_encrypted_vni(77).unwrap());
    assert_eq!(elements(&host.table(), "encrypted_vnis").len(), 1);
    let (enc, plain) = (rx_packets(&host, "vx-enc"), rx_packets(&host, "vx-plain"));
    send_udp(&peer, "192.0.2.1:4789", &vxlan_payload(77), 5);
    send_udp(&peer, "192.0.2.1:4789", &vxlan_payload(78), 5);
    // The plain VNI's frames, sent after the guarded ones, are in: so
    // are the guarded ones, had they passed.
    assert!(rx_reaches(&host, "vx-plain", plain + 5));
    assert_eq!(
        rx_packets(&host, "vx-enc"),
        enc,
        "guarded VNI took plaintext"
    );

    // A container sending VXLAN to its own host: dropped.
    let plain = rx_packets(&host, "vx-plain");
    send_udp(&c, "192.0.2.1:4789", &vxlan_payload(78), 5);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        rx_packets(&host, "vx-plain"),
        plain,
        "a container injected into a VNI on its own host"
    );
    // ... or to another host (forwarded): nothing arrives; another port
    // does (so the check can fail).
    let got = udp_received(&peer, 4789, || {
        send_udp(&c, "192.0.2.2:4789", &vxlan_payload(78), 5)
    });
    assert_eq!(got, 0, "a container's VXLAN left the host");
    let got = udp_received(&peer, 4790, || {
        send_udp(&c, "192.0.2.2:4790", &vxlan_payload(78), 5)
    });
    assert_eq!(got, 5, "other UDP from the container is forwarded");

    // Released: plaintext on VNI 77 arrives again; twice is fine.
    host.run(|| firewall::release_encrypted_vni(77).unwrap());
    host.run(|| firewall::release_encrypted_vni(77).unwrap());
    let enc = rx_packets(&host, "vx-enc");
    send_udp(&peer, "192.0.2.1:4789", &vxlan_payload(77), 5);
    assert!(rx_reaches(&host, "vx-enc", enc + 5));
}
