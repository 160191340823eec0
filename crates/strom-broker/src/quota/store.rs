//! The durable quota table: one file in the data dir (`__strom_meta/client-quotas.json`),
//! written atomically on every change, read once at start.
//!
//! ```text
//! {"quotas": [
//!   {"entity": [["user", "alice"], ["client-id", null]],   null = the <default> entity
//!    "values": {"producer_byte_rate": 1048576.0}}
//! ]}
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::entity::Entity;

pub const QUOTAS_FILE: &str = "client-quotas.json";

/// Every entity with at least one quota, and its values by key.
pub type Table = BTreeMap<Entity, BTreeMap<String, f64>>;

#[derive(Debug, Default, Serialize, Deserialize)]
struct QuotasFile {
    quotas: Vec<FileEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
struct FileEntry {
    entity: Vec<(String, Option<String>)>,
    values: BTreeMap<String, f64>,
}

#[derive(Debug, thiserror::Error)]
pub enum QuotaStoreError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("cannot write {path}: {reason}")]
    Write { path: String, reason: String },
}

pub struct QuotaStore {
    path: PathBuf,
}

impl QuotaStore {
    /// The store in `meta_dir` and what it holds (an absent file is no quotas).
    pub fn open(meta_dir: &Path) -> Result<(QuotaStore, Table), QuotaStoreError> {
        let store = QuotaStore {
            path: meta_dir.join(QUOTAS_FILE),
        };
        let table = store.read()?;
        Ok((store, table))
    }

    /// What the file holds now.
    pub fn read(&self) -> Result<Table, QuotaStoreError> {
        let path = &self.path;
        let read_err = |reason: String| QuotaStoreError::Read {
            path: path.display().to_string(),
            reason,
        };
        let file: QuotasFile = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| read_err(e.to_string()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => QuotasFile::default(),
            Err(e) => return Err(read_err(e.to_string())),
        };
        let mut table = Table::new();
        for entry in file.quotas {
            let entity = Entity::from_parts(&entry.entity).map_err(|(_, m)| read_err(m))?;
            table.insert(entity, entry.values);
        }
        Ok(table)
    }

    /// Replaces the file's contents with `table`.
    pub fn write(&self, table: &Table) -> Result<(), QuotaStoreError> {
        let file = QuotasFile {
            quotas: table
                .iter()
                .map(|(entity, values)| FileEntry {
                    entity: entity
                        .parts()
                        .into_iter()
                        .map(|(k, n)| (k.to_string(), n.map(str::to_string)))
                        .collect(),
                    values: values.clone(),
                })
                .collect(),
        };
        let bytes = serde_json::to_vec_pretty(&file).expect("quotas serialize");
        strom_log::atomic_file::write_atomically(&self.path, &bytes).map_err(|e| {
            QuotaStoreError::Write {
                path: self.path.display().to_string(),
                reason: e.to_string(),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_and_specific_entities_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (store, mut table) = QuotaStore::open(dir.path()).unwrap();
        assert!(table.is_empty());
        let default_user = Entity::user_client(Some(None), None);
        let pair = Entity::user_client(Some(Some("alice".into())), Some(Some("app".into())));
        table.insert(
            default_user.clone(),
            BTreeMap::from([("producer_byte_rate".into(), 1024.0)]),
        );
        table.insert(
            pair.clone(),
            BTreeMap::from([("request_percentage".into(), 12.5)]),
        );
        store.write(&table).unwrap();
        let (_, reopened) = QuotaStore::open(dir.path()).unwrap();
        assert_eq!(reopened, table);
        assert_eq!(reopened[&default_user]["producer_byte_rate"], 1024.0);
    }
}
