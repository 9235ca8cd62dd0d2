//! Crash consistency: the hook SIGKILLed at each numbered step of setup and
//! of teardown (`WIREHOOK_KILL_AT`, as a runtime kills a hook past its
//! timeout). After each kill, the runtime's next move (poststop) plus
//! `wirehook gc` must leave exactly what a clean run leaves, and a fresh
//! setup must then work.

mod support;

use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;

use support::*;
use wirehook_tests::*;

/// Setup's steps, in order.
const SETUP_STEPS: [&str; 12] = BRIDGE_SETUP_STEPS;

/// Teardown's steps: poststop's own, then its detached finisher's.
const TEARDOWN_STEPS: [&str; 7] = [
    "teardown-drivers",
    "teardown-unmount",
    "teardown-record",
    "finish-ports",
    "finish-conntrack",
    "finish-unmount",
    "finish-lease",
];

const PORTS: [(&str, &str); 2] = [
    ("io.wirehook.network", "bridge"),
    ("io.wirehook.ports", "8686:80"),
];

fn killed(out: &std::process::Output, what: &str) {
    assert_eq!(
        out.status.signal(),
        Some(9),
        "{what}: killed by SIGKILL\n{}",
        out.report()
    );
}

fn poststop(host: &TestHost, id: &str, env: &[(&str, &str)]) -> std::process::Output {
    let bundle = host.root().join("no-bundle");
    host.wirehook_env(
        &["hook", "poststop"],
        Some(&oci_state(id, "stopped", None, &bundle, &[])),
        env,
    )
}

/// A fresh container on the same port works and goes cleanly.
fn fresh_run_works(host: &TestHost, up: &Uplink<'_>, what: &str) {
    let c = host.container("fresh");
    wire(host, &c, &PORTS);
    let _srv = EchoServer::tcp(&c.netns_path(), "0.0.0.0:80".parse().unwrap());
    let r = up.tcp_request(SocketAddr::new(up.host_addr().into(), 8686), "again");
    assert!(
        r.as_ref().is_ok_and(|r| r.ends_with("again")),
        "{what}: a fresh run's port answers: {r:?}"
    );
    host.wirehook(&["check"], None)
        .expect_success(&format!("{what}: check"));
    unwire(host, c.id());
    assert_clean(host);
}

#[test]
fn a_setup_killed_at_any_step_is_cleaned_by_poststop_and_gc() {
    let host = TestHost::new("killset");
    let up = host.uplink();
    for step in SETUP_STEPS {
        let what = format!("setup killed at {step}");
        let mut c = host.container(step);
        let out = setup_env(&host, &c, &PORTS, &[("WIREHOOK_KILL_AT", step)]);
        killed(&out, &what);
        // The runtime gives up: its poststop, the container's end, gc.
        poststop(&host, c.id(), &[]).expect_success(&format!("{what}: poststop"));
        c.kill();
        host.wirehook(&["gc"], None)
            .expect_success(&format!("{what}: gc"));
        assert_clean(&host);
        fresh_run_works(&host, &up, &what);
    }
}

#[test]
fn a_teardown_killed_at_any_step_is_finished_by_gc() {
    let host = TestHost::new("killtd");
    let up = host.uplink();
    for step in TEARDOWN_STEPS {
        let what = format!("teardown killed at {step}");
        let mut c = host.container(step);
        wire(&host, &c, &PORTS);
        let out = poststop(&host, c.id(), &[("WIREHOOK_KILL_AT", step)]);
        if step.starts_with("finish-") {
            // The finisher is a detached child: poststop itself returns.
            out.expect_success(&format!("{what}: poststop"));
        } else {
            killed(&out, &what);
        }
        c.kill();
        // The finisher may still be dying; gc finishes what it left.
        assert!(
            eventually(10, || {
                host.wirehook(&["gc"], None)
                    .expect_success(&format!("{what}: gc"));
                state_files(&run_dir(&host)).is_empty()
                    && nft_elements(&host, "pub4_any").is_empty()
            }),
            "{what}: gc leaves a clean run's state: {:?}",
            state_files(&run_dir(&host))
        );
        assert_clean(&host);
        fresh_run_works(&host, &up, &what);
    }
}

#[test]
fn a_sharer_killed_at_any_step_is_cleaned_by_poststop_and_gc() {
    let host = TestHost::new("killshr");
    let owner = host.container("owner");
    wire(&host, &owner, &[("io.wirehook.network", "bridge")]);
    let target = format!("container:{}", owner.id());
    let ann = [("io.wirehook.network", target.as_str())];
    let bundle = owner.bundle(NetNsEntry::Path(owner.netns_path()));
    let sharer_setup = |id: &str, env: &[(&str, &str)]| {
        host.wirehook_env(
            &["hook", "createRuntime"],
            Some(&owner.state_json(id, "creating", &ann, &bundle)),
            env,
        )
    };
    for step in ["name", "bindmount", "record", "done"] {
        let what = format!("sharer setup killed at {step}");
        let id = host.unique_id(&format!("s-{step}"));
        killed(&sharer_setup(&id, &[("WIREHOOK_KILL_AT", step)]), &what);
        poststop(&host, &id, &[]).expect_success(&format!("{what}: poststop"));
        host.wirehook(&["gc"], None)
            .expect_success(&format!("{what}: gc"));
        // Only the owner is left, and a new sharer works.
        let ps = host
            .wirehook(&["ps"], None)
            .expect_success("ps")
            .stdout_str();
        assert!(!ps.contains(&id), "{what}: {ps}");
        let again = host.unique_id(&format!("again-{step}"));
        sharer_setup(&again, &[]).expect_success(&format!("{what}: a fresh sharer"));
        poststop(&host, &again, &[]).expect_success("poststop");
    }
    for step in ["teardown-drivers", "teardown-unmount", "teardown-record"] {
        let what = format!("sharer teardown killed at {step}");
        let id = host.unique_id(&format!("t-{step}"));
        sharer_setup(&id, &[]).expect_success(&what);
        killed(&poststop(&host, &id, &[("WIREHOOK_KILL_AT", step)]), &what);
        host.wirehook(&["gc"], None)
            .expect_success(&format!("{what}: gc"));
        // The sharer's process (the owner's, here) lives: gc keeps a record
        // it still has; a second poststop finishes.
        poststop(&host, &id, &[]).expect_success(&format!("{what}: poststop again"));
        let ps = host
            .wirehook(&["ps"], None)
            .expect_success("ps")
            .stdout_str();
        assert!(!ps.contains(&id), "{what}: {ps}");
    }
    unwire(&host, owner.id());
    assert_clean(&host);
}

/// Kill setup at each of `steps` and teardown at each of
/// [`TEARDOWN_STEPS`] for containers on the network `ann` asks for; after
/// each, poststop + gc leave the host clean and a fresh run works (pings
/// `peer`).
fn kill_everywhere(host: &TestHost, ann: &[(&str, &str)], steps: &[&str], peer: &str) {
    let fresh = |what: &str| {
        let c = host.container("fresh");
        wire(host, &c, ann);
        // (One ping's 1 s deadline includes ARP; on a loaded machine, load
        // 28 once here, that is not always enough: what is asserted is
        // that the network works, not how fast.)
        assert!(
            eventually(10, || pings(&c, peer)),
            "{what}: a fresh run reaches {peer}"
        );
        host.wirehook(&["check"], None)
            .expect_success(&format!("{what}: check"));
        unwire(host, c.id());
    };
    // What a clean run leaves (a peer's own state, the network's).
    let baseline = state_files(&run_dir(host));
    let gc_until_clean = |what: &str| {
        assert!(
            eventually(10, || {
                host.wirehook(&["gc"], None)
                    .expect_success(&format!("{what}: gc"));
                state_files(&run_dir(host)) == baseline
            }),
            "{what}: gc leaves a clean run's state: {:?}, not {baseline:?}",
            state_files(&run_dir(host))
        );
    };
    for step in steps {
        let what = format!("{ann:?}: setup killed at {step}");
        let mut c = host.container(step);
        killed(
            &setup_env(host, &c, ann, &[("WIREHOOK_KILL_AT", step)]),
            &what,
        );
        poststop(host, c.id(), &[]).expect_success(&format!("{what}: poststop"));
        c.kill();
        gc_until_clean(&what);
        fresh(&what);
    }
    for step in TEARDOWN_STEPS.iter().filter(|s| **s != "finish-ports") {
        let what = format!("{ann:?}: teardown killed at {step}");
        let mut c = host.container(step);
        wire(host, &c, ann);
        let out = poststop(host, c.id(), &[("WIREHOOK_KILL_AT", step)]);
        if !step.starts_with("finish-") {
            killed(&out, &what);
        }
        c.kill();
        gc_until_clean(&what);
        fresh(&what);
    }
}

#[test]
fn a_macvlan_container_killed_at_any_step_is_cleaned_by_poststop_and_gc() {
    let host = TestHost::new("killmv");
    let up = host.uplink_n(1);
    create_lan_network(&host, "lan", up.host_ifname());
    let steps = [
        "name",
        "lock",
        "realize",
        "allocate",
        "link",
        "address",
        "route",
        "bindmount",
        "record",
        "dns",
        "done",
    ];
    kill_everywhere(
        &host,
        &[("io.wirehook.network", "lan")],
        &steps,
        "203.0.113.2",
    );
    assert_clean(&host);
}

#[test]
fn an_overlay_container_killed_at_any_step_is_cleaned_by_poststop_and_gc() {
    let host = TestHost::new("killov");
    // No cluster store configured: the local store serves.
    host.wirehook(&["network", "create", "--driver", "overlay", "solo"], None)
        .expect_success("network create solo");
    let peer = host.container("peer");
    wire(&host, &peer, &[("io.wirehook.network", "solo")]);
    let peer_ip = addr_of(&peer.addrs_json(), "eth0", false)
        .unwrap()
        .0
        .to_string();
    // (Its `overlay-peers` step runs only when remote hosts change: none here.)
    let steps = [
        "name",
        "lock",
        "realize",
        "allocate",
        "veth",
        "address",
        "route",
        "bindmount",
        "record",
        "dns",
        "done",
    ];
    kill_everywhere(&host, &[("io.wirehook.network", "solo")], &steps, &peer_ip);
    unwire(&host, peer.id());
    // As after any clean run: the host leaves the network, which goes.
    host.wirehook(&["overlay", "leave", "solo"], None)
        .expect_success("leave");
    host.wirehook(&["network", "rm", "solo"], None)
        .expect_success("rm");
    assert_clean(&host);
}
