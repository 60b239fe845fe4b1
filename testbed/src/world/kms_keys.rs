//! The testbed's KMS keys (what `TrentService.*` serves, [`crate::aws_api::kms`], and what the agent
//! decrypts data keys with): `GenerateDataKey` and `Decrypt` on a master key random per
//! testbed.
//!
//! A `CiphertextBlob` is the data key sealed with AES-256-GCM under that master key, with
//! the key ARN and the canonical (sorted) encryption context as additional data, so
//! `Decrypt` with any other context fails with `InvalidCiphertextException`, as on KMS. The
//! blob layout is the testbed's own (real blobs are opaque too).
//!
//! Known keys: every `kms_key_id` of the configured instances, by key ID, key ARN, alias
//! name or alias ARN. Anything else is `NotFoundException`.

use std::collections::BTreeMap;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

use crate::world::config::ACCOUNT_ID;

const BLOB_VERSION: u8 = 1;

/// The testbed's KMS: its master key and the keys it knows.
pub struct KmsState {
    master: LessSafeKey,
    region: String,
    /// Key ARNs by every name that resolves to them.
    keys: BTreeMap<String, String>,
}

/// A KMS error: the code clients see and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsError {
    pub code: &'static str,
    pub message: String,
}

impl KmsError {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        KmsError {
            code,
            message: message.into(),
        }
    }

    /// What KMS says when the blob or the encryption context does not match. KMS sends no
    /// text with it; this one is ours.
    fn invalid_ciphertext() -> Self {
        KmsError::new(
            "InvalidCiphertextException",
            "the ciphertext is not valid for this key and encryption context",
        )
    }
}

impl std::fmt::Display for KmsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for KmsError {}

/// A data key as GenerateDataKey returns it.
#[derive(Debug)]
pub struct GeneratedKey {
    pub key_arn: String,
    pub ciphertext_blob: Vec<u8>,
    pub plaintext: Vec<u8>,
}

impl KmsState {
    /// A KMS with a fresh random master key that knows `key_ids` (IDs, ARNs or aliases).
    pub fn new<'a>(region: &str, key_ids: impl IntoIterator<Item = &'a str>) -> KmsState {
        let master: [u8; 32] = rand::random();
        let master = UnboundKey::new(&AES_256_GCM, &master)
            .map(LessSafeKey::new)
            .unwrap_or_else(|_| unreachable!("32 bytes is an AES-256 key"));
        let mut keys = BTreeMap::new();
        for id in key_ids {
            let arn = key_arn(region, id);
            keys.insert(id.to_owned(), arn.clone());
            keys.insert(arn.clone(), arn);
        }
        KmsState {
            master,
            region: region.to_owned(),
            keys,
        }
    }

    /// The key ARN `key_id` names, if the testbed knows it.
    pub fn resolve(&self, key_id: &str) -> Result<String, KmsError> {
        self.keys.get(key_id).cloned().ok_or_else(|| {
            KmsError::new(
                "NotFoundException",
                format!("Key '{}' does not exist", key_arn(&self.region, key_id)),
            )
        })
    }

    pub fn generate_data_key(
        &self,
        key_id: &str,
        number_of_bytes: usize,
        context: &BTreeMap<String, String>,
    ) -> Result<GeneratedKey, KmsError> {
        let key_arn = self.resolve(key_id)?;
        let plaintext: Vec<u8> = (0..number_of_bytes).map(|_| rand::random::<u8>()).collect();
        let nonce: [u8; NONCE_LEN] = rand::random();
        let mut sealed = plaintext.clone();
        let tag = self
            .master
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(&key_arn, context)),
                &mut sealed,
            )
            .map_err(|_| KmsError::new("KMSInternalException", "sealing failed"))?;
        let arn_bytes = key_arn.as_bytes();
        let mut blob = vec![BLOB_VERSION];
        blob.extend_from_slice(&(arn_bytes.len() as u16).to_be_bytes());
        blob.extend_from_slice(arn_bytes);
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&sealed);
        blob.extend_from_slice(tag.as_ref());
        Ok(GeneratedKey {
            key_arn,
            ciphertext_blob: blob,
            plaintext,
        })
    }

    /// The plaintext in `blob` and the ARN of the key that made it. `key_id`, when given,
    /// must name that key.
    pub fn decrypt(
        &self,
        blob: &[u8],
        context: &BTreeMap<String, String>,
        key_id: Option<&str>,
    ) -> Result<(Vec<u8>, String), KmsError> {
        let bad = KmsError::invalid_ciphertext;
        let (&version, rest) = blob.split_first().ok_or_else(bad)?;
        if version != BLOB_VERSION || rest.len() < 2 {
            return Err(bad());
        }
        let (len, rest) = rest.split_at(2);
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        if rest.len() < len + NONCE_LEN {
            return Err(bad());
        }
        let (arn, rest) = rest.split_at(len);
        let key_arn = String::from_utf8(arn.to_vec()).map_err(|_| bad())?;
        if let Some(id) = key_id
            && self.resolve(id)? != key_arn
        {
            return Err(KmsError::new(
                "IncorrectKeyException",
                "The key ID in the request does not identify a CMK that can perform this operation.",
            ));
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| bad())?;
        let mut buf = sealed.to_vec();
        let plain = self
            .master
            .open_in_place(nonce, Aad::from(aad(&key_arn, context)), &mut buf)
            .map_err(|_| bad())?
            .to_vec();
        Ok((plain, key_arn))
    }
}

fn key_arn(region: &str, key_id: &str) -> String {
    if key_id.starts_with("arn:") {
        key_id.to_owned()
    } else if key_id.starts_with("alias/") {
        format!("arn:aws:kms:{region}:{ACCOUNT_ID}:{key_id}")
    } else {
        format!("arn:aws:kms:{region}:{ACCOUNT_ID}:key/{key_id}")
    }
}

/// The key ARN and the context, sorted by key (a BTreeMap is): the blob's additional data.
fn aad(key_arn: &str, context: &BTreeMap<String, String>) -> Vec<u8> {
    let mut out = key_arn.as_bytes().to_vec();
    out.push(0);
    out.extend(serde_json::to_vec(context).unwrap_or_default());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn blobs_decrypt_only_with_the_same_context_and_key() {
        let kms = KmsState::new("us-east-1", ["alias/ssm", "other"]);
        let c = ctx(&[("aws:ssm:SessionId", "s-1"), ("aws:ssm:TargetId", "i-1")]);
        let key = kms.generate_data_key("alias/ssm", 64, &c).unwrap();
        assert_eq!(key.plaintext.len(), 64);
        assert_eq!(key.key_arn, "arn:aws:kms:us-east-1:123456789012:alias/ssm");
        let (plain, arn) = kms.decrypt(&key.ciphertext_blob, &c, None).unwrap();
        assert_eq!((plain, arn), (key.plaintext.clone(), key.key_arn.clone()));
        let wrong = ctx(&[("aws:ssm:SessionId", "s-1"), ("aws:ssm:TargetId", "i-2")]);
        assert_eq!(
            kms.decrypt(&key.ciphertext_blob, &wrong, None)
                .unwrap_err()
                .code,
            "InvalidCiphertextException"
        );
        assert_eq!(
            kms.decrypt(&key.ciphertext_blob, &c, Some("other"))
                .unwrap_err()
                .code,
            "IncorrectKeyException"
        );
        for n in 0..key.ciphertext_blob.len() {
            assert!(kms.decrypt(&key.ciphertext_blob[..n], &c, None).is_err());
        }
        assert_eq!(
            kms.generate_data_key("nope", 64, &c).unwrap_err().code,
            "NotFoundException"
        );
        let another = KmsState::new("us-east-1", ["alias/ssm"]);
        assert!(another.decrypt(&key.ciphertext_blob, &c, None).is_err());
    }
}
