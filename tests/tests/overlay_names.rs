//! Names across hosts on overlay networks: three "hosts" on an underlay
//! with a real etcd, containers on each, every query asked of the real
//! resolver at 127.0.0.11 inside the asking container's namespace.
//! Every container resolves every other by name, alias and NAME.NETWORK
//! (A, AAAA, PTR) across hosts; names of another overlay network do not
//! resolve; a stopped container's name goes from every host; a killed
//! host's names go when its resolver's lease expires; a killed resolver
//! brought back by `wirehook gc` publishes its names again and deletes
//! what its predecessor left; names keep resolving while etcd is away and
//! follow again when it is back; on one host without a store overlay
//! names work as local ones; and real runc containers after `wirehook
//! prepare` find each other across hosts by name through their own
//! `/etc/resolv.conf` (busybox `nslookup`, `wget http://ALIAS/`); `network
//! connect`/`disconnect` to an overlay network publish and withdraw names
//! across hosts.

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use serde_json::json;
use support::{ipv4_of, run_dir, unwire, wire};
use wirehook_shared::dns::wire::{rcode, Record, TYPE_A, TYPE_AAAA, TYPE_PTR};
use wirehook_tests::cluster::{eventually, Cluster, ClusterHost};
use wirehook_tests::*;

const RESOLVER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 11)), 53);
/// How long one query waits for its answer (a loaded machine).
const WAIT: Duration = Duration::from_secs(5);
/// The resolvers' lease on their hosts' names (`names_ttl`).
const TTL: u64 = 3;
/// How long a change on one host may take to reach another's resolver
/// (a watch delivers in milliseconds; this is for a loaded machine).
const PROPAGATE: Duration = Duration::from_secs(10);

/// A host of the cluster whose resolver forwards to a test upstream in
/// its own namespace (names the resolver does not know go there, never
/// out of the test's namespaces).
fn add_host(cluster: &Cluster, n: usize) -> (ClusterHost, TestUpstream) {
    let h = cluster.add_host_with(json!({
        "host_id": format!("h{n}"),
        "store": cluster.store_url(),
        "names_ttl": TTL,
    }));
    let up = upstream(&h);
    (h, up)
}

fn upstream(h: &TestHost) -> TestUpstream {
    let up = TestUpstream::start(
        h.netns_path(),
        "127.0.0.53:53".parse().unwrap(),
        "example.test",
        Ipv4Addr::new(192, 0, 2, 99),
    );
    up.configure(h, "example.test");
    up
}

fn create(h: &TestHost, net: &str, subnet: &str) {
    h.wirehook(
        &[
            "network", "create", "--driver", "overlay", "--subnet", subnet, net,
        ],
        None,
    )
    .expect_success(&format!("network create {net}"));
}

fn start<'h>(h: &'h TestHost, net: &str, name: &str, aliases: Option<&str>) -> Container<'h> {
    let c = h.container(name);
    let mut ann = vec![("io.wirehook.network", net), ("io.wirehook.name", name)];
    if let Some(a) = aliases {
        ann.push(("io.wirehook.aliases", a));
    }
    wire(h, &c, &ann);
    c
}

fn ask_type(c: &Container<'_>, name: &str, qtype: u16) -> Answer {
    dns_query(&c.netns_path(), RESOLVER, name, qtype, WAIT)
        .unwrap_or_else(|e| panic!("no answer from 127.0.0.11 in {} for {name}: {e}", c.id()))
}

/// The A records of `name` asked from `c`; empty for NXDOMAIN.
fn a_of(c: &Container<'_>, name: &str) -> Vec<IpAddr> {
    let a = ask_type(c, name, TYPE_A);
    assert!(
        a.rcode == rcode::NOERROR || a.is_nxdomain(),
        "{name} from {}: {a:?}",
        c.id()
    );
    a.addrs()
}

/// `name` resolves from `c` to exactly `ip`, once the watch delivered it.
fn resolves(c: &Container<'_>, name: &str, ip: IpAddr) {
    eventually(PROPAGATE, || a_of(c, name) == vec![ip]);
    let a = ask_type(c, name, TYPE_A);
    assert_eq!(a.rcode, rcode::NOERROR, "{name} from {}: {a:?}", c.id());
    assert!(a.authoritative, "{name}: the resolver's own answer: {a:?}");
    assert_eq!(a.addrs(), vec![ip], "{name} from {}", c.id());
}

fn nxdomain(c: &Container<'_>, name: &str) {
    let a = ask_type(c, name, TYPE_A);
    assert!(
        a.is_nxdomain(),
        "{name} from {} should not exist: {a:?}",
        c.id()
    );
}

fn arpa(ip: IpAddr) -> String {
    let IpAddr::V4(v4) = ip else {
        panic!("IPv4 only")
    };
    let o = v4.octets();
    format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
}

/// Keys under /wirehook/v1/names/ in etcd.
fn name_keys(cluster: &Cluster) -> Vec<String> {
    cluster.etcd_keys("/wirehook/v1/names/")
}

fn resolver_pid(h: &TestHost) -> i32 {
    std::fs::read_to_string(run_dir(h).join("dns.pid"))
        .expect("dns.pid")
        .trim()
        .parse()
        .expect("a pid")
}

fn kill_resolver(h: &TestHost) {
    let pid = resolver_pid(h);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("SIGKILL the resolver");
    // Dead once it is gone or a zombie (its parent, init, reaps it when
    // it gets to it).
    let dead = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
            s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
    };
    assert!(
        eventually(Duration::from_secs(10), dead),
        "resolver {pid} is dead"
    );
}

#[test]
fn three_hosts_resolve_each_other_by_name_and_not_across_networks() {
    let cluster = Cluster::with_etcd("ovn3");
    let (h1, _u1) = add_host(&cluster, 1);
    let (h2, _u2) = add_host(&cluster, 2);
    let (h3, _u3) = add_host(&cluster, 3);
    create(&h1, "ov1", "10.214.0.0/16");
    create(&h1, "ov2", "10.215.0.0/16");

    let web = start(&h1, "ov1", "web", Some("www"));
    let db = start(&h2, "ov1", "db", Some("mysql"));
    let cache = start(&h3, "ov1", "cache", None);
    let other = start(&h1, "ov2", "other", None);
    let secret = start(&h3, "ov2", "secret", None);
    let ov1 = [
        (&web, "web", "www"),
        (&db, "db", "mysql"),
        (&cache, "cache", "cache"),
    ];

    // Every container on ov1 resolves every other, on every host, by
    // name, alias and NAME.NETWORK.
    for (asker, _, _) in &ov1 {
        for (target, name, alias) in &ov1 {
            let ip = ipv4_of(target);
            resolves(asker, name, ip);
            resolves(asker, alias, ip);
            resolves(asker, &format!("{name}.ov1"), ip);
        }
    }
    // AAAA of a name with no IPv6 address: it exists (NOERROR), empty.
    let a = ask_type(&web, "db", TYPE_AAAA);
    assert_eq!(a.rcode, rcode::NOERROR, "{a:?}");
    assert!(a.records.is_empty(), "{a:?}");
    // Reverse lookups of another host's container.
    let a = ask_type(&web, &arpa(ipv4_of(&db)), TYPE_PTR);
    assert_eq!(a.records, vec![Record::Ptr("db.ov1".into())], "{a:?}");
    let a = ask_type(&db, &arpa(ipv4_of(&cache)), TYPE_PTR);
    assert_eq!(a.records, vec![Record::Ptr("cache.ov1".into())], "{a:?}");

    // ov2 across hosts too, and the two networks never see each other.
    resolves(&other, "secret", ipv4_of(&secret));
    resolves(&secret, "other.ov2", ipv4_of(&other));
    for c in [&web, &db, &cache] {
        nxdomain(c, "secret");
        nxdomain(c, "secret.ov2");
        nxdomain(c, "other");
    }
    for c in [&other, &secret] {
        nxdomain(c, "db");
        nxdomain(c, "web.ov1");
        nxdomain(c, "cache");
    }
    // A PTR of an address on a network the asker is not on: no answer.
    let a = ask_type(&secret, &arpa(ipv4_of(&db)), TYPE_PTR);
    assert!(a.records.is_empty(), "{a:?}");

    // One key per container endpoint, under its network and host.
    let keys = name_keys(&cluster);
    assert_eq!(keys.len(), 5, "{keys:?}");
    for (net, host, c) in [
        ("ov1", "h1", &web),
        ("ov1", "h2", &db),
        ("ov1", "h3", &cache),
        ("ov2", "h1", &other),
        ("ov2", "h3", &secret),
    ] {
        let key = format!("/wirehook/v1/names/{net}/{host}/{}", c.id());
        assert!(keys.contains(&key), "{key} in {keys:?}");
    }

    // db stops on h2: its names go from the other hosts as the watch
    // delivers.
    let t = Instant::now();
    unwire(&h2, db.id());
    let peer = start(&h2, "ov1", "peer", None);
    nxdomain(&peer, "db");
    for c in [&web, &cache] {
        assert!(
            eventually(PROPAGATE, || a_of(c, "db").is_empty()),
            "db still resolves from {}",
            c.id()
        );
        nxdomain(c, "mysql");
        nxdomain(c, "db.ov1");
    }
    eprintln!(
        "db gone from h1 and h3 after {} ms",
        t.elapsed().as_millis()
    );
    let keys = name_keys(&cluster);
    assert!(!keys.iter().any(|k| k.ends_with(db.id())), "{keys:?}");
    // The rest still resolve, the new one too.
    resolves(&web, "cache", ipv4_of(&cache));
    resolves(&cache, "peer", ipv4_of(&peer));
    // How long a new name takes to reach another host after its start
    // returned.
    let late = start(&h2, "ov1", "late", None);
    let started = Instant::now();
    let ip = ipv4_of(&late);
    assert!(
        eventually(PROPAGATE, || a_of(&web, "late") == vec![ip]),
        "late never resolved on h1"
    );
    eprintln!(
        "a name started on h2 resolved on h1 {} ms after the hook returned",
        started.elapsed().as_millis()
    );
}

#[test]
fn a_killed_host_takes_its_names_within_the_lease_ttl() {
    let cluster = Cluster::with_etcd("ovnk");
    let (h1, _u1) = add_host(&cluster, 1);
    let (h2, _u2) = add_host(&cluster, 2);
    create(&h1, "ov", "10.216.0.0/16");
    let alpha = start(&h1, "ov", "alpha", None);
    let bravo = start(&h2, "ov", "bravo", None);
    let ttl = TTL.to_string();
    for h in [&h1, &h2] {
        h.start_agent(&["--ttl", &ttl]);
    }
    resolves(&alpha, "bravo", ipv4_of(&bravo));
    resolves(&bravo, "alpha", ipv4_of(&alpha));
    // By name, over the overlay (once the agents programmed the peers).
    let bravo_ip = a_of(&alpha, "bravo")[0].to_string();
    assert!(
        eventually(PROPAGATE, || support::pings(&alpha, &bravo_ip)),
        "alpha reaches bravo at the address its name resolved to"
    );

    // h2 dies: its agent and its resolver are killed (no goodbye, the
    // leases are left to expire); its container's process lives on,
    // nothing restarts the resolver.
    let killed = Instant::now();
    h2.kill_agent();
    kill_resolver(&h2);
    let still = !a_of(&alpha, "bravo").is_empty();
    if killed.elapsed() < Duration::from_secs(1) {
        assert!(still, "bravo resolves until h2's lease expires");
    }
    let gone = eventually(Duration::from_secs(TTL + 10), || {
        a_of(&alpha, "bravo").is_empty()
    });
    let took = killed.elapsed();
    assert!(gone, "bravo still resolves on h1 {took:?} after h2 died");
    eprintln!(
        "h2's names gone from h1 {} ms after its resolver died (ttl {TTL} s)",
        took.as_millis()
    );
    assert!(
        took <= Duration::from_secs(TTL + 3),
        "names of a dead host go within the lease TTL ({TTL} s), took {took:?}"
    );
    assert!(
        !name_keys(&cluster).iter().any(|k| k.contains("/h2/")),
        "{:?}",
        name_keys(&cluster)
    );

    // gc on h2 brings its resolver back: bravo is published again (on a
    // new lease) and h1 resolves it.
    h2.wirehook(&["gc"], None).expect_success("gc");
    resolves(&alpha, "bravo", ipv4_of(&bravo));
    resolves(&bravo, "alpha", ipv4_of(&alpha));
    unwire(&h2, bravo.id());
    unwire(&h1, alpha.id());
    assert!(
        eventually(PROPAGATE, || name_keys(&cluster).is_empty()),
        "{:?}",
        name_keys(&cluster)
    );
}

#[test]
fn one_host_without_a_store_resolves_overlay_names() {
    let host = TestHost::new("ovnlocal");
    let _up = upstream(&host);
    create(&host, "solo", "10.217.0.0/16");
    let a = start(&host, "solo", "a", None);
    let b = start(&host, "solo", "b", Some("bee"));
    resolves(&a, "b", ipv4_of(&b));
    resolves(&a, "bee.solo", ipv4_of(&b));
    resolves(&b, "a", ipv4_of(&a));
    let r = ask_type(&a, &arpa(ipv4_of(&b)), TYPE_PTR);
    assert_eq!(r.records, vec![Record::Ptr("b.solo".into())], "{r:?}");
    unwire(&host, b.id());
    nxdomain(&a, "b");
    unwire(&host, a.id());
}

#[test]
fn a_restarted_resolver_deletes_the_names_its_predecessor_left() {
    let cluster = Cluster::with_etcd("ovnr");
    // A long lease: what goes here goes by the new resolver, not by expiry.
    let config = |n: usize| {
        json!({
            "host_id": format!("h{n}"),
            "store": cluster.store_url(),
            "names_ttl": 60,
        })
    };
    let h1 = cluster.add_host_with(config(1));
    let _u1 = upstream(&h1);
    let h2 = cluster.add_host_with(config(2));
    let _u2 = upstream(&h2);
    create(&h1, "ov", "10.218.0.0/16");
    let asker = start(&h1, "ov", "asker", None);
    let keep = start(&h2, "ov", "keep", None);
    let mut gone = start(&h2, "ov", "gone", None);
    resolves(&asker, "keep", ipv4_of(&keep));
    resolves(&asker, "gone", ipv4_of(&gone));

    // h2's resolver dies, then one of its containers without a poststop:
    // nobody takes that name back, and the lease keeps it.
    kill_resolver(&h2);
    gone.kill();
    assert!(!a_of(&asker, "gone").is_empty(), "kept by the dead lease");
    // gc starts a new resolver: it attaches `keep` again (on its lease),
    // then deletes what it did not write, long before the old lease ends.
    let t = Instant::now();
    h2.wirehook(&["gc"], None).expect_success("gc");
    let mut flapped = false;
    let went = eventually(PROPAGATE, || {
        flapped |= a_of(&asker, "keep").is_empty();
        a_of(&asker, "gone").is_empty()
    });
    assert!(went, "gone's name left behind");
    eprintln!(
        "a dead container's leftover name went {} ms after gc",
        t.elapsed().as_millis()
    );
    assert!(!flapped, "keep resolved all along");
    resolves(&asker, "keep", ipv4_of(&keep));
    let keys = name_keys(&cluster);
    assert_eq!(keys.len(), 2, "asker and keep: {keys:?}");
}

#[test]
fn names_follow_an_etcd_outage() {
    let cluster = Cluster::with_etcd("ovne");
    let (h1, _u1) = add_host(&cluster, 1);
    let (h2, _u2) = add_host(&cluster, 2);
    create(&h1, "ov", "10.219.0.0/16");
    let alpha = start(&h1, "ov", "alpha", None);
    let bravo = start(&h2, "ov", "bravo", None);
    let keep = start(&h2, "ov", "keep", None);
    resolves(&alpha, "bravo", ipv4_of(&bravo));
    resolves(&alpha, "keep", ipv4_of(&keep));

    // etcd goes away: names keep resolving, local and remote (as last
    // seen); a container stops meanwhile (its poststop needs no etcd).
    cluster.etcd().stop();
    resolves(&alpha, "alpha", ipv4_of(&alpha));
    resolves(&alpha, "keep", ipv4_of(&keep));
    unwire(&h2, bravo.id());

    // etcd is back: h2's resolver deletes bravo's name (retried), the
    // watches are set up again, and a new container's name reaches h1.
    cluster.etcd().restart();
    assert!(
        eventually(Duration::from_secs(30), || a_of(&alpha, "bravo").is_empty()),
        "bravo's name goes once etcd is back"
    );
    let charlie = start(&h2, "ov", "charlie", None);
    assert!(
        eventually(Duration::from_secs(30), || a_of(&alpha, "charlie")
            == vec![ipv4_of(&charlie)]),
        "a name put after the outage reaches h1"
    );
    resolves(&alpha, "keep", ipv4_of(&keep));
    resolves(&charlie, "alpha", ipv4_of(&alpha));
}

/// `nslookup NAME` inside a real container, through its own
/// /etc/resolv.conf: everything it printed.
fn nslookup(c: &wirehook_tests::e2e::E2eContainer<'_>, name: &str) -> String {
    let out = c.exec(&["nslookup", name]);
    format!("{}{}", out.stdout_str(), out.stderr_str())
}

#[test]
fn runc_containers_on_two_hosts_find_each_other_by_name() {
    use wirehook_tests::e2e::{prepare, E2eContainer};
    let cluster = Cluster::with_etcd("ovnrunc");
    let (h1, _u1) = add_host(&cluster, 1);
    let (h2, _u2) = add_host(&cluster, 2);
    create(&h1, "ov", "10.220.0.0/16");
    let token = format!("overlay-names-{}", h2.name());
    let db_b = Bundle::busybox(
        &h2.root().join("db"),
        &["httpd", "-f", "-p", "80", "-h", "/var/www"],
        &[
            ("io.wirehook.network", "ov"),
            ("io.wirehook.name", "db"),
            ("io.wirehook.aliases", "mysql"),
        ],
    );
    std::fs::write(
        db_b.rootfs().join("var/www/index.html"),
        format!("{token}\n"),
    )
    .unwrap();
    prepare(&h2, &db_b);
    let cli_b = Bundle::busybox(
        &h1.root().join("cli"),
        &["sleep", "3600"],
        &[("io.wirehook.network", "ov"), ("io.wirehook.name", "cli")],
    );
    prepare(&h1, &cli_b);
    let db = E2eContainer::start(Runtime::Runc, &h2, &db_b, &h2.unique_id("db"));
    let cli = E2eContainer::start(Runtime::Runc, &h1, &cli_b, &h1.unique_id("cli"));
    // h2 joined first and learns of h1 on its next pass (no agents here).
    h2.wirehook(&["overlay", "reconcile"], None)
        .expect_success("reconcile on h2");
    let db_ip = db.ipv4("eth0").expect("db has eth0");

    // The container's own programs, through its own resolv.conf.
    for name in ["db", "mysql", "db.ov"] {
        assert!(
            eventually(PROPAGATE, || nslookup(&cli, name)
                .contains(&format!("Address: {db_ip}"))),
            "nslookup {name} on h1:\n{}",
            nslookup(&cli, name)
        );
    }
    let page = cli.exec(&["wget", "-q", "-O", "-", "http://mysql/"]);
    assert!(
        page.stdout_str().contains(&token),
        "wget http://mysql/ from h1 reaches db on h2: {}",
        page.report()
    );

    // runc delete runs poststop on h2: the name goes from h1 too.
    db.stop().expect_success("runc delete db");
    assert!(
        eventually(PROPAGATE, || !nslookup(&cli, "db")
            .contains(&format!("Address: {db_ip}"))),
        "db still resolves on h1:\n{}",
        nslookup(&cli, "db")
    );
    cli.stop().expect_success("runc delete cli");
}

/// `network connect` of a running container to an overlay network
/// publishes its names there for the other hosts (its `--alias` too), and
/// `disconnect` takes them away from every host; the key follows.
#[test]
fn connect_and_disconnect_follow_across_hosts() {
    let cluster = Cluster::with_etcd("ovnc");
    let (h1, _u1) = add_host(&cluster, 1);
    let (h2, _u2) = add_host(&cluster, 2);
    create(&h1, "ovc", "10.216.0.0/16");
    create(&h1, "ovd", "10.217.0.0/16");

    let app = start(&h1, "ovd", "app", None);
    let db = start(&h2, "ovc", "db", None);
    nxdomain(&app, "db");
    h1.wirehook(
        &["network", "connect", "--alias", "api", "ovc", app.id()],
        None,
    )
    .expect_success("network connect ovc app");
    let app_ip = support::addr_of(&app.addrs_json(), "eth1", false)
        .expect("connect gave app an address on ovc (eth1)")
        .0;
    // db on the other host resolves the connected container by name,
    // alias and NAME.NETWORK, and app resolves db.
    resolves(&db, "app", app_ip);
    resolves(&db, "api", app_ip);
    resolves(&db, "app.ovc", app_ip);
    resolves(&app, "db", ipv4_of(&db));
    let key = format!("/wirehook/v1/names/ovc/h1/{}", app.id());
    assert!(name_keys(&cluster).contains(&key), "{key} written");

    h1.wirehook(&["network", "disconnect", "ovc", app.id()], None)
        .expect_success("network disconnect ovc app");
    assert!(
        eventually(PROPAGATE, || a_of(&db, "app").is_empty()
            && a_of(&db, "api").is_empty()),
        "app's names still resolve on h2 after disconnect"
    );
    nxdomain(&app, "db");
    assert!(
        eventually(PROPAGATE, || !name_keys(&cluster).contains(&key)),
        "{key} deleted"
    );
    unwire(&h1, app.id());
    unwire(&h2, db.id());
}
