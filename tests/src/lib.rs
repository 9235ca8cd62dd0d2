//! # wirehook-tests: the harness for wirehook's integration and end-to-end tests
//!
//! Tests here run as root against the real kernel and real runtimes. The
//! harness gives every test its own little machine and takes it apart again,
//! whatever happens in the test.
//!
//! ## The rules every test follows
//!
//! * **Its own host.** [`TestHost::new`] makes a network namespace
//!   (`wh-<tag>-<pid>-<n>`) in which the hook and the runtimes run, and a
//!   private `WIREHOOK_ROOT` on its own tmpfs under `/run/wirehook-tests/`.
//!   Bridges, veths, nftables tables and sysctls the hook makes live in that
//!   namespace, so tests run in parallel (`cargo test` runs one file's tests
//!   on threads) without colliding.
//! * **Clean up, even on panic.** Everything is a guard: dropping the
//!   [`TestHost`] (also while a failed assertion unwinds) deletes the
//!   runtimes' containers, kills every process left in its namespaces,
//!   unmounts everything under its root, deletes its namespaces (taking
//!   their links and tables along) and removes the root. Declare the host
//!   first: containers and uplinks borrow it, so they are dropped before it.
//! * **Unique names.** Use [`TestHost::unique_id`] (or the ids the harness
//!   makes) for container ids: runtimes derive machine-wide cgroup paths
//!   from them.
//! * **Traffic stays inside.** Only addresses inside namespaces the test made
//!   — the host, its containers, its [`Uplink`] peers (documentation ranges
//!   198.51.100.0/24, 203.0.113.0/24, 192.0.2.0/24).
//! * **Never skip.** A test that cannot run where it should fails with a
//!   clear message: the harness panics when it is not root, when a tool is
//!   missing (with the package to install), or when the `wirehook` binary is
//!   not built ("build it first: cargo build --workspace").
//!
//! ## Writing a test
//!
//! An integration test that calls the hook directly on a bare container:
//!
//! ```no_run
//! use wirehook_tests::*;
//!
//! #[test]
//! fn bridge_container_gets_eth0() {
//!     let host = TestHost::new("bridge");          // namespace + WIREHOOK_ROOT
//!     let c = host.container("a");                 // sleep in a fresh netns
//!     let bundle = c.bundle(NetNsEntry::Fresh);    // config.json the hook reads
//!     let ann = [("io.wirehook.network", "bridge")];
//!     let state = c.state_json(c.id(), "creating", &ann, &bundle);
//!     host.wirehook_hook("createRuntime", &state).expect_success("setup");
//!     assert!(find_link(&c.links_json(), "eth0").is_some());
//!     let up = host.uplink();                      // a LAN peer, 198.51.100.2
//!     c.exec(&["ping", "-c1", "-W2", &up.peer_addr().to_string()])
//!         .expect_success("ping the LAN peer through masquerade");
//!     let stop = oci_state(c.id(), "stopped", None, &bundle, &ann);
//!     host.wirehook_hook("poststop", &stop).expect_success("teardown");
//! } // everything is gone here, pass or fail
//! ```
//!
//! An end-to-end test with a real runtime:
//!
//! ```no_run
//! use wirehook_tests::*;
//!
//! #[test]
//! fn runc_bridge() {
//!     let host = TestHost::new("e2e");
//!     let id = host.unique_id("web");
//!     let bundle = Bundle::busybox(&host.root().join("b"), &["sleep", "3600"],
//!                                  &[("io.wirehook.network", "bridge")]);
//!     Runtime::Runc.add_wirehook_hooks(&host, &bundle); // or `wirehook prepare`
//!     let ctr = Runtime::Runc.start(&host, &bundle, &id);
//!     ctr.exec(&["ip", "addr", "show", "eth0"]).expect_success("eth0 inside");
//!     ctr.stop().expect_success("delete runs poststop");
//! }
//! ```
//!
//! Loop over [`Runtime::ALL`] to cover runc, crun and podman alike; the
//! [`runtime`] module documents how each one is invoked on these machines
//! (crun needs a mount namespace without the cgroup2 mount; podman gets its
//! own storage, locks and hooks.d under the test's root), and
//! `tests/RUNTIMES.md` records what each runtime passes to hooks (stages,
//! status, pid, environment, working directory, annotations) — the facts the
//! hook has to cope with.
//!
//! ## Tools
//!
//! * [`TestHost`]: `exec`, `sh`, `wirehook`, `links_json`, `nft_json`, ...
//! * [`Container`]: a bare container (process in a fresh netns), with
//!   [`oci_state`] and [`write_minimal_bundle`] for the hook's inputs.
//! * [`Uplink`], [`EchoServer`], [`tcp_request`], [`udp_request`]: a peer
//!   machine and TCP/UDP checks from any namespace, with the client address
//!   reported back (to see NAT).
//! * [`Bundle`], [`Runtime`], [`RuntimeContainer`], [`write_hooks_d`]:
//!   busybox bundles and real runtimes.
//! * [`DummyHook`]: a recording hook script, to see what runtimes pass.
//! * [`dns_query`], [`TestUpstream`]: DNS questions from inside any
//!   namespace, and an upstream server of the test's own for the
//!   container resolver to forward to.
//! * [`EtcdServer`]: a real etcd inside a test's namespace (cluster store
//!   and overlay tests), killed and restarted at will, gone on drop.
//! * [`OutputExt`]: `expect_success`, `stdout_str`, ... on command output.
//!
//! Debugging: `WIREHOOK_TESTS_KEEP=1` keeps a failed test's host (name and
//! root are printed); clean it up by hand with `ip netns del` and
//! `umount -R`.

pub mod bundle;
pub mod cluster;
pub mod cmd;
pub mod container;
pub mod dns;
pub mod dummy_hook;
pub mod e2e;
pub mod etcd;
pub mod host;
pub mod runtime;
pub mod sys;
pub mod uplink;
pub mod vm;

pub use bundle::{write_hooks_d, Bundle, NETWORK_ANNOTATION};
pub use cmd::OutputExt;
pub use container::{oci_state, write_minimal_bundle, Container, NetNsEntry};
pub use dns::{dns_query, dns_query_tcp, Answer, TestUpstream};
pub use dummy_hook::{DummyHook, HookCall};
pub use etcd::{EtcdServer, EtcdTls};
pub use host::{find_link, TestHost};
pub use runtime::{Runtime, RuntimeContainer};
pub use sys::{in_netns, CpuHog};
pub use uplink::{tcp_request, udp_request, EchoServer, Uplink};
