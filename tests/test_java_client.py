"""The Java client (kafka-clients 4.4) against Sluice: tests/java builds
sluice.ClientCheck once per session with Maven, and each test runs one of its
scenarios against a fresh broker. The same scenarios pass against Apache Kafka
4.4 (perf/peer-kafka.sh start, then `java -cp ... sluice.ClientCheck BOOTSTRAP
SCENARIO`), so what they expect is Kafka's behaviour."""

import subprocess

import pytest


@pytest.fixture(scope="session")
def client_check(java_classpath):
    return ["java", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-cp", java_classpath, "sluice.ClientCheck"]


@pytest.mark.parametrize("scenario", [
    "codecs",            # idempotent producer, acks=all, keys, headers, timestamps, all four codecs
    "positions",         # assign, seek, offsetsForTimes, beginning/end offsets, commits with metadata
    "group classic",     # three members share six partitions, each record once, commit and resume
    "group consumer",    # the same over KIP-848's group.protocol=consumer
    "cooperative",       # CooperativeStickyAssignor revokes only what moves
    "admin",             # topics, partitions, configs, cluster, offsets, groups, log dirs
])
def test_java_client(broker, client_check, scenario):
    run = subprocess.run([*client_check, broker.bootstrap, *scenario.split()], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr[-4000:]}\n{broker.log()[-2000:]}"
    assert f"OK {scenario}" in run.stdout


def test_java_consumer_fetches_1000_partitions_through_a_fetch_session(broker, client_check):
    """KIP-227: the Java consumer opens a session over its 1,000 partitions, sends incremental
    fetches, and closes the session when it closes; no fetch was refused for a session error
    (FETCH_SESSION_ID_NOT_FOUND, INVALID_FETCH_SESSION_EPOCH)."""
    run = subprocess.run([*client_check, broker.bootstrap, "wide"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr[-4000:]}\n{broker.log()[-2000:]}"
    assert "OK wide" in run.stdout
    if broker.metrics_port is None:
        return  # Kafka as the peer: the scenario passing is what it checks.
    metrics = broker.metrics_text().splitlines()
    value = {l.split()[0]: float(l.split()[1]) for l in metrics if l and not l.startswith("#")}
    assert value["sluice_fetch_sessions_opened_total"] >= 1, "the consumer opened a session"
    assert value["sluice_fetch_session_incremental_total"] >= 10, "and fetched through it"
    assert (value["sluice_fetch_sessions"], value["sluice_fetch_session_partitions"]) == (0, 0), \
        "closing the consumer closed its session"
    refused = [l for l in metrics if l.startswith("sluice_request_errors_total") and 'api="Fetch"' in l
               and ("FetchSession" in l or "InvalidFetchSessionEpoch" in l)]
    assert not refused, refused
