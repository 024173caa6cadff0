#!/usr/bin/env bash
# Single-node throughput, as issue #2 specifies: a librdkafka producer (acks=1,
# linger.ms=5, batch.size=1000000, 6 partitions) then a consumer reading it all
# back from the beginning, against a fresh release broker with its own data dir.
# Prints records/s, MB/s (payload) and the broker's CPU seconds per GB of payload,
# read from /proc/<pid>/stat.
#
#   perf/bench-single-node.sh                 # 100-byte records
#   SIZE=1000 RECORDS=3000000 perf/bench-single-node.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RECORDS=${RECORDS:-20000000}
SIZE=${SIZE:-100}
SHARDS=${SHARDS:-$(nproc)}

cargo build --release --bin sluice >&2
(cd perf/loadgen && cargo build --release >&2)
LOADGEN=perf/loadgen/target/release/sluice-loadgen

work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf '"num.partitions" = 6\n' > "$work/sluice.toml"
./target/release/sluice serve --listen "127.0.0.1:$port" --data-dir "$work/data" --shards "$SHARDS" \
    --config "$work/sluice.toml" 2> "$work/broker.log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do kcat -b "127.0.0.1:$port" -L -t bench >/dev/null 2>&1 && break; sleep 0.1; done

ticks=$(getconf CLK_TCK)
cpu_s() { awk -v t="$ticks" '{ print ($14 + $15) / t }' "/proc/$pid/stat"; }
gb=$(python3 -c "print($RECORDS * $SIZE / 1e9)")

c0=$(cpu_s)
produced=$($LOADGEN --bootstrap "127.0.0.1:$port" --topic bench --mode produce --records "$RECORDS" --size "$SIZE")
c1=$(cpu_s)
consumed=$($LOADGEN --bootstrap "127.0.0.1:$port" --topic bench --mode consume --records "$RECORDS" --size "$SIZE")
c2=$(cpu_s)

python3 - "$produced" "$consumed" "$c0" "$c1" "$c2" "$gb" "$SHARDS" <<'PY'
import json, sys
p, c = json.loads(sys.argv[1]), json.loads(sys.argv[2])
c0, c1, c2, gb, shards = map(float, sys.argv[3:8])
print(f"records={p['records']} size={p['size']}B shards={int(shards)}")
print(f"produce: {p['records_per_s']:>12,.0f} records/s {p['mb_per_s']:>9.1f} MB/s  broker CPU {(c1 - c0) / gb:.3f} s/GB ingested")
print(f"consume: {c['records_per_s']:>12,.0f} records/s {c['mb_per_s']:>9.1f} MB/s  broker CPU {(c2 - c1) / gb:.3f} s/GB served")
PY
