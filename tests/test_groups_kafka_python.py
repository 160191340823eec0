"""The same consumer-group flow with kafka-python, a client implemented from scratch in
Python (it opens with ApiVersions v4 and negotiates down)."""

import threading
import time
import uuid

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import CommitFailedError, RebalanceInProgressError

from helpers import create_topic

SESSION_TIMEOUT_MS = 6000


def kp_consumer(bootstrap, group, topic=None):
    """A kafka-python group consumer. With `topic`, it loads the topic's metadata before it
    subscribes, so its first assignment as leader already covers the topic's partitions
    (otherwise kafka-python assigns nothing, then rejoins once metadata arrives: see
    test_leader_rejoins_when_metadata_arrives)."""
    c = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=SESSION_TIMEOUT_MS,
        heartbeat_interval_ms=500,
        request_timeout_ms=15000,
        metadata_max_age_ms=2000,
        client_id=f"kp-{uuid.uuid4().hex[:4]}",
    )
    if topic is not None:
        deadline = time.monotonic() + 10
        while not c.partitions_for_topic(topic) and time.monotonic() < deadline:
            time.sleep(0.05)
    return c


def produce(bootstrap, topic, n, prefix, partitions):
    p = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, request_timeout_ms=15000)
    try:
        futures = [p.send(topic, value=f"{prefix}-{i}".encode(), key=str(i).encode(), partition=i % partitions)
                   for i in range(n)]
        p.flush(timeout=30)
        metas = [f.get(timeout=10) for f in futures]
        assert len(metas) == n
    finally:
        p.close(timeout=5)
    return {f"{prefix}-{i}".encode() for i in range(n)}


class Member(threading.Thread):
    """One kafka-python consumer polling in its own thread, as each would in its own
    process: kafka-python joins a group inside poll(), so one thread polling several members
    in turn would keep the others from rejoining."""

    def __init__(self, bootstrap, group, topic, seen, lock):
        super().__init__(daemon=True)
        self.consumer = kp_consumer(bootstrap, group, topic)
        self.consumer.subscribe([topic])
        self.seen = seen
        self.lock = lock
        self.stop_event = threading.Event()
        self.partitions = []
        self.error = None

    def run(self):
        try:
            while not self.stop_event.is_set():
                batches = self.consumer.poll(timeout_ms=100, max_records=200)
                records = [r for rs in batches.values() for r in rs]
                if records:
                    with self.lock:
                        self.seen.extend((r.partition, r.offset, r.value) for r in records)
                    try:
                        self.consumer.commit()
                    except (CommitFailedError, RebalanceInProgressError):
                        pass  # racing a rebalance; the next batch commits again
                self.partitions = sorted(tp.partition for tp in self.consumer.assignment())
        except Exception as e:  # reported by the test thread
            self.error = e
        finally:
            self.consumer.close()

    def leave(self):
        self.stop_event.set()
        self.join(timeout=20)


def wait_for(condition, timeout_s, members):
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        errors = [m.error for m in members if m.error]
        assert not errors, f"consumer thread failed: {errors[0]!r}"
        time.sleep(0.05)
    return condition()


def test_three_consumers_share_partitions_and_take_over(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=6)
    group = f"kp-{uuid.uuid4().hex[:8]}"
    seen = []
    lock = threading.Lock()
    members = [Member(broker.bootstrap, group, topic_name, seen, lock) for _ in range(3)]
    for m in members:
        m.start()
    try:
        def balanced(ms):
            return lambda: (all(len(m.partitions) == 2 for m in ms)
                            and sorted(p for m in ms for p in m.partitions) == list(range(6)))

        assert wait_for(balanced(members), 40, members), f"assignments: {[m.partitions for m in members]}"

        sent = produce(broker.bootstrap, topic_name, 600, "kp1", 6)
        assert wait_for(lambda: len(seen) >= 600, 30, members), f"read {len(seen)} of 600"
        time.sleep(0.5)  # let any duplicate show up
        with lock:
            assert {v for _, _, v in seen} == sent
            assert len(seen) == 600, f"read {len(seen)} records for 600 messages"

        members[0].leave()
        rest = members[1:]
        assert wait_for(lambda: all(len(m.partitions) == 3 for m in rest)
                        and sorted(p for m in rest for p in m.partitions) == list(range(6)),
                        SESSION_TIMEOUT_MS / 1000 + 10, rest), \
            f"assignments after leave: {[m.partitions for m in rest]}"
        sent2 = produce(broker.bootstrap, topic_name, 300, "kp2", 6)
        assert wait_for(lambda: sent2 <= {v for _, _, v in list(seen)}, 30, rest)
        with lock:
            values = [v for _, _, v in seen]
        assert len(values) == 900, f"{len(values) - 900} messages read twice around the rebalance"
    finally:
        for m in members:
            m.leave()


def commit_through_rebalance(c, timeout_s=20):
    """Commit synchronously; a commit refused because the group is rebalancing is retried
    after a poll lets the consumer rejoin, as an application would."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            c.commit()
            return
        except (CommitFailedError, RebalanceInProgressError):
            if time.monotonic() > deadline:
                raise
            c.poll(timeout_ms=100)


def poll_until(consumers, done, timeout_s, on_record=None):
    deadline = time.monotonic() + timeout_s
    while not done() and time.monotonic() < deadline:
        for c in consumers:
            batches = c.poll(timeout_ms=100, max_records=200)
            for records in batches.values():
                for r in records:
                    on_record(r)
    return done()


@pytest.mark.parametrize("restart", ["graceful", "kill9"])
def test_resume_from_committed_offsets_after_restart(broker, topic_name, restart):
    create_topic(broker.bootstrap, topic_name, partitions=3)
    group = f"kp-{uuid.uuid4().hex[:8]}"
    first = produce(broker.bootstrap, topic_name, 90, "old", 3)
    c = kp_consumer(broker.bootstrap, group, topic_name)
    seen = set()
    try:
        c.subscribe([topic_name])
        poll_until([c], lambda: first <= seen, 30, on_record=lambda r: seen.add(r.value))
        assert seen == first
        commit_through_rebalance(c)
    finally:
        c.close()

    broker.restart() if restart == "graceful" else broker.kill9()

    second = produce(broker.bootstrap, topic_name, 30, "new", 3)
    c = kp_consumer(broker.bootstrap, group, topic_name)
    seen = set()
    try:
        assert [c.committed(TopicPartition(topic_name, p)) for p in range(3)] == [30, 30, 30]
        c.subscribe([topic_name])
        poll_until([c], lambda: second <= seen, 30, on_record=lambda r: seen.add(r.value))
        assert seen == second, f"{len(seen & first)} old re-read, {len(second - seen)} new missing"
    finally:
        c.close()


@pytest.mark.xfail(strict=False, reason="kafka-python 3.0.12 race, not the broker: a SyncGroup answer that "
                                        "lands with a metadata answer can leave the consumer stalled")
def test_leader_rejoins_when_metadata_arrives(broker, topic_name):
    """kafka-python subscribing before it knows the topic: as leader it first assigns nothing,
    then rejoins when the metadata arrives (generation 2) and must then get its partitions.

    Intermittent (about 1 run in 5): recorded through a logging TCP proxy, the broker answers
    JoinGroup v7 and SyncGroup v5 of generation 2 at once, in order, with the assignment (the
    same 58 bytes as in passing runs), but when a Metadata answer arrives on the other
    connection in the same millisecond, kafka-python sends nothing more on the coordinator
    connection (no OffsetFetch, no Heartbeat) until the broker expires the member."""
    create_topic(broker.bootstrap, topic_name, partitions=3)
    sent = produce(broker.bootstrap, topic_name, 30, "late", 3)
    c = kp_consumer(broker.bootstrap, f"kp-{uuid.uuid4().hex[:8]}")
    seen = set()
    try:
        c.subscribe([topic_name])
        poll_until([c], lambda: sent <= seen, 30, on_record=lambda r: seen.add(r.value))
        assert seen == sent, f"read {len(seen)} of 30; assignment {sorted(tp.partition for tp in c.assignment())}"
    finally:
        c.close()
