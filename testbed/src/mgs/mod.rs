//! The Message Gateway Service: the relay between the client's websocket and the agent
//! ([`relay`], [`relay_paths`]) and its own frames ([`frames`]). Imports `world` and
//! `agent`.

pub mod frames;
pub mod relay;
pub mod relay_paths;
