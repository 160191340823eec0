//! What a node needs to join the quorum. The broker fills this from its settings table
//! (Kafka names: `node.id`, `controller.quorum.voters`; ours: `controller.listen`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct ClusterSettings {
    pub node_id: i32,
    /// `controller.quorum.voters`: node id -> controller address (host:port).
    pub voters: BTreeMap<i32, String>,
    /// `controller.listen`: where this node's inter-node RPC listens.
    pub controller_listen: SocketAddr,
    /// The Kafka listener this broker registers (what clients are told).
    pub kafka_host: String,
    pub kafka_port: i32,
    /// Where the raft log, vote and snapshot live.
    pub raft_dir: PathBuf,
    /// `controller.quorum.election.timeout.ms`: a follower that hears no raft leader for this
    /// long (plus a random part up to the same again) starts an election.
    pub election_timeout_ms: u64,
    /// `broker.heartbeat.interval.ms`
    pub broker_heartbeat_interval_ms: u64,
    /// `broker.session.timeout.ms`: the controller fences a broker silent for this long.
    pub broker_session_timeout_ms: u64,
    /// `controller.quorum.request.timeout.ms`: deadline of one inter-node call.
    pub request_timeout_ms: u64,
    /// `auto.leader.rebalance.enable` with its check interval and threshold; `None`: off.
    pub leader_rebalance: Option<LeaderRebalance>,
}

/// Kafka's auto leader rebalance: the controller moves leadership back to preferred replicas.
#[derive(Debug, Clone, Copy)]
pub struct LeaderRebalance {
    /// `leader.imbalance.check.interval.seconds`, in ms.
    pub check_interval_ms: u64,
    /// `leader.imbalance.per.broker.percentage`
    pub imbalance_percent: u32,
}

/// Parses Kafka's `id@host:port,id@host:port` form.
pub fn parse_voters(text: &str) -> Result<BTreeMap<i32, String>, String> {
    let mut voters = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, addr) = item
            .split_once('@')
            .ok_or_else(|| format!("expected id@host:port, got {item:?}"))?;
        let id: i32 = id
            .trim()
            .parse()
            .map_err(|_| format!("bad node id in {item:?}"))?;
        if id < 0 {
            return Err(format!("node id must not be negative in {item:?}"));
        }
        let (_, port) = addr
            .rsplit_once(':')
            .ok_or_else(|| format!("expected host:port in {item:?}"))?;
        port.parse::<u16>()
            .map_err(|_| format!("bad port in {item:?}"))?;
        if voters.insert(id, addr.trim().to_string()).is_some() {
            return Err(format!("node id {id} appears twice"));
        }
    }
    Ok(voters)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voters_parse_in_kafka_form_and_bad_ones_name_the_item() {
        let v = parse_voters("1@127.0.0.1:9093, 2@localhost:9193").unwrap();
        assert_eq!(v[&1], "127.0.0.1:9093");
        assert_eq!(v[&2], "localhost:9193");
        assert!(parse_voters("1@a:1,1@b:2").unwrap_err().contains("twice"));
        assert!(parse_voters("x@a:1").unwrap_err().contains("x@a:1"));
        assert!(parse_voters("1@a").is_err());
        assert!(parse_voters("").unwrap().is_empty());
    }
}
