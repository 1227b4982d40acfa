# spec/e2e/lib/postgres.bash: a real PostgreSQL server for a test (sourced after common.bash).
#
# pg_start: initdb into a temporary directory and start Debian's postgresql-15 server on
# 127.0.0.1 and a free port, its unix socket in that directory; stopped (and removed) at exit.
# As root (CI) the server runs as the `postgres` user, since it refuses to run as root.
# Gives $PG_PORT, $PG_URL (postgresql://postgres@127.0.0.1:PORT/dstream), psql_q SQL (one
# value per line, unaligned), pg_stop_server / pg_start_server (the same data directory) and
# $PG_OK (0 when no server could be started: the caller skips).
PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
PG_DIR=
PG_PORT=
PG_URL=
PG_OK=0

pg_as() { # run a command as the server's user, from its directory (the caller's may be closed to it)
  if [ "$(id -u)" -eq 0 ]; then (cd "$PG_DIR" && runuser -u postgres -- "$@"); else "$@"; fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

pg_start_server() {
  pg_as "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w -t 30 \
    -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1" start >/dev/null
}

pg_stop_server() { # pg_stop_server [mode]: fast (default) or immediate
  pg_as "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m "${1:-fast}" -w -t 30 stop >/dev/null 2>&1
}

pg_cleanup() {
  if [ -n "$PG_DIR" ] && [ -d "$PG_DIR" ]; then
    pg_stop_server immediate
    rm -rf "$PG_DIR"
  fi
}

psql_q() {
  psql -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d dstream -c "$1"
}

pg_start() {
  if [ -z "$PG_BIN" ] || [ ! -x "$PG_BIN/initdb" ] || ! command -v psql >/dev/null; then
    echo "# no PostgreSQL server binaries (Debian package postgresql)"
    return 1
  fi
  if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
    echo "# no postgres user to run the server as"
    return 1
  fi
  PG_DIR=$(mktemp -d /tmp/dstream-pg.XXXXXX)
  trap 'pg_cleanup; e2e_cleanup' EXIT
  [ "$(id -u)" -eq 0 ] && chown postgres "$PG_DIR"
  if ! pg_as "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres -A trust -E UTF8 --no-locale >"$PG_DIR/initdb.log" 2>&1; then
    show initdb "$PG_DIR/initdb.log"
    return 1
  fi
  PG_PORT=$(free_port)
  if ! pg_start_server; then
    show "postgres log" "$PG_DIR/log"
    return 1
  fi
  psql -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -c "CREATE DATABASE dstream" >/dev/null || return 1
  PG_URL="postgresql://postgres@127.0.0.1:$PG_PORT/dstream"
  PG_OK=1
}
