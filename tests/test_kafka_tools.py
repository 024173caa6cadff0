"""Apache Kafka's own command-line tools (kafka-tools 4.4, the classes behind
kafka-topics.sh and friends) against a live Sluice, checking what they print.
Each tool's output was first read against Kafka 4.4 (perf/peer-kafka.sh)."""

import json
import struct
import subprocess

import pytest

from clients import create_topic, produce
import kwire
from kwire import compact_string, uvarint, wait_for


def run_tool(java_classpath, bootstrap, main_class, *args, stdin=None):
    """Runs one of Kafka's tools (its main class) against `bootstrap`; returns its stdout."""
    done = subprocess.run(["java", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-cp", java_classpath,
                           main_class, "--bootstrap-server", bootstrap, *args],
                          input=stdin, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{main_class} {args}: {done.stdout}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture
def tool(java_classpath, broker):
    return lambda main_class, *args, stdin=None: run_tool(java_classpath, broker.bootstrap, main_class, *args,
                                                          stdin=stdin)


TOPICS = "org.apache.kafka.tools.TopicCommand"
CONFIGS = "org.apache.kafka.tools.ConfigCommand"
GROUPS = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"


def test_kafka_topics_and_kafka_configs(tool):
    assert tool(TOPICS, "--create", "--topic", "tools", "--partitions", "3").strip() == "Created topic tools."
    assert "tools" in tool(TOPICS, "--list").split()
    described = tool(TOPICS, "--describe", "--topic", "tools")
    assert "PartitionCount: 3" in described and "ReplicationFactor: 1" in described
    assert [line.split("\t")[2] for line in described.splitlines() if "Partition: " in line] == \
        ["Partition: 0", "Partition: 1", "Partition: 2"]
    tool(TOPICS, "--alter", "--topic", "tools", "--partitions", "4")
    assert "PartitionCount: 4" in tool(TOPICS, "--describe", "--topic", "tools")
    altered = tool(CONFIGS, "--entity-type", "topics", "--entity-name", "tools", "--alter",
                   "--add-config", "retention.ms=1000000")
    assert "Completed updating config for topic tools." in altered
    configs = tool(CONFIGS, "--entity-type", "topics", "--entity-name", "tools", "--describe")
    assert "retention.ms=1000000" in configs and "DYNAMIC_TOPIC_CONFIG:retention.ms=1000000" in configs
    every = tool(CONFIGS, "--entity-type", "topics", "--entity-name", "tools", "--describe", "--all")
    assert "cleanup.policy=delete" in every and "retention.ms=1000000" in every
    assert "Dynamic configs for broker 0 are:" in tool(CONFIGS, "--entity-type", "brokers", "--entity-name", "0",
                                                        "--describe")
    tool(TOPICS, "--delete", "--topic", "tools")
    assert "tools" not in tool(TOPICS, "--list").split()


def test_console_producer_consumer_groups_and_offsets(tool):
    tool(TOPICS, "--create", "--topic", "console", "--partitions", "2")
    lines = "".join(f"k{i}:v{i}\n" for i in range(10))
    tool("org.apache.kafka.tools.ConsoleProducer", "--topic", "console", "--reader-property", "parse.key=true",
         "--reader-property", "key.separator=:", stdin=lines)
    consumed = tool("org.apache.kafka.tools.consumer.ConsoleConsumer", "--topic", "console", "--from-beginning",
                    "--max-messages", "10", "--group", "console-group", "--formatter-property", "print.key=true")
    assert sorted(consumed.splitlines()) == sorted(f"k{i}\tv{i}" for i in range(10))
    assert "console-group" in tool(GROUPS, "--list").split()
    described = tool(GROUPS, "--describe", "--group", "console-group")
    rows = [line.split() for line in described.splitlines() if line.startswith("console-group")]
    assert len(rows) == 2 and sum(int(r[3]) for r in rows) == 10, described  # CURRENT-OFFSET
    assert all(r[5] == "0" for r in rows), "no lag left"
    reset = tool(GROUPS, "--reset-offsets", "--group", "console-group", "--topic", "console", "--to-earliest",
                 "--execute")
    assert [line.split()[3] for line in reset.splitlines() if line.startswith("console-group")] == ["0", "0"]
    offsets = tool("org.apache.kafka.tools.GetOffsetShell", "--topic", "console")
    assert sum(int(line.rsplit(":", 1)[1]) for line in offsets.split()) == 10
    assert "Deletion of requested consumer groups ('console-group') was successful." in \
        tool(GROUPS, "--delete", "--group", "console-group")


def test_log_dirs_leader_election_and_reassignment(tool, broker, tmp_path):
    create_topic(broker, "placed", partitions=2)
    produce(broker, "placed", [(None, b"x" * 100)] * 5)
    out = tool("org.apache.kafka.tools.LogDirsCommand", "--describe", "--topic-list", "placed")
    report = json.loads(out.splitlines()[-1])
    partitions = {p["partition"]: p["size"] for d in report["brokers"][0]["logDirs"] for p in d["partitions"]}
    assert set(partitions) == {"placed-0", "placed-1"} and sum(partitions.values()) > 500
    # A single node's leaders are its preferred replicas already: nothing to elect.
    tool("org.apache.kafka.tools.LeaderElectionCommand", "--election-type", "preferred", "--all-topic-partitions")
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"version": 1, "partitions": [{"topic": "placed", "partition": 0, "replicas": [0]}]}))
    reassign = "org.apache.kafka.tools.reassign.ReassignPartitionsCommand"
    assert "Successfully started partition reassignment for placed-0" in \
        tool(reassign, "--reassignment-json-file", str(plan), "--execute")
    assert "Reassignment of partition placed-0 is completed." in \
        tool(reassign, "--reassignment-json-file", str(plan), "--verify")


QUORUM = "org.apache.kafka.tools.MetadataQuorumCommand"


def status_fields(out):
    return dict(line.split(":", 1) for line in out.splitlines() if ":" in line)


def test_kafka_metadata_quorum_on_a_single_node(tool):
    status = status_fields(tool(QUORUM, "describe", "--status"))
    assert status["LeaderId"].strip() == "0" and status["MaxFollowerLag"].strip() == "0"
    assert json.loads(status["CurrentVoters"])[0]["id"] == 0, "a single node is a quorum of one"
    rows = [line.split() for line in tool(QUORUM, "describe", "--replication").splitlines()[1:]]
    assert [(r[0], r[-1]) for r in rows] == [("0", "Leader")]


def test_kafka_metadata_quorum_on_a_cluster(java_classpath, make_cluster):
    nodes = make_cluster(3)
    bootstrap = nodes[0].bootstrap

    def leader_known():
        done = subprocess.run(["java", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-cp", java_classpath,
                               QUORUM, "--bootstrap-server", bootstrap, "describe", "--status"],
                              capture_output=True, text=True, timeout=120)
        return done.returncode == 0 and status_fields(done.stdout)["LeaderId"].strip() in ("1", "2", "3")

    wait_for(leader_known, timeout_s=60, what="a quorum leader in DescribeQuorum")
    status = status_fields(run_tool(java_classpath, bootstrap, QUORUM, "describe", "--status"))
    leader = int(status["LeaderId"])
    assert sorted(v["id"] for v in json.loads(status["CurrentVoters"])) == [1, 2, 3]
    assert int(status["HighWatermark"]) > 0 and int(status["LeaderEpoch"]) >= 1
    # --replication comes from whichever broker the tool picked; every broker agrees on the rows.
    rows = [line.split() for line in run_tool(java_classpath, bootstrap, QUORUM, "describe", "--replication")
            .splitlines()[1:]]
    assert sorted(r[0] for r in rows) == ["1", "2", "3"]
    assert [r[0] for r in rows if r[-1] == "Leader"] == [str(leader)]
    # Each voter's log end offset is known on the quorum leader; the other brokers forward
    # DescribeQuorum to it, as Kafka's forward it to the active controller. Every node answers so.
    for node in nodes:
        leader_id, voters = wait_for(lambda: (v := describe_quorum_v0(node.bootstrap)) and
                                     all(end > 0 for end in v[1].values()) and v,
                                     what=f"node {node.node_id}'s DescribeQuorum with every voter's log end")
        assert leader_id == leader and sorted(voters) == [1, 2, 3], (node.node_id, leader_id, voters)


def describe_quorum_v0(bootstrap):
    """(leader id, {voter id: log end offset}) from a raw DescribeQuorum v0 (flexible) for
    __cluster_metadata-0, as the node at `bootstrap` answers it."""
    body = uvarint(2) + compact_string("__cluster_metadata") + uvarint(2) + struct.pack(">i", 0) + b"\0\0\0"
    with kwire.Connection(bootstrap) as conn:
        conn.send(55, 0, body, header_tags=True)
        r = kwire.Reader(conn.recv()[1])
    r.tags()  # response header
    assert r.i16() == 0
    assert r.uvarint() == 2 and r.compact_string() == "__cluster_metadata" and r.uvarint() == 2
    _index, error, leader_id, _epoch, _high_watermark = r.i32(), r.i16(), r.i32(), r.i32(), r.i64()
    assert error == 0
    voters = {}
    for _ in range(r.uvarint() - 1):
        voter, end = r.i32(), r.i64()
        r.tags()
        voters[voter] = end
    return leader_id, voters


TRANSACTIONS = "org.apache.kafka.tools.TransactionsCommand"


def table(out):
    """A tool's tab-separated table: one dict per row, by column header."""
    lines = [line.split("\t") for line in out.strip().splitlines()]
    header = [h.strip() for h in lines[0]]
    return [dict(zip(header, (cell.strip() for cell in row))) for row in lines[1:]]


def test_kafka_transactions_lists_describes_and_aborts_a_hanging_transaction(tool, broker):
    """kafka-transactions: list (ListTransactions, with its duration and id-pattern filters),
    describe (DescribeTransactions), describe-producers (DescribeProducers), and the abort an
    operator gives a hanging transaction: a marker written straight to the partition
    (WriteTxnMarkers), after which read_committed readers pass it."""
    from confluent_kafka import Producer

    from test_transactions import read, values

    create_topic(broker, "txtool", partitions=2)
    p = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": "tool-txn"})
    p.init_transactions(30)
    p.begin_transaction()
    for partition in (0, 1):
        p.produce("txtool", value=b"open", partition=partition)
    p.flush(10)

    listed = {row["TransactionalId"]: row for row in table(tool(TRANSACTIONS, "list"))}
    assert listed["tool-txn"]["TransactionState"] == "Ongoing"
    assert "tool-txn" not in tool(TRANSACTIONS, "list", "--duration-filter", "3600000")
    assert "tool-txn" in tool(TRANSACTIONS, "list", "--transactional-id-pattern", "tool-.*")
    assert "tool-txn" not in tool(TRANSACTIONS, "list", "--transactional-id-pattern", "other-.*")
    [described] = table(tool(TRANSACTIONS, "describe", "--transactional-id", "tool-txn"))
    assert described["TransactionState"] == "Ongoing"
    assert set(described["TopicPartitions"].split(",")) == {"txtool-0", "txtool-1"}
    assert described["ProducerId"] == listed["tool-txn"]["ProducerId"]
    [producer] = table(tool(TRANSACTIONS, "describe-producers", "--topic", "txtool", "--partition", "0"))
    assert (producer["ProducerId"], producer["CurrentTransactionStartOffset"]) == (described["ProducerId"], "0")

    tool(TRANSACTIONS, "abort", "--topic", "txtool", "--partition", "0", "--start-offset", "0")
    [producer] = table(tool(TRANSACTIONS, "describe-producers", "--topic", "txtool", "--partition", "0"))
    assert producer["CurrentTransactionStartOffset"] == "None"
    assert values(read(broker, "txtool", 1, "read_committed")) == [], "partition 0 is readable past the abort"
    p.abort_transaction(30)
    [described] = table(tool(TRANSACTIONS, "describe", "--transactional-id", "tool-txn"))
    assert described["TransactionState"] in ("PrepareAbort", "CompleteAbort")


FEATURES = "org.apache.kafka.tools.FeatureCommand"


def described_feature(tool, feature):
    """The fields kafka-features describe prints for `feature`."""
    import re
    line = next(l for l in tool(FEATURES, "describe").splitlines() if l.startswith(f"Feature: {feature} "))
    return dict(re.findall(r"(\w+): (\S+)", line))


def test_kafka_features_downgrades_and_upgrades_transaction_version(tool, broker, java_classpath):
    """kafka-features (UpdateFeatures) sets transaction.version for the whole cluster, with
    Kafka's refusals, and the Java client follows it: its epoch stays put at 1 and is bumped
    at every commit and abort at 2. The level survives a restart."""
    check = ["java", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-cp", java_classpath, "sluice.ClientCheck"]

    def epoch_after_commit_and_abort(run_name):
        run = subprocess.run([*check, broker.bootstrap, "transactions", run_name], capture_output=True, text=True,
                             timeout=300)
        assert run.returncode == 0 and "OK transactions" in run.stdout, run.stdout + run.stderr[-3000:]
        return int(run.stdout.split("producer epoch after a commit and an abort: ")[1].split()[0])

    def refused(*args):
        done = subprocess.run(["java", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-cp", java_classpath,
                               FEATURES, "--bootstrap-server", broker.bootstrap, *args],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode != 0, done.stdout
        return done.stdout + done.stderr

    before = described_feature(tool, "transaction.version")
    assert (before["SupportedMinVersion"], before["SupportedMaxVersion"], before["FinalizedVersionLevel"]) == \
        ("0", "2", "2")
    assert tool(FEATURES, "downgrade", "--feature", "transaction.version=1").strip() == \
        "transaction.version was downgraded to 1."
    after = described_feature(tool, "transaction.version")
    assert after["FinalizedVersionLevel"] == "1" and int(after["Epoch"]) > int(before["Epoch"])
    assert epoch_after_commit_and_abort("-at-1") == 0
    assert "supports versions 0-2" in refused("upgrade", "--feature", "transaction.version=3")
    assert "Can't downgrade to a newer version." in refused("downgrade", "--feature", "transaction.version=2")
    assert "does not support this feature" in refused("upgrade", "--feature", "no.such.version=1")
    assert described_feature(tool, "transaction.version")["FinalizedVersionLevel"] == "1", "nothing refused is made"
    broker.restart()
    assert described_feature(tool, "transaction.version")["FinalizedVersionLevel"] == "1"
    assert tool(FEATURES, "upgrade", "--feature", "transaction.version=2").strip() == \
        "transaction.version was upgraded to 2."
    assert epoch_after_commit_and_abort("-at-2") == 2
