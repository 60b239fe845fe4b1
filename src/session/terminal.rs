//! The local terminal for `sallyport shell`: raw mode while the session runs (restored
//! when the guard drops, on every exit path including errors and panics), and the
//! window size for the remote pty.

use std::io::IsTerminal;
use std::os::fd::AsFd;

use rustix::termios::{OptionalActions, Termios, tcgetattr, tcgetwinsize, tcsetattr};

use crate::proto::payload::SizeData;

/// The plugin's fallback when the size cannot be read (docs/protocol.md §8.1).
pub const FALLBACK_SIZE: SizeData = SizeData {
    cols: 300,
    rows: 100,
};

/// Raw mode on stdin for as long as it lives; the saved settings come back on drop.
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// Puts stdin in raw mode if it is a terminal: every key, Ctrl-C, Ctrl-Z and Ctrl-\
    /// among them, goes to the remote side as a byte, and nothing is echoed locally.
    /// `None` when stdin is not a terminal.
    pub fn enter() -> std::io::Result<Option<RawMode>> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return Ok(None);
        }
        let saved = tcgetattr(stdin.as_fd())?;
        let mut raw = saved.clone();
        raw.make_raw();
        // Drain, not flush: keys typed while the session was starting are kept.
        tcsetattr(stdin.as_fd(), OptionalActions::Drain, &raw)?;
        Ok(Some(RawMode { saved }))
    }

    fn restore(&self) {
        let stdin = std::io::stdin();
        if let Err(e) = tcsetattr(stdin.as_fd(), OptionalActions::Now, &self.saved) {
            tracing::warn!("could not restore the terminal settings: {e}");
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        self.restore();
    }
}

/// The terminal's size, from stdout, else stdin, else stderr; `None` if none is a
/// terminal or it reports 0×0.
pub fn window_size() -> Option<SizeData> {
    let try_fd = |fd: std::os::fd::BorrowedFd<'_>| {
        tcgetwinsize(fd)
            .ok()
            .filter(|w| w.ws_col > 0 && w.ws_row > 0)
            .map(|w| SizeData {
                cols: u32::from(w.ws_col),
                rows: u32::from(w.ws_row),
            })
    };
    try_fd(std::io::stdout().as_fd())
        .or_else(|| try_fd(std::io::stdin().as_fd()))
        .or_else(|| try_fd(std::io::stderr().as_fd()))
}
