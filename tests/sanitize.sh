#!/bin/bash
# The tests under AddressSanitizer and UndefinedBehaviorSanitizer: configures a separate
# build directory with -fsanitize=address,undefined (errors fatal), builds, and runs the
# unit tests, the simulator/API/MQTT integration tests and one end-to-end collectd run
# (tests/e2e_readings.sh) with the sanitized hes.so loaded into the stock collectd.
#
#   tests/sanitize.sh [BUILD_DIR]        default: <top>/_build-san (reused when configured)
#
# The stock collectd is not built with ASan, so the ASan runtime must come first in its
# library list: COLLECTD_BIN is a wrapper that sets LD_PRELOAD for collectd only
# (/work/shared/notes/collectd-plugin-facts.md, section 9). A sanitizer report makes the
# process exit non-zero (collectd_stop then fails the test) and is in the test's log.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$top/_build-san}
CC=${CC:-gcc}
[ -x "$top/configure" ] || (cd "$top" && autoreconf -fi >/dev/null 2>&1)
mkdir -p "$build"
build=$(cd "$build" && pwd)
cd "$build"
san="-fsanitize=address,undefined -fno-sanitize-recover=all"
if [ ! -f Makefile ]; then
  "$top/configure" -q --enable-werror CC="$CC" \
    CFLAGS="-O1 -g -fno-omit-frame-pointer $san" LDFLAGS="$san"
fi
make -j"$(nproc)" -s

libasan=$("$CC" -print-file-name=libasan.so)
[ -f "$libasan" ] || {
  echo "sanitize.sh: no libasan.so for $CC ($libasan)" >&2
  exit 1
}
collectd=${COLLECTD_BIN:-/usr/sbin/collectd}
cat >"$build/collectd-asan" <<WRAP
#!/bin/sh
# collectd with the ASan runtime first, for the sanitized hes.so (tests/sanitize.sh).
export LD_PRELOAD="$libasan\${LD_PRELOAD:+:\$LD_PRELOAD}"
exec "$collectd" "\$@"
WRAP
chmod +x "$build/collectd-asan"

# detect_leaks: the plugin and collectd are leak-clean; libcurl/json-c/mosquitto too.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:exitcode=86}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
unit=$(sed -n '/^unit_tests = /,/^[^\t ]/p' "$top/Makefile.am" | grep -o 'tests/test_[a-z_]*' | tr '\n' ' ')
tests="$unit tests/integration.sh tests/e2e_readings.sh"
echo "sanitize.sh: running $tests"
if ! make -s check TESTS="$tests" COLLECTD_BIN="$build/collectd-asan"; then
  echo "=== $build/test-suite.log ===" >&2
  cat test-suite.log >&2 || true
  exit 1
fi
# A report that did not change an exit status still counts.
if grep -l -E 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' tests/*.log >/dev/null 2>&1; then
  grep -E -A5 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' tests/*.log >&2
  echo "sanitize.sh: a sanitizer reported an error" >&2
  exit 1
fi
echo "sanitize.sh: all tests passed under -fsanitize=address,undefined"
