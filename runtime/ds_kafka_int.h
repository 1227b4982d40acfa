/* ds_kafka_int.h - what the Kafka files (ds_kafka_source.c, ds_kafka_producer.c,
 * ds_kafka_admin.c, ds_kafka_positions.c) share, and no other module uses: defined in
 * ds_kafka_admin.c unless said. Any thread. */
#ifndef DS_KAFKA_INT_H
#define DS_KAFKA_INT_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>

#include "ds_kafka.h"

/* printf into err (errlen bytes; nothing when err is NULL). */
__attribute__((format(printf, 3, 4))) void ds_kafka__set_err(char *err, size_t errlen,
                                                             const char *fmt, ...);
/* A configuration with dstream's defaults, then the user's properties on top; NULL and err on
 * an unknown property or value. librdkafka's log lines go to ds_log. */
rd_kafka_conf_t *ds_kafka__conf(const char *brokers, const ds_kafka_kv *defaults, int ndefaults,
                                const ds_kafka_kv *conf, int nconf, char *err, size_t errlen);
/* rd_kafka_new(type, c), which takes c on success; on failure c is destroyed and err says
 * what could not be made (`what`: "consumer", "producer", "client"). */
rd_kafka_t *ds_kafka__client(rd_kafka_type_t type, rd_kafka_conf_t *c, const char *what,
                             char *err, size_t errlen);
/* Seconds on the monotonic clock. */
double ds_kafka__now_s(void);
/* A partition list holding the offsets (rd_kafka_topic_partition_list_destroy it). */
rd_kafka_topic_partition_list_t *ds_kafka__offset_list(const ds_kafka_offset *o, int n);

/* Commits l (not taken) with rk and waits timeout_ms at most for the answer: rd_kafka_commit(sync)
 * waits as long as librdkafka retries, minutes with the brokers gone (issue 15). The answer
 * goes to a queue of its own, dropped with a late answer. Returns the first error
 * (RD_KAFKA_RESP_ERR__TIMED_OUT: no answer in time). */
rd_kafka_resp_err_t ds_kafka__commit_wait(rd_kafka_t *rk, const rd_kafka_topic_partition_list_t *l,
                                          int timeout_ms);

/* Group assignment (ds_kafka_source.c, for ds_lua_kafka.c's stats): this member's id ("" before
 * it joined), the rebalances it handled and the partitions it owns now (offset: where the next
 * batch starts, -1 unknown; *parts (free()) points into the source's topic names). Returns
 * the partition count or -ENOMEM. */
int ds_kafka__source_group(ds_kafka_source *s, char *member, size_t len, uint64_t *rebalances,
                           ds_kafka_offset **parts);

/* Cluster mode's positions (ds_kafka_positions.c): the ends of a member's completed batches,
 * committed without a generation to `group` ("<APP>.offsets"), which no member joins, so that
 * a rebalance never refuses them. new: NULL and err on failure. commit: timeout_ms <= 0 sends
 * it (a failure is logged at a later call), else waits that long for the answer; 0 or -EIO
 * and err. read: fills the offsets of l (RD_KAFKA_OFFSET_INVALID: none); 0 or -EIO (logged). */
typedef struct ds_kafka_positions ds_kafka_positions;
ds_kafka_positions *ds_kafka__positions_new(const char *brokers, const char *group,
                                            const ds_kafka_kv *conf, int nconf, char *err,
                                            size_t errlen);
int ds_kafka__positions_commit(ds_kafka_positions *p, const rd_kafka_topic_partition_list_t *l,
                               int timeout_ms, char *err, size_t errlen);
int ds_kafka__positions_read(ds_kafka_positions *p, rd_kafka_topic_partition_list_t *l,
                             int timeout_ms);
void ds_kafka__positions_free(ds_kafka_positions *p);

#endif
