"""Transactions under ACLs, against the real binary: what Kafka requires of a transactional
producer (WRITE on its TRANSACTIONAL_ID, WRITE on each topic, READ on the group whose offsets
it commits) and what a principal may see of other transactions (DESCRIBE). Driven by
confluent-kafka's transactional producer and kafka-python's admin client over SASL.

The broker and its certificates come from the fixtures of test_security.py.
"""

import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AclOperation, ResourcePatternType, ResourceType
from kafka import KafkaAdminClient
from kafka.errors import TransactionalIdAuthorizationFailedError

import helpers
from test_security import (  # noqa: F401 (fixtures)
    add_user,
    allow,
    certs,
    kafka_python_sasl,
    sasl_conf,
    secure_broker,
)

pytestmark = pytest.mark.timeout(120)


def txn_conf(broker, certs, user, password, tid):
    return {
        **sasl_conf(broker, certs, "SCRAM-SHA-512", user, password),
        "transactional.id": tid,
        "linger.ms": 5,
    }


def error_code(excinfo):
    return excinfo.value.args[0].code()


def committed_values(broker, topic, timeout_s=10):
    """Everything committed to partition 0, read by the admin (a super user) up to the
    last stable offset."""
    c = helpers.consumer(broker.bootstrap, **{"isolation.level": "read_committed"})
    try:
        tp = TopicPartition(topic, 0, 0)
        c.assign([tp])
        _, stable = c.get_watermark_offsets(tp, timeout=10, cached=False)
        out, deadline = [], time.monotonic() + timeout_s
        while c.position([tp])[0].offset < stable and time.monotonic() < deadline:
            out += [m.value() for m in c.consume(num_messages=100, timeout=0.2) if not m.error()]
        return out
    finally:
        c.close()


def test_transactional_id_write_is_required_and_enough_with_topic_write(secure_broker, certs):
    add_user(secure_broker, "tina", "tina-pw")
    helpers.create_topic(secure_broker.bootstrap, "tx-out")
    allow(secure_broker, "User:tina", ResourceType.TOPIC, "tx-out", AclOperation.WRITE)

    # No ACL on the transactional id: the coordinator lookup itself is refused.
    p = Producer(txn_conf(secure_broker, certs, "tina", "tina-pw", "tina-a"))
    with pytest.raises(KafkaException) as e:
        p.init_transactions(15)
    assert error_code(e) == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED

    # DESCRIBE finds the coordinator, but InitProducerId needs WRITE.
    allow(secure_broker, "User:tina", ResourceType.TRANSACTIONAL_ID, "tina-b", AclOperation.DESCRIBE)
    p = Producer(txn_conf(secure_broker, certs, "tina", "tina-pw", "tina-b"))
    with pytest.raises(KafkaException) as e:
        p.init_transactions(15)
    assert error_code(e) == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED

    allow(secure_broker, "User:tina", ResourceType.TRANSACTIONAL_ID, "tina-", AclOperation.WRITE,
          ResourcePatternType.PREFIXED)
    p = Producer(txn_conf(secure_broker, certs, "tina", "tina-pw", "tina-c"))
    p.init_transactions(15)
    p.begin_transaction()
    p.produce("tx-out", value=b"committed")
    p.commit_transaction(15)
    p.begin_transaction()
    p.produce("tx-out", value=b"aborted")
    p.abort_transaction(15)
    assert committed_values(secure_broker, "tx-out") == [b"committed"]


def test_a_topic_without_write_fails_the_whole_transaction(secure_broker, certs):
    add_user(secure_broker, "tina", "tina-pw")
    helpers.create_topic(secure_broker.bootstrap, "tx-out")
    helpers.create_topic(secure_broker.bootstrap, "tx-ro")
    allow(secure_broker, "User:tina", ResourceType.TRANSACTIONAL_ID, "tina-", AclOperation.WRITE,
          ResourcePatternType.PREFIXED)
    allow(secure_broker, "User:tina", ResourceType.TOPIC, "tx-out", AclOperation.WRITE)
    # DESCRIBE lets the client see the topic, so the refusal comes from AddPartitionsToTxn.
    allow(secure_broker, "User:tina", ResourceType.TOPIC, "tx-ro", AclOperation.DESCRIBE)
    p = Producer(txn_conf(secure_broker, certs, "tina", "tina-pw", "tina-ro"))
    p.init_transactions(15)
    p.begin_transaction()
    p.produce("tx-out", value=b"in the transaction")
    assert p.flush(10) == 0  # tx-out's partition is part of the transaction now
    reports = []
    p.produce("tx-ro", value=b"refused", on_delivery=lambda err, msg: reports.append(err))
    with pytest.raises(KafkaException) as e:
        p.commit_transaction(15)
    assert e.value.args[0].txn_requires_abort(), e.value
    assert e.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, e.value
    p.abort_transaction(15)
    assert reports and reports[0] is not None, reports
    assert committed_values(secure_broker, "tx-out") == []
    assert committed_values(secure_broker, "tx-ro") == []


def test_offsets_in_a_transaction_need_read_on_the_group(secure_broker, certs):
    add_user(secure_broker, "tina", "tina-pw")
    helpers.create_topic(secure_broker.bootstrap, "tx-out")
    allow(secure_broker, "User:tina", ResourceType.TOPIC, "tx-", AclOperation.ALL, ResourcePatternType.PREFIXED)
    allow(secure_broker, "User:tina", ResourceType.TRANSACTIONAL_ID, "tina-", AclOperation.WRITE,
          ResourcePatternType.PREFIXED)
    conf = txn_conf(secure_broker, certs, "tina", "tina-pw", "tina-ctp")
    group_conf = {**sasl_conf(secure_broker, certs, "SCRAM-SHA-512", "tina", "tina-pw"), "group.id": "tina-group"}
    metadata = Consumer(group_conf).consumer_group_metadata()
    offsets = [TopicPartition("tx-out", 0, 1)]

    p = Producer(conf)
    p.init_transactions(15)
    p.begin_transaction()
    p.produce("tx-out", value=b"first")
    with pytest.raises(KafkaException) as e:
        p.send_offsets_to_transaction(offsets, metadata, 15)
    assert error_code(e) == KafkaError.GROUP_AUTHORIZATION_FAILED
    p.abort_transaction(15)

    allow(secure_broker, "User:tina", ResourceType.GROUP, "tina-group", AclOperation.READ)
    p.begin_transaction()
    p.produce("tx-out", value=b"second")
    p.send_offsets_to_transaction(offsets, metadata, 15)
    p.commit_transaction(15)
    admin_view = helpers.consumer(secure_broker.bootstrap, **{"group.id": "tina-group"})
    try:
        assert admin_view.committed([TopicPartition("tx-out", 0)], timeout=10)[0].offset == 1
    finally:
        admin_view.close()
    assert committed_values(secure_broker, "tx-out") == [b"second"]


def test_other_principals_transactions_are_hidden(secure_broker, certs):
    add_user(secure_broker, "tina", "tina-pw")
    helpers.create_topic(secure_broker.bootstrap, "tx-out")
    allow(secure_broker, "User:tina", ResourceType.TOPIC, "tx-out", AclOperation.WRITE)
    allow(secure_broker, "User:tina", ResourceType.TRANSACTIONAL_ID, "tina-", AclOperation.WRITE,
          ResourcePatternType.PREFIXED)
    for conf in (txn_conf(secure_broker, certs, "tina", "tina-pw", "tina-seen"),
                 {"bootstrap.servers": secure_broker.bootstrap, "transactional.id": "admin-hidden"}):
        p = Producer(conf)
        p.init_transactions(15)
        p.begin_transaction()
        p.produce("tx-out", value=b"v")
        p.commit_transaction(15)

    kp = KafkaAdminClient(**kafka_python_sasl(secure_broker, "tina", "tina-pw", "SCRAM-SHA-512"))
    try:
        listed = [t.transactional_id for ts in kp.list_transactions().values() for t in ts]
        assert listed == ["tina-seen"]
        assert set(kp.describe_transactions(["tina-seen"])) == {"tina-seen"}
        with pytest.raises(TransactionalIdAuthorizationFailedError):
            kp.describe_transactions(["admin-hidden"])
    finally:
        kp.close()
