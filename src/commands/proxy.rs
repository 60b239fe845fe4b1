//! `sallyport proxy`: an ssh ProxyCommand to a node's port, optionally pushing a key
//! through EC2 Instance Connect while the session starts.

use std::path::PathBuf;

use super::CommandError;
use crate::aws::{InstanceConnect, Ssm};
use crate::session::proxy::{self, ProxyRequest, PushKey};
use crate::target::TargetSettings;
use crate::transport::LinkOptions;

/// `sallyport proxy`.
pub struct ProxyRun {
    pub on: TargetSettings,
    pub port: u16,
    /// `--push-key`: for this OS user, with this key.
    pub push: Option<PushKeyFor>,
    pub link: LinkOptions,
}

pub struct PushKeyFor {
    pub user: String,
    pub ephemeral: bool,
    pub identity: Option<PathBuf>,
}

/// `sallyport proxy`: stdin and stdout carried to the node's port until either side ends.
pub async fn run(run: ProxyRun) -> Result<u8, CommandError> {
    super::on_node(&run.on, async |config, found| {
        let ssm = Ssm::new(config);
        let push = match run.push {
            Some(p) => Some(PushKey {
                eic: InstanceConnect::new(&config.sdk),
                user: p.user,
                public_key: proxy::key_to_push(p.ephemeral, p.identity.as_deref()).await?,
                profile: run.on.aws.profile.clone(),
            }),
            None => None,
        };
        let eice = super::way_first(config, found, &run.on, run.port).await?;
        let req = ProxyRequest {
            target: found.id.clone(),
            port: run.port,
            start: found.start_options(&run.on),
            link: run.link,
            push,
        };
        if let Some(tunnel) = eice {
            proxy::run_eice(&tunnel, &req).await?;
            return Ok(0);
        }
        // Session Manager fails before reading stdin, so the tunnel starts afresh.
        let result = proxy::run(&ssm, &req).await;
        // The session of a set-up a stop signal cut short is ended in the background.
        ssm.await_background(super::BACKGROUND_BUDGET).await;
        match result {
            Err(e) => {
                let tunnel = super::way_after(config, found, &run.on, run.port, e.into()).await?;
                proxy::run_eice(&tunnel, &req).await?;
                Ok(0)
            }
            Ok(()) => Ok(0),
        }
    })
    .await
}
