"""kafka-python's admin client and aiokafka, as their users drive them. kafka-python's
KafkaAdminClient once tripped on Sluice's authorized-operations fields."""

import asyncio

from kafka.admin import KafkaAdminClient

from clients import create_topic


def test_kafka_python_admin_lists_and_describes_topics(broker):
    create_topic(broker, "described", partitions=2)
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10_000)
    try:
        assert "described" in admin.list_topics()
        (topic,) = admin.describe_topics(["described"])
        assert topic["error_code"] == 0
        assert sorted(p["partition_index"] for p in topic["partitions"]) == [0, 1]
        # Without an authorizer every operation a topic supports is allowed, as Kafka answers.
        operations = {str(op).rsplit(".", 1)[-1] for op in topic["authorized_operations"]}
        assert {"READ", "WRITE", "DESCRIBE", "DELETE", "ALTER", "DESCRIBE_CONFIGS"} <= operations, operations
        cluster = admin.describe_cluster()
        assert len(cluster["brokers"]) == 1, cluster
    finally:
        admin.close()


def test_aiokafka_sees_partitions_and_round_trips_through_a_group(broker):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    create_topic(broker, "aio", partitions=2)

    async def scenario():
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
        await producer.start()
        try:
            for i in range(100):
                await producer.send_and_wait("aio", key=b"k%d" % (i % 7), value=b"v%d" % i)
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer("aio", bootstrap_servers=broker.bootstrap, group_id="aio-group",
                                    auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        try:
            # aiokafka bootstraps with Metadata v0 and an empty topic list, which means every topic.
            assert consumer.partitions_for_topic("aio") == {0, 1}
            assert consumer._client.cluster.available_partitions_for_topic("aio") == {0, 1}
            seen = []
            while len(seen) < 100:
                batches = await asyncio.wait_for(consumer.getmany(timeout_ms=1000), timeout=30)
                for records in batches.values():
                    seen += [r.value for r in records]
            await consumer.commit()
        finally:
            await consumer.stop()
        assert sorted(seen) == sorted(b"v%d" % i for i in range(100))
        again = AIOKafkaConsumer("aio", bootstrap_servers=broker.bootstrap, group_id="aio-group",
                                 auto_offset_reset="earliest")
        await again.start()
        try:
            leftover = await again.getmany(timeout_ms=2000)
            assert not any(leftover.values()), "the group resumes after what it committed"
        finally:
            await again.stop()

    asyncio.run(scenario())

