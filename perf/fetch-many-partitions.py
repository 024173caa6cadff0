"""Broker CPU per Fetch naming many partitions: one Fetch for N partitions of
one topic, and one for 1 partition of each of N topics, each against a fresh
broker holding just them. Prints CPU milliseconds per request for each shape.

    .venv/bin/python perf/fetch-many-partitions.py target/release/sluice [N] [requests]

A partition holds three open files (log and two indexes), so N is bounded by
the open-file limit: `ulimit -Hn` is 20,000 on these machines and cannot be
raised inside the sandbox, which caps N near 6,000 (10,000 needs 30,000 files).
"""

import os
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import kwire  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

FETCH_VERSION = 11
CREATE_BATCH = 100


def cpu_s(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fetch_body(topics):
    """Fetch v11, max_wait 0, min_bytes 0: [(topic, [partitions])]."""
    body = struct.pack(">iiiib", -1, 0, 0, 1 << 20, 0) + struct.pack(">ii", 0, -1)
    body += struct.pack(">i", len(topics))
    for name, partitions in topics:
        body += kwire.string(name) + struct.pack(">i", len(partitions))
        for p in partitions:
            body += struct.pack(">iiqqi", p, -1, 0, -1, 1 << 20)
    return body + struct.pack(">i", 0) + kwire.string("")


def measure(binary, label, new_topics, fetched, requests):
    with tempfile.TemporaryDirectory() as tmp:
        port = kwire.free_port()
        bootstrap = f"127.0.0.1:{port}"
        broker = subprocess.Popen([binary, "serve", "--listen", bootstrap, "--data-dir", f"{tmp}/d",
                                   "--metrics-listen", f"127.0.0.1:{kwire.free_port()}"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            assert kwire.wait_until_serving(bootstrap)
            admin = AdminClient({"bootstrap.servers": bootstrap})
            for at in range(0, len(new_topics), CREATE_BATCH):
                for f in admin.create_topics(new_topics[at:at + CREATE_BATCH], request_timeout=600).values():
                    f.result(600)
            body = fetch_body(fetched)
            with kwire.Connection(bootstrap, timeout_s=120) as conn:
                conn.send(1, FETCH_VERSION, body)
                conn.recv()  # warm
                before = cpu_s(broker.pid)
                started = time.time()
                for _ in range(requests):
                    conn.send(1, FETCH_VERSION, body)
                    conn.recv()
                cpu_ms = (cpu_s(broker.pid) - before) * 1000 / requests
                wall_ms = (time.time() - started) * 1000 / requests
            print(f"{label}: broker CPU {cpu_ms:.1f} ms/request, wall {wall_ms:.1f} ms/request", flush=True)
        finally:
            broker.terminate()
            broker.wait(120)


def main():
    binary = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 6000
    requests = int(sys.argv[3]) if len(sys.argv) > 3 else 20
    measure(binary, f"1 topic x {n} partitions", [NewTopic("wide", n, 1)], [("wide", list(range(n)))], requests)
    measure(binary, f"{n} topics x 1 partition", [NewTopic(f"t{i}", 1, 1) for i in range(n)],
            [(f"t{i}", [0]) for i in range(n)], requests)


if __name__ == "__main__":
    main()
