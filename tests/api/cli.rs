//! The binary's start-up: a bad or missing setting stops it with one line naming the setting.

use std::process::Command;

fn oauth_manager(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let data_dir = std::env::temp_dir().join(format!("oam-cli-{}", oauth_manager::crypto::random_token(6)));
    let mut command = Command::new(env!("CARGO_BIN_EXE_oauth-manager"));
    command.args(args).env_clear().env("OAUTH_DATA_DIR", &data_dir);
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("the binary runs")
}

#[test]
fn postgres_without_secrets_refuses_to_start_naming_the_setting() {
    let output = oauth_manager(&["check-config"], &[("DATABASE_URL", "postgres://127.0.0.1/nothing")]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("JWT_SECRET_KEY"), "{stderr}");
}

#[test]
fn a_malformed_key_is_named_and_not_echoed() {
    let output = oauth_manager(
        &["check-config"],
        &[
            ("DATABASE_URL", "postgres://127.0.0.1/nothing"),
            ("JWT_SECRET_KEY", "jwt-secret-for-the-test"),
            ("OAUTH_ENCRYPTION_KEY", "not-a-key-hunter2"),
        ],
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("OAUTH_ENCRYPTION_KEY"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "the value is never printed: {stderr}");
}

#[test]
fn check_config_with_nothing_set_uses_the_embedded_defaults() {
    let output = oauth_manager(&["check-config"], &[]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.contains("database: Sqlite"), "{stdout}");
    assert!(stdout.contains("provider google: no credentials"), "{stdout}");
}

#[tokio::test]
async fn serve_with_nothing_set_answers_healthz_and_shuts_down_gracefully() {
    let data_dir = std::env::temp_dir().join(format!("oam-serve-{}", oauth_manager::crypto::random_token(6)));
    let env = [("OAUTH_DATA_DIR".to_owned(), data_dir.display().to_string())];
    let service = crate::support::ServiceProcess::start(&env).await;
    let health = reqwest::get(format!("{}/healthz", service.base_url)).await.unwrap();
    assert_eq!(health.status(), 200);
    let sandbox = reqwest::get(format!("{}/_sandbox/google/.well-known/openid-configuration", service.base_url)).await;
    assert_eq!(sandbox.unwrap().status(), 200, "with nothing configured the sandbox serves the providers");
    let status = service.terminate();
    assert!(status.success(), "SIGTERM ends it cleanly: {status:?}");
    assert!(data_dir.join("dev-secrets.toml").exists(), "development secrets were generated");
    std::fs::remove_dir_all(data_dir).ok();
}
