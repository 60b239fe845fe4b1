//! The one loopback listener: the SSM JSON API on `POST /` and the data-channel websockets on
//! `GET /v1/data-channel/<SessionId>`, as `StreamUrl` points there; and, for benchmarks,
//! `GET /testbed/stats`: every session's stream data counts as JSON (see [`Testbed::data_stats`])
//! and every data-channel dial (see [`Testbed::data_channel_dials`]). Plain HTTP, or HTTPS
//! and WSS with `TestbedConfig::tls` ([`crate::tls`]).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::aws_api::account::{Account, DATA_CHANNEL_PREFIX, random_secret};
use crate::aws_api::data_auth::DialRecord;
use crate::aws_api::sigv4::AuthError;
use crate::world::config::{ACCESS_KEY_ID, TestbedConfig};
use crate::world::data_stats::{DataStats, SessionStats};
use crate::world::state::{ApiCall, Sessions};

/// Where benchmarks read the stream data counts.
pub const STATS_PATH: &str = "/testbed/stats";

/// Refuses anything but a loopback address: the testbed is never a network service.
pub fn ensure_loopback(addr: SocketAddr) -> anyhow::Result<()> {
    anyhow::ensure!(
        addr.ip().is_loopback(),
        "refusing to listen on {addr}: the testbed only listens on loopback addresses \
         (127.0.0.1 or [::1])"
    );
    Ok(())
}

/// What the listener's tasks share: the account the APIs serve, the relay's live agents,
/// and the tasks `shutdown` aborts.
pub struct AppState {
    pub account: Account,
    /// The relay's live agents, one per session.
    pub hub: Arc<crate::mgs::relay::Hub>,
    /// EC2 Instance Connect Endpoint tunnels: counts and open places per endpoint.
    pub tunnels: Arc<crate::world::tunnel_stats::TunnelStats>,
    tasks: Mutex<JoinSet<()>>,
}

impl AppState {
    pub fn new(config: TestbedConfig, local_addr: SocketAddr) -> Self {
        let account = Account::new(config, local_addr);
        AppState {
            hub: Arc::new(crate::mgs::relay::Hub::with_kms(account.kms.clone())),
            account,
            tunnels: Arc::new(crate::world::tunnel_stats::TunnelStats::default()),
            tasks: Mutex::new(JoinSet::new()),
        }
    }

    /// Spawns a task that `shutdown` will abort (connections, websockets, the accept loop).
    fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(done) = tasks.try_join_next() {
            if let Err(e) = done
                && e.is_panic()
            {
                tracing::error!("testbed task panicked: {e}");
            }
        }
        tasks.spawn(fut);
    }

    fn abort_all(&self) {
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .abort_all();
    }
}

/// For every instance with `hostile` behaviours: a lying SSH server's listener, which
/// becomes the instance's port 22.
async fn bind_hostile_instances(
    config: &mut TestbedConfig,
) -> anyhow::Result<Vec<(TcpListener, Vec<crate::world::hostile_ssh::HostileSsh>)>> {
    let mut out = Vec::new();
    for instance in config
        .instances
        .iter_mut()
        .filter(|i| !i.hostile.is_empty())
    {
        let listener = crate::instance::hostile::bind().await?;
        let addr = listener
            .local_addr()
            .context("hostile listener has no address")?;
        tracing::info!(instance = %instance.id, %addr, behaviours = ?instance.hostile, "hostile SSH instance");
        instance.ports.insert(22, addr);
        out.push((listener, instance.hostile.clone()));
    }
    Ok(out)
}

/// A running testbed. Dropping it stops the listener and every connection it accepted.
pub struct Testbed {
    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL`.
    pub endpoint: String,
    pub addr: SocketAddr,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub region: String,
    pub instance_ids: Vec<String>,
    /// With TLS: the CA's PEM file, for `AWS_CA_BUNDLE`.
    pub ca_bundle: Option<std::path::PathBuf>,
    tls: Option<Arc<crate::tls::TlsIdentity>>,
    state: Arc<AppState>,
    /// The EC2 Instance Connect key store when `eic_state_dir` was not given; removed on drop.
    _eic_temp: Option<crate::instance::sshd::TempDir>,
    /// Holds the CA bundle; removed on drop.
    _tls_temp: Option<crate::instance::sshd::TempDir>,
}

impl Testbed {
    /// Binds `config.listen` (must be loopback) and serves in the background.
    pub async fn start(mut config: TestbedConfig) -> anyhow::Result<Testbed> {
        ensure_loopback(config.listen)?;
        let eic_temp = match config.eic_state_dir {
            Some(_) => None,
            None => {
                let dir = crate::instance::sshd::TempDir::new("sallyport-eic")?;
                std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
                    .with_context(|| format!("chmod 0700 {}", dir.path().display()))?;
                config.eic_state_dir = Some(dir.path().to_owned());
                Some(dir)
            }
        };
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr().context("listener has no address")?;
        let secret = random_secret();
        let (tls, tls_temp, ca_bundle) = if config.tls {
            let identity = Arc::new(crate::tls::TlsIdentity::generate()?);
            let dir = crate::instance::sshd::TempDir::new("sallyport-tls")?;
            let path = dir.path().join("testbed-ca.pem");
            identity.write_ca(&path)?;
            (Some(identity), Some(dir), Some(path))
        } else {
            (None, None, None)
        };
        let region = config.region.clone();
        let instance_ids = config.instances.iter().map(|i| i.id.clone()).collect();
        let hostile = bind_hostile_instances(&mut config).await?;
        let state = Arc::new(AppState::new(config, addr));
        state.account.add_credentials(ACCESS_KEY_ID, &secret);
        for (listener, behaviours) in hostile {
            state.spawn(crate::instance::hostile::serve(listener, behaviours));
        }
        let acceptor =
            (tls.as_ref()).map(|t| tokio_rustls::TlsAcceptor::from(t.server_config.clone()));
        state.spawn(accept_loop(listener, acceptor, state.clone()));
        tracing::info!(%addr, tls = tls.is_some(), "testbed listening");
        let scheme = if tls.is_some() { "https" } else { "http" };
        Ok(Testbed {
            endpoint: format!("{scheme}://{addr}"),
            addr,
            access_key_id: ACCESS_KEY_ID.to_owned(),
            secret_access_key: secret,
            region,
            instance_ids,
            ca_bundle,
            tls,
            state,
            _eic_temp: eic_temp,
            _tls_temp: tls_temp,
        })
    }

    /// The variables that point an AWS SDK (and sallyport) at this testbed.
    /// `SALLYPORT_TESTBED_INSTANCE` repeats, once per instance.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("AWS_ENDPOINT_URL".to_owned(), self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID".to_owned(), self.access_key_id.clone()),
            (
                "AWS_SECRET_ACCESS_KEY".to_owned(),
                self.secret_access_key.clone(),
            ),
            ("AWS_REGION".to_owned(), self.region.clone()),
        ];
        if let Some(ca) = &self.ca_bundle {
            env.push(("AWS_CA_BUNDLE".to_owned(), ca.display().to_string()));
        }
        for id in &self.instance_ids {
            env.push(("SALLYPORT_TESTBED_INSTANCE".to_owned(), id.clone()));
        }
        env
    }

    pub fn sessions(&self) -> Arc<Sessions> {
        self.state.account.sessions.clone()
    }

    pub fn config(&self) -> Arc<TestbedConfig> {
        self.state.account.config.clone()
    }

    /// The KMS the API serves (for an in-process agent end that decrypts data keys).
    pub fn kms(&self) -> Arc<crate::world::kms_keys::KmsState> {
        self.state.account.kms.clone()
    }

    /// The directory where `SendSSHPublicKey` records pushed keys: what
    /// `sallyport-testbed authorized-keys --state DIR` (and an Instance Connect sshd from
    /// [`crate::instance::sshd::SshdOptions`]) reads.
    pub fn eic_state_dir(&self) -> std::path::PathBuf {
        self.state.account.eic.dir().to_owned()
    }

    /// Moves every key pushed so far `secs` seconds into the past (e.g. 61: the keys have
    /// expired). Keys pushed later are not affected.
    pub fn age_pushed_keys(&self, secs: u64) -> anyhow::Result<()> {
        let secs = i64::try_from(secs).context("age too large")?;
        self.state.account.eic.age(secs)
    }

    /// Accepts another key pair (e.g. to test credential refresh).
    pub fn add_credentials(&self, access_key_id: &str, secret_access_key: &str) {
        self.state
            .account
            .add_credentials(access_key_id, secret_access_key);
    }

    /// From now on, requests signed with this key get `ExpiredTokenException`.
    pub fn expire_credentials(&self, access_key_id: &str) -> bool {
        self.state.account.expire_credentials(access_key_id)
    }

    /// Every API call (SSM, STS, KMS, EC2 Instance Connect) that passed the signature check,
    /// in order.
    pub fn calls(&self) -> Vec<ApiCall> {
        self.state.account.calls()
    }

    /// Every session's stream data counts so far (client messages, distinct sequence
    /// numbers, duplicates, bytes; the agent's the same; the relay's queue use), by session
    /// ID. Sessions stay listed after they end. The same as `GET /testbed/stats`.
    pub fn data_stats(&self) -> Vec<(String, DataStats)> {
        self.state
            .hub
            .data_stats()
            .into_iter()
            .map(|e| (e.session_id, e.stats))
            .collect()
    }

    /// One session's live counters, e.g. to wait for the relay's queue to fill
    /// (`session_stats(id).to_agent_held.wait_for(n)`). Made now if the session has not
    /// been served yet, so a test can take them before it connects.
    pub fn session_stats(&self, session_id: &str) -> Arc<SessionStats> {
        self.state.hub.session_stats(session_id)
    }

    /// Every data-channel websocket upgrade so far (first dials and resumes, accepted or
    /// refused), in order: signed, presigned or unsigned, and by which key. The same as
    /// `data_channel_dials` in `GET /testbed/stats`.
    pub fn data_channel_dials(&self) -> Vec<DialRecord> {
        self.state.account.dials.all()
    }

    /// EC2 Instance Connect Endpoint tunnels so far: opened, refused, open now, bytes each
    /// way. The same as `eice_tunnels` in `GET /testbed/stats`.
    pub fn tunnel_stats(&self) -> crate::world::tunnel_stats::TunnelCounts {
        self.state.tunnels.snapshot()
    }

    /// The `DnsName` `DescribeInstanceConnectEndpoints` hands out: the host (and port,
    /// unless 443) an `/openTunnel` URL must be presigned for.
    pub fn eice_dns_name(&self) -> String {
        crate::aws_api::ec2_xml::endpoint_dns_name(&self.state.account)
    }

    /// With TLS: a client configuration that trusts the testbed's CA (and nothing else).
    pub fn tls_client_config(&self) -> Option<Arc<rustls::ClientConfig>> {
        self.tls.as_ref().and_then(|t| t.client_config().ok())
    }

    /// Stops accepting and aborts every open connection and data channel.
    pub fn shutdown(&self) {
        self.state.abort_all();
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        self.shutdown();
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<AppState>,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // Typically EMFILE; back off instead of spinning.
                tracing::warn!("testbed accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let st = state.clone();
        let tls = tls.clone();
        state.spawn(async move {
            match tls {
                None => serve_connection(stream, peer, st).await,
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(stream) => serve_connection(stream, peer, st).await,
                    Err(e) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
                },
            }
        });
    }
}

async fn serve_connection<S>(stream: S, peer: SocketAddr, state: Arc<AppState>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| route(state.clone(), req));
    let conn = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), svc)
        .with_upgrades();
    if let Err(e) = conn.await {
        tracing::debug!(%peer, "testbed connection ended: {e}");
    }
}

async fn route(
    state: Arc<AppState>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path();
    let form = req.headers().get(header::CONTENT_TYPE).is_some_and(|v| {
        v.as_bytes()
            .starts_with(b"application/x-www-form-urlencoded")
    });
    let amz_target = |prefix: &str| {
        req.headers()
            .get("x-amz-target")
            .is_some_and(|v| v.as_bytes().starts_with(prefix.as_bytes()))
    };
    let kms = amz_target(crate::aws_api::kms::TARGET_PREFIX);
    let eic = amz_target(crate::aws_api::eic::TARGET_PREFIX);
    let tagging = amz_target(crate::aws_api::tagging::TARGET_PREFIX);
    let offset = state.account.config.clock_offset_secs;
    // The Query protocol serves EC2 and STS, told apart by the signature's scope.
    let ec2 = req.headers().get(header::AUTHORIZATION).is_some_and(|v| {
        let scope = format!("/{}/aws4_request", crate::aws_api::ec2::SIGNING_NAME);
        String::from_utf8_lossy(v.as_bytes()).contains(&scope)
    });
    let mut resp = if req.method() == Method::POST && path == "/" && form && ec2 {
        crate::aws_api::ec2::handle(&state.account, req).await
    } else if req.method() == Method::POST && path == "/" && form {
        // The AWS Query protocol: STS.
        crate::aws_api::sts::handle(&state.account, req).await
    } else if req.method() == Method::POST && path == "/" && kms {
        // JSON 1.1 like SSM, told apart by X-Amz-Target.
        crate::aws_api::kms::handle(&state.account, req).await
    } else if req.method() == Method::POST && path == "/" && eic {
        crate::aws_api::eic::handle(&state.account, req).await
    } else if req.method() == Method::POST && path == "/" && tagging {
        crate::aws_api::tagging::handle(&state.account, req).await
    } else if req.method() == Method::POST && path == "/" {
        crate::aws_api::ssm::handle(&state.account, req).await
    } else if req.method() == Method::GET && path == crate::eice::request::PATH {
        open_tunnel(&state, req).await
    } else if req.method() == Method::GET && path == STATS_PATH {
        stats_json(&state)
    } else if let (&Method::GET, Some(id)) = (req.method(), path.strip_prefix(DATA_CHANNEL_PREFIX))
    {
        let id = id.to_owned();
        data_channel(&state, req, &id)
    } else {
        text(StatusCode::NOT_FOUND, "not found")
    };
    crate::world::http_date::stamp(resp.headers_mut(), offset);
    Ok(resp)
}

/// Checks the upgrade's signature, accepts the websocket upgrade and hands the stream to the
/// relay.
fn data_channel(state: &Arc<AppState>, req: Request<Incoming>, id: &str) -> Response<Full<Bytes>> {
    // Authentication comes first, as at a gateway: an unsigned dial learns nothing about
    // which sessions exist. Unverified: the order MGS checks in.
    let (parts, body) = req.into_parts();
    if let Err(e) = state.account.authenticate_dial(&parts, id) {
        tracing::info!(session_id = %id, code = e.code, "data channel upgrade refused");
        return dial_refused(&e);
    }
    let mut req = Request::from_parts(parts, body);
    let Some(record) = state.account.sessions.get(id) else {
        return text(StatusCode::NOT_FOUND, "no such session");
    };
    // The role parameter is what both the plugin and the agent send; whether MGS insists on it
    // is unknown: the testbed does, so a client that drops the query string is caught here.
    let role_ok = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .any(|p| p == "role=publish_subscribe");
    if !role_ok {
        return text(StatusCode::BAD_REQUEST, "missing role=publish_subscribe");
    }
    let Some(accept) = websocket_accept(req.headers()) else {
        return text(
            StatusCode::BAD_REQUEST,
            "expected a websocket upgrade (version 13)",
        );
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let config = state.account.config.clone();
    let sessions = state.account.sessions.clone();
    let hub = state.hub.clone();
    let session_id = id.to_owned();
    state.spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(%session_id, "websocket upgrade failed: {e}");
                return;
            }
        };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        if let Err(e) =
            crate::mgs::relay::serve_data_channel(ws, record, config, sessions, hub).await
        {
            tracing::debug!(%session_id, "data channel ended: {e:#}");
        }
    });
    switching_protocols(&accept)
}

/// The `Sec-WebSocket-Accept` value for a well-formed version-13 upgrade, or None.
fn websocket_accept(headers: &hyper::HeaderMap) -> Option<String> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .unwrap_or("")
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case(token))
        })
    };
    let upgrade =
        has_token(header::CONNECTION, "upgrade") && has_token(header::UPGRADE, "websocket");
    let version_ok = headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v.as_bytes() == b"13");
    let key = headers.get(header::SEC_WEBSOCKET_KEY)?;
    (upgrade && version_ok).then(|| derive_accept_key(key.as_bytes()))
}

fn switching_protocols(accept: &str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    resp
}

/// How long dialling the instance's port may take before the tunnel is refused.
const TUNNEL_DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// `GET /openTunnel`: checks the presign and the target ([`crate::eice::request`]),
/// takes a place under the endpoint's connection limit, dials the instance's port, then
/// accepts the websocket and hands both to [`crate::eice::relay`].
async fn open_tunnel(state: &Arc<AppState>, mut req: Request<Incoming>) -> Response<Full<Bytes>> {
    let refused = |r: crate::eice::request::Refusal| {
        state.tunnels.refused();
        tracing::info!(code = r.code, "tunnel refused: {}", r.message);
        refusal_response(r.status, r.code, &r.message)
    };
    let (parts, body) = req.into_parts();
    let target = match crate::eice::request::check(&state.account, &parts) {
        Ok(t) => t,
        Err(r) => return refused(r),
    };
    req = Request::from_parts(parts, body);
    let Some(accept) = websocket_accept(req.headers()) else {
        state.tunnels.refused();
        return text(
            StatusCode::BAD_REQUEST,
            "expected a websocket upgrade (version 13)",
        );
    };
    let limit = target.endpoint.max_connections();
    let Some(slot) = state.tunnels.try_open(&target.endpoint.id, limit) else {
        // Unverified: how the service refuses a connection over the endpoint's quota.
        return refused(crate::eice::request::Refusal {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: "TooManyConnections",
            message: format!(
                "endpoint {} already has {limit} open connections",
                target.endpoint.id
            ),
        });
    };
    let tcp = match tokio::time::timeout(
        TUNNEL_DIAL_TIMEOUT,
        tokio::net::TcpStream::connect(target.dial),
    )
    .await
    {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => {
            drop(slot);
            // Unverified: what the service answers when the instance refuses the connection.
            return refused(crate::eice::request::Refusal {
                status: StatusCode::BAD_GATEWAY,
                code: "ConnectionRefused",
                message: format!(
                    "instance {} refused the connection: {e}",
                    target.instance_id
                ),
            });
        }
        Err(_) => {
            drop(slot);
            return refused(crate::eice::request::Refusal {
                status: StatusCode::GATEWAY_TIMEOUT,
                code: "ConnectionTimeout",
                message: format!("instance {} did not answer", target.instance_id),
            });
        }
    };
    let _ = tcp.set_nodelay(true);
    let config = &state.account.config;
    let faults = &config.faults;
    let rate = match (faults.relay_rate, config.eice_rate) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let shape = crate::world::link_shape::LinkShape {
        one_way: config.rtt / 2,
        rate,
        jitter: faults.jitter,
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let stats = state.tunnels.clone();
    let id = target.instance_id.clone();
    state.spawn(async move {
        let _slot = slot;
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(instance = %id, "tunnel upgrade failed: {e}");
                return;
            }
        };
        let ws_config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(crate::eice::relay::MAX_CLIENT_MESSAGE))
            .max_frame_size(Some(crate::eice::relay::MAX_CLIENT_MESSAGE));
        let ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(ws_config))
                .await;
        let max = target.max_duration;
        if let Err(e) = crate::eice::relay::run(ws, tcp, shape, max, stats).await {
            tracing::debug!(instance = %id, "tunnel ended: {e:#}");
        }
    });
    switching_protocols(&accept)
}

/// A refused upgrade: the status, the AWS-style error code in `x-amzn-errortype` and a
/// JSON body `{"__type": code, "message": …}`.
fn refusal_response(status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "__type": code, "message": message });
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(code) {
        h.insert("x-amzn-errortype", v);
    }
    resp
}

/// 403 to a refused upgrade, with the AWS error code and the first line of its message.
/// Unverified: MGS's status and body for a bad or missing signature on the upgrade; 403
/// with a JSON error is what AWS's JSON services answer.
fn dial_refused(e: &AuthError) -> Response<Full<Bytes>> {
    let message = e.message.lines().next().unwrap_or_default();
    refusal_response(StatusCode::FORBIDDEN, e.code, message)
}

/// `{"sessions":[{"session_id":…,"ended":…,"client_messages":…,…}],
/// "data_channel_dials":[{"session_id":…,"auth":"signed","access_key_id":…,"refused":null}]}`,
/// unsigned: the listener is loopback only and the counts are not secrets.
fn stats_json(state: &AppState) -> Response<Full<Bytes>> {
    let body = serde_json::json!({
        "sessions": state.hub.data_stats(),
        "data_channel_dials": state.account.dials.all(),
        "eice_tunnels": state.tunnels.snapshot(),
    });
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "server_eic_tests.rs"]
mod eic_tests;
