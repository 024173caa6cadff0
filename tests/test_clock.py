"""Wall-clock jumps of ten minutes, forward and back, through the broker's own hook
(SLUICE_CLOCK_SKEW_FILE moves its wall clock without setting the machine's): group
sessions, the ISR's lag and retention keep their meaning."""

import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from clients import consume_all, create_topic
from conftest import sluice_only
from groups import GROUP_CONFIG, assignment, member, produce_range, spawn_member
from kwire import wait_for
from test_cluster import agreed_controller, isr_of

pytestmark = sluice_only("clock-skew hook")

JUMP_MS = 10 * 60 * 1000


def poll_for(consumer, seconds):
    deadline = time.time() + seconds
    while time.time() < deadline:
        consumer.poll(0.1)


def poll_until_assigned(consumer, count, timeout_s=30):
    """Polls (so the consumer heartbeats and rebalances) until it holds `count` partitions."""
    deadline = time.time() + timeout_s
    while len(assignment(consumer)) != count:
        assert time.time() < deadline, f"holds {assignment(consumer)}, not {count} partitions"
        consumer.poll(0.1)


def test_clock_jumps_neither_expire_live_members_nor_keep_dead_ones(make_broker, tmp_path, monkeypatch):
    skew = tmp_path / "skew"
    skew.write_text("0")
    monkeypatch.setenv("SLUICE_CLOCK_SKEW_FILE", str(skew))
    broker = make_broker(GROUP_CONFIG + '"log.retention.check.interval.ms" = 500\n')
    create_topic(broker, "clock", partitions=6, config={"retention.ms": "3600000"})
    produce_range(broker, "clock", 0, 600)
    assigned = []
    survivor = member(broker, "clock-group", **{"session.timeout.ms": 2000, "heartbeat.interval.ms": 300})
    survivor.subscribe(["clock"], on_assign=lambda c, parts: assigned.append(len(parts)))
    victim = spawn_member(broker, "clock-group", "clock")
    try:
        poll_until_assigned(survivor, 3)
        rebalances = len(assigned)

        # Forward: every session deadline now lies in the wall clock's past.
        skew.write_text(str(JUMP_MS))
        poll_for(survivor, 5)
        assert len(assigned) == rebalances and len(assignment(survivor)) == 3, \
            "a forward jump expired live members"

        # Back: a dead member's deadline now lies ten minutes ahead on the wall clock.
        skew.write_text(str(-JUMP_MS))
        poll_for(survivor, 1)
        victim.kill()
        victim.wait()
        killed_at = time.time()
        poll_until_assigned(survivor, 6)
        took = time.time() - killed_at
        assert took <= 15, f"reassigned after {took:.1f}s; the session timeout is 2s"
    finally:
        victim.kill()
        survivor.close()
    # Retention (an hour) deleted nothing for ten minutes either way.
    assert len(consume_all(broker, "clock", 6, 600)) == 600


def test_clock_jumps_neither_shrink_a_caught_up_isr_nor_keep_a_dead_follower(make_cluster, tmp_path, monkeypatch):
    skew = tmp_path / "skew"
    skew.write_text("0")
    monkeypatch.setenv("SLUICE_CLOCK_SKEW_FILE", str(skew))  # every node's clock jumps together
    # Fencing a dead broker (after the session timeout) also takes it out of the ISR: put that
    # well past the lag bound, so that only the lag check can shrink the ISR in time.
    nodes = make_cluster(3, config='"replica.lag.time.max.ms" = 4000\n"broker.session.timeout.ms" = 30000\n')
    wait_for(lambda: agreed_controller(nodes), what="a controller")
    admin = AdminClient({"bootstrap.servers": nodes[0].bootstrap})
    admin.create_topics([NewTopic("tick", 1, 3, config={"min.insync.replicas": "2"})])["tick"].result(timeout=20)
    leader, _ = wait_for(lambda: (v := isr_of(nodes[0], "tick")) and v[1] == [1, 2, 3] and v, what="a full ISR")
    producer = Producer({"bootstrap.servers": nodes[0].bootstrap, "acks": "all", "linger.ms": 0})

    def produce_acked(n):
        errors = []
        for i in range(n):
            producer.produce("tick", value=b"%d" % i, on_delivery=lambda err, msg: err and errors.append(err))
        assert producer.flush(30) == 0 and not errors, errors

    produce_acked(10)
    skew.write_text(str(JUMP_MS))
    time.sleep(3)  # three maintenance ticks, each checking the followers' lag
    assert isr_of(nodes[0], "tick")[1] == [1, 2, 3], "a forward jump shrank a caught-up ISR"
    produce_acked(10)

    # Back, just after a follower died: its last fetch now lies ahead on the wall clock.
    follower = next(n for n in nodes if n.node_id != leader)
    follower.kill9()
    skew.write_text(str(-JUMP_MS))
    shrunk_at = time.time()
    wait_for(lambda: (v := isr_of(nodes[0] if nodes[0] is not follower else nodes[1], "tick"))
             and len(v[1]) == 2, timeout_s=30, what="the dead follower out of the ISR")
    took = time.time() - shrunk_at
    assert took <= 4 + 8, f"the dead follower left the ISR after {took:.1f}s; the lag bound is 4s"
    produce_acked(10)
