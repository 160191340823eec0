"""The same consumer-group flow with kafka-python, a client implemented from scratch in
Python (it opens with ApiVersions v4 and negotiates down)."""

import time
import uuid

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import CommitFailedError, RebalanceInProgressError

from helpers import create_topic

SESSION_TIMEOUT_MS = 6000


def kp_consumer(bootstrap, group):
    return KafkaConsumer(
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


def poll_until(consumers, done, timeout_s, on_record=None, commit=True):
    deadline = time.monotonic() + timeout_s
    while not done() and time.monotonic() < deadline:
        for c in consumers:
            if c is None:
                continue
            batches = c.poll(timeout_ms=100, max_records=200)
            got = [r for records in batches.values() for r in records]
            for r in got:
                if on_record:
                    on_record(r)
            if got and commit:
                try:
                    c.commit()
                except (CommitFailedError, RebalanceInProgressError):
                    pass  # racing a rebalance; the next batch commits again
    return done()


def assignments(consumers):
    return [sorted(tp.partition for tp in c.assignment()) if c is not None else None for c in consumers]


def test_three_consumers_share_partitions_and_take_over(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=6)
    group = f"kp-{uuid.uuid4().hex[:8]}"
    consumers = [kp_consumer(broker.bootstrap, group) for _ in range(3)]
    try:
        for c in consumers:
            c.subscribe([topic_name])

        def balanced():
            a = assignments(consumers)
            return all(len(x) == 2 for x in a) and sorted(sum(a, [])) == list(range(6))

        assert poll_until(consumers, balanced, 40, commit=False), f"assignments: {assignments(consumers)}"

        sent = produce(broker.bootstrap, topic_name, 600, "kp1", 6)
        seen = []
        poll_until(consumers, lambda: len(seen) >= 600, 30,
                   on_record=lambda r: seen.append((r.partition, r.offset, r.value)))
        assert {v for _, _, v in seen} == sent
        assert len(seen) == 600, f"read {len(seen)} records for 600 messages"

        consumers[0].close()
        consumers[0] = None

        def two_balanced():
            a = [x for x in assignments(consumers) if x is not None]
            return all(len(x) == 3 for x in a) and sorted(sum(a, [])) == list(range(6))

        assert poll_until(consumers, two_balanced, SESSION_TIMEOUT_MS / 1000 + 10, commit=False), \
            f"assignments after leave: {assignments(consumers)}"
        sent2 = produce(broker.bootstrap, topic_name, 300, "kp2", 6)
        seen2 = set()
        poll_until(consumers, lambda: sent2 <= seen2, 30, on_record=lambda r: seen2.add(r.value))
        assert sent2 <= seen2, f"{len(sent2 - seen2)} of 300 never read after the rebalance"
        assert not (seen2 & sent), "messages committed before the rebalance were read again"
    finally:
        for c in consumers:
            if c is not None:
                c.close()


@pytest.mark.parametrize("restart", ["graceful", "kill9"])
def test_resume_from_committed_offsets_after_restart(broker, topic_name, restart):
    create_topic(broker.bootstrap, topic_name, partitions=3)
    group = f"kp-{uuid.uuid4().hex[:8]}"
    first = produce(broker.bootstrap, topic_name, 90, "old", 3)
    c = kp_consumer(broker.bootstrap, group)
    seen = set()
    try:
        c.subscribe([topic_name])
        poll_until([c], lambda: first <= seen, 30, on_record=lambda r: seen.add(r.value))
        assert seen == first
        c.commit()
    finally:
        c.close()

    broker.restart() if restart == "graceful" else broker.kill9()

    second = produce(broker.bootstrap, topic_name, 30, "new", 3)
    c = kp_consumer(broker.bootstrap, group)
    seen = set()
    try:
        assert [c.committed(TopicPartition(topic_name, p)) for p in range(3)] == [30, 30, 30]
        c.subscribe([topic_name])
        poll_until([c], lambda: second <= seen, 30, on_record=lambda r: seen.add(r.value))
        assert seen == second, f"{len(seen & first)} old re-read, {len(second - seen)} new missing"
    finally:
        c.close()
