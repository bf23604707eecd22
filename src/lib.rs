//! oauth-manager: a self-hostable OAuth 2.0 connection manager ("token vault").
//!
//! `startup` wires the pieces; `http` is the API; `oauth` the providers and flows; `store` all
//! SQL; `crypto` encryption at rest; `auth` who is calling.

pub mod auth;
pub mod config;
pub mod crypto;
pub mod error;
pub mod http;
pub mod oauth;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
