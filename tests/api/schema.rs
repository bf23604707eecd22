//! `migrate` on the production schema changes nothing; the schema fixture is the contract's.

use std::process::Command;

use oauth_manager::store::{PgStore, Store};

use crate::support::existing_schema_database;

fn schema_dump(url: &str) -> String {
    let output = Command::new("pg_dump")
        .args([
            "--schema-only",
            "--no-owner",
            "--no-privileges",
            "--exclude-table=_sqlx_migrations",
            // The service's own table (the webhook outbox), beside the host application's.
            "--exclude-table=oam_webhook_outbox*",
            url,
        ])
        .output()
        .expect("pg_dump is installed (postgresql-client)");
    assert!(output.status.success(), "pg_dump failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        // pg_dump 15+ prints a per-run restrict key in these meta-commands on some versions.
        .filter(|line| !line.starts_with("\\restrict") && !line.starts_with("\\unrestrict"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn migrate_leaves_the_existing_schema_byte_for_byte_identical() {
    let url = existing_schema_database().await;
    let before = schema_dump(&url);
    assert!(before.contains("CREATE TABLE public.oauth_state"), "the dump covers the oauth tables");

    let store = PgStore::connect(&url, 2).await.unwrap();
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();

    let after = schema_dump(&url);
    assert_eq!(before, after);
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(
        tables,
        [
            "_sqlx_migrations",
            "oam_webhook_outbox",
            "oauth_audit_log",
            "oauth_consents",
            "oauth_integrations",
            "oauth_scopes",
            "oauth_state",
            "oauth_tokens",
            "users"
        ],
        "migrate adds only its own tables: sqlx's bookkeeping and the webhook outbox"
    );
}

#[test]
fn the_fixture_is_the_contracts_schema() {
    // Beside a checkout that has the contract's folder, the copy must not drift from it; a clone
    // with nothing beside it has only the fixture, and that is enough.
    let contract = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/existing_schema.sql");
    match std::fs::read_to_string(&contract) {
        Ok(original) => assert_eq!(crate::support::EXISTING_SCHEMA, original, "tests/fixtures/existing_schema.sql"),
        Err(_) => assert!(
            crate::support::EXISTING_SCHEMA.contains("CREATE TABLE IF NOT EXISTS oauth_tokens"),
            "the fixture is whole"
        ),
    }
}
