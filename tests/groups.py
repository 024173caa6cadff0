"""What the group tests share: quick group settings, members in this process
(confluent-kafka) or in their own (tests/group_member.py), and polling."""

import subprocess
import sys
import time
from pathlib import Path

from confluent_kafka import Consumer, KafkaError

from clients import produce

# A short initial delay and session floor keep the tests quick; the behaviour is Kafka's.
GROUP_CONFIG = '"group.initial.rebalance.delay.ms" = 300\n"group.min.session.timeout.ms" = 1000\n'
MEMBER = Path(__file__).parent / "group_member.py"


def member(broker, group, **conf):
    return Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                     "session.timeout.ms": 6000, "heartbeat.interval.ms": 500, **conf})


def spawn_member(broker, group, topic, *conf):
    """A confluent-kafka member in its own process (tests/group_member.py), to kill or restart."""
    return subprocess.Popen([sys.executable, str(MEMBER), broker.bootstrap, group, topic, *conf],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def assignment(c):
    return sorted(tp.partition for tp in c.assignment())


def poll_all(consumers, until, timeout_s=30):
    """Polls every consumer in turn; returns {index: [(partition, offset, value)]} once `until(got)`."""
    got = {i: [] for i in range(len(consumers))}
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        for i, c in enumerate(consumers):
            for m in c.consume(500, 0.05):
                if m.error() is None:
                    got[i].append((m.partition(), m.offset(), m.value()))
                else:
                    assert m.error().code() == KafkaError._PARTITION_EOF, m.error()
        if until(got):
            return got
    raise AssertionError(f"timed out: {({i: len(v) for i, v in got.items()})}, "
                         f"assignments {[assignment(c) for c in consumers]}")


def total(got):
    return sum(len(v) for v in got.values())


def values(got):
    return sorted(int(v) for msgs in got.values() for _, _, v in msgs)


def produce_range(broker, topic, start, count):
    produce(broker, topic, [(str(i).encode(), str(i).encode()) for i in range(start, start + count)])
