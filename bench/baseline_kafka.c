/* bench/baseline_kafka.c - BASELINE (not dstream): word count of a Kafka topic in plain C on
 * one core with librdkafka: assign every partition from its beginning (no group, no commits),
 * copy each message into an arena, split it on whitespace and count each word in the shared
 * open-addressing hash table. The time runs from the first message to the last.
 *   baseline_kafka BROKERS TOPIC PARTITIONS MESSAGES [FIRST LAST]
 * FIRST LAST: only partitions FIRST to LAST - 1, which hold MESSAGES (bench/run's ceiling: two
 * of these at once, each with half the partitions). */
#include <librdkafka/rdkafka.h>

#include "baseline.h"

int main(int argc, char **argv) {
  if (argc != 5 && argc != 7) bl_die("usage: baseline_kafka BROKERS TOPIC PARTITIONS MESSAGES [FIRST LAST]");
  const char *topic = argv[2];
  int nparts = atoi(argv[3]);
  int first = argc == 7 ? atoi(argv[5]) : 0, last = argc == 7 ? atoi(argv[6]) : nparts;
  if (first < 0 || last > nparts || first >= last) bl_die("FIRST LAST: a range of the partitions");
  long long want = atoll(argv[4]);
  char err[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  if (rd_kafka_conf_set(conf, "bootstrap.servers", argv[1], err, sizeof err) ||
      rd_kafka_conf_set(conf, "group.id", "baseline-kafka", err, sizeof err) ||
      rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof err) ||
      /* As dstream's source does: librdkafka before 2.2 stops fetching a partition for a
       * second once its queue holds queued.min.messages (100000); with the default, this
       * baseline waited out that second (8 M words in 24 partitions: 4.1 s, 1.4 s with it). */
      rd_kafka_conf_set(conf, "queued.min.messages", "1000000", err, sizeof err))
    bl_die(err);
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
  if (!rk) bl_die(err);
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(nparts);
  for (int p = first; p < last; p++)
    rd_kafka_topic_partition_list_add(l, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
  if (rd_kafka_assign(rk, l)) bl_die("assign failed");
  rd_kafka_topic_partition_list_destroy(l);

  size_t cap = 1 << 26, used = 0;
  char *arena = malloc(cap);
  if (!arena) bl_die("out of memory");
  bl_map m;
  bl_map_init(&m, 1 << 16);
  long long messages = 0, words = 0;
  double t0 = 0, c0 = 0, deadline = bl_now() + 300;
  while (messages < want) {
    if (bl_now() > deadline) bl_die("timed out waiting for the messages");
    rd_kafka_message_t *msg = rd_kafka_consumer_poll(rk, 100);
    if (!msg) continue;
    if (msg->err) {
      rd_kafka_message_destroy(msg);
      continue;
    }
    if (messages == 0) t0 = bl_now(), c0 = bl_cpu();
    messages++;
    if (used + msg->len > cap) { /* a new arena: the map's keys point into the old ones */
      cap = msg->len > (1u << 26) ? msg->len : (1u << 26);
      arena = malloc(cap);
      if (!arena) bl_die("out of memory");
      used = 0;
    }
    const char *text = arena + used;
    memcpy(arena + used, msg->payload, msg->len);
    used += msg->len;
    size_t len = msg->len;
    rd_kafka_message_destroy(msg);
    words += bl_count_words(&m, text, len);
  }
  double secs = bl_now() - t0, cpu = bl_cpu() - c0;
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  bl_result("workload=kafka_wordcount impl=c records=%lld words=%lld distinct=%zu secs=%.4f cpu=%.4f\n",
            messages, words, m.n, secs, cpu);
  return 0;
}
