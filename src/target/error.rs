//! Why no node could be had from what the user typed, grouped by whose fault it is.
//! Only `crate::error` turns a [`TargetError`] into an exit code.

use crate::aws::AwsError;

/// Finding the node failed. The `String` payloads are the whole sentence the user reads.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    // The user's input.
    /// Input that cannot be used as typed (an OS user with shell syntax, no target and
    /// no terminal to pick one on).
    #[error("{0}")]
    Usage(String),
    /// The target names no usable node: malformed, unknown in this account and region,
    /// or not reachable any way allowed.
    #[error("{0}")]
    Target(String),
    /// The target matches several nodes and none was picked.
    #[error("{0}")]
    Ambiguous(String),
    /// The user interrupted the picker.
    #[error("{0}")]
    Interrupted(String),

    // AWS.
    /// Looking the node up failed (`target`: what was looked up, for the advice).
    #[error("{source}")]
    Aws {
        #[source]
        source: Box<AwsError>,
        target: String,
    },

    // This computer.
    /// The terminal cannot show the picker.
    #[error("{0}")]
    LocalIo(String),
    /// The picker task failed (a bug).
    #[error("{0}")]
    Internal(String),
}

impl TargetError {
    /// An AWS lookup about `target` failed.
    pub fn aws(source: AwsError, target: &str) -> TargetError {
        TargetError::Aws {
            source: Box::new(source),
            target: target.to_owned(),
        }
    }
}
