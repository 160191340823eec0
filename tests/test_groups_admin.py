"""Group administration through librdkafka's AdminClient: list, describe, committed offsets
and lag."""

import time
import uuid

from confluent_kafka import ConsumerGroupState, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import OffsetSpec

from helpers import admin, consumer, create_topic, produce_values


def committed_offsets(bootstrap, group):
    futures = admin(bootstrap).list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)],
                                                           request_timeout=10)
    result = futures[group].result(timeout=15)
    return {(tp.topic, tp.partition): tp.offset for tp in result.topic_partitions}


def test_list_describe_groups_offsets_and_lag(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=2)
    produce_values(broker.bootstrap, topic_name, [f"a-{i}".encode() for i in range(30)], partition=0)
    produce_values(broker.bootstrap, topic_name, [f"b-{i}".encode() for i in range(20)], partition=1)
    group = f"adm-{uuid.uuid4().hex[:8]}"

    c = consumer(broker.bootstrap, group=group, **{"session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
    try:
        c.subscribe([topic_name])
        deadline = time.monotonic() + 30
        while len(c.assignment()) < 2 and time.monotonic() < deadline:
            c.poll(0.1)
        assert len(c.assignment()) == 2, "the only member did not get both partitions"
        c.commit(offsets=[TopicPartition(topic_name, 0, 10), TopicPartition(topic_name, 1, 20)],
                 asynchronous=False)

        listed = admin(broker.bootstrap).list_consumer_groups(request_timeout=10).result(timeout=15)
        by_id = {g.group_id: g for g in listed.valid}
        assert group in by_id, f"{group} not in {sorted(by_id)}"
        assert by_id[group].state == ConsumerGroupState.STABLE

        desc = admin(broker.bootstrap).describe_consumer_groups([group], request_timeout=10)[group].result(timeout=15)
        assert desc.group_id == group
        assert desc.state == ConsumerGroupState.STABLE
        assert len(desc.members) == 1
        member = desc.members[0]
        assert sorted(tp.partition for tp in member.assignment.topic_partitions) == [0, 1]
        assert desc.partition_assignor in ("range", "roundrobin")

        assert committed_offsets(broker.bootstrap, group) == {(topic_name, 0): 10, (topic_name, 1): 20}

        tps = {TopicPartition(topic_name, p): OffsetSpec.latest() for p in (0, 1)}
        ends = {tp.partition: f.result(timeout=10).offset
                for tp, f in admin(broker.bootstrap).list_offsets(tps, request_timeout=10).items()}
        committed = committed_offsets(broker.bootstrap, group)
        lag = {p: ends[p] - committed[(topic_name, p)] for p in (0, 1)}
        assert lag == {0: 20, 1: 0}
    finally:
        c.close()

    # After the only member leaves, the group is Empty and its offsets remain.
    deadline = time.monotonic() + 10
    state = None
    while time.monotonic() < deadline:
        listed = admin(broker.bootstrap).list_consumer_groups(request_timeout=10).result(timeout=15)
        state = {g.group_id: g.state for g in listed.valid}.get(group)
        if state == ConsumerGroupState.EMPTY:
            break
        time.sleep(0.2)
    assert state == ConsumerGroupState.EMPTY
    assert committed_offsets(broker.bootstrap, group) == {(topic_name, 0): 10, (topic_name, 1): 20}


def test_delete_group(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=1)
    group = f"del-{uuid.uuid4().hex[:8]}"
    c = consumer(broker.bootstrap, group=group)
    try:
        c.commit(offsets=[TopicPartition(topic_name, 0, 0)], asynchronous=False)
    finally:
        c.close()
    assert committed_offsets(broker.bootstrap, group) == {(topic_name, 0): 0}
    admin(broker.bootstrap).delete_consumer_groups([group], request_timeout=10)[group].result(timeout=15)
    listed = admin(broker.bootstrap).list_consumer_groups(request_timeout=10).result(timeout=15)
    assert group not in {g.group_id for g in listed.valid}
