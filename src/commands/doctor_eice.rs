//! `doctor TARGET`'s EC2 Instance Connect Endpoint line (docs/protocol.md §10.3, §10.4):
//! whether an endpoint exists for the instance's VPC, its state, and which one a tunnel
//! would use. Security groups are not checked.

use crate::aws::{Ec2, InstanceQuery};
use crate::target::via::choose_endpoint;

use super::doctor::Check;

const NAME: &str = "eice";
const SG: &str = "the security groups are not checked";

/// The EICE line for the instance `id`.
pub async fn check(config: &aws_config::SdkConfig, id: &str) -> Check {
    if !id.starts_with("i-") {
        return Check::ok(
            NAME,
            format!("{id} is not an EC2 instance: EICE does not apply"),
        );
    }
    let ec2 = Ec2::new(config);
    let fix = "allow ec2:DescribeInstances and ec2:DescribeInstanceConnectEndpoints to check";
    let query = InstanceQuery {
        ids: vec![id.to_owned()],
        ..InstanceQuery::default()
    };
    let instance = match ec2.describe_instances(&query).await {
        Ok(all) => all.into_iter().find(|i| i.instance_id == id),
        Err(e) => return Check::warn(NAME, format!("not checked: {}", e.message), fix),
    };
    let Some(instance) = instance else {
        return Check::warn(NAME, format!("EC2 does not know {id}"), "");
    };
    let Some(vpc) = instance.vpc_id.clone() else {
        return Check::warn(
            NAME,
            format!("{id} is in no VPC: no endpoint can serve it"),
            "",
        );
    };
    let endpoints = match ec2.describe_endpoints(Some(&vpc)).await {
        Ok(e) => e,
        Err(e) => return Check::warn(NAME, format!("not checked: {}", e.message), fix),
    };
    let shown = |s: &str| crate::text::shown_max(s, 256).into_owned();
    if let Some(e) = choose_endpoint(&endpoints, &instance) {
        let place = if e.subnet_id.is_some() && e.subnet_id == instance.subnet_id {
            "its subnet"
        } else {
            "its VPC"
        };
        return Check::ok(
            NAME,
            format!(
                "endpoint {} ({}) in {place} serves {vpc}; {id} is {}; {SG}",
                shown(&e.id),
                shown(&e.state),
                shown(&instance.state)
            ),
        );
    }
    match endpoints.first() {
        Some(e) => Check::warn(
            NAME,
            format!(
                "endpoint {} in {vpc} is {}, not usable for tunnels; {SG}",
                shown(&e.id),
                shown(&e.state)
            ),
            "wait for create-complete, or create another endpoint",
        ),
        // No endpoint is no fault: Session Manager may be the way.
        None => Check::ok(
            NAME,
            format!(
                "no EC2 Instance Connect Endpoint serves {vpc} (one would reach {id} without Session Manager: aws ec2 create-instance-connect-endpoint --subnet-id {})",
                instance.subnet_id.as_deref().unwrap_or("SUBNET")
            ),
        ),
    }
}
