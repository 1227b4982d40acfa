/* ds_kafka_mock.c - the embedded Kafka cluster (librdkafka's mock brokers) and `dstream kafka-mock`. */
#include "ds_kafka_mock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ds_log.h"

struct ds_kafka_mock {
  rd_kafka_t *rk; /* the handle the cluster lives on */
  rd_kafka_mock_cluster_t *cluster;
  int brokers;
  char *bootstrap;
  int ports[64]; /* the brokers' listening ports on 127.0.0.1, from the bootstrap address */
};

/* ---- control calls ---------------------------------------------------------------------
 * Every control call (create a topic, move a leader, take a broker down...) is queued by
 * librdkafka for the mock's thread, and the caller waits for its answer. librdkafka 2.0.2's
 * mock thread serves that queue before it drains its wake-up pipe: a call queued in between
 * loses its wake-up and waits for the thread's poll timeout, 1 s (21% of the starts of a 3-broker
 * cluster with 21 partitions took 1 to 10 s). So a call runs on a thread of its own while the
 * caller wakes the mock's thread the other way it wakes: a connection to one of its listeners
 * (the mock accepts it and closes it at end of file). */

enum mock_call_kind { MOCK_TOPIC, MOCK_LEADER, MOCK_TOPIC_ERROR, MOCK_BROKER_DOWN, MOCK_BROKER_UP };

typedef struct mock_call {
  rd_kafka_mock_cluster_t *cluster;
  enum mock_call_kind kind;
  const char *topic;
  int a, b; /* partitions and replication factor; partition and leader; error code; broker id */
  rd_kafka_resp_err_t rc;
} mock_call;

static void *mock_call_main(void *arg) {
  mock_call *c = arg;
  switch (c->kind) {
  case MOCK_TOPIC: c->rc = rd_kafka_mock_topic_create(c->cluster, c->topic, c->a, c->b); break;
  case MOCK_LEADER:
    c->rc = rd_kafka_mock_partition_set_leader(c->cluster, c->topic, c->a, c->b);
    break;
  case MOCK_TOPIC_ERROR:
    rd_kafka_mock_topic_set_error(c->cluster, c->topic, (rd_kafka_resp_err_t)c->a);
    c->rc = RD_KAFKA_RESP_ERR_NO_ERROR;
    break;
  case MOCK_BROKER_DOWN: c->rc = rd_kafka_mock_broker_set_down(c->cluster, c->a); break;
  case MOCK_BROKER_UP: c->rc = rd_kafka_mock_broker_set_up(c->cluster, c->a); break;
  }
  return NULL;
}

/* Connects to the first broker that listens (a broker taken down closes its listener). */
static void mock_wake(ds_kafka_mock *m) {
  for (int i = 0; i < m->brokers; i++) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)m->ports[i])};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int rc = connect(fd, (struct sockaddr *)&sa, sizeof sa);
    int ok = rc == 0 || errno == EINPROGRESS;
    close(fd);
    if (ok) return;
  }
}

static rd_kafka_resp_err_t mock_call_run(ds_kafka_mock *m, mock_call c) {
  c.cluster = m->cluster;
  pthread_t t;
  if (pthread_create(&t, NULL, mock_call_main, &c) != 0) {
    mock_call_main(&c); /* no thread to spare: the call as librdkafka makes it */
    return c.rc;
  }
  for (;;) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += 5 * 1000 * 1000;
    if (until.tv_nsec >= 1000000000L) until.tv_sec++, until.tv_nsec -= 1000000000L;
    if (pthread_timedjoin_np(t, NULL, &until) != ETIMEDOUT) break;
    mock_wake(m);
  }
  return c.rc;
}

static void mock_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
  (void)rk;
  ds_log(level <= 3 ? DS_LOG_INFO : DS_LOG_DEBUG, "kafka mock %s: %s", fac, buf);
}

int ds_kafka_mock_new(int brokers, ds_kafka_mock **out, char *err, size_t errlen) {
  *out = NULL;
  if (brokers < 1 || brokers > 64) {
    snprintf(err, errlen, "a mock cluster has 1 to 64 brokers, not %d", brokers);
    return -EINVAL;
  }
  ds_kafka_mock *m = calloc(1, sizeof *m);
  if (!m) return -ENOMEM;
  rd_kafka_conf_t *c = rd_kafka_conf_new();
  rd_kafka_conf_set_log_cb(c, mock_log_cb);
  char e[512];
  m->rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, e, sizeof e);
  if (!m->rk) {
    rd_kafka_conf_destroy(c);
    free(m);
    snprintf(err, errlen, "cannot create the mock cluster's handle: %s", e);
    return -EINVAL;
  }
  m->cluster = rd_kafka_mock_cluster_new(m->rk, brokers);
  if (!m->cluster) {
    rd_kafka_destroy(m->rk);
    free(m);
    snprintf(err, errlen, "cannot start a mock cluster of %d brokers", brokers);
    return -EIO;
  }
  m->brokers = brokers;
  m->bootstrap = strdup(rd_kafka_mock_cluster_bootstraps(m->cluster));
  if (!m->bootstrap) {
    ds_kafka_mock_free(m);
    return -ENOMEM;
  }
  const char *p = m->bootstrap;
  for (int i = 0; i < brokers && (p = strchr(p, ':')); i++) m->ports[i] = atoi(++p);
  *out = m;
  return 0;
}

const char *ds_kafka_mock_bootstrap(ds_kafka_mock *m) { return m->bootstrap; }
int ds_kafka_mock_brokers(ds_kafka_mock *m) { return m->brokers; }

int ds_kafka_mock_topic_create(ds_kafka_mock *m, const char *topic, int partitions, char *err,
                               size_t errlen) {
  if (!topic || !*topic || partitions < 1 || partitions > 100000) {
    snprintf(err, errlen, "a topic needs a name and 1 to 100000 partitions");
    return -EINVAL;
  }
  int rf = m->brokers < 3 ? m->brokers : 3;
  rd_kafka_resp_err_t rc =
      mock_call_run(m, (mock_call){.kind = MOCK_TOPIC, .topic = topic, .a = partitions, .b = rf});
  /* Leaders are placed at random by the mock: make them predictable, so that taking broker b
   * down stalls a known set of partitions. (Not with one broker: it leads them all.) */
  for (int p = 0; m->brokers > 1 && p < partitions && !rc; p++)
    rc = mock_call_run(m, (mock_call){.kind = MOCK_LEADER, .topic = topic, .a = p,
                                      .b = 1 + p % m->brokers});
  if (rc) {
    snprintf(err, errlen, "cannot create topic %s: %s", topic, rd_kafka_err2str(rc));
    return -EIO;
  }
  return 0;
}

int ds_kafka_mock_topic_error(ds_kafka_mock *m, const char *topic, int code, char *err,
                              size_t errlen) {
  if (!topic || !*topic || code < 0) {
    snprintf(err, errlen, "a topic error needs a topic name and a Kafka error code (0: none)");
    return -EINVAL;
  }
  mock_call_run(m, (mock_call){.kind = MOCK_TOPIC_ERROR, .topic = topic, .a = code});
  return 0;
}

static int broker_set(ds_kafka_mock *m, int id, int up, char *err, size_t errlen) {
  if (id != -1 && (id < 1 || id > m->brokers)) {
    snprintf(err, errlen, "no broker %d: the brokers are 1 to %d (or -1 for all)", id, m->brokers);
    return -EINVAL;
  }
  rd_kafka_resp_err_t rc =
      mock_call_run(m, (mock_call){.kind = up ? MOCK_BROKER_UP : MOCK_BROKER_DOWN, .a = id});
  if (rc) {
    snprintf(err, errlen, "broker %d: %s", id, rd_kafka_err2str(rc));
    return -EIO;
  }
  return 0;
}

int ds_kafka_mock_broker_down(ds_kafka_mock *m, int id, char *err, size_t errlen) {
  return broker_set(m, id, 0, err, errlen);
}

int ds_kafka_mock_broker_up(ds_kafka_mock *m, int id, char *err, size_t errlen) {
  return broker_set(m, id, 1, err, errlen);
}

void ds_kafka_mock_free(ds_kafka_mock *m) {
  if (!m) return;
  if (m->cluster) rd_kafka_mock_cluster_destroy(m->cluster);
  if (m->rk) rd_kafka_destroy(m->rk);
  free(m->bootstrap);
  free(m);
}

/* ---- dstream kafka-mock ---------------------------------------------------------------- */

static pthread_mutex_t cmd_lock = PTHREAD_MUTEX_INITIALIZER;
static ds_kafka_mock *running; /* NULL once shutting down */

static void reply(const char *status, const char *line, const char *err) {
  printf("%s %s%s%s\n", status, line, err[0] ? ": " : "", err);
  fflush(stdout);
}

/* Reads commands from standard input; at end of input the cluster keeps running. */
static void *command_main(void *arg) {
  (void)arg;
  char line[512];
  while (fgets(line, sizeof line, stdin)) {
    char word[16], name[256];
    int n = 0;
    char err[300] = "";
    int rc = 0, quit = 0;
    line[strcspn(line, "\r\n")] = 0;
    if (!line[0]) continue;
    pthread_mutex_lock(&cmd_lock);
    if (!running) {
      pthread_mutex_unlock(&cmd_lock);
      break;
    }
    if (sscanf(line, "%15s", word) != 1) {
      rc = -EINVAL;
    } else if (strcmp(word, "down") == 0 && sscanf(line, "%*s %d", &n) == 1) {
      rc = ds_kafka_mock_broker_down(running, n, err, sizeof err);
    } else if (strcmp(word, "up") == 0 && sscanf(line, "%*s %d", &n) == 1) {
      rc = ds_kafka_mock_broker_up(running, n, err, sizeof err);
    } else if (strcmp(word, "topic") == 0 && sscanf(line, "%*s %255s %d", name, &n) == 2) {
      rc = ds_kafka_mock_topic_create(running, name, n, err, sizeof err);
    } else if (strcmp(word, "quit") == 0) {
      quit = 1;
    } else {
      rc = -EINVAL;
      snprintf(err, sizeof err, "unknown command (down ID, up ID, topic NAME PARTITIONS, quit)");
    }
    pthread_mutex_unlock(&cmd_lock);
    reply(rc ? "error" : "ok", line, rc ? err : "");
    if (quit) kill(getpid(), SIGTERM);
  }
  return NULL;
}

static void mock_usage(FILE *out) {
  fprintf(out,
          "usage: dstream kafka-mock [--brokers N] [TOPIC:PARTITIONS ...]\n"
          "Runs an embedded Kafka cluster (librdkafka's mock brokers) on 127.0.0.1 until\n"
          "SIGINT or SIGTERM, and prints its bootstrap address on the first line.\n"
          "Commands on standard input: down ID, up ID, topic NAME PARTITIONS, quit.\n"
          "Other topics are created on first use with 4 partitions.\n");
}

int ds_kafka_mock_main(int argc, char **argv) {
  int brokers = 1, first_topic = argc;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
      mock_usage(stdout);
      return 0;
    } else if (strcmp(argv[i], "--brokers") == 0 && i + 1 < argc) {
      char *end;
      long v = strtol(argv[++i], &end, 10);
      if (*end || v < 1 || v > 64) {
        fprintf(stderr, "dstream kafka-mock: --brokers takes 1 to 64, not '%s'\n", argv[i]);
        return 1;
      }
      brokers = (int)v;
    } else if (argv[i][0] == '-') {
      fprintf(stderr, "dstream kafka-mock: unknown option '%s'\n", argv[i]);
      mock_usage(stderr);
      return 1;
    } else {
      first_topic = i;
      break;
    }
  }
  /* Signals are taken by sigwait below: block them before any librdkafka thread starts, so
   * every thread inherits the mask. */
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, NULL);

  char err[512];
  ds_kafka_mock *m;
  if (ds_kafka_mock_new(brokers, &m, err, sizeof err) < 0) {
    fprintf(stderr, "dstream kafka-mock: %s\n", err);
    return 1;
  }
  for (int i = first_topic; i < argc; i++) {
    char name[256];
    int parts = 0;
    const char *colon = strrchr(argv[i], ':');
    size_t nlen = colon ? (size_t)(colon - argv[i]) : 0;
    char *end = NULL;
    if (colon) parts = (int)strtol(colon + 1, &end, 10);
    if (!colon || nlen == 0 || nlen >= sizeof name || *end || parts < 1) {
      fprintf(stderr, "dstream kafka-mock: a topic is NAME:PARTITIONS, not '%s'\n", argv[i]);
      ds_kafka_mock_free(m);
      return 1;
    }
    memcpy(name, argv[i], nlen);
    name[nlen] = 0;
    if (ds_kafka_mock_topic_create(m, name, parts, err, sizeof err) < 0) {
      fprintf(stderr, "dstream kafka-mock: %s\n", err);
      ds_kafka_mock_free(m);
      return 1;
    }
  }
  running = m;
  printf("%s\n", ds_kafka_mock_bootstrap(m));
  fflush(stdout);
  pthread_t cmd;
  int have_cmd = pthread_create(&cmd, NULL, command_main, NULL) == 0;
  if (have_cmd) pthread_detach(cmd);
  int sig = 0;
  sigwait(&set, &sig);
  pthread_mutex_lock(&cmd_lock);
  running = NULL;
  ds_kafka_mock_free(m);
  pthread_mutex_unlock(&cmd_lock);
  return 0;
}
