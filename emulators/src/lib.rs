//! Loopback emulators of the OAuth providers oauth-manager talks to: Google (and YouTube),
//! Microsoft and Notion.
//!
//! Each emulator is a small axum app that behaves like the real provider closely enough that
//! a client bug shows up as a failure: PKCE, single-use codes, exact redirect URIs, each
//! provider's client authentication and body format, refresh-token rotation, revocation,
//! signed ID tokens and their quirks. Tests [`spawn`] one on a loopback port; the sandbox
//! demo nests a [`router`] into its own server under a path prefix.
//!
//! Paths, relative to the base URL ([`EmulatorHandle::endpoints`] gives them absolute):
//!
//! - Google (and YouTube): `GET|POST /authorize`, `POST /token`, `POST /revoke`, `GET /userinfo`,
//!   `GET /jwks`, `GET /youtube/v3/channels`, `GET /.well-known/openid-configuration`.
//! - Microsoft: `GET|POST /{tenant}/oauth2/v2.0/authorize`, `POST /{tenant}/oauth2/v2.0/token`,
//!   `GET /{tenant}/discovery/v2.0/keys`, `GET /{tenant}/v2.0/.well-known/openid-configuration`,
//!   `GET /v1.0/me`; `{tenant}` is `common`, `organizations`, `consumers` or the tenant GUID.
//! - Notion: `GET|POST /v1/oauth/authorize`, `POST /v1/oauth/token`, `POST /v1/oauth/revoke`,
//!   `GET /v1/users/me`.
//!
//! The consent step can be driven without a browser: POST the authorization parameters as a
//! form to the authorize path, plus `decision=approve|deny`, optionally `login=<e-mail>` and
//! `granted_scope=<subset>`, and read the `303`'s `Location`.

mod authorize;
mod common;
mod config;
mod consent_page;
mod error;
mod google;
mod handle;
mod id_token;
mod identity;
mod keys;
mod microsoft;
mod notion;
mod state_file;
mod store;
mod token;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use config::{DEFAULT_TENANT_ID, EmulatorConfig, Endpoints, Flavor};
pub use handle::{Counters, EmulatorHandle, Fault, IdTokenFault};
pub use identity::DEFAULT_LOGIN;

/// Build the router for an emulator whose public base URL (scheme://host:port/prefix, no
/// trailing slash) is `base_url` (needed for the id-token issuer and for the consent form's
/// action). Used to nest into another server.
pub fn router(config: EmulatorConfig, base_url: &str) -> (axum::Router, EmulatorHandle) {
    let flavor = config.flavor;
    let handle = EmulatorHandle::new(config, base_url);
    let routes = match flavor {
        Flavor::Google => google::routes(),
        Flavor::Microsoft => microsoft::routes(),
        Flavor::Notion => notion::routes(),
    };
    (routes.with_state(handle.clone()), handle)
}

/// An emulator serving on a loopback port; dropping it or calling [`shutdown`](Self::shutdown) stops it.
pub struct RunningEmulator {
    /// `http://127.0.0.1:<port>`, without a trailing slash.
    pub base_url: String,
    /// Counters and fault switches.
    pub handle: EmulatorHandle,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

impl RunningEmulator {
    /// The absolute URLs of the emulator's endpoints.
    pub fn endpoints(&self) -> Endpoints {
        self.handle.endpoints()
    }

    /// Stops accepting connections and waits (briefly) for in-flight requests to finish.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            // A request stuck in an injected `Fault::Slow` must not hang the test's teardown.
            if tokio::time::timeout(Duration::from_secs(5), server).await.is_err() {
                tracing::warn!("emulator did not stop within 5s");
            }
        }
    }
}

impl Drop for RunningEmulator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Bind 127.0.0.1:0, serve in a tokio task, return a running emulator.
pub async fn spawn(config: EmulatorConfig) -> anyhow::Result<RunningEmulator> {
    let flavor = config.flavor;
    let listener = tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .context("binding a loopback port for the provider emulator")?;
    let address = listener.local_addr().context("reading the emulator's address")?;
    let base_url = format!("http://{address}");
    let (app, handle) = router(config, &base_url);
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        if let Err(error) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
            tracing::error!(%error, ?flavor, "provider emulator stopped with an error");
        }
    });
    tracing::debug!(?flavor, %base_url, "provider emulator listening");
    Ok(RunningEmulator { base_url, handle, stop: Some(stop), server: Some(server) })
}
