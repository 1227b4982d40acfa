/* ds_lua_kafka.c - Lua bindings for Kafka: core.kafka_source, kafka_producer, kafka_mock and helpers. */
#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <lua.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "ds_kafka.h"
#include "ds_kafka_int.h"
#include "ds_kafka_mock.h"
#include "ds_log.h"
#include "ds_lua.h"

#define KSOURCE_MT "ds.kafka_source"
#define KPRODUCER_MT "ds.kafka_producer"
#define KMOCK_MT "ds.kafka_mock"
#define KREADER_MT "ds.kafka_reader"

/* ---- option helpers ----------------------------------------------------------------------- */

static const char *field_string(lua_State *L, int t, const char *k, int required) {
  lua_getfield(L, t, k);
  const char *s = lua_isnil(L, -1) ? NULL : lua_tostring(L, -1);
  if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TSTRING)
    luaL_error(L, "option '%s' must be a string", k);
  lua_pop(L, 1); /* the string stays referenced by the options table */
  if (!s && required) luaL_error(L, "option '%s' is required", k);
  return s;
}

static lua_Number field_number(lua_State *L, int t, const char *k, lua_Number def) {
  lua_getfield(L, t, k);
  lua_Number v = def;
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TNUMBER) luaL_error(L, "option '%s' must be a number", k);
    v = lua_tonumber(L, -1);
  }
  lua_pop(L, 1);
  return v;
}

/* Reads a table of librdkafka properties (values: strings, numbers, booleans) at field `k` of
 * table t. The strings are kept alive in a table pushed on the stack (pop it when done). */
static ds_kafka_kv *read_conf(lua_State *L, int t, const char *k, int *n) {
  *n = 0;
  lua_newtable(L); /* anchor */
  int anchor = lua_gettop(L);
  lua_getfield(L, t, k);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return NULL;
  }
  if (!lua_istable(L, -1)) luaL_error(L, "option '%s' must be a table of librdkafka properties", k);
  int conf = lua_gettop(L);
  int count = 0;
  lua_pushnil(L);
  while (lua_next(L, conf)) {
    count++;
    lua_pop(L, 1);
  }
  ds_kafka_kv *kv = lua_newuserdata(L, sizeof *kv * (size_t)(count ? count : 1));
  lua_rawseti(L, anchor, 1);
  int i = 0, slot = 2;
  lua_pushnil(L);
  while (lua_next(L, conf)) {
    if (lua_type(L, -2) != LUA_TSTRING) luaL_error(L, "%s: property names must be strings", k);
    int tv = lua_type(L, -1);
    if (tv == LUA_TBOOLEAN) {
      lua_pushstring(L, lua_toboolean(L, -1) ? "true" : "false");
    } else if (tv == LUA_TNUMBER || tv == LUA_TSTRING) {
      lua_pushvalue(L, -1);
      lua_tostring(L, -1); /* converts the copy */
    } else {
      luaL_error(L, "%s: property '%s' must be a string, number or boolean", k,
                 lua_tostring(L, -2));
    }
    kv[i].value = lua_tostring(L, -1);
    lua_rawseti(L, anchor, slot++);
    kv[i].key = lua_tostring(L, -2);
    i++;
    lua_pop(L, 1);
  }
  lua_pop(L, 1); /* the conf table: its keys stay referenced by the options table */
  *n = count;
  return kv;
}

/* Reads an array of { topic =, partition =, offset = } at index idx into userdata on the stack. */
static ds_kafka_offset *read_offsets(lua_State *L, int idx, int *n, int need_offset) {
  luaL_checktype(L, idx, LUA_TTABLE);
  int count = (int)lua_objlen(L, idx);
  ds_kafka_offset *o = lua_newuserdata(L, sizeof *o * (size_t)(count ? count : 1));
  for (int i = 0; i < count; i++) {
    lua_rawgeti(L, idx, i + 1);
    if (!lua_istable(L, -1)) luaL_error(L, "offset %d must be a table {topic, partition, offset}", i + 1);
    lua_getfield(L, -1, "topic");
    lua_getfield(L, -2, "partition");
    lua_getfield(L, -3, "offset");
    if (lua_type(L, -3) != LUA_TSTRING || lua_type(L, -2) != LUA_TNUMBER ||
        (need_offset && lua_type(L, -1) != LUA_TNUMBER))
      luaL_error(L, "offset %d must be a table {topic = string, partition = n, offset = n}", i + 1);
    o[i].topic = lua_tostring(L, -3); /* referenced by the argument table */
    o[i].partition = (int32_t)lua_tonumber(L, -2);
    o[i].offset = (int64_t)lua_tonumber(L, -1);
    lua_pop(L, 4);
  }
  *n = count;
  return o;
}

/* Pushes { {topic =, partition =, offset =}, ... }, the shape read_offsets reads. */
static void push_offsets(lua_State *L, const ds_kafka_offset *o, int n) {
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    lua_createtable(L, 0, 3);
    lua_pushstring(L, o[i].topic);
    lua_setfield(L, -2, "topic");
    lua_pushnumber(L, o[i].partition);
    lua_setfield(L, -2, "partition");
    lua_pushnumber(L, (lua_Number)o[i].offset);
    lua_setfield(L, -2, "offset");
    lua_rawseti(L, -2, i + 1);
  }
}

static int fail(lua_State *L, const char *err) {
  lua_pushnil(L);
  lua_pushstring(L, err);
  return 2;
}

static void set_num(lua_State *L, const char *k, double v) {
  lua_pushnumber(L, v);
  lua_setfield(L, -2, k);
}

/* ---- sources ------------------------------------------------------------------------------ */

typedef struct lsource {
  ds_kafka_source *src; /* NULL once closed */
} lsource;

static lsource *check_ksource(lua_State *L) {
  lsource *s = luaL_checkudata(L, 1, KSOURCE_MT);
  if (!s->src) luaL_error(L, "the Kafka source is closed");
  return s;
}

/* core.kafka_source{ brokers, topics, group, start, conf, layout, pause_records, pause_bytes,
 * positions, ignore_committed, assign = "all" | "group", positions_group, refresh_ms,
 * timeout_ms } */
static int l_kafka_source(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  ds_kafka_source_opts o;
  memset(&o, 0, sizeof o);
  o.brokers = field_string(L, 1, "brokers", 1);
  o.group = field_string(L, 1, "group", 1);
  o.start = field_string(L, 1, "start", 0);
  const char *layout = field_string(L, 1, "layout", 0);
  o.layout = layout && strcmp(layout, "full") == 0 ? DS_KAFKA_LAYOUT_FULL : DS_KAFKA_LAYOUT_VALUE;
  o.pause_records = (uint64_t)field_number(L, 1, "pause_records", 0);
  o.pause_bytes = (uint64_t)field_number(L, 1, "pause_bytes", 0);
  lua_getfield(L, 1, "ignore_committed");
  o.ignore_committed = lua_toboolean(L, -1);
  lua_pop(L, 1);
  const char *assign = field_string(L, 1, "assign", 0);
  if (assign && strcmp(assign, "all") != 0 && strcmp(assign, "group") != 0)
    return luaL_error(L, "option 'assign' must be \"all\" or \"group\"");
  o.group_assign = assign && strcmp(assign, "group") == 0;
  o.positions_group = field_string(L, 1, "positions_group", 0);
  o.refresh_ms = (int)field_number(L, 1, "refresh_ms", 0);
  o.timeout_ms = (int)field_number(L, 1, "timeout_ms", 0);
  lua_getfield(L, 1, "topics");
  if (!lua_istable(L, -1)) return luaL_error(L, "option 'topics' must be a list of topic names");
  int tt = lua_gettop(L);
  o.ntopics = (int)lua_objlen(L, tt);
  const char **topics = lua_newuserdata(L, sizeof *topics * (size_t)(o.ntopics + 1));
  for (int i = 0; i < o.ntopics; i++) {
    lua_rawgeti(L, tt, i + 1);
    if (lua_type(L, -1) != LUA_TSTRING) return luaL_error(L, "topic %d is not a string", i + 1);
    topics[i] = lua_tostring(L, -1);
    lua_pop(L, 1);
  }
  o.topics = topics;
  o.conf = read_conf(L, 1, "conf", &o.nconf);
  lua_getfield(L, 1, "positions");
  if (!lua_isnil(L, -1)) o.positions = read_offsets(L, lua_gettop(L), &o.npositions, 1);

  lsource *s = lua_newuserdata(L, sizeof *s);
  s->src = NULL;
  luaL_getmetatable(L, KSOURCE_MT);
  lua_setmetatable(L, -2);
  char err[600];
  if (ds_kafka_source_start(&o, &s->src, err, sizeof err) < 0) {
    lua_pushstring(L, err); /* no position: the context names the source */
    return lua_error(L);
  }
  return 1;
}

static void push_seal(lua_State *L, ds_sealed *sealed, ds_kafka_range *ranges, int n);

/* src:replay_due() -> whether a plan found at assignment is still to be read */
static int ks_replay_due(lua_State *L) {
  lsource *s = check_ksource(L);
  lua_pushboolean(L, ds_kafka_source_replay_due(s->src));
  return 1;
}

/* src:plan({ {topic=, partition=, from=, until=, count=}, ... }, tag) -> true | nil, err: a
 * batch's offset ranges (as seal gives them) planned before it sends anything on (see
 * ds_kafka_source_plan). */
static int ks_plan(lua_State *L) {
  lsource *s = check_ksource(L);
  luaL_checktype(L, 2, LUA_TTABLE);
  const char *tag = luaL_checkstring(L, 3);
  int n = (int)lua_objlen(L, 2);
  ds_kafka_range *r = lua_newuserdata(L, sizeof *r * (size_t)(n ? n : 1));
  for (int i = 0; i < n; i++) {
    lua_rawgeti(L, 2, i + 1);
    luaL_checktype(L, -1, LUA_TTABLE);
    lua_getfield(L, -1, "topic");
    lua_getfield(L, -2, "partition");
    lua_getfield(L, -3, "from");
    lua_getfield(L, -4, "until");
    lua_getfield(L, -5, "count");
    r[i].topic = luaL_checkstring(L, -5); /* referenced by the argument table */
    r[i].partition = (int32_t)luaL_checknumber(L, -4);
    r[i].from = (int64_t)luaL_checknumber(L, -3);
    r[i].until = (int64_t)luaL_checknumber(L, -2);
    r[i].count = (uint64_t)luaL_checknumber(L, -1);
    lua_pop(L, 6);
  }
  char err[300];
  if (ds_kafka_source_plan(s->src, r, n, tag, err, sizeof err) < 0) return fail(L, err);
  lua_pushboolean(L, 1);
  return 1;
}

/* src:seal(max_per_partition) -> partitions (see ds_lua_push_sealed) with .offset_ranges */
static int ks_seal(lua_State *L) {
  lsource *s = check_ksource(L);
  lua_Number max = luaL_optnumber(L, 2, 0);
  ds_sealed *sealed;
  ds_kafka_range *ranges;
  int n;
  int rc = ds_kafka_source_seal(s->src, max > 0 ? (uint64_t)max : 0, &sealed, &ranges, &n);
  if (rc < 0) return luaL_error(L, "seal: %s", strerror(-rc));
  push_seal(L, sealed, ranges, n);
  return 1;
}

/* src:seal_until({ {topic=, partition=, offset=}, ... }, timeout_ms) -> partitions with
 * .offset_ranges, and the number of partitions not fetched that far in time (see
 * ds_kafka_source_seal_until). */
static int ks_seal_until(lua_State *L) {
  lsource *s = check_ksource(L);
  int timeout = (int)luaL_checknumber(L, 3);
  int n;
  ds_kafka_offset *until = read_offsets(L, 2, &n, 1);
  ds_sealed *sealed;
  ds_kafka_range *ranges;
  int nr, missing;
  int rc = ds_kafka_source_seal_until(s->src, until, n, timeout, &sealed, &ranges, &nr, &missing);
  if (rc < 0) return luaL_error(L, "seal_until: %s", strerror(-rc));
  push_seal(L, sealed, ranges, nr);
  lua_pushinteger(L, missing);
  return 2;
}

static void push_seal(lua_State *L, ds_sealed *sealed, ds_kafka_range *ranges, int n) {
  ds_lua_push_sealed(L, sealed);
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    lua_createtable(L, 0, 5);
    lua_pushstring(L, ranges[i].topic);
    lua_setfield(L, -2, "topic");
    set_num(L, "partition", ranges[i].partition);
    set_num(L, "from", (double)ranges[i].from);
    set_num(L, "until", (double)ranges[i].until);
    set_num(L, "count", (double)ranges[i].count);
    lua_rawseti(L, -2, i + 1);
  }
  free(ranges);
  lua_setfield(L, -2, "offset_ranges");
}

static int ks_stats(lua_State *L) {
  lsource *s = check_ksource(L);
  ds_kafka_source_stats st;
  ds_kafka_source_stats_get(s->src, &st);
  lua_createtable(L, 0, 12);
  set_num(L, "records", (double)st.records);
  set_num(L, "bytes", (double)st.bytes);
  set_num(L, "pending", (double)st.pending);
  set_num(L, "duplicates", (double)st.duplicates);
  set_num(L, "skipped", (double)st.skipped);
  set_num(L, "errors", (double)st.errors);
  set_num(L, "commits_failed", (double)st.commits_failed);
  set_num(L, "partitions", st.partitions);
  set_num(L, "paused", st.paused);
  lua_pushboolean(L, st.connected);
  lua_setfield(L, -2, "connected");
  if (st.last_error[0]) {
    lua_pushstring(L, st.last_error);
    lua_setfield(L, -2, "last_error");
  }
  return 1;
}

/* src:group() -> { member_id =, rebalances =, assigned = { {topic, partition, offset}, ... } }:
 * what the group gave this member (assign = "group"); member_id is nil before it joined. */
static int ks_group(lua_State *L) {
  lsource *s = check_ksource(L);
  char member[128];
  uint64_t rebalances;
  ds_kafka_offset *o;
  int n = ds_kafka__source_group(s->src, member, sizeof member, &rebalances, &o);
  if (n < 0) return luaL_error(L, "group: %s", strerror(-n));
  lua_createtable(L, 0, 3);
  if (member[0]) {
    lua_pushstring(L, member);
    lua_setfield(L, -2, "member_id");
  }
  set_num(L, "rebalances", (double)rebalances);
  push_offsets(L, o, n);
  free(o);
  lua_setfield(L, -2, "assigned");
  return 1;
}

/* src:positions() -> { { topic, partition, offset }, ... }: where each partition's next batch
 * starts (fixed at start with direct assignment). */
static int ks_positions(lua_State *L) {
  lsource *s = check_ksource(L);
  ds_kafka_offset *o;
  int n = ds_kafka_source_positions(s->src, &o);
  if (n < 0) return luaL_error(L, "positions: %s", strerror(-n));
  push_offsets(L, o, n);
  free(o);
  return 1;
}

/* src:commit(offsets [, async]) -> true | nil, err */
static int ks_commit(lua_State *L) {
  lsource *s = check_ksource(L);
  int n;
  ds_kafka_offset *o = read_offsets(L, 2, &n, 1);
  char err[300];
  if (ds_kafka_source_commit(s->src, o, n, lua_toboolean(L, 3), err, sizeof err) < 0)
    return fail(L, err);
  lua_pushboolean(L, 1);
  return 1;
}

static int ks_group_metadata(lua_State *L) {
  lsource *s = check_ksource(L);
  void *buf;
  size_t len;
  char err[300];
  if (ds_kafka_source_group_metadata(s->src, &buf, &len, err, sizeof err) < 0) return fail(L, err);
  lua_pushlstring(L, buf, len);
  free(buf);
  return 1;
}

/* src:finish(offsets) -> true | nil, err: starts the end of the source on a thread of its own
 * (the last commit of `offsets`, then leaving the group; see ds_kafka_source_finish). */
static int ks_finish(lua_State *L) {
  lsource *s = check_ksource(L);
  int n;
  ds_kafka_offset *o = read_offsets(L, 2, &n, 1);
  char err[300];
  if (ds_kafka_source_finish(s->src, o, n, err, sizeof err) < 0) return fail(L, err);
  lua_pushboolean(L, 1);
  return 1;
}

/* Waiting for the end with SIGINT and SIGTERM watched: a loop of its own (libuv hands a signal
 * to every loop watching it, the driver's too), so the driver's loop is not re-entered. */
typedef struct finish_wait {
  uv_loop_t loop;
  uv_signal_t sigint, sigterm;
  uv_timer_t poll;
  ds_kafka_source *src;
  int until;            /* the DS_KAFKA_FINISH_* phase waited for */
  uint64_t quiet_until; /* uv_hrtime(): signals before it are ignored */
  int signum;           /* the signal that ended the wait, 0: the end came */
} finish_wait;

static void fw_signal(uv_signal_t *h, int signum) {
  finish_wait *w = h->data;
  if (uv_hrtime() < w->quiet_until) return;
  w->signum = signum;
  uv_stop(&w->loop);
}

static void fw_poll(uv_timer_t *t) {
  finish_wait *w = t->data;
  if (ds_kafka_source_finish_state(w->src, NULL, NULL, 0) >= w->until)
    uv_stop(&w->loop);
}

/* src:finish_wait(phase [, quiet_ms]) -> "done" | "signal", signum: waits until the end
 * started by finish() reaches `phase` ("close": the commit is over; "done"), or for SIGINT or
 * SIGTERM (except in the next quiet_ms: the two copies of one signal that `timeout` sends, to
 * the process and to its group). */
static int ks_finish_wait(lua_State *L) {
  lsource *s = check_ksource(L);
  static const char *const phases[] = {"close", "done", NULL};
  int until = luaL_checkoption(L, 2, NULL, phases) == 0 ? DS_KAFKA_FINISH_CLOSE : DS_KAFKA_FINISH_DONE;
  lua_Number quiet = luaL_optnumber(L, 3, 0);
  finish_wait *w = calloc(1, sizeof *w);
  if (!w) return luaL_error(L, "out of memory");
  int rc = uv_loop_init(&w->loop);
  if (rc) {
    free(w);
    return luaL_error(L, "finish_wait: %s", uv_strerror(rc));
  }
  w->src = s->src;
  w->until = until;
  w->quiet_until = uv_hrtime() + (quiet > 0 ? (uint64_t)(quiet * 1e6) : 0);
  uv_signal_init(&w->loop, &w->sigint);
  uv_signal_init(&w->loop, &w->sigterm);
  uv_timer_init(&w->loop, &w->poll);
  w->sigint.data = w->sigterm.data = w->poll.data = w;
  uv_signal_start(&w->sigint, fw_signal, SIGINT);
  uv_signal_start(&w->sigterm, fw_signal, SIGTERM);
  uv_timer_start(&w->poll, fw_poll, 0, 20);
  uv_run(&w->loop, UV_RUN_DEFAULT);
  uv_close((uv_handle_t *)&w->sigint, NULL);
  uv_close((uv_handle_t *)&w->sigterm, NULL);
  uv_close((uv_handle_t *)&w->poll, NULL);
  uv_run(&w->loop, UV_RUN_DEFAULT); /* the close callbacks */
  uv_loop_close(&w->loop);
  int signum = w->signum;
  free(w);
  if (signum) {
    lua_pushliteral(L, "signal");
    lua_pushinteger(L, signum);
    return 2;
  }
  lua_pushliteral(L, "done");
  return 1;
}

/* src:finish_state() -> "commit" | "close" | "done" | "abandoned" [, commit_ok, commit_err]:
 * where the end is; once past "commit", whether the commit succeeded and why not. */
static int ks_finish_state(lua_State *L) {
  lsource *s = check_ksource(L);
  static const char *const names[] = {"none", "commit", "close", "done", "abandoned"};
  int commit_rc = 0;
  char err[300] = "";
  int phase = ds_kafka_source_finish_state(s->src, &commit_rc, err, sizeof err);
  lua_pushstring(L, names[phase]);
  if (phase <= DS_KAFKA_FINISH_COMMIT) return 1;
  lua_pushboolean(L, commit_rc == 0);
  if (commit_rc == 0) return 2;
  lua_pushstring(L, err);
  return 3;
}

/* src:abandon(): the process exits without waiting for the end (see ds_kafka_source_abandon). */
static int ks_abandon(lua_State *L) {
  ds_kafka_source_abandon(check_ksource(L)->src);
  return 0;
}

static int ks_stop(lua_State *L) {
  ds_kafka_source_stop(check_ksource(L)->src);
  return 0;
}

static int ks_close(lua_State *L) {
  lsource *s = luaL_checkudata(L, 1, KSOURCE_MT);
  ds_kafka_source_free(s->src);
  s->src = NULL;
  return 0;
}

static int ks_closed(lua_State *L) {
  lsource *s = luaL_checkudata(L, 1, KSOURCE_MT);
  lua_pushboolean(L, s->src == NULL);
  return 1;
}

/* ---- producers ---------------------------------------------------------------------------- */

typedef struct lproducer {
  ds_kafka_producer *p;
} lproducer;

static lproducer *check_producer(lua_State *L) {
  lproducer *lp = luaL_checkudata(L, 1, KPRODUCER_MT);
  if (!lp->p) luaL_error(L, "the Kafka producer is closed");
  return lp;
}

/* core.kafka_producer{ brokers, conf, transactional_id, timeout_ms } -> producer | nil, err */
static int l_kafka_producer(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  ds_kafka_producer_opts o;
  memset(&o, 0, sizeof o);
  o.brokers = field_string(L, 1, "brokers", 1);
  o.transactional_id = field_string(L, 1, "transactional_id", 0);
  o.timeout_ms = (int)field_number(L, 1, "timeout_ms", 0);
  o.conf = read_conf(L, 1, "conf", &o.nconf);
  lproducer *lp = lua_newuserdata(L, sizeof *lp);
  lp->p = NULL;
  luaL_getmetatable(L, KPRODUCER_MT);
  lua_setmetatable(L, -2);
  char err[600];
  if (ds_kafka_producer_new(&o, &lp->p, err, sizeof err) < 0) return fail(L, err);
  return 1;
}

static int kp_mark(lua_State *L) {
  ds_kafka_producer_mark(check_producer(L)->p);
  return 0;
}

/* p:prepare(topic [, timeout_ms]) -> true | nil, err: the topic's metadata asked for now. */
static int kp_prepare(lua_State *L) {
  lproducer *lp = check_producer(L);
  char err[300];
  if (ds_kafka_producer_prepare(lp->p, luaL_checkstring(L, 2), (int)luaL_optinteger(L, 3, 0), err,
                                sizeof err) < 0)
    return fail(L, err);
  lua_pushboolean(L, 1);
  return 1;
}

/* p:send(topic, value [, key [, partition [, headers]]]) -> true | nil, err
 * value/key nil: null; headers: array of { name, value } or { key = name, value = v } (the
 * shape with_meta records carry, so a record's headers can be sent on as they are). */
static int kp_send(lua_State *L) {
  lproducer *lp = check_producer(L);
  const char *topic = luaL_checkstring(L, 2);
  size_t vlen = 0, klen = 0;
  const char *value = lua_isnil(L, 3) ? NULL : luaL_checklstring(L, 3, &vlen);
  const char *key = lua_isnoneornil(L, 4) ? NULL : luaL_checklstring(L, 4, &klen);
  int32_t partition = (int32_t)luaL_optinteger(L, 5, -1);
  int nh = 0;
  ds_kafka_header hs[64];
  if (!lua_isnoneornil(L, 6)) {
    luaL_checktype(L, 6, LUA_TTABLE);
    nh = (int)lua_objlen(L, 6);
    if (nh > 64) return luaL_error(L, "at most 64 headers per message");
    if (nh == 0) { /* { name = value }: a header's order and repeats need a list */
      lua_pushnil(L);
      if (lua_next(L, 6)) return luaL_error(L, "headers must be a list of { name, value }, not a table by name");
    }
    for (int i = 0; i < nh; i++) {
      lua_rawgeti(L, 6, i + 1);
      if (!lua_istable(L, -1))
        return luaL_error(L, "header %d must be a table { name, value } or { key = name, value = v }", i + 1);
      lua_rawgeti(L, -1, 1);
      if (lua_isnil(L, -1)) { /* { key =, value = } */
        lua_pop(L, 1);
        lua_getfield(L, -1, "key");
        lua_getfield(L, -2, "value");
      } else {
        lua_rawgeti(L, -2, 2);
      }
      if (lua_type(L, -2) != LUA_TSTRING) return luaL_error(L, "header %d: the name must be a string", i + 1);
      hs[i].name = lua_tostring(L, -2);
      hs[i].value = lua_isnil(L, -1) ? NULL : lua_tolstring(L, -1, &hs[i].len);
      if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TSTRING)
        return luaL_error(L, "header %d: the value must be a string", i + 1);
      lua_pop(L, 3); /* both strings stay referenced by the header table */
    }
  }
  char err[300];
  if (ds_kafka_producer_send(lp->p, topic, partition, key, klen, value, vlen, hs, nh, err,
                             sizeof err) < 0)
    return fail(L, err);
  lua_pushboolean(L, 1);
  return 1;
}

/* p:flush([timeout_ms]) -> true, delivered | nil, err, delivered, failed */
static int kp_flush(lua_State *L) {
  lproducer *lp = check_producer(L);
  int timeout = (int)luaL_optinteger(L, 2, 0);
  uint64_t delivered, failed;
  char err[400];
  int rc = ds_kafka_producer_flush(lp->p, timeout, &delivered, &failed, err, sizeof err);
  if (rc < 0) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    lua_pushnumber(L, (double)delivered);
    lua_pushnumber(L, (double)failed);
    return 4;
  }
  lua_pushboolean(L, 1);
  lua_pushnumber(L, (double)delivered);
  return 2;
}

static int txn_result(lua_State *L, int rc, const char *err) {
  if (rc == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushnil(L);
  lua_pushstring(L, err);
  lua_pushstring(L, rc == -EPIPE ? "fatal" : "error");
  return 3;
}

static int kp_begin(lua_State *L) {
  char err[300];
  int rc = ds_kafka_producer_begin(check_producer(L)->p, err, sizeof err);
  return txn_result(L, rc, err);
}

/* p:send_offsets(offsets, group_metadata) */
static int kp_send_offsets(lua_State *L) {
  lproducer *lp = check_producer(L);
  int n;
  ds_kafka_offset *o = read_offsets(L, 2, &n, 1);
  size_t gl;
  const char *gm = luaL_checklstring(L, 3, &gl);
  char err[300];
  int rc = ds_kafka_producer_send_offsets(lp->p, o, n, gm, gl, err, sizeof err);
  return txn_result(L, rc, err);
}

static int kp_commit(lua_State *L) {
  char err[300];
  int rc = ds_kafka_producer_commit(check_producer(L)->p, err, sizeof err);
  return txn_result(L, rc, err);
}

static int kp_abort(lua_State *L) {
  char err[300];
  int rc = ds_kafka_producer_abort(check_producer(L)->p, err, sizeof err);
  return txn_result(L, rc, err);
}

static int kp_fatal(lua_State *L) {
  lua_pushboolean(L, ds_kafka_producer_fatal(check_producer(L)->p));
  return 1;
}

/* p:close([timeout_ms]): waits up to timeout_ms (default 0) for queued messages. */
static int kp_close(lua_State *L) {
  lproducer *lp = luaL_checkudata(L, 1, KPRODUCER_MT);
  ds_kafka_producer_free(lp->p, (int)luaL_optinteger(L, 2, 0));
  lp->p = NULL;
  return 0;
}

/* ---- mock clusters ------------------------------------------------------------------------ */

typedef struct lmock {
  ds_kafka_mock *m;
} lmock;

static lmock *check_mock(lua_State *L) {
  lmock *lm = luaL_checkudata(L, 1, KMOCK_MT);
  if (!lm->m) luaL_error(L, "the mock cluster is closed");
  return lm;
}

/* core.kafka_mock(brokers) -> cluster */
static int l_kafka_mock(lua_State *L) {
  int brokers = (int)luaL_optinteger(L, 1, 1);
  lmock *lm = lua_newuserdata(L, sizeof *lm);
  lm->m = NULL;
  luaL_getmetatable(L, KMOCK_MT);
  lua_setmetatable(L, -2);
  char err[300];
  if (ds_kafka_mock_new(brokers, &lm->m, err, sizeof err) < 0) return luaL_error(L, "%s", err);
  return 1;
}

static int km_bootstrap(lua_State *L) {
  lua_pushstring(L, ds_kafka_mock_bootstrap(check_mock(L)->m));
  return 1;
}

static int km_create_topic(lua_State *L) {
  lmock *lm = check_mock(L);
  char err[300];
  if (ds_kafka_mock_topic_create(lm->m, luaL_checkstring(L, 2), (int)luaL_checkinteger(L, 3), err,
                                 sizeof err) < 0)
    return luaL_error(L, "%s", err);
  return 0;
}

/* m:topic_error(name, code): the topic's metadata carries Kafka error `code` (0: none). */
static int km_topic_error(lua_State *L) {
  lmock *lm = check_mock(L);
  char err[300];
  if (ds_kafka_mock_topic_error(lm->m, luaL_checkstring(L, 2), (int)luaL_checkinteger(L, 3), err,
                                sizeof err) < 0)
    return luaL_error(L, "%s", err);
  return 0;
}

static int km_broker(lua_State *L, int up) {
  lmock *lm = check_mock(L);
  int id = (int)luaL_checkinteger(L, 2);
  char err[300];
  int rc = up ? ds_kafka_mock_broker_up(lm->m, id, err, sizeof err)
              : ds_kafka_mock_broker_down(lm->m, id, err, sizeof err);
  if (rc < 0) return luaL_error(L, "%s", err);
  return 0;
}
static int km_broker_down(lua_State *L) { return km_broker(L, 0); }
static int km_broker_up(lua_State *L) { return km_broker(L, 1); }

static int km_brokers(lua_State *L) {
  lua_pushinteger(L, ds_kafka_mock_brokers(check_mock(L)->m));
  return 1;
}

static int km_close(lua_State *L) {
  lmock *lm = luaL_checkudata(L, 1, KMOCK_MT);
  ds_kafka_mock_free(lm->m);
  lm->m = NULL;
  return 0;
}

/* ---- partition readers (cluster mode's changelogs) ------------------------------------------ */

typedef struct lreader {
  ds_kafka_reader *r;
} lreader;

static ds_kafka_reader *check_reader(lua_State *L) {
  lreader *lr = luaL_checkudata(L, 1, KREADER_MT);
  if (!lr->r) luaL_error(L, "the Kafka reader is closed");
  return lr->r;
}

/* core.kafka_reader{ brokers, conf } -> reader | nil, err */
static int l_kafka_reader(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  const char *brokers = field_string(L, 1, "brokers", 1);
  int nconf = 0;
  ds_kafka_kv *conf = read_conf(L, 1, "conf", &nconf);
  char err[300];
  ds_kafka_reader *r = NULL;
  if (ds_kafka_reader_new(brokers, conf, nconf, &r, err, sizeof err) < 0) return fail(L, err);
  lreader *lr = lua_newuserdata(L, sizeof *lr);
  lr->r = r;
  luaL_getmetatable(L, KREADER_MT);
  lua_setmetatable(L, -2);
  return 1;
}

/* r:watermarks(topic, partition [, timeout_ms]) -> low, high | nil, err */
static int kr_watermarks(lua_State *L) {
  ds_kafka_reader *r = check_reader(L);
  int64_t low = 0, high = 0;
  char err[300];
  if (ds_kafka_reader_watermarks(r, luaL_checkstring(L, 2), (int32_t)luaL_checkinteger(L, 3), &low,
                                 &high, (int)luaL_optinteger(L, 4, 10000), err, sizeof err) < 0)
    return fail(L, err);
  lua_pushnumber(L, (lua_Number)low);
  lua_pushnumber(L, (lua_Number)high);
  return 2;
}

typedef struct read_ctx {
  lua_State *L;
  int keys, values, offsets, n;
} read_ctx;

/* Appends a message's key, value (false for a null) and offset to the three arrays. */
static int read_push(void *opaque, int64_t offset, const void *key, size_t klen, const void *value,
                     size_t vlen) {
  read_ctx *c = opaque;
  c->n++;
  lua_pushnumber(c->L, (lua_Number)offset);
  lua_rawseti(c->L, c->offsets, c->n);
  if (key) lua_pushlstring(c->L, key, klen);
  else lua_pushboolean(c->L, 0);
  lua_rawseti(c->L, c->keys, c->n);
  if (value) lua_pushlstring(c->L, value, vlen);
  else lua_pushboolean(c->L, 0);
  lua_rawseti(c->L, c->values, c->n);
  return 0;
}

/* r:read(topic, partition, from, until [, max [, timeout_ms]]) -> keys, values, next, offsets |
 * nil, err: the messages from offset `from` below `until`, at most max (default 10000) */
static int kr_read(lua_State *L) {
  ds_kafka_reader *r = check_reader(L);
  const char *topic = luaL_checkstring(L, 2);
  int32_t partition = (int32_t)luaL_checkinteger(L, 3);
  int64_t from = (int64_t)luaL_checknumber(L, 4), until = (int64_t)luaL_checknumber(L, 5);
  int max = (int)luaL_optinteger(L, 6, 10000);
  int timeout = (int)luaL_optinteger(L, 7, 30000);
  lua_settop(L, 7);
  read_ctx c = {L, 8, 9, 10, 0};
  lua_newtable(L);
  lua_newtable(L);
  lua_newtable(L);
  int64_t next = from;
  char err[300];
  if (ds_kafka_reader_read(r, topic, partition, from, until, max, timeout, read_push, &c, &next, err,
                           sizeof err) < 0)
    return fail(L, err);
  lua_pushnumber(L, (lua_Number)next);
  lua_pushvalue(L, 10);
  lua_remove(L, 10);
  return 4;
}

static int kr_close(lua_State *L) {
  lreader *lr = luaL_checkudata(L, 1, KREADER_MT);
  ds_kafka_reader_free(lr->r);
  lr->r = NULL;
  return 0;
}

/* core.kafka_topic_ensure(brokers, topic, partitions [, conf_holder [, timeout_ms]]) -> count |
 * nil, err: the topic made with that many partitions unless it exists; its partition count. */
static int l_kafka_topic_ensure(lua_State *L) {
  const char *brokers = luaL_checkstring(L, 1);
  const char *topic = luaL_checkstring(L, 2);
  int partitions = (int)luaL_checkinteger(L, 3);
  int timeout = (int)luaL_optinteger(L, 5, 10000); /* before read_conf pushes its anchor */
  int nconf = 0;
  ds_kafka_kv *conf = NULL;
  if (lua_istable(L, 4)) conf = read_conf(L, 4, "conf", &nconf);
  char err[300];
  int count = 0;
  if (ds_kafka_topic_ensure(brokers, topic, partitions, conf, nconf, timeout, &count, err, sizeof err) < 0)
    return fail(L, err);
  lua_pushinteger(L, count);
  return 1;
}

/* ---- helpers ------------------------------------------------------------------------------ */

/* core.kafka_committed(brokers, group, partitions [, conf_holder [, timeout_ms]]) -> offsets |
 * nil, err. partitions: array of { topic, partition }; conf_holder: { conf = {...} }. */
static int l_kafka_committed(lua_State *L) {
  const char *brokers = luaL_checkstring(L, 1);
  const char *group = luaL_checkstring(L, 2);
  int timeout = (int)luaL_optinteger(L, 5, 10000); /* before the helpers push on the stack */
  int n;
  ds_kafka_offset *o = read_offsets(L, 3, &n, 0);
  int nconf = 0;
  ds_kafka_kv *conf = NULL;
  if (lua_istable(L, 4)) conf = read_conf(L, 4, "conf", &nconf);
  char err[300];
  if (ds_kafka_committed(brokers, group, conf, nconf, o, n, timeout, err, sizeof err) < 0)
    return fail(L, err);
  push_offsets(L, o, n);
  return 1;
}

/* core.kafka_partitions(brokers, topic [, conf_holder [, timeout_ms]]) -> n | nil, err */
static int l_kafka_partitions(lua_State *L) {
  const char *brokers = luaL_checkstring(L, 1);
  const char *topic = luaL_checkstring(L, 2);
  int timeout = (int)luaL_optinteger(L, 4, 10000); /* before read_conf pushes its anchor */
  int nconf = 0;
  ds_kafka_kv *conf = NULL;
  if (lua_istable(L, 3)) conf = read_conf(L, 3, "conf", &nconf);
  char err[300];
  int count = 0;
  if (ds_kafka_partition_count(brokers, topic, conf, nconf, timeout, &count, err, sizeof err) < 0)
    return fail(L, err);
  lua_pushinteger(L, count);
  return 1;
}

/* core.kafka_append(path, data) -> true | nil, err: one write with O_APPEND, so lines that
 * several workers append to one file do not interleave. */
static int l_append(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "cannot open %s: %s", path, strerror(errno));
    return 2;
  }
  size_t done = 0;
  while (done < len) {
    ssize_t w = write(fd, data + done, len - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      int e = errno;
      close(fd);
      lua_pushnil(L);
      lua_pushfstring(L, "cannot write %s: %s", path, strerror(e));
      return 2;
    }
    done += (size_t)w;
  }
  close(fd);
  lua_pushboolean(L, 1);
  return 1;
}

/* core.kafka_log(level, message): level "error", "warn", "info" or "debug". */
static int l_log(lua_State *L) {
  int level = ds_log_parse_level(luaL_checkstring(L, 1));
  if (level < 0) return luaL_argerror(L, 1, "error, warn, info or debug");
  ds_log(level, "%s", luaL_checkstring(L, 2));
  return 0;
}

/* ---- registration ------------------------------------------------------------------------- */

void ds_lua_open_kafka(lua_State *L) {
  static const luaL_Reg source_methods[] = {
      {"seal", ks_seal},   {"seal_until", ks_seal_until}, {"plan", ks_plan}, {"replay_due", ks_replay_due}, {"stats", ks_stats}, {"group", ks_group}, {"commit", ks_commit},
      {"positions", ks_positions},
      {"group_metadata", ks_group_metadata},    {"stop", ks_stop},
      {"finish", ks_finish}, {"finish_wait", ks_finish_wait}, {"finish_state", ks_finish_state},
      {"abandon", ks_abandon},
      {"close", ks_close}, {"closed", ks_closed}, {NULL, NULL}};
  static const luaL_Reg producer_methods[] = {
      {"mark", kp_mark},     {"prepare", kp_prepare}, {"send", kp_send},     {"flush", kp_flush},
      {"begin", kp_begin},   {"send_offsets", kp_send_offsets},
      {"commit", kp_commit}, {"abort", kp_abort},   {"fatal", kp_fatal},
      {"close", kp_close},   {NULL, NULL}};
  static const luaL_Reg mock_methods[] = {
      {"bootstrap", km_bootstrap},     {"brokers", km_brokers},
      {"create_topic", km_create_topic}, {"broker_down", km_broker_down},
      {"topic_error", km_topic_error},
      {"broker_up", km_broker_up},     {"close", km_close},
      {NULL, NULL}};
  static const luaL_Reg reader_methods[] = {
      {"watermarks", kr_watermarks}, {"read", kr_read}, {"close", kr_close}, {NULL, NULL}};
  static const luaL_Reg functions[] = {{"kafka_source", l_kafka_source},
                                       {"kafka_producer", l_kafka_producer},
                                       {"kafka_mock", l_kafka_mock},
                                       {"kafka_committed", l_kafka_committed},
                                       {"kafka_partitions", l_kafka_partitions},
                                       {"kafka_reader", l_kafka_reader},
                                       {"kafka_topic_ensure", l_kafka_topic_ensure},
                                       {"kafka_append", l_append},
                                       {"kafka_log", l_log},
                                       {NULL, NULL}};
  ds_lua_new_class(L, KSOURCE_MT, source_methods, ks_close, NULL);
  ds_lua_new_class(L, KPRODUCER_MT, producer_methods, kp_close, NULL);
  ds_lua_new_class(L, KMOCK_MT, mock_methods, km_close, NULL);
  ds_lua_new_class(L, KREADER_MT, reader_methods, kr_close, NULL);
  luaL_register(L, NULL, functions);
}
