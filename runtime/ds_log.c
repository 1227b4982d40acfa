/* ds_log.c - leveled diagnostics on stderr, one line per message. */
#include "ds_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

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
  /* One fprintf per line so lines from different threads do not interleave. */
  fprintf(stderr, "dstream: %s: %s\n", level_names[level], line);
}
