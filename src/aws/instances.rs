//! Managed nodes as SSM `DescribeInstanceInformation` sees them: the one API that knows
//! every node Session Manager can reach (EC2 and on-premises), its agent's ping status and
//! its addresses. It cannot return tags, only filter by them (`tag:Key`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_config::SdkConfig;
use aws_sdk_ssm::types::InstanceInformationStringFilter;
use serde::{Deserialize, Serialize};

use super::retry::retry_throttled;
use super::{AwsError, AwsErrorKind};

/// The API's largest page.
const PAGE_SIZE: i32 = 50;
/// At most this many pages (2,500 nodes) per lookup, so a huge account cannot keep us busy.
const MAX_PAGES: usize = 50;

/// One managed node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub id: String,
    /// `Online`, `ConnectionLost` or `Inactive`.
    pub ping_status: String,
    /// When the agent last pinged SSM, in Unix seconds.
    pub last_ping: Option<i64>,
    pub ip_address: Option<String>,
    /// The node's fully qualified host name.
    pub computer_name: Option<String>,
    /// Only on-premises nodes have a name here (EC2's `Name` tag is not returned).
    pub name: Option<String>,
    pub platform: Option<String>,
    pub agent_version: Option<String>,
}

impl NodeInfo {
    pub fn is_online(&self) -> bool {
        self.ping_status == "Online"
    }

    /// "3 minutes ago (2026-11-23T01:02:03Z)", or "never" when the API gave no time.
    pub fn last_seen(&self, now: SystemTime) -> String {
        match self.last_ping {
            None => "at an unknown time".to_owned(),
            Some(t) => {
                let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
                let when = aws_sdk_ssm::primitives::DateTime::from_secs(t)
                    .fmt(aws_sdk_ssm::primitives::DateTimeFormat::DateTime)
                    .unwrap_or_else(|_| t.to_string());
                format!("{} ({when})", ago(now.saturating_sub(t).max(0) as u64))
            }
        }
    }
}

/// "just now", "42 seconds ago", "5 minutes ago", "3 hours ago", "2 days ago".
pub fn ago(secs: u64) -> String {
    let (n, unit) = match secs {
        0..=4 => return "just now".to_owned(),
        5..=119 => (secs, "second"),
        120..=7199 => (secs / 60, "minute"),
        7200..=172_799 => (secs / 3600, "hour"),
        _ => (secs / 86_400, "day"),
    };
    format!("{n} {unit}s ago")
}

/// Which nodes to ask for. The API cannot filter by IP address or computer name: those
/// lookups list everything and filter here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeFilter {
    /// `tag:Key` = value (exact, case-sensitive, as the API compares).
    Tag {
        key: String,
        value: String,
    },
    Ids(Vec<String>),
    All,
}

/// The `DescribeInstanceInformation` client.
#[derive(Clone, Debug)]
pub struct Instances {
    client: aws_sdk_ssm::Client,
    /// How long to keep retrying when AWS throttles.
    pub throttle_budget: Duration,
}

impl Instances {
    pub fn new(config: &SdkConfig) -> Instances {
        Instances {
            client: aws_sdk_ssm::Client::new(config),
            throttle_budget: super::retry::DEFAULT_THROTTLE_BUDGET,
        }
    }

    /// Every node the filter admits, following `NextToken` (bounded by [`MAX_PAGES`]).
    pub async fn describe(&self, filter: &NodeFilter) -> Result<Vec<NodeInfo>, AwsError> {
        let mut nodes = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let page =
                retry_throttled(self.throttle_budget, || self.page(filter, token.clone())).await?;
            nodes.extend(page.0);
            token = page.1;
            if token.is_none() {
                return Ok(nodes);
            }
        }
        tracing::warn!(
            "DescribeInstanceInformation: stopped after {} nodes; narrow the target (tag:Key=Value or an ID)",
            nodes.len()
        );
        Ok(nodes)
    }

    /// The node with this ID, if SSM knows it.
    pub async fn node(&self, id: &str) -> Result<Option<NodeInfo>, AwsError> {
        let nodes = self.describe(&NodeFilter::Ids(vec![id.to_owned()])).await?;
        Ok(nodes.into_iter().find(|n| n.id == id))
    }

    async fn page(
        &self,
        filter: &NodeFilter,
        token: Option<String>,
    ) -> Result<(Vec<NodeInfo>, Option<String>), AwsError> {
        let mut req = self
            .client
            .describe_instance_information()
            .max_results(PAGE_SIZE)
            .set_next_token(token);
        let string_filter = |key: String, values: Vec<String>| {
            InstanceInformationStringFilter::builder()
                .key(key)
                .set_values(Some(values))
                .build()
                .map_err(|e| AwsError::new(AwsErrorKind::Service, e.to_string()))
        };
        match filter {
            NodeFilter::Tag { key, value } => {
                req = req.filters(string_filter(format!("tag:{key}"), vec![value.clone()])?);
            }
            NodeFilter::Ids(ids) => {
                req = req.filters(string_filter("InstanceIds".to_owned(), ids.clone())?);
            }
            NodeFilter::All => {}
        }
        let out = req
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("DescribeInstanceInformation", e))?;
        let nodes = (out
            .instance_information_list
            .unwrap_or_default()
            .into_iter())
        .filter_map(|i| {
            Some(NodeInfo {
                id: i.instance_id?,
                ping_status: i
                    .ping_status
                    .map(|p| p.as_str().to_owned())
                    .unwrap_or_else(|| "Unknown".to_owned()),
                last_ping: i.last_ping_date_time.map(|t| t.secs()),
                ip_address: i.ip_address.filter(|s| !s.is_empty()),
                computer_name: i.computer_name.filter(|s| !s.is_empty()),
                name: i.name.filter(|s| !s.is_empty()),
                platform: i.platform_name,
                agent_version: i.agent_version,
            })
        })
        .collect();
        Ok((nodes, out.next_token.filter(|t| !t.is_empty())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_naturally() {
        assert_eq!(ago(0), "just now");
        assert_eq!(ago(42), "42 seconds ago");
        assert_eq!(ago(300), "5 minutes ago");
        assert_eq!(ago(3 * 3600 + 5), "3 hours ago");
        assert_eq!(ago(3 * 86_400), "3 days ago");
    }

    #[test]
    fn last_seen_names_the_time() {
        let node = NodeInfo {
            id: "i-1".into(),
            ping_status: "ConnectionLost".into(),
            last_ping: Some(1_700_000_000),
            ip_address: None,
            computer_name: None,
            name: None,
            platform: None,
            agent_version: None,
        };
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_600);
        assert_eq!(node.last_seen(now), "10 minutes ago (2023-11-14T22:13:20Z)");
    }
}
