//! The Message Gateway Service end of the data-channel websocket.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;

use crate::config::TestbedConfig;
use crate::state::SessionRecord;

/// Serves one accepted data-channel websocket for `session` until it closes.
pub async fn serve_data_channel<S>(
    _ws: WebSocketStream<S>,
    _session: Arc<SessionRecord>,
    _config: Arc<TestbedConfig>,
) -> anyhow::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    anyhow::bail!("relay: work in progress")
}
