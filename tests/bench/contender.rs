//! A contender in one mode: its containers, its per-container preparation
//! and the dispatch of setup and teardown to its own module.

use crate::*;

#[derive(Clone, Copy)]
pub(crate) struct Ctr {
    pub(crate) idx: usize,
    pub(crate) pid: u32,
}

impl Ctr {
    pub(crate) fn netns(&self) -> String {
        format!("/proc/{}/ns/net", self.pid)
    }
    pub(crate) fn host_port(&self) -> usize {
        BASE_PORT + self.idx
    }
    pub(crate) fn id(&self) -> String {
        format!("bench-{}", self.idx)
    }
}

pub(crate) struct Contender {
    pub(crate) kind: Kind,
    pub(crate) mode: Mode,
    pub(crate) host: HostNs,
    pub(crate) dir: PathBuf,
    pub(crate) wirehook: PathBuf,
    pub(crate) cni_path: PathBuf,
    pub(crate) netavark: PathBuf,
    /// `--stopped`: the container's process is gone at teardown.
    pub(crate) stopped: bool,
    /// CNI: the cached chain result per container (prevResult for DEL).
    pub(crate) cni_results: HashMap<usize, String>,
    /// This contender's containers, by index.
    pub(crate) ctrs: Vec<Ctr>,
    /// The floor's warm state (`Kind::Floor`).
    pub(crate) floor: Option<Floor>,
}

impl Contender {
    pub(crate) fn new(
        kind: Kind,
        mode: Mode,
        host: HostNs,
        dir: PathBuf,
        o: &Opts,
    ) -> Res<Contender> {
        fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        if kind.is_wirehook() {
            // WIREHOOK_ROOT: an empty directory on the bench's tmpfs.
            let root = dir.join("root");
            fs::create_dir_all(&root).map_err(|e| format!("mkdir {}: {e}", root.display()))?;
        }
        Ok(Contender {
            kind,
            mode,
            host,
            dir,
            wirehook: o.wirehook.clone(),
            cni_path: o.cni_path.clone(),
            netavark: o.netavark.clone(),
            stopped: o.stopped,
            cni_results: HashMap::new(),
            ctrs: Vec::new(),
            floor: None,
        })
    }

    /// With `--stopped`, CNI and netavark get the container's namespace
    /// through a bind mount the bench holds (`DIR/netns/ID`), as podman
    /// does; wirehook, like runc, is given only the pid at setup (and so is
    /// the floor, which bind-mounts the namespace itself, as wirehook does).
    pub(crate) fn holds_ns(&self) -> bool {
        self.stopped && matches!(self.kind, Kind::Cni | Kind::Netavark)
    }

    /// The namespace path a plugin is given.
    pub(crate) fn ns_path(&self, c: &Ctr) -> PathBuf {
        if self.holds_ns() {
            self.dir.join("netns").join(c.id())
        } else {
            PathBuf::from(c.netns())
        }
    }

    /// Untimed per-container preparation (files a runtime has before it
    /// calls the hook, the namespace bind mount podman makes).
    pub(crate) fn prepare(&self, c: &Ctr) -> Res<()> {
        if self.holds_ns() {
            let held = self.ns_path(c);
            let dir = self.dir.join("netns");
            fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
            File::create(&held).map_err(|e| format!("create {}: {e}", held.display()))?;
            bind_mount(Path::new(&c.netns()), &held)?;
        }
        if self.kind.is_wirehook() {
            let b = self.bundle(c);
            fs::create_dir_all(b.join("rootfs"))
                .map_err(|e| format!("mkdir {}: {e}", b.display()))?;
            let config = r#"{"ociVersion":"1.0.2","process":{"terminal":false,"user":{"uid":0,"gid":0},"args":["sleep","3600"],"env":["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],"cwd":"/"},"root":{"path":"rootfs"},"hostname":"bench","linux":{"namespaces":[{"type":"pid"},{"type":"network"},{"type":"ipc"},{"type":"uts"},{"type":"mount"}]}}"#;
            fs::write(b.join("config.json"), config)
                .map_err(|e| format!("write {}/config.json: {e}", b.display()))?;
        }
        Ok(())
    }

    pub(crate) fn cmd(&self, prog: &Path) -> Command {
        let mut cmd = Command::new(prog);
        cmd.env_clear().env("PATH", PATH);
        cmd
    }

    /// Timed setup of one container (runs in the host namespace).
    pub(crate) fn setup(&mut self, c: &Ctr) -> Res<Duration> {
        match self.kind {
            Kind::Wirehook | Kind::WirehookNoDns => self.wirehook_setup(c),
            Kind::Floor => self.floor_setup(c),
            Kind::Cni => self.cni_setup(c),
            Kind::Netavark => self.netavark_setup(c),
        }
    }

    /// Timed teardown of one container (runs in the host namespace).
    pub(crate) fn teardown(&mut self, c: &Ctr) -> Res<Duration> {
        match self.kind {
            Kind::Wirehook | Kind::WirehookNoDns => self.wirehook_teardown(c),
            Kind::Floor => self.floor_teardown(c),
            Kind::Cni => self.cni_teardown(c),
            Kind::Netavark => self.netavark_teardown(c),
        }
    }
}
