//! Address allocation for one network.
//!
//! Each lease is a file `leases/NETWORK/ADDRESS` holding the container id,
//! created with O_EXCL, so two allocators can never hand out one address.
//! A cursor file per address family remembers where the last allocation
//! stopped; the next one starts after it, so allocation is O(1) amortized
//! (no scan of every lease) until the pool wraps around. The caller holds
//! the network's lock around [`Ipam::allocate`] so the cursor stays
//! consistent; a lease itself needs no lock.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;

use ipnetwork::IpNetwork;

use crate::error::{Error, Result};
use crate::fsutil;
use crate::network::{is_broadcast, nth_host, NetworkDef, Subnet};
use crate::paths::Paths;

/// One address handed out, with the subnet it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub address: IpAddr,
    pub subnet: Subnet,
}

impl Lease {
    pub fn cidr(&self) -> IpNetwork {
        IpNetwork::new(self.address, self.subnet.subnet.prefix()).expect("valid prefix")
    }
}

pub struct Ipam<'a> {
    def: &'a NetworkDef,
    dir: PathBuf,
}

impl<'a> Ipam<'a> {
    pub fn new(paths: &Paths, def: &'a NetworkDef) -> Self {
        Ipam {
            def,
            dir: paths.leases_dir(&def.name),
        }
    }

    fn lease_path(&self, ip: IpAddr) -> PathBuf {
        self.dir.join(ip.to_string())
    }

    /// Who holds `ip`, if anyone.
    pub fn holder(&self, ip: IpAddr) -> Option<String> {
        std::fs::read_to_string(self.lease_path(ip))
            .ok()
            .map(|s| s.trim().to_string())
    }

    /// Addresses this network must never hand out.
    fn is_reserved(&self, subnet: &Subnet, ip: IpAddr) -> bool {
        ip == subnet.gateway
            || Some(ip) == nth_host(&subnet.subnet, 0)
            || is_broadcast(&subnet.subnet, ip)
            || self.def.reserved.contains(&ip)
    }

    /// Try to take `ip` for `owner`: Ok(true) taken now, Ok(false) held by
    /// someone else; holding it already counts as taken (idempotent).
    fn try_take(&self, ip: IpAddr, owner: &str) -> Result<bool> {
        let path = self.lease_path(ip);
        let open = || OpenOptions::new().write(true).create_new(true).open(&path);
        let file = match open() {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fsutil::ensure_dir(&self.dir)?;
                match open() {
                    Ok(f) => f,
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        return Ok(self.holder(ip).as_deref() == Some(owner))
                    }
                    Err(e) => return Err(Error::io("create lease", path, e)),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Ok(self.holder(ip).as_deref() == Some(owner))
            }
            Err(e) => return Err(Error::io("create lease", path, e)),
        };
        let mut file = file;
        if let Err(e) = file.write_all(format!("{owner}\n").as_bytes()) {
            let _ = std::fs::remove_file(&path);
            return Err(Error::io("write lease", path, e));
        }
        Ok(true)
    }

    /// Take the given static address for `owner`.
    pub fn take_static(&self, ip: IpAddr, owner: &str) -> Result<Lease> {
        let subnet = self
            .def
            .subnets
            .iter()
            .find(|s| s.subnet.contains(ip))
            .ok_or_else(|| {
                Error::invalid(format!(
                    "io.wirehook.ip {ip} is not in network {}'s subnets ({}): pick an address inside them",
                    self.def.name,
                    self.def.subnets.iter().map(|s| s.subnet.to_string()).collect::<Vec<_>>().join(", ")
                ))
            })?;
        if self.is_reserved(subnet, ip) {
            return Err(Error::invalid(format!(
                "io.wirehook.ip {ip} is reserved in network {} (network, broadcast, gateway or aux address): pick another",
                self.def.name
            )));
        }
        if !self.try_take(ip, owner)? {
            return Err(Error::Conflict(format!(
                "io.wirehook.ip {ip} is already held by container {} on network {}: pick another address",
                self.holder(ip).unwrap_or_else(|| "?".into()),
                self.def.name
            )));
        }
        Ok(Lease {
            address: ip,
            subnet: subnet.clone(),
        })
    }

    /// Allocate the next free address of `subnet` for `owner`. The caller
    /// holds the network lock.
    pub fn allocate(&self, subnet: &Subnet, owner: &str) -> Result<Lease> {
        let range = subnet.ip_range.unwrap_or(subnet.subnet);
        let bits = match range {
            IpNetwork::V4(n) => 32 - u32::from(n.prefix()),
            IpNetwork::V6(n) => 128 - u32::from(n.prefix()),
        };
        let size: u128 = if bits >= 128 {
            u128::MAX
        } else {
            1u128 << bits
        };
        let cursor_path = self.dir.join(if range.is_ipv4() {
            ".cursor-v4"
        } else {
            ".cursor-v6"
        });
        let start: u128 = std::fs::read_to_string(&cursor_path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .map(|c: u128| c.wrapping_add(1))
            .unwrap_or(0);
        // Bound the walk: a full pool is reported after one lap (capped for
        // IPv6, where a lap is astronomically long and never needed).
        let lap = size.min(1 << 24);
        for i in 0..lap {
            let n = (start.wrapping_add(i)) % size;
            let Some(ip) = nth_host(&range, n) else {
                continue;
            };
            if !subnet.subnet.contains(ip) || self.is_reserved(subnet, ip) {
                continue;
            }
            if self.try_take(ip, owner)? {
                fsutil::write_atomic(&cursor_path, n.to_string().as_bytes())?;
                return Ok(Lease {
                    address: ip,
                    subnet: subnet.clone(),
                });
            }
        }
        Err(Error::Exhausted(format!(
            "network {} has no free address left in {range}: remove containers or widen the subnet",
            self.def.name
        )))
    }

    /// Release `ip` if `owner` holds it; a lease held by someone else or
    /// already gone is left alone.
    pub fn release(&self, ip: IpAddr, owner: &str) -> Result<bool> {
        match self.holder(ip) {
            Some(h) if h == owner => fsutil::remove_file(&self.lease_path(ip)),
            _ => Ok(false),
        }
    }

    /// Every lease of this network as (address, owner).
    pub fn leases(&self) -> Vec<(IpAddr, String)> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        rd.flatten()
            .filter_map(|e| {
                let ip: IpAddr = e.file_name().to_str()?.parse().ok()?;
                Some((ip, self.holder(ip)?))
            })
            .collect()
    }
}

/// Release a lease by network name, without loading the definition
/// (teardown works from the record alone).
pub fn release_lease(paths: &Paths, network: &str, ip: IpAddr, owner: &str) -> Result<bool> {
    let path = paths.leases_dir(network).join(ip.to_string());
    match std::fs::read_to_string(&path) {
        Ok(h) if h.trim() == owner => fsutil::remove_file(&path),
        _ => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::{build_definition, CreateOptions};

    fn setup(subnet: &str, range: Option<&str>) -> (Paths, NetworkDef, PathBuf) {
        let root = std::env::temp_dir().join(format!(
            "wh-ipam-{}-{}",
            std::process::id(),
            crate::network::stable_hash(
                format!("{subnet}{range:?}{:?}", std::thread::current().id()).as_bytes()
            )
        ));
        let paths = Paths::under(&root);
        let opts = CreateOptions {
            name: "t".into(),
            subnets: vec![subnet.parse().unwrap()],
            ip_ranges: range.iter().map(|r| r.parse().unwrap()).collect(),
            aux_addresses: vec![],
            ..Default::default()
        };
        let def = build_definition(&opts, &[], &[]).unwrap();
        (paths, def, root)
    }

    #[test]
    fn allocates_distinct_skips_reserved_and_exhausts() {
        let (paths, def, root) = setup("10.0.0.0/29", None);
        let ipam = Ipam::new(&paths, &def);
        let s = &def.subnets[0];
        let mut got = Vec::new();
        for i in 0..5 {
            got.push(
                ipam.allocate(s, &format!("c{i}"))
                    .unwrap()
                    .address
                    .to_string(),
            );
        }
        // .0 network, .1 gateway, .7 broadcast never handed out.
        assert_eq!(
            got,
            ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]
        );
        let err = ipam.allocate(s, "c9").unwrap_err().to_string();
        assert!(err.contains("no free address"), "{err}");
        assert!(ipam.release("10.0.0.4".parse().unwrap(), "c2").unwrap());
        assert_eq!(
            ipam.allocate(s, "c10").unwrap().address.to_string(),
            "10.0.0.4"
        );
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn static_addresses() {
        let (paths, def, root) = setup("10.0.1.0/24", Some("10.0.1.128/25"));
        let ipam = Ipam::new(&paths, &def);
        let s = &def.subnets[0];
        let a = ipam.take_static("10.0.1.5".parse().unwrap(), "x").unwrap();
        assert_eq!(a.cidr().to_string(), "10.0.1.5/24");
        // idempotent for the same owner, refused for another
        ipam.take_static("10.0.1.5".parse().unwrap(), "x").unwrap();
        let err = ipam
            .take_static("10.0.1.5".parse().unwrap(), "y")
            .unwrap_err()
            .to_string();
        assert!(err.contains("already held by container x"), "{err}");
        assert!(ipam.take_static("10.0.2.5".parse().unwrap(), "y").is_err());
        assert!(ipam.take_static("10.0.1.1".parse().unwrap(), "y").is_err());
        // dynamic allocations come from the range only
        assert_eq!(
            ipam.allocate(s, "z").unwrap().address.to_string(),
            "10.0.1.128"
        );
        // a release by a non-holder does nothing
        assert!(!ipam.release("10.0.1.5".parse().unwrap(), "y").unwrap());
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn concurrent_allocators_never_collide() {
        let (paths, def, root) = setup("10.0.2.0/24", None);
        let lock = paths.locks_dir().join("net-t.lock");
        let results: Vec<IpAddr> = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..8)
                .map(|t| {
                    let (paths, def, lock) = (&paths, &def, &lock);
                    sc.spawn(move || {
                        (0..20)
                            .map(|i| {
                                let _l = crate::fsutil::Lock::exclusive(lock).unwrap();
                                Ipam::new(paths, def)
                                    .allocate(&def.subnets[0], &format!("{t}-{i}"))
                                    .unwrap()
                                    .address
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        let mut uniq = results.clone();
        uniq.sort();
        uniq.dedup();
        assert_eq!(uniq.len(), 160);
        let _ = std::fs::remove_dir_all(root);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
        /// Whatever the subnet, range and churn: every address handed out is
        /// inside the range, never the network, broadcast, gateway or an aux
        /// address, and never one that is currently leased.
        #[test]
        fn allocations_are_valid_and_distinct(
            prefix in 26u8..=30,
            third in 0u8..=255,
            ops in proptest::collection::vec(proptest::bool::ANY, 1..80),
        ) {
            let subnet = format!("10.9.{third}.0/{prefix}");
            let (paths, mut def, root) = setup(&subnet, None);
            let aux = nth_host(&def.subnets[0].subnet, 2).unwrap();
            def.reserved = vec![aux];
            let ipam = Ipam::new(&paths, &def);
            let s = def.subnets[0].clone();
            let mut held: Vec<(IpAddr, String)> = Vec::new();
            for (i, alloc) in ops.into_iter().enumerate() {
                if alloc || held.is_empty() {
                    match ipam.allocate(&s, &format!("c{i}")) {
                        Ok(l) => {
                            let ip = l.address;
                            proptest::prop_assert!(s.subnet.contains(ip));
                            proptest::prop_assert!(ip != s.gateway && ip != aux);
                            proptest::prop_assert!(Some(ip) != nth_host(&s.subnet, 0));
                            proptest::prop_assert!(!is_broadcast(&s.subnet, ip));
                            proptest::prop_assert!(!held.iter().any(|(h, _)| *h == ip));
                            held.push((ip, format!("c{i}")));
                        }
                        Err(Error::Exhausted(_)) => {
                            // Full: every usable address is held.
                            let usable = (1u32 << (32 - prefix)) - 4;
                            proptest::prop_assert_eq!(held.len() as u32, usable);
                        }
                        Err(e) => proptest::prop_assert!(false, "{e}"),
                    }
                } else {
                    let (ip, owner) = held.remove(i % held.len());
                    proptest::prop_assert!(ipam.release(ip, &owner).unwrap());
                }
            }
            let _ = std::fs::remove_dir_all(root);
        }
    }
}
