"""Reads the testbed's EC2 answers with boto3 (run by testbed/tests/boto3_ec2.rs).

The environment points boto3 at the testbed (AWS_ENDPOINT_URL, keys, region). Expects
the instances file the Rust test writes: 7 instances i-...0 to i-...6, instance 1 with
an IPv6 address and a `db` VPC, instance 2 ConnectionLost + running, one endpoint in
the default VPC. Prints OK, or fails with an assertion naming what differs.
"""
import os
import sys

import boto3
from botocore.exceptions import ClientError

ec2 = boto3.client("ec2")

pages = list(
    ec2.get_paginator("describe_instances").paginate(PaginationConfig={"PageSize": 5})
)
assert len(pages) == 2, f"expected 2 pages of 5, got {len(pages)}"
instances = [i for p in pages for r in p["Reservations"] for i in r["Instances"]]
ids = [i["InstanceId"] for i in instances]
assert ids == [f"i-{n:017x}" for n in range(7)], ids

one = instances[1]
assert one["PrivateIpAddress"] == "10.0.1.7", one
assert one["Ipv6Address"] == "fd00::7", one
assert one["VpcId"] == "vpc-00000000000000db0", one
assert one["SubnetId"] == "subnet-00000000000000db0", one
assert one["State"] == {"Code": 16, "Name": "running"}, one["State"]
assert {"Key": "Name", "Value": "web-1"} in one["Tags"], one["Tags"]
eni = one["NetworkInterfaces"][0]
assert eni["Ipv6Addresses"][0]["Ipv6Address"] == "fd00::7", eni
assert eni["PrivateIpAddress"] == "10.0.1.7", eni
assert one["Placement"]["AvailabilityZone"].startswith(os.environ["AWS_REGION"])

offline = ec2.describe_instances(
    Filters=[
        {"Name": "tag:Name", "Values": ["web-2"]},
        {"Name": "instance-state-name", "Values": ["running"]},
    ]
)
found = [i["InstanceId"] for r in offline["Reservations"] for i in r["Instances"]]
assert found == [f"i-{2:017x}"], found

by_vpc = ec2.describe_instances(
    Filters=[{"Name": "vpc-id", "Values": ["vpc-00000000000000db0"]}]
)
assert len(by_vpc["Reservations"]) == 1, by_vpc

try:
    ec2.describe_instances(InstanceIds=["i-0000000000000dead"])
    raise AssertionError("a missing instance was found")
except ClientError as e:
    assert e.response["Error"]["Code"] == "InvalidInstanceID.NotFound", e.response

endpoints = ec2.describe_instance_connect_endpoints()["InstanceConnectEndpoints"]
assert len(endpoints) == 1, endpoints
e = endpoints[0]
assert e["InstanceConnectEndpointId"] == "eice-0123456789abcdef0", e
assert e["State"] == "create-complete", e
assert e["DnsName"] == os.environ["EXPECT_DNS_NAME"], e
assert e["FipsDnsName"] == e["DnsName"], e
assert e["VpcId"] == "vpc-0de1a0170000e1ce0", e
assert e["SubnetId"] == "subnet-0de1a0170000e1ce0", e
paged = list(
    ec2.get_paginator("describe_instance_connect_endpoints").paginate(
        PaginationConfig={"PageSize": 1}
    )
)
assert sum(len(p["InstanceConnectEndpoints"]) for p in paged) == 1, paged

print("OK", boto3.__version__)
sys.stdout.flush()
