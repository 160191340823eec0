"""Security end to end against the real binary: SASL (SCRAM-SHA-256, SCRAM-SHA-512, PLAIN)
over TLS and plaintext, TLS client certificates as principals, and ACLs with Kafka's error
codes, driven by confluent-kafka (librdkafka) and kafka-python.

One broker per test with four listeners: PLAINTEXT (the admin listener; its principal
User:ANONYMOUS is a super user), SASL_SSL, SSL (client certificate requested) and
SASL_PLAINTEXT. Certificates come from the openssl CLI (tests/tlscerts.py).
"""

import socket
import struct
import subprocess
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

import helpers
from httpcheck import sample, scrape
from conftest import Broker, free_port, strom_bin
from tlscerts import make_certs
from kafka import KafkaAdminClient

pytestmark = pytest.mark.timeout(120)

AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def secure_broker(tmp_path, certs):
    ports = {p: free_port() for p in ("SASL_SSL", "SSL", "SASL_PLAINTEXT")}
    http_port = free_port()
    data = tmp_path / "data"
    data.mkdir()
    b = Broker(data, tmp_path / "broker.log")
    b.settings.update({
        "listeners": f"PLAINTEXT://{b.bootstrap}," + ",".join(f"{n}://127.0.0.1:{p}" for n, p in ports.items()),
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(certs / "keystore.pem"),
        "ssl.truststore.location": str(certs / "ca.pem"),
        "ssl.client.auth": "requested",
        "sasl.enabled.mechanisms": "SCRAM-SHA-512,SCRAM-SHA-256,PLAIN",
        "authorizer.class.name": AUTHORIZER,
        "super.users": "User:ANONYMOUS;User:admin",
        "connection.failed.authentication.delay.ms": "200",
        "http.listen": f"127.0.0.1:{http_port}",
    })
    b.ports = ports
    b.http = f"http://127.0.0.1:{http_port}"
    b.start()
    yield b
    helpers.forget_clients()
    b.stop()
    # Shown only when the test failed (pytest prints captured output of failures).
    print(b.log_tail())


def wait_for_log(broker, text, timeout_s=5):
    deadline = time.monotonic() + timeout_s
    while text not in broker.log_tail():
        assert time.monotonic() < deadline, f"{text!r} not logged within {timeout_s}s"
        time.sleep(0.05)


def admin(broker):
    # Kept alive by helpers: a freed AdminClient drops requests still queued (_DESTROY).
    return helpers.admin(broker.bootstrap)


def add_user(broker, name, password, mechanisms=(ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512)):
    a = admin(broker)
    ups = [UserScramCredentialUpsertion(name, ScramCredentialInfo(m, 4096), password.encode()) for m in mechanisms]
    for f in a.alter_user_scram_credentials(ups).values():
        assert f.result(timeout=10) is None


def allow(broker, principal, rtype, name, op, pattern=ResourcePatternType.LITERAL):
    a = admin(broker)
    b = AclBinding(rtype, name, pattern, principal, "*", op, AclPermissionType.ALLOW)
    for f in a.create_acls([b]).values():
        assert f.result(timeout=10) is None


def sasl_conf(broker, certs, mechanism, user, password, protocol="SASL_SSL"):
    conf = {
        "bootstrap.servers": f"127.0.0.1:{broker.ports[protocol]}",
        "security.protocol": protocol,
        "sasl.mechanisms": mechanism,
        "sasl.username": user,
        "sasl.password": password,
    }
    if protocol.endswith("SSL"):
        conf["ssl.ca.location"] = str(certs / "ca.pem")
    return conf


def kafka_python_sasl(broker, user, password, mechanism):
    return dict(
        bootstrap_servers=f"127.0.0.1:{broker.ports['SASL_PLAINTEXT']}",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism=mechanism,
        sasl_plain_username=user,
        sasl_plain_password=password,
    )


def produce(conf, topic, values):
    reports = []
    p = Producer({**conf, "linger.ms": 5})
    for v in values:
        p.produce(topic, value=v, key=b"k", on_delivery=lambda err, msg: reports.append(err))
    assert p.flush(20) == 0
    return reports


def consume(conf, topic, group, n):
    c = Consumer({**conf, "group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    got, deadline = [], time.monotonic() + 20
    try:
        while len(got) < n and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                raise KafkaException(m.error())
            got.append(m.value())
    finally:
        c.close()
    return got


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"])
def test_sasl_ssl_produce_and_consume_with_each_mechanism(secure_broker, certs, mechanism):
    add_user(secure_broker, "alice", "alice-secret")
    allow(secure_broker, "User:alice", ResourceType.TOPIC, "orders", AclOperation.ALL, ResourcePatternType.PREFIXED)
    allow(secure_broker, "User:alice", ResourceType.GROUP, "alice-", AclOperation.READ, ResourcePatternType.PREFIXED)
    conf = sasl_conf(secure_broker, certs, mechanism, "alice", "alice-secret")
    topic = "orders-" + mechanism.lower()
    values = [f"{mechanism}-{i}".encode() for i in range(5)]
    assert produce(conf, topic, values) == [None] * 5
    assert consume(conf, topic, "alice-g", 5) == values
    # Connections on every Kafka listener count as listener="kafka" in /metrics.
    accepted = sample(scrape(secure_broker), "strom_connections_accepted_total", listener="kafka")
    assert accepted >= 3, accepted


def test_wrong_password_is_sasl_authentication_failed_and_logged_without_secrets(secure_broker, certs):
    add_user(secure_broker, "alice", "alice-secret")
    errors = []
    conf = sasl_conf(secure_broker, certs, "SCRAM-SHA-256", "alice", "not-the-password")
    p = Producer({**conf, "error_cb": errors.append})
    deadline = time.monotonic() + 15
    while not errors and time.monotonic() < deadline:
        p.poll(0.2)
    assert errors, "the client saw no error"
    e = errors[0]
    assert e.code() == KafkaError._AUTHENTICATION, e
    assert "invalid credentials with SASL mechanism SCRAM-SHA-256" in e.str(), e.str()
    log = secure_broker.log_tail()
    assert "SASL authentication failed" in log and "user=\"alice\"" in log and "peer=127.0.0.1" in log
    assert "not-the-password" not in log and "alice-secret" not in log


def test_requests_before_authentication_are_refused_on_a_sasl_listener(secure_broker):
    # A Metadata v1 request straight away on SASL_PLAINTEXT: the connection is closed.
    body = struct.pack(">hhih", 3, 1, 7, 4) + b"test" + struct.pack(">i", -1)
    with socket.create_connection(("127.0.0.1", secure_broker.ports["SASL_PLAINTEXT"]), timeout=5) as s:
        s.sendall(struct.pack(">i", len(body)) + body)
        assert s.recv(100) == b""
    wait_for_log(secure_broker, "before SASL authentication completed")


def test_plaintext_sent_to_a_tls_port_is_closed_and_other_clients_keep_working(secure_broker, certs):
    add_user(secure_broker, "alice", "alice-secret")
    allow(secure_broker, "User:alice", ResourceType.TOPIC, "orders", AclOperation.ALL, ResourcePatternType.PREFIXED)
    body = struct.pack(">hhih", 18, 3, 1, 4) + b"test" + b"\x00\x00\x00"
    with socket.create_connection(("127.0.0.1", secure_broker.ports["SASL_SSL"]), timeout=5) as s:
        s.sendall(struct.pack(">i", len(body)) + body)
        data = s.recv(1000)
        # rustls may answer with a TLS alert record before closing; never a Kafka response.
        assert data == b"" or data[0] == 0x15, data
    # The alert can reach the client before the broker's log line is written.
    wait_for_log(secure_broker, "TLS handshake failed")
    conf = sasl_conf(secure_broker, certs, "SCRAM-SHA-512", "alice", "alice-secret")
    assert produce(conf, "orders-after", [b"still-fine"]) == [None]


def test_client_certificate_subject_is_the_principal(secure_broker, certs):
    allow(secure_broker, "User:CN=carol,O=Strom", ResourceType.TOPIC, "carol-topic", AclOperation.WRITE)
    conf = {
        "bootstrap.servers": f"127.0.0.1:{secure_broker.ports['SSL']}",
        "security.protocol": "SSL",
        "ssl.ca.location": str(certs / "ca.pem"),
        "ssl.certificate.location": str(certs / "carol.pem"),
        "ssl.key.location": str(certs / "carol.key"),
    }
    # Created (and waited for) by the admin: carol may write, not create.
    helpers.create_topic(secure_broker.bootstrap, "carol-topic")
    helpers.create_topic(secure_broker.bootstrap, "other-topic")
    assert produce(conf, "carol-topic", [b"from-carol"]) == [None]
    denied = produce(conf, "other-topic", [b"nope"])
    assert denied[0] is not None and denied[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, denied


def test_write_without_create_on_a_missing_topic_is_refused_and_nothing_is_created(secure_broker, certs):
    # Kafka's Metadata rule: auto-creation needs CREATE on the cluster or the topic; WRITE
    # alone on a topic that does not exist is TOPIC_AUTHORIZATION_FAILED.
    add_user(secure_broker, "erin", "erin-pw")
    allow(secure_broker, "User:erin", ResourceType.TOPIC, "erin-", AclOperation.WRITE, ResourcePatternType.PREFIXED)
    conf = sasl_conf(secure_broker, certs, "SCRAM-SHA-256", "erin", "erin-pw")
    denied = produce(conf, "erin-missing", [b"x"])
    assert denied[0] is not None and denied[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, denied
    assert "erin-missing" not in admin(secure_broker).list_topics(timeout=10).topics

    allow(secure_broker, "User:erin", ResourceType.TOPIC, "erin-", AclOperation.CREATE, ResourcePatternType.PREFIXED)
    assert produce(conf, "erin-missing", [b"y"]) == [None]
    assert helpers.watermarks(secure_broker.bootstrap, "erin-missing") == (0, 1)


def strom(*args, stdin=None):
    out = subprocess.run([str(strom_bin()), *args], input=stdin, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_cli_users_and_acls_take_effect_on_a_running_broker(secure_broker, certs):
    data = str(secure_broker.data_dir)
    # The password comes from stdin, so it never shows in the process list.
    strom("user", "create", "carl", "--data-dir", data, stdin="carl-pw\n")
    strom("acl", "add", "--principal", "User:carl", "--operation", "write,create", "--topic", "carl-",
          "--prefixed", "--data-dir", data)
    users = strom("user", "list", "--data-dir", data)
    assert users == "carl\tSCRAM-SHA-256(4096),SCRAM-SHA-512(4096)\n"
    assert "carl-pw" not in (secure_broker.data_dir / "__strom_meta" / "scram-credentials.json").read_text()
    assert "ALLOW\tTOPIC:carl- (prefixed)\tUser:carl\tWRITE\thost=*" in strom("acl", "list", "--data-dir", data)

    conf = sasl_conf(secure_broker, certs, "SCRAM-SHA-256", "carl", "carl-pw")
    assert produce(conf, "carl-events", [b"1"]) == [None]

    strom("acl", "remove", "--principal", "User:carl", "--operation", "write", "--topic", "carl-", "--prefixed",
          "--data-dir", data)
    denied = produce(conf, "carl-events", [b"2"])
    assert denied[0] is not None and denied[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, denied

    strom("user", "delete", "carl", "--data-dir", data)
    errors = []
    p = Producer({**conf, "error_cb": errors.append})
    deadline = time.monotonic() + 15
    while not errors and time.monotonic() < deadline:
        p.poll(0.2)
    assert errors and errors[0].code() == KafkaError._AUTHENTICATION, errors


def test_kafka_python_over_sasl_plaintext_scram_sha_512(secure_broker):
    from kafka import KafkaConsumer, KafkaProducer

    add_user(secure_broker, "bob", "bob-pw")
    allow(secure_broker, "User:bob", ResourceType.TOPIC, "bobs", AclOperation.ALL)
    kw = kafka_python_sasl(secure_broker, "bob", "bob-pw", "SCRAM-SHA-512")
    p = KafkaProducer(**kw)
    offsets = [p.send("bobs", f"m{i}".encode()).get(timeout=15).offset for i in range(3)]
    p.close()
    assert offsets == [0, 1, 2]
    c = KafkaConsumer("bobs", auto_offset_reset="earliest", consumer_timeout_ms=5000, **kw)
    assert [m.value for m in c][:3] == [b"m0", b"m1", b"m2"]
    c.close()


def test_acls_denied_and_allowed_with_kafka_error_codes(secure_broker, certs):
    add_user(secure_broker, "dave", "dave-pw")
    conf = sasl_conf(secure_broker, certs, "SCRAM-SHA-256", "dave", "dave-pw")
    helpers.create_topic(secure_broker.bootstrap, "ledger")

    # Metadata: a topic dave may not DESCRIBE is left out of the full list.
    dave_admin = AdminClient(conf)
    assert "ledger" not in dave_admin.list_topics(timeout=10).topics

    # Produce: TOPIC_AUTHORIZATION_FAILED, then allowed once WRITE is granted.
    denied = produce(conf, "ledger", [b"x"])
    assert denied[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    allow(secure_broker, "User:dave", ResourceType.TOPIC, "ledger", AclOperation.WRITE)
    assert produce(conf, "ledger", [b"x"]) == [None]
    assert "ledger" in dave_admin.list_topics(timeout=10).topics, "WRITE implies DESCRIBE"

    # Fetch in a group: no READ on the group -> GROUP_AUTHORIZATION_FAILED.
    allow(secure_broker, "User:dave", ResourceType.TOPIC, "ledger", AclOperation.READ)
    with pytest.raises(KafkaException) as e:
        consume(conf, "ledger", "dave-group", 1)
    assert e.value.args[0].code() == KafkaError.GROUP_AUTHORIZATION_FAILED
    allow(secure_broker, "User:dave", ResourceType.GROUP, "dave-group", AclOperation.READ)
    assert consume(conf, "ledger", "dave-group", 1) == [b"x"]

    # CreateTopics without CREATE: TOPIC_AUTHORIZATION_FAILED; with it, created.
    f = dave_admin.create_topics([NewTopic("dave-new", 1)])["dave-new"]
    with pytest.raises(KafkaException) as e:
        f.result(timeout=10)
    assert e.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    allow(secure_broker, "User:dave", ResourceType.TOPIC, "dave-", AclOperation.CREATE, ResourcePatternType.PREFIXED)
    assert dave_admin.create_topics([NewTopic("dave-new", 1)])["dave-new"].result(timeout=10) is None

    # ACL admin APIs need the cluster: CLUSTER_AUTHORIZATION_FAILED for dave. (librdkafka drops
    # DescribeAcls' top-level error and returns an empty list, so kafka-python checks it.)
    from kafka.admin import ACLFilter, ACLOperation, ACLPermissionType, ResourcePatternFilter
    from kafka.admin import ACLResourcePatternType, ResourceType as KResourceType
    from kafka.errors import ClusterAuthorizationFailedError

    kp_admin = KafkaAdminClient(**kafka_python_sasl(secure_broker, "dave", "dave-pw", "SCRAM-SHA-256"))
    try:
        with pytest.raises(ClusterAuthorizationFailedError):
            kp_admin.describe_acls(ACLFilter(principal=None, host="*", operation=ACLOperation.ANY,
                                             permission_type=ACLPermissionType.ANY,
                                             resource_pattern=ResourcePatternFilter(KResourceType.ANY, None,
                                                                                    ACLResourcePatternType.ANY)))
    finally:
        kp_admin.close()
    acls = admin(secure_broker).describe_acls(AclBindingFilter(
        ResourceType.TOPIC, "ledger", ResourcePatternType.LITERAL, None, None,
        AclOperation.ANY, AclPermissionType.ANY)).result(timeout=10)
    assert sorted(a.operation for a in acls) == sorted([AclOperation.WRITE, AclOperation.READ])

    # A deny wins over the allow.
    deny = AclBinding(ResourceType.TOPIC, "ledger", ResourcePatternType.LITERAL, "User:dave", "*",
                      AclOperation.WRITE, AclPermissionType.DENY)
    for f in admin(secure_broker).create_acls([deny]).values():
        assert f.result(timeout=10) is None
    assert produce(conf, "ledger", [b"y"])[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
