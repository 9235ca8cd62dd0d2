//! Small file-system primitives the store is built from: atomic writes,
//! advisory locks, directory creation.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Create `dir` and its parents (mode 0700 for the leaf is not needed: the
/// run directory lives under root-owned `/run`).
pub fn ensure_dir(dir: &Path) -> Result<()> {
    match fs::create_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) => Err(Error::io("create directory", dir, e)),
    }
}

/// Write `data` to `path` atomically: a temporary file in the same
/// directory, then rename. Readers see the old or the new content, never a
/// torn one, and a hook killed half-way leaves the old file (plus a stray
/// temporary one). No fsync: this is for the run directory, whose state and
/// the namespaces it describes do not outlive a reboot, and where `/run` is
/// a disk an fsync costs about 1 ms of every container start. Files that
/// must survive a reboot (`/etc/wirehook`) go through [`write_durable`].
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    write_file(path, data, false)
}

/// [`write_atomic`], with the data synced to disk before the rename: for
/// the operator's configuration, which must survive a power cut whole.
pub fn write_durable(path: &Path, data: &[u8]) -> Result<()> {
    write_file(path, data, true)
}

fn write_file(path: &Path, data: &[u8], sync: bool) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    let res = (|| -> std::io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)?;
        f.write_all(data)?;
        if sync {
            f.sync_data()?;
        }
        fs::rename(&tmp, path)
    })();
    if let Err(e) = res {
        let _ = fs::remove_file(&tmp);
        if e.kind() == std::io::ErrorKind::NotFound {
            ensure_dir(dir)?;
            return write_file(path, data, sync);
        }
        return Err(Error::io("write", path, e));
    }
    Ok(())
}

/// Read a JSON document; `Ok(None)` when the file does not exist.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|err| Error::Json {
                path: path.to_path_buf(),
                err,
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read", path, e)),
    }
}

fn json_bytes<T: serde::Serialize>(value: &T) -> Vec<u8> {
    let mut data = serde_json::to_vec_pretty(value).expect("serializable value");
    data.push(b'\n');
    data
}

/// Write a JSON document atomically (pretty, newline-terminated), as
/// [`write_atomic`] does: run-directory state.
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    write_atomic(path, &json_bytes(value))
}

/// Write a JSON document as [`write_durable`] does: configuration.
pub fn write_json_durable<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    write_durable(path, &json_bytes(value))
}

/// Remove a file; a missing file is not an error.
pub fn remove_file(path: &Path) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io("remove", path, e)),
    }
}

/// An exclusive advisory lock (flock) held until dropped.
#[derive(Debug)]
pub struct Lock {
    _file: File,
    path: PathBuf,
}

impl Lock {
    /// Block until the lock at `path` is ours. The file is created if needed.
    pub fn exclusive(path: &Path) -> Result<Lock> {
        Self::take(path, libc::LOCK_EX)
    }

    /// Block until we share the lock at `path` (with other shared holders,
    /// never with an exclusive one). The file is created if needed.
    pub fn shared(path: &Path) -> Result<Lock> {
        Self::take(path, libc::LOCK_SH)
    }

    fn take(path: &Path, how: libc::c_int) -> Result<Lock> {
        let open = || {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(path)
        };
        let file = match open() {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                ensure_dir(path.parent().unwrap_or(Path::new(".")))?;
                open().map_err(|e| Error::io("open lock", path, e))?
            }
            Err(e) => return Err(Error::io("open lock", path, e)),
        };
        loop {
            // SAFETY: flock on a descriptor we own.
            let rc = unsafe { libc::flock(file.as_raw_fd(), how) };
            if rc == 0 {
                break;
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(Error::io("lock", path, err));
            }
        }
        Ok(Lock {
            _file: file,
            path: path.to_path_buf(),
        })
    }

    /// Take the lock at `path` only if it is free; `Ok(None)` if someone
    /// holds it. A missing file counts as free (and is not created).
    pub fn try_exclusive(path: &Path) -> Result<Option<Lock>> {
        let file = match OpenOptions::new().read(true).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("open lock", path, e)),
        };
        // SAFETY: flock on a descriptor we own.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            Ok(Some(Lock {
                _file: file,
                path: path.to_path_buf(),
            }))
        } else {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                Ok(None)
            } else {
                Err(Error::io("lock", path, err))
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Is `name` safe to use as one path component (no separators, no dot-dot,
/// bounded)? Used for container ids and network names before they become
/// file names.
pub fn is_safe_component(name: &str, max_len: usize) -> bool {
    !name.is_empty()
        && name.len() <= max_len
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_components() {
        assert!(is_safe_component("abc-123_x.y", 64));
        assert!(!is_safe_component("../etc", 64));
        assert!(!is_safe_component("a/b", 64));
        assert!(!is_safe_component("..", 64));
        assert!(!is_safe_component("", 64));
        assert!(!is_safe_component(&"a".repeat(65), 64));
    }

    #[test]
    fn atomic_write_and_read() {
        let dir = std::env::temp_dir().join(format!("wh-fsutil-{}", std::process::id()));
        let p = dir.join("sub/x.json");
        write_json(&p, &vec![1, 2, 3]).unwrap();
        let v: Option<Vec<i32>> = read_json(&p).unwrap();
        assert_eq!(v, Some(vec![1, 2, 3]));
        assert!(remove_file(&p).unwrap());
        assert!(!remove_file(&p).unwrap());
        let _ = fs::remove_dir_all(dir);
    }
}
