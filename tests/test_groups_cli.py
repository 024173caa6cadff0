"""`sluice groups` against the real broker: list, describe with lag, reset-offsets, delete."""

import subprocess
import time

from confluent_kafka import TopicPartition

from clients import create_topic, produce
from conftest import SLUICE_BIN
from groups import GROUP_CONFIG, member, poll_all, total


def cli(broker, *args, ok=True):
    result = subprocess.run([SLUICE_BIN, "groups", "--bootstrap-server", broker.bootstrap, *args],
                            capture_output=True, text=True, timeout=60)
    assert (result.returncode == 0) == ok, result.stdout + result.stderr
    return result.stdout + result.stderr


def rows(text, group):
    """The table rows of `describe`: (topic, partition, current, end, lag, consumer)."""
    out = []
    for line in text.splitlines():
        cols = line.split()
        if cols and cols[0] == group and cols[1] != "-":
            out.append((cols[1], int(cols[2]), cols[3], int(cols[4]), cols[5], cols[6]))
    return sorted(out)


def committed(broker, group, topic, partitions):
    c = member(broker, group)
    try:
        return [tp.offset for tp in c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)]
    finally:
        c.close()


def test_groups_cli_describes_resets_and_deletes(make_broker):
    broker = make_broker(GROUP_CONFIG)
    create_topic(broker, "cli", partitions=2)
    produce(broker, "cli", [(None, b"%d" % i, None, i % 2) for i in range(100)])
    before = int(time.time() * 1000)
    c = member(broker, "cli-group", **{"enable.auto.commit": False})
    c.subscribe(["cli"])
    poll_all([c], lambda g: total(g) >= 100)
    c.commit(asynchronous=False)

    listed = cli(broker, "list")
    assert "cli-group" in listed and "Stable" in listed
    active = cli(broker, "describe", "cli-group")
    assert "state Stable" in active and "/127.0.0.1" in active
    assert [(r[0], r[1], r[2], r[3], r[4]) for r in rows(active, "cli-group")] == [
        ("cli", 0, "50", 50, "0"), ("cli", 1, "50", 50, "0")]
    assert all(r[5] != "-" for r in rows(active, "cli-group")), "every partition shows its consumer"
    refused = cli(broker, "reset-offsets", "cli-group", "--topic", "cli", "--to-earliest", "--execute", ok=False)
    assert "inactive" in refused and "Stable" in refused
    c.close()

    produce(broker, "cli", [(None, b"late", None, 0) for _ in range(20)])
    lagging = cli(broker, "describe", "cli-group")
    assert "no active members" in lagging
    assert [(r[1], r[4]) for r in rows(lagging, "cli-group")] == [(0, "20"), (1, "0")]

    dry = cli(broker, "reset-offsets", "cli-group", "--topic", "cli", "--to-earliest")
    assert "Dry run" in dry
    assert committed(broker, "cli-group", "cli", 2) == [50, 50]
    cli(broker, "reset-offsets", "cli-group", "--topic", "cli", "--to-earliest", "--execute")
    assert committed(broker, "cli-group", "cli", 2) == [0, 0]
    cli(broker, "reset-offsets", "cli-group", "--topic", "cli:1", "--to-offset", "1000", "--execute")
    assert committed(broker, "cli-group", "cli", 2) == [0, 50], "clamped to the log end"
    cli(broker, "reset-offsets", "cli-group", "--all-topics", "--to-latest", "--execute")
    assert committed(broker, "cli-group", "cli", 2) == [70, 50]
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(before / 1000 - 5))
    cli(broker, "reset-offsets", "cli-group", "--topic", "cli", "--to-datetime", stamp, "--execute")
    assert committed(broker, "cli-group", "cli", 2) == [0, 0]

    # The next consumer starts where the reset put the group.
    again = member(broker, "cli-group", **{"enable.auto.commit": False})
    again.subscribe(["cli"])
    got = poll_all([again], lambda g: total(g) >= 120)
    assert total(got) == 120
    again.close()

    assert "successful" in cli(broker, "delete", "cli-group")
    assert "cli-group" not in cli(broker, "list")
    assert "does not exist" in cli(broker, "delete", "cli-group", ok=False)
