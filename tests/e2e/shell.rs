//! `sallyport exec` and `sallyport shell` against the testbed's command and shell
//! sessions (this machine plays the instance). These stay on plain `ws://` (the harness
//! serves TLS by default), so the plain path keeps its own tests.

use std::process::Command;
use std::time::Duration;

use crate::harness::{Fixture, SALLYPORT, run};

const QUICK: Duration = Duration::from_secs(60);

/// `sallyport ARGS` with every signal at its default disposition, as a terminal starts
/// it: these tests send it signals, and a test binary started in the background
/// (`nohup`, `cmd &` in a script) would hand it SIGINT, SIGQUIT and SIGHUP ignored.
fn sallyport(f: &Fixture, args: &[&str]) -> Command {
    let mut cmd = Command::new("env");
    cmd.args(["--default-signal", "--", SALLYPORT]).args(args);
    f.aws_env(&mut cmd);
    cmd
}

#[test]
fn exec_separates_streams_and_returns_the_exit_code() {
    let f = Fixture::plain();
    let out = run(
        &mut sallyport(
            &f,
            &[
                "exec",
                &f.instance,
                "--",
                "sh",
                "-c",
                "echo out; echo err >&2; exit 3",
            ],
        ),
        None,
        QUICK,
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn exec_streams_large_output_intact() {
    let f = Fixture::plain();
    // 200 000 bytes of stdout: ~200 agent messages, paced as the agent paces them.
    let out = run(
        &mut sallyport(
            &f,
            &[
                "exec",
                &f.instance,
                "--",
                "head -c 200000 /dev/zero | tr '\\0' x",
            ],
        ),
        None,
        QUICK,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout.len(), 200_000);
    assert!(out.stdout.iter().all(|b| *b == b'x'));
}

#[test]
fn exec_session_is_terminated_afterwards() {
    let f = Fixture::plain();
    let out = run(
        &mut sallyport(&f, &["exec", &f.instance, "--", "true"]),
        None,
        QUICK,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let calls = f.testbed.calls();
    assert!(
        calls.iter().any(|c| c.operation == "TerminateSession"),
        "{calls:?}"
    );
}

/// A pty pair for the shell test: the test holds the master (the "user's terminal
/// emulator") and keeps a slave descriptor to read the terminal settings back.
pub(crate) struct Pty {
    pub(crate) master: std::fs::File,
    pub(crate) slave: std::fs::File,
}

impl Pty {
    pub(crate) fn open(rows: u16, cols: u16) -> Pty {
        use rustix::fs::{Mode, OFlags};
        use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
        let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).expect("openpt");
        grantpt(&master).unwrap();
        unlockpt(&master).unwrap();
        let name = ptsname(&master, Vec::new()).unwrap();
        let slave = rustix::fs::open(
            name.as_c_str(),
            OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .expect("open the pty slave");
        let pty = Pty {
            master: master.into(),
            slave: slave.into(),
        };
        pty.resize(rows, cols);
        pty
    }

    pub(crate) fn resize(&self, rows: u16, cols: u16) {
        let ws = rustix::termios::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        rustix::termios::tcsetwinsize(&self.master, ws).expect("resize");
    }

    /// The terminal settings, as text that compares every field.
    pub(crate) fn settings(&self) -> String {
        let t = rustix::termios::tcgetattr(&self.slave).expect("tcgetattr");
        format!(
            "{:?} {:?} {:?} {:?} {:?}",
            t.input_modes, t.output_modes, t.control_modes, t.local_modes, t.special_codes
        )
    }

    /// Waits up to `limit` for the program on the pty to put it in raw mode.
    pub(crate) fn wait_raw(&self, limit: Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        while !self.is_raw() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.is_raw()
    }

    /// Resizes the terminal, then types `stty size` until the remote shell reports the
    /// new size (SIGWINCH is asynchronous); false if it never does.
    pub(crate) fn resize_and_check(
        &self,
        screen: &Screen,
        keys: &mut std::fs::File,
        rows: u16,
        cols: u16,
    ) -> bool {
        use std::io::Write;
        self.resize(rows, cols);
        let expected = format!("{rows} {cols}");
        (0..20).any(|_| {
            keys.write_all(b"stty size\r").unwrap();
            screen.wait_for(&expected, Duration::from_millis(500))
        })
    }

    pub(crate) fn is_raw(&self) -> bool {
        let t = rustix::termios::tcgetattr(&self.slave).expect("tcgetattr");
        !t.local_modes.contains(rustix::termios::LocalModes::ICANON)
            && !t.local_modes.contains(rustix::termios::LocalModes::ECHO)
    }
}

/// Everything the master has read so far, filled by a thread.
pub(crate) struct Screen(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Screen {
    pub(crate) fn start(master: std::fs::File) -> Screen {
        let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let b = buf.clone();
        std::thread::spawn(move || {
            use std::io::Read;
            let mut master = master;
            let mut chunk = [0u8; 4096];
            // Ends with EIO once every slave descriptor is closed, or at process exit.
            while let Ok(n) = master.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                b.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        });
        Screen(buf)
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    pub(crate) fn wait_for(&self, needle: &str, limit: Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if self.text().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

#[test]
fn shell_on_a_real_pty_runs_commands_resizes_passes_ctrl_c_and_restores_the_terminal() {
    use std::io::Write;
    let f = Fixture::plain();
    let pty = Pty::open(30, 100);
    let before = pty.settings();
    assert!(!pty.is_raw());
    // `setsid --ctty`: sallyport gets the pty as its controlling terminal, as in a real
    // terminal window, so resizing sends it SIGWINCH.
    let mut cmd = Command::new("env");
    cmd.args([
        "--default-signal",
        "--",
        "setsid",
        "--ctty",
        SALLYPORT,
        "shell",
    ])
    .arg(&f.instance);
    f.aws_env(&mut cmd);
    cmd.stdin(pty.slave.try_clone().unwrap())
        .stdout(pty.slave.try_clone().unwrap())
        .stderr(pty.slave.try_clone().unwrap());
    let mut child = cmd.spawn().expect("spawn sallyport shell");
    let screen = Screen::start(pty.master.try_clone().unwrap());
    let mut keys = pty.master.try_clone().unwrap();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        pty.wait_raw(Duration::from_secs(20));
        // The quotes keep the typed command from matching what it prints.
        keys.write_all(b"echo hello-'from'-the-shell; stty size\r")
            .unwrap();
        assert!(
            screen.wait_for("hello-from-the-shell", Duration::from_secs(20)),
            "no command output; screen:\n{}",
            screen.text()
        );
        assert!(pty.is_raw(), "the local terminal is raw during the session");
        assert!(
            screen.wait_for("30 100", Duration::from_secs(10)),
            "initial size not sent; screen:\n{}",
            screen.text()
        );
        assert!(
            pty.resize_and_check(&screen, &mut keys, 40, 120),
            "resize not seen; screen:\n{}",
            screen.text()
        );
        // Ctrl-C reaches the remote shell and interrupts the command there.
        keys.write_all(b"sleep 30\r").unwrap();
        std::thread::sleep(Duration::from_millis(300));
        keys.write_all(b"\x03").unwrap();
        keys.write_all(b"echo after-'inter'rupt\r").unwrap();
        assert!(
            screen.wait_for("after-interrupt", Duration::from_secs(10)),
            "Ctrl-C did not interrupt the remote sleep; screen:\n{}",
            screen.text()
        );
        keys.write_all(b"exit\r").unwrap();
        let status = crate::harness::exit_within(&mut child, Duration::from_secs(20));
        status.unwrap_or_else(|| panic!("sallyport shell did not exit; screen:\n{}", screen.text()))
    }));
    let _ = child.kill();
    let _ = child.wait();
    let status = match result {
        Ok(s) => s,
        Err(p) => std::panic::resume_unwind(p),
    };
    assert_eq!(status.code(), Some(0), "screen:\n{}", screen.text());
    assert_eq!(pty.settings(), before, "terminal settings restored");
}

#[test]
fn shell_runs_another_document_with_parameters() {
    let f = Fixture::plain();
    let out = run(
        &mut sallyport(
            &f,
            &[
                "shell",
                &f.instance,
                "--document",
                "AWS-StartInteractiveCommand",
                "--parameter",
                "command=echo interactive-'command'-ran",
            ],
        ),
        None,
        QUICK,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("interactive-command-ran"), "{stdout}");
}

#[test]
fn exec_passes_ctrl_c_to_the_remote_command() {
    use std::io::{BufRead, BufReader, Read};
    let f = Fixture::plain();
    let mut cmd = sallyport(
        &f,
        &[
            "exec",
            &f.instance,
            "--",
            // The agent signals the shell itself, which runs its trap between two sleeps.
            "trap 'echo trapped; exit 5' INT; echo ready; i=0; while [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done",
        ],
    );
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut first = String::new();
        let _ = out.read_line(&mut first);
        let _ = tx.send(first);
        let mut rest = String::new();
        let _ = out.read_to_string(&mut rest);
        let _ = tx.send(rest);
    });
    let first = rx.recv_timeout(QUICK).unwrap_or_default();
    assert_eq!(first, "ready\n");
    let _ = Command::new("kill")
        .arg("-INT")
        .arg(child.id().to_string())
        .status();
    let Some(status) = crate::harness::exit_within(&mut child, QUICK) else {
        let _ = child.kill();
        panic!("sallyport exec did not end after Ctrl-C");
    };
    let rest = rx.recv_timeout(QUICK).unwrap_or_default();
    assert_eq!(rest, "trapped\n");
    assert_eq!(status.code(), Some(5));
}

/// The Ctrl-C tests above, run again by this test binary in a child that starts with
/// SIGINT, SIGQUIT and SIGHUP ignored, as `nohup bash .ci/run &` or any background job of
/// a non-interactive shell starts the suite. The testbed's agent must still start remote
/// commands and shells with default dispositions, as a real agent (a service) does, or
/// the remote `sleep` ignores the Ctrl-C that sallyport passes on.
#[test]
fn ctrl_c_tests_pass_when_the_suite_starts_with_signals_ignored() {
    let tests = [
        "shell::exec_passes_ctrl_c_to_the_remote_command",
        "shell::shell_on_a_real_pty_runs_commands_resizes_passes_ctrl_c_and_restores_the_terminal",
    ];
    let me = std::env::current_exe().expect("the test binary's path");
    let mut cmd = Command::new("env");
    cmd.arg("--ignore-signal=INT,QUIT,HUP")
        .arg("--")
        .arg(me)
        .arg("--exact")
        .args(tests)
        .args(["--test-threads=1", "--nocapture"]);
    let out = run(&mut cmd, None, Duration::from_secs(300));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the Ctrl-C tests failed with SIGINT/SIGQUIT/SIGHUP ignored:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Both ran (an --exact filter that matches nothing would pass vacuously).
    assert!(stdout.contains("2 passed"), "{stdout}");
}
