"""`sluice topic`, `sluice cluster` and `sluice config check` against a live broker:
tables, JSON, and plain-sentence errors with a non-zero exit."""

import json
import os
import subprocess

import kwire
from clients import kcat
from conftest import SLUICE_BIN, sluice_only


def sluice(broker, *args, ok=True, env=None):
    env = {**os.environ, **(env or {})}
    if broker is not None:
        env.setdefault("SLUICE_BOOTSTRAP", broker.bootstrap)
    result = subprocess.run([SLUICE_BIN, *args], capture_output=True, text=True, timeout=60, env=env)
    assert (result.returncode == 0) == ok, f"{args}: {result.stdout}{result.stderr}"
    assert "panicked" not in result.stderr
    return result.stdout + result.stderr


def test_topic_commands_tables_and_json(broker):
    assert "Created topic 'cli-t' with 3 partitions" in sluice(
        broker, "topic", "create", "cli-t", "--partitions", "3", "--config", "retention.ms=3600000")
    kcat(broker, "-P", "-t", "cli-t", "-p", "1", input=b"a\nb\nc\n")
    listed = json.loads(sluice(broker, "topic", "list", "--format", "json"))
    assert {"name": "cli-t", "partitions": 3, "internal": False} in listed["topics"]
    assert "cli-t" in sluice(broker, "topic", "list")

    described = json.loads(sluice(broker, "topic", "describe", "cli-t", "--format", "json"))
    p1 = described["partitions"][1]
    assert (p1["leader"], p1["replicas"], p1["isr"], p1["log_start_offset"], p1["log_end_offset"]) == (0, "0", "0", 0, 3)
    assert p1["size_bytes"] > 0 and described["partitions"][0]["size_bytes"] == 0
    configs = {c["name"]: (c["value"], c["source"]) for c in described["configs"]}
    assert configs["retention.ms"] == ("3600000", "topic")
    assert configs["segment.bytes"][1] == "default"
    table = sluice(broker, "topic", "describe", "cli-t")
    assert "LOG-END" in table and "retention.ms" in table

    sluice(broker, "topic", "alter-config", "cli-t", "--set", "segment.bytes=1000000", "--delete", "retention.ms")
    configs = {c["name"]: c for c in json.loads(sluice(broker, "topic", "describe", "cli-t", "--format", "json"))["configs"]}
    assert (configs["segment.bytes"]["value"], configs["segment.bytes"]["source"]) == ("1000000", "topic")
    assert configs["retention.ms"]["source"] == "default"
    assert "now has 5 partitions" in sluice(broker, "topic", "add-partitions", "cli-t", "--total", "5")

    assert "already exists" in sluice(broker, "topic", "create", "cli-t", ok=False)
    sluice(broker, "topic", "create", "cli-t", "--if-not-exists")
    assert "must be larger" in sluice(broker, "topic", "add-partitions", "cli-t", "--total", "2", ok=False)
    assert "not supported" in sluice(broker, "topic", "alter-config", "cli-t", "--set", "cleanup.policy=compact",
                                     ok=False)
    assert "retention.ms" in sluice(broker, "topic", "create", "bad-config", "--config", "retention.ms=soon", ok=False)
    assert "is not KEY=VALUE" in sluice(broker, "topic", "create", "bad-config", "--config", "retention.ms", ok=False)
    assert "Deleted topic 'cli-t'" in sluice(broker, "topic", "delete", "cli-t")
    assert "does not exist" in sluice(broker, "topic", "delete", "cli-t", ok=False)
    assert "cannot describe topic 'nope'" in sluice(broker, "topic", "describe", "nope", ok=False)


def test_cluster_info_and_broker_configs(broker):
    info = json.loads(sluice(broker, "cluster", "info", "--format", "json"))
    assert info["controller"] == 0
    assert info["brokers"] == [{"id": 0, "host": "127.0.0.1", "port": broker.port, "fenced": False}]
    assert "Cluster id:" in sluice(broker, "cluster", "info")
    sluice(broker, "cluster", "config", "set", "log.retention.ms=120000")
    got = json.loads(sluice(broker, "cluster", "config", "get", "log.retention.ms", "--format", "json"))
    assert got == {"log.retention.ms": "120000"}
    assert "invalid value" in sluice(broker, "cluster", "config", "set", "log.retention.ms=soon", ok=False)


def test_bad_bootstrap_and_config_files(tmp_path):
    err = sluice(None, "topic", "list", "--bootstrap", "127.0.0.1:1", ok=False)
    assert "cannot connect to 127.0.0.1:1" in err
    good = tmp_path / "good.toml"
    good.write_text('"num.partitions" = 3\n[log]\nretention.ms = 1000\n')
    assert "OK, 2 settings" in sluice(None, "config", "check", str(good))
    bad = tmp_path / "bad.toml"
    bad.write_text('"log.retention.msec" = 1\n"num.partitions" = "many"\n')
    err = sluice(None, "config", "check", str(bad), ok=False)
    assert "did you mean 'log.retention.ms'" in err and "invalid value 'many'" in err and "2 problem(s)" in err
    # The broker itself refuses a bad file with the same sentence, and starts nothing.
    serve = subprocess.run([SLUICE_BIN, "serve", "--config", str(bad), "--data-dir", str(tmp_path / "d"),
                            "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"],
                           capture_output=True, text=True, timeout=60)
    assert serve.returncode != 0 and "log.retention.msec" in serve.stderr and "panicked" not in serve.stderr
    broken = tmp_path / "broken.toml"
    broken.write_text("this is = = not toml")
    assert "invalid TOML" in sluice(None, "config", "check", str(broken), ok=False)


@sluice_only("logging settings")
def test_json_logs_and_the_effective_config_line(make_broker):
    import json as jsonlib
    broker = make_broker('"logging.format" = "json"\n"num.partitions" = 4\n')
    lines = broker.log().split("--- start 1\n", 1)[1].strip().splitlines()
    events = [jsonlib.loads(line) for line in lines]
    configs = [e for e in events if e["fields"].get("message") == "effective configuration"]
    assert len(configs) == 1 and "num_partitions: 4" in configs[0]["fields"]["config"]
    assert all(e["level"] in ("INFO", "WARN", "ERROR", "DEBUG") for e in events)


def run_with_input(broker, args, text):
    env = {**os.environ, "SLUICE_BOOTSTRAP": broker.bootstrap}
    result = subprocess.run([SLUICE_BIN, *args], input=text, capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout, result.stderr


def test_console_round_trip_with_keys_headers_and_kcat(broker):
    sluice(broker, "topic", "create", "console", "--partitions", "2")
    lines = "".join(f"h{i}:x{i},n:{i}\tk{i % 3}=v{i}\n" for i in range(50))
    _, err = run_with_input(broker, ["produce", "console", "--key-separator", "=", "--headers",
                                     "--compression", "lz4"], lines)
    assert "Produced 50 of 50 records" in err
    out, err = run_with_input(broker, ["consume", "console", "--from-beginning", "--max-messages", "50",
                                       "--format", "%k|%s|%h\\n"], "")
    got = sorted(out.splitlines())
    assert got == sorted(f"k{i % 3}|v{i}|h{i}=x{i},n={i}" for i in range(50))
    assert "Processed a total of 50 messages" in err
    # kcat reads what sluice produced, and the other way round.
    assert sorted(kcat(broker, "-C", "-t", "console", "-e", "-q", "-f", "%k=%s\n").decode().splitlines()) == \
        sorted(f"k{i % 3}=v{i}" for i in range(50))
    kcat(broker, "-P", "-t", "from-kcat", "-K", ":", input=b"a:1\nb:2\nc:3\n")
    out, _ = run_with_input(broker, ["consume", "from-kcat", "--from-beginning", "--timeout-ms", "2000",
                                     "--format", "%k %s %p %o\\n"], "")
    assert sorted(out.splitlines()) == ["a 1 0 0", "b 2 0 1", "c 3 0 2"]
    # One partition from an offset; and a group that commits.
    out, _ = run_with_input(broker, ["consume", "from-kcat", "--partition", "0", "--offset", "1",
                                     "--max-messages", "2"], "")
    assert out.splitlines() == ["2", "3"]
    out, _ = run_with_input(broker, ["consume", "from-kcat", "--group", "console-group", "--from-beginning",
                                     "--max-messages", "3"], "")
    assert sorted(out.splitlines()) == ["1", "2", "3"]


@sluice_only("CLI")
def test_console_consumer_stops_cleanly_on_ctrl_c(broker):
    import signal
    sluice(broker, "topic", "create", "idle")
    env = {**os.environ, "SLUICE_BOOTSTRAP": broker.bootstrap}
    kwire.wait_for(lambda: broker.open_connections() == 0, what="earlier clients' connections to be released")
    proc = subprocess.Popen([SLUICE_BIN, "consume", "idle"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    # Interrupted only once it is consuming: connected to the broker it was given.
    kwire.wait_for(lambda: broker.open_connections() >= 1, what="the console consumer to connect")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "Processed a total of 0 messages" in err
    assert "unknown topic" not in err.lower()
    bad = subprocess.run([SLUICE_BIN, "consume", "absent-topic", "--timeout-ms", "100"], capture_output=True,
                         text=True, timeout=60, env={**env, "SLUICE_BOOTSTRAP": broker.bootstrap})
    assert bad.returncode != 0 and "topic 'absent-topic'" in bad.stderr, bad.stderr


def test_tune_check_reads_the_host(tmp_path):
    result = subprocess.run([SLUICE_BIN, "tune", "check", "--data-dir", str(tmp_path / "data")],
                            capture_output=True, text=True, timeout=60)
    rows = {line.split("  ")[0]: line for line in result.stdout.splitlines()[1:] if line.strip()}
    for setting in ["vm.swappiness", "vm.dirty_ratio", "net.core.somaxconn", "io_uring", "open files (hard limit)",
                    "transparent huge pages", "CPU frequency governor"]:
        assert setting in rows, result.stdout
    assert "available" in rows["io_uring"] and " ok " in rows["io_uring"], "the tests themselves run on io_uring"
    broken = sum(" BROKEN " in line for line in rows.values())
    assert (result.returncode != 0) == (broken > 0), result.stdout + result.stderr
    # A data dir on tmpfs would lose everything at reboot: that breaks the broker.
    shm = subprocess.run([SLUICE_BIN, "tune", "check", "--data-dir", "/dev/shm/sluice-data"],
                         capture_output=True, text=True, timeout=60)
    assert shm.returncode != 0 and "tmpfs" in shm.stdout and "would break the broker" in shm.stderr
