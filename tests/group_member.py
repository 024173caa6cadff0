"""A confluent-kafka group member in its own process, so that tests can kill it.

    python group_member.py BOOTSTRAP GROUP TOPIC [key=value ...]

Prints one JSON line per assignment ({"assigned": [partitions]}, empty on revoke), then
polls until killed or until stdin closes (then it closes the consumer cleanly).
"""

import json
import select
import sys

from confluent_kafka import Consumer


def main():
    bootstrap, group, topic, *extra = sys.argv[1:]
    conf = {"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
            "session.timeout.ms": 2000, "heartbeat.interval.ms": 300}
    conf.update(kv.split("=", 1) for kv in extra)
    if conf.get("group.protocol") == "consumer":
        # KIP-848: the broker owns session timing; librdkafka refuses these settings.
        del conf["session.timeout.ms"], conf["heartbeat.interval.ms"]
    consumer = Consumer(conf)

    def on_assign(c, partitions):
        print(json.dumps({"assigned": sorted(tp.partition for tp in partitions)}), flush=True)

    def on_revoke(c, partitions):
        print(json.dumps({"assigned": []}), flush=True)

    consumer.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)
    while True:
        consumer.poll(0.1)
        if select.select([sys.stdin], [], [], 0)[0] and not sys.stdin.readline():
            break
    consumer.close()


if __name__ == "__main__":
    main()
