"""One group, three client libraries: confluent-kafka, kafka-python and kafkajs
members share a topic's partitions and each message is read once."""

import json
import queue
import subprocess
import threading
import time
from pathlib import Path

from kafka import KafkaConsumer
from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor

from clients import create_topic
from groups import GROUP_CONFIG, assignment, member, produce_range

JS = Path(__file__).parent / "js"


def read_lines(stream, out):
    for line in stream:
        out.put(json.loads(line))


def test_confluent_kafka_python_and_kafkajs_members_share_a_group(make_broker):
    broker = make_broker(GROUP_CONFIG)
    create_topic(broker, "mixed", partitions=6)
    node = subprocess.Popen(["node", str(JS / "group_member.js"), broker.bootstrap, "mixed-group", "mixed"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=JS)
    node_events = queue.Queue()
    threading.Thread(target=read_lines, args=(node.stdout, node_events), daemon=True).start()
    kp = KafkaConsumer("mixed", bootstrap_servers=broker.bootstrap, group_id="mixed-group",
                       auto_offset_reset="earliest", session_timeout_ms=6000, heartbeat_interval_ms=500,
                       partition_assignment_strategy=[RoundRobinPartitionAssignor])
    # The one assignor all three libraries share, under the same protocol name.
    ck = member(broker, "mixed-group", **{"partition.assignment.strategy": "roundrobin"})
    ck.subscribe(["mixed"])
    got = {"kafkajs": [], "kafka-python": [], "confluent-kafka": []}
    node_assigned = []
    produced = False
    deadline = time.time() + 60
    try:
        while time.time() < deadline:
            for records in kp.poll(timeout_ms=50).values():
                got["kafka-python"] += [int(r.value) for r in records]
            for m in ck.consume(500, 0.05):
                if m.error() is None:
                    got["confluent-kafka"].append(int(m.value()))
            while not node_events.empty():
                event = node_events.get()
                if "assigned" in event:
                    node_assigned = event["assigned"]
                else:
                    got["kafkajs"].append(int(event["value"]))
            shares = [sorted(p.partition for p in kp.assignment()), assignment(ck), sorted(node_assigned)]
            settled = sorted(p for s in shares for p in s) == list(range(6)) and all(shares)
            if settled and not produced:
                produce_range(broker, "mixed", 0, 900)
                produced = True
            if produced and sum(len(v) for v in got.values()) >= 900:
                break
        assert produced, f"the group never settled: {shares}"
        everything = sorted(v for values in got.values() for v in values)
        assert everything == list(range(900)), {k: len(v) for k, v in got.items()}
        assert all(got.values()), {k: len(v) for k, v in got.items()}
    finally:
        node.stdin.close()
        node.wait(timeout=20)
        kp.close()
        ck.close()
