//! The leader's ISR upkeep, as Kafka's `Partition.maybeShrinkIsr` / `maybeExpandIsr`: a
//! follower not caught up for `replica.lag.time.max.ms` leaves the ISR, and a replica whose
//! log end reached the high watermark joins it again. Changes go through the quorum
//! (`AlterIsr`, refused there if this node is no longer the leader of that epoch) and come back
//! with the next image. A broker the controller fences leaves every ISR at once, without this.

use std::sync::Arc;
use std::time::{Duration, Instant};

use strom_cluster::Command;

use crate::broker::Broker;

pub async fn run(broker: Arc<Broker>) {
    let Some(cluster) = broker.cluster.get().cloned() else {
        return;
    };
    let lag = Duration::from_millis(broker.config.replica_lag_time_max_ms);
    let every = (lag / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = broker.shutting_down() => return,
        }
        let mut proposals = Vec::new();
        for topic in broker.topics.all() {
            for p in topic.partitions.read().iter() {
                let Ok(state) = p.lock() else { continue };
                let Some(r) = &state.replica else { continue };
                if !r.is_leader() {
                    continue;
                }
                let now = Instant::now();
                let hw = state.high_watermark();
                let mut isr: Vec<i32> = r
                    .isr
                    .iter()
                    .copied()
                    .filter(|m| *m == r.me || now.duration_since(r.caught_up_at(*m)) <= lag)
                    .collect();
                for m in &r.replicas {
                    let caught_up = r.followers.get(m).is_some_and(|f| {
                        f.log_end >= hw && now.duration_since(f.caught_up_at) <= lag
                    });
                    if !isr.contains(m) && caught_up {
                        isr.push(*m);
                    }
                }
                if isr != r.isr {
                    proposals.push(Command::AlterIsr {
                        topic: p.topic.clone(),
                        partition: p.index,
                        leader: r.me,
                        leader_epoch: r.leader_epoch,
                        isr,
                    });
                }
            }
        }
        for command in proposals {
            tracing::info!(?command, "changing an ISR");
            if let Err(e) = cluster.node.propose(command).await {
                tracing::warn!(error = %e, "ISR change not committed");
            }
        }
    }
}
