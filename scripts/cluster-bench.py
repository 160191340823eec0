"""Side by side in one run: acks=all idempotent produce to an RF=3 and an RF=1 topic of one
3-node cluster, and to a single-node broker: throughput of a 30,000-message burst, then the
latency of 300 one-at-a-time produces; then the time for a follower that was down while 1 GB
(CATCHUP_MB) was written to hold the leader's log again after its restart. Uses target/release/strom (or STROM_BIN) and the test
virtualenv's confluent-kafka: `.venv/bin/python scripts/cluster-bench.py`. Takes under a
minute."""
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from conftest import Broker, free_port
import helpers
from confluent_kafka.admin import NewTopic

N = 30000
def bench(bootstrap, topic):
    p = helpers.producer(bootstrap, acks="all", **{"enable.idempotence": True, "linger.ms": 5})
    lat = []
    t0 = time.monotonic()
    for i in range(N):
        sent = time.monotonic()
        def cb(err, msg, sent=sent):
            assert err is None, err
            lat.append(time.monotonic() - sent)
        while True:
            try:
                p.produce(topic, value=b"x" * 100, partition=0, on_delivery=cb); break
            except BufferError:
                p.poll(0.01)
        p.poll(0)
    p.flush(60)
    dt = time.monotonic() - t0
    one = []
    for i in range(300):
        t = time.monotonic(); p.produce(topic, value=b"y", partition=0); p.flush(10); one.append(time.monotonic() - t)
    one.sort()
    return N / dt, one[len(one)//2] * 1000, one[int(len(one)*.99)] * 1000

tmp = Path(tempfile.mkdtemp())
ports = [free_port() for _ in range(3)]
voters = ",".join(f"{i+1}@127.0.0.1:{p}" for i, p in enumerate(ports))
nodes = []
for i in range(3):
    d = tmp / f"n{i}"; d.mkdir()
    nodes.append(Broker(d, tmp / f"n{i}.log", {"node.id": str(i+1), "controller.listen": f"127.0.0.1:{ports[i]}", "controller.quorum.voters": voters}).start())
boot = ",".join(n.bootstrap for n in nodes)
time.sleep(3)
for name, rf in (("rf3", 3), ("rf1", 1)):
    helpers.admin(boot).create_topics([NewTopic(name, 1, rf)])[name].result(30)
time.sleep(2)
res = {}
res["rf3"] = bench(boot, "rf3")
res["rf1"] = bench(boot, "rf1")


def catch_up(boot, nodes, mb):
    """A follower down while `mb` MB are written comes back: seconds until it is in the ISR."""
    helpers.admin(boot).create_topics([NewTopic("catchup", 1, 3)])["catchup"].result(30)
    time.sleep(2)
    info = helpers.admin(boot).list_topics(timeout=10).topics["catchup"].partitions[0]
    follower = next(r for r in info.replicas if r != info.leader)
    nodes[follower - 1].stop()
    value = b"c" * 16384
    p = helpers.producer(boot, acks="1", **{"linger.ms": 20, "batch.size": 1048576,
                                            "queue.buffering.max.kbytes": 1048576})
    for _ in range(mb * 64):
        while True:
            try:
                p.produce("catchup", value=value, partition=0); break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    assert p.flush(300) == 0
    def log_bytes(node):
        part = node.data_dir / "catchup" / "partition-0"
        return sum(f.stat().st_size for f in part.glob("*.log"))

    target = log_bytes(nodes[info.leader - 1])
    behind = log_bytes(nodes[follower - 1])
    assert target - behind >= mb * 1_000_000, (target, behind)
    start = time.monotonic()
    nodes[follower - 1].start()
    # Caught up: its log holds the leader's bytes (replicas store the same batches).
    while log_bytes(nodes[follower - 1]) < target:
        time.sleep(0.05)
    return time.monotonic() - start


CATCHUP_MB = int(os.environ.get("CATCHUP_MB", "1024"))
catchup_s = catch_up(boot, nodes, CATCHUP_MB)
for n in nodes: n.kill9_only()
d = tmp / "single"; d.mkdir()
single = Broker(d, tmp / "single.log", {}).start()
helpers.admin(single.bootstrap).create_topics([NewTopic("s", 1, 1)])["s"].result(30)
res["single"] = bench(single.bootstrap, "s")
single.kill9_only()
for k, (tput, p50, p99) in res.items():
    print(f"{k}: {tput:.0f} msg/s, one-at-a-time latency p50 {p50:.2f} ms, p99 {p99:.2f} ms")
print(f"follower catch-up: {CATCHUP_MB} MB in {catchup_s:.1f} s ({CATCHUP_MB / catchup_s:.0f} MB/s, from its restart until its log holds the leader's bytes)")
print(f"rf3/single throughput {res['rf3'][0]/res['single'][0]:.2f}, rf1/single {res['rf1'][0]/res['single'][0]:.2f}, rf3/rf1 {res['rf3'][0]/res['rf1'][0]:.2f}")
