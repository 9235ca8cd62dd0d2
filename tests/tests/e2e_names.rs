//! End-to-end names: real runc and crun start busybox containers after
//! `wirehook prepare`, and the containers' own programs (`nslookup`,
//! `wget`) find each other by name through their own `/etc/resolv.conf`
//! (the file `prepare` bind-mounts: nameserver 127.0.0.11). A stopped
//! container's name is gone within a second, and so is that of a container
//! whose process was killed without a poststop.
//!
//! podman with `--network none` keeps the image's `/etc/resolv.conf`: it
//! needs the createContainer-stage mount the design describes, which is
//! not part of this slice (names still answer at 127.0.0.11 there).

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
