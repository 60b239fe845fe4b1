//! Which parameters `exec` gives its session document.
//!
//! The agent keeps stdout and stderr apart and sends the exit code only when the
//! document's properties set `separateOutputStream` (docs/protocol.md §8.2). A document
//! that declares it as a parameter (the copies of `AWS-StartNonInteractiveCommand` we know
//! default it to `"false"`) must be asked for it: `exec` passes
//! `separateOutputStream=true` when the document declares it, learnt from GetDocument and
//! cached briefly on disk. When GetDocument is denied or fails, the parameter is sent
//! anyway, and if StartSession refuses it as one the document does not declare, the
//! session is started again without it. Parameters the user gives win.
//!
//! The cache: one small JSON file per document under `$XDG_CACHE_HOME/sallyport/documents/`
//! (0700), named by the SHA-256 of the AWS context and the document name, written 0600
//! through a rename, trusted for [`TTL`]. Its content is read as hostile input; every
//! failure here is only logged.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::aws::{AwsError, Ssm};
use crate::target::cache::{Store, fresh};

/// The document parameter that asks the agent for separate streams and the exit code.
pub const SEPARATE_OUTPUT: &str = "separateOutputStream";

/// How long what GetDocument said is trusted.
pub const TTL: Duration = Duration::from_secs(300);

/// The most GetDocument content we parse (AWS documents are at most 64 KB).
const MAX_CONTENT: usize = 1024 * 1024;

/// How long GetDocument may take before `exec` goes on without its answer.
const LOOKUP_BUDGET: Duration = Duration::from_secs(10);

/// Whether the document declares [`SEPARATE_OUTPUT`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Declared {
    Yes,
    No,
    /// GetDocument was denied or failed, or its answer made no sense.
    Unknown,
}

/// The parameters for StartSession, and whether we added [`SEPARATE_OUTPUT`] ourselves
/// (only then may it be dropped when StartSession refuses it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub parameters: BTreeMap<String, Vec<String>>,
    pub added_separate: bool,
}

/// `command`, then `separateOutputStream=true` unless the document is known not to declare
/// it, then the user's parameters, which replace ours of the same name.
pub fn plan(command: &str, declared: Declared, user: &BTreeMap<String, Vec<String>>) -> Plan {
    let mut parameters = BTreeMap::from([("command".to_owned(), vec![command.to_owned()])]);
    let added_separate = declared != Declared::No && !user.contains_key(SEPARATE_OUTPUT);
    if added_separate {
        parameters.insert(SEPARATE_OUTPUT.to_owned(), vec!["true".to_owned()]);
    }
    for (k, v) in user {
        parameters.insert(k.clone(), v.clone());
    }
    Plan {
        parameters,
        added_separate,
    }
}

/// Whether StartSession's error says the document takes no such parameter:
/// `InvalidParameters`, or a `ValidationException` that names it (which of the two AWS
/// gives is unverified).
pub fn refuses_parameter(e: &AwsError, name: &str) -> bool {
    match e.code.as_deref() {
        Some("InvalidParameters") => true,
        Some("ValidationException") => e.message.contains(name),
        _ => false,
    }
}

/// The plan to start again with after StartSession failed with `e`: the same without the
/// [`SEPARATE_OUTPUT`] we added, when that is what was refused.
pub fn retry_without_separate(plan: &Plan, e: &AwsError) -> Option<Plan> {
    if !plan.added_separate || !refuses_parameter(e, SEPARATE_OUTPUT) {
        return None;
    }
    let mut parameters = plan.parameters.clone();
    parameters.remove(SEPARATE_OUTPUT);
    Some(Plan {
        parameters,
        added_separate: false,
    })
}

/// Whether a document's JSON content declares `name` among its `parameters`. `None` when
/// the content is too large, not JSON, or its `parameters` is not an object.
pub fn declares(content: &str, name: &str) -> Option<bool> {
    if content.len() > MAX_CONTENT {
        return None;
    }
    let doc: serde_json::Value = serde_json::from_str(content).ok()?;
    match doc.as_object()?.get("parameters") {
        None | Some(serde_json::Value::Null) => Some(false),
        Some(serde_json::Value::Object(params)) => Some(params.contains_key(name)),
        Some(_) => None,
    }
}

/// What the document declares: from the cache, else from GetDocument (then cached).
pub async fn learn(
    ssm: &Ssm,
    cache: Option<&DocumentCache>,
    key: &str,
    document: &str,
) -> Declared {
    if let Some(yes) = cache.and_then(|c| c.get(key)) {
        tracing::debug!(document, declares = yes, "document parameters from cache");
        return if yes { Declared::Yes } else { Declared::No };
    }
    let content = match tokio::time::timeout(LOOKUP_BUDGET, ssm.document_content(document)).await {
        Ok(Ok(content)) => content,
        Ok(Err(e)) => {
            tracing::debug!(document, "GetDocument failed: {e}");
            return Declared::Unknown;
        }
        Err(_) => {
            tracing::debug!(document, "GetDocument timed out");
            return Declared::Unknown;
        }
    };
    match declares(&content, SEPARATE_OUTPUT) {
        Some(yes) => {
            if let Some(c) = cache {
                c.put(key, yes);
            }
            if yes { Declared::Yes } else { Declared::No }
        }
        None => {
            tracing::debug!(document, "GetDocument content not understood");
            Declared::Unknown
        }
    }
}

/// The on-disk record of which documents declare [`SEPARATE_OUTPUT`], in a private
/// store with the target cache's rules (`target::cache::Store`: a directory of ours,
/// regular files of ours, 0600 through a rename, small reads).
#[derive(Clone, Debug)]
pub struct DocumentCache {
    store: Store,
    ttl: Duration,
}

/// Most bytes of a document cache entry that are believed.
const MAX_ENTRY: usize = 256;

#[derive(Serialize, Deserialize)]
struct Entry {
    separate_output: bool,
    /// Unix seconds when written.
    at: u64,
}

impl DocumentCache {
    /// The cache under the user's cache directory, if there is one.
    pub fn new() -> Option<DocumentCache> {
        let dir = dirs::cache_dir()?.join("sallyport").join("documents");
        Some(DocumentCache::at(dir, TTL))
    }

    pub fn at(dir: PathBuf, ttl: Duration) -> DocumentCache {
        DocumentCache {
            store: Store::at(dir),
            ttl,
        }
    }

    /// The cache key of `document` in the AWS context `scope` (hex SHA-256).
    pub fn key(scope: &str, document: &str) -> String {
        crate::target::cache::key(scope, document)
    }

    pub fn get(&self, key: &str) -> Option<bool> {
        let bytes = self.store.get(key, "document cache")?;
        // An entry is ~40 bytes; anything much larger was not written by us.
        if bytes.len() > MAX_ENTRY {
            return None;
        }
        let entry: Entry = serde_json::from_slice(&bytes).ok()?;
        fresh(entry.at, self.ttl).then_some(entry.separate_output)
    }

    pub fn put(&self, key: &str, separate_output: bool) {
        let entry = Entry {
            separate_output,
            at: now_secs(),
        };
        if let Ok(bytes) = serde_json::to_vec(&entry) {
            self.store.put(key, &bytes, "document cache");
        }
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

#[cfg(test)]
#[path = "exec_document_tests.rs"]
mod tests;
