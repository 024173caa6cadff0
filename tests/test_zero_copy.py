"""Record bytes of Fetch responses go from segment file to socket by sendfile or splice, never copied."""

import os
import re
import signal

import pytest

from clients import consume_all, create_topic, produce
from conftest import sluice_only

pytestmark = sluice_only("sendfile counter")


@pytest.mark.parametrize("method", ["sendfile", "splice"])
def test_fetch_record_bytes_are_not_copied(make_broker, method):
    broker = make_broker(config=f'"fetch.send.method" = "{method}"\n')
    create_topic(broker, "zc", partitions=4)
    values = [os.urandom(1000) for _ in range(30_000)]
    produce(broker, "zc", [(None, v) for v in values], **{"batch.size": 1_000_000, "linger.ms": 20})
    segment_bytes = sum(f.stat().st_size for p in range(4) for f in (broker.data_dir / f"zc-{p}").glob("*.log"))
    got = consume_all(broker, "zc", 4, len(values))
    assert sorted(m.value() for m in got) == sorted(values)
    assert broker.stop(signal.SIGTERM) == 0
    log = broker.log()
    counts = [int(n) for n in re.findall(r"fetch_bytes_zero_copy=(\d+)", log)]
    assert len(counts) == broker.shards, "every shard reports its count"
    # The broker has no copying path: every record byte served must be counted here.
    assert sum(counts) >= segment_bytes >= 30_000_000, (counts, segment_bytes)
