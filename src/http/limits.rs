//! Limits on what one client may ask: how fast it may start and finish flows (rate limits per
//! user and per address, answered 429 with `Retry-After`), and how long a request's target and
//! headers may be (414 and 431, as problem JSON rather than hyper's bare answers).

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::error::ApiError;
use crate::config::LimitSettings;
use crate::state::AppState;

/// A per-key rate, or none when configured as 0.
struct Rate<K: Hash + Eq + Clone>(Option<DefaultKeyedRateLimiter<K>>);

impl<K: Hash + Eq + Clone> Rate<K> {
    fn per_minute(count: u32) -> Self {
        Self(NonZeroU32::new(count).map(|count| RateLimiter::keyed(Quota::per_minute(count))))
    }

    /// Counts one request of `key`; how long to wait when it is one too many.
    fn check(&self, key: &K) -> Result<(), Duration> {
        let Some(limiter) = &self.0 else { return Ok(()) };
        limiter.check_key(key).map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    fn forget_idle(&self) {
        if let Some(limiter) = &self.0 {
            limiter.retain_recent();
        }
    }
}

/// The rate limits of the flow endpoints.
pub struct RateLimits {
    initiate_per_user: Rate<i32>,
    initiate_per_address: Rate<IpAddr>,
    callback_per_address: Rate<IpAddr>,
    refresh_per_user: Rate<i32>,
}

impl RateLimits {
    /// The limits of `settings`.
    pub fn new(settings: &LimitSettings) -> Self {
        Self {
            initiate_per_user: Rate::per_minute(settings.initiate_per_user_per_minute),
            initiate_per_address: Rate::per_minute(settings.initiate_per_address_per_minute),
            callback_per_address: Rate::per_minute(settings.callback_per_address_per_minute),
            refresh_per_user: Rate::per_minute(settings.refresh_per_user_per_minute),
        }
    }

    /// Counts a `POST /initiate` of `user_id` from `address`.
    pub fn initiate(&self, user_id: i32, address: Option<IpAddr>) -> Result<(), ApiError> {
        self.initiate_per_user.check(&user_id).map_err(too_many)?;
        match address {
            Some(address) => self.initiate_per_address.check(&network(address)).map_err(too_many),
            None => Ok(()),
        }
    }

    /// Counts a callback from `address`.
    pub fn callback(&self, address: Option<IpAddr>) -> Result<(), ApiError> {
        match address {
            Some(address) => self.callback_per_address.check(&network(address)).map_err(too_many),
            None => Ok(()),
        }
    }

    /// Counts a refresh a user asked for (`POST /integrations/{id}/refresh` and `/sync`): each
    /// reaches the provider's token endpoint, whose quota the whole product shares.
    pub fn refresh(&self, user_id: i32) -> Result<(), ApiError> {
        self.refresh_per_user.check(&user_id).map_err(too_many)
    }

    /// Forgets keys that have not been seen for a while (bounded memory).
    pub fn forget_idle(&self) {
        self.initiate_per_user.forget_idle();
        self.initiate_per_address.forget_idle();
        self.callback_per_address.forget_idle();
        self.refresh_per_user.forget_idle();
    }
}

/// The key of an address: an IPv4 address, or an IPv6 address's /64 (one site's or one host's
/// share; rotating addresses inside it gains nothing).
fn network(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => {
            let segments = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(segments[0], segments[1], segments[2], segments[3], 0, 0, 0, 0))
        }
    }
}

fn too_many(wait: Duration) -> ApiError {
    ApiError::RateLimited {
        code: "rate_limited",
        detail: format!("Too many requests; try again in {} seconds.", wait.as_secs().max(1)),
        retry_after: wait,
    }
}

/// Refuses request targets and header sections beyond the configured sizes (RFC 9110 §15.5.15,
/// RFC 6585 §5), before any handler runs.
pub async fn request_size(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let limits = &state.config.http;
    let target = request.uri().path_and_query().map_or(0, |target| target.as_str().len());
    if target > limits.max_uri_bytes {
        return ApiError::UriTooLong { max: limits.max_uri_bytes }.into_response();
    }
    let headers: usize = request.headers().iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum();
    if headers > limits.max_header_bytes {
        return ApiError::HeadersTooLarge { max: limits.max_header_bytes }.into_response();
    }
    next.run(request).await
}
