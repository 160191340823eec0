//! Checkpoints of a replicated coordinator log (cluster mode's `__consumer_offsets`): a
//! partition the coordinator only appends to would grow with every commit, so past the
//! compaction threshold the live records are appended again and what lies before them is
//! discarded once replicated. These tests use an in-memory partition.

use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

use crate::journal::{append_checkpoint, CHECKPOINT_BATCH_BYTES};
use crate::{GroupConfig, GroupCoordinator, ManualClock, NewOffset, ReplicatedLog, TopicCatalog};

/// A partition in memory: its records (value per offset) from offset 0, the batches appended,
/// and the discards asked for.
#[derive(Default)]
struct MemoryPartition {
    values: Mutex<Vec<Bytes>>,
    batches: Mutex<Vec<usize>>,
    discards: Mutex<Vec<(u64, u64)>>,
}

impl ReplicatedLog for MemoryPartition {
    fn append(&self, payloads: &[Bytes]) -> Result<u64, i16> {
        let mut values = self.values.lock();
        values.extend(payloads.iter().cloned());
        self.batches.lock().push(payloads.len());
        Ok(values.len() as u64)
    }

    fn wait_replicated(&self, _end: u64) -> crate::ReplicationWait {
        Box::pin(async { Ok(()) })
    }

    fn discard_before(&self, start: u64, end: u64) {
        self.discards.lock().push((start, end));
    }
}

struct OneTopic;

impl TopicCatalog for OneTopic {
    fn partition_count(&self, topic: &str) -> Option<i32> {
        (topic == "t").then_some(4)
    }
}

fn open(log: Arc<MemoryPartition>, values: Vec<Bytes>) -> Arc<GroupCoordinator> {
    let end = values.len() as u64;
    GroupCoordinator::open_replicated(
        values,
        log,
        end,
        GroupConfig::default(),
        Arc::new(OneTopic),
        Arc::new(ManualClock::new(1_700_000_000_000)),
    )
}

fn offset(partition: i32, offset: i64) -> NewOffset {
    NewOffset {
        topic: "t".into(),
        partition,
        offset,
        leader_epoch: -1,
        metadata: String::new(),
    }
}

#[tokio::test]
async fn a_partition_of_superseded_commits_gets_a_checkpoint_and_its_prefix_discarded() {
    let log = Arc::new(MemoryPartition::default());
    let coordinator = open(log.clone(), Vec::new());
    let commits = 12_000i64;
    for i in 0..commits {
        let results = coordinator
            .commit_transactional("g", &[offset((i % 4) as i32, i)])
            .await;
        assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    }
    // Compaction runs with the retention check of the background loop's tick.
    assert!(log.discards.lock().is_empty());
    coordinator.tick();
    let discards = log.discards.lock().clone();
    assert_eq!(discards.len(), 1, "one checkpoint past the threshold");
    let (start, end) = discards[0];
    // The checkpoint holds the four live offsets, after the superseded commits.
    assert_eq!(end - start, 4);
    assert!(start > 10_000);
    // A new leader reading from the moved log start has every group's latest offsets.
    let kept = log.values.lock()[start as usize..].to_vec();
    let reloaded = open(Arc::new(MemoryPartition::default()), kept);
    let mut got = reloaded.committed_offsets("g");
    got.sort();
    let last = |p: i64| (commits - 4..commits).find(|i| i % 4 == p).unwrap();
    assert_eq!(
        got,
        (0..4)
            .map(|p| ("t".to_string(), p as i32, last(p)))
            .collect::<Vec<_>>()
    );
}

#[test]
fn a_checkpoint_is_cut_into_batches_below_the_byte_bound() {
    let log = MemoryPartition::default();
    let payloads: Vec<Bytes> = (0..10)
        .map(|_| Bytes::from(vec![7u8; CHECKPOINT_BATCH_BYTES / 4]))
        .collect();
    let mut end = 3;
    *log.values.lock() = vec![Bytes::new(); 3];
    append_checkpoint(&log, &payloads, &mut end).unwrap();
    assert_eq!(end, 13);
    assert_eq!(*log.batches.lock(), vec![4, 4, 2]);
    assert_eq!(*log.discards.lock(), vec![(3, 13)]);
    // A payload larger than the bound still goes, alone.
    let big = vec![Bytes::from(vec![1u8; CHECKPOINT_BATCH_BYTES + 1])];
    append_checkpoint(&log, &big, &mut end).unwrap();
    assert_eq!(log.batches.lock().last(), Some(&1));
}
