/* bench/gen.c - deterministic inputs for the benchmarks (not a baseline): a Zipf corpus, and
 * TCP servers that feed it to socket_text_stream.
 *
 *   gen corpus WORDS FILE          lines of ~100 bytes, words drawn from a Zipf law (s = 1) over
 *                                  a 200,000-word vocabulary; the same bytes on every run
 *   gen serve PORT FILE [REPEAT]   listens on 127.0.0.1:PORT, accepts one client, writes FILE
 *                                  REPEAT times (default 1) as fast as the client reads, closes
 *   gen paced PORT FILE RATE SECS  listens, accepts one client, then writes RATE lines per
 *                                  second for SECS seconds, 1 ms at a time; each line is the
 *                                  send time in microseconds of the wall clock (16 digits), a
 *                                  space, and a line of FILE (cycled)
 *
 * Prints one line on stderr when done (lines written); exits 1 on a usage or system error. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define VOCAB 200000
#define LINE_MIN 92 /* a line ends at the first word that takes it to this many bytes */

static uint64_t splitmix(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static void die(const char *what) {
  fprintf(stderr, "gen: %s: %s\n", what, strerror(errno));
  exit(1);
}

/* The word of rank r (1-based): frequent words are short, as in natural text. */
static int word_of(uint64_t r, char *out) {
  uint64_t s = r * 0x2545F4914F6CDD1Dull;
  uint64_t h = splitmix(&s);
  int len = 2 + (int)(log2((double)r + 1) / 2) + (int)(h % 3);
  if (len > 12) len = 12;
  for (int i = 0; i < len; i++) out[i] = (char)('a' + splitmix(&s) % 26);
  return len;
}

static int cmd_corpus(long long nwords, const char *path) {
  static char words[VOCAB][12];
  static int lens[VOCAB];
  double *cdf = malloc(sizeof(double) * VOCAB);
  if (!cdf) die("malloc");
  double sum = 0;
  for (int r = 0; r < VOCAB; r++) {
    lens[r] = word_of((uint64_t)r + 1, words[r]);
    sum += 1.0 / (r + 1);
    cdf[r] = sum;
  }
  for (int r = 0; r < VOCAB; r++) cdf[r] /= sum;
  FILE *f = fopen(path, "wb");
  if (!f) die(path);
  uint64_t seed = 42;
  char line[256];
  long long written = 0, lines = 0;
  while (written < nwords) {
    int n = 0;
    while (n < LINE_MIN && written < nwords) {
      double u = (double)(splitmix(&seed) >> 11) / 9007199254740992.0;
      int lo = 0, hi = VOCAB - 1;
      while (lo < hi) { /* first rank whose cdf >= u */
        int mid = (lo + hi) / 2;
        if (cdf[mid] < u) lo = mid + 1; else hi = mid;
      }
      if (n) line[n++] = ' ';
      memcpy(line + n, words[lo], (size_t)lens[lo]);
      n += lens[lo];
      written++;
    }
    line[n++] = '\n';
    if (fwrite(line, 1, (size_t)n, f) != (size_t)n) die(path);
    lines++;
  }
  if (fclose(f)) die(path);
  free(cdf);
  fprintf(stderr, "gen: %s: %lld lines, %lld words\n", path, lines, written);
  return 0;
}

static char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) die(path);
  struct stat st;
  if (fstat(fileno(f), &st)) die(path);
  char *buf = malloc((size_t)st.st_size + 1);
  if (!buf) die("malloc");
  if (fread(buf, 1, (size_t)st.st_size, f) != (size_t)st.st_size) die(path);
  fclose(f);
  *len = (size_t)st.st_size;
  return buf;
}

/* Listens on 127.0.0.1:port and returns the first client's socket. */
static int accept_one(int port) {
  int ls = socket(AF_INET, SOCK_STREAM, 0);
  if (ls < 0) die("socket");
  int one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(ls, (struct sockaddr *)&a, sizeof a)) die("bind");
  if (listen(ls, 1)) die("listen");
  fprintf(stderr, "gen: listening on 127.0.0.1:%d\n", port);
  int c = accept(ls, NULL, NULL);
  if (c < 0) die("accept");
  close(ls);
  setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return c;
}

static int write_all(int fd, const char *p, size_t n) {
  while (n) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static int cmd_serve(int port, const char *path, int repeat) {
  size_t len;
  char *buf = read_file(path, &len);
  int c = accept_one(port);
  for (int i = 0; i < repeat; i++)
    if (write_all(c, buf, len)) die("write");
  close(c);
  fprintf(stderr, "gen: served %zu bytes x %d\n", len, repeat);
  free(buf);
  return 0;
}

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmd_paced(int port, const char *path, double rate, double secs) {
  size_t len;
  char *text = read_file(path, &len);
  /* Index the lines of the file once. */
  size_t nlines = 0, cap = 1024;
  size_t *starts = malloc(cap * sizeof *starts), *lens = malloc(cap * sizeof *lens);
  for (size_t off = 0; off < len;) {
    char *nl = memchr(text + off, '\n', len - off);
    size_t end = nl ? (size_t)(nl - text) : len;
    if (nlines == cap) {
      cap *= 2;
      starts = realloc(starts, cap * sizeof *starts);
      lens = realloc(lens, cap * sizeof *lens);
    }
    starts[nlines] = off;
    lens[nlines++] = end - off;
    off = end + 1;
  }
  if (!nlines) {
    fprintf(stderr, "gen: %s has no lines\n", path);
    return 1;
  }
  int c = accept_one(port);
  size_t bufcap = 1 << 20;
  char *out = malloc(bufcap);
  double t0 = now_us();
  long long sent = 0, total = (long long)(rate * secs);
  size_t li = 0;
  for (long long tick = 1; sent < total; tick++) {
    /* Sleep until tick ms after the start, then send what is due by then. */
    double due_at = t0 + tick * 1000.0, now = now_us();
    if (due_at > now) {
      struct timespec ts = {0, (long)((due_at - now) * 1000)};
      nanosleep(&ts, NULL);
    }
    long long due = (long long)(rate * (now_us() - t0) / 1e6);
    if (due > total) due = total;
    size_t n = 0;
    char stamp[32];
    snprintf(stamp, sizeof stamp, "%016.0f ", now_us());
    while (sent < due) {
      size_t need = 17 + lens[li] + 1;
      if (n + need > bufcap) {
        if (write_all(c, out, n)) die("write");
        n = 0;
      }
      memcpy(out + n, stamp, 17);
      memcpy(out + n + 17, text + starts[li], lens[li]);
      out[n + 17 + lens[li]] = '\n';
      n += need;
      li = (li + 1) % nlines;
      sent++;
    }
    if (n && write_all(c, out, n)) die("write");
  }
  close(c);
  fprintf(stderr, "gen: sent %lld lines in %.2f s\n", sent, (now_us() - t0) / 1e6);
  return 0;
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  if (argc == 4 && !strcmp(argv[1], "corpus")) return cmd_corpus(atoll(argv[2]), argv[3]);
  if ((argc == 4 || argc == 5) && !strcmp(argv[1], "serve"))
    return cmd_serve(atoi(argv[2]), argv[3], argc == 5 ? atoi(argv[4]) : 1);
  if (argc == 6 && !strcmp(argv[1], "paced"))
    return cmd_paced(atoi(argv[2]), argv[3], atof(argv[4]), atof(argv[5]));
  fprintf(stderr,
          "usage: gen corpus WORDS FILE | gen serve PORT FILE [REPEAT] | "
          "gen paced PORT FILE RATE SECS\n");
  return 1;
}
