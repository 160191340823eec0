"""aiokafka (asyncio, its own protocol implementation): produce, consume in a group, commit,
and a second consumer of the group resumes after the commit; its transactional producer's
consume-transform-produce loop, read back read_committed."""

import asyncio
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

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


async def transactional_copy(bootstrap, src, dst):
    """aiokafka's consume-transform-produce: each batch's output and input offsets in one
    transaction, every other transaction aborted (and its batch read again)."""
    group = f"aio-txn-{uuid.uuid4().hex[:8]}"
    consumer = AIOKafkaConsumer(src, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest",
                                enable_auto_commit=False, isolation_level="read_committed",
                                session_timeout_ms=6000, heartbeat_interval_ms=500)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"aio-tx-{uuid.uuid4().hex[:6]}")
    await consumer.start()
    await producer.start()
    copied, aborted, rounds = 0, 0, 0
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 40
        while copied < 60 and loop.time() < deadline:
            batches = await consumer.getmany(timeout_ms=300, max_records=10)
            records = [r for rs in batches.values() for r in rs]
            if not records:
                continue
            rounds += 1
            offsets = {tp: rs[-1].offset + 1 for tp, rs in batches.items() if rs}
            abort = rounds % 2 == 0
            await producer.begin_transaction()
            for r in records:
                await producer.send(dst, key=r.key, value=r.value.replace(b"in-", b"out-"), partition=r.partition)
            await producer.send_offsets_to_transaction(offsets, group)
            if abort:
                await producer.abort_transaction()
                aborted += 1
                for tp, rs in batches.items():
                    consumer.seek(tp, rs[0].offset)
            else:
                await producer.commit_transaction()
                copied += len(records)
    finally:
        await producer.stop()
        await consumer.stop()
    return group, copied, aborted


def test_aiokafka_transactional_copy_is_exactly_once(broker, topic_name):
    src, dst = f"{topic_name}-in", f"{topic_name}-out"
    create_topic(broker.bootstrap, src, partitions=2)
    create_topic(broker.bootstrap, dst, partitions=2)

    async def produce_input():
        p = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
        await p.start()
        try:
            for i in range(60):
                await p.send_and_wait(src, key=f"k{i}".encode(), value=f"in-{i}".encode(), partition=i % 2)
        finally:
            await p.stop()

    asyncio.run(produce_input())
    group, copied, aborted = asyncio.run(transactional_copy(broker.bootstrap, src, dst))
    assert copied == 60 and aborted > 0, (copied, aborted)

    async def read_output(isolation):
        c = AIOKafkaConsumer(dst, bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, isolation_level=isolation)
        await c.start()
        try:
            return await consume_until(c, 60 if isolation == "read_committed" else 10_000, 8)
        finally:
            await c.stop()

    committed = asyncio.run(read_output("read_committed"))
    # Exactly once: every input record once, with its key, in order within its partition.
    assert sorted(r.value for r in committed) == sorted(f"out-{i}".encode() for i in range(60))
    for p in (0, 1):
        keys = [r.key for r in committed if r.partition == p]
        assert keys == [f"k{i}".encode() for i in range(p, 60, 2)], (p, keys)
    # The aborted copies are in the log, seen only by read_uncommitted.
    uncommitted = asyncio.run(read_output("read_uncommitted"))
    assert len(uncommitted) > 60

    async def committed_offsets():
        c = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group, enable_auto_commit=False)
        await c.start()
        try:
            return [await c.committed(TopicPartition(src, p)) for p in (0, 1)]
        finally:
            await c.stop()

    assert asyncio.run(committed_offsets()) == [30, 30]
