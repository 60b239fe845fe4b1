//! SSM `DescribeInstanceInformation`: the managed nodes, their agents' ping status and
//! addresses, with the API's filters and pagination.
//!
//! Like the real API it returns no tags: a client can filter by `tag:Key` but cannot read
//! the `Name` tag back (that takes EC2 `DescribeInstances`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::aws_api::account::Account;
use crate::aws_api::json11::ApiError;
use crate::world::config::InstanceConfig;

/// The API's bounds for `MaxResults`, and its default page size.
const MAX_RESULTS: std::ops::RangeInclusive<i64> = 5..=50;
const DEFAULT_MAX_RESULTS: usize = 10;
/// Filter keys of the legacy `InstanceInformationFilterList`.
const LEGACY_KEYS: &[&str] = &[
    "InstanceIds",
    "AgentVersion",
    "PingStatus",
    "PlatformTypes",
    "ActivationIds",
    "IamRole",
    "ResourceType",
    "AssociationStatus",
];
const NEXT_TOKEN_PREFIX: &str = "sallyport-testbed-next:";

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeInstanceInformationRequest {
    pub instance_information_filter_list: Option<Vec<LegacyFilter>>,
    pub filters: Option<Vec<StringFilter>>,
    pub max_results: Option<i64>,
    pub next_token: Option<String>,
}

/// `InstanceInformationFilter`: the model spells its members in lower camel case.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LegacyFilter {
    pub key: String,
    pub value_set: Vec<String>,
}

/// `InstanceInformationStringFilter`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StringFilter {
    pub key: String,
    pub values: Vec<String>,
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeInstanceInformationResponse {
    pub instance_information_list: Vec<InstanceInformation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "PascalCase")]
pub struct InstanceInformation {
    pub instance_id: String,
    pub ping_status: String,
    /// Epoch seconds, as awsJson1_1 encodes timestamps.
    pub last_ping_date_time: f64,
    pub agent_version: String,
    pub is_latest_version: bool,
    pub platform_type: String,
    pub platform_name: String,
    pub resource_type: String,
    #[serde(rename = "IPAddress")]
    pub ip_address: String,
    pub computer_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub source_id: String,
    pub source_type: String,
}

/// The ping status the API reports now: `ConnectionLost` while a `not_connected_for_secs`
/// fault lasts, else the configured one.
pub fn ping_status<'a>(state: &Account, instance: &'a InstanceConfig) -> &'a str {
    let window = Duration::from_secs(instance.not_connected_for_secs);
    if state.started.elapsed() < window {
        "ConnectionLost"
    } else {
        &instance.ping_status
    }
}

/// When the agent last pinged: now for an online agent, else `last_ping_ago_secs` (default
/// 30 minutes) before the testbed started.
fn last_ping(state: &Account, instance: &InstanceConfig, status: &str) -> SystemTime {
    let now = SystemTime::now();
    if status == "Online" {
        return now;
    }
    let started = now.checked_sub(state.started.elapsed()).unwrap_or(now);
    let ago = Duration::from_secs(instance.last_ping_ago_secs.unwrap_or(1800));
    started.checked_sub(ago).unwrap_or(UNIX_EPOCH)
}

pub fn describe_instance_information(
    state: &Account,
    req: DescribeInstanceInformationRequest,
) -> Result<DescribeInstanceInformationResponse, ApiError> {
    let legacy = req.instance_information_filter_list.unwrap_or_default();
    let filters = req.filters.unwrap_or_default();
    if !legacy.is_empty() && !filters.is_empty() {
        // The model says combining the two "leads to an exception error"; which one is a guess.
        return Err(ApiError::modeled(
            "InvalidInstanceInformationFilterValue",
            "InstanceInformationFilterList and Filters cannot be used together.",
        ));
    }
    let page_size = match req.max_results {
        None => DEFAULT_MAX_RESULTS,
        Some(n) if MAX_RESULTS.contains(&n) => n as usize,
        Some(n) => {
            return Err(ApiError::validation(format!(
                "Value '{n}' at 'maxResults' failed to satisfy constraint: Member must have \
                 value between 5 and 50"
            )));
        }
    };
    let mut checks: Vec<(String, Vec<String>)> = Vec::new();
    for f in legacy {
        if !LEGACY_KEYS.contains(&f.key.as_str()) {
            return Err(invalid_key(&f.key));
        }
        checks.push((f.key, f.value_set));
    }
    let (mut tag_filters, mut other_filters) = (0, 0);
    for f in filters {
        let tag = f.key.starts_with("tag:") || f.key == "tag-key";
        if !tag && !LEGACY_KEYS.contains(&f.key.as_str()) {
            return Err(invalid_key(&f.key));
        }
        if tag {
            tag_filters += 1;
        } else {
            other_filters += 1;
        }
        checks.push((f.key, f.values));
    }
    if tag_filters > 0 && other_filters > 0 {
        // The model: "Tag filters can't be combined with other filter types." The error code
        // AWS uses for it is a guess.
        return Err(ApiError::modeled(
            "InvalidInstanceInformationFilterValue",
            "Tag filters can't be combined with other filter types.",
        ));
    }
    for (key, values) in &checks {
        if values.is_empty() || values.len() > 100 {
            return Err(ApiError::modeled(
                "InvalidInstanceInformationFilterValue",
                format!("Filter {key} must have between 1 and 100 values."),
            ));
        }
        if key == "InstanceIds"
            && let Some(bad) = values
                .iter()
                .find(|v| !crate::aws_api::ssm::well_formed_id(v))
        {
            return Err(ApiError::modeled(
                "InvalidInstanceId",
                format!("Instance Id {bad} is not valid."),
            ));
        }
    }
    // An unmanaged instance is no managed node: Session Manager does not list it.
    let matching: Vec<InstanceInformation> = (state.config.instances.iter())
        .filter(|i| i.managed)
        .map(|i| (i, info(state, i)))
        .filter(|(i, info)| checks.iter().all(|(k, v)| matches(i, info, k, v)))
        .map(|(_, info)| info)
        .collect();
    let start = match req.next_token.as_deref() {
        None => 0,
        Some(t) => t
            .strip_prefix(NEXT_TOKEN_PREFIX)
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| *n <= matching.len())
            .ok_or_else(|| {
                ApiError::modeled("InvalidNextToken", "The specified token is not valid.")
            })?,
    };
    let end = (start + page_size).min(matching.len());
    let next_token = (end < matching.len()).then(|| format!("{NEXT_TOKEN_PREFIX}{end}"));
    let page = matching.into_iter().skip(start).take(end - start).collect();
    Ok(DescribeInstanceInformationResponse {
        instance_information_list: page,
        next_token,
    })
}

fn invalid_key(key: &str) -> ApiError {
    ApiError::modeled(
        "InvalidFilterKey",
        format!("The filter key {key} is not valid."),
    )
}

fn info(state: &Account, i: &InstanceConfig) -> InstanceInformation {
    let status = ping_status(state, i).to_owned();
    let last = last_ping(state, i, &status);
    let secs = last.duration_since(UNIX_EPOCH).unwrap_or_default();
    let source_type = if i.id.starts_with("mi-") {
        "AWS::SSM::ManagedInstance"
    } else {
        "AWS::EC2::Instance"
    };
    InstanceInformation {
        instance_id: i.id.clone(),
        ping_status: status,
        // Millisecond precision, like the service.
        last_ping_date_time: (secs.as_millis() as f64) / 1000.0,
        agent_version: i.agent_version.clone(),
        is_latest_version: false,
        platform_type: i.platform_type().to_owned(),
        platform_name: i.platform.clone(),
        resource_type: i.resource_type().to_owned(),
        ip_address: i.ip_address(),
        computer_name: i.computer_name(),
        name: i.name.clone(),
        source_id: i.id.clone(),
        source_type: source_type.to_owned(),
    }
}

/// Whether one filter (values ORed) admits the instance.
fn matches(i: &InstanceConfig, info: &InstanceInformation, key: &str, values: &[String]) -> bool {
    let any = |have: &str| values.iter().any(|v| v == have);
    match key {
        "tag-key" => values.iter().any(|v| i.tags.contains_key(v)),
        "InstanceIds" => any(&i.id),
        "AgentVersion" => any(&i.agent_version),
        "PingStatus" => any(&info.ping_status),
        "PlatformTypes" => any(&info.platform_type),
        "ResourceType" => any(&info.resource_type),
        "AssociationStatus" | "ActivationIds" | "IamRole" => false,
        tag => match tag.strip_prefix("tag:") {
            Some(k) => i.tags.get(k).is_some_and(|have| any(have)),
            None => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws_api::ssm::dispatch;
    use crate::world::config::TestbedConfig;
    use serde_json::Value;

    fn state(n: usize) -> Account {
        let mut instances: Vec<InstanceConfig> = (0..n)
            .map(|k| InstanceConfig::named(&format!("i-{k:017x}"), &format!("web-{k}")))
            .collect();
        instances[0].ping_status = "ConnectionLost".to_owned();
        instances[1]
            .tags
            .insert("Team".to_owned(), "red".to_owned());
        instances[2]
            .tags
            .insert("Team".to_owned(), "red".to_owned());
        let cfg = TestbedConfig::new("127.0.0.1:0".parse().unwrap(), instances);
        Account::new(cfg, "127.0.0.1:4567".parse().unwrap())
    }

    fn call(st: &Account, body: &str) -> Result<Value, ApiError> {
        dispatch(st, "AmazonSSM.DescribeInstanceInformation", body.as_bytes())
    }

    fn ids(v: &Value) -> Vec<String> {
        let list = v["InstanceInformationList"].as_array().unwrap();
        list.iter()
            .map(|i| i["InstanceId"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn an_unmanaged_instance_is_no_managed_node() {
        let mut cfg = state(3).config.as_ref().clone();
        cfg.instances[1].managed = false;
        let st = Account::new(cfg, "127.0.0.1:4567".parse().unwrap());
        let unmanaged = st.config.instances[1].id.clone();
        let all = ids(&call(&st, "{}").unwrap());
        assert_eq!(all.len(), 2, "{all:?}");
        assert!(!all.contains(&unmanaged), "{all:?}");
        let body = format!(r#"{{"Filters":[{{"Key":"InstanceIds","Values":["{unmanaged}"]}}]}}"#);
        assert!(ids(&call(&st, &body).unwrap()).is_empty());
        assert_eq!(st.config.instances[1].ec2_state(), "running");
        let start = format!(r#"{{"Target":"{unmanaged}"}}"#);
        let e = dispatch(&st, "AmazonSSM.StartSession", start.as_bytes()).unwrap_err();
        assert_eq!(e.code, "TargetNotConnected");
    }

    #[test]
    fn pages_through_everything() {
        let st = state(12);
        let first = call(&st, r#"{"MaxResults":5}"#).unwrap();
        assert_eq!(ids(&first).len(), 5);
        let mut all = ids(&first);
        let mut token = first["NextToken"].as_str().map(str::to_owned);
        while let Some(t) = token {
            let page = call(&st, &format!(r#"{{"MaxResults":5,"NextToken":"{t}"}}"#)).unwrap();
            all.extend(ids(&page));
            token = page["NextToken"].as_str().map(str::to_owned);
        }
        assert_eq!(all.len(), 12);
        let default = call(&st, "{}").unwrap();
        assert_eq!(ids(&default).len(), 10, "default page size");
        let one = &default["InstanceInformationList"][1];
        assert_eq!(one["IPAddress"], "172.31.0.1");
        assert_eq!(one["ComputerName"], "ip-172-31-0-1.ec2.internal");
        assert_eq!(one["PingStatus"], "Online");
        assert_eq!(one["ResourceType"], "EC2Instance");
        assert!(one["LastPingDateTime"].as_f64().unwrap() > 1.7e9);
        assert!(one.get("Tags").is_none(), "like AWS, no tags");
    }

    #[test]
    fn filters_and_their_errors() {
        let st = state(4);
        let by_name = call(
            &st,
            r#"{"Filters":[{"Key":"tag:Name","Values":["web-2"]}]}"#,
        );
        assert_eq!(ids(&by_name.unwrap()), ["i-00000000000000002"]);
        let team = r#"{"Filters":[{"Key":"tag:Team","Values":["red"]},{"Key":"tag-key","Values":["Name"]}]}"#;
        assert_eq!(ids(&call(&st, team).unwrap()).len(), 2);
        let online = r#"{"Filters":[{"Key":"PingStatus","Values":["Online"]}]}"#;
        assert_eq!(ids(&call(&st, online).unwrap()).len(), 3);
        let legacy = r#"{"InstanceInformationFilterList":[{"key":"InstanceIds","valueSet":["i-00000000000000003"]}]}"#;
        assert_eq!(ids(&call(&st, legacy).unwrap()), ["i-00000000000000003"]);

        let code = |body: &str| call(&st, body).unwrap_err().code;
        let mixed = r#"{"Filters":[{"Key":"tag:Team","Values":["red"]},{"Key":"PingStatus","Values":["Online"]}]}"#;
        assert_eq!(code(mixed), "InvalidInstanceInformationFilterValue");
        assert_eq!(
            code(r#"{"Filters":[{"Key":"Nope","Values":["x"]}]}"#),
            "InvalidFilterKey"
        );
        assert_eq!(
            code(r#"{"Filters":[{"Key":"InstanceIds","Values":["web"]}]}"#),
            "InvalidInstanceId"
        );
        assert_eq!(code(r#"{"MaxResults":51}"#), "ValidationException");
        assert_eq!(code(r#"{"NextToken":"garbage"}"#), "InvalidNextToken");
    }
}
