#!/usr/bin/env bash
# Sluice and Apache Kafka 4.4 on this machine, in one run, with the same client:
#
#   perf/side-by-side.sh [SCALE] [ROWS] [CLIENT] [NODES]
#       SCALE  record counts as a fraction of LinkedIn's (default 0.1)
#       ROWS   `--only` of sluice bench linkedin (default "1 producer, no|1 consumer"; "" for all)
#       CLIENT rdkafka (default), native or java
#       NODES  1 (default), or 3 for the replicated rows on three local nodes of each
#
# Starts Kafka (perf/peer-kafka.sh, LinkedIn's broker settings), runs the rows against
# it with --peer-pid (its CPU per GB and RSS from /proc, as for Sluice), then against a
# temporary local Sluice (release build) with as many nodes, and prints `sluice bench
# compare`: Sluice/Kafka ratios of throughput and CPU per GB, and both brokers' RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
scale=${1:-0.1}
rows=${2-"1 producer, no|1 consumer"}
client=${3:-rdkafka}
nodes=${4:-1}
cargo build --release --bin sluice -q
out=bench-results/side-by-side-$(date +%Y%m%d-%H%M%S)
mkdir -p "$out"
export SLUICE_KAFKA_CLASSPATH
SLUICE_KAFKA_CLASSPATH=$(perf/peer-kafka.sh classpath)

perf/peer-kafka.sh start --nodes "$nodes" --dir "$out/kafka" > "$out/kafka.env"
# shellcheck disable=SC1091
. "$out/kafka.env"
trap 'perf/peer-kafka.sh stop "$out/kafka" || true' EXIT
only=()
[ -n "$rows" ] && only=(--only "$rows")
target/release/sluice bench linkedin --scale "$scale" "${only[@]}" --client "$client" \
    --bootstrap "$BOOTSTRAP" --peer-pid "$(echo $PIDS | tr ' ' ',')" --out "$out/kafka-results" ||
    echo "Kafka: some rows failed their checks (above); the others are compared"
perf/peer-kafka.sh stop "$out/kafka"
trap - EXIT

target/release/sluice bench linkedin --scale "$scale" "${only[@]}" --client "$client" --brokers "$nodes" \
    --out "$out/sluice-results" || echo "Sluice: some rows failed their checks (above); the others are compared"
target/release/sluice bench compare "$out/kafka-results/results.json" "$out/sluice-results/results.json" \
    --out "$out/compare"
echo "results: $out"
