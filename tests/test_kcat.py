"""kcat, Debian's command-line Kafka client, exactly as README shows it."""

import shutil
import subprocess

import pytest

from helpers import create_topic

pytestmark = pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is not installed")


def kcat(*args, stdin=None, timeout_s=30):
    r = subprocess.run(["kcat", *args], input=stdin, capture_output=True, timeout=timeout_s)
    assert r.returncode == 0, f"kcat {' '.join(args)} exited {r.returncode}: {r.stderr.decode(errors='replace')}"
    return r.stdout.decode()


def test_metadata_lists_broker_and_topics(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=3)
    out = kcat("-b", broker.bootstrap, "-L")
    assert "1 brokers:" in out, out
    assert f"at 127.0.0.1:{broker.port}" in out, out
    assert f'topic "{topic_name}" with 3 partitions' in out, out


def test_produce_with_constant_key_and_consume(broker, topic_name):
    kcat("-b", broker.bootstrap, "-P", "-t", topic_name, "-k", "key1", stdin=b"hello\nworld\n")
    out = kcat("-b", broker.bootstrap, "-C", "-t", topic_name, "-o", "beginning", "-e", "-f", "%k %s %o\\n")
    assert out.splitlines() == ["key1 hello 0", "key1 world 1"]


def test_produce_with_per_line_keys_and_consume(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=1)
    lines = b"".join(f"k{i}:v{i}\n".encode() for i in range(100))
    kcat("-b", broker.bootstrap, "-P", "-t", topic_name, "-p", "0", "-K", ":", stdin=lines)
    out = kcat("-b", broker.bootstrap, "-C", "-t", topic_name, "-p", "0", "-o", "beginning", "-e",
               "-f", "%k %s %o\\n")
    assert out.splitlines() == [f"k{i} v{i} {i}" for i in range(100)]


def test_consume_from_offset_and_count(broker, topic_name):
    kcat("-b", broker.bootstrap, "-P", "-t", topic_name, stdin=b"".join(f"m{i}\n".encode() for i in range(20)))
    out = kcat("-b", broker.bootstrap, "-C", "-t", topic_name, "-p", "0", "-o", "15", "-c", "3", "-f", "%s@%o\\n")
    assert out.splitlines() == ["m15@15", "m16@16", "m17@17"]
