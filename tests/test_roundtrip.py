"""Produce and consume round trips with kcat, confluent-kafka and kafka-python."""

import hashlib
import time

import pytest
from confluent_kafka import Consumer, TopicPartition

import kwire
from clients import consume_all, create_topic, kcat, produce
from conftest import sluice_only


def test_kcat_round_trip_with_keys(broker):
    lines = "".join(f"k{i % 7}:value-{i}\n" for i in range(5000)).encode()
    kcat(broker, "-P", "-t", "kc", "-K:", input=lines)
    out = kcat(broker, "-C", "-t", "kc", "-e", "-q", "-f", "%k:%s\n")
    assert out == lines


def test_many_shards_route_every_partition(make_broker):
    # Four shards on two cores: most partitions live on a shard other than the
    # one holding the connection, so every request crosses shard mailboxes.
    broker = make_broker(shards=4)
    create_topic(broker, "spread", partitions=12)
    values = [f"s{i}".encode() for i in range(6000)]
    produce(broker, "spread", [(None, v, None, i % 12) for i, v in enumerate(values)], acks="all")
    got = consume_all(broker, "spread", 12, len(values))
    assert sorted(m.value() for m in got) == sorted(values)
    assert {m.partition() for m in got} == set(range(12))
    broker.restart()
    assert len(consume_all(broker, "spread", 12, len(values))) == len(values)


@pytest.mark.parametrize("acks", ["0", "1", "all"])
def test_confluent_acks(broker, acks):
    topic = f"acks-{acks}"
    create_topic(broker, topic, partitions=3)
    values = [f"m{i}".encode() for i in range(3000)]
    produce(broker, topic, [(None, v) for v in values], acks=acks)
    # acks=0 has no acknowledgements to wait for: consume_all polls until every record is in.
    got = consume_all(broker, topic, 3, len(values))
    assert sorted(m.value() for m in got) == sorted(values)
    if acks != "0":
        # Offsets within each partition are dense from 0.
        for p in range(3):
            offsets = sorted(m.offset() for m in got if m.partition() == p)
            assert offsets == list(range(len(offsets)))


def test_keys_land_on_one_partition_each(broker):
    create_topic(broker, "keys", partitions=6)
    reports = produce(broker, "keys", [(f"user-{i % 20}".encode(), b"x") for i in range(2000)])
    got = consume_all(broker, "keys", 6, 2000)
    partitions_per_key = {}
    for m in got:
        partitions_per_key.setdefault(m.key(), set()).add(m.partition())
    assert all(len(p) == 1 for p in partitions_per_key.values())
    assert len({p for _, p, _ in reports}) > 1, "keys spread over partitions"


def test_headers_timestamps_and_nulls(broker):
    create_topic(broker, "hdr")
    messages = [
        (b"k1", b"v1", [("h1", b"a"), ("h2", b"")]),
        (None, b"no-key", None),
        (b"tombstone", None, None),
        (None, None, [("only", b"header")]),
    ]
    produce(broker, "hdr", messages, acks="all")
    got = consume_all(broker, "hdr", 1, 4)
    assert [(m.key(), m.value()) for m in got] == [(k, v) for k, v, _ in messages]
    assert got[0].headers() == [("h1", b"a"), ("h2", b"")]
    assert got[3].headers() == [("only", b"header")]
    now_ms = time.time() * 1000
    for m in got:
        kind, ts = m.timestamp()
        assert kind == 1  # CreateTime
        assert abs(ts - now_ms) < 60_000


def test_one_megabyte_record(broker):
    create_topic(broker, "big", config={"max.message.bytes": str(2 * 1024 * 1024)})
    value = bytes(range(256)) * 4096
    produce(broker, "big", [(b"k", value)], **{"message.max.bytes": 2_000_000})
    got = consume_all(broker, "big", 1, 1, **{"fetch.max.bytes": 4_000_000,
                                                 "max.partition.fetch.bytes": 2_000_000})
    assert got[0].value() == value


@sluice_only("segment files")
@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compressed_batches_pass_through(broker, codec):
    topic = f"codec-{codec}"
    create_topic(broker, topic)
    values = [f"compressible value number {i} ".encode() * 4 for i in range(2000)]
    # librdkafka enables lz4 only for brokers that advertise FindCoordinator (its feature map).
    produce(broker, topic, [(None, v) for v in values], **{"compression.type": codec})
    got = consume_all(broker, topic, 1, len(values))
    assert [m.value() for m in got] == values
    # Stored untouched: the segment holds the producer's compressed batches.
    segment = (broker.data_dir / f"{topic}-0" / ("0" * 20 + ".log")).read_bytes()
    codec_id = {"gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}[codec]
    batches = kwire.stored_batches(segment)
    assert sum(count for _, _, count, _ in batches) == len(values)
    compressed = [b for b in batches if b[1] & 0x7 == codec_id]
    # librdkafka sends a tiny batch uncompressed when compression would not shrink it.
    assert sum(count for _, _, count, _ in compressed) > len(values) * 0.9
    assert len(segment) < sum(len(v) for v in values) / 2


def test_kafka_python_round_trip(broker):
    from kafka import KafkaConsumer, KafkaProducer
    from kafka import TopicPartition as KTopicPartition

    create_topic(broker, "kp", partitions=2)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=5)
    for i in range(1000):
        producer.send("kp", key=str(i % 3).encode(), value=f"kp-{i}".encode(), headers=[("n", str(i).encode())])
    producer.flush(timeout=30)
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False,
                             auto_offset_reset="earliest", consumer_timeout_ms=5000)
    consumer.assign([KTopicPartition("kp", 0), KTopicPartition("kp", 1)])
    consumer.seek_to_beginning()
    got = [m for _, m in zip(range(1000), consumer)]
    consumer.close()
    assert sorted(m.value for m in got) == sorted(f"kp-{i}".encode() for i in range(1000))
    assert all(m.headers == [("n", m.value[3:])] for m in got)


def test_cross_client_kafka_python_reads_kcat(broker):
    from kafka import KafkaConsumer

    payload = "".join(f"line {i}\n" for i in range(500)).encode()
    kcat(broker, "-P", "-t", "cross", "-z", "snappy", input=payload)
    consumer = KafkaConsumer("cross", bootstrap_servers=broker.bootstrap, group_id=None,
                             auto_offset_reset="earliest", consumer_timeout_ms=5000)
    got = b"".join(m.value + b"\n" for _, m in zip(range(500), consumer))
    consumer.close()
    assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()


def test_long_poll_wakes_on_append(broker):
    create_topic(broker, "lp")
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "unused", "enable.auto.commit": False,
                  "fetch.wait.max.ms": 5000, "fetch.min.bytes": 1})
    c.assign([TopicPartition("lp", 0, 0)])
    c.consume(timeout=1)  # the consumer is now parked in a long poll
    cpu_before = broker.cpu_seconds()
    time.sleep(2)
    idle_cpu = broker.cpu_seconds() - cpu_before
    sent = time.time()
    produce(broker, "lp", [(None, b"wake up")], acks="1", **{"linger.ms": 0})
    msgs = []
    while not msgs and time.time() - sent < 10:
        msgs = c.consume(timeout=0.2)
    latency = time.time() - sent
    c.close()
    assert msgs and msgs[0].value() == b"wake up"
    assert latency < 2.0, f"long poll woke after {latency:.2f}s, not on append"
    assert idle_cpu < 0.5, f"broker burned {idle_cpu:.2f}s CPU while a fetch was parked: it spins"


def test_log_append_time_topics_stamp_broker_time(broker):
    create_topic(broker, "lat", config={"message.timestamp.type": "LogAppendTime"})
    before_ms = time.time() * 1000
    produce(broker, "lat", [(None, b"x")], **{"linger.ms": 0})
    got = consume_all(broker, "lat", 1, 1)
    kind, ts = got[0].timestamp()
    assert kind == 2  # LogAppendTime
    assert before_ms - 1000 <= ts <= time.time() * 1000 + 1000


def test_idempotent_producer_across_broker_restart(broker):
    from confluent_kafka import Producer

    create_topic(broker, "idem", partitions=2)
    errors = []
    p = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True, "linger.ms": 2,
                  "message.timeout.ms": 30000, "reconnect.backoff.ms": 50})

    def send(start):
        for i in range(start, start + 2000):
            p.produce("idem", value=str(i).encode(), partition=i % 2,
                      on_delivery=lambda err, msg: err and errors.append(err))
            p.poll(0)

    send(0)
    assert p.flush(30) == 0
    broker.restart()
    send(2000)
    assert p.flush(60) == 0
    assert not errors, errors
    got = consume_all(broker, "idem", 2, 4000)
    assert sorted(int(m.value()) for m in got) == list(range(4000))
