"""The JSON-over-TCP protocol (`strom serve --json-listen`) against the real binary: it is the
same log as Kafka's, so confluent-kafka reads what JSON wrote and JSON reads what
confluent-kafka wrote; keys land on the partition the Java client would pick; consumer
positions are committed offsets of the group `json:<consumer_id>` and survive restarts;
errors leave the connection usable; over-long lines are refused and skipped."""

import base64
import json
import socket
import time

from confluent_kafka import Consumer, TopicPartition

from conftest import free_port
from helpers import FAST_CLIENT, Delivery, admin, consume_all, create_topic, producer

# Every response must arrive within this.
RESPONSE_TIMEOUT_S = 20


class JsonConn:
    """One JSON protocol connection: `call` sends a request line and returns the response."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=RESPONSE_TIMEOUT_S)
        self.file = self.sock.makefile("rwb")

    def send_raw(self, data):
        self.file.write(data)
        self.file.flush()

    def recv(self):
        line = self.file.readline()
        assert line.endswith(b"\n"), f"no complete response line: {line!r}"
        return json.loads(line)

    def call(self, **request):
        self.send_raw(json.dumps(request).encode() + b"\n")
        return self.recv()

    def ok(self, **request):
        r = self.call(**request)
        assert r["ok"] is True, f"{request} failed: {r}"
        return r

    def err(self, code, **request):
        r = self.call(**request)
        assert r["ok"] is False and r["code"] == code, f"{request}: expected {code}, got {r}"
        assert r["error"], r
        return r["error"]

    def close(self):
        self.file.close()
        self.sock.close()


def start_json_broker(start_broker, settings=None):
    port = free_port()
    b = start_broker(settings=settings, extra_args=["--json-listen", f"127.0.0.1:{port}"])
    b.json_port = port
    return b


def connect(b):
    deadline = time.monotonic() + 10
    while True:
        try:
            return JsonConn(b.json_port)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_kafka_clients_read_what_json_wrote(start_broker, topic_name):
    b = start_json_broker(start_broker)
    c = connect(b)
    c.ok(type="create_topic", topic=topic_name, partitions=2)
    r = c.ok(type="produce", topic=topic_name, partition=0, value="Hello, Kafka!", key="k1")
    assert (r["partition"], r["offset"]) == (0, 0)
    c.ok(type="produce", topic=topic_name, partition=0, value_b64=base64.b64encode(b"\x00\xff").decode(),
         headers={"source": "json"}, timestamp=1_700_000_000_000)
    c.ok(type="produce", topic=topic_name, partition=1, value=None, key="tomb")

    msgs = consume_all(b.bootstrap, topic_name, 3, partitions=(0, 1))
    by_offset = {(m.partition(), m.offset()): m for m in msgs}
    hello = by_offset[(0, 0)]
    assert (hello.value(), hello.key()) == (b"Hello, Kafka!", b"k1")
    binary = by_offset[(0, 1)]
    assert binary.value() == b"\x00\xff"
    assert binary.headers() == [("source", b"json")]
    assert binary.timestamp()[1] == 1_700_000_000_000
    tomb = by_offset[(1, 0)]
    assert (tomb.value(), tomb.key()) == (None, b"tomb")


def test_json_reads_what_kafka_clients_wrote(start_broker, topic_name):
    b = start_json_broker(start_broker)
    create_topic(b.bootstrap, topic_name, partitions=3)
    # murmur2_random is the Java client's partitioner, which Strom's JSON produce follows.
    p = producer(b.bootstrap, partitioner="murmur2_random")
    d = Delivery()
    keys = [f"user-{i}" for i in range(12)]
    for k in keys:
        p.produce(topic_name, key=k.encode(), value=f"from kafka {k}".encode(),
                  headers=[("h", b"v"), ("bin", b"\xfe")], on_delivery=d)
    assert p.flush(30) == 0 and not d.errors, d.errors
    kafka_partition = {}
    for part, off, value in d.ok:
        kafka_partition[value.decode().split()[-1]] = part

    c = connect(b)
    seen = {}
    for part in range(3):
        r = c.ok(type="consume", topic=topic_name, partition=part, consumer_id="reader", max_messages=100)
        for m in r["messages"]:
            seen[m["key"]] = (part, m)
    assert set(seen) == set(keys)
    for k, (part, m) in seen.items():
        assert part == kafka_partition[k]
        assert m["value"] == f"from kafka {k}"
        assert m["headers"] == {"h": "v"}
        assert m["headers_b64"] == {"bin": base64.b64encode(b"\xfe").decode()}

    # Compressed batches are decoded too.
    for codec in ("gzip", "snappy", "lz4", "zstd"):
        p = producer(b.bootstrap, **{"compression.type": codec})
        d = Delivery()
        for i in range(5):
            p.produce(topic_name, value=f"{codec}-{i}".encode(), partition=2, on_delivery=d)
        assert p.flush(30) == 0 and not d.errors, d.errors
        r = c.ok(type="consume", topic=topic_name, partition=2, consumer_id="reader", max_messages=100)
        assert [m["value"] for m in r["messages"]] == [f"{codec}-{i}" for i in range(5)]

    # A keyed JSON produce without a partition lands where the Java partitioner puts the key.
    for k in keys:
        r = c.ok(type="produce", topic=topic_name, key=k, value="from json")
        assert r["partition"] == kafka_partition[k], k


def test_consumer_positions_survive_restart_and_are_kafka_group_offsets(start_broker, topic_name):
    b = start_json_broker(start_broker)
    c = connect(b)
    c.ok(type="create_topic", topic=topic_name, partitions=1)
    for i in range(10):
        c.ok(type="produce", topic=topic_name, partition=0, value=f"m{i}")
    r = c.ok(type="consume", topic=topic_name, partition=0, consumer_id="c1", max_messages=4)
    assert [m["value"] for m in r["messages"]] == ["m0", "m1", "m2", "m3"]
    c.close()

    # Kafka tools see the position as the committed offset of group json:c1.
    groups = admin(b.bootstrap).list_consumer_groups(request_timeout=10).result()
    assert "json:c1" in {g.group_id for g in groups.valid}
    k = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "json:c1", **FAST_CLIENT})
    try:
        [tp] = k.committed([TopicPartition(topic_name, 0)], timeout=10)
        assert tp.offset == 4
    finally:
        k.close()

    b.restart()
    c = connect(b)
    r = c.ok(type="consume", topic=topic_name, partition=0, consumer_id="c1", max_messages=3)
    assert [m["value"] for m in r["messages"]] == ["m4", "m5", "m6"]

    b.kill9()
    c = connect(b)
    r = c.ok(type="consume", topic=topic_name, partition=0, consumer_id="c1")
    assert [m["value"] for m in r["messages"]] == ["m7", "m8", "m9"]
    assert c.ok(type="consume", topic=topic_name, partition=0, consumer_id="c1")["messages"] == []

    # A Kafka consumer committing to the group moves the JSON consumer too.
    k = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "json:c1", "enable.auto.commit": False,
                  **FAST_CLIENT})
    try:
        k.commit(offsets=[TopicPartition(topic_name, 0, 8)], asynchronous=False)
    finally:
        k.close()
    r = c.ok(type="consume", topic=topic_name, partition=0, consumer_id="c1")
    assert [m["value"] for m in r["messages"]] == ["m8", "m9"]


def test_errors_keep_the_connection_usable(start_broker, topic_name):
    b = start_json_broker(start_broker)
    c = connect(b)
    c.ok(type="create_topic", topic=topic_name, partitions=1)
    c.send_raw(b'{"type": "produce", \n')
    r = c.recv()
    assert (r["ok"], r["code"]) == (False, "bad_json")
    assert "unknown type" in c.err("bad_request", type="explode")
    assert 'missing field "topic"' in c.err("bad_request", type="produce", value="v")
    assert 'missing field "partition"' in c.err("bad_request", type="consume", topic=topic_name, consumer_id="x")
    assert "no-such-topic" in c.err("unknown_topic", type="produce", topic="no-such-topic", value="v")
    c.err("unknown_topic", type="consume", topic="no-such-topic", partition=0, consumer_id="x")
    c.err("unknown_topic", type="describe_topic", topic="no-such-topic")
    c.err("unknown_partition", type="consume", topic=topic_name, partition=5, consumer_id="x")
    c.err("topic_already_exists", type="create_topic", topic=topic_name, partitions=1)
    r = c.ok(type="produce", topic=topic_name, partition=0, value="still fine")
    assert r["offset"] == 0
    listed = c.ok(type="list_topics")["topics"]
    assert {"topic": topic_name, "partitions": 1} in listed


def test_too_long_lines_are_refused_and_skipped(start_broker, topic_name):
    b = start_json_broker(start_broker, settings={"json.max.line.bytes": "4096"})
    c = connect(b)
    c.ok(type="create_topic", topic=topic_name, partitions=1)
    big = json.dumps({"type": "produce", "topic": topic_name, "partition": 0, "value": "x" * 50_000})
    c.send_raw(big.encode() + b"\n")
    r = c.recv()
    assert (r["ok"], r["code"]) == (False, "line_too_long"), r
    r = c.ok(type="produce", topic=topic_name, partition=0, value="y" * 3000)
    assert r["offset"] == 0, "the over-long produce must not have been appended"
