//! Teardown never fails and never goes twice: whatever was removed by hand
//! or happened before, poststop exits 0 and leaves the host clean; a
//! second setup of a live id is refused clearly.

mod support;

use support::*;
use wirehook_tests::*;

const PORTS: [(&str, &str); 2] = [
    ("io.wirehook.network", "bridge"),
    ("io.wirehook.ports", "8787:80"),
];

#[test]
fn poststop_twice_and_without_setup_exit_0_and_change_nothing() {
    let host = TestHost::new("tdtwice");
    let other = host.container("other");
    wire(&host, &other, &PORTS);
    // Without any setup.
    unwire(&host, &host.unique_id("never"));
    // Twice.
    let mut c = host.container("c");
    wire(&host, &c, &[("io.wirehook.network", "bridge")]);
    c.kill();
    unwire(&host, c.id());
    unwire(&host, c.id());
    // The other container is untouched.
    host.wirehook(&["check"], None)
        .expect_success("the bystander is as recorded");
    assert_eq!(nft_elements(&host, "pub4_any").len(), 1);
    unwire(&host, other.id());
    assert_clean(&host);
}

#[test]
fn poststop_after_things_were_removed_by_hand_exits_0_and_cleans_up() {
    let host = TestHost::new("tdhand");
    // The container's namespace gone (its process and the bind mount).
    let mut c = host.container("ns");
    wire(&host, &c, &PORTS);
    c.kill();
    let mount = run_dir(&host).join("netns").join(c.id());
    host.exec(&["umount", mount.to_str().unwrap()])
        .expect_success("unmount by hand");
    unwire(&host, c.id());
    assert_clean(&host);

    // The host end of the veth deleted by hand.
    let c = host.container("veth");
    wire(&host, &c, &PORTS);
    for l in links_with_prefix(&host, "whv") {
        host.exec(&["ip", "link", "del", &l])
            .expect_success("delete veth");
    }
    unwire(&host, c.id());
    assert_clean(&host);

    // The whole nftables table deleted by hand; the next start makes it again.
    let c = host.container("nft");
    wire(&host, &c, &PORTS);
    host.exec(&["nft", "delete", "table", "inet", "wirehook"])
        .expect_success("delete the table");
    unwire(&host, c.id());
    assert_clean(&host);
    let d = host.container("after");
    wire(&host, &d, &PORTS);
    assert_eq!(
        nft_elements(&host, "pub4_any").len(),
        1,
        "the table is back"
    );
    unwire(&host, d.id());
    assert_clean(&host);
}

#[test]
fn a_second_setup_of_a_live_id_is_refused_and_a_dead_ones_is_replaced() {
    let host = TestHost::new("tdsecond");
    let mut a = host.container("a");
    wire(&host, &a, &PORTS);
    let ip = ipv4_of(&a);
    // Same id, same namespace: a no-op (prestart and createRuntime both listed).
    let bundle = a.bundle(NetNsEntry::Fresh);
    host.wirehook_hook(
        "createRuntime",
        &a.state_json(a.id(), "creating", &PORTS, &bundle),
    )
    .expect_success("the same setup again");
    // Same id, another live container: refused, the first one untouched.
    let b = host.container("b");
    let out = host
        .wirehook_hook(
            "createRuntime",
            &b.state_json(a.id(), "creating", &PORTS, &bundle),
        )
        .expect_failure("a second container under a live id");
    let err = out.stderr_str();
    assert!(
        err.contains("already wired") && err.trim().lines().count() == 1,
        "{err}"
    );
    assert_eq!(ipv4_of(&a), ip, "the first container keeps its address");
    host.wirehook(&["check"], None)
        .expect_success("the first container is as recorded");
    assert!(
        b.links_json()
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["ifname"] != "eth0"),
        "nothing made in the second"
    );
    // Once the first container is dead (its poststop never came), its id
    // may be taken again: the stale wiring goes first.
    a.kill();
    host.wirehook_hook(
        "createRuntime",
        &b.state_json(a.id(), "creating", &PORTS, &bundle),
    )
    .expect_success("the id of a dead container");
    assert_eq!(links_with_prefix(&host, "whv").len(), 1);
    unwire(&host, a.id());
    assert_clean(&host);
}

#[test]
fn setup_and_teardown_of_one_id_racing_end_wired_or_clean() {
    let host = TestHost::new("tdrace");
    for round in 0..20 {
        let c = host.container(&format!("r{round}"));
        let id = c.id().to_string();
        let bundle = c.bundle(NetNsEntry::Fresh);
        let state = c.state_json(&id, "creating", &PORTS, &bundle);
        let (up, down) = std::thread::scope(|s| {
            let up = s.spawn(|| host.wirehook_hook("createRuntime", &state));
            let down = s.spawn(|| {
                host.wirehook_hook(
                    "poststop",
                    &oci_state(&id, "stopped", None, &host.root().join("nb"), &[]),
                )
            });
            (up.join().unwrap(), down.join().unwrap())
        });
        down.expect_success(&format!("round {round}: poststop"));
        up.expect_success(&format!("round {round}: setup"));
        // Either order is fine; what is recorded is what the kernel shows.
        host.wirehook(&["check"], None)
            .expect_success(&format!("round {round}: check"));
        unwire(&host, &id);
        assert_clean(&host);
    }
}

/// Make `dead`'s record name `live`'s pid (as if the pid had been reused),
/// keeping its own start time.
fn reuse_pid(host: &TestHost, dead: &Container<'_>, live: &Container<'_>) {
    let rec_path = run_dir(host)
        .join("containers")
        .join(format!("{}.json", dead.id()));
    let mut rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&rec_path).unwrap()).unwrap();
    rec["pid"] = live.pid().into();
    std::fs::write(&rec_path, serde_json::to_vec(&rec).unwrap()).unwrap();
}

#[test]
fn a_reused_pid_is_not_taken_for_the_container() {
    let host = TestHost::new("tdpid");
    let b = host.container("b");
    wire(&host, &b, &[("io.wirehook.network", "bridge")]);

    // gc: a dead container whose pid now belongs to b goes, b stays.
    let mut a = host.container("a");
    wire(&host, &a, &[("io.wirehook.network", "bridge")]);
    a.kill();
    reuse_pid(&host, &a, &b);
    let out = host
        .wirehook(&["gc"], None)
        .expect_success("gc")
        .stdout_str();
    assert!(out.contains(a.id()), "a is gone: {out}");
    assert!(!out.contains(b.id()), "b is not: {out}");
    host.wirehook(&["check"], None)
        .expect_success("b is as recorded");

    // A second setup of a dead container's id is not refused on account of
    // the process that now has its pid.
    let mut d = host.container("d");
    wire(&host, &d, &[("io.wirehook.network", "bridge")]);
    d.kill();
    reuse_pid(&host, &d, &b);
    let c = host.container("c");
    let bundle = c.bundle(NetNsEntry::Fresh);
    host.wirehook_hook(
        "createRuntime",
        &c.state_json(
            d.id(),
            "creating",
            &[("io.wirehook.network", "bridge")],
            &bundle,
        ),
    )
    .expect_success("d's id again");
    host.wirehook(&["check"], None)
        .expect_success("b and the new d are as recorded");
    unwire(&host, d.id());
    unwire(&host, b.id());
    assert_clean(&host);
}
