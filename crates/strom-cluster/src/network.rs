//! openraft's network over [`crate::rpc`]: one [`Peer`] (a bounded connection pool) per
//! voter, shared with the rest of the node's inter-node calls.

use std::collections::BTreeMap;
use std::sync::Arc;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;

use crate::messages::{Request, Response};
use crate::rpc::{Peer, RpcError};
use crate::{NodeId, TypeConfig};

#[derive(Clone)]
pub struct Network {
    pub peers: Arc<BTreeMap<NodeId, Arc<Peer>>>,
}

pub struct Connection {
    target: NodeId,
    peer: Option<Arc<Peer>>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> Connection {
        Connection {
            target,
            peer: self.peers.get(&target).cloned(),
        }
    }
}

type Rpc<E> = RPCError<NodeId, BasicNode, RaftError<NodeId, E>>;

impl Connection {
    async fn send<E: std::error::Error>(
        &self,
        request: Request,
        option: &RPCOption,
    ) -> Result<Response, Rpc<E>> {
        let Some(peer) = &self.peer else {
            return Err(RPCError::Unreachable(Unreachable::new(
                &RpcError::Unreachable {
                    addr: format!("node {}", self.target),
                    reason: "not a voter".into(),
                },
            )));
        };
        match peer.call(&request, &[], option.hard_ttl()).await {
            Ok((resp, _)) => Ok(resp),
            Err(e @ RpcError::Unreachable { .. }) => {
                Err(RPCError::Unreachable(Unreachable::new(&e)))
            }
            Err(e) => Err(RPCError::Network(NetworkError::new(&e))),
        }
    }

    fn unexpected<E: std::error::Error>(&self, resp: Response) -> Rpc<E> {
        RPCError::Network(NetworkError::new(&RpcError::Codec {
            addr: format!("node {}", self.target),
            reason: format!("unexpected answer {resp:?}"),
        }))
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        req: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, Rpc<openraft::error::Infallible>> {
        match self.send(Request::AppendEntries(req), &option).await? {
            Response::AppendEntries(r) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            other => Err(self.unexpected(other)),
        }
    }

    async fn install_snapshot(
        &mut self,
        req: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, Rpc<InstallSnapshotError>> {
        match self.send(Request::InstallSnapshot(req), &option).await? {
            Response::InstallSnapshot(r) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            other => Err(self.unexpected(other)),
        }
    }

    async fn vote(
        &mut self,
        req: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, Rpc<openraft::error::Infallible>> {
        match self.send(Request::Vote(req), &option).await? {
            Response::Vote(r) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            other => Err(self.unexpected(other)),
        }
    }
}
