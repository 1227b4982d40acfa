/* ds_main.c - the dstream interpreter: luajit's command line plus dstream's options. */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <luajit.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ds_kafka_mock.h"
#include "ds_log.h"
#include "ds_lua.h"
#include "ds_paths.h"
#include "ds_version.h"
#include "ds_pool.h"
#include "ds_vm.h"

static const char *progname = "dstream";

/* A size as --worker-memory takes it: "4g", "1m", else kilobytes rounded up. */
static void format_size(char *buf, size_t n, size_t bytes) {
  if (bytes % ((size_t)1 << 30) == 0)
    snprintf(buf, n, "%zug", bytes >> 30);
  else if (bytes % (1024 * 1024) == 0)
    snprintf(buf, n, "%zum", bytes / (1024 * 1024));
  else
    snprintf(buf, n, "%zuk", (bytes + 1023) / 1024);
}

static void usage(FILE *out) {
  char memory[32];
  format_size(memory, sizeof memory, DS_VM_DEFAULT_MEMORY);
  fprintf(out,
          "usage: %s [options] [script [args...]]\n"
          "Runs a dstream job written in Lua; with no script, opens the interactive prompt.\n"
          "\n"
          "  -e chunk            run the Lua code in chunk\n"
          "  -l name             require library 'name' (as a global of that name)\n"
          "  -i                  stay interactive after running the script\n"
          "  -j cmd              LuaJIT control, in the driver and every worker (-jv, -jdump,\n"
          "                      -joff); see luajit -h\n"
          "  -O[opt]             LuaJIT optimiser flags, in the driver and every worker\n"
          "  -                   read the script from standard input\n"
          "  --                  stop handling options\n"
          "  --workers N         worker threads (default: the number of cores); every option\n"
          "                      with a value takes --name=value too\n"
          "  --worker-memory S   Lua memory limit of each worker, e.g. 512m, 2g (default %s)\n"
          "  --partitions N      default partitions of a batch (default: the number of workers)\n"
          "  --checkpoint DIR    checkpoint into DIR (made if missing; its parent must exist),\n"
          "                      and restart from it when it has one\n"
          "  --cluster APP       cluster mode: this process is one member of job APP, whose\n"
          "                      Kafka inputs it shares with every process run so (consumer\n"
          "                      group APP); as context{ cluster = \"APP\" }\n"
          "  --log-level L       error, warn, info or debug (default: warn)\n"
          "  --ui ADDR           serve metrics and a live page at ADDR, e.g. 127.0.0.1:4040\n"
          "  --ui-public         let --ui listen on an address other machines can reach\n"
          "  -v                  print the version and go on (as luajit -v)\n"
          "  --version           print the version and exit\n"
          "  -h, --help          print this help and exit\n"
          "\n"
          "Options given here are defaults: a job's dstream.context{...} settings win.\n"
          "`dstream kafka-mock --help`: an embedded Kafka broker for tests and examples.\n",
          progname, memory);
}

/* Runs the function on top of the stack with a traceback handler; prints errors. */
static int report_call(lua_State *L, int nargs, int nres) {
  int base = lua_gettop(L) - nargs;
  lua_getglobal(L, "require");
  lua_pushstring(L, "dstream.cli");
  if (lua_pcall(L, 1, 1, 0) != 0) {
    fprintf(stderr, "%s: %s\n", progname, lua_tostring(L, -1));
    lua_pop(L, 1);
    lua_pushnil(L); /* run without the error formatter */
  } else {
    lua_getfield(L, -1, "error_handler");
    lua_remove(L, -2);
  }
  lua_insert(L, base);
  int rc = lua_pcall(L, nargs, nres, lua_isnil(L, base) ? 0 : base);
  lua_remove(L, base);
  if (rc != 0) {
    const char *msg = lua_tostring(L, -1);
    if (!lua_isnil(L, -1))
      fprintf(stderr, "%s: %s\n", progname, msg ? msg : "(error object is not a string)");
    lua_pop(L, 1);
  }
  return rc;
}

/* Records `--k v` in the options Lua reads (dstream.options). */
static void set_cli_field_string(lua_State *L, const char *k, const char *v) {
  ds_lua_push_cli_options(L);
  lua_pushstring(L, v);
  lua_setfield(L, -2, k);
  lua_pop(L, 1);
}

static void add_jit_command(lua_State *L, const char *cmd) {
  ds_lua_push_cli_options(L);
  lua_getfield(L, -1, "jit");
  lua_pushstring(L, cmd);
  lua_rawseti(L, -2, (int)lua_objlen(L, -2) + 1);
  lua_pop(L, 2);
}

/* Checks the command line's option `name` (its long name) through dstream.cli's
 * check_option, so a bad value is reported before any code runs, whether or not the script
 * makes a context, in the words the context would use. Returns 0 when accepted (a warning is
 * logged), 1 after printing why not. */
static int check_option(lua_State *L, const char *name, const char *val) {
  lua_getglobal(L, "require");
  lua_pushstring(L, "dstream.cli");
  if (lua_pcall(L, 1, 1, 0) != 0) {
    fprintf(stderr, "%s: %s\n", progname, lua_tostring(L, -1));
    lua_pop(L, 1);
    return 1;
  }
  lua_getfield(L, -1, "check_option");
  lua_remove(L, -2);
  lua_pushstring(L, name);
  lua_pushstring(L, val);
  if (lua_pcall(L, 2, 2, 0) != 0) {
    fprintf(stderr, "%s: --%s: %s\n", progname, name, lua_tostring(L, -1));
    lua_pop(L, 1);
    return 1;
  }
  int refused = lua_isnil(L, -2);
  if (refused) {
    const char *why = lua_tostring(L, -1);
    if (!why) why = "refused";
    if (strncmp(why, val, strlen(val)) == 0) /* "1k is too small: ..." names the value */
      fprintf(stderr, "%s: --%s %s\n", progname, name, why);
    else
      fprintf(stderr, "%s: --%s %s: %s\n", progname, name, val, why);
  } else if (lua_isstring(L, -1)) {
    ds_log(DS_LOG_WARN, "--%s %s", name, lua_tostring(L, -1));
  }
  lua_pop(L, 2);
  return refused;
}

/* Applies one -j or -O command to the driver now (workers replay the list at boot). */
static int apply_jit(lua_State *L, const char *cmd) {
  add_jit_command(L, cmd);
  lua_getglobal(L, "require");
  lua_pushstring(L, "dstream.cli");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "apply_jit");
  lua_remove(L, -2);
  lua_pushstring(L, cmd);
  return report_call(L, 1, 0);
}

static void build_arg_table(lua_State *L, char **argv, int argc, int script) {
  lua_createtable(L, argc - script, script + 1);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - script);
  }
  lua_setglobal(L, "arg");
}

static int run_repl(lua_State *L) {
  lua_getglobal(L, "require");
  lua_pushstring(L, "dstream.repl");
  if (report_call(L, 1, 1) != 0) return 1;
  lua_getfield(L, -1, "run");
  lua_remove(L, -2);
  return report_call(L, 0, 0) != 0;
}

/* The script ended without an error and no prompt follows: dstream.cli's hint about contexts
 * it left running. */
static void script_returned(lua_State *L) {
  lua_getglobal(L, "require");
  lua_pushstring(L, "dstream.cli");
  if (lua_pcall(L, 1, 1, 0) != 0) {
    lua_pop(L, 1);
    return;
  }
  lua_getfield(L, -1, "script_returned");
  lua_remove(L, -2);
  report_call(L, 0, 0);
}

static int finish(lua_State *L, int status) {
  /* Stop contexts the script left running, so worker threads end before the state does. */
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "loaded");
  lua_getfield(L, -1, "dstream");
  if (lua_istable(L, -1)) {
    lua_getfield(L, -1, "shutdown");
    if (lua_isfunction(L, -1)) {
      if (report_call(L, 0, 0) != 0) status = 1;
    } else {
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 3);
  return status;
}

/* Options that take a value: `--name value` or `--name=value`. */
static const char *const value_options[] = {"workers", "worker-memory", "partitions",
                                             "log-level", "ui", "checkpoint", "cluster",
                                             NULL};

static int is_value_option(const char *name, size_t len) {
  for (int k = 0; value_options[k]; k++)
    if (strlen(value_options[k]) == len && strncmp(value_options[k], name, len) == 0) return 1;
  return 0;
}

static void print_version(void) {
  /* "patched": linked with scripts/luajit.sh's build (patches/luajit/). */
  printf("dstream %s (%s, %s)\n", DS_VERSION, LUAJIT_VERSION,
         strcmp(DS_LUAJIT_BUILD, "patched") == 0 ? "dstream's build: 4096 hot counters"
                                                : "the system's");
  fflush(stdout);
}

/* Runs -e, -l, -j and -O in the order given (the second pass over the options). Returns 0,
 * or 1 after an error was printed. */
static int run_code_options(lua_State *L, char **argv, int end, int *ran_code) {
  for (int i = 1; i < end; i++) {
    const char *a = argv[i];
    if (a[0] != '-' || a[1] == '-' || !strchr("eljO", a[1])) {
      if (a[0] == '-' && a[1] == '-' && a[2] && !strchr(a, '=') && is_value_option(a + 2, strlen(a + 2)))
        i++; /* its value */
      continue;
    }
    if (a[1] == 'O') {
      if (apply_jit(L, a + 1) != 0) return 1;
      continue;
    }
    const char *val = a[2] ? a + 2 : argv[++i];
    if (a[1] == 'e') {
      *ran_code = 1;
      if (luaL_loadbuffer(L, val, strlen(val), "=(command line)") != 0) {
        fprintf(stderr, "%s: %s\n", progname, lua_tostring(L, -1));
        return 1;
      }
      if (report_call(L, 0, 0) != 0) return 1;
    } else if (a[1] == 'l') {
      lua_getglobal(L, "require");
      lua_pushstring(L, val);
      if (report_call(L, 1, 1) != 0) return 1;
      lua_setglobal(L, val);
    } else if (apply_jit(L, val) != 0) {
      return 1;
    }
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argv[0] && argv[0][0]) {
    const char *slash = strrchr(argv[0], '/');
    progname = slash ? slash + 1 : argv[0];
  }
  signal(SIGPIPE, SIG_IGN); /* a closed socket is an error return, not a dead process */
  /* `dstream kafka-mock ...` runs an embedded Kafka cluster instead of a job. */
  if (argc > 1 && strcmp(argv[1], "kafka-mock") == 0) return ds_kafka_mock_main(argc - 1, argv + 1);

  ds_vm vm;
  if (ds_vm_open(&vm, 0) != 0) {
    fprintf(stderr, "%s: cannot create a Lua state (out of memory)\n", progname);
    return 1;
  }
  lua_State *L = vm.L;
  int status = 0, interactive = 0, ran_code = 0, script = 0, shown_version = 0;
  /* First pass, as luajit's collectargs: every option is read and every value checked before
   * any code runs, so a bad value is reported at start whatever the script does. */
  int i = 1;
  for (; i < argc; i++) {
    const char *a = argv[i];
    if (a[0] != '-' || strcmp(a, "-") == 0) break;
    if (strcmp(a, "--") == 0) {
      i++;
      break;
    }
    const char *next = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      usage(stdout);
      return 0;
    } else if (strcmp(a, "--version") == 0) {
      print_version();
      return 0;
    } else if (strcmp(a, "-v") == 0) {
      print_version(); /* and go on, as luajit -v; alone, it does not open the prompt */
      shown_version = 1;
    } else if (strcmp(a, "-i") == 0) {
      interactive = 1;
    } else if (strcmp(a, "--ui-public") == 0) {
      set_cli_field_string(L, "ui-public", "true");
    } else if (strncmp(a, "-e", 2) == 0 || strncmp(a, "-l", 2) == 0 ||
               strncmp(a, "-j", 2) == 0) {
      if (!a[2] && !next) {
        fprintf(stderr, "%s: '%s' needs an argument\n", progname, a);
        return 1;
      }
      if (a[1] == 'e') ran_code = 1;
      if (!a[2]) i++;
    } else if (strncmp(a, "-O", 2) == 0) {
      /* run in the second pass */
    } else if (a[1] == '-' && is_value_option(a + 2, strcspn(a + 2, "="))) {
      char name[32];
      size_t len = strcspn(a + 2, "=");
      snprintf(name, sizeof name, "%.*s", (int)len, a + 2);
      const char *val = a[2 + len] == '=' ? a + 3 + len : next;
      if (!val) {
        fprintf(stderr, "%s: '%s' needs a value\n", progname, a);
        return 1;
      }
      if (a[2 + len] != '=') i++;
      if (strcmp(name, "log-level") == 0) {
        int level = ds_log_parse_level(val);
        if (level < 0) {
          fprintf(stderr, "%s: --log-level takes error, warn, info or debug, not '%s'\n",
                  progname, val);
          return 1;
        }
        ds_log_set_level(level);
      }
      set_cli_field_string(L, name, val); /* read by dstream.options */
    } else {
      fprintf(stderr, "%s: unknown option '%s' (try --help)\n", progname, a);
      return 1;
    }
  }
  int options_end = i;
  if (i < argc) script = i;
  /* Values are checked once all are known (--ui-public may follow --ui). */
  for (int k = 0; value_options[k]; k++) {
    ds_lua_push_cli_options(L);
    lua_getfield(L, -1, value_options[k]);
    const char *val = lua_tostring(L, -1);
    int bad = val && check_option(L, value_options[k], val) != 0;
    lua_pop(L, 2);
    if (bad) return finish(L, 1);
  }
  if (interactive) {
    /* The prompt follows: loaded now, so contexts the script starts draw no status line. */
    lua_getglobal(L, "require");
    lua_pushstring(L, "dstream.repl");
    if (report_call(L, 1, 0) != 0) return finish(L, 1);
  }
  build_arg_table(L, argv, argc, script ? script : argc);
  int code_rc = run_code_options(L, argv, options_end, &ran_code);
  if (code_rc != 0) return finish(L, 1);

  if (script) {
    const char *name = argv[script];
    int rc = strcmp(name, "-") == 0 ? luaL_loadfile(L, NULL) : luaL_loadfile(L, name);
    if (rc != 0) {
      fprintf(stderr, "%s: %s\n", progname, lua_tostring(L, -1));
      return finish(L, 1);
    }
    int nargs = argc - script - 1;
    luaL_checkstack(L, nargs, "too many arguments");
    for (int k = script + 1; k < argc; k++) lua_pushstring(L, argv[k]);
    status = report_call(L, nargs, 0) != 0;
  }
  if (!status && (interactive || (!script && !ran_code && !shown_version))) {
    if (!interactive && !script && !ran_code && !isatty(0)) {
      /* `dstream < job.lua`, like luajit: the script comes from standard input. */
      if (luaL_loadfile(L, NULL) != 0) {
        fprintf(stderr, "%s: %s\n", progname, lua_tostring(L, -1));
        return finish(L, 1);
      }
      status = report_call(L, 0, 0) != 0;
      if (!status) script_returned(L);
    } else {
      status = run_repl(L);
    }
  } else if (!status) {
    script_returned(L);
  }
  status = finish(L, status);
  ds_vm_close(&vm);
  return status;
}
