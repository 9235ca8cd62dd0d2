//! Overlay networks across hosts: several "hosts" (network namespaces) on
//! an underlay bridge, etcd from Debian's etcd-server on the underlay,
//! containers on every host. What the kernel shows (VXLAN device, one
//! route/neighbour/FDB entry per remote host), traffic between every pair
//! of hosts' containers, isolation from other overlay networks, the
//! agent following joins, deaths and an etcd restart, concurrent first
//! containers, errors, and nothing left behind.

mod support;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{addr_of, pings, setup, unwire, wire};
use wirehook_tests::cluster::{eventually, Cluster, ClusterHost, UNDERLAY_GW};
use wirehook_tests::*;

const NET: (&str, &str) = ("io.wirehook.network", "");

fn ann(net: &str) -> [(&'static str, String); 1] {
    [(NET.0, net.to_string())]
}

fn wire_on<'h>(h: &'h ClusterHost, tag: &str, net: &str) -> Container<'h> {
    let c = h.container(tag);
    let a = ann(net);
    wire(h, &c, &[(a[0].0, a[0].1.as_str())]);
    c
}

fn ipv4(c: &Container<'_>) -> String {
    addr_of(&c.addrs_json(), "eth0", false)
        .expect("eth0 has an IPv4 address")
        .0
        .to_string()
}

fn create(h: &ClusterHost, args: &[&str]) {
    let mut argv = vec!["network", "create", "--driver", "overlay"];
    argv.extend_from_slice(args);
    h.wirehook(&argv, None)
        .expect_success(&format!("network create {args:?}"));
}

fn inspect(h: &TestHost, net: &str) -> Value {
    let out = h
        .wirehook(&["network", "inspect", net], None)
        .expect_success("network inspect");
    serde_json::from_slice::<Value>(&out.stdout).unwrap()[0].clone()
}

/// Keys under /wirehook/ in etcd.
fn etcd_keys(cluster: &Cluster) -> Vec<String> {
    cluster.etcd_keys("/wirehook/")
}

fn wirehook_links(h: &TestHost) -> Vec<String> {
    support::links_with_prefix(h, "vx-")
        .into_iter()
        .chain(support::links_with_prefix(h, "wo-"))
        .chain(support::links_with_prefix(h, "whv"))
        .collect()
}

fn reconcile(h: &ClusterHost) {
    h.wirehook(&["overlay", "reconcile"], None)
        .expect_success(&format!("overlay reconcile on {}", h.id()));
}

#[test]
fn three_hosts_reach_each_other_and_other_overlays_do_not() {
    let cluster = Cluster::with_etcd("ov3");
    let h1 = cluster.add_host();
    let h2 = cluster.add_host();
    let h3 = cluster.add_host();
    create(&h1, &["--subnet", "10.210.0.0/16", "ov1"]);
    create(&h2, &["--subnet", "10.211.0.0/16", "--vni", "77", "ov2"]);

    // Every host sees both networks: they live in etcd.
    let ls = h3
        .wirehook(&["network", "ls", "-q"], None)
        .expect_success("ls")
        .stdout_str();
    assert!(ls.contains("ov1") && ls.contains("ov2"), "{ls}");

    let a1 = wire_on(&h1, "a1", "ov1");
    let a2 = wire_on(&h2, "a2", "ov1");
    let a3 = wire_on(&h3, "a3", "ov1");
    let b1 = wire_on(&h1, "b1", "ov2");
    let b2 = wire_on(&h2, "b2", "ov2");
    // Hosts that joined before others learn of them on their next start,
    // from the agent, or from a reconcile pass.
    for h in [&h1, &h2, &h3] {
        reconcile(h);
    }

    // Kernel: one share per host, one entry of each kind per remote host.
    let view = inspect(&h1, "ov1");
    let hosts = view["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 3, "{view}");
    let vni = view["vni"].as_u64().unwrap();
    assert!(vni >= 4096, "auto VNI: {vni}");
    let shares: Vec<&str> = hosts
        .iter()
        .map(|h| h["subnet"].as_str().unwrap())
        .collect();
    let vx = h1.link("vx-ov1").expect("vx-ov1 on h1");
    assert_eq!(vx["linkinfo"]["info_kind"], "vxlan");
    assert_eq!(vx["linkinfo"]["info_data"]["id"].as_u64(), Some(vni));
    assert_eq!(vx["linkinfo"]["info_data"]["learning"], false);
    assert_eq!(vx["mtu"], 1450);
    let e = h1.vxlan_entries("vx-ov1");
    assert_eq!(e.routes.len(), 2, "{e:?}");
    assert_eq!(e.neighbours.len(), 2, "{e:?}");
    assert_eq!(
        e.fdb,
        [h2.addr().to_string(), h3.addr().to_string()],
        "{e:?}"
    );
    for r in &e.routes {
        assert!(shares.contains(&r.as_str()), "{r} is a share: {shares:?}");
    }
    let a1_ip = ipv4(&a1);
    let a1_mtu = a1.links_json().as_array().unwrap()[1]["mtu"].clone();
    assert_eq!(a1_mtu, 1450, "containers get the underlay MTU less 50");
    assert_eq!(
        h1.link("vx-ov2").unwrap()["linkinfo"]["info_data"]["id"],
        77
    );

    // Traffic: every pair of ov1 containers, across hosts.
    let all = [(&a1, "a1"), (&a2, "a2"), (&a3, "a3")];
    for (x, xn) in &all {
        for (y, yn) in &all {
            if xn != yn {
                assert!(pings(x, &ipv4(y)), "{xn} reaches {yn}");
            }
        }
    }
    // ov2 reaches neither across hosts nor on the same host; itself yes.
    assert!(pings(&b1, &ipv4(&b2)), "b1 reaches b2 on ov2");
    assert!(
        !pings(&b2, &a1_ip),
        "ov2 container must not reach ov1 on another host"
    );
    assert!(
        !pings(&b1, &a1_ip),
        "ov2 container must not reach ov1 on its host"
    );
    assert!(!pings(&a2, &ipv4(&b1)), "ov1 container must not reach ov2");
    // Nor does a bridge network's container reach the overlay, here or on
    // another host.
    let br = wire_on(&h1, "br", "bridge");
    assert!(
        !pings(&br, &a1_ip),
        "bridge container must not reach ov1 on its host"
    );
    assert!(
        !pings(&br, &ipv4(&a2)),
        "bridge container must not reach ov1 on another host"
    );
    unwire(&h1, br.id());
    // The outside world (the underlay router, which has no route to the
    // overlay) answers only if the host masquerades.
    assert!(
        pings(&a3, &UNDERLAY_GW.to_string()),
        "a3 reaches the outside"
    );

    let ps = h1.wirehook(&["ps"], None).expect_success("ps").stdout_str();
    assert!(
        ps.contains("overlay ov1") && ps.contains("2 peer(s)"),
        "{ps}"
    );
    // wiretop shows the same peers next to the VXLAN device.
    let snap = h1.wiretop_json();
    let ov = snap["overlays"]
        .as_array()
        .expect("overlays in the snapshot")
        .iter()
        .find(|o| o["network"] == "ov1")
        .expect("ov1");
    let mut peer_hosts: Vec<&str> = ov["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["host"].as_str().unwrap())
        .collect();
    peer_hosts.sort();
    assert_eq!(peer_hosts, [h2.id(), h3.id()]);
    assert_eq!(ov["vxlan"], "vx-ov1");

    // Teardown: containers, then every host leaves, then the networks go.
    for (h, c) in [(&h1, &a1), (&h2, &a2), (&h3, &a3), (&h1, &b1), (&h2, &b2)] {
        unwire(h, c.id());
    }
    // Still joined: the network's side stays (like a bridge) until leave.
    assert!(h1.link("vx-ov1").is_some());
    let refused = h1.wirehook(&["network", "rm", "ov1"], None);
    assert!(!refused.status.success());
    assert!(
        refused.stderr_str().contains("overlay leave ov1"),
        "{}",
        refused.stderr_str()
    );
    for h in [&h1, &h2, &h3] {
        h.wirehook(&["overlay", "leave", "ov1"], None)
            .expect_success("leave ov1");
    }
    for h in [&h1, &h2] {
        h.wirehook(&["overlay", "leave", "ov2"], None)
            .expect_success("leave ov2");
    }
    let keys = etcd_keys(&cluster);
    assert!(
        keys.iter()
            .all(|k| !k.contains("/hosts/") && !k.contains("/alive/") && !k.contains("/subnets/")),
        "no keys of hosts that left: {keys:?}"
    );
    h1.wirehook(&["network", "rm", "ov1", "ov2"], None)
        .expect_success("network rm");
    assert_eq!(etcd_keys(&cluster), Vec::<String>::new());
    for h in [&h1, &h2, &h3] {
        assert_eq!(wirehook_links(h), Vec::<String>::new(), "{}", h.id());
        let routes = h.exec(&["ip", "route", "show"]).stdout_str();
        assert!(!routes.contains("10.21"), "{}: {routes}", h.id());
    }
}

#[test]
fn agents_follow_joins_deaths_and_an_etcd_restart() {
    let cluster = Cluster::with_etcd("ovag");
    let h1 = cluster.add_host();
    let h2 = cluster.add_host();
    let h3 = cluster.add_host();
    let agent = ["--ttl", "3", "--resync", "5"];
    create(&h1, &["--subnet", "10.220.0.0/16", "ov"]);
    for h in [&h1, &h2, &h3] {
        h.start_agent(&agent);
    }
    let a1 = wire_on(&h1, "a1", "ov");
    let a2 = wire_on(&h2, "a2", "ov");
    let a3 = wire_on(&h3, "a3", "ov");
    // No reconcile by hand: the agents pick up each other's claims.
    let full = |h: &ClusterHost, n: usize| h.vxlan_entries("vx-ov").fdb.len() == n;
    assert!(
        eventually(Duration::from_secs(10), || full(&h1, 2)
            && full(&h2, 2)
            && full(&h3, 2)),
        "agents program every peer: {:?}\n{}",
        h1.vxlan_entries("vx-ov"),
        h1.agent_log()
    );
    assert!(pings(&a1, &ipv4(&a3)) && pings(&a3, &ipv4(&a2)));

    // A fourth host joins while the others run.
    let h4 = cluster.add_host();
    h4.start_agent(&agent);
    let a4 = wire_on(&h4, "a4", "ov");
    let a4_ip = ipv4(&a4);
    assert!(
        eventually(Duration::from_secs(10), || pings(&a1, &a4_ip)),
        "a1 reaches the new host's container"
    );
    let a2_ip = ipv4(&a2);
    assert!(
        eventually(Duration::from_secs(10), || pings(&a4, &a2_ip)),
        "the new host's container reaches a2 (h2's agent added h4)"
    );

    // A host dies: agent killed (no goodbye), namespace gone. The others
    // drop it within the lease TTL.
    let h3_addr = h3.addr().to_string();
    h3.kill_agent();
    drop(a3);
    drop(h3);
    let t = Instant::now();
    let gone = |h: &ClusterHost| !h.vxlan_entries("vx-ov").fdb.contains(&h3_addr);
    assert!(
        eventually(Duration::from_secs(8), || gone(&h1)
            && gone(&h2)
            && gone(&h4)),
        "dead host dropped: {:?}",
        h1.vxlan_entries("vx-ov")
    );
    eprintln!("dead host dropped after {:.1?} (ttl 3 s)", t.elapsed());
    let two_each = |h: &ClusterHost| {
        let e = h.vxlan_entries("vx-ov");
        (e.routes.len(), e.neighbours.len(), e.fdb.len()) == (2, 2, 2)
    };
    assert!(
        eventually(Duration::from_secs(5), || two_each(&h1)),
        "h1 keeps h2 and h4: {:?}\n{}",
        h1.vxlan_entries("vx-ov"),
        h1.agent_log()
    );

    // etcd restarts; the agents reconnect and keep following.
    cluster.etcd().restart();
    let h5 = cluster.add_host();
    h5.start_agent(&agent);
    let a5 = wire_on(&h5, "a5", "ov");
    let a5_ip = ipv4(&a5);
    assert!(
        eventually(Duration::from_secs(20), || pings(&a1, &a5_ip)
            && pings(&a2, &a5_ip)),
        "after the restart the agents add the new host\n{}",
        h1.agent_log()
    );
    for h in [&h1, &h2, &h4, &h5] {
        assert!(
            h.agent_running(),
            "agent of {} survived the restart",
            h.id()
        );
    }

    // A host leaves cleanly: its keys go, the others drop it at once.
    unwire(&h4, a4.id());
    let st = h4.stop_agent();
    assert!(st.success(), "agent exits 0 on SIGTERM: {st}");
    h4.wirehook(&["overlay", "leave", "ov"], None)
        .expect_success("leave");
    let h4_addr = h4.addr().to_string();
    assert!(
        eventually(Duration::from_secs(3), || !h1
            .vxlan_entries("vx-ov")
            .fdb
            .contains(&h4_addr)),
        "h4 dropped"
    );
    let keys = etcd_keys(&cluster);
    assert!(
        !keys
            .iter()
            .any(|k| k.ends_with("/h4") || k.contains("/h4/")),
        "no keys of h4: {keys:?}"
    );
    let _ = (a1, a2);
}

#[test]
fn hosts_starting_their_first_container_at_once_never_share_a_subnet() {
    let cluster = Cluster::with_etcd("ovrace");
    let hosts: Vec<ClusterHost> = (0..6).map(|_| cluster.add_host()).collect();
    for (i, net) in ["race1", "race2"].iter().enumerate() {
        create(&hosts[0], &["--subnet", &format!("10.23{i}.0.0/16"), net]);
        let containers: Vec<Container<'_>> = hosts.iter().map(|h| h.container(net)).collect();
        let outs: Vec<std::process::Output> = std::thread::scope(|s| {
            let handles: Vec<_> = hosts
                .iter()
                .zip(&containers)
                .map(|(h, c)| s.spawn(move || setup(h, c, &[("io.wirehook.network", net)])))
                .collect();
            handles.into_iter().map(|j| j.join().unwrap()).collect()
        });
        for o in outs {
            o.expect_success("concurrent first container");
        }
        let view = inspect(&hosts[0], net);
        let mut shares: Vec<String> = view["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["subnet"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(shares.len(), 6, "{view}");
        shares.sort();
        shares.dedup();
        assert_eq!(shares.len(), 6, "six distinct shares: {shares:?}");
        // Each container's address is in its own host's share.
        for (h, c) in hosts.iter().zip(&containers) {
            let ip: Ipv4Addr = ipv4(c).parse().unwrap();
            let mine = view["hosts"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["host"] == h.id())
                .unwrap()["subnet"]
                .as_str()
                .unwrap()
                .to_string();
            let (net, len) = mine.split_once('/').unwrap();
            let (net, len): (Ipv4Addr, u32) = (net.parse().unwrap(), len.parse().unwrap());
            let mask = u32::MAX << (32 - len);
            assert_eq!(u32::from(ip) & mask, u32::from(net), "{ip} in {mine}");
        }
    }
}

#[test]
fn a_start_costs_the_hook_one_etcd_request_and_the_resolver_one_txn() {
    let cluster = Cluster::with_etcd("ovrt");
    let h1 = cluster.add_host();
    let h2 = cluster.add_host();
    create(&h1, &["--subnet", "10.241.0.0/16", "ov"]);
    let _first = wire_on(&h1, "first", "ov");
    let _other = wire_on(&h2, "other", "ov");
    reconcile(&h1);
    // The resolver of h1 runs (for `first`), holds its lease and watch.
    let delta = |before: &std::collections::BTreeMap<String, u64>, m: &str| {
        cluster
            .etcd_requests_by_method()
            .get(m)
            .copied()
            .unwrap_or(0)
            - before.get(m).copied().unwrap_or(0)
    };
    let before = cluster.etcd_requests_by_method();
    let c = wire_on(&h1, "second", "ov");
    // The hook: one read of the network's keys, nothing else (the
    // resolvers' lease keepalives may tick meanwhile).
    assert_eq!(delta(&before, "Range"), 1, "one read of the network's keys");
    assert_eq!(delta(&before, "Put"), 0, "no put");
    assert_eq!(delta(&before, "LeaseGrant"), 0, "no lease");
    // The resolver, after it answered the hook: the name, in one
    // transaction.
    assert!(
        eventually(Duration::from_secs(10), || delta(&before, "Txn") == 1),
        "the resolver writes the container's name once"
    );
    let after_setup = cluster.etcd_requests_by_method();
    unwire(&h1, c.id());
    assert_eq!(delta(&after_setup, "Range"), 0, "teardown reads nothing");
    // The resolver deletes the name: one transaction.
    assert!(
        eventually(Duration::from_secs(10), || delta(&after_setup, "Txn") == 1),
        "the resolver deletes the container's name once"
    );
    std::thread::sleep(Duration::from_millis(500));
    for m in ["Txn", "Put", "DeleteRange", "Range"] {
        let want = u64::from(m == "Txn");
        assert_eq!(delta(&after_setup, m), want, "{m} after the teardown");
    }
}

#[test]
fn runc_containers_on_two_hosts_reach_each_other() {
    let cluster = Cluster::with_etcd("ovrunc");
    let h1 = cluster.add_host();
    let h2 = cluster.add_host();
    create(&h1, &["--subnet", "10.240.0.0/16", "ov"]);
    let b = wire_on(&h2, "b", "ov");
    let bundle = Bundle::busybox(
        &h1.root().join("bundle"),
        &["sleep", "3600"],
        &[("io.wirehook.network", "ov")],
    );
    Runtime::Runc.add_wirehook_hooks(&h1, &bundle);
    let id = h1.unique_id("web");
    let ctr = Runtime::Runc.start(&h1, &bundle, &id);
    // h2 joined first and learns of h1 on its next pass.
    reconcile(&h2);
    let b_ip = ipv4(&b);
    ctr.exec(&["ping", "-c1", "-W2", &b_ip])
        .expect_success("runc container on h1 reaches h2's container");
    let inside = ctr
        .exec(&["ip", "-4", "-o", "addr", "show", "eth0"])
        .stdout_str();
    let ip = inside
        .split_whitespace()
        .nth(3)
        .and_then(|a| a.split('/').next())
        .expect("address of eth0")
        .to_string();
    assert!(pings(&b, &ip), "h2's container reaches the runc container");
    ctr.stop().expect_success("runc delete runs poststop");
    assert!(
        support::eventually(5, || support::links_with_prefix(&h1, "whv").is_empty()),
        "the container's veth is gone"
    );
}

#[test]
fn one_host_without_a_store() {
    let host = TestHost::new("ovlocal");
    host.wirehook(&["network", "create", "--driver", "overlay", "solo"], None)
        .expect_success("create without a store");
    let a = host.container("a");
    let b = host.container("b");
    wire(&host, &a, &[("io.wirehook.network", "solo")]);
    wire(&host, &b, &[("io.wirehook.network", "solo")]);
    assert!(pings(&a, &ipv4(&b)));
    let view = inspect(&host, "solo");
    assert!(
        view["subnets"][0]["subnet"]
            .as_str()
            .unwrap()
            .starts_with("10.2"),
        "{view}"
    );
    assert_eq!(view["hosts"].as_array().unwrap().len(), 1, "{view}");
    assert!(host.link("vx-solo").is_some());
    unwire(&host, a.id());
    unwire(&host, b.id());
    host.wirehook(&["overlay", "leave", "solo"], None)
        .expect_success("leave");
    host.wirehook(&["network", "rm", "solo"], None)
        .expect_success("rm");
    assert_eq!(wirehook_links(&host), Vec::<String>::new());
    let ls = host.wirehook(&["network", "ls", "-q"], None).stdout_str();
    assert!(!ls.contains("solo"), "{ls}");
}

#[test]
fn errors_are_one_line_and_leave_nothing() {
    // A store nobody answers at: fail fast, naming it.
    let cluster = Cluster::without_store("overr");
    let dead = cluster.add_host_with(serde_json::json!({
        "host_id": "dead",
        "store": "etcd://192.0.2.99:2379",
    }));
    let t = Instant::now();
    let out = dead.wirehook(&["network", "create", "--driver", "overlay", "x"], None);
    assert!(!out.status.success());
    let err = out.stderr_str();
    assert!(err.contains("192.0.2.99:2379"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let c = dead.container("c");
    let out = setup(&dead, &c, &[("io.wirehook.network", "x")]);
    assert!(!out.status.success());
    assert!(
        out.stderr_str().contains("192.0.2.99:2379"),
        "{}",
        out.stderr_str()
    );
    assert!(
        t.elapsed() < Duration::from_secs(9),
        "fails within the hook timeout: {:.1?}",
        t.elapsed()
    );
    assert_eq!(wirehook_links(&dead), Vec::<String>::new());
    assert_eq!(
        support::state_files(&support::run_dir(&dead)),
        Vec::<String>::new()
    );

    let cluster = Cluster::with_etcd("overr2");
    let h1 = cluster.add_host();
    let h2 = cluster.add_host();
    let h3 = cluster.add_host();
    // VNI clash.
    create(
        &h1,
        &[
            "--vni",
            "500",
            "--subnet",
            "10.250.0.0/24",
            "--host-prefix",
            "25",
            "tiny",
        ],
    );
    let out = h2.wirehook(
        &[
            "network", "create", "--driver", "overlay", "--vni", "500", "other",
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(
        out.stderr_str()
            .contains("VNI 500 is already used by overlay network tiny"),
        "{}",
        out.stderr_str()
    );
    // Two shares of /25: the third host finds none and leaves nothing.
    let _c1 = wire_on(&h1, "c1", "tiny");
    let _c2 = wire_on(&h2, "c2", "tiny");
    let c3 = h3.container("c3");
    let out = setup(&h3, &c3, &[("io.wirehook.network", "tiny")]);
    assert!(!out.status.success());
    let err = out.stderr_str();
    assert!(
        err.contains("no free /25 left") && err.contains("overlay forget"),
        "{err}"
    );
    assert_eq!(wirehook_links(&h3), Vec::<String>::new());
    // Underlay interface missing.
    let bad = cluster.add_host_with(serde_json::json!({
        "host_id": "bad",
        "store": cluster.store_url(),
        "underlay_interface": "nope0",
    }));
    let c = bad.container("c");
    let out = setup(&bad, &c, &[("io.wirehook.network", "tiny")]);
    assert!(!out.status.success());
    assert!(
        out.stderr_str()
            .contains("underlay interface nope0 does not exist"),
        "{}",
        out.stderr_str()
    );
    assert_eq!(wirehook_links(&bad), Vec::<String>::new());
    assert_eq!(
        support::state_files(&support::run_dir(&bad)),
        Vec::<String>::new()
    );
}
