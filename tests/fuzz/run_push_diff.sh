#!/bin/sh
# Builds the differential push fuzz target (fuzz_push_diff.c with src/push.c, against the
# installed json-c) the way run.sh builds the others, and runs it for N seconds.
#
#   tests/fuzz/run_push_diff.sh [SECONDS]      SECONDS defaults to 60
#
# Corpus: corpus_push/ (shared with fuzz_push) plus the golden files in tests/data/push/ as
# seeds, and fuzz_push_diff.dict. New inputs go to a scratch directory (FUZZ_WORK, default
# a new one under TMPDIR); FUZZ_MERGE=1 merges those that add coverage into corpus_push/.
# A failing input is copied into corpus_push/ as a regression case (test_push reads every
# file there) and the script exits non-zero. FUZZ_MAX_LEN: the longest input (16384).
# FUZZ_JOBS: parallel fuzzing processes (1).
set -u

secs=${1:-60}
max_len=${FUZZ_MAX_LEN:-16384}
jobs=${FUZZ_JOBS:-1}
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
: >"$work/config.h"

bin="$work/fuzz_push_diff"
echo "run_push_diff.sh: building $bin"
# shellcheck disable=SC2086 # the pkg-config flags are word lists
if ! $CC -std=c11 -g -O1 -Wall -Wextra -Werror -fno-omit-frame-pointer \
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -I"$work" -I"$top/src" $json_cflags "$here/fuzz_push_diff.c" "$top/src/push.c" $json_libs \
  -o "$bin"; then
  echo "run_push_diff.sh: build failed" >&2
  exit 2
fi

corpus="$here/corpus_push"
mkdir -p "$work/new" "$work/crash"
echo "run_push_diff.sh: fuzzing for $secs s with $jobs job(s) (scratch corpus $work/new)"
# With -jobs, libFuzzer writes fuzz-N.log into the current directory: the scratch one.
parallel=
[ "$jobs" -gt 1 ] && parallel="-jobs=$jobs -workers=$jobs"
# shellcheck disable=SC2086
(cd "$work" && UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  "$bin" -max_total_time="$secs" -max_len="$max_len" -timeout=10 -print_final_stats=1 \
  $parallel -dict="$here/fuzz_push_diff.dict" \
  -artifact_prefix="$work/crash/" "$work/new" "$corpus" "$top/tests/data/push")
rc=$?

found=0
for f in "$work/crash"/*; do
  [ -f "$f" ] || continue
  found=1
  name="crash-diff-$(sha1sum "$f" | cut -c1-16)"
  cp "$f" "$corpus/$name"
  echo "run_push_diff.sh: failing input kept as $corpus/$name" >&2
done
if [ $rc -ne 0 ] || [ $found -ne 0 ]; then
  echo "run_push_diff.sh: FAILED (libFuzzer exit $rc)" >&2
  exit 1
fi
if [ "${FUZZ_MERGE:-0}" = 1 ]; then
  "$bin" -merge=1 -max_len="$max_len" "$corpus" "$work/new"
fi
echo "run_push_diff.sh: no difference in $secs s"
[ -z "${FUZZ_WORK:-}" ] && rm -rf "$work"
exit 0
