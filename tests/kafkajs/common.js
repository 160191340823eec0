// What the KafkaJS test scripts share: a client for the broker under test and a deadline.
'use strict';
const { Kafka, logLevel } = require('kafkajs');

// `options` adds to the client's settings (e.g. `ssl` and `sasl` for a secure listener).
function client(bootstrap, clientId, options = {}) {
  return new Kafka({
    clientId,
    brokers: [bootstrap],
    logLevel: logLevel.ERROR,
    retry: { retries: 5, initialRetryTime: 100 },
    ...options,
  });
}

function deadline(ms, what) {
  return new Promise((_, reject) => setTimeout(() => reject(new Error(`timed out: ${what}`)), ms).unref());
}

// Runs `main` and exits 0, or prints the error and exits 1.
function run(main) {
  main().then(() => process.exit(0), (err) => {
    console.error(err && err.stack ? err.stack : err);
    process.exit(1);
  });
}

module.exports = { client, deadline, run };
