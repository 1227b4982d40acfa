/* test_ship.c - closure shipping (lua/dstream/ship.lua) between two real Lua states.
 *
 * State A (the "driver") builds closures and encodes them with dstream.ship; the bytes are
 * copied out as a C string and decoded in state B (a "worker"), which runs the result and
 * asserts what a user can observe. B runs on the main thread and again on its own pthread
 * (opened, used and closed there), and several B states decode at once on their threads. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "ds_vm.h"

#include "check.h"

/* ---- running Lua ---------------------------------------------------------------------- */

typedef struct bytes {
  char *p;
  size_t len;
} bytes;

/* Runs `code` as a chunk named `chunkname` with one optional string argument; leaves one
 * result on the stack. A Lua error fails the test with its traceback. */
static void run_chunk(lua_State *L, const char *chunkname, const char *code, const bytes *arg) {
  lua_getglobal(L, "debug");
  lua_getfield(L, -1, "traceback");
  lua_remove(L, -2);
  int handler = lua_gettop(L);
  if (luaL_loadbuffer(L, code, strlen(code), chunkname) != 0) {
    fprintf(stderr, "cannot load %s: %s\n", chunkname, lua_tostring(L, -1));
    abort();
  }
  int nargs = 0;
  if (arg) {
    lua_pushlstring(L, arg->p, arg->len);
    nargs = 1;
  }
  if (lua_pcall(L, nargs, 1, handler) != 0) {
    fprintf(stderr, "%s failed: %s\n", chunkname, lua_tostring(L, -1));
    abort();
  }
  lua_remove(L, handler);
}

/* Pops a string result into C memory (the caller frees it). */
static bytes pop_bytes(lua_State *L) {
  CHECK_INT(lua_type(L, -1), ==, LUA_TSTRING);
  size_t len;
  const char *s = lua_tolstring(L, -1, &len);
  bytes b = {malloc(len + 1), len};
  CHECK(b.p != NULL);
  memcpy(b.p, s, len);
  b.p[len] = '\0';
  lua_pop(L, 1);
  return b;
}

/* Runs `code` in a fresh state A and returns the string it returns (encoded bytes, or a
 * refusal message). */
static bytes in_fresh_state(const char *chunkname, const char *code) {
  ds_vm a;
  CHECK_INT(ds_vm_open(&a, 0), ==, 0);
  run_chunk(a.L, chunkname, code, NULL);
  bytes out = pop_bytes(a.L);
  CHECK_INT(lua_gettop(a.L), ==, 0);
  ds_vm_close(&a);
  return out;
}

/* Decodes and checks in a fresh state B on the calling thread: `code` gets the bytes as `...`
 * and returns a string, which is returned (the caller frees it). */
static bytes decode_in_fresh_state(const bytes *encoded, const char *code) {
  ds_vm b;
  CHECK_INT(ds_vm_open(&b, 0), ==, 0);
  run_chunk(b.L, "=worker", code, encoded);
  bytes out = pop_bytes(b.L);
  CHECK_INT(lua_gettop(b.L), ==, 0);
  ds_vm_close(&b);
  return out;
}

typedef struct decode_job {
  const bytes *encoded;
  const char *code;
  bytes result;
} decode_job;

static void *decode_thread(void *arg) {
  decode_job *job = arg;
  job->result = decode_in_fresh_state(job->encoded, job->code);
  return NULL;
}

/* The same decode on another thread, with a state created, used and closed there. */
static bytes decode_on_thread(const bytes *encoded, const char *code) {
  decode_job job = {encoded, code, {NULL, 0}};
  pthread_t th;
  CHECK_INT(pthread_create(&th, NULL, decode_thread, &job), ==, 0);
  CHECK_INT(pthread_join(th, NULL), ==, 0);
  return job.result;
}

/* Encodes in A, then decodes and checks in B: once on this thread, once on a pthread.
 * Each B returns a string that must contain `want`. */
static void ship_case(const char *name, const char *a_code, const char *b_code,
                      const char *want) {
  bytes enc = in_fresh_state(name, a_code);
  CHECK_INT(enc.len, >, 0);
  for (int threaded = 0; threaded <= 1; threaded++) {
    bytes got = threaded ? decode_on_thread(&enc, b_code) : decode_in_fresh_state(&enc, b_code);
    CHECK_HAS(got.p, want);
    free(got.p);
  }
  free(enc.p);
}

/* ---- cases ---------------------------------------------------------------------------- */

static const char identity_a[] =
    "local ship = require('dstream.ship')\n"
    "local t = { n = 1 }\n"
    "local a, b = t, t\n"
    "local cyc = { name = 'cyc' }\n"
    "cyc.self = cyc\n"
    "cyc.list = { cyc, t, [3] = { back = cyc } }\n"
    "local g = function() return 'g' end\n"
    "local g2 = g\n"
    "local f = function() return a, b, cyc, g, g2 end\n"
    "return ship.encode(f)\n";
static const char identity_b[] =
    "local f = require('dstream.ship').decode(...)\n"
    "assert(type(f) == 'function')\n"
    "local a, b, cyc, g, g2 = f()\n"
    "assert(type(a) == 'table' and a == b, 'one table through two upvalues')\n"
    "a.n = a.n + 41\n"
    "assert(b.n == 42, 'a change through one upvalue is seen through the other')\n"
    "assert(cyc.name == 'cyc' and cyc.self == cyc, 'a cycle')\n"
    "assert(cyc.list[1] == cyc and cyc.list[3].back == cyc, 'cycles through nested tables')\n"
    "assert(cyc.list[2] == a, 'the shared table inside the cycle is the same table')\n"
    "assert(g == g2 and g() == 'g', 'a function reached twice is one function')\n"
    "return 'identity ok'\n";

static const char shared_upvalue_a[] =
    "local ship = require('dstream.ship')\n"
    "local counter = 0\n"
    "local function inc(k) counter = counter + (k or 1) return counter end\n"
    "local function get() return counter end\n"
    "counter = 10\n"
    "local both = function() inc() return get() end\n"
    "return ship.encode({ inc = inc, get = get, both = both })\n";
static const char shared_upvalue_b[] =
    "local h = require('dstream.ship').decode(...)\n"
    "assert(h.get() == 10, 'the value at encode time: ' .. tostring(h.get()))\n"
    "assert(h.inc() == 11)\n"
    "assert(h.get() == 11, 'the sibling sees the increment: ' .. tostring(h.get()))\n"
    "h.inc(5)\n"
    "assert(h.get() == 16)\n"
    "assert(h.both() == 17 and h.get() == 17, 'a third closure shares it too')\n"
    "assert(debug.upvalueid(h.inc, 1) == debug.upvalueid(h.get, 1))\n"
    "return 'shared ok ' .. h.get()\n";

static const char recursive_a[] =
    "local ship = require('dstream.ship')\n"
    "local function fact(n) if n <= 1 then return 1 end return n * fact(n - 1) end\n"
    "local is_even, is_odd\n"
    "function is_even(n) if n == 0 then return true end return is_odd(n - 1) end\n"
    "function is_odd(n) if n == 0 then return false end return is_even(n - 1) end\n"
    "return ship.encode({ fact = fact, is_even = is_even })\n";
static const char recursive_b[] =
    "local t = require('dstream.ship').decode(...)\n"
    "assert(t.fact(10) == 3628800, tostring(t.fact(10)))\n"
    "local name, up = debug.getupvalue(t.fact, 1)\n"
    "assert(name == 'fact' and up == t.fact, 'the recursive local is the function itself')\n"
    "assert(t.is_even(10) == true and t.is_even(7) == false)\n"
    "return 'recursive ok ' .. t.fact(5)\n";

static const char modules_a[] =
    "local ship = require('dstream.ship')\n"
    "package.preload['test.conf'] = function() return { side = 'driver' } end\n"
    "local conf = require('test.conf')\n"
    "local sbuf = require('string.buffer')\n"
    "local str, m = string, math\n"
    "local f = function(x)\n"
    "  local t = sbuf.decode(sbuf.encode({ x, str.rep('ab', 2), m.floor(x / 2) }))\n"
    "  return sbuf, str, m, conf, t[1], t[2], t[3]\n"
    "end\n"
    "return ship.encode(f)\n";
static const char modules_b[] =
    "package.preload['test.conf'] = function() return { side = 'worker' } end\n"
    "local f = require('dstream.ship').decode(...)\n"
    "local sbuf, str, m, conf, a, b, c = f(7)\n"
    "assert(sbuf == require('string.buffer'), 'string.buffer is the worker module')\n"
    "assert(str == string and m == math, 'string and math are the worker tables')\n"
    "assert(conf == require('test.conf') and conf.side == 'worker', 'a module by name')\n"
    "assert(a == 7 and b == 'abab' and c == 3)\n"
    "return 'modules ok ' .. conf.side\n";

static const char globals_a[] =
    "local ship = require('dstream.ship')\n"
    "function helper_square(x) return x * x end\n"
    "CONFIG = { offset = 3 }\n"
    "NESTED_G = 100\n"
    "local f = function(x)\n"
    "  local inner = function() return NESTED_G end\n"
    "  return helper_square(x) + CONFIG.offset + inner()\n"
    "end\n"
    "return ship.encode(f)\n";
static const char globals_b[] =
    "assert(helper_square == nil and CONFIG == nil and NESTED_G == nil)\n"
    "local f = require('dstream.ship').decode(...)\n"
    "assert(f(4) == 119, tostring(f(4)))\n"
    "assert(type(helper_square) == 'function' and CONFIG.offset == 3)\n"
    "return 'globals ok ' .. f(2)\n";

static const char builtins_a[] =
    "local ship = require('dstream.ship')\n"
    "local fmt, ins, floor = string.format, table.insert, math.floor\n"
    "local f = function(x)\n"
    "  local t = {}\n"
    "  ins(t, fmt('%s=%d', 'x', floor(x)))\n"
    "  return t[1], fmt, ins, tostring(x), select('#', 1, 2)\n"
    "end\n"
    "return ship.encode(f)\n";
static const char builtins_b[] =
    "local f = require('dstream.ship').decode(...)\n"
    "local s, fmt, ins, ts, n = f(5.5)\n"
    "assert(s == 'x=5', s)\n"
    "assert(fmt == string.format and ins == table.insert, 'builtins are the worker ones')\n"
    "assert(ts == '5.5' and n == 2)\n"
    "return 'builtins ok ' .. s\n";

/* Line 4 raises: the chunk name and line survive the trip (bytecode is not stripped). */
static const char lines_a[] =
    "local ship = require('dstream.ship')\n" /* 1 */
    "local function fails(x)\n"              /* 2 */
    "  if x > 1 then\n"                      /* 3 */
    "    error('boom ' .. x)\n"              /* 4 */
    "  end\n"
    "  return x\n"
    "end\n"
    "return ship.encode(fails)\n";
static const char lines_b[] =
    "local f = require('dstream.ship').decode(...)\n"
    "assert(f(1) == 1)\n"
    "local info = debug.getinfo(f, 'S')\n"
    "assert(info.linedefined == 2, 'linedefined ' .. tostring(info.linedefined))\n"
    "local ok, err = pcall(f, 5)\n"
    "assert(not ok)\n"
    "return err\n";

/* ---- refusals ------------------------------------------------------------------------- */

/* `setup` defines the culprit and the function `f` (on line 3 of the chunk); the chunk checks
 * that try_encode returns nil, message and encode raises {ship_error=true, message=...}
 * with that same message, then returns it. */
static bytes refusal(const char *setup) {
  char code[4096];
  snprintf(code, sizeof code,
           "local ship = require('dstream.ship')\n" /* line 1 */
           "local ffi = require('ffi')\n"           /* line 2 */
           "%s\n"                                   /* line 3: setup */
           "local bytes, msg = ship.try_encode(f, 'the function given to map')\n"
           "assert(bytes == nil, 'try_encode must refuse')\n"
           "assert(type(msg) == 'string', 'try_encode gives a message')\n"
           "local ok, err = pcall(ship.encode, f, 'the function given to map')\n"
           "assert(not ok, 'encode must raise')\n"
           "assert(type(err) == 'table' and err.ship_error == true, 'a table error')\n"
           "assert(err.message == msg, 'the same message: ' .. tostring(err.message))\n"
           "return msg\n",
           setup);
  return in_fresh_state("@refuse.lua", code);
}

static void test_refusals(void) {
  bytes m;

  m = refusal("local my_coroutine = coroutine.create(function() end); "
              "local f = function() return coroutine.status(my_coroutine) end");
  CHECK_HAS(m.p, "upvalue 'my_coroutine'");
  CHECK_HAS(m.p, "coroutine");
  CHECK_HAS(m.p, "refuse.lua:3");
  free(m.p);

  m = refusal("local out_file = io.stdout; local f = function(x) out_file:write(x) end");
  CHECK_HAS(m.p, "upvalue 'out_file'");
  CHECK_HAS(m.p, "userdata");
  CHECK_HAS(m.p, "refuse.lua:3");
  free(m.p);

  m = refusal("local c_counter = ffi.new('int[1]'); "
              "local f = function(x) c_counter[0] = c_counter[0] + x end");
  CHECK_HAS(m.p, "upvalue 'c_counter'");
  CHECK_HAS(m.p, "cdata");
  free(m.p);

  /* Deeper: inside a captured table, and a global the code reads. */
  m = refusal("local opts = { sink = { handle = io.stderr } }; "
              "local f = function(x) return opts.sink.handle end");
  CHECK_HAS(m.p, "field 'handle'");
  CHECK_HAS(m.p, "upvalue 'opts'");
  free(m.p);

  m = refusal("LOG_THREAD = coroutine.create(print); "
              "local f = function(x) return LOG_THREAD end");
  CHECK_HAS(m.p, "global 'LOG_THREAD'");
  free(m.p);

  /* Through a helper function the shipped one calls. */
  m = refusal("local conn = io.stdin; local function helper() return conn end; "
              "local f = function(x) return helper() end");
  CHECK_HAS(m.p, "upvalue 'conn'");
  CHECK_HAS(m.p, "upvalue 'helper'");
  free(m.p);
}

/* ---- concurrency ---------------------------------------------------------------------- */

enum { NDECODERS = 4 };

/* Four worker states decode and run the same bytes at once on their own threads, while the
 * driver state keeps encoding on the main thread. */
static void test_concurrent_decoders(void) {
  bytes enc = in_fresh_state("=driver", shared_upvalue_a);
  ds_vm a;
  CHECK_INT(ds_vm_open(&a, 0), ==, 0);
  decode_job jobs[NDECODERS];
  pthread_t th[NDECODERS];
  for (int i = 0; i < NDECODERS; i++) {
    jobs[i] = (decode_job){&enc, shared_upvalue_b, {NULL, 0}};
    CHECK_INT(pthread_create(&th[i], NULL, decode_thread, &jobs[i]), ==, 0);
  }
  for (int k = 0; k < 20; k++) {
    run_chunk(a.L, "=driver", globals_a, NULL);
    bytes again = pop_bytes(a.L);
    CHECK_INT(again.len, >, 0);
    free(again.p);
  }
  for (int i = 0; i < NDECODERS; i++) {
    CHECK_INT(pthread_join(th[i], NULL), ==, 0);
    CHECK_STR(jobs[i].result.p, "shared ok 17");
    free(jobs[i].result.p);
  }
  ds_vm_close(&a);
  free(enc.p);
}

int main(void) {
  ship_case("=identity", identity_a, identity_b, "identity ok");
  ship_case("=shared_upvalue", shared_upvalue_a, shared_upvalue_b, "shared ok 17");
  ship_case("=recursive", recursive_a, recursive_b, "recursive ok 120");
  ship_case("=modules", modules_a, modules_b, "modules ok worker");
  ship_case("=globals", globals_a, globals_b, "globals ok 107");
  ship_case("=builtins", builtins_a, builtins_b, "builtins ok x=5");
  ship_case("@shipped_chunk.lua", lines_a, lines_b, "shipped_chunk.lua:4: boom 5");
  test_refusals();
  test_concurrent_decoders();
  printf("test_ship: ok\n");
  return 0;
}
