// kafkajs against Sluice: create a topic, produce idempotently with keys and
// headers, read offsets back. Prints one JSON line for the pytest wrapper.
const { Kafka, logLevel } = require('kafkajs');

async function main() {
  const [bootstrap, topic] = process.argv.slice(2);
  const kafka = new Kafka({ brokers: [bootstrap], logLevel: logLevel.ERROR });
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 3 }], waitForLeaders: true });
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const messages = Array.from({ length: 300 }, (_, i) => ({ key: `k${i % 7}`, value: `v${i}`, headers: { n: `${i}` } }));
  const acks = await producer.send({ topic, messages });
  await producer.disconnect();
  const offsets = await admin.fetchTopicOffsets(topic);
  await admin.disconnect();
  console.log(JSON.stringify({ acks, offsets }));
}

main().catch((e) => { console.error(e); process.exit(1); });
