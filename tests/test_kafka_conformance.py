"""Answers that must match Apache Kafka's, checked against the real binary with raw wire
requests and with confluent-kafka (librdkafka), the way client test suites see them.

Each test names the Kafka code path whose answer it pins down; the in-process twins of most
of these live in crates/strom-broker/tests/conformance_kafka.rs.
"""
import struct
import time

import pytest
from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import (
    ConfigResource,
    NewPartitions,
    NewTopic,
    OffsetSpec,
)

import helpers
import wire

ERROR_INVALID_REQUIRED_ACKS = 21
ERROR_INVALID_RECORD = 87
ERROR_UNKNOWN_TOPIC_OR_PARTITION = 3


def produce_raw(bootstrap, topic, payload, acks=-1, correlation_id=1):
    with wire.Conn(bootstrap) as c:
        c.send(wire.produce_request_v3(topic, 0, payload, correlation_id=correlation_id, acks=acks))
        corr, parts = wire.parse_produce_v3(c.recv_frame())
    assert corr == correlation_id
    assert len(parts) == 1
    _topic, _partition, error, base_offset = parts[0]
    return error, base_offset


def test_produce_payload_must_be_exactly_one_batch(broker, topic_name):
    """ProduceRequest.validateRecords: empty, cut short or two batches are INVALID_RECORD."""
    helpers.create_topic(broker.bootstrap, topic_name)
    good = wire.record_batch([b"one"])
    assert produce_raw(broker.bootstrap, topic_name, b"") == (ERROR_INVALID_RECORD, -1)
    assert produce_raw(broker.bootstrap, topic_name, good[:-1]) == (ERROR_INVALID_RECORD, -1)
    assert produce_raw(broker.bootstrap, topic_name, good + good) == (ERROR_INVALID_RECORD, -1)
    # A batch whose base offset is not 0 (not covered by the CRC): INVALID_RECORD.
    shifted = struct.pack(">q", 5) + good[8:]
    assert produce_raw(broker.bootstrap, topic_name, shifted) == (ERROR_INVALID_RECORD, -1)
    # None of it was stored.
    assert produce_raw(broker.bootstrap, topic_name, good) == (wire.ERROR_NONE, 0)


def test_invalid_acks_come_after_topic_and_record_checks(broker, topic_name):
    """KafkaApis filters unknown topics and invalid records before ReplicaManager refuses acks."""
    helpers.create_topic(broker.bootstrap, topic_name)
    good = wire.record_batch([b"x"])
    assert produce_raw(broker.bootstrap, topic_name, good, acks=2) == (ERROR_INVALID_REQUIRED_ACKS, -1)
    assert produce_raw(broker.bootstrap, topic_name + "-missing", good, acks=2)[0] == ERROR_UNKNOWN_TOPIC_OR_PARTITION
    assert produce_raw(broker.bootstrap, topic_name, b"", acks=2)[0] == ERROR_INVALID_RECORD
    assert helpers.watermarks(broker.bootstrap, topic_name) == (0, 0)


def test_list_offsets_specs_through_librdkafka(broker, topic_name):
    helpers.create_topic(broker.bootstrap, topic_name)
    base = 1_700_000_000_000
    p = helpers.producer(broker.bootstrap)
    for i, ts in enumerate([base + 5, base + 9, base + 7]):
        p.produce(topic_name, value=b"v%d" % i, partition=0, timestamp=ts)
    assert p.flush(10) == 0
    tp = TopicPartition(topic_name, 0)
    client = helpers.admin(broker.bootstrap)

    def offset(spec):
        info = client.list_offsets({tp: spec}, request_timeout=10)[tp].result(timeout=10)
        return info.offset, info.timestamp

    assert offset(OffsetSpec.earliest())[0] == 0
    assert offset(OffsetSpec.latest())[0] == 3
    assert offset(OffsetSpec.max_timestamp()) == (1, base + 9)
    assert offset(OffsetSpec.for_timestamp(base + 6)) == (1, base + 9)
    # Past every record: no offset (-1), not an error.
    assert offset(OffsetSpec.for_timestamp(base + 100))[0] == -1


def test_create_topics_errors_follow_the_controller(broker, topic_name):
    helpers.create_topic(broker.bootstrap, topic_name)
    client = helpers.admin(broker.bootstrap)

    def error_of(new_topic, validate_only=False):
        f = client.create_topics([new_topic], validate_only=validate_only, request_timeout=10)
        try:
            f[new_topic.topic].result(timeout=10)
            return None
        except KafkaException as e:
            return e.args[0].name()

    assert error_of(NewTopic(topic_name, 1, 1)) == "TOPIC_ALREADY_EXISTS"
    assert error_of(NewTopic("bad name", 1, 3)) == "TOPIC_EXCEPTION"
    assert error_of(NewTopic(topic_name + "-rf", 1, 3)) == "INVALID_REPLICATION_FACTOR"
    assert error_of(NewTopic(topic_name + "-cfg", 1, 1, config={"retention.ms": "soon"})) == "INVALID_CONFIG"
    assert error_of(NewTopic(topic_name + "-ok", 2, 1, config={"segment.jitter.ms": "5"})) is None
    assert error_of(NewTopic(topic_name + "-v", 2, 1), validate_only=True) is None
    assert topic_name + "-v" not in client.list_topics(timeout=10).topics


def test_create_partitions_errors(broker, topic_name):
    helpers.create_topic(broker.bootstrap, topic_name, partitions=2)
    client = helpers.admin(broker.bootstrap)

    def error_of(count):
        f = client.create_partitions([NewPartitions(topic_name, count)], request_timeout=10)
        try:
            f[topic_name].result(timeout=10)
            return None
        except KafkaException as e:
            return e.args[0].name(), e.args[0].str()

    assert error_of(2) == ("INVALID_PARTITIONS", "Topic already has 2 partition(s).")
    name, message = error_of(1)
    assert name == "INVALID_PARTITIONS"
    assert "would not be an increase" in message
    assert error_of(3) is None


def test_describe_configs_types_and_synonyms(broker, topic_name):
    helpers.create_topic(broker.bootstrap, topic_name, config={"retention.ms": "123456"})
    res = ConfigResource(ConfigResource.Type.TOPIC, topic_name)
    entries = helpers.admin(broker.bootstrap).describe_configs([res], request_timeout=10)[res].result(timeout=10)
    retention = entries["retention.ms"]
    assert retention.value == "123456"
    assert retention.source == 1  # DYNAMIC_TOPIC_CONFIG
    assert [s.source for s in retention.synonyms.values()][:1] == [1]
    assert entries["cleanup.policy"].source == 5  # DEFAULT_CONFIG
    assert "segment.jitter.ms" in entries


def test_incremental_alter_append_to_a_list_config(broker, topic_name):
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry

    helpers.create_topic(broker.bootstrap, topic_name)
    client = helpers.admin(broker.bootstrap)
    res = ConfigResource(
        ConfigResource.Type.TOPIC,
        topic_name,
        incremental_configs=[ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.APPEND)],
    )
    client.incremental_alter_configs([res], request_timeout=10)[res].result(timeout=10)
    plain = ConfigResource(ConfigResource.Type.TOPIC, topic_name)
    entries = client.describe_configs([plain], request_timeout=10)[plain].result(timeout=10)
    assert entries["cleanup.policy"].value == "delete,compact"

    bad = ConfigResource(
        ConfigResource.Type.TOPIC,
        topic_name,
        incremental_configs=[ConfigEntry("retention.ms", "5", incremental_operation=AlterConfigOpType.APPEND)],
    )
    with pytest.raises(KafkaException) as e:
        client.incremental_alter_configs([bad], request_timeout=10)[bad].result(timeout=10)
    assert e.value.args[0].name() == "INVALID_CONFIG"


def test_idempotent_producer_and_consumer_round_trip(broker, topic_name):
    """The leader epoch stamped on stored batches (0) and epoch checks keep librdkafka's
    idempotent producer and KIP-320 consumer position validation happy."""
    helpers.create_topic(broker.bootstrap, topic_name)
    values = [b"i%d" % i for i in range(20)]
    d = helpers.produce_values(broker.bootstrap, topic_name, values, partition=0, **{"enable.idempotence": True})
    assert [o for _, o, _ in d.ok] == list(range(20))
    helpers.assert_healthy(broker.bootstrap, topic_name, values)


HUGE = 0x7FFFFFFF

# (api key, version, body up to and including a claimed array length of HUGE elements).
HOSTILE = {
    "list-offsets": (2, 1, struct.pack(">ii", -1, HUGE)),
    "delete-topics": (20, 1, struct.pack(">i", HUGE)),
    "delete-records": (21, 0, struct.pack(">i", HUGE)),
    "offset-for-leader-epoch": (23, 2, struct.pack(">i", HUGE)),
    "describe-configs": (32, 1, struct.pack(">i", HUGE)),
    "alter-configs": (33, 0, struct.pack(">i", HUGE)),
    "describe-log-dirs": (35, 1, struct.pack(">i", HUGE)),
    "create-partitions": (37, 0, struct.pack(">i", HUGE)),
    "incremental-alter-configs": (44, 0, struct.pack(">i", HUGE)),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_huge_claimed_lengths_in_admin_apis_close_only_that_connection(broker, topic_name, name):
    """The in-process fuzz tests carry the binary's allocation guard; this checks the binary
    itself for the admin APIs test_hostile_lengths.py does not cover."""
    import socket

    helpers.create_topic(broker.bootstrap, topic_name)
    helpers.produce_values(broker.bootstrap, topic_name, [b"kept"], partition=0)
    api, version, body = HOSTILE[name]
    with socket.create_connection(("127.0.0.1", broker.port), timeout=10) as s:
        s.sendall(wire.frame(wire.request_header_v1(api, version, 1) + body))
        assert s.recv(100) == b"", "a malformed request must close its connection"
    assert broker.alive()
    helpers.assert_healthy(broker.bootstrap, topic_name, [b"kept"])


def test_failed_acks_zero_produce_closes_the_connection(broker, topic_name):
    """KafkaApis closes the socket after an acks=0 produce with an error, so the producer
    notices; a good acks=0 produce leaves the connection open and gets no response."""
    helpers.create_topic(broker.bootstrap, topic_name)
    with wire.Conn(broker.bootstrap) as c:
        c.send(wire.produce_request_v3(topic_name, 0, wire.record_batch([b"ok"]), correlation_id=1, acks=0))
        c.send(wire.api_versions_request(0, 2))
        corr = struct.unpack(">i", c.recv_frame()[:4])[0]
        assert corr == 2, "acks=0 got a response, or the connection broke"
        c.send(wire.produce_request_v3(topic_name + "-missing", 0, wire.record_batch([b"x"]), correlation_id=3, acks=0))
        assert c.closed_by_peer()
    # The high watermark follows fsync (README, Durability): the acks=0 record becomes visible
    # with the flusher's next round, a few milliseconds later.
    deadline = time.monotonic() + 5
    while helpers.watermarks(broker.bootstrap, topic_name) != (0, 1) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert helpers.watermarks(broker.bootstrap, topic_name) == (0, 1)
