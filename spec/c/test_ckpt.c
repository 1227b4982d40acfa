/* test_ckpt.c - checkpoint files (ds_ckpt.c): write/read/list round trips, a generation never
 * reused, every kind of damage (truncated, trailing bytes, a flipped byte, a wrong magic or
 * version) reported by read and by check alike, never half-used; stamps; temp file removal
 * (which generations to delete is dstream.checkpoint.prune's choice, see its spec). */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ds_ckpt.h"

#include "check.h"

#define HEADER 32 /* magic 8, version 4, crc 4, generation 8, length 8 */

static char dir[64];
static char err[8192];

/* ---- helpers ------------------------------------------------------------------------- */

static void path_of(char *out, size_t n, uint64_t gen) { ds_ckpt_path(out, n, dir, gen); }

static int exists(const char *name) {
  char p[256];
  struct stat st;
  snprintf(p, sizeof p, "%s/%s", dir, name);
  return stat(p, &st) == 0;
}

static void touch(const char *name, const char *text) {
  char p[256];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  check_write_file(p, text, strlen(text));
}

/* The whole file at path (malloc'd) and its size. */
static char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  CHECK(f != NULL);
  CHECK_INT(fseek(f, 0, SEEK_END), ==, 0);
  long n = ftell(f);
  CHECK(n >= 0);
  rewind(f);
  char *buf = malloc((size_t)n + 1);
  CHECK(buf != NULL);
  CHECK_INT(fread(buf, 1, (size_t)n, f), ==, n);
  fclose(f);
  *len = (size_t)n;
  return buf;
}

static void write_ok(uint64_t gen, const void *data, size_t len) {
  err[0] = '\0';
  int rc = ds_ckpt_write(dir, gen, data, len, err, sizeof err);
  if (rc != 0) fprintf(stderr, "ds_ckpt_write(%llu): %d %s\n", (unsigned long long)gen, rc, err);
  CHECK_INT(rc, ==, 0);
}

/* Reads generation gen and checks it holds exactly data/len. */
static void read_back(uint64_t gen, const void *data, size_t len) {
  char path[256];
  path_of(path, sizeof path, gen);
  char *got = NULL;
  size_t got_len = 12345;
  uint64_t got_gen = 0;
  int rc = ds_ckpt_read(path, &got, &got_len, &got_gen, err, sizeof err);
  if (rc != 0) fprintf(stderr, "ds_ckpt_read(%s): %d %s\n", path, rc, err);
  CHECK_INT(rc, ==, 0);
  CHECK(got != NULL);
  CHECK_INT(got_len, ==, len);
  CHECK_INT(got_gen, ==, gen);
  CHECK(len == 0 || memcmp(got, data, len) == 0);
  free(got);
  /* ds_ckpt_check agrees, and its stamp is the file's. */
  char stamp[128] = "", now[128] = "";
  rc = ds_ckpt_check(path, stamp, sizeof stamp, err, sizeof err);
  if (rc != 0) fprintf(stderr, "ds_ckpt_check(%s): %d %s\n", path, rc, err);
  CHECK_INT(rc, ==, 0);
  CHECK_INT(ds_ckpt_stamp(path, now, sizeof now, err, sizeof err), ==, 0);
  CHECK(stamp[0] != '\0');
  CHECK_STR(stamp, now);
}

/* Reads path expecting a failure whose message names the file and contains `words`. */
static void read_fails(const char *path, int want_rc, const char *words) {
  char *got = (char *)"untouched";
  size_t got_len = 777;
  uint64_t got_gen = 999;
  err[0] = '\0';
  int rc = ds_ckpt_read(path, &got, &got_len, &got_gen, err, sizeof err);
  if (rc != want_rc || !strstr(err, path) || !strstr(err, words))
    fprintf(stderr, "ds_ckpt_read(%s) = %d \"%s\"; wanted %d and \"%s\"\n", path, rc, err, want_rc,
            words);
  CHECK_INT(rc, ==, want_rc);
  CHECK(strstr(err, path) != NULL);
  CHECK(strstr(err, words) != NULL);
  /* Nothing is handed out on failure. */
  CHECK_STR(got, "untouched");
  CHECK_INT(got_len, ==, 777);
  CHECK_INT(got_gen, ==, 999);
  /* ds_ckpt_check, which reads in chunks, finds the same problem with the same words. */
  char read_err[sizeof err];
  snprintf(read_err, sizeof read_err, "%s", err);
  char stamp[128];
  err[0] = '\0';
  rc = ds_ckpt_check(path, stamp, sizeof stamp, err, sizeof err);
  if (rc != want_rc || strcmp(err, read_err) != 0)
    fprintf(stderr, "ds_ckpt_check(%s) = %d \"%s\"; ds_ckpt_read said %d \"%s\"\n", path, rc, err,
            want_rc, read_err);
  CHECK_INT(rc, ==, want_rc);
  CHECK_STR(err, read_err);
}

/* The generations in dir, compared with want[0..n). */
static void list_is(const uint64_t *want, int n) {
  uint64_t *gens = NULL;
  int got = -1;
  CHECK_INT(ds_ckpt_list(dir, &gens, &got, err, sizeof err), ==, 0);
  if (got != n) {
    fprintf(stderr, "ds_ckpt_list: %d generations:", got);
    for (int i = 0; i < got; i++) fprintf(stderr, " %llu", (unsigned long long)gens[i]);
    fprintf(stderr, "; wanted %d\n", n);
  }
  CHECK_INT(got, ==, n);
  for (int i = 0; i < n; i++) CHECK_INT(gens[i], ==, want[i]);
  free(gens);
}

/* Empties dir (keeps dir itself). */
static void clear_dir(void) {
  check_remove_tree(dir);
  CHECK_INT(mkdir(dir, 0700), ==, 0);
}

/* ---- tests --------------------------------------------------------------------------- */

static void test_crc32(void) {
  /* The standard check value of CRC-32 (IEEE, as zlib's crc32). */
  CHECK_INT(ds_crc32("123456789", 9), ==, 0xcbf43926u);
  CHECK_INT(ds_crc32("", 0), ==, 0);
  CHECK_INT(ds_crc32("a", 1), ==, 0xe8b7be43u);
}

static void test_round_trip(void) {
  const char text[] = "state bytes\0with a NUL inside";
  write_ok(1, text, sizeof text);
  read_back(1, text, sizeof text);

  /* The file: the documented header, then the payload as given. */
  char path[256];
  path_of(path, sizeof path, 1);
  char expect[256];
  snprintf(expect, sizeof expect, "%s/checkpoint-00000000000000000001", dir);
  CHECK_STR(path, expect);
  size_t len;
  char *raw = slurp(path, &len);
  CHECK_INT(len, ==, HEADER + sizeof text);
  CHECK(memcmp(raw, "DSCKPT01", 8) == 0);
  uint32_t version, crc;
  uint64_t gen, length;
  memcpy(&version, raw + 8, 4);
  memcpy(&crc, raw + 12, 4);
  memcpy(&gen, raw + 16, 8);
  memcpy(&length, raw + 24, 8);
  CHECK_INT(version, ==, DS_CKPT_VERSION);
  CHECK_INT(crc, ==, ds_crc32(text, sizeof text));
  CHECK_INT(gen, ==, 1);
  CHECK_INT(length, ==, sizeof text);
  CHECK(memcmp(raw + HEADER, text, sizeof text) == 0);
  free(raw);
  CHECK(!exists("checkpoint-00000000000000000001.tmp")); /* the temp file was renamed */

  /* An empty payload, and a large one (several write() calls' worth). */
  write_ok(2, "", 0);
  read_back(2, "", 0);
  size_t big_len = (size_t)3 * 1024 * 1024 + 17;
  unsigned char *big = malloc(big_len);
  CHECK(big != NULL);
  uint32_t x = 12345;
  for (size_t i = 0; i < big_len; i++) {
    x = x * 1103515245u + 12345u;
    big[i] = (unsigned char)(x >> 16);
  }
  write_ok(3, big, big_len);
  read_back(3, big, big_len);
  free(big);

  /* A large generation number. */
  write_ok(UINT64_C(1) << 40, "far", 3);
  read_back(UINT64_C(1) << 40, "far", 3);
  uint64_t want[] = {1, 2, 3, UINT64_C(1) << 40};
  list_is(want, 4);
  clear_dir();
}

static void test_no_reuse(void) {
  write_ok(5, "first", 5);
  err[0] = '\0';
  CHECK_INT(ds_ckpt_write(dir, 5, "second", 6, err, sizeof err), ==, -EEXIST);
  CHECK(strstr(err, "5") != NULL);
  CHECK(strstr(err, "exists") != NULL);
  read_back(5, "first", 5); /* the existing file is untouched */
  CHECK(!exists("checkpoint-00000000000000000005.tmp"));

  /* A temp file left by a crash while writing generation 6 does not stop generation 6. */
  touch("checkpoint-00000000000000000006.tmp", "half a checkpoint");
  write_ok(6, "sixth", 5);
  read_back(6, "sixth", 5);
  CHECK(!exists("checkpoint-00000000000000000006.tmp"));
  clear_dir();
}

static void test_list(void) {
  list_is(NULL, 0);
  uint64_t *gens = (uint64_t *)1;
  int n = -1;
  CHECK_INT(ds_ckpt_list(dir, &gens, &n, err, sizeof err), ==, 0);
  CHECK_INT(n, ==, 0);
  free(gens);

  /* Written out of order; other names in the directory are not generations. */
  write_ok(10, "x", 1);
  write_ok(3, "x", 1);
  write_ok(7, "x", 1);
  touch("checkpoint-00000000000000000011.tmp", "leftover");
  touch("checkpoint-abc", "not a generation");
  touch("checkpoint-00000000000000000012.bak", "not a generation");
  touch("notes.txt", "unrelated");
  uint64_t want[] = {3, 7, 10};
  list_is(want, 3);

  /* A directory that is not there: an error naming it. */
  char missing[128];
  snprintf(missing, sizeof missing, "%s/no-such-dir", dir);
  gens = NULL;
  n = 5;
  err[0] = '\0';
  int rc = ds_ckpt_list(missing, &gens, &n, err, sizeof err);
  CHECK_INT(rc, ==, -ENOENT);
  CHECK(strstr(err, missing) != NULL);
  CHECK_INT(n, ==, 0);
  CHECK(gens == NULL);
  clear_dir();
}

static void test_remove_temps(void) {
  for (uint64_t g = 1; g <= 3; g++) write_ok(g, "gen", 3);
  touch("checkpoint-00000000000000000007.tmp", "leftover of a crash");
  touch("checkpoint-00000000000000000002.tmp", "an older leftover");
  touch("keep-me.txt", "unrelated");
  touch("checkpoint-00000000000000000009", "damaged: not ours to delete");
  CHECK_INT(ds_ckpt_remove_temps(dir, err, sizeof err), ==, 0);
  uint64_t want[] = {1, 2, 3, 9};
  list_is(want, 4); /* generations, readable or not, are the caller's to delete */
  CHECK(!exists("checkpoint-00000000000000000007.tmp"));
  CHECK(!exists("checkpoint-00000000000000000002.tmp"));
  CHECK(exists("keep-me.txt"));
  for (uint64_t g = 1; g <= 3; g++) read_back(g, "gen", 3);
  char missing[128];
  snprintf(missing, sizeof missing, "%s/no-such-dir", dir);
  CHECK_INT(ds_ckpt_remove_temps(missing, err, sizeof err), ==, -ENOENT);
  CHECK(strstr(err, missing) != NULL);
  clear_dir();
}

/* A stamp changes when the file is rewritten or replaced, so a file checked once is read
 * again only then. */
static void test_stamp(void) {
  char path[256], a[128], b[128], c[128];
  path_of(path, sizeof path, 1);
  write_ok(1, "payload", 7);
  CHECK_INT(ds_ckpt_check(path, a, sizeof a, err, sizeof err), ==, 0);
  CHECK_INT(ds_ckpt_stamp(path, b, sizeof b, err, sizeof err), ==, 0);
  CHECK_STR(a, b);
  size_t len;
  char *raw = slurp(path, &len);
  usleep(20000);
  raw[len - 1] ^= 0x01; /* the same size, changed in place */
  check_write_file(path, raw, len);
  CHECK_INT(ds_ckpt_stamp(path, c, sizeof c, err, sizeof err), ==, 0);
  CHECK(strcmp(a, c) != 0);
  CHECK_INT(ds_ckpt_check(path, c, sizeof c, err, sizeof err), ==, -EINVAL);
  CHECK(strstr(err, "checksum") != NULL);
  free(raw);
  CHECK_INT(ds_ckpt_stamp(dir, c, sizeof c, err, sizeof err), ==, 0); /* any file has one */
  char missing[256];
  path_of(missing, sizeof missing, 42);
  CHECK_INT(ds_ckpt_stamp(missing, c, sizeof c, err, sizeof err), ==, -ENOENT);
  CHECK(strstr(err, missing) != NULL);
  clear_dir();
}

static void test_damage(void) {
  const char text[] = "the state of every operator, as bytes";
  size_t tl = sizeof text - 1;
  char path[256];
  path_of(path, sizeof path, 1);
  write_ok(1, text, tl);
  size_t len;
  char *good = slurp(path, &len);
  CHECK_INT(len, ==, HEADER + tl);
  char *bad = malloc(len + 16);
  CHECK(bad != NULL);

  /* Truncated inside the payload, at the header's end, inside the header, empty. */
  check_write_file(path, good, len - 1);
  read_fails(path, -EINVAL, "truncated");
  check_write_file(path, good, HEADER + 5);
  read_fails(path, -EINVAL, "truncated");
  check_write_file(path, good, HEADER);
  read_fails(path, -EINVAL, "truncated");
  check_write_file(path, good, 10);
  read_fails(path, -EINVAL, "truncated");
  check_write_file(path, good, 0);
  read_fails(path, -EINVAL, "truncated");

  /* Trailing bytes. */
  memcpy(bad, good, len);
  memcpy(bad + len, "junk", 4);
  check_write_file(path, bad, len + 4);
  read_fails(path, -EINVAL, "length mismatch");

  /* One flipped bit anywhere in the payload: the checksum catches it. */
  for (size_t at = HEADER; at < len; at += 7) {
    memcpy(bad, good, len);
    bad[at] ^= 0x01;
    check_write_file(path, bad, len);
    read_fails(path, -EINVAL, "checksum");
  }
  /* ... and in the stored checksum itself. */
  memcpy(bad, good, len);
  bad[13] ^= 0x80;
  check_write_file(path, bad, len);
  read_fails(path, -EINVAL, "checksum");

  /* A wrong magic (another file named like a checkpoint). */
  memcpy(bad, good, len);
  bad[0] = 'X';
  check_write_file(path, bad, len);
  read_fails(path, -EINVAL, "magic");
  memcpy(bad, good, len);
  bad[7] = '2';
  check_write_file(path, bad, len);
  read_fails(path, -EINVAL, "magic");

  /* An unknown format version: the message says which, and which this dstream reads. */
  memcpy(bad, good, len);
  uint32_t v = DS_CKPT_VERSION + 1;
  memcpy(bad + 8, &v, 4);
  check_write_file(path, bad, len);
  char words[96];
  snprintf(words, sizeof words, "unknown format version %u (this dstream reads version %d)",
           (unsigned)v, DS_CKPT_VERSION);
  read_fails(path, -EINVAL, words);

  /* A length field that does not match the file. */
  memcpy(bad, good, len);
  uint64_t l = tl + 1;
  memcpy(bad + 24, &l, 8);
  check_write_file(path, bad, len);
  read_fails(path, -EINVAL, "length mismatch");

  /* Put back whole, it reads again. */
  check_write_file(path, good, len);
  read_back(1, text, tl);

  /* A file that is not there. */
  char missing[256];
  path_of(missing, sizeof missing, 99);
  read_fails(missing, -ENOENT, "cannot open");

  free(bad);
  free(good);
  clear_dir();
}

static void test_write_errors(void) {
  /* A directory that does not exist: the error names the temp file and the reason. */
  char missing[128];
  snprintf(missing, sizeof missing, "%s/no-such-dir", dir);
  err[0] = '\0';
  int rc = ds_ckpt_write(missing, 1, "x", 1, err, sizeof err);
  CHECK_INT(rc, ==, -ENOENT);
  CHECK(strstr(err, missing) != NULL);
  CHECK(strstr(err, "checkpoint-00000000000000000001.tmp") != NULL);
  CHECK(strstr(err, strerror(ENOENT)) != NULL);

  /* The "directory" is a file. */
  touch("plain-file", "x");
  char notdir[128];
  snprintf(notdir, sizeof notdir, "%s/plain-file", dir);
  err[0] = '\0';
  rc = ds_ckpt_write(notdir, 1, "x", 1, err, sizeof err);
  CHECK_INT(rc, ==, -ENOTDIR);
  CHECK(strstr(err, notdir) != NULL);

  /* A temp name taken by a directory (which unlink cannot remove): a clear error, and the
   * generations already there stay as they were. */
  write_ok(1, "one", 3);
  char blocker[256];
  snprintf(blocker, sizeof blocker, "%s/checkpoint-00000000000000000002.tmp", dir);
  CHECK_INT(mkdir(blocker, 0700), ==, 0);
  err[0] = '\0';
  rc = ds_ckpt_write(dir, 2, "two", 3, err, sizeof err);
  CHECK(rc < 0);
  CHECK(strstr(err, blocker) != NULL);
  CHECK_INT(rmdir(blocker), ==, 0);
  uint64_t want[] = {1};
  list_is(want, 1);
  read_back(1, "one", 3);

  /* A tiny error buffer is still a terminated string. */
  char small[8];
  memset(small, 'x', sizeof small);
  CHECK_INT(ds_ckpt_write(dir, 1, "again", 5, small, sizeof small), ==, -EEXIST);
  CHECK(memchr(small, '\0', sizeof small) != NULL);
  clear_dir();
}

int main(void) {
  check_temp_dir(dir, sizeof dir, "ds_ckpt");
  test_crc32();
  test_round_trip();
  test_no_reuse();
  test_list();
  test_remove_temps();
  test_stamp();
  test_damage();
  test_write_errors();
  check_remove_tree(dir);
  printf("test_ckpt: ok\n");
  return 0;
}
