//! EC2 `Name` tags through the Resource Groups Tagging API (`tag:GetResources`), because
//! `DescribeInstanceInformation` can filter by tags but never returns them. One paginated
//! call for every `ec2:instance` with a `Name` tag, instead of aws-sdk-ec2 (whose crate
//! alone costs minutes of build; see DEPENDENCIES.md).

use std::collections::BTreeMap;

use aws_config::SdkConfig;
use aws_sdk_resourcegroupstagging::types::TagFilter;

use super::{AwsError, AwsErrorKind};

/// The API's largest page.
const PAGE_SIZE: i32 = 100;
/// At most this many pages (5,000 instances), so a huge account cannot keep us busy.
const MAX_PAGES: usize = 50;

/// The `GetResources` client.
#[derive(Clone, Debug)]
pub struct Tagging {
    client: aws_sdk_resourcegroupstagging::Client,
}

impl Tagging {
    pub fn new(config: &SdkConfig) -> Tagging {
        Tagging {
            client: aws_sdk_resourcegroupstagging::Client::new(config),
        }
    }

    /// Instance ID -> `Name` tag value, for every EC2 instance in the region that has one.
    pub async fn instance_names(&self) -> Result<BTreeMap<String, String>, AwsError> {
        let filter = TagFilter::builder().key("Name").build();
        let mut names = BTreeMap::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let out = (self.client.get_resources())
                .resource_type_filters("ec2:instance")
                .tag_filters(filter.clone())
                .resources_per_page(PAGE_SIZE)
                .set_pagination_token(token.take())
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("GetResources", e))?;
            for mapping in out.resource_tag_mapping_list() {
                let id = mapping.resource_arn().and_then(instance_id);
                let name = (mapping.tags().iter())
                    .find(|t| t.key() == "Name")
                    .map(|t| t.value().to_owned());
                if let (Some(id), Some(name)) = (id, name) {
                    names.insert(id.to_owned(), name);
                }
            }
            match out.pagination_token().filter(|t| !t.is_empty()) {
                Some(t) => token = Some(t.to_owned()),
                None => return Ok(names),
            }
        }
        tracing::warn!("GetResources: stopped after {} Name tags", names.len());
        Ok(names)
    }
}

/// `arn:aws:ec2:REGION:ACCOUNT:instance/i-…` -> `i-…`.
pub(crate) fn instance_id(arn: &str) -> Option<&str> {
    let (prefix, id) = arn.rsplit_once(":instance/")?;
    (prefix.starts_with("arn:") && id.starts_with("i-")).then_some(id)
}

/// Whether an error means the caller may not read tags (as opposed to a broken network).
pub fn is_denied(e: &AwsError) -> bool {
    e.kind == AwsErrorKind::AccessDenied
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_come_from_instance_arns_only() {
        assert_eq!(
            instance_id("arn:aws:ec2:us-east-1:123456789012:instance/i-0abc"),
            Some("i-0abc")
        );
        assert_eq!(
            instance_id("arn:aws-cn:ec2:cn-north-1:123456789012:instance/i-0abc"),
            Some("i-0abc")
        );
        assert_eq!(
            instance_id("arn:aws:ec2:us-east-1:123456789012:volume/vol-1"),
            None
        );
        assert_eq!(instance_id("i-0abc"), None);
    }
}
