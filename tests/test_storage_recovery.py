"""Storage hardening against the real binary: damage that a crash cannot explain takes only the
damaged partition offline (nothing acknowledged is deleted), idempotence survives segment
rolls and restarts, and the recovery checkpoint and producer snapshots may be lost or damaged
without loss.

Each test builds its history with real clients or raw Kafka requests, damages files on disk
while the broker is down, restarts the real `strom` binary and reads everything back.
"""

import os
import resource
import struct

import time

import pytest

import wire
from helpers import consume_all, create_topic, produce_values, watermarks

ERROR_KAFKA_STORAGE_ERROR = 56
SMALL_SEGMENTS = {"segment.bytes": "600"}


def segments(pdir):
    return sorted(f for f in os.listdir(pdir) if f.endswith(".log"))


def raw_produce(bootstrap, topic, partition, batch, correlation_id=1):
    """One Produce v3 with acks=all; returns (error_code, base_offset)."""
    with wire.Conn(bootstrap, timeout_s=10) as conn:
        conn.send(wire.produce_request_v3(topic, partition, batch, correlation_id))
        _, results = wire.parse_produce_v3(conn.recv_frame())
    [(_, _, error, base_offset)] = results
    return error, base_offset


def init_producer_id(bootstrap):
    with wire.Conn(bootstrap) as conn:
        conn.send(wire.init_producer_id_request_v0(7))
        _, error, producer_id, epoch = wire.parse_init_producer_id_v0(conn.recv_frame())
    assert error == 0
    return producer_id, epoch


def produce_idempotent(bootstrap, topic, prefix, count):
    """`count` single-record idempotent batches of ~300 bytes (each in its own segment with
    SMALL_SEGMENTS), acknowledged at offsets 0..count; returns (pid, epoch, batches)."""
    pid, epoch = init_producer_id(bootstrap)
    batches = [
        wire.record_batch([f"{prefix}-{seq}".encode() + b"x" * 300], producer_id=pid, producer_epoch=epoch,
                          base_sequence=seq)
        for seq in range(count)
    ]
    for seq, batch in enumerate(batches):
        assert raw_produce(bootstrap, topic, 0, batch) == (0, seq)
    return pid, epoch, batches


def fill_two_partitions(broker, topic, n=20):
    create_topic(broker.bootstrap, topic, partitions=2, config=SMALL_SEGMENTS)
    values = {p: [f"p{p}-{i:03d}-".encode() + b"v" * 60 for i in range(n)] for p in range(2)}
    for p in range(2):
        produce_values(broker.bootstrap, topic, values[p], partition=p, flush_each=True, acks="all")
    return values


def assert_offline_and_other_serves(broker, topic, values):
    """Partition 0 answers KAFKA_STORAGE_ERROR; partition 1 serves everything."""
    error, _ = raw_produce(broker.bootstrap, topic, 0, wire.record_batch([b"refused"]))
    assert error == ERROR_KAFKA_STORAGE_ERROR
    got = consume_all(broker.bootstrap, topic, len(values[1]), partitions=(1,))
    assert [m.value() for m in got] == values[1]
    error, offset = raw_produce(broker.bootstrap, topic, 1, wire.record_batch([b"still-serving"]))
    assert (error, offset) == (0, len(values[1]))
    assert "PARTITION OFFLINE" in broker.log_tail()


def test_damage_in_an_old_segment_takes_one_partition_offline_and_deletes_nothing(broker, topic_name):
    """Regression: a cut in an old segment used to make recovery delete every newer segment
    (fsynced, acknowledged) and hand out their offsets again."""
    values = fill_two_partitions(broker, topic_name)
    broker.stop()
    pdir = broker.partition_dir(topic_name, 0)
    before = segments(pdir)
    assert len(before) >= 4, before
    old = pdir / before[1]
    original = old.read_bytes()
    os.truncate(old, len(original) - 10)

    broker.start()

    assert_offline_and_other_serves(broker, topic_name, values)
    assert segments(pdir) == before, "no segment was deleted"
    # Put the bytes back: the partition comes back whole, with every acknowledged record.
    broker.stop()
    old.write_bytes(original)
    broker.start()
    got = consume_all(broker.bootstrap, topic_name, len(values[0]), partitions=(0,))
    assert [m.value() for m in got] == values[0]
    assert [m.offset() for m in got] == list(range(len(values[0])))


def test_a_corrupt_batch_inside_the_active_segment_takes_one_partition_offline(broker, topic_name):
    """Regression: a corrupt batch in the middle of the active segment stopped the whole
    broker at startup. Now only its partition is offline, and it is not truncated."""
    create_topic(broker.bootstrap, topic_name, partitions=2)
    values = {p: [f"p{p}-{i:03d}".encode() for i in range(10)] for p in range(2)}
    for p in range(2):
        produce_values(broker.bootstrap, topic_name, values[p], partition=p, flush_each=True, acks="all")
    broker.kill9_only()
    active = broker.partition_dir(topic_name, 0) / segments(broker.partition_dir(topic_name, 0))[-1]
    original = active.read_bytes()
    # Byte 70 lies in the records of the first batch (its header is 61 bytes): the CRC fails
    # there while nine valid batches follow.
    damaged = bytearray(original)
    damaged[70] ^= 0xFF
    active.write_bytes(bytes(damaged))

    broker.start()

    assert_offline_and_other_serves(broker, topic_name, values)
    assert active.read_bytes() == bytes(damaged), "the damaged segment is left as it is"
    broker.stop()
    active.write_bytes(original)
    broker.start()
    assert watermarks(broker.bootstrap, topic_name, 0) == (0, 10)


@pytest.mark.parametrize("restart", ["graceful", "kill9"])
def test_a_retry_after_a_roll_and_a_restart_is_not_written_twice(broker, topic_name, restart):
    """Regression: producer state was rebuilt from the active segment only, so after a roll
    and a restart a retried batch of a producer not in that segment was written again."""
    create_topic(broker.bootstrap, topic_name, partitions=1, config=SMALL_SEGMENTS)
    pid, epoch, batches = produce_idempotent(broker.bootstrap, topic_name, "idem", 4)
    # Another writer rolls the log, so the active segment holds none of this producer's batches.
    assert raw_produce(broker.bootstrap, topic_name, 0, wire.record_batch([b"other" + b"y" * 300])) == (0, 4)
    assert len(segments(broker.partition_dir(topic_name))) >= 3
    if restart == "graceful":
        broker.restart()
    else:
        broker.kill9()

    # The client never heard about seq 3 (say), so it retries it: a duplicate, answered with
    # its original offset and not written again.
    assert raw_produce(broker.bootstrap, topic_name, 0, batches[3]) == (0, 3)
    assert raw_produce(broker.bootstrap, topic_name, 0, batches[2]) == (0, 2)
    assert watermarks(broker.bootstrap, topic_name) == (0, 5)
    nxt = wire.record_batch([b"idem-4"], producer_id=pid, producer_epoch=epoch, base_sequence=4)
    assert raw_produce(broker.bootstrap, topic_name, 0, nxt) == (0, 5)
    gap = wire.record_batch([b"idem-9"], producer_id=pid, producer_epoch=epoch, base_sequence=9)
    assert raw_produce(broker.bootstrap, topic_name, 0, gap)[0] == wire.ERROR_OUT_OF_ORDER_SEQUENCE_NUMBER


@pytest.mark.parametrize("damage", ["garbage", "removed"])
def test_a_damaged_checkpoint_or_producer_snapshot_loses_nothing(broker, topic_name, damage):
    create_topic(broker.bootstrap, topic_name, partitions=1, config=SMALL_SEGMENTS)
    pid, epoch, batches = produce_idempotent(broker.bootstrap, topic_name, "v", 5)
    broker.stop()
    pdir = broker.partition_dir(topic_name)
    snapshots = [pdir / f for f in os.listdir(pdir) if f.endswith(".snapshot")]
    checkpoint = broker.data_dir / "recovery-point-offset-checkpoint"
    assert snapshots and checkpoint.exists()
    for path in snapshots + [checkpoint]:
        if damage == "garbage":
            path.write_bytes(struct.pack(">q", 1234) + b"\xff" * 20)
        else:
            path.unlink()

    broker.start()

    assert watermarks(broker.bootstrap, topic_name) == (0, 5)
    got = consume_all(broker.bootstrap, topic_name, 5)
    assert [m.value()[:4] for m in got] == [f"v-{i}x".encode() for i in range(5)]
    # Idempotence was rebuilt from the log itself.
    assert raw_produce(broker.bootstrap, topic_name, 0, batches[4]) == (0, 4)
    assert watermarks(broker.bootstrap, topic_name) == (0, 5)


def test_running_out_of_file_descriptors_at_a_roll_does_not_block_later_rolls(broker, topic_name):
    """Regression: a roll whose `.log` was created but whose index could not be (EMFILE) left
    the `.log` behind, and every later roll failed with "file exists" until a restart."""
    create_topic(broker.bootstrap, topic_name, partitions=1, config=SMALL_SEGMENTS)
    batch = lambda i: wire.record_batch([f"fd-{i}".encode() + b"w" * 300])  # noqa: E731
    pid = broker.proc.pid
    with wire.Conn(broker.bootstrap, timeout_s=10) as conn:
        def produce(i, correlation_id):
            conn.send(wire.produce_request_v3(topic_name, 0, batch(i), correlation_id))
            _, [(_, _, error, offset)] = wire.parse_produce_v3(conn.recv_frame())
            return error, offset

        assert produce(0, 1) == (0, 0)
        time.sleep(0.3)  # let the flusher settle, so nothing else wants a descriptor
        limits = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        in_use = len(os.listdir(f"/proc/{pid}/fd"))
        # Room for the new `.log` only: its `.index` cannot be opened.
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (in_use + 1, limits[1]))
        try:
            assert produce(1, 2)[0] == ERROR_KAFKA_STORAGE_ERROR
        finally:
            resource.prlimit(pid, resource.RLIMIT_NOFILE, limits)
        assert segments(broker.partition_dir(topic_name)) == [f"{0:020}.log"], \
            "the half-created segment was removed"
        # The partition is not offline: the roll is tried again and works, and so does the next.
        assert produce(1, 3) == (0, 1)
        assert produce(2, 4) == (0, 2)
    assert len(segments(broker.partition_dir(topic_name))) == 3
    assert watermarks(broker.bootstrap, topic_name) == (0, 3)
