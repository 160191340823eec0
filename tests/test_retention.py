"""Retention deletes whole old segments and moves the log start offset forward."""

import os
import time

from confluent_kafka import KafkaError, TopicPartition

from helpers import consumer, create_topic, produce_values, producer, watermarks

FIRST_SEGMENT = "00000000000000000000.log"


def wait_for_log_start(bootstrap, topic, timeout_s=20):
    deadline = time.monotonic() + timeout_s
    low, high = watermarks(bootstrap, topic)
    while low == 0 and time.monotonic() < deadline:
        time.sleep(0.25)
        low, high = watermarks(bootstrap, topic)
    return low, high


def produce_many_segments(broker, topic, retention_ms, timestamp_ms=None, count=40):
    create_topic(broker.bootstrap, topic, partitions=1,
                 config={"retention.ms": str(retention_ms), "segment.bytes": "1024"})
    # One ~250-byte batch per flush, so the 1 KiB segments roll every few batches.
    values = [f"r-{i:03d}-".encode() + b"v" * 200 for i in range(count)]
    p = producer(broker.bootstrap)
    for v in values:
        p.produce(topic, value=v, partition=0, timestamp=timestamp_ms or 0)
        assert p.flush(10) == 0
    logs = sorted(f for f in os.listdir(broker.partition_dir(topic)) if f.endswith(".log"))
    assert len(logs) >= 3, f"segment.bytes=1024 should have rolled several segments, found {logs}"
    return values


def test_retention_by_time_deletes_old_segments(broker, topic_name):
    values = produce_many_segments(broker, topic_name, retention_ms=1000)
    low, high = wait_for_log_start(broker.bootstrap, topic_name)
    assert high == len(values)
    assert low > 0, "log start offset did not advance within 20s of retention.ms=1000"
    remaining = sorted(f for f in os.listdir(broker.partition_dir(topic_name)) if f.endswith(".log"))
    assert FIRST_SEGMENT not in remaining, f"oldest segment still on disk: {remaining}"
    # Every remaining segment starts at or after the new log start offset.
    assert all(int(f.split(".")[0]) >= low for f in remaining), (low, remaining)


def expire_old_data(broker, topic):
    """40 messages stamped an hour ago, deleted by retention.ms=60000, then 5 fresh ones
    that retention keeps. Returns (log start offset, fresh values)."""
    produce_many_segments(broker, topic, retention_ms=60000, timestamp_ms=int(time.time() * 1000) - 3_600_000)
    low, _ = wait_for_log_start(broker.bootstrap, topic)
    assert low > 0, "segments with hour-old timestamps outlived retention.ms=60000"
    fresh = [f"fresh-{i}".encode() for i in range(5)]
    produce_values(broker.bootstrap, topic, fresh, partition=0)
    return low, fresh


def test_consumer_below_log_start_resets_to_earliest(broker, topic_name):
    low, fresh = expire_old_data(broker, topic_name)
    c = consumer(broker.bootstrap, **{"auto.offset.reset": "earliest"})
    try:
        c.assign([TopicPartition(topic_name, 0, 0)])
        got = []
        deadline = time.monotonic() + 15
        last = 40 + len(fresh) - 1
        while (not got or got[-1].offset() < last) and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                got.append(m)
        assert got, "no message after resetting to earliest"
        assert got[0].offset() >= low
        assert [m.value() for m in got][-len(fresh):] == fresh
        assert got[-1].offset() == last
    finally:
        c.close()


def test_fetch_below_log_start_is_out_of_range(broker, topic_name):
    low, _ = expire_old_data(broker, topic_name)
    # auto.offset.reset=error turns the broker's OFFSET_OUT_OF_RANGE into a consumer error.
    c = consumer(broker.bootstrap, **{"auto.offset.reset": "error"})
    try:
        c.assign([TopicPartition(topic_name, 0, 0)])
        err = None
        deadline = time.monotonic() + 15
        while err is None and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None:
                assert m.error(), f"got a message at offset {m.offset()} below log start {low}"
                err = m.error()
        assert err is not None, "no error for a fetch below the log start offset"
        assert err.code() == KafkaError._AUTO_OFFSET_RESET, err
        assert "out of range" in err.str().lower(), err
    finally:
        c.close()


def test_retention_by_bytes(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=1,
                 config={"retention.bytes": "2048", "segment.bytes": "1024"})
    values = [f"b-{i:03d}-".encode() + b"v" * 200 for i in range(40)]
    produce_values(broker.bootstrap, topic_name, values, partition=0, flush_each=True)
    low, high = wait_for_log_start(broker.bootstrap, topic_name)
    assert high == 40
    assert low > 0, "retention.bytes=2048 did not delete old segments"
    total = sum(os.path.getsize(broker.partition_dir(topic_name) / f)
                for f in os.listdir(broker.partition_dir(topic_name)) if f.endswith(".log"))
    # Kafka keeps segments while the log minus the oldest segment is still over the limit,
    # so what is left is at most the limit plus one segment (and the active segment).
    assert total <= 2048 + 2 * 1024 + 512, f"{total} bytes of segments left"
