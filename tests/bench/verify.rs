//! Untimed checks that a setup wired the container and a teardown
//! unwired it.

use crate::*;

/// Untimed: after setup the container's eth0 is of the mode's link kind
/// (and driver mode), and it has a default route via eth0.
pub(crate) fn verify_wired(bench: &Bench, kind: Kind, mode: Mode, c: &Ctr) -> Res<()> {
    let ns = File::open(c.netns()).map_err(|e| format!("open {}: {e}", c.netns()))?;
    let link = bench.in_ns(ns.as_raw_fd(), || {
        sh("ip", &["-o", "-d", "link", "show", "dev", "eth0"])
    })?;
    let words: Vec<&str> = link.split_whitespace().collect();
    let has_kind = words.contains(&mode.link_kind());
    let has_mode = mode.sub_mode().is_empty()
        || words
            .windows(2)
            .any(|w| w[0] == "mode" && w[1] == mode.sub_mode());
    if !(has_kind && has_mode) {
        return Err(format!(
            "{} {} setup of {} exited 0 but the container's eth0 is not a {} {}: {}",
            kind.key(),
            mode.key(),
            c.id(),
            mode.link_kind(),
            mode.sub_mode(),
            link.trim()
        ));
    }
    let routes = fs::read_to_string(format!("/proc/{}/net/route", c.pid))
        .map_err(|e| format!("read /proc/{}/net/route: {e}", c.pid))?;
    let ok = routes.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 2 && f[0] == "eth0" && f[1] == "00000000"
    });
    if !ok {
        return Err(format!(
            "{} setup of {} exited 0 but the container (pid {}) has no default route via eth0",
            kind.key(),
            c.id(),
            c.pid
        ));
    }
    Ok(())
}

/// Untimed: after teardown the container has no eth0. wirehook's poststop
/// hands the veth deletion to a detached finisher (see hook/src/finish.rs),
/// so for it eth0 may linger a moment: wait up to 3 s.
///
/// With `--stopped` the process is gone: for CNI and netavark the bench
/// looks through its bind mount and then releases it (as podman does after
/// DEL); wirehook must have released its own bind mount (within 3 s: the
/// finisher unmounts it), which nothing else holds, so the namespace and
/// its sub-interface or veth die with it.
pub(crate) fn verify_unwired(bench: &Bench, c: &Contender, ctr: &Ctr) -> Res<()> {
    // Polls of 10 ms: wirehook's finisher runs after poststop returned.
    let patience = if c.kind.is_wirehook() { 300 } else { 0 };
    let has_eth0 = |dev: Res<String>| -> Res<bool> {
        Ok(dev?.lines().any(|l| l.trim_start().starts_with("eth0:")))
    };
    let what = format!("{} {} teardown of {}", c.kind.key(), c.mode.key(), ctr.id());
    if !c.stopped {
        let dev = format!("/proc/{}/net/dev", ctr.pid);
        let gone = eventually(patience, || {
            has_eth0(fs::read_to_string(&dev).map_err(|e| format!("read {dev}: {e}"))).map(|h| !h)
        })?;
        if !gone {
            return Err(format!(
                "{what} exited 0 but the container (pid {}) still has eth0",
                ctr.pid
            ));
        }
    } else if c.holds_ns() {
        let held = c.ns_path(ctr);
        let ns = File::open(&held).map_err(|e| format!("open {}: {e}", held.display()))?;
        let still = bench.in_ns(ns.as_raw_fd(), || {
            has_eth0(
                fs::read_to_string("/proc/thread-self/net/dev")
                    .map_err(|e| format!("read /proc/thread-self/net/dev: {e}")),
            )
        })?;
        drop(ns);
        detach_mount(&held);
        if still {
            return Err(format!(
                "{what} exited 0 but its namespace ({}) still has eth0",
                held.display()
            ));
        }
    } else {
        let mount = if c.kind == Kind::Floor {
            c.floor_mount(ctr)
        } else {
            c.wirehook_root().join("run/wirehook/netns").join(ctr.id())
        };
        let released = eventually(patience, || Ok(mounts_below(&mount).is_empty()))?;
        if !released {
            return Err(format!(
                "{what} exited 0 but {} still holds the namespace",
                mount.display()
            ));
        }
    }
    Ok(())
}

/// Poll `done` every 10 ms, at most `patience` times more after the first.
pub(crate) fn eventually(patience: usize, mut done: impl FnMut() -> Res<bool>) -> Res<bool> {
    for _ in 0..patience {
        if done()? {
            return Ok(true);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    done()
}

/// Untimed, in the host namespace: its ruleset mentions the published port.
pub(crate) fn verify_port(kind: Kind, c: &Ctr) -> Res<()> {
    let rules = sh("nft", &["list", "ruleset"])?;
    let port = c.host_port().to_string();
    let found = rules
        .split(|ch: char| !ch.is_ascii_digit())
        .any(|tok| tok == port);
    if !found {
        return Err(format!(
            "{}: host port {port} of {} appears nowhere in the host namespace's nftables ruleset",
            kind.key(),
            c.id()
        ));
    }
    Ok(())
}
