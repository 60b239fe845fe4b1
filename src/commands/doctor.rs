//! `sallyport doctor [TARGET]`: a checklist, one line per check (`ok`, `warn`, `FAIL`)
//! with the fix in the same line: region, credentials and who they belong to (STS
//! `GetCallerIdentity`), the clock against the service's `Date` header, each endpoint
//! sallyport needs (DNS, TCP, TLS and an HTTP answer), the read permissions behind
//! names and listings, then for a target: how it was found, its agent's ping status and
//! version against the features that need it, its platform, and whether EC2 Instance
//! Connect can work for it; and the KMS key the Session Manager preferences name.
//!
//! Endpoint probes open their own connections (never a session) and give up after
//! [`PROBE_TIMEOUT`]. They follow the same proxy decision as every API call and
//! websocket ([`crate::transport::ProxyRoutes`]): through a proxy, the probe is the
//! CONNECT tunnel, then TLS and the HTTP answer inside it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::CommandError;
use crate::aws::{AwsError, AwsErrorKind, Instances, NodeFilter, NodeInfo, Tagging};
use crate::error::Failure;
use crate::target::TargetSettings;

pub use super::doctor_probe::{Endpoint, Probe, probe};

/// How long one endpoint probe step may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(8);
/// Port sessions (ssh, scp, sftp, forward) need an agent at least this new.
pub const PORT_SESSIONS_MIN: &str = "2.3.672.0";
/// Multiplexed port forwarding (smux) needs an agent newer than this.
pub const SMUX_AFTER: &str = "3.0.196.0";
/// AWS refuses requests signed more than this far off its clock.
const MAX_SKEW_SECS: i64 = 300;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

/// What kind of failure a check found: the CLI turns the first into the exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Blame {
    Region,
    Credentials,
    AccessDenied,
    Clock,
    Unreachable,
    Target,
    Other,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    pub check: String,
    pub status: Status,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blame: Option<Blame>,
}

impl Check {
    pub fn ok(check: &str, detail: impl Into<String>) -> Check {
        Check {
            check: check.to_owned(),
            status: Status::Ok,
            detail: detail.into(),
            fix: None,
            blame: None,
        }
    }

    pub fn warn(check: &str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            status: Status::Warn,
            fix: Some(fix.into()).filter(|f: &String| !f.is_empty()),
            ..Check::ok(check, detail)
        }
    }

    pub fn fail(
        check: &str,
        blame: Blame,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check {
            status: Status::Fail,
            blame: Some(blame),
            fix: Some(fix.into()).filter(|f: &String| !f.is_empty()),
            ..Check::ok(check, detail)
        }
    }

    /// `ok    credentials          arn:…` / `FAIL  clock  …; fix: …`.
    pub fn line(&self) -> String {
        let status = match self.status {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        };
        let mut line = format!("{status:<4}  {:<31}  {}", self.check, self.detail);
        if let Some(fix) = &self.fix {
            line.push_str("; fix: ");
            line.push_str(fix);
        }
        // Details quote the node's platform and agent, and AWS's error texts: as text.
        crate::text::shown(&line).into_owned()
    }
}

/// The whole report.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    pub fn push(&mut self, c: Check) {
        self.checks.push(c);
    }

    /// The first failure's blame; `None`: nothing failed.
    pub fn first_failure(&self) -> Option<Blame> {
        self.checks.iter().find_map(|c| c.blame)
    }

    pub fn text(&self) -> String {
        let mut out: String = self.checks.iter().map(|c| c.line() + "\n").collect();
        let fails = self
            .checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .count();
        let warns = self
            .checks
            .iter()
            .filter(|c| c.status == Status::Warn)
            .count();
        out.push_str(&match (fails, warns) {
            (0, 0) => "all checks passed\n".to_owned(),
            (0, w) => format!("no failures, {w} warning(s)\n"),
            (f, w) => format!("{f} check(s) failed, {w} warning(s)\n"),
        });
        out
    }

    pub fn json(&self) -> String {
        let v = serde_json::json!({
            "ok": self.first_failure().is_none(),
            "checks": self.checks,
        });
        let text = serde_json::to_string_pretty(&v).unwrap_or_else(|_| "{}".to_owned());
        crate::text::json_safe(&text).into_owned() + "\n"
    }
}

/// The clock line, from the `Date` of the first endpoint that sent one.
pub fn clock_check(dates: &[(i64, i64)], refused_for_skew: bool) -> Check {
    const FIX: &str = "sync this computer's clock (e.g. `sudo timedatectl set-ntp true`)";
    let Some(&(theirs, ours)) = dates.first() else {
        return if refused_for_skew {
            Check::fail(
                "clock",
                Blame::Clock,
                "AWS refused the request's signing time",
                FIX,
            )
        } else {
            Check::warn(
                "clock",
                "no endpoint sent a Date header to compare with",
                "",
            )
        };
    };
    let offset = ours - theirs;
    let how = match offset {
        0 => "in step with AWS (to the second)".to_owned(),
        o if o > 0 => format!("{o} s ahead of AWS"),
        o => format!("{} s behind AWS", -o),
    };
    if offset.abs() > MAX_SKEW_SECS || refused_for_skew {
        Check::fail(
            "clock",
            Blame::Clock,
            format!("this computer's clock is {how}; AWS refuses requests more than 5 minutes off"),
            FIX,
        )
    } else if offset.abs() > 60 {
        Check::warn("clock", format!("this computer's clock is {how}"), FIX)
    } else {
        Check::ok("clock", format!("this computer's clock is {how}"))
    }
}

/// Credentials and who they belong to.
pub async fn identity(config: &aws_config::SdkConfig) -> Result<Check, AwsError> {
    let (arn, account) = crate::aws::account::caller_identity(config).await?;
    Ok(Check::ok(
        "credentials",
        format!("{arn} (account {account})"),
    ))
}

/// The KMS key of the Session Manager preferences, if any.
pub async fn session_kms(config: &aws_config::SdkConfig) -> Check {
    use crate::aws::account::SessionKms;
    const NAME: &str = "session preferences";
    match crate::aws::account::session_kms(config).await {
        Ok(SessionKms::NoPreferences) => Check::ok(
            NAME,
            "none saved in this region: sessions are not KMS-encrypted",
        ),
        Ok(SessionKms::Off) => Check::ok(NAME, "no KMS key: sessions are not KMS-encrypted"),
        Ok(SessionKms::Key(k)) => Check::ok(
            NAME,
            format!(
                "shell and exec sessions are KMS-encrypted with {k} (you need kms:GenerateDataKey on it; port sessions are not encrypted)"
            ),
        ),
        Err(e) if e.kind == AwsErrorKind::AccessDenied => Check::warn(
            NAME,
            "cannot read them (ssm:GetDocument on SSM-SessionManagerRunShell denied)",
            "allow ssm:GetDocument to see whether sessions need a KMS key",
        ),
        Err(e) => Check::warn(NAME, e.message, ""),
    }
}

/// The read permissions names and listings need.
pub async fn permissions(
    config: &aws_config::SdkConfig,
    report: &mut Report,
) -> Option<Vec<NodeInfo>> {
    let nodes = match Instances::new(config).describe(&NodeFilter::All).await {
        Ok(nodes) => {
            let online = nodes.iter().filter(|n| n.is_online()).count();
            report.push(Check::ok(
                "ssm:DescribeInstanceInformation",
                format!("allowed; {} managed nodes, {online} online", nodes.len()),
            ));
            Some(nodes)
        }
        Err(e) => {
            report.push(aws_failure("ssm:DescribeInstanceInformation", &e,
                "allow ssm:DescribeInstanceInformation (e.g. the AmazonSSMReadOnlyAccess policy): targets by name, `ls` and the picker need it"));
            None
        }
    };
    match Tagging::new(config).instance_names().await {
        Ok(names) => report.push(Check::ok(
            "tag:GetResources",
            format!("allowed; {} Name tags", names.len()),
        )),
        Err(e) if crate::aws::tagging_denied(&e) => report.push(Check::warn(
            "tag:GetResources",
            "denied: `sallyport ls` shows no Name tags (names still resolve through SSM)",
            "allow tag:GetResources to see Name tags in `ls`",
        )),
        Err(e) => report.push(Check::warn("tag:GetResources", e.message, "")),
    }
    nodes
}

/// A failed AWS call as a line: the blame from the error's kind.
pub fn aws_failure(check: &str, e: &AwsError, fix_if_denied: &str) -> Check {
    let (blame, fix) = match e.kind {
        AwsErrorKind::AccessDenied => (Blame::AccessDenied, fix_if_denied.to_owned()),
        AwsErrorKind::Credentials => (
            Blame::Credentials,
            e.hint.clone().unwrap_or_else(|| {
                "check your AWS credentials (`aws sso login`, AWS_PROFILE, AWS_ACCESS_KEY_ID)"
                    .to_owned()
            }),
        ),
        AwsErrorKind::ClockSkew => (
            Blame::Clock,
            "sync this computer's clock (e.g. `sudo timedatectl set-ntp true`)".to_owned(),
        ),
        AwsErrorKind::Unreachable => (Blame::Unreachable, "see the endpoint lines".to_owned()),
        _ => (Blame::Other, e.hint.clone().unwrap_or_default()),
    };
    Check::fail(check, blame, e.message.clone(), fix)
}

/// The checks about one node SSM knows.
pub fn node_checks(node: &NodeInfo, report: &mut Report) {
    let seen = node.last_seen(SystemTime::now());
    if node.is_online() {
        report.push(Check::ok(
            "agent ping",
            format!("{} is Online (last ping {seen})", node.id),
        ));
    } else {
        report.push(Check::fail(
            "agent ping",
            Blame::Target,
            format!("{} is {}, last seen {seen}", node.id, node.ping_status),
            "start the instance if it is stopped; else check the agent (`systemctl status amazon-ssm-agent`), its instance profile (AmazonSSMManagedInstanceCore) and its network path to ssm, ssmmessages and ec2messages",
        ));
    }
    let newer = crate::session::forward::driver::version_newer_than;
    match node.agent_version.as_deref() {
        None => report.push(Check::warn("agent version", "unknown", "")),
        Some(v) if !newer(v, PORT_SESSIONS_MIN) && v != PORT_SESSIONS_MIN => report.push(Check::fail(
            "agent version",
            Blame::Target,
            format!("{v}: port sessions need {PORT_SESSIONS_MIN} or newer, so ssh, scp, sftp, proxy and forward cannot work (shell and exec can)"),
            "update the agent (Run Command document AWS-UpdateSSMAgent)",
        )),
        Some(v) if !newer(v, SMUX_AFTER) => report.push(Check::warn(
            "agent version",
            format!("{v}: no multiplexed port forwarding (smux needs newer than {SMUX_AFTER}); `forward` carries one connection per session at a time"),
            "update the agent (AWS-UpdateSSMAgent)",
        )),
        Some(v) => report.push(Check::ok("agent version", format!("{v}: port sessions and smux forwarding"))),
    }
    let platform = node.platform.as_deref().unwrap_or("unknown");
    if platform.to_ascii_lowercase().contains("windows") {
        report.push(Check::warn(
            "platform",
            format!("{platform}: ssh/scp/sftp need an OpenSSH server on the instance"),
            "",
        ));
    } else {
        report.push(Check::ok("platform", platform.to_owned()));
    }
    if node.id.starts_with("mi-") {
        report.push(Check::warn(
            "instance connect",
            "on-premises node: EC2 Instance Connect cannot push keys to it (--push-key)",
            "use a key already authorized on the node",
        ));
    } else {
        report.push(Check::ok(
            "instance connect",
            "EC2 instance: --push-key can work (needs ec2-instance-connect:SendSSHPublicKey, a running instance and its sshd set up for Instance Connect; not tested here)",
        ));
    }
}

pub(super) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` (RFC 9110 IMF-fixdate) -> Unix seconds.
pub fn parse_http_date(s: &str) -> Option<i64> {
    let format = time::format_description::parse_borrowed::<2>(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT",
    );
    let t = time::PrimitiveDateTime::parse(s, &format.ok()?).ok()?;
    Some(t.assume_utc().unix_timestamp())
}

/// `sallyport doctor`.
pub struct DoctorRun {
    pub aws: crate::aws::AwsSettings,
    /// Never interactive: doctor shows no picker.
    pub target: Option<TargetSettings>,
    pub json: bool,
}

/// `sallyport doctor [TARGET] [--json]`: exit 0 only when no check failed, else the exit
/// code of the first failure's kind (3 credentials, 4 denied, 5 target, 6 unreachable,
/// 9 region, 14 clock).
pub async fn run(args: DoctorRun) -> Result<u8, CommandError> {
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
            report.push(aws_failure("configuration", &e, ""));
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
        let endpoints = endpoints(
            aws.endpoint_url.as_deref(),
            &region,
            &env,
            &config.endpoints,
        );
        let (probes, identity) = tokio::join!(
            futures_util::future::join_all(endpoints.iter().map(|e| probe(e, &config.network))),
            identity(&config.sdk)
        );
        let mut skew = false;
        report.push(match identity {
            Ok(c) => c,
            Err(e) => {
                skew = e.kind == crate::aws::AwsErrorKind::ClockSkew;
                let e = crate::aws::advise(e, aws.profile.as_deref());
                aws_failure("credentials", &e, "")
            }
        });
        let dates: Vec<(i64, i64)> = probes.iter().filter_map(|p| p.date).collect();
        report.push(clock_check(&dates, skew));
        for p in probes {
            report.push(p.check);
        }
        let nodes = permissions(&config.sdk, &mut report).await;
        report.push(session_kms(&config.sdk).await);
        if let Some(ts) = args.target {
            doctor_target(ts, &config.sdk, nodes.is_some(), &mut report).await;
        }
    }
    if args.json {
        super::stdout(report.json().as_bytes())?;
    } else {
        super::stdout(report.text().as_bytes())?;
    }
    Ok(report
        .first_failure()
        .map_or(0, crate::error::doctor_exit_status))
}

async fn doctor_target(
    ts: TargetSettings,
    config: &aws_config::SdkConfig,
    can_describe: bool,
    report: &mut Report,
) {
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
            let f = Failure::from(f);
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
        Ok(Some(node)) => node_checks(&node, report),
        Ok(None) => report.push(fail(
            format!("SSM does not know {}", found.id),
            "check the ID, --profile and --region; the instance needs the SSM agent and an instance profile with AmazonSSMManagedInstanceCore",
        )),
        Err(e) => report.push(aws_failure("target", &e, "allow ssm:DescribeInstanceInformation")),
    }
    report.push(super::doctor_eice::check(config, &found.id).await);
}

/// The endpoint URL each service would use: `--endpoint-url` (or the config file's) for
/// all, else `AWS_ENDPOINT_URL_<SERVICE>`, else `AWS_ENDPOINT_URL`, else AWS's default
/// under the FIPS / dual-stack choice. ssmmessages' URL is the configured ssmmessages
/// endpoint (the data channel is dialled there, docs/protocol.md §2.8); else StartSession
/// names it, and with an ssm override it is the same host.
fn endpoints(
    override_url: Option<&str>,
    region: &str,
    env: &dyn Fn(&str) -> Option<String>,
    choices: &crate::aws::Endpoints,
) -> Vec<Endpoint> {
    let ignore_env = env("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS").is_some_and(|v| v == "true");
    let env = |k: &str| if ignore_env { None } else { env(k) };
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
            let source = match (choices.use_fips, choices.use_dual_stack) {
                (false, false) => "default",
                (true, false) => "default, FIPS",
                (false, true) => "default, dual-stack",
                (true, true) => "default, FIPS and dual-stack",
            };
            (
                format!("https://{}", choices.default_host(service, region)),
                source.to_owned(),
            )
        };
        Endpoint {
            service,
            url,
            source,
        }
    };
    let ssm = one("ssm", Some("SSM"));
    let messages = if let Some(host) = &choices.ssmmessages {
        Endpoint {
            service: "ssmmessages",
            url: host.url(),
            source: host.source.clone(),
        }
    } else if ssm.source.starts_with("default") {
        one("ssmmessages", None)
    } else {
        Endpoint {
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

#[cfg(test)]
#[path = "doctor_tests.rs"]
mod tests;
