/* ds_kafka_reader.c - reading one partition of a topic from an offset up to an offset, and
 * making topics: what cluster mode's keyed state needs (issue 19). A state partition is
 * restored by reading its changelog partition from the offset its local copy covers up to the
 * high watermark, on the worker that keeps the state (dstream.worker.ops.cluster).
 *
 * A reader owns one consumer handle with no group (explicit assignment, nothing committed),
 * made on first use by a worker VM and kept for its life: a worker thread uses its readers
 * alone. ds_kafka_topic_ensure makes a short-lived admin client; any thread (the driver, at
 * ctx:start()). */
#include "ds_kafka_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct ds_kafka_reader {
  rd_kafka_t *rk;
  char *topic; /* what is assigned now (NULL: nothing) */
  int32_t partition;
  int64_t next; /* the offset the next message should have */
};

int ds_kafka_reader_new(const char *brokers, const ds_kafka_kv *conf, int nconf,
                        ds_kafka_reader **out, char *err, size_t errlen) {
  /* group.id only because librdkafka's consumer wants one; nothing joins or commits. */
  const ds_kafka_kv defaults[] = {{"group.id", "dstream-changelog-reader"},
                                  {"enable.auto.commit", "false"},
                                  {"enable.partition.eof", "true"},
                                  {"allow.auto.create.topics", "false"},
                                  {"fetch.wait.max.ms", "10"}};
  rd_kafka_conf_t *c = ds_kafka__conf(brokers, defaults, 5, conf, nconf, err, errlen);
  if (!c) return -EINVAL;
  rd_kafka_t *rk = ds_kafka__client(RD_KAFKA_CONSUMER, c, "consumer", err, errlen);
  if (!rk) return -EINVAL;
  ds_kafka_reader *r = calloc(1, sizeof *r);
  if (!r) {
    rd_kafka_destroy(rk);
    return -ENOMEM;
  }
  r->rk = rk;
  *out = r;
  return 0;
}

int ds_kafka_reader_watermarks(ds_kafka_reader *r, const char *topic, int32_t partition,
                               int64_t *low, int64_t *high, int timeout_ms, char *err,
                               size_t errlen) {
  rd_kafka_resp_err_t rc = rd_kafka_query_watermark_offsets(
      r->rk, topic, partition, low, high, timeout_ms > 0 ? timeout_ms : 10000);
  if (rc) {
    ds_kafka__set_err(err, errlen, "watermarks of %s [%d]: %s", topic, (int)partition,
                      rd_kafka_err2str(rc));
    return -EIO;
  }
  return 0;
}

/* Assigns topic/partition at `from` unless the reader is there already. */
static int reader_seek(ds_kafka_reader *r, const char *topic, int32_t partition, int64_t from,
                       char *err, size_t errlen) {
  if (r->topic && r->partition == partition && r->next == from && strcmp(r->topic, topic) == 0)
    return 0;
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(l, topic, partition)->offset = from;
  rd_kafka_resp_err_t rc = rd_kafka_assign(r->rk, l);
  rd_kafka_topic_partition_list_destroy(l);
  free(r->topic);
  r->topic = NULL;
  if (rc) {
    ds_kafka__set_err(err, errlen, "cannot read %s [%d]: %s", topic, (int)partition,
                      rd_kafka_err2str(rc));
    return -EIO;
  }
  r->topic = strdup(topic);
  if (!r->topic) return -ENOMEM;
  r->partition = partition;
  r->next = from;
  return 0;
}

int ds_kafka_reader_read(ds_kafka_reader *r, const char *topic, int32_t partition, int64_t from,
                         int64_t until, int max, int timeout_ms, ds_kafka_reader_cb cb,
                         void *opaque, int64_t *next, char *err, size_t errlen) {
  *next = from;
  if (from >= until) return 0;
  int rc = reader_seek(r, topic, partition, from, err, errlen);
  if (rc < 0) return rc;
  double deadline = ds_kafka__now_s() + (timeout_ms > 0 ? timeout_ms : 30000) / 1000.0;
  int n = 0;
  while (r->next < until && n < max) {
    double left = deadline - ds_kafka__now_s();
    if (left <= 0) {
      ds_kafka__set_err(err, errlen, "reading %s [%d] from offset %lld: only up to %lld of %lld "
                        "came within %d ms", topic, (int)partition, (long long)from,
                        (long long)r->next, (long long)until, timeout_ms);
      rc = -ETIMEDOUT;
      break;
    }
    rd_kafka_message_t *m = rd_kafka_consumer_poll(r->rk, left > 0.1 ? 100 : (int)(left * 1000) + 1);
    if (!m) continue;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      rd_kafka_message_destroy(m);
      continue; /* the high watermark asked for may not be fetched yet */
    }
    if (m->err) {
      ds_kafka__set_err(err, errlen, "reading %s [%d]: %s", topic, (int)partition,
                        rd_kafka_message_errstr(m));
      rd_kafka_message_destroy(m);
      rc = -EIO;
      break;
    }
    if (m->offset >= r->next) { /* (a refetch after a reconnect may repeat some) */
      if (m->offset < until) {
        if (cb(opaque, m->offset, m->key, m->key_len, m->payload, m->len) < 0) {
          rd_kafka_message_destroy(m);
          rc = -ENOMEM;
          break;
        }
        n++;
      }
      r->next = m->offset + 1;
    }
    rd_kafka_message_destroy(m);
  }
  *next = r->next < until ? r->next : until;
  if (rc < 0) { /* start anew at the next read */
    free(r->topic);
    r->topic = NULL;
  }
  return rc;
}

void ds_kafka_reader_free(ds_kafka_reader *r) {
  if (!r) return;
  rd_kafka_assign(r->rk, NULL);
  rd_kafka_destroy_flags(r->rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
  free(r->topic);
  free(r);
}

/* ---- topics ---------------------------------------------------------------------------------- */

/* The partition count of `topic` from a metadata request for every topic (which creates none,
 * where a request naming it would on a broker that creates topics on demand, the mock
 * included): >0, 0 when it does not exist, -EIO. */
static int topic_count(rd_kafka_t *rk, const char *topic, int timeout_ms, char *err, size_t errlen) {
  const struct rd_kafka_metadata *md = NULL;
  rd_kafka_resp_err_t rc = rd_kafka_metadata(rk, 1, NULL, &md, timeout_ms);
  if (rc) {
    ds_kafka__set_err(err, errlen, "metadata: %s", rd_kafka_err2str(rc));
    return -EIO;
  }
  int count = 0;
  for (int i = 0; i < md->topic_cnt; i++)
    if (strcmp(md->topics[i].topic, topic) == 0 && !md->topics[i].err)
      count = md->topics[i].partition_cnt;
  rd_kafka_metadata_destroy(md);
  return count;
}

/* CreateTopics; "" in err when made (or made meanwhile by another process). */
static void topic_create(rd_kafka_t *rk, const char *topic, int partitions, int timeout_ms,
                         char *err, size_t errlen) {
  err[0] = 0;
  rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, partitions, -1, err, errlen);
  if (!nt) return;
  rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
  rd_kafka_AdminOptions_t *ao = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
  rd_kafka_AdminOptions_set_request_timeout(ao, timeout_ms, NULL, 0);
  rd_kafka_CreateTopics(rk, &nt, 1, ao, q);
  rd_kafka_event_t *ev = rd_kafka_queue_poll(q, timeout_ms + 1000);
  if (!ev) {
    ds_kafka__set_err(err, errlen, "no answer within %d ms", timeout_ms);
  } else if (rd_kafka_event_error(ev)) {
    ds_kafka__set_err(err, errlen, "%s", rd_kafka_event_error_string(ev));
  } else {
    size_t nres = 0;
    const rd_kafka_topic_result_t **res =
        rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &nres);
    rd_kafka_resp_err_t code = nres > 0 ? rd_kafka_topic_result_error(res[0]) : 0;
    if (code && code != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
      ds_kafka__set_err(err, errlen, "%s", rd_kafka_topic_result_error_string(res[0])
                                               ? rd_kafka_topic_result_error_string(res[0])
                                               : rd_kafka_err2str(code));
  }
  if (ev) rd_kafka_event_destroy(ev);
  rd_kafka_AdminOptions_destroy(ao);
  rd_kafka_NewTopic_destroy(nt);
  rd_kafka_queue_destroy(q);
}

int ds_kafka_topic_ensure(const char *brokers, const char *topic, int partitions,
                          const ds_kafka_kv *conf, int nconf, int timeout_ms, int *count,
                          char *err, size_t errlen) {
  *count = 0;
  if (timeout_ms <= 0) timeout_ms = 10000;
  rd_kafka_conf_t *c = ds_kafka__conf(brokers, NULL, 0, conf, nconf, err, errlen);
  if (!c) return -EINVAL;
  rd_kafka_t *rk = ds_kafka__client(RD_KAFKA_PRODUCER, c, "client", err, errlen);
  if (!rk) return -EINVAL;
  int n = topic_count(rk, topic, timeout_ms, err, errlen);
  if (n == 0) {
    char cerr[300];
    /* (3 s at most: a broker without a controller, the mock, makes it wait for one) */
    topic_create(rk, topic, partitions, timeout_ms < 3000 ? timeout_ms : 3000, cerr, sizeof cerr);
    n = topic_count(rk, topic, timeout_ms, err, errlen);
    if (n == 0) {
      ds_kafka__set_err(err, errlen, "topic %s does not exist and could not be created: %s", topic,
                        cerr[0] ? cerr : "no error given");
      n = -ENOENT;
    }
  }
  rd_kafka_destroy(rk);
  if (n < 0) return n;
  *count = n;
  return 0;
}
