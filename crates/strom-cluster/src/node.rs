//! One node of the metadata quorum: the raft instance, the inter-node RPC server, and three
//! small loops:
//! - registration: the broker registers its Kafka listener once per start (which also moves
//!   any leadership it held before the restart away, see [`crate::image`]);
//! - heartbeats: every `broker.heartbeat.interval.ms` to the raft leader;
//! - the controller (on the raft leader only): fences a broker silent for
//!   `broker.session.timeout.ms` and unfences one that heartbeats again. Heartbeats stay in
//!   the leader's memory; only the fence and unfence decisions enter the log.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, Config, ServerState};
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::image::{Command, CommandResult, MetadataImage};
use crate::messages::*;
use crate::network::Network;
use crate::rpc::{BoxFuture, Handler, Peer, RpcError};
use crate::settings::ClusterSettings;
use crate::store::{LogStore, StateMachine};
use crate::{NodeId, Raft};

/// How often the controller looks at heartbeats.
const CONTROLLER_TICK_MS: u64 = 100;
/// How long a proposal keeps looking for a raft leader before it fails.
pub const PROPOSE_TIMEOUT_MS: u64 = 10_000;

/// The partition data side of a node, served on the same RPC listener (the broker implements
/// it; this crate knows nothing of logs).
pub trait DataPlane: Send + Sync + 'static {
    fn replica_fetch(
        &self,
        request: ReplicaFetchRequest,
    ) -> BoxFuture<(ReplicaFetchResponse, Bytes)>;
    fn epoch_end(&self, request: EpochEndRequest) -> EpochEndResponse;
    /// Reads a partition this node leads for a consumer elsewhere.
    fn consumer_read(&self, request: ReplicaFetchRequest) -> (ReplicaFetchResponse, Bytes);
    /// Writes transaction markers to partitions this node leads; one Kafka code each.
    fn write_txn_markers(&self, request: WriteTxnMarkersRequest) -> BoxFuture<Vec<i16>>;
    /// Stages or commits transactional offsets on this node's coordinators.
    fn txn_offsets(&self, request: TxnOffsetsRequest) -> BoxFuture<Result<Vec<i16>, i16>>;
    /// A group's committed offsets in a topic, if this node coordinates the group.
    fn committed_offsets(&self, group: &str, topic: &str) -> Result<Vec<(i32, i64)>, i16>;
}

pub struct ClusterNode {
    pub settings: ClusterSettings,
    raft: Raft,
    image: watch::Receiver<Arc<MetadataImage>>,
    peers: Arc<BTreeMap<NodeId, Arc<Peer>>>,
    /// On the controller: when each broker was last heard from.
    heartbeats: Mutex<HashMap<i32, Instant>>,
    data_plane: OnceLock<Arc<dyn DataPlane>>,
    /// Set once this start's registration is in the log: until then the node must not act
    /// on leaderships the image gives it from before its restart.
    registered: watch::Sender<bool>,
}

struct RpcHandler(Arc<ClusterNode>);

impl ClusterNode {
    /// Opens the raft storage, starts raft and the RPC listener, joins the quorum and starts
    /// the registration, heartbeat and controller loops.
    pub async fn start(settings: ClusterSettings) -> Result<Arc<ClusterNode>, String> {
        if !settings.voters.contains_key(&settings.node_id) {
            return Err(format!(
                "node.id {} is not among controller.quorum.voters",
                settings.node_id
            ));
        }
        let election = settings.election_timeout_ms.max(100);
        let config = Config {
            cluster_name: "strom".into(),
            heartbeat_interval: (election / 5).max(20),
            election_timeout_min: election,
            election_timeout_max: election * 2,
            // The metadata log is small; a snapshot now and then bounds its replay.
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(5_000),
            ..Default::default()
        };
        let config = Arc::new(config.validate().map_err(|e| e.to_string())?);
        let log = LogStore::open(&settings.raft_dir)
            .map_err(|e| format!("cannot open the metadata log: {e}"))?;
        let sm = StateMachine::open(&settings.raft_dir)
            .map_err(|e| format!("cannot open the metadata snapshot: {e}"))?;
        let image = sm.subscribe();
        let peers: BTreeMap<NodeId, Arc<Peer>> = settings
            .voters
            .iter()
            .map(|(id, addr)| (*id as NodeId, Arc::new(Peer::new(addr.clone()))))
            .collect();
        let peers = Arc::new(peers);
        let network = Network {
            peers: peers.clone(),
        };
        let raft = Raft::new(settings.node_id as NodeId, config, network, log, sm)
            .await
            .map_err(|e| e.to_string())?;
        let listener = tokio::net::TcpListener::bind(settings.controller_listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", settings.controller_listen))?;
        let (registered, _) = watch::channel(false);
        let node = Arc::new(ClusterNode {
            settings,
            raft,
            image,
            peers,
            heartbeats: Mutex::new(HashMap::new()),
            data_plane: OnceLock::new(),
            registered,
        });
        tokio::spawn(crate::rpc::serve(
            listener,
            Arc::new(RpcHandler(node.clone())),
        ));
        let members: BTreeMap<NodeId, BasicNode> = node
            .settings
            .voters
            .iter()
            .map(|(id, addr)| (*id as NodeId, BasicNode::new(addr)))
            .collect();
        // Safe on every node with the same voters (openraft refuses a second initialize with
        // NotAllowed, which means the quorum already exists).
        match node.raft.initialize(members).await {
            Ok(()) => {}
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
            Err(e) => return Err(format!("cannot initialize the metadata quorum: {e}")),
        }
        tokio::spawn(node.clone().register_loop());
        tokio::spawn(node.clone().heartbeat_loop());
        tokio::spawn(node.clone().controller_loop());
        tracing::info!(
            node_id = node.settings.node_id,
            controller = %node.settings.controller_listen,
            voters = ?node.settings.voters,
            "joined the metadata quorum"
        );
        Ok(node)
    }

    pub fn node_id(&self) -> i32 {
        self.settings.node_id
    }

    /// The image as of the last applied entry.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.image.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.image.clone()
    }

    /// Resolves once this start's registration is applied here.
    pub async fn wait_registered(&self) {
        let mut rx = self.registered.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }

    pub fn set_data_plane(&self, plane: Arc<dyn DataPlane>) {
        if self.data_plane.set(plane).is_err() {
            tracing::warn!("data plane set twice; keeping the first");
        }
    }

    /// The raft leader (the controller), if known.
    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    fn is_leader(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.state == ServerState::Leader && m.current_leader == Some(self.settings.node_id as NodeId)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.settings.request_timeout_ms)
    }

    /// One call to another node.
    pub async fn call(
        &self,
        node: i32,
        request: &Request,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<(Response, Bytes), RpcError> {
        let peer = self
            .peers
            .get(&(node as NodeId))
            .ok_or_else(|| RpcError::Unreachable {
                addr: format!("node {node}"),
                reason: "not among controller.quorum.voters".into(),
            })?;
        peer.call(request, payload, timeout).await
    }

    /// Appends a command to the metadata log (here if this node leads the quorum, else on the
    /// leader) and waits until it is committed and applied there.
    pub async fn propose(&self, command: Command) -> Result<CommandResult, ProposeError> {
        let deadline = Instant::now() + Duration::from_millis(PROPOSE_TIMEOUT_MS);
        let mut last_error = ProposeError::NotLeader { leader: None };
        while Instant::now() < deadline {
            match self.leader() {
                Some(l) if l == self.settings.node_id as NodeId => {
                    match self.propose_local(command.clone()).await {
                        Err(ProposeError::NotLeader { .. }) => {}
                        other => return other,
                    }
                }
                Some(l) => {
                    let call = self
                        .call(
                            l as i32,
                            &Request::Propose(command.clone()),
                            &[],
                            self.request_timeout(),
                        )
                        .await;
                    match call {
                        Ok((Response::Propose(Err(e @ ProposeError::NotLeader { .. })), _)) => {
                            last_error = e
                        }
                        Ok((Response::Propose(r), _)) => return r,
                        Ok((other, _)) => {
                            last_error = ProposeError::Failed(format!("unexpected {other:?}"))
                        }
                        Err(e) => last_error = ProposeError::Failed(e.to_string()),
                    }
                }
                None => {}
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(last_error)
    }

    async fn propose_local(&self, command: Command) -> Result<CommandResult, ProposeError> {
        match self.raft.client_write(command).await {
            Ok(r) => Ok(r.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(ProposeError::NotLeader {
                    leader: f.leader_id,
                })
            }
            Err(e) => Err(ProposeError::Failed(e.to_string())),
        }
    }

    pub fn status(&self) -> QuorumStatus {
        let m = self.raft.metrics().borrow().clone();
        let voters: Vec<NodeId> = m.membership_config.membership().voter_ids().collect();
        let replication = m
            .replication
            .as_ref()
            .map(|r| r.iter().map(|(id, l)| (*id, l.map(|l| l.index))).collect())
            .unwrap_or_default();
        let image = self.image();
        QuorumStatus {
            node_id: m.id,
            leader: m.current_leader,
            term: m.current_term,
            last_log_index: m.last_log_index,
            last_applied: m.last_applied.map(|l| l.index),
            voters,
            replication,
            brokers: image
                .brokers
                .iter()
                .map(|(id, b)| (*id, format!("{}:{}", b.host, b.port), b.fenced))
                .collect(),
        }
    }

    async fn register_loop(self: Arc<Self>) {
        let command = Command::RegisterBroker {
            id: self.settings.node_id,
            host: self.settings.kafka_host.clone(),
            port: self.settings.kafka_port,
        };
        loop {
            match self.propose(command.clone()).await {
                Ok(_) => break,
                Err(e) => {
                    tracing::info!(error = %e, "broker registration not committed yet; retrying")
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // The registration is applied on the leader; wait until this node applied it too.
        let mut rx = self.subscribe();
        let _ = rx
            .wait_for(|img| img.brokers.contains_key(&self.settings.node_id))
            .await;
        tracing::info!(
            node_id = self.settings.node_id,
            "broker registered with the quorum"
        );
        self.registered.send_replace(true);
    }

    async fn heartbeat_loop(self: Arc<Self>) {
        let every = Duration::from_millis(self.settings.broker_heartbeat_interval_ms.max(10));
        loop {
            tokio::time::sleep(every).await;
            let me = self.settings.node_id;
            match self.leader() {
                Some(l) if l == me as NodeId => {
                    self.heartbeats.lock().insert(me, Instant::now());
                }
                Some(l) => {
                    let _ = self
                        .call(
                            l as i32,
                            &Request::Heartbeat { node_id: me },
                            &[],
                            every.max(Duration::from_millis(200)),
                        )
                        .await;
                }
                None => {}
            }
        }
    }

    async fn controller_loop(self: Arc<Self>) {
        let session = Duration::from_millis(self.settings.broker_session_timeout_ms);
        let mut leading = false;
        let mut in_flight: BTreeSet<i32> = BTreeSet::new();
        let mut next_rebalance = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(CONTROLLER_TICK_MS)).await;
            if !self.is_leader() {
                leading = false;
                continue;
            }
            let now = Instant::now();
            if let Some(rebalance) = self.settings.leader_rebalance {
                if now >= next_rebalance {
                    next_rebalance = now + Duration::from_millis(rebalance.check_interval_ms);
                    self.rebalance_leaders(rebalance.imbalance_percent).await;
                }
            }
            if !leading {
                // A new controller gives every broker a full session before fencing it.
                leading = true;
                let mut hb = self.heartbeats.lock();
                hb.clear();
                for id in self.image().brokers.keys() {
                    hb.insert(*id, now);
                }
            }
            self.heartbeats.lock().insert(self.settings.node_id, now);
            let image = self.image();
            for (id, broker) in &image.brokers {
                let seen = self.heartbeats.lock().get(id).copied().unwrap_or(now);
                let silent = now.duration_since(seen);
                let command = if !broker.fenced && silent > session {
                    tracing::warn!(
                        broker = id,
                        silent_ms = silent.as_millis() as u64,
                        "fencing a broker whose heartbeats stopped"
                    );
                    Command::FenceBroker { id: *id }
                } else if broker.fenced && silent < session / 2 {
                    tracing::info!(broker = id, "unfencing a broker that heartbeats again");
                    Command::UnfenceBroker { id: *id }
                } else {
                    continue;
                };
                if !in_flight.insert(*id) {
                    continue;
                }
                let result = self.propose_local(command).await;
                in_flight.remove(id);
                if let Err(e) = result {
                    tracing::warn!(broker = id, error = %e, "fence/unfence not committed");
                }
            }
        }
    }
}

impl ClusterNode {
    /// One auto leader rebalance pass: each partition that should go back to its preferred
    /// replica gets an election through the log (refused there if it went stale meanwhile).
    async fn rebalance_leaders(&self, imbalance_percent: u32) {
        for (topic, partition, leader_epoch) in self.image().preferred_elections(imbalance_percent)
        {
            tracing::info!(%topic, partition, "moving leadership back to the preferred replica");
            let command = Command::ElectPreferredLeader {
                topic,
                partition,
                leader_epoch,
            };
            if let Err(e) = self.propose_local(command).await {
                tracing::warn!(error = %e, "preferred leader election not committed");
                return;
            }
        }
    }
}

impl Handler<Request, Response> for RpcHandler {
    fn handle(&self, request: Request, _payload: Bytes) -> BoxFuture<(Response, Bytes)> {
        let node = self.0.clone();
        Box::pin(async move {
            let none = Bytes::new();
            match request {
                Request::AppendEntries(r) => (
                    Response::AppendEntries(node.raft.append_entries(r).await),
                    none,
                ),
                Request::Vote(r) => (Response::Vote(node.raft.vote(r).await), none),
                Request::InstallSnapshot(r) => (
                    Response::InstallSnapshot(node.raft.install_snapshot(r).await),
                    none,
                ),
                Request::Propose(c) => (Response::Propose(node.propose_local(c).await), none),
                Request::Heartbeat { node_id } => {
                    let accepted = node.is_leader();
                    if accepted {
                        node.heartbeats.lock().insert(node_id, Instant::now());
                    }
                    (Response::Heartbeat { accepted }, none)
                }
                Request::Status => (Response::Status(node.status()), none),
                Request::ReplicaFetch(r) => match node.data_plane.get() {
                    Some(plane) => {
                        let (resp, records) = plane.replica_fetch(r).await;
                        (Response::ReplicaFetch(resp), records)
                    }
                    None => (Response::Unavailable("broker not started".into()), none),
                },
                Request::EpochEnd(r) => match node.data_plane.get() {
                    Some(plane) => (Response::EpochEnd(plane.epoch_end(r)), none),
                    None => (Response::Unavailable("broker not started".into()), none),
                },
                Request::ConsumerRead(r) => match node.data_plane.get() {
                    Some(plane) => {
                        let (resp, records) = plane.consumer_read(r);
                        (Response::ReplicaFetch(resp), records)
                    }
                    None => (Response::Unavailable("broker not started".into()), none),
                },
                Request::WriteTxnMarkers(r) => match node.data_plane.get() {
                    Some(plane) => (
                        Response::WriteTxnMarkers(plane.write_txn_markers(r).await),
                        none,
                    ),
                    None => (Response::Unavailable("broker not started".into()), none),
                },
                Request::CommittedOffsets { group, topic } => match node.data_plane.get() {
                    Some(plane) => (
                        Response::CommittedOffsets(plane.committed_offsets(&group, &topic)),
                        none,
                    ),
                    None => (Response::Unavailable("broker not started".into()), none),
                },
                Request::TxnOffsets(r) => match node.data_plane.get() {
                    Some(plane) => (Response::TxnOffsets(plane.txn_offsets(r).await), none),
                    None => (Response::Unavailable("broker not started".into()), none),
                },
            }
        })
    }
}
