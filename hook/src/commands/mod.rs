//! One module per subcommand.

pub mod check;
pub mod gc;
pub mod hook;
pub mod network;
pub mod ps;
