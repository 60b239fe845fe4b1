//! The agent's session cipher for KMS-encrypted sessions, built from docs/protocol.md §5.4 on
//! its own (not from `sallyport::proto::crypto`), so a key-half or nonce mistake in the
//! client shows up as a failed session in the testbed rather than being mirrored:
//!
//! - the 64-byte data key splits into bytes 0..32, the agent's key (it seals agent→client
//!   payloads), and bytes 32..64, the client's key (it opens client→agent payloads);
//! - AES-256-GCM, no associated data; a sealed payload is `nonce(12) ‖ ciphertext ‖ tag(16)`;
//! - the agent's nonces count up from a random start: three little-endian 32-bit words,
//!   the first incremented, carrying into the next. Unverified: which word the agent
//!   increments first (nothing on the client depends on it: the nonce travels with each
//!   payload);
//! - the agent seals Output (1), StdErr (11) and ExitCode (12); the client seals Output only.
//!
//! The golden vectors in the tests were computed outside the project with Python's
//! `cryptography` package (see the test).

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

const KEY_HALF: usize = 32;
const TAG_LEN: usize = 16;

/// Payload types the agent encrypts on the way out (docs/protocol.md §3.4, §5.4).
pub fn agent_encrypts(payload_type: u32) -> bool {
    matches!(payload_type, 1 | 11 | 12)
}

/// Payload types the client encrypts (Output only: Size, Flag and handshake JSON stay plain).
pub fn client_encrypts(payload_type: u32) -> bool {
    payload_type == 1
}

/// The agent's two keys and its nonce counter.
pub struct AgentCipher {
    seal_key: LessSafeKey,
    open_key: LessSafeKey,
    counter: [u32; 3],
}

impl std::fmt::Debug for AgentCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AgentCipher { .. }")
    }
}

impl AgentCipher {
    /// From the 64-byte data key KMS decrypted, with nonces starting at `counter`.
    pub fn new(data_key: &[u8], counter: [u32; 3]) -> Result<AgentCipher, String> {
        if data_key.len() != 2 * KEY_HALF {
            return Err(format!(
                "the data key is {} bytes; a session key is 64",
                data_key.len()
            ));
        }
        let key = |half: &[u8]| {
            UnboundKey::new(&AES_256_GCM, half)
                .map(LessSafeKey::new)
                .map_err(|_| "invalid AES-256 key".to_owned())
        };
        Ok(AgentCipher {
            seal_key: key(&data_key[..KEY_HALF])?,
            open_key: key(&data_key[KEY_HALF..])?,
            counter,
        })
    }

    fn next_nonce(&mut self) -> [u8; NONCE_LEN] {
        let mut nonce = [0u8; NONCE_LEN];
        for (word, out) in self.counter.iter().zip(nonce.chunks_exact_mut(4)) {
            out.copy_from_slice(&word.to_le_bytes());
        }
        for word in self.counter.iter_mut() {
            let (next, carry) = word.overflowing_add(1);
            *word = next;
            if !carry {
                break;
            }
        }
        nonce
    }

    /// Seals an agent→client payload with the agent's key.
    pub fn seal(&mut self, plain: &[u8]) -> Result<Vec<u8>, String> {
        let nonce = self.next_nonce();
        let mut body = plain.to_vec();
        self.seal_key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut body)
            .map_err(|_| "sealing failed".to_owned())?;
        let mut out = nonce.to_vec();
        out.extend(body);
        Ok(out)
    }

    /// Opens a client→agent payload with the client's key.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, String> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Err(format!(
                "{} bytes is too short for a sealed payload",
                sealed.len()
            ));
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| "bad nonce".to_owned())?;
        let mut body = body.to_vec();
        let plain = self
            .open_key
            .open_in_place(nonce, Aad::empty(), &mut body)
            .map_err(|_| "the payload does not decrypt with the client's key".to_owned())?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Computed with Python 3 and `cryptography` 48.0.0:
    /// ```text
    /// from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    /// key = bytes(range(64))
    /// n1 = (1).to_bytes(4,'little') + (2).to_bytes(4,'little') + (3).to_bytes(4,'little')
    /// (n1 + AESGCM(key[:32]).encrypt(n1, b"agent to client", None)).hex()
    /// n2 = bytes.fromhex("0a0b0c0d0e0f101112131415")
    /// (n2 + AESGCM(key[32:]).encrypt(n2, b"client to agent", None)).hex()
    /// ```
    const AGENT_TO_CLIENT: &str =
        "01000000020000000300000065140f005e9d69f2119015e0cac20caef785c1ad556b9b0bff3a3b68a2c8cb";
    const CLIENT_TO_AGENT: &str =
        "0a0b0c0d0e0f101112131415e07ef6bd781b0d04286f9eb4a1934d79b49b211056369dcc780e0b6ca679a2";

    fn key() -> Vec<u8> {
        (0u8..64).collect()
    }

    #[test]
    fn the_agent_seals_with_the_first_half_and_counts_its_nonces() {
        let mut c = AgentCipher::new(&key(), [1, 2, 3]).unwrap();
        assert_eq!(c.seal(b"agent to client").unwrap(), unhex(AGENT_TO_CLIENT));
        let second = c.seal(b"agent to client").unwrap();
        assert_eq!(&second[..12], &[2, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0]);
    }

    #[test]
    fn the_agent_opens_with_the_second_half() {
        let c = AgentCipher::new(&key(), [0; 3]).unwrap();
        assert_eq!(c.open(&unhex(CLIENT_TO_AGENT)).unwrap(), b"client to agent");
        // What the agent sealed for the client does not open as client input.
        assert!(c.open(&unhex(AGENT_TO_CLIENT)).is_err());
    }

    #[test]
    fn the_nonce_counter_carries() {
        let mut c = AgentCipher::new(&key(), [u32::MAX, u32::MAX, 7]).unwrap();
        let first = c.seal(b"x").unwrap();
        assert_eq!(
            &first[..12],
            &[255, 255, 255, 255, 255, 255, 255, 255, 7, 0, 0, 0]
        );
        let second = c.seal(b"x").unwrap();
        assert_eq!(&second[..12], &[0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0]);
    }

    #[test]
    fn bad_keys_and_short_payloads_are_errors() {
        assert!(AgentCipher::new(&[0; 32], [0; 3]).is_err());
        let c = AgentCipher::new(&key(), [0; 3]).unwrap();
        assert!(c.open(&[0; 27]).is_err());
    }

    #[test]
    fn what_each_side_encrypts() {
        assert!(agent_encrypts(1) && agent_encrypts(11) && agent_encrypts(12));
        assert!(!agent_encrypts(5) && !agent_encrypts(8) && !agent_encrypts(7));
        assert!(client_encrypts(1));
        assert!(
            !client_encrypts(3)
                && !client_encrypts(6)
                && !client_encrypts(9)
                && !client_encrypts(10)
        );
    }
}
