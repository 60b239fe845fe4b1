//! Samples written by hand after the shapes of botocore's `ec2/2016-11-15/service-2.json`
//! (`DescribeInstancesResult`, `DescribeInstanceConnectEndpointsResult`) and EC2's
//! documented error response.

use super::*;

const INSTANCES: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
    <requestId>8f7724cf-496f-496e-8fe3-example</requestId>
    <reservationSet>
        <item>
            <reservationId>r-1234567890abcdef0</reservationId>
            <ownerId>123456789012</ownerId>
            <groupSet/>
            <instancesSet>
                <item>
                    <instanceId>i-0abc1234def567890</instanceId>
                    <imageId>ami-0abcdef1234567890</imageId>
                    <instanceState><code>16</code><name>running</name></instanceState>
                    <privateDnsName>ip-10-0-1-12.ec2.internal</privateDnsName>
                    <privateIpAddress>10.0.1.12</privateIpAddress>
                    <subnetId>subnet-0aaa</subnetId>
                    <vpcId>vpc-0bbb</vpcId>
                    <groupSet><item><groupId>sg-1</groupId><groupName>web</groupName></item></groupSet>
                    <tagSet>
                        <item><key>Name</key><value>web-1 &amp; co</value></item>
                        <item><key>team</key><value>infra</value></item>
                    </tagSet>
                    <networkInterfaceSet>
                        <item>
                            <networkInterfaceId>eni-1</networkInterfaceId>
                            <ipv6AddressesSet>
                                <item><ipv6Address>2001:db8::12</ipv6Address><isPrimaryIpv6>false</isPrimaryIpv6></item>
                            </ipv6AddressesSet>
                        </item>
                    </networkInterfaceSet>
                </item>
                <item>
                    <instanceId>i-0stopped000000000</instanceId>
                    <instanceState><code>80</code><name>stopped</name></instanceState>
                    <subnetId>subnet-0ccc</subnetId>
                    <vpcId>vpc-0bbb</vpcId>
                    <ipv6Address>2001:db8::99</ipv6Address>
                </item>
            </instancesSet>
        </item>
    </reservationSet>
    <nextToken>page2==</nextToken>
</DescribeInstancesResponse>"#;

#[test]
fn instances_are_read_with_their_addresses_network_and_tags() {
    let page = describe_instances(INSTANCES).unwrap();
    assert_eq!(page.next_token.as_deref(), Some("page2=="));
    assert_eq!(page.items.len(), 2);
    let a = &page.items[0];
    assert_eq!(a.instance_id, "i-0abc1234def567890");
    assert_eq!(a.state, "running");
    assert_eq!(a.private_ip.as_deref(), Some("10.0.1.12"));
    assert_eq!(
        a.ipv6.as_deref(),
        Some("2001:db8::12"),
        "from its interface"
    );
    assert_eq!(a.vpc_id.as_deref(), Some("vpc-0bbb"));
    assert_eq!(a.subnet_id.as_deref(), Some("subnet-0aaa"));
    assert_eq!(a.name(), Some("web-1 & co"));
    assert_eq!(a.tags.len(), 2);
    let b = &page.items[1];
    assert_eq!(b.state, "stopped");
    assert_eq!(b.private_ip, None);
    assert_eq!(b.ipv6.as_deref(), Some("2001:db8::99"));
    assert_eq!(b.name(), None);
}

#[test]
fn an_empty_answer_is_an_empty_last_page() {
    let page = describe_instances(
        r#"<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>x</requestId><reservationSet/></DescribeInstancesResponse>"#,
    )
    .unwrap();
    assert!(page.items.is_empty());
    assert_eq!(page.next_token, None);
}

const ENDPOINTS: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<DescribeInstanceConnectEndpointsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
    <requestId>4c1bbd4c-example</requestId>
    <instanceConnectEndpointSet>
        <item>
            <ownerId>123456789012</ownerId>
            <instanceConnectEndpointId>eice-0123456789example</instanceConnectEndpointId>
            <instanceConnectEndpointArn>arn:aws:ec2:us-east-1:123456789012:instance-connect-endpoint/eice-0123456789example</instanceConnectEndpointArn>
            <state>create-complete</state>
            <stateMessage/>
            <dnsName>eice-0123456789example.b67b86ba.ec2-instance-connect-endpoint.us-east-1.amazonaws.com</dnsName>
            <fipsDnsName>eice-0123456789example.b67b86ba.fips.ec2-instance-connect-endpoint.us-east-1.amazonaws.com</fipsDnsName>
            <networkInterfaceIdSet><item>eni-0123</item></networkInterfaceIdSet>
            <vpcId>vpc-0bbb</vpcId>
            <availabilityZone>us-east-1a</availabilityZone>
            <createdAt>2023-06-13T17:03:27.000Z</createdAt>
            <subnetId>subnet-0aaa</subnetId>
            <preserveClientIp>false</preserveClientIp>
            <securityGroupIdSet><item>sg-0123</item></securityGroupIdSet>
            <tagSet/>
        </item>
        <item>
            <instanceConnectEndpointId>eice-0deleting</instanceConnectEndpointId>
            <state>delete-in-progress</state>
            <vpcId>vpc-0bbb</vpcId>
            <subnetId>subnet-0ccc</subnetId>
        </item>
    </instanceConnectEndpointSet>
</DescribeInstanceConnectEndpointsResponse>"#;

#[test]
fn endpoints_are_read_with_their_state_and_names() {
    let page = describe_endpoints(ENDPOINTS).unwrap();
    assert_eq!(page.next_token, None);
    assert_eq!(page.items.len(), 2);
    let e = &page.items[0];
    assert_eq!(e.id, "eice-0123456789example");
    assert!(e.usable());
    assert!(
        e.dns_name
            .as_deref()
            .unwrap()
            .starts_with("eice-0123456789example.b67b86ba.ec2")
    );
    assert!(e.fips_dns_name.as_deref().unwrap().contains(".fips."));
    assert_eq!(e.vpc_id.as_deref(), Some("vpc-0bbb"));
    assert_eq!(e.subnet_id.as_deref(), Some("subnet-0aaa"));
    assert!(!page.items[1].usable());
    assert_eq!(page.items[1].dns_name, None);
}

#[test]
fn usable_states() {
    for (state, ok) in [
        ("create-complete", true),
        ("update-in-progress", true),
        ("update-complete", true),
        ("create-in-progress", false),
        ("create-failed", false),
        ("delete-complete", false),
    ] {
        let e = ConnectEndpoint {
            state: state.into(),
            ..Default::default()
        };
        assert_eq!(e.usable(), ok, "{state}");
    }
}

#[test]
fn errors_are_read_from_the_error_document() {
    let body = r#"<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>You are not authorized to perform this operation. User: arn:aws:iam::123456789012:user/alice is not authorized to perform: ec2:DescribeInstances</Message></Error></Errors><RequestID>abc</RequestID></Response>"#;
    let (code, message) = error(body).unwrap();
    assert_eq!(code, "UnauthorizedOperation");
    assert!(message.contains("ec2:DescribeInstances"), "{message}");
    let body = "<Response><Errors><Error><Code>InvalidInstanceID.NotFound</Code><Message>The instance ID 'i-0000' does not exist</Message></Error></Errors><RequestID>x</RequestID></Response>";
    assert_eq!(error(body).unwrap().0, "InvalidInstanceID.NotFound");
    assert_eq!(error("<html>gateway timeout</html>"), None);
    assert_eq!(error("not xml at all"), None);
    assert_eq!(error(""), None);
}

#[test]
fn oversized_strings_and_lists_are_refused() {
    let long = "a".repeat(MAX_STRING + 1);
    let body = format!(
        "<DescribeInstanceConnectEndpointsResponse><instanceConnectEndpointSet><item><instanceConnectEndpointId>eice-1</instanceConnectEndpointId><dnsName>{long}</dnsName></item></instanceConnectEndpointSet></DescribeInstanceConnectEndpointsResponse>"
    );
    let e = describe_endpoints(&body).unwrap_err();
    assert!(e.0.contains("<dnsName> is longer"), "{e}");
    let item = "<item><instanceId>i-1</instanceId></item>";
    let body = format!(
        "<DescribeInstancesResponse><reservationSet><item><instancesSet>{}</instancesSet></item></reservationSet></DescribeInstancesResponse>",
        item.repeat(MAX_ITEMS + 1)
    );
    let e = describe_instances(&body).unwrap_err();
    assert!(e.0.contains("more than 1000 instances"), "{e}");
}

#[test]
fn a_wrong_document_is_refused() {
    assert!(describe_instances(ENDPOINTS).is_err());
    assert!(describe_endpoints("").is_err());
    assert!(describe_endpoints(INSTANCES).is_err());
    let e = describe_instances("<DescribeInstancesResponse><reservationSet><item><instancesSet><item><vpcId>v</vpcId></item></instancesSet></item></reservationSet></DescribeInstancesResponse>").unwrap_err();
    assert!(e.0.contains("without instanceId"), "{e}");
}
