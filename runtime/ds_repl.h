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
 * Lua sees the module as core.repl_* functions (ds_lua_open_repl); a line, end of input and
 * completion requests are calls into Lua made on the Lua thread running core.run(). */
#ifndef DS_REPL_H
#define DS_REPL_H

#include <lua.h>

/* How input is read. */
typedef enum ds_repl_mode {
  DS_REPL_TTY = 1,  /* a terminal: libedit, history, completion, output above the prompt */
  DS_REPL_PIPE = 2, /* a pipe or socket: lines read on the loop as they arrive */
  DS_REPL_FILE = 3, /* anything that cannot be polled (a regular file): blocking reads */
} ds_repl_mode;

/* Registers core.repl_open, repl_read, repl_cancel, repl_add_history, repl_columns and
 * repl_close into the table on top of the stack (the dstream.core module). */
void ds_lua_open_repl(lua_State *L);

#endif
