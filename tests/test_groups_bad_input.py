"""Group APIs with wrong ids, generations and partitions, on a raw socket: each
gets Kafka's error code, and other groups and clients are not disturbed."""

import struct

import kwire
from clients import consume_all, create_topic, produce
from groups import GROUP_CONFIG

FIND_COORDINATOR, JOIN_GROUP, HEARTBEAT, LEAVE_GROUP, SYNC_GROUP = 10, 11, 12, 13, 14
OFFSET_COMMIT, OFFSET_FETCH, DELETE_GROUPS, OFFSET_DELETE = 8, 9, 42, 47
NONE, UNKNOWN_TOPIC_OR_PARTITION, ILLEGAL_GENERATION, INCONSISTENT_GROUP_PROTOCOL = 0, 3, 22, 23
INVALID_GROUP_ID, UNKNOWN_MEMBER_ID, INVALID_SESSION_TIMEOUT = 24, 25, 26
NON_EMPTY_GROUP, GROUP_ID_NOT_FOUND = 68, 69


class Reader:
    def __init__(self, data):
        self.data, self.at = data, 0

    def take(self, fmt):
        values = struct.unpack_from(fmt, self.data, self.at)
        self.at += struct.calcsize(fmt)
        return values if len(values) > 1 else values[0]

    def string(self):
        n = self.take(">h")
        if n < 0:
            return None
        s = self.data[self.at:self.at + n].decode()
        self.at += n
        return s


def join(conn, group, member="", session_ms=6000, protocol_type="consumer"):
    """JoinGroup v1; returns (error, generation, leader, member_id)."""
    body = kwire.string(group) + struct.pack(">ii", session_ms, 10_000) + kwire.string(member)
    body += kwire.string(protocol_type) + struct.pack(">i", 1) + kwire.string("range") + struct.pack(">i", 0)
    conn.send(JOIN_GROUP, 1, body)
    r = Reader(conn.recv()[1])
    error, generation = r.take(">hi")
    _protocol, leader, member_id = r.string(), r.string(), r.string()
    return error, generation, leader, member_id


def heartbeat(conn, group, generation, member):
    conn.send(HEARTBEAT, 1, kwire.string(group) + struct.pack(">i", generation) + kwire.string(member))
    return Reader(conn.recv()[1]).take(">ih")[1]


def sync(conn, group, generation, member):
    body = kwire.string(group) + struct.pack(">i", generation) + kwire.string(member) + struct.pack(">i", 0)
    conn.send(SYNC_GROUP, 1, body)
    return Reader(conn.recv()[1]).take(">ih")[1]


def commit(conn, group, generation, member, topic, partitions):
    """OffsetCommit v2; returns {partition: error}."""
    body = kwire.string(group) + struct.pack(">i", generation) + kwire.string(member) + struct.pack(">q", -1)
    body += struct.pack(">i", 1) + kwire.string(topic) + struct.pack(">i", len(partitions))
    for p in partitions:
        body += struct.pack(">iq", p, 5) + kwire.string("meta")
    conn.send(OFFSET_COMMIT, 2, body)
    r = Reader(conn.recv()[1])
    assert r.take(">i") == 1
    r.string()
    return dict(r.take(">ih") for _ in range(r.take(">i")))


def fetch_offsets(conn, group, topic, partitions):
    """OffsetFetch v1; returns {partition: offset}."""
    body = kwire.string(group) + struct.pack(">i", 1) + kwire.string(topic)
    body += struct.pack(">i", len(partitions)) + b"".join(struct.pack(">i", p) for p in partitions)
    conn.send(OFFSET_FETCH, 1, body)
    r = Reader(conn.recv()[1])
    assert r.take(">i") == 1
    r.string()
    out = {}
    for _ in range(r.take(">i")):
        partition, offset = r.take(">iq")
        r.string()
        assert r.take(">h") == NONE
        out[partition] = offset
    return out


def delete_group(conn, group):
    conn.send(DELETE_GROUPS, 0, struct.pack(">i", 1) + kwire.string(group))
    r = Reader(conn.recv()[1])
    r.take(">i")
    assert r.take(">i") == 1
    r.string()
    return r.take(">h")


def offset_delete(conn, group, topic, partitions):
    """OffsetDelete v0; returns (error, {partition: error})."""
    body = kwire.string(group) + struct.pack(">i", 1) + kwire.string(topic)
    body += struct.pack(">i", len(partitions)) + b"".join(struct.pack(">i", p) for p in partitions)
    conn.send(OFFSET_DELETE, 0, body)
    r = Reader(conn.recv()[1])
    error, _throttle = r.take(">hi")
    result = {}
    for _ in range(r.take(">i")):
        r.string()
        result.update(dict(r.take(">ih") for _ in range(r.take(">i"))))
    return error, result


def test_group_errors_follow_kafka_and_disturb_nobody(make_broker):
    broker = make_broker(GROUP_CONFIG)
    create_topic(broker, "known", partitions=2)
    produce(broker, "known", [(None, b"x%d" % i) for i in range(20)])
    with kwire.Connection(broker.bootstrap) as conn:
        conn.send(FIND_COORDINATOR, 1, kwire.string("raw") + struct.pack(">b", 0))
        r = Reader(conn.recv()[1])
        r.take(">i")
        assert r.take(">h") == NONE
        r.string()
        assert r.take(">i") == 0 and r.string() == "127.0.0.1" and r.take(">i") == broker.port

        assert heartbeat(conn, "no-such-group", 1, "ghost") == UNKNOWN_MEMBER_ID
        assert join(conn, "raw", session_ms=10)[0] == INVALID_SESSION_TIMEOUT
        assert join(conn, "", member="")[0] == INVALID_GROUP_ID
        assert join(conn, "raw", member="made-up")[0] == UNKNOWN_MEMBER_ID

        error, generation, leader, member = join(conn, "raw")
        assert (error, generation, leader) == (NONE, 1, member)
        assert join(conn, "raw", protocol_type="connect")[0] == INCONSISTENT_GROUP_PROTOCOL
        assert heartbeat(conn, "raw", generation + 1, member) == ILLEGAL_GENERATION
        assert heartbeat(conn, "raw", generation, "someone-else") == UNKNOWN_MEMBER_ID
        assert sync(conn, "raw", generation + 7, member) == ILLEGAL_GENERATION
        assert sync(conn, "raw", generation, member) == NONE
        assert heartbeat(conn, "raw", generation, member) == NONE

        assert commit(conn, "raw", generation + 1, member, "known", [0]) == {0: ILLEGAL_GENERATION}
        assert commit(conn, "raw", generation, "stranger", "known", [0]) == {0: UNKNOWN_MEMBER_ID}
        assert commit(conn, "raw", generation, member, "unknown-topic", [0]) == {0: UNKNOWN_TOPIC_OR_PARTITION}
        assert commit(conn, "raw", generation, member, "known", [0, 99]) == {0: NONE, 99: UNKNOWN_TOPIC_OR_PARTITION}
        assert fetch_offsets(conn, "raw", "known", [0, 1]) == {0: 5, 1: -1}
        assert commit(conn, "raw", generation, member, "known", [1]) == {1: NONE}
        assert offset_delete(conn, "raw", "known", [1, 7]) == (NONE, {1: NONE, 7: UNKNOWN_TOPIC_OR_PARTITION})
        assert fetch_offsets(conn, "raw", "known", [0, 1]) == {0: 5, 1: -1}
        assert offset_delete(conn, "never-existed", "known", [0])[0] == GROUP_ID_NOT_FOUND

        assert delete_group(conn, "raw") == NON_EMPTY_GROUP
        assert delete_group(conn, "never-existed") == GROUP_ID_NOT_FOUND
        conn.send(LEAVE_GROUP, 0, kwire.string("raw") + kwire.string(member))
        assert Reader(conn.recv()[1]).take(">h") == NONE
        assert delete_group(conn, "raw") == NONE
        assert fetch_offsets(conn, "raw", "known", [0]) == {0: -1}

        # A truncated JoinGroup closes only this connection, as Kafka does.
        conn.send(JOIN_GROUP, 1, kwire.string("raw") + b"\x00\x00")
        assert conn.is_closed_by_peer()
    assert len(consume_all(broker, "known", 2, 20)) == 20
