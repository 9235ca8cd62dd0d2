//! Where wirehook keeps its files.
//!
//! Two trees: the operator's configuration (`/etc/wirehook`: network
//! definitions, policy, host config) and the run-time state
//! (`/run/wirehook`: records, leases, locks, namespace bind mounts, log).
//! Both move together with one setting, `WIREHOOK_ROOT=DIR` or
//! `wirehook --root DIR`, which makes them `DIR/etc/wirehook` and
//! `DIR/run/wirehook`; tests and side-by-side instances use that.

use std::path::{Path, PathBuf};

/// Environment variable that moves both trees under one directory.
pub const ROOT_ENV: &str = "WIREHOOK_ROOT";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    pub config_dir: PathBuf,
    pub run_dir: PathBuf,
}

impl Default for Paths {
    fn default() -> Self {
        Paths {
            config_dir: PathBuf::from("/etc/wirehook"),
            run_dir: PathBuf::from("/run/wirehook"),
        }
    }
}

impl Paths {
    /// Paths from `--root` if given, else `WIREHOOK_ROOT`, else the defaults.
    pub fn resolve(root: Option<&Path>) -> Self {
        match root {
            Some(r) => Self::under(r),
            None => match std::env::var_os(ROOT_ENV) {
                Some(r) if !r.is_empty() => Self::under(Path::new(&r)),
                _ => Self::default(),
            },
        }
    }

    /// Refuse to work through state directories that are symbolic links
    /// (someone swapped one for a link elsewhere): writes through them
    /// would land outside the run directory. Missing ones are fine (made
    /// on first use). One lstat of the run directory and one listing of
    /// it, whose entries carry their type.
    pub fn check_state_dirs(&self) -> crate::Result<()> {
        const DIRS: [&str; 9] = [
            "containers",
            "names",
            "sharers",
            "leases",
            "locks",
            "netns",
            "finishing",
            "realized",
            "overlay",
        ];
        let refuse = |p: &Path| {
            Err(crate::Error::invalid(format!(
                "{} is a symbolic link, not a directory: wirehook writes its state only into real directories; remove the link (`wirehook gc` recreates what it needs)",
                p.display()
            )))
        };
        match std::fs::symlink_metadata(&self.run_dir) {
            Ok(m) if m.file_type().is_symlink() => return refuse(&self.run_dir),
            Ok(_) => {}
            Err(_) => return Ok(()),
        }
        let Ok(entries) = std::fs::read_dir(&self.run_dir) else {
            return Ok(());
        };
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_symlink())
                && e.file_name().to_str().is_some_and(|n| DIRS.contains(&n))
            {
                return refuse(&e.path());
            }
        }
        Ok(())
    }

    /// Both trees below `root`.
    pub fn under(root: &Path) -> Self {
        Paths {
            config_dir: root.join("etc/wirehook"),
            run_dir: root.join("run/wirehook"),
        }
    }

    /// Operator-defined networks, one JSON file each.
    pub fn networks_dir(&self) -> PathBuf {
        self.config_dir.join("networks")
    }
    pub fn network_file(&self, name: &str) -> PathBuf {
        self.networks_dir().join(format!("{name}.json"))
    }
    /// The operator's policy (which inline annotations are allowed).
    pub fn policy_file(&self) -> PathBuf {
        self.config_dir.join("policy.json")
    }
    /// Host-wide settings (default bridge subnet, store, underlay).
    pub fn host_config_file(&self) -> PathBuf {
        self.config_dir.join("config.json")
    }
    /// One record per wired container.
    pub fn records_dir(&self) -> PathBuf {
        self.run_dir.join("containers")
    }
    pub fn record_file(&self, id: &str) -> PathBuf {
        self.records_dir().join(format!("{id}.json"))
    }
    /// Name index: `names/NAME` holds the id of the container using NAME.
    pub fn names_dir(&self) -> PathBuf {
        self.run_dir.join("names")
    }
    /// `sharers/OWNER/SHARER`: containers that joined OWNER's namespace.
    pub fn sharers_dir(&self, owner: &str) -> PathBuf {
        self.run_dir.join("sharers").join(owner)
    }
    /// Address leases of one network.
    pub fn leases_dir(&self, network: &str) -> PathBuf {
        self.run_dir.join("leases").join(network)
    }
    /// Bind mounts that keep container namespaces reachable (like `ip netns`).
    pub fn netns_dir(&self) -> PathBuf {
        self.run_dir.join("netns")
    }
    pub fn netns_file(&self, id: &str) -> PathBuf {
        self.netns_dir().join(id)
    }
    /// Lock files (flock), one per network plus one for the firewall table.
    pub fn locks_dir(&self) -> PathBuf {
        self.run_dir.join("locks")
    }
    /// What the host side of a network currently looks like (bridge made, rules in place).
    /// Held shared by every setup while it runs, exclusively by `gc`: gc
    /// never takes a starting container's leases, ports or mount for
    /// leftovers (they have no record yet).
    pub fn setup_lock(&self) -> PathBuf {
        self.locks_dir().join("setup.lock")
    }

    pub fn realized_dir(&self) -> PathBuf {
        self.run_dir.join("realized")
    }
    /// Fallback log when there is no syslog socket.
    pub fn log_file(&self) -> PathBuf {
        self.run_dir.join("wirehook.log")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_dirs_that_are_links_are_refused() {
        let root = std::env::temp_dir().join(format!("wh-paths-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let paths = Paths::under(&root);
        // Nothing there yet: fine (made on first use).
        paths.check_state_dirs().unwrap();
        std::fs::create_dir_all(paths.run_dir.join("containers")).unwrap();
        std::fs::write(paths.run_dir.join("wirehook.log"), b"").unwrap();
        std::os::unix::fs::symlink("/tmp", paths.run_dir.join("unrelated")).unwrap();
        paths.check_state_dirs().unwrap();

        std::os::unix::fs::symlink("/tmp", paths.run_dir.join("leases")).unwrap();
        let e = paths.check_state_dirs().unwrap_err().to_string();
        assert!(e.contains("leases is a symbolic link"), "{e}");
        std::fs::remove_file(paths.run_dir.join("leases")).unwrap();

        let real = root.join("elsewhere");
        std::fs::rename(&paths.run_dir, &real).unwrap();
        std::os::unix::fs::symlink(&real, &paths.run_dir).unwrap();
        let e = paths.check_state_dirs().unwrap_err().to_string();
        assert!(e.contains("run/wirehook is a symbolic link"), "{e}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
