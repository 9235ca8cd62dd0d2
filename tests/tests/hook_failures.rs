//! Failure handling: a failure at any step of setup undoes everything made
//! so far and says one clear line; bad input is refused the same way;
//! many hooks at once never collide.

mod support;

use std::collections::HashSet;

use support::*;
use wirehook_tests::*;

/// Every step `WIREHOOK_FAIL_AT` can name, in setup order.
const STEPS: &[&str] = &BRIDGE_SETUP_STEPS;

#[test]
fn failure_at_every_step_leaves_nothing_behind() {
    let host = TestHost::new("fail");
    let ann = [
        ("io.wirehook.network", "bridge"),
        ("io.wirehook.ports", "8088:80"),
    ];
    for step in STEPS {
        let c = host.container(&format!("f{step}"));
        let out = setup_env(&host, &c, &ann, &[("WIREHOOK_FAIL_AT", step)])
            .expect_failure(&format!("setup failing at {step}"));
        let err = out.stderr_str();
        assert_eq!(err.trim().lines().count(), 1, "one line at {step}: {err}");
        assert!(
            err.contains(&format!("injected failure at step {step}")),
            "{err}"
        );
        assert_clean(&host);
        assert!(
            find_link(&c.links_json(), "eth0").is_none(),
            "no eth0 left in the container after {step}"
        );
        // And the same container then wires fine.
        wire(&host, &c, &ann);
        unwire(&host, c.id());
        assert_clean(&host);
    }
    // The other modes roll back the same way.
    for (mode, step) in [("none", "bindmount"), ("none", "record"), ("none", "done")] {
        let c = host.container(&format!("{mode}{step}"));
        setup_env(
            &host,
            &c,
            &[("io.wirehook.network", mode)],
            &[("WIREHOOK_FAIL_AT", step)],
        )
        .expect_failure(step);
        assert_clean(&host);
    }
}

#[test]
fn bad_input_gets_one_clear_line_and_changes_nothing() {
    let host = TestHost::new("bad");
    let c = host.container("b");
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[
                ("io.wirehook.network", "bridge"),
                ("io.wirehook.subent", "10.0.0.0/8"),
            ],
            "did you mean io.wirehook.subnet",
        ),
        (
            &[
                ("io.wirehook.network", "bridge"),
                ("io.wirehook.ports", "80:abc"),
            ],
            "io.wirehook.ports",
        ),
        (
            &[("io.wirehook.network", "nosuchnet")],
            "wirehook network create nosuchnet",
        ),
        (
            &[
                ("io.wirehook.network", "bridge"),
                ("io.wirehook.ip", "192.0.2.7"),
            ],
            "io.wirehook.ip 192.0.2.7",
        ),
        (
            &[
                ("io.wirehook.network", "bridge"),
                ("io.wirehook.mac", "01:00:5e:00:00:01"),
            ],
            "multicast",
        ),
        (
            &[("io.wirehook.network", "bridge"), ("io.wirehook.mtu", "9")],
            "68",
        ),
        (
            &[
                ("io.wirehook.network", "host"),
                ("io.wirehook.ports", "80:80"),
            ],
            "host's ports",
        ),
        (
            &[
                ("io.wirehook.network", "bridge"),
                ("io.wirehook.subnet", "10.9.0.0/24"),
            ],
            "policy",
        ),
    ];
    for (ann, want) in cases {
        let out = setup(&host, &c, ann).expect_failure(&format!("{ann:?}"));
        let err = out.stderr_str();
        assert_eq!(err.trim().lines().count(), 1, "{ann:?}: {err}");
        assert!(err.starts_with("wirehook: "), "{err}");
        assert!(err.contains(want), "{ann:?}: expected {want:?} in {err}");
        assert_clean(&host);
        assert_eq!(
            c.links_json().as_array().unwrap().len(),
            1,
            "container untouched"
        );
    }
    // Ids that are not OCI ids never become paths.
    let out = host
        .wirehook_hook(
            "createRuntime",
            r#"{"id":"../../etc","pid":1,"bundle":"/"}"#,
        )
        .expect_failure("bad id");
    assert!(
        out.stderr_str().contains("not a valid OCI id"),
        "{}",
        out.stderr_str()
    );
    let out = host
        .wirehook_hook("createRuntime", "not json")
        .expect_failure("bad json");
    assert!(out.stderr_str().contains("state"), "{}", out.stderr_str());
}

#[test]
fn inline_networks_when_policy_allows() {
    let host = TestHost::new("inline");
    let etc = host.root().join("etc/wirehook");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(
        etc.join("policy.json"),
        r#"{"allow_inline_networks": true}"#,
    )
    .unwrap();
    let a = host.container("a");
    let b = host.container("b");
    wire(
        &host,
        &a,
        &[
            ("io.wirehook.network", "dev"),
            ("io.wirehook.subnet", "10.61.0.0/24"),
        ],
    );
    assert!(ipv4_of(&a).to_string().starts_with("10.61.0."));
    let out = setup(
        &host,
        &b,
        &[
            ("io.wirehook.network", "dev"),
            ("io.wirehook.subnet", "10.62.0.0/24"),
        ],
    )
    .expect_failure("contradicting definition");
    let err = out.stderr_str();
    assert!(
        err.contains("10.62.0.0/24") && err.contains("10.61.0.0/24"),
        "names both values: {err}"
    );
    wire(&host, &b, &[("io.wirehook.network", "dev")]);
    assert!(pings(&a, &ipv4_of(&b).to_string()));
    unwire(&host, a.id());
    unwire(&host, b.id());
    assert_clean(&host);
}

#[test]
fn fifty_hooks_at_once_get_distinct_addresses() {
    let host = TestHost::new("par");
    let containers: Vec<_> = (0..50).map(|i| host.container(&format!("p{i}"))).collect();
    let ann = [("io.wirehook.network", "bridge"), ("io.wirehook.ports", "")];
    let ann = &ann[..1];
    let states: Vec<String> = containers
        .iter()
        .map(|c| c.state_json(c.id(), "creating", ann, &c.bundle(NetNsEntry::Fresh)))
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
    let addrs: HashSet<_> = containers.iter().map(ipv4_of).collect();
    assert_eq!(addrs.len(), 50, "distinct addresses");
    assert_eq!(links_with_prefix(&host, "whv").len(), 50);
    assert!(pings(&containers[0], &ipv4_of(&containers[49]).to_string()));
    std::thread::scope(|s| {
        for c in &containers {
            let host = &host;
            s.spawn(move || unwire(host, c.id()));
        }
    });
    assert_clean(&host);
}
