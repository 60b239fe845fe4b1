//! The CLI edge of the commands in [`crate::commands`]: they run on what
//! [`super::resolve`] made of the command line and the config file; their outcome is made
//! into lines and exit codes here.

use crate::commands::ssh_config;
use crate::error::{ExitCode, Failure};
use crate::target::TargetSettings;

use super::resolve::{ConfigSshRun, DoctorRun, LsRun};

/// Writes to stdout; a reader that went away (`| head`) is not an error, and unlike
/// `print!` a failed write is a message, not a panic.
fn stdout(text: &str) -> Result<(), Failure> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Failure::new(
            ExitCode::LocalIo,
            format!("cannot write to stdout: {e}"),
        )),
        _ => Ok(()),
    }
}

/// `sallyport ls [TARGET…] [--json]`.
pub async fn ls(args: &LsRun) -> Result<u8, Failure> {
    let (aws, forms) = (&args.aws, &args.forms);
    let config = crate::aws::load(aws)
        .await
        .map_err(|e| Failure::aws(e, "the managed nodes"))?;
    let listing = crate::commands::ls::list(&config.sdk, forms)
        .await
        .map_err(|e| {
            let e = crate::aws::advise(e, aws.profile.as_deref());
            let e = match e.kind {
                crate::aws::AwsErrorKind::AccessDenied if e.hint.is_none() => e.with_hint(
                    "listing needs ssm:DescribeInstanceInformation (and tag:GetResources for Name tags)",
                ),
                _ => e,
            };
            Failure::aws(e, "the managed nodes")
        })?;
    match &listing.tags {
        crate::commands::ls::Tags::Denied => eprintln!(
            "sallyport: no permission to read Name tags (tag:GetResources); names shown only for on-premises nodes"
        ),
        crate::commands::ls::Tags::Failed(why) => {
            eprintln!("sallyport: Name tags unavailable: {why}")
        }
        crate::commands::ls::Tags::Read(_) => {}
    }
    if args.json {
        stdout(&listing.json())?;
    } else {
        if listing.nodes.is_empty() {
            eprintln!("sallyport: no managed node matches");
        }
        stdout(&listing.table(std::time::SystemTime::now()))?;
    }
    Ok(0)
}

/// `sallyport config ssh [--push-key [--ephemeral]] [--multiplex] [--install]`.
pub fn config_ssh(args: ConfigSshRun) -> Result<u8, Failure> {
    if let Some(dir) = &args.block.control_dir {
        // ssh does not make the directory, and without it every connection is its own.
        ssh_config::ensure_control_dir(dir).map_err(|e| {
            Failure::new(
                ExitCode::LocalIo,
                format!("cannot use the directory for ssh's control sockets: {e}"),
            )
        })?;
    }
    let block = ssh_config::host_block(&args.block);
    if !args.install {
        stdout(&block)?;
        return Ok(0);
    }
    let home = dirs::home_dir().ok_or_else(|| {
        Failure::new(
            ExitCode::LocalIo,
            "cannot find your home directory; set HOME",
        )
    })?;
    let done = ssh_config::install(&home, &block).map_err(|e| {
        Failure::new(
            ExitCode::LocalIo,
            format!("cannot install the ssh configuration: {e}"),
        )
    })?;
    let conf = done.conf.display();
    let config = done.config.display();
    match (done.conf_written, done.include_added, &done.backup) {
        (false, false, _) => eprintln!("sallyport: {conf} is up to date and {config} includes it"),
        (true, false, _) => eprintln!("sallyport: updated {conf}; {config} already includes it"),
        (_, true, Some(b)) => eprintln!(
            "sallyport: wrote {conf} and added `Include` at the top of {config} (the old one is kept as {})",
            b.display()
        ),
        (_, true, None) => eprintln!("sallyport: wrote {conf} and created {config} to include it"),
    }
    Ok(0)
}

/// `sallyport doctor [TARGET] [--json]`: exit 0 only when no check failed, else the exit
/// code of the first failure's kind (3 credentials, 4 denied, 5 target, 6 unreachable,
/// 9 region, 14 clock).
pub async fn doctor(args: DoctorRun) -> Result<u8, Failure> {
    use crate::commands::doctor::{self as d, Blame, Check, Report};
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let aws = &args.aws;
    let mut report = Report::default();
    let config = match crate::aws::load(aws).await {
        Ok(c) => Some(c),
        Err(e) if e.kind == crate::aws::AwsErrorKind::NoRegion => {
            report.push(Check::fail(
                "region",
                Blame::Region,
                "no AWS region is configured",
                "pass --region, set AWS_REGION, or set `region` in your AWS profile or in sallyport's config file",
            ));
            None
        }
        Err(e) => {
            report.push(d::aws_failure("configuration", &e, ""));
            None
        }
    };
    if let Some(config) = config {
        let region = config
            .sdk
            .region()
            .map(|r| r.to_string())
            .unwrap_or_default();
        report.push(Check::ok("region", region.clone()));
        let endpoints = endpoints(aws.endpoint_url.as_deref(), &region, &env);
        let (probes, identity) = tokio::join!(
            futures_util::future::join_all(endpoints.iter().map(|e| d::probe(e, &config.network))),
            d::identity(&config.sdk)
        );
        let mut skew = false;
        report.push(match identity {
            Ok(c) => c,
            Err(e) => {
                skew = e.kind == crate::aws::AwsErrorKind::ClockSkew;
                let e = crate::aws::advise(e, aws.profile.as_deref());
                d::aws_failure("credentials", &e, "")
            }
        });
        let dates: Vec<(i64, i64)> = probes.iter().filter_map(|p| p.date).collect();
        report.push(d::clock_check(&dates, skew));
        for p in probes {
            report.push(p.check);
        }
        let nodes = d::permissions(&config.sdk, &mut report).await;
        report.push(d::session_kms(&config.sdk).await);
        if let Some(ts) = args.target {
            doctor_target(ts, &config.sdk, nodes.is_some(), &mut report).await;
        }
    }
    if args.json {
        stdout(&report.json())?;
    } else {
        stdout(&report.text())?;
    }
    Ok(match report.first_failure() {
        None => 0,
        Some(b) => {
            (match b {
                Blame::Region | Blame::Other => ExitCode::Aws,
                Blame::Credentials => ExitCode::Credentials,
                Blame::AccessDenied => ExitCode::AccessDenied,
                Blame::Clock => ExitCode::ClockSkew,
                Blame::Unreachable => ExitCode::Unreachable,
                Blame::Target => ExitCode::Target,
            }) as u8
        }
    })
}

async fn doctor_target(
    ts: TargetSettings,
    config: &aws_config::SdkConfig,
    can_describe: bool,
    report: &mut crate::commands::doctor::Report,
) {
    use crate::commands::doctor::{self as d, Blame, Check};
    use crate::target::Spec;
    let fail = |detail: String, fix: &str| Check::fail("target", Blame::Target, detail, fix);
    let raw = &ts.raw;
    if !can_describe && !matches!(ts.target, Spec::Id(_)) {
        return report.push(fail(
            format!("{raw:?} cannot be looked up without ssm:DescribeInstanceInformation"),
            "pass an instance ID, or allow the action",
        ));
    }
    let found = match crate::target::find(&ts, config).await {
        Ok(found) => found,
        Err(f) => {
            let first = f.message.lines().next().unwrap_or_default().to_owned();
            return report.push(fail(first, "see `sallyport ls`"));
        }
    };
    let how = match &ts.target {
        Spec::Id(_) => "an ID, used as is".to_owned(),
        Spec::Name(n) => format!("the name {n:?} (Name tag, else host or node name)"),
        Spec::Tag { key, value } => format!("the tag {key}={value}"),
        Spec::Ip(ip) => format!("the IP address {ip}"),
        Spec::Pick => "no target".to_owned(),
    };
    let alias = ts
        .alias
        .map(|a| format!("alias {a:?} -> "))
        .unwrap_or_default();
    report.push(Check::ok(
        "target",
        format!("{raw} -> {} (by {alias}{how})", found.id),
    ));
    match found.instances.node(&found.id).await {
        Ok(Some(node)) => d::node_checks(&node, report),
        Ok(None) => report.push(fail(
            format!("SSM does not know {}", found.id),
            "check the ID, --profile and --region; the instance needs the SSM agent and an instance profile with AmazonSSMManagedInstanceCore",
        )),
        Err(e) => report.push(d::aws_failure("target", &e, "allow ssm:DescribeInstanceInformation")),
    }
}

/// The endpoint URL each service would use: `--endpoint-url` (or the config file's) for
/// all, else `AWS_ENDPOINT_URL_<SERVICE>`, else `AWS_ENDPOINT_URL`, else AWS's default.
/// ssmmessages' URL comes from StartSession; with an ssm override it is the same host.
fn endpoints(
    override_url: Option<&str>,
    region: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Vec<crate::commands::doctor::Endpoint> {
    let ignore_env = env("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS").is_some_and(|v| v == "true");
    let env = |k: &str| if ignore_env { None } else { env(k) };
    let suffix = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    let one = |service: &'static str, key: Option<&str>| {
        let (url, source) = if let Some(u) = override_url {
            (u.to_owned(), "--endpoint-url or config file".to_owned())
        } else if let Some((k, u)) = key
            .map(|k| format!("AWS_ENDPOINT_URL_{k}"))
            .and_then(|k| env(&k).map(|u| (k, u)))
        {
            (u, k)
        } else if let Some(u) = env("AWS_ENDPOINT_URL") {
            (u, "AWS_ENDPOINT_URL".to_owned())
        } else {
            (
                format!("https://{service}.{region}.{suffix}"),
                "default".to_owned(),
            )
        };
        crate::commands::doctor::Endpoint {
            service,
            url,
            source,
        }
    };
    let ssm = one("ssm", Some("SSM"));
    let messages = if ssm.source == "default" {
        one("ssmmessages", None)
    } else {
        crate::commands::doctor::Endpoint {
            service: "ssmmessages",
            url: ssm.url.clone(),
            source: format!("{}; StartSession names the real one", ssm.source),
        }
    };
    vec![
        ssm,
        messages,
        one("ec2-instance-connect", Some("EC2_INSTANCE_CONNECT")),
        one("kms", Some("KMS")),
        one("sts", Some("STS")),
    ]
}
