"""Restarts, kill -9 recovery, segment rolling, retention and the flush policy, on the real disk."""

import os
import threading
import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, ConfigResource

from clients import consume_all, consume_until, create_topic, produce
from kwire import wait_for
from conftest import sluice_only


def segments(broker, topic, partition=0):
    d = broker.data_dir / f"{topic}-{partition}"
    return sorted(p.name for p in d.iterdir() if p.suffix == ".log")


def test_topics_configs_and_data_survive_restart(broker):
    create_topic(broker, "keep", partitions=4, config={"retention.ms": "86400000"})
    values = [f"v{i}".encode() for i in range(4000)]
    produce(broker, "keep", [(str(i).encode(), v) for i, v in enumerate(values)], acks="all")
    broker.restart()
    a = AdminClient({"bootstrap.servers": broker.bootstrap})
    res = ConfigResource(ConfigResource.Type.TOPIC, "keep")
    assert a.describe_configs([res])[res].result(timeout=15)["retention.ms"].value == "86400000"
    got = consume_all(broker, "keep", 4, len(values))
    assert sorted(m.value() for m in got) == sorted(values)
    # Appends continue after the recovered end.
    produce(broker, "keep", [(None, b"after", None, 0)])
    got = consume_all(broker, "keep", 4, len(values) + 1)
    after = [m for m in got if m.value() == b"after"][0]
    assert after.offset() == max(m.offset() for m in got if m.partition() == 0)


def test_segments_roll_by_size_and_reads_cross_them(broker):
    create_topic(broker, "roll", config={"segment.bytes": "65536"})
    values = [os.urandom(100) for _ in range(5000)]
    produce(broker, "roll", [(None, v) for v in values], **{"batch.size": 8192})
    assert len(segments(broker, "roll")) > 5
    names = segments(broker, "roll")
    assert names[0] == "0" * 20 + ".log"
    for name in names:
        stem = name[:-4]
        assert len(stem) == 20 and stem.isdigit()
        assert (broker.data_dir / "roll-0" / f"{stem}.index").exists()
        assert (broker.data_dir / "roll-0" / f"{stem}.timeindex").exists()
    got = consume_all(broker, "roll", 1, len(values))
    assert [m.value() for m in got] == values
    assert [m.offset() for m in got] == list(range(len(values)))


@sluice_only("segment files")
def test_segments_roll_by_time(broker):
    create_topic(broker, "timeroll", config={"segment.ms": "300"})
    for i in range(4):
        produce(broker, "timeroll", [(None, f"t{i}".encode())])
        time.sleep(0.4)
    assert len(segments(broker, "timeroll")) >= 3
    assert [m.value() for m in consume_all(broker, "timeroll", 1, 4)] == [b"t0", b"t1", b"t2", b"t3"]


def test_retention_by_size_and_time(make_broker):
    broker = make_broker(config="\"log.retention.check.interval.ms\" = 200\n")
    create_topic(broker, "bysize", config={"segment.bytes": "20000", "retention.bytes": "60000"})
    produce(broker, "bysize", [(None, os.urandom(200)) for _ in range(3000)], **{"batch.size": 4096})
    wait_for(lambda: len(segments(broker, "bysize")) <= 4, timeout_s=15, what="retention.bytes to delete segments")
    remaining = segments(broker, "bysize")
    assert 1 < len(remaining) <= 4, remaining
    start = int(remaining[0][:-4])
    assert start > 0
    c_offsets = [m.offset() for m in consume_all(broker, "bysize", 1, 3000 - start)]
    assert c_offsets[0] == start

    create_topic(broker, "bytime", config={"retention.ms": "1000"})
    produce(broker, "bytime", [(None, b"old")])
    time.sleep(1.5)
    produce(broker, "bytime", [(None, b"new")])
    a = AdminClient({"bootstrap.servers": broker.bootstrap})
    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import OffsetSpec
    tp = TopicPartition("bytime", 0)
    earliest = wait_for(lambda: a.list_offsets({tp: OffsetSpec.earliest()})[tp].result(timeout=10).offset,
                        timeout_s=15, what="the expired segment to be deleted")
    assert earliest >= 1, "expired segment was not deleted"


def test_flush_messages_policy_fsyncs(make_broker):
    broker = make_broker(config="\"log.flush.interval.messages\" = 1\n")
    create_topic(broker, "flushy")
    produce(broker, "flushy", [(None, b"x") for _ in range(200)], **{"linger.ms": 0, "batch.num.messages": 1})
    assert len(consume_all(broker, "flushy", 1, 200)) == 200


def _heavy_producer(bootstrap, topic, acked, stop):
    p = Producer({"bootstrap.servers": bootstrap, "acks": "1", "linger.ms": 2, "batch.size": 65536,
                  "message.timeout.ms": 3000, "retries": 0})

    def on_delivery(err, msg):
        if err is None:
            acked.append((msg.partition(), msg.offset(), msg.value()))

    i = 0
    while not stop.is_set():
        try:
            p.produce(topic, value=f"{i:08d}".encode() * 8, partition=i % 3, on_delivery=on_delivery)
            i += 1
        except BufferError:
            p.poll(0.01)
        if i % 1000 == 0:
            p.poll(0)
    p.flush(5)


@sluice_only("data dir and recovery log")
def test_kill_9_during_heavy_produce_recovers(broker):
    create_topic(broker, "crash", partitions=3, config={"segment.bytes": "1048576"})
    acked, stop = [], threading.Event()
    t = threading.Thread(target=_heavy_producer, args=(broker.bootstrap, "crash", acked, stop))
    t.start()
    time.sleep(3)
    broker.kill9()
    stop.set()
    t.join(30)
    assert len(acked) > 1000, "the producer should have been acknowledged before the kill"
    # Damage what a crash could leave: a torn write at the tail and a lost index.
    tail = broker.data_dir / "crash-0" / segments(broker, "crash", 0)[-1]
    with open(tail, "ab") as f:
        f.write(b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x10\x00torn")
    index = tail.with_suffix(".index")
    if index.exists():
        index.unlink()
    broker.start()
    # The shard owning crash-0 may still be recovering when another shard answers.
    wait_for(lambda: "recovered segment" in broker.log(), timeout_s=30, what="the torn segment's recovery")
    by_partition = {}
    for p, offset, value in acked:
        by_partition.setdefault(p, {})[offset] = value
    for p in range(3):
        want = by_partition.get(p, {})
        end = max(want) + 1 if want else 0
        from confluent_kafka import Consumer, TopicPartition
        c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "unused", "enable.auto.commit": False})
        c.assign([TopicPartition("crash", p, 0)])
        seen = {}
        for m in consume_until(c, lambda: len(seen) >= end):
            seen[m.offset()] = m.value()
        c.close()
        # Every acknowledged record is there, offsets are continuous, nothing corrupt is served.
        assert all(seen.get(o) == v for o, v in want.items()), f"partition {p} lost acknowledged records"
        assert sorted(seen) == list(range(len(seen)))
    # The log accepts appends after recovery.
    produce(broker, "crash", [(None, b"alive", None, 0)])
