#!/usr/bin/env python3
"""Checks `sallyport exec` and `sallyport shell` against the official agent's own shell plugins
(NonInteractiveCommands, Standard_Stream, InteractiveCommands), through the interop relay.
Prints one PASS/FAIL line per check and exits 1 when any check failed.

    interop/exec_shell_check.py [--sallyport PATH] [--out DIR] [--keep]

Build the kit first (interop/build.sh) and sallyport (cargo build --release). Each relay runs
the shells as `nobody` (the agent refuses root for RunAs). Three relays are started: one
where AWS-StartNonInteractiveCommand gets no separateOutputStream (the public document's
default, false), one where it gets "true", and one that KMS-encrypts every session (with
"true"). Not a CI test: it needs the official agent's source.
"""
import argparse
import array
import fcntl
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import termios
import time

INSTANCE = "i-0123456789abcdef0"
EXEC_CMD = ["sh", "-c", "echo out; echo err >&2; exit 3"]
RESULTS = []


def report(name, ok, detail=""):
    RESULTS.append(ok)
    shown = ("\n      got: " + " ".join(detail.split())[-240:]) if detail and not ok else ""
    print("%s  %s%s" % ("PASS" if ok else "FAIL", name, shown), flush=True)


class Relay:
    """One interop relay process; .env is the client environment for it."""

    def __init__(self, out, tmp, name, extra):
        self.log = os.path.join(tmp, name + ".relay.log")
        self.proc = subprocess.Popen(
            [os.path.join(out, "venv", "bin", "python"), os.path.join(os.path.dirname(__file__), "relay.py"),
             "--out", out, "--harness-log", os.path.join(tmp, name + ".agent.log")] + extra,
            stdout=subprocess.PIPE, stderr=open(self.log, "ab"), text=True)
        endpoint = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not endpoint:
            ready, _, _ = select.select([self.proc.stdout], [], [], 1)
            if ready:
                line = self.proc.stdout.readline()
                if not line:
                    break
                if line.startswith("INTEROP_RELAY_ENDPOINT="):
                    endpoint = line.strip().split("=", 1)[1]
        if not endpoint:
            self.stop()
            sys.exit("exec_shell_check: the %s relay did not start; see %s" % (name, self.log))
        home = os.path.join(tmp, "home")
        os.makedirs(home, exist_ok=True)
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home, "TERM": "xterm",
            "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "AKIDINTEROP", "AWS_SECRET_ACCESS_KEY": "x",
            "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": os.path.join(tmp, "no-config"),
            "AWS_SHARED_CREDENTIALS_FILE": os.path.join(tmp, "no-credentials"),
        }

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def check_exec(sallyport, relay, label, expect_separate):
    """exec's streams and exit code; EXPECT_SEPARATE says whether the agent was asked for them."""
    try:
        r = subprocess.run([sallyport, "exec", INSTANCE, "--"] + EXEC_CMD, env=relay.env,
                           capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        report("exec %s: finishes" % label, False, "no exit within 90 s")
        return
    shown = "exit %d, stdout %r, stderr %r" % (r.returncode, r.stdout[-200:], r.stderr[-200:])
    report("exec %s: stdout is the command's stdout only" % label, r.stdout == "out\n", shown)
    report("exec %s: stderr has the command's stderr" % label, "err" in r.stderr.splitlines(), shown)
    report("exec %s: exit code is the command's (3)" % label, r.returncode == 3, shown)
    if not expect_separate:
        report("exec %s: does not report success for an unknown result" % label, r.returncode != 0, shown)


class Pty:
    """A command on a pseudo-terminal of ROWS x COLS, read with a deadline."""

    def __init__(self, argv, env, rows, cols):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.execvpe(argv[0], argv, env)
        self.resize(rows, cols)
        self.seen = b""

    def resize(self, rows, cols):
        # on the master side this also sends SIGWINCH to the terminal's foreground group
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, array.array("H", [rows, cols, 0, 0]))

    def send(self, text):
        os.write(self.fd, text.encode())

    def expect(self, needle, timeout):
        deadline = time.monotonic() + timeout
        while needle.encode() not in self.seen:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            ready, _, _ = select.select([self.fd], [], [], min(left, 0.5))
            if ready:
                try:
                    chunk = os.read(self.fd, 65536)
                except OSError:
                    return needle.encode() in self.seen
                if not chunk:
                    return needle.encode() in self.seen
                self.seen += chunk
        return True

    def tail(self):
        return self.seen[-160:].decode("utf-8", "replace")

    def wait(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.expect("\0never\0", 0.2)  # keep draining output
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        return None


def check_shell(sallyport, relay, label):
    """Standard_Stream through `sallyport shell`: output, window size at start and after a
    resize, Ctrl-C reaching the remote command, and exit."""
    t = Pty([sallyport, "shell", INSTANCE], relay.env, 40, 100)
    # markers are built by the remote shell, so the terminal's echo of the command never matches
    t.send("echo ready-$((20+22))\r")
    report("shell %s: output comes back" % label, t.expect("ready-42", 60), t.tail())
    t.send("echo size-$(stty size | tr ' ' x)\r")
    report("shell %s: starts with the local window size" % label, t.expect("size-40x100", 20), t.tail())
    t.resize(50, 132)
    time.sleep(1)  # the resize travels as its own message; give it time to reach the pty
    t.send("echo size-$(stty size | tr ' ' x)\r")
    report("shell %s: follows a resize" % label, t.expect("size-50x132", 20), t.tail())
    t.send("sleep 60; echo slept-$((1+1))\r")
    time.sleep(2)
    t.send("\x03")
    t.send("echo after-$((3*3))\r")
    ok = t.expect("after-9", 20) and b"slept-2" not in t.seen
    report("shell %s: Ctrl-C interrupts the remote command" % label, ok, t.tail())
    t.send("exit\r")
    rc = t.wait(30)
    report("shell %s: exit ends the session" % label, rc is not None, "sallyport exit %s" % rc)


def check_interactive(sallyport, relay):
    """InteractiveCommands: a command on the agent's pty, through --document."""
    t = Pty([sallyport, "shell", INSTANCE, "--document", "AWS-StartInteractiveCommand", "--parameter",
             "command=sh -c 'echo inter-$((5*5)); read line; echo got-$line; stty size | tr \" \" x'"],
            relay.env, 30, 90)
    report("interactive command: output comes back", t.expect("inter-25", 60), t.tail())
    t.send("abc\r")
    report("interactive command: input reaches it", t.expect("got-abc", 20), t.tail())
    # asked after the input, so the size sent at the start has had time to arrive
    report("interactive command: runs on a pty of the local size", t.expect("30x90", 10), t.tail())
    rc = t.wait(30)
    report("interactive command: the session ends with the command", rc is not None, "sallyport exit %s" % rc)


def main():
    out_default = os.environ.get("INTEROP_DIR") or os.path.join(os.environ.get("TMPDIR") or "/tmp", "sallyport-interop")
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sallyport", default=os.path.join(target, "release", "sallyport"))
    ap.add_argument("--out", default=out_default, help="the kit's build output (interop/build.sh --out)")
    ap.add_argument("--keep", action="store_true", help="keep the logs' temp dir")
    args = ap.parse_args()
    if not os.access(args.sallyport, os.X_OK):
        sys.exit("exec_shell_check: no sallyport at %s (cargo build --release, or --sallyport)" % args.sallyport)
    if not os.access(os.path.join(args.out, "bin", "agent-harness"), os.X_OK):
        sys.exit("exec_shell_check: no %s/bin/agent-harness (run interop/build.sh)" % args.out)
    tmp = tempfile.mkdtemp(prefix="sallyport-exec-shell-check.")
    relays = []
    try:
        plain = Relay(args.out, tmp, "plain", [])
        relays.append(plain)
        separate = Relay(args.out, tmp, "separate", ["--separate-output", "true"])
        relays.append(separate)
        kms = Relay(args.out, tmp, "kms", ["--separate-output", "true", "--kms-key-id", "alias/interop"])
        relays.append(kms)
        check_exec(args.sallyport, plain, "(document default: no separateOutputStream)", False)
        check_exec(args.sallyport, separate, "(separateOutputStream true)", True)
        check_exec(args.sallyport, kms, "(separateOutputStream true, KMS)", True)
        check_shell(args.sallyport, plain, "(plain)")
        check_shell(args.sallyport, kms, "(KMS)")
        check_interactive(args.sallyport, plain)
    finally:
        for relay in relays:
            relay.stop()
        if args.keep or not all(RESULTS):
            print("logs: %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print("%d of %d checks passed" % (sum(RESULTS), len(RESULTS)))
    sys.exit(0 if all(RESULTS) else 1)


if __name__ == "__main__":
    main()
