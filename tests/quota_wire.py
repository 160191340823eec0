"""Hand-written DescribeClientQuotas (48) and AlterClientQuotas (49) v0, for the quota tests
(confluent-kafka has no quota admin calls). Layouts, from the protocol guide:

    DescribeClientQuotas v0 request  := components:[entity_type:string match_type:int8
                                        match:nullable_string] strict:bool
    DescribeClientQuotas v0 response := throttle_time_ms:int32 error_code:int16
                                        error_message:nullable_string
                                        entries:nullable [entity:[entity_type:string
                                        entity_name:nullable_string] values:[key:string value:float64]]
    AlterClientQuotas v0 request     := entries:[entity:[entity_type:string entity_name:nullable_string]
                                        ops:[key:string value:float64 remove:bool]] validate_only:bool
    AlterClientQuotas v0 response    := throttle_time_ms:int32 entries:[error_code:int16
                                        error_message:nullable_string entity:[...as in the request]]

An entity is a dict {entity_type: name}; a name of None is the <default> entity.
"""

import struct

import wire

API_DESCRIBE_CLIENT_QUOTAS = 48
API_ALTER_CLIENT_QUOTAS = 49

MATCH_EXACT = 0
MATCH_DEFAULT = 1
MATCH_ANY = 2

ERROR_CLUSTER_AUTHORIZATION_FAILED = 31
ERROR_UNSUPPORTED_VERSION = 35
ERROR_INVALID_REQUEST = 42


def _entity(entity):
    out = struct.pack(">i", len(entity))
    for kind, name in entity.items():
        out += wire.string16(kind) + wire.string16(name)
    return out


def _read_entity(r):
    entity = {}
    for _ in range(r.take(">i")):
        kind = r.string16()
        entity[kind] = r.string16()
    return entity


def alter_request(entries, correlation_id, validate_only=False):
    """`entries`: [(entity, {key: value or None to remove})]."""
    body = struct.pack(">i", len(entries))
    for entity, ops in entries:
        body += _entity(entity) + struct.pack(">i", len(ops))
        for key, value in ops.items():
            remove = value is None
            body += wire.string16(key) + struct.pack(">d?", 0.0 if remove else value, remove)
    body += struct.pack(">?", validate_only)
    return wire.frame(wire.request_header_v1(API_ALTER_CLIENT_QUOTAS, 0, correlation_id) + body)


def parse_alter(payload):
    """(correlation_id, [(error_code, error_message, entity)])."""
    r = wire.Reader(payload)
    correlation_id = r.take(">i")
    r.take(">i")  # throttle_time_ms
    out = []
    for _ in range(r.take(">i")):
        code = r.take(">h")
        message = r.string16()
        out.append((code, message, _read_entity(r)))
    return correlation_id, out


def describe_request(components, correlation_id, strict=False):
    """`components`: [(entity_type, match_type, match or None)]."""
    body = struct.pack(">i", len(components))
    for kind, match_type, match in components:
        body += wire.string16(kind) + struct.pack(">b", match_type) + wire.string16(match)
    body += struct.pack(">?", strict)
    return wire.frame(wire.request_header_v1(API_DESCRIBE_CLIENT_QUOTAS, 0, correlation_id) + body)


def parse_describe(payload):
    """(correlation_id, error_code, error_message, {frozen entity: {key: value}} or None)."""
    r = wire.Reader(payload)
    correlation_id = r.take(">i")
    r.take(">i")  # throttle_time_ms
    code = r.take(">h")
    message = r.string16()
    n = r.take(">i")
    if n < 0:
        return correlation_id, code, message, None
    entries = {}
    for _ in range(n):
        entity = _read_entity(r)
        values = {}
        for _ in range(r.take(">i")):
            key = r.string16()
            values[key] = r.take(">d")
        entries[frozenset(entity.items())] = values
    return correlation_id, code, message, entries


class QuotaAdmin:
    """Alter and describe over one raw connection."""

    def __init__(self, bootstrap):
        self.conn = wire.Conn(bootstrap, timeout_s=10)
        self.correlation_id = 0

    def alter(self, entries, validate_only=False):
        self.correlation_id += 1
        self.conn.send(alter_request(entries, self.correlation_id, validate_only))
        corr, results = parse_alter(self.conn.recv_frame())
        assert corr == self.correlation_id
        return results

    def describe(self, components=(), strict=False):
        self.correlation_id += 1
        self.conn.send(describe_request(list(components), self.correlation_id, strict))
        corr, code, message, entries = parse_describe(self.conn.recv_frame())
        assert corr == self.correlation_id
        return code, message, entries

    def close(self):
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
