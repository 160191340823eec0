"""Topic configs that make the broker look inside batches, as Kafka's LogValidator does:
`compression.type` other than `producer` (batches rewritten in the topic's codec) and the
CreateTime window `message.timestamp.before.max.ms` / `after.max.ms` (INVALID_TIMESTAMP)."""

import struct
import time

import pytest
from confluent_kafka import KafkaError

from helpers import Delivery, admin, consume_all, create_topic, producer

CODEC_IDS = {"uncompressed": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


def stored_codecs(broker, topic):
    """The codec id of every batch in partition 0's segment files, in log order."""
    codecs = []
    for segment in sorted(broker.partition_dir(topic).glob("*.log")):
        data = segment.read_bytes()
        pos = 0
        while pos + 61 <= len(data):
            (length,) = struct.unpack(">i", data[pos + 8 : pos + 12])
            if length <= 0:
                break
            (attributes,) = struct.unpack(">h", data[pos + 21 : pos + 23])
            codecs.append(attributes & 7)
            pos += 12 + length
    return codecs


@pytest.mark.parametrize("topic_codec,producer_codec", [("zstd", "lz4"), ("uncompressed", "gzip"), ("snappy", "none")])
def test_compression_type_rewrites_batches_and_keeps_every_record(broker, topic_name, topic_codec, producer_codec):
    create_topic(broker.bootstrap, topic_name, config={"compression.type": topic_codec})
    p = producer(broker.bootstrap, **{"compression.type": producer_codec, "linger.ms": 50})
    d = Delivery()
    sent = []
    base_ts = int(time.time() * 1000) - 1000
    for i in range(200):
        key = f"key-{i}".encode()
        value = (f"value-{i}-" * 30).encode()
        # Repeated header names stay, in order: the records are never re-parsed.
        headers = [("h", b"first"), ("h", str(i).encode()), ("n", None)]
        p.produce(topic_name, key=key, value=value, headers=headers, timestamp=base_ts + i, on_delivery=d)
        sent.append((key, value, headers, base_ts + i))
    assert p.flush(30) == 0
    assert not d.errors, d.errors
    got = consume_all(broker.bootstrap, topic_name, len(sent))
    assert [(m.key(), m.value(), m.headers(), m.timestamp()[1], m.offset()) for m in got] == [
        (k, v, h, ts, i) for i, (k, v, h, ts) in enumerate(sent)
    ]
    codecs = stored_codecs(broker, topic_name)
    assert codecs and set(codecs) == {CODEC_IDS[topic_codec]}, codecs


def test_compression_type_producer_stores_what_the_producer_sent(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, config={"compression.type": "producer"})
    p = producer(broker.bootstrap, **{"compression.type": "lz4"})
    d = Delivery()
    for i in range(20):
        p.produce(topic_name, key=b"k", value=b"v" * 100, on_delivery=d)
    assert p.flush(30) == 0 and not d.errors
    assert set(stored_codecs(broker, topic_name)) == {CODEC_IDS["lz4"]}


def test_unknown_compression_type_is_invalid_config(broker, topic_name):
    from confluent_kafka.admin import NewTopic

    futures = admin(broker.bootstrap).create_topics(
        [NewTopic(topic_name, 1, 1, config={"compression.type": "brotli"})], request_timeout=15
    )
    with pytest.raises(Exception) as e:
        futures[topic_name].result()
    assert e.value.args[0].code() == KafkaError.INVALID_CONFIG


def test_timestamps_outside_the_window_are_invalid_timestamp_and_nothing_is_stored(broker, topic_name):
    create_topic(
        broker.bootstrap,
        topic_name,
        config={"message.timestamp.before.max.ms": "3600000", "message.timestamp.after.max.ms": "60000"},
    )
    p = producer(broker.bootstrap, **{"linger.ms": 0, "enable.idempotence": False, "retries": 0})
    now = int(time.time() * 1000)
    cases = {
        "two hours old": now - 2 * 3600_000,
        "ten minutes ahead": now + 600_000,
    }
    for ts in cases.values():
        d = Delivery()
        p.produce(topic_name, key=b"k", value=b"late", timestamp=ts, on_delivery=d)
        assert p.flush(15) == 0
        assert [e.code() for e in d.errors] == [KafkaError.INVALID_TIMESTAMP], d.errors
    # Inside the window (and at the edges of a lenient clock) records go in and come back.
    d = Delivery()
    good = [now - 1800_000, now - 1000, now + 30_000]
    for ts in good:
        p.produce(topic_name, key=b"k", value=str(ts).encode(), timestamp=ts, on_delivery=d)
    assert p.flush(15) == 0
    assert not d.errors, d.errors
    got = consume_all(broker.bootstrap, topic_name, len(good))
    assert [(m.value(), m.timestamp()[1], m.offset()) for m in got] == [
        (str(ts).encode(), ts, i) for i, ts in enumerate(good)
    ]


def test_log_append_time_topics_ignore_the_window(broker, topic_name):
    """Kafka checks the window only for CreateTime: a LogAppendTime topic stamps its own."""
    create_topic(
        broker.bootstrap,
        topic_name,
        config={"message.timestamp.type": "LogAppendTime", "message.timestamp.before.max.ms": "1000"},
    )
    p = producer(broker.bootstrap, **{"linger.ms": 0})
    d = Delivery()
    p.produce(topic_name, key=b"k", value=b"old", timestamp=1_000_000, on_delivery=d)
    assert p.flush(15) == 0
    assert not d.errors, d.errors
    (m,) = consume_all(broker.bootstrap, topic_name, 1)
    assert m.value() == b"old" and m.timestamp()[1] > 1_000_000
