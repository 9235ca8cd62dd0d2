//! `resolv.conf`: the host's, read for its nameservers (the resolver's
//! upstreams) and search list; the containers', written with the
//! resolver's address.
//!
//! The host's file is `/etc/resolv.conf` unless the host configuration
//! (`/etc/wirehook/config.json`) names another in `resolv_conf`, which is
//! also how tests point the resolver at an upstream of their own.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use crate::paths::Paths;

/// Nameservers used, at most (glibc's MAXNS, docker's maxExtDNS).
pub const MAX_UPSTREAMS: usize = 3;

/// What the resolver takes from a `resolv.conf`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvConf {
    /// `nameserver` lines, port 53, at most [`MAX_UPSTREAMS`].
    pub nameservers: Vec<SocketAddr>,
    /// The last `search` (or `domain`) line's domains.
    pub search: Vec<String>,
    /// `options` other than `ndots:` (the containers get `ndots:0`).
    pub options: Vec<String>,
}

/// Read `resolv.conf` text. Unknown lines are ignored, as glibc does.
pub fn parse(text: &str) -> ResolvConf {
    let mut rc = ResolvConf::default();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("");
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                // A link-local IPv6 nameserver may carry a zone (%eth0): the
                // resolver's sockets cannot use it reliably; skip it.
                if let Some(ip) = words.next().and_then(|w| w.parse::<IpAddr>().ok()) {
                    if rc.nameservers.len() < MAX_UPSTREAMS {
                        rc.nameservers.push(SocketAddr::new(ip, 53));
                    }
                }
            }
            Some("search") | Some("domain") => {
                rc.search = words.map(str::to_string).collect();
            }
            Some("options") => {
                for w in words {
                    if !w.starts_with("ndots:") && !rc.options.iter().any(|o| o == w) {
                        rc.options.push(w.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    rc
}

/// The host `resolv.conf` the resolver follows: `resolv_conf` from the
/// host configuration, else `/etc/resolv.conf`.
pub fn host_path(paths: &Paths) -> PathBuf {
    crate::hostconfig::HostConfig::load(paths)
        .ok()
        .and_then(|c| c.resolv_conf)
        .unwrap_or_else(|| PathBuf::from("/etc/resolv.conf"))
}

/// Read the host's `resolv.conf` at `path`; a missing file is an empty one.
pub fn read(path: &Path) -> ResolvConf {
    std::fs::read_to_string(path)
        .map(|t| parse(&t))
        .unwrap_or_default()
}

/// The `resolv.conf` a container gets: the resolver as its only
/// nameserver; the resolver's zone ([`super::DOMAIN`]) then the host's
/// search list; the host's options and `ndots:0` (docker's choice: every
/// name is tried as given first, so container names need no search
/// domain; stubs that append one anyway find them in our zone).
pub fn container_file(host: &ResolvConf) -> String {
    let mut s =
        String::from("# Written by wirehook: the per-host resolver answers container names\n");
    s.push_str(&format!("nameserver {}\n", super::RESOLVER_ADDR));
    let mut search = vec![super::DOMAIN.to_string()];
    for d in &host.search {
        let d = d.trim_end_matches('.');
        if !d.is_empty() && !search.iter().any(|s| s.eq_ignore_ascii_case(d)) {
            search.push(d.to_string());
        }
    }
    // glibc reads at most six domains.
    search.truncate(6);
    s.push_str(&format!("search {}\n", search.join(" ")));
    let mut opts = host.options.clone();
    opts.push("ndots:0".into());
    s.push_str(&format!("options {}\n", opts.join(" ")));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_host_file() {
        let rc = parse(
            "# generated\nnameserver 127.0.0.53\nnameserver fe80::1%eth0\nnameserver ::1 # local\n\
             nameserver 10.0.0.1\nnameserver 10.0.0.2\nsearch a.example b.example\n\
             options edns0 trust-ad ndots:2\n",
        );
        assert_eq!(
            rc.nameservers,
            vec![
                "127.0.0.53:53".parse().unwrap(),
                "[::1]:53".parse().unwrap(),
                "10.0.0.1:53".parse().unwrap()
            ]
        );
        assert_eq!(rc.search, vec!["a.example", "b.example"]);
        assert_eq!(rc.options, vec!["edns0", "trust-ad"]);
        let file = container_file(&rc);
        assert!(file.contains("nameserver 127.0.0.11\n"), "{file}");
        assert!(
            file.contains("search wirehook.internal a.example b.example\n"),
            "{file}"
        );
        assert!(file.contains("options edns0 trust-ad ndots:0\n"), "{file}");
        assert_eq!(file.matches("nameserver").count(), 1);
    }

    #[test]
    fn empty() {
        let rc = parse("");
        assert!(rc.nameservers.is_empty());
        assert_eq!(
            container_file(&rc).lines().skip(1).collect::<Vec<_>>(),
            vec![
                "nameserver 127.0.0.11",
                "search wirehook.internal",
                "options ndots:0"
            ]
        );
    }
}
