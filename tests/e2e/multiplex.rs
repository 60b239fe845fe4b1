//! `sallyport config ssh --multiplex` with real OpenSSH: later `ssh` and `scp` to the same
//! host ride the first one's session (one StartSession on the testbed).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::harness::{Fixture, ok, run};

const QUICK: Duration = Duration::from_secs(60);

/// An OpenSSH client (`ssh` or `scp`) reading the installed config, as a user's would.
fn client(f: &Fixture, program: &str, config: &Path) -> Command {
    let mut cmd = Command::new(program);
    // The fixture's client options minus their `-F /dev/null`: the installed config.
    let options: Vec<String> = f.sshd.client_options().into_iter().skip(2).collect();
    cmd.arg("-F").arg(config).args(options);
    f.aws_env(&mut cmd);
    cmd.env("HOME", f.home());
    cmd
}

/// Runs `cmd` with its output in files, so that a backgrounded master (and the
/// ProxyCommand it keeps) holding an inherited pipe could not hang the test on EOF.
/// (OpenSSH 9.2 lets go of it: a piped stderr reached EOF at once when ssh exited.)
fn run_to_files(cmd: &mut Command, dir: &Path, limit: Duration) -> Output {
    let (out, err) = (dir.join("out"), dir.join("err"));
    cmd.stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap());
    let mut child = cmd.spawn().expect("spawn");
    let Some(status) = crate::harness::exit_within(&mut child, limit) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "{:?} did not finish within {limit:?}; stderr: {}",
            cmd.get_program(),
            std::fs::read_to_string(&err).unwrap_or_default()
        );
    };
    Output {
        status,
        stdout: std::fs::read(&out).unwrap(),
        stderr: std::fs::read(&err).unwrap(),
    }
}

/// Ends the master (`ssh -O exit`) however the test ends.
struct Master {
    cmd: Command,
}

impl Drop for Master {
    fn drop(&mut self) {
        let _ = self
            .cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn start_sessions(f: &Fixture) -> usize {
    f.testbed
        .calls()
        .iter()
        .filter(|c| c.operation == "StartSession")
        .count()
}

#[test]
fn multiplexed_ssh_and_scp_share_one_session() {
    let f = Fixture::new();
    // The fixture's home may be too deep for a socket path; then the runtime directory
    // serves, as on a machine with a long home. Either way the block names it.
    let runtime = f.path("run");
    let mut install = f.sallyport(&["config", "ssh", "--multiplex", "--install"]);
    install.env("XDG_RUNTIME_DIR", &runtime);
    ok(&run(&mut install, None, QUICK));
    let config = f.home().join(".ssh/config");
    let conf = std::fs::read_to_string(f.home().join(".ssh/sallyport.conf")).unwrap();
    assert!(conf.contains("ControlMaster auto"), "{conf}");
    assert!(conf.contains("ControlPersist 10m"), "{conf}");
    let path = conf
        .lines()
        .find_map(|l| l.trim().strip_prefix("ControlPath "))
        .expect("a ControlPath");
    let mux = PathBuf::from(path.strip_suffix("/%C").expect("ends in /%C"));
    assert!(
        mux == f.home().join(".ssh/sallyport-mux") || mux == runtime.join("sallyport-mux"),
        "{conf}"
    );
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&mux).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o700);
    let host = format!("root@{}", f.instance);
    let mut exit = client(&f, "ssh", &config);
    exit.args(["-O", "exit", &host]);
    let _master = Master { cmd: exit };
    let work = f.path("work");
    std::fs::create_dir_all(&work).unwrap();
    for n in 0..2 {
        let mut ssh = client(&f, "ssh", &config);
        ssh.args([&host, "echo", &format!("run-{n}")]);
        let out = run_to_files(&mut ssh, &work, QUICK);
        assert_eq!(ok(&out), format!("run-{n}\n"));
    }
    let dest = f.path("hostname");
    let mut scp = client(&f, "scp", &config);
    scp.arg(format!("{host}:/etc/hostname")).arg(&dest);
    ok(&run_to_files(&mut scp, &work, QUICK));
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        std::fs::read("/etc/hostname").unwrap()
    );
    // The master is up and answers for the host.
    let mut check = client(&f, "ssh", &config);
    check.args(["-O", "check", &host]);
    ok(&run_to_files(&mut check, &work, QUICK));
    assert_eq!(start_sessions(&f), 1, "{:?}", f.testbed.calls());
}
