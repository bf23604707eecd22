//! The OAuth side: providers as data, and the flows that use them.

mod providers;

pub use providers::{ClientAuth, IdentitySource, Provider, Providers, RequestFormat};
