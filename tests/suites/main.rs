//! Suites that prove the safety claims with figures: each prints what it checked.

#[allow(dead_code)]
#[path = "../api/flow/support.rs"]
mod flow_support;
mod isolation_matrix;
#[allow(dead_code)]
#[path = "../api/store_fixtures.rs"]
mod store_fixtures;
#[path = "../api/support.rs"]
mod support;
