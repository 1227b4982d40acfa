/* ds_kafka_positions.c - cluster mode's record of where each partition's completed batches end
 * (ds_kafka_positions, declared in ds_kafka_int.h).
 *
 * A member of consumer group APP commits with the group's generation, and a broker refuses
 * those commits while the group rebalances ("rebalance in progress"; "illegal generation" for
 * a commit sent with the generation a rebalance just replaced, which librdkafka takes for a
 * lost assignment). A partition that moves then starts at an old committed offset and its
 * records are processed twice. So the positions are also committed, without any generation,
 * to consumer group "<APP>.offsets" (the source's positions_group), which nobody joins: a broker takes such commits from any
 * client ("simple" commits to an empty group, as assign = "all" commits), in a rebalance too.
 * The next owner of a partition reads both groups and starts at the later offset.
 *
 * Owns its own librdkafka consumer handle (never subscribed nor assigned) and the queue its
 * asynchronous commits answer on. Used by one source under the source's callers: the driver's
 * thread (commits after each batch) and the consumer thread (the rebalance callback). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ds_kafka_int.h"
#include "ds_log.h"

struct ds_kafka_positions {
  rd_kafka_t *rk;
  rd_kafka_queue_t *answers; /* asynchronous commits' results, read at the next commit */
  char group[300];
};

ds_kafka_positions *ds_kafka__positions_new(const char *brokers, const char *group,
                                            const ds_kafka_kv *conf, int nconf, char *err,
                                            size_t errlen) {
  ds_kafka_positions *p = calloc(1, sizeof *p);
  if (!p) {
    ds_kafka__set_err(err, errlen, "out of memory");
    return NULL;
  }
  snprintf(p->group, sizeof p->group, "%s", group);
  /* The user's properties first, group.id last: the commits must go to the positions' group. */
  const ds_kafka_kv mine[] = {
      {"group.id", p->group},
      {"enable.auto.commit", "false"},
      {"client.id", "dstream-positions"},
  };
  rd_kafka_conf_t *c = ds_kafka__conf(brokers, NULL, 0, conf, nconf, err, errlen);
  char e[512];
  for (size_t i = 0; c && i < sizeof mine / sizeof *mine; i++)
    if (rd_kafka_conf_set(c, mine[i].key, mine[i].value, e, sizeof e) != RD_KAFKA_CONF_OK) {
      ds_kafka__set_err(err, errlen, "%s", e);
      rd_kafka_conf_destroy(c);
      c = NULL;
    }
  if (!c || !(p->rk = ds_kafka__client(RD_KAFKA_CONSUMER, c, "consumer", err, errlen))) {
    free(p);
    return NULL;
  }
  p->answers = rd_kafka_queue_new(p->rk);
  return p;
}

/* Logs the failures among the asynchronous commits answered so far. */
static void read_answers(ds_kafka_positions *p) {
  rd_kafka_event_t *ev;
  while ((ev = rd_kafka_queue_poll(p->answers, 0))) {
    rd_kafka_resp_err_t rc = rd_kafka_event_error(ev);
    const rd_kafka_topic_partition_list_t *l = rd_kafka_event_topic_partition_list(ev);
    for (int i = 0; !rc && l && i < l->cnt; i++) rc = l->elems[i].err;
    if (rc && rc != RD_KAFKA_RESP_ERR__NO_OFFSET)
      ds_log(DS_LOG_WARN, "kafka_stream: committing positions to group %s failed: %s (the next "
             "batch commits again)", p->group, rd_kafka_err2str(rc));
    rd_kafka_event_destroy(ev);
  }
}

int ds_kafka__positions_commit(ds_kafka_positions *p, const rd_kafka_topic_partition_list_t *l,
                               int timeout_ms, char *err, size_t errlen) {
  read_answers(p);
  if (timeout_ms <= 0) {
    rd_kafka_resp_err_t rc = rd_kafka_commit_queue(p->rk, l, p->answers, NULL, NULL);
    if (rc) {
      ds_kafka__set_err(err, errlen, "committing positions failed: %s", rd_kafka_err2str(rc));
      return -EIO;
    }
    return 0;
  }
  /* Synchronous, at most timeout_ms. Commits go out in order on the coordinator's connection,
   * so this one lands after the asynchronous ones before it. */
  rd_kafka_resp_err_t rc = ds_kafka__commit_wait(p->rk, l, timeout_ms);
  if (rc) {
    ds_kafka__set_err(err, errlen, "committing positions to group %s failed: %s", p->group,
                      rd_kafka_err2str(rc));
    return -EIO;
  }
  return 0;
}

int ds_kafka__positions_read(ds_kafka_positions *p, rd_kafka_topic_partition_list_t *l,
                             int timeout_ms) {
  rd_kafka_resp_err_t rc = rd_kafka_committed(p->rk, l, timeout_ms);
  if (rc) {
    ds_log(DS_LOG_WARN, "kafka_stream: cannot read the positions committed to group %s: %s",
           p->group, rd_kafka_err2str(rc));
    return -EIO;
  }
  return 0;
}

void ds_kafka__positions_free(ds_kafka_positions *p) {
  if (!p) return;
  read_answers(p);
  rd_kafka_queue_destroy(p->answers);
  /* Never a member: nothing to leave; an answer still due is dropped. */
  rd_kafka_destroy_flags(p->rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
  free(p);
}
