"""Consumer group membership survives a graceful broker restart.

Kafka stores each completed generation (members, assignments, leader, protocol) in
__consumer_offsets and restores it on load, so consumers that keep heartbeating with their
member id and generation continue without a rebalance. Before Strom persisted membership,
every consumer got UNKNOWN_MEMBER_ID after a restart and the whole group rebalanced.
"""

import time
import uuid

from confluent_kafka import KafkaError, KafkaException

from helpers import Delivery, consumer, create_topic, producer

PARTITIONS = 4
# Long enough that the restart fits well inside one session on both sides.
SESSION_TIMEOUT_MS = 30000
# librdkafka reports these while the broker is down; they are not failures of the test.
TRANSIENT = (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._PARTITION_EOF)
GROUP_ERRORS = ("UNKNOWN_MEMBER_ID", "ILLEGAL_GENERATION", "REBALANCE_IN_PROGRESS")


class Callbacks:
    """Counts the rebalance callbacks of one consumer."""

    def __init__(self):
        self.assigned = 0
        self.revoked = 0
        self.lost = 0

    def on_assign(self, c, parts):
        self.assigned += 1

    def on_revoke(self, c, parts):
        self.revoked += 1

    def on_lost(self, c, parts):
        self.lost += 1

    def snapshot(self):
        return (self.assigned, self.revoked, self.lost)


def produce(bootstrap, topic, prefix, n):
    p = producer(bootstrap)
    d = Delivery()
    values = [f"{prefix}-{i}".encode() for i in range(n)]
    for i, v in enumerate(values):
        p.produce(topic, value=v, partition=i % PARTITIONS, on_delivery=d)
    assert p.flush(30) == 0 and not d.errors, d.errors
    return set(values)


def poll_until(consumers, done, timeout_s, seen=None, commit_errors=None):
    deadline = time.monotonic() + timeout_s
    while not done() and time.monotonic() < deadline:
        for c in consumers:
            msgs = c.consume(num_messages=100, timeout=0.1)
            got = False
            for m in msgs:
                if m.error():
                    if m.error().code() in TRANSIENT:
                        continue
                    raise AssertionError(f"consumer error: {m.error()}")
                got = True
                if seen is not None:
                    seen.add(m.value())
            if got:
                try:
                    c.commit(asynchronous=False)
                except KafkaException as e:
                    if commit_errors is not None:
                        commit_errors.append(str(e))
    return done()


def assignments(consumers):
    return [sorted(tp.partition for tp in c.assignment()) for c in consumers]


def test_group_keeps_its_assignment_across_a_graceful_restart(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=PARTITIONS)
    group = f"g-{uuid.uuid4().hex[:8]}"
    callbacks = [Callbacks(), Callbacks()]
    consumers = [
        consumer(
            broker.bootstrap,
            group=group,
            **{
                "session.timeout.ms": SESSION_TIMEOUT_MS,
                "heartbeat.interval.ms": 500,
                "max.poll.interval.ms": 60000,
            },
        )
        for _ in callbacks
    ]
    try:
        for c, cb in zip(consumers, callbacks):
            c.subscribe([topic_name], on_assign=cb.on_assign, on_revoke=cb.on_revoke, on_lost=cb.on_lost)

        def balanced():
            a = assignments(consumers)
            return all(len(x) == 2 for x in a) and sorted(sum(a, [])) == list(range(PARTITIONS))

        assert poll_until(consumers, balanced, 30), f"assignments: {assignments(consumers)}"

        sent = produce(broker.bootstrap, topic_name, "before", 200)
        seen = set()
        assert poll_until(consumers, lambda: sent <= seen, 30, seen), \
            f"{len(sent - seen)} of {len(sent)} messages not read before the restart"
        # A few more rounds so that every heartbeat and commit is settled.
        poll_until(consumers, lambda: False, 1.5)
        before = assignments(consumers)
        counts = [cb.snapshot() for cb in callbacks]

        broker.restart()

        sent_after = produce(broker.bootstrap, topic_name, "after", 200)
        seen_after = set()
        commit_errors = []
        assert poll_until(consumers, lambda: sent_after <= seen_after, 30, seen_after, commit_errors), \
            f"{len(sent_after - seen_after)} of {len(sent_after)} messages not read after the restart"
        # Keep heartbeating for a while: a rebalance triggered by the restart would show now.
        poll_until(consumers, lambda: False, 3, seen_after, commit_errors)

        assert assignments(consumers) == before
        assert [cb.snapshot() for cb in callbacks] == counts, "a rebalance callback fired after the restart"
        assert not seen_after & sent, "messages committed before the restart were read again"
        group_errors = [e for e in commit_errors if any(g in e for g in GROUP_ERRORS)]
        assert not group_errors, f"commits refused after the restart: {group_errors}"
        log = broker.log_tail(max_bytes=2_000_000)
        after_restart = log.rsplit("===== start #2", 1)[-1]
        assert "preparing to rebalance" not in after_restart, "the group rebalanced after the restart"
    finally:
        for c in consumers:
            c.close()
