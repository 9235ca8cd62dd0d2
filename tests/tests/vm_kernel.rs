//! Tests under Debian's stock kernel in a qemu VM (see `wirehook_tests::vm`
//! and `tests/vm/README.md`): the kernel features the host lacks (ipvlan,
//! 802.1Q), the integration test binaries run inside the VM, where they must
//! pass as on the host, and real runc starting ipvlan containers there.
//!
//! One VM is booted per run of this binary and the tests take turns on it.
//! They fail, never skip, when qemu or the kernel package is missing: run
//! `apt-get install qemu-system-x86` and `sudo bash tests/vm/fetch-kernel.sh`
//! (`.ci/run` does both). `WIREHOOK_VM_ECHO=1 cargo test --test vm_kernel --
//! --nocapture` shows what runs in the VM as it runs.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;
use wirehook_tests::e2e::*;
use wirehook_tests::vm::{self, TestBinaries, VmCommand};
use wirehook_tests::*;

/// The ipvlan/802.1Q tests: `#[ignore]`d on the host (no ipvlan module),
/// run here with `--include-ignored` (its other tests then check the
/// kernel-has-it branch).
const IPVLAN_TEST: &str = "hook_ipvlan";

/// Every test binary the VM tests run, built once before the VM boots (the
/// VM caches the host's files, so nothing may be rebuilt under it).
fn binaries() -> &'static TestBinaries {
    static BINS: OnceLock<TestBinaries> = OnceLock::new();
    BINS.get_or_init(|| vm::cargo_test_binaries(&["hook_bridge", "hook_modes", IPVLAN_TEST]))
}

/// Runs `cmd` in the shared VM, reporting how long it took.
fn run_in_vm(what: &str, cmd: &VmCommand) -> std::process::Output {
    // qemu and the kernel first: their absence is the likelier failure.
    vm::image();
    binaries();
    vm::with_shared(|vm| {
        eprintln!(
            "[vm] {what}: kernel {} (booted in {:.1?})",
            vm.kernel_release(),
            vm.boot_time()
        );
        let t = Instant::now();
        let out = vm.run(cmd);
        eprintln!("[vm] {what}: {} in {:.1?}", out.status, t.elapsed());
        out
    })
}

/// Number of tests libtest reports as passed in `stdout`.
fn passed(stdout: &str) -> u32 {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("test result: ok. "))
        .filter_map(|l| l.split(' ').next()?.parse::<u32>().ok())
        .sum()
}

/// Runs integration test `name` in the VM with `args` (plus
/// `--test-threads=2`: the VM has two vCPUs); it must pass, and run at least
/// `min` tests.
fn test_binary_passes(name: &str, args: &[&str], min: u32) {
    let mut all = vec!["--test-threads=2"];
    all.extend_from_slice(args);
    let cmd = binaries().command(name, &all);
    let out = run_in_vm(name, &cmd).expect_success(&format!("{name} {all:?} inside the VM"));
    let n = passed(&out.stdout_str());
    assert!(
        n >= min,
        "{name} {all:?} passed {n} tests inside the VM, expected at least {min}:\n{}",
        out.report()
    );
}

#[test]
fn vm_kernel_has_ipvlan_and_8021q() {
    // Two ipvlan slaves of one dummy parent, moved into two namespaces,
    // reach each other; a VLAN 100 on both ends of a veth pair carries a
    // ping.
    let script = r#"
set -eu
case $(uname -r) in 6.1.*) ;; *) echo "not Debian's 6.1 kernel: $(uname -r)"; exit 1 ;; esac
p=whvm-$$
ip netns add $p-a; ip netns add $p-b; ip netns add $p-c
trap 'ip netns del $p-a; ip netns del $p-b; ip netns del $p-c' EXIT
for n in a b c; do ip -n $p-$n link set lo up; done

ip -n $p-a link add dummy0 type dummy
ip -n $p-a link set dummy0 up
ip -n $p-a link add link dummy0 name ipvl0 type ipvlan mode l2
ip -n $p-a link add link dummy0 name ipvl1 type ipvlan mode l2
ip -n $p-a link set ipvl0 netns $p-b
ip -n $p-a link set ipvl1 netns $p-c
ip -n $p-b addr add 192.0.2.10/24 dev ipvl0
ip -n $p-c addr add 192.0.2.11/24 dev ipvl1
ip -n $p-b link set ipvl0 up
ip -n $p-c link set ipvl1 up
ip -n $p-b -d -j link show ipvl0 | grep -q '"info_kind":"ipvlan"'
ip -n $p-b -d link show ipvl0
ip netns exec $p-b ping -c1 -W5 192.0.2.11

ip -n $p-a link add va type veth peer name vb netns $p-b
ip -n $p-a link set va up
ip -n $p-b link set vb up
ip -n $p-a link add link va name va.100 type vlan id 100
ip -n $p-b link add link vb name vb.100 type vlan id 100
ip -n $p-a addr add 198.51.100.1/24 dev va.100
ip -n $p-b addr add 198.51.100.2/24 dev vb.100
ip -n $p-a link set va.100 up
ip -n $p-b link set vb.100 up
ip -n $p-a -d -j link show va.100 | grep -q '"protocol":"802.1Q","id":100'
ip -n $p-a -d link show va.100
ip netns exec $p-a ping -c1 -W5 198.51.100.2
echo OK
"#;
    let cmd = VmCommand::sh(script).timeout(Duration::from_secs(120));
    let out = run_in_vm("ipvlan + 802.1Q", &cmd).expect_success("ipvlan and 802.1Q in the VM");
    assert!(out.stdout_str().contains("OK"), "{}", out.report());
}

#[test]
fn hook_bridge_passes_in_the_vm() {
    // The file-count test (200 start/stop cycles) asserts nothing about
    // the kernel and takes minutes under emulation: it runs on the host.
    test_binary_passes(
        "hook_bridge",
        &[
            "--skip",
            "the_run_directory_does_not_grow_with_every_container",
        ],
        11,
    );
}

#[test]
fn hook_modes_passes_in_the_vm() {
    test_binary_passes("hook_modes", &[], 4);
}

/// `tests/tests/hook_ipvlan.rs`: ipvlan l2/l3/l3s networks and 802.1Q
/// parents through the hook.
#[test]
fn hook_ipvlan_passes_in_the_vm() {
    test_binary_passes(IPVLAN_TEST, &["--include-ignored"], 8);
}

/// Real runc starts ipvlan containers inside the VM: runs
/// [`in_vm_runc_ipvlan_containers`] there.
#[test]
fn runc_ipvlan_containers_in_the_vm() {
    let cmd = binaries().this_test("in_vm_runc_ipvlan_containers");
    let out = run_in_vm("runc + ipvlan", &cmd).expect_success("runc ipvlan containers in the VM");
    assert_eq!(passed(&out.stdout_str()), 1, "{}", out.report());
}

fn assert_pings(from: &E2eContainer<'_>, to: &str, what: &str) {
    let out = from.exec(&["ping", "-c1", "-W5", to]);
    assert!(
        out.status.success(),
        "{what}: `ping -c1 {to}` in {} got no answer\n{}",
        from.name(),
        out.report()
    );
}

/// Inside the VM (see [`runc_ipvlan_containers_in_the_vm`]): runc containers
/// on an ipvlan l2 network over `uplink1` (LAN 203.0.113.0/24, LAN machine
/// .2) and on an ipvlan network over the 802.1Q parent `uplink1.100`, which
/// wirehook makes (LAN machine 192.0.2.2 on VLAN 100), and one on the
/// built-in bridge connected to the ipvlan network with `wirehook network
/// connect`. The ipvlan containers reach each other by name (and the VLAN
/// one does not). wirehook installed with `wirehook prepare`, as a runc
/// user does.
#[test]
#[ignore = "needs ipvlan and 802.1Q: runs inside the VM (runc_ipvlan_containers_in_the_vm)"]
fn in_vm_runc_ipvlan_containers() {
    assert!(
        vm::in_vm(),
        "this test runs inside the test VM: cargo test -p wirehook-tests --test vm_kernel runc_ipvlan"
    );
    let rt = Runtime::Runc;
    let host = TestHost::new("vmrunc");
    let up = host.uplink_n(1);
    let create = |args: &[&str]| {
        let mut a = vec!["network", "create", "--driver", "ipvlan"];
        a.extend_from_slice(args);
        host.wirehook(&a, None)
            .expect_success(&format!("wirehook {}", a.join(" ")));
    };
    create(&[
        "--parent",
        "uplink1",
        "--subnet",
        "203.0.113.0/24",
        "--gateway",
        "203.0.113.2",
        "--ip-range",
        "203.0.113.128/25",
        "lan",
    ]);
    // The LAN machine's side of VLAN 100.
    up.sh("ip link add link eth0 name eth0.100 type vlan id 100 && \
           ip addr add 192.0.2.2/24 dev eth0.100 && ip link set eth0.100 up")
        .expect_success("VLAN 100 on the LAN machine");
    create(&[
        "--parent",
        "uplink1.100",
        "--subnet",
        "192.0.2.0/24",
        "--gateway",
        "192.0.2.2",
        "v100",
    ]);
    let parent_mac = host.link("uplink1").expect("uplink1")["address"].clone();

    let web_id = host.unique_id("web");
    let web_b = Bundle::busybox(
        &host.root().join("web"),
        &["httpd", "-f", "-p", "80", "-h", "/var/www"],
        &[
            ("io.wirehook.network", "lan"),
            ("io.wirehook.ip", "203.0.113.201"),
            ("io.wirehook.name", "web"),
        ],
    );
    std::fs::create_dir_all(web_b.rootfs().join("var/www")).unwrap();
    std::fs::write(web_b.rootfs().join("var/www/index.html"), "ipvlan-e2e\n").unwrap();
    prepare(&host, &web_b);
    let peer_id = host.unique_id("peer");
    let peer_b = Bundle::busybox(
        &host.root().join("peer"),
        &["sleep", "3600"],
        &[("io.wirehook.network", "lan"), ("io.wirehook.name", "peer")],
    );
    prepare(&host, &peer_b);
    let vl_id = host.unique_id("vl");
    let vl_b = Bundle::busybox(
        &host.root().join("vl"),
        &["sleep", "3600"],
        &[("io.wirehook.network", "v100")],
    );
    prepare(&host, &vl_b);

    let web = E2eContainer::start(rt, &host, &web_b, &web_id);
    let peer = E2eContainer::start(rt, &host, &peer_b, &peer_id);
    let vl = E2eContainer::start(rt, &host, &vl_b, &vl_id);

    let links: Value = web.kernel_json(&["ip", "-j", "-d", "link", "show", "eth0"]);
    assert_eq!(links[0]["linkinfo"]["info_kind"], "ipvlan", "{links}");
    assert_eq!(
        links[0]["address"], parent_mac,
        "ipvlan shares the parent's MAC: {links}"
    );
    assert_eq!(web.ipv4("eth0").unwrap().to_string(), "203.0.113.201");
    let peer_ip = peer.ipv4("eth0").expect("peer has an address").to_string();
    assert_pings(&web, &peer_ip, "web reaches peer on the same parent");
    assert_pings(&peer, "203.0.113.2", "peer reaches the LAN machine");
    let reply = tcp_request(
        &up.peer_netns_path(),
        "203.0.113.201:80".parse::<SocketAddr>().unwrap(),
        "GET / HTTP/1.0\r\n\r\n",
        Duration::from_secs(10),
    )
    .expect("HTTP from the LAN machine to the container");
    assert!(reply.contains("ipvlan-e2e"), "{reply}");

    // Names on ipvlan, through the containers' own resolv.conf (prepare's
    // mount): nothing of the host is on the path.
    let look = peer.exec(&["nslookup", "web"]);
    assert!(
        look.stdout_str().contains("Address: 203.0.113.201"),
        "peer resolves web on the ipvlan network\n{}",
        look.report()
    );
    let page = peer
        .exec(&["wget", "-q", "-O", "-", "http://web/"])
        .expect_success("wget http://web/ by name over ipvlan");
    assert!(
        page.stdout_str().contains("ipvlan-e2e"),
        "{}",
        page.report()
    );
    let look = web.exec(&["nslookup", "peer.lan"]);
    assert!(
        look.stdout_str().contains(&format!("Address: {peer_ip}")),
        "web resolves peer.lan\n{}",
        look.report()
    );
    let look = vl.exec(&["nslookup", "web"]);
    assert!(
        !look.stdout_str().contains("203.0.113.201"),
        "a container on another network does not resolve web\n{}",
        look.report()
    );

    let vlan = host.link("uplink1.100").expect("wirehook made uplink1.100");
    assert_eq!(vlan["linkinfo"]["info_data"]["id"], 100, "{vlan}");
    let vl_links: Value = vl.kernel_json(&["ip", "-j", "-d", "link", "show", "eth0"]);
    assert_eq!(vl_links[0]["linkinfo"]["info_kind"], "ipvlan", "{vl_links}");
    assert_pings(
        &vl,
        "192.0.2.2",
        "the VLAN 100 container reaches the LAN machine over 802.1Q",
    );

    // `network connect` to the ipvlan network: a container on the
    // built-in bridge gets eth1 on lan, reaches the LAN and is resolved
    // by name there; disconnected, its name is gone within 1 s; connected
    // again, its stop removes everything.
    let app_b = Bundle::busybox(
        &host.root().join("app"),
        &["sleep", "3600"],
        &[
            ("io.wirehook.network", "bridge"),
            ("io.wirehook.name", "app"),
        ],
    );
    prepare(&host, &app_b);
    let app = E2eContainer::start(rt, &host, &app_b, &host.unique_id("app"));
    host.wirehook(&["network", "connect", "lan", "app"], None)
        .expect_success("network connect lan app");
    let eth1: Value = app.kernel_json(&["ip", "-j", "-d", "link", "show", "eth1"]);
    assert_eq!(eth1[0]["linkinfo"]["info_kind"], "ipvlan", "{eth1}");
    let app_lan = app
        .ipv4("eth1")
        .expect("app has an address on lan")
        .to_string();
    assert_pings(&app, &peer_ip, "app reaches peer on lan");
    assert_pings(&app, "203.0.113.2", "app reaches the LAN machine");
    let names = |c: &E2eContainer<'_>, name: &str| {
        let out = c.exec(&["nslookup", name]);
        format!("{}{}", out.stdout_str(), out.stderr_str())
    };
    let seen = names(&peer, "app");
    assert!(seen.contains(&format!("Address: {app_lan}")), "{seen}");
    host.wirehook(&["network", "disconnect", "lan", "app"], None)
        .expect_success("network disconnect lan app");
    let t = Instant::now();
    while names(&peer, "app").contains(&app_lan) {
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "app still resolves on lan 1 s after the disconnect"
        );
    }
    assert_eq!(app.link_names(), ["lo", "eth0"]);
    host.wirehook(&["network", "connect", "lan", "app"], None)
        .expect_success("network connect lan app again");
    app.stop().expect_success("runc delete app");

    web.stop().expect_success("runc delete web");
    peer.stop().expect_success("runc delete peer");
    vl.stop().expect_success("runc delete vl");
    assert_nothing_left(&host, "all runc containers were deleted");
    host.wirehook(&["network", "rm", "lan", "v100"], None)
        .expect_success("network rm lan v100");
    assert!(
        host.link("uplink1.100").is_none(),
        "uplink1.100 goes with its last network"
    );
}
