//! Who a request comes from, once its credentials are checked: an end user or a backend.

use super::jwt::{Claims, Role};

/// An end user identified by the host application's JWT.
#[derive(Clone, Debug)]
pub struct UserCaller {
    pub user_id: i32,
    pub email: String,
    pub is_admin: bool,
}

impl UserCaller {
    /// The user named by verified `claims`.
    pub fn from_claims(claims: Claims) -> Self {
        Self { user_id: claims.user_id, is_admin: claims.has_role(Role::Administrator), email: claims.sub }
    }

    /// Whether this caller may act on a resource owned by `owner`.
    pub fn may_access(&self, owner: i32) -> bool {
        self.is_admin || self.user_id == owner
    }
}

/// A backend authenticated with a service API key.
#[derive(Clone, Copy, Debug)]
pub struct ServiceCaller {
    /// Position of the key in `OAUTH_SERVICE_API_KEYS` (for logs; never the key).
    pub key_index: usize,
}

/// Either kind of caller (the token endpoints accept a user too when operators allow it).
#[derive(Clone, Debug)]
pub enum Caller {
    User(UserCaller),
    Service(ServiceCaller),
}
