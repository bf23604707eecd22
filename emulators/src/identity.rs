//! Deterministic provider identities derived from the login e-mail, so that reconnecting
//! the same login (even against a fresh emulator) yields the same provider user id.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::common::format_uuid;

/// The login used when the consent form leaves the field empty.
pub const DEFAULT_LOGIN: &str = "alice@example.com";

/// A person as the emulated provider knows them.
#[derive(Clone, Debug)]
pub(crate) struct Person {
    /// The normalised e-mail (trimmed, lower-case).
    pub(crate) email: String,
    /// `Alice Smith` for `alice.smith@…`.
    pub(crate) name: String,
    pub(crate) given_name: String,
    pub(crate) family_name: String,
}

impl Person {
    pub(crate) fn from_login(login: &str) -> Self {
        let email = normalise_login(login);
        let local = email.split('@').next().unwrap_or_default();
        let words: Vec<String> = local.split(['.', '_', '-', '+']).filter(|w| !w.is_empty()).map(capitalise).collect();
        let given_name = words.first().cloned().unwrap_or_else(|| "User".to_owned());
        let family_name = if words.len() > 1 { words[1..].join(" ") } else { "Example".to_owned() };
        Self { name: format!("{given_name} {family_name}"), email, given_name, family_name }
    }

    /// Google's `sub`: a 21-digit number, like real Google account ids.
    pub(crate) fn google_sub(&self) -> String {
        let digest = hash(&["google-sub", &self.email]);
        let number = u128::from_be_bytes(digest[..16].try_into().expect("16 bytes"));
        format!("1{:020}", number % 100_000_000_000_000_000_000)
    }

    /// The YouTube channel id: `UC` and 22 base64url characters.
    pub(crate) fn youtube_channel_id(&self) -> String {
        let digest = hash(&["youtube-channel", &self.email]);
        format!("UC{}", &URL_SAFE_NO_PAD.encode(&digest[..17])[..22])
    }

    /// Microsoft's `oid`: the object id, the same for every app.
    pub(crate) fn microsoft_oid(&self) -> String {
        uuid_from(&["microsoft-oid", &self.email])
    }

    /// Microsoft's `sub`: pairwise, i.e. different per app and different from `oid`.
    pub(crate) fn microsoft_sub(&self, client_id: &str) -> String {
        let digest = hash(&["microsoft-sub", client_id, &self.email]);
        URL_SAFE_NO_PAD.encode(&digest[..32])[..43].to_owned()
    }

    /// Notion's id for the person who owns the connection.
    pub(crate) fn notion_user_id(&self) -> String {
        uuid_from(&["notion-user", &self.email])
    }

    /// Notion's `bot_id`: one per integration and workspace.
    pub(crate) fn notion_bot_id(&self, client_id: &str) -> String {
        uuid_from(&["notion-bot", client_id, &self.email])
    }

    /// The id of the person's Notion workspace.
    pub(crate) fn notion_workspace_id(&self) -> String {
        uuid_from(&["notion-workspace", &self.email])
    }
}

/// Trimmed and lower-cased, falling back to [`DEFAULT_LOGIN`] when empty.
pub(crate) fn normalise_login(login: &str) -> String {
    let login = login.trim();
    if login.is_empty() { DEFAULT_LOGIN.to_owned() } else { login.to_lowercase() }
}

fn capitalise(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn hash(parts: &[&str]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in parts {
        // Length-prefix each part so ("ab","c") and ("a","bc") differ.
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hasher.finalize().into()
}

fn uuid_from(parts: &[&str]) -> String {
    let digest = hash(parts);
    let mut bytes: [u8; 16] = digest[..16].try_into().expect("16 bytes");
    // Mark it as a name-based (version 5 style) UUID so it looks like a real one.
    bytes[6] = (bytes[6] & 0x0f) | 0x50;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    format_uuid(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_per_login_and_differ_between_logins() {
        let alice = Person::from_login(" Alice@Example.com ");
        let again = Person::from_login("alice@example.com");
        let bob = Person::from_login("bob.smith@example.com");
        assert_eq!(alice.google_sub(), again.google_sub());
        assert_eq!(alice.google_sub().len(), 21);
        assert_ne!(alice.google_sub(), bob.google_sub());
        assert_eq!(alice.microsoft_oid(), again.microsoft_oid());
        assert_ne!(alice.microsoft_oid(), alice.microsoft_sub("client"));
        assert_eq!(alice.youtube_channel_id().len(), 24);
        assert_eq!(bob.name, "Bob Smith");
    }
}
