"""Strom's own consumer (through `strom consume`) against three real brokers: it fetches from
every partition leader at once and prefetches between polls, and still returns every record
exactly once and in offset order per partition. (A rebalance dropping prefetched records is
tested in crates/strom-client/tests/prefetch.rs.)
"""

import subprocess
import uuid

import pytest

import helpers
from conftest import strom_bin
from test_cluster import cluster, create_rf3, partition_info, wait_isr  # noqa: F401 (fixture)

pytestmark = pytest.mark.timeout(180)

PARTITIONS = 12
PER_PARTITION = 400


def fill(cluster, topic):
    """Creates the topic and writes PER_PARTITION records to each partition; returns what was
    acknowledged per partition, in offset order."""
    create_rf3(cluster.bootstrap(), topic, PARTITIONS)
    wait_isr(cluster, topic, PARTITIONS, 3)
    p = helpers.producer(cluster.bootstrap(), acks="all")
    d = helpers.Delivery()
    for i in range(PER_PARTITION):
        for part in range(PARTITIONS):
            p.produce(topic, value=f"{part}-{i}".encode(), partition=part, on_delivery=d)
        p.poll(0)
    assert p.flush(30) == 0
    assert not d.errors, d.errors[:5]
    acked = {}
    for part, offset, value in sorted(d.ok):
        acked.setdefault(part, []).append((offset, value.decode()))
    return acked


def strom_consume(cluster, topic, *args):
    out = subprocess.run(
        [str(strom_bin()), "consume", topic, "--bootstrap", cluster.bootstrap(), "--format", "%p %o %s", *args],
        capture_output=True, text=True, timeout=90,
    )
    assert out.returncode == 0, out.stderr
    rows = []
    for line in out.stdout.splitlines():
        part, offset, value = line.split(" ", 2)
        rows.append((int(part), int(offset), value))
    return rows


def by_partition(rows):
    out = {}
    for part, offset, value in rows:
        out.setdefault(part, []).append((offset, value))
    return out


def test_strom_consume_reads_every_leader_once_in_order(cluster):
    topic = "spread-" + uuid.uuid4().hex[:6]
    acked = fill(cluster, topic)
    leaders = {partition_info(cluster.bootstrap(), topic, p).leader for p in range(PARTITIONS)}
    assert len(leaders) >= 2, f"every partition on one broker: {leaders}"

    rows = strom_consume(cluster, topic, "--from-beginning", "--exit-at-end")
    # Exactly once and in offset order per partition, whatever the interleaving of brokers.
    assert by_partition(rows) == acked
