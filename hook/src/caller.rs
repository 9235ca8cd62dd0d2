//! Who called the hook. Podman passes the container's name in no
//! annotation; at setup it is visible only as `conmon -n NAME`, an
//! ancestor of the hook (hook <- runc <- conmon). Read it from there so
//! `ps`, `container:<name>` and wiretop can use podman's names. The hook's
//! parent is the runtime itself, whose root tells one tenant's containers
//! from another's.
//!
//! Read once per hook run ([`Caller::read`]): the parent's command line
//! serves both, and ancestors above it are told apart by their
//! `/proc/PID/stat` name before any command line is read.

use wirehook_shared::procfs;

/// What the hook knows of the processes that started it.
pub struct Caller {
    /// The `-n`/`--name` of a conmon among the nearest ancestors.
    pub conmon_name: Option<String>,
    /// The runtime's program name and root, `PROGRAM:ROOT`.
    pub runtime_root: String,
}

impl Caller {
    pub fn read() -> Caller {
        let parent = std::os::unix::process::parent_id() as i32;
        let args = procfs::cmdline(parent);
        Caller {
            conmon_name: conmon_name(parent, &args),
            runtime_root: runtime_root(&args),
        }
    }
}

fn program(args: &[Vec<u8>]) -> &[u8] {
    args.first()
        .and_then(|a| a.rsplit(|b| *b == b'/').next())
        .unwrap_or_default()
}

/// The name given to conmon, if conmon runs the runtime that runs this
/// hook (podman and CRI-O: conmon <- runtime <- hook) or, for a caller
/// that runs hooks itself, is the parent (`parent_args` already read).
/// Only these two are looked at: every `/proc` read costs a start about
/// 15 µs.
fn conmon_name(parent: i32, parent_args: &[Vec<u8>]) -> Option<String> {
    let grandparent_args;
    let args = if program(parent_args) == b"conmon" {
        parent_args
    } else {
        let grandparent = procfs::stat(parent)?.ppid;
        if grandparent <= 1 || procfs::stat(grandparent)?.comm != "conmon" {
            return None;
        }
        grandparent_args = procfs::cmdline(grandparent);
        &grandparent_args
    };
    args.windows(2)
        .find(|w| w[0] == b"-n" || w[0] == b"--name")
        .and_then(|w| std::str::from_utf8(&w[1]).ok())
        .map(str::to_string)
}

/// The runtime root of the runtime that runs this hook, from its command
/// line: its program name and its `--root` (the runtime's default where
/// none is given). runc and crun run their hooks as children.
/// `container:<x>` joins only a container the same runtime root created:
/// another root is another tenant's runtime.
fn runtime_root(args: &[Vec<u8>]) -> String {
    if args.is_empty() {
        return String::new();
    }
    let program = String::from_utf8_lossy(program(args)).into_owned();
    let args: Vec<String> = args
        .iter()
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
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
