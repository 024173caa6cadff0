"""Transactional against idempotent producing with confluent-kafka, on a broker you started:

    python3 perf/transactions.py BOOTSTRAP [RECORDS [REPLICATION_FACTOR]]

Sends RECORDS (default 200,000) 100-byte records to a new 6-partition topic `bench-txn`,
three ways, twice each, interleaved: idempotent (no transactions), transactions of 10,000
records and transactions of 1,000 records. Prints records/s per run and the client's
commit_transaction time (which includes flushing the transaction's last records, so it is
an upper bound on EndTxn's latency). Then reads the whole topic (its transactions and its
markers) with read_committed and read_uncommitted consumers, twice each, interleaved, and
prints their records/s. #16's figures came from this script.
"""

import sys
import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

BOOTSTRAP = sys.argv[1]
RECORDS = int(sys.argv[2]) if len(sys.argv) > 2 else 200_000
# 3 on a three-node cluster: every append then waits for the in-sync replicas (acks=all).
REPLICATION_FACTOR = int(sys.argv[3]) if len(sys.argv) > 3 else 1
VALUE = b"x" * 100
PARTITIONS = 6


def run(txn_records):
    conf = {"bootstrap.servers": BOOTSTRAP, "linger.ms": 5, "batch.num.messages": 10_000,
            "queue.buffering.max.messages": 1_000_000}
    if txn_records:
        conf["transactional.id"] = f"bench-{txn_records}-{time.time()}"
    else:
        conf["enable.idempotence"] = True
    p = Producer(conf)
    if txn_records:
        p.init_transactions()
    commits_ms = []
    start = time.time()
    sent = 0
    while sent < RECORDS:
        if txn_records:
            p.begin_transaction()
        n = txn_records or RECORDS
        for i in range(n):
            while True:
                try:
                    p.produce("bench-txn", value=VALUE, partition=i % PARTITIONS)
                    break
                except BufferError:
                    p.poll(0.01)
        sent += n
        if txn_records:
            t0 = time.time()
            p.commit_transaction(60)
            commits_ms.append((time.time() - t0) * 1000)
    p.flush(60)
    rate = RECORDS / (time.time() - start)
    label = f"transactions of {txn_records:,}" if txn_records else "idempotent"
    line = f"{label}: {rate:,.0f} records/s"
    if commits_ms:
        commits_ms.sort()
        p50 = commits_ms[len(commits_ms) // 2]
        p99 = commits_ms[max(0, int(len(commits_ms) * 0.99) - 1)]
        line += f"; commit_transaction p50 {p50:.1f} ms, p99 {p99:.1f} ms over {len(commits_ms)}"
    print(line, flush=True)


admin = AdminClient({"bootstrap.servers": BOOTSTRAP})  # must outlive the future
admin.create_topics([NewTopic("bench-txn", PARTITIONS, REPLICATION_FACTOR)])["bench-txn"].result()
for txn_records in [0, 10_000, 1_000, 0, 10_000, 1_000]:
    run(txn_records)


def consume(isolation):
    """Reads every partition from its start to the end the consumer sees (the last stable
    offset for read_committed; no transaction is open, so both read the same records)."""
    c = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": "bench-txn-reader", "enable.auto.commit": False,
                  "isolation.level": isolation, "enable.partition.eof": True, "fetch.max.bytes": 52_428_800})
    c.assign([TopicPartition("bench-txn", p, 0) for p in range(PARTITIONS)])
    count, at_end = 0, set()
    start = time.time()
    while len(at_end) < PARTITIONS:
        for m in c.consume(num_messages=10_000, timeout=1):
            if m.error() is not None:
                assert m.error().code() == KafkaError._PARTITION_EOF, m.error()
                at_end.add(m.partition())
            else:
                count += 1
    elapsed = time.time() - start
    c.close()
    print(f"{isolation} consumer: {count / elapsed:,.0f} records/s ({count:,} records)", flush=True)


for isolation in ["read_committed", "read_uncommitted", "read_committed", "read_uncommitted"]:
    consume(isolation)
