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
/// query for its name on each of its networks with names (`NAME.NETWORK`)
/// sent from inside its namespace to 127.0.0.11 gets an answer with an
/// address? The queries are sent even when the control socket does not
/// answer: they are what "answers" means.
fn check_names(
    rec: &ContainerRecord,
    resolver: &wirehook_shared::Result<Option<Status>>,
) -> Vec<String> {
    let mut out = Vec::new();
    match resolver {
        Err(e) => out.push(format!("names: the resolver's control socket: {e}")),
        Ok(None) => {
            return vec![
                "names: the resolver is not running (`wirehook gc` starts it again)".into(),
            ]
        }
        Ok(Some(st)) => match st.containers.iter().find(|c| c.id == rec.id) {
            None => out.push(
                "names: not attached to the resolver (`wirehook gc` attaches it)".into(),
            ),
            Some(c) if c.netns_inode != rec.netns_inode => out.push(
                "names: the resolver serves an older namespace of this container (`wirehook gc` fixes it)".into(),
            ),
            Some(_) => {}
        },
    }
    let Some(path) = rec.netns_path.as_ref() else {
        return out;
    };
    for iface in rec.interfaces.iter().filter(|i| i.dns) {
        let Some(name) = rec
            .dns_names_on(iface)
            .into_iter()
            .map(|n| {
                format!(
                    "{}.{}",
                    n.to_ascii_lowercase(),
                    iface.network.to_ascii_lowercase()
                )
            })
            .find(|n| valid_name(n))
        else {
            continue;
        };
        match crate::dns::probe(path, &name) {
            Ok(rcode::NOERROR) => {}
            Ok(rc) => out.push(format!(
                "names: 127.0.0.11 answers rcode {rc} for {name} (its own name on {})",
                iface.network
            )),
            Err(e) => out.push(format!("names: query for {name}: {e}")),
        }
    }
    out
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
