//! Who is calling: end users with the host application's JWT, backends with a service API key.

mod extract;
mod jwt;
mod roles;
mod service_keys;

pub use extract::{Caller, MaybeUser, ServiceCaller, UserCaller, cookie};
pub use jwt::{Claims, JwtVerifier, Role};
pub use roles::RoleDirectory;
pub use service_keys::ServiceKeys;
