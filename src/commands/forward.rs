//! `sallyport forward`: local listeners (and a SOCKS5 server) whose connections ride port
//! sessions to a node.

use std::net::SocketAddr;

use crate::aws::Ssm;
use crate::error::Failure;
use crate::session::forward::{self, ForwardRequest, ForwardSpec};
use crate::target::{self, TargetSettings};
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
pub async fn run(run: ForwardRun) -> Result<u8, Failure> {
    let (config, found) = target::locate(&run.on).await?;
    let req = ForwardRequest {
        target: found.id.clone(),
        specs: run.specs,
        socks: run.socks,
        open: run.open,
        start: found.start_options(&run.on),
        link: run.link,
    };
    // Forwards listen for a long time: the way is decided once, up front (`auto` asks
    // whether the agent is online; an offline one with an endpoint goes through EICE).
    let first_port = match req.specs.first().map(|s| &s.remote) {
        Some(forward::Remote::Port(p) | forward::Remote::Host { port: p, .. }) => *p,
        None => 22,
    };
    let eice = match super::way_first(&config, &found, &run.on, first_port).await? {
        Some(t) => Some(t),
        None if run.on.via == crate::target::via::Via::Auto => {
            let node = found.instances.node(&found.id).await.ok().flatten();
            if node.is_some_and(|n| n.is_online()) {
                None
            } else {
                let offline = Failure::new(
                    crate::error::ExitCode::Target,
                    format!("{} is not connected to Session Manager", found.id),
                );
                super::way_after(&config, &found, &run.on, first_port, offline)
                    .await
                    .ok()
            }
        }
        None => None,
    };
    match eice {
        Some(t) => crate::session::forward_eice::run(&t, &req).await,
        None => forward::run(&Ssm::new(&config), &req).await,
    }
}
