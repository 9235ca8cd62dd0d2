//! The bench's own world: a tmpfs for state, "host" namespaces, LANs,
//! containers, cleanup; and the timed invocation of a contender.

use crate::*;

/// Owns everything the bench creates and removes it on drop (normal end,
/// error, panic, or Ctrl-C, which is turned into an error).
pub(crate) struct Bench {
    pub(crate) pid: u32,
    pub(crate) base: PathBuf,
    pub(crate) base_mounted: bool,
    pub(crate) root_ns: File,
    pub(crate) netns: Vec<String>,
    pub(crate) containers: Vec<Child>,
    /// The floor's static no-op binary, built on first use.
    pub(crate) noop: Option<PathBuf>,
}

pub(crate) struct HostNs {
    pub(crate) name: String,
    pub(crate) fd: File,
}

impl Bench {
    pub(crate) fn new() -> Res<Bench> {
        let pid = std::process::id();
        let root_ns = File::open("/proc/thread-self/ns/net")
            .map_err(|e| format!("open /proc/thread-self/ns/net: {e}"))?;
        let base = PathBuf::from(format!("/run/{NS_PREFIX}{pid}"));
        fs::create_dir_all(&base).map_err(|e| format!("mkdir {}: {e}", base.display()))?;
        let mut b = Bench {
            pid,
            base,
            base_mounted: false,
            root_ns,
            netns: Vec::new(),
            containers: Vec::new(),
            noop: None,
        };
        // A private tmpfs for all state (IPAM, netavark config, bundles,
        // WIREHOOK_ROOT): every contender writes to memory, as on /run.
        let target = std::ffi::CString::new(b.base.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: valid C strings.
        let rc = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                c"mode=0755".as_ptr().cast(),
            )
        };
        if rc != 0 {
            return Err(last_os_error(&format!(
                "mount tmpfs on {}",
                b.base.display()
            )));
        }
        b.base_mounted = true;
        Ok(b)
    }

    /// The floor's static no-op binary (built once, on the tmpfs).
    pub(crate) fn noop(&mut self) -> Res<PathBuf> {
        if self.noop.is_none() {
            self.noop = Some(build_noop(&self.base)?);
        }
        Ok(self.noop.clone().unwrap_or_default())
    }

    /// A fresh "host" network namespace with loopback up.
    pub(crate) fn host_ns(&mut self, tag: &str) -> Res<HostNs> {
        let name = format!("{NS_PREFIX}{tag}-{}", self.pid);
        sh("ip", &["netns", "add", &name])?;
        self.netns.push(name.clone());
        sh("ip", &["-n", &name, "link", "set", "lo", "up"])?;
        let fd = File::open(format!("/run/netns/{name}"))
            .map_err(|e| format!("open /run/netns/{name}: {e}"))?;
        Ok(HostNs { name, fd })
    }

    /// The LAN of a macvlan/ipvlan contender: `lan0` in `host`, up, the
    /// parent of the containers' interfaces; its veth peer `eth0` in a LAN
    /// namespace of its own (`wh-bench-TAG-lan-PID`), holding the gateway
    /// address: the segment's router, as another machine.
    ///
    /// `underlay`: `lan0` also gets an address and the default route via
    /// the router, as the host's uplink (an overlay's underlay).
    pub(crate) fn lan(&mut self, host: &HostNs, tag: &str, underlay: bool) -> Res<()> {
        let lan = self.host_ns(&format!("{tag}-lan"))?;
        let gw = format!("{LAN_GATEWAY}/{LAN_PREFIX_LEN}");
        let h = host.name.as_str();
        let l = lan.name.as_str();
        sh(
            "ip",
            &[
                "-n", h, "link", "add", LAN_PARENT, "type", "veth", "peer", "name", "eth0",
                "netns", l,
            ],
        )?;
        sh("ip", &["-n", h, "link", "set", LAN_PARENT, "up"])?;
        sh("ip", &["-n", l, "addr", "add", &gw, "dev", "eth0"])?;
        sh("ip", &["-n", l, "link", "set", "eth0", "up"])?;
        if underlay {
            let own = format!("{LAN_HOST}/{LAN_PREFIX_LEN}");
            sh("ip", &["-n", h, "addr", "add", &own, "dev", LAN_PARENT])?;
            sh(
                "ip",
                &["-n", h, "route", "add", "default", "via", LAN_GATEWAY],
            )?;
        }
        Ok(())
    }

    /// A container: `sleep 3600` in a network namespace of its own.
    pub(crate) fn container(&mut self) -> Res<u32> {
        let mut cmd = Command::new("sleep");
        cmd.arg("3600")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        in_new_netns(&mut cmd);
        let child = cmd
            .spawn()
            .map_err(|e| format!("spawn container (sleep in a new netns): {e}"))?;
        let pid = child.id();
        self.containers.push(child);
        Ok(pid)
    }

    /// Kill container `pid` and reap it: what is left of it is its network
    /// namespace, if something holds that.
    pub(crate) fn stop_container(&mut self, pid: u32) -> Res<()> {
        let i = self
            .containers
            .iter()
            .position(|c| c.id() == pid)
            .ok_or_else(|| format!("no container with pid {pid}"))?;
        let mut c = self.containers.swap_remove(i);
        let _ = c.kill();
        c.wait()
            .map_err(|e| format!("wait for container {pid}: {e}"))?;
        Ok(())
    }

    /// Run `f` with this thread in `ns`; always come back to the root
    /// namespace.
    pub(crate) fn in_ns<T>(&self, ns: RawFd, f: impl FnOnce() -> Res<T>) -> Res<T> {
        enter_netns(ns)?;
        let r = f();
        enter_netns(self.root_ns.as_raw_fd()).map_err(|e| format!("back to root netns: {e}"))?;
        r
    }

    pub(crate) fn kill_containers(&mut self) {
        for c in &mut self.containers {
            let _ = c.kill();
        }
        for mut c in self.containers.drain(..) {
            let _ = c.wait();
        }
    }

    pub(crate) fn delete_netns(&mut self) {
        for name in self.netns.drain(..) {
            if let Err(e) = sh("ip", &["netns", "del", &name]) {
                eprintln!("wirehook-bench: cleanup: {e}");
            }
        }
    }

    /// End of a phase: containers gone, host namespaces gone. Leftover
    /// bind mounts of container namespaces below the tmpfs are released in
    /// `cleanup`.
    pub(crate) fn end_phase(&mut self) {
        self.kill_containers();
        self.delete_netns();
    }

    pub(crate) fn cleanup(&mut self) {
        let _ = enter_netns(self.root_ns.as_raw_fd());
        self.end_phase();
        if self.base_mounted {
            for m in mounts_below(&self.base) {
                detach_mount(&m);
            }
            self.base_mounted = false;
        }
        let _ = fs::remove_dir(&self.base);
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// Remove what a bench killed with SIGKILL left: `wh-bench-*-PID` network
/// namespaces and `/run/wh-bench-PID` mounts whose PID is gone.
pub(crate) fn remove_stale() {
    let dead = |s: &str| -> bool {
        s.rsplit('-')
            .next()
            .and_then(|p| p.parse::<u32>().ok())
            .is_some_and(|p| !pid_alive(p))
    };
    if let Ok(rd) = fs::read_dir("/run/netns") {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(NS_PREFIX) && dead(&name) {
                eprintln!("wirehook-bench: removing stale network namespace {name}");
                let _ = sh("ip", &["netns", "del", &name]);
            }
        }
    }
    if let Ok(rd) = fs::read_dir("/run") {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(NS_PREFIX) && dead(&name) {
                let p = e.path();
                eprintln!("wirehook-bench: removing stale {}", p.display());
                for m in mounts_below(&p) {
                    detach_mount(&m);
                }
                let _ = fs::remove_dir_all(&p);
            }
        }
    }
}

// -------------------------------------------------------- timed invocation

/// Spawn, feed stdin, drain stdout/stderr, wait: the wall-clock time a
/// runtime waits for a hook or plugin. Non-zero exit is an error carrying the
/// program's stderr.
pub(crate) fn timed(cmd: &mut Command, what: &str, input: &[u8]) -> Res<(Duration, Vec<u8>)> {
    check_stop()?;
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let t0 = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("{what}: cannot start {:?}: {e}", cmd.get_program()))?;
    if let Some(mut stdin) = child.stdin.take() {
        if let Err(e) = stdin.write_all(input) {
            if e.kind() != io::ErrorKind::BrokenPipe {
                return Err(format!("{what}: writing stdin: {e}"));
            }
        }
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{what}: wait: {e}"))?;
    let dt = t0.elapsed();
    if !out.status.success() {
        check_stop()?;
        return Err(format!(
            "{what} failed ({}).\n  command: {:?} {:?}\n  stdin: {}\n  stdout: {}\n  stderr: {}",
            out.status,
            cmd.get_program(),
            cmd.get_args().collect::<Vec<_>>(),
            String::from_utf8_lossy(input),
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok((dt, out.stdout))
}
