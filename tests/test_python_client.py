"""The users' own Python API (`clients/python`, the `strom` package) against the real binary,
over the JSON protocol on the broker's Kafka port: the lines of issue 13 verbatim, keys,
headers, bytes, errors with codes, reconnect after a restart, and consumer groups of 1-3
JSON members built on the broker's group coordinator (joins, leaves, a member that dies,
restart persistence, a group shared with a Kafka client)."""

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer

from conftest import REPO_ROOT
from helpers import FAST_CLIENT, consume_all

sys.path.insert(0, str(REPO_ROOT / "clients" / "python"))

from strom import SimpleConsumer, SimpleProducer, StromError  # noqa: E402

# Fast group timing for the tests: sessions of 2 s (the broker's minimum is lowered to allow
# it) and no initial rebalance delay (conftest's settings).
SESSION_MS = 2000
GROUP_SETTINGS = {"group.min.session.timeout.ms": "1000"}

ISSUE_SNIPPET = textwrap.dedent('''\
    from strom import SimpleProducer, SimpleConsumer
    producer = SimpleProducer()            # defaults to 127.0.0.1:9092; host/port arguments and STROM_JSON_ADDR override
    producer.connect()
    producer.create_topic("demo-topic", partitions=3)
    response = producer.send("demo-topic", "Hello, Kafka!", partition=0)
    print(f"Message sent with offset: {response['offset']}")
    consumer = SimpleConsumer()
    consumer.connect()
    consumer.subscribe("demo-topic", partition=0)
    for msg in consumer.poll():
        print(f"Received: {msg['value']} (offset: {msg['offset']})")
    ''')


def run_python(code, broker, timeout=60):
    env = dict(os.environ, STROM_JSON_ADDR=broker.bootstrap,
               PYTHONPATH=str(REPO_ROOT / "clients" / "python"))
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_the_issue_snippet_runs_verbatim_on_the_kafka_port(broker):
    out = run_python(ISSUE_SNIPPET, broker)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "Message sent with offset: 0",
        "Received: Hello, Kafka! (offset: 0)",
    ]
    # The same port still speaks Kafka, and it is the same log.
    assert [m.value() for m in consume_all(broker.bootstrap, "demo-topic", 1)] == [b"Hello, Kafka!"]
    # Run again: the topic exists (fine), the message gets the next offset.
    out = run_python(ISSUE_SNIPPET, broker)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == "Message sent with offset: 1"
    assert out.stdout.splitlines()[1:] == ["Received: Hello, Kafka! (offset: 0)",
                                           "Received: Hello, Kafka! (offset: 1)"]


def test_keys_headers_bytes_and_the_partitioner(broker, topic_name):
    with SimpleProducer(port=broker.port) as p:
        assert p.create_topic(topic_name, partitions=3)["created"] is True
        sent = p.send(topic_name, b"\x00\xff", key="user-1", headers={"trace": "abc", "raw": b"\xff"})
        again = p.send(topic_name, "text", key="user-1")
        assert again["partition"] == sent["partition"], "the same key goes to the same partition"
        tomb = p.send(topic_name, None, key="user-1", partition=sent["partition"])
    with SimpleConsumer(port=broker.port) as c:
        c.subscribe(topic_name, partition=sent["partition"])
        msgs = c.poll(timeout=2)
    assert [(m["offset"], m["key"], m["value"]) for m in msgs] == [
        (sent["offset"], "user-1", b"\x00\xff"),
        (again["offset"], "user-1", "text"),
        (tomb["offset"], "user-1", None),
    ]
    assert msgs[0]["headers"] == {"trace": "abc", "raw": b"\xff"}
    assert msgs[0]["topic"] == topic_name and msgs[0]["partition"] == sent["partition"]


def test_errors_carry_the_broker_code_and_the_connection_stays_usable(broker, topic_name):
    with SimpleProducer(port=broker.port) as p:
        with pytest.raises(StromError) as e:
            p.send("no-such-topic", "x")
        assert e.value.code == "unknown_topic" and "no-such-topic" in e.value.message
        assert p.create_topic(topic_name, partitions=1, exist_ok=False)["created"] is True
        with pytest.raises(StromError) as e:
            p.create_topic(topic_name, partitions=1, exist_ok=False)
        assert e.value.code == "topic_already_exists"
        with pytest.raises(StromError) as e:
            p.send(topic_name, "x", partition=7)
        assert e.value.code == "unknown_partition"
        assert p.send(topic_name, "still fine")["offset"] == 0
    c = SimpleConsumer(port=broker.port, group_id="g-err", session_timeout_ms=SESSION_MS)
    c.connect()
    with pytest.raises(StromError) as e:
        c.subscribe("no-such-topic")
    assert e.value.code == "unknown_topic"
    c.close()


def test_poll_timeout_commit_and_positions(broker, topic_name):
    with SimpleProducer(port=broker.port) as p:
        p.create_topic(topic_name, partitions=1)
        c = SimpleConsumer(port=broker.port, consumer_id="manual", auto_commit=False)
        c.connect()
        c.subscribe(topic_name, partition=0)
        started = time.monotonic()
        assert c.poll(timeout=0.5) == []
        assert 0.4 <= time.monotonic() - started < 5, "poll waits about its timeout"
        threading.Timer(0.3, lambda: SimpleProducer(port=broker.port).connect().send(topic_name, "late")).start()
        got = c.poll(timeout=10)
        assert [m["value"] for m in got] == ["late"], "a waiting poll returns as soon as a message arrives"
        p.send(topic_name, "second")
    assert [m["value"] for m in c.poll(timeout=2)] == ["second"]
    assert c.committed(topic_name) == {}, "nothing committed before commit()"
    c.commit()
    assert c.committed(topic_name) == {0: 2}
    c.close()
    # A new consumer object with the same id resumes at the committed position.
    with SimpleConsumer(port=broker.port, consumer_id="manual") as again:
        again.subscribe(topic_name, partition=0)
        assert again.poll(timeout=0.3) == []


def test_reconnects_after_a_broker_restart(broker, topic_name):
    p = SimpleProducer(port=broker.port)
    p.connect()
    p.create_topic(topic_name, partitions=1)
    assert p.send(topic_name, "before")["offset"] == 0
    c = SimpleConsumer(port=broker.port, consumer_id="survivor")
    c.connect()
    c.subscribe(topic_name, partition=0)
    assert [m["value"] for m in c.poll(timeout=2)] == ["before"]
    broker.kill9()
    assert p.send(topic_name, "after")["offset"] == 1, "the producer reconnected by itself"
    assert [m["value"] for m in c.poll(timeout=2)] == ["after"], "the position survived; no re-delivery"
    p.close()
    c.close()


# -- consumer groups ---------------------------------------------------------------------------


def group_member(broker, group, topic):
    c = SimpleConsumer(port=broker.port, group_id=group, session_timeout_ms=SESSION_MS)
    c.connect()
    c.subscribe(topic)
    return c


def produce_n(broker, topic, partitions, per_partition, tag=""):
    with SimpleProducer(port=broker.port) as p:
        for part in range(partitions):
            for i in range(per_partition):
                p.send(topic, f"{tag}p{part}-{i}", partition=part)


def drain(members, expect, timeout_s=30):
    """Polls every member in turn until `expect` messages arrived; returns
    {member index: [(partition, offset, value)]}."""
    got = {i: [] for i in range(len(members))}
    deadline = time.monotonic() + timeout_s
    while sum(len(v) for v in got.values()) < expect and time.monotonic() < deadline:
        for i, m in enumerate(members):
            got[i] += [(x["partition"], x["offset"], x["value"]) for x in m.poll(timeout=0.1)]
    return got


def assert_each_once(got, expected_keys):
    flat = [k[:2] for v in got.values() for k in v]
    assert len(flat) == len(set(flat)), f"duplicates: {sorted(flat)}"
    assert set(flat) == set(expected_keys), "every message exactly once"


def test_one_member_gets_every_partition_and_the_group_is_a_kafka_group(start_broker, topic_name):
    broker = start_broker(settings=GROUP_SETTINGS)
    with SimpleProducer(port=broker.port) as p:
        p.create_topic(topic_name, partitions=3)
    produce_n(broker, topic_name, 3, 4)
    c = group_member(broker, "solo", topic_name)
    assert c.assignment() == [(topic_name, 0), (topic_name, 1), (topic_name, 2)]
    got = drain([c], 12)
    assert_each_once(got, [(p, i) for p in range(3) for i in range(4)])
    assert c.committed(topic_name) == {0: 4, 1: 4, 2: 4}
    # Kafka tooling sees an ordinary consumer group with its member and assignment.
    out = subprocess.run([str(REPO_ROOT / "target" / "release" / "strom") if not os.environ.get("STROM_BIN")
                          else os.environ["STROM_BIN"], "group", "describe", "solo",
                          "--bootstrap", broker.bootstrap], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "strom-json" in out.stdout and c.member_id in out.stdout, out.stdout
    c.close()


def test_two_then_three_members_split_the_partitions_and_leaves_rebalance(start_broker, topic_name):
    broker = start_broker(settings=GROUP_SETTINGS)
    with SimpleProducer(port=broker.port) as p:
        p.create_topic(topic_name, partitions=3)
    a = group_member(broker, "g", topic_name)
    assert len(a.assignment()) == 3
    # B joins while A is not polling: A's broker-side agent rejoins for it.
    b = group_member(broker, "g", topic_name)
    a.poll(timeout=0.2)
    assert sorted(a.assignment() + b.assignment()) == [(topic_name, p) for p in range(3)]
    assert sorted(len(m.assignment()) for m in (a, b)) == [1, 2]
    c = group_member(broker, "g", topic_name)
    for m in (a, b):
        m.poll(timeout=0.2)
    assert sorted(tp for m in (a, b, c) for tp in m.assignment()) == [(topic_name, p) for p in range(3)]
    assert all(len(m.assignment()) == 1 for m in (a, b, c))
    produce_n(broker, topic_name, 3, 5)
    got = drain([a, b, c], 15)
    assert_each_once(got, [(p, i) for p in range(3) for i in range(5)])
    for i, m in enumerate((a, b, c)):
        assert {x[0] for x in got[i]} == {m.assignment()[0][1]}, "each member reads only its partition"
    # C leaves: A and B take over its partition at once and read what comes next.
    c.close()
    produce_n(broker, topic_name, 3, 2, tag="late-")
    got = drain([a, b], 6)
    assert_each_once(got, [(p, i) for p in range(3) for i in range(5, 7)])
    assert sorted(tp for m in (a, b) for tp in m.assignment()) == [(topic_name, p) for p in range(3)]
    a.close()
    b.close()


def test_a_member_that_dies_is_removed_after_its_session_and_nothing_is_lost(start_broker, topic_name):
    broker = start_broker(settings=GROUP_SETTINGS)
    with SimpleProducer(port=broker.port) as p:
        p.create_topic(topic_name, partitions=2)
    a = group_member(broker, "g", topic_name)
    dead = group_member(broker, "g", topic_name)
    a.poll(timeout=0.2)
    assert len(a.assignment()) == 1 and len(dead.assignment()) == 1
    produce_n(broker, topic_name, 2, 3)
    dead_part = dead.assignment()[0][1]
    got = drain([a, dead], 6)
    assert_each_once(got, [(p, i) for p in range(2) for i in range(3)])
    # The member stops polling and its connection goes away without a leave.
    dead._conn.close()
    produce_n(broker, topic_name, 2, 3, tag="after-")
    collected = []
    started = time.monotonic()
    while len(a.assignment()) < 2 and time.monotonic() - started < 15:
        collected += a.poll(timeout=0.2)
    took = time.monotonic() - started
    assert a.assignment() == [(topic_name, 0), (topic_name, 1)], "the survivor took over the partition"
    assert SESSION_MS / 1000 * 0.5 <= took <= SESSION_MS / 1000 + 5, f"removed after about its session ({took:.1f}s)"
    deadline = time.monotonic() + 15
    while len(collected) < 6 and time.monotonic() < deadline:
        collected += a.poll(timeout=0.2)
    # The dead member's partition continues from its last commit: the new messages, once.
    assert sorted((m["partition"], m["offset"]) for m in collected) == [
        (p, i) for p in range(2) for i in range(3, 6)]
    assert {m["value"] for m in collected if m["partition"] == dead_part} == {
        f"after-p{dead_part}-{i}" for i in range(3)}
    # The expired member id gets a clear error.
    raw = socket.create_connection(("127.0.0.1", broker.port), timeout=10)
    raw.sendall(json.dumps({"type": "consume", "group": "g", "member_id": dead.member_id}).encode() + b"\n")
    answer = json.loads(raw.makefile().readline())
    assert answer["ok"] is False and answer["code"] == "unknown_member", answer
    raw.sendall(b'{"type":"list_topics"}\n')
    assert json.loads(raw.makefile().readline())["ok"] is True, "the connection stays usable"
    raw.close()
    a.close()


def test_polling_a_partition_not_assigned_is_a_clear_error(start_broker, topic_name):
    broker = start_broker(settings=GROUP_SETTINGS)
    with SimpleProducer(port=broker.port) as p:
        p.create_topic(topic_name, partitions=2)
    a = group_member(broker, "g", topic_name)
    b = group_member(broker, "g", topic_name)
    a.poll(timeout=0.2)
    not_mine = b.assignment()[0]
    raw = socket.create_connection(("127.0.0.1", broker.port), timeout=10)
    f = raw.makefile("rwb")
    f.write(json.dumps({"type": "consume", "group": "g", "member_id": a.member_id,
                        "topic": not_mine[0], "partition": not_mine[1]}).encode() + b"\n")
    f.flush()
    answer = json.loads(f.readline())
    assert answer["ok"] is False and answer["code"] == "not_assigned", answer
    f.write(json.dumps({"type": "consume", "group": "g", "member_id": a.member_id,
                        "topic": a.assignment()[0][0], "partition": a.assignment()[0][1]}).encode() + b"\n")
    f.flush()
    assert json.loads(f.readline())["ok"] is True
    raw.close()
    a.close()
    b.close()


def test_the_group_resumes_where_it_left_off_after_kill_9(start_broker, topic_name):
    broker = start_broker(settings=GROUP_SETTINGS)
    with SimpleProducer(port=broker.port) as p:
        p.create_topic(topic_name, partitions=2)
    produce_n(broker, topic_name, 2, 10)
    c = group_member(broker, "g", topic_name)
    first = []
    while len(first) < 8:
        first += c.poll(timeout=1, max_messages=4)
    broker.kill9()
    rest = []
    deadline = time.monotonic() + 30
    while len(first) + len(rest) < 20 and time.monotonic() < deadline:
        rest += c.poll(timeout=0.5)
    keys = [(m["partition"], m["offset"]) for m in first + rest]
    assert sorted(keys) == [(p, i) for p in range(2) for i in range(10)], "every message once across the crash"
    assert c.committed(topic_name) == {0: 10, 1: 10}
    c.close()


def test_a_group_shared_by_a_json_member_and_a_kafka_consumer(start_broker, topic_name):
    broker = start_broker(settings=GROUP_SETTINGS)
    with SimpleProducer(port=broker.port) as p:
        p.create_topic(topic_name, partitions=2)
    json_member = group_member(broker, "mixed", topic_name)
    kafka = Consumer({**FAST_CLIENT, "bootstrap.servers": broker.bootstrap, "group.id": "mixed",
                      "auto.offset.reset": "earliest", "partition.assignment.strategy": "range",
                      "session.timeout.ms": 6000, "enable.auto.commit": False})
    kafka.subscribe([topic_name])
    # Both members poll until the group has settled with one partition each.
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline and not (
            len(kafka.assignment()) == 1 and len(json_member.assignment()) == 1):
        assert kafka.poll(0.1) is None
        assert json_member.poll(timeout=0.05) == []
    assert len(kafka.assignment()) == 1 and len(json_member.assignment()) == 1
    assert {kafka.assignment()[0].partition, json_member.assignment()[0][1]} == {0, 1}
    produce_n(broker, topic_name, 2, 5)
    seen = []
    while len(seen) < 10 and time.monotonic() < deadline:
        m = kafka.poll(0.1)
        if m is not None and not m.error():
            seen.append(("kafka", m.partition(), m.offset()))
            kafka.commit(m, asynchronous=False)
        seen += [("json", x["partition"], x["offset"]) for x in json_member.poll(timeout=0.05)]
    assert sorted(s[1:] for s in seen) == [(p, i) for p in range(2) for i in range(5)], "every message once"
    assert {(s[0], s[1]) for s in seen} == {("kafka", kafka.assignment()[0].partition),
                                            ("json", json_member.assignment()[0][1])}
    # The group, seen by Kafka tooling, has both members.
    from helpers import admin
    desc = admin(broker.bootstrap).describe_consumer_groups(["mixed"])["mixed"].result()
    assert sorted(m.client_id for m in desc.members) == sorted(["strom-json", FAST_CLIENT.get("client.id", "rdkafka")])
    kafka.close()
    json_member.close()
