// KafkaJS transactional producer against a Strom broker, driven by tests/test_kafkajs.py:
//   node transactions.js BOOTSTRAP TOPIC GROUP
// Commits one transaction, aborts one, then commits one that also sends offsets of GROUP
// (sendOffsets, KIP-98's AddOffsetsToTxn + TxnOffsetCommit). Then reads TOPIC with a
// read_committed consumer (KafkaJS's default) and a read_uncommitted one, and fetches the
// group's committed offsets. Prints one JSON line with what it saw; exits non-zero on error.
'use strict';
const { client, deadline, run } = require('./common');

const [bootstrap, topic, group] = process.argv.slice(2);
const kafka = client(bootstrap, 'strom-kafkajs-txn-test');

// Every message of the topic's 2 partitions up to their high watermarks.
async function readAll(readUncommitted, expected) {
  const consumer = kafka.consumer({ groupId: `${group}-reader-${readUncommitted}`, readUncommitted,
                                    sessionTimeout: 6000, heartbeatInterval: 500 });
  const seen = [];
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  let finish;
  const done = new Promise((resolve) => { finish = resolve; });
  await consumer.run({
    eachMessage: async ({ partition, message }) => {
      seen.push({ partition, offset: Number(message.offset), key: message.key && message.key.toString(),
                  value: message.value.toString() });
      if (seen.length >= expected) finish();
    },
  });
  await Promise.race([done, deadline(30000, `read ${expected} (readUncommitted=${readUncommitted})`)]);
  // A little longer, so that a record that should not be there would be seen too.
  await new Promise((resolve) => setTimeout(resolve, 1000));
  await consumer.disconnect();
  return seen;
}

async function main() {
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 2 }], waitForLeaders: true });

  const producer = kafka.producer({ transactionalId: `${group}-tid`, idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const batch = (tag) => [0, 1, 2, 3].map((i) => ({ key: `${tag}-k${i}`, value: `${tag}-${i}`, partition: i % 2 }));

  let txn = await producer.transaction();
  await txn.send({ topic, messages: batch('one') });
  await txn.commit();

  txn = await producer.transaction();
  await txn.send({ topic, messages: batch('aborted') });
  await txn.abort();

  txn = await producer.transaction();
  await txn.send({ topic, messages: batch('three') });
  await txn.sendOffsets({ consumerGroupId: group, topics: [{ topic, partitions: [{ partition: 0, offset: '7' }] }] });
  await txn.commit();
  await producer.disconnect();

  const committed = await readAll(false, 8);
  const uncommitted = await readAll(true, 12);
  const offsets = await admin.fetchOffsets({ groupId: group, topics: [topic] });
  await admin.disconnect();
  console.log(JSON.stringify({ committed, uncommitted, offsets }));
}

run(main);
