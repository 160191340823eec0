// KafkaJS over SASL_SSL with SCRAM against a Strom broker, driven by
// tests/test_security_clients.py:
//   node secure.js BOOTSTRAP CA_PEM MECHANISM USER PASSWORD TOPIC LOCKED_TOPIC GROUP COUNT
// Produces COUNT keyed messages to TOPIC (one partition), reads them back in GROUP, then
// records how a send to LOCKED_TOPIC (no ACL) and a login with a wrong password fail.
// Prints one JSON line with what it saw; exits non-zero on any unexpected error.
'use strict';
const fs = require('fs');
const { client, deadline, run } = require('./common');

const [bootstrap, caPem, mechanism, username, password, topic, locked, group, countArg] = process.argv.slice(2);
const count = Number(countArg);
const ssl = { ca: [fs.readFileSync(caPem, 'utf-8')] };
const secure = (pw) => client(bootstrap, 'strom-kafkajs-secure', {
  ssl, sasl: { mechanism, username, password: pw }, connectionTimeout: 10000, authenticationTimeout: 10000,
});
const kafka = secure(password);

// The error's class name and Kafka error type, which is what a user's code branches on.
const described = (e) => ({ name: e.name, type: e.type });

async function consume() {
  const consumer = kafka.consumer({ groupId: group, sessionTimeout: 6000, heartbeatInterval: 500 });
  const seen = [];
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  let finish;
  const done = new Promise((resolve) => { finish = resolve; });
  await consumer.run({
    eachMessage: async ({ message }) => {
      seen.push({ offset: Number(message.offset), key: message.key.toString(), value: message.value.toString() });
      if (seen.length >= count) finish();
    },
  });
  await Promise.race([done, deadline(30000, 'consume')]);
  await consumer.disconnect();
  return seen;
}

async function main() {
  const producer = kafka.producer({ retry: { retries: 0 } });
  await producer.connect();
  const messages = [];
  for (let i = 0; i < count; i++) messages.push({ key: `k${i}`, value: `js-${i}` });
  const sent = await producer.send({ topic, messages });
  let denied = null;
  try {
    await producer.send({ topic: locked, messages: [{ key: 'k', value: 'v' }] });
  } catch (e) {
    denied = described(e.cause || e);
  }
  await producer.disconnect();

  const consumed = await consume();

  let wrongPassword = null;
  const intruder = secure('wrong').producer({ retry: { retries: 0 } });
  try {
    await intruder.connect();
  } catch (e) {
    wrongPassword = described(e);
  }
  console.log(JSON.stringify({ sent, consumed, denied, wrong_password: wrongPassword }));
}

run(main);
