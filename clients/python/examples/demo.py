#!/usr/bin/env python3
"""The users' demonstration, with the `strom` Python package.

1. Starts `strom serve` on a free port with a temporary data directory (or, with
   `--bootstrap HOST:PORT`, uses a broker that is already running).
2. Creates a topic with 3 partitions.
3. Three producer threads write to the three partitions in parallel, while a consumer group of
   three members, in three more threads, reads them.
4. Checks that every message was read exactly once, and that each member read one
   partition's share.
5. Kills the broker with SIGKILL, starts it again on the same data directory, and checks that
   every message and the group's committed offsets are still there, and that the group
   resumes where it left off.

Prints each step; exits with status 1 if a check fails.

    python clients/python/examples/demo.py                      # its own broker
    python clients/python/examples/demo.py --bootstrap 127.0.0.1:9092
"""

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Run from a checkout without installing the package.
sys.path.insert(0, str(HERE.parent))

from strom import SimpleConsumer, SimpleProducer  # noqa: E402

PARTITIONS = 3
CONSUMERS = 3


class CheckFailed(Exception):
    pass


def check(condition, what):
    if not condition:
        raise CheckFailed(what)
    print(f"  ok: {what}")


def step(text):
    print(f"\n== {text}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_strom(explicit):
    candidates = [explicit, os.environ.get("STROM_BIN"), shutil.which("strom"),
                  HERE.parents[2] / "target" / "release" / "strom"]
    for c in candidates:
        if c and Path(c).is_file():
            return str(c)
    raise SystemExit("cannot find the strom binary: build it (cargo build --release) or pass --strom PATH")


class Broker:
    """`strom serve` as a child process on a fixed port and data directory."""

    def __init__(self, binary, data_dir, port):
        self.binary, self.data_dir, self.port = binary, data_dir, port
        self.log = open(Path(data_dir).parent / "strom-demo-broker.log", "ab")
        self.proc = None

    def start(self):
        cmd = [self.binary, "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir", self.data_dir]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"strom exited with code {self.proc.returncode}; see {self.log.name}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("strom did not start within 30 s")

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def produce(host, port, topic, partition, count, errors):
    try:
        with SimpleProducer(host, port) as producer:
            for i in range(count):
                response = producer.send(topic, f"partition {partition} message {i}",
                                         partition=partition, key=f"k{i}")
                if response["partition"] != partition or response["offset"] != i:
                    raise CheckFailed(f"message {i} landed at {response}")
    except Exception as e:  # reported by the main thread
        errors.append(f"producer {partition}: {e!r}")


def consume(host, port, topic, group, index, total, received, lock, done, errors, members, barrier):
    try:
        consumer = SimpleConsumer(host, port, group_id=group)
        consumer.connect()
        consumer.subscribe(topic)
        deadline = time.monotonic() + 120
        while not done.is_set() and time.monotonic() < deadline:
            for msg in consumer.poll(timeout=0.5):
                with lock:
                    received.append((index, msg["partition"], msg["offset"], msg["value"]))
                    if len(received) >= total:
                        done.set()
        members[index] = consumer.assignment()
        # Leave only once every member has noted its assignment, or the first to leave would
        # make the others rebalance first.
        try:
            barrier.wait(timeout=30)
        except threading.BrokenBarrierError:
            pass
        consumer.close()
    except Exception as e:
        errors.append(f"consumer {index}: {e!r}")
        done.set()
        barrier.abort()


def run(args):
    per_partition = args.messages
    total = per_partition * PARTITIONS
    broker = None
    tmp = None
    if args.bootstrap:
        host, _, port = args.bootstrap.rpartition(":")
        port = int(port)
        suffix = uuid.uuid4().hex[:8]
        topic, group = f"demo-topic-{suffix}", f"demo-group-{suffix}"
        step(f"Using the broker at {host}:{port}")
    else:
        tmp = tempfile.mkdtemp(prefix="strom-demo-")
        host, port = "127.0.0.1", free_port()
        topic, group = "demo-topic", "demo-group"
        broker = Broker(find_strom(args.strom), str(Path(tmp) / "data"), port)
        step(f"Starting strom serve on {host}:{port} with data in {broker.data_dir}")
        broker.start()
        print("  broker is up")
    try:
        step(f"Creating topic {topic} with {PARTITIONS} partitions")
        with SimpleProducer(host, port) as producer:
            created = producer.create_topic(topic, partitions=PARTITIONS)
            check(created["partitions"] == PARTITIONS, f"{topic} has {PARTITIONS} partitions")

        step(f"{PARTITIONS} producer threads write {per_partition} messages each, while a group of "
             f"{CONSUMERS} consumers reads them")
        received, lock, done, errors = [], threading.Lock(), threading.Event(), []
        members = [None] * CONSUMERS
        barrier = threading.Barrier(CONSUMERS)
        consumers = [threading.Thread(target=consume, args=(host, port, topic, group, i, total, received,
                                                            lock, done, errors, members, barrier))
                     for i in range(CONSUMERS)]
        producers = [threading.Thread(target=produce, args=(host, port, topic, p, per_partition, errors))
                     for p in range(PARTITIONS)]
        started = time.monotonic()
        for t in consumers + producers:
            t.start()
        for t in producers:
            t.join()
        print(f"  produced {total} messages in {time.monotonic() - started:.2f} s")
        for t in consumers:
            t.join()
        print(f"  consumed {len(received)} messages in {time.monotonic() - started:.2f} s")
        check(not errors, f"no thread failed {errors if errors else ''}")

        step("Checking what the group read")
        seen = {}
        for index, partition, offset, value in received:
            seen.setdefault((partition, offset), []).append((index, value))
        expected = {(p, i): f"partition {p} message {i}" for p in range(PARTITIONS)
                    for i in range(per_partition)}
        duplicates = {k: v for k, v in seen.items() if len(v) > 1}
        check(not duplicates, f"no message was read twice ({len(duplicates)} were)")
        check(set(seen) == set(expected), f"every one of the {total} messages was read")
        check(all(seen[k][0][1] == v for k, v in expected.items()), "every message has the value that was sent")
        for index in range(CONSUMERS):
            parts = sorted({p for i, p, _, _ in received if i == index})
            count = sum(1 for i, *_ in received if i == index)
            print(f"  consumer {index}: {count} messages from partitions {parts}; final assignment {members[index]}")
        finals = [m for m in members if m is not None]
        check(sorted(tp for m in finals for tp in m) == [(topic, p) for p in range(PARTITIONS)]
              and all(len(m) == 1 for m in finals),
              "each member ended up with one partition of its own")
        with SimpleConsumer(host, port, group_id=group) as probe:
            committed = probe.committed(topic)
        check(committed == {p: per_partition for p in range(PARTITIONS)},
              f"the group's committed offsets are at the end of each partition: {committed}")

        if broker is None:
            step("Skipping the kill -9 check: the broker is not ours to kill")
            return 0

        step("Killing the broker with SIGKILL and starting it again")
        broker.kill9()
        broker.start()
        print("  broker is up again")

        step("Checking that everything survived")
        with SimpleProducer(host, port) as producer:
            description = producer.describe_topic(topic)
        ends = {p["partition"]: p["end_offset"] for p in description["partitions"]}
        check(ends == {p: per_partition for p in range(PARTITIONS)}, f"every partition still ends at {per_partition}")
        reader = SimpleConsumer(host, port)
        reader.connect()
        for p in range(PARTITIONS):
            reader.subscribe(topic, partition=p, offset=0)
        again = {}
        while len(again) < total:
            batch = reader.poll(timeout=2.0, max_messages=1000)
            if not batch:
                break
            for msg in batch:
                again[(msg["partition"], msg["offset"])] = msg["value"]
        reader.close()
        check(again == expected, f"all {total} messages read back after the restart")
        with SimpleConsumer(host, port, group_id=group) as member:
            check(member.committed(topic) == committed, "the group's committed offsets survived")
            with SimpleProducer(host, port) as producer:
                for p in range(PARTITIONS):
                    producer.send(topic, f"after restart {p}", partition=p)
            member.subscribe(topic)
            resumed = []
            deadline = time.monotonic() + 30
            while len(resumed) < PARTITIONS and time.monotonic() < deadline:
                resumed += member.poll(timeout=1.0)
            check(sorted((m["partition"], m["offset"], m["value"]) for m in resumed)
                  == [(p, per_partition, f"after restart {p}") for p in range(PARTITIONS)],
                  "a member of the group resumes where the group left off (only the new messages)")
        return 0
    finally:
        if broker is not None:
            broker.stop()
        if tmp is not None and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", help="use a running broker at HOST:PORT instead of starting one")
    parser.add_argument("--strom", help="path of the strom binary (default: $STROM_BIN, PATH, target/release)")
    parser.add_argument("--messages", type=int, default=1000, help="messages per partition (default 1000)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data directory")
    args = parser.parse_args()
    try:
        code = run(args)
    except CheckFailed as e:
        print(f"\nFAILED: {e}", flush=True)
        return 1
    print("\nAll checks passed.")
    return code


if __name__ == "__main__":
    sys.exit(main())
