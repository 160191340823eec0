"""The HTTP listener's /health, /ready and /metrics against the real binary, with /metrics read
by Prometheus' own text parser (prometheus_client.parser): the traffic counters move by exactly
what clients sent, group lag matches what the client computes, and the `http.listen` port
rules hold (a taken default only warns; a taken explicit address stops startup)."""

import socket
import struct
import subprocess
import time
import uuid

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import NewTopic

import helpers
import wire
from conftest import free_port, strom_bin
from httpcheck import call, get, sample, scrape, start_http_broker

pytestmark = pytest.mark.timeout(60)


def test_health_ready_and_a_parseable_exposition(start_broker):
    b = start_http_broker(start_broker)
    assert get(b.http + "/health") == (200, "ok\n")
    # /ready turns 200 once recovery is done and the listeners are up (a moment after the
    # Kafka port accepts); until then it is 503.
    deadline = time.monotonic() + 5
    while get(b.http + "/ready")[0] != 200 and time.monotonic() < deadline:
        assert get(b.http + "/ready")[0] in (200, 503)
        time.sleep(0.02)
    assert get(b.http + "/ready") == (200, "ready\n")
    s = scrape(b)
    assert sample(s, "strom_build_info", version="0.1.0") == 1
    assert sample(s, "strom_metrics_enabled") == 1
    assert sample(s, "process_resident_memory_bytes") > 1_000_000
    assert sample(s, "process_open_fds") > 3
    assert sample(s, "strom_uptime_seconds") > 0
    assert sample(s, "strom_offline_partitions") == 0
    # The scrape itself is an open, accepted HTTP connection.
    assert sample(s, "strom_connections_accepted_total", listener="http") >= 1
    assert sample(s, "strom_connections_open", listener="http") >= 1


def test_byte_and_record_counters_move_by_exactly_what_was_produced(start_broker, topic_name):
    b = start_http_broker(start_broker)
    helpers.create_topic(b.bootstrap, topic_name, partitions=2)
    before = scrape(b)

    # Hand-made batches: their exact sizes are known.
    batches = [
        wire.record_batch([b"a" * 10]),
        wire.record_batch([b"b" * 100, b"c" * 5, b"d"]),
        wire.record_batch([b"x" * 1000] * 7, keys=[b"k"] * 7),
    ]
    conn = wire.Conn(b.bootstrap)
    try:
        for i, batch in enumerate(batches):
            conn.send(wire.produce_request_v3(topic_name, 1, batch, correlation_id=i))
            _, results = wire.parse_produce_v3(conn.recv_frame())
            assert [r[2] for r in results] == [wire.ERROR_NONE]
    finally:
        conn.close()
    after = scrape(b)
    produced_bytes = sum(len(x) for x in batches)

    def delta(name, **labels):
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert delta("strom_topic_bytes_in_total", topic=topic_name) == produced_bytes
    assert delta("strom_topic_records_in_total", topic=topic_name) == 11
    assert delta("strom_partition_bytes_in_total", topic=topic_name, partition=1) == produced_bytes
    assert delta("strom_partition_bytes_in_total", topic=topic_name, partition=0) == 0
    assert delta("strom_requests_total", api="Produce", version=3) == 3
    assert delta("strom_request_duration_seconds_count", api="Produce") == 3
    # acks=all: each of them waited for the group-commit fsync.
    assert delta("strom_produce_fsync_wait_seconds_count") == 3
    assert delta("strom_fsync_duration_seconds_count") >= 1
    # Storage figures agree with the partition directory.
    log_bytes = sum(f.stat().st_size for f in b.partition_dir(topic_name, 1).glob("*.log"))
    assert sample(after, "strom_log_size_bytes", topic=topic_name, partition=1) == log_bytes == produced_bytes
    assert sample(after, "strom_log_end_offset", topic=topic_name, partition=1) == 11
    assert sample(after, "strom_log_flushed_offset", topic=topic_name, partition=1) == 11
    assert sample(after, "strom_log_segments", topic=topic_name, partition=1) == 1

    # A real client: every record counted once, and bytes match what landed on disk.
    n = 500
    helpers.produce_values(b.bootstrap, topic_name, [f"v{i}".encode() for i in range(n)], partition=0)
    mid = scrape(b)
    log0 = sum(f.stat().st_size for f in b.partition_dir(topic_name, 0).glob("*.log"))
    assert sample(mid, "strom_topic_records_in_total", topic=topic_name) - sample(after, "strom_topic_records_in_total", topic=topic_name) == n
    assert sample(mid, "strom_partition_bytes_in_total", topic=topic_name, partition=0) == log0

    # Reading everything back counts at least every record and byte once (a client may
    # fetch a batch again, never less).
    msgs = helpers.consume_all(b.bootstrap, topic_name, n, partitions=(0,))
    assert len(msgs) == n
    end = scrape(b)
    assert sample(end, "strom_partition_records_out_total", topic=topic_name, partition=0) >= n
    assert sample(end, "strom_partition_bytes_out_total", topic=topic_name, partition=0) >= log0
    fetches = sum(v for (name, labels), v in end.items() if name == "strom_requests_total" and ("api", "Fetch") in labels)
    assert fetches >= 1


def test_errors_are_counted_by_api_and_code(start_broker, topic_name):
    b = start_http_broker(start_broker)
    helpers.create_topic(b.bootstrap, topic_name, partitions=1)
    before = scrape(b)
    conn = wire.Conn(b.bootstrap)
    try:
        # Partition 5 does not exist: UNKNOWN_TOPIC_OR_PARTITION (3), twice.
        for i in range(2):
            conn.send(wire.produce_request_v3(topic_name, 5, wire.record_batch([b"x"]), correlation_id=i))
            _, results = wire.parse_produce_v3(conn.recv_frame())
            assert [r[2] for r in results] == [3]
        # A damaged batch: CORRUPT_MESSAGE (2).
        conn.send(wire.produce_request_v3(topic_name, 0, wire.corrupt_crc(wire.record_batch([b"y"])), correlation_id=9))
        _, results = wire.parse_produce_v3(conn.recv_frame())
        assert [r[2] for r in results] == [wire.ERROR_CORRUPT_MESSAGE]
    finally:
        conn.close()
    after = scrape(b)
    labels3 = dict(api="Produce", code=3, error="UnknownTopicOrPartition")
    labels2 = dict(api="Produce", code=2, error="CorruptMessage")
    assert sample(after, "strom_request_errors_total", **labels3) - sample(before, "strom_request_errors_total", **labels3) == 2
    assert sample(after, "strom_request_errors_total", **labels2) - sample(before, "strom_request_errors_total", **labels2) == 1
    # Nothing was appended.
    assert sample(after, "strom_topic_bytes_in_total", topic=topic_name) == 0


def list_offsets_v1(topic, partitions, correlation_id):
    """ListOffsets v1 asking for the latest offset of each partition."""
    body = struct.pack(">i", -1) + struct.pack(">i", 1) + wire.string16(topic) + struct.pack(">i", len(partitions))
    for p in partitions:
        body += struct.pack(">iq", p, -1)
    return wire.frame(wire.request_header_v1(2, 1, correlation_id) + body)


def offset_commit_v2(group, generation, member, topic, partition, offset, correlation_id):
    body = wire.string16(group) + struct.pack(">i", generation) + wire.string16(member) + struct.pack(">q", -1)
    body += struct.pack(">i", 1) + wire.string16(topic) + struct.pack(">i", 1)
    body += struct.pack(">iq", partition, offset) + struct.pack(">h", -1)
    return wire.frame(wire.request_header_v1(8, 2, correlation_id) + body)


def test_every_apis_error_codes_are_counted(start_broker, topic_name):
    """Kafka's ErrorsPerSec for APIs other than Produce and Fetch: each error a client
    provoked moves strom_request_errors_total{api,code} by exactly one per partition or
    resource, and nothing else under those labels moves."""
    b = start_http_broker(start_broker)
    helpers.create_topic(b.bootstrap, topic_name, partitions=1)
    before = scrape(b)

    # CreateTopics of a topic that exists: TOPIC_ALREADY_EXISTS (36), once.
    a = helpers.admin(b.bootstrap)
    (fut,) = a.create_topics([NewTopic(topic_name, num_partitions=1)]).values()
    with pytest.raises(KafkaException) as e:
        fut.result(timeout=15)
    assert e.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS

    conn = wire.Conn(b.bootstrap)
    try:
        # ListOffsets for partitions 0 (there), 5 and 6 (not there): two
        # UNKNOWN_TOPIC_OR_PARTITION (3) in one response.
        conn.send(list_offsets_v1(topic_name, [0, 5, 6], correlation_id=1))
        r = wire.Reader(conn.recv_frame())
        r.take(">i")
        assert r.take(">i") == 1
        r.string16()
        n = r.take(">i")
        codes = {}
        for _ in range(n):
            partition, code, _ts, _offset = r.take(">ihqq")
            codes[partition] = code
        assert codes == {0: 0, 5: 3, 6: 3}, codes

        # OffsetCommit from a member the group does not know: UNKNOWN_MEMBER_ID (25).
        group = f"g-{uuid.uuid4().hex[:8]}"
        c = helpers.consumer(b.bootstrap, group=group)
        try:
            c.subscribe([topic_name])
            deadline = time.monotonic() + 20
            while not c.assignment() and time.monotonic() < deadline:
                c.poll(0.2)
            assert c.assignment(), "the consumer joined no group"
            conn.send(offset_commit_v2(group, 1, "not-a-member", topic_name, 0, 0, correlation_id=2))
            r = wire.Reader(conn.recv_frame())
            r.take(">i")
            assert r.take(">i") == 1
            r.string16()
            assert r.take(">i") == 1
            assert r.take(">ih") == (0, 25)
        finally:
            c.close()
    finally:
        conn.close()

    after = scrape(b)

    def delta(api, code):
        def value(samples):
            return sum(v for (name, ls), v in samples.items()
                       if name == "strom_request_errors_total" and {("api", api), ("code", str(code))} <= ls)
        return value(after) - value(before)

    assert delta("CreateTopics", 36) == 1
    assert delta("ListOffsets", 3) == 2
    assert delta("OffsetCommit", 25) == 1
    assert sample(after, "strom_request_errors_total", api="CreateTopics", code=36, error="TopicAlreadyExists") >= 1


def test_group_lag_matches_the_clients_computation(start_broker, topic_name):
    b = start_http_broker(start_broker)
    helpers.create_topic(b.bootstrap, topic_name, partitions=2)
    helpers.produce_values(b.bootstrap, topic_name, [b"p0-%d" % i for i in range(10)], partition=0)
    helpers.produce_values(b.bootstrap, topic_name, [b"p1-%d" % i for i in range(6)], partition=1)
    group = f"g-{uuid.uuid4().hex[:8]}"
    c = helpers.consumer(b.bootstrap, group=group)
    try:
        c.commit(offsets=[TopicPartition(topic_name, 0, 4), TopicPartition(topic_name, 1, 6)], asynchronous=False)
        committed = {tp.partition: tp.offset for tp in c.committed([TopicPartition(topic_name, 0), TopicPartition(topic_name, 1)], timeout=10)}
        client_lag = {}
        for p in (0, 1):
            _, high = c.get_watermark_offsets(TopicPartition(topic_name, p), timeout=10, cached=False)
            client_lag[p] = high - committed[p]
    finally:
        c.close()
    assert client_lag == {0: 6, 1: 0}
    s = scrape(b)
    for p in (0, 1):
        assert sample(s, "strom_group_committed_offset", group=group, topic=topic_name, partition=p) == committed[p]
        assert sample(s, "strom_group_lag", group=group, topic=topic_name, partition=p) == client_lag[p]
    assert sample(s, "strom_group_members", group=group) == 0
    assert sample(s, "strom_group_state", group=group, state="Empty") == 1
    # The API reports the same lag.
    status, g = call("GET", f"{b.http}/api/groups/{group}")
    assert status == 200, g
    assert {o["partition"]: o["lag"] for o in g["offsets"]} == client_lag
    assert g["total_lag"] == 6


def test_metrics_enabled_false_stops_request_counting_only(start_broker, topic_name):
    b = start_http_broker(start_broker, settings={"metrics.enabled": "false"})
    helpers.create_topic(b.bootstrap, topic_name, partitions=1)
    helpers.produce_values(b.bootstrap, topic_name, [b"x"] * 20, partition=0)
    s = scrape(b)
    assert sample(s, "strom_metrics_enabled") == 0
    assert not [k for k in s if k[0] == "strom_requests_total"]
    assert sample(s, "strom_topic_records_in_total", topic=topic_name) == 0
    # Storage is read at scrape time and stays.
    assert sample(s, "strom_log_end_offset", topic=topic_name, partition=0) == 20


def run_to_exit(settings, tmp_path, timeout_s=20):
    """Runs `strom serve` expecting it to exit by itself; returns (exit code, output)."""
    cmd = [str(strom_bin()), "serve", "--listen", f"127.0.0.1:{free_port()}", "--data-dir", str(tmp_path / "data")]
    for k, v in settings.items():
        cmd += ["--set", f"{k}={v}"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env={"RUST_LOG": "info", "NO_COLOR": "1"})
    return p.returncode, p.stdout + p.stderr


def test_an_explicit_http_address_that_cannot_be_bound_stops_startup(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out = run_to_exit({"http.listen": f"127.0.0.1:{port}"}, tmp_path)
    assert code != 0
    assert "http.listen" in out and f"127.0.0.1:{port}" in out, out


DEFAULT_HTTP_PORT = 9644


def test_a_taken_default_http_port_warns_and_the_broker_runs(start_broker, topic_name):
    # Hold the default port (if another process already holds it, it is just as taken).
    holder = socket.socket()
    try:
        try:
            holder.bind(("127.0.0.1", DEFAULT_HTTP_PORT))
            holder.listen()
        except OSError:
            pass
        b = start_broker()  # no http.listen: the default
        deadline = time.monotonic() + 5
        while "http=off" not in b.log_tail() and time.monotonic() < deadline:
            time.sleep(0.05)
        log = b.log_tail()
        assert "WARN" in log and "http.listen" in log, log
        assert "http=off" in log, log
        # The Kafka listener works.
        d = helpers.produce_values(b.bootstrap, topic_name, [b"still-up"], partition=0)
        assert [o for _, o, _ in d.ok] == [0]
    finally:
        holder.close()


def test_an_empty_http_listen_turns_the_listener_off(start_broker):
    b = start_broker(settings={"http.listen": ""})
    deadline = time.monotonic() + 5
    while "http=off" not in b.log_tail() and time.monotonic() < deadline:
        time.sleep(0.05)
    log = b.log_tail()
    assert "WARN" not in log, "no warning when the listener is turned off on purpose"
    assert "http=off" in log, log


def test_log_format_json_writes_one_json_object_per_line(start_broker):
    import json

    b = start_broker(extra_args=["--log-format", "json"])
    deadline = time.monotonic() + 5
    while "strom broker started" not in b.log_tail() and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = [line for line in b.log_tail().splitlines() if line.startswith("{")]
    events = [json.loads(line) for line in lines]
    started = next(e for e in events if e.get("message") == "strom broker started")
    assert started["level"] == "INFO"
    assert started["listen"] == b.bootstrap
    assert "timestamp" in started
