-- The embedded schema: the same tables, columns, CHECK constraints, foreign keys and unique keys as
-- the PostgreSQL one, with types mapped: SERIAL -> INTEGER PRIMARY KEY AUTOINCREMENT, TEXT[] and
-- JSONB -> JSON text, INET -> TEXT, TIMESTAMP -> TEXT in sqlx's 'YYYY-MM-DD HH:MM:SS.fff' UTC form.

CREATE TABLE IF NOT EXISTS users (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    email      TEXT NOT NULL UNIQUE,
    full_name  TEXT,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    is_active  BOOLEAN
);

CREATE TABLE IF NOT EXISTS oauth_integrations (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id           INTEGER NOT NULL REFERENCES users(id),
    provider          VARCHAR(50) NOT NULL
                      CHECK (provider IN ('google', 'microsoft', 'notion', 'youtube')),
    provider_user_id  VARCHAR(255),
    status            VARCHAR(20) NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'active', 'revoked', 'error')),
    scopes            TEXT NOT NULL DEFAULT '[]',
    provider_metadata TEXT,
    created_at        TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at        TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    last_sync_at      TIMESTAMP,
    error_message     TEXT,
    error_count       INTEGER DEFAULT 0,
    CONSTRAINT oauth_integrations_user_id_provider_key UNIQUE (user_id, provider)
);
CREATE INDEX IF NOT EXISTS idx_oauth_integrations_user_id    ON oauth_integrations (user_id);
CREATE INDEX IF NOT EXISTS idx_oauth_integrations_provider   ON oauth_integrations (provider);
CREATE INDEX IF NOT EXISTS idx_oauth_integrations_status     ON oauth_integrations (status);
CREATE INDEX IF NOT EXISTS idx_oauth_integrations_created_at ON oauth_integrations (created_at);

CREATE TABLE IF NOT EXISTS oauth_tokens (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    integration_id INTEGER NOT NULL REFERENCES oauth_integrations(id),
    access_token   TEXT NOT NULL,
    refresh_token  TEXT,
    token_type     VARCHAR(20) NOT NULL DEFAULT 'Bearer',
    expires_at     TIMESTAMP NOT NULL,
    scope          TEXT,
    created_at     TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at     TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    last_used_at   TIMESTAMP,
    usage_count    INTEGER DEFAULT 0
);
CREATE INDEX IF NOT EXISTS idx_oauth_tokens_integration_id ON oauth_tokens (integration_id);
CREATE INDEX IF NOT EXISTS idx_oauth_tokens_expires_at     ON oauth_tokens (expires_at);
CREATE INDEX IF NOT EXISTS idx_oauth_tokens_created_at     ON oauth_tokens (created_at);

CREATE TABLE IF NOT EXISTS oauth_scopes (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    provider     VARCHAR(50) NOT NULL
                 CHECK (provider IN ('google', 'microsoft', 'notion', 'youtube')),
    scope_name   VARCHAR(100) NOT NULL,
    display_name VARCHAR(200) NOT NULL,
    description  TEXT,
    category     VARCHAR(50),
    is_required  BOOLEAN NOT NULL DEFAULT false,
    is_dangerous BOOLEAN NOT NULL DEFAULT false,
    created_at   TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT oauth_scopes_provider_scope_name_key UNIQUE (provider, scope_name)
);
CREATE INDEX IF NOT EXISTS idx_oauth_scopes_provider ON oauth_scopes (provider);
CREATE INDEX IF NOT EXISTS idx_oauth_scopes_category ON oauth_scopes (category);

CREATE TABLE IF NOT EXISTS oauth_consents (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    integration_id  INTEGER NOT NULL REFERENCES oauth_integrations(id),
    scopes          TEXT NOT NULL,
    granted_at      TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    expires_at      TIMESTAMP,
    ip_address      TEXT,
    user_agent      TEXT,
    consent_version VARCHAR(20) NOT NULL DEFAULT '1.0',
    is_revoked      BOOLEAN NOT NULL DEFAULT false,
    revoked_at      TIMESTAMP,
    revoked_reason  VARCHAR(100)
);
CREATE INDEX IF NOT EXISTS idx_oauth_consents_integration_id ON oauth_consents (integration_id);
CREATE INDEX IF NOT EXISTS idx_oauth_consents_is_revoked     ON oauth_consents (is_revoked);
CREATE INDEX IF NOT EXISTS idx_oauth_consents_granted_at     ON oauth_consents (granted_at);

CREATE TABLE IF NOT EXISTS oauth_audit_log (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    integration_id  INTEGER REFERENCES oauth_integrations(id),
    user_id         INTEGER NOT NULL REFERENCES users(id),
    action          VARCHAR(50) NOT NULL
                    CHECK (action IN ('connect', 'disconnect', 'refresh', 'revoke', 'api_call', 'error')),
    provider        VARCHAR(50) NOT NULL
                    CHECK (provider IN ('google', 'microsoft', 'notion', 'youtube')),
    scopes          TEXT,
    ip_address      TEXT,
    user_agent      TEXT,
    success         BOOLEAN NOT NULL,
    error_message   TEXT,
    duration_ms     INTEGER,
    action_metadata TEXT,
    created_at      TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    status          VARCHAR(20) NOT NULL DEFAULT 'pending',
    details         TEXT
);
CREATE INDEX IF NOT EXISTS idx_oauth_audit_log_user_id        ON oauth_audit_log (user_id);
CREATE INDEX IF NOT EXISTS idx_oauth_audit_log_integration_id ON oauth_audit_log (integration_id);
CREATE INDEX IF NOT EXISTS idx_oauth_audit_log_provider       ON oauth_audit_log (provider);
CREATE INDEX IF NOT EXISTS idx_oauth_audit_log_action         ON oauth_audit_log (action);
CREATE INDEX IF NOT EXISTS idx_oauth_audit_log_success        ON oauth_audit_log (success);
CREATE INDEX IF NOT EXISTS idx_oauth_audit_log_created_at     ON oauth_audit_log (created_at);

CREATE TABLE IF NOT EXISTS oauth_state (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    state_token    VARCHAR(128) NOT NULL UNIQUE,
    user_id        INTEGER NOT NULL REFERENCES users(id),
    provider       VARCHAR(50) NOT NULL
                   CHECK (provider IN ('google', 'microsoft', 'notion', 'youtube')),
    scopes         TEXT NOT NULL,
    redirect_uri   VARCHAR(500),
    code_verifier  VARCHAR(128),
    code_challenge VARCHAR(128),
    state_metadata TEXT,
    created_at     TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    expires_at     TIMESTAMP NOT NULL,
    is_used        BOOLEAN NOT NULL DEFAULT false,
    used_at        TIMESTAMP
);
CREATE INDEX IF NOT EXISTS idx_oauth_state_token      ON oauth_state (state_token);
CREATE INDEX IF NOT EXISTS idx_oauth_state_user_id    ON oauth_state (user_id);
CREATE INDEX IF NOT EXISTS idx_oauth_state_provider   ON oauth_state (provider);
CREATE INDEX IF NOT EXISTS idx_oauth_state_expires_at ON oauth_state (expires_at);
CREATE INDEX IF NOT EXISTS idx_oauth_state_is_used    ON oauth_state (is_used);
CREATE INDEX IF NOT EXISTS idx_oauth_state_created_at ON oauth_state (created_at);
