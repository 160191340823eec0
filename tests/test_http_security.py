"""The HTTP API and console under security, against the real binary: with ACLs on, the API
takes HTTP Basic credentials of the SCRAM user store (401 without or with wrong ones, after
`connection.failed.authentication.delay.ms`), and each call obeys the ACLs the equivalent
Kafka request checks (403 when denied; lists leave out topics the user may not DESCRIBE).
`http.listener.security.protocol=SSL` serves HTTPS with the broker's certificate, and
`http.metrics.authentication.enable` puts /metrics behind the same login.

The broker, certificates, users and ACLs come from test_security's fixtures: its PLAINTEXT
listener's principal, User:ANONYMOUS, is a super user that sets ACLs up; over HTTP nobody
is anonymous."""

import base64
import http.client
import json
import os
import ssl
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AclOperation, ResourcePatternType, ResourceType

import helpers
from conftest import Broker, free_port, strom_bin
from test_security import AUTHORIZER, add_user, allow, certs, secure_broker  # noqa: F401 (fixtures)

pytestmark = pytest.mark.timeout(120)

HTTP_TIMEOUT_S = 10


def request(url, method="GET", body=None, user=None, password=None, headers=None, context=None):
    """(status, headers, parsed JSON or text body) without raising on 4xx/5xx."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if user is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT_S, context=context) as r:
            status, hdrs, raw = r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        status, hdrs, raw = e.code, e.headers, e.read().decode()
    try:
        return status, hdrs, json.loads(raw)
    except ValueError:
        return status, hdrs, raw


def wait_ready(base, context=None):
    deadline = time.monotonic() + 10
    while request(base + "/ready", context=context)[0] != 200:
        assert time.monotonic() < deadline, "/ready never turned 200"
        time.sleep(0.05)


def test_the_api_asks_for_a_login_and_the_probes_stay_open(secure_broker):
    b = secure_broker
    wait_ready(b.http)
    add_user(b, "alice", "alice-secret")

    status, hdrs, body = request(b.http + "/api/topics")
    assert status == 401, body
    assert hdrs["WWW-Authenticate"].startswith("Basic realm=")
    # The console's own calls get no WWW-Authenticate, so no browser dialog covers its form.
    status, hdrs, _ = request(b.http + "/api/topics", headers={"X-Requested-With": "XMLHttpRequest"})
    assert status == 401 and "WWW-Authenticate" not in hdrs

    started = time.monotonic()
    status, hdrs, body = request(b.http + "/api/cluster", user="alice", password="wrong")
    assert status == 401 and body["error"] == "invalid username or password"
    assert time.monotonic() - started >= 0.2, "connection.failed.authentication.delay.ms=200"
    assert request(b.http + "/api/cluster", user="nobody", password="x")[0] == 401
    assert request(b.http + "/api/cluster", headers={"Authorization": "Basic !!"})[0] == 401
    failures = [line for line in b.log_tail().splitlines() if "HTTP login failed" in line]
    assert any("alice" in line and "peer=127.0.0.1" in line for line in failures), failures
    assert not any("wrong" in line for line in failures), "the log holds no password"

    status, _, body = request(b.http + "/api/cluster", user="alice", password="alice-secret")
    assert status == 200 and body["node_id"] == 1

    # Scrapers, probes and the console page itself need no credentials.
    assert request(b.http + "/metrics")[0] == 200
    assert request(b.http + "/health")[0] == 200
    assert request(b.http + "/ready")[0] == 200
    status, _, page = request(b.http + "/")
    assert status == 200 and 'id="login-form"' in page


def test_each_api_call_obeys_the_kafka_acls(secure_broker, topic_name):
    b = secure_broker
    wait_ready(b.http)
    add_user(b, "alice", "alice-secret")
    add_user(b, "admin", "admin-secret")
    a, other = topic_name + "-a", topic_name + "-b"
    helpers.create_topic(b.bootstrap, a, partitions=1)
    helpers.create_topic(b.bootstrap, other, partitions=1)
    helpers.produce_values(b.bootstrap, a, [b"first"], partition=0)
    allow(b, "User:alice", ResourceType.TOPIC, a, AclOperation.DESCRIBE)

    def alice(method, path, body=None):
        status, _, data = request(b.http + "/api" + path, method, body, user="alice", password="alice-secret")
        return status, data

    # DESCRIBE on A only: the list holds A alone, B is refused by name, as in Metadata.
    status, topics = alice("GET", "/topics")
    assert status == 200 and [t["name"] for t in topics] == [a]
    assert topics[0]["overrides"] is None and topics[0]["retention_ms"] is None, "configs need DESCRIBE_CONFIGS"
    assert alice("GET", f"/topics/{other}")[0] == 403
    assert alice("GET", "/cluster")[1]["topics"] == 1
    # The super user sees both.
    status, _, topics = request(b.http + "/api/topics", user="admin", password="admin-secret")
    assert status == 200 and {a, other} <= {t["name"] for t in topics}
    # Without DESCRIBE_CONFIGS the topic's configs are left out.
    status, detail = alice("GET", f"/topics/{a}")
    assert status == 200 and detail["configs"] is None
    assert alice("GET", f"/topics/{a}/configs")[0] == 403

    # Browsing needs READ (Fetch's check).
    status, body = alice("GET", f"/topics/{a}/messages?partition=0&offset=0")
    assert status == 403 and "READ" in body["error"], body
    allow(b, "User:alice", ResourceType.TOPIC, a, AclOperation.READ)
    status, page = alice("GET", f"/topics/{a}/messages?partition=0&offset=0")
    assert status == 200 and [m["value"]["data"] for m in page["messages"]] == ["first"]

    # Producing needs WRITE (Produce's check); what it wrote is what Kafka clients read.
    message = {"partition": 0, "key": "k", "value": "from-http"}
    assert alice("POST", f"/topics/{a}/messages", message)[0] == 403
    allow(b, "User:alice", ResourceType.TOPIC, a, AclOperation.WRITE)
    status, written = alice("POST", f"/topics/{a}/messages", message)
    assert status == 201 and written["offset"] == 1
    got = helpers.consume_all(b.bootstrap, a, 2)
    assert [m.value() for m in got] == [b"first", b"from-http"]

    # A cross-site form cannot stand in for the console: a body must be JSON, even for a
    # super user whose browser remembers the credentials.
    status, _, _ = request(b.http + "/api/topics", "POST", {"name": topic_name + "-csrf"}, user="admin",
                           password="admin-secret", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 400
    assert topic_name + "-csrf" not in helpers.admin(b.bootstrap).list_topics(timeout=10).topics

    # Creating a topic needs CREATE (CreateTopics' check), deleting one DELETE.
    new = topic_name + "-new"
    assert alice("POST", "/topics", {"name": new, "partitions": 1})[0] == 403
    allow(b, "User:alice", ResourceType.TOPIC, new, AclOperation.CREATE)
    assert alice("POST", "/topics", {"name": new, "partitions": 1})[0] == 201
    assert new in helpers.admin(b.bootstrap).list_topics(timeout=10).topics
    assert alice("DELETE", f"/topics/{new}")[0] == 403
    assert alice("PUT", f"/topics/{a}/configs", {"set": {"retention.ms": "60000"}})[0] == 403

    # Groups: DESCRIBE to see one, READ on the group and the topic to reset its offsets.
    group = topic_name + "-g"
    c = helpers.consumer(b.bootstrap, group=group)
    try:
        c.commit(offsets=[TopicPartition(a, 0, 1)], asynchronous=False)
    finally:
        c.close()
    assert alice("GET", "/groups")[1] == []
    assert alice("GET", f"/groups/{group}")[0] == 403
    allow(b, "User:alice", ResourceType.GROUP, group, AclOperation.DESCRIBE)
    status, groups = alice("GET", "/groups")
    assert status == 200 and [g["group_id"] for g in groups] == [group]
    reset = {"topic": a, "to": "earliest"}
    assert alice("POST", f"/groups/{group}/reset-offsets", reset)[0] == 403
    allow(b, "User:alice", ResourceType.GROUP, group, AclOperation.READ)
    status, done = alice("POST", f"/groups/{group}/reset-offsets", reset)
    assert status == 200 and done["offsets"] == [{"partition": 0, "offset": 0}], done


def test_strom_top_logs_in_with_user_and_password_from_the_environment(secure_broker, topic_name):
    b = secure_broker
    wait_ready(b.http)
    add_user(b, "alice", "alice-secret")
    helpers.create_topic(b.bootstrap, topic_name, partitions=1)
    allow(b, "User:alice", ResourceType.TOPIC, topic_name, AclOperation.DESCRIBE)
    top = [str(strom_bin()), "top", "--http", b.http.removeprefix("http://"), "--iterations", "1"]

    def run(args, password=None):
        env = {k: v for k, v in os.environ.items() if k != "STROM_HTTP_PASSWORD"}
        if password is not None:
            env["STROM_HTTP_PASSWORD"] = password
        return subprocess.run(args, capture_output=True, text=True, timeout=30, env=env)

    out = run(top)
    assert out.returncode != 0 and "--user" in out.stderr and "401" in out.stderr, out.stderr
    out = run(top + ["--user", "alice"])
    assert out.returncode != 0 and "STROM_HTTP_PASSWORD" in out.stderr, out.stderr
    out = run(top + ["--user", "alice"], password="alice-secret")
    assert out.returncode == 0, out.stderr
    assert any(line.startswith(topic_name) for line in out.stdout.splitlines()), out.stdout


@pytest.fixture
def https_broker(tmp_path, certs):  # noqa: F811 (the fixture above)
    http_port = free_port()
    data = tmp_path / "data"
    data.mkdir()
    b = Broker(data, tmp_path / "broker.log")
    b.settings.update({
        "ssl.keystore.location": str(certs / "keystore.pem"),
        "http.listener.security.protocol": "SSL",
        "http.listen": f"127.0.0.1:{http_port}",
        "authorizer.class.name": AUTHORIZER,
        "super.users": "User:ANONYMOUS;User:admin",
        "http.metrics.authentication.enable": "true",
    })
    b.http_port = http_port
    b.start()
    yield b
    helpers.forget_clients()
    b.stop()
    print(b.log_tail())


def test_https_with_the_brokers_certificate_and_metrics_behind_the_login(https_broker, certs):  # noqa: F811
    b = https_broker
    base = f"https://127.0.0.1:{b.http_port}"
    trust = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    deadline = time.monotonic() + 10
    while True:
        try:
            assert request(base + "/health", context=trust)[0] in (200, 401)
            break
        except urllib.error.URLError:
            assert time.monotonic() < deadline, "the HTTPS listener never answered"
            time.sleep(0.05)
    add_user(b, "admin", "admin-secret")
    add_user(b, "alice", "alice-secret")

    status, _, body = request(base + "/api/cluster", user="admin", password="admin-secret", context=trust)
    assert status == 200 and body["node_id"] == 1
    # Plain HTTP to the HTTPS port gets no HTTP answer (a TLS alert, then the close).
    with pytest.raises((http.client.HTTPException, ConnectionError, urllib.error.URLError)) as e:
        urllib.request.urlopen(f"http://127.0.0.1:{b.http_port}/health", timeout=HTTP_TIMEOUT_S)
    assert not isinstance(e.value, urllib.error.HTTPError)
    # A client that does not trust the CA refuses the connection.
    with pytest.raises(urllib.error.URLError) as e:
        urllib.request.urlopen(base + "/health", timeout=HTTP_TIMEOUT_S, context=ssl.create_default_context())
    assert "CERTIFICATE_VERIFY_FAILED" in str(e.value)

    # http.metrics.authentication.enable: the probes want the login, and /metrics also
    # DESCRIBE on the cluster (it names every topic and group), as DescribeLogDirs does.
    assert request(base + "/metrics", context=trust)[0] == 401
    assert request(base + "/health", context=trust)[0] == 401
    assert request(base + "/health", user="alice", password="alice-secret", context=trust)[0] == 200
    assert request(base + "/metrics", user="alice", password="alice-secret", context=trust)[0] == 403
    status, _, text = request(base + "/metrics", user="admin", password="admin-secret", context=trust)
    assert status == 200 and "strom_build_info" in text


@pytest.mark.parametrize("setting, named", [
    ("http.authentication=digest", "http.authentication"),
    ("http.listener.security.protocol=SASL_SSL", "http.listener.security.protocol"),
    # A login on the probes needs the API's login to be on.
    ("http.metrics.authentication.enable=true", "http.metrics.authentication.enable"),
])
def test_bad_http_security_settings_stop_startup_and_name_themselves(tmp_path, setting, named):
    cmd = [str(strom_bin()), "serve", "--listen", f"127.0.0.1:{free_port()}", "--data-dir", str(tmp_path / "data"),
           "--set", f"http.listen=127.0.0.1:{free_port()}", "--set", setting]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=20, env={**os.environ, "NO_COLOR": "1"})
    assert r.returncode != 0 and named in r.stderr, r.stderr


def test_https_without_a_keystore_stops_startup(tmp_path):
    cmd = [str(strom_bin()), "serve", "--listen", f"127.0.0.1:{free_port()}", "--data-dir", str(tmp_path / "data"),
           "--set", f"http.listen=127.0.0.1:{free_port()}", "--set", "http.listener.security.protocol=SSL"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=20, env={**os.environ, "NO_COLOR": "1"})
    assert r.returncode != 0 and "ssl.keystore.location" in r.stderr and "HTTPS" in r.stderr, r.stderr
