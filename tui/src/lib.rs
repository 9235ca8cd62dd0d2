//! wiretop: a live terminal view of every network namespace on the host.
//!
//! The program is a view over [`wirehook_shared::inspect`]'s snapshot
//! model:
//!
//! - [`source`]: where snapshots come from, behind one seam ([`Source`]):
//!   the real host ([`OsSource`]), fixed frames for tests
//!   ([`FixedSource`]), or the built-in demo ([`DemoSource`]).
//! - [`collector`]: a thread that takes a sample every tick and sends it
//!   over a channel, rates already applied.
//! - [`app`]: the state (selection, sort, filter, pause, units, view,
//!   histories) and the key and mouse handling; [`app::App::apply`] takes
//!   a sample, so time in tests is whatever the test feeds.
//! - [`ui`]: drawing, one module per view (list, detail, topology, help).

pub mod app;
pub mod collector;
pub mod format;
pub mod source;
pub mod ui;

pub use app::App;
pub use source::{DemoSource, FixedSource, OsSource, Source};
