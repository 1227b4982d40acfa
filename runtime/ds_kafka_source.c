/* ds_kafka_source.c - the Kafka direct-stream consumer (ds_kafka_source): assignment, the
 * per-partition buffers, batch cuts, offset commits and the end of a source.
 *
 * Owns its librdkafka consumer handle, the buffers (blocks and offsets of each partition), the
 * interned topic names (ranges and positions point into them until the source is freed) and
 * its threads:
 *   - the consumer thread (consumer_main) polls librdkafka and appends messages; librdkafka's
 *     error, commit and rebalance callbacks run on it (rebalances at the end on the finisher);
 *   - the refresher (refresh_main, direct assignment) looks for new partitions every few
 *     seconds; its metadata and offset queries never hold up the consumer thread;
 *   - the finisher (finish_main), started by ds_kafka_source_finish at the end: the last
 *     commit and leaving the group, which may wait seconds for Kafka, off the caller's thread.
 * The driver's thread starts, seals, commits, reads stats and positions, and frees. Everything
 * the threads share is under s->lock (the refresher's wakeup under s->refresh_lock; the end's
 * phase is atomic). */
#include "ds_kafka.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ds_kafka_int.h"
#include "ds_log.h"

#define POLL_BATCH 512 /* messages the consumer thread takes from librdkafka at a time */
#define BLOCK_MAX (1u << 20)        /* a partition's block grows up to this, then a new one */
#define PAUSE_BYTES_DEFAULT (64u << 20)
#define ERROR_REPEAT_S 10 /* an error of one kind is logged at most this often */
#define RECOVERED_S 3     /* no error for this long while messages arrive: recovered */
#define REFRESH_MS_DEFAULT 5000 /* direct assignment: how often to look for new partitions */
#define START_TIMEOUT_MS_DEFAULT 30000
#define REFRESH_TIMEOUT_MS 1000 /* each query of a refresh */
/* A group member giving a partition up waits this long at most for the batches holding its
 * records to complete and commit, so that the next owner starts after them. */
#define REVOKE_WAIT_MS 10000
#define REBALANCE_HOLD_S 2.0 /* asynchronous commits held after a "rebalance in progress" */
/* A plan's metadata on a commit: "dstream-plan e=<end> <batch tag>" (ds_kafka_source_plan). */
#define DS_KAFKA_PLAN_PREFIX "dstream-plan e="
#define REPLAY_WAIT_S 30.0 /* a planned range not fetched in full by then is read as it comes */

static const char *conf_get(const ds_kafka_kv *conf, int n, const char *key) {
  const char *v = NULL;
  for (int i = 0; i < n; i++)
    if (strcmp(conf[i].key, key) == 0) v = conf[i].value;
  return v;
}

typedef struct kpart {
  const char *topic; /* interned in the source */
  int32_t partition;
  int64_t next; /* the offset after the last message appended; -1 unknown */
  int64_t cut;  /* where the next batch starts; -1 unknown */
  ds_block **blocks; /* unsealed records; the last one grows while `open` */
  int nblocks, capblocks, open;
  size_t head;         /* byte offset of the first unsealed record in blocks[0] */
  uint64_t head_count; /* records of blocks[0] already sealed */
  int64_t *offs;       /* offsets of the unsealed records: offs[offs_head ..] */
  size_t noffs, offs_head, capoffs;
  uint64_t pending_bytes;
  int paused;
  /* Group assignment: the end of the last non-empty seal and the highest offset committed
   * (-1: none), so that a revocation waits for the batches in flight (rebalance_cb); while
   * `revoking`, seals take nothing of the partition (its next owner reads those records). */
  int64_t sealed_until, committed;
  int revoking;
  /* Cluster mode's plans (see ds_kafka_source_plan): the range [plan_from, plan_until) this
   * process's batch `plan_tag` is sending on, named in the metadata of every commit of
   * plan_from; and a plan found at assignment, which the first batches read exactly
   * (replay_until > 0: cut there, with the other partitions of batch `replay_tag`). */
  int64_t plan_from, plan_until, replay_until;
  char plan_tag[64], replay_tag[64];
  double replay_since;
} kpart;

struct ds_kafka_source {
  rd_kafka_t *rk;
  pthread_t thread;
  int thread_started;
  atomic_int stopping;
  int layout;
  uint64_t pause_records, pause_bytes;

  pthread_mutex_t lock; /* everything below */
  kpart *parts;         /* sorted by (topic, partition) */
  int nparts, capparts;
  char **topics; /* interned names */
  int ntopics;
  ds_kafka_offset *wanted; /* explicit start positions, used at assignment */
  /* Group assignment from committed offsets (cluster mode): where this process's completed
   * batches ended, per partition it ever owned (the offsets handed to commit). */
  ds_kafka_offset *done;
  int ndone;
  /* Cluster mode: the same ends committed to group "<group>.offsets" too, which no
   * rebalance refuses (ds_kafka_positions.c); NULL otherwise. */
  ds_kafka_positions *positions;
  int ignore_committed;     /* partitions not in `wanted` start at the start policy */
  int start_earliest;
  char group[256];          /* the group's name, for the log */
  int nwanted;
  int group_assign;          /* subscribed: the group assigns partitions (rebalance_cb) */
  const char **subscribed;   /* direct assignment: the topics (interned), for refreshes */
  int nsubscribed;
  int refresh_ms;
  pthread_t refresher; /* refresh_main */
  int refresher_started;
  pthread_mutex_t refresh_lock; /* wakes the refresher to stop */
  pthread_cond_t refresh_cond;
  pthread_cond_t commit_cond; /* a commit moved some kpart's `committed` (under s->lock) */
  char member_id[128];        /* group assignment: this member's id in the group ("" before) */
  uint64_t rebalances;        /* assignments and revocations handled */
  /* For destroy_handle: whether librdkafka holds this member's assignor state (a JoinGroup was
   * answered: `joined`, read as the leave begins; a rebalance then completed: `synced`). */
  int joined, synced;
  /* A commit was answered "rebalance in progress" or "illegal generation": asynchronous
   * commits wait for the rebalance's assignment (see commit_cb). */
  double rebalancing; /* when it was answered so (0: not) */
  char *scratch; /* FULL records are built here */
  size_t scratch_cap;
  ds_kafka_source_stats st;
  double last_error_at;
  int last_error_code;
  int error_logged;       /* a warning was logged and the stream has not recovered since */
  double last_error_seen; /* logged or not */

  /* The last commit and the close, on a thread of their own (ds_kafka_source_finish). */
  pthread_t finisher;
  int finisher_started;
  ds_kafka_offset *finish_offsets; /* what it commits (topics point into s->topics) */
  int nfinish_offsets;
  atomic_int finish_phase; /* DS_KAFKA_FINISH_COMMIT, _CLOSE, then _DONE */
  atomic_int abandoned;    /* the caller stopped waiting: free() leaves s to the process's exit */
  int finish_commit_rc;    /* set before finish_phase moves past _COMMIT */
  char finish_commit_err[300];
  int closed;            /* s->rk was destroyed (0: abandoned, still running) */
  /* A leave Kafka did not answer in time goes on in the background (reap): its queue, and who
   * still holds s (the owner, and the thread reaping), the last of them frees it. */
  rd_kafka_queue_t *leave_q;
  atomic_int holders;
};

static const char *intern(ds_kafka_source *s, const char *topic) {
  for (int i = 0; i < s->ntopics; i++)
    if (strcmp(s->topics[i], topic) == 0) return s->topics[i];
  char **t = realloc(s->topics, (size_t)(s->ntopics + 1) * sizeof *t);
  if (!t) return NULL;
  s->topics = t;
  if (!(t[s->ntopics] = strdup(topic))) return NULL;
  return t[s->ntopics++];
}

/* Sets the offset of (topic, partition) in the list *l of *n; topic is interned. Returns 0 or
 * -ENOMEM. */
static int offsets_put(ds_kafka_offset **l, int *n, const char *topic, int32_t partition,
                       int64_t offset) {
  for (int w = 0; w < *n; w++)
    if ((*l)[w].partition == partition && (*l)[w].topic == topic) {
      (*l)[w].offset = offset;
      return 0;
    }
  ds_kafka_offset *m = realloc(*l, (size_t)(*n + 1) * sizeof *m);
  if (!m) return -ENOMEM;
  *l = m;
  m[(*n)++] = (ds_kafka_offset){topic, partition, offset};
  return 0;
}

/* Sets the start position of (topic, partition) for its next assignment. */
static int wanted_set(ds_kafka_source *s, const char *topic, int32_t partition, int64_t offset) {
  return offsets_put(&s->wanted, &s->nwanted, topic, partition, offset);
}

/* Where this process's completed batches of (topic, partition) ended, or -1. */
static int64_t done_of(ds_kafka_source *s, const char *topic, int32_t partition) {
  for (int w = 0; w < s->ndone; w++)
    if (s->done[w].partition == partition && strcmp(s->done[w].topic, topic) == 0)
      return s->done[w].offset;
  return -1;
}

static int kpart_cmp(const char *topic, int32_t partition, const kpart *kp) {
  int c = strcmp(topic, kp->topic);
  if (c) return c;
  return partition < kp->partition ? -1 : partition > kp->partition;
}

/* Index of (topic, partition), or -(insertion point) - 1. Caller holds the lock. */
static int kpart_find(ds_kafka_source *s, const char *topic, int32_t partition) {
  int lo = 0, hi = s->nparts - 1;
  while (lo <= hi) {
    int mid = (lo + hi) / 2;
    int c = kpart_cmp(topic, partition, &s->parts[mid]);
    if (c == 0) return mid;
    if (c < 0) hi = mid - 1;
    else lo = mid + 1;
  }
  return -lo - 1;
}

static void kpart_clear(kpart *kp) {
  for (int i = 0; i < kp->nblocks; i++) ds_block_release(kp->blocks[i]);
  free(kp->blocks);
  free(kp->offs);
  kp->blocks = NULL;
  kp->offs = NULL;
  kp->nblocks = kp->capblocks = kp->open = 0;
  kp->noffs = kp->offs_head = kp->capoffs = 0;
  kp->head = kp->head_count = kp->pending_bytes = 0;
}

static uint64_t kpart_pending(const kpart *kp) { return kp->noffs - kp->offs_head; }

/* Counts an error and logs it, unless an error of the same kind was logged lately (a broker
 * that is down fails every reconnect attempt). Caller holds the lock. */
static void note_error(ds_kafka_source *s, int code, const char *text) {
  double t = ds_kafka__now_s();
  int repeat = code == s->last_error_code && t - s->last_error_at < ERROR_REPEAT_S;
  s->st.errors++;
  s->st.connected = 0;
  s->last_error_seen = t;
  snprintf(s->st.last_error, sizeof s->st.last_error, "%s", text);
  if (!repeat) {
    s->last_error_at = t;
    s->last_error_code = code;
    s->error_logged = 1;
    ds_log(DS_LOG_WARN, "kafka_stream: %s (partitions there stall until Kafka answers again)", text);
  }
}

static void error_cb(rd_kafka_t *rk, int code, const char *reason, void *opaque) {
  (void)rk;
  ds_kafka_source *s = opaque;
  char text[256];
  snprintf(text, sizeof text, "%s: %s", rd_kafka_err2name(code), reason);
  pthread_mutex_lock(&s->lock);
  note_error(s, code, text);
  pthread_mutex_unlock(&s->lock);
}

static void commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t code,
                      rd_kafka_topic_partition_list_t *offsets, void *opaque) {
  (void)rk;
  ds_kafka_source *s = opaque;
  if (code == RD_KAFKA_RESP_ERR_NO_ERROR) {
    for (int i = 0; i < offsets->cnt; i++)
      if (offsets->elems[i].err) {
        code = offsets->elems[i].err;
        break;
      }
  }
  if (code == RD_KAFKA_RESP_ERR_NO_ERROR || code == RD_KAFKA_RESP_ERR__NO_OFFSET) return;
  pthread_mutex_lock(&s->lock);
  s->st.commits_failed++;
  /* A group rebalancing: commits sent now race the generation's bump, and librdkafka takes
   * an "illegal generation" answer for a lost assignment (it revokes everything and rejoins,
   * which starts another rebalance: with a commit per batch, a storm of them). Hold the
   * asynchronous commits until the rebalance assigns; the next one commits every position. */
  int rebalancing = code == RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS ||
                    code == RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION;
  if (rebalancing) s->rebalancing = ds_kafka__now_s();
  pthread_mutex_unlock(&s->lock);
  if (rebalancing) {
    ds_log(DS_LOG_DEBUG, "kafka_stream: commit: %s (commits wait for the rebalance's end)",
           rd_kafka_err2str(code));
    return;
  }
  ds_log(DS_LOG_WARN, "kafka_stream: committing offsets failed: %s (the next batch commits again)",
         rd_kafka_err2str(code));
}

/* Called with the lock held. */
static int add_partition(ds_kafka_source *s, const char *topic, int32_t partition, int64_t start) {
  int i = kpart_find(s, topic, partition);
  if (i >= 0) return 0;
  i = -i - 1;
  if (s->nparts == s->capparts) {
    int cap = s->capparts ? s->capparts * 2 : 16;
    kpart *p = realloc(s->parts, (size_t)cap * sizeof *p);
    if (!p) return -ENOMEM;
    s->parts = p;
    s->capparts = cap;
  }
  const char *name = intern(s, topic);
  if (!name) return -ENOMEM;
  memmove(&s->parts[i + 1], &s->parts[i], (size_t)(s->nparts - i) * sizeof *s->parts);
  s->nparts++;
  kpart *kp = &s->parts[i];
  memset(kp, 0, sizeof *kp);
  kp->topic = name;
  kp->partition = partition;
  kp->next = kp->cut = start;
  kp->sealed_until = kp->committed = -1;
  return 0;
}

static void remove_partition(ds_kafka_source *s, const char *topic, int32_t partition) {
  int i = kpart_find(s, topic, partition);
  if (i < 0) return;
  kpart *kp = &s->parts[i];
  uint64_t dropped = kpart_pending(kp);
  s->st.pending -= dropped;
  if (dropped)
    ds_log(DS_LOG_INFO,
           "kafka_stream: %s [%d] was revoked; %llu records not yet in a batch are left to its "
           "next owner",
           kp->topic, (int)kp->partition, (unsigned long long)dropped);
  kpart_clear(kp);
  memmove(&s->parts[i], &s->parts[i + 1], (size_t)(s->nparts - i - 1) * sizeof *s->parts);
  s->nparts--;
}

static int commit_offsets(ds_kafka_source *s, const ds_kafka_offset *offsets, int n, int async,
                          int group_too, char *err, size_t errlen);

/* A revocation (a member joined or left) or a loss: before giving the partitions up, wait (at
 * most REVOKE_WAIT_MS) until every batch that took records of them has completed and
 * committed its offsets, then commit those offsets synchronously, as Kafka Streams commits in
 * onPartitionsRevoked. Otherwise the next owner starts at the offsets committed before the
 * batches in flight and processes their records again. Seals take nothing of a revoked
 * partition meanwhile; what was buffered and not sealed goes to the next owner. A lost
 * assignment (librdkafka took an "illegal generation" answer for one; a session that timed
 * out) commits to the positions' group only: the group refuses a member out of its generation,
 * and the next owner gets the partitions only once this member has rejoined without them,
 * after this returns, or once its session timed out. Not at stop (the last commit ran
 * already, and leaving the group must not wait). On the consumer thread, which reads nothing
 * meanwhile. */
static void revoke_wait(ds_kafka_source *s, rd_kafka_topic_partition_list_t *list, int lost) {
  if (atomic_load(&s->stopping)) return;
  double t0 = ds_kafka__now_s();
  pthread_mutex_lock(&s->lock);
  for (int i = 0; i < list->cnt; i++) {
    int k = kpart_find(s, list->elems[i].topic, list->elems[i].partition);
    if (k >= 0) s->parts[k].revoking = 1;
  }
  for (;;) {
    int waiting = 0;
    for (int i = 0; i < list->cnt; i++) {
      int k = kpart_find(s, list->elems[i].topic, list->elems[i].partition);
      if (k >= 0 && s->parts[k].sealed_until >= 0 && s->parts[k].committed < s->parts[k].sealed_until)
        waiting++;
    }
    double spent_ms = (ds_kafka__now_s() - t0) * 1000;
    if (!waiting || atomic_load(&s->stopping) || spent_ms >= REVOKE_WAIT_MS) {
      if (waiting)
        ds_log(DS_LOG_WARN, "kafka_stream: %d revoked partition(s) still had batches in flight "
               "after %d s: their next owner reads those records again", waiting,
               REVOKE_WAIT_MS / 1000);
      break;
    }
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += 100 * 1000000L;
    if (until.tv_nsec >= 1000000000L) until.tv_sec++, until.tv_nsec -= 1000000000L;
    pthread_cond_timedwait(&s->commit_cond, &s->lock, &until);
  }
  ds_kafka_offset *o = calloc((size_t)(list->cnt > 0 ? list->cnt : 1), sizeof *o);
  int n = 0;
  for (int i = 0; o && i < list->cnt; i++) {
    int k = kpart_find(s, list->elems[i].topic, list->elems[i].partition);
    if (k >= 0 && s->parts[k].committed >= 0)
      o[n++] = (ds_kafka_offset){s->parts[k].topic, s->parts[k].partition, s->parts[k].committed};
  }
  pthread_mutex_unlock(&s->lock);
  char err[300];
  int crc = n > 0 ? commit_offsets(s, o, n, 0, !lost, err, sizeof err) : 0;
  if (crc < 0) ds_log(DS_LOG_WARN, "kafka_stream: at a revocation: %s", err);
  for (int i = 0; i < n; i++)
    ds_log(DS_LOG_INFO, "kafka_stream: %s [%d] %s at offset %lld%s", o[i].topic,
           (int)o[i].partition, lost ? "lost" : "revoked", (long long)o[i].offset,
           crc < 0 ? " (not committed)" : " (committed)");
  free(o);
}

typedef struct plan_t {
  int64_t until; /* 0: none */
  char tag[64];
} plan_t;

/* The plan named by a committed position's metadata (DS_KAFKA_PLAN_PREFIX), if any. */
static void plan_parse(const rd_kafka_topic_partition_t *tp, plan_t *out) {
  char meta[128];
  size_t len = tp->metadata_size < sizeof meta - 1 ? tp->metadata_size : sizeof meta - 1;
  if (!tp->metadata || len <= strlen(DS_KAFKA_PLAN_PREFIX)) return;
  memcpy(meta, tp->metadata, len);
  meta[len] = '\0';
  long long until;
  char tag[64];
  if (strncmp(meta, DS_KAFKA_PLAN_PREFIX, strlen(DS_KAFKA_PLAN_PREFIX)) != 0 ||
      sscanf(meta + strlen(DS_KAFKA_PLAN_PREFIX), "%lld %63s", &until, tag) != 2)
    return;
  out->until = until;
  snprintf(out->tag, sizeof out->tag, "%s", tag);
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t code,
                         rd_kafka_topic_partition_list_t *list, void *opaque) {
  ds_kafka_source *s = opaque;
  int cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
  rd_kafka_error_t *error = NULL;
  rd_kafka_resp_err_t aerr = RD_KAFKA_RESP_ERR_NO_ERROR;
  char *member = rd_kafka_memberid(rk);
  pthread_mutex_lock(&s->lock);
  if (member) snprintf(s->member_id, sizeof s->member_id, "%s", member);
  s->rebalances++;
  pthread_mutex_unlock(&s->lock);
  if (member) rd_kafka_mem_free(rk, member);
  if (code == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
    plan_t *plans = NULL; /* per partition of the list: a plan found with its position */
    /* The group's committed offsets, read here rather than left to librdkafka: a partition
     * moved in a rebalance must start where its last owner's completed batches ended (a
     * fetch of them answered during the rebalance sent it to auto.offset.reset, and the
     * whole partition was read again). Not when positions come from a checkpoint. */
    if (!s->ignore_committed && list->cnt > 0) {
      plans = calloc((size_t)list->cnt, sizeof *plans);
      rd_kafka_topic_partition_list_t *c = rd_kafka_topic_partition_list_copy(list);
      rd_kafka_resp_err_t crc = rd_kafka_committed(rk, c, 10000);
      for (int i = 0; !crc && i < c->cnt; i++)
        if (!c->elems[i].err && c->elems[i].offset >= 0) list->elems[i].offset = c->elems[i].offset;
      if (crc)
        ds_log(DS_LOG_WARN, "kafka_stream: cannot read the group's committed offsets at an "
               "assignment: %s", rd_kafka_err2str(crc));
      rd_kafka_topic_partition_list_destroy(c);
      /* The positions' group, which no rebalance refuses: the later of the two. */
      if (s->positions) {
        c = rd_kafka_topic_partition_list_copy(list);
        for (int i = 0; i < c->cnt; i++) c->elems[i].offset = RD_KAFKA_OFFSET_INVALID;
        if (ds_kafka__positions_read(s->positions, c, 10000) == 0)
          for (int i = 0; i < c->cnt; i++) {
            if (!c->elems[i].err && c->elems[i].offset > list->elems[i].offset)
              list->elems[i].offset = c->elems[i].offset;
            /* A plan committed there: a batch of the last owner was sending that range on. */
            if (plans && !c->elems[i].err && c->elems[i].offset >= 0 &&
                c->elems[i].offset == list->elems[i].offset)
              plan_parse(&c->elems[i], &plans[i]);
          }
        rd_kafka_topic_partition_list_destroy(c);
      }
      /* A partition coming back to this process starts after the batches it completed here,
       * when the group's offset lags behind them: their commit was refused in a rebalance
       * (the mock answers commits "illegal generation" while a member joins), and reading
       * them again sent them on twice. Whoever owned the partition meanwhile and completed
       * more has committed more. */
      pthread_mutex_lock(&s->lock);
      for (int i = 0; i < list->cnt; i++) {
        int64_t d = done_of(s, list->elems[i].topic, list->elems[i].partition);
        if (d >= 0 && d > list->elems[i].offset) {
          if (plans) plans[i].until = -1; /* this process completed past it */
          ds_log(DS_LOG_INFO, "kafka_stream: %s [%d] goes on at offset %lld, where this process's"
                 " completed batches ended (the group's offset, %lld, lags behind)",
                 list->elems[i].topic, (int)list->elems[i].partition, (long long)d,
                 (long long)list->elems[i].offset);
          list->elems[i].offset = d;
        }
      }
      pthread_mutex_unlock(&s->lock);
    }
    pthread_mutex_lock(&s->lock);
    for (int i = 0; i < list->cnt; i++) {
      rd_kafka_topic_partition_t *tp = &list->elems[i];
      int64_t start = -1;
      for (int w = 0; w < s->nwanted; w++)
        if (s->wanted[w].partition == tp->partition && strcmp(s->wanted[w].topic, tp->topic) == 0)
          start = s->wanted[w].offset;
      if (start >= 0) tp->offset = start;
      else if (s->ignore_committed)
        tp->offset = s->start_earliest ? RD_KAFKA_OFFSET_BEGINNING : RD_KAFKA_OFFSET_END;
      if (add_partition(s, tp->topic, tp->partition, start) < 0)
        ds_log(DS_LOG_ERROR, "kafka_stream: out of memory adding %s [%d]", tp->topic,
               (int)tp->partition);
      else if (plans && start < 0 && plans[i].until > tp->offset && tp->offset >= 0) {
        kpart *kp = &s->parts[kpart_find(s, tp->topic, tp->partition)];
        kp->replay_until = plans[i].until;
        snprintf(kp->replay_tag, sizeof kp->replay_tag, "%s", plans[i].tag);
        kp->replay_since = ds_kafka__now_s();
        ds_log(DS_LOG_INFO, "kafka_stream: %s [%d] reads offsets %lld to %lld first, as one batch:"
               " its last owner's batch %s was sending them on", tp->topic, (int)tp->partition,
               (long long)tp->offset, (long long)plans[i].until, plans[i].tag);
      }
    }
    free(plans);
    s->st.partitions = s->nparts;
    s->synced = 1; /* called at the end of every rebalance, even for an empty assignment */
    s->rebalancing = 0; /* (cooperative: the end of every rebalance assigns, maybe nothing) */
    pthread_mutex_unlock(&s->lock);
    ds_log(DS_LOG_INFO, "kafka_stream: %d partitions assigned", list->cnt);
    for (int i = 0; i < list->cnt; i++)
      ds_log(DS_LOG_DEBUG, "kafka_stream: %s [%d] assigned from offset %lld", list->elems[i].topic,
             (int)list->elems[i].partition, (long long)list->elems[i].offset);
    if (cooperative) error = rd_kafka_incremental_assign(rk, list);
    else aerr = rd_kafka_assign(rk, list);
    /* A partition paused under an earlier assignment stays paused: resume them all. */
    rd_kafka_resume_partitions(rk, list);
  } else {
    /* Lost (the session timed out, or an illegal generation): the group's commit would be
     * refused, the positions' group takes it (see revoke_wait). */
    int lost = rd_kafka_assignment_lost(rk);
    if (lost)
      ds_log(DS_LOG_INFO, "kafka_stream: %d partition(s) lost (the group went on without this "
             "member): the batches holding their records complete first", list->cnt);
    if (!lost || s->positions) revoke_wait(s, list, lost);
    pthread_mutex_lock(&s->lock);
    for (int i = 0; i < list->cnt; i++)
      remove_partition(s, list->elems[i].topic, list->elems[i].partition);
    s->st.partitions = s->nparts;
    s->st.paused = 0;
    for (int i = 0; i < s->nparts; i++) s->st.paused += s->parts[i].paused;
    pthread_mutex_unlock(&s->lock);
    if (cooperative) error = rd_kafka_incremental_unassign(rk, list);
    else aerr = rd_kafka_assign(rk, NULL);
  }
  if (error) {
    ds_log(DS_LOG_WARN, "kafka_stream: rebalance: %s", rd_kafka_error_string(error));
    rd_kafka_error_destroy(error);
  } else if (aerr) {
    ds_log(DS_LOG_WARN, "kafka_stream: rebalance: %s", rd_kafka_err2str(aerr));
  }
}

/* Builds the record of `m` in the source's layout; returns its bytes, or NULL (out of memory). */
static const char *make_record(ds_kafka_source *s, const rd_kafka_message_t *m, size_t *len) {
  if (s->layout == DS_KAFKA_LAYOUT_VALUE) {
    *len = m->payload ? m->len : 0;
    return m->payload ? m->payload : "";
  }
  const char *topic = rd_kafka_topic_name(m->rkt);
  size_t tlen = strlen(topic);
  if (tlen > 65535) tlen = 65535;
  rd_kafka_headers_t *hdrs = NULL;
  size_t nh = 0, hbytes = 0;
  if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR && hdrs) {
    nh = rd_kafka_header_cnt(hdrs);
    for (size_t i = 0; i < nh; i++) {
      const char *name;
      const void *val;
      size_t vlen;
      rd_kafka_header_get_all(hdrs, i, &name, &val, &vlen);
      hbytes += 8 + strlen(name) + (val ? vlen : 0);
    }
  }
  size_t klen = m->key ? m->key_len : 0, vlen = m->payload ? m->len : 0;
  size_t total = sizeof(ds_kafka_rec) + tlen + klen + hbytes + vlen;
  if (total > s->scratch_cap) {
    size_t cap = s->scratch_cap ? s->scratch_cap : 4096;
    while (cap < total) cap *= 2;
    char *p = realloc(s->scratch, cap);
    if (!p) return NULL;
    s->scratch = p;
    s->scratch_cap = cap;
  }
  ds_kafka_rec h;
  memset(&h, 0, sizeof h);
  rd_kafka_timestamp_type_t tstype;
  h.offset = m->offset;
  h.timestamp = rd_kafka_message_timestamp(m, &tstype);
  h.tstype = tstype == RD_KAFKA_TIMESTAMP_CREATE_TIME       ? 1
             : tstype == RD_KAFKA_TIMESTAMP_LOG_APPEND_TIME ? 2
                                                            : 0;
  h.partition = m->partition;
  h.key_len = (uint32_t)klen;
  h.nheaders = (uint32_t)nh;
  h.topic_len = (uint16_t)tlen;
  h.flags = (m->key ? DS_KAFKA_REC_KEY : 0) | (m->payload ? DS_KAFKA_REC_VALUE : 0);
  char *w = s->scratch;
  memcpy(w, &h, sizeof h);
  w += sizeof h;
  memcpy(w, topic, tlen);
  w += tlen;
  if (klen) memcpy(w, m->key, klen);
  w += klen;
  for (size_t i = 0; i < nh; i++) {
    const char *name;
    const void *val;
    size_t hv;
    rd_kafka_header_get_all(hdrs, i, &name, &val, &hv);
    uint32_t nl = (uint32_t)strlen(name);
    int32_t vl = val ? (int32_t)hv : -1;
    memcpy(w, &nl, 4);
    memcpy(w + 4, &vl, 4);
    memcpy(w + 8, name, nl);
    w += 8 + nl;
    if (val && hv) memcpy(w, val, hv);
    if (val) w += hv;
  }
  if (vlen) memcpy(w, m->payload, vlen);
  w += vlen;
  *len = (size_t)(w - s->scratch);
  return s->scratch;
}

/* Caller holds the lock. */
static int kpart_append(ds_kafka_source *s, kpart *kp, const char *rec, size_t len, int64_t off) {
  ds_block *cur = kp->nblocks && kp->open ? kp->blocks[kp->nblocks - 1] : NULL;
  if (!cur || (cur->len > 0 && cur->len + 4 + len > BLOCK_MAX)) {
    if (kp->nblocks == kp->capblocks) {
      int cap = kp->capblocks ? kp->capblocks * 2 : 8;
      ds_block **b = realloc(kp->blocks, (size_t)cap * sizeof *b);
      if (!b) return -ENOMEM;
      kp->blocks = b;
      kp->capblocks = cap;
    }
    size_t cap = len + 4 > 4096 ? len + 4 : 4096;
    if (!(cur = ds_block_new(DS_FMT_LINES, cap))) return -ENOMEM;
    kp->blocks[kp->nblocks++] = cur;
    kp->open = 1;
  }
  if (kp->noffs == kp->capoffs) {
    if (kp->offs_head > 0) { /* reuse the space of offsets already sealed */
      memmove(kp->offs, kp->offs + kp->offs_head, (kp->noffs - kp->offs_head) * sizeof *kp->offs);
      kp->noffs -= kp->offs_head;
      kp->offs_head = 0;
    }
    if (kp->noffs == kp->capoffs) {
      size_t cap = kp->capoffs ? kp->capoffs * 2 : 1024;
      int64_t *o = realloc(kp->offs, cap * sizeof *o);
      if (!o) return -ENOMEM;
      kp->offs = o;
      kp->capoffs = cap;
    }
  }
  int rc = ds_block_append_record(cur, rec, len);
  if (rc) return rc;
  kp->offs[kp->noffs++] = off;
  kp->pending_bytes += 4 + len;
  if (kp->cut < 0) kp->cut = off;
  kp->next = off + 1;
  (void)s;
  return 0;
}

/* Appends one polled message (or notes its error). Called with s->lock held. */
static void handle_message(ds_kafka_source *s, rd_kafka_message_t *m) {
  if (m->err) {
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) return;
    char text[256];
    if (m->rkt)
      snprintf(text, sizeof text, "%s [%d]: %s", rd_kafka_topic_name(m->rkt), (int)m->partition,
               rd_kafka_message_errstr(m));
    else
      snprintf(text, sizeof text, "%s", rd_kafka_message_errstr(m));
    note_error(s, m->err, text);
    return;
  }
  const char *topic = rd_kafka_topic_name(m->rkt);
  int i = kpart_find(s, topic, m->partition);
  if (i < 0) return; /* no longer assigned */
  kpart *kp = &s->parts[i];
  if (kp->next >= 0 && m->offset < kp->next) {
    s->st.duplicates++;
    return;
  }
  size_t len;
  const char *rec = make_record(s, m, &len);
  int rc = rec ? (len > DS_RECORD_MAX ? -E2BIG : kpart_append(s, kp, rec, len, m->offset)) : -ENOMEM;
  if (rc) {
    s->st.skipped++;
    kp->next = m->offset + 1;
    ds_log(DS_LOG_WARN, "kafka_stream: %s [%d] offset %lld skipped: %s", topic, (int)m->partition,
           (long long)m->offset,
           rc == -E2BIG ? "the record is larger than the 64 MiB record limit" : "out of memory");
    return;
  }
  s->st.records++;
  s->st.bytes += len;
  s->st.pending++;
  s->st.connected = 1;
  /* Recovered: messages arrive and no error came for a while (while one broker of several is
   * down, the partitions it leads stall but others still deliver). */
  if (s->error_logged && ds_kafka__now_s() - s->last_error_seen >= RECOVERED_S) {
    s->error_logged = 0;
    ds_log(DS_LOG_WARN, "kafka_stream: receiving again (no Kafka error for %d s)", RECOVERED_S);
  }
  if (!kp->paused && ((s->pause_records && kpart_pending(kp) >= s->pause_records) ||
                      kp->pending_bytes >= s->pause_bytes)) {
    /* Under the lock so that a seal's resume cannot overtake this pause. Pausing only
     * queues a request; on resume librdkafka fetches from the offset after the last message
     * it gave us, and anything it gives twice is dropped above. */
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, kp->topic, kp->partition);
    rd_kafka_pause_partitions(s->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    kp->paused = 1;
    s->st.paused++;
  }
}

/* ---- direct assignment ------------------------------------------------------------------ */

/* The partition count of `topic` from a metadata request: 0 when the topic does not exist. */
static int topic_partition_count(rd_kafka_t *rk, const char *topic, int timeout_ms, int *count,
                                 char *err, size_t errlen) {
  rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
  if (!rkt) {
    ds_kafka__set_err(err, errlen, "topic %s: %s", topic, rd_kafka_err2str(rd_kafka_last_error()));
    return -EINVAL;
  }
  const struct rd_kafka_metadata *md = NULL;
  rd_kafka_resp_err_t rc = rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms);
  int result = 0;
  if (rc) {
    ds_kafka__set_err(err, errlen, "cannot read the metadata of topic %s: %s", topic,
                      rd_kafka_err2str(rc));
    result = -EIO;
  } else {
    /* A topic that does not exist (or has no partitions yet) counts none: a later refresh
     * finds them. */
    *count = 0;
    for (int i = 0; i < md->topic_cnt; i++)
      if (strcmp(md->topics[i].topic, topic) == 0 &&
          md->topics[i].err != RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
        *count = md->topics[i].partition_cnt;
  }
  if (md) rd_kafka_metadata_destroy(md);
  rd_kafka_topic_destroy(rkt);
  return result;
}

/* Fills in the start offset of every element of l: the wanted position, else the group's
 * committed offset (use_committed), else the low (earliest) or high watermark. A position
 * below the low watermark (records deleted since) moves up to it; one past the high watermark
 * is replaced by the start policy's. */
static int resolve_starts(ds_kafka_source *s, rd_kafka_topic_partition_list_t *l, int earliest,
                          int use_committed, int timeout_ms, char *err, size_t errlen) {
  rd_kafka_topic_partition_list_t *ask = rd_kafka_topic_partition_list_new(l->cnt > 0 ? l->cnt : 1);
  pthread_mutex_lock(&s->lock);
  for (int i = 0; i < l->cnt; i++) {
    rd_kafka_topic_partition_t *tp = &l->elems[i];
    tp->offset = RD_KAFKA_OFFSET_INVALID;
    for (int w = 0; w < s->nwanted; w++)
      if (s->wanted[w].partition == tp->partition && strcmp(s->wanted[w].topic, tp->topic) == 0)
        tp->offset = s->wanted[w].offset;
    if (tp->offset < 0 && use_committed) rd_kafka_topic_partition_list_add(ask, tp->topic, tp->partition);
  }
  pthread_mutex_unlock(&s->lock);
  int result = 0;
  if (ask->cnt > 0) {
    rd_kafka_resp_err_t rc = rd_kafka_committed(s->rk, ask, timeout_ms);
    if (rc) {
      ds_kafka__set_err(err, errlen, "cannot read the group's committed offsets: %s",
                        rd_kafka_err2str(rc));
      result = -EIO;
    }
    int from_group = 0;
    for (int i = 0; i < ask->cnt && !result; i++) {
      rd_kafka_topic_partition_t *c = &ask->elems[i];
      if (c->err || c->offset < 0) continue;
      rd_kafka_topic_partition_t *tp = rd_kafka_topic_partition_list_find(l, c->topic, c->partition);
      if (!tp) continue;
      tp->offset = c->offset;
      from_group++;
    }
    /* A second run in a group the first committed to starts where the first ended, whatever
     * `start` says: a job that reads nothing for that reason is told why at --log-level info. */
    if (from_group > 0)
      ds_log(DS_LOG_INFO,
             "kafka_stream: %d of %d partition(s) start at group %s's committed offsets (start = %s "
             "is for partitions without one: a new group reads the topic again)",
             from_group, l->cnt, s->group, earliest ? "earliest" : "latest");
  }
  rd_kafka_topic_partition_list_destroy(ask);
  for (int i = 0; i < l->cnt && !result; i++) {
    rd_kafka_topic_partition_t *tp = &l->elems[i];
    int64_t low, high;
    if (atomic_load(&s->stopping)) {
      ds_kafka__set_err(err, errlen, "stopped");
      return -ECANCELED;
    }
    rd_kafka_resp_err_t rc =
        rd_kafka_query_watermark_offsets(s->rk, tp->topic, tp->partition, &low, &high, timeout_ms);
    if (rc) {
      ds_kafka__set_err(err, errlen, "cannot read the offsets of %s [%d]: %s", tp->topic,
                        (int)tp->partition, rd_kafka_err2str(rc));
      result = -EIO;
    } else if (tp->offset < 0) {
      tp->offset = earliest ? low : high;
    } else if (tp->offset < low) {
      ds_log(DS_LOG_WARN,
             "kafka_stream: %s [%d] starts at offset %lld, not %lld: the records before were "
             "deleted from the log",
             tp->topic, (int)tp->partition, (long long)low, (long long)tp->offset);
      tp->offset = low;
    } else if (tp->offset > high) {
      /* A log shorter than the position (the topic was made anew): what is there is new. The
       * position must be one the log has: records below it would be taken for duplicates. */
      ds_log(DS_LOG_WARN,
             "kafka_stream: %s [%d]: position %lld is past the end of the log (%lld): it starts "
             "at %lld (start = %s)",
             tp->topic, (int)tp->partition, (long long)tp->offset, (long long)high,
             (long long)(earliest ? low : high), earliest ? "earliest" : "latest");
      tp->offset = earliest ? low : high;
    }
  }
  return result;
}

/* Adds the partitions of l (offsets resolved) to the source and to the consumer's assignment
 * (incrementally: the others go on where they are). */
static int assign_more(ds_kafka_source *s, rd_kafka_topic_partition_list_t *l, char *err,
                       size_t errlen) {
  pthread_mutex_lock(&s->lock);
  int rc = 0;
  for (int i = 0; i < l->cnt && !rc; i++)
    rc = add_partition(s, l->elems[i].topic, l->elems[i].partition, l->elems[i].offset);
  s->st.partitions = s->nparts;
  pthread_mutex_unlock(&s->lock);
  if (rc) {
    ds_kafka__set_err(err, errlen, "out of memory");
    return rc;
  }
  rd_kafka_error_t *e = rd_kafka_incremental_assign(s->rk, l);
  if (e) {
    ds_kafka__set_err(err, errlen, "cannot assign the partitions: %s", rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
    return -EIO;
  }
  return 0;
}

/* The partitions of the subscribed topics that the source does not hold, from a metadata
 * request each; NULL on error. */
static rd_kafka_topic_partition_list_t *partitions_missing(ds_kafka_source *s, int timeout_ms,
                                                           int warn_empty, char *err,
                                                           size_t errlen) {
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
  for (int t = 0; t < s->nsubscribed; t++) {
    int count = 0;
    if (topic_partition_count(s->rk, s->subscribed[t], timeout_ms, &count, err, errlen) < 0) {
      rd_kafka_topic_partition_list_destroy(l);
      return NULL;
    }
    if (count == 0 && warn_empty)
      ds_log(DS_LOG_WARN, "kafka_stream: topic %s does not exist (yet): its partitions are read "
             "from their start once it has some", s->subscribed[t]);
    pthread_mutex_lock(&s->lock);
    for (int p = 0; p < count; p++)
      if (kpart_find(s, s->subscribed[t], p) < 0)
        rd_kafka_topic_partition_list_add(l, s->subscribed[t], p);
    pthread_mutex_unlock(&s->lock);
  }
  return l;
}

/* At start: every partition of the topics, at positions fixed now. */
static int assign_all(ds_kafka_source *s, int timeout_ms, char *err, size_t errlen) {
  rd_kafka_topic_partition_list_t *l = partitions_missing(s, timeout_ms, 1, err, errlen);
  if (!l) return -EIO;
  int rc = resolve_starts(s, l, s->start_earliest, !s->ignore_committed, timeout_ms, err, errlen);
  if (rc == 0) rc = assign_more(s, l, err, errlen);
  if (rc == 0) ds_log(DS_LOG_INFO, "kafka_stream: %d partitions assigned", l->cnt);
  rd_kafka_topic_partition_list_destroy(l);
  return rc;
}

/* On the consumer thread, every refresh_ms: partitions added since (a topic's partition count
 * grew, or it was created) start at their low watermark, unless a position or a committed
 * offset says otherwise. Failures are retried at the next refresh. */
static void refresh_partitions(ds_kafka_source *s) {
  char err[400];
  rd_kafka_topic_partition_list_t *l = partitions_missing(s, REFRESH_TIMEOUT_MS, 0, err, sizeof err);
  if (!l) {
    ds_log(DS_LOG_DEBUG, "kafka_stream: metadata refresh: %s", err);
    return;
  }
  if (l->cnt > 0) {
    int rc = resolve_starts(s, l, 1, !s->ignore_committed, REFRESH_TIMEOUT_MS, err, sizeof err);
    if (rc == 0) rc = assign_more(s, l, err, sizeof err);
    if (rc == 0)
      ds_log(DS_LOG_INFO, "kafka_stream: %d new partition(s) assigned, first %s [%d] from offset %lld",
             l->cnt, l->elems[0].topic, (int)l->elems[0].partition, (long long)l->elems[0].offset);
    else
      ds_log(DS_LOG_DEBUG, "kafka_stream: new partitions: %s (retried)", err);
  }
  rd_kafka_topic_partition_list_destroy(l);
}

/* The refresh thread (direct assignment): its queries may take a while, and must not hold up
 * the consumer thread. */
static void *refresh_main(void *arg) {
  ds_kafka_source *s = arg;
  pthread_mutex_lock(&s->refresh_lock);
  while (!atomic_load(&s->stopping)) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += s->refresh_ms / 1000;
    until.tv_nsec += (long)(s->refresh_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) until.tv_sec++, until.tv_nsec -= 1000000000L;
    while (!atomic_load(&s->stopping) &&
           pthread_cond_timedwait(&s->refresh_cond, &s->refresh_lock, &until) == 0) {
    }
    if (atomic_load(&s->stopping)) break;
    pthread_mutex_unlock(&s->refresh_lock);
    refresh_partitions(s);
    pthread_mutex_lock(&s->refresh_lock);
  }
  pthread_mutex_unlock(&s->refresh_lock);
  return NULL;
}

/* The consumer thread: waits for a message, then takes what else librdkafka has queued (up
 * to POLL_BATCH) without waiting, and appends them under one hold of the lock. One message
 * per poll took a lock and a clock read per message: a tenth of a two-worker Kafka word
 * count's samples. The batch call is given no time: with some, it waits for a full batch,
 * which would hold a trickle of records back past its batch's cut. Rebalance and error
 * callbacks run inside either call, outside the lock. A message taken before a rebalance is
 * appended after its callback: librdkafka drops from the batch those of a partition whose
 * fetch stopped, restarted or was paused or seeked (its barrier op, since 2.0), and
 * handle_message drops one of a partition no longer assigned and one already appended. */
static void *consumer_main(void *arg) {
  ds_kafka_source *s = arg;
  rd_kafka_queue_t *q = rd_kafka_queue_get_consumer(s->rk); /* (the main queue forwards here) */
  rd_kafka_message_t *batch[POLL_BATCH];
  while (!atomic_load(&s->stopping)) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(s->rk, 100);
    if (!m) continue;
    batch[0] = m;
    ssize_t n = 1;
    if (q) {
      ssize_t more = rd_kafka_consume_batch_queue(q, 0, batch + 1, POLL_BATCH - 1);
      if (more > 0) n += more;
    }
    pthread_mutex_lock(&s->lock);
    for (ssize_t i = 0; i < n; i++) handle_message(s, batch[i]);
    pthread_mutex_unlock(&s->lock);
    for (ssize_t i = 0; i < n; i++) rd_kafka_message_destroy(batch[i]);
  }
  if (q) rd_kafka_queue_destroy(q);
  return NULL;
}

int ds_kafka_source_start(const ds_kafka_source_opts *o, ds_kafka_source **out, char *err,
                          size_t errlen) {
  *out = NULL;
  if (!o->brokers || !o->group || o->ntopics < 1) {
    ds_kafka__set_err(err, errlen, "brokers, group and at least one topic are needed");
    return -EINVAL;
  }
  const char *ac = conf_get(o->conf, o->nconf, "enable.auto.commit");
  if (ac && strcmp(ac, "false") != 0) {
    ds_kafka__set_err(err, errlen, "enable.auto.commit must stay false: offsets are committed "
                                   "after each batch's output");
    return -EINVAL;
  }
  ds_kafka_source *s = calloc(1, sizeof *s);
  if (!s) return -ENOMEM;
  pthread_mutex_init(&s->lock, NULL);
  pthread_mutex_init(&s->refresh_lock, NULL);
  pthread_cond_init(&s->refresh_cond, NULL);
  pthread_cond_init(&s->commit_cond, NULL);
  s->layout = o->layout;
  s->pause_records = o->pause_records;
  s->pause_bytes = o->pause_bytes ? o->pause_bytes : PAUSE_BYTES_DEFAULT;
  s->st.connected = 1;
  s->ignore_committed = o->ignore_committed;
  s->start_earliest = o->start && strcmp(o->start, "earliest") == 0;
  snprintf(s->group, sizeof s->group, "%s", o->group);
  s->group_assign = o->group_assign;
  s->refresh_ms = o->refresh_ms > 0 ? o->refresh_ms : REFRESH_MS_DEFAULT;
  if (!(s->subscribed = calloc((size_t)o->ntopics, sizeof *s->subscribed))) goto oom;
  for (int i = 0; i < o->ntopics; i++)
    if (!(s->subscribed[s->nsubscribed++] = intern(s, o->topics[i]))) goto oom;
  if (o->npositions > 0) {
    s->wanted = calloc((size_t)o->npositions, sizeof *s->wanted);
    if (!s->wanted) goto oom;
    for (int i = 0; i < o->npositions; i++) {
      s->wanted[i] = o->positions[i];
      if (!(s->wanted[i].topic = intern(s, o->positions[i].topic))) goto oom;
    }
    s->nwanted = o->npositions;
  }
  const ds_kafka_kv defaults[] = {
      {"group.id", o->group},
      {"auto.offset.reset", o->start && strcmp(o->start, "earliest") == 0 ? "earliest" : "latest"},
      {"enable.auto.commit", "false"},
      {"enable.auto.offset.store", "false"},
      {"enable.partition.eof", "false"},
      {"client.id", "dstream"},
      {"reconnect.backoff.max.ms", "2000"},
      /* librdkafka before 2.2 stops fetching a partition for a fixed second once its local
       * queue holds queued.min.messages (100000 by default): a consumer behind by that many
       * small messages read in bursts (8 M words from 24 partitions: 4.4 s, 2.5 s with this).
       * The queue's bytes (queued.max.messages.kbytes) and the source's own pause
       * (pause_bytes) still bound the memory. */
      {"queued.min.messages", "1000000"},
  };
  rd_kafka_conf_t *c = ds_kafka__conf(o->brokers, defaults,
                                      (int)(sizeof defaults / sizeof *defaults), o->conf, o->nconf,
                                      err, errlen);
  if (!c) goto fail;
  rd_kafka_conf_set_opaque(c, s);
  rd_kafka_conf_set_error_cb(c, error_cb);
  if (s->group_assign) rd_kafka_conf_set_rebalance_cb(c, rebalance_cb);
  rd_kafka_conf_set_offset_commit_cb(c, commit_cb);
  if (!(s->rk = ds_kafka__client(RD_KAFKA_CONSUMER, c, "consumer", err, errlen))) goto fail;
  if (s->group_assign && o->positions_group &&
      !(s->positions = ds_kafka__positions_new(o->brokers, o->positions_group, o->conf, o->nconf,
                                               err, errlen)))
    goto fail;
  rd_kafka_poll_set_consumer(s->rk);
  if (s->group_assign) {
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(o->ntopics);
    for (int i = 0; i < o->ntopics; i++)
      rd_kafka_topic_partition_list_add(topics, o->topics[i], RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t rc = rd_kafka_subscribe(s->rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (rc) {
      ds_kafka__set_err(err, errlen, "cannot subscribe: %s", rd_kafka_err2str(rc));
      goto fail;
    }
  } else {
    if (assign_all(s, o->timeout_ms > 0 ? o->timeout_ms : START_TIMEOUT_MS_DEFAULT, err, errlen) < 0)
      goto fail;
  }
  if (pthread_create(&s->thread, NULL, consumer_main, s) != 0) {
    ds_kafka__set_err(err, errlen, "cannot start the consumer thread");
    goto fail;
  }
  s->thread_started = 1;
  if (!s->group_assign) {
    if (pthread_create(&s->refresher, NULL, refresh_main, s) != 0) {
      ds_kafka__set_err(err, errlen, "cannot start the metadata refresh thread");
      goto fail;
    }
    s->refresher_started = 1;
  }
  *out = s;
  return 0;
oom:
  ds_kafka__set_err(err, errlen, "out of memory");
fail:
  ds_kafka_source_free(s);
  return -EINVAL;
}

/* Moves up to `max` unsealed records of kp into part. Caller holds the lock. */
static int kpart_seal(kpart *kp, uint64_t max, ds_part *part, ds_kafka_range *r, uint64_t *bytes) {
  uint64_t take = kpart_pending(kp);
  if (max && take > max) take = max;
  r->topic = kp->topic;
  r->partition = kp->partition;
  r->from = r->until = kp->cut;
  r->count = take;
  if (take == 0) return 0;
  uint64_t need = take;
  int consumed = 0;                          /* blocks fully sealed */
  size_t new_head = 0;                       /* where blocks[0] starts after this seal */
  uint64_t new_head_count = 0;
  for (int i = 0; i < kp->nblocks && need > 0; i++) {
    ds_block *b = kp->blocks[i];
    size_t start = i == 0 ? kp->head : 0;
    uint64_t before = i == 0 ? kp->head_count : 0;
    uint64_t avail = b->count - before;
    if (avail <= need) {
      if (ds_part_add_slice(part, b, start, b->len - start, avail)) return -ENOMEM;
      *bytes += b->len - start;
      need -= avail;
      consumed++;
    } else {
      size_t end = start;
      for (uint64_t k = 0; k < need; k++) {
        uint32_t len;
        memcpy(&len, b->data + end, 4);
        end += 4 + (size_t)len;
      }
      if (ds_part_add_slice(part, b, start, end - start, need)) return -ENOMEM;
      *bytes += end - start;
      new_head = end; /* the blocks before this one are released below */
      new_head_count = before + need;
      need = 0;
    }
  }
  /* Every block a slice points into is read-only now: the next message starts a new block. */
  kp->open = 0;
  for (int i = 0; i < consumed; i++) ds_block_release(kp->blocks[i]);
  memmove(kp->blocks, kp->blocks + consumed, (size_t)(kp->nblocks - consumed) * sizeof *kp->blocks);
  kp->nblocks -= consumed;
  kp->head = new_head;
  kp->head_count = new_head_count;
  r->until = kp->offs[kp->offs_head + take - 1] + 1;
  kp->offs_head += take;
  if (kp->offs_head == kp->noffs) kp->offs_head = kp->noffs = 0;
  kp->cut = r->until;
  uint64_t left = 0;
  for (int i = 0; i < kp->nblocks; i++)
    left += kp->blocks[i]->len - (i == 0 ? kp->head : 0);
  kp->pending_bytes = left;
  return 0;
}

/* The offset before which `until` cuts partition kp (-1: it is not listed). */
static int64_t until_of(const kpart *kp, const ds_kafka_offset *until, int n) {
  for (int i = 0; i < n; i++)
    if (until[i].partition == kp->partition && strcmp(until[i].topic, kp->topic) == 0)
      return until[i].offset;
  return -1;
}

/* How many unsealed records of kp lie below offset `until`. Caller holds the lock. */
static uint64_t kpart_below(const kpart *kp, int64_t until) {
  uint64_t n = 0;
  for (size_t i = kp->offs_head; i < kp->noffs && kp->offs[i] < until; i++) n++;
  return n;
}

/* Seals every assigned partition: at most max_per_part records (0: all) or, with `until`,
 * the records below its offset there (none for a partition not listed). */
static int source_seal(ds_kafka_source *s, uint64_t max_per_part, const ds_kafka_offset *until,
                       int nuntil, ds_sealed **out, ds_kafka_range **ranges, int *nranges);

int ds_kafka_source_seal(ds_kafka_source *s, uint64_t max_per_part, ds_sealed **out,
                         ds_kafka_range **ranges, int *nranges) {
  return source_seal(s, max_per_part, NULL, 0, out, ranges, nranges);
}

int ds_kafka_source_seal_until(ds_kafka_source *s, const ds_kafka_offset *until, int n,
                               int timeout_ms, ds_sealed **out, ds_kafka_range **ranges,
                               int *nranges, int *missing) {
  /* The consumer's thread appends as it fetches: wait (briefly, at a restart) until every
   * listed partition has records up to its cut. */
  struct timespec t0, now;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (;;) {
    int short_of = 0;
    pthread_mutex_lock(&s->lock);
    for (int i = 0; i < n; i++) {
      int k = kpart_find(s, until[i].topic, until[i].partition);
      if (k < 0 || s->parts[k].next < until[i].offset) short_of++;
    }
    pthread_mutex_unlock(&s->lock);
    *missing = short_of;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long ms = (now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000;
    if (short_of == 0 || ms >= timeout_ms) break;
    struct timespec nap = {0, 5 * 1000000};
    nanosleep(&nap, NULL);
  }
  return source_seal(s, 0, until, n, out, ranges, nranges);
}

/* The plans found at assignment (kp->replay_until): the tag of the batch whose ranges the next
 * seal takes, alone, once each of its partitions has been fetched up to its plan's end (a
 * seal before then takes nothing: its records would be another batch than the first run's),
 * or NULL. A plan not fetched in full within REPLAY_WAIT_S (records deleted by retention) is
 * dropped: its partition is read as it comes. Caller holds the lock. */
static const char *replay_pick(ds_kafka_source *s) {
  const char *tag = NULL;
  int ready = 1;
  for (int i = 0; i < s->nparts; i++) {
    kpart *kp = &s->parts[i];
    if (kp->replay_until <= 0 || kp->revoking) continue;
    if (kp->cut >= kp->replay_until) { /* (nothing to read again) */
      kp->replay_until = 0;
      continue;
    }
    if (ds_kafka__now_s() - kp->replay_since > REPLAY_WAIT_S) {
      ds_log(DS_LOG_WARN, "kafka_stream: %s [%d] was not fetched up to offset %lld, where its last "
             "owner's batch %s ended, within %.0f s: read as it comes (its records may be counted "
             "twice downstream)", kp->topic, (int)kp->partition, (long long)kp->replay_until,
             kp->replay_tag, REPLAY_WAIT_S);
      kp->replay_until = 0;
      continue;
    }
    if (!tag) tag = kp->replay_tag;
    if (strcmp(tag, kp->replay_tag) == 0 && kp->next < kp->replay_until) ready = 0;
  }
  static const char wait[] = "";
  return tag && !ready ? wait : tag;
}

int ds_kafka_source_replay_due(ds_kafka_source *s) {
  pthread_mutex_lock(&s->lock);
  int due = 0;
  for (int i = 0; i < s->nparts && !due; i++)
    due = s->parts[i].replay_until > 0 && !s->parts[i].revoking;
  pthread_mutex_unlock(&s->lock);
  return due;
}

static int source_seal(ds_kafka_source *s, uint64_t max_per_part, const ds_kafka_offset *until,
                       int nuntil, ds_sealed **out, ds_kafka_range **ranges, int *nranges) {
  *out = NULL;
  *ranges = NULL;
  *nranges = 0;
  ds_sealed *sb = calloc(1, sizeof *sb);
  if (!sb) return -ENOMEM;
  pthread_mutex_lock(&s->lock);
  int n = s->nparts;
  sb->nparts = n > 0 ? n : 1;
  sb->parts = calloc((size_t)sb->nparts, sizeof *sb->parts);
  ds_kafka_range *rs = n > 0 ? calloc((size_t)n, sizeof *rs) : NULL;
  if (!sb->parts || (n > 0 && !rs)) {
    pthread_mutex_unlock(&s->lock);
    free(rs);
    ds_sealed_free(sb);
    return -ENOMEM;
  }
  int rc = 0;
  rd_kafka_topic_partition_list_t *resume = NULL;
  const char *replay = until ? NULL : replay_pick(s);
  for (int i = 0; i < n && rc == 0; i++) {
    kpart *kp = &s->parts[i];
    uint64_t max = max_per_part;
    int replaying = replay && kp->replay_until > 0 && strcmp(kp->replay_tag, replay) == 0;
    if (until) {
      int64_t u = until_of(kp, until, nuntil);
      max = u < 0 ? 0 : kpart_below(kp, u);
    } else if (replaying) {
      max = kpart_below(kp, kp->replay_until);
    }
    if ((until && max == 0) || kp->revoking || (replay && (!replaying || max == 0)))
      /* nothing of this partition in the batch (a replay takes only its own ranges) */
      rs[i] = (ds_kafka_range){kp->topic, kp->partition, kp->cut, kp->cut, 0};
    else
      rc = kpart_seal(kp, max, &sb->parts[i], &rs[i], &sb->bytes);
    if (rc == 0 && replaying) {
      /* The planned range, whole: the same records, the same ends as its first run. */
      if (rs[i].count > 0) rs[i].until = kp->cut = kp->replay_until;
      kp->replay_until = 0;
    }
    /* Not resuming from committed offsets: a partition revoked and assigned again (a
     * rebalance) goes on after what was sealed here, not from the checkpoint's position. */
    if (rc == 0 && s->group_assign && s->ignore_committed && rs[i].until >= 0)
      rc = wanted_set(s, kp->topic, kp->partition, rs[i].until);
    if (rc == 0 && rs[i].count > 0) kp->sealed_until = rs[i].until;
    sb->count += rs[i].count;
    s->st.pending -= rs[i].count;
    /* Resume a paused partition once it holds less than half of its limits. */
    if (kp->paused && (!s->pause_records || kpart_pending(kp) < s->pause_records / 2 + 1) &&
        kp->pending_bytes < s->pause_bytes / 2) {
      if (!resume) resume = rd_kafka_topic_partition_list_new(4);
      rd_kafka_topic_partition_list_add(resume, kp->topic, kp->partition);
      kp->paused = 0;
      s->st.paused--;
    }
  }
  if (resume) {
    rd_kafka_resume_partitions(s->rk, resume);
    rd_kafka_topic_partition_list_destroy(resume);
  }
  pthread_mutex_unlock(&s->lock);
  if (rc) {
    free(rs);
    ds_sealed_free(sb);
    return rc;
  }
  *out = sb;
  *ranges = rs;
  *nranges = n;
  return 0;
}

#define COMMIT_SYNC_TIMEOUT_MS 2000 /* a commit at stop */
#define CLOSE_TIMEOUT_MS 2000       /* leaving the group at stop */
#define LEAVE_ANSWER_MS 500         /* the LeaveGroup's answer, once the revocation is served */
#define FINISH_COMMIT_MS 3000       /* the last commit, tries again included */

int ds_kafka_source_commit(ds_kafka_source *s, const ds_kafka_offset *offsets, int n, int async,
                           char *err, size_t errlen) {
  return commit_offsets(s, offsets, n, async, 1, err, errlen);
}

static int group_commit(ds_kafka_source *s, rd_kafka_topic_partition_list_t *l, int async,
                        char *err, size_t errlen);

int ds_kafka_source_plan(ds_kafka_source *s, const ds_kafka_range *ranges, int n, const char *tag,
                         char *err, size_t errlen) {
  if (!s->positions) return 0;
  ds_kafka_offset *o = calloc((size_t)(n > 0 ? n : 1), sizeof *o);
  if (!o) return -ENOMEM;
  int m = 0;
  pthread_mutex_lock(&s->lock);
  for (int i = 0; i < n; i++) {
    int k = kpart_find(s, ranges[i].topic, ranges[i].partition);
    if (k < 0 || ranges[i].count == 0 || ranges[i].from < 0 || ranges[i].until <= ranges[i].from)
      continue;
    kpart *kp = &s->parts[k];
    kp->plan_from = ranges[i].from;
    kp->plan_until = ranges[i].until;
    snprintf(kp->plan_tag, sizeof kp->plan_tag, "%s", tag);
    o[m++] = (ds_kafka_offset){kp->topic, kp->partition, ranges[i].from};
  }
  pthread_mutex_unlock(&s->lock);
  /* Synchronously, to the positions' group only (no rebalance refuses it). */
  int rc = m > 0 ? commit_offsets(s, o, m, 0, 0, err, errlen) : 0;
  free(o);
  return rc;
}

/* Commits to the positions' group (cluster mode), and to the consumer group with group_too. In
 * cluster mode the positions' answer is the result (the group's refusal in a rebalance is
 * expected and only logged), and the consumer group takes only the synchronous commits (a
 * revocation's, the stop's), not one per batch: on the embedded broker a commit queued behind
 * the member's own JoinGroup is answered "illegal generation", librdkafka takes the assignment
 * for lost and rejoins, which starts another rebalance (a storm of them, each as long as the
 * session timeout less a second), and a real broker gains nothing from them but lag figures,
 * which the positions' group gives. */
static int commit_offsets(ds_kafka_source *s, const ds_kafka_offset *offsets, int n, int async,
                          int group_too, char *err, size_t errlen) {
  /* Only partitions assigned now: another member owns the others, and committing before
   * the group is joined would make the coordinator reject the member and send it to rejoin. */
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n > 0 ? n : 1);
  pthread_mutex_lock(&s->lock);
  for (int i = 0; i < n; i++) {
    int k = kpart_find(s, offsets[i].topic, offsets[i].partition);
    if (k < 0) continue;
    rd_kafka_topic_partition_t *tp =
        rd_kafka_topic_partition_list_add(l, offsets[i].topic, offsets[i].partition);
    tp->offset = offsets[i].offset;
    /* A batch planned from this offset and in flight: the commit keeps naming its plan, so
     * that whoever reads the partition next reads exactly its range first. */
    const kpart *kp = &s->parts[k];
    if (kp->plan_until > kp->plan_from && kp->plan_from == offsets[i].offset) {
      char meta[128];
      int len = snprintf(meta, sizeof meta, "%s%lld %s", DS_KAFKA_PLAN_PREFIX,
                         (long long)kp->plan_until, kp->plan_tag);
      if ((tp->metadata = malloc((size_t)len + 1))) {
        memcpy(tp->metadata, meta, (size_t)len + 1);
        tp->metadata_size = (size_t)len;
      }
    }
    /* Handed to librdkafka: a revocation waiting for it (revoke_wait) commits it again,
     * synchronously. */
    if (offsets[i].offset > s->parts[k].committed) s->parts[k].committed = offsets[i].offset;
    if (!s->ignore_committed && offsets[i].offset > done_of(s, offsets[i].topic, offsets[i].partition))
      offsets_put(&s->done, &s->ndone, s->parts[k].topic, offsets[i].partition, offsets[i].offset);
  }
  pthread_cond_broadcast(&s->commit_cond);
  /* At most REBALANCE_HOLD_S: an answer may come after the assignment that ended it. */
  int hold = async && s->rebalancing > 0 && ds_kafka__now_s() - s->rebalancing < REBALANCE_HOLD_S;
  pthread_mutex_unlock(&s->lock);
  int prc = 0;
  if (s->positions && async) group_too = 0;
  if (s->positions && l->cnt > 0)
    prc = ds_kafka__positions_commit(s->positions, l, async ? 0 : COMMIT_SYNC_TIMEOUT_MS, err, errlen);
  if (l->cnt == 0 || hold || !group_too) {
    rd_kafka_topic_partition_list_destroy(l);
    return prc;
  }
  if (s->positions) {
    char gerr[300];
    int grc = group_commit(s, l, async, gerr, sizeof gerr);
    if (grc < 0)
      ds_log(DS_LOG_DEBUG, "kafka_stream: the consumer group's commit: %s (the positions' group "
             "has them)", gerr);
    return prc;
  }
  return group_commit(s, l, async, err, errlen);
}

/* Commits l to the consumer group (destroys l): asynchronously, or waiting
 * COMMIT_SYNC_TIMEOUT_MS at most for the answer. */
static int group_commit(ds_kafka_source *s, rd_kafka_topic_partition_list_t *l, int async,
                        char *err, size_t errlen) {
  if (async) {
    rd_kafka_resp_err_t rc = rd_kafka_commit(s->rk, l, 1);
    rd_kafka_topic_partition_list_destroy(l);
    if (rc) {
      ds_kafka__set_err(err, errlen, "committing offsets failed: %s", rd_kafka_err2str(rc));
      return -EIO;
    }
    return 0;
  }
  /* Synchronous (at stop): rd_kafka_commit(sync) waits as long as librdkafka retries, minutes
   * with the brokers gone (issue 15: a job took 184 s to stop). Wait for the result on a queue
   * of our own, at most COMMIT_SYNC_TIMEOUT_MS; a late result is dropped with the queue. */
  rd_kafka_resp_err_t rc = ds_kafka__commit_wait(s->rk, l, COMMIT_SYNC_TIMEOUT_MS);
  rd_kafka_topic_partition_list_destroy(l);
  if (rc) {
    ds_kafka__set_err(err, errlen, "committing offsets failed: %s%s", rd_kafka_err2str(rc),
                      rc == RD_KAFKA_RESP_ERR__TIMED_OUT ? " (no answer from Kafka within 2 s)"
                                                         : "");
    return -EIO;
  }
  return 0;
}

int ds_kafka_source_group_metadata(ds_kafka_source *s, void **buf, size_t *len, char *err,
                                   size_t errlen) {
  rd_kafka_consumer_group_metadata_t *gm = rd_kafka_consumer_group_metadata(s->rk);
  if (!gm) {
    ds_kafka__set_err(err, errlen, "the consumer has no group metadata");
    return -EINVAL;
  }
  void *p;
  size_t n;
  rd_kafka_error_t *e = rd_kafka_consumer_group_metadata_write(gm, &p, &n);
  rd_kafka_consumer_group_metadata_destroy(gm);
  if (e) {
    ds_kafka__set_err(err, errlen, "group metadata: %s", rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
    return -EINVAL;
  }
  *buf = malloc(n ? n : 1);
  if (!*buf) {
    rd_kafka_mem_free(NULL, p);
    return -ENOMEM;
  }
  memcpy(*buf, p, n);
  *len = n;
  rd_kafka_mem_free(NULL, p);
  return 0;
}

void ds_kafka_source_stats_get(ds_kafka_source *s, ds_kafka_source_stats *st) {
  pthread_mutex_lock(&s->lock);
  *st = s->st;
  pthread_mutex_unlock(&s->lock);
}

int ds_kafka__source_group(ds_kafka_source *s, char *member, size_t len, uint64_t *rebalances,
                           ds_kafka_offset **parts) {
  pthread_mutex_lock(&s->lock);
  snprintf(member, len, "%s", s->member_id);
  *rebalances = s->rebalances;
  ds_kafka_offset *o = malloc((size_t)(s->nparts > 0 ? s->nparts : 1) * sizeof *o);
  int n = 0;
  for (int i = 0; o && i < s->nparts; i++)
    if (!s->parts[i].revoking)
      o[n++] = (ds_kafka_offset){s->parts[i].topic, s->parts[i].partition, s->parts[i].cut};
  pthread_mutex_unlock(&s->lock);
  *parts = o;
  return o ? n : -ENOMEM;
}

int ds_kafka_source_positions(ds_kafka_source *s, ds_kafka_offset **out) {
  pthread_mutex_lock(&s->lock);
  ds_kafka_offset *o = malloc((size_t)(s->nparts > 0 ? s->nparts : 1) * sizeof *o);
  int n = 0;
  for (int i = 0; o && i < s->nparts; i++)
    if (s->parts[i].cut >= 0) o[n++] = (ds_kafka_offset){s->parts[i].topic, s->parts[i].partition, s->parts[i].cut};
  pthread_mutex_unlock(&s->lock);
  *out = o;
  return o ? n : -ENOMEM;
}

void ds_kafka_source_stop(ds_kafka_source *s) {
  atomic_store(&s->stopping, 1);
  /* The refresher is woken, not joined: a query of it may wait a second for a broker that is
   * gone. It is joined by the close (ds_kafka_source_finish or _free). */
  if (s->refresher_started) {
    pthread_mutex_lock(&s->refresh_lock);
    pthread_cond_signal(&s->refresh_cond);
    pthread_mutex_unlock(&s->refresh_lock);
  }
  if (!s->thread_started) return;
  pthread_join(s->thread, NULL); /* it polls for 100 ms at most */
  s->thread_started = 0;
}

static void join_refresher(ds_kafka_source *s) {
  if (!s->refresher_started) return;
  pthread_join(s->refresher, NULL);
  s->refresher_started = 0;
}

/* Leaves the group (a revocation comes as an event: rebalance_cb handles it) and destroys the
 * handle. Not rd_kafka_consumer_close: with the brokers gone it waits up to the session
 * timeout (45 s), and a stop must end in a few seconds (issue 15). After CLOSE_TIMEOUT_MS (or
 * LEAVE_ANSWER_MS after the leave was sent) the stop goes on without it: -ETIMEDOUT, with the
 * close's queue in s->leave_q for reap() to finish the close in the background. Returns 0 when
 * the handle is destroyed. */
static int destroy_handle(ds_kafka_source *s, int flags);

static int leave_group(ds_kafka_source *s) {
  char *member = rd_kafka_memberid(s->rk); /* set from the JoinGroup's answer */
  s->joined = member && member[0];
  if (member) rd_kafka_mem_free(s->rk, member);
  rd_kafka_queue_t *q = rd_kafka_queue_new(s->rk);
  rd_kafka_error_t *e = rd_kafka_consumer_close_queue(s->rk, q);
  int flags = 0;
  if (e) {
    rd_kafka_error_destroy(e);
    flags = RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE;
  } else {
    double t0 = ds_kafka__now_s();
    /* Once nothing is assigned (the close's revocation served here), librdkafka sends the
     * LeaveGroup at once and waits for its answer. The embedded broker answers a leave only
     * when the rebalance in progress ends (~2 s, when another member joins or a consumer of
     * this process left just before), so each consumer's stop waited that long. The member
     * has left once the leave is sent: its answer is waited for LEAVE_ANSWER_MS (a broker's
     * round trip), then the consumer is abandoned as below. */
    double left_at = s->nparts == 0 ? t0 : 0;
    while (!rd_kafka_consumer_closed(s->rk)) {
      rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 50);
      if (ev && rd_kafka_event_type(ev) == RD_KAFKA_EVENT_REBALANCE) {
        rebalance_cb(s->rk, rd_kafka_event_error(ev),
                     (rd_kafka_topic_partition_list_t *)rd_kafka_event_topic_partition_list(ev), s);
        if (s->nparts == 0 && left_at == 0) left_at = ds_kafka__now_s();
      }
      if (ev) rd_kafka_event_destroy(ev);
      if (left_at > 0 && !rd_kafka_consumer_closed(s->rk) &&
          (ds_kafka__now_s() - left_at) * 1000 > LEAVE_ANSWER_MS) {
        ds_log(DS_LOG_INFO, "kafka_stream: the consumer left its group, and Kafka had not answered"
                            " the leave within %d ms (a rebalance in progress); the consumer is"
                            " closed in the background", LEAVE_ANSWER_MS);
        s->leave_q = q;
        return -ETIMEDOUT;
      }
      if ((ds_kafka__now_s() - t0) * 1000 > CLOSE_TIMEOUT_MS) {
        ds_log(DS_LOG_WARN, "kafka_stream: Kafka did not answer within %d s while the consumer"
                            " left its group; the consumer is closed in the background",
               CLOSE_TIMEOUT_MS / 1000);
        s->leave_q = q;
        return -ETIMEDOUT;
      }
    }
  }
  rd_kafka_queue_destroy(q);
  return destroy_handle(s, flags);
}

static int destroy_handle(ds_kafka_source *s, int flags) {
  /* librdkafka 2.0.2 aborts in rd_kafka_destroy (rd_kafka_sticky_assignor_state_destroy:
   * Assertion `assignor_state' failed) for a cooperative-sticky member whose JoinGroup was
   * answered (the assignor is chosen) but no rebalance completed (the state is made at the
   * assignment, even an empty one): a process stopped during a rebalance. It has left the
   * group: the handle is left to the process's exit instead. */
  if (s->group_assign && s->joined && !s->synced) {
    ds_log(DS_LOG_DEBUG, "kafka_stream: a member left its group in the middle of its first"
                         " rebalance; its handle is left to the process's exit");
    return -EAGAIN;
  }
  rd_kafka_destroy_flags(s->rk, flags);
  s->rk = NULL;
  return 0;
}

/* Finishes a close leave_group stopped waiting for (s->leave_q): serves its events until
 * librdkafka says the consumer is closed (the embedded broker answers a leave when the
 * rebalance in progress ends, up to the session timeout), then destroys the handle, so a
 * long-lived process (the REPL) that starts and stops jobs keeps no consumer's threads and
 * sockets. Gives up after REAP_MS: the handle is left to the process's exit, as before. */
#define REAP_MS 60000
static int reap(ds_kafka_source *s) {
  double t0 = ds_kafka__now_s();
  while (!rd_kafka_consumer_closed(s->rk) && (ds_kafka__now_s() - t0) * 1000 < REAP_MS) {
    rd_kafka_event_t *ev = rd_kafka_queue_poll(s->leave_q, 100);
    if (ev && rd_kafka_event_type(ev) == RD_KAFKA_EVENT_REBALANCE)
      rebalance_cb(s->rk, rd_kafka_event_error(ev),
                   (rd_kafka_topic_partition_list_t *)rd_kafka_event_topic_partition_list(ev), s);
    if (ev) rd_kafka_event_destroy(ev);
  }
  if (!rd_kafka_consumer_closed(s->rk)) return -ETIMEDOUT;
  rd_kafka_queue_destroy(s->leave_q);
  s->leave_q = NULL;
  return destroy_handle(s, 0);
}

static void source_release(ds_kafka_source *s);

/* The owner has let s go (free) while the close was not answered: this thread reaps, then
 * frees s unless the handle had to be left. */
static void *reap_main(void *arg) {
  ds_kafka_source *s = arg;
  if (reap(s) == 0) source_release(s);
  return NULL;
}

static void *finish_main(void *arg) {
  ds_kafka_source *s = arg;
  join_refresher(s);
  /* The commit: a quick failure (not a timeout) is tried again while there is time for a
   * whole attempt, FINISH_COMMIT_MS at most in all. */
  int rc = 0;
  char err[sizeof s->finish_commit_err] = "";
  if (s->nfinish_offsets > 0) {
    double t0 = ds_kafka__now_s();
    for (;;) {
      rc = ds_kafka_source_commit(s, s->finish_offsets, s->nfinish_offsets, 0, err, sizeof err);
      double spent_ms = (ds_kafka__now_s() - t0) * 1000;
      if (rc == 0 || spent_ms + COMMIT_SYNC_TIMEOUT_MS + 300 >= FINISH_COMMIT_MS ||
          atomic_load(&s->abandoned))
        break;
      struct timespec nap = {0, 300 * 1000000L};
      nanosleep(&nap, NULL);
    }
  }
  s->finish_commit_rc = rc;
  snprintf(s->finish_commit_err, sizeof s->finish_commit_err, "%s", rc ? err : "");
  atomic_store(&s->finish_phase, DS_KAFKA_FINISH_CLOSE);
  int left = -1;
  if (!atomic_load(&s->abandoned)) left = leave_group(s);
  s->closed = left == 0;
  atomic_store(&s->finish_phase, DS_KAFKA_FINISH_DONE);
  /* The caller goes on now; a close Kafka did not answer in time is finished here. The last of
   * the owner (free) and this thread to let s go frees it, once the handle is destroyed. */
  if (left == -ETIMEDOUT) left = reap(s);
  if (left != 0) {
    pthread_detach(pthread_self()); /* the owner joins only a finisher that let s go */
    return NULL;                    /* the handle, and s with it, is left to the process's exit */
  }
  if (atomic_fetch_sub(&s->holders, 1) == 1) {
    pthread_detach(pthread_self());
    source_release(s);
  }
  return NULL;
}

int ds_kafka_source_finish(ds_kafka_source *s, const ds_kafka_offset *offsets, int n, char *err,
                           size_t errlen) {
  if (s->finisher_started) {
    ds_kafka__set_err(err, errlen, "the source is already finishing");
    return -EALREADY;
  }
  ds_kafka_source_stop(s);
  if (n > 0) {
    if (!(s->finish_offsets = calloc((size_t)n, sizeof *s->finish_offsets))) goto oom;
    for (int i = 0; i < n; i++) {
      s->finish_offsets[i] = offsets[i];
      if (!(s->finish_offsets[i].topic = intern(s, offsets[i].topic))) goto oom;
    }
    s->nfinish_offsets = n;
  }
  atomic_store(&s->finish_phase, DS_KAFKA_FINISH_COMMIT);
  atomic_store(&s->holders, 2); /* the owner and the finisher */
  if (pthread_create(&s->finisher, NULL, finish_main, s) != 0) {
    ds_kafka__set_err(err, errlen, "cannot start a thread to close the consumer");
    return -EAGAIN;
  }
  s->finisher_started = 1;
  return 0;
oom:
  ds_kafka__set_err(err, errlen, "out of memory");
  return -ENOMEM;
}

int ds_kafka_source_finish_state(ds_kafka_source *s, int *commit_rc, char *err, size_t errlen) {
  int phase = atomic_load(&s->finish_phase);
  if (phase > DS_KAFKA_FINISH_COMMIT) {
    if (commit_rc) *commit_rc = s->finish_commit_rc;
    ds_kafka__set_err(err, errlen, "%s", s->finish_commit_err);
  }
  if (phase == DS_KAFKA_FINISH_DONE && !s->closed) return DS_KAFKA_FINISH_ABANDONED;
  return phase;
}

void ds_kafka_source_abandon(ds_kafka_source *s) { atomic_store(&s->abandoned, 1); }

void ds_kafka_source_free(ds_kafka_source *s) {
  if (!s) return;
  if (s->finisher_started) {
    /* Still finishing, or closing in the background: the finisher frees s when it ends (an
     * abandoned one stuck in Kafka: at the process's exit). */
    if (atomic_fetch_sub(&s->holders, 1) != 1) return;
    pthread_join(s->finisher, NULL);
    s->finisher_started = 0;
    if (s->rk) return; /* left to the process's exit (see destroy_handle) */
  } else {
    ds_kafka_source_stop(s);
    join_refresher(s);
    if (s->rk) {
      int rc = leave_group(s);
      pthread_t t;
      if (rc == -ETIMEDOUT && pthread_create(&t, NULL, reap_main, s) == 0) pthread_detach(t);
      if (rc < 0) return;
    }
  }
  source_release(s);
}

/* Frees s once its handle is destroyed. */
static void source_release(ds_kafka_source *s) {
  for (int i = 0; i < s->nparts; i++) kpart_clear(&s->parts[i]);
  free(s->parts);
  for (int i = 0; i < s->ntopics; i++) free(s->topics[i]);
  free(s->topics);
  free(s->wanted);
  free(s->done);
  ds_kafka__positions_free(s->positions);
  free(s->finish_offsets);
  free(s->subscribed);
  free(s->scratch);
  pthread_mutex_destroy(&s->lock);
  pthread_mutex_destroy(&s->refresh_lock);
  pthread_cond_destroy(&s->refresh_cond);
  pthread_cond_destroy(&s->commit_cond);
  free(s);
}
