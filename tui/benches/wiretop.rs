//! wiretop's benchmark: 1000 namespaces of 2-3 links each (loopback, a
//! veth to a bridge in a test host namespace, every other one a second
//! veth), then:
//!
//! - one full snapshot (cold: sockets opened; warm: a tick) against
//!   `ip -all netns exec ip -j -s link show`;
//! - where a tick's time goes: discovery, netlink reading, rates, and the
//!   view (applying the sample and drawing a 200x50 frame);
//! - the real binary, interactive, in a tmux pane at 1 s refresh: CPU time
//!   from `/proc/PID/stat` (utime+stime) over 60 s after the first frame,
//!   and resident memory (VmRSS, VmHWM from `/proc/PID/status`);
//! - the real binary's JSON stream (`--json --interval 1`, 11 samples).
//!
//! Run as root: `cargo bench -p wiretop`. Knobs: `WIRETOP_BENCH_N=200`
//! (namespaces), `WIRETOP_BENCH_SECS=20` (the interactive run),
//! `WIRETOP_BENCH_SKIP_IP=1` (no `ip -all netns exec`, which takes half a
//! minute). Other work on the machine shows in the figures: run it on a
//! quiet one.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ratatui::backend::TestBackend;
use ratatui::Terminal;
use wirehook_shared::inspect::{Discovery, Reader};
use wirehook_shared::paths::Paths;
use wiretop::source::{OsSource, Source};
use wiretop::{ui, App};

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

    // Where a warm tick's time goes.
    let phases = phases(n);

    // ip -all netns exec ip -j -s link show
    let skip_ip = std::env::var_os("WIRETOP_BENCH_SKIP_IP").is_some();
    let mut ipt = Vec::new();
    for _ in 0..if skip_ip { 0 } else { 3 } {
        let t = Instant::now();
        let out = Command::new("ip")
            .args(["-all", "netns", "exec", "ip", "-j", "-s", "link", "show"])
            .output()
            .unwrap();
        ipt.push(t.elapsed().as_secs_f64());
        assert!(!out.stdout.is_empty());
    }
    let ipt = if skip_ip { f64::NAN } else { median(ipt) };

    // The interactive view, for real: the binary in a tmux pane.
    let secs: u64 = std::env::var("WIRETOP_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let inter = interactive(n, secs);

    // The real binary over 10 ticks at 1 s: CPU and peak RSS.
    let bin = std::path::PathBuf::from(env!("CARGO_BIN_EXE_wiretop"));
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
    println!("| measurement ({n} namespaces + test host) | figure |");
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
        "| per tick, CPU: discovery / netlink / rates / view (apply + draw 200x50), medians of 10 | {:.1} / {:.1} / {:.1} / {:.1} ms |",
        phases[0] * 1e3,
        phases[1] * 1e3,
        phases[2] * 1e3,
        phases[3] * 1e3
    );
    if !skip_ip {
        println!(
            "| `ip -all netns exec ip -j -s link show` (median of 3) | {:.0} ms |",
            ipt * 1e3
        );
        println!("| ratio, first snapshot | {:.0}× |", ipt / cold);
        println!("| ratio, per tick | {:.0}× |", ipt / warm);
    }
    println!(
        "| interactive (tmux pane, 1 s refresh), {secs} s after the first frame: CPU of one core | {:.2} % |",
        inter.cpu_percent
    );
    println!(
        "| interactive: CPU from start to the first frame (cold snapshot, terminal setup) | {:.0} ms |",
        inter.startup_cpu * 1e3
    );
    println!(
        "| interactive: resident memory at the end (VmRSS) / peak (VmHWM) | {:.1} / {:.1} MiB |",
        inter.rss_mib, inter.hwm_mib
    );
    println!("{cpu_line}");
    println!("interactive header at the end: {}", inter.header);
}

/// CPU time of the calling thread, seconds (wall time would count the
/// other work of a shared machine too).
fn thread_cpu() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec for the calling thread's clock.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// Medians over 10 warm ticks of: discovery, netlink reading, rates, and
/// the view (apply + draw), in CPU seconds of this thread (what the
/// kernel does for its system calls included).
fn phases(n: usize) -> [f64; 4] {
    let mut d = Discovery::new(Paths::resolve(None));
    let mut r = Reader::new();
    let mut app = App::new(1.0);
    let mut term = Terminal::new(TestBackend::new(200, 50)).unwrap();
    let first = r.read(&d.discover());
    let mut base = first.rate_base();
    app.apply(first);
    let mut v: [Vec<f64>; 4] = Default::default();
    for _ in 0..10 {
        let t = thread_cpu();
        let found = d.discover();
        v[0].push(thread_cpu() - t);
        let t = thread_cpu();
        let mut s = r.read_owned(found);
        v[1].push(thread_cpu() - t);
        assert!(s.namespaces.len() > n);
        let t = thread_cpu();
        s.apply_rates_from(&base);
        base = s.rate_base();
        v[2].push(thread_cpu() - t);
        let t = thread_cpu();
        app.apply(s);
        term.draw(|f| ui::draw(f, &mut app)).unwrap();
        v[3].push(thread_cpu() - t);
    }
    v.map(median)
}

struct Interactive {
    cpu_percent: f64,
    startup_cpu: f64,
    rss_mib: f64,
    hwm_mib: f64,
    header: String,
}

struct TmuxSession(String);
impl Drop for TmuxSession {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .output();
    }
}

fn tmux(args: &[&str]) -> String {
    let out = Command::new("tmux")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("tmux is needed (apt-get install tmux): {e}"));
    assert!(
        out.status.success(),
        "tmux {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// CPU seconds (utime + stime) of a process.
fn cpu_secs(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("wiretop is running");
    // Fields after "pid (comm) ": state is the 3rd field, utime the 14th.
    let rest = s.rsplit_once(')').unwrap().1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks as f64 / hz
}

fn status_kib(pid: u32, key: &str) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{key} in /proc/{pid}/status"))
}

/// The real binary in a tmux pane at 1 s refresh for `secs` seconds.
fn interactive(n: usize, secs: u64) -> Interactive {
    let bin = env!("CARGO_BIN_EXE_wiretop");
    let name = format!("wtbench-{}", std::process::id());
    let started = Instant::now();
    tmux(&[
        "new-session",
        "-d",
        "-s",
        &name,
        "-x",
        "200",
        "-y",
        "50",
        &format!("exec {bin} --interval 1"),
    ]);
    let _session = TmuxSession(name.clone());
    let pid: u32 = tmux(&["display", "-p", "-t", &name, "#{pane_pid}"])
        .trim()
        .parse()
        .expect("pane pid");
    // The first frame with every namespace: the header counts them.
    let header = |name: &str| -> String {
        tmux(&["capture-pane", "-p", "-t", name])
            .lines()
            .next()
            .unwrap_or("")
            .to_string()
    };
    loop {
        let h = header(&name);
        let count: usize = h
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        if count > n {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "wiretop showed no full frame in a minute: {h}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let c0 = cpu_secs(pid);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let c1 = cpu_secs(pid);
    let wall = t0.elapsed().as_secs_f64();
    Interactive {
        cpu_percent: (c1 - c0) / wall * 100.0,
        startup_cpu: c0,
        rss_mib: status_kib(pid, "VmRSS:") / 1024.0,
        hwm_mib: status_kib(pid, "VmHWM:") / 1024.0,
        header: header(&name),
    }
}
