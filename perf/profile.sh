#!/usr/bin/env bash
# Profiles the broker under a `sluice bench linkedin` workload and renders a flamegraph.
#
#   perf/profile.sh produce            # the "1 producer, no replication" row
#   perf/profile.sh fetch              # the "1 consumer" row (the producer row runs first, unprofiled)
#   perf/profile.sh latency            # the end-to-end latency row (100k records/s)
#   CLIENT=native SCALE=0.5 perf/profile.sh produce
#
# SCALE is the bench's --scale (default 0.2: 10M records of 100 B); CLIENT is
# its --client (rdkafka, the default, or native). Writes perf/out/<workload>.svg
# (a flamegraph of the broker's threads, io_uring workers included) and prints
# `perf stat` figures per record.
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
SCALE=${SCALE:-0.2}
CLIENT=${CLIENT:-rdkafka}
OUT=perf/out
mkdir -p "$OUT"
case "$WORKLOAD" in
    produce) only="1 producer, no"; profiled="1 producer, no"; records=$(python3 -c "print(round(50e6*$SCALE))") ;;
    fetch) only="1 producer, no|1 consumer"; profiled="1 consumer"; records=$(python3 -c "print(round(50e6*$SCALE))") ;;
    latency) only="latency"; profiled="End-to-end"; records=$(python3 -c "print(round(5e6*$SCALE))") ;;
    *) echo "usage: perf/profile.sh produce|fetch|latency" >&2; exit 2 ;;
esac

command -v perf >/dev/null || { echo "perf is not installed (Debian: apt-get install linux-perf)" >&2; exit 1; }
if ! command -v inferno-flamegraph >/dev/null; then
    echo "installing inferno (flamegraph renderer) into ~/.cargo/bin" >&2
    cargo install inferno --quiet >&2
fi

RUSTFLAGS="-C force-frame-pointers=yes" cargo build --release --bin sluice --target-dir target/profiling >&2
SLUICE=target/profiling/release/sluice

work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$SLUICE" serve --listen "127.0.0.1:$port" --data-dir "$work/data" --metrics-listen 127.0.0.1:0 2> "$work/broker.log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

# The bench runs in the background; profiling starts when it announces the profiled row.
"$SLUICE" bench linkedin --bootstrap "127.0.0.1:$port" --scale "$SCALE" --client "$CLIENT" --only "$only" \
    --out "$work/results" > "$work/bench.out" 2> "$work/bench.err" &
bench=$!
# Bounded: the bench announces each row within seconds, or exits.
until grep -q "running: $profiled" "$work/bench.err" 2>/dev/null; do
    kill -0 $bench 2>/dev/null || { cat "$work/bench.err" >&2; exit 1; }
    sleep 0.05
done

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
wait $bench || { cat "$work/bench.err" >&2; exit 1; }
kill -INT "$record_pid" "$stat_pid"
wait "$record_pid" "$stat_pid" 2>/dev/null || true
grep -E "^(ROW|$profiled)" "$work/bench.out" >&2

perf script -i "$work/perf.data" 2>/dev/null | inferno-collapse-perf > "$work/stacks.folded"
inferno-flamegraph --title "sluice $WORKLOAD ($CLIENT client): $records x 100 B" < "$work/stacks.folded" > "$OUT/$WORKLOAD.svg"
echo "flamegraph: $OUT/$WORKLOAD.svg"

python3 - "$work/stat.txt" "$records" <<'PY'
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
