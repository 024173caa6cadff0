"""KIP-848 consumer groups (`group.protocol=consumer`) with librdkafka: the
broker assigns, members reconcile, commits carry the member epoch."""

import time

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from clients import create_topic
from test_groups_cli import cli, rows
from groups import GROUP_CONFIG, assignment, poll_all, produce_range, spawn_member, total, values

CONFIG = GROUP_CONFIG + '"group.consumer.session.timeout.ms" = 3000\n"group.consumer.heartbeat.interval.ms" = 300\n'


def member(broker, group, **conf):
    return Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "group.protocol": "consumer",
                     "auto.offset.reset": "earliest", **conf})


def test_kip848_members_share_partitions_and_rebalance(make_broker):
    broker = make_broker(CONFIG)
    create_topic(broker, "k848", partitions=6)
    a, b, c = (member(broker, "new-protocol") for _ in range(3))
    for x in (a, b, c):
        x.subscribe(["k848"])
    poll_all([a, b, c], lambda g: all(len(assignment(x)) == 2 for x in (a, b, c)))
    produce_range(broker, "k848", 0, 1200)
    got = poll_all([a, b, c], lambda g: total(g) >= 1200)
    assert values(got) == list(range(1200)), "each message once, no partition owned twice"
    described = cli(broker, "describe", "new-protocol")
    assert "KIP-848" in described and "3 members" in described, described
    assert len({r[5] for r in rows(described, "new-protocol")}) == 3, "three consumers own the six partitions"

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    listed = admin.list_consumer_groups().result(timeout=10)
    assert [(g.group_id, str(g.type)) for g in listed.valid] == [("new-protocol", "ConsumerGroupType.CONSUMER")]

    # A member leaves: its partitions move to the others, after they are released.
    c.close()
    poll_all([a, b], lambda g: len(assignment(a)) + len(assignment(b)) == 6 and assignment(a) and assignment(b))
    produce_range(broker, "k848", 1200, 600)
    got = poll_all([a, b], lambda g: total(g) >= 600)
    assert values(got) == list(range(1200, 1800))
    # Committed offsets (OffsetCommit with the member epoch) are where a new member resumes.
    a.commit(asynchronous=False)
    b.commit(asynchronous=False)
    a.close()
    b.close()
    d = member(broker, "new-protocol")
    d.subscribe(["k848"])
    poll_all([d], lambda g: len(assignment(d)) == 6)
    produce_range(broker, "k848", 1800, 60)
    got = poll_all([d], lambda g: total(g) >= 60)
    time.sleep(0.5)
    got[0] += [(m.partition(), m.offset(), m.value()) for m in d.consume(1000, 0.5) if m.error() is None]
    assert values(got) == list(range(1800, 1860)), "nothing committed is read again"
    committed = d.committed([TopicPartition("k848", p) for p in range(6)], timeout=10)
    assert sum(tp.offset for tp in committed) == 1800
    d.close()


def test_kip848_dead_member_expires_after_the_session_timeout(make_broker):
    broker = make_broker(CONFIG)
    create_topic(broker, "k848-dead", partitions=4)
    survivor = member(broker, "dead-group")
    survivor.subscribe(["k848-dead"])
    victim = spawn_member(broker, "dead-group", "k848-dead", "group.protocol=consumer")
    try:
        poll_all([survivor], lambda g: len(assignment(survivor)) == 2, timeout_s=30)
        victim.kill()  # no leave, no more heartbeats: the broker's session timeout (3 s) must notice
        victim.wait()
        killed_at = time.time()
        poll_all([survivor], lambda g: len(assignment(survivor)) == 4, timeout_s=20)
        took = time.time() - killed_at
        assert 2.5 <= took <= 12, f"took over after {took:.1f}s; the session timeout is 3s"
    finally:
        victim.kill()
        survivor.close()
