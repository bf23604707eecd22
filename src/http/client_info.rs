//! Where a request came from (ip and user agent), for consents and the audit log.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::USER_AGENT;
use axum::http::request::Parts;

use crate::store::ClientInfo;

/// The peer address and user agent of a request.
#[derive(Clone, Debug, Default)]
pub struct RequestClient(pub ClientInfo);

const USER_AGENT_MAX: usize = 512;

impl<S: Send + Sync> FromRequestParts<S> for RequestClient {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let ip_address =
            parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(address)| address.ip().to_canonical());
        let user_agent = parts.headers.get(USER_AGENT).and_then(|value| value.to_str().ok()).map(|agent| {
            let mut end = agent.len().min(USER_AGENT_MAX);
            while !agent.is_char_boundary(end) {
                end -= 1;
            }
            agent[..end].to_owned()
        });
        Ok(Self(ClientInfo { ip_address, user_agent }))
    }
}
