"""The Prometheus endpoint: scraped and parsed as Prometheus text; the counters
move when clients produce, consume and commit."""

import urllib.error
import urllib.request

import pytest
from confluent_kafka import TopicPartition
from prometheus_client.parser import text_string_to_metric_families

import kwire
from clients import consume_all, create_topic, produce
from groups import GROUP_CONFIG, member, poll_all, total
from conftest import sluice_only

pytestmark = sluice_only("Prometheus endpoint")


def scrape(broker):
    with urllib.request.urlopen(f"http://127.0.0.1:{broker.metrics_port}/metrics", timeout=10) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = r.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0)


def test_metrics_move_with_traffic(make_broker):
    broker = make_broker(GROUP_CONFIG)
    before = scrape(broker)
    create_topic(broker, "metered", partitions=2)
    payload = [(None, b"x" * 100, None, i % 2) for i in range(1000)]
    produce(broker, "metered", payload)
    consume_all(broker, "metered", 2, 1000)
    c = member(broker, "metered-group", **{"enable.auto.commit": False})
    c.subscribe(["metered"])
    poll_all([c], lambda g: total(g) >= 600)
    c.commit(asynchronous=False)
    committed = sum(tp.offset for tp in c.committed([TopicPartition("metered", p) for p in (0, 1)], timeout=10))
    c.close()
    after = scrape(broker)

    assert value(after, "sluice_requests_total", api="Produce") > value(before, "sluice_requests_total", api="Produce")
    assert value(after, "sluice_requests_total", api="Fetch") > 0
    assert value(after, "sluice_requests_total", api="JoinGroup") >= 1
    assert value(after, "sluice_topic_bytes_in_total", topic="metered") >= 100 * 1000
    assert value(after, "sluice_topic_bytes_out_total", topic="metered") >= 100 * 1000
    ends = [value(after, "sluice_partition_log_end_offset", topic="metered", partition=str(p)) for p in (0, 1)]
    assert ends == [500, 500]
    watermarks = [value(after, "sluice_partition_high_watermark", topic="metered", partition=str(p)) for p in (0, 1)]
    assert watermarks == [500, 500], "a single copy's high watermark is its log end offset"
    assert value(after, "sluice_partition_size_bytes", topic="metered", partition="0") > 50_000
    count = value(after, "sluice_request_duration_seconds_count", api="Produce")
    assert count == value(after, "sluice_request_duration_seconds_bucket", api="Produce", le="+Inf") > 0
    assert value(after, "sluice_request_duration_seconds_bucket", api="Produce", le="10") == count
    assert sum(v for (n, _), v in after.items() if n == "sluice_connections_accepted_total") >= 3
    assert sum(v for (n, _), v in after.items() if n == "sluice_shard_busy_seconds_total") > 0
    assert (("sluice_shard_mailbox_depth", (("shard", "0"),)) in after)
    lag = sum(value(after, "sluice_consumer_group_lag", group="metered-group", topic="metered", partition=str(p))
              for p in (0, 1))
    assert lag == 1000 - committed


def test_errors_are_counted_per_api_and_code(make_broker):
    broker = make_broker('"auto.create.topics.enable" = false\n')
    with kwire.Connection(broker.bootstrap) as conn:
        error, _ = conn.produce("missing-topic", 0, kwire.record_batch([b"v"]))
        assert error == 3
    samples = scrape(broker)
    assert value(samples, "sluice_request_errors_total", api="Produce", error="UnknownTopicOrPartition") == 1
    with pytest.raises(urllib.error.HTTPError) as not_found:
        urllib.request.urlopen(f"http://127.0.0.1:{broker.metrics_port}/other", timeout=10)
    assert not_found.value.code == 404
