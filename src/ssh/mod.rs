//! The embedded SSH client: `sallyport ssh`, `scp` and `sftp` run OpenSSH's protocols
//! (russh) over a Session Manager port session to port 22, authenticated with an
//! in-memory Ed25519 key pushed through EC2 Instance Connect.

pub mod client;
pub mod error;
pub mod glob;
pub mod known_hosts;
pub mod remote;
pub mod scp_args;
pub mod sftp_shell;
pub mod transfer;

pub use error::SshError;
