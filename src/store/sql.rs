//! The store's SQL, one text for both databases. It stays portable: no casts (sqlx sends every
//! parameter's type to PostgreSQL), no `GREATEST`/`MAX`, types carried by the codecs. What the
//! dialects cannot share (row locks) is in `Dialect`.

/// Columns of an `IntegrationRow` (a macro so queries stay `&'static str` via `concat!`).
macro_rules! integration_columns {
    () => {
        "i.id, i.user_id, i.provider, i.provider_user_id, i.status, i.scopes,
    i.provider_metadata, i.created_at, i.updated_at, i.last_sync_at, i.error_message,
    COALESCE(i.error_count, 0) AS error_count, t.expires_at AS token_expires_at,
    (t.refresh_token IS NOT NULL) AS has_refresh_token"
    };
}

/// Columns of a `TokenRow`.
macro_rules! token_columns {
    () => {
        "t.integration_id, i.user_id, i.provider, i.status, t.access_token,
    t.refresh_token, t.token_type, t.expires_at, t.scope, t.updated_at"
    };
}

/// Readiness round trip.
pub const PING: &str = "SELECT 1";

/// Creates a `users` row (sandbox and tests; the host app owns users).
pub const INSERT_USER: &str = "INSERT INTO users (email, is_active) VALUES ($1, true) RETURNING id";

/// A user id by e-mail.
pub const FIND_USER: &str = "SELECT id FROM users WHERE email = $1";

/// Upserts one catalogue entry on `(provider, scope_name)`.
pub const UPSERT_SCOPE: &str = "INSERT INTO oauth_scopes (provider, scope_name, display_name, description, category,
                    is_required, is_dangerous)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (provider, scope_name) DO UPDATE SET display_name = EXCLUDED.display_name,
                    description = EXCLUDED.description, category = EXCLUDED.category,
                    is_required = EXCLUDED.is_required, is_dangerous = EXCLUDED.is_dangerous";

/// A provider's scope catalogue.
pub const LIST_SCOPES: &str = "SELECT scope_name, display_name, COALESCE(description, '') AS description,
                COALESCE(category, '') AS category, is_required, is_dangerous
             FROM oauth_scopes WHERE provider = $1 ORDER BY id";

/// Records an authorization state.
pub const INSERT_STATE: &str =
    "INSERT INTO oauth_state (state_token, user_id, provider, scopes, redirect_uri, code_verifier,
                code_challenge, state_metadata, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

/// A state by the hash of its value.
pub const FIND_STATE: &str =
    "SELECT id, state_token, user_id, provider, scopes, redirect_uri, code_verifier, code_challenge,
                state_metadata, expires_at, is_used
             FROM oauth_state WHERE state_token = $1";

/// Binds the browser that opened a flow's authorization link: the state's metadata and expiry
/// change if the metadata is still the one read (`$4`), so only the first browser gets it.
pub const CLAIM_HANDOFF: &str = "UPDATE oauth_state SET state_metadata = $2, expires_at = $3
             WHERE id = $1 AND is_used = false AND state_metadata = $4 RETURNING id";

/// A user's unused, unexpired states: how many, and the first expiry. Only `user_id` may lead
/// the plan: the `COALESCE`s keep PostgreSQL off the `is_used` and `expires_at` indexes, which a
/// generic plan picked when the statistics saw few unused states, and which then scanned every
/// unused state of every user per `POST /initiate` (abandoned flows pile up; BENCHMARKS.md).
pub const OPEN_STATES: &str = "SELECT COUNT(*), MIN(expires_at) FROM oauth_state
             WHERE user_id = $1 AND COALESCE(is_used, false) = false AND COALESCE(expires_at, expires_at) > $2";

/// Spends a state once, if unused and unexpired (RFC 9700 §2.1.1).
pub const CONSUME_STATE: &str = "UPDATE oauth_state SET is_used = true, used_at = $2
             WHERE id = $1 AND is_used = false AND expires_at > $2 RETURNING id";

/// Purges expired states.
pub const DELETE_EXPIRED_STATES: &str = "DELETE FROM oauth_state WHERE expires_at < $1 RETURNING id";

/// Creates or reconnects the one integration per `(user_id, provider)`.
pub const UPSERT_INTEGRATION: &str =
    "INSERT INTO oauth_integrations (user_id, provider, provider_user_id, status, scopes,
                provider_metadata, created_at, updated_at, last_sync_at, error_message, error_count)
             VALUES ($1, $2, $3, 'active', $4, $5, $6, $6, $6, NULL, 0)
             ON CONFLICT (user_id, provider) DO UPDATE SET provider_user_id = EXCLUDED.provider_user_id,
                status = 'active', scopes = EXCLUDED.scopes, provider_metadata = EXCLUDED.provider_metadata,
                updated_at = EXCLUDED.updated_at, last_sync_at = EXCLUDED.last_sync_at,
                error_message = NULL, error_count = 0
             RETURNING id";

/// A reconnect's tokens over the existing row; `$8` keeps the stored refresh token when the
/// provider sent none (`rules::keeps_stored_refresh_token`).
pub const UPDATE_CONNECTED_TOKEN: &str = "UPDATE oauth_tokens SET access_token = $2,
                refresh_token = CASE WHEN $3 IS NOT NULL THEN $3 WHEN $8 THEN refresh_token ELSE NULL END,
                token_type = $4, expires_at = $5, scope = $6, updated_at = $7
             WHERE integration_id = $1 RETURNING integration_id";

/// The token row of a first connection.
pub const INSERT_TOKEN: &str =
    "INSERT INTO oauth_tokens (integration_id, access_token, refresh_token, token_type, expires_at,
                    scope, created_at, updated_at, usage_count)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $7, 0)";

/// A consent row per grant.
pub const INSERT_CONSENT: &str =
    "INSERT INTO oauth_consents (integration_id, scopes, granted_at, ip_address, user_agent, consent_version)
             VALUES ($1, $2, $3, $4, $5, $6)";

/// One integration with its token facts.
pub const SELECT_INTEGRATION: &str = concat!(
    "SELECT ",
    integration_columns!(),
    " FROM oauth_integrations i LEFT JOIN oauth_tokens t ON t.integration_id = i.id WHERE i.id = $1"
);

/// A user's integrations, optionally of one provider (`$2`) and only `pending`/`active` (`$3`).
pub const LIST_INTEGRATIONS: &str = concat!(
    "SELECT ",
    integration_columns!(),
    " FROM oauth_integrations i
     LEFT JOIN oauth_tokens t ON t.integration_id = i.id
     WHERE i.user_id = $1 AND ($2 IS NULL OR i.provider = $2)
       AND (NOT $3 OR i.status IN ('pending', 'active'))
     ORDER BY i.id"
);

/// The token of an integration, with its owner (the hand-out's one read).
pub const SELECT_TOKEN: &str = concat!(
    "SELECT ",
    token_columns!(),
    " FROM oauth_tokens t JOIN oauth_integrations i ON i.id = t.integration_id
     WHERE t.integration_id = $1 ORDER BY t.id DESC LIMIT 1"
);

/// The token of a user's integration with a provider.
pub const SELECT_TOKEN_BY_OWNER: &str = concat!(
    "SELECT ",
    token_columns!(),
    " FROM oauth_integrations i JOIN oauth_tokens t ON t.integration_id = i.id
     WHERE i.user_id = $1 AND i.provider = $2 ORDER BY t.id DESC LIMIT 1"
);

/// Hand-out counters of a token.
pub const TOKEN_USAGE: &str =
    "SELECT COALESCE(usage_count, 0), last_used_at FROM oauth_tokens WHERE integration_id = $1
             ORDER BY id DESC LIMIT 1";

/// Whether the token row is still the one a refresh decided on: `updated_at` changes with every
/// connect and refresh, and with nothing else (re-encryption under a new key keeps it).
pub const TOKEN_STILL_CURRENT: &str =
    "SELECT integration_id FROM oauth_tokens WHERE integration_id = $1 AND updated_at = $2";

/// Writes a refresh's tokens; `NULL` keeps the refresh token of providers that do not rotate.
pub const STORE_REFRESHED_TOKENS: &str =
    "UPDATE oauth_tokens SET access_token = $2, refresh_token = COALESCE($3, refresh_token),
                        token_type = $4, expires_at = $5, scope = COALESCE($6, scope), updated_at = $7
                     WHERE integration_id = $1";

/// Marks an integration active after a refresh, clearing its error.
pub const MARK_REFRESHED: &str = "UPDATE oauth_integrations SET status = 'active', scopes = COALESCE($2, scopes),
                        last_sync_at = $3, updated_at = $3, error_message = NULL, error_count = 0
                     WHERE id = $1";

/// Records a failed refresh; `$2` marks it for re-authorisation.
pub const MARK_REFRESH_FAILED: &str =
    "UPDATE oauth_integrations SET status = CASE WHEN $2 THEN 'error' ELSE status END,
                        error_message = $3, error_count = COALESCE(error_count, 0) + 1, updated_at = $4
                     WHERE id = $1";

/// Active integrations with a refresh token whose access token expires before `$1`, handed out
/// since `$3` (all of them when `$3` is NULL).
pub const EXPIRING_INTEGRATIONS: &str =
    "SELECT i.id FROM oauth_integrations i JOIN oauth_tokens t ON t.integration_id = i.id
             WHERE i.status = 'active' AND t.refresh_token IS NOT NULL AND t.expires_at < $1
               AND ($3 IS NULL OR t.last_used_at >= $3)
             ORDER BY t.expires_at LIMIT $2";

/// Active integrations of provider `$1` with a refresh token last renewed before `$2`, the
/// longest unrenewed first.
pub const UNRENEWED_INTEGRATIONS: &str =
    "SELECT i.id FROM oauth_integrations i JOIN oauth_tokens t ON t.integration_id = i.id
             WHERE i.status = 'active' AND i.provider = $1 AND t.refresh_token IS NOT NULL AND t.updated_at < $2
             ORDER BY t.updated_at LIMIT $3";

/// Forgets an integration's tokens.
pub const DELETE_TOKENS: &str = "DELETE FROM oauth_tokens WHERE integration_id = $1";

/// Marks an integration revoked.
pub const MARK_REVOKED: &str =
    "UPDATE oauth_integrations SET status = 'revoked', updated_at = $2, error_message = NULL WHERE id = $1";

/// Revokes an integration's consents with the reason.
pub const REVOKE_CONSENTS: &str = "UPDATE oauth_consents SET is_revoked = true, revoked_at = $2, revoked_reason = $3
             WHERE integration_id = $1 AND is_revoked = false";

/// Writes one audit row.
pub const INSERT_AUDIT: &str =
    "INSERT INTO oauth_audit_log (integration_id, user_id, action, provider, scopes, ip_address,
                user_agent, success, error_message, duration_ms, action_metadata, created_at, status, details)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)";

/// Audit rows by the optional filters `$1`-`$6`, newest first, at most `$7`.
pub const LIST_AUDIT: &str = "SELECT id, integration_id, user_id, action, provider, scopes, ip_address,
                user_agent, success, error_message, duration_ms, action_metadata, details, status, created_at
             FROM oauth_audit_log
             WHERE ($1 IS NULL OR user_id = $1) AND ($2 IS NULL OR integration_id = $2)
               AND ($3 IS NULL OR action = $3) AND ($4 IS NULL OR created_at >= $4)
               AND ($5 IS NULL OR created_at < $5) AND ($6 IS NULL OR id < $6)
             ORDER BY id DESC LIMIT $7";

/// A user's consents with their integration's provider, newest first.
pub const LIST_CONSENTS: &str = "SELECT c.id, c.integration_id, i.provider, c.scopes, c.granted_at, c.expires_at,
                c.ip_address, c.user_agent, c.consent_version, c.is_revoked, c.revoked_at, c.revoked_reason
             FROM oauth_consents c JOIN oauth_integrations i ON i.id = c.integration_id
             WHERE i.user_id = $1 ORDER BY c.id DESC";

/// A user's integrations counted by provider and status.
pub const COUNT_INTEGRATIONS: &str = "SELECT provider, status, COUNT(*) FROM oauth_integrations WHERE user_id = $1
             GROUP BY provider, status ORDER BY provider, status";

/// A user's consents, all and revoked.
/// Every user's integrations, by provider and status (`/metrics`).
pub const COUNT_ALL_INTEGRATIONS: &str =
    "SELECT provider, status, COUNT(*) FROM oauth_integrations GROUP BY provider, status ORDER BY provider, status";
pub const COUNT_CONSENTS: &str = "SELECT COUNT(*), COUNT(CASE WHEN c.is_revoked THEN 1 END)
             FROM oauth_consents c JOIN oauth_integrations i ON i.id = c.integration_id WHERE i.user_id = $1";

/// Adds `$2` hand-outs to a token's counter (saturating at the INTEGER maximum) and moves its
/// `last_used_at` forward to `$3`.
pub const ADD_USAGE: &str = "UPDATE oauth_tokens SET
                usage_count = CASE WHEN COALESCE(usage_count, 0) > 2147483647 - $2 THEN 2147483647
                                   ELSE COALESCE(usage_count, 0) + $2 END,
                last_used_at = CASE WHEN last_used_at IS NULL OR last_used_at < $3 THEN $3 ELSE last_used_at END
             WHERE integration_id = $1";

/// The `api_call` row of an integration and the minute from `$2` to `$3` (its `created_at` is the
/// minute's last counted hand-out; rows written before that change carry the minute's start).
pub const FIND_API_CALL_ROW: &str = "SELECT id, details FROM oauth_audit_log
                 WHERE integration_id = $1 AND action = 'api_call' AND created_at >= $2 AND created_at < $3
                 ORDER BY id LIMIT 1";

/// Updates the aggregate of an `api_call` row, moving its time to the last hand-out `$3`.
pub const UPDATE_API_CALL_DETAILS: &str = "UPDATE oauth_audit_log SET details = $2,
                 created_at = CASE WHEN created_at < $3 THEN $3 ELSE created_at END WHERE id = $1";

/// Token rows after `$2` with a value not under the key whose `LIKE` pattern is `$1`, oldest first.
pub const TOKENS_NOT_UNDER: &str = "SELECT t.id, i.user_id, i.provider, t.access_token, t.refresh_token
             FROM oauth_tokens t JOIN oauth_integrations i ON i.id = t.integration_id
             WHERE t.id > $2 AND (t.access_token NOT LIKE $1 ESCAPE '\\' OR t.refresh_token NOT LIKE $1 ESCAPE '\\')
             ORDER BY t.id LIMIT $3";

/// Replaces a token row's ciphertexts if they are still the ones read (`$4`, `$5`).
pub const REENCRYPT_TOKEN: &str = "UPDATE oauth_tokens SET access_token = $2, refresh_token = $3
             WHERE id = $1 AND access_token = $4 AND (refresh_token = $5 OR (refresh_token IS NULL AND $5 IS NULL))
             RETURNING id";

/// Unused states after `$2` whose verifier is not under the key whose pattern is `$1`.
pub const VERIFIERS_NOT_UNDER: &str = "SELECT id, state_token, code_verifier FROM oauth_state
             WHERE id > $2 AND is_used = false AND code_verifier NOT LIKE $1 ESCAPE '\\' ORDER BY id LIMIT $3";

/// Replaces a state's encrypted verifier if it is still the one read (`$3`).
pub const REENCRYPT_VERIFIER: &str =
    "UPDATE oauth_state SET code_verifier = $2 WHERE id = $1 AND code_verifier = $3 RETURNING id";

/// How many stored secrets match the `LIKE` pattern `$1` (`%`: all of them).
pub const SECRETS_LIKE: &str = "SELECT (SELECT COUNT(*) FROM oauth_tokens WHERE access_token LIKE $1 ESCAPE '\\')
             + (SELECT COUNT(*) FROM oauth_tokens WHERE refresh_token LIKE $1 ESCAPE '\\')
             + (SELECT COUNT(*) FROM oauth_state WHERE is_used = false AND code_verifier LIKE $1 ESCAPE '\\')";

/// Offboarding (`oauth::offboarding::erase`): a user's rows, children first, in one transaction.
/// Consents and tokens hang off the user's integrations; audit rows name the user (and may name
/// an integration of theirs); states name the user. Each returns the ids it deleted, counted.
pub const ERASE_CONSENTS: &str = "DELETE FROM oauth_consents WHERE integration_id IN (SELECT id FROM oauth_integrations WHERE user_id = $1) RETURNING id";
pub const ERASE_TOKENS: &str = "DELETE FROM oauth_tokens WHERE integration_id IN (SELECT id FROM oauth_integrations WHERE user_id = $1) RETURNING id";
/// Audit rows of other users (an administrator's action on an erased user's integration) keep
/// their row but no longer name the integration.
pub const ERASE_AUDIT_REFERENCES: &str = "UPDATE oauth_audit_log SET integration_id = NULL
             WHERE user_id <> $1 AND integration_id IN (SELECT id FROM oauth_integrations WHERE user_id = $1)
             RETURNING id";
pub const ERASE_AUDIT: &str = "DELETE FROM oauth_audit_log WHERE user_id = $1 RETURNING id";
pub const ERASE_STATES: &str = "DELETE FROM oauth_state WHERE user_id = $1 RETURNING id";
pub const ERASE_INTEGRATIONS: &str = "DELETE FROM oauth_integrations WHERE user_id = $1 RETURNING id";

/// The webhook outbox (`oauth::webhooks`): one row per event and endpoint.
pub const INSERT_WEBHOOK: &str = "INSERT INTO oam_webhook_outbox
                (endpoint, user_id, event_id, event_type, payload, created_at, next_attempt_at)
             VALUES ($1, $2, $3, $4, $5, $6, $6)";
/// Deliveries done with (delivered or given up) before `$1`.
pub const PURGE_WEBHOOKS: &str = "DELETE FROM oam_webhook_outbox
             WHERE (delivered_at IS NOT NULL AND delivered_at < $1) OR (failed_at IS NOT NULL AND failed_at < $1)
             RETURNING id";
/// An erased user's deliveries already done with (those still to send tell of the erasure).
pub const ERASE_WEBHOOKS: &str = "DELETE FROM oam_webhook_outbox
             WHERE user_id = $1 AND (delivered_at IS NOT NULL OR failed_at IS NOT NULL) RETURNING id";
/// A delivery that succeeded.
pub const WEBHOOK_DELIVERED: &str = "UPDATE oam_webhook_outbox
             SET delivered_at = $2, attempts = attempts + 1, last_error = NULL WHERE id = $1";
/// A delivery that failed and will be tried again at `$4`.
pub const WEBHOOK_RETRY: &str = "UPDATE oam_webhook_outbox
             SET attempts = $2, last_error = $3, next_attempt_at = $4 WHERE id = $1";
/// A delivery given up after its last attempt.
pub const WEBHOOK_GIVE_UP: &str = "UPDATE oam_webhook_outbox
             SET attempts = $2, last_error = $3, failed_at = $4 WHERE id = $1";
