//! Byte streams over EC2 Instance Connect Endpoint tunnels (docs/protocol.md §10.3): what
//! `proxy`, the SSH client and `forward` open instead of a Session Manager port session
//! when the way chosen is EICE. One tunnel per stream: no resume, no agent pacing, no
//! Session Manager session record.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::SessionError;
use crate::aws::{AwsConfig, SdkTunnelPresigner};
use crate::transport::{EiceDialer, TunnelError, TunnelGuard, TunnelTarget};

/// Opens tunnels to one instance's port.
#[derive(Clone)]
pub struct EiceStream {
    dialer: EiceDialer,
    pub tunnel: TunnelTarget,
    /// The target as named, for messages.
    pub target: String,
}

impl EiceStream {
    pub fn new(
        config: &AwsConfig,
        tunnel: TunnelTarget,
        target: &str,
    ) -> Result<Self, SessionError> {
        let presigner =
            SdkTunnelPresigner::from_config(&config.sdk).ok_or(SessionError::NoTunnelSigner)?;
        Ok(EiceStream {
            dialer: EiceDialer {
                presigner: Arc::new(presigner),
                network: config.network.clone(),
            },
            tunnel,
            target: target.to_owned(),
        })
    }

    /// The same instance on another port (`forward`).
    pub fn with_port(&self, port: u16) -> EiceStream {
        let mut s = self.clone();
        s.tunnel.port = port;
        s
    }

    /// One new tunnel.
    pub async fn open(&self) -> Result<(DuplexStream, TunnelGuard), SessionError> {
        self.dialer
            .open(&self.tunnel)
            .await
            .map_err(|e| failure(e, &self.target, self.tunnel.port))
    }
}

/// A tunnel's failure, naming the instance and port.
pub fn failure(source: TunnelError, target: &str, port: u16) -> SessionError {
    SessionError::Tunnel {
        source,
        target: target.to_owned(),
        port,
    }
}

/// `sallyport proxy` over a tunnel: stdin to the instance's port, its bytes to stdout.
pub async fn proxy(stream: &EiceStream) -> Result<(), SessionError> {
    let (pipe, mut guard) = stream.open().await?;
    let (mut from, mut to) = tokio::io::split(pipe);
    let up = async {
        let mut stdin = tokio::io::stdin();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stdin.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown().await;
    };
    let down = async {
        let mut stdout = tokio::io::stdout();
        let copied = tokio::io::copy(&mut from, &mut stdout).await;
        let _ = stdout.flush().await;
        copied
    };
    let stop = super::proxy::stop_signal();
    tokio::pin!(up, down, stop);
    let mut up_done = false;
    // The instance's side ending ends the proxy; stdin ending only ends our sending.
    let ended = loop {
        tokio::select! {
            () = &mut up, if !up_done => up_done = true,
            r = &mut down => break Ok(r),
            sig = &mut stop => break Err(sig),
        }
    };
    match ended {
        Err("SIGHUP") => Ok(()),
        Err(sig) => Err(SessionError::Interrupted(sig)),
        Ok(_) => match guard.failure(Duration::from_secs(2)).await {
            Some(e) => Err(failure(e, &stream.target, stream.tunnel.port)),
            None => Ok(()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{ExitCode, Failure};

    #[test]
    fn each_tunnel_failure_has_its_exit_code_and_one_line() {
        let cases = [
            (
                TunnelError::Refused {
                    endpoint: "eice-1".into(),
                    status: 403,
                    advice: "",
                },
                ExitCode::AccessDenied,
            ),
            (TunnelError::MaxDuration(60), ExitCode::SessionEnded),
            (
                TunnelError::Closed {
                    code: 1011,
                    reason: ": x".into(),
                },
                ExitCode::SessionEnded,
            ),
            (TunnelError::Text("x".into()), ExitCode::Protocol),
            (TunnelError::Insecure("h".into()), ExitCode::Config),
            (
                TunnelError::Credentials("none".into()),
                ExitCode::Credentials,
            ),
        ];
        for (e, code) in cases {
            let f = Failure::from(failure(e, "i-0abc", 22));
            assert_eq!(f.code, code, "{}", f.message);
            assert!(f.message.starts_with("i-0abc port 22: "), "{}", f.message);
            assert!(!f.message.contains('\n'));
        }
    }
}
