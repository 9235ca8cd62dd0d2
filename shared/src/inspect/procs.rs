//! Processes: the one place the inspection reads `/proc` about them.
//!
//! Names and command lines come from sysinfo ([`ProcTable`]): a refresh
//! lists `/proc` and has sysinfo read the processes that appeared (name,
//! command line) and drop the ones that went; every
//! [`FULL_REFRESH_EVERY`]th it re-reads them all, which also tells a
//! reused pid from the process it replaced. What sysinfo does not know, the
//! network namespace a process lives in, is the `/proc/PID/ns/net` link,
//! read here too ([`ProcTable::netns_of`]). [`SelfMonitor`] is wiretop's
//! own CPU time and resident memory, also through sysinfo.

use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::time::Instant;

use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System, UpdateKind};

/// Longest command line kept (characters); longer ones end in `…`.
pub const MAX_CMD: usize = 200;

/// One process as the inspection shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcInfo {
    pub pid: i32,
    /// The kernel's short name (`comm`).
    pub name: String,
    /// The command line, arguments joined by spaces; empty for kernel
    /// threads.
    pub cmd: String,
}

/// The host's processes, refreshed on demand.
pub struct ProcTable {
    sys: Option<System>,
    proc_root: PathBuf,
    /// Pids listed in `/proc` at the last refresh.
    live: Vec<i32>,
    refreshes: u64,
}

/// Every this many refreshes sysinfo re-reads every process (which tells
/// a reused pid from the process it replaced); in between, only the ones
/// that appeared or went. sysinfo reads two files per process with half a
/// dozen system calls each: for every process every second, that was as
/// much work as reading a thousand namespaces' counters.
pub const FULL_REFRESH_EVERY: u64 = 30;

/// Processes younger than this (seconds) are read at every refresh.
const YOUNG_SECS: u64 = 5;

impl Default for ProcTable {
    fn default() -> Self {
        ProcTable::new()
    }
}

/// Join a command line and cut it at [`MAX_CMD`] characters.
pub fn join_cmd<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> String {
    let mut s = String::new();
    for a in args {
        if !s.is_empty() {
            s.push(' ');
        }
        s.push_str(&a.as_ref().to_string_lossy());
        if s.chars().count() > MAX_CMD {
            break;
        }
    }
    if s.chars().count() > MAX_CMD {
        s = s.chars().take(MAX_CMD - 1).collect();
        s.push('…');
    }
    s
}

impl ProcTable {
    pub fn new() -> ProcTable {
        ProcTable {
            sys: System::new().ok(),
            proc_root: PathBuf::from("/proc"),
            live: Vec::new(),
            refreshes: 0,
        }
    }

    /// Re-list the processes: new ones get their name and command line,
    /// gone ones are dropped; every [`FULL_REFRESH_EVERY`]th time every
    /// process is read again.
    pub fn refresh(&mut self) {
        // /proc lists processes, not their threads.
        self.live = match std::fs::read_dir(&self.proc_root) {
            Ok(rd) => rd
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                .collect(),
            Err(_) => Vec::new(),
        };
        let Some(sys) = &mut self.sys else {
            return;
        };
        let kind = ProcessRefreshKind::nothing()
            .without_tasks()
            .with_cmd(UpdateKind::OnlyIfNotSet);
        let full = self.refreshes.is_multiple_of(FULL_REFRESH_EVERY);
        self.refreshes += 1;
        if full {
            sys.refresh_processes_specifics(ProcessesToUpdate::All, true, kind);
            return;
        }
        let live: HashSet<Pid> = self.live.iter().map(|&p| Pid::from_u32(p as u32)).collect();
        let known = sys.processes();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        // New ones are read; gone ones fail to read and are dropped; young
        // ones are read again, as they may have been caught between fork
        // and exec (runc's init becomes the container's process).
        let changed: Vec<Pid> = live
            .iter()
            .filter(|p| !known.contains_key(p))
            .chain(known.iter().filter_map(|(p, proc_)| {
                (!live.contains(p) || proc_.start_time() + YOUNG_SECS >= now).then_some(p)
            }))
            .copied()
            .collect();
        if !changed.is_empty() {
            sys.refresh_processes_specifics(
                ProcessesToUpdate::Some(&changed),
                true,
                kind.with_cmd(UpdateKind::Always),
            );
        }
    }

    /// Every process (not its threads) listed at the last refresh, in no
    /// particular order.
    pub fn pids(&self) -> Vec<i32> {
        self.live.clone()
    }

    /// Name and command line of `pid`, as of the last refresh.
    pub fn info(&self, pid: i32) -> Option<ProcInfo> {
        let p = self.sys.as_ref()?.process(Pid::from_u32(pid as u32))?;
        Some(ProcInfo {
            pid,
            name: p.name().to_string_lossy().into_owned(),
            cmd: join_cmd(p.cmd()),
        })
    }

    /// Inode of the network namespace `pid` lives in (its
    /// `/proc/PID/ns/net` link), read now.
    pub fn netns_of(&self, pid: i32) -> Option<u64> {
        let t = std::fs::read_link(self.proc_root.join(format!("{pid}/ns/net"))).ok()?;
        super::discover::parse_ns_link(t.to_str()?)
    }

    /// Inode of the host's network namespace: pid 1's or, when its link
    /// may not be read (some sandboxes' init hides it even from root),
    /// that of pid 2 if it is kthreadd: kernel threads live in the
    /// initial namespace. Read now, from `/proc` (not the table).
    pub fn host_netns(&self) -> Option<u64> {
        self.netns_of(1)
            .or_else(|| self.is_kernel_thread(2).then(|| self.netns_of(2))?)
    }

    /// Whether `pid` is a kernel thread (PF_KTHREAD in the flags of
    /// `/proc/PID/stat`).
    fn is_kernel_thread(&self, pid: i32) -> bool {
        const PF_KTHREAD: u64 = 0x0020_0000;
        crate::procfs::stat_at(&self.proc_root.join(pid.to_string()))
            .is_some_and(|s| s.flags & PF_KTHREAD != 0)
    }
}

/// wiretop's own CPU and memory use.
pub struct SelfMonitor {
    sys: Option<System>,
    pid: Pid,
    /// (when, accumulated CPU milliseconds), oldest first: the CPU share
    /// is taken over the last few readings, so the kernel's 10 ms ticks
    /// do not make it jump.
    readings: VecDeque<(Instant, u64)>,
}

impl Default for SelfMonitor {
    fn default() -> Self {
        SelfMonitor::new()
    }
}

/// Readings the CPU share is averaged over.
const WINDOW: usize = 10;

impl SelfMonitor {
    pub fn new() -> SelfMonitor {
        SelfMonitor {
            sys: System::new().ok(),
            pid: Pid::from_u32(std::process::id()),
            readings: VecDeque::new(),
        }
    }

    /// Read now: (percent of one core since the oldest reading kept, or
    /// `None` at the first one; resident memory in bytes).
    pub fn sample(&mut self) -> Option<(Option<f64>, u64)> {
        let sys = self.sys.as_mut()?;
        sys.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[self.pid]),
            false,
            ProcessRefreshKind::nothing()
                .without_tasks()
                .with_cpu()
                .with_memory(),
        );
        let p = sys.process(self.pid)?;
        let now = Instant::now();
        let cpu_ms = p.accumulated_cpu_time();
        let rss = p.memory();
        let share = self.readings.front().and_then(|(t, ms)| {
            let wall = now.duration_since(*t).as_secs_f64();
            (wall > 0.0).then(|| cpu_ms.saturating_sub(*ms) as f64 / 1000.0 / wall * 100.0)
        });
        if self.readings.len() == WINDOW {
            self.readings.pop_front();
        }
        self.readings.push_back((now, cpu_ms));
        Some((share, rss))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_listed_with_its_command_line() {
        let mut t = ProcTable::new();
        t.refresh();
        let me = std::process::id() as i32;
        assert!(t.pids().contains(&me));
        let info = t.info(me).expect("own process");
        let exe = std::env::args().next().unwrap();
        assert!(info.cmd.starts_with(&exe), "{info:?}");
        assert!(!info.name.is_empty());
        let own = std::fs::read_link("/proc/self/ns/net").unwrap();
        assert_eq!(
            t.netns_of(me),
            super::super::discover::parse_ns_link(own.to_str().unwrap())
        );
    }

    #[test]
    fn processes_that_come_and_go_between_full_refreshes() {
        let mut t = ProcTable::new();
        t.refresh(); // the full one
        let mut child = std::process::Command::new("sleep")
            .arg("7.25")
            .spawn()
            .expect("sleep");
        let pid = child.id() as i32;
        // Caught before or after its exec: read again while young.
        let mut seen = None;
        for _ in 0..50 {
            t.refresh();
            assert!(t.pids().contains(&pid));
            seen = t.info(pid);
            if seen.as_ref().is_some_and(|i| i.cmd == "sleep 7.25") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let seen = seen.expect("the child is known");
        assert_eq!(
            (seen.name.as_str(), seen.cmd.as_str()),
            ("sleep", "sleep 7.25")
        );
        child.kill().unwrap();
        child.wait().unwrap();
        t.refresh();
        assert!(!t.pids().contains(&pid));
        assert!(t.info(pid).is_none(), "a process that went is dropped");
        assert!(
            t.refreshes < FULL_REFRESH_EVERY,
            "all of it between full refreshes"
        );
    }

    #[test]
    fn host_namespace_is_found() {
        let t = ProcTable::new();
        let host = t.host_netns().expect("pid 1's or kthreadd's namespace");
        // Either pid 1's (when readable) or a kernel thread's.
        let one = t.netns_of(1);
        assert!(one.is_none() || one == Some(host), "{one:?} {host}");
        assert!(!t.is_kernel_thread(std::process::id() as i32));
        if t.is_kernel_thread(2) {
            assert_eq!(
                t.netns_of(2),
                Some(host),
                "kernel threads are in the host's"
            );
        }
    }

    #[test]
    fn long_command_lines_are_cut() {
        let long = vec!["x".repeat(150), "y".repeat(150)];
        let s = join_cmd(&long);
        assert_eq!(s.chars().count(), MAX_CMD);
        assert!(s.ends_with('…'));
        assert_eq!(join_cmd(&["a", "b c"]), "a b c");
        assert_eq!(join_cmd::<&str>(&[]), "");
    }

    fn thread_cpu() -> f64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: a valid timespec for the calling thread's clock.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
    }

    #[test]
    fn self_monitor_sees_cpu_time_spent() {
        let mut m = SelfMonitor::new();
        let start = Instant::now();
        let (first, rss) = m.sample().expect("own process");
        assert!(first.is_none());
        assert!(rss > 1 << 20, "rss {rss}");
        // Burn 200 ms of this thread's CPU time, however long that takes.
        let c0 = thread_cpu();
        let mut x = 0u64;
        while thread_cpu() - c0 < 0.2 {
            for _ in 0..10_000 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            }
        }
        std::hint::black_box(x);
        let (share, _) = m.sample().unwrap();
        let wall = start.elapsed().as_secs_f64();
        let share = share.expect("second reading has a share");
        // At least the 200 ms burnt here (less two 10 ms clock ticks of
        // rounding), at most every core of the machine.
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        assert!(
            share / 100.0 * wall >= 0.18,
            "cpu share {share}% over {wall} s"
        );
        assert!(share <= cpus * 100.0 + 10.0, "cpu share {share}%");
    }
}
