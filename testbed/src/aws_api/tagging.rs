//! The Resource Groups Tagging API in the JSON 1.1 protocol (`POST /` with
//! `X-Amz-Target: ResourceGroupsTaggingAPI_20170126.<Operation>`, SigV4 signing name
//! `tagging`): `GetResources`, answered from the instances' tags, which is how
//! `sallyport ls` learns Name tags (`DescribeInstanceInformation` cannot return them).
//!
//! Only EC2 instances (`i-…`) are tagged resources here: on-premises nodes (`mi-…`) are
//! `ssm:managed-instance` resources and keep their name in SSM. Filters supported:
//! `ResourceTypeFilters` (`ec2`, `ec2:instance`; anything else matches nothing) and
//! `TagFilters` (key, optional values). With `TestbedConfig::tagging_denied` every call
//! answers `AccessDeniedException`, as IAM does for a caller without `tag:GetResources`.
//! Unverified: the default page size (50 here) and the exact access-denied text.

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::aws_api::account::Account;
use crate::aws_api::json11::ApiError;
use crate::world::config::ACCOUNT_ID;

pub const TARGET_PREFIX: &str = "ResourceGroupsTaggingAPI_20170126.";
pub const SIGNING_NAME: &str = "tagging";
/// The service model's bounds for `ResourcesPerPage`.
const MAX_PER_PAGE: usize = 100;
const DEFAULT_PER_PAGE: usize = 50;

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct GetResourcesRequest {
    pagination_token: Option<String>,
    tag_filters: Option<Vec<TagFilter>>,
    resources_per_page: Option<i64>,
    resource_type_filters: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TagFilter {
    key: Option<String>,
    values: Option<Vec<String>>,
}

/// Reads the body (bounded), checks the signature for `tagging`, answers.
pub async fn handle(state: &Account, req: Request<Incoming>) -> Response<Full<Bytes>> {
    crate::aws_api::json11::serve(
        state,
        req,
        SIGNING_NAME,
        TARGET_PREFIX,
        |operation, body, caller_arn| dispatch(state, caller_arn, operation, body),
    )
    .await
}

/// Runs one operation on a JSON body (no signature check) for the caller `caller_arn`.
pub fn dispatch(
    state: &Account,
    caller_arn: &str,
    operation: &str,
    body: &[u8],
) -> Result<Value, ApiError> {
    match operation {
        "GetResources" => {
            if state.config.tagging_denied {
                return Err(ApiError::frontend(
                    "AccessDeniedException",
                    format!(
                        "User: {caller_arn} is not authorized to perform: tag:GetResources because no identity-based policy allows the tag:GetResources action"
                    ),
                ));
            }
            let req: GetResourcesRequest = if body.is_empty() {
                GetResourcesRequest::default()
            } else {
                crate::aws_api::json11::parse(body)?
            };
            get_resources(state, req)
        }
        _ => Err(ApiError::frontend(
            "UnknownOperationException",
            format!("Unknown operation '{TARGET_PREFIX}{operation}'."),
        )),
    }
}

fn get_resources(state: &Account, req: GetResourcesRequest) -> Result<Value, ApiError> {
    let per_page = match req.resources_per_page {
        None => DEFAULT_PER_PAGE,
        Some(n) if (1..=MAX_PER_PAGE as i64).contains(&n) => n as usize,
        Some(n) => {
            return Err(ApiError::frontend(
                "InvalidParameterException",
                format!("ResourcesPerPage must be between 1 and {MAX_PER_PAGE}, not {n}"),
            ));
        }
    };
    let types_ok = req.resource_type_filters.as_ref().is_none_or(|types| {
        types.is_empty() || types.iter().any(|t| t == "ec2" || t == "ec2:instance")
    });
    let filters = req.tag_filters.unwrap_or_default();
    let region = &state.config.region;
    let mut matching: Vec<Value> = Vec::new();
    for i in state.config.instances.iter() {
        if !types_ok || !i.id.starts_with("i-") || i.tags.is_empty() {
            continue;
        }
        let admitted = filters.iter().all(|f| {
            let Some(key) = &f.key else { return true };
            i.tags.get(key).is_some_and(|v| {
                f.values
                    .as_ref()
                    .is_none_or(|vs| vs.is_empty() || vs.contains(v))
            })
        });
        if admitted {
            let tags: Vec<Value> = (i.tags.iter())
                .map(|(k, v)| json!({"Key": k, "Value": v}))
                .collect();
            matching.push(json!({
                "ResourceARN": format!("arn:aws:ec2:{region}:{ACCOUNT_ID}:instance/{}", i.id),
                "Tags": tags,
            }));
        }
    }
    // The token is the offset of the next page; AWS's are opaque.
    let start = match req.pagination_token.as_deref() {
        None | Some("") => 0,
        Some(t) => t
            .parse::<usize>()
            .ok()
            .filter(|&n| n <= matching.len())
            .ok_or_else(|| {
                ApiError::frontend(
                    "PaginationTokenExpiredException",
                    "The pagination token is invalid or has expired.",
                )
            })?,
    };
    let end = (start + per_page).min(matching.len());
    let next = if end < matching.len() {
        end.to_string()
    } else {
        String::new()
    };
    Ok(json!({
        "PaginationToken": next,
        "ResourceTagMappingList": matching[start..end].to_vec(),
    }))
}
