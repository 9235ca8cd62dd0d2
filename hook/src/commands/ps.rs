//! `wirehook ps`: the containers wirehook wired, from their records (the
//! name column shows aliases in parentheses, the network column a
//! network's own aliases (`network connect --alias`) in parentheses after
//! it, and an interface `network connect` added is marked `+`), and the
//! peers of the overlay networks this host has joined.

use anyhow::Result;
use wirehook_shared::overlay::LocalState;
use wirehook_shared::paths::Paths;
use wirehook_shared::store::Records;

/// Print rows as a left-aligned table with a header.
pub fn print_table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r.iter()) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == N {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        println!("{}", s.trim_end());
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

/// Runtime-generated ids (64 hex digits) shortened as docker does; ids
/// people chose are shown whole.
fn short_id(id: &str) -> &str {
    if id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        &id[..12]
    } else {
        id
    }
}

pub fn run(paths: &Paths, json: bool) -> Result<()> {
    let records =
        Records::new(paths).list_with(|e| eprintln!("wirehook: skipping unreadable record: {e}"));
    if json {
        println!("{}", serde_json::to_string_pretty(&records)?);
        return Ok(());
    }
    let rows: Vec<[String; 7]> = records
        .iter()
        .map(|r| {
            let join = |f: &dyn Fn(&wirehook_shared::store::InterfaceRecord) -> String| {
                let v: Vec<String> = r.interfaces.iter().map(f).collect();
                if v.is_empty() {
                    "-".to_string()
                } else {
                    v.join(",")
                }
            };
            let network = match (&r.shares_with, r.interfaces.is_empty()) {
                (Some(o), _) => format!(
                    "container:{}",
                    records
                        .iter()
                        .find(|x| &x.id == o)
                        .map(|x| x.name.as_str())
                        .unwrap_or_else(|| short_id(o))
                ),
                (None, true) => r.mode.to_string(),
                (None, false) => join(&|i| {
                    if i.aliases.is_empty() {
                        i.network.clone()
                    } else {
                        format!("{}({})", i.network, i.aliases.join(","))
                    }
                }),
            };
            [
                short_id(&r.id).to_string(),
                if r.aliases.is_empty() {
                    r.name.clone()
                } else {
                    format!("{} ({})", r.name, r.aliases.join(","))
                },
                r.mode.to_string(),
                network,
                join(&|i| {
                    if i.connected {
                        format!("{}+", i.ifname)
                    } else {
                        i.ifname.clone()
                    }
                }),
                join(&|i| {
                    i.addresses
                        .iter()
                        .map(|a| a.to_string())
                        .collect::<Vec<_>>()
                        .join(" ")
                }),
                join(&|i| {
                    i.ports
                        .iter()
                        .map(|p| p.to_string())
                        .collect::<Vec<_>>()
                        .join(" ")
                }),
            ]
        })
        .collect();
    print_table(
        &[
            "ID",
            "NAME",
            "MODE",
            "NETWORK",
            "IFACE",
            "ADDRESSES",
            "PORTS",
        ],
        &rows,
    );
    print_overlay_peers(paths);
    Ok(())
}

/// Under the table, each overlay network this host has joined: its share
/// and the hosts it reaches, as last programmed (no store round trip).
fn print_overlay_peers(paths: &Paths) {
    for st in LocalState::list(paths) {
        println!();
        println!("overlay {}", st.summary());
        // Encrypted: each peer's handshake, from the kernel.
        let wg = (!st.wireguard.is_empty())
            .then(|| crate::drivers::overlay::wireguard_state(&st.network));
        for p in &st.peers {
            match &wg {
                None => println!("  {}", p.describe()),
                Some(Ok(d)) => println!(
                    "  {}, {}",
                    p.describe(),
                    crate::drivers::overlay::handshake_text(d, p.wg_key.as_deref())
                ),
                Some(Err(e)) => println!("  {}, WireGuard unreadable: {e}", p.describe()),
            }
        }
    }
}
