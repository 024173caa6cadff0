"""Helpers around the real clients used by the integration tests."""

import subprocess
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import kwire
from conftest import AGAINST


def admin(broker):
    return AdminClient({"bootstrap.servers": broker.bootstrap})


def create_topic(broker, name, partitions=1, config=None):
    client = admin(broker)  # must outlive the future
    futures = client.create_topics([NewTopic(name, partitions, 1, config=config or {})])
    futures[name].result(timeout=15)
    if AGAINST == "kafka":
        # Kafka answers CreateTopics before the partitions have leaders; Sluice answers once
        # they are writable (test_a_created_topic_is_writable_at_once), so only Kafka waits.
        with kwire.Connection(broker.bootstrap) as conn:
            kwire.wait_for(lambda: (found := conn.partitions(name)) and len(found) == partitions
                           and all(leader >= 0 for leader, _, _ in found.values()), what=f"leaders for {name}")


def produce(broker, topic, messages, **conf):
    """Produces (key, value, headers, partition) tuples; returns the delivery reports."""
    reports = []

    def on_delivery(err, msg):
        reports.append((err, msg.partition(), msg.offset()))

    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5, **conf})
    for m in messages:
        key, value, headers, partition = (list(m) + [None] * 4)[:4]
        kwargs = {"key": key, "value": value, "headers": headers, "on_delivery": on_delivery}
        if partition is not None:
            kwargs["partition"] = partition
        p.produce(topic, **kwargs)
        p.poll(0)
    assert p.flush(30) == 0, "undelivered messages"
    errors = [r for r in reports if r[0] is not None]
    assert not errors, errors
    return reports


def consume_until(consumer, done, timeout_s=60):
    """Yields `consumer`'s records (failing on an error) until `done()` holds,
    checked between batches, or `timeout_s` passed; the caller asserts what it got."""
    deadline = time.time() + timeout_s
    while not done() and time.time() < deadline:
        for m in consumer.consume(num_messages=10_000, timeout=0.5):
            assert m.error() is None, m.error()
            yield m


def consume_all(broker, topic, partitions, expected, timeout_s=30, **conf):
    """Reads partitions from the beginning until `expected` messages arrived."""
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "unused", "enable.auto.commit": False,
                  "auto.offset.reset": "earliest", "enable.partition.eof": False, **conf})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out = []
    try:
        for m in consume_until(c, lambda: len(out) >= expected, timeout_s):
            out.append(m)
    finally:
        c.close()
    assert len(out) == expected, f"consumed {len(out)} of {expected}"
    return out


def kcat(broker, *args, input=None, timeout_s=60):
    result = subprocess.run(["kcat", "-b", broker.bootstrap, *args], input=input, capture_output=True,
                            timeout=timeout_s)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout
