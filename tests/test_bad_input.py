"""Broken and hostile requests over raw sockets. Each must get a Kafka error code or a closed
connection, never a hang, a crash, or harm to other clients and stored data."""

import os
import socket
import struct

import pytest

import wire
from helpers import assert_healthy, create_topic, produce_values

MAX_REQUEST_BYTES = 65536
STORED = [b"stored-1", b"stored-2", b"stored-3"]


@pytest.fixture
def guarded(start_broker, topic_name):
    """A broker with a small request size limit and a topic holding known data; after the
    test, a normal client must still work and the data must be unchanged."""
    b = start_broker(settings={"socket.request.max.bytes": str(MAX_REQUEST_BYTES), "message.max.bytes": "4096"})
    create_topic(b.bootstrap, topic_name, partitions=1)
    produce_values(b.bootstrap, topic_name, STORED, partition=0)
    b.stored = list(STORED)  # what partition 0 must hold after the test
    yield b
    assert b.alive(), f"broker died; log:\n{b.log_tail()}"
    assert_healthy(b.bootstrap, topic_name, b.stored)


def test_oversized_frame_closes_connection(guarded):
    with wire.Conn(guarded.bootstrap) as c:
        c.send(struct.pack(">i", MAX_REQUEST_BYTES + 1) + b"\x00" * 64)
        assert c.closed_by_peer()


def test_negative_frame_size_closes_connection(guarded):
    with wire.Conn(guarded.bootstrap) as c:
        c.send(struct.pack(">i", -5) + b"\x00" * 16)
        assert c.closed_by_peer()


def test_http_request_closes_connection(guarded):
    with wire.Conn(guarded.bootstrap) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert c.closed_by_peer()


def test_random_garbage_in_a_frame_closes_connection(guarded):
    with wire.Conn(guarded.bootstrap) as c:
        # A frame of the right size whose header is a random, undecodable mess.
        c.send(wire.frame(b"\x00\x12\x00\x00" + os.urandom(4) + b"\x7f\xff" + os.urandom(40)))
        try:
            assert c.closed_by_peer()
        except socket.timeout:
            pytest.fail("connection left hanging after a garbage frame")


def test_truncated_frame_then_close_leaves_broker_serving(guarded):
    with wire.Conn(guarded.bootstrap) as c:
        c.send(struct.pack(">i", 200) + b"\x00\x12\x00\x03")
    # A second connection sending half a request while another client works.
    with wire.Conn(guarded.bootstrap) as half:
        half.send(struct.pack(">i", 100) + b"\x00" * 10)
        assert_healthy(guarded.bootstrap)


def test_unknown_api_key_closes_or_errors(guarded):
    with wire.Conn(guarded.bootstrap) as c:
        c.send(wire.frame(wire.request_header_v1(9999, 0, 77)))
        try:
            c.sock.settimeout(5)
            data = c.sock.recv(4)
        except (ConnectionResetError, BrokenPipeError):
            return
        except socket.timeout:
            pytest.fail("unknown API key: no answer and no close within 5s")
        if data:
            # An answer is acceptable only if it echoes the correlation id.
            payload = c.recv_exact(struct.unpack(">i", data.ljust(4, b"\x00"))[0])
            assert struct.unpack(">i", payload[:4])[0] == 77


def test_api_versions_v3_lists_supported_ranges(guarded):
    with wire.Conn(guarded.bootstrap) as c:
        c.send(wire.api_versions_request(3, 11))
        corr, error, ranges = wire.parse_api_versions_v3(c.recv_frame())
    assert corr == 11
    assert error == wire.ERROR_NONE
    # Produce, Fetch, ListOffsets, Metadata, ApiVersions, CreateTopics, DeleteTopics,
    # DescribeConfigs and InitProducerId, at versions inside Kafka 4.0's baseline (KIP-896).
    for key, version in [(0, 3), (1, 4), (2, 1), (3, 1), (18, 3), (19, 2), (20, 1), (32, 1), (22, 0)]:
        assert key in ranges, f"API key {key} not advertised: {sorted(ranges)}"
        lo, hi = ranges[key]
        assert lo <= version <= hi, f"API key {key}: advertised {lo}..{hi}, need {version}"


def test_api_versions_too_new_gets_unsupported_version_in_v0_layout(guarded):
    """KIP-511: a client that opens with a newer ApiVersions than the broker knows gets
    UNSUPPORTED_VERSION (35) and the broker's ranges, in the v0 body layout."""
    with wire.Conn(guarded.bootstrap) as c:
        c.send(wire.api_versions_request(99, 4242))
        corr, error, ranges = wire.parse_api_versions_v0(c.recv_frame())
        assert corr == 4242
        assert error == wire.ERROR_UNSUPPORTED_VERSION
        assert 18 in ranges and ranges[18][0] == 0 and ranges[18][1] >= 3, ranges.get(18)
        assert 0 in ranges, "Produce must be listed"
        # The connection stays usable: the client retries with a version we support.
        c.send(wire.api_versions_request(0, 4243))
        corr, error, ranges0 = wire.parse_api_versions_v0(c.recv_frame())
        assert (corr, error) == (4243, wire.ERROR_NONE)
        assert ranges0 == ranges


def test_pipelined_requests_are_answered_in_order(guarded):
    with wire.Conn(guarded.bootstrap) as c:
        c.send(b"".join(wire.api_versions_request(v, 100 + v) for v in (0, 1, 2, 3, 0, 1)))
        got = []
        for v in (0, 1, 2, 3, 0, 1):
            payload = c.recv_frame()
            got.append(struct.unpack(">i", payload[:4])[0])
        assert got == [100, 101, 102, 103, 100, 101]


def test_raw_produce_then_bad_crc_gets_corrupt_message(guarded, topic_name):
    with wire.Conn(guarded.bootstrap) as c:
        good = wire.record_batch([b"raw-1", b"raw-2"], keys=[b"k", None])
        c.send(wire.produce_request_v3(topic_name, 0, good, correlation_id=1))
        corr, parts = wire.parse_produce_v3(c.recv_frame())
        assert corr == 1
        assert parts == [(topic_name, 0, wire.ERROR_NONE, len(STORED))]

        bad = wire.corrupt_crc(wire.record_batch([b"must-not-be-stored"]))
        c.send(wire.produce_request_v3(topic_name, 0, bad, correlation_id=2))
        corr, parts = wire.parse_produce_v3(c.recv_frame())
        assert corr == 2
        assert [(t, p, e) for t, p, e, _ in parts] == [(topic_name, 0, wire.ERROR_CORRUPT_MESSAGE)]
    guarded.stored += [b"raw-1", b"raw-2"]


def test_batch_larger_than_message_max_bytes_is_rejected(guarded, topic_name):
    with wire.Conn(guarded.bootstrap) as c:
        big = wire.record_batch([b"z" * 8000])  # message.max.bytes is 4096 here
        c.send(wire.produce_request_v3(topic_name, 0, big, correlation_id=5))
        corr, parts = wire.parse_produce_v3(c.recv_frame())
        assert corr == 5
        assert [(t, p, e) for t, p, e, _ in parts] == [(topic_name, 0, wire.ERROR_MESSAGE_TOO_LARGE)]


def test_produce_to_unknown_partition(guarded, topic_name):
    with wire.Conn(guarded.bootstrap) as c:
        c.send(wire.produce_request_v3(topic_name, 9, wire.record_batch([b"x"]), correlation_id=6))
        corr, parts = wire.parse_produce_v3(c.recv_frame())
        assert corr == 6
        assert [(t, p, e) for t, p, e, _ in parts] == [(topic_name, 9, 3)]  # UNKNOWN_TOPIC_OR_PARTITION


def test_batch_with_lying_length_is_rejected(guarded, topic_name):
    with wire.Conn(guarded.bootstrap) as c:
        batch = bytearray(wire.record_batch([b"short"]))
        struct.pack_into(">i", batch, 8, 10_000)  # batch_length far past the end of the bytes
        c.send(wire.produce_request_v3(topic_name, 0, bytes(batch), correlation_id=7))
        try:
            corr, parts = wire.parse_produce_v3(c.recv_frame())
        except ConnectionError:
            return  # closing the connection is an acceptable answer to a malformed request
        assert corr == 7
        assert parts[0][2] != wire.ERROR_NONE, "a batch with a false length must not be stored"


def test_many_connections_do_not_break_the_broker(guarded):
    conns = [wire.Conn(guarded.bootstrap) for _ in range(50)]
    try:
        for i, c in enumerate(conns):
            c.send(struct.pack(">i", 1000) + b"\x00" * (i % 7))  # every one a half-sent frame
        assert_healthy(guarded.bootstrap)
    finally:
        for c in conns:
            c.close()


def test_idempotent_sequences_dedupe_and_reject_gaps(guarded, topic_name):
    """Per producer id and partition: a retried batch (same sequence) is acknowledged with its
    first offset and not written twice; a sequence gap is OUT_OF_ORDER_SEQUENCE_NUMBER."""
    with wire.Conn(guarded.bootstrap) as c:
        c.send(wire.init_producer_id_request_v0(20))
        corr, error, pid, epoch = wire.parse_init_producer_id_v0(c.recv_frame())
        assert (corr, error) == (20, wire.ERROR_NONE)
        assert pid >= 0 and epoch >= 0

        def send(values, seq, corr):
            batch = wire.record_batch(values, producer_id=pid, producer_epoch=epoch, base_sequence=seq)
            c.send(wire.produce_request_v3(topic_name, 0, batch, correlation_id=corr))
            got_corr, parts = wire.parse_produce_v3(c.recv_frame())
            assert got_corr == corr
            (_, _, err, offset), = parts
            return err, offset

        first = len(STORED)
        assert send([b"idem-0", b"idem-1"], 0, 21) == (wire.ERROR_NONE, first)
        assert send([b"idem-2"], 2, 22) == (wire.ERROR_NONE, first + 2)
        # The client did not see the answer and retries the same batch: same offset, no copy.
        assert send([b"idem-2"], 2, 23) == (wire.ERROR_NONE, first + 2)
        # A gap in the sequence is refused and nothing is written.
        err, _ = send([b"idem-gap"], 7, 24)
        assert err == wire.ERROR_OUT_OF_ORDER_SEQUENCE_NUMBER
        assert send([b"idem-3"], 3, 25) == (wire.ERROR_NONE, first + 3)
    guarded.stored += [b"idem-0", b"idem-1", b"idem-2", b"idem-3"]


def test_pipelined_responses_keep_order_behind_a_slow_request(guarded, topic_name):
    """A produce with acks=all waits for an fsync; an ApiVersions sent right behind it on the
    same connection must still be answered after it (clients match responses by order)."""
    with wire.Conn(guarded.bootstrap) as c:
        requests = []
        for i in range(5):
            batch = wire.record_batch([f"ordered-{i}".encode() * 50])
            requests.append(wire.produce_request_v3(topic_name, 0, batch, correlation_id=300 + 2 * i, acks=-1))
            requests.append(wire.api_versions_request(0, 301 + 2 * i))
        c.send(b"".join(requests))
        order = [struct.unpack(">i", c.recv_frame()[:4])[0] for _ in range(10)]
        assert order == list(range(300, 310))
    guarded.stored += [f"ordered-{i}".encode() * 50 for i in range(5)]
