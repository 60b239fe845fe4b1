//! `sallyport-testbed`: a local stand-in for the AWS side of Session Manager.
//!
//! Picture: a client (sallyport, or AWS's own session-manager-plugin) calls the SSM JSON API
//! served by [`api`] (`StartSession`, `TerminateSession`), gets a `StreamUrl` that points back at
//! this server, and opens a websocket there. The [`relay`] plays the Message Gateway Service
//! (opening text frame, token check, added network delay) and hands the data channel to
//! [`agent`], which behaves like amazon-ssm-agent's session code: handshake, sequencing, acks,
//! resends, 1 KiB chunks with a 1 ms pause, and a TCP connection to the address that plays the
//! instance (usually a test sshd on 127.0.0.1).
//!
//! Faults to prove a client against ([`faults`], flags of `sallyport-testbed serve`): loss,
//! duplication, reordering, stalls, recycles, malformed frames; a slow instance
//! (`--instance-write-rate`, [`write_rate`]: the agent then reads and acknowledges client
//! data no faster than the instance takes it) and a relay with small queues
//! (`--relay-queue`, [`relay`]: at the bound it stops reading from the sender). Per-session
//! counts of stream data and retransmissions ([`data_stats`]) are readable in process
//! (`Testbed::data_stats`), at `GET /testbed/stats`, and on stderr when a session ends.
//!
//! Where the real service's behaviour is unknown, the code says so in a comment.

pub mod account;
pub mod agent;
pub mod agent_channel;
pub mod agent_cipher;
pub mod agent_exec;
pub mod agent_kms;
pub mod agent_link;
pub mod agent_port;
pub mod agent_port_mux;
pub mod agent_shell;
pub mod api;
pub mod backlog;
pub mod clock;
pub mod config;
pub mod data_auth;
pub mod data_stats;
pub mod delay_proxy;
pub mod demo;
pub mod describe;
pub mod documents;
pub mod eic;
pub mod eic_keys;
pub mod faults;
pub mod frames;
pub mod http_date;
pub mod kms;
pub mod kms_keys;
pub mod payloads;
pub mod relay;
pub mod relay_paths;
pub mod server;
pub mod sigv4;
pub mod sshd;
pub mod state;
pub mod sts;
pub mod tagging;
pub mod tls;
pub mod write_rate;

pub use config::{InstanceConfig, TestbedConfig};
pub use server::Testbed;
