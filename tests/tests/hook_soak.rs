//! Concurrency and soak: many starts at once on one small network, and
//! hundreds of start/stop cycles of mixed modes, after which the host holds
//! exactly what it held before (links, nft elements, files under the run
//! directory, and the resolver's open descriptors and memory).
//!
//! `WIREHOOK_SOAK_CYCLES=N` lengthens the soak (CI: 500; README's figure
//! comes from 10,000); with it set, the per-cycle time of the last tenth
//! is also compared with the first tenth's.

mod support;

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::Instant;

use support::*;
use wirehook_tests::*;

/// Run `f(i)` for every `i` in `0..n`, all at once; results in order.
fn all_at_once<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    std::thread::scope(|s| {
        let f = &f;
        let hs: Vec<_> = (0..n).map(|i| s.spawn(move || f(i))).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// The resolver of `host`'s run directory (`wirehook dns --run-dir ...`):
/// its pid, open descriptors and resident memory (KiB).
fn resolver(host: &TestHost) -> Option<(i32, usize, u64)> {
    let run = run_dir(host);
    let run = run.to_str()?;
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
        if args.get(1) == Some(&&b"dns"[..]) && args.contains(&run.as_bytes()) {
            let fds = std::fs::read_dir(e.path().join("fd")).ok()?.count();
            let status = std::fs::read_to_string(e.path().join("status")).ok()?;
            let rss = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))?
                .trim()
                .trim_end_matches(" kB")
                .parse()
                .ok()?;
            return Some((pid, fds, rss));
        }
    }
    None
}

/// Wait until no teardown is finishing.
fn settled(host: &TestHost) -> bool {
    eventually(60, || {
        !run_dir(host)
            .join("finishing")
            .read_dir()
            .is_ok_and(|mut d| d.next().is_some())
    })
}

#[test]
fn thirty_two_parallel_starts_on_a_24_fifty_times() {
    let host = TestHost::new("par32");
    host.wirehook(
        &["network", "create", "--subnet", "10.90.0.0/24", "n24"],
        None,
    )
    .expect_success("network create");
    // 32 container processes, wired under a new id each round.
    let cs: Vec<Container<'_>> = (0..32).map(|i| host.container(&format!("c{i}"))).collect();
    for round in 0..50 {
        let outs = all_at_once(32, |i| {
            let id = format!("{}-{round}", cs[i].id());
            let port = (20000 + i).to_string();
            let ports = format!("{port}:80");
            let out = setup_as(
                &host,
                &cs[i],
                &id,
                &[
                    ("io.wirehook.network", "n24"),
                    ("io.wirehook.ports", &ports),
                ],
            );
            (id, out)
        });
        let mut addrs = HashSet::new();
        for (i, (id, out)) in outs.iter().enumerate() {
            out.clone()
                .expect_success(&format!("round {round}: start of {id}"));
            let a: IpAddr = ipv4_of(&cs[i]);
            assert!(addrs.insert(a), "round {round}: {a} given twice");
        }
        assert_eq!(
            nft_elements(&host, "pub4_any").len(),
            32,
            "round {round}: one port each"
        );
        all_at_once(32, |i| unwire(&host, &outs[i].0));
        assert!(settled(&host), "round {round}: teardowns finish");
    }
    drop(cs);
    assert_clean(&host);
}

#[test]
fn eight_parallel_starts_on_a_29_take_exactly_the_free_addresses() {
    let host = TestHost::new("par29");
    host.wirehook(
        &["network", "create", "--subnet", "10.91.0.0/29", "n29"],
        None,
    )
    .expect_success("network create");
    let cs: Vec<Container<'_>> = (0..8).map(|i| host.container(&format!("c{i}"))).collect();
    let outs = all_at_once(8, |i| {
        setup(&host, &cs[i], &[("io.wirehook.network", "n29")])
    });
    // A /29 has 8 addresses: network, gateway and broadcast leave 5.
    let ok: Vec<usize> = (0..8).filter(|i| outs[*i].status.success()).collect();
    assert_eq!(ok.len(), 5, "exactly the free addresses");
    let addrs: HashSet<IpAddr> = ok.iter().map(|i| ipv4_of(&cs[*i])).collect();
    assert_eq!(addrs.len(), 5, "distinct");
    for (i, out) in outs.iter().enumerate().filter(|(i, _)| !ok.contains(i)) {
        let err = out.stderr_str();
        assert_eq!(err.trim().lines().count(), 1, "c{i}: {err}");
        assert!(err.contains("n29"), "c{i} names the network: {err}");
    }
    for i in ok {
        unwire(&host, cs[i].id());
    }
    drop(cs);
    assert_clean(&host);
}

#[test]
fn hundreds_of_mixed_cycles_leave_the_host_as_they_found_it() {
    let cycles: usize = std::env::var("WIREHOOK_SOAK_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let host = TestHost::new("soak");
    let up = host.uplink_n(1);
    create_lan_network(&host, "lan", up.host_ifname());
    // An owner for the container-shared cycles.
    let owner = host.container("owner");
    wire(&host, &owner, &[("io.wirehook.network", "bridge")]);
    let share = format!("container:{}", owner.id());
    let shared_bundle = owner.bundle(NetNsEntry::Path(owner.netns_path()));
    // 50 container processes serve every cycle.
    let cs: Vec<Container<'_>> = (0..50).map(|i| host.container(&format!("c{i}"))).collect();
    let run = |n: usize| {
        // Mixed: bridge with a port, none, container-shared, macvlan.
        let i = n % 50;
        let id = format!("{}-{n}", cs[i].id());
        let port = format!("{}:80", 30000 + i);
        let out = match n % 4 {
            0 => setup_as(
                &host,
                &cs[i],
                &id,
                &[
                    ("io.wirehook.network", "bridge"),
                    ("io.wirehook.ports", &port),
                ],
            ),
            1 => setup_as(&host, &cs[i], &id, &[("io.wirehook.network", "none")]),
            2 => host.wirehook_hook(
                "createRuntime",
                &owner.state_json(
                    &id,
                    "creating",
                    &[("io.wirehook.network", share.as_str())],
                    &shared_bundle,
                ),
            ),
            _ => setup_as(&host, &cs[i], &id, &[("io.wirehook.network", "lan")]),
        };
        out.expect_success(&format!("cycle {n}: start of {id}"));
        id
    };
    // One batch first, so every file and element that stays has been made.
    let batch = |from: usize| {
        let t = Instant::now();
        let ids = all_at_once(50, |k| run(from + k));
        all_at_once(50, |k| unwire(&host, &ids[k]));
        assert!(settled(&host), "cycles from {from}: teardowns finish");
        t.elapsed()
    };
    batch(0);
    let links = links_with_prefix(&host, "");
    let files = state_files(&run_dir(&host));
    let all_files = files_under(&run_dir(&host));
    let elements = nft_elements(&host, "pub4_any").len();
    // The resolver serves the owner throughout: the one long-lived process.
    let (dns_pid, dns_fds, dns_rss) = resolver(&host).expect("the resolver runs");
    let mut times = Vec::new();
    let mut n = 50;
    while n < 50 + cycles {
        times.push(batch(n));
        n += 50;
    }
    assert_eq!(
        links_with_prefix(&host, ""),
        links,
        "links after {cycles} cycles"
    );
    assert_eq!(
        state_files(&run_dir(&host)),
        files,
        "state files after {cycles} cycles"
    );
    assert_eq!(
        files_under(&run_dir(&host)),
        all_files,
        "files under the run directory after {cycles} cycles"
    );
    assert_eq!(
        nft_elements(&host, "pub4_any").len(),
        elements,
        "map elements"
    );
    let (pid_after, fds_after, rss_after) = resolver(&host).expect("the resolver runs");
    assert_eq!(pid_after, dns_pid, "the same resolver throughout");
    assert_eq!(fds_after, dns_fds, "the resolver's open descriptors");
    eprintln!("soak: resolver RSS {dns_rss} KiB before, {rss_after} KiB after");
    assert!(
        rss_after <= dns_rss + 1024,
        "the resolver's memory grew from {dns_rss} to {rss_after} KiB"
    );
    // Per-cycle time, first tenth against last tenth (reported; asserted
    // only on a long run, where a tenth is many batches).
    let tenth = (times.len() / 10).max(1);
    let mean =
        |ts: &[std::time::Duration]| ts.iter().sum::<std::time::Duration>() / ts.len() as u32;
    let first = mean(&times[..tenth]);
    let last = mean(&times[times.len() - tenth..]);
    let ratio = last.as_secs_f64() / first.as_secs_f64();
    eprintln!(
        "soak: {cycles} cycles in batches of 50; per batch first {first:?}, last {last:?} (x{ratio:.2})"
    );
    if cycles >= 10_000 {
        assert!(
            ratio <= 1.2,
            "the last tenth's cycles take x{ratio:.2} the first tenth's"
        );
    }
    drop(cs);
    unwire(&host, owner.id());
    assert_clean(&host);
}
