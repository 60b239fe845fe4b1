//! The agent end of a data channel, modelled on amazon-ssm-agent.

use std::time::Duration;

/// How the agent behaves; the defaults are the real agent's (PROTOCOL.md §6.6, §14).
#[derive(Clone, Debug)]
pub struct AgentSettings {
    /// Bytes read from the instance-side socket per message (StreamDataPayloadSize).
    pub chunk_size: usize,
    /// Pause after each data message sent (the agent's `time.Sleep(time.Millisecond)`).
    pub pace: Duration,
}

impl Default for AgentSettings {
    fn default() -> Self {
        AgentSettings {
            chunk_size: 1024,
            pace: Duration::from_millis(1),
        }
    }
}
