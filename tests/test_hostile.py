"""Hostile clients, over raw sockets: oversized strings, array counts far above
the payload, negative lengths and frames cut short, for every API the broker
advertises and every version, while a bystander keeps producing and consuming
on its own connections. Each hostile request gets an answer or a clean close,
the broker stays up and bounded, and the bystander loses nothing."""

import struct
import subprocess
import threading
from pathlib import Path

from confluent_kafka import Producer

import kwire
from clients import consume_all, create_topic
from conftest import ROOT, SLUICE_BIN, sluice_only

ANSWER_TIMEOUT_S = 15
FENCE_API, FENCE_VERSION = 18, 0  # ApiVersions v0: answered whatever came before
NAME_BYTES_OVER = 33_000  # past every int16 string, below the frame limit
BYSTANDER_RECORDS = 3000
# Corpus bodies are long: the first bytes hold the counts and names that matter.
CORPUS_POSITIONS_MAX = 48
RSS_GROWTH_MAX_KB = 256 * 1024

HOSTILE_CONFIG = '"group.initial.rebalance.delay.ms" = 0\n'


def sample_requests():
    """(key, version, body) with default fields for every advertised API and version."""
    out = subprocess.run([SLUICE_BIN, "debug", "sample-requests"], capture_output=True, text=True, check=True)
    rows = []
    for line in out.stdout.splitlines():
        key, version, body = line.split(" ")
        rows.append((int(key), int(version), bytes.fromhex(body)))
    return rows


def corpus_requests():
    """Bodies real clients sent (the fuzz seed corpus): key, version, body."""
    rows = []
    for path in sorted((ROOT / "fuzz" / "corpus" / "request_decode").iterdir()):
        data = path.read_bytes()
        key, version = struct.unpack(">hh", data[:4])
        rows.append((key, version, data[4:]))
    return rows


def flexible_header(key, version):
    """Whether the request header carries tagged fields (header v2), from ApiVersions' view."""
    first_flexible = {0: 9, 1: 12, 2: 6, 3: 9, 8: 8, 9: 6, 10: 3, 11: 6, 12: 4, 13: 4, 14: 4, 15: 5, 16: 3,
                      18: 3, 19: 5, 20: 4, 22: 2, 23: 4, 32: 4, 33: 2, 35: 2, 37: 2, 42: 2, 43: 2, 44: 1,
                      45: 0, 46: 0, 47: 99, 60: 0, 64: 0, 68: 0, 69: 0}
    return version >= first_flexible.get(key, 99)


def mutations(body, flexible, positions):
    """Every hostile variant of `body`: cut short at each position; at each
    position an oversized string, a count of 2^31-1, a negative length."""
    for p in positions:
        yield "cut", body[:p]
        if flexible:
            yield "long-string", body[:p] + kwire.uvarint(NAME_BYTES_OVER + 1) + b"g" * NAME_BYTES_OVER + body[p + 1:]
            yield "huge-count", body[:p] + kwire.uvarint(0xFFFFFFFF) + body[p + 1:]
        else:
            yield "long-string", body[:p] + struct.pack(">h", 32767) + b"g" * 32767 + body[p + 2:]
            yield "negative", body[:p] + struct.pack(">i", -2) + body[p + 4:]
        yield "huge-count", body[:p] + struct.pack(">i", 0x7FFFFFFF) + body[p + 4:]


class Prober:
    """Sends one hostile frame and then an ApiVersions fence; the frame has
    been dealt with once the fence is answered or the connection closed."""

    def __init__(self, bootstrap):
        self.bootstrap = bootstrap
        self.conn = None
        self.answered = self.closed = 0

    def probe(self, key, version, body):
        if self.conn is None:
            self.conn = kwire.Connection(self.bootstrap, timeout_s=ANSWER_TIMEOUT_S)
        flexible = flexible_header(key, version)
        try:
            self.conn.send(key, version, body, header_tags=flexible)
            fence = self.conn.send(FENCE_API, FENCE_VERSION, b"")
            while True:
                correlation_id, _ = self.conn.recv()
                if correlation_id == fence:
                    self.answered += 1
                    return
        except (ConnectionError, BrokenPipeError, ConnectionResetError):
            self.closed += 1
            self.conn.close()
            self.conn = None
        except TimeoutError as e:
            raise AssertionError(f"api {key} v{version}: neither an answer nor a close in "
                                 f"{ANSWER_TIMEOUT_S}s ({len(body)} bytes)") from e


def rss_kb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def bystander(bootstrap, delivered, errors, stop):
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 1, "enable.idempotence": True})

    def on_delivery(err, msg):
        (errors if err else delivered).append(msg.value())

    i = 0
    while not stop.is_set() or i < BYSTANDER_RECORDS:
        if i < BYSTANDER_RECORDS:
            p.produce("bystander", value=f"{i:06d}".encode(), on_delivery=on_delivery)
            i += 1
        p.poll(0.002)
    p.flush(30)


@sluice_only("RSS bound (Kafka's JVM heap grows by hundreds of MB)")
def test_every_api_survives_hostile_bodies_and_a_bystander_loses_nothing(make_broker):
    broker = make_broker(config=HOSTILE_CONFIG)
    create_topic(broker, "bystander", partitions=3)
    delivered, errors, stop = [], [], threading.Event()
    t = threading.Thread(target=bystander, args=(broker.bootstrap, delivered, errors, stop))
    t.start()
    rss_before = rss_kb(broker.proc.pid)
    prober = Prober(broker.bootstrap)
    kinds = {}
    try:
        for key, version, body in sample_requests():
            flexible = flexible_header(key, version)
            for kind, mutated in mutations(body, flexible, range(len(body) + 1)):
                prober.probe(key, version, mutated)
                kinds[kind] = kinds.get(kind, 0) + 1
        for key, version, body in corpus_requests():
            flexible = flexible_header(key, version)
            for kind, mutated in mutations(body, flexible, range(min(len(body), CORPUS_POSITIONS_MAX) + 1)):
                prober.probe(key, version, mutated)
                kinds[kind] = kinds.get(kind, 0) + 1
    finally:
        stop.set()
        t.join(60)
    print(f"hostile requests: {kinds}, answered {prober.answered}, closed {prober.closed}")
    assert set(kinds) >= {"cut", "long-string", "huge-count", "negative"}, kinds
    assert prober.answered > 0 and prober.closed > 0, (prober.answered, prober.closed)
    assert broker.proc.poll() is None, "the broker survived"
    grown_kb = rss_kb(broker.proc.pid) - rss_before
    assert grown_kb < RSS_GROWTH_MAX_KB, f"RSS grew {grown_kb} KiB under hostile requests"
    assert errors == [], f"bystander deliveries failed: {errors[:5]}"
    assert len(delivered) == BYSTANDER_RECORDS
    values = {m.value() for m in consume_all(broker, "bystander", 3, BYSTANDER_RECORDS)}
    assert values == {f"{i:06d}".encode() for i in range(BYSTANDER_RECORDS)}


def offset_commit_v8(conn, group, topic, partition, offset):
    """OffsetCommit v8 (flexible), generation -1 (a commit outside any membership)."""
    body = kwire.compact_string(group) + struct.pack(">i", -1) + kwire.compact_string("") + b"\x00"  # member, instance
    body += kwire.uvarint(2) + kwire.compact_string(topic) + kwire.uvarint(2)
    body += struct.pack(">iqi", partition, offset, -1) + kwire.compact_string("") + b"\x00"  # metadata, tags
    body += b"\x00" + b"\x00"  # topic tags, request tags
    conn.send(8, 8, body, header_tags=True)
    _, resp = conn.recv()
    r = kwire.Reader(resp)
    r.tags()
    r.i32()  # throttle
    assert r.uvarint() == 2
    r.compact_string()
    assert r.uvarint() == 2
    r.i32()
    return r.i16()


def java_hash_partition(group, partitions=50):
    h = 0
    for ch in group:
        h = (31 * h + ord(ch)) & 0xFFFFFFFF
    h = h - (1 << 32) if h >= 1 << 31 else h
    return (abs(h) if h != -(1 << 31) else 0) % partitions


def test_oversized_group_id_is_refused_and_its_offsets_partition_keeps_working(make_broker):
    """Kafka 4.4 (the oracle, run side by side) closes the connection of a
    request with a string over 32,767 bytes, flexible versions included, and
    accepts a group id of exactly 32,767 bytes. So does Sluice; a group on
    the same __consumer_offsets partition keeps committing."""
    broker = make_broker()
    create_topic(broker, "t")
    hostile = "h" * NAME_BYTES_OVER
    victim = next(f"victim-{i}" for i in range(10_000)
                  if java_hash_partition(f"victim-{i}") == java_hash_partition(hostile))
    with kwire.Connection(broker.bootstrap) as conn:
        # FindCoordinator v3 first, as a client would: closed, as Kafka does.
        conn.send(10, 3, kwire.compact_string(hostile) + b"\x00" + b"\x00", header_tags=True)
        assert conn.is_closed_by_peer()
    with kwire.Connection(broker.bootstrap) as conn:
        try:
            offset_commit_v8(conn, hostile, "t", 0, 5)
            raise AssertionError("an OffsetCommit with a 33,000-byte group id was answered")
        except ConnectionError:
            pass
    longest = "l" * 32_767
    with kwire.Connection(broker.bootstrap) as conn:
        # The offsets topic is created by the first FindCoordinator; wait until it serves.
        kwire.wait_for(lambda: conn.find_coordinator(victim)[0] == 0, timeout_s=30,
                       what="the coordinator to become available")
        assert offset_commit_v8(conn, longest, "t", 0, 3) == 0, "32,767 bytes is a valid group id"
        assert offset_commit_v8(conn, victim, "t", 0, 7) == 0
    assert "panicked" not in broker.log()
    metrics = broker.metrics_text()
    assert 'sluice_task_panics_total{task="group_writer"} 0' in metrics


@sluice_only("connection metrics")
def test_connections_over_the_limits_are_closed(make_broker):
    broker = make_broker(config='"max.connections.per.ip" = 3\n"max.connections" = 5\n')
    # The readiness probe's connection counts until the broker has seen it close.
    kwire.wait_for(lambda: broker.open_connections() == 0, what="the readiness probe's connection to be released")
    held = [kwire.Connection(broker.bootstrap) for _ in range(3)]
    for c in held:
        assert c.api_versions()[0] == 0
    extra = kwire.Connection(broker.bootstrap)
    assert extra.is_closed_by_peer(), "a fourth connection from 127.0.0.1 is closed"
    for c in held:
        assert c.api_versions()[0] == 0, "the admitted connections keep being served"
    held.pop().close()

    def admitted():
        try:
            with kwire.Connection(broker.bootstrap) as again:
                return again.api_versions()[0] == 0
        except (ConnectionError, OSError):
            return False

    kwire.wait_for(admitted, timeout_s=10, what="a freed slot to be given out again")
    metrics = broker.metrics_text()
    refused = int(next(l for l in metrics.splitlines() if l.startswith("sluice_connections_refused_total ")).split()[1])
    assert refused >= 1
    assert "sluice_connections_max 5" in metrics
    for c in held:
        c.close()


@sluice_only("request-bytes gauges")
def test_queued_request_bytes_budget_is_reported_and_released(make_broker):
    broker = make_broker(config='"queued.max.request.bytes" = 4000000\n', shards=2)
    metrics = broker.metrics_text()
    assert 'sluice_queued_request_bytes_max{shard="0"} 2000000' in metrics
    create_topic(broker, "q")
    with kwire.Connection(broker.bootstrap) as conn:
        for i in range(50):
            err, _ = conn.produce("q", 0, kwire.record_batch([b"x" * 50_000]), acks=1)
            assert err == 0
    metrics = broker.metrics_text()
    for line in metrics.splitlines():
        if line.startswith("sluice_queued_request_bytes{"):
            assert line.endswith(" 0"), f"answered requests release their bytes: {line}"


def test_flush_policy_fsyncs_rolled_segments_and_reports_flushed_offsets(make_broker):
    broker = make_broker(config='"log.flush.interval.messages" = 10\n')
    create_topic(broker, "f", config={"segment.bytes": "20000"})
    with kwire.Connection(broker.bootstrap) as conn:
        for i in range(40):
            assert conn.produce("f", 0, kwire.record_batch([b"y" * 1000]), acks=1)[0] == 0
    def flushed_to_40():
        metrics = broker.metrics_text()
        flushed = next(l for l in metrics.splitlines() if l.startswith('sluice_partition_flushed_offset{topic="f"'))
        fsyncs = int(next(l for l in metrics.splitlines() if l.startswith("sluice_log_fsyncs_total ")).split()[1])
        return flushed.endswith(" 40") and fsyncs

    fsyncs = kwire.wait_for(flushed_to_40, timeout_s=10, what="the flushed offset to reach 40")
    # 40 messages at flush.messages = 10: four flushes at least, and the rolled segments too.
    segments = len(list((broker.data_dir / "f-0").glob("*.log")))
    assert segments > 1
    assert fsyncs >= 4, fsyncs
