/* ds_recv_socket.h - TCP text receiver: reads lines from host:port into a block store.
 *
 * The receiver owns its libuv handles, the resolved addresses and the unfinished line; it
 * runs on the loop's thread and every call below is made there. It never gives up: a failed
 * connect or a closed connection is retried with backoff (100 ms doubling up to
 * backoff_max_ms), records already received stay in the store, and each change of state is
 * logged once (ds_log), not each retry. Connections have TCP keepalive (probes after 30 s
 * of silence, 3 of them 10 s apart), so a server that vanished without FIN or RST is noticed
 * in about a minute; with idle_timeout_ms, a connection silent that long is reopened. The
 * store belongs to the caller and must stay alive until on_closed has run. */
#ifndef DS_RECV_SOCKET_H
#define DS_RECV_SOCKET_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "ds_recv.h"
#include "ds_store.h"

typedef struct ds_recv_socket ds_recv_socket;

typedef struct ds_recv_socket_opts {
  size_t max_line;         /* longest line kept ('\r' excluded); 0 means DS_RECORD_MAX */
  uint64_t backoff_max_ms; /* longest wait between connection attempts; 0 means 2000 */
  double max_rate;         /* records per second read at most; 0 means no limit */
  uint64_t idle_timeout_ms; /* no byte for this long: reconnect, as after a close; 0 = never */
} ds_recv_socket_opts;

/* Starts connecting to host:port (a name, IPv4 or IPv6 address). opts may be NULL.
 * Returns 0 and sets *out, or -EINVAL (bad host or port) / -ENOMEM with a message in err.
 * Failures to resolve or connect are not errors of this call: they are retried. */
int ds_recv_socket_start(uv_loop_t *loop, const char *host, int port, ds_store *store,
                         const ds_recv_socket_opts *opts, ds_recv_socket **out, char *err,
                         size_t errlen);

/* Limits reading to `rate` records per second (0: no limit), now and after reconnects.
 * Over the limit the receiver stops reading (uv_read_stop) until its token bucket holds a
 * record again, so the kernel's buffers fill and TCP slows the sender: nothing is dropped. */
void ds_recv_socket_set_rate(ds_recv_socket *r, double rate);

/* Copies the current statistics into *st. Valid until on_closed of a stop has run. */
void ds_recv_socket_stats(ds_recv_socket *r, ds_recv_stats *st);

/* Reads what the connection's kernel buffer already holds, ignoring the rate limit (until
 * EAGAIN or EOF; at most 64 MiB against a server that never pauses), and stores it and an
 * unfinished line as records (now, before returning): nothing received is lost. Then closes
 * the handles asynchronously, frees the receiver and calls on_closed(ud) (on_closed may be
 * NULL).
 * A second call does nothing. */
void ds_recv_socket_stop(ds_recv_socket *r, void (*on_closed)(void *ud), void *ud);

#endif
