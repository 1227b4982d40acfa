/* test_kafka.c - the Kafka consumer's batch cutting and end, producers, queries and the mock
 * cluster (ds_kafka*.c). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "ds_kafka.h"
#include "ds_kafka_mock.h"

/* The call returns 0; else prints its error message and aborts. */
#define CHECK_OK(call, err)                                                              \
  do {                                                                                   \
    int rc_ = (call);                                                                    \
    if (rc_ != 0) {                                                                      \
      fprintf(stderr, "%s:%d: %s failed: %d (%s)\n", __FILE__, __LINE__, #call, rc_, err); \
      abort();                                                                           \
    }                                                                                    \
  } while (0)

static char err[600];
static ds_kafka_source_stats st_last; /* of the last source start_positions started */

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Waits up to 30 s until the source has buffered `n` records. */
static void wait_pending(ds_kafka_source *s, uint64_t n) {
  ds_kafka_source_stats st;
  double deadline = now_s() + 30;
  do {
    ds_kafka_source_stats_get(s, &st);
    if (st.pending >= n) return;
    usleep(20000);
  } while (now_s() < deadline);
  fprintf(stderr, "timed out waiting for %llu records (have %llu)\n", (unsigned long long)n,
          (unsigned long long)st.pending);
  abort();
}

/* Record i of partition 0: its length varies, and a few are big enough to fill blocks. */
static size_t value_of(int i, char *buf, size_t cap) {
  size_t len = i % 97 == 3 ? 300000 : (size_t)(i % 13) * 7;
  if (len + 16 > cap) len = cap - 16;
  int n = snprintf(buf, cap, "m%d:", i);
  for (size_t k = (size_t)n; k < len; k++) buf[k] = (char)('a' + k % 26);
  return len > (size_t)n ? len : (size_t)n;
}

static ds_kafka_producer *new_producer(const char *brokers) {
  ds_kafka_producer_opts po = {brokers, NULL, 0, NULL, 10000};
  ds_kafka_producer *p;
  CHECK_OK(ds_kafka_producer_new(&po, &p, err, sizeof err), err);
  return p;
}

static void test_mock(void) {
  ds_kafka_mock *m;
  CHECK_OK(ds_kafka_mock_new(3, &m, err, sizeof err), err);
  const char *b = ds_kafka_mock_bootstrap(m);
  CHECK(strncmp(b, "127.0.0.1:", 10) == 0);
  int commas = 0;
  for (const char *c = b; *c; c++) commas += *c == ',';
  CHECK_INT(commas, ==, 2);
  CHECK_OK(ds_kafka_mock_topic_create(m, "t", 5, err, sizeof err), err);
  int n = 0;
  CHECK_OK(ds_kafka_partition_count(b, "t", NULL, 0, 10000, &n, err, sizeof err), err);
  CHECK_INT(n, ==, 5);
  CHECK_INT(ds_kafka_mock_broker_down(m, 4, err, sizeof err), ==, -EINVAL);
  CHECK_INT(ds_kafka_mock_topic_create(m, "bad", 0, err, sizeof err), ==, -EINVAL);
  CHECK_OK(ds_kafka_mock_broker_down(m, 2, err, sizeof err), err);
  CHECK_OK(ds_kafka_mock_broker_up(m, 2, err, sizeof err), err);
  ds_kafka_mock_free(m);
  CHECK_INT(ds_kafka_mock_new(0, &m, err, sizeof err), ==, -EINVAL);
}

/* Checks that a partition holds values first .. first + count - 1 of partition 0, in order. */
static void check_part(const ds_part *part, int first, uint64_t count) {
  CHECK_INT(part->count, ==, count);
  char want[300016];
  int i = first;
  uint64_t seen = 0;
  for (int s = 0; s < part->nslices; s++) {
    const ds_slice *sl = &part->slices[s];
    CHECK_INT(sl->format, ==, DS_FMT_LINES);
    const char *d = sl->data, *end = sl->data + sl->len;
    uint64_t in_slice = 0;
    while (d < end) {
      uint32_t len;
      memcpy(&len, d, 4);
      size_t wl = value_of(i, want, sizeof want);
      CHECK_INT(len, ==, wl);
      CHECK(memcmp(d + 4, want, wl) == 0);
      d += 4 + len;
      i++;
      in_slice++;
    }
    CHECK_INT(in_slice, ==, sl->count);
    seen += in_slice;
  }
  CHECK_INT(seen, ==, count);
}

/* Batches cut at a record limit: every record once, in order, with contiguous offset ranges;
 * a partition over its pause limit is paused and resumed; commits reach the group. */
static void test_source_seal(void) {
  ds_kafka_mock *m;
  CHECK_OK(ds_kafka_mock_new(1, &m, err, sizeof err), err);
  const char *b = ds_kafka_mock_bootstrap(m);
  CHECK_OK(ds_kafka_mock_topic_create(m, "t", 2, err, sizeof err), err);
  ds_kafka_producer *p = new_producer(b);
  enum { N0 = 700, N1 = 10 };
  static char buf[300016];
  for (int i = 0; i < N0; i++) {
    size_t len = value_of(i, buf, sizeof buf);
    CHECK_OK(ds_kafka_producer_send(p, "t", 0, NULL, 0, buf, len, NULL, 0, err, sizeof err), err);
  }
  for (int i = 0; i < N1; i++)
    CHECK_OK(ds_kafka_producer_send(p, "t", 1, "k", 1, "x", 1, NULL, 0, err, sizeof err), err);
  uint64_t delivered = 0;
  CHECK_OK(ds_kafka_producer_flush(p, 20000, &delivered, NULL, err, sizeof err), err);
  CHECK_INT(delivered, ==, N0 + N1);

  const char *topics[] = {"t"};
  ds_kafka_source_opts o;
  memset(&o, 0, sizeof o);
  o.brokers = b;
  o.topics = topics;
  o.ntopics = 1;
  o.group = "g";
  o.start = "earliest";
  o.layout = DS_KAFKA_LAYOUT_VALUE;
  o.pause_records = 250;
  ds_kafka_source *s;
  CHECK_OK(ds_kafka_source_start(&o, &s, err, sizeof err), err);
  wait_pending(s, 250 + N1);
  usleep(300000);
  ds_kafka_source_stats st;
  ds_kafka_source_stats_get(s, &st);
  CHECK_INT(st.partitions, ==, 2);
  CHECK_INT(st.paused, ==, 1); /* partition 0 holds its limit and waits */
  CHECK(st.pending < N0 + N1);

  int next0 = 0;
  int64_t until0 = 0;
  for (int round = 0; next0 < N0; round++) {
    CHECK(round < 20);
    uint64_t want = N0 - next0 < 120 ? (uint64_t)(N0 - next0) : 120;
    wait_pending(s, want + (round == 0 ? N1 : 0));
    ds_sealed *sealed;
    ds_kafka_range *ranges;
    int nranges;
    CHECK_OK(ds_kafka_source_seal(s, 120, &sealed, &ranges, &nranges), "seal");
    CHECK_INT(nranges, ==, 2);
    CHECK_INT(sealed->nparts, ==, 2);
    CHECK_STR(ranges[0].topic, "t");
    CHECK_INT(ranges[0].partition, ==, 0);
    CHECK_INT(ranges[1].partition, ==, 1);
    CHECK_INT(ranges[0].from, ==, until0);
    CHECK_INT(ranges[0].count, ==, want);
    CHECK_INT(ranges[0].until - ranges[0].from, ==, want);
    check_part(&sealed->parts[0], next0, want);
    CHECK_INT(ranges[1].count, ==, round == 0 ? N1 : 0);
    CHECK_INT(ranges[1].until, ==, N1);
    next0 += (int)want;
    until0 = ranges[0].until;
    ds_sealed_free(sealed);
    free(ranges);
  }
  ds_kafka_source_stats_get(s, &st);
  CHECK_INT(st.records, ==, N0 + N1);
  CHECK_INT(st.duplicates, ==, 0);
  CHECK_INT(st.pending, ==, 0);
  CHECK_INT(st.paused, ==, 0);

  ds_kafka_offset commit[] = {{"t", 0, until0}, {"t", 1, N1}};
  CHECK_OK(ds_kafka_source_commit(s, commit, 2, 0, err, sizeof err), err);
  void *gm;
  size_t gml;
  CHECK_OK(ds_kafka_source_group_metadata(s, &gm, &gml, err, sizeof err), err);
  CHECK(gml > 0);
  free(gm);
  ds_kafka_source_free(s);
  ds_kafka_offset q[] = {{"t", 0, 0}, {"t", 1, 0}};
  CHECK_OK(ds_kafka_committed(b, "g", NULL, 0, q, 2, 10000, err, sizeof err), err);
  CHECK_INT(q[0].offset, ==, N0);
  CHECK_INT(q[1].offset, ==, N1);
  ds_kafka_producer_free(p, 1000);
  ds_kafka_mock_free(m);
}

/* The FULL layout: header, topic, key, headers and value; explicit start positions. */
static void test_full_layout(void) {
  ds_kafka_mock *m;
  CHECK_OK(ds_kafka_mock_new(1, &m, err, sizeof err), err);
  const char *b = ds_kafka_mock_bootstrap(m);
  CHECK_OK(ds_kafka_mock_topic_create(m, "full", 1, err, sizeof err), err);
  ds_kafka_producer *p = new_producer(b);
  ds_kafka_header hs[] = {{"h1", "v1", 2}, {"nul", NULL, 0}};
  CHECK_OK(ds_kafka_producer_send(p, "full", 0, "skip", 4, "skip", 4, NULL, 0, err, sizeof err), err);
  CHECK_OK(ds_kafka_producer_send(p, "full", 0, "key", 3, "value", 5, hs, 2, err, sizeof err), err);
  CHECK_OK(ds_kafka_producer_send(p, "full", 0, NULL, 0, NULL, 0, NULL, 0, err, sizeof err), err);
  CHECK_OK(ds_kafka_producer_flush(p, 20000, NULL, NULL, err, sizeof err), err);

  const char *topics[] = {"full"};
  ds_kafka_offset start[] = {{"full", 0, 1}}; /* skip the first message */
  ds_kafka_source_opts o;
  memset(&o, 0, sizeof o);
  o.brokers = b;
  o.topics = topics;
  o.ntopics = 1;
  o.group = "gf";
  o.layout = DS_KAFKA_LAYOUT_FULL;
  o.positions = start;
  o.npositions = 1;
  ds_kafka_source *s;
  CHECK_OK(ds_kafka_source_start(&o, &s, err, sizeof err), err);
  wait_pending(s, 2);
  ds_sealed *sealed;
  ds_kafka_range *ranges;
  int n;
  CHECK_OK(ds_kafka_source_seal(s, 0, &sealed, &ranges, &n), "seal");
  CHECK_INT(n, ==, 1);
  CHECK_INT(ranges[0].from, ==, 1);
  CHECK_INT(ranges[0].until, ==, 3);
  CHECK_INT(sealed->parts[0].count, ==, 2);
  const char *d = sealed->parts[0].slices[0].data;
  uint32_t len;
  memcpy(&len, d, 4);
  ds_kafka_rec h;
  memcpy(&h, d + 4, sizeof h);
  CHECK_INT(h.offset, ==, 1);
  CHECK_INT(h.partition, ==, 0);
  CHECK_INT(h.topic_len, ==, 4);
  CHECK_INT(h.key_len, ==, 3);
  CHECK_INT(h.nheaders, ==, 2);
  CHECK_INT(h.flags, ==, DS_KAFKA_REC_KEY | DS_KAFKA_REC_VALUE);
  CHECK(h.timestamp > 0);
  const char *w = d + 4 + sizeof h;
  CHECK(memcmp(w, "fullkey", 7) == 0);
  w += 7;
  uint32_t nl;
  int32_t vl;
  memcpy(&nl, w, 4);
  memcpy(&vl, w + 4, 4);
  CHECK_INT(nl, ==, 2);
  CHECK_INT(vl, ==, 2);
  CHECK(memcmp(w + 8, "h1v1", 4) == 0);
  w += 12;
  memcpy(&nl, w, 4);
  memcpy(&vl, w + 4, 4);
  CHECK_INT(nl, ==, 3);
  CHECK_INT(vl, ==, -1);
  w += 8 + 3;
  CHECK_INT(d + 4 + len - w, ==, 5);
  CHECK(memcmp(w, "value", 5) == 0);
  /* the null key and value */
  d += 4 + len;
  memcpy(&len, d, 4);
  memcpy(&h, d + 4, sizeof h);
  CHECK_INT(h.flags, ==, 0);
  CHECK_INT(len, ==, sizeof h + 4);
  ds_sealed_free(sealed);
  free(ranges);
  ds_kafka_source_free(s);
  ds_kafka_producer_free(p, 1000);
  ds_kafka_mock_free(m);
}

/* Starts a source on topic "pos" and returns where each of its 3 partitions starts (-2: not
 * known) right after start returned. */
static void start_positions(const char *b, const char *group, const char *start,
                            const ds_kafka_offset *wanted, int nwanted, int group_assign,
                            int ignore_committed, int64_t out[3]) {
  const char *topics[] = {"pos"};
  ds_kafka_source_opts o;
  memset(&o, 0, sizeof o);
  o.brokers = b;
  o.topics = topics;
  o.ntopics = 1;
  o.group = group;
  o.start = start;
  o.positions = wanted;
  o.npositions = nwanted;
  o.group_assign = group_assign;
  o.ignore_committed = ignore_committed;
  ds_kafka_source *s;
  CHECK_OK(ds_kafka_source_start(&o, &s, err, sizeof err), err);
  ds_kafka_offset *pos;
  int n = ds_kafka_source_positions(s, &pos);
  CHECK(n >= 0);
  out[0] = out[1] = out[2] = -2;
  for (int i = 0; i < n; i++) {
    CHECK_STR(pos[i].topic, "pos");
    CHECK(pos[i].partition >= 0 && pos[i].partition < 3);
    if (i > 0) CHECK(pos[i].partition > pos[i - 1].partition);
    out[pos[i].partition] = pos[i].offset;
  }
  free(pos);
  ds_kafka_source_stats_get(s, &st_last);
  if (group_assign == 0) {
    /* Committing needs no group membership. */
    ds_kafka_offset c[] = {{"pos", 0, 1}};
    CHECK_OK(ds_kafka_source_commit(s, c, 1, 0, err, sizeof err), err);
  }
  ds_kafka_source_free(s);
}

/* Direct assignment fixes every partition's start inside ds_kafka_source_start: an explicit
 * position, else the group's committed offset (unless ignored), else the start policy as the
 * low or high watermark. Group assignment knows none before the group assigns them. */
static void test_direct_positions(void) {
  ds_kafka_mock *m;
  CHECK_OK(ds_kafka_mock_new(1, &m, err, sizeof err), err);
  const char *b = ds_kafka_mock_bootstrap(m);
  CHECK_OK(ds_kafka_mock_topic_create(m, "pos", 3, err, sizeof err), err);
  ds_kafka_producer *p = new_producer(b);
  for (int i = 0; i < 5; i++)
    CHECK_OK(ds_kafka_producer_send(p, "pos", 0, NULL, 0, "x", 1, NULL, 0, err, sizeof err), err);
  for (int i = 0; i < 2; i++)
    CHECK_OK(ds_kafka_producer_send(p, "pos", 1, NULL, 0, "y", 1, NULL, 0, err, sizeof err), err);
  CHECK_OK(ds_kafka_producer_flush(p, 20000, NULL, NULL, err, sizeof err), err);
  int64_t at[3];
  double t0 = now_s();
  start_positions(b, "gp", "latest", NULL, 0, 0, 0, at);
  CHECK(now_s() - t0 < 2.0); /* no group join */
  CHECK_INT(at[0], ==, 5);
  CHECK_INT(at[1], ==, 2);
  CHECK_INT(at[2], ==, 0);
  CHECK_INT(st_last.partitions, ==, 3);
  /* gp committed offset 1 of partition 0 (start_positions does) */
  start_positions(b, "gp", "latest", NULL, 0, 0, 0, at);
  CHECK_INT(at[0], ==, 1);
  CHECK_INT(at[1], ==, 2);
  start_positions(b, "gp", "earliest", NULL, 0, 0, 1, at); /* committed offsets ignored */
  CHECK_INT(at[0], ==, 0);
  CHECK_INT(at[1], ==, 0);
  ds_kafka_offset w[] = {{"pos", 1, 1}};
  start_positions(b, "gp", "earliest", w, 1, 0, 0, at);
  CHECK_INT(at[0], ==, 1);
  CHECK_INT(at[1], ==, 1);
  CHECK_INT(at[2], ==, 0);
  start_positions(b, "gq", "latest", NULL, 0, 1, 0, at);
  CHECK_INT(at[0], ==, -2);
  CHECK_INT(at[1], ==, -2);
  ds_kafka_producer_free(p, 1000);
  ds_kafka_mock_free(m);
}

/* A message that cannot be delivered is reported by flush, never dropped silently. */
static void test_delivery_failure(void) {
  ds_kafka_mock *m;
  CHECK_OK(ds_kafka_mock_new(1, &m, err, sizeof err), err);
  const char *b = ds_kafka_mock_bootstrap(m);
  CHECK_OK(ds_kafka_mock_topic_create(m, "t", 1, err, sizeof err), err);
  ds_kafka_kv conf[] = {{"message.timeout.ms", "500"}};
  ds_kafka_producer_opts po = {b, conf, 1, NULL, 5000};
  ds_kafka_producer *p;
  CHECK_OK(ds_kafka_producer_new(&po, &p, err, sizeof err), err);
  CHECK_OK(ds_kafka_mock_broker_down(m, -1, err, sizeof err), err);
  ds_kafka_producer_mark(p);
  CHECK_OK(ds_kafka_producer_send(p, "t", -1, NULL, 0, "a", 1, NULL, 0, err, sizeof err), err);
  uint64_t delivered = 9, failed = 9;
  int rc = ds_kafka_producer_flush(p, 5000, &delivered, &failed, err, sizeof err);
  CHECK_INT(rc, ==, -EIO);
  CHECK_INT(delivered, ==, 0);
  CHECK_INT(failed, ==, 1);
  CHECK_HAS(err, "not delivered");
  CHECK_OK(ds_kafka_mock_broker_up(m, -1, err, sizeof err), err);
  /* Once the producer has reconnected (its backoff is up to 2 s), messages go through. */
  for (int attempt = 0;; attempt++) {
    CHECK(attempt < 20);
    ds_kafka_producer_mark(p);
    CHECK_OK(ds_kafka_producer_send(p, "t", -1, NULL, 0, "b", 1, NULL, 0, err, sizeof err), err);
    if (ds_kafka_producer_flush(p, 10000, &delivered, &failed, err, sizeof err) == 0) break;
    CHECK_INT(failed, ==, 1);
  }
  CHECK_INT(delivered, ==, 1);
  ds_kafka_producer_free(p, 1000);
  ds_kafka_mock_free(m);
}

/* Waits up to `seconds` for the end started by ds_kafka_source_finish to reach `phase`. */
static int wait_finish(ds_kafka_source *s, int phase, double seconds) {
  double deadline = now_s() + seconds;
  int state;
  while ((state = ds_kafka_source_finish_state(s, NULL, NULL, 0)) < phase && now_s() < deadline)
    usleep(10000);
  return state;
}

/* The end of a source runs on a thread of its own: the last commit and leaving the group. With
 * the broker up both complete; with it down the caller can abandon them, and free() then
 * returns at once (the source is left to the thread and to the process's exit). */
static void test_finish(void) {
  ds_kafka_mock *m;
  CHECK_OK(ds_kafka_mock_new(1, &m, err, sizeof err), err);
  const char *b = ds_kafka_mock_bootstrap(m);
  CHECK_OK(ds_kafka_mock_topic_create(m, "fin", 2, err, sizeof err), err);
  const char *topics[] = {"fin"};
  ds_kafka_source_opts o;
  memset(&o, 0, sizeof o);
  o.brokers = b;
  o.topics = topics;
  o.ntopics = 1;
  o.group = "g-fin";
  o.start = "earliest";
  ds_kafka_source *s;
  CHECK_OK(ds_kafka_source_start(&o, &s, err, sizeof err), err);
  ds_kafka_offset c[] = {{"fin", 0, 0}, {"fin", 1, 0}};
  CHECK_OK(ds_kafka_source_finish(s, c, 2, err, sizeof err), err);
  CHECK(ds_kafka_source_finish(s, c, 2, err, sizeof err) == -EALREADY);
  CHECK_INT(wait_finish(s, DS_KAFKA_FINISH_DONE, 10), ==, DS_KAFKA_FINISH_DONE);
  int commit_rc = -1;
  CHECK_INT(ds_kafka_source_finish_state(s, &commit_rc, err, sizeof err), ==, DS_KAFKA_FINISH_DONE);
  CHECK_INT(commit_rc, ==, 0);
  ds_kafka_source_free(s);
  ds_kafka_offset got[] = {{"fin", 0, -2}, {"fin", 1, -2}};
  CHECK_OK(ds_kafka_committed(b, "g-fin", NULL, 0, got, 2, 10000, err, sizeof err), err);
  CHECK_INT(got[0].offset, ==, 0);
  CHECK_INT(got[1].offset, ==, 0);

  /* The broker gone: the commit waits (2 s); abandoned, free() does not. */
  CHECK_OK(ds_kafka_source_start(&o, &s, err, sizeof err), err);
  CHECK_OK(ds_kafka_mock_broker_down(m, 1, err, sizeof err), err);
  CHECK_OK(ds_kafka_source_finish(s, c, 2, err, sizeof err), err);
  usleep(300000);
  CHECK_INT(ds_kafka_source_finish_state(s, NULL, NULL, 0), ==, DS_KAFKA_FINISH_COMMIT);
  ds_kafka_source_abandon(s);
  double t0 = now_s();
  ds_kafka_source_free(s);
  CHECK(now_s() - t0 < 0.1);
  /* The thread ends by itself (the commit's 2 s, no second attempt, no close). */
  CHECK_INT(wait_finish(s, DS_KAFKA_FINISH_DONE, 5), ==, DS_KAFKA_FINISH_ABANDONED);
  ds_kafka_mock_free(m);
}

int main(void) {
  test_mock();
  test_source_seal();
  test_full_layout();
  test_direct_positions();
  test_delivery_failure();
  test_finish();
  printf("test_kafka: ok\n");
  return 0;
}
