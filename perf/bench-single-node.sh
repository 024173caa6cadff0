#!/usr/bin/env bash
# Single-node throughput, as issue #2 specifies: librdkafka's rdkafka_performance
# produces RECORDS records of SIZE bytes into 6 partitions (acks=1, linger.ms=5,
# batch.size=1000000), then consumes them all back from the beginning, against a
# fresh release broker with its own data dir. Prints records/s, MB/s (payload) and
# the broker's CPU seconds per GB of payload, from /proc/<pid>/stat (utime+stime of
# all its threads, io_uring workers included).
#
#   perf/bench-single-node.sh                          # 100-byte records
#   SIZE=1000 RECORDS=3000000 perf/bench-single-node.sh
#   BROKER_CONFIG='"fetch.send.method" = "splice"' perf/bench-single-node.sh
#   GROUP=bench perf/bench-single-node.sh   # consume as a consumer group (subscribe,
#                                           # heartbeats, auto-commit) instead of assign
#
# It also prints two floors measured in the same run: the system CPU of `dd` writing the
# same bytes to a fresh file (the least any broker with an on-disk log pays to ingest on
# this host), and the CPU of sendfile(2) sending them to a loopback reader
# (perf/sendfile-floor.py: the least a zero-copy broker pays to serve them).
set -euo pipefail
cd "$(dirname "$0")/.."
RECORDS=${RECORDS:-20000000}
SIZE=${SIZE:-100}
SHARDS=${SHARDS:-$(nproc)}

cargo build --release --bin sluice >&2
(cd perf/rdkafka-performance && cargo build --release >&2)
PERF=perf/rdkafka-performance/target/release/rdkafka-performance

work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf '"num.partitions" = 6\n%s\n' "${BROKER_CONFIG:-}" > "$work/sluice.toml"
./target/release/sluice serve --listen "127.0.0.1:$port" --data-dir "$work/data" --shards "$SHARDS" \
    --metrics-listen 127.0.0.1:0 \
    --config "$work/sluice.toml" 2> "$work/broker.log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do kcat -b "127.0.0.1:$port" -L -t bench >/dev/null 2>&1 && break; sleep 0.1; done

ticks=$(getconf CLK_TCK)
cpu_s() { awk -v t="$ticks" '{ print ($14 + $15) / t }' "/proc/$pid/stat"; }

c0=$(cpu_s)
$PERF -P -t bench -b "127.0.0.1:$port" -s "$SIZE" -c "$RECORDS" -a 1 -q \
    -X linger.ms=5 -X batch.size=1000000 \
    -X queue.buffering.max.messages=2000000 -X queue.buffering.max.kbytes=1048576 2>&1 \
    | grep "messages produced" > "$work/produce.txt"
c1=$(cpu_s)
if [ -n "${GROUP:-}" ]; then
    consumer=(-G "$GROUP" -X auto.offset.reset=earliest)
else
    consumer=(-C -p 0 -p 1 -p 2 -p 3 -p 4 -p 5 -o beginning)
fi
$PERF "${consumer[@]}" -t bench -b "127.0.0.1:$port" -c "$RECORDS" -B 10000 -q \
    -X queued.min.messages=10000000 -X queued.max.messages.kbytes=2097151 2>&1 \
    | grep "consumed in" > "$work/consume.txt"
c2=$(cpu_s)

# The floor any broker with an on-disk log pays here: writing the same bytes to a fresh
# file. On this VM fresh page-cache pages cost far more than the copy itself (the host
# backs guest memory lazily and takes freed pages back), so the ingest figure above is
# only meaningful next to this one, measured in the same run.
TIMEFORMAT=%S
floor_sys_s=$( { time dd if=/dev/zero of="$work/floor" bs=1M \
    count=$(( RECORDS * SIZE / 1048576 )) status=none; } 2>&1 )
# And the serve floor: sendfile of that (now cached) file to a loopback reader.
serve_floor=$(python3 perf/sendfile-floor.py "$work/floor")
rm -f "$work/floor"

python3 - "$work" "$c0" "$c1" "$c2" "$RECORDS" "$SIZE" "$SHARDS" "$floor_sys_s" "$serve_floor" <<'PY'
import re, sys
work, c0, c1, c2, records, size, shards, floor, serve_floor = sys.argv[1], *map(float, sys.argv[2:10])
gb = records * size / 1e9
def rate(path):
    text = open(f"{work}/{path}").read()
    return float(re.search(r"([0-9]+) msgs/s", text).group(1))
p, c = rate("produce.txt"), rate("consume.txt")
print(f"records={int(records)} size={int(size)}B shards={int(shards)}")
print(f"produce: {p:>12,.0f} records/s {p * size / 1e6:>9.1f} MB/s  broker CPU {(c1 - c0) / gb:.3f} s/GB ingested")
print(f"consume: {c:>12,.0f} records/s {c * size / 1e6:>9.1f} MB/s  broker CPU {(c2 - c1) / gb:.3f} s/GB served")
print(f"floor:   dd of the same bytes to a fresh file: {floor / gb:.3f} s/GB system CPU "
      f"(broker ingest = {(c1 - c0) / max(floor, 1e-9):.2f} x floor)")
print(f"floor:   sendfile of them to a loopback reader: {serve_floor:.3f} s/GB "
      f"(broker serve = {(c2 - c1) / gb / max(serve_floor, 1e-9):.2f} x floor)")
PY
