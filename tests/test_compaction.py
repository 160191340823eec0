"""Log compaction (`cleanup.policy=compact`) against the real binary, as Kafka's LogCleaner
behaves: closed segments are rewritten keeping the latest record of each key at its original
offset, tombstones go once `delete.retention.ms` has passed and the log is cleaned again,
aborted transactional records go, per-topic configs changed by IncrementalAlterConfigs apply
at the next round, and a broker killed with SIGKILL while it cleans loses and duplicates
nothing.

Every topic uses 1 KiB segments and `min.cleanable.dirty.ratio=0.01`, and every broker a
cleaner backoff of 100 ms, so a test waits a second or two for a pass. The newest records
always stay in the active segment, which is never cleaned (as Kafka): each test ends its
updates with filler records under keys of their own, enough to roll the segment past them.
"""

import os
import random
import time

import pytest
from confluent_kafka import OFFSET_BEGINNING, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

import helpers
from helpers import Delivery, consumer, create_topic, producer, watermarks
from httpcheck import sample, scrape, start_http_broker

pytestmark = pytest.mark.timeout(60)

CLEANER_SETTINGS = {"log.cleaner.backoff.ms": "100"}
COMPACT = {
    "cleanup.policy": "compact",
    "segment.bytes": "1024",
    "min.cleanable.dirty.ratio": "0.01",
}
WAIT_S = 20


def produce_keyed(bootstrap, topic, records, per_batch=10, **conf):
    """Produce (key, value) pairs to partition 0, `per_batch` per flush so that the 1 KiB
    segments roll often. Returns {offset: (key, value)} from the delivery reports."""
    p = producer(bootstrap, **{"linger.ms": 0, **conf})
    delivered = {}
    errors = []

    def report(err, msg):
        if err is not None:
            errors.append(err)
        else:
            delivered[msg.offset()] = (msg.key(), msg.value())

    for i, (key, value) in enumerate(records):
        p.produce(topic, key=key, value=value, partition=0, on_delivery=report)
        if (i + 1) % per_batch == 0:
            assert p.flush(15) == 0
    assert p.flush(15) == 0
    assert not errors, errors[:5]
    assert len(delivered) == len(records)
    return delivered


def filler(tag, count=20):
    """Records under keys of their own, big enough to roll a 1 KiB segment a few times."""
    return [(f"fill-{tag}-{i}".encode(), b"f" * 100) for i in range(count)]


def read_all(bootstrap, topic, isolation="read_uncommitted", timeout_s=15):
    """Every record of partition 0 from the beginning up to the high watermark, as
    [(offset, key, value)], read by librdkafka (which steps over offset gaps)."""
    low, high = watermarks(bootstrap, topic)
    c = consumer(bootstrap, **{"isolation.level": isolation, "enable.partition.eof": True})
    out = []
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    break
                raise AssertionError(f"consumer error: {m.error()}")
            out.append((m.offset(), m.key(), m.value()))
        return out
    finally:
        c.close()


def latest_by_key(delivered):
    """{key: (offset, value)} of the newest delivered record of each key."""
    latest = {}
    for offset in sorted(delivered):
        key, value = delivered[offset]
        latest[key] = (offset, value)
    return latest


def log_bytes(broker, topic):
    d = broker.partition_dir(topic)
    return sum(os.path.getsize(d / f) for f in os.listdir(d) if f.endswith(".log"))


def compacted(records, delivered, keys):
    """True when each of `keys` appears once in `records` (and any others are untouched)."""
    seen = [k for _, k, _ in records if k in keys]
    return len(seen) == len(set(seen))


def wait_until(predicate, timeout_s=WAIT_S, step_s=0.2):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(step_s)
    return predicate()


def check_latest(records, delivered, latest):
    """Each surviving record is the one delivered at its offset, offsets only grow, and every
    key's newest value is there at its original offset."""
    offsets = [o for o, _, _ in records]
    assert offsets == sorted(set(offsets)), "offsets repeat or go back"
    for offset, key, value in records:
        assert delivered[offset] == (key, value), f"offset {offset} holds something else"
    got = {k: (o, v) for o, k, v in records}
    for key, (offset, value) in latest.items():
        if value is None:
            continue
        assert got.get(key) == (offset, value), f"{key!r}: {got.get(key)} != {(offset, value)}"


def test_compaction_keeps_the_latest_value_of_each_key_at_its_offset(start_broker, topic_name):
    b = start_http_broker(start_broker, settings=CLEANER_SETTINGS)
    create_topic(b.bootstrap, topic_name, config=COMPACT)
    keys = [f"key-{k}".encode() for k in range(8)]
    updates = [(keys[i % 8], f"value-{i:04d}-".encode() + b"x" * 20) for i in range(400)]
    delivered = produce_keyed(b.bootstrap, topic_name, updates)
    delivered.update(produce_keyed(b.bootstrap, topic_name, filler("a"), per_batch=5))
    latest = latest_by_key(delivered)
    # The same records in a topic that is not compacted: the size the log would have.
    twin = topic_name + "-twin"
    create_topic(b.bootstrap, twin, config={"segment.bytes": "1024"})
    produce_keyed(b.bootstrap, twin, updates)
    produce_keyed(b.bootstrap, twin, filler("a"), per_batch=5)
    size_uncompacted = log_bytes(b, twin)

    records = wait_until(
        lambda: (r := read_all(b.bootstrap, topic_name)) and compacted(r, delivered, set(keys)) and r
    )
    assert records and compacted(records, delivered, set(keys)), (
        f"keys still repeat after {WAIT_S}s: {len(records)} records read"
    )
    check_latest(records, delivered, latest)
    assert sorted(k for _, k, _ in records if k in set(keys)) == sorted(keys)
    # The filler keys are unique: all of them are still there.
    assert len(records) == len(keys) + 20
    # Offsets keep their numbers: the log end did not move, gaps are where updates were.
    low, high = watermarks(b.bootstrap, topic_name)
    assert (low, high) == (0, 420)
    size_after = log_bytes(b, topic_name)
    assert size_after < size_uncompacted / 3, (size_uncompacted, size_after)

    s = scrape(b)
    assert sample(s, "strom_log_cleaner_runs_total") >= 1
    assert sample(s, "strom_log_cleaner_records_removed_total") == 400 - len(keys)
    assert sample(s, "strom_log_cleaner_read_bytes_total") > sample(s, "strom_log_cleaner_written_bytes_total")
    assert sample(s, "strom_log_cleaner_failures_total") == 0
    assert sample(s, "strom_log_cleaner_last_run_duration_seconds") > 0
    assert ("strom_log_cleaner_max_dirty_ratio", frozenset()) in s
    assert sample(s, "strom_log_cleaner_pass_seconds_count") >= 1

    # A second client library reads the cleaned log across its gaps alike.
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KpTopicPartition

    kc = KafkaConsumer(bootstrap_servers=b.bootstrap, enable_auto_commit=False,
                       consumer_timeout_ms=3000, request_timeout_ms=10000)
    try:
        tp = KpTopicPartition(topic_name, 0)
        kc.assign([tp])
        kc.seek_to_beginning(tp)
        got = [(m.offset, m.key, m.value) for m in kc]
    finally:
        kc.close()
    assert got == records


def test_tombstones_go_after_delete_retention_ms(start_broker, topic_name):
    """Kafka keeps a tombstone for `delete.retention.ms` so that a consumer reading the log
    from the start sees the delete; after that a later cleaning removes it."""
    b = start_broker(settings=CLEANER_SETTINGS)
    create_topic(b.bootstrap, topic_name, config={**COMPACT, "delete.retention.ms": "4000"})
    keys = [f"key-{k}".encode() for k in range(5)]
    records = [(keys[i % 5], f"v{i}".encode() * 10) for i in range(50)]
    records += [(keys[0], None), (keys[1], None)]
    delivered = produce_keyed(b.bootstrap, topic_name, records)
    delivered.update(produce_keyed(b.bootstrap, topic_name, filler("a"), per_batch=5))

    def first_pass():
        r = read_all(b.bootstrap, topic_name)
        return compacted(r, delivered, set(keys)) and r

    got = wait_until(first_pass, timeout_s=3)
    assert got, "not cleaned within 3s"
    # The first pass that kept the tombstones started their delete.retention.ms (KIP-534).
    cleaned_at = time.monotonic()
    by_key = {k: (o, v) for o, k, v in got}
    # Young tombstones stay, in place of their keys' values.
    assert by_key[keys[0]][1] is None and by_key[keys[1]][1] is None
    check_latest(got, delivered, latest_by_key(delivered))

    # Once delete.retention.ms has passed, the next cleaning (new dirty data makes one) drops
    # the tombstones.
    time.sleep(max(0.0, 4.5 - (time.monotonic() - cleaned_at)))
    more = [(keys[2 + i % 3], f"w{i}".encode() * 10) for i in range(30)]
    delivered.update(produce_keyed(b.bootstrap, topic_name, more))
    delivered.update(produce_keyed(b.bootstrap, topic_name, filler("b"), per_batch=5))

    def tombstones_gone():
        r = read_all(b.bootstrap, topic_name)
        present = {k for _, k, _ in r}
        return keys[0] not in present and keys[1] not in present and compacted(r, delivered, set(keys)) and r

    got = wait_until(tombstones_gone)
    assert got, f"tombstones still there: {[(o, k, v) for o, k, v in read_all(b.bootstrap, topic_name) if v is None]}"
    check_latest(got, delivered, latest_by_key(delivered))
    assert sorted({k for _, k, _ in got if k in set(keys)}) == keys[2:]


def timestamps(bootstrap, topic):
    """{offset: (key, timestamp)} of partition 0 as librdkafka and kafka-python read them (both
    must agree)."""
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KpTopicPartition

    c = consumer(bootstrap, **{"enable.partition.eof": True})
    rdkafka = {}
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    break
                raise AssertionError(f"consumer error: {m.error()}")
            rdkafka[m.offset()] = (m.key(), m.timestamp()[1])
    finally:
        c.close()
    kc = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                       consumer_timeout_ms=3000, request_timeout_ms=10000)
    try:
        tp = KpTopicPartition(topic, 0)
        kc.assign([tp])
        kc.seek_to_beginning(tp)
        python = {m.offset: (m.key, m.timestamp) for m in kc}
    finally:
        kc.close()
    assert rdkafka == python
    return rdkafka


def test_a_tombstone_with_an_old_timestamp_stays_delete_retention_ms_after_its_first_cleaning(
        start_broker, topic_name):
    """KIP-534: a tombstone's delete.retention.ms starts when a cleaning first keeps it (the
    cleaner stamps the batch with its delete horizon), not at the timestamp the producer gave
    it. Deletes produced with an hour-old timestamp survive the first cleaning and a second
    one soon after, so a consumer reading from the start within delete.retention.ms sees
    them, and go at the first cleaning after that. Both clients read every record with the
    timestamp it was produced with, across the restamped batches."""
    b = start_http_broker(start_broker, settings=CLEANER_SETTINGS)
    retention_s = 10
    create_topic(b.bootstrap, topic_name, config={**COMPACT, "delete.retention.ms": str(retention_s * 1000)})
    keys = [f"key-{k}".encode() for k in range(4)]
    delivered = produce_keyed(b.bootstrap, topic_name, [(keys[i % 4], f"v{i}".encode() * 10) for i in range(40)])
    hour_ago = int(time.time() * 1000) - 3_600_000
    p = producer(b.bootstrap, **{"linger.ms": 0})
    old = {}
    for i, (key, value) in enumerate([(keys[0], None), (keys[1], None), (keys[2], b"old-but-newest")]):
        p.produce(topic_name, key=key, value=value, partition=0, timestamp=hour_ago + i,
                  on_delivery=lambda err, msg: old.__setitem__(msg.offset(), (msg.key(), msg.value())))
    assert p.flush(15) == 0 and len(old) == 3
    delivered.update(old)
    deleted_at = time.monotonic()
    delivered.update(produce_keyed(b.bootstrap, topic_name, filler("a"), per_batch=5))

    def cleaned():
        r = read_all(b.bootstrap, topic_name)
        return compacted(r, delivered, set(keys)) and r

    got = wait_until(cleaned)
    assert got, "not cleaned"
    # The pass that stamped the tombstones ran between deleted_at and now.
    cleaned_at = time.monotonic()
    by_key = {k: (o, v) for o, k, v in got}
    assert keys[0] in by_key and keys[1] in by_key, "hour-old tombstones went at the first cleaning"
    assert by_key[keys[0]][1] is None and by_key[keys[1]][1] is None
    check_latest(got, delivered, latest_by_key(delivered))

    # Another cleaning within delete.retention.ms of the first keeps them.
    runs = sample(scrape(b), "strom_log_cleaner_runs_total")
    delivered.update(produce_keyed(b.bootstrap, topic_name, [(keys[3], b"w" * 10)] + filler("b"), per_batch=5))
    assert wait_until(lambda: sample(scrape(b), "strom_log_cleaner_runs_total") > runs)
    again = read_all(b.bootstrap, topic_name)
    assert time.monotonic() - deleted_at < retention_s, "too slow to check within delete.retention.ms"
    assert {k: v for _, k, v in again if k in (keys[0], keys[1])} == {keys[0]: None, keys[1]: None}
    stamped = timestamps(b.bootstrap, topic_name)
    assert {o: stamped[o] for o in old} == {o: (k, hour_ago + i) for i, (o, (k, _)) in enumerate(sorted(old.items()))}

    # The first cleaning after delete.retention.ms removes them.
    time.sleep(max(0.0, retention_s + 0.5 - (time.monotonic() - cleaned_at)))
    delivered.update(produce_keyed(b.bootstrap, topic_name, [(keys[3], b"x" * 10)] + filler("c"), per_batch=5))

    def tombstones_gone():
        r = read_all(b.bootstrap, topic_name)
        present = {k for _, k, _ in r}
        return keys[0] not in present and keys[1] not in present and compacted(r, delivered, set(keys)) and r

    got = wait_until(tombstones_gone)
    assert got, f"tombstones still there: {[(o, k) for o, k, v in read_all(b.bootstrap, topic_name) if v is None]}"
    check_latest(got, delivered, latest_by_key(delivered))
    stamped = timestamps(b.bootstrap, topic_name)
    key2 = by_key[keys[2]][0]
    assert stamped[key2] == (keys[2], hour_ago + 2)


def test_aborted_transactions_are_removed_and_never_win_a_key(start_broker, topic_name):
    """Kafka's cleaner leaves records of aborted transactions out of the key map and out of
    the cleaned log: an aborted update never replaces the committed value."""
    b = start_broker(settings=CLEANER_SETTINGS)
    create_topic(b.bootstrap, topic_name, config=COMPACT)
    keys = [f"key-{k}".encode() for k in range(4)]
    p = Producer({"bootstrap.servers": b.bootstrap, "transactional.id": f"tx-{topic_name}",
                  "linger.ms": 0, **helpers.FAST_CLIENT})
    p.init_transactions(15)
    for round_, commit in enumerate([True, False, True, False]):
        p.begin_transaction()
        for i in range(20):
            p.produce(topic_name, key=keys[i % 4], value=f"r{round_}-{i}-{commit}".encode(), partition=0)
        p.flush(15)
        if commit:
            p.commit_transaction(15)
        else:
            p.abort_transaction(15)
    committed_latest = {keys[i % 4]: f"r2-{i}-True".encode() for i in range(20)}
    produce_keyed(b.bootstrap, topic_name, filler("a"), per_batch=5)

    # The last transaction was aborted: were its records kept, read_uncommitted would see
    # them as the newest values.
    def cleaned():
        r = [x for x in read_all(b.bootstrap, topic_name) if x[1] in set(keys)]
        return len(r) == len(keys) and r

    got = wait_until(cleaned)
    assert got, f"not compacted: {len([x for x in read_all(b.bootstrap, topic_name) if x[1] in set(keys)])} keyed records"
    assert {k: v for _, k, v in got} == committed_latest
    committed = [x for x in read_all(b.bootstrap, topic_name, "read_committed") if x[1] in set(keys)]
    assert committed == got


def test_topic_configs_altered_at_runtime_take_effect(start_broker, topic_name):
    """min.compaction.lag.ms holds records back from the cleaner; lowering it, or turning a
    `delete` topic into a compacted one, with IncrementalAlterConfigs applies at the next
    round."""
    b = start_http_broker(start_broker, settings=CLEANER_SETTINGS)
    lagged, plain = topic_name + "-lag", topic_name + "-del"
    create_topic(b.bootstrap, lagged, config={**COMPACT, "min.compaction.lag.ms": "3600000"})
    create_topic(b.bootstrap, plain, config={"cleanup.policy": "delete", "segment.bytes": "1024"})
    keys = [f"key-{k}".encode() for k in range(4)]
    updates = [(keys[i % 4], f"value-{i:03d}".encode() * 3) for i in range(100)]
    delivered = {}
    for t in (lagged, plain):
        delivered[t] = produce_keyed(b.bootstrap, t, updates)
        delivered[t].update(produce_keyed(b.bootstrap, t, filler("a"), per_batch=5))
    time.sleep(1.5)
    for t in (lagged, plain):
        assert len(read_all(b.bootstrap, t)) == 120, f"{t} was cleaned too early"
    assert sample(scrape(b), "strom_log_cleaner_runs_total") == 0

    ops = [
        ConfigResource(ConfigResource.Type.TOPIC, lagged, incremental_configs=[
            ConfigEntry("min.compaction.lag.ms", "0", incremental_operation=AlterConfigOpType.SET)]),
        ConfigResource(ConfigResource.Type.TOPIC, plain, incremental_configs=[
            ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.SET),
            ConfigEntry("min.cleanable.dirty.ratio", "0.01", incremental_operation=AlterConfigOpType.SET)]),
    ]
    for f in helpers.admin(b.bootstrap).incremental_alter_configs(ops).values():
        f.result(timeout=15)

    for t in (lagged, plain):
        got = wait_until(lambda: (r := read_all(b.bootstrap, t)) and len(r) == len(keys) + 20 and r)
        assert got, f"{t} not compacted after the alter"
        check_latest(got, delivered[t], latest_by_key(delivered[t]))


def test_cleaner_disabled_keeps_every_record(start_broker, topic_name):
    b = start_broker(settings={**CLEANER_SETTINGS, "log.cleaner.enable": "false"})
    create_topic(b.bootstrap, topic_name, config=COMPACT)
    updates = [(b"k", f"v{i}".encode() * 10) for i in range(60)]
    produce_keyed(b.bootstrap, topic_name, updates + filler("a"), per_batch=5)
    time.sleep(1.5)
    assert len(read_all(b.bootstrap, topic_name)) == 80


def test_kill9_while_cleaning_loses_and_duplicates_nothing(start_broker, topic_name):
    """Rounds of updates, each followed by SIGKILL at a random moment while the cleaner is
    busy with them (the .cleaned/.swap files of an interrupted swap are finished or dropped
    at the next start); in the end each key has exactly its newest value at its offset."""
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    print(f"seed {seed}")
    b = start_broker(settings=CLEANER_SETTINGS)
    create_topic(b.bootstrap, topic_name, config=COMPACT)
    keys = [f"key-{k:02d}".encode() for k in range(12)]
    delivered = {}
    for round_ in range(5):
        updates = [(keys[i % 12], f"r{round_}-{i:03d}-".encode() + b"y" * 30) for i in range(240)]
        # acks=all: a delivered record was fsynced, so a kill may not lose it.
        delivered.update(produce_keyed(b.bootstrap, topic_name, updates, per_batch=12))
        delivered.update(produce_keyed(b.bootstrap, topic_name, filler(round_, 12), per_batch=5))
        time.sleep(rng.uniform(0.0, 0.4))
        b.kill9()
    latest = latest_by_key(delivered)

    def settled():
        r = read_all(b.bootstrap, topic_name)
        return compacted(r, delivered, set(keys)) and r

    got = wait_until(settled)
    assert got, f"seed {seed}: keys still repeat"
    check_latest(got, delivered, latest)
    assert sorted(k for _, k, _ in got if k in set(keys)) == sorted(keys), f"seed {seed}"
    assert watermarks(b.bootstrap, topic_name)[1] == max(delivered) + 1
    d = b.partition_dir(topic_name)
    assert not [f for f in os.listdir(d) if f.endswith(".swap")], os.listdir(d)
