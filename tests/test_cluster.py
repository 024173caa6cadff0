"""Cluster mode with real processes: three `sluice serve` nodes, each a broker
and a Raft voter of the metadata quorum, on loopback ports."""

import json
import subprocess
import time

import pytest
from confluent_kafka.admin import AdminClient

import kwire
from clients import consume_until
from kwire import wait_for
from conftest import SLUICE_BIN, free_port


def cluster_view(node, timeout_s=5):
    """(controller id, {broker id: port}) as this node describes the cluster."""
    admin = AdminClient({"bootstrap.servers": node.bootstrap})
    md = admin.list_topics(timeout=timeout_s)
    return md.controller_id, {b.id: b.port for b in md.brokers.values()}


def agreed_controller(nodes):
    """The controller every live node names, once all agree and all brokers are registered."""
    views = [cluster_view(n) for n in nodes]
    controllers = {c for c, _ in views}
    ports = {n.node_id: n.port for n in nodes}
    if len(controllers) == 1 and all(all(b.get(i) == p for i, p in ports.items()) for _, b in views):
        controller = controllers.pop()
        return controller if controller in ports else None
    return None


def test_three_nodes_elect_one_controller_and_every_broker_registers(make_cluster):
    nodes = make_cluster(3)
    controller = wait_for(lambda: agreed_controller(nodes), what="one controller named by all nodes")
    assert controller in (1, 2, 3)
    listing = subprocess.run(["kcat", "-b", nodes[2].bootstrap, "-L"], capture_output=True, text=True, timeout=30)
    assert listing.returncode == 0 and " 3 brokers:" in listing.stdout, listing.stdout
    assert f"broker {controller} at 127.0.0.1:{nodes[controller - 1].port} (controller)" in listing.stdout


def test_killing_the_controller_elects_another_and_the_node_rejoins(make_cluster):
    nodes = make_cluster(3)
    first = wait_for(lambda: agreed_controller(nodes), what="a controller")
    dead = nodes[first - 1]
    dead.kill9()
    survivors = [n for n in nodes if n is not dead]
    started = time.time()
    second = wait_for(lambda: (c := cluster_view(survivors[0])[0]) not in (first, -1) and
                      all(cluster_view(n)[0] == c for n in survivors) and c, what="a new controller")
    assert second != first
    assert time.time() - started < 10, "failover takes a few seconds, not more"
    dead.start()
    # The restarted node replays its log and follows the controller the others elected.
    assert wait_for(lambda: agreed_controller(nodes), what="agreement after the restart") == second
    assert "replayed_entries=0" not in dead.log().split("--- start 2")[1]


def test_cluster_flags_are_checked(tmp_path):
    port = free_port()
    only_listen = subprocess.run([SLUICE_BIN, "serve", "--node-id", "1", "--controller-listen", f"127.0.0.1:{port}",
                                  "--data-dir", str(tmp_path / "a")], capture_output=True, text=True, timeout=30)
    assert only_listen.returncode != 0 and "controller.quorum.voters" in only_listen.stderr
    not_a_voter = subprocess.run([SLUICE_BIN, "serve", "--node-id", "4", "--listen", f"127.0.0.1:{free_port()}",
                                  "--metrics-listen", "127.0.0.1:0",
                                  "--controller-listen", f"127.0.0.1:{port}",
                                  "--controller-quorum", f"1@127.0.0.1:{port}", "--data-dir", str(tmp_path / "b")],
                                 capture_output=True, text=True, timeout=30)
    assert not_a_voter.returncode != 0 and "not among the --controller-quorum voters" in not_a_voter.stderr
    bad_voters = subprocess.run([SLUICE_BIN, "serve", "--node-id", "1", "--controller-listen", f"127.0.0.1:{port}",
                                 "--controller-quorum", "1-127.0.0.1:1", "--data-dir", str(tmp_path / "c")],
                                capture_output=True, text=True, timeout=30)
    assert bad_voters.returncode != 0 and "ID@HOST:PORT" in bad_voters.stderr

    def serve(*args, name):
        return subprocess.run([SLUICE_BIN, "serve", "--listen", f"127.0.0.1:{free_port()}",
                               "--metrics-listen", "127.0.0.1:0", "--data-dir", str(tmp_path / name), *args],
                              capture_output=True, text=True, timeout=30)

    voter_as_broker = serve("--node-id", "1", "--process-roles", "broker", "--controller-quorum",
                            f"1@127.0.0.1:{port}", name="d")
    assert voter_as_broker.returncode != 0 and "must include controller" in voter_as_broker.stderr
    controller_without_listener = serve("--node-id", "1", "--process-roles", "controller", "--controller-quorum",
                                        f"1@127.0.0.1:{port}", name="e")
    assert controller_without_listener.returncode != 0 and "controller.listener" in controller_without_listener.stderr
    unknown_role = serve("--node-id", "1", "--process-roles", "router", "--controller-quorum",
                         f"1@127.0.0.1:{port}", name="f")
    assert unknown_role.returncode != 0 and "'router' is not broker or controller" in unknown_role.stderr


def test_cluster_status_names_every_broker_and_the_controller(make_cluster):
    nodes = make_cluster(3)
    controller = wait_for(lambda: agreed_controller(nodes), what="a controller")
    table = subprocess.run([SLUICE_BIN, "cluster", "status", "--bootstrap", nodes[0].bootstrap],
                           capture_output=True, text=True, timeout=30)
    assert table.returncode == 0, table.stderr
    assert f"Controller: {controller}" in table.stdout
    assert "under-replicated: 0, offline: 0" in table.stdout
    for node in nodes:
        assert str(node.port) in table.stdout
    doc = json.loads(subprocess.run([SLUICE_BIN, "cluster", "status", "--bootstrap", nodes[1].bootstrap,
                                     "--format", "json"], capture_output=True, text=True, timeout=30).stdout)
    assert doc["controller"] == controller
    assert sorted(b["id"] for b in doc["brokers"]) == [1, 2, 3]
    assert doc["offline"] == 0 and doc["under_replicated"] == 0


def test_topics_are_placed_across_the_cluster_and_clients_follow_the_leaders(make_cluster):
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import NewTopic

    nodes = make_cluster(3)
    wait_for(lambda: agreed_controller(nodes), what="a controller")
    admin = AdminClient({"bootstrap.servers": nodes[1].bootstrap})
    admin.create_topics([NewTopic("orders", 6, 3)])["orders"].result(timeout=20)
    too_many = admin.create_topics([NewTopic("wide", 1, 4)])["wide"]
    try:
        too_many.result(timeout=20)
        raise AssertionError("RF 4 on 3 brokers was accepted")
    except Exception as e:  # KafkaException carrying INVALID_REPLICATION_FACTOR
        assert "INVALID_REPLICATION_FACTOR" in str(e) or "replication factor 4" in str(e), e

    def placements(node):
        md = AdminClient({"bootstrap.servers": node.bootstrap}).list_topics("orders", timeout=5)
        t = md.topics["orders"]
        return {p.id: (p.leader, tuple(p.replicas)) for p in t.partitions.values()} if not t.error else None

    first = wait_for(lambda: placements(nodes[0]), what="the topic on node 1")
    assert all(wait_for(lambda n=n: placements(n) == first, what="the same placement everywhere") for n in nodes)
    assert sorted(len(set(r)) for _, r in first.values()) == [3] * 6, "three distinct replicas per partition"
    leaders = [leader for leader, _ in first.values()]
    assert sorted(leaders.count(b) for b in (1, 2, 3)) == [2, 2, 2], "leaders spread evenly"

    producer = Producer({"bootstrap.servers": nodes[0].bootstrap, "enable.idempotence": True})
    for i in range(600):
        producer.produce("orders", value=f"v{i}".encode(), partition=i % 6)
    assert producer.flush(30) == 0
    consumer = Consumer({"bootstrap.servers": nodes[2].bootstrap, "group.id": "n/a",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition("orders", p, 0) for p in range(6)])
    got = set()
    for m in consume_until(consumer, lambda: len(got) >= 600, timeout_s=30):
        got.add(m.value())
    consumer.close()
    assert got == {f"v{i}".encode() for i in range(600)}

    # A restarted node replays the topic from the quorum and serves its partitions again.
    led_here = {p for p, (leader, _) in first.items() if leader == nodes[0].node_id}
    nodes[0].stop()
    # A clean stop writes every high watermark out, so a leader that comes back
    # serves its committed records at once instead of waiting for its followers.
    # A follower's is the last its leader told it, which may trail by a fetch.
    for p in range(6):
        hw = int((nodes[0].data_dir / f"orders-{p}" / "replication-offset").read_text())
        assert hw == 100 if p in led_here else 0 <= hw <= 100, (p, hw, led_here)
    nodes[0].start()
    counted = subprocess.run(["kcat", "-C", "-b", nodes[0].bootstrap, "-t", "orders", "-e", "-q"],
                             capture_output=True, text=True, timeout=60)
    assert counted.returncode == 0 and len(counted.stdout.split()) == 600, counted.stderr

    admin.delete_topics(["orders"])["orders"].result(timeout=20)
    # Listing all topics (asking for "orders" by name would auto-create it again, as in Kafka).
    wait_for(lambda: all("orders" not in AdminClient({"bootstrap.servers": n.bootstrap}).list_topics(timeout=5).topics
                         for n in nodes), what="the topic gone everywhere")
    wait_for(lambda: not any((n.data_dir / f"orders-{p}").exists() for n in nodes for p in range(6)),
             what="the partition directories removed on every node")


def replicas_identical(nodes, topic, partition):
    """Whether every node holds the partition's log files, with the same bytes."""
    import hashlib
    digests = set()
    for node in nodes:
        logs = sorted((node.data_dir / f"{topic}-{partition}").glob("*.log"))
        if not logs:
            return False
        digests.add(hashlib.sha256(b"".join(f.read_bytes() for f in logs)).hexdigest())
    return len(digests) == 1


def test_replicated_round_trip_leaves_byte_identical_logs(make_cluster):
    """The issue's replicated round trip: 6 partitions, RF 3, confluent-kafka and kcat;
    every replica's log files are byte-identical once the producer stops."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import NewTopic

    nodes = make_cluster(3, shards=2)
    wait_for(lambda: agreed_controller(nodes), what="a controller")
    admin = AdminClient({"bootstrap.servers": nodes[0].bootstrap})
    admin.create_topics([NewTopic("replicated", 6, 3)])["replicated"].result(timeout=20)
    producer = Producer({"bootstrap.servers": nodes[0].bootstrap, "enable.idempotence": True, "linger.ms": 5})
    for i in range(20_000):
        producer.produce("replicated", key=str(i % 97).encode(), value=b"x" * 100 + str(i).encode())
    assert producer.flush(60) == 0
    lines = "\n".join(f"kcat-{i}" for i in range(500)) + "\n"
    sent = subprocess.run(["kcat", "-P", "-b", nodes[1].bootstrap, "-t", "replicated"], input=lines,
                          capture_output=True, text=True, timeout=60)
    assert sent.returncode == 0, sent.stderr

    for p in range(6):
        wait_for(lambda p=p: replicas_identical(nodes, "replicated", p), timeout_s=30,
                 what=f"replicated-{p} identical on all three nodes")
    sizes = [sum(f.stat().st_size for f in (n.data_dir / f"replicated-{p}").glob("*.log"))
             for n in nodes for p in range(6)]
    assert sum(sizes) > 3 * 20_000 * 100, "every node holds every record"
    consumed = subprocess.run(["kcat", "-C", "-b", nodes[2].bootstrap, "-t", "replicated", "-e", "-q"],
                              capture_output=True, text=True, timeout=60)
    assert consumed.returncode == 0 and len(consumed.stdout.splitlines()) == 20_500, consumed.stderr


def metric(node, name):
    """One unlabelled sample from the node's Prometheus endpoint."""
    for line in node.metrics_text().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not exported")


def isr_of(node, topic, partition=0):
    """(leader, sorted ISR) of a partition as `node` itself describes it (a
    client library may ask another broker); None until it has replicas."""
    with kwire.Connection(node.bootstrap, timeout_s=5) as conn:
        found = conn.partitions(topic).get(partition)
    if found is None or not found[1]:
        return None
    leader, _replicas, isr = found
    return leader, sorted(isr)


def test_isr_follows_the_followers_and_acks_all_needs_min_insync(make_cluster):
    import signal

    from confluent_kafka import Producer
    from confluent_kafka.admin import NewTopic

    nodes = make_cluster(3, config='"replica.lag.time.max.ms" = 2000\n')
    wait_for(lambda: agreed_controller(nodes), what="a controller")
    admin = AdminClient({"bootstrap.servers": nodes[0].bootstrap})
    admin.create_topics([NewTopic("isr", 1, 3, config={"min.insync.replicas": "2"})])["isr"].result(timeout=20)
    leader, isr = wait_for(lambda: (v := isr_of(nodes[0], "isr")) and v[1] == [1, 2, 3] and v,
                           what="all three replicas in sync")
    followers = [n for n in nodes if n.node_id != leader]
    leader_node = nodes[leader - 1]
    acked = set()

    def produce_all(tag, count, timeout_ms=20000):
        p = Producer({"bootstrap.servers": leader_node.bootstrap, "acks": "all",
                      "message.timeout.ms": timeout_ms, "enable.idempotence": True})
        errors = []

        def done(err, msg):
            if err:
                errors.append(err)
            else:
                acked.add(msg.value())
        for i in range(count):
            p.produce("isr", value=f"{tag}-{i}".encode(), on_delivery=done)
        p.flush(timeout_ms / 1000 + 10)
        return errors

    def set_min_insync(n):
        # Through the leader's node: the stopped follower may be the admin client's pick.
        changed = subprocess.run([SLUICE_BIN, "topic", "alter-config", "isr", "--set", f"min.insync.replicas={n}",
                                  "--bootstrap", leader_node.bootstrap], capture_output=True, text=True, timeout=30)
        assert changed.returncode == 0, changed.stderr

    assert produce_all("all-in-sync", 200) == []
    try:
        followers[0].proc.send_signal(signal.SIGSTOP)
        wait_for(lambda: isr_of(leader_node, "isr")[1] == sorted([leader, followers[1].node_id]), timeout_s=20,
                 what="the stopped follower dropped from the ISR")
        assert produce_all("two-in-sync", 200) == [], "two in-sync replicas satisfy min.insync.replicas=2"
        assert metric(leader_node, "sluice_under_replicated_partitions") == 1
        assert metric(leader_node, "sluice_isr_shrinks_total") >= 1
        set_min_insync(3)
        # Raw Produce, as librdkafka retries this retriable error until its own timeout.
        # The new min.insync.replicas reaches the leader's shard: NOT_ENOUGH_REPLICAS (19).
        with kwire.Connection(leader_node.bootstrap) as conn:
            wait_for(lambda: conn.produce("isr", 0, kwire.record_batch([b"below-min"]), acks=-1)[0] == 19,
                     timeout_s=10, what="acks=all to be refused with NOT_ENOUGH_REPLICAS")
        set_min_insync(2)
        # With a second node stopped the quorum has no majority: the ISR cannot shrink, and
        # acks=all writes time out unacknowledged rather than be acknowledged unreplicated.
        followers[1].proc.send_signal(signal.SIGSTOP)
        errors = produce_all("no-quorum", 5, timeout_ms=4000)
        assert len(errors) == 5, errors
    finally:
        for f in followers:
            f.proc.send_signal(signal.SIGCONT)
    wait_for(lambda: isr_of(leader_node, "isr")[1] == [1, 2, 3], timeout_s=30, what="both followers back in the ISR")
    assert produce_all("healed", 200) == []
    assert metric(leader_node, "sluice_under_replicated_partitions") == 0
    assert metric(leader_node, "sluice_isr_expands_total") >= 3, "two at creation, one or more after healing"
    consumed = subprocess.run(["kcat", "-C", "-b", leader_node.bootstrap, "-t", "isr", "-e", "-q"],
                              capture_output=True, text=True, timeout=60)
    seen = set(consumed.stdout.encode().split())
    assert len(acked) == 600 and acked <= seen, "every acknowledged record is there"
    assert not any(v.startswith(b"below-min") for v in seen), "refused before the append, so never stored"


def leader_of(nodes, topic, partition=0):
    for node in nodes:
        if node.proc is None:
            continue
        try:
            v = isr_of(node, topic, partition)
        except Exception:
            continue
        if v:
            return v[0]
    return None


def test_leader_epochs_are_stamped_in_batches_and_answer_offset_for_leader_epoch(make_cluster):
    """KIP-101: each batch carries the epoch of the leader that appended it, every
    replica keeps the same epoch history, and OffsetForLeaderEpoch answers where
    an epoch ends (fencing stale and unknown current epochs, as KIP-320 says)."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import NewTopic

    nodes = make_cluster(3, config='"broker.session.timeout.ms" = 2000\n"replica.lag.time.max.ms" = 3000\n'
                                   '"auto.leader.rebalance.enable" = false\n')
    wait_for(lambda: agreed_controller(nodes), what="a controller")
    admin = AdminClient({"bootstrap.servers": nodes[0].bootstrap})
    admin.create_topics([NewTopic("epochs", 1, 3)])["epochs"].result(timeout=20)
    first, _ = wait_for(lambda: (v := isr_of(nodes[0], "epochs")) and v[1] == [1, 2, 3] and v, what="all in sync")

    def produce(tag, bootstrap):
        p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0})
        for i in range(10):
            p.produce("epochs", value=f"{tag}-{i}".encode())
            p.flush(30)
        assert len(p) == 0

    produce("first", ",".join(n.bootstrap for n in nodes))
    nodes[first - 1].kill9()
    others = [n for n in nodes if n.node_id != first]
    second = wait_for(lambda: (v := isr_of(others[0], "epochs")) and v[0] not in (first, -1) and v[0],
                      timeout_s=20, what="a new leader")
    produce("second", ",".join(n.bootstrap for n in others))
    follower = next(n for n in others if n.node_id != second)

    with kwire.Connection(nodes[second - 1].bootstrap) as conn:
        assert conn.offset_for_leader_epoch("epochs", 0, 0) == (0, 0, 10), "epoch 0 ends where epoch 1 starts"
        assert conn.offset_for_leader_epoch("epochs", 0, 1) == (0, 1, 20), "the latest epoch ends at the log end"
        assert conn.offset_for_leader_epoch("epochs", 0, 1, current_leader_epoch=1) == (0, 1, 20)
        assert conn.offset_for_leader_epoch("epochs", 0, 5) == (0, -1, -1), "an epoch never seen"
        assert conn.offset_for_leader_epoch("epochs", 0, 0, current_leader_epoch=0)[0] == 74, "FENCED_LEADER_EPOCH"
        assert conn.offset_for_leader_epoch("epochs", 0, 0, current_leader_epoch=9)[0] == 75, "UNKNOWN_LEADER_EPOCH"
        assert conn.offset_for_leader_epoch("epochs", 3, 0)[0] == 3, "no such partition"
        assert conn.offset_for_leader_epoch("nope", 0, 0)[0] == 3, "no such topic"
    with kwire.Connection(follower.bootstrap) as conn:
        assert conn.offset_for_leader_epoch("epochs", 0, 0)[0] == 6, "only the leader answers"
        # KIP-951: a produce refused by a follower names the leader and where it listens.
        error, current_leader, endpoints = conn.produce_v10("epochs", 0, kwire.record_batch([b"stray"]))
        assert (error, current_leader) == (6, (second, 1))
        assert endpoints == {second: ("127.0.0.1", nodes[second - 1].port)}

    nodes[first - 1].start()
    wait_for(lambda: (v := isr_of(others[0], "epochs")) and v[1] == [1, 2, 3], timeout_s=30,
             what="the killed leader back in the ISR")
    wait_for(lambda: replicas_identical(nodes, "epochs", 0), timeout_s=30, what="identical replicas")
    for node in nodes:
        segment = b"".join(f.read_bytes() for f in sorted((node.data_dir / "epochs-0").glob("*.log")))
        stamped = kwire.batch_leader_epochs(segment)
        assert [e for _, e in stamped] == [0 if base < 10 else 1 for base, _ in stamped] and len(stamped) == 20
        history = (node.data_dir / "epochs-0" / "leader-epoch-checkpoint").read_text()
        assert history == "0\n2\n0 0\n1 10\n", f"node {node.node_id}: {history!r}"
    consumed = subprocess.run(["kcat", "-C", "-b", nodes[first - 1].bootstrap, "-t", "epochs", "-e", "-q"],
                              capture_output=True, text=True, timeout=60)
    assert sorted(consumed.stdout.split()) == sorted([f"first-{i}" for i in range(10)] +
                                                      [f"second-{i}" for i in range(10)])


def test_leader_kills_lose_no_acknowledged_record(make_cluster):
    """Jepsen-style, bounded: an idempotent acks=all producer writes while the partition
    leader is killed with SIGKILL, three times. Then: no acknowledged record is lost,
    none is duplicated or reordered, offsets are continuous, and the replicas agree."""
    import threading

    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import NewTopic

    nodes = make_cluster(3, config='"broker.session.timeout.ms" = 2000\n"replica.lag.time.max.ms" = 3000\n')
    wait_for(lambda: agreed_controller(nodes), what="a controller")
    admin = AdminClient({"bootstrap.servers": nodes[0].bootstrap})
    admin.create_topics([NewTopic("jepsen", 1, 3, config={"min.insync.replicas": "2"})])["jepsen"].result(timeout=20)
    wait_for(lambda: (v := isr_of(nodes[0], "jepsen")) and v[1] == [1, 2, 3], what="all in sync")

    acked, stop = [], threading.Event()

    def produce():
        bootstrap = ",".join(n.bootstrap for n in nodes)
        p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                      "message.timeout.ms": 60000, "linger.ms": 2})
        i = 0
        while not stop.is_set():
            try:
                p.produce("jepsen", value=b"%08d" % i,
                          on_delivery=lambda e, m: e is None and acked.append((m.offset(), m.value())))
            except BufferError:  # librdkafka's queue is full while a leader is being replaced
                p.poll(0.1)
                continue
            i += 1
            p.poll(0)
            if i % 200 == 0:
                time.sleep(0.01)
        p.flush(60)

    writer = threading.Thread(target=produce)
    writer.start()
    try:
        for _ in range(3):
            time.sleep(3)
            leader = wait_for(lambda: leader_of(nodes, "jepsen"), what="a leader")
            victim = nodes[leader - 1]
            victim.kill9()
            wait_for(lambda: (l := leader_of(nodes, "jepsen")) not in (None, -1, leader) and l,
                     timeout_s=20, what="a new leader")
            victim.start()
            wait_for(lambda: (v := isr_of(victim, "jepsen")) and v[1] == [1, 2, 3], timeout_s=30,
                     what="the killed broker back in the ISR")
        time.sleep(2)
    finally:
        stop.set()
        writer.join(90)
    assert len(acked) > 1000, "the producer kept being acknowledged across the kills"

    leader = leader_of(nodes, "jepsen")
    consumer = Consumer({"bootstrap.servers": nodes[leader - 1].bootstrap, "group.id": "n/a",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition("jepsen", 0, 0)])
    seen = []
    want = max(o for o, _ in acked) + 1
    for m in consume_until(consumer, lambda: seen and seen[-1][0] + 1 >= want):
        seen.append((m.offset(), m.value()))
    consumer.close()
    offsets = [o for o, _ in seen]
    assert offsets == list(range(len(offsets))), "offsets are continuous"
    values = [v for _, v in seen]
    assert len(set(values)) == len(values), "no record is duplicated"
    assert values == sorted(values), "no record is reordered"
    by_offset = dict(seen)
    lost = [(o, v) for o, v in acked if by_offset.get(o) != v]
    if lost:
        import re
        for node in nodes:
            print(f"--- node {node.node_id}")
            print("\n".join(line for line in node.log().splitlines()
                            if re.search(r"truncat|epoch begins|following|ISR|restarted the log", line)))
    assert not lost, f"{len(lost)} acknowledged records lost or changed, e.g. {lost[:3]}; read {len(seen)} of {want}"
    wait_for(lambda: replicas_identical(nodes, "jepsen", 0), timeout_s=30, what="the replicas byte-identical")


@pytest.mark.parametrize("mode", ["off", "on", "operator"])
def test_unclean_leader_election_is_off_unless_enabled(make_cluster, mode):
    """RF 2: the follower falls out of the ISR (SIGSTOP), the leader takes acks=1 writes
    alone and is killed, then the follower resumes. Unclean election off: the partition
    stays offline until the old leader returns, and nothing is lost. On: the follower is
    elected, and the loss is reported. Operator: off, until `sluice cluster elect-leaders
    --type unclean` (ElectLeaders) elects the follower, reporting the loss."""
    import signal

    from confluent_kafka import Producer
    from confluent_kafka.admin import NewTopic

    nodes = make_cluster(3, config='"broker.session.timeout.ms" = 2000\n"replica.lag.time.max.ms" = 2000\n')
    wait_for(lambda: agreed_controller(nodes), what="a controller")
    admin = AdminClient({"bootstrap.servers": nodes[0].bootstrap})
    unclean = mode == "on"
    config = {"unclean.leader.election.enable": "true"} if unclean else {}
    admin.create_topics([NewTopic("u", 1, 2, config=config)])["u"].result(timeout=20)
    md = wait_for(lambda: (t := admin.list_topics("u", timeout=5).topics["u"]) and len(t.partitions[0].isrs) == 2 and t,
                  what="both replicas in sync")
    leader = md.partitions[0].leader
    follower = next(b for b in md.partitions[0].replicas if b != leader)
    bystander = next(n for n in nodes if n.node_id not in (leader, follower))
    leader_node, follower_node = nodes[leader - 1], nodes[follower - 1]

    def produce(acks, tag, count):
        p = Producer({"bootstrap.servers": leader_node.bootstrap, "acks": acks, "message.timeout.ms": 10000})
        for i in range(count):
            p.produce("u", value=f"{tag}-{i}".encode())
        assert p.flush(20) == 0

    produce("all", "replicated", 100)
    follower_node.proc.send_signal(signal.SIGSTOP)
    try:
        wait_for(lambda: isr_of(leader_node, "u")[1] == [leader], timeout_s=20, what="the follower out of the ISR")
        produce("1", "leader-only", 50)
        leader_node.kill9()
    finally:
        follower_node.proc.send_signal(signal.SIGCONT)
    if mode == "operator":
        wait_for(lambda: isr_of(bystander, "u")[0] == -1, timeout_s=20, what="the partition offline")
        elect = [SLUICE_BIN, "cluster", "elect-leaders", "--type", "unclean", "--topic", "u",
                 "--bootstrap", bystander.bootstrap]
        done = subprocess.run(elect, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0 and "u-0: elected" in done.stdout, done.stdout + done.stderr
        assert isr_of(bystander, "u") == (follower, [follower])
        assert "unclean leader election by the operator" in bystander.log(), "the loss is reported"
        again = subprocess.run(elect, capture_output=True, text=True, timeout=30)
        assert again.returncode == 0 and "needs no election" in again.stdout, again.stdout + again.stderr
        counted = subprocess.run(["kcat", "-C", "-b", follower_node.bootstrap, "-t", "u", "-e", "-q"],
                                 capture_output=True, text=True, timeout=60)
        assert len(counted.stdout.split()) == 100, "the leader-only records are gone, as reported"
    elif not unclean:
        wait_for(lambda: isr_of(bystander, "u")[0] == -1, timeout_s=20, what="the partition offline")
        time.sleep(3)
        assert isr_of(bystander, "u")[0] == -1, "an out-of-sync replica is never elected"
        status = subprocess.run([SLUICE_BIN, "cluster", "status", "--bootstrap", bystander.bootstrap],
                                capture_output=True, text=True, timeout=30)
        assert "offline: 1" in status.stdout, status.stdout
        leader_node.start()
        wait_for(lambda: isr_of(bystander, "u")[0] == leader, timeout_s=20, what="the old leader back as leader")
        counted = subprocess.run(["kcat", "-C", "-b", leader_node.bootstrap, "-t", "u", "-e", "-q"],
                                 capture_output=True, text=True, timeout=60)
        assert len(counted.stdout.split()) == 150, "nothing was lost"
    else:
        wait_for(lambda: isr_of(bystander, "u")[0] == follower, timeout_s=20, what="the follower elected")
        assert "unclean leader election" in bystander.log(), "the loss is reported"
        counted = subprocess.run(["kcat", "-C", "-b", follower_node.bootstrap, "-t", "u", "-e", "-q"],
                                 capture_output=True, text=True, timeout=60)
        assert len(counted.stdout.split()) == 100, "the leader-only records are gone, as reported"


def test_rolling_restart_under_load_keeps_every_acknowledged_record(make_cluster):
    """All three brokers restarted one by one while an idempotent acks=all producer and a
    consumer keep going: nothing acknowledged is lost, and nothing the consumer saw
    disappears or changes afterwards."""
    import threading

    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import NewTopic

    nodes = make_cluster(3, config='"broker.session.timeout.ms" = 2000\n"replica.lag.time.max.ms" = 3000\n')
    wait_for(lambda: agreed_controller(nodes), what="a controller")
    admin = AdminClient({"bootstrap.servers": nodes[0].bootstrap})
    admin.create_topics([NewTopic("roll", 3, 3, config={"min.insync.replicas": "2"})])["roll"].result(timeout=20)

    def all_in_sync():
        md = AdminClient({"bootstrap.servers": ",".join(n.bootstrap for n in nodes if n.proc)}).list_topics(timeout=5)
        t = md.topics.get("roll")
        return t is not None and not t.error and all(len(p.isrs) == 3 and p.leader > 0 for p in t.partitions.values())

    wait_for(all_in_sync, what="every partition fully in sync")
    bootstrap = ",".join(n.bootstrap for n in nodes)
    acked, seen, stop = [], [], threading.Event()

    def produce():
        p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                      "message.timeout.ms": 60000, "linger.ms": 5})
        i = 0
        while not stop.is_set():
            try:
                p.produce("roll", key=str(i % 3).encode(), value=b"%08d" % i,
                          on_delivery=lambda e, m: e is None and acked.append((m.partition(), m.offset(), m.value())))
            except BufferError:  # librdkafka's queue is full while a broker restarts
                p.poll(0.1)
                continue
            i += 1
            p.poll(0)
            if i % 100 == 0:
                time.sleep(0.01)
        p.flush(60)

    def consume():
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": "n/a", "enable.auto.commit": False})
        c.assign([TopicPartition("roll", p, 0) for p in range(3)])
        while not stop.is_set():
            for m in c.consume(1000, timeout=0.5):
                if not m.error():
                    seen.append((m.partition(), m.offset(), m.value()))
        c.close()

    threads = [threading.Thread(target=produce), threading.Thread(target=consume)]
    for t in threads:
        t.start()
    try:
        for node in nodes:
            time.sleep(2)
            node.stop()
            node.start()
            wait_for(all_in_sync, timeout_s=40, what=f"every partition in sync after restarting node {node.node_id}")
        time.sleep(2)
    finally:
        stop.set()
        for t in threads:
            t.join(90)
    assert len(acked) > 1000 and len(seen) > 1000, (len(acked), len(seen))

    final = {}
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": "n/a", "enable.auto.commit": False})
    reader.assign([TopicPartition("roll", p, 0) for p in range(3)])
    want = len({(p, o) for p, o, _ in acked})
    for m in consume_until(reader, lambda: all((p, o) in final for p, o, _ in acked)):
        final[(m.partition(), m.offset())] = m.value()
    reader.close()
    lost = [(p, o, v) for p, o, v in acked if final.get((p, o)) != v]
    assert not lost, f"{len(lost)} of {want} acknowledged records lost, e.g. {lost[:3]}"
    vanished = [(p, o, v) for p, o, v in seen if final.get((p, o)) != v]
    assert not vanished, f"the consumer saw {len(vanished)} records that later disappeared, e.g. {vanished[:3]}"
    values = list(final.values())
    assert len(set(values)) == len(values), "no record is duplicated"


@pytest.fixture
def netns_cluster(tmp_path):
    """Three nodes, each in its own network namespace on a bridge (10.215.N.1-3, the
    test talks to them from the host side at .254), so one can be cut off from the
    other two with nftables inside its namespace while clients still reach it."""
    import os

    from conftest import Broker

    tag = os.getpid() % 10000
    subnet = f"10.215.{os.getpid() % 250}"
    bridge = f"slbr{tag}"
    spaces = [f"sl{tag}n{i}" for i in (1, 2, 3)]

    def ip(*args):
        subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)

    ip("link", "add", bridge, "type", "bridge")
    ip("addr", "add", f"{subnet}.254/24", "dev", bridge)
    ip("link", "set", bridge, "up")
    nodes = []
    try:
        for i, ns in enumerate(spaces, start=1):
            host_end, ns_end = f"slh{tag}n{i}", f"sln{tag}n{i}"
            ip("netns", "add", ns)
            ip("link", "add", host_end, "type", "veth", "peer", "name", ns_end)
            ip("link", "set", ns_end, "netns", ns)
            ip("link", "set", host_end, "master", bridge)
            ip("link", "set", host_end, "up")
            ip("-n", ns, "addr", "add", f"{subnet}.{i}/24", "dev", ns_end)
            ip("-n", ns, "link", "set", ns_end, "up")
            ip("-n", ns, "link", "set", "lo", "up")
        quorum = ",".join(f"{i}@{subnet}.{i}:19093" for i in (1, 2, 3))
        config = '"broker.session.timeout.ms" = 2000\n"replica.lag.time.max.ms" = 3000\n'
        for i, ns in enumerate(spaces, start=1):
            node = Broker(tmp_path / f"node{i}", config=config, shards=1, host=f"{subnet}.{i}",
                          prefix=["ip", "netns", "exec", ns],
                          extra_args=["--node-id", str(i), "--controller-listen", f"{subnet}.{i}:19093",
                                      "--controller-quorum", quorum])
            node.port, node.node_id, node.namespace = 19092, i, ns
            nodes.append(node)
        for node in nodes:
            node.start()

        def isolate(node):
            """Drops the node's traffic to and from the other two nodes, both ways."""
            others = ", ".join(n.host for n in nodes if n is not node)
            rules = ("table inet isolate {\n"
                     f"  chain in {{ type filter hook input priority 0; ip saddr {{ {others} }} drop; }}\n"
                     f"  chain out {{ type filter hook output priority 0; ip daddr {{ {others} }} drop; }}\n"
                     "}\n")
            subprocess.run(["ip", "netns", "exec", node.namespace, "nft", "-f", "-"], input=rules, text=True,
                           check=True, timeout=30)

        def heal(node):
            subprocess.run(["ip", "netns", "exec", node.namespace, "nft", "delete", "table", "inet", "isolate"],
                           check=True, timeout=30)

        yield nodes, isolate, heal
        for node in nodes:
            if node.proc is not None:
                code = node.stop()
                assert code == 0, f"node did not shut down cleanly (exit {code}):\n{node.log()[-4000:]}"
                assert "panicked" not in node.log(), node.log()[-4000:]
    finally:
        for node in nodes:
            if node.proc is not None:
                node.kill9()
        for ns in spaces:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        subprocess.run(["ip", "link", "del", bridge], capture_output=True, timeout=30)


def test_an_isolated_leader_stops_acknowledging_and_truncates_after_healing(netns_cluster):
    from confluent_kafka import Producer
    from confluent_kafka.admin import NewTopic

    nodes, isolate, heal = netns_cluster
    wait_for(lambda: agreed_controller(nodes), what="a controller")
    admin = AdminClient({"bootstrap.servers": nodes[0].bootstrap})
    admin.create_topics([NewTopic("np", 1, 3, config={"min.insync.replicas": "2"})])["np"].result(timeout=20)
    leader, _ = wait_for(lambda: (v := isr_of(nodes[0], "np")) and v[1] == [1, 2, 3] and v, what="all in sync")
    old = nodes[leader - 1]
    majority = [n for n in nodes if n is not old]
    acked = []

    def produce(bootstrap, acks, tag, count, timeout_ms=20000):
        p = Producer({"bootstrap.servers": bootstrap, "acks": acks, "message.timeout.ms": timeout_ms})
        errors = []
        for i in range(count):
            p.produce("np", value=f"{tag}-{i}".encode(),
                      on_delivery=lambda e, m: errors.append(e) if e else acked.append(m.value()))
        p.flush(timeout_ms / 1000 + 10)
        return errors

    assert produce(",".join(n.bootstrap for n in nodes), "all", "before", 100) == []
    isolate(old)
    # Straight to the old leader (a client library would find the new one, once there is one).
    with kwire.Connection(old.bootstrap) as conn:
        # acks=1 it still takes alone, while it believes it leads; they must not survive the healing.
        code, _ = conn.produce("np", 0, kwire.record_batch([b"isolated-one"]), acks=1)
        assert code == 0, code
        # Cut off, it cannot replicate: an acks=all write is never acknowledged (REQUEST_TIMED_OUT,
        # or NOT_LEADER_OR_FOLLOWER once it knows itself cut off).
        code, _ = conn.produce("np", 0, kwire.record_batch([b"isolated-all"]), acks=-1, timeout_ms=1500)
        assert code in (6, 7), code
    # The majority fences the old leader and elects another replica from the ISR.
    new_leader = wait_for(lambda: (v := isr_of(majority[0], "np")) and v[0] not in (leader, -1) and v[0],
                          timeout_s=20, what="a new leader on the majority side")
    assert produce(",".join(n.bootstrap for n in majority), "all", "after", 100) == []
    # Cut off for a session timeout, the old leader knows it has been fenced by now: it
    # names no leader for the partition and takes no write, so its clients look elsewhere.
    wait_for(lambda: isr_of(old, "np")[0] == -1, timeout_s=20, what="the cut-off node naming no leader")
    with kwire.Connection(old.bootstrap) as conn:
        for acks in (1, -1):
            code, _ = conn.produce("np", 0, kwire.record_batch([b"isolated-late"]), acks=acks, timeout_ms=3000)
            assert code == 6, f"acks={acks}: NOT_LEADER_OR_FOLLOWER expected, got {code}"
    heal(old)
    wait_for(lambda: (v := isr_of(majority[0], "np")) and v[1] == [1, 2, 3], timeout_s=40,
             what="the old leader back in the ISR as a follower")
    assert isr_of(majority[0], "np")[0] == new_leader
    wait_for(lambda: replicas_identical(nodes, "np", 0), timeout_s=30, what="the old leader truncated to the new log")
    consumed = subprocess.run(["kcat", "-C", "-b", nodes[new_leader - 1].bootstrap, "-t", "np", "-e", "-q"],
                              capture_output=True, text=True, timeout=60)
    values = set(consumed.stdout.encode().split())
    must_have = {v for v in acked if v.startswith((b"before", b"after"))}
    assert len(must_have) == 200 and must_have <= values, "every acks=all record acknowledged by the majority"
    assert not any(v.startswith(b"isolated") for v in values), "the isolated leader's acks=1 write is gone"


def test_preferred_leader_election_on_demand(make_cluster):
    """auto.leader.rebalance.enable=false: leadership stays where failover put it until
    `sluice cluster elect-leaders --type preferred` (ElectLeaders) moves it back."""
    from confluent_kafka.admin import NewTopic

    nodes = make_cluster(3, config='"broker.session.timeout.ms" = 2000\n"replica.lag.time.max.ms" = 3000\n'
                                   '"auto.leader.rebalance.enable" = false\n')
    wait_for(lambda: agreed_controller(nodes), what="a controller")
    admin = AdminClient({"bootstrap.servers": nodes[0].bootstrap})
    admin.create_topics([NewTopic("ondemand", 2, 3)])["ondemand"].result(timeout=20)
    preferred, _ = wait_for(lambda: (v := isr_of(nodes[0], "ondemand")) and v[1] == [1, 2, 3] and v,
                            what="all in sync")
    others = [n for n in nodes if n.node_id != preferred]
    nodes[preferred - 1].kill9()
    wait_for(lambda: (v := isr_of(others[0], "ondemand")) and v[0] not in (preferred, -1), timeout_s=20,
             what="another leader")
    nodes[preferred - 1].start()
    wait_for(lambda: isr_of(others[0], "ondemand")[1] == [1, 2, 3], timeout_s=30, what="back in the ISR")
    time.sleep(2)
    assert isr_of(others[0], "ondemand")[0] != preferred, "no automatic rebalance when it is off"

    def elect(*args):
        return subprocess.run([SLUICE_BIN, "cluster", "elect-leaders", "--type", "preferred", *args,
                               "--bootstrap", others[1].bootstrap], capture_output=True, text=True, timeout=30)

    done = elect("--topic", "ondemand", "--partition", "0")
    assert done.returncode == 0 and "ondemand-0: elected" in done.stdout, done.stdout + done.stderr
    assert isr_of(others[0], "ondemand")[0] == preferred
    again = elect("--topic", "ondemand", "--partition", "0")
    assert again.returncode == 0 and "needs no election" in again.stdout, again.stdout
    missing = elect("--topic", "ondemand", "--partition", "7")
    assert missing.returncode != 0 and "ondemand-7" in missing.stdout, missing.stdout


def test_consumer_groups_span_the_cluster_and_survive_a_coordinator_kill(make_cluster):
    """A group's coordinator is the leader of its `__consumer_offsets` partition (RF 3):
    every broker names the same one, members bootstrapped to different brokers form one
    group, and when the coordinator is SIGKILLed a new one takes over with the committed
    offsets intact."""
    import threading

    from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
    from confluent_kafka.admin import NewTopic

    nodes = make_cluster(3, config='"broker.session.timeout.ms" = 2000\n"replica.lag.time.max.ms" = 3000\n'
                                   '"group.initial.rebalance.delay.ms" = 300\n"group.min.session.timeout.ms" = 1000\n')
    wait_for(lambda: agreed_controller(nodes), what="a controller")
    admin = AdminClient({"bootstrap.servers": nodes[0].bootstrap})
    admin.create_topics([NewTopic("grp", 6, 3)])["grp"].result(timeout=20)

    def produce(tag, count, bootstrap):
        p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
        for i in range(count):
            p.produce("grp", value=f"{tag}-{i}".encode())
        assert p.flush(30) == 0

    produce("before", 6000, ",".join(n.bootstrap for n in nodes))

    def coordinator_seen_by(node):
        with kwire.Connection(node.bootstrap) as conn:
            error, node_id, port = conn.find_coordinator("g1")
        return node_id if error == 0 else None

    coordinator = wait_for(lambda: len({coordinator_seen_by(n) for n in nodes}) == 1 and coordinator_seen_by(nodes[0]),
                           what="one coordinator named by every broker")
    offsets = admin.list_topics("__consumer_offsets", timeout=5).topics["__consumer_offsets"]
    assert all(len(p.replicas) == 3 for p in offsets.partitions.values()), "offsets are replicated 3 ways"

    seen, lock, stop = [], threading.Lock(), threading.Event()

    def member(bootstrap):
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": "g1", "auto.offset.reset": "earliest",
                      "enable.auto.commit": False, "session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
        c.subscribe(["grp"])
        uncommitted = False
        while not stop.is_set():
            batch = [m for m in c.consume(500, timeout=0.5) if not m.error()]
            if batch:
                with lock:
                    seen.extend(m.value() for m in batch)
                uncommitted = True
            if uncommitted:
                try:
                    c.commit(asynchronous=False)
                    uncommitted = False
                except Exception:
                    pass  # a rebalance or a coordinator move: tried again next round
        c.close()

    def committed_total(node):
        probe = Consumer({"bootstrap.servers": node.bootstrap, "group.id": "g1"})
        try:
            return sum(max(tp.offset, 0) for tp in probe.committed([TopicPartition("grp", p) for p in range(6)],
                                                                   timeout=20))
        except KafkaException:
            return None  # the coordinator moving
        finally:
            probe.close()

    members = [threading.Thread(target=member, args=(n.bootstrap,)) for n in nodes]
    for t in members:
        t.start()
    try:
        wait_for(lambda: len(set(seen)) >= 6000, timeout_s=60, what="the first 6000 records consumed by the group")
        nodes[coordinator - 1].kill9()
        survivors = [n for n in nodes if n.node_id != coordinator]
        moved = wait_for(lambda: (c := coordinator_seen_by(survivors[0])) not in (None, coordinator) and c,
                         timeout_s=20, what="a new coordinator")
        assert coordinator_seen_by(survivors[1]) == moved
        produce("after", 3000, ",".join(n.bootstrap for n in survivors))
        wait_for(lambda: len(set(seen)) >= 9000, timeout_s=90, what="the group consuming through the new coordinator")
        # The last commits may have met the coordinator moving: the members retry them.
        wait_for(lambda: committed_total(survivors[0]) == 9000, timeout_s=60, what="every offset committed")
    finally:
        stop.set()
        for t in members:
            t.join(30)
    values = set(seen)
    assert values == {f"before-{i}".encode() for i in range(6000)} | {f"after-{i}".encode() for i in range(3000)}

    assert committed_total(survivors[0]) == 9000, "the commits made through both coordinators survive"
    listed = subprocess.run([SLUICE_BIN, "groups", "list", "--bootstrap", survivors[1].bootstrap],
                            capture_output=True, text=True, timeout=30)
    assert listed.returncode == 0 and "g1" in listed.stdout, listed.stdout + listed.stderr


def test_internal_topics_wait_for_their_whole_replication_factor(make_cluster):
    """As Kafka's: while fewer brokers are up than offsets.topic.replication.factor (3), the
    first FindCoordinator gets COORDINATOR_NOT_AVAILABLE, which clients retry, rather than
    a __consumer_offsets with fewer replicas for good. Once the third is back, it has three."""
    nodes = make_cluster(3, config='"broker.session.timeout.ms" = 2000\n')
    nodes[2].kill9()
    wait_for(lambda: 3 not in cluster_view(nodes[0])[1], timeout_s=20, what="broker 3 fenced")
    with kwire.Connection(nodes[0].bootstrap) as c:
        assert c.find_coordinator("early-group")[0] == 15, "COORDINATOR_NOT_AVAILABLE"
        assert c.find_coordinator("early-txn", key_type=1)[0] == 15
    assert "fewer than the topic's replication factor 3" in nodes[0].log() + nodes[1].log()
    nodes[2].restart()

    def found():
        with kwire.Connection(nodes[0].bootstrap) as c:
            return c.find_coordinator("early-group")[0] == 0
    wait_for(found, timeout_s=30, what="the group's coordinator, once three brokers are up")
    replicas = replicas_of(nodes[0], "__consumer_offsets")
    assert len(replicas) == 50 and all(len(r) == 3 for r in replicas.values())


def test_dedicated_controllers_and_broker_only_nodes(make_cluster):
    """process.roles: three controller-only voters and two broker-only observers. Clients
    see only the brokers; topics, replication, a quorum leader kill and a broker kill all
    work as in combined mode."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import NewTopic

    nodes = make_cluster(3, dedicated=True, broker_only=2,
                         config='"broker.session.timeout.ms" = 2000\n"replica.lag.time.max.ms" = 3000\n')
    controllers, brokers = nodes[:3], nodes[3:]
    wait_for(lambda: (v := cluster_view(brokers[0])) and v[1] == {4: brokers[0].port, 5: brokers[1].port}
             and v[0] in (4, 5), what="the two brokers registered, one named as controller (clients reach only brokers)")

    def quorum_leader():
        """The quorum leader broker 4 last heard of (controllers are not in Metadata)."""
        import re
        found = re.findall(r"metadata quorum leader changed leader_id=(\d+)", brokers[0].log())
        return int(found[-1]) if found else None
    admin = AdminClient({"bootstrap.servers": brokers[0].bootstrap})
    admin.create_topics([NewTopic("split", 4, 2)])["split"].result(timeout=20)
    assert all(sorted(r) == [4, 5] for r in replicas_of(brokers[1], "split").values())
    assert not list(controllers[0].data_dir.glob("split-*")), "controllers hold no partitions"

    def produce(tag, count):
        p = Producer({"bootstrap.servers": ",".join(b.bootstrap for b in brokers), "acks": "all"})
        for i in range(count):
            p.produce("split", value=f"{tag}-{i}".encode())
        assert p.flush(30) == 0

    produce("first", 1000)
    leader = quorum_leader()
    assert leader in (1, 2, 3)
    controllers[leader - 1].kill9()
    wait_for(lambda: quorum_leader() not in (leader, 0, None), timeout_s=20, what="a new quorum leader")
    admin.create_topics([NewTopic("after-failover", 1, 2)])["after-failover"].result(timeout=20)
    produce("second", 1000)
    # An ISR expansion proposed just before the quorum leader died is lost with it, and
    # retried once it times out: broker 5 is killed only once both brokers are in sync.
    wait_for(lambda: all((v := isr_of(brokers[0], "split", p)) and v[1] == [4, 5] for p in range(4)),
             timeout_s=30, what="both brokers in every ISR")
    brokers[1].kill9()
    wait_for(lambda: all((v := isr_of(brokers[0], "split", p)) and v == (4, [4]) for p in range(4)),
             timeout_s=30, what="broker 5 fenced and out of every ISR")
    produce("third", 1000)
    # Clients no longer see broker 5; the operator does, as fenced (DescribeCluster v2).
    assert cluster_view(brokers[0])[1] == {4: brokers[0].port}
    info = json.loads(subprocess.run([SLUICE_BIN, "cluster", "info", "--format", "json", "--bootstrap",
                                      brokers[0].bootstrap], capture_output=True, text=True, timeout=30).stdout)
    assert {b["id"]: b["fenced"] for b in info["brokers"]} == {4: False, 5: True}
    status = json.loads(subprocess.run([SLUICE_BIN, "cluster", "status", "--format", "json", "--bootstrap",
                                        brokers[0].bootstrap], capture_output=True, text=True, timeout=30).stdout)
    assert status["fenced_brokers"] == [5] and status["under_replicated"] >= 4
    consumed = subprocess.run(["kcat", "-C", "-b", brokers[0].bootstrap, "-t", "split", "-e", "-q"],
                              capture_output=True, text=True, timeout=60)
    assert len(set(consumed.stdout.split())) == 3000, "every acknowledged record is there"


def replicas_of(node, topic):
    """{partition: replicas} as the node describes the topic."""
    md = AdminClient({"bootstrap.servers": node.bootstrap}).list_topics(topic, timeout=5)
    return {p.id: list(p.replicas) for p in md.topics[topic].partitions.values()}


def test_partitions_move_between_brokers_and_a_broker_is_decommissioned(make_cluster):
    """AlterPartitionReassignments through `sluice cluster reassign`: the new replica
    catches up, the old one is dropped (its files deleted), the data stays whole. Then
    `sluice cluster decommission` empties a broker and unregisters it."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import NewTopic

    nodes = make_cluster(3, config='"replica.lag.time.max.ms" = 3000\n')
    wait_for(lambda: agreed_controller(nodes), what="a controller")
    admin = AdminClient({"bootstrap.servers": nodes[0].bootstrap})
    admin.create_topics([NewTopic("moving", 3, 2)])["moving"].result(timeout=20)
    producer = Producer({"bootstrap.servers": nodes[0].bootstrap, "acks": "all", "linger.ms": 5})
    for i in range(3000):
        producer.produce("moving", value=b"m-%05d" % i, partition=i % 3)
    assert producer.flush(30) == 0

    def cli(*args):
        return subprocess.run([SLUICE_BIN, "cluster", *args, "--bootstrap", nodes[1].bootstrap],
                              capture_output=True, text=True, timeout=120)

    before = replicas_of(nodes[0], "moving")[0]
    newcomer = next(b for b in (1, 2, 3) if b not in before)
    target = [newcomer, before[1]]
    moved = cli("reassign", "--topic", "moving", "--partition", "0", "--replicas", ",".join(map(str, target)), "--wait")
    assert moved.returncode == 0 and "complete" in moved.stdout, moved.stdout + moved.stderr
    assert replicas_of(nodes[0], "moving")[0] == target
    wait_for(lambda: isr_of(nodes[0], "moving")[1] == sorted(target), what="the target replicas in sync")
    gone = nodes[before[0] - 1].data_dir / "moving-0"
    wait_for(lambda: not gone.exists(), what="the dropped replica's files deleted")
    wait_for(lambda: replicas_identical([nodes[b - 1] for b in target], "moving", 0), what="identical replicas")
    assert "No reassignment in progress" in cli("reassignments").stdout

    cancel = cli("reassign", "--topic", "moving", "--partition", "0", "--cancel")
    assert cancel.returncode != 0 and "not being reassigned" in cancel.stdout + cancel.stderr
    twice = cli("reassign", "--topic", "moving", "--partition", "0", "--replicas", "1,1")
    assert twice.returncode != 0 and "each broker once" in twice.stdout + twice.stderr
    nowhere = cli("reassign", "--topic", "moving", "--partition", "0", "--replicas", "1,9")
    assert nowhere.returncode != 0 and "broker 9 is not registered" in nowhere.stdout + nowhere.stderr

    retired = cli("decommission", "--broker", "3")
    assert retired.returncode == 0 and "unregistered" in retired.stdout, retired.stdout + retired.stderr
    assert all(3 not in r for r in replicas_of(nodes[0], "moving").values())
    assert sorted(cluster_view(nodes[0])[1]) == [1, 2], "broker 3 is no longer listed"
    wait_for(lambda: not list(nodes[2].data_dir.glob("moving-*")), what="broker 3's partitions deleted")
    for p in range(3):
        wait_for(lambda p=p: replicas_identical(nodes[:2], "moving", p), what=f"moving-{p} identical")
    consumed = subprocess.run(["kcat", "-C", "-b", nodes[0].bootstrap, "-t", "moving", "-e", "-q"],
                              capture_output=True, text=True, timeout=60)
    assert sorted(consumed.stdout.split()) == ["m-%05d" % i for i in range(3000)], "nothing lost in the moves"


def test_leadership_returns_to_the_preferred_replica_after_it_comes_back(make_cluster):
    from confluent_kafka import Producer
    from confluent_kafka.admin import NewTopic

    nodes = make_cluster(3, config='"broker.session.timeout.ms" = 2000\n"replica.lag.time.max.ms" = 3000\n'
                                   '"leader.imbalance.check.interval.seconds" = 2\n')
    wait_for(lambda: agreed_controller(nodes), what="a controller")
    admin = AdminClient({"bootstrap.servers": nodes[0].bootstrap})
    admin.create_topics([NewTopic("pref", 1, 3)])["pref"].result(timeout=20)
    preferred, _ = wait_for(lambda: (v := isr_of(nodes[0], "pref")) and v[1] == [1, 2, 3] and v, what="all in sync")
    others = [n for n in nodes if n.node_id != preferred]

    def produce(tag):
        p = Producer({"bootstrap.servers": ",".join(n.bootstrap for n in others), "acks": "all"})
        for i in range(50):
            p.produce("pref", value=f"{tag}-{i}".encode())
        assert p.flush(30) == 0

    produce("first")
    nodes[preferred - 1].kill9()
    wait_for(lambda: (v := isr_of(others[0], "pref")) and v[0] not in (preferred, -1), timeout_s=20,
             what="another leader while the preferred one is down")
    produce("second")
    nodes[preferred - 1].start()
    wait_for(lambda: (v := isr_of(others[0], "pref")) and v == (preferred, [1, 2, 3]), timeout_s=30,
             what="leadership back on the preferred replica")
    produce("third")
    counted = subprocess.run(["kcat", "-C", "-b", nodes[preferred - 1].bootstrap, "-t", "pref", "-e", "-q"],
                             capture_output=True, text=True, timeout=60)
    assert len(set(counted.stdout.split())) == 150


def test_a_paused_quorum_leader_fences_no_broker_on_its_stale_view_when_it_resumes(make_cluster):
    """SIGSTOP the quorum leader past the session timeout. The other two elect a new leader,
    which fences the paused broker; the paused one, resumed, still believes it leads for a
    moment, and must not take its own pause for everyone else's silence."""
    import signal

    nodes = make_cluster(3, config='"broker.session.timeout.ms" = 2000\n')
    controller = wait_for(lambda: agreed_controller(nodes), what="a controller")
    paused = nodes[controller - 1]
    others = [n for n in nodes if n is not paused]
    mark = len(paused.log())
    paused.proc.send_signal(signal.SIGSTOP)
    try:
        time.sleep(5)
    finally:
        paused.proc.send_signal(signal.SIGCONT)
    wait_for(lambda: agreed_controller(nodes), timeout_s=30, what="one controller again")
    time.sleep(3)  # more than the session timeout: a stale view would have acted by now
    after = paused.log()[mark:]
    assert "the controller thread stalled" in after, after[-3000:]
    wrongly = [line for line in after.splitlines() if "fencing it" in line]
    assert wrongly == [], wrongly
    # The new leader fenced the paused broker (through the quorum) and unfenced it on its return.
    new_leader_log = "".join(n.log() for n in others)
    assert f"fencing it broker={paused.node_id}" in new_leader_log
    assert f"unfencing it broker={paused.node_id}" in new_leader_log


def all_threads_stopped(pid):
    """Whether SIGSTOP has stopped every thread of `pid` (it is delivered asynchronously)."""
    import pathlib
    states = [(t / "stat").read_text().rsplit(")", 1)[1].split()[0] for t in pathlib.Path(f"/proc/{pid}/task").iterdir()]
    return all(state == "T" for state in states)


def test_an_acks_all_produce_to_a_paused_leader_is_answered_when_it_is_demoted(make_cluster):
    """A Produce sits in the socket of a paused leader while the quorum moves the partition.
    Resumed, the old leader must answer it NOT_LEADER_OR_FOLLOWER at once (so the client
    retries on the new leader), not at the request's 60 s timeout: an idempotent client
    holds the partition's later batches behind it."""
    import signal

    from confluent_kafka.admin import NewTopic

    nodes = make_cluster(3, config='"broker.session.timeout.ms" = 2000\n')
    wait_for(lambda: agreed_controller(nodes), what="a controller")
    admin = AdminClient({"bootstrap.servers": nodes[0].bootstrap})
    admin.create_topics([NewTopic("stuck", 1, 3, config={"min.insync.replicas": "2"})])["stuck"].result(timeout=20)
    leader = wait_for(lambda: leader_of(nodes, "stuck"), what="a leader")
    leader_node = nodes[leader - 1]
    wait_for(lambda: (v := isr_of(leader_node, "stuck")) and len(v[1]) == 3, what="all three replicas in sync")
    import threading

    answer = {}
    with kwire.Connection(leader_node.bootstrap, timeout_s=90) as conn:
        assert conn.produce("stuck", 0, kwire.record_batch([b"before"]), acks=-1) == (0, 0)
        leader_node.proc.send_signal(signal.SIGSTOP)
        try:
            wait_for(lambda: all_threads_stopped(leader_node.proc.pid), timeout_s=5, what="the leader stopped")
            # Sent now, read by the paused leader only once it resumes.
            queued = threading.Thread(target=lambda: answer.update(
                code=conn.produce("stuck", 0, kwire.record_batch([b"queued"]), acks=-1, timeout_ms=60_000)[0],
                at=time.time()))
            queued.start()
            wait_for(lambda: leader_of([n for n in nodes if n is not leader_node], "stuck") not in (None, leader),
                     timeout_s=30, what="the partition led elsewhere")
        finally:
            leader_node.proc.send_signal(signal.SIGCONT)
        resumed = time.time()
        queued.join(timeout=80)
    elapsed = answer["at"] - resumed
    assert answer["code"] == 6, f"NOT_LEADER_OR_FOLLOWER expected, got {answer['code']} after {elapsed:.1f} s"
    assert elapsed < 20, f"answered {elapsed:.1f} s after the leader resumed"
