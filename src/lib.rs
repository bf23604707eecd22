//! oauth-manager: a self-hostable OAuth 2.0 connection manager ("token vault").
//!
//! `startup` wires the pieces; `http` is the API (and the only part that speaks HTTP); `oauth` the
//! providers, flows and the vault they work on; `store` all SQL; `crypto` encryption at rest;
//! `auth` who is calling; `config` the settings.

pub mod auth;
pub mod config;
pub mod crypto;
mod fuzz;
pub mod http;
pub mod keys;
pub mod oauth;
pub mod prometheus;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
