//! A provider beyond the built-ins is a configuration entry, storable after the explicit opt-in.

use serde_json::json;

use super::support::{API, Harness, flow_cookie, json_body, problem, service_get};
use crate::support::{Backend, TestApp};

fn acme_provider(google_emulator: &str) -> String {
    format!(
        r#"
[providers.acme]
display_name = "Acme"
authorization_url = "{g}/authorize"
token_url = "{g}/token"
revocation_url = "{g}/revoke"
issuer = "{g}"
issuer_aliases = ["{bare}"]
jwks_uri = "{g}/jwks"
client_auth = "client_secret_post"
pkce = true
client_id_env = "GOOGLE_CLIENT_ID"
client_secret_env = "GOOGLE_CLIENT_SECRET"
default_scopes = ["openid", "email"]
identity = {{ source = "id_token", user_id = ["/sub"], email = "/email" }}
scopes = [{{ name = "openid", display_name = "Identity" }}, {{ name = "email", display_name = "E-mail" }}]
"#,
        g = google_emulator,
        bare = google_emulator.trim_start_matches("http://"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_provider_is_refused_until_the_opt_in_migration_then_connects() {
    let h = Harness::start(Backend::Postgres).await;
    let mut config = h.config();
    config.providers_toml = Some(format!("{}\n{}", config.providers_toml.unwrap(), acme_provider(&h.google.base_url)));
    let app = TestApp::spawn(config).await;
    let initiate = || async {
        app.client
            .post(app.url(&format!("{API}/initiate")))
            .bearer_auth(&h.user.token)
            .json(&json!({"provider": "acme"}))
            .send()
            .await
            .unwrap()
    };

    let refused = problem(initiate().await, 400, "provider_not_allowed").await;
    assert!(refused["detail"].as_str().unwrap().contains("opt-in"), "{refused}");

    app.state.vault.store.allow_custom_providers().await.unwrap();
    app.state.vault.store.allow_custom_providers().await.expect("the opt-in is idempotent");
    let initiated = initiate().await;
    let cookie = flow_cookie(&initiated).expect("initiate sets the flow cookie");
    let flow = json_body(initiated, 200).await;
    // This browser holds the flow's cookie (it called /initiate itself): it opens the link.
    let link = flow["authorization_url"].as_str().unwrap();
    let provider_url = super::support::provider_url(&app.client, link, Some(&cookie)).await;
    let callback = h.approve(&provider_url, None, None).await;
    assert!(callback.contains("/callback/acme"));
    let connected = json_body(app.client.get(&callback).header("cookie", cookie).send().await.unwrap(), 200).await;
    assert_eq!(connected["provider"], "acme");
    let id = connected["integration_id"].as_i64().unwrap();
    let token = json_body(service_get(&app, &format!("{API}/integrations/{id}/token")).await, 200).await;
    assert!(h.google.handle.is_access_token_live(token["access_token"].as_str().unwrap()));
}
