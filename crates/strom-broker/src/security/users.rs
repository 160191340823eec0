//! The SCRAM user store: one file in the data dir (`__strom_meta/scram-credentials.json`)
//! holding, per user and mechanism, the salt, iterations, stored key and server key, never a
//! password. Written atomically; re-read when the file changes on disk, so `strom user`
//! run beside a live broker takes effect without a restart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::scram::ScramCredential;
use super::settings::Mechanism;

pub const USERS_FILE: &str = "scram-credentials.json";

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct UsersFile {
    /// user -> mechanism name -> credential
    users: BTreeMap<String, BTreeMap<String, ScramCredential>>,
}

#[derive(Debug, thiserror::Error)]
pub enum UserStoreError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("cannot write {path}: {reason}")]
    Write { path: String, reason: String },
}

struct Loaded {
    file: UsersFile,
    /// (modified, length) of the file when read; a change makes the next look-up re-read.
    stamp: Option<(SystemTime, u64)>,
}

pub struct UserStore {
    path: PathBuf,
    state: Mutex<Loaded>,
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

impl UserStore {
    /// Opens the store in `meta_dir` (an absent file is an empty store).
    pub fn open(meta_dir: &Path) -> Result<UserStore, UserStoreError> {
        let path = meta_dir.join(USERS_FILE);
        let loaded = Self::read(&path)?;
        Ok(UserStore {
            path,
            state: Mutex::new(loaded),
        })
    }

    fn read(path: &Path) -> Result<Loaded, UserStoreError> {
        let stamp = stamp(path);
        let file = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| UserStoreError::Read {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => UsersFile::default(),
            Err(e) => {
                return Err(UserStoreError::Read {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })
            }
        };
        Ok(Loaded { file, stamp })
    }

    /// Re-reads the file if it changed since it was read; a file that cannot be read now
    /// keeps the last good contents (and says so).
    fn refreshed(&self) -> parking_lot::MutexGuard<'_, Loaded> {
        let mut state = self.state.lock();
        if stamp(&self.path) != state.stamp {
            match Self::read(&self.path) {
                Ok(loaded) => *state = loaded,
                Err(e) => tracing::warn!(error = %e, "keeping the SCRAM users read before"),
            }
        }
        state
    }

    pub fn credential(&self, user: &str, m: Mechanism) -> Option<ScramCredential> {
        self.refreshed()
            .file
            .users
            .get(user)?
            .get(m.name())
            .cloned()
    }

    /// Every user with the mechanisms and iterations they have.
    pub fn list(&self) -> Vec<(String, Vec<(Mechanism, u32)>)> {
        self.refreshed()
            .file
            .users
            .iter()
            .map(|(user, creds)| {
                let mechs = creds
                    .iter()
                    .filter_map(|(m, c)| Some((Mechanism::from_name(m)?, c.iterations)))
                    .collect();
                (user.clone(), mechs)
            })
            .collect()
    }

    /// Applies upserts and deletions as one durable write. Returns, per deletion, whether
    /// the credential existed.
    pub fn apply(
        &self,
        upserts: Vec<(String, Mechanism, ScramCredential)>,
        deletions: &[(String, Mechanism)],
    ) -> Result<Vec<bool>, UserStoreError> {
        let mut state = self.refreshed();
        let mut file = state.file.clone();
        let mut existed = Vec::with_capacity(deletions.len());
        for (user, m) in deletions {
            let removed = file
                .users
                .get_mut(user)
                .and_then(|c| c.remove(m.name()))
                .is_some();
            if file.users.get(user).is_some_and(|c| c.is_empty()) {
                file.users.remove(user);
            }
            existed.push(removed);
        }
        for (user, m, credential) in upserts {
            file.users
                .entry(user)
                .or_default()
                .insert(m.name().to_string(), credential);
        }
        let bytes = serde_json::to_vec_pretty(&file).expect("credentials serialize");
        strom_log::atomic_file::write_atomically(&self.path, &bytes).map_err(|e| {
            UserStoreError::Write {
                path: self.path.display().to_string(),
                reason: e.to_string(),
            }
        })?;
        state.file = file;
        state.stamp = stamp(&self.path);
        Ok(existed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::scram::MIN_ITERATIONS;

    #[test]
    fn credentials_survive_a_reopen_and_no_password_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store = UserStore::open(dir.path()).unwrap();
        let c = ScramCredential::from_password(Mechanism::ScramSha256, "hunter2", MIN_ITERATIONS);
        store
            .apply(
                vec![("alice".into(), Mechanism::ScramSha256, c.clone())],
                &[],
            )
            .unwrap();
        let text = std::fs::read_to_string(dir.path().join(USERS_FILE)).unwrap();
        assert!(!text.contains("hunter2"));
        let reopened = UserStore::open(dir.path()).unwrap();
        assert_eq!(
            reopened.credential("alice", Mechanism::ScramSha256),
            Some(c)
        );
        assert_eq!(reopened.credential("alice", Mechanism::ScramSha512), None);
        // A second store writing the same file is seen by the first (the CLI beside a broker).
        let existed = reopened
            .apply(
                vec![],
                &[
                    ("alice".into(), Mechanism::ScramSha256),
                    ("bob".into(), Mechanism::ScramSha256),
                ],
            )
            .unwrap();
        assert_eq!(existed, vec![true, false]);
        assert_eq!(store.credential("alice", Mechanism::ScramSha256), None);
        assert!(store.list().is_empty());
    }
}
