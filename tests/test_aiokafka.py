"""aiokafka (asyncio, its own protocol implementation): produce, consume in a group, commit,
and a second consumer of the group resumes after the commit."""

import asyncio
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from helpers import create_topic


async def consume_until(consumer, want, timeout_s):
    got = []

    async def loop():
        while len(got) < want:
            batches = await consumer.getmany(timeout_ms=200, max_records=500)
            for records in batches.values():
                got.extend(records)

    try:
        await asyncio.wait_for(loop(), timeout_s)
    except asyncio.TimeoutError:
        pass
    return got


async def round_trip(bootstrap, topic):
    group = f"aio-{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    await producer.start()
    try:
        metas = [await producer.send_and_wait(topic, value=f"aio-{i}".encode(), key=b"k", partition=i % 2)
                 for i in range(40)]
        assert sorted((m.partition, m.offset) for m in metas) == sorted((p, o) for p in (0, 1) for o in range(20))
    finally:
        await producer.stop()

    def new_consumer():
        return AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest",
                                enable_auto_commit=False, session_timeout_ms=6000, heartbeat_interval_ms=500,
                                request_timeout_ms=15000)

    consumer = new_consumer()
    await consumer.start()
    try:
        got = await consume_until(consumer, 40, 30)
        assert sorted(r.value for r in got) == sorted(f"aio-{i}".encode() for i in range(40))
        assert all(r.key == b"k" for r in got)
        await consumer.commit()
    finally:
        await consumer.stop()

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value=b"after-commit", partition=0)
    finally:
        await producer.stop()

    consumer = new_consumer()
    await consumer.start()
    try:
        got = await consume_until(consumer, 1, 30)
        assert [r.value for r in got] == [b"after-commit"], "the group must resume after its commit"
        assert got[0].offset == 20
    finally:
        await consumer.stop()


def test_aiokafka_round_trip_with_group_commit(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=2)
    asyncio.run(round_trip(broker.bootstrap, topic_name))
