"""The JSON API under /api/ against the real binary, checked with Kafka clients on the other
side: a topic created over HTTP is a Kafka topic, a message produced over HTTP is read by
confluent-kafka with its key and headers (and the other way round), configs edited over HTTP
are what DescribeConfigs reports, group offsets reset over HTTP are what the client then
commits from, and bad input gets a clear 4xx JSON error."""

import subprocess
import uuid

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import ConfigResource

import helpers
from conftest import strom_bin
from httpcheck import call, get, start_http_broker

pytestmark = pytest.mark.timeout(60)


def test_topics_created_and_deleted_over_http_are_kafka_topics(start_broker, topic_name):
    b = start_http_broker(start_broker)
    status, body = call("POST", f"{b.http}/api/topics", {"name": topic_name, "partitions": 3, "configs": {"retention.ms": "60000"}})
    assert status == 201, body
    assert body == {"name": topic_name, "partitions": 3}
    helpers.wait_for_topic(b.bootstrap, topic_name, 3)
    status, topics = call("GET", f"{b.http}/api/topics")
    assert status == 200
    row = next(t for t in topics if t["name"] == topic_name)
    assert row["partitions"] == 3 and row["retention_ms"] == "60000"

    status, body = call("POST", f"{b.http}/api/topics", {"name": topic_name, "partitions": 1})
    assert status == 409 and "already exists" in body["error"], body

    status, body = call("PUT", f"{b.http}/api/topics/{topic_name}/configs", {"set": {"retention.bytes": "1048576"}, "delete": ["retention.ms"]})
    assert status == 200, body
    res = ConfigResource(ConfigResource.Type.TOPIC, topic_name)
    configs = helpers.admin(b.bootstrap).describe_configs([res], request_timeout=10)[res].result(timeout=10)
    assert configs["retention.bytes"].value == "1048576"
    assert configs["retention.ms"].is_default

    status, body = call("DELETE", f"{b.http}/api/topics/{topic_name}")
    assert status == 200, body
    assert topic_name not in helpers.admin(b.bootstrap).list_topics(timeout=10).topics


def test_messages_browse_and_produce_interoperate_with_kafka_clients(start_broker, topic_name):
    b = start_http_broker(start_broker)
    helpers.create_topic(b.bootstrap, topic_name, partitions=1)
    p = helpers.producer(b.bootstrap)
    p.produce(topic_name, key=b"order-7", value=b'{"total": 12.5, "items": [1, 2]}', headers=[("trace", b"abc"), ("bin", b"\xff\x00")], partition=0)
    p.produce(topic_name, key=None, value=b"\x00\x01\xfe", partition=0)
    assert p.flush(15) == 0

    status, page = call("GET", f"{b.http}/api/topics/{topic_name}/messages?partition=0&offset=0&limit=10")
    assert status == 200, page
    assert (page["start_offset"], page["end_offset"], page["next_offset"]) == (0, 2, 2)
    first, second = page["messages"]
    assert first["offset"] == 0
    assert first["key"] == {"encoding": "text", "data": "order-7", "size": 7}
    assert first["value"]["encoding"] == "json" and first["value"]["data"] == {"total": 12.5, "items": [1, 2]}
    assert [(h["key"], h["value"]["encoding"], h["value"]["data"]) for h in first["headers"]] == [("trace", "text", "abc"), ("bin", "hex", "ff00")]
    assert second["key"] is None
    assert second["value"] == {"encoding": "hex", "data": "0001fe", "size": 3}

    # Searching, and starting from a time.
    status, found = call("GET", f"{b.http}/api/topics/{topic_name}/messages?partition=0&search=order-7")
    assert status == 200 and [m["offset"] for m in found["messages"]] == [0], found
    status, by_time = call("GET", f"{b.http}/api/topics/{topic_name}/messages?partition=0&timestamp=0")
    assert status == 200 and by_time["from_offset"] == 0

    # A test message from the API reaches a Kafka consumer with key and headers.
    status, produced = call("POST", f"{b.http}/api/topics/{topic_name}/messages", {"partition": 0, "key": "k1", "value": "hello", "headers": {"h1": "v1"}})
    assert status == 201, produced
    assert produced["offset"] == 2
    msgs = helpers.consume_all(b.bootstrap, topic_name, 3)
    m = msgs[2]
    assert (m.offset(), m.key(), m.value(), m.headers()) == (2, b"k1", b"hello", [("h1", b"v1")])


def test_bad_input_gets_a_clear_4xx_json_error(start_broker, topic_name):
    b = start_http_broker(start_broker)
    helpers.create_topic(b.bootstrap, topic_name, partitions=1)
    cases = [
        ("GET", f"/api/topics/no-such-topic", None, None, 404, "unknown topic"),
        ("GET", f"/api/topics/{topic_name}/messages?partition=7", None, None, 404, "no partition 7"),
        ("GET", f"/api/topics/{topic_name}/messages?limit=100000", None, None, 400, "limit must be between 1 and 500"),
        ("GET", f"/api/topics/{topic_name}/messages?offset=99", None, None, 400, "out of range"),
        ("GET", f"/api/topics/{topic_name}/messages?offset=abc", None, None, 400, "bad query parameters"),
        ("GET", f"/api/topics/{topic_name}/messages?format=base64", None, None, 400, "format must be"),
        ("POST", "/api/topics", None, b"{not json", 400, "malformed JSON"),
        ("POST", "/api/topics", {"name": "x", "partitions": 0}, None, 400, "partitions"),
        ("POST", "/api/topics", {"name": "bad/name"}, None, 400, "illegal"),
        ("POST", "/api/topics", {"name": "x", "bogus": 1}, None, 400, "unknown field"),
        ("PUT", f"/api/topics/{topic_name}/configs", {"set": {"no.such.config": "1"}}, None, 400, "Unknown topic config"),
        ("POST", "/api/groups/g1/reset-offsets", {"topic": topic_name, "to": "somewhere"}, None, 400, "to must be"),
        ("GET", "/api/groups/no-such-group", None, None, 404, "unknown group"),
        ("GET", "/api/nothing-here", None, None, 404, "no such API endpoint"),
    ]
    for method, path, body, raw, want_status, want_text in cases:
        status, got = call(method, b.http + path, body, raw)
        assert status == want_status, (path, status, got)
        assert want_text.lower() in got["error"].lower(), (path, got)
        assert got["status"] == want_status


def test_reset_offsets_only_when_the_group_is_empty(start_broker, topic_name):
    b = start_http_broker(start_broker)
    helpers.create_topic(b.bootstrap, topic_name, partitions=1)
    helpers.produce_values(b.bootstrap, topic_name, [b"m%d" % i for i in range(10)], partition=0)
    group = f"g-{uuid.uuid4().hex[:8]}"
    c = helpers.consumer(b.bootstrap, group=group, **{"session.timeout.ms": 6000})
    c.subscribe([topic_name])
    got = []
    for _ in range(40):
        got += [m for m in c.consume(num_messages=10, timeout=0.5) if not m.error()]
        if len(got) >= 10:
            break
    assert len(got) == 10
    c.commit(asynchronous=False)
    # With a live member the reset is refused.
    status, body = call("POST", f"{b.http}/api/groups/{group}/reset-offsets", {"topic": topic_name, "to": "earliest"})
    assert status == 409 and "empty" in body["error"], body
    c.close()

    status, body = call("POST", f"{b.http}/api/groups/{group}/reset-offsets", {"topic": topic_name, "to": "offset", "offset": 3})
    assert status == 200, body
    assert body["offsets"] == [{"partition": 0, "offset": 3}]
    c2 = helpers.consumer(b.bootstrap, group=group)
    try:
        committed = c2.committed([TopicPartition(topic_name, 0)], timeout=10)
        assert committed[0].offset == 3
    finally:
        c2.close()
    status, g = call("GET", f"{b.http}/api/groups/{group}")
    assert g["offsets"][0]["lag"] == 7 and g["state"] == "Empty"

    status, body = call("POST", f"{b.http}/api/groups/{group}/reset-offsets", {"topic": topic_name, "to": "latest"})
    assert status == 200 and body["offsets"] == [{"partition": 0, "offset": 10}], body


def test_cluster_and_console_assets_are_served(start_broker):
    b = start_http_broker(start_broker)
    status, c = call("GET", f"{b.http}/api/cluster")
    assert status == 200 and c["version"] == "0.1.0" and c["node_id"] == 1, c
    status, html = get(b.http + "/")
    assert status == 200 and "/console/app.js" in html
    for asset in ("/console/app.js", "/console/style.css"):
        status, text = get(b.http + asset)
        assert status == 200 and len(text) > 100


def test_strom_top_shows_topics_and_group_lag(start_broker, topic_name):
    b = start_http_broker(start_broker)
    helpers.create_topic(b.bootstrap, topic_name, partitions=1)
    helpers.produce_values(b.bootstrap, topic_name, [b"x"] * 5, partition=0)
    group = f"g-{uuid.uuid4().hex[:8]}"
    c = helpers.consumer(b.bootstrap, group=group)
    try:
        c.commit(offsets=[TopicPartition(topic_name, 0, 1)], asynchronous=False)
    finally:
        c.close()
    out = subprocess.run([str(strom_bin()), "top", "--http", b.http.removeprefix("http://"), "--iterations", "1"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    topic_line = next(line for line in lines if line.startswith(topic_name))
    assert topic_line.split()[1:3] == ["1", "5"], topic_line
    group_line = next(line for line in lines if line.startswith(group))
    assert group_line.split()[1:] == ["Empty", "0", "4"], group_line


def test_strom_top_names_the_setting_when_nothing_listens(tmp_path):
    from conftest import free_port
    out = subprocess.run([str(strom_bin()), "top", "--http", f"127.0.0.1:{free_port()}", "--iterations", "1"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode != 0 and "http.listen" in out.stderr, out.stderr
