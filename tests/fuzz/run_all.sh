#!/bin/sh
# Builds every libFuzzer target straight from the sources (clang, no configure) and runs
# each for N seconds over its corpus: the CI entry point for fuzzing.
#
#   tests/fuzz/run_all.sh [SECONDS [TARGET...]]   SECONDS defaults to 60; TARGET one of
#                                                 push push_diff api meters conf_tree
#                                                 items_diff
#                                                 (default all)
#
#   push         hes_push_parse / hes_push_parse_list   (src/lib/push.c)
#   push_diff    hes_push_parse against json-c's strict parser: both must accept and reject
#                the same documents, with the same results (shares push's corpus)
#   api          hes_api_parse_answer, HES answer bodies (src/lib/api.c, clock.c, latency.c)
#   meters       hes_meters_add_file, MeterFile text    (src/lib/meters.c, hashtab.c)
#   conf_tree  hes_conf_tree_parse, collectd config     (src/lib/conf_tree.c; skipped if absent)
#   items_diff   hes_item_convert against glibc's strtod of the same decimal, bit for bit
#                (the exact-decimal fast path must equal the strtod path)
#
# Every input of tests/fuzz/corpus_<t>/ (and tests/data/<t>/ for push) runs first, so past crashes are regression cases; new inputs go
# to a scratch directory (FUZZ_WORK, default a new one under TMPDIR); a crashing input is
# copied into corpus_<t>/ and the script exits 1. FUZZ_MERGE=1 merges the inputs that add
# coverage into corpus_<t>/. FUZZ_MAX_LEN: the longest input (16384). Exit 2: a build failed.
set -u

secs=${1:-60}
[ $# -gt 0 ] && shift
targets=${*:-push push_diff api meters conf_tree items_diff}
max_len=${FUZZ_MAX_LEN:-16384}

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
CC=${CC:-clang}
work=${FUZZ_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/hes-fuzz.XXXXXX")}
mkdir -p "$work"

flags() {
  pkg-config "$1" "$2" 2>/dev/null || echo "$3"
}
json_cflags=$(flags --cflags json-c "")
json_libs=$(flags --libs json-c -ljson-c)
curl_cflags=$(flags --cflags libcurl "")
curl_libs=$(flags --libs libcurl -lcurl)

# config.h is configure's (AC_USE_SYSTEM_EXTENSIONS): the sources need the GNU extensions
# (strnlen, strdup, strcasestr) and the version string from it.
printf '#ifndef _GNU_SOURCE\n#define _GNU_SOURCE 1\n#endif\n#define PACKAGE_VERSION "fuzz"\n' >"$work/config.h"

status=0
for t in $targets; do
  case $t in
  push | push_diff) srcs="src/lib/push.c" cflags=$json_cflags libs=$json_libs ;;
  api) srcs="src/lib/api.c src/lib/push.c src/lib/clock.c src/lib/latency.c" cflags="$json_cflags $curl_cflags" libs="$json_libs $curl_libs -lpthread" ;;
  meters) srcs="src/lib/meters.c src/lib/hashtab.c" cflags='' libs='' ;;
  conf_tree) srcs="src/lib/conf_tree.c" cflags='' libs=-lm ;;
  items_diff) srcs="src/lib/items.c" cflags='' libs=-lm ;;
  *)
    echo "run_all.sh: unknown target $t" >&2
    exit 2
    ;;
  esac
  missing=
  for s in $srcs; do
    [ -f "$top/$s" ] || missing="$missing $s"
  done
  if [ -n "$missing" ]; then
    echo "run_all.sh: $t: skipped, no$missing"
    continue
  fi
  bin="$work/fuzz_$t"
  paths=
  for s in $srcs; do
    paths="$paths $top/$s"
  done
  echo "run_all.sh: building $bin"
  # shellcheck disable=SC2086 # flag and file lists
  if ! $CC -std=c11 -g -O1 -Wall -Wextra -Werror -fno-omit-frame-pointer \
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -I"$work" -I"$top/src/lib" $cflags "$here/fuzz_$t.c" $paths $libs -o "$bin"; then
    echo "run_all.sh: building fuzz_$t failed" >&2
    exit 2
  fi

  # The differential target reads the same documents as push.
  corpus="$here/corpus_${t%_diff}"
  seeds=
  [ -d "$top/tests/data/${t%_diff}" ] && seeds="$top/tests/data/${t%_diff}"
  mkdir -p "$corpus" "$work/new_$t" "$work/crash_$t"
  dict=
  [ -f "$here/fuzz_$t.dict" ] && dict="-dict=$here/fuzz_$t.dict"

  echo "run_all.sh: fuzzing $t for $secs s (scratch corpus $work/new_$t)"
  # shellcheck disable=SC2086
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ASAN_OPTIONS=detect_leaks=1 \
    "$bin" -max_total_time="$secs" -max_len="$max_len" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 $dict -artifact_prefix="$work/crash_$t/" \
    "$work/new_$t" "$corpus" $seeds >"$work/log_$t" 2>&1
  rc=$?
  grep -E '^(INFO: seed corpus|#[0-9]+ *DONE|stat::number_of_executed_units|stat::peak_rss_mb)' \
    "$work/log_$t" | sed "s/^/run_all.sh: $t: /"

  found=0
  for f in "$work/crash_$t"/*; do
    [ -f "$f" ] || continue
    found=1
    name="crash-$(sha1sum "$f" | cut -c1-16)"
    cp "$f" "$corpus/$name"
    echo "run_all.sh: $t: crashing input kept as $corpus/$name" >&2
  done
  if [ $rc -ne 0 ] || [ $found -ne 0 ]; then
    tail -n 60 "$work/log_$t" >&2
    echo "run_all.sh: $t: FAILED (libFuzzer exit $rc)" >&2
    status=1
    continue
  fi
  if [ "${FUZZ_MERGE:-0}" = 1 ]; then
    "$bin" -merge=1 -max_len="$max_len" "$corpus" "$work/new_$t" >/dev/null 2>&1
  fi
  echo "run_all.sh: $t: no crash in $secs s"
done
[ -z "${FUZZ_WORK:-}" ] && [ $status -eq 0 ] && rm -rf "$work"
exit $status
