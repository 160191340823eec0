//! The consumer's side of a `group.protocol=consumer` membership (`consumer_protocol` holds
//! the heartbeat side). Each `poll` brings the partitions it reads in line with the
//! coordinator's target in Kafka's order: commit (with auto-commit), `on_partitions_revoked`
//! for what goes, `on_partitions_assigned` for what comes (called even when nothing comes, as
//! Kafka's client does), then the heartbeat reports what the member owns. A lost member drops
//! everything (`on_partitions_lost`) and rejoins. Commits carry the member epoch.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::time::Instant;

use super::consumer_protocol::{ConsumerMembership, IdAssignment};
use super::group::PollClock;
use super::{commit, Consumer};
use crate::error::{ClientError, ResponseError, Result};
use crate::offsets::TopicPartition;

/// How often metadata may be asked for a topic id of the target that no subscribed topic
/// has (a topic re-created under a new id, metadata not caught up yet).
const NAMES_REFRESH_MS: u64 = 1_000;
/// Commits tried at a new member epoch after STALE_MEMBER_EPOCH.
const COMMIT_ATTEMPTS_MAX: u32 = 5;

impl Consumer {
    /// Joins when subscribed and not yet a member, drops lost partitions, and reconciles a
    /// new target assignment. Never waits for the coordinator: the heartbeat task does.
    pub(super) async fn ensure_consumer_membership(&mut self) -> Result<()> {
        if self.subscription.is_empty() {
            return Ok(());
        }
        let group = self.group()?.to_string();
        let clock = PollClock {
            created: self.created,
            last_poll_ms: self.last_poll_ms.clone(),
        };
        let (client, config, subscription) = (&self.client, &self.config, &self.subscription);
        let m = self.consumer_membership.get_or_insert_with(|| {
            ConsumerMembership::start(client, config, &group, subscription, clock)
        });
        if let Some(e) = m.fatal() {
            return Err(e);
        }
        if m.is_lost() {
            self.drop_lost_partitions();
            if let Some(m) = self.consumer_membership.as_mut() {
                m.rejoin();
            }
            return Ok(());
        }
        let Some(target) = m.target() else {
            return Ok(()); // the join is not answered yet
        };
        let (wanted, ids) = self.resolve_target(&target).await;
        let Some(m) = self.consumer_membership.as_ref() else {
            return Ok(());
        };
        if m.reconciled.as_ref() == Some(&wanted) {
            return Ok(());
        }
        self.reconcile(&wanted).await;
        if let Some(m) = self.consumer_membership.as_mut() {
            m.reconciled = Some(wanted);
            m.report_owned(ids);
        }
        Ok(())
    }

    /// The target by topic name, and by id the part of it that could be named (the rest
    /// waits for metadata and is neither taken nor reported).
    async fn resolve_target(
        &mut self,
        target: &IdAssignment,
    ) -> (BTreeSet<TopicPartition>, IdAssignment) {
        let Some(m) = self.consumer_membership.as_mut() else {
            return Default::default();
        };
        for topic in &self.subscription {
            if let Some(info) = self.client.cached_topic(topic) {
                m.topic_names.insert(info.id, info.name);
            }
        }
        let missing = target.keys().any(|id| !m.topic_names.contains_key(id));
        let may_refresh = m
            .names_refreshed
            .is_none_or(|t| t.elapsed() >= Duration::from_millis(NAMES_REFRESH_MS));
        if missing && may_refresh {
            m.names_refreshed = Some(Instant::now());
            for topic in &self.subscription {
                match self.client.refresh_topic(topic).await {
                    Ok(info) => {
                        m.topic_names.insert(info.id, info.name);
                    }
                    Err(e) => {
                        tracing::debug!(topic, error = %e, "no metadata for a subscribed topic")
                    }
                }
            }
        }
        let mut wanted = BTreeSet::new();
        let mut ids = IdAssignment::new();
        for (id, partitions) in target {
            let Some(name) = m.topic_names.get(id) else {
                tracing::debug!(topic_id = %id, "assigned a topic not known yet; waiting for metadata");
                continue;
            };
            wanted.extend(partitions.iter().map(|p| (name.clone(), *p)));
            ids.insert(*id, partitions.clone());
        }
        (wanted, ids)
    }

    /// Gives up what is not wanted any more and takes what is new.
    async fn reconcile(&mut self, wanted: &BTreeSet<TopicPartition>) {
        let revoked: Vec<TopicPartition> = self
            .positions
            .keys()
            .filter(|tp| !wanted.contains(*tp))
            .cloned()
            .collect();
        let added: Vec<TopicPartition> = wanted
            .iter()
            .filter(|tp| !self.positions.contains_key(*tp))
            .cloned()
            .collect();
        tracing::debug!(
            ?revoked,
            ?added,
            "reconciling the consumer group assignment"
        );
        if !revoked.is_empty() {
            self.fetcher.drop_partitions(|tp| revoked.contains(tp));
            if self.config.enable_auto_commit {
                // The next owner starts where this one stopped.
                if let Err(e) = self.commit_positions().await {
                    tracing::warn!(error = %e, "commit before revoking partitions failed");
                }
            }
            if let Some(l) = self.listener.as_mut() {
                l.on_partitions_revoked(&revoked);
            }
            for tp in &revoked {
                self.positions.remove(tp);
                self.paused.remove(tp);
                self.reset_pending.remove(tp);
            }
        }
        for tp in &added {
            self.positions.insert(tp.clone(), None);
        }
        if let Some(l) = self.listener.as_mut() {
            l.on_partitions_assigned(&added);
        }
    }

    /// The member is out of the group: its partitions may already be another's.
    fn drop_lost_partitions(&mut self) {
        let lost: Vec<TopicPartition> = self.positions.keys().cloned().collect();
        self.fetcher.clear();
        self.positions.clear();
        self.paused.clear();
        self.reset_pending.clear();
        if !lost.is_empty() {
            if let Some(l) = self.listener.as_mut() {
                l.on_partitions_lost(&lost);
            }
        }
    }

    /// OffsetCommit v9 with the member epoch; after STALE_MEMBER_EPOCH the member heartbeats
    /// for its current epoch and commits again.
    pub(super) async fn commit_with_member_epoch(
        &mut self,
        group: &str,
        offsets: &[(TopicPartition, i64)],
    ) -> Result<()> {
        let Some(m) = self.consumer_membership.as_ref() else {
            return Err(ClientError::Invalid(
                "not a member of a consumer group".into(),
            ));
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (member_id, epoch) = m.identity();
            let conn = m.coordinator(&self.client).await?;
            let request = commit::commit_request(group, epoch, &member_id, offsets);
            let response = conn.send(&request).await?;
            let Some((topic, partition, code)) = commit::first_error(&response) else {
                return Ok(());
            };
            let err = ClientError::kafka(
                code,
                format!("committing offsets of group {group} topic {topic} partition {partition}"),
            );
            if err.code() == Some(ResponseError::StaleMemberEpoch) && attempt < COMMIT_ATTEMPTS_MAX
            {
                tracing::debug!(
                    group,
                    epoch,
                    "stale member epoch; committing again after a heartbeat"
                );
                m.refresh_epoch(self.client.config().request_timeout).await;
                continue;
            }
            m.note_error(&err);
            return Err(err);
        }
    }

    /// On close: with the listener told its partitions are revoked, leaves the group.
    pub(super) async fn leave_consumer_group(&mut self) -> Result<()> {
        let Some(m) = self.consumer_membership.take() else {
            return Ok(());
        };
        let owned: Vec<TopicPartition> = self.positions.keys().cloned().collect();
        if !owned.is_empty() && !m.is_lost() {
            if let Some(l) = self.listener.as_mut() {
                l.on_partitions_revoked(&owned);
            }
        }
        m.leave(&self.client).await
    }
}
