//! Byte streams over EC2 Instance Connect Endpoint tunnels (docs/protocol.md §10.3): what
//! `proxy`, the SSH client and `forward` open instead of a Session Manager port session
//! when the way chosen is EICE. One tunnel per stream: no resume, no agent pacing, no
//! Session Manager session record.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use crate::aws::{AwsConfig, SdkTunnelPresigner};
use crate::error::{ExitCode, Failure};
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
    pub fn new(config: &AwsConfig, tunnel: TunnelTarget, target: &str) -> Result<Self, Failure> {
        let presigner = SdkTunnelPresigner::from_config(&config.sdk).ok_or_else(|| {
            Failure::new(
                ExitCode::Credentials,
                "no AWS credentials or region to sign the EC2 Instance Connect Endpoint tunnel with",
            )
        })?;
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
    pub async fn open(&self) -> Result<(DuplexStream, TunnelGuard), Failure> {
        self.dialer
            .open(&self.tunnel)
            .await
            .map_err(|e| failure(e, &self.target, self.tunnel.port))
    }
}

/// A tunnel's failure as the user reads it, with its exit code.
pub fn failure(e: TunnelError, target: &str, port: u16) -> Failure {
    let code = match &e {
        TunnelError::Refused { status, .. } => match status {
            401 | 403 => ExitCode::AccessDenied,
            404 => ExitCode::Target,
            429 => ExitCode::Aws,
            _ => ExitCode::Unreachable,
        },
        TunnelError::Credentials(_) => ExitCode::Credentials,
        TunnelError::Insecure(_) => ExitCode::Config,
        TunnelError::BadEndpoint(_) => ExitCode::Aws,
        TunnelError::Connect(_) | TunnelError::Broken(_) => ExitCode::Unreachable,
        TunnelError::Text(_) => ExitCode::Protocol,
        TunnelError::Closed { .. } | TunnelError::MaxDuration(_) => ExitCode::SessionEnded,
    };
    Failure::new(code, format!("{target} port {port}: {e}"))
}

/// `sallyport proxy` over a tunnel: stdin to the instance's port, its bytes to stdout.
pub async fn proxy(stream: &EiceStream) -> Result<(), Failure> {
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
        Err(sig) => Err(Failure::new(
            ExitCode::Interrupted,
            format!("interrupted ({sig})"),
        )),
        Ok(_) => match guard.failure(Duration::from_secs(2)).await {
            Some(e) => Err(failure(e, &stream.target, stream.tunnel.port)),
            None => Ok(()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            let f = failure(e, "i-0abc", 22);
            assert_eq!(f.code, code, "{}", f.message);
            assert!(f.message.starts_with("i-0abc port 22: "), "{}", f.message);
            assert!(!f.message.contains('\n'));
        }
    }
}
