//! Hostile input: annotation values and runtime fields written by someone
//! who may not be trusted (with CRI-O, anyone who may create a pod). Every
//! case must be refused with one line on stderr, and leave nothing: no
//! link, lease, record, name, bind mount or map element.

mod support;

use support::*;
use wirehook_tests::*;

/// One case: the annotations, and a word the error line must contain.
type Case = (Vec<(&'static str, String)>, &'static str);

fn net(v: impl Into<String>) -> (&'static str, String) {
    ("io.wirehook.network", v.into())
}

fn bridge_with(key: &'static str, v: impl Into<String>) -> Vec<(&'static str, String)> {
    vec![net("bridge"), (key, v.into())]
}

fn cases() -> Vec<Case> {
    let big = "a".repeat(10 * 1024);
    vec![
        // The network's name.
        (vec![net("../etc")], "io.wirehook.network"),
        (vec![net("/etc/passwd")], "io.wirehook.network"),
        (vec![net("a\0b")], "io.wirehook.network"),
        (vec![net("bridge\nhost")], "io.wirehook.network"),
        (vec![net("a+b")], "io.wirehook.network"),
        (vec![net("a=b")], "io.wirehook.network"),
        (vec![net(big.clone())], "io.wirehook.network"),
        (vec![net("")], "io.wirehook.network"),
        (vec![net("bridge,bridge")], "bridge"),
        (vec![net("nosuchnet")], "nosuchnet"),
        (vec![net("container:")], "container"),
        (vec![net("container:../x")], "container"),
        (vec![net("container:a/b")], "container"),
        (vec![net(format!("container:{big}"))], "container"),
        (vec![net("container:nobody")], "nobody"),
        // Interface names.
        (
            bridge_with("io.wirehook.ifname", "abcdefghijklmnop"),
            "io.wirehook.ifname",
        ),
        (
            bridge_with("io.wirehook.ifname", "eth0/../x"),
            "io.wirehook.ifname",
        ),
        (
            bridge_with("io.wirehook.ifname", "lo"),
            "io.wirehook.ifname",
        ),
        (
            bridge_with("io.wirehook.ifname", "eth 0"),
            "io.wirehook.ifname",
        ),
        (bridge_with("io.wirehook.ifname", ""), "io.wirehook.ifname"),
        (
            bridge_with("io.wirehook.ifname", ".."),
            "io.wirehook.ifname",
        ),
        (
            bridge_with("io.wirehook.ifname", "eth\n0"),
            "io.wirehook.ifname",
        ),
        (
            bridge_with("io.wirehook.ifname", "eth=0"),
            "io.wirehook.ifname",
        ),
        // Names.
        (bridge_with("io.wirehook.name", "../x"), "io.wirehook.name"),
        (bridge_with("io.wirehook.name", "a/b"), "io.wirehook.name"),
        (bridge_with("io.wirehook.name", "a\0b"), "io.wirehook.name"),
        (bridge_with("io.wirehook.name", "a+b"), "io.wirehook.name"),
        (
            bridge_with("io.wirehook.name", big.clone()),
            "io.wirehook.name",
        ),
        // Addresses.
        (bridge_with("io.wirehook.ip", "10.88.0.1"), "reserved"),
        (bridge_with("io.wirehook.ip", "10.88.255.255"), "reserved"),
        (bridge_with("io.wirehook.ip", "1.2.3.4"), "subnet"),
        (bridge_with("io.wirehook.ip", "not-an-ip"), "io.wirehook.ip"),
        (
            bridge_with("io.wirehook.ip", "10.88.0.5/24"),
            "io.wirehook.ip",
        ),
        (bridge_with("io.wirehook.ip", big.clone()), "io.wirehook.ip"),
        (
            bridge_with("io.wirehook.mac", "ff:ff:ff:ff:ff:ff"),
            "io.wirehook.mac",
        ),
        (
            bridge_with("io.wirehook.mac", "00:00:00:00:00:00"),
            "io.wirehook.mac",
        ),
        (
            bridge_with("io.wirehook.mac", "02:00:00:00:00"),
            "io.wirehook.mac",
        ),
        (
            bridge_with("io.wirehook.mac", big.clone()),
            "io.wirehook.mac",
        ),
        // Ports.
        (
            bridge_with("io.wirehook.ports", "0:80"),
            "io.wirehook.ports",
        ),
        (
            bridge_with("io.wirehook.ports", "65536:80"),
            "io.wirehook.ports",
        ),
        (
            bridge_with("io.wirehook.ports", "8080:80/icmp"),
            "io.wirehook.ports",
        ),
        (
            bridge_with("io.wirehook.ports", "192.0.2.9:8080:80"),
            "192.0.2.9",
        ),
        (
            bridge_with("io.wirehook.ports", "8080-8070:80-70"),
            "io.wirehook.ports",
        ),
        (bridge_with("io.wirehook.ports", "8080:80,8080:81"), "8080"),
        (
            bridge_with("io.wirehook.ports", "8080:80\n22:22"),
            "io.wirehook.ports",
        ),
        (
            bridge_with("io.wirehook.ports", big.clone()),
            "io.wirehook.ports",
        ),
        (
            bridge_with("io.wirehook.ports", "22:22"),
            "allow_privileged_ports",
        ),
        // MTU.
        (bridge_with("io.wirehook.mtu", "9"), "io.wirehook.mtu"),
        (bridge_with("io.wirehook.mtu", "70000"), "io.wirehook.mtu"),
        (bridge_with("io.wirehook.mtu", "-1"), "io.wirehook.mtu"),
        // Keys.
        (
            bridge_with("io.wirehook.subent", "10.0.0.0/8"),
            "io.wirehook.subnet",
        ),
        (
            bridge_with("io.wirehook.subnet", "10.0.0.0/8"),
            "allow_inline_networks",
        ),
        (
            bridge_with("io.wirehook.parent", "eth0"),
            "allow_inline_networks",
        ),
        (
            vec![net("host"), ("io.wirehook.ip", "10.88.0.9".into())],
            "host",
        ),
    ]
}

#[test]
fn every_hostile_annotation_is_refused_with_one_line_and_nothing_made() {
    let host = TestHost::new("hostile");
    let c = host.container("c");
    let cases = cases();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    for (ann, want) in &cases {
        let ann: Vec<(&str, &str)> = ann.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let shown: String = format!("{ann:?}").chars().take(120).collect();
        let out = setup(&host, &c, &ann).expect_failure(&shown);
        let err = out.stderr_str();
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{shown}: one line, got: {err:?}");
        assert!(lines[0].starts_with("wirehook: "), "{shown}: {}", lines[0]);
        assert!(
            lines[0].len() < 1024,
            "{shown}: a bounded line, got {} bytes",
            lines[0].len()
        );
        assert!(
            lines[0].contains(want),
            "{shown}: want {want:?} in: {}",
            lines[0]
        );
        assert!(
            state_files(&run_dir(&host)).is_empty(),
            "{shown}: state left"
        );
        assert!(
            links_with_prefix(&host, "whv").is_empty(),
            "{shown}: veth left"
        );
    }
    assert_clean(&host);
}

#[test]
fn hostile_runtime_fields_are_refused_with_one_line_and_nothing_made() {
    let host = TestHost::new("hostrt");
    let c = host.container("c");
    let bundle = c.bundle(NetNsEntry::Fresh);
    let ann = [("io.wirehook.network", "bridge")];
    let big = "a".repeat(10 * 1024);
    let ids = ["../x", "a/b", "", ".", "..", "a\nb", "a b", big.as_str()];
    for id in ids {
        let state = c.state_json(id, "creating", &ann, &bundle);
        let out = host
            .wirehook_hook("createRuntime", &state)
            .expect_failure(&format!("id {id:.40?}"));
        let err = out.stderr_str();
        assert_eq!(err.trim().lines().count(), 1, "id {id:.40?}: {err}");
        assert!(err.contains("id"), "id {id:.40?}: {err}");
        assert!(
            state_files(&run_dir(&host)).is_empty(),
            "id {id:.40?}: state left"
        );
    }
    // A pid that is not a process, and a pid of 0 at setup.
    for pid in [0, 999_999_999] {
        let state = oci_state(&host.unique_id("p"), "creating", Some(pid), &bundle, &ann);
        let out = host
            .wirehook_hook("createRuntime", &state)
            .expect_failure(&format!("pid {pid}"));
        assert_eq!(
            out.stderr_str().trim().lines().count(),
            1,
            "{}",
            out.stderr_str()
        );
    }
    // A poststop with a hostile id changes nothing and still exits 0.
    for id in ["../x", "a/b"] {
        host.wirehook_hook("poststop", &oci_state(id, "stopped", None, &bundle, &[]))
            .expect_success("poststop of a hostile id");
    }
    assert_clean(&host);
}

#[test]
fn hostile_inline_definitions_are_refused_where_the_policy_allows_them() {
    let host = TestHost::new("hostinl");
    write_policy(&host, r#"{"allow_inline_networks": true}"#);
    let a = host.container("a");
    wire(
        &host,
        &a,
        &[
            ("io.wirehook.network", "inl1"),
            ("io.wirehook.subnet", "10.77.0.0/24"),
        ],
    );
    let c = host.container("c");
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        // Overlapping another network's subnet.
        (
            vec![
                ("io.wirehook.network", "inl2"),
                ("io.wirehook.subnet", "10.77.0.0/16"),
            ],
            "overlap",
        ),
        // Contradicting the first definition.
        (
            vec![
                ("io.wirehook.network", "inl1"),
                ("io.wirehook.subnet", "10.78.0.0/24"),
            ],
            "10.77.0.0/24",
        ),
        (
            vec![
                ("io.wirehook.network", "inl3"),
                ("io.wirehook.driver", "bogus"),
            ],
            "io.wirehook.driver",
        ),
        (
            vec![
                ("io.wirehook.network", "inl4"),
                ("io.wirehook.driver", "macvlan"),
                ("io.wirehook.parent", "lo"),
                ("io.wirehook.subnet", "10.81.0.0/24"),
                ("io.wirehook.mode", "bogus"),
            ],
            "not a macvlan mode",
        ),
        (
            vec![
                ("io.wirehook.network", "inl5"),
                ("io.wirehook.driver", "macvlan"),
                ("io.wirehook.parent", "../../x"),
            ],
            "io.wirehook.parent",
        ),
        (
            vec![
                ("io.wirehook.network", "../inl"),
                ("io.wirehook.subnet", "10.79.0.0/24"),
            ],
            "io.wirehook.network",
        ),
        (
            vec![
                ("io.wirehook.network", "inl6"),
                ("io.wirehook.subnet", "10.80.0.0/33"),
            ],
            "io.wirehook.subnet",
        ),
    ];
    let before = links_with_prefix(&host, "whv");
    for (ann, want) in &cases {
        let out = setup(&host, &c, ann).expect_failure(&format!("{ann:?}"));
        let err = out.stderr_str();
        assert_eq!(err.trim().lines().count(), 1, "{ann:?}: {err}");
        assert!(err.contains(want), "{ann:?}: want {want:?} in {err}");
        assert_eq!(links_with_prefix(&host, "whv"), before, "{ann:?}: links");
    }
    unwire(&host, a.id());
    assert_clean(&host);
}
