//! The text of wirehook's nftables ruleset and the rare operations that
//! run `nft`: creating the table and its base chains, writing a network's
//! chains, and reading other tables' forward chains for
//! [`forward_drop_warning`]. Per-container changes never come here (they
//! are netlink set-element updates in `mod.rs`).
//!
//! Layout of `table inet wirehook`:
//!
//! - `ruleset_v1`: empty; says which version of this layout the table has.
//! - `bridges`: every wirehook bridge (for isolation between networks).
//! - `pub4_any`, `pub6_any`: `proto . port -> addr . port` for ports
//!   published on every local address; `pub4_ip`, `pub6_ip`: the same keyed
//!   also by the host address.
//! - `fwd_from_bridge`, `fwd_to_bridge`, `nat_from_bridge`, `nat_to_bridge`:
//!   bridge name -> `jump nw-NAME-...`, so base chains hold no per-network
//!   rule and a lookup costs the same with 1 or 500 networks.
//! - Base chains: `prerouting` and `output` (DNAT through the port maps),
//!   `postrouting` (masquerade through the network chains), `forward`
//!   (established traffic, then the network chains).

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use ipnetwork::IpNetwork;

use super::{NetworkRules, TABLE};
use crate::error::{Error, Result};

/// Name of an empty set that marks the version of the ruleset. A table
/// without it (older wirehook, or made by hand) is rewritten; table
/// comments cannot serve, the kernel keeps the first one forever.
pub const VERSION_MARKER: &str = "ruleset_v2";

/// The verdict maps and the network chain each one jumps to.
pub const VMAPS: [(&str, &str); 4] = [
    ("fwd_from_bridge", "fwdout"),
    ("fwd_to_bridge", "fwdin"),
    ("nat_from_bridge", "masq"),
    ("nat_to_bridge", "hairpin"),
];

/// Suffixes of a network's chains.
pub const CHAIN_SUFFIXES: [&str; 4] = ["fwdout", "fwdin", "masq", "hairpin"];

/// `nw-NAME-SUFFIX`.
pub fn chain_name(network: &str, suffix: &str) -> String {
    format!("nw-{network}-{suffix}")
}

/// Network names become part of chain names, which `nft` reads unquoted:
/// letters, digits, `_`, `.`, `-`, at most 200 bytes.
pub fn validate_network_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "network name {name:?} cannot name firewall chains: use letters, digits, '_', '.', '-' (at most 200)"
        )))
    }
}

/// Interface names go into `nft` strings: 1-15 bytes of letters, digits,
/// `_`, `.`, `-`.
pub fn validate_ifname(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "interface name {name:?} is not usable in firewall rules: 1-15 letters, digits, '_', '.', '-'"
        )))
    }
}

/// The table, its sets and maps, and the base chains with their rules.
/// Safe to run on an existing table: declarations of existing objects are
/// no-ops, base chains are flushed and refilled in the same transaction,
/// and map elements (published ports, networks) are kept.
pub fn table_script() -> String {
    let t = TABLE;
    let mut s = String::new();
    let _ = writeln!(s, "table inet {t} {{");
    s.push_str("  comment \"managed by wirehook: do not edit\"\n");
    let _ = writeln!(s, "  set {VERSION_MARKER} {{ type mark; comment \"version of the ruleset wirehook wrote\"; }}");
    s.push_str(
        "  set bridges { type ifname; }
  map pub4_any { type inet_proto . inet_service : ipv4_addr . inet_service; }
  map pub4_ip { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }
  map pub6_any { type inet_proto . inet_service : ipv6_addr . inet_service; }
  map pub6_ip { type ipv6_addr . inet_proto . inet_service : ipv6_addr . inet_service; }
  map fwd_from_bridge { type ifname : verdict; }
  map fwd_to_bridge { type ifname : verdict; }
  map nat_from_bridge { type ifname : verdict; }
  map nat_to_bridge { type ifname : verdict; }
  set encrypted_vnis { typeof @th,96,24; comment \"VNIs that arrive only through WireGuard\"; }
  chain input { type filter hook input priority filter; policy accept; }
  chain prerouting { type nat hook prerouting priority dstnat; policy accept; }
  chain output { type nat hook output priority -100; policy accept; }
  chain postrouting { type nat hook postrouting priority srcnat; policy accept; }
  chain forward { type filter hook forward priority filter; policy accept; }
}
",
    );
    for chain in ["input", "prerouting", "output", "postrouting", "forward"] {
        let _ = writeln!(s, "flush chain inet {t} {chain}");
    }
    // VXLAN is trusted by the VNI it carries: nothing a container sends
    // may reach a VXLAN socket, here (input) or on another host
    // (forward, masqueraded to this host's address), nor be routed into a
    // WireGuard device. An encrypted network's VNI is taken only from
    // WireGuard: a plaintext frame with it from the underlay is dropped
    // (the VNI is the 24 bits after the VXLAN flags).
    let vx = crate::overlay::VXLAN_PORT;
    let _ = writeln!(
        s,
        "add rule inet {t} input iifname @bridges udp dport {vx} drop"
    );
    let _ = writeln!(
        s,
        "add rule inet {t} input udp dport {vx} iifname != \"wg-*\" @th,96,24 @encrypted_vnis drop"
    );
    let _ = writeln!(
        s,
        "add rule inet {t} forward iifname @bridges udp dport {vx} drop"
    );
    let _ = writeln!(
        s,
        "add rule inet {t} forward iifname @bridges oifname \"wg-*\" drop"
    );
    // DNAT: published on every local address (fib) or on one address.
    for chain in ["prerouting", "output"] {
        // In `output`, only packets to local addresses (the host itself,
        // 127.0.0.1) are translated; traffic leaving the host is not.
        let local_ip = if chain == "output" {
            "fib daddr type local "
        } else {
            ""
        };
        let _ = writeln!(
            s,
            "add rule inet {t} {chain} meta nfproto ipv4 fib daddr type local dnat ip to meta l4proto . th dport map @pub4_any"
        );
        let _ = writeln!(
            s,
            "add rule inet {t} {chain} meta nfproto ipv4 {local_ip}dnat ip to ip daddr . meta l4proto . th dport map @pub4_ip"
        );
        let _ = writeln!(
            s,
            "add rule inet {t} {chain} meta nfproto ipv6 fib daddr type local dnat ip6 to meta l4proto . th dport map @pub6_any"
        );
        let _ = writeln!(
            s,
            "add rule inet {t} {chain} meta nfproto ipv6 {local_ip}dnat ip6 to ip6 daddr . meta l4proto . th dport map @pub6_ip"
        );
    }
    let _ = writeln!(
        s,
        "add rule inet {t} postrouting iifname vmap @nat_from_bridge"
    );
    let _ = writeln!(
        s,
        "add rule inet {t} postrouting oifname vmap @nat_to_bridge"
    );
    let _ = writeln!(
        s,
        "add rule inet {t} forward ct state established,related accept"
    );
    let _ = writeln!(s, "add rule inet {t} forward iifname vmap @fwd_from_bridge");
    let _ = writeln!(s, "add rule inet {t} forward oifname vmap @fwd_to_bridge");
    s
}

fn net_text(n: &IpNetwork) -> String {
    format!("{}/{}", n.network(), n.prefix())
}

/// The chains of one network and the map elements jumping to them, as
/// one transaction that first empties the chains (so running it again
/// leaves one copy). Names must be validated before.
pub fn network_script(n: &NetworkRules) -> String {
    let t = TABLE;
    let br = n.bridge;
    let c = |suffix: &str| chain_name(n.name, suffix);
    let mut s = String::new();
    for suffix in CHAIN_SUFFIXES {
        let _ = writeln!(s, "add chain inet {t} {}", c(suffix));
        let _ = writeln!(s, "flush chain inet {t} {}", c(suffix));
    }
    let (fwdout, fwdin, masq, hairpin) = (c("fwdout"), c("fwdin"), c("masq"), c("hairpin"));
    // The network's own devices: its bridge, and an overlay's VXLAN device.
    let devices: Vec<&str> = std::iter::once(br).chain(n.tunnel).collect();
    let own = match devices.as_slice() {
        [one] => format!("\"{one}\""),
        many => format!(
            "{{ {} }}",
            many.iter()
                .map(|d| format!("\"{d}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    // Forward, from the bridge (iifname BR).
    let _ = writeln!(s, "add rule inet {t} {fwdout} oifname {own} accept");
    if n.internal {
        let _ = writeln!(s, "add rule inet {t} {fwdout} drop");
        // To the bridge from anywhere else.
        let _ = writeln!(s, "add rule inet {t} {fwdin} iifname != {own} drop");
    } else {
        // Other wirehook networks only through published ports (DNAT).
        let _ = writeln!(
            s,
            "add rule inet {t} {fwdout} oifname @bridges ct status dnat accept"
        );
        let _ = writeln!(s, "add rule inet {t} {fwdout} oifname @bridges drop");
        let _ = writeln!(s, "add rule inet {t} {fwdout} accept");
        let _ = writeln!(
            s,
            "add rule inet {t} {fwdin} iifname @bridges ct status dnat accept"
        );
        let _ = writeln!(s, "add rule inet {t} {fwdin} iifname @bridges drop");
        let _ = writeln!(s, "add rule inet {t} {fwdin} accept");
    }
    // Masquerade what leaves the subnet through another interface.
    if !n.internal {
        for net in n.subnets {
            let ipf = if net.is_ipv4() { "ip" } else { "ip6" };
            let _ = writeln!(
                s,
                "add rule inet {t} {masq} {ipf} saddr {} oifname != {own} masquerade",
                net_text(net)
            );
        }
    }
    // Hairpin: the host's 127.0.0.1 reaching a published port (needs
    // route_localnet on the bridge), and a container reaching a published
    // port of its own network through a host address.
    let _ = writeln!(
        s,
        "add rule inet {t} {hairpin} ip saddr 127.0.0.0/8 masquerade"
    );
    for net in n.subnets {
        let ipf = if net.is_ipv4() { "ip" } else { "ip6" };
        let _ = writeln!(
            s,
            "add rule inet {t} {hairpin} ct status dnat {ipf} saddr {} masquerade",
            net_text(net)
        );
    }
    for dev in &devices {
        let _ = writeln!(s, "add element inet {t} bridges {{ \"{dev}\" }}");
        for (map, suffix) in VMAPS {
            let _ = writeln!(
                s,
                "add element inet {t} {map} {{ \"{dev}\" : jump {} }}",
                c(suffix)
            );
        }
    }
    s
}

/// Where a tool lives; podman runs hooks with an empty environment, so
/// PATH may be missing.
fn binary(name: &str) -> PathBuf {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    for dir in ["/usr/sbin", "/sbin", "/usr/local/sbin", "/usr/bin"] {
        let p = std::path::Path::new(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    PathBuf::from(name)
}

fn nft_binary() -> PathBuf {
    binary("nft")
}

/// Run `nft -f -` with `script` as one transaction.
pub fn run_nft(script: &str, op: &str) -> Result<()> {
    let nft = nft_binary();
    let mut child = Command::new(&nft)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            Error::Firewall(format!(
                "{op}: cannot run {} ({e}); install the nftables package",
                nft.display()
            ))
        })?;
    let write_result = child
        .stdin
        .take()
        .map(|mut stdin| stdin.write_all(script.as_bytes()));
    let out = child
        .wait_with_output()
        .map_err(|e| Error::Firewall(format!("{op}: waiting for nft failed: {e}")))?;
    if out.status.success() {
        if let Some(Err(e)) = write_result {
            return Err(Error::Firewall(format!("{op}: writing to nft failed: {e}")));
        }
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let msg = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(3)
        .collect::<Vec<_>>()
        .join(" | ");
    Err(Error::Firewall(format!(
        "{op}: nft failed ({}): {msg}",
        out.status
    )))
}

/// Output of `nft -j ARGS`, parsed; None when nft fails.
/// The elements of one of wirehook's maps as (key parts, data parts), from
/// `nft -j list map`; a missing table or map has none.
pub fn map_elements(map: &str) -> Result<Vec<(Vec<serde_json::Value>, Vec<serde_json::Value>)>> {
    let Some(doc) = nft_json(&["list", "map", "inet", TABLE, map]) else {
        return Ok(Vec::new());
    };
    let concat = |v: &serde_json::Value| -> Vec<serde_json::Value> {
        v.get("concat")
            .and_then(|c| c.as_array())
            .cloned()
            .unwrap_or_default()
    };
    Ok(doc["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| o.get("map")?.get("elem")?.as_array().cloned())
        .flatten()
        .filter_map(|e| {
            let pair = e.as_array()?;
            Some((concat(pair.first()?), concat(pair.get(1)?)))
        })
        .collect())
}

fn nft_json(args: &[&str]) -> Option<serde_json::Value> {
    let out = Command::new(nft_binary())
        .arg("-j")
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// A base chain of another table that drops forwarded packets by default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DropChain {
    /// `ip`, `ip6`, `inet`, ...
    pub family: String,
    pub table: String,
    pub chain: String,
    /// The table has docker's `DOCKER-USER` chain (the place docker wants
    /// operator rules in).
    pub docker_user: bool,
    /// Seen through iptables-legacy, not nftables.
    pub legacy: bool,
}

/// See [`super::forward_drop_warning`]. Forks `nft` (and, when legacy
/// iptables tables exist, `iptables-legacy`); called when a network is
/// realized, never per container.
pub fn forward_drop_warning() -> Option<String> {
    let mut drops = nft_json(&["list", "chains"])
        .map(|c| dropping_chains(&c))
        .unwrap_or_default();
    drops.extend(legacy_drop());
    if drops.is_empty() {
        return None;
    }
    let bridges = nft_json(&["list", "set", "inet", TABLE, "bridges"])
        .map(|v| set_elements(&v))
        .unwrap_or_default();
    Some(drop_message(&drops, &bridges))
}

/// String elements of the first set in `nft -j list set` output.
fn set_elements(v: &serde_json::Value) -> Vec<String> {
    let items = v
        .get("nftables")
        .and_then(|n| n.as_array())
        .cloned()
        .unwrap_or_default();
    for item in items {
        if let Some(elem) = item
            .get("set")
            .and_then(|s| s.get("elem"))
            .and_then(|e| e.as_array())
        {
            return elem
                .iter()
                .filter_map(|e| e.as_str().map(str::to_string))
                .collect();
        }
    }
    Vec::new()
}

/// Forward-hook base chains with policy drop in `nft -j list chains`
/// output, other than wirehook's own.
pub fn dropping_chains(chains: &serde_json::Value) -> Vec<DropChain> {
    let items = chains
        .get("nftables")
        .and_then(|n| n.as_array())
        .cloned()
        .unwrap_or_default();
    let all: Vec<&serde_json::Value> = items.iter().filter_map(|i| i.get("chain")).collect();
    let field = |c: &serde_json::Value, k: &str| {
        c.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string()
    };
    all.iter()
        .filter(|c| field(c, "hook") == "forward" && field(c, "policy") == "drop")
        .filter(|c| !(field(c, "family") == "inet" && field(c, "table") == TABLE))
        .map(|c| {
            let (family, table) = (field(c, "family"), field(c, "table"));
            let docker_user = all.iter().any(|o| {
                field(o, "family") == family
                    && field(o, "table") == table
                    && field(o, "name") == "DOCKER-USER"
            });
            DropChain {
                chain: field(c, "name"),
                family,
                table,
                docker_user,
                legacy: false,
            }
        })
        .collect()
}

/// Docker on iptables-legacy: its rules are invisible to `nft`. Only
/// looked at when legacy x_tables are in use in this namespace.
fn legacy_drop() -> Option<DropChain> {
    let names = std::fs::read_to_string("/proc/thread-self/net/ip_tables_names").ok()?;
    if !names.lines().any(|l| l.trim() == "filter") {
        return None;
    }
    let out = Command::new(binary("iptables-legacy"))
        .args(["-w", "2", "-S"])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !text.lines().any(|l| l.trim() == "-P FORWARD DROP") {
        return None;
    }
    Some(DropChain {
        family: "ip".into(),
        table: "filter".into(),
        chain: "FORWARD".into(),
        docker_user: text.lines().any(|l| l.trim() == "-N DOCKER-USER"),
        legacy: true,
    })
}

/// The one-line warning for `drops`, with commands for `bridges`.
pub fn drop_message(drops: &[DropChain], bridges: &[String]) -> String {
    // iptables and nft wildcards for the bridges.
    let all_wh = bridges.iter().all(|b| b.starts_with("wh-"));
    let (ipt_pat, nft_pat) = if all_wh {
        (vec!["wh-+".to_string()], "\"wh-*\"".to_string())
    } else {
        let quoted: Vec<String> = bridges.iter().map(|b| format!("\"{b}\"")).collect();
        (bridges.to_vec(), format!("{{ {} }}", quoted.join(", ")))
    };
    let mut names = Vec::new();
    let mut fixes: Vec<String> = Vec::new();
    for d in drops {
        let legacy = if d.legacy { " (iptables-legacy)" } else { "" };
        names.push(format!("{} {} {}{legacy}", d.family, d.table, d.chain));
        if d.legacy || (d.docker_user && (d.family == "ip" || d.family == "ip6")) {
            let tool = match (d.legacy, d.family.as_str()) {
                (true, _) => "iptables-legacy",
                (false, "ip") => "iptables",
                _ => "ip6tables",
            };
            let chain = if d.docker_user {
                "DOCKER-USER"
            } else {
                d.chain.as_str()
            };
            for p in &ipt_pat {
                for dir in ["-i", "-o"] {
                    let fix = format!("{tool} -I {chain} {dir} {p} -j ACCEPT");
                    if !fixes.contains(&fix) {
                        fixes.push(fix);
                    }
                }
            }
        } else {
            for dir in ["iifname", "oifname"] {
                fixes.push(format!(
                    "nft insert rule {} {} {} {dir} {nft_pat} accept",
                    d.family, d.table, d.chain
                ));
            }
        }
    }
    format!(
        "forwarded traffic is dropped by default in {} (policy drop, e.g. set by docker), so wirehook containers cannot reach beyond their bridge and published ports fail; accept wirehook's bridges there: {}",
        names.join(", "),
        fixes.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert!(validate_network_name("my-net_1.x").is_ok());
        assert!(validate_network_name("").is_err());
        assert!(validate_network_name("a b").is_err());
        assert!(validate_network_name("a;flush ruleset").is_err());
        assert!(validate_ifname("wh-0123456789ab").is_ok());
        assert!(validate_ifname("wh-0123456789abc").is_err());
        assert!(validate_ifname("a\"b").is_err());
    }

    #[test]
    fn network_script_shape() {
        let subnets: Vec<IpNetwork> = vec![
            "10.77.0.5/24".parse().unwrap(),
            "fd00:77::/64".parse().unwrap(),
        ];
        let n = NetworkRules {
            name: "front",
            bridge: "wh-front",
            subnets: &subnets,
            internal: false,
            tunnel: None,
        };
        let s = network_script(&n);
        assert!(s.contains("ip saddr 10.77.0.0/24 oifname != \"wh-front\" masquerade"));
        assert!(s.contains("ip6 saddr fd00:77::/64 oifname != \"wh-front\" masquerade"));
        assert!(s.contains(
            "add element inet wirehook fwd_from_bridge { \"wh-front\" : jump nw-front-fwdout }"
        ));
        let internal = NetworkRules {
            internal: true,
            tunnel: None,
            ..n
        };
        assert!(!network_script(&internal).contains("oifname != \"wh-front\" masquerade"));
    }

    #[test]
    fn docker_drop_policy_is_explained() {
        let chains = serde_json::json!({"nftables": [
            {"metainfo": {}},
            {"chain": {"family": "ip", "table": "filter", "name": "FORWARD", "hook": "forward", "policy": "drop", "type": "filter", "prio": 0}},
            {"chain": {"family": "ip", "table": "filter", "name": "DOCKER-USER"}},
            {"chain": {"family": "inet", "table": "wirehook", "name": "forward", "hook": "forward", "policy": "accept"}}
        ]});
        let drops = dropping_chains(&chains);
        assert_eq!(drops.len(), 1);
        assert!(drops[0].docker_user);
        let msg = drop_message(&drops, &["wh-a".into()]);
        assert!(msg.contains("ip filter FORWARD"), "{msg}");
        assert!(
            msg.contains("iptables -I DOCKER-USER -i wh-+ -j ACCEPT"),
            "{msg}"
        );
        assert!(!msg.contains('\n'));
        let plain = serde_json::json!({"nftables": [
            {"chain": {"family": "inet", "table": "fw", "name": "fwd", "hook": "forward", "policy": "drop"}}
        ]});
        let msg = drop_message(&dropping_chains(&plain), &["br0".into()]);
        assert!(
            msg.contains("nft insert rule inet fw fwd iifname { \"br0\" } accept"),
            "{msg}"
        );
        let fine = serde_json::json!({"nftables": [
            {"chain": {"family": "inet", "table": "wirehook", "name": "forward", "hook": "forward", "policy": "drop"}}
        ]});
        assert!(dropping_chains(&fine).is_empty());
        let legacy = DropChain {
            family: "ip".into(),
            table: "filter".into(),
            chain: "FORWARD".into(),
            docker_user: false,
            legacy: true,
        };
        let msg = drop_message(&[legacy], &[]);
        assert!(
            msg.contains("iptables-legacy -I FORWARD -i wh-+ -j ACCEPT"),
            "{msg}"
        );
    }
}
