"""Consumer groups with confluent-kafka (librdkafka): partitions shared, rebalances on leave,
committed offsets that survive restarts and kill -9."""

import time
import uuid

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from helpers import Delivery, consumer, create_topic, producer

SESSION_TIMEOUT_MS = 6000
RETRIABLE_COMMIT_ERRORS = ("REBALANCE_IN_PROGRESS", "ILLEGAL_GENERATION", "UNKNOWN_MEMBER_ID", "_NO_OFFSET")


def group_consumer(bootstrap, group, **conf):
    base = {
        "session.timeout.ms": SESSION_TIMEOUT_MS,
        "heartbeat.interval.ms": 500,
        "max.poll.interval.ms": 30000,
        "topic.metadata.refresh.interval.ms": 2000,
    }
    base.update(conf)
    return consumer(bootstrap, group=group, **base)


def produce_keyed(bootstrap, topic, n, prefix, partitions):
    values = [f"{prefix}-{i}".encode() for i in range(n)]
    p = producer(bootstrap)
    d = Delivery()
    for i, v in enumerate(values):
        p.produce(topic, value=v, key=str(i).encode(), partition=i % partitions, on_delivery=d)
    assert p.flush(30) == 0 and not d.errors, d.errors
    return set(values)


def poll_until(consumers, done, timeout_s, on_message=None, commit=True):
    """Poll every consumer in turn until done() or the time is up. Each message goes to
    on_message(consumer_index, msg); with commit, each consumer commits synchronously after
    every non-empty batch."""
    deadline = time.monotonic() + timeout_s
    while not done() and time.monotonic() < deadline:
        for i, c in enumerate(consumers):
            if c is None:
                continue
            msgs = c.consume(num_messages=200, timeout=0.1)
            real = []
            for m in msgs:
                if m.error():
                    if m.error().code() in (KafkaError._PARTITION_EOF,):
                        continue
                    raise AssertionError(f"consumer {i} error: {m.error()}")
                real.append(m)
            for m in real:
                if on_message:
                    on_message(i, m)
            if real and commit:
                try:
                    c.commit(asynchronous=False)
                except KafkaException as e:
                    # A commit racing a rebalance may be refused; the next batch commits again.
                    if not any(s in str(e) for s in RETRIABLE_COMMIT_ERRORS):
                        raise
    return done()


def assignments(consumers):
    return [sorted(tp.partition for tp in c.assignment()) if c is not None else None for c in consumers]


def test_three_consumers_share_six_partitions_and_take_over_on_leave(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=6)
    group = f"g-{uuid.uuid4().hex[:8]}"
    consumers = [group_consumer(broker.bootstrap, group) for _ in range(3)]
    try:
        for c in consumers:
            c.subscribe([topic_name])

        def balanced():
            a = assignments(consumers)
            return all(len(x) == 2 for x in a) and sorted(sum(a, [])) == list(range(6))

        assert poll_until(consumers, balanced, 30, commit=False), f"assignments: {assignments(consumers)}"

        sent = produce_keyed(broker.bootstrap, topic_name, 600, "phase1", 6)
        seen = []
        poll_until(consumers, lambda: len(seen) >= 600, 30,
                   on_message=lambda i, m: seen.append((m.partition(), m.offset(), m.value())))
        values = [v for _, _, v in seen]
        assert len(values) == 600 and set(values) == sent, \
            f"read {len(values)} messages ({len(set(values))} distinct) of 600"
        assert len({(p, o) for p, o, _ in seen}) == 600, "a message was read twice"

        # One member leaves; the other two take over its partitions and nothing is lost.
        consumers[0].close()
        consumers[0] = None

        def two_balanced():
            a = [x for x in assignments(consumers) if x is not None]
            return all(len(x) == 3 for x in a) and sorted(sum(a, [])) == list(range(6))

        started = time.monotonic()
        assert poll_until(consumers, two_balanced, SESSION_TIMEOUT_MS / 1000 + 10, commit=False), \
            f"assignments after leave: {assignments(consumers)}"
        assert time.monotonic() - started < SESSION_TIMEOUT_MS / 1000 + 5

        sent2 = produce_keyed(broker.bootstrap, topic_name, 300, "phase2", 6)
        seen2 = set()
        poll_until(consumers, lambda: sent2 <= seen2, 30, on_message=lambda i, m: seen2.add(m.value()))
        assert sent2 <= seen2, f"{len(sent2 - seen2)} of 300 messages never read after the rebalance"
        assert not (seen2 & sent), "messages committed before the rebalance were read again"
    finally:
        for c in consumers:
            if c is not None:
                c.close()


@pytest.mark.parametrize("restart", ["graceful", "kill9"])
def test_new_consumer_resumes_from_committed_offsets_after_restart(broker, topic_name, restart):
    create_topic(broker.bootstrap, topic_name, partitions=3)
    group = f"g-{uuid.uuid4().hex[:8]}"
    first = produce_keyed(broker.bootstrap, topic_name, 150, "before", 3)

    c = group_consumer(broker.bootstrap, group)
    seen = set()
    try:
        c.subscribe([topic_name])
        poll_until([c], lambda: len(seen) >= 150, 30, on_message=lambda i, m: seen.add(m.value()))
        assert seen == first
        committed = c.committed([TopicPartition(topic_name, p) for p in range(3)], timeout=10)
        assert sum(tp.offset for tp in committed) == 150, committed
    finally:
        c.close()

    if restart == "graceful":
        broker.restart()
    else:
        broker.kill9()

    second = produce_keyed(broker.bootstrap, topic_name, 60, "after", 3)
    c = group_consumer(broker.bootstrap, group)
    seen = set()
    try:
        committed = c.committed([TopicPartition(topic_name, p) for p in range(3)], timeout=10)
        assert sorted(tp.offset for tp in committed) == [50, 50, 50], \
            f"committed offsets after {restart}: {committed}"
        c.subscribe([topic_name])
        poll_until([c], lambda: second <= seen, 30, on_message=lambda i, m: seen.add(m.value()))
        assert seen == second, f"after {restart}: {len(seen & first)} old messages re-read, " \
                               f"{len(second - seen)} new ones missing"
    finally:
        c.close()


def test_cooperative_sticky_rebalances_incrementally(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=6)
    group = f"g-{uuid.uuid4().hex[:8]}"
    events = {0: [], 1: []}

    def callbacks(i):
        def on_assign(c, parts):
            events[i].append(("assign", sorted(p.partition for p in parts)))

        def on_revoke(c, parts):
            events[i].append(("revoke", sorted(p.partition for p in parts)))

        return on_assign, on_revoke

    conf = {"partition.assignment.strategy": "cooperative-sticky"}
    consumers = [group_consumer(broker.bootstrap, group, **conf), None]
    try:
        a0, r0 = callbacks(0)
        consumers[0].subscribe([topic_name], on_assign=a0, on_revoke=r0)
        assert poll_until(consumers, lambda: len(consumers[0].assignment()) == 6, 20, commit=False), \
            f"first consumer's assignment: {assignments(consumers)}"

        consumers[1] = group_consumer(broker.bootstrap, group, **conf)
        a1, r1 = callbacks(1)
        consumers[1].subscribe([topic_name], on_assign=a1, on_revoke=r1)

        def split():
            a = assignments(consumers)
            return len(a[0]) == 3 and len(a[1]) == 3 and sorted(a[0] + a[1]) == list(range(6))

        assert poll_until(consumers, split, 30, commit=False), f"assignments: {assignments(consumers)}"
        revoked = [p for kind, ps in events[0] if kind == "revoke" for p in ps]
        assert len(revoked) == 3, f"cooperative rebalance must revoke only the moved partitions: {events[0]}"
        assert sorted(revoked) == assignments(consumers)[1], events

        sent = produce_keyed(broker.bootstrap, topic_name, 120, "coop", 6)
        seen = []
        poll_until(consumers, lambda: len(seen) >= 120, 30, on_message=lambda i, m: seen.append(m.value()))
        assert sorted(seen) == sorted(sent)
    finally:
        for c in consumers:
            if c is not None:
                c.close()


def test_commit_with_metadata_and_read_back(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=2)
    group = f"g-{uuid.uuid4().hex[:8]}"
    c = group_consumer(broker.bootstrap, group)
    try:
        tps = [TopicPartition(topic_name, 0, 7, metadata="checkpoint-a"), TopicPartition(topic_name, 1, 3)]
        result = c.commit(offsets=tps, asynchronous=False)
        assert all(tp.error is None for tp in result), result
        got = c.committed([TopicPartition(topic_name, 0), TopicPartition(topic_name, 1)], timeout=10)
        assert [(tp.partition, tp.offset) for tp in got] == [(0, 7), (1, 3)]
        assert got[0].metadata == "checkpoint-a"
    finally:
        c.close()
