//! `sallyport forward`: local listeners (and a SOCKS5 server) whose connections ride port
//! sessions to a node, or EC2 Instance Connect Endpoint tunnels when that is the way.

use std::net::SocketAddr;

use super::CommandError;
use crate::aws::{AwsConfig, Ssm};
use crate::session::eice::EiceStream;
use crate::session::forward::{self, ForwardRequest, ForwardSpec};
use crate::target::via::Via;
use crate::target::{Found, TargetSettings};
use crate::transport::LinkOptions;

/// `sallyport forward`.
pub struct ForwardRun {
    pub on: TargetSettings,
    pub specs: Vec<ForwardSpec>,
    pub socks: Option<SocketAddr>,
    pub open: bool,
    pub link: LinkOptions,
}

/// `sallyport forward`: every forward, until Ctrl-C or until all have ended.
pub async fn run(run: ForwardRun) -> Result<u8, CommandError> {
    super::on_node(&run.on, async |config, found| {
        let req = ForwardRequest {
            target: found.id.clone(),
            specs: run.specs,
            socks: run.socks,
            open: run.open,
            start: found.start_options(&run.on),
            link: run.link,
        };
        if let Some(t) = way(config, found, &run.on, &req).await? {
            return Ok(forward::eice::run(&t, &req).await?);
        }
        let ssm = Ssm::new(config);
        let result = forward::run(&ssm, &req).await;
        // Sessions whose set-up the stop cut short are ended in the background.
        ssm.await_background(super::BACKGROUND_BUDGET).await;
        Ok(result?)
    })
    .await
}

/// Forwards listen for a long time: the way is decided once, up front (`auto` asks
/// whether the agent is online; an offline one with an endpoint goes through EICE).
/// `None`: Session Manager.
async fn way(
    config: &AwsConfig,
    found: &Found,
    on: &TargetSettings,
    req: &ForwardRequest,
) -> Result<Option<EiceStream>, CommandError> {
    let first_port = match req.specs.first().map(|s| &s.remote) {
        Some(forward::Remote::Port(p) | forward::Remote::Host { port: p, .. }) => *p,
        None => 22,
    };
    if let Some(t) = super::way_first(config, found, on, first_port).await? {
        return Ok(Some(t));
    }
    if on.via != Via::Auto {
        return Ok(None);
    }
    let node = found.instances.node(&found.id).await.ok().flatten();
    if node.is_some_and(|n| n.is_online()) {
        return Ok(None);
    }
    let offline = super::CommandError::NotConnected(found.id.clone());
    Ok(super::way_after(config, found, on, first_port, offline)
        .await
        .ok())
}
