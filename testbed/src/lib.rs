//! `sallyport-testbed`: a local stand-in for the AWS side of Session Manager.
//!
//! Picture: a client (sallyport, or AWS's own session-manager-plugin) calls the SSM JSON API
//! served by [`aws_api`] (`StartSession`, `TerminateSession`), gets a `StreamUrl` that points
//! back at this [`server`], and opens a websocket there. The relay in [`mgs`] plays the
//! Message Gateway Service (opening text frame, token check, added network delay) and hands
//! the data channel to [`agent`], which behaves like amazon-ssm-agent's session code:
//! handshake, sequencing, acks, resends, 1 KiB chunks paced like the agent's, and a TCP
//! connection to the address that plays the instance (usually a test sshd on 127.0.0.1,
//! [`instance::sshd`]).
//!
//! Faults to prove a client against ([`world::faults`], flags of `sallyport-testbed serve`):
//! loss, duplication, reordering, stalls, recycles, malformed frames; a slow instance
//! (`--instance-write-rate`, [`agent::write_rate`]: the agent then reads and acknowledges
//! client data no faster than the instance takes it) and a relay with small queues
//! (`--relay-queue`, [`mgs::relay`]: at the bound it stops reading from the sender).
//! Per-session counts of stream data and retransmissions ([`world::data_stats`]) are
//! readable in process (`Testbed::data_stats`), at `GET /testbed/stats`, and on stderr when
//! a session ends.
//!
//! Where the real service's behaviour is unknown, the code says so in a comment.
//!
//! # Layout
//!
//! One folder per concern, and imports run one way: `world` <- (`instance`, `aws_api`,
//! `agent`, `mgs`) <- `server` <- `tools` and `main.rs`. Within the middle row, `aws_api`
//! may use `instance` (Instance Connect writes the instance's key store) and `mgs` may use
//! `agent` (the relay runs the agent); `agent` may use only `mgs::frames` of `mgs` (a
//! failed KMS handshake closes the channel with MGS's frame), never the relay. Nothing
//! in the library imports `server` but `tools`, and nothing imports `tools`. The test
//! `testbed/tests/layout.rs` reads every file here and fails when a `crate::` path breaks
//! this, or when a file sits outside these folders.
//!
//! - [`world`]: what everything shares and nothing owns: configuration (instances, agent
//!   and relay settings), sessions, the clock, faults, queue bounds, data counts, KMS keys.
//! - [`instance`]: the instance side: a throw-away sshd, the Instance Connect key store, a
//!   lying SSH/SFTP server (`instance::hostile`).
//! - [`aws_api`]: the AWS HTTP APIs (SSM, KMS, EC2 Instance Connect, STS, tagging), the
//!   JSON 1.1 wire, SigV4 checks, the account's credentials and call log.
//! - [`agent`]: amazon-ssm-agent's session end: data channel, handshake, port (basic and
//!   smux), shell, command, KMS session crypto, instance write rate.
//! - [`mgs`]: the Message Gateway: the relay between client websocket and agent, its
//!   delay line and queues, its own frames.
//! - [`server`]: the one loopback listener that routes to `aws_api` and `mgs`; [`Testbed`].
//! - [`tls`]: the listener's HTTPS/WSS identity.
//! - [`tools`]: what runs on top: the delay proxy and the demo.

pub mod agent;
pub mod aws_api;
pub mod eice;
pub mod instance;
pub mod mgs;
pub mod server;
pub mod tls;
pub mod tools;
pub mod world;

pub use server::Testbed;
pub use world::config::{InstanceConfig, TestbedConfig};
