"""`sluice bench linkedin` end to end at a tiny scale: every row that one broker
can run passes its exactly-once count check, and the results files agree."""

import csv
import json
import subprocess

from conftest import SLUICE_BIN, sluice_only

CLUSTER_ROWS = {"1 producer, 3x async replication", "1 producer, 3x sync replication",
                "3 producers, 3x async replication"}


def run_bench(tmp_path, *extra):
    out = tmp_path / "results"
    result = subprocess.run([SLUICE_BIN, "bench", "linkedin", "--scale", "0.0002", "--out", str(out), *extra],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out, result.stdout


def check_results(out, stdout, client="rdkafka"):
    doc = json.loads((out / "results.json").read_text())
    assert doc["benchmark"] == "linkedin-2014" and doc["client"] == client
    rows = {r["name"]: r for r in doc["rows"]}
    for name in CLUSTER_ROWS:
        assert rows[name]["status"] == "needs a 3-broker cluster"
    measured = [r for r in doc["rows"] if r["name"] not in CLUSTER_ROWS]
    assert len(measured) == 12
    for r in measured:
        assert r["status"] == "ok", r
        assert r["records"] >= 1000 and r["records_per_second"] > 0 and r["mb_per_second"] > 0
    assert rows["1 consumer"]["records"] == rows["1 producer, no replication"]["records"]
    assert rows["Throughput vs stored data"]["records"] == 2 * rows["1 producer, no replication"]["records"]
    p50, p99, p999, worst = rows["End-to-end latency (100k rec/s steady)"]["latency_us"]
    assert 0 < p50 <= p99 <= p999 <= worst
    with open(out / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["row"] for r in table] == [r["name"] for r in doc["rows"]]
    assert "LINKEDIN 2014" in stdout and "821,557 rec/s" in stdout
    check_charts(out)
    return doc


CHARTS = ["records-per-second-by-size", "mb-per-second-by-size", "throughput-over-stored-data",
          "end-to-end-latency"]


def check_charts(out, legend=None):
    for stem in CHARTS:
        if stem == "throughput-over-stored-data" and not (out / f"{stem}.svg").exists():
            continue  # a run shorter than a second has no per-second samples
        svg = (out / f"{stem}.svg").read_text()
        assert svg.startswith("<svg") and "<polyline" in svg, stem
        if legend:
            assert legend in svg
        assert (out / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", stem


def test_bench_against_a_given_broker(broker, tmp_path):
    out, stdout = run_bench(tmp_path, "--bootstrap", broker.bootstrap)
    doc = check_results(out, stdout)
    assert doc["broker"] == broker.bootstrap
    assert all(r["broker_cpu_s_per_gb"] is None for r in doc["rows"]), "no /proc figures for a remote broker"
    listed = subprocess.run([SLUICE_BIN, "topic", "list", "--bootstrap", broker.bootstrap],
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0 and "linkedin-" not in listed.stdout, "the bench deletes its topics"
    compared = subprocess.run([SLUICE_BIN, "bench", "compare", str(out / "results.json"), str(out / "results.json"),
                               "--out", str(tmp_path)],
                              capture_output=True, text=True, timeout=60)
    assert compared.returncode == 0, compared.stderr
    assert "1 consumer" in compared.stdout and "1.00x" in compared.stdout
    check_charts(tmp_path, legend="A: results")
    assert "idle RSS -, peak RSS -" in compared.stdout, "no RSS for a broker whose processes are unknown"
    bad = subprocess.run([SLUICE_BIN, "bench", "compare", str(out / "results.csv"), str(out / "results.json")],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "is not a results.json" in bad.stderr


def test_bench_measures_a_given_brokers_processes(broker, tmp_path):
    """--peer-pid: a broker the bench did not start (Kafka's JVM, in perf/side-by-side.sh) gets
    its CPU per GB and its RSS from /proc, as the bench's own local broker does."""
    out, stdout = run_bench(tmp_path, "--bootstrap", broker.bootstrap, "--peer-pid", str(broker.proc.pid),
                            "--only", "1 producer, no|1 consumer")
    doc = json.loads((out / "results.json").read_text())
    measured = [r for r in doc["rows"] if r["status"] == "ok"]
    assert [r["name"] for r in measured] == ["1 producer, no replication", "1 consumer"]
    assert all(r["broker_cpu_s_per_gb"] > 0 for r in measured), measured
    assert 0 < doc["broker_idle_rss_bytes"] <= doc["broker_peak_rss_bytes"], doc
    compared = subprocess.run([SLUICE_BIN, "bench", "compare", str(out / "results.json"), str(out / "results.json"),
                               "--out", str(tmp_path / "compare")], capture_output=True, text=True, timeout=60)
    assert compared.returncode == 0 and "MiB" in compared.stdout, compared.stdout + compared.stderr
    alone = subprocess.run([SLUICE_BIN, "bench", "linkedin", "--peer-pid", "1"], capture_output=True, text=True,
                           timeout=60)
    assert alone.returncode != 0 and "--bootstrap" in alone.stderr


def test_bench_one_command_demo_starts_its_own_broker(tmp_path):
    out, stdout = run_bench(tmp_path)
    doc = check_results(out, stdout)
    assert doc["broker"] == "local sluice" and doc["broker_peak_rss_bytes"] > 0
    assert rows_with_cpu(doc) >= 10


def rows_with_cpu(doc):
    return sum(1 for r in doc["rows"] if r["broker_cpu_s_per_gb"] is not None)


@sluice_only("native bench client")
def test_bench_native_client_counts_every_record_back(broker, tmp_path):
    out, stdout = run_bench(tmp_path, "--bootstrap", broker.bootstrap, "--client", "native")
    doc = check_results(out, stdout, client="native")
    rows = {r["name"]: r for r in doc["rows"]}
    # The native producer's acks are timed per request, so the row has percentiles.
    assert rows["1 producer, no replication"]["latency_us"][0] > 0


def test_bench_only_runs_the_selected_rows(broker, tmp_path):
    out, _ = run_bench(tmp_path, "--bootstrap", broker.bootstrap, "--only", "latency| 1 consumer|1 producer, no")
    rows = {r["name"]: r for r in json.loads((out / "results.json").read_text())["rows"]}
    ran = {name for name, r in rows.items() if r["status"] == "ok"}
    assert ran == {"1 producer, no replication", "1 consumer", "End-to-end latency (100k rec/s steady)"}
    assert rows["Message size 10 B"]["status"] == "not selected (--only)"
    none = subprocess.run([SLUICE_BIN, "bench", "linkedin", "--bootstrap", broker.bootstrap, "--only", "nothing",
                           "--out", str(tmp_path / "none")], capture_output=True, text=True, timeout=120)
    assert none.returncode != 0 and "selects no row" in none.stderr


def test_bench_runs_the_replicated_rows_on_a_local_three_broker_cluster(tmp_path):
    out, _ = run_bench(tmp_path, "--brokers", "3", "--only", "replication")
    doc = json.loads((out / "results.json").read_text())
    assert doc["brokers"] == 3
    rows = {r["name"]: r for r in doc["rows"]}
    for name in CLUSTER_ROWS:
        assert rows[name]["status"] == "ok", rows[name]
        assert rows[name]["records"] >= 1000 and rows[name]["broker_cpu_s_per_gb"] > 0
    assert rows["1 producer, 3x sync replication"]["latency_us"][0] > 0
    # The native engine sends each partition's requests to its leader.
    native = subprocess.run([SLUICE_BIN, "bench", "linkedin", "--brokers", "3", "--client", "native", "--scale",
                             "0.0002", "--only", "1 producer|1 consumer", "--out", str(tmp_path / "native")],
                            capture_output=True, text=True, timeout=300)
    assert native.returncode == 0, native.stdout[-3000:] + native.stderr[-3000:]
    rows = {r["name"]: r for r in json.loads((tmp_path / "native" / "results.json").read_text())["rows"]}
    for name in ["1 producer, no replication", "1 producer, 3x async replication",
                 "1 producer, 3x sync replication", "1 consumer"]:
        assert rows[name]["status"] == "ok" and rows[name]["records"] >= 1000, rows[name]
    assert rows["1 consumer"]["records"] == rows["1 producer, no replication"]["records"]
