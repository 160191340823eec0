"""Helpers for the HTTP listener's tests: start a broker with its HTTP listener on a free port,
call it with the standard library, and read /metrics with Prometheus' own text parser."""

import json
import time
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from conftest import free_port

HTTP_TIMEOUT_S = 10
READY_TIMEOUT_S = 10


def start_http_broker(start_broker, settings=None):
    """A broker whose HTTP listener is on a free port; `broker.http` is its base URL."""
    port = free_port()
    merged = {"http.listen": f"127.0.0.1:{port}"}
    merged.update(settings or {})
    b = start_broker(settings=merged)
    b.http = f"http://127.0.0.1:{port}"
    # The Kafka port accepts a moment before /ready turns 200 (bounded wait).
    deadline = time.monotonic() + READY_TIMEOUT_S
    while get(b.http + "/ready")[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.02)
    return b


def get(url):
    """(status, body text) without raising on 4xx/5xx."""
    try:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def call(method, url, body=None, raw=None):
    """(status, parsed JSON body) for an API call; `raw` sends bytes as they are."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT_S) as r:
            return r.status, json.loads(r.read().decode() or "null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read().decode() or "null")


def scrape(broker):
    """Every sample of /metrics as {(sample name, frozenset of labels): value}."""
    status, text = get(broker.http + "/metrics")
    assert status == 200, text
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def sample(samples, name, **labels):
    """One sample's value, 0 when absent (counters not yet touched are not listed)."""
    return samples.get((name, frozenset((k, str(v)) for k, v in labels.items())), 0)
