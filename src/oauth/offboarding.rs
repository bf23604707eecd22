//! Offboarding and data rights: everything stored about a user, exported (never a token), and
//! erased. The host application cannot delete a user who has `oauth_*` rows (its foreign keys
//! have no cascade); after `erase` it can.
//!
//! An erasure first disconnects every live integration through `disconnect` (the grant revoked
//! at its provider under the refresh lock, as a user's own disconnect does; the outcome reported
//! per integration), then deletes the user's rows from the tables in one transaction. What it
//! leaves: the `users` row (the host application's), and an `info` log line with the user id and
//! the counts (the audit rows that would record it are the user's, and are deleted).

use chrono::{NaiveDateTime, Utc};

use super::Vault;
use super::disconnect::disconnect;
use crate::store::{
    AuditEvent, AuditQuery, ClientInfo, Consent, ErasedRows, Integration, IntegrationFilter, IntegrationStatus,
    ProviderRevocation, StoreError, StoreResult,
};

/// Audit events read per page while exporting.
const AUDIT_PAGE: i64 = 200;

/// Everything stored about one user.
#[derive(Debug)]
pub struct UserData {
    pub user_id: i32,
    pub exported_at: NaiveDateTime,
    pub integrations: Vec<Integration>,
    pub consents: Vec<Consent>,
    /// Newest first, all of them.
    pub audit: Vec<AuditEvent>,
    /// Authorizations started and not finished or expired yet: (provider, expires_at).
    pub open_flows: i64,
}

/// Reads everything stored about `user_id`. Tokens are not part of it: they are the provider's
/// credentials for this service, not data about the user.
pub async fn export(vault: &Vault, user_id: i32) -> StoreResult<UserData> {
    let store = vault.store.as_ref();
    let all = IntegrationFilter { provider: None, active_only: false };
    let integrations = store.list_integrations(user_id, &all).await?;
    let consents = store.list_consents(user_id).await?;
    let mut audit = Vec::new();
    let mut before_id = None;
    loop {
        let query = AuditQuery {
            user_id: Some(user_id),
            integration_id: None,
            action: None,
            since: None,
            until: None,
            before_id,
            limit: AUDIT_PAGE,
        };
        let page = store.list_audit(&query).await?;
        let full = page.len() as i64 == AUDIT_PAGE;
        before_id = page.last().map(|event| event.id);
        audit.extend(page);
        if !full {
            break;
        }
    }
    let (open_flows, _) = store.open_states(user_id, Utc::now().naive_utc()).await?;
    Ok(UserData { user_id, exported_at: Utc::now().naive_utc(), integrations, consents, audit, open_flows })
}

/// What happened to one integration of an erased user.
#[derive(Debug)]
pub struct ErasedIntegration {
    pub integration_id: i32,
    pub provider: String,
    /// How revoking at the provider went (`NothingToRevoke`: it was disconnected before).
    pub revocation: ProviderRevocation,
}

/// A finished erasure.
#[derive(Debug)]
pub struct Erasure {
    pub user_id: i32,
    pub integrations: Vec<ErasedIntegration>,
    pub deleted: ErasedRows,
}

/// Revokes every grant of `user_id` at its provider, then deletes the user's rows from the
/// `oauth_*` tables in one transaction. Safe to repeat: a second call finds nothing.
pub async fn erase(vault: &Vault, user_id: i32, client: &ClientInfo) -> StoreResult<Erasure> {
    let mut integrations: Vec<ErasedIntegration> = Vec::new();
    // A connect that commits between the disconnects and the erasure makes it refuse: disconnect
    // again and retry (a few times: each round needs a new connect to finish in its gap).
    for _ in 0..ERASE_ATTEMPTS {
        disconnect_all(vault, user_id, client, &mut integrations).await?;
        // Hand-outs counted but not yet written would write rows for the user again.
        vault.usage.forget_user(user_id);
        if let Some(deleted) = vault.store.erase_user(user_id).await? {
            vault.usage.forget_user(user_id);
            tracing::info!(
                user_id,
                integrations = deleted.integrations,
                audit_events = deleted.audit_events,
                "erased a user's oauth data"
            );
            return Ok(Erasure { user_id, integrations, deleted });
        }
    }
    Err(StoreError::Busy)
}

/// Rounds of disconnect-then-erase before an erasure answers `busy`.
const ERASE_ATTEMPTS: usize = 3;

/// Disconnects every integration of `user_id` that is not revoked, adding each outcome to
/// `outcomes` (an integration already reported keeps its first outcome unless disconnected again).
async fn disconnect_all(
    vault: &Vault,
    user_id: i32,
    client: &ClientInfo,
    outcomes: &mut Vec<ErasedIntegration>,
) -> StoreResult<()> {
    let all = IntegrationFilter { provider: None, active_only: false };
    for integration in vault.store.list_integrations(user_id, &all).await? {
        let (integration_id, provider) = (integration.id, integration.provider.clone());
        let revocation = if integration.status == IntegrationStatus::Revoked {
            ProviderRevocation::NothingToRevoke
        } else {
            disconnect(vault, integration, "user_erased".to_owned(), client).await?.revocation
        };
        match outcomes.iter_mut().find(|known| known.integration_id == integration_id) {
            Some(known) if revocation != ProviderRevocation::NothingToRevoke => known.revocation = revocation,
            Some(_) => {}
            None => outcomes.push(ErasedIntegration { integration_id, provider, revocation }),
        }
    }
    Ok(())
}
