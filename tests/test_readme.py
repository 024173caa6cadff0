"""The README's commands, run as written (on free ports: the machine is shared)."""

import os
import re
import signal
import struct
import subprocess
import time
import urllib.request
from pathlib import Path

import kwire
from conftest import ROOT, SLUICE_BIN, free_ports

START_TIMEOUT_S = 60


def readme_block(starts_with):
    """The lines of the README's shell block whose first line starts with `starts_with`."""
    text = (ROOT / "README.md").read_text()
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        if block.startswith(starts_with):
            return block
    raise AssertionError(f"no README block starts with {starts_with!r}")


def metadata_broker_ids(bootstrap):
    """Broker ids in a Metadata v1 response (no topics asked)."""
    with kwire.Connection(bootstrap, timeout_s=2) as conn:
        body = conn.metadata([], version=1)
    r = kwire.Reader(body)
    ids = []
    for _ in range(r.i32()):
        ids.append(r.i32())
        r.take(r.i16())  # host
        r.i32()  # port
        rack = r.i16()
        if rack > 0:
            r.take(rack)
    return sorted(ids)


def test_three_node_example_runs_as_written(tmp_path):
    block = readme_block("Q=1@")
    ports = sorted(set(re.findall(r"127\.0\.0\.1:(\d+)", block)))
    assert len(ports) == 9, f"listener, controller and metrics port per node: {ports}"
    mapping = dict(zip(ports, map(str, free_ports(len(ports)))))
    script = re.sub(r"127\.0\.0\.1:(\d+)", lambda m: f"127.0.0.1:{mapping[m.group(1)]}", block)
    env = {**os.environ, "PATH": f"{Path(SLUICE_BIN).parent}:{os.environ['PATH']}"}
    log = open(tmp_path / "nodes.log", "w")
    proc = subprocess.Popen(["bash", "-c", script + "\nwait\n"], cwd=tmp_path, env=env,
                            stdout=log, stderr=log, start_new_session=True)
    first = f"127.0.0.1:{mapping['9092']}"
    try:
        deadline = time.time() + START_TIMEOUT_S
        seen = None
        while time.time() < deadline:
            assert proc.poll() is None, (tmp_path / "nodes.log").read_text()
            try:
                seen = metadata_broker_ids(first)
                if seen == [1, 2, 3]:
                    break
            except (OSError, ValueError, struct.error):
                pass
            time.sleep(0.2)
        assert seen == [1, 2, 3], f"brokers seen {seen}:\n{(tmp_path / 'nodes.log').read_text()[-3000:]}"
        for port in ("9644", "9645", "9646"):
            text = urllib.request.urlopen(f"http://127.0.0.1:{mapping[port]}/metrics", timeout=5).read().decode()
            assert "sluice_connections_max" in text
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    log_text = (tmp_path / "nodes.log").read_text()
    assert "Address already in use" not in log_text, log_text[-3000:]
    assert "panicked" not in log_text, log_text[-3000:]


def test_port_clash_names_the_setting(tmp_path):
    """Two brokers on one metrics port: the second says which setting to change."""
    port, metrics, port2 = free_ports(3)
    first = subprocess.Popen([SLUICE_BIN, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", str(tmp_path / "a"),
                              "--metrics-listen", f"127.0.0.1:{metrics}"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        assert kwire.wait_until_serving(f"127.0.0.1:{port}", START_TIMEOUT_S)
        second = subprocess.run([SLUICE_BIN, "serve", "--listen", f"127.0.0.1:{port2}", "--data-dir",
                                 str(tmp_path / "b"), "--metrics-listen", f"127.0.0.1:{metrics}"],
                                capture_output=True, text=True, timeout=30)
        assert second.returncode != 0
        assert "metrics.listener, --metrics-listen" in second.stderr, second.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=30)
