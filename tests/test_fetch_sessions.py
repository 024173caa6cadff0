"""Fetch sessions (KIP-227) on the wire, as Kafka answers them: a full fetch with epoch 0
opens a session, incremental fetches name only what changed and get back only what
changed, and the errors clients recover from. The same expectations hold against
Apache Kafka 4.4 (`ci/test --against kafka -k fetch_session`)."""

import struct

import kwire
from clients import consume_all, create_topic, produce

FETCH_SESSION_ID_NOT_FOUND = 70
INVALID_FETCH_SESSION_EPOCH = 71


def fetch_v7(session_id, epoch, partitions, forgotten=(), topic="t", max_wait_ms=0, max_bytes=1 << 20,
             partition_max_bytes=1 << 20):
    """Fetch v7: `partitions` are (partition, fetch_offset); `forgotten` are partitions to drop."""
    body = struct.pack(">iiiibii", -1, max_wait_ms, 1, max_bytes, 0, session_id, epoch)
    if partitions:
        body += struct.pack(">i", 1) + kwire.string(topic) + struct.pack(">i", len(partitions))
        for partition, offset in partitions:
            body += struct.pack(">iqqi", partition, offset, 0, partition_max_bytes)
    else:
        body += struct.pack(">i", 0)
    if forgotten:
        body += struct.pack(">i", 1) + kwire.string(topic) + struct.pack(">i", len(forgotten))
        body += b"".join(struct.pack(">i", p) for p in forgotten)
    else:
        body += struct.pack(">i", 0)
    return body


def parse_fetch_v7(body):
    """(error_code, session_id, {(topic, partition): (error, high_watermark, record_bytes)})."""
    r = kwire.Reader(body)
    r.i32()  # throttle_time_ms
    error_code, session_id = r.i16(), r.i32()
    partitions = {}
    for _ in range(r.i32()):
        topic = r.string()
        for _ in range(r.i32()):
            partition, error, high_watermark = r.i32(), r.i16(), r.i64()
            r.i64(), r.i64()  # last_stable_offset, log_start_offset
            aborted = r.i32()
            for _ in range(max(aborted, 0)):
                r.i64(), r.i64()
            records = r.take(r.i32())
            partitions[(topic, partition)] = (error, high_watermark, len(records))
    return error_code, session_id, partitions


def fetch(conn, session_id, epoch, partitions=(), forgotten=(), **kw):
    conn.send(1, 7, fetch_v7(session_id, epoch, list(partitions), list(forgotten), **kw))
    return parse_fetch_v7(conn.recv()[1])


def test_a_session_carries_only_what_changed(make_broker):
    b = make_broker()
    create_topic(b, "t", partitions=3)
    with kwire.Connection(b.bootstrap) as c:
        # Kafka's partitions take a moment to get a leader after CreateTopics answers.
        kwire.wait_for(lambda: c.produce("t", 0, kwire.record_batch([b"a"]))[0] == 0, what="a leader for t-0")
        error, session, parts = fetch(c, 0, 0, [(0, 0), (1, 0), (2, 0)])
        assert error == 0 and session != 0, "a full fetch with epoch 0 opens a session"
        assert set(parts) == {("t", 0), ("t", 1), ("t", 2)}
        _, high_watermark, record_bytes = parts[("t", 0)]
        assert high_watermark == 1 and record_bytes > 0

        # The client moves partition 0 past the record; nothing changed anywhere.
        error, got, parts = fetch(c, session, 1, [(0, 1)])
        assert (error, got, parts) == (0, session, {}), "an incremental answer leaves out what did not change"

        # A record on partition 2 only: the answer carries partition 2 alone.
        assert c.produce("t", 2, kwire.record_batch([b"b"]))[0] == 0
        error, got, parts = fetch(c, session, 2)
        assert (error, got, list(parts)) == (0, session, [("t", 2)])
        assert parts[("t", 2)][1] == 1 and parts[("t", 2)][2] > 0

        # Partition 2 is forgotten: new records there no longer show.
        error, got, parts = fetch(c, session, 3, [], forgotten=[2])
        assert (error, got) == (0, session)
        assert c.produce("t", 2, kwire.record_batch([b"c"]))[0] == 0
        assert c.produce("t", 1, kwire.record_batch([b"d"]))[0] == 0
        error, got, parts = fetch(c, session, 4)
        assert (error, list(parts)) == (0, [("t", 1)])

        # Errors clients recover from by starting over with a full fetch.
        for session_id, epoch, want in [(session, 4, INVALID_FETCH_SESSION_EPOCH),
                                        (session, 9, INVALID_FETCH_SESSION_EPOCH),
                                        (session + 1, 5, FETCH_SESSION_ID_NOT_FOUND),
                                        (0, 5, FETCH_SESSION_ID_NOT_FOUND)]:
            error, got, parts = fetch(c, session_id, epoch)
            assert (error, got, parts) == (want, 0, {}), (session_id, epoch)
        # The refusals cost the session nothing: epoch 5 still serves.
        assert fetch(c, session, 5)[:2] == (0, session)

        # A full fetch with the final epoch (-1) closes the session and opens none.
        error, got, parts = fetch(c, session, -1, [(0, 0)])
        assert (error, got, list(parts)) == (0, 0, [("t", 0)])
        assert fetch(c, session, 6)[0] == FETCH_SESSION_ID_NOT_FOUND

        # Sessionless fetches, as librdkafka sends them, keep working.
        error, got, parts = fetch(c, 0, -1, [(0, 0), (1, 0)])
        assert (error, got) == (0, 0) and set(parts) == {("t", 0), ("t", 1)}


def test_with_no_slots_no_session_is_opened(make_broker):
    b = make_broker(config='"max.incremental.fetch.session.cache.slots" = 0\n')
    create_topic(b, "t", partitions=1)
    with kwire.Connection(b.bootstrap) as c:
        error, session, parts = fetch(c, 0, 0, [(0, 0)])
        assert (error, session, list(parts)) == (0, 0, [("t", 0)])


def test_a_full_cache_refuses_new_sessions(make_broker):
    """Eight slots, split between the cache's shards (Sluice's two, Kafka's eight): of twenty
    clients, at most eight get a session and the rest an id of 0 (full fetches), as Kafka
    answers when no session is old enough to evict. Each open session keeps serving."""
    b = make_broker(config='"max.incremental.fetch.session.cache.slots" = 8\n')
    create_topic(b, "t", partitions=1)
    conns = [kwire.Connection(b.bootstrap) for _ in range(20)]
    try:
        sessions = []
        for c in conns:
            error, session, parts = fetch(c, 0, 0, [(0, 0)])
            assert error == 0 and list(parts) == [("t", 0)]
            sessions.append(session)
        opened = [s for s in sessions if s != 0]
        assert 4 <= len(opened) <= 8, sessions
        assert len(set(opened)) == len(opened)
        for c, s in zip(conns, sessions):
            if s != 0:
                assert fetch(c, s, 1)[:2] == (0, s)
    finally:
        for c in conns:
            c.close()


def test_librdkafka_consumes_1000_partitions(make_broker):
    """librdkafka does not use fetch sessions (KIP-227 is "not supported" in its INTRODUCTION.md):
    its full fetches over 1,000 partitions must serve every record once."""
    b = make_broker()
    create_topic(b, "wide", partitions=1000)
    messages = [(f"k{i}".encode(), f"v{i}".encode()) for i in range(3000)]
    produce(b, "wide", messages)
    got = consume_all(b, "wide", 1000, len(messages), timeout_s=120)
    assert sorted(m.value() for m in got) == sorted(v for _, v in messages)


def test_a_response_stays_within_fetch_max_bytes(make_broker):
    """The response's max_bytes bounds every partition, the first too: it gets at most that
    much, or its first batch whole when that alone is larger (KIP-74). librdkafka's
    0082_fetch_max_bytes (max.partition.fetch.bytes 20 MB, fetch.max.bytes 1 MB) caught a
    first partition answered up to its own 20 MB limit."""
    b = make_broker()
    create_topic(b, "t", partitions=2, config={"max.message.bytes": str(4 << 20)})
    batch = kwire.record_batch([b"x" * 300_000])
    big = kwire.record_batch([b"y" * 2_000_000])
    with kwire.Connection(b.bootstrap) as c:
        for partition in (0, 1):
            for _ in range(8):
                assert c.produce("t", partition, batch)[0] == 0
        assert c.produce("t", 0, big)[0] == 0
        _, _, parts = fetch(c, 0, -1, [(0, 0), (1, 0)], max_bytes=1_000_000, partition_max_bytes=20_000_000)
        sizes = {p: size for (_, p), (_, _, size) in parts.items()}
        assert 0 < sizes[0] <= 1_000_000 and sizes[0] + sizes.get(1, 0) <= 1_000_000, sizes
        # Fetching at the 2 MB batch: it comes whole, though larger than max_bytes.
        _, _, parts = fetch(c, 0, -1, [(0, 8)], max_bytes=1_000_000, partition_max_bytes=20_000_000)
        assert parts[("t", 0)][2] == len(big), parts
