#!/usr/bin/env bash
# spec/e2e/luarocks.sh: the README's LuaRocks install works on this machine: the command the
# README documents (extracted from it, so the two cannot drift), run in a copy of the checkout
# with --tree into a temporary tree, installs a dstream that runs a job and finds its modules
# in the tree (no environment variable). Debian's luarocks defaults to Lua 5.2, where the
# rockspec's `lua == 5.1` fails with "Failed finding Lua header files"; the documented command
# carries --lua-version 5.1.
source "$(dirname "$0")/lib/common.bash"
release_only # a build of its own (~15 s): once is enough

if ! command -v luarocks >/dev/null 2>&1; then
  not_ok "luarocks is installed (scripts/setup.sh installs it)"
  finish
fi
cmd=$(grep -m 1 -E '^luarocks make .*dstream-scm-1\.rockspec' "$ROOT/README.md" | sed 's/ *#.*//')
check "the README documents a 'luarocks make ... dstream-scm-1.rockspec' command" [ -n "$cmd" ]
check "the README's command names Lua 5.1 (Debian's luarocks defaults to 5.2)" \
  eval 'echo "$cmd" | grep -q -- "--lua-version 5.1"'
check "the rockspec's source.url is not a local path (luarocks install/pack work elsewhere)" \
  eval '! grep -E "^ *url *=" "$ROOT/dstream-scm-1.rockspec" | grep -qE "file://|\"/"'

# A copy of the checkout's files (what git tracks, as a fresh clone has), so the build
# (luarocks writes build.luarocks/ into the source) touches nothing of the checkout.
mkdir -p "$WORK/src"
if git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1; then
  (cd "$ROOT" && git ls-files -z | xargs -0 cp --parents -t "$WORK/src")
else
  (cd "$ROOT" && tar --exclude='./build*' --exclude=./.git -cf - .) | (cd "$WORK/src" && tar -xf -)
fi
(cd "$WORK/src" && HOME=$WORK timeout 300 $cmd --tree "$WORK/tree") >"$WORK/luarocks.log" 2>&1
STATUS=$?
check "'$cmd --tree DIR' succeeds" [ "$STATUS" -eq 0 ]
[ "$STATUS" -ne 0 ] && show "luarocks output" "$WORK/luarocks.log" 30
check "it installs the dstream executable into the tree" [ -x "$WORK/tree/bin/dstream" ]
(cd "$WORK" && env -u DSTREAM_LUA_DIR timeout 60 "$WORK/tree/bin/dstream" -e \
  'local ctx = require("dstream").context { workers = 2 }
   print(ctx:parallelize({ 1, 2, 3, 4 }, 2):map(function(x) return x * x end):reduce(function(a, b) return a + b end))
   print((package.searchpath("dstream.context", package.path)))') >"$WORK/run.out" 2>"$WORK/run.err"
STATUS=$?
check "the installed dstream runs a one-line job on its workers" \
  eval '[ "$STATUS" -eq 0 ] && [ "$(head -n 1 "$WORK/run.out")" = 30 ]'
check "the installed dstream loads its modules from the tree" \
  eval 'sed -n 2p "$WORK/run.out" | grep -q "^$WORK/tree/"'
[ "$E2E_FAILED" -gt 0 ] && { show stdout "$WORK/run.out"; show stderr "$WORK/run.err"; }
finish
