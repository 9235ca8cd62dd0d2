//! Bridge networking through the hook, against the real kernel: what the
//! kernel shows after setup, real traffic (ping, TCP through published
//! ports, masquerade, isolation), and that teardown leaves nothing.

mod support;

use std::net::{IpAddr, SocketAddr};

use support::*;
use wirehook_tests::*;

#[test]
fn two_containers_on_the_default_bridge() {
    let host = TestHost::new("br2");
    let up = host.uplink();
    let a = host.container("a");
    let b = host.container("b");
    wire(&host, &a, &[("io.wirehook.network", "bridge")]);
    wire(&host, &b, &[("io.wirehook.network", "bridge")]);

    // The host side: the bridge holds the gateway, both veths hang on it.
    let br = host.link("wirehook0").expect("bridge wirehook0 exists");
    assert_eq!(br["linkinfo"]["info_kind"], "bridge");
    let (gw, prefix) =
        addr_of(&host.addrs_json(), "wirehook0", false).expect("gateway on the bridge");
    let veths = links_with_prefix(&host, "whv");
    assert_eq!(veths.len(), 2, "{veths:?}");
    for v in &veths {
        let l = host.link(v).unwrap();
        assert_eq!(l["master"], "wirehook0", "{v} is a port of the bridge");
        assert_eq!(l["linkinfo"]["info_kind"], "veth");
    }

    // The container side: eth0 with an address in the subnet, default route.
    let (ipa, pa) = addr_of(&a.addrs_json(), "eth0", false).unwrap();
    let (ipb, _) = addr_of(&b.addrs_json(), "eth0", false).unwrap();
    assert_ne!(ipa, ipb);
    assert_eq!(pa, prefix);
    let net = ipnet(gw, prefix);
    assert!(
        net.contains(&ipa) && net.contains(&ipb),
        "{ipa} {ipb} in {gw}/{prefix}"
    );
    let routes = a.routes_json();
    let default = routes
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["dst"] == "default")
        .expect("default route");
    assert_eq!(default["gateway"], gw.to_string());
    assert_eq!(default["dev"], "eth0");
    // IPv4-only network: no IPv6 on eth0, none on the bridge ports either
    // (their link-local chatter would be flooded to every port).
    assert!(addr_of(&a.addrs_json(), "eth0", true).is_none());
    let a6 = a
        .exec(&["ip", "-6", "-o", "addr", "show", "dev", "eth0"])
        .stdout_str();
    assert!(a6.trim().is_empty(), "no IPv6 address at all on eth0: {a6}");
    for v in &veths {
        let h6 = host
            .exec(&["ip", "-6", "-o", "addr", "show", "dev", v])
            .stdout_str();
        assert!(
            h6.trim().is_empty(),
            "no IPv6 address on bridge port {v}: {h6}"
        );
    }
    let links = a.links_json();
    let names: Vec<_> = links
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["ifname"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["lo", "eth0"]);

    // Traffic: each other, the gateway, and the LAN through masquerade.
    assert!(pings(&a, &ipb.to_string()), "a reaches b");
    assert!(pings(&b, &ipa.to_string()), "b reaches a");
    assert!(pings(&a, &gw.to_string()), "a reaches the gateway");
    let echo = up.echo_server(7000);
    let reply = tcp(
        &a.netns_path(),
        SocketAddr::new(up.peer_addr().into(), 7000),
        "hello",
    )
    .expect("LAN reachable");
    assert!(reply.ends_with("hello"), "{reply}");
    let client = echo.clients()[0];
    assert_eq!(
        client.ip(),
        IpAddr::from(up.host_addr()),
        "masqueraded to the host's uplink address"
    );

    // The record knows it all; teardown removes it all.
    let ps = host.wirehook(&["ps", "--json"], None).expect_success("ps");
    let recs: serde_json::Value = serde_json::from_slice(&ps.stdout).unwrap();
    assert_eq!(recs.as_array().unwrap().len(), 2);
    unwire(&host, a.id());
    unwire(&host, b.id());
    assert_clean(&host);
    assert!(
        host.link("wirehook0").is_some(),
        "bridges stay (no per-container churn)"
    );
}

fn ipnet(ip: IpAddr, prefix: u8) -> Net {
    Net(ip, prefix)
}

struct Net(IpAddr, u8);
impl Net {
    fn contains(&self, ip: &IpAddr) -> bool {
        match (self.0, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = if self.1 == 0 {
                    0
                } else {
                    u32::MAX << (32 - self.1)
                };
                u32::from(n) & mask == u32::from(*a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = if self.1 == 0 {
                    0
                } else {
                    u128::MAX << (128 - self.1)
                };
                u128::from(n) & mask == u128::from(*a) & mask
            }
            _ => false,
        }
    }
}

#[test]
fn published_port_answers_lan_host_and_other_containers() {
    let host = TestHost::new("ports");
    let up = host.uplink();
    let web = host.container("web");
    let other = host.container("oth");
    wire(
        &host,
        &web,
        &[
            ("io.wirehook.network", "bridge"),
            ("io.wirehook.ports", "8080:80,5353:53/udp"),
        ],
    );
    wire(&host, &other, &[("io.wirehook.network", "bridge")]);
    let _tcp = EchoServer::tcp(&web.netns_path(), "0.0.0.0:80".parse().unwrap());
    // The resolver holds 127.0.0.11:53 in every container with names, so a
    // server on port 53 binds the container's own address, not 0.0.0.0.
    let _udp = EchoServer::udp(&web.netns_path(), SocketAddr::new(ipv4_of(&web), 53));

    let host_addr: IpAddr = up.host_addr().into();
    // Another machine on the LAN.
    let r = up
        .tcp_request(SocketAddr::new(host_addr, 8080), "from-lan")
        .expect("LAN -> published port");
    assert!(
        r.starts_with(&format!("{}:", up.peer_addr())),
        "client address preserved: {r}"
    );
    let r = up
        .udp_request(SocketAddr::new(host_addr, 5353), "udp")
        .expect("LAN -> udp port");
    assert!(r.ends_with("udp"), "{r}");
    // The host itself, by its address and by 127.0.0.1.
    let r = tcp(
        host.netns_path(),
        SocketAddr::new(host_addr, 8080),
        "from-host",
    )
    .expect("host -> own address");
    assert!(r.ends_with("from-host"), "{r}");
    let r = tcp(
        host.netns_path(),
        "127.0.0.1:8080".parse().unwrap(),
        "from-lo",
    )
    .expect("host -> 127.0.0.1");
    assert!(r.ends_with("from-lo"), "{r}");
    // Another container, through the host's address.
    let r = tcp(
        &other.netns_path(),
        SocketAddr::new(host_addr, 8080),
        "from-ctr",
    )
    .expect("container -> host address");
    assert!(r.ends_with("from-ctr"), "{r}");
    // The container itself, through the host's address (hairpin).
    let r = tcp(
        &web.netns_path(),
        SocketAddr::new(host_addr, 8080),
        "hairpin",
    );
    assert!(
        r.is_ok_and(|r| r.ends_with("hairpin")),
        "container reaches its own published port"
    );

    // One element per port, nothing per container in the rules.
    assert_eq!(nft_elements(&host, "pub4_any").len(), 2);
    unwire(&host, web.id());
    // Ports close a moment after poststop returns (teardown's finisher).
    assert!(
        eventually(3, || up
            .tcp_request(SocketAddr::new(host_addr, 8080), "gone")
            .is_err()),
        "port closed after teardown"
    );
    unwire(&host, other.id());
    assert_clean(&host);
}

#[test]
fn networks_are_isolated_and_internal_has_no_way_out() {
    let host = TestHost::new("iso");
    let up = host.uplink();
    host.wirehook(
        &["network", "create", "--subnet", "10.31.0.0/24", "red"],
        None,
    )
    .expect_success("create red");
    host.wirehook(
        &["network", "create", "--subnet", "10.32.0.0/24", "blue"],
        None,
    )
    .expect_success("create blue");
    host.wirehook(
        &[
            "network",
            "create",
            "--internal",
            "--subnet",
            "10.33.0.0/24",
            "vault",
        ],
        None,
    )
    .expect_success("create vault");
    let r1 = host.container("r1");
    let r2 = host.container("r2");
    let b1 = host.container("b1");
    let v1 = host.container("v1");
    let v2 = host.container("v2");
    wire(&host, &r1, &[("io.wirehook.network", "red")]);
    wire(&host, &r2, &[("io.wirehook.network", "red")]);
    wire(
        &host,
        &b1,
        &[
            ("io.wirehook.network", "blue"),
            ("io.wirehook.ports", "9090:90"),
        ],
    );
    wire(&host, &v1, &[("io.wirehook.network", "vault")]);
    wire(&host, &v2, &[("io.wirehook.network", "vault")]);
    let _srv = EchoServer::tcp(&b1.netns_path(), "0.0.0.0:90".parse().unwrap());

    assert!(ipv4_of(&r1).to_string().starts_with("10.31.0."));
    assert!(
        pings(&r1, &ipv4_of(&r2).to_string()),
        "same network: reachable"
    );
    assert!(
        !pings(&r1, &ipv4_of(&b1).to_string()),
        "red must not reach blue"
    );
    assert!(
        !pings(&b1, &ipv4_of(&r1).to_string()),
        "blue must not reach red"
    );
    let direct = tcp(&r1.netns_path(), SocketAddr::new(ipv4_of(&b1), 90), "x");
    assert!(direct.is_err(), "no TCP across networks either");
    // ... but a published port stays reachable through the host's address.
    let via_host = tcp(
        &r1.netns_path(),
        SocketAddr::new(up.host_addr().into(), 9090),
        "pub",
    );
    assert!(
        via_host.is_ok_and(|r| r.ends_with("pub")),
        "published port reachable from another network"
    );

    // Internal: members talk, nothing leaves, no default route.
    assert!(pings(&v1, &ipv4_of(&v2).to_string()));
    assert!(
        !pings(&v1, &up.peer_addr().to_string()),
        "internal network must not reach the LAN"
    );
    let routes = v1.routes_json();
    assert!(
        !routes
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["dst"] == "default"),
        "no default route: {routes}"
    );
    assert!(
        !pings(&r1, &ipv4_of(&v1).to_string()),
        "nor be reached from other networks"
    );

    host.wirehook(&["network", "rm", "red"], None)
        .expect_failure("rm while in use");
    for c in [&r1, &r2, &b1, &v1, &v2] {
        unwire(&host, c.id());
    }
    assert_clean(&host);
    host.wirehook(&["network", "rm", "red", "blue", "vault"], None)
        .expect_success("rm after use");
    assert!(host.link("wh-red").is_none(), "rm removes the bridge");
    let chains = host
        .exec(&["nft", "list", "table", "inet", "wirehook"])
        .stdout_str();
    assert!(
        !chains.contains("nw-red"),
        "rm removes the network's chains:\n{chains}"
    );
}

#[test]
fn static_address_mac_mtu_ifname_and_ipv6() {
    let host = TestHost::new("stat");
    host.wirehook(
        &[
            "network",
            "create",
            "--subnet",
            "10.40.0.0/24",
            "--subnet",
            "fd00:40::/64",
            "--mtu",
            "1400",
            "dual",
        ],
        None,
    )
    .expect_success("create dual");
    let a = host.container("a");
    let b = host.container("b");
    wire(
        &host,
        &a,
        &[
            ("io.wirehook.network", "dual"),
            ("io.wirehook.ip", "10.40.0.50,fd00:40::50"),
            ("io.wirehook.mac", "02:aa:bb:cc:dd:ee"),
            ("io.wirehook.mtu", "1300"),
            ("io.wirehook.ifname", "net0"),
        ],
    );
    wire(&host, &b, &[("io.wirehook.network", "dual")]);
    let l = find_link(&a.links_json(), "net0").expect("interface named by io.wirehook.ifname");
    assert_eq!(l["address"], "02:aa:bb:cc:dd:ee");
    assert_eq!(l["mtu"], 1300);
    let addrs = a.addrs_json();
    assert_eq!(
        addr_of(&addrs, "net0", false).unwrap().0.to_string(),
        "10.40.0.50"
    );
    assert_eq!(
        addr_of(&addrs, "net0", true).unwrap().0.to_string(),
        "fd00:40::50"
    );
    assert_eq!(
        find_link(&b.links_json(), "eth0").unwrap()["mtu"],
        1400,
        "network MTU by default"
    );
    let b6 = addr_of(&b.addrs_json(), "eth0", true)
        .expect("v6 from the pool")
        .0;
    assert!(pings(&b, "10.40.0.50"));
    assert!(pings(&b, "fd00:40::50"), "IPv6 between containers");
    assert!(b6.to_string().starts_with("fd00:40::"));

    // The static address is taken: another container cannot have it.
    let c = host.container("c");
    let out = setup(
        &host,
        &c,
        &[
            ("io.wirehook.network", "dual"),
            ("io.wirehook.ip", "10.40.0.50"),
        ],
    )
    .expect_failure("taken ip");
    let err = out.stderr_str();
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(
        err.contains("10.40.0.50") && err.contains("already held"),
        "{err}"
    );
    assert!(find_link(&c.links_json(), "eth0").is_none());
    unwire(&host, a.id());
    unwire(&host, b.id());
    assert_clean(&host);
}

#[test]
fn multiple_networks_give_one_interface_each() {
    let host = TestHost::new("multi");
    host.wirehook(
        &["network", "create", "--subnet", "10.51.0.0/24", "front"],
        None,
    )
    .expect_success("front");
    host.wirehook(
        &["network", "create", "--subnet", "10.52.0.0/24", "back"],
        None,
    )
    .expect_success("back");
    let c = host.container("m");
    wire(&host, &c, &[("io.wirehook.network", "front,back")]);
    let addrs = c.addrs_json();
    assert!(addr_of(&addrs, "eth0", false)
        .unwrap()
        .0
        .to_string()
        .starts_with("10.51.0."));
    assert!(addr_of(&addrs, "eth1", false)
        .unwrap()
        .0
        .to_string()
        .starts_with("10.52.0."));
    let defaults: Vec<_> = c
        .routes_json()
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["dst"] == "default")
        .cloned()
        .collect();
    assert_eq!(
        defaults.len(),
        1,
        "one default route, via the first network: {defaults:?}"
    );
    assert_eq!(defaults[0]["dev"], "eth0");
    unwire(&host, c.id());
    assert_clean(&host);
}

#[test]
fn idempotent_setup_and_teardown() {
    let host = TestHost::new("idem");
    let c = host.container("i");
    let ann = [("io.wirehook.network", "bridge")];
    wire(&host, &c, &ann);
    let first = addr_of(&c.addrs_json(), "eth0", false).unwrap();
    // prestart after createRuntime (a hooks.d file listing both) changes nothing.
    let bundle = c.bundle(NetNsEntry::Fresh);
    host.wirehook_hook("prestart", &c.state_json(c.id(), "created", &ann, &bundle))
        .expect_success("second setup");
    assert_eq!(addr_of(&c.addrs_json(), "eth0", false).unwrap(), first);
    assert_eq!(links_with_prefix(&host, "whv").len(), 1);
    unwire(&host, c.id());
    unwire(&host, c.id());
    // crun's poststop shape: pid 0.
    host.wirehook_hook(
        "poststop",
        &oci_state(c.id(), "stopped", Some(0), &bundle, &ann),
    )
    .expect_success("third teardown");
    assert_clean(&host);
}

#[test]
fn no_annotation_means_no_op() {
    let host = TestHost::new("noop");
    let c = host.container("n");
    let out = setup(&host, &c, &[("org.example.other", "x")])
        .expect_success("hook without our annotation");
    assert!(out.stderr.is_empty());
    assert_eq!(c.links_json().as_array().unwrap().len(), 1, "only lo");
    assert!(host.link("wirehook0").is_none(), "nothing made on the host");
    assert!(state_files(&run_dir(&host)).is_empty());
}

#[test]
fn gc_cleans_up_after_a_runtime_that_never_called_poststop() {
    let host = TestHost::new("gc");
    let mut c = host.container("g");
    let keep = host.container("k");
    wire(
        &host,
        &c,
        &[
            ("io.wirehook.network", "bridge"),
            ("io.wirehook.ports", "8081:80"),
        ],
    );
    wire(&host, &keep, &[("io.wirehook.network", "bridge")]);
    c.kill();
    let out = host
        .wirehook(&["gc", "--dry-run"], None)
        .expect_success("gc --dry-run");
    assert!(out.stdout_str().contains(c.id()), "{}", out.stdout_str());
    assert_eq!(
        links_with_prefix(&host, "whv").len(),
        2,
        "dry run changes nothing"
    );
    host.wirehook(&["gc"], None).expect_success("gc");
    let ps = host
        .wirehook(&["ps"], None)
        .expect_success("ps")
        .stdout_str();
    assert!(!ps.contains(c.id()) && ps.contains(keep.id()), "{ps}");
    assert!(
        eventually(5, || links_with_prefix(&host, "whv").len() == 1),
        "dead container's veth gone"
    );
    assert!(nft_elements(&host, "pub4_any").is_empty());
    unwire(&host, keep.id());
    assert_clean(&host);
}

/// Poststop of `id` whose finisher, once detached, sleeps `delay_ms` first.
fn unwire_slowly(host: &TestHost, id: &str, delay_ms: u64) {
    let bundle = host.root().join("no-bundle");
    host.wirehook_env(
        &["hook", "poststop"],
        Some(&oci_state(id, "stopped", None, &bundle, &[])),
        &[("WIREHOOK_FINISH_DELAY_MS", &delay_ms.to_string())],
    )
    .expect_success(&format!("teardown of {id}"));
}

#[test]
fn a_restarted_container_gets_its_port_and_address_back_at_once() {
    // On a loaded machine the previous run's teardown is still finishing
    // (and its namespace still being destroyed) when the next run starts.
    let _load = CpuHog::on_every_core();
    let host = TestHost::new("again");
    let up = host.uplink();
    // A bystander keeps the bridge up while the others come and go, as on
    // any host with more than one container: the bridge then never loses
    // its carrier, so nothing flushes the host's neighbour cache.
    let bystander = host.container("by");
    wire(&host, &bystander, &[("io.wirehook.network", "bridge")]);
    let ann = [
        ("io.wirehook.network", "bridge"),
        ("io.wirehook.ports", "8181:80"),
        ("io.wirehook.ip", "10.88.7.7"),
    ];
    let finishing = |id: &str| run_dir(&host).join("finishing").join(format!("{id}.json"));
    let mut prev: Option<String> = None;
    // Each round's process is started before the previous run's teardown,
    // so a slow round's setup follows that teardown at once.
    let mut next = host.container("r0");
    for round in 0..24 {
        // Four kinds of restart in turn: a new id, the same id, and each of
        // them while the previous run's finisher still runs.
        let same_id = round % 2 == 1;
        let slow = round % 4 >= 2;
        let what = format!(
            "round {round} ({} id{})",
            if same_id { "same" } else { "new" },
            if slow {
                ", previous teardown still finishing"
            } else {
                ""
            }
        );
        let c = next;
        let id = match (&prev, same_id) {
            (Some(p), true) => p.clone(),
            _ => c.id().to_string(),
        };
        setup_as(&host, &c, &id, &ann).expect_success(&format!("{what}: setup"));
        let srv = EchoServer::tcp(&c.netns_path(), "0.0.0.0:80".parse().unwrap());
        let r = up.tcp_request(SocketAddr::new(up.host_addr().into(), 8181), "again");
        assert!(
            r.as_ref().is_ok_and(|r| r.ends_with("again")),
            "{what}: the published port answers: {r:?}"
        );
        let check = host
            .wirehook(&["check", &id], None)
            .expect_success(&format!("{what}: wirehook check"));
        assert!(
            check.stdout_str().contains("ok"),
            "{what}: {}",
            check.stdout_str()
        );
        assert!(
            pings(&bystander, "10.88.7.7"),
            "{what}: the bystander reaches it by address"
        );
        drop(srv);
        next = host.container(&format!("r{}", round + 1));
        // The container ends, then its poststop runs (as a runtime does).
        // The next round of the slow kinds starts while this finisher
        // sleeps: checked right after poststop, and the next setup follows
        // at once (the delay is far longer than that step).
        drop(c);
        let next_slow = (round + 1) % 4 >= 2;
        unwire_slowly(&host, &id, if next_slow { 600 } else { 0 });
        if next_slow {
            assert!(
                finishing(&id).exists(),
                "round {}: the previous run's finisher is still running",
                round + 1
            );
        }
        prev = Some(id);
    }
    drop(next);
    unwire(&host, bystander.id());
    // But a port held by a live container is refused at once, with its holder.
    let a = host.container("a");
    let b = host.container("b");
    wire(
        &host,
        &a,
        &[
            ("io.wirehook.network", "bridge"),
            ("io.wirehook.ports", "8282:80"),
        ],
    );
    // Waiting for a finishing teardown would take the whole window (made
    // 30 s here); a live holder is refused at once.
    let t = std::time::Instant::now();
    let out = setup_env(
        &host,
        &b,
        &[
            ("io.wirehook.network", "bridge"),
            ("io.wirehook.ports", "8282:80"),
        ],
        &[("WIREHOOK_FINISH_WAIT_MS", "30000")],
    )
    .expect_failure("port held by a running container");
    assert!(
        t.elapsed() < std::time::Duration::from_secs(15),
        "no waiting for a live holder: {:?}",
        t.elapsed()
    );
    assert!(
        out.stderr_str().contains("already published"),
        "{}",
        out.stderr_str()
    );
    unwire(&host, a.id());
    assert_clean(&host);
}

#[test]
fn gc_leaves_a_running_teardown_alone_and_finishes_an_abandoned_one() {
    let host = TestHost::new("gcfin");
    let c = host.container("f");
    wire(
        &host,
        &c,
        &[
            ("io.wirehook.network", "bridge"),
            ("io.wirehook.ports", "8383:80"),
        ],
    );
    let ip = ipv4_of(&c);
    // A finisher held until gc is done: its lease, port and bind mount are
    // still held while gc runs.
    let bundle = host.root().join("nb");
    let hold = host.root().join("hold-finisher");
    std::fs::write(&hold, "").unwrap();
    let hold_env = hold.to_str().unwrap().to_string();
    host.wirehook_env(
        &["hook", "poststop"],
        Some(&oci_state(c.id(), "stopped", None, &bundle, &[])),
        &[("WIREHOOK_FINISH_HOLD", &hold_env)],
    )
    .expect_success("poststop");
    let marker = run_dir(&host)
        .join("finishing")
        .join(format!("{}.json", c.id()));
    assert!(
        marker.exists(),
        "the finisher is still running when gc starts"
    );
    let out = host
        .wirehook(&["gc"], None)
        .expect_success("gc")
        .stdout_str();
    assert!(
        !out.contains(&ip.to_string()),
        "gc must not take a running finisher's lease: {out}"
    );
    assert!(
        !out.contains("bind mount") && !out.contains("stray veth"),
        "{out}"
    );
    assert!(marker.exists(), "the finisher is held while gc runs");
    assert_eq!(
        nft_elements(&host, "pub4_any").len(),
        1,
        "the finisher, not gc, closes the port"
    );
    std::fs::remove_file(&hold).unwrap();
    assert!(eventually(30, || !marker.exists()), "the finisher finishes");
    assert_clean(&host);

    // A finisher that died: its marker is left unlocked; gc finishes the job.
    let lease_dir = run_dir(&host).join("leases/bridge");
    std::fs::create_dir_all(&lease_dir).unwrap();
    std::fs::write(lease_dir.join("10.88.99.99"), "ghost\n").unwrap();
    let fin = run_dir(&host).join("finishing");
    std::fs::create_dir_all(&fin).unwrap();
    std::fs::write(
        fin.join("ghost.json"),
        r#"{"owner":"ghost","links":[],"items":[{"conntrack":["10.88.99.99"]},{"lease":{"network":"bridge","address":"10.88.99.99"}}]}"#,
    )
    .unwrap();
    let out = host
        .wirehook(&["gc"], None)
        .expect_success("gc")
        .stdout_str();
    assert!(out.contains("ghost"), "{out}");
    assert_clean(&host);
    assert!(!fin.join("ghost.json").exists(), "marker removed");
}

#[test]
fn check_finds_a_published_port_whose_map_element_is_gone_or_elsewhere() {
    let host = TestHost::new("chkport");
    let c = host.container("c");
    wire(
        &host,
        &c,
        &[
            ("io.wirehook.network", "bridge"),
            ("io.wirehook.ports", "8484:80"),
        ],
    );
    let ip = ipv4_of(&c);
    host.wirehook(&["check"], None)
        .expect_success("check of a correct container");

    // Deleted by hand.
    host.exec(&[
        "nft",
        "delete",
        "element",
        "inet",
        "wirehook",
        "pub4_any",
        "{ tcp . 8484 }",
    ])
    .expect_success("delete the port's element");
    let out = host.wirehook(&["check"], None);
    let text = format!("{}{}", out.stdout_str(), out.stderr_str());
    assert!(!out.status.success(), "check must fail: {text}");
    assert!(
        text.contains("8484/tcp") && text.contains("missing"),
        "{text}"
    );

    // Pointing at another address.
    host.exec(&[
        "nft",
        "add",
        "element",
        "inet",
        "wirehook",
        "pub4_any",
        "{ tcp . 8484 : 10.88.0.99 . 80 }",
    ])
    .expect_success("add an element pointing elsewhere");
    let out = host.wirehook(&["check"], None);
    let text = format!("{}{}", out.stdout_str(), out.stderr_str());
    assert!(!out.status.success(), "check must fail: {text}");
    assert!(
        text.contains("10.88.0.99:80") && text.contains(&ip.to_string()),
        "{text}"
    );
    // Teardown leaves another owner's element alone; remove it by hand.
    unwire(&host, c.id());
    host.exec(&[
        "nft",
        "delete",
        "element",
        "inet",
        "wirehook",
        "pub4_any",
        "{ tcp . 8484 }",
    ])
    .expect_success("delete the stray element");
    assert_clean(&host);
}

#[test]
fn the_run_directory_does_not_grow_with_every_container() {
    let host = TestHost::new("files");
    let ann = [
        ("io.wirehook.network", "bridge"),
        ("io.wirehook.ports", "8585:80"),
    ];
    // One process serves every run: each cycle wires it under a new id
    // (the teardown removes the veth, both ends, while it lives on).
    let c = host.container("c");
    let settled = || {
        eventually(30, || {
            !run_dir(&host)
                .join("finishing")
                .read_dir()
                .is_ok_and(|mut d| d.next().is_some())
        })
    };
    // (The finisher deletes the veth; the next run in the same namespace
    // waits for it.)
    // Every other setup runs in a private mount namespace, as a runtime
    // that runs hooks in one does (crun here): the namespace bind mount
    // vanishes with it and leaves only its mount point behind.
    let cycle = |n: usize| {
        let id = format!("{}-{n}", c.id());
        let state = c.state_json(&id, "creating", &ann, &c.bundle(NetNsEntry::Fresh));
        let out = if n % 2 == 1 {
            let bin = TestHost::wirehook_bin();
            let args = [
                "-m",
                "--propagation",
                "private",
                bin.to_str().unwrap(),
                "hook",
                "createRuntime",
            ];
            host.run_bin_as_hook(std::path::Path::new("unshare"), &args, Some(&state), &[])
        } else {
            host.wirehook_hook("createRuntime", &state)
        };
        out.expect_success(&format!("setup of {id}"));
        unwire(&host, &id);
        assert!(settled(), "the teardown of {id} finishes");
    };
    cycle(0);
    let before = files_under(&run_dir(&host));
    for n in 1..=200 {
        cycle(n);
    }
    let after = files_under(&run_dir(&host));
    let grown: Vec<_> = after.iter().filter(|p| !before.contains(p)).collect();
    assert_eq!(
        before.len(),
        after.len(),
        "files under the run directory after 200 start/stop cycles; new: {grown:?}"
    );
    assert_clean(&host);
}
