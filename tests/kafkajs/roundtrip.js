// KafkaJS round trip against a Strom broker, driven by tests/test_kafkajs.py:
//   node roundtrip.js BOOTSTRAP TOPIC GROUP
// Produces 30 messages over 3 partitions, consumes them in a group with commits, then checks
// that a second consumer of the group sees only a message produced after the commit.
// Prints one JSON line with what it saw; exits non-zero on any error.
'use strict';
const { client, deadline, run } = require('./common');

const [bootstrap, topic, group] = process.argv.slice(2);
const kafka = client(bootstrap, 'strom-kafkajs-test');

async function consumeN(n, what) {
  const consumer = kafka.consumer({ groupId: group, sessionTimeout: 6000, heartbeatInterval: 500 });
  const seen = [];
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  let finish;
  const done = new Promise((resolve) => { finish = resolve; });
  await consumer.run({
    autoCommit: false,
    eachMessage: async ({ partition, message }) => {
      seen.push({ partition, offset: Number(message.offset), key: message.key && message.key.toString(),
                  value: message.value.toString() });
      await consumer.commitOffsets([{ topic, partition, offset: (BigInt(message.offset) + 1n).toString() }]);
      if (seen.length >= n) finish();
    },
  });
  await Promise.race([done, deadline(30000, what)]);
  await consumer.disconnect();
  return seen;
}

async function main() {
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 3 }], waitForLeaders: true });
  await admin.disconnect();

  const producer = kafka.producer();
  await producer.connect();
  const messages = [];
  for (let i = 0; i < 30; i++) messages.push({ key: `k${i}`, value: `js-${i}`, partition: i % 3 });
  const sent = await producer.send({ topic, messages });
  await producer.disconnect();

  const first = await consumeN(30, 'first consumer');

  const producer2 = kafka.producer();
  await producer2.connect();
  await producer2.send({ topic, messages: [{ value: 'after-commit', partition: 1 }] });
  await producer2.disconnect();

  const second = await consumeN(1, 'second consumer');
  console.log(JSON.stringify({ sent, first, second }));
}

run(main);
