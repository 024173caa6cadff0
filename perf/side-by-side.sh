#!/usr/bin/env bash
# Sluice and Apache Kafka 4.4 on this machine, in one run, with the same client:
#
#   perf/side-by-side.sh [SCALE] [ROWS] [CLIENT]
#       SCALE  record counts as a fraction of LinkedIn's (default 0.1)
#       ROWS   `--only` of sluice bench linkedin (default "1 producer, no|1 consumer")
#       CLIENT rdkafka (default), native or java
#
# Starts a Kafka node (perf/peer-kafka.sh, LinkedIn's broker settings), runs the rows
# against it, then against a temporary local Sluice (release build), and prints
# `sluice bench compare` (Sluice/Kafka ratios), with each broker's CPU seconds over its
# whole run and its peak RSS, both from /proc.
set -euo pipefail
cd "$(dirname "$0")/.."
scale=${1:-0.1}
rows=${2:-"1 producer, no|1 consumer"}
client=${3:-rdkafka}
cargo build --release --bin sluice -q
out=bench-results/side-by-side-$(date +%Y%m%d-%H%M%S)
mkdir -p "$out"
export SLUICE_KAFKA_CLASSPATH
SLUICE_KAFKA_CLASSPATH=$(perf/peer-kafka.sh classpath)

cpu_seconds() {
    python3 - "$1" <<'PY'
import os, sys
fields = open(f"/proc/{sys.argv[1]}/stat").read().rsplit(")", 1)[1].split()
print((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))
PY
}
peak_rss_mib() {
    awk '/VmHWM/ {print $2 / 1024}' "/proc/$1/status"
}

perf/peer-kafka.sh start --dir "$out/kafka" > "$out/kafka.env"
# shellcheck disable=SC1091
. "$out/kafka.env"
kafka_pid=${PIDS%% *}
trap 'perf/peer-kafka.sh stop "$out/kafka" || true' EXIT
idle_rss=$(awk '/VmRSS/ {print $2 / 1024}' "/proc/$kafka_pid/status")
before=$(cpu_seconds "$kafka_pid")
target/release/sluice bench linkedin --scale "$scale" --only "$rows" --client "$client" \
    --bootstrap "$BOOTSTRAP" --out "$out/kafka-results"
after=$(cpu_seconds "$kafka_pid")
echo "Kafka 4.4: CPU $(python3 -c "print(round($after - $before, 2))") s over the run, idle RSS ${idle_rss} MiB, peak RSS $(peak_rss_mib "$kafka_pid") MiB"
perf/peer-kafka.sh stop "$out/kafka"
trap - EXIT

target/release/sluice bench linkedin --scale "$scale" --only "$rows" --client "$client" --out "$out/sluice-results"
target/release/sluice bench compare "$out/kafka-results/results.json" "$out/sluice-results/results.json" \
    --out "$out/compare"
echo "results: $out"
