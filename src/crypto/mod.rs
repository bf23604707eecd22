//! Encryption of secrets at rest and the small hashing helpers around it.

mod cipher;
mod random;

pub use cipher::{CipherError, KeyRing, KeyRingError, column};
pub use random::{random_token, sha256_hex};
