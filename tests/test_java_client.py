"""The Java client (kafka-clients 4.4) against Sluice: tests/java builds
sluice.ClientCheck once per session with Maven, and each test runs one of its
scenarios against a fresh broker. The same scenarios pass against Apache Kafka
4.4 (perf/peer-kafka.sh start, then `java -cp ... sluice.ClientCheck BOOTSTRAP
SCENARIO`), so what they expect is Kafka's behaviour."""

import subprocess
import time

import pytest

from conftest import sluice_only
from kwire import wait_for


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
    "transactions",      # commit, abort, read_committed against read_uncommitted, zombie fencing
    "pipelined-transactions",  # several Produce requests in flight per partition; aborts right after commits
    "exactly-once classic",   # consume-transform-produce with sendOffsetsToTransaction, one step aborted
    "exactly-once consumer",  # the same with a KIP-848 consumer
])
def test_java_client(broker, client_check, scenario):
    run = subprocess.run([*client_check, broker.bootstrap, *scenario.split()], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr[-4000:]}\n{broker.log()[-2000:]}"
    assert f"OK {scenario}" in run.stdout
    if scenario == "transactions":
        # transaction.version 2, Kafka 4's default: each commit and abort bumped the epoch.
        assert "producer epoch after a commit and an abort: 2" in run.stdout, run.stdout


@sluice_only("transaction.version setting (Kafka sets the feature with kafka-features.sh)")
def test_java_transactions_with_transaction_version_1(make_broker, client_check):
    """With the feature at 1 the Java client falls back to AddPartitionsToTxn and AddOffsetsToTxn
    and keeps its epoch; commits, aborts, fencing and exactly-once still hold."""
    broker = make_broker(config='"transaction.version" = 1\n')
    outputs = {}
    for scenario in ["transactions", "exactly-once classic"]:
        run = subprocess.run([*client_check, broker.bootstrap, *scenario.split()], capture_output=True, text=True,
                             timeout=300)
        assert run.returncode == 0, f"{run.stdout}\n{run.stderr[-4000:]}\n{broker.log()[-2000:]}"
        assert f"OK {scenario}" in run.stdout
        outputs[scenario] = run.stdout
    assert "producer epoch after a commit and an abort: 0" in outputs["transactions"], outputs["transactions"]


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


def test_java_admin_moves_partitions_and_elects_leaders_on_a_cluster(make_cluster, client_check):
    """AdminClient on three brokers: alterPartitionReassignments to a broker without a
    replica, listPartitionReassignments until done, electLeaders(PREFERRED), and cancelling
    a move that is not in progress."""
    from test_cluster import agreed_controller

    nodes = make_cluster(3, config='"replica.lag.time.max.ms" = 3000\n"auto.leader.rebalance.enable" = false\n')
    wait_for(lambda: agreed_controller(nodes), what="a controller")
    bootstrap = ",".join(n.bootstrap for n in nodes)
    run = subprocess.run([*client_check, bootstrap, "moves"], capture_output=True, text=True, timeout=300)
    logs = "\n".join(n.log()[-1500:] for n in nodes)
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr[-4000:]}\n{logs}"
    assert "OK moves" in run.stdout


def test_java_idempotent_producer_through_leader_kills(make_cluster, client_check):
    """Three brokers, RF 3, min.insync.replicas=2: the partition leader is killed (SIGKILL)
    and restarted twice under an idempotent Java producer. Every send is acknowledged, at
    the offset where it is stored, and nothing is stored twice or out of order."""
    from test_cluster import agreed_controller, isr_of, leader_of

    nodes = make_cluster(3, config='"broker.session.timeout.ms" = 2000\n"replica.lag.time.max.ms" = 3000\n')
    wait_for(lambda: agreed_controller(nodes), what="a controller")
    bootstrap = ",".join(n.bootstrap for n in nodes)
    java = subprocess.Popen([*client_check, bootstrap, "failover"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert java.stdout.readline().strip() == "PRODUCING", java.stderr.read()[-4000:]
        for _ in range(2):
            leader = wait_for(lambda: leader_of(nodes, "java-failover"), what="a leader")
            victim = nodes[leader - 1]
            victim.kill9()
            wait_for(lambda: (l := leader_of(nodes, "java-failover")) not in (None, -1, leader) and l,
                     timeout_s=20, what="a new leader")
            time.sleep(1)
            victim.start()
            wait_for(lambda: (v := isr_of(victim, "java-failover")) and v[1] == [1, 2, 3], timeout_s=30,
                     what="the killed broker back in the ISR")
            time.sleep(1)
        java.stdin.write("stop\n")
        java.stdin.flush()
        out, err = java.communicate(timeout=240)
    finally:
        if java.poll() is None:
            java.kill()
    logs = "\n".join(n.log()[-1500:] for n in nodes)
    assert java.returncode == 0, f"{out}\n{err[-4000:]}\n{logs}"
    assert "OK failover" in out
    print(out)


def test_kafka_streams_exactly_once_through_a_killed_instance(broker, java_classpath, tmp_path):
    """Kafka Streams with exactly_once_v2 copies 10,000 records produced while it runs; the
    first instance is killed with SIGKILL mid-stream and a second one takes over. Its
    transactions commit the records with the input offsets (TxnOffsetCommit, KIP-447), so a
    read_committed reader of the output sees each input record exactly once: the killed
    instance's open transaction is aborted, its records hidden, and the second resumes from
    what committed."""
    import threading

    from confluent_kafka import Producer

    import kwire
    from clients import create_topic
    from test_transactions import latest_offset, read, values

    total = 10_000
    create_topic(broker, "streams-in", partitions=2)
    create_topic(broker, "streams-out", partitions=2)
    app = ["java", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-cp", java_classpath, "sluice.StreamsCheck",
           broker.bootstrap]

    def start(name):
        log = tmp_path / f"{name}.log"
        with open(log, "w") as err:
            proc = subprocess.Popen([*app, str(tmp_path / name)], stdout=subprocess.PIPE, stderr=err, text=True)
        if proc.stdout.readline().strip() != "RUNNING":
            proc.kill()  # not left behind by a failed test
            proc.wait()
            pytest.fail(f"{name} did not start: {log.read_text()[-4000:]}")
        return proc

    def feed():
        """The input arrives over about 5 s, so the kill lands while records flow."""
        p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
        for i in range(total):
            p.produce("streams-in", key=f"k{i}", value=f"v{i}", partition=i % 2)
            if i % 200 == 199:
                p.flush(10)
                time.sleep(0.1)
        p.flush(30)

    first = start("first")
    feeder = threading.Thread(target=feed)
    feeder.start()

    def mid_transaction():
        """Copying, with records of an open transaction in the log: the last stable offset
        behind a high watermark read before it."""
        with kwire.Connection(broker.bootstrap) as conn:
            ends = [latest_offset(conn, "streams-out", p, read_committed=False) for p in (0, 1)]
            stable = [latest_offset(conn, "streams-out", p, read_committed=True) for p in (0, 1)]
        return sum(ends) >= 2_000 and any(s < e for s, e in zip(stable, ends))

    try:
        wait_for(mid_transaction, timeout_s=120, what="the first instance copying, mid-transaction")
    finally:
        first.kill()
        first.wait()
    killed_at = len(read(broker, "streams-out", 2, "read_uncommitted"))
    assert killed_at < total, "killed mid-stream"
    second = start("second")
    try:
        feeder.join(timeout=120)
        wait_for(lambda: len(read(broker, "streams-out", 2, "read_committed")) >= total, timeout_s=180,
                 what="the second instance finishing")
        committed = values(read(broker, "streams-out", 2, "read_committed"))
    finally:
        second.terminate()
        second.wait(timeout=60)
    assert sorted(committed) == sorted(f"V{i}" for i in range(total)), "each input record exactly once"
    assert len(read(broker, "streams-out", 2, "read_uncommitted")) > total, \
        "the killed instance's open transaction is in the log, aborted, and its records were copied again"
