//! sallyport: plain `ssh`, `scp` and `sftp` into EC2 instances through AWS Systems Manager.
//!
//! Data flows one way through the layers: `cli` resolves settings, `aws` starts a session,
//! `transport` drives [`proto::channel`] over the websocket, and a `session` kind moves
//! bytes between the channel and the user. Nothing below `transport` knows about AWS;
//! nothing in `proto` knows about tokio. [`commands`] is the top: one file per command
//! runs its flow on those layers, on the settings `cli` resolved; `main` only dispatches.

pub mod aws;
pub mod cli;
pub mod commands;
pub mod config_file;
pub mod error;
/// Parser properties on arbitrary input, for cargo-fuzz and the tests.
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzz;
#[cfg(test)]
mod fuzz_properties_tests;
pub mod keys;
#[cfg(test)]
mod layering_tests;
pub mod proto;
pub mod session;
pub mod ssh;
pub mod target;
pub mod text;
pub mod timeline;
pub mod transport;
pub mod wildcard;

/// Whether a log event from `target` at `level` may be written: sallyport's own at any
/// level (it never logs a secret), other crates' at DEBUG and above only. At TRACE the AWS
/// SDK prints requests and answers whole (StartSession's TokenValue, signed headers with
/// the session token); no RUST_LOG setting lets those through.
pub fn log_allowed(target: &str, level: tracing::Level) -> bool {
    let ours = target == "sallyport" || target.starts_with("sallyport::");
    ours || level <= tracing::Level::DEBUG
}

#[cfg(test)]
mod log_tests {
    use tracing::Level;

    #[test]
    fn only_our_own_logs_reach_trace() {
        assert!(super::log_allowed(
            "sallyport::transport::link",
            Level::TRACE
        ));
        assert!(super::log_allowed("sallyport", Level::TRACE));
        for other in [
            "aws_smithy_runtime::client::orchestrator",
            "aws_sigv4::http_request::sign",
            "sallyport_testbed",
            "hyper",
        ] {
            assert!(!super::log_allowed(other, Level::TRACE), "{other}");
            assert!(super::log_allowed(other, Level::DEBUG), "{other}");
            assert!(super::log_allowed(other, Level::ERROR), "{other}");
        }
    }
}
