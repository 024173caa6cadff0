"""Transactions with real clients: confluent-kafka's transactional producer,
read by read_committed and read_uncommitted consumers, on a single node."""

import struct
import subprocess
import sys
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

import kwire
from clients import create_topic, produce
from conftest import AGAINST

# The coordinator looks for timed-out transactions this often (Kafka's default is 10 s).
CONFIG = '"transaction.abort.timed.out.transaction.cleanup.interval.ms" = 200\n'


@pytest.fixture
def broker(make_broker):
    return make_broker(config=CONFIG)


def txn_producer(broker, txn_id, **conf):
    p = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": txn_id, "linger.ms": 5, **conf})
    p.init_transactions(30)
    return p


def read(broker, topic, partitions, isolation, timeout_s=20):
    """Everything `isolation` lets a consumer see, from offset 0 to the end of
    each partition (the last stable offset for read_committed): (partition,
    offset, value) in the order each partition returned them."""
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "unused", "enable.auto.commit": False,
                  "isolation.level": isolation, "enable.partition.eof": True})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out, at_end = [], set()
    deadline = time.time() + timeout_s
    try:
        while len(at_end) < partitions and time.time() < deadline:
            for m in c.consume(num_messages=1000, timeout=0.5):
                if m.error() is not None and m.error().code() == KafkaError._PARTITION_EOF:
                    at_end.add(m.partition())
                    continue
                assert m.error() is None, m.error()
                at_end.discard(m.partition())
                out.append((m.partition(), m.offset(), m.value().decode()))
    finally:
        c.close()
    assert len(at_end) == partitions, f"only partitions {at_end} reached their end"
    return out


def values(records, partition=None):
    return [v for p, _, v in records if partition is None or p == partition]


def test_committed_transactions_are_visible_in_order_and_aborted_ones_only_uncommitted(broker):
    create_topic(broker, "tx", partitions=2)
    p = txn_producer(broker, "tx-commit")
    p.begin_transaction()
    for i in range(10):
        for part in (0, 1):
            p.produce("tx", value=f"c{part}-{i}", partition=part)
    p.commit_transaction(30)
    p.begin_transaction()
    for part in (0, 1):
        p.produce("tx", value=f"aborted-{part}", partition=part)
    p.flush(10)  # in the log before the abort (an abort purges what is still queued)
    p.abort_transaction(30)
    p.begin_transaction()
    p.produce("tx", value="late", partition=0)
    p.commit_transaction(30)

    committed = read(broker, "tx", 2, "read_committed")
    assert values(committed, 0) == [f"c0-{i}" for i in range(10)] + ["late"]
    assert values(committed, 1) == [f"c1-{i}" for i in range(10)]
    # No control record reaches the application: data offsets skip the markers.
    assert [o for part, o, _ in committed if part == 1] == list(range(10))
    uncommitted = read(broker, "tx", 2, "read_uncommitted")
    assert values(uncommitted, 0) == [f"c0-{i}" for i in range(10)] + ["aborted-0", "late"]
    assert values(uncommitted, 1) == [f"c1-{i}" for i in range(10)] + ["aborted-1"]


def test_an_open_transaction_hides_everything_after_its_first_record_until_it_commits(broker):
    create_topic(broker, "open")
    p = txn_producer(broker, "tx-open")
    p.begin_transaction()
    p.produce("open", value="in-txn", partition=0)
    p.flush(10)
    produce(broker, "open", [(None, b"plain", None, 0)])
    assert values(read(broker, "open", 1, "read_committed")) == []
    assert values(read(broker, "open", 1, "read_uncommitted")) == ["in-txn", "plain"]
    # "Latest" for read_committed is the last stable offset: the open transaction's first.
    with kwire.Connection(broker.bootstrap) as conn:
        assert latest_offset(conn, "open", 0, read_committed=True) == 0
        assert latest_offset(conn, "open", 0, read_committed=False) == 2
    p.commit_transaction(30)
    assert values(read(broker, "open", 1, "read_committed")) == ["in-txn", "plain"]
    with kwire.Connection(broker.bootstrap) as conn:
        assert latest_offset(conn, "open", 0, read_committed=True) == 3, "past the commit marker"


def latest_offset(conn, topic, partition, read_committed):
    """ListOffsets v2 for "latest" (-1) with the given isolation level."""
    body = (struct.pack(">ib", -1, 1 if read_committed else 0) + struct.pack(">i", 1) + kwire.string(topic)
            + struct.pack(">iiq", 1, partition, -1))
    conn.send(2, 2, body)
    _, frame = conn.recv()
    r = kwire.Reader(frame)
    r.i32()  # throttle
    assert r.i32() == 1 and r.string() == topic and r.i32() == 1
    assert r.i32() == partition
    assert r.i16() == 0
    r.i64()  # timestamp
    return r.i64()


def test_a_second_producer_with_the_same_id_fences_the_first(broker):
    create_topic(broker, "fence")
    first = txn_producer(broker, "tx-zombie")
    first.begin_transaction()
    first.produce("fence", value="zombie", partition=0)
    first.flush(10)
    second = txn_producer(broker, "tx-zombie")
    with pytest.raises(KafkaException) as fenced:
        first.produce("fence", value="zombie-2", partition=0)
        first.commit_transaction(30)
    error = fenced.value.args[0]
    assert error.fatal() or error.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED,
                                             KafkaError.INVALID_PRODUCER_EPOCH), error
    second.begin_transaction()
    second.produce("fence", value="live", partition=0)
    second.commit_transaction(30)
    assert values(read(broker, "fence", 1, "read_committed")) == ["live"]


KILLED_PRODUCER = """
import sys, time
from confluent_kafka import Producer
p = Producer({"bootstrap.servers": sys.argv[1], "transactional.id": "tx-killed",
              "transaction.timeout.ms": 3000})
p.init_transactions(30)
p.begin_transaction()
for i in range(5):
    p.produce("killed", value=f"doomed-{i}", partition=0)
p.flush(10)
print("ready", flush=True)
time.sleep(600)
"""


def test_a_producer_killed_mid_transaction_is_aborted_after_its_timeout(broker):
    create_topic(broker, "killed")
    proc = subprocess.Popen([sys.executable, "-c", KILLED_PRODUCER, broker.bootstrap], stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == b"ready"
    finally:
        proc.kill()
        proc.wait()
    produce(broker, "killed", [(None, b"after", None, 0)])
    assert values(read(broker, "killed", 1, "read_committed")) == []
    # transaction.timeout.ms is 3 s: the coordinator aborts it and the last stable offset moves on.
    kwire.wait_for(lambda: values(read(broker, "killed", 1, "read_committed")) == ["after"], timeout_s=30,
                   what="the timed-out transaction aborted")
    assert values(read(broker, "killed", 1, "read_uncommitted")) == [f"doomed-{i}" for i in range(5)] + ["after"]


@pytest.mark.parametrize("how", ["restart", "kill9"])
def test_an_open_transaction_survives_a_broker_restart_and_commits_after_it(make_broker, how):
    if AGAINST == "kafka" and how == "kill9":
        pytest.skip("the Kafka peer's kill -9 restart is slow")
    broker = make_broker(config=CONFIG)
    create_topic(broker, "restart")
    p = txn_producer(broker, "tx-restart")
    p.begin_transaction()
    p.produce("restart", value="before", partition=0)
    p.flush(10)
    if how == "kill9":
        broker.kill9()
    else:
        broker.stop()
    broker.start()
    # Still open after the restart: nothing of it is visible, and it is not half visible.
    assert values(read(broker, "restart", 1, "read_committed")) == []
    p.produce("restart", value="after", partition=0)
    p.commit_transaction(60)
    assert values(read(broker, "restart", 1, "read_committed")) == ["before", "after"]


def end_txn(conn, txn_id, producer_id, epoch, commit):
    """EndTxn v3 (flexible): the error code."""
    body = kwire.compact_string(txn_id) + struct.pack(">qhb", producer_id, epoch, int(commit)) + b"\x00"
    conn.send(26, 3, body, header_tags=True)
    _, frame = conn.recv()
    r = kwire.Reader(frame)
    r.take(1)  # response header tags
    r.i32()  # throttle
    return r.i16()


def add_partitions(conn, txn_id, producer_id, epoch, topic, partition):
    """AddPartitionsToTxn v3 (flexible), one partition: its error code."""
    body = (kwire.compact_string(txn_id) + struct.pack(">qh", producer_id, epoch) + kwire.uvarint(2)
            + kwire.compact_string(topic) + kwire.uvarint(2) + struct.pack(">i", partition) + b"\x00" + b"\x00")
    conn.send(24, 3, body, header_tags=True)
    _, frame = conn.recv()
    r = kwire.Reader(frame)
    r.take(1)
    r.i32()
    assert r.uvarint() == 2
    assert r.compact_string() == topic
    assert r.uvarint() == 2
    assert r.i32() == partition
    return r.i16()


def init_producer_id(conn, txn_id, timeout_ms=60_000):
    """InitProducerId v4 (flexible): (error code, producer id, epoch)."""
    body = kwire.compact_string(txn_id) + struct.pack(">iqh", timeout_ms, -1, -1) + b"\x00"
    conn.send(22, 4, body, header_tags=True)
    _, frame = conn.recv()
    r = kwire.Reader(frame)
    r.take(1)
    r.i32()
    return r.i16(), r.i64(), r.i16()


INVALID_TXN_STATE, INVALID_PRODUCER_ID_MAPPING, INVALID_TRANSACTION_TIMEOUT = 48, 49, 50
CONCURRENT_TRANSACTIONS, TRANSACTIONAL_ID_AUTHORIZATION_FAILED, PRODUCER_FENCED = 51, 53, 90


def test_bad_transactional_requests_get_kafkas_codes_and_a_bystander_keeps_working(broker):
    create_topic(broker, "raw")
    live = txn_producer(broker, "tx-live")
    live.begin_transaction()
    live.produce("raw", value="kept", partition=0)
    live.flush(10)
    with kwire.Connection(broker.bootstrap) as conn:
        assert end_txn(conn, "tx-unknown", 12345, 0, True) == INVALID_PRODUCER_ID_MAPPING
        assert init_producer_id(conn, "tx-raw", timeout_ms=10**9)[0] == INVALID_TRANSACTION_TIMEOUT
        error, producer_id, epoch = init_producer_id(conn, "tx-raw")
        assert (error, epoch) == (0, 0)
        # Nothing is open: ending it is a wrong transition.
        assert end_txn(conn, "tx-raw", producer_id, epoch, True) == INVALID_TXN_STATE
        # A zombie's epoch, and an id that is not this transactional id's.
        assert add_partitions(conn, "tx-raw", producer_id, epoch + 5, "raw", 0) == PRODUCER_FENCED
        assert add_partitions(conn, "tx-raw", producer_id + 1, epoch, "raw", 0) == INVALID_PRODUCER_ID_MAPPING
        # KIP-890: a transactional batch for a partition not in the transaction is refused,
        # and so is one without the request's transactional id; neither opens a transaction.
        batch = kwire.record_batch([b"stray"], producer_id=producer_id, epoch=epoch, base_seq=0, attributes=0x10)
        assert conn.produce("raw", 0, batch, transactional_id="tx-raw")[0] == INVALID_TXN_STATE
        assert conn.produce("raw", 0, batch)[0] == TRANSACTIONAL_ID_AUTHORIZATION_FAILED
        assert add_partitions(conn, "tx-raw", producer_id, epoch, "raw", 0) == 0
        assert conn.produce("raw", 0, batch, transactional_id="tx-raw")[0] == 0
        assert end_txn(conn, "tx-raw", producer_id, epoch + 1, False) == PRODUCER_FENCED
        assert end_txn(conn, "tx-raw", producer_id, epoch, False) == 0
        # A retried abort of an aborted transaction succeeds; a commit of it is refused.
        kwire.wait_for(lambda: end_txn(conn, "tx-raw", producer_id, epoch, False) == 0,
                       what="the abort completed")
        assert end_txn(conn, "tx-raw", producer_id, epoch, True) == INVALID_TXN_STATE
    live.commit_transaction(30)
    assert values(read(broker, "raw", 1, "read_committed")) == ["kept"]


def test_kafka_python_commits_and_aborts(broker):
    from kafka import KafkaConsumer, KafkaProducer
    from kafka import TopicPartition as KafkaPythonPartition

    create_topic(broker, "kp")
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id="tx-kafka-python")
    p.init_transactions()
    p.begin_transaction()
    p.send("kp", b"committed", partition=0)
    p.commit_transaction()
    p.begin_transaction()
    p.send("kp", b"aborted", partition=0)
    p.flush()
    p.abort_transaction()
    p.close()
    seen = {}
    for isolation in ("read_committed", "read_uncommitted"):
        c = KafkaConsumer(bootstrap_servers=broker.bootstrap, isolation_level=isolation, consumer_timeout_ms=5000)
        c.assign([KafkaPythonPartition("kp", 0)])
        c.seek_to_beginning()
        seen[isolation] = [m.value for m in c]
        c.close()
    assert seen == {"read_committed": [b"committed"], "read_uncommitted": [b"committed", b"aborted"]}
