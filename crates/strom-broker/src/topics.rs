//! The topic registry: which topics exist, their partitions and configs, and their
//! `topic.json` files. Creation, deletion and partition growth happen here; the hot path only
//! takes the read lock to find a partition.
//!
//! `<data-dir>/<topic>/topic.json` holds `{"name", "topic_id", "partitions", "configs"}`.
//! It is written to a temp file, fsynced and renamed, so a crash leaves the old or the new
//! version, never half of one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::{BrokerConfig, FsyncPolicy};
use crate::partition::{OpenOptions, Partition};
use crate::recovery_point::{self, RecoveryPoints};
use crate::topic_config::{self, EffectiveTopicConfig, TopicOverrides};

/// Directory of broker-private files inside the data dir; not a valid topic to create.
pub const META_DIR: &str = "__strom_meta";
/// Directory of committed consumer offsets inside the data dir.
pub const OFFSETS_DIR: &str = "__consumer_offsets";
/// Kafka's limit on topic name length.
pub const TOPIC_NAME_MAX_BYTES: usize = 249;
/// An upper bound on partitions per topic, so a request cannot make us open millions of files.
pub const PARTITIONS_PER_TOPIC_MAX: i32 = 10_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TopicMeta {
    pub name: String,
    pub topic_id: Uuid,
    pub partitions: i32,
    #[serde(default)]
    pub configs: TopicOverrides,
}

pub struct Topic {
    pub meta: RwLock<TopicMeta>,
    pub partitions: RwLock<Vec<Arc<Partition>>>,
    pub dir: PathBuf,
}

impl Topic {
    pub fn name(&self) -> String {
        self.meta.read().name.clone()
    }
    pub fn id(&self) -> Uuid {
        self.meta.read().topic_id
    }
    pub fn partition(&self, index: i32) -> Option<Arc<Partition>> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.partitions.read().get(i).cloned())
    }
    pub fn partition_count(&self) -> i32 {
        self.partitions.read().len() as i32
    }
}

/// Errors with the Kafka code they map to at the handler boundary.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error("{0}")]
    InvalidTopic(String),
    #[error("Topic '{0}' already exists.")]
    AlreadyExists(String),
    #[error("This server does not host this topic-partition.")]
    UnknownTopic,
    #[error("{0}")]
    InvalidPartitions(String),
    #[error("{0}")]
    InvalidConfig(String),
    #[error("storage error: {0}")]
    Storage(String),
}

impl TopicError {
    pub fn code(&self) -> i16 {
        use strom_protocol::ResponseError as E;
        match self {
            TopicError::InvalidTopic(_) => E::InvalidTopicException.code(),
            TopicError::AlreadyExists(_) => E::TopicAlreadyExists.code(),
            TopicError::UnknownTopic => E::UnknownTopicOrPartition.code(),
            TopicError::InvalidPartitions(_) => E::InvalidPartitions.code(),
            TopicError::InvalidConfig(_) => E::InvalidConfig.code(),
            TopicError::Storage(_) => E::KafkaStorageError.code(),
        }
    }
}

/// Kafka's topic name rules: 1-249 chars of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), TopicError> {
    if name.is_empty() {
        return Err(TopicError::InvalidTopic(
            "Topic name is illegal, it can't be empty".into(),
        ));
    }
    if name == "." || name == ".." {
        return Err(TopicError::InvalidTopic(
            "Topic name cannot be \".\" or \"..\"".into(),
        ));
    }
    if name.len() > TOPIC_NAME_MAX_BYTES {
        return Err(TopicError::InvalidTopic(format!(
            "Topic name is illegal, it can't be longer than {TOPIC_NAME_MAX_BYTES} characters, Topic name: {name}"
        )));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(TopicError::InvalidTopic(format!(
            "Topic name \"{name}\" is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"
        )));
    }
    if name == META_DIR || name == OFFSETS_DIR {
        return Err(TopicError::InvalidTopic(format!(
            "Topic name {name} is reserved"
        )));
    }
    Ok(())
}

pub struct Topics {
    data_dir: PathBuf,
    config: Arc<BrokerConfig>,
    by_name: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Serializes create/delete/grow so two admins cannot race on one directory.
    admin: tokio::sync::Mutex<()>,
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn storage<E: std::fmt::Display>(e: E) -> TopicError {
    TopicError::Storage(e.to_string())
}

impl Topics {
    /// Loads every topic under the data dir (each directory with a `topic.json`).
    pub fn load(config: Arc<BrokerConfig>) -> Result<Topics, TopicError> {
        let data_dir = config.data_dir.clone();
        std::fs::create_dir_all(data_dir.join(META_DIR)).map_err(storage)?;
        let trash = data_dir.join(META_DIR).join("trash");
        if trash.exists() {
            std::fs::remove_dir_all(&trash).map_err(storage)?;
        }
        let topics = Topics {
            data_dir: data_dir.clone(),
            config,
            by_name: RwLock::new(BTreeMap::new()),
            admin: tokio::sync::Mutex::new(()),
        };
        let points = recovery_point::read(&data_dir);
        for entry in std::fs::read_dir(&data_dir).map_err(storage)? {
            let path = entry.map_err(storage)?.path();
            let meta_path = path.join("topic.json");
            if !meta_path.is_file() {
                continue;
            }
            let text = std::fs::read_to_string(&meta_path).map_err(storage)?;
            let meta: TopicMeta = serde_json::from_str(&text)
                .map_err(|e| storage(format!("{}: {e}", meta_path.display())))?;
            let topic = topics.open_topic(meta, path, Some(&points))?;
            let name = topic.name();
            topics.by_name.write().insert(name, Arc::new(topic));
        }
        Ok(topics)
    }

    fn flush_on_roll(&self) -> bool {
        self.config.fsync != FsyncPolicy::Never
    }

    fn open_options(&self, effective: &EffectiveTopicConfig) -> OpenOptions {
        OpenOptions {
            log: effective.log_config(self.flush_on_roll()),
            // The high watermark follows fsync unless the broker never fsyncs on the produce
            // path.
            durable_high_watermark: self.config.fsync != FsyncPolicy::Never,
            max_producers: self.config.producer_state_max_producers,
        }
    }

    /// Opens a topic's partitions. At startup (`points` given) a partition that cannot be
    /// opened stays in the topic as an offline partition, so one damaged log never stops the
    /// broker; when creating, any failure fails the creation.
    fn open_topic(
        &self,
        meta: TopicMeta,
        dir: PathBuf,
        points: Option<&RecoveryPoints>,
    ) -> Result<Topic, TopicError> {
        let effective = EffectiveTopicConfig::resolve(&self.config, &meta.configs);
        let now = now_ms();
        let mut partitions = Vec::with_capacity(meta.partitions as usize);
        for i in 0..meta.partitions {
            let point = points.and_then(|p| p.get(&meta.name, meta.topic_id, i));
            let opened = Partition::open(
                &meta.name,
                i,
                &dir,
                &self.open_options(&effective),
                now,
                point,
            );
            let p = match (opened, points) {
                (Ok(p), _) => p,
                (Err(e), Some(_)) => {
                    tracing::error!(
                        topic = %meta.name,
                        partition = i,
                        error = %e,
                        "PARTITION OFFLINE: its log cannot be opened; it answers KAFKA_STORAGE_ERROR until this is repaired and the broker restarts. No file of it was changed."
                    );
                    Partition::unopened(&meta.name, i, &dir, e.to_string(), point)
                }
                (Err(e), None) => {
                    return Err(storage(format!("topic {} partition {i}: {e}", meta.name)))
                }
            };
            partitions.push(Arc::new(p));
        }
        Ok(Topic {
            meta: RwLock::new(meta),
            partitions: RwLock::new(partitions),
            dir,
        })
    }

    pub fn get(&self, name: &str) -> Option<Arc<Topic>> {
        self.by_name.read().get(name).cloned()
    }

    pub fn get_by_id(&self, id: Uuid) -> Option<Arc<Topic>> {
        self.by_name.read().values().find(|t| t.id() == id).cloned()
    }

    pub fn all(&self) -> Vec<Arc<Topic>> {
        self.by_name.read().values().cloned().collect()
    }

    pub fn effective_config(&self, topic: &Topic) -> EffectiveTopicConfig {
        EffectiveTopicConfig::resolve(&self.config, &topic.meta.read().configs)
    }

    /// Validates and (unless `validate_only`) creates a topic.
    pub async fn create(
        &self,
        name: &str,
        partitions: i32,
        configs: TopicOverrides,
        validate_only: bool,
    ) -> Result<Arc<Topic>, TopicError> {
        validate_topic_name(name)?;
        let partitions = if partitions == -1 {
            self.config.num_partitions
        } else {
            partitions
        };
        if partitions <= 0 {
            return Err(TopicError::InvalidPartitions(
                "Number of partitions was set to an invalid non-positive value.".into(),
            ));
        }
        if partitions > PARTITIONS_PER_TOPIC_MAX {
            return Err(TopicError::InvalidPartitions(format!(
                "Number of partitions {partitions} exceeds the limit of {PARTITIONS_PER_TOPIC_MAX}."
            )));
        }
        for (k, v) in &configs {
            topic_config::validate(k, v).map_err(TopicError::InvalidConfig)?;
        }
        let _admin = self.admin.lock().await;
        if self.get(name).is_some() {
            return Err(TopicError::AlreadyExists(name.to_string()));
        }
        if let Some(other) = self.colliding(name) {
            return Err(TopicError::InvalidTopic(format!(
                "Topic '{name}' collides with existing topic: {other}"
            )));
        }
        let meta = TopicMeta {
            name: name.to_string(),
            topic_id: Uuid::new_v4(),
            partitions,
            configs,
        };
        if validate_only {
            return Ok(Arc::new(Topic {
                meta: RwLock::new(meta),
                partitions: RwLock::new(Vec::new()),
                dir: PathBuf::new(),
            }));
        }
        let dir = self.data_dir.join(name);
        std::fs::create_dir_all(&dir).map_err(storage)?;
        write_meta(&dir, &meta)?;
        sync_dir(&self.data_dir);
        let topic = match self.open_topic(meta, dir.clone(), None) {
            Ok(t) => Arc::new(t),
            Err(e) => {
                // A topic whose partitions cannot be opened (e.g. out of file descriptors)
                // must not stay on disk half made: the next start would fail to load it.
                if let Err(rm) = std::fs::remove_dir_all(&dir) {
                    tracing::warn!(topic = name, error = %rm, "could not remove a failed topic");
                }
                sync_dir(&self.data_dir);
                return Err(e);
            }
        };
        self.by_name.write().insert(name.to_string(), topic.clone());
        tracing::info!(topic = name, partitions, "created topic");
        Ok(topic)
    }

    /// Writes every partition's recovery point (its flushed offset) to the checkpoint file.
    /// Slow (fsyncs): call it from a blocking thread.
    pub fn checkpoint_recovery_points(&self) -> std::io::Result<()> {
        let mut entries = Vec::new();
        for topic in self.all() {
            let (name, topic_id) = {
                let meta = topic.meta.read();
                (meta.name.clone(), meta.topic_id)
            };
            for p in topic.partitions.read().iter() {
                if let Some(offset) = p.recovery_point() {
                    entries.push(recovery_point::Entry {
                        topic: name.clone(),
                        topic_id,
                        partition: p.index,
                        offset,
                    });
                }
            }
        }
        recovery_point::write(&self.data_dir, &entries)
    }

    /// An existing topic whose name equals `name` once '.' and '_' are treated alike; Kafka
    /// refuses such names (they would share metric names).
    pub fn colliding(&self, name: &str) -> Option<String> {
        let unified = name.replace('.', "_");
        self.by_name
            .read()
            .keys()
            .find(|k| k.as_str() != name && k.replace('.', "_") == unified)
            .cloned()
    }

    /// Creates a topic on first use when `auto.create.topics.enable` is set.
    pub async fn get_or_auto_create(&self, name: &str) -> Result<Arc<Topic>, TopicError> {
        if let Some(t) = self.get(name) {
            return Ok(t);
        }
        if !self.config.auto_create_topics {
            return Err(TopicError::UnknownTopic);
        }
        match self
            .create(
                name,
                self.config.num_partitions,
                TopicOverrides::new(),
                false,
            )
            .await
        {
            Ok(t) => Ok(t),
            Err(TopicError::AlreadyExists(_)) => self.get(name).ok_or(TopicError::UnknownTopic),
            Err(e) => Err(e),
        }
    }

    /// Removes a topic from the registry at once, then deletes its files. The directory is
    /// first renamed into the trash so a crash mid-delete cannot resurrect half a topic.
    pub async fn delete(&self, name: &str) -> Result<Uuid, TopicError> {
        let _admin = self.admin.lock().await;
        let topic = self
            .by_name
            .write()
            .remove(name)
            .ok_or(TopicError::UnknownTopic)?;
        let id = topic.id();
        let trash = self.data_dir.join(META_DIR).join("trash");
        std::fs::create_dir_all(&trash).map_err(storage)?;
        let target = trash.join(format!("{name}-{}", Uuid::new_v4()));
        std::fs::rename(&topic.dir, &target).map_err(storage)?;
        sync_dir(&self.data_dir);
        for p in topic.partitions.read().iter() {
            p.appended.notify_waiters();
        }
        tokio::task::spawn_blocking(move || {
            if let Err(e) = std::fs::remove_dir_all(&target) {
                tracing::warn!(path = %target.display(), error = %e, "could not remove deleted topic files");
            }
        });
        tracing::info!(topic = name, "deleted topic");
        Ok(id)
    }

    /// Grows a topic to `count` partitions.
    pub async fn create_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        let _admin = self.admin.lock().await;
        let topic = self.get(name).ok_or(TopicError::UnknownTopic)?;
        let current = topic.partition_count();
        // ReplicationControlManager.createPartitions' wording.
        if count == current {
            return Err(TopicError::InvalidPartitions(format!(
                "Topic already has {current} partition(s)."
            )));
        }
        if count < current {
            return Err(TopicError::InvalidPartitions(format!(
                "The topic {name} currently has {current} partition(s); {count} would not be an increase."
            )));
        }
        if count > PARTITIONS_PER_TOPIC_MAX {
            return Err(TopicError::InvalidPartitions(format!(
                "Number of partitions {count} exceeds the limit of {PARTITIONS_PER_TOPIC_MAX}."
            )));
        }
        if validate_only {
            return Ok(());
        }
        let effective = self.effective_config(&topic);
        let now = now_ms();
        let mut added = Vec::new();
        for i in current..count {
            let p = Partition::open(
                name,
                i,
                &topic.dir,
                &self.open_options(&effective),
                now,
                None,
            )
            .map_err(storage)?;
            added.push(Arc::new(p));
        }
        let mut meta = topic.meta.read().clone();
        meta.partitions = count;
        write_meta(&topic.dir, &meta)?;
        *topic.meta.write() = meta;
        topic.partitions.write().extend(added);
        Ok(())
    }

    /// Replaces (or, for incremental alters, merges into) a topic's overrides.
    pub async fn alter_configs(
        &self,
        name: &str,
        configs: TopicOverrides,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        for (k, v) in &configs {
            topic_config::validate(k, v).map_err(TopicError::InvalidConfig)?;
        }
        let _admin = self.admin.lock().await;
        let topic = self.get(name).ok_or(TopicError::UnknownTopic)?;
        if validate_only {
            return Ok(());
        }
        let mut meta = topic.meta.read().clone();
        meta.configs = configs;
        write_meta(&topic.dir, &meta)?;
        let effective = EffectiveTopicConfig::resolve(&self.config, &meta.configs);
        *topic.meta.write() = meta;
        for p in topic.partitions.read().iter() {
            p.with_log(|log| log.set_config(effective.log_config(self.flush_on_roll())));
        }
        Ok(())
    }
}

fn write_meta(dir: &Path, meta: &TopicMeta) -> Result<(), TopicError> {
    use std::io::Write;
    let tmp = dir.join("topic.json.tmp");
    let text = serde_json::to_vec_pretty(meta).map_err(storage)?;
    let mut f = std::fs::File::create(&tmp).map_err(storage)?;
    f.write_all(&text).map_err(storage)?;
    f.sync_all().map_err(storage)?;
    std::fs::rename(&tmp, dir.join("topic.json")).map_err(storage)?;
    sync_dir(dir);
    Ok(())
}

/// fsyncs a directory so a rename or a new file in it survives power loss. Best effort:
/// some filesystems refuse to sync directories.
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        for ok in ["a", "demo-topic", "x.y_z-1", &"a".repeat(249)] {
            assert!(validate_topic_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a b",
            "a/b",
            "é",
            &"a".repeat(250),
            "__consumer_offsets",
        ] {
            assert!(
                matches!(validate_topic_name(bad), Err(TopicError::InvalidTopic(_))),
                "{bad}"
            );
        }
    }
}
