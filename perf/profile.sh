#!/usr/bin/env bash
# Profiles the broker under a load and renders a flamegraph.
#
#   perf/profile.sh produce          # 100-byte records into 6 partitions (rdkafka_performance)
#   perf/profile.sh fetch            # reading them back from the beginning
#   RECORDS=5000000 SIZE=1000 perf/profile.sh produce
#
# Writes perf/out/<workload>.svg (a flamegraph of the broker's threads, io_uring
# workers included) and prints `perf stat` figures per record.
#
# Call stacks: frame pointers. The broker is built for this run with
# -C force-frame-pointers=yes (into target/profiling, so the normal release
# build is untouched): DWARF unwinding (`--call-graph dwarf`) copies 8 KiB of
# stack per sample and perturbs a broker doing 100k+ requests/s far more than
# the one register frame pointers cost. Kernel stacks unwind with frame
# pointers anyway.
#
# Counters: cycles, instructions and cache misses need hardware counters. Many
# VMs (this CI VM included) have none; the script then says so and uses the
# software events (task-clock, context switches, page faults). For exact
# instruction counts there, run the broker under
# `valgrind --tool=callgrind` instead (see perf/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
WORKLOAD=${1:-produce}
RECORDS=${RECORDS:-10000000}
SIZE=${SIZE:-100}
OUT=perf/out
mkdir -p "$OUT"

command -v perf >/dev/null || { echo "perf is not installed (Debian: apt-get install linux-perf)" >&2; exit 1; }
if ! command -v inferno-flamegraph >/dev/null; then
    echo "installing inferno (flamegraph renderer) into ~/.cargo/bin" >&2
    cargo install inferno --quiet >&2
fi

RUSTFLAGS="-C force-frame-pointers=yes" cargo build --release --bin sluice --target-dir target/profiling >&2
(cd perf/rdkafka-performance && cargo build --release >&2)
BROKER=target/profiling/release/sluice
LOAD=perf/rdkafka-performance/target/release/rdkafka-performance

work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf '"num.partitions" = 6\n' > "$work/sluice.toml"
"$BROKER" serve --listen "127.0.0.1:$port" --data-dir "$work/data" --metrics-listen 127.0.0.1:0 \
    --config "$work/sluice.toml" 2> "$work/broker.log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do kcat -b "127.0.0.1:$port" -L >/dev/null 2>&1 && break; sleep 0.1; done

produce() {
    $LOAD -P -t bench -b "127.0.0.1:$port" -s "$SIZE" -c "$RECORDS" -a 1 -q -X linger.ms=5 \
        -X batch.size=1000000 -X queue.buffering.max.messages=2000000 -X queue.buffering.max.kbytes=1048576 2>&1 \
        | grep "messages produced" >&2
}
fetch() {
    $LOAD -C -t bench -b "127.0.0.1:$port" -p 0 -p 1 -p 2 -p 3 -p 4 -p 5 -o beginning -c "$RECORDS" -B 10000 -q \
        -X queued.min.messages=10000000 -X queued.max.messages.kbytes=2097151 2>&1 | grep "consumed in" >&2
}

case "$WORKLOAD" in
    produce) ;;
    fetch) produce ;;  # the data to read back, not profiled
    *) echo "usage: perf/profile.sh produce|fetch" >&2; exit 2 ;;
esac

# Hardware counters when the machine has them, software events otherwise.
if perf stat -e cycles -- true >/dev/null 2>&1; then
    events=cycles,instructions,cache-misses,context-switches,task-clock
    sample_event=cycles
else
    echo "no hardware performance counters here: using software events (task-clock, context-switches, page-faults)" >&2
    events=task-clock,context-switches,page-faults
    sample_event=cpu-clock
fi

perf stat -e "$events" -p "$pid" -o "$work/stat.txt" &
stat_pid=$!
perf record -e "$sample_event" -g -p "$pid" -o "$work/perf.data" 2>/dev/null &
record_pid=$!
sleep 0.5
"$WORKLOAD"
kill -INT "$record_pid" "$stat_pid"
wait "$record_pid" "$stat_pid" 2>/dev/null || true

perf script -i "$work/perf.data" 2>/dev/null | inferno-collapse-perf > "$work/stacks.folded"
inferno-flamegraph --title "sluice $WORKLOAD: $RECORDS x $SIZE B" < "$work/stacks.folded" > "$OUT/$WORKLOAD.svg"
echo "flamegraph: $OUT/$WORKLOAD.svg"

python3 - "$work/stat.txt" "$RECORDS" <<'PY'
import re, sys
path, records = sys.argv[1], int(sys.argv[2])
print(f"perf stat of the broker ({records:,} records):")
for line in open(path):
    m = re.match(r"\s*([\d,.]+)\s+(msec\s+)?([\w-]+)", line)
    if not m or m.group(3) == "seconds":
        continue
    value = float(m.group(1).replace(",", ""))
    if m.group(3) in ("task-clock", "cpu-clock"):
        print(f"  {m.group(3):>18}: {value * 1e6 / records:10.1f} ns of CPU per record")
    else:
        print(f"  {m.group(3):>18}: {value * 1000 / records:10.3f} per 1,000 records ({value:,.0f} in all)")
PY
