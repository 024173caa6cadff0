"""`sluice chaos`: the short campaign CI runs (the README gives the long one). A local
three-node cluster of the real binary, each node in a network namespace of its own,
idempotent acks=all librdkafka producers and a live reader; leaders killed, paused and cut
off, and bridges, on a seeded schedule; then the checkers."""

import json
import os
import subprocess

import pytest

from conftest import SLUICE_BIN, sluice_only

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
    assert run.returncode == 0, report
    verdict = json.loads((out / "verdict.json").read_text())
    assert verdict["acknowledged"] == verdict["sends"] > 100_000, report
    for anomaly in ("failed_sends", "lost", "moved", "duplicated", "reordered", "holes", "vanished_reads",
                    "skipped_reads"):
        assert verdict[anomaly] == 0, (anomaly, report)
    kinds = {r["kind"] for r in verdict["recovery"]}
    assert kinds == {"kill", "pause", "isolate", "bridge"} and len(verdict["recovery"]) >= 8, report
    assert max(r["recovery_ms"] for r in verdict["recovery"]) <= verdict["recovery_bound_ms"], report
    assert "verdict: PASS" in run.stdout
    # The history is saved for a later look: every send, read, fault and final record.
    kinds_saved = {next(iter(json.loads(line))) for line in (out / "history.jsonl").open()}
    assert kinds_saved == {"fault", "send", "read", "final"}
    for node in (1, 2, 3):
        assert "panicked" not in (out / f"node{node}" / "broker.log").read_text()
