//! ipvlan networks and 802.1Q (`eth0.100`) parents through the hook.
//!
//! The machine the suite usually runs on has neither ipvlan nor 802.1Q in
//! its kernel, so the tests that need them are `#[ignore]`d here and run
//! inside the VM with Debian's stock kernel (`tests/vm`), where they must
//! pass:
//!
//! ```sh
//! cargo test -p wirehook-tests --test hook_ipvlan --no-run   # note the binary's path
//! sudo tests/vm/run-in-vm.sh target/debug/deps/hook_ipvlan-HASH --ignored --test-threads=1
//! ```
//!
//! They fail (they never skip) when the kernel lacks what they need. The
//! tests that are not ignored check what a kernel *without* them gets: one
//! clear line and nothing left behind (on a kernel that has them, the same
//! tests check that the network is accepted instead).
//!
//! The LAN is as in `hook_macvlan`: parent `uplink1` (host 203.0.113.1),
//! the LAN machine 203.0.113.2 in its own namespace.

mod support;

use std::net::SocketAddr;

use serde_json::Value;
use support::*;
use wirehook_tests::*;

const SUBNET: &str = "203.0.113.0/24";
const RANGE: &str = "203.0.113.128/25";
const PEER: &str = "203.0.113.2";
const HOST_ON_LAN: &str = "203.0.113.1";
/// The routed subnet of the l3 tests (not on the LAN: the LAN machine
/// reaches it through a route via the host).
const L3_SUBNET: &str = "10.77.0.0/24";

/// Can this kernel make `kind` links (`ipvlan`, `vlan`)? Tried on a veth
/// pair inside the test host.
fn kernel_has(host: &TestHost, kind: &str) -> bool {
    host.exec(&[
        "ip", "link", "add", "kp0", "type", "veth", "peer", "name", "kp1",
    ])
    .expect_success("probe veth");
    let args: Vec<&str> = match kind {
        "vlan" => vec![
            "ip", "link", "add", "link", "kp0", "name", "kp0.7", "type", "vlan", "id", "7",
        ],
        _ => vec![
            "ip", "link", "add", "link", "kp0", "name", "kp2", "type", kind,
        ],
    };
    let ok = host.exec(&args).status.success();
    host.exec(&["ip", "link", "del", "kp0"])
        .expect_success("remove probe");
    ok
}

/// Fail (not skip) when the kernel lacks `kind`.
fn require(host: &TestHost, kind: &str) {
    assert!(
        kernel_has(host, kind),
        "this kernel cannot make {kind} links: run this test inside the VM (tests/vm/run-in-vm.sh), whose Debian kernel has them"
    );
}

fn create(host: &TestHost, args: &[&str]) -> std::process::Output {
    let mut v = vec!["network", "create"];
    v.extend_from_slice(args);
    host.wirehook(&v, None)
}

fn one_line(out: &std::process::Output, want: &str) -> String {
    let err = out.stderr_str();
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("wirehook: "), "{err}");
    assert!(err.contains(want), "expected {want:?} in {err}");
    err
}

fn eth0(c: &Container<'_>) -> Value {
    find_link(&c.links_json(), "eth0").expect("eth0 in the container")
}

fn links_of_kind(links: &Value, kind: &str) -> Vec<String> {
    links
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["linkinfo"]["info_kind"] == kind)
        .filter_map(|l| l["ifname"].as_str().map(str::to_string))
        .collect()
}

fn default_route(c: &Container<'_>) -> Option<Value> {
    c.routes_json()
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["dst"] == "default")
        .cloned()
}

/// Nothing of wirehook's per-container state and no ipvlan/macvlan in
/// the host namespace.
fn assert_clean_sub(host: &TestHost) {
    assert_clean(host);
    for kind in ["ipvlan", "macvlan"] {
        assert!(
            links_of_kind(&host.links_json(), kind).is_empty(),
            "no {kind} in the host namespace"
        );
    }
}

/// An ipvlan network definition written as if made on another kernel (this
/// one refuses `network create --driver ipvlan`).
fn write_ipvlan_def(host: &TestHost, name: &str, parent: &str) {
    let dir = host.root().join("etc/wirehook/networks");
    std::fs::create_dir_all(&dir).unwrap();
    let def = serde_json::json!({
        "name": name,
        "driver": "ipvlan",
        "subnets": [{"subnet": SUBNET, "gateway": PEER, "ip_range": RANGE}],
        "parent": parent,
        "mode": "l2",
        "created": 0
    });
    std::fs::write(dir.join(format!("{name}.json")), def.to_string()).unwrap();
}

// ---------------------------------------------------------------------------
// On any kernel

#[test]
fn without_ipvlan_support_one_clear_line_and_nothing_left() {
    let host = TestHost::new("ipvno");
    let _up = host.uplink_n(1);
    let args = [
        "--driver",
        "ipvlan",
        "--parent",
        "uplink1",
        "--subnet",
        SUBNET,
        "--gateway",
        PEER,
        "--ip-range",
        RANGE,
        "ipv",
    ];
    let c = host.container("c");
    if kernel_has(&host, "ipvlan") {
        // The VM's kernel: the network is accepted and works.
        create(&host, &args).expect_success("ipvlan network on a kernel with ipvlan");
        wire(&host, &c, &[("io.wirehook.network", "ipv")]);
        unwire(&host, c.id());
        assert_clean_sub(&host);
        return;
    }
    let want = "this kernel has no ipvlan support (CONFIG_IPVLAN) — use macvlan or bridge, or load the ipvlan module";
    // `network create` probes the kernel (in a namespace of its own) and refuses.
    let out = create(&host, &args).expect_failure("ipvlan network on a kernel without ipvlan");
    one_line(&out, want);
    let ls = host.wirehook(&["network", "ls", "-q"], None).stdout_str();
    assert!(!ls.lines().any(|l| l == "ipv"), "nothing stored: {ls}");
    // A definition made elsewhere (or before a kernel change): the hook
    // says the same, and undoes its lease.
    write_ipvlan_def(&host, "ipv", "uplink1");
    let out = setup(&host, &c, &[("io.wirehook.network", "ipv")]).expect_failure("hook");
    one_line(&out, want);
    assert_clean_sub(&host);
    assert_eq!(
        c.links_json().as_array().unwrap().len(),
        1,
        "container untouched"
    );
    // Checks that need no kernel support come first and say their own line.
    let out = setup(
        &host,
        &c,
        &[
            ("io.wirehook.network", "ipv"),
            ("io.wirehook.mac", "02:00:00:00:00:07"),
        ],
    )
    .expect_failure("mac on ipvlan");
    one_line(&out, "share the MAC of uplink1");
    let out = setup(
        &host,
        &c,
        &[
            ("io.wirehook.network", "ipv"),
            ("io.wirehook.ports", "8080:80"),
        ],
    )
    .expect_failure("ports on ipvlan");
    one_line(&out, "nothing to publish");
    assert_clean_sub(&host);
}

#[test]
fn without_8021q_support_one_clear_line_and_nothing_left() {
    let host = TestHost::new("vlanno");
    let _up = host.uplink_n(1);
    let args = [
        "--driver",
        "macvlan",
        "--parent",
        "uplink1.100",
        "--subnet",
        "10.100.0.0/24",
        "v100",
    ];
    if kernel_has(&host, "vlan") {
        create(&host, &args).expect_success("VLAN parent on a kernel with 802.1Q");
        assert!(host.link("uplink1.100").is_some());
        host.wirehook(&["network", "rm", "v100"], None)
            .expect_success("rm");
        assert!(host.link("uplink1.100").is_none());
        return;
    }
    let out = create(&host, &args).expect_failure("VLAN parent on a kernel without 802.1Q");
    one_line(
        &out,
        "this kernel has no 802.1Q VLAN support (CONFIG_VLAN_8021Q) — load the 8021q module",
    );
    let ls = host.wirehook(&["network", "ls", "-q"], None).stdout_str();
    assert!(!ls.lines().any(|l| l == "v100"), "nothing stored: {ls}");
    assert!(host.link("uplink1.100").is_none());
    assert!(
        !host
            .root()
            .join("run/wirehook/realized/parents/uplink1.100.json")
            .exists(),
        "no marker"
    );
}

// ---------------------------------------------------------------------------
// Inside the VM

#[test]
#[ignore = "needs ipvlan/8021q: run inside the VM (tests/vm)"]
fn ipvlan_l2_containers_share_the_parents_mac_and_reach_the_lan() {
    let host = TestHost::new("ipvl2");
    require(&host, "ipvlan");
    let up = host.uplink_n(1);
    create(
        &host,
        &[
            "--driver",
            "ipvlan",
            "--parent",
            "uplink1",
            "--subnet",
            SUBNET,
            "--gateway",
            PEER,
            "--ip-range",
            RANGE,
            "lan",
        ],
    )
    .expect_success("create ipvlan l2 network");
    let a = host.container("a");
    let b = host.container("b");
    wire(&host, &a, &[("io.wirehook.network", "lan")]);
    wire(&host, &b, &[("io.wirehook.network", "lan")]);
    let la = eth0(&a);
    assert_eq!(la["linkinfo"]["info_kind"], "ipvlan");
    assert_eq!(la["linkinfo"]["info_data"]["mode"], "l2");
    let parent_mac = host.link("uplink1").unwrap()["address"].clone();
    assert_eq!(la["address"], parent_mac, "ipvlan shares the parent's MAC");
    assert_eq!(eth0(&b)["address"], parent_mac);
    let ipa = ipv4_of(&a);
    let ipb = ipv4_of(&b);
    assert_ne!(ipa, ipb);
    let d = default_route(&a).expect("default route");
    assert_eq!(d["gateway"], PEER, "l2: via the gateway");
    assert!(pings(&a, &ipb.to_string()), "a reaches b");
    assert!(pings(&a, PEER), "a reaches the LAN");
    let echo = up.echo_server(7200);
    let reply = tcp(
        &a.netns_path(),
        SocketAddr::new(PEER.parse().unwrap(), 7200),
        "l2",
    )
    .expect("TCP to the LAN");
    assert!(reply.ends_with("l2"), "{reply}");
    assert_eq!(echo.clients()[0].ip(), ipa, "no NAT");
    assert!(
        !pings(&a, HOST_ON_LAN),
        "the known limit: not the host through the parent"
    );
    assert!(links_of_kind(&host.links_json(), "ipvlan").is_empty());
    let ps = host
        .wirehook(&["ps"], None)
        .expect_success("ps")
        .stdout_str();
    assert!(ps.contains("ipvlan"), "{ps}");
    host.wirehook(&["check"], None).expect_success("check");
    unwire(&host, a.id());
    unwire(&host, b.id());
    // (The finisher deletes it right after poststop returned.)
    assert!(eventually(5, || find_link(&a.links_json(), "eth0").is_none()));
    assert_clean_sub(&host);
    host.wirehook(&["network", "rm", "lan"], None)
        .expect_success("rm");
}

#[test]
#[ignore = "needs ipvlan/8021q: run inside the VM (tests/vm)"]
fn ipvlan_l3_routes_through_the_parent() {
    let host = TestHost::new("ipvl3");
    require(&host, "ipvlan");
    let up = host.uplink_n(1);
    create(
        &host,
        &[
            "--driver", "ipvlan", "--mode", "l3", "--parent", "uplink1", "--subnet", L3_SUBNET,
            "routed",
        ],
    )
    .expect_success("create ipvlan l3 network");
    // Other machines reach the routed subnet through the host.
    up.exec(&["ip", "route", "add", L3_SUBNET, "via", HOST_ON_LAN])
        .expect_success("route on the LAN machine");
    let a = host.container("a");
    let b = host.container("b");
    wire(&host, &a, &[("io.wirehook.network", "routed")]);
    wire(&host, &b, &[("io.wirehook.network", "routed")]);
    let la = eth0(&a);
    assert_eq!(la["linkinfo"]["info_data"]["mode"], "l3");
    let d = default_route(&a).expect("default route");
    assert_eq!(d["dev"], "eth0");
    assert!(
        d.get("gateway").is_none(),
        "l3: default dev eth0, no gateway: {d}"
    );
    let ipa = ipv4_of(&a);
    assert!(ipa.to_string().starts_with("10.77.0."), "{ipa}");
    assert!(pings(&a, &ipv4_of(&b).to_string()), "a reaches b");
    assert!(pings(&a, PEER), "a reaches the LAN machine");
    let echo = up.echo_server(7300);
    let reply = tcp(
        &a.netns_path(),
        SocketAddr::new(PEER.parse().unwrap(), 7300),
        "l3",
    )
    .expect("TCP to the LAN");
    assert!(reply.ends_with("l3"), "{reply}");
    assert_eq!(echo.clients()[0].ip(), ipa, "routed, not NATed");
    assert!(
        !pings(&a, HOST_ON_LAN),
        "the known limit: not the host through the parent"
    );
    assert!(
        up.exec(&["ping", "-c1", "-W2", &ipa.to_string()])
            .status
            .success(),
        "the LAN machine reaches a through the host"
    );
    host.wirehook(&["check"], None).expect_success("check");
    unwire(&host, a.id());
    unwire(&host, b.id());
    assert_clean_sub(&host);
}

#[test]
#[ignore = "needs ipvlan/8021q: run inside the VM (tests/vm)"]
fn ipvlan_l3s_reaches_the_lan() {
    let host = TestHost::new("ipvl3s");
    require(&host, "ipvlan");
    let up = host.uplink_n(1);
    create(
        &host,
        &[
            "--driver", "ipvlan", "--mode", "l3s", "--parent", "uplink1", "--subnet", L3_SUBNET,
            "l3s",
        ],
    )
    .expect_success("create ipvlan l3s network");
    up.exec(&["ip", "route", "add", L3_SUBNET, "via", HOST_ON_LAN])
        .expect_success("route on the LAN machine");
    let a = host.container("a");
    wire(&host, &a, &[("io.wirehook.network", "l3s")]);
    assert_eq!(eth0(&a)["linkinfo"]["info_data"]["mode"], "l3s");
    assert!(pings(&a, PEER), "a reaches the LAN machine");
    unwire(&host, a.id());
    assert_clean_sub(&host);
}

#[test]
#[ignore = "needs ipvlan/8021q: run inside the VM (tests/vm)"]
fn ipvlan_failure_at_every_step_and_static_address_restart() {
    let host = TestHost::new("ipvfail");
    require(&host, "ipvlan");
    let _up = host.uplink_n(1);
    create(
        &host,
        &[
            "--driver",
            "ipvlan",
            "--parent",
            "uplink1",
            "--subnet",
            SUBNET,
            "--gateway",
            PEER,
            "--ip-range",
            RANGE,
            "lan",
        ],
    )
    .expect_success("create");
    let ann = [
        ("io.wirehook.network", "lan"),
        ("io.wirehook.ip", "203.0.113.90"),
    ];
    for step in [
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
    ] {
        let c = host.container(&format!("f{step}"));
        let out = setup_env(&host, &c, &ann, &[("WIREHOOK_FAIL_AT", step)]).expect_failure(step);
        one_line(&out, &format!("injected failure at step {step}"));
        assert_clean_sub(&host);
        assert!(
            find_link(&c.links_json(), "eth0").is_none(),
            "no eth0 after {step}"
        );
    }
    // The static address of a container whose namespace dies at teardown:
    // the next one with it waits for the kernel to let go of the old one.
    let mut a = host.container("a");
    wire(&host, &a, &ann);
    assert!(pings(&a, PEER));
    let b = host.container("b");
    let out = setup(&host, &b, &ann).expect_failure("address held by a");
    one_line(&out, a.id());
    a.kill();
    unwire(&host, a.id());
    wire(&host, &b, &ann);
    assert!(pings(&b, PEER), "b has the address now");
    unwire(&host, b.id());
    assert_clean_sub(&host);
}

#[test]
#[ignore = "needs ipvlan/8021q: run inside the VM (tests/vm)"]
fn vlan_parent_is_made_and_removed_with_its_last_network() {
    let host = TestHost::new("vlan");
    require(&host, "vlan");
    let up = host.uplink_n(1);
    // The LAN machine is on VLAN 100 too, and answers ARP only on the
    // interface that has the address: its 10.100.0.2 is reachable only
    // with frames tagged 100.
    up.sh("ip link add link eth0 name eth0.100 type vlan id 100 && \
           ip addr add 10.100.0.2/24 dev eth0.100 && ip link set eth0.100 up && \
           sysctl -qw net.ipv4.conf.all.arp_ignore=1")
        .expect_success("VLAN 100 on the LAN machine");
    let v100 = [
        "--driver",
        "macvlan",
        "--parent",
        "uplink1.100",
        "--subnet",
        "10.100.0.0/24",
        "--gateway",
        "10.100.0.2",
        "--ip-range",
        "10.100.0.128/25",
    ];
    let mut a_args = v100.to_vec();
    a_args.push("va");
    create(&host, &a_args).expect_success("network on a VLAN parent");
    let vl = host
        .link("uplink1.100")
        .expect("network create made uplink1.100");
    assert_eq!(vl["linkinfo"]["info_kind"], "vlan");
    assert_eq!(vl["linkinfo"]["info_data"]["id"], 100);
    assert!(vl["flags"].as_array().unwrap().iter().any(|f| f == "UP"));
    // A second network on the same VLAN (another range of the subnet is
    // not allowed: use another subnet on the same segment).
    create(
        &host,
        &[
            "--driver",
            "macvlan",
            "--parent",
            "uplink1.100",
            "--subnet",
            "10.101.0.0/24",
            "vb",
        ],
    )
    .expect_success("second network on the VLAN parent");
    let c = host.container("c");
    wire(&host, &c, &[("io.wirehook.network", "va")]);
    assert!(
        pings(&c, "10.100.0.2"),
        "the container reaches VLAN 100's machine, tagged"
    );
    unwire(&host, c.id());
    assert_clean_sub(&host);
    host.wirehook(&["network", "rm", "va"], None)
        .expect_success("rm va");
    assert!(host.link("uplink1.100").is_some(), "vb still uses it");
    host.wirehook(&["network", "rm", "vb"], None)
        .expect_success("rm vb");
    assert!(
        host.link("uplink1.100").is_none(),
        "removed with its last network"
    );

    // After a reboot /run is empty: the first container makes it again.
    let mut args = v100.to_vec();
    args.push("va");
    create(&host, &args).expect_success("again");
    host.exec(&["ip", "link", "del", "uplink1.100"])
        .expect_success("as if rebooted");
    std::fs::remove_dir_all(host.root().join("run/wirehook/realized")).unwrap();
    let d = host.container("d");
    wire(&host, &d, &[("io.wirehook.network", "va")]);
    assert!(
        host.link("uplink1.100").is_some(),
        "made by the first container"
    );
    assert!(pings(&d, "10.100.0.2"));
    unwire(&host, d.id());
    host.wirehook(&["network", "rm", "va"], None)
        .expect_success("rm");
    assert!(host.link("uplink1.100").is_none());

    // A VLAN interface the operator made is used, and never removed.
    host.sh(
        "ip link add link uplink1 name uplink1.200 type vlan id 200 && ip link set uplink1.200 up",
    )
    .expect_success("operator's VLAN");
    create(
        &host,
        &[
            "--driver",
            "ipvlan",
            "--parent",
            "uplink1.200",
            "--subnet",
            "10.200.0.0/24",
            "v200",
        ],
    )
    .expect_success("network on the operator's VLAN");
    host.wirehook(&["network", "rm", "v200"], None)
        .expect_success("rm");
    assert!(
        host.link("uplink1.200").is_some(),
        "not wirehook's to remove"
    );
    assert_clean_sub(&host);
}

#[test]
#[ignore = "needs ipvlan/8021q: run inside the VM (tests/vm)"]
fn ipvlan_refuses_a_parent_with_macvlans_and_bridge_ports() {
    let host = TestHost::new("ipvbusy");
    require(&host, "ipvlan");
    let _up = host.uplink_n(1);
    // The kernel's EBUSY, said as what to do: a macvlan made by hand on the parent.
    host.exec(&[
        "ip", "link", "add", "link", "uplink1", "name", "mv0", "type", "macvlan",
    ])
    .expect_success("a macvlan of the operator's");
    create(
        &host,
        &[
            "--driver",
            "ipvlan",
            "--parent",
            "uplink1",
            "--subnet",
            SUBNET,
            "--gateway",
            PEER,
            "--ip-range",
            RANGE,
            "lan",
        ],
    )
    .expect_success("create");
    let c = host.container("c");
    let out = setup(&host, &c, &[("io.wirehook.network", "lan")]).expect_failure("busy parent");
    one_line(&out, "not both");
    assert_clean(&host);
    assert_eq!(
        c.links_json().as_array().unwrap().len(),
        1,
        "container untouched"
    );
}
