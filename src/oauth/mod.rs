//! The OAuth side: providers as data, and the flows that use them.

pub mod client;
pub mod disconnect;
pub mod flow;
pub mod id_token;
mod providers;
pub mod refresher;
pub mod sandbox;
pub mod tokens;
pub mod usage;

pub use providers::{ClientAuth, Credentials, IdentitySource, Provider, Providers, RequestFormat};
