//! What the user typed as a target -> one instance ID.
//!
//! Forms, tried in this order: an instance or managed-node ID (`i-…`, `mi-…`: used as is,
//! no API call), an alias from the config file (resolved before it comes here, into a
//! [`TargetSettings`]),
//! `tag:Key=Value`, an IP address, and otherwise a name: the `Name` tag first, then the
//! node's computer name (full or its first label) or on-premises name. Lookups go through
//! SSM `DescribeInstanceInformation` ([`Instances`]) and are cached briefly on disk
//! ([`cache`]). No match: say so and suggest close names. Several: list them and fail,
//! unless `--pick first`, or, when stdin and stderr are terminals, let the person pick
//! from a filterable list ([`Spec::Pick`], no target at all, picks among online nodes).
//! Never a prompt otherwise: a ProxyCommand's stdin is ssh's pipe, and scripts keep the
//! exit code 12 and the table.

pub mod cache;
mod error;
mod picker;
mod suggest;
mod table;
pub mod via;

use std::net::IpAddr;
use std::time::Duration;

use crate::aws::{AwsSettings, Instances, NodeFilter, NodeInfo};

pub use error::TargetError;

use table::table;

/// Everything a command that talks to one target runs with, resolved from the command
/// line, the environment and the config file by the caller (the CLI layer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetSettings {
    pub aws: AwsSettings,
    /// The target as typed (empty when none was), for messages.
    pub raw: String,
    pub target: Spec,
    /// The alias the target came from, if any.
    pub alias: Option<String>,
    /// Take the best of several matches instead of failing (`--pick first`).
    pub pick_first: bool,
    /// Keep retrying while the agent is not connected, up to this long (`--wait`).
    pub wait: Option<Duration>,
    /// Stdin and stderr are terminals: several matches (or none given) mean a picker.
    pub interactive: bool,
    /// Alias names, for "did you mean".
    pub aliases: Vec<String>,
    /// Identifies the AWS context for the lookup cache: profile, region, endpoint, key ID.
    pub cache_scope: String,
    /// The way to reach the target (`--via`, `via =`).
    pub via: via::Via,
    /// EICE tunnels end after this long (`--max-tunnel-duration`).
    pub max_tunnel_duration: Duration,
}

/// A parsed target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Spec {
    /// `i-…` or `mi-…`, lower-cased.
    Id(String),
    Tag {
        key: String,
        value: String,
    },
    Ip(IpAddr),
    /// A `Name` tag value, computer name or on-premises node name.
    Name(String),
    /// No target given: the person at the terminal picks an online node.
    Pick,
}

impl std::fmt::Display for Spec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Spec::Id(id) => f.write_str(id),
            Spec::Tag { key, value } => write!(f, "tag:{key}={value}"),
            Spec::Ip(ip) => write!(f, "{ip}"),
            Spec::Name(n) => f.write_str(n),
            Spec::Pick => f.write_str("(no target)"),
        }
    }
}

/// Characters no target or OS user holds: what a shell would act on (`$(…)`, `` ` ``,
/// `;`, `|`, `&`, redirections, quotes, `\`), and control characters. An OpenSSH before
/// 9.6 passes such a host name (from a git submodule URL, say) into a ProxyCommand run by
/// `sh -c`; refusing it here keeps the word from going anywhere, AWS included.
fn unsafe_char(c: char) -> bool {
    c.is_control() || "`$;|&<>()\\'\"".contains(c)
}

/// Refuses a typed word (`what`: "target", "user") holding [`unsafe_char`]s, naming the
/// character but never echoing the word (it may hold terminal escapes).
pub fn check_word(what: &str, raw: &str) -> Result<(), String> {
    match raw.chars().find(|&c| unsafe_char(c)) {
        None => Ok(()),
        Some(c) => Err(format!(
            "the {what} holds {}, which no {what} has (shell syntax or a control character); check where it came from",
            if c.is_control() {
                format!("the control character U+{:04X}", c as u32)
            } else {
                format!("{c:?}")
            }
        )),
    }
}

/// An OS user as typed (`user@`, `--user`, `-l`, the config file): [`check_word`], exit 2.
pub fn check_user(user: &str) -> Result<(), TargetError> {
    check_word("user", user).map_err(TargetError::Usage)
}

/// Parses a target as typed. ssh passes `%h` as typed but may add a trailing dot.
pub fn parse(raw: &str) -> Result<Spec, TargetError> {
    check_word("target", raw).map_err(TargetError::Target)?;
    let t = raw.trim().trim_end_matches('.');
    if t.is_empty() {
        return Err(TargetError::Target("the target is empty; give an instance ID (i-…), a Name tag value, tag:Key=Value, an IP address or an alias".to_owned()));
    }
    let lower = t.to_ascii_lowercase();
    if is_instance_id(&lower) {
        return Ok(Spec::Id(lower));
    }
    if lower.starts_with("tag:") {
        let rest = &t[4..];
        return match rest.split_once('=') {
            Some((k, v)) if !k.is_empty() && !v.is_empty() => Ok(Spec::Tag {
                key: k.to_owned(),
                value: v.to_owned(),
            }),
            _ => Err(TargetError::Target(format!(
                "{raw:?} is not a tag target; write it as tag:Key=Value, e.g. tag:Name=web-1"
            ))),
        };
    }
    if let Ok(ip) = t.trim_start_matches('[').trim_end_matches(']').parse() {
        return Ok(Spec::Ip(ip));
    }
    Ok(Spec::Name(t.to_owned()))
}

/// `^(i|mi)-[0-9a-f]{8,17}$`.
pub fn is_instance_id(t: &str) -> bool {
    ["i-", "mi-"].iter().any(|p| {
        t.strip_prefix(p).is_some_and(|hex| {
            (8..=17).contains(&hex.len())
                && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        })
    })
}

/// How to look targets up.
pub struct Resolver<'a> {
    pub instances: &'a Instances,
    /// Take the best of several matches instead of failing (`--pick first`).
    pub pick_first: bool,
    /// Stdin and stderr are terminals: several matches (or none given) mean a picker.
    pub interactive: bool,
    /// Where the picker gets Name tags for its rows (none: host names only).
    pub tagging: Option<crate::aws::Tagging>,
    /// Alias names from the config file, offered as suggestions.
    pub aliases: Vec<String>,
    /// For messages.
    pub region: String,
    /// The AWS profile in use, for advice such as `aws sso login --profile X`.
    pub profile: Option<String>,
    pub cache: Option<cache::Cache>,
    /// The cache key's context: profile, region, endpoint, access key ID.
    pub cache_scope: String,
    /// Where names, tags and addresses of running EC2 instances that Session Manager does
    /// not know are looked up (their way is an EC2 Instance Connect Endpoint).
    pub ec2: Option<crate::aws::Ec2>,
}

/// The outcome of a lookup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub id: String,
    /// Set when the ID came from the on-disk cache (so a failure can drop the entry).
    pub cache_key: Option<String>,
    pub from_cache: bool,
}

impl Resolver<'_> {
    pub async fn resolve(&self, spec: &Spec) -> Result<Resolved, TargetError> {
        let key = cache::key(&self.cache_scope, &spec.to_string());
        if let Spec::Id(id) = spec {
            return Ok(Resolved {
                id: id.clone(),
                cache_key: None,
                from_cache: false,
            });
        }
        if *spec == Spec::Pick && !self.interactive && !self.pick_first {
            return Err(TargetError::Usage("no target given, and there is no terminal to pick one on: name the target (an instance ID, Name tag, tag:Key=Value, IP or alias); `sallyport ls` lists them".to_owned()));
        }
        let cached = (self.cache.as_ref())
            .filter(|_| *spec != Spec::Pick)
            .and_then(|c| c.get(&key));
        if let Some(id) = cached {
            tracing::debug!(%spec, %id, "target from cache");
            return Ok(Resolved {
                id,
                cache_key: Some(key),
                from_cache: true,
            });
        }
        let (matches, everyone) = self.lookup(spec).await?;
        let unique = matches.len() == 1 && *spec != Spec::Pick;
        let matches = order(matches);
        let picker = self.interactive && !self.pick_first && !matches.is_empty();
        let node = if picker && (matches.len() > 1 || *spec == Spec::Pick) {
            self.pick(spec, matches).await?
        } else {
            self.choose(spec, matches, everyone.as_deref())?
        };
        tracing::debug!(%spec, id = node.id, "target resolved");
        // A `--pick first` choice (or a picked one) is not cached: without the flag the next run must say
        // that the target is ambiguous.
        if let (Some(c), true) = (&self.cache, unique) {
            c.put(&key, &node.id);
        }
        Ok(Resolved {
            id: node.id,
            cache_key: Some(key),
            from_cache: false,
        })
    }

    /// The matching nodes; when Session Manager knows none, the running EC2 instances
    /// that match (if EC2 may be asked).
    async fn lookup(
        &self,
        spec: &Spec,
    ) -> Result<(Vec<NodeInfo>, Option<Vec<NodeInfo>>), TargetError> {
        let (found, everyone) = self.lookup_ssm(spec).await?;
        if !found.is_empty() {
            return Ok((found, everyone));
        }
        Ok((self.lookup_ec2(spec).await, everyone))
    }

    /// Running EC2 instances matching a name, tag or address; none when EC2 cannot be
    /// asked (the lookup then fails as it did before, with the SSM view).
    async fn lookup_ec2(&self, spec: &Spec) -> Vec<NodeInfo> {
        let Some(ec2) = &self.ec2 else {
            return Vec::new();
        };
        let filter = match spec {
            Spec::Name(n) => ("tag:Name".to_owned(), n.clone()),
            Spec::Tag { key, value } => (format!("tag:{key}"), value.clone()),
            Spec::Ip(ip) => ("private-ip-address".to_owned(), ip.to_string()),
            Spec::Id(_) | Spec::Pick => return Vec::new(),
        };
        let query = crate::aws::InstanceQuery {
            ids: Vec::new(),
            filters: vec![
                (filter.0, vec![filter.1]),
                ("instance-state-name".to_owned(), vec!["running".to_owned()]),
            ],
        };
        match ec2.describe_instances(&query).await {
            Ok(found) => found.iter().map(not_managed).collect(),
            Err(e) => {
                tracing::debug!("EC2 lookup of {spec} failed: {}", e.message);
                Vec::new()
            }
        }
    }

    /// The matching nodes, and (when it was fetched) the full list for suggestions.
    async fn lookup_ssm(
        &self,
        spec: &Spec,
    ) -> Result<(Vec<NodeInfo>, Option<Vec<NodeInfo>>), TargetError> {
        let describe = |f: NodeFilter| async move {
            self.instances.describe(&f).await.map_err(|e| {
                let e = crate::aws::advise(e, self.profile.as_deref());
                TargetError::aws(e, &spec.to_string())
            })
        };
        Ok(match spec {
            Spec::Id(id) => (describe(NodeFilter::Ids(vec![id.clone()])).await?, None),
            Spec::Tag { key, value } => {
                let f = NodeFilter::Tag {
                    key: key.clone(),
                    value: value.clone(),
                };
                (describe(f).await?, None)
            }
            Spec::Ip(ip) => {
                let all = describe(NodeFilter::All).await?;
                let m = all
                    .iter()
                    .filter(|n| {
                        n.ip_address
                            .as_deref()
                            .and_then(|a| a.parse::<IpAddr>().ok())
                            .is_some_and(|a| a == *ip)
                    })
                    .cloned()
                    .collect();
                (m, Some(all))
            }
            Spec::Pick => {
                let all = describe(NodeFilter::All).await?;
                let online = all.iter().filter(|n| n.is_online()).cloned().collect();
                (online, None)
            }
            Spec::Name(name) => {
                let f = NodeFilter::Tag {
                    key: "Name".to_owned(),
                    value: name.clone(),
                };
                let tagged = describe(f).await?;
                if !tagged.is_empty() {
                    return Ok((tagged, None));
                }
                let all = describe(NodeFilter::All).await?;
                let m = all
                    .iter()
                    .filter(|n| name_matches(n, name))
                    .cloned()
                    .collect();
                (m, Some(all))
            }
        })
    }

    fn choose(
        &self,
        spec: &Spec,
        mut matches: Vec<NodeInfo>,
        everyone: Option<&[NodeInfo]>,
    ) -> Result<NodeInfo, TargetError> {
        match matches.len() {
            0 => Err(self.no_match(spec, everyone)),
            1 => Ok(matches.remove(0)),
            n if self.pick_first => {
                tracing::info!(
                    "{spec} matches {n} managed nodes; --pick first takes {}",
                    matches[0].id
                );
                Ok(matches.remove(0))
            }
            n => Err(TargetError::Ambiguous(format!(
                "{:?} matches {n} managed nodes in {}; use one of these IDs, or pass --pick first to take the first:\n{}",
                spec.to_string(),
                self.region,
                table(spec, &matches)
            ))),
        }
    }

    fn no_match(&self, spec: &Spec, everyone: Option<&[NodeInfo]>) -> TargetError {
        let region = &self.region;
        let message = match spec {
            Spec::Tag { key, value } => format!(
                "no managed node in {region} has the tag {key}={value}; tag keys and values are case-sensitive, so check the spelling, --profile and --region"
            ),
            Spec::Ip(ip) => format!(
                "no managed node in {region} has the IP address {ip}; check the address, --profile and --region"
            ),
            Spec::Id(id) => format!("SSM does not know {id} in {region}"),
            Spec::Pick => format!(
                "no managed node in {region} is online to pick from; check --profile and --region, or `sallyport ls`"
            ),
            Spec::Name(name) => {
                let mut candidates: Vec<(String, &str)> =
                    self.aliases.iter().map(|a| (a.clone(), "alias")).collect();
                for n in everyone.unwrap_or_default() {
                    if let Some(c) = &n.computer_name {
                        candidates.push((c.clone(), "host name"));
                        if let Some((short, _)) = c.split_once('.') {
                            candidates.push((short.to_owned(), "host name"));
                        }
                    }
                    if let Some(nm) = &n.name {
                        candidates.push((nm.clone(), "node name"));
                    }
                }
                let close = suggest::closest(name, &candidates, 3);
                let hint = if close.is_empty() {
                    "check the spelling (Name tags are case-sensitive, and ssh lower-cases host names), --profile and --region".to_owned()
                } else {
                    let list: Vec<String> = close
                        .iter()
                        .map(|(c, kind)| format!("{} ({kind})", crate::text::shown_max(c, 256)))
                        .collect();
                    format!("did you mean {}?", list.join(", or "))
                };
                format!(
                    "{name:?} is not an instance ID, and no alias, Name tag, IP address or host name in {region} matches it; {hint}"
                )
            }
        };
        TargetError::Target(message)
    }
}

/// An EC2 instance that is no managed node, as a row of the listings.
pub fn not_managed(i: &crate::aws::Ec2Instance) -> NodeInfo {
    NodeInfo {
        id: i.instance_id.clone(),
        ping_status: NOT_MANAGED.to_owned(),
        last_ping: None,
        ip_address: i.private_ip.clone().or_else(|| i.ipv6.clone()),
        computer_name: None,
        name: i.name().map(str::to_owned),
        platform: None,
        agent_version: None,
    }
}

/// The ping status shown for EC2 instances Session Manager does not know.
pub const NOT_MANAGED: &str = "NotManaged";

/// Online first, then the most recently seen, then by ID: the order of the listing, the
/// picker, and what `--pick first` takes.
fn order(mut matches: Vec<NodeInfo>) -> Vec<NodeInfo> {
    matches.sort_by(|a, b| {
        (b.is_online(), b.last_ping, &a.id).cmp(&(a.is_online(), a.last_ping, &b.id))
    });
    matches.dedup_by(|a, b| a.id == b.id);
    matches
}

/// A target resolved for a command: the ID, and what later steps need.
pub struct Found {
    pub id: String,
    pub instances: Instances,
    cache: Option<(cache::Cache, String)>,
}

/// Loads the SDK configuration for `settings.aws` and resolves `settings.target` with it:
/// what every command that talks to one target does first.
pub async fn locate(
    settings: &TargetSettings,
) -> Result<(crate::aws::AwsConfig, Found), TargetError> {
    let config = crate::aws::load(&settings.aws)
        .await
        .map_err(|e| TargetError::aws(e, &settings.raw))?;
    let found = find(settings, &config.sdk).await?;
    Ok((config, found))
}

/// Resolves `settings.target` with the SDK configuration `config` (loaded for
/// `settings.aws`); a picker only when `settings.interactive`.
pub async fn find(
    settings: &TargetSettings,
    config: &aws_config::SdkConfig,
) -> Result<Found, TargetError> {
    let interactive = settings.interactive;
    let mut instances = Instances::new(config);
    if let Some(w) = settings.wait {
        instances.throttle_budget = w;
    }
    let cache = cache::Cache::new();
    let resolver = Resolver {
        instances: &instances,
        pick_first: settings.pick_first,
        interactive,
        tagging: interactive.then(|| crate::aws::Tagging::new(config)),
        aliases: settings.aliases.clone(),
        region: config
            .region()
            .map(|r| r.to_string())
            .unwrap_or_else(|| "this region".to_owned()),
        profile: settings.aws.profile.clone(),
        cache: cache.clone(),
        cache_scope: settings.cache_scope.clone(),
        ec2: Some(crate::aws::Ec2::new(config)),
    };
    let resolved = resolver.resolve(&settings.target).await?;
    if let Some(alias) = &settings.alias {
        tracing::debug!(alias, id = resolved.id, "alias resolved");
    }
    Ok(Found {
        id: resolved.id,
        cache: cache.zip(resolved.cache_key),
        instances,
    })
}

impl Found {
    /// How StartSession should be retried and explained for this target.
    pub fn start_options(&self, settings: &TargetSettings) -> crate::aws::StartOptions {
        crate::aws::StartOptions {
            wait: settings.wait,
            instances: Some(self.instances.clone()),
            profile: settings.aws.profile.clone(),
        }
    }

    /// Forgets a cached lookup whose ID the service refused as a target.
    pub fn settle(&self, refused: bool) {
        if let (true, Some((c, key))) = (refused, &self.cache) {
            c.remove(key);
        }
    }
}

/// A node's computer name (full, or its first label) or on-premises name, ignoring case.
fn name_matches(n: &NodeInfo, name: &str) -> bool {
    let eq = |s: &str| s.eq_ignore_ascii_case(name);
    n.computer_name
        .as_deref()
        .is_some_and(|c| eq(c) || c.split('.').next().is_some_and(eq))
        || n.name.as_deref().is_some_and(eq)
}

#[cfg(test)]
#[path = "target_tests.rs"]
mod tests;
