//! The OpenAPI document covers the contract's endpoints, and every documented one is routed.

use crate::support::{Backend, TestApp};

const CONTRACT: &[(&str, &str)] = &[
    ("get", "/api/v1/oauth/providers"),
    ("post", "/api/v1/oauth/initiate"),
    ("get", "/api/v1/oauth/callback"),
    ("get", "/api/v1/oauth/callback/{provider}"),
    ("get", "/api/v1/oauth/integrations"),
    ("get", "/api/v1/oauth/integrations/{id}"),
    ("post", "/api/v1/oauth/integrations/{id}/refresh"),
    ("delete", "/api/v1/oauth/integrations/{id}"),
    ("post", "/api/v1/oauth/integrations/sync"),
    ("get", "/api/v1/oauth/status"),
    ("get", "/api/v1/oauth/integrations/{id}/token"),
    ("get", "/api/v1/oauth/users/{user_id}/integrations/{provider}/token"),
    ("get", "/api/v1/oauth/audit"),
    ("get", "/api/v1/oauth/consents"),
    ("get", "/healthz"),
    ("get", "/readyz"),
];

#[tokio::test]
async fn openapi_documents_exactly_the_contracts_endpoints_and_each_is_routed() {
    let app = TestApp::start(Backend::Sqlite).await;
    let response = app.get("/openapi.json", None).await;
    assert_eq!(response.status(), 200);
    let spec: serde_json::Value = response.json().await.unwrap();
    let mut documented: Vec<(String, String)> = spec["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| item.as_object().unwrap().keys().map(move |method| (method.clone(), path.clone())))
        .collect();
    documented.sort();
    let mut expected: Vec<(String, String)> = CONTRACT.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    expected.sort();
    assert_eq!(documented, expected);

    for (method, path) in CONTRACT {
        let concrete = path.replace("{provider}", "google").replace("{id}", "1").replace("{user_id}", "1");
        let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let response = app.client.request(method.clone(), app.url(&concrete)).send().await.unwrap();
        let status = response.status().as_u16();
        let body = response.text().await.unwrap();
        assert!(
            status != 405 && !body.contains("No such endpoint"),
            "{method} {concrete} is not routed: {status} {body}"
        );
    }
    assert!(spec["components"]["securitySchemes"]["service_key"].is_object());
}
