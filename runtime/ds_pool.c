/* ds_pool.c - worker threads with one Lua state each, task queues and completion delivery. */
#include "ds_pool.h"

#include <errno.h>
#include <lauxlib.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ds_vm.h"

/* LuaJIT's internals, to tell whether a state's collector is in a cycle (worker_idle_gc):
 * there with dstream's own LuaJIT build (scripts/luajit.sh), not with the system's headers. */
#if defined(__has_include)
#if __has_include(<lj_gc.h>)
#include <lj_obj.h>
#include <lj_gc.h>
#define DS_GC_STATE 1
#endif
#endif

typedef struct task_queue {
  ds_task *head, *tail;
} task_queue;

typedef struct worker {
  ds_pool *pool;
  int index;
  pthread_t thread;
  ds_vm vm;
  int run_ref;
  task_queue own; /* tasks pinned to this worker */
  task_queue preferred; /* tasks best run here (their input is kept in this VM); another
                         * worker takes one when this one is busy or gone */
  char init_error[512];
  /* Under the pool's lock: */
  ds_task *current;  /* the task running, or NULL */
  double started_ms; /* when it started */
  int hooked;        /* the watchdog asked for the timeout hook (signalled the thread) */
  int lost;          /* current was given up on: delivered as lost, abandoned */
  int exited;        /* the thread has left its loop */
  int detached;      /* abandoned at close: it closes its own state if it ever ends */
  int gc_owed;       /* a task ran since the last idle steps of its collector */
  int gc_step_ref;   /* gc_step in the state's registry (made at boot: one per step would be
                      * garbage per step) */
  /* Set by the watchdog, taken by the hook (on the worker's thread). */
  volatile sig_atomic_t interrupt;
} worker;

typedef struct blob {
  char *data;
  size_t len;
} blob;

/* The last drops (ds_pool_drop_blob) workers have yet to read; one older than that makes a
 * worker forget all its decoded copies, which is only slower. */
#define DROP_RING 256

struct ds_pool {
  uv_loop_t *loop;
  uv_async_t async;
  ds_pool_done_cb done;
  void *ud;
  ds_pool_config cfg;
  char *package_path, *package_cpath, *boot_module;
  char *boot_arg;
  size_t boot_arg_len;

  pthread_mutex_t lock;
  pthread_cond_t work; /* a task was queued, or shutdown */
  pthread_cond_t ready; /* a worker booted, or left its loop */
  int nready;
  int nexited;
  int shutdown;
  int inflight;
  task_queue shared;
  task_queue finished; /* ran, not yet delivered to the driver */
  uv_prepare_t loop_waits; /* the driver's loop is about to wait: driver_waiting = 1 */
  uv_check_t loop_woke;    /* it has woken up: driver_waiting = 0 */
  int driver_waiting;      /* under the lock: the driver's loop waits (worker_idle_gc) */

  worker *workers;
  int nworkers;

  uv_timer_t watchdog; /* with a task timeout */
  int has_watchdog;
  int open_handles;    /* the pool is freed when the last one is closed */
  int abandoned;       /* workers left running at close: the pool is never freed */

  pthread_mutex_t blob_lock;
  blob *blobs;
  uint32_t nblobs;
  uint32_t drops[DROP_RING]; /* ids of the last drops: drop i at drops[i % DROP_RING] */
  uint64_t ndrops;
};

static void queue_push(task_queue *q, ds_task *t) {
  t->next = NULL;
  if (q->tail)
    q->tail->next = t;
  else
    q->head = t;
  q->tail = t;
}

static ds_task *queue_pop(task_queue *q) {
  ds_task *t = q->head;
  if (t) {
    q->head = t->next;
    if (!q->head) q->tail = NULL;
    t->next = NULL;
  }
  return t;
}

static void queue_free(task_queue *q) {
  ds_task *t;
  while ((t = queue_pop(q))) ds_task_free(t);
}

/* The next task for w, under the pool's lock: pinned, preferred, shared, then one another
 * worker would prefer when that worker cannot take it now (running a task, lost, exited): an
 * idle one was woken by the submit and takes its own (taking it here first would only move
 * the task away from its kept input), a busy or stuck one must not hold it back. */
static ds_task *next_task(ds_pool *p, worker *w) {
  ds_task *t;
  if ((t = queue_pop(&w->own)) || (t = queue_pop(&w->preferred)) || (t = queue_pop(&p->shared)))
    return t;
  for (int i = 1; i < p->nworkers; i++) {
    worker *o = &p->workers[(w->index + i) % p->nworkers];
    if ((o->current || o->lost || o->exited) && (t = queue_pop(&o->preferred))) return t;
  }
  return NULL;
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static __thread worker *tls_worker; /* the worker this thread runs, for the hook */

/* The task timeout's hook: set on a worker's state by timeout_signal, run by the worker's
 * thread at its next count event in interpreted code. It raises once per timeout; it stays
 * set (doing nothing) until the task ends, so the error's handling is not hit too. */
static void timeout_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  worker *w = tls_worker;
  if (!w || !w->interrupt) return;
  w->interrupt = 0;
  char msg[80];
  snprintf(msg, sizeof msg, "task timed out after %g s (task_timeout)",
           w->pool->cfg.task_timeout_ms / 1000);
  luaL_where(L, 0); /* the user's line, as any run-time error has */
  lua_pushstring(L, msg);
  lua_concat(L, 2);
  lua_error(L);
}

/* The watchdog (driver thread) sends this signal to a worker thread whose task ran too long;
 * the handler sets the hook on that thread's own state, as LuaJIT's interpreter does for
 * SIGINT (lua_sethook is safe to call asynchronously from a signal handler; from another
 * thread it would race with the worker's JIT state). */
#define TIMEOUT_SIGNAL (SIGRTMIN + 4)

static void timeout_signal(int sig) {
  (void)sig;
  worker *w = tls_worker;
  if (w && w->interrupt) lua_sethook(w->vm.L, timeout_hook, LUA_MASKCOUNT, 1000);
}

static void install_timeout_signal(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = timeout_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(TIMEOUT_SIGNAL, &sa, NULL);
}

/* os.exit in a worker state: ending the process from a closure would end the whole job at
 * once, with no message and no checkpoint. It fails the task instead, naming the caller. */
static int worker_os_exit(lua_State *L) {
  lua_Debug ar;
  char where[256] = "?";
  if (lua_getstack(L, 1, &ar) && lua_getinfo(L, "Sl", &ar) && ar.currentline > 0)
    snprintf(where, sizeof where, "%s:%d", ar.short_src, ar.currentline);
  lua_pushfstring(L,
                  "os.exit called in a closure running on a worker (%s): it would end the whole"
                  " job at once; raise an error to fail the task, or stop the context on the"
                  " driver (ctx:stop())",
                  where);
  return lua_error(L);
}

#ifdef DS_GC_STATE
/* One step of the state's incremental collector (a few KB of its work: lua_gc's LUA_GCSTEP
 * goes on while the collector is in debt, a whole cycle of a large heap at once), protected:
 * a finalizer that raises must not end the thread. Pushes whether the step ended a cycle. */
static int gc_step(lua_State *L) {
  lua_pushboolean(L, lj_gc_step(L) > 0);
  return 1;
}
#endif

/* Builds the worker's Lua state and finds boot_module.run. Runs on the worker thread so the
 * state is only ever touched by its own thread. */
static int worker_boot(worker *w) {
  ds_pool *p = w->pool;
  if (ds_vm_open(&w->vm, p->cfg.worker_memory)) {
    snprintf(w->init_error, sizeof w->init_error, "worker %d: cannot create a Lua state",
             w->index);
    return -1;
  }
  lua_State *L = w->vm.L;
  lua_getglobal(L, "package");
  if (p->package_path) {
    lua_pushstring(L, p->package_path);
    lua_setfield(L, -2, "path");
  }
  if (p->package_cpath) {
    lua_pushstring(L, p->package_cpath);
    lua_setfield(L, -2, "cpath");
  }
  lua_pop(L, 1);

  lua_getglobal(L, "os");
  lua_pushcfunction(L, worker_os_exit);
  lua_setfield(L, -2, "exit");
  lua_pop(L, 1);

  lua_getglobal(L, "require");
  lua_pushstring(L, p->boot_module);
  if (lua_pcall(L, 1, 1, 0) != 0) {
    snprintf(w->init_error, sizeof w->init_error, "worker %d: %s", w->index,
             lua_tostring(L, -1));
    return -1;
  }
  lua_getfield(L, -1, "boot");
  lua_pushlightuserdata(L, p);
  lua_pushinteger(L, w->index);
  lua_pushlstring(L, p->boot_arg ? p->boot_arg : "", p->boot_arg_len);
  if (lua_pcall(L, 3, 0, 0) != 0) {
    snprintf(w->init_error, sizeof w->init_error, "worker %d: %s", w->index,
             lua_tostring(L, -1));
    return -1;
  }
  lua_getfield(L, -1, "run");
  w->run_ref = luaL_ref(L, LUA_REGISTRYINDEX);
#ifdef DS_GC_STATE
  lua_pushcfunction(L, gc_step);
  w->gc_step_ref = luaL_ref(L, LUA_REGISTRYINDEX);
#endif
  lua_pop(L, 1);
  return 0;
}

static void worker_run_task(worker *w, ds_task *t) {
  lua_State *L = w->vm.L;
  double start = now_ms();
  t->worker = w->index;
  lua_rawgeti(L, LUA_REGISTRYINDEX, w->run_ref);
  lua_pushlightuserdata(L, t);
  int rc = lua_pcall(L, 1, 0, 0);
  if (rc != 0) {
    /* The worker module catches closure errors itself; what reaches here is an error it could
     * not handle, most often a memory error raised while handling another. */
    size_t len = 0;
    const char *msg = lua_tolstring(L, -1, &len);
    ds_task_set_error(t, rc == LUA_ERRMEM ? DS_TASK_OOM : DS_TASK_FAILED,
                      msg ? msg : "unknown error", msg ? len : 13);
    lua_pop(L, 1);
  }
  if (t->status != DS_TASK_OK) lua_gc(L, LUA_GCCOLLECT, 0);
  t->run_ms = now_ms() - start;
}


/* Idle, under the pool's lock: the worker's collector, when a cycle is under way, is stepped
 * to its end while no task waits, instead of in the next task's allocations. A stage's tasks
 * wait for the slowest one, and collector steps landing in one VM's task are one cause of
 * the imbalance between the two map tasks of a batch (docs/performance.md, change 20): the
 * worker that finished first does its collector's work while it would wait. No cycle is started
 * here (one sooner than the collector's own pace marks the live data again for less garbage:
 * windowed word count +9% instructions when idle steps started cycles). Once per task run.
 * Returns 1 if it stepped (the lock was released meanwhile: look at the queues again), 0 if
 * there is nothing to do. */
static int worker_idle_gc(worker *w) {
#ifdef DS_GC_STATE
  lua_State *L = w->vm.L;
  if (!w->gc_owed || G(L)->gc.state == GCSpause) {
    w->gc_owed = 0;
    return 0;
  }
  /* Only while the driver's loop waits, with no finished task for it to take: when it runs
   * (planning the next stage or batch, a receiver's input), two workers stepping their
   * collectors on two cores kept it waiting for a core (a stage's last task delivered 1-3 ms
   * late). loop_waits wakes the workers when the loop waits again. */
  if (!w->pool->driver_waiting || w->pool->finished.head) return 0;
  pthread_mutex_unlock(&w->pool->lock);
  lua_rawgeti(L, LUA_REGISTRYINDEX, w->gc_step_ref);
  int finished = lua_pcall(L, 0, 1, 0) != 0 || lua_toboolean(L, -1);
  lua_pop(L, 1);
  pthread_mutex_lock(&w->pool->lock);
  if (finished) w->gc_owed = 0;
  return 1;
#else
  (void)w;
  return 0;
#endif
}

static void worker_exit(worker *w) { /* under the lock */
  w->exited = 1;
  w->pool->nexited++;
  pthread_cond_broadcast(&w->pool->ready);
  pthread_cond_broadcast(&w->pool->work); /* what it preferred is the others' now */
}

static void *worker_main(void *arg) {
  worker *w = arg;
  ds_pool *p = w->pool;
  tls_worker = w;
  int rc = worker_boot(w);

  pthread_mutex_lock(&p->lock);
  p->nready++;
  pthread_cond_broadcast(&p->ready);
  if (rc != 0) {
    worker_exit(w);
    pthread_mutex_unlock(&p->lock);
    return NULL;
  }
  for (;;) {
    ds_task *t = NULL;
    while (!p->shutdown && !(t = next_task(p, w)))
      if (!worker_idle_gc(w)) pthread_cond_wait(&p->work, &p->lock);
    if (p->shutdown) break;
    w->current = t;
    w->started_ms = now_ms();
    /* Busy now: an idle worker may take what is still preferred here (next_task). */
    if (w->preferred.head) pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->lock);

    worker_run_task(w, t);

    pthread_mutex_lock(&p->lock);
    w->current = NULL;
    w->gc_owed = 1;
    if (w->hooked) { /* under the lock: the watchdog signals only under it */
      w->interrupt = 0;  /* first: a signal still pending then does nothing */
      lua_sethook(w->vm.L, NULL, 0, 0);
      w->hooked = 0;
    }
    if (w->lost || p->shutdown) {
      /* Delivered already as lost, or the pool is closing (its async handle may be closed:
       * an abandoned worker that comes back must not touch it). */
      w->lost = 0;
      ds_task_free(t);
      if (p->shutdown) break;
      continue;
    }
    queue_push(&p->finished, t);
    uv_async_send(&p->async); /* coalesces: the callback drains the whole queue */
  }
  int abandoned = w->detached;
  worker_exit(w);
  pthread_mutex_unlock(&p->lock);
  if (abandoned) ds_vm_close(&w->vm); /* nobody joins it: its state is its own to close */
  return NULL;
}

/* The task timeout's watchdog, on the driver's loop. */
static void pool_watch(uv_timer_t *h) {
  ds_pool *p = h->data;
  double timeout = p->cfg.task_timeout_ms, now = now_ms();
  int lost = 0;
  pthread_mutex_lock(&p->lock);
  for (int i = 0; i < p->nworkers; i++) {
    worker *w = &p->workers[i];
    if (!w->current || w->lost) continue;
    double ran = now - w->started_ms;
    if (ran < timeout) continue;
    if (!w->hooked) {
      w->interrupt = 1;
      w->hooked = 1;
      pthread_kill(w->thread, TIMEOUT_SIGNAL);
    } else if (ran >= timeout + 1000) {
      /* No hook ran: compiled code or a C call. Deliver a copy as failed and give up on the
       * worker: what it holds stays its own until it comes back, if ever. */
      ds_task *c = ds_task_new(w->current->id, "", 0);
      if (!c) continue;
      char msg[400];
      snprintf(msg, sizeof msg,
               "task timed out after %g s (task_timeout) and its worker %d did not stop:"
               " it runs compiled code or a C function, where it cannot be interrupted;"
               " the worker is abandoned and the record is not known",
               timeout / 1000, w->index);
      ds_task_set_error(c, DS_POOL_TASK_LOST, msg, strlen(msg));
      c->worker = w->index;
      c->attempt = w->current->attempt;
      c->run_ms = ran;
      w->lost = 1;
      queue_push(&p->finished, c);
      lost = 1;
    }
  }
  pthread_mutex_unlock(&p->lock);
  if (lost) uv_async_send(&p->async);
}

/* The driver's loop about to wait for events: an idle worker owing its collector steps takes
 * them up (worker_idle_gc). */
static void pool_loop_waits(uv_prepare_t *h) {
  ds_pool *p = h->data;
  if (uv_backend_timeout(p->loop) == 0) return; /* it will not wait: a timer is due, ... */
  pthread_mutex_lock(&p->lock);
  p->driver_waiting = 1;
  for (int i = 0; i < p->nworkers; i++)
    if (p->workers[i].gc_owed && !p->workers[i].current) {
      pthread_cond_broadcast(&p->work);
      break;
    }
  pthread_mutex_unlock(&p->lock);
}

static void pool_loop_woke(uv_check_t *h) {
  ds_pool *p = h->data;
  pthread_mutex_lock(&p->lock);
  p->driver_waiting = 0;
  pthread_mutex_unlock(&p->lock);
}

static void pool_deliver(uv_async_t *h) {
  ds_pool *p = h->data;
  for (;;) {
    pthread_mutex_lock(&p->lock);
    ds_task *t = queue_pop(&p->finished);
    if (t) p->inflight--;
    p->driver_waiting = 0; /* (an I/O callback: it runs before loop_woke's check) */
    pthread_mutex_unlock(&p->lock);
    if (!t) break;
    p->done(p->ud, t);
  }
}

static void pool_free(ds_pool *p) {
  queue_free(&p->shared);
  queue_free(&p->finished);
  for (int i = 0; i < p->nworkers; i++) {
    queue_free(&p->workers[i].own);
    queue_free(&p->workers[i].preferred);
  }
  for (uint32_t i = 0; i < p->nblobs; i++) free(p->blobs[i].data);
  free(p->blobs);
  free(p->workers);
  free(p->package_path);
  free(p->package_cpath);
  free(p->boot_module);
  free(p->boot_arg);
  pthread_mutex_destroy(&p->lock);
  pthread_mutex_destroy(&p->blob_lock);
  pthread_cond_destroy(&p->work);
  pthread_cond_destroy(&p->ready);
  free(p);
}

/* Workers among the first `started` still running, not counting those given up on after the
 * task timeout (no use waiting for them). Under the lock. */
static int workers_to_wait(ds_pool *p, int started) {
  int n = 0;
  for (int i = 0; i < started; i++)
    if (!p->workers[i].exited && !p->workers[i].lost) n++;
  return n;
}

/* Stops the first `started` workers and joins those that end within wait_ms (< 0: all);
 * the others are detached and left running. Returns how many were. */
static int pool_join(ds_pool *p, int started, int wait_ms) {
  struct timespec deadline;
  clock_gettime(CLOCK_REALTIME, &deadline);
  deadline.tv_sec += wait_ms / 1000;
  deadline.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
  if (deadline.tv_nsec >= 1000000000L) {
    deadline.tv_sec++;
    deadline.tv_nsec -= 1000000000L;
  }
  pthread_mutex_lock(&p->lock);
  p->shutdown = 1;
  pthread_cond_broadcast(&p->work);
  while (workers_to_wait(p, started) > 0) {
    if (wait_ms < 0)
      pthread_cond_wait(&p->ready, &p->lock);
    else if (pthread_cond_timedwait(&p->ready, &p->lock, &deadline) == ETIMEDOUT)
      break;
  }
  int abandoned = 0;
  for (int i = 0; i < started; i++) {
    worker *w = &p->workers[i];
    if (w->exited) continue;
    w->detached = 1; /* it will see shutdown when it comes back, and end */
    pthread_detach(w->thread);
    abandoned++;
  }
  pthread_mutex_unlock(&p->lock);
  for (int i = 0; i < started; i++) {
    worker *w = &p->workers[i];
    if (!w->detached) {
      pthread_join(w->thread, NULL);
      ds_vm_close(&w->vm);
    }
  }
  return abandoned;
}

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

int ds_pool_new(uv_loop_t *loop, const ds_pool_config *cfg, ds_pool_done_cb done, void *ud,
                ds_pool **out, char *err, size_t errlen) {
  if (cfg->workers < 1 || !cfg->boot_module) {
    snprintf(err, errlen, "a pool needs at least one worker and a boot module");
    return -EINVAL;
  }
  ds_pool *p = calloc(1, sizeof *p);
  if (!p) goto oom;
  p->loop = loop;
  p->done = done;
  p->ud = ud;
  p->cfg = *cfg;
  p->package_path = dup_or_null(cfg->package_path);
  p->package_cpath = dup_or_null(cfg->package_cpath);
  p->boot_module = strdup(cfg->boot_module);
  if (cfg->boot_arg_len) {
    p->boot_arg = malloc(cfg->boot_arg_len);
    if (p->boot_arg) memcpy(p->boot_arg, cfg->boot_arg, cfg->boot_arg_len);
    p->boot_arg_len = p->boot_arg ? cfg->boot_arg_len : 0;
  }
  pthread_mutex_init(&p->lock, NULL);
  pthread_mutex_init(&p->blob_lock, NULL);
  pthread_cond_init(&p->work, NULL);
  pthread_cond_init(&p->ready, NULL);
  p->workers = calloc((size_t)cfg->workers, sizeof *p->workers);
  if (!p->workers || !p->boot_module) {
    pool_free(p);
    goto oom;
  }
  p->nworkers = cfg->workers;

  int started = 0;
  for (; started < p->nworkers; started++) {
    worker *w = &p->workers[started];
    w->pool = p;
    w->index = started;
    if (pthread_create(&w->thread, NULL, worker_main, w) != 0) break;
  }
  pthread_mutex_lock(&p->lock);
  while (p->nready < started) pthread_cond_wait(&p->ready, &p->lock);
  pthread_mutex_unlock(&p->lock);

  const char *failure = started < p->nworkers ? "cannot start a worker thread" : NULL;
  for (int i = 0; i < started && !failure; i++)
    if (p->workers[i].init_error[0]) failure = p->workers[i].init_error;
  if (failure) {
    snprintf(err, errlen, "%s", failure);
    pool_join(p, started, -1);
    pool_free(p);
    return -EINVAL;
  }
  uv_async_init(loop, &p->async, pool_deliver);
  p->async.data = p;
  p->open_handles = 1;
  uv_prepare_init(loop, &p->loop_waits);
  uv_check_init(loop, &p->loop_woke);
  p->loop_waits.data = p->loop_woke.data = p;
  uv_prepare_start(&p->loop_waits, pool_loop_waits);
  uv_check_start(&p->loop_woke, pool_loop_woke);
  uv_unref((uv_handle_t *)&p->loop_waits); /* neither keeps a loop alive */
  uv_unref((uv_handle_t *)&p->loop_woke);
  p->open_handles += 2;
  if (cfg->task_timeout_ms > 0) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, install_timeout_signal);
    double every = cfg->task_timeout_ms / 4;
    if (every > 250) every = 250;
    if (every < 10) every = 10;
    uv_timer_init(loop, &p->watchdog);
    p->watchdog.data = p;
    uv_timer_start(&p->watchdog, pool_watch, (uint64_t)every, (uint64_t)every);
    uv_unref((uv_handle_t *)&p->watchdog); /* never keeps a loop alive by itself */
    p->has_watchdog = 1;
    p->open_handles++;
  }
  *out = p;
  return 0;
oom:
  snprintf(err, errlen, "out of memory creating the worker pool");
  return -ENOMEM;
}

int ds_pool_submit(ds_pool *p, ds_task *t, int affinity, int prefer) {
  pthread_mutex_lock(&p->lock);
  if (p->shutdown) {
    pthread_mutex_unlock(&p->lock);
    return -ESHUTDOWN;
  }
  if (affinity >= 0 && affinity < p->nworkers)
    queue_push(&p->workers[affinity].own, t);
  else if (prefer >= 0 && prefer < p->nworkers)
    queue_push(&p->workers[prefer].preferred, t);
  else
    queue_push(&p->shared, t);
  p->inflight++;
  /* Broadcast: a pinned task must wake its own worker, not just any one. */
  pthread_cond_broadcast(&p->work);
  pthread_mutex_unlock(&p->lock);
  return 0;
}

int ds_pool_put_blob(ds_pool *p, uint32_t id, const void *data, size_t len) {
  char *copy = malloc(len ? len : 1);
  if (!copy) return -ENOMEM;
  memcpy(copy, data, len);
  pthread_mutex_lock(&p->blob_lock);
  if (id >= p->nblobs) {
    uint32_t n = p->nblobs ? p->nblobs : 64;
    while (n <= id) n *= 2;
    blob *blobs = realloc(p->blobs, n * sizeof *blobs);
    if (!blobs) {
      pthread_mutex_unlock(&p->blob_lock);
      free(copy);
      return -ENOMEM;
    }
    memset(blobs + p->nblobs, 0, (n - p->nblobs) * sizeof *blobs);
    p->blobs = blobs;
    p->nblobs = n;
  }
  if (p->blobs[id].data) {
    pthread_mutex_unlock(&p->blob_lock);
    free(copy);
    return -EEXIST;
  }
  p->blobs[id].data = copy;
  p->blobs[id].len = len;
  pthread_mutex_unlock(&p->blob_lock);
  return 0;
}

int64_t ds_pool_copy_blob(ds_pool *p, uint32_t id, char *buf, size_t cap) {
  pthread_mutex_lock(&p->blob_lock);
  int64_t len = -1;
  if (id < p->nblobs && p->blobs[id].data) {
    len = (int64_t)p->blobs[id].len;
    if (len > 0 && (size_t)len <= cap) memcpy(buf, p->blobs[id].data, (size_t)len);
  }
  pthread_mutex_unlock(&p->blob_lock);
  return len;
}

void ds_pool_drop_blob(ds_pool *p, uint32_t id, int free_bytes) {
  pthread_mutex_lock(&p->blob_lock);
  if (free_bytes && id < p->nblobs) {
    free(p->blobs[id].data);
    p->blobs[id].data = NULL;
    p->blobs[id].len = 0;
  }
  p->drops[p->ndrops % DROP_RING] = id;
  p->ndrops++;
  pthread_mutex_unlock(&p->blob_lock);
}

uint64_t ds_pool_blob_drops(ds_pool *p) {
  pthread_mutex_lock(&p->blob_lock);
  uint64_t n = p->ndrops;
  pthread_mutex_unlock(&p->blob_lock);
  return n;
}

int64_t ds_pool_blob_dropped(ds_pool *p, uint64_t i) {
  pthread_mutex_lock(&p->blob_lock);
  int64_t id = i < p->ndrops && p->ndrops - i <= DROP_RING ? (int64_t)p->drops[i % DROP_RING] : -1;
  pthread_mutex_unlock(&p->blob_lock);
  return id;
}

void ds_pool_blob_stats(ds_pool *p, uint64_t *count, uint64_t *bytes) {
  pthread_mutex_lock(&p->blob_lock);
  uint64_t c = 0, b = 0;
  for (uint32_t i = 0; i < p->nblobs; i++) {
    if (p->blobs[i].data) {
      c++;
      b += p->blobs[i].len;
    }
  }
  pthread_mutex_unlock(&p->blob_lock);
  *count = c;
  *bytes = b;
}

int ds_pool_size(ds_pool *p) { return p->nworkers; }

int ds_pool_on_worker(void) { return tls_worker != NULL; }

int ds_pool_inflight(ds_pool *p) {
  pthread_mutex_lock(&p->lock);
  int n = p->inflight;
  pthread_mutex_unlock(&p->lock);
  return n;
}

size_t ds_pool_worker_memory(ds_pool *p, int i) {
  return i >= 0 && i < p->nworkers ? p->workers[i].vm.used : 0;
}

int ds_pool_running_tasks(ds_pool *p, ds_pool_running *out, int max) {
  double now = now_ms();
  int n = 0;
  pthread_mutex_lock(&p->lock);
  for (int i = 0; i < p->nworkers; i++) {
    worker *w = &p->workers[i];
    if (!w->current) continue;
    if (n < max) {
      out[n].id = w->current->id;
      out[n].worker = w->index;
      out[n].ms = now - w->started_ms;
      out[n].lost = w->lost;
      for (int k = 0; k < 4; k++) out[n].progress[k] = __atomic_load_n(&w->current->progress[k], __ATOMIC_ACQUIRE);
    }
    n++;
  }
  pthread_mutex_unlock(&p->lock);
  return n;
}

static void pool_closed(uv_handle_t *h) {
  ds_pool *p = h->data;
  if (--p->open_handles == 0 && !p->abandoned) pool_free(p);
}

int ds_pool_close(ds_pool *p, int wait_ms) {
  p->abandoned = pool_join(p, p->nworkers, wait_ms);
  if (p->has_watchdog) uv_close((uv_handle_t *)&p->watchdog, pool_closed);
  uv_close((uv_handle_t *)&p->async, pool_closed);
  uv_close((uv_handle_t *)&p->loop_waits, pool_closed);
  uv_close((uv_handle_t *)&p->loop_woke, pool_closed);
  return p->abandoned;
}
