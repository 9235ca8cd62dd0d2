//! none, host and container:<x> modes through the hook, and `prepare`.

mod support;

use std::process::{Command, Stdio};

use support::*;
use wirehook_tests::*;

#[test]
fn none_has_only_loopback_up() {
    let host = TestHost::new("none");
    let c = host.container("n");
    wire(&host, &c, &[("io.wirehook.network", "none")]);
    let links = c.links_json();
    let links = links.as_array().unwrap();
    assert_eq!(links.len(), 1, "{links:?}");
    assert_eq!(links[0]["ifname"], "lo");
    assert!(
        links[0]["flags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "UP"),
        "lo is up"
    );
    assert!(c
        .exec(&["ping", "-c1", "-W1", "127.0.0.1"])
        .status
        .success());
    let ps = host
        .wirehook(&["ps"], None)
        .expect_success("ps")
        .stdout_str();
    assert!(ps.contains(c.id()) && ps.contains("none"), "{ps}");
    // Kept reachable by path, like `ip netns`.
    let mount = run_dir(&host).join("netns").join(c.id());
    assert_eq!(wirehook_tests::sys::ns_inode(&mount), Some(c.netns_inode()));
    unwire(&host, c.id());
    assert_clean(&host);
}

/// A process that stays in the test host's own namespace (host mode).
fn host_process(host: &TestHost) -> std::process::Child {
    let p = host
        .command(&["sleep", "600"])
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn sleep in the host ns");
    wait_until_in(p.id(), host.netns_inode(), "the host's namespace");
    p
}

/// Wait until process `pid` is in the namespace with inode `ns`. A pid
/// spawned through `nsenter` is nsenter's, which enters only after it has
/// started: a loaded machine showed the hook looking first.
fn wait_until_in(pid: u32, ns: u64, what: &str) {
    assert!(
        wirehook_tests::cluster::eventually(std::time::Duration::from_secs(30), || {
            wirehook_shared::netns::inode_of_pid(pid as i32) == Some(ns)
        }),
        "process {pid} never entered {what}"
    );
}

#[test]
fn host_mode_is_verified_and_recorded() {
    let host = TestHost::new("hostm");
    let mut p = host_process(&host);
    let id = host.unique_id("h");
    let bundle = write_minimal_bundle(&host.root().join("hb"), &NetNsEntry::Absent, &[]);
    let ann = [("io.wirehook.network", "host")];
    host.wirehook_hook(
        "createRuntime",
        &oci_state(&id, "creating", Some(p.id() as i32), &bundle, &ann),
    )
    .expect_success("host mode setup");
    let ps = host
        .wirehook(&["ps", "--json"], None)
        .expect_success("ps")
        .stdout_str();
    assert!(ps.contains("\"mode\": \"host\""), "{ps}");
    assert!(
        links_with_prefix(&host, "whv").is_empty(),
        "host mode makes no links"
    );
    unwire(&host, &id);
    assert_clean(&host);

    // A container that got its own namespace cannot be host mode.
    let c = host.container("fresh");
    let out = setup(&host, &c, &ann).expect_failure("host mode in a fresh namespace");
    let err = out.stderr_str();
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("wirehook prepare") && err.contains("--network host"),
        "says how to fix: {err}"
    );
    assert_clean(&host);
    let _ = p.kill();
    let _ = p.wait();
}

#[test]
fn container_mode_shares_the_owners_namespace() {
    let host = TestHost::new("share");
    let owner = host.container("own");
    wire(
        &host,
        &owner,
        &[
            ("io.wirehook.network", "bridge"),
            ("io.wirehook.name", "db"),
        ],
    );
    let owner_ip = ipv4_of(&owner);

    // The sharer lives in the owner's namespace (what `prepare` arranges).
    let mut sharer = Command::new("nsenter")
        .arg(format!("--net={}", owner.netns_path().display()))
        .args(["sleep", "600"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let owner_ns = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(owner.netns_path()).unwrap().ino()
    };
    wait_until_in(sharer.id(), owner_ns, "the owner's namespace");
    let sid = host.unique_id("sh");
    let bundle = write_minimal_bundle(&host.root().join("sb"), &NetNsEntry::Fresh, &[]);
    for key in ["db", owner.id()] {
        let ann = [("io.wirehook.network", &*format!("container:{key}"))];
        host.wirehook_hook(
            "createRuntime",
            &oci_state(&sid, "creating", Some(sharer.id() as i32), &bundle, &ann),
        )
        .expect_success(&format!("container:{key}"));
        let ps = host
            .wirehook(&["ps"], None)
            .expect_success("ps")
            .stdout_str();
        assert!(ps.contains("container:"), "{ps}");
        // The sharer sees the owner's eth0 and address.
        let seen = Command::new("nsenter")
            .arg(format!("--net=/proc/{}/ns/net", sharer.id()))
            .args(["ip", "-4", "-o", "addr", "show", "eth0"])
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&seen.stdout).contains(&owner_ip.to_string()));
        // Its teardown never touches the owner's wiring.
        unwire(&host, &sid);
        assert_eq!(ipv4_of(&owner), owner_ip, "owner keeps its address");
        assert_eq!(
            links_with_prefix(&host, "whv").len(),
            1,
            "owner keeps its veth"
        );
    }

    // A container in another namespace is refused, with the fix.
    let stranger = host.container("str");
    let out = setup(&host, &stranger, &[("io.wirehook.network", "container:db")])
        .expect_failure("wrong ns");
    assert!(
        out.stderr_str().contains("wirehook prepare"),
        "{}",
        out.stderr_str()
    );
    let out = setup(
        &host,
        &stranger,
        &[("io.wirehook.network", "container:nosuch")],
    )
    .expect_failure("no owner");
    assert!(out.stderr_str().contains("nosuch"), "{}", out.stderr_str());

    let _ = sharer.kill();
    let _ = sharer.wait();
    unwire(&host, owner.id());
    assert_clean(&host);
}

#[test]
fn prepare_edits_config_json_idempotently() {
    let host = TestHost::new("prep");
    let dir = host.root().join("pb");
    let bundle = Bundle::busybox(&dir, &["sleep", "60"], &[("io.wirehook.network", "bridge")]);
    let before = bundle.config();
    let dirs = dir.to_str().unwrap();
    host.wirehook(&["prepare", dirs], None)
        .expect_success("prepare");
    let once = std::fs::read(bundle.config_path()).unwrap();
    host.wirehook(&["prepare", dirs], None)
        .expect_success("prepare again");
    assert_eq!(
        once,
        std::fs::read(bundle.config_path()).unwrap(),
        "idempotent"
    );
    let cfg = bundle.config();
    for stage in ["createRuntime", "poststop"] {
        let hooks = cfg["hooks"][stage].as_array().unwrap();
        assert_eq!(hooks.len(), 1, "{stage}: {hooks:?}");
        assert_eq!(hooks[0]["path"], TestHost::wirehook_bin().to_str().unwrap());
    }
    // Everything else as it was; the mounts gain /etc/resolv.conf (names).
    for key in ["process", "root", "annotations", "ociVersion"] {
        assert_eq!(cfg[key], before[key], "{key} unchanged");
    }
    let mut mounts = cfg["mounts"].as_array().unwrap().clone();
    let resolv = mounts.pop().unwrap();
    assert_eq!(resolv["destination"], "/etc/resolv.conf");
    assert_eq!(serde_json::Value::Array(mounts), before["mounts"]);
    assert_eq!(bundle.netns_entry(), NetNsEntry::Fresh);

    // host: the network namespace entry goes, and the resolv.conf mount.
    bundle.set_annotation("io.wirehook.network", "host");
    host.wirehook(&["prepare", dirs], None)
        .expect_success("prepare host");
    assert_eq!(bundle.netns_entry(), NetNsEntry::Absent);
    assert_eq!(bundle.config()["mounts"], before["mounts"]);

    // container:X points at X's namespace bind mount.
    let owner = host.container("o");
    wire(
        &host,
        &owner,
        &[
            ("io.wirehook.network", "none"),
            ("io.wirehook.name", "owner"),
        ],
    );
    bundle.set_annotation("io.wirehook.network", "container:owner");
    host.wirehook(&["prepare", dirs], None)
        .expect_success("prepare container:");
    let want = run_dir(&host).join("netns").join(owner.id());
    assert_eq!(bundle.netns_entry(), NetNsEntry::Path(want));

    // No annotation: a clear error, file untouched.
    let plain = Bundle::busybox(&host.root().join("plain"), &["true"], &[]);
    let orig = std::fs::read(plain.config_path()).unwrap();
    let out = host
        .wirehook(&["prepare", plain.dir().to_str().unwrap()], None)
        .expect_failure("no annotation");
    assert!(
        out.stderr_str().contains("io.wirehook.network"),
        "{}",
        out.stderr_str()
    );
    assert_eq!(orig, std::fs::read(plain.config_path()).unwrap());
    unwire(&host, owner.id());
}
