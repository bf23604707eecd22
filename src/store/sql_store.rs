//! The store, written once for both databases: every operation's statements, transaction and
//! rules (`rules`), generic over the `Dialect`. Reading this file is reading both stores.
//!
//! The `where` clause on each impl lists the column types the store binds and reads; Rust does
//! not carry such bounds from a trait to its users (rust-lang/rust#20671), so each generic impl
//! states them.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{NaiveDateTime, Utc};
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Postgres, Sqlite, Transaction, Type};

use super::codecs::{IpAddress, JsonDoc, Scopes};
use super::dialect::{BackgroundTask, Dialect, RefreshHold};
use super::rows::{
    ApiCallRow, AuditRow, ConsentRow, IntegrationRow, RevokedIntegrationRow, ScopeRow, StateRow, TokenRow,
};
use super::token_cache::{TokenCache, TokenCacheLimits, TokenCacheState, TokenChange};
use super::{
    AuditEntry, AuditEvent, AuditQuery, ConnectRecord, Consent, DatabaseKind, ErasedRows, Integration,
    IntegrationFilter, NewState, NewWebhook, RefreshAudit, RefreshStep, RefreshTx, RefreshWrite, RevokeRecord,
    ScopeEntry, StateRecord, StatusCounts, Store, StoreError, StoreResult, StoredToken, TokenSecrets, UsageDelta,
    VerifierSecret, WebhookDelivery, rules, sql,
};

/// A Rust type that database `D` both binds and reads.
pub trait Codec<D: Database>: for<'q> Encode<'q, D> + for<'r> Decode<'r, D> + Type<D> {}

impl<D: Database, T> Codec<D> for T where T: for<'q> Encode<'q, D> + for<'r> Decode<'r, D> + Type<D> {}

/// The store on a pool of database `D`.
pub struct SqlStore<D: Dialect> {
    pool: Pool<D>,
    /// What serialises refreshes of one integration.
    refresh_locks: D::RefreshLocks,
    /// Where refresh outcomes are written, and how many at once.
    refresh_writers: Pool<D>,
    refresh_write_slots: u32,
    /// Tokens as stored, for hand-outs; never live unless `with_token_cache` made it so.
    cache: Arc<TokenCache>,
    /// Keeps `cache` live while every change is heard.
    _change_watch: Option<BackgroundTask>,
}

/// The production store.
pub type PgStore = SqlStore<Postgres>;
/// The embedded store.
pub type SqliteStore = SqlStore<Sqlite>;

impl<D: Dialect> SqlStore<D> {
    /// Connects a pool of `max_connections` to `url`.
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        let pool = D::connect(url, max_connections).await?;
        let cache = Arc::new(TokenCache::disabled());
        Ok(Self {
            refresh_locks: D::refresh_locks(&pool),
            refresh_writers: pool.clone(),
            // Half the pool, leaving the rest to the hand-out path.
            refresh_write_slots: (max_connections / 2).max(1),
            pool,
            cache,
            _change_watch: None,
        })
    }

    /// Writes refresh outcomes on `connections` of their own, where the database has them.
    pub fn with_refresh_writers(self, connections: u32) -> Self {
        match D::refresh_writer_pool(&self.pool, connections.max(1)) {
            Some(writers) => Self { refresh_writers: writers, refresh_write_slots: connections.max(1), ..self },
            None => self,
        }
    }

    /// Serves hand-outs from a cache within `limits`, live while this process hears every
    /// change (see `token_cache`). Without it, every hand-out reads the database.
    pub fn with_token_cache(self, limits: TokenCacheLimits) -> Self {
        let cache = Arc::new(TokenCache::new(limits));
        let change_watch = D::watch_changes(&self.pool, cache.clone());
        Self { cache, _change_watch: change_watch, ..self }
    }

    /// The underlying pool (tests and benchmarks).
    pub fn pool(&self) -> &Pool<D> {
        &self.pool
    }
}

impl<D> SqlStore<D>
where
    D: Dialect,
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
    D::Arguments: IntoArguments<D>,
    i32: Codec<D>,
    Option<i32>: Codec<D>,
    i64: Codec<D>,
    bool: Codec<D>,
    String: Codec<D>,
    Option<String>: Codec<D>,
    NaiveDateTime: Codec<D>,
    Option<NaiveDateTime>: Codec<D>,
    Scopes: Codec<D>,
    Option<Scopes>: Codec<D>,
    JsonDoc: Codec<D>,
    Option<JsonDoc>: Codec<D>,
    Option<IpAddress>: Codec<D>,
    &'static str: for<'q> Encode<'q, D> + Type<D>,
    Option<&'static str>: for<'q> Encode<'q, D> + Type<D>,
    for<'r> &'r str: ColumnIndex<D::Row>,
    usize: ColumnIndex<D::Row>,
{
    async fn insert_audit(tx: &mut Transaction<'static, D>, entry: &AuditEntry) -> StoreResult<()> {
        sqlx::query(sql::INSERT_AUDIT)
            .bind(entry.integration_id)
            .bind(entry.user_id)
            .bind(entry.action.as_str())
            .bind(&entry.provider)
            .bind(entry.scopes.clone().map(Scopes))
            .bind(entry.client.ip_address.map(IpAddress))
            .bind(&entry.client.user_agent)
            .bind(entry.success)
            .bind(&entry.error_message)
            .bind(entry.duration_ms)
            .bind(entry.metadata.clone().map(JsonDoc))
            .bind(entry.created_at)
            .bind(rules::audit_status(entry))
            .bind(entry.details.clone().map(JsonDoc))
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Writes a refresh outcome under the refresh lock, unless the connection changed meanwhile.
    async fn apply_refresh(
        tx: &mut Transaction<'static, D>,
        current: &StoredToken,
        step: &RefreshStep,
        audit: &RefreshAudit,
    ) -> StoreResult<RefreshWrite> {
        let now = Utc::now().naive_utc();
        let Some(entry) = rules::refresh_entry(current, step, audit, now) else { return Ok(RefreshWrite::Written) };
        // Integration row first, then its token row: the order every writer uses (no deadlocks).
        let status: Option<String> = sqlx::query_scalar(D::LOCK_FOR_REFRESH_OUTCOME)
            .bind(current.integration_id)
            .fetch_optional(&mut **tx)
            .await?;
        let still_current: Option<i32> = sqlx::query_scalar(sql::TOKEN_STILL_CURRENT)
            .bind(current.integration_id)
            .bind(current.updated_at)
            .fetch_optional(&mut **tx)
            .await?;
        let write = rules::refresh_outcome_applies(status.as_deref(), still_current.is_some());
        if write != RefreshWrite::Written {
            tracing::info!(
                integration_id = current.integration_id,
                ?write,
                "refresh outcome discarded: the connection changed meanwhile"
            );
            return Ok(write);
        }
        match step {
            RefreshStep::AlreadyFresh => return Ok(write),
            RefreshStep::Refreshed(tokens) => {
                sqlx::query(sql::STORE_REFRESHED_TOKENS)
                    .bind(current.integration_id)
                    .bind(&tokens.access_token)
                    .bind(&tokens.refresh_token)
                    .bind(&tokens.token_type)
                    .bind(tokens.expires_at)
                    .bind(&tokens.scope)
                    .bind(now)
                    .execute(&mut **tx)
                    .await?;
                sqlx::query(sql::MARK_REFRESHED)
                    .bind(current.integration_id)
                    .bind(tokens.scopes.clone().map(Scopes))
                    .bind(now)
                    .execute(&mut **tx)
                    .await?;
            }
            RefreshStep::Failed(failure) => {
                sqlx::query(sql::MARK_REFRESH_FAILED)
                    .bind(current.integration_id)
                    .bind(failure.needs_reauth)
                    .bind(&failure.message)
                    .bind(now)
                    .execute(&mut **tx)
                    .await?;
            }
        }
        Self::insert_audit(tx, &entry).await?;
        D::notify_change(tx, &TokenChange::of(current)).await?;
        Ok(write)
    }

    /// Adds one integration-minute of hand-outs to its token and its `api_call` row.
    async fn add_usage(tx: &mut Transaction<'static, D>, delta: &UsageDelta) -> StoreResult<()> {
        D::lock_usage(tx, delta.integration_id).await?;
        sqlx::query(D::LOCK_FOR_USAGE).bind(delta.integration_id).execute(&mut **tx).await?;
        sqlx::query(sql::ADD_USAGE)
            .bind(delta.integration_id)
            .bind(rules::saturating_i32(delta.count))
            .bind(delta.last_at)
            .execute(&mut **tx)
            .await?;
        let existing: Option<ApiCallRow> = sqlx::query_as(sql::FIND_API_CALL_ROW)
            .bind(delta.integration_id)
            .bind(delta.minute)
            .bind(delta.minute + chrono::Duration::minutes(1))
            .fetch_optional(&mut **tx)
            .await?;
        match existing {
            Some(row) => {
                let details = rules::merged_usage_details(row.details.map(|json| json.0).as_ref(), delta);
                sqlx::query(sql::UPDATE_API_CALL_DETAILS)
                    .bind(row.id)
                    .bind(JsonDoc(details))
                    .bind(delta.last_at)
                    .execute(&mut **tx)
                    .await?;
                Ok(())
            }
            None => Self::insert_audit(tx, &rules::api_call_entry(delta)).await,
        }
    }
}

#[async_trait]
impl<D> Store for SqlStore<D>
where
    D: Dialect,
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
    D::Arguments: IntoArguments<D>,
    i32: Codec<D>,
    Option<i32>: Codec<D>,
    i64: Codec<D>,
    bool: Codec<D>,
    String: Codec<D>,
    Option<String>: Codec<D>,
    NaiveDateTime: Codec<D>,
    Option<NaiveDateTime>: Codec<D>,
    Scopes: Codec<D>,
    Option<Scopes>: Codec<D>,
    JsonDoc: Codec<D>,
    Option<JsonDoc>: Codec<D>,
    Option<IpAddress>: Codec<D>,
    &'static str: for<'q> Encode<'q, D> + Type<D>,
    Option<&'static str>: for<'q> Encode<'q, D> + Type<D>,
    for<'r> &'r str: ColumnIndex<D::Row>,
    usize: ColumnIndex<D::Row>,
{
    fn kind(&self) -> DatabaseKind {
        D::KIND
    }

    fn refresh_write_slots(&self) -> u32 {
        self.refresh_write_slots
    }

    fn token_cache(&self) -> TokenCacheState {
        self.cache.state()
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query(sql::PING).execute(&self.pool).await?;
        Ok(())
    }

    async fn migrate(&self) -> anyhow::Result<()> {
        D::migrate(&self.pool).await
    }

    async fn allow_custom_providers(&self) -> anyhow::Result<()> {
        D::allow_custom_providers(&self.pool).await
    }

    async fn create_user(&self, email: &str) -> StoreResult<i32> {
        Ok(sqlx::query_scalar(sql::INSERT_USER).bind(email.to_owned()).fetch_one(&self.pool).await?)
    }

    async fn find_user(&self, email: &str) -> StoreResult<Option<i32>> {
        Ok(sqlx::query_scalar(sql::FIND_USER).bind(email.to_owned()).fetch_optional(&self.pool).await?)
    }

    async fn user_roles(&self, user_id: i32, query: &str) -> StoreResult<Vec<String>> {
        // The operator's configured query (OAUTH_ROLES_QUERY), never request data.
        let query = sqlx::AssertSqlSafe(query.to_owned());
        Ok(sqlx::query_scalar(query).bind(user_id).fetch_all(&self.pool).await?)
    }

    async fn seed_scopes(&self, provider: &str, scopes: &[ScopeEntry]) -> StoreResult<()> {
        // Every start seeds every provider: write only what differs, so a start on an unchanged
        // catalogue costs reads, not a commit per provider.
        let stored = self.list_scopes(provider).await?;
        let changed: Vec<&ScopeEntry> = scopes.iter().filter(|scope| !stored.contains(scope)).collect();
        if changed.is_empty() {
            return Ok(());
        }
        let mut tx = D::begin_write(&self.pool).await?;
        for scope in changed {
            sqlx::query(sql::UPSERT_SCOPE)
                .bind(provider.to_owned())
                .bind(&scope.name)
                .bind(&scope.display_name)
                .bind(&scope.description)
                .bind(&scope.category)
                .bind(scope.required)
                .bind(scope.dangerous)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn list_scopes(&self, provider: &str) -> StoreResult<Vec<ScopeEntry>> {
        let rows: Vec<ScopeRow> =
            sqlx::query_as(sql::LIST_SCOPES).bind(provider.to_owned()).fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn insert_state(&self, state: &NewState) -> StoreResult<()> {
        sqlx::query(sql::INSERT_STATE)
            .bind(&state.state_hash)
            .bind(state.user_id)
            .bind(&state.provider)
            .bind(Scopes(state.scopes.clone()))
            .bind(&state.redirect_uri)
            .bind(&state.code_verifier)
            .bind(&state.code_challenge)
            .bind(JsonDoc(state.metadata.clone()))
            .bind(state.created_at)
            .bind(state.expires_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn find_state(&self, state_hash: &str) -> StoreResult<Option<StateRecord>> {
        let row: Option<StateRow> =
            sqlx::query_as(sql::FIND_STATE).bind(state_hash.to_owned()).fetch_optional(&self.pool).await?;
        Ok(row.map(Into::into))
    }

    async fn open_states(&self, user_id: i32, now: NaiveDateTime) -> StoreResult<(i64, Option<NaiveDateTime>)> {
        Ok(sqlx::query_as(sql::OPEN_STATES).bind(user_id).bind(now).fetch_one(&self.pool).await?)
    }

    async fn claim_handoff(
        &self,
        id: i32,
        read: &serde_json::Value,
        claimed: &serde_json::Value,
        expires_at: NaiveDateTime,
    ) -> StoreResult<bool> {
        let won: Option<i32> = sqlx::query_scalar(sql::CLAIM_HANDOFF)
            .bind(id)
            .bind(JsonDoc(claimed.clone()))
            .bind(expires_at)
            .bind(JsonDoc(read.clone()))
            .fetch_optional(&self.pool)
            .await?;
        Ok(won.is_some())
    }

    async fn consume_state(&self, id: i32, now: NaiveDateTime) -> StoreResult<bool> {
        let spent: Option<i32> =
            sqlx::query_scalar(sql::CONSUME_STATE).bind(id).bind(now).fetch_optional(&self.pool).await?;
        Ok(spent.is_some())
    }

    async fn delete_expired_states(&self, cutoff: NaiveDateTime) -> StoreResult<u64> {
        let deleted: Vec<i32> =
            sqlx::query_scalar(sql::DELETE_EXPIRED_STATES).bind(cutoff).fetch_all(&self.pool).await?;
        Ok(deleted.len() as u64)
    }

    async fn complete_connect(&self, record: &ConnectRecord) -> StoreResult<Integration> {
        let mut tx = D::begin_write(&self.pool).await?;
        if let Some(state_id) = record.state_id {
            let state: Option<i32> =
                sqlx::query_scalar(D::LOCK_STATE_FOR_CONNECT).bind(state_id).fetch_optional(&mut *tx).await?;
            if state.is_none() {
                return Err(StoreError::NotFound);
            }
        }
        let previous_account: Option<Option<String>> = sqlx::query_scalar(D::LOCK_FOR_CONNECT)
            .bind(record.user_id)
            .bind(&record.provider)
            .fetch_optional(&mut *tx)
            .await?;
        let reconnected = previous_account.is_some();
        let keep_refresh_token = rules::keeps_stored_refresh_token(previous_account, record);
        let id: i32 = sqlx::query_scalar(sql::UPSERT_INTEGRATION)
            .bind(record.user_id)
            .bind(&record.provider)
            .bind(&record.provider_user_id)
            .bind(Scopes(record.scopes.clone()))
            .bind(JsonDoc(record.metadata.clone()))
            .bind(record.now)
            .fetch_one(&mut *tx)
            .await?;
        let updated: Option<i32> = sqlx::query_scalar(sql::UPDATE_CONNECTED_TOKEN)
            .bind(id)
            .bind(&record.access_token)
            .bind(&record.refresh_token)
            .bind(&record.token_type)
            .bind(record.expires_at)
            .bind(&record.scope)
            .bind(record.now)
            .bind(keep_refresh_token)
            .fetch_optional(&mut *tx)
            .await?;
        if updated.is_none() {
            sqlx::query(sql::INSERT_TOKEN)
                .bind(id)
                .bind(&record.access_token)
                .bind(&record.refresh_token)
                .bind(&record.token_type)
                .bind(record.expires_at)
                .bind(&record.scope)
                .bind(record.now)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(sql::INSERT_CONSENT)
            .bind(id)
            .bind(Scopes(record.scopes.clone()))
            .bind(record.now)
            .bind(record.client.ip_address.map(IpAddress))
            .bind(&record.client.user_agent)
            .bind(&record.consent_version)
            .execute(&mut *tx)
            .await?;
        Self::insert_audit(&mut tx, &rules::connect_entry(id, record, reconnected)).await?;
        let integration: IntegrationRow = sqlx::query_as(sql::SELECT_INTEGRATION).bind(id).fetch_one(&mut *tx).await?;
        let change = TokenChange { integration_id: id, user_id: record.user_id, provider: record.provider.clone() };
        D::notify_change(&mut tx, &change).await?;
        commit_then_forget(tx, &self.cache, &change).await?;
        Ok(integration.into())
    }

    async fn get_integration(&self, id: i32) -> StoreResult<Option<Integration>> {
        let row: Option<IntegrationRow> =
            sqlx::query_as(sql::SELECT_INTEGRATION).bind(id).fetch_optional(&self.pool).await?;
        Ok(row.map(Into::into))
    }

    async fn list_integrations(&self, user_id: i32, filter: &IntegrationFilter) -> StoreResult<Vec<Integration>> {
        let rows: Vec<IntegrationRow> = sqlx::query_as(sql::LIST_INTEGRATIONS)
            .bind(user_id)
            .bind(&filter.provider)
            .bind(filter.active_only)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn get_token(&self, integration_id: i32) -> StoreResult<Option<StoredToken>> {
        if let Some(cached) = self.cache.get(integration_id) {
            return Ok(Some(cached));
        }
        let read = sqlx::query_as(sql::SELECT_TOKEN).bind(integration_id).fetch_optional(&self.pool);
        read_through(&self.cache, false, read).await
    }

    async fn find_token_by_owner(&self, user_id: i32, provider: &str) -> StoreResult<Option<StoredToken>> {
        if let Some(cached) = self.cache.get_by_owner(user_id, provider) {
            return Ok(Some(cached));
        }
        let read = sqlx::query_as(sql::SELECT_TOKEN_BY_OWNER)
            .bind(user_id)
            .bind(provider.to_owned())
            .fetch_optional(&self.pool);
        read_through(&self.cache, true, read).await
    }

    async fn token_usage(&self, integration_id: i32) -> StoreResult<Option<(i32, Option<NaiveDateTime>)>> {
        Ok(sqlx::query_as(sql::TOKEN_USAGE).bind(integration_id).fetch_optional(&self.pool).await?)
    }

    async fn begin_refresh(&self, integration_id: i32) -> StoreResult<Box<dyn RefreshTx>> {
        let hold = D::hold_for_refresh(&self.refresh_locks, integration_id).await?;
        let current: Option<TokenRow> =
            sqlx::query_as(sql::SELECT_TOKEN).bind(integration_id).fetch_optional(&self.pool).await?;
        let current = current.ok_or(StoreError::NotFound)?.into();
        Ok(Box::new(SqlRefresh { pool: self.refresh_writers.clone(), cache: self.cache.clone(), hold, current }))
    }

    async fn integrations_expiring_before(
        &self,
        cutoff: NaiveDateTime,
        used_since: Option<NaiveDateTime>,
        limit: i64,
    ) -> StoreResult<Vec<i32>> {
        let query = sqlx::query_scalar(sql::EXPIRING_INTEGRATIONS).bind(cutoff).bind(limit).bind(used_since);
        Ok(query.fetch_all(&self.pool).await?)
    }

    async fn integrations_unrenewed_since(
        &self,
        provider: &str,
        before: NaiveDateTime,
        limit: i64,
    ) -> StoreResult<Vec<i32>> {
        let query = sqlx::query_scalar(sql::UNRENEWED_INTEGRATIONS).bind(provider.to_owned()).bind(before).bind(limit);
        Ok(query.fetch_all(&self.pool).await?)
    }

    async fn revoke_integration(&self, id: i32, record: &RevokeRecord) -> StoreResult<bool> {
        let mut tx = D::begin_write(&self.pool).await?;
        let row: RevokedIntegrationRow =
            sqlx::query_as(D::LOCK_FOR_REVOKE).bind(id).fetch_optional(&mut *tx).await?.ok_or(StoreError::NotFound)?;
        if row.status == "revoked" {
            return Ok(false);
        }
        sqlx::query(sql::DELETE_TOKENS).bind(id).execute(&mut *tx).await?;
        sqlx::query(sql::MARK_REVOKED).bind(id).bind(record.now).execute(&mut *tx).await?;
        sqlx::query(sql::REVOKE_CONSENTS).bind(id).bind(record.now).bind(&record.reason).execute(&mut *tx).await?;
        let change = TokenChange { integration_id: id, user_id: row.user_id, provider: row.provider.clone() };
        for entry in rules::revoke_entries(id, row.user_id, row.provider, row.scopes.0, record) {
            Self::insert_audit(&mut tx, &entry).await?;
        }
        D::notify_change(&mut tx, &change).await?;
        commit_then_forget(tx, &self.cache, &change).await?;
        Ok(true)
    }

    async fn record_audit(&self, entry: &AuditEntry) -> StoreResult<()> {
        let mut tx = D::begin_write(&self.pool).await?;
        Self::insert_audit(&mut tx, entry).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_audit(&self, query: &AuditQuery) -> StoreResult<Vec<AuditEvent>> {
        let rows: Vec<AuditRow> = sqlx::query_as(sql::LIST_AUDIT)
            .bind(query.user_id)
            .bind(query.integration_id)
            .bind(query.action.map(|action| action.as_str()))
            .bind(query.since)
            .bind(query.until)
            .bind(query.before_id)
            .bind(query.limit)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn list_consents(&self, user_id: i32) -> StoreResult<Vec<Consent>> {
        let rows: Vec<ConsentRow> = sqlx::query_as(sql::LIST_CONSENTS).bind(user_id).fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn status_counts(&self, user_id: i32) -> StoreResult<StatusCounts> {
        let integrations = sqlx::query_as(sql::COUNT_INTEGRATIONS).bind(user_id).fetch_all(&self.pool).await?;
        let (total_consents, revoked_consents) =
            sqlx::query_as(sql::COUNT_CONSENTS).bind(user_id).fetch_one(&self.pool).await?;
        Ok(StatusCounts { integrations, total_consents, revoked_consents })
    }

    async fn erase_user(&self, user_id: i32) -> StoreResult<Option<ErasedRows>> {
        let mut tx = D::begin_write(&self.pool).await?;
        let deleted = async |tx: &mut Transaction<'static, D>, statement: &'static str| -> StoreResult<u64> {
            let ids: Vec<i32> = sqlx::query_scalar(statement).bind(user_id).fetch_all(&mut **tx).await?;
            Ok(ids.len() as u64)
        };
        // States first: a connect in flight holds its state row until it commits (before this
        // erasure, and then its integration is seen below) or finds the row gone and gives up.
        let states = deleted(&mut tx, sql::ERASE_STATES).await?;
        let held: Vec<(i32, i32, String, String)> =
            sqlx::query_as(D::LOCK_FOR_ERASE).bind(user_id).fetch_all(&mut *tx).await?;
        if held.iter().any(|(_, _, _, status)| status != super::IntegrationStatus::Revoked.as_str()) {
            tx.rollback().await?;
            return Ok(None);
        }
        let mut erased = ErasedRows {
            states,
            consents: deleted(&mut tx, sql::ERASE_CONSENTS).await?,
            tokens: deleted(&mut tx, sql::ERASE_TOKENS).await?,
            audit_references_cleared: deleted(&mut tx, sql::ERASE_AUDIT_REFERENCES).await?,
            audit_events: deleted(&mut tx, sql::ERASE_AUDIT).await?,
            webhook_deliveries: 0,
            integrations: 0,
        };
        erased.integrations = deleted(&mut tx, sql::ERASE_INTEGRATIONS).await?;
        let deliveries: Vec<i64> = sqlx::query_scalar(sql::ERASE_WEBHOOKS).bind(user_id).fetch_all(&mut *tx).await?;
        erased.webhook_deliveries = deliveries.len() as u64;
        let changes: Vec<TokenChange> = held
            .into_iter()
            .map(|(integration_id, user_id, provider, _)| TokenChange { integration_id, user_id, provider })
            .collect();
        for change in &changes {
            D::notify_change(&mut tx, change).await?;
        }
        let committed = tx.commit().await;
        for change in &changes {
            self.cache.invalidate(change);
        }
        committed?;
        Ok(Some(erased))
    }

    async fn enqueue_webhooks(&self, deliveries: &[NewWebhook]) -> StoreResult<()> {
        let mut tx = D::begin_write(&self.pool).await?;
        for delivery in deliveries {
            sqlx::query(sql::INSERT_WEBHOOK)
                .bind(&delivery.endpoint)
                .bind(delivery.user_id)
                .bind(&delivery.event_id)
                .bind(&delivery.event_type)
                .bind(&delivery.payload)
                .bind(delivery.created_at)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn claim_webhooks(
        &self,
        now: NaiveDateTime,
        lease_until: NaiveDateTime,
        limit: i64,
    ) -> StoreResult<Vec<WebhookDelivery>> {
        let mut tx = D::begin_write(&self.pool).await?;
        let claimed: Vec<WebhookDelivery> =
            sqlx::query_as(D::CLAIM_WEBHOOKS).bind(now).bind(lease_until).bind(limit).fetch_all(&mut *tx).await?;
        tx.commit().await?;
        Ok(claimed)
    }

    async fn purge_webhooks(&self, cutoff: NaiveDateTime) -> StoreResult<u64> {
        let purged: Vec<i64> = sqlx::query_scalar(sql::PURGE_WEBHOOKS).bind(cutoff).fetch_all(&self.pool).await?;
        Ok(purged.len() as u64)
    }

    async fn webhook_delivered(&self, id: i64, now: NaiveDateTime) -> StoreResult<()> {
        sqlx::query(sql::WEBHOOK_DELIVERED).bind(id).bind(now).execute(&self.pool).await?;
        Ok(())
    }

    async fn webhook_failed(
        &self,
        id: i64,
        attempts: i32,
        error: &str,
        retry_at: Option<NaiveDateTime>,
        now: NaiveDateTime,
    ) -> StoreResult<()> {
        let (statement, at) = match retry_at {
            Some(at) => (sql::WEBHOOK_RETRY, at),
            None => (sql::WEBHOOK_GIVE_UP, now),
        };
        sqlx::query(statement).bind(id).bind(attempts).bind(error.to_owned()).bind(at).execute(&self.pool).await?;
        Ok(())
    }

    async fn count_integrations(&self) -> StoreResult<Vec<(String, String, i64)>> {
        Ok(sqlx::query_as(sql::COUNT_ALL_INTEGRATIONS).fetch_all(&self.pool).await?)
    }

    async fn tokens_not_under(&self, key_id: &str, after: i32, limit: i64) -> StoreResult<Vec<TokenSecrets>> {
        let rows = sqlx::query_as(sql::TOKENS_NOT_UNDER)
            .bind(rules::key_pattern(key_id))
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows)
    }

    async fn reencrypt_token(&self, old: &TokenSecrets, access: &str, refresh: Option<&str>) -> StoreResult<bool> {
        let written: Option<i32> = sqlx::query_scalar(sql::REENCRYPT_TOKEN)
            .bind(old.id)
            .bind(access.to_owned())
            .bind(refresh.map(str::to_owned))
            .bind(&old.access_token)
            .bind(&old.refresh_token)
            .fetch_optional(&self.pool)
            .await?;
        Ok(written.is_some())
    }

    async fn verifiers_not_under(&self, key_id: &str, after: i32, limit: i64) -> StoreResult<Vec<VerifierSecret>> {
        let rows = sqlx::query_as(sql::VERIFIERS_NOT_UNDER)
            .bind(rules::key_pattern(key_id))
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows)
    }

    async fn reencrypt_verifier(&self, old: &VerifierSecret, verifier: &str) -> StoreResult<bool> {
        let written: Option<i32> = sqlx::query_scalar(sql::REENCRYPT_VERIFIER)
            .bind(old.id)
            .bind(verifier.to_owned())
            .bind(&old.code_verifier)
            .fetch_optional(&self.pool)
            .await?;
        Ok(written.is_some())
    }

    async fn secrets_under(&self, key_id: Option<&str>) -> StoreResult<i64> {
        let pattern = key_id.map_or_else(|| "%".to_owned(), rules::key_pattern);
        Ok(sqlx::query_scalar(sql::SECRETS_LIKE).bind(pattern).fetch_one(&self.pool).await?)
    }

    async fn flush_usage(&self, deltas: &[UsageDelta]) -> StoreResult<()> {
        let mut ordered: Vec<&UsageDelta> = deltas.iter().collect();
        // One lock order for every process, so two flushers cannot deadlock.
        ordered.sort_by_key(|delta| (delta.integration_id, delta.minute));
        let mut tx = D::begin_write(&self.pool).await?;
        for delta in ordered {
            Self::add_usage(&mut tx, delta).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Commits `tx`, then drops what `change` touched from this process's cache, even when the
/// commit reports an error: the server may have committed anyway.
async fn commit_then_forget<D: Database>(
    tx: Transaction<'static, D>,
    cache: &TokenCache,
    change: &TokenChange,
) -> StoreResult<()> {
    let committed = tx.commit().await;
    cache.invalidate(change);
    Ok(committed?)
}

/// Runs `read` (a token row, by id or `by_owner`), caching what it finds. The ticket is taken
/// before the read runs (futures start when awaited), so an invalidation meanwhile voids the insert.
async fn read_through(
    cache: &TokenCache,
    by_owner: bool,
    read: impl std::future::Future<Output = sqlx::Result<Option<TokenRow>>>,
) -> StoreResult<Option<StoredToken>> {
    let ticket = cache.ticket();
    let token = read.await?.map(StoredToken::from);
    if let Some(token) = &token {
        cache.insert(ticket, token, by_owner);
    }
    Ok(token)
}

/// A refresh holding its integration (`Store::begin_refresh`).
struct SqlRefresh<D: Database> {
    pool: Pool<D>,
    cache: Arc<TokenCache>,
    hold: RefreshHold,
    current: StoredToken,
}

#[async_trait]
impl<D> RefreshTx for SqlRefresh<D>
where
    D: Dialect,
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
    D::Arguments: IntoArguments<D>,
    i32: Codec<D>,
    Option<i32>: Codec<D>,
    i64: Codec<D>,
    bool: Codec<D>,
    String: Codec<D>,
    Option<String>: Codec<D>,
    NaiveDateTime: Codec<D>,
    Option<NaiveDateTime>: Codec<D>,
    Scopes: Codec<D>,
    Option<Scopes>: Codec<D>,
    JsonDoc: Codec<D>,
    Option<JsonDoc>: Codec<D>,
    Option<IpAddress>: Codec<D>,
    &'static str: for<'q> Encode<'q, D> + Type<D>,
    Option<&'static str>: for<'q> Encode<'q, D> + Type<D>,
    for<'r> &'r str: ColumnIndex<D::Row>,
    usize: ColumnIndex<D::Row>,
{
    fn current(&self) -> &StoredToken {
        &self.current
    }

    async fn commit(self: Box<Self>, step: &RefreshStep, audit: &RefreshAudit) -> StoreResult<RefreshWrite> {
        let Self { pool, cache, hold, current } = *self;
        // The lock is held until the outcome is committed, then released.
        let mut tx = D::begin_write(&pool).await?;
        let write = SqlStore::<D>::apply_refresh(&mut tx, &current, step, audit).await?;
        commit_then_forget(tx, &cache, &TokenChange::of(&current)).await?;
        drop(hold);
        Ok(write)
    }
}
