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

/// Setup's steps, in order (the fail points of the hook and the bridge driver).
const SETUP_STEPS: [&str; 11] = [
    "name",
    "lock",
    "realize",
    "allocate",
    "veth",
    "address",
    "route",
    "ports",
    "bindmount",
    "record",
    "done",
];

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
