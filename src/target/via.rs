//! Which way reaches a target: Session Manager or an EC2 Instance Connect Endpoint
//! (docs/protocol.md §10.3). `auto` takes Session Manager when the node's agent is online
//! there, else EICE when an endpoint in a usable state serves the instance's VPC
//! (preferring one in its subnet), else fails with what would reach it.

use std::time::Duration;

use crate::aws::{ConnectEndpoint, Ec2, Ec2Instance, InstanceQuery, Instances, NodeInfo};

use super::TargetError;
use crate::transport::TunnelTarget;

/// The way asked for (`--via`, `via =` in the config file).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Via {
    Ssm,
    Eice,
    #[default]
    Auto,
}

impl std::str::FromStr for Via {
    type Err = String;

    fn from_str(s: &str) -> Result<Via, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "ssm" => Ok(Via::Ssm),
            "eice" => Ok(Via::Eice),
            "auto" => Ok(Via::Auto),
            _ => Err(format!(
                "{:?} is not a way to reach a target: use ssm, eice or auto",
                crate::text::shown_max(s, 40)
            )),
        }
    }
}

impl std::fmt::Display for Via {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Via::Ssm => "ssm",
            Via::Eice => "eice",
            Via::Auto => "auto",
        })
    }
}

/// Why Session Manager's refusal of a target is not followed by an EICE tunnel.
#[derive(Debug)]
pub enum NoEice {
    /// Session Manager's failure stands as it is.
    Stands,
    /// Under `--via ssm`: an endpoint would serve the target (this says so, and how).
    Hint(TargetError),
    /// Under `--via auto`: what keeps EICE from reaching the target, to add to Session
    /// Manager's failure.
    Missing(String),
}

/// The way taken, and why (for `-v`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Way {
    Ssm { why: String },
    Eice { tunnel: TunnelTarget, why: String },
}

impl Way {
    pub fn why(&self) -> &str {
        match self {
            Way::Ssm { why } | Way::Eice { why, .. } => why,
        }
    }
}

/// What the choice needs besides the target.
pub struct Choice<'a> {
    pub via: Via,
    pub instances: &'a Instances,
    pub ec2: &'a Ec2,
    /// The port the stream leads to on the instance.
    pub port: u16,
    pub max_duration: Duration,
    /// `--wait`: an offline agent is expected to come online; Session Manager is kept.
    pub waiting: bool,
}

/// What the lookups found about one target.
#[derive(Debug, Default)]
pub struct Facts {
    pub node: Option<NodeInfo>,
    pub instance: Option<Ec2Instance>,
    /// The endpoint that would serve it, if any.
    pub endpoint: Option<ConnectEndpoint>,
    /// Why EC2 could not be asked, if it could not.
    pub ec2_error: Option<String>,
}

impl Choice<'_> {
    /// Decides the way to `id`, asking SSM and EC2 only what the decision needs.
    pub async fn choose(&self, id: &str) -> Result<Way, TargetError> {
        if self.via == Via::Ssm && self.waiting {
            return Ok(Way::Ssm {
                why: "--via ssm".into(),
            });
        }
        let node = match self.via {
            Via::Eice => None,
            _ => self
                .instances
                .node(id)
                .await
                .map_err(|e| TargetError::aws(e, id))?,
        };
        if node.as_ref().is_some_and(NodeInfo::is_online) {
            return Ok(Way::Ssm {
                why: format!(
                    "its SSM agent is online in Session Manager (--via {})",
                    self.via
                ),
            });
        }
        if self.via == Via::Auto && self.waiting {
            return Ok(Way::Ssm {
                why: "--wait: waiting for its SSM agent".into(),
            });
        }
        let facts = self.ec2_facts(id, node).await;
        decide(self.via, id, &facts, self)
    }

    /// After Session Manager refused `id` as a target (not connected, unknown): the EICE
    /// way under `auto`; under `ssm` the hint when an endpoint would serve it; otherwise
    /// Session Manager's failure stands, under `auto` with what keeps EICE from reaching
    /// it. Session Manager is tried first so that reaching an online node costs no extra
    /// call. The caller passes only a refusal of the target: other failures stand as
    /// they are.
    pub async fn after_ssm_refusal(&self, id: &str) -> Result<Way, NoEice> {
        if self.via == Via::Eice {
            return Err(NoEice::Stands);
        }
        let node = self.instances.node(id).await.ok().flatten();
        if node.as_ref().is_some_and(NodeInfo::is_online) {
            return Err(NoEice::Stands);
        }
        let facts = self.ec2_facts(id, node).await;
        match decide(self.via, id, &facts, self) {
            Ok(way @ Way::Eice { .. }) => Ok(way),
            Ok(Way::Ssm { .. }) => Err(NoEice::Stands),
            Err(hint) if self.via == Via::Ssm => Err(NoEice::Hint(hint)),
            Err(_) => Err(NoEice::Missing(missing(&facts, id))),
        }
    }

    async fn ec2_facts(&self, id: &str, node: Option<NodeInfo>) -> Facts {
        let mut facts = Facts {
            node,
            ..Facts::default()
        };
        if !id.starts_with("i-") {
            return facts;
        }
        let query = InstanceQuery {
            ids: vec![id.to_owned()],
            ..InstanceQuery::default()
        };
        match self.ec2.describe_instances(&query).await {
            Ok(found) => facts.instance = found.into_iter().find(|i| i.instance_id == id),
            Err(e) => {
                facts.ec2_error = Some(e.message);
                return facts;
            }
        }
        let Some(vpc) = facts.instance.as_ref().and_then(|i| i.vpc_id.clone()) else {
            return facts;
        };
        match self.ec2.describe_endpoints(Some(&vpc)).await {
            Ok(all) => {
                facts.endpoint = facts
                    .instance
                    .as_ref()
                    .and_then(|i| choose_endpoint(&all, i).cloned())
            }
            Err(e) => facts.ec2_error = Some(e.message),
        }
        facts
    }
}

/// The usable endpoint in the instance's subnet, else one in its VPC.
pub fn choose_endpoint<'a>(
    endpoints: &'a [ConnectEndpoint],
    instance: &Ec2Instance,
) -> Option<&'a ConnectEndpoint> {
    let usable = || {
        endpoints
            .iter()
            .filter(|e| e.usable() && e.vpc_id.is_some() && e.vpc_id == instance.vpc_id)
            .filter(|e| e.dns_name.is_some())
    };
    usable()
        .find(|e| e.subnet_id.is_some() && e.subnet_id == instance.subnet_id)
        .or_else(|| usable().next())
}

/// The decision once SSM said the agent is not online (or was not asked).
pub fn decide(via: Via, id: &str, facts: &Facts, c: &Choice) -> Result<Way, TargetError> {
    let agent = match (&facts.node, via) {
        (Some(n), _) => format!("its SSM agent is {}", n.ping_status),
        (None, Via::Eice) => "Session Manager not asked".to_owned(),
        (None, _) => "it is not a managed node in Session Manager".to_owned(),
    };
    let running = facts
        .instance
        .as_ref()
        .is_some_and(|i| i.state == "running");
    let tunnel = match (&facts.instance, &facts.endpoint) {
        (Some(i), Some(e)) if running => tunnel_target(i, e, c),
        _ => None,
    };
    match (via, tunnel) {
        (Via::Auto | Via::Eice, Some(tunnel)) => {
            let why = format!(
                "{agent}; EC2 Instance Connect Endpoint {} serves its VPC (--via {via})",
                tunnel.endpoint_id
            );
            Ok(Way::Eice { tunnel, why })
        }
        (Via::Ssm, Some(tunnel)) => Err(TargetError::Target(format!(
            "{id} cannot be reached via Session Manager: {agent}; the EC2 Instance Connect Endpoint {} serves its VPC: use --via eice (or --via auto) to go through it",
            tunnel.endpoint_id
        ))),
        (Via::Ssm, None) => Ok(Way::Ssm {
            why: "--via ssm".into(),
        }),
        (_, None) => Err(TargetError::Target(format!(
            "{id} cannot be reached: {agent}, and {}",
            missing(facts, id)
        ))),
    }
}

/// What keeps EICE from reaching the target, and what would.
fn missing(facts: &Facts, id: &str) -> String {
    if !id.starts_with("i-") {
        return "EC2 Instance Connect Endpoints reach only EC2 instances (i-…)".to_owned();
    }
    if let Some(e) = &facts.ec2_error {
        return format!("EC2 could not be asked for an Instance Connect Endpoint: {e}");
    }
    let Some(i) = &facts.instance else {
        return format!("EC2 does not know {id} in this account and region");
    };
    if i.state != "running" {
        return format!(
            "the instance is {} (EC2 Instance Connect Endpoints reach running instances)",
            i.state
        );
    }
    if i.private_ip.is_none() && i.ipv6.is_none() {
        return "the instance has no private IP address for an EC2 Instance Connect Endpoint"
            .to_owned();
    }
    match &i.vpc_id {
        None => {
            "the instance is in no VPC, so no EC2 Instance Connect Endpoint can serve it".to_owned()
        }
        Some(vpc) => format!(
            "no EC2 Instance Connect Endpoint in state create-complete serves its VPC {vpc}; one created in {vpc} (aws ec2 create-instance-connect-endpoint --subnet-id {}) would reach it",
            i.subnet_id.as_deref().unwrap_or("SUBNET")
        ),
    }
}

fn tunnel_target(i: &Ec2Instance, e: &ConnectEndpoint, c: &Choice) -> Option<TunnelTarget> {
    let dns = if c.ec2.fips() {
        e.fips_dns_name.clone().or_else(|| e.dns_name.clone())
    } else {
        e.dns_name.clone()
    }?;
    Some(TunnelTarget {
        dns_name: dns,
        endpoint_id: e.id.clone(),
        address: i.private_ip.clone().or_else(|| i.ipv6.clone())?,
        port: c.port,
        max_duration: c.max_duration,
        plain: c.ec2.endpoint().to_ascii_lowercase().starts_with("http://"),
    })
}

#[cfg(test)]
#[path = "via_tests.rs"]
mod tests;
