//! Disk faults in the committed-offsets store (issue 7, item 8), injected in-process: a
//! compaction that fails before or after its rename, a full disk at startup, a failed fsync,
//! and a record written by a newer version. Each test opens with the story of the bug.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{GroupId, OffsetCommitRequest, OffsetFetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::error::GroupError;
use crate::store::{self, CommittedOffset, OffsetLog, Record, RewriteFault};
use crate::{codes, GroupConfig, GroupCoordinator, ManualClock, TopicCatalog};

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "strom-group-faults-{tag}-{}-{:?}",
        std::process::id(),
        std::time::SystemTime::now()
    ));
    fs::create_dir_all(&d).unwrap();
    d
}

fn commit(p: i32, o: i64) -> Record {
    Record::Commit {
        group: "g".into(),
        topic: "t".into(),
        partition: p,
        value: CommittedOffset {
            offset: o,
            leader_epoch: -1,
            metadata: String::new(),
            commit_ms: 1,
            expire_ms: -1,
        },
    }
}

fn reopened(dir: &Path) -> Vec<Record> {
    OffsetLog::open(dir).unwrap().1
}

/// The story: compaction renamed the new file over `offsets.log`, then the directory fsync
/// failed; the store kept its handle on the old, now unlinked file and went on appending
/// there, so every commit acknowledged afterwards vanished at the next start.
#[test]
fn a_compaction_failing_after_its_rename_never_leaves_appends_in_an_unlinked_file() {
    let dir = temp_dir("after-rename");
    let (mut log, _) = OffsetLog::open(&dir).unwrap();
    log.append(&[commit(0, 1), commit(0, 2), commit(1, 7)])
        .unwrap();
    store::inject_rewrite_fault(RewriteFault::AfterRename);
    assert!(log.rewrite(&[commit(0, 2), commit(1, 7)]).is_err());
    // Whatever the store does next, a write it accepts must be in the file a restart reads.
    let accepted = log.append(&[commit(0, 3)]).is_ok();
    drop(log);
    let mut want = vec![commit(0, 2), commit(1, 7)];
    if accepted {
        want.push(commit(0, 3));
    }
    assert_eq!(reopened(&dir), want);
    fs::remove_dir_all(&dir).unwrap();
}

/// A compaction that fails before its rename (a full disk while writing the temp file) leaves
/// no temp file behind and the store appending to the live file.
#[test]
fn a_compaction_failing_before_its_rename_keeps_the_live_file() {
    let dir = temp_dir("before-rename");
    let (mut log, _) = OffsetLog::open(&dir).unwrap();
    log.append(&[commit(0, 1), commit(0, 2)]).unwrap();
    store::inject_rewrite_fault(RewriteFault::BeforeRename);
    assert!(log.rewrite(&[commit(0, 2)]).is_err());
    log.append(&[commit(0, 3)]).unwrap();
    drop(log);
    assert!(!dir.join("offsets.log.tmp").exists());
    assert_eq!(
        reopened(&dir),
        vec![commit(0, 1), commit(0, 2), commit(0, 3)]
    );
    fs::remove_dir_all(&dir).unwrap();
}

/// The story: a record of a kind this build does not know (written by a newer Strom, then
/// the broker was downgraded) was taken for a torn tail, and the file was truncated there,
/// silently deleting it and every commit after it. Startup must stop instead, say why, and
/// leave the file as it was.
#[test]
fn an_unknown_record_kind_stops_open_and_changes_no_byte() {
    let dir = temp_dir("unknown-kind");
    let (mut log, _) = OffsetLog::open(&dir).unwrap();
    log.append(&[commit(0, 1)]).unwrap();
    drop(log);
    let path = dir.join("offsets.log");
    let payload = [99u8, 0, 1, b'x'];
    let mut bytes = fs::read(&path).unwrap();
    bytes.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    bytes.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
    bytes.extend_from_slice(&payload);
    let mut after = Vec::new();
    assert!(commit(0, 2).encode(&mut after));
    bytes.extend_from_slice(&after);
    fs::write(&path, &bytes).unwrap();

    let err = OffsetLog::open(&dir)
        .err()
        .expect("open must refuse the file");
    let msg = err.to_string();
    assert!(
        matches!(err, GroupError::UnknownRecord { kind: 99, .. }),
        "{msg}"
    );
    assert!(msg.contains("newer"), "{msg}");
    assert_eq!(fs::read(&path).unwrap(), bytes, "open changed the file");
    fs::remove_dir_all(&dir).unwrap();
}

struct OneTopic;

impl TopicCatalog for OneTopic {
    fn partition_count(&self, topic: &str) -> Option<i32> {
        (topic == "t").then_some(2)
    }
}

fn open_coordinator(dir: &Path, fsync: bool) -> Result<Arc<GroupCoordinator>, GroupError> {
    let config = GroupConfig {
        initial_rebalance_delay_ms: 0,
        fsync,
        ..GroupConfig::default()
    };
    GroupCoordinator::open(
        dir,
        config,
        Arc::new(OneTopic),
        Arc::new(ManualClock::new(1_700_000_000_000)),
    )
}

/// The story: at startup the store compacts its log whenever it holds a superseded record;
/// on a full disk that rewrite failed and the broker refused to start, although nothing
/// needed to be written to serve what was already on disk.
#[test]
fn a_full_disk_at_startup_does_not_stop_the_coordinator() {
    let dir = temp_dir("full-at-open");
    let (mut log, _) = OffsetLog::open(&dir).unwrap();
    log.append(&[commit(0, 1), commit(0, 2), commit(1, 5)])
        .unwrap();
    drop(log);
    store::inject_rewrite_fault(RewriteFault::BeforeRename);
    let coord = open_coordinator(&dir, true).expect("must start without compacting");
    let mut got = coord.committed_offsets("g");
    got.sort();
    assert_eq!(got, vec![("t".into(), 0, 2), ("t".into(), 1, 5)]);
    fs::remove_dir_all(&dir).unwrap();
}

fn commit_req(offset: i64) -> OffsetCommitRequest {
    OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("g")))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(offset)])])
}

async fn fetch(coord: &GroupCoordinator) -> i64 {
    let req = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("g")))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_partition_indexes(vec![0])]));
    let resp = coord.offset_fetch(req, 5).await;
    resp.topics[0].partitions[0].committed_offset
}

async fn commit_code(coord: &GroupCoordinator, offset: i64) -> i16 {
    let resp = coord.offset_commit(commit_req(offset), 5).await;
    resp.topics[0].partitions[0].error_code
}

/// The story: an OffsetCommit whose fsync failed was answered with an error, yet the value
/// stayed in memory and OffsetFetch served it, so a consumer resumed from an offset that a
/// restart would not know (and that the client had been told was not committed).
#[tokio::test]
async fn after_a_failed_fsync_offset_fetch_serves_only_what_is_on_disk() {
    let dir = temp_dir("fsync");
    let coord = open_coordinator(&dir, true).unwrap();
    assert_eq!(commit_code(&coord, 5).await, codes::NONE);
    assert_eq!(fetch(&coord).await, 5);

    coord.log.fail_next_sync.store(true, Ordering::SeqCst);
    assert_ne!(commit_code(&coord, 9).await, codes::NONE);
    assert_eq!(fetch(&coord).await, 5, "served a commit whose fsync failed");

    // The store refuses writes from then on, and a later fsync cannot launder the lost one.
    assert_ne!(commit_code(&coord, 11).await, codes::NONE);
    assert_eq!(fetch(&coord).await, 5);
    assert!(coord.flush().is_err());
    fs::remove_dir_all(&dir).unwrap();
}
