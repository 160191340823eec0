"""Requests whose array or string lengths claim far more elements than the frame holds.

Story: the generated decoders reserve `Vec::with_capacity(n)` from a length read off the wire.
A 20-byte Produce claiming 2^31 topics made the broker ask for ~200 GiB and abort, taking every
client down with it. Each frame here must only close its own connection; the broker keeps
serving and stored data stays intact.
"""
import socket
import struct

import pytest

import helpers
import wire

HUGE = 0x7FFFFFFF

CASES = {
    # Produce v3: transactional_id null, acks 1, timeout, then topic_data count.
    "produce-topics": (0, 3, struct.pack(">hhi", -1, 1, 1000) + struct.pack(">i", HUGE)),
    # Metadata v1: topics count.
    "metadata-topics": (3, 1, struct.pack(">i", HUGE - 15)),
    # Fetch v4: replica, max_wait, min_bytes, max_bytes, isolation, topics count.
    "fetch-topics": (1, 4, struct.pack(">iiiib", -1, 0, 0, 1000, 0) + struct.pack(">i", HUGE)),
    # CreateTopics v2: topics count.
    "create-topics": (19, 2, struct.pack(">i", HUGE)),
    # OffsetCommit v2: group id, generation, member id, retention, topics count.
    "offset-commit-topics": (8, 2, wire.string16("g") + struct.pack(">i", 1) + wire.string16("m")
                             + struct.pack(">q", -1) + struct.pack(">i", HUGE)),
    # Metadata v9 (flexible): compact array count as an unsigned varint near 2^32.
    "metadata-compact": (3, 9, wire.uvarint(0xFFFFFFF0)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_huge_claimed_lengths_close_only_that_connection(broker, topic_name, name):
    helpers.create_topic(broker.bootstrap, topic_name, partitions=1)
    d = helpers.produce_values(broker.bootstrap, topic_name, [b"kept-1", b"kept-2"], partition=0)
    assert [o for _, o, _ in d.ok] == [0, 1]

    api, version, body = CASES[name]
    header = wire.request_header_v2 if name == "metadata-compact" else wire.request_header_v1
    with socket.create_connection(("127.0.0.1", broker.port), timeout=10) as s:
        s.sendall(wire.frame(header(api, version, 1) + body))
        assert s.recv(100) == b"", "the broker must close a connection that sent a malformed request"

    assert broker.alive(), "a malformed frame must not take the broker down"
    helpers.assert_healthy(broker.bootstrap, topic_name, [b"kept-1", b"kept-2"])
