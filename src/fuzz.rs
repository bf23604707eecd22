//! Property tests for everything that parses input from outside: the callback query, `return_to`,
//! host JWTs and provider ID tokens, stored ciphertexts, and provider token answers. Each property
//! runs `PROPTEST_CASES` cases (256 by default; `scripts/fuzz` runs many more).

#![cfg(test)]

use proptest::prelude::*;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use crate::auth::JwtVerifier;
use crate::crypto::{Aad, KeyRing};
use crate::oauth::input::ReturnTo;

fn ring() -> KeyRing {
    KeyRing::parse(&SecretString::from(format!("k1:{}", "ab".repeat(32)))).unwrap()
}

/// Text that looks like what an attacker sends: URLs, separators, escapes, control characters.
fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-zA-Z0-9:/@\\\\.%#?&=_\\-\\[\\] \\t\\r\\n\\x00]{0,80}",
        "(https?|javascript|data|blob|ftp)://[a-z.@:\\\\%0-9]{0,30}(/[a-z%@\\\\.]{0,20})?",
    ]
}

/// Any JSON value a provider might send, nested a little.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|n| json!(n)),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

proptest! {
    /// An accepted `return_to` is an http(s) page of an allowed origin, without credentials, and
    /// fits the cap; nothing panics.
    #[test]
    fn return_to_accepts_only_pages_of_allowed_origins(raw in hostile_text()) {
        let allowed = [url::Url::parse("http://app.test").unwrap().origin()];
        if let Ok(target) = ReturnTo::parse(&raw, &allowed, 2048) {
            let url = url::Url::parse(target.as_str()).unwrap();
            prop_assert!(matches!(url.scheme(), "http" | "https"));
            prop_assert_eq!(url.origin(), allowed[0].clone());
            prop_assert!(url.username().is_empty() && url.password().is_none());
            prop_assert!(target.as_str().len() <= 2048);
        }
    }

    /// No stored value but one this ring sealed for this row decrypts; nothing panics.
    #[test]
    fn stored_ciphertexts_that_were_not_sealed_here_never_decrypt(stored in hostile_text(), suffix in "[A-Za-z0-9_\\-]{0,80}") {
        let keys = ring();
        let aad = Aad::access_token(1, "google");
        prop_assert!(keys.decrypt(&stored, &aad).is_err());
        let forged = format!("v1:k1:{suffix}");
        prop_assert!(keys.decrypt(&forged, &aad).is_err());
    }

    /// Whatever is sealed comes back for its row, and only for it.
    #[test]
    fn sealing_round_trips_for_its_row_only(plaintext in any::<String>(), user in 1..i32::MAX) {
        let keys = ring();
        let sealed = keys.encrypt(&plaintext, &Aad::refresh_token(user, "notion"));
        let opened = keys.decrypt(&sealed, &Aad::refresh_token(user, "notion")).unwrap();
        prop_assert_eq!(opened.expose_secret(), plaintext.as_str());
        prop_assert!(keys.decrypt(&sealed, &Aad::access_token(user, "notion")).is_err());
    }

    /// A host JWT that is not one the host signed is refused; nothing panics.
    #[test]
    fn arbitrary_host_jwts_are_refused(token in hostile_text(), parts in prop::collection::vec("[A-Za-z0-9_\\-]{0,40}", 3)) {
        let verifier = JwtVerifier::new(&SecretString::from("a-jwt-secret-of-thirty-two-bytes".to_owned()));
        prop_assert!(verifier.verify(&token).is_none());
        prop_assert!(verifier.verify(&parts.join(".")).is_none());
    }

    /// An ID token we did not see the provider sign is refused, whatever it holds; nothing panics
    /// (the provider's keys are unreachable here, so only refusals are possible).
    #[test]
    fn arbitrary_id_tokens_are_refused(token in hostile_text(), header in json_value(), claims in json_value()) {
        let lookup = |name: &str| name.starts_with("GOOGLE_CLIENT_").then(|| "x".to_owned());
        let mut providers = crate::oauth::Providers::load(None, &lookup).unwrap();
        let google = providers.get_mut("google").unwrap();
        google.jwks_uri = Some("http://127.0.0.1:9/jwks".into());
        let google = google.clone();
        let encode = |value: &Value| base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, value.to_string());
        let shaped = format!("{}.{}.", encode(&header), encode(&claims));
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let cache = crate::oauth::id_token::JwksCache::default();
        let http = reqwest::Client::new();
        for candidate in [token, shaped] {
            let verdict = runtime.block_on(cache.validate(&http, &google, &candidate, Some("nonce")));
            prop_assert!(verdict.is_err());
        }
    }

    /// Whatever a provider puts in `expires_in` is never "never expires" unless it is absent.
    #[test]
    fn provider_expires_in_is_never_read_as_forever(value in json_value()) {
        let lifetime = crate::oauth::client::lifetime(Some(value.clone()));
        if value.is_null() {
            prop_assert_eq!(lifetime, None);
        } else {
            prop_assert!(lifetime.is_some_and(|seconds| seconds >= 0));
        }
    }

    /// A provider's `token_type` always fits its column and is printable.
    #[test]
    fn provider_token_types_fit_their_column(kind in any::<String>()) {
        let fitted = crate::oauth::client::fitted_token_type(&kind);
        prop_assert!(!fitted.is_empty() && fitted.len() <= 20);
        prop_assert!(fitted.chars().all(|c| c.is_ascii_graphic()));
    }

    /// A provider's `error` reaches answers and logs only as a short code.
    #[test]
    fn provider_errors_are_reduced_to_codes(error in any::<String>()) {
        let code = crate::oauth::client::error_code(&error);
        prop_assert!(!code.is_empty() && code.len() <= 64);
        prop_assert!(code.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')));
    }

    /// The callback's query parses into a response or a rejection, whatever it holds.
    #[test]
    fn any_callback_query_parses_or_is_refused(query in hostile_text()) {
        let uri: Result<axum::http::Uri, _> = format!("/callback?{}", query.replace(' ', "%20")).parse();
        if let Ok(uri) = uri {
            let _ = axum::extract::Query::<crate::http::flow::CallbackQuery>::try_from_uri(&uri);
        }
    }
}
