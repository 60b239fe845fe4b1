use aws_config::{BehaviorVersion, Region, SdkConfig};

use super::*;
use crate::error::{ExitCode, Failure};

fn config(fips: bool, endpoint: Option<&str>) -> SdkConfig {
    let mut b = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        .use_fips(fips);
    if let Some(e) = endpoint {
        b = b.endpoint_url(e);
    }
    b.build()
}

fn instance(state: &str) -> Ec2Instance {
    Ec2Instance {
        instance_id: "i-0abc1234".into(),
        state: state.into(),
        private_ip: Some("10.0.1.12".into()),
        ipv6: None,
        vpc_id: Some("vpc-1".into()),
        subnet_id: Some("subnet-b".into()),
        tags: vec![],
    }
}

fn endpoint(id: &str, vpc: &str, subnet: &str, state: &str) -> ConnectEndpoint {
    ConnectEndpoint {
        id: id.into(),
        state: state.into(),
        dns_name: Some(format!(
            "{id}.ec2-instance-connect-endpoint.eu-west-1.amazonaws.com"
        )),
        fips_dns_name: Some(format!(
            "{id}.fips.ec2-instance-connect-endpoint.eu-west-1.amazonaws.com"
        )),
        vpc_id: Some(vpc.into()),
        subnet_id: Some(subnet.into()),
    }
}

fn offline() -> NodeInfo {
    NodeInfo {
        id: "i-0abc1234".into(),
        ping_status: "ConnectionLost".into(),
        last_ping: None,
        ip_address: None,
        computer_name: None,
        name: None,
        platform: None,
        agent_version: None,
    }
}

/// Runs `decide` with the clients built from `sdk`.
fn run(via: Via, facts: &Facts, sdk: &SdkConfig) -> Result<Way, Failure> {
    let instances = Instances::new(sdk);
    let ec2 = Ec2::new(sdk);
    let c = Choice {
        via,
        instances: &instances,
        ec2: &ec2,
        port: 22,
        max_duration: Duration::from_secs(600),
        waiting: false,
    };
    decide(via, "i-0abc1234", facts, &c).map_err(Failure::from)
}

#[test]
fn via_is_parsed_and_named() {
    assert_eq!("SSM".parse::<Via>(), Ok(Via::Ssm));
    assert_eq!(" eice".parse::<Via>(), Ok(Via::Eice));
    assert_eq!("auto".parse::<Via>(), Ok(Via::Auto));
    let e = "bastion".parse::<Via>().unwrap_err();
    assert!(e.contains("use ssm, eice or auto"), "{e}");
    assert_eq!(Via::default(), Via::Auto);
    assert_eq!(Via::Eice.to_string(), "eice");
}

#[test]
fn the_endpoint_in_the_subnet_wins_then_any_usable_one_in_the_vpc() {
    let i = instance("running");
    let all = [
        endpoint("eice-other-vpc", "vpc-2", "subnet-b", "create-complete"),
        endpoint("eice-vpc", "vpc-1", "subnet-a", "create-complete"),
        endpoint("eice-subnet", "vpc-1", "subnet-b", "update-in-progress"),
        endpoint("eice-deleting", "vpc-1", "subnet-b", "delete-in-progress"),
    ];
    assert_eq!(choose_endpoint(&all, &i).unwrap().id, "eice-subnet");
    assert_eq!(choose_endpoint(&all[..2], &i).unwrap().id, "eice-vpc");
    assert_eq!(choose_endpoint(&[all[0].clone(), all[3].clone()], &i), None);
}

#[test]
fn auto_takes_eice_for_an_offline_agent_when_an_endpoint_serves_the_vpc() {
    let facts = Facts {
        node: Some(offline()),
        instance: Some(instance("running")),
        endpoint: Some(endpoint("eice-1", "vpc-1", "subnet-b", "create-complete")),
        ec2_error: None,
    };
    let way = run(Via::Auto, &facts, &config(false, None)).unwrap();
    let Way::Eice { tunnel, why } = way else {
        panic!("{way:?}")
    };
    assert_eq!(
        tunnel,
        TunnelTarget {
            dns_name: "eice-1.ec2-instance-connect-endpoint.eu-west-1.amazonaws.com".into(),
            endpoint_id: "eice-1".into(),
            address: "10.0.1.12".into(),
            port: 22,
            max_duration: Duration::from_secs(600),
            plain: false,
        }
    );
    assert!(
        why.contains("ConnectionLost") && why.contains("eice-1"),
        "{why}"
    );
    // The same with --via eice; under FIPS the FipsDnsName; a plain local EC2 endpoint
    // (the testbed) makes a plain tunnel.
    assert!(matches!(
        run(Via::Eice, &facts, &config(false, None)),
        Ok(Way::Eice { .. })
    ));
    let Ok(Way::Eice { tunnel, .. }) = run(Via::Auto, &facts, &config(true, None)) else {
        panic!()
    };
    assert!(tunnel.dns_name.contains(".fips."), "{}", tunnel.dns_name);
    let Ok(Way::Eice { tunnel, .. }) = run(
        Via::Auto,
        &facts,
        &config(false, Some("http://127.0.0.1:4566")),
    ) else {
        panic!()
    };
    assert!(tunnel.plain);
}

#[test]
fn via_ssm_to_an_offline_instance_with_an_endpoint_fails_with_the_hint() {
    let facts = Facts {
        node: Some(offline()),
        instance: Some(instance("running")),
        endpoint: Some(endpoint("eice-1", "vpc-1", "subnet-b", "create-complete")),
        ec2_error: None,
    };
    let f = run(Via::Ssm, &facts, &config(false, None)).unwrap_err();
    assert_eq!(f.code, ExitCode::Target);
    assert!(
        f.message.contains("--via eice") && f.message.contains("eice-1"),
        "{}",
        f.message
    );
    assert!(!f.message.contains('\n'));
    // Without an endpoint, --via ssm goes its usual way (and fails there as it always did).
    let facts = Facts {
        endpoint: None,
        ..facts
    };
    assert!(matches!(
        run(Via::Ssm, &facts, &config(false, None)),
        Ok(Way::Ssm { .. })
    ));
}

#[test]
fn no_way_names_what_is_missing() {
    let mut facts = Facts {
        node: None,
        instance: Some(instance("running")),
        endpoint: None,
        ec2_error: None,
    };
    for via in [Via::Eice, Via::Auto] {
        let f = run(via, &facts, &config(false, None)).unwrap_err();
        assert_eq!(f.code, ExitCode::Target);
        assert!(
            f.message.contains("no EC2 Instance Connect Endpoint")
                && f.message.contains("vpc-1")
                && f.message.contains("would reach it"),
            "{}",
            f.message
        );
    }
    facts.instance = Some(instance("stopped"));
    facts.endpoint = Some(endpoint("eice-1", "vpc-1", "subnet-b", "create-complete"));
    let f = run(Via::Eice, &facts, &config(false, None)).unwrap_err();
    assert!(
        f.message.contains("the instance is stopped"),
        "{}",
        f.message
    );
    facts.instance = None;
    let f = run(Via::Eice, &facts, &config(false, None)).unwrap_err();
    assert!(
        f.message.contains("EC2 does not know i-0abc1234"),
        "{}",
        f.message
    );
    facts.ec2_error = Some("DescribeInstances failed: UnauthorizedOperation".into());
    let f = run(Via::Eice, &facts, &config(false, None)).unwrap_err();
    assert!(f.message.contains("UnauthorizedOperation"), "{}", f.message);
}
