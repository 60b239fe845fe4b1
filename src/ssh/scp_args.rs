//! `sallyport scp [-r] [-p] SRC… DST` operands: which side is remote, and where.
//!
//! An operand is remote when it has a ':' before any '/' (OpenSSH's rule), written
//! `[user@]target:path`; the user is what comes before the last '@' of the part before the
//! colon, and an empty path is the remote start (home) directory. A leading ':' is part of
//! a local name, and a local name with a colon can be written `./a:b`. Exactly one side is
//! remote: every source on one target (a download) or the destination (an upload).

use crate::ssh::transfer::{CopyPlan, Direction};

/// The parsed operands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScpOperands {
    /// The instance ID or name before the ':'.
    pub target: String,
    /// The login user, if written as `user@target:`.
    pub user: Option<String>,
    /// What to copy; remote paths are without `target:`.
    pub plan: CopyPlan,
}

/// A command-line mistake, worded for the user (exit like any usage error: 2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The remote parts of one operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteOperand<'a> {
    pub user: Option<&'a str>,
    pub target: &'a str,
    pub path: &'a str,
}

/// Splits `operand` if it is remote (a ':' before any '/', not at the start).
pub fn split_remote(operand: &str) -> Option<RemoteOperand<'_>> {
    if operand.starts_with(':') {
        return None;
    }
    let colon = operand.find([':', '/'])?;
    if operand.as_bytes()[colon] != b':' {
        return None;
    }
    let (host, path) = (&operand[..colon], &operand[colon + 1..]);
    let (user, target) = match host.rfind('@') {
        Some(at) => (Some(&host[..at]), &host[at + 1..]),
        None => (None, host),
    };
    Some(RemoteOperand { user, target, path })
}

/// Parses the operands (everything after the options): sources, then the destination.
pub fn parse_operands<S: AsRef<str>>(operands: &[S]) -> Result<ScpOperands, UsageError> {
    let operands: Vec<&str> = operands.iter().map(AsRef::as_ref).collect();
    let Some((&destination, sources)) = operands.split_last() else {
        return Err(usage("scp needs a source and a destination"));
    };
    if sources.is_empty() {
        return Err(usage("scp needs a source and a destination"));
    }
    for op in &operands {
        if op.is_empty() {
            return Err(usage(
                "empty operand: a remote home directory is written target:",
            ));
        }
        if op.starts_with("scp://") {
            return Err(usage(format!(
                "{op}: scp:// URIs are not supported; write [user@]target:path"
            )));
        }
        if let Some(r) = split_remote(op) {
            if r.target.is_empty() {
                return Err(usage(format!("{op}: no target before the ':'")));
            }
            if r.user == Some("") {
                return Err(usage(format!("{op}: no user before the '@'")));
            }
        }
    }
    let remote_sources: Vec<RemoteOperand<'_>> =
        sources.iter().filter_map(|s| split_remote(s)).collect();
    match (split_remote(destination), remote_sources.len()) {
        (Some(_), n) if n > 0 => Err(usage(
            "copying between two remote ends is not supported: copy through this computer in two steps",
        )),
        (Some(dest), _) => Ok(ScpOperands {
            target: dest.target.to_owned(),
            user: dest.user.map(str::to_owned),
            plan: CopyPlan {
                direction: Direction::Upload,
                sources: sources.iter().map(|s| (*s).to_owned()).collect(),
                destination: dest.path.to_owned(),
            },
        }),
        (None, 0) => Err(usage(format!(
            "neither source nor destination is remote: write the remote one as [user@]target:path (a local name with a colon as ./{destination})"
        ))),
        (None, n) if n < sources.len() => Err(usage(
            "some sources are local and some remote: copy in two commands",
        )),
        (None, _) => {
            let first = remote_sources[0];
            if let Some(other) = remote_sources
                .iter()
                .find(|r| r.target != first.target || r.user != first.user)
            {
                return Err(usage(format!(
                    "all remote sources must be on one target as one user ({}{} and {}{})",
                    first.user.map(|u| format!("{u}@")).unwrap_or_default(),
                    first.target,
                    other.user.map(|u| format!("{u}@")).unwrap_or_default(),
                    other.target
                )));
            }
            Ok(ScpOperands {
                target: first.target.to_owned(),
                user: first.user.map(str::to_owned),
                plan: CopyPlan {
                    direction: Direction::Download,
                    sources: remote_sources.iter().map(|r| r.path.to_owned()).collect(),
                    destination: destination.to_owned(),
                },
            })
        }
    }
}

/// Operands are echoed as text: a pasted name may hold a newline or an escape sequence.
fn usage(message: impl Into<String>) -> UsageError {
    UsageError(crate::text::shown(&message.into()).into_owned())
}

#[cfg(test)]
#[path = "scp_args_tests.rs"]
mod tests;
