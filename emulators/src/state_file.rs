//! The optional state file ([`EmulatorConfig::with_state_file`](crate::EmulatorConfig::with_state_file)):
//! the store as JSON, read at start and rewritten after every change, so grants outlive a restart.

use std::fs;
use std::io;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::sync::MutexGuard;

use crate::store::Store;

/// The store in `path`: empty when the file does not exist, and (with a warning) when it cannot
/// be read or does not hold a store.
pub(crate) fn load(path: &Path) -> Store {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Store::default(),
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "cannot read the emulator's state file; starting empty");
            return Store::default();
        }
    };
    match serde_json::from_slice::<Store>(&bytes) {
        Ok(store) if store.is_consistent() => store,
        Ok(_) => {
            tracing::warn!(path = %path.display(), "the emulator's state file names unknown grants; starting empty");
            Store::default()
        }
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "the emulator's state file is corrupt; starting empty");
            Store::default()
        }
    }
}

/// Writes `store` to `path` atomically: a temporary file in the same folder, then a rename, so a
/// crash leaves the old state or the new one, never half of one.
pub(crate) fn save(path: &Path, store: &Store) -> io::Result<()> {
    let json = serde_json::to_vec(store).map_err(io::Error::other)?;
    if let Some(folder) = path.parent() {
        fs::create_dir_all(folder)?;
    }
    let temporary = temporary_path(path);
    write_private(&temporary, &json)?;
    fs::rename(&temporary, path)
}

/// `<file>.<pid>.tmp` beside `path`: the rename stays within one file system, and two processes
/// sharing the folder by mistake do not write into each other's temporary file.
fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".{}.tmp", std::process::id()));
    path.with_file_name(name)
}

/// Writes and flushes to disk a file only its owner can read: the data folder holds secrets.
#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut file = fs::File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// The locked store; released after a change, it rewrites the state file (if there is one).
///
/// A change is any call of a `&mut self` method of [`Store`]. The file is written while the lock
/// is still held, so writes land in the order of the changes, and before the handler answers, so
/// a client never holds a token the file does not know.
pub(crate) struct StoreGuard<'a> {
    store: MutexGuard<'a, Store>,
    state_file: Option<&'a Path>,
    changed: bool,
}

impl<'a> StoreGuard<'a> {
    pub(crate) fn new(store: MutexGuard<'a, Store>, state_file: Option<&'a Path>) -> Self {
        Self { store, state_file, changed: false }
    }
}

impl Deref for StoreGuard<'_> {
    type Target = Store;

    fn deref(&self) -> &Store {
        &self.store
    }
}

impl DerefMut for StoreGuard<'_> {
    fn deref_mut(&mut self) -> &mut Store {
        self.changed = true;
        &mut self.store
    }
}

impl Drop for StoreGuard<'_> {
    fn drop(&mut self) {
        if !self.changed {
            return;
        }
        if let Some(path) = self.state_file
            && let Err(error) = save(path, &self.store)
        {
            // The emulator keeps serving from memory; only a restart would lose this change.
            tracing::warn!(path = %path.display(), %error, "cannot write the emulator's state file");
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::common::{pkce_s256, random_string};
    use crate::{EmulatorConfig, Flavor, RunningEmulator};

    const REDIRECT_URI: &str = "http://127.0.0.1:9/callback";

    /// A state file in a folder of its own that does not exist yet.
    fn fresh_state_file(flavor: Flavor) -> PathBuf {
        let folder = std::env::temp_dir().join(format!("emulator-state-{}", random_string(8)));
        folder.join(format!("sandbox-{}.json", flavor.display_name().to_lowercase()))
    }

    fn config(flavor: Flavor, state_file: &Path) -> EmulatorConfig {
        EmulatorConfig::new(flavor, "client", "secret").with_state_file(state_file)
    }

    /// A client that, like the service's, never follows redirects.
    fn client() -> reqwest::Client {
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
    }

    /// Consent as `alice@example.com` and exchange the code; the token response.
    async fn connect(emulator: &RunningEmulator, scope: &str, extra: &[(&str, &str)]) -> Value {
        let verifier = random_string(64);
        let challenge = pkce_s256(&verifier);
        let mut consent = vec![
            ("client_id", "client"),
            ("response_type", "code"),
            ("redirect_uri", REDIRECT_URI),
            ("state", "s"),
            ("scope", scope),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("decision", "approve"),
        ];
        consent.extend_from_slice(extra);
        let approved = client().post(emulator.endpoints().authorization_url).form(&consent).send().await.unwrap();
        assert_eq!(approved.status(), 303);
        let location = url::Url::parse(approved.headers()["location"].to_str().unwrap()).unwrap();
        let code = location.query_pairs().find(|(name, _)| name == "code").unwrap().1.into_owned();
        let exchange = [
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", &verifier),
        ];
        let (status, body) = token_request(emulator, &exchange).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// A token-endpoint request with the client's credentials in the body.
    async fn token_request(emulator: &RunningEmulator, params: &[(&str, &str)]) -> (u16, Value) {
        let mut form = params.to_vec();
        form.extend([("client_id", "client"), ("client_secret", "secret")]);
        let response = client().post(emulator.endpoints().token_url).form(&form).send().await.unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    async fn refresh(emulator: &RunningEmulator, refresh_token: &str) -> (u16, Value) {
        token_request(emulator, &[("grant_type", "refresh_token"), ("refresh_token", refresh_token)]).await
    }

    #[tokio::test]
    async fn a_rotated_microsoft_refresh_token_still_refreshes_after_a_restart() {
        let state_file = fresh_state_file(Flavor::Microsoft);
        let microsoft = crate::spawn(config(Flavor::Microsoft, &state_file)).await.unwrap();
        let connected = connect(&microsoft, "openid offline_access User.Read", &[]).await;
        let first = connected["refresh_token"].as_str().unwrap().to_owned();
        let (status, rotated) = refresh(&microsoft, &first).await;
        assert_eq!(status, 200, "{rotated}");
        let second = rotated["refresh_token"].as_str().unwrap().to_owned();
        let access_token = rotated["access_token"].as_str().unwrap().to_owned();
        microsoft.shutdown().await;

        let restarted = crate::spawn(config(Flavor::Microsoft, &state_file)).await.unwrap();
        assert!(restarted.handle.is_access_token_live(&access_token), "access tokens survive too");
        let (status, refused) = refresh(&restarted, &first).await;
        assert_eq!((status, refused["error"].as_str()), (400, Some("invalid_grant")), "still rotated away");
        let (status, refreshed) = refresh(&restarted, &second).await;
        assert_eq!(status, 200, "{refreshed}");
        let third = refreshed["refresh_token"].as_str().unwrap();
        assert_ne!(third, second, "rotation goes on");
        assert!(restarted.handle.is_refresh_token_live(third) && !restarted.handle.is_refresh_token_live(&second));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&state_file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "only the owner reads the tokens");
        }
        restarted.shutdown().await;
        fs::remove_dir_all(state_file.parent().unwrap()).ok();
    }

    #[tokio::test]
    async fn a_google_refresh_token_refreshes_after_a_restart_until_it_is_revoked() {
        let state_file = fresh_state_file(Flavor::Google);
        let google = crate::spawn(config(Flavor::Google, &state_file)).await.unwrap();
        let connected = connect(&google, "openid email", &[("access_type", "offline")]).await;
        let refresh_token = connected["refresh_token"].as_str().unwrap().to_owned();
        google.shutdown().await;

        let restarted = crate::spawn(config(Flavor::Google, &state_file)).await.unwrap();
        let (status, refreshed) = refresh(&restarted, &refresh_token).await;
        assert_eq!(status, 200, "{refreshed}");
        let revoke_url = restarted.endpoints().revocation_url.unwrap();
        let revoked = client().post(revoke_url).form(&[("token", refresh_token.as_str())]).send().await.unwrap();
        assert_eq!(revoked.status(), 200);
        restarted.shutdown().await;

        let again = crate::spawn(config(Flavor::Google, &state_file)).await.unwrap();
        assert_eq!(again.handle.live_grants(), 0);
        let (status, refused) = refresh(&again, &refresh_token).await;
        assert_eq!((status, refused["error"].as_str()), (400, Some("invalid_grant")), "revoked stays revoked");
        // The revocation also forgot the consent: the next one is a first one again, with a refresh token.
        let reconnected = connect(&again, "openid email", &[("access_type", "offline")]).await;
        assert!(reconnected["refresh_token"].is_string(), "{reconnected}");
        again.shutdown().await;
        fs::remove_dir_all(state_file.parent().unwrap()).ok();
    }

    #[tokio::test]
    async fn a_google_consent_is_remembered_across_a_restart() {
        let state_file = fresh_state_file(Flavor::Google);
        let google = crate::spawn(config(Flavor::Google, &state_file)).await.unwrap();
        connect(&google, "openid email", &[("access_type", "offline")]).await;
        google.shutdown().await;

        let restarted = crate::spawn(config(Flavor::Google, &state_file)).await.unwrap();
        let again = connect(&restarted, "openid email", &[("access_type", "offline")]).await;
        assert!(again.get("refresh_token").is_none(), "not a first consent, so no refresh token: {again}");
        restarted.shutdown().await;
        fs::remove_dir_all(state_file.parent().unwrap()).ok();
    }

    #[test]
    fn a_missing_or_corrupt_state_file_loads_an_empty_store() {
        let state_file = fresh_state_file(Flavor::Notion);
        assert_eq!(load(&state_file).live_grants(), 0, "missing");
        fs::create_dir_all(state_file.parent().unwrap()).unwrap();
        fs::write(&state_file, b"{\"grants\": [").unwrap();
        assert_eq!(load(&state_file).live_grants(), 0, "cut off");
        let unknown_grant = r#"{"grants": [], "access_tokens": {}, "refresh_tokens": {"r": 3},
            "rotated_refresh_tokens": {}, "consents": {}}"#;
        fs::write(&state_file, unknown_grant).unwrap();
        assert_eq!(load(&state_file).lookup_refresh_token("r"), crate::store::RefreshLookup::Unknown, "inconsistent");
        fs::remove_dir_all(state_file.parent().unwrap()).ok();
    }
}
