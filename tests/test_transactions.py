"""Transactions (KIP-98) end to end with confluent-kafka's transactional producer against the
real broker: commits and aborts across partitions, read_committed against read_uncommitted
consumers, a consume-transform-produce loop with send_offsets_to_transaction, zombie fencing,
a broker killed mid-transaction, segment rolls, and the broker-side refusals Kafka makes.
"""

import json
import subprocess
import time
import uuid

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_INVALID,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

import helpers
import wire
from conftest import strom_bin

pytestmark = pytest.mark.timeout(120)

# Fast transaction expiry for the tests (Kafka's default cleanup interval is 10 s).
TXN_SETTINGS = {"transaction.abort.timed.out.transaction.cleanup.interval.ms": "300"}

ERROR_INVALID_TXN_STATE = 48


def txn_producer(bootstrap, tid, **conf):
    base = {
        "bootstrap.servers": bootstrap,
        "transactional.id": tid,
        "linger.ms": 5,
        **helpers.FAST_CLIENT,
    }
    base.update(conf)
    p = Producer(base)
    p.init_transactions(15)
    return p


def read(bootstrap, topic, partitions, isolation, expected=None, timeout_s=8.0):
    """Every value of `partitions` by assignment from the beginning, per partition in order.
    Reads until `expected` values arrived, or until the time is up when `expected` is None."""
    c = helpers.consumer(bootstrap, **{"isolation.level": isolation})
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        out = {p: [] for p in partitions}
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if expected is not None and sum(len(v) for v in out.values()) >= expected:
                # A little longer, so that an extra record would be seen too.
                deadline = min(deadline, time.monotonic() + 0.5)
            for m in c.consume(num_messages=500, timeout=0.2):
                if m.error():
                    raise AssertionError(f"consumer error: {m.error()}")
                out[m.partition()].append(m.value())
        return out
    finally:
        c.close()


def test_commits_and_aborts_interleaved_across_partitions(start_broker, topic_name):
    broker = start_broker(settings=TXN_SETTINGS)
    helpers.create_topic(broker.bootstrap, topic_name, partitions=2)
    p = txn_producer(broker.bootstrap, f"tx-{uuid.uuid4().hex[:6]}")
    committed = {0: [], 1: []}
    everything = {0: [], 1: []}
    for t in range(6):
        p.begin_transaction()
        for part in (0, 1):
            for j in range(3):
                v = f"t{t}-p{part}-{j}".encode()
                p.produce(topic_name, value=v, partition=part)
                everything[part].append(v)
                if t % 2 == 0:
                    committed[part].append(v)
        # An abort purges what is not sent yet: send it, so the log holds aborted records.
        p.flush(10)
        if t % 2 == 0:
            p.commit_transaction(15)
        else:
            p.abort_transaction(15)

    # Each transaction left one marker per partition: 6 x (3 records + 1 marker).
    for part in (0, 1):
        assert helpers.watermarks(broker.bootstrap, topic_name, part) == (0, 24)
    got = read(broker.bootstrap, topic_name, [0, 1], "read_committed", expected=18)
    assert got == committed
    got = read(broker.bootstrap, topic_name, [0, 1], "read_uncommitted", expected=36)
    assert got == everything


def test_an_open_transaction_holds_read_committed_at_the_lso(start_broker, topic_name):
    broker = start_broker(settings=TXN_SETTINGS)
    helpers.create_topic(broker.bootstrap, topic_name)
    helpers.produce_values(broker.bootstrap, topic_name, [b"plain-0"], partition=0)
    p = txn_producer(broker.bootstrap, "lso-tx")
    p.begin_transaction()
    p.produce(topic_name, value=b"open-0", partition=0)
    p.flush(10)
    # A non-transactional record after the open transaction is not stable yet either.
    helpers.produce_values(broker.bootstrap, topic_name, [b"plain-1"], partition=0)

    got = read(broker.bootstrap, topic_name, [0], "read_committed", timeout_s=2.0)
    assert got == {0: [b"plain-0"]}
    got = read(broker.bootstrap, topic_name, [0], "read_uncommitted", expected=3)
    assert got == {0: [b"plain-0", b"open-0", b"plain-1"]}

    p.commit_transaction(15)
    got = read(broker.bootstrap, topic_name, [0], "read_committed", expected=3)
    assert got == {0: [b"plain-0", b"open-0", b"plain-1"]}


def test_consume_transform_produce_commits_offsets_with_the_output(start_broker):
    broker = start_broker(settings=TXN_SETTINGS)
    src, dst, group = "ctp-in", "ctp-out", "ctp-group"
    helpers.create_topic(broker.bootstrap, src)
    helpers.create_topic(broker.bootstrap, dst)
    helpers.produce_values(broker.bootstrap, src, [f"in-{i}".encode() for i in range(30)], partition=0)

    c = helpers.consumer(broker.bootstrap, group=group, **{"isolation.level": "read_committed"})
    c.subscribe([src])
    p = txn_producer(broker.bootstrap, "ctp-tx")
    seen = 0
    batches = 0
    deadline = time.monotonic() + 30
    try:
        while seen < 30 and time.monotonic() < deadline:
            msgs = [m for m in c.consume(num_messages=10, timeout=0.5) if not m.error()]
            if not msgs:
                continue
            p.begin_transaction()
            for m in msgs:
                p.produce(dst, value=m.value().replace(b"in-", b"out-"), partition=0)
            p.flush(10)
            p.send_offsets_to_transaction(c.position(c.assignment()), c.consumer_group_metadata(), 15)
            batches += 1
            if batches == 2:
                # The second batch is aborted: its output must never be visible, and its input
                # offsets are not committed, so the batch is read again.
                p.abort_transaction(15)
                c.seek(TopicPartition(src, 0, msgs[0].offset()))
                continue
            p.commit_transaction(15)
            seen += len(msgs)
    finally:
        c.close()
    assert seen == 30

    out = read(broker.bootstrap, dst, [0], "read_committed", expected=30)
    assert out == {0: [f"out-{i}".encode() for i in range(30)]}
    check = helpers.consumer(broker.bootstrap, group=group)
    try:
        (tp,) = check.committed([TopicPartition(src, 0)], timeout=10)
        assert tp.offset == 30
    finally:
        check.close()


def test_a_second_producer_with_the_same_id_fences_the_first(start_broker, topic_name):
    broker = start_broker(settings=TXN_SETTINGS)
    helpers.create_topic(broker.bootstrap, topic_name)
    zombie = txn_producer(broker.bootstrap, "fenced-tx")
    zombie.begin_transaction()
    zombie.produce(topic_name, value=b"zombie", partition=0)
    zombie.flush(10)

    fresh = txn_producer(broker.bootstrap, "fenced-tx")
    fresh.begin_transaction()
    fresh.produce(topic_name, value=b"fresh", partition=0)
    fresh.commit_transaction(15)

    with pytest.raises(KafkaException) as info:
        zombie.commit_transaction(15)
    err = info.value.args[0]
    assert err.fatal(), err
    assert err.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH), err

    got = read(broker.bootstrap, topic_name, [0], "read_committed", expected=1)
    assert got == {0: [b"fresh"]}


def test_a_transaction_timeout_above_the_broker_maximum_is_refused(start_broker):
    broker = start_broker(settings={"transaction.max.timeout.ms": "5000"})
    p = Producer({
        "bootstrap.servers": broker.bootstrap,
        "transactional.id": "too-long",
        "transaction.timeout.ms": 10000,
        **helpers.FAST_CLIENT,
    })
    with pytest.raises(KafkaException) as info:
        p.init_transactions(10)
    assert info.value.args[0].code() == KafkaError.INVALID_TRANSACTION_TIMEOUT


def txn_cli(broker, *args):
    out = subprocess.run(
        [str(strom_bin()), "txn", *args, "--bootstrap", broker.bootstrap],
        capture_output=True, text=True, timeout=20,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def txn_cli_once(broker, state, *args, timeout_s=10):
    """`strom txn` output once it shows `state`: EndTxn answers when the decision is durable,
    and the state is Prepare... until the markers are written (as with Kafka)."""
    deadline = time.monotonic() + timeout_s
    out = txn_cli(broker, *args)
    while state not in out and time.monotonic() < deadline:
        time.sleep(0.1)
        out = txn_cli(broker, *args)
    return out


def test_kill9_mid_transaction_aborts_it_after_the_timeout(start_broker, topic_name):
    broker = start_broker(settings=TXN_SETTINGS)
    helpers.create_topic(broker.bootstrap, topic_name)
    p = txn_producer(broker.bootstrap, "crash-tx", **{"transaction.timeout.ms": 4000, "socket.timeout.ms": 4000})
    p.begin_transaction()
    for i in range(5):
        p.produce(topic_name, value=f"doomed-{i}".encode(), partition=0)
    p.flush(10)
    assert "Ongoing" in txn_cli(broker, "describe", "crash-tx")

    broker.kill9()
    # Recovered: still open until its timeout, then aborted by the coordinator.
    after = txn_producer(broker.bootstrap, "after-crash-tx")
    after.begin_transaction()
    after.produce(topic_name, value=b"survivor", partition=0)
    after.commit_transaction(15)

    got = read(broker.bootstrap, topic_name, [0], "read_committed", expected=1, timeout_s=15)
    assert got == {0: [b"survivor"]}
    described = txn_cli(broker, "describe", "crash-tx")
    assert "CompleteAbort" in described, described
    listed = txn_cli_once(broker, "CompleteCommit", "list")
    assert "crash-tx" in listed and "after-crash-tx" in listed and "CompleteCommit" in listed, listed
    # The zombie producer is fenced by the timeout's epoch bump.
    with pytest.raises(KafkaException):
        p.commit_transaction(10)


def test_transactions_across_segment_rolls_and_restarts(start_broker, topic_name):
    broker = start_broker(settings=TXN_SETTINGS)
    helpers.create_topic(broker.bootstrap, topic_name, config={"segment.bytes": "4096"})
    p = txn_producer(broker.bootstrap, "roll-tx")
    committed = []
    pad = b"x" * 300
    for t in range(8):
        p.begin_transaction()
        for j in range(6):
            v = f"r{t}-{j}-".encode() + pad
            p.produce(topic_name, value=v, partition=0)
            if t % 3 != 1:
                committed.append(v)
            p.flush(10)  # one batch per record: rolls fall inside transactions
        if t % 3 == 1:
            p.abort_transaction(15)
        else:
            p.commit_transaction(15)
    segments = list(broker.partition_dir(topic_name).glob("*.log"))
    assert len(segments) >= 4
    assert list(broker.partition_dir(topic_name).glob("*.txnindex")), "aborts leave .txnindex files"

    got = read(broker.bootstrap, topic_name, [0], "read_committed", expected=len(committed))
    assert got == {0: committed}
    broker.restart()
    got = read(broker.bootstrap, topic_name, [0], "read_committed", expected=len(committed))
    assert got == {0: committed}
    # A crash right after more transactions keeps them apart too (producer state and
    # .txnindex rebuilt from the markers after the last snapshot).
    p = txn_producer(broker.bootstrap, "roll-tx")
    for t in range(2):
        p.begin_transaction()
        v = f"late-{t}-".encode() + pad
        p.produce(topic_name, value=v, partition=0)
        p.flush(10)
        if t == 0:
            p.abort_transaction(15)
        else:
            p.commit_transaction(15)
            committed.append(v)
    broker.kill9()
    got = read(broker.bootstrap, topic_name, [0], "read_committed", expected=len(committed))
    assert got == {0: committed}


def test_a_transactional_batch_for_a_partition_not_added_is_refused(start_broker, topic_name):
    broker = start_broker()
    helpers.create_topic(broker.bootstrap, topic_name)
    with wire.Conn(broker.bootstrap) as c:
        c.send(wire.init_producer_id_request_v0(1, transactional_id="raw-tx"))
        _, error, pid, epoch = wire.parse_init_producer_id_v0(c.recv_frame())
        assert error == wire.ERROR_NONE and pid >= 0
        batch = wire.record_batch([b"sneaky"], producer_id=pid, producer_epoch=epoch, base_sequence=0,
                                  attributes=0x10)
        c.send(wire.produce_request_v3(topic_name, 0, batch, correlation_id=2, transactional_id="raw-tx"))
        _, parts = wire.parse_produce_v3(c.recv_frame())
        (_, _, err, _), = parts
        assert err == ERROR_INVALID_TXN_STATE
    assert helpers.watermarks(broker.bootstrap, topic_name) == (0, 0)


def test_an_idle_transactional_id_expires(start_broker, topic_name):
    """`transactional.id.expiration.ms`: an id with no open transaction and no change for that
    long is forgotten (Kafka's removeExpiredTransactionalIds), also after a restart; an id
    still in use stays; a new producer with the forgotten id starts at a new producer id."""
    broker = start_broker(settings=dict(TXN_SETTINGS, **{
        "transactional.id.expiration.ms": "1500",
        "transaction.remove.expired.transaction.cleanup.interval.ms": "200",
    }))
    helpers.create_topic(broker.bootstrap, topic_name)
    idle = txn_producer(broker.bootstrap, "idle-tx")
    idle.begin_transaction()
    idle.produce(topic_name, value=b"one", partition=0)
    idle.commit_transaction(10)
    first = txn_cli_once(broker, "CompleteCommit", "describe", "idle-tx")
    busy = txn_producer(broker.bootstrap, "busy-tx", **{"transaction.timeout.ms": 60000})
    busy.begin_transaction()
    busy.produce(topic_name, value=b"open", partition=0)
    busy.flush(10)
    deadline = time.monotonic() + 15
    while "idle-tx" in txn_cli(broker, "list") and time.monotonic() < deadline:
        time.sleep(0.2)
    listed = txn_cli(broker, "list")
    assert "idle-tx" not in listed, listed
    assert "busy-tx" in listed and "Ongoing" in listed, listed
    broker.restart()
    assert "idle-tx" not in txn_cli(broker, "list")
    again = txn_producer(broker.bootstrap, "idle-tx")
    again.begin_transaction()
    again.produce(topic_name, value=b"two", partition=0)
    again.commit_transaction(10)
    second = txn_cli_once(broker, "CompleteCommit", "describe", "idle-tx")
    assert second != first and "CompleteCommit" in second, (first, second)
    busy.abort_transaction(10)
    got = read(broker.bootstrap, topic_name, [0], "read_committed", expected=2, timeout_s=10)
    assert got == {0: [b"one", b"two"]}


# EndTxn answers once the decision is durable, as Kafka's coordinator does (not the default).
KAFKA_END_TXN = {"transaction.end.wait.for.markers": "false"}


def test_end_txn_answers_before_the_markers_and_the_id_waits_for_them(start_broker, topic_name):
    """With transaction.end.wait.for.markers=false, as Kafka's TransactionCoordinator does,
    EndTxn answers once PrepareCommit is durable and the markers are written afterwards;
    meanwhile the id's next AddPartitionsToTxn and InitProducerId get CONCURRENT_TRANSACTIONS
    (the client retries). Sent right behind the EndTxn on the same connection, they arrive
    while the markers of a 32-partition transaction are being written; a retry then
    succeeds, and read_committed sees the whole transaction."""
    partitions = list(range(32))
    broker = start_broker(settings=KAFKA_END_TXN)
    helpers.create_topic(broker.bootstrap, topic_name, partitions=len(partitions))
    tid = "early-answer-tx"
    with wire.Conn(broker.bootstrap, timeout_s=15) as c:
        c.send(wire.init_producer_id_request_v0(1, transactional_id=tid))
        _, error, pid, epoch = wire.parse_init_producer_id_v0(c.recv_frame())
        assert error == wire.ERROR_NONE
        c.send(wire.add_partitions_to_txn_request_v1(2, tid, pid, epoch, topic_name, partitions))
        _, added = wire.parse_add_partitions_to_txn_v1(c.recv_frame())
        assert set(added.values()) == {wire.ERROR_NONE}, added
        for p in partitions:
            batch = wire.record_batch([f"v{p}".encode()], producer_id=pid, producer_epoch=epoch,
                                      base_sequence=0, attributes=0x10)
            c.send(wire.produce_request_v3(topic_name, p, batch, correlation_id=10 + p, transactional_id=tid))
            (_, _, err, _), = wire.parse_produce_v3(c.recv_frame())[1]
            assert err == wire.ERROR_NONE
        c.send(wire.end_txn_request_v1(100, tid, pid, epoch, True)
               + wire.add_partitions_to_txn_request_v1(101, tid, pid, epoch, topic_name, [0])
               + wire.init_producer_id_request_v0(102, transactional_id=tid))
        assert wire.parse_end_txn_v1(c.recv_frame()) == (100, wire.ERROR_NONE)
        _, again = wire.parse_add_partitions_to_txn_v1(c.recv_frame())
        assert again == {(topic_name, 0): wire.ERROR_CONCURRENT_TRANSACTIONS}
        assert wire.parse_init_producer_id_v0(c.recv_frame())[:2] == (102, wire.ERROR_CONCURRENT_TRANSACTIONS)
        # Once the markers are written, the next transaction starts.
        deadline = time.monotonic() + 10
        error = None
        while error != wire.ERROR_NONE and time.monotonic() < deadline:
            c.send(wire.add_partitions_to_txn_request_v1(103, tid, pid, epoch, topic_name, [0]))
            error = wire.parse_add_partitions_to_txn_v1(c.recv_frame())[1][(topic_name, 0)]
            time.sleep(0.02)
        assert error == wire.ERROR_NONE
    got = read(broker.bootstrap, topic_name, partitions, "read_committed", expected=len(partitions))
    assert got == {p: [f"v{p}".encode()] for p in partitions}


@pytest.mark.parametrize("settings", [KAFKA_END_TXN, {}], ids=["answer-when-prepared", "default"])
def test_kill9_right_after_commit_returns_loses_nothing(start_broker, topic_name, settings):
    """A broker killed with SIGKILL right after commit_transaction returns (EndTxn answered
    before the markers were written, or before its Complete state was fsynced) still has the
    PrepareCommit decision, completes it at start, and read_committed shows the whole
    transaction, on every partition."""
    partitions = list(range(8))
    broker = start_broker(settings=settings)
    helpers.create_topic(broker.bootstrap, topic_name, partitions=len(partitions))
    p = txn_producer(broker.bootstrap, "kill-after-commit-tx")
    p.begin_transaction()
    for i in range(200):
        p.produce(topic_name, value=f"c-{i}".encode(), partition=i % len(partitions))
    p.commit_transaction(15)
    broker.kill9()
    got = read(broker.bootstrap, topic_name, partitions, "read_committed", expected=200, timeout_s=15)
    assert {p: len(v) for p, v in got.items()} == {p: 25 for p in partitions}
    assert sorted(v for vs in got.values() for v in vs) == sorted(f"c-{i}".encode() for i in range(200))
    assert "CompleteCommit" in txn_cli_once(broker, "CompleteCommit", "describe", "kill-after-commit-tx")


def test_offsets_staged_by_an_open_transaction_are_unstable_to_read_committed(start_broker, topic_name):
    # KIP-447: OffsetFetch with require_stable (librdkafka sends it for read_committed) answers
    # UNSTABLE_OFFSET_COMMIT for a partition whose offset an open transaction staged, so a new
    # member cannot start from the offset the transaction is about to replace; the client
    # retries until the transaction ends.
    broker = start_broker(settings=TXN_SETTINGS)
    group = f"stable-{uuid.uuid4().hex[:8]}"
    helpers.create_topic(broker.bootstrap, topic_name, partitions=1)
    helpers.produce_values(broker.bootstrap, topic_name, [f"in-{i}".encode() for i in range(10)], partition=0)
    tp = TopicPartition(topic_name, 0)

    def committed(isolation):
        check = helpers.consumer(broker.bootstrap, group=group, **{"isolation.level": isolation})
        try:
            return check.committed([tp], timeout=3)[0].offset
        except KafkaException as e:
            return e.args[0].code()
        finally:
            check.close()

    source = helpers.consumer(broker.bootstrap, group=group, **{"isolation.level": "read_committed"})
    p = txn_producer(broker.bootstrap, f"stable-tx-{uuid.uuid4().hex[:6]}")
    try:
        source.assign([tp])
        p.begin_transaction()
        p.send_offsets_to_transaction([TopicPartition(topic_name, 0, 7)], source.consumer_group_metadata(), 15)
        # Open: read_committed cannot get the offset; read_uncommitted sees the last committed
        # one (none yet).
        assert committed("read_committed") == KafkaError._TIMED_OUT
        assert committed("read_uncommitted") == OFFSET_INVALID
        p.commit_transaction(15)
        assert committed("read_committed") == 7

        p.begin_transaction()
        p.send_offsets_to_transaction([TopicPartition(topic_name, 0, 9)], source.consumer_group_metadata(), 15)
        assert committed("read_committed") == KafkaError._TIMED_OUT
        p.abort_transaction(15)
        # Aborted: stable again at the offset the first transaction committed.
        assert committed("read_committed") == 7
    finally:
        source.close()


def test_kafka_python_transactional_producer_commits_and_aborts(start_broker, topic_name):
    # kafka-python 3.x's own transactional producer (its own protocol code): committed and
    # aborted transactions with offsets, read back by a read_committed consumer.
    from kafka import KafkaConsumer, KafkaProducer
    from kafka import TopicPartition as KTP
    from kafka.structs import OffsetAndMetadata

    broker = start_broker(settings=TXN_SETTINGS)
    helpers.create_topic(broker.bootstrap, topic_name, partitions=2)
    group = f"kp-txn-{uuid.uuid4().hex[:8]}"
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id=f"kp-tx-{uuid.uuid4().hex[:6]}")
    try:
        p.init_transactions()
        for i in range(6):
            p.begin_transaction()
            for j in range(5):
                p.send(topic_name, key=f"t{i}".encode(), value=f"v{i}-{j}".encode(), partition=j % 2)
            p.send_offsets_to_transaction({KTP(topic_name, 0): OffsetAndMetadata(i + 1, "", -1)}, group)
            if i % 3 == 2:
                p.abort_transaction()
            else:
                p.commit_transaction()
    finally:
        p.close()
    got = read(broker.bootstrap, topic_name, [0, 1], "read_committed", expected=20)
    want = {part: [f"v{i}-{j}".encode() for i in range(6) if i % 3 != 2 for j in range(5) if j % 2 == part]
            for part in (0, 1)}
    assert got == want
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group, enable_auto_commit=False)
    try:
        # The last committed transaction was the fifth (i=4): offset 5; the aborted sixth's 6
        # never counts.
        assert c.committed(KTP(topic_name, 0)) == 5
    finally:
        c.close()
