//! Deleting and re-creating a topic (issue 7, items 4 and 9): a delete is all or nothing, a
//! new topic never adopts an old topic's files or committed offsets, and a partition object
//! of a deleted topic never touches the files of a topic re-created under its name. Each test
//! opens with the story of the bug.

use std::path::Path;
use std::sync::Arc;

use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{GroupId, OffsetCommitRequest, OffsetFetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use strom_broker::partition::Partition;
use strom_broker::{Broker, ConfigBuilder};

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

fn open(dir: &Path) -> Arc<Broker> {
    let mut config = ConfigBuilder::new();
    config
        .set("data.dir", dir.to_str().unwrap(), "test")
        .unwrap();
    config.set("log.fsync", "always", "test").unwrap();
    config.set("log.retention.ms", "-1", "test").unwrap();
    Broker::open(config.build().unwrap()).unwrap()
}

fn now_ms() -> i64 {
    strom_broker::topics::now_ms()
}

/// Appends `n` one-record batches to `p`; returns the offset of the first.
fn append(p: &Partition, n: usize) -> i64 {
    p.with_log(|log| {
        let first = log.log_end_offset();
        for _ in 0..n {
            let batch = strom_log::testing::simple_batch(1, now_ms());
            let headers = strom_log::validate_batches(&batch).unwrap();
            log.append(&batch, &headers, now_ms()).unwrap();
        }
        log.flush().unwrap();
        first
    })
    .unwrap()
}

fn end_offset(p: &Partition) -> i64 {
    p.with_log(|log| log.log_end_offset()).unwrap()
}

async fn create(b: &Broker, name: &str) -> Arc<Partition> {
    let t = b
        .topics
        .create(name, 1, Default::default(), false)
        .await
        .unwrap();
    t.partition(0).unwrap()
}

fn name(v: &'static str) -> StrBytes {
    StrBytes::from_static_str(v)
}

async fn commit(b: &Broker, topic: &'static str, offset: i64) -> i16 {
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(name("g")))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(name(topic)))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(offset)])]);
    b.groups.offset_commit(req, 5).await.topics[0].partitions[0].error_code
}

async fn fetch(b: &Broker, topic: &'static str) -> i64 {
    let req = OffsetFetchRequest::default()
        .with_group_id(GroupId(name("g")))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(TopicName(name(topic)))
            .with_partition_indexes(vec![0])]));
    b.groups.offset_fetch(req, 5).await.topics[0].partitions[0].committed_offset
}

/// The story: a retention pass (or a DeleteRecords) had taken the partition object of topic
/// "t" just before "t" was deleted and re-created. It then rolled and deleted segments by
/// *path*, `<data>/t/partition-0/00000000000000000000.log`, which by then was the new
/// topic's first segment: the new topic lost acknowledged data.
#[tokio::test]
async fn a_deleted_topics_partition_never_touches_the_files_of_a_recreated_topic() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    let old = create(&b, "t").await;
    append(&old, 3);
    b.topics.delete("t").await.unwrap();
    let new = create(&b, "t").await;
    assert_eq!(end_offset(&new), 0, "a re-created topic starts empty");
    append(&new, 2);

    // What a retention pass and a DeleteRecords that picked up `old` earlier would do now.
    let _ = old.with_log(|log| log.apply_retention(now_ms() + 30 * DAY_MS));
    let _ = old.with_log(|log| log.delete_records_before(3));

    let segment = dir.path().join("t/partition-0/00000000000000000000.log");
    assert!(segment.exists(), "the new topic's segment was deleted");
    b.shutdown().await;
    drop((old, new, b));
    let b = open(dir.path());
    let t = b.topics.get("t").unwrap().partition(0).unwrap();
    assert_eq!(
        t.with_log(|log| (log.log_start_offset(), log.log_end_offset())),
        Some((0, 2)),
        "the new topic's log changed"
    );
}

/// The story: DeleteTopics forgot the topic first and then moved its directory; when the
/// move failed (a full disk, a read-only filesystem) the answer was an error, yet the topic
/// had vanished from metadata, its files stayed where they were, and a topic re-created
/// under the same name opened them and served the old records.
#[tokio::test]
async fn a_failed_delete_leaves_the_topic_whole_and_a_later_one_removes_it() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    let p = create(&b, "t").await;
    append(&p, 3);
    // Make the move fail: the trash is a file, so nothing can be moved into it.
    let trash = dir.path().join("__strom_meta/trash");
    let _ = std::fs::remove_dir_all(&trash);
    std::fs::write(&trash, b"not a directory").unwrap();

    assert!(b.topics.delete("t").await.is_err());
    let still = b
        .topics
        .get("t")
        .expect("a failed delete must keep the topic");
    assert_eq!(end_offset(&still.partition(0).unwrap()), 3);

    std::fs::remove_file(&trash).unwrap();
    b.topics.delete("t").await.unwrap();
    let new = create(&b, "t").await;
    assert_eq!(
        end_offset(&new),
        0,
        "the re-created topic adopted old files"
    );
}

/// The story: a create that failed half way (or a crash in an older version) left
/// `<data>/t/partition-0/` with segments but no `topic.json`; the next CreateTopics "t"
/// created the directory that already existed and served the leftover records as its own.
#[tokio::test]
async fn a_new_topic_never_adopts_leftover_partition_files() {
    let dir = tempfile::tempdir().unwrap();
    {
        let b = open(dir.path());
        let p = create(&b, "t").await;
        append(&p, 4);
        b.shutdown().await;
    }
    std::fs::remove_file(dir.path().join("t/topic.json")).unwrap();
    let b = open(dir.path());
    assert!(b.topics.get("t").is_none());
    let p = create(&b, "t").await;
    assert_eq!(end_offset(&p), 0, "the new topic adopted leftover segments");
}

/// A partition directory stamped with another topic's id is refused at startup, loudly: the
/// partition stays offline (KAFKA_STORAGE_ERROR, as any partition whose log cannot be opened)
/// with its files untouched, rather than being opened as part of this topic.
#[tokio::test]
async fn a_partition_of_another_topic_id_is_never_opened() {
    let dir = tempfile::tempdir().unwrap();
    {
        let b = open(dir.path());
        let p = create(&b, "t").await;
        append(&p, 1);
        b.shutdown().await;
    }
    let meta = dir.path().join("t/partition-0/partition.metadata");
    let text = std::fs::read_to_string(&meta).expect("every partition carries its topic id");
    assert!(text.starts_with("version: 0\ntopic_id: "), "{text}");
    let foreign = "version: 0\ntopic_id: 00000000-0000-0000-0000-000000000001\n";
    std::fs::write(&meta, foreign).unwrap();
    let b = open(dir.path());
    let p = b.topics.get("t").unwrap().partition(0).unwrap();
    let reason = p
        .offline_reason()
        .expect("a partition of another topic id must not be opened");
    assert!(reason.contains("topic id"), "{reason}");
    assert_eq!(std::fs::read_to_string(&meta).unwrap(), foreign);
}

/// The story: the broker was killed between moving a deleted topic's directory away and
/// writing the tombstones of its committed offsets. After the restart the offsets were
/// replayed, and a consumer group of a topic re-created under the same name resumed from
/// the old topic's positions, skipping the new topic's first records.
#[tokio::test]
async fn committed_offsets_of_a_deleted_topic_never_reach_a_recreated_one() {
    let dir = tempfile::tempdir().unwrap();
    {
        let b = open(dir.path());
        let p = create(&b, "t").await;
        append(&p, 10);
        assert_eq!(commit(&b, "t", 7).await, 0);
        // The crash: the directory is moved to the trash as a delete does first, and the
        // broker dies before it drops the offsets.
        let trash = dir.path().join("__strom_meta/trash");
        std::fs::create_dir_all(&trash).unwrap();
        std::fs::rename(dir.path().join("t"), trash.join("t.crashed-delete")).unwrap();
        b.begin_shutdown();
    }
    let b = open(dir.path());
    assert!(b.topics.get("t").is_none());
    create(&b, "t").await;
    assert_eq!(
        fetch(&b, "t").await,
        -1,
        "the new topic inherited old offsets"
    );
    // And the drop is durable: after another restart they stay gone.
    b.shutdown().await;
    drop(b);
    let b = open(dir.path());
    assert_eq!(fetch(&b, "t").await, -1);
    // While a normal delete drops them at once.
    assert_eq!(commit(&b, "t", 1).await, 0);
    b.topics.delete("t").await.unwrap();
    assert_eq!(fetch(&b, "t").await, -1);
}
