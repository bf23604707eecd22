//! Every store function, on PostgreSQL (built from existing_schema.sql) and on SQLite.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{Duration, NaiveDateTime, Timelike, Utc};
use oauth_manager::store::*;
use serde_json::json;

use crate::on_both_backends;
use crate::support::{Backend, store};

fn now() -> NaiveDateTime {
    // Microsecond precision: what both databases keep.
    let now = Utc::now().naive_utc();
    now.with_nanosecond(now.nanosecond() / 1000 * 1000).unwrap()
}

fn connect_record(user_id: i32, provider: &str, account: &str) -> ConnectRecord {
    ConnectRecord {
        state_id: None,
        user_id,
        provider: provider.into(),
        provider_user_id: Some(account.into()),
        scopes: vec!["openid".into(), "email".into()],
        metadata: json!({"email": "a@example.com"}),
        access_token: "v1:k1:access-ciphertext".into(),
        refresh_token: Some("v1:k1:refresh-ciphertext".into()),
        token_type: "Bearer".into(),
        expires_at: now() + Duration::hours(1),
        scope: Some("openid email".into()),
        client: ClientInfo { ip_address: Some("203.0.113.7".parse().unwrap()), user_agent: Some("tests".into()) },
        consent_version: "1.0".into(),
        duration_ms: 12,
        now: now(),
    }
}

fn state_for(user_id: i32, hash: &str, expires_in: Duration) -> NewState {
    NewState {
        state_hash: hash.into(),
        user_id,
        provider: "google".into(),
        scopes: vec!["openid".into()],
        redirect_uri: "http://localhost/cb".into(),
        code_verifier: Some("v1:k1:verifier".into()),
        code_challenge: Some("challenge".into()),
        metadata: json!({"nonce": "n"}),
        created_at: now(),
        expires_at: now() + expires_in,
    }
}

async fn users_are_created_and_found(backend: Backend) {
    let store = store(backend).await;
    let id = store.create_user("u@example.com").await.unwrap();
    assert_eq!(store.find_user("u@example.com").await.unwrap(), Some(id));
    assert_eq!(store.find_user("nobody@example.com").await.unwrap(), None);
}

async fn scope_catalogue_upserts(backend: Backend) {
    let store = store(backend).await;
    let mut scope = ScopeEntry {
        name: "openid".into(),
        display_name: "Identity".into(),
        description: "d".into(),
        category: "identity".into(),
        required: true,
        dangerous: false,
    };
    store.seed_scopes("google", std::slice::from_ref(&scope)).await.unwrap();
    scope.display_name = "Sign-in".into();
    store.seed_scopes("google", std::slice::from_ref(&scope)).await.unwrap();
    assert_eq!(store.list_scopes("google").await.unwrap(), vec![scope]);
    assert!(matches!(store.seed_scopes("gitlab", &[]).await, Ok(())));
}

async fn a_provider_outside_the_check_constraint_is_refused(backend: Backend) {
    let store = store(backend).await;
    let user = store.create_user("u@example.com").await.unwrap();
    let mut record = connect_record(user, "google", "acct");
    record.provider = "gitlab".into();
    assert!(matches!(store.complete_connect(&record).await, Err(StoreError::ProviderNotAllowed)));
}

async fn states_are_single_use_and_expire(backend: Backend) {
    let store = store(backend).await;
    let user = store.create_user("u@example.com").await.unwrap();
    store.insert_state(&state_for(user, "hash-live", Duration::minutes(10))).await.unwrap();
    store.insert_state(&state_for(user, "hash-old", Duration::minutes(-1))).await.unwrap();

    let live = store.find_state("hash-live").await.unwrap().unwrap();
    assert_eq!(live.user_id, user);
    assert_eq!(live.code_verifier.as_deref(), Some("v1:k1:verifier"));
    assert_eq!(live.metadata["nonce"], "n");
    assert!(store.consume_state(live.id, now()).await.unwrap());
    assert!(!store.consume_state(live.id, now()).await.unwrap(), "second use refused");
    assert!(store.find_state("hash-live").await.unwrap().unwrap().is_used);

    let old = store.find_state("hash-old").await.unwrap().unwrap();
    assert!(!store.consume_state(old.id, now()).await.unwrap(), "expired state refused");
    assert_eq!(store.delete_expired_states(now()).await.unwrap(), 1);
    assert!(store.find_state("hash-old").await.unwrap().is_none());
    assert!(store.find_state("unknown").await.unwrap().is_none());
}

async fn an_unknown_user_is_a_typed_error(backend: Backend) {
    let store = store(backend).await;
    let result = store.insert_state(&state_for(4242, "h", Duration::minutes(10))).await;
    assert!(matches!(result, Err(StoreError::UnknownUser)), "{result:?}");
    let result = store.complete_connect(&connect_record(4242, "google", "acct")).await;
    assert!(matches!(result, Err(StoreError::UnknownUser)), "{result:?}");
}

async fn connect_writes_integration_token_consent_and_audit(backend: Backend) {
    let store = store(backend).await;
    let user = store.create_user("u@example.com").await.unwrap();
    let integration = store.complete_connect(&connect_record(user, "google", "acct-1")).await.unwrap();
    assert_eq!(integration.status, IntegrationStatus::Active);
    assert_eq!(integration.scopes, ["openid", "email"]);
    assert_eq!(integration.provider_metadata.as_ref().unwrap()["email"], "a@example.com");
    assert!(integration.has_refresh_token);

    let token = store.get_token(integration.id).await.unwrap().unwrap();
    assert_eq!(token.access_token, "v1:k1:access-ciphertext");
    assert_eq!(token.user_id, user);
    let by_owner = store.find_token_by_owner(user, "google").await.unwrap().unwrap();
    assert_eq!(by_owner.integration_id, integration.id);
    assert!(store.find_token_by_owner(user, "notion").await.unwrap().is_none());

    let consents = store.list_consents(user).await.unwrap();
    assert_eq!(consents.len(), 1);
    assert_eq!(consents[0].ip_address.as_deref(), Some("203.0.113.7"));
    let audit = store.list_audit(&AuditQuery { user_id: Some(user), limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].action, "connect");
    assert_eq!(audit[0].duration_ms, Some(12));
}

async fn reconnecting_updates_the_one_integration_row(backend: Backend) {
    let store = store(backend).await;
    let user = store.create_user("u@example.com").await.unwrap();
    let first = store.complete_connect(&connect_record(user, "google", "acct-1")).await.unwrap();

    // Same account, no new refresh token (Google without prompt=consent): the old one is kept.
    let mut again = connect_record(user, "google", "acct-1");
    again.refresh_token = None;
    again.access_token = "v1:k1:second-access".into();
    let second = store.complete_connect(&again).await.unwrap();
    assert_eq!(second.id, first.id);
    let token = store.get_token(first.id).await.unwrap().unwrap();
    assert_eq!(token.access_token, "v1:k1:second-access");
    assert_eq!(token.refresh_token.as_deref(), Some("v1:k1:refresh-ciphertext"));

    // Another account of the same provider: the old account's refresh token must not survive.
    let mut other = connect_record(user, "google", "acct-2");
    other.refresh_token = None;
    store.complete_connect(&other).await.unwrap();
    assert_eq!(store.get_token(first.id).await.unwrap().unwrap().refresh_token, None);
    let all = store.list_integrations(user, &IntegrationFilter::default()).await.unwrap();
    assert_eq!(all.len(), 1, "one integration per user and provider");
    assert_eq!(store.list_consents(user).await.unwrap().len(), 3, "a consent row per grant");
}

async fn listing_filters_by_provider_and_activity(backend: Backend) {
    let store = store(backend).await;
    let user = store.create_user("u@example.com").await.unwrap();
    let other_user = store.create_user("v@example.com").await.unwrap();
    let google = store.complete_connect(&connect_record(user, "google", "a")).await.unwrap();
    store.complete_connect(&connect_record(user, "notion", "b")).await.unwrap();
    store.complete_connect(&connect_record(other_user, "google", "c")).await.unwrap();
    let revoke = RevokeRecord {
        reason: "user".into(),
        provider_revocation: ProviderRevocation::Revoked,
        client: ClientInfo::default(),
        duration_ms: 1,
        now: now(),
    };
    store.revoke_integration(google.id, &revoke).await.unwrap();

    let active = IntegrationFilter { provider: None, active_only: true };
    let names: Vec<String> =
        store.list_integrations(user, &active).await.unwrap().into_iter().map(|i| i.provider).collect();
    assert_eq!(names, ["notion"]);
    let everything = IntegrationFilter { provider: None, active_only: false };
    assert_eq!(store.list_integrations(user, &everything).await.unwrap().len(), 2);
    let only_google = IntegrationFilter { provider: Some("google".into()), active_only: false };
    let listed = store.list_integrations(user, &only_google).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].status, IntegrationStatus::Revoked);
    assert_eq!(store.get_integration(google.id).await.unwrap().unwrap().user_id, user);
    assert!(store.get_integration(999_999).await.unwrap().is_none());
}

fn refreshed(access: &str, refresh: Option<&str>) -> RefreshStep {
    RefreshStep::Refreshed(RefreshedTokens {
        access_token: access.into(),
        refresh_token: refresh.map(Into::into),
        token_type: "Bearer".into(),
        expires_at: now() + Duration::hours(1),
        scope: None,
        scopes: Some(vec!["openid".into()]),
    })
}

fn audit() -> RefreshAudit {
    RefreshAudit { client: ClientInfo::default(), duration_ms: 5, reason: "test" }
}

/// One refresh as the service runs it: take the lock, decide, commit the decision.
async fn refresh(store: &Arc<dyn Store>, id: i32, step: RefreshStep) -> StoreResult<RefreshWrite> {
    let refresh = store.begin_refresh(id).await?;
    refresh.commit(&step, &audit()).await
}

async fn refresh_stores_rotated_tokens_and_records_it(backend: Backend) {
    let store = store(backend).await;
    let user = store.create_user("u@example.com").await.unwrap();
    let integration = store.complete_connect(&connect_record(user, "microsoft", "a")).await.unwrap();

    refresh(&store, integration.id, refreshed("v1:k1:new-access", Some("v1:k1:new-refresh"))).await.unwrap();
    let token = store.get_token(integration.id).await.unwrap().unwrap();
    assert_eq!(token.access_token, "v1:k1:new-access");
    assert_eq!(token.refresh_token.as_deref(), Some("v1:k1:new-refresh"));
    assert_eq!(store.get_integration(integration.id).await.unwrap().unwrap().scopes, ["openid"]);

    // A provider that does not rotate: the stored refresh token is kept.
    refresh(&store, integration.id, refreshed("v1:k1:third-access", None)).await.unwrap();
    let token = store.get_token(integration.id).await.unwrap().unwrap();
    assert_eq!(token.refresh_token.as_deref(), Some("v1:k1:new-refresh"));

    // Nothing to do: nothing written.
    refresh(&store, integration.id, RefreshStep::AlreadyFresh).await.unwrap();
    let query = AuditQuery { action: Some(AuditAction::Refresh), user_id: Some(user), limit: 10, ..Default::default() };
    assert_eq!(store.list_audit(&query).await.unwrap().len(), 2);
}

async fn a_dead_grant_marks_the_integration_for_reauthorisation(backend: Backend) {
    let store = store(backend).await;
    let user = store.create_user("u@example.com").await.unwrap();
    let integration = store.complete_connect(&connect_record(user, "google", "a")).await.unwrap();
    let failure = RefreshStep::Failed(RefreshFailure { needs_reauth: true, message: "invalid_grant".into() });
    refresh(&store, integration.id, failure).await.unwrap();
    let after = store.get_integration(integration.id).await.unwrap().unwrap();
    assert_eq!(after.status, IntegrationStatus::Error);
    assert_eq!(after.error_message.as_deref(), Some("invalid_grant"));
    assert_eq!(after.error_count, 1);
    let errors = store
        .list_audit(&AuditQuery {
            action: Some(AuditAction::Error),
            user_id: Some(user),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(errors.len(), 1);
    assert!(!errors[0].success);
}

async fn refresh_of_a_missing_integration_is_not_found(backend: Backend) {
    let store = store(backend).await;
    let result = store.begin_refresh(12345).await;
    assert!(matches!(result, Err(StoreError::NotFound)));
}

async fn concurrent_refreshes_of_one_integration_run_one_at_a_time(backend: Backend) {
    let store = store(backend).await;
    let user = store.create_user("u@example.com").await.unwrap();
    let integration = store.complete_connect(&connect_record(user, "google", "a")).await.unwrap();
    let inside = Arc::new(AtomicUsize::new(0));
    let most_inside = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (store, inside, most_inside) = (store.clone(), inside.clone(), most_inside.clone());
        tasks.push(tokio::spawn(async move {
            let refresh = store.begin_refresh(integration.id).await.unwrap();
            let now_inside = inside.fetch_add(1, Ordering::SeqCst) + 1;
            most_inside.fetch_max(now_inside, Ordering::SeqCst);
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            inside.fetch_sub(1, Ordering::SeqCst);
            refresh.commit(&RefreshStep::AlreadyFresh, &audit()).await.unwrap()
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(most_inside.load(Ordering::SeqCst), 1);
}

async fn expiring_integrations_are_found_for_the_refresher(backend: Backend) {
    let store = store(backend).await;
    let user = store.create_user("u@example.com").await.unwrap();
    let mut soon = connect_record(user, "google", "a");
    soon.expires_at = now() + Duration::minutes(2);
    let soon = store.complete_connect(&soon).await.unwrap();
    let mut later = connect_record(user, "notion", "b");
    later.expires_at = now() + Duration::hours(5);
    store.complete_connect(&later).await.unwrap();
    let mut no_refresh = connect_record(user, "microsoft", "c");
    no_refresh.refresh_token = None;
    no_refresh.expires_at = now() + Duration::minutes(1);
    store.complete_connect(&no_refresh).await.unwrap();
    assert_eq!(store.integrations_expiring_before(now() + Duration::minutes(5), None, 10).await.unwrap(), [soon.id]);
}

async fn revoking_deletes_tokens_revokes_consents_and_is_idempotent(backend: Backend) {
    let store = store(backend).await;
    let user = store.create_user("u@example.com").await.unwrap();
    let integration = store.complete_connect(&connect_record(user, "google", "a")).await.unwrap();
    let record = RevokeRecord {
        reason: "user_request".into(),
        provider_revocation: ProviderRevocation::Failed("provider said 503".into()),
        client: ClientInfo::default(),
        duration_ms: 3,
        now: now(),
    };
    assert!(store.revoke_integration(integration.id, &record).await.unwrap());
    assert!(store.get_token(integration.id).await.unwrap().is_none());
    assert_eq!(store.get_integration(integration.id).await.unwrap().unwrap().status, IntegrationStatus::Revoked);
    let consents = store.list_consents(user).await.unwrap();
    assert!(consents[0].is_revoked);
    assert_eq!(consents[0].revoked_reason.as_deref(), Some("user_request"));
    let actions: Vec<String> = store
        .list_audit(&AuditQuery { user_id: Some(user), limit: 10, ..Default::default() })
        .await
        .unwrap()
        .into_iter()
        .map(|event| format!("{}:{}", event.action, event.success))
        .collect();
    assert_eq!(actions, ["disconnect:true", "revoke:false", "connect:true"]);

    assert!(!store.revoke_integration(integration.id, &record).await.unwrap(), "second revoke writes nothing");
    assert_eq!(
        store.list_audit(&AuditQuery { user_id: Some(user), limit: 10, ..Default::default() }).await.unwrap().len(),
        3
    );
    assert!(matches!(store.revoke_integration(999_999, &record).await, Err(StoreError::NotFound)));
}

async fn audit_listing_filters_and_pages(backend: Backend) {
    let store = store(backend).await;
    let user = store.create_user("u@example.com").await.unwrap();
    let other = store.create_user("v@example.com").await.unwrap();
    for (who, action) in [
        (user, AuditAction::Connect),
        (user, AuditAction::Error),
        (user, AuditAction::Error),
        (other, AuditAction::Error),
    ] {
        store
            .record_audit(&AuditEntry {
                integration_id: None,
                user_id: who,
                action,
                provider: "google".into(),
                scopes: Some(vec!["openid".into()]),
                client: ClientInfo { ip_address: Some("::1".parse().unwrap()), user_agent: None },
                success: action != AuditAction::Error,
                error_message: None,
                duration_ms: None,
                metadata: Some(json!({"k": "v"})),
                details: None,
                created_at: now(),
            })
            .await
            .unwrap();
    }
    let mine = AuditQuery { user_id: Some(user), limit: 2, ..Default::default() };
    let page_one = store.list_audit(&mine).await.unwrap();
    assert_eq!(page_one.len(), 2);
    assert!(page_one[0].id > page_one[1].id, "newest first");
    assert_eq!(page_one[0].scopes.as_deref(), Some(&["openid".to_owned()][..]));
    assert_eq!(page_one[0].action_metadata.as_ref().unwrap()["k"], "v");
    let page_two = store.list_audit(&AuditQuery { before_id: Some(page_one[1].id), ..mine.clone() }).await.unwrap();
    assert_eq!(page_two.len(), 1);
    assert_eq!(page_two[0].action, "connect");
    let errors = AuditQuery { action: Some(AuditAction::Error), limit: 10, ..Default::default() };
    assert_eq!(store.list_audit(&errors).await.unwrap().len(), 3, "administrators see every user");
    let future = AuditQuery { since: Some(now() + Duration::hours(1)), limit: 10, ..Default::default() };
    assert!(store.list_audit(&future).await.unwrap().is_empty());
    let past = AuditQuery { until: Some(now() - Duration::hours(1)), limit: 10, ..Default::default() };
    assert!(store.list_audit(&past).await.unwrap().is_empty());
}

async fn status_counts_group_by_provider_and_status(backend: Backend) {
    let store = store(backend).await;
    let user = store.create_user("u@example.com").await.unwrap();
    store.complete_connect(&connect_record(user, "google", "a")).await.unwrap();
    let notion = store.complete_connect(&connect_record(user, "notion", "b")).await.unwrap();
    let record = RevokeRecord {
        reason: "r".into(),
        provider_revocation: ProviderRevocation::NotSupported,
        client: ClientInfo::default(),
        duration_ms: 1,
        now: now(),
    };
    store.revoke_integration(notion.id, &record).await.unwrap();
    let counts = store.status_counts(user).await.unwrap();
    assert_eq!(counts.integrations, [("google".into(), "active".into(), 1), ("notion".into(), "revoked".into(), 1)]);
    assert_eq!((counts.total_consents, counts.revoked_consents), (2, 1));
}

async fn usage_is_counted_in_aggregate_and_saturates(backend: Backend) {
    let store = store(backend).await;
    let user = store.create_user("u@example.com").await.unwrap();
    let integration = store.complete_connect(&connect_record(user, "google", "a")).await.unwrap();
    let minute = now().with_second(0).unwrap().with_nanosecond(0).unwrap();
    let delta = |count: u64| UsageDelta {
        integration_id: integration.id,
        user_id: user,
        provider: "google".into(),
        minute,
        count,
        first_at: minute,
        last_at: minute + Duration::seconds(30),
    };
    store.flush_usage(&[delta(3)]).await.unwrap();
    store.flush_usage(&[delta(4)]).await.unwrap();
    let query = AuditQuery { action: Some(AuditAction::ApiCall), user_id: Some(user), limit: 10, ..Default::default() };
    let rows = store.list_audit(&query).await.unwrap();
    assert_eq!(rows.len(), 1, "one api_call row per integration and minute");
    assert_eq!(rows[0].details.as_ref().unwrap()["hand_outs"], 7);
    assert_eq!(rows[0].created_at, minute + Duration::seconds(30), "stamped at the last hand-out");
    let later = UsageDelta { last_at: minute + Duration::seconds(45), ..delta(1) };
    store.flush_usage(&[later]).await.unwrap();
    let rows = store.list_audit(&query).await.unwrap();
    assert_eq!(rows.len(), 1, "the same minute's row");
    assert_eq!(rows[0].created_at, minute + Duration::seconds(45), "moved to the minute's last hand-out");
    assert_eq!(rows[0].details.as_ref().unwrap()["hand_outs"], 8);

    store.flush_usage(&[delta(u64::MAX)]).await.unwrap();
    store.flush_usage(&[delta(5)]).await.unwrap();
    let (usage, last_used_at) = store.token_usage(integration.id).await.unwrap().unwrap();
    assert_eq!(usage, i32::MAX, "saturates instead of failing");
    assert_eq!(last_used_at, Some(minute + Duration::seconds(45)), "never moved backwards");
}

async fn migrations_create_a_usable_schema_on_an_empty_database(backend: Backend) {
    let url = match backend {
        Backend::Postgres => crate::support::fresh_postgres_database().await,
        Backend::Sqlite => crate::support::fresh_sqlite_url(),
    };
    let store: Arc<dyn Store> = match backend {
        Backend::Postgres => Arc::new(PgStore::connect(&url, 2).await.unwrap()),
        Backend::Sqlite => Arc::new(SqliteStore::connect(&url, 2).await.unwrap()),
    };
    store.migrate().await.unwrap();
    store.migrate().await.expect("migrating twice is harmless");
    let user = store.create_user("u@example.com").await.unwrap();
    let integration = store.complete_connect(&connect_record(user, "google", "a")).await.unwrap();
    assert!(store.get_token(integration.id).await.unwrap().is_some());
}

async fn a_refresh_finishing_after_a_disconnect_changes_nothing(backend: Backend) {
    let store = store(backend).await;
    let user = store.create_user("u@example.com").await.unwrap();
    let integration = store.complete_connect(&connect_record(user, "microsoft", "a")).await.unwrap();
    let id = integration.id;
    let refresh = store.begin_refresh(id).await.unwrap();
    // The user disconnects while the provider is answering the refresh.
    let record = RevokeRecord {
        reason: "user".into(),
        provider_revocation: ProviderRevocation::NotSupported,
        client: ClientInfo::default(),
        duration_ms: 1,
        now: now(),
    };
    assert!(store.revoke_integration(id, &record).await.unwrap());
    let write = refresh.commit(&refreshed("v1:k1:late-access", Some("v1:k1:late-refresh")), &audit()).await.unwrap();
    assert_eq!(write, RefreshWrite::DiscardedDisconnected, "the caller learns its new tokens belong to nobody");
    let after = store.get_integration(id).await.unwrap().unwrap();
    assert_eq!(after.status, IntegrationStatus::Revoked, "the late refresh does not revive it");
    assert!(store.get_token(id).await.unwrap().is_none(), "nor recreate its tokens");
}

async fn a_refresh_finishing_after_a_reconnect_keeps_the_new_connection(backend: Backend) {
    let store = store(backend).await;
    let user = store.create_user("u@example.com").await.unwrap();
    let integration = store.complete_connect(&connect_record(user, "google", "a")).await.unwrap();
    let refresh = store.begin_refresh(integration.id).await.unwrap();
    let mut again = connect_record(user, "google", "b");
    again.access_token = "v1:k1:reconnected-access".into();
    store.complete_connect(&again).await.unwrap();
    let old_grant = RefreshStep::Failed(RefreshFailure { needs_reauth: true, message: "old grant".into() });
    assert_eq!(refresh.commit(&old_grant, &audit()).await.unwrap(), RefreshWrite::DiscardedReconnected);
    let after = store.get_integration(integration.id).await.unwrap().unwrap();
    assert_eq!(after.status, IntegrationStatus::Active, "the old grant's failure does not mark the new one");
    assert_eq!(store.get_token(integration.id).await.unwrap().unwrap().access_token, "v1:k1:reconnected-access");
}

on_both_backends!(
    users_are_created_and_found,
    scope_catalogue_upserts,
    a_provider_outside_the_check_constraint_is_refused,
    states_are_single_use_and_expire,
    an_unknown_user_is_a_typed_error,
    connect_writes_integration_token_consent_and_audit,
    reconnecting_updates_the_one_integration_row,
    listing_filters_by_provider_and_activity,
    refresh_stores_rotated_tokens_and_records_it,
    a_dead_grant_marks_the_integration_for_reauthorisation,
    refresh_of_a_missing_integration_is_not_found,
    concurrent_refreshes_of_one_integration_run_one_at_a_time,
    a_refresh_finishing_after_a_disconnect_changes_nothing,
    a_refresh_finishing_after_a_reconnect_keeps_the_new_connection,
    expiring_integrations_are_found_for_the_refresher,
    revoking_deletes_tokens_revokes_consents_and_is_idempotent,
    audit_listing_filters_and_pages,
    status_counts_group_by_provider_and_status,
    usage_is_counted_in_aggregate_and_saturates,
    migrations_create_a_usable_schema_on_an_empty_database,
);

async fn one_unwritable_usage_entry_does_not_stop_counting_the_others(backend: Backend) {
    let store = store(backend).await;
    let user = store.create_user("u@example.com").await.unwrap();
    let integration = store.complete_connect(&connect_record(user, "google", "a")).await.unwrap();
    let recorder = oauth_manager::oauth::usage::UsageRecorder::default();
    let good = store.get_token(integration.id).await.unwrap().unwrap();
    let mut gone = good.clone();
    gone.integration_id = 999_999; // e.g. deleted by the host application
    recorder.record(&good);
    recorder.record(&gone);
    recorder.record(&good);
    recorder.flush(store.as_ref()).await;
    assert_eq!(store.token_usage(integration.id).await.unwrap().unwrap().0, 2);
    // The bad entry was dropped, not kept for ever-failing retries.
    assert_eq!(recorder.pending(), 0);
}

on_both_backends!(one_unwritable_usage_entry_does_not_stop_counting_the_others);

#[cfg(unix)]
#[tokio::test]
async fn the_sqlite_file_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let url = crate::support::fresh_sqlite_url();
    let store = SqliteStore::connect(&url, 2).await.unwrap();
    store.migrate().await.unwrap();
    let file = url.trim_start_matches("sqlite://");
    let mode = std::fs::metadata(file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "it holds ciphertexts, e-mail addresses and the audit trail");
}
