//! The tokio side: a websocket to the Message Gateway Service on one side, a
//! [`ClientSession`](crate::proto::client::ClientSession) on the other.
//!
//! [`Link`] owns the websocket in a background task (pings, dead-connection detection,
//! resume after a drop). [`Engine`] is the one event loop between a link and the sans-IO
//! core, with bounded local buffers; session kinds ([`Kind`]) plug into it, such as the
//! byte stream of [`drive_stream`]. Every protocol decision lives in `proto`.

mod connect;
mod data_key;
pub mod dns;
mod driver;
mod eice;
pub mod engine;
mod link;
mod proxy;
mod trust;
mod tunnel;
mod upgrade_auth;

pub use connect::{
    ConnectError, DataChannelSocket, Dialer, Network, Predialed, connect, connect_reusing, predial,
};
pub use data_key::{DataKey, DataKeyError, DataKeyProvider, answer_data_key_request};
pub use driver::{DriveError, DriveOptions, Outcome, drive_stream};
pub use eice::{
    EiceDialer, MAX_FRAME, MAX_TUNNEL_DURATION, TunnelError, TunnelGuard, TunnelPresigner,
    TunnelTarget,
};
pub use engine::{Cx, Engine, EngineOptions, Kind, OutputId, Ready, handle_link_event};
pub use link::{
    Link, LinkError, LinkEvent, LinkOptions, LinkTarget, LinkWake, Resume, ResumeError,
    ResumeErrorKind, Resumed,
};
pub use proxy::{NoProxy, ProxyConfigError, ProxyRequest, ProxyRoutes, ProxyUrl, redact_userinfo};
pub use trust::{CaBundle, CaBundleError, client_config, is_unknown_issuer};
/// The proxy's CONNECT answer parser, for the fuzz properties.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) use tunnel::{HeadError, MAX_RESPONSE, parse_status, read_head};
pub use tunnel::{NetStream, ProxyFailure, open_tunnel};
pub use upgrade_auth::{SignError, UpgradeAuth, UpgradeSigner, is_presigned};
