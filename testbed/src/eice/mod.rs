//! The EC2 Instance Connect Endpoint's tunnel (docs/protocol.md §10.3): `GET /openTunnel`
//! on the testbed's listener, a websocket presigned for `ec2-instance-connect` that
//! carries one TCP connection to an instance's private address as raw bytes in BINARY
//! frames.
//!
//! [`request`] checks the upgrade before it is accepted (presigned query, endpoint, the
//! instance at `privateIpAddress`, `remotePort`, the endpoint's connection limit) and
//! [`relay`] carries the bytes through the same link shaping as the data channel
//! (`--rtt`, `--relay-rate`, `--jitter`, plus `--eice-rate`), ending the tunnel at
//! `maxTunnelDuration`. Imports `world` and `aws_api` (the account, SigV4, the DNS name
//! the EC2 API hands out).

pub mod relay;
pub mod request;
