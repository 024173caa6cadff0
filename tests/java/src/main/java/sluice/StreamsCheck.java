package sluice;

import java.util.Properties;
import java.util.concurrent.CountDownLatch;

import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Produced;

/**
 * A Kafka Streams (4.4) application with processing.guarantee=exactly_once_v2:
 * {@code java -cp ... sluice.StreamsCheck BOOTSTRAP STATE_DIR} copies
 * streams-in to streams-out with each value upper-cased, prints "RUNNING"
 * once the instance runs, and goes on until it is killed.
 * tests/test_java_client.py kills one instance mid-stream with SIGKILL,
 * starts another, and checks that a read_committed reader of streams-out
 * sees each input record exactly once.
 */
public final class StreamsCheck {
    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, "sluice-streams-eos");
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        props.put(StreamsConfig.STATE_DIR_CONFIG, args[1]);
        props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
        // Transactions open for half a second, so a kill lands in one.
        props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 500);
        props.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, 1);
        // A killed instance's open transaction is aborted after this, which unblocks
        // read_committed readers and the next instance's committed offsets.
        props.put(StreamsConfig.producerPrefix("transaction.timeout.ms"), 5000);
        // And the group notices the killed member after this, rather than Kafka's 45 s.
        props.put(StreamsConfig.consumerPrefix("session.timeout.ms"), 6000);
        props.put(StreamsConfig.consumerPrefix("heartbeat.interval.ms"), 500);
        StreamsBuilder builder = new StreamsBuilder();
        builder.stream("streams-in", Consumed.with(Serdes.String(), Serdes.String()))
            .mapValues(v -> v.toUpperCase())
            .to("streams-out", Produced.with(Serdes.String(), Serdes.String()));
        CountDownLatch stopped = new CountDownLatch(1);
        KafkaStreams streams = new KafkaStreams(builder.build(), props);
        streams.setStateListener((now, before) -> {
            if (now == KafkaStreams.State.RUNNING) {
                System.out.println("RUNNING");
                System.out.flush();
            }
            if (now == KafkaStreams.State.ERROR || now == KafkaStreams.State.NOT_RUNNING) {
                stopped.countDown();
            }
        });
        Runtime.getRuntime().addShutdownHook(new Thread(streams::close));
        streams.start();
        stopped.await();
        System.out.println("STOPPED");
        System.exit(1);
    }
}
