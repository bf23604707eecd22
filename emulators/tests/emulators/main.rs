//! End-to-end tests of the emulators over HTTP, as the service's client would drive them.

mod google;
mod microsoft;
mod notion;
mod support;
