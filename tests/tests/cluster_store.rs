//! The cluster store's etcd backend against a real etcd (Debian's
//! `etcd-server`) running in each test's own network namespace: reads and
//! writes, the create-if-absent transaction under a race, leases, watches
//! (order, lease expiry, compaction, etcd dying and coming back), and how
//! the client behaves when endpoints are dead: quick one-line errors and
//! failover to the next endpoint.
//!
//! The client runs inside the namespace too (see [`inside`]): every packet
//! stays on that namespace's loopback.

use std::net::{Ipv4Addr, TcpListener};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use wirehook_shared::cluster::{
    self, Etcd, EventKind, Store, StoreConfig, Watch, WatchMsg, WatchStopper,
};
use wirehook_shared::netns::NetNs;
use wirehook_shared::paths::Paths;
use wirehook_tests::*;

const PORT: u16 = 2379;
const URL: &str = "etcd://127.0.0.1:2379";

/// One test's host with an etcd in it. Field order matters: etcd is
/// dropped (killed) before the host's namespace goes.
struct Env {
    etcd: EtcdServer,
    host: TestHost,
}

fn env(tag: &str) -> Env {
    let host = TestHost::new(tag);
    let etcd = EtcdServer::start(host.netns_path(), Ipv4Addr::LOCALHOST, PORT);
    Env { etcd, host }
}

/// Runs `f` on a thread inside the host's namespace (threads it spawns are
/// in there too) and returns its result; a panic in `f` fails the test.
fn inside<T: Send>(env: &Env, f: impl FnOnce() -> T + Send) -> T {
    let ns = NetNs::open(env.host.netns_path()).expect("open the host namespace");
    std::thread::scope(|s| {
        s.spawn(|| {
            let _in = ns.enter().expect("enter the host namespace");
            f()
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

fn client_with(url: &str, timeout: Option<Duration>) -> Etcd {
    Etcd::new(&StoreConfig {
        url: Some(url.into()),
        timeout,
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("client for {url}: {e}"))
}

fn client() -> Etcd {
    client_with(URL, None)
}

/// Reads a watch on its own thread, so a test waits with a deadline
/// instead of blocking in `next()`.
fn forward(
    watch: Watch,
) -> (
    Receiver<Option<wirehook_shared::Result<WatchMsg>>>,
    WatchStopper,
) {
    let stopper = watch.stopper();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut watch = watch;
        loop {
            let msg = watch.next();
            let end = !matches!(msg, Some(Ok(WatchMsg::Events { .. })));
            if tx.send(msg).is_err() || end {
                return;
            }
        }
    });
    (rx, stopper)
}

/// Collects events from a forwarded watch until `n` arrived.
fn events(
    rx: &Receiver<Option<wirehook_shared::Result<WatchMsg>>>,
    n: usize,
    within: Duration,
) -> Vec<(EventKind, String, Vec<u8>, i64)> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    while got.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Some(Ok(WatchMsg::Events { events, revision }))) => {
                if let Some(last) = events.last() {
                    assert_eq!(revision, last.kv.mod_revision, "revision of a batch");
                }
                got.extend(
                    events
                        .into_iter()
                        .map(|e| (e.kind, e.kv.key, e.kv.value, e.kv.mod_revision)),
                );
            }
            other => panic!("waiting for {n} events, have {got:?}, then: {other:?}"),
        }
    }
    got
}

fn one_line(err: &wirehook_shared::Error) -> String {
    let s = err.to_string();
    assert!(!s.contains('\n'), "error spans lines: {s:?}");
    s
}

#[test]
fn reads_writes_and_deletes() {
    let env = env("kv");
    inside(&env, || {
        let paths = Paths::under(env.host.root());
        let s = cluster::open(
            &StoreConfig {
                url: Some(URL.into()),
                ..Default::default()
            },
            &paths,
        )
        .unwrap();
        assert_eq!(s.describe(), "etcd http://127.0.0.1:2379");
        s.put("/t/b", b"2", None).unwrap();
        s.put("/t/a", b"1", None).unwrap();
        s.put("/t/a/x", b"", None).unwrap();
        s.put("/u", b"other", None).unwrap();

        let l = s.range("/t/").unwrap();
        let keys: Vec<&str> = l.kvs.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(keys, ["/t/a", "/t/a/x", "/t/b"]);
        assert_eq!(l.kvs[0].value, b"1");
        assert_eq!(l.kvs[1].value, b"");
        let newest = l.kvs.iter().map(|kv| kv.mod_revision).max().unwrap();
        assert!(l.revision > newest, "the /u put came later: {l:?}");

        let a = s.get("/t/a").unwrap().unwrap();
        assert_eq!(a.create_revision, a.mod_revision);
        assert_eq!(a.lease, 0);
        s.put("/t/a", b"1b", None).unwrap();
        let a2 = s.get("/t/a").unwrap().unwrap();
        assert_eq!(a2.create_revision, a.create_revision);
        assert!(a2.mod_revision > a.mod_revision);
        assert_eq!(a2.value, b"1b");
        assert_eq!(s.get("/t/nope").unwrap(), None);
        // `get` is exact, not a prefix.
        assert_eq!(s.get("/t").unwrap(), None);

        s.delete(&["/t/a", "/t/nope"]).unwrap();
        assert_eq!(s.get("/t/a").unwrap(), None);
        assert!(s.get("/t/a/x").unwrap().is_some());
        s.delete(&[]).unwrap();
        assert_eq!(s.delete_prefix("/t/").unwrap(), 2);
        assert_eq!(s.delete_prefix("/t/").unwrap(), 0);
        assert!(s.delete_prefix("").is_err());
        assert!(s.range("/t/").unwrap().kvs.is_empty());
        let all = s.range("").unwrap();
        assert_eq!(all.kvs.len(), 1);
        assert_eq!(all.kvs[0].key, "/u");
        assert!(all.revision > l.revision);
    });
}

#[test]
fn racing_creates_have_exactly_one_winner() {
    let env = env("create");
    inside(&env, || {
        let n = 8;
        let barrier = Arc::new(Barrier::new(n));
        let won: Vec<usize> = std::thread::scope(|sc| {
            let handles: Vec<_> = (0..n)
                .map(|i| {
                    let barrier = barrier.clone();
                    sc.spawn(move || {
                        let s = client();
                        let v = format!("host-{i}");
                        let mine = format!("/hosts/h{i}");
                        barrier.wait();
                        s.create(&[
                            ("/subnets/10.1.0.0-24", v.as_bytes()),
                            (&mine, v.as_bytes()),
                        ])
                        .unwrap()
                    })
                })
                .collect();
            handles
                .into_iter()
                .enumerate()
                .filter_map(|(i, h)| h.join().unwrap().then_some(i))
                .collect()
        });
        assert_eq!(won.len(), 1, "winners: {won:?}");
        let s = client();
        let want = format!("host-{}", won[0]);
        let claim = s.get("/subnets/10.1.0.0-24").unwrap().unwrap();
        assert_eq!(claim.value, want.as_bytes());
        // The loser's other key was not put either.
        let hosts = s.range("/hosts/").unwrap();
        assert_eq!(hosts.kvs.len(), 1, "{hosts:?}");
        assert_eq!(hosts.kvs[0].key, format!("/hosts/h{}", won[0]));
        assert_eq!(hosts.kvs[0].create_revision, claim.create_revision);

        // One existing key among new ones: nothing is put.
        assert!(!s
            .create(&[("/new/1", b"x"), ("/subnets/10.1.0.0-24", b"y")])
            .unwrap());
        assert_eq!(s.get("/new/1").unwrap(), None);
        assert!(s.create(&[("/new/1", b"x"), ("/new/2", b"y")]).unwrap());
        assert!(s.create(&[("/dup", b"x"), ("/dup", b"y")]).is_err());
    });
}

#[test]
fn lease_keepalive_and_revoke() {
    let env = env("lease");
    inside(&env, || {
        let s = client();
        let id = s.lease_grant(30).unwrap();
        s.put("/live/h1", b"10.0.0.1", Some(id)).unwrap();
        s.put("/live/h2", b"10.0.0.2", Some(id)).unwrap();
        assert_eq!(s.get("/live/h1").unwrap().unwrap().lease, id);
        let ttl = s.lease_keepalive(id).unwrap();
        assert!(matches!(ttl, Some(t) if t > 0 && t <= 30), "{ttl:?}");
        s.lease_revoke(id).unwrap();
        assert!(s.range("/live/").unwrap().kvs.is_empty());
        assert_eq!(s.lease_keepalive(id).unwrap(), None);
        // Revoking again is fine; putting with a dead lease is not.
        s.lease_revoke(id).unwrap();
        let err = s.put("/live/h1", b"x", Some(id)).unwrap_err();
        let msg = one_line(&err);
        assert!(msg.contains("lease not found"), "{msg}");
        assert!(msg.contains("http://127.0.0.1:2379"), "{msg}");
    });
}

#[test]
fn lease_expiry_deletes_the_key_and_the_watch_sees_it() {
    let env = env("expiry");
    inside(&env, || {
        let s = client();
        let id = s.lease_grant(1).unwrap();
        s.put("/live/h1", b"x", Some(id)).unwrap();
        s.put("/live/keep", b"y", None).unwrap();
        let rev = s.range("/live/").unwrap().revision;
        let (rx, stop) = forward(s.watch("/live/", rev + 1).unwrap());
        let got = events(&rx, 1, Duration::from_secs(15));
        assert_eq!(got[0].0, EventKind::Delete);
        assert_eq!(got[0].1, "/live/h1");
        assert!(got[0].2.is_empty());
        assert!(got[0].3 > rev);
        assert_eq!(s.get("/live/h1").unwrap(), None);
        assert!(s.get("/live/keep").unwrap().is_some());
        assert_eq!(s.lease_keepalive(id).unwrap(), None);
        stop.stop();
        assert!(matches!(rx.recv_timeout(Duration::from_secs(5)), Ok(None)));
    });
}

#[test]
fn watch_delivers_changes_in_order_from_a_revision() {
    let env = env("watch");
    inside(&env, || {
        let s = client();
        s.put("/w/a", b"1", None).unwrap();
        let start = s.get("/w/a").unwrap().unwrap().mod_revision;
        s.put("/w/b", b"2", None).unwrap();
        s.delete(&["/w/a"]).unwrap();
        s.put("/x/outside", b"-", None).unwrap();
        assert!(s.create(&[("/w/c", b"3"), ("/w/d", b"4")]).unwrap());
        s.put("/w/b", b"2b", None).unwrap();

        let (rx, stop) = forward(s.watch("/w/", start).unwrap());
        let got = events(&rx, 6, Duration::from_secs(10));
        let seen: Vec<(EventKind, &str, &[u8])> = got
            .iter()
            .map(|(k, key, v, _)| (*k, key.as_str(), v.as_slice()))
            .collect();
        assert_eq!(
            seen,
            [
                (EventKind::Put, "/w/a", &b"1"[..]),
                (EventKind::Put, "/w/b", b"2"),
                (EventKind::Delete, "/w/a", b""),
                (EventKind::Put, "/w/c", b"3"),
                (EventKind::Put, "/w/d", b"4"),
                (EventKind::Put, "/w/b", b"2b"),
            ]
        );
        let revs: Vec<i64> = got.iter().map(|e| e.3).collect();
        assert_eq!(revs[0], start);
        assert!(revs.windows(2).all(|w| w[0] <= w[1]), "{revs:?}");
        assert_eq!(revs[3], revs[4], "one create, one revision");

        // Changes made while the watch runs arrive too.
        s.put("/w/live", b"5", None).unwrap();
        s.delete_prefix("/w/").unwrap();
        let live = events(&rx, 5, Duration::from_secs(10));
        assert_eq!(live[0].0, EventKind::Put);
        assert_eq!(live[0].1, "/w/live");
        let deleted: Vec<&str> = live[1..].iter().map(|e| e.1.as_str()).collect();
        assert_eq!(deleted, ["/w/b", "/w/c", "/w/d", "/w/live"]);
        assert!(live[1..].iter().all(|e| e.3 == live[1].3), "one revision");
        assert!(live[1..].iter().all(|e| e.0 == EventKind::Delete));
        stop.stop();
    });
}

#[test]
fn watch_from_a_compacted_revision_says_compacted() {
    let env = env("compact");
    inside(&env, || {
        let s = client();
        for i in 0..5 {
            s.put("/c/k", format!("{i}").as_bytes(), None).unwrap();
        }
        let rev = s.range("/c/").unwrap().revision;
        s.compact(rev).unwrap();
        let mut w = s.watch("/c/", 2).unwrap();
        match w.next() {
            Some(Ok(WatchMsg::Compacted { compact_revision })) => {
                assert_eq!(compact_revision, rev)
            }
            other => panic!("expected Compacted, got {other:?}"),
        }
        assert!(w.next().is_none(), "the watch is over after Compacted");
        // What the caller does next: re-list, watch from there.
        let l = s.range("/c/").unwrap();
        assert_eq!(l.kvs[0].value, b"4");
        let (rx, stop) = forward(s.watch("/c/", l.revision + 1).unwrap());
        s.put("/c/k", b"5", None).unwrap();
        let got = events(&rx, 1, Duration::from_secs(10));
        assert_eq!(got[0].2, b"5");
        stop.stop();
    });
}

#[test]
fn watch_ends_when_etcd_dies_and_works_after_restart() {
    let env = env("restart");
    inside(&env, || {
        let s = client();
        s.put("/r/kept", b"data", None).unwrap();
        let (rx, _stop) = forward(s.watch("/r/", 0).unwrap());
        s.put("/r/one", b"1", None).unwrap();
        events(&rx, 1, Duration::from_secs(10));

        env.etcd.stop();
        let t0 = Instant::now();
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Some(Err(e))) => {
                let msg = one_line(&e);
                assert!(msg.contains("/r/") && msg.contains("ended"), "{msg}");
            }
            Ok(None) | Err(mpsc::RecvTimeoutError::Disconnected) => {}
            other => panic!("the watch went on after etcd died: {other:?}"),
        }
        assert!(t0.elapsed() < Duration::from_secs(5));
        // While etcd is down, calls fail quickly.
        let t0 = Instant::now();
        let err = s.get("/r/kept").unwrap_err();
        assert!(one_line(&err).contains("cannot reach etcd"), "{err}");
        assert!(t0.elapsed() < Duration::from_secs(4));
        assert!(s.watch("/r/", 0).is_err());

        env.etcd.restart();
        // The same client works again, and the data survived.
        let kept = s.get("/r/kept").unwrap().unwrap();
        assert_eq!(kept.value, b"data");
        let l = s.range("/r/").unwrap();
        assert_eq!(l.kvs.len(), 2);
        let (rx, stop) = forward(s.watch("/r/", l.revision + 1).unwrap());
        s.put("/r/two", b"2", None).unwrap();
        let got = events(&rx, 1, Duration::from_secs(10));
        assert_eq!(got[0].1, "/r/two");
        stop.stop();
        assert!(matches!(rx.recv_timeout(Duration::from_secs(5)), Ok(None)));
    });
}

/// Drops TCP to `port` on the way in, so connecting there hangs until the
/// client gives up (a host that is down, as seen from the network).
fn blackhole(host: &TestHost, port: u16) {
    host.exec(&["nft", "add", "table", "inet", "blackhole"])
        .expect_success("nft add table");
    host.exec(&[
        "nft",
        "add chain inet blackhole in { type filter hook input priority 0; policy accept; }",
    ])
    .expect_success("nft add chain");
    host.exec(&[
        "nft",
        &format!("add rule inet blackhole in tcp dport {port} drop"),
    ])
    .expect_success("nft add rule");
}

#[test]
fn dead_endpoints_fail_within_the_timeout_with_one_line() {
    let env = env("dead");
    blackhole(&env.host, 9);
    inside(&env, || {
        // Nothing listens: refused at once.
        let s = client_with("etcd://127.0.0.1:1", None);
        let t0 = Instant::now();
        let msg = one_line(&s.range("/").unwrap_err());
        assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
        assert_eq!(
            msg,
            "cluster store: cannot reach etcd at http://127.0.0.1:1: connection refused \
             (check `store` in /etc/wirehook/config.json)"
        );
        let err = s.watch("/", 0).unwrap_err();
        assert!(one_line(&err).contains("connection refused"), "{err}");

        // No answer to the connection attempt: gives up after ~1 s.
        let s = client_with("etcd://127.0.0.1:9", Some(Duration::from_secs(3)));
        let t0 = Instant::now();
        let msg = one_line(&s.put("/k", b"v", None).unwrap_err());
        let took = t0.elapsed();
        eprintln!("silent endpoint ({took:?}): {msg}");
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(2),
            "{took:?}"
        );
        assert!(
            msg.contains("http://127.0.0.1:9: no answer within 1 s"),
            "{msg}"
        );

        // Connected, but no answer to the request: the call's timeout.
        let silent = TcpListener::bind("127.0.0.1:3000").unwrap();
        let s = client_with("etcd://127.0.0.1:3000", Some(Duration::from_millis(1500)));
        let t0 = Instant::now();
        let msg = one_line(&s.get("/k").unwrap_err());
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_millis(1400) && took < Duration::from_millis(2500),
            "{took:?}"
        );
        assert!(
            msg.contains("http://127.0.0.1:3000: no answer within 1.5 s"),
            "{msg}"
        );
        let t0 = Instant::now();
        assert!(s.watch("/", 0).is_err());
        assert!(t0.elapsed() < Duration::from_millis(2500));
        drop(silent);

        // Many dead endpoints: the whole call still ends within its time.
        let s = client_with(
            "etcd://127.0.0.1:9,127.0.0.2:9,127.0.0.3:9,127.0.0.1:1",
            Some(Duration::from_secs(2)),
        );
        let t0 = Instant::now();
        let msg = one_line(&s.range("/").unwrap_err());
        let took = t0.elapsed();
        eprintln!("four dead endpoints ({took:?}): {msg}");
        assert!(took < Duration::from_millis(2600), "{took:?}");
        assert!(
            msg.starts_with("cluster store: cannot reach etcd at any of"),
            "{msg}"
        );
        for ep in ["127.0.0.1:9", "127.0.0.2:9", "127.0.0.3:9", "127.0.0.1:1"] {
            assert!(msg.contains(ep), "{ep} missing from {msg}");
        }
        assert!(msg.contains("not tried"), "{msg}");
    });
}

#[test]
fn fails_over_to_a_live_endpoint() {
    let env = env("failover");
    blackhole(&env.host, 9);
    inside(&env, || {
        // First endpoint refuses: the second answers, no time lost.
        let s = client_with("etcd://127.0.0.1:1,127.0.0.1:2379", None);
        assert_eq!(
            s.endpoints(),
            ["http://127.0.0.1:1", "http://127.0.0.1:2379"]
        );
        s.put("/f/a", b"1", None).unwrap();
        assert_eq!(s.get("/f/a").unwrap().unwrap().value, b"1");

        // First endpoint silent: ~1 s lost once, then the live one is
        // remembered and asked first.
        let s = client_with("etcd://127.0.0.1:9,127.0.0.1:2379", None);
        let t0 = Instant::now();
        assert_eq!(s.get("/f/a").unwrap().unwrap().value, b"1");
        let first = t0.elapsed();
        assert!(first >= Duration::from_millis(900), "{first:?}");
        let t0 = Instant::now();
        assert!(s.create(&[("/f/b", b"2")]).unwrap());
        assert!(
            t0.elapsed() < Duration::from_millis(500),
            "{:?}",
            t0.elapsed()
        );

        // Watches fail over too.
        let s = client_with("etcd://127.0.0.1:1,127.0.0.1:2379", None);
        let w = s.watch("/f/", 1).unwrap();
        assert_eq!(w.endpoint(), "http://127.0.0.1:2379");
        let (rx, stop) = forward(w);
        let got = events(&rx, 2, Duration::from_secs(10));
        assert_eq!(got[0].1, "/f/a");
        assert_eq!(got[1].1, "/f/b");
        stop.stop();
    });
}

#[test]
fn tls_with_client_certificates() {
    let host = TestHost::new("tls");
    let tls = EtcdTls::generate(&host.root().join("tls"), Ipv4Addr::LOCALHOST.into());
    let stranger = EtcdTls::generate(&host.root().join("other-ca"), Ipv4Addr::LOCALHOST.into());
    let etcd = EtcdServer::start_tls(host.netns_path(), Ipv4Addr::LOCALHOST, PORT, &tls);
    assert_eq!(etcd.store_url(), "etcds://127.0.0.1:2379");
    let env = Env { etcd, host };
    inside(&env, || {
        // TLS files in the config switch etcd:// to https.
        let cfg = StoreConfig {
            url: Some(URL.into()),
            ca: Some(tls.ca.clone()),
            cert: Some(tls.client_cert.clone()),
            key: Some(tls.client_key.clone()),
            timeout: None,
        };
        let s = Etcd::new(&cfg).unwrap();
        assert_eq!(s.endpoints(), ["https://127.0.0.1:2379"]);
        s.put("/tls/a", b"1", None).unwrap();
        assert!(s.create(&[("/tls/b", b"2")]).unwrap());
        let id = s.lease_grant(30).unwrap();
        assert!(s.lease_keepalive(id).unwrap().is_some());
        s.lease_revoke(id).unwrap();
        let l = s.range("/tls/").unwrap();
        assert_eq!(l.kvs.len(), 2);
        let (rx, stop) = forward(s.watch("/tls/", l.revision + 1).unwrap());
        s.put("/tls/c", b"3", None).unwrap();
        assert_eq!(events(&rx, 1, Duration::from_secs(10))[0].1, "/tls/c");
        stop.stop();

        // Without a client certificate etcd ends the handshake.
        let anonymous = Etcd::new(&StoreConfig {
            cert: None,
            key: None,
            ..cfg.clone()
        })
        .unwrap();
        let msg = one_line(&anonymous.get("/tls/a").unwrap_err());
        eprintln!("without a client certificate: {msg}");
        assert!(msg.contains("https://127.0.0.1:2379"), "{msg}");
        assert!(msg.contains("client certificate"), "{msg}");
        assert!(anonymous.watch("/tls/", 0).is_err());

        // A CA that did not sign etcd's certificate: not trusted.
        let distrustful = Etcd::new(&StoreConfig {
            ca: Some(stranger.ca.clone()),
            ..cfg.clone()
        })
        .unwrap();
        let msg = one_line(&distrustful.get("/tls/a").unwrap_err());
        eprintln!("with another CA: {msg}");
        assert!(msg.contains("https://127.0.0.1:2379"), "{msg}");
        assert!(msg.to_lowercase().contains("certificate"), "{msg}");
        let err = distrustful.watch("/tls/", 0).unwrap_err();
        assert!(
            one_line(&err).to_lowercase().contains("certificate"),
            "{err}"
        );
    });
}
