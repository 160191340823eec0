//! Broker-private metadata under `<data-dir>/__strom_meta/`: the cluster id (stable across
//! restarts, as clients cache it) and the producer-id allocator.
//!
//! Producer ids must never repeat across restarts, because idempotence state is rebuilt from
//! the log. Ids are handed out from blocks: the end of the current block is written (fsynced)
//! before any id from it is used, so after a crash allocation resumes past every id given out.

use std::path::{Path, PathBuf};

use parking_lot::Mutex;

/// Ids reserved per write of `producer-ids`.
pub const PRODUCER_ID_BLOCK: i64 = 1000;

pub struct BrokerMeta {
    pub cluster_id: String,
    producer_ids: Mutex<(i64, i64)>, // (next, block end)
    path: PathBuf,
}

/// Replaces a small file durably (the shared write-temp, fsync, rename, fsync-dir helper).
fn write_durably(path: &Path, text: &str) -> std::io::Result<()> {
    strom_log::atomic_file::write_atomically(path, text.as_bytes())
}

impl BrokerMeta {
    pub fn open(meta_dir: &Path) -> std::io::Result<BrokerMeta> {
        std::fs::create_dir_all(meta_dir)?;
        let cluster_path = meta_dir.join("cluster-id");
        let cluster_id = match std::fs::read_to_string(&cluster_path) {
            Ok(s) if !s.trim().is_empty() => s.trim().to_string(),
            _ => {
                // Kafka cluster ids are 22-character URL-safe base64 UUIDs; a simple hex
                // UUID works for every client.
                let id = uuid::Uuid::new_v4().simple().to_string()[..22].to_string();
                write_durably(&cluster_path, &id)?;
                id
            }
        };
        let path = meta_dir.join("producer-ids");
        let next = std::fs::read_to_string(&path)
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .unwrap_or(0);
        Ok(BrokerMeta {
            cluster_id,
            producer_ids: Mutex::new((next, next)),
            path,
        })
    }

    /// A fresh producer id, never handed out before by this data dir.
    pub fn next_producer_id(&self) -> std::io::Result<i64> {
        let mut ids = self.producer_ids.lock();
        if ids.0 >= ids.1 {
            let end = ids.0 + PRODUCER_ID_BLOCK;
            write_durably(&self.path, &end.to_string())?;
            ids.1 = end;
        }
        let id = ids.0;
        ids.0 += 1;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producer_ids_never_repeat_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let m = BrokerMeta::open(dir.path()).unwrap();
        let a: Vec<i64> = (0..3).map(|_| m.next_producer_id().unwrap()).collect();
        let cluster = m.cluster_id.clone();
        drop(m);
        let m = BrokerMeta::open(dir.path()).unwrap();
        let b = m.next_producer_id().unwrap();
        assert!(a.iter().all(|x| *x < b), "{a:?} then {b}");
        assert_eq!(m.cluster_id, cluster);
    }
}
