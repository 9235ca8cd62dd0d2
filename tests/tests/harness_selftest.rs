//! Proves the harness itself: hosts appear and vanish (also after a panic),
//! bare containers get namespaces of their own, the uplink carries traffic,
//! and runc, crun and podman start and stop busybox containers inside a test
//! host with their hooks called at createRuntime and poststop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use wirehook_tests::sys::{self, netns_in_use};
use wirehook_tests::*;

/// What a host leaves behind after drop (nothing, we hope).
struct Traces {
    name: String,
    netns: PathBuf,
    root: PathBuf,
    inode: u64,
}

impl Traces {
    fn of(h: &TestHost) -> Traces {
        Traces {
            name: h.name().to_string(),
            netns: h.netns_path().to_path_buf(),
            root: h.root().to_path_buf(),
            inode: h.netns_inode(),
        }
    }

    fn assert_gone(&self) {
        let list = std::process::Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap();
        let list = String::from_utf8_lossy(&list.stdout);
        assert!(
            !list.split_whitespace().any(|n| n == self.name),
            "netns {} still listed:\n{list}",
            self.name
        );
        assert!(
            !self.netns.exists(),
            "{} still exists",
            self.netns.display()
        );
        assert!(!self.root.exists(), "{} still exists", self.root.display());
        assert!(
            sys::mounts_under(&self.root).is_empty(),
            "mounts left under {}",
            self.root.display()
        );
        assert!(
            !netns_in_use(self.inode),
            "a process is still in the namespace of {}",
            self.name
        );
    }
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn host_is_created_and_destroyed() {
    let traces;
    {
        let host = TestHost::new("life");
        traces = Traces::of(&host);
        assert!(host.netns_path().exists());
        assert!(host.name().starts_with("wh-life-"));
        // lo is up, the root is a tmpfs of its own.
        let lo = host.link("lo").expect("lo");
        assert!(
            lo["flags"].as_array().unwrap().iter().any(|f| f == "UP"),
            "lo not up: {lo}"
        );
        let m = sys::mounts_under(host.root());
        assert!(
            m.iter()
                .any(|m| m.mount_point == host.root() && m.fstype == "tmpfs"),
            "{m:?}"
        );
        // Commands run in the host namespace, not ours.
        let ino = host
            .sh("readlink /proc/self/ns/net")
            .expect_success("readlink");
        assert_eq!(
            ino.stdout_str().trim(),
            format!("net:[{}]", host.netns_inode())
        );
        assert_ne!(
            host.netns_inode(),
            sys::netns_inode_of_pid(std::process::id() as i32).unwrap()
        );
        // A process left running in the namespace, and a bind mount below
        // the root (as wirehook makes), must not survive the drop.
        let mut bg = host.command(&["sleep", "3600"]);
        bg.stdin(std::process::Stdio::null());
        let child = bg.spawn().unwrap();
        let target = host.root().join("run/wirehook/netns/x");
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(&target, "").unwrap();
        host.exec(&[
            "mount",
            "--bind",
            host.netns_path().to_str().unwrap(),
            target.to_str().unwrap(),
        ])
        .expect_success("bind mount");
        std::mem::forget(child);
        assert_eq!(
            host.nft_json()["nftables"].as_array().map(|a| a.len()),
            Some(1),
            "fresh host has an empty ruleset (metainfo only)"
        );
    }
    traces.assert_gone();
}

#[test]
fn host_is_destroyed_after_a_panic() {
    let seen: Mutex<Option<(Traces, i32, String)>> = Mutex::new(None);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let host = TestHost::new("panic");
        let c = host.container("c");
        let up = host.uplink();
        *seen.lock().unwrap() = Some((Traces::of(&host), c.pid(), up.peer_name().to_string()));
        panic!("deliberate panic inside the test body");
    }));
    assert!(r.is_err(), "the body panicked");
    let (traces, pid, peer) = seen.into_inner().unwrap().unwrap();
    traces.assert_gone();
    assert!(!sys::alive(pid), "container process {pid} survived");
    assert!(
        !Path::new("/run/netns").join(&peer).exists(),
        "peer {peer} survived"
    );
}

#[test]
fn container_has_its_own_namespace() {
    let host = TestHost::new("ctr");
    let c = host.container("a");
    let d = host.container("b");
    let me = sys::netns_inode_of_pid(std::process::id() as i32).unwrap();
    assert_ne!(c.netns_inode(), host.netns_inode());
    assert_ne!(c.netns_inode(), me);
    assert_ne!(c.netns_inode(), d.netns_inode());
    assert_eq!(sys::ns_inode(&c.netns_path()), Some(c.netns_inode()));
    // Only a loopback, and it is down (the hook must bring it up).
    let links = c.links_json();
    let names: Vec<&str> = links
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["ifname"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["lo"]);
    assert_eq!(links[0]["operstate"], "DOWN");
    let out = c
        .sh("readlink /proc/self/ns/net")
        .expect_success("exec in container");
    assert_eq!(
        out.stdout_str().trim(),
        format!("net:[{}]", c.netns_inode())
    );

    // The hook's inputs.
    let ann = [("io.wirehook.network", "bridge")];
    let bundle = c.bundle(NetNsEntry::Fresh);
    let state: serde_json::Value =
        serde_json::from_str(&c.state_json(c.id(), "creating", &ann, &bundle)).unwrap();
    assert_eq!(state["id"], c.id());
    assert_eq!(state["pid"], c.pid());
    assert_eq!(state["status"], "creating");
    assert_eq!(state["bundle"], bundle.to_str().unwrap());
    assert_eq!(state["annotations"]["io.wirehook.network"], "bridge");
    let poststop: serde_json::Value =
        serde_json::from_str(&oci_state(c.id(), "stopped", None, &bundle, &ann)).unwrap();
    assert!(poststop.get("pid").is_none());

    // config.json parses with oci-spec (as the hook reads it), in all three
    // shapes.
    for (i, entry) in [
        NetNsEntry::Fresh,
        NetNsEntry::Path(d.netns_path()),
        NetNsEntry::Absent,
    ]
    .into_iter()
    .enumerate()
    {
        let dir = host.root().join(format!("minimal-{i}"));
        write_minimal_bundle(&dir, &entry, &ann);
        let spec = oci_spec::runtime::Spec::load(dir.join("config.json")).expect("oci-spec parses");
        let nets: Vec<_> = spec
            .linux()
            .as_ref()
            .unwrap()
            .namespaces()
            .as_ref()
            .unwrap()
            .iter()
            .filter(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::Network)
            .map(|n| n.path().clone())
            .collect();
        match &entry {
            NetNsEntry::Fresh => assert_eq!(nets, vec![None]),
            NetNsEntry::Path(p) => assert_eq!(nets, vec![Some(p.clone())]),
            NetNsEntry::Absent => assert!(nets.is_empty()),
        }
        let cfg: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
        assert_eq!(NetNsEntry::from_config(&cfg), entry);
    }

    // Killing the container ends its process.
    let mut c = c;
    let pid = c.pid();
    c.kill();
    assert!(!sys::alive(pid));
}

#[test]
fn uplink_carries_traffic_and_shows_source_addresses() {
    let host = TestHost::new("uplink");
    let up = host.uplink();
    assert_eq!(up.host_ifname(), "uplink0");
    assert_eq!(up.subnet(), "198.51.100.0/24");
    host.exec(&["ping", "-c1", "-W2", &up.peer_addr().to_string()])
        .expect_success("host pings the peer");
    up.exec(&["ping", "-c1", "-W2", &up.host_addr().to_string()])
        .expect_success("peer pings the host");
    // The host's default route leads to the peer; the peer has none.
    let routes = host.sh("ip route show default").expect_success("routes");
    assert!(
        routes.stdout_str().contains("via 198.51.100.2 dev uplink0"),
        "{}",
        routes.stdout_str()
    );
    let routes = up.sh("ip route show default").expect_success("routes");
    assert_eq!(routes.stdout_str().trim(), "");

    // TCP and UDP from the host to the peer: the peer sees 198.51.100.1.
    let srv = up.echo_server(7000);
    let reply = tcp_request(
        host.netns_path(),
        SocketAddr::from((up.peer_addr(), 7000)),
        "hello\n",
        Duration::from_secs(5),
    )
    .expect("tcp request");
    assert!(reply.starts_with("198.51.100.1:"), "{reply}");
    assert!(reply.ends_with(" hello\n"), "{reply}");
    assert_eq!(srv.clients().len(), 1);
    let usrv = up.udp_echo_server(7001);
    let reply = udp_request(
        host.netns_path(),
        SocketAddr::from((up.peer_addr(), 7001)),
        "dgram",
        Duration::from_secs(5),
    )
    .expect("udp request");
    assert!(
        reply.starts_with("198.51.100.1:") && reply.ends_with(" dgram"),
        "{reply}"
    );
    assert_eq!(usrv.clients().len(), 1);

    // The other direction: a server in the host, the peer as client.
    let hsrv = EchoServer::tcp(host.netns_path(), "0.0.0.0:8080".parse().unwrap());
    let reply = up
        .tcp_request(SocketAddr::from((up.host_addr(), 8080)), "x")
        .unwrap();
    assert!(reply.starts_with("198.51.100.2:"), "{reply}");
    drop(hsrv);

    // A second uplink on another range, without a default route.
    let up1 = host.uplink_n(1);
    assert_eq!(up1.subnet(), "203.0.113.0/24");
    host.exec(&["ping", "-c1", "-W2", "203.0.113.2"])
        .expect_success("ping peer 1");
    // A container of the host cannot reach the peer without wiring.
    let c = host.container("iso");
    c.exec(&["ping", "-c1", "-W1", &up.peer_addr().to_string()])
        .expect_failure("unwired container reaches nothing");
    // Sockets hold their namespace: stop the servers before the peer goes.
    drop((srv, usrv));
    let peer = up.peer_netns_path();
    drop(up);
    assert!(!peer.exists(), "uplink peer deleted on drop");
    // The kernel destroys a namespace (and its veth ends) asynchronously.
    wait_until("uplink0 to vanish", Duration::from_secs(5), || {
        host.link("uplink0").is_none()
    });
}

#[test]
fn wirehook_runs_in_the_host_namespace_with_its_root() {
    let host = TestHost::new("bin");
    // A stand-in for the binary, so this test does not need wirehook built.
    let fake = host.root().join("fake-wirehook");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho \"args=$* root=$WIREHOOK_ROOT cwd=$(pwd) net=$(readlink /proc/self/ns/net)\"\ncat\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = host
        .run_bin_as_hook(
            &fake,
            &["hook", "createRuntime"],
            Some("{\"id\":\"x\"}"),
            &[],
        )
        .expect_success("fake wirehook");
    assert_eq!(
        out.stdout_str(),
        format!(
            "args=hook createRuntime root={} cwd=/ net=net:[{}]\n{{\"id\":\"x\"}}",
            host.root().display(),
            host.netns_inode()
        )
    );
    // The real binary is looked up next to the test executable.
    let exe = std::env::current_exe().unwrap();
    let expected = exe.parent().unwrap().parent().unwrap().join("wirehook");
    if expected.exists() {
        assert_eq!(TestHost::wirehook_bin(), expected);
    } else {
        let err = std::panic::catch_unwind(TestHost::wirehook_bin).unwrap_err();
        let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(
            msg.contains("build it first: cargo build --workspace"),
            "{msg}"
        );
    }
}

#[test]
fn commands_that_hang_are_killed() {
    let host = TestHost::new("hang");
    let t = Instant::now();
    let out = wirehook_tests::cmd::run(
        &mut host.command(&["sleep", "30"]),
        None,
        Duration::from_millis(300),
    );
    assert!(!out.status.success());
    assert!(out.stderr_str().contains("timed out"), "{}", out.report());
    assert!(t.elapsed() < Duration::from_secs(10));
}

/// Starts a busybox container under `rt` inside a test host with the dummy
/// hook at createRuntime, prestart and poststop; checks what the hook saw;
/// stops it; checks poststop. Prints what the runtime passed.
fn runtime_round_trip(rt: Runtime) {
    let host = TestHost::new(rt.name());
    let name = host.unique_id("bb");
    let hook = DummyHook::new(&host.root().join("hook"));
    let bundle = Bundle::busybox(
        &host.root().join("bundle"),
        &["sleep", "3600"],
        &[
            ("io.wirehook.network", "selftest"),
            ("org.example.other", "1"),
        ],
    );
    hook.install(
        rt,
        &host,
        &bundle,
        &["createRuntime", "prestart", "poststop"],
    );

    let t = Instant::now();
    let ctr = rt.start(&host, &bundle, &name);
    let start_time = t.elapsed();
    let pid = ctr.pid();
    let id = ctr.id();

    // The container runs busybox in a namespace of its own; ping works
    // (CAP_NET_RAW) on its loopback, which the runtime brought up.
    let out = ctr.exec(&["echo", "hi"]).expect_success("exec echo");
    assert_eq!(out.stdout_str(), "hi\n");
    let ctr_ns = sys::netns_inode_of_pid(pid).unwrap();
    assert_ne!(ctr_ns, host.netns_inode());
    ctr.exec(&["ping", "-c1", "-W2", "127.0.0.1"])
        .expect_success("busybox ping inside the container");

    let setup = hook.wait_for("createRuntime", Duration::from_secs(5));
    let prestart = hook.wait_for("prestart", Duration::from_secs(5));
    for call in [&setup, &prestart] {
        let st = call.state();
        assert_eq!(st["id"], id.as_str());
        assert_eq!(st["pid"], pid, "{}", call.stdin);
        assert_eq!(st["annotations"]["io.wirehook.network"], "selftest");
        assert!(
            ["creating", "created"].contains(&st["status"].as_str().unwrap()),
            "{st}"
        );
        // Hooks run in the runtime's namespace: the test host's.
        assert_eq!(call.netns_inode(), Some(host.netns_inode()), "hook netns");
        assert_eq!(call.env_var("DUMMY"), Some("1"));
    }
    let entry = NetNsEntry::from_config(setup.config.as_ref().expect("config.json copied"));
    let links = ctr.exec(&["ip", "-o", "link"]).expect_success("ip link");
    eprintln!(
        "[{}] config.json network entry at createRuntime: {entry:?}\n[{}] links inside: {}",
        rt.name(),
        rt.name(),
        links.stdout_str().trim()
    );
    eprintln!(
        "[{}] start took {start_time:?}\n[{}] createRuntime: argv={:?} cwd={} env={:?}\n  parent={:?}\n  grandparent={:?}\n  stdin={}",
        rt.name(), rt.name(), setup.argv, setup.cwd, setup.env, setup.parent, setup.grandparent, setup.stdin
    );

    let t = Instant::now();
    ctr.stop().expect_success("kill and delete");
    let stop_time = t.elapsed();
    let post = hook.wait_for("poststop", Duration::from_secs(10));
    let st = post.state();
    assert_eq!(st["id"], id.as_str());
    assert_eq!(st["status"], "stopped");
    assert_eq!(st["annotations"]["io.wirehook.network"], "selftest");
    assert_eq!(post.netns_inode(), Some(host.netns_inode()));
    eprintln!(
        "[{}] stop took {stop_time:?}\n[{}] poststop: cwd={} env={:?}\n  parent={:?}\n  stdin={}",
        rt.name(),
        rt.name(),
        post.cwd,
        post.env,
        post.parent,
        post.stdin
    );
    assert!(!sys::alive(pid), "container process gone");
    wait_until("container namespace gone", Duration::from_secs(5), || {
        !netns_in_use(ctr_ns)
    });
    assert_eq!(hook.calls_for("poststop").len(), 1, "poststop once");
}

#[test]
fn runc_runs_busybox_with_hooks() {
    runtime_round_trip(Runtime::Runc);
}

#[test]
fn crun_runs_busybox_with_hooks() {
    runtime_round_trip(Runtime::Crun);
}

#[test]
fn podman_runs_busybox_with_hooks() {
    runtime_round_trip(Runtime::Podman);
}

#[test]
fn failing_create_hook_aborts_the_start() {
    for rt in Runtime::ALL {
        let host = TestHost::new("fail");
        let hook = DummyHook::new(&host.root().join("hook"));
        let bundle = Bundle::busybox(
            &host.root().join("bundle"),
            &["sleep", "3600"],
            &[("io.wirehook.network", "x")],
        );
        hook.install(rt, &host, &bundle, &["createRuntime", "poststop"]);
        hook.fail_stage("createRuntime");
        let id = host.unique_id("f");
        let out = rt.run_detached(&host, &bundle, &id);
        assert!(
            !out.status.success(),
            "{}: start should fail\n{}",
            rt.name(),
            out.report()
        );
        // runc and podman quote the hook's stderr in their error; crun 1.8
        // only names the hook and its exit code.
        let expect = match rt {
            Runtime::Crun => "(exit code: 3)",
            _ => "failing at stage createRuntime",
        };
        assert!(
            out.stderr_str().contains(expect),
            "{}: the runtime's error should contain {expect:?}\n{}",
            rt.name(),
            out.report()
        );
        // Nothing is left running.
        assert!(
            rt.pid(&host, &id).is_none(),
            "{}: container runs after a failed start",
            rt.name()
        );
        // Whether poststop follows a failed create differs (see RUNTIMES.md);
        // give a background clean-up a moment, then report.
        std::thread::sleep(Duration::from_millis(300));
        eprintln!(
            "[{}] failed start: {}; {}; poststop calls after it: {}",
            rt.name(),
            out.status,
            out.stderr_str().trim(),
            hook.calls_for("poststop").len()
        );
    }
}

#[test]
fn dropping_the_host_deletes_runtime_containers() {
    let mut pids = Vec::new();
    let traces;
    {
        let host = TestHost::new("leak");
        traces = Traces::of(&host);
        for rt in Runtime::ALL {
            let bundle = Bundle::busybox(
                &host.root().join(format!("bundle-{}", rt.name())),
                &["sleep", "3600"],
                &[],
            );
            let id = host.unique_id(rt.name());
            rt.run_detached(&host, &bundle, &id).expect_success("start");
            pids.push(rt.pid(&host, &id).expect("running"));
        }
    }
    traces.assert_gone();
    for p in pids {
        assert!(!sys::alive(p), "container process {p} survived the host");
    }
}

/// A hook that bind-mounts the container's namespace below the root, as
/// wirehook does: the mount must be visible to the test (also for crun, which
/// the harness runs in a mount namespace of its own), keep the namespace
/// alive after the container is gone, and vanish with the host.
#[test]
fn hook_bind_mounts_reach_the_test_and_are_cleaned_up() {
    for rt in Runtime::ALL {
        let traces;
        {
            let host = TestHost::new("mnt");
            traces = Traces::of(&host);
            let script = host.root().join("mount-hook");
            std::fs::write(
                &script,
                format!(
                    "#!/bin/sh\nset -e\nstate=$(cat)\n\
                     pid=$(echo \"$state\" | sed -n 's/.*\"pid\":\\([0-9]*\\).*/\\1/p')\n\
                     id=$(echo \"$state\" | sed -n 's/.*\"id\":\"\\([^\"]*\\)\".*/\\1/p')\n\
                     d={}/run/wirehook/netns\nmkdir -p $d\ntouch $d/$id\n\
                     mount --bind /proc/$pid/ns/net $d/$id\n",
                    host.root().display()
                ),
            )
            .unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
            let bundle = Bundle::busybox(
                &host.root().join("bundle"),
                &["sleep", "3600"],
                &[("io.wirehook.network", "x")],
            );
            rt.add_hook(
                &host,
                &bundle,
                "createRuntime",
                &script,
                &["mount-hook"],
                &[wirehook_tests::runtime::HOOK_PATH],
                Some(10),
            );
            let ctr = rt.start(&host, &bundle, &host.unique_id("m"));
            let ns = sys::netns_inode_of_pid(ctr.pid()).unwrap();
            let handle = host.root().join("run/wirehook/netns").join(ctr.id());
            let mounts = sys::mounts_under(host.root());
            assert!(
                mounts
                    .iter()
                    .any(|m| m.mount_point == handle && m.fstype == "nsfs"),
                "{}: the hook's bind mount is not visible here: {mounts:?}",
                rt.name()
            );
            assert_eq!(sys::ns_inode(&handle), Some(ns), "{}", rt.name());
            ctr.stop().expect_success("stop");
            // The process is gone; the namespace lives on through the mount.
            assert_eq!(sys::ns_inode(&handle), Some(ns), "{}", rt.name());
        }
        traces.assert_gone();
    }
}

/// The bundle's network entry decides the container's namespace under every
/// runtime: absent → the host's, a path → that one (podman: `--network host`
/// and `--network ns:PATH`).
#[test]
fn every_runtime_honours_the_bundle_network_entry() {
    let host = TestHost::new("nsent");
    let other = host.container("other");
    for rt in Runtime::ALL {
        for (tag, entry, want) in [
            ("host", NetNsEntry::Absent, host.netns_inode()),
            (
                "path",
                NetNsEntry::Path(other.netns_path()),
                other.netns_inode(),
            ),
        ] {
            let bundle = Bundle::busybox(
                &host.root().join(format!("bundle-{}-{tag}", rt.name())),
                &["sleep", "3600"],
                &[],
            );
            bundle.set_netns(&entry);
            assert_eq!(bundle.netns_entry(), entry);
            let ctr = rt.start(
                &host,
                &bundle,
                &host.unique_id(&format!("{}-{tag}", rt.name())),
            );
            assert_eq!(
                sys::netns_inode_of_pid(ctr.pid()),
                Some(want),
                "{} with {entry:?}",
                rt.name()
            );
            ctr.stop().expect_success("stop");
        }
    }
}
