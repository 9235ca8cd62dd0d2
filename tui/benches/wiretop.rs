//! wiretop's benchmark, in two shapes of namespaces:
//!
//! - `containers`: namespaces of 2-3 links each (loopback, a veth to a
//!   bridge in a test host namespace, every other one a second veth), as
//!   container hosts have them;
//! - `pairs`: namespaces joined to each other in veth pairs, every end
//!   ifindex 2 (the shape of network emulators and test labs, where only
//!   the namespace tells the ends apart);
//!
//! each at several sizes (250, 500 and 1000 namespaces, built up one on
//! the other), then:
//!
//! - at every size: the real binary's cold `wiretop --once --json` (its
//!   first run, which has nsids assigned, and the median of the next
//!   five), its system calls (`strace -f -c`, when strace is there), what
//!   the reader did (sockets, dumps, nsid requests), every veth checked
//!   to be paired with the right peer, against
//!   `ip -all netns exec ip -j -s link show`;
//! - at the largest size: warm ticks, where a tick's time goes
//!   (discovery, netlink reading, rates, and the view: applying the sample
//!   and drawing a 200x50 frame), the real binary interactive in a tmux
//!   pane at 1 s refresh (CPU time from `/proc/PID/stat`, utime+stime,
//!   over 60 s after the first frame; VmRSS and VmHWM from
//!   `/proc/PID/status`), and its JSON stream (`--json --interval 1`, 11
//!   samples).
//!
//! Run as root: `cargo bench -p wiretop`. Knobs: `WIRETOP_BENCH_N=250,500,1000`
//! (the sizes), `WIRETOP_BENCH_SHAPES=containers,pairs`,
//! `WIRETOP_BENCH_SECS=60` (the interactive run), `WIRETOP_BENCH_SKIP_IP=1`
//! (no `ip -all netns exec`, which takes seconds per run). Other work on
//! the machine shows in the figures: run it on a quiet one.

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ratatui::backend::TestBackend;
use ratatui::Terminal;
use wirehook_shared::inspect::{Discovery, NameSource, Reader, Snapshot};
use wirehook_shared::paths::Paths;
use wiretop::source::{OsSource, Source};
use wiretop::{ui, App};

fn ip_batch(netns: Option<&str>, lines: &str) {
    let mut c = Command::new("ip");
    if let Some(n) = netns {
        c.args(["-n", n]);
    }
    let mut c = c
        .args(["-force", "-batch", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("ip");
    c.stdin.take().unwrap().write_all(lines.as_bytes()).unwrap();
    let st = c.wait().unwrap();
    assert!(st.success(), "ip -batch failed");
}

/// The benchmark's namespaces, deleted on drop.
struct Netns(Vec<String>);
impl Drop for Netns {
    fn drop(&mut self) {
        let s: String = self.0.iter().map(|n| format!("netns del {n}\n")).collect();
        ip_batch(None, &s);
        self.0.clear();
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Shape {
    Containers,
    Pairs,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Containers => "containers",
            Shape::Pairs => "pairs",
        }
    }

    /// Links in the benchmark's namespaces at `n`, loopbacks included
    /// (the containers' test host: the bridge and the host ends).
    fn links(self, n: usize) -> usize {
        match self {
            Shape::Containers => 2 * n + n.div_ceil(2) + 2 + n + n.div_ceil(2),
            Shape::Pairs => 2 * n + 1,
        }
    }
}

/// The namespaces of one shape: `{tag}-host` (the bridge of the
/// containers shape) and `{tag}-0`, `{tag}-1`, ...
struct Lab {
    tag: String,
    shape: Shape,
    n: usize,
    netns: Netns,
}

impl Lab {
    fn new(shape: Shape) -> Lab {
        let tag = format!("wtb{}{}", std::process::id(), &shape.name()[..1]);
        let host = format!("{tag}-host");
        ip_batch(None, &format!("netns add {host}\n"));
        if shape == Shape::Containers {
            ip_batch(Some(&host), "link add br0 type bridge\nlink set br0 up\n");
        }
        Lab {
            tag,
            shape,
            n: 0,
            netns: Netns(vec![host]),
        }
    }

    fn ns(&self, i: usize) -> String {
        format!("{}-{i}", self.tag)
    }

    /// Add namespaces up to `n` in all.
    fn grow(&mut self, n: usize) {
        let new: Vec<usize> = (self.n..n).collect();
        let add: String = new
            .iter()
            .map(|&i| format!("netns add {}\n", self.ns(i)))
            .collect();
        ip_batch(None, &add);
        let names: Vec<String> = new.iter().map(|&i| self.ns(i)).collect();
        self.netns.0.extend(names);
        let mut b = String::new();
        for &i in &new {
            let nm = self.ns(i);
            match self.shape {
                Shape::Containers => {
                    b.push_str(&format!(
                        "link add h{i} type veth peer name eth0 netns {nm}\nlink set h{i} master br0 up\n"
                    ));
                    if i % 2 == 0 {
                        b.push_str(&format!(
                            "link add g{i} type veth peer name eth1 netns {nm}\n"
                        ));
                    }
                }
                Shape::Pairs if i % 2 == 1 => b.push_str(&format!(
                    "link add eth0 netns {} type veth peer name eth0 netns {nm}\n",
                    self.ns(i - 1)
                )),
                Shape::Pairs => {}
            }
        }
        ip_batch(Some(&format!("{}-host", self.tag)), &b);
        self.n = n;
    }

    /// Check every veth of the lab in `s`: its peer is in the right
    /// namespace and has the right name. Returns the number checked.
    fn check_pairs(&self, s: &Snapshot) -> usize {
        let name: HashMap<u64, &str> = s
            .namespaces
            .iter()
            .filter_map(|ns| {
                let n = ns.names.iter().find(|x| x.source == NameSource::Netns)?;
                Some((ns.inode, n.name.as_str()))
            })
            .collect();
        let prefix = format!("{}-", self.tag);
        let mut checked = 0;
        for ns in &s.namespaces {
            let Some(suffix) = name.get(&ns.inode).and_then(|n| n.strip_prefix(&prefix)) else {
                continue;
            };
            for l in ns.links.iter().filter(|l| l.kind == "veth") {
                let want: (String, String) = match (self.shape, suffix.parse::<usize>()) {
                    (Shape::Pairs, Ok(i)) => (self.ns(i ^ 1), "eth0".into()),
                    (Shape::Containers, Ok(i)) => (
                        format!("{}-host", self.tag),
                        format!("{}{i}", if l.name == "eth0" { "h" } else { "g" }),
                    ),
                    (_, Err(_)) => {
                        let (ab, i) = l.name.split_at(1);
                        let dev = if ab == "h" { "eth0" } else { "eth1" };
                        (self.ns(i.parse().expect("h<i> or g<i>")), dev.into())
                    }
                };
                let p = l.peer.as_ref().expect("a veth has a peer");
                let got = (
                    p.netns_inode
                        .and_then(|i| name.get(&i))
                        .map(|n| n.to_string()),
                    p.ifname.clone(),
                );
                assert_eq!(
                    got,
                    (Some(want.0), Some(want.1)),
                    "{} in {}: wrong peer",
                    l.name,
                    self.ns(suffix.parse().unwrap_or(usize::MAX))
                );
                checked += 1;
            }
        }
        checked
    }
}

/// Run the binary once: (wall, CPU) seconds.
fn run_once(bin: &str, args: &[&str]) -> (f64, f64) {
    let t = Instant::now();
    #[allow(clippy::zombie_processes)] // reaped by wait4 below
    let child = Command::new(bin)
        .args(args)
        .stdout(Stdio::null())
        .spawn()
        .expect("wiretop");
    let (status, ru) = wait4(child.id() as i32);
    let wall = t.elapsed().as_secs_f64();
    assert!(status == 0, "{bin} {args:?} failed: {status}");
    (wall, cpu_of(&ru))
}

fn wait4(pid: i32) -> (i32, libc::rusage) {
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 on our own child with valid pointers.
    unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    (status, ru)
}

fn cpu_of(ru: &libc::rusage) -> f64 {
    ru.ru_utime.tv_sec as f64
        + ru.ru_utime.tv_usec as f64 / 1e6
        + ru.ru_stime.tv_sec as f64
        + ru.ru_stime.tv_usec as f64 / 1e6
}

/// System calls of one `--once --json` run, by `strace -f -c`: (all,
/// openat, sendto, recvfrom); `None` without strace.
fn syscalls(bin: &str) -> Option<[u64; 4]> {
    let out = std::env::temp_dir().join(format!("wtb-strace-{}", std::process::id()));
    let st = Command::new("strace")
        .args(["-f", "-c", "-o"])
        .arg(&out)
        .args([bin, "--once", "--json"])
        .stdout(Stdio::null())
        .status()
        .ok()?;
    let text = std::fs::read_to_string(&out).ok()?;
    let _ = std::fs::remove_file(&out);
    if !st.success() {
        return None;
    }
    let calls = |name: &str| -> u64 {
        text.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.last() == Some(&name)).then(|| f.get(3)?.parse().ok())?
            })
            .next()
            .unwrap_or(0)
    };
    Some(["total", "openat", "sendto", "recvfrom"].map(calls))
}

/// `ip -all netns exec ip -j -s link show`: median wall seconds of 3.
fn ip_all() -> f64 {
    median(
        (0..3)
            .map(|_| {
                let t = Instant::now();
                let out = Command::new("ip")
                    .args(["-all", "netns", "exec", "ip", "-j", "-s", "link", "show"])
                    .output()
                    .unwrap();
                assert!(!out.stdout.is_empty());
                t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // cargo test --benches / --list: nothing to do
    }
    let sizes: Vec<usize> = std::env::var("WIRETOP_BENCH_N")
        .unwrap_or_else(|_| "250,500,1000".into())
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .expect("WIRETOP_BENCH_N: sizes, e.g. 250,500,1000")
        })
        .collect();
    let shapes: Vec<Shape> = std::env::var("WIRETOP_BENCH_SHAPES")
        .unwrap_or_else(|_| "containers,pairs".into())
        .split(',')
        .map(|s| match s.trim() {
            "containers" => Shape::Containers,
            "pairs" => Shape::Pairs,
            o => panic!("WIRETOP_BENCH_SHAPES: containers or pairs, not {o}"),
        })
        .collect();
    let skip_ip = std::env::var_os("WIRETOP_BENCH_SKIP_IP").is_some();
    let secs: u64 = std::env::var("WIRETOP_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let bin = env!("CARGO_BIN_EXE_wiretop");
    let mut table = vec![
        "| shape | namespaces | links | `--once --json`, first run (assigns nsids) | `--once --json`, median of 5: wall / CPU | system calls (openat / sendto / recvfrom) | reader: sockets / topology dumps / nsid requests | veths paired right | `ip -all netns exec ip -j -s link show` | ratio |".to_string(),
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|".to_string(),
    ];
    let mut details = Vec::new();
    for shape in shapes {
        let mut lab = Lab::new(shape);
        for &n in &sizes {
            let t = Instant::now();
            lab.grow(n);
            let links = shape.links(n);
            println!(
                "{}: {n} namespaces, {links} links, built in {:.1} s",
                shape.name(),
                t.elapsed().as_secs_f64()
            );
            let (first, _) = run_once(bin, &["--once", "--json"]);
            let runs: Vec<(f64, f64)> = (0..5)
                .map(|_| run_once(bin, &["--once", "--json"]))
                .collect();
            let wall = median(runs.iter().map(|r| r.0).collect());
            let cpu = median(runs.iter().map(|r| r.1).collect());
            let sys = syscalls(bin);
            let mut src = OsSource::new(None);
            let s = src.sample();
            let st = src.reader_stats();
            let paired = lab.check_pairs(&s);
            let ipt = if skip_ip { f64::NAN } else { ip_all() };
            table.push(format!(
                "| {} | {n} | {links} | {:.0} ms | {:.0} / {:.0} ms | {} | {} / {} / {} | {paired} | {} | {} |",
                shape.name(),
                first * 1e3,
                wall * 1e3,
                cpu * 1e3,
                sys.map_or("(no strace)".into(), |c| format!(
                    "{} ({} / {} / {})",
                    c[0], c[1], c[2], c[3]
                )),
                st.sockets_opened,
                st.topology_dumps,
                st.nsid_requests,
                if skip_ip { "-".into() } else { format!("{:.0} ms", ipt * 1e3) },
                if skip_ip { "-".into() } else { format!("{:.0}×", ipt / wall) },
            ));
            println!("{}", table.last().unwrap());
        }
        let n = lab.n;
        details.push(format!("### {} at {n} namespaces", shape.name()));
        details.extend(detail(n, secs, bin));
        drop(lab);
        // The kernel frees deleted namespaces in the background, holding
        // the locks netlink requests need: let it finish first.
        std::thread::sleep(Duration::from_secs(15));
    }
    println!();
    for l in &table {
        println!("{l}");
    }
    for l in &details {
        println!("{l}");
    }
}

/// The figures at one size: warm ticks, their phases, the interactive
/// view, the JSON stream.
fn detail(n: usize, secs: u64, bin: &str) -> Vec<String> {
    let mut src = OsSource::new(None);
    src.sample();
    let warm = median(
        (0..10)
            .map(|_| {
                let t = Instant::now();
                let s = src.sample();
                assert!(s.namespaces.len() > n);
                t.elapsed().as_secs_f64()
            })
            .collect(),
    );
    let phases = phases(n);
    let inter = interactive(n, secs);
    let t = Instant::now();
    #[allow(clippy::zombie_processes)] // reaped by wait4 below
    let child = Command::new(bin)
        .args(["--json", "--interval", "1", "--count", "11"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let (_, ru) = wait4(child.id() as i32);
    let wall = t.elapsed().as_secs_f64();
    vec![
        "| measurement | figure |".into(),
        "|---|--:|".into(),
        format!(
            "| interactive (tmux pane, 1 s refresh), {secs} s after the first frame: CPU of one core | {:.2} % |",
            inter.cpu_percent
        ),
        format!(
            "| interactive: resident memory at the end (VmRSS) / peak (VmHWM) | {:.1} / {:.1} MiB |",
            inter.rss_mib, inter.hwm_mib
        ),
        format!(
            "| interactive: CPU from start to the first frame (cold snapshot, terminal setup) | {:.0} ms |",
            inter.startup_cpu * 1e3
        ),
        format!(
            "| snapshot per tick (counters; median of 10, wall) | {:.1} ms |",
            warm * 1e3
        ),
        format!(
            "| per tick, CPU: discovery / netlink / rates / view (apply + draw 200x50), medians of 10 | {:.1} / {:.1} / {:.1} / {:.1} ms |",
            phases[0] * 1e3,
            phases[1] * 1e3,
            phases[2] * 1e3,
            phases[3] * 1e3
        ),
        format!(
            "| `wiretop --json --interval 1`, 11 samples ({wall:.1} s, the cold first included): CPU, peak RSS | {:.1} %, {:.1} MiB |",
            cpu_of(&ru) / wall * 100.0,
            ru.ru_maxrss as f64 / 1024.0
        ),
        format!("interactive header at the end: {}", inter.header),
    ]
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
