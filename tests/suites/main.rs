//! Suites that prove the safety claims with figures: each prints what it checked (run with
//! `--nocapture` to see them). The isolation matrix, the flow attacks, the planted secrets and
//! the database faults; the provider faults and key rotation run in `tests/api/flow`.

mod database_faults;
mod flow_attacks;
#[allow(dead_code)]
#[path = "../api/flow/support.rs"]
mod flow_support;
mod isolation_matrix;
mod planted_secrets;
#[allow(dead_code)]
#[path = "../api/store_fixtures.rs"]
mod store_fixtures;
#[path = "../api/support.rs"]
mod support;
