"""Go clients from the Go module proxy against Sluice: Sarama (github.com/IBM/sarama),
built from tests/go/sarama. (franz-go's own test suite runs as a campaign of its own:
ci/franz-go-tests.)"""

import subprocess

import pytest

from clients import create_topic
from conftest import ROOT


@pytest.fixture(scope="session")
def sarama_check(tmp_path_factory):
    binary = tmp_path_factory.mktemp("go") / "sarama-check"
    built = subprocess.run(["go", "build", "-o", str(binary), "."], cwd=ROOT / "tests" / "go" / "sarama",
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stdout + built.stderr
    return binary


def test_sarama_produces_and_a_group_reads_each_record_once(broker, sarama_check):
    create_topic(broker, "sarama", partitions=6)
    run = subprocess.run([str(sarama_check), broker.bootstrap, "sarama"], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "OK", run.stdout + run.stderr[-3000:]
