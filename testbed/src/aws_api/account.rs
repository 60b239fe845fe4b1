//! The account the fake AWS side plays: who may call (credentials, SigV4 checks of API
//! calls and of data-channel upgrades), what was called, the sessions and keys it holds.
//! Shared by every API handler; the server builds one per testbed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rand::Rng as _;
use rand::distr::Alphanumeric;

use crate::aws_api::data_auth::{DialAuth, DialLog, DialRecord};
use crate::aws_api::sigv4::AuthError;
use crate::world::config::{ACCOUNT_ID, CALLER, InstanceConfig, TestbedConfig, UnsignedPolicy};
use crate::world::state::{ApiCall, Sessions};

/// Where the data-channel websockets live: the StreamUrl's path is this plus the session ID.
pub const DATA_CHANNEL_PREFIX: &str = "/v1/data-channel/";

/// The fake AWS account the API handlers serve and the data-channel upgrade checks against:
/// its configuration, sessions, credentials, call log, KMS keys and Instance Connect keys.
pub struct Account {
    pub config: Arc<TestbedConfig>,
    pub sessions: Arc<Sessions>,
    /// The address actually bound (the port is known only after binding to port 0).
    pub local_addr: SocketAddr,
    /// Prefix of generated session IDs.
    pub caller: String,
    /// The KMS API's keys (`TrentService.*`).
    pub kms: Arc<crate::world::kms_keys::KmsState>,
    /// Where EC2 Instance Connect records pushed keys (`AWSEC2InstanceConnectService.*`).
    pub eic: Arc<crate::instance::eic_keys::KeyStore>,
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
    /// The secret of [`crate::aws_api::data_auth::PRESIGN_ACCESS_KEY_ID`] (random per start).
    presign_secret: String,
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

impl Account {
    pub fn new(config: TestbedConfig, local_addr: SocketAddr) -> Self {
        let kms_keys = config
            .instances
            .iter()
            .filter_map(|i| i.kms_key_id.as_deref());
        let kms = Arc::new(crate::world::kms_keys::KmsState::new(
            &config.region,
            kms_keys,
        ));
        // `Testbed::start` always sets a directory; this default only serves states built
        // directly (unit tests), and nothing is created there until a key is pushed.
        let eic_dir = config.eic_state_dir.clone().unwrap_or_else(|| {
            std::env::temp_dir().join(format!("sallyport-eic-{}", uuid::Uuid::new_v4()))
        });
        Account {
            kms,
            eic: Arc::new(crate::instance::eic_keys::KeyStore::new(eic_dir)),
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
        }
    }

    /// The StreamUrl for a session: `ws://` or `wss://` to this listener (or to
    /// `stream_host`), presigned by the
    /// testbed when `presign_stream_urls` is set. The cell number is new on every call.
    pub fn stream_url(&self, session_id: &str, cell_number: &str) -> String {
        let scheme = if self.config.tls { "wss" } else { "ws" };
        let host = (self.config.stream_host.clone()).unwrap_or_else(|| self.local_addr.to_string());
        let path = format!("{DATA_CHANNEL_PREFIX}{session_id}");
        let mut query = format!("role=publish_subscribe&cell-number={cell_number}");
        if self.config.presign_stream_urls {
            let now = crate::world::clock::now_secs(self.config.clock_offset_secs);
            query = crate::aws_api::sigv4::presign_query(
                &host,
                &path,
                &query,
                crate::aws_api::data_auth::PRESIGN_ACCESS_KEY_ID,
                &self.presign_secret,
                &self.config.region,
                crate::aws_api::data_auth::SERVICE,
                &crate::world::clock::format_amz_date(now),
                crate::aws_api::data_auth::PRESIGN_EXPIRES_SECS,
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
        let auth = crate::aws_api::data_auth::classify(parts);
        let result = match auth {
            DialAuth::Signed => self
                .authenticate(parts, b"", crate::aws_api::data_auth::SERVICE)
                .map(|(akid, _)| Some(akid)),
            DialAuth::Presigned => {
                let now = crate::world::clock::now_secs(self.config.clock_offset_secs);
                let secret = |k: &str| {
                    (k == crate::aws_api::data_auth::PRESIGN_ACCESS_KEY_ID)
                        .then(|| self.presign_secret.clone())
                };
                let (region, service) = (&self.config.region, crate::aws_api::data_auth::SERVICE);
                crate::aws_api::sigv4::verify_presigned(parts, region, service, now, secret)
                    .map(Some)
            }
            DialAuth::Unsigned => match self.config.unsigned_data_channel {
                UnsignedPolicy::Accept => Ok(None),
                UnsignedPolicy::Refuse => Err(crate::aws_api::data_auth::unsigned_refusal()),
            },
        };
        let (access_key_id, refused) = match &result {
            Ok(akid) => (akid.clone(), None),
            Err(e) => (
                crate::aws_api::data_auth::claimed_key(parts),
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
        let akid =
            crate::aws_api::sigv4::verify(parts, body, region, service, |k| self.secret_for(k))?;
        let signed = parts
            .headers
            .get("x-amz-date")
            .and_then(|v| v.to_str().ok())
            .and_then(crate::world::clock::parse_amz_date);
        let now = crate::world::clock::now_secs(self.config.clock_offset_secs);
        if let Some(why) = signed.and_then(|t| crate::world::clock::skew_error(t, now)) {
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

    fn creds(&self) -> std::sync::MutexGuard<'_, HashMap<String, Credential>> {
        self.credentials.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A random 40-character secret access key.
pub fn random_secret() -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(40)
        .map(char::from)
        .collect()
}
