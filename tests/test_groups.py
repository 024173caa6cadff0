"""Consumer groups with real clients: assignment, rebalances, committed offsets."""

import json
import time

from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient

from clients import create_topic

from groups import GROUP_CONFIG, assignment, member, poll_all, produce_range, spawn_member, total, values


def test_three_members_share_six_partitions_exactly_once(make_broker):
    broker = make_broker(GROUP_CONFIG)
    create_topic(broker, "g3", partitions=6)
    produce_range(broker, "g3", 0, 3000)
    consumers = [member(broker, "three") for _ in range(3)]
    for c in consumers:
        c.subscribe(["g3"])
    got = poll_all(consumers, lambda g: total(g) >= 3000)
    assignments = [assignment(c) for c in consumers]
    assert sorted(p for a in assignments for p in a) == list(range(6)), assignments
    assert all(len(a) == 2 for a in assignments), assignments
    assert values(got) == list(range(3000)), "every message exactly once"
    for i, c in enumerate(consumers):
        assert {p for p, _, _ in got[i]} <= set(assignments[i])
        c.close()


def test_leave_join_and_two_groups(make_broker):
    broker = make_broker(GROUP_CONFIG)
    create_topic(broker, "lj", partitions=6)
    produce_range(broker, "lj", 0, 600)
    a, b, c = (member(broker, "lj-group") for _ in range(3))
    other = member(broker, "lj-other")
    for x in (a, b, c, other):
        x.subscribe(["lj"])
    poll_all([a, b, c], lambda g: total(g) >= 600)
    # A member leaves (LeaveGroup on close, offsets committed): the others take over with no loss.
    c.close()
    produce_range(broker, "lj", 600, 600)
    got = poll_all([a, b], lambda g: total(g) >= 600 and len(assignment(a)) + len(assignment(b)) == 6)
    assert values(got) == list(range(600, 1200)), "the two survivors read each new message once"
    # A member joins: the group rebalances to three again.
    d = member(broker, "lj-group")
    d.subscribe(["lj"])
    produce_range(broker, "lj", 1200, 600)
    got = poll_all([a, b, d], lambda g: total(g) >= 600 and all(assignment(x) for x in (a, b, d)))
    assert sorted(p for x in (a, b, d) for p in assignment(x)) == list(range(6))
    assert set(values(got)) >= set(range(1200, 1800))
    # Another group on the same topic receives everything, independently.
    got = poll_all([other], lambda g: total(g) >= 1800)
    assert values(got) == list(range(1800))
    for x in (a, b, d, other):
        x.close()


def test_killed_member_is_replaced_after_its_session_timeout(make_broker):
    broker = make_broker(GROUP_CONFIG)
    create_topic(broker, "kill", partitions=6)
    survivor = member(broker, "kill-group", **{"session.timeout.ms": 2000, "heartbeat.interval.ms": 300})
    survivor.subscribe(["kill"])
    victim = spawn_member(broker, "kill-group", "kill")
    try:
        poll_all([survivor], lambda g: len(assignment(survivor)) == 3, timeout_s=30)
        victim.kill()
        victim.wait()
        killed_at = time.time()
        produce_range(broker, "kill", 0, 600)
        got = poll_all([survivor], lambda g: total(g) >= 600 and len(assignment(survivor)) == 6, timeout_s=30)
        took = time.time() - killed_at
        assert values(got) == list(range(600))
        assert 1.5 <= took <= 15, f"reassigned after {took:.1f}s; the session timeout is 2s"
    finally:
        victim.kill()
        survivor.close()


def test_committed_offsets_survive_consumer_restart_broker_restart_and_kill9(make_broker):
    broker = make_broker(GROUP_CONFIG)
    create_topic(broker, "commits", partitions=3)
    produce_range(broker, "commits", 0, 300)

    def consume_new(expected):
        c = member(broker, "committer", **{"enable.auto.commit": False})
        c.subscribe(["commits"])
        got = poll_all([c], lambda g: total(g) >= expected)
        time.sleep(0.5)  # nothing beyond the committed position may arrive
        for m in c.consume(1000, 0.5):
            if m.error() is None:
                got[0].append((m.partition(), m.offset(), m.value()))
        c.commit(asynchronous=False)
        c.close()
        return values(got)

    assert consume_new(300) == list(range(300))
    produce_range(broker, "commits", 300, 100)
    assert consume_new(100) == list(range(300, 400)), "a restarted consumer resumes at its commit"
    broker.restart()
    produce_range(broker, "commits", 400, 100)
    assert consume_new(100) == list(range(400, 500)), "commits survive a broker restart"
    broker.kill9()
    broker.start()
    produce_range(broker, "commits", 500, 100)
    assert consume_new(100) == list(range(500, 600)), "commits survive kill -9"
    committed = member(broker, "committer").committed([TopicPartition("commits", p) for p in range(3)], timeout=10)
    assert sum(tp.offset for tp in committed) == 600


def test_static_member_restart_causes_no_rebalance(make_broker):
    broker = make_broker(GROUP_CONFIG)
    create_topic(broker, "static", partitions=4)
    rebalances = []
    steady = member(broker, "static-group", **{"group.instance.id": "steady"})
    steady.subscribe(["static"], on_assign=lambda c, p: rebalances.append("assign"),
                     on_revoke=lambda c, p: rebalances.append("revoke"))
    conf = ["group.instance.id=restarting", "session.timeout.ms=6000"]
    first = spawn_member(broker, "static-group", "static", *conf)
    try:
        poll_all([steady], lambda g: len(assignment(steady)) == 2, timeout_s=30)
        assert json.loads(first.stdout.readline())["assigned"]
        before = list(rebalances)
        first.stdin.close()  # a static member closes without leaving the group
        first.wait(timeout=20)
        second = spawn_member(broker, "static-group", "static", *conf)
        try:
            assert len(json.loads(second.stdout.readline())["assigned"]) == 2
            poll_all([steady], lambda g: True, timeout_s=3)
            time.sleep(2)
            poll_all([steady], lambda g: True, timeout_s=1)
            assert rebalances == before, f"the steady member saw a rebalance: {rebalances}"
            assert len(assignment(steady)) == 2
        finally:
            second.kill()
    finally:
        first.kill()
        steady.close()


def test_cooperative_sticky_rebalances_incrementally(make_broker):
    broker = make_broker(GROUP_CONFIG)
    create_topic(broker, "coop", partitions=6)
    events = {0: [], 1: []}

    def tracker(i):
        return {"on_assign": lambda c, p: events[i].append(("assign", sorted(x.partition for x in p))),
                "on_revoke": lambda c, p: events[i].append(("revoke", sorted(x.partition for x in p)))}

    conf = {"partition.assignment.strategy": "cooperative-sticky"}
    a = member(broker, "coop-group", **conf)
    a.subscribe(["coop"], **tracker(0))
    poll_all([a], lambda g: len(assignment(a)) == 6)
    b = member(broker, "coop-group", **conf)
    b.subscribe(["coop"], **tracker(1))
    poll_all([a, b], lambda g: len(assignment(a)) == 3 and len(assignment(b)) == 3)
    revoked = [p for kind, ps in events[0] if kind == "revoke" for p in ps]
    assert len(revoked) == 3, f"only the moved partitions are revoked: {events[0]}"
    assert sorted(assignment(a) + assignment(b)) == list(range(6))
    a.close()
    b.close()


def test_admin_lists_describes_and_deletes_groups(make_broker):
    broker = make_broker(GROUP_CONFIG)
    create_topic(broker, "adm", partitions=2)
    produce_range(broker, "adm", 0, 10)
    c = member(broker, "adm-group")
    c.subscribe(["adm"])
    poll_all([c], lambda g: total(g) >= 10)
    c.commit(asynchronous=False)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    listed = admin.list_consumer_groups().result(timeout=10)
    assert [g.group_id for g in listed.valid] == ["adm-group"]
    described = admin.describe_consumer_groups(["adm-group"])["adm-group"].result(timeout=10)
    assert str(described.state).endswith("STABLE")
    assert len(described.members) == 1
    assert sorted(tp.partition for tp in described.members[0].assignment.topic_partitions) == [0, 1]
    # A group with members cannot be deleted; an empty one can, with its offsets.
    futures = admin.delete_consumer_groups(["adm-group"])
    try:
        futures["adm-group"].result(timeout=10)
        raise AssertionError("deleting a group with members must fail")
    except Exception as e:  # noqa: BLE001 — the client raises KafkaException
        assert "NON_EMPTY_GROUP" in str(e), e
    c.close()
    admin.delete_consumer_groups(["adm-group"])["adm-group"].result(timeout=10)
    assert admin.list_consumer_groups().result(timeout=10).valid == []
    fresh = member(broker, "adm-group")
    assert all(tp.offset < 0 for tp in fresh.committed([TopicPartition("adm", 0)], timeout=10))
    fresh.close()


def offsets_log_bytes(broker):
    return sum(f.stat().st_size for f in broker.data_dir.glob("__consumer_offsets-*/*.log"))


def test_offsets_topic_is_compacted_and_reloads(make_broker):
    config = GROUP_CONFIG + '"offsets.topic.num.partitions" = 1\n"offsets.topic.segment.bytes" = 65536\n'
    broker = make_broker(config)
    create_topic(broker, "compact", partitions=2)
    c = member(broker, "compactor", **{"enable.auto.commit": False})
    c.assign([TopicPartition("compact", 0), TopicPartition("compact", 1)])
    largest = 0
    for i in range(3000):
        c.commit(offsets=[TopicPartition("compact", i % 2, i)], asynchronous=False)
        if i % 100 == 0:
            largest = max(largest, offsets_log_bytes(broker))
    c.close()
    assert largest < 4 * 65536, f"__consumer_offsets grew to {largest} bytes; 3000 commits are ~360 KB"
    assert "compacted __consumer_offsets" in broker.log()
    broker.restart()
    c = member(broker, "compactor")
    committed = c.committed([TopicPartition("compact", 0), TopicPartition("compact", 1)], timeout=10)
    assert [tp.offset for tp in committed] == [2998, 2999]
    c.close()


def test_offsets_expire_after_retention_once_the_group_is_empty(make_broker):
    config = GROUP_CONFIG + '"offsets.retention.minutes" = 0.05\n"offsets.retention.check.interval.ms" = 200\n'
    broker = make_broker(config)
    create_topic(broker, "expire", partitions=1)
    produce_range(broker, "expire", 0, 10)
    active = member(broker, "active-group", **{"enable.auto.commit": False})
    active.subscribe(["expire"])
    poll_all([active], lambda g: total(g) >= 10)
    active.commit(asynchronous=False)
    standalone = member(broker, "standalone-group")
    standalone.commit(offsets=[TopicPartition("expire", 0, 7)], asynchronous=False)
    standalone.close()
    time.sleep(4)  # past the 3 s retention
    poll_all([active], lambda g: True, timeout_s=1)
    assert active.committed([TopicPartition("expire", 0)], timeout=10)[0].offset == 10, \
        "a group with members keeps its offsets"
    probe = member(broker, "standalone-group")
    assert probe.committed([TopicPartition("expire", 0)], timeout=10)[0].offset < 0, "expired 3 s after commit"
    probe.close()
    active.close()
    time.sleep(4)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    assert admin.list_consumer_groups().result(timeout=10).valid == [], "empty groups go once their offsets expire"
