//! Standard_Stream and InteractiveCommands on a pty (not yet).

use std::sync::Arc;

use crate::agent::{AgentIo, AgentOut, AgentSettings};
use crate::state::SessionRecord;

pub async fn run(
    _session: Arc<SessionRecord>,
    _settings: AgentSettings,
    io: AgentIo,
) -> anyhow::Result<()> {
    let _ = io.to_client.send(AgentOut::Close {
        output: "shell sessions are not supported by the testbed yet".into(),
    });
    Ok(())
}
