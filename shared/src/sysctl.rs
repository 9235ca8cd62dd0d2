//! Kernel parameters under `/proc/sys`, named with dotted keys as
//! `sysctl(8)` does (`net.ipv4.ip_forward`). The `net.*` keys belong to
//! the network namespace of the calling thread, like everything else in
//! this library.
//!
//! A key component that itself contains dots (an interface such as
//! `eth0.100`) cannot be written dotted; give such keys with `/`
//! separators (`net/ipv4/conf/eth0.100/route_localnet`), as `sysctl(8)`
//! also accepts.

use std::path::PathBuf;

use crate::error::{Error, Result};

/// `/proc/sys/...` for a dotted (or slash-separated) key.
fn path_of(key: &str) -> Result<PathBuf> {
    let rel = if key.contains('/') {
        key.trim_matches('/').to_string()
    } else {
        key.replace('.', "/")
    };
    let ok = !rel.is_empty()
        && rel
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
        && !rel.contains('\0');
    if !ok {
        return Err(Error::Invalid(format!("invalid sysctl key {key:?}")));
    }
    Ok(PathBuf::from("/proc/sys").join(rel))
}

/// The current value, trimmed.
pub fn read(key: &str) -> Result<String> {
    let path = path_of(key)?;
    std::fs::read_to_string(&path)
        .map(|s| s.trim().to_string())
        .map_err(|e| Error::io("read sysctl", path, e))
}

/// Set a value.
pub fn write(key: &str, value: &str) -> Result<()> {
    let path = path_of(key)?;
    std::fs::write(&path, value.as_bytes()).map_err(|e| Error::io("write sysctl", path, e))
}

/// Set `key` to `value` unless it already has it; true when it changed.
fn ensure(key: &str, value: &str) -> Result<bool> {
    if read(key)? == value {
        return Ok(false);
    }
    write(key, value)?;
    Ok(true)
}

/// Turn on IPv4 forwarding (`net.ipv4.ip_forward`), and IPv6 forwarding
/// (`net.ipv6.conf.all.forwarding`) when `v6`. True if anything changed,
/// so the caller can log it. Note that IPv6 forwarding makes interfaces
/// ignore router advertisements unless their `accept_ra` is 2.
pub fn enable_ip_forward(v6: bool) -> Result<bool> {
    let mut changed = ensure("net.ipv4.ip_forward", "1")?;
    if v6 {
        changed |= ensure("net.ipv6.conf.all.forwarding", "1")?;
    }
    Ok(changed)
}

/// `net.ipv4.conf.IFNAME.route_localnet = 1`: lets DNAT'd packets from
/// 127.0.0.0/8 (the host reaching a published port on 127.0.0.1) be
/// routed out of `ifname`.
pub fn set_route_localnet(ifname: &str) -> Result<()> {
    if ifname.is_empty()
        || ifname.len() > 15
        || ifname.contains('/')
        || ifname == "."
        || ifname == ".."
    {
        return Err(Error::Invalid(format!("invalid interface name {ifname:?}")));
    }
    ensure(&format!("net/ipv4/conf/{ifname}/route_localnet"), "1").map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_paths() {
        assert_eq!(
            path_of("net.ipv4.ip_forward").unwrap(),
            PathBuf::from("/proc/sys/net/ipv4/ip_forward")
        );
        assert_eq!(
            path_of("net/ipv4/conf/eth0.100/route_localnet").unwrap(),
            PathBuf::from("/proc/sys/net/ipv4/conf/eth0.100/route_localnet")
        );
        assert!(path_of("net/../../etc/passwd").is_err());
        assert!(path_of("").is_err());
        assert!(path_of("net..x").is_err());
        assert!(set_route_localnet("../x").is_err());
    }
}
