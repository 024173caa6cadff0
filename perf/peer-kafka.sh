#!/usr/bin/env bash
# Apache Kafka 4.4 as a side-by-side peer (and oracle) on this machine.
#
#   perf/peer-kafka.sh start [--nodes N] [--dir DIR] [--first-id ID] [--properties FILE] [--kafka-defaults]
#                                 formats and starts N KRaft combined-mode nodes (ids ID.., default 1)
#                                 on free loopback ports, FILE's settings appended to each node's
#                                 (--kafka-defaults: without LinkedIn's settings, as the tests' oracle);
#                                 prints BOOTSTRAP=... PIDS=... DIR=... (also in DIR/peer.env)
#   perf/peer-kafka.sh stop DIR   stops them (SIGTERM, then SIGKILL after 30 s)
#   perf/peer-kafka.sh resume DIR starts stopped nodes again on their data and ports
#   perf/peer-kafka.sh classpath                         the resolved jars, for Kafka's own tools:
#                                                        java -cp "$(perf/peer-kafka.sh classpath)" org.apache.kafka.tools.TopicCommand ...
#
# The jars (org.apache.kafka:kafka_2.13 and kafka-tools 4.4.0 with their dependencies)
# are resolved from Maven Central once into $SLUICE_KAFKA_CACHE (default
# ~/.cache/sluice/kafka-4.4.0). Each node gets a 1 GB heap and, unless --kafka-defaults,
# LinkedIn's 2014 broker settings from seed 003 (socket buffers, request size, segment
# size); Kafka's defaults otherwise, so what it does is what a Kafka user gets.
set -euo pipefail

KAFKA_VERSION=4.4.0
CACHE=${SLUICE_KAFKA_CACHE:-$HOME/.cache/sluice/kafka-$KAFKA_VERSION}
HEAP=${KAFKA_HEAP:-1G}

resolve() {
    if [ -f "$CACHE/resolved" ]; then
        return
    fi
    mkdir -p "$CACHE"
    cat > "$CACHE/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>sluice</groupId>
  <artifactId>peer-kafka</artifactId>
  <version>1</version>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$KAFKA_VERSION</version></dependency>
    <!-- Kafka logs through SLF4J 2; without these pins Maven's nearest-wins picks 1.7 and no binding. -->
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId><version>2.0.17</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j2-impl</artifactId><version>2.25.5</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>2.25.5</version></dependency>
  </dependencies>
</project>
EOF
    echo "resolving Apache Kafka $KAFKA_VERSION into $CACHE (once)" >&2
    (cd "$CACHE" && mvn -q -B dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory=lib >&2)
    cat > "$CACHE/log4j2.properties" <<'EOF'
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
logger.kafka.name = org.apache.kafka
logger.kafka.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
EOF
    touch "$CACHE/resolved"
}

free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys
held = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in held:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in held))
EOF
}

node_properties() {
    local id=$1 port=$2 cport=$3 voters=$4 dir=$5 rf=$6 linkedin=$7
    cat <<EOF
process.roles=broker,controller
node.id=$id
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/data
# A small cluster: internal topics as replicated as the nodes allow.
offsets.topic.replication.factor=$rf
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=1
EOF
    if [ "$linkedin" = 1 ]; then
        cat <<EOF
# LinkedIn 2014 (seed 003): request size, socket buffers, segment size, threads.
num.network.threads=4
num.io.threads=8
socket.send.buffer.bytes=1048576
socket.receive.buffer.bytes=1048576
socket.request.max.bytes=104857600
log.segment.bytes=536870912
EOF
    fi
}

# Starts the node whose directory is $1 and waits until it says it started.
launch() {
    local node_dir=$1
    KAFKA_HEAP_OPTS="" setsid java -Xms"$HEAP" -Xmx"$HEAP" -XX:+UseG1GC -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$CACHE/log4j2.properties" \
        -cp "$CACHE/lib/*" kafka.Kafka "$node_dir/server.properties" >> "$node_dir/kafka.log" 2>&1 &
    echo $!
}

# Bounded: 120 s for the node logging to $1 to say it started (its Nth start: $2).
await_started() {
    local log=$1 starts=$2 waited=0
    until [ "$(grep -c "Kafka Server started" "$log" 2>/dev/null)" -ge "$starts" ]; do
        if [ $waited -ge 1200 ]; then
            echo "Kafka did not start; see $log" >&2
            exit 1
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
}

start() {
    local nodes=1 dir="" first_id=1 properties="" linkedin=1
    while [ $# -gt 0 ]; do
        case $1 in
            --kafka-defaults) linkedin=0; shift ;;
            --nodes) nodes=$2; shift 2 ;;
            --dir) dir=$2; shift 2 ;;
            --first-id) first_id=$2; shift 2 ;;
            --properties) properties=$2; shift 2 ;;
            *) echo "unknown argument $1" >&2; exit 2 ;;
        esac
    done
    resolve
    dir=${dir:-$(mktemp -d /tmp/peer-kafka.XXXXXX)}
    mkdir -p "$dir"
    read -r -a ports <<< "$(free_ports $((2 * nodes)))"
    local voters="" bootstrap="" pids=""
    for i in $(seq 1 "$nodes"); do
        voters+="${voters:+,}$((first_id + i - 1))@127.0.0.1:${ports[$((nodes + i - 1))]}"
        bootstrap+="${bootstrap:+,}127.0.0.1:${ports[$((i - 1))]}"
    done
    # Base64 may start with '-': passed as --cluster-id=ID, so the parser never takes it for an option.
    local cluster_id
    cluster_id=$(python3 -c 'import base64, uuid; print(base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode())')
    local rf=$((nodes < 3 ? nodes : 3))
    for i in $(seq 1 "$nodes"); do
        local node_dir="$dir/node$i"
        mkdir -p "$node_dir"
        node_properties "$((first_id + i - 1))" "${ports[$((i - 1))]}" "${ports[$((nodes + i - 1))]}" "$voters" \
            "$node_dir" "$rf" "$linkedin" > "$node_dir/server.properties"
        if [ -n "$properties" ]; then
            cat "$properties" >> "$node_dir/server.properties"
        fi
        java -cp "$CACHE/lib/*" -Dlog4j2.configurationFile="$CACHE/log4j2.properties" \
            kafka.tools.StorageTool format --cluster-id="$cluster_id" -c "$node_dir/server.properties" \
            > "$node_dir/format.log" 2>&1
        pids+="${pids:+ }$(launch "$node_dir")"
    done
    for i in $(seq 1 "$nodes"); do
        await_started "$dir/node$i/kafka.log" 1
    done
    printf 'BOOTSTRAP=%s\nPIDS="%s"\nDIR=%s\n' "$bootstrap" "$pids" "$dir" | tee "$dir/peer.env"
}

resume() {
    local dir=$1 pids="" bootstrap
    # shellcheck disable=SC1091
    . "$dir/peer.env"
    for node_dir in "$dir"/node*/; do
        local starts
        starts=$(grep -c "Kafka Server started" "$node_dir/kafka.log" || true)
        pids+="${pids:+ }$(launch "$node_dir")"
        await_started "$node_dir/kafka.log" $((starts + 1))
    done
    bootstrap=$BOOTSTRAP
    printf 'BOOTSTRAP=%s\nPIDS="%s"\nDIR=%s\n' "$bootstrap" "$pids" "$dir" | tee "$dir/peer.env"
}

stop() {
    local dir=$1
    # shellcheck disable=SC1091
    . "$dir/peer.env"
    for pid in $PIDS; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in $PIDS; do
        local waited=0
        while kill -0 "$pid" 2>/dev/null && [ $waited -lt 300 ]; do
            sleep 0.1
            waited=$((waited + 1))
        done
        kill -KILL "$pid" 2>/dev/null || true
    done
}

case ${1:-} in
    start) shift; start "$@" ;;
    stop) stop "$2" ;;
    resume) resolve; resume "$2" ;;
    classpath) resolve; echo "$CACHE/lib/*" ;;
    *) sed -n '2,19p' "$0"; exit 2 ;;
esac
