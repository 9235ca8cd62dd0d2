//! The annotation contract (v1): what a container asks for.
//!
//! | key | value |
//! |---|---|
//! | `io.wirehook.network` | `host`, `none`, `container:<id or name>`, or a comma list of network names |
//! | `io.wirehook.ip` | static address(es), comma list, v4 and/or v6 |
//! | `io.wirehook.mac` | static unicast MAC (`02:42:ac:11:00:02`, `-` also accepted) |
//! | `io.wirehook.ports` | published ports, see [`crate::ports`] |
//! | `io.wirehook.mtu` | MTU of the container interface, 68..=65535 |
//! | `io.wirehook.ifname` | name of the (first) container interface |
//! | `io.wirehook.name` | a name for `container:<name>` and the TUI |
//! | `io.wirehook.aliases` | more DNS names of the container, comma list |
//!
//! Inline network definitions (`driver`, `subnet`, `gateway`, `ip-range`,
//! `parent`, `mode`, `vni`, `internal`, `ipv6`) are only syntax-checked here
//! and handed over in [`Request::inline`]; whether the operator's policy
//! allows them is decided elsewhere.
//!
//! Without `io.wirehook.network` nothing is validated: the hook may be
//! installed for every container and must not break those that never opted
//! in. With it, every `io.wirehook.*` key is checked and an unknown one is an
//! error. Every error is an [`Error::Invalid`] with one line that names the
//! annotation, quotes the bad value and says what to write instead.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use ipnetwork::IpNetwork;

use crate::error::{Error, Result};
use crate::ports::{parse_ports, quote, PortMapping};

pub const PREFIX: &str = "io.wirehook.";
pub const NETWORK_KEY: &str = "io.wirehook.network";
pub const IP_KEY: &str = "io.wirehook.ip";
pub const MAC_KEY: &str = "io.wirehook.mac";
pub const PORTS_KEY: &str = crate::ports::PORTS_KEY;
pub const MTU_KEY: &str = "io.wirehook.mtu";
pub const IFNAME_KEY: &str = "io.wirehook.ifname";
pub const NAME_KEY: &str = "io.wirehook.name";
pub const ALIASES_KEY: &str = "io.wirehook.aliases";

/// Short names (after [`PREFIX`]) of the per-container keys.
pub const CONTAINER_KEYS: [&str; 8] = [
    "network", "ip", "mac", "ports", "mtu", "ifname", "name", "aliases",
];

/// Short names (after [`PREFIX`]) of the inline network-definition keys.
pub const INLINE_KEYS: [&str; 9] = [
    "driver", "subnet", "gateway", "ip-range", "parent", "mode", "vni", "internal", "ipv6",
];

/// Drivers an inline definition may name.
pub const DRIVERS: [&str; 4] = ["bridge", "macvlan", "ipvlan", "overlay"];

pub const MIN_MTU: u32 = 68;
pub const MAX_MTU: u32 = 65535;
pub const MAX_VNI: u32 = 16_777_215;
/// Longest network name (it is also a file name).
pub const MAX_NETWORK_NAME: usize = 64;
/// Longest `io.wirehook.name`, and longest container id or name accepted in
/// `container:<id or name>`.
pub const MAX_CONTAINER_NAME: usize = 128;
/// Longest Linux interface name (IFNAMSIZ - 1).
pub const MAX_IFNAME: usize = 15;
/// Most aliases one container may carry.
pub const MAX_ALIASES: usize = 32;
/// Longest DNS name (alias), and longest label in it.
pub const MAX_DNS_NAME: usize = 253;
pub const MAX_DNS_LABEL: usize = 63;

/// Annotations in which runtimes and orchestrators record a container's
/// name, tried in this order after `io.wirehook.name`. CRI-O sets
/// `io.kubernetes.cri-o.ContainerName` (unique: `k8s_<ctr>_<pod>_<ns>_<uid>_<n>`)
/// and `io.kubernetes.container.name`; containerd's CRI sets
/// `io.kubernetes.cri.container-name`. Podman 4 sets no name annotation
/// (checked with podman 4.3.1), so its containers fall back to the id.
pub const RUNTIME_NAME_KEYS: [&str; 3] = [
    "io.kubernetes.cri-o.ContainerName",
    "io.kubernetes.cri.container-name",
    "io.kubernetes.container.name",
];

/// What `io.wirehook.network` asks for.
#[derive(Clone, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "lowercase")]
pub enum NetworkRequest {
    /// Share the host's network namespace.
    Host,
    /// Own namespace, loopback only.
    #[default]
    None,
    /// Share the namespace of another container (id or name).
    Container(String),
    /// Join these networks, in order (eth0, eth1, ...). `bridge` is just
    /// `Networks(vec!["bridge"])`.
    Networks(Vec<String>),
}

impl fmt::Display for NetworkRequest {
    /// The annotation value that asks for this (parses back to the same).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetworkRequest::Host => f.write_str("host"),
            NetworkRequest::None => f.write_str("none"),
            NetworkRequest::Container(c) => write!(f, "container:{c}"),
            NetworkRequest::Networks(n) => f.write_str(&n.join(",")),
        }
    }
}

/// Everything a container asks for, validated for syntax.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Request {
    pub network: NetworkRequest,
    /// `io.wirehook.ip`: static addresses, no duplicates, in the given order.
    pub ips: Vec<IpAddr>,
    /// `io.wirehook.mac`: unicast, not all-zero.
    pub mac: Option<[u8; 6]>,
    pub ports: Vec<PortMapping>,
    /// `io.wirehook.mtu`: 68..=65535.
    pub mtu: Option<u32>,
    /// `io.wirehook.ifname`: a valid Linux interface name other than `lo`.
    pub ifname: Option<String>,
    /// `io.wirehook.name`.
    pub name: Option<String>,
    /// `io.wirehook.aliases`: valid DNS names, no repeats (compared
    /// without case), in the given order.
    pub aliases: Vec<String>,
    /// Inline-definition keys present: short key (no prefix) -> value,
    /// trimmed and normalized: `subnet`, `ip-range` (CIDRs without host
    /// bits) and `gateway` (addresses) are comma lists in canonical form
    /// joined with `,` (e.g. `10.89.0.0/24,fd00:89::/64`), `internal`/`ipv6`
    /// are `true` or `false`, `vni` has no leading zeros.
    pub inline: BTreeMap<String, String>,
}

/// Parse and validate a container's annotations.
///
/// `Ok(None)` when there is no `io.wirehook.network` key: the hook must then
/// do nothing, and nothing else is validated.
pub fn parse(annotations: &BTreeMap<String, String>) -> Result<Option<Request>> {
    let Some(network_value) = annotations.get(NETWORK_KEY) else {
        return Ok(None);
    };
    for key in annotations.keys() {
        if let Some(short) = key.strip_prefix(PREFIX) {
            if !CONTAINER_KEYS.contains(&short) && !INLINE_KEYS.contains(&short) {
                return Err(unknown_key(key, short));
            }
        }
    }

    let network = parse_network(network_value)?;
    let get = |short: &str| annotations.get(&format!("{PREFIX}{short}"));

    if !matches!(network, NetworkRequest::Networks(_)) {
        for short in ["ip", "mac", "ports", "mtu", "ifname", "aliases"]
            .into_iter()
            .chain(INLINE_KEYS)
        {
            if get(short).is_some() {
                return Err(mode_conflict(short, &network));
            }
        }
    }

    let mut request = Request {
        network,
        ..Request::default()
    };
    if let Some(v) = get("ip") {
        request.ips = parse_ips(v)?;
    }
    if let Some(v) = get("mac") {
        let v = non_empty("mac", v)?;
        request.mac = Some(mac_bytes(v).map_err(|b| b.error(&key_subject(MAC_KEY, v)))?);
    }
    if let Some(v) = get("ports") {
        request.ports = parse_ports(v)?;
    }
    if let Some(v) = get("mtu") {
        request.mtu = Some(parse_mtu(v)?);
    }
    if let Some(v) = get("ifname") {
        let v = non_empty("ifname", v)?;
        ifname_check(v).map_err(|b| b.error(&key_subject(IFNAME_KEY, v)))?;
        if v == "lo" {
            return Err(Error::Invalid(format!(
                "{IFNAME_KEY}: \"lo\" is the container's loopback interface — choose another name such as eth0"
            )));
        }
        request.ifname = Some(v.to_string());
    }
    if let Some(v) = get("name") {
        let v = non_empty("name", v)?;
        name_check(v, MAX_CONTAINER_NAME).map_err(|b| b.error(&key_subject(NAME_KEY, v)))?;
        request.name = Some(v.to_string());
    }
    if let Some(v) = get("aliases") {
        request.aliases = parse_aliases(non_empty("aliases", v)?)?;
    }
    for short in INLINE_KEYS {
        if let Some(v) = get(short) {
            request
                .inline
                .insert(short.to_string(), parse_inline(short, v)?);
        }
    }
    Ok(Some(request))
}

/// The name to show, and to find a container by: `io.wirehook.name`, else
/// the name a runtime recorded ([`RUNTIME_NAME_KEYS`]), else the id. Values
/// that could not be used in `container:<name>` are skipped.
pub fn container_name(annotations: &BTreeMap<String, String>, id: &str) -> String {
    if let Some(v) = annotations.get(NAME_KEY) {
        let v = v.trim();
        if name_check(v, MAX_CONTAINER_NAME).is_ok() {
            return v.to_string();
        }
    }
    for key in RUNTIME_NAME_KEYS {
        if let Some(v) = annotations.get(key) {
            let v = v.trim();
            if container_ref_check(v).is_ok() {
                return v.to_string();
            }
        }
    }
    id.to_string()
}

/// `io.wirehook.aliases=db,mysql`: each a DNS name (`[A-Za-z0-9]` first,
/// then letters, digits, `_`, `-`, and `.` between labels of at most 63
/// bytes), at most [`MAX_ALIASES`]; repeats are dropped.
pub fn parse_aliases(value: &str) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for a in value.split(',').map(str::trim) {
        let subject = key_subject(ALIASES_KEY, value);
        if a.is_empty() {
            return Err(Bad::new(
                "has an empty alias",
                "write a comma list of names such as db,mysql",
            )
            .error(&subject));
        }
        alias_check(a).map_err(|b| {
            Error::Invalid(format!(
                "{subject}: alias {} {} — {}",
                quote(a),
                b.problem,
                b.fix
            ))
        })?;
        if !out.iter().any(|o| o.eq_ignore_ascii_case(a)) {
            out.push(a.to_string());
        }
    }
    if out.len() > MAX_ALIASES {
        return Err(Bad::new(
            format!("lists {} aliases", out.len()),
            format!("give at most {MAX_ALIASES}"),
        )
        .error(&key_subject(ALIASES_KEY, value)));
    }
    Ok(out)
}

fn alias_check(a: &str) -> std::result::Result<(), Bad> {
    name_check(a, MAX_DNS_NAME)?;
    let fix = "use labels of 1 to 63 letters, digits, '_' or '-', separated by single dots";
    if a.split('.').any(str::is_empty) {
        return Err(Bad::new("has an empty label", fix));
    }
    if let Some(l) = a.split('.').find(|l| l.len() > MAX_DNS_LABEL) {
        return Err(Bad::new(format!("has a {}-byte label", l.len()), fix));
    }
    Ok(())
}

/// One alias given some other way than the annotation (`wirehook network
/// connect --alias`): the same rules, the error naming `what`.
pub fn validate_alias(what: &str, a: &str) -> Result<()> {
    alias_check(a).map_err(|b| b.error(&format!("{what} {}", quote(a))))
}

/// A valid network name (also used as a file name):
/// `[A-Za-z0-9][A-Za-z0-9_.-]*`, 1 to 64 bytes.
pub fn validate_network_name(name: &str) -> Result<()> {
    name_check(name, MAX_NETWORK_NAME)
        .map_err(|b| b.error(&format!("invalid network name {}:", quote(name))))
}

/// A valid Linux interface name: 1 to 15 bytes of printable ASCII without
/// `/`, `:`, `%` (the kernel would treat it as a name template) or
/// whitespace, and not `.` or `..`.
pub fn validate_ifname(name: &str) -> Result<()> {
    ifname_check(name).map_err(|b| b.error(&format!("invalid interface name {}:", quote(name))))
}

/// Parse a MAC address: six hex pairs separated by `:` or `-`, any letter
/// case. It must be unicast (lowest bit of the first octet clear) and not
/// all zeros.
pub fn parse_mac(s: &str) -> Result<[u8; 6]> {
    mac_bytes(s).map_err(|b| b.error(&format!("invalid MAC address {}:", quote(s))))
}

/// `aa:bb:cc:dd:ee:ff`, lowercase.
pub fn format_mac(mac: &[u8; 6]) -> String {
    let [a, b, c, d, e, f] = mac;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}

// ---------------------------------------------------------------------------
// Messages

/// What is wrong with a value and what to write instead; the caller adds the
/// subject (the annotation and the quoted value).
struct Bad {
    problem: String,
    fix: String,
}

impl Bad {
    fn new(problem: impl Into<String>, fix: impl Into<String>) -> Self {
        Bad {
            problem: problem.into(),
            fix: fix.into(),
        }
    }

    fn error(self, subject: &str) -> Error {
        Error::Invalid(format!("{subject} {} — {}", self.problem, self.fix))
    }
}

/// `io.wirehook.mac: "zz"`
fn key_subject(key: &str, value: &str) -> String {
    format!("{key}: {}", quote(value))
}

/// How to fill in a key, for "is empty" messages.
fn example(short: &str) -> &'static str {
    match short {
        "network" => "a network name, host, none or container:<id or name>",
        "ip" => "an address such as 10.88.0.10 or fd00::10",
        "mac" => "an address such as 02:42:ac:11:00:02",
        "ports" => "a mapping such as 8080:80",
        "mtu" => "a number between 68 and 65535",
        "ifname" | "parent" => "an interface name such as eth0",
        "name" => "a name such as web-1",
        "aliases" => "names such as db,mysql",
        "driver" => "bridge, macvlan, ipvlan or overlay",
        "subnet" => "a CIDR such as 10.89.0.0/24 (or one per family: 10.89.0.0/24,fd00:89::/64)",
        "ip-range" => "a CIDR such as 10.89.0.128/25",
        "gateway" => "an address such as 10.89.0.1",
        "mode" => "a mode such as bridge (macvlan) or l2 (ipvlan)",
        "vni" => "a number between 1 and 16777215",
        "internal" | "ipv6" => "true or false",
        _ => "a value",
    }
}

/// The trimmed value, or an "is empty" error.
fn non_empty<'a>(short: &str, value: &'a str) -> Result<&'a str> {
    let v = value.trim();
    if v.is_empty() {
        return Err(Error::Invalid(format!(
            "{PREFIX}{short} is empty — give {} or remove the annotation",
            example(short)
        )));
    }
    Ok(v)
}

/// Keys people write for the ones that exist.
const ALIASES: [(&str, &str); 17] = [
    ("net", "network"),
    ("nets", "network"),
    ("netns", "network"),
    ("ips", "ip"),
    ("ipv4", "ip"),
    ("ip4", "ip"),
    ("ip6", "ip"),
    ("addr", "ip"),
    ("address", "ip"),
    ("mac-address", "mac"),
    ("macaddress", "mac"),
    ("macaddr", "mac"),
    ("publish", "ports"),
    ("interface", "ifname"),
    ("iface", "ifname"),
    ("vxlan-id", "vni"),
    ("iprange", "ip-range"),
];

/// The known short key `short` was most likely meant to be.
fn suggest(short: &str) -> Option<&'static str> {
    let lower = short.to_ascii_lowercase().replace('_', "-");
    let known = CONTAINER_KEYS.iter().chain(INLINE_KEYS.iter());
    if let Some(k) = known.clone().find(|k| **k == lower) {
        return Some(k);
    }
    if let Some((_, k)) = ALIASES.iter().find(|(alias, _)| *alias == lower) {
        return Some(k);
    }
    known
        .map(|k| (strsim::damerau_levenshtein(&lower, k), *k))
        .filter(|(d, k)| {
            let allowed = match k.len() {
                0..=3 => 1,
                4..=6 => 2,
                _ => 3,
            };
            *d <= allowed
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn unknown_key(key: &str, short: &str) -> Error {
    let shown: String = key
        .chars()
        .take(80)
        .collect::<String>()
        .escape_debug()
        .to_string();
    let shown = if key.chars().count() > 80 {
        format!("{shown}…")
    } else {
        shown
    };
    match suggest(short) {
        Some(k) => Error::Invalid(format!(
            "unknown annotation {shown} — did you mean {PREFIX}{k}?"
        )),
        None => {
            let list = |keys: &[&str]| {
                keys.iter()
                    .map(|k| format!("{PREFIX}{k}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            Error::Invalid(format!(
                "unknown annotation {shown} — remove it or use a known key: {}; inline network definitions (where the policy allows them): {}",
                list(&CONTAINER_KEYS),
                list(&INLINE_KEYS)
            ))
        }
    }
}

/// `io.wirehook.ports cannot be used with io.wirehook.network=host: ...`
fn mode_conflict(short: &str, network: &NetworkRequest) -> Error {
    let key = format!("{PREFIX}{short}");
    let why = if INLINE_KEYS.contains(&short) {
        "inline network definitions apply only when io.wirehook.network names a network".to_string()
    } else {
        match (network, short) {
            (NetworkRequest::Host, "ports") => {
                "the container uses the host's ports directly".to_string()
            }
            (NetworkRequest::Host, "ip") => "the container has the host's addresses".to_string(),
            (NetworkRequest::Host, _) => "the container uses the host's interfaces".to_string(),
            (NetworkRequest::None, "ports") => {
                "the container has only a loopback interface, nothing to publish ports to"
                    .to_string()
            }
            (NetworkRequest::None, _) => {
                "the container gets only a loopback interface".to_string()
            }
            (NetworkRequest::Container(c), "ports") => {
                format!("the container shares the network namespace of {c}, whose ports are its own")
            }
            (NetworkRequest::Container(c), _) => format!(
                "the container shares the network namespace of {c}, whose interfaces are set up already"
            ),
            (NetworkRequest::Networks(_), _) => String::new(),
        }
    };
    let fix = match (network, short) {
        (NetworkRequest::Container(c), "ports") => {
            format!("publish the ports on {c} instead, or remove {key}")
        }
        _ => format!("remove {key}, or set {NETWORK_KEY} to a network name"),
    };
    Error::Invalid(format!(
        "{key} cannot be used with {NETWORK_KEY}={network}: {why} — {fix}"
    ))
}

// ---------------------------------------------------------------------------
// Checks

/// `[A-Za-z0-9][A-Za-z0-9_.-]*`, at most `max` bytes.
fn name_check(s: &str, max: usize) -> std::result::Result<(), Bad> {
    let fix =
        format!("use 1 to {max} letters, digits, '_', '.' or '-', starting with a letter or digit");
    if s.is_empty() {
        return Err(Bad::new("is empty", fix));
    }
    if s.len() > max {
        return Err(Bad::new(format!("is {} bytes long", s.len()), fix));
    }
    let first = s.chars().next().unwrap_or(' ');
    if !first.is_ascii_alphanumeric() {
        return Err(Bad::new(format!("starts with {first:?}"), fix));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(Bad::new(format!("contains {c:?}"), fix));
    }
    Ok(())
}

/// A container id or name as accepted in `container:<id or name>`: the OCI
/// id charset `[A-Za-z0-9_.-]`, 1 to 128 bytes, not `.` or `..`.
fn container_ref_check(s: &str) -> std::result::Result<(), Bad> {
    let fix = format!(
        "write container:<id or name> with up to {MAX_CONTAINER_NAME} letters, digits, '_', '.' or '-'"
    );
    if s.is_empty() {
        return Err(Bad::new("names no container", fix));
    }
    if s.len() > MAX_CONTAINER_NAME {
        return Err(Bad::new(
            format!("names a container with a {}-byte id", s.len()),
            fix,
        ));
    }
    if s == "." || s == ".." {
        return Err(Bad::new(format!("names the container {s:?}"), fix));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(Bad::new(
            format!("names a container with {c:?} in its id or name"),
            fix,
        ));
    }
    Ok(())
}

fn ifname_check(s: &str) -> std::result::Result<(), Bad> {
    let fix = "use 1 to 15 of the characters A-Z a-z 0-9 _ . -, e.g. eth0";
    if s.is_empty() {
        return Err(Bad::new("is empty", fix));
    }
    if s.len() > MAX_IFNAME {
        return Err(Bad::new(
            format!("is {} bytes long (at most {MAX_IFNAME})", s.len()),
            fix,
        ));
    }
    if s == "." || s == ".." {
        return Err(Bad::new("is reserved", fix));
    }
    // Stricter than the kernel (which takes most printable characters):
    // nothing that means something to a shell, a path, nft or `ip`.
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(Bad::new(format!("contains {c:?}"), fix));
    }
    Ok(())
}

fn mac_bytes(s: &str) -> std::result::Result<[u8; 6], Bad> {
    const FIX: &str = "write six hex pairs such as 02:42:ac:11:00:02";
    const UNICAST_FIX: &str =
        "use a unicast address such as 02:42:ac:11:00:02 (an even first octet; 02 marks it locally administered)";
    let shape = || Bad::new("is not six hex pairs separated by ':' or '-'", FIX);
    let bytes = s.as_bytes();
    if bytes.len() != 17 {
        return Err(shape());
    }
    let sep = bytes[2];
    if sep != b':' && sep != b'-' {
        return Err(shape());
    }
    let mut mac = [0u8; 6];
    for (i, octet) in mac.iter_mut().enumerate() {
        let pair = &bytes[i * 3..i * 3 + 2];
        if i < 5 && bytes[i * 3 + 2] != sep {
            return Err(shape());
        }
        if !pair.iter().all(u8::is_ascii_hexdigit) {
            return Err(shape());
        }
        // Both bytes are ASCII hex digits, so this is valid UTF-8 and hex.
        let text = std::str::from_utf8(pair).map_err(|_| shape())?;
        *octet = u8::from_str_radix(text, 16).map_err(|_| shape())?;
    }
    if mac[0] & 1 == 1 {
        return Err(Bad::new(
            "is a multicast address (lowest bit of the first octet set)",
            UNICAST_FIX,
        ));
    }
    if mac == [0; 6] {
        return Err(Bad::new("is all zeros", UNICAST_FIX));
    }
    Ok(mac)
}

// ---------------------------------------------------------------------------
// Values

fn parse_network(value: &str) -> Result<NetworkRequest> {
    let v = non_empty("network", value)?;
    let subject = key_subject(NETWORK_KEY, v);
    let standalone =
        |item: &str| item == "host" || item == "none" || item.starts_with("container:");
    if v.contains(',') {
        let items: Vec<&str> = v.split(',').map(str::trim).collect();
        if items.iter().any(|i| i.is_empty()) {
            return Err(Error::Invalid(format!(
                "{subject} has an empty entry — remove the extra comma"
            )));
        }
        if let Some(item) = items.iter().find(|i| standalone(i)) {
            let mode = if item.starts_with("container:") {
                "container:<id or name>"
            } else {
                item
            };
            return Err(Error::Invalid(format!(
                "{subject} combines {mode} with other networks — host, none and container:<id or name> stand alone; list only network names to join several networks"
            )));
        }
        let mut seen = BTreeSet::new();
        for item in &items {
            name_check(item, MAX_NETWORK_NAME).map_err(|b| {
                Bad::new(
                    format!(
                        "has the invalid network name {} that {}",
                        quote(item),
                        b.problem
                    ),
                    b.fix,
                )
                .error(&subject)
            })?;
            if !seen.insert(*item) {
                return Err(Error::Invalid(format!(
                    "{subject} lists the network {} twice — list each network once",
                    quote(item)
                )));
            }
        }
        return Ok(NetworkRequest::Networks(
            items.into_iter().map(String::from).collect(),
        ));
    }
    match v {
        "host" => Ok(NetworkRequest::Host),
        "none" => Ok(NetworkRequest::None),
        _ => {
            if let Some(target) = v.strip_prefix("container:") {
                let target = target.trim();
                container_ref_check(target).map_err(|b| b.error(&subject))?;
                return Ok(NetworkRequest::Container(target.to_string()));
            }
            name_check(v, MAX_NETWORK_NAME).map_err(|b| {
                Bad::new(
                    format!("is not a valid network name: it {}", b.problem),
                    format!("{}; or write host, none or container:<id or name>", b.fix),
                )
                .error(&subject)
            })?;
            Ok(NetworkRequest::Networks(vec![v.to_string()]))
        }
    }
}

fn parse_ips(value: &str) -> Result<Vec<IpAddr>> {
    let v = non_empty("ip", value)?;
    let mut ips: Vec<IpAddr> = Vec::new();
    for item in v.split(',').map(str::trim) {
        if item.is_empty() {
            return Err(Error::Invalid(format!(
                "{} has an empty entry — remove the extra comma",
                key_subject(IP_KEY, v)
            )));
        }
        let subject = key_subject(IP_KEY, item);
        let ip: IpAddr = match item.parse() {
            Ok(ip) => ip,
            Err(_) => {
                if let Some((addr, _)) = item.split_once('/') {
                    if let Ok(addr) = addr.parse::<IpAddr>() {
                        return Err(Error::Invalid(format!(
                            "{subject} has a prefix length — write the address alone ({addr}); the prefix comes from the network's subnet"
                        )));
                    }
                }
                return Err(Error::Invalid(format!(
                    "{subject} is not an IP address — write addresses such as 10.88.0.10 or fd00::10, separated by commas"
                )));
            }
        };
        let kind = match ip {
            _ if ip.is_unspecified() => Some("the unspecified address"),
            _ if ip.is_loopback() => Some("a loopback address"),
            _ if ip.is_multicast() => Some("a multicast address"),
            IpAddr::V4(v4) if v4.is_broadcast() => Some("the broadcast address"),
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => Some("an IPv4-mapped address"),
            _ => None,
        };
        if let Some(kind) = kind {
            return Err(Error::Invalid(format!(
                "{subject} is {kind} — give a unicast address from the network's subnet"
            )));
        }
        if ips.contains(&ip) {
            return Err(Error::Invalid(format!(
                "{} lists {ip} twice — give each address once",
                key_subject(IP_KEY, v)
            )));
        }
        ips.push(ip);
    }
    Ok(ips)
}

/// A decimal number without sign, as u32 (None when out of u32 range).
fn decimal(s: &str) -> std::result::Result<Option<u32>, ()> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(());
    }
    Ok(s.parse::<u32>().ok())
}

fn parse_mtu(value: &str) -> Result<u32> {
    let v = non_empty("mtu", value)?;
    let subject = key_subject(MTU_KEY, v);
    match decimal(v) {
        Err(()) => Err(Error::Invalid(format!(
            "{subject} is not a number — give a number between {MIN_MTU} and {MAX_MTU}"
        ))),
        Ok(Some(n)) if (MIN_MTU..=MAX_MTU).contains(&n) => Ok(n),
        Ok(_) => Err(Error::Invalid(format!(
            "{subject} is out of range — give a number between {MIN_MTU} and {MAX_MTU}"
        ))),
    }
}

/// One CIDR of `io.wirehook.subnet` / `io.wirehook.ip-range`, in canonical
/// form.
fn parse_cidr(short: &str, v: &str) -> Result<String> {
    let subject = key_subject(&format!("{PREFIX}{short}"), v);
    let eg = if short == "subnet" {
        "a CIDR such as 10.89.0.0/24 or fd00:89::/64"
    } else {
        "a CIDR such as 10.89.0.128/25 or fd00:89::/80"
    };
    let net: IpNetwork = v
        .parse()
        .map_err(|_| Error::Invalid(format!("{subject} is not a CIDR — write {eg}")))?;
    if !v.contains('/') {
        return Err(Error::Invalid(format!(
            "{subject} has no prefix length — write {eg}"
        )));
    }
    if net.ip() != net.network() {
        return Err(Error::Invalid(format!(
            "{subject} has host bits set — write {}/{}",
            net.network(),
            net.prefix()
        )));
    }
    Ok(format!("{}/{}", net.network(), net.prefix()))
}

/// One address of `io.wirehook.gateway`, in canonical form.
fn parse_gateway(v: &str) -> Result<String> {
    match v.parse::<IpAddr>() {
        Ok(ip) => Ok(ip.to_string()),
        Err(_) => Err(Error::Invalid(format!(
            "{} is not an IP address — write {}",
            key_subject(&format!("{PREFIX}gateway"), v),
            if v.contains('/') {
                "the address alone, without a prefix length, e.g. 10.89.0.1"
            } else {
                "an address such as 10.89.0.1"
            }
        ))),
    }
}

/// A comma list (one entry per address family, for dual stack) of `one`,
/// normalized and joined with `,`.
fn parse_list(short: &str, v: &str, one: impl Fn(&str) -> Result<String>) -> Result<String> {
    let subject = key_subject(&format!("{PREFIX}{short}"), v);
    let mut out: Vec<String> = Vec::new();
    for item in v.split(',').map(str::trim) {
        if item.is_empty() {
            return Err(Error::Invalid(format!(
                "{subject} has an empty entry — remove the extra comma"
            )));
        }
        let canonical = one(item)?;
        if out.contains(&canonical) {
            return Err(Error::Invalid(format!(
                "{subject} lists {canonical} twice — give each once"
            )));
        }
        out.push(canonical);
    }
    Ok(out.join(","))
}

fn parse_inline(short: &str, value: &str) -> Result<String> {
    let v = non_empty(short, value)?;
    let key = format!("{PREFIX}{short}");
    let subject = key_subject(&key, v);
    match short {
        "driver" => {
            if DRIVERS.contains(&v) {
                Ok(v.to_string())
            } else {
                Err(Error::Invalid(format!(
                    "{subject} is not a driver — write bridge, macvlan, ipvlan or overlay"
                )))
            }
        }
        "subnet" | "ip-range" => parse_list(short, v, |item| parse_cidr(short, item)),
        "gateway" => parse_list(short, v, parse_gateway),
        "vni" => match decimal(v) {
            Ok(Some(n @ 1..=MAX_VNI)) => Ok(n.to_string()),
            Ok(_) => Err(Error::Invalid(format!(
                "{subject} is out of range — give a number between 1 and {MAX_VNI}"
            ))),
            Err(()) => Err(Error::Invalid(format!(
                "{subject} is not a number — give a number between 1 and {MAX_VNI}"
            ))),
        },
        "internal" | "ipv6" => {
            if v.eq_ignore_ascii_case("true") {
                Ok("true".into())
            } else if v.eq_ignore_ascii_case("false") {
                Ok("false".into())
            } else {
                Err(Error::Invalid(format!(
                    "{subject} is not a boolean — write true or false"
                )))
            }
        }
        "parent" => {
            ifname_check(v).map_err(|b| b.error(&subject))?;
            Ok(v.to_string())
        }
        // "mode"
        _ => {
            let fix = "write a mode such as bridge, private, vepa, passthru (macvlan) or l2, l3, l3s (ipvlan)";
            if v.len() > 32 {
                return Err(Error::Invalid(format!(
                    "{subject} is {} bytes long — {fix}",
                    v.len()
                )));
            }
            if let Some(c) = v.chars().find(|c| c.is_whitespace() || c.is_control()) {
                return Err(Error::Invalid(format!("{subject} contains {c:?} — {fix}")));
            }
            Ok(v.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn ok(pairs: &[(&str, &str)]) -> Request {
        parse(&map(pairs)).unwrap().expect("a request")
    }

    /// The error message, checked for the common shape: one line, names
    /// `key`, and says what to do.
    fn err(pairs: &[(&str, &str)], key: &str) -> String {
        match parse(&map(pairs)) {
            Err(Error::Invalid(msg)) => {
                assert!(!msg.contains('\n'), "not one line: {msg}");
                assert!(msg.contains(key), "does not name {key}: {msg}");
                assert!(msg.contains(" — "), "no fix: {msg}");
                msg
            }
            other => panic!("{pairs:?}: expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn no_network_key_means_nothing_to_do() {
        assert_eq!(parse(&map(&[])).unwrap(), None);
        // Nothing else is checked, not even unknown or broken keys.
        assert_eq!(
            parse(&map(&[
                ("io.wirehook.subent", "x"),
                (MTU_KEY, "nope"),
                ("org.example", "y")
            ]))
            .unwrap(),
            None
        );
    }

    #[test]
    fn network_values() {
        assert_eq!(ok(&[(NETWORK_KEY, "host")]).network, NetworkRequest::Host);
        assert_eq!(ok(&[(NETWORK_KEY, " none ")]).network, NetworkRequest::None);
        assert_eq!(
            ok(&[(NETWORK_KEY, "container:web-1")]).network,
            NetworkRequest::Container("web-1".into())
        );
        assert_eq!(
            ok(&[(NETWORK_KEY, "container: abc123 ")]).network,
            NetworkRequest::Container("abc123".into())
        );
        assert_eq!(
            ok(&[(NETWORK_KEY, "bridge")]).network,
            NetworkRequest::Networks(vec!["bridge".into()])
        );
        assert_eq!(
            ok(&[(NETWORK_KEY, "front , back,db_1.x-y")]).network,
            NetworkRequest::Networks(vec!["front".into(), "back".into(), "db_1.x-y".into()])
        );
        // Names that only look like modes are names.
        assert_eq!(
            ok(&[(NETWORK_KEY, "Host")]).network,
            NetworkRequest::Networks(vec!["Host".into()])
        );
        let long = "n".repeat(64);
        assert_eq!(
            ok(&[(NETWORK_KEY, &long)]).network,
            NetworkRequest::Networks(vec![long.clone()])
        );
        // Annotations outside the prefix are ignored.
        let r = ok(&[
            (NETWORK_KEY, "none"),
            ("io.wirehookx", "1"),
            ("io.podman.x", "2"),
        ]);
        assert_eq!(r, Request::default());
    }

    #[test]
    fn network_errors() {
        let e = err(&[(NETWORK_KEY, "")], NETWORK_KEY);
        assert!(
            e.contains("is empty") && e.contains("remove the annotation"),
            "{e}"
        );
        let e = err(&[(NETWORK_KEY, "  ")], NETWORK_KEY);
        assert!(e.contains("is empty"), "{e}");
        let e = err(&[(NETWORK_KEY, "a,,b")], NETWORK_KEY);
        assert!(
            e.contains("\"a,,b\" has an empty entry") && e.contains("extra comma"),
            "{e}"
        );
        let e = err(&[(NETWORK_KEY, "a,")], NETWORK_KEY);
        assert!(e.contains("empty entry"), "{e}");
        let e = err(&[(NETWORK_KEY, "host,br0")], NETWORK_KEY);
        assert!(
            e.contains("combines host with other networks") && e.contains("stand alone"),
            "{e}"
        );
        let e = err(&[(NETWORK_KEY, "br0, none")], NETWORK_KEY);
        assert!(e.contains("combines none"), "{e}");
        let e = err(&[(NETWORK_KEY, "container:x,br0")], NETWORK_KEY);
        assert!(e.contains("combines container:<id or name>"), "{e}");
        let e = err(&[(NETWORK_KEY, "a,b,a")], NETWORK_KEY);
        assert!(
            e.contains("lists the network \"a\" twice") && e.contains("once"),
            "{e}"
        );
        let e = err(&[(NETWORK_KEY, "a,b/c")], NETWORK_KEY);
        assert!(
            e.contains("invalid network name \"b/c\" that contains '/'"),
            "{e}"
        );
        assert!(e.contains("letters, digits"), "{e}");
        let e = err(&[(NETWORK_KEY, "../etc")], NETWORK_KEY);
        assert!(
            e.contains("is not a valid network name: it starts with '.'"),
            "{e}"
        );
        assert!(e.contains("host, none or container:<id or name>"), "{e}");
        let e = err(&[(NETWORK_KEY, &"n".repeat(65))], NETWORK_KEY);
        assert!(
            e.contains("is 65 bytes long") && e.contains("1 to 64"),
            "{e}"
        );
        let e = err(&[(NETWORK_KEY, "my net")], NETWORK_KEY);
        assert!(e.contains("contains ' '"), "{e}");
        let e = err(&[(NETWORK_KEY, "container:")], NETWORK_KEY);
        assert!(
            e.contains("names no container") && e.contains("container:<id or name>"),
            "{e}"
        );
        let e = err(&[(NETWORK_KEY, "container:a/b")], NETWORK_KEY);
        assert!(e.contains("with '/' in its id or name"), "{e}");
        let e = err(&[(NETWORK_KEY, "container:..")], NETWORK_KEY);
        assert!(e.contains("names the container \"..\""), "{e}");
        let e = err(
            &[(NETWORK_KEY, &format!("container:{}", "a".repeat(129)))],
            NETWORK_KEY,
        );
        assert!(e.contains("129-byte id") && e.contains("up to 128"), "{e}");
        let e = err(&[(NETWORK_KEY, "a\nb")], NETWORK_KEY);
        assert!(e.contains("\\n"), "{e}");
    }

    #[test]
    fn unknown_keys() {
        let e = err(
            &[
                (NETWORK_KEY, "bridge"),
                ("io.wirehook.subent", "10.0.0.0/24"),
            ],
            "io.wirehook.subent",
        );
        assert_eq!(
            e,
            "unknown annotation io.wirehook.subent — did you mean io.wirehook.subnet?"
        );
        for (typo, meant) in [
            ("networks", "network"),
            ("Network", "network"),
            ("port", "ports"),
            ("ip_range", "ip-range"),
            ("iprange", "ip-range"),
            ("ipv4", "ip"),
            ("macaddr", "mac"),
            ("if-name", "ifname"),
            ("interface", "ifname"),
            ("nme", "name"),
            ("vnii", "vni"),
            ("drivr", "driver"),
            ("gatway", "gateway"),
        ] {
            let key = format!("{PREFIX}{typo}");
            let e = err(&[(NETWORK_KEY, "bridge"), (&key, "x")], &key);
            assert!(
                e.ends_with(&format!("did you mean {PREFIX}{meant}?")),
                "{typo}: {e}"
            );
        }
        let e = err(
            &[(NETWORK_KEY, "bridge"), ("io.wirehook.frobnicate", "1")],
            "io.wirehook.frobnicate",
        );
        assert!(
            e.contains("known key: io.wirehook.network, io.wirehook.ip"),
            "{e}"
        );
        assert!(e.contains("io.wirehook.ipv6"), "{e}");
        let e = err(
            &[(NETWORK_KEY, "bridge"), ("io.wirehook.", "1")],
            "io.wirehook.",
        );
        assert!(e.contains("known key"), "{e}");
        let e = err(
            &[(NETWORK_KEY, "bridge"), ("io.wirehook.a\nb", "1")],
            "io.wirehook.a\\nb",
        );
        assert!(!e.contains('\n'), "{e}");
        // Unknown keys are reported even in host mode.
        err(
            &[(NETWORK_KEY, "host"), ("io.wirehook.bogus", "1")],
            "io.wirehook.bogus",
        );
    }

    #[test]
    fn mode_conflicts() {
        let e = err(&[(NETWORK_KEY, "host"), (PORTS_KEY, "80:80")], PORTS_KEY);
        assert_eq!(
            e,
            "io.wirehook.ports cannot be used with io.wirehook.network=host: the container uses the host's ports directly — remove io.wirehook.ports, or set io.wirehook.network to a network name"
        );
        for mode in ["host", "none", "container:web"] {
            for short in [
                "ip", "mac", "ports", "mtu", "ifname", "subnet", "driver", "ipv6",
            ] {
                let key = format!("{PREFIX}{short}");
                // Even an empty value is refused for the mode, not for being empty.
                let e = err(&[(NETWORK_KEY, mode), (&key, "")], &key);
                assert!(
                    e.starts_with(&format!("{key} cannot be used with {NETWORK_KEY}={mode}: ")),
                    "{e}"
                );
                assert!(e.contains(&format!("remove {key}")), "{e}");
            }
        }
        let e = err(&[(NETWORK_KEY, "none"), (IP_KEY, "10.0.0.2")], IP_KEY);
        assert!(e.contains("only a loopback interface"), "{e}");
        let e = err(
            &[(NETWORK_KEY, "container:web"), (PORTS_KEY, "80:80")],
            PORTS_KEY,
        );
        assert!(e.contains("publish the ports on web instead"), "{e}");
        let e = err(
            &[(NETWORK_KEY, "host"), ("io.wirehook.subnet", "10.0.0.0/24")],
            "io.wirehook.subnet",
        );
        assert!(e.contains("inline network definitions apply only"), "{e}");
        // A name is fine in every mode.
        assert_eq!(
            ok(&[(NETWORK_KEY, "host"), (NAME_KEY, "web")])
                .name
                .as_deref(),
            Some("web")
        );
    }

    #[test]
    fn aliases() {
        let r = ok(&[
            (NETWORK_KEY, "b"),
            (ALIASES_KEY, " db, mysql ,DB,db.local "),
        ]);
        assert_eq!(r.aliases, vec!["db", "mysql", "db.local"]);
        for (bad, why) in [
            ("db,,x", "empty alias"),
            ("a b", "contains ' '"),
            ("-db", "starts with '-'"),
            ("a..b", "empty label"),
        ] {
            let e = err(&[(NETWORK_KEY, "b"), (ALIASES_KEY, bad)], ALIASES_KEY);
            assert!(e.contains(why), "{bad}: {e}");
            assert!(!e.contains('\n'));
        }
        let long = format!("{}.x", "a".repeat(64));
        let e = err(&[(NETWORK_KEY, "b"), (ALIASES_KEY, &long)], ALIASES_KEY);
        assert!(e.contains("64-byte label"), "{e}");
        let many = (0..33)
            .map(|i| format!("a{i}"))
            .collect::<Vec<_>>()
            .join(",");
        let e = err(&[(NETWORK_KEY, "b"), (ALIASES_KEY, &many)], ALIASES_KEY);
        assert!(e.contains("33 aliases"), "{e}");
        let e = err(&[(NETWORK_KEY, "host"), (ALIASES_KEY, "db")], ALIASES_KEY);
        assert!(
            e.contains("cannot be used with io.wirehook.network=host"),
            "{e}"
        );
    }

    #[test]
    fn full_request() {
        let r = ok(&[
            (NETWORK_KEY, "front,back"),
            (IP_KEY, "10.88.0.10, fd00::10"),
            (MAC_KEY, "02:42:AC:11:00:02"),
            (PORTS_KEY, "8080:80,127.0.0.1:5353:53/udp"),
            (MTU_KEY, " 1400 "),
            (IFNAME_KEY, "net0"),
            (NAME_KEY, "web-1"),
            ("io.wirehook.driver", "bridge"),
            ("io.wirehook.subnet", "10.89.0.0/24"),
            ("io.wirehook.gateway", "10.89.0.1"),
            ("io.wirehook.ip-range", "10.89.0.128/25"),
            ("io.wirehook.parent", "eth0.100"),
            ("io.wirehook.mode", "l2"),
            ("io.wirehook.vni", "042"),
            ("io.wirehook.internal", "TRUE"),
            ("io.wirehook.ipv6", "false"),
            ("io.kubernetes.cri-o.ContainerName", "k8s_x"),
        ]);
        assert_eq!(
            r.network,
            NetworkRequest::Networks(vec!["front".into(), "back".into()])
        );
        assert_eq!(
            r.ips,
            vec![
                "10.88.0.10".parse::<IpAddr>().unwrap(),
                "fd00::10".parse().unwrap()
            ]
        );
        assert_eq!(r.mac, Some([0x02, 0x42, 0xac, 0x11, 0x00, 0x02]));
        assert_eq!(r.ports.len(), 2);
        assert_eq!(r.mtu, Some(1400));
        assert_eq!(r.ifname.as_deref(), Some("net0"));
        assert_eq!(r.name.as_deref(), Some("web-1"));
        let inline: Vec<(&str, &str)> = r
            .inline
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            inline,
            vec![
                ("driver", "bridge"),
                ("gateway", "10.89.0.1"),
                ("internal", "true"),
                ("ip-range", "10.89.0.128/25"),
                ("ipv6", "false"),
                ("mode", "l2"),
                ("parent", "eth0.100"),
                ("subnet", "10.89.0.0/24"),
                ("vni", "42"),
            ]
        );
    }

    #[test]
    fn empty_values() {
        for short in CONTAINER_KEYS.iter().chain(INLINE_KEYS.iter()) {
            let key = format!("{PREFIX}{short}");
            let network = if *short == "network" { "" } else { "bridge" };
            let e = err(&[(NETWORK_KEY, network), (&key, " ")], &key);
            assert!(e.starts_with(&format!("{key} is empty — give ")), "{e}");
            assert!(e.ends_with("or remove the annotation"), "{e}");
        }
        let e = err(&[(NETWORK_KEY, "bridge"), (MTU_KEY, "")], MTU_KEY);
        assert_eq!(
            e,
            "io.wirehook.mtu is empty — give a number between 68 and 65535 or remove the annotation"
        );
    }

    #[test]
    fn ip_values_and_errors() {
        let r = ok(&[(NETWORK_KEY, "b"), (IP_KEY, "10.0.0.2")]);
        assert_eq!(r.ips, vec!["10.0.0.2".parse::<IpAddr>().unwrap()]);
        let b = |v: &str| err(&[(NETWORK_KEY, "b"), (IP_KEY, v)], IP_KEY);
        let e = b("10.0.0.300");
        assert!(
            e.contains("\"10.0.0.300\" is not an IP address") && e.contains("10.88.0.10"),
            "{e}"
        );
        let e = b("10.0.0.5/24");
        assert!(
            e.contains("has a prefix length") && e.contains("(10.0.0.5)"),
            "{e}"
        );
        let e = b("10.0.0.5,,10.0.0.6");
        assert!(e.contains("empty entry"), "{e}");
        let e = b("10.0.0.5, 10.0.0.5");
        assert!(
            e.contains("lists 10.0.0.5 twice") && e.contains("once"),
            "{e}"
        );
        let e = b("fd00::1,FD00::1");
        assert!(e.contains("lists fd00::1 twice"), "{e}");
        for (v, kind) in [
            ("0.0.0.0", "unspecified"),
            ("::", "unspecified"),
            ("127.0.0.2", "loopback"),
            ("::1", "loopback"),
            ("224.0.0.1", "multicast"),
            ("ff02::1", "multicast"),
            ("255.255.255.255", "broadcast"),
            ("::ffff:10.0.0.1", "IPv4-mapped"),
        ] {
            let e = b(v);
            assert!(
                e.contains(kind) && e.contains("unicast address from the network's subnet"),
                "{e}"
            );
        }
    }

    #[test]
    fn mac_values_and_errors() {
        assert_eq!(
            parse_mac("02-42-ac-11-00-02").unwrap(),
            [2, 0x42, 0xac, 0x11, 0, 2]
        );
        assert_eq!(
            parse_mac("0A:bB:cc:dd:ee:ff").unwrap(),
            [10, 0xbb, 0xcc, 0xdd, 0xee, 0xff]
        );
        assert_eq!(
            format_mac(&[10, 0xbb, 0xcc, 0xdd, 0xee, 0xff]),
            "0a:bb:cc:dd:ee:ff"
        );
        for bad in [
            "02:42:ac:11:00",
            "02:42:ac:11:00:02:03",
            "02:42-ac:11:00:02",
            "02.42.ac.11.00.02",
            "0g:42:ac:11:00:02",
            "2:42:ac:11:00:002",
            "+2:42:ac:11:00:02",
            "é2:42:ac:11:00:0",
        ] {
            let e = parse_mac(bad).unwrap_err().to_string();
            assert!(e.starts_with("invalid MAC address \""), "{e}");
            assert!(
                e.contains("six hex pairs") && e.contains("02:42:ac:11:00:02"),
                "{e}"
            );
        }
        let e = parse_mac("01:00:5e:00:00:01").unwrap_err().to_string();
        assert!(
            e.contains("multicast") && e.contains("even first octet"),
            "{e}"
        );
        let e = parse_mac("ff:ff:ff:ff:ff:ff").unwrap_err().to_string();
        assert!(e.contains("multicast"), "{e}");
        let e = parse_mac("00:00:00:00:00:00").unwrap_err().to_string();
        assert!(e.contains("all zeros") && e.contains("unicast"), "{e}");
        let e = err(&[(NETWORK_KEY, "b"), (MAC_KEY, "zz")], MAC_KEY);
        assert!(
            e.starts_with("io.wirehook.mac: \"zz\" is not six hex pairs"),
            "{e}"
        );
        let e = err(
            &[(NETWORK_KEY, "b"), (MAC_KEY, "03:00:00:00:00:01")],
            MAC_KEY,
        );
        assert!(e.contains("multicast"), "{e}");
    }

    #[test]
    fn mtu_values_and_errors() {
        assert_eq!(ok(&[(NETWORK_KEY, "b"), (MTU_KEY, "68")]).mtu, Some(68));
        assert_eq!(
            ok(&[(NETWORK_KEY, "b"), (MTU_KEY, "65535")]).mtu,
            Some(65535)
        );
        for v in ["67", "65536", "0", "99999999999"] {
            let e = err(&[(NETWORK_KEY, "b"), (MTU_KEY, v)], MTU_KEY);
            assert!(
                e.contains("is out of range — give a number between 68 and 65535"),
                "{e}"
            );
        }
        for v in ["15OO", "-1", "+1500", "1500.0", "1 500"] {
            let e = err(&[(NETWORK_KEY, "b"), (MTU_KEY, v)], MTU_KEY);
            assert!(
                e.contains("is not a number — give a number between 68 and 65535"),
                "{e}"
            );
        }
    }

    #[test]
    fn ifname_values_and_errors() {
        assert!(validate_ifname("eth0").is_ok());
        assert!(validate_ifname("eth0.100").is_ok());
        assert!(validate_ifname("a-very-long-nam").is_ok());
        for (bad, why) in [
            ("", "is empty"),
            ("a-very-long-name", "is 16 bytes long (at most 15)"),
            (".", "is reserved"),
            ("..", "is reserved"),
            ("a/b", "contains '/'"),
            ("a:b", "contains ':'"),
            ("eth%d", "contains '%'"),
            ("a b", "contains ' '"),
            ("a\tb", "contains '\\t'"),
            ("a\0b", "contains '\\0'"),
            ("é", "contains 'é'"),
        ] {
            let e = validate_ifname(bad).unwrap_err().to_string();
            assert!(e.starts_with("invalid interface name "), "{e}");
            assert!(e.contains(why), "{bad:?}: {e}");
            assert!(e.contains("e.g. eth0"), "{e}");
        }
        assert_eq!(
            ok(&[(NETWORK_KEY, "b"), (IFNAME_KEY, " eth1 ")])
                .ifname
                .as_deref(),
            Some("eth1")
        );
        let e = err(&[(NETWORK_KEY, "b"), (IFNAME_KEY, "a/b")], IFNAME_KEY);
        assert!(
            e.starts_with("io.wirehook.ifname: \"a/b\" contains '/'"),
            "{e}"
        );
        let e = err(&[(NETWORK_KEY, "b"), (IFNAME_KEY, "lo")], IFNAME_KEY);
        assert!(e.contains("loopback") && e.contains("eth0"), "{e}");
    }

    #[test]
    fn name_values_and_errors() {
        assert!(validate_network_name("bridge").is_ok());
        assert!(validate_network_name("a").is_ok());
        for (bad, why) in [
            ("", "is empty"),
            ("-x", "starts with '-'"),
            ("_x", "starts with '_'"),
            (".x", "starts with '.'"),
            ("a/b", "contains '/'"),
            ("a b", "contains ' '"),
        ] {
            let e = validate_network_name(bad).unwrap_err().to_string();
            assert!(e.starts_with("invalid network name "), "{e}");
            assert!(e.contains(why) && e.contains("1 to 64 letters"), "{e}");
        }
        let e = validate_network_name(&"x".repeat(65))
            .unwrap_err()
            .to_string();
        assert!(e.contains("65 bytes long"), "{e}");
        assert_eq!(
            ok(&[(NETWORK_KEY, "b"), (NAME_KEY, &"w".repeat(128))]).name,
            Some("w".repeat(128))
        );
        let e = err(
            &[(NETWORK_KEY, "b"), (NAME_KEY, &"w".repeat(129))],
            NAME_KEY,
        );
        assert!(
            e.contains("129 bytes long") && e.contains("1 to 128"),
            "{e}"
        );
        let e = err(&[(NETWORK_KEY, "b"), (NAME_KEY, "web 1")], NAME_KEY);
        assert!(
            e.starts_with("io.wirehook.name: \"web 1\" contains ' '"),
            "{e}"
        );
    }

    #[test]
    fn inline_errors() {
        let b = |short: &str, v: &str| {
            let key = format!("{PREFIX}{short}");
            err(&[(NETWORK_KEY, "n"), (&key, v)], &key)
        };
        let e = b("driver", "brige");
        assert!(
            e.contains("\"brige\" is not a driver — write bridge, macvlan, ipvlan or overlay"),
            "{e}"
        );
        let e = b("driver", "Bridge");
        assert!(e.contains("is not a driver"), "{e}");
        let e = b("subnet", "10.0.0.0");
        assert!(
            e.contains("has no prefix length — write a CIDR such as 10.89.0.0/24"),
            "{e}"
        );
        let e = b("subnet", "10.0.0.0/33");
        assert!(e.contains("is not a CIDR"), "{e}");
        let e = b("subnet", "nope");
        assert!(e.contains("is not a CIDR"), "{e}");
        let e = b("subnet", "10.0.0.1/24");
        assert!(e.contains("has host bits set — write 10.0.0.0/24"), "{e}");
        let e = b("ip-range", "fd00::1/64");
        assert!(e.contains("host bits set — write fd00::/64"), "{e}");
        let e = b("gateway", "10.0.0.1/24");
        assert!(
            e.contains("is not an IP address") && e.contains("without a prefix length"),
            "{e}"
        );
        let e = b("gateway", "gw");
        assert!(
            e.contains("is not an IP address — write an address such as 10.89.0.1"),
            "{e}"
        );
        for v in ["0", "16777216", "99999999999"] {
            let e = b("vni", v);
            assert!(
                e.contains("is out of range — give a number between 1 and 16777215"),
                "{e}"
            );
        }
        let e = b("vni", "0x10");
        assert!(e.contains("is not a number"), "{e}");
        for short in ["internal", "ipv6"] {
            let e = b(short, "yes");
            assert!(e.contains("is not a boolean — write true or false"), "{e}");
        }
        let e = b("parent", "eth 0");
        assert!(e.contains("contains ' '"), "{e}");
        let e = b("parent", "averyveryverylongname");
        assert!(e.contains("at most 15"), "{e}");
        let e = b("mode", "l 2");
        assert!(
            e.contains("contains ' '") && e.contains("l2, l3, l3s"),
            "{e}"
        );
        let e = b("mode", &"m".repeat(33));
        assert!(e.contains("33 bytes long"), "{e}");
        let e = b("subnet", "10.0.0.0/24,,fd00::/64");
        assert!(
            e.contains("has an empty entry — remove the extra comma"),
            "{e}"
        );
        let e = b("subnet", "10.0.0.0/24, 10.0.0.0/24");
        assert!(e.contains("lists 10.0.0.0/24 twice"), "{e}");
        let e = b("subnet", "10.0.0.0/24,fd00::1/64");
        assert!(
            e.contains("\"fd00::1/64\" has host bits set — write fd00::/64"),
            "{e}"
        );
        let e = b("gateway", "10.0.0.1,10.0.0.1");
        assert!(e.contains("lists 10.0.0.1 twice"), "{e}");
        let e = b("gateway", "10.0.0.1,x");
        assert!(
            e.contains("io.wirehook.gateway: \"x\" is not an IP address"),
            "{e}"
        );
        let r = ok(&[
            (NETWORK_KEY, "n"),
            ("io.wirehook.subnet", "10.89.0.0/24 , FD00:89::/64"),
            ("io.wirehook.gateway", "10.89.0.1,fd00:89::1"),
            ("io.wirehook.ip-range", "10.89.0.128/25"),
        ]);
        assert_eq!(r.inline["subnet"], "10.89.0.0/24,fd00:89::/64");
        assert_eq!(r.inline["gateway"], "10.89.0.1,fd00:89::1");
        assert_eq!(r.inline["ip-range"], "10.89.0.128/25");
        // Normalization.
        let r = ok(&[
            (NETWORK_KEY, "n"),
            ("io.wirehook.subnet", "FD00:0::/64"),
            ("io.wirehook.gateway", "FD00::1"),
        ]);
        assert_eq!(r.inline["subnet"], "fd00::/64");
        assert_eq!(r.inline["gateway"], "fd00::1");
    }

    #[test]
    fn names_of_containers() {
        let id = "0123abc";
        assert_eq!(container_name(&map(&[]), id), id);
        assert_eq!(
            container_name(
                &map(&[
                    (NAME_KEY, "web"),
                    ("io.kubernetes.cri-o.ContainerName", "k8s_web_pod_ns_uid_0")
                ]),
                id
            ),
            "web"
        );
        assert_eq!(
            container_name(
                &map(&[
                    ("io.kubernetes.container.name", "web"),
                    ("io.kubernetes.cri-o.ContainerName", "k8s_web_pod_ns_uid_0")
                ]),
                id
            ),
            "k8s_web_pod_ns_uid_0"
        );
        assert_eq!(
            container_name(&map(&[("io.kubernetes.cri.container-name", "db")]), id),
            "db"
        );
        assert_eq!(
            container_name(&map(&[("io.kubernetes.container.name", "POD")]), id),
            "POD"
        );
        // Unusable values fall through.
        assert_eq!(
            container_name(
                &map(&[(NAME_KEY, "-bad"), ("io.kubernetes.container.name", "a/b")]),
                id
            ),
            id
        );
        // Podman 4 sets no name annotation.
        assert_eq!(
            container_name(&map(&[("io.container.manager", "libpod")]), id),
            id
        );
    }

    #[test]
    fn network_request_serde_and_display() {
        for r in [
            NetworkRequest::Host,
            NetworkRequest::None,
            NetworkRequest::Container("web".into()),
            NetworkRequest::Networks(vec!["a".into(), "b".into()]),
        ] {
            let json = serde_json::to_string(&r).unwrap();
            assert_eq!(serde_json::from_str::<NetworkRequest>(&json).unwrap(), r);
            assert_eq!(parse_network(&r.to_string()).unwrap(), r);
        }
        assert_eq!(
            serde_json::to_string(&NetworkRequest::Container("x".into())).unwrap(),
            r#"{"kind":"container","value":"x"}"#
        );
        assert_eq!(
            serde_json::to_string(&NetworkRequest::Host).unwrap(),
            r#"{"kind":"host"}"#
        );
        assert_eq!(NetworkRequest::default(), NetworkRequest::None);
    }

    fn arb_key() -> impl Strategy<Value = String> {
        let known: Vec<String> = CONTAINER_KEYS
            .iter()
            .chain(INLINE_KEYS.iter())
            .map(|k| format!("{PREFIX}{k}"))
            .collect();
        prop_oneof![
            4 => proptest::sample::select(known),
            1 => any::<String>().prop_map(|s| format!("{PREFIX}{s}")),
            1 => any::<String>(),
        ]
    }

    fn arb_value() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[a-z0-9:,./\\- \\[\\]]{0,30}",
            Just("host".to_string()),
            Just("none".to_string()),
            Just("bridge".to_string()),
        ]
    }

    proptest! {
        #[test]
        fn parse_never_panics(
            network in arb_value(),
            rest in proptest::collection::btree_map(arb_key(), arb_value(), 0..6),
        ) {
            let mut annotations = rest;
            annotations.insert(NETWORK_KEY.to_string(), network);
            match parse(&annotations) {
                Ok(Some(r)) => {
                    // What was accepted is consistent with the rules.
                    if let Some(mtu) = r.mtu {
                        prop_assert!((MIN_MTU..=MAX_MTU).contains(&mtu));
                    }
                    if let Some(mac) = r.mac {
                        prop_assert_eq!(parse_mac(&format_mac(&mac)).unwrap(), mac);
                    }
                    prop_assert_eq!(parse_network(&r.network.to_string()).unwrap(), r.network);
                }
                Ok(None) => prop_assert!(false, "network key present but no request"),
                Err(Error::Invalid(msg)) => prop_assert!(!msg.contains('\n'), "{}", msg),
                Err(e) => prop_assert!(false, "unexpected error kind {:?}", e),
            }
            let _ = container_name(&annotations, "id");
        }

        #[test]
        fn mac_roundtrip(mut mac in any::<[u8; 6]>(), upper in any::<bool>(), dash in any::<bool>()) {
            mac[0] &= 0xfe;
            prop_assume!(mac != [0; 6]);
            prop_assert_eq!(parse_mac(&format_mac(&mac)).unwrap(), mac);
            let mut text = format_mac(&mac);
            if upper { text = text.to_uppercase(); }
            if dash { text = text.replace(':', "-"); }
            prop_assert_eq!(parse_mac(&text).unwrap(), mac);
        }

        #[test]
        fn network_lists_roundtrip(names in proptest::collection::btree_set("[A-Za-z0-9][A-Za-z0-9_.-]{0,20}", 1..5)) {
            let names: Vec<String> = names.into_iter().filter(|n| n != "host" && n != "none").collect();
            prop_assume!(!names.is_empty());
            let r = NetworkRequest::Networks(names);
            prop_assert_eq!(parse_network(&r.to_string()).unwrap(), r);
        }
    }
}
