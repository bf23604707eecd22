//! AES-256-GCM encryption of tokens and verifiers with a key ring.
//!
//! Stored form: `v1:<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>`. The key id lets old values be
//! read after the primary key changes; the associated data (column and row) makes a value copied
//! into another row or column fail to decrypt.

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};

use super::Aad;

const FORMAT_VERSION: &str = "v1";
const NONCE_LEN: usize = 12;
const KEY_ID_MAX_LEN: usize = 16;

/// Why a key ring could not be built from configuration.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum KeyRingError {
    #[error("no key given")]
    Empty,
    /// The entry's id is malformed; it is not echoed, since a reversed `key:id` entry would put
    /// the key in its place.
    #[error("entry {0}: the key id must be 1-16 characters of A-Z, a-z, 0-9, '_' or '-' (write id:key)")]
    BadKeyId(usize),
    #[error("key {0:?} is not 32 bytes in base64 or 64 hex digits")]
    BadKey(String),
    #[error("key id {0:?} appears twice")]
    DuplicateKeyId(String),
}

/// Why a stored value could not be decrypted.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CipherError {
    #[error("stored value is not in the v1 ciphertext format")]
    Malformed,
    #[error("stored value was encrypted with key {0:?}, which is not in the key ring")]
    UnknownKeyId(String),
    #[error("stored value failed authentication (tampered, wrong key or wrong row)")]
    Authentication,
}

struct RingKey {
    id: String,
    cipher: Aes256Gcm,
}

/// The encryption keys: the first one encrypts, all of them decrypt.
pub struct KeyRing {
    keys: Vec<RingKey>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|key| key.id.as_str()).collect();
        f.debug_struct("KeyRing").field("key_ids", &ids).finish()
    }
}

impl KeyRing {
    /// Parses `OAUTH_ENCRYPTION_KEY`: one key (id `k1`), or `id:key,id:key,…` with the primary first.
    /// A key is 32 bytes as base64 (standard or url-safe) or as 64 hex digits.
    pub fn parse(spec: &SecretString) -> Result<Self, KeyRingError> {
        let spec = spec.expose_secret().trim();
        if spec.is_empty() {
            return Err(KeyRingError::Empty);
        }
        let mut keys = Vec::new();
        for (position, entry) in spec.split(',').map(str::trim).enumerate() {
            let (id, material) = match entry.split_once(':') {
                Some((id, material)) => (id.trim(), material.trim()),
                None if position == 0 && !spec.contains(',') => ("k1", entry),
                None => return Err(KeyRingError::BadKeyId(position + 1)),
            };
            if id.is_empty()
                || id.len() > KEY_ID_MAX_LEN
                || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(KeyRingError::BadKeyId(position + 1));
            }
            if keys.iter().any(|key: &RingKey| key.id == id) {
                return Err(KeyRingError::DuplicateKeyId(id.to_owned()));
            }
            let bytes = decode_key(material).ok_or_else(|| KeyRingError::BadKey(id.to_owned()))?;
            keys.push(RingKey { id: id.to_owned(), cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&bytes)) });
        }
        Ok(Self { keys })
    }

    /// A fresh random key in the form `parse` accepts (base64).
    pub fn generate_key() -> String {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        STANDARD.encode(key)
    }

    /// The id of the key that encrypts.
    pub fn primary_key_id(&self) -> &str {
        &self.keys[0].id
    }

    /// The ids of every key of the ring, the primary first.
    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|key| key.id.as_str())
    }

    /// Encrypts `plaintext` with the primary key, bound to its column and row.
    pub fn encrypt(&self, plaintext: &str, aad: &Aad) -> String {
        let key = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = key
            .cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext.as_bytes(), aad: aad.as_bytes() })
            .expect("AES-GCM encryption cannot fail for inputs under 64 GiB");
        let mut blob = Vec::with_capacity(NONCE_LEN + sealed.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&sealed);
        format!("{FORMAT_VERSION}:{}:{}", key.id, URL_SAFE_NO_PAD.encode(blob))
    }

    /// Decrypts a value made by `encrypt` with any key of the ring.
    pub fn decrypt(&self, stored: &str, aad: &Aad) -> Result<SecretString, CipherError> {
        let mut parts = stored.splitn(3, ':');
        let (Some(FORMAT_VERSION), Some(key_id), Some(encoded)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(CipherError::Malformed);
        };
        let key = self
            .keys
            .iter()
            .find(|key| key.id == key_id)
            .ok_or_else(|| CipherError::UnknownKeyId(key_id.to_owned()))?;
        let blob = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| CipherError::Malformed)?;
        if blob.len() < NONCE_LEN + 16 {
            return Err(CipherError::Malformed);
        }
        let (nonce, sealed) = blob.split_at(NONCE_LEN);
        let plaintext = key
            .cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad: aad.as_bytes() })
            .map_err(|_| CipherError::Authentication)?;
        String::from_utf8(plaintext).map(SecretString::from).map_err(|_| CipherError::Authentication)
    }
}

fn decode_key(material: &str) -> Option<Vec<u8>> {
    let bytes = if material.len() == 64 && material.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(material).ok()?
    } else {
        STANDARD.decode(material).or_else(|_| URL_SAFE_NO_PAD.decode(material.trim_end_matches('='))).ok()?
    };
    (bytes.len() == 32).then_some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> Aad {
        Aad::code_verifier("row")
    }

    fn ring(spec: &str) -> KeyRing {
        KeyRing::parse(&SecretString::from(spec)).expect("valid key ring")
    }

    #[test]
    fn round_trip_returns_the_plaintext() {
        let keys = ring(&KeyRing::generate_key());
        let aad = Aad::access_token(7, "google");
        let stored = keys.encrypt("ya29.secret", &aad);
        assert!(stored.starts_with("v1:k1:"));
        assert!(!stored.contains("ya29.secret"));
        assert_eq!(keys.decrypt(&stored, &aad).unwrap().expose_secret(), "ya29.secret");
    }

    #[test]
    fn each_encryption_uses_a_fresh_nonce() {
        let keys = ring(&KeyRing::generate_key());
        assert_ne!(keys.encrypt("same", &row()), keys.encrypt("same", &row()));
    }

    #[test]
    fn a_tampered_value_fails_authentication() {
        let keys = ring(&KeyRing::generate_key());
        let stored = keys.encrypt("secret", &row());
        let (head, body) = stored.rsplit_once(':').unwrap();
        let mut bytes = URL_SAFE_NO_PAD.decode(body).unwrap();
        bytes[NONCE_LEN + 1] ^= 0x01;
        let tampered = format!("{head}:{}", URL_SAFE_NO_PAD.encode(bytes));
        assert_eq!(keys.decrypt(&tampered, &row()).unwrap_err(), CipherError::Authentication);
    }

    #[test]
    fn a_value_moved_to_another_row_or_column_does_not_decrypt() {
        let keys = ring(&KeyRing::generate_key());
        let stored = keys.encrypt("secret", &Aad::access_token(1, "google"));
        let other_row = Aad::access_token(2, "google");
        let other_column = Aad::refresh_token(1, "google");
        assert_eq!(keys.decrypt(&stored, &other_row).unwrap_err(), CipherError::Authentication);
        assert_eq!(keys.decrypt(&stored, &other_column).unwrap_err(), CipherError::Authentication);
    }

    #[test]
    fn an_unknown_key_id_is_named_in_the_error() {
        let old = ring(&format!("old:{}", KeyRing::generate_key()));
        let new = ring(&format!("new:{}", KeyRing::generate_key()));
        let stored = old.encrypt("secret", &row());
        assert_eq!(new.decrypt(&stored, &row()).unwrap_err(), CipherError::UnknownKeyId("old".into()));
    }

    #[test]
    fn a_wrong_key_with_the_same_id_fails_authentication() {
        let one = ring(&KeyRing::generate_key());
        let other = ring(&KeyRing::generate_key());
        let stored = one.encrypt("secret", &row());
        assert_eq!(other.decrypt(&stored, &row()).unwrap_err(), CipherError::Authentication);
    }

    #[test]
    fn rotation_keeps_old_values_readable_and_encrypts_with_the_new_primary() {
        let old_key = KeyRing::generate_key();
        let before = ring(&format!("k1:{old_key}"));
        let stored_before = before.encrypt("old secret", &row());

        let after = ring(&format!("k2:{},k1:{old_key}", KeyRing::generate_key()));
        assert_eq!(after.primary_key_id(), "k2");
        assert_eq!(after.decrypt(&stored_before, &row()).unwrap().expose_secret(), "old secret");
        assert!(after.encrypt("new secret", &row()).starts_with("v1:k2:"));
    }

    #[test]
    fn malformed_values_are_rejected_without_panicking() {
        let keys = ring(&KeyRing::generate_key());
        for bad in ["", "v1", "v1:k1", "v2:k1:AAAA", "v1:k1:!!!", "v1:k1:AAAA"] {
            assert_eq!(keys.decrypt(bad, &row()).unwrap_err(), CipherError::Malformed, "{bad:?}");
        }
    }

    #[test]
    fn key_specs_are_validated() {
        let parse = |spec: &str| KeyRing::parse(&SecretString::from(spec)).map(|_| ());
        assert_eq!(parse(""), Err(KeyRingError::Empty));
        assert_eq!(parse("c2hvcnQ="), Err(KeyRingError::BadKey("k1".into())));
        assert_eq!(parse(&"ab".repeat(32)), Ok(()));
        let key = KeyRing::generate_key();
        assert_eq!(parse(&format!("a:{key},a:{key}")), Err(KeyRingError::DuplicateKeyId("a".into())));
        assert_eq!(parse(&format!("bad id:{key}")), Err(KeyRingError::BadKeyId(1)));
    }

    #[test]
    fn a_reversed_entry_does_not_echo_the_key() {
        let key = KeyRing::generate_key();
        let error = KeyRing::parse(&SecretString::from(format!("{key}:k1"))).err().unwrap();
        assert_eq!(error, KeyRingError::BadKeyId(1));
        assert!(!error.to_string().contains(&key), "{error}");
    }

    #[test]
    fn a_43_character_verifier_fits_the_128_character_column() {
        let keys = ring(&format!("{}:{}", "k".repeat(KEY_ID_MAX_LEN), KeyRing::generate_key()));
        let verifier = crate::crypto::random_token(32);
        assert_eq!(verifier.len(), 43);
        assert!(keys.encrypt(&verifier, &row()).len() <= 128);
    }
}
