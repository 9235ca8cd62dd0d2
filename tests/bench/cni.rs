//! The CNI reference plugins as a runtime chains them: `bridge` (with
//! host-local IPAM) then `portmap` in bridge mode, `macvlan` or `ipvlan`
//! otherwise; DEL with the cached result as `prevResult`.

use crate::*;

impl Contender {
    pub(crate) fn cni_cmd(&self, plugin: &str, op: &str, c: &Ctr) -> Command {
        let mut cmd = self.cmd(&self.cni_path.join(plugin));
        cmd.env("CNI_COMMAND", op)
            .env("CNI_CONTAINERID", c.id())
            .env("CNI_NETNS", self.ns_path(c))
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", &self.cni_path);
        cmd
    }

    /// A plugin's configuration with host-local IPAM (leases on the
    /// bench's tmpfs) and a default route; `plugin` is the plugin's own
    /// fields, `range` the host-local range.
    pub(crate) fn cni_conf(&self, plugin: &str, range: &str, prev: Option<&str>) -> String {
        let data_dir = json_str(&self.dir.join("ipam").to_string_lossy());
        let mut s = format!(
            r#"{{"cniVersion":"1.0.0","name":"benchnet",{plugin},"ipam":{{"type":"host-local","ranges":[[{range}]],"routes":[{{"dst":"0.0.0.0/0"}}],"dataDir":{data_dir}}}"#
        );
        if let Some(p) = prev {
            let _ = write!(s, r#","prevResult":{p}"#);
        }
        s.push('}');
        s
    }

    pub(crate) fn cni_bridge_conf(&self, prev: Option<&str>) -> String {
        self.cni_conf(
            &format!(r#""type":"bridge","bridge":"{CNI_BRIDGE}","isGateway":true,"ipMasq":true"#),
            &format!(r#"{{"subnet":"{CNI_SUBNET}"}}"#),
            prev,
        )
    }

    /// The `macvlan` or `ipvlan` plugin on `lan0`, the LAN's router as
    /// gateway.
    pub(crate) fn cni_lan_conf(&self, prev: Option<&str>) -> String {
        let (plugin, mode) = (self.mode.key(), self.mode.sub_mode());
        self.cni_conf(
            &format!(r#""type":"{plugin}","master":"{LAN_PARENT}","mode":"{mode}""#),
            &format!(r#"{{"subnet":"{LAN_SUBNET}","gateway":"{LAN_GATEWAY}"}}"#),
            prev,
        )
    }

    pub(crate) fn cni_portmap_conf(&self, c: &Ctr, prev: &str) -> String {
        format!(
            r#"{{"cniVersion":"1.0.0","name":"benchnet","type":"portmap","capabilities":{{"portMappings":true}},"snat":true,"runtimeConfig":{{"portMappings":[{{"hostPort":{},"containerPort":{CONTAINER_PORT},"protocol":"tcp"}}]}},"prevResult":{prev}}}"#,
            c.host_port()
        )
    }

    /// CNI: the result ADD returned for `c`, which DEL gets as `prevResult`.
    pub(crate) fn cached_result(&mut self, c: &Ctr) -> Res<String> {
        self.cni_results
            .remove(&c.idx)
            .ok_or_else(|| format!("no cached CNI result for {}", c.id()))
    }

    /// Timed CNI ADD: the mode's plugin, or bridge then portmap (the sum).
    pub(crate) fn cni_setup(&mut self, c: &Ctr) -> Res<Duration> {
        if self.mode != Mode::Bridge {
            let plugin = self.mode.key();
            let conf = self.cni_lan_conf(None);
            let (t, r) = timed(
                &mut self.cni_cmd(plugin, "ADD", c),
                &format!("CNI {plugin} ADD"),
                conf.as_bytes(),
            )?;
            let r = String::from_utf8(r).map_err(|_| format!("{plugin} result is not UTF-8"))?;
            self.cni_results.insert(c.idx, r.trim().to_string());
            return Ok(t);
        }
        let conf = self.cni_bridge_conf(None);
        let (t1, r1) = timed(
            &mut self.cni_cmd("bridge", "ADD", c),
            "CNI bridge ADD",
            conf.as_bytes(),
        )?;
        let r1 = String::from_utf8(r1).map_err(|_| "bridge result is not UTF-8")?;
        let conf = self.cni_portmap_conf(c, r1.trim());
        let (t2, r2) = timed(
            &mut self.cni_cmd("portmap", "ADD", c),
            "CNI portmap ADD",
            conf.as_bytes(),
        )?;
        let r2 = String::from_utf8(r2).map_err(|_| "portmap result is not UTF-8")?;
        self.cni_results.insert(c.idx, r2.trim().to_string());
        Ok(t1 + t2)
    }

    /// Timed CNI DEL, in reverse chain order (the sum).
    pub(crate) fn cni_teardown(&mut self, c: &Ctr) -> Res<Duration> {
        if self.mode != Mode::Bridge {
            let prev = self.cached_result(c)?;
            let plugin = self.mode.key();
            let conf = self.cni_lan_conf(Some(&prev));
            let (t, _) = timed(
                &mut self.cni_cmd(plugin, "DEL", c),
                &format!("CNI {plugin} DEL"),
                conf.as_bytes(),
            )?;
            return Ok(t);
        }
        let prev = self.cached_result(c)?;
        let conf = self.cni_portmap_conf(c, &prev);
        let (t1, _) = timed(
            &mut self.cni_cmd("portmap", "DEL", c),
            "CNI portmap DEL",
            conf.as_bytes(),
        )?;
        let conf = self.cni_bridge_conf(Some(&prev));
        let (t2, _) = timed(
            &mut self.cni_cmd("bridge", "DEL", c),
            "CNI bridge DEL",
            conf.as_bytes(),
        )?;
        Ok(t1 + t2)
    }
}
