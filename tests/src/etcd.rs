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
//! [`EtcdServer::start_tls`] serves clients over TLS with client
//! certificates required, from an [`EtcdTls`] made by `openssl`.
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

use crate::cmd::OutputExt;
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
    tls: Option<EtcdTls>,
    child: Mutex<Option<Child>>,
}

/// Certificates for a TLS etcd: a CA, a server certificate for one IP
/// address, and a client certificate, all signed by the CA (PEM files made
/// with the `openssl` command, valid for a day).
#[derive(Debug, Clone)]
pub struct EtcdTls {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl EtcdTls {
    /// Makes the files in `dir` (created if needed) for a server at `server_ip`.
    pub fn generate(dir: &Path, server_ip: IpAddr) -> EtcdTls {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let openssl = |args: &[&str]| {
            crate::cmd::run(
                Command::new("openssl").args(args).current_dir(dir),
                None,
                crate::cmd::DEFAULT_TIMEOUT,
            )
            .expect_success(&format!("openssl {}", args.join(" ")));
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        let mut ca = vec!["req", "-x509"];
        ca.extend(ec);
        ca.extend(["-keyout", "ca.key", "-out", "ca.pem", "-days", "1"]);
        ca.extend(["-subj", "/CN=wirehook-tests CA"]);
        openssl(&ca);
        let sign = |name: &str, ext: String| {
            std::fs::write(dir.join(format!("{name}.ext")), ext).expect("write extensions");
            let (key, csr, pem, extf) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.pem"),
                format!("{name}.ext"),
            );
            let subj = format!("/CN=wirehook-tests {name}");
            let mut req = vec!["req"];
            req.extend(ec);
            req.extend(["-keyout", &key, "-out", &csr, "-subj", &subj]);
            openssl(&req);
            openssl(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "1",
                "-extfile",
                &extf,
            ]);
        };
        // etcd 3.4's JSON gateway connects to its own gRPC port presenting
        // the server certificate, so with client certificates required the
        // server certificate must be good for client auth too, or etcd
        // never starts serving.
        sign(
            "server",
            format!("subjectAltName=IP:{server_ip}\nextendedKeyUsage=serverAuth,clientAuth\n"),
        );
        sign("client", "extendedKeyUsage=clientAuth\n".to_string());
        EtcdTls {
            ca: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
        }
    }
}

impl EtcdServer {
    /// Starts etcd inside the namespace at `netns_path` (clients on
    /// `listen_ip:port`, peers on `listen_ip:port+1`) and waits until it
    /// answers `/health`. Panics, with etcd's log, if it does not.
    pub fn start(netns_path: &Path, listen_ip: impl Into<IpAddr>, port: u16) -> EtcdServer {
        Self::start_inner(netns_path, listen_ip.into(), port, None)
    }

    /// Like [`start`](Self::start), serving clients over TLS with `tls`'s
    /// server certificate and requiring client certificates signed by its CA.
    pub fn start_tls(
        netns_path: &Path,
        listen_ip: impl Into<IpAddr>,
        port: u16,
        tls: &EtcdTls,
    ) -> EtcdServer {
        Self::start_inner(netns_path, listen_ip.into(), port, Some(tls.clone()))
    }

    fn start_inner(netns_path: &Path, ip: IpAddr, port: u16, tls: Option<EtcdTls>) -> EtcdServer {
        crate::host::require_root();
        assert!(port < u16::MAX, "etcd needs port+1 for its peer URL");
        // wh-etcd-<pid>-<n>, the pattern .ci/run clears after a killed run.
        let dir = Path::new(TESTS_DIR).join(unique_name("etcd"));
        std::fs::create_dir_all(dir.join("data"))
            .unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let server = EtcdServer {
            netns: netns_path.to_path_buf(),
            ip,
            port,
            dir,
            tls,
            child: Mutex::new(None),
        };
        server.launch();
        server
    }

    /// `http://IP:PORT` (`https://` with TLS; IPv6 in brackets).
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.client_addr())
    }

    /// The store URL wirehook's host config takes: `etcd://IP:PORT`
    /// (`etcds://` with TLS).
    pub fn store_url(&self) -> String {
        let scheme = if self.tls.is_some() { "etcds" } else { "etcd" };
        format!("{scheme}://{}", self.client_addr())
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
        let log_start = self.log().len();
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
            .args(["--logger", "zap", "--log-outputs", "stderr"]);
        if let Some(tls) = &self.tls {
            cmd.arg("--cert-file")
                .arg(&tls.server_cert)
                .arg("--key-file")
                .arg(&tls.server_key)
                .arg("--trusted-ca-file")
                .arg(&tls.ca)
                .arg("--client-cert-auth");
        }
        cmd.current_dir("/")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log file"))
            .stderr(log);
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => panic!("wirehook-tests: cannot start etcd through nsenter: {e}"),
        };
        *self.child.lock().unwrap() = Some(child);
        self.wait_ready(log_start);
    }

    /// Polls `GET /health` from inside the namespace until etcd says it is
    /// healthy (it has a leader). With TLS, which this harness does not
    /// speak, it waits for the port to accept connections and for etcd to
    /// log (past `log_start`) "serving client traffic securely", which etcd
    /// 3.4 does once it is ready (has a leader) and its gateway is set up.
    fn wait_ready(&self, log_start: usize) {
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
            let healthy = if self.tls.is_some() {
                in_netns(&self.netns, move || {
                    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
                }) && self
                    .log()
                    .get(log_start..)
                    .is_some_and(|l| l.contains("serving client traffic securely"))
            } else {
                in_netns(&self.netns, move || health(addr))
            };
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
