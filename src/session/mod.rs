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
