//! One line per action, where an operator finds it: syslog (journald)
//! when `/dev/log` exists, and always a file in the run directory
//! (`wirehook.log`). Never blocks: syslog is a non-blocking datagram.

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::sync::OnceLock;

use wirehook_shared::paths::Paths;

struct Sinks {
    file: Option<std::fs::File>,
    syslog: Option<UnixDatagram>,
    tag: String,
    stderr: bool,
}

static SINKS: OnceLock<std::sync::Mutex<Sinks>> = OnceLock::new();

/// Set up logging for this process. `tag` prefixes every line (the
/// container id, or the CLI command).
pub fn init(paths: &Paths, tag: &str) {
    let file = {
        let _ = std::fs::create_dir_all(&paths.run_dir);
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(paths.log_file())
            .ok()
    };
    // Syslog only for the real paths: test instances keep to their own file.
    let syslog = if paths == &Paths::default() {
        UnixDatagram::unbound().ok().and_then(|s| {
            s.set_nonblocking(true).ok()?;
            s.connect("/dev/log").ok()?;
            Some(s)
        })
    } else {
        None
    };
    let _ = SINKS.set(std::sync::Mutex::new(Sinks {
        file,
        syslog,
        tag: tag.to_string(),
        stderr: false,
    }));
}

fn emit(level: &str, prio: u8, msg: &str) {
    let Some(m) = SINKS.get() else { return };
    let Ok(mut s) = m.lock() else { return };
    let pid = std::process::id();
    if let Some(sock) = &s.syslog {
        // facility daemon (3) * 8 + priority
        let _ = sock.send(format!("<{}>wirehook[{pid}]: {}: {msg}", 24 + prio, s.tag).as_bytes());
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let line = format!(
        "{}.{:03} {level} [{pid}] {}: {msg}\n",
        now.as_secs(),
        now.subsec_millis(),
        s.tag
    );
    if let Some(f) = s.file.as_mut() {
        let _ = f.write_all(line.as_bytes());
    }
    if s.stderr {
        eprintln!("{level}: {msg}");
    }
}

/// Also write every line to stderr: for `wirehook agent`, a service whose
/// stderr goes to the journal.
pub fn echo_to_stderr() {
    if let Some(m) = SINKS.get() {
        if let Ok(mut s) = m.lock() {
            s.stderr = true;
        }
    }
}

pub fn info(msg: impl AsRef<str>) {
    emit("info", 6, msg.as_ref());
}

pub fn warn(msg: impl AsRef<str>) {
    emit("warn", 4, msg.as_ref());
}

pub fn error(msg: impl AsRef<str>) {
    emit("error", 3, msg.as_ref());
}

/// Phase timings for profiling: with `WIREHOOK_TIMING=1`, `phase("x")`
/// marks the end of phase x and [`report_phases`] prints them to stderr.
static PHASES: std::sync::Mutex<Vec<(&'static str, std::time::Instant)>> =
    std::sync::Mutex::new(Vec::new());
static TIMING: OnceLock<bool> = OnceLock::new();

fn timing() -> bool {
    *TIMING.get_or_init(|| std::env::var_os("WIREHOOK_TIMING").is_some_and(|v| v == "1"))
}

pub fn phase(name: &'static str) {
    if timing() {
        if let Ok(mut p) = PHASES.lock() {
            p.push((name, std::time::Instant::now()));
        }
    }
}

pub fn report_phases(start: std::time::Instant) {
    if !timing() {
        return;
    }
    let Ok(p) = PHASES.lock() else { return };
    let mut prev = start;
    let parts: Vec<String> = p
        .iter()
        .map(|(n, t)| {
            let s = format!("{n}={}us", t.duration_since(prev).as_micros());
            prev = *t;
            s
        })
        .collect();
    eprintln!(
        "wirehook timing: {} total={}us",
        parts.join(" "),
        prev.duration_since(start).as_micros()
    );
}
