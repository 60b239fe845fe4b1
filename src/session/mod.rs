//! What runs over a data channel: `proxy` pipes stdin/stdout for an ssh ProxyCommand,
//! `exec` runs one command with separate streams and its exit code, `forward` carries
//! local TCP connections (listeners, or a SOCKS5 server) over port sessions, `shell` runs
//! an interactive shell on a raw local terminal.

pub mod eice;
pub mod error;
pub mod exec;
pub mod exec_document;
pub mod forward;
pub mod lifecycle;
pub mod proxy;
pub mod shell;
pub mod stream;
pub mod terminal;

pub use error::SessionError;

/// The most the agent sends a second on one session, in bytes: it reads at most 1 KiB
/// into each message and sleeps 1 ms after each (docs/protocol.md §6.6), so no download
/// over Session Manager beats this, whatever the link (in practice it runs at 0.5-0.8 of
/// it).
pub const AGENT_OUTPUT_CEILING: f64 = 1024.0 * 1000.0;
