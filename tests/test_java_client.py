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
