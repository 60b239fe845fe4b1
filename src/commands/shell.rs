//! `sallyport shell`: an interactive shell on a node, on the local terminal.

use std::collections::BTreeMap;

use super::CommandError;
use crate::aws::Ssm;
use crate::session::shell::{self, ShellRequest};
use crate::target::TargetSettings;
use crate::transport::LinkOptions;

/// `sallyport shell`.
pub struct ShellRun {
    pub on: TargetSettings,
    pub document: Option<String>,
    pub parameters: BTreeMap<String, Vec<String>>,
    pub link: LinkOptions,
}

/// `sallyport shell`.
pub async fn run(run: ShellRun) -> Result<u8, CommandError> {
    super::session_manager_only(&run.on, "shell")?;
    super::on_node(&run.on, async |config, found| {
        let req = ShellRequest {
            target: found.id.clone(),
            document: run.document,
            parameters: run.parameters,
            start: found.start_options(&run.on),
            link: run.link,
        };
        let ssm = Ssm::new(config);
        let result = shell::run(&ssm, &req).await;
        // The session of a set-up a stop signal cut short is ended in the background.
        ssm.await_background(super::BACKGROUND_BUDGET).await;
        Ok(result?)
    })
    .await
}
