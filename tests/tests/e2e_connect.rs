//! End-to-end `wirehook network connect` / `disconnect` on real runc
//! containers (busybox, installed with `wirehook prepare`).
//!
//! A container on network `front` is connected to network `back` while it
//! runs: it gets `eth1` there, pings a container on `back`, and the two
//! resolve each other by name (through the container's own
//! `/etc/resolv.conf`, busybox `nslookup`), the `--alias` only on `back`;
//! `ps`, `ps --json` and `network inspect` show the connected interface;
//! `check` is ok, and says which container the resolver does not answer
//! for while it is stopped (SIGSTOP). Disconnected: no `eth1`, no
//! traffic, the names gone (NXDOMAIN) within 1 s, the lease released.
//! Each refused request is one line and changes nothing; a connect that
//! fails halfway leaves nothing. A container still connected when it
//! stops leaves nothing either. The same on a macvlan network (traffic to
//! the LAN machine on the parent's segment) and an overlay network on the
//! local store. With bare containers: a connect racing the container's
//! poststop leaks nothing, and `wirehook gc` removes what a connect or
//! disconnect killed halfway left.

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;
use wirehook_shared::dns::wire::TYPE_A;
use wirehook_tests::e2e::*;
use wirehook_tests::*;

const RESOLVER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 11)), 53);

fn bundle(host: &TestHost, tag: &str, annotations: &[(&str, &str)]) -> Bundle {
    let b = Bundle::busybox(&host.root().join(tag), &["sleep", "3600"], annotations);
    prepare(host, &b);
    b
}

fn wh(host: &TestHost, args: &[&str]) -> Output {
    host.wirehook(args, None)
}

/// Refused with exactly one line on stderr that contains `needle`.
#[track_caller]
fn refused(out: Output, what: &str, needle: &str) {
    let out = out.expect_failure(what);
    let err = out.stderr_str();
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "{what}: one line expected\n{}",
        out.report()
    );
    assert!(
        lines[0].starts_with("wirehook: ") && lines[0].contains(needle),
        "{what}: expected a line containing {needle:?}\n{}",
        out.report()
    );
}

/// `nslookup NAME` inside `c` through its own resolv.conf.
fn nslookup(c: &E2eContainer<'_>, name: &str) -> String {
    let out = c.exec(&["nslookup", name]);
    format!("{}{}", out.stdout_str(), out.stderr_str())
}

fn resolves(c: &E2eContainer<'_>, name: &str, ip: Ipv4Addr) -> bool {
    nslookup(c, name).contains(&format!("Address: {ip}"))
}

/// The A answer of 127.0.0.11 in `netns` for `name`: its addresses, or
/// None for NXDOMAIN.
fn lookup(netns: &Path, name: &str) -> Option<Vec<IpAddr>> {
    let a = dns_query(netns, RESOLVER, name, TYPE_A, Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("no answer from 127.0.0.11 for {name}: {e}"));
    (!a.is_nxdomain()).then(|| a.addrs())
}

fn pings(from: &E2eContainer<'_>, to: Ipv4Addr) -> bool {
    from.exec(&["ping", "-c1", "-W2", &to.to_string()])
        .status
        .success()
}

/// Waits until `name` gets NXDOMAIN from 127.0.0.11 in `c`; at most 1 s.
#[track_caller]
fn gone_within_a_second(c: &E2eContainer<'_>, name: &str) {
    let ns = c.netns_path();
    let t = Instant::now();
    while lookup(&ns, name).is_some() {
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "{name} still resolves from {} 1 s after the disconnect",
            c.name()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Leases held on `network` (files in its lease directory), by address.
fn leases(host: &TestHost, network: &str) -> Vec<(String, String)> {
    let dir = host.root().join("run/wirehook/leases").join(network);
    let mut out: Vec<(String, String)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            (!name.starts_with('.')).then(|| {
                let holder = std::fs::read_to_string(e.path()).unwrap_or_default();
                (name, holder.trim().to_string())
            })
        })
        .collect();
    out.sort();
    out
}

fn record(host: &TestHost, id: &str) -> Value {
    let path = host
        .root()
        .join("run/wirehook/containers")
        .join(format!("{id}.json"));
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

/// What a refused or failed request must leave as it was.
struct Snapshot {
    links: Vec<String>,
    record: Value,
    leases: Vec<(String, String)>,
    veths: Vec<String>,
}

fn snapshot(host: &TestHost, c: &E2eContainer<'_>, network: &str) -> Snapshot {
    Snapshot {
        links: c.link_names(),
        record: record(host, &c.id()),
        leases: leases(host, network),
        veths: host_veths(host),
    }
}

#[track_caller]
fn unchanged(host: &TestHost, c: &E2eContainer<'_>, network: &str, before: &Snapshot, what: &str) {
    assert_eq!(
        c.link_names(),
        before.links,
        "{what}: links in the container"
    );
    assert_eq!(record(host, &c.id()), before.record, "{what}: the record");
    assert_eq!(leases(host, network), before.leases, "{what}: leases");
    assert_eq!(host_veths(host), before.veths, "{what}: host veths");
}

#[test]
fn runc_connect_and_disconnect_on_bridge_networks() {
    let rt = Runtime::Runc;
    let host = TestHost::new("e2econ");
    for (name, subnet) in [("front", "10.97.1.0/24"), ("back", "10.97.2.0/24")] {
        wh(&host, &["network", "create", "--subnet", subnet, name])
            .expect_success("network create");
    }
    let web_b = bundle(
        &host,
        "web",
        &[
            ("io.wirehook.network", "front"),
            ("io.wirehook.name", "web"),
            ("io.wirehook.aliases", "www"),
        ],
    );
    let cli_b = bundle(
        &host,
        "cli",
        &[
            ("io.wirehook.network", "front"),
            ("io.wirehook.name", "cli"),
        ],
    );
    let db_b = bundle(
        &host,
        "db",
        &[("io.wirehook.network", "back"), ("io.wirehook.name", "db")],
    );
    let lone_b = bundle(
        &host,
        "lone",
        &[
            ("io.wirehook.network", "none"),
            ("io.wirehook.name", "lone"),
        ],
    );
    let web = E2eContainer::start(rt, &host, &web_b, &host.unique_id("web"));
    let cli = E2eContainer::start(rt, &host, &cli_b, &host.unique_id("cli"));
    let db = E2eContainer::start(rt, &host, &db_b, &host.unique_id("db"));
    let lone = E2eContainer::start(rt, &host, &lone_b, &host.unique_id("lone"));
    let db_ip = db.ipv4("eth0").expect("db has eth0");
    let web_front = web.ipv4("eth0").expect("web has eth0");
    assert!(!pings(&web, db_ip), "web cannot reach back before connect");
    assert!(
        lookup(&web.netns_path(), "db").is_none(),
        "db is not web's yet"
    );

    // Connect web to back.
    let out = wh(
        &host,
        &["network", "connect", "--alias", "api", "back", "web"],
    )
    .expect_success("network connect back web");
    assert!(
        out.stdout_str()
            .contains("connected web to network back as eth1"),
        "{}",
        out.report()
    );
    assert_eq!(web.link_names(), ["lo", "eth0", "eth1"]);
    let web_back = web.ipv4("eth1").expect("web has an address on back");
    assert_eq!(
        web_back.octets()[..3],
        [10, 97, 2],
        "in back's subnet: {web_back}"
    );
    assert!(pings(&web, db_ip), "web reaches db on back");
    assert!(pings(&db, web_back), "db reaches web on back");
    assert!(
        pings(&web, web_front) && pings(&cli, web_front),
        "front still works"
    );
    // Names, through the containers' own resolv.conf.
    assert!(resolves(&web, "db", db_ip), "{}", nslookup(&web, "db"));
    assert!(
        resolves(&web, "db.back", db_ip),
        "{}",
        nslookup(&web, "db.back")
    );
    for name in ["web", "www", "api", "web.back"] {
        assert!(
            resolves(&db, name, web_back),
            "{name}: {}",
            nslookup(&db, name)
        );
    }
    assert!(
        resolves(&cli, "web", web_front),
        "{}",
        nslookup(&cli, "web")
    );
    // The alias is back's only, and cli is not on back.
    assert_eq!(
        lookup(&cli.netns_path(), "api"),
        None,
        "api is back's alias"
    );
    assert_eq!(lookup(&cli.netns_path(), "db"), None, "db is not on front");
    // The record: eth1 connected, with its alias.
    let rec = record(&host, &web.id());
    let eth1 = &rec["interfaces"][1];
    assert_eq!(eth1["network"], "back", "{rec}");
    assert_eq!(eth1["ifname"], "eth1", "{rec}");
    assert_eq!(eth1["connected"], true, "{rec}");
    assert_eq!(eth1["aliases"], serde_json::json!(["api"]), "{rec}");
    // ps and network inspect show it.
    let ps = wh(&host, &["ps"]).expect_success("ps").stdout_str();
    let row = ps
        .lines()
        .find(|l| l.contains("web (www)"))
        .unwrap_or_else(|| panic!("web in ps:\n{ps}"));
    assert!(row.contains("front,back(api)"), "{ps}");
    assert!(row.contains("eth0,eth1+"), "{ps}");
    let psj: Value = serde_json::from_slice(
        &wh(&host, &["ps", "--json"])
            .expect_success("ps --json")
            .stdout,
    )
    .unwrap();
    let webj = psj
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "web")
        .unwrap();
    assert_eq!(webj["interfaces"][1]["connected"], true, "{webj}");
    let insp: Value = serde_json::from_slice(
        &wh(&host, &["network", "inspect", "back"])
            .expect_success("inspect")
            .stdout,
    )
    .unwrap();
    let on_back = insp[0]["containers"].as_array().unwrap();
    let w = on_back
        .iter()
        .find(|c| c["name"] == "web")
        .expect("web on back");
    assert_eq!(w["interface"], "eth1", "{insp}");
    assert_eq!(w["connected"], true, "{insp}");
    assert_eq!(w["aliases"], serde_json::json!(["www", "api"]), "{insp}");
    assert_eq!(w["addresses"][0], format!("{web_back}/24"), "{insp}");
    let d = on_back
        .iter()
        .find(|c| c["name"] == "db")
        .expect("db on back");
    assert_eq!(d["connected"], false, "{insp}");
    // check: ok for everyone.
    let out = wh(&host, &["check"]).expect_success("check");
    assert!(
        out.stdout_str().contains("web (bridge): ok"),
        "{}",
        out.report()
    );

    // Refused requests: one line each, nothing changed.
    let before = snapshot(&host, &cli, "back");
    refused(
        wh(&host, &["network", "connect", "back", "web"]),
        "connect again",
        "already on network back (as eth1)",
    );
    refused(
        wh(&host, &["network", "connect", "nosuch", "cli"]),
        "unknown network",
        "no network nosuch",
    );
    refused(
        wh(&host, &["network", "connect", "back", "nosuchctr"]),
        "unknown container",
        "no container nosuchctr is wired by wirehook",
    );
    refused(
        wh(&host, &["network", "connect", "back", "lone"]),
        "none mode",
        "runs in none mode",
    );
    refused(
        wh(
            &host,
            &["network", "connect", "--ip", "10.97.9.9", "back", "cli"],
        ),
        "--ip outside",
        "--ip 10.97.9.9 is not in network back's subnets",
    );
    refused(
        wh(
            &host,
            &[
                "network",
                "connect",
                "--ip",
                &db_ip.to_string(),
                "back",
                "cli",
            ],
        ),
        "--ip taken",
        &format!("--ip {db_ip} is already held by container"),
    );
    refused(
        wh(
            &host,
            &["network", "connect", "--alias", "no way", "back", "cli"],
        ),
        "bad alias",
        "--alias",
    );
    refused(
        wh(&host, &["network", "disconnect", "back", "db"]),
        "last network",
        "network back is the last network of container db",
    );
    refused(
        wh(&host, &["network", "disconnect", "back", "cli"]),
        "not on it",
        "container cli is not on network back (it is on front)",
    );
    unchanged(&host, &cli, "back", &before, "after the refusals");
    // Fails halfway (after the interface, the lease and the record, at
    // the resolver): everything undone.
    for step in ["address", "connect-record", "connect-dns"] {
        let out = host.wirehook_env(
            &["network", "connect", "back", "cli"],
            None,
            &[("WIREHOOK_FAIL_AT", step)],
        );
        refused(out, &format!("connect failing at {step}"), step);
        unchanged(
            &host,
            &cli,
            "back",
            &before,
            &format!("connect failing at {step}"),
        );
        assert_eq!(
            lookup(&db.netns_path(), "cli"),
            None,
            "cli does not resolve on back after the failure at {step}"
        );
    }
    // A static address.
    wh(
        &host,
        &["network", "connect", "--ip", "10.97.2.77", "back", "cli"],
    )
    .expect_success("connect cli with --ip");
    assert_eq!(cli.ipv4("eth1"), Some(Ipv4Addr::new(10, 97, 2, 77)));
    assert!(pings(&cli, db_ip), "cli reaches db");

    // Disconnect web from back.
    let out = wh(&host, &["network", "disconnect", "back", "web"])
        .expect_success("network disconnect back web");
    assert!(
        out.stdout_str()
            .contains("disconnected web from network back"),
        "{}",
        out.report()
    );
    gone_within_a_second(&db, "web");
    gone_within_a_second(&db, "api");
    gone_within_a_second(&web, "db");
    assert_eq!(web.link_names(), ["lo", "eth0"]);
    assert!(!pings(&web, db_ip), "no traffic to back after disconnect");
    assert!(
        !pings(&db, web_back),
        "no traffic from back after disconnect"
    );
    assert!(
        !leases(&host, "back").iter().any(|(_, h)| *h == web.id()),
        "web's lease on back released: {:?}",
        leases(&host, "back")
    );
    assert!(resolves(&cli, "web", web_front), "web keeps its front name");
    assert_eq!(
        record(&host, &web.id())["interfaces"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    wh(&host, &["check"]).expect_success("check after disconnect");

    // The resolver stopped: check names the containers it does not answer for.
    let pid: i32 = std::fs::read_to_string(host.root().join("run/wirehook/dns.pid"))
        .expect("the resolver's pid file")
        .trim()
        .parse()
        .unwrap();
    let stop = |sig| nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).unwrap();
    stop(nix::sys::signal::Signal::SIGSTOP);
    let out = wh(&host, &["check"]);
    stop(nix::sys::signal::Signal::SIGCONT);
    let out = out.expect_failure("check with the resolver stopped");
    let text = out.stdout_str();
    for name in ["web", "cli", "db"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("{name} (")) && l.contains("names: query for")),
            "check names {name}'s unanswered query:\n{}",
            out.report()
        );
    }
    wh(&host, &["check"]).expect_success("check with the resolver running again");

    // Stopped while connected (cli on back): nothing left.
    drop(lone);
    web.stop().expect_success("stop web");
    cli.stop().expect_success("stop cli");
    db.stop().expect_success("stop db");
    assert_nothing_left(&host, "connect/disconnect and stop");
}

#[test]
fn runc_connect_to_a_macvlan_network() {
    let rt = Runtime::Runc;
    let host = TestHost::new("e2econmv");
    let _up = host.uplink_n(1);
    wh(
        &host,
        &[
            "network",
            "create",
            "--driver",
            "macvlan",
            "--parent",
            "uplink1",
            "--subnet",
            "203.0.113.0/24",
            "--gateway",
            "203.0.113.2",
            "--ip-range",
            "203.0.113.128/25",
            "lan",
        ],
    )
    .expect_success("network create lan");
    let app_b = bundle(
        &host,
        "app",
        &[
            ("io.wirehook.network", "bridge"),
            ("io.wirehook.name", "app"),
        ],
    );
    let peer_b = bundle(
        &host,
        "peer",
        &[
            ("io.wirehook.network", "lan"),
            ("io.wirehook.name", "lanpeer"),
        ],
    );
    let app = E2eContainer::start(rt, &host, &app_b, &host.unique_id("app"));
    let peer = E2eContainer::start(rt, &host, &peer_b, &host.unique_id("peer"));
    let peer_ip = peer.ipv4("eth0").expect("peer has eth0");
    let lan_machine = Ipv4Addr::new(203, 0, 113, 2);

    wh(&host, &["network", "connect", "lan", "app"]).expect_success("connect app to lan");
    let links = app.kernel_json(&["ip", "-j", "-d", "link", "show", "eth1"]);
    assert_eq!(links[0]["linkinfo"]["info_kind"], "macvlan", "{links}");
    let app_lan = app.ipv4("eth1").expect("app has an address on lan");
    assert!(pings(&app, peer_ip), "app reaches the lan container");
    assert!(pings(&app, lan_machine), "app reaches the LAN machine");
    assert!(
        resolves(&app, "lanpeer", peer_ip),
        "{}",
        nslookup(&app, "lanpeer")
    );
    assert!(
        resolves(&peer, "app", app_lan),
        "{}",
        nslookup(&peer, "app")
    );
    wh(&host, &["check"]).expect_success("check");

    wh(&host, &["network", "disconnect", "lan", "app"]).expect_success("disconnect");
    gone_within_a_second(&peer, "app");
    gone_within_a_second(&app, "lanpeer");
    assert_eq!(app.link_names(), ["lo", "eth0"]);
    assert!(!pings(&app, peer_ip), "no traffic after disconnect");
    assert!(
        !leases(&host, "lan").iter().any(|(_, h)| *h == app.id()),
        "{:?}",
        leases(&host, "lan")
    );

    // Connected again, then stopped: nothing left.
    wh(&host, &["network", "connect", "lan", "app"]).expect_success("connect again");
    assert!(
        pings(&app, lan_machine),
        "app reaches the LAN machine again"
    );
    app.stop().expect_success("stop app");
    peer.stop().expect_success("stop peer");
    assert_nothing_left(&host, "macvlan connect and stop");
}

#[test]
fn runc_connect_to_an_overlay_network_on_the_local_store() {
    let rt = Runtime::Runc;
    let host = TestHost::new("e2econov");
    wh(&host, &["network", "create", "--driver", "overlay", "solo"])
        .expect_success("create an overlay network without a store");
    let app_b = bundle(
        &host,
        "app",
        &[
            ("io.wirehook.network", "bridge"),
            ("io.wirehook.name", "app"),
        ],
    );
    let peer_b = bundle(
        &host,
        "peer",
        &[
            ("io.wirehook.network", "solo"),
            ("io.wirehook.name", "ovpeer"),
        ],
    );
    let app = E2eContainer::start(rt, &host, &app_b, &host.unique_id("app"));
    let peer = E2eContainer::start(rt, &host, &peer_b, &host.unique_id("peer"));
    let peer_ip = peer.ipv4("eth0").expect("peer has eth0");

    wh(&host, &["network", "connect", "solo", "app"]).expect_success("connect app to solo");
    let app_ov = app.ipv4("eth1").expect("app has an address on solo");
    assert!(pings(&app, peer_ip), "app reaches the overlay container");
    assert!(pings(&peer, app_ov), "and back");
    assert!(
        resolves(&app, "ovpeer", peer_ip),
        "{}",
        nslookup(&app, "ovpeer")
    );
    assert!(resolves(&peer, "app", app_ov), "{}", nslookup(&peer, "app"));
    wh(&host, &["check"]).expect_success("check");

    wh(&host, &["network", "disconnect", "solo", "app"]).expect_success("disconnect");
    gone_within_a_second(&peer, "app");
    assert_eq!(app.link_names(), ["lo", "eth0"]);
    assert!(!pings(&app, peer_ip), "no traffic after disconnect");

    wh(&host, &["network", "connect", "solo", "app"]).expect_success("connect again");
    app.stop().expect_success("stop app");
    peer.stop().expect_success("stop peer");
    assert_nothing_left(&host, "overlay connect and stop");
}

/// A connect racing the container's poststop either wins (and the
/// teardown removes the connected interface with the rest) or finds no
/// container; nothing is left either way. A connect or disconnect killed
/// halfway leaves a lease and a host veth the record does not name, which
/// `wirehook gc` removes while the container runs.
#[test]
fn connect_racing_poststop_or_killed_halfway_leaves_nothing() {
    let host = TestHost::new("conrace");
    for (name, subnet) in [("front", "10.98.1.0/24"), ("back", "10.98.2.0/24")] {
        wh(&host, &["network", "create", "--subnet", subnet, name])
            .expect_success("network create");
    }
    let ann = [("io.wirehook.network", "front")];
    let (mut won, mut lost) = (0, 0);
    for i in 0..10u64 {
        let mut c = host.container(&format!("r{i}"));
        support::wire(&host, &c, &ann);
        let id = c.id().to_string();
        let out = std::thread::scope(|s| {
            let connect = s.spawn(|| wh(&host, &["network", "connect", "back", &id]));
            std::thread::sleep(Duration::from_millis(i * 7 % 40));
            support::unwire(&host, &id);
            connect.join().unwrap()
        });
        if out.status.success() {
            won += 1;
        } else {
            lost += 1;
            refused(out, "connect after poststop", &format!("no container {id}"));
        }
        c.kill();
        assert_nothing_left(&host, &format!("connect racing poststop, round {i}"));
    }
    eprintln!("connect before poststop: {won}, after: {lost}");

    // Killed after the interface and the lease, before the record.
    let mut c = host.container("killed");
    support::wire(&host, &c, &ann);
    let id = c.id().to_string();
    let veths = host_veths(&host);
    host.wirehook_env(
        &["network", "connect", "back", &id],
        None,
        &[("WIREHOOK_KILL_AT", "connect-record")],
    )
    .expect_failure("connect killed halfway");
    assert_eq!(
        leases(&host, "back").len(),
        1,
        "the killed connect took a lease"
    );
    assert_eq!(host_veths(&host).len(), veths.len() + 1, "and made a veth");
    let out = wh(&host, &["gc"]).expect_success("gc");
    let text = out.stdout_str();
    assert!(
        text.contains(&format!("owner {id} does not hold it in its record")),
        "{}",
        out.report()
    );
    assert!(text.contains("removed stray veth"), "{}", out.report());
    assert_eq!(leases(&host, "back"), Vec::<(String, String)>::new());
    assert_eq!(host_veths(&host), veths);
    assert_eq!(
        c.links_json().as_array().unwrap().len(),
        2,
        "lo and eth0 left"
    );
    // Killed after the record, before the resolver heard of it: gc
    // brings the resolver up to date.
    host.wirehook_env(
        &["network", "connect", "back", &id],
        None,
        &[("WIREHOOK_KILL_AT", "connect-dns")],
    )
    .expect_failure("connect killed before the resolver");
    let own = format!("{id}.back");
    assert_eq!(
        lookup(&c.netns_path(), &own).unwrap_or_default(),
        Vec::<IpAddr>::new(),
        "the resolver missed it"
    );
    let out = wh(&host, &["gc"]).expect_success("gc");
    assert!(
        out.stdout_str()
            .contains(&format!("updated the networks of {id}")),
        "{}",
        out.report()
    );
    assert!(
        lookup(&c.netns_path(), &own).is_some_and(|a| a.len() == 1),
        "{own} resolves after gc"
    );
    assert_eq!(leases(&host, "back").len(), 1, "gc kept the recorded lease");
    // Killed after the record, before the interface and lease are gone.
    host.wirehook_env(
        &["network", "disconnect", "back", &id],
        None,
        &[("WIREHOOK_KILL_AT", "disconnect-record")],
    )
    .expect_failure("disconnect killed halfway");
    assert_eq!(leases(&host, "back").len(), 1, "the lease is still taken");
    wh(&host, &["gc"]).expect_success("gc");
    assert_eq!(leases(&host, "back"), Vec::<(String, String)>::new());
    assert_eq!(host_veths(&host), veths);
    wh(&host, &["check"]).expect_success("check after gc");
    support::unwire(&host, &id);
    c.kill();
    assert_nothing_left(&host, "killed connect and disconnect, gc, stop");
}

/// The operator's policy applies to connect as to setup: only networks
/// containers may choose, static addresses only where allowed. Hostile
/// names are refused before they touch anything. One line each, nothing
/// changed.
#[test]
fn connect_obeys_the_policy_and_refuses_hostile_names() {
    let host = TestHost::new("conpol");
    for (name, subnet) in [("front", "10.99.1.0/24"), ("back", "10.99.2.0/24")] {
        wh(&host, &["network", "create", "--subnet", subnet, name])
            .expect_success("network create");
    }
    support::write_policy(
        &host,
        r#"{"networks": ["front", "back"], "allow_static_addresses": false}"#,
    );
    let c = host.container("pol");
    support::wire(&host, &c, &[("io.wirehook.network", "front")]);
    let id = c.id().to_string();
    let links = c.links_json();
    let rec = record(&host, &id);
    refused(
        wh(
            &host,
            &["network", "connect", "--ip", "10.99.2.9", "back", &id],
        ),
        "static address against the policy",
        "allow_static_addresses is false",
    );
    support::write_policy(&host, r#"{"networks": ["front"]}"#);
    refused(
        wh(&host, &["network", "connect", "back", &id]),
        "network outside the policy",
        "network back is not one the policy lets containers choose",
    );
    refused(
        wh(&host, &["network", "connect", "../../etc", &id]),
        "hostile network name",
        "invalid network name",
    );
    refused(
        wh(&host, &["network", "connect", "back", "../../etc/passwd"]),
        "hostile container name",
        "no container ../../etc/passwd is wired by wirehook",
    );
    refused(
        wh(&host, &["network", "disconnect", "back", "../x"]),
        "hostile container name",
        "no container ../x is wired by wirehook",
    );
    assert_eq!(c.links_json(), links, "links unchanged");
    assert_eq!(record(&host, &id), rec, "record unchanged");
    assert_eq!(leases(&host, "back"), Vec::<(String, String)>::new());
    support::write_policy(&host, r#"{"networks": ["front", "back"]}"#);
    wh(
        &host,
        &["network", "connect", "--ip", "10.99.2.9", "back", &id],
    )
    .expect_success("connect allowed by the policy");
    support::unwire(&host, &id);
    drop(c);
    assert_nothing_left(&host, "policy refusals and a connect");
}
