//! Conntrack cleanup through ctnetlink (`NFNL_SUBSYS_CTNETLINK` on the
//! `NETLINK_NETFILTER` socket), without running `conntrack`.
//!
//! When a container goes away its NAT flows stay in the conntrack table
//! until they time out; a new container that gets the same address (or a
//! published port whose DNAT flow is still cached) would receive the old
//! flows. [`flush`] dumps the table once, both address families
//! (`IPCTNL_MSG_CT_GET` with `NLM_F_DUMP`, `AF_UNSPEC`), picks the entries in which one
//! of the addresses appears (original source or destination, reply source
//! or destination: DNAT'd flows to the container have it as reply source,
//! direct ones as original destination, its own outgoing flows as
//! original source), and deletes each (`IPCTNL_MSG_CT_DELETE` with the
//! original tuple, zone and id, so a newer entry with the same tuple is
//! not hit). The kernel cannot filter a delete by address, and a delete
//! without a tuple flushes the whole table, so every delete names one.
//! It uses the process's cached netfilter socket: closing a fresh one
//! would wait for nf_tables' pending destroy work (see `nfnetlink`).

use std::collections::HashSet;
use std::net::IpAddr;

use super::nfnetlink::{with_socket, Attrs, Msg, Socket, NFNL_SUBSYS_CTNETLINK, NLM_F_DUMP};
use crate::error::{Error, Result};

// linux/netfilter/nfnetlink_conntrack.h
const IPCTNL_MSG_CT_NEW: u16 = 0;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_ID: u16 = 12;
const CTA_ZONE: u16 = 18;
const CTA_TUPLE_IP: u16 = 1;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;

/// Delete every conntrack entry in which one of `addrs` appears; returns
/// how many were deleted. Entries that vanish meanwhile are not errors.
pub fn flush(addrs: &[IpAddr]) -> Result<usize> {
    if addrs.is_empty() || !has_entries() {
        return Ok(0);
    }
    let wanted: HashSet<IpAddr> = addrs.iter().copied().collect();
    with_socket(|sock| flush_with(sock, &wanted))
}

fn flush_with(sock: &mut Socket, wanted: &HashSet<IpAddr>) -> Result<usize> {
    // One dump of both families: the walk over the (global) hash table
    // is what costs, not the entries.
    let req = Msg::new(
        NFNL_SUBSYS_CTNETLINK,
        IPCTNL_MSG_CT_GET,
        NLM_F_DUMP,
        libc::AF_UNSPEC as u8,
    );
    let mut deletes = Vec::new();
    let errno = sock.request(&req, "list conntrack entries", |r| {
        if r.ty != (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW {
            return;
        }
        let attrs = r.attrs();
        let hit = [CTA_TUPLE_ORIG, CTA_TUPLE_REPLY]
            .into_iter()
            .filter_map(|t| attrs.get(t))
            .flat_map(|t| tuple_addrs(t.nested()))
            .any(|a| wanted.contains(&a));
        if !hit {
            return;
        }
        let Some(orig) = attrs.get(CTA_TUPLE_ORIG) else {
            return;
        };
        let mut del = Msg::new(NFNL_SUBSYS_CTNETLINK, IPCTNL_MSG_CT_DELETE, 0, r.family());
        del.raw_attr(orig.raw);
        for extra in [CTA_ZONE, CTA_ID] {
            if let Some(a) = attrs.get(extra) {
                del.raw_attr(a.raw);
            }
        }
        deletes.push(del);
    })?;
    if errno != 0 {
        return Err(Error::netlink(
            "list conntrack entries (is nf_conntrack_netlink available?)",
            std::io::Error::from_raw_os_error(errno),
        ));
    }
    let mut deleted = 0;
    let mut failure = None;
    for errno in sock.requests_with(&deletes, "delete conntrack entries", |_, _| {})? {
        match errno {
            0 => deleted += 1,
            libc::ENOENT => {}
            e => failure = Some(e),
        }
    }
    if let Some(e) = failure {
        return Err(Error::netlink(
            format!("delete conntrack entries ({deleted} deleted)"),
            std::io::Error::from_raw_os_error(e),
        ));
    }
    Ok(deleted)
}

/// Does this namespace track any connection? The count is per
/// namespace and free to read; the dump is not (it walks every bucket of
/// the host-wide hash table, ~10-15 ms with the default 262144 buckets,
/// however few entries exist). No file: conntrack is not loaded here.
fn has_entries() -> bool {
    match std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_count") {
        Ok(s) => s.trim() != "0",
        Err(_) => false,
    }
}

/// Source and destination address of a `CTA_TUPLE_*` nest.
fn tuple_addrs(tuple: Attrs<'_>) -> Vec<IpAddr> {
    let Some(ip) = tuple.get(CTA_TUPLE_IP) else {
        return Vec::new();
    };
    ip.nested()
        .filter_map(|a| match a.ty {
            CTA_IP_V4_SRC | CTA_IP_V4_DST => <[u8; 4]>::try_from(a.data).ok().map(IpAddr::from),
            CTA_IP_V6_SRC | CTA_IP_V6_DST => <[u8; 16]>::try_from(a.data).ok().map(IpAddr::from),
            _ => None,
        })
        .collect()
}
