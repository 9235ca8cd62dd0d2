//! [`Bundle`]: an OCI bundle with a busybox root file system, for end-to-end
//! tests with real runtimes; and [`write_hooks_d`], the podman/CRI-O hook
//! configuration file.
//!
//! The root file system is Debian's static `/bin/busybox` (package
//! busybox-static) plus applet symlinks. `config.json` is what `runc spec`
//! generates, patched: the given args, `terminal: false` (so `runc run -d`
//! needs no console socket), the given annotations, a writable root, and
//! `CAP_NET_RAW` added to every capability set — busybox 1.35's `ping` only
//! uses raw ICMP sockets (it fails with "permission denied (are you root?)"
//! without the capability, even with `net.ipv4.ping_group_range` open).
//! The namespace list keeps runc's fresh network namespace.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use crate::cmd::{self, OutputExt, DEFAULT_TIMEOUT};
use crate::container::{annotations_json, set_netns_entry, NetNsEntry};

/// Where Debian's busybox-static puts the binary.
pub const BUSYBOX: &str = "/bin/busybox";

/// Applets linked into every busybox root file system.
pub const APPLETS: &[&str] = &[
    "sh",
    "sleep",
    "ip",
    "ping",
    "ping6",
    "nc",
    "wget",
    "httpd",
    "cat",
    "echo",
    "ifconfig",
    "route",
    "ls",
    "true",
    "false",
    "id",
    "env",
    "hostname",
    "ps",
    "kill",
    "grep",
    "mkdir",
    "sysctl",
    "udhcpc",
    "arp",
    "netstat",
    "traceroute",
    "printf",
    "test",
    "[",
    "head",
    "tail",
    "wc",
    "date",
    "uname",
    "touch",
    "rm",
    "seq",
    "timeout",
    "nslookup",
];

/// The annotation that opts a container into wirehook; hooks.d files match on it.
pub const NETWORK_ANNOTATION: &str = "io.wirehook.network";

/// An OCI bundle directory (`config.json` + `rootfs/`).
#[derive(Debug, Clone)]
pub struct Bundle {
    dir: PathBuf,
}

impl Bundle {
    /// Creates `dir` with a busybox `rootfs/` and a runc-generated
    /// `config.json` running `args` with `annotations`. See the
    /// [module docs](self) for the patches applied.
    pub fn busybox(dir: &Path, args: &[&str], annotations: &[(&str, &str)]) -> Bundle {
        let rootfs = dir.join("rootfs");
        for d in ["bin", "etc", "tmp", "proc", "sys", "dev", "var/www", "root"] {
            std::fs::create_dir_all(rootfs.join(d))
                .unwrap_or_else(|e| panic!("create {}: {e}", rootfs.join(d).display()));
        }
        if !Path::new(BUSYBOX).exists() {
            panic!("{BUSYBOX} is missing: apt-get install busybox-static");
        }
        std::fs::copy(BUSYBOX, rootfs.join("bin/busybox"))
            .unwrap_or_else(|e| panic!("copy {BUSYBOX}: {e}"));
        for a in APPLETS {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a))
                .unwrap_or_else(|e| panic!("symlink applet {a}: {e}"));
        }
        std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
        std::fs::write(rootfs.join("etc/group"), "root:x:0:\n").unwrap();
        std::fs::write(
            rootfs.join("etc/hosts"),
            "127.0.0.1 localhost\n::1 localhost\n",
        )
        .unwrap();
        let out = cmd::run(
            Command::new("runc").args(["spec", "--bundle"]).arg(dir),
            None,
            DEFAULT_TIMEOUT,
        );
        out.expect_success("runc spec (generates config.json)");
        let b = Bundle {
            dir: dir.to_path_buf(),
        };
        b.edit(|c| {
            c["process"]["terminal"] = json!(false);
            c["process"]["args"] = json!(args);
            c["root"]["readonly"] = json!(false);
            c["hostname"] = json!("busybox");
            c["annotations"] = annotations_json(annotations);
            if let Some(caps) = c["process"]["capabilities"].as_object_mut() {
                for set in caps.values_mut() {
                    if let Some(list) = set.as_array_mut() {
                        if !list.iter().any(|v| v == "CAP_NET_RAW") {
                            list.push(json!("CAP_NET_RAW"));
                        }
                    }
                }
            }
        });
        b
    }

    /// An existing bundle directory.
    pub fn open(dir: &Path) -> Bundle {
        assert!(
            dir.join("config.json").exists(),
            "{} has no config.json",
            dir.display()
        );
        Bundle {
            dir: dir.to_path_buf(),
        }
    }

    /// The bundle directory (what runtimes get as `--bundle`, and the
    /// `bundle` field of the state).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `dir/rootfs`.
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    /// `dir/config.json`.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    /// `config.json`, parsed.
    pub fn config(&self) -> Value {
        let p = self.config_path();
        let text = std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
        serde_json::from_slice(&text).unwrap_or_else(|e| panic!("parse {}: {e}", p.display()))
    }

    /// Replaces `config.json`.
    pub fn write_config(&self, config: &Value) {
        let p = self.config_path();
        std::fs::write(&p, serde_json::to_vec_pretty(config).unwrap())
            .unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    }

    /// Reads, changes and writes back `config.json`.
    pub fn edit(&self, f: impl FnOnce(&mut Value)) {
        let mut c = self.config();
        f(&mut c);
        self.write_config(&c);
    }

    /// `process.args`.
    pub fn args(&self) -> Vec<String> {
        self.config()["process"]["args"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The annotations of `config.json`, in key order.
    pub fn annotations(&self) -> Vec<(String, String)> {
        self.config()["annotations"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Sets one annotation.
    pub fn set_annotation(&self, key: &str, value: &str) {
        self.edit(|c| {
            if !c["annotations"].is_object() {
                c["annotations"] = json!({});
            }
            c["annotations"][key] = json!(value);
        });
    }

    /// The network namespace entry of `config.json`.
    pub fn netns_entry(&self) -> NetNsEntry {
        NetNsEntry::from_config(&self.config())
    }

    /// Replaces (or removes) the network namespace entry.
    pub fn set_netns(&self, entry: &NetNsEntry) {
        self.edit(|c| set_netns_entry(c, entry));
    }

    /// Appends a hook to `hooks.<stage>` (`createRuntime`, `prestart`,
    /// `poststop`, ...). `args` is the full argv including argv[0], as the
    /// runtime spec has it; `env` is `KEY=VALUE` strings (the hook gets
    /// nothing else); `timeout` in seconds.
    pub fn add_hook(
        &self,
        stage: &str,
        path: &Path,
        args: &[&str],
        env: &[&str],
        timeout: Option<u32>,
    ) {
        let hook = hook_json(path, args, env, timeout);
        self.edit(|c| {
            if !c["hooks"].is_object() {
                c["hooks"] = json!({});
            }
            if !c["hooks"][stage].is_array() {
                c["hooks"][stage] = json!([]);
            }
            c["hooks"][stage].as_array_mut().unwrap().push(hook);
        });
    }
}

fn hook_json(path: &Path, args: &[&str], env: &[&str], timeout: Option<u32>) -> Value {
    let mut h = json!({"path": path, "args": args, "env": env});
    if let Some(t) = timeout {
        h["timeout"] = json!(t);
    }
    h
}

/// Writes `dir/file_name` in the containers/common hooks.d 1.0.0 format:
/// the hook (`args` with argv[0], `env`, `timeout` seconds) for `stages`,
/// when the annotation `io.wirehook.network` is present
/// (`"when": {"annotations": {"^io\\.wirehook\\.network$": ".*"}}`).
///
/// Podman passes the same argv at every stage listed in one file, so a hook
/// that takes its stage from argv needs one file per stage.
pub fn write_hooks_d(
    dir: &Path,
    file_name: &str,
    path: &Path,
    args: &[&str],
    env: &[&str],
    timeout: Option<u32>,
    stages: &[&str],
) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    let doc = json!({
        "version": "1.0.0",
        "hook": hook_json(path, args, env, timeout),
        "when": {"annotations": {"^io\\.wirehook\\.network$": ".*"}},
        "stages": stages,
    });
    let p = dir.join(file_name);
    std::fs::write(&p, serde_json::to_vec_pretty(&doc).unwrap())
        .unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    p
}
