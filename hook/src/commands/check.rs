//! `wirehook check`: does the kernel still show what the records say?

use anyhow::{anyhow, bail, Result};
use wirehook_shared::netlink::Netlink;
use wirehook_shared::paths::Paths;
use wirehook_shared::store::Records;

use wirehook_shared::dns::control::Status;
use wirehook_shared::dns::table::valid_name;
use wirehook_shared::dns::wire::rcode;
use wirehook_shared::store::ContainerRecord;

use crate::drivers::{self, HostCx};

/// Does the resolver answer for `rec`: attached (same namespace), and a
/// query for its name from inside its namespace gets an answer?
fn check_names(
    rec: &ContainerRecord,
    resolver: &wirehook_shared::Result<Option<Status>>,
) -> Vec<String> {
    let st = match resolver {
        Err(e) => return vec![format!("names: {e}")],
        Ok(None) => {
            return vec![
                "names: the resolver is not running (`wirehook gc` starts it again)".into(),
            ]
        }
        Ok(Some(st)) => st,
    };
    match st.containers.iter().find(|c| c.id == rec.id) {
        None => return vec!["names: not attached to the resolver (`wirehook gc` attaches it)".into()],
        Some(c) if c.netns_inode != rec.netns_inode => {
            return vec!["names: the resolver serves an older namespace of this container (`wirehook gc` fixes it)".into()]
        }
        Some(_) => {}
    }
    let (Some(path), Some(name)) = (
        rec.netns_path.as_ref(),
        rec.dns_names()
            .into_iter()
            .find(|n| valid_name(&n.to_ascii_lowercase())),
    ) else {
        return Vec::new();
    };
    match crate::dns::probe(path, &name) {
        Ok(rcode::NOERROR) => Vec::new(),
        Ok(rc) => vec![format!(
            "names: 127.0.0.11 answers rcode {rc} for its own name {name}"
        )],
        Err(e) => vec![format!("names: {e}")],
    }
}

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
    let resolver = if list.iter().any(|r| r.wants_dns()) {
        crate::dns::status(paths, false)
    } else {
        Ok(None)
    };
    let mut bad = 0;
    for rec in &list {
        let mut problems = drivers::for_mode(rec.mode).check(&cx, rec, None);
        for i in &rec.interfaces {
            if let Ok(d) = drivers::for_network(i.driver) {
                problems.extend(d.check(&cx, rec, Some(i)));
            }
        }
        if rec.wants_dns() {
            problems.extend(check_names(rec, &resolver));
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
