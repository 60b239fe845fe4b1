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
    forward::run(&Ssm::new(&config), &req).await
}
