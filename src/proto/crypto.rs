//! KMS session encryption (docs/protocol.md §5.4), sans-IO.
//!
//! The 64-byte data key from KMS `GenerateDataKey` is split in two: bytes 0–31 encrypt what
//! the agent sends, bytes 32–63 what the client sends. Each encrypted payload is
//! `nonce(12) ‖ AES-256-GCM ciphertext ‖ tag(16)`, without additional data. Only some
//! payload types are encrypted, and which ones depends on the direction
//! ([`is_encrypted`]).
//!
//! Nonces come from a 96-bit counter started at a caller-chosen seed, as the agent's are
//! (three little-endian 32-bit words, incremented with carry); the plugin uses random
//! nonces. Either is safe as long as one key never sees a nonce twice, and each direction
//! has its own key. No randomness is read here: production callers pass a random seed.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use zeroize::Zeroizing;

use super::channel::Role;
use super::payload::PayloadType;

/// Bytes of plaintext key material `GenerateDataKey` is asked for (`NumberOfBytes`).
pub const DATA_KEY_LEN: usize = 64;
pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;
/// How much longer a payload gets when encrypted.
pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("the KMS data key is {0} bytes long, expected {DATA_KEY_LEN}")]
    BadKeyLength(usize),
    #[error(
        "an encrypted payload of {0} bytes is too short to hold a nonce and a tag ({OVERHEAD} bytes)"
    )]
    TooShort(usize),
    #[error(
        "an encrypted payload failed authentication: it was altered, or the agent uses another key"
    )]
    Authentication,
    #[error("the payload is too large to encrypt")]
    TooLarge,
}

/// Whether `sender` encrypts payloads of `kind` once a session is encrypted: the agent
/// encrypts Output, StdErr and ExitCode; the client only Output. Handshake messages,
/// Size and Flag payloads, acknowledgements and channel_closed never are.
pub fn is_encrypted(sender: Role, kind: PayloadType) -> bool {
    match sender {
        Role::Agent => matches!(
            kind,
            PayloadType::Output | PayloadType::StdErr | PayloadType::ExitCode
        ),
        Role::Client => kind == PayloadType::Output,
    }
}

/// 96-bit nonce counter: three little-endian u32 words, the first least significant.
#[derive(Clone, Copy)]
struct NonceCounter(u128);

impl NonceCounter {
    const MASK: u128 = (1u128 << 96) - 1;

    fn next(&mut self) -> [u8; NONCE_LEN] {
        let mut out = [0u8; NONCE_LEN];
        let bytes = self.0.to_le_bytes();
        out.copy_from_slice(&bytes[..NONCE_LEN]);
        self.0 = self.0.wrapping_add(1) & Self::MASK;
        out
    }
}

/// One end's pair of AES-256-GCM keys for an encrypted session.
pub struct SessionCipher {
    role: Role,
    /// Encrypts what this end sends.
    sealing: LessSafeKey,
    /// Decrypts what the other end sends.
    opening: LessSafeKey,
    nonces: NonceCounter,
}

impl std::fmt::Debug for SessionCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCipher")
            .field("role", &self.role)
            .field("keys", &"<redacted>")
            .finish()
    }
}

impl SessionCipher {
    /// `role` is the end this cipher serves; `data_key` the 64-byte plaintext key from
    /// KMS; `nonce_seed` where the nonce counter starts (pass fresh randomness).
    pub fn new(
        role: Role,
        data_key: &[u8],
        nonce_seed: u128,
    ) -> Result<SessionCipher, CryptoError> {
        if data_key.len() != DATA_KEY_LEN {
            return Err(CryptoError::BadKeyLength(data_key.len()));
        }
        let (agent_key, client_key) = data_key.split_at(DATA_KEY_LEN / 2);
        let (seal_key, open_key) = match role {
            Role::Client => (client_key, agent_key),
            Role::Agent => (agent_key, client_key),
        };
        // aws-lc wipes its own copy of the key when the key object is dropped.
        let key = |bytes: &[u8]| {
            let copy = Zeroizing::new(bytes.to_vec());
            UnboundKey::new(&AES_256_GCM, &copy)
                .map(LessSafeKey::new)
                .map_err(|_| CryptoError::BadKeyLength(data_key.len()))
        };
        Ok(SessionCipher {
            role,
            sealing: key(seal_key)?,
            opening: key(open_key)?,
            nonces: NonceCounter(nonce_seed & NonceCounter::MASK),
        })
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// Encrypts a payload this end sends, with the next counter nonce.
    pub fn seal(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let nonce = self.nonces.next();
        self.seal_with_nonce(nonce, plaintext)
    }

    /// Encrypts with an explicit nonce (which must never repeat under this key).
    pub fn seal_with_nonce(
        &self,
        nonce: [u8; NONCE_LEN],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let mut out = Vec::with_capacity(plaintext.len() + OVERHEAD);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = self
            .sealing
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::empty(),
                out.get_mut(NONCE_LEN..).unwrap_or_default(),
            )
            .map_err(|_| CryptoError::TooLarge)?;
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Decrypts and authenticates a payload the other end sent.
    pub fn open(&self, payload: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if payload.len() < OVERHEAD {
            return Err(CryptoError::TooShort(payload.len()));
        }
        let (nonce, sealed) = payload.split_at(NONCE_LEN);
        let nonce =
            Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::TooShort(0))?;
        let mut buf = sealed.to_vec();
        let plain_len = self
            .opening
            .open_in_place(nonce, Aad::empty(), &mut buf)
            .map_err(|_| CryptoError::Authentication)?
            .len();
        buf.truncate(plain_len);
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Vec<u8> {
        (0u8..64).collect()
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    const NONCE: [u8; 12] = [
        0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab,
    ];
    // Computed independently with Python's `cryptography` (AESGCM, no AAD): key =
    // bytes(range(64)), plaintext b"ls -la\r"; agent→client uses key[:32], client→agent
    // key[32:].
    const AGENT_TO_CLIENT: &str =
        "a0a1a2a3a4a5a6a7a8a9aaab8a6b5c0029aa0f0c6f1af623c120e92ac808c44f8bde1b";
    const CLIENT_TO_AGENT: &str =
        "a0a1a2a3a4a5a6a7a8a9aaab124f8419a8b68d6fcad5cecec2c60aa4653ab977e1ea96";

    #[test]
    fn golden_vectors_for_both_key_halves() {
        let client = SessionCipher::new(Role::Client, &key(), 0).unwrap();
        let agent = SessionCipher::new(Role::Agent, &key(), 0).unwrap();
        assert_eq!(
            client.seal_with_nonce(NONCE, b"ls -la\r").unwrap(),
            hex(CLIENT_TO_AGENT)
        );
        assert_eq!(
            agent.seal_with_nonce(NONCE, b"ls -la\r").unwrap(),
            hex(AGENT_TO_CLIENT)
        );
        assert_eq!(client.open(&hex(AGENT_TO_CLIENT)).unwrap(), b"ls -la\r");
        assert_eq!(agent.open(&hex(CLIENT_TO_AGENT)).unwrap(), b"ls -la\r");
        // A client cannot read its own direction: the halves are distinct keys.
        assert_eq!(
            client.open(&hex(CLIENT_TO_AGENT)),
            Err(CryptoError::Authentication)
        );
    }

    #[test]
    fn round_trip_both_ways_with_counter_nonces() {
        let mut client = SessionCipher::new(Role::Client, &key(), u128::MAX).unwrap();
        let mut agent = SessionCipher::new(Role::Agent, &key(), 7).unwrap();
        let a = client.seal(b"hello").unwrap();
        let b = client.seal(b"hello").unwrap();
        assert_eq!(a.len(), 5 + OVERHEAD);
        assert_ne!(a, b, "each message gets a fresh nonce");
        // The seed is cut to 96 bits; the counter wraps to zero after the top value.
        assert_eq!(a[..12], [0xff; 12]);
        assert_eq!(b[..12], [0; 12]);
        assert_eq!(agent.open(&a).unwrap(), b"hello");
        assert_eq!(agent.open(&b).unwrap(), b"hello");
        let c = agent.seal(b"").unwrap();
        assert_eq!(c[..12], [7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(client.open(&c).unwrap(), b"");
        let big = vec![0x5a; 4096];
        assert_eq!(client.open(&agent.seal(&big).unwrap()).unwrap(), big);
    }

    #[test]
    fn tampering_and_short_input_are_rejected() {
        let client = SessionCipher::new(Role::Client, &key(), 0).unwrap();
        let good = hex(AGENT_TO_CLIENT);
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            assert_eq!(
                client.open(&bad),
                Err(CryptoError::Authentication),
                "byte {i}"
            );
        }
        for n in 0..OVERHEAD {
            assert_eq!(client.open(&good[..n]), Err(CryptoError::TooShort(n)));
        }
        let mut other_key = key();
        other_key[0] ^= 1;
        let other = SessionCipher::new(Role::Client, &other_key, 0).unwrap();
        assert_eq!(other.open(&good), Err(CryptoError::Authentication));
    }

    #[test]
    fn key_length_is_checked() {
        for n in [0, 32, 63, 65] {
            assert_eq!(
                SessionCipher::new(Role::Client, &vec![1; n], 0).unwrap_err(),
                CryptoError::BadKeyLength(n)
            );
        }
    }

    #[test]
    fn which_payloads_are_encrypted() {
        use PayloadType::*;
        for t in [Output, StdErr, ExitCode] {
            assert!(is_encrypted(Role::Agent, t));
        }
        assert!(is_encrypted(Role::Client, Output));
        for t in [Size, Flag, HandshakeResponse, EncChallengeResponse, StdErr] {
            assert!(!is_encrypted(Role::Client, t), "{t:?}");
        }
        for t in [
            HandshakeRequest,
            HandshakeComplete,
            EncChallengeRequest,
            Flag,
        ] {
            assert!(!is_encrypted(Role::Agent, t), "{t:?}");
        }
    }
}
