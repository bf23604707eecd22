//! What the flow refuses: replayed, expired, unknown and foreign states, provider mix-ups, bad
//! ID tokens, open redirects; and that a refusal changes nothing.

use std::time::Duration;

use provider_emulators::{Fault, IdTokenFault};
use serde_json::json;

use super::support::{API, Harness, json_body, problem, query_param, sorted_strings, with_path, with_query_param};
use crate::on_both_backends;
use crate::support::Backend;

const RETURN_TO: &str = "http://app.test/settings/integrations";

async fn initiate_returns_a_pkce_authorization_url_for_the_provider_callback(backend: Backend) {
    let h = Harness::start(backend).await;
    let flow = h.initiated("google", json!({})).await;
    assert_eq!(flow["provider"], "google");
    assert_eq!(sorted_strings(&flow["scopes"]), ["email", "openid", "profile"]);
    assert!(flow["expires_at"].is_string(), "{flow}");
    // Called without a browser's Origin: the link passes through the service first.
    let link = flow["authorization_url"].as_str().unwrap();
    assert_eq!(link, h.app.url(&format!("{API}/handoff/{}", flow["state"].as_str().unwrap())));
    let url = &crate::flow::support::provider_url(&h.app.client, link, Some(&h.flow_cookies())).await;
    assert!(url.starts_with(&format!("{}/authorize?", h.google.base_url)), "{url}");
    let param = |name| query_param(url, name);
    assert_eq!(param("state").as_deref(), flow["state"].as_str());
    assert_eq!(param("redirect_uri"), Some(h.app.url(&format!("{API}/callback/google"))));
    assert_eq!(param("code_challenge_method").as_deref(), Some("S256"));
    assert_eq!(param("code_challenge").map(|c| c.len()), Some(43), "a base64url SHA-256 challenge");
    assert!(param("nonce").is_some_and(|n| !n.is_empty()), "OIDC nonce: {url}");
    assert_eq!(param("access_type").as_deref(), Some("offline"));
    assert_eq!(param("prompt").as_deref(), Some("consent"));

    let anonymous = h.app.client.post(h.app.url(&format!("{API}/initiate"))).json(&json!({"provider": "google"}));
    problem(anonymous.send().await.unwrap(), 401, "authentication_required").await;
}

async fn initiate_rejects_unknown_providers_and_scopes(backend: Backend) {
    let h = Harness::start(backend).await;
    problem(h.initiate("myspace", json!({})).await, 400, "unknown_provider").await;
    let scopes = json!({"scopes": ["openid", "https://www.googleapis.com/auth/everything"]});
    problem(h.initiate("google", scopes).await, 400, "unknown_scope").await;
    assert_eq!(h.google.handle.counters().authorizations, 0);
}

async fn initiate_rejects_an_unregistered_redirect_uri(backend: Backend) {
    let h = Harness::start(backend).await;
    let registered = h.app.url(&format!("{API}/callback/google"));
    for redirect_uri in [
        "http://evil.test/api/v1/oauth/callback/google".to_owned(),
        format!("{registered}/"),
        format!("{registered}?x=1"),
    ] {
        let response = h.initiate("google", json!({"redirect_uri": redirect_uri})).await;
        problem(response, 400, "invalid_redirect_uri").await;
    }
}

async fn initiate_rejects_a_return_to_outside_the_allowed_origins(backend: Backend) {
    let h = Harness::start(backend).await;
    for return_to in ["https://evil.test/x", "http://app.test.evil.test/x", "//evil.test/x", "javascript:alert(1)"] {
        let response = h.initiate("google", json!({"return_to": return_to})).await;
        problem(response, 400, "invalid_return_to").await;
    }
}

async fn callback_rejects_a_replayed_state(backend: Backend) {
    let h = Harness::start(backend).await;
    let flow = h.initiated("google", json!({})).await;
    let callback = h.approve(flow["authorization_url"].as_str().unwrap(), None, None).await;
    json_body(h.callback(&callback).await, 200).await;

    problem(h.callback(&callback).await, 400, "state_used").await;
    assert_eq!(h.google.handle.counters().code_exchanges, 1, "the replay never reached Google");
    assert_eq!(h.all_integrations().await.as_array().unwrap().len(), 1);
    let audit = json_body(h.get("/audit?action=connect").await, 200).await;
    assert_eq!(audit["events"].as_array().unwrap().len(), 1, "one connect, not two: {audit}");
}

async fn callback_rejects_an_expired_state(backend: Backend) {
    let config_file = std::env::temp_dir().join(format!("oam-flow-{}.toml", oauth_manager::crypto::random_token(6)));
    std::fs::write(&config_file, "[flow]\nstate_ttl_seconds = 1\n").unwrap();
    let path = config_file.display().to_string();
    let h = Harness::start_with(backend, |config| config.set("OAUTH_CONFIG_FILE", path)).await;
    let flow = h.initiated("google", json!({})).await;
    let callback = h.approve(flow["authorization_url"].as_str().unwrap(), None, None).await;

    tokio::time::sleep(Duration::from_millis(2100)).await;
    problem(h.callback(&callback).await, 400, "state_expired").await;
    assert_eq!(h.google.handle.counters().code_exchanges, 0);
    h.assert_nothing_written("expired state").await;
    let _ = std::fs::remove_file(config_file);
}

async fn callback_rejects_an_unknown_state(backend: Backend) {
    let h = Harness::start(backend).await;
    let flow = h.initiated("google", json!({})).await;
    let callback = h.approve(flow["authorization_url"].as_str().unwrap(), None, None).await;

    let forged = with_query_param(&callback, "state", "forged-state-value-0123456789");
    problem(h.callback(&forged).await, 400, "invalid_state").await;
    let stateless = h.app.url(&format!("{API}/callback/google?code=abc"));
    let body = json_body(h.callback(&stateless).await, 400).await;
    assert!(matches!(body["code"].as_str(), Some("invalid_state" | "invalid_request")), "{body}");
    assert_eq!(h.google.handle.counters().code_exchanges, 0);
    h.assert_nothing_written("unknown state").await;
}

async fn callback_rejects_another_users_browser_and_spends_the_state(backend: Backend) {
    let h = Harness::start(backend).await;
    let mallory = h.app.user("mallory@example.com").await;
    for by_cookie in [false, true] {
        let flow = h.initiated("google", json!({})).await;
        let callback = h.approve(flow["authorization_url"].as_str().unwrap(), None, None).await;
        let request = h.app.client.get(&callback);
        let request = if by_cookie {
            request.header("cookie", format!("access_token={}", mallory.token))
        } else {
            request.bearer_auth(&mallory.token)
        };
        problem(request.send().await.unwrap(), 400, "state_user_mismatch").await;
        // The refused response is spent: nobody can replay it, not even the browser that started it.
        problem(h.callback(&callback).await, 400, "state_used").await;
    }
    assert_eq!(h.google.handle.counters().code_exchanges, 0);
    h.assert_nothing_written("foreign browser").await;
    let mallorys = h.app.get(&format!("{API}/integrations?active_only=false"), Some(&mallory.token)).await;
    assert_eq!(json_body(mallorys, 200).await, json!([]));
    let errors = json_body(h.get("/audit?action=error").await, 200).await;
    assert_eq!(errors["events"].as_array().unwrap().len(), 2, "each spent state is an error row: {errors}");
}

async fn callback_rejects_a_state_on_another_providers_path(backend: Backend) {
    let h = Harness::start(backend).await;
    let flow = h.initiated("google", json!({})).await;
    let callback = h.approve(flow["authorization_url"].as_str().unwrap(), None, None).await;

    let mixed_up = with_path(&callback, &format!("{API}/callback/microsoft"));
    problem(h.callback(&mixed_up).await, 400, "provider_mismatch").await;
    assert_eq!(h.google.handle.counters().code_exchanges + h.microsoft.handle.counters().code_exchanges, 0);
    h.assert_nothing_written("provider mix-up").await;

    let connected = json_body(h.callback(&callback).await, 200).await;
    assert_eq!(connected["provider"], "google", "the state was left unused: {connected}");
}

async fn callback_rejects_a_mismatched_issuer(backend: Backend) {
    let h = Harness::start(backend).await;
    let flow = h.initiated("google", json!({})).await;
    let callback = h.approve(flow["authorization_url"].as_str().unwrap(), None, None).await;
    assert_eq!(query_param(&callback, "iss").as_deref(), Some(h.google.base_url.as_str()));

    // RFC 9207 §2.4: an `iss` that is not the expected issuer means a mix-up; the code is not redeemed.
    let foreign = with_query_param(&callback, "iss", &h.microsoft.base_url);
    problem(h.callback(&foreign).await, 400, "issuer_mismatch").await;
    assert_eq!(h.google.handle.counters().code_exchanges, 0);
    h.assert_nothing_written("issuer mismatch").await;
}

async fn callback_rejects_defective_id_tokens(backend: Backend) {
    let h = Harness::start(backend).await;
    let faults = [
        IdTokenFault::WrongKey,
        IdTokenFault::Expired,
        IdTokenFault::WrongAudience,
        IdTokenFault::WrongIssuer,
        IdTokenFault::WrongNonce,
    ];
    for (provider, emulator) in [("google", &h.google), ("microsoft", &h.microsoft)] {
        for fault in faults {
            emulator.handle.set_id_token_fault(fault);
            let response = h.attempt_connect(provider).await;
            let body = json_body(response, 400).await;
            assert_eq!(body["code"], "invalid_id_token", "{provider} {fault:?}: {body}");
            h.assert_nothing_written(&format!("{provider} {fault:?}")).await;
        }
        emulator.handle.set_id_token_fault(IdTokenFault::None);
    }
    // Healed, the same flows succeed: the refusals were about the ID tokens.
    h.connect("google").await;
    h.connect("microsoft").await;
}

async fn callback_reports_a_denial_at_the_provider(backend: Backend) {
    let h = Harness::start(backend).await;
    let flow = h.initiated("google", json!({})).await;
    let callback = h.deny(flow["authorization_url"].as_str().unwrap()).await;
    assert_eq!(query_param(&callback, "error").as_deref(), Some("access_denied"));

    problem(h.callback(&callback).await, 400, "authorization_denied").await;
    assert_eq!(h.google.handle.counters().code_exchanges, 0);
    h.assert_nothing_written("denial").await;
}

async fn callback_rejects_a_code_injected_into_another_flow(backend: Backend) {
    let h = Harness::start(backend).await;
    // The attacker's code, bound to the attacker's PKCE verifier...
    let attackers = h.initiated("google", json!({})).await;
    let stolen = h.approve(attackers["authorization_url"].as_str().unwrap(), Some("mallory@example.com"), None).await;
    // ...replayed into the victim's flow: PKCE (RFC 9700 §4.5) makes Google refuse the exchange.
    let victims = h.initiated("google", json!({})).await;
    let injected = with_query_param(&stolen, "state", victims["state"].as_str().unwrap());

    problem(h.callback(&injected).await, 400, "token_exchange_failed").await;
    assert_eq!(h.google.handle.counters().code_exchanges, 0);
    h.assert_nothing_written("injected code").await;
}

async fn callback_reports_an_unavailable_provider(backend: Backend) {
    let h = Harness::start(backend).await;
    for fault in [Fault::ServerError, Fault::Garbage] {
        let flow = h.initiated("google", json!({})).await;
        let callback = h.approve(flow["authorization_url"].as_str().unwrap(), None, None).await;
        h.google.handle.set_fault(fault.clone());
        let body = json_body(h.callback(&callback).await, 502).await;
        assert_eq!(body["code"], "provider_unavailable", "{fault:?}: {body}");
        h.google.handle.set_fault(Fault::None);
        h.assert_nothing_written(&format!("{fault:?}")).await;
    }
}

async fn return_to_receives_the_success_redirect(backend: Backend) {
    let h = Harness::start(backend).await;
    let flow = h.initiated("google", json!({"return_to": RETURN_TO})).await;
    let callback = h.approve(flow["authorization_url"].as_str().unwrap(), None, None).await;

    let response = h.callback(&callback).await;
    assert_eq!(response.status(), 303);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(&format!("{RETURN_TO}?")), "{location}");
    let integration_id = h.all_integrations().await[0]["id"].to_string();
    assert_eq!(query_param(&location, "oauth_status").as_deref(), Some("success"), "{location}");
    assert_eq!(query_param(&location, "provider").as_deref(), Some("google"), "{location}");
    assert_eq!(query_param(&location, "integration_id"), Some(integration_id), "{location}");
    assert!(query_param(&location, "code").is_none(), "no code travels on: {location}");
}

async fn return_to_receives_the_error_redirect(backend: Backend) {
    let h = Harness::start(backend).await;
    let flow = h.initiated("google", json!({"return_to": RETURN_TO})).await;
    let callback = h.deny(flow["authorization_url"].as_str().unwrap()).await;

    let response = h.callback(&callback).await;
    assert_eq!(response.status(), 303);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(&format!("{RETURN_TO}?")), "{location}");
    assert_eq!(query_param(&location, "oauth_status").as_deref(), Some("error"), "{location}");
    assert_eq!(query_param(&location, "error").as_deref(), Some("authorization_denied"), "{location}");
    h.assert_nothing_written("denial with return_to").await;
}

on_both_backends!(
    initiate_returns_a_pkce_authorization_url_for_the_provider_callback,
    initiate_rejects_unknown_providers_and_scopes,
    initiate_rejects_an_unregistered_redirect_uri,
    initiate_rejects_a_return_to_outside_the_allowed_origins,
    callback_rejects_a_replayed_state,
    callback_rejects_an_expired_state,
    callback_rejects_an_unknown_state,
    callback_rejects_another_users_browser_and_spends_the_state,
    callback_rejects_a_state_on_another_providers_path,
    callback_rejects_a_mismatched_issuer,
    callback_rejects_defective_id_tokens,
    callback_reports_a_denial_at_the_provider,
    callback_rejects_a_code_injected_into_another_flow,
    callback_reports_an_unavailable_provider,
    return_to_receives_the_success_redirect,
    return_to_receives_the_error_redirect,
);

async fn callback_refuses_a_browser_that_did_not_start_the_flow(backend: Backend) {
    // Mallory starts a flow as herself and sends the authorization link to the victim, who
    // consents at the real provider: the victim's browser has neither Mallory's flow cookie nor
    // her JWT, so the victim's account must not end up in Mallory's integrations.
    let h = Harness::start(backend).await;
    let flow = h.initiated("google", json!({})).await;
    let callback = h.approve(flow["authorization_url"].as_str().unwrap(), Some("victim@example.com"), None).await;
    problem(h.callback_from_another_browser(&callback).await, 400, "state_not_bound").await;
    assert_eq!(h.google.handle.counters().code_exchanges, 0);
    h.assert_nothing_written("forwarded authorization link").await;
    // Spent: whoever obtains this URL (the victim's error page) cannot replay it from a browser of
    // theirs that carries the flow cookie.
    problem(h.callback(&callback).await, 400, "state_used").await;
    assert_eq!(h.google.handle.counters().code_exchanges, 0);
}

async fn callback_accepts_the_same_users_access_token_cookie_instead_of_the_flow_cookie(backend: Backend) {
    let h = Harness::start(backend).await;
    let flow = h.initiated("google", json!({})).await;
    let callback = h.approve(flow["authorization_url"].as_str().unwrap(), None, None).await;
    let response =
        h.app.client.get(&callback).header("cookie", format!("access_token={}", h.user.token)).send().await.unwrap();
    json_body(response, 200).await;
}

on_both_backends!(
    callback_refuses_a_browser_that_did_not_start_the_flow,
    callback_accepts_the_same_users_access_token_cookie_instead_of_the_flow_cookie,
);

async fn callback_rejects_a_state_arriving_at_another_redirect_uri(backend: Backend) {
    // Started with the per-provider redirect URI; the response shows up at the shared one.
    let h = Harness::start(backend).await;
    let flow = h.initiated("google", json!({})).await;
    let callback = h.approve(flow["authorization_url"].as_str().unwrap(), None, None).await;
    assert!(callback.contains(&format!("{API}/callback/google")));
    let elsewhere = with_path(&callback, &format!("{API}/callback"));
    problem(h.callback(&elsewhere).await, 400, "provider_mismatch").await;
    h.assert_nothing_written("wrong redirect URI").await;
    json_body(h.callback(&callback).await, 200).await;
}

async fn a_forged_provider_error_is_reduced_to_a_code(backend: Backend) {
    let h = Harness::start(backend).await;
    let flow = h.initiated("google", json!({})).await;
    let callback = h.deny(flow["authorization_url"].as_str().unwrap()).await;
    let forged = with_query_param(&callback, "error", "access_denied\n<script>alert(1)</script> FAKE LOG LINE");
    let body = problem(h.callback(&forged).await, 400, "authorization_denied").await;
    let detail = body["detail"].as_str().unwrap();
    assert!(!detail.contains("<script>") && !detail.contains("\n") && !detail.contains("FAKE LOG LINE"), "{detail}");
}

on_both_backends!(
    callback_rejects_a_state_arriving_at_another_redirect_uri,
    a_forged_provider_error_is_reduced_to_a_code,
);

async fn callback_refuses_a_wrong_or_foreign_flow_cookie(backend: Backend) {
    let h = Harness::start(backend).await;
    let other = h.initiate("notion", json!({})).await;
    let other_cookie = super::support::flow_cookie(&other).unwrap();
    let (_, other_value) = other_cookie.split_once('=').unwrap();
    for case in ["forged", "swapped", "foreign"] {
        let mine = h.initiate("google", json!({})).await;
        let my_cookie = super::support::flow_cookie(&mine).unwrap();
        let mine = json_body(mine, 200).await;
        let callback = h.approve(mine["authorization_url"].as_str().unwrap(), None, None).await;
        let (name, _) = my_cookie.split_once('=').unwrap();
        let cookie = match case {
            "forged" => format!("{name}=not-the-value-that-was-set"),
            "swapped" => format!("{name}={other_value}"),
            _ => other_cookie.clone(),
        };
        let response = h.app.client.get(&callback).header("cookie", &cookie).send().await.unwrap();
        problem(response, 400, "state_not_bound").await;
        let replay = h.app.client.get(&callback).header("cookie", &my_cookie).send().await.unwrap();
        problem(replay, 400, "state_used").await;
    }
    h.assert_nothing_written("wrong flow cookies").await;
    // A flow whose response reaches the right browser still connects.
    json_body(h.attempt_connect("google").await, 200).await;
}

async fn without_browser_binding_any_browser_may_finish(backend: Backend) {
    let h = Harness::start_with(backend, |config| config.set("OAUTH_BROWSER_BINDING", "off")).await;
    let flow = h.initiated("google", json!({})).await;
    let callback = h.approve(flow["authorization_url"].as_str().unwrap(), None, None).await;
    json_body(h.callback_from_another_browser(&callback).await, 200).await;
}

on_both_backends!(callback_refuses_a_wrong_or_foreign_flow_cookie, without_browser_binding_any_browser_may_finish);
