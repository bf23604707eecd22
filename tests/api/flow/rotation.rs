//! Key rotation while the service serves: every stored secret ends under the new primary key, no
//! read fails meanwhile, refreshes running at the same time keep their rotated tokens, and the old
//! key can then leave the ring (and not before).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use oauth_manager::keys::{self, RetireRefusal};
use serde_json::json;

use super::support::{API, Harness, json_body};
use crate::on_both_backends;
use crate::support::{Backend, SERVICE_KEY, TestApp};

/// The test apps' key (`TestConfig`), and the one that replaces it.
const OLD_KEY: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const NEW_KEY: &str = "2222222222222222222222222222222222222222222222222222222222222222";

async fn rotation_under_load_fails_no_read_and_retires_the_old_key(backend: Backend) {
    let h = Harness::start_without_token_cache(backend).await; // its key ring is k1 only
    let mut ids = vec![h.connect("google").await, h.connect("microsoft").await, h.connect("notion").await];
    for n in 0..3 {
        let user = h.app.user(&format!("load{n}@example.com")).await;
        let flow = json_body(h.initiate_as(&user.token, "microsoft", json!({})).await, 200).await;
        let login = format!("load{n}@example.com");
        let callback = h.approve(flow["authorization_url"].as_str().unwrap(), Some(&login), None).await;
        ids.push(json_body(h.callback(&callback).await, 200).await["integration_id"].as_i64().unwrap());
    }
    h.initiated("google", json!({})).await; // an open flow: a state with an encrypted verifier
    // Microsoft rotates refresh tokens: expired ones are refreshed while the keys rotate.
    for id in &ids[3..] {
        h.set_token_times(*id, Some(-60), 3600).await;
    }

    let both = h.config().set("OAUTH_ENCRYPTION_KEY", format!("k2:{NEW_KEY},k1:{OLD_KEY}"));
    let serving = TestApp::spawn(both).await;
    let (store, ring) = (serving.state.vault.store.clone(), serving.state.vault.keys.clone());
    let refused = keys::check_retire(store.as_ref(), &ring, "k1").await.unwrap();
    assert!(matches!(refused, Err(RetireRefusal::InUse { .. })), "k1 still encrypts everything: {refused:?}");
    let total = store.secrets_under(None).await.unwrap();
    assert_eq!(store.secrets_under(Some("k1")).await.unwrap(), total);

    let stop = Arc::new(AtomicBool::new(false));
    let (served, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load: Vec<_> = ids
        .iter()
        .map(|id| {
            let (client, url) = (serving.client.clone(), serving.url(&format!("{API}/integrations/{id}/token")));
            let (stop, served, failed) = (stop.clone(), served.clone(), failed.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let response = client.get(&url).bearer_auth(SERVICE_KEY).send().await.unwrap();
                    let counter = if response.status() == 200 { &served } else { &failed };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let rotation = keys::rotate(store.as_ref(), &ring, 2, &|_| {}).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let (served, failed) = (served.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert_eq!(failed, 0, "no read failed during the rotation ({served} served)");
    assert!(served > 0);
    assert_eq!(rotation.undecryptable, 0);
    assert_eq!(store.secrets_under(Some("k1")).await.unwrap(), 0, "{rotation:?}");
    assert_eq!(store.secrets_under(Some("k2")).await.unwrap(), store.secrets_under(None).await.unwrap());
    assert_eq!(keys::check_retire(store.as_ref(), &ring, "k1").await.unwrap(), Ok(()));
    assert_eq!(
        keys::check_retire(store.as_ref(), &ring, "k2").await.unwrap(),
        Err(RetireRefusal::Primary("k2".into()))
    );
    // Running it again finds nothing to do (it resumes where it stopped).
    assert_eq!(keys::rotate(store.as_ref(), &ring, 2, &|_| {}).await.unwrap(), keys::Rotation::default());
    println!(
        "key rotation ({backend:?}): {} secrets rewritten, {} rows written by refreshes meanwhile, {served} hand-outs \
         served during it, {failed} failed",
        rotation.rewritten, rotation.changed_meanwhile
    );

    // Without the old key, every connection still works, refreshes included, and the open flow's
    // verifier decrypts.
    let only_new = TestApp::spawn(h.config().set("OAUTH_ENCRYPTION_KEY", format!("k2:{NEW_KEY}"))).await;
    for id in &ids {
        h.set_token_times(*id, Some(-60), 3600).await;
        let response = super::support::service_get(&only_new, &format!("{API}/integrations/{id}/token")).await;
        json_body(response, 200).await;
    }
    let states = store.verifiers_not_under("none", 0, 100).await.unwrap();
    assert_eq!(states.len(), 1);
    let aad = oauth_manager::crypto::Aad::code_verifier(&states[0].state_token);
    assert!(only_new.state.vault.keys.decrypt(&states[0].code_verifier, &aad).is_ok());
}

on_both_backends!(rotation_under_load_fails_no_read_and_retires_the_old_key);
