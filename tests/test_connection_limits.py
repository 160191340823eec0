"""The named connection limits: `max.connections`, `connections.max.idle.ms`,
`queued.max.requests` and `queued.max.request.bytes`. Each is configurable, and exceeding it affects only the connection
that did, never the broker or other clients."""

import struct
import time

import wire
from httpcheck import sample, scrape, start_http_broker
from helpers import assert_healthy


def api_versions_ok(conn, correlation_id):
    conn.send(wire.api_versions_request(0, correlation_id))
    payload = conn.recv_frame()
    (corr, error_code) = struct.unpack(">ih", payload[:6])
    return corr == correlation_id and error_code == 0


def connect_when_a_slot_is_free(bootstrap, correlation_id, timeout_s=5):
    """The fixture's readiness probe may still hold its slot for a moment after closing."""
    deadline = time.monotonic() + timeout_s
    while True:
        c = wire.Conn(bootstrap)
        try:
            if api_versions_ok(c, correlation_id):
                return c
        except ConnectionError:
            c.close()
        assert time.monotonic() < deadline, "no connection slot became free"
        time.sleep(0.1)


def test_connections_beyond_max_connections_are_refused(start_broker):
    b = start_broker(settings={"max.connections": "3"})
    held = [connect_when_a_slot_is_free(b.bootstrap, i) for i in range(3)]
    try:
        extra = wire.Conn(b.bootstrap)
        assert extra.closed_by_peer(), "a 4th connection must be closed at once"
        extra.close()
    finally:
        for c in held:
            c.close()
    # Slots free up when clients leave.
    connect_when_a_slot_is_free(b.bootstrap, 99).close()
    assert "max.connections reached" in b.log_tail()


def test_stalled_half_frame_is_closed_after_idle_timeout(start_broker):
    b = start_broker(settings={"connections.max.idle.ms": "500"})
    with wire.Conn(b.bootstrap, timeout_s=5) as c:
        c.send(struct.pack(">i", 100) + b"\x00\x12")  # 2 of 100 promised bytes, then silence
        started = time.monotonic()
        assert c.closed_by_peer()
        assert time.monotonic() - started < 4
    assert_healthy(b.bootstrap)


def test_more_pipelined_requests_than_the_queue_are_all_answered_in_order(start_broker):
    b = start_broker(settings={"queued.max.requests": "2"})
    with wire.Conn(b.bootstrap) as c:
        c.send(b"".join(wire.api_versions_request(0, i) for i in range(50)))
        for i in range(50):
            (corr,) = struct.unpack(">i", c.recv_frame()[:4])
            assert corr == i


def answer_times_while_a_produce_waits_for_fsync(broker):
    """Connection A sends an acks=all produce of 64 KiB that waits `log.fsync.group.commit.ms`
    for its fsync; connection B then sends ApiVersions. Returns how long after sending each
    got its answer (seconds): (produce, api_versions)."""
    from helpers import create_topic

    create_topic(broker.bootstrap, "budget", 1)
    batch = wire.record_batch([b"v" * 1024] * 64)
    with wire.Conn(broker.bootstrap, timeout_s=20) as a, wire.Conn(broker.bootstrap, timeout_s=20) as b:
        assert api_versions_ok(b, 1)
        started = time.monotonic()
        a.send(wire.produce_request_v3("budget", 0, batch, correlation_id=7, acks=-1))
        time.sleep(0.2)  # A's request is read and waiting for its fsync
        b.send(wire.api_versions_request(0, 2))
        b_payload = b.recv_frame()
        b_answered = time.monotonic() - started
        corr, results = wire.parse_produce_v3(a.recv_frame())
        a_answered = time.monotonic() - started
    assert struct.unpack(">ih", b_payload[:6]) == (2, 0)
    assert (corr, results) == (7, [("budget", 0, 0, 0)])
    return a_answered, b_answered


def test_requests_beyond_queued_max_request_bytes_wait_until_earlier_ones_are_answered(start_broker):
    """The byte budget is shared by every connection: while A's 64 KiB produce, larger than
    the whole 50 KB budget, waits for its fsync, B's request is not even read."""
    b = start_http_broker(
        start_broker, {"queued.max.request.bytes": "50000", "log.fsync.group.commit.ms": "1500"}
    )
    before = scrape(b)
    a_answered, b_answered = answer_times_while_a_produce_waits_for_fsync(b)
    assert a_answered >= 1.2, f"the produce waits for the group-commit window ({a_answered:.2f} s)"
    assert b_answered >= a_answered - 0.05, (
        f"B was answered after {b_answered:.2f} s, before A's produce ({a_answered:.2f} s) gave the budget back"
    )
    # B's wait is the broker's request queue time, and /metrics shows it.
    after = scrape(b)
    waited = sample(after, "strom_request_queue_seconds_sum") - sample(before, "strom_request_queue_seconds_sum")
    assert waited >= 1.0, f"queue time {waited:.2f} s while B waited {b_answered:.2f} s"
    queued = sample(after, "strom_request_queue_seconds_count") - sample(before, "strom_request_queue_seconds_count")
    assert queued >= 2
    assert_healthy(b.bootstrap, "budget", [b"v" * 1024] * 64)


def test_without_a_byte_budget_other_connections_are_answered_at_once(start_broker):
    """The control for the test above: with no bound (Kafka's -1), B does not wait for A."""
    b = start_broker(settings={"queued.max.request.bytes": "-1", "log.fsync.group.commit.ms": "1500"})
    a_answered, b_answered = answer_times_while_a_produce_waits_for_fsync(b)
    assert a_answered >= 1.2
    assert b_answered < a_answered - 0.5, f"B waited {b_answered:.2f} s with no budget set"
