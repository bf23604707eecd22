//! Encryption of secrets at rest (the key ring and each secret's associated data) and the small
//! hashing helpers around it.

mod aad;
mod cipher;
mod random;

pub use aad::Aad;
pub use cipher::{CipherError, KeyRing, KeyRingError};
pub use random::{random_token, sha256_hex};
