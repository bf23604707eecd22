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
fn demo_credentials_from_another_folder_refuses_instead_of_making_new_secrets() {
    let elsewhere = std::env::temp_dir().join(format!("oam-elsewhere-{}", oauth_manager::crypto::random_token(6)));
    std::fs::create_dir_all(&elsewhere).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_oauth-manager"))
        .arg("demo-credentials")
        .env_clear()
        .current_dir(&elsewhere)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("no development secrets in") && stderr.contains("OAUTH_DATA_DIR"), "{stderr}");
    assert!(!elsewhere.join(".oauth-manager").exists(), "no second data folder was created");
    std::fs::remove_dir_all(elsewhere).ok();
}

#[test]
fn check_config_with_nothing_set_uses_the_embedded_defaults() {
    let output = oauth_manager(&["check-config"], &[]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.contains("database: Sqlite"), "{stdout}");
    assert!(stdout.contains("sandbox mode: on (SQLite and no provider credentials)"), "{stdout}");
    assert!(stdout.contains("provider google: served by the sandbox emulator"), "{stdout}");
    assert!(stdout.contains("(primary "), "the key ring's ids are listed: {stdout}");
    assert!(stdout.trim_end().ends_with("configuration OK"), "{stdout}");
}

/// PostgreSQL settings with every secret set, for `database_url`.
fn postgres_settings(database_url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("DATABASE_URL", database_url.to_owned()),
        ("JWT_SECRET_KEY", "jwt-secret-for-the-cli-test".to_owned()),
        ("OAUTH_ENCRYPTION_KEY", format!("k1:{}", "ab".repeat(32))),
        ("OAUTH_SERVICE_API_KEYS", "cli-test-service-key-0123456789".to_owned()),
        ("GOOGLE_CLIENT_ID", "cli-test-client".to_owned()),
        ("GOOGLE_CLIENT_SECRET", "cli-test-secret-hunter2".to_owned()),
    ]
}

fn check_config_with(settings: &[(&'static str, String)]) -> (Option<i32>, String, String) {
    let env: Vec<(&str, &str)> = settings.iter().map(|(name, value)| (*name, value.as_str())).collect();
    let output = oauth_manager(&["check-config"], &env);
    (output.status.code(), String::from_utf8(output.stdout).unwrap(), String::from_utf8(output.stderr).unwrap())
}

/// The test database's server, with `database` in place of its database.
fn test_server_with(database: &str) -> String {
    let url = crate::support::admin_url();
    let (server, _) = url.rsplit_once('/').expect("a database in TEST_DATABASE_URL");
    format!("{server}/{database}")
}

#[test]
fn check_config_fails_on_an_unreachable_database_and_says_why() {
    // Nothing listens on port 1: the connection is refused at once.
    let (code, stdout, stderr) = check_config_with(&postgres_settings("postgres://postgres@127.0.0.1:1/oauth"));
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("database reachable: no"), "{stdout}");
    assert!(stderr.contains("connecting to PostgreSQL at 127.0.0.1:1"), "{stderr}");
    assert!(stderr.contains("is the server running"), "{stderr}");
    assert!(!stdout.contains("configuration OK"), "{stdout}");
    assert!(!stdout.contains("hunter2") && !stderr.contains("hunter2"), "no secret printed");
}

#[test]
fn check_config_names_a_missing_database() {
    let (code, _, stderr) = check_config_with(&postgres_settings(&test_server_with("oam_no_such_database")));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("oam_no_such_database") && stderr.contains("does not exist"), "{stderr}");
    assert!(stderr.contains("createdb"), "{stderr}");
}

#[test]
fn check_config_reports_a_reachable_database_and_the_providers() {
    let (code, stdout, stderr) = check_config_with(&postgres_settings(&test_server_with("postgres")));
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("database reachable: PostgreSQL "), "{stdout}");
    assert!(stdout.contains("sandbox mode: off"), "{stdout}");
    assert!(stdout.contains("provider google: configured"), "{stdout}");
    assert!(stdout.contains("provider notion: no credentials (cannot be connected)"), "{stdout}");
    assert!(stdout.contains("encryption keys: k1 (primary k1)"), "{stdout}");
    assert!(!stdout.contains("hunter2") && !stderr.contains("hunter2"), "no secret printed");
}

#[test]
fn check_config_fails_when_nothing_can_be_connected() {
    let settings: Vec<_> = postgres_settings(&test_server_with("postgres"))
        .into_iter()
        .filter(|(name, _)| !name.starts_with("GOOGLE_"))
        .collect();
    let (code, _, stderr) = check_config_with(&settings);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("no provider has credentials and the sandbox is off"), "{stderr}");
}

#[tokio::test]
async fn serve_with_nothing_set_answers_healthz_and_shuts_down_gracefully() {
    let data_dir = std::env::temp_dir().join(format!("oam-serve-{}", oauth_manager::crypto::random_token(6)));
    std::fs::create_dir_all(&data_dir).unwrap();
    let log = data_dir.join("service.log");
    let env =
        [("OAUTH_DATA_DIR".to_owned(), data_dir.display().to_string()), ("RUST_LOG".to_owned(), "info".to_owned())];
    let service = crate::support::ServiceProcess::start_logging_to(&env, Some(&log)).await;
    let service_port = service.base_url.rsplit(':').next().unwrap().to_owned();
    let health = reqwest::get(format!("{}/healthz", service.base_url)).await.unwrap();
    assert_eq!(health.status(), 200);
    let sandbox = reqwest::get(format!("{}/_sandbox/google/.well-known/openid-configuration", service.base_url)).await;
    assert_eq!(sandbox.unwrap().status(), 200, "with nothing configured the sandbox serves the providers");
    let unknown = reqwest::get(format!("{}/no/such/route", service.base_url)).await.unwrap();
    assert_eq!(unknown.status(), 404);
    let status = service.terminate();
    assert!(status.success(), "SIGTERM ends it cleanly: {status:?}");
    assert!(data_dir.join("dev-secrets.toml").exists(), "development secrets were generated");
    // The log, written to a file: every line flushed at exit, no colour codes, the sandbox's
    // requests and unknown routes logged with their paths.
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(!log.contains('\u{1b}'), "no ANSI escape codes in a log file:\n{log}");
    assert!(log.contains("path=/_sandbox"), "a sandbox request is logged:\n{log}");
    assert!(log.contains("path=/no/such/route") && log.contains("status=404"), "an unknown route is logged:\n{log}");
    assert!(log.trim_end().ends_with("shut down"), "the last line is written before exit:\n{log}");
    let port = service_port;
    let next_step = format!("next: open http://localhost:{port}/ in a browser");
    assert!(log.contains(&next_step), "start-up says which page to open:\n{log}");
    std::fs::remove_dir_all(data_dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line_with_the_request_id_on_every_request_line() {
    let data_dir = std::env::temp_dir().join(format!("oam-json-{}", oauth_manager::crypto::random_token(6)));
    std::fs::create_dir_all(&data_dir).unwrap();
    let log = data_dir.join("service.log");
    let env = [
        ("OAUTH_DATA_DIR".to_owned(), data_dir.display().to_string()),
        ("LOG_FORMAT".to_owned(), "json".to_owned()),
        ("RUST_LOG".to_owned(), "info".to_owned()),
    ];
    let service = crate::support::ServiceProcess::start_logging_to(&env, Some(&log)).await;
    let client = reqwest::Client::new();
    let answer = client.get(format!("{}/api/v1/oauth/integrations", service.base_url)).send().await.unwrap();
    let request_id = answer.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(service.terminate().success());
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(!log.contains('\u{1b}'), "no colour codes");
    let lines: Vec<serde_json::Value> =
        log.lines().map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"))).collect();
    let of_request: Vec<&serde_json::Value> =
        lines.iter().filter(|line| line.to_string().contains(&request_id)).collect();
    assert!(!of_request.is_empty(), "the request's lines carry its id {request_id}:\n{log}");
    for line in &of_request {
        assert_eq!(line["span"]["request_id"], request_id.as_str(), "{line}");
    }
    let answered = of_request.iter().any(|line| line["status"] == 401 || line["status"] == "401");
    assert!(answered, "the access-log line of the 401 names the request:\n{log}");
    std::fs::remove_dir_all(data_dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_exits_zero_only_when_the_service_is_ready() {
    let data_dir = std::env::temp_dir().join(format!("oam-health-{}", oauth_manager::crypto::random_token(6)));
    let env = [("OAUTH_DATA_DIR".to_owned(), data_dir.display().to_string())];
    let service = crate::support::ServiceProcess::start(&env).await;
    let port = service.base_url.rsplit(':').next().unwrap().to_owned();
    let check = |port: String| {
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_oauth-manager")).arg("healthcheck").env_clear().env("PORT", port).output()
        })
    };
    let ready = check(port.clone()).await.unwrap().unwrap();
    assert!(ready.status.success(), "{}", String::from_utf8_lossy(&ready.stderr));
    assert!(service.terminate().success());
    let gone = check(port).await.unwrap().unwrap();
    assert_eq!(gone.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&gone.stderr).contains("is not ready"));
    std::fs::remove_dir_all(data_dir).ok();
}
