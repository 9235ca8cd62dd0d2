//! netavark (podman's network backend), bridge mode only: `netavark
//! --config DIR --rootless false setup|teardown NETNS` with podman's
//! network-options JSON on stdin.

use crate::*;

impl Contender {
    pub(crate) fn netavark_opts(&self, c: &Ctr) -> String {
        let host = c.idx + 2; // .0.0 is the network, .0.1 the gateway
        let ip = format!(
            "{}.{}.{}.{}",
            NV_NET_PREFIX[0],
            NV_NET_PREFIX[1],
            (host >> 8) & 0xff,
            host & 0xff
        );
        let [a, b] = NV_NET_PREFIX;
        format!(
            r#"{{"container_id":"{:064x}","container_name":"{}","port_mappings":[{{"host_ip":"","container_port":{CONTAINER_PORT},"host_port":{},"range":1,"protocol":"tcp"}}],"networks":{{"{NV_NET}":{{"static_ips":["{ip}"],"aliases":[],"interface_name":"eth0"}}}},"network_info":{{"{NV_NET}":{{"name":"{NV_NET}","id":"{}","driver":"bridge","network_interface":"{NV_BRIDGE}","created":"2024-01-01T00:00:00Z","subnets":[{{"subnet":"{a}.{b}.0.0/16","gateway":"{a}.{b}.0.1"}}],"ipv6_enabled":false,"internal":false,"dns_enabled":false,"ipam_options":{{"driver":"host-local"}}}}}}}}"#,
            0xbe0c_0000_0000_u64 + c.idx as u64,
            c.id(),
            c.host_port(),
            "b".repeat(64)
        )
    }

    pub(crate) fn netavark_cmd(&self, op: &str, c: &Ctr) -> Command {
        let mut cmd = self.cmd(&self.netavark);
        cmd.arg("--config")
            .arg(self.dir.join("netavark"))
            .args(["--rootless", "false", op])
            .arg(self.ns_path(c));
        cmd
    }

    /// Timed `netavark setup`.
    pub(crate) fn netavark_setup(&mut self, c: &Ctr) -> Res<Duration> {
        let opts = self.netavark_opts(c);
        let mut cmd = self.netavark_cmd("setup", c);
        Ok(timed(&mut cmd, "netavark setup", opts.as_bytes())?.0)
    }

    /// Timed `netavark teardown`.
    pub(crate) fn netavark_teardown(&mut self, c: &Ctr) -> Res<Duration> {
        let opts = self.netavark_opts(c);
        let mut cmd = self.netavark_cmd("teardown", c);
        Ok(timed(&mut cmd, "netavark teardown", opts.as_bytes())?.0)
    }
}
