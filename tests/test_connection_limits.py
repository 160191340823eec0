"""The named connection limits: `max.connections`, `connections.max.idle.ms` and
`queued.max.requests`. Each is configurable, and exceeding it affects only the connection
that did, never the broker or other clients."""

import struct
import time

import wire
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
