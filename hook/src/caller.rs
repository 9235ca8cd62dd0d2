//! Who called the hook. Podman passes the container's name in no
//! annotation; at setup it is visible only as `conmon -n NAME`, an
//! ancestor of the hook (hook <- runc <- conmon). Read it from there so
//! `ps`, `container:<name>` and wiretop can use podman's names.

/// The `-n`/`--name` argument of a conmon process among our nearest
/// ancestors, if any.
pub fn conmon_name() -> Option<String> {
    let mut pid = std::os::unix::process::parent_id() as i32;
    for _ in 0..4 {
        if pid <= 1 {
            return None;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let is_conmon = args
            .first()
            .and_then(|a| a.rsplit(|b| *b == b'/').next())
            .is_some_and(|a| a == b"conmon");
        if is_conmon {
            return args
                .windows(2)
                .find(|w| w[0] == b"-n" || w[0] == b"--name")
                .and_then(|w| std::str::from_utf8(w[1]).ok())
                .map(str::to_string);
        }
        pid = parent_of(pid)?;
    }
    None
}

fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..]
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The runtime root of the runtime that runs this hook: its program name
/// and its `--root` (the runtime's default where none is given), read from
/// the hook's parent, which is the runtime itself (runc and crun run their
/// hooks as children). `container:<x>` joins only a container the same
/// runtime root created: another root is another tenant's runtime.
pub fn runtime_root() -> String {
    let pid = std::os::unix::process::parent_id();
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return String::new();
    };
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let program = args
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a).to_string())
        .unwrap_or_default();
    let root = args
        .iter()
        .position(|a| a == "--root")
        .and_then(|i| args.get(i + 1).cloned())
        .or_else(|| {
            args.iter()
                .find_map(|a| a.strip_prefix("--root=").map(str::to_string))
        })
        .unwrap_or_else(|| match program.as_str() {
            "runc" => "/run/runc".to_string(),
            "crun" => "/run/crun".to_string(),
            _ => String::new(),
        });
    // Bounded: it is kept in the record and shown in errors.
    format!("{program}:{root}").chars().take(256).collect()
}
