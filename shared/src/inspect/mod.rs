//! Inspection of every network namespace on the host: what `wiretop`
//! shows, and what the hook's `ps`/`check` can build on.
//!
//! Three parts, each usable alone:
//!
//! - [`discover`] finds the namespaces (`/proc/*/ns/net`, deduplicated by
//!   inode, and nsfs bind mounts from mountinfo) and names them (wirehook's
//!   records, runc's and crun's state directories, `ip netns` names,
//!   processes inside).
//! - [`procs`] is where processes are read (sysinfo: names, command
//!   lines; the namespace link), and wiretop's own CPU and memory.
//! - [`reader`] reads them over netlink, one NETLINK_ROUTE socket per
//!   namespace opened on a dedicated thread and kept open: counters every
//!   call, the topology (links, addresses, routes) again only after a change
//!   notification; veth peers are paired across namespaces.
//! - [`model`] is the serializable [`Snapshot`] both produce (what
//!   `wiretop --json` prints), with rates between two snapshots and totals
//!   that count a veth pair once.
//!
//! ```no_run
//! use wirehook_shared::inspect::{Discovery, Reader};
//! use wirehook_shared::paths::Paths;
//! let mut discovery = Discovery::new(Paths::resolve(None));
//! let mut reader = Reader::new();
//! let first = reader.read(&discovery.discover());
//! std::thread::sleep(std::time::Duration::from_secs(1));
//! let mut second = reader.read(&discovery.discover());
//! second.apply_rates(&first);
//! println!("{}", serde_json::to_string(&second).unwrap());
//! ```

pub mod discover;
pub mod model;
mod nlsock;
pub mod procs;
pub mod reader;

pub use discover::{Discovery, Found, StateDirs};
pub use model::{
    Address, ContainerInfo, Counters, Link, NameSource, Namespace, NsName, PeerRate, PeerRef,
    Process, Rate, RateBase, Route, Snapshot, Totals, WireguardDevice, WireguardPeer,
};
pub use procs::{ProcTable, SelfMonitor};
pub use reader::{ReadStats, Reader};
