//! End-to-end: real runc containers on a macvlan network, wirehook
//! installed with `wirehook prepare` as a runc user does.
//!
//! The parent is `uplink1` of the test host (the host end of a veth whose
//! other end is a "LAN" machine, 203.0.113.2). Two busybox containers on
//! the network reach each other and the LAN machine, which sees their own
//! addresses; a third shares the first one's namespace (`container:`) and
//! keeps it alive when the owner stops, so the owner's teardown removes
//! `eth0` from a living namespace; the owner is then started again at once
//! with the same id and static MAC (its old namespace may still be on its
//! way out); at the end nothing of wirehook is left, and no macvlan is left
//! on the parent.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use wirehook_tests::e2e::*;
use wirehook_tests::*;

const PEER: &str = "203.0.113.2";

fn assert_pings(from: &E2eContainer<'_>, to: &str, what: &str) {
    let out = from.exec(&["ping", "-c1", "-W3", to]);
    assert!(
        out.status.success(),
        "{what}: expected `ping -c1 {to}` in {} to get an answer\n{}",
        from.name(),
        out.report()
    );
}

/// Does `parent` carry no macvlan any more? (A passthru macvlan is
/// allowed only on a parent without others.)
fn parent_has_no_macvlans(host: &TestHost, parent: &str) -> bool {
    let probe = host.exec(&[
        "ip", "link", "add", "link", parent, "name", "whprobe", "type", "macvlan", "mode",
        "passthru",
    ]);
    if probe.status.success() {
        host.exec(&["ip", "link", "del", "whprobe"])
            .expect_success("delete the probe");
    }
    probe.status.success()
}

#[test]
fn runc_macvlan_containers_on_a_lan() {
    let rt = Runtime::Runc;
    let host = TestHost::new("e2emv");
    let up = host.uplink_n(1);
    host.wirehook(
        &[
            "network",
            "create",
            "--driver",
            "macvlan",
            "--parent",
            "uplink1",
            "--subnet",
            "203.0.113.0/24",
            "--gateway",
            PEER,
            "--ip-range",
            "203.0.113.128/25",
            "lan",
        ],
        None,
    )
    .expect_success("network create lan");

    let web_id = host.unique_id("web");
    let web_ann = [
        ("io.wirehook.network", "lan"),
        ("io.wirehook.mac", "02:42:cb:00:71:01"),
        ("io.wirehook.ip", "203.0.113.201"),
    ];
    let web_b = Bundle::busybox(
        &host.root().join("web"),
        &["httpd", "-f", "-p", "80", "-h", "/var/www"],
        &web_ann,
    );
    std::fs::write(web_b.rootfs().join("var/www/index.html"), "macvlan-e2e\n").unwrap();
    prepare(&host, &web_b);
    let peer_id = host.unique_id("peer");
    let peer_b = Bundle::busybox(
        &host.root().join("peer"),
        &["sleep", "3600"],
        &[("io.wirehook.network", "lan")],
    );
    prepare(&host, &peer_b);

    let web = E2eContainer::start(rt, &host, &web_b, &web_id);
    let peer = E2eContainer::start(rt, &host, &peer_b, &peer_id);
    let links = web.kernel_json(&["ip", "-j", "-d", "link", "show", "eth0"]);
    let eth0 = &links[0];
    assert_eq!(eth0["linkinfo"]["info_kind"], "macvlan", "{links}");
    assert_eq!(eth0["address"], "02:42:cb:00:71:01");
    assert_eq!(web.ipv4("eth0").unwrap().to_string(), "203.0.113.201");
    let peer_ip = peer.ipv4("eth0").expect("peer has an address").to_string();

    assert_pings(&web, &peer_ip, "web reaches peer on the same parent");
    assert_pings(&peer, PEER, "peer reaches the LAN machine");
    // The LAN machine reaches the web server at the container's own address.
    let reply = tcp_request(
        &up.peer_netns_path(),
        "203.0.113.201:80".parse::<SocketAddr>().unwrap(),
        "GET / HTTP/1.0\r\n\r\n",
        Duration::from_secs(5),
    )
    .expect("HTTP from the LAN machine to the container");
    assert!(reply.contains("macvlan-e2e"), "{reply}");
    let ps: Value = serde_json::from_slice(
        &host
            .wirehook(&["ps", "--json"], None)
            .expect_success("ps")
            .stdout,
    )
    .unwrap();
    assert!(
        ps.as_array()
            .unwrap()
            .iter()
            .all(|r| r["mode"] == "macvlan"),
        "{ps}"
    );

    // A sharer keeps web's namespace alive when web stops: web's teardown
    // then removes eth0 from it.
    let share_id = host.unique_id("share");
    let share_b = Bundle::busybox(
        &host.root().join("share"),
        &["sleep", "3600"],
        &[("io.wirehook.network", &format!("container:{web_id}"))],
    );
    prepare(&host, &share_b);
    let share = E2eContainer::start(rt, &host, &share_b, &share_id);
    assert_pings(&share, PEER, "the sharer uses web's eth0");
    web.stop().expect_success("runc delete web");
    assert!(
        eventually(Duration::from_secs(5), || !share
            .exec(&["ip", "-o", "link", "show", "eth0"])
            .status
            .success()),
        "eth0 should be gone from the namespace the sharer keeps"
    );
    share.stop().expect_success("runc delete share");

    // Started again at once with the same id, MAC and address.
    prepare(&host, &web_b);
    let web = E2eContainer::start(rt, &host, &web_b, &web_id);
    assert_pings(&web, PEER, "the restarted web reaches the LAN");
    web.stop().expect_success("runc delete web again");
    peer.stop().expect_success("runc delete peer");

    assert_nothing_left(&host, "all runc containers were deleted");
    assert!(
        eventually(Duration::from_secs(5), || parent_has_no_macvlans(
            &host, "uplink1"
        )),
        "macvlans left on uplink1"
    );
    host.wirehook(&["network", "rm", "lan"], None)
        .expect_success("network rm lan");
}
