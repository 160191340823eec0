// The Apache Kafka Java client (kafka-clients, the reference client) driven against Strom.
//
// Usage: java StromJavaClient MODE BOOTSTRAP ARGS...
//
//   admin        BOOTSTRAP TOPIC
//   produce      BOOTSTRAP TOPIC CODEC COUNT TIMESTAMP_BASE_MS
//   group-consume BOOTSTRAP TOPIC GROUP EXPECTED [ISOLATION]   (read_uncommitted | read_committed)
//   offsets      BOOTSTRAP TOPIC PARTITIONS TIMESTAMP_QUERY_MS SEEK_PARTITION SEEK_OFFSET READ_COUNT
//   group-pair   BOOTSTRAP TOPIC GROUP EXPECTED ASSIGNOR   (range | cooperative-sticky)
//   group-admin  BOOTSTRAP TOPIC GROUP
//   produce-across-restart BOOTSTRAP TOPIC COUNT_BEFORE COUNT_AFTER
//                (waits for a line on stdin between the two halves, while the test restarts
//                the broker)
//   admin-topic-ids BOOTSTRAP TOPIC
//   consumer-protocol BOOTSTRAP TOPIC GROUP EXPECTED
//   consumer-protocol-migration BOOTSTRAP TOPIC GROUP EXPECTED
//   consumer-protocol-regex BOOTSTRAP REGEX GROUP EXPECTED (runs until killed)
//   transactional BOOTSTRAP TOPIC
//   txn-copy     BOOTSTRAP IN OUT GROUP TRANSACTIONAL_ID IDLE_EXIT_MS PACE_MS
//                (consume-transform-produce: each poll's records copied to OUT in one
//                transaction with the input offsets (sendOffsetsToTransaction); prints
//                "started" once initialized, "copying" after its first commit, "done" after
//                IDLE_EXIT_MS with nothing new; PACE_MS of "work" after each transaction)
//   produce-through-crash BOOTSTRAP TOPIC COUNT PACE_MS
//                (prints "started" once the first records are acknowledged, then keeps sending
//                one record every PACE_MS while the test kills and restarts the broker)
//   sasl-ssl     BOOTSTRAP CA_PEM MECHANISM ADMIN ADMIN_PASSWORD USER USER_PASSWORD TOPIC LOCKED GROUP
//                (everything over SASL_SSL with SCRAM, the CA as a PEM truststore: the ADMIN
//                creates both topics and USER's credentials, grants USER WRITE and READ on TOPIC
//                and READ on GROUP, describes them; USER produces and consumes a round trip,
//                is refused on LOCKED and with a wrong password; the ADMIN deletes the ACLs
//                and describes again)
//
// Every outcome is one JSON object per line on stdout ({"event": ..., ...}), so that
// tests/test_java_client.py asserts on what happened rather than on exit codes alone. A step that
// throws prints {"event": ..., "error": "ExceptionClass: message"} and the run goes on to the
// next step, so one run reports every step that the broker gets wrong, not just the first.
// The client's own log (WARN and above, see log4j2.properties) goes to stderr.
//
// Every wait is bounded (WAIT_MS_MAX and the client timeouts below): a broker that never
// answers fails the run in seconds instead of hanging it.

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;

import java.io.BufferedReader;
import java.io.InputStreamReader;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ScramCredentialInfo;
import org.apache.kafka.clients.admin.ScramMechanism;
import org.apache.kafka.clients.admin.UserScramCredentialUpsertion;
import org.apache.kafka.clients.admin.UserScramCredentialsDescription;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AccessControlEntryFilter;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclBindingFilter;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourcePatternFilter;
import org.apache.kafka.common.resource.ResourceType;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.GroupListing;
import org.apache.kafka.clients.admin.MemberDescription;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.RecordsToDelete;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.CreateTopicsResult;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.OffsetAndTimestamp;
import org.apache.kafka.clients.consumer.SubscriptionPattern;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicCollection;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.Uuid;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeaders;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public final class StromJavaClient {
    /** The longest any loop here waits for records or a stable group. */
    static final long WAIT_MS_MAX = 40_000;
    /** How long a consumer keeps polling after it has everything, to catch extra records. */
    static final long LINGER_AFTER_DONE_MS = 1_500;
    static final Duration POLL = Duration.ofMillis(200);

    public static void main(String[] args) {
        int code = 0;
        try {
            if (args.length < 2) {
                throw new IllegalArgumentException("usage: StromJavaClient MODE BOOTSTRAP ARGS...");
            }
            String mode = args[0];
            String bootstrap = args[1];
            switch (mode) {
                case "admin" -> admin(bootstrap, args[2]);
                case "produce" -> produce(bootstrap, args[2], args[3], Integer.parseInt(args[4]),
                        Long.parseLong(args[5]));
                case "group-consume" -> groupConsume(bootstrap, args[2], args[3], Integer.parseInt(args[4]),
                        args.length > 5 ? args[5] : "read_uncommitted");
                case "offsets" -> offsets(bootstrap, args[2], Integer.parseInt(args[3]), Long.parseLong(args[4]),
                        Integer.parseInt(args[5]), Long.parseLong(args[6]), Integer.parseInt(args[7]));
                case "group-pair" -> groupPair(bootstrap, args[2], args[3], Integer.parseInt(args[4]), args[5]);
                case "admin-topic-ids" -> adminTopicIds(bootstrap, args[2]);
                case "consumer-protocol" -> consumerProtocol(bootstrap, args[2], args[3], Integer.parseInt(args[4]));
                case "consumer-protocol-regex" -> consumerProtocolRegex(bootstrap, args[2], args[3],
                        Integer.parseInt(args[4]));
                case "consumer-protocol-migration" -> consumerProtocolMigration(bootstrap, args[2], args[3],
                        Integer.parseInt(args[4]));
                case "transactional" -> transactional(bootstrap, args[2]);
                case "txn-copy" -> txnCopy(bootstrap, args[2], args[3], args[4], args[5], Long.parseLong(args[6]),
                        Long.parseLong(args[7]));
                case "group-admin" -> groupAdmin(bootstrap, args[2], args[3]);
                case "produce-through-crash" -> produceThroughCrash(bootstrap, args[2], Integer.parseInt(args[3]),
                        Long.parseLong(args[4]));
                case "produce-across-restart" -> produceAcrossRestart(bootstrap, args[2], Integer.parseInt(args[3]),
                        Integer.parseInt(args[4]));
                case "sasl-ssl" -> saslSsl(new Secure(bootstrap, args[2], args[3]), args[4], args[5], args[6],
                        args[7], args[8], args[9], args[10]);
                default -> throw new IllegalArgumentException("unknown mode " + mode);
            }
        } catch (Throwable t) {
            emit("fatal", "error", describe(t));
            t.printStackTrace();
            code = 1;
        }
        emit("exit", "code", code);
        // Client threads must not keep the JVM alive after a failure.
        System.exit(code);
    }

    // ---------------------------------------------------------------- admin

    static void admin(String bootstrap, String topic) {
        try (Admin admin = Admin.create(adminProps(bootstrap))) {
            step("describe_cluster", () -> {
                DescribeClusterResult dc = admin.describeCluster();
                List<Object> nodes = new ArrayList<>();
                for (Node n : dc.nodes().get()) {
                    nodes.add(obj("id", n.id(), "host", n.host(), "port", n.port()));
                }
                Node controller = dc.controller().get();
                emit("describe_cluster", "cluster_id", dc.clusterId().get(), "nodes", nodes,
                        "controller", controller == null ? null : controller.id());
            });

            step("create", () -> {
                NewTopic nt = new NewTopic(topic, 3, (short) 1).configs(Map.of("retention.ms", "3600000"));
                CreateTopicsResult r = admin.createTopics(List.of(nt));
                r.all().get();
                Config cfg = r.config(topic).get();
                ConfigEntry retention = cfg == null ? null : cfg.get("retention.ms");
                emit("create", "partitions", r.numPartitions(topic).get(),
                        "replication_factor", r.replicationFactor(topic).get(),
                        "topic_id", String.valueOf(r.topicId(topic).get()),
                        "retention_ms", retention == null ? null : retention.value());
            });

            step("create_again", () -> {
                try {
                    admin.createTopics(List.of(new NewTopic(topic, 3, (short) 1))).all().get();
                    emit("create_again", "exception", null);
                } catch (ExecutionException e) {
                    emit("create_again", "exception", e.getCause().getClass().getSimpleName());
                }
            });

            step("list", () -> {
                Set<String> names = admin.listTopics().names().get();
                emit("list", "contains", names.contains(topic), "count", names.size());
            });

            step("describe", () -> emitDescription("describe", admin, topic));

            step("describe_configs", () -> {
                ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, topic);
                Config cfg = admin.describeConfigs(List.of(res)).all().get().get(res);
                Map<String, Object> entries = new TreeMap<>();
                for (ConfigEntry e : cfg.entries()) {
                    entries.put(e.name(), obj("value", e.value(), "source", e.source().name(),
                            "read_only", e.isReadOnly(), "sensitive", e.isSensitive()));
                }
                emit("describe_configs", "entries", entries);
            });

            step("create_partitions", () -> {
                admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(5))).all().get();
                emitDescription("describe_after_create_partitions", admin, topic);
            });

            step("delete", () -> {
                admin.deleteTopics(List.of(topic)).all().get();
                // Metadata may take a moment to forget a deleted topic in Kafka; Strom has one
                // broker, so the next listing should already be without it, but allow a little.
                boolean listed = true;
                long deadline = System.currentTimeMillis() + 5_000;
                while (listed && System.currentTimeMillis() < deadline) {
                    listed = admin.listTopics().names().get().contains(topic);
                    if (listed) {
                        Thread.sleep(100);
                    }
                }
                emit("delete", "listed_after", listed);
            });
        }
    }

    static void emitDescription(String event, Admin admin, String topic) throws Exception {
        TopicDescription d = admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic);
        List<Object> parts = new ArrayList<>();
        for (TopicPartitionInfo p : d.partitions()) {
            parts.add(obj("partition", p.partition(),
                    "leader", p.leader() == null ? null : p.leader().id(),
                    "replicas", p.replicas().stream().map(Node::id).toList(),
                    "isr", p.isr().stream().map(Node::id).toList()));
        }
        emit(event, "name", d.name(), "internal", d.isInternal(), "topic_id", String.valueOf(d.topicId()),
                "partitions", parts);
    }

    // ---------------------------------------------------------------- producer

    /**
     * Sends COUNT keyed records with two headers each and explicit timestamps
     * (TIMESTAMP_BASE_MS + i * 1000), with the producer's defaults (idempotence on) plus
     * acks=all and the given codec. Prints one "sent" line per record with its metadata.
     */
    static void produce(String bootstrap, String topic, String codec, int count, long tsBase) throws Exception {
        Properties p = common(bootstrap);
        p.put("acks", "all");
        p.put("compression.type", codec);
        p.put("linger.ms", "5");
        p.put("delivery.timeout.ms", "30000");
        p.put("max.block.ms", "15000");
        p.put("key.serializer", StringSerializer.class.getName());
        p.put("value.serializer", StringSerializer.class.getName());
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
            List<Future<RecordMetadata>> sent = new ArrayList<>();
            for (int i = 0; i < count; i++) {
                RecordHeaders headers = new RecordHeaders();
                headers.add("i", Integer.toString(i).getBytes(StandardCharsets.UTF_8));
                headers.add("codec", codec.getBytes(StandardCharsets.UTF_8));
                sent.add(producer.send(new ProducerRecord<>(topic, null, tsBase + i * 1000L, "k" + i,
                        "v" + i + "-" + codec, headers)));
            }
            producer.flush();
            int failed = 0;
            for (int i = 0; i < count; i++) {
                try {
                    RecordMetadata md = sent.get(i).get(30, TimeUnit.SECONDS);
                    emit("sent", "i", i, "partition", md.partition(), "offset", md.offset(),
                            "timestamp", md.timestamp());
                } catch (ExecutionException e) {
                    failed++;
                    emit("sent", "i", i, "error", describe(e.getCause()));
                }
            }
            emit("produced", "count", count, "failed", failed);
        }
    }

    // ---------------------------------------------------------------- group consumer

    /**
     * Joins GROUP, reads until EXPECTED records arrived (then LINGER_AFTER_DONE_MS more, so
     * extra records would show), commits synchronously, prints the committed offsets, leaves.
     */
    static void groupConsume(String bootstrap, String topic, String group, int expected, String isolation)
            throws Exception {
        Properties p = consumerProps(bootstrap, group);
        p.put("isolation.level", isolation);
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(p)) {
            c.subscribe(List.of(topic), logRebalances("c0", null));
            int got = 0;
            long deadline = System.currentTimeMillis() + WAIT_MS_MAX;
            long doneAt = -1;
            while (System.currentTimeMillis() < deadline) {
                ConsumerRecords<String, String> records = c.poll(POLL);
                for (ConsumerRecord<String, String> r : records) {
                    emitRecord("record", "c0", r);
                    got++;
                }
                if (got >= expected && doneAt < 0) {
                    doneAt = System.currentTimeMillis();
                }
                if (doneAt >= 0 && System.currentTimeMillis() - doneAt >= LINGER_AFTER_DONE_MS) {
                    break;
                }
            }
            emit("consumed", "count", got);
            step("commit", () -> {
                c.commitSync(Duration.ofSeconds(15));
                Map<TopicPartition, OffsetAndMetadata> committed = c.committed(c.assignment(), Duration.ofSeconds(15));
                Map<String, Object> out = new TreeMap<>();
                for (var e : committed.entrySet()) {
                    out.put(Integer.toString(e.getKey().partition()), e.getValue() == null ? null : e.getValue().offset());
                }
                emit("commit", "committed", out, "generation", c.groupMetadata().generationId(),
                        "member_id_set", !c.groupMetadata().memberId().isEmpty());
            });
        }
    }

    // ---------------------------------------------------------------- offsets, assign, seek

    static void offsets(String bootstrap, String topic, int partitions, long tsQuery, int seekPartition,
                        long seekOffset, int readCount) throws Exception {
        Properties p = consumerProps(bootstrap, null);
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(p)) {
            List<TopicPartition> tps = new ArrayList<>();
            for (int i = 0; i < partitions; i++) {
                tps.add(new TopicPartition(topic, i));
            }
            step("beginning_offsets", () -> emit("beginning_offsets", "offsets",
                    byPartition(c.beginningOffsets(tps, Duration.ofSeconds(15)))));
            step("end_offsets", () -> emit("end_offsets", "offsets",
                    byPartition(c.endOffsets(tps, Duration.ofSeconds(15)))));
            step("offsets_for_times", () -> {
                Map<TopicPartition, Long> query = new HashMap<>();
                for (TopicPartition tp : tps) {
                    query.put(tp, tsQuery);
                }
                Map<String, Object> out = new TreeMap<>();
                for (var e : c.offsetsForTimes(query, Duration.ofSeconds(15)).entrySet()) {
                    OffsetAndTimestamp ot = e.getValue();
                    out.put(Integer.toString(e.getKey().partition()),
                            ot == null ? null : List.of(ot.offset(), ot.timestamp()));
                }
                emit("offsets_for_times", "offsets", out);
            });
            step("offsets_for_future_time", () -> {
                Map<TopicPartition, Long> query = new HashMap<>();
                for (TopicPartition tp : tps) {
                    query.put(tp, Long.MAX_VALUE / 2);
                }
                Map<String, Object> out = new TreeMap<>();
                for (var e : c.offsetsForTimes(query, Duration.ofSeconds(15)).entrySet()) {
                    out.put(Integer.toString(e.getKey().partition()),
                            e.getValue() == null ? null : e.getValue().offset());
                }
                emit("offsets_for_future_time", "offsets", out);
            });
            step("seek", () -> {
                TopicPartition tp = new TopicPartition(topic, seekPartition);
                c.assign(List.of(tp));
                c.seekToEnd(List.of(tp));
                long end = c.position(tp, Duration.ofSeconds(15));
                c.seekToBeginning(List.of(tp));
                long beginning = c.position(tp, Duration.ofSeconds(15));
                c.seek(tp, seekOffset);
                int got = 0;
                long deadline = System.currentTimeMillis() + WAIT_MS_MAX;
                while (got < readCount && System.currentTimeMillis() < deadline) {
                    for (ConsumerRecord<String, String> r : c.poll(POLL)) {
                        if (got < readCount) {
                            emitRecord("seek_record", "assign", r);
                        }
                        got++;
                    }
                }
                emit("seek", "position_end", end, "position_beginning", beginning, "read", got,
                        "position_after", c.position(tp, Duration.ofSeconds(15)));
            });
        }
    }

    // ---------------------------------------------------------------- two members, one group

    /** One consumer of a group, polling on its own thread until told to stop. */
    static final class Member implements Runnable {
        final String name;
        final KafkaConsumer<String, String> consumer;
        final AtomicInteger total;
        final AtomicBoolean stop;
        final List<Object> records = new ArrayList<>();
        final List<Object> assignments = new ArrayList<>();
        volatile Set<Integer> current = Set.of();
        volatile String error;

        Member(String name, Properties props, AtomicInteger total, AtomicBoolean stop) {
            this.name = name;
            this.consumer = new KafkaConsumer<>(props);
            this.total = total;
            this.stop = stop;
        }

        @Override
        public void run() {
            try {
                while (!stop.get()) {
                    for (ConsumerRecord<String, String> r : consumer.poll(POLL)) {
                        synchronized (records) {
                            records.add(List.of(r.partition(), r.offset(), r.value()));
                        }
                        total.incrementAndGet();
                    }
                }
                consumer.commitSync(Duration.ofSeconds(15));
            } catch (Throwable t) {
                error = describe(t);
                t.printStackTrace();
            } finally {
                consumer.close(org.apache.kafka.clients.consumer.CloseOptions.timeout(Duration.ofSeconds(10)));
            }
        }
    }

    /**
     * Two consumers of GROUP on their own threads over TOPIC. Each commits what it has read
     * when its partitions are revoked, the usual pattern, so a rebalance while records flow
     * must not make either read a record twice. Stops once EXPECTED records were read in all
     * and each member holds two partitions, plus LINGER_AFTER_DONE_MS to catch duplicates.
     */
    static void groupPair(String bootstrap, String topic, String group, int expected, String assignor)
            throws Exception {
        AtomicInteger total = new AtomicInteger();
        AtomicBoolean stop = new AtomicBoolean();
        Member[] members = new Member[2];
        Thread[] threads = new Thread[2];
        for (int i = 0; i < 2; i++) {
            Properties props = consumerProps(bootstrap, group);
            props.put("client.id", "strom-java-m" + i);
            props.put("partition.assignment.strategy", switch (assignor) {
                case "range" -> "org.apache.kafka.clients.consumer.RangeAssignor";
                case "cooperative-sticky" -> "org.apache.kafka.clients.consumer.CooperativeStickyAssignor";
                default -> throw new IllegalArgumentException("unknown assignor " + assignor);
            });
            members[i] = new Member("m" + i, props, total, stop);
            Member m = members[i];
            m.consumer.subscribe(List.of(topic), logRebalances(m.name, m));
            threads[i] = new Thread(m, "member-" + i);
        }
        for (Thread t : threads) {
            t.start();
        }
        long deadline = System.currentTimeMillis() + WAIT_MS_MAX;
        long doneAt = -1;
        while (System.currentTimeMillis() < deadline) {
            boolean split = members[0].current.size() == 2 && members[1].current.size() == 2;
            if (total.get() >= expected && split) {
                if (doneAt < 0) {
                    doneAt = System.currentTimeMillis();
                }
                if (System.currentTimeMillis() - doneAt >= LINGER_AFTER_DONE_MS) {
                    break;
                }
            } else {
                doneAt = -1;
            }
            if (members[0].error != null || members[1].error != null) {
                break;
            }
            Thread.sleep(50);
        }
        // What each member held when the run ended, before closing makes the group rebalance.
        List<Set<Integer>> finalAssignment = List.of(members[0].current, members[1].current);
        try (Admin admin = Admin.create(adminProps(bootstrap))) {
            step("describe_live_group", () -> emitGroupDescription("describe_live_group", admin, group));
        }
        stop.set(true);
        for (Thread t : threads) {
            t.join(20_000);
        }
        for (int i = 0; i < 2; i++) {
            Member m = members[i];
            synchronized (m.records) {
                emit("member", "name", m.name, "final_assignment", new TreeSet<>(finalAssignment.get(i)),
                        "assignments", m.assignments, "records", m.records, "error", m.error);
            }
        }
        emit("pair_done", "total", total.get());
    }

    // ---------------------------------------------------------------- topics by id

    /** Describe and delete a topic by its topic id (Metadata v10+, DeleteTopics v6). */
    static void adminTopicIds(String bootstrap, String topic) {
        try (Admin admin = Admin.create(adminProps(bootstrap))) {
            Uuid[] id = new Uuid[1];
            step("create", () -> {
                CreateTopicsResult r = admin.createTopics(List.of(new NewTopic(topic, 2, (short) 1)));
                id[0] = r.topicId(topic).get();
                emit("create", "topic_id", String.valueOf(id[0]));
            });
            step("describe_by_id", () -> {
                TopicDescription d = admin.describeTopics(TopicCollection.ofTopicIds(List.of(id[0])))
                        .allTopicIds().get().get(id[0]);
                emit("describe_by_id", "name", d.name(), "topic_id", String.valueOf(d.topicId()),
                        "partitions", d.partitions().size());
            });
            step("describe_unknown_id", () -> {
                try {
                    admin.describeTopics(TopicCollection.ofTopicIds(List.of(Uuid.randomUuid()))).allTopicIds().get();
                    emit("describe_unknown_id", "exception", null);
                } catch (ExecutionException e) {
                    emit("describe_unknown_id", "exception", e.getCause().getClass().getSimpleName());
                }
            });
            step("delete_by_id", () -> {
                admin.deleteTopics(TopicCollection.ofTopicIds(List.of(id[0]))).all().get();
                emit("delete_by_id", "listed_after", admin.listTopics().names().get().contains(topic));
            });
        }
    }

    // ---------------------------------------------------------------- the KIP-848 protocol

    /**
     * A consumer with group.protocol=consumer (KIP-848), which Strom does not support: the
     * client must get a clear error from poll, not hang or silently read nothing.
     */
    /**
     * Two KafkaConsumers with group.protocol=consumer (KIP-848) on TOPIC, polled in turn: the
     * first owns every partition, then the second joins and both own a disjoint share. Each
     * commits before it gives a partition up. Prints "split" with both assignments and what was
     * read, then the second leaves and "after_leave" shows the first owning everything; a
     * describe of the group at the end shows the consumer-protocol group.
     */
    static void consumerProtocol(String bootstrap, String topic, String group, int expected) throws Exception {
        Map<String, List<String>> events = new TreeMap<>();
        List<String> records = new ArrayList<>();
        try (KafkaConsumer<String, String> a = new KafkaConsumer<>(kip848Props(bootstrap, group));
             KafkaConsumer<String, String> b = new KafkaConsumer<>(kip848Props(bootstrap, group))) {
            a.subscribe(List.of(topic), committingListener(a, "a", events));
            long deadline = System.currentTimeMillis() + WAIT_MS_MAX;
            while (a.assignment().isEmpty() && System.currentTimeMillis() < deadline) {
                readInto(a, "a", records);
            }
            emit("first", "a", partitionNumbers(a.assignment()));
            b.subscribe(List.of(topic), committingListener(b, "b", events));
            while (System.currentTimeMillis() < deadline
                    && (records.size() < expected || a.assignment().isEmpty() || b.assignment().isEmpty()
                        || a.assignment().size() + b.assignment().size() < 4)) {
                readInto(a, "a", records);
                readInto(b, "b", records);
            }
            a.commitSync();
            b.commitSync();
            emit("split", "a", partitionNumbers(a.assignment()), "b", partitionNumbers(b.assignment()),
                    "records", records, "events", events);
            b.unsubscribe();
            while (System.currentTimeMillis() < deadline && a.assignment().size() < 4) {
                readInto(a, "a", records);
            }
            emit("after_leave", "a", partitionNumbers(a.assignment()), "events", events);
            try (Admin admin = Admin.create(common(bootstrap))) {
                emitGroupDescription("described", admin, group);
            }
        }
    }

    /**
     * Kafka 4's online migration: a classic KafkaConsumer owns all of TOPIC, then a
     * group.protocol=consumer one joins the same live group. Prints "migrated" with both
     * assignments once they split it, with everything each read.
     */
    static void consumerProtocolMigration(String bootstrap, String topic, String group, int expected) throws Exception {
        Map<String, List<String>> events = new TreeMap<>();
        List<String> records = new ArrayList<>();
        try (KafkaConsumer<String, String> classic = new KafkaConsumer<>(consumerProps(bootstrap, group));
             KafkaConsumer<String, String> modern = new KafkaConsumer<>(kip848Props(bootstrap, group))) {
            classic.subscribe(List.of(topic), committingListener(classic, "classic", events));
            long deadline = System.currentTimeMillis() + WAIT_MS_MAX;
            while (classic.assignment().size() < 4 && System.currentTimeMillis() < deadline) {
                readInto(classic, "classic", records);
            }
            emit("classic_alone", "classic", partitionNumbers(classic.assignment()));
            modern.subscribe(List.of(topic), committingListener(modern, "modern", events));
            while (System.currentTimeMillis() < deadline
                    && (records.size() < expected || classic.assignment().isEmpty() || modern.assignment().isEmpty()
                        || classic.assignment().size() + modern.assignment().size() < 4)) {
                readInto(classic, "classic", records);
                readInto(modern, "modern", records);
            }
            classic.commitSync();
            modern.commitSync();
            emit("migrated", "classic", partitionNumbers(classic.assignment()),
                    "modern", partitionNumbers(modern.assignment()), "records", records, "events", events);
            try (Admin admin = Admin.create(common(bootstrap))) {
                emitGroupDescription("described", admin, group);
            }
        }
    }

    /**
     * A group.protocol=consumer member subscribed by a broker-side regular expression
     * (SubscriptionPattern, RE2/J syntax): prints "reading" with the topics it was given once
     * it has read EXPECTED records, then keeps polling (and committing) until it is killed.
     */
    static void consumerProtocolRegex(String bootstrap, String regex, String group, int expected) {
        List<String> records = new ArrayList<>();
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(kip848Props(bootstrap, group))) {
            c.subscribe(new SubscriptionPattern(regex));
            long deadline = System.currentTimeMillis() + WAIT_MS_MAX;
            while (records.size() < expected && System.currentTimeMillis() < deadline) {
                readInto(c, "regex", records);
            }
            c.commitSync();
            Set<String> topics = new TreeSet<>();
            c.assignment().forEach(tp -> topics.add(tp.topic()));
            emit("reading", "topics", new ArrayList<>(topics), "records", records.size());
            while (true) {
                readInto(c, "regex", records);
                c.commitSync();
            }
        }
    }

    static Properties kip848Props(String bootstrap, String group) {
        Properties p = consumerProps(bootstrap, group);
        p.put("group.protocol", "consumer");
        // Not allowed with the consumer protocol: the broker owns session and heartbeat timing.
        p.remove("session.timeout.ms");
        p.remove("heartbeat.interval.ms");
        return p;
    }

    static ConsumerRebalanceListener committingListener(KafkaConsumer<String, String> c, String name,
                                                        Map<String, List<String>> events) {
        return new ConsumerRebalanceListener() {
            @Override
            public void onPartitionsRevoked(Collection<TopicPartition> parts) {
                if (!parts.isEmpty()) {
                    c.commitSync();
                    events.computeIfAbsent(name + "_revoked", k -> new ArrayList<>()).add(partitionNumbers(parts).toString());
                }
            }

            @Override
            public void onPartitionsAssigned(Collection<TopicPartition> parts) {
                if (!parts.isEmpty()) {
                    events.computeIfAbsent(name + "_assigned", k -> new ArrayList<>()).add(partitionNumbers(parts).toString());
                }
            }
        };
    }

    /** One poll of C; each record as "name:partition:offset:key:value". */
    static void readInto(KafkaConsumer<String, String> c, String name, List<String> out) {
        for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(100))) {
            out.add(name + ":" + r.partition() + ":" + r.offset() + ":" + r.key() + ":" + r.value());
        }
    }

    // ---------------------------------------------------------------- transactions

    /**
     * A transactional producer, which Strom refuses (README: no transactions): initTransactions
     * must fail fast with an error that ends the producer, not wait out max.block.ms.
     */
    /**
     * A transactional producer on partition 0 of TOPIC: commit three records, abort two (sent
     * and flushed first, so they reach the log), commit one more; then what a read_committed
     * and a read_uncommitted consumer each see.
     */
    static void transactional(String bootstrap, String topic) {
        Properties p = common(bootstrap);
        p.put("transactional.id", "strom-java-tx");
        p.put("max.block.ms", "15000");
        p.put("key.serializer", StringSerializer.class.getName());
        p.put("value.serializer", StringSerializer.class.getName());
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
            step("init_transactions", () -> {
                producer.initTransactions();
                emit("init_transactions", "exception", null);
            });
            step("transactions", () -> {
                producer.beginTransaction();
                for (int i = 0; i < 3; i++) {
                    producer.send(new ProducerRecord<>(topic, 0, "k", "commit-" + i));
                }
                producer.commitTransaction();
                producer.beginTransaction();
                for (int i = 0; i < 2; i++) {
                    producer.send(new ProducerRecord<>(topic, 0, "k", "abort-" + i));
                }
                producer.flush();
                producer.abortTransaction();
                producer.beginTransaction();
                producer.send(new ProducerRecord<>(topic, 0, "k", "commit-3"));
                producer.commitTransaction();
                emit("transactions", "committed", 2, "aborted", 1);
            });
        }
        for (String isolation : List.of("read_committed", "read_uncommitted")) {
            step("read_" + isolation, () -> {
                Properties c = consumerProps(bootstrap, null);
                c.put("isolation.level", isolation);
                try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(c)) {
                    TopicPartition tp = new TopicPartition(topic, 0);
                    consumer.assign(List.of(tp));
                    consumer.seekToBeginning(List.of(tp));
                    List<String> values = new ArrayList<>();
                    long deadline = System.currentTimeMillis() + 8_000;
                    while (System.currentTimeMillis() < deadline) {
                        for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(200))) {
                            values.add(r.value());
                        }
                        if (consumer.position(tp) >= consumer.endOffsets(List.of(tp)).get(tp) && !values.isEmpty()) {
                            break;
                        }
                    }
                    emit("read", "isolation", isolation, "values", values, "position", consumer.position(tp));
                }
            });
        }
    }

    /**
     * The exactly-once loop of Kafka Streams and Flink, by hand: read_committed input, output
     * and input offsets committed in one transaction per poll. A kill -9 at any moment leaves
     * an open transaction that the next instance's initTransactions aborts (same id).
     */
    static void txnCopy(String bootstrap, String in, String out, String group, String txnId, long idleExitMs,
                        long paceMs) throws InterruptedException {
        Properties c = consumerProps(bootstrap, group);
        c.put("isolation.level", "read_committed");
        c.put("max.poll.records", "10");
        c.put("session.timeout.ms", "6000");
        Properties p = common(bootstrap);
        p.put("transactional.id", txnId);
        p.put("transaction.timeout.ms", "10000");
        p.put("delivery.timeout.ms", "30000");
        p.put("max.block.ms", "30000");
        p.put("key.serializer", StringSerializer.class.getName());
        p.put("value.serializer", StringSerializer.class.getName());
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(c);
             KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
            producer.initTransactions();
            consumer.subscribe(List.of(in));
            emit("started");
            long copied = 0;
            int transactions = 0;
            long idleSince = System.currentTimeMillis();
            while (System.currentTimeMillis() - idleSince < idleExitMs || consumer.assignment().isEmpty()) {
                ConsumerRecords<String, String> records = consumer.poll(POLL);
                if (records.isEmpty()) {
                    continue;
                }
                idleSince = System.currentTimeMillis();
                producer.beginTransaction();
                Map<TopicPartition, OffsetAndMetadata> offsets = new HashMap<>();
                for (ConsumerRecord<String, String> r : records) {
                    producer.send(new ProducerRecord<>(out, r.partition(), r.key(), "copy-" + r.value()));
                    offsets.put(new TopicPartition(r.topic(), r.partition()), new OffsetAndMetadata(r.offset() + 1));
                }
                producer.sendOffsetsToTransaction(offsets, consumer.groupMetadata());
                producer.commitTransaction();
                copied += records.count();
                if (transactions++ == 0) {
                    emit("copying", "records", records.count());
                }
                Thread.sleep(paceMs);
            }
            emit("done", "copied", copied, "transactions", transactions);
        }
    }

    // ---------------------------------------------------------------- group and record admin

    /**
     * The Admin calls around consumer groups and records, on a group that has committed
     * offsets for TOPIC (3 partitions) and has no members left.
     */
    static void groupAdmin(String bootstrap, String topic, String group) {
        TopicPartition p0 = new TopicPartition(topic, 0);
        TopicPartition p1 = new TopicPartition(topic, 1);
        TopicPartition p2 = new TopicPartition(topic, 2);
        try (Admin admin = Admin.create(adminProps(bootstrap))) {
            step("list_groups", () -> {
                List<Object> groups = new ArrayList<>();
                for (GroupListing g : admin.listGroups().all().get()) {
                    groups.add(obj("group", g.groupId(), "protocol", g.protocol(),
                            "type", g.type().map(Enum::name).orElse(null),
                            "state", g.groupState().map(Enum::name).orElse(null)));
                }
                emit("list_groups", "groups", groups);
            });
            step("describe_group", () -> emitGroupDescription("describe_group", admin, group));
            step("group_offsets", () -> emit("group_offsets", "offsets", groupOffsets(admin, group)));
            step("alter_group_offsets", () -> {
                admin.alterConsumerGroupOffsets(group, Map.of(p0, new OffsetAndMetadata(1, "from-admin")))
                        .all().get();
                emit("alter_group_offsets", "offsets", groupOffsets(admin, group));
            });
            step("delete_group_offsets", () -> {
                admin.deleteConsumerGroupOffsets(group, Set.of(p1)).all().get();
                emit("delete_group_offsets", "offsets", groupOffsets(admin, group));
            });
            step("delete_records", () -> {
                long low = admin.deleteRecords(Map.of(p2, RecordsToDelete.beforeOffset(3)))
                        .lowWatermarks().get(p2).get().lowWatermark();
                emit("delete_records", "low_watermark", low);
            });
            step("list_offsets", () -> {
                Map<String, Object> out = new TreeMap<>();
                for (var spec : List.of(Map.entry("earliest", OffsetSpec.earliest()),
                        Map.entry("latest", OffsetSpec.latest()),
                        Map.entry("max_timestamp", OffsetSpec.maxTimestamp()))) {
                    var r = admin.listOffsets(Map.of(p2, spec.getValue())).partitionResult(p2).get();
                    out.put(spec.getKey(), List.of(r.offset(), r.timestamp()));
                }
                emit("list_offsets", "partition", 2, "offsets", out);
            });
            ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, topic);
            step("incremental_alter_configs", () -> {
                admin.incrementalAlterConfigs(Map.of(res, List.of(
                        new AlterConfigOp(new ConfigEntry("retention.ms", "7200000"), AlterConfigOp.OpType.SET))))
                        .all().get();
                ConfigEntry set = admin.describeConfigs(List.of(res)).all().get().get(res).get("retention.ms");
                admin.incrementalAlterConfigs(Map.of(res, List.of(
                        new AlterConfigOp(new ConfigEntry("retention.ms", ""), AlterConfigOp.OpType.DELETE))))
                        .all().get();
                ConfigEntry deleted = admin.describeConfigs(List.of(res)).all().get().get(res).get("retention.ms");
                emit("incremental_alter_configs", "after_set", List.of(set.value(), set.source().name()),
                        "after_delete", List.of(deleted.value(), deleted.source().name()));
            });
            step("invalid_config", () -> {
                try {
                    admin.incrementalAlterConfigs(Map.of(res, List.of(
                            new AlterConfigOp(new ConfigEntry("no.such.config", "1"), AlterConfigOp.OpType.SET))))
                            .all().get();
                    emit("invalid_config", "exception", null);
                } catch (ExecutionException e) {
                    emit("invalid_config", "exception", e.getCause().getClass().getSimpleName());
                }
            });
            step("broker_configs", () -> {
                ConfigResource broker = new ConfigResource(ConfigResource.Type.BROKER, "1");
                Config cfg = admin.describeConfigs(List.of(broker)).all().get().get(broker);
                Map<String, Object> entries = new TreeMap<>();
                for (ConfigEntry e : cfg.entries()) {
                    entries.put(e.name(), e.value());
                }
                emit("broker_configs", "entries", entries);
            });
            step("delete_group", () -> {
                admin.deleteConsumerGroups(List.of(group)).all().get();
                boolean listed = admin.listGroups().all().get().stream().anyMatch(g -> g.groupId().equals(group));
                emit("delete_group", "listed_after", listed);
            });
        }
    }

    static Map<String, Object> groupOffsets(Admin admin, String group) throws Exception {
        Map<String, Object> out = new TreeMap<>();
        for (var e : admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get().entrySet()) {
            OffsetAndMetadata om = e.getValue();
            out.put(Integer.toString(e.getKey().partition()),
                    om == null ? null : List.of(om.offset(), om.metadata()));
        }
        return out;
    }

    static void emitGroupDescription(String event, Admin admin, String group) throws Exception {
        ConsumerGroupDescription d = admin.describeConsumerGroups(List.of(group)).all().get().get(group);
        List<Object> members = new ArrayList<>();
        for (MemberDescription m : d.members()) {
            members.add(obj("client_id", m.clientId(), "member_id_set", !m.consumerId().isEmpty(),
                    "partitions", partitionNumbers(m.assignment().topicPartitions())));
        }
        emit(event, "group", d.groupId(), "state", d.groupState() == null ? null : d.groupState().name(),
                "type", d.type() == null ? null : d.type().name(), "assignor", d.partitionAssignor(),
                "simple", d.isSimpleConsumerGroup(), "coordinator", d.coordinator() == null ? null : d.coordinator().id(),
                "members", members);
    }

    // ---------------------------------------------------------------- idempotence across a restart

    /**
     * One idempotent producer sends COUNT_BEFORE records, waits for a line on stdin (the test
     * restarts the broker meanwhile), then sends COUNT_AFTER more. The producer keeps its
     * producer id and sequence numbers across the restart, as it would across a Kafka broker
     * bounce, so the broker must still know them, or answer in a way the client recovers from.
     */
    static void produceAcrossRestart(String bootstrap, String topic, int before, int after) throws Exception {
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(restartProducerProps(bootstrap))) {
            sendPhase(producer, topic, "before", 0, before);
            emit("waiting");
            String line = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8)).readLine();
            emit("resumed", "line", line);
            sendPhase(producer, topic, "after", before, after);
        }
    }

    /**
     * One idempotent producer sends COUNT records to partition 0, one every PACE_MS, and says
     * "started" once the first ten are acknowledged; the test kills the broker with SIGKILL
     * and starts it again meanwhile. Sends in flight at the crash are retried by the client
     * with their original sequence numbers, so the log must end up with each record once, in
     * order: what the broker had written before the crash is answered as a duplicate, not
     * appended again.
     */
    static void produceThroughCrash(String bootstrap, String topic, int count, long paceMs) throws Exception {
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(restartProducerProps(bootstrap))) {
            List<Future<RecordMetadata>> sent = new ArrayList<>();
            for (int i = 0; i < count; i++) {
                sent.add(producer.send(new ProducerRecord<>(topic, 0, "k" + i, "v" + i)));
                if (i == 9) {
                    for (Future<RecordMetadata> f : sent) {
                        f.get(30, TimeUnit.SECONDS);
                    }
                    emit("started");
                }
                Thread.sleep(paceMs);
            }
            producer.flush();
            collect(sent, "through", 0);
        }
    }

    static Properties restartProducerProps(String bootstrap) {
        Properties p = common(bootstrap);
        p.put("acks", "all");
        p.put("linger.ms", "5");
        p.put("delivery.timeout.ms", "40000");
        p.put("max.block.ms", "20000");
        p.put("key.serializer", StringSerializer.class.getName());
        p.put("value.serializer", StringSerializer.class.getName());
        return p;
    }

    static void sendPhase(KafkaProducer<String, String> producer, String topic, String phase, int first, int count)
            throws Exception {
        List<Future<RecordMetadata>> sent = new ArrayList<>();
        for (int i = first; i < first + count; i++) {
            sent.add(producer.send(new ProducerRecord<>(topic, 0, "k" + i, "v" + i)));
        }
        producer.flush();
        collect(sent, phase, first);
    }

    /** One "sent" line per send (record FIRST + j), then "phase_done" with the failure count. */
    static void collect(List<Future<RecordMetadata>> sent, String phase, int first) throws Exception {
        int failed = 0;
        for (int j = 0; j < sent.size(); j++) {
            try {
                RecordMetadata md = sent.get(j).get(45, TimeUnit.SECONDS);
                emit("sent", "phase", phase, "i", first + j, "partition", md.partition(), "offset", md.offset());
            } catch (ExecutionException e) {
                failed++;
                emit("sent", "phase", phase, "i", first + j, "error", describe(e.getCause()));
            }
        }
        emit("phase_done", "phase", phase, "failed", failed);
    }

    // ---------------------------------------------------------------- helpers

    static ConsumerRebalanceListener logRebalances(String name, Member member) {
        return new ConsumerRebalanceListener() {
            @Override
            public void onPartitionsRevoked(Collection<TopicPartition> partitions) {
                emit("revoked", "member", name, "partitions", partitionNumbers(partitions));
                if (member != null) {
                    // Commit what was read so that the next owner resumes after it.
                    member.consumer.commitSync(Duration.ofSeconds(15));
                    Set<Integer> left = new TreeSet<>(member.current);
                    left.removeAll(partitionNumbers(partitions));
                    member.current = Set.copyOf(left);
                }
            }

            @Override
            public void onPartitionsAssigned(Collection<TopicPartition> partitions) {
                // The eager assignors hand over the whole assignment here; the cooperative one
                // only what was added, so the member's holding is read from the consumer.
                emit("assigned", "member", name, "partitions", partitionNumbers(partitions));
                if (member != null) {
                    List<Integer> holding = partitionNumbers(member.consumer.assignment());
                    member.current = Set.copyOf(holding);
                    synchronized (member.records) {
                        member.assignments.add(holding);
                    }
                }
            }
        };
    }

    // ---------------------------------------------------------------- SASL_SSL with SCRAM

    /** Where and how to connect over SASL_SSL: the listener, the CA that signed the broker's
     *  certificate (PEM), and the SCRAM mechanism. */
    record Secure(String bootstrap, String caPem, String mechanism) {
        /** The common client settings, logged in as USER with PASSWORD. */
        Properties props(String user, String password) {
            Properties p = common(bootstrap);
            p.put("security.protocol", "SASL_SSL");
            p.put("sasl.mechanism", mechanism);
            p.put("sasl.jaas.config", "org.apache.kafka.common.security.scram.ScramLoginModule required"
                    + " username=\"" + user + "\" password=\"" + password + "\";");
            p.put("ssl.truststore.type", "PEM");
            p.put("ssl.truststore.location", caPem);
            // ssl.endpoint.identification.algorithm stays "https": the certificate names 127.0.0.1.
            return p;
        }

        Properties producer(String user, String password) {
            Properties p = props(user, password);
            p.put("acks", "all");
            p.put("linger.ms", "5");
            p.put("delivery.timeout.ms", "20000");
            p.put("max.block.ms", "10000");
            p.put("key.serializer", StringSerializer.class.getName());
            p.put("value.serializer", StringSerializer.class.getName());
            return p;
        }
    }

    static final int SASL_SSL_RECORDS = 3;
    static final int SASL_SSL_ITERATIONS = 8192;

    static void saslSsl(Secure secure, String adminUser, String adminPassword, String user, String password,
            String topic, String locked, String group) throws Exception {
        String principal = "User:" + user;
        try (Admin admin = Admin.create(secure.props(adminUser, adminPassword))) {
            step("create_topics", () -> {
                admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1), new NewTopic(locked, 1, (short) 1)))
                        .all().get();
                emit("create_topics", "names", new TreeSet<>(admin.listTopics().names().get()));
            });

            step("alter_scram", () -> {
                ScramMechanism m = ScramMechanism.fromMechanismName(secure.mechanism());
                admin.alterUserScramCredentials(List.of(new UserScramCredentialUpsertion(user,
                        new ScramCredentialInfo(m, SASL_SSL_ITERATIONS), password))).all().get();
                UserScramCredentialsDescription d = admin.describeUserScramCredentials(List.of(user))
                        .description(user).get();
                List<Object> infos = new ArrayList<>();
                for (ScramCredentialInfo info : d.credentialInfos()) {
                    infos.add(obj("mechanism", info.mechanism().mechanismName(), "iterations", info.iterations()));
                }
                emit("alter_scram", "user", d.name(), "credentials", infos);
            });

            List<AclBinding> bindings = List.of(
                    allow(ResourceType.TOPIC, topic, principal, AclOperation.WRITE),
                    allow(ResourceType.TOPIC, topic, principal, AclOperation.READ),
                    allow(ResourceType.GROUP, group, principal, AclOperation.READ));
            AclBindingFilter byPrincipal = new AclBindingFilter(ResourcePatternFilter.ANY,
                    new AccessControlEntryFilter(principal, null, AclOperation.ANY, AclPermissionType.ANY));

            step("create_acls", () -> {
                admin.createAcls(bindings).all().get();
                emit("create_acls", "created", aclList(bindings));
            });
            step("describe_acls", () -> emit("describe_acls", "bindings",
                    aclList(admin.describeAcls(byPrincipal).values().get())));

            // The new user's credentials: a producer and a consumer log in with them.
            step("produce", () -> {
                try (KafkaProducer<String, String> producer = new KafkaProducer<>(secure.producer(user, password))) {
                    List<Future<RecordMetadata>> sent = new ArrayList<>();
                    for (int i = 0; i < SASL_SSL_RECORDS; i++) {
                        RecordHeaders headers = new RecordHeaders();
                        headers.add("i", Integer.toString(i).getBytes(StandardCharsets.UTF_8));
                        headers.add("via", "sasl_ssl".getBytes(StandardCharsets.UTF_8));
                        sent.add(producer.send(new ProducerRecord<>(topic, null, "k" + i, "v" + i, headers)));
                    }
                    producer.flush();
                    for (int i = 0; i < SASL_SSL_RECORDS; i++) {
                        RecordMetadata md = sent.get(i).get(20, TimeUnit.SECONDS);
                        emit("sent", "i", i, "partition", md.partition(), "offset", md.offset());
                    }
                }
            });

            step("consume", () -> {
                Properties p = secure.props(user, password);
                p.putAll(consumerProps(secure.bootstrap(), group));
                try (KafkaConsumer<String, String> c = new KafkaConsumer<>(p)) {
                    c.subscribe(List.of(topic));
                    int got = 0;
                    long deadline = System.currentTimeMillis() + WAIT_MS_MAX;
                    while (got < SASL_SSL_RECORDS && System.currentTimeMillis() < deadline) {
                        for (ConsumerRecord<String, String> r : c.poll(POLL)) {
                            emitRecord("record", user, r);
                            got++;
                        }
                    }
                    c.commitSync(Duration.ofSeconds(15));
                    OffsetAndMetadata committed = c.committed(Set.of(new TopicPartition(topic, 0)),
                            Duration.ofSeconds(15)).get(new TopicPartition(topic, 0));
                    emit("consumed", "count", got, "committed", committed == null ? null : committed.offset());
                }
            });

            // Refusals: the topic without an ACL, then a wrong password.
            step("denied", () -> emit("denied", "outcome", produceOutcome(secure.producer(user, password), locked)));
            step("wrong_password", () -> emit("wrong_password", "outcome",
                    produceOutcome(secure.producer(user, password + "-wrong"), topic)));

            step("delete_acls", () -> {
                Collection<AclBinding> deleted = admin.deleteAcls(List.of(byPrincipal)).all().get();
                emit("delete_acls", "deleted", aclList(deleted));
            });
            step("describe_acls_after_delete", () -> emit("describe_acls_after_delete", "bindings",
                    aclList(admin.describeAcls(byPrincipal).values().get())));
        }
    }

    static AclBinding allow(ResourceType type, String name, String principal, AclOperation op) {
        return new AclBinding(new ResourcePattern(type, name, PatternType.LITERAL),
                new AccessControlEntry(principal, "*", op, AclPermissionType.ALLOW));
    }

    /** The bindings as sorted strings, so that two sets compare however the broker orders them. */
    static List<String> aclList(Collection<AclBinding> bindings) {
        List<String> out = new ArrayList<>();
        for (AclBinding b : bindings) {
            out.add(String.join(" ", b.pattern().resourceType().name(), b.pattern().name(),
                    b.pattern().patternType().name(), b.entry().principal(), b.entry().host(),
                    b.entry().operation().name(), b.entry().permissionType().name()));
        }
        out.sort(null);
        return out;
    }

    /** One record sent with these settings: its offset, or the class and message of the failure
     *  (thrown by send() itself, or by its future). */
    static Map<String, Object> produceOutcome(Properties props, String topic) {
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(props)) {
            RecordMetadata md = producer.send(new ProducerRecord<>(topic, "k", "v")).get(20, TimeUnit.SECONDS);
            return obj("offset", md.offset());
        } catch (Exception e) {
            Throwable cause = e instanceof ExecutionException && e.getCause() != null ? e.getCause() : e;
            return obj("exception", cause.getClass().getName(), "message", cause.getMessage());
        }
    }

    static List<Integer> partitionNumbers(Collection<TopicPartition> partitions) {
        return partitions.stream().map(TopicPartition::partition).sorted().toList();
    }

    static void emitRecord(String event, String who, ConsumerRecord<String, String> r) {
        Map<String, Object> headers = new LinkedHashMap<>();
        for (Header h : r.headers()) {
            headers.put(h.key(), h.value() == null ? null : new String(h.value(), StandardCharsets.UTF_8));
        }
        emit(event, "member", who, "partition", r.partition(), "offset", r.offset(), "key", r.key(),
                "value", r.value(), "timestamp", r.timestamp(), "timestamp_type", r.timestampType().name(),
                "headers", headers, "leader_epoch", r.leaderEpoch().orElse(null));
    }

    static Map<String, Object> byPartition(Map<TopicPartition, Long> offsets) {
        Map<String, Object> out = new TreeMap<>();
        for (var e : offsets.entrySet()) {
            out.put(Integer.toString(e.getKey().partition()), e.getValue());
        }
        return out;
    }

    static Properties common(String bootstrap) {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("request.timeout.ms", "10000");
        p.put("default.api.timeout.ms", "15000");
        p.put("reconnect.backoff.ms", "50");
        p.put("reconnect.backoff.max.ms", "500");
        p.put("retry.backoff.ms", "100");
        return p;
    }

    static Properties adminProps(String bootstrap) {
        return common(bootstrap);
    }

    /** Group consumer settings; GROUP null means a consumer for assign() only. */
    static Properties consumerProps(String bootstrap, String group) {
        Properties p = common(bootstrap);
        if (group != null) {
            p.put("group.id", group);
        }
        // group.protocol stays at its default, which is the classic protocol in 4.x.
        p.put("enable.auto.commit", "false");
        p.put("auto.offset.reset", "earliest");
        // The broker's group.min.session.timeout.ms is 6000.
        p.put("session.timeout.ms", "10000");
        p.put("heartbeat.interval.ms", "1000");
        p.put("key.deserializer", StringDeserializer.class.getName());
        p.put("value.deserializer", StringDeserializer.class.getName());
        return p;
    }

    interface Step {
        void run() throws Exception;
    }

    /** Runs one step; a failure becomes an {"event": NAME, "error": ...} line. */
    static void step(String name, Step s) {
        try {
            s.run();
        } catch (Throwable t) {
            Throwable cause = t instanceof ExecutionException && t.getCause() != null ? t.getCause() : t;
            emit(name, "error", describe(cause));
            cause.printStackTrace();
        }
    }

    static String describe(Throwable t) {
        return t.getClass().getName() + ": " + t.getMessage();
    }

    static Map<String, Object> obj(Object... kv) {
        Map<String, Object> m = new LinkedHashMap<>();
        for (int i = 0; i + 1 < kv.length; i += 2) {
            m.put((String) kv[i], kv[i + 1]);
        }
        return m;
    }

    static synchronized void emit(String event, Object... kv) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("event", event);
        m.putAll(obj(kv));
        StringBuilder sb = new StringBuilder();
        json(sb, m);
        System.out.println(sb);
        System.out.flush();
    }

    static void json(StringBuilder sb, Object v) {
        if (v == null) {
            sb.append("null");
        } else if (v instanceof String s) {
            sb.append('"');
            for (int i = 0; i < s.length(); i++) {
                char ch = s.charAt(i);
                switch (ch) {
                    case '"' -> sb.append("\\\"");
                    case '\\' -> sb.append("\\\\");
                    case '\n' -> sb.append("\\n");
                    case '\r' -> sb.append("\\r");
                    case '\t' -> sb.append("\\t");
                    default -> {
                        if (ch < 0x20) {
                            sb.append(String.format("\\u%04x", (int) ch));
                        } else {
                            sb.append(ch);
                        }
                    }
                }
            }
            sb.append('"');
        } else if (v instanceof Number || v instanceof Boolean) {
            sb.append(v);
        } else if (v instanceof Map<?, ?> m) {
            sb.append('{');
            boolean first = true;
            for (var e : m.entrySet()) {
                if (!first) {
                    sb.append(',');
                }
                first = false;
                json(sb, String.valueOf(e.getKey()));
                sb.append(':');
                json(sb, e.getValue());
            }
            sb.append('}');
        } else if (v instanceof Collection<?> c) {
            sb.append('[');
            boolean first = true;
            for (Object o : c) {
                if (!first) {
                    sb.append(',');
                }
                first = false;
                json(sb, o);
            }
            sb.append(']');
        } else {
            json(sb, v.toString());
        }
    }
}
