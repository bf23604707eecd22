//! Bookkeeping of codes, grants and tokens, in memory (and serialisable for the state file);
//! no HTTP here.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

/// Index of a grant in the store.
pub(crate) type GrantId = usize;

/// An authorization code and everything it is bound to.
#[derive(Clone, Debug)]
pub(crate) struct AuthCode {
    pub(crate) client_id: String,
    pub(crate) redirect_uri: String,
    /// PKCE S256 challenge; `None` where the flavor has no PKCE (Notion).
    pub(crate) code_challenge: Option<String>,
    pub(crate) scopes: Vec<String>,
    pub(crate) nonce: Option<String>,
    pub(crate) login: String,
    /// Whether the exchange yields a refresh token (decided at consent, per flavor rules).
    pub(crate) issue_refresh_token: bool,
    pub(crate) expires_at: DateTime<Utc>,
}

struct CodeRecord {
    code: AuthCode,
    used: bool,
    /// The grant opened by the first exchange, killed if the code is replayed.
    grant: Option<GrantId>,
}

/// Why a code could not be redeemed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum CodeProblem {
    Unknown,
    Expired,
    AlreadyUsed,
}

/// The result of one user's consent: the scopes and identity tokens are issued for.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Grant {
    pub(crate) login: String,
    pub(crate) scopes: Vec<String>,
    pub(crate) live: bool,
    refresh_token: Option<String>,
    /// Access tokens minted before the last bump are dead (Notion's refresh replaces the pair).
    access_epoch: u64,
}

#[derive(Serialize, Deserialize)]
struct AccessRecord {
    grant: GrantId,
    epoch: u64,
    /// `None` never expires by time (Notion).
    expires_at: Option<DateTime<Utc>>,
}

/// Outcome of looking up a refresh token.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RefreshLookup {
    Live(GrantId),
    /// The token was current but its grant has been revoked.
    Revoked,
    /// Rotated away: a client presenting it again lost track of the rotation, or it was stolen.
    Reused(GrantId),
    /// Never issued.
    Unknown,
}

/// Everything an emulator remembers; the state file holds all of it but the codes.
#[derive(Default, Serialize, Deserialize)]
pub(crate) struct Store {
    /// Not persisted: a code lives for seconds, and one issued before a restart is simply unknown.
    #[serde(skip)]
    codes: HashMap<String, CodeRecord>,
    grants: Vec<Grant>,
    access_tokens: HashMap<String, AccessRecord>,
    /// Only each grant's current refresh token; rotated ones are removed.
    refresh_tokens: HashMap<String, GrantId>,
    /// Refresh tokens rotated away, and their grant (reuse detection, RFC 9700 §4.14.2).
    rotated_refresh_tokens: HashMap<String, GrantId>,
    /// Scopes each login has granted so far (Google: first consent and incremental auth).
    consents: HashMap<String, BTreeSet<String>>,
}

impl Store {
    pub(crate) fn insert_code(&mut self, code: String, data: AuthCode) {
        let record = CodeRecord { code: data, used: false, grant: None };
        self.codes.insert(code, record);
    }

    /// Consumes `code`. A replay also revokes the grant the first exchange opened
    /// (RFC 6749 §4.1.2: the server SHOULD revoke tokens issued from a reused code).
    pub(crate) fn take_code(&mut self, code: &str, now: DateTime<Utc>) -> Result<AuthCode, CodeProblem> {
        let record = self.codes.get_mut(code).ok_or(CodeProblem::Unknown)?;
        if record.used {
            if let Some(grant) = record.grant {
                self.revoke_grant(grant);
            }
            return Err(CodeProblem::AlreadyUsed);
        }
        // Any attempt burns the code, so a wrong PKCE verifier cannot be retried.
        record.used = true;
        if record.code.expires_at <= now {
            return Err(CodeProblem::Expired);
        }
        Ok(record.code.clone())
    }

    /// Opens the grant a redeemed code leads to.
    pub(crate) fn open_grant(&mut self, code: &str, data: &AuthCode) -> GrantId {
        let id = self.grants.len();
        self.grants.push(Grant {
            login: data.login.clone(),
            scopes: data.scopes.clone(),
            live: true,
            refresh_token: None,
            access_epoch: 0,
        });
        if let Some(record) = self.codes.get_mut(code) {
            record.grant = Some(id);
        }
        id
    }

    pub(crate) fn grant(&self, id: GrantId) -> &Grant {
        &self.grants[id]
    }

    pub(crate) fn add_access_token(&mut self, token: String, grant: GrantId, expires_at: Option<DateTime<Utc>>) {
        let epoch = self.grants[grant].access_epoch;
        let record = AccessRecord { grant, epoch, expires_at };
        self.access_tokens.insert(token, record);
    }

    /// Makes `token` the grant's refresh token, retiring the previous one (rotation).
    pub(crate) fn set_refresh_token(&mut self, grant: GrantId, token: String) {
        if let Some(previous) = self.grants[grant].refresh_token.replace(token.clone()) {
            self.refresh_tokens.remove(&previous);
            self.rotated_refresh_tokens.insert(previous, grant);
        }
        self.refresh_tokens.insert(token, grant);
    }

    /// Kills the grant's access tokens, for providers whose refresh replaces the pair.
    pub(crate) fn drop_access_tokens(&mut self, grant: GrantId) {
        self.grants[grant].access_epoch += 1;
    }

    pub(crate) fn lookup_refresh_token(&self, token: &str) -> RefreshLookup {
        match self.refresh_tokens.get(token) {
            Some(&grant) if self.grants[grant].live => RefreshLookup::Live(grant),
            Some(_) => RefreshLookup::Revoked,
            None => match self.rotated_refresh_tokens.get(token) {
                Some(&grant) => RefreshLookup::Reused(grant),
                None => RefreshLookup::Unknown,
            },
        }
    }

    pub(crate) fn live_refresh_token(&self, token: &str) -> Option<GrantId> {
        match self.lookup_refresh_token(token) {
            RefreshLookup::Live(grant) => Some(grant),
            _ => None,
        }
    }

    /// The grant behind an access token that is neither expired nor revoked.
    pub(crate) fn live_access_token(&self, token: &str, now: DateTime<Utc>) -> Option<GrantId> {
        let record = self.access_tokens.get(token)?;
        let grant = &self.grants[record.grant];
        let expired = record.expires_at.is_some_and(|at| at <= now);
        let live = grant.live && record.epoch == grant.access_epoch;
        (!expired && live).then_some(record.grant)
    }

    /// The live grant behind an access or refresh token, for revocation endpoints.
    pub(crate) fn grant_of_token(&self, token: &str, now: DateTime<Utc>) -> Option<GrantId> {
        self.live_access_token(token, now).or_else(|| self.live_refresh_token(token))
    }

    /// How many grants are not revoked.
    pub(crate) fn live_grants(&self) -> usize {
        self.grants.iter().filter(|grant| grant.live).count()
    }

    pub(crate) fn revoke_grant(&mut self, grant: GrantId) {
        self.grants[grant].live = false;
    }

    /// Revoking at the provider removes the app's access: the next consent is a first one again.
    pub(crate) fn forget_consent(&mut self, login: &str) {
        self.consents.remove(login);
    }

    pub(crate) fn revoke_all_grants(&mut self) {
        for grant in &mut self.grants {
            grant.live = false;
        }
        self.consents.clear();
    }

    pub(crate) fn expire_access_tokens(&mut self, now: DateTime<Utc>) {
        let past = now - TimeDelta::seconds(1);
        for record in self.access_tokens.values_mut() {
            record.expires_at = Some(past);
        }
    }

    /// Scopes `login` granted before, or `None` if this is their first consent.
    pub(crate) fn previous_consent(&self, login: &str) -> Option<&BTreeSet<String>> {
        self.consents.get(login)
    }

    pub(crate) fn record_consent(&mut self, login: &str, scopes: &[String]) {
        self.consents.entry(login.to_owned()).or_default().extend(scopes.iter().cloned());
    }

    /// Whether every token names a grant that exists: a state file edited by hand may not, and
    /// the lookups index `grants` directly.
    pub(crate) fn is_consistent(&self) -> bool {
        let known = |grant: &GrantId| *grant < self.grants.len();
        self.access_tokens.values().all(|record| known(&record.grant))
            && self.refresh_tokens.values().all(known)
            && self.rotated_refresh_tokens.values().all(known)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(now: DateTime<Utc>) -> AuthCode {
        AuthCode {
            client_id: "client".into(),
            redirect_uri: "http://localhost/cb".into(),
            code_challenge: None,
            scopes: vec!["openid".into()],
            nonce: None,
            login: "alice@example.com".into(),
            issue_refresh_token: true,
            expires_at: now + TimeDelta::minutes(10),
        }
    }

    #[test]
    fn a_replayed_code_is_refused_and_revokes_the_grant_it_opened() {
        let now = Utc::now();
        let mut store = Store::default();
        store.insert_code("c".into(), code(now));
        let data = store.take_code("c", now).unwrap();
        let grant = store.open_grant("c", &data);
        store.add_access_token("at".into(), grant, None);

        assert_eq!(store.take_code("c", now).unwrap_err(), CodeProblem::AlreadyUsed);
        assert_eq!(store.live_access_token("at", now), None);
    }

    #[test]
    fn an_expired_code_is_refused() {
        let now = Utc::now();
        let mut store = Store::default();
        store.insert_code("c".into(), code(now));
        let later = now + TimeDelta::minutes(11);
        assert_eq!(store.take_code("c", later).unwrap_err(), CodeProblem::Expired);
    }

    #[test]
    fn rotation_retires_the_previous_refresh_token() {
        let now = Utc::now();
        let mut store = Store::default();
        store.insert_code("c".into(), code(now));
        let data = store.take_code("c", now).unwrap();
        let grant = store.open_grant("c", &data);
        store.set_refresh_token(grant, "r1".into());
        store.set_refresh_token(grant, "r2".into());
        assert_eq!(
            store.lookup_refresh_token("r1"),
            RefreshLookup::Reused(grant),
            "rotated away, remembered for reuse detection"
        );
        assert_eq!(store.lookup_refresh_token("never"), RefreshLookup::Unknown);
        assert_eq!(store.lookup_refresh_token("r2"), RefreshLookup::Live(grant));
        store.revoke_all_grants();
        assert_eq!(store.lookup_refresh_token("r2"), RefreshLookup::Revoked);
    }
}
