package sluice;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.NewPartitionReassignment;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.OffsetAndTimestamp;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.ElectionType;
import org.apache.kafka.common.GroupState;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.ElectionNotNeededException;
import org.apache.kafka.common.errors.NoReassignmentInProgressException;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * Drives a broker with the Java client (kafka-clients 4.4), one scenario per
 * run: {@code java -cp ... sluice.ClientCheck BOOTSTRAP SCENARIO [ARG]}. A
 * scenario prints what it checked and exits 0, or throws (exit 1) with the
 * first expectation that failed. tests/test_java_client.py runs them.
 */
public final class ClientCheck {
    private static final Duration POLL = Duration.ofMillis(200);
    private static final long DEADLINE_MS = 60_000;

    private final String bootstrap;

    private ClientCheck(String bootstrap) {
        this.bootstrap = bootstrap;
    }

    public static void main(String[] args) throws Exception {
        if (args.length < 2) {
            throw new IllegalArgumentException("usage: ClientCheck BOOTSTRAP SCENARIO [ARG]");
        }
        ClientCheck check = new ClientCheck(args[0]);
        String arg = args.length > 2 ? args[2] : "";
        switch (args[1]) {
            case "codecs" -> check.codecs();
            case "positions" -> check.positions();
            case "group" -> check.group(arg);
            case "cooperative" -> check.cooperative();
            case "admin" -> check.adminOperations();
            case "wide" -> check.wide();
            case "moves" -> check.moves();
            case "failover" -> check.failover();
            case "transactions" -> check.transactions(arg);
            case "pipelined-transactions" -> check.pipelinedTransactions();
            case "exactly-once" -> check.exactlyOnce(arg);
            default -> throw new IllegalArgumentException("unknown scenario " + args[1]);
        }
        System.out.println("OK " + args[1] + (arg.isEmpty() ? "" : " " + arg));
    }

    static void check(boolean condition, String what) {
        if (!condition) {
            throw new AssertionError(what);
        }
    }

    /** Polls `done` until it holds or DEADLINE_MS passed; fails with `what`. */
    static void await(BooleanSupplier done, String what) throws InterruptedException {
        long deadline = System.currentTimeMillis() + DEADLINE_MS;
        while (!done.getAsBoolean()) {
            check(System.currentTimeMillis() < deadline, "timed out waiting for " + what);
            Thread.sleep(50);
        }
    }

    Admin adminClient() {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        return Admin.create(p);
    }

    KafkaProducer<byte[], byte[]> producer(Map<String, Object> extra) {
        Map<String, Object> p = new HashMap<>();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class);
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class);
        p.putAll(extra);
        return new KafkaProducer<>(p);
    }

    KafkaConsumer<byte[], byte[]> consumer(Map<String, Object> extra) {
        Map<String, Object> p = new HashMap<>();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class);
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class);
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        p.putAll(extra);
        return new KafkaConsumer<>(p);
    }

    void createTopic(String name, int partitions) throws Exception {
        try (Admin admin = adminClient()) {
            admin.createTopics(List.of(new NewTopic(name, partitions, (short) 1))).all().get(30, TimeUnit.SECONDS);
        } catch (ExecutionException e) {
            if (!(e.getCause() instanceof TopicExistsException)) {
                throw e;
            }
        }
    }

    /**
     * A transactional producer commits over two partitions and aborts; a
     * read_committed consumer sees the committed records only, in order, and
     * a read_uncommitted one sees both. A second producer with the same
     * transactional id fences the first.
     */
    /** `suffix` names a topic and transactional id of their own, for a run after another. */
    void transactions(String suffix) throws Exception {
        String topic = "java-tx" + suffix;
        String id = "java-tx-writer" + suffix;
        createTopic(topic, 2);
        Map<String, Object> txn = Map.of(ProducerConfig.TRANSACTIONAL_ID_CONFIG, id);
        try (KafkaProducer<byte[], byte[]> producer = producer(txn)) {
            producer.initTransactions();
            producer.beginTransaction();
            for (int i = 0; i < 10; i++) {
                producer.send(new ProducerRecord<>(topic, i % 2, null, bytes("committed-" + i)));
            }
            producer.commitTransaction();
            producer.beginTransaction();
            producer.send(new ProducerRecord<>(topic, 0, null, bytes("aborted"))).get();
            producer.abortTransaction();
            // transaction.version 2 (KIP-890 part 2) bumps the epoch at each
            // commit and abort; version 1 leaves it where InitProducerId put it.
            try (Admin admin = adminClient()) {
                int epoch = admin.describeTransactions(List.of(id))
                    .description(id).get(30, TimeUnit.SECONDS).producerEpoch();
                System.out.println("producer epoch after a commit and an abort: " + epoch);
            }
            try (KafkaProducer<byte[], byte[]> successor = producer(txn)) {
                successor.initTransactions();
                boolean fenced = false;
                try {
                    producer.beginTransaction();
                    producer.send(new ProducerRecord<>(topic, 1, null, bytes("zombie"))).get();
                    producer.commitTransaction();
                } catch (Exception e) {
                    fenced = true;
                }
                check(fenced, "the first producer was fenced by the second");
            }
        }
        List<String> committed = readAll(topic, 2, "read_committed");
        List<String> all = readAll(topic, 2, "read_uncommitted");
        List<String> expected = new ArrayList<>();
        for (int i = 0; i < 10; i++) {
            expected.add("committed-" + i);
        }
        check(new HashSet<>(committed).equals(new HashSet<>(expected)) && committed.size() == 10,
            "read_committed sees the committed records only: " + committed);
        check(all.contains("aborted") && all.size() == 11, "read_uncommitted sees the aborted one too: " + all);
        System.out.println("transactions: 10 committed, 1 aborted, zombie fenced");
    }

    /**
     * Transactions of tiny batches (batch.size 16, linger.ms 0): the producer
     * pipelines several Produce requests per partition into each transaction,
     * the first of which waits for the coordinator to add the partition, and
     * every third transaction is aborted at once after the last commit was
     * answered (its markers may still be being written). Each
     * commit keeps its records in order, each abort none.
     */
    void pipelinedTransactions() throws Exception {
        String topic = "java-pipelined-tx";
        int transactions = 30;
        int perTransaction = 20;
        createTopic(topic, 2);
        Map<String, Object> txn = Map.of(
            ProducerConfig.TRANSACTIONAL_ID_CONFIG, "java-pipelined-writer",
            ProducerConfig.BATCH_SIZE_CONFIG, 16,
            ProducerConfig.LINGER_MS_CONFIG, 0);
        List<String> expected = new ArrayList<>();
        try (KafkaProducer<byte[], byte[]> producer = producer(txn)) {
            producer.initTransactions();
            for (int t = 0; t < transactions; t++) {
                boolean abort = t % 3 == 2;
                producer.beginTransaction();
                for (int i = 0; i < perTransaction; i++) {
                    String value = "t" + t + "-" + i;
                    producer.send(new ProducerRecord<>(topic, i % 2, null, bytes(value)));
                    if (!abort) {
                        expected.add(value);
                    }
                }
                if (abort) {
                    producer.abortTransaction();
                } else {
                    producer.commitTransaction();
                }
            }
        }
        List<String> committed = readAll(topic, 2, "read_committed");
        check(byPartition(committed).equals(byPartition(expected)),
            "read_committed sees every committed record once, in order, and no aborted one: " + committed);
        System.out.println("pipelined transactions: " + expected.size() + " records committed in order");
    }

    /** `values` ("tT-I", sent to partition I % 2) grouped by partition, each in its order. */
    static List<String> byPartition(List<String> values) {
        List<String> grouped = new ArrayList<>();
        for (int p = 0; p < 2; p++) {
            for (String value : values) {
                if (Integer.parseInt(value.substring(value.indexOf('-') + 1)) % 2 == p) {
                    grouped.add(value);
                }
            }
        }
        return grouped;
    }

    /**
     * Consume-transform-produce over group protocol `protocol` (classic or
     * consumer): each step sends the records it read to an output topic and
     * the consumer's positions with sendOffsetsToTransaction, in one
     * transaction. One step aborts and the consumer rewinds to the committed
     * offsets. Each input record reaches the output once, and the group's
     * committed offsets are the input's ends.
     */
    void exactlyOnce(String protocol) throws Exception {
        String in = "java-eos-in-" + protocol;
        String out = "java-eos-out-" + protocol;
        createTopic(in, 2);
        createTopic(out, 2);
        Set<String> expected = new HashSet<>();
        try (KafkaProducer<byte[], byte[]> plain = producer(Map.of())) {
            for (int i = 0; i < 40; i++) {
                expected.add("r" + i);
                plain.send(new ProducerRecord<>(in, i % 2, null, bytes("r" + i)));
            }
        }
        Map<String, Object> txn = Map.of(ProducerConfig.TRANSACTIONAL_ID_CONFIG, "java-eos-" + protocol);
        Map<String, Object> group = Map.of(
            ConsumerConfig.GROUP_ID_CONFIG, "java-eos-" + protocol,
            ConsumerConfig.GROUP_PROTOCOL_CONFIG, protocol,
            ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed",
            ConsumerConfig.MAX_POLL_RECORDS_CONFIG, 7);
        int steps = 0;
        boolean aborted = false;
        try (KafkaProducer<byte[], byte[]> producer = producer(txn);
             KafkaConsumer<byte[], byte[]> consumer = consumer(group)) {
            producer.initTransactions();
            consumer.subscribe(List.of(in));
            long deadline = System.currentTimeMillis() + DEADLINE_MS;
            while (!caughtUp(consumer, in)) {
                check(System.currentTimeMillis() < deadline, "timed out consuming " + in);
                var records = consumer.poll(POLL);
                if (records.isEmpty()) {
                    continue;
                }
                producer.beginTransaction();
                for (ConsumerRecord<byte[], byte[]> r : records) {
                    producer.send(new ProducerRecord<>(out, r.partition(), null, r.value()));
                }
                Map<TopicPartition, OffsetAndMetadata> positions = new HashMap<>();
                for (TopicPartition tp : consumer.assignment()) {
                    positions.put(tp, new OffsetAndMetadata(consumer.position(tp)));
                }
                producer.sendOffsetsToTransaction(positions, consumer.groupMetadata());
                steps++;
                if (steps == 2 && !aborted) {
                    aborted = true;
                    producer.abortTransaction();
                    rewindToCommitted(consumer);
                } else {
                    producer.commitTransaction();
                }
            }
        }
        check(aborted, "a step aborted");
        List<String> seen = readAll(out, 2, "read_committed");
        check(seen.size() == expected.size() && new HashSet<>(seen).equals(expected),
            "each input record reached the output once: " + seen.size() + " records " + seen);
        try (KafkaConsumer<byte[], byte[]> reader = consumer(Map.of(
            ConsumerConfig.GROUP_ID_CONFIG, "java-eos-" + protocol,
            ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed"))) {
            Set<TopicPartition> tps = Set.of(new TopicPartition(in, 0), new TopicPartition(in, 1));
            Map<TopicPartition, OffsetAndMetadata> committed = reader.committed(tps);
            for (TopicPartition tp : tps) {
                check(committed.get(tp) != null && committed.get(tp).offset() == 20,
                    "the group committed the end of " + tp + ": " + committed);
            }
        }
        System.out.println("exactly-once " + protocol + ": 40 records once in " + steps + " steps, one aborted");
    }

    /** Whether the consumer has read both partitions of `topic` to their ends. */
    static boolean caughtUp(KafkaConsumer<byte[], byte[]> consumer, String topic) {
        Set<TopicPartition> assigned = consumer.assignment();
        if (assigned.size() < 2) {
            return false;
        }
        Map<TopicPartition, Long> ends = consumer.endOffsets(assigned);
        return assigned.stream().allMatch(tp -> consumer.position(tp) >= ends.get(tp));
    }

    /** After an abort: back to the offsets the group committed, or the beginning. */
    static void rewindToCommitted(KafkaConsumer<byte[], byte[]> consumer) {
        Map<TopicPartition, OffsetAndMetadata> committed = consumer.committed(consumer.assignment());
        for (TopicPartition tp : consumer.assignment()) {
            OffsetAndMetadata at = committed.get(tp);
            if (at == null) {
                consumer.seekToBeginning(List.of(tp));
            } else {
                consumer.seek(tp, at.offset());
            }
        }
    }

    /** Every record of `topic` that `isolation` lets a consumer see, up to the end offsets it reports. */
    List<String> readAll(String topic, int partitions, String isolation) throws InterruptedException {
        List<String> seen = new ArrayList<>();
        try (KafkaConsumer<byte[], byte[]> consumer = consumer(Map.of(ConsumerConfig.ISOLATION_LEVEL_CONFIG, isolation))) {
            List<TopicPartition> tps = new ArrayList<>();
            for (int p = 0; p < partitions; p++) {
                tps.add(new TopicPartition(topic, p));
            }
            consumer.assign(tps);
            consumer.seekToBeginning(tps);
            Map<TopicPartition, Long> ends = consumer.endOffsets(tps);
            await(() -> {
                for (ConsumerRecord<byte[], byte[]> r : consumer.poll(POLL)) {
                    seen.add(text(r.value()));
                }
                return tps.stream().allMatch(tp -> consumer.position(tp) >= ends.get(tp));
            }, isolation + " reaching the end offsets");
        }
        return seen;
    }

    static byte[] bytes(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    static String text(byte[] b) {
        return b == null ? null : new String(b, StandardCharsets.UTF_8);
    }

    /** Reads every partition of `topic` from the start until `expected` records arrived. */
    List<ConsumerRecord<byte[], byte[]>> readAll(String topic, int partitions, int expected) throws Exception {
        List<ConsumerRecord<byte[], byte[]>> out = new ArrayList<>();
        try (KafkaConsumer<byte[], byte[]> c = consumer(Map.of())) {
            List<TopicPartition> all = new ArrayList<>();
            for (int p = 0; p < partitions; p++) {
                all.add(new TopicPartition(topic, p));
            }
            c.assign(all);
            c.seekToBeginning(all);
            long deadline = System.currentTimeMillis() + DEADLINE_MS;
            while (out.size() < expected && System.currentTimeMillis() < deadline) {
                c.poll(POLL).forEach(out::add);
            }
        }
        check(out.size() == expected, "read " + out.size() + " of " + expected + " records of " + topic);
        return out;
    }

    /**
     * The idempotent producer with Java's defaults (acks=all), keys, headers and
     * timestamps, in every codec; each record comes back exactly as sent.
     */
    void codecs() throws Exception {
        long base = System.currentTimeMillis() - 60_000;
        for (String codec : List.of("none", "gzip", "snappy", "lz4", "zstd")) {
            String topic = "java-" + codec;
            createTopic(topic, 3);
            int count = 300;
            try (KafkaProducer<byte[], byte[]> p = producer(Map.of(
                    ProducerConfig.COMPRESSION_TYPE_CONFIG, codec,
                    ProducerConfig.LINGER_MS_CONFIG, 5))) {
                List<java.util.concurrent.Future<RecordMetadata>> sent = new ArrayList<>();
                for (int i = 0; i < count; i++) {
                    ProducerRecord<byte[], byte[]> r = new ProducerRecord<>(topic, null, base + i,
                            bytes("key-" + (i % 10)), bytes(codec + "-" + i));
                    r.headers().add("n", bytes(Integer.toString(i))).add("codec", bytes(codec));
                    sent.add(p.send(r));
                }
                for (var f : sent) {
                    RecordMetadata m = f.get(30, TimeUnit.SECONDS);
                    check(m.offset() >= 0, "acknowledged with an offset");
                }
            }
            Map<String, Integer> partitionOfKey = new HashMap<>();
            Set<Integer> indices = new HashSet<>();
            for (ConsumerRecord<byte[], byte[]> r : readAll(topic, 3, count)) {
                int i = Integer.parseInt(text(r.headers().lastHeader("n").value()));
                check(indices.add(i), "record " + i + " stored once");
                check(text(r.value()).equals(codec + "-" + i), "value of record " + i);
                check(text(r.key()).equals("key-" + (i % 10)), "key of record " + i);
                check(r.timestamp() == base + i, "timestamp of record " + i + ": " + r.timestamp());
                check(text(r.headers().lastHeader("codec").value()).equals(codec), "headers of record " + i);
                Integer before = partitionOfKey.putIfAbsent(text(r.key()), r.partition());
                check(before == null || before == r.partition(), "one key, one partition");
            }
            System.out.println("codec " + codec + ": " + count + " records round-tripped");
        }
    }

    /**
     * One consumer assigned 1,000 partitions (which the Java client fetches
     * through a fetch session, KIP-227): every record once and in order, both
     * what was there before and what arrives while it polls, when only some
     * partitions change between fetches.
     */
    void wide() throws Exception {
        String topic = "java-wide";
        int partitions = 1000;
        createTopic(topic, partitions);
        // Kafka's partitions get leaders a moment after CreateTopics answers.
        try (Admin admin = adminClient()) {
            await(() -> {
                try {
                    TopicDescription d = admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic);
                    return d.partitions().stream().allMatch(p -> p.leader() != null && !p.leader().isEmpty());
                } catch (Exception e) {
                    return false;
                }
            }, "leaders for " + topic);
        }
        List<TopicPartition> all = new ArrayList<>();
        for (int p = 0; p < partitions; p++) {
            all.add(new TopicPartition(topic, p));
        }
        Map<TopicPartition, Long> next = new HashMap<>();
        int expected = 0;
        try (KafkaProducer<byte[], byte[]> p = producer(Map.of(ProducerConfig.LINGER_MS_CONFIG, 5));
             KafkaConsumer<byte[], byte[]> c = consumer(Map.of())) {
            for (int round = 0; round < 2; round++) {
                for (int i = 0; i < partitions; i++) {
                    p.send(new ProducerRecord<>(topic, i, null, bytes(round + "-" + i)));
                }
            }
            p.flush();
            expected += 2 * partitions;
            c.assign(all);
            c.seekToBeginning(all);
            int read = drain(c, next, expected, 0);
            // Now only a few partitions change between fetches.
            for (int round = 2; round < 12; round++) {
                for (int i = round * 7; i < partitions; i += 97) {
                    p.send(new ProducerRecord<>(topic, i, null, bytes(round + "-" + i)));
                    expected++;
                }
                p.flush();
                read = drain(c, next, expected, read);
            }
            check(read == expected, "read " + read + " of " + expected);
        }
        System.out.println("wide: " + expected + " records over " + partitions + " partitions, each once, in order");
    }

    /** Polls until `expected` records were read in all; each partition's offsets must run 0, 1, 2, ... */
    int drain(KafkaConsumer<byte[], byte[]> c, Map<TopicPartition, Long> next, int expected, int read) {
        long deadline = System.currentTimeMillis() + DEADLINE_MS;
        while (read < expected && System.currentTimeMillis() < deadline) {
            for (ConsumerRecord<byte[], byte[]> r : c.poll(POLL)) {
                TopicPartition tp = new TopicPartition(r.topic(), r.partition());
                long want = next.getOrDefault(tp, 0L);
                check(r.offset() == want, tp + ": offset " + r.offset() + " where " + want + " was next");
                next.put(tp, want + 1);
                read++;
            }
        }
        check(read == expected, "read " + read + " of " + expected + " in time");
        return read;
    }

    TopicDescription describe(Admin admin, String topic) {
        try {
            return admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic);
        } catch (Exception e) {
            return null;
        }
    }

    /** Waits until every partition of `topic` has a leader and all its replicas in sync. */
    void awaitInSync(Admin admin, String topic) throws InterruptedException {
        await(() -> {
            TopicDescription d = describe(admin, topic);
            return d != null && d.partitions().stream().allMatch(p -> p.leader() != null && !p.leader().isEmpty()
                    && p.isr().size() == p.replicas().size());
        }, "every replica of " + topic + " in sync");
    }

    /**
     * On a three-broker cluster, through AdminClient: a partition moves to a
     * broker that had no replica of it (alterPartitionReassignments, followed
     * with listPartitionReassignments until done), its preferred replica is
     * elected (electLeaders), and the records stay whole. Cancelling a move
     * that is not in progress is NoReassignmentInProgressException.
     */
    void moves() throws Exception {
        String topic = "java-moves";
        int count = 600;
        try (Admin admin = adminClient()) {
            admin.createTopics(List.of(new NewTopic(topic, 2, (short) 2))).all().get(30, TimeUnit.SECONDS);
            awaitInSync(admin, topic);
            try (KafkaProducer<byte[], byte[]> p = producer(Map.of(ProducerConfig.LINGER_MS_CONFIG, 5))) {
                for (int i = 0; i < count; i++) {
                    p.send(new ProducerRecord<>(topic, i % 2, null, bytes("m-" + i)));
                }
                p.flush();
            }
            TopicPartition tp = new TopicPartition(topic, 0);
            List<Integer> before = describe(admin, topic).partitions().get(0).replicas().stream().map(n -> n.id()).toList();
            int newcomer = admin.describeCluster().nodes().get().stream().map(n -> n.id())
                    .filter(id -> !before.contains(id)).findFirst().orElseThrow();
            List<Integer> target = List.of(newcomer, before.get(1));
            admin.alterPartitionReassignments(Map.of(tp, Optional.of(new NewPartitionReassignment(target))))
                    .all().get(30, TimeUnit.SECONDS);
            await(() -> {
                try {
                    return admin.listPartitionReassignments().reassignments().get().isEmpty()
                            && describe(admin, topic).partitions().get(0).replicas().stream().map(n -> n.id()).toList().equals(target);
                } catch (Exception e) {
                    return false;
                }
            }, "partition 0 moved to " + target);
            awaitInSync(admin, topic);
            try {
                admin.electLeaders(ElectionType.PREFERRED, Set.of(tp)).all().get(30, TimeUnit.SECONDS);
            } catch (ExecutionException e) {
                check(e.getCause() instanceof ElectionNotNeededException, "preferred election: " + e.getCause());
            }
            await(() -> describe(admin, topic).partitions().get(0).leader().id() == newcomer,
                    "the preferred replica " + newcomer + " leading");
            try {
                admin.alterPartitionReassignments(Map.of(tp, Optional.empty())).all().get(30, TimeUnit.SECONDS);
                check(false, "cancelling no reassignment succeeded");
            } catch (ExecutionException e) {
                check(e.getCause() instanceof NoReassignmentInProgressException, "cancel: " + e.getCause());
            }
            System.out.println("moves: " + tp + " from " + before + " to " + target + ", leader " + newcomer);
        }
        Set<String> values = new HashSet<>();
        for (ConsumerRecord<byte[], byte[]> r : readAll(topic, 2, count)) {
            check(values.add(text(r.value())), "record " + text(r.value()) + " once");
        }
    }

    /**
     * An idempotent producer (acks=all) writes to a partition with three
     * replicas until a line arrives on stdin, while the test kills and
     * restarts leaders. Then every acknowledged record is at the offset it
     * was acknowledged at, and no record is stored twice or out of order.
     */
    void failover() throws Exception {
        String topic = "java-failover";
        try (Admin admin = adminClient()) {
            admin.createTopics(List.of(new NewTopic(topic, 1, (short) 3)
                    .configs(Map.of("min.insync.replicas", "2")))).all().get(30, TimeUnit.SECONDS);
            awaitInSync(admin, topic);
        }
        Map<Long, String> acked = new ConcurrentHashMap<>();
        List<Exception> failed = java.util.Collections.synchronizedList(new ArrayList<>());
        java.util.concurrent.atomic.AtomicBoolean stop = new java.util.concurrent.atomic.AtomicBoolean();
        Thread stopper = new Thread(() -> {
            try {
                System.in.read();
            } catch (java.io.IOException e) {
                // stdin closed: stop as well
            }
            stop.set(true);
        });
        stopper.setDaemon(true);
        stopper.start();
        int sent = 0;
        try (KafkaProducer<byte[], byte[]> p = producer(Map.of(
                ProducerConfig.LINGER_MS_CONFIG, 2,
                ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, 120_000,
                ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, 10_000))) {
            boolean announced = false;
            while (!stop.get()) {
                String value = String.format("%08d", sent++);
                p.send(new ProducerRecord<>(topic, 0, null, bytes(value)), (m, e) -> {
                    if (e != null) {
                        failed.add(e);
                    } else {
                        acked.put(m.offset(), value);
                    }
                });
                if (sent % 100 == 0) {
                    Thread.sleep(5);
                }
                if (!announced && acked.size() >= 1000) {
                    System.out.println("PRODUCING");
                    System.out.flush();
                    announced = true;
                }
            }
            p.flush();
        }
        check(failed.isEmpty(), failed.size() + " sends failed, e.g. " + (failed.isEmpty() ? "" : failed.get(0)));
        check(acked.size() == sent, "acknowledged " + acked.size() + " of " + sent);
        long end = acked.keySet().stream().mapToLong(Long::longValue).max().orElse(-1) + 1;
        List<String> stored = new ArrayList<>();
        try (KafkaConsumer<byte[], byte[]> c = consumer(Map.of())) {
            TopicPartition tp = new TopicPartition(topic, 0);
            c.assign(List.of(tp));
            c.seekToBeginning(List.of(tp));
            long deadline = System.currentTimeMillis() + DEADLINE_MS;
            while (stored.size() < end && System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<byte[], byte[]> r : c.poll(POLL)) {
                    check(r.offset() == stored.size(), "offset " + r.offset() + " after " + stored.size() + " records");
                    stored.add(text(r.value()));
                }
            }
        }
        check(stored.size() == end, "read " + stored.size() + " of " + end);
        for (Map.Entry<Long, String> a : acked.entrySet()) {
            check(a.getValue().equals(stored.get((int) (long) a.getKey())), "acknowledged " + a.getValue()
                    + " at " + a.getKey() + " but stored there: " + stored.get((int) (long) a.getKey()));
        }
        for (int i = 1; i < stored.size(); i++) {
            check(stored.get(i - 1).compareTo(stored.get(i)) < 0, "stored once and in order at offset " + i);
        }
        System.out.println("failover: " + sent + " sent, all acknowledged, each stored once in order");
    }

    /** assign, seek, offsetsForTimes, beginning and end offsets, committed positions. */
    void positions() throws Exception {
        String topic = "java-positions";
        createTopic(topic, 1);
        long base = System.currentTimeMillis() - 100_000;
        try (KafkaProducer<byte[], byte[]> p = producer(Map.of())) {
            for (int i = 0; i < 100; i++) {
                p.send(new ProducerRecord<>(topic, 0, base + 1000L * i, null, bytes("v" + i))).get();
            }
        }
        TopicPartition tp = new TopicPartition(topic, 0);
        try (KafkaConsumer<byte[], byte[]> c = consumer(Map.of(ConsumerConfig.GROUP_ID_CONFIG, "java-positions"))) {
            c.assign(List.of(tp));
            check(c.beginningOffsets(List.of(tp)).get(tp) == 0, "beginning offset 0");
            check(c.endOffsets(List.of(tp)).get(tp) == 100, "end offset 100");
            Map<TopicPartition, OffsetAndTimestamp> found = c.offsetsForTimes(Map.of(tp, base + 41_500L));
            check(found.get(tp).offset() == 42, "offsetsForTimes finds the first record at or after: " + found);
            check(found.get(tp).timestamp() == base + 42_000L, "and its timestamp");
            check(c.offsetsForTimes(Map.of(tp, base + 1_000_000L)).get(tp) == null, "nothing after the last");
            c.seek(tp, 90);
            List<ConsumerRecord<byte[], byte[]>> got = new ArrayList<>();
            await(() -> {
                c.poll(POLL).forEach(got::add);
                return got.size() >= 10;
            }, "the records after a seek");
            check(got.get(0).offset() == 90 && text(got.get(0).value()).equals("v90"), "seek lands on offset 90");
            c.commitSync(Map.of(tp, new OffsetAndMetadata(95, "java")));
            OffsetAndMetadata committed = c.committed(Set.of(tp)).get(tp);
            check(committed.offset() == 95 && committed.metadata().equals("java"), "committed: " + committed);
        }
    }

    /**
     * Three members of one group over `protocol` (classic or consumer, KIP-848)
     * share six partitions exactly, consume every record once, commit, and a
     * later member resumes after the commits.
     */
    void group(String protocol) throws Exception {
        String topic = "java-group-" + protocol;
        String groupId = "java-group-" + protocol;
        createTopic(topic, 6);
        Map<String, Object> conf = new HashMap<>();
        conf.put(ConsumerConfig.GROUP_ID_CONFIG, groupId);
        conf.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, protocol);
        List<KafkaConsumer<byte[], byte[]>> members = new ArrayList<>();
        Map<String, Integer> seen = new ConcurrentHashMap<>();
        try {
            for (int i = 0; i < 3; i++) {
                KafkaConsumer<byte[], byte[]> m = consumer(conf);
                m.subscribe(List.of(topic));
                members.add(m);
            }
            await(() -> {
                // Every member polls each round: each drives its own part of the rebalance.
                Set<TopicPartition> union = new HashSet<>();
                boolean even = true;
                for (KafkaConsumer<byte[], byte[]> m : members) {
                    m.poll(POLL).forEach(r -> seen.merge(text(r.value()), 1, Integer::sum));
                    union.addAll(m.assignment());
                    even &= m.assignment().size() == 2;
                }
                return even && union.size() == 6;
            }, "three members with two partitions each");
            try (KafkaProducer<byte[], byte[]> p = producer(Map.of())) {
                for (int i = 0; i < 600; i++) {
                    p.send(new ProducerRecord<>(topic, bytes("k" + i), bytes("v" + i)));
                }
                p.flush();
            }
            await(() -> {
                for (KafkaConsumer<byte[], byte[]> m : members) {
                    m.poll(POLL).forEach(r -> seen.merge(text(r.value()), 1, Integer::sum));
                }
                return seen.size() >= 600;
            }, "every record consumed");
            check(seen.size() == 600 && seen.values().stream().allMatch(n -> n == 1),
                    "each record once: " + seen.size() + " distinct");
            for (KafkaConsumer<byte[], byte[]> m : members) {
                m.commitSync();
            }
        } finally {
            for (KafkaConsumer<byte[], byte[]> m : members) {
                m.close(Duration.ofSeconds(10));
            }
        }
        try (KafkaConsumer<byte[], byte[]> later = consumer(conf)) {
            later.subscribe(List.of(topic));
            long until = System.currentTimeMillis() + 5_000;
            int leftover = 0;
            while (System.currentTimeMillis() < until) {
                leftover += later.poll(POLL).count();
            }
            check(later.assignment().size() == 6, "the later member owns all six partitions");
            check(leftover == 0, "resumes after the commits, read " + leftover);
        }
    }

    /** CooperativeStickyAssignor: a second member joining revokes only what moves. */
    void cooperative() throws Exception {
        String topic = "java-cooperative";
        createTopic(topic, 4);
        Map<String, Object> conf = Map.of(
                ConsumerConfig.GROUP_ID_CONFIG, "java-cooperative",
                ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG,
                "org.apache.kafka.clients.consumer.CooperativeStickyAssignor");
        List<Collection<TopicPartition>> revokedFromFirst = new ArrayList<>();
        try (KafkaConsumer<byte[], byte[]> first = consumer(conf); KafkaConsumer<byte[], byte[]> second = consumer(conf)) {
            first.subscribe(List.of(topic), new ConsumerRebalanceListener() {
                public void onPartitionsRevoked(Collection<TopicPartition> partitions) {
                    if (!partitions.isEmpty()) {
                        revokedFromFirst.add(new ArrayList<>(partitions));
                    }
                }

                public void onPartitionsAssigned(Collection<TopicPartition> partitions) {
                }
            });
            await(() -> {
                first.poll(POLL);
                return first.assignment().size() == 4;
            }, "the first member owning all four partitions");
            second.subscribe(List.of(topic));
            await(() -> {
                first.poll(POLL);
                second.poll(POLL);
                return first.assignment().size() == 2 && second.assignment().size() == 2;
            }, "two partitions each");
            int revoked = revokedFromFirst.stream().mapToInt(Collection::size).sum();
            check(revoked == 2, "only the two partitions that moved were revoked: " + revokedFromFirst);
        }
    }

    /** AdminClient: topics, partitions, configs, cluster, offsets, groups, log dirs. */
    void adminOperations() throws Exception {
        String topic = "java-admin";
        try (Admin admin = adminClient()) {
            admin.createTopics(List.of(new NewTopic(topic, 2, (short) 1)
                    .configs(Map.of("retention.ms", "3600000")))).all().get();
            check(admin.listTopics().names().get().contains(topic), "listed");
            TopicDescription d = admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic);
            check(d.partitions().size() == 2, "two partitions");
            admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(4))).all().get();
            await(() -> {
                try {
                    return admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic).partitions().size() == 4;
                } catch (Exception e) {
                    return false;
                }
            }, "four partitions");
            ConfigResource resource = new ConfigResource(ConfigResource.Type.TOPIC, topic);
            admin.incrementalAlterConfigs(Map.of(resource, List.of(new AlterConfigOp(
                    new ConfigEntry("retention.ms", "7200000"), AlterConfigOp.OpType.SET)))).all().get();
            Config config = admin.describeConfigs(List.of(resource)).all().get().get(resource);
            check("7200000".equals(config.get("retention.ms").value()), "retention.ms altered: " + config.get("retention.ms"));
            check(config.get("cleanup.policy") != null, "every topic config described");
            var cluster = admin.describeCluster();
            check(cluster.nodes().get().size() >= 1 && cluster.clusterId().get() != null, "cluster described");
            try (KafkaProducer<byte[], byte[]> p = producer(Map.of())) {
                for (int i = 0; i < 10; i++) {
                    p.send(new ProducerRecord<>(topic, 0, null, bytes("v" + i))).get();
                }
            }
            TopicPartition tp = new TopicPartition(topic, 0);
            long latest = admin.listOffsets(Map.of(tp, OffsetSpec.latest())).all().get().get(tp).offset();
            long earliest = admin.listOffsets(Map.of(tp, OffsetSpec.earliest())).all().get().get(tp).offset();
            check(latest == 10 && earliest == 0, "list offsets: " + earliest + ".." + latest);
            String groupId = "java-admin-group";
            try (KafkaConsumer<byte[], byte[]> c = consumer(Map.of(ConsumerConfig.GROUP_ID_CONFIG, groupId))) {
                c.assign(List.of(tp));
                c.commitSync(Map.of(tp, new OffsetAndMetadata(7)));
            }
            check(admin.listConsumerGroups().all().get().stream().anyMatch(g -> g.groupId().equals(groupId)), "group listed");
            ConsumerGroupDescription g = admin.describeConsumerGroups(List.of(groupId)).all().get().get(groupId);
            check(g.groupState() == GroupState.EMPTY, "an offsets-only group is empty: " + g.groupState());
            var offsets = admin.listConsumerGroupOffsets(groupId).partitionsToOffsetAndMetadata().get();
            check(offsets.get(tp).offset() == 7, "group offsets: " + offsets);
            var logDirs = admin.describeLogDirs(cluster.nodes().get().stream().map(n -> n.id()).toList()).allDescriptions().get();
            check(logDirs.values().stream().anyMatch(dirs -> dirs.values().stream()
                    .anyMatch(dir -> dir.replicaInfos().containsKey(tp))), "log dirs hold the partition");
            admin.deleteConsumerGroups(List.of(groupId)).all().get();
            check(admin.listConsumerGroups().all().get().stream().noneMatch(x -> x.groupId().equals(groupId)), "group deleted");
            admin.deleteTopics(List.of(topic)).all().get();
            await(() -> {
                try {
                    return !admin.listTopics().names().get().contains(topic);
                } catch (Exception e) {
                    return false;
                }
            }, "the topic deleted");
        }
    }
}
