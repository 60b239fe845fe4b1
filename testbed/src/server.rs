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
#[path = "server_tests.rs"]
mod tests;
