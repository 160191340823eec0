"""The kill -9 loop: the real broker is killed with SIGKILL at random moments, 100 times (set
STROM_KILL_LOOP_KILLS to change), under mixed load (an idempotent acks=all producer and an
acks=1 producer without retries) with tiny segments rolling all the time, retention deleting
old segments of a second topic, and the recovery checkpoint written every 100 ms. At the end
every acknowledged record is read back exactly once at the offset it was acknowledged with,
and no offset holds anything else.
"""

import os
import random
import time

from confluent_kafka import Producer

from helpers import FAST_CLIENT, consume_partitions, create_topic, watermarks

KILLS = int(os.environ.get("STROM_KILL_LOOP_KILLS", "100"))
SEED = int(os.environ.get("STROM_KILL_LOOP_SEED", str(random.randrange(1 << 30))))


class Acked:
    """Delivery reports: acknowledged (topic, partition, offset) -> value."""

    def __init__(self):
        self.records = {}

    def __call__(self, err, msg):
        if err is None:
            key = (msg.topic(), msg.partition(), msg.offset())
            assert key not in self.records, f"offset acknowledged twice: {key}"
            self.records[key] = msg.value()


def make_producers(bootstrap):
    # log_level 0: the refused connections of every kill are expected, not news.
    common = {"bootstrap.servers": bootstrap, "linger.ms": 2, "message.timeout.ms": 5000, "log_level": 0,
              **FAST_CLIENT}
    durable = Producer({**common, "enable.idempotence": True, "acks": "all"})
    fast = Producer({**common, "acks": "1", "retries": 0})
    return durable, fast


def run_until_killed(broker, topics, acked, rng, counter):
    durable, fast = make_producers(broker.bootstrap)
    kill_at = time.monotonic() + rng.uniform(0.05, 0.4)
    while time.monotonic() < kill_at:
        for p, name in ((durable, "d"), (fast, "f")):
            for topic in topics:
                counter[0] += 1
                value = f"{name}-{counter[0]}-".encode() + b"x" * rng.randrange(10, 200)
                p.produce(topic, value=value, partition=rng.randrange(2) if topic == topics[0] else 0,
                          on_delivery=acked)
            p.poll(0)
        time.sleep(0.002)
    broker.kill9_only()
    # Collect the reports of answers that arrived before the kill; the rest are unacknowledged.
    for p in (durable, fast):
        p.poll(0.05)
        p.purge(in_queue=True, in_flight=True)
        p.flush(1)


def test_kill9_loop_loses_and_duplicates_nothing_acknowledged(start_broker, topic_name):
    print(f"kill loop: {KILLS} kills, seed {SEED} (STROM_KILL_LOOP_SEED reproduces the schedule)")
    rng = random.Random(SEED)
    broker = start_broker(settings={
        "log.retention.check.interval.ms": "200",
        "log.flush.offset.checkpoint.interval.ms": "100",
    })
    kept, retained = topic_name, topic_name + "-retained"
    create_topic(broker.bootstrap, kept, partitions=2, config={"segment.bytes": "4000"})
    create_topic(broker.bootstrap, retained, partitions=1,
                 config={"segment.bytes": "4000", "retention.bytes": "12000"})
    acked = Acked()
    counter = [0]
    for _ in range(KILLS):
        run_until_killed(broker, [kept, retained], acked, rng, counter)
        broker.start()
    assert len(acked.records) > KILLS, "the load must have produced something every round"

    for topic, partitions in ((kept, (0, 1)), (retained, (0,))):
        for partition in partitions:
            low, high = watermarks(broker.bootstrap, topic, partition)
            mine = {o: v for (t, p, o), v in acked.records.items() if t == topic and p == partition}
            got = consume_partitions(broker.bootstrap, topic, [partition], high - low, timeout_s=60,
                                     start=low)
            offsets = [m.offset() for m in got]
            assert offsets == list(range(low, high)), f"{topic}-{partition}: offsets not contiguous"
            stored = {m.offset(): m.value() for m in got}
            if topic == kept:
                assert low == 0, "nothing was deleted from the kept topic"
            lost = [o for o in mine if o >= low and stored.get(o) != mine[o]]
            assert not lost, f"{topic}-{partition}: acknowledged offsets lost or overwritten: {lost[:10]}"
            values = [m.value() for m in got]
            assert len(values) == len(set(values)), f"{topic}-{partition}: a record was stored twice"
    # The partition is online and still takes writes, right after its recovered end.
    end = watermarks(broker.bootstrap, kept, 0)[1]
    p = Producer({"bootstrap.servers": broker.bootstrap, **FAST_CLIENT})
    p.produce(kept, value=b"after", partition=0)
    assert p.flush(10) == 0
    assert watermarks(broker.bootstrap, kept, 0)[1] == end + 1
