"""Topic administration and offset lookups through librdkafka's AdminClient and Consumer."""

import time

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import ConfigResource, NewPartitions, NewTopic, OffsetSpec

from helpers import admin, consume_all, consumer, create_topic, produce_values, producer, wait_for_topic


def create(bootstrap, topics, validate_only=False):
    futures = admin(bootstrap).create_topics(topics, validate_only=validate_only,
                                             operation_timeout=10, request_timeout=10)
    return {name: f.exception(timeout=15) for name, f in futures.items()}


def error_code(exc):
    assert isinstance(exc, KafkaException), f"expected a KafkaException, got {exc!r}"
    return exc.args[0].code()


def topic_names(bootstrap):
    return set(admin(bootstrap).list_topics(timeout=10).topics)


def test_create_topics_with_configs_and_describe(broker, topic_name):
    errors = create(broker.bootstrap, [NewTopic(topic_name, 3, 1, config={
        "retention.ms": "3600000", "retention.bytes": "1000000",
        "segment.bytes": "2097152", "cleanup.policy": "delete"})])
    assert errors == {topic_name: None}
    wait_for_topic(broker.bootstrap, topic_name, 3)
    res = ConfigResource(ConfigResource.Type.TOPIC, topic_name)
    entries = admin(broker.bootstrap).describe_configs([res], request_timeout=10)[res].result(timeout=10)
    values = {name: e.value for name, e in entries.items()}
    assert values["retention.ms"] == "3600000"
    assert values["retention.bytes"] == "1000000"
    assert values["segment.bytes"] == "2097152"
    assert values["cleanup.policy"] == "delete"
    # Settings given at creation are reported as the topic's own, not defaults.
    assert not entries["retention.ms"].is_default


def test_create_existing_topic_fails(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=1)
    errors = create(broker.bootstrap, [NewTopic(topic_name, 1, 1)])
    assert error_code(errors[topic_name]) == KafkaError.TOPIC_ALREADY_EXISTS


def test_validate_only_creates_nothing(broker, topic_name):
    errors = create(broker.bootstrap, [NewTopic(topic_name, 2, 1)], validate_only=True)
    assert errors == {topic_name: None}
    time.sleep(0.3)
    assert topic_name not in topic_names(broker.bootstrap)
    # The same validation rejects a bad request without creating anything either.
    errors = create(broker.bootstrap, [NewTopic("bad name!", 1, 1)], validate_only=True)
    assert error_code(errors["bad name!"]) == KafkaError.TOPIC_EXCEPTION


@pytest.mark.parametrize("name", ["bad name!", "a/b", "..", "x" * 250])
def test_invalid_topic_name_is_rejected(broker, name):
    errors = create(broker.bootstrap, [NewTopic(name, 1, 1)])
    assert error_code(errors[name]) == KafkaError.TOPIC_EXCEPTION  # INVALID_TOPIC_EXCEPTION (17)
    assert name not in topic_names(broker.bootstrap)


def test_invalid_partition_count_and_config_are_rejected(broker, topic_name):
    errors = create(broker.bootstrap, [NewTopic(topic_name, 0, 1)])
    assert error_code(errors[topic_name]) == KafkaError.INVALID_PARTITIONS
    errors = create(broker.bootstrap, [NewTopic(topic_name, 1, 1, config={"retention.ms": "soon"})])
    assert error_code(errors[topic_name]) == KafkaError.INVALID_CONFIG
    assert topic_name not in topic_names(broker.bootstrap)


def test_delete_topic_removes_it_and_its_data(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=2)
    produce_values(broker.bootstrap, topic_name, [b"old-1", b"old-2"], partition=0)
    futures = admin(broker.bootstrap).delete_topics([topic_name], operation_timeout=10, request_timeout=10)
    futures[topic_name].result(timeout=15)
    deadline = time.monotonic() + 10
    while topic_name in topic_names(broker.bootstrap) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert topic_name not in topic_names(broker.bootstrap)
    deadline = time.monotonic() + 10
    while (broker.data_dir / topic_name).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not (broker.data_dir / topic_name).exists(), "topic directory still on disk"
    # A topic of the same name starts empty.
    create_topic(broker.bootstrap, topic_name, partitions=1)
    d = produce_values(broker.bootstrap, topic_name, [b"new"], partition=0)
    assert d.ok[0][1] == 0
    assert [m.value() for m in consume_all(broker.bootstrap, topic_name, 1)] == [b"new"]


def test_delete_unknown_topic_fails(broker, topic_name):
    futures = admin(broker.bootstrap).delete_topics([topic_name], operation_timeout=10, request_timeout=10)
    exc = futures[topic_name].exception(timeout=15)
    assert error_code(exc) == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_create_partitions(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=2)
    futures = admin(broker.bootstrap).create_partitions([NewPartitions(topic_name, 5)],
                                                        operation_timeout=10, request_timeout=10)
    futures[topic_name].result(timeout=15)
    wait_for_topic(broker.bootstrap, topic_name, 5)
    d = produce_values(broker.bootstrap, topic_name, [b"in-p4"], partition=4)
    assert d.ok == [(4, 0, b"in-p4")]
    assert [m.value() for m in consume_all(broker.bootstrap, topic_name, 1, partitions=(4,))] == [b"in-p4"]
    # Partitions can only grow.
    futures = admin(broker.bootstrap).create_partitions([NewPartitions(topic_name, 3)], request_timeout=10)
    assert error_code(futures[topic_name].exception(timeout=15)) == KafkaError.INVALID_PARTITIONS
    # Survives a restart.
    broker.restart()
    wait_for_topic(broker.bootstrap, topic_name, 5)


def test_describe_broker_configs(broker):
    md = admin(broker.bootstrap).list_topics(timeout=10)
    res = ConfigResource(ConfigResource.Type.BROKER, str(next(iter(md.brokers))))
    entries = admin(broker.bootstrap).describe_configs([res], request_timeout=10)[res].result(timeout=10)
    assert "log.retention.check.interval.ms" in entries or "num.partitions" in entries, sorted(entries)[:20]


def test_metadata_lists_broker_and_partitions(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=3)
    md = admin(broker.bootstrap).list_topics(timeout=10)
    assert len(md.brokers) == 1
    (b,) = md.brokers.values()
    assert (b.host, b.port) == ("127.0.0.1", broker.port)
    t = md.topics[topic_name]
    assert sorted(t.partitions) == [0, 1, 2]
    for p in t.partitions.values():
        assert p.leader == b.id and p.replicas == [b.id] and p.isrs == [b.id]


def test_list_offsets_earliest_latest_and_by_timestamp(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=1)
    base = int(time.time() * 1000) - 100_000
    p = producer(broker.bootstrap)
    for i in range(10):
        p.produce(topic_name, value=f"ts-{i}".encode(), partition=0, timestamp=base + i * 1000)
        p.flush(10)  # separate batches, so timestamps fall between batches too
    tp = TopicPartition(topic_name, 0)

    futures = admin(broker.bootstrap).list_offsets({tp: OffsetSpec.earliest()}, request_timeout=10)
    assert futures[tp].result(timeout=10).offset == 0
    futures = admin(broker.bootstrap).list_offsets({tp: OffsetSpec.latest()}, request_timeout=10)
    assert futures[tp].result(timeout=10).offset == 10
    futures = admin(broker.bootstrap).list_offsets({tp: OffsetSpec.max_timestamp()}, request_timeout=10)
    assert futures[tp].result(timeout=10).offset == 9

    c = consumer(broker.bootstrap)
    try:
        def offset_for(ts):
            (r,) = c.offsets_for_times([TopicPartition(topic_name, 0, ts)], timeout=10)
            assert r.error is None, r.error
            return r.offset

        assert offset_for(base) == 0
        assert offset_for(base + 2500) == 3  # first message with timestamp >= target
        assert offset_for(base + 9000) == 9
        assert offset_for(base + 9001) == -1  # none so late: Kafka answers offset -1
        assert c.get_watermark_offsets(tp, timeout=10, cached=False) == (0, 10)
    finally:
        c.close()


def test_list_offsets_unknown_partition(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=1)
    tp = TopicPartition(topic_name, 7)
    futures = admin(broker.bootstrap).list_offsets({tp: OffsetSpec.latest()}, request_timeout=10)
    exc = futures[tp].exception(timeout=15)
    assert exc is not None, "ListOffsets for a partition that does not exist must fail"
