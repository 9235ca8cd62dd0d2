//! Reading `/proc/PID/stat` and `/proc/PID/cmdline`, which the hook does
//! on every start (the caller's name and runtime, the container process's
//! start time) and wiretop for every process.
//!
//! `/proc` files report a size of 0, so a plain `std::fs::read` probes
//! them with reads of 32, 32, 64, 128... bytes after a statx and an
//! lseek; [`read`] reads into a page at once: one open, two reads, one
//! close.

use std::io::Read;
use std::path::Path;

/// The whole of a small `/proc` file.
pub fn read(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut f = std::fs::File::open(path)?;
    // Not `read_to_end`, which first asks for the size (a statx and an
    // lseek that a /proc file answers with 0).
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(len * 2, 0);
        }
        match f.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(len);
    Ok(buf)
}

/// What the hook and wiretop use from `/proc/PID/stat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// The command name (at most 15 bytes; may hold spaces and parentheses).
    pub comm: String,
    /// `R`, `S`, `D`, `Z` (zombie), `X` (dead)...
    pub state: char,
    pub ppid: i32,
    /// `PF_*` flags.
    pub flags: u64,
    /// Start time after boot, in clock ticks.
    pub start: u64,
}

impl Stat {
    /// Parse the line of `/proc/PID/stat`: `pid (comm) state ppid ...`.
    pub fn parse(line: &str) -> Option<Stat> {
        let open = line.find('(')?;
        // The name may contain ')': the last one ends it.
        let close = line.rfind(')')?;
        let comm = line.get(open + 1..close)?.to_string();
        // Fields after the name, from field 3 (state) on.
        let rest: Vec<&str> = line.get(close + 1..)?.split_whitespace().collect();
        Some(Stat {
            comm,
            state: rest.first()?.chars().next()?,
            ppid: rest.get(1)?.parse().ok()?,
            flags: rest.get(6)?.parse().ok()?,
            start: rest.get(19)?.parse().ok()?,
        })
    }
}

/// `/proc/PID/stat` of `pid`, now.
pub fn stat(pid: i32) -> Option<Stat> {
    stat_at(&Path::new("/proc").join(pid.to_string()))
}

/// `stat` of the process directory `dir` (`/proc/PID` or a copy of one).
pub fn stat_at(dir: &Path) -> Option<Stat> {
    let bytes = read(&dir.join("stat")).ok()?;
    Stat::parse(std::str::from_utf8(&bytes).ok()?)
}

/// The arguments of `pid` (`/proc/PID/cmdline`, split at NULs); empty for
/// a kernel thread or a process that is gone.
pub fn cmdline(pid: i32) -> Vec<Vec<u8>> {
    let Ok(bytes) = read(&Path::new("/proc").join(pid.to_string()).join("cmdline")) else {
        return Vec::new();
    };
    let bytes = bytes.strip_suffix(&[0]).unwrap_or(&bytes);
    if bytes.is_empty() {
        return Vec::new();
    }
    bytes.split(|b| *b == 0).map(<[u8]>::to_vec).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_name_with_spaces_and_parentheses() {
        let line = "4242 (a) b (c)) S 17 4242 4242 0 -1 4194560 203 0 0 0 0 0 0 0 20 0 1 0 2246094 2990080 425";
        let s = Stat::parse(line).unwrap();
        assert_eq!(s.comm, "a) b (c)");
        assert_eq!(s.state, 'S');
        assert_eq!(s.ppid, 17);
        assert_eq!(s.flags, 4194560);
        assert_eq!(s.start, 2246094);
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id() as i32;
        let s = stat(me).unwrap();
        assert_eq!(s.ppid, std::os::unix::process::parent_id() as i32);
        assert!(s.start > 0);
        let args = cmdline(me);
        assert_eq!(
            args.first()
                .map(|a| Path::new(std::str::from_utf8(a).unwrap()).file_name()),
            Some(std::env::current_exe().unwrap().file_name())
        );
        // Longer than the first page.
        let file = std::env::temp_dir().join(format!("wh-procfs-{me}"));
        let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        std::fs::write(&file, &data).unwrap();
        assert_eq!(read(&file).unwrap(), data);
        std::fs::remove_file(&file).unwrap();
        assert!(stat(i32::MAX).is_none());
        assert!(cmdline(i32::MAX).is_empty());
    }
}
