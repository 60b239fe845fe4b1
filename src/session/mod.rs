//! What runs over a data channel. `proxy` pipes stdin/stdout for an ssh ProxyCommand.

pub mod proxy;
