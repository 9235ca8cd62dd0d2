//! The library's error type: every failure carries the context an operator
//! needs to act on it (which file, which link, which network).

use std::path::PathBuf;

/// Result alias used throughout the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Input that a user or operator can fix (annotation, flag, network
    /// definition). The message says what to change.
    #[error("{0}")]
    Invalid(String),

    /// Something that was asked for does not exist.
    #[error("{0}")]
    NotFound(String),

    /// The request conflicts with existing state (address in use, network in use, ...).
    #[error("{0}")]
    Conflict(String),

    /// A pool ran out (addresses, subnets).
    #[error("{0}")]
    Exhausted(String),

    /// A file-system operation failed.
    #[error("{op} {}: {err}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        err: std::io::Error,
    },

    /// A system call without a path failed.
    #[error("{op}: {err}")]
    Sys { op: String, err: std::io::Error },

    /// A netlink request was refused by the kernel.
    #[error("{op}: {err}")]
    Netlink { op: String, err: std::io::Error },

    /// nftables refused a change.
    #[error("nftables: {0}")]
    Firewall(String),

    /// A stored JSON document could not be parsed.
    /// (Causes are part of each message, not a separate `source`, so an
    /// error prints as one line without repeats.)
    #[error("{}: {err}", path.display())]
    Json {
        path: PathBuf,
        err: serde_json::Error,
    },

    /// The cluster store (etcd, or the local store of a one-host cluster)
    /// failed or could not be reached; the message names the endpoint or
    /// directory and what to check.
    #[error("cluster store: {0}")]
    Store(String),

    /// The container resolver (`wirehook dns`) could not be started or
    /// refused a request; the message says why.
    #[error("container names: {0}")]
    Dns(String),

    /// Failure injected by a test through `WIREHOOK_FAIL_AT`.
    #[error("injected failure at step {0} (WIREHOOK_FAIL_AT)")]
    Injected(String),
}

impl Error {
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            err: source,
        }
    }

    pub fn sys(op: impl Into<String>, source: impl Into<std::io::Error>) -> Self {
        Error::Sys {
            op: op.into(),
            err: source.into(),
        }
    }

    pub fn netlink(op: impl Into<String>, source: std::io::Error) -> Self {
        Error::Netlink {
            op: op.into(),
            err: source,
        }
    }

    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }

    /// The OS error number behind this error, if any.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Io { err, .. } | Error::Sys { err, .. } | Error::Netlink { err, .. } => {
                err.raw_os_error()
            }
            _ => None,
        }
    }
}

impl From<nix::Error> for Error {
    fn from(e: nix::Error) -> Self {
        Error::Sys {
            op: "system call".into(),
            err: e.into(),
        }
    }
}

/// Test hook: fail deliberately at a named step when `WIREHOOK_FAIL_AT`
/// names it, or die there by SIGKILL when `WIREHOOK_KILL_AT` does (as a
/// runtime kills a hook past its timeout). The failure-injection and crash
/// tests walk every step of setup this way.
pub fn fail_point(step: &str) -> Result<()> {
    kill_point(step);
    match std::env::var_os("WIREHOOK_FAIL_AT") {
        Some(v) if v == step => Err(Error::Injected(step.to_string())),
        _ => Ok(()),
    }
}

/// Test hook: SIGKILL this process at a named step when `WIREHOOK_KILL_AT`
/// names it (teardown's steps, which never fail, have only this).
pub fn kill_point(step: &str) {
    if std::env::var_os("WIREHOOK_KILL_AT").is_some_and(|v| v == step) {
        // SAFETY: signalling ourselves; nothing runs after it.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    }
}
