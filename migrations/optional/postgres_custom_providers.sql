-- Opt-in, never run by default: `oauth-manager migrate --allow-custom-providers`.
-- The existing schema allows only google, microsoft, notion and youtube in its provider columns.
-- Providers added through OAUTH_PROVIDERS_FILE need those CHECK constraints relaxed; this replaces
-- each with a check of the name's shape (what the provider registry accepts). Idempotent.
ALTER TABLE oauth_integrations DROP CONSTRAINT IF EXISTS oauth_integrations_provider_check;
ALTER TABLE oauth_scopes       DROP CONSTRAINT IF EXISTS oauth_scopes_provider_check;
ALTER TABLE oauth_audit_log    DROP CONSTRAINT IF EXISTS oauth_audit_log_provider_check;
ALTER TABLE oauth_state        DROP CONSTRAINT IF EXISTS oauth_state_provider_check;
ALTER TABLE oauth_integrations DROP CONSTRAINT IF EXISTS oauth_integrations_provider_name;
ALTER TABLE oauth_scopes       DROP CONSTRAINT IF EXISTS oauth_scopes_provider_name;
ALTER TABLE oauth_audit_log    DROP CONSTRAINT IF EXISTS oauth_audit_log_provider_name;
ALTER TABLE oauth_state        DROP CONSTRAINT IF EXISTS oauth_state_provider_name;
ALTER TABLE oauth_integrations ADD CONSTRAINT oauth_integrations_provider_name CHECK (provider ~ '^[a-z0-9_-]{1,50}$');
ALTER TABLE oauth_scopes       ADD CONSTRAINT oauth_scopes_provider_name CHECK (provider ~ '^[a-z0-9_-]{1,50}$');
ALTER TABLE oauth_audit_log    ADD CONSTRAINT oauth_audit_log_provider_name CHECK (provider ~ '^[a-z0-9_-]{1,50}$');
ALTER TABLE oauth_state        ADD CONSTRAINT oauth_state_provider_name CHECK (provider ~ '^[a-z0-9_-]{1,50}$');
