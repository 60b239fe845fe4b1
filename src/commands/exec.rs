//! `sallyport exec`: one command on a node, with separate output streams and its exit
//! code.

use std::collections::BTreeMap;

use super::CommandError;
use crate::aws::Ssm;
use crate::session::exec::{self, ExecRequest};
use crate::target::TargetSettings;
use crate::transport::LinkOptions;

/// `sallyport exec`.
pub struct ExecRun {
    pub on: TargetSettings,
    /// The command line for the remote shell.
    pub command: String,
    pub document: Option<String>,
    pub parameters: BTreeMap<String, Vec<String>>,
    pub link: LinkOptions,
}

/// `sallyport exec`: `Ok` holds the remote command's exit code.
pub async fn run(run: ExecRun) -> Result<u8, CommandError> {
    super::session_manager_only(&run.on, "exec")?;
    super::on_node(&run.on, async |config, found| {
        let req = ExecRequest {
            target: found.id.clone(),
            command: run.command,
            document: run.document,
            parameters: run.parameters,
            cache_scope: run.on.cache_scope.clone(),
            start: found.start_options(&run.on),
            link: run.link,
        };
        let ssm = Ssm::new(config);
        let result = exec::run(&ssm, &req).await;
        // The session of a set-up a stop signal cut short is ended in the background.
        ssm.await_background(super::BACKGROUND_BUDGET).await;
        Ok(result?)
    })
    .await
}
