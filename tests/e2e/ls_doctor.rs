//! `sallyport config ssh`, `ls` and `doctor` end to end, against the testbed: the
//! installed ssh configuration used by real OpenSSH, listings, and diagnoses.

use std::time::Duration;

use crate::harness::{Fixture, SALLYPORT, ok, run};

const QUICK: Duration = Duration::from_secs(60);

/// `config ssh --install` on a HOME with an existing config: idempotent, a backup, other
/// lines untouched; then real ssh reaches the instance by ID and by alias through the
/// installed block alone (no ProxyCommand on its command line).
#[test]
fn config_ssh_install_works_with_real_ssh() {
    let f = Fixture::new();
    let config_toml = f.path("xdg-config/sallyport/config.toml");
    std::fs::create_dir_all(config_toml.parent().unwrap()).unwrap();
    std::fs::write(&config_toml, format!("[alias]\nbox = \"{}\"\n", f.instance)).unwrap();
    let ssh_dir = f.home().join(".ssh");
    std::fs::create_dir_all(&ssh_dir).unwrap();
    let mine = "Host elsewhere\n    User someone\n    Port 2200\n";
    std::fs::write(ssh_dir.join("config"), mine).unwrap();

    let printed = ok(&run(&mut f.sallyport(&["config", "ssh"]), None, QUICK));
    assert!(printed.contains("Host i-* mi-* box\n"), "{printed}");
    assert!(
        printed.contains(&format!("ProxyCommand {SALLYPORT} proxy %h --port %p\n"))
            || printed.contains(&format!(
                "ProxyCommand {} proxy %h --port %p\n",
                std::fs::canonicalize(SALLYPORT).unwrap().display()
            )),
        "{printed}"
    );

    let first = run(
        &mut f.sallyport(&["config", "ssh", "--install"]),
        None,
        QUICK,
    );
    ok(&first);
    let conf = ssh_dir.join("sallyport.conf");
    let include = format!("Include {}\n", conf.display());
    let config = std::fs::read_to_string(ssh_dir.join("config")).unwrap();
    assert_eq!(config, format!("{include}{mine}"));
    assert_eq!(
        std::fs::read_to_string(ssh_dir.join("config.sallyport.bak")).unwrap(),
        mine
    );
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), printed);

    let second = run(
        &mut f.sallyport(&["config", "ssh", "--install"]),
        None,
        QUICK,
    );
    ok(&second);
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("up to date"),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(ssh_dir.join("config")).unwrap(),
        config
    );

    for host in [f.instance.as_str(), "box"] {
        let mut ssh = std::process::Command::new("ssh");
        // The fixture's client options minus their `-F /dev/null`: our config instead.
        let options: Vec<String> = f.sshd.client_options().into_iter().skip(2).collect();
        ssh.arg("-F").arg(ssh_dir.join("config")).args(options);
        f.aws_env(&mut ssh);
        ssh.arg(format!("root@{host}"))
            .arg("echo through-$((40+2))");
        let out = ok(&run(&mut ssh, None, QUICK));
        assert_eq!(out.trim(), "through-42", "{host}");
    }
}
