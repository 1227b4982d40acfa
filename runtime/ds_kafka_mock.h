/* ds_kafka_mock.h - an embedded Kafka cluster: librdkafka's mock brokers on 127.0.0.1.
 *
 * The mock speaks the Kafka protocol (produce, fetch, consumer groups, offset commits,
 * idempotent and transactional producers) from threads of its own, so any client (kcat,
 * dstream's consumers and producers) can use it through its bootstrap address. It keeps
 * everything in memory and ends with the cluster. See docs/guide.md ("The embedded broker")
 * for what it does not do. The cluster owns its librdkafka handle; ds_kafka_mock_free ends it. */
#ifndef DS_KAFKA_MOCK_H
#define DS_KAFKA_MOCK_H

#include <stddef.h>

typedef struct ds_kafka_mock ds_kafka_mock;

/* Starts a cluster of `brokers` brokers (ids 1..brokers), listening on 127.0.0.1. */
int ds_kafka_mock_new(int brokers, ds_kafka_mock **out, char *err, size_t errlen);
/* "127.0.0.1:port,127.0.0.1:port,...": valid until the cluster is freed. */
const char *ds_kafka_mock_bootstrap(ds_kafka_mock *m);
int ds_kafka_mock_brokers(ds_kafka_mock *m);
/* Creates a topic (replicated on up to 3 brokers); partition p is led by broker
 * 1 + p % brokers. */
int ds_kafka_mock_topic_create(ds_kafka_mock *m, const char *topic, int partitions, char *err,
                               size_t errlen);
/* Makes the metadata of `topic` carry a Kafka error code (3, UNKNOWN_TOPIC_OR_PART: clients
 * see no such topic), or none again (0). A topic not created yet is created (4 partitions). */
int ds_kafka_mock_topic_error(ds_kafka_mock *m, const char *topic, int code, char *err,
                              size_t errlen);
/* Disconnects a broker and refuses connections (id -1: every broker), or lets it serve again.
 * Partition leadership does not move. */
int ds_kafka_mock_broker_down(ds_kafka_mock *m, int id, char *err, size_t errlen);
int ds_kafka_mock_broker_up(ds_kafka_mock *m, int id, char *err, size_t errlen);
void ds_kafka_mock_free(ds_kafka_mock *m);

/* `dstream kafka-mock [--brokers N] [TOPIC:PARTITIONS ...]`: runs a cluster until SIGINT or
 * SIGTERM, printing its bootstrap address on the first line of standard output. Commands on
 * standard input, one per line: "down ID", "up ID", "topic NAME PARTITIONS", "quit".
 * argv[0] is "kafka-mock". Returns the process exit status. */
int ds_kafka_mock_main(int argc, char **argv);

#endif
