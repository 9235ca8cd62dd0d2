//! [`EtcdServer`]: a one-member etcd (Debian's `etcd-server`) running inside
//! a test's network namespace, for the cluster store and overlay tests.
//!
//! ```no_run
//! use wirehook_tests::*;
//! use std::net::Ipv4Addr;
//!
//! let host = TestHost::new("etcd");
//! let etcd = EtcdServer::start(host.netns_path(), Ipv4Addr::LOCALHOST, 2379);
//! // etcd.endpoint() == "http://127.0.0.1:2379", reachable from inside
//! // host's namespace only (in_netns, host.exec, ...).
//! etcd.stop();     // SIGKILL, as a crash would; the data stays
//! etcd.restart();  // same data directory, same address
//! ```
//!
//! The server listens for clients on `listen_ip:port` and for peers on
//! `listen_ip:port+1`, both inside the namespace, so its traffic never
//! leaves namespaces the test made. Its data directory and log live under
//! `/run/wirehook-tests/` and go away with the guard; dropping it (also
//! while a failed test unwinds) kills the server. Declare it after the
//! [`TestHost`](crate::TestHost) whose namespace it uses, so it is dropped
//! first.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::host::{unique_name, TESTS_DIR};
use crate::sys::in_netns;

/// How long etcd gets to start answering.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// An etcd server in a network namespace. See the [module docs](self).
pub struct EtcdServer {
    netns: PathBuf,
    ip: IpAddr,
    port: u16,
    dir: PathBuf,
    child: Mutex<Option<Child>>,
}

impl EtcdServer {
    /// Starts etcd inside the namespace at `netns_path` (clients on
    /// `listen_ip:port`, peers on `listen_ip:port+1`) and waits until it
    /// answers `/health`. Panics, with etcd's log, if it does not.
    pub fn start(netns_path: &Path, listen_ip: impl Into<IpAddr>, port: u16) -> EtcdServer {
        crate::host::require_root();
        assert!(port < u16::MAX, "etcd needs port+1 for its peer URL");
        let dir = Path::new(TESTS_DIR).join(format!("{}-etcd", unique_name("etcd")));
        std::fs::create_dir_all(dir.join("data"))
            .unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let server = EtcdServer {
            netns: netns_path.to_path_buf(),
            ip: listen_ip.into(),
            port,
            dir,
            child: Mutex::new(None),
        };
        server.launch();
        server
    }

    /// `http://IP:PORT` (IPv6 in brackets).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.client_addr())
    }

    /// The store URL wirehook's host config takes: `etcd://IP:PORT`.
    pub fn store_url(&self) -> String {
        format!("etcd://{}", self.client_addr())
    }

    /// The client address.
    pub fn client_addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.port)
    }

    /// The namespace it runs in.
    pub fn netns_path(&self) -> &Path {
        &self.netns
    }

    /// Pid of the running server, if any.
    pub fn pid(&self) -> Option<u32> {
        self.child.lock().unwrap().as_ref().map(Child::id)
    }

    /// What etcd logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Kills the server (SIGKILL, like a crash) and waits for it. The data
    /// directory stays for [`restart`](Self::restart). Idempotent.
    pub fn stop(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server if it runs and starts it again on the same data
    /// directory and address; waits until it answers.
    pub fn restart(&self) {
        self.stop();
        self.launch();
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("etcd.log")
    }

    fn launch(&self) {
        let client = self.endpoint();
        let peer = format!("http://{}", SocketAddr::new(self.ip, self.port + 1));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap_or_else(|e| panic!("open {}: {e}", self.log_path().display()));
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.netns.display()))
            .arg("--")
            .arg("etcd")
            .args(["--name", "default"])
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("default={peer}")])
            // Quick elections: the member leads within a fraction of a
            // second, and the shortest lease lasts about 1 s.
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log file"))
            .stderr(log);
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => panic!("wirehook-tests: cannot start etcd through nsenter: {e}"),
        };
        *self.child.lock().unwrap() = Some(child);
        self.wait_ready();
    }

    /// Polls `GET /health` from inside the namespace until etcd says it is
    /// healthy (it has a leader).
    fn wait_ready(&self) {
        let addr = self.client_addr();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = self.child.lock().unwrap().as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "etcd exited ({status}) before answering on {addr}; its log:\n{}",
                        self.log()
                    );
                }
            }
            let healthy = in_netns(&self.netns, move || health(addr));
            if healthy {
                return;
            }
            if Instant::now() >= deadline {
                self.stop();
                panic!(
                    "etcd did not answer on {addr} within {START_TIMEOUT:?}; its log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// One `GET /health` over a fresh connection: true if etcd says healthy.
fn health(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
    if s.write_all(b"GET /health HTTP/1.0\r\nHost: etcd\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.") && answer.contains("\"health\":\"true\"")
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking()
            && std::env::var_os(crate::host::KEEP_ENV).is_some_and(|v| v == "1")
        {
            eprintln!(
                "wirehook-tests: keeping etcd's data and log in {}",
                self.dir.display()
            );
            return;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
