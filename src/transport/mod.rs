//! The tokio driver: a websocket to the Message Gateway Service on one side, a
//! [`ClientSession`](crate::proto::client::ClientSession) on the other.
//!
//! The driver is deliberately thin: it moves frames between the socket and the sans-IO
//! core, tells the core the time, and moves payload bytes between the core and a local
//! byte stream (stdin/stdout for `proxy`). Every protocol decision lives in `proto`.

mod connect;
mod driver;

pub use connect::{ConnectError, DataChannelSocket, connect};
pub use driver::{DriveError, DriveOptions, Outcome, drive_stream};
