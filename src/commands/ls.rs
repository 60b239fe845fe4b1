//! `sallyport ls [TARGET…]`: the managed nodes Session Manager can reach, one row each,
//! online first. `DescribeInstanceInformation` gives the nodes; their EC2 `Name` tags come
//! from one paginated `tag:GetResources` call ([`crate::aws::Tagging`]), and when that is
//! denied the NAME column says so instead of failing the listing.
//!
//! Filters are the target forms used everywhere (ID, Name, `tag:Key=Value`, IP, host
//! name, alias — resolved by `cli/` into [`Spec`]s) and a name may be a glob (`web-*`,
//! `db-?`), matched against Name tags (case-sensitive, as tags are) and computer or
//! on-premises names (ignoring case, as elsewhere). A node is listed when any filter
//! admits it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_config::SdkConfig;
use serde::Serialize;

use super::CommandError;
use crate::aws::{AwsError, Instances, NodeFilter, NodeInfo, Tagging};
use crate::target::Spec;
use crate::wildcard::{self, Syntax};

/// What became of the Name tags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tags {
    Read(BTreeMap<String, String>),
    /// `tag:GetResources` was denied.
    Denied,
    /// Another failure (network, throttling): the listing goes on without names.
    Failed(String),
}

/// The nodes, filtered and sorted, with their Name tags.
#[derive(Clone, Debug)]
pub struct Listing {
    pub nodes: Vec<NodeInfo>,
    pub tags: Tags,
    /// Per instance ID: `ssm`, `eice` or `ssm+eice` (empty when EC2 could not be asked).
    pub ways: BTreeMap<String, String>,
}

/// Lists the nodes `forms` admit (all when empty).
pub async fn list(config: &SdkConfig, forms: &[Spec]) -> Result<Listing, AwsError> {
    let instances = Instances::new(config);
    let tagging = Tagging::new(config);
    let (nodes, names) = tokio::join!(
        instances.describe(&NodeFilter::All),
        tagging.instance_names()
    );
    let nodes = nodes?;
    let tags = match names {
        Ok(names) => Tags::Read(names),
        Err(e) if crate::aws::tagging_denied(&e) => Tags::Denied,
        Err(e) => Tags::Failed(e.message),
    };
    // Tags other than Name (and Name itself when tags cannot be read) are filtered by
    // the SSM API, which can, one call per filter.
    let mut by_tag = BTreeMap::new();
    for spec in forms {
        let filter = match spec {
            Spec::Tag { key, value } if key != "Name" || !matches!(tags, Tags::Read(_)) => {
                (key.clone(), value.clone())
            }
            Spec::Name(n) if !matches!(tags, Tags::Read(_)) && !n.contains(['*', '?']) => {
                ("Name".to_owned(), n.clone())
            }
            _ => continue,
        };
        let f = NodeFilter::Tag {
            key: filter.0.clone(),
            value: filter.1.clone(),
        };
        let ids: BTreeSet<String> = instances
            .describe(&f)
            .await?
            .into_iter()
            .map(|n| n.id)
            .collect();
        by_tag.insert(filter, ids);
    }
    Ok(select(nodes, tags, forms, &by_tag))
}

/// Filters and sorts: online first, then by name, then by ID.
pub fn select(
    nodes: Vec<NodeInfo>,
    tags: Tags,
    forms: &[Spec],
    by_tag: &BTreeMap<(String, String), BTreeSet<String>>,
) -> Listing {
    let names = match &tags {
        Tags::Read(m) => Some(m),
        _ => None,
    };
    let mut nodes: Vec<NodeInfo> = nodes
        .into_iter()
        .filter(|n| forms.is_empty() || forms.iter().any(|f| admits(f, n, names, by_tag)))
        .collect();
    let name_of = |n: &NodeInfo| display_name(n, names).map(str::to_owned);
    nodes.sort_by_key(|n| {
        (
            !n.is_online(),
            name_of(n).is_none(),
            name_of(n),
            n.id.clone(),
        )
    });
    nodes.dedup_by(|a, b| a.id == b.id);
    Listing {
        nodes,
        tags,
        ways: BTreeMap::new(),
    }
}

fn admits(
    spec: &Spec,
    n: &NodeInfo,
    names: Option<&BTreeMap<String, String>>,
    by_tag: &BTreeMap<(String, String), BTreeSet<String>>,
) -> bool {
    let tagged = |k: &str, v: &str| {
        by_tag
            .get(&(k.to_owned(), v.to_owned()))
            .is_some_and(|ids| ids.contains(&n.id))
    };
    match spec {
        Spec::Id(id) => n.id == *id,
        // `sallyport ls ''`: every node that is online (what a picker offers).
        Spec::Pick => n.is_online(),
        Spec::Ip(ip) => (n.ip_address.as_deref())
            .and_then(|a| a.parse::<IpAddr>().ok())
            .is_some_and(|a| a == *ip),
        Spec::Tag { key, value } => match names {
            Some(m) if key == "Name" => m.get(&n.id) == Some(value),
            _ => tagged(key, value),
        },
        Spec::Name(pattern) => {
            let tag = names.and_then(|m| m.get(&n.id));
            tag.is_some_and(|t| wildcard::matches(pattern, t, Syntax::PLAIN))
                || tagged("Name", pattern)
                || n.computer_name.as_deref().is_some_and(|c| {
                    wildcard::matches(pattern, c, Syntax::IGNORE_CASE)
                        || c.split('.')
                            .next()
                            .is_some_and(|s| wildcard::matches(pattern, s, Syntax::IGNORE_CASE))
                })
                || n.name
                    .as_deref()
                    .is_some_and(|s| wildcard::matches(pattern, s, Syntax::IGNORE_CASE))
        }
    }
}

/// The Name tag, else an on-premises node's SSM name.
fn display_name<'a>(
    n: &'a NodeInfo,
    names: Option<&'a BTreeMap<String, String>>,
) -> Option<&'a str> {
    names
        .and_then(|m| m.get(&n.id))
        .map(String::as_str)
        .or(n.name.as_deref())
}

/// The most characters a cell of the table shows (a Name tag holds at most 256).
const CELL_MAX: usize = 256;

impl Listing {
    fn name_cell(&self, n: &NodeInfo) -> String {
        let names = match &self.tags {
            Tags::Read(m) => Some(m),
            _ => None,
        };
        match (display_name(n, names), &self.tags) {
            (Some(name), _) => name.to_owned(),
            // Only EC2 instances have Name tags to miss.
            (None, Tags::Denied) if n.id.starts_with("i-") => "(no tag permission)".to_owned(),
            (None, Tags::Failed(_)) if n.id.starts_with("i-") => "(tags unavailable)".to_owned(),
            (None, _) => "-".to_owned(),
        }
    }

    /// The table: a header, then one row per node.
    pub fn table(&self, now: SystemTime) -> String {
        let now_secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
        let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_owned());
        let header = [
            "ID",
            "NAME",
            "IP",
            "PLATFORM",
            "AGENT",
            "STATUS",
            "LAST SEEN",
            "COMPUTER NAME",
            "VIA",
        ]
        .map(str::to_owned);
        let rows: Vec<[String; 9]> = (self.nodes.iter())
            .map(|n| {
                [
                    n.id.clone(),
                    self.name_cell(n),
                    dash(&n.ip_address),
                    dash(&n.platform),
                    dash(&n.agent_version),
                    n.ping_status.clone(),
                    match n.last_ping {
                        Some(t) => crate::aws::ago(now_secs.saturating_sub(t).max(0) as u64),
                        None => "-".to_owned(),
                    },
                    dash(&n.computer_name),
                    dash(&self.ways.get(&n.id).cloned()),
                ]
                // Every cell came from AWS or the instance: text, never terminal controls.
                .map(|cell| crate::text::shown_max(&cell, CELL_MAX).into_owned())
            })
            .collect();
        let all: Vec<&[String; 9]> = std::iter::once(&header).chain(rows.iter()).collect();
        let widths: Vec<usize> = (0..9)
            .map(|c| all.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        for r in all {
            let mut line = String::new();
            for (c, w) in widths.iter().enumerate() {
                line.push_str(&format!("{:<w$}  ", r[c], w = w));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    /// One JSON array, a stable shape for scripts.
    pub fn json(&self) -> String {
        #[derive(Serialize)]
        struct Row<'a> {
            id: &'a str,
            /// Name tag, or an on-premises node's name; null when unknown.
            name: Option<String>,
            /// Whether Name tags could be read at all (false: no tag permission or error).
            name_tags_read: bool,
            ip_address: Option<&'a str>,
            platform: Option<&'a str>,
            agent_version: Option<&'a str>,
            ping_status: &'a str,
            /// Unix seconds.
            last_ping: Option<i64>,
            computer_name: Option<&'a str>,
            /// `ssm`, `eice` or `ssm+eice`; null when none (or EC2 could not be asked).
            via: Option<&'a str>,
        }
        let names = match &self.tags {
            Tags::Read(m) => Some(m),
            _ => None,
        };
        let rows: Vec<Row> = (self.nodes.iter())
            .map(|n| Row {
                id: &n.id,
                name: display_name(n, names).map(str::to_owned),
                name_tags_read: names.is_some(),
                ip_address: n.ip_address.as_deref(),
                platform: n.platform.as_deref(),
                agent_version: n.agent_version.as_deref(),
                ping_status: &n.ping_status,
                last_ping: n.last_ping,
                computer_name: n.computer_name.as_deref(),
                via: self.ways.get(&n.id).map(String::as_str),
            })
            .collect();
        let text = serde_json::to_string_pretty(&rows).unwrap_or_else(|_| "[]".to_owned());
        // The same JSON value, with what JSON leaves raw (C1 controls, bidi overrides)
        // written as \uXXXX: safe on a terminal too.
        let mut text = crate::text::json_safe(&text).into_owned();
        text.push('\n');
        text
    }
}

/// `sallyport ls`.
pub struct LsRun {
    /// The first filter's alias, if it is one, brings its profile and region for all.
    pub aws: crate::aws::AwsSettings,
    pub forms: Vec<Spec>,
    pub json: bool,
}

/// `sallyport ls [TARGET…] [--json]`.
pub async fn run(args: &LsRun) -> Result<u8, CommandError> {
    let (aws, forms) = (&args.aws, &args.forms);
    let config = crate::aws::load(aws)
        .await
        .map_err(|source| CommandError::Aws {
            source,
            what: "the managed nodes".into(),
        })?;
    let listing = list(&config.sdk, forms)
        .await
        .map_err(|e| {
            let e = crate::aws::advise(e, aws.profile.as_deref());
            let e = match e.kind {
                crate::aws::AwsErrorKind::AccessDenied if e.hint.is_none() => e.with_hint(
                    "listing needs ssm:DescribeInstanceInformation (and tag:GetResources for Name tags)",
                ),
                _ => e,
            };
            CommandError::Aws {
                source: e,
                what: "the managed nodes".into(),
            }
        })?;
    let mut listing = listing;
    match super::ls_eice::ways(&config.sdk, &listing.nodes).await {
        Ok((ways, extra)) => {
            let none = BTreeMap::new();
            let admitted =
                |n: &NodeInfo| forms.is_empty() || forms.iter().any(|f| admits(f, n, None, &none));
            listing.nodes.extend(extra.into_iter().filter(admitted));
            listing.ways = ways;
        }
        Err(why) => eprintln!(
            "sallyport: EC2 not asked for EICE reachability and unmanaged instances: {}",
            crate::text::shown_max(&why, 300)
        ),
    }
    match &listing.tags {
        Tags::Denied => eprintln!(
            "sallyport: no permission to read Name tags (tag:GetResources); names shown only for on-premises nodes"
        ),
        Tags::Failed(why) => {
            eprintln!("sallyport: Name tags unavailable: {why}")
        }
        Tags::Read(_) => {}
    }
    if args.json {
        super::stdout(listing.json().as_bytes())?;
    } else {
        if listing.nodes.is_empty() {
            eprintln!("sallyport: no managed node matches");
        }
        super::stdout(listing.table(std::time::SystemTime::now()).as_bytes())?;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, status: &str, host: &str, ping: i64) -> NodeInfo {
        NodeInfo {
            id: id.into(),
            ping_status: status.into(),
            last_ping: Some(ping),
            ip_address: Some(format!("10.0.0.{}", id.len())),
            computer_name: Some(host.into()),
            name: None,
            platform: Some("Amazon Linux".into()),
            agent_version: Some("3.3.0.0".into()),
        }
    }

    fn fleet() -> Vec<NodeInfo> {
        let mut rack = node("mi-0000000000000000c", "Online", "rack.dc", 100);
        rack.name = Some("rack-7".into());
        vec![
            node("i-0000000000000000a", "ConnectionLost", "ip-a.internal", 50),
            node("i-0000000000000000b", "Online", "web-2.corp", 100),
            rack,
            node("i-0000000000000000d", "Online", "ip-d.internal", 100),
        ]
    }

    fn names() -> Tags {
        Tags::Read(
            [
                ("i-0000000000000000a".to_owned(), "web-1".to_owned()),
                ("i-0000000000000000b".to_owned(), "web-2".to_owned()),
                ("i-0000000000000000d".to_owned(), "api".to_owned()),
            ]
            .into(),
        )
    }

    fn ids(l: &Listing) -> Vec<&str> {
        l.nodes.iter().map(|n| n.id.as_str()).collect()
    }

    #[test]
    fn online_first_then_by_name() {
        let l = select(fleet(), names(), &[], &BTreeMap::new());
        assert_eq!(
            ids(&l),
            [
                "i-0000000000000000d",
                "mi-0000000000000000c",
                "i-0000000000000000b",
                "i-0000000000000000a"
            ]
        );
    }

    #[test]
    fn filters_are_target_forms_with_globs() {
        let pick =
            |forms: &[Spec]| ids(&select(fleet(), names(), forms, &BTreeMap::new())).join(" ");
        let name = |s: &str| Spec::Name(s.into());
        assert_eq!(
            pick(&[name("web-*")]),
            "i-0000000000000000b i-0000000000000000a"
        );
        assert_eq!(
            pick(&[name("WEB-*")]),
            "i-0000000000000000b",
            "tags are case-sensitive, host names not"
        );
        assert_eq!(pick(&[name("rack-?")]), "mi-0000000000000000c");
        assert_eq!(pick(&[name("ip-d")]), "i-0000000000000000d");
        assert_eq!(
            pick(&[
                Spec::Tag {
                    key: "Name".into(),
                    value: "api".into()
                },
                Spec::Id("i-0000000000000000a".into())
            ]),
            "i-0000000000000000d i-0000000000000000a"
        );
        assert_eq!(
            pick(&[Spec::Ip("10.0.0.19".parse().unwrap())]),
            "i-0000000000000000d i-0000000000000000b i-0000000000000000a"
        );
        assert_eq!(pick(&[name("nothing*")]), "");
    }

    #[test]
    fn denied_tags_say_so_in_the_name_column() {
        let l = select(fleet(), Tags::Denied, &[], &BTreeMap::new());
        let t = l.table(UNIX_EPOCH + std::time::Duration::from_secs(400));
        let lines: Vec<&str> = t.lines().collect();
        assert!(
            lines[0].starts_with("ID") && lines[0].contains("COMPUTER NAME"),
            "{t}"
        );
        assert!(t.contains("(no tag permission)"), "{t}");
        let rack = lines.iter().find(|l| l.starts_with("mi-")).unwrap();
        assert!(
            rack.contains("rack-7") && !rack.contains("permission"),
            "{t}"
        );
        let json: serde_json::Value = serde_json::from_str(&l.json()).unwrap();
        assert_eq!(json[0]["name_tags_read"], false);
    }
    #[test]
    fn remote_names_are_shown_as_text() {
        let mut fleet = fleet();
        fleet[1].computer_name = Some("evil\u{9b}2J.corp".into());
        let tags = Tags::Read(
            [
                (
                    "i-0000000000000000a".to_owned(),
                    "\x1b]0;pwned\x07".to_owned(),
                ),
                ("i-0000000000000000b".to_owned(), "web\u{202e}2".to_owned()),
            ]
            .into(),
        );
        let l = select(fleet, tags, &[], &BTreeMap::new());
        let t = l.table(UNIX_EPOCH + std::time::Duration::from_secs(400));
        assert!(t.contains("\\x1b]0;pwned\\x07"), "{t}");
        assert!(
            t.contains("web\\u{202e}2") && t.contains("evil\\u{9b}2J.corp"),
            "{t}"
        );
        assert!(!t.contains(['\x1b', '\x07', '\u{9b}', '\u{202e}']), "{t:?}");
        // Columns line up on what is shown.
        let header = t.lines().next().unwrap();
        let row = t.lines().find(|l| l.contains("pwned")).unwrap();
        assert_eq!(header.find("IP"), row.find("10.0.0."), "{t}");
        // JSON keeps the value and stays inert: serde escapes C0, json_safe the rest.
        let json = l.json();
        assert!(
            !json.contains(['\x1b', '\x07', '\u{9b}', '\u{202e}']),
            "{json:?}"
        );
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let names: Vec<&str> = (0..4).filter_map(|i| v[i]["name"].as_str()).collect();
        assert!(names.contains(&"\x1b]0;pwned\x07"), "{names:?}");
        assert!(names.contains(&"web\u{202e}2"), "{names:?}");
    }
}
