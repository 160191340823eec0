"""SASL re-authentication (KIP-368) against the real binary, as Apache Kafka behaves with
`connections.max.reauth.ms`: SaslAuthenticate tells the client its session lifetime, a
client that re-authenticates on the same connection in time keeps it, one that does not is
closed on its next request, and a re-authentication as another principal is refused.

One broker per test with two listeners: PLAINTEXT (for the admin client) and
SASL_PLAINTEXT, with sessions of 3 s.
"""

import re
import struct
import time

import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion

import helpers
from conftest import Broker, free_port
from wire import Conn, frame, request_header_v1, string16

pytestmark = pytest.mark.timeout(60)

MAX_REAUTH_MS = 3000

API_METADATA = 3
API_SASL_HANDSHAKE = 17
API_SASL_AUTHENTICATE = 36
SASL_AUTHENTICATION_FAILED = 58
ILLEGAL_SASL_STATE = 34


@pytest.fixture
def reauth_broker(request, tmp_path):
    # Extra settings for one test: `parametrize("reauth_broker", [{...}], indirect=True)`.
    extra = getattr(request, "param", {})
    sasl_port = free_port()
    data = tmp_path / "data"
    data.mkdir()
    # Debug lines of the session module show each re-authentication.
    b = Broker(data, tmp_path / "broker.log", env={"RUST_LOG": "info,strom_broker::security::session=debug"})
    b.settings.update({
        "listeners": f"PLAINTEXT://{b.bootstrap},SASL_PLAINTEXT://127.0.0.1:{sasl_port}",
        "sasl.enabled.mechanisms": "SCRAM-SHA-256,PLAIN",
        "connections.max.reauth.ms": str(MAX_REAUTH_MS),
        **extra,
    })
    b.sasl = f"127.0.0.1:{sasl_port}"
    b.start()
    a = helpers.admin(b.bootstrap)
    ups = [
        UserScramCredentialUpsertion(user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), f"{user}-pw".encode())
        for user in ("alice", "bob")
    ]
    for f in a.alter_user_scram_credentials(ups).values():
        assert f.result(timeout=10) is None
    yield b
    helpers.forget_clients()
    b.stop()
    # Shown only when the test failed (pytest prints captured output of failures).
    print(b.log_tail())


# -- a raw SASL/PLAIN client: SaslHandshake v1, SaslAuthenticate v1, Metadata v1 ----------


class SaslWire:
    def __init__(self, bootstrap):
        self.conn = Conn(bootstrap)
        self.corr = 0

    def request(self, api_key, version, body):
        self.corr += 1
        self.conn.send(frame(request_header_v1(api_key, version, self.corr) + body))
        payload = self.conn.recv_frame()
        (corr,) = struct.unpack(">i", payload[:4])
        assert corr == self.corr
        return payload[4:]

    def handshake(self, mechanism="PLAIN"):
        body = self.request(API_SASL_HANDSHAKE, 1, string16(mechanism))
        (error_code,) = struct.unpack(">h", body[:2])
        return error_code

    def authenticate(self, user, password):
        """SaslAuthenticate v1 with a PLAIN token: (error_code, error_message, session_lifetime_ms)."""
        token = b"\0" + user.encode() + b"\0" + password.encode()
        body = self.request(API_SASL_AUTHENTICATE, 1, struct.pack(">i", len(token)) + token)
        error_code, message_len = struct.unpack(">hh", body[:4])
        pos = 4
        message = None
        if message_len >= 0:
            message = body[pos:pos + message_len].decode()
            pos += message_len
        (auth_len,) = struct.unpack(">i", body[pos:pos + 4])
        pos += 4 + max(auth_len, 0)
        (lifetime_ms,) = struct.unpack(">q", body[pos:pos + 8])
        return error_code, message, lifetime_ms

    def login(self, user, password):
        assert self.handshake() == 0
        error_code, message, lifetime_ms = self.authenticate(user, password)
        assert error_code == 0, message
        return lifetime_ms

    def metadata(self):
        # Metadata v1 for every topic (a null topic array).
        return self.request(API_METADATA, 1, struct.pack(">i", -1))

    def close(self):
        self.conn.close()


def reauth_count(broker):
    return len(re.findall(r"re-authenticated", broker.log_tail(max_bytes=2_000_000)))


def test_librdkafka_keeps_producing_and_consuming_across_reauthentications(reauth_broker):
    """librdkafka re-authenticates at 90% of the session lifetime; over ~10 s with 3 s
    sessions every connection does so several times, no connection is closed for an
    expired session, and every message comes back once and in order."""
    b = reauth_broker
    topic = "reauth-orders"
    helpers.create_topic(b.bootstrap, topic)
    conf = {
        "bootstrap.servers": b.sasl,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanisms": "SCRAM-SHA-256",
        "sasl.username": "alice",
        "sasl.password": "alice-pw",
    }
    errors = []
    p = Producer({**conf, "linger.ms": 5, "error_cb": errors.append})
    c = Consumer({
        **conf,
        "group.id": "reauth-g",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "error_cb": errors.append,
    })
    c.subscribe([topic])
    sent, got, failed = [], [], []
    try:
        end = time.monotonic() + 10
        i = 0
        while time.monotonic() < end:
            v = f"m-{i}".encode()
            p.produce(topic, value=v, on_delivery=lambda err, msg: err and failed.append(err))
            sent.append(v)
            i += 1
            p.poll(0)
            m = c.poll(0.05)
            if m is not None:
                if m.error():
                    raise KafkaException(m.error())
                got.append(m.value())
        assert p.flush(15) == 0
        deadline = time.monotonic() + 15
        while len(got) < len(sent) and time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is not None:
                if m.error():
                    raise KafkaException(m.error())
                got.append(m.value())
    finally:
        c.close()
    assert not failed, failed
    assert got == sent
    assert len(sent) > 50
    log = b.log_tail(max_bytes=2_000_000)
    assert "expired without re-authentication" not in log
    assert "re-authentication failed" not in log
    # At least the producer's and the consumer's broker connections, about three times each.
    assert reauth_count(b) >= 4, reauth_count(b)
    assert not errors, errors


def test_a_client_that_ignores_the_session_lifetime_is_closed_on_its_next_request(reauth_broker):
    b = reauth_broker
    w = SaslWire(b.sasl)
    try:
        assert w.login("alice", "alice-pw") == MAX_REAUTH_MS
        w.metadata()
        time.sleep(MAX_REAUTH_MS / 1000 + 0.5)
        w.conn.send(frame(request_header_v1(API_METADATA, 1, 99) + struct.pack(">i", -1)))
        assert w.conn.closed_by_peer()
    finally:
        w.close()
    assert "expired without re-authentication" in b.log_tail()


def test_a_raw_client_that_reauthenticates_in_time_keeps_its_connection(reauth_broker):
    w = SaslWire(reauth_broker.sasl)
    try:
        w.login("alice", "alice-pw")
        time.sleep(2.0)
        # The same user again, mid-connection: a new 3 s session.
        assert w.login("alice", "alice-pw") == MAX_REAUTH_MS
        time.sleep(2.0)
        w.metadata()  # 4 s after the first login, 2 s into the second session
        # A second re-authentication within a second of the last is not one (as in Kafka):
        # the handshake is answered with ILLEGAL_SASL_STATE and the session goes on.
        w.login("alice", "alice-pw")
        assert w.handshake() == ILLEGAL_SASL_STATE
        w.metadata()
    finally:
        w.close()


def test_reauthentication_as_another_user_is_refused_and_closes_the_connection(reauth_broker):
    b = reauth_broker
    w = SaslWire(b.sasl)
    try:
        w.login("alice", "alice-pw")
        w.metadata()
        assert w.handshake() == 0
        # bob's password is right; the change of principal is what fails.
        error_code, message, _ = w.authenticate("bob", "bob-pw")
        assert error_code == SASL_AUTHENTICATION_FAILED
        assert "Cannot change principals during re-authentication" in message, message
        assert w.conn.closed_by_peer()
    finally:
        w.close()
    assert "SASL re-authentication failed" in b.log_tail()


@pytest.mark.parametrize(
    "reauth_broker", [{"listener.name.sasl_plaintext.plain.connections.max.reauth.ms": "1500"}], indirect=True
)
def test_a_listener_and_mechanism_may_have_their_own_session_lifetime(reauth_broker):
    w = SaslWire(reauth_broker.sasl)
    try:
        assert w.login("alice", "alice-pw") == 1500
        time.sleep(2.0)
        w.conn.send(frame(request_header_v1(API_METADATA, 1, 99) + struct.pack(">i", -1)))
        assert w.conn.closed_by_peer()
    finally:
        w.close()
