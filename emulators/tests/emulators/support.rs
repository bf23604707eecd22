//! Helpers shared by the emulator tests: a non-redirecting client, PKCE, and the consent POST.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use provider_emulators::{EmulatorConfig, Flavor, RunningEmulator};
use reqwest::redirect::Policy;
use serde_json::Value;
use sha2::{Digest, Sha256};
use url::Url;

pub const CLIENT_ID: &str = "test-client";
pub const CLIENT_SECRET: &str = "test-secret";
pub const REDIRECT_URI: &str = "http://127.0.0.1:9/api/v1/oauth/callback";

/// A client that, like the service's, never follows redirects.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(Policy::none()).build().unwrap()
}

pub async fn start(flavor: Flavor) -> RunningEmulator {
    provider_emulators::spawn(EmulatorConfig::new(flavor, CLIENT_ID, CLIENT_SECRET)).await.unwrap()
}

/// A PKCE pair: (verifier, S256 challenge).
pub fn pkce() -> (String, String) {
    let verifier = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

/// Posts the consent form with `params` and returns the redirect's parsed Location.
pub async fn consent(emulator: &RunningEmulator, params: &[(&str, &str)]) -> Url {
    let response = client().post(emulator.endpoints().authorization_url).form(params).send().await.unwrap();
    assert_eq!(response.status(), 303, "consent must redirect");
    let location = response.headers()["location"].to_str().unwrap();
    Url::parse(location).unwrap()
}

/// The value of `name` in `url`'s query.
pub fn query_param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs().find(|(key, _)| key == name).map(|(_, value)| value.into_owned())
}

/// Posts a form to the token endpoint with client_secret_post.
pub async fn token_request(emulator: &RunningEmulator, params: &[(&str, &str)]) -> (u16, Value) {
    let mut form = params.to_vec();
    form.push(("client_id", CLIENT_ID));
    form.push(("client_secret", CLIENT_SECRET));
    let response = client().post(emulator.endpoints().token_url).form(&form).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// Verifies an ID token against the emulator's JWKS, checking `iss` (either of Google's two
/// documented forms: the issuer URL, or the same without its scheme), `aud` and `exp`.
pub async fn verify_id_token(emulator: &RunningEmulator, id_token: &str) -> jsonwebtoken::errors::Result<Value> {
    let endpoints = emulator.endpoints();
    let jwks: JwkSet = client().get(endpoints.jwks_uri.unwrap()).send().await.unwrap().json().await.unwrap();
    let kid = jsonwebtoken::decode_header(id_token)?.kid.expect("kid header");
    let jwk = jwks.find(&kid).expect("kid published in the JWKS");
    let key = DecodingKey::from_jwk(jwk)?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[CLIENT_ID]);
    let issuer = endpoints.issuer.unwrap();
    let bare = issuer.split_once("://").map(|(_, bare)| bare.to_owned()).unwrap();
    validation.set_issuer(&[issuer, bare]);
    Ok(jsonwebtoken::decode::<Value>(id_token, &key, &validation)?.claims)
}
