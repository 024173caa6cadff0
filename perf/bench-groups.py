#!/usr/bin/env python3
"""Consumer-group benchmarks of issue #4, against a fresh release broker with
embedded defaults (group.initial.rebalance.delay.ms = 3000, as Kafka):

  rebalance  three confluent-kafka members subscribe to a 6-partition topic at
             once: time from subscribe to every member having consumed a record.
             Then a third member joins a stable group of two: time until all
             three consume. librdkafka's defaults otherwise, for the classic
             protocol and for KIP-848 (group.protocol=consumer).
  commits    one member commits synchronously after every poll: commits/s and
             p50/p99 commit latency.

    .venv/bin/python perf/bench-groups.py            # all
    .venv/bin/python perf/bench-groups.py commits    # one part
"""

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parents[1]
COMMITS = int(os.environ.get("COMMITS", "5000"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    def __enter__(self):
        subprocess.run(["cargo", "build", "--release", "--bin", "sluice"], cwd=ROOT, check=True,
                       stderr=subprocess.DEVNULL)
        self.dir = tempfile.mkdtemp(prefix="sluice-bench-groups-")
        self.bootstrap = f"127.0.0.1:{free_port()}"
        self.proc = subprocess.Popen([ROOT / "target/release/sluice", "serve", "--listen", self.bootstrap,
                                      "--data-dir", f"{self.dir}/data", "--metrics-listen", "127.0.0.1:0"],
                                     stderr=open(f"{self.dir}/broker.log", "w"))
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                socket.create_connection(self.bootstrap.split(":"), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("broker did not start")

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)

    def topic(self, name, partitions, records):
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        admin.create_topics([NewTopic(name, partitions, 1)])[name].result(timeout=15)
        p = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 5})
        for i in range(records):
            p.produce(name, value=b"%d" % i, partition=i % partitions)
        p.flush(30)


def member(bootstrap, group, protocol):
    conf = {"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest"}
    if protocol == "consumer":
        conf["group.protocol"] = "consumer"
    return Consumer(conf)


def until_all_consume(consumers, since, timeout_s=120):
    """Seconds from `since` until each consumer has received a record. Every
    consumer is polled throughout: librdkafka hands out rebalances in poll."""
    pending = set(range(len(consumers)))
    deadline = time.time() + timeout_s
    while pending and time.time() < deadline:
        for i, c in enumerate(consumers):
            for m in c.consume(100, 0.01):
                if m.error() is None:
                    pending.discard(i)
    if pending:
        raise RuntimeError(f"members {pending} never consumed")
    return time.time() - since


def keep_producing(bootstrap, topic, stop):
    """A steady trickle into every partition, so a new owner always has a record to read."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 1})
    i = 0
    while not stop.is_set():
        for partition in range(6):
            p.produce(topic, value=b"%d" % i, partition=partition)
        i += 1
        p.poll(0.005)
    p.flush(10)


def rebalance(broker, protocol):
    topic = f"rebalance-{protocol}"
    broker.topic(topic, 6, 600)
    stop = threading.Event()
    trickle = threading.Thread(target=keep_producing, args=(broker.bootstrap, topic, stop))
    trickle.start()
    try:
        rebalance_rounds(broker, topic, protocol)
    finally:
        stop.set()
        trickle.join()


def rebalance_rounds(broker, topic, protocol):
    group = f"bench-{protocol}"
    consumers = [member(broker.bootstrap, group, protocol) for _ in range(3)]
    start = time.time()
    for c in consumers:
        c.subscribe([topic])
    first = until_all_consume(consumers, start)
    consumers[2].close()
    # Let the two settle with all six partitions, then a third joins.
    settle_until = time.time() + 60
    while sum(len(c.assignment()) for c in consumers[:2]) != 6 and time.time() < settle_until:
        for c in consumers[:2]:
            c.consume(100, 0.01)
    until_all_consume(consumers[:2], time.time())
    joiner = member(broker.bootstrap, group, protocol)
    start = time.time()
    joiner.subscribe([topic])
    joined = until_all_consume([consumers[0], consumers[1], joiner], start)
    for c in (consumers[0], consumers[1], joiner):
        c.close()
    print(f"rebalance ({protocol}): 3 members from subscribe to all consuming {first:.2f} s; "
          f"a 3rd member joining a stable pair, until all consume {joined:.2f} s")


def commits(broker):
    topic = "commits"
    broker.topic(topic, 1, COMMITS)
    c = member(broker.bootstrap, "committer", "classic")
    c.assign([TopicPartition(topic, 0, 0)])
    latencies = []
    start = time.time()
    while len(latencies) < COMMITS:
        m = c.poll(5)
        if m is None or m.error():
            continue
        t = time.perf_counter()
        c.commit(message=m, asynchronous=False)
        latencies.append(time.perf_counter() - t)
    elapsed = time.time() - start
    c.close()
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99)]
    print(f"commits: {COMMITS} synchronous commits, one per poll: {COMMITS / elapsed:,.0f} commits/s, "
          f"p50 {statistics.median(latencies) * 1e3:.2f} ms, p99 {p99 * 1e3:.2f} ms")


def main():
    parts = sys.argv[1:] or ["rebalance", "commits"]
    with Broker() as broker:
        if "rebalance" in parts:
            rebalance(broker, "classic")
            rebalance(broker, "consumer")
        if "commits" in parts:
            commits(broker)


if __name__ == "__main__":
    main()
