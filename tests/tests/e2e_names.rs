//! End-to-end names: real runc and crun start busybox containers after
//! `wirehook prepare`, and the containers' own programs (`nslookup`,
//! `wget`, `ping`) find each other by name through their own `/etc/resolv.conf`
//! and a container on another network gets NXDOMAIN for them (both ways)
//! (the file `prepare` bind-mounts: nameserver 127.0.0.11). A stopped
//! container's name is gone within a second, and so is that of a container
//! whose process was killed without a poststop.
//!
//! podman runs with the shipped hooks.d files and `--network none`, which
//! leaves the image's `/etc/resolv.conf` alone: the image here has one
//! naming an unreachable server, and `hooks.d/wirehook-resolv.json`'s
//! createContainer stage must replace it. A second podman test gives the
//! image a hostile `/etc/resolv.conf` (a symlink out of the root) and checks
//! that the host's file is untouched.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use wirehook_tests::e2e::*;
use wirehook_tests::*;

fn bundle(host: &TestHost, tag: &str, args: &[&str], annotations: &[(&str, &str)]) -> Bundle {
    Bundle::busybox(&host.root().join(tag), args, annotations)
}

/// `nslookup NAME` inside `c` through its /etc/resolv.conf: everything it
/// printed. (busybox tries every search domain and prints each answer.)
fn nslookup(c: &E2eContainer<'_>, name: &str) -> String {
    let out = c.exec(&["nslookup", name]);
    format!("{}{}", out.stdout_str(), out.stderr_str())
}

/// The container's own `/etc/resolv.conf` names the resolver.
fn assert_resolv_conf_names_the_resolver(c: &E2eContainer<'_>) {
    let rc = c
        .exec(&["cat", "/etc/resolv.conf"])
        .expect_success("cat /etc/resolv.conf");
    assert!(
        rc.stdout_str().contains("nameserver 127.0.0.11"),
        "{}'s /etc/resolv.conf does not name the resolver:\n{}",
        c.name(),
        rc.stdout_str()
    );
}

/// Does `name` resolve to `ip` from `c`?
fn resolves(c: &E2eContainer<'_>, name: &str, ip: Ipv4Addr) -> bool {
    nslookup(c, name).contains(&format!("Address: {ip}"))
}

fn names(rt: Runtime) {
    let host = TestHost::new(&format!("e2ens{}", rt.name()));
    let up = host.uplink();
    let upstream = TestUpstream::start(
        &up.peer_netns_path(),
        SocketAddr::new(IpAddr::V4(up.peer_addr()), 53),
        "example.test",
        Ipv4Addr::new(192, 0, 2, 77),
    );
    upstream.configure(&host, "corp.test");
    let token = format!("names-{}-{}", rt.name(), host.name());
    if rt == Runtime::Podman {
        install_shipped_hooks_d(&host);
    }
    let prepare = |host: &TestHost, b: &Bundle| {
        // The image's own file, which podman --network none leaves alone.
        std::fs::write(
            b.rootfs().join("etc/resolv.conf"),
            "nameserver 203.0.113.53\n",
        )
        .unwrap();
        if rt != Runtime::Podman {
            prepare(host, b);
        }
    };

    let web_b = bundle(
        &host,
        "web",
        &["httpd", "-f", "-p", "80", "-h", "/var/www"],
        &[
            ("io.wirehook.network", "bridge"),
            ("io.wirehook.name", "web"),
            ("io.wirehook.aliases", "www,front"),
        ],
    );
    std::fs::write(
        web_b.rootfs().join("var/www/index.html"),
        format!("{token}\n"),
    )
    .unwrap();
    prepare(&host, &web_b);
    let cli_b = bundle(
        &host,
        "cli",
        &["sleep", "3600"],
        &[
            ("io.wirehook.network", "bridge"),
            ("io.wirehook.name", "client"),
        ],
    );
    prepare(&host, &cli_b);
    let gone_b = bundle(
        &host,
        "gone",
        &["sleep", "3600"],
        &[
            ("io.wirehook.network", "bridge"),
            ("io.wirehook.name", "victim"),
        ],
    );
    prepare(&host, &gone_b);

    let web = E2eContainer::start(rt, &host, &web_b, &host.unique_id("web"));
    let cli = E2eContainer::start(rt, &host, &cli_b, &host.unique_id("cli"));
    let victim = E2eContainer::start(rt, &host, &gone_b, &host.unique_id("gone"));
    // A container on another network, which must not see bridge's names.
    host.wirehook(
        &["network", "create", "--subnet", "10.231.0.0/24", "apart"],
        None,
    )
    .expect_success("network create apart");
    let apart_b = bundle(
        &host,
        "apart",
        &["sleep", "3600"],
        &[
            ("io.wirehook.network", "apart"),
            ("io.wirehook.name", "loner"),
        ],
    );
    prepare(&host, &apart_b);
    let apart = E2eContainer::start(rt, &host, &apart_b, &host.unique_id("apart"));
    let web_ip = web.ipv4("eth0").expect("web has eth0");

    let rc = cli
        .exec(&["cat", "/etc/resolv.conf"])
        .expect_success("cat /etc/resolv.conf");
    assert!(
        rc.stdout_str().contains("nameserver 127.0.0.11"),
        "the container's own resolv.conf names the resolver:\n{}",
        rc.stdout_str()
    );
    assert!(
        rc.stdout_str()
            .contains("search wirehook.internal corp.test"),
        "{}",
        rc.stdout_str()
    );

    for name in ["web", "www", "front", "web.bridge"] {
        assert!(
            resolves(&cli, name, web_ip),
            "nslookup {name}:\n{}",
            nslookup(&cli, name)
        );
    }
    let ping = cli.exec(&["ping", "-c1", "-W5", "web"]);
    assert!(
        ping.status.success() && ping.stdout_str().contains(&web_ip.to_string()),
        "ping web by name:\n{}",
        ping.report()
    );
    // Another network's container: NXDOMAIN for bridge's names, both ways.
    for name in ["web", "www", "web.bridge"] {
        let out = nslookup(&apart, name);
        assert!(
            out.contains("NXDOMAIN") && !out.contains(&web_ip.to_string()),
            "{name} from a container on another network:\n{out}"
        );
    }
    assert!(
        nslookup(&cli, "loner").contains("NXDOMAIN"),
        "{}",
        nslookup(&cli, "loner")
    );
    let page = cli
        .exec(&["wget", "-q", "-O", "-", "http://www/"])
        .expect_success("wget http://www/ by alias");
    assert!(page.stdout_str().contains(&token), "{}", page.stdout_str());
    // A forwarded name, answered by the test's upstream.
    assert!(
        resolves(&cli, "api.example.test", Ipv4Addr::new(192, 0, 2, 77)),
        "forwarded:\n{}",
        nslookup(&cli, "api.example.test")
    );

    // Stopped: gone within a second.
    web.stop().expect_success("stop web");
    let t = Instant::now();
    while resolves(&cli, "web", web_ip) {
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "web still resolves after 1 s"
        );
    }

    // Killed with no poststop (runc and crun call it at delete, which does
    // not come): gone within a second of the process's death.
    let victim_ip = victim.ipv4("eth0").expect("victim has eth0");
    assert!(
        resolves(&cli, "victim", victim_ip),
        "victim resolves while it runs"
    );
    let pid = victim.pid();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let t = Instant::now();
    while resolves(&cli, "victim", victim_ip) {
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "victim still resolves 1 s after its death"
        );
    }
    drop(victim);
    cli.stop().expect_success("stop client");
    apart.stop().expect_success("stop apart");
    assert_nothing_left(&host, &format!("{} names", rt.name()));
}

#[test]
fn runc_containers_find_each_other_by_name() {
    names(Runtime::Runc);
}

#[test]
fn crun_containers_find_each_other_by_name() {
    names(Runtime::Crun);
}

#[test]
fn podman_containers_find_each_other_by_name() {
    names(Runtime::Podman);
}

/// An image whose `/etc/resolv.conf` is a symlink to a host file: the
/// createContainer stage resolves it inside the container's root, mounts
/// nothing over the host's file, and the container still starts and
/// resolves by asking 127.0.0.11 directly. An image without the file gets
/// one made and mounted.
#[test]
fn podman_hostile_resolv_conf_symlink_stays_in_the_root() {
    let host = TestHost::new("e2enshost");
    install_shipped_hooks_d(&host);
    let target = host.root().join("host-secret");
    std::fs::write(&target, "host file\n").unwrap();

    let web_b = bundle(
        &host,
        "web",
        &["sleep", "3600"],
        &[
            ("io.wirehook.network", "bridge"),
            ("io.wirehook.name", "target"),
        ],
    );
    let link = web_b.rootfs().join("etc/resolv.conf");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let bare_b = bundle(
        &host,
        "bare",
        &["sleep", "3600"],
        &[
            ("io.wirehook.network", "bridge"),
            ("io.wirehook.name", "bare"),
        ],
    );
    let _ = std::fs::remove_file(bare_b.rootfs().join("etc/resolv.conf"));

    let web = E2eContainer::start(Runtime::Podman, &host, &web_b, &host.unique_id("web"));
    let bare = E2eContainer::start(Runtime::Podman, &host, &bare_b, &host.unique_id("bare"));
    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        "host file\n",
        "the host file the image's symlink names is untouched"
    );
    // Nothing was mounted on the host side of the symlink either.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(target.to_str().unwrap()),
        "a mount on {}:\n{mounts}",
        target.display()
    );
    // The bare image got a resolv.conf naming the resolver, and resolves.
    assert_resolv_conf_names_the_resolver(&bare);
    let web_ip = web.ipv4("eth0").expect("eth0");
    assert!(
        resolves(&bare, "target", web_ip),
        "{}",
        nslookup(&bare, "target")
    );
    // The symlinked one still reaches names at 127.0.0.11.
    let out = web.exec(&["nslookup", "bare", "127.0.0.11"]);
    let bare_ip = bare.ipv4("eth0").expect("eth0");
    assert!(
        out.stdout_str().contains(&format!("Address: {bare_ip}")),
        "{}",
        out.report()
    );
    web.stop().expect_success("stop");
    bare.stop().expect_success("stop");
    assert_nothing_left(&host, "podman hostile resolv.conf");
    let leftovers: Vec<_> = std::fs::read_dir(host.root().join("run/wirehook/resolv"))
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(
        leftovers.is_empty(),
        "resolv.conf sources left: {leftovers:?}"
    );
}

/// runc and crun run createContainer hooks in the container's mount
/// namespace before `pivot_root`, as the createContainer stage needs: a
/// prepared bundle whose resolv.conf mount is taken out again, with
/// `wirehook hook createContainer` added, gets the resolver in its
/// `/etc/resolv.conf` all the same.
fn create_container_stage(rt: Runtime) {
    let host = TestHost::new(&format!("e2encc{}", rt.name()));
    let b = bundle(
        &host,
        "cc",
        &["sleep", "3600"],
        &[
            ("io.wirehook.network", "bridge"),
            ("io.wirehook.name", "cc"),
        ],
    );
    std::fs::write(
        b.rootfs().join("etc/resolv.conf"),
        "nameserver 203.0.113.53\n",
    )
    .unwrap();
    prepare(&host, &b);
    b.edit(|c| {
        c["mounts"]
            .as_array_mut()
            .unwrap()
            .retain(|m| m["destination"] != "/etc/resolv.conf");
    });
    let root = host.root().to_str().unwrap().to_string();
    b.add_hook(
        "createContainer",
        &TestHost::wirehook_bin(),
        &["wirehook", "--root", &root, "hook", "createContainer"],
        &[],
        Some(30),
    );
    let c = E2eContainer::start(rt, &host, &b, &host.unique_id("cc"));
    assert_resolv_conf_names_the_resolver(&c);
    let ip = c.ipv4("eth0").expect("eth0");
    assert!(resolves(&c, "cc", ip), "{}", nslookup(&c, "cc"));
    c.stop().expect_success("stop");
    assert_nothing_left(&host, &format!("{} createContainer", rt.name()));
}

#[test]
fn runc_create_container_stage_points_resolv_conf_at_the_resolver() {
    create_container_stage(Runtime::Runc);
}

#[test]
fn crun_create_container_stage_points_resolv_conf_at_the_resolver() {
    create_container_stage(Runtime::Crun);
}
