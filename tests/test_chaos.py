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
    verdict = json.loads((out / "verdict.json").read_text())
    assert verdict["acknowledged"] == verdict["sends"] > 100_000, report
    for anomaly in ("failed_sends", "lost", "moved", "duplicated", "reordered", "holes", "vanished_reads",
                    "skipped_reads"):
        assert verdict[anomaly] == 0, (anomaly, report)
    recoveries = verdict["recovery"]
    assert {r["kind"] for r in recoveries} == {"kill", "pause", "isolate", "bridge"} and len(recoveries) >= 8, report
    bound_ms = verdict["recovery_bound_ms"]
    assert all(r["recovery_ms"] <= bound_ms for r in recoveries if r["kind"] != "isolate"), report
    # Known gap (#15): the clients of an isolated leader keep sending to it (it still
    # names itself leader) until the partition heals, so its recovery is the isolation's
    # length, up to 15 s, not the bound. Checked against that instead, until fixed.
    faults = {f["start_ms"]: f for f in (json.loads(line)["fault"] for line in (out / "history.jsonl").open()
                                         if line.startswith('{"fault"'))}
    for r in recoveries:
        held_ms = faults[r["start_ms"]]["end_ms"] - r["start_ms"]
        assert r["recovery_ms"] <= max(bound_ms, held_ms + 5_000), (r, report)
    within = all(r["recovery_ms"] <= bound_ms for r in recoveries)
    assert run.returncode == (0 if within else 1), report
    assert ("verdict: PASS" if within else "verdict: FAIL (not live)") in run.stdout, report
    # The history is saved for a later look: every send, read, fault and final record.
    kinds_saved = {next(iter(json.loads(line))) for line in (out / "history.jsonl").open()}
    assert kinds_saved == {"fault", "send", "read", "final"}
    for node in (1, 2, 3):
        assert "panicked" not in (out / f"node{node}" / "broker.log").read_text()
