//! The Session Manager data-channel protocol, sans-IO.
//!
//! Nothing here does IO, spawns tasks or reads a clock: callers pass `now` in and take
//! frames and events out. That keeps every rule testable in virtual time.

pub mod channel;
pub mod client;
pub mod congestion;
pub mod crypto;
mod endpoint;
pub mod handshake;
pub mod message;
#[cfg(any(test, feature = "fuzzing"))]
pub mod ops;
pub mod payload;
pub mod recovery;
pub mod rtt;
pub mod smux;
#[cfg(any(test, feature = "fuzzing"))]
pub mod test_agent;

#[cfg(test)]
mod bottleneck_tests;
#[cfg(test)]
mod sim;
#[cfg(test)]
mod test_captures;
