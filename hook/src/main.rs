//! `wirehook`: the OCI runtime hook and its operator CLI.
//!
//! runc, crun, podman and CRI-O run `wirehook hook STAGE` with the
//! container's state on stdin; setup wires the container's namespace into
//! the network its `io.wirehook.*` annotations ask for, poststop removes it
//! all again. Operators use the other subcommands.
//!
//! How the crate fits together:
//! - `commands/`: one module per subcommand (`hook`, `network`, `ps`,
//!   `gc`, `check`, `overlay`, `agent`); `hook` orchestrates setup and
//!   teardown, `agent` keeps overlay networks current across hosts.
//! - `drivers/`: one module per network mode behind the `Driver` trait
//!   (setup, teardown, check).
//! - `dns` is the per-host resolver of container names (`wirehook dns`,
//!   started on demand) and the hook's client of it.
//! - `resolve` turns requested network names into definitions; `bundle`
//!   reads and edits config.json (`prepare`); `state` reads the runtime's
//!   state JSON; `undo` is the journal that rolls back a failed setup;
//!   `log` writes one line per action.
//! - Everything shared with `wiretop` (store, namespaces, netlink,
//!   firewall) is in the `wirehook_shared` crate.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use wirehook_shared::paths::Paths;

mod bundle;
mod caller;
mod commands;
mod dns;
mod drivers;
mod finish;
mod log;
mod policy;
mod resolv_mount;
mod resolve;
mod state;
mod undo;

#[derive(Parser)]
#[command(
    name = "wirehook",
    version,
    about = "Network containers from an OCI runtime hook: bridge, host, none, container:<id>, macvlan, ipvlan, overlay",
    long_about = "wirehook wires containers into networks when runc, crun, podman or CRI-O call it as an OCI hook \
(`wirehook hook createRuntime` / `poststop`), driven by io.wirehook.* annotations. \
The other subcommands manage networks and inspect or clean up what it made.",
    after_help = "Files: network definitions in /etc/wirehook/networks, state in /run/wirehook \
(both move with --root DIR or WIREHOOK_ROOT=DIR)."
)]
struct Cli {
    /// Keep configuration and state under DIR/etc/wirehook and DIR/run/wirehook (also WIREHOOK_ROOT)
    #[arg(long, global = true, value_name = "DIR")]
    root: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run as an OCI hook: reads the container state JSON on stdin
    #[command(
        after_help = "Stages: createRuntime or prestart set up, poststop tears down, createContainer points the \
container's /etc/resolv.conf at the resolver when its config mounts none (podman --network none), \
others do nothing.\n\
Without STAGE the stage follows from the state's status (stopped: poststop; with a pid: setup), \
which is what hooks.d/wirehook.json relies on (hooks.d/wirehook-resolv.json names createContainer).\n\
Example by hand: echo '{\"id\":\"c1\",\"pid\":1234,\"bundle\":\"/b\",\"annotations\":{\"io.wirehook.network\":\"bridge\"}}' | wirehook hook createRuntime"
    )]
    Hook {
        /// The OCI hook stage (default: from the state's status)
        stage: Option<commands::hook::Stage>,
    },
    /// Create, list, inspect and remove networks; connect running containers to them and disconnect them
    #[command(subcommand)]
    Network(commands::network::NetworkCmd),
    /// List the containers wirehook wired
    Ps {
        /// Print JSON records instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Remove what belongs to containers that no longer run
    Gc {
        /// Only say what would be removed
        #[arg(long)]
        dry_run: bool,
    },
    /// Compare wirehook's records with what the kernel shows
    Check {
        /// Container id or name (default: all)
        container: Option<String>,
    },
    /// Overlay networks: this host's side of them (reconcile, leave, forget)
    #[command(subcommand)]
    Overlay(commands::overlay::OverlayCmd),
    /// Keep this host's overlay entries current from an etcd watch and keep
    /// the host alive in the cluster (run it as a service: wirehook-agent.service)
    Agent(commands::agent::AgentArgs),
    /// Add wirehook's hooks to BUNDLE/config.json and fit its network namespace to the requested mode (runc/crun)
    Prepare {
        /// The OCI bundle directory
        bundle: PathBuf,
    },
    /// The per-host resolver of container names (started by the hook on
    /// demand; not for operators)
    #[command(hide = true)]
    Dns {
        /// Run directory (default: from --root / WIREHOOK_ROOT)
        #[arg(long, value_name = "DIR")]
        run_dir: Option<PathBuf>,
        /// Configuration directory (default: from --root / WIREHOOK_ROOT)
        #[arg(long, value_name = "DIR")]
        config_dir: Option<PathBuf>,
    },
}

/// The hook's own command lines (`wirehook hook [STAGE]`, what runtimes
/// run on every container start and stop), read without building the whole
/// command-line parser; anything else, or anything odd, goes to clap.
fn hook_fast_path() -> Option<Option<commands::hook::Stage>> {
    let mut args = std::env::args_os().skip(1);
    if args.next()? != "hook" {
        return None;
    }
    let stage = match args.next() {
        None => None,
        Some(s) => {
            Some(<commands::hook::Stage as clap::ValueEnum>::from_str(s.to_str()?, false).ok()?)
        }
    };
    args.next().is_none().then_some(stage)
}

fn main() -> ExitCode {
    if let Some(stage) = hook_fast_path() {
        return report(commands::hook::run(&Paths::resolve(None), stage));
    }
    let cli = Cli::parse();
    let paths = Paths::resolve(cli.root.as_deref());
    let result = match cli.command {
        Command::Hook { stage } => commands::hook::run(&paths, stage),
        Command::Network(cmd) => {
            log::init(&paths, "network");
            commands::network::run(&paths, cmd)
        }
        Command::Overlay(cmd) => {
            log::init(&paths, "overlay");
            commands::overlay::run(&paths, cmd)
        }
        Command::Agent(args) => {
            log::init(&paths, "agent");
            log::echo_to_stderr();
            commands::agent::run(&paths, args)
        }
        Command::Ps { json } => commands::ps::run(&paths, json),
        Command::Gc { dry_run } => {
            log::init(&paths, "gc");
            commands::gc::run(&paths, dry_run)
        }
        Command::Dns {
            run_dir,
            config_dir,
        } => {
            let mut paths = paths;
            if let Some(d) = run_dir {
                paths.run_dir = d;
            }
            if let Some(d) = config_dir {
                paths.config_dir = d;
            }
            log::init(&paths, "dns");
            let res = dns::daemon::run(&paths);
            if let Err(e) = &res {
                log::error(format!("resolver: {e:#}"));
            }
            res
        }
        Command::Check { container } => commands::check::run(&paths, container.as_deref()),
        Command::Prepare { bundle } => {
            let exe = std::env::current_exe()
                .unwrap_or_else(|_| PathBuf::from("/usr/local/bin/wirehook"));
            // The hooks must find the same root the operator used, whether
            // it came from --root or WIREHOOK_ROOT (runtimes pass no environment).
            let root = cli.root.clone().or_else(|| {
                std::env::var_os(wirehook_shared::paths::ROOT_ENV)
                    .filter(|r| !r.is_empty())
                    .map(PathBuf::from)
            });
            bundle::prepare(&paths, &bundle, &exe, root.as_deref()).map(|s| println!("{s}"))
        }
    };
    report(result)
}

/// Exit status and the one-line error.
fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the outermost context, then its causes.
            let msg = e
                .chain()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(": ");
            eprintln!("wirehook: {msg}");
            ExitCode::FAILURE
        }
    }
}
