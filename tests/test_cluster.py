"""Cluster mode against three real `strom serve` processes on 127.0.0.1 (issue 8).

Each node is one voter of the metadata quorum (openraft) and one broker. The tests check
what a client sees: every node's Metadata lists all brokers and each partition's leader,
replicas and ISR; an RF=3 topic takes acks=all idempotent produce and reads back in order;
a follower refuses produce with NOT_LEADER_OR_FOLLOWER; and after kill -9 of a partition
leader under acks=all load a new leader takes over, the producer continues, and a history
check (in the spirit of Jepsen's Kafka queue workload) finds every acknowledged
(partition, offset, value) exactly once, in order, with no offset holding two values.
"""

import json
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaException
from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewPartitions, NewTopic

import helpers
import wire
from netproxy import LinkProxy
from test_compaction import read_all
from conftest import Broker, free_port, strom_bin

pytestmark = pytest.mark.timeout(180)

# Short timings so a failover takes seconds, not Kafka's default tens of seconds.
CLUSTER_SETTINGS = {
    "broker.session.timeout.ms": "2000",
    "broker.heartbeat.interval.ms": "200",
    "controller.quorum.election.timeout.ms": "500",
    "replica.lag.time.max.ms": "5000",
    "min.insync.replicas": "2",
    "default.replication.factor": "3",
    "log.retention.check.interval.ms": "300",
    # Three offsets partitions: groups spread over the nodes without 10 fetch loops each.
    "offsets.topic.num.partitions": "3",
}

NOT_LEADER_OR_FOLLOWER = 6


class Cluster:
    """Three nodes. With `proxied`, node i reaches node j's controller through its own
    `LinkProxy` (one per direction), so a test can cut any link."""

    def __init__(self, tmp_path, size=3, proxied=False, extra=None):
        self.controller_ports = [free_port() for _ in range(size)]
        self.links = {}
        if proxied:
            for i in range(1, size + 1):
                for j in range(1, size + 1):
                    if i != j:
                        self.links[(i, j)] = LinkProxy(self.controller_ports[j - 1])
        self.nodes = []
        for i in range(size):
            voters = ",".join(
                f"{j + 1}@127.0.0.1:{self.links[(i + 1, j + 1)].port if (i + 1, j + 1) in self.links else p}"
                for j, p in enumerate(self.controller_ports)
            )
            settings = dict(CLUSTER_SETTINGS, **(extra or {}))
            settings.update(
                {
                    "node.id": str(i + 1),
                    "controller.listen": f"127.0.0.1:{self.controller_ports[i]}",
                    "controller.quorum.voters": voters,
                }
            )
            data = tmp_path / f"node{i + 1}"
            data.mkdir()
            self.nodes.append(Broker(data, tmp_path / f"node{i + 1}.log", settings))

    def node(self, node_id):
        return self.nodes[node_id - 1]

    def bootstrap(self, exclude=()):
        return ",".join(n.bootstrap for i, n in enumerate(self.nodes) if i + 1 not in exclude)

    def start(self):
        for n in self.nodes:
            n.start()
        self.wait_brokers(len(self.nodes))

    def wait_brokers(self, count, timeout_s=30):
        """Every running node's Metadata lists `count` brokers."""
        deadline = time.monotonic() + timeout_s
        seen = None
        while time.monotonic() < deadline:
            try:
                seen = [len(metadata(n.bootstrap).brokers) for n in self.nodes if n.alive()]
            except KafkaException as e:  # no broker registered yet: librdkafka's _PARTIAL
                seen = str(e)
            if isinstance(seen, list) and all(s == count for s in seen):
                return
            time.sleep(0.2)
        raise AssertionError(f"brokers seen per node: {seen}, expected {count}")

    def controller_status(self, node_id):
        out = subprocess.run(
            [str(strom_bin()), "cluster", "status", "--controller",
             f"127.0.0.1:{self.controller_ports[node_id - 1]}"],
            capture_output=True, text=True, timeout=15,
        )
        assert out.returncode == 0, out.stderr
        return out.stdout

    def isolate(self, node_id):
        """Cut every link to and from `node_id`."""
        for (i, j), link in self.links.items():
            if node_id in (i, j):
                link.block()

    def heal(self):
        for link in self.links.values():
            link.heal()

    def stop(self):
        for n in self.nodes:
            if n.alive():
                n.kill9_only()
        for link in self.links.values():
            link.close()


def metadata(bootstrap):
    client = AdminClient({"bootstrap.servers": bootstrap, **helpers.FAST_CLIENT})
    return client.list_topics(timeout=10)


def partition_info(bootstrap, topic, partition):
    try:
        t = metadata(bootstrap).topics.get(topic)
    except KafkaException:
        return None
    if t is None or t.error is not None or partition not in t.partitions:
        return None
    return t.partitions[partition]


def running_cluster(request, tmp_path, **kwargs):
    """A started Cluster for one test (a fixture's body): stopped after it, with every node's
    log printed when the test failed."""
    c = Cluster(tmp_path, **kwargs)
    c.start()
    yield c
    failed = any(getattr(request.node, "rep_" + w, None) and getattr(request.node, "rep_" + w).failed
                 for w in ("setup", "call"))
    helpers.forget_clients()
    c.stop()
    if failed:
        for i, n in enumerate(c.nodes):
            print(f"\n----- node {i + 1} log -----\n{n.log_tail(15000)}")


@pytest.fixture
def cluster(request, tmp_path):
    yield from running_cluster(request, tmp_path, proxied=getattr(request, "param", False))


def create_rf3(bootstrap, topic, partitions, rf=3, config=None):
    futures = helpers.admin(bootstrap).create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=rf, config=config or {})],
        operation_timeout=20, request_timeout=20,
    )
    futures[topic].result(timeout=30)


def wait_isr(cluster, topic, partitions, isr_size, timeout_s=20):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        infos = [partition_info(cluster.bootstrap(), topic, p) for p in range(partitions)]
        last = [(i.leader, sorted(i.isrs)) if i else None for i in infos]
        if all(i is not None and i.leader > 0 and len(i.isrs) == isr_size for i in infos):
            return infos
        time.sleep(0.2)
    raise AssertionError(f"ISR never reached {isr_size}: {last}")


def test_every_node_shows_all_brokers_and_replicated_partitions(cluster):
    topic = "orders"
    out = subprocess.run(
        [str(strom_bin()), "topic", "create", topic, "--partitions", "6", "--replication-factor", "3",
         "--bootstrap", cluster.node(1).bootstrap],
        capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 0, out.stderr
    wait_isr(cluster, topic, 6, 3)
    leaders = set()
    for n in cluster.nodes:
        md = metadata(n.bootstrap)
        assert sorted(md.brokers) == [1, 2, 3]
        assert {b.port for b in md.brokers.values()} == {x.port for x in cluster.nodes}
        t = md.topics[topic]
        assert sorted(t.partitions) == list(range(6))
        for p in t.partitions.values():
            assert sorted(p.replicas) == [1, 2, 3]
            assert sorted(p.isrs) == [1, 2, 3]
            assert p.leader in (1, 2, 3)
            leaders.add(p.leader)
    # Leadership is spread over the nodes (round-robin assignment).
    assert leaders == {1, 2, 3}
    status = cluster.controller_status(2)
    assert "leader" in status and "voter 1" in status and "broker 3" in status, status


def test_rf3_produce_consume_and_followers_refuse_produce(cluster):
    topic = "rf3-" + uuid.uuid4().hex[:6]
    create_rf3(cluster.node(2).bootstrap, topic, 3)
    wait_isr(cluster, topic, 3, 3)
    values = [f"v{i}".encode() for i in range(600)]
    d = helpers.produce_values(cluster.node(2).bootstrap, topic, values, acks="all", **{"enable.idempotence": True})
    assert len(d.ok) == 600
    got = helpers.consume_partitions(cluster.node(3).bootstrap, topic, [0, 1, 2], 600, timeout_s=30)
    assert sorted(m.value() for m in got) == sorted(values)
    # Per partition, the consumer reads exactly what was acknowledged there, in offset order.
    for p in range(3):
        acked = [(o, v) for part, o, v in d.ok if part == p]
        read = [(m.offset(), m.value()) for m in got if m.partition() == p]
        assert read == sorted(acked)

    # A follower answers a produce with NOT_LEADER_OR_FOLLOWER.
    info = partition_info(cluster.bootstrap(), topic, 0)
    follower = next(r for r in info.replicas if r != info.leader)
    batch = wire.record_batch([b"stray"])
    with wire.Conn(cluster.node(follower).bootstrap) as conn:
        conn.send(wire.produce_request_v3(topic, 0, batch, correlation_id=7))
        _, results = wire.parse_produce_v3(conn.recv_frame())
    assert results == [(topic, 0, NOT_LEADER_OR_FOLLOWER, -1)]
    # Produce v10+ names the leader and its address in the refusal (KIP-951).
    with wire.Conn(cluster.node(follower).bootstrap) as conn:
        conn.send(wire.produce_request_v10(topic, 0, batch, correlation_id=8))
        _, results, endpoints = wire.parse_produce_v10(conn.recv_frame())
    assert results == [(topic, 0, NOT_LEADER_OR_FOLLOWER, -1, (info.leader, 0))], results
    assert endpoints == {info.leader: cluster.node(info.leader).bootstrap}, endpoints

    # The JSON protocol (spoken on the Kafka port) obeys the same rule, and its produce on
    # the leader is answered once the ISR has it.
    def json_request(node_id, request):
        with socket.create_connection(("127.0.0.1", cluster.node(node_id).port), timeout=15) as sock:
            f = sock.makefile("rwb")
            f.write(json.dumps(request).encode() + b"\n")
            f.flush()
            return json.loads(f.readline())

    def json_produce(node_id, value):
        return json_request(node_id, {"type": "produce", "topic": topic, "partition": 0, "value": value})

    # A follower redirects: the answer names the partition's leader and its address.
    refused = json_produce(follower, "json-on-follower")
    assert refused["ok"] is False and refused["code"] == "not_leader", refused
    assert refused["leader"] == {"topic": topic, "partition": 0, "node_id": info.leader,
                                 "address": cluster.node(info.leader).bootstrap}, refused
    accepted = json_produce(info.leader, "json-on-leader")
    in_partition_0 = sum(1 for part, _, _ in d.ok if part == 0)
    assert accepted["ok"] is True and accepted["offset"] == in_partition_0, accepted
    # JSON reads too: a follower refuses, the leader serves what the ISR has.
    consume = {"type": "consume", "topic": topic, "partition": 0, "consumer_id": "c1", "offset": 0, "max_messages": 1000}
    refused = json_request(follower, consume)
    assert refused["ok"] is False and refused["code"] == "not_leader", refused
    assert refused["leader"]["node_id"] == info.leader, refused
    served = json_request(info.leader, consume)
    assert served["ok"] is True, served
    assert [m["offset"] for m in served["messages"]] == list(range(in_partition_0 + 1))


class LoadProducer(threading.Thread):
    """An idempotent acks=all producer that keeps sending numbered values to one partition
    and records every acknowledgement with the time it arrived."""

    def __init__(self, bootstrap, topic):
        super().__init__(daemon=True)
        self.p = helpers.producer(
            bootstrap, acks="all", **{"enable.idempotence": True, "message.timeout.ms": 60000, "linger.ms": 2}
        )
        self.topic = topic
        self.acked = []  # (partition, offset, value, monotonic time)
        self.errors = []
        self.sent = 0
        self.stop_flag = threading.Event()

    def on_delivery(self, err, msg):
        if err is not None:
            self.errors.append(err)
        else:
            self.acked.append((msg.partition(), msg.offset(), msg.value(), time.monotonic()))

    def run(self):
        while not self.stop_flag.is_set():
            try:
                self.p.produce(self.topic, value=f"m{self.sent:07d}".encode(), partition=0, on_delivery=self.on_delivery)
                self.sent += 1
            except BufferError:
                pass
            self.p.poll(0.002)
        self.p.flush(60)


class GroupReader(threading.Thread):
    """A member of a consumer group that keeps reading a topic and commits synchronously
    every 50 records; remembers every record read and the last commit that succeeded."""

    def __init__(self, bootstrap, group, topic):
        super().__init__(daemon=True)
        self.c = helpers.consumer(bootstrap, group=group, **{"session.timeout.ms": 6000})
        self.topic = topic
        self.read = []  # (partition, offset, value)
        self.position = {}  # partition -> next offset after what was read
        self.committed = {}  # partition -> offset of the last successful commit
        self.commit_errors = []
        self.stop_flag = threading.Event()

    def run(self):
        self.c.subscribe([self.topic])
        while not self.stop_flag.is_set():
            m = self.c.poll(0.2)
            if m is None or m.error() is not None:
                continue
            self.read.append((m.partition(), m.offset(), m.value()))
            self.position[m.partition()] = m.offset() + 1
            if len(self.read) % 50 == 0:
                snapshot = dict(self.position)
                try:
                    self.c.commit(asynchronous=False)
                    self.committed = snapshot
                except KafkaException as e:  # retriable while a coordinator moves
                    self.commit_errors.append(e)
        self.c.close()


def loaded_rf3_topic(cluster, topic, acks_first=2000):
    """Creates an RF=3 topic of one partition and starts a LoadProducer on it; returns the
    producer once `acks_first` records are acknowledged."""
    create_rf3(cluster.node(1).bootstrap, topic, 1)
    wait_isr(cluster, topic, 1, 3)
    load = LoadProducer(cluster.bootstrap(), topic)
    load.start()
    deadline = time.monotonic() + 20
    while len(load.acked) < acks_first and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(load.acked) >= acks_first, f"only {len(load.acked)} acks before the fault; errors {load.errors[:3]}"
    return load


def new_leader_elected(bootstrap, topic, old_leader):
    """An `until` check: the partition has a leader other than `old_leader`."""
    info = partition_info(bootstrap, topic, 0)
    return True if info and info.leader not in (-1, old_leader) else f"leader {info and info.leader}"


def quorum_leader(cluster):
    for i, n in enumerate(cluster.nodes):
        if not n.alive():
            continue
        out = subprocess.run(
            [str(strom_bin()), "cluster", "status", "--json", "--controller",
             f"127.0.0.1:{cluster.controller_ports[i]}"],
            capture_output=True, text=True, timeout=15,
        )
        if out.returncode == 0:
            leader = json.loads(out.stdout)["leader"]
            if leader is not None:
                return leader
    raise AssertionError("no node knows a quorum leader")


@pytest.mark.parametrize(
    "victim,fault",
    [("partition-leader", "kill9"), ("partition-leader", "sigstop"), ("quorum-leader", "kill9")],
)
def test_leader_failure_under_acks_all_load_loses_nothing(cluster, victim, fault):
    """kill -9 (or SIGSTOP past the session timeout, then SIGCONT: a zombie) of the partition
    leader or of the metadata quorum's leader while an idempotent acks=all producer runs:
    a new leader takes over, the producer continues, the victim comes back as a follower
    (truncating to the new leader), and the history check passes."""
    topic = "failover-" + uuid.uuid4().hex[:6]
    load = loaded_rf3_topic(cluster, topic)

    old_leader = partition_info(cluster.bootstrap(), topic, 0).leader
    target = old_leader if victim == "partition-leader" else quorum_leader(cluster)
    node = cluster.node(target)
    faulted_at = time.monotonic()
    if fault == "kill9":
        node.kill9_only()
    else:
        node.proc.send_signal(signal.SIGSTOP)
    survivors = cluster.bootstrap(exclude=(target,))
    new_leader = None
    while time.monotonic() - faulted_at < 30:
        info = partition_info(survivors, topic, 0)
        if info is not None and info.leader not in (-1, target):
            new_leader = info.leader
            break
        time.sleep(0.05)
    elected_s = time.monotonic() - faulted_at
    assert new_leader is not None, "no leader other than the victim within 30 s"
    if target == old_leader:
        assert partition_info(survivors, topic, 0).leader != old_leader
    # The producer continues: acknowledgements arrive again after the fault.
    while time.monotonic() - faulted_at < 40 and not any(t > faulted_at + 3 for *_, t in load.acked[-50:]):
        time.sleep(0.05)
    resumed = [t for *_, t in load.acked if t > faulted_at]
    assert resumed, f"no acknowledgement after the fault; errors {load.errors[:3]}"
    first_ack_s = min(resumed) - faulted_at
    if victim == "quorum-leader":
        # The quorum still takes changes without its old leader.
        create_rf3(survivors, topic + "-after", 1, rf=2)
    if fault == "sigstop":
        time.sleep(1)
        node.proc.send_signal(signal.SIGCONT)
    else:
        node.start()
    time.sleep(2)
    load.stop_flag.set()
    load.join(90)
    assert not load.errors, f"delivery errors: {load.errors[:5]}"
    print(f"\n{victim} {fault}: partition leader {new_leader} (was {old_leader}) seen {elected_s:.2f}s after "
          f"the fault on node {target}; first ack after it {first_ack_s:.2f}s; {len(load.acked)} acks in all")
    # The victim is back in the ISR (after truncating to the new leader).
    wait_isr(cluster, topic, 1, 3, timeout_s=30)
    check_history(cluster.bootstrap(), topic, load.acked)


def test_rolling_restart_under_load_loses_nothing(cluster):
    """Each node in turn is stopped (SIGTERM) and started again on its data dir while an
    idempotent acks=all producer runs: the metadata log and the partition logs survive the
    restarts, every node rejoins the ISR, and no acknowledged record is lost or doubled."""
    topic = "rolling-" + uuid.uuid4().hex[:6]
    create_rf3(cluster.node(1).bootstrap, topic, 1)
    wait_isr(cluster, topic, 1, 3)
    load = LoadProducer(cluster.bootstrap(), topic)
    load.start()
    group = "rolling-group-" + uuid.uuid4().hex[:6]
    reader = GroupReader(cluster.bootstrap(), group, topic)
    reader.start()
    for node_id in (1, 2, 3):
        before = len(load.acked)
        node = cluster.node(node_id)
        node.stop()
        # The controller fences it (its leaderships move, it leaves the ISR) ...
        cluster.wait_brokers(2)
        wait_isr(cluster, topic, 1, 2, timeout_s=30)
        node.start()
        # ... and it comes back as a follower that catches up and rejoins the ISR.
        cluster.wait_brokers(3)
        wait_isr(cluster, topic, 1, 3, timeout_s=30)
        deadline = time.monotonic() + 30
        while len(load.acked) < before + 500 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(load.acked) >= before + 500, f"producer stalled after restarting node {node_id}"
    load.stop_flag.set()
    load.join(90)
    assert not load.errors, f"delivery errors: {load.errors[:5]}"
    check_history(cluster.bootstrap(), topic, load.acked)
    # The group kept reading through every restart, and its commits survived them: the
    # stored offset is at least the last acknowledged commit (a commit that timed out on the
    # client may still have landed) and never past what the member read.
    end = max(o for _, o, _, _ in load.acked) + 1
    deadline = time.monotonic() + 60
    while reader.position.get(0, 0) < end and time.monotonic() < deadline:
        time.sleep(0.2)
    reader.stop_flag.set()
    reader.join(30)
    assert reader.position.get(0, 0) >= end, f"the group stopped at {reader.position} of {end}"
    assert reader.committed, f"no commit succeeded: {reader.commit_errors[:3]}"
    offsets = helpers.admin(cluster.bootstrap()).list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group)])[group].result(timeout=20)
    stored = {tp.partition: tp.offset for tp in offsets.topic_partitions if tp.topic == topic}
    assert reader.committed[0] <= stored[0] <= reader.position[0], (reader.committed, stored, reader.position)
    # One member read the partition from the start: every record it read is the acknowledged
    # one at that offset (redeliveries after a rebalance repeat offsets, never change them).
    acked = {o: v for _, o, v, _ in load.acked}
    wrong = [(o, v) for _, o, v in reader.read if o in acked and acked[o] != v]
    assert not wrong, f"the group read other values than were acknowledged: {wrong[:5]}"


def log_bytes(node, topic):
    part = node.data_dir / topic / "partition-0"
    return b"".join(p.read_bytes() for p in sorted(part.glob("*.log")))


def restart_and_match_leader(cluster, node, topic, timeout_s=10):
    """Starts `node` again, waits for it to rejoin the ISR of `topic`'s partition 0, and
    asserts that its segments end byte-identical to the leader's."""
    node.start()
    cluster.wait_brokers(3)
    wait_isr(cluster, topic, 1, 3, timeout_s=30)
    leader = cluster.node(partition_info(cluster.bootstrap(), topic, 0).leader)
    deadline = time.monotonic() + timeout_s
    while log_bytes(node, topic) != log_bytes(leader, topic) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert log_bytes(node, topic) == log_bytes(leader, topic)


def test_a_node_whose_disk_was_wiped_rejoins_and_re_replicates(cluster):
    """A follower is killed, its whole data dir (metadata log included) is wiped, and it
    starts again: it rejoins the quorum, relearns the metadata, fetches the partition from
    the leader from offset 0 and rejoins the ISR with a log byte-identical to the leader's."""
    topic = "wiped-" + uuid.uuid4().hex[:6]
    create_rf3(cluster.node(1).bootstrap, topic, 1)
    wait_isr(cluster, topic, 1, 3)
    values = [f"w{i}".encode() for i in range(2000)]
    helpers.produce_values(cluster.bootstrap(), topic, values, partition=0, acks="all",
                           **{"enable.idempotence": True})
    info = partition_info(cluster.bootstrap(), topic, 0)
    follower = next(r for r in info.replicas if r != info.leader)
    node = cluster.node(follower)
    node.kill9_only()
    shutil.rmtree(node.data_dir)
    node.data_dir.mkdir()
    cluster.wait_brokers(2)
    wait_isr(cluster, topic, 1, 2, timeout_s=30)
    more = [f"x{i}".encode() for i in range(500)]
    helpers.produce_values(cluster.bootstrap(), topic, more, partition=0, acks="all",
                           **{"enable.idempotence": True})
    restart_and_match_leader(cluster, node, topic)
    got = helpers.consume_all(cluster.bootstrap(), topic, 2500)
    assert [m.value() for m in got] == values + more


def test_a_follower_below_the_leaders_log_start_resets_and_catches_up(cluster):
    """A follower is down while the leader's retention deletes the segments it would fetch
    next. Started again, it finds its log end below the leader's log start: it empties its
    log, starts at the leader's log start (Kafka's truncateFullyAndStartAt), fetches the
    rest and rejoins the ISR with segments byte-identical to the leader's."""
    topic = "behind-" + uuid.uuid4().hex[:6]
    create_rf3(cluster.node(1).bootstrap, topic, 1,
               config={"segment.bytes": "16384", "retention.bytes": "65536"})
    wait_isr(cluster, topic, 1, 3)
    acks_all = {"acks": "all", "enable.idempotence": True, "linger.ms": 5, "batch.size": 8000}
    first = [f"a{i:05d}".encode() + b"." * 90 for i in range(300)]
    helpers.produce_values(cluster.bootstrap(), topic, first, partition=0, **acks_all)
    info = partition_info(cluster.bootstrap(), topic, 0)
    follower = next(r for r in info.replicas if r != info.leader)
    node = cluster.node(follower)
    node.kill9_only()
    cluster.wait_brokers(2)
    wait_isr(cluster, topic, 1, 2, timeout_s=30)
    more = [f"b{i:05d}".encode() + b"." * 90 for i in range(4000)]
    helpers.produce_values(cluster.bootstrap(), topic, more, partition=0, **acks_all)
    deadline = time.monotonic() + 20
    while helpers.watermarks(cluster.bootstrap(), topic)[0] <= len(first):
        assert time.monotonic() < deadline, "the leader's retention never passed the follower's end"
        time.sleep(0.2)

    restart_and_match_leader(cluster, node, topic, timeout_s=15)
    assert "reset an empty log to the leader's log start" in node.log_tail(200000)
    low, high = helpers.watermarks(cluster.bootstrap(), topic)
    assert high == len(first) + len(more)
    got = helpers.consume_all(cluster.bootstrap(), topic, high - low)
    assert [m.offset() for m in got] == list(range(low, high))
    assert [m.value() for m in got] == (first + more)[low:]


@pytest.mark.parametrize("cluster", [True], indirect=True, ids=["proxied"])
def test_a_partitioned_leader_stops_acknowledging_and_nothing_is_lost_after_healing(cluster):
    """The partition leader is cut off from both other nodes (a fault-injecting proxy on every
    inter-node link) under acks=all load. The majority elects a new leader and the producer
    continues there; the isolated node acknowledges nothing that is later lost. After the
    links heal it truncates to the new leader and rejoins the ISR, and the history check
    finds every acknowledged record exactly once, with no offset holding two values."""
    topic = "partitioned-" + uuid.uuid4().hex[:6]
    create_rf3(cluster.node(1).bootstrap, topic, 1)
    wait_isr(cluster, topic, 1, 3)
    load = LoadProducer(cluster.bootstrap(), topic)
    load.start()
    deadline = time.monotonic() + 20
    while len(load.acked) < 2000 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(load.acked) >= 2000, f"only {len(load.acked)} acks before the partition"
    old_leader = partition_info(cluster.bootstrap(), topic, 0).leader
    cut_at = time.monotonic()
    cluster.isolate(old_leader)
    majority = cluster.bootstrap(exclude=(old_leader,))
    new_leader = None
    while time.monotonic() - cut_at < 30:
        info = partition_info(majority, topic, 0)
        if info is not None and info.leader not in (-1, old_leader):
            new_leader = info.leader
            break
        time.sleep(0.05)
    assert new_leader is not None, "the majority elected no new leader"
    while time.monotonic() - cut_at < 40 and not any(t > cut_at + 3 for *_, t in load.acked[-50:]):
        time.sleep(0.05)
    assert any(t > cut_at + 3 for *_, t in load.acked), f"producer did not continue; errors {load.errors[:3]}"
    # The minority side refuses to acknowledge acks=all alone: a raw produce straight to it
    # fails (it cannot reach its ISR, and it cannot shrink the ISR without the quorum).
    batch = wire.record_batch([b"minority"])
    with wire.Conn(cluster.node(old_leader).bootstrap, timeout_s=15) as conn:
        conn.send(wire.produce_request_v3(topic, 0, batch, correlation_id=9, timeout_ms=3000))
        _, results = wire.parse_produce_v3(conn.recv_frame())
    assert results[0][2] != 0, f"the isolated node acknowledged a write: {results}"
    cluster.heal()
    time.sleep(2)
    load.stop_flag.set()
    load.join(90)
    assert not load.errors, f"delivery errors: {load.errors[:5]}"
    wait_isr(cluster, topic, 1, 3, timeout_s=30)
    check_history(cluster.bootstrap(), topic, load.acked)
    _, high = helpers.watermarks(cluster.bootstrap(), topic)
    values = [m.value() for m in helpers.consume_all(cluster.bootstrap(), topic, high, timeout_s=30)]
    assert b"minority" not in values


def check_history(bootstrap, topic, acked):
    """Every acknowledged (partition, offset, value) is read back exactly once at its offset,
    acknowledged values keep their send order, and no offset holds two values."""
    expected = {(p, o): v for p, o, v, _ in acked}
    assert len(expected) == len(acked), "two acknowledgements for one offset"
    end = max(o for _, o, _, _ in acked) + 1
    msgs = helpers.consume_partitions(bootstrap, topic, [0], end, timeout_s=60)
    read = {}
    values_seen = {}
    for m in msgs:
        key = (m.partition(), m.offset())
        assert key not in read, f"offset {key} delivered twice"
        read[key] = m.value()
        values_seen[m.value()] = values_seen.get(m.value(), 0) + 1
    missing = [k for k in expected if k not in read]
    assert not missing, f"{len(missing)} acknowledged records missing, first {missing[:5]}"
    wrong = [(k, expected[k], read[k]) for k in expected if read[k] != expected[k]]
    assert not wrong, f"offsets holding another value: {wrong[:5]}"
    dups = [v for v, n in values_seen.items() if n > 1]
    assert not dups, f"values stored twice (idempotence broken): {dups[:5]}"
    # Acknowledged values were sent in increasing order; their offsets must increase too.
    by_value = sorted((v, o) for (_, o), v in expected.items())
    offsets = [o for _, o in by_value]
    assert offsets == sorted(offsets), "per-partition order of acknowledged values broken"


def group_coordinator(bootstrap, group, timeout_s=30):
    """The node id that coordinates `group`, as FindCoordinator (via DescribeGroups) says."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            desc = helpers.admin(bootstrap).describe_consumer_groups([group])[group].result(timeout=10)
            if desc.coordinator is not None and desc.coordinator.id >= 0:
                return desc.coordinator.id
        except KafkaException as e:  # COORDINATOR_NOT_AVAILABLE while the offsets topic is made
            last = e
        time.sleep(0.2)
    raise AssertionError(f"no coordinator for {group}: {last}")


def consume_group(bootstrap, group, topic, count, timeout_s=60, commit_every=None):
    """Subscribes to `topic` in `group` and reads `count` messages (committing synchronously
    every `commit_every` messages and at the end); returns [(partition, offset, value)]."""
    c = helpers.consumer(bootstrap, group=group, **{"session.timeout.ms": 6000})
    c.subscribe([topic])
    got = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(got) < count and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            assert m.error() is None, m.error()
            got.append((m.partition(), m.offset(), m.value()))
            if commit_every and len(got) % commit_every == 0:
                c.commit(asynchronous=False)
        if got and not (commit_every and len(got) % commit_every == 0):
            c.commit(asynchronous=False)
    finally:
        c.close()
    return got


def test_a_group_keeps_its_offsets_when_its_coordinator_dies(cluster):
    """Committed offsets live in the replicated `__consumer_offsets`: after kill -9 of the
    group's coordinator, FindCoordinator names another node, which has every commit, and a
    new member of the group resumes exactly after what was committed (nothing re-read,
    nothing skipped). The killed node rejoins afterwards."""
    topic = "grp-" + uuid.uuid4().hex[:6]
    group = "failover-" + uuid.uuid4().hex[:6]
    create_rf3(cluster.node(1).bootstrap, topic, 3)
    wait_isr(cluster, topic, 3, 3)
    values = [f"v{i}".encode() for i in range(300)]
    helpers.produce_values(cluster.bootstrap(), topic, values, acks="all")

    first = consume_group(cluster.bootstrap(), group, topic, 150, commit_every=25)
    assert len(first) >= 150, f"read {len(first)} of 150 before the failover"
    committed = {}
    for p, o, _ in first:
        committed[p] = max(committed.get(p, 0), o + 1)

    victim = group_coordinator(cluster.bootstrap(), group)
    wait_isr(cluster, "__consumer_offsets", 3, 3)
    cluster.node(victim).kill9_only()
    survivors = cluster.bootstrap(exclude=(victim,))
    cluster.wait_brokers(2)
    successor = group_coordinator(survivors, group)
    assert successor != victim, "the dead node still coordinates the group"
    print(f"group coordinator: node {victim} killed, node {successor} took over")

    offsets = helpers.admin(survivors).list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group)])[group].result(timeout=20)
    seen = {tp.partition: tp.offset for tp in offsets.topic_partitions if tp.topic == topic}
    assert {p: o for p, o in seen.items() if o >= 0} == committed, "commits lost with the coordinator"

    rest = consume_group(survivors, group, topic, 300 - sum(committed.values()))
    read = {(p, o) for p, o, _ in first} | {(p, o) for p, o, _ in rest}
    again = [(p, o) for p, o, _ in rest if o < committed.get(p, 0)]
    assert not again, f"records before the committed offsets read again: {again[:5]}"
    assert len(read) == 300 and len(first) + len(rest) == 300, (
        f"{len(first)} + {len(rest)} records read, {len(read)} distinct, expected 300")
    assert sorted(v for _, _, v in first + rest) == sorted(values)

    cluster.node(victim).start()
    cluster.wait_brokers(3)
    wait_isr(cluster, "__consumer_offsets", 3, 3, timeout_s=30)


def test_leadership_moves_back_to_the_preferred_replica_after_it_returns(tmp_path):
    """auto.leader.rebalance.enable: after kill -9 of a partition's preferred leader its
    partition is led elsewhere; once the node is back and in sync, the controller moves
    leadership back (a new epoch), and every acknowledged record is still there."""
    c = Cluster(tmp_path, extra={"leader.imbalance.check.interval.seconds": "1"})
    c.start()
    try:
        topic = "preferred-" + uuid.uuid4().hex[:6]
        create_rf3(c.node(1).bootstrap, topic, 1)
        infos = wait_isr(c, topic, 1, 3)
        preferred = infos[0].replicas[0]
        assert infos[0].leader == preferred
        load = LoadProducer(c.bootstrap(), topic)
        load.start()
        c.node(preferred).kill9_only()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            info = partition_info(c.bootstrap(exclude=(preferred,)), topic, 0)
            if info is not None and info.leader not in (-1, preferred):
                break
            time.sleep(0.2)
        assert info.leader not in (-1, preferred), f"no failover: {info}"
        c.node(preferred).start()
        c.wait_brokers(3)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            info = partition_info(c.bootstrap(), topic, 0)
            if info is not None and info.leader == preferred:
                break
            time.sleep(0.2)
        assert info is not None and info.leader == preferred, f"leadership stayed away: {info}"
        before = len(load.acked)
        deadline = time.monotonic() + 30
        while len(load.acked) < before + 300 and time.monotonic() < deadline:
            time.sleep(0.05)
        load.stop_flag.set()
        load.join(90)
        assert not load.errors, f"delivery errors: {load.errors[:5]}"
        assert len(load.acked) >= before + 300, "the producer stalled after the move back"
        check_history(c.bootstrap(), topic, load.acked)
    finally:
        helpers.forget_clients()
        c.stop()


def json_call(node, request):
    with socket.create_connection(("127.0.0.1", node.port), timeout=15) as sock:
        f = sock.makefile("rwb")
        f.write(json.dumps(request).encode() + b"\n")
        f.flush()
        return json.loads(f.readline())


def until(check, what, timeout_s=20):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last is True:
            return
        time.sleep(0.2)
    raise AssertionError(f"{what}: {last}")


def test_new_partitions_config_changes_and_deletes_reach_every_node(cluster):
    """CreatePartitions, AlterConfigs and DeleteTopics sent to one node go through the
    metadata log: every node's Metadata and DescribeConfigs show the change, the new
    partitions are replicated and usable, and a deleted topic's files go from every node.
    The JSON protocol's topic create does the same."""
    topic = "grow-" + uuid.uuid4().hex[:6]
    create_rf3(cluster.node(1).bootstrap, topic, 2)
    wait_isr(cluster, topic, 2, 3)

    helpers.admin(cluster.node(2).bootstrap).create_partitions(
        [NewPartitions(topic, 4)])[topic].result(timeout=30)
    for node in cluster.nodes:
        def grown(node=node):
            count = len(metadata(node.bootstrap).topics[topic].partitions)
            return count == 4 or count
        until(grown, f"partitions on {node.bootstrap}")
    wait_isr(cluster, topic, 4, 3)
    d = helpers.produce_values(cluster.bootstrap(), topic, [b"in-new-3"], partition=3, acks="all")
    assert d.ok[0][0] == 3
    got = helpers.consume_partitions(cluster.node(3).bootstrap, topic, [3], 1, timeout_s=30)
    assert [m.value() for m in got] == [b"in-new-3"]

    resource = ConfigResource("topic", topic, set_config={"retention.ms": "123456"})
    helpers.admin(cluster.node(3).bootstrap).alter_configs([resource])[resource].result(timeout=30)
    for node in cluster.nodes:
        def shown(node=node):
            r = ConfigResource("topic", topic)
            configs = helpers.admin(node.bootstrap).describe_configs([r])[r].result(timeout=10)
            return configs["retention.ms"].value == "123456" or configs["retention.ms"].value
        until(shown, f"retention.ms on {node.bootstrap}")

    helpers.admin(cluster.node(1).bootstrap).delete_topics([topic], operation_timeout=30)[topic].result(timeout=30)
    for node in cluster.nodes:
        until(lambda node=node: topic not in metadata(node.bootstrap).topics, f"{topic} still on {node.bootstrap}")
        until(lambda node=node: not (node.data_dir / topic).exists(), f"{topic} files still on {node.bootstrap}")

    made = json_call(cluster.node(2), {"type": "create_topic", "topic": "json-made", "partitions": 2})
    assert made["ok"] is True, made
    for node in cluster.nodes:
        until(lambda node=node: "json-made" in metadata(node.bootstrap).topics, f"json-made on {node.bootstrap}")
    infos = wait_isr(cluster, "json-made", 2, 3)
    assert all(len(i.replicas) == 3 for i in infos)


def test_the_cli_works_against_any_node(cluster):
    """`strom produce` and `strom consume --group` bootstrapped at one node reach every
    partition's leader and the group's coordinator wherever they are."""
    topic = "cli-" + uuid.uuid4().hex[:6]
    create_rf3(cluster.node(1).bootstrap, topic, 3)
    infos = wait_isr(cluster, topic, 3, 3)
    assert len({i.leader for i in infos}) == 3, "leaders should be spread over the nodes"
    lines = [f"k{i}:line-{i}" for i in range(90)]
    produced = subprocess.run(
        [str(strom_bin()), "produce", topic, "--key-separator", ":", "--bootstrap", cluster.node(1).bootstrap],
        input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=60,
    )
    assert produced.returncode == 0, produced.stderr
    consumed = subprocess.run(
        [str(strom_bin()), "consume", topic, "--group", "cli-readers", "--from-beginning",
         "--count", "90", "--format", "%p %k %s", "--bootstrap", cluster.node(3).bootstrap],
        capture_output=True, text=True, timeout=90,
    )
    assert consumed.returncode == 0, consumed.stderr
    got = consumed.stdout.splitlines()
    assert sorted(line.split(" ", 1)[1] for line in got) == sorted(f"k{i} line-{i}" for i in range(90))
    assert len({line.split(" ")[0] for line in got}) == 3, "every partition was read"
    # The group's commits are at its coordinator: every partition is committed to its end.
    offsets = helpers.admin(cluster.node(2).bootstrap).list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions("cli-readers")])["cli-readers"].result(timeout=20)
    committed = sum(tp.offset for tp in offsets.topic_partitions if tp.topic == topic)
    assert committed == 90, offsets.topic_partitions


def test_the_python_client_follows_redirects_to_partition_leaders(cluster):
    """The users' Python API (JSON protocol) pointed at one node produces to and consumes
    from partitions led by the others: each `not_leader` answer sends the request on to the
    node it names."""
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "clients" / "python"))
    from strom import SimpleConsumer, SimpleProducer

    topic = "py-" + uuid.uuid4().hex[:6]
    create_rf3(cluster.node(1).bootstrap, topic, 3)
    infos = wait_isr(cluster, topic, 3, 3)
    entry = cluster.node(1)
    assert any(i.leader != 1 for i in infos)
    with SimpleProducer(port=entry.port) as producer:
        sent = {p: [producer.send(topic, f"p{p}-{i}".encode(), partition=p)["offset"] for i in range(5)]
                for p in range(3)}
    assert sent == {p: [0, 1, 2, 3, 4] for p in range(3)}
    consumer = SimpleConsumer(port=entry.port, consumer_id="py-reader")
    for p in range(3):
        consumer.subscribe(topic, partition=p, offset=0)
    got = []
    deadline = time.monotonic() + 30
    while len(got) < 15 and time.monotonic() < deadline:
        got.extend(consumer.poll(timeout=1.0))
    consumer.close()
    assert sorted((m["partition"], m["offset"], m["value"]) for m in got) == sorted(
        (p, i, f"p{p}-{i}") for p in range(3) for i in range(5))


def test_a_compacted_topic_replicates_with_its_offset_gaps(tmp_path):
    """Every replica compacts its own log, and a follower that was away while the leader
    compacted fetches the cleaned log with its offset gaps, keeping each record's offset: when
    it becomes leader it serves the latest value of every key at the offset it was
    acknowledged with."""
    c = Cluster(tmp_path, extra={"log.cleaner.backoff.ms": "100"})
    c.start()
    try:
        topic = "compacted-" + uuid.uuid4().hex[:6]
        create_rf3(c.node(1).bootstrap, topic, 1, config={
            "cleanup.policy": "compact", "segment.bytes": "1024", "min.cleanable.dirty.ratio": "0.01"})
        info = wait_isr(c, topic, 1, 3)[0]
        leader, away = info.leader, [r for r in info.replicas if r != info.leader][0]
        c.node(away).kill9_only()
        wait_isr(c, topic, 1, 2, timeout_s=30)
        p = helpers.producer(c.bootstrap(exclude=(away,)), acks="all", **{"linger.ms": 0, "batch.size": 300})
        delivered = {}
        errors = []

        def report(err, m):
            if err is not None:
                errors.append(err)
            else:
                delivered[m.offset()] = (m.key(), m.value())
        records = [(f"k{i % 8}".encode(), f"v{i}".encode()) for i in range(160)]
        records += [(f"fill-{i}".encode(), b"f" * 100) for i in range(30)]
        for n, (k, v) in enumerate(records):
            p.produce(topic, key=k, value=v, partition=0, on_delivery=report)
            if n % 10 == 9:
                assert p.flush(15) == 0
        assert p.flush(15) == 0 and not errors, errors[:3]
        assert len(delivered) == len(records)
        latest = {}
        for offset in sorted(delivered):
            latest[delivered[offset][0]] = (offset, delivered[offset][1])

        def leader_compacted():
            got = read_all(c.bootstrap(exclude=(away,)), topic)
            keys = [k for _, k, _ in got if k.startswith(b"k")]
            return len(keys) == len(set(keys)) or f"{len(keys)} k-records"
        until(leader_compacted, "the leader never compacted", timeout_s=30)

        c.node(away).start()
        wait_isr(c, topic, 1, 3, timeout_s=30)
        c.node(leader).kill9_only()
        until(lambda: (i := partition_info(c.bootstrap(exclude=(leader,)), topic, 0)) is not None
              and i.leader == away or "not yet", f"node {away} never took over")
        got = read_all(c.bootstrap(exclude=(leader,)), topic, timeout_s=30)
        offsets = [o for o, _, _ in got]
        assert offsets == sorted(set(offsets)), "offsets repeat or go back"
        for offset, key, value in got:
            assert delivered[offset] == (key, value), f"offset {offset} holds something else"
        served = {k: (o, v) for o, k, v in got}
        assert all(served.get(k) == ov for k, ov in latest.items()), "a key's latest value is missing or moved"
        assert len(got) < len(records), "nothing was compacted away"
    finally:
        helpers.forget_clients()
        c.stop()


@pytest.fixture
def secured_cluster(tmp_path):
    """A cluster with the authorizer on; the PLAINTEXT listeners' User:ANONYMOUS is a super
    user, as an operator's local admin listener would be."""
    c = Cluster(tmp_path, extra={
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": "User:ANONYMOUS"})
    c.start()
    yield c
    helpers.forget_clients()
    c.stop()


def test_users_acls_and_quotas_set_on_one_node_reach_every_node(secured_cluster):
    """AlterUserScramCredentials, CreateAcls / DeleteAcls and AlterClientQuotas sent to one
    node go through the metadata log: every node describes the same users, ACLs and quotas,
    and a node restarted afterwards has them too."""
    cluster = secured_cluster
    from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType,
                                       ResourcePatternType, ResourceType, ScramCredentialInfo,
                                       ScramMechanism, UserScramCredentialUpsertion)
    from quota_wire import QuotaAdmin, MATCH_ANY

    admin1 = helpers.admin(cluster.node(1).bootstrap)
    upsert = UserScramCredentialUpsertion(
        "alice", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), b"alice-secret")
    admin1.alter_user_scram_credentials([upsert])["alice"].result(timeout=20)
    acl = AclBinding(ResourceType.TOPIC, "orders", ResourcePatternType.LITERAL, "User:alice", "*",
                     AclOperation.WRITE, AclPermissionType.ALLOW)
    helpers.admin(cluster.node(2).bootstrap).create_acls([acl])[acl].result(timeout=20)
    with QuotaAdmin(cluster.node(3).bootstrap) as q:
        assert q.alter([({"user": "alice"}, {"producer_byte_rate": 1048576.0})]) == [
            (0, None, {"user": "alice"})]

    every_acl = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                                 AclOperation.ANY, AclPermissionType.ANY)

    def same_everywhere():
        for node in cluster.nodes:
            a = helpers.admin(node.bootstrap)
            users = a.describe_user_scram_credentials(["alice"])["alice"].result(timeout=10)
            if [c.mechanism for c in users.scram_credential_infos] != [ScramMechanism.SCRAM_SHA_256]:
                return f"users on {node.bootstrap}: {users}"
            acls = a.describe_acls(every_acl).result(timeout=10)
            if acls != [acl]:
                return f"ACLs on {node.bootstrap}: {acls}"
            with QuotaAdmin(node.bootstrap) as q:
                _, _, entries = q.describe([("user", MATCH_ANY, None)])
            if entries != {frozenset({("user", "alice")}): {"producer_byte_rate": 1048576.0}}:
                return f"quotas on {node.bootstrap}: {entries}"
        return True
    until(same_everywhere, "not the same on every node")

    # A delete on another node, and a node restarted afterwards catches up from the log.
    cluster.node(1).stop()
    helpers.admin(cluster.node(3).bootstrap).delete_acls([every_acl])[every_acl].result(timeout=20)
    cluster.node(1).start()
    cluster.wait_brokers(3)
    until(lambda: helpers.admin(cluster.node(1).bootstrap).describe_acls(every_acl).result(timeout=10) == []
          or "ACLs still on node 1", "the restarted node kept a deleted ACL")


def test_two_nodes_killed_at_once_lose_nothing_acknowledged(cluster):
    """kill -9 of the partition leader and one follower together under acks=all load: the one
    node left has no metadata quorum and the partition no ISR of min.insync.replicas, so
    nothing more is acknowledged; once both are back, the producer continues and every record
    acknowledged before or after is there exactly once, in order."""
    topic = "two-down-" + uuid.uuid4().hex[:6]
    load = loaded_rf3_topic(cluster, topic)

    leader = partition_info(cluster.bootstrap(), topic, 0).leader
    other = next(i for i in (1, 2, 3) if i != leader)
    faulted_at = time.monotonic()
    cluster.node(leader).kill9_only()
    cluster.node(other).kill9_only()
    time.sleep(4)
    # Anything acknowledged later than a moment after the kill came from a node that could not
    # have had two in-sync replicas.
    late = [a for a in load.acked if a[3] > faulted_at + 1.0]
    assert not late, f"{len(late)} records acknowledged with two of three nodes dead"

    restarted_at = time.monotonic()
    cluster.node(leader).start()
    cluster.node(other).start()
    while time.monotonic() - restarted_at < 60 and not any(a[3] > restarted_at for a in load.acked[-50:]):
        time.sleep(0.05)
    resumed = [a[3] for a in load.acked if a[3] > restarted_at]
    assert resumed, f"no acknowledgement after both nodes returned; errors {load.errors[:3]}"
    time.sleep(1)
    load.stop_flag.set()
    load.join(90)
    assert not load.errors, f"delivery errors: {load.errors[:5]}"
    print(f"\ntwo nodes down for {restarted_at - faulted_at:.1f}s; first ack {min(resumed) - restarted_at:.2f}s "
          f"after their restart; {len(load.acked)} acks in all")
    wait_isr(cluster, topic, 1, 3, timeout_s=30)
    check_history(cluster.bootstrap(), topic, load.acked)


INVALID_REPLICA_ASSIGNMENT = 39


def test_manual_replica_assignments_are_kept_on_every_node(cluster):
    """CreateTopics and CreatePartitions with replicas chosen by the client (kafka-topics'
    --replica-assignment): every node shows those replicas, the first of each is the leader,
    the partitions work; an unknown broker or an uneven replica count is
    INVALID_REPLICA_ASSIGNMENT, as Kafka's controller answers."""
    admin = helpers.admin(cluster.node(2).bootstrap)
    topic = "manual-" + uuid.uuid4().hex[:6]
    wanted = [[3, 1, 2], [2, 3], [1, 2]]
    with pytest.raises(KafkaException) as uneven:
        admin.create_topics([NewTopic(topic, len(wanted), replica_assignment=wanted)])[topic].result(timeout=30)
    assert uneven.value.args[0].code() == INVALID_REPLICA_ASSIGNMENT
    with pytest.raises(KafkaException) as unknown:
        admin.create_topics([NewTopic(topic, 1, replica_assignment=[[1, 9]])])[topic].result(timeout=30)
    assert unknown.value.args[0].code() == INVALID_REPLICA_ASSIGNMENT
    assert "no such broker" in unknown.value.args[0].str()

    wanted = [[3, 1], [2, 3], [3, 2]]
    admin.create_topics([NewTopic(topic, len(wanted), replica_assignment=wanted)])[topic].result(timeout=30)
    admin.create_partitions([NewPartitions(topic, 5, replica_assignment=[[1, 2], [2, 1]])])[topic].result(timeout=30)
    wanted += [[1, 2], [2, 1]]

    def as_assigned():
        for node in cluster.nodes:
            t = metadata(node.bootstrap).topics.get(topic)
            if t is None or len(t.partitions) != len(wanted):
                return f"node {node.bootstrap}: {t and t.partitions}"
            got = [(t.partitions[i].replicas, t.partitions[i].leader) for i in range(len(wanted))]
            if got != [(r, r[0]) for r in wanted]:
                return f"node {node.bootstrap}: {got}"
        return True
    until(as_assigned, "replicas or leaders not as assigned")

    with pytest.raises(KafkaException) as uneven_new:
        admin.create_partitions([NewPartitions(topic, 6, replica_assignment=[[1, 2, 3]])])[topic].result(timeout=30)
    assert uneven_new.value.args[0].code() == INVALID_REPLICA_ASSIGNMENT

    # The CLI takes kafka-topics' form of the same thing.
    cli_topic = topic + "-cli"
    made = subprocess.run(
        [str(strom_bin()), "topic", "create", cli_topic, "--replica-assignment", "2:3,3:1",
         "--bootstrap", cluster.node(1).bootstrap],
        capture_output=True, text=True, timeout=60,
    )
    assert made.returncode == 0, made.stderr
    until(lambda: [(p.replicas, p.leader) for _, p in sorted(metadata(cluster.node(3).bootstrap)
                   .topics[cli_topic].partitions.items())] == [([2, 3], 2), ([3, 1], 3)] or "not yet",
          "the CLI's assignment was not kept")

    for partition in range(len(wanted)):
        values = [f"{partition}-{i}".encode() for i in range(20)]
        helpers.produce_values(cluster.bootstrap(), topic, values, partition=partition, acks="all")
        got = helpers.consume_partitions(cluster.bootstrap(), topic, [partition], len(values))
        assert [m.value() for m in got] == values


def test_delete_records_moves_the_log_start_of_every_replica(cluster):
    """DeleteRecords goes to the partition leader; its followers move their log start to the
    leader's as they fetch (as Kafka's do), so after the leader dies the new one does not serve
    the deleted records again. Coordinator checkpoints of `__consumer_offsets` and
    `__transaction_state` rely on the same move."""
    topic = "delrec-" + uuid.uuid4().hex[:6]
    create_rf3(cluster.node(1).bootstrap, topic, 1)
    wait_isr(cluster, topic, 1, 3)
    values = [f"v{i}".encode() for i in range(100)]
    helpers.produce_values(cluster.bootstrap(), topic, values, partition=0, acks="all")
    result = helpers.admin(cluster.bootstrap()).delete_records([TopicPartition(topic, 0, 60)])
    deleted = list(result.values())[0].result(timeout=20)
    assert deleted.low_watermark == 60
    leader = partition_info(cluster.bootstrap(), topic, 0).leader
    time.sleep(1)  # a few follower fetches carry the new log start
    cluster.node(leader).kill9_only()
    survivors = cluster.bootstrap(exclude=(leader,))

    until(lambda: new_leader_elected(survivors, topic, leader), "no new leader")
    low, high = helpers.watermarks(survivors, topic)
    assert (low, high) == (60, 100)
    got = helpers.consume_partitions(survivors, topic, [0], 40)
    assert [(m.offset(), m.value()) for m in got] == [(60 + i, values[60 + i]) for i in range(40)]
    cluster.node(leader).start()


def test_a_json_group_on_one_node_reads_partitions_led_by_every_node(cluster):
    """A JSON consumer group reads partitions whose leaders are all three nodes (its
    coordinator reads them through their leaders, and a client pointed at another node is sent
    to the coordinator), commits as it goes, and a later member resumes exactly after the
    commits."""
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "clients" / "python"))
    from strom import SimpleConsumer, SimpleProducer

    topic = "jsongroup-" + uuid.uuid4().hex[:6]
    create_rf3(cluster.node(1).bootstrap, topic, 3)
    infos = wait_isr(cluster, topic, 3, 3)
    assert len({i.leader for i in infos}) == 3, "leaders should be spread over the nodes"
    entry = cluster.node(2)

    def send(first, count):
        with SimpleProducer(port=entry.port) as producer:
            for i in range(first, first + count):
                producer.send(topic, f"v{i}".encode(), partition=i % 3)

    def read_all(count, timeout_s=30):
        got = []
        with SimpleConsumer(port=entry.port, group_id="json-readers") as consumer:
            consumer.subscribe(topic)
            deadline = time.monotonic() + timeout_s
            while len(got) < count and time.monotonic() < deadline:
                got.extend(consumer.poll(timeout=1.0))
        return got

    send(0, 60)
    first = read_all(60)
    assert sorted(m["value"] for m in first) == sorted(f"v{i}" for i in range(60))
    for p in range(3):
        offsets = [m["offset"] for m in first if m["partition"] == p]
        assert offsets == list(range(20)), (p, offsets)
    send(60, 30)
    second = read_all(30)
    assert sorted(m["value"] for m in second) == sorted(f"v{i}" for i in range(60, 90))


def test_a_json_consumer_resumes_after_its_partition_leader_dies(cluster):
    """A JSON consumer id's positions are the committed offsets of the group `json:<id>`,
    kept by that group's replicated coordinator: after kill -9 of the partition's leader the
    consumer goes on at the new leader exactly where it stopped, nothing read twice."""
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "clients" / "python"))
    from strom import SimpleConsumer, SimpleProducer

    topic = "jsonpos-" + uuid.uuid4().hex[:6]
    create_rf3(cluster.node(1).bootstrap, topic, 1)
    wait_isr(cluster, topic, 1, 3)
    leader = partition_info(cluster.bootstrap(), topic, 0).leader
    entry = cluster.node(next(i for i in (1, 2, 3) if i != leader))
    with SimpleProducer(port=entry.port) as producer:
        for i in range(40):
            producer.send(topic, f"v{i}".encode(), partition=0)

    def read(count, timeout_s=30):
        got = []
        with SimpleConsumer(port=entry.port, consumer_id="resumer") as consumer:
            consumer.subscribe(topic, partition=0)
            deadline = time.monotonic() + timeout_s
            while len(got) < count and time.monotonic() < deadline:
                got.extend(consumer.poll(timeout=1.0, max_messages=count - len(got)))
        return got

    first = read(25)
    assert [m["offset"] for m in first] == list(range(25))
    cluster.node(leader).kill9_only()
    survivors = cluster.bootstrap(exclude=(leader,))

    until(lambda: new_leader_elected(survivors, topic, leader), "no new leader")
    rest = read(15)
    assert [(m["offset"], m["value"]) for m in rest] == [(i, f"v{i}") for i in range(25, 40)]
    cluster.node(leader).start()


def test_a_json_group_moves_with_its_coordinator(cluster):
    """A JSON consumer group lives with its replicated coordinator: after kill -9 of the
    coordinator's node the same Python consumer (pointed at another node) rejoins the new
    coordinator and reads on from the group's commits, every message exactly once."""
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "clients" / "python"))
    from strom import SimpleConsumer, SimpleProducer

    topic = "jsonmove-" + uuid.uuid4().hex[:6]
    group = "json-movers"
    create_rf3(cluster.node(1).bootstrap, topic, 3)
    wait_isr(cluster, topic, 3, 3)
    coordinator = group_coordinator(cluster.bootstrap(), group)
    entry = cluster.node(next(i for i in (1, 2, 3) if i != coordinator))
    with SimpleProducer(port=entry.port) as producer:
        for i in range(60):
            producer.send(topic, f"v{i}".encode(), partition=i % 3)
    got = []
    with SimpleConsumer(port=entry.port, group_id=group, session_timeout_ms=6000) as consumer:
        consumer.subscribe(topic)
        deadline = time.monotonic() + 30
        while len(got) < 20 and time.monotonic() < deadline:
            got.extend(consumer.poll(timeout=1.0, max_messages=10))
        assert len(got) >= 20, f"only {len(got)} before the kill"
        cluster.node(coordinator).kill9_only()
        deadline = time.monotonic() + 60
        while len(got) < 60 and time.monotonic() < deadline:
            got.extend(consumer.poll(timeout=1.0, max_messages=10))
    values = [m["value"] for m in got]
    assert sorted(values) == sorted(f"v{i}" for i in range(60)), (
        f"{len(values)} read, duplicates {len(values) - len(set(values))}")
    for p in range(3):
        offsets = [m["offset"] for m in got if m["partition"] == p]
        assert offsets == list(range(20)), (p, offsets)
    assert group_coordinator(cluster.bootstrap(exclude=(coordinator,)), group) != coordinator
    cluster.node(coordinator).start()


def test_a_kip848_group_survives_the_death_of_its_coordinator(request, tmp_path):
    """librdkafka with group.protocol=consumer on three nodes: after kill -9 of the group's
    coordinator the member finds the new one, which read the group back from the replicated
    `__consumer_offsets` partition, and goes on from the replicated commits: every record is
    read, and nothing before a commit twice."""
    extra = {"group.consumer.heartbeat.interval.ms": "500", "group.consumer.session.timeout.ms": "6000"}
    for cluster in running_cluster(request, tmp_path, extra=extra):
        topic = "k848-" + uuid.uuid4().hex[:6]
        group = "k848-" + uuid.uuid4().hex[:6]
        create_rf3(cluster.node(1).bootstrap, topic, 3)
        wait_isr(cluster, topic, 3, 3)
        values = [f"v{i}".encode() for i in range(300)]
        helpers.produce_values(cluster.bootstrap(), topic, values[:150], acks="all")
        c = Consumer({"bootstrap.servers": cluster.bootstrap(), "group.id": group,
                      "group.protocol": "consumer", "enable.auto.commit": False,
                      "auto.offset.reset": "earliest"})
        c.subscribe([topic])
        got, committed = [], {}

        def read(count, timeout_s=60):
            deadline = time.monotonic() + timeout_s
            while len(got) < count and time.monotonic() < deadline:
                m = c.poll(0.3)
                if m is None or m.error() is not None:
                    continue
                got.append((m.partition(), m.offset(), m.value()))
                if len(got) % 10 == 0:
                    try:
                        for tp in c.commit(asynchronous=False):
                            committed[tp.partition] = tp.offset
                    except KafkaException:
                        pass  # the coordinator moving; a later commit covers it
            assert len(got) >= count, f"read {len(got)} of {count}"

        read(150)
        before = dict(committed)
        victim = group_coordinator(cluster.bootstrap(), group)
        cluster.node(victim).kill9_only()
        cluster.wait_brokers(2)
        helpers.produce_values(cluster.bootstrap(exclude=(victim,)), topic, values[150:], acks="all")
        read(300)
        assignment = sorted(tp.partition for tp in c.assignment())
        c.close()
        assert sorted(set(v for _, _, v in got)) == sorted(values)
        seen = {}
        for p, o, _ in got:
            seen[(p, o)] = seen.get((p, o), 0) + 1
        twice = [k for k, n in seen.items() if n > 1 and k[1] < before.get(k[0], 0)]
        assert not twice, f"committed records read again: {twice[:5]}"
        assert assignment == [0, 1, 2]
