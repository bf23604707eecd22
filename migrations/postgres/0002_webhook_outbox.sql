-- The webhook outbox: oauth-manager's own table, named oam_* as its own tables are (the host
-- application's six oauth_* tables stay exactly as they are). One row per event and endpoint;
-- delivered and given-up rows are purged after a week. user_id names whom the event is about, so
-- an erasure can remove what was already sent (no foreign key: the users row may go first).
CREATE TABLE IF NOT EXISTS oam_webhook_outbox (
    id              BIGSERIAL PRIMARY KEY,
    endpoint        TEXT NOT NULL,
    user_id         INTEGER NOT NULL,
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
CREATE INDEX IF NOT EXISTS idx_oam_webhook_outbox_user_id ON oam_webhook_outbox (user_id);
CREATE INDEX IF NOT EXISTS idx_oam_webhook_outbox_due
    ON oam_webhook_outbox (next_attempt_at) WHERE delivered_at IS NULL AND failed_at IS NULL;
