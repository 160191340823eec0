"""The client matrix over the secure listeners: kcat (librdkafka's CLI) over SASL_SSL with each
mechanism, kafka-python and aiokafka over SASL_PLAINTEXT and SASL_SSL, and KafkaJS over
SASL_SSL with SCRAM. Each reads back every message in order with its key, and is refused
with Kafka's exact error where its ACLs say no. (The Java client's matrix is in
test_java_client.py; client certificates and principal mapping in test_security_mtls.py.)

One broker serves the whole module, to keep the tier short: every test has its own user,
topics and ACLs, so the tests do not see each other. Its PLAINTEXT listener is the admin
listener (User:ANONYMOUS is a super user).
"""

import asyncio
import json
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

import helpers
from conftest import Broker, free_port
from tlscerts import make_certs

pytestmark = pytest.mark.timeout(120)

AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
KAFKAJS_DIR = Path(__file__).resolve().parent / "kafkajs"
# Messages per round trip: enough for several batches, few enough to stay quick.
COUNT = 20


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def secure(tmp_path_factory, certs):
    d = tmp_path_factory.mktemp("secure-clients")
    (d / "data").mkdir()
    ports = {p: free_port() for p in ("SASL_SSL", "SASL_PLAINTEXT")}
    b = Broker(d / "data", d / "broker.log")
    b.settings.update({
        "listeners": f"PLAINTEXT://{b.bootstrap}," + ",".join(f"{n}://127.0.0.1:{p}" for n, p in ports.items()),
        "ssl.keystore.location": str(certs / "keystore.pem"),
        "sasl.enabled.mechanisms": "SCRAM-SHA-512,SCRAM-SHA-256,PLAIN",
        "authorizer.class.name": AUTHORIZER,
        "super.users": "User:ANONYMOUS;User:admin",
        "connection.failed.authentication.delay.ms": "100",
        "http.listen": "",
    })
    b.ports = ports
    b.certs = certs
    b.start()
    yield b
    helpers.forget_clients()
    b.stop()


@pytest.fixture
def broker_log(secure):
    yield secure
    # Shown only when the test failed.
    print(secure.log_tail())


class Tenant:
    """A user with SCRAM credentials for both mechanisms, ALL on topics `<name>-*`, READ on
    groups `<name>-*`, and one topic `<name>-data` made by the admin. `<name>-locked` exists
    too but the user has no ACL on it (the prefix rule is on `<name>-data`)."""

    def __init__(self, broker, partitions=1):
        self.name = f"u{uuid.uuid4().hex[:8]}"
        self.password = f"pw-{uuid.uuid4().hex}"
        self.topic = f"{self.name}-data"
        self.locked = f"{self.name}-locked"
        self.group = f"{self.name}-group"
        a = helpers.admin(broker.bootstrap)
        ups = [UserScramCredentialUpsertion(self.name, ScramCredentialInfo(m, 4096), self.password.encode())
               for m in (ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512)]
        for f in a.alter_user_scram_credentials(ups).values():
            assert f.result(timeout=15) is None
        bindings = [
            AclBinding(ResourceType.TOPIC, self.topic, ResourcePatternType.PREFIXED, f"User:{self.name}", "*",
                       AclOperation.ALL, AclPermissionType.ALLOW),
            AclBinding(ResourceType.GROUP, f"{self.name}-", ResourcePatternType.PREFIXED, f"User:{self.name}", "*",
                       AclOperation.READ, AclPermissionType.ALLOW),
        ]
        for f in a.create_acls(bindings).values():
            assert f.result(timeout=15) is None
        helpers.create_topic(broker.bootstrap, self.topic, partitions)
        helpers.create_topic(broker.bootstrap, self.locked)


def expected_pairs(tag):
    return [(f"k{i}", f"{tag}-{i}") for i in range(COUNT)]


# ---------------------------------------------------------------------------- kcat


def kcat(broker, protocol, mechanism, user, password, *args, stdin=None):
    cmd = ["kcat", "-b", f"127.0.0.1:{broker.ports[protocol]}", "-X", f"security.protocol={protocol}",
           "-X", f"sasl.mechanisms={mechanism}", "-X", f"sasl.username={user}", "-X", f"sasl.password={password}",
           "-X", "socket.timeout.ms=10000", "-X", "message.timeout.ms=15000"]
    if protocol.endswith("SSL"):
        cmd += ["-X", f"ssl.ca.location={broker.certs / 'ca.pem'}"]
    return subprocess.run(cmd + list(args), input=stdin, capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat not installed")
@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"])
def test_kcat_over_sasl_ssl(broker_log, mechanism):
    b = broker_log
    t = Tenant(b)
    lines = "".join(f"{k}:{v}\n" for k, v in expected_pairs(mechanism))
    p = kcat(b, "SASL_SSL", mechanism, t.name, t.password, "-P", "-t", t.topic, "-K", ":", stdin=lines)
    assert p.returncode == 0, p.stderr
    c = kcat(b, "SASL_SSL", mechanism, t.name, t.password, "-C", "-t", t.topic, "-o", "beginning", "-e",
             "-f", "%k:%s:%o\n")
    assert c.returncode == 0, c.stderr
    got = [tuple(line.split(":")) for line in c.stdout.splitlines()]
    assert got == [(k, v, str(i)) for i, (k, v) in enumerate(expected_pairs(mechanism))]

    # No ACL on the locked topic: the delivery fails with Kafka's TOPIC_AUTHORIZATION_FAILED.
    denied = kcat(b, "SASL_SSL", mechanism, t.name, t.password, "-P", "-t", t.locked, stdin="k:v\n")
    assert denied.returncode != 0
    assert "Topic authorization failed" in denied.stderr, denied.stderr

    # A wrong password never gets in.
    wrong = kcat(b, "SASL_SSL", mechanism, t.name, "wrong", "-L", "-m", "5")
    assert wrong.returncode != 0
    assert "Authentication failed" in wrong.stderr or "authentication failed" in wrong.stderr, wrong.stderr


# ---------------------------------------------------------------------------- kafka-python


def kafka_python_conf(broker, protocol, user, password, mechanism="SCRAM-SHA-256"):
    conf = dict(bootstrap_servers=f"127.0.0.1:{broker.ports[protocol]}", security_protocol=protocol,
                sasl_mechanism=mechanism, sasl_plain_username=user, sasl_plain_password=password,
                request_timeout_ms=15000)
    if protocol.endswith("SSL"):
        conf["ssl_cafile"] = str(broker.certs / "ca.pem")
    return conf


@pytest.mark.parametrize("protocol,mechanism", [("SASL_PLAINTEXT", "SCRAM-SHA-256"), ("SASL_SSL", "SCRAM-SHA-512"),
                                                ("SASL_SSL", "PLAIN")])
def test_kafka_python(broker_log, protocol, mechanism):
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.errors import TopicAuthorizationFailedError

    b = broker_log
    t = Tenant(b)
    conf = kafka_python_conf(b, protocol, t.name, t.password, mechanism)
    p = KafkaProducer(linger_ms=5, **conf)
    try:
        futures = [p.send(t.topic, key=k.encode(), value=v.encode()) for k, v in expected_pairs(protocol)]
        assert [f.get(timeout=20).offset for f in futures] == list(range(COUNT))
        with pytest.raises(TopicAuthorizationFailedError):
            p.send(t.locked, key=b"k", value=b"v").get(timeout=20)
    finally:
        p.close(timeout=5)

    c = KafkaConsumer(t.topic, group_id=t.group, auto_offset_reset="earliest", consumer_timeout_ms=8000, **conf)
    try:
        got = []
        for m in c:
            got.append((m.key.decode(), m.value.decode()))
            if len(got) == COUNT:
                break
        c.commit()
    finally:
        c.close()
    assert got == expected_pairs(protocol)


# ---------------------------------------------------------------------------- aiokafka


def aiokafka_conf(broker, protocol, user, password, mechanism="SCRAM-SHA-256"):
    from aiokafka.helpers import create_ssl_context

    conf = dict(bootstrap_servers=f"127.0.0.1:{broker.ports[protocol]}", security_protocol=protocol,
                sasl_mechanism=mechanism, sasl_plain_username=user, sasl_plain_password=password,
                request_timeout_ms=15000)
    if protocol.endswith("SSL"):
        conf["ssl_context"] = create_ssl_context(cafile=str(broker.certs / "ca.pem"))
    return conf


@pytest.mark.parametrize("protocol,mechanism", [("SASL_PLAINTEXT", "SCRAM-SHA-512"), ("SASL_SSL", "SCRAM-SHA-256")])
def test_aiokafka(broker_log, caplog, protocol, mechanism):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.errors import KafkaConnectionError, TopicAuthorizationFailedError

    b = broker_log
    t = Tenant(b)

    async def main():
        conf = aiokafka_conf(b, protocol, t.name, t.password, mechanism)
        p = AIOKafkaProducer(linger_ms=5, **conf)
        await p.start()
        try:
            futures = [await p.send(t.topic, key=k.encode(), value=v.encode()) for k, v in expected_pairs(protocol)]
            offsets = [(await f).offset for f in futures]
            with pytest.raises(TopicAuthorizationFailedError):
                await asyncio.wait_for(p.send_and_wait(t.locked, b"v", key=b"k"), 30)
        finally:
            await p.stop()
        c = AIOKafkaConsumer(t.topic, group_id=t.group, auto_offset_reset="earliest", enable_auto_commit=False,
                             **aiokafka_conf(b, protocol, t.name, t.password, mechanism))
        await c.start()
        got = []
        try:
            async def read():
                async for m in c:
                    got.append((m.key.decode(), m.value.decode()))
                    if len(got) == COUNT:
                        return
            await asyncio.wait_for(read(), 30)
            await c.commit()
        finally:
            await c.stop()
        bad = AIOKafkaProducer(**aiokafka_conf(b, protocol, t.name, "wrong", mechanism))
        # aiokafka raises "Unable to bootstrap" and logs the broker's error code as the cause.
        with pytest.raises(KafkaConnectionError):
            await asyncio.wait_for(bad.start(), 30)
        await bad.stop()
        return offsets, got

    offsets, got = asyncio.run(main())
    assert offsets == list(range(COUNT))
    assert got == expected_pairs(protocol)
    causes = [r.getMessage() for r in caplog.records if r.name.startswith("aiokafka")]
    assert any("[Error 58] SaslAuthenticationFailed" in c for c in causes), causes


# ---------------------------------------------------------------------------- KafkaJS


@pytest.mark.skipif(shutil.which("node") is None or not (KAFKAJS_DIR / "node_modules" / "kafkajs").is_dir(),
                    reason="node or KafkaJS not installed")
@pytest.mark.parametrize("mechanism", ["scram-sha-256", "scram-sha-512"])
def test_kafkajs_over_sasl_ssl_scram(broker_log, mechanism):
    b = broker_log
    t = Tenant(b)
    args = [f"127.0.0.1:{b.ports['SASL_SSL']}", str(b.certs / "ca.pem"), mechanism, t.name, t.password,
            t.topic, t.locked, t.group, str(COUNT)]
    r = subprocess.run(["node", str(KAFKAJS_DIR / "secure.js"), *args], capture_output=True, timeout=90,
                       cwd=str(KAFKAJS_DIR))
    assert r.returncode == 0, f"KafkaJS failed:\n{r.stderr.decode(errors='replace')[-4000:]}"
    out = json.loads(r.stdout.decode().strip().splitlines()[-1])
    assert [int(s["baseOffset"]) for s in out["sent"]] == [0]
    assert [(m["key"], m["value"]) for m in out["consumed"]] == expected_pairs("js")
    assert [m["offset"] for m in out["consumed"]] == list(range(COUNT))
    assert out["denied"] == {"name": "KafkaJSProtocolError", "type": "TOPIC_AUTHORIZATION_FAILED"}, out["denied"]
    assert out["wrong_password"]["name"] == "KafkaJSSASLAuthenticationError", out["wrong_password"]
