/* ds_http.c - a small HTTP/1.1 server (GET/HEAD, keep-alive) on libuv and http_parser. */
#include "ds_http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define URL_MAX 8192            /* longer request targets get 414 */
#define BODY_MAX (64 * 1024)    /* requests carry no body we use: bigger ones get 413 */
#define WRITES_MAX 64           /* responses queued on one connection before it is cut */
#define DEFAULT_MAX_CONNECTIONS 64
#define DEFAULT_IDLE_MS 30000
#define DEFAULT_HEAD_MS 10000
#define DEFAULT_MAX_PER_CLIENT 16

typedef struct conn conn;

struct ds_http {
  uv_loop_t *loop;
  uv_tcp_t listener;
  int listener_open;
  ds_http_handler handler;
  void *ud;
  int max_connections;
  int max_per_client;
  uint64_t idle_ms;
  uint64_t head_ms;
  conn *conns; /* open connections, doubly linked */
  int nlive;   /* connections in that list */
  int nconns;  /* connections not yet freed, closing ones included */
  uint64_t requests;
  char host[64];
  int port;
  int stopping;
  void (*on_closed)(void *ud);
  void *closed_ud;
};

struct conn {
  ds_http *srv;
  conn *prev, *next;
  uv_tcp_t tcp;
  uv_timer_t idle; /* the idle timeout, or the request head's deadline when that comes first */
  struct sockaddr_storage peer; /* the client's address (family 0 if unknown) */
  uint64_t last_active;         /* loop time of the accept or the last byte read */
  int in_head;                  /* a request head is awaited or being read */
  uint64_t head_deadline;       /* loop time by which that head must be complete */
  int handles_open;   /* handles whose close callback has not run yet */
  int closing;
  http_parser parser;
  char url[URL_MAX + 1];
  size_t url_len;
  int url_too_long;
  int body_too_large;
  size_t body_len;
  char field[8]; /* the current header name, enough to recognise "Host" */
  size_t field_len;
  int value_started; /* the parser is inside a header value */
  int in_host;
  char host[256];
  size_t host_len;
  int keep_alive;         /* of the request being answered */
  int close_after_write;  /* no more requests: close once the queued writes are done */
  int writes;             /* responses queued and not yet written */
  char rbuf[16 * 1024];
};

typedef struct wreq {
  uv_write_t req;
  conn *c;
  size_t len;
  char data[];
} wreq;

/* ---- connections ---- */

static void maybe_finish(ds_http *s) {
  if (!s->stopping || s->listener_open || s->nconns) return;
  void (*cb)(void *) = s->on_closed;
  void *ud = s->closed_ud;
  free(s);
  if (cb) cb(ud);
}

static void conn_handle_closed(uv_handle_t *h) {
  conn *c = h->data;
  if (--c->handles_open) return;
  ds_http *s = c->srv;
  free(c);
  s->nconns--;
  maybe_finish(s);
}

static void conn_close(conn *c) {
  if (c->closing) return;
  c->closing = 1;
  ds_http *s = c->srv;
  if (c->prev) c->prev->next = c->next;
  else s->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  c->prev = c->next = NULL;
  s->nlive--;
  uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
  uv_close((uv_handle_t *)&c->idle, conn_handle_closed);
}

static void conn_fail(conn *c, int status, const char *msg);

static void on_timer_fire(uv_timer_t *t) {
  conn *c = t->data;
  if (c->closing) return;
  if (c->in_head && uv_now(c->srv->loop) >= c->head_deadline && c->writes == 0 &&
      !c->close_after_write)
    conn_fail(c, 408, "request head not received in time\n");
  else
    conn_close(c);
}

/* The connection's one timer: the idle timeout from the last byte read, or the request head's
 * deadline if that comes first. A client cannot hold a connection by trickling a head. */
static void conn_arm(conn *c) {
  if (c->closing) return;
  ds_http *s = c->srv;
  uint64_t now = uv_now(s->loop), after = s->idle_ms;
  if (c->in_head) {
    uint64_t left = c->head_deadline > now ? c->head_deadline - now : 0;
    if (left < after) after = left ? left : 1;
  }
  uv_timer_start(&c->idle, on_timer_fire, after, 0);
}

static void on_write(uv_write_t *req, int status) {
  wreq *w = (wreq *)req;
  conn *c = w->c;
  free(w);
  c->writes--;
  if (status < 0) conn_close(c);
  else if (c->close_after_write && c->writes == 0) conn_close(c);
}

/* Queues one complete response on the connection. */
static int conn_send(conn *c, int status, const char *ctype, const char *body, size_t len,
                     int head_only) {
  if (c->closing) return 0;
  if (c->writes >= WRITES_MAX) { /* a client that never reads: cut it */
    conn_close(c);
    return 0;
  }
  const char *reason = http_status_str((enum http_status)status);
  char head[512];
  int n = snprintf(head, sizeof head,
                   "HTTP/1.1 %d %s\r\n"
                   "Content-Type: %s\r\n"
                   "Content-Length: %zu\r\n"
                   "Cache-Control: no-store\r\n"
                   "X-Content-Type-Options: nosniff\r\n"
                   "%s"
                   "Connection: %s\r\n\r\n",
                   status, reason && *reason && strcmp(reason, "<unknown>") ? reason : "Status",
                   ctype ? ctype : "text/plain; charset=utf-8", len,
                   status == 405 ? "Allow: GET, HEAD\r\n" : "",
                   c->keep_alive && !c->close_after_write ? "keep-alive" : "close");
  if (n < 0 || (size_t)n >= sizeof head) return -EINVAL;
  size_t blen = head_only ? 0 : len;
  wreq *w = malloc(sizeof *w + (size_t)n + blen);
  if (!w) {
    conn_close(c);
    return -ENOMEM;
  }
  w->c = c;
  w->len = (size_t)n + blen;
  memcpy(w->data, head, (size_t)n);
  if (blen) memcpy(w->data + n, body, blen);
  uv_buf_t buf = uv_buf_init(w->data, (unsigned)w->len);
  int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, on_write);
  if (rc < 0) {
    free(w);
    conn_close(c);
    return rc;
  }
  c->writes++;
  return 0;
}

/* An error answer that ends the connection. */
static void conn_fail(conn *c, int status, const char *msg) {
  c->close_after_write = 1;
  c->keep_alive = 0;
  conn_send(c, status, NULL, msg, strlen(msg), 0);
  if (HTTP_PARSER_ERRNO(&c->parser) == HPE_OK) http_parser_pause(&c->parser, 1);
  uv_read_stop((uv_stream_t *)&c->tcp);
  if (c->writes == 0) conn_close(c);
}

/* ---- parser callbacks ---- */

static int on_message_begin(http_parser *p) {
  conn *c = p->data;
  c->url_len = 0;
  c->url_too_long = c->body_too_large = 0;
  c->body_len = 0;
  c->field_len = 0;
  c->value_started = 1; /* so the first header name starts a new field */
  c->in_host = 0;
  c->host_len = 0;
  if (!c->in_head) { /* a request after the previous one: its head has a deadline of its own */
    c->in_head = 1;
    c->head_deadline = uv_now(c->srv->loop) + c->srv->head_ms;
  }
  return 0;
}

static int on_headers_complete(http_parser *p) {
  ((conn *)p->data)->in_head = 0;
  return 0;
}

static int on_url(http_parser *p, const char *at, size_t len) {
  conn *c = p->data;
  if (c->url_len + len > URL_MAX) {
    c->url_too_long = 1;
    return 0;
  }
  memcpy(c->url + c->url_len, at, len);
  c->url_len += len;
  return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len) {
  conn *c = p->data;
  if (c->value_started) { /* a new header begins */
    c->value_started = 0;
    c->field_len = 0;
  }
  for (size_t i = 0; i < len; i++) {
    if (c->field_len < sizeof c->field) c->field[c->field_len] = at[i];
    c->field_len++;
  }
  return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len) {
  conn *c = p->data;
  if (!c->value_started) {
    c->value_started = 1;
    c->in_host = c->field_len == 4 && strncasecmp(c->field, "host", 4) == 0;
    if (c->in_host) c->host_len = 0;
  }
  if (c->in_host) {
    size_t room = sizeof c->host - 1 - c->host_len;
    size_t n = len < room ? len : room;
    memcpy(c->host + c->host_len, at, n);
    c->host_len += n;
  }
  return 0;
}

static int on_body(http_parser *p, const char *at, size_t len) {
  conn *c = p->data;
  (void)at;
  c->body_len += len;
  if (c->body_len > BODY_MAX) {
    c->body_too_large = 1;
    return -1;
  }
  return 0;
}

int ds_http_respond(ds_http_request *req, int status, const char *content_type,
                    const char *body, size_t len) {
  if (req->answered_) return -EALREADY;
  req->answered_ = 1;
  return conn_send(req->conn_, status, content_type, body ? body : "", body ? len : 0,
                   strcmp(req->method, "HEAD") == 0);
}

static int on_message_complete(http_parser *p) {
  conn *c = p->data;
  ds_http *s = c->srv;
  if (c->closing || c->close_after_write) return 0; /* a request after the last one */
  c->keep_alive = http_should_keep_alive(p);
  if (!c->keep_alive) {
    /* Answer this one, read no further request. */
    c->close_after_write = 1;
    http_parser_pause(p, 1);
  }
  s->requests++;
  if (c->url_too_long) {
    conn_fail(c, 414, "request target too long\n");
    return 0;
  }
  c->url[c->url_len] = 0;
  struct http_parser_url u;
  http_parser_url_init(&u);
  if (p->method != HTTP_GET && p->method != HTTP_HEAD) {
    conn_send(c, 405, NULL, "only GET and HEAD are served\n", 29, 0);
  } else if (http_parser_parse_url(c->url, c->url_len, 0, &u) != 0 ||
             !(u.field_set & (1 << UF_PATH))) {
    conn_fail(c, 400, "bad request target\n");
    return 0;
  } else {
    char path[URL_MAX + 1], query[URL_MAX + 1];
    memcpy(path, c->url + u.field_data[UF_PATH].off, u.field_data[UF_PATH].len);
    path[u.field_data[UF_PATH].len] = 0;
    query[0] = 0;
    if (u.field_set & (1 << UF_QUERY)) {
      memcpy(query, c->url + u.field_data[UF_QUERY].off, u.field_data[UF_QUERY].len);
      query[u.field_data[UF_QUERY].len] = 0;
    }
    c->host[c->host_len] = 0;
    ds_http_request req = {http_method_str((enum http_method)p->method), path, query, c->host, c,
                           0};
    s->handler(s->ud, &req);
    if (!req.answered_) ds_http_respond(&req, 500, NULL, "no answer\n", 10);
  }
  if (c->close_after_write && c->writes == 0) conn_close(c);
  return 0;
}

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---- reading ---- */

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  conn *c = h->data;
  (void)hint;
  *buf = uv_buf_init(c->rbuf, sizeof c->rbuf);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  conn *c = st->data;
  if (c->closing) return;
  if (nread < 0) {
    /* The client is done sending (or gone): finish what is queued, then close. */
    uv_read_stop(st);
    c->close_after_write = 1;
    if (nread != UV_EOF || c->writes == 0) conn_close(c);
    return;
  }
  if (nread == 0) return;
  c->last_active = uv_now(c->srv->loop);
  if (c->close_after_write) return; /* after a "Connection: close" request, ignore the rest */
  http_parser_execute(&c->parser, &parser_settings, buf->base, (size_t)nread);
  conn_arm(c);
  enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
  if (c->closing || e == HPE_OK) {
    if (!c->closing && c->parser.upgrade) conn_fail(c, 400, "protocol upgrades are not served\n");
    return;
  }
  if (e == HPE_PAUSED) {
    uv_read_stop(st);
    return;
  }
  if (c->body_too_large) conn_fail(c, 413, "request body too large\n");
  else if (e == HPE_HEADER_OVERFLOW) conn_fail(c, 431, "request headers too large\n");
  else conn_fail(c, 400, "malformed request\n");
}

static int same_client(const conn *a, const conn *b) {
  if (a->peer.ss_family != b->peer.ss_family || a->peer.ss_family == 0) return 0;
  if (a->peer.ss_family == AF_INET)
    return ((const struct sockaddr_in *)&a->peer)->sin_addr.s_addr ==
           ((const struct sockaddr_in *)&b->peer)->sin_addr.s_addr;
  return memcmp(&((const struct sockaddr_in6 *)&a->peer)->sin6_addr,
                &((const struct sockaddr_in6 *)&b->peer)->sin6_addr, sizeof(struct in6_addr)) == 0;
}

/* The connection to drop for a new one: among those of `like`'s client (all when like is
 * NULL), the one idle longest, preferring one with no answer being written. */
static conn *oldest_idle(ds_http *s, const conn *like, const conn *except) {
  conn *best = NULL;
  for (conn *c = s->conns; c; c = c->next) {
    if (c == except || (like && !same_client(c, like))) continue;
    if (!best || (best->writes > 0 && c->writes == 0) ||
        ((best->writes > 0) == (c->writes > 0) && c->last_active < best->last_active))
      best = c;
  }
  return best;
}

/* Makes room for the connection c just accepted: at the cap per client address, that
 * client's longest-idle connection is dropped; at the global cap, the longest-idle one of the
 * client holding the most. So a new request is always read, and slow clients crowd out only
 * each other. */
static void make_room(ds_http *s, conn *c) {
  int mine = 0;
  for (conn *o = s->conns; o; o = o->next)
    if (o != c && same_client(o, c)) mine++;
  if (mine >= s->max_per_client) {
    conn *v = oldest_idle(s, c, c);
    if (v) conn_close(v);
  }
  if (s->nlive <= s->max_connections) return;
  conn *top = NULL;
  int top_n = 0;
  for (conn *o = s->conns; o; o = o->next) {
    if (o == c) continue;
    int n = 0;
    for (conn *q = s->conns; q; q = q->next)
      if (q != c && (q == o || same_client(q, o))) n++;
    if (n > top_n) {
      top_n = n;
      top = o;
    }
  }
  conn *v = top ? oldest_idle(s, top->peer.ss_family ? top : NULL, c) : NULL;
  if (v && top->peer.ss_family == 0) v = top;
  if (v) conn_close(v);
}

static void on_connection(uv_stream_t *server, int status) {
  ds_http *s = server->data;
  if (status < 0 || s->stopping) return;
  conn *c = calloc(1, sizeof *c);
  if (!c) return; /* the connection stays in the backlog until memory is back */
  c->srv = s;
  uv_tcp_init(s->loop, &c->tcp);
  uv_timer_init(s->loop, &c->idle);
  c->tcp.data = c->idle.data = c;
  c->handles_open = 2;
  uv_unref((uv_handle_t *)&c->tcp);
  uv_unref((uv_handle_t *)&c->idle);
  s->nconns++;
  c->next = s->conns;
  if (s->conns) s->conns->prev = c;
  s->conns = c;
  s->nlive++;
  if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
    conn_close(c);
    return;
  }
  int plen = sizeof c->peer;
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&c->peer, &plen) != 0)
    c->peer.ss_family = 0;
  c->last_active = uv_now(s->loop);
  c->in_head = 1;
  c->head_deadline = c->last_active + s->head_ms;
  make_room(s, c);
  http_parser_init(&c->parser, HTTP_REQUEST);
  c->parser.data = c;
  conn_arm(c);
  if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0) conn_close(c);
}

/* ---- the server ---- */

static void listener_closed(uv_handle_t *h) {
  ds_http *s = h->data;
  s->listener_open = 0;
  maybe_finish(s);
}

static int is_loopback(const struct sockaddr *sa) {
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
    return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
  }
  const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
  if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr)) return 1;
  return IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && in6->sin6_addr.s6_addr[12] == 127;
}

int ds_http_start(uv_loop_t *loop, const char *host, int port, const ds_http_opts *opts,
                  ds_http_handler handler, void *ud, ds_http **out, char *err, size_t errlen) {
  if (!host || !handler || port < 0 || port > 65535) {
    snprintf(err, errlen, "http: bad address or port");
    return -EINVAL;
  }
  char name[64];
  size_t hl = strlen(host);
  if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') { /* "[::1]" */
    hl -= 2;
    host++;
  }
  if (hl == 0 || hl >= sizeof name) {
    snprintf(err, errlen, "http: bad address '%s'", host);
    return -EINVAL;
  }
  memcpy(name, host, hl);
  name[hl] = 0;
  if (strcmp(name, "localhost") == 0) strcpy(name, "127.0.0.1");
  struct sockaddr_storage addr;
  if (uv_ip4_addr(name, port, (struct sockaddr_in *)&addr) != 0 &&
      uv_ip6_addr(name, port, (struct sockaddr_in6 *)&addr) != 0) {
    snprintf(err, errlen, "http: '%s' is not a numeric IP address or localhost", name);
    return -EINVAL;
  }
  int allow_public = opts && opts->allow_public;
  if (!allow_public && !is_loopback((struct sockaddr *)&addr)) {
    snprintf(err, errlen,
             "http: refusing to listen on %s: not a loopback address (allow it explicitly to "
             "serve other machines)",
             name);
    return -EACCES;
  }
  ds_http *s = calloc(1, sizeof *s);
  if (!s) {
    snprintf(err, errlen, "http: out of memory");
    return -ENOMEM;
  }
  s->loop = loop;
  s->handler = handler;
  s->ud = ud;
  s->max_connections =
      opts && opts->max_connections > 0 ? opts->max_connections : DEFAULT_MAX_CONNECTIONS;
  s->idle_ms = opts && opts->idle_timeout_ms ? opts->idle_timeout_ms : DEFAULT_IDLE_MS;
  s->head_ms = opts && opts->head_timeout_ms ? opts->head_timeout_ms : DEFAULT_HEAD_MS;
  s->max_per_client =
      opts && opts->max_per_client > 0 ? opts->max_per_client : DEFAULT_MAX_PER_CLIENT;
  if (s->max_per_client > s->max_connections) s->max_per_client = s->max_connections;
  uv_tcp_init(loop, &s->listener);
  s->listener.data = s;
  s->listener_open = 1;
  int rc = uv_tcp_bind(&s->listener, (struct sockaddr *)&addr, 0);
  if (rc == 0) rc = uv_listen((uv_stream_t *)&s->listener, 64, on_connection);
  if (rc < 0) {
    snprintf(err, errlen, "http: cannot listen on %s%s%s:%d: %s", strchr(name, ':') ? "[" : "",
             name, strchr(name, ':') ? "]" : "", port, uv_strerror(rc));
    s->stopping = 1; /* freed by the close callback */
    uv_close((uv_handle_t *)&s->listener, listener_closed);
    return rc;
  }
  uv_unref((uv_handle_t *)&s->listener);
  struct sockaddr_storage bound;
  int blen = sizeof bound;
  s->port = port;
  if (uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &blen) == 0)
    s->port = ntohs(bound.ss_family == AF_INET ? ((struct sockaddr_in *)&bound)->sin_port
                                               : ((struct sockaddr_in6 *)&bound)->sin6_port);
  snprintf(s->host, sizeof s->host, "%s", name);
  *out = s;
  return 0;
}

void ds_http_address(ds_http *s, char *host, size_t hostlen, int *port) {
  if (host) snprintf(host, hostlen, "%s", s->host);
  if (port) *port = s->port;
}

uint64_t ds_http_requests(ds_http *s) { return s->requests; }

void ds_http_stop(ds_http *s, void (*on_closed)(void *ud), void *ud) {
  if (s->stopping) return;
  s->stopping = 1;
  s->on_closed = on_closed;
  s->closed_ud = ud;
  while (s->conns) conn_close(s->conns);
  uv_close((uv_handle_t *)&s->listener, listener_closed);
}
