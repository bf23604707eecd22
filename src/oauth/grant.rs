//! What a token answer grants: its scopes and when it expires.

use chrono::{Duration, NaiveDateTime};

use crate::store::NEVER_EXPIRES;

/// The scopes of a provider's `scope` string (space separated; some use commas).
pub fn split_scopes(scope: &str) -> Vec<String> {
    scope.split([' ', ',']).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

/// `expires_at` for a token answer's `expires_in`: none means never; absurd values are clamped
/// to ten years rather than overflowing.
pub fn expires_at_from(now: NaiveDateTime, expires_in: Option<i64>) -> NaiveDateTime {
    const TEN_YEARS: i64 = 10 * 366 * 24 * 3600;
    match expires_in {
        None => NEVER_EXPIRES,
        Some(seconds) => now + Duration::seconds(seconds.clamp(0, TEN_YEARS)),
    }
}
