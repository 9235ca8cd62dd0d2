//! wirehook: `wirehook hook createRuntime` / `poststop` with the OCI state
//! on stdin, state under a `WIREHOOK_ROOT` on the bench's tmpfs.

use crate::*;

impl Contender {
    /// Untimed, in the host namespace: what an operator does once before
    /// any container (wirehook's macvlan/ipvlan network on `lan0`; for
    /// `wirehook-nodns` a bridge network with names off).
    pub(crate) fn define_network(&self) -> Res<()> {
        if self.kind == Kind::WirehookNoDns {
            let mut cmd = self.cmd(&self.wirehook);
            cmd.args(["network", "create", "--dns=false", "--subnet", NODNS_SUBNET])
                .arg(WH_NODNS_NET)
                .env("WIREHOOK_ROOT", self.wirehook_root());
            timed(&mut cmd, "wirehook network create --dns=false", b"")?;
            return Ok(());
        }
        if self.kind != Kind::Wirehook || self.mode == Mode::Bridge {
            return Ok(());
        }
        if self.mode == Mode::Overlay {
            // On the local store: no cluster configuration.
            let mut cmd = self.cmd(&self.wirehook);
            cmd.args(["network", "create", "--driver", "overlay"])
                .args(["--subnet", OVERLAY_SUBNET, WH_OVERLAY_NET])
                .env("WIREHOOK_ROOT", self.wirehook_root());
            timed(&mut cmd, "wirehook network create --driver overlay", b"")?;
            return Ok(());
        }
        let mut cmd = self.cmd(&self.wirehook);
        cmd.args(["network", "create", "--driver", self.mode.key()])
            .args(["--mode", self.mode.sub_mode(), "--parent", LAN_PARENT])
            .args(["--subnet", LAN_SUBNET, "--gateway", LAN_GATEWAY, WH_LAN_NET])
            .env("WIREHOOK_ROOT", self.wirehook_root());
        timed(&mut cmd, "wirehook network create", b"")?;
        Ok(())
    }

    pub(crate) fn bundle(&self, c: &Ctr) -> PathBuf {
        self.dir.join("bundles").join(c.id())
    }

    pub(crate) fn wirehook_root(&self) -> PathBuf {
        self.dir.join("root")
    }

    /// Timed `wirehook hook createRuntime`.
    pub(crate) fn wirehook_setup(&mut self, c: &Ctr) -> Res<Duration> {
        let annotations = match self.mode {
            Mode::Bridge => format!(
                r#""io.wirehook.network":"{}","io.wirehook.ports":"{}:{CONTAINER_PORT}""#,
                if self.kind == Kind::WirehookNoDns {
                    WH_NODNS_NET
                } else {
                    "bridge"
                },
                c.host_port()
            ),
            Mode::Macvlan | Mode::Ipvlan => {
                format!(r#""io.wirehook.network":"{WH_LAN_NET}""#)
            }
            Mode::Overlay => format!(r#""io.wirehook.network":"{WH_OVERLAY_NET}""#),
        };
        let state = format!(
            r#"{{"ociVersion":"1.0.2","id":"{}","status":"creating","pid":{},"bundle":{},"annotations":{{{annotations}}}}}"#,
            c.id(),
            c.pid,
            json_str(&self.bundle(c).to_string_lossy()),
        );
        let mut cmd = self.cmd(&self.wirehook);
        cmd.args(["hook", "createRuntime"])
            .env("WIREHOOK_ROOT", self.wirehook_root());
        Ok(timed(&mut cmd, "wirehook hook createRuntime", state.as_bytes())?.0)
    }

    /// Timed `wirehook hook poststop`.
    pub(crate) fn wirehook_teardown(&mut self, c: &Ctr) -> Res<Duration> {
        let state = format!(
            r#"{{"ociVersion":"1.0.2","id":"{}","status":"stopped","bundle":{},"annotations":{{}}}}"#,
            c.id(),
            json_str(&self.bundle(c).to_string_lossy())
        );
        let mut cmd = self.cmd(&self.wirehook);
        cmd.args(["hook", "poststop"])
            .env("WIREHOOK_ROOT", self.wirehook_root());
        Ok(timed(&mut cmd, "wirehook hook poststop", state.as_bytes())?.0)
    }
}
