"""Record bytes of Fetch responses go from segment file to socket by splice, never copied."""

import os
import re
import signal

from clients import consume_all, create_topic, produce


def test_fetch_record_bytes_are_spliced_not_copied(make_broker):
    broker = make_broker()
    create_topic(broker, "zc", partitions=4)
    values = [os.urandom(1000) for _ in range(30_000)]
    produce(broker, "zc", [(None, v) for v in values], **{"batch.size": 1_000_000, "linger.ms": 20})
    segment_bytes = sum(f.stat().st_size for p in range(4) for f in (broker.data_dir / f"zc-{p}").glob("*.log"))
    got = consume_all(broker, "zc", 4, len(values))
    assert sorted(m.value() for m in got) == sorted(values)
    assert broker.stop(signal.SIGTERM) == 0
    log = broker.log()
    spliced = sum(int(n) for n in re.findall(r"fetch_bytes_spliced=(\d+)", log))
    copied = sum(int(n) for n in re.findall(r"fetch_bytes_copied=(\d+)", log))
    assert len(re.findall(r"fetch_bytes_copied=", log)) == broker.shards, "every shard reports its counts"
    assert spliced >= segment_bytes >= 30_000_000, (spliced, segment_bytes)
    assert copied == 0
