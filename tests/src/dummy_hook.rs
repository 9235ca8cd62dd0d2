//! [`DummyHook`]: a `/bin/sh` hook that records every call — argv, the exact
//! environment it was given, working directory, stdin (the state), its
//! network namespace, and its parent and grandparent command lines — so
//! tests can see what a runtime really passes to hooks — plus a copy of
//! the bundle's `config.json` as it was during the call.
//!
//! Each call lands in its own directory `LOG/<nanoseconds>-<pid>/`. The
//! script uses absolute paths only, so it works with an empty environment.
//! Convention: argv is `[dummy-hook, STAGE]` (see
//! [`DummyHook::install`]); creating the file `fail-STAGE` next to the script
//! makes that stage exit 3 with a message on stderr.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::bundle::Bundle;
use crate::host::TestHost;
use crate::runtime::{Runtime, HOOK_PATH};

/// A recording hook script in some directory.
#[derive(Debug, Clone)]
pub struct DummyHook {
    dir: PathBuf,
}

/// One recorded call.
#[derive(Debug, Clone)]
pub struct HookCall {
    /// Time of the call (ns since the epoch, from `date +%s%N`).
    pub time_ns: u128,
    /// argv, argv[0] included.
    pub argv: Vec<String>,
    /// The environment exactly as the runtime passed it (`/proc/self/environ`).
    pub env: Vec<String>,
    /// Working directory.
    pub cwd: String,
    /// stdin: the state document.
    pub stdin: String,
    /// `net:[INODE]` of the hook's network namespace.
    pub netns: String,
    /// Parent's command line.
    pub parent: Vec<String>,
    /// Grandparent's command line.
    pub grandparent: Vec<String>,
    /// `BUNDLE/config.json` as it was during the call (if readable).
    pub config: Option<Value>,
}

impl HookCall {
    /// The stage, by the argv convention (`argv[1]`).
    pub fn stage(&self) -> &str {
        self.argv.get(1).map(String::as_str).unwrap_or("")
    }

    /// stdin parsed as JSON (panics if it is not).
    pub fn state(&self) -> Value {
        serde_json::from_str(&self.stdin)
            .unwrap_or_else(|e| panic!("hook stdin is not JSON ({e}): {:?}", self.stdin))
    }

    /// The value of `name` in the hook's environment.
    pub fn env_var(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
    }

    /// The inode of the hook's network namespace.
    pub fn netns_inode(&self) -> Option<u64> {
        self.netns
            .strip_prefix("net:[")?
            .strip_suffix(']')?
            .parse()
            .ok()
    }
}

const SCRIPT: &str = r#"#!/bin/sh
# wirehook-tests dummy hook: records one call per directory.
here=@DIR@
if [ -e "$here/fail-$1" ]; then echo "dummy hook: failing at stage $1 as asked" >&2; exit 3; fi
d="$here/calls/$(/bin/date +%s%N)-$$"
/bin/mkdir -p "$d"
/bin/cat /proc/$$/environ > "$d/env"
printf '%s\0' "$0" "$@" > "$d/argv"
pwd > "$d/cwd"
/bin/readlink /proc/$$/ns/net > "$d/netns"
/bin/cat /proc/$PPID/cmdline > "$d/parent" 2>/dev/null
gp=$(/bin/sed -n 's/^PPid:[[:space:]]*//p' /proc/$PPID/status 2>/dev/null)
[ -n "$gp" ] && /bin/cat /proc/$gp/cmdline > "$d/grandparent" 2>/dev/null
/bin/cat > "$d/stdin.tmp"
b=$(/bin/sed -n 's/.*"bundle":"\([^"]*\)".*/\1/p' "$d/stdin.tmp")
[ -n "$b" ] && [ -f "$b/config.json" ] && /bin/cp "$b/config.json" "$d/config.json"
/bin/mv "$d/stdin.tmp" "$d/stdin"
exit 0
"#;

fn split_nul(b: &[u8]) -> Vec<String> {
    b.split(|&c| c == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

impl DummyHook {
    /// Writes the script `dir/dummy-hook` (creating `dir`).
    pub fn new(dir: &Path) -> DummyHook {
        std::fs::create_dir_all(dir.join("calls"))
            .unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let dir = dir.canonicalize().unwrap();
        let script = SCRIPT.replace("@DIR@", &shell_quote(dir.to_str().expect("utf-8 path")));
        let path = dir.join("dummy-hook");
        std::fs::write(&path, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        DummyHook { dir }
    }

    /// The script's path.
    pub fn path(&self) -> PathBuf {
        self.dir.join("dummy-hook")
    }

    /// Installs the hook for each of `stages` with argv `[dummy-hook, STAGE]`,
    /// `env` [`HOOK_PATH`] plus `DUMMY=1`, timeout 10 s, the way `runtime`
    /// takes hooks ([`Runtime::add_hook`]).
    pub fn install(&self, runtime: Runtime, host: &TestHost, bundle: &Bundle, stages: &[&str]) {
        for stage in stages {
            runtime.add_hook(
                host,
                bundle,
                stage,
                &self.path(),
                &["dummy-hook", stage],
                &[HOOK_PATH, "DUMMY=1"],
                Some(10),
            );
        }
    }

    /// Makes `stage` fail (exit 3) from now on.
    pub fn fail_stage(&self, stage: &str) {
        std::fs::write(self.dir.join(format!("fail-{stage}")), "").unwrap();
    }

    /// Every completed call so far, in time order.
    pub fn calls(&self) -> Vec<HookCall> {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(self.dir.join("calls"))
            .map(|rd| rd.filter_map(|e| Some(e.ok()?.path())).collect())
            .unwrap_or_default();
        dirs.sort();
        dirs.iter()
            .filter(|d| d.join("stdin").exists())
            .map(|d| {
                let read = |f: &str| std::fs::read(d.join(f)).unwrap_or_default();
                let text = |f: &str| {
                    String::from_utf8_lossy(&read(f))
                        .trim_end_matches('\n')
                        .to_string()
                };
                let name = d.file_name().unwrap().to_string_lossy().into_owned();
                HookCall {
                    time_ns: name
                        .split('-')
                        .next()
                        .and_then(|t| t.parse().ok())
                        .unwrap_or(0),
                    argv: split_nul(&read("argv")),
                    env: split_nul(&read("env")),
                    cwd: text("cwd"),
                    stdin: String::from_utf8_lossy(&read("stdin")).into_owned(),
                    netns: text("netns"),
                    parent: split_nul(&read("parent")),
                    grandparent: split_nul(&read("grandparent")),
                    config: serde_json::from_slice(&read("config.json")).ok(),
                }
            })
            .collect()
    }

    /// The calls for `stage`.
    pub fn calls_for(&self, stage: &str) -> Vec<HookCall> {
        self.calls()
            .into_iter()
            .filter(|c| c.stage() == stage)
            .collect()
    }

    /// Waits up to `timeout` for a call at `stage` and returns the first one;
    /// panics listing the calls seen if none comes (some runtimes run
    /// poststop from a background clean-up process).
    pub fn wait_for(&self, stage: &str, timeout: Duration) -> HookCall {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(c) = self.calls_for(stage).into_iter().next() {
                return c;
            }
            if Instant::now() > deadline {
                let seen: Vec<String> =
                    self.calls().iter().map(|c| c.stage().to_string()).collect();
                panic!("dummy hook: no {stage} call within {timeout:?}; calls seen: {seen:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Forgets the calls recorded so far.
    pub fn clear(&self) {
        let calls = self.dir.join("calls");
        let _ = std::fs::remove_dir_all(&calls);
        std::fs::create_dir_all(&calls).unwrap();
    }
}

/// Single-quotes `s` for /bin/sh.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}
