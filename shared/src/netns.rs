//! Network namespaces: open one by pid or path, compare by inode, enter it
//! for a while, keep it reachable with a bind mount (like `ip netns`), and
//! find which processes still live in it.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, CloneFlags};

use crate::error::{Error, Result};

/// An open handle on a network namespace. Work on the namespace goes
/// through this handle, so the namespace cannot be swapped underneath.
#[derive(Debug)]
pub struct NetNs {
    file: File,
    inode: u64,
}

impl NetNs {
    /// The calling thread's namespace.
    pub fn current() -> Result<NetNs> {
        Self::open(Path::new("/proc/thread-self/ns/net"))
    }

    /// The namespace of process `pid`.
    pub fn of_pid(pid: i32) -> Result<NetNs> {
        Self::open(&PathBuf::from(format!("/proc/{pid}/ns/net")))
    }

    /// A namespace file: `/proc/PID/ns/net` or a bind mount of one.
    pub fn open(path: &Path) -> Result<NetNs> {
        let file = File::open(path).map_err(|e| Error::io("open namespace", path, e))?;
        let meta = file
            .metadata()
            .map_err(|e| Error::io("stat namespace", path, e))?;
        Ok(NetNs {
            file,
            inode: meta.ino(),
        })
    }

    /// Namespace identity: the nsfs inode (what `ls -i /proc/PID/ns/net` shows).
    pub fn inode(&self) -> u64 {
        self.inode
    }

    /// Switch the calling thread into this namespace until the guard drops.
    pub fn enter(&self) -> Result<NsGuard> {
        let back = NetNs::current()?;
        setns(self.file.as_fd(), CloneFlags::CLONE_NEWNET)
            .map_err(|e| Error::sys("enter network namespace", e))?;
        Ok(NsGuard { back })
    }

    /// Run `f` with the calling thread inside this namespace.
    pub fn run<T>(&self, f: impl FnOnce() -> T) -> Result<T> {
        let _guard = self.enter()?;
        Ok(f())
    }

    /// Bind-mount this namespace at `target` (an empty file is created),
    /// so it stays reachable by path after its processes are gone.
    pub fn bind_mount(&self, target: &Path) -> Result<()> {
        if let Some(dir) = target.parent() {
            crate::fsutil::ensure_dir(dir)?;
        }
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(target)
            .map_err(|e| Error::io("create mount point", target, e))?;
        let src = format!("/proc/self/fd/{}", self.file.as_raw_fd());
        if let Err(e) = mount(
            Some(src.as_str()),
            target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        ) {
            let _ = std::fs::remove_file(target);
            return Err(Error::io("bind-mount namespace at", target, e.into()));
        }
        Ok(())
    }

    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// Restores the thread's previous namespace when dropped.
#[derive(Debug)]
pub struct NsGuard {
    back: NetNs,
}

impl Drop for NsGuard {
    fn drop(&mut self) {
        // Failing to return would leave the thread in the wrong namespace;
        // nothing sane can continue from there.
        if let Err(e) = setns(self.back.file.as_fd(), CloneFlags::CLONE_NEWNET) {
            panic!("cannot return to the original network namespace: {e}");
        }
    }
}

/// Undo [`NetNs::bind_mount`]: detach the mount and remove the file.
/// Missing mount or file is fine (idempotent).
pub fn unmount(target: &Path) -> Result<()> {
    match umount2(target, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(Error::io("unmount namespace", target, e.into())),
    }
    crate::fsutil::remove_file(target)?;
    Ok(())
}

/// Is a namespace mounted at `path` (a file on nsfs), rather than the bare
/// mount point (or nothing)?
pub fn is_namespace_mount(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
}

/// The namespace inode of `/proc/PID/ns/net` without opening it.
pub fn inode_of_pid(pid: i32) -> Option<u64> {
    std::fs::metadata(format!("/proc/{pid}/ns/net"))
        .ok()
        .map(|m| m.ino())
}

/// The namespace inode of a namespace file (bind mount or /proc link).
pub fn inode_of_path(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.ino())
}

/// Pids of every process on the host, read from /proc.
pub fn all_pids() -> Vec<i32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// Map of namespace inode -> pids living in it, for every process we can see.
pub fn processes_by_netns() -> std::collections::HashMap<u64, Vec<i32>> {
    let mut map: std::collections::HashMap<u64, Vec<i32>> = Default::default();
    for pid in all_pids() {
        if let Some(ino) = inode_of_pid(pid) {
            map.entry(ino).or_default().push(pid);
        }
    }
    map
}

/// Does any process live in the namespace with this inode?
pub fn has_processes(inode: u64) -> bool {
    all_pids()
        .into_iter()
        .any(|pid| inode_of_pid(pid) == Some(inode))
}
