//! Property tests over every parser of untrusted input (issue 10's fuzz
//! targets, on the stable toolchain): the annotation map, port specs,
//! CIDRs, record and lease files, etcd's answers. 10,000 cases per
//! property, from random bytes, from a hostile alphabet, and from valid
//! inputs cut short or with a byte changed. None may panic, and every
//! error is one line.

use std::collections::BTreeMap;

use proptest::prelude::*;

use crate::annotations;
use crate::cluster::wire;
use crate::ports;
use crate::store::ContainerRecord;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 10_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn one_line(e: impl std::fmt::Display) -> Result<(), TestCaseError> {
    let s = e.to_string();
    prop_assert!(!s.contains('\n'), "error spans lines: {s:?}");
    prop_assert!(s.len() < 4096 + 512, "unbounded error: {} bytes", s.len());
    Ok(())
}

/// Strings built from the characters that break parsers and paths.
fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9:./,=+\\-\\[\\] \n\t\u{0}\u{ff}%@*]{0,40}",
        any::<String>(),
        Just("a".repeat(10 * 1024)),
        "(10|fd00|::|0|255|1)[.:/0-9a-f]{0,30}",
    ]
}

/// A valid input, cut at a random place or with one byte changed.
fn mangled(valid: &'static [u8]) -> impl Strategy<Value = Vec<u8>> {
    (0..=valid.len(), any::<u8>(), any::<bool>()).prop_map(move |(at, b, cut)| {
        let mut v = valid.to_vec();
        if cut {
            v.truncate(at);
        } else if at < v.len() {
            v[at] = b;
        }
        v
    })
}

const KEYS: [&str; 14] = [
    "io.wirehook.network",
    "io.wirehook.ip",
    "io.wirehook.mac",
    "io.wirehook.ports",
    "io.wirehook.mtu",
    "io.wirehook.ifname",
    "io.wirehook.name",
    "io.wirehook.subnet",
    "io.wirehook.gateway",
    "io.wirehook.driver",
    "io.wirehook.parent",
    "io.wirehook.vni",
    "io.wirehook.subent",
    "io.other",
];

const RECORD: &[u8] = br#"{"version":1,"id":"abc","name":"web","mode":"bridge","netns_inode":4026532000,"netns_path":"/run/wirehook/netns/abc","interfaces":[{"network":"bridge","driver":"bridge","ifname":"eth0","host_ifname":"whv0123456789ab","bridge":"wh-bridge","mac":"02:42:ac:11:00:02","mtu":1500,"addresses":["10.88.0.2/16"],"gateways":["10.88.0.1"],"ports":[]}],"pid":42,"pid_start":1,"created":1}"#;

const RANGE: &[u8] = br#"{"header":{"revision":"7"},"kvs":[{"key":"L3dpcmVob29rL3Yx","value":"e30=","mod_revision":"5","create_revision":"5","lease":"0"}],"count":"1"}"#;
const WATCH: &[u8] = br#"{"result":{"header":{"revision":"9"},"events":[{"type":"DELETE","kv":{"key":"L3dpcmVob29rL3Yx","mod_revision":"9"}}]}}"#;
const LEASE: &[u8] = br#"{"header":{"revision":"3"},"ID":"7587869403853254663","TTL":"10"}"#;

proptest! {
    #![proptest_config(config())]

    #[test]
    fn annotation_maps(entries in proptest::collection::vec((0..KEYS.len(), hostile()), 0..6)) {
        let mut map = BTreeMap::new();
        map.insert("io.wirehook.network".to_string(), "bridge".to_string());
        for (k, v) in entries {
            map.insert(KEYS[k].to_string(), v);
        }
        if let Err(e) = annotations::parse(&map) {
            one_line(e)?;
        }
    }

    #[test]
    fn port_specs(spec in hostile()) {
        if let Err(e) = ports::parse_ports(&spec) {
            one_line(e)?;
        }
    }

    #[test]
    fn cidrs(cidr in hostile(), gw in hostile()) {
        let mut map = BTreeMap::new();
        map.insert("io.wirehook.network".to_string(), "n".to_string());
        map.insert("io.wirehook.subnet".to_string(), cidr);
        map.insert("io.wirehook.gateway".to_string(), gw);
        if let Err(e) = annotations::parse(&map) {
            one_line(e)?;
        }
    }

    #[test]
    fn record_files(bytes in prop_oneof![mangled(RECORD), proptest::collection::vec(any::<u8>(), 0..256)]) {
        // What `Records::get` does with a file's bytes.
        if let Err(e) = serde_json::from_slice::<ContainerRecord>(&bytes) {
            one_line(crate::Error::Json { path: "containers/x.json".into(), err: e })?;
        }
    }

    #[test]
    fn lease_files(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
        let dir = std::env::temp_dir().join(format!("wh-fuzz-lease-{}", std::process::id()));
        let paths = crate::paths::Paths::under(&dir);
        let leases = paths.leases_dir("n");
        std::fs::create_dir_all(&leases).unwrap();
        std::fs::write(leases.join("10.0.0.2"), &bytes).unwrap();
        match crate::ipam::release_lease(&paths, "n", "10.0.0.2".parse().unwrap(), "owner") {
            Ok(_) => {}
            Err(e) => one_line(e)?,
        }
    }

    #[test]
    fn etcd_answers(
        range in prop_oneof![mangled(RANGE), proptest::collection::vec(any::<u8>(), 0..200)],
        watch in prop_oneof![mangled(WATCH), proptest::collection::vec(any::<u8>(), 0..200)],
        lease in prop_oneof![mangled(LEASE), proptest::collection::vec(any::<u8>(), 0..100)],
    ) {
        for r in [
            wire::decode_range(&range).map(|_| ()),
            wire::decode_txn(&range).map(|_| ()),
            wire::decode_deleted(&range).map(|_| ()),
            wire::decode_watch_line(&watch).map(|_| ()),
            wire::decode_lease_grant(&lease).map(|_| ()),
            wire::decode_keepalive(&lease).map(|_| ()),
        ] {
            if let Err(e) = r {
                one_line(e)?;
            }
        }
    }
}

#[test]
fn the_seeds_are_valid() {
    serde_json::from_slice::<ContainerRecord>(RECORD).expect("record seed");
    wire::decode_range(RANGE).expect("range seed");
    wire::decode_watch_line(WATCH).expect("watch seed");
    wire::decode_lease_grant(LEASE).expect("lease seed");
}
