//! What runs over a data channel: `proxy` pipes stdin/stdout for an ssh ProxyCommand,
//! `exec` runs one command with separate streams and its exit code.

pub mod exec;
pub mod lifecycle;
pub mod proxy;
pub mod smux;
