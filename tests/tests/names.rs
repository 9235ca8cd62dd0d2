//! Container names: the per-host resolver (`wirehook dns`) against real
//! namespaces. Containers resolve each other by name and alias through
//! 127.0.0.11 inside their own namespace, only on networks they share;
//! names go when the container goes (teardown, or its process killed
//! without one); other names are forwarded to an upstream of the test's
//! own, except from `--internal` networks; a killed resolver comes back
//! with every name at the next start or `wirehook gc`.

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use support::*;
use wirehook_shared::dns::wire::{rcode, Record, TYPE_A, TYPE_AAAA, TYPE_PTR};
use wirehook_tests::*;

const RESOLVER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 11)), 53);
const WAIT: Duration = Duration::from_secs(2);

fn ask_type(netns: &Path, name: &str, qtype: u16) -> Answer {
    dns_query(netns, RESOLVER, name, qtype, WAIT).unwrap_or_else(|e| {
        panic!(
            "no answer from 127.0.0.11 in {} for {name}: {e}",
            netns.display()
        )
    })
}

fn ask(c: &Container<'_>, name: &str) -> Answer {
    ask_type(&c.netns_path(), name, TYPE_A)
}

/// `name` resolves from `c` to exactly `ip` (authoritatively).
fn resolves(c: &Container<'_>, name: &str, ip: IpAddr) {
    let a = ask(c, name);
    assert_eq!(a.rcode, rcode::NOERROR, "{name} from {}: {a:?}", c.id());
    assert!(a.authoritative, "{name}: a local answer: {a:?}");
    assert_eq!(a.addrs(), vec![ip], "{name} from {}", c.id());
}

fn nxdomain(c: &Container<'_>, name: &str) {
    let a = ask(c, name);
    assert!(
        a.is_nxdomain(),
        "{name} from {} should not exist: {a:?}",
        c.id()
    );
}

fn annotations<'a>(
    net: &'a str,
    name: &'a str,
    aliases: Option<&'a str>,
) -> Vec<(&'a str, &'a str)> {
    let mut ann = vec![("io.wirehook.network", net), ("io.wirehook.name", name)];
    if let Some(a) = aliases {
        ann.push(("io.wirehook.aliases", a));
    }
    ann
}

fn create_network(host: &TestHost, args: &[&str]) {
    let mut v = vec!["network", "create"];
    v.extend_from_slice(args);
    host.wirehook(&v, None).expect_success(&v.join(" "));
}

fn resolver_pid(host: &TestHost) -> Option<i32> {
    std::fs::read_to_string(run_dir(host).join("dns.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// How long until `f` holds, polling every 10 ms, at most 5 s.
fn time_until(mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        if f() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// An upstream of the test's own on the uplink peer (198.51.100.2:53):
/// `*.example.test` is 192.0.2.77, everything else NXDOMAIN.
fn upstream<'h>(host: &'h TestHost) -> (Uplink<'h>, TestUpstream) {
    let up = host.uplink();
    let server = TestUpstream::start(
        &up.peer_netns_path(),
        SocketAddr::new(IpAddr::V4(up.peer_addr()), 53),
        "example.test",
        Ipv4Addr::new(192, 0, 2, 77),
    );
    server.configure(host, "corp.test");
    (up, server)
}

#[test]
fn names_and_aliases_resolve_only_on_shared_networks() {
    let host = TestHost::new("names");
    let (_up, _server) = upstream(&host);
    create_network(
        &host,
        &[
            "--subnet",
            "10.61.0.0/24",
            "--subnet",
            "fd00:61::/64",
            "front",
        ],
    );
    create_network(&host, &["--subnet", "10.62.0.0/24", "back"]);
    let web = host.container("web");
    let db = host.container("db");
    let other = host.container("other");
    let both = host.container("both");
    wire(&host, &web, &annotations("front", "web", Some("www")));
    wire(&host, &db, &annotations("front", "db", Some("mysql,Store")));
    wire(&host, &other, &annotations("back", "other", None));
    wire(&host, &both, &annotations("front,back", "both", None));
    let web_ip = ipv4_of(&web);
    let db_ip = ipv4_of(&db);
    let other_ip = ipv4_of(&other);

    // Names, aliases, any case, NAME.NETWORK.
    resolves(&web, "db", db_ip);
    resolves(&web, "mysql", db_ip);
    resolves(&web, "store", db_ip);
    resolves(&web, "DB", db_ip);
    resolves(&web, "db.front", db_ip);
    resolves(&db, "web", web_ip);
    resolves(&db, "www", web_ip);
    resolves(&web, "web", web_ip);
    // IPv6 on the dual-stack network; a v4-only name's AAAA is an empty NOERROR.
    let v6 = addr_of(&web.addrs_json(), "eth0", true)
        .expect("web has IPv6")
        .0;
    let a = ask_type(&db.netns_path(), "web", TYPE_AAAA);
    assert_eq!(a.addrs(), vec![v6]);
    let a = ask_type(&web.netns_path(), "other", TYPE_AAAA);
    assert!(a.is_nxdomain(), "{a:?}");

    // Isolation: back's names are not front's, NAME.NETWORK included.
    nxdomain(&web, "other");
    nxdomain(&other, "web");
    nxdomain(&other, "db");
    let a = ask(&web, "other.back");
    assert!(a.addrs().is_empty(), "other.back from front: {a:?}");
    resolves(&other, "other", other_ip);
    // On both networks: both networks' names.
    resolves(&both, "other", other_ip);
    resolves(&both, "web", web_ip);
    let both_ips: Vec<IpAddr> = ["eth0", "eth1"]
        .iter()
        .map(|i| addr_of(&both.addrs_json(), i, false).unwrap().0)
        .collect();
    resolves(&web, "both", both_ips[0]);
    resolves(&other, "both", both_ips[1]);

    // Reverse lookups of container addresses, with the same isolation.
    let IpAddr::V4(d) = db_ip else { unreachable!() };
    let o = d.octets();
    let arpa = format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0]);
    let a = ask_type(&web.netns_path(), &arpa, TYPE_PTR);
    assert_eq!(a.records, vec![Record::Ptr("db.front".into())], "{a:?}");
    let a = ask_type(&other.netns_path(), &arpa, TYPE_PTR);
    assert!(a.records.is_empty(), "{a:?}");

    // TCP, and a real client (busybox nslookup) through the same socket.
    let a = dns_query_tcp(&web.netns_path(), RESOLVER, "mysql", TYPE_A, WAIT).expect("tcp");
    assert_eq!(a.addrs(), vec![db_ip]);
    let out = web
        .exec(&["busybox", "nslookup", "db", "127.0.0.11"])
        .expect_success("busybox nslookup db");
    assert!(
        out.stdout_str().contains(&db_ip.to_string()),
        "{}",
        out.stdout_str()
    );

    // The records and `check` know it.
    let ps = host.wirehook(&["ps", "--json"], None).expect_success("ps");
    assert!(ps.stdout_str().contains("\"Store\""), "{}", ps.stdout_str());
    host.wirehook(&["check"], None).expect_success("check");
    let table = host
        .wirehook(&["ps"], None)
        .expect_success("ps")
        .stdout_str();
    assert!(table.contains("db (mysql,Store)"), "{table}");

    // A stopped container's names are gone as soon as poststop returned.
    unwire(&host, db.id());
    for n in ["db", "mysql", "db.front"] {
        nxdomain(&web, n);
    }
    resolves(&web, "www", web_ip);
    for c in [&web, &other, &both] {
        unwire(&host, c.id());
    }
    assert_clean(&host);
    assert!(
        eventually(5, || resolver_pid(&host).is_none()),
        "the resolver leaves with its last container"
    );
}

#[test]
fn a_container_killed_without_poststop_loses_its_names_within_a_second() {
    let host = TestHost::new("namekill");
    let a = host.container("a");
    let mut b = host.container("b");
    wire(&host, &a, &annotations("bridge", "alpha", None));
    wire(&host, &b, &annotations("bridge", "beta", Some("bee")));
    let b_ip = ipv4_of(&b);
    resolves(&a, "beta", b_ip);
    resolves(&a, "bee", b_ip);
    b.kill();
    let gone = time_until(|| ask(&a, "beta").is_nxdomain()).expect("beta never went away");
    assert!(gone < Duration::from_secs(1), "beta went after {gone:?}");
    nxdomain(&a, "bee");
    resolves(&a, "alpha", ipv4_of(&a));
    // The late poststop is still fine.
    unwire(&host, b.id());
    unwire(&host, a.id());
    assert_clean(&host);
}

#[test]
fn other_names_are_forwarded_except_from_internal_networks() {
    let host = TestHost::new("namefwd");
    let (_up, server) = upstream(&host);
    create_network(&host, &["--subnet", "10.63.0.0/24", "--internal", "sealed"]);
    let out_c = host.container("out");
    let in_c = host.container("in");
    let in2 = host.container("in2");
    wire(&host, &out_c, &annotations("bridge", "outside", None));
    wire(&host, &in_c, &annotations("sealed", "inside", None));
    wire(&host, &in2, &annotations("sealed", "inside2", None));

    let before = server.seen();
    let a = ask(&out_c, "www.example.test");
    assert_eq!(a.rcode, rcode::NOERROR, "{a:?}");
    assert_eq!(a.addrs(), vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 77))]);
    let a = ask(&out_c, "nothing.example.org");
    assert!(a.is_nxdomain(), "the upstream's NXDOMAIN: {a:?}");
    assert_eq!(server.seen(), before + 2, "both went upstream");
    // Single labels that are not containers' are not forwarded.
    nxdomain(&out_c, "nosuchcontainer");
    assert_eq!(server.seen(), before + 2);

    // --internal: names of its own network, nothing from outside.
    resolves(&in_c, "inside2", ipv4_of(&in2));
    let a = ask(&in_c, "www.example.test");
    assert_eq!(a.rcode, rcode::REFUSED, "{a:?}");
    assert_eq!(server.seen(), before + 2, "nothing forwarded for sealed");

    // A dead first upstream: the next one answers after its 2 s; with
    // none alive, SERVFAIL. resolv.conf changes are followed.
    let rc = host.root().join("resolv.conf");
    std::fs::write(&rc, "nameserver 198.51.100.9\nnameserver 198.51.100.2\n").unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let t = Instant::now();
    let a = dns_query(
        &out_c.netns_path(),
        RESOLVER,
        "late.example.test",
        TYPE_A,
        Duration::from_secs(5),
    )
    .expect("an answer from the second upstream");
    assert_eq!(
        a.addrs(),
        vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 77))],
        "{a:?}"
    );
    assert!(
        t.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        t.elapsed()
    );
    std::fs::write(&rc, "nameserver 198.51.100.9\n").unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let a = dns_query(
        &out_c.netns_path(),
        RESOLVER,
        "dead.example.test",
        TYPE_A,
        Duration::from_secs(5),
    )
    .expect("SERVFAIL, not silence");
    assert_eq!(a.rcode, rcode::SERVFAIL, "{a:?}");

    for c in [&out_c, &in_c, &in2] {
        unwire(&host, c.id());
    }
    assert_clean(&host);
}

/// Nothing answers on 127.0.0.11 inside `c`'s namespace.
fn no_resolver_in(c: &Container<'_>, what: &str) {
    assert!(
        dns_query(
            &c.netns_path(),
            RESOLVER,
            "keeper",
            TYPE_A,
            Duration::from_millis(500)
        )
        .is_err(),
        "{what}: the resolver still listens in {}",
        c.id()
    );
}

/// With a resolver running, a setup sends it the container's namespace
/// once loopback is up and its names before the record is written, and
/// reads the answers at the end. Whatever stops the setup in between
/// takes them back: a failure (the rollback), a kill (poststop, or gc).
#[test]
fn names_sent_ahead_of_a_setup_that_fails_or_dies_are_taken_back() {
    let host = TestHost::new("nameahead");
    let keeper = host.container("k");
    wire(&host, &keeper, &annotations("bridge", "keeper", None));
    // After the prepare (address) and after the names went ahead.
    for step in ["address", "bindmount", "record", "dns", "done"] {
        let c = host.container(&format!("f{step}"));
        setup_env(
            &host,
            &c,
            &annotations("bridge", "doomed", None),
            &[("WIREHOOK_FAIL_AT", step)],
        )
        .expect_failure(step);
        nxdomain(&keeper, "doomed");
        no_resolver_in(&c, &format!("failed at {step}"));
    }
    // Killed between the names sent ahead and the record, as a runtime
    // kills a hook past its timeout: the names resolve until the
    // runtime's poststop (or gc) takes them back.
    for cleaner in ["poststop", "gc"] {
        let c = host.container(&format!("k{cleaner}"));
        let out = setup_env(
            &host,
            &c,
            &annotations("bridge", "ghost", None),
            &[("WIREHOOK_KILL_AT", "record")],
        );
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&out.status),
            Some(9),
            "killed at record\n{}",
            out.report()
        );
        assert_eq!(ask(&keeper, "ghost").rcode, rcode::NOERROR, "sent ahead");
        match cleaner {
            "poststop" => unwire(&host, c.id()),
            _ => {
                let out = host.wirehook(&["gc"], None).expect_success("gc");
                let said = String::from_utf8_lossy(&out.stdout);
                assert!(
                    said.contains(&format!("removed the names of {} (no record)", c.id())),
                    "{said}"
                );
            }
        }
        nxdomain(&keeper, "ghost");
        no_resolver_in(&c, &format!("killed, then {cleaner}"));
    }
    // And a setup that goes through resolves at once, both ways.
    let late = host.container("late");
    wire(&host, &late, &annotations("bridge", "late", None));
    resolves(&keeper, "late", ipv4_of(&late));
    resolves(&late, "keeper", ipv4_of(&keeper));
    for c in [&keeper, &late] {
        unwire(&host, c.id());
    }
    assert_clean(&host);
}

#[test]
fn networks_without_names() {
    let host = TestHost::new("nodns");
    create_network(&host, &["--subnet", "10.64.0.0/24", "--dns=false", "quiet"]);
    let q = host.container("q");
    let mixed = host.container("m");
    let b = host.container("b");
    wire(&host, &q, &annotations("quiet", "silent", None));
    wire(&host, &mixed, &annotations("bridge,quiet", "mixed", None));
    wire(&host, &b, &annotations("bridge", "plain", None));
    // No resolver socket in a container whose networks all lack names.
    assert!(
        dns_query(
            &q.netns_path(),
            RESOLVER,
            "plain",
            TYPE_A,
            Duration::from_millis(500)
        )
        .is_err(),
        "nothing answers on quiet"
    );
    let rec = std::fs::read_to_string(run_dir(&host).join(format!("containers/{}.json", q.id())))
        .unwrap();
    assert!(rec.contains("\"dns\": false"), "{rec}");
    // mixed has names on bridge only.
    let m_bridge = addr_of(&mixed.addrs_json(), "eth0", false).unwrap().0;
    resolves(&b, "mixed", m_bridge);
    nxdomain(&mixed, "silent");
    resolves(&mixed, "plain", ipv4_of(&b));
    for c in [&q, &mixed, &b] {
        unwire(&host, c.id());
    }
    assert_clean(&host);
}

#[test]
fn a_killed_resolver_comes_back_with_every_name() {
    let host = TestHost::new("namerst");
    let n = 6;
    let cs: Vec<Container<'_>> = (0..n).map(|i| host.container(&format!("c{i}"))).collect();
    for (i, c) in cs.iter().enumerate() {
        wire(
            &host,
            c,
            &annotations("bridge", &format!("svc{i}"), Some(&format!("alias{i}"))),
        );
    }
    let ips: Vec<IpAddr> = cs.iter().map(ipv4_of).collect();
    let everyone_resolves = |cs: &[Container<'_>], ips: &[IpAddr]| {
        for c in cs {
            for (i, ip) in ips.iter().enumerate() {
                resolves(c, &format!("svc{i}"), *ip);
                resolves(c, &format!("alias{i}"), *ip);
            }
        }
    };
    everyone_resolves(&cs, &ips);

    // SIGKILL: nothing answers any more, and check says so.
    let pid = resolver_pid(&host).expect("dns.pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert!(eventually(5, || !std::path::Path::new(&format!(
        "/proc/{pid}"
    ))
    .exists()
        || std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.contains(") Z "))));
    assert!(
        dns_query(
            &cs[0].netns_path(),
            RESOLVER,
            "svc1",
            TYPE_A,
            Duration::from_millis(300)
        )
        .is_err(),
        "a dead resolver answers nothing"
    );
    let out = host.wirehook(&["check"], None);
    assert!(!out.status.success(), "check notices: {}", out.report());
    assert!(
        out.stdout_str().contains("resolver is not running"),
        "{}",
        out.stdout_str()
    );

    // The next start brings every name back, its own too.
    let late = host.container("late");
    wire(&host, &late, &annotations("bridge", "late", None));
    let mut all_ips = ips.clone();
    all_ips.push(ipv4_of(&late));
    everyone_resolves(&cs, &ips);
    resolves(&cs[0], "late", all_ips[n]);
    for (i, ip) in ips.iter().enumerate() {
        resolves(&late, &format!("svc{i}"), *ip);
    }
    assert_ne!(resolver_pid(&host), Some(pid), "a new resolver");

    // Killed again: `wirehook gc` brings it back.
    let pid = resolver_pid(&host).expect("dns.pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let out = host.wirehook(&["gc"], None).expect_success("gc");
    assert!(
        out.stdout_str().contains("started the resolver"),
        "{}",
        out.stdout_str()
    );
    everyone_resolves(&cs, &ips);
    resolves(&late, "late", all_ips[n]);
    host.wirehook(&["check"], None)
        .expect_success("check after gc");

    for c in cs.iter().chain([&late]) {
        unwire(&host, c.id());
    }
    assert_clean(&host);
}

#[test]
fn prepare_points_resolv_conf_at_the_resolver() {
    let host = TestHost::new("nameprep");
    let (_up, _server) = upstream(&host);
    create_network(&host, &["--subnet", "10.65.0.0/24", "--dns=false", "quiet"]);
    let prepare = |net: &str, own_mount: bool| -> serde_json::Value {
        let dir = host.root().join(format!("bundle-{net}-{own_mount}"));
        write_minimal_bundle(&dir, &NetNsEntry::Fresh, &[("io.wirehook.network", net)]);
        if own_mount {
            let p = dir.join("config.json");
            let mut cfg: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
            cfg["mounts"] = serde_json::json!([{
                "destination": "/etc/resolv.conf", "type": "bind",
                "source": "/somewhere/resolv.conf", "options": ["rbind"]
            }]);
            std::fs::write(&p, serde_json::to_vec(&cfg).unwrap()).unwrap();
        }
        let d = dir.to_str().unwrap();
        host.wirehook(&["prepare", d], None)
            .expect_success("prepare");
        // Idempotent.
        host.wirehook(&["prepare", d], None)
            .expect_success("prepare again");
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap()
    };
    let mounts = |cfg: &serde_json::Value| -> Vec<serde_json::Value> {
        cfg["mounts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|m| m["destination"] == "/etc/resolv.conf")
            .collect()
    };

    let cfg = prepare("bridge", false);
    let m = mounts(&cfg);
    assert_eq!(m.len(), 1, "{m:?}");
    let src = m[0]["source"].as_str().unwrap();
    assert!(src.ends_with("/wirehook.resolv.conf"), "{src}");
    let text = std::fs::read_to_string(src).unwrap();
    assert!(text.contains("nameserver 127.0.0.11\n"), "{text}");
    assert!(
        text.contains("search wirehook.internal corp.test\n"),
        "{text}"
    );
    assert!(text.contains("options edns0 ndots:0\n"), "{text}");
    assert!(
        !text.contains("198.51.100.2"),
        "the upstream stays the resolver's: {text}"
    );

    // A bundle with its own resolv.conf mount keeps it.
    let cfg = prepare("bridge", true);
    let m = mounts(&cfg);
    assert_eq!(m.len(), 1);
    assert_eq!(m[0]["source"], "/somewhere/resolv.conf");
    // No names on --dns=false networks, nor in none or host mode.
    assert!(mounts(&prepare("quiet", false)).is_empty());
    assert!(mounts(&prepare("none", false)).is_empty());
}

#[test]
fn names_on_a_macvlan_network() {
    // No bridge and nothing of the host on the path: the sockets are in the
    // containers' namespaces, so macvlan (and ipvlan) containers get names
    // like any other (podman turns DNS off for them).
    let host = TestHost::new("namemv");
    let lan = host.uplink_n(1);
    create_network(
        &host,
        &[
            "--driver",
            "macvlan",
            "--parent",
            lan.host_ifname(),
            "--subnet",
            "203.0.113.0/24",
            "--gateway",
            "203.0.113.2",
            "--ip-range",
            "203.0.113.128/25",
            "lan",
        ],
    );
    let a = host.container("a");
    let b = host.container("b");
    wire(&host, &a, &annotations("lan", "left", None));
    wire(&host, &b, &annotations("lan", "right", Some("r")));
    resolves(&a, "right", ipv4_of(&b));
    resolves(&a, "r.lan", ipv4_of(&b));
    resolves(&b, "left", ipv4_of(&a));
    host.wirehook(&["check"], None).expect_success("check");
    unwire(&host, a.id());
    nxdomain(&b, "left");
    unwire(&host, b.id());
}
