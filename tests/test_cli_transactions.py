"""`strom produce --transactional-id` read by an independent client: librdkafka
(confluent-kafka) with isolation.level=read_committed sees every committed line in order and
nothing of a transactional load that was killed before its commit.
"""

import subprocess
import time

import pytest

import helpers
from conftest import strom_bin

pytestmark = pytest.mark.timeout(120)

READ_COMMITTED = {"isolation.level": "read_committed"}
READ_UNCOMMITTED = {"isolation.level": "read_uncommitted"}


def run_strom(*args, stdin=None):
    return subprocess.run([str(strom_bin()), *args], input=stdin, capture_output=True, text=True, timeout=60)


def values(msgs):
    return [m.value().decode() for m in msgs]


def test_a_transactional_cli_produce_is_read_in_order_by_read_committed_librdkafka(broker, topic_name):
    helpers.create_topic(broker.bootstrap, topic_name, partitions=1)
    lines = [f"line-{i:05}" for i in range(3000)]
    # 700 does not divide 3000: the last transaction, of 200 lines, commits at the end.
    out = run_strom("produce", topic_name, "--bootstrap", broker.bootstrap,
                    "--transactional-id", "cli-loader", "--transaction-size", "700",
                    stdin="\n".join(lines) + "\n")
    assert out.returncode == 0, out.stderr

    got = helpers.consume_all(broker.bootstrap, topic_name, len(lines), **READ_COMMITTED)
    assert values(got) == lines
    # Each commit marker takes an offset: five transactions, five markers among the offsets.
    low, high = helpers.watermarks(broker.bootstrap, topic_name)
    assert (low, high) == (0, len(lines) + 5)


def test_a_killed_transactional_cli_produce_is_never_seen_by_read_committed_librdkafka(broker, topic_name):
    helpers.create_topic(broker.bootstrap, topic_name, partitions=1)
    cmd = [str(strom_bin()), "produce", topic_name, "--bootstrap", broker.bootstrap, "--transactional-id", "cli-nightly"]
    producer = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        open_lines = [f"open-{i}" for i in range(200)]
        producer.stdin.write(("\n".join(open_lines) + "\n").encode())
        producer.stdin.flush()
        # In the log but not committed: read_uncommitted sees the lines.
        seen = helpers.consume_all(broker.bootstrap, topic_name, len(open_lines), **READ_UNCOMMITTED)
        assert values(seen) == open_lines
    finally:
        producer.kill()
        producer.wait()

    # The next producer with the transactional id aborts what the killed one left open.
    after = ["after-1", "after-2"]
    out = run_strom("produce", topic_name, "--bootstrap", broker.bootstrap, "--transactional-id", "cli-nightly",
                    stdin="\n".join(after) + "\n")
    assert out.returncode == 0, out.stderr

    got = helpers.consume_all(broker.bootstrap, topic_name, len(after), **READ_COMMITTED)
    assert values(got) == after
    time.sleep(0.5)  # nothing more arrives later either
    got = helpers.consume_partitions(broker.bootstrap, topic_name, [0], len(after) + 1, timeout_s=2,
                                     **READ_COMMITTED)
    assert values(got) == after
    out = run_strom("consume", topic_name, "--bootstrap", broker.bootstrap, "--from-beginning", "-e",
                    "--isolation-level", "read_uncommitted")
    assert out.stdout.splitlines() == open_lines + after
