//! wirehook's shared library: everything the hook (`wirehook`) and the
//! inspector (`wiretop`) both need.
//!
//! How the parts fit:
//!
//! - [`paths`] says where things live (`/etc/wirehook`, `/run/wirehook`, or a
//!   test root), [`fsutil`] gives atomic writes and flock-based locks.
//! - [`network`] holds network definitions (what the operator created with
//!   `wirehook network create`); [`annotations`] and [`ports`] parse and
//!   validate what a container asks for; [`listeners`] tells which host
//!   sockets a published port would take over.
//! - [`ipam`] hands out addresses from a network's pool (one lease file per
//!   address, O(1) amortized); [`store`] keeps one record per wired
//!   container, which is all teardown needs.
//! - [`netns`] opens, enters, bind-mounts and enumerates network namespaces;
//!   [`netlink`] talks rtnetlink (links, addresses, routes) in any of them;
//!   [`announce`] sends the gratuitous ARP a re-used address needs;
//!   [`nlraw`] is the raw netlink socket of the families spoken by hand
//!   (nf_tables, WireGuard, sock_diag).
//! - [`firewall`] owns the `inet wirehook` nftables table: per-network rules
//!   once, per-container set/map elements only, conntrack cleanup.
//! - [`cluster`] is the cluster store overlay networks agree through:
//!   network definitions, subnet claims and host liveness, in etcd for a
//!   cluster or in local files for one host.
//! - [`dns`] is the per-host resolver's codec, name table and control
//!   protocol (container names on every network).
//! - [`procfs`] reads `/proc/PID/stat` and `cmdline` (the hook's caller,
//!   a container process's start time; wiretop's processes).
//! - [`error`] is the error type every module returns.

pub mod annotations;
pub mod announce;
pub mod cluster;
pub mod dns;
pub mod error;
pub mod firewall;
pub mod fsutil;
pub mod hostconfig;
pub mod inspect;
pub mod ipam;
pub mod listeners;
pub mod netlink;
pub mod netns;
pub mod network;
pub mod nlraw;
pub mod overlay;
pub mod paths;
pub mod ports;
pub mod procfs;
pub mod store;
pub mod sysctl;
pub mod wireguard;

pub use error::{Error, Result};

#[cfg(test)]
mod fuzz;
