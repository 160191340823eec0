"""Client certificates and the broker's own certificate, against the real binary:

- `ssl.principal.mapping.rules` (Kafka's RULE:pattern/replacement/[LU] and DEFAULT) turn a
  client certificate's subject into the principal the ACLs name, driven with kcat over SSL
  with `ssl.client.auth=required`;
- the broker's certificate is reloaded without a restart when its file changes or on SIGHUP:
  new connections verify against the new CA, open ones carry on, and a bad file is logged
  and the old certificate kept.
"""

import shutil
import signal
import socket
import ssl
import subprocess
import time

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AclBinding, AclOperation, AclPermissionType, ResourcePatternType, ResourceType

import helpers
from conftest import Broker, free_port, strom_bin
from tlscerts import CLIENT_EXT, SERVER_EXT, issue, keystore, make_ca, make_certs

pytestmark = pytest.mark.timeout(120)

# alice.example's certificate maps to User:alice, carol's to User:carol-ops; any other
# subject matches no rule and is refused (no DEFAULT at the end).
RULES = r"RULE:^CN=([a-z]+)\.example,OU=Clients,O=Strom$/$1/L,RULE:^CN=(carol),O=Strom$/$1-ops/"


@pytest.fixture
def start_secure(tmp_path):
    """Factory: a broker whose PLAINTEXT admin listener is its own port, plus an SSL listener
    on a port of its own (`broker.ssl_port`), with extra settings."""
    brokers = []

    def start(settings):
        n = len(brokers)
        (tmp_path / f"data{n}").mkdir()
        b = Broker(tmp_path / f"data{n}", tmp_path / f"broker{n}.log")
        b.ssl_port = free_port()
        b.settings.update({"listeners": f"PLAINTEXT://{b.bootstrap},SSL://127.0.0.1:{b.ssl_port}",
                           "http.listen": "", **settings})
        brokers.append(b)
        return b.start()

    yield start
    helpers.forget_clients()
    for b in brokers:
        b.stop()
        # Shown only when the test failed.
        print(b.log_tail())


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = make_certs(tmp_path_factory.mktemp("certs"))
    issue(d, "mallory", "/O=Elsewhere/CN=mallory", CLIENT_EXT)
    # A second CA and a server certificate from it, for the reload tests.
    make_ca(d, "ca2", "/CN=Strom Test CA 2")
    issue(d, "server2", "/CN=localhost", SERVER_EXT, ca="ca2")
    return d


def wait_for_log(broker, text, timeout_s=15):
    deadline = time.monotonic() + timeout_s
    while text not in broker.log_tail(200_000):
        assert time.monotonic() < deadline, f"{text!r} not logged within {timeout_s}s\n{broker.log_tail()}"
        time.sleep(0.1)


def kcat_ssl(port, certs, client, *args, stdin=None):
    cmd = ["kcat", "-b", f"127.0.0.1:{port}", "-X", "security.protocol=SSL",
           "-X", f"ssl.ca.location={certs / 'ca.pem'}", "-X", "socket.timeout.ms=10000",
           "-X", "message.timeout.ms=15000"]
    if client:
        cmd += ["-X", f"ssl.certificate.location={certs / f'{client}.pem'}",
                "-X", f"ssl.key.location={certs / f'{client}.key'}"]
    return subprocess.run(cmd + list(args), input=stdin, capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat not installed")
def test_principal_mapping_rules_name_the_principal_the_acls_see(start_secure, certs):
    b = start_secure({
        "ssl.keystore.location": str(certs / "keystore.pem"),
        "ssl.truststore.location": str(certs / "ca.pem"),
        "ssl.client.auth": "required",
        "ssl.principal.mapping.rules": RULES,
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": "User:ANONYMOUS",
    })
    port = b.ssl_port
    helpers.create_topic(b.bootstrap, "alice-topic")
    a = helpers.admin(b.bootstrap)
    acl = AclBinding(ResourceType.TOPIC, "alice-topic", ResourcePatternType.LITERAL, "User:alice", "*",
                     AclOperation.ALL, AclPermissionType.ALLOW)
    for f in a.create_acls([acl]).values():
        assert f.result(timeout=15) is None

    # alice.example -> User:alice: writes and reads back every message in order, with keys.
    pairs = [(f"k{i}", f"mtls-{i}") for i in range(20)]
    p = kcat_ssl(port, certs, "alice", "-P", "-t", "alice-topic", "-K", ":",
                 stdin="".join(f"{k}:{v}\n" for k, v in pairs))
    assert p.returncode == 0, p.stderr
    c = kcat_ssl(port, certs, "alice", "-C", "-t", "alice-topic", "-o", "beginning", "-e", "-f", "%k:%s\n")
    assert c.returncode == 0, c.stderr
    assert [tuple(line.split(":")) for line in c.stdout.splitlines()] == pairs

    # carol -> User:carol-ops, which has no ACL: Kafka's TOPIC_AUTHORIZATION_FAILED.
    denied = kcat_ssl(port, certs, "carol", "-P", "-t", "alice-topic", stdin="k:v\n")
    assert denied.returncode != 0 and "Topic authorization failed" in denied.stderr, denied.stderr
    acl_carol = AclBinding(ResourceType.TOPIC, "alice-topic", ResourcePatternType.LITERAL, "User:carol-ops", "*",
                           AclOperation.WRITE, AclPermissionType.ALLOW)
    for f in a.create_acls([acl_carol]).values():
        assert f.result(timeout=15) is None
    allowed = kcat_ssl(port, certs, "carol", "-P", "-t", "alice-topic", stdin="carol:ops\n")
    assert allowed.returncode == 0, allowed.stderr

    # mallory matches no rule: the connection is refused, with a log line naming why.
    refused = kcat_ssl(port, certs, "mallory", "-L", "-m", "5")
    assert refused.returncode != 0
    wait_for_log(b, "no ssl.principal.mapping.rules rule applies")
    assert "No rules apply to CN=mallory,O=Elsewhere" in b.log_tail(200_000)

    # No certificate at all with ssl.client.auth=required: the handshake fails.
    none = kcat_ssl(port, certs, None, "-L", "-m", "5")
    assert none.returncode != 0
    wait_for_log(b, "TLS handshake failed")


def test_invalid_principal_mapping_rules_stop_startup(tmp_path):
    r = subprocess.run([str(strom_bin()), "serve", "--data-dir", str(tmp_path / "d"), "--listen", "127.0.0.1:0",
                        "--set", "http.listen=", "--set", "ssl.principal.mapping.rules=DEFAULT/L"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "ssl.principal.mapping.rules" in r.stderr and "Invalid rule" in r.stderr, r.stderr


# ---------------------------------------------------------------------------- certificate reload


def presented_by(port, cafile):
    """Completes a TLS handshake verifying against `cafile`; True if it verifies."""
    ctx = ssl.create_default_context(cafile=str(cafile))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost"):
                return True
    except ssl.SSLCertVerificationError:
        return False


def replace_file(path, text):
    """Atomically, as a deploy tool would: write beside it, then rename over it."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def reload_broker(start_secure, certs, tmp_path, interval_ms):
    store = tmp_path / "keystore.pem"
    store.write_text(keystore(certs, "server"))
    b = start_secure({"ssl.keystore.location": str(store), "ssl.reload.check.interval.ms": str(interval_ms)})
    return store, b, b.ssl_port


def ssl_producer(port, certs):
    return Producer({"bootstrap.servers": f"127.0.0.1:{port}", "security.protocol": "SSL",
                     "ssl.ca.location": str(certs / "ca.pem"), "linger.ms": 0, **helpers.FAST_CLIENT})


def produce_one(p, topic, value):
    reports = []
    p.produce(topic, value=value, on_delivery=lambda err, msg: reports.append(err))
    assert p.flush(20) == 0
    return reports


def test_keystore_file_change_is_picked_up_and_a_bad_file_keeps_the_old_certificate(
        start_secure, certs, tmp_path):
    store, b, port = reload_broker(start_secure, certs, tmp_path, interval_ms=300)
    helpers.create_topic(b.bootstrap, "reload")
    assert presented_by(port, certs / "ca.pem")
    p = ssl_producer(port, certs)
    assert produce_one(p, "reload", b"before") == [None]

    # A broken file: logged, and new connections still get the old certificate.
    replace_file(store, "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    wait_for_log(b, "TLS certificate reload failed; keeping the previous certificate")
    assert presented_by(port, certs / "ca.pem")

    # The new certificate (another CA): new connections verify against the new CA only.
    replace_file(store, keystore(certs, "server2"))
    wait_for_log(b, "TLS certificate reloaded")
    assert presented_by(port, certs / "ca2.pem")
    assert not presented_by(port, certs / "ca.pem")
    # The producer's connection, opened with the old certificate, carries on (a reconnect
    # would now fail verification against the old CA it trusts).
    assert produce_one(p, "reload", b"after") == [None]
    assert helpers.watermarks(b.bootstrap, "reload") == (0, 2)


def test_sighup_reloads_the_certificate(start_secure, certs, tmp_path):
    store, b, port = reload_broker(start_secure, certs, tmp_path, interval_ms=0)
    replace_file(store, keystore(certs, "server2"))
    # Checks are off (interval 0): still the old certificate until the signal.
    time.sleep(0.5)
    assert presented_by(port, certs / "ca.pem")
    b.proc.send_signal(signal.SIGHUP)
    wait_for_log(b, "TLS certificate reloaded")
    assert presented_by(port, certs / "ca2.pem")
    assert b.alive()
