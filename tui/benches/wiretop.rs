//! wiretop's benchmark: 1000 namespaces of 2-3 links each (loopback, a
//! veth to a bridge, every other one a second veth), then side by side:
//! one full snapshot (cold: sockets opened; warm: a tick) against
//! `ip -all netns exec ip -j -s link show`, and the real binary's CPU and
//! resident memory over 10 one-second ticks.
//!
//! Run as root: `cargo bench -p wiretop` (`WIRETOP_BENCH_N=200` for fewer).

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wiretop::source::{OsSource, Source};

fn ip_batch(lines: &str) {
    let mut c = Command::new("ip")
        .args(["-force", "-batch", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("ip");
    c.stdin.take().unwrap().write_all(lines.as_bytes()).unwrap();
    let st = c.wait().unwrap();
    assert!(st.success(), "ip -batch failed");
}

struct Cleanup(Vec<String>);
impl Drop for Cleanup {
    fn drop(&mut self) {
        let s: String = self.0.iter().map(|n| format!("netns del {n}\n")).collect();
        ip_batch(&s);
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // cargo test --benches / --list: nothing to do
    }
    let n: usize = std::env::var("WIRETOP_BENCH_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let tag = format!("wtb{}", std::process::id());
    let host = format!("{tag}-host");
    let names: Vec<String> = (0..n).map(|i| format!("{tag}-{i}")).collect();
    let mut all = names.clone();
    all.push(host.clone());
    let _cleanup = Cleanup(all);
    let t = Instant::now();
    let mut b = format!("netns add {host}\n");
    for nm in &names {
        b.push_str(&format!("netns add {nm}\n"));
    }
    ip_batch(&b);
    let mut b = "link add br0 type bridge\nlink set br0 up\n".to_string();
    for (i, nm) in names.iter().enumerate() {
        b.push_str(&format!(
            "link add h{i} type veth peer name eth0 netns {nm}\nlink set h{i} master br0 up\n"
        ));
        if i % 2 == 0 {
            b.push_str(&format!(
                "link add g{i} type veth peer name eth1 netns {nm}\n"
            ));
        }
    }
    let mut c = Command::new("ip")
        .args(["-n", &host, "-force", "-batch", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(b.as_bytes()).unwrap();
    assert!(c.wait().unwrap().success());
    let links: usize = n * 2 + n.div_ceil(2);
    println!(
        "setup: {n} namespaces, {links} links in them, in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // wiretop: cold (opens every socket) and warm ticks.
    let mut src = OsSource::new(None);
    let t = Instant::now();
    let s = src.sample();
    let cold = t.elapsed().as_secs_f64();
    let seen = s
        .namespaces
        .iter()
        .filter(|ns| ns.names.iter().any(|x| x.name.starts_with(&tag)))
        .count();
    assert!(seen > n, "wiretop saw {seen} of the {} namespaces", n + 1);
    let mut warm = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        let s = src.sample();
        warm.push(t.elapsed().as_secs_f64());
        assert!(s.namespaces.len() > n);
    }
    let warm = median(warm);
    println!("wiretop reader stats: {:?}", src.reader_stats());

    // ip -all netns exec ip -j -s link show
    let mut ipt = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let out = Command::new("ip")
            .args(["-all", "netns", "exec", "ip", "-j", "-s", "link", "show"])
            .output()
            .unwrap();
        ipt.push(t.elapsed().as_secs_f64());
        assert!(!out.stdout.is_empty());
    }
    let ipt = median(ipt);

    // The real binary over 10 ticks at 1 s: CPU and peak RSS.
    let bin = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(|p| p.parent())
        .unwrap()
        .join("wiretop");
    let cpu_line = if bin.exists() {
        let t = Instant::now();
        #[allow(clippy::zombie_processes)] // reaped by wait4 below
        let child = Command::new(&bin)
            .args(["--json", "--interval", "1", "--count", "11"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let mut status = 0;
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: wait4 on our own child with valid pointers.
        unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        let wall = t.elapsed().as_secs_f64();
        let cpu = ru.ru_utime.tv_sec as f64
            + ru.ru_utime.tv_usec as f64 / 1e6
            + ru.ru_stime.tv_sec as f64
            + ru.ru_stime.tv_usec as f64 / 1e6;
        format!(
            "wiretop --json --interval 1, 11 samples ({wall:.1} s): CPU {:.1}% of one core (first sample included), max RSS {:.1} MiB",
            cpu / wall * 100.0,
            ru.ru_maxrss as f64 / 1024.0
        )
    } else {
        format!(
            "(build the binary for the CPU/RSS figure: {} missing)",
            bin.display()
        )
    };

    println!();
    println!("| measurement ({n} namespaces + host) | time |");
    println!("|---|--:|");
    println!(
        "| wiretop first snapshot (opens {n} sockets, dumps all) | {:.0} ms |",
        cold * 1e3
    );
    println!(
        "| wiretop snapshot per tick (counters; median of 10) | {:.1} ms |",
        warm * 1e3
    );
    println!(
        "| `ip -all netns exec ip -j -s link show` (median of 3) | {:.0} ms |",
        ipt * 1e3
    );
    println!("| ratio, first snapshot | {:.0}× |", ipt / cold);
    println!("| ratio, per tick | {:.0}× |", ipt / warm);
    println!("{cpu_line}");
    let _ = Duration::from_secs(0);
}
