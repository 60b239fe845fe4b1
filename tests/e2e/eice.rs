//! EC2 Instance Connect Endpoint: an instance whose agent is offline, in a VPC the
//! testbed's endpoint serves (docs/protocol.md §10.3).

use std::time::Duration;

use sallyport::aws::{AwsConfig, Ec2};
use sallyport::target::via::{Choice, Via, Way};
use sallyport_testbed::TestbedConfig;
use sallyport_testbed::world::endpoints::EndpointConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::Fixture;

pub const ENDPOINT: &str = "eice-0123456789abcdef0";

/// The fixture's instance with its agent offline (reachable through EICE only) and an
/// endpoint in its VPC when `endpoint`.
pub fn agentless(c: &mut TestbedConfig, endpoint: bool) {
    let i = &mut c.instances[0];
    i.ping_status = "ConnectionLost".to_owned();
    i.ec2_state = Some("running".to_owned());
    if endpoint {
        let e = EndpointConfig::new(ENDPOINT, i.vpc_id(), i.subnet_id());
        c.instance_connect_endpoints = vec![e];
    }
}

/// The client's own pieces against the testbed, before any command: EC2 lookups, the
/// choice, the presign and the tunnel to the instance's sshd.
#[test]
fn the_library_chooses_eice_and_its_tunnel_reaches_sshd() {
    let f = Fixture::with_config(|c| {
        c.tls = false;
        agentless(c, true);
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let tb = &f.testbed;
        let creds = aws_sdk_ssm::config::Credentials::new(
            &tb.access_key_id,
            &tb.secret_access_key,
            None,
            None,
            "test",
        );
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(tb.region.clone()))
            .endpoint_url(&tb.endpoint)
            .credentials_provider(aws_sdk_ssm::config::SharedCredentialsProvider::new(creds))
            .build();
        let config = AwsConfig::from(sdk.clone());
        let instances = sallyport::aws::Instances::new(&sdk);
        let ec2 = Ec2::new(&sdk);
        let choice = Choice {
            via: Via::Auto,
            instances: &instances,
            ec2: &ec2,
            port: 22,
            max_duration: Duration::from_secs(3600),
            waiting: false,
        };
        let way = choice.choose(&f.instance).await.unwrap();
        let Way::Eice { tunnel, why } = way else {
            panic!("{way:?}")
        };
        assert_eq!(tunnel.endpoint_id, ENDPOINT);
        assert!(tunnel.plain, "a plain testbed, a plain tunnel");
        assert!(why.contains("ConnectionLost"), "{why}");
        let stream =
            sallyport::session::eice::EiceStream::new(&config, tunnel, &f.instance).unwrap();
        let (mut pipe, _guard) = stream.open().await.unwrap();
        let mut banner = [0u8; 8];
        tokio::time::timeout(Duration::from_secs(20), pipe.read_exact(&mut banner))
            .await
            .expect("sshd's banner in time")
            .unwrap();
        assert_eq!(&banner, b"SSH-2.0-", "sshd answers through the tunnel");
        pipe.shutdown().await.unwrap();
        // --via ssm to it: exit 5 with the hint.
        let ssm = Choice {
            via: Via::Ssm,
            ..choice
        };
        let f5 = ssm.choose(&f.instance).await.unwrap_err();
        assert_eq!(f5.code as i32, 5);
        assert!(f5.message.contains("--via eice"), "{}", f5.message);
    });
}
