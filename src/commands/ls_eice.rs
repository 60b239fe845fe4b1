//! `sallyport ls`'s ways: per instance whether Session Manager (agent online), an EC2
//! Instance Connect Endpoint (running, in a VPC an endpoint serves) or both reach it, and
//! the running EC2 instances that are no managed nodes (docs/protocol.md §10.4).

use std::collections::BTreeMap;

use crate::aws::{Ec2, InstanceQuery, NodeInfo};
use crate::target::via::choose_endpoint;

/// The ways per instance ID, and rows for running instances SSM does not know; `Err`
/// with why EC2 could not be asked.
pub async fn ways(
    config: &aws_config::SdkConfig,
    nodes: &[NodeInfo],
) -> Result<(BTreeMap<String, String>, Vec<NodeInfo>), String> {
    let ec2 = Ec2::new(config);
    let query = InstanceQuery {
        ids: Vec::new(),
        filters: vec![("instance-state-name".to_owned(), vec!["running".to_owned()])],
    };
    let (running, endpoints) =
        tokio::join!(ec2.describe_instances(&query), ec2.describe_endpoints(None));
    let running = running.map_err(|e| e.message)?;
    let endpoints = endpoints.map_err(|e| e.message)?;
    let mut ways = BTreeMap::new();
    for n in nodes.iter().filter(|n| n.is_online()) {
        ways.insert(n.id.clone(), "ssm".to_owned());
    }
    let mut extra = Vec::new();
    for i in &running {
        if choose_endpoint(&endpoints, i).is_some() {
            let way = match ways.get(&i.instance_id) {
                Some(_) => "ssm+eice",
                None => "eice",
            };
            ways.insert(i.instance_id.clone(), way.to_owned());
        }
        if !nodes.iter().any(|n| n.id == i.instance_id) {
            extra.push(crate::target::not_managed(i));
        }
    }
    Ok((ways, extra))
}
