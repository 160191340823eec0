//! Checking a user name and password against the SCRAM user store, for logins that carry
//! the password itself (HTTP Basic on the console and API), as SASL/PLAIN does: PBKDF2 over
//! the password with the stored salt and iterations must give the stored key.
//!
//! A full check costs thousands of HMAC rounds, and a console sends a request every few
//! seconds, so a success is remembered for `http.authentication.cache.ms`: as an HMAC of the
//! name and password under a key made at start (never the password), together with the
//! stored key it was checked against, so a changed or deleted credential is checked afresh
//! at once. At most `http.authentication.cache.max.entries` users are remembered.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use parking_lot::Mutex;
use ring::hmac;

use super::scram::{constant_time_eq, random_bytes, ScramCredential, DEFAULT_ITERATIONS};
use super::settings::Mechanism;
use super::users::UserStore;

struct Remembered {
    digest: Vec<u8>,
    stored_key: Vec<u8>,
    at: Instant,
}

pub struct PasswordCheck {
    key: hmac::Key,
    /// Checked against for a user who does not exist, so such a login takes as long as a
    /// wrong password and its timing does not tell which names exist.
    decoy: ScramCredential,
    ttl: Duration,
    max_entries: usize,
    remembered: Mutex<HashMap<String, Remembered>>,
}

impl PasswordCheck {
    pub fn new(ttl: Duration, max_entries: usize) -> PasswordCheck {
        PasswordCheck {
            key: hmac::Key::new(hmac::HMAC_SHA256, &random_bytes(32)),
            decoy: ScramCredential::from_password(
                Mechanism::ScramSha256,
                &B64.encode(random_bytes(16)),
                DEFAULT_ITERATIONS,
            ),
            ttl,
            max_entries: max_entries.max(1),
            remembered: Mutex::new(HashMap::new()),
        }
    }

    fn digest(&self, user: &str, password: &str) -> Vec<u8> {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(user.as_bytes());
        ctx.update(&[0]);
        ctx.update(password.as_bytes());
        ctx.sign().as_ref().to_vec()
    }

    /// Whether `password` is `user`'s (either SCRAM mechanism's credential will do).
    pub async fn verify(&self, users: &UserStore, user: &str, password: &str) -> bool {
        if user.is_empty() || password.is_empty() {
            return false;
        }
        let found = Mechanism::SCRAM
            .into_iter()
            .find_map(|m| Some((m, users.credential(user, m)?)));
        let exists = found.is_some();
        let (mechanism, credential) =
            found.unwrap_or_else(|| (Mechanism::ScramSha256, self.decoy.clone()));
        let digest = self.digest(user, password);
        if exists && self.remembers(user, &digest, &credential) {
            return true;
        }
        let shared = Arc::new((credential, password.to_string()));
        let check = shared.clone();
        let ok = tokio::task::spawn_blocking(move || check.0.verify_password(mechanism, &check.1))
            .await
            .unwrap_or(false)
            && exists;
        if ok && !self.ttl.is_zero() {
            self.remember(user, digest, &shared.0);
        }
        ok
    }

    fn remembers(&self, user: &str, digest: &[u8], credential: &ScramCredential) -> bool {
        let remembered = self.remembered.lock();
        remembered.get(user).is_some_and(|r| {
            r.at.elapsed() < self.ttl
                && constant_time_eq(&r.digest, digest)
                && r.stored_key == credential.stored_key
        })
    }

    fn remember(&self, user: &str, digest: Vec<u8>, credential: &ScramCredential) {
        let mut remembered = self.remembered.lock();
        if remembered.len() >= self.max_entries && !remembered.contains_key(user) {
            remembered.retain(|_, r| r.at.elapsed() < self.ttl);
            if remembered.len() >= self.max_entries {
                // Still full of live entries: forget them all rather than grow (they are
                // only a shortcut; the next request of each is checked in full).
                remembered.clear();
            }
        }
        remembered.insert(
            user.to_string(),
            Remembered {
                digest,
                stored_key: credential.stored_key.clone(),
                at: Instant::now(),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &std::path::Path, user: &str, password: &str) -> UserStore {
        let users = UserStore::open(dir).unwrap();
        let c = ScramCredential::from_password(Mechanism::ScramSha256, password, 4096);
        users
            .apply(vec![(user.into(), Mechanism::ScramSha256, c)], &[])
            .unwrap();
        users
    }

    #[tokio::test]
    async fn checks_passwords_and_notices_a_changed_credential() {
        let dir = tempfile::tempdir().unwrap();
        let users = store(dir.path(), "alice", "secret");
        let check = PasswordCheck::new(Duration::from_secs(60), 10);
        assert!(check.verify(&users, "alice", "secret").await);
        assert!(check.verify(&users, "alice", "secret").await, "remembered");
        assert!(!check.verify(&users, "alice", "wrong").await);
        assert!(!check.verify(&users, "bob", "secret").await);
        assert!(!check.verify(&users, "alice", "").await);
        // A new password: the remembered success no longer counts.
        let users = store(dir.path(), "alice", "changed");
        assert!(!check.verify(&users, "alice", "secret").await);
        assert!(check.verify(&users, "alice", "changed").await);
    }
}
