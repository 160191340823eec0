"""Hand-written Kafka wire encoding for the raw-socket tests: just ApiVersions, Produce v3,
the transaction requests a raw producer needs, and RecordBatch v2, so that tests can send
requests no well-behaved client would, or in an order one would not.

All integers are big-endian, as in the Kafka protocol. Layouts, from the protocol guide:

    frame          := size:int32 payload[size]
    request hdr v1 := api_key:int16 api_version:int16 correlation_id:int32 client_id:nullable_string
    request hdr v2 := request hdr v1, tagged_fields            (flexible request versions)
    response hdr   := correlation_id:int32                     (ApiVersions always uses v0)

    RecordBatch v2 := base_offset:int64 batch_length:int32 partition_leader_epoch:int32
                      magic:int8(=2) crc:uint32 attributes:int16 last_offset_delta:int32
                      base_timestamp:int64 max_timestamp:int64 producer_id:int64
                      producer_epoch:int16 base_sequence:int32 records_count:int32 records...
                      (crc is CRC-32C over everything from attributes to the end)
    Record         := length:varint attributes:int8 timestamp_delta:varlong
                      offset_delta:varint key_len:varint key value_len:varint value
                      headers_count:varint headers...
"""

import socket
import struct
import time

API_PRODUCE = 0
API_API_VERSIONS = 18
API_INIT_PRODUCER_ID = 22
API_ADD_PARTITIONS_TO_TXN = 24
API_END_TXN = 26

ERROR_NONE = 0
ERROR_CORRUPT_MESSAGE = 2
ERROR_MESSAGE_TOO_LARGE = 10
ERROR_UNSUPPORTED_VERSION = 35
ERROR_OUT_OF_ORDER_SEQUENCE_NUMBER = 45
ERROR_CONCURRENT_TRANSACTIONS = 51


def _crc32c_table():
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC32C = _crc32c_table()


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc = _CRC32C[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def zigzag_varint(n):
    z = (n << 1) ^ (n >> 63)
    return uvarint(z & 0xFFFFFFFFFFFFFFFF)


def uvarint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def nullable_bytes_varint(b):
    if b is None:
        return zigzag_varint(-1)
    return zigzag_varint(len(b)) + b


def string16(s):
    if s is None:
        return struct.pack(">h", -1)
    raw = s.encode()
    return struct.pack(">h", len(raw)) + raw


def record(offset_delta, key, value, timestamp_delta=0):
    body = (
        struct.pack(">b", 0)
        + zigzag_varint(timestamp_delta)
        + zigzag_varint(offset_delta)
        + nullable_bytes_varint(key)
        + nullable_bytes_varint(value)
        + zigzag_varint(0)  # no headers
    )
    return zigzag_varint(len(body)) + body


def record_batch(values, keys=None, timestamp_ms=None, producer_id=-1, producer_epoch=-1, base_sequence=-1,
                 attributes=0):
    """An uncompressed RecordBatch v2 with a correct CRC-32C (attributes 0x10: transactional)."""
    ts = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    keys = keys or [None] * len(values)
    records = b"".join(record(i, k, v) for i, (k, v) in enumerate(zip(keys, values)))
    after_crc = (
        struct.pack(">hiqqqhii", attributes, len(values) - 1, ts, ts, producer_id, producer_epoch, base_sequence, len(values))
        + records
    )
    crc = crc32c(after_crc)
    after_length = struct.pack(">ibI", 0, 2, crc) + after_crc
    return struct.pack(">qi", 0, len(after_length)) + after_length


def corrupt_crc(batch):
    """The same batch with one record byte flipped, so its stored CRC no longer matches."""
    b = bytearray(batch)
    b[-1] ^= 0xFF
    return bytes(b)


def frame(payload):
    return struct.pack(">i", len(payload)) + payload


def request_header_v1(api_key, api_version, correlation_id, client_id="strom-tests"):
    return struct.pack(">hhi", api_key, api_version, correlation_id) + string16(client_id)


def request_header_v2(api_key, api_version, correlation_id, client_id="strom-tests"):
    return request_header_v1(api_key, api_version, correlation_id, client_id) + b"\x00"


def api_versions_request(version, correlation_id):
    if version >= 3:
        # Flexible: compact strings client_software_name and _version, then tagged fields.
        body = uvarint(len("strom-tests") + 1) + b"strom-tests" + uvarint(len("1.0") + 1) + b"1.0" + b"\x00"
        return frame(request_header_v2(API_API_VERSIONS, version, correlation_id) + body)
    return frame(request_header_v1(API_API_VERSIONS, version, correlation_id))


def produce_request_v3(topic, partition, batch, correlation_id, acks=-1, timeout_ms=10000, transactional_id=None):
    body = (
        string16(transactional_id)
        + struct.pack(">hi", acks, timeout_ms)
        + struct.pack(">i", 1)
        + string16(topic)
        + struct.pack(">i", 1)
        + struct.pack(">i", partition)
        + struct.pack(">i", len(batch))
        + batch
    )
    return frame(request_header_v1(API_PRODUCE, 3, correlation_id) + body)


def compact_string(s):
    if s is None:
        return b"\x00"
    raw = s.encode()
    return uvarint(len(raw) + 1) + raw


def produce_request_v10(topic, partition, batch, correlation_id, acks=-1, timeout_ms=10000):
    """Produce v10 (flexible: compact strings and arrays, tagged fields)."""
    part = struct.pack(">i", partition) + uvarint(len(batch) + 1) + batch + b"\x00"
    body = (
        compact_string(None)
        + struct.pack(">hi", acks, timeout_ms)
        + uvarint(2) + compact_string(topic) + uvarint(2) + part + b"\x00"
        + b"\x00"
    )
    return frame(request_header_v2(API_PRODUCE, 10, correlation_id) + body)


def parse_produce_v10(payload):
    """(correlation_id, [(topic, partition, error, base_offset, current_leader)], node_endpoints)
    with current_leader (leader_id, leader_epoch) or None, node_endpoints {id: "host:port"}
    (KIP-951's tagged fields)."""
    r = Reader(payload)
    correlation_id = r.take(">i")
    r.skip_tagged_fields()
    out = []
    for _ in range(r.uvarint() - 1):
        topic = r.compact_string()
        for _ in range(r.uvarint() - 1):
            partition, error, base_offset, _append_time, _start = r.take(">ihqqq")
            for _ in range(r.uvarint() - 1):  # record_errors
                r.take(">i")
                r.compact_string()
                r.skip_tagged_fields()
            r.compact_string()  # error_message
            leader = None
            for _ in range(r.uvarint()):
                tag, size = r.uvarint(), r.uvarint()
                if tag == 0:
                    leader = r.take(">ii")
                    r.skip_tagged_fields()
                else:
                    r.pos += size
            out.append((topic, partition, error, base_offset, leader))
        r.skip_tagged_fields()
    r.take(">i")  # throttle_time_ms
    endpoints = {}
    for _ in range(r.uvarint()):
        tag, size = r.uvarint(), r.uvarint()
        if tag != 0:
            r.pos += size
            continue
        for _ in range(r.uvarint() - 1):
            node = r.take(">i")
            host = r.compact_string()
            port = r.take(">i")
            r.compact_string()  # rack
            r.skip_tagged_fields()
            endpoints[node] = f"{host}:{port}"
    return correlation_id, out, endpoints


def init_producer_id_request_v0(correlation_id, transaction_timeout_ms=60000, transactional_id=None):
    body = string16(transactional_id) + struct.pack(">i", transaction_timeout_ms)
    return frame(request_header_v1(API_INIT_PRODUCER_ID, 0, correlation_id) + body)


def parse_init_producer_id_v0(payload):
    """(correlation_id, error_code, producer_id, producer_epoch)."""
    r = Reader(payload)
    correlation_id = r.take(">i")
    _throttle_ms, error, producer_id, epoch = r.take(">ihqh")
    return correlation_id, error, producer_id, epoch


def add_partitions_to_txn_request_v1(correlation_id, transactional_id, producer_id, epoch, topic, partitions):
    body = (
        string16(transactional_id)
        + struct.pack(">qh", producer_id, epoch)
        + struct.pack(">i", 1)
        + string16(topic)
        + struct.pack(">i", len(partitions))
        + b"".join(struct.pack(">i", p) for p in partitions)
    )
    return frame(request_header_v1(API_ADD_PARTITIONS_TO_TXN, 1, correlation_id) + body)


def parse_add_partitions_to_txn_v1(payload):
    """(correlation_id, {(topic, partition): error_code})."""
    r = Reader(payload)
    correlation_id = r.take(">i")
    r.take(">i")  # throttle_time_ms
    out = {}
    for _ in range(r.take(">i")):
        topic = r.string16()
        for _ in range(r.take(">i")):
            partition, error = r.take(">ih")
            out[(topic, partition)] = error
    return correlation_id, out


def end_txn_request_v1(correlation_id, transactional_id, producer_id, epoch, commit):
    body = string16(transactional_id) + struct.pack(">qh?", producer_id, epoch, commit)
    return frame(request_header_v1(API_END_TXN, 1, correlation_id) + body)


def parse_end_txn_v1(payload):
    """(correlation_id, error_code)."""
    r = Reader(payload)
    correlation_id = r.take(">i")
    _throttle_ms, error = r.take(">ih")
    return correlation_id, error


class Reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def take(self, fmt):
        size = struct.calcsize(fmt)
        vals = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return vals if len(vals) > 1 else vals[0]

    def string16(self):
        n = self.take(">h")
        if n < 0:
            return None
        s = self.data[self.pos:self.pos + n].decode()
        self.pos += n
        return s

    def compact_string(self):
        n = self.uvarint()
        if n == 0:
            return None
        s = self.data[self.pos:self.pos + n - 1].decode()
        self.pos += n - 1
        return s

    def uvarint(self):
        shift = 0
        result = 0
        while True:
            b = self.data[self.pos]
            self.pos += 1
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7

    def skip_tagged_fields(self):
        for _ in range(self.uvarint()):
            self.uvarint()
            self.pos += self.uvarint()


def parse_api_versions_v0(payload):
    """(correlation_id, error_code, {api_key: (min, max)}) from a v0-layout response."""
    r = Reader(payload)
    correlation_id = r.take(">i")
    error = r.take(">h")
    n = r.take(">i")
    ranges = {}
    for _ in range(max(n, 0)):
        key, lo, hi = r.take(">hhh")
        ranges[key] = (lo, hi)
    return correlation_id, error, ranges


def parse_api_versions_v3(payload):
    r = Reader(payload)
    correlation_id = r.take(">i")
    error = r.take(">h")
    n = r.uvarint() - 1
    ranges = {}
    for _ in range(max(n, 0)):
        key, lo, hi = r.take(">hhh")
        r.skip_tagged_fields()
        ranges[key] = (lo, hi)
    r.take(">i")  # throttle_time_ms
    return correlation_id, error, ranges


def parse_produce_v3(payload):
    """(correlation_id, [(topic, partition, error_code, base_offset)])."""
    r = Reader(payload)
    correlation_id = r.take(">i")
    out = []
    for _ in range(r.take(">i")):
        topic = r.string16()
        for _ in range(r.take(">i")):
            partition, error, base_offset, _log_append_time = r.take(">ihqq")
            out.append((topic, partition, error, base_offset))
    return correlation_id, out


class Conn:
    """A raw TCP connection to the broker with bounded reads."""

    def __init__(self, bootstrap, timeout_s=5.0):
        host, port = bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout_s)
        self.sock.settimeout(timeout_s)

    def send(self, data):
        self.sock.sendall(data)

    def recv_exact(self, n):
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError(f"connection closed after {len(buf)} of {n} bytes")
            buf += chunk
        return bytes(buf)

    def recv_frame(self, max_bytes=64 * 1024 * 1024):
        (size,) = struct.unpack(">i", self.recv_exact(4))
        assert 0 <= size <= max_bytes, f"response frame size {size}"
        return self.recv_exact(size)

    def closed_by_peer(self):
        """True if the broker closes the connection (EOF or reset) before the read timeout.
        Raises socket.timeout if the connection is left hanging."""
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
