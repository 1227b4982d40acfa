/* ds_kafka.h - Kafka through librdkafka: the direct-stream consumer, producers, offset queries.
 *
 * The consumer (ds_kafka_source, ds_kafka_source.c) takes every partition of its topics itself
 * (metadata, then rd_kafka_assign with explicit offsets resolved before start returns; new
 * partitions are found by a periodic metadata refresh), or, with `group_assign`, joins a
 * consumer group and takes what the group assigns. Its own thread polls librdkafka and appends
 * each message to a per-partition buffer of blocks (DS_FMT_LINES).
 * The driver seals it at every batch boundary: each assigned partition becomes one input
 * partition of the batch, cut at a known offset, and the batch's offset ranges are returned
 * with it. Offsets are committed only when asked (after a batch's output succeeded), never
 * automatically. A message whose offset is below the next expected one is a duplicate
 * (a refetch after a broker came back) and is dropped; a partition holding too much unsealed
 * data is paused until a seal drains it.
 *
 * Producers (ds_kafka_producer, ds_kafka_producer.c) are idempotent by default, or
 * transactional; one thread uses a producer at a time (delivery reports are served on the
 * thread that flushes).
 *
 * Queries (ds_kafka_admin.c): a group's committed offsets and a topic's partition count, each
 * through a client of its own.
 *
 * Ownership: the source owns its buffers, topic names (ranges point into them until the source
 * is freed) and its librdkafka handle. Arrays returned through out-parameters are the caller's
 * and are released with free(). Errors are returned as negative codes with a message. */
#ifndef DS_KAFKA_H
#define DS_KAFKA_H

#include <stddef.h>
#include <stdint.h>

#include "ds_store.h"

typedef struct ds_kafka_source ds_kafka_source;
typedef struct ds_kafka_producer ds_kafka_producer;

/* A librdkafka configuration property. */
typedef struct ds_kafka_kv {
  const char *key;
  const char *value;
} ds_kafka_kv;

/* How a message becomes a record in the blocks:
 *   VALUE  the value bytes only (a null value is an empty record);
 *   FULL   a 32-byte header (ds_kafka_rec), then topic, key, headers and value bytes. */
enum { DS_KAFKA_LAYOUT_VALUE = 0, DS_KAFKA_LAYOUT_FULL = 1 };

/* The FULL layout's header, little-endian, followed by topic_len bytes of topic, key_len bytes
 * of key, nheaders times { uint32 name_len, int32 value_len (-1: null), name, value }, and the
 * value (the rest of the record). Mirrored by lua/dstream/kafka.lua. */
typedef struct ds_kafka_rec {
  int64_t offset;
  int64_t timestamp; /* ms since the epoch, -1 when the message has none */
  int32_t partition;
  uint32_t key_len;
  uint32_t nheaders;
  uint16_t topic_len;
  uint8_t flags; /* DS_KAFKA_REC_KEY: the key is not null; DS_KAFKA_REC_VALUE: the value */
  uint8_t tstype; /* 0 none, 1 create time, 2 log append time */
} ds_kafka_rec;
enum { DS_KAFKA_REC_KEY = 1, DS_KAFKA_REC_VALUE = 2 };

/* A position in a partition: the next offset to read. */
typedef struct ds_kafka_offset {
  const char *topic;
  int32_t partition;
  int64_t offset;
} ds_kafka_offset;

/* The records of one partition in one batch: offsets [from, until). */
typedef struct ds_kafka_range {
  const char *topic;
  int32_t partition;
  int64_t from, until;
  uint64_t count;
} ds_kafka_range;

typedef struct ds_kafka_source_opts {
  const char *brokers;
  const char *const *topics;
  int ntopics;
  const char *group;
  const char *start; /* "earliest" or "latest": where a partition without position starts */
  const ds_kafka_kv *conf;
  int nconf;
  int layout;
  uint64_t pause_records; /* pause a partition buffering this many unsealed records (0: never) */
  uint64_t pause_bytes;   /* ... or this many bytes (0: 64 MiB) */
  const ds_kafka_offset *positions; /* explicit start positions (a checkpoint), may be NULL */
  int npositions;
  /* Partitions without an explicit position start where `start` says, not at the group's
   * committed offset: a job restoring state from a checkpoint must not skip records that
   * batches after the checkpoint consumed (and committed). */
  int ignore_committed;
  /* 0: assign every partition of the topics to this consumer (no group membership; the
   * group is used for commits only). Start positions are fixed before start returns: the
   * explicit position, else (unless ignore_committed) the group's committed offset, else the
   * start policy resolved to the partition's low or high watermark. Partitions found later
   * (metadata refresh every refresh_ms) start at their low watermark: all their records
   * are new. Nonzero: subscribe and take the partitions the group assigns (rebalance). */
  int group_assign;
  /* Cluster mode (with group_assign): the ends of completed batches also go to this group,
   * which no member joins, and an assignment starts at the later of it and `group` (see
   * ds_kafka_positions.c); NULL: not. */
  const char *positions_group;
  int refresh_ms; /* direct assignment: metadata refresh period (0: 5000) */
  int timeout_ms; /* direct assignment: for the queries at start (0: 30000) */
} ds_kafka_source_opts;

typedef struct ds_kafka_source_stats {
  uint64_t records;    /* messages appended to the buffers */
  uint64_t bytes;      /* their record bytes */
  uint64_t pending;    /* records buffered and not sealed yet */
  uint64_t duplicates; /* messages dropped because their offset was already read */
  uint64_t skipped;    /* messages over DS_RECORD_MAX, dropped */
  uint64_t errors;     /* consumer errors reported by librdkafka */
  uint64_t commits_failed;
  int partitions; /* assigned now */
  int paused;     /* of them, paused for holding too much unsealed data */
  int connected;  /* no unresolved error since the last message */
  char last_error[256];
} ds_kafka_source_stats;

/* Creates the consumer, assigns the partitions (or subscribes to the topics) and starts its
 * thread. With direct assignment, fails when the topics' metadata or the start positions
 * cannot be had within timeout_ms. */
int ds_kafka_source_start(const ds_kafka_source_opts *opts, ds_kafka_source **out, char *err,
                          size_t errlen);
/* Cuts every assigned partition at most `max_per_part` records (0: all) past its last cut.
 * *out has one partition per assigned Kafka partition, in (topic, partition) order, or one
 * empty partition when none is assigned; *ranges (free()) has *nranges = the number of
 * assigned partitions entries in the same order. A partition assigned with a plan (see
 * ds_kafka_source_plan) is first cut exactly at its plan's end, in a batch holding only the
 * ranges of that plan's batch (none until all are fetched that far; 30 s at most), whatever
 * max_per_part. Returns 0 or -ENOMEM. */
int ds_kafka_source_seal(ds_kafka_source *s, uint64_t max_per_part, ds_sealed **out,
                         ds_kafka_range **ranges, int *nranges);
/* Whether a plan found at assignment is still to be read (the next seals take it, or nothing
 * while it is not fetched yet): 1 or 0. */
int ds_kafka_source_replay_due(ds_kafka_source *s);
/* The same cut as an earlier run made (a batch of the batch log re-run after a restart): for
 * each (topic, partition) of `until`, the records below its offset; other partitions give
 * none. Waits up to timeout_ms for the consumer to have fetched that far; *missing is the
 * number of listed partitions it had not reached by then (they give what they had). */
int ds_kafka_source_seal_until(ds_kafka_source *s, const ds_kafka_offset *until, int n,
                               int timeout_ms, ds_sealed **out, ds_kafka_range **ranges,
                               int *nranges, int *missing);
/* Cluster mode (a positions' group): before batch `tag` sends anything on, records its plan
 * for each range with records, [from, until): commits `from` to the positions' group,
 * synchronously, with metadata naming `until` and `tag` (and so does every later commit of
 * `from`, until one commits past it). A process that is assigned the partition next reads
 * exactly that range as its first batch, with the batch's other ranges it got (see
 * ds_kafka_source_seal), so that it sends on what the first run sent. No positions' group:
 * nothing. Returns 0, or -EIO with err. */
int ds_kafka_source_plan(ds_kafka_source *s, const ds_kafka_range *ranges, int n, const char *tag,
                         char *err, size_t errlen);
/* Commits `offsets` (next offsets to read) to the group, for the partitions assigned now (the
 * others belong to another member, or to nobody yet: they are skipped); async returns at once
 * and a failure is logged and counted. */
int ds_kafka_source_commit(ds_kafka_source *s, const ds_kafka_offset *offsets, int n, int async,
                           char *err, size_t errlen);
/* The consumer group metadata, serialized (for a transactional producer's
 * send_offsets_to_transaction); *buf is the caller's (free()). */
int ds_kafka_source_group_metadata(ds_kafka_source *s, void **buf, size_t *len, char *err,
                                   size_t errlen);
void ds_kafka_source_stats_get(ds_kafka_source *s, ds_kafka_source_stats *st);
/* Where the next batch of every partition held now starts (its last cut; partitions whose
 * position is not known yet are left out), in (topic, partition) order. *out (free()) points
 * into the source's topic names. Returns the count or -ENOMEM. */
int ds_kafka_source_positions(ds_kafka_source *s, ds_kafka_offset **out);
/* Stops reading (joins the consumer thread, wakes the refresher); what is buffered can still
 * be sealed, offsets committed. */
void ds_kafka_source_stop(ds_kafka_source *s);

/* The end of a source, which may wait for Kafka (seconds with the brokers gone), on a thread of
 * its own so that the caller's stays free (the driver keeps watching signals meanwhile, and a
 * second one abandons the wait): stops, commits `offsets` synchronously (2 s per attempt, tried
 * again after a quick failure, 3 s in all; n = 0: nothing), then leaves the group (2 s at
 * most). Then only _finish_state, _abandon and _free may be called. */
enum {
  DS_KAFKA_FINISH_NONE = 0, /* not started */
  DS_KAFKA_FINISH_COMMIT,   /* committing */
  DS_KAFKA_FINISH_CLOSE,    /* committed or failed; leaving the group */
  DS_KAFKA_FINISH_DONE,     /* the consumer is closed */
  DS_KAFKA_FINISH_ABANDONED /* done, but Kafka did not answer: the consumer was abandoned */
};
int ds_kafka_source_finish(ds_kafka_source *s, const ds_kafka_offset *offsets, int n, char *err,
                           size_t errlen);
/* Where the end is (DS_KAFKA_FINISH_*). Past _COMMIT, *commit_rc (may be NULL) is the commit's
 * result (0, or negative with its message in err). Any thread. */
int ds_kafka_source_finish_state(ds_kafka_source *s, int *commit_rc, char *err, size_t errlen);
/* The caller stops waiting for the end (the process is about to exit): a commit in progress
 * is not tried again and the group is not left; free() then leaves s to the process's exit. */
void ds_kafka_source_abandon(ds_kafka_source *s);
/* Stops, leaves the group and frees everything (after _finish: joins its thread once it is
 * done; while it runs, s is left to it and to the process's exit). */
void ds_kafka_source_free(ds_kafka_source *s);

typedef struct ds_kafka_producer_opts {
  const char *brokers;
  const ds_kafka_kv *conf;
  int nconf;
  const char *transactional_id; /* NULL: idempotent producer, no transactions */
  int timeout_ms;               /* for init_transactions and commits (0: 30 s) */
} ds_kafka_producer_opts;

typedef struct ds_kafka_header {
  const char *name;
  const void *value;
  size_t len;
} ds_kafka_header;

int ds_kafka_producer_new(const ds_kafka_producer_opts *opts, ds_kafka_producer **out, char *err,
                          size_t errlen);
/* Starts counting deliveries anew: the next flush reports messages sent from now on. */
void ds_kafka_producer_mark(ds_kafka_producer *p);
/* Asks for the topic's metadata now (waiting up to timeout_ms, 0: the producer's), so the
 * first message to it does not wait for librdkafka's next topic scan. */
int ds_kafka_producer_prepare(ds_kafka_producer *p, const char *topic, int timeout_ms, char *err,
                              size_t errlen);
/* Queues one message (key NULL: null key; value NULL: null value). partition -1: the
 * partitioner chooses. Waits (serving delivery reports) while the local queue is full. */
int ds_kafka_producer_send(ds_kafka_producer *p, const char *topic, int32_t partition,
                           const void *key, size_t klen, const void *value, size_t vlen,
                           const ds_kafka_header *headers, int nheaders, char *err, size_t errlen);
/* Waits until every message sent since the mark is delivered or failed. Returns 0 when all
 * were delivered, -EIO when some failed (err has the first failure), -ETIMEDOUT. *delivered
 * and *failed (may be NULL) count the messages since the mark. */
int ds_kafka_producer_flush(ds_kafka_producer *p, int timeout_ms, uint64_t *delivered,
                            uint64_t *failed, char *err, size_t errlen);
/* Transactions (transactional producers only). A failure that leaves the transaction
 * abortable aborts it; -EPIPE means the producer is fenced or failed fatally and must be
 * freed. */
int ds_kafka_producer_begin(ds_kafka_producer *p, char *err, size_t errlen);
int ds_kafka_producer_send_offsets(ds_kafka_producer *p, const ds_kafka_offset *offsets, int n,
                                   const void *group_metadata, size_t gm_len, char *err,
                                   size_t errlen);
int ds_kafka_producer_commit(ds_kafka_producer *p, char *err, size_t errlen);
int ds_kafka_producer_abort(ds_kafka_producer *p, char *err, size_t errlen);
/* Nonzero once the producer hit a fatal error: it cannot be used any more. */
int ds_kafka_producer_fatal(ds_kafka_producer *p);
/* Waits up to timeout_ms for queued messages, then destroys the producer. */
void ds_kafka_producer_free(ds_kafka_producer *p, int timeout_ms);

/* The committed offsets of `group` for the given partitions (offset -1: none), through a
 * short-lived consumer. offsets[i].offset is filled in. */
int ds_kafka_committed(const char *brokers, const char *group, const ds_kafka_kv *conf, int nconf,
                       ds_kafka_offset *offsets, int n, int timeout_ms, char *err,
                       size_t errlen);
/* The partitions of a topic (metadata request): *count, or an error. */
int ds_kafka_partition_count(const char *brokers, const char *topic, const ds_kafka_kv *conf,
                             int nconf, int timeout_ms, int *count, char *err, size_t errlen);

/* A reader of single partitions (ds_kafka_reader.c): a consumer with no group, for restoring
 * keyed state from a changelog. One thread at a time. */
typedef struct ds_kafka_reader ds_kafka_reader;
/* Called for every message read: key/value NULL when null. Returns <0 to stop (no memory). */
typedef int (*ds_kafka_reader_cb)(void *opaque, int64_t offset, const void *key, size_t klen,
                                  const void *value, size_t vlen);
int ds_kafka_reader_new(const char *brokers, const ds_kafka_kv *conf, int nconf,
                        ds_kafka_reader **out, char *err, size_t errlen);
int ds_kafka_reader_watermarks(ds_kafka_reader *r, const char *topic, int32_t partition,
                               int64_t *low, int64_t *high, int timeout_ms, char *err,
                               size_t errlen);
/* Reads topic/partition from offset `from` (or where the last read ended) up to `until`
 * (exclusive), at most `max` messages; *next: where the next read starts. -ETIMEDOUT when the
 * messages did not come within timeout_ms. */
int ds_kafka_reader_read(ds_kafka_reader *r, const char *topic, int32_t partition, int64_t from,
                         int64_t until, int max, int timeout_ms, ds_kafka_reader_cb cb,
                         void *opaque, int64_t *next, char *err, size_t errlen);
void ds_kafka_reader_free(ds_kafka_reader *r);
/* Creates topic with `partitions` partitions (admin API) unless it exists, then reads its
 * partition count into *count (which the caller compares: an existing topic keeps its own).
 * A broker without the admin API (librdkafka's mock) leaves creation to someone else: -ENOENT
 * when the topic is still missing. */
int ds_kafka_topic_ensure(const char *brokers, const char *topic, int partitions,
                          const ds_kafka_kv *conf, int nconf, int timeout_ms, int *count,
                          char *err, size_t errlen);

#endif
