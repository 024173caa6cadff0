// A kafkajs consumer-group member for tests/test_groups_clients.py. Prints one
// JSON line per assignment ({"assigned": [...]}) and per message
// ({"partition", "value"}); leaves the group cleanly when stdin closes.
const { Kafka, logLevel, PartitionAssigners } = require('kafkajs');

// kafkajs names its round-robin assignor "RoundRobinAssigner"; the other clients
// call the same (standard consumer protocol) assignment "roundrobin".
const roundRobin = (config) => ({ ...PartitionAssigners.roundRobin(config), name: 'roundrobin' });

async function main() {
  const [bootstrap, groupId, topic] = process.argv.slice(2);
  const kafka = new Kafka({ brokers: [bootstrap], logLevel: logLevel.ERROR });
  const consumer = kafka.consumer({ groupId, sessionTimeout: 6000, heartbeatInterval: 500, rebalanceTimeout: 10000,
    partitionAssigners: [roundRobin] });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  consumer.on(consumer.events.GROUP_JOIN, (e) => {
    console.log(JSON.stringify({ assigned: e.payload.memberAssignment[topic] || [] }));
  });
  await consumer.run({
    eachMessage: async ({ partition, message }) => {
      console.log(JSON.stringify({ partition, value: message.value.toString() }));
    },
  });
  process.stdin.on('end', async () => {
    await consumer.disconnect();
    process.exit(0);
  });
  process.stdin.resume();
}

main().catch((e) => { console.error(e); process.exit(1); });
