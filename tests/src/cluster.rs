//! Several hosts on one machine, for overlay networks: an underlay
//! namespace with a bridge (`ul0`, 192.0.2.1/24) that plays the network
//! between machines, etcd listening on 192.0.2.1 inside it, and hosts
//! ([`TestHost`]s) each joined to the bridge by a veth (`eth0`,
//! 192.0.2.(10+n)/24, default route via 192.0.2.1) and configured with
//! the store and a host id of their own.
//!
//! ```no_run
//! use wirehook_tests::cluster::Cluster;
//! use wirehook_tests::OutputExt;
//! let cluster = Cluster::with_etcd("ov");
//! let h1 = cluster.add_host();
//! let h2 = cluster.add_host();
//! h1.wirehook(&["network", "create", "--driver", "overlay", "ov"], None)
//!     .expect_success("create");
//! ```
//!
//! Declare the cluster first, then its hosts, then their containers: they
//! drop in reverse, and a dropped host takes its agent, namespace and root
//! along (the others' entries for it stay until their agents notice).

use std::cell::Cell;
use std::net::Ipv4Addr;
use std::ops::Deref;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::cmd::{self, OutputExt, DEFAULT_TIMEOUT};
use crate::etcd::EtcdServer;
use crate::host::TestHost;

/// Address of the underlay bridge, where etcd listens.
pub const UNDERLAY_GW: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub const ETCD_PORT: u16 = 2379;

pub struct Cluster {
    underlay: TestHost,
    etcd: Option<EtcdServer>,
    next: Cell<usize>,
    tag: String,
}

impl Cluster {
    /// An underlay and etcd on it; hosts are added with [`add_host`](Self::add_host).
    pub fn with_etcd(tag: &str) -> Cluster {
        let c = Cluster::without_store(tag);
        let etcd = EtcdServer::start(c.underlay.netns_path(), UNDERLAY_GW, ETCD_PORT);
        Cluster {
            etcd: Some(etcd),
            ..c
        }
    }

    /// An underlay without etcd: hosts get no store (tests of errors
    /// point them elsewhere).
    pub fn without_store(tag: &str) -> Cluster {
        let underlay = TestHost::new(&format!("{tag}ul"));
        underlay
            .sh(&format!(
                "ip link add ul0 type bridge && ip addr add {UNDERLAY_GW}/24 dev ul0 && ip link set ul0 up"
            ))
            .expect_success("underlay bridge");
        Cluster {
            underlay,
            etcd: None,
            next: Cell::new(1),
            tag: tag.to_string(),
        }
    }

    pub fn underlay(&self) -> &TestHost {
        &self.underlay
    }

    pub fn etcd(&self) -> &EtcdServer {
        self.etcd.as_ref().expect("cluster made with_etcd")
    }

    /// Requests etcd has served so far (its gRPC request counter; the JSON
    /// gateway wirehook speaks goes through gRPC too), read with busybox
    /// wget inside the underlay.
    pub fn etcd_requests(&self) -> u64 {
        let out = self
            .underlay
            .exec(&[
                "busybox",
                "wget",
                "-qO-",
                &format!("http://{UNDERLAY_GW}:{ETCD_PORT}/metrics"),
            ])
            .expect_success("etcd metrics");
        out.stdout_str()
            .lines()
            .filter(|l| l.starts_with("grpc_server_started_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }

    /// Requests etcd has served so far, by gRPC method (`Range`, `Put`,
    /// `Txn`, `DeleteRange`, `LeaseGrant`, `LeaseKeepAlive`, `Watch`, ...).
    pub fn etcd_requests_by_method(&self) -> std::collections::BTreeMap<String, u64> {
        let out = self
            .underlay
            .exec(&[
                "busybox",
                "wget",
                "-qO-",
                &format!("http://{UNDERLAY_GW}:{ETCD_PORT}/metrics"),
            ])
            .expect_success("etcd metrics");
        let mut by = std::collections::BTreeMap::new();
        for l in out
            .stdout_str()
            .lines()
            .filter(|l| l.starts_with("grpc_server_started_total{"))
        {
            let method = l
                .split("grpc_method=\"")
                .nth(1)
                .and_then(|m| m.split('"').next())
                .unwrap_or("?")
                .to_string();
            let n = l
                .rsplit(' ')
                .next()
                .and_then(|n| n.parse::<f64>().ok())
                .unwrap_or(0.0) as u64;
            *by.entry(method).or_insert(0) += n;
        }
        by
    }

    /// The keys under `prefix` in the cluster's etcd, sorted (read with
    /// `etcdctl` from the underlay).
    pub fn etcd_keys(&self, prefix: &str) -> Vec<String> {
        let out = self
            .underlay()
            .exec(&[
                "etcdctl",
                "--endpoints",
                &format!("http://{UNDERLAY_GW}:{ETCD_PORT}"),
                "get",
                "--prefix",
                prefix,
                "--keys-only",
            ])
            .expect_success("etcdctl get");
        let mut keys: Vec<String> = out
            .stdout_str()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect();
        keys.sort();
        keys
    }

    /// `etcd://192.0.2.1:2379`.
    pub fn store_url(&self) -> String {
        format!("etcd://{UNDERLAY_GW}:{ETCD_PORT}")
    }

    /// A new host `h<n>` on the underlay, configured for the cluster's
    /// store (if any).
    pub fn add_host(&self) -> ClusterHost {
        let id = format!("h{}", self.next.get());
        let mut config = serde_json::json!({ "host_id": id });
        if self.etcd.is_some() {
            config["store"] = self.store_url().into();
        }
        self.add_host_with(config)
    }

    /// A new host with `config` as its config.json.
    pub fn add_host_with(&self, config: serde_json::Value) -> ClusterHost {
        let n = self.next.get().max(1);
        self.next.set(n + 1);
        let host = TestHost::new(&format!("{}h{n}", self.tag));
        let addr = Ipv4Addr::new(192, 0, 2, 10 + n as u8);
        let ul = self.underlay.name();
        let port = format!("p{n}");
        let ip = |args: &[&str]| {
            cmd::run(Command::new("ip").args(args), None, DEFAULT_TIMEOUT)
                .expect_success(&format!("ip {}", args.join(" ")));
        };
        ip(&[
            "-n",
            ul,
            "link",
            "add",
            &port,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            host.name(),
        ]);
        ip(&["-n", ul, "link", "set", &port, "master", "ul0", "up"]);
        host.sh(&format!(
            "ip addr add {addr}/24 dev eth0 && ip link set eth0 up && ip route add default via {UNDERLAY_GW}"
        ))
        .expect_success("host on the underlay");
        let etc = host.root().join("etc/wirehook");
        std::fs::create_dir_all(&etc).expect("etc dir");
        std::fs::write(
            etc.join("config.json"),
            serde_json::to_vec_pretty(&config).expect("json"),
        )
        .expect("write config.json");
        ClusterHost {
            host,
            id: config["host_id"].as_str().unwrap_or_default().to_string(),
            addr,
            agent: Mutex::new(None),
        }
    }
}

/// One host of a [`Cluster`]; derefs to its [`TestHost`].
pub struct ClusterHost {
    host: TestHost,
    id: String,
    addr: Ipv4Addr,
    agent: Mutex<Option<Child>>,
}

impl Deref for ClusterHost {
    type Target = TestHost;
    fn deref(&self) -> &TestHost {
        &self.host
    }
}

impl ClusterHost {
    /// Its `host_id`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Its underlay address.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// Starts `wirehook agent ARGS...` in the host (stderr to
    /// `root/logs/agent.log`).
    pub fn start_agent(&self, args: &[&str]) {
        let mut agent = self.agent.lock().unwrap();
        assert!(agent.is_none(), "agent already running");
        let bin = TestHost::wirehook_bin();
        let mut argv = vec![bin.to_str().expect("utf-8"), "agent"];
        argv.extend_from_slice(args);
        let logs = self.host.root().join("logs");
        std::fs::create_dir_all(&logs).expect("logs dir");
        let log = std::fs::File::create(logs.join("agent.log")).expect("agent log");
        let mut c = self.host.command(&argv);
        c.env(crate::host::ROOT_ENV, self.host.root())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let child = cmd::spawn(&mut c);
        self.host.track_pid(child.id() as i32);
        *agent = Some(child);
    }

    /// SIGTERM to the agent (it revokes its lease) and wait for it.
    pub fn stop_agent(&self) -> std::process::ExitStatus {
        let mut child = self.agent.lock().unwrap().take().expect("agent running");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .expect("signal agent");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = child.try_wait().expect("wait agent") {
                return st;
            }
            assert!(Instant::now() < deadline, "agent did not stop within 10 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Is the agent still running?
    pub fn agent_running(&self) -> bool {
        self.agent
            .lock()
            .unwrap()
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// The agent's log so far.
    pub fn agent_log(&self) -> String {
        std::fs::read_to_string(self.host.root().join("logs/agent.log")).unwrap_or_default()
    }

    /// Kills the agent at once (no lease revoke): a host that dies.
    pub fn kill_agent(&self) {
        if let Some(mut c) = self.agent.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The remote entries on this host's VXLAN device `dev`: routes
    /// (destination), neighbours (address) and FDB entries (underlay
    /// destination), each sorted.
    pub fn vxlan_entries(&self, dev: &str) -> VxlanEntries {
        let routes = self.host.json(&["ip", "-j", "route", "show", "dev", dev]);
        let neigh = self.host.json(&["ip", "-j", "neigh", "show", "dev", dev]);
        let fdb = self.host.json(&["bridge", "-j", "fdb", "show", "dev", dev]);
        let strings = |v: &serde_json::Value, key: &str| -> Vec<String> {
            let mut out: Vec<String> = v
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|e| e[key].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            out.sort();
            out
        };
        VxlanEntries {
            routes: strings(&routes, "dst"),
            neighbours: strings(&neigh, "dst"),
            fdb: strings(&fdb, "dst"),
        }
    }
}

impl Drop for ClusterHost {
    fn drop(&mut self) {
        self.kill_agent();
    }
}

/// See [`ClusterHost::vxlan_entries`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanEntries {
    pub routes: Vec<String>,
    pub neighbours: Vec<String>,
    pub fdb: Vec<String>,
}

/// Polls `f` every 50 ms until it returns true or `within` passes.
pub fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
