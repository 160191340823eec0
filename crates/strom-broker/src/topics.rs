//! The topic registry: which topics exist, their partitions and configs, and their
//! `topic.json` files. Creation, deletion and partition growth happen here; the hot path only
//! takes the read lock to find a partition.
//!
//! ```text
//! <data-dir>/
//!   <topic>/
//!     topic.json                 {"name", "topic_id", "partitions", "configs"}, written last
//!     partition-N/
//!       partition.metadata       "version: 0\ntopic_id: <uuid>\n" (as Kafka's), written first
//!       ...segments (strom-log)
//!   __strom_meta/trash/
//!     <topic>.<topic-id>-delete  a deleted topic's directory, removed in the background
//!     <topic>.<uuid>-leftover    a directory without topic.json found where a topic is created
//! ```
//! Small files are replaced with `strom_log::atomic_file`, so a crash leaves the old or the
//! new version, never half of one.
//!
//! Invariants (issue 7, items 4 and 9):
//! - A topic directory is a topic once its `topic.json` exists; a create writes it last and
//!   removes what it made on failure, and moves aside anything it finds under the name.
//! - Every partition directory carries its topic's id; one with another id is never opened.
//! - A delete moves the directory into the trash (one rename) before the topic leaves memory;
//!   if the move fails nothing changed. Each moved log is then pointed at its new place
//!   (`PartitionLog::relocate`) before a topic of that name can exist again, so a retention
//!   pass, a DeleteRecords, a roll or a producer snapshot through a stale handle never touches
//!   a re-created topic's files.
//! - A new topic starts with no committed offsets: the [`TopicHooks`] drop (durably) any left
//!   under its name before it is created, which covers a delete that crashed between moving
//!   the files and dropping the offsets.

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
/// Directory (inside [`META_DIR`]) where deleted topics wait for their files to be removed.
pub const TRASH_DIR: &str = "trash";
/// The file in each partition directory that names the topic id it belongs to.
pub const PARTITION_METADATA: &str = "partition.metadata";
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
    /// Cluster mode: fewer live brokers than the replicas asked for.
    #[error("{0}")]
    InvalidReplicationFactor(String),
    /// Cluster mode: the metadata quorum did not take the change in time.
    #[error("{0}")]
    QuorumUnavailable(String),
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
            TopicError::InvalidReplicationFactor(_) => E::InvalidReplicationFactor.code(),
            TopicError::QuorumUnavailable(_) => E::RequestTimedOut.code(),
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
    if name == META_DIR || name == OFFSETS_DIR || name == crate::txn::store::TXN_DIR {
        return Err(TopicError::InvalidTopic(format!(
            "Topic name {name} is reserved"
        )));
    }
    Ok(())
}

/// State kept elsewhere per topic *name* (committed offsets), told about a topic's life. Both
/// calls may block (an fsync) and run on the blocking pool, under the registry's admin lock.
pub trait TopicHooks: Send + Sync + 'static {
    /// Before a topic named `name` is created: whatever an earlier topic of that name left
    /// must be gone, durably; an error fails the create.
    fn before_create(&self, name: &str) -> Result<(), String>;
    /// After the topic named `name` was deleted (its files already moved away).
    fn after_delete(&self, name: &str) -> Result<(), String>;
}

pub struct Topics {
    data_dir: PathBuf,
    config: Arc<BrokerConfig>,
    by_name: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Serializes create/delete/grow so two admins cannot race on one directory.
    admin: tokio::sync::Mutex<()>,
    hooks: std::sync::OnceLock<Arc<dyn TopicHooks>>,
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
        // The trash exists before any delete, so that a delete is one rename and needs no
        // new directory (a full disk or inode table cannot stop it half way).
        std::fs::create_dir_all(data_dir.join(META_DIR)).map_err(storage)?;
        let trash = data_dir.join(META_DIR).join(TRASH_DIR);
        match std::fs::create_dir_all(&trash) {
            Ok(()) => empty_trash_in_background(&trash),
            // A data dir from before the trash existed, on a full disk: start anyway; a delete
            // makes the trash when it needs it.
            Err(e) => {
                tracing::warn!(path = %trash.display(), error = %e, "cannot create the trash directory")
            }
        }
        let topics = Topics {
            data_dir: data_dir.clone(),
            config,
            by_name: RwLock::new(BTreeMap::new()),
            admin: tokio::sync::Mutex::new(()),
            hooks: std::sync::OnceLock::new(),
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

    /// Registers what must happen to per-name state when topics come and go (the broker
    /// passes its group coordinator). Set once, before requests are served.
    pub fn set_hooks(&self, hooks: Arc<dyn TopicHooks>) {
        if self.hooks.set(hooks).is_err() {
            tracing::warn!("topic hooks set twice; keeping the first");
        }
    }

    /// Runs a hook on the blocking pool (it may fsync).
    async fn run_hook(
        &self,
        name: &str,
        call: fn(&dyn TopicHooks, &str) -> Result<(), String>,
    ) -> Result<(), String> {
        let Some(hooks) = self.hooks.get().cloned() else {
            return Ok(());
        };
        let name = name.to_string();
        tokio::task::spawn_blocking(move || call(hooks.as_ref(), &name))
            .await
            .unwrap_or_else(|e| Err(e.to_string()))
    }

    fn trash_dir(&self) -> PathBuf {
        self.data_dir.join(META_DIR).join(TRASH_DIR)
    }

    pub(crate) fn open_options(&self, effective: &EffectiveTopicConfig) -> OpenOptions {
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
            // A partition directory of another topic id is never opened (item 4 of issue 7).
            let opened = match stamp_partition(&dir, i, meta.topic_id) {
                Ok(()) => Partition::open(
                    &meta.name,
                    i,
                    &dir,
                    &self.open_options(&effective),
                    now,
                    point,
                )
                .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            let p = match (opened, points) {
                (Ok(p), _) => p,
                (Err(e), Some(_)) => {
                    tracing::error!(
                        topic = %meta.name,
                        partition = i,
                        error = %e,
                        "PARTITION OFFLINE: its log cannot be opened; it answers KAFKA_STORAGE_ERROR until this is repaired and the broker restarts. No file of it was changed."
                    );
                    Partition::unopened(&meta.name, i, &dir, e, point)
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
        self.create_with_id(name, partitions, configs, validate_only, None)
            .await
    }

    /// [`Topics::create`] with the topic id given (cluster mode: the metadata log chose it,
    /// and every replica must agree on it).
    pub async fn create_with_id(
        &self,
        name: &str,
        partitions: i32,
        configs: TopicOverrides,
        validate_only: bool,
        topic_id: Option<Uuid>,
    ) -> Result<Arc<Topic>, TopicError> {
        // The reserved names that exist as topics: cluster mode's replicated committed offsets
        // and transaction states, made only by the reconciler (with the quorum's topic id).
        let internal = topic_id.is_some() && crate::cluster::is_internal_topic(name);
        if !internal {
            validate_topic_name(name)?;
        }
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
        let configs = without_removed(configs);
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
            topic_id: topic_id.unwrap_or_else(Uuid::new_v4),
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
        self.run_hook(name, |h, n| h.before_create(n))
            .await
            .map_err(|e| {
                storage(format!(
                    "cannot drop the committed offsets an earlier topic '{name}' left: {e}"
                ))
            })?;
        let dir = self.data_dir.join(name);
        if dir.exists() {
            // No topic.json (or it would be loaded): a create or delete that did not finish.
            // Never adopt it; move it aside whole.
            let aside = self
                .trash_dir()
                .join(format!("{name}.{}-leftover", Uuid::new_v4().simple()));
            tracing::warn!(topic = name, to = %aside.display(), "moving aside a leftover directory without topic.json");
            std::fs::rename(&dir, &aside).map_err(storage)?;
        }
        // Creating and fsyncing every partition's files is slow with many partitions.
        let made = crate::blocking::off_worker(|| self.make_topic_dir(meta, &dir));
        let topic = match made {
            Ok(t) => Arc::new(t),
            Err(e) => {
                // A topic that cannot be made whole (a full disk, no file descriptors) must
                // not stay on disk half made, taking the last free blocks.
                if dir.exists() {
                    if let Err(rm) = std::fs::remove_dir_all(&dir) {
                        tracing::warn!(topic = name, error = %rm, "could not remove a failed topic");
                    }
                    let _ = sync_dir(&self.data_dir);
                }
                return Err(e);
            }
        };
        self.by_name.write().insert(name.to_string(), topic.clone());
        tracing::info!(topic = name, partitions, "created topic");
        Ok(topic)
    }

    /// Creates `dir` with stamped, opened partitions, then `topic.json`, which makes it a topic.
    fn make_topic_dir(&self, meta: TopicMeta, dir: &Path) -> Result<Topic, TopicError> {
        std::fs::create_dir(dir).map_err(storage)?;
        let topic = self.open_topic(meta, dir.to_path_buf(), None)?;
        write_meta(dir, &topic.meta.read())?;
        sync_dir(&self.data_dir)?;
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

    /// Deletes a topic, all or nothing: its directory is first moved into the trash (one
    /// rename; if it fails, nothing changed and the error is returned), the moved logs are
    /// pointed at their new place under their locks, and only then does the topic leave
    /// memory. Its committed offsets are dropped next, and its files are removed in the
    /// background.
    pub async fn delete(&self, name: &str) -> Result<Uuid, TopicError> {
        let _admin = self.admin.lock().await;
        let topic = self.get(name).ok_or(TopicError::UnknownTopic)?;
        let id = topic.id();
        let trash = self.trash_dir();
        std::fs::create_dir_all(&trash).map_err(storage)?;
        let target = trash.join(format!("{name}.{}-delete", id.simple()));
        crate::blocking::off_worker(|| std::fs::rename(&topic.dir, &target)).map_err(|e| {
            storage(format!(
                "cannot move topic '{name}' to {}: {e}",
                target.display()
            ))
        })?;
        // From here on every file operation of these logs (a roll, a retention pass,
        // DeleteRecords, a producer snapshot) happens in the trash. Until each is pointed there
        // (the admin lock keeps a new topic of this name from existing meanwhile), one through a
        // stale handle finds no directory and fails, which cannot touch another topic.
        for p in topic.partitions.read().iter() {
            p.with_log(|log| log.relocate(crate::partition::partition_dir(&target, p.index)));
        }
        let synced = crate::blocking::off_worker(|| {
            sync_dir(&self.data_dir).and_then(|()| sync_dir(&trash))
        });
        if let Err(e) = synced {
            tracing::error!(topic = name, error = %e, "fsync after moving a deleted topic failed; a power loss may bring the topic back");
        }
        self.by_name.write().remove(name);
        for p in topic.partitions.read().iter() {
            p.appended.notify_waiters();
        }
        // As Kafka does: a topic re-created under this name must not resume from the old
        // topic's committed offsets. If this fails, the create of a new topic of this name
        // drops them (and refuses to proceed until it can).
        if let Err(e) = self.run_hook(name, |h, n| h.after_delete(n)).await {
            tracing::warn!(topic = name, error = %e, "could not drop the committed offsets of a deleted topic yet");
        }
        tokio::task::spawn_blocking(move || {
            if let Err(e) = std::fs::remove_dir_all(&target) {
                tracing::warn!(path = %target.display(), error = %e, "could not remove deleted topic files; retrying at the next start");
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
        let id = topic.id();
        let options = self.open_options(&effective);
        // Creating and fsyncing the new partitions' files is slow with many partitions.
        let added = crate::blocking::off_worker(|| {
            let mut added = Vec::new();
            for i in current..count {
                stamp_partition(&topic.dir, i, id)?;
                let p =
                    Partition::open(name, i, &topic.dir, &options, now, None).map_err(storage)?;
                added.push(Arc::new(p));
            }
            let mut meta = topic.meta.read().clone();
            meta.partitions = count;
            write_meta(&topic.dir, &meta)?;
            Ok::<_, TopicError>((added, meta))
        });
        let (added, meta) = added?;
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
        let configs = without_removed(configs);
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
    let text = serde_json::to_vec_pretty(meta).map_err(storage)?;
    strom_log::atomic_file::write_atomically(&dir.join("topic.json"), &text).map_err(storage)
}

fn sync_dir(dir: &Path) -> Result<(), TopicError> {
    strom_log::atomic_file::sync_dir(dir).map_err(storage)
}

fn partition_metadata(id: Uuid) -> String {
    format!("version: 0\ntopic_id: {}\n", id.hyphenated())
}

/// The topic id a `partition.metadata` names, if it is one we can read.
fn parse_partition_metadata(text: &str) -> Option<Uuid> {
    let mut lines = text.lines();
    if lines.next()? != "version: 0" {
        return None;
    }
    Uuid::parse_str(lines.next()?.strip_prefix("topic_id: ")?).ok()
}

/// Makes sure partition `index` of the topic in `topic_dir` belongs to topic `id`: a missing
/// `partition.metadata` is written (a new partition, or one from before the file existed);
/// one naming another topic id is refused, so old files are never adopted by a new topic.
fn stamp_partition(topic_dir: &Path, index: i32, id: Uuid) -> Result<(), TopicError> {
    let dir = topic_dir.join(format!("partition-{index}"));
    let path = dir.join(PARTITION_METADATA);
    match std::fs::read_to_string(&path) {
        Ok(text) => match parse_partition_metadata(&text) {
            Some(found) if found == id => Ok(()),
            Some(found) => Err(storage(format!(
                "{} belongs to topic id {found}, but topic.json says topic id {id}; refusing to adopt another topic's partition (move the directory away to start)",
                dir.display()
            ))),
            None => Err(storage(format!(
                "{}: unreadable {PARTITION_METADATA}, so its topic id is unknown; refusing to open it",
                dir.display()
            ))),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let existed = dir.exists();
            std::fs::create_dir_all(&dir).map_err(storage)?;
            let written = strom_log::atomic_file::write_atomically(
                &path,
                partition_metadata(id).as_bytes(),
            );
            match written {
                Ok(()) => Ok(()),
                // A partition from before this file existed still opens on a full disk.
                Err(e) if existed => {
                    tracing::warn!(dir = %dir.display(), error = %e, "could not record the topic id of a partition");
                    Ok(())
                }
                Err(e) => Err(storage(e)),
            }
        }
        Err(e) => Err(storage(e)),
    }
}

/// Removes what is in the trash at startup (deleted topics whose removal a restart cut
/// short), on a thread of its own so a large deleted topic does not delay the start.
fn empty_trash_in_background(trash: &Path) {
    let Ok(entries) = std::fs::read_dir(trash) else {
        return;
    };
    let leftovers: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    if leftovers.is_empty() {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("strom-trash".into())
        .spawn(move || {
            for path in leftovers {
                let removed = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                if let Err(e) = removed {
                    tracing::warn!(path = %path.display(), error = %e, "could not empty the trash");
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "could not start emptying the trash");
    }
}

/// The overrides without the configs Kafka 4.0 removed (accepted, never kept).
pub(crate) fn without_removed(mut configs: TopicOverrides) -> TopicOverrides {
    configs.retain(|name, _| !topic_config::is_removed(name));
    configs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_metadata_round_trips_and_refuses_damage() {
        let id = Uuid::new_v4();
        assert_eq!(parse_partition_metadata(&partition_metadata(id)), Some(id));
        for bad in [
            "",
            "version: 1\ntopic_id: x\n",
            "version: 0\ntopic_id: nope\n",
        ] {
            assert_eq!(parse_partition_metadata(bad), None, "{bad}");
        }
    }

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
