"""Cluster mode with real processes: three `sluice serve` nodes, each a broker
and a Raft voter of the metadata quorum, on loopback ports."""

import json
import subprocess
import time

from confluent_kafka.admin import AdminClient

from conftest import SLUICE_BIN, free_port


def cluster_view(node, timeout_s=5):
    """(controller id, {broker id: port}) as this node describes the cluster."""
    admin = AdminClient({"bootstrap.servers": node.bootstrap})
    md = admin.list_topics(timeout=timeout_s)
    return md.controller_id, {b.id: b.port for b in md.brokers.values()}


def wait_for(check, timeout_s=20, what="condition"):
    deadline = time.time() + timeout_s
    last = None
    while time.time() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; last saw {last!r}")


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
