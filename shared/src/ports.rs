//! `io.wirehook.ports`: published ports.
//!
//! The syntax is docker's `-p` without the container-address part, as a
//! comma list:
//!
//! ```text
//! [hostip:]hostport[-end]:containerport[-end][/tcp|udp|sctp]
//! ```
//!
//! An IPv6 host address goes in brackets (`[::1]:8080:80`). The protocol
//! defaults to tcp. A host range needs a container range of the same length
//! (wirehook never picks a host port by itself). Within one list no host port
//! may be published twice for the same address and protocol; a mapping
//! without an address (all addresses) or on `0.0.0.0` / `::` (all addresses
//! of that family) overlaps every mapping on a specific address of that
//! family.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::error::{Error, Result};

/// The annotation this module parses.
pub const PORTS_KEY: &str = "io.wirehook.ports";

/// Transport protocol of a published port.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// Every protocol, in the order of the enum.
    pub const ALL: [Protocol; 3] = [Protocol::Tcp, Protocol::Udp, Protocol::Sctp];

    /// The lowercase name used in annotations and by nftables.
    pub fn as_str(&self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }

    /// The IP protocol number (`IPPROTO_TCP` = 6, `IPPROTO_UDP` = 17,
    /// `IPPROTO_SCTP` = 132).
    pub fn ipproto(&self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Protocol {
    type Err = Error;

    /// `tcp`, `udp` or `sctp`, in any letter case.
    fn from_str(s: &str) -> Result<Self> {
        Protocol::ALL
            .into_iter()
            .find(|p| s.eq_ignore_ascii_case(p.as_str()))
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "unknown protocol {} — write tcp, udp or sctp",
                    quote(s)
                ))
            })
    }
}

/// One published port or port range.
///
/// Host port `host_port + i` forwards to container port `container_port + i`
/// for `i` in `0..count`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PortMapping {
    /// The host address the port is published on; `None` = every address.
    pub host_ip: Option<IpAddr>,
    /// First host port.
    pub host_port: u16,
    /// First container port.
    pub container_port: u16,
    /// Number of ports in the range, at least 1.
    pub count: u16,
    pub protocol: Protocol,
}

impl PortMapping {
    /// `(host port, container port)` for each port of the range.
    pub fn pairs(&self) -> impl Iterator<Item = (u16, u16)> + '_ {
        (0..self.count).map_while(move |i| {
            Some((
                self.host_port.checked_add(i)?,
                self.container_port.checked_add(i)?,
            ))
        })
    }

    /// Last host port of the range.
    fn host_end(&self) -> u16 {
        last_port(self.host_port, self.count)
    }
}

fn last_port(start: u16, count: u16) -> u16 {
    let end = u32::from(start) + u32::from(count.max(1)) - 1;
    u16::try_from(end).unwrap_or(u16::MAX)
}

fn write_range(f: &mut fmt::Formatter<'_>, start: u16, count: u16) -> fmt::Result {
    if count <= 1 {
        write!(f, "{start}")
    } else {
        write!(f, "{start}-{}", last_port(start, count))
    }
}

impl fmt::Display for PortMapping {
    /// The canonical form, e.g. `[::1]:8080-8081:80-81/tcp`; it parses back
    /// to the same value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host_ip {
            Some(IpAddr::V4(ip)) => write!(f, "{ip}:")?,
            Some(IpAddr::V6(ip)) => write!(f, "[{ip}]:")?,
            None => {}
        }
        write_range(f, self.host_port, self.count)?;
        f.write_str(":")?;
        write_range(f, self.container_port, self.count)?;
        write!(f, "/{}", self.protocol)
    }
}

/// Quote a user-supplied value for an error message: escaped (so the message
/// stays on one line) and cut to a readable length.
pub(crate) fn quote(s: &str) -> String {
    const MAX_CHARS: usize = 64;
    if s.chars().count() <= MAX_CHARS {
        format!("{s:?}")
    } else {
        let head: String = s.chars().take(MAX_CHARS).collect();
        format!("{head:?}…")
    }
}

const EXAMPLE: &str = "8080:80 or 127.0.0.1:5353:53/udp";

/// Parse the value of `io.wirehook.ports`.
///
/// Errors are [`Error::Invalid`] with one line that names the annotation,
/// quotes the offending entry and says what to write instead.
pub fn parse_ports(value: &str) -> Result<Vec<PortMapping>> {
    if value.trim().is_empty() {
        return Err(Error::Invalid(format!(
            "{PORTS_KEY} is empty — give a mapping such as {EXAMPLE}, or remove the annotation"
        )));
    }
    let mut mappings = Vec::new();
    let mut texts = Vec::new();
    for item in value.split(',') {
        let item = item.trim();
        if item.is_empty() {
            return Err(Error::Invalid(format!(
                "{PORTS_KEY}: {} has an empty entry — remove the extra comma",
                quote(value.trim())
            )));
        }
        let mapping = parse_item(item).map_err(|(problem, fix)| {
            Error::Invalid(format!("{PORTS_KEY}: {} {problem} — {fix}", quote(item)))
        })?;
        mappings.push(mapping);
        texts.push(item);
    }
    check_overlaps(&mappings, &texts)?;
    Ok(mappings)
}

/// What is wrong with an entry, and what to write instead.
type Bad = (String, String);

fn bad(problem: impl Into<String>, fix: impl Into<String>) -> Bad {
    (problem.into(), fix.into())
}

fn parse_item(item: &str) -> std::result::Result<PortMapping, Bad> {
    let (body, protocol) = match item.rsplit_once('/') {
        Some((body, proto)) => {
            let protocol = Protocol::from_str(proto.trim()).map_err(|_| {
                bad(
                    format!("has unknown protocol {}", quote(proto)),
                    "write /tcp, /udp or /sctp after the ports, or nothing for tcp",
                )
            })?;
            (body, protocol)
        }
        None => (item, Protocol::Tcp),
    };

    let (host_ip, host, container) = split_body(body)?;
    if let Some(ip) = host_ip {
        check_host_ip(ip)?;
    }
    let (host_port, host_count) = parse_range(host, "host")?;
    let (container_port, container_count) = parse_range(container, "container")?;
    if host_count != container_count {
        if container_count == 1 {
            let host_range = format!("{host_port}-{}", last_port(host_port, host_count));
            let end = u32::from(container_port) + u32::from(host_count) - 1;
            let example = if end <= 65535 {
                format!(" (e.g. {host_range}:{container_port}-{end})")
            } else {
                String::new()
            };
            return Err(bad(
                format!(
                    "maps the host range {host_range} to the single container port {container_port}"
                ),
                format!(
                    "give a container range of the same length{example} or a single host port; wirehook does not pick a port from a host range"
                ),
            ));
        }
        return Err(bad(
            format!(
                "has a host range of {host_count} port(s) but a container range of {container_count}"
            ),
            "give ranges of the same length, e.g. 8080-8081:80-81",
        ));
    }
    Ok(PortMapping {
        host_ip,
        host_port,
        container_port,
        count: host_count,
        protocol,
    })
}

/// Split `[hostip:]host:container` into its parts.
fn split_body(body: &str) -> std::result::Result<(Option<IpAddr>, &str, &str), Bad> {
    const FORMAT: &str = "write [hostip:]hostport:containerport, e.g. 8080:80";
    if let Some(rest) = body.strip_prefix('[') {
        let Some((inner, after)) = rest.split_once(']') else {
            return Err(bad(
                "has '[' without ']'",
                "write an IPv6 host address in brackets, e.g. [::1]:8080:80",
            ));
        };
        let ip = inner.parse::<IpAddr>().map_err(|_| {
            bad(
                format!("has an invalid host address {}", quote(inner)),
                "write an IPv6 host address in brackets, e.g. [::1]:8080:80",
            )
        })?;
        let Some(ports) = after.strip_prefix(':') else {
            return Err(bad(
                "has no ':' after the bracketed host address",
                "write it like [::1]:8080:80",
            ));
        };
        let Some((host, container)) = ports.split_once(':') else {
            return Err(bad(
                "gives only one port after the host address",
                "write it like [::1]:8080:80",
            ));
        };
        if container.contains(':') {
            return Err(bad("has too many ':'", "write it like [::1]:8080:80"));
        }
        if host.is_empty() {
            return Err(no_host_port());
        }
        return Ok((Some(ip), host, container));
    }

    let parts: Vec<&str> = body.split(':').collect();
    match parts.as_slice() {
        [_] => Err(bad(
            "gives only one port",
            format!("{FORMAT}; wirehook does not pick a host port by itself"),
        )),
        [host, container] => {
            if host.is_empty() {
                return Err(no_host_port());
            }
            Ok((None, host, container))
        }
        [ip, host, container] => {
            if ip.is_empty() {
                return Err(bad(
                    "has an empty host address",
                    "remove the leading ':' or give an address, e.g. 127.0.0.1:8080:80",
                ));
            }
            let ip = ip.parse::<IpAddr>().map_err(|_| {
                bad(
                    format!("has an invalid host address {}", quote(ip)),
                    "give an IPv4 address such as 127.0.0.1, or an IPv6 address in brackets such as [::1]",
                )
            })?;
            if host.is_empty() {
                return Err(no_host_port());
            }
            Ok((Some(ip), host, container))
        }
        _ => Err(bad(
            "has too many ':'",
            format!("{FORMAT}; put an IPv6 host address in brackets, e.g. [::1]:8080:80"),
        )),
    }
}

fn no_host_port() -> Bad {
    bad(
        "has no host port",
        "give one, e.g. 8080:80; wirehook does not pick a host port by itself",
    )
}

fn check_host_ip(ip: IpAddr) -> std::result::Result<(), Bad> {
    let fix = "give an address of this host, or none to publish on every address";
    match ip {
        IpAddr::V4(v4) if v4.is_multicast() => {
            Err(bad(format!("has the multicast host address {ip}"), fix))
        }
        IpAddr::V4(v4) if v4.is_broadcast() => {
            Err(bad(format!("has the broadcast host address {ip}"), fix))
        }
        IpAddr::V6(v6) if v6.is_multicast() => {
            Err(bad(format!("has the multicast host address {ip}"), fix))
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => Err(bad(
                format!(
                    "has the IPv4-mapped host address {}",
                    quote(&format!("[{v6}]"))
                ),
                format!("write the IPv4 address without brackets: {v4}"),
            )),
            None => Ok(()),
        },
        IpAddr::V4(_) => Ok(()),
    }
}

/// Parse `port` or `start-end` into `(start, count)`.
fn parse_range(s: &str, side: &str) -> std::result::Result<(u16, u16), Bad> {
    if s.is_empty() {
        return Err(bad(
            format!("has no {side} port"),
            "write [hostip:]hostport:containerport, e.g. 8080:80",
        ));
    }
    match s.split_once('-') {
        None => Ok((parse_port(s, side)?, 1)),
        Some((a, b)) => {
            let start = parse_port(a, side)?;
            let end = parse_port(b, side)?;
            if end < start {
                return Err(bad(
                    format!("has the reversed {side} range {start}-{end}"),
                    format!("write {end}-{start}"),
                ));
            }
            Ok((start, end - start + 1))
        }
    }
}

fn parse_port(s: &str, side: &str) -> std::result::Result<u16, Bad> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(
            format!("has the invalid {side} port {}", quote(s)),
            "ports are numbers from 1 to 65535, ranges are written 8080-8081",
        ));
    }
    match s.parse::<u16>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(bad(
            format!("has the {side} port {}, which is out of range", quote(s)),
            "ports are numbers from 1 to 65535",
        )),
    }
}

/// `(first port, last port, index of the mapping)`, kept sorted by first
/// port and free of overlaps.
type Interval = (u16, u16, usize);

/// The interval of a sorted, overlap-free list that overlaps `start..=end`.
fn find_overlap(sorted: &[Interval], start: u16, end: u16) -> Option<Interval> {
    let n = sorted.partition_point(|iv| iv.0 <= end);
    let candidate = *sorted.get(n.checked_sub(1)?)?;
    (candidate.1 >= start).then_some(candidate)
}

/// Reject two mappings that publish one host port twice for one address and
/// protocol. O(n log n), so a long list cannot stall the hook.
fn check_overlaps(mappings: &[PortMapping], texts: &[&str]) -> Result<()> {
    let conflict = |a: usize, b: usize, port: u16| {
        let (a, b) = (a.min(b), a.max(b));
        let on = match (mappings[a].host_ip, mappings[b].host_ip) {
            (Some(x), Some(y)) if x.is_unspecified() && !y.is_unspecified() => format!(" on {y}"),
            (Some(x), _) => format!(" on {x}"),
            (None, Some(y)) => format!(" on {y}"),
            (None, None) => String::new(),
        };
        Error::Invalid(format!(
            "{PORTS_KEY}: {} and {} both publish host port {port}/{}{on} — publish each host port only once per address and protocol",
            quote(texts[a]),
            quote(texts[b]),
            mappings[a].protocol,
        ))
    };

    // Exact (protocol, address) groups: no overlap inside one group.
    let mut groups: BTreeMap<(Protocol, Option<IpAddr>), Vec<Interval>> = BTreeMap::new();
    for (i, m) in mappings.iter().enumerate() {
        groups
            .entry((m.protocol, m.host_ip))
            .or_default()
            .push((m.host_port, m.host_end(), i));
    }
    for intervals in groups.values_mut() {
        intervals.sort_unstable();
        for w in intervals.windows(2) {
            if w[1].0 <= w[0].1 {
                return Err(conflict(w[0].2, w[1].2, w[1].0));
            }
        }
    }

    // Wildcards against everything narrower of the same protocol: `None`
    // against every address, `0.0.0.0` against IPv4, `::` against IPv6.
    for ((protocol, ip), intervals) in &groups {
        let wider: [Option<Option<IpAddr>>; 2] = match ip {
            None => [None, None],
            Some(addr) if addr.is_unspecified() => [Some(None), None],
            Some(IpAddr::V4(_)) => [Some(None), Some(Some(IpAddr::V4([0; 4].into())))],
            Some(IpAddr::V6(_)) => [Some(None), Some(Some(IpAddr::V6([0u16; 8].into())))],
        };
        for wide in wider.into_iter().flatten() {
            let Some(wide_intervals) = groups.get(&(*protocol, wide)) else {
                continue;
            };
            for &(start, end, i) in intervals {
                if let Some((w_start, _, j)) = find_overlap(wide_intervals, start, end) {
                    return Err(conflict(i, j, start.max(w_start)));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn pm(ip: Option<&str>, host: u16, container: u16, count: u16, p: Protocol) -> PortMapping {
        PortMapping {
            host_ip: ip.map(|s| s.parse().unwrap()),
            host_port: host,
            container_port: container,
            count,
            protocol: p,
        }
    }

    fn err(value: &str) -> String {
        match parse_ports(value) {
            Err(Error::Invalid(msg)) => {
                assert!(!msg.contains('\n'), "message is not one line: {msg}");
                assert!(
                    msg.starts_with(PORTS_KEY),
                    "message does not name the key: {msg}"
                );
                assert!(msg.contains(" — "), "message has no fix: {msg}");
                msg
            }
            other => panic!("{value:?}: expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn protocol_basics() {
        assert_eq!(Protocol::Tcp.as_str(), "tcp");
        assert_eq!(Protocol::Udp.ipproto(), 17);
        assert_eq!(Protocol::Sctp.ipproto(), 132);
        assert_eq!(Protocol::Tcp.ipproto(), 6);
        assert_eq!("UDP".parse::<Protocol>().unwrap(), Protocol::Udp);
        let e = "icmp".parse::<Protocol>().unwrap_err().to_string();
        assert!(
            e.contains("\"icmp\"") && e.contains("tcp, udp or sctp"),
            "{e}"
        );
        assert_eq!(serde_json::to_string(&Protocol::Sctp).unwrap(), "\"sctp\"");
        assert_eq!(
            serde_json::from_str::<Protocol>("\"udp\"").unwrap(),
            Protocol::Udp
        );
    }

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(
            parse_ports("8080:80").unwrap(),
            vec![pm(None, 8080, 80, 1, Protocol::Tcp)]
        );
        assert_eq!(
            parse_ports("127.0.0.1:5353:53/udp").unwrap(),
            vec![pm(Some("127.0.0.1"), 5353, 53, 1, Protocol::Udp)]
        );
        assert_eq!(
            parse_ports("[::1]:8080:80").unwrap(),
            vec![pm(Some("::1"), 8080, 80, 1, Protocol::Tcp)]
        );
        assert_eq!(
            parse_ports("8000-8009:9000-9009/sctp").unwrap(),
            vec![pm(None, 8000, 9000, 10, Protocol::Sctp)]
        );
        assert_eq!(
            parse_ports(" 80:80 , 443:443/TCP,53:53/udp ").unwrap(),
            vec![
                pm(None, 80, 80, 1, Protocol::Tcp),
                pm(None, 443, 443, 1, Protocol::Tcp),
                pm(None, 53, 53, 1, Protocol::Udp),
            ]
        );
        // One host port for two protocols, and two addresses, is fine.
        assert_eq!(parse_ports("53:53/tcp,53:53/udp").unwrap().len(), 2);
        assert_eq!(
            parse_ports("127.0.0.1:80:80,127.0.0.2:80:80")
                .unwrap()
                .len(),
            2
        );
        // 0.0.0.0 and :: are different families: docker publishes both.
        assert_eq!(parse_ports("0.0.0.0:80:80,[::]:80:80").unwrap().len(), 2);
        // Two host ports to one container port is fine.
        assert_eq!(parse_ports("80:80,8080:80").unwrap().len(), 2);
        // Edges of the port space.
        assert_eq!(
            parse_ports("1:65535,65535:1").unwrap(),
            vec![
                pm(None, 1, 65535, 1, Protocol::Tcp),
                pm(None, 65535, 1, 1, Protocol::Tcp)
            ]
        );
        assert_eq!(parse_ports("1-65535:1-65535/udp").unwrap()[0].count, 65535);
        // A one-port range is a single port.
        assert_eq!(
            parse_ports("80-80:90-90").unwrap(),
            vec![pm(None, 80, 90, 1, Protocol::Tcp)]
        );
    }

    #[test]
    fn pairs_and_display() {
        let m = pm(Some("10.0.0.1"), 8080, 80, 3, Protocol::Udp);
        assert_eq!(
            m.pairs().collect::<Vec<_>>(),
            vec![(8080, 80), (8081, 81), (8082, 82)]
        );
        assert_eq!(m.to_string(), "10.0.0.1:8080-8082:80-82/udp");
        assert_eq!(
            pm(Some("fd00::1"), 80, 80, 1, Protocol::Tcp).to_string(),
            "[fd00::1]:80:80/tcp"
        );
        assert_eq!(
            pm(None, 80, 81, 1, Protocol::Sctp).to_string(),
            "80:81/sctp"
        );
        // A hand-made value past the end of the port space stops at 65535.
        let m = pm(None, 65534, 1, 5, Protocol::Tcp);
        assert_eq!(m.pairs().count(), 2);
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<PortMapping>(&json).unwrap(), m);
    }

    #[test]
    fn empty_values_and_entries() {
        let e = err("");
        assert!(
            e.contains("is empty") && e.contains("remove the annotation"),
            "{e}"
        );
        let e = err("   ");
        assert!(e.contains("is empty"), "{e}");
        let e = err("80:80,,81:81");
        assert!(
            e.contains("empty entry") && e.contains("extra comma"),
            "{e}"
        );
        let e = err("80:80,");
        assert!(e.contains("empty entry"), "{e}");
    }

    #[test]
    fn protocol_errors() {
        let e = err("80:80/icmp");
        assert!(e.contains("\"80:80/icmp\""), "{e}");
        assert!(e.contains("unknown protocol \"icmp\""), "{e}");
        assert!(e.contains("/tcp, /udp or /sctp"), "{e}");
        let e = err("80:80/");
        assert!(e.contains("unknown protocol \"\""), "{e}");
        let e = err("80:80/tcp/udp");
        assert!(e.contains("invalid container port \"80/tcp\""), "{e}");
    }

    #[test]
    fn shape_errors() {
        let e = err("80");
        assert!(e.contains("only one port") && e.contains("8080:80"), "{e}");
        let e = err(":80");
        assert!(e.contains("no host port"), "{e}");
        let e = err("127.0.0.1::80");
        assert!(
            e.contains("no host port") && e.contains("does not pick"),
            "{e}"
        );
        let e = err(":8080:80");
        assert!(e.contains("empty host address"), "{e}");
        let e = err("80:");
        assert!(e.contains("no container port"), "{e}");
        let e = err("::1:8080:80");
        assert!(
            e.contains("too many ':'") && e.contains("[::1]:8080:80"),
            "{e}"
        );
        let e = err("1.2.3.4:1:2:3");
        assert!(e.contains("too many ':'"), "{e}");
        let e = err("[::1:8080:80");
        assert!(e.contains("'[' without ']'"), "{e}");
        let e = err("[::1]8080:80");
        assert!(e.contains("no ':' after"), "{e}");
        let e = err("[::1]:8080");
        assert!(e.contains("only one port after"), "{e}");
        let e = err("[::1]:1:2:3");
        assert!(e.contains("too many ':'"), "{e}");
        let e = err("[::1]::80");
        assert!(e.contains("no host port"), "{e}");
        let e = err("[zz]:80:80");
        assert!(e.contains("invalid host address \"zz\""), "{e}");
        let e = err("localhost:80:80");
        assert!(
            e.contains("invalid host address \"localhost\"") && e.contains("127.0.0.1"),
            "{e}"
        );
    }

    #[test]
    fn host_address_errors() {
        let e = err("224.0.0.1:80:80");
        assert!(e.contains("multicast host address 224.0.0.1"), "{e}");
        let e = err("255.255.255.255:80:80");
        assert!(e.contains("broadcast"), "{e}");
        let e = err("[ff02::1]:80:80");
        assert!(e.contains("multicast"), "{e}");
        let e = err("[::ffff:10.0.0.1]:80:80");
        assert!(e.contains("IPv4-mapped") && e.contains("10.0.0.1"), "{e}");
        // An IPv4 address in brackets is accepted.
        assert_eq!(
            parse_ports("[10.0.0.1]:80:80").unwrap()[0].host_ip,
            Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)))
        );
    }

    #[test]
    fn port_errors() {
        let e = err("0:80");
        assert!(
            e.contains("host port \"0\", which is out of range") && e.contains("1 to 65535"),
            "{e}"
        );
        let e = err("80:65536");
        assert!(
            e.contains("container port \"65536\", which is out of range"),
            "{e}"
        );
        let e = err("80:99999999999999999999");
        assert!(e.contains("out of range"), "{e}");
        let e = err("http:80");
        assert!(e.contains("invalid host port \"http\""), "{e}");
        let e = err("+80:80");
        assert!(e.contains("invalid host port \"+80\""), "{e}");
        let e = err("80:8 0");
        assert!(e.contains("invalid container port \"8 0\""), "{e}");
        let e = err("90-80:90-80");
        assert!(
            e.contains("reversed host range 90-80") && e.contains("write 80-90"),
            "{e}"
        );
        let e = err("80-90:90-80");
        assert!(e.contains("reversed container range"), "{e}");
        let e = err("80-:80");
        assert!(e.contains("invalid host port \"\""), "{e}");
        let e = err("80-81-82:80");
        assert!(e.contains("invalid host port \"81-82\""), "{e}");
    }

    #[test]
    fn range_length_errors() {
        let e = err("8080-8081:80");
        assert!(
            e.contains("host range 8080-8081 to the single container port 80")
                && e.contains("8080-8081:80-81"),
            "{e}"
        );
        let e = err("8080:80-81");
        assert!(
            e.contains("host range of 1 port(s) but a container range of 2")
                && e.contains("same length"),
            "{e}"
        );
        let e = err("8080-8082:80-81");
        assert!(
            e.contains("range of 3 port(s) but a container range of 2"),
            "{e}"
        );
        // A container range that would run past 65535.
        let e = err("1-3:65535");
        assert!(e.contains("single container port"), "{e}");
    }

    #[test]
    fn overlap_errors() {
        let e = err("80:80,80:81");
        assert!(
            e.contains("\"80:80\" and \"80:81\" both publish host port 80/tcp")
                && e.contains("only once per address and protocol"),
            "{e}"
        );
        let e = err("8000-8010:8000-8010,8005:80");
        assert!(e.contains("host port 8005/tcp"), "{e}");
        let e = err("8005:80/udp,8000-8010:8000-8010/udp");
        assert!(
            e.contains("\"8005:80/udp\" and \"8000-8010:8000-8010/udp\"") && e.contains("8005/udp"),
            "{e}"
        );
        let e = err("127.0.0.1:80:80,80:80");
        assert!(e.contains("host port 80/tcp on 127.0.0.1"), "{e}");
        let e = err("0.0.0.0:80:80,127.0.0.1:79-81:79-81");
        assert!(e.contains("host port 80/tcp on 127.0.0.1"), "{e}");
        let e = err("[::]:80:80,[::1]:80:80");
        assert!(e.contains("on ::1"), "{e}");
        let e = err("[::1]:80:80,[::1]:80:80");
        assert!(e.contains("on ::1"), "{e}");
        let e = err("0.0.0.0:80:80,0.0.0.0:80:80");
        assert!(e.contains("on 0.0.0.0"), "{e}");
        let e = err("[::]:80:80,80:80");
        assert!(e.contains("host port 80/tcp on ::"), "{e}");
        // 0.0.0.0 does not cover IPv6 addresses.
        assert!(parse_ports("0.0.0.0:80:80,[::1]:80:80").is_ok());
    }

    #[test]
    fn long_values_are_cut_in_messages() {
        for value in [
            format!("{}:80", "9".repeat(500)),
            format!("{}80-{}81:80", "0".repeat(500), "0".repeat(500)),
            format!("{}90-{}80:80-90", "0".repeat(500), "0".repeat(500)),
            format!("80:80/{}", "x".repeat(500)),
            format!("80:80,{}", "80:80,".repeat(500)),
        ] {
            let e = err(&value);
            assert!(e.len() < 300, "{e}");
        }
    }

    #[test]
    fn many_mappings_are_fast() {
        let value: Vec<String> = (1..=20000u32).map(|p| format!("{p}:{p}")).collect();
        let start = std::time::Instant::now();
        assert_eq!(parse_ports(&value.join(",")).unwrap().len(), 20000);
        assert!(start.elapsed() < std::time::Duration::from_secs(2));
    }

    fn arb_host_ip() -> impl Strategy<Value = Option<IpAddr>> {
        prop_oneof![
            Just(None),
            any::<[u8; 4]>()
                .prop_map(|b| IpAddr::V4(Ipv4Addr::from(b)))
                .prop_filter("unicast", |ip| check_host_ip(*ip).is_ok())
                .prop_map(Some),
            any::<[u16; 8]>()
                .prop_map(|s| IpAddr::V6(Ipv6Addr::from(s)))
                .prop_filter("unicast", |ip| check_host_ip(*ip).is_ok())
                .prop_map(Some),
        ]
    }

    fn arb_protocol() -> impl Strategy<Value = Protocol> {
        prop_oneof![
            Just(Protocol::Tcp),
            Just(Protocol::Udp),
            Just(Protocol::Sctp)
        ]
    }

    fn arb_mapping() -> impl Strategy<Value = PortMapping> {
        (arb_host_ip(), 1u16..=65535, arb_protocol())
            .prop_flat_map(|(ip, count, protocol)| {
                let max_start = 65535 - (count - 1);
                (
                    Just(ip),
                    1..=max_start,
                    1..=max_start,
                    Just(count),
                    Just(protocol),
                )
            })
            .prop_map(
                |(host_ip, host_port, container_port, count, protocol)| PortMapping {
                    host_ip,
                    host_port,
                    container_port,
                    count,
                    protocol,
                },
            )
    }

    /// Mappings crowded into a few ports and addresses, to make overlaps likely.
    fn arb_crowded_mapping() -> impl Strategy<Value = PortMapping> {
        let ip = prop_oneof![
            Just(None),
            Just(Some("0.0.0.0")),
            Just(Some("127.0.0.1")),
            Just(Some("10.0.0.1")),
            Just(Some("::")),
            Just(Some("::1")),
        ];
        (
            ip,
            1u16..=20,
            1u16..=4,
            prop_oneof![Just(Protocol::Tcp), Just(Protocol::Udp)],
        )
            .prop_map(|(ip, host, count, protocol)| pm(ip, host, 100, count, protocol))
    }

    fn covers(wide: Option<IpAddr>, narrow: Option<IpAddr>) -> bool {
        match (wide, narrow) {
            (None, _) | (_, None) => true,
            (Some(a), Some(b)) => {
                a == b
                    || (a.is_unspecified() && a.is_ipv4() == b.is_ipv4())
                    || (b.is_unspecified() && a.is_ipv4() == b.is_ipv4())
            }
        }
    }

    proptest! {
        #[test]
        fn display_parses_back(m in arb_mapping()) {
            let text = m.to_string();
            prop_assert_eq!(parse_ports(&text).unwrap(), vec![m]);
        }

        #[test]
        fn random_strings_never_panic(s in any::<String>()) {
            let _ = parse_ports(&s);
        }

        #[test]
        fn port_like_strings_keep_the_invariants(s in "[0-9:\\[\\]\\-/,. a-f]{0,40}(/(tcp|udp|sctp|x))?") {
            if let Ok(mappings) = parse_ports(&s) {
                prop_assert!(!mappings.is_empty());
                for m in mappings {
                    prop_assert!(m.count >= 1);
                    prop_assert!(m.host_port >= 1 && m.container_port >= 1);
                    prop_assert!(u32::from(m.host_port) + u32::from(m.count) - 1 <= 65535);
                    prop_assert!(u32::from(m.container_port) + u32::from(m.count) - 1 <= 65535);
                    prop_assert_eq!(m.pairs().count(), usize::from(m.count));
                }
            }
        }

        #[test]
        fn overlap_check_matches_brute_force(ms in proptest::collection::vec(arb_crowded_mapping(), 1..8)) {
            let text: Vec<String> = ms.iter().map(|m| m.to_string()).collect();
            let mut clash = false;
            for (i, a) in ms.iter().enumerate() {
                for b in &ms[i + 1..] {
                    let ports_meet = a.host_port <= b.host_end() && b.host_port <= a.host_end();
                    if a.protocol == b.protocol && ports_meet && covers(a.host_ip, b.host_ip) {
                        clash = true;
                    }
                }
            }
            match parse_ports(&text.join(",")) {
                Ok(parsed) => {
                    prop_assert!(!clash, "{:?} accepted", text);
                    prop_assert_eq!(parsed, ms);
                }
                Err(e) => {
                    prop_assert!(clash, "{:?} refused: {}", text, e);
                    prop_assert!(e.to_string().contains("both publish host port"));
                }
            }
        }
    }
}
