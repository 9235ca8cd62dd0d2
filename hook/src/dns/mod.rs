//! Container names: the resolver daemon ([`daemon`], `wirehook dns`) and
//! the hook's side of it — attach a container at setup (starting the
//! daemon if none runs), detach it at teardown, ask for its status.
//!
//! The client side is a unix socket, one request per connection. A setup
//! sends its requests ahead ([`prepare`] once the container's loopback is
//! up, [`attach_ahead`] with the record once its links are made) and
//! collects the answers ([`Pending::collect`]) after writing the record,
//! so the daemon works while the hook does; [`attach`] sends only the id
//! (the daemon reads the record) and starts the daemon if none runs.
//! Starting the daemon is serialised by `locks/dns-start.lock`, so many
//! hooks at once start one; it happens for the first container, after the
//! daemon went away with the last one, or after it was killed (the new one
//! attaches every live container again from the records).

pub mod cluster;
pub mod daemon;

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wirehook_shared::dns::control::{self, CallError, Request, Response, Status};
use wirehook_shared::fsutil::Lock;
use wirehook_shared::paths::Paths;
use wirehook_shared::store::ContainerRecord;
use wirehook_shared::{Error, Result};

use crate::log;

/// How long a client waits for an answer (the hook's own timeout is 10 s).
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client waits for a daemon it started to listen. It listens
/// within milliseconds; only a starved machine comes near this (seen past
/// 5 s in the test VM under emulation at load 7), and there failing the
/// container is worse than waiting: 8 s stays inside hooks.d's 10 s.
const START_TIMEOUT: Duration = Duration::from_secs(8);

fn err(msg: impl Into<String>) -> Error {
    Error::Dns(msg.into())
}

fn answer(resp: Response) -> Result<Response> {
    if resp.ok {
        Ok(resp)
    } else {
        Err(err(resp.error.unwrap_or_else(|| "refused".into())))
    }
}

/// Send `req`, starting the daemon first if none answers.
fn call_starting(paths: &Paths, req: &Request) -> Result<Response> {
    let mut last = None;
    for _ in 0..3 {
        match control::call(paths, req, CALL_TIMEOUT) {
            Ok(resp) => return answer(resp),
            // None runs, or it was just exiting: start one and ask again.
            Err(e @ (CallError::NotRunning | CallError::Closed)) => {
                last = Some(e);
                ensure_running(paths)?;
            }
            Err(e) => return Err(err(e.to_string())),
        }
    }
    Err(err(format!(
        "{} (after 3 tries)",
        last.map(|e| e.to_string()).unwrap_or_default()
    )))
}

/// Make the resolver answer container `id`'s names (read from its record),
/// starting it if needed. Returns once they resolve.
pub fn attach(paths: &Paths, id: &str) -> Result<()> {
    let req = Request::Attach {
        id: id.to_string(),
        record: None,
    };
    call_starting(paths, &req).map(|_| ())
}

/// A request sent ahead for a container being set up (see
/// [`control`](wirehook_shared::dns::control)), whose answer the hook
/// collects once its own work is done: the resolver works meanwhile.
pub struct Pending(control::Sent);

impl Pending {
    /// The answer: `Err` if it was a refusal or did not come.
    pub fn collect(self) -> Result<()> {
        match self.0.answer() {
            Ok(resp) => answer(resp).map(|_| ()),
            Err(e) => Err(err(e.to_string())),
        }
    }
}

/// Send `prepare` for container `id` (process `pid` started at
/// `pid_start`, in the namespace with inode `netns_inode`): the resolver
/// binds its sockets while the hook makes its links. Only to a resolver
/// that runs: starting one is left to [`attach`]. `None` when none runs.
pub fn prepare(
    paths: &Paths,
    id: &str,
    pid: i32,
    pid_start: u64,
    netns_inode: u64,
) -> Option<Pending> {
    let req = Request::Prepare {
        id: id.to_string(),
        pid,
        pid_start,
        netns_inode,
    };
    control::send(paths, &req, CALL_TIMEOUT).ok().map(Pending)
}

/// Send `attach` with `rec`, the record about to be written, so that the
/// resolver takes the names while the hook writes it. `None` when no
/// resolver runs.
pub fn attach_ahead(paths: &Paths, rec: &ContainerRecord) -> Option<Pending> {
    let req = Request::Attach {
        id: rec.id.clone(),
        record: Some(Box::new(rec.clone())),
    };
    control::send(paths, &req, CALL_TIMEOUT).ok().map(Pending)
}

/// Remove container `id`'s names. Never starts a daemon: none running
/// means nothing to remove. Failures are returned for the log only.
pub fn detach(paths: &Paths, id: &str) -> Result<()> {
    match control::call(paths, &Request::Detach { id: id.to_string() }, CALL_TIMEOUT) {
        Ok(resp) => answer(resp).map(|_| ()),
        Err(CallError::NotRunning | CallError::Closed) => Ok(()),
        Err(e) => Err(err(e.to_string())),
    }
}

/// After container `id`'s record changed (a network connected or
/// disconnected): the resolver reads it again, or lets the container go
/// if it has no network with names left.
pub fn follow(paths: &Paths, id: &str) -> Result<()> {
    match wirehook_shared::store::Records::new(paths).get(id)? {
        Some(r) if r.wants_dns() => attach(paths, id),
        _ => detach(paths, id),
    }
}

/// The daemon's status; `None` if it does not run (and `start` is false).
pub fn status(paths: &Paths, start: bool) -> Result<Option<Status>> {
    let resp = if start {
        call_starting(paths, &Request::Status)?
    } else {
        match control::call(paths, &Request::Status, CALL_TIMEOUT) {
            Ok(r) => answer(r)?,
            Err(CallError::NotRunning | CallError::Closed) => return Ok(None),
            Err(e) => return Err(err(e.to_string())),
        }
    };
    Ok(resp.status)
}

/// Start the daemon unless one listens. Returns once it listens (it has
/// attached every live container by then).
pub fn ensure_running(paths: &Paths) -> Result<()> {
    if control::listening(paths) {
        return Ok(());
    }
    let _start = Lock::exclusive(&control::start_lock_path(paths))?;
    // Someone else may have started it while we waited.
    if control::listening(paths) {
        return Ok(());
    }
    let exe = std::env::current_exe()
        .map_err(|e| err(format!("cannot find wirehook's own binary: {e}")))?;
    let mut cmd = Command::new(&exe);
    cmd.arg("dns")
        .arg("--run-dir")
        .arg(&paths.run_dir)
        .arg("--config-dir")
        .arg(&paths.config_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .current_dir("/");
    // SAFETY: setsid is async-signal-safe. A session of its own: the
    // runtime's terminal and process group signals do not reach it, and
    // its standard streams are not the runtime's pipes (which runc waits
    // to see closed).
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| {
        err(format!(
            "cannot start the resolver ({}): {e}",
            exe.display()
        ))
    })?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if control::listening(paths) {
            log::info(format!("started the resolver (pid {})", child.id()));
            return Ok(());
        }
        if let Ok(Some(st)) = child.try_wait() {
            if control::listening(paths) {
                return Ok(());
            }
            return Err(err(format!(
                "the resolver exited at start ({st}): see {}",
                paths.log_file().display()
            )));
        }
        if Instant::now() > deadline {
            return Err(err(format!(
                "the resolver did not come up within {} s: see {}",
                START_TIMEOUT.as_secs(),
                paths.log_file().display()
            )));
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

/// Ask the resolver inside the namespace at `netns` for `name` (A), as a
/// program in the container would: `Ok(rcode)` of the answer.
pub fn probe(netns: &std::path::Path, name: &str) -> std::result::Result<u8, String> {
    use wirehook_shared::dns::wire;
    let ns = wirehook_shared::netns::NetNs::open(netns).map_err(|e| e.to_string())?;
    let name = name.to_string();
    std::thread::scope(|s| {
        s.spawn(|| -> std::result::Result<u8, String> {
            let sock = {
                let _in = ns.enter().map_err(|e| e.to_string())?;
                std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?
            };
            sock.set_read_timeout(Some(Duration::from_secs(1)))
                .map_err(|e| e.to_string())?;
            let mut q = Vec::new();
            let id = (std::process::id() & 0xffff) as u16;
            wire::build_query(&mut q, id, &name, wire::TYPE_A, false);
            let to = (wirehook_shared::dns::RESOLVER_ADDR, 53);
            sock.send_to(&q, to).map_err(|e| format!("send: {e}"))?;
            let mut buf = [0u8; 1500];
            let n = sock
                .recv(&mut buf)
                .map_err(|e| format!("no answer from 127.0.0.11:53: {e}"))?;
            let h = wire::Header::parse(&buf[..n]).map_err(|e| e.to_string())?;
            if h.id != id {
                return Err("an answer to another query".into());
            }
            Ok(h.rcode())
        })
        .join()
        .unwrap_or_else(|_| Err("probe thread panicked".into()))
    })
}
