"""Run by tests/test_kafka_python2.py inside a virtualenv holding kafka-python 2.0.2.

Produces keyed, gzip-compressed messages with headers to a 2-partition topic, consumes them
back in a consumer group, commits, and prints one JSON line per outcome.
"""
import json
import sys
import time

import kafka
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic


def say(**fields):
    print(json.dumps(fields), flush=True)


def main(bootstrap, topic, group):
    say(event="version", version=kafka.__version__)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="kp2-admin")
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    say(event="created", topics=sorted(t for t in admin.list_topics() if t == topic))

    producer = KafkaProducer(bootstrap_servers=bootstrap, compression_type="gzip", acks="all")
    futures = [producer.send(topic, key=b"k%d" % i, value=b"v%d" % i, headers=[("h", b"%d" % i)],
                             partition=i % 2) for i in range(40)]
    producer.flush()
    offsets = [(f.get(timeout=10).partition, f.get(timeout=10).offset) for f in futures]
    say(event="produced", offsets=offsets)
    producer.close()

    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             consumer_timeout_ms=15000)
    got = []
    deadline = time.time() + 30
    while len(got) < 40 and time.time() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            for r in records:
                got.append([r.partition, r.offset, r.key.decode(), r.value.decode(),
                            [[k, v.decode()] for k, v in r.headers]])
    consumer.commit()
    committed = {p: consumer.committed(TopicPartition(topic, p)) for p in (0, 1)}
    say(event="consumed", records=sorted(got), committed=committed)
    consumer.close()


if __name__ == "__main__":
    main(*sys.argv[1:4])
