//! WireGuard for encrypted overlay networks: this host's key pair and the
//! kernel's WireGuard devices, spoken to over generic netlink.
//!
//! The private key is made on this host ([`KeyPair::load_or_create`]:
//! `/etc/wirehook/wireguard.key`, mode 0600, 32 random bytes from the
//! kernel, X25519 as WireGuard uses it) and never leaves it: only the
//! public key goes into the host's claim in the cluster store, so anyone
//! who reads the store learns nothing that decrypts traffic.
//!
//! The devices are made with rtnetlink (`Netlink::ensure_wireguard`) and
//! keyed and given peers with WireGuard's generic netlink family
//! ([`Genl`]: `WG_CMD_SET_DEVICE` / `WG_CMD_GET_DEVICE`, the requests
//! `wg(8)` sends). That family is a handful of attributes, so it is
//! written here on a plain netlink socket rather than pulling in a second
//! netlink stack.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;

use base64::Engine as _;

use crate::error::{Error, Result};
use crate::nlraw::{self, RawSocket};
use crate::paths::Paths;

/// What WireGuard adds to every packet over an IPv4 underlay: outer IPv4
/// (20), UDP (8), WireGuard header (16) and tag (16).
pub const WG_OVERHEAD: u32 = 60;

/// Seconds between keepalives to each peer: keeps the peers' sessions and
/// NAT/conntrack state warm, so the first packet after a quiet spell does
/// not wait for a handshake.
pub const KEEPALIVE: u16 = 25;

/// WireGuard's Reject-After-Time (seconds): a session whose last
/// handshake is older than this carries no more traffic, so a peer whose
/// handshake is this old has not been talked to successfully for a while.
pub const REJECT_AFTER: u64 = 180;

/// A peer's handshake as `wirehook ps` and wiretop word it: `handshake 12
/// s ago`, or `no handshake yet` (`last`: seconds since the epoch of the
/// last handshake, 0 for none; `now`: the time it is measured at).
pub fn handshake_text(last: u64, now: u64) -> String {
    if last == 0 {
        "no handshake yet".into()
    } else {
        format!("handshake {} s ago", now.saturating_sub(last))
    }
}

/// What `wirehook ps` and wiretop say of a network's host that has
/// published no WireGuard key yet.
pub const NO_KEY_TEXT: &str = "no WireGuard key";
/// ... and of one whose key is not among this host's device's peers.
pub const NOT_A_PEER_TEXT: &str = "not a WireGuard peer";

/// Is a peer's handshake stale: older than [`REJECT_AFTER`], or none at
/// all although this host has sent the peer something (`tx_bytes`).
pub fn handshake_stale(last: u64, now: u64, tx_bytes: u64) -> bool {
    if last == 0 {
        tx_bytes > 0
    } else {
        now.saturating_sub(last) > REJECT_AFTER
    }
}

/// The WireGuard device `name` of this thread's network namespace, as the
/// kernel has it (its index from if_nametoindex(3), then one dump). A
/// missing device is [`Error::NotFound`].
pub fn device_state(name: &str) -> Result<DeviceState> {
    let missing = || {
        Error::NotFound(format!(
            "{name} does not exist on this host (not joined yet)"
        ))
    };
    let c = std::ffi::CString::new(name).map_err(|_| missing())?;
    // SAFETY: a NUL-terminated name that outlives the call.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        return Err(missing());
    }
    Genl::open()?.device(index)
}

/// The error for a kernel without WireGuard.
pub fn missing_module_message() -> String {
    "this kernel has no WireGuard (module wireguard, CONFIG_WIREGUARD): encrypted overlay networks need it; load it with `modprobe wireguard` (Linux 5.6 or later) or create the network without --encrypted".into()
}

/// Can this kernel carry encrypted overlay networks? Tried in a
/// throwaway network namespace (a WireGuard device made and its netlink
/// family found there), so nothing is left behind either way.
pub fn kernel_check() -> Result<()> {
    std::thread::spawn(|| -> Result<()> {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| Error::sys("make a network namespace to look for WireGuard in", e))?;
        let nl = crate::netlink::Netlink::new()?;
        nl.ensure_wireguard("whwgprobe", 1420)?;
        Genl::open()?;
        Ok(())
    })
    .join()
    .unwrap_or_else(|_| Err(Error::invalid("the WireGuard probe failed")))
}

/// File of this host's private key.
pub fn key_file(paths: &Paths) -> PathBuf {
    paths.config_dir.join("wireguard.key")
}

/// A WireGuard (X25519) key pair.
#[derive(Clone)]
pub struct KeyPair {
    private: [u8; 32],
    public: [u8; 32],
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyPair {{ public: {} }}", self.public_b64())
    }
}

impl Drop for KeyPair {
    fn drop(&mut self) {
        // Best effort: do not leave the key in freed memory.
        for b in self.private.iter_mut() {
            // SAFETY: a valid, aligned byte of our own array.
            unsafe { std::ptr::write_volatile(b, 0) };
        }
    }
}

impl KeyPair {
    /// A key pair from a private key (clamped as X25519 wants).
    pub fn from_private(private: [u8; 32]) -> KeyPair {
        let secret = x25519_dalek::StaticSecret::from(private);
        let public = x25519_dalek::PublicKey::from(&secret).to_bytes();
        KeyPair {
            private: secret.to_bytes(),
            public,
        }
    }

    /// A new key pair from the kernel's random numbers.
    pub fn generate() -> Result<KeyPair> {
        let mut b = [0u8; 32];
        let mut got = 0;
        while got < b.len() {
            // SAFETY: getrandom into the unfilled rest of a local buffer.
            let n = unsafe { libc::getrandom(b[got..].as_mut_ptr().cast(), b.len() - got, 0) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(Error::sys("getrandom for a WireGuard key", e));
            }
            got += n as usize;
        }
        Ok(KeyPair::from_private(b))
    }

    pub fn private(&self) -> &[u8; 32] {
        &self.private
    }

    pub fn public(&self) -> &[u8; 32] {
        &self.public
    }

    /// The public key as WireGuard writes it (base64).
    pub fn public_b64(&self) -> String {
        encode_key(&self.public)
    }

    /// This host's key pair, made (mode 0600) on first need.
    pub fn load_or_create(paths: &Paths) -> Result<KeyPair> {
        match Self::load(paths)? {
            Some(k) => Ok(k),
            None => {
                let k = KeyPair::generate()?;
                k.save(paths, false)?;
                // Another process may have won the race: use what is there.
                Ok(Self::load(paths)?.unwrap_or(k))
            }
        }
    }

    /// This host's key pair, if it has one. A key file others may read is
    /// refused: the key would no longer be this host's alone.
    pub fn load(paths: &Paths) -> Result<Option<KeyPair>> {
        let path = key_file(paths);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("read", &path, e)),
        };
        let mode = std::fs::metadata(&path)
            .map_err(|e| Error::io("stat", &path, e))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(Error::invalid(format!(
                "{} is readable by others (mode {:o}): `chmod 600` it, or remove it and rotate the key (`wirehook overlay rotate-key`)",
                path.display(),
                mode & 0o777
            )));
        }
        let private = decode_key(text.trim()).ok_or_else(|| {
            Error::invalid(format!(
                "{} does not hold a WireGuard private key (base64 of 32 bytes): remove it, a new one is made",
                path.display()
            ))
        })?;
        Ok(Some(KeyPair::from_private(private)))
    }

    /// Write the private key, mode 0600. `replace`: overwrite an existing
    /// key (rotation); else an existing one stays.
    pub fn save(&self, paths: &Paths, replace: bool) -> Result<()> {
        let path = key_file(paths);
        crate::fsutil::ensure_dir(&paths.config_dir)?;
        let tmp = paths
            .config_dir
            .join(format!(".wireguard.key.{}.tmp", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        let res = (|| -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(format!("{}\n", encode_key(&self.private)).as_bytes())?;
            f.sync_all()?;
            if replace {
                std::fs::rename(&tmp, &path)
            } else {
                // Fails if the file exists: the first key made stays.
                let r = std::fs::hard_link(&tmp, &path);
                let _ = std::fs::remove_file(&tmp);
                match r {
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
                    other => other,
                }
            }
        })();
        if let Err(e) = res {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::io("write", &path, e));
        }
        Ok(())
    }
}

/// A key as WireGuard writes it.
pub fn encode_key(k: &[u8; 32]) -> String {
    base64::engine::general_purpose::STANDARD.encode(k)
}

/// A key from its base64 form; `None` if it is not one.
pub fn decode_key(s: &str) -> Option<[u8; 32]> {
    let v = base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .ok()?;
    v.try_into().ok()
}

/// A peer as this host wants it on a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSpec {
    pub public_key: [u8; 32],
    pub endpoint: SocketAddrV4,
    /// The peer's tunnel address: the only source accepted from it and
    /// the only destination sent to it.
    pub allowed: Ipv4Addr,
}

/// A peer as the kernel has it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerState {
    pub public_key: [u8; 32],
    pub endpoint: Option<SocketAddrV4>,
    pub allowed: Vec<(Ipv4Addr, u8)>,
    /// Seconds since the epoch of the last handshake; 0: none yet.
    pub last_handshake: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// A device as the kernel has it.
#[derive(Debug, Clone, Default)]
pub struct DeviceState {
    pub listen_port: u16,
    pub public_key: Option<[u8; 32]>,
    pub peers: Vec<PeerState>,
}

// include/uapi/linux/genetlink.h, netlink.h, wireguard.h
const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_DUMP: u16 = 0x300;
const NLA_F_NESTED: u16 = 0x8000;
const NLA_TYPE_MASK: u16 = 0x3fff;
const WG_CMD_GET_DEVICE: u8 = 0;
const WG_CMD_SET_DEVICE: u8 = 1;
const WGDEVICE_A_IFINDEX: u16 = 1;
const WGDEVICE_A_PRIVATE_KEY: u16 = 3;
const WGDEVICE_A_PUBLIC_KEY: u16 = 4;
const WGDEVICE_A_LISTEN_PORT: u16 = 6;
const WGDEVICE_A_PEERS: u16 = 8;
const WGPEER_A_PUBLIC_KEY: u16 = 1;
const WGPEER_A_FLAGS: u16 = 3;
const WGPEER_A_ENDPOINT: u16 = 4;
const WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL: u16 = 5;
const WGPEER_A_LAST_HANDSHAKE_TIME: u16 = 6;
const WGPEER_A_RX_BYTES: u16 = 7;
const WGPEER_A_TX_BYTES: u16 = 8;
const WGPEER_A_ALLOWEDIPS: u16 = 9;
const WGPEER_F_REMOVE_ME: u32 = 1;
const WGPEER_F_REPLACE_ALLOWEDIPS: u32 = 2;
const WGALLOWEDIP_A_FAMILY: u16 = 1;
const WGALLOWEDIP_A_IPADDR: u16 = 2;
const WGALLOWEDIP_A_CIDR_MASK: u16 = 3;

/// Netlink attributes being written.
#[derive(Default)]
struct Attrs(Vec<u8>);

impl Attrs {
    fn put(&mut self, ty: u16, data: &[u8]) -> &mut Self {
        let len = 4 + data.len();
        self.0.extend_from_slice(&(len as u16).to_ne_bytes());
        self.0.extend_from_slice(&ty.to_ne_bytes());
        self.0.extend_from_slice(data);
        while self.0.len() & 3 != 0 {
            self.0.push(0);
        }
        self
    }

    fn nested(&mut self, ty: u16, inner: Attrs) -> &mut Self {
        self.put(ty | NLA_F_NESTED, &inner.0)
    }
}

/// Netlink attributes being read: (type without flags, payload).
fn parse_attrs(mut b: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let ty = u16::from_ne_bytes([b[2], b[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > b.len() {
            break;
        }
        out.push((ty, &b[4..len]));
        let next = (len + 3) & !3;
        b = &b[next.min(b.len())..];
    }
    out
}

fn u16_of(b: &[u8]) -> u16 {
    b.get(..2).map_or(0, |x| u16::from_ne_bytes([x[0], x[1]]))
}

fn u64_of(b: &[u8]) -> u64 {
    b.get(..8)
        .map_or(0, |x| u64::from_ne_bytes(x.try_into().expect("8 bytes")))
}

fn key_of(b: &[u8]) -> Option<[u8; 32]> {
    b.try_into().ok()
}

fn sockaddr_in(a: &SocketAddrV4) -> [u8; 16] {
    let mut s = [0u8; 16];
    s[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
    s[2..4].copy_from_slice(&a.port().to_be_bytes());
    s[4..8].copy_from_slice(&a.ip().octets());
    s
}

fn parse_sockaddr(b: &[u8]) -> Option<SocketAddrV4> {
    if b.len() >= 8 && u16_of(b) == libc::AF_INET as u16 {
        let port = u16::from_be_bytes([b[2], b[3]]);
        let ip = Ipv4Addr::new(b[4], b[5], b[6], b[7]);
        return Some(SocketAddrV4::new(ip, port));
    }
    None
}

/// A generic netlink socket bound to the WireGuard family, in the
/// namespace of the thread that opened it.
pub struct Genl {
    sock: RawSocket,
    family: u16,
    seq: std::cell::Cell<u32>,
}

impl Genl {
    /// Open the socket and look the WireGuard family up; a kernel without
    /// it gets [`missing_module_message`].
    pub fn open() -> Result<Genl> {
        let sock = RawSocket::open(libc::NETLINK_GENERIC)
            .map_err(|e| Error::sys("open generic netlink socket", e))?;
        let _ = sock.set_recv_timeout(std::time::Duration::from_secs(5));
        let mut g = Genl {
            sock,
            family: GENL_ID_CTRL,
            seq: std::cell::Cell::new(1),
        };
        let mut a = Attrs::default();
        a.put(CTRL_ATTR_FAMILY_NAME, b"wireguard\0");
        let replies = match g.request(CTRL_CMD_GETFAMILY, 1, 0, &a) {
            Ok(r) => r,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                return Err(Error::NotFound(missing_module_message()))
            }
            Err(e) => return Err(Error::netlink("look up the WireGuard netlink family", e)),
        };
        let id = replies
            .iter()
            .flat_map(|m| parse_attrs(m))
            .find(|(t, _)| *t == CTRL_ATTR_FAMILY_ID)
            .map(|(_, v)| u16_of(v))
            .ok_or_else(|| Error::NotFound(missing_module_message()))?;
        g.family = id;
        Ok(g)
    }

    /// One request; the payloads (after the generic netlink header) of the
    /// replies. `flags`: NLM_F_DUMP for a dump, else an ack is asked.
    fn request(
        &self,
        cmd: u8,
        version: u8,
        flags: u16,
        attrs: &Attrs,
    ) -> std::io::Result<Vec<Vec<u8>>> {
        let seq = self.seq.get();
        self.seq.set(seq.wrapping_add(1));
        let len = 16 + 4 + attrs.0.len();
        let mut msg = Vec::with_capacity(len);
        msg.extend_from_slice(&(len as u32).to_ne_bytes());
        msg.extend_from_slice(&self.family.to_ne_bytes());
        let flags = NLM_F_REQUEST | if flags == 0 { NLM_F_ACK } else { flags };
        msg.extend_from_slice(&flags.to_ne_bytes());
        msg.extend_from_slice(&seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(&[cmd, version, 0, 0]);
        msg.extend_from_slice(&attrs.0);
        self.sock.send(&msg)?;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = self.sock.recv(&mut buf, true)?.unwrap_or(0);
            for m in nlraw::messages(&buf[..n]) {
                let m = m?;
                if m.seq != seq {
                    continue;
                }
                if m.is_done() {
                    return Ok(out);
                }
                match m.errno() {
                    Some(0) => return Ok(out),
                    Some(e) => return Err(std::io::Error::from_raw_os_error(e)),
                    None => out.push(m.body.get(4..).unwrap_or_default().to_vec()),
                }
            }
        }
    }

    /// Key device `ifindex` with `key`, listen on `port`, add or update
    /// the peers of `set` (their sessions stay) and remove those of
    /// `remove`.
    pub fn configure(
        &self,
        ifindex: u32,
        key: &KeyPair,
        port: u16,
        set: &[PeerSpec],
        remove: &[[u8; 32]],
    ) -> Result<()> {
        let mut a = Attrs::default();
        a.put(WGDEVICE_A_IFINDEX, &ifindex.to_ne_bytes());
        a.put(WGDEVICE_A_PRIVATE_KEY, key.private());
        a.put(WGDEVICE_A_LISTEN_PORT, &port.to_ne_bytes());
        let mut peers = Attrs::default();
        for p in set {
            let mut peer = Attrs::default();
            peer.put(WGPEER_A_PUBLIC_KEY, &p.public_key);
            peer.put(WGPEER_A_FLAGS, &WGPEER_F_REPLACE_ALLOWEDIPS.to_ne_bytes());
            peer.put(WGPEER_A_ENDPOINT, &sockaddr_in(&p.endpoint));
            peer.put(
                WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL,
                &KEEPALIVE.to_ne_bytes(),
            );
            let mut ip = Attrs::default();
            ip.put(WGALLOWEDIP_A_FAMILY, &(libc::AF_INET as u16).to_ne_bytes());
            ip.put(WGALLOWEDIP_A_IPADDR, &p.allowed.octets());
            ip.put(WGALLOWEDIP_A_CIDR_MASK, &[32]);
            let mut ips = Attrs::default();
            ips.nested(0, ip);
            peer.nested(WGPEER_A_ALLOWEDIPS, ips);
            peers.nested(0, peer);
        }
        for k in remove {
            let mut peer = Attrs::default();
            peer.put(WGPEER_A_PUBLIC_KEY, k);
            peer.put(WGPEER_A_FLAGS, &WGPEER_F_REMOVE_ME.to_ne_bytes());
            peers.nested(0, peer);
        }
        if !set.is_empty() || !remove.is_empty() {
            a.nested(WGDEVICE_A_PEERS, peers);
        }
        self.request(WG_CMD_SET_DEVICE, 1, 0, &a)
            .map(|_| ())
            .map_err(|e| Error::netlink(format!("configure WireGuard device {ifindex}"), e))
    }

    /// What the kernel has on device `ifindex`.
    pub fn device(&self, ifindex: u32) -> Result<DeviceState> {
        let mut a = Attrs::default();
        a.put(WGDEVICE_A_IFINDEX, &ifindex.to_ne_bytes());
        let replies = self
            .request(WG_CMD_GET_DEVICE, 1, NLM_F_DUMP, &a)
            .map_err(|e| Error::netlink(format!("read WireGuard device {ifindex}"), e))?;
        let mut d = DeviceState::default();
        for m in &replies {
            for (t, v) in parse_attrs(m) {
                match t {
                    WGDEVICE_A_LISTEN_PORT => d.listen_port = u16_of(v),
                    WGDEVICE_A_PUBLIC_KEY => d.public_key = key_of(v),
                    WGDEVICE_A_PEERS => {
                        for (_, p) in parse_attrs(v) {
                            d.peers.push(parse_peer(p));
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(d)
    }
}

fn parse_peer(b: &[u8]) -> PeerState {
    let mut p = PeerState::default();
    for (t, v) in parse_attrs(b) {
        match t {
            WGPEER_A_PUBLIC_KEY => p.public_key = key_of(v).unwrap_or_default(),
            WGPEER_A_ENDPOINT => p.endpoint = parse_sockaddr(v),
            WGPEER_A_LAST_HANDSHAKE_TIME => p.last_handshake = u64_of(v),
            WGPEER_A_RX_BYTES => p.rx_bytes = u64_of(v),
            WGPEER_A_TX_BYTES => p.tx_bytes = u64_of(v),
            WGPEER_A_ALLOWEDIPS => {
                for (_, ip) in parse_attrs(v) {
                    let mut addr = None;
                    let mut mask = 0;
                    for (t, v) in parse_attrs(ip) {
                        match t {
                            WGALLOWEDIP_A_IPADDR if v.len() == 4 => {
                                addr = Some(Ipv4Addr::new(v[0], v[1], v[2], v[3]))
                            }
                            WGALLOWEDIP_A_CIDR_MASK => mask = v.first().copied().unwrap_or(0),
                            _ => {}
                        }
                    }
                    if let Some(a) = addr {
                        p.allowed.push((a, mask));
                    }
                }
            }
            _ => {}
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_wireguards() {
        // RFC 7748 section 6.1: Alice's private and public key.
        let hex = |s: &str| -> [u8; 32] {
            let v: Vec<u8> = (0..32)
                .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
                .collect();
            v.try_into().unwrap()
        };
        let k = KeyPair::from_private(hex(
            "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
        ));
        assert_eq!(
            k.public(),
            &hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
        );
        assert_eq!(decode_key(&k.public_b64()).unwrap(), *k.public());
        assert!(decode_key("short").is_none());
        assert_eq!(handshake_text(0, 100), "no handshake yet");
        assert_eq!(handshake_text(88, 100), "handshake 12 s ago");
        assert!(!handshake_stale(0, 100, 0), "nothing sent, nothing missed");
        assert!(handshake_stale(0, 100, 148), "sent, never answered");
        assert!(!handshake_stale(1000, 1000 + REJECT_AFTER, 1));
        assert!(handshake_stale(1000, 1001 + REJECT_AFTER, 1));
        let a = KeyPair::generate().unwrap();
        let b = KeyPair::generate().unwrap();
        assert_ne!(a.public(), b.public());
        assert!(!format!("{a:?}").contains(&encode_key(a.private())));
    }

    #[test]
    fn key_file_is_made_once_with_mode_0600() {
        let dir = std::env::temp_dir().join(format!("wh-wgkey-{}", std::process::id()));
        let paths = Paths::under(&dir);
        let k1 = KeyPair::load_or_create(&paths).unwrap();
        let meta = std::fs::metadata(key_file(&paths)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let k2 = KeyPair::load_or_create(&paths).unwrap();
        assert_eq!(k1.public(), k2.public(), "the key is kept");
        std::fs::set_permissions(key_file(&paths), std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = KeyPair::load(&paths).unwrap_err().to_string();
        assert!(e.contains("readable by others"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn attributes_round_trip() {
        let mut a = Attrs::default();
        a.put(1, &[1, 2, 3]);
        let mut inner = Attrs::default();
        inner.put(2, &7u16.to_ne_bytes());
        a.nested(9, inner);
        let p = parse_attrs(&a.0);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0], (1, &[1u8, 2, 3][..]));
        assert_eq!(p[1].0, 9);
        assert_eq!(u16_of(parse_attrs(p[1].1)[0].1), 7);
        let sa = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 51820);
        assert_eq!(parse_sockaddr(&sockaddr_in(&sa)), Some(sa));
    }
}
