#!/bin/sh
# Install what voca needs to build and test on Debian 12, from Debian's archive.
#
# Called by `make deps` (and so by `make voca`, `make test`, `make demo`) only
# when something is missing, so a machine that already has everything never
# runs apt-get. Uses sudo when not root. Idempotent.
set -eu

# Libraries the binary links (pkg-config names are checked by the Makefile).
build_pkgs="gcc make pkg-config libzmq3-dev libcjson-dev libcurl4-openssl-dev
  libsqlite3-dev libyaml-dev zlib1g-dev libssl-dev tzdata"
# What the tests, sanitizers, fuzzer and lint use.
test_pkgs="libcmocka-dev python3 python3-pytest python3-zmq clang
  libclang-rt-14-dev clang-format"

want="$build_pkgs"
[ "${1:-}" = "--test" ] && want="$build_pkgs $test_pkgs"

missing=""
for p in $want; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
		missing="$missing $p"
done
# Node.js and npm run the vendors' payload validators (tests/conformance).
# Any Node >= 18 will do: only when none is on PATH, take Debian's.
if [ "${1:-}" = "--test" ] && ! command -v npm >/dev/null 2>&1; then
	missing="$missing nodejs npm"
fi
[ -z "$missing" ] && exit 0

echo "install-deps: installing:$missing" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
# An old or absent package list makes apt-get install fail; refresh once.
$sudo apt-get update -qq
# shellcheck disable=SC2086
$sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
