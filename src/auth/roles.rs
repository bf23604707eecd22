//! Roles read from the host application's RBAC tables, cached briefly per user so the API does
//! not pay a query per request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::store::Store;

/// How long a user's roles are trusted before they are read again.
const ROLES_TTL: Duration = Duration::from_secs(60);
/// Beyond this many cached users the cache starts over (bounded memory).
const MAX_CACHED_USERS: usize = 100_000;

/// Whether users are administrators, per the host application's tables.
#[derive(Default)]
pub struct RoleDirectory {
    cache: Mutex<HashMap<i32, (Instant, bool)>>,
}

impl RoleDirectory {
    /// Whether `user_id` has the `administrator` role. A failing query denies (and is logged):
    /// a database problem must never grant rights.
    pub async fn is_admin(&self, store: &dyn Store, query: &str, user_id: i32) -> bool {
        if let Some((read_at, is_admin)) = self.cache.lock().expect("role cache poisoned").get(&user_id)
            && read_at.elapsed() < ROLES_TTL
        {
            return *is_admin;
        }
        let is_admin = match store.user_roles(user_id, query).await {
            Ok(roles) => roles.iter().any(|role| role == "administrator"),
            Err(error) => {
                tracing::warn!(user_id, error = %error, "reading roles failed; treating the user as no administrator");
                return false;
            }
        };
        let mut cache = self.cache.lock().expect("role cache poisoned");
        if cache.len() >= MAX_CACHED_USERS {
            cache.clear();
        }
        cache.insert(user_id, (Instant::now(), is_admin));
        is_admin
    }
}
