//! The embedded store on SQLite: the same tables and behaviour as PostgreSQL, types mapped
//! (arrays and JSON as JSON text, INET as text). One process owns the file, so the refresh lock is
//! an in-process keyed mutex and write transactions start `IMMEDIATE` to avoid upgrade deadlocks.

use async_trait::async_trait;
use chrono::{NaiveDateTime, Utc};
use serde_json::Value;
use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow};
use sqlx::types::Json;
use sqlx::{Row, Sqlite, Transaction};

use super::sql;
use super::*;

/// Store on a SQLite file.
pub struct SqliteStore {
    pool: SqlitePool,
    refresh_locks: KeyedLocks,
}

fn integration(row: &SqliteRow) -> Result<Integration, sqlx::Error> {
    Ok(Integration {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        provider: row.try_get("provider")?,
        provider_user_id: row.try_get("provider_user_id")?,
        status: IntegrationStatus::parse(row.try_get("status")?),
        scopes: row.try_get::<Json<Vec<String>>, _>("scopes")?.0,
        provider_metadata: row.try_get::<Option<Json<Value>>, _>("provider_metadata")?.map(|json| json.0),
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        last_sync_at: row.try_get("last_sync_at")?,
        error_message: row.try_get("error_message")?,
        error_count: row.try_get("error_count")?,
        token_expires_at: row.try_get("token_expires_at")?,
        has_refresh_token: row.try_get::<Option<bool>, _>("has_refresh_token")?.unwrap_or(false),
    })
}

fn stored_token(row: &SqliteRow) -> Result<StoredToken, sqlx::Error> {
    Ok(StoredToken {
        integration_id: row.try_get("integration_id")?,
        user_id: row.try_get("user_id")?,
        provider: row.try_get("provider")?,
        status: IntegrationStatus::parse(row.try_get("status")?),
        access_token: row.try_get("access_token")?,
        refresh_token: row.try_get("refresh_token")?,
        token_type: row.try_get("token_type")?,
        expires_at: row.try_get("expires_at")?,
        scope: row.try_get("scope")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl SqliteStore {
    /// Opens (creating if needed) the database file named by `url`.
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|error| anyhow::anyhow!("DATABASE_URL is not a valid SQLite URL: {error}"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(std::time::Duration::from_secs(10))
            .foreign_keys(true);
        if let Some(parent) = options.get_filename().parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|error| anyhow::anyhow!("creating {}: {error}", parent.display()))?;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(|error| anyhow::anyhow!("opening SQLite database: {error}"))?;
        Ok(Self { pool, refresh_locks: KeyedLocks::default() })
    }

    /// The underlying pool (tests and benchmarks).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    async fn integration_in(tx: &mut Transaction<'_, Sqlite>, id: i32) -> StoreResult<Integration> {
        let sql = sql::SELECT_INTEGRATION;
        let row = sqlx::query(sql).bind(id).fetch_one(&mut **tx).await?;
        Ok(integration(&row)?)
    }

    async fn insert_audit(tx: &mut Transaction<'_, Sqlite>, entry: &AuditEntry) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO oauth_audit_log (integration_id, user_id, action, provider, scopes, ip_address,
                user_agent, success, error_message, duration_ms, action_metadata, created_at, status, details)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(entry.integration_id)
        .bind(entry.user_id)
        .bind(entry.action.as_str())
        .bind(&entry.provider)
        .bind(entry.scopes.as_ref().map(Json))
        .bind(&entry.client.ip_address)
        .bind(&entry.client.user_agent)
        .bind(entry.success)
        .bind(&entry.error_message)
        .bind(entry.duration_ms)
        .bind(entry.metadata.as_ref().map(Json))
        .bind(entry.created_at)
        .bind(if entry.success { "completed" } else { "failed" })
        .bind(entry.details.as_ref().map(Json))
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    async fn apply_refresh(
        tx: &mut Transaction<'_, Sqlite>,
        current: &StoredToken,
        step: &RefreshStep,
        audit: &RefreshAudit,
    ) -> StoreResult<()> {
        let now = Utc::now().naive_utc();
        let mut entry = AuditEntry {
            integration_id: Some(current.integration_id),
            user_id: current.user_id,
            action: AuditAction::Refresh,
            provider: current.provider.clone(),
            scopes: None,
            client: audit.client.clone(),
            success: true,
            error_message: None,
            duration_ms: Some(audit.duration_ms),
            metadata: Some(serde_json::json!({"reason": audit.reason})),
            details: None,
            created_at: now,
        };
        if matches!(step, RefreshStep::AlreadyFresh) {
            return Ok(());
        }
        // Integration row first, then its token row: the order every writer uses (no deadlocks).
        let status: Option<String> = sqlx::query_scalar("SELECT status FROM oauth_integrations WHERE id = $1")
            .bind(current.integration_id)
            .fetch_optional(&mut **tx)
            .await?;
        let still_current: Option<i32> = sqlx::query_scalar(sql::TOKEN_STILL_CURRENT)
            .bind(current.integration_id)
            .bind(&current.access_token)
            .fetch_optional(&mut **tx)
            .await?;
        // Disconnected or reconnected while the provider answered: the outcome belongs to a grant
        // that is gone, so it must not touch the integration.
        if status.as_deref() == Some("revoked") || still_current.is_none() {
            tracing::info!(
                integration_id = current.integration_id,
                "refresh outcome discarded: the connection changed meanwhile"
            );
            return Ok(());
        }
        match step {
            RefreshStep::AlreadyFresh => return Ok(()),
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
                    .bind(tokens.scopes.as_ref().map(Json))
                    .bind(now)
                    .execute(&mut **tx)
                    .await?;
                entry.scopes = tokens.scopes.clone();
                entry.details = Some(serde_json::json!({"refresh_token_rotated": tokens.refresh_token.is_some()}));
            }
            RefreshStep::Failed(failure) => {
                sqlx::query(sql::MARK_REFRESH_FAILED)
                    .bind(current.integration_id)
                    .bind(failure.needs_reauth)
                    .bind(&failure.message)
                    .bind(now)
                    .execute(&mut **tx)
                    .await?;
                entry.action = AuditAction::Error;
                entry.success = false;
                entry.error_message = Some(failure.message.clone());
                entry.metadata = Some(serde_json::json!({
                    "operation": "refresh", "reason": audit.reason, "needs_reauth": failure.needs_reauth,
                }));
            }
        }
        Self::insert_audit(tx, &entry).await
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn kind(&self) -> DatabaseKind {
        DatabaseKind::Sqlite
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query(sql::PING).execute(&self.pool).await?;
        Ok(())
    }

    async fn migrate(&self) -> anyhow::Result<()> {
        sqlx::migrate!("./migrations/sqlite").run(&self.pool).await?;
        Ok(())
    }

    async fn allow_custom_providers(&self) -> anyhow::Result<()> {
        // SQLite cannot drop a CHECK constraint without rebuilding every table; the embedded
        // store is for trying the service, so it keeps the four built-ins.
        anyhow::bail!("custom providers need PostgreSQL: SQLite cannot relax the schema's provider constraints")
    }

    async fn create_user(&self, email: &str) -> StoreResult<i32> {
        let id = sqlx::query_scalar(sql::INSERT_USER).bind(email).fetch_one(&self.pool).await?;
        Ok(id)
    }

    async fn find_user(&self, email: &str) -> StoreResult<Option<i32>> {
        Ok(sqlx::query_scalar(sql::FIND_USER).bind(email).fetch_optional(&self.pool).await?)
    }

    async fn user_roles(&self, user_id: i32, query: &str) -> StoreResult<Vec<String>> {
        // The operator's configured query (OAUTH_ROLES_QUERY), never request data.
        let query = sqlx::AssertSqlSafe(query.to_owned());
        Ok(sqlx::query_scalar(query).bind(user_id).fetch_all(&self.pool).await?)
    }

    async fn seed_scopes(&self, provider: &str, scopes: &[ScopeEntry]) -> StoreResult<()> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        for scope in scopes {
            sqlx::query(sql::UPSERT_SCOPE)
                .bind(provider)
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
        let rows = sqlx::query(sql::LIST_SCOPES).bind(provider).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                Ok(ScopeEntry {
                    name: row.try_get("scope_name")?,
                    display_name: row.try_get("display_name")?,
                    description: row.try_get("description")?,
                    category: row.try_get("category")?,
                    required: row.try_get("is_required")?,
                    dangerous: row.try_get("is_dangerous")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    async fn insert_state(&self, state: &NewState) -> StoreResult<()> {
        sqlx::query(sql::INSERT_STATE)
            .bind(&state.state_hash)
            .bind(state.user_id)
            .bind(&state.provider)
            .bind(Json(&state.scopes))
            .bind(&state.redirect_uri)
            .bind(&state.code_verifier)
            .bind(&state.code_challenge)
            .bind(Json(&state.metadata))
            .bind(state.created_at)
            .bind(state.expires_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn find_state(&self, state_hash: &str) -> StoreResult<Option<StateRecord>> {
        let row = sqlx::query(sql::FIND_STATE).bind(state_hash).fetch_optional(&self.pool).await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(StateRecord {
            id: row.try_get("id")?,
            state_hash: row.try_get("state_token")?,
            user_id: row.try_get("user_id")?,
            provider: row.try_get("provider")?,
            scopes: row.try_get::<Json<Vec<String>>, _>("scopes")?.0,
            redirect_uri: row.try_get("redirect_uri")?,
            code_verifier: row.try_get("code_verifier")?,
            metadata: row.try_get::<Option<Json<Value>>, _>("state_metadata")?.map_or(Value::Null, |json| json.0),
            expires_at: row.try_get("expires_at")?,
            is_used: row.try_get("is_used")?,
        }))
    }

    async fn consume_state(&self, id: i32, now: NaiveDateTime) -> StoreResult<bool> {
        let result = sqlx::query(sql::CONSUME_STATE).bind(id).bind(now).execute(&self.pool).await?;
        Ok(result.rows_affected() == 1)
    }

    async fn delete_expired_states(&self, cutoff: NaiveDateTime) -> StoreResult<u64> {
        let result = sqlx::query(sql::DELETE_EXPIRED_STATES).bind(cutoff).execute(&self.pool).await?;
        Ok(result.rows_affected())
    }

    async fn complete_connect(&self, record: &ConnectRecord) -> StoreResult<Integration> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let previous_account: Option<Option<String>> =
            sqlx::query_scalar("SELECT provider_user_id FROM oauth_integrations WHERE user_id = $1 AND provider = $2")
                .bind(record.user_id)
                .bind(&record.provider)
                .fetch_optional(&mut *tx)
                .await?;
        // A stored refresh token may be kept only for the same provider account.
        let same_account = previous_account.clone().flatten() == record.provider_user_id;
        let id: i32 = sqlx::query_scalar(sql::UPSERT_INTEGRATION)
            .bind(record.user_id)
            .bind(&record.provider)
            .bind(&record.provider_user_id)
            .bind(Json(&record.scopes))
            .bind(Json(&record.metadata))
            .bind(record.now)
            .fetch_one(&mut *tx)
            .await?;
        let updated = sqlx::query(
            "UPDATE oauth_tokens SET access_token = $2,
                refresh_token = CASE WHEN $3 IS NOT NULL THEN $3 WHEN $8 THEN refresh_token ELSE NULL END,
                token_type = $4, expires_at = $5, scope = $6, updated_at = $7
             WHERE integration_id = $1",
        )
        .bind(id)
        .bind(&record.access_token)
        .bind(&record.refresh_token)
        .bind(&record.token_type)
        .bind(record.expires_at)
        .bind(&record.scope)
        .bind(record.now)
        .bind(same_account)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
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
        sqlx::query(
            "INSERT INTO oauth_consents (integration_id, scopes, granted_at, ip_address, user_agent, consent_version)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id)
        .bind(Json(&record.scopes))
        .bind(record.now)
        .bind(&record.client.ip_address)
        .bind(&record.client.user_agent)
        .bind(&record.consent_version)
        .execute(&mut *tx)
        .await?;
        let entry = AuditEntry {
            integration_id: Some(id),
            user_id: record.user_id,
            action: AuditAction::Connect,
            provider: record.provider.clone(),
            scopes: Some(record.scopes.clone()),
            client: record.client.clone(),
            success: true,
            error_message: None,
            duration_ms: Some(record.duration_ms),
            metadata: Some(serde_json::json!({"reconnected": previous_account.is_some()})),
            details: None,
            created_at: record.now,
        };
        Self::insert_audit(&mut tx, &entry).await?;
        let integration = Self::integration_in(&mut tx, id).await?;
        tx.commit().await?;
        Ok(integration)
    }

    async fn get_integration(&self, id: i32) -> StoreResult<Option<Integration>> {
        let sql = sql::SELECT_INTEGRATION;
        let row = sqlx::query(sql).bind(id).fetch_optional(&self.pool).await?;
        Ok(row.as_ref().map(integration).transpose()?)
    }

    async fn list_integrations(&self, user_id: i32, filter: &IntegrationFilter) -> StoreResult<Vec<Integration>> {
        let sql = concat!(
            "SELECT ",
            sql::integration_columns!(),
            " FROM oauth_integrations i
             LEFT JOIN oauth_tokens t ON t.integration_id = i.id
             WHERE i.user_id = $1 AND ($2 IS NULL OR i.provider = $2)
               AND (NOT $3 OR i.status IN ('pending', 'active'))
             ORDER BY i.id"
        );
        let rows = sqlx::query(sql)
            .bind(user_id)
            .bind(&filter.provider)
            .bind(filter.active_only)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(integration).collect::<Result<_, _>>().map_err(Into::into)
    }

    async fn get_token(&self, integration_id: i32) -> StoreResult<Option<StoredToken>> {
        let sql = sql::SELECT_TOKEN;
        let row = sqlx::query(sql).bind(integration_id).fetch_optional(&self.pool).await?;
        Ok(row.as_ref().map(stored_token).transpose()?)
    }

    async fn find_token_by_owner(&self, user_id: i32, provider: &str) -> StoreResult<Option<StoredToken>> {
        let sql = sql::SELECT_TOKEN_BY_OWNER;
        let row = sqlx::query(sql).bind(user_id).bind(provider).fetch_optional(&self.pool).await?;
        Ok(row.as_ref().map(stored_token).transpose()?)
    }

    async fn token_usage(&self, integration_id: i32) -> StoreResult<Option<(i32, Option<NaiveDateTime>)>> {
        Ok(sqlx::query_as(sql::TOKEN_USAGE).bind(integration_id).fetch_optional(&self.pool).await?)
    }

    async fn refresh_locked(
        &self,
        integration_id: i32,
        audit: RefreshAudit,
        decide: RefreshFn,
    ) -> StoreResult<RefreshStep> {
        // One process owns the file: the keyed lock is the cross-caller lock. The provider call runs
        // outside any SQLite transaction so it never blocks other writers.
        let _held = self.refresh_locks.lock(integration_id).await;
        let current = self.get_token(integration_id).await?.ok_or(StoreError::NotFound)?;
        let step = decide(current.clone()).await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        Self::apply_refresh(&mut tx, &current, &step, &audit).await?;
        tx.commit().await?;
        Ok(step)
    }

    async fn integrations_expiring_before(&self, cutoff: NaiveDateTime, limit: i64) -> StoreResult<Vec<i32>> {
        Ok(sqlx::query_scalar(sql::EXPIRING_INTEGRATIONS).bind(cutoff).bind(limit).fetch_all(&self.pool).await?)
    }

    async fn revoke_integration(&self, id: i32, record: &RevokeRecord) -> StoreResult<bool> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let row = sqlx::query("SELECT user_id, provider, status, scopes FROM oauth_integrations WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        let status: String = row.try_get("status")?;
        if status == "revoked" {
            return Ok(false);
        }
        let user_id: i32 = row.try_get("user_id")?;
        let provider: String = row.try_get("provider")?;
        let scopes: Vec<String> = row.try_get::<Json<Vec<String>>, _>("scopes")?.0;
        sqlx::query(sql::DELETE_TOKENS).bind(id).execute(&mut *tx).await?;
        sqlx::query(sql::MARK_REVOKED).bind(id).bind(record.now).execute(&mut *tx).await?;
        sqlx::query(sql::REVOKE_CONSENTS).bind(id).bind(record.now).bind(&record.reason).execute(&mut *tx).await?;
        let (success, error_message, details) = revocation_audit(&record.provider_revocation);
        let mut entry = AuditEntry {
            integration_id: Some(id),
            user_id,
            action: AuditAction::Revoke,
            provider,
            scopes: Some(scopes),
            client: record.client.clone(),
            success,
            error_message,
            duration_ms: Some(record.duration_ms),
            metadata: Some(serde_json::json!({"reason": record.reason})),
            details: Some(details),
            created_at: record.now,
        };
        Self::insert_audit(&mut tx, &entry).await?;
        entry.action = AuditAction::Disconnect;
        entry.success = true;
        entry.error_message = None;
        entry.details = None;
        Self::insert_audit(&mut tx, &entry).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn record_audit(&self, entry: &AuditEntry) -> StoreResult<()> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        Self::insert_audit(&mut tx, entry).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_audit(&self, query: &AuditQuery) -> StoreResult<Vec<AuditEvent>> {
        let rows = sqlx::query(
            "SELECT id, integration_id, user_id, action, provider, scopes, ip_address,
                user_agent, success, error_message, duration_ms, action_metadata, details, status, created_at
             FROM oauth_audit_log
             WHERE ($1 IS NULL OR user_id = $1) AND ($2 IS NULL OR integration_id = $2)
               AND ($3 IS NULL OR action = $3) AND ($4 IS NULL OR created_at >= $4)
               AND ($5 IS NULL OR created_at < $5) AND ($6 IS NULL OR id < $6)
             ORDER BY id DESC LIMIT $7",
        )
        .bind(query.user_id)
        .bind(query.integration_id)
        .bind(query.action.map(AuditAction::as_str))
        .bind(query.since)
        .bind(query.until)
        .bind(query.before_id)
        .bind(query.limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(AuditEvent {
                    id: row.try_get("id")?,
                    integration_id: row.try_get("integration_id")?,
                    user_id: row.try_get("user_id")?,
                    action: row.try_get("action")?,
                    provider: row.try_get("provider")?,
                    scopes: row.try_get::<Option<Json<Vec<String>>>, _>("scopes")?.map(|json| json.0),
                    ip_address: row.try_get("ip_address")?,
                    user_agent: row.try_get("user_agent")?,
                    success: row.try_get("success")?,
                    error_message: row.try_get("error_message")?,
                    duration_ms: row.try_get("duration_ms")?,
                    action_metadata: row.try_get::<Option<Json<Value>>, _>("action_metadata")?.map(|json| json.0),
                    details: row.try_get::<Option<Json<Value>>, _>("details")?.map(|json| json.0),
                    status: row.try_get("status")?,
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    async fn list_consents(&self, user_id: i32) -> StoreResult<Vec<Consent>> {
        let rows = sqlx::query(
            "SELECT c.id, c.integration_id, i.provider, c.scopes, c.granted_at, c.expires_at,
                c.ip_address, c.user_agent, c.consent_version, c.is_revoked, c.revoked_at,
                c.revoked_reason
             FROM oauth_consents c JOIN oauth_integrations i ON i.id = c.integration_id
             WHERE i.user_id = $1 ORDER BY c.id DESC",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Consent {
                    id: row.try_get("id")?,
                    integration_id: row.try_get("integration_id")?,
                    provider: row.try_get("provider")?,
                    scopes: row.try_get::<Json<Vec<String>>, _>("scopes")?.0,
                    granted_at: row.try_get("granted_at")?,
                    expires_at: row.try_get("expires_at")?,
                    ip_address: row.try_get("ip_address")?,
                    user_agent: row.try_get("user_agent")?,
                    consent_version: row.try_get("consent_version")?,
                    is_revoked: row.try_get("is_revoked")?,
                    revoked_at: row.try_get("revoked_at")?,
                    revoked_reason: row.try_get("revoked_reason")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    async fn status_counts(&self, user_id: i32) -> StoreResult<StatusCounts> {
        let integrations = sqlx::query_as::<_, (String, String, i64)>(sql::COUNT_INTEGRATIONS)
            .bind(user_id)
            .fetch_all(&self.pool)
            .await?;
        let (total_consents, revoked_consents): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), COALESCE(SUM(CASE WHEN c.is_revoked THEN 1 ELSE 0 END), 0)
             FROM oauth_consents c JOIN oauth_integrations i ON i.id = c.integration_id WHERE i.user_id = $1",
        )
        .bind(user_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(StatusCounts { integrations, total_consents, revoked_consents })
    }

    async fn flush_usage(&self, deltas: &[UsageDelta]) -> StoreResult<()> {
        let mut ordered: Vec<&UsageDelta> = deltas.iter().collect();
        // One lock order for every process, so two flushers cannot deadlock.
        ordered.sort_by_key(|delta| (delta.integration_id, delta.minute));
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        for delta in ordered {
            sqlx::query(
                "UPDATE oauth_tokens SET
                    usage_count = CASE WHEN COALESCE(usage_count, 0) > 2147483647 - $2 THEN 2147483647
                                       ELSE COALESCE(usage_count, 0) + $2 END,
                    last_used_at = MAX(COALESCE(last_used_at, $3), $3)
                 WHERE integration_id = $1",
            )
            .bind(delta.integration_id)
            .bind(saturating_i32(delta.count))
            .bind(delta.last_at)
            .execute(&mut *tx)
            .await?;
            let existing = sqlx::query(sql::FIND_API_CALL_ROW)
                .bind(delta.integration_id)
                .bind(delta.minute)
                .fetch_optional(&mut *tx)
                .await?;
            match existing {
                Some(row) => {
                    let id: i32 = row.try_get("id")?;
                    let details: Option<Value> = row.try_get::<Option<Json<Value>>, _>("details")?.map(|json| json.0);
                    sqlx::query(sql::UPDATE_API_CALL_DETAILS)
                        .bind(id)
                        .bind(Json(merged_usage_details(details.as_ref(), delta)))
                        .execute(&mut *tx)
                        .await?;
                }
                None => {
                    let entry = AuditEntry {
                        integration_id: Some(delta.integration_id),
                        user_id: delta.user_id,
                        action: AuditAction::ApiCall,
                        provider: delta.provider.clone(),
                        scopes: None,
                        client: ClientInfo::default(),
                        success: true,
                        error_message: None,
                        duration_ms: None,
                        metadata: None,
                        details: Some(merged_usage_details(None, delta)),
                        created_at: delta.minute,
                    };
                    Self::insert_audit(&mut tx, &entry).await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }
}
