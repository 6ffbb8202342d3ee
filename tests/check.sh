#!/bin/bash
# The whole test suite, from a fresh Debian 12 (as root): installs what it needs, builds
# out of tree with warnings as errors, and runs `make check` (unit tests, the simulator and
# MQTT integration tests, and end-to-end tests with a real collectd).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
sh tests/install-deps.sh --test
autoreconf -fi >/dev/null 2>&1 || autoreconf -fi
# no_skips <test-suite.log>: fails when automake counted a skipped test or TAP result.
no_skips() {
  if ! grep -q '^# SKIP: *0$' "$1" || grep -q '^SKIP: ' "$1"; then
    grep -E '^(# )?SKIP:' "$1" >&2 || true
    echo "check.sh: tests were skipped ($1): every test must run here" >&2
    exit 1
  fi
}
build="$top/_build"
rm -rf "$build"
mkdir -p "$build"
cd "$build"
../configure --enable-werror -q
make -j"$(nproc)" -s
if ! make -j"$(nproc)" -s check; then
  echo "=== tests/test-suite.log ===" >&2
  cat test-suite.log >&2 || true
  exit 1
fi
# Every test ran: a skipped test (77, or a TAP "# SKIP") did not, whatever its reason.
no_skips "$build/test-suite.log"
# Every fuzz target for 30 s (corpora replayed first), then the tests under ASan+UBSan.
sh "$top/tests/fuzz/run_all.sh" "${FUZZ_SECONDS:-30}"
rm -rf "$top/_build-san"
bash "$top/tests/sanitize.sh" "$top/_build-san"
no_skips "$top/_build-san/test-suite.log"
echo "check.sh: all tests passed"
