//! [`Client`]: the cluster handle every producer, consumer and admin shares.
//!
//! It bootstraps from a list of addresses (`a:9092,b:9092`, tried in turn), learns the brokers
//! and the partition leaders from Metadata, keeps one [`Connection`] per broker and replaces a
//! broken one, retrying the connect with exponential backoff. Each Metadata answer replaces
//! the known brokers, so a broker that left the cluster is forgotten with its connection.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    BrokerId, FindCoordinatorRequest, MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use crate::connection::Connection;
use crate::error::{ClientError, Result};
use crate::security::SecurityConfig;
use crate::transport::Transport;

/// Settings shared by every client type.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Sent in every request header; brokers show it in their logs.
    pub client_id: String,
    /// How long one request may wait for its response.
    pub request_timeout: Duration,
    /// How many times to try opening a connection before giving up.
    pub connect_attempts_max: u32,
    /// First pause between connect attempts; doubles up to `retry_backoff_max`.
    pub retry_backoff: Duration,
    /// Longest pause between connect attempts.
    pub retry_backoff_max: Duration,
    /// How many times a request that failed with a retriable error is retried.
    pub request_retries_max: u32,
    /// TLS and SASL for every connection (default: plaintext).
    pub security: SecurityConfig,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            client_id: "strom-client".into(),
            request_timeout: Duration::from_secs(30),
            connect_attempts_max: 3,
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_secs(2),
            request_retries_max: 5,
            security: SecurityConfig::default(),
        }
    }
}

/// What Metadata says about one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    /// The partition index.
    pub partition: i32,
    /// The broker id of the leader, -1 when there is none.
    pub leader: i32,
    /// Broker ids holding a replica.
    pub replicas: Vec<i32>,
    /// Broker ids of the in-sync replicas.
    pub isr: Vec<i32>,
    /// The partition's error code (0 when healthy).
    pub error_code: i16,
}

/// What Metadata says about one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// The topic name.
    pub name: String,
    /// The topic id (nil when the broker does not report ids).
    pub id: Uuid,
    /// Whether this is a broker-internal topic such as `__consumer_offsets`.
    pub internal: bool,
    /// Partitions sorted by index.
    pub partitions: Vec<PartitionInfo>,
}

/// One broker of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    /// The broker id.
    pub id: i32,
    /// `host:port` to connect to.
    pub addr: String,
}

#[derive(Default)]
struct MetadataCache {
    brokers: HashMap<i32, String>,
    topics: HashMap<String, TopicInfo>,
    /// Topics whose leaders may have moved (NOT_LEADER_OR_FOLLOWER, a lost connection):
    /// the next use asks the broker, and keeps the old answer if the broker cannot be asked.
    stale: std::collections::HashSet<String>,
}

struct Inner {
    /// The bootstrap addresses as given, e.g. `a:9092,b:9092`.
    bootstrap: String,
    bootstrap_addrs: Vec<String>,
    config: ClientConfig,
    /// Built from `config.security` once, shared by every connection.
    transport: Transport,
    cache: Mutex<MetadataCache>,
    /// One connection per broker address. Held only to look up, insert or remove an entry,
    /// never across an await.
    connections: Mutex<HashMap<String, Arc<Connection>>>,
}

/// A handle to a Kafka-compatible cluster. Cloning is cheap and shares connections.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("bootstrap", &self.inner.bootstrap)
            .finish()
    }
}

impl Client {
    /// Connects to `bootstrap` (`host:port`, or several separated by commas, tried in turn)
    /// with default settings and learns the brokers.
    pub async fn connect(bootstrap: &str) -> Result<Client> {
        Self::connect_with(bootstrap, ClientConfig::default()).await
    }

    /// Connects to `bootstrap` with the given settings and learns the brokers.
    pub async fn connect_with(bootstrap: &str, config: ClientConfig) -> Result<Client> {
        let bootstrap_addrs: Vec<String> = bootstrap
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .collect();
        if bootstrap_addrs.is_empty() {
            return Err(ClientError::Invalid(format!(
                "no broker address in bootstrap list '{bootstrap}'"
            )));
        }
        let transport = Transport::new(&config.security)?;
        let client = Client {
            inner: Arc::new(Inner {
                bootstrap_addrs,
                bootstrap: bootstrap.to_string(),
                config,
                transport,
                cache: Mutex::new(MetadataCache::default()),
                connections: Mutex::new(HashMap::new()),
            }),
        };
        client.metadata(Some(&[])).await?;
        Ok(client)
    }

    /// The bootstrap list this client was given.
    pub fn bootstrap(&self) -> &str {
        &self.inner.bootstrap
    }

    /// The settings this client was made with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The brokers seen in the last Metadata response.
    pub fn brokers(&self) -> Vec<BrokerInfo> {
        let cache = self.inner.cache.lock().expect("metadata cache poisoned");
        let mut brokers: Vec<BrokerInfo> = cache
            .brokers
            .iter()
            .map(|(id, addr)| BrokerInfo {
                id: *id,
                addr: addr.clone(),
            })
            .collect();
        brokers.sort_by_key(|b| b.id);
        brokers
    }

    /// A connection to `addr`, reusing a healthy one or opening a new one with backoff.
    pub async fn connection(&self, addr: &str) -> Result<Arc<Connection>> {
        {
            let mut connections = self.inner.connections.lock().expect("connections poisoned");
            match connections.get(addr) {
                Some(conn) if !conn.is_broken() => return Ok(conn.clone()),
                Some(_) => {
                    tracing::debug!(addr, "replacing broken connection");
                    connections.remove(addr);
                }
                None => {}
            }
        }
        // Connect without holding the map, so a slow broker does not hold up the others.
        let conn = Arc::new(self.open(addr).await?);
        let mut connections = self.inner.connections.lock().expect("connections poisoned");
        match connections.get(addr) {
            // Another task connected meanwhile: share its connection, drop ours.
            Some(existing) if !existing.is_broken() => Ok(existing.clone()),
            _ => {
                connections.insert(addr.to_string(), conn.clone());
                Ok(conn)
            }
        }
    }

    /// Opens a new connection that is not shared (a consumer group's coordinator connection).
    pub async fn dedicated_connection(&self, addr: &str) -> Result<Connection> {
        self.open(addr).await
    }

    async fn open(&self, addr: &str) -> Result<Connection> {
        let config = &self.inner.config;
        let mut backoff = config.retry_backoff;
        let mut attempt = 1;
        loop {
            let opened = Connection::connect_with(
                addr,
                &config.client_id,
                config.request_timeout,
                &self.inner.transport,
            );
            match opened.await {
                Ok(conn) => return Ok(conn),
                Err(e) if attempt < config.connect_attempts_max && e.is_retriable() => {
                    tracing::debug!(addr, attempt, error = %e, "connect failed, retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(config.retry_backoff_max);
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A connection to any broker: a healthy open one first, then the known brokers, then
    /// each bootstrap address in turn.
    pub async fn any_connection(&self) -> Result<Arc<Connection>> {
        let known: Vec<String> = {
            let cache = self.inner.cache.lock().expect("metadata cache poisoned");
            let mut ids: Vec<_> = cache.brokers.iter().collect();
            ids.sort();
            ids.into_iter().map(|(_, a)| a.clone()).collect()
        };
        {
            let connections = self.inner.connections.lock().expect("connections poisoned");
            for addr in known.iter().chain(&self.inner.bootstrap_addrs) {
                if let Some(conn) = connections.get(addr).filter(|c| !c.is_broken()) {
                    return Ok(conn.clone());
                }
            }
        }
        let mut last_err = None;
        let mut tried = std::collections::HashSet::new();
        for addr in known.iter().chain(&self.inner.bootstrap_addrs) {
            if !tried.insert(addr.as_str()) {
                continue;
            }
            match self.connection(addr).await {
                Ok(conn) => return Ok(conn),
                Err(e) => {
                    tracing::debug!(addr, error = %e, "broker not reachable, trying the next");
                    last_err = Some(e)
                }
            }
        }
        Err(last_err.expect("the bootstrap list is never empty"))
    }

    /// A connection to the broker with this id.
    pub async fn broker_connection(&self, broker_id: i32) -> Result<Arc<Connection>> {
        let addr = self.broker_addr(broker_id)?;
        self.connection(&addr).await
    }

    /// The address of the broker with this id.
    pub fn broker_addr(&self, broker_id: i32) -> Result<String> {
        let cache = self.inner.cache.lock().expect("metadata cache poisoned");
        cache.brokers.get(&broker_id).cloned().ok_or_else(|| {
            ClientError::Invalid(format!("broker {broker_id} is not in the cluster metadata"))
        })
    }

    /// Sends Metadata for `topics` (`None`: all topics) and updates the cache with the answer.
    pub async fn metadata(&self, topics: Option<&[String]>) -> Result<MetadataResponse> {
        let request = MetadataRequest::default()
            .with_topics(topics.map(|names| {
                names
                    .iter()
                    .map(|n| {
                        MetadataRequestTopic::default()
                            .with_name(Some(TopicName(StrBytes::from_string(n.clone()))))
                    })
                    .collect()
            }))
            .with_allow_auto_topic_creation(false);
        let conn = self.any_connection().await?;
        let response = conn.send(&request).await?;
        self.update_cache(&response, conn.addr());
        Ok(response)
    }

    fn update_cache(&self, response: &MetadataResponse, via: &str) {
        let mut cache = self.inner.cache.lock().expect("metadata cache poisoned");
        if !response.brokers.is_empty() {
            // The answer lists every live broker: forget the ones that left.
            let brokers: HashMap<i32, String> = response
                .brokers
                .iter()
                .map(|b| (b.node_id.0, reachable_addr(via, b.host.as_str(), b.port)))
                .collect();
            let gone: Vec<String> = cache
                .brokers
                .values()
                .filter(|a| !brokers.values().any(|b| b == *a))
                .cloned()
                .collect();
            cache.brokers = brokers;
            if !gone.is_empty() {
                tracing::debug!(?gone, "brokers left the cluster");
                let mut connections = self.inner.connections.lock().expect("connections poisoned");
                for addr in &gone {
                    if !self.inner.bootstrap_addrs.contains(addr) {
                        connections.remove(addr);
                    }
                }
            }
        }
        for topic in &response.topics {
            let Some(name) = &topic.name else { continue };
            cache.stale.remove(name.0.as_str());
            if topic.error_code != 0 {
                cache.topics.remove(name.0.as_str());
                continue;
            }
            let mut partitions: Vec<PartitionInfo> = topic
                .partitions
                .iter()
                .map(|p| PartitionInfo {
                    partition: p.partition_index,
                    leader: p.leader_id.0,
                    replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                    isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                    error_code: p.error_code,
                })
                .collect();
            partitions.sort_by_key(|p| p.partition);
            cache.topics.insert(
                name.0.to_string(),
                TopicInfo {
                    name: name.0.to_string(),
                    id: topic.topic_id,
                    internal: topic.is_internal,
                    partitions,
                },
            );
        }
    }

    /// The leader of a partition if the cache knows it, without asking the broker or copying
    /// the topic's metadata (the producer asks this for every batch).
    pub fn cached_leader(&self, topic: &str, partition: i32) -> Option<i32> {
        let cache = self.inner.cache.lock().expect("metadata cache poisoned");
        if cache.stale.contains(topic) {
            return None;
        }
        let info = cache.topics.get(topic)?;
        let p = info.partitions.iter().find(|p| p.partition == partition)?;
        (p.leader >= 0).then_some(p.leader)
    }

    /// Topic metadata from the cache, asking the broker when the topic is not cached.
    /// A topic marked stale is asked again; if the broker cannot be reached (a retriable
    /// error), the last known metadata is returned, so a producer keeps accepting records for a
    /// topic it knows while the cluster is briefly away.
    pub async fn topic(&self, name: &str) -> Result<TopicInfo> {
        let (cached, stale) = {
            let cache = self.inner.cache.lock().expect("metadata cache poisoned");
            (cache.topics.get(name).cloned(), cache.stale.contains(name))
        };
        match cached {
            Some(t) if !stale => Ok(t),
            Some(t) => match self.refresh_topic(name).await {
                Err(e) if e.is_retriable() && e.code().is_none() => Ok(t),
                other => other,
            },
            None => self.refresh_topic(name).await,
        }
    }

    /// Asks the broker for fresh metadata of one topic.
    pub async fn refresh_topic(&self, name: &str) -> Result<TopicInfo> {
        let response = self.metadata(Some(&[name.to_string()])).await?;
        for topic in &response.topics {
            if topic.name.as_ref().map(|n| n.0.as_str()) == Some(name) {
                ClientError::check(topic.error_code, || format!("topic {name}"))?;
            }
        }
        self.cached_topic(name)
            .ok_or_else(|| ClientError::kafka(3, format!("topic {name}")))
    }

    /// The cached metadata of a topic, if any.
    pub fn cached_topic(&self, name: &str) -> Option<TopicInfo> {
        let cache = self.inner.cache.lock().expect("metadata cache poisoned");
        cache.topics.get(name).cloned()
    }

    /// A cached topic's partition count and whether it has `partition` (true for `None`),
    /// without copying its metadata: the producer asks this for every record.
    pub(crate) fn cached_partitions(
        &self,
        name: &str,
        partition: Option<i32>,
    ) -> Option<(usize, bool)> {
        let cache = self.inner.cache.lock().expect("metadata cache poisoned");
        let info = cache.topics.get(name)?;
        let known = partition.is_none_or(|p| info.partitions.iter().any(|i| i.partition == p));
        Some((info.partitions.len(), known))
    }

    /// Marks a topic stale so the next use asks the broker again (after NotLeader and the
    /// like).
    pub fn invalidate_topic(&self, name: &str) {
        let mut cache = self.inner.cache.lock().expect("metadata cache poisoned");
        if cache.topics.contains_key(name) {
            cache.stale.insert(name.to_string());
        }
    }

    /// The leader broker id of a partition.
    pub async fn leader(&self, topic: &str, partition: i32) -> Result<i32> {
        let info = self.topic(topic).await?;
        let p = info
            .partitions
            .iter()
            .find(|p| p.partition == partition)
            .ok_or_else(|| ClientError::kafka(3, format!("topic {topic} partition {partition}")))?;
        if p.leader < 0 {
            return Err(ClientError::kafka(
                5, // LEADER_NOT_AVAILABLE
                format!("topic {topic} partition {partition}"),
            ));
        }
        Ok(p.leader)
    }

    /// The address of the group coordinator for `group_id`.
    pub async fn find_coordinator(&self, group_id: &str) -> Result<String> {
        self.find_coordinator_of(0, group_id).await
    }

    /// The address of the transaction coordinator for `transactional_id`.
    pub async fn find_transaction_coordinator(&self, transactional_id: &str) -> Result<String> {
        self.find_coordinator_of(1, transactional_id).await
    }

    /// FindCoordinator for a group (key type 0) or a transactional id (key type 1).
    async fn find_coordinator_of(&self, key_type: i8, id: &str) -> Result<String> {
        let what = if key_type == 0 {
            "group"
        } else {
            "transactional id"
        };
        let key = StrBytes::from_string(id.to_string());
        let mut backoff = self.inner.config.retry_backoff;
        let mut attempt = 0;
        loop {
            let conn = self.any_connection().await?;
            // Version 4 asks for several keys at once in `coordinator_keys`.
            let mut request = FindCoordinatorRequest::default().with_key_type(key_type);
            if conn.version_for::<FindCoordinatorRequest>()? >= 4 {
                request.coordinator_keys = vec![key.clone()];
            } else {
                request.key = key.clone();
            }
            let response = conn.send(&request).await?;
            let (code, node_id, host, port) = match response.coordinators.first() {
                Some(c) => (c.error_code, c.node_id, c.host.clone(), c.port),
                None => (
                    response.error_code,
                    response.node_id,
                    response.host.clone(),
                    response.port,
                ),
            };
            match ClientError::check(code, || format!("coordinator for {what} {id}")) {
                Ok(()) => {
                    let _: BrokerId = node_id;
                    return Ok(reachable_addr(conn.addr(), host.as_str(), port));
                }
                Err(e) if e.is_retriable() && attempt < self.inner.config.request_retries_max => {
                    attempt += 1;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.inner.config.retry_backoff_max);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Forgets a group's coordinator connection after NOT_COORDINATOR or
    /// COORDINATOR_NOT_AVAILABLE, so the next use finds the coordinator again.
    pub fn invalidate_connection(&self, addr: &str) {
        let mut connections = self.inner.connections.lock().expect("connections poisoned");
        connections.remove(addr);
    }

    /// Sleeps for the `attempt`-th retry backoff (0-based).
    pub(crate) async fn backoff(&self, attempt: u32) {
        let base = self.inner.config.retry_backoff;
        let pause = base
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.inner.config.retry_backoff_max);
        tokio::time::sleep(pause).await;
    }
}

/// `host:port` for an advertised address. A broker bound to every interface may advertise
/// `0.0.0.0`; reach it the way the connection that learned of it (`via`) did.
fn reachable_addr(via: &str, host: &str, port: i32) -> String {
    let via_host = via.rsplit_once(':').map_or("", |(h, _)| h);
    let host = match host {
        "0.0.0.0" | "::" | "" => via_host,
        h => h,
    };
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}
