//! One module per subcommand.

pub mod agent;
pub mod check;
pub mod connect;
pub mod gc;
pub mod hook;
pub mod network;
pub mod overlay;
pub mod ps;
