//! End-to-end: real runc, crun and podman start busybox containers with
//! wirehook installed the way a user installs it, and the kernel and real
//! traffic show the result.
//!
//! * runc / crun: `wirehook --root ROOT prepare BUNDLE` adds the hooks to
//!   config.json and fits the network namespace entry to the mode.
//! * podman: `--hooks-dir` with a copy of the repository's
//!   `hooks.d/wirehook.json` (path: the built binary, `--root ROOT` added to
//!   its args); one entry for createRuntime and poststop, the hook infers the
//!   stage from the state's status. `--network` is what a podman user would
//!   pass: `none` (a fresh namespace for wirehook to wire) for bridge and
//!   none, `host` for host, `container:NAME` for container-shared.
//!
//! Each runtime gets one tour with five containers (two bridge containers,
//! one of them publishing a port; a container sharing the first one's
//! namespace; none; host) and one test of a failing setup. Each test has its
//! own [`TestHost`]; ids come from [`TestHost::unique_id`].

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde_json::Value;
use wirehook_tests::e2e::*;
use wirehook_tests::*;

/// A busybox bundle at `ROOT/<tag>` running `args` with `annotations`.
fn bundle(host: &TestHost, tag: &str, args: &[&str], annotations: &[(&str, &str)]) -> Bundle {
    Bundle::busybox(&host.root().join(tag), args, annotations)
}

/// Installs wirehook for `rt`: `prepare` for runc/crun (checked to carry
/// `--root`), the shipped hooks.d file for podman.
fn install(rt: Runtime, host: &TestHost, b: &Bundle) {
    match rt {
        Runtime::Runc | Runtime::Crun => {
            prepare(host, b);
        }
        Runtime::Podman => {
            let doc = install_shipped_hooks_d(host);
            assert_eq!(
                doc["stages"],
                serde_json::json!(["createRuntime", "poststop"]),
                "the shipped hooks.d file should list createRuntime and poststop"
            );
        }
    }
}

/// `wirehook ps --json` of the host, parsed.
fn ps(host: &TestHost) -> Vec<Value> {
    let out = host
        .wirehook(&["ps", "--json"], None)
        .expect_success("wirehook ps --json");
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("wirehook ps --json printed no JSON: {e}\n{}", out.report()));
    v.as_array().cloned().unwrap_or_default()
}

fn record<'a>(recs: &'a [Value], id: &str) -> &'a Value {
    recs.iter().find(|r| r["id"] == id).unwrap_or_else(|| {
        panic!("expected a wirehook record for container {id}; records: {recs:?}")
    })
}

/// One ping from `from` to `to` must be answered.
fn assert_pings(from: &E2eContainer<'_>, to: &str, what: &str) {
    let out = from.exec(&["ping", "-c1", "-W3", to]);
    assert!(
        out.status.success(),
        "{what}: expected `ping -c1 {to}` in {} ({}) to get an answer\n{}",
        from.name(),
        from.runtime().name(),
        out.report()
    );
}

/// Link names as the container itself sees them (`ip -o link` inside).
fn links_inside(c: &E2eContainer<'_>) -> BTreeSet<String> {
    let out = c
        .exec(&["ip", "-o", "link", "show"])
        .expect_success(&format!("ip -o link show in {}", c.name()));
    // "2: eth0@if7: <...>" -> "eth0"
    out.stdout_str()
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect()
}

/// The tour: bridge + ping, published port, container-shared, none, host,
/// and nothing left once every container is gone.
fn tour(rt: Runtime) {
    let host = TestHost::new(&format!("e2e{}", rt.name()));
    let up = host.uplink();
    let token = format!("wirehook-e2e-{}-{}", rt.name(), host.name());

    // --- 1 + 2: two bridge containers; "web" serves HTTP on a published port.
    let web_id = host.unique_id("web");
    let mut web_ann = vec![
        ("io.wirehook.network", "bridge"),
        ("io.wirehook.ports", "8080:80"),
    ];
    // How the sharer names the owner: runc by id, crun by io.wirehook.name,
    // podman by podman's container name (wirehook learns it from conmon).
    if rt == Runtime::Crun {
        web_ann.push(("io.wirehook.name", "web"));
    }
    let web_b = bundle(
        &host,
        "web",
        &["httpd", "-f", "-p", "80", "-h", "/var/www"],
        &web_ann,
    );
    std::fs::write(
        web_b.rootfs().join("var/www/index.html"),
        format!("{token}\n"),
    )
    .unwrap();
    install(rt, &host, &web_b);
    let peer_id = host.unique_id("peer");
    let peer_b = bundle(
        &host,
        "peer",
        &["sleep", "3600"],
        &[("io.wirehook.network", "bridge")],
    );
    install(rt, &host, &peer_b);

    let web = E2eContainer::start(rt, &host, &web_b, &web_id);
    let peer = E2eContainer::start(rt, &host, &peer_b, &peer_id);

    let web_ip = web.ipv4("eth0").unwrap_or_else(|| {
        panic!(
            "expected eth0 with an IPv4 address in {web_id}: {:?}",
            web.link_names()
        )
    });
    let peer_ip = peer.ipv4("eth0").unwrap_or_else(|| {
        panic!(
            "expected eth0 with an IPv4 address in {peer_id}: {:?}",
            peer.link_names()
        )
    });
    assert_ne!(
        web_ip, peer_ip,
        "two bridge containers should get distinct addresses"
    );
    assert_eq!(
        web.link_names(),
        ["lo", "eth0"],
        "a bridge container should have lo and eth0"
    );
    let veths = host_veths(&host);
    assert_eq!(
        veths.len(),
        2,
        "expected one whv* veth per bridge container on the host, got {veths:?}"
    );
    for v in &veths {
        let l = host.link(v).unwrap();
        assert_eq!(
            l["master"], "wirehook0",
            "expected {v} to be a port of bridge wirehook0: {l}"
        );
    }
    assert_pings(
        &web,
        &peer_ip.to_string(),
        "bridge containers reach each other",
    );
    assert_pings(
        &peer,
        &web_ip.to_string(),
        "bridge containers reach each other",
    );
    assert_pings(
        &peer,
        &up.peer_addr().to_string(),
        "a bridge container reaches the LAN (masquerade)",
    );

    // Published port: from the host itself (loopback and its own LAN
    // address) and from another machine on the LAN.
    let ports = nft_map_elements(&host, "pub4_any").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        ports.len(),
        1,
        "expected one element in pub4_any for 8080:80, got {ports:?}"
    );
    let t = Duration::from_secs(5);
    for (from, addr) in [
        (
            host.netns_path().to_path_buf(),
            "127.0.0.1:8080".parse::<SocketAddr>().unwrap(),
        ),
        (
            host.netns_path().to_path_buf(),
            SocketAddr::new(IpAddr::V4(up.host_addr()), 8080),
        ),
        (
            up.peer_netns_path(),
            SocketAddr::new(IpAddr::V4(up.host_addr()), 8080),
        ),
    ] {
        let body = http_get(&from, addr, t)
            .unwrap_or_else(|e| panic!("published port 8080:80 should answer: {e}"));
        assert!(
            body.contains("200 OK") && body.contains(&token),
            "expected busybox httpd's page ({token}) through {addr} from {}, got:\n{body}",
            from.display()
        );
    }

    // --- 5: container-shared.
    let owner_key = match rt {
        Runtime::Runc => web_id.clone(),
        Runtime::Crun => "web".to_string(),
        Runtime::Podman => web.name().to_string(),
    };
    let share_value = format!("container:{owner_key}");
    let share_id = host.unique_id("share");
    let share_b = bundle(
        &host,
        "share",
        &["sleep", "3600"],
        &[("io.wirehook.network", &share_value)],
    );
    install(rt, &host, &share_b);
    if rt != Runtime::Podman {
        // prepare pointed the namespace at the owner's bind mount.
        let want = host.root().join("run/wirehook/netns").join(&web_id);
        assert_eq!(
            share_b.netns_entry(),
            NetNsEntry::Path(want.clone()),
            "prepare should set the sharer's network namespace path to {}",
            want.display()
        );
    }
    let share = E2eContainer::start(rt, &host, &share_b, &share_id);
    assert_eq!(
        share.netns_inode(),
        web.netns_inode(),
        "the {share_value} container should be in the owner's network namespace"
    );
    let seen = share
        .exec(&["ip", "-o", "-4", "addr", "show", "eth0"])
        .expect_success("ip addr show eth0 in the sharer");
    assert!(
        seen.stdout_str().contains(&format!("inet {web_ip}/")),
        "the sharer should see the owner's eth0 with {web_ip}, got:\n{}",
        seen.stdout_str()
    );
    let local = share
        .exec(&["wget", "-q", "-O", "-", "http://127.0.0.1:80/"])
        .expect_success("wget the owner's httpd on 127.0.0.1 from the sharer");
    assert!(
        local.stdout_str().contains(&token),
        "sharer reaches the owner's httpd on loopback: {}",
        local.stdout_str()
    );
    assert_eq!(host_veths(&host).len(), 2, "sharing makes no new veth");

    // --- 3: none.
    let none_id = host.unique_id("none");
    let none_b = bundle(
        &host,
        "none",
        &["sleep", "3600"],
        &[("io.wirehook.network", "none")],
    );
    install(rt, &host, &none_b);
    let none = E2eContainer::start(rt, &host, &none_b, &none_id);
    let links = none.kernel_json(&["ip", "-j", "link", "show"]);
    assert_eq!(
        link_names(&links),
        ["lo"],
        "a none container should have only lo: {links}"
    );
    assert!(
        links[0]["flags"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x == "UP")),
        "lo should be up in a none container: {links}"
    );
    assert_eq!(
        links_inside(&none),
        BTreeSet::from(["lo".to_string()]),
        "inside the none container only lo should show"
    );

    // --- 4: host.
    let hostm_id = host.unique_id("hostm");
    let hostm_b = bundle(
        &host,
        "hostm",
        &["sleep", "3600"],
        &[("io.wirehook.network", "host")],
    );
    install(rt, &host, &hostm_b);
    if rt != Runtime::Podman {
        assert_eq!(
            hostm_b.netns_entry(),
            NetNsEntry::Absent,
            "prepare should remove the network namespace entry for host mode"
        );
    }
    let hostm = E2eContainer::start(rt, &host, &hostm_b, &hostm_id);
    assert_eq!(
        hostm.netns_inode(),
        host.netns_inode(),
        "a host-mode container should be in the host's network namespace"
    );
    let host_links: BTreeSet<String> = link_names(&host.links_json()).into_iter().collect();
    assert!(host_links.contains("uplink0") && host_links.contains("wirehook0"));
    assert_eq!(
        links_inside(&hostm),
        host_links,
        "a host-mode container should see exactly the host's links"
    );

    // The records: one per container, in the right mode.
    let recs = ps(&host);
    assert_eq!(
        recs.len(),
        5,
        "expected five wirehook records, got {recs:#?}"
    );
    let (web_hid, share_hid) = (web.id(), share.id());
    for (id, mode) in [
        (&web_hid, "bridge"),
        (&peer.id(), "bridge"),
        (&share_hid, "container"),
        (&none.id(), "none"),
        (&hostm.id(), "host"),
    ] {
        assert_eq!(record(&recs, id)["mode"], mode, "mode of {id}");
    }
    assert_eq!(
        record(&recs, &share_hid)["shares_with"],
        web_hid.as_str(),
        "the sharer's record should name its owner"
    );
    if rt == Runtime::Podman {
        assert_eq!(
            record(&recs, &web_hid)["name"],
            web.name(),
            "wirehook should record podman's container name"
        );
    }

    // --- 6: stop everything. runc/crun: the owner goes first while its
    // sharer still holds the namespace (podman refuses that order: the
    // sharer depends on the owner).
    let stop = |c: E2eContainer<'_>| {
        let n = c.name().to_string();
        c.stop()
            .expect_success(&format!("{} deleting {n}", rt.name()));
    };
    let loopback: SocketAddr = "127.0.0.1:8080".parse().unwrap();
    if rt == Runtime::Podman {
        stop(share);
        stop(web);
    } else {
        stop(web);
        assert!(
            eventually(Duration::from_secs(5), || host_veths(&host).len() == 1),
            "the owner's veth should go when it stops, although its sharer keeps the namespace: {:?}",
            host_veths(&host)
        );
        let gone = share.exec(&["ip", "-o", "link", "show", "eth0"]);
        assert!(
            !gone.status.success(),
            "eth0 should be gone from the sharer's view:\n{}",
            gone.report()
        );
        stop(share);
    }
    assert!(
        eventually(Duration::from_secs(5), || {
            tcp_request(host.netns_path(), loopback, "x", Duration::from_millis(500)).is_err()
        }),
        "port 8080 should be closed once its container is gone"
    );
    stop(none);
    stop(hostm);
    stop(peer);
    assert_nothing_left(&host, &format!("all {} containers were deleted", rt.name()));
    let left = runtime_containers(rt, &host);
    assert!(
        left.is_empty(),
        "expected {} to know no containers any more, got {left:?}",
        rt.name()
    );
}

#[test]
fn runc_tour() {
    tour(Runtime::Runc);
}

#[test]
fn crun_tour() {
    tour(Runtime::Crun);
}

#[test]
fn podman_tour() {
    tour(Runtime::Podman);
}

/// A wirehook setup that fails makes the start fail with wirehook's line
/// in the runtime's error, and leaves nothing behind: an early failure
/// (unknown network) and a late one (a host port another container holds,
/// refused after the veth, address and route were made), while that other
/// container keeps its port.
fn failed_setup(rt: Runtime) {
    let host = TestHost::new(&format!("fail{}", rt.name()));
    let holder_id = host.unique_id("holder");
    let holder_b = bundle(
        &host,
        "holder",
        &["httpd", "-f", "-p", "80", "-h", "/var/www"],
        &[
            ("io.wirehook.network", "bridge"),
            ("io.wirehook.ports", "8080:80"),
        ],
    );
    std::fs::write(holder_b.rootfs().join("var/www/index.html"), "holder\n").unwrap();
    install(rt, &host, &holder_b);
    let holder = E2eContainer::start(rt, &host, &holder_b, &holder_id);
    let loopback: SocketAddr = "127.0.0.1:8080".parse().unwrap();
    http_get(host.netns_path(), loopback, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("the holder's published port should answer: {e}"));

    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 2] = [
        (
            "unknown",
            &[("io.wirehook.network", "nosuchnet")],
            "wirehook network create nosuchnet",
        ),
        (
            "clash",
            &[
                ("io.wirehook.network", "bridge"),
                ("io.wirehook.ports", "8080:80"),
            ],
            "already published",
        ),
    ];
    for (tag, ann, want) in cases {
        let id = host.unique_id(tag);
        let hook_err = host.root().join(format!("{tag}.hook-stderr"));
        let mut ann = ann.to_vec();
        let hook_err_s = hook_err.to_str().unwrap().to_string();
        if rt == Runtime::Crun {
            // crun shows no hook output unless told where to keep it.
            ann.push(("run.oci.hooks.stderr", &hook_err_s));
        }
        let b = bundle(&host, tag, &["sleep", "3600"], &ann);
        install(rt, &host, &b);
        let (out, guard) = E2eContainer::launch(rt, &host, &b, &id);
        let out = out.expect_failure(&format!("{} starting {id} with {ann:?}", rt.name()));
        let err = out.stderr_str();
        let line = match rt {
            // runc / podman: "... stderr: wirehook: <message>"
            Runtime::Runc | Runtime::Podman => err
                .split("stderr: ")
                .last()
                .unwrap_or("")
                .trim()
                .trim_end_matches('"')
                .trim_end_matches("\\n") // runc's log quotes the newline
                .to_string(),
            // crun: "error executing hook `PATH` (exit code: 1)"; the line
            // is in the file named by run.oci.hooks.stderr.
            Runtime::Crun => {
                assert!(
                    err.contains("error executing hook") && err.contains("wirehook"),
                    "expected crun to report the failing wirehook hook, got:\n{err}"
                );
                std::fs::read_to_string(&hook_err)
                    .unwrap_or_default()
                    .trim()
                    .to_string()
            }
        };
        assert!(
            line.starts_with("wirehook: ")
                && line.contains(want)
                && !line.contains('\n')
                && !line.contains("\\n"),
            "expected wirehook's one-line message containing {want:?} in {}'s error output, got:\n\
             runtime stderr:\n{err}\nextracted: {line:?}",
            rt.name()
        );
        let log = std::fs::read_to_string(host.root().join("run/wirehook/wirehook.log"))
            .unwrap_or_default();
        assert!(
            log.lines().any(|l| l.contains(want)),
            "expected wirehook's log to keep the failure ({want:?}):\n{log}"
        );
        // podman keeps a container that failed to start (state Created);
        // `podman rm` runs no poststop then. runc and crun keep nothing.
        if rt == Runtime::Podman {
            guard
                .stop()
                .expect_success("podman rm of the container that failed to start");
        } else {
            drop(guard);
        }
        let left: Vec<String> = runtime_containers(rt, &host)
            .into_iter()
            .filter(|n| *n != holder_id)
            .collect();
        assert!(
            left.is_empty(),
            "expected {} to keep no failed container, got {left:?}",
            rt.name()
        );
        let veths = host_veths(&host);
        assert_eq!(
            veths.len(),
            1,
            "a failed setup should leave only the holder's veth, got {veths:?}"
        );
        let ports = nft_map_elements(&host, "pub4_any").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            ports.len(),
            1,
            "the failed setup should leave the holder's port element alone: {ports:?}"
        );
        let body =
            http_get(host.netns_path(), loopback, Duration::from_secs(2)).unwrap_or_else(|e| {
                panic!("the holder's port should still answer after {tag} failed: {e}")
            });
        assert!(
            body.contains("holder"),
            "port 8080 should still reach the holder, got:\n{body}"
        );
        assert_eq!(
            ps(&host).len(),
            1,
            "only the holder should have a wirehook record after {tag} failed"
        );
        let lease_dir = host.root().join("run/wirehook/leases/bridge");
        let leases: Vec<String> = std::fs::read_dir(&lease_dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.'))
            .collect();
        assert_eq!(
            leases.len(),
            1,
            "only the holder's address lease should be left in {} after {tag} failed, got {leases:?}",
            lease_dir.display()
        );
    }
    holder
        .stop()
        .expect_success(&format!("{} deleting {holder_id}", rt.name()));
    assert_nothing_left(
        &host,
        &format!("failed {} starts and deleting the holder", rt.name()),
    );
}

#[test]
fn runc_failed_setup_aborts_the_start_and_leaves_nothing() {
    failed_setup(Runtime::Runc);
}

#[test]
fn crun_failed_setup_aborts_the_start_and_leaves_nothing() {
    failed_setup(Runtime::Crun);
}

#[test]
fn podman_failed_setup_aborts_the_start_and_leaves_nothing() {
    failed_setup(Runtime::Podman);
}
