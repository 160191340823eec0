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
