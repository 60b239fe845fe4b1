//! Sessions the fake SSM API has started, shared between the API and the relay.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use crate::world::config::InstanceConfig;

/// One session as `StartSession` created it.
#[derive(Clone, Debug)]
pub struct SessionRecord {
    pub session_id: String,
    /// The `TokenValue` a client must present in its opening text frame.
    pub token: String,
    pub instance: InstanceConfig,
    pub document: String,
    /// StartSession `Parameters` as sent (name -> list of values).
    pub parameters: BTreeMap<String, Vec<String>>,
}

impl SessionRecord {
    /// The `portNumber` parameter, or the document's default (22 for AWS-StartSSHSession).
    pub fn port_number(&self) -> Option<u16> {
        match self.parameters.get("portNumber").and_then(|v| v.first()) {
            Some(p) => p.parse().ok(),
            None => Some(22),
        }
    }
}

/// Live and terminated sessions.
#[derive(Default)]
pub struct Sessions {
    inner: Mutex<HashMap<String, Arc<SessionRecord>>>,
    terminated: Mutex<Vec<String>>,
    /// Every token ever issued (StartSession and ResumeSession), for leak checks in tests.
    issued: Mutex<Vec<String>>,
}

impl Sessions {
    pub fn insert(&self, rec: SessionRecord) -> Arc<SessionRecord> {
        self.remember(&rec.token);
        let rec = Arc::new(rec);
        self.lock().insert(rec.session_id.clone(), rec.clone());
        rec
    }

    pub fn get(&self, id: &str) -> Option<Arc<SessionRecord>> {
        self.lock().get(id).cloned()
    }

    /// Every token issued so far.
    pub fn all_tokens(&self) -> Vec<String> {
        self.issued
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn remember(&self, token: &str) {
        self.issued
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(token.to_owned());
    }

    /// Gives a live session a new token (ResumeSession); `None` if it is not live.
    pub fn resume(&self, id: &str, token: String) -> Option<Arc<SessionRecord>> {
        self.remember(&token);
        let mut map = self.lock();
        let old = map.get(id)?;
        let rec = Arc::new(SessionRecord {
            token,
            ..SessionRecord::clone(old)
        });
        map.insert(id.to_owned(), rec.clone());
        Some(rec)
    }

    /// Removes a session; returns whether it existed.
    pub fn terminate(&self, id: &str) -> bool {
        let existed = self.lock().remove(id).is_some();
        if existed {
            self.terminated
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(id.to_owned());
        }
        existed
    }

    pub fn is_terminated(&self, id: &str) -> bool {
        self.terminated
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|t| t == id)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<SessionRecord>>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One API call the testbed answered (after its signature check), for tests to inspect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiCall {
    /// `ssm`, `sts`, `kms` or `ec2-instance-connect`.
    pub service: &'static str,
    /// e.g. `StartSession`, `DescribeInstanceInformation`, `AssumeRole`.
    pub operation: String,
    /// The access key ID that signed the call.
    pub access_key_id: String,
    /// StartSession's `Target`; SendSSHPublicKey's `InstanceId`.
    pub target: Option<String>,
    /// SendSSHPublicKey's `InstanceOSUser`.
    pub os_user: Option<String>,
    /// SendSSHPublicKey's `SSHPublicKey`, as sent.
    pub ssh_public_key: Option<String>,
}
