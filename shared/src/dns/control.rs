//! The resolver's control protocol and files.
//!
//! The daemon listens on a unix socket, `RUN/dns.sock` (mode 0600, root
//! only). A client connects, writes one request as one JSON line, reads
//! one JSON line back, and closes. Attach carries only a container id: the
//! daemon reads everything else (names, networks, addresses, namespace,
//! pid) from the container's record, the single source of truth.
//!
//! A setup sends `prepare` as soon as the container's loopback is up, and
//! `attach` with the record it is about to write as soon as its links are
//! made; it reads both answers only at the end, after the record is
//! written. The daemon binds the container's sockets while the hook makes
//! the links, and takes its names while the hook writes the record,
//! instead of all of it after. A prepared container has no names until
//! its attach; one never attached is let go after [`PREPARE_TTL`].
//!
//! ```text
//! {"op":"prepare","id":"ID","pid":P,"pid_start":S,"netns_inode":I}
//!                             -> {"ok":true}       ID's sockets are bound, no names yet
//! {"op":"attach","id":"ID"}   -> {"ok":true}       names of ID resolve from now on
//! {"op":"attach","id":"ID","record":{...}}         the same, from the record given
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

/// How long a prepared container waits for its attach before the daemon
/// lets go of its sockets (a hook that died between the two).
pub const PREPARE_TTL: Duration = Duration::from_secs(30);

/// Longest request line the daemon reads.
pub const MAX_REQUEST: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Request {
    /// Bind container `id`'s sockets ahead of its record: its process
    /// `pid` (started at `pid_start`, as in `/proc/PID/stat`) in the
    /// network namespace with inode `netns_inode`.
    Prepare {
        id: String,
        pid: i32,
        pid_start: u64,
        netns_inode: u64,
    },
    /// Answer for container `id`'s names: from `record` when the hook
    /// sends it ahead of writing it, else from the record on disk.
    Attach {
        id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        record: Option<Box<crate::store::ContainerRecord>>,
    },
    Detach {
        id: String,
    },
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
    send(paths, req, timeout)?.answer()
}

/// A request sent whose answer is not read yet.
pub struct Sent(UnixStream);

impl Sent {
    /// Wait for the answer (up to the timeout given to [`send`]).
    pub fn answer(self) -> Result<Response, CallError> {
        let mut answer = String::new();
        match BufReader::new(&self.0).read_line(&mut answer) {
            Ok(0) => return Err(CallError::Closed),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Err(CallError::Closed)
            }
            Err(e) => return Err(e.into()),
        }
        serde_json::from_str(&answer).map_err(|e| CallError::Protocol(e.to_string()))
    }
}

/// The first half of [`call`]: connect and send `req`; read the answer
/// later with [`Sent::answer`].
pub fn send(paths: &Paths, req: &Request, timeout: Duration) -> Result<Sent, CallError> {
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
    Ok(Sent(s))
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
            serde_json::to_string(&Request::Attach {
                id: "c1".into(),
                record: None
            })
            .unwrap(),
            r#"{"op":"attach","id":"c1"}"#
        );
        assert_eq!(
            serde_json::to_string(&Request::Prepare {
                id: "c1".into(),
                pid: 7,
                pid_start: 8,
                netns_inode: 9
            })
            .unwrap(),
            r#"{"op":"prepare","id":"c1","pid":7,"pid_start":8,"netns_inode":9}"#
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
