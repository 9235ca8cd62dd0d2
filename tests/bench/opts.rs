//! Command line: contenders, modes, options.

use crate::*;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kind {
    Wirehook,
    /// wirehook on a bridge network made with `--dns=false` (names off).
    WirehookNoDns,
    /// The machine's floor (see floor.rs).
    Floor,
    Cni,
    Netavark,
}

impl Kind {
    pub(crate) const ALL: [Kind; 5] = [
        Kind::Wirehook,
        Kind::WirehookNoDns,
        Kind::Floor,
        Kind::Cni,
        Kind::Netavark,
    ];
    /// The contenders of a run without `--only`.
    pub(crate) const DEFAULT: [Kind; 4] = [
        Kind::Wirehook,
        Kind::WirehookNoDns,
        Kind::Cni,
        Kind::Netavark,
    ];

    pub(crate) fn key(self) -> &'static str {
        match self {
            Kind::Wirehook => "wirehook",
            Kind::WirehookNoDns => "wirehook-nodns",
            Kind::Floor => "floor",
            Kind::Cni => "cni",
            Kind::Netavark => "netavark",
        }
    }

    /// netavark and wirehook with names off are driven in bridge mode
    /// only; overlay has no peer (only wirehook and the floor).
    pub(crate) fn runs(self, mode: Mode) -> bool {
        match mode {
            Mode::Bridge => true,
            Mode::Overlay => matches!(self, Kind::Wirehook | Kind::Floor),
            Mode::Macvlan | Mode::Ipvlan => !matches!(self, Kind::Netavark | Kind::WirehookNoDns),
        }
    }

    /// The wirehook binary runs for this contender.
    pub(crate) fn is_wirehook(self) -> bool {
        matches!(self, Kind::Wirehook | Kind::WirehookNoDns)
    }

    pub(crate) fn parse_list(s: &str) -> Res<Vec<Kind>> {
        parse_keys(s, &Kind::ALL, Kind::key, "contender")
    }
}

/// A comma list of names out of `all` (by `key`), each once, in `all`'s
/// order so tables always read the same way.
pub(crate) fn parse_keys<T: Copy + PartialEq>(
    s: &str,
    all: &[T],
    key: fn(T) -> &'static str,
    what: &str,
) -> Res<Vec<T>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let v = all
            .iter()
            .copied()
            .find(|&a| key(a) == part)
            .ok_or_else(|| {
                let names: Vec<&str> = all.iter().map(|&a| key(a)).collect();
                format!("unknown {what} {part:?} (choose from {})", names.join(", "))
            })?;
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out.sort_by_key(|v| all.iter().position(|a| a == v));
    Ok(out)
}

/// The network mode a container is wired into.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Mode {
    Bridge,
    Macvlan,
    Ipvlan,
    /// An overlay network on the local cluster store (one host; the VXLAN
    /// device has no remote peers): a veth on the host's bridge of the
    /// network, as bridge, without a published port.
    Overlay,
}

impl Mode {
    pub(crate) const ALL: [Mode; 4] = [Mode::Bridge, Mode::Macvlan, Mode::Ipvlan, Mode::Overlay];

    pub(crate) fn key(self) -> &'static str {
        match self {
            Mode::Bridge => "bridge",
            Mode::Macvlan => "macvlan",
            Mode::Ipvlan => "ipvlan",
            Mode::Overlay => "overlay",
        }
    }

    /// The driver mode both sides are given, as `ip -d link` prints it.
    pub(crate) fn sub_mode(self) -> &'static str {
        match self {
            Mode::Bridge | Mode::Overlay => "",
            Mode::Macvlan => "bridge",
            Mode::Ipvlan => "l2",
        }
    }

    /// The kind of the container's `eth0` after setup.
    pub(crate) fn link_kind(self) -> &'static str {
        match self {
            Mode::Bridge | Mode::Overlay => "veth",
            Mode::Macvlan => "macvlan",
            Mode::Ipvlan => "ipvlan",
        }
    }

    /// The contender's host namespace has the LAN (`lan0`): the parent of
    /// macvlan and ipvlan, the overlay's underlay.
    pub(crate) fn has_lan(self) -> bool {
        self != Mode::Bridge
    }

    pub(crate) fn parse_list(s: &str) -> Res<Vec<Mode>> {
        parse_keys(s, &Mode::ALL, Mode::key, "mode")
    }
}

pub(crate) struct Opts {
    pub(crate) n: usize,
    pub(crate) warmup: usize,
    pub(crate) scale: usize,
    pub(crate) window: usize,
    pub(crate) only: Vec<Kind>,
    /// `None`: bridge and macvlan, and ipvlan when the kernel has it.
    pub(crate) modes: Option<Vec<Mode>>,
    pub(crate) scale_with: Vec<Kind>,
    pub(crate) wirehook: PathBuf,
    pub(crate) cni_path: PathBuf,
    pub(crate) netavark: PathBuf,
    pub(crate) json: Option<String>,
    pub(crate) check: bool,
    /// Each container's process exits before its teardown.
    pub(crate) stopped: bool,
}

impl Opts {
    /// The floor is measured (`--floor`, or named in `--only`).
    pub(crate) fn floor(&self) -> bool {
        self.only.contains(&Kind::Floor) || self.scale_with.contains(&Kind::Floor)
    }
}

pub(crate) const USAGE: &str = "\
wirehook-bench: per-container network setup/teardown, wirehook vs CNI vs netavark and
vs the machine's floor (--floor), in bridge, macvlan, ipvlan and overlay mode

USAGE: wirehook-bench [OPTIONS]        (as root; see tests/bench/README.md)

OPTIONS:
  -n N                 measured containers per contender (default 100)
  --warmup W           untimed containers set up first, torn down last (default 2)
  --scale S            containers on one bridge in the scale run (default 1000; 0 = skip)
  --window K           containers per window of the scale run (default 20)
  --only LIST          contenders of the side-by-side run: wirehook,wirehook-nodns,floor,cni,
                       netavark (default all but floor; netavark and wirehook-nodns, wirehook
                       on a --dns=false network, run in bridge mode only)
  --floor              also measure the floor (a static no-op's exec + the hook's kernel
                       requests from one warm process) in every mode and in the scale run,
                       and judge wirehook against it
  --modes LIST         network modes of the side-by-side run: bridge,macvlan,ipvlan,overlay
                       (default bridge,macvlan, plus ipvlan when this kernel can make ipvlan
                       links, plus overlay with --floor; overlay: wirehook and floor only)
  --scale-with LIST    contenders of the scale run (default wirehook)
  --wirehook PATH      wirehook binary (default: `wirehook` beside this binary,
                       i.e. target/release/wirehook)
  --cni-path DIR       CNI plugin directory (default /usr/lib/cni)
  --netavark PATH      netavark binary (default /usr/lib/podman/netavark)
  --json FILE          also write all samples as JSON to FILE ('-' = stdout; the
                       markdown report then goes to stderr)
  --stopped            the container's process exits before its teardown, as at a real
                       poststop or CNI DEL; CNI and netavark reach the namespace through
                       a bind mount the bench holds, as podman does (default: the process
                       still runs, so the namespace is alive and in use at teardown)
  --check              exit 1 when wirehook misses a goal
  -h, --help           this text
";

pub(crate) fn parse_args() -> Res<Opts> {
    let default_wirehook = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("wirehook")))
        .unwrap_or_else(|| PathBuf::from("target/release/wirehook"));
    let mut o = Opts {
        n: 100,
        warmup: 2,
        scale: 1000,
        window: 20,
        only: Kind::DEFAULT.to_vec(),
        modes: None,
        scale_with: vec![Kind::Wirehook],
        wirehook: default_wirehook,
        cni_path: PathBuf::from("/usr/lib/cni"),
        netavark: PathBuf::from("/usr/lib/podman/netavark"),
        json: None,
        check: false,
        stopped: false,
    };
    let mut scale_with_given = false;
    let mut floor = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        let mut val = |name: &str| -> Res<String> {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        let num = |name: &str, v: String| -> Res<usize> {
            v.parse::<usize>()
                .map_err(|_| format!("{name}: not a number: {v:?}"))
        };
        match flag.as_str() {
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            "-n" => o.n = num("-n", val("-n")?)?,
            "--warmup" => o.warmup = num("--warmup", val("--warmup")?)?,
            "--scale" => o.scale = num("--scale", val("--scale")?)?,
            "--window" => o.window = num("--window", val("--window")?)?,
            "--only" => o.only = Kind::parse_list(&val("--only")?)?,
            "--modes" => o.modes = Some(Mode::parse_list(&val("--modes")?)?),
            "--scale-with" => {
                o.scale_with = Kind::parse_list(&val("--scale-with")?)?;
                scale_with_given = true;
            }
            "--wirehook" => o.wirehook = PathBuf::from(val("--wirehook")?),
            "--cni-path" => o.cni_path = PathBuf::from(val("--cni-path")?),
            "--netavark" => o.netavark = PathBuf::from(val("--netavark")?),
            "--json" => o.json = Some(val("--json")?),
            "--check" => o.check = true,
            "--stopped" => o.stopped = true,
            "--floor" => floor = true,
            other => return Err(format!("unknown argument {other:?}\n\n{USAGE}")),
        }
    }
    if o.n == 0 {
        return Err("-n must be at least 1".into());
    }
    if o.only.is_empty() {
        return Err("--only names no contender".into());
    }
    if let Some(modes) = &o.modes {
        if modes.is_empty() {
            return Err("--modes names no mode".into());
        }
        for m in modes {
            if !o.only.iter().any(|k| k.runs(*m)) {
                return Err(format!(
                    "--modes {}: none of the --only contenders runs in that mode (netavark: bridge only)",
                    m.key()
                ));
            }
        }
    }
    if o.scale > 0 && o.window == 0 {
        return Err("--window must be at least 1".into());
    }
    if o.scale > 0 && o.scale < o.window {
        return Err(format!(
            "--scale {} is smaller than --window {}",
            o.scale, o.window
        ));
    }
    if o.warmup + o.n.max(o.scale) > 60000 {
        return Err("too many containers (host ports run out)".into());
    }
    // The scale run measures wirehook unless told otherwise; leaving wirehook
    // out with --only also leaves it out of the scale run.
    if !scale_with_given && !o.only.contains(&Kind::Wirehook) {
        o.scale_with.clear();
    }
    if floor {
        if !o.only.contains(&Kind::Floor) {
            o.only.push(Kind::Floor);
            o.only
                .sort_by_key(|k| Kind::ALL.iter().position(|a| a == k));
        }
        if !scale_with_given && !o.scale_with.is_empty() && !o.scale_with.contains(&Kind::Floor) {
            o.scale_with.push(Kind::Floor);
        }
    }
    Ok(o)
}
