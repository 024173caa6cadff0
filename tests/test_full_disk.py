"""A broker whose log directory fills up: on a small loop-mounted ext4 filesystem of its own."""

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from clients import consume_all, create_topic, produce
from conftest import SLUICE_BIN, Broker, sluice_only
from kwire import wait_for

pytestmark = [
    sluice_only("space reserve"),
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("mkfs.ext4") is None,
                       reason="mounting a small filesystem needs root and mkfs.ext4"),
]

DISK_MB = 96
VALUE_BYTES = 16 * 1024


@pytest.fixture
def small_disk(tmp_path):
    """A DISK_MB ext4 filesystem (no blocks reserved for root) mounted at tmp_path/disk."""
    image, mount = tmp_path / "disk.img", tmp_path / "disk"
    mount.mkdir()
    with open(image, "wb") as f:
        f.truncate(DISK_MB << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", str(image)], check=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(broker, topic, bytes_max):
    """Sends numbered values with an idempotent acks=all producer until the
    broker refuses them for want of space. Returns the acknowledged numbers and
    the error codes of the refused sends."""
    acked, errors = [], []

    def on_delivery(err, msg):
        if err is None:
            acked.append(int(msg.value().split(b":")[0]))
        else:
            errors.append(err.code())

    p = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True, "linger.ms": 5,
                  "message.timeout.ms": 6000, "retry.backoff.ms": 200})
    padding = b"x" * VALUE_BYTES
    sent = 0
    for i in range(bytes_max // VALUE_BYTES):
        if errors:
            break
        while True:
            try:
                p.produce(topic, value=b"%d:" % i + padding, on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.1)
        sent += 1
        p.poll(0)
    assert p.flush(30) == 0
    return acked, errors


def read_numbers(broker, topic, expected):
    got = consume_all(broker, topic, 1, expected, **{"check.crcs": True})
    return [int(m.value().split(b":")[0]) for m in got]


def test_a_full_disk_refuses_produce_keeps_reads_and_groups_and_a_topic_delete_frees_it(small_disk, tmp_path):
    broker = Broker(small_disk / "data", shards=2)
    broker.log_path = tmp_path / "broker.log"  # off the full disk, and kept after it is unmounted
    broker.start()
    try:
        create_topic(broker, "ballast")
        create_topic(broker, "fill")
        create_topic(broker, "other", partitions=2)
        produce(broker, "ballast", [(None, os.urandom(VALUE_BYTES)) for _ in range((20 << 20) // VALUE_BYTES)])
        produce(broker, "other", [(None, b"o%d" % i) for i in range(200)], acks="all")

        acked, errors = fill(broker, "fill", DISK_MB << 20)
        assert errors and set(errors) <= {KafkaError.KAFKA_STORAGE_ERROR, KafkaError._MSG_TIMED_OUT}, errors
        assert acked == list(range(len(acked))), "acknowledged in order, without gaps"
        assert free_bytes(small_disk) < (4 << 20), free_bytes(small_disk)

        # Full: reads, metadata and groups go on.
        assert sorted(m.value() for m in consume_all(broker, "other", 2, 200)) == sorted(b"o%d" % i for i in range(200))
        assert read_numbers(broker, "fill", len(acked)) == acked

        deleted = subprocess.run([SLUICE_BIN, "topic", "delete", "ballast", "--bootstrap", broker.bootstrap],
                                 capture_output=True, text=True, timeout=60)
        assert deleted.returncode == 0, deleted.stderr
        wait_for(lambda: free_bytes(small_disk) > (16 << 20), what="the deleted topic's space back")
        reserve = small_disk / "data" / ".sluice-space-reserve"
        wait_for(lambda: reserve.exists() and reserve.stat().st_size == 8 << 20, what="the space reserve back")

        # Writable again, and every acknowledged record is there once, in order.
        more = produce(broker, "fill", [(None, b"%d:after" % (len(acked) + i)) for i in range(50)], acks="all",
                       **{"enable.idempotence": True})
        assert len(more) == 50
        assert read_numbers(broker, "fill", len(acked) + 50) == acked + list(range(len(acked), len(acked) + 50))
        produce(broker, "other", [(None, b"late")], acks="all")

        # A new group reads the other topic and commits.
        c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "after-full", "auto.offset.reset": "earliest",
                      "enable.auto.commit": False})
        c.subscribe(["other"])
        seen = []
        deadline = time.time() + 40
        while len(seen) < 201 and time.time() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                seen.append(m.value())
        assert len(seen) == 201
        c.commit(asynchronous=False)
        committed = c.committed([TopicPartition("other", 0), TopicPartition("other", 1)], timeout=10)
        assert sum(tp.offset for tp in committed) == 201
        c.close()

        # A restart recovers the same log: nothing torn became readable.
        broker.restart()
        assert read_numbers(broker, "fill", len(acked) + 50) == acked + list(range(len(acked), len(acked) + 50))
    finally:
        code = broker.stop()
        log = broker.log()
        assert code == 0, log[-4000:]
        assert "panicked" not in log, log[-4000:]
