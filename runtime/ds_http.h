/* ds_http.h - a small HTTP/1.1 server on the driver's libuv loop (http_parser from Debian).
 *
 * It serves GET and HEAD only, answers each request synchronously through one handler, keeps
 * connections alive (pipelined requests are answered in order) and closes idle ones. The
 * server owns its listening handle, its connections and their buffers; the handler owns
 * nothing it is given beyond the call. It binds to a loopback address (127.0.0.0/8, ::1,
 * "localhost") unless allow_public is set: a monitoring page is never exposed by accident.
 * Every call is made on the loop's thread. Neither the listening socket nor its connections
 * keep the loop alive on their own. */
#ifndef DS_HTTP_H
#define DS_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct ds_http ds_http;
typedef struct ds_http_request ds_http_request;

/* What the handler sees of a request; the strings last for the call only. */
struct ds_http_request {
  const char *method; /* "GET" or "HEAD" (others are answered 405 without the handler) */
  const char *path;   /* the URL path as sent (not decoded), e.g. "/api/batches" */
  const char *query;  /* the text after '?', "" if none */
  const char *host;   /* the Host header, "" if none */
  void *conn_;        /* internal: the connection answered by ds_http_respond */
  int answered_;      /* internal */
};

/* The handler must call ds_http_respond once before returning; if it does not, the client
 * gets a 500. */
typedef void (*ds_http_handler)(void *ud, ds_http_request *req);

/* Slow clients cannot lock the server out: a request head (from the accept, or from the
 * first byte of a later request) must be complete within head_timeout_ms, or the connection
 * gets a 408 and is closed, however steadily its bytes trickle in. A connection accepted at a
 * cap is always served: at max_per_client connections from one client address, that client's
 * longest-idle connection is closed; at max_connections, the longest-idle one of the client
 * holding the most (connections with an answer being written go last). */
typedef struct ds_http_opts {
  int allow_public;         /* 1: any address may be bound (e.g. 0.0.0.0) */
  int max_connections;      /* connections open at once (see above). 0 = 64 */
  uint64_t idle_timeout_ms; /* a connection with nothing to do is closed; 0 = 30000 */
  uint64_t head_timeout_ms; /* deadline of a request head; 0 = 10000 */
  int max_per_client;       /* connections open at once from one address; 0 = 16 */
} ds_http_opts;

/* Listens on host:port (a numeric IPv4/IPv6 address or "localhost"; port 0 picks a free
 * port). opts may be NULL. Returns 0 and sets *out, or a negative errno with a message in err:
 * -EINVAL (bad address or port), -EACCES (not a loopback address and !allow_public),
 * -EADDRINUSE and the other bind/listen failures, -ENOMEM. */
int ds_http_start(uv_loop_t *loop, const char *host, int port, const ds_http_opts *opts,
                  ds_http_handler handler, void *ud, ds_http **out, char *err, size_t errlen);

/* Answers a request: copies the body now. content_type NULL means "text/plain". A HEAD
 * request gets the headers only. Returns 0, or -EALREADY for a second answer. */
int ds_http_respond(ds_http_request *req, int status, const char *content_type,
                    const char *body, size_t len);

/* The bound address, e.g. "127.0.0.1" or "::1", and the port actually bound. */
void ds_http_address(ds_http *s, char *host, size_t hostlen, int *port);

/* Requests answered so far (for tests and metrics). */
uint64_t ds_http_requests(ds_http *s);

/* Closes the listening socket and every connection (responses being written are cut), then
 * frees the server and calls on_closed(ud) (may be NULL). A second call does nothing. */
void ds_http_stop(ds_http *s, void (*on_closed)(void *ud), void *ud);

#endif
