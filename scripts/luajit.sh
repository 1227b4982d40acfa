#!/usr/bin/env bash
# scripts/luajit.sh: builds the LuaJIT dstream links, in build-luajit/: Debian's own source
# package of the installed LuaJIT (apt-get source, with Debian's patches), plus dstream's
# patches in patches/luajit/ (each says why). CMake uses build-luajit/ when it is there
# (CMakeLists.txt); without it dstream builds against the system's libluajit-5.1-dev.
# Does nothing when build-luajit/ is up to date; needs dpkg-dev (scripts/setup.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=build-luajit
version=$(dpkg-query -W -f='${Version}' libluajit-5.1-dev)
stamp="$version $(cat patches/luajit/*.patch | sha256sum | cut -d' ' -f1)"
if [ -f "$dir/stamp" ] && [ "$(cat "$dir/stamp")" = "$stamp" ] && [ -f "$dir/luajit/src/libluajit.a" ]; then
  exit 0
fi

sudo_cmd=""
[ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
# apt-get source needs the source indexes: add them beside the binary ones if they are missing.
if ! apt-cache showsrc luajit 2>/dev/null | grep -q '^Package: luajit'; then
  echo "setup: adding Debian's source package indexes (/etc/apt/sources.list.d/dstream-deb-src.sources)"
  . /etc/os-release
  $sudo_cmd tee /etc/apt/sources.list.d/dstream-deb-src.sources >/dev/null <<SRC
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: $VERSION_CODENAME $VERSION_CODENAME-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: $VERSION_CODENAME-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  $sudo_cmd apt-get update -qq
fi

echo "setup: building LuaJIT $version from Debian's source with dstream's patches (build-luajit/)"
rm -rf "$dir"
mkdir -p "$dir/download"
(cd "$dir/download" && apt-get source -qq --download-only "luajit=$version" >/dev/null 2>&1) || {
  echo "setup: apt-get source luajit=$version failed: is deb.debian.org reachable?" >&2
  exit 1
}
dpkg-source -x "$dir"/download/luajit_*.dsc "$dir/luajit" >/dev/null 2>&1
for p in patches/luajit/*.patch; do
  patch -s -p1 -d "$dir/luajit" <"$p"
done
# As Debian builds it (amalg, PREFIX=/usr, MULTILIB: the same module paths, so the system's
# jit.* modules for -jv/-jdump and the Lua modules of Debian's lua-* packages are found), but
# static, so that dstream carries its LuaJIT.
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
make -C "$dir/luajit" -j"$(nproc)" amalg PREFIX=/usr MULTILIB="lib/$multiarch" BUILDMODE=static \
  >"$dir/build.log" 2>&1 || {
  tail -n 20 "$dir/build.log" >&2
  exit 1
}
echo "$stamp" >"$dir/stamp"
