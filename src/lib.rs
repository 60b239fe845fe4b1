//! sallyport: plain `ssh`, `scp` and `sftp` into EC2 instances through AWS Systems Manager.
//!
//! Data flows one way through the layers: `cli` resolves settings, `aws` starts a session,
//! `transport` drives [`proto::channel`] over the websocket, and a `session` kind moves
//! bytes between the channel and the user. Nothing below `transport` knows about AWS;
//! nothing in `proto` knows about tokio. Beside that path, [`commands`] holds what helps
//! people find and reach nodes (`ls`, `doctor`, `config ssh`), on settings `cli` resolves.

pub mod aws;
pub mod cli;
pub mod commands;
pub mod config_file;
pub mod error;
#[cfg(test)]
mod layering_tests;
pub mod proto;
pub mod session;
pub mod ssh;
pub mod target;
pub mod text;
pub mod transport;
