//! Who is calling: end users with the host application's JWT, backends with a service API key,
//! and the roles that gate what they may do. The HTTP extractors that use these are in `http`.

mod caller;
mod demo;
mod jwt;
mod roles;
mod service_keys;

pub use caller::{Caller, ServiceCaller, UserCaller};
pub use demo::{DEMO_EMAIL, DemoUser};
pub use jwt::{Claims, JwtVerifier, Role};
pub use roles::RoleDirectory;
pub use service_keys::ServiceKeys;
