/* ds_log.h - leveled diagnostics on stderr for conditions that are not errors of a call
 * (a receiver reconnecting, a file skipped), one line each: `dstream: HH:MM:SS.mmm level: ...`. Errors of a call are returned, never logged
 * from below main. The level is process-wide and set once from the command line. */
#ifndef DS_LOG_H
#define DS_LOG_H

enum { DS_LOG_ERROR = 0, DS_LOG_WARN = 1, DS_LOG_INFO = 2, DS_LOG_DEBUG = 3 };

void ds_log_set_level(int level);
int ds_log_get_level(void);
/* Parses "error", "warn", "info", "debug"; returns -1 for anything else. */
int ds_log_parse_level(const char *name);
void ds_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
