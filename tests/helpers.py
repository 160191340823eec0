"""Small helpers over confluent-kafka (librdkafka) shared by the integration tests.

Every wait here is bounded: a helper that runs out of time returns what it has, and the
test's assertion says what was missing.
"""

import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

# librdkafka settings that keep a failing test from waiting out its defaults.
FAST_CLIENT = {
    "socket.timeout.ms": 10000,
    "reconnect.backoff.ms": 50,
    "reconnect.backoff.max.ms": 500,
}


# AdminClient futures fail with _DESTROY if their client is freed first, so clients are kept
# here until the test's brokers stop (conftest calls forget_clients).
_ADMINS = {}


def admin(bootstrap):
    client = _ADMINS.get(bootstrap)
    if client is None:
        client = _ADMINS[bootstrap] = AdminClient({"bootstrap.servers": bootstrap, **FAST_CLIENT})
    return client


def forget_clients():
    _ADMINS.clear()


def create_topic(bootstrap, topic, partitions=1, config=None, timeout_s=15):
    futures = admin(bootstrap).create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1, config=config or {})],
        operation_timeout=timeout_s,
        request_timeout=timeout_s,
    )
    futures[topic].result(timeout=timeout_s)
    wait_for_topic(bootstrap, topic, partitions)


def wait_for_topic(bootstrap, topic, partitions, timeout_s=10):
    deadline = time.monotonic() + timeout_s
    client = admin(bootstrap)
    seen = None
    while time.monotonic() < deadline:
        md = client.list_topics(timeout=5)
        t = md.topics.get(topic)
        if t is not None and t.error is None:
            seen = len(t.partitions)
            if seen == partitions:
                return
        time.sleep(0.1)
    raise AssertionError(f"topic {topic} has {seen} partitions in metadata, expected {partitions}")


class Delivery:
    """Collects delivery reports: successes as (partition, offset, value), failures as errors."""

    def __init__(self):
        self.ok = []
        self.errors = []

    def __call__(self, err, msg):
        if err is not None:
            self.errors.append(err)
        else:
            self.ok.append((msg.partition(), msg.offset(), msg.value()))


def producer(bootstrap, **conf):
    base = {"bootstrap.servers": bootstrap, "linger.ms": 5, "message.timeout.ms": 15000, **FAST_CLIENT}
    base.update(conf)
    return Producer(base)


def produce_values(bootstrap, topic, values, partition=None, flush_each=False, **conf):
    """Produce values (bytes) and wait for every delivery report; returns the Delivery."""
    p = producer(bootstrap, **conf)
    d = Delivery()
    for v in values:
        kwargs = {"value": v, "on_delivery": d}
        if partition is not None:
            kwargs["partition"] = partition
        p.produce(topic, **kwargs)
        if flush_each:
            p.flush(15)
        else:
            p.poll(0)
    remaining = p.flush(30)
    assert remaining == 0, f"{remaining} messages still undelivered after flush"
    assert not d.errors, f"delivery errors: {d.errors[:5]}"
    return d


def consumer(bootstrap, group=None, **conf):
    base = {
        "bootstrap.servers": bootstrap,
        "group.id": group or f"helper-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
        **FAST_CLIENT,
    }
    base.update(conf)
    return Consumer(base)


def consume_partitions(bootstrap, topic, partitions, expected, timeout_s=20, start=OFFSET_BEGINNING, **conf):
    """Read `partitions` of `topic` from `start` by assignment (no group) until `expected`
    messages arrived or the time is up. Returns the messages; raises on a consumer error."""
    c = consumer(bootstrap, **conf)
    try:
        c.assign([TopicPartition(topic, p, start) for p in partitions])
        out = []
        deadline = time.monotonic() + timeout_s
        while len(out) < expected and time.monotonic() < deadline:
            for m in c.consume(num_messages=500, timeout=0.5):
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        continue
                    raise AssertionError(f"consumer error: {m.error()}")
                out.append(m)
        return out
    finally:
        c.close()


def consume_all(bootstrap, topic, expected, partitions=(0,), timeout_s=20, **conf):
    msgs = consume_partitions(bootstrap, topic, list(partitions), expected, timeout_s, **conf)
    assert len(msgs) >= expected, f"consumed {len(msgs)} of {expected} messages from {topic}"
    return msgs


def watermarks(bootstrap, topic, partition=0):
    c = consumer(bootstrap)
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10, cached=False)
    finally:
        c.close()


def assert_healthy(bootstrap, topic=None, expected_values=None):
    """A fresh librdkafka client can produce to and read back from the broker, and the
    values already stored in partition 0 of `topic` are still all there, in order."""
    probe = f"health-{uuid.uuid4().hex[:8]}"
    d = produce_values(bootstrap, probe, [b"ping-1", b"ping-2"], partition=0)
    assert [o for _, o, _ in d.ok] == [0, 1]
    got = [m.value() for m in consume_all(bootstrap, probe, 2)]
    assert got == [b"ping-1", b"ping-2"]
    if topic is not None:
        got = [m.value() for m in consume_all(bootstrap, topic, len(expected_values))]
        assert got == list(expected_values), "stored data changed"
