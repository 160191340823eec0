"""Transactions (KIP-98, exactly-once) in cluster mode, against three real `strom serve`
processes and confluent-kafka, checked against what Apache Kafka does.

In a Kafka cluster the transaction coordinator of a transactional id is the leader of
partition `abs(javaHashCode(transactional.id)) % transaction.state.log.num.partitions` of the
replicated internal topic `__transaction_state`; a group's coordinator is the leader of its
`__consumer_offsets` partition, found the same way. A transaction's partitions may be led by
any node: the coordinator sends the commit or abort markers to their leaders, and offsets
committed in a transaction (TxnOffsetCommit) reach the group's coordinator wherever it is.
When the coordinator dies, the new leader of its `__transaction_state` partition takes over
the transactions it had, completing those it had prepared.

The tests check what a user of transactions relies on:

- a read_committed consumer sees exactly the committed transactions, every one of their
  messages once, in send order per partition, and nothing of an aborted or fenced one, on
  partitions led by every node; a read_uncommitted one sees the aborted records too, with the
  offset gaps of the control records (one marker per partition per transaction);
- a consume-transform-produce copy with `send_offsets_to_transaction` is exactly-once even
  when the group's coordinator and the transaction's coordinator are different nodes, and
  the group's committed offsets are the input's end;
- a transactional producer keeps committing through kill -9 of its coordinator, and every
  transaction is all-or-nothing across partitions;
- a second producer with the same transactional id aborts the first one's open transaction
  on every partition (every node's leader) and fences it.

Each test ends with a history check in the spirit of `test_cluster.check_history`: per
partition, offsets increase, no value is stored twice, and values keep their send order.
"""

import struct
import threading
import time
import uuid

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_INVALID,
    ConsumerGroupTopicPartitions,
    IsolationLevel,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import OffsetSpec

import helpers
import wire
from test_cluster import create_rf3, partition_info, metadata, running_cluster, wait_isr

pytestmark = pytest.mark.timeout(150)

TXN_TOPIC = "__transaction_state"
OFFSETS_TOPIC = "__consumer_offsets"
KEY_TYPE_GROUP = 0
KEY_TYPE_TRANSACTION = 1
API_FIND_COORDINATOR = 10

# Timed-out transactions are aborted within half a second instead of Kafka's 10 s; three
# transaction log partitions, like the offsets topic in test_cluster (fewer fetch loops on a
# busy machine), replicated on every node. The tests read the real partition count and
# leaders from Metadata.
TXN_CLUSTER_SETTINGS = {
    "transaction.abort.timed.out.transaction.cleanup.interval.ms": "500",
    "transaction.state.log.num.partitions": "3",
    "transaction.state.log.replication.factor": "3",
}


@pytest.fixture
def cluster(request, tmp_path):
    yield from running_cluster(request, tmp_path, extra=TXN_CLUSTER_SETTINGS)


# ---------------------------------------------------------------------------------------
# Where a key's coordinator is


def java_hash(s):
    """Java's String.hashCode: over UTF-16 code units, wrapping as a signed 32-bit int."""
    h = 0
    data = s.encode("utf-16-be")
    for i in range(0, len(data), 2):
        h = (31 * h + int.from_bytes(data[i:i + 2], "big")) & 0xFFFFFFFF
    return h - (1 << 32) if h >= (1 << 31) else h


def partition_for(key, partitions):
    """Kafka's `Utils.abs(key.hashCode) % partitions` (abs(Integer.MIN_VALUE) is 0)."""
    h = java_hash(key)
    return (0 if h == -(1 << 31) else abs(h)) % partitions


assert java_hash("hello") == 99162322 and java_hash("polygenelubricants") == -(1 << 31)


def find_coordinator(bootstrap, key, key_type):
    """FindCoordinator v1 sent to one node: (error_code, node_id)."""
    body = wire.string16(key) + struct.pack(">b", key_type)
    with wire.Conn(bootstrap, timeout_s=10) as conn:
        conn.send(wire.frame(wire.request_header_v1(API_FIND_COORDINATOR, 1, 77) + body))
        r = wire.Reader(conn.recv_frame())
    assert r.take(">i") == 77
    _throttle_ms, error = r.take(">ih")
    r.string16()  # error_message
    node_id = r.take(">i")
    return error, node_id


def coordinator(cluster, key, key_type, timeout_s=30):
    """The node every live node names as `key`'s coordinator; retries while they answer
    COORDINATOR_NOT_AVAILABLE / LOAD_IN_PROGRESS (the internal topic being made or loaded)
    or disagree (a leadership change in flight)."""
    deadline = time.monotonic() + timeout_s
    answers = None
    while time.monotonic() < deadline:
        answers = {}
        for i, n in enumerate(cluster.nodes):
            if n.alive():
                try:
                    answers[i + 1] = find_coordinator(n.bootstrap, key, key_type)
                except OSError as e:
                    answers[i + 1] = str(e)
        values = set(answers.values())
        if len(values) == 1:
            (answer,) = values
            if isinstance(answer, tuple) and answer[0] == 0 and answer[1] > 0:
                return answer[1]
        time.sleep(0.2)
    raise AssertionError(f"the nodes never agreed on the coordinator of {key!r} "
                         f"(node: (error, coordinator)): {answers}")


def internal_partitions(cluster, topic, timeout_s=30, exclude=()):
    """{partition: leader} of an internal topic once every partition has a live leader."""
    deadline = time.monotonic() + timeout_s
    seen = None
    while time.monotonic() < deadline:
        try:
            t = metadata(cluster.bootstrap(exclude=exclude)).topics.get(topic)
        except KafkaException as e:
            t, seen = None, str(e)
        if t is not None and t.error is None and t.partitions:
            seen = {p: i.leader for p, i in t.partitions.items()}
            if all(leader > 0 and leader not in exclude for leader in seen.values()):
                return seen
        time.sleep(0.2)
    raise AssertionError(f"{topic} has no live leader for every partition (Metadata: {seen})")


def txn_coordinator(cluster, tid, exclude=()):
    """The leader of the transactional id's `__transaction_state` partition, checked against
    what FindCoordinator says on every live node. Returns (node_id, partition)."""
    leaders = internal_partitions(cluster, TXN_TOPIC, exclude=exclude)
    part = partition_for(tid, len(leaders))
    deadline = time.monotonic() + 20
    while True:
        found = coordinator(cluster, tid, KEY_TYPE_TRANSACTION)
        leader = internal_partitions(cluster, TXN_TOPIC, exclude=exclude)[part]
        if found == leader or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert found == leader, (f"FindCoordinator names node {found} for {tid!r}, but its partition "
                             f"{TXN_TOPIC}-{part} is led by node {leader}")
    return leader, part


# ---------------------------------------------------------------------------------------
# Producing and reading


def txn_producer(bootstrap, tid, init_timeout_s=30, **conf):
    """A transactional producer after init_transactions. The first one in a cluster may wait
    while `__transaction_state` is made (COORDINATOR_NOT_AVAILABLE, retried by the client)."""
    base = {
        "bootstrap.servers": bootstrap,
        "transactional.id": tid,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "transaction.timeout.ms": 10000,
        "message.timeout.ms": 10000,
        **helpers.FAST_CLIENT,
    }
    base.update(conf)
    p = Producer(base)
    p.init_transactions(init_timeout_s)
    return p


def log_ends(bootstrap, topic, partitions, isolation):
    """{partition: latest offset} by ListOffsets: the high watermark (read_uncommitted) or the
    last stable offset (read_committed)."""
    level = IsolationLevel.READ_COMMITTED if isolation == "read_committed" else IsolationLevel.READ_UNCOMMITTED
    futures = helpers.admin(bootstrap).list_offsets(
        {TopicPartition(topic, p): OffsetSpec.latest() for p in partitions},
        isolation_level=level, request_timeout=10)
    return {tp.partition: f.result(timeout=15).offset for tp, f in futures.items()}


def wait_stable(bootstrap, topic, partitions, timeout_s=30):
    """Waits until no transaction is open on any partition (last stable offset = high
    watermark everywhere; Kafka writes the markers after EndTxn is answered) and returns the
    high watermarks. Twice alike in a row: a marker on the leader but not yet on the ISR
    ends the transaction (the LSO is the high watermark) before the high watermark covers it."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            high = log_ends(bootstrap, topic, partitions, "read_uncommitted")
            stable = log_ends(bootstrap, topic, partitions, "read_committed")
            if stable == high and last == (stable, high):
                return high
            last = (stable, high)
        except KafkaException as e:
            last = str(e)
        time.sleep(0.2)
    raise AssertionError(f"{topic}: last stable offsets never reached the high watermarks "
                         f"(stable, high) = {last}")


def read_to(bootstrap, topic, ends, isolation, timeout_s=60):
    """Reads each partition of `ends` from the beginning by assignment until the consumer is
    at that partition's end offset. Returns {partition: [(offset, value)]} in offset order."""
    c = helpers.consumer(bootstrap, **{"isolation.level": isolation, "enable.partition.eof": True})
    out = {p: [] for p in ends}
    done = {p for p, end in ends.items() if end == 0}
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        deadline = time.monotonic() + timeout_s
        while len(done) < len(ends) and time.monotonic() < deadline:
            for m in c.consume(num_messages=500, timeout=0.5):
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        if m.offset() >= ends[m.partition()]:
                            done.add(m.partition())
                        continue
                    raise AssertionError(f"consumer error: {m.error()}")
                out[m.partition()].append((m.offset(), m.value()))
    finally:
        c.close()
    assert len(done) == len(ends), (
        f"{isolation} read of {topic} reached the end of partitions {sorted(done)} only within "
        f"{timeout_s}s (ends {ends}, read {({p: len(v) for p, v in out.items()})})")
    return out


def check_partition_history(read, expected, what):
    """`read` is {partition: [(offset, value)]}; `expected` {partition: [value]} in send
    order. Every expected value is there exactly once, nothing else is, per partition in send
    order at increasing offsets."""
    for p, msgs in read.items():
        offsets = [o for o, _ in msgs]
        assert offsets == sorted(set(offsets)), f"{what}: partition {p} offsets repeat or go back"
        values = [v for _, v in msgs]
        dups = sorted({v for v in values if values.count(v) > 1})
        assert not dups, f"{what}: partition {p} holds values twice: {dups[:5]}"
        want = expected.get(p, [])
        missing = [v for v in want if v not in set(values)]
        extra = [v for v in values if v not in set(want)]
        assert not missing, f"{what}: partition {p} misses {len(missing)} values, first {missing[:5]}"
        assert not extra, f"{what}: partition {p} holds {len(extra)} values it should not, first {extra[:5]}"
        assert values == want, f"{what}: partition {p} values out of send order"


def spread_topic(cluster, topic, partitions):
    """An RF=3 topic whose partitions are led by more than one node; returns {partition: leader}."""
    create_rf3(cluster.node(1).bootstrap, topic, partitions)
    infos = wait_isr(cluster, topic, partitions, 3)
    leaders = {p: info.leader for p, info in enumerate(infos)}
    assert len(set(leaders.values())) >= 2, f"all partitions of {topic} led by one node: {leaders}"
    return leaders


# ---------------------------------------------------------------------------------------
# 1. Commits and aborts over partitions led by every node


def test_transactions_span_partitions_led_by_every_node(cluster):
    """Six transactions, each writing three keyed messages to every one of six partitions
    (led by all three nodes), alternately committed and aborted. read_committed sees exactly
    the committed ones, per partition in send order at the offsets they were written at;
    read_uncommitted sees the aborted ones too, and each transaction left one control record
    per partition (an offset gap). The coordinator every node names is the leader of the id's
    `__transaction_state` partition, which is replicated on all three nodes."""
    started = time.monotonic()
    topic = "txn-spread-" + uuid.uuid4().hex[:6]
    leaders = spread_topic(cluster, topic, 6)
    tid = "spread-" + uuid.uuid4().hex[:6]
    p = txn_producer(cluster.bootstrap(), tid)
    txns, per_part = 6, 3
    committed = {part: [] for part in range(6)}
    everything = {part: [] for part in range(6)}
    for t in range(txns):
        p.begin_transaction()
        for j in range(per_part):
            for part in range(6):
                v = f"t{t}-p{part}-{j}".encode()
                p.produce(topic, key=f"k{part}".encode(), value=v, partition=part)
                everything[part].append(v)
                if t % 2 == 0:
                    committed[part].append(v)
        # An abort drops what is still unsent: flush, so the aborted records are in the log.
        assert p.flush(15) == 0
        if t % 2 == 0:
            p.commit_transaction(30)
        else:
            p.abort_transaction(30)

    bootstrap = cluster.bootstrap()
    ends = wait_stable(bootstrap, topic, range(6))
    assert ends == {part: txns * (per_part + 1) for part in range(6)}, (
        f"expected {per_part} records and one marker per transaction in every partition: {ends}")

    got = read_to(bootstrap, topic, ends, "read_committed")
    check_partition_history(got, committed, "read_committed")
    # The committed records are at the offsets they were written at: transaction t's j-th
    # record of a partition is at t * (records + marker) + j.
    for part in range(6):
        assert [o for o, _ in got[part]] == [t * (per_part + 1) + j for t in range(0, txns, 2)
                                             for j in range(per_part)], f"partition {part} offsets"

    got = read_to(bootstrap, topic, ends, "read_uncommitted")
    check_partition_history(got, everything, "read_uncommitted")
    for part in range(6):
        offsets = [o for o, _ in got[part]]
        assert offsets == [t * (per_part + 1) + j for t in range(txns) for j in range(per_part)], (
            f"partition {part}: the control records' offsets are not where the transactions ended: {offsets}")

    # Where the transactions were coordinated: one node, the leader of the id's partition of a
    # replicated `__transaction_state`, named alike by every node.
    coord, part = txn_coordinator(cluster, tid)
    info = partition_info(bootstrap, TXN_TOPIC, part)
    assert sorted(info.replicas) == [1, 2, 3], f"{TXN_TOPIC}-{part} replicas {info.replicas}"
    others = {pt for pt, leader in leaders.items() if leader != coord}
    assert others, "no partition led by another node than the coordinator"
    print(f"\ncoordinator node {coord} ({TXN_TOPIC}-{part}); partition leaders {leaders}; "
          f"{time.monotonic() - started:.1f}s")


# ---------------------------------------------------------------------------------------
# 2. Consume-transform-produce with the group's coordinator on another node


def pick_ids(cluster, prefix_group, prefix_tid):
    """A group id and a transactional id whose coordinators are different nodes, chosen by
    hashing against the leaders of the two internal topics' partitions. The topics are made by
    a first FindCoordinator for each kind (COORDINATOR_NOT_AVAILABLE until they exist)."""
    coordinator(cluster, "warm-up-group", KEY_TYPE_GROUP)
    coordinator(cluster, "warm-up-txn", KEY_TYPE_TRANSACTION)
    offsets = internal_partitions(cluster, OFFSETS_TOPIC)
    txns = internal_partitions(cluster, TXN_TOPIC)
    group = f"{prefix_group}-{uuid.uuid4().hex[:6]}"
    group_node = offsets[partition_for(group, len(offsets))]
    for i in range(1000):
        tid = f"{prefix_tid}-{i}"
        if txns[partition_for(tid, len(txns))] != group_node:
            return group, tid
    raise AssertionError(f"every {TXN_TOPIC} partition is led by node {group_node}: {txns}")


def copy_batches(consumer, producer, src, dst, copied, stop, abort_batch=None, timeout_s=60):
    """The exactly-once loop: each batch read from `src` is written to the same partition of
    `dst` in a transaction that also commits the consumer's next offsets to its group.
    `copied` ({partition: next offset}) is advanced by committed batches; the loop ends when
    `stop(copied)` holds. Batch number `abort_batch` is aborted and read again."""
    batches = 0
    aborted = []
    deadline = time.monotonic() + timeout_s
    while not stop(copied):
        assert time.monotonic() < deadline, f"the copy stalled at {copied}"
        msgs = consumer.consume(num_messages=25, timeout=0.5)
        for m in msgs:
            assert m.error() is None, f"consumer error: {m.error()}"
        if not msgs:
            continue
        producer.begin_transaction()
        next_offsets = {}
        first = {}
        for m in msgs:
            producer.produce(dst, key=m.key(), value=m.value(), partition=m.partition())
            next_offsets[m.partition()] = m.offset() + 1
            first.setdefault(m.partition(), m.offset())
        producer.send_offsets_to_transaction(
            [TopicPartition(src, p, o) for p, o in next_offsets.items()],
            consumer.consumer_group_metadata(), 30)
        batches += 1
        if batches == abort_batch:
            # Its output must never be visible and its offsets never committed: the next
            # transaction copies the same records again.
            assert producer.flush(15) == 0
            producer.abort_transaction(30)
            aborted.extend(m.value() for m in msgs)
            stored = consumer.committed([TopicPartition(src, p) for p in next_offsets], timeout=15)
            assert {tp.partition: tp.offset for tp in stored} == {
                p: copied.get(p, OFFSET_INVALID) for p in next_offsets}, "an aborted offset commit is visible"
            for p, o in first.items():
                consumer.seek(TopicPartition(src, p, o))
            continue
        producer.commit_transaction(30)
        for p, o in next_offsets.items():
            copied[p] = max(copied.get(p, 0), o)
    return aborted


def test_exactly_once_copy_with_offsets_committed_to_a_group_on_another_node(cluster):
    """A consume-transform-produce loop (group G, read_committed, no auto-commit) copies 300
    records with `send_offsets_to_transaction`, G's coordinator and the transaction's being
    different nodes. Halfway the consumer leaves and a new member of G continues from the
    offsets the transactions committed. The output (read_committed) holds every input record
    exactly once, per partition in input order, none of an aborted batch's copies; G's
    committed offsets are the input's end."""
    started = time.monotonic()
    src = "eos-in-" + uuid.uuid4().hex[:6]
    dst = "eos-out-" + uuid.uuid4().hex[:6]
    spread_topic(cluster, src, 3)
    out_leaders = spread_topic(cluster, dst, 3)
    bootstrap = cluster.bootstrap()
    group, tid = pick_ids(cluster, "eos-group", "eos-tx")
    group_node = coordinator(cluster, group, KEY_TYPE_GROUP)
    txn_node, _ = txn_coordinator(cluster, tid)
    assert group_node != txn_node, (
        f"group {group} and transactional id {tid} both coordinated by node {group_node}")

    n = 300
    inputs = {p: [] for p in range(3)}
    values = [f"in-{i:04d}".encode() for i in range(n)]
    plain = helpers.producer(bootstrap, acks="all", **{"enable.idempotence": True})
    for i, v in enumerate(values):
        plain.produce(src, key=f"k{i}".encode(), value=v, partition=i % 3)
        inputs[i % 3].append(v)
    assert plain.flush(30) == 0
    input_ends = log_ends(bootstrap, src, range(3), "read_uncommitted")
    assert input_ends == {p: len(inputs[p]) for p in range(3)}

    member = {"session.timeout.ms": 6000, "isolation.level": "read_committed", "enable.auto.commit": False}
    producer = txn_producer(bootstrap, tid)
    copied = {}
    c1 = helpers.consumer(bootstrap, group=group, **member)
    try:
        c1.subscribe([src])
        aborted = copy_batches(c1, producer, src, dst, copied, abort_batch=3,
                               stop=lambda done: sum(done.values()) >= n // 2)
    finally:
        c1.close()  # leaves the group without committing anything itself
    assert aborted, "no batch was aborted"
    half = dict(copied)

    # A new member of G starts where the transactions committed G's offsets. Had the commits
    # not reached G's coordinator, it would start over from the beginning (auto.offset.reset)
    # and copy the first half twice.
    c2 = helpers.consumer(bootstrap, group=group, **member)
    try:
        c2.subscribe([src])
        copy_batches(c2, producer, src, dst, copied,
                     stop=lambda done: all(done.get(p, 0) >= input_ends[p] for p in range(3)))
    finally:
        c2.close()

    ends = wait_stable(bootstrap, dst, range(3))
    got = read_to(bootstrap, dst, ends, "read_committed")
    check_partition_history(got, inputs, "the copy (read_committed)")
    # The aborted batch's copies were written, and only read_uncommitted shows them.
    uncommitted = read_to(bootstrap, dst, ends, "read_uncommitted")
    dirty = [v for msgs in uncommitted.values() for _, v in msgs]
    assert len(dirty) == n + len(aborted) and all(dirty.count(v) == 2 for v in aborted), (
        "the aborted batch's copies are not in the log once each")

    # G's offsets, once stable (Kafka writes the offsets topic's commit marker after EndTxn
    # is answered; until then OffsetFetch with require_stable answers UNSTABLE_OFFSET_COMMIT).
    deadline = time.monotonic() + 20
    while True:
        try:
            stored = helpers.admin(bootstrap).list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(group)], require_stable=True)[group].result(timeout=15)
            committed = {tp.partition: tp.offset for tp in stored.topic_partitions
                         if tp.topic == src and tp.error is None}
        except KafkaException as e:
            committed = str(e)
        if committed == input_ends or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert committed == input_ends, f"group {group} committed {committed}, input ends {input_ends}"
    # What a read_committed member is given (OffsetFetch with require_stable) is the same.
    check = helpers.consumer(bootstrap, group=group, **{"isolation.level": "read_committed"})
    try:
        tps = check.committed([TopicPartition(src, p) for p in range(3)], timeout=15)
    finally:
        check.close()
    assert {tp.partition: tp.offset for tp in tps} == input_ends
    print(f"\ngroup {group} on node {group_node}, {tid} on node {txn_node}, output leaders "
          f"{out_leaders}; first member copied {half}; {time.monotonic() - started:.1f}s")


# ---------------------------------------------------------------------------------------
# 3. kill -9 of the transaction coordinator


class TxnLoop(threading.Thread):
    """Runs transactions one after the other, each writing `size` values f"{txn}-{i}" over the
    topic's partitions, and handles errors as confluent-kafka documents: a retriable commit
    is retried; an abortable error aborts the transaction (the batch is sent again as a new
    transaction); a fatal one replaces the producer by a new one with the same
    transactional.id, which fences the old one. Records each transaction's outcome:
    "committed" (commit_transaction returned), "aborted" (abort_transaction returned) or
    "doubt" (the producer failed fatally in the middle).

    When `hold` is set, the next transaction stops after its records are written (flushed:
    its partitions are in the coordinator's state and its records in their logs) and sets
    `holding`; it goes on to its commit when `release` is set."""

    def __init__(self, bootstrap, topic, tid, partitions, size=6):
        super().__init__(daemon=True)
        self.bootstrap, self.topic, self.tid = bootstrap, topic, tid
        self.partitions, self.size = partitions, size
        self.sent = {}  # txn -> [(partition, value)]
        self.outcome = {}  # txn -> "committed" | "aborted" | "doubt"
        self.committed_at = {}  # txn -> monotonic time commit_transaction returned
        self.errors = []  # (monotonic time, txn, what, error)
        self.producers = 0
        self.failure = None
        self.stop_flag = threading.Event()
        self.hold, self.holding, self.release = threading.Event(), threading.Event(), threading.Event()
        self.held_txn = None

    def conf(self):
        return {"transaction.timeout.ms": 15000, "message.timeout.ms": 15000}

    def new_producer(self, deadline):
        while True:
            try:
                p = Producer({
                    "bootstrap.servers": self.bootstrap, "transactional.id": self.tid,
                    "enable.idempotence": True, "acks": "all", "linger.ms": 2,
                    **helpers.FAST_CLIENT, **self.conf(),
                })
                self.producers += 1
                while True:
                    try:
                        p.init_transactions(15)
                        return p
                    except KafkaException as e:
                        err = e.args[0]
                        self.errors.append((time.monotonic(), None, "init", err))
                        if not err.retriable() or time.monotonic() > deadline:
                            raise
            except KafkaException as e:
                if time.monotonic() > deadline:
                    raise AssertionError(f"no producer could init_transactions: {e}") from e
                time.sleep(0.2)

    def retrying(self, call, txn, what, deadline):
        while True:
            try:
                return call(15)
            except KafkaException as e:
                err = e.args[0]
                self.errors.append((time.monotonic(), txn, what, err))
                if not err.retriable() or err.txn_requires_abort() or time.monotonic() > deadline:
                    raise

    def run(self):
        try:
            self._run()
        except BaseException as e:  # reported by the test
            self.failure = e

    def _run(self):
        p = self.new_producer(time.monotonic() + 60)
        txn = 0
        while not self.stop_flag.is_set():
            txn += 1
            batch = [(i % self.partitions, f"{txn}-{i}".encode()) for i in range(self.size)]
            self.sent[txn] = batch
            deadline = time.monotonic() + 60
            try:
                p.begin_transaction()
                for part, v in batch:
                    p.produce(self.topic, value=v, partition=part)
                if self.hold.is_set() and self.held_txn is None:
                    if p.flush(15) != 0:
                        raise AssertionError(f"transaction {txn}'s records were not delivered")
                    self.held_txn = txn
                    self.holding.set()
                    self.release.wait(30)
                self.retrying(p.commit_transaction, txn, "commit", deadline)
                self.outcome[txn] = "committed"
                self.committed_at[txn] = time.monotonic()
                continue
            except KafkaException as e:
                err = e.args[0]
                self.errors.append((time.monotonic(), txn, "transaction", err))
                if err.txn_requires_abort() and not err.fatal():
                    try:
                        self.retrying(p.abort_transaction, txn, "abort", deadline)
                        self.outcome[txn] = "aborted"
                        continue
                    except KafkaException as e2:
                        self.errors.append((time.monotonic(), txn, "abort", e2.args[0]))
            # Fatal (or an abort that failed): whether this transaction ended committed or
            # aborted is for the coordinator to decide; a new producer with the same id fences
            # the old one and waits until the transaction is complete.
            self.outcome[txn] = "doubt"
            p = self.new_producer(time.monotonic() + 60)


def test_a_transaction_survives_its_coordinators_kill_9(cluster):
    """A transactional producer commits transactions over three partitions in a loop; the
    node leading its `__transaction_state` partition is killed with SIGKILL while one
    transaction is open (its records written to partitions of every node, not yet
    committed). Another node becomes the coordinator within seconds; it knows the open
    transaction (the state is replicated), so its commit succeeds, and the producer keeps
    committing (errors handled as documented). After the node is back, read_committed shows
    every message of every transaction whose commit returned, once; nothing of an aborted
    one; and any transaction in doubt (a producer that failed fatally) entirely or not at
    all."""
    started = time.monotonic()
    topic = "txn-kill-" + uuid.uuid4().hex[:6]
    leaders = spread_topic(cluster, topic, 3)
    tid = "survivor-" + uuid.uuid4().hex[:6]
    loop = TxnLoop(cluster.bootstrap(), topic, tid, 3)
    loop.start()
    try:
        deadline = time.monotonic() + 40
        while (len(loop.committed_at) < 5 and time.monotonic() < deadline and loop.failure is None
               and not (len(loop.outcome) >= 15 and not loop.committed_at)):
            time.sleep(0.05)
        assert len(loop.committed_at) >= 5, (
            f"only {len(loop.committed_at)} of {len(loop.outcome)} transactions committed before the "
            f"kill; failure {loop.failure!r}, errors {[(w, str(e)) for _, _, w, e in loop.errors[:4]]}")
        victim, part = txn_coordinator(cluster, tid)
        loop.hold.set()
        assert loop.holding.wait(30), (
            f"no transaction reached its commit; failure {loop.failure!r}, errors {loop.errors[-4:]}")
        before = len(loop.committed_at)
        killed_at = time.monotonic()
        cluster.node(victim).kill9_only()
        loop.release.set()

        internal_partitions(cluster, TXN_TOPIC, exclude=(victim,))
        successor, _ = txn_coordinator(cluster, tid, exclude=(victim,))
        elected_s = time.monotonic() - killed_at
        assert successor != victim
        # The producer goes on committing with the new coordinator.
        deadline = killed_at + 60
        while (sum(1 for t in loop.committed_at.values() if t > killed_at) < 5
               and time.monotonic() < deadline and loop.failure is None):
            time.sleep(0.05)
        after = sorted(t for t in loop.committed_at.values() if t > killed_at)
        assert len(after) >= 5, (
            f"{len(after)} commits in the 60 s after the kill; failure {loop.failure!r}, "
            f"errors {[(round(t - killed_at, 2), n, w, str(e)) for t, n, w, e in loop.errors[-8:]]}")
    finally:
        loop.stop_flag.set()
        loop.release.set()
        loop.join(90)
    assert not loop.is_alive(), "the transaction loop did not stop"
    assert loop.failure is None, f"transaction loop failed: {loop.failure!r}"

    cluster.node(victim).start()
    cluster.wait_brokers(3)
    wait_isr(cluster, topic, 3, 3, timeout_s=30)
    bootstrap = cluster.bootstrap()
    ends = wait_stable(bootstrap, topic, range(3))
    got = read_to(bootstrap, topic, ends, "read_committed")

    outcomes = dict(loop.outcome)
    seen = {}  # txn -> [(partition, value)]
    for p, msgs in got.items():
        for _, v in msgs:
            seen.setdefault(int(v.split(b"-")[0]), []).append((p, v))
    committed = [t for t, o in outcomes.items() if o == "committed"]
    aborted = [t for t, o in outcomes.items() if o == "aborted"]
    doubt = [t for t, o in outcomes.items() if o == "doubt"]
    held = loop.held_txn
    assert outcomes.get(held) == "committed", (
        f"transaction {held}, open when its coordinator was killed, ended {outcomes.get(held)!r}, "
        f"not committed; errors {[(n, w, str(e)) for _, n, w, e in loop.errors if n == held][:4]}")
    unknown = sorted(set(seen) - set(outcomes))
    assert not unknown, f"transactions read that were never run: {unknown}"
    lost = [t for t in committed if t not in seen]
    assert not lost, f"committed transactions missing: {lost[:10]}"
    visible_aborted = [t for t in aborted if t in seen]
    assert not visible_aborted, f"aborted transactions visible: {visible_aborted}"
    # Atomicity across partitions (and nodes): a visible transaction is there whole.
    partial = {t: (len(seen[t]), len(loop.sent[t])) for t in seen if sorted(seen[t]) != sorted(loop.sent[t])}
    assert not partial, f"transactions visible in part (seen, sent): {partial}"
    # History: once each, per partition in send order.
    expected = {p: [v for t in sorted(seen) for part, v in loop.sent[t] if part == p] for p in range(3)}
    check_partition_history(got, expected, "read_committed after the kill")

    errors = [(round(t - killed_at, 2), n, w, e.name()) for t, n, w, e in loop.errors]
    print(f"\ncoordinator node {victim} ({TXN_TOPIC}-{part}) killed after {before} commits, with "
          f"transaction {held} open; node "
          f"{successor} named coordinator {elected_s:.2f}s later; first commit after the kill "
          f"{after[0] - killed_at:.2f}s after it; {len(committed)} committed, {len(aborted)} aborted, "
          f"{len(doubt)} in doubt ({[t for t in doubt if t in seen]} visible), {loop.producers} producers; "
          f"partition leaders {leaders}; errors {errors[:10]}; {time.monotonic() - started:.1f}s")


# ---------------------------------------------------------------------------------------
# 4. A zombie is fenced on every node


def test_a_zombie_producer_is_fenced_across_nodes(cluster):
    """Producer A opens a transaction over partitions led by all three nodes; its open
    transaction holds every partition's last stable offset. Producer B with the same
    transactional.id calls init_transactions: that aborts A's transaction (a marker on every
    partition, wherever it is led) before it returns, so read_committed moves past A's
    records everywhere. A's commit then fails with a fatal fencing error, and read_committed
    shows all of B's committed records and none of A's."""
    started = time.monotonic()
    topic = "txn-zombie-" + uuid.uuid4().hex[:6]
    leaders = spread_topic(cluster, topic, 3)
    tid = "zombie-" + uuid.uuid4().hex[:6]
    bootstrap = cluster.bootstrap()
    a = txn_producer(bootstrap, tid)
    a.begin_transaction()
    mine = {p: [f"a-p{p}-{j}".encode() for j in range(2)] for p in range(3)}
    delivery = helpers.Delivery()
    for p in range(3):
        for v in mine[p]:
            a.produce(topic, value=v, partition=p, on_delivery=delivery)
    assert a.flush(15) == 0
    assert not delivery.errors, f"A's records were refused: {delivery.errors[:3]}"
    assert log_ends(bootstrap, topic, range(3), "read_uncommitted") == {p: 2 for p in range(3)}
    assert log_ends(bootstrap, topic, range(3), "read_committed") == {p: 0 for p in range(3)}, (
        "an open transaction must hold the last stable offset at its first record")

    b = txn_producer(bootstrap, tid)
    # A's transaction is aborted on every partition by the time init_transactions returns.
    assert log_ends(bootstrap, topic, range(3), "read_committed") == {p: 3 for p in range(3)}, (
        "A's records and its abort marker should be below the last stable offset everywhere")
    fresh = {p: [f"b-p{p}-{j}".encode() for j in range(2)] for p in range(3)}
    b.begin_transaction()
    for p in range(3):
        for v in fresh[p]:
            b.produce(topic, value=v, partition=p)
    b.commit_transaction(30)

    with pytest.raises(KafkaException) as info:
        a.commit_transaction(15)
    err = info.value.args[0]
    assert err.fatal(), f"A's commit failed, but not fatally: {err}"
    assert err.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH), err

    ends = wait_stable(bootstrap, topic, range(3))
    assert ends == {p: 6 for p in range(3)}, f"A's 2 records + marker, B's 2 records + marker: {ends}"
    got = read_to(bootstrap, topic, ends, "read_committed")
    check_partition_history(got, fresh, "read_committed")
    assert all([o for o, _ in got[p]] == [3, 4] for p in range(3)), got
    got = read_to(bootstrap, topic, ends, "read_uncommitted")
    check_partition_history(got, {p: mine[p] + fresh[p] for p in range(3)}, "read_uncommitted")
    coord, _ = txn_coordinator(cluster, tid)
    print(f"\ncoordinator node {coord}; partition leaders {leaders}; {time.monotonic() - started:.1f}s")
