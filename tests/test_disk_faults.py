"""The real broker on a disk that fills up (issue 7): ENOSPC during CreateTopics, during
DeleteTopics and during offset commits, then a crash and a restart on the still-full disk, then
a restart with room and a full read-back with confluent-kafka.

What every case checks at the end: every acknowledged record is there exactly once at the
offset it was acknowledged with, nothing that failed is served, offsets are never handed out
twice, committed offsets are the last acknowledged ones, and a topic created again under a
deleted name is empty and has no committed offsets.

The data dir lives on an 8 MiB tmpfs with 4096 inodes that the test mounts (root only; the test
is skipped with the reason otherwise) and unmounts afterwards.
"""

import pytest
from confluent_kafka import OFFSET_INVALID, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import NewTopic

from disk import Filler, mount_small_disk, unmount
from helpers import (
    Delivery,
    admin,
    consume_partitions,
    consumer,
    create_topic,
    producer,
    wait_for_topic,
    watermarks,
)

GROUP = "disk-faults"


class SmallDisk:
    """A broker whose data dir is on a small tmpfs, and the means to fill that tmpfs."""

    def __init__(self, root, start_broker):
        self.root = root
        self.data_dir = root / "data"
        self.filler = Filler(root)
        self._start_broker = start_broker
        self.brokers = []

    def start(self):
        b = self._start_broker(data_dir=self.data_dir)
        self.brokers.append(b)
        return b

    def close(self):
        for b in self.brokers:
            b.kill9_only()
        unmount(self.root)


@pytest.fixture
def disk(start_broker, tmp_path):
    root = mount_small_disk(tmp_path / "disk")
    d = SmallDisk(root, start_broker)
    try:
        yield d
    finally:
        d.close()


def produce(bootstrap, topic, values, partition=0, **conf):
    """Produces with acks=all and returns the Delivery (failures are kept, not raised)."""
    p = producer(bootstrap, acks="all", **{"message.timeout.ms": 5000, "retries": 0, **conf})
    d = Delivery()
    for v in values:
        p.produce(topic, value=v, partition=partition, on_delivery=d)
    p.flush(15)
    return d


def produce_acked(bootstrap, topic, values, partition=0, **conf):
    d = produce(bootstrap, topic, values, partition, **conf)
    assert not d.errors, f"delivery errors on a disk with room: {d.errors[:3]}"
    return d.ok


def assert_read_back(bootstrap, topic, acked, failed_values=(), partition=0):
    """Every acknowledged record is there once, at its offset; offsets are dense and unique;
    no record whose produce failed is served."""
    low, high = watermarks(bootstrap, topic, partition)
    msgs = consume_partitions(bootstrap, topic, [partition], high - low, timeout_s=10)
    offsets = [m.offset() for m in msgs]
    assert offsets == list(range(low, high)), f"offsets not dense/unique: {offsets[:10]}..."
    by_offset = {m.offset(): m.value() for m in msgs}
    for _, off, value in acked:
        assert by_offset.get(off) == value, f"acknowledged record at {off} lost or changed"
    values = [m.value() for m in msgs]
    assert len(values) == len(set(values)), "a record is served twice"
    for v in failed_values:
        assert v not in values, f"a record whose produce failed is served: {v!r}"


def committed(bootstrap, topic, partitions=(0,)):
    c = consumer(bootstrap, group=GROUP)
    try:
        got = c.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
        return [tp.offset for tp in got]
    finally:
        c.close()


def commit(c, topic, offset, partition=0):
    """One synchronous commit; True if the broker acknowledged it."""
    try:
        c.commit(offsets=[TopicPartition(topic, partition, offset)], asynchronous=False)
        return True
    except KafkaException:
        return False


def commit_twice(bootstrap, topic, partitions, first, second):
    """Commits `first` then `second` for each partition: the offsets log then holds superseded
    records, which a start compacts away (and must not need to)."""
    c = consumer(bootstrap, group=GROUP)
    try:
        for value in (first, second):
            for p in partitions:
                assert commit(c, topic, value, p), "commit failed on a disk with room"
    finally:
        c.close()


def topic_names(bootstrap):
    return set(admin(bootstrap).list_topics(timeout=10).topics)


def crash_and_restart_on_the_full_disk(b):
    """kill -9, then start again while the disk is still full: the broker must come up."""
    b.kill9_only()
    b.start()


def test_enospc_during_topic_create(disk, tmp_path):
    b = disk.start()
    create_topic(b.bootstrap, "kept")
    acked = produce_acked(b.bootstrap, "kept", [f"k{i}".encode() for i in range(50)])
    commit_twice(b.bootstrap, "kept", [0], 20, 40)

    disk.filler.fill()
    futures = admin(b.bootstrap).create_topics([NewTopic("born", num_partitions=3)], request_timeout=10)
    try:
        futures["born"].result(timeout=15)
        created = True
    except KafkaException as e:
        created = False
        assert e.args[0].code() == KafkaError.KAFKA_STORAGE_ERROR, e
        # Nothing half made is left to eat the last blocks, or to be adopted later.
        assert not (disk.data_dir / "born").exists()
        assert "born" not in topic_names(b.bootstrap)

    crash_and_restart_on_the_full_disk(b)
    assert committed(b.bootstrap, "kept") == [40]
    assert ("born" in topic_names(b.bootstrap)) == created

    disk.filler.free()
    b.restart()
    assert_read_back(b.bootstrap, "kept", acked)
    more = produce_acked(b.bootstrap, "kept", [b"after"])
    assert more[0][1] == 50, "an offset was handed out twice"
    if not created:
        create_topic(b.bootstrap, "born", partitions=3)
    wait_for_topic(b.bootstrap, "born", 3)
    for p in range(3):
        assert watermarks(b.bootstrap, "born", p) == (0, 0)
    fresh = produce_acked(b.bootstrap, "born", [b"first"], partition=1)
    assert_read_back(b.bootstrap, "born", fresh, partition=1)


def test_enospc_during_topic_delete(disk):
    b = disk.start()
    create_topic(b.bootstrap, "kept")
    create_topic(b.bootstrap, "doomed", partitions=2)
    kept = produce_acked(b.bootstrap, "kept", [f"k{i}".encode() for i in range(50)])
    doomed = produce_acked(b.bootstrap, "doomed", [f"d{i}".encode() for i in range(30)])
    commit_twice(b.bootstrap, "doomed", [0, 1], 5, 10)

    disk.filler.fill()
    futures = admin(b.bootstrap).delete_topics(["doomed"], request_timeout=10)
    try:
        futures["doomed"].result(timeout=15)
        deleted = True
    except KafkaException as e:
        deleted = False
        assert e.args[0].code() == KafkaError.KAFKA_STORAGE_ERROR, e

    def check_delete_was_all_or_nothing():
        names = topic_names(b.bootstrap)
        if deleted:
            assert "doomed" not in names
        else:
            # A failed delete changes nothing: the topic and its data are all still there.
            assert "doomed" in names, "a failed delete forgot the topic but left its files"
            assert_read_back(b.bootstrap, "doomed", doomed)

    check_delete_was_all_or_nothing()
    crash_and_restart_on_the_full_disk(b)
    check_delete_was_all_or_nothing()

    disk.filler.free()
    b.restart()
    assert_read_back(b.bootstrap, "kept", kept)
    if not deleted:
        admin(b.bootstrap).delete_topics(["doomed"], request_timeout=10)["doomed"].result(timeout=15)
    create_topic(b.bootstrap, "doomed", partitions=2)
    for p in range(2):
        assert watermarks(b.bootstrap, "doomed", p) == (0, 0), "the new topic adopted old data"
    assert committed(b.bootstrap, "doomed", (0, 1)) == [OFFSET_INVALID, OFFSET_INVALID], \
        "the new topic inherited the deleted topic's committed offsets"
    fresh = produce_acked(b.bootstrap, "doomed", [b"new-0", b"new-1"])
    assert [o for _, o, _ in fresh] == [0, 1]
    assert_read_back(b.bootstrap, "doomed", fresh)


def test_enospc_during_offset_commits(disk):
    b = disk.start()
    create_topic(b.bootstrap, "kept")
    acked = produce_acked(b.bootstrap, "kept", [f"k{i}".encode() for i in range(50)])
    c = consumer(b.bootstrap, group=GROUP)
    last_acked = None
    try:
        for off in range(1, 21):
            assert commit(c, "kept", off)
            last_acked = off

        disk.filler.fill()
        # The offsets log's last page has room for some records; commit until the disk says
        # no (bounded), then a few more.
        failures = 0
        off = 20
        while failures < 5 and off < 2000:
            off += 1
            if commit(c, "kept", off):
                last_acked = off
            else:
                failures += 1
        assert failures, "no commit met the full disk; the test proves nothing"
        # A commit the broker refused is never served.
        assert committed(b.bootstrap, "kept") == [last_acked]
    finally:
        c.close()
    # Records produced onto the full disk: the acknowledged ones must survive, failed ones
    # must never appear.
    full = produce(b.bootstrap, "kept", [f"full-{i}".encode() for i in range(5)])
    acked += full.ok
    failed_values = [f"full-{i}".encode() for i in range(5) if all(v != f"full-{i}".encode() for _, _, v in full.ok)]

    crash_and_restart_on_the_full_disk(b)
    assert committed(b.bootstrap, "kept") == [last_acked]

    disk.filler.free()
    b.restart()
    assert committed(b.bootstrap, "kept") == [last_acked]
    c = consumer(b.bootstrap, group=GROUP)
    try:
        assert commit(c, "kept", 4500), "commits resume once the disk has room"
    finally:
        c.close()
    b.restart()
    assert committed(b.bootstrap, "kept") == [4500]
    assert_read_back(b.bootstrap, "kept", acked, failed_values)
    end = watermarks(b.bootstrap, "kept")[1]
    more = produce_acked(b.bootstrap, "kept", [b"after"])
    assert more[0][1] == end, "an offset was handed out twice"


def test_enospc_during_produce_and_rolls(disk):
    """A full disk while producing, with tiny segments rolling: the write that fails takes the
    partition offline (no later write is acknowledged on a disk that lost one), nothing
    unacknowledged is served, and after a restart with room every acknowledged record is there
    once and new writes continue after them."""
    b = disk.start()
    create_topic(b.bootstrap, "busy", config={"segment.bytes": "2000"})
    small = {"batch.size": 1500}  # batches well under the segment size, so segments roll
    acked = produce_acked(b.bootstrap, "busy", [f"before-{i}".encode() + b"x" * 200 for i in range(30)],
                          **small)

    disk.filler.fill()
    attempted = [f"full-{i}".encode() + b"y" * 400 for i in range(200)]
    d = produce(b.bootstrap, "busy", attempted, **small)
    assert d.errors, "a full disk must refuse some writes"
    acked += d.ok

    crash_and_restart_on_the_full_disk(b)
    disk.filler.free()
    b.restart()
    assert_read_back(b.bootstrap, "busy", acked)
    after = produce_acked(b.bootstrap, "busy", [b"after-0", b"after-1"], **small)
    assert after[0][1] == watermarks(b.bootstrap, "busy")[1] - 2
    # A refused record may have reached the disk before the error (Kafka promises nothing
    # either way), but never twice and never at an acknowledged record's offset.
    assert_read_back(b.bootstrap, "busy", acked + after)
