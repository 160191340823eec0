"""Produce and consume with confluent-kafka (librdkafka): the data a user sends comes back
exactly, whatever the codec, acks setting or producer mode."""

import time
from collections import defaultdict

import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME

from helpers import Delivery, admin, consume_all, create_topic, produce_values, producer, wait_for_topic


def test_round_trip_keys_headers_timestamps_nulls(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=3)
    base_ts = int(time.time() * 1000) - 60_000
    sent = []
    p = producer(broker.bootstrap)
    d = Delivery()
    for i in range(60):
        part = i % 3
        key = None if i % 7 == 0 else f"key-{i}".encode()
        value = None if i % 5 == 0 else f"value-{i}".encode() * (1 + i % 4)
        headers = [("h-index", str(i).encode()), ("h-null", None)] if i % 2 == 0 else None
        ts = base_ts + i * 10
        p.produce(topic_name, value=value, key=key, partition=part, timestamp=ts, headers=headers, on_delivery=d)
        sent.append((part, key, value, headers, ts))
    assert p.flush(30) == 0
    assert not d.errors, d.errors
    assert len(d.ok) == 60

    got = consume_all(broker.bootstrap, topic_name, 60, partitions=(0, 1, 2))
    assert len(got) == 60, f"got {len(got)} messages, expected exactly 60"
    by_part = defaultdict(list)
    for m in got:
        by_part[m.partition()].append(m)
    for part in range(3):
        expected = [s for s in sent if s[0] == part]
        msgs = by_part[part]
        assert [m.offset() for m in msgs] == list(range(len(expected))), f"partition {part} offsets"
        for m, (_, key, value, headers, ts) in zip(msgs, expected):
            assert m.key() == key
            assert m.value() == value
            assert m.timestamp() == (TIMESTAMP_CREATE_TIME, ts)
            if headers is None:
                assert not m.headers()
            else:
                assert m.headers() == headers


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compression_codec_round_trip(broker, topic_name, codec):
    create_topic(broker.bootstrap, topic_name, partitions=1)
    # Repetitive values so that every codec really compresses, in batches of many records.
    values = [(f"{codec}-{i:05d}-" + "abcdefgh" * 20).encode() for i in range(500)]
    d = produce_values(broker.bootstrap, topic_name, values, partition=0, **{"compression.type": codec,
                                                                             "linger.ms": 50})
    assert sorted(o for _, o, _ in d.ok) == list(range(500))
    got = consume_all(broker.bootstrap, topic_name, 500)
    assert [m.value() for m in got] == values
    assert [m.offset() for m in got] == list(range(500))


@pytest.mark.parametrize("acks", ["0", "1", "all"])
def test_acks_modes(broker, topic_name, acks):
    create_topic(broker.bootstrap, topic_name, partitions=1)
    values = [f"acks-{acks}-{i}".encode() for i in range(200)]
    d = produce_values(broker.bootstrap, topic_name, values, partition=0, acks=acks)
    assert len(d.ok) == 200
    if acks != "0":
        # With acks=0 the broker sends no response, so the client knows no offsets.
        assert sorted(o for _, o, _ in d.ok) == list(range(200))
    got = consume_all(broker.bootstrap, topic_name, 200)
    assert [m.value() for m in got] == values


def test_idempotent_producer_delivers_once_with_contiguous_offsets(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=2)
    p = producer(broker.bootstrap, **{"enable.idempotence": True, "linger.ms": 2,
                                      "max.in.flight.requests.per.connection": 5})
    d = Delivery()
    values = []
    for i in range(1000):
        v = f"idem-{i}".encode()
        values.append(v)
        p.produce(topic_name, value=v, partition=i % 2, on_delivery=d)
        if i % 100 == 0:
            p.poll(0)
    assert p.flush(30) == 0
    assert not d.errors, d.errors[:5]
    for part in (0, 1):
        offsets = sorted(o for pp, o, _ in d.ok if pp == part)
        assert offsets == list(range(500)), f"partition {part}: offsets not contiguous from 0"
    got = consume_all(broker.bootstrap, topic_name, 1000, partitions=(0, 1))
    assert len(got) == 1000
    assert sorted(m.value() for m in got) == sorted(values), "duplicates or losses"
    for part in (0, 1):
        in_part = [m.value() for m in got if m.partition() == part]
        assert in_part == [v for i, v in enumerate(values) if i % 2 == part], "order within partition"


def test_produce_to_unknown_topic_auto_creates_it(broker, topic_name):
    d = produce_values(broker.bootstrap, topic_name, [b"first", b"second"])
    assert [o for _, o, _ in d.ok] == [0, 1]
    md = admin(broker.bootstrap).list_topics(timeout=10)
    assert topic_name in md.topics
    assert len(md.topics[topic_name].partitions) == 1  # num.partitions defaults to 1
    assert [m.value() for m in consume_all(broker.bootstrap, topic_name, 2)] == [b"first", b"second"]


def test_auto_create_disabled(start_broker, topic_name):
    b = start_broker(settings={"auto.create.topics.enable": "false"})
    p = producer(b.bootstrap, **{"message.timeout.ms": 3000})
    d = Delivery()
    p.produce(topic_name, value=b"x", on_delivery=d)
    p.flush(10)
    assert not d.ok and d.errors, "a produce to an unknown topic must fail when auto-create is off"
    md = admin(b.bootstrap).list_topics(timeout=10)
    assert topic_name not in md.topics or md.topics[topic_name].error is not None


def test_num_partitions_setting_applies_to_auto_created_topics(start_broker, topic_name):
    b = start_broker(settings={"num.partitions": "4"})
    produce_values(b.bootstrap, topic_name, [b"x"])
    wait_for_topic(b.bootstrap, topic_name, 4)


def test_compacted_topic_refuses_records_without_a_key(broker, topic_name):
    """LogValidator: a compacted topic needs a key on every record; a keyless one fails its
    delivery with INVALID_RECORD (not retried) and keyed records go in and come back."""
    from confluent_kafka import KafkaError

    create_topic(broker.bootstrap, topic_name, config={"cleanup.policy": "compact"})
    p = producer(broker.bootstrap, **{"linger.ms": 0})
    d = Delivery()
    p.produce(topic_name, value=b"no key", on_delivery=d)
    assert p.flush(15) == 0
    assert [e.code() for e in d.errors] == [KafkaError.INVALID_RECORD], d.errors
    assert not d.ok
    d = Delivery()
    for i in range(3):
        p.produce(topic_name, key=f"k{i}".encode(), value=f"v{i}".encode(), on_delivery=d)
    assert p.flush(15) == 0
    assert not d.errors, d.errors
    got = consume_all(broker.bootstrap, topic_name, 3)
    assert [(m.key(), m.value(), m.offset()) for m in got] == [
        (f"k{i}".encode(), f"v{i}".encode(), i) for i in range(3)
    ]
