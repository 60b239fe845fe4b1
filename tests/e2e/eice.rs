//! EC2 Instance Connect Endpoint: an instance whose agent is offline, in a VPC the
//! testbed's endpoint serves (docs/protocol.md §10.3).

use std::time::Duration;

use sallyport::aws::{AwsConfig, Ec2};
use sallyport::target::via::{Choice, Via, Way};
use sallyport_testbed::TestbedConfig;
use sallyport_testbed::world::endpoints::EndpointConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{Fixture, ok, random_bytes, run, sha256_file};

pub const ENDPOINT: &str = "eice-0123456789abcdef0";

/// The fixture's instance with its agent offline (reachable through EICE only) and an
/// endpoint in its VPC when `endpoint`.
pub fn agentless(c: &mut TestbedConfig, endpoint: bool) {
    let i = &mut c.instances[0];
    i.ping_status = "ConnectionLost".to_owned();
    i.ec2_state = Some("running".to_owned());
    if endpoint {
        let e = EndpointConfig::new(ENDPOINT, i.vpc_id(), i.subnet_id());
        c.instance_connect_endpoints = vec![e];
    }
}

/// The client's own pieces against the testbed, before any command: EC2 lookups, the
/// choice, the presign and the tunnel to the instance's sshd.
#[test]
fn the_library_chooses_eice_and_its_tunnel_reaches_sshd() {
    let f = Fixture::with_config(|c| {
        c.tls = false;
        agentless(c, true);
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let tb = &f.testbed;
        let creds = aws_sdk_ssm::config::Credentials::new(
            &tb.access_key_id,
            &tb.secret_access_key,
            None,
            None,
            "test",
        );
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(tb.region.clone()))
            .endpoint_url(&tb.endpoint)
            .credentials_provider(aws_sdk_ssm::config::SharedCredentialsProvider::new(creds))
            .build();
        let config = AwsConfig::from(sdk.clone());
        let instances = sallyport::aws::Instances::new(&sdk);
        let ec2 = Ec2::new(&sdk);
        let choice = Choice {
            via: Via::Auto,
            instances: &instances,
            ec2: &ec2,
            port: 22,
            max_duration: Duration::from_secs(3600),
            waiting: false,
        };
        let way = choice.choose(&f.instance).await.unwrap();
        let Way::Eice { tunnel, why } = way else {
            panic!("{way:?}")
        };
        assert_eq!(tunnel.endpoint_id, ENDPOINT);
        assert!(tunnel.plain, "a plain testbed, a plain tunnel");
        assert!(why.contains("ConnectionLost"), "{why}");
        let stream =
            sallyport::session::eice::EiceStream::new(&config, tunnel, &f.instance).unwrap();
        let (mut pipe, _guard) = stream.open().await.unwrap();
        let mut banner = [0u8; 8];
        tokio::time::timeout(Duration::from_secs(20), pipe.read_exact(&mut banner))
            .await
            .expect("sshd's banner in time")
            .unwrap();
        assert_eq!(&banner, b"SSH-2.0-", "sshd answers through the tunnel");
        pipe.shutdown().await.unwrap();
        // --via ssm to it: exit 5 with the hint.
        let ssm = Choice {
            via: Via::Ssm,
            ..choice
        };
        let f5 = sallyport::error::Failure::from(ssm.choose(&f.instance).await.unwrap_err());
        assert_eq!(f5.code as i32, 5);
        assert!(f5.message.contains("--via eice"), "{}", f5.message);
    });
}

const QUICK: Duration = Duration::from_secs(60);
const TRANSFER: Duration = Duration::from_secs(180);

/// Tunnels the testbed opened so far.
fn tunnels(f: &Fixture) -> u64 {
    f.testbed.tunnel_stats().opened
}

/// OpenSSH `ssh`, `scp` and `sftp` through `sallyport proxy` (auto) to an instance whose
/// agent is offline and whose VPC has an endpoint: all intact, all through tunnels, no
/// Session Manager session.
#[test]
fn openssh_reaches_an_agentless_instance_through_the_endpoint() {
    let f = Fixture::with_config(|c| agentless(c, true));
    let out = run(f.ssh_with("-v").arg("echo over-eice"), None, QUICK);
    assert_eq!(ok(&out), "over-eice\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("via EC2 Instance Connect Endpoint eice-0123456789abcdef0"),
        "-v says the way and why: {err}"
    );
    let local = f.path("up.bin");
    std::fs::write(&local, random_bytes(3 << 20, 7)).unwrap();
    ok(&run(
        f.scp(false).arg(&local).arg(f.remote("up-copy.bin")),
        None,
        TRANSFER,
    ));
    assert_eq!(sha256_file(&f.path("up-copy.bin")), sha256_file(&local));
    let back = f.path("back.bin");
    ok(&run(
        f.scp(true).arg(f.remote("up-copy.bin")).arg(&back),
        None,
        TRANSFER,
    ));
    assert_eq!(sha256_file(&back), sha256_file(&local));
    let sftp_back = f.path("sftp-back.bin");
    let batch = format!(
        "get {} {}\n",
        f.path("up.bin").display(),
        sftp_back.display()
    );
    ok(&run(
        f.sftp()
            .arg("-b")
            .arg("-")
            .arg(format!("root@{}", f.instance)),
        Some(batch.as_bytes()),
        TRANSFER,
    ));
    assert_eq!(sha256_file(&sftp_back), sha256_file(&local));
    // Session Manager is asked first (and refuses); no data channel is ever opened.
    assert!(f.testbed.data_channel_dials().is_empty(), "no data channel");
    assert!(tunnels(&f) >= 4, "{} tunnels", tunnels(&f));
}

#[test]
fn via_ssm_to_it_fails_with_the_eice_hint_and_via_eice_without_an_endpoint_names_what_is_missing() {
    let f = Fixture::with_config(|c| agentless(c, true));
    let out = run(f.proxy(&f.instance).args(["--via", "ssm"]), None, QUICK);
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--via eice") && err.contains(ENDPOINT),
        "{err}"
    );
    assert_eq!(tunnels(&f), 0);

    let g = Fixture::with_config(|c| agentless(c, false));
    let out = run(g.proxy(&g.instance).args(["--via", "eice"]), None, QUICK);
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no EC2 Instance Connect Endpoint") && err.contains("vpc-"),
        "{err}"
    );
    // auto: today's error, and what EICE lacks.
    let out = run(&mut g.proxy(&g.instance), None, QUICK);
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("would reach it"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}

/// The embedded client: `ssh` and `scp -j 4` over EICE, each lane its own tunnel.
#[test]
fn embedded_ssh_and_striped_scp_over_eice() {
    let f = Fixture::instance_connect_with(|c| agentless(c, true));
    let out = run(
        &mut f.sallyport(&["ssh", &format!("root@{}", f.instance), "echo", "embedded"]),
        None,
        QUICK,
    );
    assert_eq!(ok(&out), "embedded\n");
    let src = f.path("src.bin");
    std::fs::write(&src, random_bytes(6 << 20, 11)).unwrap();
    let dst = f.path("dst.bin");
    let before = tunnels(&f);
    ok(&run(
        &mut f.sallyport(&[
            "scp",
            "-j",
            "4",
            &f.remote("src.bin"),
            dst.to_str().unwrap(),
        ]),
        None,
        TRANSFER,
    ));
    assert_eq!(sha256_file(&dst), sha256_file(&src));
    assert!(
        tunnels(&f) - before >= 2,
        "lanes over their own tunnels: {}",
        tunnels(&f) - before
    );
}

/// `scp -j 1` both ways over one tunnel, a file large enough that the download's reads in
/// flight grow past 2 MiB and fill the copy connection's 16 MiB SSH window: intact.
#[test]
fn a_one_session_scp_over_eice_at_line_rate_is_intact_both_ways() {
    let f = Fixture::instance_connect_with(|c| agentless(c, true));
    let src = f.path("big.bin");
    std::fs::write(&src, random_bytes(24 << 20, 12)).unwrap();
    let down = f.path("down.bin");
    ok(&run(
        &mut f.sallyport(&[
            "scp",
            "-j",
            "1",
            &f.remote("big.bin"),
            down.to_str().unwrap(),
        ]),
        None,
        TRANSFER,
    ));
    assert_eq!(sha256_file(&down), sha256_file(&src));
    let up = format!("root@{}:{}", f.instance, f.path("up.bin").display());
    ok(&run(
        &mut f.sallyport(&["scp", "-j", "1", down.to_str().unwrap(), &up]),
        None,
        TRANSFER,
    ));
    assert_eq!(sha256_file(&f.path("up.bin")), sha256_file(&src));
    assert!(f.testbed.data_channel_dials().is_empty(), "no data channel");
}

/// A tunnel ended at `--max-tunnel-duration`: the one line, exit 11.
#[test]
fn a_tunnel_ended_at_its_maximum_duration_says_so() {
    let f = Fixture::with_config(|c| agentless(c, true));
    let out = run(
        f.ssh_with("--max-tunnel-duration 2")
            .arg("sleep 8; echo late"),
        None,
        QUICK,
    );
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("reached its maximum duration of 2 s"), "{err}");
}

/// `forward` over EICE: 20 concurrent connections, each its own tunnel, all intact.
#[test]
fn a_forward_over_eice_carries_20_concurrent_connections() {
    use crate::forward::{Forwarder, HttpServer, concurrent_gets};
    let web = HttpServer::start("eice-web");
    let addr = web.addr;
    let f = Fixture::with_config(|c| {
        agentless(c, true);
        c.instances[0].ports.insert(8080, addr);
    });
    let mut fwd = Forwarder::start(&f, &[&f.instance, "0:8080"]);
    let local = fwd.wait_forward();
    concurrent_gets(local, 20, "eice-web");
    assert!(tunnels(&f) >= 20, "{} tunnels", tunnels(&f));
    assert!(f.testbed.data_channel_dials().is_empty(), "no data channel");
    assert_eq!(fwd.interrupt(), Some(0), "stderr: {}", fwd.stderr());
}

/// `doctor TARGET` has its EICE line: the endpoint, its state, and that security groups
/// are not checked; without an endpoint, what would reach the instance.
#[test]
fn doctor_has_its_eice_line() {
    let f = Fixture::with_config(|c| agentless(c, true));
    let out = run(&mut f.sallyport(&["doctor", &f.instance]), None, QUICK);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("eice"))
        .unwrap_or_default();
    assert!(
        line.contains(ENDPOINT)
            && line.contains("create-complete")
            && line.contains("security groups are not checked"),
        "{text}"
    );
    let g = Fixture::with_config(|c| agentless(c, false));
    let out = run(&mut g.sallyport(&["doctor", &g.instance]), None, QUICK);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.contains("eice")
                && l.contains("no EC2 Instance Connect Endpoint serves vpc-")),
        "{text}"
    );
}

/// `ls` shows the way per instance: `eice` for the agent-less one an endpoint serves.
#[test]
fn ls_shows_the_way_per_instance() {
    let f = Fixture::with_config(|c| agentless(c, true));
    let out = run(&mut f.sallyport(&["ls"]), None, QUICK);
    let table = ok(&out);
    let header = table.lines().next().unwrap_or_default();
    assert!(header.trim_end().ends_with("VIA"), "{table}");
    let row = table
        .lines()
        .find(|l| l.starts_with(&f.instance))
        .unwrap_or_default();
    assert!(row.trim_end().ends_with(" eice"), "{table}");
    let json = ok(&run(&mut f.sallyport(&["ls", "--json"]), None, QUICK));
    assert!(json.contains("\"via\": \"eice\""), "{json}");
}

/// Through tinyproxy with the TLS testbed: every EICE websocket is a CONNECT tunnel through
/// the proxy, like the API calls, and OpenSSH's bytes arrive intact.
#[test]
fn the_eice_websocket_goes_through_the_proxy() {
    use crate::forward::{Forwarder, HttpServer, body_for, http_get};
    use crate::http_proxy::Tinyproxy;
    let web = HttpServer::start("eice-behind-the-proxy");
    let addr = web.addr;
    let f = Fixture::with_config(|c| {
        agentless(c, true);
        c.instances[0].ports.insert(8080, addr);
    });
    assert!(
        f.testbed.endpoint.starts_with("https://"),
        "the TLS testbed"
    );
    let port = f.testbed.addr.port();
    let Some(proxy) = Tinyproxy::start(&f, port, None) else {
        return;
    };
    let url = proxy.url("");
    let connect = format!("CONNECT 127.0.0.1:{port} ");
    let connects = |p: &Tinyproxy| {
        p.requests()
            .iter()
            .filter(|r| r.starts_with(&connect))
            .count()
    };

    let local = f.path("through.bin");
    std::fs::write(&local, random_bytes(1 << 20, 23)).unwrap();
    let mut ssh = f.ssh_with("-v");
    ssh.env("HTTPS_PROXY", &url).env("HTTP_PROXY", &url);
    let out = run(ssh.arg("cat"), Some(&std::fs::read(&local).unwrap()), QUICK);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(sha256_of(&out.stdout), sha256_file(&local), "bytes intact");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("EICE tunnel websocket via proxy"), "{err}");
    assert!(!err.contains("EICE tunnel websocket direct"), "{err}");
    assert!(tunnels(&f) >= 1);
    assert!(f.testbed.data_channel_dials().is_empty(), "no data channel");

    // One local connection through a forward: one more tunnel, one more CONNECT.
    let mut fwd = Forwarder::start_with(&f, &[&f.instance, "0:8080", "-v"], |cmd| {
        cmd.env("HTTPS_PROXY", &url).env("HTTP_PROXY", &url);
    });
    let at = fwd.wait_forward();
    let (tunnels_before, connects_before) = (tunnels(&f), connects(&proxy));
    assert_eq!(
        http_get(at, "/p").unwrap(),
        body_for("eice-behind-the-proxy", "/p")
    );
    assert_eq!(tunnels(&f) - tunnels_before, 1, "one tunnel");
    assert!(
        connects(&proxy) > connects_before,
        "the forward's tunnel did not use the proxy: {:#?}",
        proxy.requests()
    );
    assert_eq!(fwd.interrupt(), Some(0), "stderr: {}", fwd.stderr());
}

fn sha256_of(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("{:x}", Sha256::digest(bytes))
}

/// A running EC2 instance Session Manager does not know (no agent registered) in a VPC an
/// endpoint serves: `ls` lists it as reachable via eice only, and ssh reaches it by its
/// Name tag (resolved through EC2) with `auto` over the endpoint.
#[test]
fn an_instance_session_manager_does_not_know_is_listed_and_reached_over_eice() {
    use sallyport_testbed::world::config::InstanceConfig;
    const MANAGED: &str = "i-0aaaaaaaaaaaaaaa1";
    let f = Fixture::with_config(|c| {
        agentless(c, true);
        let i = &mut c.instances[0];
        i.managed = false;
        i.ec2_state = None;
        i.tags.insert("Name".to_owned(), "agentless-web".to_owned());
        c.instances
            .push(InstanceConfig::named(MANAGED, "managed-web"));
    });
    let table = ok(&run(&mut f.sallyport(&["ls"]), None, QUICK));
    let row = |id: &str| {
        (table.lines())
            .find(|l| l.starts_with(id))
            .unwrap_or_default()
            .to_owned()
    };
    let unmanaged = row(&f.instance);
    assert!(unmanaged.contains("NotManaged"), "{table}");
    assert!(unmanaged.contains("agentless-web"), "{table}");
    assert!(unmanaged.trim_end().ends_with(" eice"), "{table}");
    assert!(row(MANAGED).trim_end().ends_with(" ssm+eice"), "{table}");

    let json = ok(&run(&mut f.sallyport(&["ls", "--json"]), None, QUICK));
    let rows: serde_json::Value = serde_json::from_str(&json).unwrap();
    let of = |id: &str| {
        (rows.as_array().unwrap().iter())
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("{id} missing: {json}"))
            .clone()
    };
    let it = of(&f.instance);
    assert_eq!(it["via"], "eice", "{json}");
    assert_eq!(it["ping_status"], "NotManaged", "{json}");
    assert_eq!(it["name"], "agentless-web", "{json}");
    assert_eq!(of(MANAGED)["via"], "ssm+eice", "{json}");

    // By Name tag, auto: Session Manager does not know it, the endpoint reaches it.
    let (banner, err) = proxy_banner(f.proxy("agentless-web").arg("-v"));
    assert_eq!(&banner, b"SSH-2.0-", "sshd's banner: {err}");
    assert!(
        err.contains("via EC2 Instance Connect Endpoint eice-0123456789abcdef0")
            && err.contains("not a managed node"),
        "-v says the way and why: {err}"
    );
    let out = run(f.ssh_to("agentless-web").arg("echo unmanaged"), None, QUICK);
    assert_eq!(ok(&out), "unmanaged\n");
    assert!(f.testbed.data_channel_dials().is_empty(), "no data channel");
    assert!(tunnels(&f) >= 2, "{} tunnels", tunnels(&f));
}

/// `exec` and `shell` need the agent: asked for EICE they say so (exit 2) before any
/// call, rather than quietly going through Session Manager.
#[test]
fn exec_and_shell_asked_for_eice_say_they_need_session_manager() {
    let f = Fixture::with_config(|c| agentless(c, true));
    for args in [
        vec!["exec", "--via", "eice", f.instance.as_str(), "--", "true"],
        vec!["shell", "--via", "eice", f.instance.as_str()],
    ] {
        let out = run(&mut f.sallyport(&args), None, QUICK);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("carries only TCP ports") && err.contains("--via ssm"),
            "{args:?}: {err}"
        );
    }
    assert_eq!(tunnels(&f), 0, "no tunnel");
    assert!(f.testbed.data_channel_dials().is_empty(), "no data channel");
}

/// A websocket has no half-close: when the local side ends at once (`proxy < /dev/null`),
/// what the instance still sends (here sshd's banner) must still arrive before the tunnel
/// is closed, as it does over Session Manager.
#[test]
fn what_the_instance_sends_after_local_input_ends_still_arrives() {
    let f = Fixture::with_config(|c| agentless(c, true));
    let out = run(&mut f.proxy(&f.instance), Some(b""), QUICK);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.stdout.starts_with(b"SSH-2.0-"),
        "sshd's banner after stdin ended: stdout {:?}, stderr {err}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(out.status.success(), "exit {:?}: {err}", out.status.code());
    assert!(tunnels(&f) >= 1, "over EICE");
}

/// Runs `sallyport proxy` with stdin held open, reads the first 8 bytes it passes on
/// (sshd's banner), then ends it: (those bytes, its stderr).
fn proxy_banner(cmd: &mut std::process::Command) -> ([u8; 8], String) {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = (cmd.stdin(Stdio::piped()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sallyport proxy");
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut banner = [0u8; 8];
        let _ = tx.send(stdout.read_exact(&mut banner).map(|_| banner));
    });
    let banner = rx.recv_timeout(QUICK);
    let _ = child.kill();
    let _ = child.wait();
    let mut err = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    match banner {
        Ok(Ok(b)) => (b, err),
        other => panic!("no banner from sallyport proxy ({other:?}): {err}"),
    }
}
