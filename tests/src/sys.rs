//! Low-level helpers: namespace inodes, running Rust code inside a network
//! namespace, finding and killing processes, unmounting a tree.
//!
//! Network namespaces are per thread on Linux, so [`in_netns`] runs its
//! closure on a fresh thread that `setns`es first; a socket opened there stays
//! in that namespace for its whole life, whichever thread uses it later.

use std::collections::HashSet;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use nix::sched::{setns, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Inode of a namespace file (`/proc/PID/ns/net`, `/run/netns/NAME`, a bind
/// mount of either), or `None` if it cannot be read.
pub fn ns_inode(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.ino())
}

/// Inode of the network namespace of process `pid`.
pub fn netns_inode_of_pid(pid: i32) -> Option<u64> {
    ns_inode(Path::new(&format!("/proc/{pid}/ns/net")))
}

/// Runs `f` on a new thread whose network namespace is the one at `netns`
/// (any namespace file), and returns its result. Panics if the namespace
/// cannot be entered; a panic inside `f` is passed on.
pub fn in_netns<T: Send + 'static>(netns: &Path, f: impl FnOnce() -> T + Send + 'static) -> T {
    let file = std::fs::File::open(netns)
        .unwrap_or_else(|e| panic!("open network namespace {}: {e}", netns.display()));
    let shown = netns.display().to_string();
    let h = thread::spawn(move || {
        setns(file.as_fd(), CloneFlags::CLONE_NEWNET)
            .unwrap_or_else(|e| panic!("setns into {shown}: {e}"));
        f()
    });
    match h.join() {
        Ok(v) => v,
        Err(p) => std::panic::resume_unwind(p),
    }
}

/// All pids currently in /proc, except our own.
pub fn all_pids() -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&p| p != me)
        .collect()
}

/// Whether `pid` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    wirehook_shared::procfs::stat(pid).is_some_and(|s| !matches!(s.state, 'Z' | 'X'))
}

/// The command line of `pid`, split at NULs (empty if gone).
pub fn cmdline(pid: i32) -> Vec<String> {
    wirehook_shared::procfs::cmdline(pid)
        .iter()
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

fn under(path: &Path, dir: &Path) -> bool {
    path == dir || path.starts_with(dir)
}

/// Pids whose network namespace is one of `inodes`, or whose root or working
/// directory lies under `dir` (a container whose rootfs is in a test's tree).
pub fn pids_to_reap(inodes: &HashSet<u64>, dir: Option<&Path>) -> Vec<i32> {
    all_pids()
        .into_iter()
        .filter(|&pid| {
            if !alive(pid) {
                return false;
            }
            if let Some(ino) = netns_inode_of_pid(pid) {
                if inodes.contains(&ino) {
                    return true;
                }
            }
            if let Some(dir) = dir {
                for link in ["root", "cwd"] {
                    if let Ok(t) = std::fs::read_link(format!("/proc/{pid}/{link}")) {
                        if under(&t, dir) {
                            return true;
                        }
                    }
                }
            }
            false
        })
        .collect()
}

/// SIGKILLs every process [`pids_to_reap`] finds, again and again until none
/// is left (killed processes' children may show up) or `timeout` passed.
/// Returns the pids it killed.
pub fn kill_all(inodes: &HashSet<u64>, dir: Option<&Path>, timeout: Duration) -> Vec<i32> {
    let deadline = Instant::now() + timeout;
    let mut killed = Vec::new();
    loop {
        let pids = pids_to_reap(inodes, dir);
        if pids.is_empty() || Instant::now() >= deadline {
            if !pids.is_empty() {
                eprintln!("wirehook-tests: processes survived SIGKILL: {pids:?}");
            }
            return killed;
        }
        for &p in &pids {
            let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
            if !killed.contains(&p) {
                killed.push(p);
            }
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Decodes the octal escapes (`\040`) of a /proc/self/mountinfo field.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            let digits = std::str::from_utf8(&b[i + 1..i + 4]).unwrap_or("x");
            if let Ok(v) = u8::from_str_radix(digits, 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One line of /proc/self/mountinfo: mount point and filesystem type.
#[derive(Debug, Clone)]
pub struct MountEntry {
    pub mount_point: PathBuf,
    pub fstype: String,
}

/// The mounts of our mount namespace.
pub fn mounts() -> Vec<MountEntry> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut it = l.split(' ');
            let mp = it.nth(4)?;
            let rest: Vec<&str> = it.collect();
            let sep = rest.iter().position(|f| *f == "-")?;
            let fstype = rest.get(sep + 1)?;
            Some(MountEntry {
                mount_point: PathBuf::from(unescape_mountinfo(mp)),
                fstype: fstype.to_string(),
            })
        })
        .collect()
}

/// The mounts at or below `dir`.
pub fn mounts_under(dir: &Path) -> Vec<MountEntry> {
    mounts()
        .into_iter()
        .filter(|m| under(&m.mount_point, dir))
        .collect()
}

/// Lazily unmounts everything mounted at or below `dir`, deepest first, until
/// nothing is left. Returns how many unmounts it did.
pub fn unmount_tree(dir: &Path) -> usize {
    let mut n = 0;
    for _ in 0..100 {
        let mut ms = mounts_under(dir);
        if ms.is_empty() {
            break;
        }
        ms.sort_by_key(|m| std::cmp::Reverse(m.mount_point.components().count()));
        let mut progress = false;
        for m in ms {
            if nix::mount::umount2(&m.mount_point, nix::mount::MntFlags::MNT_DETACH).is_ok() {
                n += 1;
                progress = true;
            }
        }
        if !progress {
            eprintln!(
                "wirehook-tests: cannot unmount {:?}",
                mounts_under(dir)
                    .iter()
                    .map(|m| m.mount_point.display().to_string())
                    .collect::<Vec<_>>()
            );
            break;
        }
    }
    n
}

/// Whether any process of the machine is in the network namespace `inode`.
pub fn netns_in_use(inode: u64) -> bool {
    all_pids()
        .into_iter()
        .any(|p| netns_inode_of_pid(p) == Some(inode))
}

/// Busy loops, one per core, for as long as this value lives: tests that
/// must hold on a loaded machine run with one alive. Each loop is a shell
/// process, killed on drop or when the thread that made it ends.
pub struct CpuHog {
    children: Vec<std::process::Child>,
}

impl CpuHog {
    /// One busy loop on every core this process may run on.
    pub fn on_every_core() -> CpuHog {
        let n = thread::available_parallelism().map_or(2, |n| n.get());
        let children = (0..n)
            .map(|_| {
                let mut c = std::process::Command::new("sh");
                c.args(["-c", "while :; do :; done"])
                    .stdin(std::process::Stdio::null());
                // SAFETY: prctl only, between fork and exec: the loop dies
                // with the thread that made it, even if the test is killed.
                unsafe {
                    std::os::unix::process::CommandExt::pre_exec(&mut c, || {
                        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                        Ok(())
                    });
                }
                c.spawn().expect("spawn a busy loop (sh)")
            })
            .collect();
        CpuHog { children }
    }
}

impl Drop for CpuHog {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
        assert_eq!(unescape_mountinfo("/end\\"), "/end\\");
    }
}
