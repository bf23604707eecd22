//! The OpenAPI document covers the contract's endpoints (and the connect endpoints beyond it),
//! every documented one is routed, and `/docs` renders it from assets in the binary.

use crate::support::{Backend, TestApp};

const CONTRACT: &[(&str, &str)] = &[
    ("get", "/api/v1/oauth/providers"),
    ("post", "/api/v1/oauth/initiate"),
    ("get", "/api/v1/oauth/handoff/{state}"),
    ("get", "/api/v1/oauth/connect/{provider}"),
    ("post", "/api/v1/oauth/connect-links"),
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
    ("get", "/api/v1/oauth/users/{user_id}/export"),
    ("delete", "/api/v1/oauth/users/{user_id}"),
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
        let concrete = path
            .replace("{provider}", "google")
            .replace("{id}", "1")
            .replace("{user_id}", "1")
            .replace("{state}", "no-such-state");
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

#[tokio::test]
async fn problem_answers_are_declared_as_problem_json_and_every_secured_operation_has_a_401() {
    let app = TestApp::start(Backend::Sqlite).await;
    let spec: serde_json::Value = app.get("/openapi.json", None).await.json().await.unwrap();
    let problem = serde_json::json!("#/components/schemas/Problem");
    let mut secured = 0;
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            for (status, response) in operation["responses"].as_object().unwrap() {
                let Some(content) = response["content"].as_object() else { continue };
                if let Some(json) = content.get("application/json") {
                    assert_ne!(
                        json["schema"]["$ref"], problem,
                        "{method} {path} {status}: a problem as application/json"
                    );
                }
            }
            if operation["security"].as_array().is_some_and(|s| !s.is_empty()) {
                secured += 1;
                let unauthorized = &operation["responses"]["401"]["content"]["application/problem+json"];
                assert_eq!(unauthorized["schema"]["$ref"], problem, "{method} {path} documents no 401");
            }
        }
    }
    assert!(secured >= 10, "the user and service endpoints are secured: {secured}");
    // What the document says is what the service sends.
    let response = app.get("/api/v1/oauth/integrations", None).await;
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
}

#[tokio::test]
async fn the_docs_page_renders_the_served_document_from_the_binary() {
    let app = TestApp::start(Backend::Sqlite).await;
    let page = app.get("/docs/", None).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    assert!(!html.contains("https://"), "no asset from elsewhere (CDN): {html}");
    // Its script, stylesheet and the initializer pointing at our document, all from here.
    for asset in ["/docs/swagger-ui-bundle.js", "/docs/swagger-ui.css"] {
        let response = app.get(asset, None).await;
        assert_eq!(response.status(), 200, "{asset}");
        assert!(response.bytes().await.unwrap().len() > 10_000, "{asset} is the real asset");
    }
    let initializer = app.get("/docs/swagger-initializer.js", None).await.text().await.unwrap();
    assert!(initializer.contains("/openapi.json"), "{initializer}");
}
