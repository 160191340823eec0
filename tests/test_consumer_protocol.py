"""The consumer group protocol of KIP-848 (`group.protocol=consumer`) with librdkafka: the broker
assigns partitions, members join and leave without stopping the others, a killed member's
partitions move after its session, regex subscriptions follow new topics, and committed
offsets are resumed."""

import subprocess
import sys
import threading
import time
import uuid

import pytest
from confluent_kafka import Consumer, ConsumerGroupState, ConsumerGroupType, KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

import helpers

# Short protocol timings so that rebalances take a second or two, not Kafka's 5 s beats.
SETTINGS = {
    "group.consumer.heartbeat.interval.ms": "500",
    "group.consumer.session.timeout.ms": "6000",
}
WAIT_S = 60


@pytest.fixture
def kip848_broker(start_broker):
    return start_broker(settings=SETTINGS)


class Member:
    """One consumer of the group, polled by the test's thread, that remembers every record and
    every assignment change, and commits synchronously before it gives partitions up."""

    def __init__(self, bootstrap, group, topics, name, **conf):
        self.name = name
        self.records = []
        self.events = []
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "group.protocol": "consumer",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            **conf,
        })
        self.consumer.subscribe(topics, on_assign=self._assigned, on_revoke=self._revoked)

    def _assigned(self, consumer, partitions):
        self.events.append(("assigned", sorted((p.topic, p.partition) for p in partitions)))

    def _revoked(self, consumer, partitions):
        self.events.append(("revoked", sorted((p.topic, p.partition) for p in partitions)))
        if self.records:
            try:
                consumer.commit(asynchronous=False)
            except KafkaException as e:
                # Nothing consumed since the last commit, or the partitions were lost (the
                # member was fenced) rather than revoked: then there is nothing to commit.
                if e.args[0].code() not in (KafkaError._NO_OFFSET, KafkaError._ASSIGNMENT_LOST):
                    raise

    def poll(self, timeout=0.2):
        m = self.consumer.poll(timeout)
        if m is not None and m.error() is None:
            self.records.append((m.topic(), m.partition(), m.offset(), m.key(), m.value()))
        return m

    def assignment(self):
        return sorted((p.topic, p.partition) for p in self.consumer.assignment())

    def close(self):
        if self.records:
            try:
                self.consumer.commit(asynchronous=False)
            except KafkaException:
                pass
        self.consumer.close()


def poll_until(members, done, what, timeout_s=WAIT_S):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        for m in members:
            m.poll(0.1)
        if done():
            return
    state = {m.name: (m.assignment(), len(m.records), m.events) for m in members}
    raise AssertionError(f"timed out waiting for {what}: {state}")


def produce_keyed(bootstrap, topic, start, count, partitions):
    p = helpers.producer(bootstrap)
    for i in range(start, start + count):
        p.produce(topic, key=f"k{i}".encode(), value=f"v{i}".encode(), partition=i % partitions)
    assert p.flush(15) == 0


def seen(members):
    return [r for m in members for r in m.records]


def test_two_members_share_the_partitions_without_duplicates_and_resume(kip848_broker, topic_name):
    b = kip848_broker.bootstrap
    helpers.create_topic(b, topic_name, partitions=4)
    produce_keyed(b, topic_name, 0, 400, 4)
    group = f"g-{uuid.uuid4().hex[:8]}"
    a = Member(b, group, [topic_name], "a")
    poll_until([a], lambda: len(a.assignment()) == 4 and a.records, "the first member to own all")
    second = Member(b, group, [topic_name], "b")
    members = [a, second]
    poll_until(members, lambda: len(seen(members)) >= 400 and a.assignment() and second.assignment(),
               "both members to own partitions and every record to be read")
    owned_a, owned_b = set(a.assignment()), set(second.assignment())
    assert owned_a.isdisjoint(owned_b)
    assert owned_a | owned_b == {(topic_name, p) for p in range(4)}
    records = seen(members)
    # Each partition moved only after its owner committed and gave it up: nothing twice.
    positions = [(r[1], r[2]) for r in records]
    assert len(positions) == len(set(positions)) == 400, len(positions)
    assert sorted((r[3], r[4]) for r in records) == sorted(
        (f"k{i}".encode(), f"v{i}".encode()) for i in range(400))
    for r in records:
        assert int(r[3][1:]) % 4 == r[1]
    # The first member gave up partitions once and received none back from the second.
    assert [e for e in a.events if e[0] == "revoked"] and len(owned_a) == 2
    for m in members:
        m.close()
    # A new member of the group starts where they committed.
    produce_keyed(b, topic_name, 400, 40, 4)
    c = Member(b, group, [topic_name], "c")
    poll_until([c], lambda: len(c.records) >= 40, "the new member to read the new records")
    time.sleep(1)
    c.poll(0.5)
    assert sorted(r[4] for r in c.records) == sorted(f"v{i}".encode() for i in range(400, 440))
    c.close()


def test_a_leaving_member_hands_over_without_the_other_revoking(kip848_broker, topic_name):
    b = kip848_broker.bootstrap
    helpers.create_topic(b, topic_name, partitions=4)
    group = f"g-{uuid.uuid4().hex[:8]}"
    a = Member(b, group, [topic_name], "a")
    poll_until([a], lambda: len(a.assignment()) == 4, "the first member to own all")
    second = Member(b, group, [topic_name], "b")
    poll_until([a, second], lambda: len(a.assignment()) == 2 and len(second.assignment()) == 2,
               "an even split")
    kept = set(a.assignment())
    revocations = len([e for e in a.events if e[0] == "revoked"])
    second.close()
    poll_until([a], lambda: len(a.assignment()) == 4, "the remaining member to own all again")
    # Incremental: taking the partitions back revoked nothing the member kept.
    later = [e for e in a.events if e[0] == "revoked"][revocations:]
    assert later == [], a.events
    assert kept < set(a.assignment())
    a.close()


KILLED_MEMBER = """
import sys, time
from confluent_kafka import Consumer
c = Consumer({"bootstrap.servers": sys.argv[1], "group.id": sys.argv[2], "group.protocol": "consumer",
              "auto.offset.reset": "earliest", "enable.auto.commit": False})
c.subscribe([sys.argv[3]])
while True:
    c.poll(0.2)
    if c.assignment():
        print("assigned", flush=True)
"""


def test_a_killed_members_partitions_move_after_its_session(kip848_broker, topic_name):
    b = kip848_broker.bootstrap
    helpers.create_topic(b, topic_name, partitions=4)
    group = f"g-{uuid.uuid4().hex[:8]}"
    victim = subprocess.Popen([sys.executable, "-c", KILLED_MEMBER, b, group, topic_name],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert victim.stdout.readline().strip() == "assigned"
        a = Member(b, group, [topic_name], "a")
        poll_until([a], lambda: len(a.assignment()) == 2, "the survivor's half")
        victim.kill()
        victim.wait()
        killed_at = time.time()
        produce_keyed(b, topic_name, 0, 80, 4)
        poll_until([a], lambda: len(a.assignment()) == 4 and len(a.records) == 80,
                   "the survivor to take over and read everything")
        moved_after = time.time() - killed_at
        # Not before the 6 s session timeout ran out.
        assert moved_after >= 5, moved_after
        a.close()
    finally:
        if victim.poll() is None:
            victim.kill()


def test_a_regex_subscription_follows_new_topics(kip848_broker):
    b = kip848_broker.bootstrap
    prefix = f"rx-{uuid.uuid4().hex[:6]}"
    helpers.create_topic(b, f"{prefix}-a", partitions=2)
    helpers.create_topic(b, f"other-{prefix}", partitions=1)
    produce_keyed(b, f"{prefix}-a", 0, 10, 2)
    produce_keyed(b, f"other-{prefix}", 0, 5, 1)
    a = Member(b, f"g-{prefix}", [f"^{prefix}-.*"], "a")
    poll_until([a], lambda: len(a.records) == 10, "the matching topic's records")
    helpers.create_topic(b, f"{prefix}-b", partitions=3)
    produce_keyed(b, f"{prefix}-b", 100, 12, 3)
    poll_until([a], lambda: len(a.records) == 22, "the new matching topic's records")
    assert {r[0] for r in a.records} == {f"{prefix}-a", f"{prefix}-b"}
    assert {(t, p) for t, p in a.assignment()} == (
        {(f"{prefix}-a", p) for p in range(2)} | {(f"{prefix}-b", p) for p in range(3)})
    a.close()


def test_range_assignor_and_describe_consumer_groups(kip848_broker, topic_name):
    b = kip848_broker.bootstrap
    helpers.create_topic(b, topic_name, partitions=4)
    group = f"g-{uuid.uuid4().hex[:8]}"
    members = [Member(b, group, [topic_name], n, **{"group.remote.assignor": "range"}) for n in "ab"]
    poll_until(members, lambda: all(len(m.assignment()) == 2 for m in members), "an even split")
    ranges = sorted(tuple(p for _, p in m.assignment()) for m in members)
    assert ranges == [(0, 1), (2, 3)]
    admin = AdminClient({"bootstrap.servers": b})
    described = admin.describe_consumer_groups([group])[group].result(timeout=15)
    assert described.type == ConsumerGroupType.CONSUMER
    assert described.state == ConsumerGroupState.STABLE
    assert described.partition_assignor == "range"
    by_member = {m.member_id: sorted(tp.partition for tp in m.assignment.topic_partitions)
                 for m in described.members}
    assert sorted(by_member.values()) == [[0, 1], [2, 3]]
    listed = admin.list_consumer_groups(types={ConsumerGroupType.CONSUMER}).result(timeout=15)
    assert group in {g.group_id for g in listed.valid}
    for m in members:
        m.close()


def test_members_carry_on_across_kill9_of_the_broker(kip848_broker, topic_name):
    # The group's membership is in the offsets log: after the restart the member goes on at its
    # epoch with its partitions, with no revoke or lost callback, and reads on from where it was.
    b = kip848_broker.bootstrap
    helpers.create_topic(b, topic_name, partitions=2)
    produce_keyed(b, topic_name, 0, 100, 2)
    group = f"g-{uuid.uuid4().hex[:8]}"
    a = Member(b, group, [topic_name], "a")
    poll_until([a], lambda: len(a.records) == 100, "the first half")
    committed = {tp.partition: tp.offset for tp in a.consumer.commit(asynchronous=False)}
    assert committed == {0: 50, 1: 50}
    kip848_broker.kill9()
    produce_keyed(b, topic_name, 100, 100, 2)
    poll_until([a], lambda: len(a.records) >= 200, "every record after the restart")
    time.sleep(2)  # a few heartbeats at the restored epoch
    a.poll(0.5)
    assert sorted(r[4] for r in a.records) == sorted(f"v{i}".encode() for i in range(200))
    assert [e[0] for e in a.events] == ["assigned"], a.events
    admin = AdminClient({"bootstrap.servers": b})
    described = admin.describe_consumer_groups([group])[group].result(timeout=15)
    assert described.state == ConsumerGroupState.STABLE and len(described.members) == 1
    a.close()


@pytest.mark.parametrize("strategy", ["range", "cooperative-sticky"])
def test_a_live_classic_group_upgrades_when_a_consumer_protocol_member_joins(kip848_broker, topic_name, strategy):
    # Kafka 4's online migration: the classic member stays, speaking JoinGroup/SyncGroup/
    # Heartbeat, and the coordinator assigns for both kinds of member.
    b = kip848_broker.bootstrap
    helpers.create_topic(b, topic_name, partitions=4)
    produce_keyed(b, topic_name, 0, 200, 4)
    group = f"g-{uuid.uuid4().hex[:8]}"
    classic = Member(b, group, [topic_name], "classic", **{
        "group.protocol": "classic", "partition.assignment.strategy": strategy,
        "session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
    poll_until([classic], lambda: len(classic.assignment()) == 4 and len(classic.records) == 200,
               "the classic member to own and read everything")
    new = Member(b, group, [topic_name], "new")
    members = [classic, new]
    produce_keyed(b, topic_name, 200, 200, 4)
    poll_until(members, lambda: len(seen(members)) >= 400 and classic.assignment() and new.assignment(),
               "both kinds of member to own partitions and every record to be read")
    owned_classic, owned_new = set(classic.assignment()), set(new.assignment())
    assert owned_classic.isdisjoint(owned_new)
    assert owned_classic | owned_new == {(topic_name, p) for p in range(4)}
    positions = [(r[1], r[2]) for r in seen(members)]
    assert len(positions) == len(set(positions)) == 400, len(positions)
    admin = AdminClient({"bootstrap.servers": b})
    described = admin.describe_consumer_groups([group])[group].result(timeout=15)
    assert described.type == ConsumerGroupType.CONSUMER
    assert len(described.members) == 2
    new.close()
    poll_until([classic], lambda: len(classic.assignment()) == 4, "the classic member to own all again")
    # The last consumer-protocol member left: the group is classic again (Kafka's online
    # downgrade), and its member goes on reading where the group left off.
    described = admin.describe_consumer_groups([group])[group].result(timeout=15)
    assert described.type == ConsumerGroupType.CLASSIC, described.type
    assert [m.member_id for m in described.members] == [classic.consumer.memberid()]
    produce_keyed(b, topic_name, 400, 100, 4)
    poll_until([classic], lambda: len(seen(members)) >= 500, "the classic member to read on")
    positions = [(r[1], r[2]) for r in seen(members)]
    assert len(positions) == len(set(positions)) == 500, len(positions)
    assert {r[3] for r in seen(members)} == {f"k{i}".encode() for i in range(500)}
    classic.close()
