//! Key rotation: re-encrypting every stored secret under the key ring's primary key, while the
//! service serves, so old keys can leave the ring; and the check that a key about to leave is no
//! longer used.
//!
//! Rotation is resumable by construction: it rewrites only values not yet under the primary key,
//! batch by batch in id order, so running it again continues where it stopped. Each rewrite is a
//! compare-and-swap on the values it read, so a refresh or reconnect writing the same row meanwhile
//! (whose new values are already under the primary key) wins, and nothing is lost.

use crate::crypto::{Aad, KeyRing};
use crate::store::{Store, StoreResult, TokenSecrets, VerifierSecret};

/// What a rotation did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rotation {
    /// Values rewritten under the primary key.
    pub rewritten: u64,
    /// Rows another writer changed meanwhile: their new values are the writer's.
    pub changed_meanwhile: u64,
    /// Values that decrypt with no key of the ring (left as they are, and logged).
    pub undecryptable: u64,
}

/// How many stored secrets each key of `keys` encrypts, and how many no key of it does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyUsage {
    pub by_key: Vec<(String, i64)>,
    /// Secrets under keys that are not in the ring: they cannot be read.
    pub under_unknown_keys: i64,
}

/// Counts the stored secrets per key id of the ring.
pub async fn usage(store: &dyn Store, keys: &KeyRing) -> StoreResult<KeyUsage> {
    let total = store.secrets_under(None).await?;
    let mut by_key = Vec::new();
    for id in keys.key_ids() {
        by_key.push((id.to_owned(), store.secrets_under(Some(id)).await?));
    }
    let known: i64 = by_key.iter().map(|(_, count)| count).sum();
    Ok(KeyUsage { by_key, under_unknown_keys: total - known })
}

/// Why a key may not leave the ring yet.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RetireRefusal {
    #[error("{0:?} is the primary key: it encrypts everything new; put another key first")]
    Primary(String),
    #[error("{0:?} is not in OAUTH_ENCRYPTION_KEY")]
    Unknown(String),
    #[error("{key:?} still encrypts {count} stored secrets; run `oauth-manager rotate-keys` first")]
    InUse { key: String, count: i64 },
}

/// Whether `key_id` can be removed from the ring: not the primary, and no stored secret uses it.
pub async fn check_retire(
    store: &dyn Store,
    keys: &KeyRing,
    key_id: &str,
) -> anyhow::Result<Result<(), RetireRefusal>> {
    if keys.primary_key_id() == key_id {
        return Ok(Err(RetireRefusal::Primary(key_id.to_owned())));
    }
    if !keys.key_ids().any(|id| id == key_id) {
        return Ok(Err(RetireRefusal::Unknown(key_id.to_owned())));
    }
    let count = store.secrets_under(Some(key_id)).await?;
    Ok(if count > 0 { Err(RetireRefusal::InUse { key: key_id.to_owned(), count }) } else { Ok(()) })
}

/// Re-encrypts every stored secret not under the primary key, `batch` rows at a time, telling
/// `progress` how many values are done after each batch.
pub async fn rotate(
    store: &dyn Store,
    keys: &KeyRing,
    batch: i64,
    progress: &(dyn Fn(u64) + Sync),
) -> StoreResult<Rotation> {
    let primary = keys.primary_key_id().to_owned();
    let mut done = Rotation::default();
    let mut after = 0;
    loop {
        let rows = store.tokens_not_under(&primary, after, batch).await?;
        let Some(last) = rows.last() else { break };
        after = last.id;
        for row in &rows {
            rotate_token(store, keys, row, &mut done).await?;
        }
        progress(done.rewritten + done.changed_meanwhile + done.undecryptable);
    }
    let mut after = 0;
    loop {
        let rows = store.verifiers_not_under(&primary, after, batch).await?;
        let Some(last) = rows.last() else { break };
        after = last.id;
        for row in &rows {
            rotate_verifier(store, keys, row, &mut done).await?;
        }
        progress(done.rewritten + done.changed_meanwhile + done.undecryptable);
    }
    Ok(done)
}

/// `value` under the primary key: `None` when it already is, or does not decrypt (counted).
fn reencrypted(keys: &KeyRing, value: &str, aad: &Aad, done: &mut Rotation) -> Option<String> {
    if value.starts_with(&format!("v1:{}:", keys.primary_key_id())) {
        return None;
    }
    match keys.decrypt(value, aad) {
        Ok(plaintext) => Some(keys.encrypt(secrecy::ExposeSecret::expose_secret(&plaintext), aad)),
        Err(error) => {
            tracing::error!(error = %error, "a stored secret does not decrypt with any key of the ring; left as it is");
            done.undecryptable += 1;
            None
        }
    }
}

async fn rotate_token(store: &dyn Store, keys: &KeyRing, row: &TokenSecrets, done: &mut Rotation) -> StoreResult<()> {
    let access_aad = Aad::access_token(row.user_id, &row.provider);
    let refresh_aad = Aad::refresh_token(row.user_id, &row.provider);
    let access = reencrypted(keys, &row.access_token, &access_aad, done);
    let refresh = row.refresh_token.as_deref().and_then(|value| reencrypted(keys, value, &refresh_aad, done));
    let rewrites = u64::from(access.is_some()) + u64::from(refresh.is_some());
    if rewrites == 0 {
        return Ok(());
    }
    let access = access.unwrap_or_else(|| row.access_token.clone());
    let refresh = refresh.or_else(|| row.refresh_token.clone());
    if store.reencrypt_token(row, &access, refresh.as_deref()).await? {
        done.rewritten += rewrites;
    } else {
        done.changed_meanwhile += 1;
    }
    Ok(())
}

async fn rotate_verifier(
    store: &dyn Store,
    keys: &KeyRing,
    row: &VerifierSecret,
    done: &mut Rotation,
) -> StoreResult<()> {
    let Some(verifier) = reencrypted(keys, &row.code_verifier, &Aad::code_verifier(&row.state_token), done) else {
        return Ok(());
    };
    if store.reencrypt_verifier(row, &verifier).await? {
        done.rewritten += 1;
    } else {
        done.changed_meanwhile += 1;
    }
    Ok(())
}
