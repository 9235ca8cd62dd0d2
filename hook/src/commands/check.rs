//! `wirehook check`: does the kernel still show what the records say?

use anyhow::{anyhow, bail, Result};
use wirehook_shared::netlink::Netlink;
use wirehook_shared::paths::Paths;
use wirehook_shared::store::Records;

use crate::drivers::{self, HostCx};

pub fn run(paths: &Paths, which: Option<&str>) -> Result<()> {
    let records = Records::new(paths);
    let list = match which {
        Some(k) => vec![records
            .find(k)?
            .ok_or_else(|| anyhow!("no container {k} (see `wirehook ps`)"))?],
        None => records.list(),
    };
    let nl = Netlink::new()?;
    let cx = HostCx {
        paths,
        host_nl: &nl,
        netns_alive: true,
        problems: Vec::new(),
        deferred: Vec::new(),
    };
    let mut bad = 0;
    for rec in &list {
        let mut problems = drivers::for_mode(rec.mode).check(&cx, rec, None);
        for i in &rec.interfaces {
            if let Ok(d) = drivers::for_network(i.driver) {
                problems.extend(d.check(&cx, rec, Some(i)));
            }
        }
        if problems.is_empty() {
            println!("{} ({}): ok", rec.name, rec.mode);
        } else {
            bad += 1;
            for p in problems {
                println!("{} ({}): {p}", rec.name, rec.mode);
            }
        }
    }
    if bad > 0 {
        bail!("{bad} container(s) differ from their records (`wirehook gc` removes those that stopped)");
    }
    Ok(())
}
