"""kafkajs (npm) against the real broker: admin, idempotent produce, offsets."""

import json
import subprocess
from pathlib import Path

from clients import kcat

JS = Path(__file__).parent / "js"


def test_kafkajs_admin_and_idempotent_produce(broker):
    result = subprocess.run(["node", str(JS / "produce_admin.js"), broker.bootstrap, "kjs"],
                            capture_output=True, timeout=60, cwd=JS)
    assert result.returncode == 0, result.stderr.decode()
    out = json.loads(result.stdout.decode().strip().splitlines()[-1])
    assert all(a["errorCode"] == 0 for a in out["acks"])
    assert sum(int(o["high"]) for o in out["offsets"]) == 300
    lines = kcat(broker, "-C", "-t", "kjs", "-e", "-q", "-f", "%k %s %h\n").decode().splitlines()
    assert sorted(lines) == sorted(f"k{i % 7} v{i} n={i}" for i in range(300))
