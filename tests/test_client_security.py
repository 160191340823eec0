"""Strom's own clients over TLS and SASL against the real binary: the `strom` CLI with kcat's
`-X property=value` and `-F file`, and the JSON protocol on a TLS listener that requires
authentication and checks the same ACLs as the Kafka API. The certificates and the secure
broker (PLAINTEXT admin listener whose User:ANONYMOUS is a super user, SASL_SSL, SSL,
SASL_PLAINTEXT, authorizer on) are test_security.py's fixtures.
"""

import subprocess

import pytest
from confluent_kafka.admin import AclOperation, ResourcePatternType, ResourceType

from conftest import strom_bin
from test_security import add_user, allow, certs, secure_broker  # noqa: F401 (fixtures)

pytestmark = pytest.mark.timeout(120)


def run_strom(*args, stdin=None):
    return subprocess.run([str(strom_bin()), *args], input=stdin, capture_output=True, text=True, timeout=60)


def sasl_ssl_props(broker, certs, mechanism, user, password):
    return ["--bootstrap", f"127.0.0.1:{broker.ports['SASL_SSL']}",
            "-X", "security.protocol=SASL_SSL", "-X", f"sasl.mechanisms={mechanism}",
            "-X", f"sasl.username={user}", "-X", f"sasl.password={password}",
            "-X", f"ssl.ca.location={certs / 'ca.pem'}"]


def test_cli_produce_and_consume_over_sasl_ssl_with_x_properties(secure_broker, certs):
    add_user(secure_broker, "alice", "alice-secret")
    allow(secure_broker, "User:alice", ResourceType.TOPIC, "cli-", AclOperation.ALL, ResourcePatternType.PREFIXED)
    allow(secure_broker, "User:alice", ResourceType.GROUP, "cli-", AclOperation.READ, ResourcePatternType.PREFIXED)
    props = sasl_ssl_props(secure_broker, certs, "SCRAM-SHA-512", "alice", "alice-secret")
    lines = [f"line {i}" for i in range(20)]

    out = run_strom("topic", "create", "cli-orders", "--partitions", "3", *props)
    assert out.returncode == 0, out.stderr
    out = run_strom("produce", "cli-orders", *props, stdin="\n".join(lines) + "\n")
    assert out.returncode == 0, out.stderr
    out = run_strom("consume", "cli-orders", "--from-beginning", "--count", "20", *props)
    assert out.returncode == 0, out.stderr
    assert sorted(out.stdout.splitlines()) == sorted(lines)
    # As a group member: the coordinator's connection authenticates too, and commits.
    out = run_strom("consume", "cli-orders", "--group", "cli-readers", "--from-beginning", "--count", "20", *props)
    assert out.returncode == 0, out.stderr
    assert sorted(out.stdout.splitlines()) == sorted(lines)
    out = run_strom("group", "describe", "cli-readers", *props)
    assert out.returncode == 0, out.stderr
    assert "cli-orders" in out.stdout, out.stdout


def test_cli_reads_properties_from_a_file_and_never_prints_the_password(secure_broker, certs, tmp_path):
    add_user(secure_broker, "alice", "alice-secret")
    allow(secure_broker, "User:alice", ResourceType.TOPIC, "filed", AclOperation.ALL)
    props = tmp_path / "client.properties"
    props.write_text("# as kcat -F reads it\n"
                     "security.protocol=SASL_SSL\nsasl.mechanisms=PLAIN\n"
                     "sasl.username=alice\nsasl.password=alice-secret\n"
                     f"ssl.ca.location={certs / 'ca.pem'}\n")
    bootstrap = ["--bootstrap", f"127.0.0.1:{secure_broker.ports['SASL_SSL']}"]
    out = run_strom("topic", "create", "filed", "-F", str(props), *bootstrap)
    assert out.returncode == 0, out.stderr
    out = run_strom("produce", "filed", "-F", str(props), *bootstrap, stdin="a\nb\nc\n")
    assert out.returncode == 0, out.stderr
    out = run_strom("consume", "filed", "--from-beginning", "--count", "3", "-F", str(props), *bootstrap)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "a\nb\nc\n"

    # -X wins over the file: a wrong password fails, with Kafka's error and without the secret.
    out = run_strom("produce", "filed", "-F", str(props), "-X", "sasl.password=wrong-pw", *bootstrap, stdin="d\n")
    assert out.returncode != 0
    assert (f"authenticating to 127.0.0.1:{secure_broker.ports['SASL_SSL']} as alice with PLAIN: "
            "SaslAuthenticationFailed") in out.stderr, out.stderr
    assert "wrong-pw" not in out.stderr and "alice-secret" not in out.stderr


def test_cli_refuses_bad_properties_with_a_clear_error(secure_broker, certs):
    out = run_strom("topic", "list", "--bootstrap", secure_broker.bootstrap, "-X", "security.protcol=SSL")
    assert out.returncode != 0
    assert 'unknown property "security.protcol"' in out.stderr, out.stderr
    out = run_strom("topic", "list", "--bootstrap", f"127.0.0.1:{secure_broker.ports['SSL']}",
                    "-X", "security.protocol=SSL", "-X", f"ssl.ca.location={certs / 'nope.pem'}")
    assert out.returncode != 0
    assert f"cannot read ssl.ca.location {certs / 'nope.pem'}" in out.stderr, out.stderr


# --- The JSON protocol on its own secured listener ---------------------------------------

import json  # noqa: E402
import socket  # noqa: E402
import ssl  # noqa: E402

from conftest import Broker, free_port  # noqa: E402

AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"


@pytest.fixture
def json_broker(request, tmp_path, certs):
    """A broker whose json.listen listener is secured with the test's parameter,
    with the authorizer on and only User:admin a super user; users and ACLs are written with
    the `strom user` and `strom acl` commands, which a running broker picks up."""
    protocol = request.param
    data = tmp_path / "data"
    data.mkdir()
    b = Broker(data, tmp_path / "broker.log")
    b.json_port = free_port()
    b.settings.update({
        "json.listen": f"127.0.0.1:{b.json_port}",
        "json.listener.security.protocol": protocol,
        "ssl.keystore.location": str(certs / "keystore.pem"),
        "ssl.truststore.location": str(certs / "ca.pem"),
        "ssl.client.auth": "requested",
        "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-256",
        "authorizer.class.name": AUTHORIZER,
        "super.users": "User:admin",
        "connection.failed.authentication.delay.ms": "100",
        "http.listen": "",
    })
    for user in ("admin", "alice"):
        out = run_strom("user", "create", user, "--data-dir", str(data), stdin=f"{user}-secret\n")
        assert out.returncode == 0, out.stderr
    b.start()
    yield b
    b.stop()
    print(b.log_tail())


def acl(broker, *args):
    out = run_strom("acl", "add", *args, "--data-dir", str(broker.data_dir))
    assert out.returncode == 0, out.stderr


class JsonClient:
    def __init__(self, broker, certs, tls=True, cert=None):
        sock = socket.create_connection(("127.0.0.1", broker.json_port), timeout=20)
        if tls:
            ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
            if cert:
                ctx.load_cert_chain(str(certs / f"{cert}.pem"), str(certs / f"{cert}.key"))
            sock = ctx.wrap_socket(sock, server_hostname="localhost")
        self.sock = sock
        self.reader = sock.makefile("rb")

    def __call__(self, **request):
        self.sock.sendall(json.dumps(request).encode() + b"\n")
        line = self.reader.readline()
        assert line, f"the broker closed the connection instead of answering {request['type']}"
        return json.loads(line)

    def closed(self):
        return self.reader.readline() == b""


def login(broker, certs, user):
    c = JsonClient(broker, certs)
    assert c(type="authenticate", mechanism="PLAIN", username=user, password=f"{user}-secret") == \
        {"ok": True, "principal": f"User:{user}"}
    return c


@pytest.mark.parametrize("json_broker", ["SASL_SSL"], indirect=True)
def test_json_over_tls_requires_authentication(json_broker, certs):
    c = JsonClient(json_broker, certs)
    r = c(type="list_topics")
    assert r["ok"] is False and r["code"] == "authentication_required", r
    r = c(type="authenticate", mechanism="SCRAM-SHA-256", username="alice", password="alice-secret")
    assert r["code"] == "unsupported_sasl_mechanism", r
    r = c(type="authenticate", mechanism="PLAIN", username="alice", password="wrong")
    assert r == {"ok": False, "error": "Authentication failed: Invalid username or password",
                 "code": "sasl_authentication_failed"}
    assert c.closed(), "a failed authentication closes the connection, as Kafka does"
    log = json_broker.log_tail()
    assert "JSON authentication failed" in log and "wrong" not in log and "alice-secret" not in log

    # Plaintext to the TLS port gets at most a TLS alert back, then the connection closes.
    raw = JsonClient(json_broker, certs, tls=False)
    raw.sock.sendall(b'{"type":"list_topics"}\n')
    assert b"topics" not in raw.reader.read()

    c = login(json_broker, certs, "alice")
    r = c(type="authenticate", mechanism="PLAIN", username="alice", password="alice-secret")
    assert r["code"] == "illegal_sasl_state", r


@pytest.mark.parametrize("json_broker", ["SASL_SSL"], indirect=True)
def test_json_requests_are_checked_against_the_acls_as_the_authenticated_user(json_broker, certs):
    admin = login(json_broker, certs, "admin")
    for topic in ("orders", "secret"):
        assert admin(type="create_topic", topic=topic, partitions=1)["ok"]

    alice = login(json_broker, certs, "alice")
    assert alice(type="create_topic", topic="mine") == {
        "ok": False, "error": "Not authorized to access topics: [mine]", "code": "topic_authorization_failed"}
    assert alice(type="produce", topic="orders", value="x") == {
        "ok": False, "error": "Not authorized to access topics: [orders]", "code": "topic_authorization_failed"}
    assert alice(type="list_topics") == {"ok": True, "topics": []}

    acl(json_broker, "--principal", "User:alice", "--operation", "write", "--topic", "orders")
    values = [f"order {i}" for i in range(5)]
    assert [alice(type="produce", topic="orders", partition=0, value=v)["offset"] for v in values] == list(range(5))
    assert alice(type="list_topics") == {"ok": True, "topics": [{"topic": "orders", "partitions": 1}]}

    # Reading needs READ on the consumer's group (json:<consumer_id>) and on the topic.
    r = alice(type="consume", topic="orders", partition=0, consumer_id="c1", offset=0)
    assert r == {"ok": False, "error": "Not authorized to access group: json:c1", "code": "group_authorization_failed"}
    acl(json_broker, "--principal", "User:alice", "--operation", "read", "--group", "json:c1")
    r = alice(type="consume", topic="orders", partition=0, consumer_id="c1", offset=0)
    assert r["code"] == "topic_authorization_failed", r
    acl(json_broker, "--principal", "User:alice", "--operation", "read", "--topic", "orders")
    r = alice(type="consume", topic="orders", partition=0, consumer_id="c1", offset=0, max_messages=10)
    assert [m["value"] for m in r["messages"]] == values, r

    # Group membership: READ on the group and on every topic joined.
    r = alice(type="join_group", group="readers", topics=["orders"])
    assert r["code"] == "group_authorization_failed", r
    acl(json_broker, "--principal", "User:alice", "--operation", "read", "--group", "readers")
    r = alice(type="join_group", group="readers", topics=["orders", "secret"])
    assert r == {"ok": False, "error": "Not authorized to access topics: [secret]", "code": "topic_authorization_failed"}
    member = alice(type="join_group", group="readers", topics=["orders"])
    assert member["ok"], member
    r = alice(type="consume", group="readers", member_id=member["member_id"], max_messages=10, wait_ms=2000)
    assert [m["value"] for m in r["messages"]] == values, r


@pytest.mark.parametrize("json_broker", ["SSL"], indirect=True)
def test_anonymous_json_clients_are_denied_unless_an_acl_allows_them(json_broker, certs):
    anonymous = JsonClient(json_broker, certs)
    assert anonymous(type="create_topic", topic="open")["code"] == "topic_authorization_failed"
    r = anonymous(type="authenticate", mechanism="PLAIN", username="alice", password="alice-secret")
    assert r["code"] == "illegal_sasl_state" and "json.listener.security.protocol=SSL" in r["error"], r

    acl(json_broker, "--principal", "User:ANONYMOUS", "--operation", "create,write", "--topic", "open")
    assert anonymous(type="create_topic", topic="open")["ok"]
    assert anonymous(type="produce", topic="open", value="hi")["ok"]

    # A client certificate is the principal, as on the Kafka listener.
    carol = JsonClient(json_broker, certs, cert="carol")
    r = carol(type="describe_topic", topic="open")
    assert r["code"] == "topic_authorization_failed", r
    acl(json_broker, "--principal", "User:CN=carol,O=Strom", "--operation", "describe", "--topic", "open")
    r = carol(type="describe_topic", topic="open")
    assert r["ok"] and r["partitions"][0]["end_offset"] == 1, r
