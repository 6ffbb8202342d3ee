#!/bin/sh
# Builds the libFuzzer targets straight from the sources (clang, no automake, no configure)
# and runs each for N seconds over its corpus.
#
#   tests/fuzz/run.sh [SECONDS [TARGET...]]      SECONDS defaults to 60, TARGET to push
#
# TARGET t is tests/fuzz/fuzz_<t>.c with src/<t>.c; its corpus is tests/fuzz/corpus_<t>/
# (inputs worth keeping: large messages, past crashes) together with tests/data/<t>/ (the
# golden files) as seeds, and tests/fuzz/fuzz_<t>.dict if present.
# What libFuzzer finds goes to a scratch directory (FUZZ_WORK, default a new one under
# TMPDIR), not into the tree; FUZZ_MERGE=1 merges the inputs that add coverage into
# corpus_<t>/ afterwards. A crashing input is copied into corpus_<t>/ so that it stays a
# regression case, and the script exits non-zero. FUZZ_MAX_LEN: the longest input (16384).
set -u

secs=${1:-60}
# Long inputs slow every mutation down; the parser's handling of big pushes is the unit
# tests' job. The seeds above this length are cut to it.
max_len=${FUZZ_MAX_LEN:-16384}
[ $# -gt 0 ] && shift
targets=${*:-push}

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
CC=${CC:-clang}
work=${FUZZ_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/hes-fuzz.XXXXXX")}
mkdir -p "$work"

if pkg-config --exists json-c 2>/dev/null; then
  json_cflags=$(pkg-config --cflags json-c)
  json_libs=$(pkg-config --libs json-c)
else
  json_cflags=
  json_libs=-ljson-c
fi

# config.h is configure's; these sources need nothing from it.
: >"$work/config.h"

status=0
for t in $targets; do
  src="$here/fuzz_$t.c"
  if [ ! -f "$src" ] || [ ! -f "$top/src/$t.c" ]; then
    echo "run.sh: no fuzz target $t ($src, $top/src/$t.c)" >&2
    exit 2
  fi
  bin="$work/fuzz_$t"
  echo "run.sh: building $bin"
  # shellcheck disable=SC2086 # the pkg-config flags are word lists
  if ! $CC -std=c11 -g -O1 -Wall -Wextra -Werror -fno-omit-frame-pointer \
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -I"$work" -I"$top/src" $json_cflags "$src" "$top/src/$t.c" $json_libs -o "$bin"; then
    echo "run.sh: building fuzz_$t failed" >&2
    exit 2
  fi

  corpus="$here/corpus_$t"
  seeds=
  [ -d "$top/tests/data/$t" ] && seeds="$top/tests/data/$t"
  mkdir -p "$corpus" "$work/new_$t" "$work/crash_$t"
  dict=
  [ -f "$here/fuzz_$t.dict" ] && dict="-dict=$here/fuzz_$t.dict"

  echo "run.sh: fuzzing $t for $secs s (scratch corpus $work/new_$t)"
  # shellcheck disable=SC2086
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$bin" -max_total_time="$secs" -max_len="$max_len" -timeout=10 -print_final_stats=1 $dict \
    -artifact_prefix="$work/crash_$t/" "$work/new_$t" "$corpus" $seeds
  rc=$?

  found=0
  for f in "$work/crash_$t"/*; do
    [ -f "$f" ] || continue
    found=1
    name="crash-$(sha1sum "$f" | cut -c1-16)"
    cp "$f" "$corpus/$name"
    echo "run.sh: $t: crashing input kept as $corpus/$name" >&2
  done
  if [ $rc -ne 0 ] || [ $found -ne 0 ]; then
    echo "run.sh: $t: FAILED (libFuzzer exit $rc)" >&2
    status=1
    continue
  fi
  if [ "${FUZZ_MERGE:-0}" = 1 ]; then
    "$bin" -merge=1 -max_len="$max_len" "$corpus" "$work/new_$t"
  fi
  echo "run.sh: $t: no crash in $secs s"
done
[ -z "${FUZZ_WORK:-}" ] && [ $status -eq 0 ] && rm -rf "$work"
exit $status
