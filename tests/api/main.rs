//! Integration tests: the real router over loopback HTTP, real PostgreSQL and SQLite, real crypto.

mod auth;
mod browser;
mod cli;
mod fastapi_proxy;
mod flow;
mod openapi;
mod operations;
mod plumbing;
mod schema;
mod store;
mod store_fixtures;
mod support;
