//! The one loopback listener: the SSM JSON API on `POST /` and the data-channel websockets on
//! `GET /v1/data-channel/<SessionId>`, as `StreamUrl` points there; and, for benchmarks,
//! `GET /testbed/stats`: every session's stream data counts as JSON (see [`Testbed::data_stats`])
//! and every data-channel dial (see [`Testbed::data_channel_dials`]). Plain HTTP, or HTTPS
//! and WSS with `TestbedConfig::tls` ([`crate::tls`]).

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rand::Rng as _;
use rand::distr::Alphanumeric;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::config::{InstanceConfig, TestbedConfig};
use crate::data_auth::{DialAuth, DialLog, DialRecord, UnsignedPolicy};
use crate::data_stats::{DataStats, SessionStats};
use crate::sigv4::AuthError;
use crate::state::{ApiCall, Sessions};

/// The access key ID every testbed hands out; the secret is random per start.
pub const ACCESS_KEY_ID: &str = "AKIASALLYPORTTESTBED";
/// The AWS account the testbed plays.
pub const ACCOUNT_ID: &str = "123456789012";
/// The caller name that prefixes session IDs (AWS uses the IAM user or role session name).
pub const CALLER: &str = "sallyport-testbed";
const DATA_CHANNEL_PREFIX: &str = "/v1/data-channel/";
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

/// What the API handlers and the websocket route share.
pub struct AppState {
    pub config: Arc<TestbedConfig>,
    pub sessions: Arc<Sessions>,
    /// The address actually bound (the port is known only after binding to port 0).
    pub local_addr: SocketAddr,
    /// Prefix of generated session IDs.
    pub caller: String,
    /// The relay's live agents, one per session.
    pub hub: Arc<crate::relay::Hub>,
    /// The KMS API's keys (`TrentService.*`).
    pub kms: Arc<crate::kms::KmsState>,
    /// Where EC2 Instance Connect records pushed keys (`AWSEC2InstanceConnectService.*`).
    pub eic: Arc<crate::eic_keys::KeyStore>,
    /// Access key ID -> what the key is.
    credentials: Mutex<HashMap<String, Credential>>,
    /// When the testbed started: `not_connected_for_secs` counts from here.
    pub started: Instant,
    /// StartSession calls per instance ID (for `throttle_first`).
    start_calls: Mutex<HashMap<String, u32>>,
    /// Every API call that passed the signature check, in order.
    calls: Mutex<Vec<ApiCall>>,
    /// Every data-channel upgrade, how it authenticated, and whether it got in.
    pub dials: DialLog,
    /// The secret of [`crate::data_auth::PRESIGN_ACCESS_KEY_ID`] (random per start).
    presign_secret: String,
    tasks: Mutex<JoinSet<()>>,
}

/// A key pair the testbed accepts.
#[derive(Clone, Debug)]
pub struct Credential {
    pub secret: String,
    /// Temporary keys (from STS) must come with this `X-Amz-Security-Token`.
    pub session_token: Option<String>,
    /// Requests signed with an expired key get `ExpiredTokenException`.
    pub expired: bool,
    /// Who the key belongs to, as IAM names it in access-denied messages.
    pub arn: String,
}

impl AppState {
    pub fn new(config: TestbedConfig, local_addr: SocketAddr) -> Self {
        let kms_keys = config
            .instances
            .iter()
            .filter_map(|i| i.kms_key_id.as_deref());
        let kms = Arc::new(crate::kms::KmsState::new(&config.region, kms_keys));
        // `Testbed::start` always sets a directory; this default only serves states built
        // directly (unit tests), and nothing is created there until a key is pushed.
        let eic_dir = config.eic_state_dir.clone().unwrap_or_else(|| {
            std::env::temp_dir().join(format!("sallyport-eic-{}", uuid::Uuid::new_v4()))
        });
        AppState {
            hub: Arc::new(crate::relay::Hub::with_kms(kms.clone())),
            kms,
            eic: Arc::new(crate::eic_keys::KeyStore::new(eic_dir)),
            config: Arc::new(config),
            sessions: Arc::new(Sessions::default()),
            local_addr,
            caller: CALLER.to_owned(),
            credentials: Mutex::new(HashMap::new()),
            started: Instant::now(),
            start_calls: Mutex::new(HashMap::new()),
            calls: Mutex::new(Vec::new()),
            dials: DialLog::default(),
            presign_secret: random_secret(),
            tasks: Mutex::new(JoinSet::new()),
        }
    }

    /// The StreamUrl for a session: `ws://` or `wss://` to this listener, presigned by the
    /// testbed when `presign_stream_urls` is set. The cell number is new on every call.
    pub fn stream_url(&self, session_id: &str, cell_number: &str) -> String {
        let scheme = if self.config.tls { "wss" } else { "ws" };
        let host = self.local_addr.to_string();
        let path = format!("{DATA_CHANNEL_PREFIX}{session_id}");
        let mut query = format!("role=publish_subscribe&cell-number={cell_number}");
        if self.config.presign_stream_urls {
            let now = crate::clock::now_secs(self.config.clock_offset_secs);
            query = crate::sigv4::presign_query(
                &host,
                &path,
                &query,
                crate::data_auth::PRESIGN_ACCESS_KEY_ID,
                &self.presign_secret,
                &self.config.region,
                crate::data_auth::SERVICE,
                &crate::clock::format_amz_date(now),
                crate::data_auth::PRESIGN_EXPIRES_SECS,
            );
        }
        format!("{scheme}://{host}{path}?{query}")
    }

    /// Checks a data-channel upgrade (SigV4 headers, a presigned query, or neither under
    /// `unsigned_data_channel`) and records it.
    pub fn authenticate_dial(
        &self,
        parts: &hyper::http::request::Parts,
        session_id: &str,
    ) -> Result<(), AuthError> {
        let auth = crate::data_auth::classify(parts);
        let result = match auth {
            DialAuth::Signed => self
                .authenticate(parts, b"", crate::data_auth::SERVICE)
                .map(|(akid, _)| Some(akid)),
            DialAuth::Presigned => {
                let now = crate::clock::now_secs(self.config.clock_offset_secs);
                let secret = |k: &str| {
                    (k == crate::data_auth::PRESIGN_ACCESS_KEY_ID)
                        .then(|| self.presign_secret.clone())
                };
                let (region, service) = (&self.config.region, crate::data_auth::SERVICE);
                crate::sigv4::verify_presigned(parts, region, service, now, secret).map(Some)
            }
            DialAuth::Unsigned => match self.config.unsigned_data_channel {
                UnsignedPolicy::Accept => Ok(None),
                UnsignedPolicy::Refuse => Err(crate::data_auth::unsigned_refusal()),
            },
        };
        let (access_key_id, refused) = match &result {
            Ok(akid) => (akid.clone(), None),
            Err(e) => (
                crate::data_auth::claimed_key(parts),
                Some(e.code.to_owned()),
            ),
        };
        self.dials.push(DialRecord {
            session_id: session_id.to_owned(),
            auth,
            access_key_id,
            refused,
        });
        result.map(drop)
    }

    /// Accepts a long-term key pair of the testbed's IAM user.
    pub fn add_credentials(&self, access_key_id: &str, secret_access_key: &str) {
        let arn = format!("arn:aws:iam::{ACCOUNT_ID}:user/{CALLER}");
        self.add_credential(
            access_key_id,
            Credential {
                secret: secret_access_key.to_owned(),
                session_token: None,
                expired: false,
                arn,
            },
        );
    }

    pub fn add_credential(&self, access_key_id: &str, credential: Credential) {
        self.creds().insert(access_key_id.to_owned(), credential);
    }

    pub fn credential(&self, access_key_id: &str) -> Option<Credential> {
        self.creds().get(access_key_id).cloned()
    }

    pub fn secret_for(&self, access_key_id: &str) -> Option<String> {
        self.credential(access_key_id).map(|c| c.secret)
    }

    /// Checks the SigV4 signature for `service`, then the key's expiry and session token.
    pub fn authenticate(
        &self,
        parts: &hyper::http::request::Parts,
        body: &[u8],
        service: &str,
    ) -> Result<(String, Credential), AuthError> {
        let region = &self.config.region;
        let akid = crate::sigv4::verify(parts, body, region, service, |k| self.secret_for(k))?;
        let signed = parts
            .headers
            .get("x-amz-date")
            .and_then(|v| v.to_str().ok())
            .and_then(crate::clock::parse_amz_date);
        let now = crate::clock::now_secs(self.config.clock_offset_secs);
        if let Some(why) = signed.and_then(|t| crate::clock::skew_error(t, now)) {
            return Err(AuthError::clock_skew(why));
        }
        let cred = self
            .credential(&akid)
            .ok_or_else(AuthError::unknown_access_key)?;
        if cred.expired {
            return Err(AuthError::expired());
        }
        if let Some(token) = &cred.session_token {
            let sent = parts.headers.get("x-amz-security-token");
            if sent.map(|v| v.as_bytes()) != Some(token.as_bytes()) {
                return Err(AuthError::unknown_access_key());
            }
        }
        Ok((akid, cred))
    }

    /// Marks a key as expired; returns whether the testbed knew it.
    pub fn expire_credentials(&self, access_key_id: &str) -> bool {
        self.creds()
            .get_mut(access_key_id)
            .map(|c| c.expired = true)
            .is_some()
    }

    /// Counts a StartSession call to `instance_id`; returns how many there were before.
    pub fn count_start(&self, instance_id: &str) -> u32 {
        let mut calls = self.start_calls.lock().unwrap_or_else(|e| e.into_inner());
        let n = calls.entry(instance_id.to_owned()).or_insert(0);
        *n += 1;
        *n - 1
    }

    pub fn record_call(&self, call: ApiCall) {
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(call);
    }

    pub fn calls(&self) -> Vec<ApiCall> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn instance(&self, id: &str) -> Option<&InstanceConfig> {
        self.config.instances.iter().find(|i| i.id == id)
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

    fn creds(&self) -> std::sync::MutexGuard<'_, HashMap<String, Credential>> {
        self.credentials.lock().unwrap_or_else(|e| e.into_inner())
    }
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
    _eic_temp: Option<crate::sshd::TempDir>,
    /// Holds the CA bundle; removed on drop.
    _tls_temp: Option<crate::sshd::TempDir>,
}

impl Testbed {
    /// Binds `config.listen` (must be loopback) and serves in the background.
    pub async fn start(mut config: TestbedConfig) -> anyhow::Result<Testbed> {
        ensure_loopback(config.listen)?;
        let eic_temp = match config.eic_state_dir {
            Some(_) => None,
            None => {
                let dir = crate::sshd::TempDir::new("sallyport-eic")?;
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
            let dir = crate::sshd::TempDir::new("sallyport-tls")?;
            let path = dir.path().join("testbed-ca.pem");
            identity.write_ca(&path)?;
            (Some(identity), Some(dir), Some(path))
        } else {
            (None, None, None)
        };
        let region = config.region.clone();
        let instance_ids = config.instances.iter().map(|i| i.id.clone()).collect();
        let state = Arc::new(AppState::new(config, addr));
        state.add_credentials(ACCESS_KEY_ID, &secret);
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
        self.state.sessions.clone()
    }

    pub fn config(&self) -> Arc<TestbedConfig> {
        self.state.config.clone()
    }

    /// The KMS the API serves (for an in-process agent end that decrypts data keys).
    pub fn kms(&self) -> Arc<crate::kms::KmsState> {
        self.state.kms.clone()
    }

    /// The directory where `SendSSHPublicKey` records pushed keys: what
    /// `sallyport-testbed authorized-keys --state DIR` (and an Instance Connect sshd from
    /// [`crate::sshd::SshdOptions`]) reads.
    pub fn eic_state_dir(&self) -> std::path::PathBuf {
        self.state.eic.dir().to_owned()
    }

    /// Moves every key pushed so far `secs` seconds into the past (e.g. 61: the keys have
    /// expired). Keys pushed later are not affected.
    pub fn age_pushed_keys(&self, secs: u64) -> anyhow::Result<()> {
        let secs = i64::try_from(secs).context("age too large")?;
        self.state.eic.age(secs)
    }

    /// Accepts another key pair (e.g. to test credential refresh).
    pub fn add_credentials(&self, access_key_id: &str, secret_access_key: &str) {
        self.state.add_credentials(access_key_id, secret_access_key);
    }

    /// From now on, requests signed with this key get `ExpiredTokenException`.
    pub fn expire_credentials(&self, access_key_id: &str) -> bool {
        self.state.expire_credentials(access_key_id)
    }

    /// Every API call (SSM, STS, KMS, EC2 Instance Connect) that passed the signature check,
    /// in order.
    pub fn calls(&self) -> Vec<ApiCall> {
        self.state.calls()
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
        self.state.dials.all()
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

fn random_secret() -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(40)
        .map(char::from)
        .collect()
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
    let kms = amz_target(crate::kms::TARGET_PREFIX);
    let eic = amz_target(crate::eic::TARGET_PREFIX);
    let tagging = amz_target(crate::tagging::TARGET_PREFIX);
    let offset = state.config.clock_offset_secs;
    let mut resp = if req.method() == Method::POST && path == "/" && form {
        // The AWS Query protocol: STS.
        crate::sts::handle(&state, req).await
    } else if req.method() == Method::POST && path == "/" && kms {
        // JSON 1.1 like SSM, told apart by X-Amz-Target.
        crate::kms::handle(&state, req).await
    } else if req.method() == Method::POST && path == "/" && eic {
        crate::eic::handle(&state, req).await
    } else if req.method() == Method::POST && path == "/" && tagging {
        crate::tagging::handle(&state, req).await
    } else if req.method() == Method::POST && path == "/" {
        crate::api::handle(&state, req).await
    } else if req.method() == Method::GET && path == STATS_PATH {
        stats_json(&state)
    } else if let (&Method::GET, Some(id)) = (req.method(), path.strip_prefix(DATA_CHANNEL_PREFIX))
    {
        let id = id.to_owned();
        data_channel(&state, req, &id)
    } else {
        text(StatusCode::NOT_FOUND, "not found")
    };
    crate::http_date::stamp(resp.headers_mut(), offset);
    Ok(resp)
}

/// Checks the upgrade's signature, accepts the websocket upgrade and hands the stream to the
/// relay.
fn data_channel(state: &Arc<AppState>, req: Request<Incoming>, id: &str) -> Response<Full<Bytes>> {
    // Authentication comes first, as at a gateway: an unsigned dial learns nothing about
    // which sessions exist. Unverified: the order MGS checks in.
    let (parts, body) = req.into_parts();
    if let Err(e) = state.authenticate_dial(&parts, id) {
        tracing::info!(session_id = %id, code = e.code, "data channel upgrade refused");
        return dial_refused(&e);
    }
    let mut req = Request::from_parts(parts, body);
    let Some(record) = state.sessions.get(id) else {
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
    let headers = req.headers();
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
    let (true, true, Some(key)) = (upgrade, version_ok, headers.get(header::SEC_WEBSOCKET_KEY))
    else {
        return text(
            StatusCode::BAD_REQUEST,
            "expected a websocket upgrade (version 13)",
        );
    };
    let accept = derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(&mut req);
    let config = state.config.clone();
    let sessions = state.sessions.clone();
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
        if let Err(e) = crate::relay::serve_data_channel(ws, record, config, sessions, hub).await {
            tracing::debug!(%session_id, "data channel ended: {e:#}");
        }
    });
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    resp
}

/// 403 to a refused upgrade, with the AWS error code and the first line of its message.
/// Unverified: MGS's status and body for a bad or missing signature on the upgrade; 403
/// with a JSON error is what AWS's JSON services answer.
fn dial_refused(e: &AuthError) -> Response<Full<Bytes>> {
    let message = e.message.lines().next().unwrap_or_default();
    let body = serde_json::json!({ "__type": e.code, "message": message });
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = StatusCode::FORBIDDEN;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(e.code) {
        h.insert("x-amzn-errortype", v);
    }
    resp
}

/// `{"sessions":[{"session_id":…,"ended":…,"client_messages":…,…}],
/// "data_channel_dials":[{"session_id":…,"auth":"signed","access_key_id":…,"refused":null}]}`,
/// unsigned: the listener is loopback only and the counts are not secrets.
fn stats_json(state: &AppState) -> Response<Full<Bytes>> {
    let body = serde_json::json!({
        "sessions": state.hub.data_stats(),
        "data_channel_dials": state.dials.all(),
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
mod tests {
    use super::*;
    use aws_sdk_ssm::config::{BehaviorVersion, Credentials, Region, retry::RetryConfig};
    use aws_sdk_ssm::error::ProvideErrorMetadata as _;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    const ONLINE: &str = crate::config::DEFAULT_INSTANCE_ID;
    const LOST: &str = "i-0fedcba9876543210";

    async fn testbed() -> Testbed {
        let online = InstanceConfig::ssh_shortcut("127.0.0.1:2222".parse().unwrap());
        let mut lost = online.clone();
        (lost.id, lost.ping_status) = (LOST.to_owned(), "ConnectionLost".to_owned());
        let config = TestbedConfig::new("127.0.0.1:0".parse().unwrap(), vec![online, lost]);
        Testbed::start(config).await.unwrap()
    }

    fn client(tb: &Testbed, akid: &str, secret: &str) -> aws_sdk_ssm::Client {
        let conf = aws_sdk_ssm::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(tb.region.clone()))
            .endpoint_url(&tb.endpoint)
            .credentials_provider(Credentials::new(akid, secret, None, None, "test"))
            .retry_config(RetryConfig::disabled())
            .build();
        aws_sdk_ssm::Client::from_conf(conf)
    }

    #[tokio::test]
    async fn aws_sdk_signs_and_reads_our_errors() {
        let tb = testbed().await;
        let ssm = client(&tb, &tb.access_key_id, &tb.secret_access_key);
        let start = |target: &str| ssm.start_session().target(target);
        let port = ("portNumber", vec!["22".to_owned()]);
        let ssh = start(ONLINE).document_name("AWS-StartSSHSession");
        let out = ssh.parameters(port.0, port.1).send().await.unwrap();
        let id = out.session_id().unwrap();
        assert_eq!(tb.sessions().get(id).unwrap().port_number(), Some(22));
        let url = out.stream_url().unwrap();
        assert!(url.starts_with(&format!("ws://{}/v1/data-channel/{id}?", tb.addr)));

        let err = start(LOST).send().await.unwrap_err();
        assert_eq!(err.code(), Some("TargetNotConnected"));
        assert_eq!(err.message(), Some("i-0fedcba9876543210 is not connected."));
        assert!(err.into_service_error().is_target_not_connected());
        let err = start(ONLINE).document_name("Nope-Doc").send().await;
        assert!(err.unwrap_err().into_service_error().is_invalid_document());
        let err = start("web-1").send().await.unwrap_err();
        assert_eq!(err.code(), Some("ValidationException"));

        let terminate = |c: &aws_sdk_ssm::Client| c.terminate_session().session_id(id).send();
        let done = terminate(&ssm).await.unwrap();
        assert_eq!(done.session_id(), Some(id));
        assert!(tb.sessions().is_terminated(id));
        let wrong = client(&tb, &tb.access_key_id, "not-the-secret");
        let err = terminate(&wrong).await.unwrap_err();
        assert_eq!(err.code(), Some("InvalidSignatureException"));
        let stranger = client(&tb, "AKIAOTHER", "x");
        let err = terminate(&stranger).await.unwrap_err();
        assert_eq!(err.code(), Some("UnrecognizedClientException"));
        tb.add_credentials("AKIAOTHER", "x");
        assert!(terminate(&stranger).await.is_ok());
    }

    /// One HTTP/1.1 exchange on a fresh connection, signed if `sign`; the response as text.
    async fn raw(tb: &Testbed, method: &str, path: &str, body: &str, sign: bool) -> String {
        let (parts, ()) = Request::builder()
            .method(method)
            .uri(path)
            .header("host", tb.addr.to_string())
            // Now: requests signed more than 5 minutes off are refused, as by AWS.
            .header(
                "x-amz-date",
                crate::clock::format_amz_date(crate::clock::now_secs(0)),
            )
            .header("x-amz-target", "AmazonSSM.StartSession")
            .body(())
            .unwrap()
            .into_parts();
        let (akid, secret) = (&tb.access_key_id, &tb.secret_access_key);
        let mut req = format!("{method} {path} HTTP/1.1\r\nconnection: close\r\n");
        for (n, v) in &parts.headers {
            req.push_str(&format!("{n}: {}\r\n", v.to_str().unwrap()));
        }
        if sign {
            let a = crate::sigv4::authorization_header(
                &parts,
                body.as_bytes(),
                akid,
                secret,
                &tb.region,
                "ssm",
            );
            req.push_str(&format!("authorization: {a}\r\n"));
        }
        req.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
        let mut s = tokio::net::TcpStream::connect(tb.addr).await.unwrap();
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn raw_http_error_shape_and_routes() {
        let tb = testbed().await;
        let body = format!(r#"{{"Target":"{LOST}"}}"#);
        let resp = raw(&tb, "POST", "/", &body, true).await;
        assert!(resp.starts_with("HTTP/1.1 400 "), "{resp}");
        let want_headers = [
            "content-type: application/x-amz-json-1.1",
            "x-amzn-requestid: ",
        ];
        for h in want_headers
            .iter()
            .chain(&["x-amzn-errortype: TargetNotConnected"])
        {
            assert!(resp.contains(h), "{h} missing in {resp}");
        }
        let json: serde_json::Value =
            serde_json::from_str(resp.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        let message = "i-0fedcba9876543210 is not connected.";
        let want = serde_json::json!({"__type": "TargetNotConnected", "Message": message});
        assert_eq!(json, want);

        let resp = raw(&tb, "POST", "/", &body, false).await;
        assert!(resp.starts_with("HTTP/1.1 403 "), "{resp}");
        assert!(resp.contains(r#""__type":"MissingAuthenticationTokenException""#));
        let resp = raw(&tb, "GET", "/elsewhere", "", false).await;
        assert!(resp.starts_with("HTTP/1.1 404 "), "{resp}");
    }

    #[tokio::test]
    async fn data_channel_websocket_upgrade() {
        use tokio_tungstenite::{connect_async, tungstenite::Error as WsError};
        let tb = testbed().await;
        let ssm = client(&tb, &tb.access_key_id, &tb.secret_access_key);
        let out = ssm.start_session().target(ONLINE).send().await.unwrap();
        let url = out.stream_url().unwrap();
        let sign =
            |url: &str| signed_request(&tb, url, &tb.access_key_id, &tb.secret_access_key, 0);
        let (_ws, resp) = connect_async(sign(url)).await.unwrap();
        assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);

        let status = |r: Result<_, WsError>| match r {
            Err(WsError::Http(resp)) => resp.status(),
            other => panic!("expected an HTTP refusal, got {other:?}"),
        };
        let unknown = format!(
            "ws://{}/v1/data-channel/x-1?role=publish_subscribe",
            tb.addr
        );
        assert_eq!(
            status(connect_async(sign(&unknown)).await.map(drop)),
            StatusCode::NOT_FOUND
        );
        let no_role = url.split('?').next().unwrap();
        assert_eq!(
            status(connect_async(sign(no_role)).await.map(drop)),
            StatusCode::BAD_REQUEST
        );
    }

    type WsRequest = tokio_tungstenite::tungstenite::handshake::client::Request;

    /// A websocket upgrade request for `url` signed as the plugin signs it (GET, query
    /// included, empty body, `ssmmessages`), `skew_secs` off the clock.
    fn signed_request(tb: &Testbed, url: &str, akid: &str, secret: &str, skew: i64) -> WsRequest {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
        let mut req = url.into_client_request().unwrap();
        let date = crate::clock::format_amz_date(crate::clock::now_secs(skew));
        let host = req.headers()["host"].clone();
        let (parts, ()) = Request::builder()
            .method("GET")
            .uri(req.uri().path_and_query().unwrap().as_str())
            .header("host", host)
            .header("x-amz-date", &date)
            .body(())
            .unwrap()
            .into_parts();
        let service = crate::data_auth::SERVICE;
        let auth =
            crate::sigv4::authorization_header(&parts, b"", akid, secret, &tb.region, service);
        let h = req.headers_mut();
        h.insert("x-amz-date", date.parse().unwrap());
        h.insert("authorization", auth.parse().unwrap());
        req
    }

    /// The status and body of a refused upgrade.
    fn refusal<T: std::fmt::Debug>(
        r: Result<T, tokio_tungstenite::tungstenite::Error>,
    ) -> (StatusCode, String) {
        match r {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                let body = resp.body().clone().unwrap_or_default();
                (resp.status(), String::from_utf8_lossy(&body).into_owned())
            }
            other => panic!("expected an HTTP refusal, got {other:?}"),
        }
    }

    fn session(tb: &Testbed, id: &str) -> String {
        tb.state.sessions.insert(crate::state::SessionRecord {
            session_id: id.to_owned(),
            token: "t".to_owned(),
            instance: InstanceConfig::ssh_shortcut("127.0.0.1:2222".parse().unwrap()),
            document: "SSM-SessionManagerRunShell".to_owned(),
            parameters: Default::default(),
        });
        tb.state.stream_url(id, "cell-1")
    }

    async fn testbed_with(adjust: impl FnOnce(&mut TestbedConfig)) -> Testbed {
        let mut config = TestbedConfig::new("127.0.0.1:0".parse().unwrap(), vec![]);
        adjust(&mut config);
        Testbed::start(config).await.unwrap()
    }

    #[tokio::test]
    async fn data_channel_upgrade_must_be_signed() {
        use crate::data_auth::{DialAuth, DialRecord};
        use tokio_tungstenite::connect_async;
        let tb = testbed_with(|_| {}).await;
        let url = session(&tb, "s-1");
        let (akid, secret) = (tb.access_key_id.clone(), tb.secret_access_key.clone());
        let dial = |akid: &str, secret: &str, skew: i64| {
            connect_async(signed_request(&tb, &url, akid, secret, skew))
        };
        let (_ws, resp) = dial(&akid, &secret, 0).await.unwrap();
        assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);

        let (status, body) = refusal(connect_async(url.as_str()).await);
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(
            body.contains("MissingAuthenticationTokenException"),
            "{body}"
        );
        let (status, body) = refusal(dial(&akid, "wrong-secret", 0).await);
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(body.contains("InvalidSignatureException"), "{body}");
        assert!(body.contains("does not match"), "{body}");
        assert!(!body.contains('\n'), "short body: {body}");
        let (status, body) = refusal(dial("AKIANOBODY", &secret, 0).await);
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(body.contains("UnrecognizedClientException"), "{body}");
        let (status, body) = refusal(dial(&akid, &secret, -600).await);
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(body.contains("InvalidSignatureException"), "{body}");
        // Signed for another service (the API's): refused.
        let mut ssm_signed = signed_request(&tb, &url, &akid, &secret, 0);
        let auth = ssm_signed.headers()["authorization"].to_str().unwrap();
        let auth = auth.replace("/ssmmessages/", "/ssm/");
        ssm_signed
            .headers_mut()
            .insert("authorization", auth.parse().unwrap());
        let (status, body) = refusal(connect_async(ssm_signed).await);
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(body.contains("correct service"), "{body}");
        // A rotated key works until it is expired.
        tb.add_credentials("AKIAROTATED", "rotated-secret");
        let (_ws2, resp) = dial("AKIAROTATED", "rotated-secret", 0).await.unwrap();
        assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert!(tb.expire_credentials("AKIAROTATED"));
        let (status, body) = refusal(dial("AKIAROTATED", "rotated-secret", 0).await);
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(body.contains("ExpiredTokenException"), "{body}");

        let rec = |auth, key: Option<&str>, refused: Option<&str>| DialRecord {
            session_id: "s-1".to_owned(),
            auth,
            access_key_id: key.map(str::to_owned),
            refused: refused.map(str::to_owned),
        };
        let signed = DialAuth::Signed;
        let want = vec![
            rec(signed, Some(&akid), None),
            rec(
                DialAuth::Unsigned,
                None,
                Some("MissingAuthenticationTokenException"),
            ),
            rec(signed, Some(&akid), Some("InvalidSignatureException")),
            rec(
                signed,
                Some("AKIANOBODY"),
                Some("UnrecognizedClientException"),
            ),
            rec(signed, Some(&akid), Some("InvalidSignatureException")),
            rec(signed, Some(&akid), Some("InvalidSignatureException")),
            rec(signed, Some("AKIAROTATED"), None),
            rec(signed, Some("AKIAROTATED"), Some("ExpiredTokenException")),
        ];
        assert_eq!(tb.data_channel_dials(), want);
        // The same list in /testbed/stats, next to the unchanged "sessions".
        let resp = raw(&tb, "GET", STATS_PATH, "", false).await;
        let json: serde_json::Value =
            serde_json::from_str(resp.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert!(json["sessions"].is_array(), "{json}");
        assert_eq!(json["data_channel_dials"][0]["auth"], "signed");
        assert_eq!(
            json["data_channel_dials"][0]["access_key_id"],
            akid.as_str()
        );
        assert_eq!(json["data_channel_dials"][1]["auth"], "unsigned");
        assert_eq!(
            json["data_channel_dials"][7]["refused"],
            "ExpiredTokenException"
        );
    }

    /// `--unsigned-data-channel accept`: a raw websocket client without any signature gets in.
    #[tokio::test]
    async fn unsigned_data_channel_accept_lets_unsigned_in() {
        use crate::data_auth::{DialAuth, UnsignedPolicy};
        let tb = testbed_with(|c| c.unsigned_data_channel = UnsignedPolicy::Accept).await;
        let url = session(&tb, "s-2");
        let (_ws, resp) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
        let dials = tb.data_channel_dials();
        assert_eq!(dials.len(), 1);
        assert_eq!(
            (dials[0].auth, &dials[0].refused),
            (DialAuth::Unsigned, &None)
        );
        // Signatures are still checked when present.
        let bad = signed_request(&tb, &url, &tb.access_key_id, "wrong", 0);
        let (status, _) = refusal(tokio_tungstenite::connect_async(bad).await);
        assert_eq!(status, StatusCode::FORBIDDEN);
    }

    #[tokio::test]
    async fn presigned_stream_urls_need_no_headers() {
        use crate::data_auth::{DialAuth, PRESIGN_ACCESS_KEY_ID};
        use tokio_tungstenite::connect_async;
        let tb = testbed_with(|c| c.presign_stream_urls = true).await;
        let url = session(&tb, "s-3");
        let query = url.split_once('?').unwrap().1;
        assert!(query.starts_with("role=publish_subscribe&cell-number=cell-1&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential="), "{url}");
        assert!(query.contains("&X-Amz-Signature="), "{url}");
        let (_ws, resp) = connect_async(url.as_str()).await.unwrap();
        assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
        let tampered = url.replace("cell-number=cell-1", "cell-number=cell-2");
        let (status, body) = refusal(connect_async(tampered.as_str()).await);
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(body.contains("does not match"), "{body}");
        let dials = tb.data_channel_dials();
        assert_eq!(dials.len(), 2);
        assert_eq!(dials[0].auth, DialAuth::Presigned);
        assert_eq!(
            dials[0].access_key_id.as_deref(),
            Some(PRESIGN_ACCESS_KEY_ID)
        );
        assert_eq!(dials[0].refused, None);
        assert_eq!(
            dials[1].refused.as_deref(),
            Some("InvalidSignatureException")
        );
        // The presign key is the testbed's own: API calls signed with it are not accepted.
        assert!(tb.state.credential(PRESIGN_ACCESS_KEY_ID).is_none());
    }

    #[tokio::test]
    async fn tls_serves_https_and_wss_with_its_own_ca() {
        use tokio_tungstenite::{Connector, connect_async_tls_with_config};
        let tb = testbed_with(|c| c.tls = true).await;
        assert_eq!(tb.endpoint, format!("https://{}", tb.addr));
        let ca = tb.ca_bundle.clone().unwrap();
        let pem = std::fs::read_to_string(&ca).unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
        let env = tb.env();
        let bundle = env.iter().find(|(k, _)| k == "AWS_CA_BUNDLE").unwrap();
        assert_eq!(bundle.1, ca.display().to_string());
        let url = session(&tb, "s-4");
        assert!(
            url.starts_with(&format!("wss://{}/v1/data-channel/s-4?", tb.addr)),
            "{url}"
        );

        let trusting = || Some(Connector::Rustls(tb.tls_client_config().unwrap()));
        let req = signed_request(&tb, &url, &tb.access_key_id, &tb.secret_access_key, 0);
        let (_ws, resp) = connect_async_tls_with_config(req, None, false, trusting())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
        // The leaf also names localhost (SNI) and is refused by a client that does not
        // trust the CA.
        let by_name = url.replace("127.0.0.1", "localhost");
        let req = signed_request(&tb, &by_name, &tb.access_key_id, &tb.secret_access_key, 0);
        let (_ws2, _) = connect_async_tls_with_config(req, None, false, trusting())
            .await
            .unwrap();
        let req = signed_request(&tb, &url, &tb.access_key_id, &tb.secret_access_key, 0);
        let err = tokio_tungstenite::connect_async(req).await.unwrap_err();
        assert!(err.to_string().contains("certificate"), "{err}");
        // Plain HTTP to the TLS port is not served.
        let resp = raw(&tb, "GET", STATS_PATH, "", false).await;
        assert!(!resp.starts_with("HTTP/1.1 200"), "{resp}");
        assert_eq!(tb.data_channel_dials().len(), 2);
    }

    #[tokio::test]
    async fn env_and_loopback_only() {
        let tb = testbed().await;
        let s = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        let want = vec![
            s("AWS_ENDPOINT_URL", &format!("http://{}", tb.addr)),
            s("AWS_ACCESS_KEY_ID", "AKIASALLYPORTTESTBED"),
            s("AWS_SECRET_ACCESS_KEY", &tb.secret_access_key),
            s("AWS_REGION", "us-east-1"),
            s("SALLYPORT_TESTBED_INSTANCE", ONLINE),
            s("SALLYPORT_TESTBED_INSTANCE", LOST),
        ];
        assert_eq!(tb.env(), want);
        assert_eq!(tb.secret_access_key.len(), 40);

        let public = TestbedConfig::new("0.0.0.0:0".parse().unwrap(), vec![]);
        let err = Testbed::start(public).await.err().unwrap();
        assert!(err.to_string().contains("loopback"), "{err}");
    }
}
