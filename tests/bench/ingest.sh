#!/bin/bash
# tests/bench/ingest.sh [BUILD_DIR]: the hes plugin's ingest benchmark (not part of make check).
#
# Measures in one run, on this machine (see /work/shared/notes/performance-facts.md for why
# the figures are taken this way):
#  (a) parse: the push parser + item conversion alone (bench_parse.c) on the very pushes the
#      simulator sends (captured from the broker), readings/s on one core;
#  (b) collectd's bare dispatch (bench_dispatch.c: plugin_dispatch_values for the same
#      identifiers as the plugin), in a tight loop and paced like the plugin (bursts of 1000
#      at the rate measured in (c)): values/s and collectd CPU per value;
#  (c) the plugin inside collectd, reading from the simulator through a real mosquitto:
#      values/s counted by a no-op writer (bench_count.c) over a steady window after warm-up,
#      and collectd CPU per value;
#  (d) resident memory per configured meter: collectd's VmRSS with 100,000 meters minus with
#      1 meter, no HES traffic.
# Values are counted by bench_count, a no-op write plugin: no real writer is loaded.
# collectd runs unpinned with the default WriteThreads.
#
# BUILD_DIR (default $PWD) is a configured and built tree (hes.so, tests/sim/hes-sim,
# config.h). Needs gcc, pkg-config json-c, collectd-dev, collectd-core, mosquitto,
# mosquitto-clients. Knobs (environment): BENCH_METERS (20000), BENCH_INTERVAL (1),
# BENCH_WARMUP (10 s), BENCH_WINDOW (20 s), BENCH_DISPATCH_WINDOW (10 s), BENCH_PARSE_SECONDS
# (4), BENCH_MEM_METERS (100000), BENCH_COLLECTD_ENV (e.g. GLIBC_TUNABLES=... for an
# experiment), BENCH_TIMEOUT (collectd's Timeout, default 2 as in collectd: when values of
# an identifier come less often than every 2 intervals, collectd's main thread evicts and
# re-creates its cache entry, which costs CPU in (b paced) and (c) alike). BENCH_SIM_ARGS
# (default --bench-reuse: the simulator renders each readSingle list once and then only
# rewrites its timestamps, so it does not take the CPU the plugin is measured on; set it
# empty to have every reading rendered as in the tests). KEEP_TMP=1 keeps the logs. About 2 minutes.
set -euo pipefail

BUILD=$(cd "${1:-$PWD}" && pwd)
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export top_srcdir=$SRC top_builddir=$BUILD
# shellcheck source=tests/lib.sh disable=SC1091
. "$SRC/tests/lib.sh"

# shellcheck source=tests/bench/bench_lib.sh disable=SC1091
. "$SRC/tests/bench/bench_lib.sh"

METERS=${BENCH_METERS:-20000}
INTERVAL=${BENCH_INTERVAL:-1}
WARMUP=${BENCH_WARMUP:-10}
WINDOW=${BENCH_WINDOW:-20}
DWINDOW=${BENCH_DISPATCH_WINDOW:-10}
PARSE_SECONDS=${BENCH_PARSE_SECONDS:-4}
MEM_METERS=${BENCH_MEM_METERS:-100000}

require_cmd pkg-config mosquitto_sub
[ -f "$BUILD/config.h" ] || fail "$BUILD/config.h missing: is $BUILD a configured build?"
bench_init count dispatch
# shellcheck disable=SC2046
gcc -O2 -std=c11 -Wall -Wextra -I"$BUILD" -I"$SRC/src/lib" "$SRC/tests/bench/bench_parse.c" \
  "$SRC/src/lib/push.c" "$SRC/src/lib/items.c" $(pkg-config --cflags --libs json-c) -lm -lpthread \
  -o "$B/bench_parse" || fail "cannot build bench_parse"
meter_file "$METERS" "$TEST_TMP/meters.txt"

# ---- (c) the plugin inside collectd ------------------------------------------------------
# shellcheck disable=SC2119 # start_mosquitto takes no $1 here
start_mosquitto
# shellcheck disable=SC2086 # BENCH_SIM_ARGS is a list of words
start_sim --tenant "$TENANT" --username kuangda --password kd123456 --secret-key "$SECRET" \
  --push-delay-ms 0 ${BENCH_SIM_ARGS---bench-reuse}
wait_for 10 sim_connected || fail "simulator not connected to the broker"

# The pushes for (a): the first 25 the simulator publishes, as the plugin receives them.
LIB_OUT=$TEST_TMP/pushes.txt run_bg mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -t "/$TENANT/#" -C 25 -W 60
SUB_PID=$BG_PID
note "(c) plugin: $METERS meters x $NITEMS items, BatchSize $BATCH, Interval $INTERVAL s: warm-up ${WARMUP} s, window ${WINDOW} s"
plugin_run "$TEST_TMP/plugin" "$WARMUP" "$WINDOW"
c_rate=$P_RATE c_us=$P_US c_cores=$P_CORES c_rss=$P_RSS c_med=$P_MED c_threads=$P_THREADS
offered=$((METERS * NITEMS / INTERVAL))
note "(c) $c_rate values/s (median second $c_med; offered $offered, published by the simulator $P_SIM_RATE), $c_us us CPU/value, collectd $c_cores cores, sim $P_SIM_CORES, mosquitto $P_MQ_CORES, other processes $P_OTHER_CORES; $P_LOG"
note "(c) by thread, us on CPU per value from schedstat (from ticks): $c_threads"
note "(c) $P_FLT minor faults/value, $P_CTX voluntary/involuntary context switches/value, VmRSS at the end $c_rss kB; self-metrics: $P_SELF"
stop_bg "$SUB_PID"
stop_sim
pushes=$(grep -c '^{' "$TEST_TMP/pushes.txt" || true)
[ "$pushes" -ge 5 ] || fail "captured only $pushes pushes from the simulator"

# ---- (a) parse only ----------------------------------------------------------------------
"$B/bench_parse" "$TEST_TMP/pushes.txt" "$PARSE_SECONDS" >"$TEST_TMP/parse.txt" || fail "bench_parse failed"
read -r _ a_rate a_us a_flt a_pushes a_per < <(grep '^parse ' "$TEST_TMP/parse.txt")
read -r _ ah_rate ah_us ah_flt _ < <(grep '^heap ' "$TEST_TMP/parse.txt")
note "(a) parse: $a_rate readings/s, $a_us us/reading, $a_flt minor faults/reading ($a_pushes pushes of $a_per readings)"
note "(a) parse on a collectd-like heap: $ah_rate readings/s, $ah_us us/reading, $ah_flt minor faults/reading"

# ---- (b) bare dispatch -------------------------------------------------------------------
B_TIGHT=$(dispatch_run tight 0 3 "$DWINDOW")
read -r bt_rate bt_us bt_cores bt_flt _ _ _ bt_med <<<"$B_TIGHT"
note "(b) tight loop: $bt_rate values/s (median $bt_med), $bt_us us CPU/value, $bt_cores cores, $bt_flt faults/value; $(cat "$TEST_TMP/tight/log_summary")"
note "(b) tight, by thread: $(cat "$TEST_TMP/tight/cpu_split")"
B_PACED=$(dispatch_run paced "$c_rate" 3 "$DWINDOW")
read -r bp_rate bp_us bp_cores bp_flt _ <<<"$B_PACED"
note "(b) paced at $c_rate/s: $bp_rate values/s, $bp_us us CPU/value, $bp_cores cores, $bp_flt faults/value; $(cat "$TEST_TMP/paced/log_summary")"
note "(b) paced, by thread: $(cat "$TEST_TMP/paced/cpu_split")"

# ---- (d) memory per configured meter -----------------------------------------------------
mem_per_meter "$MEM_METERS"
d_bpm=$MEM_BPM rss_many=$MEM_MANY rss_one=$MEM_ONE
note "(d) VmRSS $rss_many kB with $MEM_METERS meters, $rss_one kB with 1: $d_bpm bytes/meter"

# ---- table -------------------------------------------------------------------------------
ratio_rate=$(awk -v c="$c_rate" -v b="$bt_rate" 'BEGIN { printf "%.2f", c / b }')
eff=$(awk -v c="$c_us" -v b="$bp_us" 'BEGIN { printf "%.2f", b / c }')
verdict() { awk -v x="$1" -v t="$2" -v op="$3" 'BEGIN { ok = op == ">=" ? x >= t : x <= t; print ok ? "ok" : "MISSED" }'; }
echo
echo "hes ingest benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "collectd $("$COLLECTD_BIN" -h 2>&1 | sed -n 's/^collectd \([0-9.a-z]*\).*/\1/p' | head -n 1), writer: bench_count (no-op), WriteThreads default, unpinned"
printf '| %-58s | %14s | %12s | %s\n' "measure" "values/s" "us CPU/value" "notes"
printf '|%s|%s|%s|%s\n' "$(printf -- '-%.0s' {1..60})" "$(printf -- '-%.0s' {1..16})" "$(printf -- '-%.0s' {1..14})" "---"
printf '| %-58s | %14s | %12s | %s\n' "(a) parse + convert only (bench_parse, 1 core)" "$a_rate" "$a_us" "$a_flt minor faults/reading"
printf '| %-58s | %14s | %12s | %s\n' "(a) the same, on a collectd-like heap (see bench_parse.c)" "$ah_rate" "$ah_us" "$ah_flt minor faults/reading"
printf '| %-58s | %14s | %12s | %s\n' "(b) bare dispatch, tight loop" "$bt_rate" "$bt_us" "collectd $bt_cores cores"
printf '| %-58s | %14s | %12s | %s\n' "(b) bare dispatch, paced (bursts of $BATCH at c's rate)" "$bp_rate" "$bp_us" "collectd $bp_cores cores"
printf '| %-58s | %14s | %12s | %s\n' "(c) plugin: sim -> mosquitto -> hes.so -> no-op writer" "$c_rate" "$c_us" "offered $offered/s, sim published $P_SIM_RATE/s; cores: collectd $c_cores, sim $P_SIM_CORES, mosquitto $P_MQ_CORES, other processes $P_OTHER_CORES"
printf '| %-58s | %14s | %12s | %s\n' "(c)/(b tight) rate" "$ratio_rate" "" "target >= 0.8: $(verdict "$ratio_rate" 0.8 '>=')"
printf '| %-58s | %14s | %12s | %s\n' "efficiency: (b paced) CPU/value / (c) CPU/value" "$eff" "" "target >= 0.8: $(verdict "$eff" 0.8 '>=')"
printf '| %-58s | %14s | %12s | %s\n' "(d) resident bytes per configured meter" "$d_bpm" "" "$rss_many - $rss_one kB over $MEM_METERS meters; target <= 200: $(verdict "$d_bpm" 200 '<=')"
echo "CPU by thread, us on CPU per value (schedstat; ticks in brackets), and time spent waiting for a CPU:"
echo "  (b) paced: $(cat "$TEST_TMP/paced/cpu_split")"
echo "  (c) plugin: $c_threads"
if awk -v x="$P_OTHER_CORES" 'BEGIN { exit !(x > 0.2) }'; then
  echo "WARNING: other processes used $P_OTHER_CORES cores during (c): the machine was not quiet, so the"
  echo "  rates are low and noisy; the CPU cost per value and the thread split are the robust figures."
fi
