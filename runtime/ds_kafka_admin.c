/* ds_kafka_admin.c - Kafka's one-off queries (a group's committed offsets, a topic's partition
 * count) through short-lived clients, and the plumbing every Kafka file shares (ds_kafka_int.h):
 * error messages, configurations with dstream's defaults, client handles, offset lists.
 *
 * Owns nothing past a call: each query makes its client and destroys it before returning.
 * Any thread may call; in dstream the driver does (kafka.committed(), the check of a checkpoint
 * against a transactional sink's commits), blocking for up to the query's timeout. */
#include "ds_kafka_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ds_log.h"

/* ---- shared plumbing (ds_kafka_int.h) ----------------------------------------------------- */

void ds_kafka__set_err(char *err, size_t errlen, const char *fmt, ...) {
  if (!err || !errlen) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

/* librdkafka's own log lines go to ds_log: its connection failures are also reported through
 * the error callback, so they are details (info), not warnings. */
static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
  (void)rk;
  ds_log(level <= 3 ? DS_LOG_INFO : DS_LOG_DEBUG, "kafka %s: %s", fac, buf);
}

/* A configuration with dstream's defaults, then the user's properties on top. */
rd_kafka_conf_t *ds_kafka__conf(const char *brokers, const ds_kafka_kv *defaults, int ndefaults,
                                const ds_kafka_kv *conf, int nconf, char *err, size_t errlen) {
  rd_kafka_conf_t *c = rd_kafka_conf_new();
  char e[512];
  if (brokers && rd_kafka_conf_set(c, "bootstrap.servers", brokers, e, sizeof e) != RD_KAFKA_CONF_OK)
    goto fail;
  for (int i = 0; i < ndefaults; i++)
    if (rd_kafka_conf_set(c, defaults[i].key, defaults[i].value, e, sizeof e) != RD_KAFKA_CONF_OK)
      goto fail;
  for (int i = 0; i < nconf; i++)
    if (rd_kafka_conf_set(c, conf[i].key, conf[i].value, e, sizeof e) != RD_KAFKA_CONF_OK)
      goto fail;
  rd_kafka_conf_set_log_cb(c, log_cb);
  return c;
fail:
  ds_kafka__set_err(err, errlen, "%s", e);
  rd_kafka_conf_destroy(c);
  return NULL;
}

/* rd_kafka_new(type, c), which takes c on success; on failure c is destroyed and err says
 * what could not be made (`what`: "consumer", "producer", "client"). */
rd_kafka_t *ds_kafka__client(rd_kafka_type_t type, rd_kafka_conf_t *c, const char *what,
                             char *err, size_t errlen) {
  char e[512];
  rd_kafka_t *rk = rd_kafka_new(type, c, e, sizeof e);
  if (!rk) {
    rd_kafka_conf_destroy(c);
    ds_kafka__set_err(err, errlen, "cannot create a Kafka %s: %s", what, e);
  }
  return rk;
}

double ds_kafka__now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

rd_kafka_topic_partition_list_t *ds_kafka__offset_list(const ds_kafka_offset *o, int n) {
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n > 0 ? n : 1);
  for (int i = 0; i < n; i++)
    rd_kafka_topic_partition_list_add(l, o[i].topic, o[i].partition)->offset = o[i].offset;
  return l;
}

rd_kafka_resp_err_t ds_kafka__commit_wait(rd_kafka_t *rk, const rd_kafka_topic_partition_list_t *l,
                                          int timeout_ms) {
  rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
  rd_kafka_resp_err_t rc = rd_kafka_commit_queue(rk, l, q, NULL, NULL);
  if (!rc) {
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, timeout_ms);
    if (!ev) {
      rc = RD_KAFKA_RESP_ERR__TIMED_OUT;
    } else {
      rc = rd_kafka_event_error(ev);
      const rd_kafka_topic_partition_list_t *done = rd_kafka_event_topic_partition_list(ev);
      for (int i = 0; !rc && done && i < done->cnt; i++) rc = done->elems[i].err;
      rd_kafka_event_destroy(ev);
    }
  }
  rd_kafka_queue_destroy(q);
  return rc;
}

/* ---- queries ------------------------------------------------------------------------------ */

int ds_kafka_committed(const char *brokers, const char *group, const ds_kafka_kv *conf, int nconf,
                       ds_kafka_offset *offsets, int n, int timeout_ms, char *err,
                       size_t errlen) {
  const ds_kafka_kv defaults[] = {{"group.id", group}, {"enable.auto.commit", "false"}};
  rd_kafka_conf_t *c = ds_kafka__conf(brokers, defaults, 2, conf, nconf, err, errlen);
  if (!c) return -EINVAL;
  rd_kafka_t *rk = ds_kafka__client(RD_KAFKA_CONSUMER, c, "consumer", err, errlen);
  if (!rk) return -EINVAL;
  rd_kafka_topic_partition_list_t *l = ds_kafka__offset_list(offsets, n);
  rd_kafka_resp_err_t rc = rd_kafka_committed(rk, l, timeout_ms > 0 ? timeout_ms : 10000);
  for (int i = 0; i < n && !rc; i++) {
    int64_t off = l->elems[i].offset;
    offsets[i].offset = off >= 0 ? off : -1;
  }
  rd_kafka_topic_partition_list_destroy(l);
  rd_kafka_destroy_flags(rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
  if (rc) {
    ds_kafka__set_err(err, errlen, "cannot read committed offsets: %s", rd_kafka_err2str(rc));
    return -EIO;
  }
  return 0;
}

int ds_kafka_partition_count(const char *brokers, const char *topic, const ds_kafka_kv *conf,
                             int nconf, int timeout_ms, int *count, char *err, size_t errlen) {
  rd_kafka_conf_t *c = ds_kafka__conf(brokers, NULL, 0, conf, nconf, err, errlen);
  if (!c) return -EINVAL;
  rd_kafka_t *rk = ds_kafka__client(RD_KAFKA_PRODUCER, c, "client", err, errlen);
  if (!rk) return -EINVAL;
  rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
  const struct rd_kafka_metadata *md = NULL;
  rd_kafka_resp_err_t rc =
      rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms > 0 ? timeout_ms : 10000);
  int result = 0;
  if (rc) {
    ds_kafka__set_err(err, errlen, "metadata: %s", rd_kafka_err2str(rc));
    result = -EIO;
  } else if (md->topic_cnt < 1 || md->topics[0].err) {
    ds_kafka__set_err(err, errlen, "topic %s: %s", topic,
                      md->topic_cnt < 1 ? "not found" : rd_kafka_err2str(md->topics[0].err));
    result = -ENOENT;
  } else {
    *count = md->topics[0].partition_cnt;
  }
  if (md) rd_kafka_metadata_destroy(md);
  rd_kafka_topic_destroy(rkt);
  rd_kafka_destroy(rk);
  return result;
}
