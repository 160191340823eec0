//! Incremental fetch sessions (KIP-227), as Kafka's `FetchManager` keeps them: a consumer of
//! many partitions names them once, then sends only what changed (a new fetch offset, a
//! partition added or forgotten), and the broker answers only partitions that have news
//! (records, a moved high watermark or log start, an error).
//!
//! A request's epoch says what it is: 0 opens a session with the partitions it lists (a full
//! fetch), -1 is a full fetch without a session, any other epoch continues the named session
//! and must be the session's next one. The cache holds at most
//! `max.incremental.fetch.session.cache.slots` sessions; when it is full a new session may
//! take the place of one idle for `min.incremental.fetch.session.eviction.ms`, or of a
//! smaller one at least that old, as Kafka evicts; otherwise the fetch is answered without a
//! session (id 0) and the client keeps sending full requests.
//!
//! The cache lock is held only to set up a request's view and to filter its response, never
//! across a read or a long poll.

use std::collections::HashMap;

use indexmap::IndexMap;
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::TopicName;
use parking_lot::Mutex;
use strom_protocol::ResponseError as E;
use uuid::Uuid;

/// Kafka's `INVALID_SESSION_ID`: no session.
pub const NO_SESSION: i32 = 0;
/// A request that opens a session (full fetch).
pub const INITIAL_EPOCH: i32 = 0;
/// A full fetch that closes any session and opens none.
pub const FINAL_EPOCH: i32 = -1;

/// The epoch after `epoch`: 1, 2, ... wrapping from `i32::MAX` to 1 (`FetchMetadata.nextEpoch`).
pub fn next_epoch(epoch: i32) -> i32 {
    if epoch < 0 {
        FINAL_EPOCH
    } else if epoch == i32::MAX {
        1
    } else {
        epoch + 1
    }
}

/// One partition in a session: by topic id from Fetch v13 (the session then uses ids), by
/// name before.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PartitionKey {
    Id(Uuid, i32),
    Name(String, i32),
}

/// What a request (or a session) asks of one partition.
#[derive(Debug, Clone)]
pub struct FetchPartition {
    pub key: PartitionKey,
    pub topic: TopicName,
    pub topic_id: Uuid,
    pub partition: i32,
    pub fetch_offset: i64,
    pub max_bytes: i32,
    pub current_leader_epoch: i32,
}

/// A session's partition and what its last answer told the client.
#[derive(Debug, Clone)]
struct Cached {
    request: FetchPartition,
    high_watermark: i64,
    log_start_offset: i64,
}

impl Cached {
    /// `CachedPartition.maybeUpdateResponseData`: whether the client must hear about this
    /// partition, remembering what it is told.
    fn must_respond(&mut self, answer: &PartitionData) -> bool {
        let mut respond = answer.records.as_ref().is_some_and(|r| !r.is_empty());
        if self.high_watermark != answer.high_watermark {
            self.high_watermark = answer.high_watermark;
            respond = true;
        }
        if self.log_start_offset != answer.log_start_offset {
            self.log_start_offset = answer.log_start_offset;
            respond = true;
        }
        if answer.error_code != 0 {
            // Forget the watermark so the partition is reported again once it recovers.
            self.high_watermark = -1;
            respond = true;
        }
        respond || answer.diverging_epoch.epoch >= 0
    }
}

struct Session {
    uses_topic_ids: bool,
    /// The epoch the next request must carry.
    epoch: i32,
    created_ms: i64,
    last_used_ms: i64,
    partitions: IndexMap<PartitionKey, Cached>,
}

/// How a fetch request is to be served.
#[derive(Debug)]
pub enum FetchContext {
    /// A full fetch: serve the request's partitions; with `open` a session is created from
    /// the answer ([`FetchSessions::open`]), else the answer carries no session.
    Full { open: bool },
    /// A session continued: serve every partition of the session, answer only what changed
    /// ([`FetchSessions::select`]).
    Incremental {
        session_id: i32,
        request_epoch: i32,
        partitions: Vec<FetchPartition>,
    },
    /// The session cannot be used: answer this error with no partitions and session id 0.
    Error(E),
}

#[derive(Default)]
struct Inner {
    sessions: HashMap<i32, Session>,
    evictions: u64,
    /// Requests served as a continued session.
    incremental: u64,
}

/// The broker's fetch-session cache.
pub struct FetchSessions {
    max_sessions: usize,
    eviction_ms: i64,
    inner: Mutex<Inner>,
}

/// Figures for `/metrics` (Kafka's NumIncrementalFetchSessions,
/// NumIncrementalFetchPartitionsCached and IncrementalFetchSessionEvictionsPerSec).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionFigures {
    pub sessions: usize,
    pub partitions: usize,
    pub evictions: u64,
    pub incremental_fetches: u64,
}

impl FetchSessions {
    pub fn new(max_sessions: usize, eviction_ms: i64) -> FetchSessions {
        FetchSessions {
            max_sessions,
            eviction_ms,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// `FetchManager.newContext`. `requested` and `forgotten` are the request's partitions and
    /// forgotten partitions; `uses_topic_ids` is true from Fetch v13.
    pub fn context(
        &self,
        session_id: i32,
        epoch: i32,
        uses_topic_ids: bool,
        requested: &[FetchPartition],
        forgotten: &[PartitionKey],
        now_ms: i64,
    ) -> FetchContext {
        let mut inner = self.inner.lock();
        if epoch == INITIAL_EPOCH || epoch == FINAL_EPOCH {
            if session_id != NO_SESSION {
                inner.sessions.remove(&session_id);
            }
            return FetchContext::Full {
                open: epoch == INITIAL_EPOCH,
            };
        }
        let Some(session) = inner.sessions.get_mut(&session_id) else {
            return FetchContext::Error(E::FetchSessionIdNotFound);
        };
        if session.epoch != epoch {
            return FetchContext::Error(E::InvalidFetchSessionEpoch);
        }
        if session.uses_topic_ids != uses_topic_ids {
            return FetchContext::Error(E::FetchSessionTopicIdError);
        }
        for p in requested {
            match session.partitions.get_mut(&p.key) {
                Some(cached) => cached.request = p.clone(),
                None => {
                    session.partitions.insert(
                        p.key.clone(),
                        Cached {
                            request: p.clone(),
                            high_watermark: -1,
                            log_start_offset: -1,
                        },
                    );
                }
            }
        }
        for key in forgotten {
            session.partitions.shift_remove(key);
        }
        if session.partitions.is_empty() {
            inner.sessions.remove(&session_id);
            return FetchContext::Full { open: false };
        }
        session.last_used_ms = now_ms;
        session.epoch = next_epoch(session.epoch);
        let partitions = session
            .partitions
            .values()
            .map(|c| c.request.clone())
            .collect();
        inner.incremental += 1;
        FetchContext::Incremental {
            session_id,
            request_epoch: epoch,
            partitions,
        }
    }

    /// A full fetch with epoch 0 was answered: cache its partitions with what the answer told
    /// the client. Returns the new session's id, or [`NO_SESSION`] when the cache has no room.
    pub fn open(
        &self,
        uses_topic_ids: bool,
        answered: &[(FetchPartition, &PartitionData)],
        now_ms: i64,
    ) -> i32 {
        let mut inner = self.inner.lock();
        if inner.sessions.len() >= self.max_sessions
            && !self.evict_one(&mut inner, answered.len(), now_ms)
        {
            return NO_SESSION;
        }
        let id = loop {
            // Random, as Kafka's, so an id from an old broker run is unlikely to match.
            let id = (Uuid::new_v4().as_u128() as i32) & i32::MAX;
            if id != NO_SESSION && !inner.sessions.contains_key(&id) {
                break id;
            }
        };
        let partitions = answered
            .iter()
            .map(|(request, answer)| {
                (
                    request.key.clone(),
                    Cached {
                        request: request.clone(),
                        high_watermark: answer.high_watermark,
                        log_start_offset: answer.log_start_offset,
                    },
                )
            })
            .collect();
        inner.sessions.insert(
            id,
            Session {
                uses_topic_ids,
                epoch: next_epoch(INITIAL_EPOCH),
                created_ms: now_ms,
                last_used_ms: now_ms,
                partitions,
            },
        );
        id
    }

    /// `FetchSessionCacheShard.tryEvict` without privileged (follower) sessions: the least
    /// recently used session if it has been idle long enough, else the smallest session old
    /// enough to be evictable, if it is smaller than the new one.
    fn evict_one(&self, inner: &mut Inner, new_size: usize, now_ms: i64) -> bool {
        let Some((&lru, lru_used)) = inner
            .sessions
            .iter()
            .map(|(id, s)| (id, s.last_used_ms))
            .min_by_key(|&(id, used)| (used, *id))
        else {
            return false;
        };
        let victim = if now_ms - lru_used > self.eviction_ms {
            Some(lru)
        } else {
            inner
                .sessions
                .iter()
                .filter(|(_, s)| now_ms - s.created_ms > self.eviction_ms)
                .min_by_key(|(id, s)| (s.partitions.len(), **id))
                .filter(|(_, s)| new_size > s.partitions.len())
                .map(|(id, _)| *id)
        };
        match victim {
            Some(id) => {
                inner.sessions.remove(&id);
                inner.evictions += 1;
                true
            }
            None => false,
        }
    }

    /// An incremental fetch was answered: keep only the partitions the client must hear
    /// about (in session order, which rotates partitions that returned records to the end),
    /// or the error for a request that raced another one on the same session.
    pub fn select(
        &self,
        session_id: i32,
        request_epoch: i32,
        answered: Vec<(FetchPartition, PartitionData)>,
    ) -> Result<Vec<(FetchPartition, PartitionData)>, E> {
        let mut inner = self.inner.lock();
        let Some(session) = inner.sessions.get_mut(&session_id) else {
            // Closed by a full fetch meanwhile: answer what was read, without caching it.
            return Ok(answered);
        };
        if session.epoch != next_epoch(request_epoch) {
            return Err(E::InvalidFetchSessionEpoch);
        }
        let mut selected = Vec::new();
        for (request, answer) in answered {
            let respond = match session.partitions.get_mut(&request.key) {
                Some(cached) => cached.must_respond(&answer),
                None => true,
            };
            if !respond {
                continue;
            }
            if answer.records.as_ref().is_some_and(|r| !r.is_empty()) {
                if let Some(cached) = session.partitions.shift_remove(&request.key) {
                    session.partitions.insert(request.key.clone(), cached);
                }
            }
            selected.push((request, answer));
        }
        Ok(selected)
    }

    pub fn figures(&self) -> SessionFigures {
        let inner = self.inner.lock();
        SessionFigures {
            sessions: inner.sessions.len(),
            partitions: inner.sessions.values().map(|s| s.partitions.len()).sum(),
            evictions: inner.evictions,
            incremental_fetches: inner.incremental,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(name: &str, partition: i32, offset: i64) -> FetchPartition {
        FetchPartition {
            key: PartitionKey::Name(name.to_string(), partition),
            topic: TopicName(name.to_string().into()),
            topic_id: Uuid::nil(),
            partition,
            fetch_offset: offset,
            max_bytes: 1 << 20,
            current_leader_epoch: -1,
        }
    }

    fn answer(hw: i64, records: &[u8]) -> PartitionData {
        PartitionData::default()
            .with_high_watermark(hw)
            .with_log_start_offset(0)
            .with_records(Some(bytes::Bytes::copy_from_slice(records)))
    }

    fn open_two(cache: &FetchSessions) -> i32 {
        let (a, b) = (part("t", 0, 0), part("t", 1, 0));
        let (ra, rb) = (answer(5, b""), answer(5, b""));
        cache.open(false, &[(a, &ra), (b, &rb)], 0)
    }

    #[test]
    fn epochs_wrap_to_one_and_final_stays_final() {
        assert_eq!(next_epoch(0), 1);
        assert_eq!(next_epoch(i32::MAX), 1);
        assert_eq!(next_epoch(-1), -1);
    }

    #[test]
    fn an_incremental_answer_has_only_partitions_with_news() {
        let cache = FetchSessions::new(10, 120_000);
        let id = open_two(&cache);
        assert_ne!(id, NO_SESSION);
        let FetchContext::Incremental { partitions, .. } = cache.context(id, 1, false, &[], &[], 1)
        else {
            panic!("not incremental")
        };
        assert_eq!(partitions.len(), 2);
        // Partition 0 unchanged, partition 1 has records: only 1 is answered.
        let out = cache
            .select(
                id,
                1,
                vec![
                    (partitions[0].clone(), answer(5, b"")),
                    (partitions[1].clone(), answer(6, b"x")),
                ],
            )
            .unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0.partition, 1);
        // The partition that returned records moved to the end; a moved watermark is news.
        let FetchContext::Incremental { partitions, .. } = cache.context(id, 2, false, &[], &[], 2)
        else {
            panic!("not incremental")
        };
        assert_eq!(
            partitions.iter().map(|p| p.partition).collect::<Vec<_>>(),
            [0, 1]
        );
        let out = cache
            .select(
                id,
                2,
                vec![
                    (partitions[0].clone(), answer(7, b"")),
                    (partitions[1].clone(), answer(6, b"")),
                ],
            )
            .unwrap();
        assert_eq!(out.iter().map(|p| p.0.partition).collect::<Vec<_>>(), [0]);
    }

    #[test]
    fn wrong_epoch_unknown_id_and_mixed_topic_ids_are_errors() {
        let cache = FetchSessions::new(10, 120_000);
        let id = open_two(&cache);
        assert!(matches!(
            cache.context(id, 5, false, &[], &[], 1),
            FetchContext::Error(E::InvalidFetchSessionEpoch)
        ));
        assert!(matches!(
            cache.context(id + 1, 1, false, &[], &[], 1),
            FetchContext::Error(E::FetchSessionIdNotFound)
        ));
        assert!(matches!(
            cache.context(id, 1, true, &[], &[], 1),
            FetchContext::Error(E::FetchSessionTopicIdError)
        ));
    }

    #[test]
    fn forgetting_every_partition_closes_the_session() {
        let cache = FetchSessions::new(10, 120_000);
        let id = open_two(&cache);
        let forget = [
            PartitionKey::Name("t".into(), 0),
            PartitionKey::Name("t".into(), 1),
        ];
        assert!(matches!(
            cache.context(id, 1, false, &[], &forget, 1),
            FetchContext::Full { open: false }
        ));
        assert_eq!(cache.figures().sessions, 0);
    }

    #[test]
    fn a_full_cache_evicts_only_idle_or_smaller_old_sessions() {
        let cache = FetchSessions::new(1, 1_000);
        let first = open_two(&cache);
        // Young and as large: no room, no session.
        let a = part("u", 0, 0);
        let ra = answer(1, b"");
        assert_eq!(cache.open(false, &[(a.clone(), &ra)], 500), NO_SESSION);
        // Idle past the eviction time: replaced.
        let second = cache.open(false, &[(a, &ra)], 5_000);
        assert_ne!(second, NO_SESSION);
        assert!(matches!(
            cache.context(first, 1, false, &[], &[], 5_001),
            FetchContext::Error(E::FetchSessionIdNotFound)
        ));
        assert_eq!(cache.figures().evictions, 1);
    }
}
