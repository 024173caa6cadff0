"""Bad input over real sockets: each case gets Kafka's answer (an error code, or a closed
connection where Kafka closes it), and the broker keeps serving everyone else."""

import os
import resource
import socket
import struct
import time

import pytest

import kwire
from clients import create_topic, kcat
from conftest import sluice_only

LIMITS = """
"socket.request.max.bytes" = 1000000
"connections.max.idle.ms" = 1500
"auto.create.topics.enable" = false
"""


@pytest.fixture
def strict(make_broker):
    b = make_broker(config=LIMITS)
    create_topic(b, "t", partitions=2)
    return b


def still_serving(broker):
    with kwire.Connection(broker.bootstrap) as c:
        assert c.api_versions()[0] == 0
        assert c.produce("t", 0, kwire.record_batch([b"still here"]))[0] == 0


def test_oversized_frame_closes_only_that_connection(strict):
    with kwire.Connection(strict.bootstrap) as bystander, kwire.Connection(strict.bootstrap) as c:
        c.send_raw(struct.pack(">i", 2_000_000) + b"\x00" * 100)
        assert c.is_closed_by_peer()
        assert bystander.api_versions()[0] == 0
    still_serving(strict)


@pytest.mark.parametrize("frame", [
    struct.pack(">i", -1),                                     # negative size
    struct.pack(">i", 3) + b"\x00\x12\x00",                    # shorter than a header
    struct.pack(">i", 12) + os.urandom(12),                    # garbage
    struct.pack(">i", 10) + struct.pack(">hhih", 12345, 0, 1, -1),   # unknown API key
    struct.pack(">i", 10) + struct.pack(">hhih", 11, 5, 1, -1),      # known API the broker does not implement
    struct.pack(">i", 10) + struct.pack(">hhih", 3, 99, 1, -1),      # Metadata version not supported
], ids=["negative-size", "short-header", "garbage", "unknown-api", "unimplemented-api", "bad-version"])
def test_malformed_frames_close_the_connection(strict, frame):
    with kwire.Connection(strict.bootstrap) as c:
        c.send_raw(frame)
        assert c.is_closed_by_peer()
    still_serving(strict)


def test_truncated_frame_then_hangup(strict):
    with kwire.Connection(strict.bootstrap) as c:
        c.send_raw(struct.pack(">i", 500) + b"\x00\x03\x00\x01")
        c.sock.shutdown(socket.SHUT_WR)
        assert c.is_closed_by_peer()
    still_serving(strict)


def test_unknown_api_versions_version_gets_v0_error_reply(strict):
    with kwire.Connection(strict.bootstrap) as c:
        error_code, apis = c.api_versions(version=99)
        assert error_code == 35  # UNSUPPORTED_VERSION
        # Only ApiVersions' own range, as Kafka answers (KIP-511); the connection stays open.
        assert list(apis) == [18] and apis[18][0] == 0 and apis[18][1] >= 3
        assert c.api_versions(version=0)[0] == 0


def test_huge_and_negative_sizes_inside_requests(strict):
    cases = [
        (3, 1, struct.pack(">i", 0x7FFFFFFF)),                                  # Metadata: 2^31 topics
        (3, 1, struct.pack(">i", 1) + struct.pack(">h", 32000) + b"abc"),       # string longer than the frame
        (0, 3, kwire.string(None) + struct.pack(">hii", 1, 1000, 1) + kwire.string("t")
         + struct.pack(">iii", 1, 0, -5)),                                        # negative records size
        (0, 3, kwire.string(None) + struct.pack(">hii", 1, 1000, -7)),           # negative topic count
        (1, 4, struct.pack(">iiiib", -1, 100, 1, 1000, 0) + struct.pack(">i", 0x40000000)),  # Fetch: 2^30 topics
    ]
    for api_key, version, body in cases:
        with kwire.Connection(strict.bootstrap) as c:
            c.send(api_key, version, body)
            assert c.is_closed_by_peer(), (api_key, body)
    still_serving(strict)


def test_bad_crc_is_corrupt_message_and_nothing_is_appended(strict):
    with kwire.Connection(strict.bootstrap) as c:
        good = kwire.record_batch([b"a", b"b"])
        assert c.produce("t", 1, good) == (0, 0)
        bad = bytearray(kwire.record_batch([b"c"]))
        bad[-3] ^= 0xFF
        assert c.produce("t", 1, bytes(bad))[0] == 2  # CORRUPT_MESSAGE
        # An incomplete batch is no batch: INVALID_RECORD, as Kafka 4.4 answers (checked against it).
        assert c.produce("t", 1, good[:40])[0] == 87
        assert c.produce("t", 1, good[:-5])[0] == 87
        assert c.produce("t", 1, good) == (0, 2), "the corrupt batches took no offsets"
    out = kcat(strict, "-C", "-t", "t", "-p", "1", "-e", "-q", "-f", "%s\n")
    assert out == b"a\nb\na\nb\n"


def test_batch_shape_errors(strict):
    create_topic(strict, "small", config={"max.message.bytes": "1000"})
    with kwire.Connection(strict.bootstrap) as c:
        too_big = kwire.record_batch([b"x" * 5000])
        assert c.produce("small", 0, too_big)[0] == 10  # MESSAGE_TOO_LARGE
        two = kwire.record_batch([b"1"]) + kwire.record_batch([b"2"])
        assert c.produce("t", 0, two)[0] == 87  # INVALID_RECORD
        assert c.produce("t", 0, kwire.record_batch([b"x"]), acks=5)[0] == 21  # INVALID_REQUIRED_ACKS


def test_unknown_topics_and_partitions(strict):
    with kwire.Connection(strict.bootstrap) as c:
        assert c.produce("missing", 0, kwire.record_batch([b"x"]))[0] == 3
        assert c.produce("t", 2, kwire.record_batch([b"x"]))[0] == 3
        assert c.produce("t", -1, kwire.record_batch([b"x"]))[0] == 3
    still_serving(strict)


def test_acks_0_failure_closes_the_connection(strict):
    with kwire.Connection(strict.bootstrap) as c:
        assert c.produce("t", 0, kwire.record_batch([b"ok"]), acks=0) is None
        assert c.api_versions()[0] == 0, "a good acks=0 produce keeps the connection"
        c.produce("missing", 0, kwire.record_batch([b"x"]), acks=0)
        assert c.is_closed_by_peer()
    still_serving(strict)


def test_idempotent_sequences(strict):
    pid = 4242
    with kwire.Connection(strict.bootstrap) as c:
        first = kwire.record_batch([b"a", b"b", b"c"], producer_id=pid, epoch=0, base_seq=0)
        assert c.produce("t", 0, first) == (0, 0)
        assert c.produce("t", 0, first) == (0, 0), "a duplicate is acknowledged with its first offset"
        second = kwire.record_batch([b"d"], producer_id=pid, epoch=0, base_seq=3)
        assert c.produce("t", 0, second) == (0, 3)
        gap = kwire.record_batch([b"e"], producer_id=pid, epoch=0, base_seq=10)
        assert c.produce("t", 0, gap)[0] == 45  # OUT_OF_ORDER_SEQUENCE_NUMBER
        assert c.produce("t", 0, kwire.record_batch([b"e"], producer_id=pid, epoch=0, base_seq=4)) == (0, 4)
        bumped = kwire.record_batch([b"f"], producer_id=pid, epoch=1, base_seq=0)
        assert c.produce("t", 0, bumped) == (0, 5), "a new epoch starts again at sequence 0"
        fenced = kwire.record_batch([b"g"], producer_id=pid, epoch=0, base_seq=5)
        assert c.produce("t", 0, fenced)[0] == 47  # INVALID_PRODUCER_EPOCH
    out = kcat(strict, "-C", "-t", "t", "-p", "0", "-e", "-q", "-f", "%s")
    assert out == b"abcdef", "the duplicate was not appended twice"


def test_idle_connections_are_closed(strict):
    with kwire.Connection(strict.bootstrap) as c:
        assert c.api_versions()[0] == 0
        start = time.time()
        assert c.is_closed_by_peer(timeout_s=10)
        assert 1.0 < time.time() - start < 8
    still_serving(strict)


def test_a_long_poll_is_not_idleness(strict):
    # Fetch v4 on an empty partition, waiting 3 s: longer than connections.max.idle.ms (1.5 s).
    body = struct.pack(">iiiib", -1, 3000, 1, 1 << 20, 0) + struct.pack(">i", 1) + kwire.string("t")
    body += struct.pack(">iiqi", 1, 1, 0, 1 << 20)
    with kwire.Connection(strict.bootstrap) as c:
        start = time.time()
        correlation_id = c.send(1, 4, body)
        got_id, _ = c.recv()
        assert got_id == correlation_id
        assert time.time() - start >= 2.5, "the fetch waited for data"


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@sluice_only("connection gauge and RSS")
def test_a_thousand_idle_connections(make_broker):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    b = make_broker()
    create_topic(b, "t")
    rss_before = rss_kib(b.proc.pid)
    conns = [socket.create_connection(("127.0.0.1", b.port)) for _ in range(1000)]
    try:
        kwire.wait_for(lambda: b.open_connections() >= 1000, what="the broker to accept 1000 connections")
        still_serving(b)
        grown_mib = (rss_kib(b.proc.pid) - rss_before) / 1024
        assert grown_mib < 100, f"1000 idle connections cost {grown_mib:.0f} MiB"
    finally:
        for s in conns:
            s.close()
    still_serving(b)
