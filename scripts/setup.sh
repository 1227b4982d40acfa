#!/usr/bin/env bash
# scripts/setup.sh: installs the Debian packages dstream needs that are missing, then builds
# LuaJIT (scripts/luajit.sh) and build/dstream (and the C unit tests). Safe to run again: it
# installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(build-essential cmake pkg-config libluajit-5.1-dev luajit dpkg-dev libuv1-dev
  librdkafka-dev libedit-dev lua-busted lua-cjson lua-lpeg luarocks kcat netcat-openbsd tmux strace
  libhttp-parser-dev curl prometheus chromium # these three for spec/e2e/ui.sh (promtool, a browser)
  libpq5 libsqlite3-0 sqlite3 postgresql) # to_sql/read_sql (FFI); sqlite3, psql and a server for the tests
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

# LuaJIT from Debian's source package with dstream's patches (patches/luajit/), linked
# statically; CMake picks it up from build-luajit/.
bash scripts/luajit.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
echo "setup: built build/dstream ($(./build/dstream --version))"
