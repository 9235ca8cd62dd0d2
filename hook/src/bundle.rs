//! The OCI bundle: what `config.json` says about the network namespace,
//! and `wirehook prepare`, which edits `config.json` for runc/crun users.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use serde_json::{json, Value};
use wirehook_shared::annotations::{self, NetworkRequest};
use wirehook_shared::dns::resolvconf;
use wirehook_shared::fsutil;
use wirehook_shared::network::Networks;
use wirehook_shared::paths::Paths;
use wirehook_shared::store::Records;

/// What the bundle asked for as the container's network namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BundleNetns {
    /// No network namespace entry: the container stays in the runtime's (the host's).
    Host,
    /// An entry with a path: an existing namespace is joined.
    Path(PathBuf),
    /// An entry without a path: a fresh namespace.
    New,
    /// config.json could not be read (the hook then relies on inode checks alone).
    Unknown,
}

/// Read the network namespace entry of `BUNDLE/config.json`.
pub fn read_netns(bundle: &Path) -> BundleNetns {
    let Ok(spec) = Spec::load(bundle.join("config.json")) else {
        return BundleNetns::Unknown;
    };
    let Some(linux) = spec.linux() else {
        return BundleNetns::Host;
    };
    let Some(nss) = linux.namespaces() else {
        return BundleNetns::Host;
    };
    match nss.iter().find(|n| n.typ() == LinuxNamespaceType::Network) {
        None => BundleNetns::Host,
        Some(n) => match n.path() {
            Some(p) if !p.as_os_str().is_empty() => BundleNetns::Path(p.clone()),
            _ => BundleNetns::New,
        },
    }
}

/// Is this hook entry one of ours?
fn is_ours(hook: &Value, exe: &Path) -> bool {
    let path = hook.get("path").and_then(Value::as_str).unwrap_or("");
    path == exe.to_string_lossy()
        || (Path::new(path).file_name().is_some_and(|n| n == "wirehook")
            && hook
                .get("args")
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|x| x == "hook")))
}

fn hook_entry(exe: &Path, root: Option<&Path>, stage: &str) -> Value {
    let mut args = vec![json!("wirehook")];
    if let Some(r) = root {
        args.push(json!("--root"));
        args.push(json!(r.to_string_lossy()));
    }
    args.push(json!("hook"));
    args.push(json!(stage));
    json!({
        "path": exe.to_string_lossy(),
        "args": args,
        "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "timeout": 10
    })
}

/// Edit `BUNDLE/config.json` so runc/crun call wirehook and the network
/// namespace entry fits the requested mode. Idempotent; every other field
/// is kept as it was. Returns a one-line summary of what it did.
pub fn prepare(paths: &Paths, bundle: &Path, exe: &Path, root: Option<&Path>) -> Result<String> {
    let file = bundle.join("config.json");
    let text = std::fs::read(&file).with_context(|| format!("read {}", file.display()))?;
    let mut cfg: Value = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not valid JSON", file.display()))?;
    if !cfg.is_object() {
        bail!(
            "{} is not an OCI runtime config (not a JSON object)",
            file.display()
        );
    }
    let ann: std::collections::BTreeMap<String, String> = cfg
        .get("annotations")
        .and_then(|a| serde_json::from_value(a.clone()).ok())
        .unwrap_or_default();
    let request = annotations::parse(&ann)?.ok_or_else(|| {
        anyhow!(
            "{} has no io.wirehook.network annotation: add one to \"annotations\" (for example \"io.wirehook.network\": \"bridge\")",
            file.display()
        )
    })?;

    // Hooks: replace our entries, keep everyone else's.
    let hooks = cfg
        .as_object_mut()
        .expect("checked object")
        .entry("hooks")
        .or_insert_with(|| json!({}));
    if !hooks.is_object() {
        *hooks = json!({});
    }
    for stage in ["createRuntime", "poststop"] {
        let list = hooks
            .as_object_mut()
            .unwrap()
            .entry(stage)
            .or_insert_with(|| json!([]));
        if !list.is_array() {
            *list = json!([]);
        }
        let arr = list.as_array_mut().unwrap();
        arr.retain(|h| !is_ours(h, exe));
        arr.push(hook_entry(exe, root, stage));
    }
    // The old prestart stage would run setup twice; drop ours from it.
    if let Some(pre) = hooks.get_mut("prestart").and_then(Value::as_array_mut) {
        pre.retain(|h| !is_ours(h, exe));
    }

    // The network namespace entry.
    let linux = cfg
        .as_object_mut()
        .unwrap()
        .entry("linux")
        .or_insert_with(|| json!({}));
    let nss = linux
        .as_object_mut()
        .ok_or_else(|| anyhow!("\"linux\" in {} is not an object", file.display()))?
        .entry("namespaces")
        .or_insert_with(|| json!([]));
    let arr = nss
        .as_array_mut()
        .ok_or_else(|| anyhow!("\"linux.namespaces\" in {} is not a list", file.display()))?;
    let pos = arr
        .iter()
        .position(|n| n.get("type").and_then(Value::as_str) == Some("network"));
    let mut names = false;
    let what = match &request.network {
        NetworkRequest::Host => {
            if let Some(i) = pos {
                arr.remove(i);
            }
            "network namespace entry removed (host mode)".to_string()
        }
        NetworkRequest::Container(key) => {
            let owner = Records::new(paths).find(key)?.ok_or_else(|| {
                anyhow!("no container {key} is wired by wirehook (see `wirehook ps`): start it before preparing a container that shares its namespace")
            })?;
            let path = owner.netns_path.clone().ok_or_else(|| {
                anyhow!(
                    "container {key} has no namespace of its own to share (it is in {} mode)",
                    owner.mode
                )
            })?;
            // A sharer uses its owner's resolver sockets.
            names = owner.wants_dns();
            let entry = json!({ "type": "network", "path": path.to_string_lossy() });
            match pos {
                Some(i) => arr[i] = entry,
                None => arr.push(entry),
            }
            format!(
                "network namespace set to {}'s ({})",
                owner.name,
                path.display()
            )
        }
        NetworkRequest::None | NetworkRequest::Networks(_) => {
            if let NetworkRequest::Networks(nets) = &request.network {
                names = nets.iter().any(|n| network_has_names(paths, n));
            }
            match pos {
                Some(i) => {
                    if let Some(o) = arr[i].as_object_mut() {
                        o.remove("path");
                    }
                }
                None => arr.push(json!({ "type": "network" })),
            }
            "fresh network namespace".to_string()
        }
    };
    let resolv = resolv_mount(paths, bundle, &mut cfg, names)?;
    let mut out = serde_json::to_vec_pretty(&cfg)?;
    out.push(b'\n');
    if out != text {
        fsutil::write_durable(&file, &out)?;
    }
    Ok(format!(
        "{}: hooks createRuntime + poststop -> {}; {what}{resolv}",
        file.display(),
        exe.display()
    ))
}

/// The file `prepare` writes into the bundle and bind-mounts on the
/// container's `/etc/resolv.conf`.
pub const RESOLV_FILE: &str = "wirehook.resolv.conf";

/// Does network `name` give names? Unknown here (the built-in network not
/// made yet, an overlay network in the cluster store, an inline one):
/// yes, the default.
fn network_has_names(paths: &Paths, name: &str) -> bool {
    match Networks::new(paths).get(name) {
        Ok(Some(d)) => d.dns,
        _ => true,
    }
}

fn is_resolv_mount(m: &Value) -> bool {
    m.get("destination")
        .and_then(Value::as_str)
        .is_some_and(|d| d.trim_end_matches('/') == "/etc/resolv.conf")
}

fn is_our_resolv_mount(m: &Value) -> bool {
    is_resolv_mount(m)
        && m.get("source")
            .and_then(Value::as_str)
            .is_some_and(|s| Path::new(s).file_name().is_some_and(|n| n == RESOLV_FILE))
}

/// Point the container's `/etc/resolv.conf` at the resolver: write
/// `BUNDLE/wirehook.resolv.conf` (nameserver 127.0.0.11, the host's search
/// list, `options ndots:0`) and add a bind mount of it to config.json.
/// The runtime mounts it before any hook runs, so the file must exist
/// now, and `prepare` does not know the container's id: hence one file
/// per bundle, whose content does not depend on the container. A bundle
/// that mounts its own `/etc/resolv.conf` keeps it (names still resolve
/// for programs that ask 127.0.0.11). Without names (`host`, `none`,
/// networks made with `--dns=false`) our mount is removed again.
fn resolv_mount(paths: &Paths, bundle: &Path, cfg: &mut Value, names: bool) -> Result<String> {
    let obj = cfg.as_object_mut().expect("checked object");
    let mounts = obj.entry("mounts").or_insert_with(|| json!([]));
    if !mounts.is_array() {
        bail!("\"mounts\" in config.json is not a list");
    }
    let arr = mounts.as_array_mut().expect("checked array");
    if !names {
        arr.retain(|m| !is_our_resolv_mount(m));
        return Ok(String::new());
    }
    if arr
        .iter()
        .any(|m| is_resolv_mount(m) && !is_our_resolv_mount(m))
    {
        return Ok("; keeps the bundle's own /etc/resolv.conf mount (container names answer at 127.0.0.11)".into());
    }
    let dir = std::fs::canonicalize(bundle)
        .with_context(|| format!("resolve the bundle path {}", bundle.display()))?;
    let file = dir.join(RESOLV_FILE);
    let host = resolvconf::read(&resolvconf::host_path(paths));
    fsutil::write_atomic(&file, resolvconf::container_file(&host).as_bytes())?;
    let entry = json!({
        "destination": "/etc/resolv.conf",
        "type": "bind",
        "source": file.to_string_lossy(),
        "options": ["rbind", "rprivate"]
    });
    match arr.iter().position(is_our_resolv_mount) {
        Some(i) => arr[i] = entry,
        None => arr.push(entry),
    }
    Ok(format!(
        "; /etc/resolv.conf -> {} (nameserver 127.0.0.11)",
        file.display()
    ))
}
