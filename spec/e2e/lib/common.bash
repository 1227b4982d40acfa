# spec/e2e/lib/common.bash: shared helpers of the end-to-end tests (sourced, never run alone).
#
# Gives: $DSTREAM (absolute), $ROOT (the checkout), $WORK (a temp dir removed at exit), TAP
# output (ok, not_ok, check, finish), bounded polling (wait_until), background processes that
# are always ended at exit (bg, stop_bg), and loopback TCP servers on a free port (serve_file).

set -u
export LC_ALL=C
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
DSTREAM=${DSTREAM:-$ROOT/build/dstream}
case "$DSTREAM" in /*) ;; *) DSTREAM=$(pwd)/$DSTREAM ;; esac
if [ ! -x "$DSTREAM" ]; then
  echo "not ok - dstream executable not found at $DSTREAM"
  exit 1
fi
JOBS=$ROOT/spec/e2e/jobs
WORK=$(mktemp -d "${TMPDIR:-/tmp}/dstream-e2e.XXXXXX")
E2E_FAILED=0
E2E_PIDS=()

e2e_cleanup() {
  local pid
  for pid in "${E2E_PIDS[@]+"${E2E_PIDS[@]}"}"; do
    kill -KILL "$pid" 2>/dev/null
  done
  for pid in "${E2E_PIDS[@]+"${E2E_PIDS[@]}"}"; do
    wait "$pid" 2>/dev/null
  done
  if [ -n "${E2E_KEEP:-}" ]; then # E2E_KEEP=1: the work directory stays, for a post-mortem
    echo "# kept $WORK"
    return
  fi
  case "$WORK" in /tmp/*|"${TMPDIR:-/tmp}"/*) rm -rf "$WORK" ;; esac
}
trap e2e_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ok() { echo "ok - $*"; }
not_ok() {
  echo "not ok - $*"
  E2E_FAILED=$((E2E_FAILED + 1))
}
# check DESCRIPTION COMMAND...: ok when the command succeeds.
check() {
  local desc=$1
  shift
  if "$@"; then ok "$desc"; else not_ok "$desc"; fi
}
# Shows a file's tail on stderr-like diagnostics lines (TAP comments).
show() { # show LABEL FILE
  echo "# --- $1 ---"
  tail -n "${3:-15}" "$2" 2>/dev/null | sed 's/^/#   /'
}
finish() {
  [ "$E2E_FAILED" -eq 0 ]
  exit $?
}

# wait_until SECONDS COMMAND...: polls the command every 0.1 s; fails after SECONDS.
wait_until() {
  local limit=$1
  shift
  local deadline=$((SECONDS + limit))
  while ! "$@"; do
    [ "$SECONDS" -ge "$deadline" ] && return 1
    sleep 0.1
  done
  return 0
}

# steady WANT SECONDS COMMAND...: for wait_until: the number COMMAND prints is WANT or more and
# has stayed the same for SECONDS (a count that must stop growing; STEADY_LAST, STEADY_SINCE).
STEADY_LAST=-1
STEADY_SINCE=0
steady() {
  local want=$1 secs=$2 now
  shift 2
  now=$("$@")
  if [ "$now" -ge "$want" ] && [ "$now" = "$STEADY_LAST" ]; then
    [ $((SECONDS - STEADY_SINCE)) -ge "$secs" ]
  else
    STEADY_LAST=$now STEADY_SINCE=$SECONDS
    return 1
  fi
}

# bg COMMAND...: runs the command in the background; its pid is in $BG_PID and it is killed
# at exit if it is still running.
bg() {
  "$@" &
  BG_PID=$!
  E2E_PIDS+=("$BG_PID")
}
alive() { kill -0 "$1" 2>/dev/null; }
# forget_pid PID: a process that was waited for is no longer one to kill at exit.
forget_pid() {
  local keep=() p
  for p in "${E2E_PIDS[@]+"${E2E_PIDS[@]}"}"; do [ "$p" != "$1" ] && keep+=("$p"); done
  E2E_PIDS=("${keep[@]+"${keep[@]}"}")
}
ms_now() { date +%s%3N; }
# release_only: ends a long crash test with a skip under the sanitizer build (CI runs every e2e
# file under both builds; these add minutes there and no coverage).
release_only() {
  case "$DSTREAM" in
  *build-asan*)
    ok "# SKIP $(basename "$0") runs on the release build only"
    exit 0
    ;;
  esac
}
# require_commands NAME...: a suite that needs programs nobody here wrote (kcat, curl) fails
# at once, saying which to install, when one is missing (scripts/setup.sh installs them).
require_commands() {
  local c
  for c in "$@"; do
    command -v "$c" >/dev/null || { echo "not ok - $c is not installed (apt-get install $c)"; exit 1; }
  done
}
# saved_outputs PREFIX: "<directory> <line>" for every line in the save_as_text_files output
# directories PREFIX-* now (what a reader of the outputs sees at this moment).
saved_outputs() {
  local d
  for d in "$1"-*; do
    [ -d "$d" ] && cat "$d"/part-* 2>/dev/null | sed "s|^|$(basename "$d") |"
  done
  return 0
}
sleep_ms() { sleep "$(printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)))"; }
# move_in FILE DIR: moves a copy of FILE into DIR the safe way for a text_file_stream (written
# under a dot name, then renamed).
move_in() {
  local name
  name=$(basename "$1")
  cat "$1" >"$2/.$name.writing" && mv "$2/.$name.writing" "$2/$name"
}
# wait_exit PID SECONDS: waits for a background process to end; its status is in $EXIT_STATUS
# (124 if it did not end in time: it is then killed).
wait_exit() {
  local timed_out=0
  if ! wait_until "$2" eval '! alive '"$1"; then
    timed_out=1
    kill -KILL "$1" 2>/dev/null
  fi
  wait "$1" 2>/dev/null
  EXIT_STATUS=$?
  [ "$timed_out" -eq 1 ] && EXIT_STATUS=124
  return 0
}

# listening PORT: true when something listens on 127.0.0.1:PORT (or any address) over TCP.
listening() {
  local hex
  hex=$(printf '%04X' "$1")
  awk -v p=":$hex" 'NR > 1 && $4 == "0A" && substr($2, length($2) - 4) == p { f = 1 } END { exit !f }' \
    /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# serve_file FILE [PORT]: starts `nc -l 127.0.0.1 PORT < FILE` (one connection; nc closes it
# after sending the file). Without PORT, tries random free ports. Sets $PORT and $SERVER_PID.
serve_file() {
  local file=$1 want=${2:-} try port
  for try in $(seq 1 40); do
    port=${want:-$((20000 + (RANDOM * 32768 + RANDOM) % 40000))}
    if [ -z "$want" ] && listening "$port"; then continue; fi
    nc -q 0 -l 127.0.0.1 "$port" <"$file" >/dev/null 2>&1 &
    SERVER_PID=$!
    E2E_PIDS+=("$SERVER_PID")
    # Up when it listens; a client may also have been served already (nc then exits 0),
    # while a port in use makes nc fail at once.
    if wait_until 5 eval 'listening '"$port"' || ! alive '"$SERVER_PID"; then
      if alive "$SERVER_PID"; then
        PORT=$port
        return 0
      fi
      wait "$SERVER_PID" 2>/dev/null && { PORT=$port; return 0; }
    else
      kill "$SERVER_PID" 2>/dev/null
      wait "$SERVER_PID" 2>/dev/null
    fi
    [ -n "$want" ] && sleep 0.2 # the same port: it may still be held for a moment
  done
  echo "# cannot start a server with nc"
  return 1
}

# crash_seed: the seed of a crash suite's random input and kill times, CRASH_SEED or a new
# one, printed (so a failing run can be reproduced) and given to $RANDOM; KILLS: CRASH_KILLS or
# the 20 kills a crash suite makes by default.
crash_seed() {
  KILLS=${CRASH_KILLS:-20}
  seed=${CRASH_SEED:-$RANDOM}
  echo "# seed $seed (CRASH_SEED=$seed reproduces the input and the kill times)"
  RANDOM=$seed
}

# numbered_files DIR COUNT PREFIX SEED SPAN WORDS: COUNT files of 20..20+SPAN lines, each line
# its file's name and number followed by up to WORDS-1 words (deterministic for SEED); every
# line is unique, so a line read twice or lost shows by name (the crash tests' input).
numbered_files() {
  awk -v dir="$1" -v n="$2" -v prefix="$3" -v seed="$4" -v span="$5" -v words="$6" 'BEGIN {
    srand(seed)
    split("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike " \
          "november oscar papa quebec romeo sierra tango uniform victor whiskey xray", v, " ")
    for (i = 1; i <= n; i++) {
      f = sprintf("%s/%s%04d.txt", dir, prefix, i)
      lines = 20 + int(rand() * span)
      for (l = 1; l <= lines; l++) {
        line = sprintf("%s%04d-%d", prefix, i, l)
        k = int(rand() * words)
        for (j = 1; j <= k; j++) line = line " " v[1 + int(rand() * 24)]
        print line > f
      }
      close(f)
    }
  }'
}

# word_counts FILE...: "word count" lines, sorted, like a reference wordcount would give.
word_counts() {
  local f
  for f in "$@"; do cat "$f"; echo; done | tr -s ' \t' '\n\n' | grep -v '^$' | sort | uniq -c | awk '{ print $2, $1 }' | sort
}

# make_text SEED LINES FILE: deterministic lines of words (no empty lines: kcat skips them).
make_text() {
  awk -v seed="$1" -v n="$2" 'BEGIN {
    srand(seed)
    split("the a stream batch window kafka broker partition offset record key value " \
          "topic group commit lag worker driver block state time", v, " ")
    for (i = 1; i <= n; i++) {
      k = 1 + int(rand() * 9)
      line = ""
      for (j = 1; j <= k; j++) {
        w = (rand() < 0.2) ? ("w" int(rand() * 300)) : v[1 + int(rand() * 21)]
        line = line (j > 1 ? " " : "") w
      }
      print line
    }
  }' >"$3"
}

# start_kafka_mock ARGS...: the embedded broker (`dstream kafka-mock ARGS`) in its own process,
# commands through the FIFO $WORK/mockctl (fd 3 keeps its stdin open). Sets MOCK_PID and BOOT
# (its bootstrap address), or ends the file when none is printed within 10 s.
start_kafka_mock() {
  mkfifo "$WORK/mockctl"
  exec 3<>"$WORK/mockctl"
  # Not through bg: a background command's stdin is /dev/null unless redirected on the spot.
  "$DSTREAM" kafka-mock "$@" <"$WORK/mockctl" >"$WORK/mock.out" 2>"$WORK/mock.err" &
  MOCK_PID=$!
  E2E_PIDS+=("$MOCK_PID")
  if ! wait_until 10 eval '[ -s "$WORK/mock.out" ]'; then
    not_ok "dstream kafka-mock prints its bootstrap address"
    show stderr "$WORK/mock.err"
    finish
  fi
  BOOT=$(head -n 1 "$WORK/mock.out")
}
