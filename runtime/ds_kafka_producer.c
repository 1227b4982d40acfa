/* ds_kafka_producer.c - Kafka producers (ds_kafka_producer): idempotent, or transactional,
 * with delivery reports counted since a mark.
 *
 * Owns its librdkafka producer handle and the counts of the messages sent since the last mark.
 * One thread uses a producer at a time: delivery reports are served (dr_cb) on the thread that
 * sends or flushes, and the counts are that thread's. In dstream a producer lives in a worker's
 * VM (to_kafka, dead letters) and is used by the task running there, or by the script that made
 * it (kafka.producer()). */
#include "ds_kafka.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "ds_kafka_int.h"
#include "ds_log.h"

struct ds_kafka_producer {
  rd_kafka_t *rk;
  int transactional;
  int timeout_ms;
  uintptr_t gen; /* delivery reports of older generations are ignored */
  uint64_t sent, delivered, failed;
  char first_error[256];
  int fatal;
};

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
  (void)rk;
  ds_kafka_producer *p = opaque;
  if ((uintptr_t)m->_private != p->gen) return;
  if (m->err) {
    if (!p->failed)
      snprintf(p->first_error, sizeof p->first_error, "%s [%d]: %s",
               m->rkt ? rd_kafka_topic_name(m->rkt) : "?", (int)m->partition,
               rd_kafka_err2str(m->err));
    p->failed++;
  } else {
    p->delivered++;
  }
}

static void producer_error_cb(rd_kafka_t *rk, int code, const char *reason, void *opaque) {
  ds_kafka_producer *p = opaque;
  if (code == RD_KAFKA_RESP_ERR__FATAL) {
    char buf[256];
    rd_kafka_fatal_error(rk, buf, sizeof buf);
    p->fatal = 1;
    ds_log(DS_LOG_ERROR, "to_kafka: the producer failed for good: %s", buf);
  } else {
    ds_log(DS_LOG_INFO, "to_kafka: %s: %s", rd_kafka_err2name(code), reason);
  }
}

int ds_kafka_producer_new(const ds_kafka_producer_opts *o, ds_kafka_producer **out, char *err,
                          size_t errlen) {
  *out = NULL;
  ds_kafka_producer *p = calloc(1, sizeof *p);
  if (!p) return -ENOMEM;
  p->gen = 1;
  p->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 30000;
  p->transactional = o->transactional_id != NULL;
  ds_kafka_kv defaults[] = {
      {"enable.idempotence", "true"},
      {"client.id", "dstream"},
      {"reconnect.backoff.max.ms", "2000"},
      {"transactional.id", o->transactional_id},
  };
  int ndefaults = p->transactional ? 4 : 3;
  rd_kafka_conf_t *c =
      ds_kafka__conf(o->brokers, defaults, ndefaults, o->conf, o->nconf, err, errlen);
  if (!c) {
    free(p);
    return -EINVAL;
  }
  rd_kafka_conf_set_opaque(c, p);
  rd_kafka_conf_set_dr_msg_cb(c, dr_cb);
  rd_kafka_conf_set_error_cb(c, producer_error_cb);
  if (!(p->rk = ds_kafka__client(RD_KAFKA_PRODUCER, c, "producer", err, errlen))) {
    free(p);
    return -EINVAL;
  }
  if (p->transactional) {
    rd_kafka_error_t *te = rd_kafka_init_transactions(p->rk, p->timeout_ms);
    if (te) {
      ds_kafka__set_err(err, errlen, "init_transactions: %s", rd_kafka_error_string(te));
      rd_kafka_error_destroy(te);
      rd_kafka_destroy(p->rk);
      free(p);
      return -EIO;
    }
  }
  *out = p;
  return 0;
}

/* A producer's first message to a topic it has not sent to yet, once it is connected, waits
 * for the topic's metadata, which librdkafka fetches late: the first flush to a second topic
 * took 1 s (999 ms, every time, against the embedded broker), where a flush takes 0.1 ms. In
 * cluster mode every worker VM's producer writes two topics (repartition and changelog), so
 * the first batch of every VM paid it. A metadata request for the topic made here waits for
 * the answer (under 1 ms there) and fills the producer's cache. Returns 0, or -EIO with err
 * when the request failed (a missing topic is not an error here: the send reports it). */
int ds_kafka_producer_prepare(ds_kafka_producer *p, const char *topic, int timeout_ms, char *err,
                              size_t errlen) {
  rd_kafka_topic_t *rkt = rd_kafka_topic_new(p->rk, topic, NULL);
  if (!rkt) {
    ds_kafka__set_err(err, errlen, "%s: %s", topic, rd_kafka_err2str(rd_kafka_last_error()));
    return -EINVAL;
  }
  const struct rd_kafka_metadata *md = NULL;
  rd_kafka_resp_err_t rc =
      rd_kafka_metadata(p->rk, 0, rkt, &md, timeout_ms > 0 ? timeout_ms : p->timeout_ms);
  if (md) rd_kafka_metadata_destroy(md);
  rd_kafka_topic_destroy(rkt);
  if (rc) {
    ds_kafka__set_err(err, errlen, "metadata of %s: %s", topic, rd_kafka_err2str(rc));
    return -EIO;
  }
  return 0;
}

void ds_kafka_producer_mark(ds_kafka_producer *p) {
  p->gen++;
  p->sent = p->delivered = p->failed = 0;
  p->first_error[0] = 0;
}

int ds_kafka_producer_send(ds_kafka_producer *p, const char *topic, int32_t partition,
                           const void *key, size_t klen, const void *value, size_t vlen,
                           const ds_kafka_header *headers, int nheaders, char *err, size_t errlen) {
  double deadline = ds_kafka__now_s() + p->timeout_ms / 1e3;
  for (;;) {
    rd_kafka_headers_t *hdrs = NULL;
    if (nheaders > 0) {
      hdrs = rd_kafka_headers_new((size_t)nheaders);
      for (int i = 0; i < nheaders; i++)
        rd_kafka_header_add(hdrs, headers[i].name, -1, headers[i].value,
                            headers[i].value ? (ssize_t)headers[i].len : 0);
    }
    rd_kafka_resp_err_t rc = rd_kafka_producev(
        p->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition < 0 ? RD_KAFKA_PARTITION_UA : partition),
        RD_KAFKA_V_KEY(key, key ? klen : 0), RD_KAFKA_V_VALUE((void *)value, value ? vlen : 0),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE((void *)p->gen),
        RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END);
    if (rc == RD_KAFKA_RESP_ERR_NO_ERROR) {
      p->sent++;
      rd_kafka_poll(p->rk, 0); /* serve delivery reports as we go */
      return 0;
    }
    if (hdrs) rd_kafka_headers_destroy(hdrs);
    if (rc == RD_KAFKA_RESP_ERR__QUEUE_FULL && ds_kafka__now_s() < deadline) {
      rd_kafka_poll(p->rk, 50);
      continue;
    }
    if (rc == RD_KAFKA_RESP_ERR__FATAL) p->fatal = 1;
    ds_kafka__set_err(err, errlen, "cannot send to %s: %s", topic, rd_kafka_err2str(rc));
    return rc == RD_KAFKA_RESP_ERR__QUEUE_FULL ? -ETIMEDOUT : -EIO;
  }
}

int ds_kafka_producer_flush(ds_kafka_producer *p, int timeout_ms, uint64_t *delivered,
                            uint64_t *failed, char *err, size_t errlen) {
  if (timeout_ms <= 0) timeout_ms = p->timeout_ms;
  double deadline = ds_kafka__now_s() + timeout_ms / 1e3;
  while (p->delivered + p->failed < p->sent && ds_kafka__now_s() < deadline) {
    rd_kafka_flush(p->rk, 100);
    if (p->fatal) break;
  }
  rd_kafka_poll(p->rk, 0);
  if (delivered) *delivered = p->delivered;
  if (failed) *failed = p->failed;
  if (p->failed) {
    ds_kafka__set_err(err, errlen, "%llu of %llu messages were not delivered; first: %s",
                      (unsigned long long)p->failed, (unsigned long long)p->sent, p->first_error);
    return -EIO;
  }
  if (p->delivered < p->sent) {
    ds_kafka__set_err(err, errlen, "%llu of %llu messages not delivered within %d ms%s",
                      (unsigned long long)(p->sent - p->delivered), (unsigned long long)p->sent,
                      timeout_ms, p->fatal ? " (the producer failed for good)" : "");
    return -ETIMEDOUT;
  }
  return 0;
}

/* Turns a transaction error into a return code, aborting when the transaction requires it. */
static int txn_error(ds_kafka_producer *p, rd_kafka_error_t *e, const char *what, char *err,
                     size_t errlen) {
  ds_kafka__set_err(err, errlen, "%s: %s", what, rd_kafka_error_string(e));
  int rc = -EIO;
  if (rd_kafka_error_is_fatal(e)) {
    p->fatal = 1;
    rc = -EPIPE;
  } else if (rd_kafka_error_txn_requires_abort(e)) {
    rd_kafka_error_t *ae = rd_kafka_abort_transaction(p->rk, p->timeout_ms);
    if (ae) {
      if (rd_kafka_error_is_fatal(ae)) p->fatal = 1, rc = -EPIPE;
      rd_kafka_error_destroy(ae);
    }
  }
  rd_kafka_error_destroy(e);
  return rc;
}

int ds_kafka_producer_begin(ds_kafka_producer *p, char *err, size_t errlen) {
  if (!p->transactional) {
    ds_kafka__set_err(err, errlen, "not a transactional producer");
    return -EINVAL;
  }
  rd_kafka_error_t *e = rd_kafka_begin_transaction(p->rk);
  return e ? txn_error(p, e, "begin_transaction", err, errlen) : 0;
}

int ds_kafka_producer_send_offsets(ds_kafka_producer *p, const ds_kafka_offset *offsets, int n,
                                   const void *group_metadata, size_t gm_len, char *err,
                                   size_t errlen) {
  if (n <= 0) return 0;
  rd_kafka_consumer_group_metadata_t *gm;
  rd_kafka_error_t *e = rd_kafka_consumer_group_metadata_read(&gm, group_metadata, gm_len);
  if (e) {
    ds_kafka__set_err(err, errlen, "group metadata: %s", rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
    return -EINVAL;
  }
  rd_kafka_topic_partition_list_t *l = ds_kafka__offset_list(offsets, n);
  e = rd_kafka_send_offsets_to_transaction(p->rk, l, gm, p->timeout_ms);
  rd_kafka_topic_partition_list_destroy(l);
  rd_kafka_consumer_group_metadata_destroy(gm);
  return e ? txn_error(p, e, "send_offsets_to_transaction", err, errlen) : 0;
}

int ds_kafka_producer_commit(ds_kafka_producer *p, char *err, size_t errlen) {
  for (int attempt = 0;; attempt++) {
    rd_kafka_error_t *e = rd_kafka_commit_transaction(p->rk, p->timeout_ms);
    if (!e) return 0;
    if (rd_kafka_error_is_retriable(e) && attempt < 3) {
      rd_kafka_error_destroy(e);
      continue;
    }
    int abortable = rd_kafka_error_txn_requires_abort(e) || rd_kafka_error_is_fatal(e);
    int rc = txn_error(p, e, "commit_transaction", err, errlen);
    if (!abortable && !p->fatal) {
      /* The outcome is unknown (e.g. timed out): abort so a retry starts clean. */
      rd_kafka_error_t *ae = rd_kafka_abort_transaction(p->rk, p->timeout_ms);
      if (ae) {
        if (rd_kafka_error_is_fatal(ae)) p->fatal = 1;
        rd_kafka_error_destroy(ae);
      }
    }
    return rc;
  }
}

int ds_kafka_producer_abort(ds_kafka_producer *p, char *err, size_t errlen) {
  rd_kafka_error_t *e = rd_kafka_abort_transaction(p->rk, p->timeout_ms);
  if (!e) return 0;
  ds_kafka__set_err(err, errlen, "abort_transaction: %s", rd_kafka_error_string(e));
  if (rd_kafka_error_is_fatal(e)) p->fatal = 1;
  rd_kafka_error_destroy(e);
  return p->fatal ? -EPIPE : -EIO;
}

int ds_kafka_producer_fatal(ds_kafka_producer *p) { return p->fatal; }

void ds_kafka_producer_free(ds_kafka_producer *p, int timeout_ms) {
  if (!p) return;
  if (timeout_ms > 0) rd_kafka_flush(p->rk, timeout_ms);
  rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
  rd_kafka_poll(p->rk, 0);
  rd_kafka_destroy(p->rk);
  free(p);
}
