//! The embedded SSH client's terminal (`sallyport ssh` on a real pty), against an sshd
//! that takes only keys pushed through EC2 Instance Connect: raw mode, resizes, the exit
//! status, `~.`, and a server that refuses the pty.

use std::process::Command;
use std::time::Duration;

use crate::harness::{Fixture, SALLYPORT};
use crate::instance_connect::assert_no_private_keys;

/// Runs `sallyport ARGS` on a fresh pty as its controlling terminal; `session` types and
/// reads; the exit status and the screen come back.
fn on_a_pty(
    fx: &Fixture,
    args: &[&str],
    session: impl FnOnce(&crate::shell::Pty, &crate::shell::Screen, &mut std::fs::File),
) -> (std::process::ExitStatus, String, String, String) {
    use crate::shell::{Pty, Screen};
    let pty = Pty::open(30, 100);
    let before = pty.settings();
    let mut cmd = Command::new("setsid");
    cmd.arg("--ctty").arg(SALLYPORT).args(args);
    fx.aws_env(&mut cmd);
    cmd.env("HOME", fx.home())
        .env("TMPDIR", fx.tmp())
        .env("TERM", "xterm")
        .stdin(pty.slave.try_clone().unwrap())
        .stdout(pty.slave.try_clone().unwrap())
        .stderr(pty.slave.try_clone().unwrap());
    let mut child = cmd.spawn().expect("spawn sallyport");
    let screen = Screen::start(pty.master.try_clone().unwrap());
    let mut keys = pty.master.try_clone().unwrap();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        session(&pty, &screen, &mut keys);
        let status = crate::harness::exit_within(&mut child, Duration::from_secs(20));
        status.unwrap_or_else(|| panic!("sallyport did not exit; screen:\n{}", screen.text()))
    }));
    let _ = child.kill();
    let _ = child.wait();
    let status = match result {
        Ok(s) => s,
        Err(p) => std::panic::resume_unwind(p),
    };
    (status, screen.text(), before, pty.settings())
}

#[test]
fn sallyport_ssh_shell_on_a_pty_resizes_and_returns_the_exit_status() {
    use std::io::Write;
    let fx = Fixture::instance_connect();
    let dest = format!("root@{}", fx.instance);
    let (status, screen, before, after) = on_a_pty(&fx, &["ssh", &dest], |pty, screen, keys| {
        pty.wait_raw(Duration::from_secs(20));
        assert!(pty.is_raw(), "raw mode during the session");
        keys.write_all(b"echo on-'the'-pty; tty; stty size\r")
            .unwrap();
        assert!(
            screen.wait_for("on-the-pty", Duration::from_secs(20)),
            "screen:\n{}",
            screen.text()
        );
        assert!(
            screen.wait_for("/dev/pts/", Duration::from_secs(5)),
            "a remote pty"
        );
        assert!(
            screen.wait_for("30 100", Duration::from_secs(5)),
            "initial size; screen:\n{}",
            screen.text()
        );
        assert!(
            pty.resize_and_check(screen, keys, 40, 120),
            "resize not seen; screen:
{}",
            screen.text()
        );
        keys.write_all(b"exit 3\r").unwrap();
    });
    assert_eq!(status.code(), Some(3), "screen:\n{screen}");
    assert_eq!(after, before, "terminal settings restored");
    assert_no_private_keys(&fx);
}

#[test]
fn a_refused_pty_is_said_and_leaves_the_terminal_as_it_is() {
    use std::io::Write;
    let fx = Fixture::instance_connect_sshd(|o| o.no_tty = true);
    let dest = format!("root@{}", fx.instance);
    let (status, screen, before, after) = on_a_pty(&fx, &["ssh", &dest], |pty, screen, keys| {
        assert!(
            screen.wait_for("refused a terminal (pty)", Duration::from_secs(20)),
            "screen:\n{}",
            screen.text()
        );
        // The shell runs without a pty; the local terminal stays as it was (cooked: the
        // line is echoed and sent on Enter), as OpenSSH leaves it.
        assert!(!pty.is_raw(), "raw mode without a remote pty");
        keys.write_all(b"echo no-'pty'-here; tty; exit 4\r")
            .unwrap();
        assert!(
            screen.wait_for("no-pty-here", Duration::from_secs(20)),
            "screen:\n{}",
            screen.text()
        );
        assert!(
            screen.wait_for("not a tty", Duration::from_secs(5)),
            "screen:\n{}",
            screen.text()
        );
        assert!(
            !pty.is_raw(),
            "raw mode during the session without a remote pty"
        );
    });
    assert_eq!(status.code(), Some(4), "screen:\n{screen}");
    assert_eq!(after, before, "terminal settings untouched");
}

#[test]
fn tilde_dot_after_a_newline_disconnects() {
    use std::io::Write;
    let fx = Fixture::instance_connect();
    let dest = format!("root@{}", fx.instance);
    let (status, screen, before, after) = on_a_pty(&fx, &["ssh", &dest], |pty, screen, keys| {
        pty.wait_raw(Duration::from_secs(20));
        keys.write_all(b"echo ready-'to'-go\r").unwrap();
        assert!(screen.wait_for("ready-to-go", Duration::from_secs(20)));
        // Mid-line `~.` is ordinary text; after Enter it is the escape.
        keys.write_all(b"echo a~.b\r").unwrap();
        assert!(
            screen.wait_for("a~.b\r\n", Duration::from_secs(10)),
            "{}",
            screen.text()
        );
        keys.write_all(b"~.").unwrap();
    });
    assert_eq!(status.code(), Some(255), "screen:\n{screen}");
    assert!(screen.contains("Connection closed"), "{screen}");
    assert_eq!(after, before);
}
