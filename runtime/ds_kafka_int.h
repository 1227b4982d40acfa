/* ds_kafka_int.h - what the Kafka files (ds_kafka_source.c, ds_kafka_producer.c,
 * ds_kafka_admin.c) share, and no other module uses: defined in ds_kafka_admin.c. Any thread. */
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

/* Group assignment (ds_kafka_source.c, for ds_lua_kafka.c's stats): this member's id ("" before
 * it joined), the rebalances it handled and the partitions it owns now (offset: where the next
 * batch starts, -1 unknown; *parts (free()) points into the source's topic names). Returns
 * the partition count or -ENOMEM. */
int ds_kafka__source_group(ds_kafka_source *s, char *member, size_t len, uint64_t *rebalances,
                           ds_kafka_offset **parts);

#endif
