"""What survives a restart, a kill -9 and a damaged segment tail."""

import os
import time

import pytest
from confluent_kafka.admin import ConfigResource

from helpers import (
    Delivery,
    admin,
    assert_healthy,
    consume_all,
    consume_partitions,
    create_topic,
    produce_values,
    producer,
    wait_for_topic,
    watermarks,
)

FIRST_SEGMENT = "00000000000000000000.log"


def describe_topic_config(bootstrap, topic):
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    futures = admin(bootstrap).describe_configs([res], request_timeout=10)
    return {name: entry.value for name, entry in futures[res].result(timeout=10).items()}


def test_topics_configs_and_data_survive_graceful_restart(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=3,
                 config={"retention.ms": "123456789", "segment.bytes": "1048576"})
    values = {p: [f"p{p}-{i}".encode() for i in range(50)] for p in range(3)}
    for p in range(3):
        produce_values(broker.bootstrap, topic_name, values[p], partition=p)

    broker.restart()

    wait_for_topic(broker.bootstrap, topic_name, 3)
    config = describe_topic_config(broker.bootstrap, topic_name)
    assert config.get("retention.ms") == "123456789"
    assert config.get("segment.bytes") == "1048576"
    for p in range(3):
        got = consume_all(broker.bootstrap, topic_name, 50, partitions=(p,))
        assert [m.value() for m in got] == values[p]
        assert [m.offset() for m in got] == list(range(50))
    # New writes continue after the recovered end, not over it.
    d = produce_values(broker.bootstrap, topic_name, [b"after-restart"], partition=0)
    assert d.ok[0][1] == 50


@pytest.mark.parametrize("acks", ["1", "all"])
def test_kill9_during_production_loses_nothing_acknowledged(broker, topic_name, acks):
    create_topic(broker.bootstrap, topic_name, partitions=2)
    p = producer(broker.bootstrap, acks=acks, **{"message.timeout.ms": 20000, "linger.ms": 1,
                                                 "retry.backoff.ms": 50})
    d = Delivery()
    killed_at = None
    total = 20000
    i = 0
    deadline = time.monotonic() + 40
    # Produce a steady stream (about 20,000 msgs/s); SIGKILL the broker once 3,000 are
    # acknowledged, while more are in flight and more still to come, then keep producing
    # into the restarted broker.
    while time.monotonic() < deadline and (i < total or killed_at is None):
        if i < total:
            try:
                p.produce(topic_name, value=f"m-{i}".encode(), partition=i % 2, on_delivery=d)
                i += 1
            except BufferError:
                p.poll(0.05)
            if i % 100 == 0:
                p.poll(0.005)
        else:
            p.poll(0.05)
        if killed_at is None and len(d.ok) >= 3000:
            killed_at = (len(d.ok), i)
            broker.kill9()
    assert killed_at is not None, f"only {len(d.ok)} messages acknowledged before the deadline"
    assert killed_at[1] < total, "the kill came after the last message was produced"
    p.flush(30)
    acked = set(d.ok)
    assert len(acked) > killed_at[0], "nothing was acknowledged after the restart"

    stored = set()
    for part in (0, 1):
        highest = max(o for pp, o, _ in acked if pp == part)
        msgs = consume_partitions(broker.bootstrap, topic_name, [part], highest + 1, timeout_s=30)
        stored |= {(m.partition(), m.offset(), m.value()) for m in msgs}
    missing = acked - stored
    assert not missing, f"{len(missing)} acknowledged messages lost, e.g. {sorted(missing)[:5]}"


def produce_batches(bootstrap, topic, n):
    """n messages, each in its own batch (flush after each), in partition 0."""
    values = [f"batch-{i:03d}-".encode() + b"x" * 40 for i in range(n)]
    d = produce_values(bootstrap, topic, values, partition=0, flush_each=True)
    assert [o for _, o, _ in d.ok] == list(range(n))
    return values


def damage_append_garbage(path):
    with open(path, "ab") as f:
        f.write(b"\x00\x00\x00\x00\x00\x00\x00\x0a\x00\x00\x01\x00garbage-garbage-garbage" * 3)
        f.flush()
        os.fsync(f.fileno())


def damage_flip_last_bytes(path):
    with open(path, "r+b") as f:
        f.seek(-4, os.SEEK_END)
        tail = f.read(4)
        f.seek(-4, os.SEEK_END)
        f.write(bytes(b ^ 0xFF for b in tail))


def damage_truncate_mid_batch(path):
    size = os.path.getsize(path)
    os.truncate(path, size - 11)


@pytest.mark.parametrize(
    "damage,intact",
    [
        (damage_append_garbage, 10),   # garbage after the last batch: all 10 batches are intact
        (damage_flip_last_bytes, 9),   # the last batch fails its CRC-32C: it goes, 9 remain
        (damage_truncate_mid_batch, 9),  # a torn last batch: it goes, 9 remain
    ],
    ids=["garbage-appended", "last-batch-flipped", "torn-last-batch"],
)
def test_corrupt_segment_tail_is_truncated_on_restart(broker, topic_name, damage, intact):
    """A crash (kill -9) may leave a torn tail: it is cut off. After a clean shutdown the same
    damage lies below the recovery point and takes the partition offline instead
    (test_storage_recovery.py)."""
    create_topic(broker.bootstrap, topic_name, partitions=1)
    values = produce_batches(broker.bootstrap, topic_name, 10)
    broker.kill9_only()
    segment = broker.partition_dir(topic_name) / FIRST_SEGMENT
    assert segment.exists(), f"expected segment file {segment}; found {sorted(os.listdir(segment.parent))}"
    damage(segment)

    broker.start()

    assert watermarks(broker.bootstrap, topic_name) == (0, intact), "log end after recovery"
    got = consume_all(broker.bootstrap, topic_name, intact)
    assert [m.value() for m in got] == values[:intact], "consumers must see exactly the intact prefix"
    d = produce_values(broker.bootstrap, topic_name, [b"after-repair"], partition=0)
    assert d.ok[0][1] == intact, "the next produce must continue right after the intact prefix"
    got = consume_all(broker.bootstrap, topic_name, intact + 1)
    assert [m.value() for m in got] == values[:intact] + [b"after-repair"]
    assert_healthy(broker.bootstrap)


def test_missing_index_is_rebuilt(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=1)
    values = produce_batches(broker.bootstrap, topic_name, 20)
    broker.stop()
    pdir = broker.partition_dir(topic_name)
    removed = [f for f in os.listdir(pdir) if f.endswith(".index") or f.endswith(".timeindex")]
    for f in removed:
        os.remove(pdir / f)
    broker.start()
    got = consume_all(broker.bootstrap, topic_name, 20)
    assert [m.value() for m in got] == values
    # Reading from the middle needs the index (or its rebuilt copy) to find the batch.
    mid = consume_partitions(broker.bootstrap, topic_name, [0], 5, start=15)
    assert [m.offset() for m in mid] == [15, 16, 17, 18, 19]
