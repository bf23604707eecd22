//! The connect flow end to end against the provider emulators: each provider's life cycle, the
//! attacks the flow refuses, isolation between users, and refresh concurrency across apps.

mod attacks;
mod concurrency;
mod google;
mod isolation;
mod microsoft;
mod notion;
mod support;
mod youtube;
