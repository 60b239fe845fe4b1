//! How the agent starts processes on the instance.
//!
//! The real agent runs as a service (systemd, launchd), so the shells and commands it
//! starts begin with every signal at its default disposition. The testbed runs wherever a
//! developer or CI started it: under `nohup`, or as a background job of a
//! non-interactive shell, it inherits SIGINT, SIGQUIT and SIGHUP ignored, and an ignored
//! disposition survives `exec`. A remote `sleep` started that way ignores the Ctrl-C a
//! client passes on, which no real agent's child does.
//!
//! Resetting dispositions between fork and exec needs unsafe code, which the workspace
//! forbids, so the reset is done by coreutils' `env --default-signal` (coreutils 8.31+),
//! which resets every signal and then execs the program. The signal mask needs nothing:
//! the standard library's spawn clears it in the child.

use tokio::process::Command;

/// A command that runs `program` with every signal at its default disposition.
pub(crate) fn with_default_signals(program: &str) -> Command {
    let mut cmd = Command::new("env");
    cmd.arg("--default-signal").arg("--").arg(program);
    cmd
}
