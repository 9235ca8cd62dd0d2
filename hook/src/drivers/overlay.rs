//! Overlay networks: bridge networks whose subnet spans hosts.
//!
//! Each host holds a share of the network's subnet (its claim in the
//! cluster store, see `wirehook_shared::overlay`), a bridge with that
//! share's gateway, and a VXLAN device (learning off) with the share's
//! first address. Containers attach to the bridge exactly as on a bridge
//! network (`bridge::attach`). Every other member host gets one route (its
//! share via its VXLAN address, onlink), one permanent neighbour entry
//! (that address -> its VXLAN MAC) and one FDB entry (that MAC -> its
//! underlay address): traffic between hosts is routed, so broadcast and
//! unknown-unicast never cross the underlay.
//!
//! A container start reads the network's keys once (in `resolve`, kept
//! for the driver in this process), claims a share if the host has none,
//! and brings the local entries in line with what it read. Nothing is
//! written to the store per container by the hook, and teardown never
//! talks to it: the container's names are published by the resolver
//! (`crate::dns::cluster`), after it answered the hook.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex, OnceLock};

use ipnetwork::IpNetwork;
use wirehook_shared::cluster::{self, Store};
use wirehook_shared::error::{fail_point, Error, Result};
use wirehook_shared::firewall::{self, NetworkRules};
use wirehook_shared::hostconfig::HostConfig;
use wirehook_shared::netlink::{Netlink, VxlanSpec};
use wirehook_shared::network::NetworkDef;
use wirehook_shared::overlay::{
    self, ClusterView, HostClaim, Identity, LocalState, Peer, VXLAN_OVERHEAD, VXLAN_PORT,
};
use wirehook_shared::paths::Paths;
use wirehook_shared::store::{ContainerRecord, InterfaceRecord};
use wirehook_shared::sysctl;
use wirehook_shared::wireguard::{self, Genl, KeyPair, PeerSpec, WG_OVERHEAD};

use super::bridge::{self, network_lock};
use super::{Attachment, Driver, HostCx, SetupCx};
use crate::log;

pub struct Overlay;

/// The cluster store of this process, opened on first use.
pub fn store(paths: &Paths) -> Result<Arc<dyn Store>> {
    static STORE: Mutex<Option<Arc<dyn Store>>> = Mutex::new(None);
    let mut s = STORE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(st) = s.as_ref() {
        return Ok(st.clone());
    }
    let cfg = HostConfig::load(paths)?;
    let st: Arc<dyn Store> = Arc::from(cluster::open(&cfg.store_config(), paths)?);
    *s = Some(st.clone());
    Ok(st)
}

/// Views read in this process, so a container start reads each network's
/// keys once: `resolve` looks the network up, the driver uses the same
/// read.
fn views() -> &'static Mutex<BTreeMap<String, ClusterView>> {
    static VIEWS: OnceLock<Mutex<BTreeMap<String, ClusterView>>> = OnceLock::new();
    VIEWS.get_or_init(|| Mutex::new(BTreeMap::new()))
}

fn view(paths: &Paths, name: &str) -> Result<ClusterView> {
    if let Some(v) = views().lock().unwrap_or_else(|e| e.into_inner()).get(name) {
        return Ok(v.clone());
    }
    let st = store(paths)?;
    let v = overlay::load_view(st.as_ref(), name)?;
    views()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(name.to_string(), v.clone());
    Ok(v)
}

/// The definition of overlay network `name`, if the store has one (one
/// read of its keys, kept for this process).
pub fn lookup(paths: &Paths, name: &str) -> Result<Option<NetworkDef>> {
    Ok(view(paths, name)?.def)
}

/// This host as the cluster sees it, from the host config and the kernel.
/// Without a cluster store (one host, no peers) a host with no underlay
/// to find uses loopback: its VXLAN device then carries nothing.
pub fn identity(cfg: &HostConfig, nl: &Netlink) -> Result<Identity> {
    match find_identity(cfg, nl) {
        Err(Error::NotFound(_))
            if cfg.store.is_none()
                && cfg.underlay_interface.is_none()
                && cfg.underlay_address.is_none() =>
        {
            Ok(Identity {
                host: overlay::host_id(cfg.host_id.as_deref())?,
                hostname: hostname(),
                underlay_if: "lo".into(),
                underlay_index: 0,
                underlay_ip: Ipv4Addr::LOCALHOST,
                underlay_mtu: 1500,
            })
        }
        other => other,
    }
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default()
}

fn find_identity(cfg: &HostConfig, nl: &Netlink) -> Result<Identity> {
    let host = overlay::host_id(cfg.host_id.as_deref())?;
    let link = match &cfg.underlay_interface {
        Some(name) => nl.link(name)?.ok_or_else(|| {
            Error::NotFound(format!(
                "underlay interface {name} does not exist: fix \"underlay_interface\" in the host config"
            ))
        })?,
        None => {
            let oif = nl
                .routes(false)?
                .into_iter()
                .find(|r| r.prefix == 0 && r.table == 254 && r.oif.is_some())
                .and_then(|r| r.oif)
                .ok_or_else(|| {
                    Error::NotFound(
                        "this host has no default route to find its underlay interface by: set \"underlay_interface\" in the host config".into(),
                    )
                })?;
            nl.link_by_index(oif)?
                .ok_or_else(|| Error::NotFound(format!("link {oif} of the default route vanished")))?
        }
    };
    let underlay_ip = match cfg.underlay_address {
        Some(a) => a,
        None => nl
            .addresses()?
            .into_iter()
            .find_map(|(i, ip, _)| match ip {
                IpAddr::V4(v4) if i == link.index => Some(v4),
                _ => None,
            })
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "underlay interface {} has no IPv4 address: give it one or set \"underlay_address\" in the host config",
                    link.name
                ))
            })?,
    };
    Ok(Identity {
        host,
        hostname: hostname(),
        underlay_if: link.name,
        underlay_index: link.index,
        underlay_ip,
        underlay_mtu: link.mtu,
    })
}

/// What an encrypted network's WireGuard device is programmed with.
struct Wg {
    genl: Genl,
    key: KeyPair,
    port: u16,
    /// The device; 0 until made.
    index: u32,
}

impl Wg {
    /// The kernel's WireGuard and this host's key (made on first need),
    /// before anything is claimed or made: a kernel without WireGuard
    /// fails here with one line naming the module, and leaves nothing.
    fn prepare(paths: &Paths, def: &NetworkDef) -> Result<Wg> {
        let genl = Genl::open()?;
        let key = KeyPair::load_or_create(paths)?;
        Ok(Wg {
            genl,
            key,
            port: overlay::wireguard_port(def.vni.unwrap_or(0)),
            index: 0,
        })
    }
}

/// A host's side of an overlay network, in place.
pub struct Realized {
    pub bridge_index: u32,
    /// The definition containers here are wired with (this host's share).
    pub local: NetworkDef,
}

/// Make sure this host has a claim on `view`'s network, its bridge, VXLAN
/// device and firewall rules, and entries for exactly the current peers.
/// The caller holds the network's lock. `liveness`: the agent calls,
/// so the claim is marked as kept alive by it. `full`: compare peers with
/// the kernel's entries rather than with what was last programmed.
pub fn realize(
    paths: &Paths,
    nl: &Netlink,
    store: &dyn Store,
    view: &mut ClusterView,
    me: &Identity,
    liveness: bool,
    full: bool,
) -> Result<Realized> {
    let def = view.definition(store)?.clone();
    let mut wg = if def.encrypted {
        Some(Wg::prepare(paths, &def)?)
    } else {
        None
    };
    let mut claim = overlay::claim(store, view, me, liveness)?;
    if let Some(wg) = &wg {
        claim = overlay::publish_key(store, view, &me.host, &wg.key.public_b64())?;
    }
    let mtu = me
        .underlay_mtu
        .saturating_sub(VXLAN_OVERHEAD + if wg.is_some() { WG_OVERHEAD } else { 0 });
    let local = overlay::local_definition(&def, &claim, mtu);
    let bridge = overlay::bridge_name(&def.name);
    let vxlan = overlay::vxlan_name(&def.name);
    let wg_dev = if wg.is_some() {
        overlay::wireguard_name(&def.name)
    } else {
        String::new()
    };
    let previous = LocalState::load(paths, &def.name)?;
    let previous_revision = previous.as_ref().map_or(0, |p| p.revision);

    // Fast path: devices as this host left them.
    let br = nl.link(&bridge)?;
    let vx = nl.link(&vxlan)?;
    let wl = match &wg {
        Some(_) => nl.link(&wg_dev)?,
        None => None,
    };
    let wg_in_place = match (&wg, &wl, &previous) {
        (None, _, _) => true,
        (Some(w), Some(l), Some(p)) => l.up && p.wireguard == wg_dev && wg_keyed(w, l.index),
        _ => false,
    };
    let in_place = match (&previous, &br, &vx) {
        (Some(p), Some(b), Some(v)) => {
            p.subnet == Some(claim.subnet)
                && p.vxlan_index == v.index
                && b.up
                && v.up
                && wg_in_place
        }
        _ => false,
    };
    let (bridge_index, vxlan_index) = if in_place {
        if let (Some(w), Some(l)) = (&mut wg, &wl) {
            w.index = l.index;
        }
        (br.expect("checked").index, vx.expect("checked").index)
    } else {
        build_devices(nl, &def, &claim, &local, me, mtu, wg.as_mut())?
    };
    let mut state = LocalState {
        network: def.name.clone(),
        host: me.host.clone(),
        subnet: Some(claim.subnet),
        bridge,
        vxlan,
        vxlan_index,
        vni: def.vni.unwrap_or(0),
        wireguard: wg_dev,
        store: store.describe(),
        peers: if in_place && !full {
            previous.map(|p| p.peers).unwrap_or_default()
        } else {
            Vec::new()
        },
        revision: view.revision,
        updated: wirehook_shared::network::now(),
    };
    let mut desired = view.peers(&me.host);
    if wg.is_some() {
        // Only hosts with a key are reached, and only through WireGuard.
        desired.retain(|p| {
            let ok = p.wg_key.as_deref().is_some_and(|k| wireguard::decode_key(k).is_some());
            if !ok {
                log::warn(format!(
                    "overlay network {}: host {} has published no WireGuard key yet: not reached until it does",
                    def.name, p.host
                ));
            }
            ok
        });
    }
    // A container start read the store before it took the lock; if the
    // agent has since programmed a newer state, that one stands.
    let stale = !full && in_place && view.revision < previous_revision;
    if stale {
        state.revision = previous_revision;
    } else if full || !in_place || desired != state.peers {
        fail_point("overlay-peers")?;
        sync_peers(
            nl,
            &def,
            &mut state,
            desired,
            full || !in_place,
            wg.as_ref(),
        )?;
        state.save(paths)?;
    }
    Ok(Realized {
        bridge_index,
        local,
    })
}

/// Key this host's WireGuard device of network `net` (if it is an
/// encrypted one joined here) with `key`, the one just saved, keeping its peers
/// and their sessions' addresses: the first step of a key rotation, before
/// the new public key is published. Another host's agent then swaps in the
/// new key as a new peer, which WireGuard greets with a keepalive at once,
/// and this host already answers to it. (Published first, a peer swapped
/// before this device was rekeyed had its handshake refused and waited for
/// WireGuard's 5 s handshake retry.)
pub fn rekey(paths: &Paths, nl: &Netlink, key: &KeyPair, net: &str) -> Result<()> {
    let Some(st) = LocalState::load(paths, net)? else {
        return Ok(());
    };
    if st.wireguard.is_empty() {
        return Ok(());
    }
    let Some(link) = nl.link(&st.wireguard)? else {
        return Ok(()); // not made yet: made with the new key
    };
    Genl::open()?.configure(link.index, key, overlay::wireguard_port(st.vni), &[], &[])
}

/// Does device `index` carry this host's key and the network's port?
fn wg_keyed(wg: &Wg, index: u32) -> bool {
    wg.genl
        .device(index)
        .is_ok_and(|d| d.public_key == Some(*wg.key.public()) && d.listen_port == wg.port)
}

/// The WireGuard device of an encrypted network: made (MTU the underlay's
/// less WireGuard's overhead), keyed, listening on the network's port,
/// with this host's tunnel address, up. Peers come with `sync_peers`.
fn build_wireguard(
    nl: &Netlink,
    def: &NetworkDef,
    claim: &HostClaim,
    me: &Identity,
    wg: &mut Wg,
) -> Result<u32> {
    let name = overlay::wireguard_name(&def.name);
    let index = nl.ensure_wireguard(&name, me.underlay_mtu.saturating_sub(WG_OVERHEAD))?;
    wg.genl.configure(index, &wg.key, wg.port, &[], &[])?;
    nl.add_address(index, IpAddr::V4(overlay::tunnel_ip(&claim.subnet)), 32)?;
    nl.set_up(index)?;
    wg.index = index;
    log::info(format!(
        "overlay network {}: WireGuard {name} on UDP {}, tunnel address {}, public key {}",
        def.name,
        wg.port,
        overlay::tunnel_ip(&claim.subnet),
        wg.key.public_b64()
    ));
    Ok(index)
}

fn build_devices(
    nl: &Netlink,
    def: &NetworkDef,
    claim: &HostClaim,
    local: &NetworkDef,
    me: &Identity,
    mtu: u32,
    wg: Option<&mut Wg>,
) -> Result<(u32, u32)> {
    let bridge = overlay::bridge_name(&def.name);
    let vxlan = overlay::vxlan_name(&def.name);
    let mtu = local.mtu.unwrap_or(mtu);
    // Encrypted: the VXLAN device sends from this host's tunnel address,
    // which only the WireGuard device routes.
    let (vx_local, vx_underlay) = match wg {
        Some(wg) => {
            // Before the VXLAN device exists: its VNI comes only through
            // WireGuard, never as plaintext from the underlay.
            if let Some(vni) = def.vni {
                firewall::guard_encrypted_vni(vni)?;
            }
            build_wireguard(nl, def, claim, me, wg)?;
            (overlay::tunnel_ip(&claim.subnet), 0)
        }
        None => (me.underlay_ip, me.underlay_index),
    };
    let bridge_index = nl.ensure_bridge(&bridge, Some(mtu))?;
    nl.add_address(
        bridge_index,
        IpAddr::V4(claim.gateway()),
        claim.subnet.prefix(),
    )?;
    let vni = def.vni.ok_or_else(|| {
        Error::invalid(format!(
            "overlay network {} has no VNI: recreate it",
            def.name
        ))
    })?;
    let vxlan_index = nl.ensure_vxlan(&VxlanSpec {
        name: &vxlan,
        vni,
        local: vx_local,
        underlay: vx_underlay,
        port: VXLAN_PORT,
        mtu,
        mac: overlay::vtep_mac(&me.host, vni),
    })?;
    nl.add_address(vxlan_index, IpAddr::V4(claim.vtep_ip()), 32)?;
    if !def.internal && sysctl::enable_ip_forward(false)? {
        log::info("enabled net.ipv4.ip_forward (overlay networks route through the host)");
    }
    sysctl::set_route_localnet(&bridge)?;
    firewall::ensure_table()?;
    let overlay_subnet = IpNetwork::V4(overlay::overlay_subnet(def)?);
    firewall::realize_network(&NetworkRules {
        name: &def.name,
        bridge: &bridge,
        subnets: &[overlay_subnet],
        internal: def.internal,
        tunnel: Some(&vxlan),
    })?;
    if let Some(w) = firewall::forward_drop_warning() {
        log::warn(&w);
        eprintln!("wirehook: warning: {w}");
    }
    log::info(format!(
        "overlay network {}: share {} on {bridge}, VXLAN {vxlan} (VNI {vni}) from {} on {}",
        def.name, claim.subnet, me.underlay_ip, me.underlay_if
    ));
    Ok((bridge_index, vxlan_index))
}

/// Program the route, neighbour and FDB entry of every peer in `desired`
/// and remove those of hosts no longer in it. `from_kernel`: find what to
/// remove in the kernel's tables (entries this host did not record, or
/// left by a crash); else trust `state.peers`.
fn sync_peers(
    nl: &Netlink,
    def: &NetworkDef,
    state: &mut LocalState,
    desired: Vec<Peer>,
    from_kernel: bool,
    wg: Option<&Wg>,
) -> Result<()> {
    let vx = state.vxlan_index;
    // Where a peer's VXLAN traffic goes: its underlay address, or on an
    // encrypted network its tunnel address (through WireGuard only).
    let dst = |p: &Peer| {
        if wg.is_some() {
            IpAddr::V4(p.tunnel_ip())
        } else {
            IpAddr::V4(p.underlay)
        }
    };
    let overlay_subnet = overlay::overlay_subnet(def)?;
    let own = state.subnet;
    if from_kernel {
        let wanted_route = |dest: Ipv4Addr, prefix: u8| {
            desired
                .iter()
                .any(|p| p.subnet.network() == dest && p.subnet.prefix() == prefix)
        };
        for r in nl.routes(false)? {
            if r.oif != Some(vx) || r.table != 254 {
                continue;
            }
            if let Some(IpAddr::V4(d)) = r.destination {
                let mine = own.is_some_and(|o| o.network() == d);
                if overlay_subnet.contains(d) && !mine && !wanted_route(d, r.prefix) {
                    nl.delete_route(d, r.prefix, vx)?;
                }
            }
        }
        for (ip, _) in nl.neighbours(vx)? {
            if !desired.iter().any(|p| IpAddr::V4(p.vtep_ip()) == ip) {
                nl.delete_neighbour(vx, ip)?;
            }
        }
        for (mac, dst_ip) in nl.fdb(vx)? {
            let keep = desired
                .iter()
                .any(|p| dst(p) == dst_ip && p.mac().ok() == Some(mac));
            if !keep {
                nl.delete_fdb(vx, mac, dst_ip)?;
            }
        }
    } else {
        for gone in state.peers.iter().filter(|p| !desired.contains(p)) {
            remove_peer(nl, vx, gone, dst(gone))?;
        }
    }
    if let Some(wg) = wg {
        sync_wireguard(nl, wg, &desired)?;
    }
    for p in &desired {
        if !from_kernel && state.peers.contains(p) {
            continue;
        }
        let mac = p.mac()?;
        nl.replace_fdb(vx, mac, dst(p))?;
        nl.replace_neighbour(vx, IpAddr::V4(p.vtep_ip()), mac)?;
        nl.replace_onlink_route(p.subnet.network(), p.subnet.prefix(), p.vtep_ip(), vx)?;
    }
    let (added, removed) = (
        desired.iter().filter(|p| !state.peers.contains(p)).count(),
        state.peers.iter().filter(|p| !desired.contains(p)).count(),
    );
    if added + removed > 0 {
        log::info(format!(
            "overlay network {}: {} peers (+{added} -{removed})",
            def.name,
            desired.len()
        ));
    }
    state.peers = desired;
    Ok(())
}

fn remove_peer(nl: &Netlink, vx: u32, p: &Peer, dst: IpAddr) -> Result<()> {
    nl.delete_route(p.subnet.network(), p.subnet.prefix(), vx)?;
    nl.delete_neighbour(vx, IpAddr::V4(p.vtep_ip()))?;
    if let Ok(mac) = p.mac() {
        nl.delete_fdb(vx, mac, dst)?;
    }
    Ok(())
}

/// The WireGuard side of an encrypted network's peers: one WireGuard
/// peer per member host (its key, its underlay address on the network's
/// port, its tunnel address as the only allowed address) and a route to
/// that tunnel address through the device; every other peer and route
/// of the device removed. Updating a peer keeps its session.
fn sync_wireguard(nl: &Netlink, wg: &Wg, desired: &[Peer]) -> Result<()> {
    let specs: Vec<PeerSpec> = desired
        .iter()
        .filter_map(|p| {
            Some(PeerSpec {
                public_key: wireguard::decode_key(p.wg_key.as_deref()?)?,
                endpoint: std::net::SocketAddrV4::new(p.underlay, wg.port),
                allowed: p.tunnel_ip(),
            })
        })
        .collect();
    let kernel = wg.genl.device(wg.index)?;
    let remove: Vec<[u8; 32]> = kernel
        .peers
        .iter()
        .map(|k| k.public_key)
        .filter(|k| !specs.iter().any(|s| s.public_key == *k))
        .collect();
    wg.genl
        .configure(wg.index, &wg.key, wg.port, &specs, &remove)?;
    for r in nl.routes(false)? {
        if r.oif != Some(wg.index) || r.table != 254 {
            continue;
        }
        if let Some(IpAddr::V4(d)) = r.destination {
            if !desired.iter().any(|p| p.tunnel_ip() == d && r.prefix == 32) {
                nl.delete_route(d, r.prefix, wg.index)?;
            }
        }
    }
    for p in desired {
        nl.replace_link_route(p.tunnel_ip(), 32, wg.index)?;
    }
    Ok(())
}

/// An encrypted network's WireGuard device on this host, as the kernel
/// has it.
pub fn wireguard_state(net: &str) -> Result<wireguard::DeviceState> {
    wireguard::device_state(&overlay::wireguard_name(net))
}

/// `handshake N s ago` / `no handshake yet` of the peer with public key
/// `key` (base64) on `dev`, for `ps` (the wording is shared with wiretop:
/// [`wireguard::handshake_text`]).
pub fn handshake_text(dev: &wireguard::DeviceState, key: Option<&str>) -> String {
    let Some(k) = key.and_then(wireguard::decode_key) else {
        return wireguard::NO_KEY_TEXT.into();
    };
    match dev.peers.iter().find(|p| p.public_key == k) {
        None => wireguard::NOT_A_PEER_TEXT.into(),
        Some(p) => wireguard::handshake_text(p.last_handshake, wirehook_shared::network::now()),
    }
}

/// An encrypted network's WireGuard device as the kernel has it, for
/// `network inspect`: port, public key, and per peer its endpoint,
/// allowed address, last handshake and bytes; `{"error": ...}` when it
/// cannot be read (not joined here, no WireGuard).
pub fn wireguard_json(net: &str) -> serde_json::Value {
    let name = overlay::wireguard_name(net);
    let read = || -> Result<serde_json::Value> {
        let d = wireguard_state(net)?;
        let peers: Vec<serde_json::Value> = d
            .peers
            .iter()
            .map(|p| {
                serde_json::json!({
                    "public_key": wireguard::encode_key(&p.public_key),
                    "endpoint": p.endpoint.map(|e| e.to_string()),
                    "allowed_ips": p.allowed.iter().map(|(a, m)| format!("{a}/{m}")).collect::<Vec<_>>(),
                    "last_handshake": p.last_handshake,
                    "rx_bytes": p.rx_bytes,
                    "tx_bytes": p.tx_bytes,
                })
            })
            .collect();
        Ok(serde_json::json!({
            "device": name,
            "listen_port": d.listen_port,
            "public_key": d.public_key.map(|k| wireguard::encode_key(&k)),
            "peers": peers,
        }))
    };
    read().unwrap_or_else(|e| serde_json::json!({ "device": name, "error": e.to_string() }))
}

/// Remove this host's side of an overlay network: firewall rules, VXLAN
/// device (with its entries), bridge, local state. The caller checked no
/// container uses it.
pub fn unrealize(paths: &Paths, nl: &Netlink, net: &str) -> Result<()> {
    let bridge = overlay::bridge_name(net);
    let vxlan = overlay::vxlan_name(net);
    let encrypted_vni = LocalState::load(paths, net)
        .ok()
        .flatten()
        .filter(|s| !s.wireguard.is_empty())
        .map(|s| s.vni);
    firewall::remove_network_devices(net, &[&bridge, &vxlan])?;
    nl.delete_link(&vxlan)?;
    nl.delete_link(&overlay::wireguard_name(net))?;
    if let Some(vni) = encrypted_vni {
        firewall::release_encrypted_vni(vni)?;
    }
    nl.delete_link(&bridge)?;
    wirehook_shared::fsutil::remove_file(&LocalState::path(paths, net))?;
    Ok(())
}

impl Driver for Overlay {
    fn setup(
        &self,
        cx: &mut SetupCx<'_>,
        at: Option<&Attachment<'_>>,
    ) -> Result<Option<InterfaceRecord>> {
        let at = at.ok_or_else(|| Error::invalid("overlay mode needs a network"))?;
        let name = &at.network.name;
        let (realized, leases) = {
            fail_point("lock")?;
            let _lock = network_lock(cx.paths, name)?;
            fail_point("realize")?;
            let st = store(cx.paths)?;
            let cfg = HostConfig::load(cx.paths)?;
            let me = identity(&cfg, cx.host_nl)?;
            let mut v = view(cx.paths, name)?;
            let r = realize(cx.paths, cx.host_nl, st.as_ref(), &mut v, &me, false, false)?;
            log::phase("overlay");
            fail_point("allocate")?;
            let leases = bridge::lease_addresses(cx, &r.local)?;
            (r, leases)
        };
        log::phase("lease");
        bridge::attach(cx, at, &realized.local, realized.bridge_index, &leases).map(Some)
    }

    fn teardown(
        &self,
        cx: &mut HostCx<'_>,
        _rec: &ContainerRecord,
        iface: Option<&InterfaceRecord>,
    ) {
        if let Some(iface) = iface {
            bridge::detach(cx, iface);
        }
    }

    fn check(
        &self,
        cx: &HostCx<'_>,
        rec: &ContainerRecord,
        iface: Option<&InterfaceRecord>,
    ) -> Vec<String> {
        let Some(iface) = iface else {
            return Vec::new();
        };
        let mut out = bridge::check_attached(cx, rec, iface);
        let vx = overlay::vxlan_name(&iface.network);
        match cx.host_nl.link(&vx) {
            Ok(Some(_)) => {}
            Ok(None) => out.push(format!("VXLAN device {vx} is missing")),
            Err(e) => out.push(format!("cannot look up {vx}: {e}")),
        }
        out
    }
}
