//! The OpenAPI description of every endpoint, served at `GET /openapi.json`.

use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::state::AppState;

/// The whole API.
#[derive(OpenApi)]
#[openapi(
    info(title = "oauth-manager", description = "OAuth 2.0 connection manager: connect accounts, store tokens encrypted, hand them to backends."),
    paths(
        super::flow::initiate,
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
        super::health::healthz,
        super::health::readyz,
    ),
    modifiers(&Security),
    tags(
        (name = "flow", description = "Connecting an account"),
        (name = "integrations", description = "The caller's connections"),
        (name = "tokens", description = "Access tokens for backend services"),
        (name = "account", description = "Status, consents, audit log and providers"),
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

/// `GET /openapi.json`.
pub fn router() -> Router<AppState> {
    Router::new().route("/openapi.json", get(|| async { Json(ApiDoc::openapi()) }))
}
