/* ds_repl.c - the interactive prompt's terminal: libedit driven by the loop, output above it. */
#include "ds_repl.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <uv.h>

#include <editline/readline.h>
#include <langinfo.h>
#include <locale.h>

/* Characters that end the word being completed: everything but identifier characters and the
 * '.' and ':' of field and method access, so `ctx:que` and `string.fo` complete whole. */
static const char word_breaks[] = " \t\n\"\\'`@$><=;|&{(}[)]+-*/%^~#,";

typedef struct repl {
  int open;
  ds_repl_mode mode;
  uv_loop_t *loop;
  ds_repl_callbacks cb;
  char *history; /* history file, or NULL */
  char *prompt;  /* the prompt on screen (TTY) */
  int reading;   /* a prompt is out and input is being read */
  int interrupt; /* Ctrl-C asked to interrupt the action being evaluated */

  uv_poll_t poll;
  int poll_inited;
  uv_signal_t winch;
  int winch_inited;

  /* PIPE and FILE modes: bytes read and not yet handed out as lines */
  char *in;
  size_t in_len, in_cap;
  int in_eof;
  char *line; /* the last line handed out, taken out of `in` */
  size_t line_cap;

  /* TTY mode with a terminal on standard output: output capture */
  int capture;            /* capture is set up */
  int capturing;          /* descriptors 1 and 2 point into the pipe */
  int term_out, term_err; /* the original descriptors 1 and 2 */
  FILE *rl_out;           /* libedit's output stream: the terminal */
  int pipe_r, pipe_w, ctl_r, ctl_w;
  pthread_t thread;
  int thread_started;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  char *out; /* captured bytes not yet written (guarded by mu) */
  size_t out_len, out_cap;
  unsigned sync_req, sync_done; /* guarded by mu */
  uv_async_t async;
  int async_inited;

  /* completion candidates handed to libedit one by one */
  char **cands;
  size_t ncands, next_cand;

  /* Keys (TTY): the last one libedit read, and the probe (see repl_getc) */
  int last_key;
  int probing, probed;
  int line_done; /* a line (or the end) was handed out since the prompt's last key */
} repl;

static repl R = {.term_out = -1, .term_err = -1, .pipe_r = -1, .pipe_w = -1, .ctl_r = -1, .ctl_w = -1};

/* ---- small helpers ------------------------------------------------------------------------ */

static void write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        struct pollfd pf = {fd, POLLOUT, 0};
        poll(&pf, 1, 100);
        continue;
      }
      return;
    }
    p += w;
    n -= (size_t)w;
  }
}

static int grow(char **buf, size_t *cap, size_t need) {
  if (need <= *cap) return 0;
  size_t c = *cap ? *cap : 4096;
  while (c < need) c *= 2;
  char *p = realloc(*buf, c);
  if (!p) return -ENOMEM;
  *buf = p;
  *cap = c;
  return 0;
}

static void close_fd(int *fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}

/* Columns a string takes on screen (UTF-8 continuation bytes take none). */
static size_t display_width(const char *s, size_t n) {
  size_t w = 0;
  for (size_t i = 0; i < n && s[i]; i++)
    if (((unsigned char)s[i] & 0xC0) != 0x80) w++;
  return w;
}

static int term_columns(void) {
  struct winsize ws;
  int fd = R.term_out >= 0 ? R.term_out : 1;
  if (ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  return 80;
}

/* ---- output capture ----------------------------------------------------------------------- */

/* Reads everything the pipe holds now into R.out. Returns the number of bytes taken. */
static size_t drain_pipe(char *buf, size_t size) {
  size_t total = 0;
  for (;;) {
    ssize_t n = read(R.pipe_r, buf, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    pthread_mutex_lock(&R.mu);
    if (grow(&R.out, &R.out_cap, R.out_len + (size_t)n) == 0) {
      memcpy(R.out + R.out_len, buf, (size_t)n);
      R.out_len += (size_t)n;
    }
    pthread_mutex_unlock(&R.mu);
    total += (size_t)n;
  }
  return total;
}

/* The helper thread: moves what is written to descriptors 1 and 2 into R.out and wakes the
 * loop; on 's' on the control pipe it drains the pipe and acknowledges (a sync), on 'q' it
 * ends. It never blocks a writer, however much is written between two loop iterations. */
static void *capture_main(void *arg) {
  (void)arg;
  char buf[16384];
  struct pollfd pf[2] = {{R.pipe_r, POLLIN, 0}, {R.ctl_r, POLLIN, 0}};
  for (;;) {
    if (poll(pf, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (pf[0].revents && drain_pipe(buf, sizeof buf) > 0) uv_async_send(&R.async);
    if (pf[1].revents) {
      char cmds[64];
      ssize_t n = read(R.ctl_r, cmds, sizeof cmds);
      if (n <= 0 || memchr(cmds, 'q', (size_t)n)) break;
      pthread_mutex_lock(&R.mu);
      unsigned target = R.sync_req;
      pthread_mutex_unlock(&R.mu);
      drain_pipe(buf, sizeof buf);
      pthread_mutex_lock(&R.mu);
      R.sync_done = target;
      pthread_cond_broadcast(&R.cv);
      pthread_mutex_unlock(&R.mu);
    }
  }
  return NULL;
}

/* Waits until everything written to the pipe so far is in R.out. */
static void capture_sync(void) {
  if (!R.thread_started) return;
  pthread_mutex_lock(&R.mu);
  unsigned want = ++R.sync_req;
  pthread_mutex_unlock(&R.mu);
  write_all(R.ctl_w, "s", 1);
  pthread_mutex_lock(&R.mu);
  while ((int)(R.sync_done - want) < 0) pthread_cond_wait(&R.cv, &R.mu);
  pthread_mutex_unlock(&R.mu);
}

/* Erases the prompt and the line being typed: the cursor ends at column 0 of the prompt's
 * first row, everything below it cleared. */
static void hide_prompt(void) {
  fflush(R.rl_out);
  int cols = term_columns();
  size_t pos = display_width(R.prompt ? R.prompt : "", (size_t)-1) +
               display_width(rl_line_buffer ? rl_line_buffer : "", (size_t)(rl_point > 0 ? rl_point : 0));
  unsigned up = (unsigned)(pos / (size_t)cols);
  char seq[32];
  int n = up ? snprintf(seq, sizeof seq, "\r\033[%uA\033[J", up) : snprintf(seq, sizeof seq, "\r\033[J");
  write_all(R.term_out, seq, (size_t)n);
}

/* Writes the captured output: above the prompt (then redrawn) while one is on screen. */
static void flush_output(void) {
  pthread_mutex_lock(&R.mu);
  char *data = R.out;
  size_t len = R.out_len;
  R.out = NULL;
  R.out_len = R.out_cap = 0;
  pthread_mutex_unlock(&R.mu);
  if (len == 0) {
    free(data);
    return;
  }
  int above = R.reading && R.mode == DS_REPL_TTY;
  if (above) hide_prompt();
  /* The terminal may be in libedit's mode: write CR LF for each LF. */
  size_t start = 0;
  for (size_t i = 0; i < len; i++) {
    if (data[i] == '\n' && above && (i == 0 || data[i - 1] != '\r')) {
      write_all(R.term_out, data + start, i - start);
      write_all(R.term_out, "\r\n", 2);
      start = i + 1;
    }
  }
  write_all(R.term_out, data + start, len - start);
  if (above) {
    if (data[len - 1] != '\n') write_all(R.term_out, "\r\n", 2);
    rl_forced_update_display();
  }
  free(data);
}

static void on_async(uv_async_t *a) {
  (void)a;
  flush_output();
}

static void capture_start(void) {
  if (!R.capture || R.capturing) return;
  fflush(stdout);
  fflush(stderr);
  dup2(R.pipe_w, 1);
  dup2(R.pipe_w, 2);
  R.capturing = 1;
}

static void capture_stop(void) {
  if (!R.capturing) return;
  fflush(stdout);
  fflush(stderr);
  dup2(R.term_out, 1);
  dup2(R.term_err, 2);
  R.capturing = 0;
  capture_sync();
  flush_output();
}

static int capture_setup(char *err, size_t errlen) {
  int p[2], c[2];
  R.term_out = fcntl(1, F_DUPFD_CLOEXEC, 3);
  R.term_err = fcntl(2, F_DUPFD_CLOEXEC, 3);
  if (R.term_out < 0 || R.term_err < 0) goto fail;
  if (pipe2(p, O_CLOEXEC) != 0) goto fail;
  R.pipe_r = p[0];
  R.pipe_w = p[1];
  if (pipe2(c, O_CLOEXEC) != 0) goto fail;
  R.ctl_r = c[0];
  R.ctl_w = c[1];
  fcntl(R.pipe_r, F_SETFL, fcntl(R.pipe_r, F_GETFL) | O_NONBLOCK);
  if (uv_async_init(R.loop, &R.async, on_async) != 0) goto fail;
  R.async_inited = 1;
  uv_unref((uv_handle_t *)&R.async);
  pthread_mutex_init(&R.mu, NULL);
  pthread_cond_init(&R.cv, NULL);
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old); /* the helper thread takes no signals */
  int rc = pthread_create(&R.thread, NULL, capture_main, NULL);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc != 0) {
    errno = rc;
    goto fail;
  }
  R.thread_started = 1;
  R.capture = 1;
  return 0;
fail:
  snprintf(err, errlen, "cannot set up the terminal output: %s", strerror(errno));
  return -1;
}

static void capture_teardown(void) {
  capture_stop();
  if (R.thread_started) {
    write_all(R.ctl_w, "q", 1);
    pthread_join(R.thread, NULL);
    R.thread_started = 0;
    pthread_mutex_destroy(&R.mu);
    pthread_cond_destroy(&R.cv);
  }
  free(R.out);
  R.out = NULL;
  R.out_len = R.out_cap = 0;
  if (R.async_inited) {
    uv_close((uv_handle_t *)&R.async, NULL);
    R.async_inited = 0;
  }
  close_fd(&R.pipe_r);
  close_fd(&R.pipe_w);
  close_fd(&R.ctl_r);
  close_fd(&R.ctl_w);
  R.capture = 0;
}

/* ---- input -------------------------------------------------------------------------------- */

/* Ctrl-R: libedit's incremental search ends on Enter by pushing the Enter back into its input,
 * to be run at its next read; in the callback interface that read happens only when the next
 * key arrives, so the line found took a second Enter (which then also ran an empty line).
 * After an Enter that handed out no line, on_stdin has libedit read once more, "probing": a
 * key pushed back runs then (the Enter accepts the line at once), and if nothing is pending
 * libedit's read gets PROBE_KEY, bound to a command that does nothing. */
#define PROBE_KEY 0x1e /* Ctrl-^ */

static int probe_noop(int count, int key) {
  (void)count;
  (void)key;
  return 0;
}

/* libedit's getc: the next character of standard input (UTF-8 sequences as one code point),
 * or PROBE_KEY while probing. */
static int repl_getc(FILE *f) {
  (void)f;
  if (R.probing) {
    R.probed = 1;
    return PROBE_KEY;
  }
  unsigned char c;
  ssize_t n;
  do {
    n = read(0, &c, 1);
  } while (n < 0 && errno == EINTR);
  if (n <= 0) return EOF;
  int cp = c, more = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : c >= 0xC0 ? 1 : 0;
  if (more) cp = c & (0x3F >> more);
  for (; more > 0; more--) {
    do {
      n = read(0, &c, 1);
    } while (n < 0 && errno == EINTR);
    if (n <= 0) return EOF;
    cp = (cp << 6) | (c & 0x3F);
  }
  R.last_key = cp;
  return cp;
}

static void stop_reading(void) {
  int was_reading = R.reading;
  R.reading = 0; /* first: output flushed below goes where the cursor is, not above */
  if (R.poll_inited) uv_poll_stop(&R.poll);
  if (R.mode == DS_REPL_TTY && was_reading) {
    rl_callback_handler_remove();
    capture_stop();
  }
}

/* Hands a line (or the end of input: line == NULL) to the on_line callback. */
static void deliver(const char *line, size_t len) {
  R.line_done = 1;
  if (R.cb.on_line) R.cb.on_line(R.cb.ud, line, len);
}

static void on_rl_line(char *line) {
  stop_reading();
  if (!line && R.term_out >= 0) { /* Ctrl-D: libedit showed it as ^D; show the bare prompt */
    fflush(R.rl_out);
    write_all(R.term_out, "\r", 1);
    if (R.prompt) write_all(R.term_out, R.prompt, strlen(R.prompt));
    write_all(R.term_out, "\033[K\r\n", 5);
  }
  deliver(line, line ? strlen(line) : 0);
  free(line);
}

/* PIPE/FILE: takes the first complete line out of the buffer (or the last, unterminated one
 * at end of input). Returns 1 and sets *line and *len (valid until the buffer changes), 0 if
 * none. */
static int buffered_line(char **line, size_t *len, size_t *consumed) {
  char *nl = R.in_len ? memchr(R.in, '\n', R.in_len) : NULL;
  if (nl) {
    *line = R.in;
    *len = (size_t)(nl - R.in);
    if (*len > 0 && R.in[*len - 1] == '\r') (*len)--;
    *consumed = (size_t)(nl - R.in) + 1;
    return 1;
  }
  if (R.in_eof && R.in_len > 0) {
    *line = R.in;
    *len = *consumed = R.in_len;
    return 1;
  }
  return 0;
}

static void consume(size_t n) {
  memmove(R.in, R.in + n, R.in_len - n);
  R.in_len -= n;
}

/* PIPE/FILE: moves the first buffered line into R.line, so that reading on (from the
 * callback it is handed to) cannot move it. Returns 1 and sets *line and *len, 0 if there is
 * none, -ENOMEM. */
static int take_line(const char **line, size_t *len) {
  char *at;
  size_t n, used;
  if (!buffered_line(&at, &n, &used)) return 0;
  if (grow(&R.line, &R.line_cap, n + 1) != 0) return -ENOMEM;
  memcpy(R.line, at, n);
  R.line[n] = '\0';
  consume(used);
  *line = R.line;
  *len = n;
  return 1;
}

/* Reads what standard input has (in FILE mode this may block, briefly). -1 on an error. */
static int read_input(void) {
  if (grow(&R.in, &R.in_cap, R.in_len + 65536) != 0) return -1;
  ssize_t n;
  do {
    n = read(0, R.in + R.in_len, R.in_cap - R.in_len);
  } while (n < 0 && errno == EINTR);
  if (n < 0 && errno == EAGAIN) return 0;
  if (n <= 0) {
    R.in_eof = 1;
    return n < 0 ? -1 : 0;
  }
  R.in_len += (size_t)n;
  return 0;
}

static void on_stdin(uv_poll_t *h, int status, int events) {
  (void)h;
  (void)events;
  if (R.mode == DS_REPL_TTY) {
    for (int i = 0; R.reading; i++) {
      int avail = 0;
      if (status < 0 || ioctl(0, FIONREAD, &avail) < 0 || avail <= 0) {
        if (i == 0) { /* readable with nothing to read: the terminal hung up */
          stop_reading();
          deliver(NULL, 0);
        }
        return;
      }
      R.line_done = 0;
      R.last_key = 0;
      rl_callback_read_char();
      if (R.reading && !R.line_done && (R.last_key == '\r' || R.last_key == '\n')) {
        R.probing = 1; /* an Enter that handed out no line: one pushed back? (repl_getc) */
        R.probed = 0;
        rl_callback_read_char();
        R.probing = 0;
      }
    }
    return;
  }
  if (status < 0)
    R.in_eof = 1;
  else
    read_input();
  const char *line;
  size_t len;
  if (take_line(&line, &len) > 0) {
    stop_reading();
    deliver(line, len);
  } else if (R.in_eof) {
    stop_reading();
    deliver(NULL, 0);
  }
}

static void on_winch(uv_signal_t *s, int signum) {
  (void)s;
  (void)signum;
  if (R.mode != DS_REPL_TTY) return;
  rl_resize_terminal();
  if (R.reading) rl_forced_update_display();
}

/* ---- completion --------------------------------------------------------------------------- */

static void free_candidates(void) {
  for (size_t i = 0; i < R.ncands; i++) free(R.cands[i]);
  free(R.cands);
  R.cands = NULL;
  R.ncands = R.next_cand = 0;
}

static char *next_candidate(const char *text, int state) {
  (void)text;
  if (state == 0) R.next_cand = 0;
  if (R.next_cand < R.ncands) return strdup(R.cands[R.next_cand++]);
  return NULL;
}

/* libedit asks for the completions of `text` (the word before the cursor, which ends at
 * `end`): the complete callback lists them. */
static char **on_complete(const char *text, int start, int end) {
  (void)start;
  rl_attempted_completion_over = 1; /* never fall back to file names */
  free_candidates();
  if (!R.cb.complete) return NULL;
  size_t line_len = rl_line_buffer ? strlen(rl_line_buffer) : 0;
  if (end < 0 || (size_t)end > line_len) end = (int)line_len;
  R.cands = R.cb.complete(R.cb.ud, text, rl_line_buffer ? rl_line_buffer : "", (size_t)end,
                          &R.ncands);
  if (!R.cands) R.ncands = 0;
  if (R.ncands == 0) return NULL;
  return rl_completion_matches(text, next_candidate);
}

/* ---- opening and closing ------------------------------------------------------------------ */

static void repl_close(void) {
  if (!R.open) return;
  stop_reading();
  if (R.mode == DS_REPL_TTY) {
    if (R.history) write_history(R.history);
    rl_callback_handler_remove();
    capture_teardown();
    if (R.rl_out) fflush(R.rl_out);
  }
  if (R.poll_inited) {
    uv_close((uv_handle_t *)&R.poll, NULL);
    R.poll_inited = 0;
  }
  if (R.winch_inited) {
    uv_close((uv_handle_t *)&R.winch, NULL);
    R.winch_inited = 0;
  }
  close_fd(&R.term_out);
  close_fd(&R.term_err);
  free(R.history);
  free(R.prompt);
  free(R.in);
  free(R.line);
  free_candidates();
  R.history = R.prompt = R.in = R.line = NULL;
  R.in_len = R.in_cap = R.line_cap = 0;
  R.in_eof = 0;
  memset(&R.cb, 0, sizeof R.cb);
  R.loop = NULL;
  R.open = 0;
}

/* At exit (also after an error that skipped repl_close): descriptors and terminal back. */
static void repl_atexit(void) {
  if (!R.open) return;
  if (R.capturing) {
    fflush(stdout);
    fflush(stderr);
    dup2(R.term_out, 1);
    dup2(R.term_err, 2);
    R.capturing = 0;
  }
  if (R.mode == DS_REPL_TTY && R.reading) rl_callback_handler_remove();
}

static int repl_open(uv_loop_t *loop, const char *history, int force_plain, char *err,
                     size_t errlen) {
  R.open = 1; /* from here on repl_close() undoes what was done */
  R.loop = loop;
  int tty = !force_plain && isatty(0);
  R.mode = tty ? DS_REPL_TTY : DS_REPL_PIPE;
  if (uv_guess_handle(0) == UV_FILE) R.mode = DS_REPL_FILE;
  if (R.mode != DS_REPL_FILE) {
    int flags = fcntl(0, F_GETFL);
    int rc = uv_poll_init(loop, &R.poll, 0);
    if (rc != 0) {
      if (R.mode == DS_REPL_TTY) {
        snprintf(err, errlen, "cannot watch standard input: %s", uv_strerror(rc));
        return -1;
      }
      R.mode = DS_REPL_FILE;
    } else {
      R.poll_inited = 1;
      /* uv_poll_init made the descriptor non-blocking; on a terminal that flag is shared
       * with standard output, whose writers expect blocking writes. Reads happen only when
       * the descriptor is readable, so blocking is fine. */
      if (flags >= 0) fcntl(0, F_SETFL, flags);
    }
  }
  if (R.mode == DS_REPL_TTY) {
    if (isatty(1) && capture_setup(err, errlen) != 0) return -1;
    if (R.term_out < 0) R.term_out = fcntl(1, F_DUPFD_CLOEXEC, 3);
    int out_fd = fcntl(R.term_out, F_DUPFD_CLOEXEC, 3);
    R.rl_out = out_fd >= 0 ? fdopen(out_fd, "w") : NULL;
    if (!R.rl_out) {
      if (out_fd >= 0) close(out_fd);
      snprintf(err, errlen, "cannot open the terminal for output: %s", strerror(errno));
      return -1;
    }
    /* libedit reads multibyte characters by LC_CTYPE: in the "C" locale it drops every byte
     * above 127, so "é" typed at the prompt vanished. The user's locale, else C.UTF-8 (glibc
     * has it built in); only LC_CTYPE, whose single-byte classes (Lua's %a, upper, lower)
     * are the same in C.UTF-8 as in "C". */
    if (!setlocale(LC_CTYPE, "") || strcmp(nl_langinfo(CODESET), "UTF-8") != 0)
      setlocale(LC_CTYPE, "C.UTF-8");
    rl_instream = stdin;
    rl_outstream = R.rl_out;
    rl_readline_name = "dstream";
    rl_catch_signals = 0; /* SIGINT belongs to the loop (libuv), not to libedit */
    rl_catch_sigwinch = 0;
    rl_attempted_completion_function = on_complete;
    rl_basic_word_break_characters = word_breaks;
    rl_completion_append_character = '\0';
    rl_completion_query_items = 500; /* ask before listing more (libedit reads the answer with stdio) */
    rl_getc_function = repl_getc;
    if (rl_initialize() != 0) {
      snprintf(err, errlen, "cannot initialise line editing (libedit)");
      return -1;
    }
    rl_add_defun("dstream-probe", probe_noop, PROBE_KEY);
    using_history();
    stifle_history(1000);
    if (history) {
      R.history = strdup(history);
      read_history(history); /* a missing file is a first session */
    }
    if (uv_signal_init(loop, &R.winch) == 0) {
      R.winch_inited = 1;
      uv_signal_start(&R.winch, on_winch, SIGWINCH);
      uv_unref((uv_handle_t *)&R.winch);
    }
  }
  static int atexit_done;
  if (!atexit_done) atexit_done = (atexit(repl_atexit) == 0);
  return 0;
}

/* ---- the prompt's calls -------------------------------------------------------------------- */

int ds_repl_open(uv_loop_t *loop, const char *history, int plain, const ds_repl_callbacks *cb,
                 char *err, size_t errlen) {
  if (R.open) {
    snprintf(err, errlen, "the prompt is already open");
    return -1;
  }
  if (repl_open(loop, history, plain, err, errlen) != 0) {
    repl_close();
    return -1;
  }
  R.cb = *cb;
  return 0;
}

int ds_repl_is_open(void) { return R.open; }

ds_repl_mode ds_repl_input_mode(void) { return R.mode; }

int ds_repl_read(const char *prompt, const char **line, size_t *len, char *err, size_t errlen) {
  if (R.reading) {
    snprintf(err, errlen, "the prompt is already reading a line");
    return -1;
  }
  R.interrupt = 0;
  if (R.mode != DS_REPL_TTY) {
    for (;;) {
      int rc = take_line(line, len);
      if (rc < 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
      }
      if (rc > 0) return DS_REPL_LINE;
      if (R.in_eof) return DS_REPL_EOF;
      if (R.mode == DS_REPL_PIPE) break;
      if (read_input() != 0) R.in_eof = 1; /* FILE: a blocking read never waits long */
    }
  }
  R.reading = 1;
  if (R.mode == DS_REPL_TTY) {
    free(R.prompt);
    R.prompt = strdup(prompt);
    capture_start();
    rl_callback_handler_install(prompt, on_rl_line); /* draws the prompt */
  }
  int rc = uv_poll_start(&R.poll, UV_READABLE, on_stdin);
  if (rc != 0) {
    stop_reading();
    snprintf(err, errlen, "cannot watch standard input: %s", uv_strerror(rc));
    return -1;
  }
  return DS_REPL_WAIT;
}

int ds_repl_cancel(const char *prompt) {
  if (!R.reading || R.mode != DS_REPL_TTY) return 0;
  flush_output();
  fflush(R.rl_out);
  write_all(R.term_out, "^C\r\n", 4);
  rl_callback_handler_remove();
  free(R.prompt);
  R.prompt = strdup(prompt);
  rl_callback_handler_install(prompt, on_rl_line); /* an empty line under a new prompt */
  return 1;
}

void ds_repl_stop_reading(void) { stop_reading(); }

void ds_repl_add_history(const char *line) {
  if (R.mode == DS_REPL_TTY && line[0]) {
    add_history(line);
    if (R.history) write_history(R.history);
  }
}

const char *ds_repl_history_entry(int i) {
  if (!R.open || R.mode != DS_REPL_TTY || i < 0) return NULL;
  HIST_ENTRY **list = history_list();
  for (int k = 0; list && list[k]; k++)
    if (k == i) return list[k]->line;
  return NULL;
}

int ds_repl_columns(void) { return term_columns(); }

void ds_repl_interrupt(void) { R.interrupt = 1; }

int ds_repl_take_interrupt(void) {
  int asked = R.interrupt;
  R.interrupt = 0;
  return asked;
}

void ds_repl_close(void) { repl_close(); }
