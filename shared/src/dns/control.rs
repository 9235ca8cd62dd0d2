//! The resolver's control protocol and files.
//!
//! The daemon listens on a unix socket, `RUN/dns.sock` (mode 0600, root
//! only). A client connects, writes one request as one JSON line, reads
//! one JSON line back, and closes. Requests carry only a container id: the
//! daemon reads everything else (names, networks, addresses, namespace,
//! pid) from the container's record, the single source of truth.
//!
//! ```text
//! {"op":"attach","id":"ID"}   -> {"ok":true}       names of ID resolve from now on
//! {"op":"detach","id":"ID"}   -> {"ok":true}       gone from now on (unknown id: ok)
//! {"op":"status"}             -> {"ok":true,"status":{...}}
//! any failure                 -> {"ok":false,"error":"one line"}
//! ```
//!
//! Files: `RUN/dns.sock`, `RUN/dns.pid` (the daemon's pid, for operators),
//! `RUN/locks/dns.lock` (held by the running daemon for its whole life:
//! only one per run directory), `RUN/locks/dns-start.lock` (held by a
//! client while it starts a daemon, so concurrent hooks start one).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::paths::Paths;

/// The control socket.
pub fn socket_path(paths: &Paths) -> PathBuf {
    paths.run_dir.join("dns.sock")
}

/// The daemon's pid file.
pub fn pid_path(paths: &Paths) -> PathBuf {
    paths.run_dir.join("dns.pid")
}

/// Held by the running daemon.
pub fn lock_path(paths: &Paths) -> PathBuf {
    paths.locks_dir().join("dns.lock")
}

/// Held by a client starting the daemon.
pub fn start_lock_path(paths: &Paths) -> PathBuf {
    paths.locks_dir().join("dns-start.lock")
}

/// Longest request line the daemon reads.
pub const MAX_REQUEST: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Request {
    Attach { id: String },
    Detach { id: String },
    Status,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
}

impl Response {
    pub fn ok() -> Response {
        Response {
            ok: true,
            ..Default::default()
        }
    }

    pub fn error(msg: impl Into<String>) -> Response {
        Response {
            ok: false,
            error: Some(msg.into()),
            status: None,
        }
    }
}

/// What `status` reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub pid: u32,
    /// Upstream servers, as `ADDR:PORT`.
    pub upstreams: Vec<String>,
    /// The `resolv.conf` they come from.
    pub resolv_conf: String,
    pub containers: Vec<Attached>,
}

/// One attached container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attached {
    pub id: String,
    pub netns_inode: u64,
    /// Networks whose names it sees (and on which its names resolve).
    pub networks: Vec<String>,
    /// Its names (name, aliases, short id), as they resolve.
    pub names: Vec<String>,
    /// Whether names that are not containers' are forwarded for it.
    pub forward: bool,
}

/// Why a call did not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No daemon listens (no socket, or nobody behind it).
    #[error("the resolver is not running")]
    NotRunning,
    /// The daemon closed the connection without answering (it was exiting).
    #[error("the resolver closed the connection without an answer")]
    Closed,
    #[error("talking to the resolver: {0}")]
    Io(#[from] std::io::Error),
    #[error("the resolver's answer is not valid: {0}")]
    Protocol(String),
}

/// One round trip: connect, send `req`, read the answer.
pub fn call(paths: &Paths, req: &Request, timeout: Duration) -> Result<Response, CallError> {
    let mut s = match UnixStream::connect(socket_path(paths)) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(CallError::NotRunning)
        }
        Err(e) => return Err(e.into()),
    };
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let mut line = serde_json::to_vec(req).expect("serializable request");
    line.push(b'\n');
    match s.write_all(&line) {
        Ok(()) => {}
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            ) =>
        {
            return Err(CallError::Closed)
        }
        Err(e) => return Err(e.into()),
    }
    let mut answer = String::new();
    match BufReader::new(&s).read_line(&mut answer) {
        Ok(0) => return Err(CallError::Closed),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Err(CallError::Closed),
        Err(e) => return Err(e.into()),
    }
    serde_json::from_str(&answer).map_err(|e| CallError::Protocol(e.to_string()))
}

/// Is a daemon listening? (A connect, no request.)
pub fn listening(paths: &Paths) -> bool {
    UnixStream::connect(socket_path(paths)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format() {
        assert_eq!(
            serde_json::to_string(&Request::Attach { id: "c1".into() }).unwrap(),
            r#"{"op":"attach","id":"c1"}"#
        );
        assert_eq!(
            serde_json::to_string(&Request::Status).unwrap(),
            r#"{"op":"status"}"#
        );
        assert_eq!(
            serde_json::to_string(&Response::ok()).unwrap(),
            r#"{"ok":true}"#
        );
        let r: Response = serde_json::from_str(r#"{"ok":false,"error":"x"}"#).unwrap();
        assert_eq!(r, Response::error("x"));
    }
}
