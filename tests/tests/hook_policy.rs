//! The operator's policy and the port checks no policy switches off: each
//! refusal is one line naming what to change, and leaves nothing behind.

mod support;

use std::net::SocketAddr;

use support::*;
use wirehook_tests::*;

/// Setup must fail with one line on stderr that contains each of `want`.
fn refused(host: &TestHost, c: &Container<'_>, ann: &[(&str, &str)], want: &[&str]) -> String {
    let out = setup(host, c, ann).expect_failure(&format!("{ann:?}"));
    let err = out.stderr_str();
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line for {ann:?}: {err}");
    for w in want {
        assert!(lines[0].contains(w), "{ann:?}: want {w:?} in: {}", lines[0]);
    }
    assert_clean(host);
    lines[0].to_string()
}

#[test]
fn a_port_a_host_service_listens_on_is_refused_with_its_holder() {
    let host = TestHost::new("listen");
    let c = host.container("c");
    // A host service: TCP on every address, UDP on one.
    let _tcp = EchoServer::tcp(host.netns_path(), "0.0.0.0:2222".parse().unwrap());
    let _udp = EchoServer::udp(host.netns_path(), "127.0.0.1:5353".parse().unwrap());
    let me = std::process::id().to_string();
    refused(
        &host,
        &c,
        &[
            ("io.wirehook.network", "bridge"),
            ("io.wirehook.ports", "2222:22"),
        ],
        &["2222/tcp", &me, "pick another host port"],
    );
    // In a range, and on one host address.
    refused(
        &host,
        &c,
        &[
            ("io.wirehook.network", "bridge"),
            ("io.wirehook.ports", "2220-2225:80-85"),
        ],
        &["2222/tcp"],
    );
    refused(
        &host,
        &c,
        &[
            ("io.wirehook.network", "bridge"),
            ("io.wirehook.ports", "127.0.0.1:5353:53/udp"),
        ],
        &["5353/udp"],
    );
    refused(
        &host,
        &c,
        &[
            ("io.wirehook.network", "bridge"),
            ("io.wirehook.ports", "5353:53/udp"),
        ],
        &["5353/udp"],
    );
    // The same port of the other protocol is free, and the service still
    // gets its own traffic.
    wire(
        &host,
        &c,
        &[
            ("io.wirehook.network", "bridge"),
            ("io.wirehook.ports", "2222:22/udp"),
        ],
    );
    let up = host.uplink();
    let r = up.tcp_request(SocketAddr::new(up.host_addr().into(), 2222), "ssh");
    assert!(
        r.as_ref().is_ok_and(|r| r.ends_with("ssh")),
        "the host service answers: {r:?}"
    );
    unwire(&host, c.id());
    // A port the host uses but takes no traffic on is no conflict: a
    // connected UDP socket bound to it (setup's quick bind probe is
    // refused there, and the sock_diag dump then tells). A listener on
    // IPv6 loopback alone is a conflict (the probe's IPv6 half).
    let connected = in_netns(host.netns_path(), || {
        let s = std::net::UdpSocket::bind("127.0.0.1:5400").unwrap();
        s.connect("127.0.0.1:9").unwrap();
        s
    });
    wire(
        &host,
        &c,
        &[
            ("io.wirehook.network", "bridge"),
            ("io.wirehook.ports", "5400:53/udp"),
        ],
    );
    unwire(&host, c.id());
    drop(connected);
    let _v6 = EchoServer::tcp(host.netns_path(), "[::1]:2230".parse().unwrap());
    refused(
        &host,
        &c,
        &[
            ("io.wirehook.network", "bridge"),
            ("io.wirehook.ports", "2230:80"),
        ],
        &["2230/tcp"],
    );
    assert_clean(&host);
}

#[test]
fn privileged_ports_need_the_policy() {
    let host = TestHost::new("priv");
    let c = host.container("c");
    refused(
        &host,
        &c,
        &[
            ("io.wirehook.network", "bridge"),
            ("io.wirehook.ports", "80:80"),
        ],
        &["80/tcp", "below 1024", "allow_privileged_ports"],
    );
    write_policy(&host, r#"{"allow_privileged_ports": true}"#);
    wire(
        &host,
        &c,
        &[
            ("io.wirehook.network", "bridge"),
            ("io.wirehook.ports", "80:80"),
        ],
    );
    let _srv = EchoServer::tcp(&c.netns_path(), "0.0.0.0:80".parse().unwrap());
    let up = host.uplink();
    let r = up.tcp_request(SocketAddr::new(up.host_addr().into(), 80), "web");
    assert!(r.as_ref().is_ok_and(|r| r.ends_with("web")), "{r:?}");
    unwire(&host, c.id());
    assert_clean(&host);
}

#[test]
fn a_host_address_in_a_port_mapping_must_be_the_hosts() {
    let host = TestHost::new("hostip");
    let c = host.container("c");
    refused(
        &host,
        &c,
        &[
            ("io.wirehook.network", "bridge"),
            ("io.wirehook.ports", "192.0.2.55:8080:80"),
        ],
        &["192.0.2.55", "not an address of this host"],
    );
    // One of its own is fine.
    wire(
        &host,
        &c,
        &[
            ("io.wirehook.network", "bridge"),
            ("io.wirehook.ports", "127.0.0.1:8080:80"),
        ],
    );
    unwire(&host, c.id());
    assert_clean(&host);
}

#[test]
fn each_policy_switch_refuses_what_it_names() {
    let host = TestHost::new("switch");
    let owner = host.container("owner");
    wire(&host, &owner, &[("io.wirehook.network", "bridge")]);
    write_policy(
        &host,
        r#"{"allow_host_mode": false, "allow_container_mode": false,
            "allow_static_addresses": false, "networks": ["bridge"]}"#,
    );
    let c = host.container("c");
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str]);
    let cases: &[Case] = &[
        (&[("io.wirehook.network", "host")], &["allow_host_mode"]),
        (
            &[("io.wirehook.network", "container:owner")],
            &["allow_container_mode"],
        ),
        (
            &[
                ("io.wirehook.network", "bridge"),
                ("io.wirehook.ip", "10.88.9.9"),
            ],
            &["io.wirehook.ip", "allow_static_addresses"],
        ),
        (
            &[
                ("io.wirehook.network", "bridge"),
                ("io.wirehook.mac", "02:00:00:00:00:09"),
            ],
            &["io.wirehook.mac", "allow_static_addresses"],
        ),
        (
            &[("io.wirehook.network", "other")],
            &["other", "\"networks\"", "bridge"],
        ),
    ];
    for (ann, want) in cases {
        let out = setup(&host, &c, ann).expect_failure(&format!("{ann:?}"));
        let err = out.stderr_str();
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        for w in *want {
            assert!(err.contains(w), "{ann:?}: want {w:?} in {err}");
        }
    }
    // The owner is untouched, and nothing else was made.
    assert_eq!(links_with_prefix(&host, "whv").len(), 1);
    // A policy that cannot be read refuses every start (fail closed).
    write_policy(&host, r#"{"allow_hostmode": true}"#);
    let out = setup(&host, &c, &[("io.wirehook.network", "bridge")]).expect_failure("bad policy");
    assert!(
        out.stderr_str().contains("policy.json"),
        "{}",
        out.stderr_str()
    );
    unwire(&host, owner.id());
    assert_clean(&host);
}

#[test]
fn container_mode_joins_only_a_container_of_the_same_pod() {
    let host = TestHost::new("pod");
    let owner = host.container("owner");
    wire(
        &host,
        &owner,
        &[
            ("io.wirehook.network", "bridge"),
            ("io.kubernetes.cri-o.SandboxID", "podA"),
        ],
    );
    // A sharer runs in the owner's namespace (as `wirehook prepare` sets up).
    let target = format!("container:{}", owner.id());
    let sharer_ann = |pod: &'static str| {
        vec![
            ("io.wirehook.network", target.as_str()),
            ("io.kubernetes.cri-o.SandboxID", pod),
        ]
    };
    let joiner = |id: &str, ann: &[(&str, &str)]| {
        let bundle = owner.bundle(NetNsEntry::Path(owner.netns_path()));
        host.wirehook_hook(
            "createRuntime",
            &owner.state_json(id, "creating", ann, &bundle),
        )
    };
    let out = joiner(&host.unique_id("evil"), &sharer_ann("podB")).expect_failure("another pod");
    let err = out.stderr_str();
    assert!(
        err.contains("pod podA") && err.contains("pod podB") && err.contains("own pod"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    // No pod at all is not the same pod either.
    let out = joiner(
        &host.unique_id("nopod"),
        &[("io.wirehook.network", target.as_str())],
    )
    .expect_failure("no pod");
    assert!(out.stderr_str().contains("no pod"), "{}", out.stderr_str());
    // The same pod joins.
    let friend = host.unique_id("friend");
    joiner(&friend, &sharer_ann("podA")).expect_success("same pod");
    unwire(&host, &friend);
    unwire(&host, owner.id());
    assert_clean(&host);
}

#[test]
fn container_mode_joins_only_a_container_of_the_same_runtime_root() {
    let host = TestHost::new("rtroot");
    let owner = host.container("owner");
    wire(&host, &owner, &[("io.wirehook.network", "bridge")]);
    let target = format!("container:{}", owner.id());
    let ann = [("io.wirehook.network", target.as_str())];
    let bundle = owner.bundle(NetNsEntry::Path(owner.netns_path()));
    // The joiner's hook runs under another parent: another runtime (root).
    let id = host.unique_id("other-root");
    let bin = TestHost::wirehook_bin();
    let out = host
        .run_bin_as_hook(
            std::path::Path::new("sh"),
            &[
                "-c",
                "\"$0\" hook createRuntime; exit $?",
                bin.to_str().unwrap(),
            ],
            Some(&owner.state_json(&id, "creating", &ann, &bundle)),
            &[],
        )
        .expect_failure("another runtime root");
    let err = out.stderr_str();
    assert!(
        err.contains("runtime root") && err.trim().lines().count() == 1,
        "{err}"
    );
    // The owner's own runtime root joins.
    let friend = host.unique_id("same-root");
    host.wirehook_hook(
        "createRuntime",
        &owner.state_json(&friend, "creating", &ann, &bundle),
    )
    .expect_success("the same runtime root");
    unwire(&host, &friend);
    unwire(&host, owner.id());
    assert_clean(&host);
}

#[test]
fn a_port_another_container_publishes_in_the_other_scope_is_refused() {
    let host = TestHost::new("scope");
    let a = host.container("a");
    let b = host.container("b");
    let c = host.container("c");
    // a on every address; c on one.
    wire(
        &host,
        &a,
        &[
            ("io.wirehook.network", "bridge"),
            ("io.wirehook.ports", "8800:80"),
        ],
    );
    wire(
        &host,
        &c,
        &[
            ("io.wirehook.network", "bridge"),
            ("io.wirehook.ports", "127.0.0.1:8801:80"),
        ],
    );
    let a_name = a.id().to_string();
    let c_name = c.id().to_string();
    let out = refused_keeping(
        &host,
        &b,
        &[
            ("io.wirehook.network", "bridge"),
            ("io.wirehook.ports", "127.0.0.1:8800:80"),
        ],
        &["8800/tcp", &a_name, "every address"],
    );
    assert!(out.contains("pick another host port"), "{out}");
    refused_keeping(
        &host,
        &b,
        &[
            ("io.wirehook.network", "bridge"),
            ("io.wirehook.ports", "8801:80"),
        ],
        &["8801/tcp", &c_name, "127.0.0.1"],
    );
    unwire(&host, a.id());
    unwire(&host, c.id());
    assert_clean(&host);
}

/// Setup must fail with one line containing each of `want`, leaving the
/// other containers' state as it was.
fn refused_keeping(
    host: &TestHost,
    c: &Container<'_>,
    ann: &[(&str, &str)],
    want: &[&str],
) -> String {
    let before = state_files(&run_dir(host));
    let links = links_with_prefix(host, "whv");
    let out = setup(host, c, ann).expect_failure(&format!("{ann:?}"));
    let err = out.stderr_str();
    assert_eq!(err.trim().lines().count(), 1, "{ann:?}: {err}");
    for w in want {
        assert!(err.contains(w), "{ann:?}: want {w:?} in {err}");
    }
    assert_eq!(state_files(&run_dir(host)), before, "{ann:?}: state");
    assert_eq!(links_with_prefix(host, "whv"), links, "{ann:?}: links");
    err
}
