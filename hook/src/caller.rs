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
