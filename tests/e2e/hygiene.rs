//! What sallyport refuses and never shows: shell syntax in a host or user name (through
//! sallyport and through the ssh config it installs, with real OpenSSH), plain `http://`
//! endpoints beyond this machine, and secrets in a `RUST_LOG=trace` log.

use std::process::Output;
use std::time::Duration;

use crate::harness::{Fixture, ok, run};
use crate::http_proxy::Tinyproxy;

const QUICK: Duration = Duration::from_secs(60);

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// One `sallyport: …` line, exit `code`, nothing on stdout.
fn refused(out: &Output, code: i32) -> String {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    assert!(out.stdout.is_empty(), "stdout: {:?}", out.stdout);
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("sallyport: "), "{err}");
    err
}

#[test]
fn shell_syntax_in_a_target_or_user_is_refused_before_any_aws_call() {
    let f = Fixture::new();
    let made = f.path("made");
    let touch = format!("touch {}", made.display());
    for target in [
        format!("i-$({touch})"),
        format!("web`{touch}`"),
        format!("web;{touch}"),
        "web\u{1b}[2Jx".to_owned(),
        "tag:Name=a|b".to_owned(),
    ] {
        let out = run(&mut f.proxy(&target), None, QUICK);
        let err = refused(&out, 5);
        assert!(err.contains("the target holds"), "{err}");
        assert!(!err.contains('\u{1b}'), "the name is not echoed: {err:?}");
    }
    let user = format!("root$({touch})");
    let out = run(
        &mut f.sallyport(&[
            "proxy",
            &f.instance,
            "--port",
            "22",
            "--user",
            &user,
            "--push-key",
        ]),
        None,
        QUICK,
    );
    assert!(refused(&out, 2).contains("the user holds"));
    // No `/` before the `:`: scp would take it for a local path.
    let remote = format!("root$(reboot)@{}:/etc/hostname", f.instance);
    let out = run(
        &mut f.sallyport(&["scp", &remote, f.path("copy").to_str().unwrap()]),
        None,
        QUICK,
    );
    assert!(refused(&out, 2).contains("the user holds"));
    let out = run(
        &mut f.sallyport(&["exec", &format!("db$({touch})"), "--", "true"]),
        None,
        QUICK,
    );
    refused(&out, 5);
    assert!(f.testbed.calls().is_empty(), "{:?}", f.testbed.calls());
    assert!(!made.exists());
}

/// The block `config ssh --install` writes keeps a hostile host name from the shell ssh
/// runs the ProxyCommand with. An OpenSSH from 9.6 on (and Debian's 9.2 with the fix
/// backported) refuses such a name on the command line, but not from `HostName` in a
/// config or `-o`: that is how it reaches the ProxyCommand here, where only the quoting
/// stops it.
#[test]
fn the_installed_block_keeps_a_hostile_host_name_from_the_shell() {
    let f = Fixture::new();
    ok(&run(
        &mut f.sallyport(&["config", "ssh", "--install"]),
        None,
        QUICK,
    ));
    let made = f.path("made");
    let ssh_config = f.home().join(".ssh/config");
    for host in [
        format!("i-$(touch {})", made.display()),
        format!("i-`touch {}`", made.display()),
        format!("i-x;touch {}", made.display()),
    ] {
        let mut ssh = std::process::Command::new("ssh");
        // The fixture's client options minus their `-F /dev/null`: the installed config.
        let options: Vec<String> = f.sshd.client_options().into_iter().skip(2).collect();
        ssh.arg("-F").arg(&ssh_config).args(options);
        f.aws_env(&mut ssh);
        ssh.env("HOME", f.home())
            .arg("-o")
            .arg(format!("HostName=\"{host}\""))
            .arg(format!("root@{}", f.instance))
            .arg("true");
        let out = run(&mut ssh, None, QUICK);
        let err = stderr(&out);
        assert!(!out.status.success(), "{host}");
        assert!(!made.exists(), "the shell ran what {host:?} held: {err}");
        assert!(
            err.contains("the target holds"),
            "sallyport refused it: {err}"
        );
    }
    assert!(f.testbed.calls().is_empty(), "{:?}", f.testbed.calls());
}

#[test]
fn plain_http_endpoints_beyond_this_machine_are_refused() {
    let f = Fixture::new();
    for (var, url) in [
        ("AWS_ENDPOINT_URL", "http://192.0.2.1:4566"),
        ("AWS_ENDPOINT_URL_SSM", "http://ssm.example.com"),
        ("AWS_ENDPOINT_URL_KMS", "http://kms.example.com"),
    ] {
        let mut cmd = f.proxy(&f.instance);
        cmd.env(var, url);
        let err = refused(&run(&mut cmd, None, QUICK), 13);
        assert!(err.contains(var) && err.contains("plain http://"), "{err}");
    }
    let out = run(
        &mut f.sallyport(&[
            "--endpoint-url",
            "http://192.0.2.1:4566",
            "exec",
            &f.instance,
            "--",
            "true",
        ]),
        None,
        QUICK,
    );
    refused(&out, 13);
    let config = f.path("xdg-config/sallyport/config.toml");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(&config, "endpoint_url = \"http://192.0.2.1\"\n").unwrap();
    let out = run(&mut f.proxy(&f.instance), None, QUICK);
    refused(&out, 13);
    std::fs::remove_file(&config).unwrap();
    // A `services` section of the AWS config file, which the SDK's clients read themselves.
    let aws_config = f.path("aws-config");
    std::fs::write(
        &aws_config,
        "[default]\nservices = corp\n\n[services corp]\nssm =\n  endpoint_url = http://192.0.2.1:4566\n",
    )
    .unwrap();
    let mut cmd = f.proxy(&f.instance);
    cmd.env_remove("AWS_ENDPOINT_URL")
        .env("AWS_CONFIG_FILE", &aws_config);
    let err = refused(&run(&mut cmd, None, QUICK), 13);
    assert!(
        err.contains("SSM") && err.contains("plain http://"),
        "{err}"
    );
    assert!(f.testbed.calls().is_empty(), "{:?}", f.testbed.calls());
}

/// An endpoint variable that is set but empty (`AWS_ENDPOINT_URL=` in a script) is one
/// line and exit 13, not a panic inside the SDK.
#[test]
fn an_empty_endpoint_variable_is_a_clear_error() {
    let f = Fixture::new();
    for var in ["AWS_ENDPOINT_URL_SSM", "AWS_ENDPOINT_URL"] {
        let mut cmd = f.proxy(&f.instance);
        cmd.env(var, "");
        if var == "AWS_ENDPOINT_URL" {
            cmd.env_remove("AWS_ENDPOINT_URL_SSM");
        }
        let err = refused(&run(&mut cmd, None, QUICK), 13);
        assert!(err.contains(var) && err.contains("empty"), "{err}");
    }
    assert!(f.testbed.calls().is_empty(), "{:?}", f.testbed.calls());
}

/// A `RUST_LOG=trace` log is safe to paste: no TokenValue, session token, secret key or
/// proxy password in it, from `proxy` (through a proxy with Basic auth) or `exec`.
#[test]
fn a_trace_log_gives_no_secret_away() {
    let f = Fixture::new();
    let session_token = "SessionTokenThatMustNotBeLogged0123456789";
    let password = "ProxyPassw0rdNotForLogs";
    let Some(tinyproxy) = Tinyproxy::start(&f, f.testbed.addr.port(), Some(("alice", password)))
    else {
        return;
    };
    let proxy_url = tinyproxy.url(&format!("alice:{password}@"));
    let mut logs = Vec::new();
    let mut proxy = f.proxy(&f.instance);
    proxy
        .env("RUST_LOG", "trace")
        .env("AWS_SESSION_TOKEN", session_token)
        .env("HTTPS_PROXY", &proxy_url);
    let out = run(&mut proxy, Some(b""), QUICK);
    assert!(out.stdout.starts_with(b"SSH-2.0-"), "{}", stderr(&out));
    logs.push(("proxy", out));
    let mut exec = f.sallyport(&["exec", &f.instance, "--", "echo", "traced"]);
    exec.env("RUST_LOG", "trace")
        .env("AWS_SESSION_TOKEN", session_token)
        .env("HTTPS_PROXY", &proxy_url);
    let out = run(&mut exec, None, QUICK);
    assert_eq!(ok(&out), "traced\n");
    logs.push(("exec", out));
    assert!(
        !tinyproxy.requests().is_empty(),
        "the proxy carried the calls"
    );
    let tokens = f.testbed.sessions().all_tokens();
    assert!(tokens.len() >= 2, "{tokens:?}");
    let secret_key = (f.testbed.env().into_iter())
        .find_map(|(k, v)| (k == "AWS_SECRET_ACCESS_KEY").then_some(v))
        .unwrap();
    for (what, out) in &logs {
        let err = stderr(out);
        assert!(
            err.contains("DEBUG aws_") && err.contains("sallyport::"),
            "{what}: a verbose log was written: {err}"
        );
        let mut secrets = vec![session_token, password, secret_key.as_str()];
        secrets.extend(tokens.iter().map(String::as_str));
        for s in secrets {
            assert!(!err.contains(s), "{what}: {s:?} is in the log");
        }
    }
}
