-- The webhook outbox: oauth-manager's own table (the host application's six oauth_* tables stay
-- exactly as they are). One row per event and endpoint, kept until delivered or given up.
CREATE TABLE IF NOT EXISTS oauth_manager_webhook_outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint        TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    payload         TEXT NOT NULL,
    created_at      TIMESTAMP NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMP NOT NULL,
    last_error      TEXT,
    delivered_at    TIMESTAMP,
    failed_at       TIMESTAMP
);
CREATE INDEX IF NOT EXISTS idx_oauth_manager_webhook_outbox_due
    ON oauth_manager_webhook_outbox (next_attempt_at) WHERE delivered_at IS NULL AND failed_at IS NULL;
