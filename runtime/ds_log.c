/* ds_log.c - leveled diagnostics on stderr, one line per message. */
#include "ds_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static int log_level = DS_LOG_WARN;
static const char *level_names[] = {"error", "warn", "info", "debug"};

void ds_log_set_level(int level) { log_level = level; }
int ds_log_get_level(void) { return log_level; }

int ds_log_parse_level(const char *name) {
  for (int i = 0; i < 4; i++)
    if (strcmp(name, level_names[i]) == 0) return i;
  return -1;
}

void ds_log(int level, const char *fmt, ...) {
  if (level > log_level) return;
  char line[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  /* The local time of day to the millisecond, as Spark's and Flink's logs carry one: when a
   * receiver reconnected or a job fell behind is part of the message. */
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  localtime_r(&ts.tv_sec, &tm);
  /* One fprintf per line so lines from different threads do not interleave. */
  fprintf(stderr, "dstream: %02d:%02d:%02d.%03ld %s: %s\n", tm.tm_hour, tm.tm_min, tm.tm_sec,
          ts.tv_nsec / 1000000, level_names[level], line);
}
