//! The OpenAPI description of every endpoint, served at `GET /openapi.json`.

use std::sync::OnceLock;

use axum::Router;
use axum::routing::get;

use super::json::Json;
use serde_json::{Value, json};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::error::PROBLEM_JSON;
use crate::state::AppState;

/// The whole API.
#[derive(OpenApi)]
#[openapi(
    info(title = "oauth-manager", description = "OAuth 2.0 connection manager: connect accounts, store tokens encrypted, hand them to backends."),
    paths(
        super::flow::initiate,
        super::flow::handoff,
        super::connect::connect,
        super::connect::mint_link,
        super::flow::callback,
        super::flow::callback_for_provider,
        super::integrations::list,
        super::integrations::show,
        super::integrations::refresh,
        super::integrations::remove,
        super::integrations::sync,
        super::tokens::by_integration,
        super::tokens::by_owner,
        super::account::status,
        super::account::consents,
        super::account::audit,
        super::account::providers,
        super::users::export,
        super::users::erase,
        super::health::healthz,
        super::health::readyz,
    ),
    modifiers(&Security),
    tags(
        (name = "flow", description = "Connecting an account"),
        (name = "integrations", description = "The caller's connections"),
        (name = "tokens", description = "Access tokens for backend services"),
        (name = "account", description = "Status, consents, audit log and providers"),
        (name = "users", description = "Offboarding: export and erase a user's data (administrators and services)"),
        (name = "operations", description = "Health"),
    )
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = |format: &str, description: &str| {
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format(format)
                    .description(Some(description))
                    .build(),
            )
        };
        components.add_security_scheme(
            "user_jwt",
            bearer("JWT", "The host application's HS256 access token (or the access_token cookie)."),
        );
        components
            .add_security_scheme("service_key", bearer("opaque", "A backend service key from OAUTH_SERVICE_API_KEYS."));
    }
}

/// The document as served: `ApiDoc` with every problem answer declared as what the service
/// sends (`application/problem+json`, RFC 9457; utoipa writes `application/json` for any body),
/// and a 401 on every operation that takes credentials. Built once.
pub fn document() -> &'static Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let mut document = serde_json::to_value(ApiDoc::openapi()).expect("the OpenAPI document serialises");
        declare_problem_answers(&mut document);
        document
    })
}

const PROBLEM_REF: &str = "#/components/schemas/Problem";

fn declare_problem_answers(document: &mut Value) {
    let Some(paths) = document.get_mut("paths").and_then(Value::as_object_mut) else { return };
    for operation in paths.values_mut().filter_map(Value::as_object_mut).flat_map(|item| item.values_mut()) {
        let secured = operation.get("security").and_then(Value::as_array).is_some_and(|s| !s.is_empty());
        let Some(responses) = operation.get_mut("responses").and_then(Value::as_object_mut) else { continue };
        for content in responses.values_mut().filter_map(|response| response.get_mut("content")) {
            let Some(content) = content.as_object_mut() else { continue };
            let is_problem = content
                .get("application/json")
                .is_some_and(|body| body.pointer("/schema/$ref").and_then(Value::as_str) == Some(PROBLEM_REF));
            if is_problem && let Some(body) = content.remove("application/json") {
                content.insert(PROBLEM_JSON.to_owned(), body);
            }
        }
        if secured && !responses.contains_key("401") {
            let mut content = serde_json::Map::new();
            content.insert(PROBLEM_JSON.to_owned(), json!({ "schema": { "$ref": PROBLEM_REF } }));
            responses.insert(
                "401".to_owned(),
                json!({
                    "description": "No valid credentials (missing, malformed, expired or unknown)",
                    "content": content,
                }),
            );
        }
    }
}

/// `GET /docs`: Swagger UI over `/openapi.json`, its assets compiled into the binary
/// (utoipa-swagger-ui's `vendored` feature: no CDN, nothing fetched at build or run time).
pub fn docs_router() -> Router<AppState> {
    let config = utoipa_swagger_ui::Config::new(["/openapi.json"]).try_it_out_enabled(true);
    let router: Router<AppState> = utoipa_swagger_ui::SwaggerUi::new("/docs").config(config).into();
    // Never framed (its "try it out" sends requests with what the page holds).
    router.layer(tower_http::set_header::SetResponseHeaderLayer::overriding(
        axum::http::header::CONTENT_SECURITY_POLICY,
        axum::http::HeaderValue::from_static("frame-ancestors 'none'"),
    ))
}

/// `GET /openapi.json`.
pub fn router() -> Router<AppState> {
    Router::new().route("/openapi.json", get(|| async { Json(document()) }))
}
