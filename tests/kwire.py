"""A tiny raw Kafka wire client for the tests that send what real clients never would:
malformed frames, bad CRCs, hand-picked sequence numbers."""

import socket
import struct
import time

CRC32C_TABLE = []
for i in range(256):
    crc = i
    for _ in range(8):
        crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    CRC32C_TABLE.append(crc)


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc = CRC32C_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def varint(v):
    z = (v << 1) ^ (v >> 63)
    out = bytearray()
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def record_batch(values, base_ts=1_700_000_000_000, producer_id=-1, epoch=-1, base_seq=-1, attributes=0):
    """An uncompressed RecordBatch v2 with null keys, as a producer would send it
    (attributes 0x10: a transactional batch)."""
    records = bytearray()
    for i, v in enumerate(values):
        body = b"\x00" + varint(i) + varint(i) + varint(-1) + varint(len(v)) + v + varint(0)
        records += varint(len(body)) + body
    n = len(values)
    after_crc = struct.pack(">hiqqqhii", attributes, n - 1, base_ts, base_ts + n - 1, producer_id, epoch, base_seq, n)
    after_crc += bytes(records)
    head = struct.pack(">qiib", 0, 4 + 1 + 4 + len(after_crc), -1, 2)
    return head + struct.pack(">I", crc32c(after_crc)) + after_crc


def string(s):
    if s is None:
        return struct.pack(">h", -1)
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def uvarint(v):
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def compact_string(s):
    b = s.encode()
    return uvarint(len(b) + 1) + b


class Reader:
    """Reads the primitives of Kafka's flexible (compact) encoding."""

    def __init__(self, data):
        self.data, self.at = data, 0

    def take(self, n):
        self.at += n
        if self.at > len(self.data):
            raise ValueError("response ended early")
        return self.data[self.at - n:self.at]

    def i16(self):
        return struct.unpack(">h", self.take(2))[0]

    def i32(self):
        return struct.unpack(">i", self.take(4))[0]

    def i64(self):
        return struct.unpack(">q", self.take(8))[0]

    def uvarint(self):
        value, shift = 0, 0
        while True:
            b = self.take(1)[0]
            value |= (b & 0x7F) << shift
            if b < 0x80:
                return value
            shift += 7

    def string(self):
        """A non-compact (i16-length) string; None when null."""
        n = self.i16()
        return None if n < 0 else self.take(n).decode()

    def compact_string(self):
        n = self.uvarint()
        return None if n == 0 else self.take(n - 1).decode()

    def tags(self):
        return [(self.uvarint(), self.take(self.uvarint())) for _ in range(self.uvarint())]


class Connection:
    def __init__(self, bootstrap, timeout_s=10):
        host, port = bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout_s)
        self.correlation_id = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.sock.close()

    def send_raw(self, data):
        self.sock.sendall(data)

    def send(self, api_key, version, body, client_id="kwire", header_tags=False):
        self.correlation_id += 1
        header = struct.pack(">hhi", api_key, version, self.correlation_id) + string(client_id)
        if header_tags:
            header += b"\x00"
        frame = header + body
        self.sock.sendall(struct.pack(">i", len(frame)) + frame)
        return self.correlation_id

    def recv_exact(self, n):
        out = bytearray()
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise ConnectionError("connection closed by broker")
            out += chunk
        return bytes(out)

    def recv(self):
        (size,) = struct.unpack(">i", self.recv_exact(4))
        frame = self.recv_exact(size)
        (correlation_id,) = struct.unpack(">i", frame[:4])
        return correlation_id, frame[4:]

    def is_closed_by_peer(self, timeout_s=5):
        self.sock.settimeout(timeout_s)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def api_versions(self, version=0):
        self.send(18, version, b"")
        _, body = self.recv()
        (error_code,) = struct.unpack(">h", body[:2])
        (count,) = struct.unpack(">i", body[2:6])
        apis = {}
        for i in range(count):
            key, lo, hi = struct.unpack(">hhh", body[6 + 6 * i: 12 + 6 * i])
            apis[key] = (lo, hi)
        return error_code, apis

    def produce(self, topic, partition, records, acks=-1, version=3, timeout_ms=10_000, transactional_id=None):
        """Produce v3 with one partition; returns (error_code, base_offset)."""
        body = string(transactional_id) + struct.pack(">hii", acks, timeout_ms, 1) + string(topic)
        body += struct.pack(">ii", 1, partition)
        body += struct.pack(">i", len(records)) + records
        self.send(0, version, body)
        if acks == 0:
            return None
        _, resp = self.recv()
        (topics,) = struct.unpack(">i", resp[:4])
        assert topics == 1
        (name_len,) = struct.unpack(">h", resp[4:6])
        at = 6 + name_len
        (parts,) = struct.unpack(">i", resp[at:at + 4])
        assert parts == 1
        _partition, error_code, base_offset = struct.unpack(">ihq", resp[at + 4: at + 18])
        return error_code, base_offset

    def metadata(self, topics, version=1):
        body = struct.pack(">i", len(topics)) + b"".join(string(t) for t in topics)
        self.send(3, version, body)
        return self.recv()[1]

    def partitions(self, topic):
        """{partition: (leader, replicas, isr)} of `topic` as this broker itself
        describes it (Metadata v1); empty if it reports an error for the topic."""
        r = Reader(self.metadata([topic]))
        for _ in range(r.i32()):  # brokers: id, host, port, rack
            r.i32(), r.string(), r.i32(), r.string()
        r.i32()  # controller
        found = {}
        for _ in range(r.i32()):
            error, name = r.i16(), r.string()
            r.take(1)  # is_internal
            for _ in range(r.i32()):
                _partition_error, index, leader = r.i16(), r.i32(), r.i32()
                replicas = [r.i32() for _ in range(r.i32())]
                isr = [r.i32() for _ in range(r.i32())]
                if name == topic and error == 0:
                    found[index] = (leader, replicas, isr)
        return found


    def produce_v10(self, topic, partition, records, acks=-1, version=10, transactional_id=None):
        """Produce v10 (flexible; or `version`, 9 to 12) for one partition; returns (error_code,
        current_leader, node_endpoints): KIP-951's (leader id, leader epoch) or None, and
        {node id: (host, port)}."""
        body = b"\x00" if transactional_id is None else compact_string(transactional_id)
        body += struct.pack(">hi", acks, 10_000)
        body += uvarint(2) + compact_string(topic) + uvarint(2) + struct.pack(">i", partition)
        body += uvarint(len(records) + 1) + records + b"\x00" + b"\x00" + b"\x00"
        # Request header v2 ends with (empty) tagged fields.
        self.send(0, version, body, header_tags=True)
        _, resp = self.recv()
        r = Reader(resp)
        r.tags()  # response header v1
        assert r.uvarint() == 2
        r.compact_string()
        assert r.uvarint() == 2
        _index, error_code = r.i32(), r.i16()
        r.i64(), r.i64(), r.i64()  # base offset, log append time, log start offset
        for _ in range(r.uvarint() - 1):  # record errors
            r.i32(), r.compact_string(), r.tags()
        r.compact_string()  # error message
        current_leader = None
        for tag, field in r.tags():
            if tag == 0:
                current_leader = struct.unpack(">ii", field[:8])
        r.tags()  # topic
        r.i32()  # throttle time
        endpoints = {}
        for tag, field in r.tags():
            if tag == 0:
                e = Reader(field)
                for _ in range(e.uvarint() - 1):
                    node, host, port = e.i32(), e.compact_string(), e.i32()
                    e.compact_string(), e.tags()  # rack
                    endpoints[node] = (host, port)
        return error_code, current_leader, endpoints

    def find_coordinator(self, group, key_type=0):
        """FindCoordinator v1 for a group (key type 1: a transactional id); returns
        (error_code, node_id, port)."""
        self.send(10, 1, string(group) + bytes([key_type]))
        _, resp = self.recv()
        (error_code,) = struct.unpack(">h", resp[4:6])
        (msg_len,) = struct.unpack(">h", resp[6:8])
        at = 8 + max(msg_len, 0)
        (node_id,) = struct.unpack(">i", resp[at:at + 4])
        (host_len,) = struct.unpack(">h", resp[at + 4:at + 6])
        (port,) = struct.unpack(">i", resp[at + 6 + host_len:at + 10 + host_len])
        return error_code, node_id, port

    def offset_for_leader_epoch(self, topic, partition, leader_epoch, current_leader_epoch=-1):
        """OffsetForLeaderEpoch v2 for one partition; returns (error_code, leader_epoch, end_offset)."""
        body = struct.pack(">i", 1) + string(topic)
        body += struct.pack(">iiii", 1, partition, current_leader_epoch, leader_epoch)
        self.send(23, 2, body)
        _, resp = self.recv()
        # throttle_time_ms, topics (1), name, partitions (1)
        (name_len,) = struct.unpack(">h", resp[8:10])
        at = 10 + name_len + 4
        error_code, _partition, epoch, end_offset = struct.unpack(">hiiq", resp[at:at + 18])
        return error_code, epoch, end_offset


def wait_until_serving(bootstrap, timeout_s=30):
    """Returns once the broker at `bootstrap` answers ApiVersions; False at the timeout."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            with Connection(bootstrap, timeout_s=2) as conn:
                conn.api_versions()
            return True
        except OSError:
            time.sleep(0.1)
    return False


def free_port():
    """A port free on 127.0.0.1 now (for scripts; tests use conftest.free_ports)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def batch_leader_epochs(segment):
    """(base_offset, partition leader epoch) of each batch in a segment file's bytes."""
    at = 0
    out = []
    while at + 61 <= len(segment):
        base_offset, batch_length, epoch = struct.unpack(">qii", segment[at:at + 16])
        out.append((base_offset, epoch))
        at += 12 + batch_length
    return out


def stored_batches(segment):
    """(base_offset, attributes, record_count, total_bytes) of each batch in a segment file's bytes."""
    at = 0
    out = []
    while at + 61 <= len(segment):
        base_offset, batch_length = struct.unpack(">qi", segment[at:at + 12])
        (attributes,) = struct.unpack(">h", segment[at + 21:at + 23])
        (count,) = struct.unpack(">i", segment[at + 57:at + 61])
        out.append((base_offset, attributes, count, 12 + batch_length))
        at += 12 + batch_length
    return out


def wait_for(check, timeout_s=20, what="condition"):
    """Polls `check` until it returns something true, and returns that; fails
    the test with the last value seen after `timeout_s`."""
    deadline = time.time() + timeout_s
    last = None
    while time.time() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; last saw {last!r}")
