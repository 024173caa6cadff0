"""Builds the fuzz targets' seed corpora from real clients' traffic.

Starts the real broker, puts a recording TCP proxy in front of it, and runs
confluent-kafka (librdkafka) and kafka-python through the proxy: admin calls,
produce, a consumer group that commits, a KIP-848 consumer. Every request frame
is kept; record batches and `__consumer_offsets` records come from the segment
files the broker wrote. Run from the repository root:

    .venv/bin/python fuzz/record_corpus.py [target/debug/sluice]
"""

import hashlib
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import kwire  # noqa: E402
from confluent_kafka import Consumer, Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, ConfigResource, NewPartitions, NewTopic  # noqa: E402

CORPUS = ROOT / "fuzz" / "corpus"
PRODUCE = 0
FILES_PER_TARGET_MAX = 400
SEGMENT_BYTES_MAX = 256 * 1024


def keep(target, data):
    out = CORPUS / target
    out.mkdir(parents=True, exist_ok=True)
    if len(list(out.iterdir())) >= FILES_PER_TARGET_MAX:
        return
    (out / hashlib.sha1(data).hexdigest()).write_bytes(data)


def record_frame(frame):
    keep("request_header", frame)
    api_key, version = struct.unpack(">hh", frame[:4])
    (client_id_len,) = struct.unpack(">h", frame[8:10])
    body = frame[10 + max(client_id_len, 0):]
    # Header v2 ends with tagged fields; real clients send none (one 0 byte).
    # Both forms go in, and the decoder sorts out which is the body.
    keep("request_decode", frame[:4] + body)
    if body[:1] == b"\x00":
        keep("request_decode", frame[:4] + body[1:])
    if api_key == PRODUCE and 3 <= version <= 11:
        start = 1 if version >= 9 and body[:1] == b"\x00" else 0
        keep("produce_request", bytes([version - 3]) + body[start:])


def pump(src, dst, on_frame):
    buf = b""
    while True:
        try:
            chunk = src.recv(65536)
        except OSError:
            break
        if not chunk:
            break
        dst.sendall(chunk)
        if on_frame is None:
            continue
        buf += chunk
        while len(buf) >= 4:
            (size,) = struct.unpack(">i", buf[:4])
            if len(buf) < 4 + size:
                break
            on_frame(buf[4:4 + size])
            buf = buf[4 + size:]
    for s in (src, dst):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def proxy(listen, upstream):
    while True:
        client, _ = listen.accept()
        server = socket.create_connection(upstream)
        threading.Thread(target=pump, args=(client, server, record_frame), daemon=True).start()
        threading.Thread(target=pump, args=(server, client, None), daemon=True).start()


def drive(bootstrap):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic("corpus", 3, 1, config={"segment.bytes": "65536"})]).values():
        f.result(30)
    admin.create_partitions([NewPartitions("corpus", 4)])["corpus"].result(30)
    admin.describe_configs([ConfigResource("topic", "corpus")])
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
    for i in range(2000):
        p.produce("corpus", value=b"v" * (i % 200), key=str(i % 17).encode(), headers={"h": b"x"})
    p.flush(30)
    for codec in ("gzip", "zstd"):
        p = Producer({"bootstrap.servers": bootstrap, "compression.type": codec, "acks": "1"})
        for i in range(300):
            p.produce("corpus", value=b"compressible " * 20)
        p.flush(30)
    for protocol in ("classic", "consumer"):
        conf = {"bootstrap.servers": bootstrap, "group.id": f"corpus-{protocol}", "auto.offset.reset": "earliest",
                "group.protocol": protocol}
        if protocol == "classic":
            conf["session.timeout.ms"] = 6000
        c = Consumer(conf)
        c.subscribe(["corpus"])
        got, deadline = 0, time.time() + 30
        while got < 2600 and time.time() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                got += 1
        c.commit(asynchronous=False)
        c.close()
    admin.list_consumer_groups().result(10)
    admin.delete_topics(["corpus-missing"])
    try:
        from kafka import KafkaAdminClient, KafkaConsumer

        ka = KafkaAdminClient(bootstrap_servers=bootstrap)
        for call, args in (("list_groups", ()), ("list_consumer_groups", ()),
                           ("describe_consumer_groups", (["corpus-classic"],)),
                           ("list_consumer_group_offsets", ("corpus-classic",))):
            if hasattr(ka, call):
                getattr(ka, call)(*args)
        ka.close()
        kc = KafkaConsumer("corpus", bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                           consumer_timeout_ms=3000)
        try:
            for _ in kc:
                pass
        except Exception as e:  # kafka-python lacks zstd here; what it sent so far is kept
            print(f"kafka-python consumer stopped: {e}")
        kc.close()
    except ImportError:
        pass


def batches(segment):
    at = 0
    while at + 12 <= len(segment):
        (length,) = struct.unpack(">i", segment[at + 8:at + 12])
        end = at + 12 + length
        if length <= 0 or end > len(segment):
            break
        yield segment[at:end]
        at = end


def from_segments(data_dir):
    for log in sorted(data_dir.glob("*/*.log")):
        data = log.read_bytes()
        if 0 < len(data) <= SEGMENT_BYTES_MAX:
            keep("segment_recovery", data)
            keep("segment_recovery", data[: len(data) * 2 // 3])  # a torn tail
        for batch in batches(data):
            if log.parent.name.startswith("__consumer_offsets"):
                keep("offsets_records", b"\x03" + batch)
            else:
                keep("record_batch", b"\x00" + batch)


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "target" / "debug" / "sluice")
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        port, metrics, proxy_port = kwire.free_port(), kwire.free_port(), kwire.free_port()
        broker = subprocess.Popen([binary, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", str(data_dir),
                                   "--metrics-listen", f"127.0.0.1:{metrics}"], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        try:
            assert kwire.wait_until_serving(f"127.0.0.1:{port}", 30)
            listen = socket.socket()
            listen.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listen.bind(("127.0.0.1", proxy_port))
            listen.listen(64)
            threading.Thread(target=proxy, args=(listen, ("127.0.0.1", port)), daemon=True).start()
            # Clients must come back through the proxy: advertise nothing else.
            broker.terminate()
            broker.wait(30)
            broker = subprocess.Popen([binary, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir",
                                       str(data_dir), "--metrics-listen", f"127.0.0.1:{metrics}",
                                       "--advertised-listener", f"127.0.0.1:{proxy_port}"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1)
            drive(f"127.0.0.1:{proxy_port}")
        finally:
            broker.terminate()
            broker.wait(30)
        from_segments(data_dir)
    for target in sorted(p.name for p in CORPUS.iterdir()):
        print(target, len(list((CORPUS / target).iterdir())))


if __name__ == "__main__":
    main()
