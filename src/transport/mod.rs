//! The tokio driver: a websocket to the Message Gateway Service on one side, a
//! [`ClientSession`](crate::proto::client::ClientSession) on the other.
//!
//! [`Link`] owns the websocket in a background task (pings, dead-connection detection,
//! resume after a drop); drivers such as [`drive_stream`] move frames between the link
//! and the sans-IO core and payload bytes between the core and local IO. Every protocol
//! decision lives in `proto`.

mod connect;
mod data_key;
mod driver;
mod link;

pub use connect::{ConnectError, DataChannelSocket, connect};
pub use data_key::{DataKey, DataKeyError, DataKeyProvider, answer_data_key_request};
pub use driver::{DriveError, DriveOptions, Outcome, drive_stream, handle_link_event};
pub use link::{Link, LinkError, LinkEvent, LinkOptions, LinkTarget, Resume, ResumeError, Resumed};
