//! Service API keys of backends (`OAUTH_SERVICE_API_KEYS`), compared in constant time.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// SHA-256 digests of the configured keys; plain keys are hashed on load and never kept.
#[derive(Clone, Default)]
pub struct ServiceKeys {
    digests: Vec<[u8; 32]>,
}

impl std::fmt::Debug for ServiceKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServiceKeys({} configured)", self.digests.len())
    }
}

impl ServiceKeys {
    /// Parses a comma-separated list of keys, each plain or `sha256:<64 hex digits>`.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut digests = Vec::new();
        for (index, entry) in spec.split(',').map(str::trim).enumerate() {
            if entry.is_empty() {
                continue;
            }
            let digest = match entry.strip_prefix("sha256:") {
                Some(hex_digest) => {
                    let bytes = hex::decode(hex_digest)
                        .ok()
                        .filter(|bytes| bytes.len() == 32)
                        .ok_or_else(|| format!("entry {} is not sha256: followed by 64 hex digits", index + 1))?;
                    bytes.try_into().expect("length checked")
                }
                None if entry.len() < 16 => {
                    return Err(format!("entry {} is shorter than 16 characters", index + 1));
                }
                None => Sha256::digest(entry.as_bytes()).into(),
            };
            digests.push(digest);
        }
        Ok(Self { digests })
    }

    /// How many keys are configured.
    pub fn len(&self) -> usize {
        self.digests.len()
    }

    /// Whether no key is configured (then no backend can fetch tokens).
    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// The index of the key matching `presented`, comparing against every key in constant time.
    pub fn find(&self, presented: &str) -> Option<usize> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for (index, candidate) in self.digests.iter().enumerate() {
            if bool::from(candidate.ct_eq(&digest)) && found.is_none() {
                found = Some(index);
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_hashed_keys_both_match() {
        let hashed = hex::encode(Sha256::digest(b"second-service-key-000"));
        let keys = ServiceKeys::parse(&format!("first-service-key-000, sha256:{hashed}")).unwrap();
        assert_eq!(keys.find("first-service-key-000"), Some(0));
        assert_eq!(keys.find("second-service-key-000"), Some(1));
        assert_eq!(keys.find("first-service-key-001"), None);
        assert_eq!(keys.find(""), None);
    }

    #[test]
    fn malformed_entries_are_refused() {
        assert!(ServiceKeys::parse("sha256:abcd").is_err());
        assert!(ServiceKeys::parse("short").is_err());
        assert!(ServiceKeys::parse("").unwrap().is_empty());
    }
}
