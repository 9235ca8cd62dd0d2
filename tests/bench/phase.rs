//! One phase: containers of every contender set up interleaved, then torn
//! down in reverse order.

use crate::*;

pub(crate) struct Samples {
    pub(crate) kind: Kind,
    pub(crate) mode: Mode,
    /// Indexed by container index (0-based, setup order).
    pub(crate) setup: Vec<Duration>,
    pub(crate) teardown: Vec<Duration>,
    /// The floor's parts (exec, requests), for `Kind::Floor`.
    pub(crate) parts: Option<Parts>,
}

/// Progress on stderr in tenths.
pub(crate) fn progress(what: &str, done: usize, total: usize) {
    if done == total || done * 10 / total != (done - 1) * 10 / total {
        eprintln!("wirehook-bench:   {what} {done}/{total}");
    }
}

/// Set up `total` containers per contender (interleaved) in `mode`, then
/// tear them down in reverse order. Every contender in its own fresh host
/// namespace `wh-bench-KIND-TAG-PID` (TAG: the mode, or `scale`).
pub(crate) fn run_phase(
    bench: &mut Bench,
    o: &Opts,
    mode: Mode,
    kinds: &[Kind],
    tag: &str,
    total: usize,
) -> Res<Vec<Samples>> {
    let mut contenders = Vec::new();
    for &k in kinds {
        let host_tag = format!("{}-{tag}", k.key());
        let host = bench.host_ns(&host_tag)?;
        if mode.has_lan() {
            bench.lan(&host, &host_tag, mode == Mode::Overlay)?;
        }
        let dir = bench.base.join(&host.name);
        let mut c = Contender::new(k, mode, host, dir, o)?;
        bench.in_ns(c.host.fd.as_raw_fd(), || c.define_network())?;
        if k == Kind::Floor {
            let noop = bench.noop()?;
            let fd = c.host.fd.as_raw_fd();
            bench.in_ns(fd, || c.floor_prepare_host(&noop))?;
        }
        contenders.push(c);
    }
    eprintln!(
        "wirehook-bench: phase {tag}: creating {} containers for {}",
        total * contenders.len(),
        kinds.iter().map(|k| k.key()).collect::<Vec<_>>().join(", ")
    );
    for c in contenders.iter_mut() {
        for idx in 0..total {
            check_stop()?;
            let pid = bench.container()?;
            let ctr = Ctr { idx, pid };
            c.prepare(&ctr)?;
            c.ctrs.push(ctr);
        }
    }
    let mut samples: Vec<Samples> = kinds
        .iter()
        .map(|&kind| Samples {
            kind,
            mode,
            setup: vec![Duration::ZERO; total],
            teardown: vec![Duration::ZERO; total],
            parts: None,
        })
        .collect();
    for idx in 0..total {
        for (c, smp) in contenders.iter_mut().zip(samples.iter_mut()) {
            let ctr = c.ctrs[idx];
            let t = bench.in_ns(c.host.fd.as_raw_fd(), || c.setup(&ctr))?;
            verify_wired(bench, c.kind, mode, &ctr)?;
            smp.setup[idx] = t;
        }
        progress("set up", idx + 1, total);
    }
    if mode == Mode::Bridge {
        for c in &contenders {
            let ctr = c.ctrs[total - 1];
            bench.in_ns(c.host.fd.as_raw_fd(), || verify_port(c.kind, &ctr))?;
        }
    }
    for idx in (0..total).rev() {
        for (c, smp) in contenders.iter_mut().zip(samples.iter_mut()) {
            let ctr = c.ctrs[idx];
            if c.stopped {
                bench.stop_container(ctr.pid)?;
            }
            let t = bench.in_ns(c.host.fd.as_raw_fd(), || c.teardown(&ctr))?;
            verify_unwired(bench, c, &ctr)?;
            smp.teardown[idx] = t;
        }
        progress("torn down", total - idx, total);
    }
    for (c, smp) in contenders.iter_mut().zip(samples.iter_mut()) {
        smp.parts = c.floor.take().map(|f| f.parts);
    }
    drop(contenders);
    bench.end_phase();
    Ok(samples)
}
