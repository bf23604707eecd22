//! Where a request came from (ip and user agent), for consents, the audit log and rate limits.
//!
//! Behind a reverse proxy every connection comes from the proxy. `X-Forwarded-For` names the
//! client, but anyone can send that header: it is believed only from the proxies listed in
//! `OAUTH_TRUSTED_PROXIES`, and then read from the right (the address the last trusted proxy saw),
//! skipping the trusted proxies themselves.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::header::USER_AGENT;
use axum::http::request::Parts;

use crate::state::AppState;
use crate::store::ClientInfo;

/// The client address and user agent of a request.
#[derive(Clone, Debug, Default)]
pub struct RequestClient(pub ClientInfo);

const USER_AGENT_MAX: usize = 512;

impl FromRequestParts<AppState> for RequestClient {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let peer =
            parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(address)| address.ip().to_canonical());
        let ip_address = peer.map(|peer| client_address(peer, &parts.headers, &state.config.trusted_proxies));
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

/// The client behind `peer`: `peer` itself unless it is a trusted proxy, else the right-most
/// address of `X-Forwarded-For` that is not a trusted proxy (a malformed entry stops the walk at
/// the last good address: what lies left of it was written by the client).
fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[ipnet::IpNet]) -> IpAddr {
    let is_trusted = |address: &IpAddr| trusted.iter().any(|network| network.contains(address));
    if !is_trusted(&peer) {
        return peer;
    }
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    let mut client = peer;
    for entry in forwarded.into_iter().rev() {
        // Some load balancers add the client's port (`1.2.3.4:5678`, `[2001:db8::1]:443`).
        let parsed = entry.parse::<IpAddr>().or_else(|_| entry.parse::<std::net::SocketAddr>().map(|a| a.ip()));
        let Ok(address) = parsed else { break };
        client = address.to_canonical();
        if !is_trusted(&client) {
            break;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(forwarded: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in forwarded {
            headers.append("x-forwarded-for", value.parse().unwrap());
        }
        headers
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxies: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap(), "127.0.0.1/32".parse().unwrap()];
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        // Not from a proxy: the header is the client's own claim.
        assert_eq!(client_address(ip("198.51.100.1"), &headers(&["203.0.113.7"]), &proxies), ip("198.51.100.1"));
        // From a proxy: the right-most untrusted address, past a chain of proxies.
        let chain = headers(&["1.1.1.1, 203.0.113.7", "10.1.2.3"]);
        assert_eq!(client_address(ip("127.0.0.1"), &chain, &proxies), ip("203.0.113.7"));
        // A proxy that sent nothing, or garbage: the proxy (or the last good address).
        assert_eq!(client_address(ip("10.0.0.5"), &headers(&[]), &proxies), ip("10.0.0.5"));
        assert_eq!(client_address(ip("10.0.0.5"), &headers(&["203.0.113.7, junk"]), &proxies), ip("10.0.0.5"));
        // With ports, as some load balancers write them.
        let ported = headers(&["203.0.113.7:5678, [2001:db8::1]:443"]);
        assert_eq!(client_address(ip("10.0.0.5"), &ported, &proxies), ip("2001:db8::1"));
        // No proxies configured: never believed.
        assert_eq!(client_address(ip("127.0.0.1"), &headers(&["203.0.113.7"]), &[]), ip("127.0.0.1"));
    }
}
