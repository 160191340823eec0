//! Cluster mode: SCRAM users, ACLs and client quotas are the same on every node. Each lives
//! in its own file in the meta dir on a single node; in cluster mode the file's whole content
//! is also a document of the metadata log (`PutDoc`, versioned). A node that changes one
//! (AlterUserScramCredentials, CreateAcls, DeleteAcls, AlterClientQuotas) first brings its
//! file up to the log's version, applies the change to it as a single node would, then
//! proposes the new content for that version; the reconciler of every node writes the log's
//! content to its file (the stores notice the new file). If another node's change won the
//! race, the proposal is refused, this node's file goes back to the log's content, and the
//! request fails with a retriable error.
//!
//! Offline tools (`strom user create --data-dir`) still write the local file; the next change
//! through the Kafka API on that node publishes it with the rest.

use std::path::PathBuf;

use strom_cluster::{Command, CommandResult, MetadataImage};

use crate::broker::Broker;
use crate::topics::META_DIR;

/// A replicated file of the meta dir.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedFile {
    Users,
    Acls,
    Quotas,
}

impl SharedFile {
    const ALL: [SharedFile; 3] = [SharedFile::Users, SharedFile::Acls, SharedFile::Quotas];

    /// Its document name in the metadata log.
    fn name(self) -> &'static str {
        match self {
            SharedFile::Users => "scram-users",
            SharedFile::Acls => "acls",
            SharedFile::Quotas => "client-quotas",
        }
    }

    fn path(self, broker: &Broker) -> PathBuf {
        let file = match self {
            SharedFile::Users => crate::security::users::USERS_FILE,
            SharedFile::Acls => crate::security::authorizer::ACLS_FILE,
            SharedFile::Quotas => crate::quota::store::QUOTAS_FILE,
        };
        broker.config.data_dir.join(META_DIR).join(file)
    }
}

/// Writes the log's version of each document whose local file differs (the reconciler's
/// part, and the first step of a change).
pub fn apply_image(broker: &Broker, image: &MetadataImage) {
    for file in SharedFile::ALL {
        if let Err(e) = sync_local(broker, image, file) {
            tracing::error!(file = file.name(), error = %e, "cannot write the replicated file");
        }
    }
}

fn sync_local(broker: &Broker, image: &MetadataImage, file: SharedFile) -> Result<(), String> {
    let Some(doc) = image.docs.get(file.name()) else {
        return Ok(());
    };
    let path = file.path(broker);
    if std::fs::read_to_string(&path).ok().as_deref() == Some(doc.content.as_str()) {
        return Ok(());
    }
    strom_log::atomic_file::write_atomically(&path, doc.content.as_bytes())
        .map_err(|e| e.to_string())?;
    if file == SharedFile::Quotas {
        // The quota table is kept in memory: read it again (users and ACLs notice the file).
        broker.quotas.reload().map_err(|e| e.to_string())?;
    }
    tracing::info!(
        file = file.name(),
        version = doc.version,
        "applied a replicated file"
    );
    Ok(())
}

/// A change to a replicated file in progress: the log's version it builds on.
pub struct Change {
    file: SharedFile,
    version: u64,
    _one_at_a_time: tokio::sync::MutexGuard<'static, ()>,
}

static CHANGES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Before a change on a cluster node: the local file is brought to the log's version. `None`
/// on a single node (nothing to do before or after).
pub async fn begin(broker: &Broker, file: SharedFile) -> Option<Change> {
    let cluster = broker.cluster.get()?;
    // Changes on one node go one at a time, so they never refuse each other.
    let guard = CHANGES.lock().await;
    let image = cluster.image();
    if let Err(e) = sync_local(broker, &image, file) {
        tracing::warn!(file = file.name(), error = %e, "cannot bring the file to the log's version");
    }
    Some(Change {
        file,
        version: image.docs.get(file.name()).map_or(0, |d| d.version),
        _one_at_a_time: guard,
    })
}

impl Change {
    /// After the local file was changed: proposes its content to every node. On failure the
    /// local file goes back to the log's content and the error says why.
    pub async fn publish(self, broker: &Broker) -> Result<(), String> {
        let Some(cluster) = broker.cluster.get() else {
            return Ok(());
        };
        let path = self.file.path(broker);
        let content = std::fs::read_to_string(&path).unwrap_or_default();
        let command = Command::PutDoc {
            name: self.file.name().to_string(),
            expected_version: self.version,
            content,
        };
        let outcome = match cluster.node.propose(command).await {
            Ok(CommandResult::Done) => return Ok(()),
            Ok(CommandResult::Refused(why)) => {
                format!("another node changed it at the same time ({why}); try again")
            }
            Err(e) => format!("metadata quorum unavailable: {e}"),
        };
        let _ = sync_local(broker, &cluster.image(), self.file);
        Err(outcome)
    }
}
