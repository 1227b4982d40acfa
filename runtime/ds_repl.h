/* ds_repl.h - the terminal side of the interactive prompt (`dstream` with no script, `-i`).
 *
 * The module owns standard input and the terminal while the prompt is open (one prompt per
 * process). Input is read on the driver's libuv loop, never by blocking: on a terminal,
 * libedit's readline-compatible callback interface does line editing, history and
 * completion; from a pipe, lines are split as they come; from a regular file, reads block
 * (a file never waits). So batches keep running while the user types.
 *
 * While a prompt is on screen, the process's standard output and error (file descriptors 1
 * and 2) are redirected into a pipe drained by a helper thread; the loop writes what arrives
 * above the prompt and redraws the prompt and the half-typed line below it, so a running
 * print() operator never garbles the line being typed. While a line is being evaluated, the
 * descriptors point at the terminal again (output appears as it is written).
 *
 * The module knows nothing of Lua: dstream.core's repl_* functions (ds_lua_repl.c) call it, and
 * it calls back through ds_repl_callbacks. Every call is made on the loop's thread; callbacks
 * run there too, inside uv_run. */
#ifndef DS_REPL_H
#define DS_REPL_H

#include <stddef.h>
#include <uv.h>

/* How input is read. */
typedef enum ds_repl_mode {
  DS_REPL_TTY = 1,  /* a terminal: libedit, history, completion, output above the prompt */
  DS_REPL_PIPE = 2, /* a pipe or socket: lines read on the loop as they arrive */
  DS_REPL_FILE = 3, /* anything that cannot be polled (a regular file): blocking reads */
} ds_repl_mode;

/* What ds_repl_read found. */
enum { DS_REPL_WAIT = 0, DS_REPL_LINE = 1, DS_REPL_EOF = 2 };

typedef struct ds_repl_callbacks {
  /* A line was read (without its line end), or the input ended (line == NULL). The line is
   * valid until the callback returns. */
  void (*on_line)(void *ud, const char *line, size_t len);
  /* The completions of `word`, given the first line_len bytes of the line (up to the
   * cursor): a malloc'd array of *n malloc'd strings, which the prompt takes over; NULL for
   * none. NULL: no completion. */
  char **(*complete)(void *ud, const char *word, const char *line, size_t line_len, size_t *n);
  void *ud;
} ds_repl_callbacks;

/* Opens the prompt on standard input, reading on `loop`: a terminal unless `plain`, with
 * `history` (a file, may be NULL) loaded. 0, or -1 with the reason in err (nothing stays
 * open). */
int ds_repl_open(uv_loop_t *loop, const char *history, int plain, const ds_repl_callbacks *cb,
                 char *err, size_t errlen);
int ds_repl_is_open(void);
ds_repl_mode ds_repl_input_mode(void);
/* Asks for a line under `prompt`. Without waiting: DS_REPL_LINE with *line and *len set (valid
 * until the next call), or DS_REPL_EOF. Else DS_REPL_WAIT: the prompt is out and the line
 * comes to on_line. -1 with the reason in err. */
int ds_repl_read(const char *prompt, const char **line, size_t *len, char *err, size_t errlen);
/* Ctrl-C at the prompt: the line typed so far is dropped and `prompt` drawn afresh. Returns 1
 * if a prompt was out, else 0. */
int ds_repl_cancel(const char *prompt);
/* Takes the prompt off the screen and stops reading. */
void ds_repl_stop_reading(void);
/* Adds a line to the history (and its file), on a terminal. */
void ds_repl_add_history(const char *line);
/* The history's entry i (0: the oldest kept), or NULL past the last (TTY mode only). */
const char *ds_repl_history_entry(int i);
/* The terminal's width in columns (80 when unknown). */
int ds_repl_columns(void);
/* Ctrl-C during an evaluation: remembered until ds_repl_take_interrupt, which returns 1 once
 * after it (the action waiting for the loop then ends with "interrupted"). */
void ds_repl_interrupt(void);
int ds_repl_take_interrupt(void);
/* Closes the prompt: history written, terminal and descriptors back as they were. */
void ds_repl_close(void);

#endif
