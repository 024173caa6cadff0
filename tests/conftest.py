"""Fixtures that run the real `sluice` binary on a free loopback port with its own data dir."""

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

import kwire

ROOT = Path(__file__).resolve().parents[1]
SLUICE_BIN = os.environ.get("SLUICE_BIN") or str(ROOT / "target" / "debug" / "sluice")
# `ci/test --against kafka`: the broker fixtures start Apache Kafka 4.4 (perf/peer-kafka.sh)
# instead, so a test's expectations can be checked against Kafka's own behaviour.
AGAINST = os.environ.get("SLUICE_AGAINST", "sluice")


def sluice_only(what):
    """Marks a test of something only Sluice has (`what`: its metrics endpoint, its files, its
    CLI): against Kafka it is skipped, saying so, instead of failing for want of it."""
    return pytest.mark.skipif(AGAINST == "kafka", reason=f"checks Sluice's own {what}")


def free_port():
    return free_ports(1)[0]


# Ports given out in this session. A port is free only until its process
# binds it, and the kernel may hand a just-closed port out again: a cluster's
# controller ports are chosen before its brokers pick theirs.
_handed_out = set()
PORT_ATTEMPTS_MAX = 1000


def free_ports(n):
    """n free ports, distinct from each other and from every port handed out
    before in this session (the unwanted ones stay bound while searching)."""
    sockets, ports = [], []
    try:
        for _ in range(PORT_ATTEMPTS_MAX):
            if len(ports) == n:
                break
            s = socket.socket()
            sockets.append(s)
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            if port not in _handed_out:
                ports.append(port)
                _handed_out.add(port)
        assert len(ports) == n, f"no {n} unused free ports after {PORT_ATTEMPTS_MAX} tries"
        return ports
    finally:
        for s in sockets:
            s.close()


class BrokerProcess:
    """What Broker and KafkaPeer share: a process with start(), stop(sig) and `proc`."""

    def kill9(self):
        return self.stop(signal.SIGKILL)

    def restart(self):
        self.stop()
        return self.start()

    def cpu_seconds(self):
        """utime + stime of the broker process, from /proc."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks


class Broker(BrokerProcess):
    """One broker process. `config` is TOML text with Kafka's setting names."""

    def __init__(self, data_dir, config="", shards=2, extra_args=(), host="127.0.0.1", prefix=()):
        self.data_dir = Path(data_dir)
        self.config = config
        self.shards = shards
        self.extra_args = list(extra_args)
        # A broker in a network namespace: `ip netns exec NS` before the command, its own address.
        self.host = host
        self.prefix = list(prefix)
        self.port, self.metrics_port = free_ports(2)
        self.proc = None
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}-broker.log"
        self.starts = 0

    @property
    def bootstrap(self):
        return f"{self.host}:{self.port}"

    def start(self, timeout_s=30):
        args = [*self.prefix, SLUICE_BIN, "serve", "--listen", self.bootstrap, "--data-dir", str(self.data_dir),
                "--shards", str(self.shards), "--metrics-listen", f"127.0.0.1:{self.metrics_port}",
                *self.extra_args]
        if self.config:
            path = self.data_dir.parent / f"{self.data_dir.name}.toml"
            path.write_text(self.config)
            args += ["--config", str(path)]
        self.starts += 1
        log = open(self.log_path, "a")
        log.write(f"\n--- start {self.starts}\n")
        log.flush()
        self.proc = subprocess.Popen(args, stdout=log, stderr=log, env={**os.environ, "RUST_LOG": "info"})
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            assert self.proc.poll() is None, f"broker exited early:\n{self.log()}"
            try:
                with kwire.Connection(self.bootstrap, timeout_s=2) as conn:
                    conn.api_versions()
                return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"broker did not answer within {timeout_s}s:\n{self.log()}")

    def stop(self, sig=signal.SIGTERM, timeout_s=20):
        if self.proc is None:
            return None
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout_s)
        self.proc = None
        return code

    def log(self):
        return self.log_path.read_text() if self.log_path.exists() else ""

    def metrics_text(self):
        """The broker's Prometheus exposition, as text."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        return urllib.request.urlopen(url, timeout=5).read().decode()

    def open_connections(self):
        """Client connections the broker holds now (its `sluice_connections` gauge)."""
        lines = self.metrics_text().splitlines()
        return sum(int(l.split()[1]) for l in lines if l.startswith("sluice_connections{"))


class KafkaPeer(BrokerProcess):
    """Apache Kafka 4.4 in place of a Broker (`ci/test --against kafka`): one KRaft node with
    id 0, as a single Sluice broker has. The TOML `config` of Kafka setting names becomes
    server.properties lines; what only Sluice has (its metrics endpoint, its files) is absent."""

    SCRIPT = str(ROOT / "perf" / "peer-kafka.sh")

    def __init__(self, data_dir, config=""):
        self.data_dir = Path(data_dir)
        self.config = config
        self.proc = None
        self.port = None
        self.metrics_port = None
        self.started = False

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"

    def _env(self, out):
        values = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        self.port = int(values["BOOTSTRAP"].split(":")[1])
        self.proc = _Pid(int(values["PIDS"].strip('"').split()[0]))

    def start(self, timeout_s=120):
        if self.started:
            out = subprocess.run([self.SCRIPT, "resume", str(self.data_dir)], capture_output=True, text=True,
                                 timeout=timeout_s, check=True).stdout
        else:
            properties = self.data_dir.parent / f"{self.data_dir.name}.properties"
            properties.write_text(toml_to_properties(self.config))
            out = subprocess.run([self.SCRIPT, "start", "--dir", str(self.data_dir), "--first-id", "0",
                                  "--kafka-defaults", "--properties", str(properties)], capture_output=True, text=True,
                                 timeout=timeout_s, check=True).stdout
            self.started = True
        self._env(out)
        return self

    def stop(self, sig=signal.SIGTERM, timeout_s=40):
        if self.proc is None:
            return None
        if sig == signal.SIGKILL:
            os.kill(self.proc.pid, signal.SIGKILL)
        else:
            subprocess.run([self.SCRIPT, "stop", str(self.data_dir)], timeout=timeout_s, check=True)
        self.proc = None
        return 0

    def log(self):
        path = self.data_dir / "node1" / "kafka.log"
        return path.read_text() if path.exists() else ""

    def metrics_text(self):
        raise AssertionError("Apache Kafka has no Prometheus endpoint of Sluice's")

    def open_connections(self):
        raise AssertionError("Apache Kafka does not export Sluice's connection gauge")


class _Pid:
    """What tests read of a Popen: the pid, and whether it still runs."""

    def __init__(self, pid):
        self.pid = pid

    def poll(self):
        return None if Path(f"/proc/{self.pid}").exists() else 0


def toml_to_properties(config):
    """`"key" = value` lines of Kafka setting names as server.properties lines."""
    lines = []
    for line in config.splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = (part.strip() for part in line.split("=", 1))
            lines.append(f"{key.strip(chr(34))}={value.strip(chr(34))}")
    return "\n".join(lines) + "\n"


@pytest.fixture
def make_broker(tmp_path):
    brokers = []

    def make(config="", shards=2, name="data"):
        if AGAINST == "kafka":
            b = KafkaPeer(tmp_path / name, config=config)
        else:
            b = Broker(tmp_path / name, config=config, shards=shards)
        brokers.append(b)
        return b.start()

    yield make
    for b in brokers:
        if b.proc is not None:
            code = b.stop()
            assert code == 0, f"broker did not shut down cleanly (exit {code}):\n{b.log()[-4000:]}"
            assert "panicked" not in b.log(), b.log()[-4000:]


@pytest.fixture
def broker(make_broker):
    return make_broker()


@pytest.fixture
def make_cluster(tmp_path):
    """`make_cluster(n)` starts n nodes, each a broker and a controller voter
    (`--node-id`, `--controller-listen`, `--controller-quorum`), ids 1..n."""
    nodes = []

    def make(n=3, config="", shards=1, dedicated=False, broker_only=0):
        """With `dedicated`, the n voters are controllers only; `broker_only`
        more nodes (ids n+1..) are brokers that observe the quorum."""
        if AGAINST == "kafka":
            pytest.skip("the cluster fixture starts only Sluice nodes so far (#14 item 5)")
        controller_ports = free_ports(n)
        quorum = ",".join(f"{i + 1}@127.0.0.1:{p}" for i, p in enumerate(controller_ports))
        for i in range(n + broker_only):
            args = ["--node-id", str(i + 1), "--controller-quorum", quorum]
            if i < n:
                args += ["--controller-listen", f"127.0.0.1:{controller_ports[i]}"]
                args += ["--process-roles", "controller"] if dedicated else []
            else:
                args += ["--process-roles", "broker"]
            node = Broker(tmp_path / f"node{i + 1}", config=config, shards=shards, extra_args=args)
            node.node_id = i + 1
            nodes.append(node)
        for node in nodes:
            node.start()
        return nodes

    yield make
    for node in nodes:
        if node.proc is not None:
            code = node.stop()
            assert code == 0, f"node did not shut down cleanly (exit {code}):\n{node.log()[-4000:]}"
            assert "panicked" not in node.log(), node.log()[-4000:]


@pytest.fixture(scope="session")
def java_classpath():
    """tests/java built with Maven (kafka-clients and kafka-tools 4.4 from Maven Central the first
    time): the classpath of sluice.ClientCheck and of Kafka's own command-line tools."""
    java_dir = ROOT / "tests" / "java"
    built = subprocess.run(["mvn", "-q", "-B", "package"], cwd=java_dir, capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stdout + built.stderr
    return f"{java_dir}/target/classes:{java_dir}/target/lib/*"
