//! The connect flow end to end against the provider emulators: each provider's life cycle, the
//! attacks the flow refuses, isolation between users, refresh concurrency across apps, and resilience
//! (failing providers, key rotation, the background tasks, the sandbox), the audit's findings
//! (hardening), and the token cache's promises.

mod attacks;
mod bad_input;
mod browsers;
mod concurrency;
mod custom_provider;
mod google;
mod hardening;
mod isolation;
mod microsoft;
mod notion;
mod offboarding;
mod provider_faults;
mod resilience;
mod rotation;
pub(crate) mod support;
mod token_cache;
mod webhooks;
mod youtube;
