//! The overlay's netlink operations against the kernel, in a namespace of
//! the test's own: VXLAN device, onlink route, permanent neighbour and FDB
//! entries, added, listed and removed again.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::Command;

use wirehook_shared::netlink::{Netlink, VxlanSpec};
use wirehook_shared::netns::NetNs;

struct TestNs(String);

impl TestNs {
    fn new() -> TestNs {
        let name = format!("wh-nlvx-{}", std::process::id());
        assert!(Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap()
            .success());
        TestNs(name)
    }
    fn path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.0))
    }
    fn ip(&self, args: &[&str]) -> String {
        let out = Command::new("ip")
            .args(["-n", &self.0])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "ip {args:?}: {:?}", out);
        String::from_utf8(out.stdout).unwrap()
    }
    fn bridge(&self, args: &[&str]) -> String {
        let out = Command::new("nsenter")
            .arg(format!("--net={}", self.path().display()))
            .arg("bridge")
            .args(args)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn vxlan_device_and_peer_entries() {
    let t = TestNs::new();
    t.ip(&["link", "add", "ul0", "type", "veth", "peer", "name", "ul1"]);
    t.ip(&["addr", "add", "192.0.2.10/24", "dev", "ul0"]);
    t.ip(&["link", "set", "ul0", "up"]);
    let ns = NetNs::open(&t.path()).unwrap();
    let nl = Netlink::in_netns(&ns).unwrap();
    let ul = nl.link("ul0").unwrap().unwrap();
    let mac = [0x02, 1, 2, 3, 4, 5];
    let spec = VxlanSpec {
        name: "vx-t",
        vni: 4242,
        local: Ipv4Addr::new(192, 0, 2, 10),
        underlay: ul.index,
        port: 4789,
        mtu: 1450,
        mac,
    };
    let vx = nl.ensure_vxlan(&spec).unwrap();
    assert_eq!(nl.ensure_vxlan(&spec).unwrap(), vx, "idempotent");
    let d = t.ip(&["-d", "link", "show", "vx-t"]);
    assert!(
        d.contains("vxlan id 4242") && d.contains("nolearning") && d.contains("mtu 1450"),
        "{d}"
    );

    let peer_mac = [0x02, 9, 9, 9, 9, 9];
    let underlay = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 11));
    let vtep = Ipv4Addr::new(10, 9, 1, 0);
    nl.replace_fdb(vx, peer_mac, underlay).unwrap();
    nl.replace_neighbour(vx, IpAddr::V4(vtep), peer_mac)
        .unwrap();
    nl.replace_onlink_route(vtep, 24, vtep, vx).unwrap();
    nl.replace_onlink_route(vtep, 24, vtep, vx).unwrap();
    assert_eq!(nl.fdb(vx).unwrap(), [(peer_mac, underlay)]);
    assert_eq!(nl.neighbours(vx).unwrap(), [(IpAddr::V4(vtep), peer_mac)]);
    let r = t.ip(&["route", "show", "dev", "vx-t"]);
    assert!(
        r.contains("10.9.1.0/24 via 10.9.1.0") && r.contains("onlink"),
        "{r}"
    );

    nl.delete_route(vtep, 24, vx).unwrap();
    nl.delete_neighbour(vx, IpAddr::V4(vtep)).unwrap();
    nl.delete_fdb(vx, peer_mac, underlay).unwrap();
    assert_eq!(
        nl.fdb(vx).unwrap(),
        [],
        "{}",
        t.bridge(&["fdb", "show", "dev", "vx-t"])
    );
    assert_eq!(nl.neighbours(vx).unwrap(), []);
    assert_eq!(t.ip(&["route", "show", "dev", "vx-t"]).trim(), "");
    // Removing what is not there is fine.
    nl.delete_route(vtep, 24, vx).unwrap();
    nl.delete_neighbour(vx, IpAddr::V4(vtep)).unwrap();
    nl.delete_fdb(vx, peer_mac, underlay).unwrap();
}
