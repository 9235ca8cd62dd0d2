//! The createContainer stage: point the container's `/etc/resolv.conf` at
//! the resolver when nothing else does.
//!
//! `wirehook prepare` adds a bind mount to a runc/crun bundle's config.json,
//! and CRI-O mounts the pod's own file. podman with `--network none` mounts
//! none: the container keeps its image's file, whose nameservers it cannot
//! reach. The runtime runs createContainer hooks inside the container's
//! mount namespace after the root file system is mounted and before
//! `pivot_root`, so a bind mount made here lands in the container's view
//! only and goes with it: nothing to undo at poststop.
//!
//! The image is not trusted: `etc/resolv.conf` is resolved with
//! `openat2(RESOLVE_IN_ROOT)`, so a symlink in the image (`/etc/resolv.conf
//! -> /etc/shadow`, `../../..`) stays inside the container's root, and only
//! a regular file is mounted over. Nothing here fails the start: a
//! container whose file cannot be replaced still reaches names by asking
//! 127.0.0.11, and the log says why.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use nix::mount::{mount, MsFlags};
use wirehook_shared::dns::resolvconf;
use wirehook_shared::paths::Paths;
use wirehook_shared::store::{Mode, Records};

use crate::log;
use crate::state::State;

/// Run at createContainer. Always `Ok` for the runtime's sake unless the
/// state is unusable; problems go to the log and stderr as warnings.
pub fn run(paths: &Paths, state: &State) -> Result<()> {
    match mount_for(paths, state) {
        Ok(Some(msg)) => log::info(msg),
        Ok(None) => {}
        Err(e) => {
            let msg = format!(
                "createContainer: /etc/resolv.conf left as it is ({e:#}); names still answer at 127.0.0.11"
            );
            eprintln!("wirehook: warning: {msg}");
            log::info(msg);
        }
    }
    Ok(())
}

/// Does the container get names: its own networks give them, or (sharing
/// another's namespace) the owner's do?
fn wants_names(paths: &Paths, id: &str) -> Result<bool> {
    let records = Records::new(paths);
    let Some(rec) = records.get(id)? else {
        return Ok(false);
    };
    if rec.mode == Mode::Container {
        let owner = rec.shares_with.as_deref().unwrap_or_default();
        return Ok(records.get(owner)?.is_some_and(|o| o.wants_dns()));
    }
    Ok(rec.wants_dns())
}

fn mount_for(paths: &Paths, state: &State) -> Result<Option<String>> {
    if !wants_names(paths, &state.id)? {
        return Ok(None);
    }
    let config = read_config(&state.bundle)?;
    if mounts_resolv_conf(&config) {
        return Ok(Some(
            "createContainer: config.json mounts /etc/resolv.conf already".into(),
        ));
    }
    let rootfs = rootfs_of(&state.bundle, &config)?;
    let root = open_dir(&rootfs)?;
    let target = match open_in_root(&root, "etc/resolv.conf") {
        Ok(fd) => fd,
        Err(nix::Error::ENOENT) => create_in_root(&root)?,
        Err(e) => return Err(anyhow!("open etc/resolv.conf in {}: {e}", rootfs.display())),
    };
    let st = nix::sys::stat::fstat(&target).context("stat the image's /etc/resolv.conf")?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(anyhow!(
            "the image's /etc/resolv.conf is not a regular file"
        ));
    }

    // The source: a file of the container's own (it may write to it), made
    // for this mount and unlinked right after: the mount keeps it alive
    // and it goes with the container's mount namespace.
    let dir = paths.run_dir.join("resolv");
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let source = dir.join(format!("{}.{}", state.id, std::process::id()));
    let host = resolvconf::read(&resolvconf::host_path(paths));
    std::fs::write(&source, resolvconf::container_file(&host))
        .with_context(|| format!("write {}", source.display()))?;
    let target_path = PathBuf::from(format!("/proc/self/fd/{}", target.as_raw_fd()));
    let res = mount(
        Some(&source),
        &target_path,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    );
    let _ = std::fs::remove_file(&source);
    res.context("bind-mount the container's resolv.conf")?;
    Ok(Some(format!(
        "createContainer: /etc/resolv.conf -> nameserver {}",
        wirehook_shared::dns::RESOLVER_ADDR
    )))
}

fn read_config(bundle: &Path) -> Result<serde_json::Value> {
    let file = bundle.join("config.json");
    let text = std::fs::read(&file).with_context(|| format!("read {}", file.display()))?;
    serde_json::from_slice(&text).with_context(|| format!("parse {}", file.display()))
}

/// Does the runtime mount something on `/etc/resolv.conf` (a prepared
/// bundle, CRI-O, an engine that writes its own)?
fn mounts_resolv_conf(config: &serde_json::Value) -> bool {
    config
        .get("mounts")
        .and_then(|m| m.as_array())
        .is_some_and(|ms| {
            ms.iter().any(|m| {
                m.get("destination")
                    .and_then(|d| d.as_str())
                    .is_some_and(|d| d.trim_end_matches('/') == "/etc/resolv.conf")
            })
        })
}

/// The container's root file system: `root.path`, relative to the bundle
/// unless absolute.
fn rootfs_of(bundle: &Path, config: &serde_json::Value) -> Result<PathBuf> {
    let p = config
        .pointer("/root/path")
        .and_then(|p| p.as_str())
        .ok_or_else(|| anyhow!("config.json has no root.path"))?;
    Ok(bundle.join(p))
}

fn open_dir(path: &Path) -> Result<OwnedFd> {
    let fd = nix::fcntl::open(
        path,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .with_context(|| format!("open the container's root {}", path.display()))?;
    Ok(fd)
}

/// `openat2(root, rel, O_PATH, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`:
/// every symlink on the way is resolved as if `root` were `/`.
fn openat2_in_root(
    root: &OwnedFd,
    rel: &str,
    flags: libc::c_int,
    mode: u64,
) -> nix::Result<OwnedFd> {
    let c = CString::new(rel).map_err(|_| nix::Error::EINVAL)?;
    // SAFETY: open_how is plain integers; all-zero is its default.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.mode = mode;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: valid fd, NUL-terminated path, a properly sized open_how.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            c.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(nix::Error::last());
    }
    // SAFETY: the kernel returned a new descriptor that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn open_in_root(root: &OwnedFd, rel: &str) -> nix::Result<OwnedFd> {
    openat2_in_root(root, rel, libc::O_PATH, 0)
}

/// The image has no `/etc/resolv.conf`: create an empty one to mount on
/// (in `/etc` as resolved inside the root; a dangling symlink stays as it
/// is and is reported).
fn create_in_root(root: &OwnedFd) -> Result<OwnedFd> {
    let etc = openat2_in_root(root, "etc", libc::O_PATH | libc::O_DIRECTORY, 0)
        .map_err(|e| anyhow!("the image has no /etc/resolv.conf and no usable /etc ({e})"))?;
    let name = c"resolv.conf";
    // SAFETY: valid fd and NUL-terminated name.
    let fd = unsafe {
        libc::openat(
            etc.as_raw_fd(),
            name.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o644,
        )
    };
    if fd < 0 {
        return Err(anyhow!(
            "the image has no /etc/resolv.conf and one cannot be made ({})",
            nix::Error::last()
        ));
    }
    // SAFETY: a descriptor the kernel just gave us.
    let file = unsafe { File::from_raw_fd(fd) };
    Ok(OwnedFd::from(file))
}
