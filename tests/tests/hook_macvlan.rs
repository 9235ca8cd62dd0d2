//! macvlan networks through the hook, against the real kernel (the host
//! kernel has macvlan). The parent is `uplink1` — the host end of a veth
//! whose other end sits in a "LAN" namespace playing another machine on
//! the segment (203.0.113.2; the host itself has 203.0.113.1 there).
//! Containers get their addresses from 203.0.113.128/25 so they never
//! collide with either.
//!
//! What is checked: the kernel's view after setup; real traffic for each
//! mode whose semantics can be shown on one machine (bridge: containers
//! reach each other and the LAN; private: only the LAN; vepa: only the LAN,
//! unless the LAN's switch hairpins; passthru: one container, the second is
//! refused); static addresses and MACs; the known limit that a container
//! cannot reach its host through the parent; failure injection at every
//! step and bad input leaving nothing behind; teardown (also of a
//! namespace that lives on, and of one that dies) and gc.

mod support;

use std::net::{IpAddr, SocketAddr};

use serde_json::Value;
use support::*;
use wirehook_tests::*;

const SUBNET: &str = "203.0.113.0/24";
const RANGE: &str = "203.0.113.128/25";
const PEER: &str = "203.0.113.2";
const HOST_ON_LAN: &str = "203.0.113.1";

/// The LAN (uplink 1) and a macvlan network `name` on it.
fn lan_network<'h>(host: &'h TestHost, name: &str, mode: Option<&str>) -> Uplink<'h> {
    let up = host.uplink_n(1);
    create_network(host, name, up.host_ifname(), mode);
    up
}

fn create_network(host: &TestHost, name: &str, parent: &str, mode: Option<&str>) {
    let mut args = vec![
        "network",
        "create",
        "--driver",
        "macvlan",
        "--parent",
        parent,
        "--subnet",
        SUBNET,
        "--gateway",
        PEER,
        "--ip-range",
        RANGE,
    ];
    if let Some(m) = mode {
        args.extend(["--mode", m]);
    }
    args.push(name);
    host.wirehook(&args, None)
        .expect_success(&format!("network create {name}"));
}

/// Names of the links of kind `kind` in an `ip -j -d link` listing.
fn links_of_kind(links: &Value, kind: &str) -> Vec<String> {
    links
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["linkinfo"]["info_kind"] == kind)
        .filter_map(|l| l["ifname"].as_str().map(str::to_string))
        .collect()
}

/// Does `parent` carry no macvlan any more (in any namespace)? The kernel
/// lets a passthru macvlan onto a parent only when it has no other
/// macvlans, so try one (and remove it again).
fn parent_has_no_macvlans(host: &TestHost, parent: &str) -> bool {
    let probe = host.exec(&[
        "ip", "link", "add", "link", parent, "name", "whprobe", "type", "macvlan", "mode",
        "passthru",
    ]);
    if probe.status.success() {
        host.exec(&["ip", "link", "del", "whprobe"])
            .expect_success("delete the passthru probe");
        true
    } else {
        false
    }
}

/// Nothing of wirehook's per-container state, no macvlan in the host
/// namespace, none left on `parent` (the kernel removes a dead
/// namespace's macvlans asynchronously, hence the wait).
fn assert_clean_macvlan(host: &TestHost, parent: &str) {
    assert_clean(host);
    assert_eq!(
        links_of_kind(&host.links_json(), "macvlan"),
        Vec::<String>::new(),
        "no macvlan in the host namespace"
    );
    assert!(
        eventually(5, || parent_has_no_macvlans(host, parent)),
        "macvlans left on {parent}"
    );
}

fn eth0(c: &Container<'_>) -> Value {
    find_link(&c.links_json(), "eth0").expect("eth0 in the container")
}

fn mac_of(link: &Value) -> String {
    link["address"].as_str().unwrap().to_string()
}

fn default_route(c: &Container<'_>) -> Option<Value> {
    c.routes_json()
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["dst"] == "default")
        .cloned()
}

/// A one-line error that starts with "wirehook: " and contains `want`.
fn one_line(out: &std::process::Output, want: &str) -> String {
    let err = out.stderr_str();
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("wirehook: "), "{err}");
    assert!(err.contains(want), "expected {want:?} in {err}");
    err
}

#[test]
fn bridge_mode_containers_reach_each_other_and_the_lan() {
    let host = TestHost::new("mvbr");
    let up = lan_network(&host, "lan", None);
    let a = host.container("a");
    let b = host.container("b");
    wire(&host, &a, &[("io.wirehook.network", "lan")]);
    wire(&host, &b, &[("io.wirehook.network", "lan")]);

    // The container side: eth0 is a bridge-mode macvlan of uplink1 with a
    // MAC of its own, an address from the range, a default route via the
    // gateway, and no IPv6 at all (IPv4-only network).
    let la = eth0(&a);
    assert_eq!(la["linkinfo"]["info_kind"], "macvlan");
    assert_eq!(la["linkinfo"]["info_data"]["mode"], "bridge");
    let parent_mac = mac_of(&host.link("uplink1").unwrap());
    let (ma, mb) = (mac_of(&la), mac_of(&eth0(&b)));
    assert_ne!(ma, mb);
    assert_ne!(ma, parent_mac);
    assert!(
        ma.starts_with("02:"),
        "generated, locally administered: {ma}"
    );
    let (ipa, pa) = addr_of(&a.addrs_json(), "eth0", false).unwrap();
    let (ipb, _) = addr_of(&b.addrs_json(), "eth0", false).unwrap();
    assert_eq!(pa, 24);
    for ip in [ipa, ipb] {
        let IpAddr::V4(v4) = ip else { panic!("{ip}") };
        assert_eq!(&v4.octets()[..3], &[203, 0, 113]);
        assert!(v4.octets()[3] >= 128, "{ip} from --ip-range {RANGE}");
    }
    let d = default_route(&a).expect("default route");
    assert_eq!(d["gateway"], PEER);
    assert_eq!(d["dev"], "eth0");
    let a6 = a
        .exec(&["ip", "-6", "-o", "addr", "show", "dev", "eth0"])
        .stdout_str();
    assert!(a6.trim().is_empty(), "no IPv6 on eth0: {a6}");
    // Nothing in the host namespace: no veth, no macvlan, no firewall.
    assert!(links_with_prefix(&host, "whv").is_empty());
    assert!(links_of_kind(&host.links_json(), "macvlan").is_empty());
    assert!(
        nft_elements(&host, "pub4_any").is_empty(),
        "no published ports"
    );

    // Traffic: each other, the LAN machine, which sees the container's own
    // address (no NAT: a machine of its own on the segment).
    assert!(pings(&a, &ipb.to_string()), "a reaches b");
    assert!(pings(&b, &ipa.to_string()), "b reaches a");
    assert!(pings(&a, PEER), "a reaches the LAN");
    let echo = up.echo_server(7100);
    let reply = tcp(
        &a.netns_path(),
        SocketAddr::new(PEER.parse().unwrap(), 7100),
        "hi",
    )
    .expect("TCP to the LAN machine");
    assert!(reply.ends_with("hi"), "{reply}");
    assert_eq!(
        echo.clients()[0].ip(),
        ipa,
        "the LAN sees the container's own address"
    );
    let from_lan = up
        .exec(&["ping", "-c1", "-W1", &ipb.to_string()])
        .status
        .success();
    assert!(from_lan, "the LAN machine reaches b");
    // The known limit: not the host through the parent.
    assert!(
        !pings(&a, HOST_ON_LAN),
        "a macvlan container cannot reach its host's address on the parent"
    );
    // The README's way around it: a macvlan "shim" of the host on the same
    // parent, with an address outside the containers' range.
    host.sh(&format!(
        "ip link add lan-shim link uplink1 type macvlan mode bridge && \
         ip addr add 203.0.113.100/32 dev lan-shim && ip link set lan-shim up && \
         ip route add {RANGE} dev lan-shim"
    ))
    .expect_success("the host's macvlan shim");
    assert!(
        pings(&a, "203.0.113.100"),
        "a reaches the host through the shim"
    );
    assert!(
        host.exec(&["ping", "-c1", "-W1", &ipb.to_string()])
            .status
            .success(),
        "the host reaches b through the shim"
    );
    host.exec(&["ip", "link", "del", "lan-shim"])
        .expect_success("remove the shim");

    // Records, ps, check, inspect.
    let ps = host
        .wirehook(&["ps"], None)
        .expect_success("ps")
        .stdout_str();
    assert!(
        ps.contains("macvlan") && ps.contains(&ipa.to_string()),
        "{ps}"
    );
    host.wirehook(&["check"], None)
        .expect_success("check agrees with the kernel");
    b.exec(&["ip", "link", "set", "eth0", "down"])
        .expect_success("eth0 of b down");
    let out = host
        .wirehook(&["check"], None)
        .expect_failure("check sees the difference");
    assert!(
        out.stdout_str().contains("eth0 is down"),
        "{}",
        out.stdout_str()
    );
    b.exec(&["ip", "link", "set", "eth0", "up"])
        .expect_success("eth0 of b up again");
    let inspect: Value = serde_json::from_slice(
        &host
            .wirehook(&["network", "inspect", "lan"], None)
            .expect_success("inspect")
            .stdout,
    )
    .unwrap();
    assert_eq!(inspect[0]["driver"], "macvlan");
    assert_eq!(inspect[0]["parent"], "uplink1");
    assert_eq!(inspect[0]["mode"], "bridge");
    assert_eq!(inspect[0]["realized"], true);
    assert_eq!(inspect[0]["containers"].as_array().unwrap().len(), 2);
    let ls = host
        .wirehook(&["network", "ls"], None)
        .expect_success("ls")
        .stdout_str();
    assert!(
        ls.lines()
            .any(|l| l.starts_with("lan") && l.contains("uplink1")),
        "{ls}"
    );

    // Teardown of live containers (their namespaces live on) removes eth0.
    host.wirehook(&["network", "rm", "lan"], None)
        .expect_failure("rm while in use");
    unwire(&host, a.id());
    unwire(&host, b.id());
    // (The finisher deletes them right after poststop returned.)
    assert!(
        eventually(5, || find_link(&a.links_json(), "eth0").is_none()),
        "eth0 gone from a"
    );
    assert!(
        eventually(5, || find_link(&b.links_json(), "eth0").is_none()),
        "eth0 gone from b"
    );
    assert_clean_macvlan(&host, "uplink1");
    host.wirehook(&["network", "rm", "lan"], None)
        .expect_success("rm");
    assert!(
        host.link("uplink1").is_some(),
        "a parent wirehook did not make stays"
    );
}

#[test]
fn private_mode_isolates_containers_from_each_other() {
    let host = TestHost::new("mvpriv");
    let _up = lan_network(&host, "lan", Some("private"));
    let a = host.container("a");
    let b = host.container("b");
    wire(&host, &a, &[("io.wirehook.network", "lan")]);
    wire(&host, &b, &[("io.wirehook.network", "lan")]);
    assert_eq!(eth0(&a)["linkinfo"]["info_data"]["mode"], "private");
    let ipb = ipv4_of(&b);
    assert!(pings(&a, PEER), "a reaches the LAN");
    assert!(pings(&b, PEER), "b reaches the LAN");
    assert!(!pings(&a, &ipb.to_string()), "private: a does not reach b");
    unwire(&host, a.id());
    unwire(&host, b.id());
    assert_clean_macvlan(&host, "uplink1");
}

#[test]
fn vepa_mode_reaches_neighbours_only_through_a_hairpin_switch() {
    let host = TestHost::new("mvvepa");
    let up = lan_network(&host, "lan", Some("vepa"));
    let a = host.container("a");
    let b = host.container("b");
    wire(&host, &a, &[("io.wirehook.network", "lan")]);
    wire(&host, &b, &[("io.wirehook.network", "lan")]);
    assert_eq!(eth0(&a)["linkinfo"]["info_data"]["mode"], "vepa");
    let ipb = ipv4_of(&b).to_string();
    assert!(pings(&a, PEER), "a reaches the LAN");
    assert!(
        !pings(&a, &ipb),
        "vepa: frames for b go out to the switch, which (a plain machine) does not send them back"
    );
    // Make the LAN side a switch that hairpins (reflective relay): now
    // frames from a come back in and reach b.
    up.sh(&format!(
        "ip link add sw0 type bridge && ip addr del {PEER}/24 dev eth0 && \
         ip link set eth0 master sw0 && bridge link set dev eth0 hairpin on && \
         ip addr add {PEER}/24 dev sw0 && ip link set sw0 up"
    ))
    .expect_success("turn the LAN peer into a hairpin switch");
    assert!(
        eventually(5, || pings(&a, &ipb)),
        "vepa through a hairpin switch: a reaches b"
    );
    assert!(pings(&a, PEER), "and still the LAN");
    unwire(&host, a.id());
    unwire(&host, b.id());
    assert_clean_macvlan(&host, "uplink1");
}

#[test]
fn passthru_gives_the_parent_to_one_container() {
    let host = TestHost::new("mvpass");
    let _up = lan_network(&host, "solo", Some("passthru"));
    let parent_mac = mac_of(&host.link("uplink1").unwrap());
    let a = host.container("a");
    let b = host.container("b");
    wire(&host, &a, &[("io.wirehook.network", "solo")]);
    let la = eth0(&a);
    assert_eq!(la["linkinfo"]["info_data"]["mode"], "passthru");
    assert_eq!(mac_of(&la), parent_mac, "passthru takes the parent's MAC");
    assert!(pings(&a, PEER), "a reaches the LAN");

    let out = setup(&host, &b, &[("io.wirehook.network", "solo")])
        .expect_failure("a second container on a passthru network");
    one_line(&out, "passthru");
    let err = out.stderr_str();
    assert!(
        err.contains(a.id()),
        "names the container that has it: {err}"
    );
    assert!(find_link(&b.links_json(), "eth0").is_none());
    // A MAC of its own cannot be given on passthru.
    let out = setup(
        &host,
        &b,
        &[
            ("io.wirehook.network", "solo"),
            ("io.wirehook.mac", "02:00:00:00:00:42"),
        ],
    )
    .expect_failure("mac on passthru");
    one_line(&out, "io.wirehook.mac");

    // Once a is gone, b gets it (also while a's namespace is still dying).
    unwire(&host, a.id());
    wire(&host, &b, &[("io.wirehook.network", "solo")]);
    assert!(pings(&b, PEER), "b reaches the LAN");
    unwire(&host, b.id());
    assert_clean_macvlan(&host, "uplink1");
}

#[test]
fn static_address_and_mac() {
    let host = TestHost::new("mvstat");
    let up = lan_network(&host, "lan", None);
    let a = host.container("a");
    let b = host.container("b");
    let ann = [
        ("io.wirehook.network", "lan"),
        ("io.wirehook.ip", "203.0.113.77"),
        ("io.wirehook.mac", "02:42:cb:00:71:4d"),
    ];
    wire(&host, &a, &ann);
    assert_eq!(
        ipv4_of(&a).to_string(),
        "203.0.113.77",
        "outside --ip-range is fine if in the subnet"
    );
    assert_eq!(mac_of(&eth0(&a)), "02:42:cb:00:71:4d");
    assert!(pings(&a, PEER));
    let neigh = up_neigh_mac(&up, &a);
    assert_eq!(
        neigh.as_deref(),
        Some("02:42:cb:00:71:4d"),
        "the LAN learned the static MAC"
    );

    // Another container may take neither.
    let out = setup(
        &host,
        &b,
        &[
            ("io.wirehook.network", "lan"),
            ("io.wirehook.ip", "203.0.113.77"),
        ],
    )
    .expect_failure("address held by a");
    one_line(&out, "203.0.113.77");
    assert!(out.stderr_str().contains(a.id()), "{}", out.stderr_str());
    let out = setup(
        &host,
        &b,
        &[
            ("io.wirehook.network", "lan"),
            ("io.wirehook.mac", "02:42:cb:00:71:4d"),
        ],
    )
    .expect_failure("MAC held by a");
    one_line(&out, "02:42:cb:00:71:4d");
    assert!(out.stderr_str().contains(a.id()), "{}", out.stderr_str());
    assert!(find_link(&b.links_json(), "eth0").is_none(), "b untouched");
    host.wirehook(&["check"], None).expect_success("check");
    unwire(&host, a.id());
    assert_clean_macvlan(&host, "uplink1");

    // Restarted at once with the same id, address and MAC: waits for its own
    // previous teardown instead of failing.
    wire(&host, &a, &ann);
    unwire(&host, a.id());
    assert_clean_macvlan(&host, "uplink1");
}

/// The MAC the LAN machine has for `c`'s address after a ping.
fn up_neigh_mac(up: &Uplink<'_>, c: &Container<'_>) -> Option<String> {
    let ip = ipv4_of(c).to_string();
    let out = up.exec(&["ip", "-j", "neigh", "show", &ip]);
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    v.as_array()?.first()?["lladdr"]
        .as_str()
        .map(str::to_string)
}

#[test]
fn macvlan_and_bridge_in_one_container() {
    let host = TestHost::new("mvmulti");
    let _up = lan_network(&host, "lan", None);
    let c = host.container("c");
    wire(&host, &c, &[("io.wirehook.network", "lan,bridge")]);
    let links = c.links_json();
    assert_eq!(
        find_link(&links, "eth0").unwrap()["linkinfo"]["info_kind"],
        "macvlan"
    );
    assert_eq!(
        find_link(&links, "eth1").unwrap()["linkinfo"]["info_kind"],
        "veth"
    );
    assert_eq!(
        default_route(&c).unwrap()["gateway"],
        PEER,
        "the first network routes"
    );
    assert!(pings(&c, PEER));
    let (gw, _) = addr_of(&host.addrs_json(), "wirehook0", false).unwrap();
    assert!(
        pings(&c, &gw.to_string()),
        "the bridge network's gateway (the host) through eth1"
    );
    // Published ports go with the first network: not on macvlan.
    let c2 = host.container("c2");
    let out = setup(
        &host,
        &c2,
        &[
            ("io.wirehook.network", "lan,bridge"),
            ("io.wirehook.ports", "8080:80"),
        ],
    )
    .expect_failure("ports on a macvlan first network");
    one_line(&out, "list a bridge network first");
    wire(
        &host,
        &c2,
        &[
            ("io.wirehook.network", "bridge,lan"),
            ("io.wirehook.ports", "8080:80"),
        ],
    );
    assert_eq!(
        find_link(&c2.links_json(), "eth1").unwrap()["linkinfo"]["info_kind"],
        "macvlan"
    );
    unwire(&host, c.id());
    unwire(&host, c2.id());
    assert_clean_macvlan(&host, "uplink1");
}

/// Every step `WIREHOOK_FAIL_AT` can name on a macvlan network, in order.
const STEPS: &[&str] = &[
    "name",
    "lock",
    "realize",
    "allocate",
    "link",
    "address",
    "route",
    "bindmount",
    "record",
    "done",
];

#[test]
fn failure_at_every_step_leaves_nothing_behind() {
    let host = TestHost::new("mvfail");
    let _up = lan_network(&host, "lan", None);
    let ann = [
        ("io.wirehook.network", "lan"),
        ("io.wirehook.mac", "02:42:cb:00:00:99"),
    ];
    for step in STEPS {
        let c = host.container(&format!("f{step}"));
        let out = setup_env(&host, &c, &ann, &[("WIREHOOK_FAIL_AT", step)])
            .expect_failure(&format!("setup failing at {step}"));
        one_line(&out, &format!("injected failure at step {step}"));
        assert_clean_macvlan(&host, "uplink1");
        assert!(
            find_link(&c.links_json(), "eth0").is_none(),
            "no eth0 left in the container after {step}"
        );
        // And the same container then wires fine (same MAC: nothing holds it).
        wire(&host, &c, &ann);
        assert!(pings(&c, PEER), "after {step}");
        unwire(&host, c.id());
        assert_clean_macvlan(&host, "uplink1");
    }
}

#[test]
fn bad_input_gets_one_clear_line_and_changes_nothing() {
    let host = TestHost::new("mvbad");
    let up = host.uplink_n(1);
    let parent = up.host_ifname().to_string();
    let create = |args: &[&str]| {
        let mut v = vec!["network", "create"];
        v.extend_from_slice(args);
        host.wirehook(&v, None)
    };
    // `network create`: what can be checked then is.
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "--driver", "macvlan", "--parent", "eth9", "--subnet", SUBNET, "n",
            ],
            "parent eth9 of network n does not exist",
        ),
        (
            &[
                "--driver", "macvlan", "--parent", "eth9.100", "--subnet", SUBNET, "n",
            ],
            "neither it nor eth9",
        ),
        (
            &[
                "--driver", "macvlan", "--parent", &parent, "--mode", "l2", "--subnet", SUBNET, "n",
            ],
            "not a macvlan mode: use bridge, private, vepa or passthru",
        ),
        (
            &["--driver", "macvlan", "--parent", &parent, "n"],
            "needs --subnet",
        ),
        (
            &["--driver", "macvlan", "--subnet", SUBNET, "n"],
            "needs --parent",
        ),
        (
            &[
                "--driver", "macvlan", "--parent", "lo", "--subnet", SUBNET, "n",
            ],
            "not an Ethernet interface",
        ),
        (
            &[
                "--driver",
                "macvlan",
                "--parent",
                &parent,
                "--subnet",
                "203.0.113.5/24",
                "n",
            ],
            "did you mean 203.0.113.0/24",
        ),
        (
            &[
                "--driver",
                "macvlan",
                "--parent",
                &parent,
                "--subnet",
                SUBNET,
                "--gateway",
                "198.51.100.1",
                "n",
            ],
            "not a usable address",
        ),
        (
            &["--driver", "bridge", "--mode", "private", "n"],
            "for macvlan and ipvlan networks",
        ),
        (
            &[
                "--driver",
                "macvlan",
                "--parent",
                "uplink1.5000",
                "--subnet",
                SUBNET,
                "n",
            ],
            "1 to 4094",
        ),
        (&["--driver", "overlay", "--ipv6", "n"], "IPv4 only"),
    ];
    for (args, want) in cases {
        let out = create(args).expect_failure(&format!("{args:?}"));
        one_line(&out, want);
        let ls = host.wirehook(&["network", "ls", "-q"], None).stdout_str();
        assert!(
            !ls.lines().any(|l| l == "n"),
            "{args:?} stored nothing: {ls}"
        );
    }
    assert!(host.link("eth9.100").is_none());
    // A bridge port cannot be a parent: the kernel refuses, we say what to do.
    host.sh(
        "ip link add lanbr type bridge && ip link add vp0 type veth peer name vp1 && \
             ip link set vp0 master lanbr && ip link set vp0 up && ip link set lanbr up",
    )
    .expect_success("a bridge with a port");
    let out = create(&[
        "--driver",
        "macvlan",
        "--parent",
        "vp0",
        "--subnet",
        "192.0.2.0/24",
        "n",
    ])
    .expect_failure("bridge port as parent");
    let err = one_line(&out, "is a port of bridge lanbr");
    assert!(
        err.contains("--parent lanbr"),
        "says what to use instead: {err}"
    );
    // The bridge itself is a fine parent.
    create(&[
        "--driver",
        "macvlan",
        "--parent",
        "lanbr",
        "--subnet",
        "192.0.2.0/24",
        "onbr",
    ])
    .expect_success("a bridge as parent");
    // One parent carries macvlan or ipvlan, not both; passthru wants it alone.
    create_network(&host, "lan", &parent, None);
    let out = create(&[
        "--driver",
        "ipvlan",
        "--parent",
        &parent,
        "--subnet",
        "10.70.0.0/24",
        "n",
    ])
    .expect_failure("ipvlan next to macvlan");
    one_line(&out, "not both");
    let out = create(&[
        "--driver",
        "macvlan",
        "--mode",
        "passthru",
        "--parent",
        &parent,
        "--subnet",
        "10.70.0.0/24",
        "n",
    ])
    .expect_failure("passthru next to another network");
    one_line(&out, "passthru");
    // A down parent: create warns, the hook refuses.
    host.exec(&["ip", "link", "set", &parent, "down"])
        .expect_success("parent down");
    let out = create(&[
        "--driver",
        "macvlan",
        "--parent",
        &parent,
        "--subnet",
        "10.71.0.0/24",
        "later",
    ])
    .expect_success("create warns about a down parent");
    assert!(out.stderr_str().contains("is down"), "{}", out.stderr_str());

    // The hook: each refusal one line, nothing made.
    let c = host.container("c");
    let hook_cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("io.wirehook.network", "lan")],
            "parent uplink1 of network lan is down",
        ),
        (
            &[
                ("io.wirehook.network", "lan"),
                ("io.wirehook.ports", "8080:80"),
            ],
            "nothing to publish",
        ),
        (
            &[
                ("io.wirehook.network", "lan"),
                ("io.wirehook.ip", "198.51.100.9"),
            ],
            "io.wirehook.ip 198.51.100.9 is in none of the subnets",
        ),
        (
            &[
                ("io.wirehook.network", "lan"),
                ("io.wirehook.mode", "private"),
            ],
            "policy",
        ),
    ];
    for (ann, want) in hook_cases {
        let out = setup(&host, &c, ann).expect_failure(&format!("{ann:?}"));
        one_line(&out, want);
        assert_clean_macvlan(&host, &parent);
        assert_eq!(
            c.links_json().as_array().unwrap().len(),
            1,
            "container untouched"
        );
    }
    host.exec(&["ip", "link", "set", &parent, "up"])
        .expect_success("parent up");
    let cases_up: &[(&[(&str, &str)], &str)] = &[
        (
            &[("io.wirehook.network", "lan"), ("io.wirehook.ip", PEER)],
            "203.0.113.2 is reserved",
        ),
        (
            &[("io.wirehook.network", "lan"), ("io.wirehook.mtu", "9000")],
            "above the MTU of its parent uplink1 (1500)",
        ),
    ];
    for (ann, want) in cases_up {
        let out = setup(&host, &c, ann).expect_failure(&format!("{ann:?}"));
        one_line(&out, want);
        assert_clean_macvlan(&host, &parent);
        assert_eq!(
            c.links_json().as_array().unwrap().len(),
            1,
            "container untouched"
        );
    }
    // The name is taken inside the container.
    c.exec(&[
        "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "x1",
    ])
    .expect_success("an eth0 of the container's own");
    let out = setup(&host, &c, &[("io.wirehook.network", "lan")]).expect_failure("eth0 taken");
    one_line(&out, "already has an interface named eth0");
    assert_clean_macvlan(&host, &parent);
    c.exec(&["ip", "link", "del", "eth0"])
        .expect_success("remove it again");
    // The parent's MAC cannot be a container's.
    let parent_mac = mac_of(&host.link(&parent).unwrap());
    let out = setup(
        &host,
        &c,
        &[
            ("io.wirehook.network", "lan"),
            ("io.wirehook.mac", &parent_mac),
        ],
    )
    .expect_failure("the parent's MAC");
    one_line(&out, &parent_mac);
    assert_clean_macvlan(&host, &parent);
    // A parent enslaved after the network was made, or gone altogether.
    host.wirehook(&["network", "rm", "later"], None)
        .expect_success("rm later");
    host.exec(&["ip", "link", "set", &parent, "master", "lanbr"])
        .expect_success("enslave");
    let out = setup(&host, &c, &[("io.wirehook.network", "lan")]).expect_failure("enslaved parent");
    one_line(&out, "is a port of bridge lanbr");
    host.exec(&["ip", "link", "del", &parent])
        .expect_success("delete the parent");
    let out = setup(&host, &c, &[("io.wirehook.network", "lan")]).expect_failure("missing parent");
    one_line(&out, "parent uplink1 of network lan does not exist");
    assert_clean(&host);
    assert_eq!(
        c.links_json().as_array().unwrap().len(),
        1,
        "container untouched"
    );
}

#[test]
fn teardown_of_a_dead_namespace_and_gc() {
    let host = TestHost::new("mvgc");
    let _up = lan_network(&host, "lan", None);
    // Poststop after the container died: the kernel removes eth0 with the
    // namespace once wirehook lets go of it.
    let mac = [
        ("io.wirehook.network", "lan"),
        ("io.wirehook.mac", "02:42:cb:00:00:0a"),
    ];
    let mut a = host.container("a");
    wire(&host, &a, &mac);
    a.kill();
    unwire(&host, a.id());
    // Its MAC at once for another container: the old macvlan may still be
    // on its way out with its namespace; setup waits for it.
    let a2 = host.container("a2");
    wire(&host, &a2, &mac);
    assert!(pings(&a2, PEER));
    unwire(&host, a2.id());
    assert_clean_macvlan(&host, "uplink1");
    // A runtime that crashed before poststop: gc finishes the job.
    let mut b = host.container("b");
    wire(&host, &b, &[("io.wirehook.network", "lan")]);
    b.kill();
    let out = host
        .wirehook(&["gc"], None)
        .expect_success("gc")
        .stdout_str();
    assert!(out.contains(b.id()), "{out}");
    assert_clean_macvlan(&host, "uplink1");
    // Setup twice (prestart and createRuntime): one interface.
    let c = host.container("c");
    wire(&host, &c, &[("io.wirehook.network", "lan")]);
    wire(&host, &c, &[("io.wirehook.network", "lan")]);
    assert_eq!(links_of_kind(&c.links_json(), "macvlan"), ["eth0"]);
    unwire(&host, c.id());
    unwire(&host, c.id());
    assert_clean_macvlan(&host, "uplink1");
}

#[test]
fn many_containers_at_once_get_distinct_addresses() {
    let host = TestHost::new("mvpar");
    let _up = lan_network(&host, "lan", None);
    let containers: Vec<_> = (0..20).map(|i| host.container(&format!("p{i}"))).collect();
    let ann = [("io.wirehook.network", "lan")];
    let states: Vec<String> = containers
        .iter()
        .map(|c| c.state_json(c.id(), "creating", &ann, &c.bundle(NetNsEntry::Fresh)))
        .collect();
    let outs: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = states
            .iter()
            .map(|st| s.spawn(|| host.wirehook_hook("createRuntime", st)))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (o, c) in outs.into_iter().zip(&containers) {
        o.expect_success(&format!("parallel setup of {}", c.id()));
    }
    let addrs: std::collections::HashSet<_> = containers.iter().map(ipv4_of).collect();
    assert_eq!(addrs.len(), 20, "distinct addresses");
    assert!(pings(&containers[0], &ipv4_of(&containers[19]).to_string()));
    std::thread::scope(|s| {
        for c in &containers {
            let host = &host;
            s.spawn(move || unwire(host, c.id()));
        }
    });
    assert_clean_macvlan(&host, "uplink1");
}

#[test]
fn inline_macvlan_network_when_policy_allows() {
    let host = TestHost::new("mvinl");
    let _up = host.uplink_n(1);
    let etc = host.root().join("etc/wirehook");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(
        etc.join("policy.json"),
        r#"{"allow_inline_networks": true}"#,
    )
    .unwrap();
    let a = host.container("a");
    let b = host.container("b");
    let ann = [
        ("io.wirehook.network", "dev"),
        ("io.wirehook.driver", "macvlan"),
        ("io.wirehook.parent", "uplink1"),
        ("io.wirehook.mode", "private"),
        ("io.wirehook.subnet", SUBNET),
        ("io.wirehook.gateway", PEER),
        ("io.wirehook.ip-range", RANGE),
    ];
    wire(&host, &a, &ann);
    assert_eq!(eth0(&a)["linkinfo"]["info_data"]["mode"], "private");
    let out = setup(
        &host,
        &b,
        &[
            ("io.wirehook.network", "dev"),
            ("io.wirehook.mode", "bridge"),
        ],
    )
    .expect_failure("contradicting mode");
    let err = one_line(&out, "io.wirehook.mode=bridge");
    assert!(err.contains("private"), "names both: {err}");
    wire(&host, &b, &[("io.wirehook.network", "dev")]);
    assert!(pings(&b, PEER));
    unwire(&host, a.id());
    unwire(&host, b.id());
    assert_clean_macvlan(&host, "uplink1");
}
