"""`sluice chaos`: the short campaign CI runs (the README gives the long one). A local
three-node cluster of the real binary, each node in a network namespace of its own,
idempotent acks=all librdkafka producers, a live reader, a consumer group, and transactional
writers with a read_committed reader; leaders killed,
paused and cut off, bridges, rolling restarts and full disks, on a seeded schedule; then the
checkers."""

import json
import os
import shutil
import subprocess

import pytest

from conftest import AGAINST, ROOT, SLUICE_BIN, sluice_only

# This seed's first 150 s hold every kind of fault (pauses past the 9 s session timeout too).
SEED = 2
DURATION_S = 150


@sluice_only("fault campaign, which starts its own cluster")
@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces (the partition faults) need root")
def test_a_short_campaign_loses_nothing_and_every_fault_recovers_in_bound(tmp_path):
    out = tmp_path / "chaos"
    run = subprocess.run([SLUICE_BIN, "chaos", "--duration", str(DURATION_S), "--faults", "kill,pause,partition",
                          "--seed", str(SEED), "--out", str(out)],
                         capture_output=True, text=True, timeout=DURATION_S + 300)
    report = run.stdout + run.stderr[-4000:]
    verdict = json.loads((out / "verdict.json").read_text())
    assert verdict["acknowledged"] == verdict["sends"] > 100_000, report
    assert_no_anomaly(verdict, report, txns_min=200)
    recoveries = verdict["recovery"]
    assert {r["kind"] for r in recoveries} == {"kill", "pause", "isolate", "bridge"} and len(recoveries) >= 8, report
    bound_ms = verdict["recovery_bound_ms"]
    # An isolated leader too: once it has not heard the quorum for a session timeout it
    # answers its clients NOT_LEADER_OR_FOLLOWER and names no leader, so they find the new one.
    assert all(r["recovery_ms"] <= bound_ms for r in recoveries), report
    assert run.returncode == 0 and "verdict: PASS" in run.stdout, report
    # The history is saved for a later look: every send, read, fault and final record.
    kinds_saved = {next(iter(json.loads(line))) for line in (out / "history.jsonl").open()}
    assert kinds_saved == {"fault", "send", "read", "final", "group_read", "group_commit", "group_final",
                           "txn", "txn_read", "txn_final"}
    for node in (1, 2, 3):
        assert "panicked" not in (out / f"node{node}" / "broker.log").read_text()


def assert_no_anomaly(verdict, report, txns_min):
    for anomaly in ("failed_sends", "lost", "moved", "duplicated", "reordered", "holes", "vanished_reads",
                    "skipped_reads"):
        assert verdict[anomaly] == 0, (anomaly, report)
    group = verdict["group"]
    assert group["members"] == 2 and group["commits"] > 100, report
    for anomaly in ("commits_backwards", "final_mismatches", "skipped"):
        assert group[anomaly] == 0, (anomaly, report)
    # Transactions of 10 records over the 6 partitions; one in four aborted on purpose.
    txn = verdict["txn"]
    assert txn["writers"] == 2 and txn["committed"] > txns_min and txn["aborted"] > txns_min // 4, report
    for anomaly in ("failed", "unknown", "lost_commits", "torn", "aborted_reads", "duplicated", "moved", "reordered",
                    "vanished_reads"):
        assert txn[anomaly] == 0, (anomaly, report)
    # Reported, not bounded (a transaction waits for its coordinator and all its partitions).
    assert len(txn["recovery_ms"]) == len(verdict["recovery"]), report


# This seed's first 60 s hold a slow disk, a rolling restart and a full disk.
DISK_SEED = 8
DISK_DURATION_S = 60


@sluice_only("fault campaign, which starts its own cluster")
@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("mkfs.ext4") is None,
                    reason="each node's own disk is a loop-mounted ext4 filesystem (root, mkfs.ext4)")
def test_a_rolling_restart_a_full_disk_and_a_slow_one_lose_nothing_and_recover_in_bound(tmp_path):
    out = tmp_path / "chaos"
    run = subprocess.run([SLUICE_BIN, "chaos", "--duration", str(DISK_DURATION_S), "--faults", "restart,disk,slow",
                          "--disk-mb", "256", "--seed", str(DISK_SEED), "--out", str(out)],
                         capture_output=True, text=True, timeout=DISK_DURATION_S + 300)
    report = run.stdout + run.stderr[-4000:]
    assert run.returncode == 0 and "verdict: PASS" in run.stdout, report
    verdict = json.loads((out / "verdict.json").read_text())
    assert verdict["acknowledged"] == verdict["sends"] > 40_000, report
    # Some 40 of the 60 s hold a fault, and a transaction waits for all six partitions, so
    # one slow or restarting leader stalls every commit: CI's run of 767c4d4 committed 86
    # (seed 8). A floor that low still needs the writers to go on; that they resume after
    # every fault is asserted per fault (txn recovery_ms).
    assert_no_anomaly(verdict, report, txns_min=40)
    recoveries = verdict["recovery"]
    assert {r["kind"] for r in recoveries} == {"restart", "disk", "slow"}, report
    assert all(r["recovery_ms"] <= verdict["recovery_bound_ms"] for r in recoveries), report
    logs = "".join((out / f"node{node}" / "broker.log").read_text() for node in (1, 2, 3))
    assert "panicked" not in logs
    # The full disk was felt and repaired in place. Which write finds it full first is a race: a
    # partition append (cut off, then appended again) or a metadata write (which releases the space
    # reserve; appends then wait until it is back).
    felt = "failed for want of space" in logs or "released the space reserve" in logs
    repaired = "appending again" in logs or "the space reserve is back" in logs
    assert felt and repaired, report


@pytest.mark.skipif(AGAINST != "kafka", reason="runs the campaign on Apache Kafka 4.4 (ci/test --against kafka)")
@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces (the partition faults) need root")
def test_the_same_campaign_on_kafka_loses_nothing_either(tmp_path):
    """The oracle under the same seeded faults: Kafka 4.4 nodes from perf/peer-kafka.sh's jars.
    Safety is asserted; liveness is what the verdict reports, for comparing with Sluice's."""
    subprocess.run([str(ROOT / "perf" / "peer-kafka.sh"), "classpath"], check=True, capture_output=True)
    out = tmp_path / "chaos"
    run = subprocess.run([SLUICE_BIN, "chaos", "--peer", "kafka", "--duration", str(DURATION_S),
                          "--faults", "kill,pause,partition", "--seed", str(SEED), "--out", str(out)],
                         capture_output=True, text=True, timeout=DURATION_S + 600)
    report = run.stdout + run.stderr[-4000:]
    print(report)
    verdict = json.loads((out / "verdict.json").read_text())
    assert verdict["acknowledged"] > 100_000, report
    for anomaly in ("lost", "moved", "duplicated", "reordered", "holes", "vanished_reads", "skipped_reads"):
        assert verdict[anomaly] == 0, (anomaly, report)
    txn = verdict["txn"]
    assert txn["committed"] > 200, report
    for anomaly in ("lost_commits", "torn", "aborted_reads", "duplicated", "moved", "reordered", "vanished_reads"):
        assert txn[anomaly] == 0, (anomaly, report)
